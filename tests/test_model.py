"""The functional model: init, forward, backward, loss, optimisers and predict, checked
against finite differences, against each other across backends, and for purity."""

import copy

import numpy as np
import pytest
from scipy.special import log_softmax

import fcnn
from fcnn import layers
from fcnn.layer_types import fuse
from fcnn.model import _layers, output_shapes
from fcnn.tree import tree_paths
from fcnn.gradcheck import numerical_gradient, relative_error

# Every backend of the registry that runs here; the loop backend is too slow for the presets.
BACKENDS = fcnn.available_backends()
FAST_BACKENDS = [name for name in BACKENDS if name != "loop"]
GRAD_TOLERANCE = 1e-6

# Stride 2, padding, a non-square kernel, two input channels, overlapping pooling: every
# path of forward and backward, small enough for the loop backend.
SMALL_ARCH = [
    {"type": "conv", "filters": 3, "kernel": [3, 2], "stride": 2, "pad": 1},
    {"type": "relu"},
    {"type": "maxpool", "size": 3, "stride": 1},
    {"type": "conv", "filters": 2, "kernel": 2},
    {"type": "flatten"},
    {"type": "dense", "units": 5},
    {"type": "relu"},
    {"type": "dense", "units": 4},
]
SMALL_INPUT = (2, 9, 8)


def mnist_like(n, seed=0, dtype=np.float64, shape=(1, 28, 28), classes=10):
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape)).astype(dtype), rng.integers(0, classes, n)


def check_model_gradients(arch, backend, x, labels, params, coordinates_per_array=None):
    """Largest finite-difference error over every parameter array of the model."""
    _, grads, _ = fcnn.loss_and_grads(params, x, labels, arch, backend)
    rng = np.random.default_rng(0)
    errors = {}
    for layer, arrays in params.items():
        for key, array in arrays.items():
            indices = None
            if coordinates_per_array is not None and array.size > coordinates_per_array:
                flat = rng.choice(array.size, coordinates_per_array, replace=False)
                indices = [np.unravel_index(i, array.shape) for i in flat]

            def loss():
                return fcnn.loss_and_grads(params, x, labels, arch, backend)[0]

            errors[f"{layer}.{key}"] = relative_error(grads[layer][key], numerical_gradient(loss, array, indices))
    return errors


@pytest.mark.parametrize("backend", BACKENDS)
def test_small_model_gradients_match_finite_differences(backend):
    params = fcnn.init(SMALL_ARCH, seed=1, dtype="float64", input_shape=SMALL_INPUT)
    x, labels = mnist_like(2, shape=SMALL_INPUT, classes=4)
    errors = check_model_gradients(SMALL_ARCH, backend, x, labels, params)
    assert sorted(errors) == ["conv1.b", "conv1.w", "conv2.b", "conv2.w", "dense1.b", "dense1.w", "dense2.b", "dense2.w"]
    assert max(errors.values()) < GRAD_TOLERANCE, errors


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("arch", ["seed", "lenet5"])
def test_preset_gradients_match_finite_differences(arch, backend):
    # Every parameter array; the large ones on 30 random coordinates each (all of them
    # would take minutes, and a wrong formula is wrong almost everywhere).
    params = fcnn.init(arch, seed=2, dtype="float64")
    x, labels = mnist_like(2)
    errors = check_model_gradients(arch, backend, x, labels, params, coordinates_per_array=30)
    assert set(errors) == {f"{layer}.{key}" for layer in params for key in ("w", "b")}
    assert max(errors.values()) < GRAD_TOLERANCE, errors


