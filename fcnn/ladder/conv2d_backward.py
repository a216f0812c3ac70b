"""The backward ladders: conv2d's weight gradient and input gradient, from loop.py's loops to the tuned kernels.

WEIGHT_RUNGS have conv2d_backward_weights's signature, (dout, x, w, stride=1, pad=0) -> (dw, db);
INPUT_RUNGS have conv2d_backward's, -> (dx, dw, db), and all take dw and db from the tuned
kernel, so that they differ in dx alone. Every rung gives loop.py's numbers; the rungs written for
stride 1 hand other strides to the numba backend's compiled loops. docs/ladder.md has the figures.
"""

import functools

import numba
import numpy as np

from fcnn.kernels import compiled_loop
from fcnn.kernels.tuned import conv_backward as tuned
from fcnn.kernels.tuned.conv_forward import compile_variant
from fcnn.ladder.layout import load_wide_rows, padded_planes, store_wide_rows, wide_sizes
from fcnn.ladder.rung import Rung

# fastmath=True lets LLVM split each dw sum into SIMD lanes (a reduction: reordered, the same
# value up to rounding), as compiled_loop compiles loop.py's weight gradient; dx's sums are
# not reductions over the vectorised axis, so contraction into FMAs is all they need.
WEIGHT_OPTIONS = dict(parallel=True, fastmath=True, error_model="numpy")
INPUT_OPTIONS = dict(parallel=True, fastmath={"contract"}, error_model="numpy")


def sizes_of(x, w):
    """(C, H, W, F, KH, KW): the sizes a kernel compiled per layer shape is made for."""
    _, C, H, W = x.shape
    F, _, KH, KW = w.shape
    return C, H, W, F, KH, KW


def chunks_for(x):
    """How many parts the images are split in: one per numba thread, no more than there are images.

    Read here, not in the compiled kernel: numba cannot cache a kernel that asks for its thread count.
    """
    return min(numba.get_num_threads(), x.shape[0])


# ----- the weight gradient: dw[f, c, ki, kj] = sum_{n, i, j} dout[n, f, i, j] * xpad[n, c, i + ki, j + kj]


def weights_compiled_as_is(dout, x, w, stride=1, pad=0):
    """Rung 1: loop.conv2d_backward_weights compiled by numba as it is (parallel over filters)."""
    return compiled_loop.conv2d_backward_weights(dout, x, w, stride, pad)


def weights_stride_constant(dout, x, w, stride=1, pad=0):
    """Rung 2: the same source with stride = 1 a compile-time constant (the numba backend's fast path)."""
    if stride != 1:
        return weights_compiled_as_is(dout, x, w, stride, pad)
    return compiled_loop.conv2d_backward_weights_stride1(dout, x, w, pad)


@numba.njit(inline="always")
def _add_image_weight_gradient(dout_image, xpad, Wp, P, dw, db, f):
    """dw[f] += the taps' dot products of image n's dout[f] on wide rows with its shifted input; db[f] += its sum."""
    _, C, KH, KW = dw.shape
    g = load_wide_rows(dout_image[f], 0, Wp, P)
    total = db[f]
    for p in range(P):
        total += g[p]
    db[f] = total
    for c in range(C):
        for ki in range(KH):
            for kj in range(KW):
                shifted = xpad[c, ki * Wp + kj :]
                tap = dw[f, c, ki, kj]
                for p in range(P):
                    tap += g[p] * shifted[p]
                dw[f, c, ki, kj] = tap


