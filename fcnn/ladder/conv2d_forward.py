"""The rungs from loop.conv2d_forward to the tuned kernel, each one transformation on the rung it names.

Every rung has the kernel contract's signature and gives loop.py's numbers: stride-1 rungs hand
other strides to the numba backend's compiled loop. The padding and the copy out of the wide
rows are shared (fcnn.ladder.layout), so each compiled rung's body is the loop nest it changes.
The last rung is fcnn.kernels.tuned.conv_forward.conv2d_forward itself; docs/ladder.md has every
rung's figures and why it helps, or not.
"""

import functools

import numba
import numpy as np

from fcnn.kernels import compiled_loop
from fcnn.kernels.tuned.conv_forward import compile_variant
from fcnn.kernels.tuned.conv_forward import conv2d_forward as two_filters
from fcnn.ladder.layout import padded_planes, store_wide_rows, wide_sizes
from fcnn.ladder.rung import Rung

# Every compiled rung: numba.prange runs the batch on both cores; fastmath={"contract"} lets
# `a += w * x` be one fused multiply-add (as the numba backend compiles loop.py); no
# ZeroDivisionError checks, which would be branches in the hot loops.
OPTIONS = dict(parallel=True, fastmath={"contract"}, error_model="numpy")


def compiled_as_is(x, w, b, stride=1, pad=0):
    """Rung 1: loop.conv2d_forward compiled by numba as it is (the numba backend's general kernel)."""
    return compiled_loop.conv2d_forward(x, w, b, stride, pad)


def stride_constant(x, w, b, stride=1, pad=0):
    """Rung 2: the same source with stride = 1 a compile-time constant (the numba backend's fast path)."""
    if stride != 1:
        return compiled_as_is(x, w, b, stride, pad)
    return compiled_loop.conv2d_forward_stride1(x, w, b, pad)


def per_shape(kernel_for_shape, x, w, b, stride, pad):
    """kernel_for_shape(C, H, W, F, KH, KW, pad)(x, w, b): the stride-1 kernel compiled for this
    layer shape (any batch size); other strides go to rung 1."""
    if stride != 1:
        return compiled_as_is(x, w, b, stride, pad)
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    return kernel_for_shape(C, H, W, F, KH, KW, pad)(x, w, b)


@numba.njit(inline="always")
def _wide_rows_image(xpad, w, b, Wp, P, out_image):
    """Rung 3's loop nest for one image: out_image (F, H', W') from xpad (C, Hp*Wp), w, b."""
    F, C, KH, KW = w.shape
    wide = np.empty(P, dtype=xpad.dtype)
    for f in range(F):
        wide[:] = b[f]
        for c in range(C):
            for ki in range(KH):
                for kj in range(KW):
                    # The tap's input, shifted: a view indexed by p >= 0 (see wide_rows).
                    shifted = xpad[c, ki * Wp + kj :]
                    for p in range(P):
                        wide[p] += w[f, c, ki, kj] * shifted[p]
        store_wide_rows(wide, Wp, out_image[f])


