"""The rungs from loop.conv2d_forward to the tuned kernel, each one transformation on the rung it names.

Every rung has the kernel contract's signature and gives loop.py's numbers: stride-1 rungs hand
other strides to the numba backend's compiled loop. The padding and the copy out of the wide
rows are shared (fcnn.ladder.layout), so each compiled rung's body is the loop nest it changes.
Rungs 6 to 8 are the tuned kernel's register tiles; the last rung is
fcnn.kernels.tuned.conv_forward.conv2d_forward itself, which runs the tile that fits the machine.
docs/ladder.md has every rung's figures and why it helps, or not.
"""

import functools

import numba
import numpy as np

from fcnn.kernels import compiled_loop
from fcnn.kernels.numba_cache import compile_variant
from fcnn.kernels.tuned import conv_forward as tuned_forward
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


# The tuned kernel's register tiles, each compiled per layer shape (fcnn.kernels.tuned.conv_forward).
_two_filters_kernel = tuned_forward.stride1_kernel
_four_filters_kernel = tuned_forward.four_filters_kernel
_filters_in_lanes_kernel = tuned_forward.filters_in_lanes_kernel


def two_filters(x, w, b, stride=1, pad=0):
    """Rung 6: rung 5 with two filters per pass over the input, two sums per p (the tuned "two filters" tile).

    Half the input loads of rung 5 per FMA, two independent chains, and a body LLVM still
    vectorises for 5x5 kernels (50 vector FMAs).
    """
    return per_shape(_two_filters_kernel, x, w, b, stride, pad)


def four_filters(x, w, b, stride=1, pad=0):
    """Rung 7: four filters per pass, four sums per p (the tuned "four filters" tile).

    Each input load feeds four FMAs. For 3x3 kernels the fastest wide-row tile; for 5x5 the
    unrolled body (4 x 25 taps) is too large and LLVM stops vectorising the loop over p.
    """
    return per_shape(_four_filters_kernel, x, w, b, stride, pad)


def filters_in_lanes(x, w, b, stride=1, pad=0):
    """Rung 8: every filter at once, in the vector lanes; a row of output columns as the sums (the tuned
    "filters in lanes" tile).

    Where rungs 6 and 7 unroll more filters into the loop body, this one vectorises over the
    filters and keeps 10 columns x F filters of sums in registers: no junk columns, one broadcast
    input pixel per F/8 FMAs. It needs AVX-512's 32 vector registers.
    """
    return per_shape(_filters_in_lanes_kernel, x, w, b, stride, pad)


# The ladder in order: each rung transforms the one it names. Rungs 6 to 8 are the tuned
# kernel's register tiles, more filters per pass each; the last rung, the tuned kernel itself,
# runs the one that fits the machine and the layer (fcnn.kernels.tuned.machine).
RUNGS = (
    Rung("compiled as is", compiled_as_is, None),
    Rung("stride constant", stride_constant, "compiled as is"),
    Rung("wide rows", wide_rows, "stride constant"),
    Rung("sizes constant", sizes_constant, "wide rows"),
    Rung("taps in registers", taps_in_registers, "sizes constant"),
    Rung("two filters", two_filters, "taps in registers"),
    Rung("four filters", four_filters, "two filters"),
    Rung("filters in lanes", filters_in_lanes, "four filters"),
    Rung("tuned (tile per machine)", tuned_forward.conv2d_forward, "filters in lanes"),
)