def _weights_wide_rows_kernel(dout, x, w, pad):
    """Rung 3's compiled kernel: dout (N, F, H', W'), x (N, C, H, W) -> dw (F, C, KH, KW), db (F,), stride 1."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    Hp, Wp, _, _, P = wide_sizes(H, W, KH, KW, pad)
    dw = np.zeros(w.shape, dtype=w.dtype)
    db = np.zeros(F, dtype=w.dtype)
    for f in numba.prange(F):
        for n in range(N):
            _add_image_weight_gradient(dout[n], padded_planes(x[n], pad, Hp, Wp), Wp, P, dw, db, f)
    return dw, db


_weights_wide_rows = compile_variant(_weights_wide_rows_kernel, "ladder_weights_wide_rows", **WEIGHT_OPTIONS)


def weights_wide_rows(dout, x, w, stride=1, pad=0):
    """Rung 3: each tap's sum runs along a whole flattened plane, one dot product of P = (H' - 1)*Wp + W'.

    dout is laid on wide rows of pitch Wp (its junk columns zero), so tap (ki, kj) pairs wide
    position p with input position p + ki*Wp + kj: a unit-stride loop LLVM vectorises, where
    loop.py's rows are W' long. Still parallel over filters, as loop.py is.
    """
    if stride != 1:
        return weights_compiled_as_is(dout, x, w, stride, pad)
    return _weights_wide_rows(dout, x, w, pad)


@numba.njit(inline="always")
def _sum_over_images_in_chunks(dout, x, pad, Hp, Wp, P, partial_dw, partial_db):
    """(dw, db) from chunks of images summed apart, chunk k taking images k, k + T, ... (T chunks)."""
    chunks = partial_dw.shape[0]
    F = partial_dw.shape[1]
    for chunk in numba.prange(chunks):
        for n in range(chunk, x.shape[0], chunks):
            xpad = padded_planes(x[n], pad, Hp, Wp)
            for f in range(F):
                _add_image_weight_gradient(dout[n], xpad, Wp, P, partial_dw[chunk], partial_db[chunk], f)
    dw = partial_dw[0].copy()
    db = partial_db[0].copy()
    for chunk in range(1, chunks):
        dw += partial_dw[chunk]
        db += partial_db[chunk]
    return dw, db


def _weights_images_in_parallel_kernel(dout, x, w, pad, chunks):
    """Rung 4's compiled kernel: rung 3's sums, the images split in `chunks` (one per thread)."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    Hp, Wp, _, _, P = wide_sizes(H, W, KH, KW, pad)
    partial_dw = np.zeros((chunks, F, C, KH, KW), dtype=w.dtype)
    partial_db = np.zeros((chunks, F), dtype=w.dtype)
    return _sum_over_images_in_chunks(dout, x, pad, Hp, Wp, P, partial_dw, partial_db)


_weights_images_in_parallel = compile_variant(
    _weights_images_in_parallel_kernel, "ladder_weights_images_in_parallel", **WEIGHT_OPTIONS
)


def weights_images_in_parallel(dout, x, w, stride=1, pad=0):
    """Rung 4: per-thread partial sums over the images instead of a parallel loop over filters.

    Each thread takes every T-th image and sums its own dw and db; the T partial sums are added
    at the end. Each image is padded once, not once per filter, and no thread idles when F is
    not a multiple of the thread count.
    """
    if stride != 1:
        return weights_compiled_as_is(dout, x, w, stride, pad)
    return _weights_images_in_parallel(dout, x, w, pad, chunks_for(x))


@functools.cache
def _weights_sizes_constant_kernel(C, H, W, F, KH, KW, pad):
    """Rung 5's kernel for one layer shape: rung 4's loop nest, inlined, its sizes captured as constants."""
    Hp, Wp, _, _, P = wide_sizes(H, W, KH, KW, pad)

    def kernel(dout, x, w, chunks):
        partial_dw = np.zeros((chunks, F, C, KH, KW), dtype=w.dtype)
        partial_db = np.zeros((chunks, F), dtype=w.dtype)
        return _sum_over_images_in_chunks(dout, x, pad, Hp, Wp, P, partial_dw, partial_db)

    return compile_variant(kernel, "ladder_weights_sizes_constant", **WEIGHT_OPTIONS)


def weights_sizes_constant(dout, x, w, stride=1, pad=0):
    """Rung 5: rung 4 compiled once per layer shape, every size a compile-time constant."""
    if stride != 1:
        return weights_compiled_as_is(dout, x, w, stride, pad)
    return _weights_sizes_constant_kernel(*sizes_of(x, w), pad)(dout, x, w, chunks_for(x))


