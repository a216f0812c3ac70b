"""NaN and inf through every backend exactly as through loop.py, the reference: per kernel, in the
fused layer, and through whole networks (issue 18: the tuned backend turned NaN into 0). ReLU and
max-pool of a NaN is NaN; a window's first NaN takes its gradient."""

import numpy as np
import pytest

import fcnn
from fcnn import layers
from fcnn.kernels import available_backends, get_backend

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's "invalid value" notes

BACKENDS = [name for name in available_backends() if name != "loop"]
TOLERANCE = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}
loop = get_backend("loop")

CONV_CASES = [(2, 3, 8, 8, 4, 3, 3, 1, 1), (2, 2, 9, 7, 3, 3, 2, 1, 0), (2, 3, 9, 9, 4, 3, 3, 2, 1)]
POOL_CASES = [(2, 3, 8, 8, 2, 2), (2, 2, 7, 7, 3, 2), (1, 2, 5, 6, 2, 1)]
# (N, C, H, W, F, KH, KW, stride, pad, size, pool_stride): the 2x2 fast path, a 3x3 pool, stride 2.
LAYER_CASES = [(2, 3, 8, 8, 4, 3, 3, 1, 1, 2, 2), (2, 1, 9, 9, 2, 3, 3, 1, 1, 3, 2), (2, 2, 10, 10, 3, 3, 3, 2, 1, 2, 2)]


def spoiled(array, fraction, seed):
    """A copy of `array` with about `fraction` of its values NaN, +inf or -inf (half of them NaN)."""
    draw = np.random.default_rng(seed).random(array.shape)
    array = array.copy()
    array[draw < fraction / 2] = np.nan
    array[(draw >= fraction / 2) & (draw < 0.75 * fraction)] = np.inf
    array[(draw >= 0.75 * fraction) & (draw < fraction)] = -np.inf
    return array


def assert_same(got, expected, dtype, message=""):
    """Same NaN and inf positions, the finite values equal within float rounding."""
    for got_array, expected_array in zip(got, expected):
        assert got_array.dtype == dtype
        np.testing.assert_allclose(got_array, expected_array, equal_nan=True, err_msg=message, **TOLERANCE[dtype])


