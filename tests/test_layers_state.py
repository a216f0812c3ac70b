"""Batch norm, dropout, average pooling, tanh and sigmoid as layers, and the model's state and
randomness in the open: training mode hands back the new state, evaluation reads it.

Checked against float64 finite differences (dropout with a fixed Generator, so a fixed mask),
against an independent NumPy computation of the running statistics, and against PyTorch."""

import copy

import numpy as np
import pytest

import fcnn
from fcnn.gradcheck import numerical_gradient, relative_error
from fcnn.tree import tree_paths

BACKENDS = fcnn.available_backends()
GRAD_TOLERANCE = 1e-6
NORM_KERNELS = ("batchnorm_forward", "batchnorm_backward", "dropout_forward", "dropout_backward",
                "avgpool2d_forward", "avgpool2d_backward")

# Every new layer type, batch norm per channel (after a conv's ReLU) and per unit (after a
# dense layer's tanh), both pools, overlapping max-pool windows: small enough for the loop backend.
ARCH = [
    {"type": "conv", "filters": 4, "kernel": 3, "pad": 1},
    {"type": "relu"},
    {"type": "batchnorm"},
    {"type": "avgpool", "size": 2},
    {"type": "conv", "filters": 3, "kernel": 3},
    {"type": "sigmoid"},
    {"type": "maxpool", "size": 2, "stride": 1},
    {"type": "flatten"},
    {"type": "dense", "units": 6},
    {"type": "tanh"},
    {"type": "batchnorm", "momentum": 0.2, "eps": 1e-3},
    {"type": "dropout", "rate": 0.3},
    {"type": "dense", "units": 4},
]
INPUT = (2, 8, 8)


def kernels_registered(backend):
    """Skip where the registry does not offer the batch norm, dropout and avgpool kernels yet."""
    kernels = fcnn.get_backend(backend)
    missing = [name for name in NORM_KERNELS if getattr(kernels, name, None) is None]
    if missing:
        pytest.skip(f"backend {backend!r} does not offer {missing} yet (registered by branch norm)")


def data(n=5, seed=0, shape=INPUT, classes=4):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)), rng.integers(0, classes, n)


def trained_state(arch, params, x, labels, backend, steps=2):
    """A state whose running statistics are not the initial ones: a few training passes."""
    state = fcnn.init_state(arch, dtype="float64", input_shape=x.shape[1:])
    for step in range(steps):
        *_, state = fcnn.loss_and_grads(params, x + step, labels, arch, backend, state=state,
                                        rng=np.random.default_rng(step))
    return state


