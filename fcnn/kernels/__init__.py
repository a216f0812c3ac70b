"""Kernel backends behind one registry: pick conv2d / maxpool2d implementations by name.

    backend = get_backend("tuned")      # "loop", "numpy", "numba" or "tuned"
    out = backend.conv2d_forward(x, w, b, stride=1, pad=0)

Every backend honours the same contract (see loop.py, the reference); the functions a
backend hands out check their arguments first and raise ValueError on bad input.
"""

import functools
import importlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from fcnn.kernels import contract

BACKENDS = {
    "loop": "fcnn.kernels.loop",
    "numpy": "fcnn.kernels.vectorized",
    "numba": "fcnn.kernels.compiled_loop",
    "tuned": "fcnn.kernels.tuned",
}
# The backends from fastest to slowest on the presets: default_backend() picks the first that runs here.
FASTEST_FIRST = ("tuned", "numba", "numpy", "loop")


class BackendUnavailableError(ValueError):
    """A known backend that cannot run here (numba not importable)."""


@dataclass(frozen=True)
class Backend:
    """The kernels of one backend, each checking its arguments before it runs.

    conv2d_backward_weights is conv2d_backward without dx: all a first layer needs. A backend
    may also offer conv2d -> ReLU -> maxpool2d as one fused layer (tuned does; None elsewhere):
        conv2d_relu_maxpool2d_forward(x, w, b, stride, pad, size, pool_stride) -> (out, z),
            z = conv2d_forward(x, w, b, stride, pad), out = maxpool2d_forward(relu(z), size, pool_stride)
        conv2d_relu_maxpool2d_backward(dout, x, z, w, stride, pad, size, pool_stride, input_gradient)
            -> (dx, dw, db), dx None when input_gradient is False
    """

    name: str
    conv2d_forward: Callable
    conv2d_backward: Callable
    conv2d_backward_weights: Callable
    maxpool2d_forward: Callable
    maxpool2d_backward: Callable
    conv2d_relu_maxpool2d_forward: Callable | None = None
    conv2d_relu_maxpool2d_backward: Callable | None = None


def _contiguous(*arrays):
    # Compiled kernels specialise on memory layout: one layout means one compilation.
    return [np.ascontiguousarray(a) for a in arrays]


def _checked(kernels, name):
    """The Backend whose functions validate their arguments, then call `kernels`.

    A backend module may also offer fast paths for the presets' shapes (compiled_loop.py does):
    conv2d_*_stride1 for stride 1 and maxpool2d_*_2x2 for 2x2 windows of stride 2.
    """
    conv2d_forward_stride1 = getattr(kernels, "conv2d_forward_stride1", None)
    conv2d_backward_stride1 = getattr(kernels, "conv2d_backward_stride1", None)
    conv2d_backward_weights_stride1 = getattr(kernels, "conv2d_backward_weights_stride1", None)
    maxpool2d_forward_2x2 = getattr(kernels, "maxpool2d_forward_2x2", None)
    maxpool2d_backward_2x2 = getattr(kernels, "maxpool2d_backward_2x2", None)

    def conv2d_forward(x, w, b, stride=1, pad=0):
        contract.check_conv2d_forward(x, w, b, stride, pad)
        if stride == 1 and conv2d_forward_stride1:
            return conv2d_forward_stride1(*_contiguous(x, w, b), int(pad))
        return kernels.conv2d_forward(*_contiguous(x, w, b), int(stride), int(pad))

    def conv2d_backward(dout, x, w, stride=1, pad=0):
        contract.check_conv2d_backward(dout, x, w, stride, pad)
        if stride == 1 and conv2d_backward_stride1:
            return conv2d_backward_stride1(*_contiguous(dout, x, w), int(pad))
        return kernels.conv2d_backward(*_contiguous(dout, x, w), int(stride), int(pad))

    def conv2d_backward_weights(dout, x, w, stride=1, pad=0):
        contract.check_conv2d_backward(dout, x, w, stride, pad, kernel="conv2d_backward_weights")
        if stride == 1 and conv2d_backward_weights_stride1:
            return conv2d_backward_weights_stride1(*_contiguous(dout, x, w), int(pad))
        return kernels.conv2d_backward_weights(*_contiguous(dout, x, w), int(stride), int(pad))

    def maxpool2d_forward(x, size=2, stride=None):
        contract.check_maxpool2d_forward(x, size, stride)
        stride = size if stride is None else stride
        if size == stride == 2 and maxpool2d_forward_2x2:
            return maxpool2d_forward_2x2(*_contiguous(x))
        return kernels.maxpool2d_forward(*_contiguous(x), int(size), int(stride))

    def maxpool2d_backward(dout, x, size=2, stride=None):
        contract.check_maxpool2d_backward(dout, x, size, stride)
        stride = size if stride is None else stride
        if size == stride == 2 and maxpool2d_backward_2x2:
            return maxpool2d_backward_2x2(*_contiguous(dout, x))
        return kernels.maxpool2d_backward(*_contiguous(dout, x), int(size), int(stride))

    def conv2d_relu_maxpool2d_forward(x, w, b, stride=1, pad=0, size=2, pool_stride=None):
        contract.check_conv2d_relu_maxpool2d_forward(x, w, b, stride, pad, size, pool_stride)
        return kernels.conv2d_relu_maxpool2d_forward(
            *_contiguous(x, w, b), int(stride), int(pad), int(size), None if pool_stride is None else int(pool_stride)
        )

    def conv2d_relu_maxpool2d_backward(dout, x, z, w, stride=1, pad=0, size=2, pool_stride=None, input_gradient=True):
        contract.check_conv2d_relu_maxpool2d_backward(dout, x, z, w, stride, pad, size, pool_stride)
        return kernels.conv2d_relu_maxpool2d_backward(
            *_contiguous(dout, x, z, w), int(stride), int(pad), int(size),
            None if pool_stride is None else int(pool_stride), bool(input_gradient),
        )

    functions = [conv2d_forward, conv2d_backward, conv2d_backward_weights, maxpool2d_forward, maxpool2d_backward]
    if hasattr(kernels, "conv2d_relu_maxpool2d_forward"):
        functions += [conv2d_relu_maxpool2d_forward, conv2d_relu_maxpool2d_backward]
    for function in functions:
        function.__doc__ = getattr(kernels, function.__name__).__doc__
    return Backend(name, *functions)


@functools.cache
def get_backend(name):
    """The Backend called `name`; ValueError for an unknown or unavailable one."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}; got {name!r}")
    try:
        kernels = importlib.import_module(BACKENDS[name])
    except ImportError as error:
        raise BackendUnavailableError(
            f"backend {name!r} is unavailable: {error}. Install it (pip install numba) "
            f"or use backend='numpy'"
        ) from error
    return _checked(kernels, name)


def available_backends():
    """Names of the backends that can run here, e.g. ['loop', 'numpy', 'numba']."""
    available = []
    for name in BACKENDS:
        try:
            get_backend(name)
        except BackendUnavailableError:
            continue
        available.append(name)
    return available


def default_backend():
    """The fastest backend that can run here (the first available in FASTEST_FIRST)."""
    available = available_backends()
    return next(name for name in FASTEST_FIRST if name in available)
