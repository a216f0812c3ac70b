"""The kernel contract: one row per kernel (its argument check and its docstring), and the checks.

Each check takes the kernel's arguments as a caller gives them (defaults included), raises
ValueError naming the kernel, the argument, what was expected and what was found, so bad input
never reaches a loop that would fail three calls deep (or worse, return a silently wrong
result), and returns the arguments every implementation takes: C-contiguous arrays (compiled
kernels specialise on layout: one layout, one compilation), plain ints, a pool's stride resolved.
Adding a kernel: one row in KERNELS, and its function, under the row's name, in each backend.
"""

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from fcnn.kernels import loop
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


def is_integer(value):
    """Whether `value` is an int or a NumPy integer; bool is not (True is not a stride)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value):
    """Whether `value` is an int, a float or a NumPy one of them; bool is not."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_int(kernel, name, value, minimum):
    """`value` must be an integer >= minimum (is_integer: bool is refused)."""
    if not is_integer(value):
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


def _contiguous(*arrays):
    return tuple(np.ascontiguousarray(a) for a in arrays)


def check_bias(kernel, b, w, dtype):
    check_array(kernel, "b", b, 1, dtype)
    if b.shape != (w.shape[0],):
        raise ValueError(f"{kernel}: b must have shape ({w.shape[0]},); got {b.shape}")


def pooled_shape(kernel, shape, size, stride, stride_name="stride", where="x's {}x{} images"):
    """Check size and stride of a size x size window over images of `shape`; return (N, C, H', W').

    The window's one check for every kernel that pools; `where` names the images in the message.
    """
    check_int(kernel, "size", size, 1)
    if stride is not None:
        check_int(kernel, stride_name, stride, 1)
    N, C, H, W = shape
    if size > H or size > W:
        raise ValueError(f"{kernel}: size {size} (a {size}x{size} window) must fit in {where.format(H, W)}")
    stride = size if stride is None else stride
    return (N, C, output_size(H, size, stride, 0), output_size(W, size, stride, 0))


def check_conv2d_forward(x, w, b, stride=1, pad=0):
    conv2d_output_shape("conv2d_forward", x, w, stride, pad)
    check_bias("conv2d_forward", b, w, x.dtype)
    return (*_contiguous(x, w, b), int(stride), int(pad))


def _check_dout_of_conv2d(kernel, dout, x, w, stride, pad):
    check_dout(kernel, dout, conv2d_output_shape(kernel, x, w, stride, pad), x.dtype)
    return (*_contiguous(dout, x, w), int(stride), int(pad))


def check_conv2d_backward(dout, x, w, stride=1, pad=0):
    return _check_dout_of_conv2d("conv2d_backward", dout, x, w, stride, pad)


def check_conv2d_backward_weights(dout, x, w, stride=1, pad=0):
    return _check_dout_of_conv2d("conv2d_backward_weights", dout, x, w, stride, pad)


def check_maxpool2d_forward(x, size=2, stride=None):
    check_array("maxpool2d_forward", "x", x, 4)
    pooled_shape("maxpool2d_forward", x.shape, size, stride)
    return (*_contiguous(x), int(size), int(size if stride is None else stride))


def check_maxpool2d_backward(dout, x, size=2, stride=None):
    check_array("maxpool2d_backward", "x", x, 4)
    check_dout("maxpool2d_backward", dout, pooled_shape("maxpool2d_backward", x.shape, size, stride), x.dtype)
    return (*_contiguous(dout, x), int(size), int(size if stride is None else stride))


def check_conv2d_relu_maxpool2d_forward(x, w, b, stride=1, pad=0, size=2, pool_stride=None):
    kernel = "conv2d_relu_maxpool2d_forward"
    z_shape = conv2d_output_shape(kernel, x, w, stride, pad)
    check_bias(kernel, b, w, x.dtype)
    pooled_shape(kernel, z_shape, size, pool_stride, "pool_stride", "the convolution's {}x{} output")
    return (*_contiguous(x, w, b), int(stride), int(pad), int(size), int(size if pool_stride is None else pool_stride))


def check_conv2d_relu_maxpool2d_backward(dout, x, z, w, stride=1, pad=0, size=2, pool_stride=None,
                                         input_gradient=True):
    kernel = "conv2d_relu_maxpool2d_backward"
    z_shape = conv2d_output_shape(kernel, x, w, stride, pad)
    check_array(kernel, "z", z, 4, x.dtype)
    if z.shape != z_shape:
        raise ValueError(f"{kernel}: z must have the convolution's output shape {z_shape}; got {z.shape}")
    pooled = pooled_shape(kernel, z_shape, size, pool_stride, "pool_stride", "the convolution's {}x{} output")
    check_dout(kernel, dout, pooled, x.dtype)
    return (*_contiguous(dout, x, z, w), int(stride), int(pad), int(size),
            int(size if pool_stride is None else pool_stride), bool(input_gradient))


