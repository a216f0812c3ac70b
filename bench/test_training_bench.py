"""Whole training steps and inference, every backend next to PyTorch on CPU (when torch is installed).

A training step is forward, backward and the optimiser update of the preset at its real batch
(seed: b32 SGD; lenet5: b64 momentum SGD). Before timing PyTorch, the test checks that it
computes the same gradients as fcnn from the same weights, so the race is between equals.
"""

import numpy as np
import pytest
from workloads import (
    PRESET_BATCH,
    PRESET_OPTIMISER,
    batch_for,
    inference_flops_per_image,
    random_batch,
    training_flops_per_image,
    training_step,
)

import fcnn
from fcnn.data import load_mnist, scale
from fcnn.model import MNIST_SHAPE, layer_names, output_shapes, resolve_arch

BACKENDS = fcnn.available_backends()
PRESETS = list(PRESET_BATCH)
TEST_IMAGES = 10_000
# The loop backend predicts a handful of images; per image it is still a fair comparison.
LOOP_TEST_IMAGES = 4


def run_training(benchmark, preset, backend, rng):
    benchmark.group = f"training step: {preset} b{PRESET_BATCH[preset]}"
    batch = batch_for(backend, preset)
    x, labels = random_batch(rng, batch)
    params = fcnn.init(preset, seed=0)
    velocity = fcnn.zeros_like(params)
    step = training_step(preset, backend)
    step(params, velocity, x, labels)  # warm-up: numba compiles here
    benchmark.extra_info.update(backend=backend, images=batch, flops_per_image=training_flops_per_image(preset))
    benchmark(step, params, velocity, x, labels)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("preset", PRESETS)
def test_training_step(benchmark, rng, preset, backend):
    run_training(benchmark, preset, backend, rng)


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
    fcnn.predict(params, images[:8], preset, backend)  # warm-up: numba compiles here
    benchmark.extra_info.update(backend=backend, images=len(images), flops_per_image=inference_flops_per_image(preset))
    benchmark(fcnn.predict, params, images, preset, backend)


# ----- PyTorch, the same network, batch and optimiser ---------------------------------------


def torch_model(torch, preset, params):
    """A torch.nn.Sequential equal to the preset, holding copies of fcnn's parameters.

    fcnn dense w is (D, M): torch's Linear weight (M, D) is its transpose. Convolutions are
    cross-correlations in both, with the same (F, C, KH, KW) weight layout.
    """
    nn = torch.nn
    modules = []
    shapes = [MNIST_SHAPE] + output_shapes(preset)
    for name, spec, in_shape in zip(layer_names(preset), resolve_arch(preset), shapes):
        kind = spec["type"]
        if kind == "conv":
            module = nn.Conv2d(in_shape[0], spec["filters"], tuple(spec["kernel"]), spec["stride"], spec["pad"])
            module.weight.data = torch.from_numpy(params[name]["w"].copy())
        elif kind == "dense":
            module = nn.Linear(in_shape[0], spec["units"])
            module.weight.data = torch.from_numpy(params[name]["w"].T.copy())
        elif kind == "relu":
            module = nn.ReLU()
        elif kind == "maxpool":
            module = nn.MaxPool2d(spec["size"], spec["stride"])
        else:
            module = nn.Flatten()
        if kind in ("conv", "dense"):
            module.bias.data = torch.from_numpy(params[name]["b"].copy())
        modules.append(module)
    return nn.Sequential(*modules)


def torch_gradients(torch, preset, model):
    """The gradients torch holds after backward, in fcnn's layout ({"conv1": {"w", "b"}, ...})."""
    weighted = [name for name, spec in zip(layer_names(preset), resolve_arch(preset)) if spec["type"] in ("conv", "dense")]
    modules = [module for module in model if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear))]
    grads = {}
    for name, module in zip(weighted, modules):
        w = module.weight.grad.numpy()
        grads[name] = {"w": w.T if name.startswith("dense") else w, "b": module.bias.grad.numpy()}
    return grads


def torch_optimizer(torch, preset, model):
    lr, momentum = PRESET_OPTIMISER[preset]
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)


@pytest.mark.parametrize("preset", PRESETS)
def test_training_step_torch(benchmark, rng, preset):
    torch = pytest.importorskip("torch")
    benchmark.group = f"training step: {preset} b{PRESET_BATCH[preset]}"
    batch = PRESET_BATCH[preset]
    x, labels = random_batch(rng, batch)
    params = fcnn.init(preset, seed=0)
    model = torch_model(torch, preset, params)
    optimizer = torch_optimizer(torch, preset, model)
    loss_function = torch.nn.CrossEntropyLoss()
    x_torch, labels_torch = torch.from_numpy(x), torch.from_numpy(labels)

    def step():
        optimizer.zero_grad()
        loss = loss_function(model(x_torch), labels_torch)
        loss.backward()
        optimizer.step()
        return loss

    # Same weights, same batch: the same loss and gradients, before anything is timed.
    optimizer.zero_grad()
    torch_loss = loss_function(model(x_torch), labels_torch)
    torch_loss.backward()
    loss, grads, _ = fcnn.loss_and_grads(params, x, labels, preset, "numpy")
    np.testing.assert_allclose(torch_loss.item(), loss, rtol=1e-5)
    for name, expected in torch_gradients(torch, preset, model).items():
        for key in ("w", "b"):
            scale = np.abs(expected[key]).max()
            np.testing.assert_allclose(grads[name][key], expected[key], rtol=1e-4, atol=1e-5 * scale, err_msg=f"{name}.{key}")

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

    # Same weights, same images: the same classes (up to float rounding on near-ties).
    agreement = np.mean(predict().numpy()[:1000] == fcnn.predict(params, test_images[:1000], preset, "numpy"))
    assert agreement > 0.999
    benchmark.extra_info.update(backend="torch", images=len(test_images), flops_per_image=inference_flops_per_image(preset))
    benchmark(predict)
