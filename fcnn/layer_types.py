"""Every layer type as one small unit: its keys, its output shape, its parameters, forward, backward.

fcnn.model runs a network as a list of units, calling these in order for forward and in reverse
for backward; nothing else in the model depends on the type. Adding a layer type is adding one
class here (plus its tests). fuse() rewrites the layer list for a backend that runs several
layers as one (tuned: conv -> ReLU -> max-pool), so that fusion is a unit like any other.
"""

import math
from typing import NamedTuple

import numpy as np

from fcnn import layers
from fcnn.kernels.contract import is_integer, is_real

# The value of a key that has no default.
REQUIRED = object()


class Mode(NamedTuple):
    """How a forward pass runs: training (batch statistics, dropout drawn from rng) or evaluation."""

    training: bool = False
    rng: np.random.Generator | None = None


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
    state_shapes(spec, shape) -> {name: shape} of the layer's state, arrays that forward reads
        and, in training mode, replaces (batch norm's running statistics); None without state.
    init_state(shapes, dtype) -> {name: array}, the state before any training.
    forward(kernels, spec, params, x, mode) -> (out, cache), for a batch x; params is this
        layer's arrays (None without parameters), kernels the backend's (fcnn.kernels.get_backend),
        mode a Mode (training or evaluation, and the Generator of a training step); cache is
        what backward needs (most layers: x). A layer with state is also handed its state and
        returns its new one: forward(kernels, spec, params, x, mode, state) -> (out, cache, state).
    backward(kernels, spec, params, cache, dout, need_dx) -> (dx, grads): dout is
        d(loss)/d(out); grads are shaped like params ({} without parameters); dx may be None
        when need_dx is False (the layer's input is the data).
    """

    keys = {}
    param_shapes = None
    state_shapes = None

    @staticmethod
    def resolve(spec):
        return spec


def he_normal(rng, shape, fan_in, dtype):
    """Normal weights of std sqrt(2 / fan_in) (He et al., for ReLU networks), fan_in the inputs each output sums."""
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def check_int(key, value, minimum):
    """A spec's value must be an integer >= minimum (is_integer: bool is refused, True is not a size)."""
    if not is_integer(value) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}; got {value!r}")


def check_number(key, value, low, high=math.inf, low_inclusive=True, high_inclusive=False):
    """A spec's value must be a finite real number from low to high, each bound in or out (bool is refused).

    NaN fails every comparison and so is refused; with high = inf (excluded) that bound asks only finiteness.
    """
    if not (is_real(value) and (low <= value if low_inclusive else low < value)
            and (value <= high if high_inclusive else value < high)):
        bounds = f"{'>=' if low_inclusive else '>'} {low}"
        if high != math.inf:
            bounds += f" and {'<=' if high_inclusive else '<'} {high}"
        raise ValueError(f"{key} must be a finite number {bounds}; got {value!r}")


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
    def forward(kernels, spec, params, x, mode):
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
    def forward(kernels, spec, params, x, mode):
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
    def forward(kernels, spec, params, x, mode):
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
    def forward(kernels, spec, params, x, mode):
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
    def forward(kernels, spec, params, x, mode):
        return layers.dense_forward(x, params["w"], params["b"]), x

    @staticmethod
    def backward(kernels, spec, params, x, dout, need_dx):
        dx, dw, db = layers.dense_backward(dout, x, params["w"])
        return dx, {"w": dw, "b": db}


class Tanh(LayerType):
    """out = tanh(x), elementwise, any shape (the classic LeNet's activation)."""

    @staticmethod
    def output_shape(spec, shape):
        return shape

    @staticmethod
    def forward(kernels, spec, params, x, mode):
        out = layers.tanh_forward(x)
        return out, out

    @staticmethod
    def backward(kernels, spec, params, out, dout, need_dx):
        return layers.tanh_backward(dout, out), {}


class Sigmoid(LayerType):
    """out = 1 / (1 + exp(-x)), elementwise, any shape."""

    @staticmethod
    def output_shape(spec, shape):
        return shape

    @staticmethod
    def forward(kernels, spec, params, x, mode):
        out = layers.sigmoid_forward(x)
        return out, out

    @staticmethod
    def backward(kernels, spec, params, out, dout, need_dx):
        return layers.sigmoid_backward(dout, out), {}


class AvgPool(MaxPool):
    """Average-pooling: x (N, C, H, W) -> out (N, C, H', W'), the mean of size x size windows (stride None: size)."""

    @staticmethod
    def forward(kernels, spec, params, x, mode):
        return kernels.avgpool2d_forward(x, spec["size"], spec["stride"]), x

    @staticmethod
    def backward(kernels, spec, params, x, dout, need_dx):
        return kernels.avgpool2d_backward(dout, x, spec["size"], spec["stride"]), {}


class Dropout(LayerType):
    """Inverted dropout: in training, each value kept with probability 1 - rate and scaled by
    1 / (1 - rate), the mask drawn from the step's Generator; in evaluation, out = x."""

    keys = {"rate": 0.5}

    @staticmethod
    def resolve(spec):
        check_number("rate", spec["rate"], 0, 1)
        return spec

    @staticmethod
    def output_shape(spec, shape):
        return shape

    @staticmethod
    def forward(kernels, spec, params, x, mode):
        if not mode.training:
            return x, None
        if not isinstance(mode.rng, np.random.Generator):
            raise ValueError(f"dropout in training mode needs rng, a numpy.random.Generator; got {mode.rng!r}")
        return kernels.dropout_forward(x, spec["rate"], mode.rng)

    @staticmethod
    def backward(kernels, spec, params, mask, dout, need_dx):
        # The forward's own mask, never a new draw; None: evaluation, where the layer is the identity.
        return (dout if mask is None else kernels.dropout_backward(dout, mask)), {}


class BatchNorm(LayerType):
    """Batch normalisation (Ioffe & Szegedy 2015), per channel after a conv (N, C, H, W), per unit
    after a dense layer (N, D): out = gamma * (x - mean) / sqrt(var + eps) + beta.

    Training mode: mean and var are the batch's (biased variance), and the new state's running
    statistics follow PyTorch's convention, running = (1 - momentum) * running + momentum * batch,
    the running variance from the unbiased batch variance. Evaluation: the running statistics.
    Params gamma (C,) (ones), beta (C,) (zeros); state running_mean (C,) (zeros), running_var (C,) (ones).
    """

    keys = {"momentum": 0.1, "eps": 1e-5}

    @staticmethod
    def resolve(spec):
        check_number("momentum", spec["momentum"], 0, 1, high_inclusive=True)
        check_number("eps", spec["eps"], 0, low_inclusive=False)
        return spec

    @staticmethod
    def output_shape(spec, shape):
        if len(shape) not in (1, 3):
            raise ValueError(f"needs (C, H, W) or (D,) input; got shape {shape}")
        return shape

    @staticmethod
    def param_shapes(spec, shape):
        return {"gamma": (shape[0],), "beta": (shape[0],)}

    @staticmethod
    def init(shapes, rng, dtype):
        return {"gamma": np.ones(shapes["gamma"], dtype), "beta": np.zeros(shapes["beta"], dtype)}

    @staticmethod
    def state_shapes(spec, shape):
        return {"running_mean": (shape[0],), "running_var": (shape[0],)}

    @staticmethod
    def init_state(shapes, dtype):
        return {"running_mean": np.zeros(shapes["running_mean"], dtype), "running_var": np.ones(shapes["running_var"], dtype)}

    @staticmethod
    def forward(kernels, spec, params, x, mode, state):
        gamma, beta, eps = params["gamma"], params["beta"], spec["eps"]
        if not mode.training:
            mean, var = state["running_mean"], state["running_var"]
            return layers.batchnorm_eval_forward(x, gamma, beta, mean, var, eps), (x, mean, var), state
        mean, var = kernels.batchnorm_statistics(x)
        M = x.size // x.shape[1]  # values per channel; the running variance tracks the unbiased var * M / (M - 1)
        unbiased_var = var * (M / (M - 1))
        momentum = spec["momentum"]
        new_state = {
            "running_mean": ((1 - momentum) * state["running_mean"] + momentum * mean).astype(x.dtype),
            "running_var": ((1 - momentum) * state["running_var"] + momentum * unbiased_var).astype(x.dtype),
        }
        return kernels.batchnorm_forward(x, gamma, beta, eps), (x, None, None), new_state

    @staticmethod
    def backward(kernels, spec, params, cache, dout, need_dx):
        x, mean, var = cache
        if mean is None:  # training: the batch statistics, functions of x
            dx, dgamma, dbeta = kernels.batchnorm_backward(dout, x, params["gamma"], spec["eps"])
        else:  # evaluation: the running statistics, constants
            dx, dgamma, dbeta = layers.batchnorm_eval_backward(dout, x, params["gamma"], mean, var, spec["eps"])
        return dx, {"gamma": dgamma, "beta": dbeta}


LAYER_TYPES = {
    "conv": Conv, "relu": ReLU, "maxpool": MaxPool, "flatten": Flatten, "dense": Dense,
    "tanh": Tanh, "sigmoid": Sigmoid, "avgpool": AvgPool, "dropout": Dropout, "batchnorm": BatchNorm,
}


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
    def forward(kernels, spec, params, x, mode):
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
    return fuse_runs(layer_list) if offers_fusion(kernels) else list(layer_list)


def offers_fusion(kernels):
    """Whether a backend's kernels run conv -> relu -> maxpool as one (all fuse asks of them)."""
    return getattr(kernels, "conv2d_relu_maxpool2d_forward", None) is not None


def fuse_runs(layer_list):
    """layer_list with every conv -> relu -> maxpool run replaced by one ConvReluMaxPool unit."""
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
