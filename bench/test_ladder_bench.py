"""The ladders (fcnn.ladder): every rung on the real layer shapes, PyTorch beside them in each group.

One group per ladder and shape, named "ladder: ...", each shape at the batch its preset trains
with (workloads.TRAINING_BATCH):
- conv2d forward: LeNet-5's second conv and the seed conv, against torch.nn.functional.conv2d;
- conv2d backward weights (dw, db): all three convs (the first layers need no more), against
  PyTorch's convolution backward through autograd for w and b;
- conv2d backward (dx, dw, db): LeNet-5's second conv, the one conv of the presets whose input
  needs a gradient, against autograd for x, w and b;
- fused backward (conv -> ReLU -> 2x2 max-pool, fcnn.ladder.FUSED_RUNGS): all three convs, dx only
  for LeNet-5's second as the model asks, against autograd through conv2d, relu and max_pool2d.
extra_info holds each rung's position (PyTorch: 0), the images per call and the FLOP per image,
for bench/report.py and bench/ladder_chart.py.
"""

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_limits
from workloads import TRAINING_BATCH, conv_multiply_adds, layer_cases

from fcnn.kernels.loop import output_size
from fcnn.ladder import FUSED_RUNGS, INPUT_RUNGS, RUNGS, WEIGHT_RUNGS

# (preset, layer) each ladder is timed on.
FORWARD_LAYERS = [("lenet5", "conv2"), ("seed", "conv1")]
WEIGHT_LAYERS = [("lenet5", "conv1"), ("lenet5", "conv2"), ("seed", "conv1")]
INPUT_LAYERS = [("lenet5", "conv2")]
# ladder -> (its rungs, the layers it is timed on, passes of multiply-adds per output: forward 1, dw 1, dx and dw 2).
LADDERS = {
    "conv2d forward": (RUNGS, FORWARD_LAYERS, 1),
    "conv2d backward weights": (WEIGHT_RUNGS, WEIGHT_LAYERS, 1),
    "conv2d backward": (INPUT_RUNGS, INPUT_LAYERS, 2),
}
CASES = {(case["preset"], case["layer"]): case for case in layer_cases() if "weight_shape" in case}
TIMED = [(ladder, CASES[layer]) for ladder, (_, layers, _) in LADDERS.items() for layer in layers]


def timed_id(item):
    ladder, case = item
    return f"{ladder.replace(' ', '_')}-{case['preset']}-{case['layer']}"


def ladder_group(ladder, case):
    shape = (TRAINING_BATCH[case["preset"]], *case["input_shape"])
    return f"ladder: {ladder} {case['preset']} {case['layer']} {shape}"


def ladder_inputs(rng, ladder, case):
    """x, w, b, dout (float32) of `case` at its preset's batch, and the FLOP per image of the ladder's kernel."""
    C, H, W = case["input_shape"]
    spec = case["spec"]
    F, _, KH, KW = case["weight_shape"]
    output_hw = (output_size(H, KH, spec["stride"], spec["pad"]), output_size(W, KW, spec["stride"], spec["pad"]))
    batch = TRAINING_BATCH[case["preset"]]
    x = rng.standard_normal((batch, C, H, W), dtype=np.float32)
    w = rng.standard_normal(case["weight_shape"], dtype=np.float32)
    b = rng.standard_normal(F, dtype=np.float32)
    dout = rng.standard_normal((batch, F, *output_hw), dtype=np.float32)
    passes = LADDERS[ladder][2]
    return x, w, b, dout, 2 * passes * conv_multiply_adds(w.shape, output_hw)


def rung_args(ladder, x, w, b, dout, spec):
    if ladder == "conv2d forward":
        return (x, w, b, spec["stride"], spec["pad"])
    return (dout, x, w, spec["stride"], spec["pad"])


RUNG_ITEMS = [(ladder, case, position) for ladder, case in TIMED for position in range(1, len(LADDERS[ladder][0]) + 1)]


@pytest.mark.parametrize("item", RUNG_ITEMS, ids=lambda item: f"{timed_id(item[:2])}-rung{item[2]}")
def test_ladder_rung(benchmark, rng, item):
    ladder, case, position = item
    rung = LADDERS[ladder][0][position - 1]
    benchmark.group = ladder_group(ladder, case)
    x, w, b, dout, flops = ladder_inputs(rng, ladder, case)
    args = rung_args(ladder, x, w, b, dout, case["spec"])
    # One BLAS thread, as fcnn.model runs the kernels (bench/test_kernels_bench.py says why).
    with threadpool_limits(limits=1, user_api="blas"):
        rung.function(*args)  # warm-up: numba compiles (or loads from its cache) here
        benchmark.extra_info.update(
            backend=rung.name, rung=position, images=len(x), flops_per_image=flops, threads=numba.get_num_threads()
        )
        benchmark(rung.function, *args)


def torch_call(torch, ladder, x, w, b, dout, spec):
    """PyTorch's kernel for the ladder: F.conv2d, or its backward through autograd (graph built once, then
    only the backward is timed: torch.autograd.grad runs convolution_backward)."""
    functional = torch.nn.functional
    x, w, b, dout = (torch.from_numpy(a) for a in (x, w, b, dout))
    if ladder == "conv2d forward":
        def forward():
            with torch.no_grad():
                return (functional.conv2d(x, w, b, stride=spec["stride"], padding=spec["pad"]),)
        return forward
    w.requires_grad_(True)
    b.requires_grad_(True)
    wants = [w, b]
    if ladder == "conv2d backward":
        x.requires_grad_(True)
        wants = [x, w, b]
    out = functional.conv2d(x, w, b, stride=spec["stride"], padding=spec["pad"])

    def backward():
        return torch.autograd.grad(out, wants, dout, retain_graph=True)

    return backward


