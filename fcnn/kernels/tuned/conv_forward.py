"""Tuned conv2d forward: stride-1 kernels compiled per layer shape, in the register tile that fits the machine.

Three register tiles, all at the top of the ladder (fcnn.ladder, docs/ladder.md), chosen per
machine and layer shape by fcnn.kernels.tuned.machine.conv_forward_tile:
- "two filters" and "four filters" read each padded input plane as one flat "wide row" of pitch
  Wp, so output pixel p = i*Wp + j meets input pixel p + ki*Wp + kj through tap (ki, kj): one
  long unit-stride loop over p that LLVM vectorises, the KH x KW taps unrolled inside it, two or
  four filters sharing every input load;
- "filters in lanes" puts the filters in the vector lanes and a row of output columns in
  registers, as oneDNN does: no junk columns, but 2 x 10 vector sums, which only AVX-512's 32
  registers hold.
The sizes are compile-time constants (a kernel per shape). Other strides go to the numba
backend's compiled loop. Every tile gives loop.py's numbers within rounding, NaN and inf included.
"""

import functools

import numba
import numpy as np

from fcnn.kernels import compiled_loop
from fcnn.kernels.numba_cache import compile_variant
from fcnn.kernels.tuned import machine

# Every tile: numba.prange over the batch; `a += w * x` as one fused multiply-add; no
# ZeroDivisionError branches in the hot loops.
OPTIONS = dict(parallel=True, fastmath={"contract"}, error_model="numpy")


def conv2d_forward(x, w, b, stride=1, pad=0):
    """Convolution layer (cross-correlation), forward, tuned.

    out[n, f, i, j] = b[f] + sum_{c, ki, kj} w[f, c, ki, kj] * xpad[n, c, i*stride + ki, j*stride + kj]

    x (N, C, H, W), w (F, C, KH, KW), b (F,) -> out (N, F, H', W'),
    H' = 1 + (H + 2*pad - KH) // stride, W' = 1 + (W + 2*pad - KW) // stride.
    C-contiguous arrays of one float dtype; stride and pad ints (the registry sees to that).
    """
    if stride != 1:
        return compiled_loop.conv2d_forward(x, w, b, stride, pad)
    F, C, KH, KW = w.shape
    return conv2d_forward_in_tile(machine.conv_forward_tile(C, F, KH, KW), x, w, b, pad)


def conv2d_forward_in_tile(tile, x, w, b, pad=0):
    """conv2d_forward at stride 1 in the register tile named `tile` (one of machine.TILES), whatever the machine."""
    if tile not in KERNEL_FACTORIES:
        raise ValueError(f"conv2d_forward_in_tile: tile must be one of {', '.join(machine.TILES)}; got {tile!r}")
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    return KERNEL_FACTORIES[tile](C, H, W, F, KH, KW, pad)(x, w, b)


def wide_sizes(H, W, KH, KW, pad):
    """(Hp, Wp, H', W', P) of a stride-1 convolution in the wide-row layout.

    Hp = H + 2*pad, Wp = W + 2*pad, H' = 1 + (H + 2*pad - KH), W' = 1 + (W + 2*pad - KW)
    (loop.output_size at stride 1); output position (i, j) is wide position p = i*Wp + j, and
    P = (H' - 1)*Wp + W' positions cover them all (the last row's Wp - W' junk columns are not
    needed, and would read past the end of the padded plane). Plain Python, so a kernel factory
    pays no compile for it; the ladder's rungs compile it (fcnn.ladder.layout).
    """
    H_out, W_out = 1 + (H + 2 * pad - KH), 1 + (W + 2 * pad - KW)
    Wp = W + 2 * pad
    return H + 2 * pad, Wp, H_out, W_out, (H_out - 1) * Wp + W_out


