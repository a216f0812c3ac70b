"""Batch norm, dropout and average pooling in every backend: gradients against finite differences,
backends against loop.py and against independent computations (the channel-rows formula, CS231n's
staged backward, scipy's correlate2d, the adjoint identity, PyTorch), NaN and inf, dtypes, odd
shapes, batch 1 and argument checks."""

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import correlate2d

from fcnn.gradcheck import numerical_gradient, relative_error
from fcnn.kernels import available_backends, get_backend, loop

BACKENDS = available_backends()
FAST_BACKENDS = [name for name in BACKENDS if name != "loop"]
needs_numba = pytest.mark.skipif("numba" not in BACKENDS, reason="numba is not installed")
# As in test_kernels.py: finite differences agree with a right gradient to ~1e-9, a wrong one is off by order 1.
GRAD_TOLERANCE = 1e-6
# Sums of at most a few hundred values computed in another order: float32 rounding stays below these.
TOLERANCE = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}

# x shapes for batch norm: dense (N, C) and spatial (N, C, H, W), batch 1 with several positions,
# odd sizes, a single channel.
BATCHNORM_SHAPES = [(5, 3), (2, 1), (1, 3, 4, 5), (2, 3, 5, 7), (3, 1, 3, 3), (4, 2, 1, 1)]
# (N, C, H, W, size, stride): stride None = size; stride < size overlaps; odd sizes leave a rim.
POOL_CASES = [
    (1, 1, 4, 4, 2, None),
    (2, 3, 7, 6, 2, 2),
    (2, 2, 7, 7, 3, 2),
    (1, 2, 5, 6, 2, 1),
    (2, 1, 9, 8, 3, 3),
    (1, 1, 3, 5, 3, None),
]
DROPOUT_SHAPES = [(4, 7), (2, 3, 5, 5), (1, 1)]


