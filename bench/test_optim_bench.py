"""The optimiser's update of a preset's parameters, every backend beside torch.optim on the same arrays.

The presets the training script trains with an optimiser of moments (fcnn.training.ARCH_DEFAULTS:
bn's Adam), on the preset's parameter arrays with random gradients and moments. One group per
preset: fcnn's step (adam_step with backend=..., every array through that backend's kernel,
the tree walks and checks included: what train_step pays) and torch.optim.Adam's step() on the
same arrays as tensors with their .grad set. One call is one step (images 1); flops_per_image
is the update's arithmetic as loop.py writes it, per value, times the values. `loop`, pure
Python at microseconds a value, is left out (bn's step would take a second), and a backend whose
kernel is another's (tuned's are numba's) is timed under that name only. (SGD's steps take no
backend: their updates are NumPy's, docs/performance.md.)

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
ADAM_PRESETS = [preset for preset in PRESETS if optimizer_name(preset) == "adam"]
# Adam's arithmetic per value in loop.py: m 3, v 4, the bias corrections 2, w 5 with the square root.
FLOPS_PER_VALUE = 14
STEP_NUMBER = 10  # the moments as ten steps leave them: the bias corrections still at work


def leaves(tree):
    """The arrays of a tree, in order (Adam's step count t left out)."""
    return [array for _, array in tree_paths(tree) if isinstance(array, np.ndarray)]


def values_of(preset):
    return sum(array.size for array in leaves(fcnn.init(preset, seed=0)))


def group(preset):
    return f"optimiser step: {preset} (adam, {values_of(preset)} values)"


def inputs(preset, rng):
    """params, grads and Adam's state after some steps, float32."""
    params = fcnn.init(preset, seed=0)

    def like(scale):
        return tree_map(lambda p: scale * rng.standard_normal(p.shape, dtype=np.float32), params)

    moments = {"t": STEP_NUMBER - 1, "m": like(1e-3), "v": tree_map(np.abs, like(1e-6))}
    return params, like(1e-2), moments


def fcnn_step(preset, backend):
    """step(params, grads, state) -> (params, state): the preset's Adam on `backend`."""
    lr, _ = optimiser(preset)
    return lambda params, grads, state: fcnn.adam_step(params, grads, state, lr, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("preset", ADAM_PRESETS)
def test_fcnn_optimiser_step(benchmark, rng, preset, backend):
    benchmark.group = group(preset)
    served_by = fcnn.get_backend(backend).served_by["adam_update"]
    if served_by != backend:
        pytest.skip(f"{backend}'s adam_update is {served_by}'s, timed there")
    params, grads, state = inputs(preset, rng)
    step = fcnn_step(preset, backend)
    if backend != "numpy":
        expected = leaves(dict(enumerate(fcnn_step(preset, "numpy")(params, grads, state))))
        for value, reference in zip(leaves(dict(enumerate(step(params, grads, state)))), expected, strict=True):
            assert value.tobytes() == reference.tobytes()
    run(benchmark, backend, step, (params, grads, state), 1, FLOPS_PER_VALUE * values_of(preset))


@pytest.mark.parametrize("preset", ADAM_PRESETS)
def test_torch_optimiser_step(benchmark, rng, preset):
    torch = pytest.importorskip("torch")
    benchmark.group = group(preset)
    params, grads, state = inputs(preset, rng)
    with torch_threads_as_numba(torch):
        tensors = [torch.from_numpy(array.copy()) for array in leaves(params)]
        optimiser_ = torch.optim.Adam(tensors, lr=optimiser(preset)[0])
        # torch's state set to fcnn's: the steps taken and both moments.
        for tensor, gradient, m, v in zip(tensors, leaves(grads), leaves(state["m"]), leaves(state["v"])):
            tensor.grad = torch.from_numpy(gradient)
            optimiser_.state[tensor] = {"step": torch.tensor(float(state["t"])),
                                        "exp_avg": torch.from_numpy(m.copy()), "exp_avg_sq": torch.from_numpy(v.copy())}
        optimiser_.step()
        expected = leaves(fcnn_step(preset, "numpy")(params, grads, state)[0])
        for tensor, reference in zip(tensors, expected, strict=True):
            np.testing.assert_allclose(tensor.numpy(), reference, rtol=1e-5, atol=1e-7)
        benchmark.extra_info.update(backend="torch", images=1, flops_per_image=FLOPS_PER_VALUE * values_of(preset),
                                    threads=torch.get_num_threads())
        benchmark(optimiser_.step)