@pytest.mark.parametrize("item", TIMED, ids=timed_id)
def test_ladder_torch(benchmark, rng, item):
    torch = pytest.importorskip("torch")
    ladder, case = item
    rungs = LADDERS[ladder][0]
    benchmark.group = ladder_group(ladder, case)
    x, w, b, dout, flops = ladder_inputs(rng, ladder, case)
    spec = case["spec"]
    tuned_out = rungs[-1].function(*rung_args(ladder, x, w, b, dout, spec))
    tuned_out = tuned_out if isinstance(tuned_out, tuple) else (tuned_out,)
    call = torch_call(torch, ladder, x, w, b, dout, spec)

    # PyTorch gets the cores numba gets (both default to one thread per core). Only set when they
    # differ: here torch.set_num_threads, even to its current value, once numba's OpenMP threads
    # existed, made the two OpenMP pools fight and PyTorch's medians 100 times slower (docs/performance.md).
    threads_before = torch.get_num_threads()
    if threads_before != numba.get_num_threads():
        torch.set_num_threads(numba.get_num_threads())
    try:
        # The same numbers as the tuned kernel before anything is timed: the race is between equals.
        for torch_value, value in zip(call(), tuned_out):
            np.testing.assert_allclose(torch_value.detach().numpy(), value, rtol=1e-4, atol=1e-4 * np.abs(value).max())
        benchmark.extra_info.update(
            backend="torch", rung=0, images=len(x), flops_per_image=flops, threads=torch.get_num_threads()
        )
        benchmark(call)
    finally:
        if torch.get_num_threads() != threads_before:
            torch.set_num_threads(threads_before)


# ----- the fused backward: conv -> ReLU -> max-pool, the layer as the model runs it -----------------

FUSED_LAYERS = [("lenet5", "conv1"), ("lenet5", "conv2"), ("seed", "conv1")]
# The first conv of each preset reads the images: the model asks no dx of it.
NEEDS_DX = {("lenet5", "conv2")}


def fused_inputs(rng, case):
    """(dout, x, z, w, b, input_gradient) of the layer at its preset's batch, z from the tuned forward, and FLOP per image.

    The FLOP are the dense backward's (dw, and dx where asked): the work the winners' kernel avoids counts as done.
    """
    x, w, b, _, flops = ladder_inputs(rng, "conv2d backward weights", case)
    spec = case["spec"]
    from fcnn.kernels.tuned import fused

    out, z = fused.conv2d_relu_maxpool2d_forward(x, w, b, spec["stride"], spec["pad"], 2, 2)
    dout = rng.standard_normal(out.shape, dtype=np.float32)
    input_gradient = (case["preset"], case["layer"]) in NEEDS_DX
    return dout, x, z, w, b, input_gradient, flops * (2 if input_gradient else 1)


FUSED_ITEMS = [(CASES[layer], position) for layer in FUSED_LAYERS for position in range(1, len(FUSED_RUNGS) + 1)]


def fused_id(case):
    return f"fused_backward-{case['preset']}-{case['layer']}"


@pytest.mark.parametrize("item", FUSED_ITEMS, ids=lambda item: f"{fused_id(item[0])}-rung{item[1]}")
def test_fused_backward_rung(benchmark, rng, item):
    case, position = item
    rung = FUSED_RUNGS[position - 1]
    benchmark.group = ladder_group("fused backward", case)
    dout, x, z, w, _, input_gradient, flops = fused_inputs(rng, case)
    args = (dout, x, z, w, case["spec"]["stride"], case["spec"]["pad"], 2, 2, input_gradient)
    with threadpool_limits(limits=1, user_api="blas"):
        rung.function(*args)  # warm-up: numba compiles (or loads from its cache) here
        benchmark.extra_info.update(
            backend=rung.name, rung=position, images=len(x), flops_per_image=flops, threads=numba.get_num_threads()
        )
        benchmark(rung.function, *args)


@pytest.mark.parametrize("case", [CASES[layer] for layer in FUSED_LAYERS], ids=fused_id)
def test_fused_backward_torch(benchmark, rng, case):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    benchmark.group = ladder_group("fused backward", case)
    dout, x, z, w, b, input_gradient, flops = fused_inputs(rng, case)
    spec = case["spec"]
    tuned_out = FUSED_RUNGS[-1].function(dout, x, z, w, spec["stride"], spec["pad"], 2, 2, input_gradient)
    x_t, w_t, b_t, dout_t = (torch.from_numpy(a) for a in (x, w, b, dout))
    w_t.requires_grad_(True)
    b_t.requires_grad_(True)
    wants = [w_t, b_t]
    if input_gradient:
        x_t.requires_grad_(True)
        wants = [x_t, w_t, b_t]
    out = functional.max_pool2d(functional.relu(functional.conv2d(x_t, w_t, b_t, stride=spec["stride"], padding=spec["pad"])), 2)

    def backward():
        return torch.autograd.grad(out, wants, dout_t, retain_graph=True)

    threads_before = torch.get_num_threads()
    if threads_before != numba.get_num_threads():
        torch.set_num_threads(numba.get_num_threads())
    try:
        expected = [value for value in tuned_out if value is not None]
        for torch_value, value in zip(backward(), expected):
            np.testing.assert_allclose(torch_value.numpy(), value, rtol=1e-4, atol=1e-4 * np.abs(value).max())
        benchmark.extra_info.update(
            backend="torch", rung=0, images=len(x), flops_per_image=flops, threads=torch.get_num_threads()
        )
        benchmark(backward)
    finally:
        if torch.get_num_threads() != threads_before:
            torch.set_num_threads(threads_before)