def batchnorm_arrays(shape, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    C = shape[1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    gamma = rng.standard_normal(C).astype(dtype)
    beta = rng.standard_normal(C).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    return x, gamma, beta, dout


def pool_arrays(case, dtype=np.float64, seed=0):
    N, C, H, W, size, stride = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    out_shape = loop.avgpool2d_forward(x, size, stride).shape
    return x, size, stride, rng.standard_normal(out_shape).astype(dtype)


def channel_rows(x):
    """x (N, C, ...) -> (C, N * ...): one row per channel, by moving the channel axis first."""
    return np.moveaxis(x, 1, 0).reshape(x.shape[1], -1)


def from_channel_rows(rows, shape):
    """The inverse of channel_rows for an x of `shape`."""
    moved = (shape[1], shape[0], *shape[2:])
    return np.moveaxis(rows.reshape(moved), 0, 1)


def batchnorm_reference(x, gamma, beta, eps=1e-5):
    """Batch norm by rows: each channel's values in one row, normalised by np.var (ddof 0)."""
    rows = channel_rows(x)
    xhat = (rows - rows.mean(axis=1, keepdims=True)) / np.sqrt(rows.var(axis=1, keepdims=True) + eps)
    return from_channel_rows(gamma[:, None] * xhat + beta[:, None], x.shape)


def batchnorm_backward_reference(dout, x, gamma, eps=1e-5):
    """CS231n's staged backward through the graph, step by step: xhat, then the variance, then the mean."""
    rows, drows = channel_rows(x), channel_rows(dout)
    M = rows.shape[1]
    centred = rows - rows.mean(axis=1, keepdims=True)
    std = np.sqrt((centred**2).mean(axis=1, keepdims=True) + eps)
    xhat = centred / std
    dxhat = drows * gamma[:, None]
    dvar = np.sum(dxhat * centred * -0.5 * std**-3, axis=1, keepdims=True)
    dmean = np.sum(-dxhat / std, axis=1, keepdims=True) + dvar * np.mean(-2 * centred, axis=1, keepdims=True)
    dx = dxhat / std + dvar * 2 * centred / M + dmean / M
    return from_channel_rows(dx, x.shape), np.sum(drows * xhat, axis=1), drows.sum(axis=1)


def avgpool_reference(x, size, stride):
    """Average pooling via scipy.signal.correlate2d with a size x size kernel of 1/size**2, then every stride-th."""
    stride = size if stride is None else stride
    kernel = np.full((size, size), 1 / size**2)
    return np.array([[correlate2d(plane, kernel, mode="valid")[::stride, ::stride] for plane in image] for image in x])


# ---- Batch norm --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", BATCHNORM_SHAPES, ids=str)
def test_batchnorm_gradients_match_finite_differences(backend, shape):
    kernels = get_backend(backend)
    x, gamma, beta, dout = batchnorm_arrays(shape)

    def loss():  # L = sum(dout * out), so dL/dout = dout
        return float(np.sum(dout * kernels.batchnorm_forward(x, gamma, beta)))

    dx, dgamma, dbeta = kernels.batchnorm_backward(dout, x, gamma)
    assert relative_error(dx, numerical_gradient(loss, x)) < GRAD_TOLERANCE
    assert relative_error(dgamma, numerical_gradient(loss, gamma)) < GRAD_TOLERANCE
    assert relative_error(dbeta, numerical_gradient(loss, beta)) < GRAD_TOLERANCE


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", BATCHNORM_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_matches_the_channel_rows_formula_and_a_staged_backward(backend, shape, dtype):
    kernels = get_backend(backend)
    x, gamma, beta, dout = batchnorm_arrays(shape, dtype)
    wide = [a.astype(np.float64) for a in (x, gamma, beta, dout)]
    out = kernels.batchnorm_forward(x, gamma, beta, 1e-3)
    assert out.dtype == dtype and out.shape == x.shape
    np.testing.assert_allclose(out, batchnorm_reference(*wide[:3], 1e-3), **TOLERANCE[dtype])
    expected = batchnorm_backward_reference(wide[3], wide[0], wide[1], 1e-3)
    for got, want in zip(kernels.batchnorm_backward(dout, x, gamma, 1e-3), expected):
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, **TOLERANCE[dtype])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_statistics_are_the_per_channel_mean_and_biased_variance(backend, dtype):
    for shape, axes in [((3, 4, 5, 2), (0, 2, 3)), ((6, 3), (0,))]:
        x, *_ = batchnorm_arrays(shape, dtype)
        mean, var = get_backend(backend).batchnorm_statistics(x)
        assert mean.dtype == var.dtype == dtype and mean.shape == var.shape == (shape[1],)
        np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=axes), **TOLERANCE[dtype])
        np.testing.assert_allclose(var, x.astype(np.float64).var(axis=axes, ddof=0), **TOLERANCE[dtype])


def test_batchnorm_output_has_each_channel_at_mean_beta_and_std_gamma():
    # The defining property, checked without any formula: per channel, over N, H and W together.
    x, gamma, beta, _ = batchnorm_arrays((4, 3, 5, 6))
    out = loop.batchnorm_forward(x, gamma, beta, eps=1e-12)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), beta, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), np.abs(gamma), rtol=1e-9)


