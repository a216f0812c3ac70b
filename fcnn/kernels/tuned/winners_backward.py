"""The backward of conv2d -> ReLU -> 2x2 max-pool from the windows' winners alone (stride-1 convolutions).

After a 2x2 max-pool of stride 2, at most one position in four of the conv output z has a
gradient: the first maximum of each window, and only where z > 0 (ReLU). So instead of laying
the gradient out as a dense plane and correlating it (three zeros in four, and the ReLU's
zeros too), each winner adds its share directly: dw[f] += g * (the input patch under it), and
dx's patch += g * w[f]. The input is first "stacked" so that a winner's whole patch is one
contiguous run (one vectorised loop per winner); a kernel compiled per layer shape does it,
the images split among the threads; conv2d_relu_maxpool2d_backward_winners chooses the kernel
by shape. fcnn.ladder.fused_backward has the steps to here.
"""

import functools

import numba
import numpy as np

from fcnn.kernels.numba_cache import compile_variant

# A winner's patch (KW*KH*C values) is handled rounded up to whole vectors of 8, the float32
# lanes of 256-bit vectors: full-width multiply-adds and no scalar tail (LeNet-5's first conv:
# 25 -> 32 values, 9.6 -> 7.1 us per image; its second, 150 -> 152, 13.5 -> 11.7). The extra
# lanes pair the next positions with zero weights (dx) or sum into accumulators that are dropped
# (dw). Where numba writes 512-bit vectors (Zen 5), rounding to 16 was no faster (docs/performance.md).
LANES = 8
# dw accumulators per filter, used in turn by consecutive winners: the next winner's
# multiply-adds do not wait on the previous one's stores of the same values.
COPIES = 2
# Windows are visited WINDOW_STRIDE apart along a row (then the ones between): for kernels up
# to 5 wide, two patches visited one after the other do not overlap, so a vector load of dx
# does not partly overlap a store still in flight (which stalls it until the store is done).
WINDOW_STRIDE = 3


