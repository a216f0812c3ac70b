"""The fused backward ladder's side branch, rung 6 (fcnn.ladder.fused_backward.routed_dense_dw), gives loop.py's numbers.

dw and db of conv2d (stride 1) -> ReLU -> 2x2 max-pool of stride 2, without dx, held to loop.py's
max-pool, ReLU and conv backward in a row (in float64, within the rounding bound of a sum in any
order), in float32 and float64: one channel with and without padding, filters not a multiple of
8 and more than 16, a rim of z no window covers, batch 1, images split among more chunks than
one, ties in the windows (the first maximum takes the gradient), and inf or NaN (refused, for the
unfused kernels to give loop.py's numbers). The rung routes the seed's conv and hands larger
patches and dx to rung 5.
"""

import numpy as np
import pytest

from fcnn import layers
from fcnn.kernels import loop
from fcnn.ladder import fused_backward
from fcnn.ladder.fused_backward import _routed_dense_kernel, routed_dense_dw

# (N, C, H, W, F, KH, KW, pad, chunks)
CASES = [
    (1, 1, 6, 6, 1, 3, 3, 0, 1),      # batch 1, one filter
    (2, 1, 9, 8, 5, 3, 3, 0, 1),      # F = 5, not a multiple of 8; a 7 x 6 z: a rim row no window covers
    (3, 1, 10, 9, 20, 3, 3, 1, 2),    # F = 20 (more than 16), padding, 3 images in 2 chunks
    (2, 1, 28, 28, 8, 3, 3, 0, 2),    # the seed's conv, 2 images
    (2, 1, 11, 11, 6, 5, 5, 2, 1),    # LeNet-5's first conv's kernel and padding (not dispatched here, still right)
    (2, 3, 7, 9, 4, 2, 3, 1, 1),      # several channels, a non-square kernel
]


def layer_arrays(case, dtype, ties):
    """dout, x, z of `case` in `dtype`; with ties, integer inputs and weights: equal maxima in the windows, and zeros."""
    N, C, H, W, F, KH, KW, pad, _ = case
    rng = np.random.default_rng(11)
    if ties:
        x = rng.integers(-1, 2, (N, C, H, W)).astype(dtype)
        w = rng.integers(-1, 2, (F, C, KH, KW)).astype(dtype)
    else:
        x = rng.standard_normal((N, C, H, W)).astype(dtype)
        w = rng.standard_normal((F, C, KH, KW)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    z = loop.conv2d_forward(x, w, b, 1, pad)
    dout = rng.standard_normal(loop.maxpool2d_forward(layers.relu_forward(z), 2, 2).shape).astype(dtype)
    return dout, x, z, w


def expected_gradients(dout, x, z, w, pad):
    """loop.py's dw, db of the layer in float64, and the rounding bound of each (N*H'*W' terms a sum)."""
    dz = layers.relu_backward(loop.maxpool2d_backward(dout, layers.relu_forward(z), 2, 2), z)
    wide = [a.astype(np.float64) for a in (dz, x, w)]
    _, dw, db = loop.conv2d_backward(*wide, 1, pad)
    _, dw_size, db_size = loop.conv2d_backward(*(np.abs(a) for a in wide), 1, pad)
    N, _, H_out, W_out = dz.shape
    terms = N * H_out * W_out * np.finfo(dout.dtype).eps
    return (dw, db), (terms * dw_size, terms * db_size)


def assert_within(name, got, expected, bound, dtype):
    assert got.dtype == dtype and got.shape == expected.shape, f"{name}: {got.dtype} {got.shape}"
    difference = np.abs(got - expected)
    assert np.all(difference <= bound), f"{name}: largest difference from loop {difference.max()}"


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_routed_dense_kernel_matches_the_loop_composition(case, dtype, ties):
    N, C, H, W, F, KH, KW, pad, chunks = case
    dout, x, z, w = layer_arrays(case, dtype, ties)
    inputs = [a.copy() for a in (dout, x, z)]
    dw, db, non_finite = _routed_dense_kernel(C, H, W, F, KH, KW, pad)(dout, z, x, chunks)
    assert non_finite == 0
    (want_dw, want_db), (dw_bound, db_bound) = expected_gradients(dout, x, z, w, pad)
    assert_within("dw", dw, want_dw, dw_bound, dtype)
    assert_within("db", db, want_db, db_bound, dtype)
    for before, after in zip(inputs, (dout, x, z)):
        assert np.array_equal(before, after), "an input was changed"


def test_the_bound_catches_a_gradient_routed_to_the_last_of_tied_maxima():
    # Ties in every window: the first maximum takes dout. Routing it to the last one must fail the bound.
    case = CASES[3]
    dout, x, z, w = layer_arrays(case, np.float64, ties=True)
    (want_dw, _), (dw_bound, _) = expected_gradients(dout, x, z, w, case[7])
    flipped = z[:, :, ::-1, ::-1].copy()  # the last maximum of each window in row-major order is now the first
    flipped_dout = dout[:, :, ::-1, ::-1].copy()
    dz = layers.relu_backward(loop.maxpool2d_backward(flipped_dout, layers.relu_forward(flipped), 2, 2), flipped)
    _, wrong_dw, _ = loop.conv2d_backward(dz[:, :, ::-1, ::-1].copy(), x, w, 1, case[7])
    assert np.any(np.abs(wrong_dw - want_dw) > dw_bound)


@pytest.mark.parametrize("spoiled", ["dout", "x", "z"])
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_routed_gradients_refuse_inf_and_nan_and_the_layer_gives_loops_numbers(spoiled, value):
    case = CASES[2]
    pad = case[7]
    dout, x, z, w = layer_arrays(case, np.float64, ties=False)
    arrays = {"dout": dout, "x": x, "z": z}
    arrays[spoiled] = arrays[spoiled].copy()
    arrays[spoiled].flat[arrays[spoiled].size // 2] = value
    dout, x, z = arrays["dout"], arrays["x"], arrays["z"]
    assert fused_backward.routed_gradients(dout, x, z, w.shape, pad) is None
    _, dw, db = routed_dense_dw(dout, x, z, w, 1, pad, 2, None, False)
    dz = layers.relu_backward(loop.maxpool2d_backward(dout, layers.relu_forward(z), 2, 2), z)
    _, want_dw, want_db = loop.conv2d_backward(dz, x, w, 1, pad)
    np.testing.assert_array_equal(np.isnan(dw), np.isnan(want_dw))
    np.testing.assert_allclose(dw, want_dw, rtol=1e-12)
    np.testing.assert_allclose(db, want_db, rtol=1e-12)


def test_the_seed_conv_without_dx_is_routed_and_with_dx_or_larger_patches_is_not(monkeypatch):
    calls = []
    routed = fused_backward.routed_gradients
    monkeypatch.setattr(fused_backward, "routed_gradients", lambda *args: calls.append(args) or routed(*args))
    for (C, KH, KW), input_gradient, taken in [((1, 3, 3), False, True), ((1, 3, 3), True, False),
                                              ((1, 5, 5), False, False), ((2, 3, 3), False, False)]:
        dout, x, z, w = layer_arrays((2, C, 12, 12, 8, KH, KW, 1, 1), np.float32, ties=False)
        calls.clear()
        routed_dense_dw(dout, x, z, w, 1, 1, 2, None, input_gradient)
        assert bool(calls) == taken, (C, KH, KW, input_gradient)