# ----- the input gradient: dxpad[n, c, i + ki, j + kj] += w[f, c, ki, kj] * dout[n, f, i, j]


def _with_tuned_weights(input_gradient, name):
    """The contract's conv2d_backward from a dx kernel: (input_gradient(...), *tuned dw and db)."""

    def conv2d_backward(dout, x, w, stride=1, pad=0):
        dw, db = tuned.conv2d_backward_weights(dout, x, w, stride, pad)
        return input_gradient(dout, x, w, stride, pad), dw, db

    conv2d_backward.__name__ = conv2d_backward.__qualname__ = name
    conv2d_backward.__doc__ = input_gradient.__doc__
    return conv2d_backward


def input_compiled_as_is(dout, x, w, stride=1, pad=0):
    """Rung 1: loop.conv2d_backward_input compiled by numba as it is (scattered, images in parallel)."""
    return compiled_loop.conv2d_backward_input(dout, x, w, stride, pad)


def input_stride_constant(dout, x, w, stride=1, pad=0):
    """Rung 2: the same source with stride = 1 a compile-time constant (the numba backend's fast path)."""
    if stride != 1:
        return input_compiled_as_is(dout, x, w, stride, pad)
    return compiled_loop.conv2d_backward_input_stride1(dout, x, w, pad)


@numba.njit(inline="always")
def _scatter_image(dout_image, w, Wp, P, dxpad):
    """dxpad (C, Hp*Wp) += every tap's weight times dout_image (F, H', W') on wide rows, shifted by the tap."""
    F, C, KH, KW = w.shape
    for f in range(F):
        g = load_wide_rows(dout_image[f], 0, Wp, P)
        for c in range(C):
            for ki in range(KH):
                for kj in range(KW):
                    target = dxpad[c, ki * Wp + kj :]
                    weight = w[f, c, ki, kj]
                    for p in range(P):
                        target[p] += weight * g[p]


@numba.njit(inline="always")
def _store_unpadded(dxpad, pad, Wp, dx_image):
    """dx_image (C, H, W) = dxpad (C, Hp*Wp) without its border."""
    for c in range(dx_image.shape[0]):
        store_wide_rows(dxpad[c, pad * Wp + pad :], Wp, dx_image[c])


