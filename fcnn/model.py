"""The network as data and pure functions: init, forward, backward, predict.

An architecture is a list of layer specs (plain dicts), so a new network is a new list:

    [{"type": "conv", "filters": 8, "kernel": 3},  # also "stride" (1), "pad" (0); kernel int or [KH, KW]
     {"type": "relu"},
     {"type": "maxpool", "size": 2},               # also "stride" (None: the window size)
     {"type": "flatten"},
     {"type": "dense", "units": 10}]

Parameters are {"conv1": {"w": ..., "b": ...}, "dense1": {...}}: one entry per layer that
has weights, named by its type and its rank among layers of that type.
"""

import functools

import numpy as np
from threadpoolctl import ThreadpoolController

from fcnn import layers
from fcnn.kernels import get_backend
from fcnn.losses import softmax_cross_entropy

PRESETS = {
    # The original script's net (with biases): 26x26x8 after the conv, 13x13x8 = 1352 after the pool.
    "seed": [
        {"type": "conv", "filters": 8, "kernel": 3},
        {"type": "relu"},
        {"type": "maxpool", "size": 2},
        {"type": "flatten"},
        {"type": "dense", "units": 10},
    ],
    "lenet5": [
        {"type": "conv", "filters": 6, "kernel": 5, "pad": 2},
        {"type": "relu"},
        {"type": "maxpool", "size": 2},
        {"type": "conv", "filters": 16, "kernel": 5},
        {"type": "relu"},
        {"type": "maxpool", "size": 2},
        {"type": "flatten"},
        {"type": "dense", "units": 120},
        {"type": "relu"},
        {"type": "dense", "units": 84},
        {"type": "relu"},
        {"type": "dense", "units": 10},
    ],
}

MNIST_SHAPE = (1, 28, 28)

# Every key a layer type accepts, with its default (REQUIRED: no default).
REQUIRED = object()
LAYER_KEYS = {
    "conv": {"filters": REQUIRED, "kernel": REQUIRED, "stride": 1, "pad": 0},
    "relu": {},
    "maxpool": {"size": 2, "stride": None},
    "flatten": {},
    "dense": {"units": REQUIRED},
}
WEIGHTED = ("conv", "dense")


def resolve_arch(arch):
    """A preset name or a list of layer specs -> the list of specs with every default filled in.

    Raises ValueError for an unknown preset, layer type or key, or a missing required key.
    """
    if isinstance(arch, str):
        if arch not in PRESETS:
            raise ValueError(f"arch must be one of the presets {sorted(PRESETS)} or a list of layers; got {arch!r}")
        arch = PRESETS[arch]
    if not isinstance(arch, (list, tuple)) or not arch:
        raise ValueError(f"arch must be a preset name or a non-empty list of layer dicts; got {arch!r}")
    resolved = []
    for position, spec in enumerate(arch):
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind not in LAYER_KEYS:
            raise ValueError(
                f"arch[{position}]: layer type must be one of {sorted(LAYER_KEYS)}; got {spec!r}"
            )
        unknown = set(spec) - set(LAYER_KEYS[kind]) - {"type"}
        if unknown:
            raise ValueError(
                f"arch[{position}] ({kind}): unknown keys {sorted(unknown)}; "
                f"a {kind} layer takes {sorted(LAYER_KEYS[kind])}"
            )
        full = {"type": kind}
        for key, default in LAYER_KEYS[kind].items():
            if key not in spec and default is REQUIRED:
                raise ValueError(f"arch[{position}] ({kind}): missing required key {key!r}")
            full[key] = spec.get(key, default)
        if kind == "conv":
            kernel = full["kernel"]
            full["kernel"] = [kernel, kernel] if isinstance(kernel, int) else list(kernel)
        resolved.append(full)
    return resolved


def layer_names(arch):
    """One name per layer: conv1, relu1, maxpool1, conv2, ... (type + rank among its type)."""
    counts = {}
    names = []
    for spec in resolve_arch(arch):
        counts[spec["type"]] = counts.get(spec["type"], 0) + 1
        names.append(f"{spec['type']}{counts[spec['type']]}")
    return names


