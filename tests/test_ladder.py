"""The ladder's rungs and the tuned conv2d forward give loop.py's numbers, on any shape.

Each rung is held to loop.conv2d_forward and to an independent computation (an einsum over
sliding windows), in float64 and float32, on odd shapes: batch 1, several channels, an odd
number of filters, non-square kernels and inputs, padding, strides other than 1.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from fcnn.kernels import loop
from fcnn.kernels.tuned import conv_forward as tuned
from fcnn.kernels.tuned import machine
from fcnn.ladder import RUNGS, side_branches

from conv_cases import conv_arrays

# (N, C, H, W, F, KH, KW, stride, pad)
CASES = [
    (1, 1, 5, 5, 1, 3, 3, 1, 0),      # batch 1, one of everything
    (2, 3, 7, 6, 5, 2, 3, 1, 2),      # non-square kernel and input, padding, odd F (the filter blocks' tail)
    (3, 2, 6, 9, 2, 1, 4, 1, 0),      # a one-row kernel
    (2, 6, 14, 14, 16, 5, 5, 1, 0),   # LeNet-5's second conv, 2 images
    (2, 2, 8, 8, 3, 5, 5, 2, 1),      # stride 2: the stride-1 rungs hand it to the general loop
    (1, 3, 9, 7, 2, 3, 2, 3, 2),      # stride 3, padding
]
RUNG_IDS = [rung.name for rung in RUNGS]


def einsum_reference(x, w, b, stride, pad):
    """The forward as one einsum over every (KH, KW) window of the padded input, in float64."""
    KH, KW = w.shape[2:]
    xpad = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(xpad, (KH, KW), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwij,fcij->nfhw", windows, w.astype(np.float64)) + b.astype(np.float64)[:, None, None]


def rounding_bound(x, w, b, stride, pad, dtype):
    """Largest difference allowed at each output: K * eps * (|b| + sum of |w * x| over the K taps).

    The classic bound for a sum of K products in floating point, in any order; a wrong or
    missing tap is off by about one term, that sum over K, far more than this.
    """
    taps = w.shape[1] * w.shape[2] * w.shape[3] + 1  # and the bias
    sum_of_magnitudes = einsum_reference(np.abs(x), np.abs(w), np.abs(b), stride, pad)
    return taps * np.finfo(dtype).eps * sum_of_magnitudes


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("rung", RUNGS, ids=RUNG_IDS)
def test_rung_matches_loop_and_einsum(rung, case, dtype):
    conv2d_forward = rung.function
    x, w, b, stride, pad = conv_arrays(case, dtype)
    inputs = [a.copy() for a in (x, w, b)]
    out = conv2d_forward(x, w, b, stride, pad)
    expected = loop.conv2d_forward(x, w, b, stride, pad)
    assert out.dtype == dtype and out.shape == expected.shape
    bound = rounding_bound(x, w, b, stride, pad, dtype)
    assert np.all(np.abs(out - expected) <= bound), f"largest difference from loop: {np.abs(out - expected).max()}"
    assert np.all(np.abs(out - einsum_reference(x, w, b, stride, pad)) <= bound)
    for before, after in zip(inputs, (x, w, b)):
        assert np.array_equal(before, after), "an input was changed"


def test_rounding_bound_catches_a_missing_tap():
    # The tolerance above must be able to fail: drop one tap (w[:, :, 0, 0] = 0 in the kernel's
    # view only) and the output is outside the bound.
    x, w, b, stride, pad = conv_arrays(CASES[3], np.float32)
    missing_tap = w.copy()
    missing_tap[:, :, 0, 0] = 0
    out = tuned.conv2d_forward(x, missing_tap, b, stride, pad)
    difference = np.abs(out - loop.conv2d_forward(x, w, b, stride, pad))
    assert np.any(difference > rounding_bound(x, w, b, stride, pad, np.float32))


def test_last_rung_is_the_tuned_kernel_and_names_are_unique():
    assert RUNGS[-1].function is tuned.conv2d_forward
    assert len(set(RUNG_IDS)) == len(RUNGS)


def test_each_rung_builds_on_the_one_before_and_the_tiles_lead_to_the_tuned_kernel():
    # Rungs 6 to 8 are the tuned kernel's register tiles (more filters per pass each); every
    # rung is built on, so no side branch is left.
    assert RUNGS[0].builds_on is None
    for position, rung in enumerate(RUNGS[1:], start=1):
        assert rung.builds_on == RUNG_IDS[position - 1], rung
    assert RUNG_IDS[5:8] == list(machine.TILES)
    assert side_branches(RUNGS) == []


def test_compiled_rungs_have_cache_names_of_their_own():
    # numba's disk cache files a kernel under its qualified name: two rungs under one name
    # could load each other's code.
    from fcnn.ladder import conv2d_forward as rungs

    factories = (rungs._sizes_constant_kernel, rungs._taps_in_registers_kernel, rungs._four_filters_kernel,
                 tuned.stride1_kernel)
    names = [rungs._wide_rows.py_func.__qualname__] + [factory(1, 4, 4, 1, 3, 3, 0).py_func.__qualname__
                                                         for factory in factories]
    assert len(set(names)) == len(names) == 5


def test_tuned_kernel_is_compiled_once_per_layer_shape_for_any_batch():
    x, w, b, stride, pad = conv_arrays(CASES[1], np.float64)
    for batch in (1, 4):
        images = np.random.default_rng(batch).standard_normal((batch, *x.shape[1:]))
        np.testing.assert_allclose(tuned.conv2d_forward(images, w, b, stride, pad),
                                   loop.conv2d_forward(images, w, b, stride, pad), rtol=1e-12, atol=1e-12)
    N, C, H, W, F, KH, KW, stride, pad = CASES[1]
    assert tuned.stride1_kernel(C, H, W, F, KH, KW, pad) is tuned.stride1_kernel(C, H, W, F, KH, KW, pad)


def test_tuned_kernel_loads_from_the_disk_cache_in_a_second_process(tmp_path):
    # numba#8578: a cached function calling a cached parallel one can crash a later process.
    # The tuned forward is a Python function calling one compiled kernel; this runs it in a
    # process that compiles and caches it, then in one that loads it from the cache.
    script = (
        "import numpy as np\n"
        "from fcnn.kernels import loop\n"
        "from fcnn.kernels.tuned.conv_forward import conv2d_forward\n"
        "x = np.arange(2 * 3 * 6 * 6, dtype=np.float32).reshape(2, 3, 6, 6) % 7\n"
        "w = np.ones((4, 3, 3, 3), np.float32); b = np.zeros(4, np.float32)\n"
        "assert np.array_equal(conv2d_forward(x, w, b, 1, 1), loop.conv2d_forward(x, w, b, 1, 1))\n"
    )
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    for attempt in ("compiles and caches the kernel", "loads it from the cache"):
        result = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True)
        assert result.returncode == 0, f"the process that {attempt} failed ({result.returncode}): {result.stderr}"
    assert list(tmp_path.rglob("*tuned_conv2d_forward_stride1*.nbi")), "the tuned kernel left no cache index"
