"""Each kernel and direction on the real layer shapes of the presets, backends side by side.

One pytest-benchmark group per kernel, direction and layer; `loop` times LOOP_BATCH images,
the others the preset's batch, so compare them per image (extra_info, bench/report.py).
"""

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_limits
from workloads import BATCH_SIZES, batch_for, conv_multiply_adds, layer_cases

import fcnn
from fcnn.kernels.loop import output_size
from fcnn.kernels.tuned import conv_forward, machine

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
    conv1 backward was several times slower (docs/performance.md).
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


# ----- the tuned forward's register tiles, each forced, beside the one this machine picks and F.conv2d -----

# Batches the forward tiles are timed at: the preset's training batch, and LeNet-5's 64 too.
TILE_BATCHES = {case_id(case): BATCH_SIZES[case["preset"]] for case in CONV_CASES}
TILE_ITEMS = [(case, batch, variant) for case in CONV_CASES for batch in TILE_BATCHES[case_id(case)]
              for variant in ("torch", *(f"tuned [{tile}]" for tile in machine.TILES))]


def tile_item_id(item):
    case, batch, variant = item
    return f"{case_id(case)}-b{batch}-{variant.replace(' ', '_')}"


@pytest.mark.skipif("tuned" not in BACKENDS, reason="the tuned backend needs numba")
@pytest.mark.parametrize("item", TILE_ITEMS, ids=tile_item_id)
def test_conv2d_forward_tiles(benchmark, rng, item):
    """Every tile of the tuned stride-1 forward, forced, in a group with PyTorch's F.conv2d (oneDNN),
    so the report's "vs PyTorch" compares each tile with it; extra_info names the tile this
    machine picks for the layer (`chosen`, fcnn.kernels.tuned.machine)."""
    case, batch, variant = item
    spec = case["spec"]
    assert spec["stride"] == 1, "the tiles are the stride-1 kernels"
    benchmark.group = f"conv2d forward tiles: {case['preset']} {case['layer']} {(batch, *case['input_shape'])}"
    x, w, b, dout = conv_inputs(rng, case, batch)
    flops = 2 * conv_multiply_adds(w.shape, dout.shape[2:])
    F, C, KH, KW = w.shape
    benchmark.extra_info.update(chosen=machine.conv_forward_tile(C, F, KH, KW), threads=numba.get_num_threads())
    if variant != "torch":
        tile = variant[len("tuned ["):-1]
        run(benchmark, variant, conv_forward.conv2d_forward_in_tile, (tile, x, w, b, spec["pad"]), batch, flops)
        return
    torch = pytest.importorskip("torch")
    x_, w_, b_ = (torch.from_numpy(a) for a in (x, w, b))

    def forward():
        with torch.no_grad():
            return torch.nn.functional.conv2d(x_, w_, b_, stride=1, padding=spec["pad"])

    expected = fcnn.get_backend("tuned").conv2d_forward(x, w, b, 1, spec["pad"])
    # PyTorch gets the cores numba gets; set only when they differ (bench/test_ladder_bench.py says why).
    threads_before = torch.get_num_threads()
    if threads_before != numba.get_num_threads():
        torch.set_num_threads(numba.get_num_threads())
    try:
        np.testing.assert_allclose(forward().numpy(), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
        run(benchmark, variant, forward, (), batch, flops)
    finally:
        if torch.get_num_threads() != threads_before:
            torch.set_num_threads(threads_before)


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


# ----- the tuned backend's fused conv2d + ReLU + maxpool2d layer, against the same three kernels unfused -----


def fused_layer_calls(case, rng):
    """(forward, backward) pairs of calls, unfused and fused, for one preset conv layer and its 2x2 pool.

    Unfused: the tuned backend's conv2d and maxpool2d with fcnn.layers' ReLU between them, as
    fcnn.model runs them. The first layer's backward skips dx in both.
    """
    from fcnn import layers
    from fcnn.kernels.tuned import fused

    kernels = fcnn.get_backend("tuned")
    stride, pad = case["spec"]["stride"], case["spec"]["pad"]
    x, w, b, _ = conv_inputs(rng, case, batch_for("tuned", case["preset"]))
    input_gradient = case["layer"] != "conv1"
    out, z = fused.conv2d_relu_maxpool2d_forward(x, w, b, stride, pad, 2, 2)
    activated = layers.relu_forward(z)
    dout = rng.standard_normal(out.shape, dtype=np.float32)

    def unfused_forward():
        z = kernels.conv2d_forward(x, w, b, stride, pad)
        return kernels.maxpool2d_forward(layers.relu_forward(z), 2, 2), z

    def unfused_backward():
        dz = layers.relu_backward(kernels.maxpool2d_backward(dout, activated, 2, 2), z)
        if input_gradient:
            return kernels.conv2d_backward(dz, x, w, stride, pad)
        return kernels.conv2d_backward_weights(dz, x, w, stride, pad)

    return {
        "forward": {"tuned": (unfused_forward, ()),
                    "tuned-fused": (fused.conv2d_relu_maxpool2d_forward, (x, w, b, stride, pad, 2, 2))},
        "backward": {"tuned": (unfused_backward, ()),
                     "tuned-fused": (fused.conv2d_relu_maxpool2d_backward, (dout, x, z, w, stride, pad, 2, 2, input_gradient))},
    }


@pytest.mark.skipif("tuned" not in BACKENDS, reason="the tuned backend needs numba")
@pytest.mark.parametrize("variant", ["tuned", "tuned-fused"])
@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("case", CONV_CASES, ids=case_id)
def test_conv2d_relu_maxpool2d(benchmark, rng, case, direction, variant):
    benchmark.group = group(f"conv2d+relu+maxpool2d {direction}", case)
    function, args = fused_layer_calls(case, rng)[direction][variant]
    batch = batch_for("tuned", case["preset"])
    _, H, W = case["input_shape"]
    _, _, KH, KW = case["weight_shape"]
    spec = case["spec"]
    output_hw = (output_size(H, KH, spec["stride"], spec["pad"]), output_size(W, KW, spec["stride"], spec["pad"]))
    # Multiply-adds of the convolution only: forward 1 pass; backward dw, and dx except for conv1.
    passes = 1 if direction == "forward" else (2 if case["layer"] != "conv1" else 1)
    run(benchmark, variant, function, args, batch, 2 * passes * conv_multiply_adds(case["weight_shape"], output_hw))
