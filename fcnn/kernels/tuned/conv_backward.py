"""Tuned conv2d backward at stride 1: flat "wide rows" and register blocks; other strides compiled loops.

loop.py walks each output row on its own, W' elements long: 10 for LeNet-5's second conv, too
short for the compiler's vector loop. Here each zero-padded input plane (Hp, Wp) is read as one
flat row, and dout is laid out with the same row pitch Wp (its W' columns, then Wp - W' zeros).
Then tap (ki, kj) links output position p = i*Wp + j to input position p + ki*Wp + kj for every
p at once: each tap is one long contiguous loop, which vectorises, at the price of the zero
columns. On top of that, each loop serves a block of 5 taps and 2 filters (or 2 channels), so
that its 10 running sums stay in registers and every value loaded feeds several multiply-adds.
Other strides go to the numba backend's compiled loops (the same numbers, slower), and so do
arrays that hold an inf or a NaN: the wide rows multiply values outside each tap's window by
zeros (the zero columns, the padding taps), and 0 * inf is a NaN where loop.py has a number.
"""

import functools

import numba
import numpy as np

from fcnn.kernels import compiled_loop, numba_backend
from fcnn.kernels.numba_cache import cached

TAPS_PER_BLOCK = 5  # the 5 tap offsets spelled out in the kernels below: 5x5 and 3x3 kernels fit it well


@functools.cache
def _blocks_of_taps(planes, plane_stride, row_pitch, KH, KW, sign):
    """The offsets plane*plane_stride + sign*(ki*row_pitch + kj) of the taps (plane, ki, kj), in that order.

    Flattened to (T5,), T5 the next multiple of TAPS_PER_BLOCK, padded with repeats of the first.
    Made once per layer shape (a few us each time otherwise) and read-only, as the cache shares it.
    """
    offsets = (
        np.arange(planes)[:, None, None] * plane_stride
        + sign * (np.arange(KH)[None, :, None] * row_pitch + np.arange(KW)[None, None, :])
    ).ravel()
    offsets = np.concatenate([offsets, np.full(-len(offsets) % TAPS_PER_BLOCK, offsets[0])]).astype(np.int64)
    offsets.flags.writeable = False
    return offsets


@cached(parallel=True, fastmath=compiled_loop.REASSOCIATE, error_model="numpy")
def _wide_rows(dout, row_pitch, lead, plane):
    """dout (N, F, H', W') -> (wide (N, F, plane), sums (N, F)): dout on wide rows, and each map's sum.

    wide is zeros except dout's row i at lead + i*row_pitch (W' values, then row_pitch - W'
    zeros); sums[n, f] = sum_{i, j} dout[n, f, i, j] (db, image by image). One pass over
    dout, image by image in parallel, instead of NumPy's zeros, strided copy and sum.
    """
    N, F, H_out, W_out = dout.shape
    wide = np.empty((N, F, plane), dtype=dout.dtype)
    sums = np.empty((N, F), dtype=dout.dtype)
    for n in numba.prange(N):
        wide[n] = 0.0
        for f in range(F):
            total = wide[n, f, 0]  # zero, in dout's dtype
            for i in range(H_out):
                row = wide[n, f, lead + i * row_pitch : lead + i * row_pitch + W_out]
                for j in range(W_out):
                    row[j] = dout[n, f, i, j]
                    total += dout[n, f, i, j]
            sums[n, f] = total
    return wide, sums


@cached(parallel=True, error_model="numpy")
def _padded_flat(x, pad):
    """x (N, C, H, W) -> (N, C * (H + 2*pad) * (W + 2*pad)): zero-padded planes, one flat row per image."""
    N, C, H, W = x.shape
    Hp, Wp = H + 2 * pad, W + 2 * pad
    xpad = np.empty((N, C * Hp * Wp), dtype=x.dtype)
    for n in numba.prange(N):
        xpad[n] = 0.0
        for c in range(C):
            for y in range(H):
                start = c * Hp * Wp + (y + pad) * Wp + pad
                row = xpad[n, start : start + W]
                for x_ in range(W):
                    row[x_] = x[n, c, y, x_]
    return xpad


