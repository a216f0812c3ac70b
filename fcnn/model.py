"""The network as data and pure functions: init, forward, backward, predict.

An architecture is a list of layer specs (plain dicts), so a new network is a new list:

    [{"type": "conv", "filters": 8, "kernel": 3},  # also "stride" (1), "pad" (0); kernel int or [KH, KW]
     {"type": "relu"},
     {"type": "maxpool", "size": 2},               # also "stride" (None: the window size)
     {"type": "flatten"},
     {"type": "dense", "units": 10}]

Parameters are {"conv1": {"w": ..., "b": ...}, "batchnorm1": {"gamma": ..., "beta": ...}, ...}:
one entry per layer that has weights, named by its type and its rank among layers of that type.
The model's state (batch norm's running statistics) is a tree of the same kind, apart from the
parameters, from init_state; forward takes it and, in training mode, hands back the new one:

    state = fcnn.init_state(arch)
    logits, cache, state = fcnn.forward(params, x, arch, state=state, training=True, rng=rng)

What each layer type computes lives in fcnn.layer_types; this module runs the backend's units
in order, and checks that parameters, state and inputs fit the architecture before any kernel runs.
"""

import functools
from typing import NamedTuple

import numpy as np

from fcnn.kernels import get_backend
from fcnn.layer_types import LAYER_TYPES, REQUIRED, Mode, check_int, fuse_runs, offers_fusion
from fcnn.losses import softmax_cross_entropy
from fcnn.tree import describe_structure, tree_paths, tree_structure

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
    # Batch norm and dropout (issue 19), trained with Adam: 16 and 32 filters of 5x5, 28x28 -> 14x14
    # -> 10x10 -> 5x5. Each conv -> relu -> maxpool stays one run, so that the tuned backend fuses
    # it, and batch norm follows the pool, normalising a quarter of the values it would before relu.
    "bn": [
        {"type": "conv", "filters": 16, "kernel": 5, "pad": 2},
        {"type": "relu"},
        {"type": "maxpool", "size": 2},
        {"type": "batchnorm"},
        {"type": "conv", "filters": 32, "kernel": 5},
        {"type": "relu"},
        {"type": "maxpool", "size": 2},
        {"type": "batchnorm"},
        {"type": "flatten"},
        {"type": "dense", "units": 128},
        {"type": "batchnorm"},
        {"type": "relu"},
        {"type": "dropout", "rate": 0.5},
        {"type": "dense", "units": 10},
    ],
}

MNIST_SHAPE = (1, 28, 28)
FLOAT_DTYPES = (np.float32, np.float64)


