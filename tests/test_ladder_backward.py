"""The backward ladders' rungs give loop.py's numbers, on any shape.

Every rung of WEIGHT_RUNGS is held to loop.conv2d_backward_weights, every rung of INPUT_RUNGS
to loop.conv2d_backward, and every rung of FUSED_RUNGS to loop.py's max-pool, ReLU and conv
backward in a row, in float64 and float32, on odd shapes: batch 1, several channels, an odd
number of filters and channels, non-square kernels and inputs, padding, strides other than 1
(and for the fused rungs, pools other than 2x2 of stride 2, patch rows short and long, one-channel
3x3 kernels with filters not a multiple of 8 and more than 16).
"""

import functools

import numpy as np
import pytest

from fcnn.kernels import loop
from fcnn.kernels.tuned import conv_backward as tuned
from fcnn import layers
from fcnn.kernels.tuned import fused
from fcnn.ladder import FUSED_RUNGS, INPUT_RUNGS, WEIGHT_RUNGS, side_branches

# (N, C, H, W, F, KH, KW, stride, pad)
CASES = [
    (1, 1, 5, 5, 1, 3, 3, 1, 0),      # batch 1, one of everything
    (2, 3, 7, 6, 5, 2, 3, 1, 2),      # non-square kernel and input, padding, odd F and C (the blocks' tails)
    (3, 2, 6, 9, 2, 1, 4, 1, 0),      # a one-row kernel, 3 images on 2 threads
    (2, 6, 14, 14, 16, 5, 5, 1, 0),   # LeNet-5's second conv, 2 images
    (2, 2, 8, 8, 3, 5, 5, 2, 1),      # stride 2: the stride-1 rungs hand it to the general loop
    (1, 3, 9, 7, 2, 3, 2, 3, 2),      # stride 3, padding
]


def conv_arrays(case, dtype, seed=0):
    """dout, x, w of `case` in `dtype`, and its stride and pad."""
    N, C, H, W, F, KH, KW, stride, pad = case
    rng = np.random.default_rng(seed)
    H_out, W_out = loop.output_size(H, KH, stride, pad), loop.output_size(W, KW, stride, pad)
    dout = rng.standard_normal((N, F, H_out, W_out)).astype(dtype)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, KH, KW)).astype(dtype)
    return dout, x, w, stride, pad


@functools.cache
def reference(case, dtype):
    """loop.conv2d_backward in float64 of the case's arrays, and the rounding bound of each of dx, dw, db.

    Bound: K * eps(dtype) * (sum of |terms|), K the number of terms of that sum (dw, db:
    N*H'*W'; dx: F*KH*KW), the classic bound for a sum in any order. A missing or wrong term is
    off by about that term, far more than this.
    """
    dout, x, w, stride, pad = conv_arrays(case, dtype)
    wide = [a.astype(np.float64) for a in (dout, x, w)]
    expected = loop.conv2d_backward(*wide, stride, pad)
    magnitudes = loop.conv2d_backward(*(np.abs(a) for a in wide), stride, pad)
    N, F, H_out, W_out = dout.shape
    _, _, KH, KW = w.shape
    eps = np.finfo(dtype).eps
    terms = (F * KH * KW, N * H_out * W_out, N * H_out * W_out)
    return expected, [count * eps * magnitude for count, magnitude in zip(terms, magnitudes)]


def assert_within(name, got, expected, bound, dtype):
    assert got.dtype == dtype and got.shape == expected.shape, f"{name}: {got.dtype} {got.shape}"
    difference = np.abs(got - expected)
    assert np.all(difference <= bound), f"{name}: largest difference from loop {difference.max()}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("rung", WEIGHT_RUNGS, ids=[rung.name for rung in WEIGHT_RUNGS])