def conv_inputs(case, dtype, spoil):
    N, C, H, W, F, KH, KW, stride, pad = case
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((N, C, H, W)), rng.standard_normal((F, C, KH, KW)), rng.standard_normal(F)
    dout = rng.standard_normal(loop.conv2d_forward(x, w, b, stride, pad).shape)
    if spoil == "all nan x":
        x = np.full_like(x, np.nan)
    else:
        x, w, dout = (spoiled(a, 0.1, seed) if spoil == name else a for seed, (name, a) in
                      enumerate((("x", x), ("w", w), ("dout", dout))))
    return [a.astype(dtype) for a in (x, w, b, dout)] + [stride, pad]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spoil", ["x", "w", "dout", "all nan x"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv2d_propagates_nan_and_inf_as_loop_does(backend, spoil, dtype, case):
    x, w, b, dout, stride, pad = conv_inputs(case, dtype, spoil)
    kernels = get_backend(backend)
    assert_same([kernels.conv2d_forward(x, w, b, stride, pad)], [loop.conv2d_forward(x, w, b, stride, pad)], dtype)
    assert_same(kernels.conv2d_backward(dout, x, w, stride, pad), loop.conv2d_backward(dout, x, w, stride, pad), dtype)
    assert_same(kernels.conv2d_backward_weights(dout, x, w, stride, pad),
                loop.conv2d_backward_weights(dout, x, w, stride, pad), dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_maxpool2d_of_a_nan_is_nan_and_its_first_nan_takes_the_gradient(backend, dtype, case):
    N, C, H, W, size, stride = case
    rng = np.random.default_rng(0)
    x = spoiled(rng.standard_normal((N, C, H, W)), 0.2, 1).astype(dtype)
    out = loop.maxpool2d_forward(x, size, stride)
    assert np.isnan(out).any() and np.isfinite(out).any()
    kernels = get_backend(backend)
    assert_same([kernels.maxpool2d_forward(x, size, stride)], [out], dtype)
    for dout in (rng.standard_normal(out.shape), spoiled(rng.standard_normal(out.shape), 0.2, 2)):
        dout = dout.astype(dtype)
        assert_same([kernels.maxpool2d_backward(dout, x, size, stride)], [loop.maxpool2d_backward(dout, x, size, stride)],
                    dtype)


def test_the_reference_maxpool2d_holds_nan_wherever_it_sits_in_the_window():
    for position in range(4):
        window = np.arange(4.0)
        window[position] = np.nan
        x = window.reshape(1, 1, 2, 2)
        assert np.isnan(loop.maxpool2d_forward(x, 2)).all(), position
        dx = loop.maxpool2d_backward(np.ones((1, 1, 1, 1)), x, 2)
        assert dx.ravel().tolist() == [float(i == position) for i in range(4)], position


@pytest.mark.skipif("tuned" not in BACKENDS, reason="numba is not installed")
@pytest.mark.parametrize("spoil", ["x", "all nan x", "w", "dout", "dout and negative z"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", LAYER_CASES, ids=str)
def test_fused_conv2d_relu_maxpool2d_propagates_nan_and_inf_as_the_loop_composition(spoil, dtype, case):
    N, C, H, W, F, KH, KW, stride, pad, size, pool_stride = case
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((N, C, H, W)), rng.standard_normal((F, C, KH, KW)), rng.standard_normal(F)
    if spoil == "dout and negative z":
        b = b - 10.0  # most windows all negative: relu ties at 0, and the first of them takes dout * 0
    x = np.full_like(x, np.nan) if spoil == "all nan x" else spoiled(x, 0.05, 1) if spoil == "x" else x
    w = spoiled(w, 0.1, 2) if spoil == "w" else w
    x, w, b = (a.astype(dtype) for a in (x, w, b))
    z = loop.conv2d_forward(x, w, b, stride, pad)
    activated = layers.relu_forward(z)
    out = loop.maxpool2d_forward(activated, size, pool_stride)
    dout = rng.standard_normal(out.shape)
    dout = (spoiled(dout, 0.2, 3) if spoil.startswith("dout") else dout).astype(dtype)
    dz = layers.relu_backward(loop.maxpool2d_backward(dout, activated, size, pool_stride), z)

    tuned = get_backend("tuned")
    got_out, got_z = tuned.conv2d_relu_maxpool2d_forward(x, w, b, stride, pad, size, pool_stride)
    assert_same([got_out, got_z], [out, z], dtype)
    assert_same(tuned.conv2d_relu_maxpool2d_backward(dout, x, got_z, w, stride, pad, size, pool_stride, True),
                loop.conv2d_backward(dz, x, w, stride, pad), dtype)


def network_case(arch, case):
    params = fcnn.init(arch, seed=0, dtype="float64")
    x = np.random.default_rng(1).random((2, 1, 28, 28))
    if case == "all nan images":
        x[:] = np.nan
    elif case == "one nan pixel":
        x[0, 0, 13, 7] = np.nan
    elif case == "inf pixels":
        x[1, 0, 3:5, 20] = np.inf
    elif case == "nan conv1 weights":
        params = {**params, "conv1": {**params["conv1"], "w": np.full_like(params["conv1"]["w"], np.nan)}}
    return params, x, np.array([3, 7])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("arch, case", [("seed", "all nan images"), ("seed", "one nan pixel"), ("seed", "inf pixels"),
                                        ("seed", "nan conv1 weights"), ("lenet5", "all nan images"),
                                        ("lenet5", "nan conv1 weights")])
def test_networks_give_loop_s_nan_loss_and_gradients(backend, arch, case):
    params, x, labels = network_case(arch, case)
    expected_loss, expected_grads, expected_logits = fcnn.loss_and_grads(params, x, labels, arch, backend="loop")
    assert np.isnan(expected_loss)
    loss, grads, logits = fcnn.loss_and_grads(params, x, labels, arch, backend=backend)
    assert np.isnan(loss)
    assert_same([logits], [expected_logits], np.float64, "logits")
    for layer in expected_grads:
        for key in expected_grads[layer]:
            assert_same([grads[layer][key]], [expected_grads[layer][key]], np.float64, f"{layer} {key}")
