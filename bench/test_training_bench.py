"""Whole training steps and inference, every backend next to PyTorch on CPU (when torch is installed).

A training step is forward, backward and the optimiser update of the preset as the training
script runs it (its defaults in fcnn.training.ARCH_DEFAULTS: seed b32 SGD, lenet5 b32 momentum
SGD, bn Adam with batch norm and dropout in training mode), and LeNet-5 at batch 64
too. Before timing PyTorch, the test checks that it computes the same loss and gradients as fcnn
from the same weights (with dropout's rate 0 for the check, since the two draw other masks), so
the race is between equals.
"""

import numpy as np
import pytest
from workloads import (
    BATCH_SIZES,
    LOOP_BATCH,
    PRESETS,
    inference_flops_per_image,
    optimiser,
    optimizer_name,
    optimizer_state,
    random_batch,
    training_flops_per_image,
    training_step,
)

import fcnn
from fcnn.data import load_mnist, scale
from fcnn.model import MNIST_SHAPE, layer_names, output_shapes, resolve_arch

BACKENDS = fcnn.available_backends()
# (preset, batch): each preset at the batch it trains with, and the other sizes timed.
STEP_WORKLOADS = [(preset, batch) for preset in PRESETS for batch in BATCH_SIZES[preset]]
TEST_IMAGES = 10_000
# The loop backend predicts a handful of images; per image it is still a fair comparison.
LOOP_TEST_IMAGES = 4


def step_group(preset, batch):
    return f"training step: {preset} b{batch}"


def workload_id(workload):
    return f"{workload[0]}-b{workload[1]}"


def run_training(benchmark, preset, batch, backend, rng):
    benchmark.group = step_group(preset, batch)
    batch = LOOP_BATCH if backend == "loop" else batch
    x, labels = random_batch(rng, batch)
    params = fcnn.init(preset, seed=0)
    state = optimizer_state(preset, params)
    step = training_step(preset, backend)
    step(params, state, x, labels)  # warm-up: numba compiles here
    benchmark.extra_info.update(backend=backend, images=batch, flops_per_image=training_flops_per_image(preset))
    benchmark(step, params, state, x, labels)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("workload", STEP_WORKLOADS, ids=workload_id)
def test_training_step(benchmark, rng, workload, backend):
    run_training(benchmark, *workload, backend, rng)


@pytest.fixture(scope="module")
def test_images():
    """The 10,000 MNIST test images, float32 in [0, 1], (10000, 1, 28, 28)."""
    return scale(load_mnist()[2])[:, None]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("preset", PRESETS)
def test_predict(benchmark, test_images, preset, backend):
    benchmark.group = f"predict: {preset} on {TEST_IMAGES} test images"
    images = test_images[:LOOP_TEST_IMAGES] if backend == "loop" else test_images
    params = fcnn.init(preset, seed=0)
    state = fcnn.init_state(preset)
    fcnn.predict(params, images[:8], preset, backend, state=state)  # warm-up: numba compiles here
    benchmark.extra_info.update(backend=backend, images=len(images), flops_per_image=inference_flops_per_image(preset))
    benchmark(fcnn.predict, params, images, preset, backend, state=state)


# ----- PyTorch, the same network, batch and optimiser ---------------------------------------


def without_dropout(preset):
    """The preset's layers with every dropout rate 0: the same network, no masks to differ in."""
    return [{**spec, "rate": 0.0} if spec["type"] == "dropout" else spec for spec in resolve_arch(preset)]


def torch_model(torch, arch, params):
    """A torch.nn.Sequential equal to the architecture, holding copies of fcnn's parameters.

    fcnn dense w is (D, M): torch's Linear weight (M, D) is its transpose. Convolutions are
    cross-correlations in both, with the same (F, C, KH, KW) weight layout. Batch norm: gamma and
    beta are torch's weight and bias, momentum and eps the same numbers in both (PyTorch's
    convention), BatchNorm2d after a conv, BatchNorm1d after a dense layer; dropout the same rate.
    """
    nn = torch.nn
    specs = resolve_arch(arch)
    modules = []
    for name, spec, in_shape in zip(layer_names(specs), specs, [MNIST_SHAPE] + output_shapes(specs)):
        kind = spec["type"]
        if kind == "conv":
            F, C, KH, KW = params[name]["w"].shape
            module = nn.Conv2d(C, F, (KH, KW), spec["stride"], spec["pad"])
            module.weight.data = torch.from_numpy(params[name]["w"].copy())
        elif kind == "dense":
            module = nn.Linear(*params[name]["w"].shape)
            module.weight.data = torch.from_numpy(params[name]["w"].T.copy())
        elif kind == "batchnorm":
            norm = nn.BatchNorm2d if len(in_shape) == 3 else nn.BatchNorm1d
            module = norm(in_shape[0], eps=spec["eps"], momentum=spec["momentum"])
            module.weight.data = torch.from_numpy(params[name]["gamma"].copy())
            module.bias.data = torch.from_numpy(params[name]["beta"].copy())
        elif kind == "dropout":
            module = nn.Dropout(spec["rate"])
        elif kind == "relu":
            module = nn.ReLU()
        elif kind == "maxpool":
            module = nn.MaxPool2d(spec["size"], spec["stride"])
        elif kind == "flatten":
            module = nn.Flatten()
        else:
            raise ValueError(f"torch_model: no PyTorch module for layer type {kind!r} here")
        if kind in ("conv", "dense"):
            module.bias.data = torch.from_numpy(params[name]["b"].copy())
        modules.append(module)
    return nn.Sequential(*modules)