def output_shapes(arch, input_shape=MNIST_SHAPE):
    """The shape of one sample after each layer, e.g. [(8, 26, 26), (8, 26, 26), (8, 13, 13), (1352,), (10,)].

    Raises ValueError naming the layer where the shapes do not fit.
    """
    shape = tuple(input_shape)
    shapes = []
    for name, spec in zip(layer_names(arch), resolve_arch(arch)):
        kind = spec["type"]
        if kind in ("conv", "maxpool") and len(shape) != 3:
            raise ValueError(f"{name}: needs (C, H, W) input; got shape {shape} (a flatten came before it?)")
        if kind == "dense" and len(shape) != 1:
            raise ValueError(f"{name}: needs flat input; got shape {shape} (add a flatten layer before it)")
        if kind == "conv":
            (KH, KW), stride, pad = spec["kernel"], spec["stride"], spec["pad"]
            C, H, W = shape
            if KH > H + 2 * pad or KW > W + 2 * pad:
                raise ValueError(f"{name}: kernel {KH}x{KW} is larger than its padded input {H + 2 * pad}x{W + 2 * pad}")
            shape = (spec["filters"], (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1)
        elif kind == "maxpool":
            size = spec["size"]
            stride = spec["stride"] or size
            C, H, W = shape
            if size > H or size > W:
                raise ValueError(f"{name}: window {size}x{size} is larger than its input {H}x{W}")
            shape = (C, (H - size) // stride + 1, (W - size) // stride + 1)
        elif kind == "flatten":
            shape = (int(np.prod(shape)),)
        elif kind == "dense":
            shape = (spec["units"],)
        shapes.append(shape)
    return shapes


def init(arch, seed=0, dtype="float32", input_shape=MNIST_SHAPE):
    """New parameters: He-scaled normal weights (std = sqrt(2 / fan_in)), zero biases.

    arch: preset name or list of layer specs; seed: int or numpy.random.Generator.
    Returns {"conv1": {"w": (F, C, KH, KW), "b": (F,)}, "dense1": {"w": (D, M), "b": (M,)}, ...}.
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64; got {dtype}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    specs = resolve_arch(arch)
    shapes = [tuple(input_shape)] + output_shapes(specs, input_shape)
    params = {}
    for name, spec, in_shape in zip(layer_names(specs), specs, shapes):
        if spec["type"] == "conv":
            KH, KW = spec["kernel"]
            w_shape = (spec["filters"], in_shape[0], KH, KW)
        elif spec["type"] == "dense":
            w_shape = (in_shape[0], spec["units"])
        else:
            continue
        fan_in = int(np.prod(w_shape[1:])) if spec["type"] == "conv" else w_shape[0]
        w = rng.standard_normal(w_shape) * np.sqrt(2.0 / fan_in)
        params[name] = {"w": w.astype(dtype), "b": np.zeros(w_shape[0] if spec["type"] == "conv" else w_shape[1], dtype)}
    return params


def as_images(x, channels, dtype):
    """x (N, C, H, W), or for one channel (N, H, W) or (N, 784) -> (N, C, H, W) of `dtype`.

    Raises ValueError for a non-float x or a shape that does not fit.
    """
    if not isinstance(x, np.ndarray):
        raise ValueError(f"x must be a numpy array; got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise ValueError(
            f"x must be a float array (scale uint8 images with fcnn.data.scale); got {x.dtype}"
        )
    if channels == 1 and x.ndim == 2 and x.shape[1] == 28 * 28:
        x = x.reshape(-1, 1, 28, 28)
    elif channels == 1 and x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(
            f"x must be (N, {channels}, H, W) images"
            + (", (N, H, W) or (N, 784)" if channels == 1 else "")
            + f"; got shape {x.shape}"
        )
    return x.astype(dtype, copy=False)


def _check_params(params, specs):
    """params must hold one {"w", "b"} entry per weighted layer of the architecture."""
    expected = [name for name, spec in zip(layer_names(specs), specs) if spec["type"] in WEIGHTED]
    if not isinstance(params, dict) or sorted(params) != sorted(expected):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"params must have the layers {expected} of the architecture; got {got}")


@functools.cache
def _blas_threads():
    return ThreadpoolController()


def _one_blas_thread(function):
    """`function`, run with NumPy's BLAS limited to one thread.

    The network's matrices are small: a second BLAS thread buys nothing, and on a busy
    2-core machine each multi-threaded call can wait a whole OS time slice for a BLAS thread
    that was put to sleep; numba kernels need no second pool spinning beside them either.
    """

    @functools.wraps(function)
    def limited(*args, **kwargs):
        with _blas_threads().limit(limits=1, user_api="blas"):
            return function(*args, **kwargs)

    return limited


@_one_blas_thread
def forward(params, x, arch, backend="numpy"):
    """Run the network: x (N, C, H, W) (or (N, H, W), (N, 784)) -> logits (N, K), cache.

    The cache holds what backward needs: the architecture, the backend and every layer's input.
    """
    specs = resolve_arch(arch)
    _check_params(params, specs)
    kernels = get_backend(backend)
    conv_weights = [params[name]["w"] for name in params if name.startswith("conv")]
    channels = conv_weights[0].shape[1] if conv_weights else 1
    out = as_images(x, channels, dtype=next(iter(params.values()))["w"].dtype)
    inputs = []
    for name, spec in zip(layer_names(specs), specs):
        inputs.append(out)
        kind = spec["type"]
        if kind == "conv":
            out = kernels.conv2d_forward(out, params[name]["w"], params[name]["b"], spec["stride"], spec["pad"])
        elif kind == "relu":
            out = layers.relu_forward(out)
        elif kind == "maxpool":
            out = kernels.maxpool2d_forward(out, spec["size"], spec["stride"])
        elif kind == "flatten":
            out = out.reshape(len(out), -1)
        elif kind == "dense":
            w = params[name]["w"]
            if out.ndim != 2 or out.shape[1] != w.shape[0]:
                raise ValueError(f"{name}: expected input (N, {w.shape[0]}); got {out.shape}")
            out = layers.dense_forward(out, w, params[name]["b"])
    return out, {"arch": specs, "backend": backend, "inputs": inputs}


@_one_blas_thread
def backward(params, cache, dlogits):
    """Gradients of the loss for every parameter, from forward's cache and d(loss)/d(logits).

    Returns a dict shaped exactly like params.
    """
    specs, inputs = cache["arch"], cache["inputs"]
    kernels = get_backend(cache["backend"])
    grads = {}
    dout = dlogits
    for position, (name, spec, x) in reversed(list(enumerate(zip(layer_names(specs), specs, inputs)))):
        kind = spec["type"]
        if kind == "conv" and position == 0:
            # The first layer's input is the data, which needs no gradient: dx is skipped.
            dw, db = kernels.conv2d_backward_weights(dout, x, params[name]["w"], spec["stride"], spec["pad"])
            grads[name] = {"w": dw, "b": db}
        elif kind == "conv":
            dout, dw, db = kernels.conv2d_backward(dout, x, params[name]["w"], spec["stride"], spec["pad"])
            grads[name] = {"w": dw, "b": db}
        elif kind == "relu":
            dout = layers.relu_backward(dout, x)
        elif kind == "maxpool":
            dout = kernels.maxpool2d_backward(dout, x, spec["size"], spec["stride"])
        elif kind == "flatten":
            dout = dout.reshape(x.shape)
        elif kind == "dense":
            dout, dw, db = layers.dense_backward(dout, x, params[name]["w"])
            grads[name] = {"w": dw, "b": db}
    return {name: grads[name] for name in params}


def loss_and_grads(params, x, labels, arch, backend="numpy"):
    """One forward and backward pass: (mean loss, grads shaped like params, logits)."""
    logits, cache = forward(params, x, arch, backend)
    loss, dlogits = softmax_cross_entropy(logits, labels)
    return loss, backward(params, cache, dlogits), logits


def predict(params, x, arch, backend="numpy", batch_size=1000):
    """Class indices (N,) for images x, computed batch_size images at a time."""
    if not isinstance(x, np.ndarray):
        raise ValueError(f"x must be a numpy array; got {type(x).__name__}")
    predictions = [
        forward(params, x[start:start + batch_size], arch, backend)[0].argmax(axis=1)
        for start in range(0, len(x), batch_size)
    ]
    return np.concatenate(predictions) if predictions else np.empty(0, dtype=np.int64)
