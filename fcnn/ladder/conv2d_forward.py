"""The rungs from loop.conv2d_forward to the tuned kernel, each one transformation on the rung before.

Every rung has the kernel contract's signature and gives loop.py's numbers: stride-1 rungs hand
other strides to the numba backend's compiled loop. docs/ladder.md has each rung's figures;
the last rung is fcnn.kernels.tuned.conv_forward.conv2d_forward itself.
"""

import functools

import numba
import numpy as np

from fcnn.kernels import compiled_loop
from fcnn.kernels.tuned.conv_forward import compile_variant
from fcnn.kernels.tuned.conv_forward import conv2d_forward as two_filters

# Every compiled rung: numba.prange runs the batch on both cores; fastmath={"contract"} lets
# `a += w * x` be one fused multiply-add (as the numba backend compiles loop.py); no
# ZeroDivisionError checks, which would be branches in the hot loops.
OPTIONS = dict(parallel=True, fastmath={"contract"}, error_model="numpy")


def compiled_as_is(x, w, b, stride=1, pad=0):
    """Rung 1: loop.conv2d_forward compiled by numba as it is (the numba backend's general kernel).

    The output column j is innermost: the loop LLVM vectorises is one output row, W' long. With
    the stride a run-time value, `j*stride + kj` may jump, so the row is gathered, not loaded.
    """
    return compiled_loop.conv2d_forward(x, w, b, stride, pad)


def stride_constant(x, w, b, stride=1, pad=0):
    """Rung 2: the same source with stride = 1 a compile-time constant (the numba backend's fast path).

    Now `xpad[n, c, i + ki, j + kj]` walks a row one element at a time, so the row loop runs
    on 8-float vectors. But LeNet-5's second conv has rows W' = 10 long: one vector and 2
    leftover elements, done one by one in LLVM's remainder loop.
    """
    if stride != 1:
        return compiled_as_is(x, w, b, stride, pad)
    return compiled_loop.conv2d_forward_stride1(x, w, b, pad)


