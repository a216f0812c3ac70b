"""The tuned backend against the reference: every kernel and the fused conv + ReLU + pool layer
against loop.py (float32 and float64, odd shapes, strides, padding, non-square kernels, batch 1,
overlapping pools, ties), against finite differences in float64, and against numba's compiled
loops on the presets' real shapes, where the tuned fast paths run with their full blocks."""

import numpy as np
import pytest

import fcnn
from fcnn import layers
from fcnn.kernels import get_backend
from fcnn.kernels.tuned import fused
from fcnn.kernels.tuned.winners_backward import conv2d_relu_maxpool2d_backward_winners
from fcnn.gradcheck import numerical_gradient, relative_error

import conv_cases
from conv_cases import PRESET_CONVS

GRAD_TOLERANCE = 1e-6
# Sums reordered into SIMD lanes differ from loop.py's order by float rounding only.
TOLERANCE = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}

# (N, C, H, W, F, KH, KW, stride, pad): batch 1; odd channel and filter counts (a half-empty
# register block); non-square kernels and inputs; more taps than one block and fewer; 1x1;
# padding larger than the kernel needs; stride 2 and 3 (the general path).
CONV_CASES = [
    (1, 1, 5, 5, 1, 3, 3, 1, 0),
    (2, 3, 7, 6, 5, 3, 2, 1, 1),
    (1, 2, 6, 9, 3, 2, 4, 1, 2),
    (3, 5, 8, 8, 7, 5, 5, 1, 2),
    (2, 1, 4, 4, 2, 1, 1, 1, 0),
    (2, 2, 3, 11, 4, 3, 1, 1, 3),
    (2, 3, 7, 6, 4, 3, 2, 2, 1),
    (3, 1, 4, 9, 2, 1, 4, 3, 0),
]
# (N, C, H, W, size, stride): stride None = size; stride < size overlaps; odd sizes leave a rim.
POOL_CASES = [
    (1, 1, 4, 4, 2, None),
    (2, 3, 7, 6, 2, 2),
    (2, 2, 7, 7, 3, 2),
    (1, 2, 5, 6, 2, 1),
    (2, 1, 9, 8, 3, 3),
]
# (N, C, H, W, F, KH, KW, stride, pad, size, pool_stride) of a conv -> ReLU -> maxpool layer.
LAYER_CASES = [
    (2, 3, 8, 8, 4, 3, 3, 1, 1, 2, None),
    (1, 2, 9, 7, 3, 2, 3, 1, 0, 2, 2),
    (2, 1, 9, 9, 2, 3, 3, 1, 1, 3, 2),
    (2, 2, 10, 10, 3, 3, 3, 2, 1, 2, None),
    (1, 1, 6, 6, 1, 1, 1, 1, 0, 2, 1),
    # Several channels and wide kernels (patches of 80 and 60 values in winners_backward.py), padding,
    # odd conv outputs (a rim no window covers); LeNet-5's second conv.
    (2, 4, 9, 9, 3, 5, 4, 1, 1, 2, None),
    (3, 5, 9, 8, 3, 3, 4, 1, 1, 2, 2),
    (1, 6, 14, 14, 16, 5, 5, 1, 0, 2, 2),
    # A patch of 400 values (bn's second conv, fewer filters): dw from the winners four at a time.
    (2, 16, 10, 10, 4, 5, 5, 1, 2, 2, None),
]
# The layer cases the fused fast paths take: stride-1 convolutions, 2x2 pools of stride 2.
FAST_LAYER_CASES = [case for case in LAYER_CASES if case[7] == 1 and case[9] == 2 and case[10] in (None, 2)]

loop, tuned, compiled = get_backend("loop"), get_backend("tuned"), get_backend("numba")