CONV2D_RELU_MAXPOOL2D_FORWARD = """conv2d -> ReLU -> maxpool2d as one layer, forward.

    out = maxpool2d_forward(relu(z), size, pool_stride), z = conv2d_forward(x, w, b, stride, pad)

    x (N, C, H, W), w (F, C, KH, KW), b (F,) -> (out (N, F, H'', W''), z (N, F, H', W')), z kept for
    backward; pool_stride None means the window size.
    """

CONV2D_RELU_MAXPOOL2D_BACKWARD = """The backward of conv2d_relu_maxpool2d_forward, from its input x and its z.

    dz = relu'(z) * maxpool2d_backward(dout, relu(z), size, pool_stride), then conv2d_backward(dz, x, w, ...)

    dout (N, F, H'', W''), x (N, C, H, W), z (N, F, H', W'), w (F, C, KH, KW) ->
    (dx (N, C, H, W), or None when input_gradient is False, dw (F, C, KH, KW), db (F,))
    """


def check_number(kernel, name, value, low, high=None, low_inclusive=True):
    """`value` must be a finite real number in [low, high) ((low, high) when not low_inclusive); bool is refused."""
    if not is_real(value):
        raise ValueError(f"{kernel}: {name} must be a number; got {value!r}")
    # math's, not np.isfinite: a ufunc on one number costs half a microsecond, and the optimisers
    # check several numbers per parameter array on every step.
    if not math.isfinite(value):
        raise ValueError(f"{kernel}: {name} must be finite; got {value}")
    too_low = value < low if low_inclusive else value <= low
    if too_low or (high is not None and value >= high):
        interval = f"{'[' if low_inclusive else '('}{low}, {high})" if high is not None else None
        expected = f"in {interval}" if interval else f"{'>=' if low_inclusive else '>'} {low}"
        raise ValueError(f"{kernel}: {name} must be {expected}; got {value}")


def _check_batch(kernel, x):
    """x must be (N, C) or (N, C, H, W) with more than one value per channel: a batch to take statistics of."""
    if isinstance(x, np.ndarray) and x.ndim not in (2, 4):
        raise ValueError(f"{kernel}: x must be (N, C) or (N, C, H, W); got shape {x.shape}")
    check_array(kernel, "x", x, getattr(x, "ndim", 2))
    if x.size // max(x.shape[1], 1) < 2:
        raise ValueError(f"{kernel}: x must have more than one value per channel (N*H*W > 1) for batch "
                         f"statistics; got shape {x.shape}")


def check_batchnorm_statistics(x):
    _check_batch("batchnorm_statistics", x)
    return _contiguous(x)


def _check_batchnorm(kernel, x, gamma, eps):
    """Check x (a batch, see _check_batch), gamma (C,) and eps > 0."""
    _check_batch(kernel, x)
    check_array(kernel, "gamma", gamma, 1, x.dtype)
    if gamma.shape != (x.shape[1],):
        raise ValueError(f"{kernel}: gamma must have shape ({x.shape[1]},), one per channel of x; got {gamma.shape}")
    check_number(kernel, "eps", eps, 0, low_inclusive=False)


def check_batchnorm_forward(x, gamma, beta, eps=1e-5):
    _check_batchnorm("batchnorm_forward", x, gamma, eps)
    check_array("batchnorm_forward", "beta", beta, 1, x.dtype)
    if beta.shape != gamma.shape:
        raise ValueError(f"batchnorm_forward: beta must have shape {gamma.shape}, as gamma; got {beta.shape}")
    return (*_contiguous(x, gamma, beta), float(eps))


def check_batchnorm_backward(dout, x, gamma, eps=1e-5):
    _check_batchnorm("batchnorm_backward", x, gamma, eps)
    check_array("batchnorm_backward", "dout", dout, x.ndim, x.dtype)
    if dout.shape != x.shape:
        raise ValueError(f"batchnorm_backward: dout must have the shape of x {x.shape}; got {dout.shape}")
    return (*_contiguous(dout, x, gamma), float(eps))


def check_dropout_forward(x, rate, rng):
    check_array("dropout_forward", "x", x, getattr(x, "ndim", 1))
    check_number("dropout_forward", "rate", rate, 0, 1)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"dropout_forward: rng must be a numpy.random.Generator (np.random.default_rng(seed)); "
                         f"got {type(rng).__name__}")
    return (*_contiguous(x), float(rate), rng)


def check_dropout_backward(dout, mask):
    check_array("dropout_backward", "dout", dout, getattr(dout, "ndim", 1))
    check_array("dropout_backward", "mask", mask, dout.ndim, dout.dtype)
    if mask.shape != dout.shape:
        raise ValueError(f"dropout_backward: mask must have the shape of dout {dout.shape}; got {mask.shape}")
    return _contiguous(dout, mask)


def check_avgpool2d_forward(x, size=2, stride=None):
    check_array("avgpool2d_forward", "x", x, 4)
    pooled_shape("avgpool2d_forward", x.shape, size, stride)
    return (*_contiguous(x), int(size), int(size if stride is None else stride))


