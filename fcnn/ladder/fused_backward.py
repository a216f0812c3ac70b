"""The fused backward's ladder: conv2d -> ReLU -> 2x2 max-pool, from three kernels in a row to the winners alone
(and a side branch back to a dense dz routed without a branch, for dw alone on the smallest patches).

Every rung has conv2d_relu_maxpool2d_backward's signature, (dout, x, z, w, stride, pad, size,
pool_stride, input_gradient) -> (dx or None, dw, db), and gives the numbers of loop.py's three
backward kernels in a row. The rungs written for a stride-1 convolution and a 2x2 pool of stride
2 hand other shapes, and arrays holding an inf or a NaN, to the rung before them. docs/ladder.md
has the figures.
"""

import functools

import numba
import numpy as np

from fcnn.kernels import numba_backend
from fcnn.kernels.numba_cache import cached, compile_variant
from fcnn.kernels.tuned import fused
from fcnn.kernels.tuned.conv_backward import finite, input_gradient_from_wide, weight_gradient_from_wide, wide_layout
from fcnn.kernels.tuned.winners_backward import (
    COPIES,
    rounded_patch,
    stage_image,
    unstage_image,
    winner_of_window,
    winners_backward_kernel,
    winners_gradients,
)
from fcnn.ladder.rung import Rung


def unfused_compiled_loops(dout, x, z, w, stride, pad, size, pool_stride, input_gradient):
    """Rung 1: maxpool2d_backward, relu's mask and conv2d_backward, the numba backend's compiled loops.

    Three passes, two arrays of z's size made in between (the pool's dx and the masked dz), and
    a dense convolution backward over dz, three quarters of which are zeros.
    """
    pool_stride = size if pool_stride is None else pool_stride
    dz = numba_backend.maxpool2d_backward(dout, np.maximum(z, 0), size, pool_stride) * (z > 0)
    if input_gradient:
        return numba_backend.conv2d_backward(dz, x, w, stride, pad)
    return (None, *numba_backend.conv2d_backward_weights(dz, x, w, stride, pad))


def unfused_tuned_convolution(dout, x, z, w, stride, pad, size, pool_stride, input_gradient):
    """Rung 2: the same three passes, the convolution's backward the tuned one (its own ladders)."""
    return fused.unfused_backward(dout, x, z, w, stride, pad, size, pool_stride, input_gradient)


def _fits(stride, size, pool_stride):
    """Whether the fused fast paths take the layer: a stride-1 convolution, a 2x2 pool of stride 2."""
    return stride == 1 and size == 2 and pool_stride in (None, 2)


@cached(parallel=True, error_model="numpy")
def _unpool2x2_relu_wide_rows(dout, z, row_pitch, lead, plane):
    """dz = relu'(z) * maxpool2d_backward(dout, relu(z), 2, 2), on wide rows, and its per-image sums.

    Each window's gradient goes to the first maximum of relu(z) (a NaN beats every number),
    times relu' there: dout where z > 0, else dout * 0 (0, or NaN for a dout of inf or NaN, as
    in the unfused composition). dout (N, F, H'', W''), z (N, F, H', W') ->
    wide (N, F, plane): zeros, dz's row i at lead + i*row_pitch; sums (N, F) = sum_{i, j} dz.
    """
    N, F, H_out, W_out = dout.shape
    wide = np.empty((N, F, plane), dtype=z.dtype)
    sums = np.empty((N, F), dtype=z.dtype)
    for n in numba.prange(N):
        wide[n] = 0.0
        for f in range(F):
            total = wide[n, f, 0]  # zero, in z's dtype
            for i in range(H_out):
                for j in range(W_out):
                    # loop.py's comparisons in its order: strictly greater replaces, so ties keep the first.
                    best_di, best_dj = 0, 0
                    largest = z[n, f, 2 * i, 2 * j]
                    largest = 0.0 if largest < 0 else largest  # relu(z): a NaN stays NaN
                    for di in range(2):
                        for dj in range(2):
                            value = z[n, f, 2 * i + di, 2 * j + dj]
                            value = 0.0 if value < 0 else value
                            if not (value <= largest or np.isnan(largest)):
                                largest = value
                                best_di, best_dj = di, dj
                    gradient = dout[n, f, i, j]
                    if not z[n, f, 2 * i + best_di, 2 * j + best_dj] > 0:
                        gradient -= gradient  # relu' = 0: dout * 0, which is NaN for a dout of inf or NaN
                    wide[n, f, lead + (2 * i + best_di) * row_pitch + 2 * j + best_dj] = gradient
                    total += gradient
            sums[n, f] = total
    return wide, sums