def conv_arrays(case, dtype=np.float64, seed=0):
    """conv_cases.conv_arrays of the case, then a dout of the output's shape: (x, w, b, dout, stride, pad)."""
    rng = np.random.default_rng(seed)
    x, w, b, stride, pad = conv_cases.conv_arrays(case, dtype, rng)
    dout = rng.standard_normal(loop.conv2d_forward(x, w, b, stride, pad).shape).astype(dtype)
    return x, w, b, dout, stride, pad


def pool_arrays(case, dtype=np.float64, ties=False, seed=0):
    N, C, H, W, size, stride = case
    rng = np.random.default_rng(seed)
    # Ties: small integers, so most windows hold their maximum more than once.
    x = (rng.integers(0, 3, (N, C, H, W)) if ties else rng.standard_normal((N, C, H, W))).astype(dtype)
    dout = rng.standard_normal(loop.maxpool2d_forward(x, size, stride).shape).astype(dtype)
    return x, dout, size, stride


def assert_all_close(got, expected, dtype):
    for got_array, expected_array in zip(got, expected):
        assert got_array.dtype == dtype
        np.testing.assert_allclose(got_array, expected_array, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_tuned_conv2d_matches_loop(case, dtype):
    x, w, b, dout, stride, pad = conv_arrays(case, dtype)
    assert_all_close([tuned.conv2d_forward(x, w, b, stride, pad)], [loop.conv2d_forward(x, w, b, stride, pad)], dtype)
    expected = loop.conv2d_backward(dout, x, w, stride, pad)
    assert_all_close(tuned.conv2d_backward(dout, x, w, stride, pad), expected, dtype)
    assert_all_close(tuned.conv2d_backward_weights(dout, x, w, stride, pad), expected[1:], dtype)


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_tuned_conv2d_gradients_match_finite_differences(case):
    x, w, b, dout, stride, pad = conv_arrays(case)

    def loss():  # L = sum(dout * out), so dL/dout = dout
        return float(np.sum(dout * tuned.conv2d_forward(x, w, b, stride, pad)))

    dx, dw, db = tuned.conv2d_backward(dout, x, w, stride, pad)
    assert relative_error(dx, numerical_gradient(loss, x)) < GRAD_TOLERANCE
    assert relative_error(dw, numerical_gradient(loss, w)) < GRAD_TOLERANCE
    assert relative_error(db, numerical_gradient(loss, b)) < GRAD_TOLERANCE


@pytest.mark.parametrize("name", PRESET_CONVS)
def test_tuned_conv2d_backward_matches_compiled_loops_on_preset_shapes(name):
    # Full batches and filter counts: every register block of the fast paths is filled.
    rng = np.random.default_rng(4)
    x, w, b, pad = conv_cases.preset_conv_arrays(name, rng)
    dout = rng.standard_normal(compiled.conv2d_forward(x, w, b, 1, pad).shape, dtype=np.float32)
    expected = compiled.conv2d_backward(dout, x, w, 1, pad)
    # Sums of up to 50,000 float32 products: compare against the largest value, not entry by entry.
    for got, want in zip(tuned.conv2d_backward(dout, x, w, 1, pad), expected):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_tuned_maxpool2d_matches_loop(case, ties, dtype):
    # Ties: the whole gradient to the first maximum; overlapping windows add up.
    x, dout, size, stride = pool_arrays(case, dtype, ties)
    out = tuned.maxpool2d_forward(x, size, stride)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, loop.maxpool2d_forward(x, size, stride))
    dx = tuned.maxpool2d_backward(dout, x, size, stride)
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx, loop.maxpool2d_backward(dout, x, size, stride), **TOLERANCE[dtype])


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_tuned_maxpool2d_gradient_matches_finite_differences(case):
    N, C, H, W, size, stride = case
    # A permutation: no ties, and every gap far larger than the finite-difference step.
    x = np.random.default_rng(0).permutation(N * C * H * W).reshape(N, C, H, W) / 10.0
    dout = np.random.default_rng(1).standard_normal(tuned.maxpool2d_forward(x, size, stride).shape)

    def loss():
        return float(np.sum(dout * tuned.maxpool2d_forward(x, size, stride)))

    dx = tuned.maxpool2d_backward(dout, x, size, stride)
    assert relative_error(dx, numerical_gradient(loss, x)) < GRAD_TOLERANCE


