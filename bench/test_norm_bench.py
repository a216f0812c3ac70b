"""Batch norm, average pooling and dropout, forward and backward, every backend beside PyTorch.

The shapes networks feed them: LeNet-5's two conv outputs, (6, 28, 28) and (16, 10, 10), where
a batch norm or an average pool follows a conv, and a dense layer of 128 units, where batch norm
and dropout follow a dense; each at the presets' training batch (32) and at 64. One group per
kernel, direction and shape, PyTorch in the same group. `loop` times LOOP_BATCH images, the
others the whole batch: compare them per image (extra_info images and flops_per_image,
bench/report.py). A backend whose kernel is another backend's function (served_by) is skipped,
not timed twice.

Before anything is timed, every result is held to the numpy backend's on the same inputs, and
PyTorch's to numpy's: the race is between equals.
"""

from contextlib import contextmanager

import numba
import numpy as np
import pytest
from test_kernels_bench import run
from workloads import LOOP_BATCH, TRAINING_BATCH, weighted_layers

import fcnn
from fcnn.kernels.loop import output_size

BACKENDS = fcnn.available_backends()
REFERENCE = fcnn.get_backend("numpy")
BATCHES = tuple(dict.fromkeys((TRAINING_BATCH["lenet5"], 64)))
CONV_OUTPUTS = [(f"after lenet5 {name}", out_shape)
                for name, spec, _, out_shape, _ in weighted_layers("lenet5") if spec["type"] == "conv"]
DENSE_OUTPUTS = [("after a dense of 128", (128,))]
# (where, batch, per-image shape): batch norm and dropout after convs and dense layers, pooling after convs.
NORM_CASES = [(where, batch, shape) for where, shape in CONV_OUTPUTS + DENSE_OUTPUTS for batch in BATCHES]
POOL_CASES = [(where, batch, shape) for where, shape in CONV_OUTPUTS for batch in BATCHES]
POOL_SIZE = 2  # LeNet-5's subsampling: 2x2 windows, stride 2
DROPOUT_RATE = 0.5  # the dropout layer's default
EPS = 1e-5  # batch norm's default, as PyTorch's
# Arithmetic per value as loop.py writes it: batch norm's statistics 4 (mean: add; variance:
# subtract, square, add), forward + 4 (subtract, two multiplies, add), backward + 11 (dbeta 1,
# dgamma 3, dx 7); dropout forward 2 (compare, multiply), backward 1.
FLOPS_PER_VALUE = {"batchnorm_forward": 8, "batchnorm_backward": 15, "dropout_forward": 2, "dropout_backward": 1}


def case_id(case):
    where, batch, _ = case
    return f"{where.replace(' ', '_')}-b{batch}"


def group(kernel, case):
    """"batchnorm forward: after lenet5 conv1 (32, 6, 28, 28)": the kernel, where it runs, its input's shape."""
    where, batch, shape = case
    return f"{kernel.replace('_', ' ')}: {where} {(batch, *shape)}"


def images_for(backend, case):
    """The case's batch, or LOOP_BATCH for the pure-Python loops."""
    return LOOP_BATCH if backend == "loop" else case[1]


def own_kernel(backend, kernel):
    """backend's kernel; skips when it is another backend's function, which is timed under that name."""
    kernels = fcnn.get_backend(backend)
    if kernels.served_by[kernel] != backend:
        pytest.skip(f"{backend}'s {kernel} is {kernels.served_by[kernel]}'s, timed there")
    return getattr(kernels, kernel)


def assert_same(values, expected):
    """float32 results of two computations of the same formula agree to rounding."""
    for value, reference in zip(values, expected):
        value = value.detach().numpy() if hasattr(value, "detach") else value
        np.testing.assert_allclose(value, reference, rtol=1e-4, atol=1e-5 * max(np.abs(reference).max(), 1))


def norm_inputs(rng, images, shape):
    """x, gamma, beta, dout (float32): x and dout (images, *shape), gamma and beta one per channel."""
    x = rng.standard_normal((images, *shape), dtype=np.float32)
    gamma = 1 + 0.1 * rng.standard_normal(shape[0], dtype=np.float32)
    beta = rng.standard_normal(shape[0], dtype=np.float32)
    dout = rng.standard_normal((images, *shape), dtype=np.float32)
    return x, gamma, beta, dout


def pool_inputs(rng, images, shape):
    """x (images, C, H, W) and dout (images, C, H', W') float32 for 2x2 average pooling."""
    C, H, W = shape
    x = rng.standard_normal((images, C, H, W), dtype=np.float32)
    out_hw = (output_size(H, POOL_SIZE, POOL_SIZE, 0), output_size(W, POOL_SIZE, POOL_SIZE, 0))
    return x, rng.standard_normal((images, C, *out_hw), dtype=np.float32)


def kernel_args(kernel, rng, images, shape):
    """The float32 arguments of `kernel` for `images` values of `shape` (dropout forward's Generator seeded 1)."""
    if kernel.startswith("batchnorm"):
        x, gamma, beta, dout = norm_inputs(rng, images, shape)
        return (x, gamma, beta, EPS) if kernel == "batchnorm_forward" else (dout, x, gamma, EPS)
    if kernel.startswith("avgpool2d"):
        x, dout = pool_inputs(rng, images, shape)
        return (x, POOL_SIZE, POOL_SIZE) if kernel == "avgpool2d_forward" else (dout, x, POOL_SIZE, POOL_SIZE)
    x = rng.standard_normal((images, *shape), dtype=np.float32)
    if kernel == "dropout_forward":
        return x, DROPOUT_RATE, np.random.default_rng(1)
    _, mask = REFERENCE.dropout_forward(x, DROPOUT_RATE, np.random.default_rng(1))
    return rng.standard_normal(x.shape, dtype=np.float32), mask


