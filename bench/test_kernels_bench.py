"""Each kernel and direction on the real layer shapes of the presets, backends side by side.

One pytest-benchmark group per kernel, direction and layer; `loop` times LOOP_BATCH images,
the others the preset's batch, so compare them per image (extra_info, bench/report.py).
"""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits
from workloads import batch_for, conv_multiply_adds, layer_cases

import fcnn
from fcnn.kernels.loop import output_size

BACKENDS = fcnn.available_backends()
CONV_CASES = [case for case in layer_cases() if case["spec"]["type"] == "conv"]
POOL_CASES = [case for case in layer_cases() if case["spec"]["type"] == "maxpool"]


def case_id(case):
    return f"{case['preset']}-{case['layer']}"


def group(kernel, case):
    return f"{kernel}: {case['preset']} {case['layer']} {case['input_shape']}"


def conv_inputs(rng, case, batch):
    """x, w, b, dout (float32) for one conv layer of `case` at `batch` images."""
    spec = case["spec"]
    C, H, W = case["input_shape"]
    F, _, KH, KW = case["weight_shape"]
    H_out = output_size(H, KH, spec["stride"], spec["pad"])
    W_out = output_size(W, KW, spec["stride"], spec["pad"])
    x = rng.standard_normal((batch, C, H, W), dtype=np.float32)
    w = rng.standard_normal(case["weight_shape"], dtype=np.float32)
    b = rng.standard_normal(F, dtype=np.float32)
    dout = rng.standard_normal((batch, F, H_out, W_out), dtype=np.float32)
    return x, w, b, dout


def pool_inputs(rng, case, batch):
    """x, dout (float32) for one maxpool layer of `case` at `batch` images."""
    spec = case["spec"]
    C, H, W = case["input_shape"]
    stride = spec["stride"] or spec["size"]
    out_shape = (batch, C, output_size(H, spec["size"], stride, 0), output_size(W, spec["size"], stride, 0))
    return rng.standard_normal((batch, C, H, W), dtype=np.float32), rng.standard_normal(out_shape, dtype=np.float32)


def run(benchmark, backend, kernel, args, images, flops_per_image):
    """Warm up (numba compiles on the first call), then time kernel(*args) with one BLAS thread.

    One BLAS thread is how fcnn.model runs the kernels: with two, the numpy backend's lenet5
    conv1 backward took 15 ms instead of 3 ms on an idle 2-core machine.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        kernel(*args)
        benchmark.extra_info.update(backend=backend, images=images, flops_per_image=flops_per_image)
        benchmark(kernel, *args)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CONV_CASES, ids=case_id)
def test_conv2d_forward(benchmark, rng, case, backend):
    benchmark.group = group("conv2d forward", case)
    batch = batch_for(backend, case["preset"])
    x, w, b, dout = conv_inputs(rng, case, batch)
    flops = 2 * conv_multiply_adds(w.shape, dout.shape[2:])
    kernel = fcnn.get_backend(backend).conv2d_forward
    run(benchmark, backend, kernel, (x, w, b, case["spec"]["stride"], case["spec"]["pad"]), batch, flops)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CONV_CASES, ids=case_id)
def test_conv2d_backward(benchmark, rng, case, backend):
    benchmark.group = group("conv2d backward", case)
    batch = batch_for(backend, case["preset"])
    x, w, b, dout = conv_inputs(rng, case, batch)
    # dx and dw: one multiply-add each per tap and output pixel.
    flops = 4 * conv_multiply_adds(w.shape, dout.shape[2:])
    kernel = fcnn.get_backend(backend).conv2d_backward
    run(benchmark, backend, kernel, (dout, x, w, case["spec"]["stride"], case["spec"]["pad"]), batch, flops)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", [case for case in CONV_CASES if case["layer"] == "conv1"], ids=case_id)
def test_conv2d_backward_weights(benchmark, rng, case, backend):
    # What the first layer runs: its input is the data, so dx is skipped.
    benchmark.group = group("conv2d backward weights", case)
    batch = batch_for(backend, case["preset"])
    x, w, b, dout = conv_inputs(rng, case, batch)
    flops = 2 * conv_multiply_adds(w.shape, dout.shape[2:])
    kernel = fcnn.get_backend(backend).conv2d_backward_weights
    run(benchmark, backend, kernel, (dout, x, w, case["spec"]["stride"], case["spec"]["pad"]), batch, flops)


def pool_comparisons(case, dout):
    """Comparisons per image: size*size - 1 per output value."""
    return (case["spec"]["size"] ** 2 - 1) * int(np.prod(dout.shape[1:]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", POOL_CASES, ids=case_id)
def test_maxpool2d_forward(benchmark, rng, case, backend):
    benchmark.group = group("maxpool2d forward", case)
    batch = batch_for(backend, case["preset"])
    x, dout = pool_inputs(rng, case, batch)
    kernel = fcnn.get_backend(backend).maxpool2d_forward
    run(benchmark, backend, kernel, (x, case["spec"]["size"], case["spec"]["stride"]), batch, pool_comparisons(case, dout))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", POOL_CASES, ids=case_id)
def test_maxpool2d_backward(benchmark, rng, case, backend):
    benchmark.group = group("maxpool2d backward", case)
    batch = batch_for(backend, case["preset"])
    x, dout = pool_inputs(rng, case, batch)
    kernel = fcnn.get_backend(backend).maxpool2d_backward
    run(benchmark, backend, kernel, (dout, x, case["spec"]["size"], case["spec"]["stride"]), batch, pool_comparisons(case, dout))
