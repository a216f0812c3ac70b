"""The kernel contract, checked: argument validation shared by every backend.

Each check raises ValueError naming the kernel, the argument, what was expected and what
was found, so bad input never reaches a loop that would fail three calls deep (or worse,
return a silently wrong result).
"""

import numpy as np

from fcnn.kernels.loop import output_size

FLOAT_DTYPES = (np.float32, np.float64)


def check_array(kernel, name, array, ndim, dtype=None):
    """`array` must be an ndarray of rank `ndim`, float32 or float64, and of `dtype` if given."""
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{kernel}: {name} must be a numpy array; got {type(array).__name__}")
    if array.ndim != ndim:
        raise ValueError(
            f"{kernel}: {name} must have {ndim} dimensions; got shape {array.shape}"
        )
    if array.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{kernel}: {name} must be float32 or float64; got {array.dtype}")
    if dtype is not None and array.dtype != dtype:
        raise ValueError(f"{kernel}: {name} must have the dtype of x ({dtype}); got {array.dtype}")


def check_int(kernel, name, value, minimum):
    """`value` must be an integer >= minimum (bool is refused: True is not a stride)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{kernel}: {name} must be an integer; got {value!r}")
    if value < minimum:
        raise ValueError(f"{kernel}: {name} must be >= {minimum}; got {value}")


def check_dout(kernel, dout, expected_shape, dtype):
    """The upstream gradient must have exactly the shape of the forward output."""
    check_array(kernel, "dout", dout, 4, dtype)
    if dout.shape != expected_shape:
        raise ValueError(
            f"{kernel}: dout must have the forward output's shape {expected_shape}; got {dout.shape}"
        )


def conv2d_output_shape(kernel, x, w, stride, pad):
    """Check x (N, C, H, W), w (F, C, KH, KW), stride, pad; return (N, F, H', W')."""
    check_array(kernel, "x", x, 4)
    check_array(kernel, "w", w, 4, x.dtype)
    check_int(kernel, "stride", stride, 1)
    check_int(kernel, "pad", pad, 0)
    N, C, H, W = x.shape
    F, C_w, KH, KW = w.shape
    if C_w != C:
        raise ValueError(
            f"{kernel}: w must have x's {C} input channels, shape (F, {C}, KH, KW); got {w.shape}"
        )
    if KH > H + 2 * pad or KW > W + 2 * pad:
        raise ValueError(
            f"{kernel}: kernel {KH}x{KW} is larger than the padded input "
            f"{H + 2 * pad}x{W + 2 * pad} (x {H}x{W}, pad {pad})"
        )
    return (N, F, output_size(H, KH, stride, pad), output_size(W, KW, stride, pad))


def check_conv2d_forward(x, w, b, stride, pad):
    conv2d_output_shape("conv2d_forward", x, w, stride, pad)
    check_array("conv2d_forward", "b", b, 1, x.dtype)
    if b.shape != (w.shape[0],):
        raise ValueError(f"conv2d_forward: b must have shape ({w.shape[0]},); got {b.shape}")


def check_conv2d_backward(dout, x, w, stride, pad, kernel="conv2d_backward"):
    out_shape = conv2d_output_shape(kernel, x, w, stride, pad)
    check_dout(kernel, dout, out_shape, x.dtype)


def maxpool2d_output_shape(kernel, x, size, stride):
    """Check x (N, C, H, W), size, stride; return (N, C, H', W')."""
    check_array(kernel, "x", x, 4)
    check_int(kernel, "size", size, 1)
    if stride is not None:
        check_int(kernel, "stride", stride, 1)
    N, C, H, W = x.shape
    if size > H or size > W:
        raise ValueError(f"{kernel}: size {size} (a {size}x{size} window) must fit in x's {H}x{W} images")
    stride = size if stride is None else stride
    return (N, C, output_size(H, size, stride, 0), output_size(W, size, stride, 0))


def check_maxpool2d_forward(x, size, stride):
    maxpool2d_output_shape("maxpool2d_forward", x, size, stride)


def check_maxpool2d_backward(dout, x, size, stride):
    out_shape = maxpool2d_output_shape("maxpool2d_backward", x, size, stride)
    check_dout("maxpool2d_backward", dout, out_shape, x.dtype)


def check_conv2d_relu_maxpool2d_forward(x, w, b, stride, pad, size, pool_stride):
    """Check a fused conv2d -> ReLU -> maxpool2d; return (conv output shape, pooled shape)."""
    kernel = "conv2d_relu_maxpool2d_forward"
    z_shape = conv2d_output_shape(kernel, x, w, stride, pad)
    check_array(kernel, "b", b, 1, x.dtype)
    if b.shape != (w.shape[0],):
        raise ValueError(f"{kernel}: b must have shape ({w.shape[0]},); got {b.shape}")
    return z_shape, _pooled_shape(kernel, z_shape, size, pool_stride)


def check_conv2d_relu_maxpool2d_backward(dout, x, z, w, stride, pad, size, pool_stride):
    """Check the backward of the fused layer: z is its convolution's output, dout its pooled gradient."""
    kernel = "conv2d_relu_maxpool2d_backward"
    z_shape = conv2d_output_shape(kernel, x, w, stride, pad)
    check_array(kernel, "z", z, 4, x.dtype)
    if z.shape != z_shape:
        raise ValueError(f"{kernel}: z must have the convolution's output shape {z_shape}; got {z.shape}")
    check_dout(kernel, dout, _pooled_shape(kernel, z_shape, size, pool_stride), x.dtype)


def _pooled_shape(kernel, shape, size, stride):
    """The shape (N, C, H', W') of a maxpool2d over images of `shape`, once size and stride are checked."""
    check_int(kernel, "size", size, 1)
    if stride is not None:
        check_int(kernel, "pool_stride", stride, 1)
    N, C, H, W = shape
    if size > H or size > W:
        raise ValueError(f"{kernel}: size {size} (a {size}x{size} window) must fit in the convolution's {H}x{W} output")
    stride = size if stride is None else stride
    return (N, C, output_size(H, size, stride, 0), output_size(W, size, stride, 0))
