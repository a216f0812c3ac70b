"""The ladder (fcnn.ladder): every rung of conv2d forward on the real layer shapes, PyTorch's conv2d beside them.

One group per shape, named "ladder: ...": LeNet-5's second conv and the seed conv, each at the
batch its preset trains with (workloads.TRAINING_BATCH). extra_info holds each rung's position, the images per call and the FLOP per image,
for bench/report.py and bench/ladder_chart.py.
"""

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_limits
from workloads import TRAINING_BATCH, conv_multiply_adds, layer_cases

from fcnn.kernels.loop import output_size
from fcnn.ladder import RUNGS

# The two shapes of issue 12: (preset, layer).
LADDER_LAYERS = [("lenet5", "conv2"), ("seed", "conv1")]
CASES = [case for case in layer_cases() if (case["preset"], case["layer"]) in LADDER_LAYERS]


def case_id(case):
    return f"{case['preset']}-{case['layer']}"


def ladder_group(case):
    shape = (TRAINING_BATCH[case["preset"]], *case["input_shape"])
    return f"ladder: conv2d forward {case['preset']} {case['layer']} {shape}"


def ladder_inputs(rng, case):
    """x, w, b (float32) of `case` at its preset's batch, and the FLOP per image of its forward."""
    C, H, W = case["input_shape"]
    spec = case["spec"]
    F, _, KH, KW = case["weight_shape"]
    x = rng.standard_normal((TRAINING_BATCH[case["preset"]], C, H, W), dtype=np.float32)
    w = rng.standard_normal(case["weight_shape"], dtype=np.float32)
    b = rng.standard_normal(F, dtype=np.float32)
    output_hw = (output_size(H, KH, spec["stride"], spec["pad"]), output_size(W, KW, spec["stride"], spec["pad"]))
    return x, w, b, 2 * conv_multiply_adds(w.shape, output_hw)


@pytest.mark.parametrize("rung", range(1, len(RUNGS) + 1))
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_ladder_rung(benchmark, rng, case, rung):
    name, conv2d_forward, _ = RUNGS[rung - 1]
    benchmark.group = ladder_group(case)
    x, w, b, flops = ladder_inputs(rng, case)
    args = (x, w, b, case["spec"]["stride"], case["spec"]["pad"])
    # One BLAS thread, as fcnn.model runs the kernels (bench/test_kernels_bench.py says why).
    with threadpool_limits(limits=1, user_api="blas"):
        conv2d_forward(*args)  # warm-up: numba compiles (or loads from its cache) here
        benchmark.extra_info.update(
            backend=name, rung=rung, images=len(x), flops_per_image=flops, threads=numba.get_num_threads()
        )
        benchmark(conv2d_forward, *args)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_ladder_torch(benchmark, rng, case):
    torch = pytest.importorskip("torch")
    benchmark.group = ladder_group(case)
    x, w, b, flops = ladder_inputs(rng, case)
    spec = case["spec"]
    tuned_out = RUNGS[-1].function(x, w, b, spec["stride"], spec["pad"])
    x, w, b = (torch.from_numpy(a) for a in (x, w, b))

    def conv2d_forward():
        with torch.no_grad():
            return torch.nn.functional.conv2d(x, w, b, stride=spec["stride"], padding=spec["pad"])

    # PyTorch gets the cores numba gets (both default to one thread per core). Only set when they
    # differ: here torch.set_num_threads, even to its current value, once numba's OpenMP threads
    # existed, made the two OpenMP pools fight and PyTorch's medians 100 times slower (docs/performance.md).
    threads_before = torch.get_num_threads()
    if threads_before != numba.get_num_threads():
        torch.set_num_threads(numba.get_num_threads())
    try:
        # The same numbers as the tuned kernel before anything is timed: the race is between equals.
        np.testing.assert_allclose(conv2d_forward().numpy(), tuned_out, rtol=1e-4, atol=1e-4 * np.abs(tuned_out).max())
        benchmark.extra_info.update(
            backend="torch", rung=0, images=len(x), flops_per_image=flops, threads=torch.get_num_threads()
        )
        benchmark(conv2d_forward)
    finally:
        if torch.get_num_threads() != threads_before:
            torch.set_num_threads(threads_before)