def layer_arrays(case, dtype, ties=False):
    N, C, H, W, F, KH, KW, stride, pad, size, pool_stride = case
    rng = np.random.default_rng(5)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    # Integer weights and inputs with ties: equal maxima inside pooling windows, and zeros.
    if ties:
        x = rng.integers(-1, 2, (N, C, H, W)).astype(dtype)
    w = (rng.integers(-1, 2, (F, C, KH, KW)) if ties else rng.standard_normal((F, C, KH, KW))).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    return x, w, b, stride, pad, size, pool_stride


def unfused_layer(x, w, b, stride, pad, size, pool_stride):
    """conv -> ReLU -> maxpool with loop.py's kernels: (out, z, relu(z))."""
    z = loop.conv2d_forward(x, w, b, stride, pad)
    activated = layers.relu_forward(z)
    return loop.maxpool2d_forward(activated, size, pool_stride), z, activated


@pytest.mark.parametrize("input_gradient", [True, False])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", LAYER_CASES, ids=str)
def test_fused_conv2d_relu_maxpool2d_matches_the_loop_composition(case, dtype, ties, input_gradient):
    x, w, b, stride, pad, size, pool_stride = layer_arrays(case, dtype, ties)
    out_expected, z_expected, activated = unfused_layer(x, w, b, stride, pad, size, pool_stride)
    out, z = fused.conv2d_relu_maxpool2d_forward(x, w, b, stride, pad, size, pool_stride)
    assert_all_close([out, z], [out_expected, z_expected], dtype)

    dout = np.random.default_rng(6).standard_normal(out.shape).astype(dtype)
    dz = layers.relu_backward(loop.maxpool2d_backward(dout, activated, size, pool_stride), z_expected)
    dx, dw, db = fused.conv2d_relu_maxpool2d_backward(dout, x, z, w, stride, pad, size, pool_stride, input_gradient)
    expected = loop.conv2d_backward(dz, x, w, stride, pad)
    assert_all_close([dw, db], expected[1:], dtype)
    if input_gradient:
        assert_all_close([dx], expected[:1], dtype)
    else:
        assert dx is None


@pytest.mark.parametrize("input_gradient", [True, False])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", FAST_LAYER_CASES, ids=str)
def test_winners_backward_matches_the_loop_composition(case, dtype, ties, input_gradient):
    x, w, b, stride, pad, size, pool_stride = layer_arrays(case, dtype, ties)
    out, z, activated = unfused_layer(x, w, b, stride, pad, size, pool_stride)
    dout = np.random.default_rng(6).standard_normal(out.shape).astype(dtype)
    dz = layers.relu_backward(loop.maxpool2d_backward(dout, activated, size, pool_stride), z)
    dx, dw, db = conv2d_relu_maxpool2d_backward_winners(dout, x, z, w, pad, input_gradient)
    expected = loop.conv2d_backward(dz, x, w, stride, pad)
    assert_all_close([dw, db], expected[1:], dtype)
    if input_gradient:
        assert_all_close([dx], expected[:1], dtype)
    else:
        assert dx is None


@pytest.mark.parametrize("spoiled", ["dout", "x", "z", "w"])
@pytest.mark.parametrize("value", [np.inf, np.nan])
def test_winners_backward_declines_arrays_with_inf_or_nan(spoiled, value):
    # A skipped zero term would hide loop.py's 0 * inf = NaN: the fused layer then runs the unfused kernels.
    x, w, b, stride, pad, size, pool_stride = layer_arrays(LAYER_CASES[-1], np.float64)
    out, z, _ = unfused_layer(x, w, b, stride, pad, size, pool_stride)
    arrays = {"dout": np.ones_like(out), "x": x, "z": z, "w": w}
    arrays[spoiled] = arrays[spoiled].copy()
    arrays[spoiled].flat[-1] = value
    assert conv2d_relu_maxpool2d_backward_winners(arrays["dout"], arrays["x"], arrays["z"], arrays["w"], pad, True) is None


