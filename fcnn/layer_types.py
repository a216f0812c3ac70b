"""Every layer type as one small unit: its keys, its output shape, its parameters, forward, backward.

fcnn.model runs a network as a list of units, calling these in order for forward and in reverse
for backward; nothing else in the model depends on the type. Adding a layer type is adding one
class here (plus its tests). fuse() rewrites the layer list for a backend that runs several
layers as one (tuned: conv -> ReLU -> max-pool), so that fusion is a unit like any other.
"""

import math

import numpy as np

from fcnn import layers

# The value of a key that has no default.
REQUIRED = object()


class LayerType:
    """What the model needs to know of one layer type. Used as a namespace, never instantiated.

    keys: every key a spec of this type takes besides "type", with its default (REQUIRED: none).
    resolve(spec) -> the spec with its values checked and put in one form (a spec with every key);
        ValueError (fcnn.model adds the layer's position) for a value that cannot work.
    output_shape(spec, shape) -> the shape of one sample after the layer, from its shape before;
        ValueError (fcnn.model adds the layer's name) if the input does not fit.
    param_shapes(spec, shape) -> {name: shape} of every parameter array ({"w": ..., "b": ...};
        any names: batch norm's would be gamma and beta) for one input sample of `shape`;
        None for a layer without parameters.
    init(shapes, rng, dtype) -> {name: array} of those shapes, drawn from the Generator rng.
    forward(kernels, spec, params, x) -> (out, cache), for a batch x; params is this layer's
        arrays (None without parameters), kernels the backend's (fcnn.kernels.get_backend);
        cache is what backward needs (most layers: x).
    backward(kernels, spec, params, cache, dout, need_dx) -> (dx, grads): dout is
        d(loss)/d(out); grads are shaped like params ({} without parameters); dx may be None
        when need_dx is False (the layer's input is the data).
    """

    keys = {}
    param_shapes = None

    @staticmethod
    def resolve(spec):
        return spec