def routed_into_wide_rows(dout, x, z, w, stride, pad, size, pool_stride, input_gradient):
    """Rung 3: one pass routes each window's gradient to its winner (where z > 0) straight into
    the wide rows the tuned correlations read (conv_backward.py): no pool dx, no mask, no copy.
    The correlations are still dense, over the zeros of the other three positions of each window."""
    if not (_fits(stride, size, pool_stride) and finite(dout, x, w)):
        return unfused_tuned_convolution(dout, x, z, w, stride, pad, size, pool_stride, input_gradient)
    row_pitch, lead, plane = wide_layout(x.shape, w.shape, pad, input_gradient)
    dz_wide, sums = _unpool2x2_relu_wide_rows(dout, z, row_pitch, lead, plane)
    dw, db = weight_gradient_from_wide(dz_wide, sums, lead, x, w, pad)
    dx = input_gradient_from_wide(dz_wide, lead, x.shape, w, pad) if input_gradient else None
    return dx, dw, db


# Each winner's patch row (KW taps x C channels, channel-last) is rounded up to whole vectors of 8
# (the float32 lanes of a 256-bit vector): full-width multiply-adds, no scalar
# tail. The extra lanes pair the next columns with zero weights (dx) or sum into accumulators
# that are dropped (dw).
LANES = 8


