"""conv2d -> ReLU -> maxpool2d as one layer, forward and backward, for the model to call in one go.

Forward: the convolution, then ReLU and pooling in one pass (max_i relu(z_i) = relu(max_i z_i),
so no ReLU array is made). Backward, for a stride-1 convolution with a 2x2 pool of stride 2
(every preset): from the windows' winners alone (winners_backward.py), a quarter of the dense
work or less, in one pass, with no pooled-back or masked array made. Other shapes, and a
backward of arrays holding an inf or a NaN, run the unfused kernels in sequence.
fcnn.ladder.fused_backward has the steps to here and docs/ladder.md their figures.
"""

import numba
import numpy as np

from fcnn.kernels.compiled_loop import output_size
from fcnn.kernels.numba_backend import maxpool2d_backward
from fcnn.kernels.numba_cache import cached
from fcnn.kernels.tuned.conv_backward import conv2d_backward, conv2d_backward_weights
from fcnn.kernels.tuned.conv_forward import conv2d_forward
from fcnn.kernels.tuned.winners_backward import conv2d_relu_maxpool2d_backward_winners


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
        gradients = conv2d_relu_maxpool2d_backward_winners(dout, x, z, w, pad, input_gradient)
        if gradients is not None:
            return gradients
    return unfused_backward(dout, x, z, w, stride, pad, size, pool_stride, input_gradient)