# numba inlines it into the kernel that calls it, so a kernel compiled per shape sees its sizes
# as constants here too. The ladder's rungs pad with it as well (fcnn.ladder.layout).
@numba.njit(inline="always")
def padded_planes(image, pad, Hp, Wp):
    """image (C, H, W) -> xpad (C, Hp*Wp): plane c zero-padded, pixel (y, x) at (y + pad)*Wp + x + pad.

    Hp = H + 2*pad, Wp = W + 2*pad: passed in, so a kernel compiled per shape passes constants.
    """
    C, H, W = image.shape
    xpad = np.zeros((C, Hp * Wp), dtype=image.dtype)
    for c in range(C):
        for y in range(H):
            for x_ in range(W):
                xpad[c, (y + pad) * Wp + x_ + pad] = image[c, y, x_]
    return xpad


@functools.cache
def stride1_kernel(C, H, W, F, KH, KW, pad):
    """The "two filters" kernel for one layer shape: (x, w, b) -> out, any batch size N.

    The sizes are captured by the closure, so numba compiles them in as constants: LLVM knows
    every trip count, unrolls the KH x KW taps and needs no remainder checks for them. The
    compiled kernel is named for them too (tuned_conv2d_forward_stride1_..._C1_..._pad0), so
    the disk cache keeps one entry per shape, and no two shapes share their code's symbols.
    """
    Hp, Wp, H_out, W_out, P = wide_sizes(H, W, KH, KW, pad)

    def kernel(x, w, b):
        N = x.shape[0]
        out = np.empty((N, F, H_out, W_out), dtype=x.dtype)
        # One parallel region per call, one image per iteration: 64 images keep 2 cores busy.
        for n in numba.prange(N):
            xpad = padded_planes(x[n], pad, Hp, Wp)
            wide = np.empty((2, P), dtype=x.dtype)
            # Two filters at a time: each input load feeds two FMAs, and the two running sums
            # are two independent dependency chains, so the FMA latency is hidden. (Four
            # filters made a 5x5 body too large for LLVM to vectorise; see the ladder.)
            # An odd F computes its last filter twice, as f0 and f1: same result, written twice.
            for f0 in range(0, F, 2):
                f1 = min(f0 + 1, F - 1)
                for p in range(P):
                    wide[0, p] = b[f0]
                    wide[1, p] = b[f1]
                for c in range(C):
                    # The vectorised loop: a vector of positions p per step (8 float32 in 256 bits).
                    # Its KH*KW taps unroll in it, so the sums stay in registers over a whole
                    # channel: one load and one store of `wide` per channel, not per tap.
                    for p in range(P):
                        sum0 = wide[0, p]
                        sum1 = wide[1, p]
                        for ki in range(KH):
                            for kj in range(KW):
                                pixel = xpad[c, p + ki * Wp + kj]
                                sum0 += w[f0, c, ki, kj] * pixel
                                sum1 += w[f1, c, ki, kj] * pixel
                        wide[0, p] = sum0
                        wide[1, p] = sum1
                for i in range(H_out):
                    for j in range(W_out):
                        out[n, f0, i, j] = wide[0, i * Wp + j]
                        out[n, f1, i, j] = wide[1, i * Wp + j]
        return out

    return compile_variant(kernel, "tuned_conv2d_forward_stride1", **OPTIONS)


@functools.cache
def four_filters_kernel(C, H, W, F, KH, KW, pad):
    """The "four filters" kernel for one layer shape: "two filters" with four sums per position p.

    Each input load feeds four FMAs, four independent chains. For kernels of up to 3x3 taps the
    body (4 x 9 FMAs) still vectorises; for 5x5 LLVM gives up (machine.FOUR_FILTERS_MAX_TAPS).
    """
    Hp, Wp, H_out, W_out, P = wide_sizes(H, W, KH, KW, pad)

    def kernel(x, w, b):
        N = x.shape[0]
        out = np.empty((N, F, H_out, W_out), dtype=x.dtype)
        for n in numba.prange(N):
            xpad = padded_planes(x[n], pad, Hp, Wp)
            wide = np.empty((4, P), dtype=x.dtype)
            # A last block of fewer than four filters repeats filter F - 1: same values, written again.
            for f0 in range(0, F, 4):
                f1 = min(f0 + 1, F - 1)
                f2 = min(f0 + 2, F - 1)
                f3 = min(f0 + 3, F - 1)
                for p in range(P):
                    wide[0, p] = b[f0]
                    wide[1, p] = b[f1]
                    wide[2, p] = b[f2]
                    wide[3, p] = b[f3]
                for c in range(C):
                    for p in range(P):
                        sum0 = wide[0, p]
                        sum1 = wide[1, p]
                        sum2 = wide[2, p]
                        sum3 = wide[3, p]
                        for ki in range(KH):
                            for kj in range(KW):
                                pixel = xpad[c, p + ki * Wp + kj]
                                sum0 += w[f0, c, ki, kj] * pixel
                                sum1 += w[f1, c, ki, kj] * pixel
                                sum2 += w[f2, c, ki, kj] * pixel
                                sum3 += w[f3, c, ki, kj] * pixel
                        wide[0, p] = sum0
                        wide[1, p] = sum1
                        wide[2, p] = sum2
                        wide[3, p] = sum3
                for i in range(H_out):
                    for j in range(W_out):
                        out[n, f0, i, j] = wide[0, i * Wp + j]
                        out[n, f1, i, j] = wide[1, i * Wp + j]
                        out[n, f2, i, j] = wide[2, i * Wp + j]
                        out[n, f3, i, j] = wide[3, i * Wp + j]
        return out

    return compile_variant(kernel, "tuned_conv2d_forward_stride1_four_filters", **OPTIONS)