# fastmath's reassoc lets each sum be split into SIMD lanes (reordered: the same value up to
# float rounding, as in compiled_loop.py's weight gradient); no nnan or ninf, which would let
# the compiler assume away the NaN and inf that loop.py propagates; error_model="numpy" drops the division-by-zero
# checks from the index arithmetic. Every array is sliced into views indexed from 0, so no
# index can be negative and the loops need no wrap-around test (a branch that blocks SIMD).
@cached(parallel=True, fastmath=compiled_loop.REASSOCIATE, error_model="numpy")
def _weight_gradient_blocked(dout_wide, lead, length, x_flat, tap_offsets, dw_flat):
    """dw_flat[f, t] = sum_{n, p < length} dout_wide[n, f, lead + p] * x_flat[n, tap_offsets[t] + p], into dw_flat.

    dout_wide (N, F, >= lead + length), x_flat (N, C*Hp*Wp), tap_offsets (T5,): the taps (c, ki, kj)
    as offsets c*Hp*Wp + ki*Wp + kj, padded to a multiple of 5; dw_flat (F, T) zeros on entry.
    """
    N, F = dout_wide.shape[0], dout_wide.shape[1]
    taps = dw_flat.shape[1]
    filter_blocks = (F + 1) // 2
    tap_blocks = len(tap_offsets) // 5
    # Read before the parallel loop, while dw_flat is all zeros: a zero of its dtype (0 * an
    # element would be float64, and inside the loop another block may have written it).
    zero = dw_flat[0, 0]
    for block in numba.prange(filter_blocks * tap_blocks):
        f0 = 2 * (block // tap_blocks)
        f1 = min(f0 + 1, F - 1)  # an odd F computes its last filter twice
        t0 = 5 * (block % tap_blocks)
        o0, o1, o2 = tap_offsets[t0], tap_offsets[t0 + 1], tap_offsets[t0 + 2]
        o3, o4 = tap_offsets[t0 + 3], tap_offsets[t0 + 4]
        a0 = a1 = a2 = a3 = a4 = b0 = b1 = b2 = b3 = b4 = zero
        for n in range(N):
            g = dout_wide[n, f0, lead : lead + length]
            h = dout_wide[n, f1, lead : lead + length]
            x0 = x_flat[n, o0 : o0 + length]
            x1 = x_flat[n, o1 : o1 + length]
            x2 = x_flat[n, o2 : o2 + length]
            x3 = x_flat[n, o3 : o3 + length]
            x4 = x_flat[n, o4 : o4 + length]
            for p in range(length):
                a0 += g[p] * x0[p]
                a1 += g[p] * x1[p]
                a2 += g[p] * x2[p]
                a3 += g[p] * x3[p]
                a4 += g[p] * x4[p]
                b0 += h[p] * x0[p]
                b1 += h[p] * x1[p]
                b2 += h[p] * x2[p]
                b3 += h[p] * x3[p]
                b4 += h[p] * x4[p]
        _store_pair(dw_flat, f0, f1, t0, taps, a0, b0)
        _store_pair(dw_flat, f0, f1, t0 + 1, taps, a1, b1)
        _store_pair(dw_flat, f0, f1, t0 + 2, taps, a2, b2)
        _store_pair(dw_flat, f0, f1, t0 + 3, taps, a3, b3)
        _store_pair(dw_flat, f0, f1, t0 + 4, taps, a4, b4)


@numba.njit(inline="always")
def _store_pair(dw_flat, f0, f1, t, taps, a, b):
    """dw_flat[f0, t] = a, dw_flat[f1, t] = b, unless t is a padding tap (t >= taps)."""
    if t < taps:
        dw_flat[f0, t] = a
        dw_flat[f1, t] = b


@cached(parallel=True, fastmath={"contract"}, error_model="numpy")
def _input_gradient_blocked(dout_ext, tap_offsets, weights, dxpad_flat):
    """dxpad_flat[n, c, q] = sum_t weights[c, t] * dout_ext[n, tap_offsets[t] + q], into dxpad_flat.

    dout_ext (N, F*S), tap_offsets (T5,), weights (C2, T5), dxpad_flat (N, C2, P) zeros on
    entry, C2 even (the 2 channels of a block are 2 distinct planes).
    """
    N, C2, P = dxpad_flat.shape
    channel_blocks = C2 // 2
    tap_blocks = len(tap_offsets) // 5
    for item in numba.prange(N * channel_blocks):
        n = item // channel_blocks
        c0 = 2 * (item % channel_blocks)
        out0 = dxpad_flat[n, c0]
        out1 = dxpad_flat[n, c0 + 1]
        g = dout_ext[n]
        for block in range(tap_blocks):
            t = 5 * block
            s0 = g[tap_offsets[t] : tap_offsets[t] + P]
            s1 = g[tap_offsets[t + 1] : tap_offsets[t + 1] + P]
            s2 = g[tap_offsets[t + 2] : tap_offsets[t + 2] + P]
            s3 = g[tap_offsets[t + 3] : tap_offsets[t + 3] + P]
            s4 = g[tap_offsets[t + 4] : tap_offsets[t + 4] + P]
            u0, u1, u2, u3, u4 = weights[c0, t], weights[c0, t + 1], weights[c0, t + 2], weights[c0, t + 3], weights[c0, t + 4]
            v0, v1, v2 = weights[c0 + 1, t], weights[c0 + 1, t + 1], weights[c0 + 1, t + 2]
            v3, v4 = weights[c0 + 1, t + 3], weights[c0 + 1, t + 4]
            for q in range(P):
                out0[q] += u0 * s0[q] + u1 * s1[q] + u2 * s2[q] + u3 * s3[q] + u4 * s4[q]
                out1[q] += v0 * s0[q] + v1 * s1[q] + v2 * s2[q] + v3 * s3[q] + v4 * s4[q]


def finite(*arrays):
    """Whether every value of the arrays is finite: one sum each (an overflow only costs the fast path)."""
    return all(np.isfinite(array.sum()) for array in arrays)


def wide_layout(x_shape, w_shape, pad, input_gradient):
    """(row_pitch, lead, plane) of the wide rows that the gradients below read dout from.

    row_pitch = Wp = W + 2*pad. For dx (input_gradient) each map has a lead of
    (KH-1)*Wp + KW-1 zeros, so that every tap's read of dx position q, q - ki*Wp - kj + lead,
    is >= 0, and plane = lead + Hp*Wp values; for dw alone, no lead and plane = H'*Wp.
    """
    _, _, H, W = x_shape
    _, _, KH, KW = w_shape
    Hp, Wp = H + 2 * pad, W + 2 * pad
    if input_gradient:
        lead = (KH - 1) * Wp + KW - 1
        return Wp, lead, lead + Hp * Wp
    return Wp, 0, (Hp - KH + 1) * Wp


def weight_gradient_from_wide(dout_wide, sums, lead, x, w, pad):
    """dw, db of a stride-1 convolution from dout on wide rows (wide_layout) and its per-image sums.

    dw[f, c, ki, kj] = sum_{n, p} dout_wide[n, f, lead + p] * xpad_flat[n, c, p + ki*Wp + kj]: a
    correlation of the input with dout, one dot product per tap over the batch and the wide
    rows. dout_wide (N, F, plane), sums (N, F) -> dw (F, C, KH, KW), db (F,)
    """
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    Hp, Wp = H + 2 * pad, W + 2 * pad
    # Only the first (H' - 1)*Wp + W' wide positions: the last row's zero columns would reach past the plane.
    length = (Hp - KH) * Wp + Wp - KW + 1
    taps = _blocks_of_taps(C, Hp * Wp, Wp, KH, KW, +1)
    dw = np.zeros((F, C * KH * KW), dtype=w.dtype)
    x_flat = x.reshape(N, C * H * W) if pad == 0 else _padded_flat(x, pad)
    _weight_gradient_blocked(dout_wide, lead, length, x_flat, taps, dw)
    return dw.reshape(w.shape), sums.sum(axis=0)


def input_gradient_from_wide(dout_wide, lead, x_shape, w, pad):
    """dx of a stride-1 convolution from dout on wide rows with a lead (wide_layout(..., True)).

    Gathered rather than scattered: dxpad[n, c, q] = sum_{f, ki, kj} w[f, c, ki, kj] *
    dout_wide[n, f, lead + q - ki*Wp - kj] (the kernel flipped, as in loop.py's docstring), so
    each dxpad position is written once per block of 5 taps instead of once per tap.
    dout_wide (N, F, plane) -> dx x_shape (N, C, H, W)
    """
    N, C, H, W = x_shape
    F, _, KH, KW = w.shape
    Hp, Wp = H + 2 * pad, W + 2 * pad
    plane = dout_wide.shape[2]
    taps = _blocks_of_taps(F, plane, Wp, KH, KW, -1) + lead  # f*plane + lead - ki*Wp - kj
    channels = C + C % 2
    weights = np.zeros((channels, len(taps)), dtype=w.dtype)  # padding taps and channel weigh 0
    weights[:C, : F * KH * KW] = w.transpose(1, 0, 2, 3).reshape(C, F * KH * KW)
    dxpad = np.zeros((N, channels, Hp * Wp), dtype=w.dtype)
    _input_gradient_blocked(dout_wide.reshape(N, F * plane), taps, weights, dxpad)
    return np.ascontiguousarray(dxpad.reshape(N, channels, Hp, Wp)[:, :C, pad : pad + H, pad : pad + W])


def conv2d_backward_weights(dout, x, w, stride=1, pad=0):
    """dw[f, c, ki, kj] = sum_{n, i, j} dout[n, f, i, j] * xpad[n, c, i*stride + ki, j*stride + kj], db[f] = sum dout[n, f].

    dout (N, F, H', W'), x (N, C, H, W), w (F, C, KH, KW) -> dw (F, C, KH, KW), db (F,)
    """
    if stride != 1 or not finite(x):
        return numba_backend.conv2d_backward_weights(dout, x, w, stride, pad)
    row_pitch, lead, plane = wide_layout(x.shape, w.shape, pad, input_gradient=False)
    dout_wide, sums = _wide_rows(dout, row_pitch, lead, plane)
    return weight_gradient_from_wide(dout_wide, sums, lead, x, w, pad)


def conv2d_backward(dout, x, w, stride=1, pad=0):
    """(dx, dw, db) of a convolution layer (see loop.py), dx from conv2d_backward_input's sum:

    dxpad[n, c, i*stride + ki, j*stride + kj] += w[f, c, ki, kj] * dout[n, f, i, j]; dx = dxpad without its border.
    dout (N, F, H', W'), x (N, C, H, W), w (F, C, KH, KW) -> dx (N, C, H, W), dw (F, C, KH, KW), db (F,)
    """
    if stride != 1 or not finite(dout, x, w):
        return numba_backend.conv2d_backward(dout, x, w, stride, pad)
    row_pitch, lead, plane = wide_layout(x.shape, w.shape, pad, input_gradient=True)
    dout_wide, sums = _wide_rows(dout, row_pitch, lead, plane)
    dw, db = weight_gradient_from_wide(dout_wide, sums, lead, x, w, pad)
    return input_gradient_from_wide(dout_wide, lead, x.shape, w, pad), dw, db