def test_weight_rung_matches_loop(rung, case, dtype):
    dout, x, w, stride, pad = conv_arrays(case, dtype)
    inputs = [a.copy() for a in (dout, x, w)]
    (_, dw, db), (_, dw_bound, db_bound) = reference(case, dtype)
    got_dw, got_db = rung.function(dout, x, w, stride, pad)
    assert_within("dw", got_dw, dw, dw_bound, dtype)
    assert_within("db", got_db, db, db_bound, dtype)
    for before, after in zip(inputs, (dout, x, w)):
        assert np.array_equal(before, after), "an input was changed"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("rung", INPUT_RUNGS, ids=[rung.name for rung in INPUT_RUNGS])
def test_input_rung_matches_loop(rung, case, dtype):
    dout, x, w, stride, pad = conv_arrays(case, dtype)
    inputs = [a.copy() for a in (dout, x, w)]
    expected, bounds = reference(case, dtype)
    for name, got, want, bound in zip(("dx", "dw", "db"), rung.function(dout, x, w, stride, pad), expected, bounds):
        assert_within(name, got, want, bound, dtype)
    for before, after in zip(inputs, (dout, x, w)):
        assert np.array_equal(before, after), "an input was changed"


def test_rounding_bounds_catch_a_missing_term():
    # The tolerances above must be able to fail: leave out one image's dout (dw) or one filter (dx).
    case = CASES[3]
    dout, x, w, stride, pad = conv_arrays(case, np.float32)
    (dx, dw, _), (dx_bound, dw_bound, _) = reference(case, np.float32)
    one_image_less = dout.copy()
    one_image_less[1] = 0
    got_dw, _ = tuned.conv2d_backward_weights(one_image_less, x, w, stride, pad)
    assert np.any(np.abs(got_dw - dw) > dw_bound)
    one_filter_less = w.copy()
    one_filter_less[0] = 0
    got_dx, _, _ = tuned.conv2d_backward(dout, x, one_filter_less, stride, pad)
    assert np.any(np.abs(got_dx - dx) > dx_bound)


def test_the_tops_are_the_tuned_kernels_and_each_rung_builds_on_an_earlier_one():
    assert WEIGHT_RUNGS[-1].function is tuned.conv2d_backward_weights
    assert INPUT_RUNGS[-1].function is tuned.conv2d_backward
    assert FUSED_RUNGS[-1].function is fused.conv2d_relu_maxpool2d_backward
    for rungs in (WEIGHT_RUNGS, INPUT_RUNGS, FUSED_RUNGS):
        names = [rung.name for rung in rungs]
        assert len(set(names)) == len(names) and rungs[0].builds_on is None
        for position, rung in enumerate(rungs[1:], start=1):
            assert rung.builds_on in names[:position], rung
    assert side_branches(WEIGHT_RUNGS) == ["sizes constant"]
    assert side_branches(INPUT_RUNGS) == []
    assert side_branches(FUSED_RUNGS) == ["routed dense dw, small patches"]


def test_compiled_rungs_have_cache_names_of_their_own():
    # numba's disk cache files a kernel under its qualified name: two rungs under one name could
    # load each other's code, across the forward and backward ladders too.
    from fcnn.ladder import conv2d_backward as backward
    from fcnn.ladder import conv2d_forward as forward

    compiled = [forward._wide_rows, backward._weights_wide_rows, backward._weights_images_in_parallel,
                backward._input_wide_rows]
    factories = [forward._sizes_constant_kernel, forward._taps_in_registers_kernel, forward._four_filters_kernel,
                 backward._weights_sizes_constant_kernel, backward._input_sizes_constant_kernel,
                 backward._input_gathered_kernel]
    names = [kernel.py_func.__qualname__ for kernel in compiled]
    names += [factory(1, 4, 4, 1, 3, 3, 0).py_func.__qualname__ for factory in factories]
    assert len(set(names)) == len(names) == 10