batchnorm_shapes = st.one_of(
    st.tuples(st.integers(2, 6), st.integers(1, 5)),
    st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 6), st.integers(1, 6)),
).filter(lambda shape: int(np.prod(shape)) // shape[1] > 1)


@settings(max_examples=40, deadline=None)
@given(shape=batchnorm_shapes, dtype=st.sampled_from([np.float32, np.float64]))
def test_batchnorm_backends_agree_on_random_shapes(shape, dtype):
    x, gamma, beta, dout = batchnorm_arrays(shape, dtype, seed=4)
    reference = get_backend("loop")
    out = reference.batchnorm_forward(x, gamma, beta)
    grads = reference.batchnorm_backward(dout, x, gamma)
    for name in FAST_BACKENDS:
        kernels = get_backend(name)
        np.testing.assert_allclose(kernels.batchnorm_forward(x, gamma, beta), out, **TOLERANCE[dtype])
        for got, expected in zip(kernels.batchnorm_backward(dout, x, gamma), grads):
            np.testing.assert_allclose(got, expected, **TOLERANCE[dtype])


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_spreads_nan_and_inf_over_their_channel_only_as_loop_does(dtype):
    x, gamma, beta, dout = batchnorm_arrays((3, 4, 3, 3), dtype)
    x[1, 0, 2, 1] = np.nan
    x[0, 2, 0, 0] = np.inf
    out = loop.batchnorm_forward(x, gamma, beta)
    grads = loop.batchnorm_backward(dout, x, gamma)
    # A NaN or inf enters its channel's mean, so the whole channel is NaN (inf - inf); the others are untouched.
    poisoned = np.isnan(out).all(axis=(0, 2, 3))
    np.testing.assert_array_equal(poisoned, [True, False, True, False])
    assert np.isfinite(out[:, [1, 3]]).all()
    for name in FAST_BACKENDS:
        kernels = get_backend(name)
        np.testing.assert_allclose(kernels.batchnorm_forward(x, gamma, beta), out, **TOLERANCE[dtype])
        for got, expected in zip(kernels.batchnorm_backward(dout, x, gamma), grads):
            np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
            np.testing.assert_allclose(got, expected, **TOLERANCE[dtype])


# ---- Dropout -------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", DROPOUT_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rate", [0.0, 0.3, 0.75])
def test_dropout_is_the_inverted_dropout_formula_with_the_generator_given(backend, shape, dtype, rate):
    kernels = get_backend(backend)
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    out, mask = kernels.dropout_forward(x, rate, np.random.default_rng(7))
    uniform = np.random.default_rng(7).random(shape)
    expected_mask = np.where(uniform < rate, 0.0, 1.0 / (1.0 - rate)).astype(dtype)
    assert out.dtype == mask.dtype == dtype
    np.testing.assert_array_equal(mask, expected_mask)
    np.testing.assert_array_equal(out, x * expected_mask)
    dout = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    np.testing.assert_array_equal(kernels.dropout_backward(dout, mask), dout * expected_mask)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_keeps_one_minus_rate_and_leaves_the_mean_unchanged(backend):
    x = np.ones((200, 500))
    out, mask = get_backend(backend).dropout_forward(x, 0.4, np.random.default_rng(3))
    # 100,000 draws: the kept fraction's standard deviation is 0.0015, the mean's 0.0024.
    assert abs(np.mean(mask > 0) - 0.6) < 0.01
    assert abs(out.mean() - 1.0) < 0.02


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_gradient_with_its_mask_matches_finite_differences(backend):
    kernels = get_backend(backend)
    x = np.random.default_rng(0).standard_normal((3, 2, 4, 4))
    dout = np.random.default_rng(1).standard_normal(x.shape)

    def loss():  # the same generator state every call: the same mask, as within one training step
        return float(np.sum(dout * kernels.dropout_forward(x, 0.5, np.random.default_rng(5))[0]))

    _, mask = kernels.dropout_forward(x, 0.5, np.random.default_rng(5))
    assert relative_error(kernels.dropout_backward(dout, mask), numerical_gradient(loss, x)) < GRAD_TOLERANCE


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_passes_nan_and_inf_through_as_loop_does(dtype):
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(dtype)
    x[0, :3] = np.nan
    x[1, :3] = np.inf
    out, mask = loop.dropout_forward(x, 0.5, np.random.default_rng(2))
    # A dropped NaN or inf is still NaN: 0 * inf and 0 * NaN are NaN in IEEE arithmetic.
    assert np.isnan(out[0, :3]).all() and not np.isfinite(out[1, :3]).any()
    for name in FAST_BACKENDS:
        got, got_mask = get_backend(name).dropout_forward(x, 0.5, np.random.default_rng(2))
        np.testing.assert_array_equal(got, out)
        np.testing.assert_array_equal(got_mask, mask)


# ---- Average pooling ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_avgpool2d_gradient_matches_finite_differences(backend, case):
    kernels = get_backend(backend)
    x, size, stride, dout = pool_arrays(case)

    def loss():
        return float(np.sum(dout * kernels.avgpool2d_forward(x, size, stride)))

    dx = kernels.avgpool2d_backward(dout, x, size, stride)
    assert relative_error(dx, numerical_gradient(loss, x)) < GRAD_TOLERANCE


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_avgpool2d_matches_correlate2d_and_its_backward_is_the_adjoint(backend, case, dtype):
    kernels = get_backend(backend)
    x, size, stride, dout = pool_arrays(case, dtype)
    out = kernels.avgpool2d_forward(x, size, stride)
    dx = kernels.avgpool2d_backward(dout, x, size, stride)
    assert out.dtype == dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(out, avgpool_reference(x.astype(np.float64), size, stride), **TOLERANCE[dtype])
    # Pooling is linear, out = A x, and the backward is its transpose: <dout, A x> = <A^T dout, x>.
    np.testing.assert_allclose(np.sum(dout * out, dtype=np.float64), np.sum(dx * x, dtype=np.float64),
                               **TOLERANCE[dtype])


@pytest.mark.parametrize("backend", BACKENDS)
def test_avgpool2d_backward_shares_each_gradient_over_the_window_area(backend):
    # Windows that do not overlap: every input pixel gets its window's gradient over 4; the rim gets 0.
    dout = np.arange(1.0, 7.0).reshape(1, 1, 2, 3)
    dx = get_backend(backend).avgpool2d_backward(dout, np.zeros((1, 1, 5, 7)), 2)
    expected = np.zeros((1, 1, 5, 7))
    expected[:, :, :4, :6] = np.repeat(np.repeat(dout, 2, axis=2), 2, axis=3) / 4
    np.testing.assert_array_equal(dx, expected)


pool_shapes = st.tuples(
    st.integers(1, 3), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9),  # N, C, H, W
    st.integers(1, 4), st.one_of(st.none(), st.integers(1, 3)),                  # size, stride
).filter(lambda s: s[4] <= min(s[2], s[3]))