def test_the_new_layer_types_have_their_defaults_shapes_and_names():
    resolved = fcnn.resolve_arch([{"type": "batchnorm"}, {"type": "dropout"}, {"type": "avgpool"},
                                  {"type": "tanh"}, {"type": "sigmoid"}])
    assert resolved == [{"type": "batchnorm", "momentum": 0.1, "eps": 1e-5}, {"type": "dropout", "rate": 0.5},
                        {"type": "avgpool", "size": 2, "stride": None}, {"type": "tanh"}, {"type": "sigmoid"}]
    assert fcnn.output_shapes(ARCH, INPUT) == [(4, 8, 8), (4, 8, 8), (4, 8, 8), (4, 4, 4), (3, 2, 2), (3, 2, 2),
                                               (3, 1, 1), (3,), (6,), (6,), (6,), (6,), (4,)]
    assert fcnn.param_shapes(ARCH, INPUT)["batchnorm1"] == {"gamma": (4,), "beta": (4,)}
    assert fcnn.param_shapes(ARCH, INPUT)["batchnorm2"] == {"gamma": (6,), "beta": (6,)}
    assert fcnn.state_shapes(ARCH, INPUT) == {"batchnorm1": {"running_mean": (4,), "running_var": (4,)},
                                              "batchnorm2": {"running_mean": (6,), "running_var": (6,)}}
    params = fcnn.init(ARCH, input_shape=INPUT)
    np.testing.assert_array_equal(params["batchnorm1"]["gamma"], np.ones(4, np.float32))
    np.testing.assert_array_equal(params["batchnorm1"]["beta"], np.zeros(4, np.float32))
    state = fcnn.init_state(ARCH, input_shape=INPUT)
    np.testing.assert_array_equal(state["batchnorm2"]["running_mean"], np.zeros(6, np.float32))
    np.testing.assert_array_equal(state["batchnorm2"]["running_var"], np.ones(6, np.float32))
    assert fcnn.init_state("lenet5") == {}


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"type": "dropout", "rate": 1}, r"arch\[0\] \(dropout\): rate must be a finite number >= 0 and < 1; got 1"),
        ({"type": "dropout", "rate": -0.1}, r"rate must be a finite number >= 0 and < 1; got -0.1"),
        ({"type": "dropout", "rate": "0.5"}, r"rate must be a finite number >= 0 and < 1; got '0.5'"),
        ({"type": "batchnorm", "momentum": float("nan")},
         r"arch\[0\] \(batchnorm\): momentum must be a finite number >= 0 and <= 1; got nan"),
        ({"type": "batchnorm", "momentum": True}, r"momentum must be a finite number >= 0 and <= 1; got True"),
        ({"type": "batchnorm", "eps": 0}, r"arch\[0\] \(batchnorm\): eps must be a finite number > 0; got 0"),
        ({"type": "batchnorm", "eps": float("inf")}, r"eps must be a finite number > 0; got inf"),
        ({"type": "avgpool", "size": 0}, r"arch\[0\] \(avgpool\): size must be an integer >= 1; got 0"),
    ],
)
def test_new_layer_values_that_cannot_work_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        fcnn.resolve_arch([spec])


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_network_with_batchnorm_and_dropout_matches_finite_differences(backend, training):
    kernels_registered(backend)
    params = fcnn.init(ARCH, seed=1, dtype="float64", input_shape=INPUT)
    x, labels = data()
    state = trained_state(ARCH, params, x, labels, backend)

    def loss_and_grads():
        # A new Generator of the same seed every call: the same dropout mask in every evaluation.
        return fcnn.loss_and_grads(params, x, labels, ARCH, backend, state=state, training=training,
                                   rng=np.random.default_rng(7))

    _, grads, _, _ = loss_and_grads()
    errors = {".".join(path): relative_error(grads[path[0]][path[1]],
                                             numerical_gradient(lambda: loss_and_grads()[0], array))
              for path, array in tree_paths(params)}
    assert len(errors) == 12 and max(errors.values()) < GRAD_TOLERANCE, errors


def test_a_conv_bias_before_batchnorm_gets_no_gradient():
    # The batch mean takes the bias away again, so the loss does not depend on it: the mean and
    # variance are functions of x in training mode, not constants.
    arch = [{"type": "conv", "filters": 3, "kernel": 3}, {"type": "batchnorm"}, {"type": "relu"},
            {"type": "flatten"}, {"type": "dense", "units": 4}]
    kernels_registered("numpy")
    params = fcnn.init(arch, seed=0, dtype="float64", input_shape=(1, 6, 6))
    x, labels = data(shape=(1, 6, 6))
    state = fcnn.init_state(arch, dtype="float64", input_shape=(1, 6, 6))
    _, grads, _, _ = fcnn.loss_and_grads(params, x, labels, arch, "numpy", state=state)
    assert np.abs(grads["conv1"]["b"]).max() < 1e-12 * np.abs(grads["conv1"]["w"]).max()


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_hands_back_running_statistics_by_pytorchs_rule_and_changes_nothing(backend):
    kernels_registered(backend)
    # Batch norm first, so its input is x itself: per channel over (N, H, W), and per unit over N.
    for arch, axes, shape in (
        ([{"type": "batchnorm", "momentum": 0.3}, {"type": "flatten"}, {"type": "dense", "units": 4}], (0, 2, 3), (3, 4, 5)),
        ([{"type": "flatten"}, {"type": "batchnorm"}, {"type": "dense", "units": 4}], (0,), (1, 2, 3)),
    ):
        momentum = fcnn.resolve_arch(arch)[arch[0]["type"] == "flatten"]["momentum"]
        params = fcnn.init(arch, dtype="float64", input_shape=shape)
        x, labels = data(6, shape=shape)
        flat = x if len(axes) == 3 else x.reshape(6, -1)
        state = fcnn.init_state(arch, dtype="float64", input_shape=shape)
        inputs = {"params": params, "state": state, "x": x}
        before = copy.deepcopy(inputs)
        logits, cache, new_state = fcnn.forward(params, x, arch, backend, state=state, training=True)
        bn = new_state["batchnorm1"]
        np.testing.assert_allclose(bn["running_mean"], momentum * flat.mean(axis=axes), rtol=1e-12)
        np.testing.assert_allclose(bn["running_var"], (1 - momentum) + momentum * flat.var(axis=axes, ddof=1), rtol=1e-12)
        for (path, a), (_, b) in zip(tree_paths(before), tree_paths(inputs), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=str(path))
        assert state["batchnorm1"]["running_var"] is not bn["running_var"]
        # Evaluation reads the state and hands it back unchanged.
        _, _, same = fcnn.forward(params, x, arch, backend, state=new_state)
        assert same == new_state