# (N, C, H, W, F, KH, KW, stride, pad, size, pool_stride) of a conv -> ReLU -> max-pool layer.
FUSED_CASES = [
    (1, 1, 6, 6, 1, 3, 3, 1, 0, 2, None),      # batch 1, one of everything: a short row (the wide rows)
    (2, 1, 9, 8, 5, 3, 3, 1, 0, 2, 2),         # one channel, 3x3, F = 5: rung 6's routed dense kernel (dw alone), a rim row
    (3, 1, 10, 9, 20, 3, 3, 1, 1, 2, None),    # the same with padding, F = 20 (more than 16), 3 images on 2 threads
    (2, 3, 9, 8, 5, 2, 3, 1, 2, 2, 2),         # odd F and C, padding, a 9 x 10 conv output (a rim no window covers)
    (3, 4, 9, 9, 3, 5, 4, 1, 1, 2, None),      # a patch row of 16 values: the winners' kernel, 3 images on 2 threads
    (2, 6, 14, 14, 16, 5, 5, 1, 0, 2, 2),      # LeNet-5's second conv, 2 images
    (3, 16, 14, 14, 5, 5, 5, 1, 2, 2, 2),      # bn's second conv, 5 filters: patches of 400, dw from four winners a pass
    (2, 2, 10, 10, 3, 3, 3, 2, 1, 2, None),    # stride 2: every rung hands it on to the unfused kernels
    (2, 2, 9, 9, 2, 3, 3, 1, 1, 3, 2),         # an overlapping 3x3 pool of stride 2: the same
]


def fused_arrays(case, dtype):
    """dout, x, z, w of `case` in `dtype` (z = loop.py's conv forward, with ties at 0 from integer inputs), and its settings."""
    N, C, H, W, F, KH, KW, stride, pad, size, pool_stride = case
    rng = np.random.default_rng(3)
    x = rng.integers(-2, 3, (N, C, H, W)).astype(dtype)  # integers: ties inside the pool windows, and dead ReLUs
    w = rng.standard_normal((F, C, KH, KW)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    z = loop.conv2d_forward(x, w, b, stride, pad)
    out = loop.maxpool2d_forward(layers.relu_forward(z), size, pool_stride)
    dout = rng.standard_normal(out.shape).astype(dtype)
    return dout, x, z, w, (stride, pad, size, pool_stride)


@pytest.mark.parametrize("input_gradient", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", FUSED_CASES, ids=str)
@pytest.mark.parametrize("rung", FUSED_RUNGS, ids=[rung.name for rung in FUSED_RUNGS])
def test_fused_rung_matches_the_loop_composition(rung, case, dtype, input_gradient):
    dout, x, z, w, (stride, pad, size, pool_stride) = fused_arrays(case, dtype)
    inputs = [a.copy() for a in (dout, x, z, w)]
    # dz is exact in any dtype (a routing and a mask); the sums over it are held to float64 within
    # the rounding bound of reference() above.
    dz = layers.relu_backward(loop.maxpool2d_backward(dout, layers.relu_forward(z), size, pool_stride), z)
    wide = [a.astype(np.float64) for a in (dz, x, w)]
    expected = loop.conv2d_backward(*wide, stride, pad)
    magnitudes = loop.conv2d_backward(*(np.abs(a) for a in wide), stride, pad)
    N, F, H_out, W_out = dz.shape
    eps = np.finfo(dtype).eps
    terms = (F * w.shape[2] * w.shape[3], N * H_out * W_out, N * H_out * W_out)
    got = rung.function(dout, x, z, w, stride, pad, size, pool_stride, input_gradient)
    for name, got_array, want, count, magnitude in zip(("dx", "dw", "db"), got, expected, terms, magnitudes):
        if name == "dx" and not input_gradient:
            assert got_array is None
            continue
        assert_within(name, got_array, want, count * eps * magnitude, dtype)
    for before, after in zip(inputs, (dout, x, z, w)):
        assert np.array_equal(before, after), "an input was changed"