@settings(max_examples=40, deadline=None)
@given(case=pool_shapes, dtype=st.sampled_from([np.float32, np.float64]))
def test_avgpool2d_backends_agree_on_random_shapes(case, dtype):
    x, size, stride, dout = pool_arrays(case, dtype, seed=3)
    reference = get_backend("loop")
    out = reference.avgpool2d_forward(x, size, stride)
    dx = reference.avgpool2d_backward(dout, x, size, stride)
    for name in FAST_BACKENDS:
        kernels = get_backend(name)
        np.testing.assert_allclose(kernels.avgpool2d_forward(x, size, stride), out, **TOLERANCE[dtype])
        np.testing.assert_allclose(kernels.avgpool2d_backward(dout, x, size, stride), dx, **TOLERANCE[dtype])


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [2, 3])
def test_avgpool2d_spreads_nan_and_inf_over_their_windows_as_loop_does(dtype, size):
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6)).astype(dtype)
    x[0, 0, 1, 1] = np.nan
    x[1, 1, 4, 4] = np.inf
    x[1, 0, 0, 0], x[1, 0, 0, 1] = np.inf, -np.inf
    out = loop.avgpool2d_forward(x, size)
    assert np.isnan(out[0, 0, 0, 0]) and out[1, 1, -1, -1] == np.inf and np.isnan(out[1, 0, 0, 0])
    assert np.isfinite(out).sum() == out.size - 3
    for name in FAST_BACKENDS:
        np.testing.assert_array_equal(get_backend(name).avgpool2d_forward(x, size), out)


# ---- Every kernel --------------------------------------------------------------------------------


