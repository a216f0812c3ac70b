"""The tuned backend: numba kernels that read differently from loop.py to run faster, same contract.

Each kernel may reorder loops, change the layout it works in, or specialise on common shapes;
from outside it takes and returns what loop.py's kernel does (NCHW, dtype in = dtype out) and
gives the same numbers within float rounding, for any valid shape. Modules: conv_forward (the
top of the ladder), conv_backward, and fused (conv2d + ReLU + maxpool2d as one layer, an
optional kernel of the contract: fcnn.model uses it wherever a conv layer is followed by ReLU
and max-pool). The kernels not here are the numba backend's (KERNELS_SERVED_BY): max-pool,
whose compiled loops with their 2x2 fast paths were not beaten, and the optimisers' per-array
updates, one pass each already, whose cost on the presets is memory and the call itself. (Tried and dropped: a 2x2
backward that writes every dx element once, by flags and selects, was slower than the
zero-then-add loop on the presets' pools; docs/performance.md has the figures.)
"""

from fcnn.kernels.tuned.conv_backward import conv2d_backward, conv2d_backward_weights
from fcnn.kernels.tuned.conv_forward import conv2d_forward
from fcnn.kernels.tuned.fused import conv2d_relu_maxpool2d_backward, conv2d_relu_maxpool2d_forward

KERNELS_SERVED_BY = "numba"

__all__ = [
    "conv2d_forward",
    "conv2d_backward",
    "conv2d_backward_weights",
    "conv2d_relu_maxpool2d_forward",
    "conv2d_relu_maxpool2d_backward",
]