def he_normal(rng, shape, fan_in, dtype):
    """Normal weights of std sqrt(2 / fan_in) (He et al., for ReLU networks), fan_in the inputs each output sums."""
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def check_int(key, value, minimum):
    """A spec's value must be an integer >= minimum (bool is refused: True is not a size)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}; got {value!r}")


class Conv(LayerType):
    """Convolution: x (N, C, H, W), w (F, C, KH, KW), b (F,) -> out (N, F, H', W')."""

    keys = {"filters": REQUIRED, "kernel": REQUIRED, "stride": 1, "pad": 0}

    @staticmethod
    def resolve(spec):
        kernel = spec["kernel"]
        kernel = [kernel, kernel] if isinstance(kernel, (int, np.integer)) else kernel
        if not isinstance(kernel, (list, tuple)) or len(kernel) != 2:
            raise ValueError(f"kernel must be an integer or a pair [KH, KW]; got {spec['kernel']!r}")
        for key, value in (("filters", spec["filters"]), ("kernel", kernel[0]), ("kernel", kernel[1]),
                           ("stride", spec["stride"])):
            check_int(key, value, 1)
        check_int("pad", spec["pad"], 0)
        return {**spec, "kernel": list(kernel)}

    @staticmethod
    def output_shape(spec, shape):
        if len(shape) != 3:
            raise ValueError(f"needs (C, H, W) input; got shape {shape} (a flatten came before it?)")
        (KH, KW), stride, pad = spec["kernel"], spec["stride"], spec["pad"]
        C, H, W = shape
        if KH > H + 2 * pad or KW > W + 2 * pad:
            raise ValueError(f"kernel {KH}x{KW} is larger than its padded input {H + 2 * pad}x{W + 2 * pad}")
        return (spec["filters"], (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1)

    @staticmethod
    def param_shapes(spec, shape):
        KH, KW = spec["kernel"]
        return {"w": (spec["filters"], shape[0], KH, KW), "b": (spec["filters"],)}

    @staticmethod
    def init(shapes, rng, dtype):
        """He-normal w (fan_in = C*KH*KW), zero b."""
        return {"w": he_normal(rng, shapes["w"], math.prod(shapes["w"][1:]), dtype), "b": np.zeros(shapes["b"], dtype)}

    @staticmethod
    def forward(kernels, spec, params, x):
        return kernels.conv2d_forward(x, params["w"], params["b"], spec["stride"], spec["pad"]), x

    @staticmethod
    def backward(kernels, spec, params, x, dout, need_dx):
        if not need_dx:
            dw, db = kernels.conv2d_backward_weights(dout, x, params["w"], spec["stride"], spec["pad"])
            return None, {"w": dw, "b": db}
        dx, dw, db = kernels.conv2d_backward(dout, x, params["w"], spec["stride"], spec["pad"])
        return dx, {"w": dw, "b": db}


class ReLU(LayerType):
    """out = max(x, 0), elementwise, any shape."""

    @staticmethod
    def output_shape(spec, shape):
        return shape

    @staticmethod
    def forward(kernels, spec, params, x):
        return layers.relu_forward(x), x

    @staticmethod
    def backward(kernels, spec, params, x, dout, need_dx):
        return layers.relu_backward(dout, x), {}


class MaxPool(LayerType):
    """Max-pooling: x (N, C, H, W) -> out (N, C, H', W'), size x size windows (stride None: size)."""

    keys = {"size": 2, "stride": None}

    @staticmethod
    def resolve(spec):
        check_int("size", spec["size"], 1)
        if spec["stride"] is not None:
            check_int("stride", spec["stride"], 1)
        return spec

    @staticmethod
    def output_shape(spec, shape):
        if len(shape) != 3:
            raise ValueError(f"needs (C, H, W) input; got shape {shape} (a flatten came before it?)")
        size = spec["size"]
        stride = spec["stride"] or size
        C, H, W = shape
        if size > H or size > W:
            raise ValueError(f"window {size}x{size} is larger than its input {H}x{W}")
        return (C, (H - size) // stride + 1, (W - size) // stride + 1)

    @staticmethod
    def forward(kernels, spec, params, x):
        return kernels.maxpool2d_forward(x, spec["size"], spec["stride"]), x

    @staticmethod
    def backward(kernels, spec, params, x, dout, need_dx):
        return kernels.maxpool2d_backward(dout, x, spec["size"], spec["stride"]), {}


class Flatten(LayerType):
    """x (N, ...) -> out (N, D), D the product of the other axes."""

    @staticmethod
    def output_shape(spec, shape):
        return (math.prod(shape),)

    @staticmethod
    def forward(kernels, spec, params, x):
        return x.reshape(len(x), math.prod(x.shape[1:])), x.shape

    @staticmethod
    def backward(kernels, spec, params, shape, dout, need_dx):
        return dout.reshape(shape), {}


class Dense(LayerType):
    """Fully connected: x (N, D), w (D, M), b (M,) -> out (N, M)."""

    keys = {"units": REQUIRED}

    @staticmethod
    def resolve(spec):
        check_int("units", spec["units"], 1)
        return spec

    @staticmethod
    def output_shape(spec, shape):
        if len(shape) != 1:
            raise ValueError(f"needs flat input; got shape {shape} (add a flatten layer before it)")
        return (spec["units"],)

    @staticmethod
    def param_shapes(spec, shape):
        return {"w": (shape[0], spec["units"]), "b": (spec["units"],)}

    @staticmethod
    def init(shapes, rng, dtype):
        """He-normal w (fan_in = D), zero b."""
        return {"w": he_normal(rng, shapes["w"], shapes["w"][0], dtype), "b": np.zeros(shapes["b"], dtype)}

    @staticmethod
    def forward(kernels, spec, params, x):
        return layers.dense_forward(x, params["w"], params["b"]), x

    @staticmethod
    def backward(kernels, spec, params, x, dout, need_dx):
        dx, dw, db = layers.dense_backward(dout, x, params["w"])
        return dx, {"w": dw, "b": db}


LAYER_TYPES = {"conv": Conv, "relu": ReLU, "maxpool": MaxPool, "flatten": Flatten, "dense": Dense}


class ConvReluMaxPool(LayerType):
    """conv -> ReLU -> max-pool as one unit, for a backend that offers the fused kernels (tuned).

    The same numbers with fewer passes over memory: the cache keeps the conv's input x and its
    output z (the ReLU's input); the pool's input, relu(z), is never made. The unit carries the
    conv layer's name and parameters. spec: {"type": "conv_relu_maxpool", "conv": the conv's
    spec, "maxpool": the pool's}. Made only by fuse(), never written in an architecture.
    """

    @staticmethod
    def param_shapes(spec, shape):
        return Conv.param_shapes(spec["conv"], shape)

    @staticmethod
    def forward(kernels, spec, params, x):
        conv, pool = spec["conv"], spec["maxpool"]
        out, z = kernels.conv2d_relu_maxpool2d_forward(
            x, params["w"], params["b"], conv["stride"], conv["pad"], pool["size"], pool["stride"]
        )
        return out, (x, z)

    @staticmethod
    def backward(kernels, spec, params, cache, dout, need_dx):
        (x, z), conv, pool = cache, spec["conv"], spec["maxpool"]
        dx, dw, db = kernels.conv2d_relu_maxpool2d_backward(
            dout, x, z, params["w"], conv["stride"], conv["pad"], pool["size"], pool["stride"], input_gradient=need_dx
        )
        return dx, {"w": dw, "b": db}


def fuse(layer_list, kernels):
    """The units a backend runs: layer_list's (name, spec, layer type) with every conv -> relu ->
    maxpool run replaced by one ConvReluMaxPool unit where `kernels` offer the fused kernels.

    Elsewhere (the fused kernel None or absent) the units are the layers themselves.
    """
    if getattr(kernels, "conv2d_relu_maxpool2d_forward", None) is None:
        return list(layer_list)
    units = []
    position = 0
    while position < len(layer_list):
        run = layer_list[position:position + 3]
        if [spec["type"] for _, spec, _ in run] == ["conv", "relu", "maxpool"]:
            (name, conv, _), _, (_, pool, _) = run
            units.append((name, {"type": "conv_relu_maxpool", "conv": conv, "maxpool": pool}, ConvReluMaxPool))
            position += 3
        else:
            units.append(layer_list[position])
            position += 1
    return units