@pytest.mark.parametrize("arch", ["seed", "lenet5"])
def test_backends_give_the_same_loss_and_gradients(arch):
    params = fcnn.init(arch, seed=3, dtype="float64")
    x, labels = mnist_like(2, seed=3)
    loss, grads, _ = fcnn.loss_and_grads(params, x, labels, arch, "loop")
    for backend in FAST_BACKENDS:
        other_loss, other_grads, _ = fcnn.loss_and_grads(params, x, labels, arch, backend)
        assert other_loss == pytest.approx(loss, rel=1e-12)
        for layer in params:
            for key in ("w", "b"):
                np.testing.assert_allclose(other_grads[layer][key], grads[layer][key], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("arch", ["seed", "lenet5"])
def test_init_shapes_dtypes_and_scale(arch):
    params = fcnn.init(arch, seed=0)
    shapes = {layer: {k: v.shape for k, v in arrays.items()} for layer, arrays in params.items()}
    if arch == "seed":
        assert shapes == {"conv1": {"w": (8, 1, 3, 3), "b": (8,)}, "dense1": {"w": (1352, 10), "b": (10,)}}
    else:
        assert shapes == {
            "conv1": {"w": (6, 1, 5, 5), "b": (6,)}, "conv2": {"w": (16, 6, 5, 5), "b": (16,)},
            "dense1": {"w": (400, 120), "b": (120,)}, "dense2": {"w": (120, 84), "b": (84,)},
            "dense3": {"w": (84, 10), "b": (10,)},
        }
    for layer, arrays in params.items():
        assert arrays["w"].dtype == arrays["b"].dtype == np.float32
        assert not arrays["b"].any()
        fan_in = np.prod(arrays["w"].shape[1:]) if layer.startswith("conv") else arrays["w"].shape[0]
        # He init: std sqrt(2 / fan_in); with >= 72 samples the estimate is within 25 %.
        assert arrays["w"].std() == pytest.approx(np.sqrt(2 / fan_in), rel=0.25)


def test_init_is_reproducible_and_takes_a_generator():
    a, b = fcnn.init("lenet5", seed=7), fcnn.init("lenet5", seed=7)
    c = fcnn.init("lenet5", seed=np.random.default_rng(7))
    d = fcnn.init("lenet5", seed=8)
    for layer in a:
        np.testing.assert_array_equal(a[layer]["w"], b[layer]["w"])
        np.testing.assert_array_equal(a[layer]["w"], c[layer]["w"])
        assert not np.array_equal(a[layer]["w"], d[layer]["w"])
    assert fcnn.init("seed", dtype="float64")["conv1"]["w"].dtype == np.float64


def test_output_shapes_follow_the_layers():
    assert output_shapes("seed") == [(8, 26, 26), (8, 26, 26), (8, 13, 13), (1352,), (10,)]
    assert output_shapes("lenet5")[:7] == [(6, 28, 28), (6, 28, 28), (6, 14, 14), (16, 10, 10),
                                           (16, 10, 10), (16, 5, 5), (400,)]
    assert fcnn.layer_names("seed") == ["conv1", "relu1", "maxpool1", "flatten1", "dense1"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_accepts_flat_and_square_images(backend):
    params = fcnn.init("seed", seed=0)
    x, _ = mnist_like(2, dtype=np.float32)
    logits, _ = fcnn.forward(params, x, "seed", backend)
    assert logits.shape == (2, 10) and logits.dtype == np.float32
    np.testing.assert_array_equal(fcnn.forward(params, x.reshape(2, 784), "seed", backend)[0], logits)
    np.testing.assert_array_equal(fcnn.forward(params, x.reshape(2, 28, 28), "seed", backend)[0], logits)


def deep_copy(tree):
    return copy.deepcopy(tree)


def assert_same_tree(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same_tree(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for item_a, item_b in zip(a, b):
            assert_same_tree(item_a, item_b)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    else:
        assert a == b


@pytest.mark.parametrize("backend", BACKENDS)
def test_public_functions_do_not_modify_their_inputs(backend):
    arch = [dict(spec) for spec in fcnn.PRESETS["seed"]]
    params = fcnn.init(arch, seed=0)
    x, labels = mnist_like(3, dtype=np.float32)
    originals = deep_copy((arch, params, x, labels))

    logits, cache = fcnn.forward(params, x, arch, backend)
    cache_before = deep_copy(cache)
    loss, dlogits = fcnn.softmax_cross_entropy(logits, labels)
    logits_before, dlogits_before = logits.copy(), dlogits.copy()
    grads = fcnn.backward(params, cache, dlogits)
    grads_before = deep_copy(grads)
    velocity = fcnn.zeros_like(params)
    fcnn.sgd_step(params, grads, lr=0.1)
    fcnn.momentum_step(params, grads, velocity, lr=0.1, momentum=0.9)
    fcnn.loss_and_grads(params, x, labels, arch, backend)
    fcnn.predict(params, x, arch, backend, batch_size=2)

    assert_same_tree((arch, params, x, labels), originals)
    assert_same_tree(cache, cache_before)
    assert_same_tree(grads, grads_before)
    assert_same_tree(velocity, fcnn.zeros_like(params))
    np.testing.assert_array_equal(logits, logits_before)
    np.testing.assert_array_equal(dlogits, dlogits_before)


def test_softmax_cross_entropy_matches_scipy_and_finite_differences():
    rng = np.random.default_rng(0)
    logits, labels = rng.standard_normal((5, 7)) * 3, rng.integers(0, 7, 5)
    loss, dlogits = fcnn.softmax_cross_entropy(logits, labels)
    assert loss == pytest.approx(-log_softmax(logits, axis=1)[np.arange(5), labels].mean(), rel=1e-12)
    numeric = numerical_gradient(lambda: fcnn.softmax_cross_entropy(logits, labels)[0], logits)
    assert relative_error(dlogits, numeric) < GRAD_TOLERANCE


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_is_finite_for_huge_logits(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype)
    loss, dlogits = fcnn.softmax_cross_entropy(logits, np.array([1, 2]))
    # Sample 0 puts all its mass on the wrong class: loss 2e4 / 2 samples.
    assert loss == pytest.approx(1e4)
    assert np.isfinite(dlogits).all() and dlogits.dtype == dtype
    np.testing.assert_allclose(dlogits, [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-7)


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.array([0, 10]), r"labels must lie in 0..9; got values from 0 to 10"),
        (np.array([-1, 0]), r"labels must lie in 0..9; got values from -1 to 0"),
        (np.array([0.0, 1.0]), r"labels must be \(2,\) integers; got shape \(2,\) dtype float64"),
        (np.array([0, 1, 2]), r"labels must be \(2,\) integers; got shape \(3,\)"),
    ],
)
def test_softmax_cross_entropy_refuses_bad_labels(labels, message):
    with pytest.raises(ValueError, match=message):
        fcnn.softmax_cross_entropy(np.zeros((2, 10)), labels)


def test_relu_and_dense_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)
    dout = rng.standard_normal((3, 5))
    dx, dw, db = layers.dense_backward(dout, x, w)

    def dense_loss():
        return float(np.sum(dout * layers.dense_forward(x, w, b)))

    for analytic, array in ((dx, x), (dw, w), (db, b)):
        assert relative_error(analytic, numerical_gradient(dense_loss, array)) < GRAD_TOLERANCE
    dout = rng.standard_normal(x.shape)
    numeric = numerical_gradient(lambda: float(np.sum(dout * layers.relu_forward(x))), x)
    assert relative_error(layers.relu_backward(dout, x), numeric) < GRAD_TOLERANCE


def test_sgd_and_momentum_follow_their_formulas():
    params = fcnn.init("seed", seed=0, dtype="float64")
    rng = np.random.default_rng(1)
    grads = {layer: {k: rng.standard_normal(v.shape) for k, v in arrays.items()} for layer, arrays in params.items()}
    stepped = fcnn.sgd_step(params, grads, lr=0.5)
    np.testing.assert_allclose(stepped["conv1"]["w"], params["conv1"]["w"] - 0.5 * grads["conv1"]["w"])

    # Two momentum steps with the same gradient g: v1 = g, v2 = 0.9 g + g; p2 = p - lr (v1 + v2).
    velocity = fcnn.zeros_like(params)
    p1, v1 = fcnn.momentum_step(params, grads, velocity, lr=0.1, momentum=0.9)
    p2, v2 = fcnn.momentum_step(p1, grads, v1, lr=0.1, momentum=0.9)
    g = grads["dense1"]["w"]
    np.testing.assert_allclose(v2["dense1"]["w"], 1.9 * g)
    np.testing.assert_allclose(p2["dense1"]["w"], params["dense1"]["w"] - 0.1 * 2.9 * g)


def test_optimisers_keep_float32_and_refuse_mismatched_trees():
    params = fcnn.init("seed", seed=0)
    grads = {layer: {k: np.ones_like(v) for k, v in arrays.items()} for layer, arrays in params.items()}
    assert fcnn.sgd_step(params, grads, lr=0.1)["dense1"]["w"].dtype == np.float32
    grads["dense1"]["w"] = grads["dense1"]["w"].astype(np.float64)
    with pytest.raises(ValueError, match=r"grads dense1\.w must have the dtype of params dense1\.w, float32; got float64"):
        fcnn.sgd_step(params, grads, lr=0.1)
    grads["dense1"]["w"] = grads["dense1"]["w"].astype(np.float32)
    del grads["dense1"]
    with pytest.raises(ValueError, match=r"grads must have the structure of params"):
        fcnn.sgd_step(params, grads, lr=0.1)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_predict_in_batches_equals_one_big_forward(backend):
    params = fcnn.init("lenet5", seed=0)
    x, _ = mnist_like(23, dtype=np.float32)
    expected = fcnn.forward(params, x, "lenet5", backend)[0].argmax(axis=1)
    np.testing.assert_array_equal(fcnn.predict(params, x, "lenet5", backend, batch_size=5), expected)
    assert fcnn.predict(params, x[:0], "lenet5", backend).shape == (0,)


@pytest.mark.parametrize("arch", ["seed", "lenet5"])
def test_a_few_sgd_steps_fit_a_fixed_batch(arch):
    params = fcnn.init(arch, seed=0)
    x, labels = mnist_like(16, dtype=np.float32)
    first_loss = None
    for _ in range(30):
        loss, grads, _ = fcnn.loss_and_grads(params, x, labels, arch, "numpy")
        first_loss = loss if first_loss is None else first_loss
        params = fcnn.sgd_step(params, grads, lr=0.05)
    # Random labels on 16 images can be memorised: the loss must fall well below ln 10.
    assert loss < 0.5 * first_loss


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: fcnn.init("resnet"), r"arch must be one of the presets \['bn', 'lenet5', 'seed'\] or a list of layers; got 'resnet'"),
        (lambda: fcnn.init([{"type": "pool"}]), r"arch\[0\]: layer type must be one of"),
        (lambda: fcnn.init([{"type": "conv", "filters": 2}]), r"arch\[0\] \(conv\): missing required key 'kernel'"),
        (lambda: fcnn.init([{"type": "dense", "units": 3, "size": 2}]), r"arch\[0\] \(dense\): unknown keys \['size'\]"),
        (lambda: fcnn.init([{"type": "dense", "units": 3}]), r"dense1: needs flat input; got shape \(1, 28, 28\)"),
        (lambda: fcnn.init([{"type": "conv", "filters": 2, "kernel": 0}]), r"arch\[0\] \(conv\): kernel must be an integer >= 1; got 0"),
        (lambda: fcnn.init([{"type": "conv", "filters": 2, "kernel": "3"}]), r"arch\[0\] \(conv\): kernel must be an integer or a pair \[KH, KW\]; got '3'"),
        (lambda: fcnn.init([{"type": "conv", "filters": 2, "kernel": 3, "pad": -1}]), r"arch\[0\] \(conv\): pad must be an integer >= 0; got -1"),
        (lambda: fcnn.init([{"type": "maxpool", "size": True}]), r"arch\[0\] \(maxpool\): size must be an integer >= 1; got True"),
        (lambda: fcnn.init([{"type": "flatten"}, {"type": "dense", "units": 2.5}]), r"arch\[1\] \(dense\): units must be an integer >= 1; got 2.5"),
        (lambda: fcnn.init("seed", dtype="int32"), r"dtype must be float32 or float64; got int32"),
        (lambda: fcnn.forward(fcnn.init("seed"), np.zeros((1, 784), np.uint8), "seed"), r"x must be a float array .*got uint8"),
        (lambda: fcnn.forward(fcnn.init("seed"), np.zeros((1, 3, 28, 28), np.float32), "seed"), r"conv1: w must have shape \(8, 3, 3, 3\) \(the architecture's, for input samples of shape \(3, 28, 28\)\); got \(8, 1, 3, 3\)"),
        (lambda: fcnn.forward(fcnn.init("seed"), np.zeros((1, 2, 3, 28, 28), np.float32), "seed"), r"x must be images \(N, C, H, W\), \(N, H, W\) or \(N, 784\); got shape \(1, 2, 3, 28, 28\)"),
        (lambda: fcnn.forward(fcnn.init("seed"), np.zeros((1, 14, 14), np.float32), "seed"), r"dense1: w must have shape \(288, 10\) .*; got \(1352, 10\)"),
        (lambda: fcnn.forward(fcnn.init("seed"), np.zeros((1, 784), np.float32), "seed", "gpu"), r"backend must be one of"),
        (lambda: fcnn.forward(fcnn.init("seed"), np.zeros((1, 784), np.float32), "lenet5"), r"params must have the layers"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ----- Parameters must fit the architecture (issue 14), checked before any kernel runs -------

class NoKernels:
    """A backend whose every kernel fails loudly, so a test can tell that none ran."""

    def __getattr__(self, name):
        raise AssertionError(f"kernel {name} ran before the parameters were checked")


def refuse_every_kernel(monkeypatch):
    """From here on, any kernel or layer computation fails the test."""
    monkeypatch.setattr(fcnn.model, "get_backend", lambda name: NoKernels())
    for name in ("relu_forward", "relu_backward", "dense_forward", "dense_backward"):
        monkeypatch.setattr(layers, name, lambda *args, name=name: NoKernels().__getattr__(name))


def with_change(arch, change):
    """Fresh float32 params of arch with `change(params)` applied."""
    params = fcnn.init(arch, seed=0)
    change(params)
    return params


def replace(layer, key, value):
    def change(params):
        params[layer][key] = value
    return change


UNFIT_PARAMS = [
    # (what is wrong, arch, change, message pattern)
    ("5x5 kernel for a 3x3 layer", "seed", replace("conv1", "w", np.zeros((8, 1, 5, 5), np.float32)),
     r"conv1: w must have shape \(8, 1, 3, 3\) \(the architecture's, for input samples of shape \(1, 28, 28\)\); got \(8, 1, 5, 5\)"),
    ("dense of 7 units where the architecture says 10", "seed", replace("dense1", "w", np.zeros((1352, 7), np.float32)),
     r"dense1: w must have shape \(1352, 10\) .*; got \(1352, 7\)"),
    ("bias of the wrong length", "seed", replace("dense1", "b", np.zeros(7, np.float32)),
     r"dense1: b must have shape \(10,\) .*; got \(7,\)"),
    ("second conv with the wrong input channels", "lenet5", replace("conv2", "w", np.zeros((16, 5, 5, 5), np.float32)),
     r"conv2: w must have shape \(16, 6, 5, 5\) .*; got \(16, 5, 5, 5\)"),
    ("a float64 array among float32 ones", "seed", replace("dense1", "w", np.zeros((1352, 10))),
     r"dense1: w is float64 but conv1.w is float32; all parameters must share one dtype"),
    ("integer bias", "seed", replace("conv1", "b", np.zeros(8, np.int64)),
     r"conv1: b must be float32 or float64; got int64"),
    ("a list instead of an array", "seed", replace("conv1", "w", np.zeros((8, 1, 3, 3)).tolist()),
     r"conv1: w must be a numpy array; got list"),
    ("missing layer", "seed", lambda params: params.pop("dense1"),
     r"params must have the layers \['conv1', 'dense1'\] of the architecture; got \['conv1'\] \(missing \['dense1'\]\)"),
    ("extra layer", "seed", lambda params: params.update(dense2=params["dense1"]),
     r"params must have the layers \['conv1', 'dense1'\] .*\(not in the architecture: \['dense2'\]\)"),
    ("missing key", "seed", lambda params: params["conv1"].pop("b"),
     r"conv1: params must hold exactly the arrays \['w', 'b'\]; got \['w'\]"),
    ("extra key", "seed", replace("conv1", "v", np.zeros(8, np.float32)),
     r"conv1: params must hold exactly the arrays \['w', 'b'\]; got \['b', 'v', 'w'\]"),
    ("a layer that is not a dict", "seed", lambda params: params.update(conv1=np.zeros(8, np.float32)),
     r"conv1: params must hold exactly the arrays \['w', 'b'\]; got ndarray"),
]


@pytest.mark.parametrize("case", UNFIT_PARAMS, ids=lambda case: case[0])
@pytest.mark.parametrize("call", ["forward", "predict", "predict no images", "backward"])
def test_params_that_do_not_fit_the_architecture_are_refused_by_layer_before_any_kernel_runs(call, case, monkeypatch):
    _, arch, change, message = case
    x, _ = mnist_like(3, dtype=np.float32)
    _, cache = fcnn.forward(fcnn.init(arch, seed=0), x, arch, "numpy")
    params = with_change(arch, change)
    refuse_every_kernel(monkeypatch)
    with pytest.raises(ValueError, match=message):
        if call == "forward":
            fcnn.forward(params, x, arch, "numpy")
        elif call == "predict":
            fcnn.predict(params, x, arch, "numpy")
        elif call == "predict no images":
            fcnn.predict(params, x[:0], arch, "numpy")
        else:
            fcnn.backward(params, cache, np.zeros((3, 10), np.float32))


@pytest.mark.parametrize("params", [None, [1, 2], "seed"])
def test_params_that_are_not_a_dict_are_refused(params):
    with pytest.raises(ValueError, match=r"params must be a dict with the layers \['conv1', 'dense1'\]; got"):
        fcnn.forward(params, np.zeros((1, 784), np.float32), "seed")


def test_backward_refuses_a_dlogits_or_cache_that_does_not_fit():
    params = fcnn.init("seed", seed=0)
    _, cache = fcnn.forward(params, np.zeros((3, 784), np.float32), "seed", "numpy")
    with pytest.raises(ValueError, match=r"dlogits must be an array of the logits' shape \(3, 10\); got \(3, 9\)"):
        fcnn.backward(params, cache, np.zeros((3, 9), np.float32))
    with pytest.raises(ValueError, match=r"cache must be the cache forward returned"):
        fcnn.backward(params, {"units": cache["units"]}, np.zeros((3, 10), np.float32))


class RecordingBackend:
    """A backend from the registry, noting the name of every kernel the model calls (and its input_gradient)."""

    def __init__(self, name):
        self.calls = []
        self.kernels = fcnn.get_backend(name)

    def __getattr__(self, name):
        kernel = getattr(self.kernels, name)
        if kernel is None:  # a fused layer this backend does not offer
            return None

        def recorded(*args, **kwargs):
            self.calls.append(name if "input_gradient" not in kwargs else (name, kwargs["input_gradient"]))
            return kernel(*args, **kwargs)

        return recorded


def test_the_first_conv_layer_computes_no_input_gradient(monkeypatch):
    backend = RecordingBackend("numpy")
    monkeypatch.setattr(fcnn.model, "get_backend", lambda name: backend)
    params = fcnn.init("lenet5", seed=0)
    x, labels = mnist_like(2, dtype=np.float32)
    fcnn.loss_and_grads(params, x, labels, "lenet5", "numpy")
    assert backend.calls == ["conv2d_forward", "maxpool2d_forward", "conv2d_forward", "maxpool2d_forward",
                             "maxpool2d_backward", "conv2d_backward", "maxpool2d_backward", "conv2d_backward_weights"]


def test_a_backend_with_a_fused_layer_runs_each_conv_relu_maxpool_as_one(monkeypatch):
    backend = RecordingBackend("tuned")
    monkeypatch.setattr(fcnn.model, "get_backend", lambda name: backend)
    params = fcnn.init("lenet5", seed=0, dtype="float64")
    x, labels = mnist_like(2, dtype=np.float64)
    loss, grads, _ = fcnn.loss_and_grads(params, x, labels, "lenet5", "tuned")
    assert backend.calls == [
        "conv2d_relu_maxpool2d_forward", "conv2d_relu_maxpool2d_forward",
        ("conv2d_relu_maxpool2d_backward", True), ("conv2d_relu_maxpool2d_backward", False),
    ]
    # The same numbers as the layers run one by one.
    expected_loss, expected, _ = fcnn.loss_and_grads(params, x, labels, "lenet5", "loop")
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    for name in params:
        for key in params[name]:
            np.testing.assert_allclose(grads[name][key], expected[name][key], rtol=1e-9, atol=1e-12)


def test_fused_layers_follow_any_conv_relu_maxpool_run_and_only_those():
    arch = [{"type": "conv", "filters": 3, "kernel": [3, 2], "stride": 2, "pad": 1},
            {"type": "relu"},
            {"type": "maxpool", "size": 3, "stride": 2},
            {"type": "conv", "filters": 4, "kernel": 2},
            {"type": "relu"},
            {"type": "flatten"},
            {"type": "dense", "units": 5}]
    params = fcnn.init(arch, seed=1, dtype="float64", input_shape=(2, 12, 11))
    x = np.random.default_rng(2).standard_normal((3, 2, 12, 11))
    labels = np.array([0, 4, 2])
    _, cache = fcnn.forward(params, x, arch, "tuned")
    units = fuse(_layers(arch), fcnn.get_backend("tuned"))
    assert [(name, spec["type"]) for name, spec, _ in units] == [
        ("conv1", "conv_relu_maxpool"), ("conv2", "conv"), ("relu2", "relu"), ("flatten1", "flatten"), ("dense1", "dense")]
    # One cache entry per unit; the fused one keeps the conv's input and output (x, z), no pool input.
    assert len(cache["units"]) == len(units)
    assert [a.shape for a in cache["units"][0]] == [(3, 2, 12, 11), (3, 3, 6, 6)]
    loss, grads, _ = fcnn.loss_and_grads(params, x, labels, arch, "tuned")
    expected_loss, expected, _ = fcnn.loss_and_grads(params, x, labels, arch, "loop")
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    for name in params:
        for key in params[name]:
            np.testing.assert_allclose(grads[name][key], expected[name][key], rtol=1e-9, atol=1e-12)


def test_a_new_layer_type_is_one_unit_in_layer_types(monkeypatch):
    # A tanh layer, added in one place only: init, forward, backward and the checks all follow.
    from fcnn.layer_types import LAYER_TYPES, LayerType

    class Tanh(LayerType):
        @staticmethod
        def output_shape(spec, shape):
            return shape

        @staticmethod
        def forward(kernels, spec, params, x, mode):
            return np.tanh(x), x

        @staticmethod
        def backward(kernels, spec, params, x, dout, need_dx):
            return dout * (1 - np.tanh(x) ** 2), {}

    monkeypatch.setitem(LAYER_TYPES, "tanh", Tanh)
    arch = [{"type": "conv", "filters": 2, "kernel": 3}, {"type": "tanh"}, {"type": "flatten"},
            {"type": "dense", "units": 3}, {"type": "tanh"}, {"type": "dense", "units": 4}]
    assert fcnn.layer_names(arch) == ["conv1", "tanh1", "flatten1", "dense1", "tanh2", "dense2"]
    params = fcnn.init(arch, seed=0, dtype="float64", input_shape=(1, 6, 6))
    x, labels = mnist_like(2, shape=(1, 6, 6), classes=4)
    errors = check_model_gradients(arch, "numpy", x, labels, params)
    assert max(errors.values()) < GRAD_TOLERANCE, errors


# ----- Arguments that cannot be right (issue 18): refused by name, or a clear result ---------

@pytest.mark.parametrize("batch_size", [-1, 0, 2.5, True, "10", None])
def test_predict_refuses_a_batch_size_that_is_not_a_positive_integer(batch_size):
    x, _ = mnist_like(4, dtype=np.float32)
    with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1; got"):
        fcnn.predict(fcnn.init("seed"), x, "seed", "numpy", batch_size=batch_size)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batch_of_no_images_gives_no_logits_and_zero_gradients(backend):
    params = fcnn.init("lenet5", seed=0)
    logits, cache = fcnn.forward(params, np.zeros((0, 784), np.float32), "lenet5", backend)
    assert logits.shape == (0, 10) and logits.dtype == np.float32
    grads = fcnn.backward(params, cache, np.zeros((0, 10), np.float32))
    for (name, key), array in tree_paths(grads):
        assert array.shape == params[name][key].shape and not array.any()
    assert fcnn.predict(params, np.zeros((0, 28, 28), np.float32), "lenet5", backend).shape == (0,)


def test_the_loss_of_no_images_is_refused_clearly():
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: logits hold no samples; the mean loss of an empty batch is undefined"):
        fcnn.loss_and_grads(fcnn.init("seed"), np.zeros((0, 784), np.float32), np.zeros(0, np.int64), "seed")


def test_predict_refuses_a_network_whose_output_is_not_class_scores():
    arch = [{"type": "conv", "filters": 8, "kernel": 3}, {"type": "relu"}]
    x, _ = mnist_like(4, dtype=np.float32)
    with pytest.raises(ValueError, match=r"predict: the network's output must be class scores \(N, K\); its samples "
                                         r"come out of relu1 with shape \(8, 26, 26\) \(end the architecture with flatten and dense\)"):
        fcnn.predict(fcnn.init(arch), x, arch, "numpy")


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros((1, 3, 28, 28), np.float32),
         r"x: samples of shape \(3, 28, 28\) do not fit these parameters, made for samples of shape \(1, 28, 28\) "
         r"\(conv1: w must have shape \(8, 3, 3, 3\) .*; got \(8, 1, 3, 3\)\)"),
        (np.zeros((1, 14, 14), np.float32),
         r"x: samples of shape \(1, 14, 14\) do not fit these parameters, made for samples of shape \(1, 28, 28\) "
         r"\(dense1: w must have shape \(288, 10\) .*; got \(1352, 10\)\)"),
        (np.zeros((1, 3, 14, 14), np.float32),
         r"x: samples of shape \(3, 14, 14\) do not fit these parameters, made for samples of shape \(1, 28, 28\)"),
        (np.zeros((1, 2, 2), np.float32),
         r"x: samples of shape \(1, 2, 2\) do not fit the architecture: conv1: kernel 3x3 is larger than its padded input 2x2"),
    ],
)
@pytest.mark.parametrize("call", ["forward", "predict"])
def test_an_input_of_the_wrong_shape_is_blamed_on_x(call, x, message):
    params = fcnn.init("seed", seed=0)
    run = fcnn.forward if call == "forward" else fcnn.predict
    with pytest.raises(ValueError, match="^" + message):
        run(params, x, "seed", "numpy")