@numba.njit(inline="always")
def winner_of_window(z, n, f, y, x_):
    """(code, alive, finite): the first maximum of z[n, f, y:y+2, x_:x_+2] in row-major order, at
    (y + code // 2, x_ + code % 2); whether z > 0 there; whether the four values are finite.

    For finite values this is loop.py's rule on relu(z) (strictly greater replaces, so ties keep
    the first): relu only turns the values <= 0 into ties at 0, and a winner <= 0 is dead
    (relu' = 0) wherever it sits. A window with an inf or a NaN is reported instead, and the
    caller goes the unfused way. (Selects instead of the branches made the kernel slower.)
    """
    largest, code, total = z[n, f, y, x_], 0, z[n, f, y, x_]
    for later in range(1, 4):
        value = z[n, f, y + later // 2, x_ + later % 2]
        total += value
        if value > largest:
            largest, code = value, later
    # total is inf or NaN if a value is (or if the sum overflows: that only costs the slow way).
    return code, largest > 0, total - total == 0


@numba.njit(inline="always")
def patch_weights(w, C, KH, KW, column, lanes):
    """(w_patch, bad): w in a winner's patch order, zeros in the rounded-up lanes, and how many values are not finite.

    w (F, C, KH, KW) -> w_patch (F, lanes), w_patch[f, kj*column + ki*C + c] = w[f, c, ki, kj].
    """
    F = w.shape[0]
    w_patch = np.zeros((F, lanes), dtype=w.dtype)
    bad = 0
    for f in range(F):
        for c in range(C):
            for ki in range(KH):
                for kj in range(KW):
                    w_patch[f, kj * column + ki * C + c] = w[f, c, ki, kj]
                    bad += not (w[f, c, ki, kj] - w[f, c, ki, kj] == 0)
    return w_patch, bad


@numba.njit(inline="always")
def stage_image(x, n, image, C, H, W, pad, pitch):
    """image[(y + pad)*pitch + (x + pad)*C + c] = x[n, c, y, x]: image n zero-padded (its border is
    left as it is, zero), channel-last, rows `pitch` apart; returns how many values are not finite."""
    bad = 0
    for c in range(C):
        for y in range(H):
            for x_ in range(W):
                value = x[n, c, y, x_]
                image[(y + pad) * pitch + (x_ + pad) * C + c] = value
                bad += not (value - value == 0)
    return bad


@numba.njit(inline="always")
def unstage_image(image_gradient, dx, n, C, H, W, pad, pitch):
    """dx[n, c, y, x] = image_gradient[(y + pad)*pitch + (x + pad)*C + c]: stage_image's inverse, the padding dropped."""
    for c in range(C):
        for y in range(H):
            for x_ in range(W):
                dx[n, c, y, x_] = image_gradient[(y + pad) * pitch + (x_ + pad) * C + c]


@numba.njit(inline="always")
def stack_columns(image, stacked, C, KH, H_out, Wp, pitch, column):
    """stacked[(y*Wp + x)*column + ki*C + c] = image pixel (y + ki, x, c): the patch of output
    position (y, x) is stacked[(y*Wp + x)*column :][:KW*column], tap (ki, kj) at kj*column + ki*C."""
    for y in range(H_out):
        for x_ in range(Wp):
            for ki in range(KH):
                for c in range(C):
                    stacked[(y * Wp + x_) * column + ki * C + c] = image[(y + ki) * pitch + x_ * C + c]


@numba.njit(inline="always")
def fold_stacked_gradient(stacked_gradient, image_gradient, dx, n, C, H, W, KH, pad, H_out, Wp, pitch, column):
    """dx[n] from the patches' gradients summed in stack_columns' layout: each stacked value added
    back to the pixel it was copied from, then the padding dropped (image_gradient is scratch)."""
    image_gradient[:] = 0.0
    for y in range(H_out):
        for x_ in range(Wp):
            for ki in range(KH):
                for c in range(C):
                    image_gradient[(y + ki) * pitch + x_ * C + c] += stacked_gradient[(y * Wp + x_) * column + ki * C + c]
    unstage_image(image_gradient, dx, n, C, H, W, pad, pitch)


@numba.njit(inline="always")
def reduce_patch_sums(partial_dw, C, KH, KW, column):
    """dw[f, c, ki, kj] = sum over chunks and copies of partial_dw[chunk, f, copy, kj*column + ki*C + c].

    partial_dw (chunks, F, COPIES, lanes), the patch's order (patch_weights) -> dw (F, C, KH, KW).
    """
    chunks, F, copies, _ = partial_dw.shape
    dw = np.zeros((F, C, KH, KW), dtype=partial_dw.dtype)
    for chunk in range(chunks):
        for f in range(F):
            for copy in range(copies):
                for c in range(C):
                    for ki in range(KH):
                        for kj in range(KW):
                            dw[f, c, ki, kj] += partial_dw[chunk, f, copy, kj * column + ki * C + c]
    return dw


@functools.cache
def winners_backward_kernel(C, H, W, F, KH, KW, pad, input_gradient):
    """The compiled backward for one layer shape: (dout, z, x, w, chunks, length) -> (dx, dw, db, non_finite).

    dout (N, F, H'', W''), z (N, F, H', W'), x (N, C, H, W), w (F, C, KH, KW) -> dx (N, C, H, W)
    (or (0, C, H, W) when not input_gradient), dw (F, C, KH, KW), db (F,), and how many values
    of dout, z, x, w were found not finite (then dx, dw, db are not loop.py's: see the wrapper).
    chunks: how many parts the images are split in (one per thread); length = KW*KH*C rounded up
    to whole vectors (rounded_patch), passed at run time: with a constant trip count LLVM unrolls
    the patch loop into scalar code, whose loads it may not move above the stores to an array it
    cannot prove apart. The sizes are compile-time constants (one kernel per shape, 5 to 10 s of
    compiling each the first time): read from the arrays instead, the kernel ran 2x to 4x slower.
    """
    Hp, Wp = H + 2 * pad, W + 2 * pad
    H_out = Hp - KH + 1
    H_pool, W_pool = H_out // 2, (Wp - KW + 1) // 2
    pitch = Wp * C  # a padded input row, channel-last: pixel (y, x, c) at y*pitch + x*C + c
    column = KH * C  # a stacked column: the KH rows' C channels under output position (y, x)
    lanes = rounded_patch(C, KH, KW)
    stacked_size = H_out * Wp * column + lanes  # room for the last row's rounded-up patches to run on

    def kernel(dout, z, x, w, chunks, length):
        N = x.shape[0]
        partial_dw = np.zeros((chunks, F, COPIES, lanes), dtype=x.dtype)
        partial_db = np.zeros((chunks, F), dtype=x.dtype)
        non_finite = np.zeros(chunks, dtype=np.int64)
        dx = np.empty((N if input_gradient else 0, C, H, W), dtype=x.dtype)
        w_patch, bad_weights = patch_weights(w, C, KH, KW, column, lanes)
        for chunk in numba.prange(chunks):
            image = np.zeros(Hp * pitch, dtype=x.dtype)  # x[n] zero-padded, channel-last; its border stays 0
            stacked = np.zeros(stacked_size, dtype=x.dtype)  # stack_columns' layout: a patch one contiguous run
            stacked_gradient = np.empty(stacked_size, dtype=x.dtype)  # dx[n]'s patches, summed in the same layout
            image_gradient = np.empty(Hp * pitch, dtype=x.dtype)
            bad = 0
            for n in range(chunk, N, chunks):
                bad += stage_image(x, n, image, C, H, W, pad, pitch)
                stack_columns(image, stacked, C, KH, H_out, Wp, pitch, column)
                if input_gradient:
                    stacked_gradient[:] = 0.0
                for f in range(F):
                    total = partial_db[chunk, f]
                    visited = 0
                    for i in range(H_pool):
                        for first in range(WINDOW_STRIDE):
                            for j in range(first, W_pool, WINDOW_STRIDE):
                                code, alive, finite = winner_of_window(z, n, f, 2 * i, 2 * j)
                                g = dout[n, f, i, j]
                                bad += not (finite and g - g == 0)
                                if not alive:
                                    continue  # relu' = 0: the gradient there is dout * 0 = 0, nothing to add
                                total += g
                                start = ((2 * i + code // 2) * Wp + 2 * j + code % 2) * column
                                copy = visited % COPIES
                                visited += 1
                                # Plain indices, no slices: a view made in this loop costs a reference count each time.
                                for t in range(length):
                                    partial_dw[chunk, f, copy, t] += g * stacked[start + t]
                                if input_gradient:
                                    for t in range(length):
                                        stacked_gradient[start + t] += g * w_patch[f, t]
                    partial_db[chunk, f] = total
                if input_gradient:
                    fold_stacked_gradient(stacked_gradient, image_gradient, dx, n, C, H, W, KH, pad, H_out, Wp, pitch, column)
            non_finite[chunk] = bad
        dw = reduce_patch_sums(partial_dw, C, KH, KW, column)
        return dx, dw, partial_db.sum(axis=0), non_finite.sum() + bad_weights

    return compile_variant(
        kernel, "tuned_winners_backward", parallel=True, fastmath={"contract"}, error_model="numpy"
    )


# dw from GROUP winners of a filter per pass: dw[f] loaded and stored once per GROUP winners
# instead of once each (the missing ones of the last group are g = 0). Used on patches of
# GROUPED_FROM values and more, per batch (1 thread): bn's second conv (400 values, dx and dw)
# 2.90 -> 2.62 ms per 32 images. Not on LeNet-5's second (152): dw alone 0.395 -> 0.364 ms per
# 64, but with its dx 0.74 -> 0.83; nor on its first (32, four vectors, dw only): 0.57 -> 0.65.
# dx the same way (each output position's winners four per pass, from a list per position) was
# no faster on bn (1.47 -> 1.48 ms) and slower on LeNet-5 (0.35 -> 0.48): dx stays one a pass.
GROUP = 4
GROUPED_FROM = 256


@functools.cache
def grouped_winners_kernel(C, H, W, F, KH, KW, pad, input_gradient):
    """winners_backward_kernel with dw from GROUP winners a pass: same signature, same sums up to their order.

    The live winners of filter f in the order visited, four per pass over the patch:
    dw[f, t] += g0 * patch0[t] + g1 * patch1[t] + g2 * patch2[t] + g3 * patch3[t]; the loop was
    bound by its stores (one per vector per winner), now one per vector per four winners.
    dx as winners_backward_kernel: dx patch += g * w[f], one winner a pass.
    """
    Hp, Wp = H + 2 * pad, W + 2 * pad
    H_out = Hp - KH + 1
    H_pool, W_pool = H_out // 2, (Wp - KW + 1) // 2
    pitch = Wp * C
    column = KH * C
    lanes = rounded_patch(C, KH, KW)
    stacked_size = H_out * Wp * column + lanes

    def kernel(dout, z, x, w, chunks, length):
        N = x.shape[0]
        partial_dw = np.zeros((chunks, F, COPIES, lanes), dtype=x.dtype)
        partial_db = np.zeros((chunks, F), dtype=x.dtype)
        non_finite = np.zeros(chunks, dtype=np.int64)
        dx = np.empty((N if input_gradient else 0, C, H, W), dtype=x.dtype)
        w_patch, bad_weights = patch_weights(w, C, KH, KW, column, lanes)
        for chunk in numba.prange(chunks):
            image = np.zeros(Hp * pitch, dtype=x.dtype)
            stacked = np.zeros(stacked_size, dtype=x.dtype)
            stacked_gradient = np.empty(stacked_size, dtype=x.dtype)
            image_gradient = np.empty(Hp * pitch, dtype=x.dtype)
            group_g = np.zeros(GROUP, dtype=x.dtype)  # the winners of filter f waiting to be added
            group_start = np.zeros(GROUP, dtype=np.int64)
            bad = 0
            for n in range(chunk, N, chunks):
                bad += stage_image(x, n, image, C, H, W, pad, pitch)
                stack_columns(image, stacked, C, KH, H_out, Wp, pitch, column)
                if input_gradient:
                    stacked_gradient[:] = 0.0
                for f in range(F):
                    total = partial_db[chunk, f]
                    gathered = 0
                    passes = 0
                    for i in range(H_pool):
                        for first in range(WINDOW_STRIDE):
                            for j in range(first, W_pool, WINDOW_STRIDE):
                                code, alive, finite = winner_of_window(z, n, f, 2 * i, 2 * j)
                                g = dout[n, f, i, j]
                                bad += not (finite and g - g == 0)
                                if not alive:
                                    continue
                                total += g
                                start = ((2 * i + code // 2) * Wp + 2 * j + code % 2) * column
                                if input_gradient:
                                    for t in range(length):
                                        stacked_gradient[start + t] += g * w_patch[f, t]
                                group_g[gathered] = g
                                group_start[gathered] = start
                                gathered += 1
                                if gathered == GROUP:
                                    add_group(partial_dw, chunk, f, passes % COPIES, group_g, group_start, stacked, length)
                                    gathered = 0
                                    passes += 1
                    if gathered:
                        for k in range(gathered, GROUP):
                            group_g[k] = 0.0
                            group_start[k] = group_start[0]
                        add_group(partial_dw, chunk, f, passes % COPIES, group_g, group_start, stacked, length)
                    partial_db[chunk, f] = total
                if input_gradient:
                    fold_stacked_gradient(stacked_gradient, image_gradient, dx, n, C, H, W, KH, pad, H_out, Wp, pitch, column)
            non_finite[chunk] = bad
        dw = reduce_patch_sums(partial_dw, C, KH, KW, column)
        return dx, dw, partial_db.sum(axis=0), non_finite.sum() + bad_weights

    return compile_variant(
        kernel, "tuned_winner_groups", parallel=True, fastmath={"contract"}, error_model="numpy"
    )


@numba.njit(inline="always")
def add_group(partial_dw, chunk, f, copy, group_g, group_start, stacked, length):
    """partial_dw[chunk, f, copy, t] += sum_k group_g[k] * stacked[group_start[k] + t], GROUP = 4 winners in one pass.

    Views, not indices: with four offsets into stacked LLVM kept the indexed loop scalar (its
    run-time overlap check failed); four patches per view's reference count are worth it.
    """
    g0, g1, g2, g3 = group_g[0], group_g[1], group_g[2], group_g[3]
    p0, p1 = stacked[group_start[0] :], stacked[group_start[1] :]
    p2, p3 = stacked[group_start[2] :], stacked[group_start[3] :]
    total = partial_dw[chunk, f, copy]
    for t in range(length):
        total[t] += (g0 * p0[t] + g1 * p1[t]) + (g2 * p2[t] + g3 * p3[t])


def rounded_patch(C, KH, KW):
    """A winner's patch length, KW*KH*C, rounded up to whole vectors of LANES."""
    return -(-KW * KH * C // LANES) * LANES


def winners_gradients(factory, dout, x, z, w, pad, input_gradient):
    """(dx or None, dw, db) from the kernel `factory` makes for the layer (winners_backward_kernel or
    grouped_winners_kernel), the images split among the threads; None if it found an inf or a NaN."""
    _, C, H, W = x.shape
    F, _, KH, KW = w.shape
    kernel = factory(C, H, W, F, KH, KW, pad, bool(input_gradient))
    chunks = min(numba.get_num_threads(), x.shape[0])
    dx, dw, db, non_finite = kernel(dout, z, x, w, chunks, rounded_patch(C, KH, KW))
    if non_finite:
        return None
    return (dx if input_gradient else None), dw, db


def conv2d_relu_maxpool2d_backward_winners(dout, x, z, w, pad, input_gradient):
    """(dx or None, dw, db) of conv2d (stride 1) -> ReLU -> 2x2 max-pool of stride 2, from the
    winners; None if dout, x, z or w holds an inf or a NaN.

    For every window of z whose first maximum of relu(z) sits at (y, x) with z[y, x] > 0, and g
    its dout: dw[f, c, ki, kj] += g * xpad[c, y + ki, x + kj], db[f] += g, and
    dxpad[c, y + ki, x + kj] += g * w[f, c, ki, kj]. Every other term of conv2d_backward(dz) is
    a zero, so the sums are the same up to their order. Not so with an inf or a NaN (0 * inf is
    a NaN where a term is skipped here): then None, and the caller runs the unfused kernels.
    The kernel for the shape, chosen here: grouped_winners_kernel on patches of GROUPED_FROM
    values and more, else winners_backward_kernel.
    dout (N, F, H'', W''), x (N, C, H, W), z (N, F, H', W'), w (F, C, KH, KW) ->
    (dx (N, C, H, W) or None, dw (F, C, KH, KW), db (F,))
    """
    F, C, KH, KW = w.shape
    factory = grouped_winners_kernel if rounded_patch(C, KH, KW) >= GROUPED_FROM else winners_backward_kernel
    return winners_gradients(factory, dout, x, z, w, pad, input_gradient)