def with_fresh_generator(kernel, args):
    """args, dropout forward's with a new Generator of the same seed: two calls then draw the same mask."""
    return (*args[:2], np.random.default_rng(1)) if kernel == "dropout_forward" else args


def flops_per_image(kernel, shape):
    """FLOPS_PER_VALUE per value; average pooling, either way, size**2 adds and a divide per output value."""
    if kernel.startswith("avgpool2d"):
        C, H, W = shape
        outputs = C * output_size(H, POOL_SIZE, POOL_SIZE, 0) * output_size(W, POOL_SIZE, POOL_SIZE, 0)
        return (POOL_SIZE ** 2 + 1) * outputs
    return FLOPS_PER_VALUE[kernel] * int(np.prod(shape))


# Each kernel and the cases it is timed on.
TIMED = {"batchnorm_forward": NORM_CASES, "batchnorm_backward": NORM_CASES,
         "avgpool2d_forward": POOL_CASES, "avgpool2d_backward": POOL_CASES,
         "dropout_forward": NORM_CASES, "dropout_backward": NORM_CASES}
KERNEL_CASES = [(kernel, case) for kernel, cases in TIMED.items() for case in cases]


def kernel_case_id(item):
    kernel, case = item
    return f"{kernel}-{case_id(case)}"


def as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("item", KERNEL_CASES, ids=kernel_case_id)
def test_fcnn_kernel(benchmark, rng, item, backend):
    kernel, case = item
    benchmark.group = group(kernel, case)
    args = kernel_args(kernel, rng, images_for(backend, case), case[2])
    function = own_kernel(backend, kernel)
    if backend != "numpy":
        assert_same(as_tuple(function(*with_fresh_generator(kernel, args))),
                    as_tuple(getattr(REFERENCE, kernel)(*with_fresh_generator(kernel, args))))
    run(benchmark, backend, function, args, len(args[0]), flops_per_image(kernel, case[2]))


# ----- PyTorch: F.batch_norm (training=True), F.avg_pool2d, F.dropout; backwards through autograd -----


@contextmanager
def torch_threads_as_numba(torch):
    """PyTorch on as many threads as numba (both default to one a core), set only when they differ:
    torch.set_num_threads, even to its current value, once numba's OpenMP threads exist, made the
    two pools fight (bench/test_ladder_bench.py, docs/performance.md)."""
    before = torch.get_num_threads()
    if before != numba.get_num_threads():
        torch.set_num_threads(numba.get_num_threads())
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def torch_call(torch, kernel, args):
    """(call, expected): PyTorch's `kernel` on args, and expected(its result), the numbers it must give.

    Inputs that need no gradient build no graph, so the forwards need no torch.no_grad. A backward
    builds its graph once and times only torch.autograd.grad. PyTorch's dropout draws from its own
    generator, so its results are held to the formula with the mask it drew, kept / (1 - rate):
    out = x * mask, dx = dout * mask.
    """
    functional = torch.nn.functional
    tensors = [torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in args]
    if kernel.startswith("dropout"):
        def drawn_mask(out):
            mask = ((out != 0) / (1 - DROPOUT_RATE)).to(out.dtype).numpy()
            assert abs((mask > 0).mean() - (1 - DROPOUT_RATE)) < 0.05, "PyTorch must keep 1 - rate of the values"
            return mask

        if kernel == "dropout_forward":
            x, rate, _ = tensors
            return (lambda: functional.dropout(x, rate, training=True)), lambda out: (args[0] * drawn_mask(out[0]),)
        dout, _ = tensors
        # dropout's gradient does not depend on x's values: ones, so that only the mask makes zeros.
        x = torch.ones(dout.shape, requires_grad=True)
        out = functional.dropout(x, DROPOUT_RATE, training=True)
        mask = drawn_mask(out.detach())
        return (lambda: torch.autograd.grad(out, [x], dout, retain_graph=True)), lambda _: (args[0] * mask,)
    reference = as_tuple(getattr(REFERENCE, kernel)(*args))
    if kernel == "batchnorm_forward":
        x, gamma, beta, eps = tensors
        return (lambda: functional.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)), lambda _: reference
    if kernel == "batchnorm_backward":
        dout, x, gamma, eps = tensors
        wants = [x.requires_grad_(True), gamma.requires_grad_(True), torch.zeros_like(gamma, requires_grad=True)]
        out = functional.batch_norm(x, None, None, wants[1], wants[2], training=True, eps=eps)
        return (lambda: torch.autograd.grad(out, wants, dout, retain_graph=True)), lambda _: reference
    if kernel == "avgpool2d_forward":
        x, size, stride = tensors
        return (lambda: functional.avg_pool2d(x, size, stride)), lambda _: reference
    dout, x, size, stride = tensors
    out = functional.avg_pool2d(x.requires_grad_(True), size, stride)
    return (lambda: torch.autograd.grad(out, [x], dout, retain_graph=True)), lambda _: reference


@pytest.mark.parametrize("item", KERNEL_CASES, ids=kernel_case_id)
def test_torch_kernel(benchmark, rng, item):
    torch = pytest.importorskip("torch")
    kernel, (where, batch, shape) = item
    benchmark.group = group(kernel, (where, batch, shape))
    with torch_threads_as_numba(torch):
        call, expected = torch_call(torch, kernel, kernel_args(kernel, rng, batch, shape))
        result = as_tuple(call())
        assert_same(result, expected(result))
        benchmark.extra_info.update(backend="torch", images=batch, flops_per_image=flops_per_image(kernel, shape),
                                    threads=torch.get_num_threads())
        benchmark(call)
