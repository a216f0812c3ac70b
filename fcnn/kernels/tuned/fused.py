"""conv2d -> ReLU -> maxpool2d as one layer, forward and backward, for the model to call in one go.

Forward: the convolution, then ReLU and pooling in one pass (max_i relu(z_i) = relu(max_i z_i),
so no ReLU array is made). Backward, for a stride-1 convolution with a 2x2 pool of stride 2
(every preset), one of two ways. Where a winner's patch row (KW*C values) fills two vectors or
more, from the windows' winners alone (winners_backward.py: a quarter of the dense work or
less). Else the pooled gradient goes straight to the winning position of each window, where
z > 0, inside the wide-row layout the tuned convolution backward reads: one pass instead of
maxpool backward, ReLU backward and the wide-row copy. Other shapes, and a backward of arrays
holding an inf or a NaN (see conv_backward.py), run the unfused kernels in sequence.
fcnn.ladder.fused_backward has the steps and docs/ladder.md their figures.
"""

import numba
import numpy as np

from fcnn.kernels.compiled_loop import output_size
from fcnn.kernels.numba_backend import maxpool2d_backward
from fcnn.kernels.numba_cache import cached
from fcnn.kernels.tuned.conv_backward import (
    conv2d_backward,
    conv2d_backward_weights,
    finite,
    input_gradient_from_wide,
    weight_gradient_from_wide,
    wide_layout,
)
from fcnn.kernels.tuned.conv_forward import conv2d_forward
from fcnn.kernels.tuned.winners_backward import LANES, conv2d_relu_maxpool2d_backward_winners

# The shortest patch row (KW*C) the winners' kernel takes. Below two vectors its rows are mostly
# loop overhead and rounded-up lanes, and the wide rows' dense reductions win: one thread, us per
# image, winners against wide rows: LeNet-5's first conv (KW*C = 5) 13 against 12, the seed's (3)
# 22 against 10, LeNet-5's second (30) 13 against 33.
WINNERS_MIN_ROW = 2 * LANES
from fcnn.kernels.tuned.winners_backward import LANES, conv2d_relu_maxpool2d_backward_winners

# The shortest patch row (KW*C) that the winners' kernel takes: below two vectors its rows are mostly
# loop overhead and rounding-up lanes, and the wide rows' dense reductions win (LeNet-5's first conv,
# KW*C = 5: 13 us per image against 12; the seed conv, 3: 22 against 10; the second, 30: 13 against 33).
WINNERS_MIN_ROW = 2 * LANES


