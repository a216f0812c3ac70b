"""The optimiser's update of a preset's parameters, every backend beside torch.optim on the same arrays.

Each preset's step as the training script takes it (fcnn.training.ARCH_DEFAULTS): bn's Adam,
LeNet-5's SGD with momentum 0.9, seed's plain SGD, on the preset's parameter arrays with random
gradients and moments. One group per preset: fcnn's step (adam_step, momentum_step or sgd_step
with backend=..., every array through that backend's kernel, the tree walks and checks
included: what train_step pays) and torch.optim's step() on the same arrays as tensors with
their .grad set. One call is one step (images 1); flops_per_image is the arithmetic of the
update as loop.py writes it, per value, times the values. `loop`, pure Python at a few
microseconds a value, is left out (bn's step would take a second), and a backend whose kernel
is another's (tuned's are numba's) is timed under that name only.

Before anything is timed, every backend's step is held bit for bit to numpy's, and PyTorch's to
numpy's within float32 rounding: the race is between equals.
"""

import numpy as np
import pytest
from test_kernels_bench import run
from test_norm_bench import torch_threads_as_numba
from workloads import PRESETS, optimiser, optimizer_name

import fcnn
from fcnn.tree import tree_map, tree_paths

BACKENDS = [name for name in fcnn.available_backends() if name != "loop"]
# The kernel each preset's step runs on every array, and its arithmetic per value in loop.py:
# Adam 14 (m 3, v 4, the corrections 2, w 5 with the square root), momentum 4, SGD 2.
KERNELS = {"adam": "adam_update", "momentum": "momentum_update", "sgd": "sgd_update"}
FLOPS_PER_VALUE = {"adam_update": 14, "momentum_update": 4, "sgd_update": 2}
STEP_NUMBER = 10  # Adam's moments as ten steps leave them: the bias corrections still at work


def update_of(preset):
    """"adam", "momentum" or "sgd": the update the training script steps the preset with."""
    if optimizer_name(preset) == "adam":
        return "adam"
    return "momentum" if optimiser(preset)[1] else "sgd"


def group(preset):
    return f"optimiser step: {preset} ({update_of(preset)}, {values_of(preset)} values)"


def values_of(preset):
    return sum(array.size for _, array in tree_paths(fcnn.init(preset, seed=0)))


def inputs(preset, rng):
    """params, grads and the optimiser state (Adam's moments after some steps, SGD's velocity), float32."""
    params = fcnn.init(preset, seed=0)

    def like(scale, positive=False):
        return tree_map(lambda p: (np.abs if positive else np.asarray)(
            scale * rng.standard_normal(p.shape, dtype=np.float32)), params)

    grads = like(1e-2)
    if update_of(preset) == "adam":
        return params, grads, {"t": STEP_NUMBER - 1, "m": like(1e-3), "v": like(1e-6, positive=True)}
    return params, grads, like(1e-2)


def fcnn_step(preset, backend):
    """step(params, grads, state) -> (params, state) of the preset's optimiser on `backend`."""
    lr, momentum = optimiser(preset)
    update = update_of(preset)
    if update == "adam":
        return lambda params, grads, state: fcnn.adam_step(params, grads, state, lr, backend=backend)
    if update == "momentum":
        return lambda params, grads, state: fcnn.momentum_step(params, grads, state, lr, momentum, backend=backend)
    return lambda params, grads, state: (fcnn.sgd_step(params, grads, lr, backend=backend), state)


def leaves(tree):
    """The arrays of a tree, in order (Adam's step count t left out)."""
    return [array for _, array in tree_paths(tree) if isinstance(array, np.ndarray)]


def flops(preset):
    return FLOPS_PER_VALUE[KERNELS[update_of(preset)]] * values_of(preset)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("preset", PRESETS)
def test_fcnn_optimiser_step(benchmark, rng, preset, backend):
    benchmark.group = group(preset)
    kernel = KERNELS[update_of(preset)]
    if fcnn.get_backend(backend).served_by[kernel] != backend:
        pytest.skip(f"{backend}'s {kernel} is {fcnn.get_backend(backend).served_by[kernel]}'s, timed there")
    params, grads, state = inputs(preset, rng)
    step = fcnn_step(preset, backend)
    if backend != "numpy":
        expected = leaves(dict(enumerate(fcnn_step(preset, "numpy")(params, grads, state))))
        for value, reference in zip(leaves(dict(enumerate(step(params, grads, state)))), expected, strict=True):
            assert value.tobytes() == reference.tobytes()
    run(benchmark, backend, step, (params, grads, state), 1, flops(preset))


def torch_optimiser(torch, preset, tensors):
    lr, momentum = optimiser(preset)
    if update_of(preset) == "adam":
        return torch.optim.Adam(tensors, lr=lr)
    return torch.optim.SGD(tensors, lr=lr, momentum=momentum)


def load_state(torch, preset, optimiser_, tensors, state):
    """torch's optimiser state set to fcnn's: Adam's step count and moments, SGD's momentum buffer."""
    for index, tensor in enumerate(tensors):
        if update_of(preset) == "adam":
            optimiser_.state[tensor] = {"step": torch.tensor(float(state["t"])),
                                        "exp_avg": torch.from_numpy(leaves(state["m"])[index].copy()),
                                        "exp_avg_sq": torch.from_numpy(leaves(state["v"])[index].copy())}
        elif update_of(preset) == "momentum":
            optimiser_.state[tensor] = {"momentum_buffer": torch.from_numpy(leaves(state)[index].copy())}


@pytest.mark.parametrize("preset", PRESETS)
def test_torch_optimiser_step(benchmark, rng, preset):
    torch = pytest.importorskip("torch")
    benchmark.group = group(preset)
    params, grads, state = inputs(preset, rng)
    with torch_threads_as_numba(torch):
        tensors = [torch.from_numpy(array.copy()) for array in leaves(params)]
        for tensor, gradient in zip(tensors, leaves(grads)):
            tensor.grad = torch.from_numpy(gradient)
        optimiser_ = torch_optimiser(torch, preset, tensors)
        load_state(torch, preset, optimiser_, tensors, state)
        optimiser_.step()
        expected = leaves(fcnn_step(preset, "numpy")(params, grads, state)[0])
        for tensor, reference in zip(tensors, expected):
            np.testing.assert_allclose(tensor.numpy(), reference, rtol=1e-5, atol=1e-7)
        benchmark.extra_info.update(backend="torch", images=1, flops_per_image=flops(preset),
                                    threads=torch.get_num_threads())
        benchmark(optimiser_.step)