def resolve_arch(arch):
    """A preset name or a list of layer specs -> the list of specs with every default filled in.

    Raises ValueError for an unknown preset, layer type or key, a missing required key, or a
    value that cannot work (a kernel of 0, a negative pad).
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
        if kind not in LAYER_TYPES:
            raise ValueError(f"arch[{position}]: layer type must be one of {sorted(LAYER_TYPES)}; got {spec!r}")
        keys = LAYER_TYPES[kind].keys
        unknown = set(spec) - set(keys) - {"type"}
        if unknown:
            raise ValueError(
                f"arch[{position}] ({kind}): unknown keys {sorted(unknown)}; a {kind} layer takes {sorted(keys)}"
            )
        full = {"type": kind}
        for key, default in keys.items():
            if key not in spec and default is REQUIRED:
                raise ValueError(f"arch[{position}] ({kind}): missing required key {key!r}")
            full[key] = spec.get(key, default)
        try:
            resolved.append(LAYER_TYPES[kind].resolve(full))
        except ValueError as error:
            raise ValueError(f"arch[{position}] ({kind}): {error}") from None
    return resolved


def _layers(arch):
    """(name, spec, layer type) for every layer of arch, in order; names as in layer_names.

    The functions below whose name starts with _ take this list, so that each public function
    resolves its architecture once.
    """
    return _plan(arch).layers


class _Plan(NamedTuple):
    """What the model keeps of an architecture: its layers (_layers), its units for a backend
    that fuses conv -> relu -> maxpool (fuse_runs), and the resolved specs' _frozen key, from
    which forward gives its cache a copy of them, and backward finds the plan again."""

    layers: tuple
    fused_units: tuple
    resolved: tuple


def _plan(arch):
    """The _Plan of arch.

    Resolving and fusing are most of a small training step's Python time, so the plan is kept
    per architecture, keyed on its contents (_frozen): an arch list the user later changes is a
    new key, never a stale hit. Its tuples are shared between calls: their specs are read,
    never changed, and never handed to the user.
    """
    if isinstance(arch, str):
        arch = PRESETS.get(arch, arch)  # the preset's contents are the key: a changed row is a new one
    return _plan_for_key(_frozen(arch))


def _plan_for_key(key):
    """The _Plan of the arch _frozen made `key` from: kept per key, as _plan says.

    Making the key costs about as much as a kept plan saves, so a caller that has one (backward,
    from forward's cache) passes it here instead of an arch.
    """
    try:
        hash(key)
    except TypeError:  # a value no key can hold (an array as a kernel size): planned afresh
        return _plan_of(_thawed(key))
    return _cached_plan(key)


@functools.lru_cache(maxsize=256)
def _cached_plan(key):
    return _plan_of(_thawed(key))


def _plan_of(arch):
    counts = {}
    layer_list = []
    for spec in resolve_arch(arch):
        counts[spec["type"]] = counts.get(spec["type"], 0) + 1
        layer_list.append((f"{spec['type']}{counts[spec['type']]}", spec, LAYER_TYPES[spec["type"]]))
    return _Plan(tuple(layer_list), tuple(fuse_runs(layer_list)), _frozen([spec for _, spec, _ in layer_list]))


def _frozen(value):
    """value (an arch, spec or spec value) as a hashable key of its contents, every type kept.

    Types are part of the key because 3, 3.0, np.int64(3) and True are equal and hash alike,
    yet 3.0 and True are refused as sizes.
    """
    if isinstance(value, dict):
        return (type(value), tuple((key, _frozen(item)) for key, item in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value), tuple(_frozen(item) for item in value))
    return (type(value), value)


def _thawed(key):
    """The value _frozen made key from: new dicts and lists, equal to the original."""
    kind, contents = key
    if issubclass(kind, dict):
        return kind((name, _thawed(item)) for name, item in contents)
    if issubclass(kind, (list, tuple)):
        return kind(_thawed(item) for item in contents)
    return contents


def layer_names(arch):
    """One name per layer: conv1, relu1, maxpool1, conv2, ... (type + rank among its type)."""
    return [name for name, _, _ in _layers(arch)]


def output_shapes(arch, input_shape=MNIST_SHAPE):
    """The shape of one sample after each layer, e.g. [(8, 26, 26), (8, 26, 26), (8, 13, 13), (1352,), (10,)].

    Raises ValueError naming the layer where the shapes do not fit.
    """
    return _output_shapes(_layers(arch), input_shape)


def _output_shapes(layer_list, input_shape):
    shape = tuple(input_shape)
    shapes = []
    for name, spec, layer in layer_list:
        try:
            shape = layer.output_shape(spec, shape)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
        shapes.append(shape)
    return shapes


def param_shapes(arch, input_shape=MNIST_SHAPE):
    """The shape of every parameter array, e.g. {"conv1": {"w": (8, 1, 3, 3), "b": (8,)}, "dense1": {...}}.

    Layers without parameters (relu, maxpool, flatten) have no entry.
    """
    return _param_shapes(_layers(arch), input_shape)


def _param_shapes(layer_list, input_shape, kind="param_shapes"):
    """{name: the layer type's param_shapes (or, with kind "state_shapes", its state_shapes)} of every layer that has them."""
    inputs = [tuple(input_shape)] + _output_shapes(layer_list, input_shape)
    return {
        name: getattr(layer, kind)(spec, shape)
        for (name, spec, layer), shape in zip(layer_list, inputs)
        if getattr(layer, kind) is not None
    }


def state_shapes(arch, input_shape=MNIST_SHAPE):
    """The shape of every state array, e.g. {"batchnorm1": {"running_mean": (8,), "running_var": (8,)}}.

    Only layers with state (batch norm) have an entry; {} for a network without.
    """
    return _param_shapes(_layers(arch), input_shape, "state_shapes")


def init_state(arch, dtype="float32", input_shape=MNIST_SHAPE):
    """The model's state before any training, each layer type's own (batch norm: running mean 0, variance 1).

    {} for a network without state. Pass it to forward, loss_and_grads and predict as state=...;
    a training step hands back the next one.
    """
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be float32 or float64; got {dtype}")
    layer_list = _layers(arch)
    types = {name: layer for name, _, layer in layer_list}
    return {name: types[name].init_state(shapes, dtype)
            for name, shapes in _param_shapes(layer_list, input_shape, "state_shapes").items()}


def _check_state(state, layer_list, sample_shape, dtype):
    """state must be None for a network without state, and otherwise hold exactly the arrays
    init_state gives (shapes for samples of sample_shape), of the parameters' dtype.

    Raises ValueError naming the layer and array, e.g. "state: batchnorm1.running_var ...".
    """
    if state is None and all(layer.state_shapes is None for _, _, layer in layer_list):
        return
    expected = _param_shapes(layer_list, sample_shape, "state_shapes")
    if state is None:
        if expected:
            raise ValueError(f"state: the layers {list(expected)} keep state; pass state=fcnn.init_state(arch) "
                             f"(or the state a training step returned)")
        return
    if not isinstance(state, dict) or tree_structure(state) != tree_structure(expected):
        got = describe_structure(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"state must hold {describe_structure(expected)} (fcnn.init_state(arch)); got {got}")
    for (name, key), shape in tree_paths(expected):
        array = state[name][key]
        if not isinstance(array, np.ndarray) or array.dtype != dtype or array.shape != shape:
            got = f"{array.dtype} {array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
            raise ValueError(f"state: {name}.{key} must be a {dtype} array of shape {shape} (the parameters' dtype); got {got}")


def init(arch, seed=0, dtype="float32", input_shape=MNIST_SHAPE):
    """New parameters, each layer type's own (conv and dense: He-normal w, zero b).

    He-normal: std = sqrt(2 / fan_in), fan_in the number of inputs each output sums over: C*KH*KW
    for a conv, D for a dense layer. arch: preset name or list of layer specs; seed: int or
    numpy.random.Generator. Returns {"conv1": {"w": (F, C, KH, KW), "b": (F,)}, "dense1":
    {"w": (D, M), "b": (M,)}, ...}.
    """
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be float32 or float64; got {dtype}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    layer_list = _layers(arch)
    types = {name: layer for name, _, layer in layer_list}
    return {name: types[name].init(shapes, rng, dtype) for name, shapes in _param_shapes(layer_list, input_shape).items()}


def as_images(x):
    """x (N, C, H, W), or one channel as (N, H, W) or (N, 784) -> (N, C, H, W), a view of x.

    Raises ValueError for a non-float x or another shape.
    """
    if not isinstance(x, np.ndarray):
        raise ValueError(f"x must be a numpy array; got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise ValueError(f"x must be a float array (scale uint8 images with fcnn.data.scale); got {x.dtype}")
    if x.ndim == 2 and x.shape[1] == 28 * 28:
        x = x.reshape(-1, 1, 28, 28)
    elif x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"x must be images (N, C, H, W), (N, H, W) or (N, 784); got shape {x.shape}")
    return x


def _params_dtype(params, expected):
    """The one float dtype of params, once they are checked to hold what the architecture needs.

    params must be a dict with exactly the architecture's layers that have parameters, each
    holding exactly the arrays its layer type names, numpy arrays, all float32 or all float64.
    (Their shapes: _check_param_shapes.) expected: the architecture's _param_shapes. Raises
    ValueError naming the layer that does not fit.
    """
    if not isinstance(params, dict):
        raise ValueError(f"params must be a dict with the layers {list(expected)}; got {type(params).__name__}")
    missing = [name for name in expected if name not in params]
    extra = [name for name in params if name not in expected]
    if missing or extra:
        raise ValueError(
            f"params must have the layers {list(expected)} of the architecture; got {list(params)}"
            + (f" (missing {missing})" if missing else "")
            + (f" (not in the architecture: {extra})" if extra else "")
        )
    for name, shapes in expected.items():
        arrays = params[name]
        if not isinstance(arrays, dict) or sorted(arrays) != sorted(shapes):
            got = sorted(arrays) if isinstance(arrays, dict) else type(arrays).__name__
            raise ValueError(f"{name}: params must hold exactly the arrays {list(shapes)}; got {got}")
    dtype = first = None
    for (name, key), _ in tree_paths(expected):
        array = params[name][key]
        if not isinstance(array, np.ndarray):
            raise ValueError(f"{name}: {key} must be a numpy array; got {type(array).__name__}")
        if array.dtype not in FLOAT_DTYPES:
            raise ValueError(f"{name}: {key} must be float32 or float64; got {array.dtype}")
        if dtype is None:
            dtype, first = array.dtype, f"{name}.{key}"
        elif array.dtype != dtype:
            raise ValueError(f"{name}: {key} is {array.dtype} but {first} is {dtype}; all parameters must share one dtype")
    return dtype


def _check_param_shapes(params, expected, input_shape):
    """Every array of params must have the shape `expected` gives it, the architecture's for samples of input_shape.

    Raises ValueError naming the layer, e.g. "conv1: w must have shape (8, 1, 3, 3) ...; got (8, 1, 5, 5)".
    """
    for (name, key), shape in tree_paths(expected):
        if params[name][key].shape != shape:
            raise ValueError(
                f"{name}: {key} must have shape {shape} (the architecture's, for input samples of shape "
                f"{tuple(input_shape)}); got {params[name][key].shape}"
            )


def _fitted_images(params, x, layer_list):
    """x as (N, C, H, W) images of the params' dtype, once params and x are checked to fit the layers.

    Raises ValueError naming the layer, or x, that does not fit; called before any kernel runs.
    x is the one blamed when its samples do not fit the architecture, or when the parameters
    would fit samples of another shape: x's with the channels the first conv takes, or MNIST's.
    """
    images = as_images(x)
    sample_shape = images.shape[1:]
    try:
        expected = _param_shapes(layer_list, sample_shape)
    except ValueError as error:
        raise ValueError(f"x: samples of shape {sample_shape} do not fit the architecture: {error}") from None
    dtype = _params_dtype(params, expected)
    try:
        _check_param_shapes(params, expected, sample_shape)
    except ValueError as error:
        made_for = _fitting_sample_shape(params, layer_list, sample_shape)
        if made_for is None:
            raise
        raise ValueError(
            f"x: samples of shape {sample_shape} do not fit these parameters, made for samples of shape "
            f"{made_for} ({error})"
        ) from None
    return images.astype(dtype, copy=False)


def _fitting_sample_shape(params, layer_list, sample_shape):
    """A sample shape other than sample_shape that params fit, among the likely ones; else None.

    The likely ones: sample_shape with the channel count the first conv's w takes, and MNIST's
    (C, 28, 28) with it.
    """
    C, *spatial = sample_shape
    first_conv = next((name for name, spec, _ in layer_list if spec["type"] == "conv"), None)
    if first_conv is not None and params[first_conv]["w"].ndim == 4:
        C = params[first_conv]["w"].shape[1]
    for candidate in ((C, *spatial), (C, *MNIST_SHAPE[1:])):
        if candidate == tuple(sample_shape):
            continue
        try:
            _check_param_shapes(params, _param_shapes(layer_list, candidate), candidate)
        except ValueError:
            continue
        return candidate
    return None


def forward(params, x, arch, backend="numpy", *, state=None, training=False, rng=None):
    """Run the network: x (N, C, H, W) (or (N, H, W), (N, 784)) -> (logits (N, K), cache), and with
    state given -> (logits, cache, new_state).

    The backend's units (the layers, or a fused run of them: fcnn.layer_types.fuse) in order,
    each one's output the next one's input. The cache holds what backward needs: the resolved
    architecture (a copy of its own, and as the plan's key, "arch_key", so that backward finds
    the plan without re-keying it), the backend's name, the input's shape and every unit's own cache.

    Two modes, as batch norm and dropout need. Evaluation (training=False, as predict runs): batch
    norm normalises by state's running statistics and dropout passes x through. Training: batch
    norm uses the batch's statistics and new_state holds the updated running ones; dropout draws
    its mask from rng, a numpy.random.Generator. Nothing is changed in place: new_state is a new
    tree (in evaluation, the state passed in). A network with batch norm needs state
    (init_state(arch)); one without may leave it out and gets the two-item result.
    """
    if not isinstance(training, bool):
        raise ValueError(f"training must be True or False; got {training!r}")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator or None; got {type(rng).__name__}")
    kernels = get_backend(backend)
    layer_list, fused_units, resolved = _plan(arch)
    out = _fitted_images(params, x, layer_list)
    _check_state(state, layer_list, out.shape[1:], out.dtype)
    mode = Mode(training, rng)
    # The user's copy of the specs: the shared ones in layer_list must never be changed.
    cache = {"arch": _thawed(resolved), "arch_key": resolved, "backend": backend, "input_shape": out.shape}
    new_state = {}
    unit_caches = []
    for name, spec, layer in fused_units if offers_fusion(kernels) else layer_list:
        if layer.state_shapes is None:
            out, unit_cache = layer.forward(kernels, spec, params.get(name), out, mode)
        else:
            out, unit_cache, new_state[name] = layer.forward(kernels, spec, params[name], out, mode, state[name])
        unit_caches.append(unit_cache)
    cache = {**cache, "units": unit_caches}
    return (out, cache) if state is None else (out, cache, new_state)


def backward(params, cache, dlogits):
    """Gradients of the loss for every parameter, from forward's cache and d(loss)/d(logits).

    The chain rule, unit by unit from the last: dout = d(loss)/d(the unit's output) becomes
    d(loss)/d(its input). The first unit's input is the data, so its dx is not computed.
    dlogits (N, K) -> a dict shaped exactly like params.
    """
    if not isinstance(cache, dict) or set(cache) != {"arch", "arch_key", "backend", "input_shape", "units"}:
        raise ValueError("cache must be the cache forward returned, {'arch', 'arch_key', 'backend', 'input_shape', 'units'}")
    N, *sample_shape = cache["input_shape"]
    kernels = get_backend(cache["backend"])
    layer_list, fused_units, _ = _plan_for_key(cache["arch_key"])
    expected = _param_shapes(layer_list, sample_shape)
    _params_dtype(params, expected)
    _check_param_shapes(params, expected, sample_shape)
    logits_shape = (N, *_output_shapes(layer_list, sample_shape)[-1])
    if not isinstance(dlogits, np.ndarray) or dlogits.shape != logits_shape:
        got = dlogits.shape if isinstance(dlogits, np.ndarray) else type(dlogits).__name__
        raise ValueError(f"dlogits must be an array of the logits' shape {logits_shape}; got {got}")
    units = fused_units if offers_fusion(kernels) else layer_list
    grads = {}
    dout = dlogits
    for position in reversed(range(len(units))):
        name, spec, layer = units[position]
        dout, unit_grads = layer.backward(kernels, spec, params.get(name), cache["units"][position], dout,
                                          need_dx=position > 0)
        if layer.param_shapes is not None:
            grads[name] = unit_grads
    return {name: grads[name] for name in params}


def loss_and_grads(params, x, labels, arch, backend="numpy", *, state=None, training=True, rng=None):
    """One forward and backward pass of a training step: (mean loss, grads shaped like params, logits),
    and with state given, the new state as a fourth item.

    Training mode by default (batch statistics, dropout drawn from rng): see forward.
    """
    logits, cache, *new_state = forward(params, x, arch, backend, state=state, training=training, rng=rng)
    loss, dlogits = softmax_cross_entropy(logits, labels)
    return (loss, backward(params, cache, dlogits), logits, *new_state)


def predict(params, x, arch, backend="numpy", batch_size=1000, *, state=None):
    """Class indices (N,) for images x, computed batch_size (an integer >= 1) images at a time.

    Evaluation mode: batch norm uses state's running statistics, dropout passes x through. The
    network's output must be class scores (N, K). An empty x gives an empty result.
    """
    check_int("batch_size", batch_size, 1)
    layer_list = _layers(arch)
    images = _fitted_images(params, x, layer_list)
    _check_state(state, layer_list, images.shape[1:], images.dtype)
    output_shape = _output_shapes(layer_list, images.shape[1:])[-1]
    if len(output_shape) != 1:
        raise ValueError(
            f"predict: the network's output must be class scores (N, K); its samples come out of "
            f"{layer_list[-1][0]} with shape {output_shape} (end the architecture with flatten and dense)"
        )
    predictions = [
        forward(params, images[start:start + batch_size], arch, backend, state=state)[0].argmax(axis=1)
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(predictions) if predictions else np.empty(0, dtype=np.int64)