def all_calls(kernels, dtype):
    """Every new kernel of a backend applied to one set of arguments: (name, function, args)."""
    x, gamma, beta, dout = batchnorm_arrays((2, 3, 4, 5), dtype)
    pool_x, size, stride, pool_dout = pool_arrays(POOL_CASES[2], dtype)
    _, mask = kernels.dropout_forward(x, 0.5, np.random.default_rng(0))
    return [
        ("batchnorm_forward", kernels.batchnorm_forward, (x, gamma, beta)),
        ("batchnorm_backward", kernels.batchnorm_backward, (dout, x, gamma)),
        ("dropout_forward", kernels.dropout_forward, (x, 0.5, np.random.default_rng(0))),
        ("dropout_backward", kernels.dropout_backward, (dout, mask)),
        ("avgpool2d_forward", kernels.avgpool2d_forward, (pool_x, size, stride)),
        ("avgpool2d_backward", kernels.avgpool2d_backward, (pool_dout, pool_x, size, stride)),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_kernels_do_not_modify_their_inputs(backend):
    for name, function, args in all_calls(get_backend(backend), np.float64):
        copies = [np.copy(a) if isinstance(a, np.ndarray) else a for a in args]
        function(*args)
        for given_arg, copy in zip(args, copies):
            if isinstance(copy, np.ndarray):
                np.testing.assert_array_equal(given_arg, copy, err_msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_kernels_accept_non_contiguous_views(backend):
    kernels = get_backend(backend)
    x, gamma, beta, dout = batchnorm_arrays((3, 2, 6, 5))
    view, dout_view = x[:, :, ::2, ::-1], dout[:, :, ::2, ::-1]
    np.testing.assert_allclose(kernels.batchnorm_forward(view, gamma, beta),
                               loop.batchnorm_forward(view.copy(), gamma, beta), rtol=1e-12, atol=1e-12)
    for got, want in zip(kernels.batchnorm_backward(dout_view, view, gamma),
                         loop.batchnorm_backward(dout_view.copy(), view.copy(), gamma)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(kernels.avgpool2d_forward(x.transpose(0, 1, 3, 2)),
                                  loop.avgpool2d_forward(x.transpose(0, 1, 3, 2).copy()))
    np.testing.assert_array_equal(kernels.dropout_forward(view, 0.5, np.random.default_rng(1))[0],
                                  loop.dropout_forward(view.copy(), 0.5, np.random.default_rng(1))[0])


@needs_numba
def test_numba_backend_compiles_the_loop_source_itself():
    from fcnn.kernels import compiled_loop as compiled

    for name in ("batchnorm_statistics", "batchnorm_forward", "batchnorm_backward", "dropout_forward_given_draws",
                 "dropout_backward", "avgpool2d_forward", "avgpool2d_backward"):
        assert getattr(compiled, name).py_func.__code__ is getattr(loop, name).__code__, name
    # The statistics the batch norm kernels call are loop.py's, inlined; dropout_forward is loop.py's, run by Python.
    inlined = compiled.batchnorm_forward.py_func.__globals__["batchnorm_statistics"]
    assert inlined.py_func.__code__ is loop.batchnorm_statistics.__code__
    assert inlined.targetoptions["inline"] == "always"
    assert compiled.dropout_forward.__code__ is loop.dropout_forward.__code__
    assert compiled.dropout_forward.__globals__["dropout_forward_given_draws"] is compiled.dropout_forward_given_draws
    for fast_path, kernel in {"avgpool2d_forward_2x2": "avgpool2d_forward",
                              "avgpool2d_backward_2x2": "avgpool2d_backward"}.items():
        inlined = getattr(compiled, fast_path).py_func.__globals__[kernel]
        assert inlined.py_func.__code__ is getattr(loop, kernel).__code__, fast_path


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_avgpool2d_fast_paths_are_the_general_kernels(dtype):
    from fcnn.kernels import compiled_loop as compiled

    x, _, _, dout = pool_arrays((2, 3, 7, 8, 2, 2), dtype)
    np.testing.assert_array_equal(compiled.avgpool2d_forward_2x2(x), loop.avgpool2d_forward(x, 2, 2))
    np.testing.assert_allclose(compiled.avgpool2d_backward_2x2(dout, x), loop.avgpool2d_backward(dout, x, 2, 2),
                               **TOLERANCE[dtype])


# ---- PyTorch parity ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 5, 6), (1, 2, 3, 3)], ids=str)
def test_batchnorm_matches_pytorch_training_mode_output_and_gradients(backend, shape):
    torch = pytest.importorskip("torch")
    kernels = get_backend(backend)
    x, gamma, beta, dout = batchnorm_arrays(shape)
    xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    out = torch.nn.functional.batch_norm(xt, None, None, gt, bt, training=True, eps=1e-3)
    out.backward(torch.tensor(dout))
    np.testing.assert_allclose(kernels.batchnorm_forward(x, gamma, beta, 1e-3), out.detach().numpy(),
                               rtol=1e-10, atol=1e-12)
    for got, want in zip(kernels.batchnorm_backward(dout, x, gamma, 1e-3), (xt.grad, gt.grad, bt.grad)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_avgpool2d_matches_pytorch_forward_and_backward(backend, case):
    torch = pytest.importorskip("torch")
    kernels = get_backend(backend)
    x, size, stride, dout = pool_arrays(case)
    xt = torch.tensor(x, requires_grad=True)
    out = torch.nn.functional.avg_pool2d(xt, size, stride)
    out.backward(torch.tensor(dout))
    np.testing.assert_allclose(kernels.avgpool2d_forward(x, size, stride), out.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(kernels.avgpool2d_backward(dout, x, size, stride), xt.grad.numpy(),
                               rtol=1e-12, atol=1e-14)


# ---- Argument checks -----------------------------------------------------------------------------


def bad_calls():
    """(kernel, args, the words the ValueError must contain): each argument refused by name."""
    x, gamma, beta, dout = batchnorm_arrays((2, 3, 4, 4))
    rng = np.random.default_rng(0)
    mask = np.ones_like(x)
    pool_x = x[:, :, :4, :4]
    return [
        ("batchnorm_forward", (x[0], gamma, beta), "x must be (N, C) or (N, C, H, W)"),
        ("batchnorm_forward", (x.astype(np.int64), gamma, beta), "x must be float32 or float64"),
        ("batchnorm_forward", (x[:1, :, :1, :1], gamma, beta), "more than one value per channel"),
        ("batchnorm_forward", (x[:1, :, 0, 0], gamma, beta), "more than one value per channel"),
        ("batchnorm_forward", (x, gamma[:2], beta), "gamma must have shape (3,)"),
        ("batchnorm_forward", (x, gamma, beta[:2]), "beta must have shape (3,)"),
        ("batchnorm_forward", (x, gamma.astype(np.float32), beta), "gamma must have the dtype of x"),
        ("batchnorm_forward", (x, gamma, beta, 0.0), "eps must be > 0"),
        ("batchnorm_forward", (x, gamma, beta, float("nan")), "eps must be finite"),
        ("batchnorm_forward", (x, gamma, beta, True), "eps must be a number"),
        ("batchnorm_backward", (dout[:1], x, gamma), "dout must have the shape of x"),
        ("batchnorm_backward", (dout, x, gamma, -1e-5), "eps must be > 0"),
        ("batchnorm_statistics", (x[:, :, 0],), "x must be (N, C) or (N, C, H, W)"),
        ("dropout_forward", (x, 1.0, rng), "rate must be in [0, 1)"),
        ("dropout_forward", (x, -0.1, rng), "rate must be in [0, 1)"),
        ("dropout_forward", (x, float("inf"), rng), "rate must be finite"),
        ("dropout_forward", (x, "0.5", rng), "rate must be a number"),
        ("dropout_forward", (x, 0.5, 42), "rng must be a numpy.random.Generator"),
        ("dropout_forward", (x.tolist(), 0.5, rng), "x must be a numpy array"),
        ("dropout_backward", (dout, mask[:1]), "mask must have the shape of dout"),
        ("dropout_backward", (dout, mask.astype(np.float32)), "mask must have the dtype of x"),
        ("avgpool2d_forward", (pool_x, 5), "must fit in x's 4x4 images"),
        ("avgpool2d_forward", (pool_x, 2, 0), "stride must be >= 1"),
        ("avgpool2d_forward", (pool_x[0], 2), "x must have 4 dimensions"),
        ("avgpool2d_backward", (np.ones((2, 3, 3, 3)), pool_x, 2), "dout must have the forward output's shape"),
        ("avgpool2d_backward", (np.ones((2, 3, 2, 2)), pool_x, 2.0), "size must be an integer"),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_kernels_refuse_bad_arguments_by_name(backend):
    kernels = get_backend(backend)
    for kernel, args, words in bad_calls():
        with pytest.raises(ValueError) as raised:
            getattr(kernels, kernel)(*args)
        assert str(raised.value).startswith(f"{kernel}: ") and words in str(raised.value), (kernel, str(raised.value))


def test_tuned_serves_these_kernels_from_numba():
    if "tuned" not in BACKENDS:
        pytest.skip("numba is not installed")
    tuned = get_backend("tuned")
    for kernel in ("batchnorm_statistics", "batchnorm_forward", "batchnorm_backward", "dropout_forward",
                   "dropout_backward", "avgpool2d_forward", "avgpool2d_backward"):
        assert tuned.served_by[kernel] == "numba"


@needs_numba
def test_numba_cache_of_these_kernels_loads_in_the_next_process(tmp_path):
    # Batch norm's cached kernels inline a parallel function (numba#8578 crashed calls to one);
    # a fresh process that loads them from the cache, in either dtype and rank, gives loop.py's numbers.
    script = (
        "import numpy as np\n"
        "from fcnn.kernels import get_backend, loop\n"
        "numba = get_backend('numba')\n"
        "for dtype in (np.float32, np.float64):\n"
        "    for shape in ((4, 3), (2, 3, 4, 4)):\n"
        "        x = (np.arange(np.prod(shape)).reshape(shape) % 7).astype(dtype)\n"
        "        g = np.arange(1, 4).astype(dtype); b = np.ones(3, dtype)\n"
        "        np.testing.assert_allclose(numba.batchnorm_forward(x, g, b), loop.batchnorm_forward(x, g, b),\n"
        "                                   rtol=1e-5)\n"
        "        for got, want in zip(numba.batchnorm_backward(x, x, g), loop.batchnorm_backward(x, x, g)):\n"
        "            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)\n"
        "        out, mask = numba.dropout_forward(x, 0.5, np.random.default_rng(0))\n"
        "        assert np.array_equal(numba.dropout_backward(x, mask), loop.dropout_backward(x, mask))\n"
        "    x = (np.arange(2 * 3 * 6 * 6).reshape(2, 3, 6, 6) % 5).astype(dtype)\n"
        "    for size, stride in ((2, 2), (3, 2)):\n"
        "        out = numba.avgpool2d_forward(x, size, stride)\n"
        "        np.testing.assert_allclose(out, loop.avgpool2d_forward(x, size, stride), rtol=1e-6)\n"
        "        np.testing.assert_allclose(numba.avgpool2d_backward(out, x, size, stride),\n"
        "                                   loop.avgpool2d_backward(out, x, size, stride), rtol=1e-6)\n"
    )
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    for attempt in ("compiles every kernel", "loads every kernel from the cache"):
        result = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True)
        assert result.returncode == 0, f"the process that {attempt} failed ({result.returncode}): {result.stderr}"
    assert list(tmp_path.rglob("*batchnorm_backward*")), "nothing was cached"
