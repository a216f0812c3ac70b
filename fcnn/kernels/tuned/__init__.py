"""The tuned backend: numba kernels that read differently from loop.py to run faster, same contract.

Each kernel may reorder loops, change the layout it works in, or specialise on common shapes;
from outside it takes and returns what loop.py's kernel does (NCHW, dtype in = dtype out) and
gives the same numbers within float rounding, for any valid shape. Modules: conv_forward (the
top of the ladder), conv_backward, maxpool2d, and fused (conv2d + ReLU + maxpool2d as one layer,
beyond the kernel contract: fcnn.model uses it wherever a conv layer is followed by
ReLU and max-pool).
"""

from fcnn.kernels.tuned.conv_backward import conv2d_backward, conv2d_backward_weights
from fcnn.kernels.tuned.conv_forward import conv2d_forward
from fcnn.kernels.tuned.fused import conv2d_relu_maxpool2d_backward, conv2d_relu_maxpool2d_forward
from fcnn.kernels.tuned.maxpool2d import maxpool2d_backward, maxpool2d_forward

__all__ = [
    "conv2d_forward",
    "conv2d_backward",
    "conv2d_backward_weights",
    "maxpool2d_forward",
    "maxpool2d_backward",
    "conv2d_relu_maxpool2d_forward",
    "conv2d_relu_maxpool2d_backward",
]