@functools.cache
def _winners_by_rows_kernel(C, H, W, F, KH, KW, pad, input_gradient):
    """Rung 4's kernel for one layer shape: (dout, z, x, w, chunks, lanes) -> (dx, dw, db, non_finite).

    dout (N, F, H'', W''), z (N, F, H', W'), x (N, C, H, W), w (F, C, KH, KW) -> dx (N, C, H, W)
    (or (0, C, H, W) when not input_gradient), dw (F, C, KH, KW), db (F,), and how many values
    of dout, z, x, w were found not finite (then dx, dw, db are not loop.py's: see the wrapper).
    chunks: how many parts the images are split in (one per thread); lanes: the patch row's
    length, passed at run time so that LLVM vectorises its loop (a constant 8 is unrolled into
    scalar code instead, whose loads it may not move above the stores of a possibly aliased row).
    """
    Hp, Wp = H + 2 * pad, W + 2 * pad
    H_pool, W_pool = (Hp - KH + 1) // 2, (Wp - KW + 1) // 2
    row = patch_row(C, KW)
    pitch = Wp * C  # one padded input row, channel-last: pixel (y, x, c) at y*pitch + x*C + c
    plane = Hp * pitch + row  # the extra row's worth keeps the last patch's rounded-up reads inside

    def kernel(dout, z, x, w, chunks, lanes):
        N = x.shape[0]
        partial_dw = np.zeros((chunks, F, COPIES, KH, row), dtype=x.dtype)
        partial_db = np.zeros((chunks, F), dtype=x.dtype)
        non_finite = np.zeros(chunks, dtype=np.int64)
        dx = np.empty((N if input_gradient else 0, C, H, W), dtype=x.dtype)
        # w channel-last, each row zero beyond its KW*C values: w_rows[f, ki, kj*C + c] = w[f, c, ki, kj]
        w_rows = np.zeros((F, KH, row), dtype=x.dtype)
        bad_weights = 0
        for f in range(F):
            for c in range(C):
                for ki in range(KH):
                    for kj in range(KW):
                        w_rows[f, ki, kj * C + c] = w[f, c, ki, kj]
                        bad_weights += not (w[f, c, ki, kj] - w[f, c, ki, kj] == 0)
        for chunk in numba.prange(chunks):
            image = np.zeros(plane, dtype=x.dtype)  # x[n] zero-padded, channel-last; its border stays 0
            image_gradient = np.empty(plane, dtype=x.dtype)  # dx[n] the same way
            bad = 0
            for n in range(chunk, N, chunks):
                bad += stage_image(x, n, image, C, H, W, pad, pitch)
                if input_gradient:
                    image_gradient[:] = 0.0
                for f in range(F):
                    total = partial_db[chunk, f]
                    for i in range(H_pool):
                        for j in range(W_pool):
                            code, alive, finite = winner_of_window(z, n, f, 2 * i, 2 * j)
                            g = dout[n, f, i, j]
                            bad += not (finite and g - g == 0)
                            if not alive:
                                continue  # relu' = 0: the gradient there is dout * 0 = 0, nothing to add
                            total += g
                            start = (2 * i + code // 2) * pitch + (2 * j + code % 2) * C
                            copy = j % COPIES
                            # Plain indices, no slices: a view made in this loop costs a reference count each time.
                            for ki in range(KH):
                                for t in range(lanes):
                                    partial_dw[chunk, f, copy, ki, t] += g * image[start + ki * pitch + t]
                            if input_gradient:
                                for ki in range(KH):
                                    for t in range(lanes):
                                        image_gradient[start + ki * pitch + t] += g * w_rows[f, ki, t]
                    partial_db[chunk, f] = total
                if input_gradient:
                    unstage_image(image_gradient, dx, n, C, H, W, pad, pitch)
            non_finite[chunk] = bad
        dw = np.zeros((F, C, KH, KW), dtype=x.dtype)
        for chunk in range(chunks):
            for f in range(F):
                for copy in range(COPIES):
                    for c in range(C):
                        for ki in range(KH):
                            for kj in range(KW):
                                dw[f, c, ki, kj] += partial_dw[chunk, f, copy, ki, kj * C + c]
        return dx, dw, partial_db.sum(axis=0), non_finite.sum() + bad_weights

    return compile_variant(
        kernel, "ladder_winners_by_patch_rows", parallel=True, fastmath={"contract"}, error_model="numpy"
    )


def patch_row(C, KW):
    """The length of a winner's patch row: KW*C values, rounded up to whole vectors of LANES."""
    return -(-KW * C // LANES) * LANES


def winners_by_patch_rows(dout, x, z, w, stride, pad, size, pool_stride, input_gradient):
    """Rung 4: no dense plane at all: each live winner g adds g * (its input patch) to dw and
    g * w[f] to dx's patch, row by row: KH loops of KW*C values (channel-last, rounded up to
    whole vectors) per winner. A quarter of the work or less, but each short loop has its
    set-up and its rounded-up lanes: a win on LeNet-5's second conv (rows of 30), a loss on the
    one-channel convs (rows of 5 and 3 in vectors of 8)."""
    if _fits(stride, size, pool_stride):
        _, C, H, W = x.shape
        F, _, KH, KW = w.shape
        kernel = _winners_by_rows_kernel(C, H, W, F, KH, KW, pad, bool(input_gradient))
        chunks = min(numba.get_num_threads(), x.shape[0])
        dx, dw, db, non_finite = kernel(dout, z, x, w, chunks, patch_row(C, KW))
        if not non_finite:
            return (dx if input_gradient else None), dw, db
    return unfused_tuned_convolution(dout, x, z, w, stride, pad, size, pool_stride, input_gradient)


def winners_by_whole_patches(dout, x, z, w, stride, pad, size, pool_stride, input_gradient):
    """Rung 5: each winner's whole patch one contiguous run of a stacked input (winners_backward.py's
    winners_backward_kernel), one loop per winner instead of KH; windows visited three apart.
    The tuned kernel on patches under GROUPED_FROM values."""
    if _fits(stride, size, pool_stride):
        gradients = winners_gradients(winners_backward_kernel, dout, x, z, w, pad, input_gradient)
        if gradients is not None:
            return gradients
    return unfused_tuned_convolution(dout, x, z, w, stride, pad, size, pool_stride, input_gradient)


ROUTED_MAX_PATCH = 9  # rung 6 takes dw alone on patches of this many values or fewer (the seed's conv)


@functools.cache
def _routed_dense_kernel(C, H, W, F, KH, KW, pad):
    """Rung 6's kernel for one layer shape: (dout, z, x, chunks) -> (dw, db, non_finite).

    Per image: dz[f, p] (p = y*Wp + x, wide rows of the padded pitch) = dout at the first maximum
    of each 2x2 window of z where z > 0, else 0, from selects (winner_of_window's rule); then
    dw[f, c, ki, kj] += sum_p dz[f, p] * xpad[c, p + ki*Wp + kj], one dot product over the whole
    plane per tap, and db[f] += dz. Four times the multiply-adds of the winners alone, but no
    branch and long vectors. dout (N, F, H'', W''), z (N, F, H', W'), x (N, C, H, W) ->
    dw (F, C, KH, KW), db (F,), and how many values of dout, z, x were found not finite (then
    dw, db are not loop.py's). chunks: how many parts the images are split in (one per thread).
    """
    Hp, Wp = H + 2 * pad, W + 2 * pad
    H_pool, W_pool = (Hp - KH + 1) // 2, (Wp - KW + 1) // 2
    pitch = Wp * C
    # The positions the windows cover, as wide rows: the columns between (and a rim no window
    # covers) keep dz = 0, never written.
    P = (2 * H_pool - 1) * Wp + 2 * W_pool

    def kernel(dout, z, x, chunks):
        N = x.shape[0]
        partial_dw = np.zeros((chunks, F, C, KH, KW), dtype=x.dtype)
        partial_db = np.zeros((chunks, F), dtype=x.dtype)
        non_finite = np.zeros(chunks, dtype=np.int64)
        for chunk in numba.prange(chunks):
            image = np.zeros(Hp * pitch, dtype=x.dtype)
            dz = np.zeros((F, P), dtype=x.dtype)
            bad = 0
            for n in range(chunk, N, chunks):
                bad += stage_image(x, n, image, C, H, W, pad, pitch)
                for f in range(F):
                    total = partial_db[chunk, f]
                    for i in range(H_pool):
                        for j in range(W_pool):
                            a, b = z[n, f, 2 * i, 2 * j], z[n, f, 2 * i, 2 * j + 1]
                            c_, d = z[n, f, 2 * i + 1, 2 * j], z[n, f, 2 * i + 1, 2 * j + 1]
                            g = dout[n, f, i, j]
                            check = a + b + c_ + d + g
                            bad += not (check - check == 0)
                            # The first maximum in row-major order: strictly greater than those before it, at
                            # least those after; alive where z > 0 there. (For finite values only: see bad.)
                            live = g * (max(max(a, b), max(c_, d)) > 0)
                            p = 2 * i * Wp + 2 * j
                            dz[f, p] = live * ((a >= b) & (a >= c_) & (a >= d))
                            dz[f, p + 1] = live * ((b > a) & (b >= c_) & (b >= d))
                            dz[f, p + Wp] = live * ((c_ > a) & (c_ > b) & (c_ >= d))
                            dz[f, p + Wp + 1] = live * ((d > a) & (d > b) & (d > c_))
                            total += live
                    partial_db[chunk, f] = total
                # One vectorised reduction per tap ("reassoc"): keeping the taps' sums for a vector
                # of filters in registers instead (filters in lanes) left them in memory, 3x slower.
                for f in range(F):
                    for c in range(C):
                        for ki in range(KH):
                            for kj in range(KW):
                                total = partial_dw[chunk, f, c, ki, kj]
                                for p in range(P):
                                    total += dz[f, p] * image[(p + ki * Wp + kj) * C + c]
                                partial_dw[chunk, f, c, ki, kj] = total
            non_finite[chunk] = bad
        return partial_dw.sum(axis=0), partial_db.sum(axis=0), non_finite.sum()

    # "reassoc" lets the dot products vectorise; no "nnan" or "ninf", which would fold the finiteness checks away.
    return compile_variant(
        kernel, "ladder_routed_dense", parallel=True, fastmath={"contract", "reassoc"}, error_model="numpy"
    )


def routed_gradients(dout, x, z, w_shape, pad):
    """(None, dw, db) from _routed_dense_kernel, the images split among the threads; None if it found an inf or a NaN."""
    _, C, H, W = x.shape
    F, _, KH, KW = w_shape
    chunks = min(numba.get_num_threads(), x.shape[0])
    dw, db, non_finite = _routed_dense_kernel(C, H, W, F, KH, KW, pad)(dout, z, x, chunks)
    return None if non_finite else (None, dw, db)


def routed_dense_dw(dout, x, z, w, stride, pad, size, pool_stride, input_gradient):
    """Rung 6 (a side branch): for dw alone on patches of ROUTED_MAX_PATCH values or fewer, a
    dense dz routed without a branch and one vectorised dot product per tap (_routed_dense_kernel);
    other layers, and inf or NaN, go to rung 5. Faster than rung 5 on random inputs (the seed's
    conv 7.9 -> 6.1 us per image), slower on MNIST's digits, whose dead or tied windows make
    rung 5's branches predictable: docs/ladder.md."""
    F, C, KH, KW = w.shape
    if _fits(stride, size, pool_stride) and not input_gradient and C * KH * KW <= ROUTED_MAX_PATCH:
        gradients = routed_gradients(dout, x, z, w.shape, pad)
        if gradients is not None:
            return gradients
    return winners_by_whole_patches(dout, x, z, w, stride, pad, size, pool_stride, input_gradient)


FUSED_RUNGS = (
    Rung("unfused, compiled loops", unfused_compiled_loops, None),
    Rung("unfused, tuned convolution", unfused_tuned_convolution, "unfused, compiled loops"),
    Rung("routed into wide rows", routed_into_wide_rows, "unfused, tuned convolution"),
    Rung("winners by patch rows", winners_by_patch_rows, "routed into wide rows"),
    Rung("winners by whole patches", winners_by_whole_patches, "winners by patch rows"),
    Rung("routed dense dw, small patches", routed_dense_dw, "winners by whole patches"),
    # The tuned kernel (winners_backward.py): on patches of GROUPED_FROM values and more (bn's
    # second conv), dw from four winners of a filter per pass; else rung 5's kernel.
    Rung("dw four winners a pass (tuned)", fused.conv2d_relu_maxpool2d_backward, "winners by whole patches"),
)