def _wide_rows_kernel(x, w, b, pad):
    """Rung 3's compiled kernel: x (N, C, H, W), w (F, C, KH, KW), b (F,) -> out (N, F, H', W'), stride 1."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    Hp, Wp, H_out, W_out, P = wide_sizes(H, W, KH, KW, pad)
    out = np.empty((N, F, H_out, W_out), dtype=x.dtype)
    for n in numba.prange(N):
        _wide_rows_image(padded_planes(x[n], pad, Hp, Wp), w, b, Wp, P, out[n])
    return out


_wide_rows = compile_variant(_wide_rows_kernel, "ladder_wide_rows", **OPTIONS)


def wide_rows(x, w, b, stride=1, pad=0):
    """Rung 3: the vectorised loop runs along a whole flattened plane, not one output row.

    Output pixel p = i*Wp + j meets input pixel p + ki*Wp + kj through tap (ki, kj): each tap is
    one unit-stride loop over P = (H' - 1)*Wp + W' positions, Wp - W' junk columns per row
    computed and dropped. Written `xpad[c, p + ki*Wp + kj]` the loop does not vectorise (numba's
    wrap-around of an index that may be negative stays in it); a view from the tap's offset does.
    """
    if stride != 1:
        return compiled_as_is(x, w, b, stride, pad)
    return _wide_rows(x, w, b, pad)


@functools.cache
def _sizes_constant_kernel(C, H, W, F, KH, KW, pad):
    """Rung 4's kernel for one layer shape: rung 3's loop nest, inlined, its sizes captured as constants."""
    Hp, Wp, H_out, W_out, P = wide_sizes(H, W, KH, KW, pad)

    def kernel(x, w, b):
        N = x.shape[0]
        out = np.empty((N, F, H_out, W_out), dtype=x.dtype)
        for n in numba.prange(N):
            _wide_rows_image(padded_planes(x[n], pad, Hp, Wp), w, b, Wp, P, out[n])
        return out

    return compile_variant(kernel, "ladder_sizes_constant", **OPTIONS)


def sizes_constant(x, w, b, stride=1, pad=0):
    """Rung 4: rung 3 compiled once per layer shape, every size a compile-time constant.

    A kernel factory: the sizes are captured by a closure, which numba compiles in as
    constants, so LLVM knows every trip count (no remainder loop) and folds the addresses.
    The loop nest is rung 3's own (inlined): the step is in what the compiler knows.
    """
    return per_shape(_sizes_constant_kernel, x, w, b, stride, pad)


@functools.cache
def _taps_in_registers_kernel(C, H, W, F, KH, KW, pad):
    """Rung 5's kernel for one layer shape: the tap loops moved inside the loop over p."""
    Hp, Wp, H_out, W_out, P = wide_sizes(H, W, KH, KW, pad)

    def kernel(x, w, b):
        N = x.shape[0]
        out = np.empty((N, F, H_out, W_out), dtype=x.dtype)
        for n in numba.prange(N):
            xpad = padded_planes(x[n], pad, Hp, Wp)
            wide = np.empty(P, dtype=x.dtype)
            for f in range(F):
                wide[:] = b[f]
                for c in range(C):
                    for p in range(P):
                        total = wide[p]
                        for ki in range(KH):
                            for kj in range(KW):
                                total += w[f, c, ki, kj] * xpad[c, p + ki * Wp + kj]
                        wide[p] = total
                store_wide_rows(wide, Wp, out[n, f])
        return out

    return compile_variant(kernel, "ladder_taps_in_registers", **OPTIONS)


def taps_in_registers(x, w, b, stride=1, pad=0):
    """Rung 5: register blocking: the KH x KW taps inside the loop over p, the sum in a register.

    With the tap loops' trip counts constant (rung 4) LLVM unrolls them, the loop over p is
    innermost and vectorises, and each vector of outputs sums its taps in a register: one load
    and one store of `wide` per channel instead of per tap.
    """
    return per_shape(_taps_in_registers_kernel, x, w, b, stride, pad)


@functools.cache
def _four_filters_kernel(C, H, W, F, KH, KW, pad):
    """Rung 6's kernel for one layer shape: rung 5 with four filters sharing each input load."""
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
                wide[0] = b[f0]
                wide[1] = b[f1]
                wide[2] = b[f2]
                wide[3] = b[f3]
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
                store_wide_rows(wide[0], Wp, out[n, f0])
                store_wide_rows(wide[1], Wp, out[n, f1])
                store_wide_rows(wide[2], Wp, out[n, f2])
                store_wide_rows(wide[3], Wp, out[n, f3])
        return out

    return compile_variant(kernel, "ladder_four_filters", **OPTIONS)


def four_filters(x, w, b, stride=1, pad=0):
    """Rung 6, a side branch: rung 5 with four filters per pass over the input, four sums per p.

    Each input load feeds four FMAs, and four independent chains hide the FMA latency. For 5x5
    kernels the unrolled body (4 x 25 taps) is too large and LLVM stops vectorising the loop
    over p: a dead end there, so the next rung goes back to rung 5 and takes two filters.
    """
    return per_shape(_four_filters_kernel, x, w, b, stride, pad)


# The ladder in order. Each rung transforms the one it names; "four filters" is a side branch
# (no rung builds on it), and the last rung, the tuned kernel itself, builds on rung 5: two
# filters per pass (fcnn.kernels.tuned.conv_forward).
RUNGS = (
    Rung("compiled as is", compiled_as_is, None),
    Rung("stride constant", stride_constant, "compiled as is"),
    Rung("wide rows", wide_rows, "stride constant"),
    Rung("sizes constant", sizes_constant, "wide rows"),
    Rung("taps in registers", taps_in_registers, "sizes constant"),
    Rung("four filters", four_filters, "taps in registers"),
    Rung("two filters (tuned)", two_filters, "taps in registers"),
)