def check_avgpool2d_backward(dout, x, size=2, stride=None):
    check_array("avgpool2d_backward", "x", x, 4)
    check_dout("avgpool2d_backward", dout, pooled_shape("avgpool2d_backward", x.shape, size, stride), x.dtype)
    return (*_contiguous(dout, x), int(size), int(size if stride is None else stride))


def _arrays_like_w(kernel, w, **arrays):
    """w, then `arrays` (by name), checked and C-contiguous: w a float32 or float64 array of any
    shape, each other one of w's shape and dtype. A 0-d array stays 0-d (np.ascontiguousarray
    would give it a dimension). Lean: the optimisers call it for every array on every step."""
    check_array(kernel, "w", w, getattr(w, "ndim", 0))
    for name, array in arrays.items():
        if not isinstance(array, np.ndarray):
            raise ValueError(f"{kernel}: {name} must be a numpy array; got {type(array).__name__}")
        if array.shape != w.shape:
            raise ValueError(f"{kernel}: {name} must have the shape of w {w.shape}; got {array.shape}")
        if array.dtype != w.dtype:
            raise ValueError(f"{kernel}: {name} must have the dtype of w ({w.dtype}); got {array.dtype}")
    return tuple([np.ascontiguousarray(a) if a.ndim else a for a in (w, *arrays.values())])


# The optimisers' scalars are handed on as Python floats, whatever number type came in: NumPy
# rounds a Python float to the arrays' dtype (NEP 50), as the loops round theirs, where a NumPy
# float64 would make NumPy's arithmetic on float32 arrays float64.


def check_adam_update(w, dw, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    arrays = _arrays_like_w("adam_update", w, dw=dw, m=m, v=v)
    check_int("adam_update", "t", t, 1)
    check_number("adam_update", "lr", lr, 0)
    check_number("adam_update", "beta1", beta1, 0, 1)
    check_number("adam_update", "beta2", beta2, 0, 1)
    check_number("adam_update", "eps", eps, 0)
    return (*arrays, int(t), float(lr), float(beta1), float(beta2), float(eps))


def check_rmsprop_update(w, dw, s, lr, alpha=0.99, eps=1e-8):
    arrays = _arrays_like_w("rmsprop_update", w, dw=dw, s=s)
    check_number("rmsprop_update", "lr", lr, 0)
    check_number("rmsprop_update", "alpha", alpha, 0, 1)
    check_number("rmsprop_update", "eps", eps, 0)
    return (*arrays, float(lr), float(alpha), float(eps))


@dataclass(frozen=True)
class Kernel:
    """One kernel of the contract: check(*args, **kwargs) -> the implementation's arguments; doc its docstring.

    An optional kernel may be missing from a backend (it is then None there): the fused layer,
    which a caller composes from the other kernels where a backend does not fuse.
    """

    check: Callable
    doc: str
    optional: bool = False


# The contract: every backend offers these functions under these names (loop.py has the math).
KERNELS = {
    "conv2d_forward": Kernel(check_conv2d_forward, loop.conv2d_forward.__doc__),
    "conv2d_backward": Kernel(check_conv2d_backward, loop.conv2d_backward.__doc__),
    "conv2d_backward_weights": Kernel(check_conv2d_backward_weights, loop.conv2d_backward_weights.__doc__),
    "maxpool2d_forward": Kernel(check_maxpool2d_forward, loop.maxpool2d_forward.__doc__),
    "maxpool2d_backward": Kernel(check_maxpool2d_backward, loop.maxpool2d_backward.__doc__),
    "conv2d_relu_maxpool2d_forward": Kernel(check_conv2d_relu_maxpool2d_forward, CONV2D_RELU_MAXPOOL2D_FORWARD, True),
    "conv2d_relu_maxpool2d_backward": Kernel(check_conv2d_relu_maxpool2d_backward, CONV2D_RELU_MAXPOOL2D_BACKWARD, True),
    "batchnorm_statistics": Kernel(check_batchnorm_statistics, loop.batchnorm_statistics.__doc__),
    "batchnorm_forward": Kernel(check_batchnorm_forward, loop.batchnorm_forward.__doc__),
    "batchnorm_backward": Kernel(check_batchnorm_backward, loop.batchnorm_backward.__doc__),
    "dropout_forward": Kernel(check_dropout_forward, loop.dropout_forward.__doc__),
    "dropout_backward": Kernel(check_dropout_backward, loop.dropout_backward.__doc__),
    "avgpool2d_forward": Kernel(check_avgpool2d_forward, loop.avgpool2d_forward.__doc__),
    "avgpool2d_backward": Kernel(check_avgpool2d_backward, loop.avgpool2d_backward.__doc__),
    "adam_update": Kernel(check_adam_update, loop.adam_update.__doc__),
    "rmsprop_update": Kernel(check_rmsprop_update, loop.rmsprop_update.__doc__),
}