def _wide_rows_kernel(x, w, b, pad):
    """Rung 3's compiled kernel: x (N, C, H, W), w (F, C, KH, KW), b (F,) -> out (N, F, H', W'), stride 1."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    Hp, Wp = H + 2 * pad, W + 2 * pad
    H_out, W_out = Hp - KH + 1, Wp - KW + 1
    P = (H_out - 1) * Wp + W_out
    out = np.empty((N, F, H_out, W_out), dtype=x.dtype)
    for n in numba.prange(N):
        xpad = np.zeros((C, Hp * Wp), dtype=x.dtype)
        for c in range(C):
            for y in range(H):
                for x_ in range(W):
                    xpad[c, (y + pad) * Wp + x_ + pad] = x[n, c, y, x_]
        wide = np.empty(P, dtype=x.dtype)
        for f in range(F):
            for p in range(P):
                wide[p] = b[f]
            for c in range(C):
                for ki in range(KH):
                    for kj in range(KW):
                        # The tap's input, shifted: a view indexed by p >= 0 (see wide_rows).
                        shifted = xpad[c, ki * Wp + kj :]
                        for p in range(P):
                            wide[p] += w[f, c, ki, kj] * shifted[p]
            for i in range(H_out):
                for j in range(W_out):
                    out[n, f, i, j] = wide[i * Wp + j]
    return out


_wide_rows = compile_variant(_wide_rows_kernel, "ladder_wide_rows", **OPTIONS)


def wide_rows(x, w, b, stride=1, pad=0):
    """Rung 3: the vectorised loop runs along a whole flattened plane, not one output row.

    The padded input plane (Hp, Wp) is one flat row; output pixel p = i*Wp + j meets input
    pixel p + ki*Wp + kj through tap (ki, kj), so each tap is one unit-stride loop over
    P = (H' - 1)*Wp + W' positions (136 for LeNet-5's second conv: 17 full vectors, where a
    10-wide row gave one vector and a remainder). The price: Wp - W' junk columns per row,
    computed and dropped (4 of 14 here), and a copy of the plane into a padded buffer.
    A trap on the way: written `xpad[c, p + ki*Wp + kj]`, the loop did not vectorise (one
    vector FMA in the kernel's assembly, 9x slower on one thread): with Wp a run-time value,
    the index may be negative as far as LLVM knows, and numba's wrap-around of negative
    indices stays in the loop. Reading a view that starts at the tap's offset, indexed by
    p >= 0, removes it.
    """
    if stride != 1:
        return compiled_as_is(x, w, b, stride, pad)
    return _wide_rows(x, w, b, pad)


@functools.cache
def _sizes_constant_kernel(C, H, W, F, KH, KW, pad):
    """Rung 4's kernel for one layer shape: rung 3's loops, its sizes captured as constants."""
    Hp, Wp = H + 2 * pad, W + 2 * pad
    H_out, W_out = Hp - KH + 1, Wp - KW + 1
    P = (H_out - 1) * Wp + W_out

    def kernel(x, w, b):
        N = x.shape[0]
        out = np.empty((N, F, H_out, W_out), dtype=x.dtype)
        for n in numba.prange(N):
            xpad = np.zeros((C, Hp * Wp), dtype=x.dtype)
            for c in range(C):
                for y in range(H):
                    for x_ in range(W):
                        xpad[c, (y + pad) * Wp + x_ + pad] = x[n, c, y, x_]
            wide = np.empty(P, dtype=x.dtype)
            for f in range(F):
                for p in range(P):
                    wide[p] = b[f]
                for c in range(C):
                    for ki in range(KH):
                        for kj in range(KW):
                            shifted = xpad[c, ki * Wp + kj :]
                            for p in range(P):
                                wide[p] += w[f, c, ki, kj] * shifted[p]
                for i in range(H_out):
                    for j in range(W_out):
                        out[n, f, i, j] = wide[i * Wp + j]
        return out

    return compile_variant(kernel, "ladder_sizes_constant", **OPTIONS)


def sizes_constant(x, w, b, stride=1, pad=0):
    """Rung 4: rung 3 compiled once per layer shape, every size a compile-time constant.

    A kernel factory: the sizes are captured by a closure, which numba compiles in as
    constants. LLVM then knows that P = 136 is 17 vectors exactly (no remainder loop, no
    run-time checks of the trip count) and the address arithmetic folds. The loop body is
    still one FMA between a load and a store of `wide`: memory, not arithmetic, sets the pace.
    """
    if stride != 1:
        return compiled_as_is(x, w, b, stride, pad)
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    return _sizes_constant_kernel(C, H, W, F, KH, KW, pad)(x, w, b)


@functools.cache
def _taps_in_registers_kernel(C, H, W, F, KH, KW, pad):
    """Rung 5's kernel for one layer shape: the tap loops moved inside the loop over p."""
    Hp, Wp = H + 2 * pad, W + 2 * pad
    H_out, W_out = Hp - KH + 1, Wp - KW + 1
    P = (H_out - 1) * Wp + W_out

    def kernel(x, w, b):
        N = x.shape[0]
        out = np.empty((N, F, H_out, W_out), dtype=x.dtype)
        for n in numba.prange(N):
            xpad = np.zeros((C, Hp * Wp), dtype=x.dtype)
            for c in range(C):
                for y in range(H):
                    for x_ in range(W):
                        xpad[c, (y + pad) * Wp + x_ + pad] = x[n, c, y, x_]
            wide = np.empty(P, dtype=x.dtype)
            for f in range(F):
                for p in range(P):
                    wide[p] = b[f]
                for c in range(C):
                    for p in range(P):
                        total = wide[p]
                        for ki in range(KH):
                            for kj in range(KW):
                                total += w[f, c, ki, kj] * xpad[c, p + ki * Wp + kj]
                        wide[p] = total
                for i in range(H_out):
                    for j in range(W_out):
                        out[n, f, i, j] = wide[i * Wp + j]
        return out

    return compile_variant(kernel, "ladder_taps_in_registers", **OPTIONS)


def taps_in_registers(x, w, b, stride=1, pad=0):
    """Rung 5: register blocking: the KH x KW taps inside the loop over p, the sum in a register.

    With the tap loops' trip counts constant (rung 4), LLVM unrolls them completely, so the
    loop over p is innermost again and vectorises: each vector of 8 outputs sums its 25 taps
    in a register, loading and storing `wide` once per channel instead of once per tap. The
    25 weights are loop-invariant broadcasts (those that do not fit the 16 AVX2 registers
    are reloaded from the stack). What is left: one chain of 25 dependent FMAs per vector.
    """
    if stride != 1:
        return compiled_as_is(x, w, b, stride, pad)
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    return _taps_in_registers_kernel(C, H, W, F, KH, KW, pad)(x, w, b)


@functools.cache
def _four_filters_kernel(C, H, W, F, KH, KW, pad):
    """Rung 6's kernel for one layer shape: rung 5 with four filters sharing each input load."""
    Hp, Wp = H + 2 * pad, W + 2 * pad
    H_out, W_out = Hp - KH + 1, Wp - KW + 1
    P = (H_out - 1) * Wp + W_out

    def kernel(x, w, b):
        N = x.shape[0]
        out = np.empty((N, F, H_out, W_out), dtype=x.dtype)
        for n in numba.prange(N):
            xpad = np.zeros((C, Hp * Wp), dtype=x.dtype)
            for c in range(C):
                for y in range(H):
                    for x_ in range(W):
                        xpad[c, (y + pad) * Wp + x_ + pad] = x[n, c, y, x_]
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

    return compile_variant(kernel, "ladder_four_filters", **OPTIONS)


def four_filters(x, w, b, stride=1, pad=0):
    """Rung 6: four filters per pass over the input, four sums per position p.

    Each input load now feeds four FMAs instead of one, and four independent chains hide the
    FMA latency. A dead end for 5x5 kernels: 4 x 25 taps make the unrolled body too large,
    and LLVM no longer vectorises the loop over p (3x3 kernels, 36 taps, still gain).
    """
    if stride != 1:
        return compiled_as_is(x, w, b, stride, pad)
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    return _four_filters_kernel(C, H, W, F, KH, KW, pad)(x, w, b)


# The ladder in order, as (name, function). The last rung is the tuned kernel itself: rung 5
# with two filters per pass instead of four (fcnn.kernels.tuned.conv_forward).
RUNGS = (
    ("compiled as is", compiled_as_is),
    ("stride constant", stride_constant),
    ("wide rows", wide_rows),
    ("sizes constant", sizes_constant),
    ("taps in registers", taps_in_registers),
    ("four filters", four_filters),
    ("two filters (tuned)", two_filters),
)
