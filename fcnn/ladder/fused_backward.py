"""The fused backward's ladder: conv2d -> ReLU -> 2x2 max-pool, from three kernels in a row to the winners alone.

Every rung has conv2d_relu_maxpool2d_backward's signature, (dout, x, z, w, stride, pad, size,
pool_stride, input_gradient) -> (dx or None, dw, db), and gives the numbers of loop.py's three
backward kernels in a row. The rungs written for a stride-1 convolution and a 2x2 pool of stride
2 hand other shapes, and arrays holding an inf or a NaN, to the rung before them. docs/ladder.md
has the figures.
"""

import numpy as np

from fcnn.kernels import numba_backend
from fcnn.kernels.tuned import fused
from fcnn.kernels.tuned.conv_backward import finite
from fcnn.kernels.tuned.winners_backward import conv2d_relu_maxpool2d_backward_winners
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


def routed_into_wide_rows(dout, x, z, w, stride, pad, size, pool_stride, input_gradient):
    """Rung 3: one pass routes each window's gradient to its winner (where z > 0) straight into
    the wide rows the tuned correlations read: no pool dx, no mask, no copy. The correlations
    are still dense, over the zeros of the other three positions of each window."""
    if not (_fits(stride, size, pool_stride) and finite(dout, x, w)):
        return unfused_tuned_convolution(dout, x, z, w, stride, pad, size, pool_stride, input_gradient)
    return fused.backward_through_wide_rows(dout, x, z, w, pad, input_gradient)


def winners_everywhere(dout, x, z, w, stride, pad, size, pool_stride, input_gradient):
    """Rung 4: no dense plane at all: each live winner g adds g * (its input patch) to dw and
    g * w[f] to dx's patch (winners_backward.py), a quarter of the work or less. Its rows are
    KW*C values long: a win where that fills vectors, a loss on one-channel layers."""
    gradients = None
    if _fits(stride, size, pool_stride):
        gradients = conv2d_relu_maxpool2d_backward_winners(dout, x, z, w, pad, input_gradient)
    if gradients is None:
        return unfused_tuned_convolution(dout, x, z, w, stride, pad, size, pool_stride, input_gradient)
    return gradients


FUSED_RUNGS = (
    Rung("unfused, compiled loops", unfused_compiled_loops, None),
    Rung("unfused, tuned convolution", unfused_tuned_convolution, "unfused, compiled loops"),
    Rung("routed into wide rows", routed_into_wide_rows, "unfused, tuned convolution"),
    Rung("winners everywhere", winners_everywhere, "routed into wide rows"),
    # The tuned kernel: rung 4 where a patch row fills two vectors (fused.WINNERS_MIN_ROW), else rung 3.
    Rung("winners where rows fill vectors (tuned)", fused.conv2d_relu_maxpool2d_backward, "winners everywhere"),
)