def _input_wide_rows_kernel(dout, x, w, pad):
    """Rung 3's compiled kernel: dout (N, F, H', W'), x (N, C, H, W) -> dx (N, C, H, W), stride 1."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    Hp, Wp, _, _, P = wide_sizes(H, W, KH, KW, pad)
    dx = np.empty(x.shape, dtype=x.dtype)
    for n in numba.prange(N):
        dxpad = np.zeros((C, Hp * Wp), dtype=x.dtype)
        _scatter_image(dout[n], w, Wp, P, dxpad)
        _store_unpadded(dxpad, pad, Wp, dx[n])
    return dx


_input_wide_rows = compile_variant(_input_wide_rows_kernel, "ladder_input_wide_rows", **INPUT_OPTIONS)


def input_wide_rows(dout, x, w, stride=1, pad=0):
    """Rung 3: each tap adds its weight times a whole plane of dout on wide rows, shifted by ki*Wp + kj.

    One unit-stride loop of P = (H' - 1)*Wp + W' per tap, where loop.py's rows are W' long; the
    junk columns of dout's wide rows are zero, so they add nothing.
    """
    if stride != 1:
        return input_compiled_as_is(dout, x, w, stride, pad)
    return _input_wide_rows(dout, x, w, pad)


@functools.cache
def _input_sizes_constant_kernel(C, H, W, F, KH, KW, pad):
    """Rung 4's kernel for one layer shape: rung 3's loop nest, inlined, its sizes captured as constants."""
    Hp, Wp, _, _, P = wide_sizes(H, W, KH, KW, pad)

    def kernel(dout, x, w):
        N = x.shape[0]
        dx = np.empty(x.shape, dtype=x.dtype)
        for n in numba.prange(N):
            dxpad = np.zeros((C, Hp * Wp), dtype=x.dtype)
            _scatter_image(dout[n], w, Wp, P, dxpad)
            _store_unpadded(dxpad, pad, Wp, dx[n])
        return dx

    return compile_variant(kernel, "ladder_input_sizes_constant", **INPUT_OPTIONS)


def input_sizes_constant(dout, x, w, stride=1, pad=0):
    """Rung 4: rung 3 compiled once per layer shape, every size a compile-time constant."""
    if stride != 1:
        return input_compiled_as_is(dout, x, w, stride, pad)
    return _input_sizes_constant_kernel(*sizes_of(x, w), pad)(dout, x, w)


@functools.cache
def _input_gathered_kernel(C, H, W, F, KH, KW, pad):
    """Rung 5's kernel for one layer shape: each dx position gathers its taps, the sum in a register."""
    Hp, Wp, _, _, _ = wide_sizes(H, W, KH, KW, pad)
    # dout's wide rows start after `lead` zeros, so that every tap's read lead + q - ki*Wp - kj is >= 0.
    lead = (KH - 1) * Wp + KW - 1
    length = lead + Hp * Wp

    def kernel(dout, x, w):
        N = x.shape[0]
        dx = np.empty(x.shape, dtype=x.dtype)
        for n in numba.prange(N):
            dxpad = np.zeros((C, Hp * Wp), dtype=x.dtype)
            for f in range(F):
                g = load_wide_rows(dout[n, f], lead, Wp, length)
                for c in range(C):
                    for q in range(Hp * Wp):
                        total = dxpad[c, q]
                        for ki in range(KH):
                            for kj in range(KW):
                                total += w[f, c, ki, kj] * g[lead + q - ki * Wp - kj]
                        dxpad[c, q] = total
            _store_unpadded(dxpad, pad, Wp, dx[n])
        return dx

    return compile_variant(kernel, "ladder_input_gathered", **INPUT_OPTIONS)


def input_gathered(dout, x, w, stride=1, pad=0):
    """Rung 5: gathered, not scattered: dxpad[c, q] = sum_{f, ki, kj} w[f, c, ki, kj] * dout_wide[f, q - ki*Wp - kj].

    The kernel flipped (loop.py's docstring says why): the KH x KW taps inside the loop over q,
    unrolled with the sizes constant (rung 4), so each vector of dx positions keeps its sum in a
    register: one load and store of dxpad per filter and channel instead of per tap.
    """
    if stride != 1:
        return input_compiled_as_is(dout, x, w, stride, pad)
    return _input_gathered_kernel(*sizes_of(x, w), pad)(dout, x, w)


# The weight gradient's ladder. The tuned kernel builds on rung 3: it keeps the filters (in
# pairs) and the taps (in fives) as the parallel axis, summing over the images inside; rungs 4
# and 5 split the images among the threads instead, a branch of their own.
WEIGHT_RUNGS = (
    Rung("compiled as is", weights_compiled_as_is, None),
    Rung("stride constant", weights_stride_constant, "compiled as is"),
    Rung("wide rows", weights_wide_rows, "stride constant"),
    Rung("images in parallel", weights_images_in_parallel, "wide rows"),
    Rung("sizes constant", weights_sizes_constant, "images in parallel"),
    Rung("2 filters x 5 taps (tuned)", tuned.conv2d_backward_weights, "wide rows"),
)

# The input gradient's ladder, dw and db from the tuned kernel in every rung. The tuned kernel
# builds on rung 5: gathered, with blocks of 2 channels x 5 taps.
INPUT_RUNGS = (
    Rung("compiled as is", _with_tuned_weights(input_compiled_as_is, "input_compiled_as_is"), None),
    Rung("stride constant", _with_tuned_weights(input_stride_constant, "input_stride_constant"), "compiled as is"),
    Rung("wide rows", _with_tuned_weights(input_wide_rows, "input_wide_rows"), "stride constant"),
    Rung("sizes constant", _with_tuned_weights(input_sizes_constant, "input_sizes_constant"), "wide rows"),
    Rung("gathered", _with_tuned_weights(input_gathered, "input_gathered"), "sizes constant"),
    Rung("2 channels x 5 taps (tuned)", tuned.conv2d_backward, "gathered"),
)