@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluation_uses_running_statistics_and_no_dropout_and_predict_runs_it(backend):
    kernels_registered(backend)
    params = fcnn.init(ARCH, seed=2, dtype="float64", input_shape=INPUT)
    x, labels = data(7)
    state = trained_state(ARCH, params, x, labels, backend)
    logits, _, _ = fcnn.forward(params, x, ARCH, backend, state=state)
    # No dropout in evaluation: the network without its dropout layer gives the same logits.
    without_dropout = [spec for spec in ARCH if spec["type"] != "dropout"]
    np.testing.assert_allclose(fcnn.forward(params, x, without_dropout, backend, state=state)[0], logits, rtol=1e-12)
    # Running statistics, not the batch's: each image's logits are the same alone as in the batch.
    alone = np.concatenate([fcnn.forward(params, x[i:i + 1], ARCH, backend, state=state)[0] for i in range(7)])
    np.testing.assert_allclose(alone, logits, rtol=1e-10)
    np.testing.assert_array_equal(fcnn.predict(params, x, ARCH, backend, batch_size=3, state=state), logits.argmax(axis=1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_draws_its_mask_from_the_generator_passed_in(backend):
    kernels_registered(backend)
    arch = [{"type": "flatten"}, {"type": "dropout", "rate": 0.5}, {"type": "dense", "units": 3}]
    params = fcnn.init(arch, dtype="float64", input_shape=(1, 4, 4))
    x, _ = data(3, shape=(1, 4, 4))
    runs = [fcnn.forward(params, x, arch, backend, training=True, rng=np.random.default_rng(seed))[0] for seed in (1, 1, 2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    # The mask is the contract's: (rng.random(shape) >= rate) / (1 - rate) on dense1's input.
    mask = (np.random.default_rng(1).random((3, 16)) >= 0.5) / 0.5
    np.testing.assert_allclose(runs[0], (x.reshape(3, 16) * mask) @ params["dense1"]["w"] + params["dense1"]["b"], rtol=1e-12)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda p, x: fcnn.forward(p, x, ARCH), r"state: the layers \['batchnorm1', 'batchnorm2'\] keep state; pass state=fcnn.init_state\(arch\)"),
        (lambda p, x: fcnn.predict(p, x, ARCH), r"state: the layers \['batchnorm1', 'batchnorm2'\] keep state"),
        (lambda p, x: fcnn.forward(p, x, ARCH, state={}), r"state must hold \{'batchnorm1': \['running_mean', 'running_var'\], 'batchnorm2': .*; got \[\]"),
        (lambda p, x: fcnn.forward(p, x, ARCH, state=fcnn.init_state(ARCH, dtype="float64", input_shape=INPUT)),
         r"state: batchnorm1.running_mean must be a float32 array of shape \(4,\) \(the parameters' dtype\); got float64 \(4,\)"),
        (lambda p, x: fcnn.forward(p, x, ARCH, state=fcnn.init_state(ARCH, input_shape=INPUT), training=True),
         r"dropout in training mode needs rng, a numpy.random.Generator; got None"),
        (lambda p, x: fcnn.forward(p, x, ARCH, state=fcnn.init_state(ARCH, input_shape=INPUT), training=True, rng=3),
         r"rng must be a numpy.random.Generator or None; got int"),
        (lambda p, x: fcnn.forward(p, x, ARCH, state=fcnn.init_state(ARCH, input_shape=INPUT), training="yes"),
         r"training must be True or False; got 'yes'"),
        (lambda p, x: fcnn.forward(p, x[:1], ARCH, "numpy", state=fcnn.init_state(ARCH, input_shape=INPUT), training=True,
                                   rng=np.random.default_rng(0))[0],
         r"batchnorm_statistics: x must have more than one value per channel \(N\*H\*W > 1\) for batch statistics; got shape \(1, 6\)"),
    ],
)
def test_state_and_randomness_that_do_not_fit_are_refused_clearly(call, message):
    kernels_registered("numpy")
    params = fcnn.init(ARCH, input_shape=INPUT)
    x, _ = data(3)
    with pytest.raises(ValueError, match=message):
        call(params, x.astype(np.float32))


def test_a_network_with_batchnorm_matches_pytorch_in_both_modes_with_its_running_statistics():
    torch = pytest.importorskip("torch")
    kernels_registered("numpy")
    arch = [{"type": "conv", "filters": 4, "kernel": 3}, {"type": "batchnorm", "momentum": 0.2}, {"type": "relu"},
            {"type": "maxpool", "size": 2}, {"type": "flatten"}, {"type": "dense", "units": 6},
            {"type": "batchnorm"}, {"type": "relu"}, {"type": "dense", "units": 3}]
    shape = (2, 8, 8)
    params = fcnn.init(arch, seed=3, dtype="float64", input_shape=shape)
    params["batchnorm1"] = {"gamma": np.linspace(0.5, 2, 4), "beta": np.linspace(-1, 1, 4)}
    state = fcnn.init_state(arch, dtype="float64", input_shape=shape)
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4, momentum=0.2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(36, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).double()
    with torch.no_grad():
        for index, layer in (("conv1", 0), ("dense1", 5), ("dense2", 8)):
            w = params[index]["w"]
            net[layer].weight.copy_(torch.tensor(w if index.startswith("conv") else w.T))
            net[layer].bias.copy_(torch.tensor(params[index]["b"]))
        for index, layer in (("batchnorm1", 1), ("batchnorm2", 6)):
            net[layer].weight.copy_(torch.tensor(params[index]["gamma"]))
            net[layer].bias.copy_(torch.tensor(params[index]["beta"]))
    rng = np.random.default_rng(4)
    net.train()
    for step in range(3):
        x, labels = rng.standard_normal((5, *shape)) * (step + 1) + step, rng.integers(0, 3, 5)
        loss, grads, logits, state = fcnn.loss_and_grads(params, x, labels, arch, "numpy", state=state)
        xt = torch.tensor(x)
        expected = net(xt)
        torch_loss = nn.functional.cross_entropy(expected, torch.tensor(labels))
        net.zero_grad()
        torch_loss.backward()
        np.testing.assert_allclose(logits, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
        assert loss == pytest.approx(torch_loss.item(), rel=1e-12)
        np.testing.assert_allclose(grads["batchnorm1"]["gamma"], net[1].weight.grad.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(grads["conv1"]["w"], net[0].weight.grad.numpy(), rtol=1e-9, atol=1e-12)
        for index, layer in (("batchnorm1", 1), ("batchnorm2", 6)):
            np.testing.assert_allclose(state[index]["running_mean"], net[layer].running_mean.numpy(), rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(state[index]["running_var"], net[layer].running_var.numpy(), rtol=1e-12)
    net.eval()
    x = rng.standard_normal((4, *shape))
    logits, _, _ = fcnn.forward(params, x, arch, "numpy", state=state)
    np.testing.assert_allclose(logits, net(torch.tensor(x)).detach().numpy(), rtol=1e-10, atol=1e-12)