def test_an_input_of_another_size_than_mnist_is_fine_when_the_params_were_made_for_it():
    # The x blamed above is only x's fault when the params fit another shape: here they fit x's.
    params = fcnn.init(SMALL_ARCH, seed=0, input_shape=SMALL_INPUT)
    x, _ = mnist_like(2, shape=SMALL_INPUT, dtype=np.float32)
    assert fcnn.forward(params, x, SMALL_ARCH, "numpy")[0].shape == (2, 4)
    with pytest.raises(ValueError, match=r"^x: samples of shape \(1, 9, 8\) do not fit these parameters, made for "
                                         r"samples of shape \(2, 9, 8\)"):
        fcnn.forward(params, x[:, :1], SMALL_ARCH, "numpy")


def test_an_arch_list_changed_after_a_call_is_resolved_anew():
    arch = [{"type": "flatten"}, {"type": "dense", "units": 10}]
    assert fcnn.param_shapes(arch)["dense1"]["w"] == (784, 10)
    arch[1]["units"] = 7
    assert fcnn.param_shapes(arch)["dense1"]["w"] == (784, 7)
    arch.insert(1, {"type": "dense", "units": 5})
    assert fcnn.layer_names(arch) == ["flatten1", "dense1", "dense2"]


@pytest.mark.parametrize("size", [2.0, True])
def test_a_refused_size_equal_to_an_accepted_one_is_still_refused(size):
    fcnn.output_shapes([{"type": "maxpool", "size": 2}])  # 2 == 2.0 == ... hash alike: a key must tell them apart
    with pytest.raises(ValueError, match="size must be an integer >= 1"):
        fcnn.output_shapes([{"type": "maxpool", "size": size}])


def test_changing_the_specs_in_forwards_cache_changes_no_later_call():
    params = fcnn.init("seed", seed=0)
    x, _ = mnist_like(2)
    _, cache = fcnn.forward(params, x, "seed")
    cache["arch"][0]["filters"] = 99
    cache["arch"][0]["kernel"][0] = 7
    assert fcnn.resolve_arch("seed")[0] == {"type": "conv", "filters": 8, "kernel": [3, 3], "stride": 1, "pad": 0}
    fcnn.forward(params, x, "seed")