@functools.cache
def filters_in_lanes_kernel(C, H, W, F, KH, KW, pad):
    """The "filters in lanes" kernel for one layer shape: filters across the vector lanes, columns in registers.

    For output row i and a block of J = min(LANES_COLUMNS, W') columns from j0, sums[j, f] for
    all F filters run over the whole C x KH x KW reduction. LLVM unrolls the kj and j loops, which
    leaves the loop over f innermost and unit-stride (weights reordered to wt[c, ki, kj, f]), so
    it vectorises it (16 filters: one vector of 512 bits or two of 256), and keeps the J x F sums
    in registers across the kernel rows ki: each broadcast input pixel feeds F/lanes FMAs, each
    weight vector J. A last block that would run past W' starts at W' - J instead: its overlap is
    written twice with the same values.

    LLVM needs two rounds of optimisation to keep the sums in registers (the loops unrolled
    first, then the sums promoted out of them). A process that loads this kernel from numba's
    disk cache runs the copy that had both; the process that compiles it runs the prange body as
    numba optimised it once, 2.5x slower on Zen 5 (docs/ladder.md, "The forward on AMD EPYC
    Zen 5", has the figures and why a forceinline body, which mends it, was not kept).
    """
    Hp, Wp, H_out, W_out, _ = wide_sizes(H, W, KH, KW, pad)
    J = min(machine.LANES_COLUMNS, W_out)
    blocks = -(-W_out // J)

    def kernel(x, w, b):
        N = x.shape[0]
        out = np.empty((N, F, H_out, W_out), dtype=x.dtype)
        wt = np.empty((C, KH, KW, F), dtype=x.dtype)
        for f in range(F):
            for c in range(C):
                for ki in range(KH):
                    for kj in range(KW):
                        wt[c, ki, kj, f] = w[f, c, ki, kj]
        for n in numba.prange(N):
            xpad = padded_planes(x[n], pad, Hp, Wp)
            sums = np.empty((J, F), dtype=x.dtype)
            for i in range(H_out):
                for block in range(blocks):
                    j0 = min(block * J, W_out - J)
                    for j in range(J):
                        for f in range(F):
                            sums[j, f] = b[f]
                    for c in range(C):
                        for ki in range(KH):
                            row = (i + ki) * Wp + j0
                            for f in range(F):
                                for kj in range(KW):
                                    for j in range(J):
                                        sums[j, f] += wt[c, ki, kj, f] * xpad[c, row + j + kj]
                    for j in range(J):
                        for f in range(F):
                            out[n, f, i, j0 + j] = sums[j, f]
        return out

    return compile_variant(kernel, "tuned_conv2d_forward_stride1_filters_in_lanes", **OPTIONS)


KERNEL_FACTORIES = {
    machine.TWO_FILTERS: stride1_kernel,
    machine.FOUR_FILTERS: four_filters_kernel,
    machine.FILTERS_IN_LANES: filters_in_lanes_kernel,
}