@pytest.mark.parametrize("case", LAYER_CASES, ids=str)
def test_fused_layer_gradients_match_finite_differences(case):
    x, w, b, stride, pad, size, pool_stride = layer_arrays(case, np.float64)
    out, z = fused.conv2d_relu_maxpool2d_forward(x, w, b, stride, pad, size, pool_stride)
    dout = np.random.default_rng(7).standard_normal(out.shape)

    def loss():
        return float(np.sum(dout * fused.conv2d_relu_maxpool2d_forward(x, w, b, stride, pad, size, pool_stride)[0]))

    dx, dw, db = fused.conv2d_relu_maxpool2d_backward(dout, x, z, w, stride, pad, size, pool_stride, True)
    assert relative_error(dx, numerical_gradient(loss, x)) < GRAD_TOLERANCE
    assert relative_error(dw, numerical_gradient(loss, w)) < GRAD_TOLERANCE
    assert relative_error(db, numerical_gradient(loss, b)) < GRAD_TOLERANCE


def test_tuned_kernels_do_not_modify_their_inputs():
    x, w, b, dout, stride, pad = conv_arrays(CONV_CASES[3])
    pool_x, pool_dout, size, pool_stride = pool_arrays(POOL_CASES[1])
    layer = layer_arrays(LAYER_CASES[0], np.float64)
    layer_out, z = fused.conv2d_relu_maxpool2d_forward(*layer)
    layer_dout = np.ones_like(layer_out)
    x_, w_, b_, stride_, pad_, size_, pool_stride_ = layer
    calls = [
        (tuned.conv2d_forward, (x, w, b, stride, pad)),
        (tuned.conv2d_backward, (dout, x, w, stride, pad)),
        (tuned.conv2d_backward_weights, (dout, x, w, stride, pad)),
        (tuned.maxpool2d_forward, (pool_x, size, pool_stride)),
        (tuned.maxpool2d_backward, (pool_dout, pool_x, size, pool_stride)),
        (fused.conv2d_relu_maxpool2d_forward, layer),
        (fused.conv2d_relu_maxpool2d_backward, (layer_dout, x_, z, w_, stride_, pad_, size_, pool_stride_, True)),
    ]
    for function, args in calls:
        copies = [np.copy(a) if isinstance(a, np.ndarray) else a for a in args]
        function(*args)
        for given, copy in zip(args, copies):
            np.testing.assert_array_equal(given, copy, err_msg=function.__name__)


@pytest.mark.parametrize("arch", ["seed", "lenet5"])
def test_preset_networks_on_tuned_match_finite_differences(arch):
    # The whole network through the registry, float64: every parameter array on 20 random
    # coordinates (a wrong kernel is wrong almost everywhere).
    params = fcnn.init(arch, seed=2, dtype="float64")
    rng = np.random.default_rng(0)
    x, labels = rng.random((2, 1, 28, 28)), rng.integers(0, 10, 2)
    _, grads, _ = fcnn.loss_and_grads(params, x, labels, arch, "tuned")

    def loss():
        return fcnn.loss_and_grads(params, x, labels, arch, "tuned")[0]

    for layer, arrays in params.items():
        for key, array in arrays.items():
            flat = rng.choice(array.size, min(20, array.size), replace=False)
            indices = [np.unravel_index(i, array.shape) for i in flat]
            error = relative_error(grads[layer][key], numerical_gradient(loss, array, indices))
            assert error < GRAD_TOLERANCE, f"{layer}.{key}: {error}"