@numba.njit(inline="always")
def _relu_maxpool2d(z, size, stride):
    """out[n, c, i, j] = max(0, max_{di, dj} z[n, c, i*stride + di, j*stride + dj]).

    z (N, C, H, W) -> out (N, C, H', W'), H' = 1 + (H - size) // stride.
    """
    N, C, H, W = z.shape
    H_out, W_out = output_size(H, size, stride, 0), output_size(W, size, stride, 0)
    out = np.empty((N, C, H_out, W_out), dtype=z.dtype)
    for n in numba.prange(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    largest = z[n, c, i * stride, j * stride]
                    for di in range(size):
                        for dj in range(size):
                            value = z[n, c, i * stride + di, j * stride + dj]
                            # loop.py's maximum: a NaN beats every number.
                            if not (value <= largest or np.isnan(largest)):
                                largest = value
                    # relu: a NaN is not < 0, so it stays NaN, as np.maximum(z, 0) keeps it.
                    out[n, c, i, j] = 0 if largest < 0 else largest
    return out


# Compiled twice: with size and stride constants for the presets' 2x2 pools (so the window
# loops unroll and the row vectorises, as compiled_loop.py's fast paths), and for any other window.
@cached(parallel=True, error_model="numpy")
def _relu_maxpool2d_2x2(z):
    return _relu_maxpool2d(z, 2, 2)


@cached(parallel=True, error_model="numpy")
def _relu_maxpool2d_any(z, size, stride):
    return _relu_maxpool2d(z, size, stride)


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


def conv2d_relu_maxpool2d_forward(x, w, b, stride, pad, size, pool_stride):
    """out = maxpool2d_forward(relu(z), size, pool_stride), z = conv2d_forward(x, w, b, stride, pad).

    x (N, C, H, W), w (F, C, KH, KW), b (F,) -> out (N, F, H'', W''), z (N, F, H', W') (kept for backward).
    pool_stride None means the window size.
    """
    pool_stride = size if pool_stride is None else pool_stride
    z = conv2d_forward(x, w, b, stride, pad)
    if size == pool_stride == 2:
        return _relu_maxpool2d_2x2(z), z
    return _relu_maxpool2d_any(z, size, pool_stride), z


def backward_through_wide_rows(dout, x, z, w, pad, input_gradient):
    """conv2d_relu_maxpool2d_backward of a stride-1 conv and a 2x2 pool of stride 2 with finite
    dout, x, w: the routed gradient laid on wide rows, then the tuned dense correlations.

    dout (N, F, H'', W''), x (N, C, H, W), z (N, F, H', W'), w (F, C, KH, KW) ->
    (dx (N, C, H, W) or None when not input_gradient, dw (F, C, KH, KW), db (F,))
    """
    row_pitch, lead, plane = wide_layout(x.shape, w.shape, pad, input_gradient)
    dz_wide, sums = _unpool2x2_relu_wide_rows(dout, z, row_pitch, lead, plane)
    dw, db = weight_gradient_from_wide(dz_wide, sums, lead, x, w, pad)
    dx = input_gradient_from_wide(dz_wide, lead, x.shape, w, pad) if input_gradient else None
    return dx, dw, db


def backward_through_wide_rows(dout, x, z, w, pad, input_gradient):
    """conv2d_relu_maxpool2d_backward of a stride-1 convolution and a 2x2 pool of stride 2, for
    finite dout, x, w: the routed gradient laid on wide rows, then the tuned dense correlations.

    dout (N, F, H'', W''), x (N, C, H, W), z (N, F, H', W'), w (F, C, KH, KW) ->
    (dx (N, C, H, W) or None when not input_gradient, dw (F, C, KH, KW), db (F,))
    """
    row_pitch, lead, plane = wide_layout(x.shape, w.shape, pad, input_gradient)
    dz_wide, sums = _unpool2x2_relu_wide_rows(dout, z, row_pitch, lead, plane)
    dw, db = weight_gradient_from_wide(dz_wide, sums, lead, x, w, pad)
    dx = input_gradient_from_wide(dz_wide, lead, x.shape, w, pad) if input_gradient else None
    return dx, dw, db


def unfused_backward(dout, x, z, w, stride, pad, size, pool_stride, input_gradient):
    """conv2d_relu_maxpool2d_backward as three kernels in sequence: maxpool backward, ReLU backward, conv backward."""
    pool_stride = size if pool_stride is None else pool_stride
    dz = maxpool2d_backward(dout, np.maximum(z, 0), size, pool_stride) * (z > 0)
    if input_gradient:
        return conv2d_backward(dz, x, w, stride, pad)
    return (None, *conv2d_backward_weights(dz, x, w, stride, pad))


def conv2d_relu_maxpool2d_backward(dout, x, z, w, stride, pad, size, pool_stride, input_gradient):
    """The backward of conv2d_relu_maxpool2d_forward: dz = relu'(z) * maxpool2d_backward(dout, relu(z)), then conv2d_backward.

    dout (N, F, H'', W''), x (N, C, H, W), z (N, F, H', W'), w (F, C, KH, KW) ->
    (dx (N, C, H, W) or None when not input_gradient, dw (F, C, KH, KW), db (F,))
    """
    if stride == 1 and size == 2 and pool_stride in (None, 2):
        _, C, _, KW = w.shape
        if KW * C >= WINNERS_MIN_ROW:
            gradients = conv2d_relu_maxpool2d_backward_winners(dout, x, z, w, pad, input_gradient)
            if gradients is not None:
                return gradients
        elif finite(dout, x, w):
            return backward_through_wide_rows(dout, x, z, w, pad, input_gradient)
    return unfused_backward(dout, x, z, w, stride, pad, size, pool_stride, input_gradient)