# fcnn's parameter names -> the torch module's attributes holding them.
TORCH_PARAMETERS = {"conv": {"w": "weight", "b": "bias"}, "dense": {"w": "weight", "b": "bias"},
                    "batchnorm": {"gamma": "weight", "beta": "bias"}}


def torch_gradients(torch, arch, model):
    """The gradients torch holds after backward, in fcnn's layout ({"conv1": {"w", "b"}, "batchnorm1": {"gamma", "beta"}, ...})."""
    grads = {}
    for name, spec, module in zip(layer_names(arch), resolve_arch(arch), model):
        if spec["type"] in TORCH_PARAMETERS:
            grads[name] = {key: getattr(module, attribute).grad.numpy() for key, attribute in TORCH_PARAMETERS[spec["type"]].items()}
            if spec["type"] == "dense":
                grads[name]["w"] = grads[name]["w"].T
    return grads


def torch_optimizer(torch, preset, model):
    """The preset's optimiser in torch.optim, with the training script's lr (and SGD's momentum)."""
    lr, momentum = optimiser(preset)
    if optimizer_name(preset) == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)


@pytest.mark.parametrize("workload", STEP_WORKLOADS, ids=workload_id)
def test_training_step_torch(benchmark, rng, workload):
    torch = pytest.importorskip("torch")
    preset, batch = workload
    benchmark.group = step_group(preset, batch)
    x, labels = random_batch(rng, batch)
    params = fcnn.init(preset, seed=0)
    loss_function = torch.nn.CrossEntropyLoss()
    x_torch, labels_torch = torch.from_numpy(x), torch.from_numpy(labels)

    # Same weights, same batch, training mode (batch norm on the batch's statistics): the same loss
    # and gradients, before anything is timed.
    check_arch = without_dropout(preset)
    check_model = torch_model(torch, check_arch, params).train()
    torch_loss = loss_function(check_model(x_torch), labels_torch)
    torch_loss.backward()
    loss, grads, *_ = fcnn.loss_and_grads(params, x, labels, check_arch, "numpy", state=fcnn.init_state(check_arch),
                                          rng=np.random.default_rng(0))
    np.testing.assert_allclose(torch_loss.item(), loss, rtol=1e-5)
    expected_grads = torch_gradients(torch, check_arch, check_model)
    # Each array's rounding is held to its own scale; with batch norm, to the network's: a bias or
    # beta just before a norm has a gradient of exactly 0 in exact arithmetic (the norm removes
    # any shift), so its float32 value is rounding noise of the gradients around it.
    network_scale = max(np.abs(array).max() for layer in expected_grads.values() for array in layer.values())
    with_norm = any(spec["type"] == "batchnorm" for spec in check_arch)
    for name, expected in expected_grads.items():
        for key in expected:
            scale = network_scale if with_norm else np.abs(expected[key]).max()
            np.testing.assert_allclose(grads[name][key], expected[key], rtol=1e-4, atol=1e-5 * scale, err_msg=f"{name}.{key}")

    model = torch_model(torch, preset, params).train()
    optimizer = torch_optimizer(torch, preset, model)

    def step():
        optimizer.zero_grad()
        loss = loss_function(model(x_torch), labels_torch)
        loss.backward()
        optimizer.step()
        return loss

    step()
    benchmark.extra_info.update(
        backend="torch", images=batch, flops_per_image=training_flops_per_image(preset), torch_threads=torch.get_num_threads()
    )
    benchmark(step)


@pytest.mark.parametrize("preset", PRESETS)
def test_predict_torch(benchmark, test_images, preset):
    torch = pytest.importorskip("torch")
    benchmark.group = f"predict: {preset} on {TEST_IMAGES} test images"
    params = fcnn.init(preset, seed=0)
    model = torch_model(torch, preset, params).eval()
    images = torch.from_numpy(np.ascontiguousarray(test_images))

    def predict():
        with torch.no_grad():
            return torch.cat([model(images[start:start + 1000]).argmax(dim=1) for start in range(0, len(images), 1000)])

    # Same weights, same images, evaluation mode: the same classes (up to float rounding on near-ties).
    predicted = fcnn.predict(params, test_images[:1000], preset, "numpy", state=fcnn.init_state(preset))
    agreement = np.mean(predict().numpy()[:1000] == predicted)
    assert agreement > 0.999
    benchmark.extra_info.update(backend="torch", images=len(test_images), flops_per_image=inference_flops_per_image(preset))
    benchmark(predict)
