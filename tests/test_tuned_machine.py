"""The tuned conv forward's register tiles and the per-machine choice between them.

Every tile is held to loop.py on every machine, whichever one this machine picks (so the AVX2
choice is tested on AVX-512 and the other way round): float32 and float64, odd shapes, padding,
batch 1, the presets' shapes, NaN and inf. The choice itself is a pure function of the
instruction set and the layer shape; forcing it (FCNN_CONV_FORWARD_TILE) changes no number, and a
kernel loaded from numba's disk cache gives what a fresh one gives.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from fcnn.kernels import get_backend
from fcnn.kernels.tuned import conv_forward, machine

from conv_cases import PRESET_CONVS, conv_arrays, preset_conv_arrays

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's "invalid value" notes in loop.py

TOLERANCE = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}
# (N, C, H, W, F, KH, KW, stride, pad), all stride 1 (other strides never reach a tile): batch 1; odd F
# (the wide-row tiles' last block repeats a filter); F = 8 and 16 (full vectors of lanes) and
# 12 (a half vector left over); fewer output columns than a lanes block, and more (the last block
# overlaps); non-square kernels and inputs; 1x1; padding wider than the kernel.
CASES = [
    (1, 1, 5, 5, 1, 3, 3, 1, 0),
    (2, 3, 7, 6, 5, 3, 2, 1, 1),
    (1, 2, 6, 9, 3, 2, 4, 1, 2),
    (2, 6, 14, 14, 16, 5, 5, 1, 0),
    (2, 2, 9, 23, 8, 3, 3, 1, 1),
    (3, 3, 8, 13, 12, 5, 4, 1, 2),
    (2, 1, 4, 4, 2, 1, 1, 1, 0),
    (1, 4, 3, 11, 16, 3, 1, 1, 3),
]

loop = get_backend("loop")


def spoiled(array, seed):
    """A copy of `array` with about a tenth of its values NaN, +inf or -inf."""
    draw = np.random.default_rng(seed).random(array.shape)
    array = array.copy()
    array[draw < 0.05] = np.nan
    array[(draw >= 0.05) & (draw < 0.075)] = np.inf
    array[(draw >= 0.075) & (draw < 0.1)] = -np.inf
    return array


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("tile", machine.TILES)
def test_every_tile_matches_loop(tile, case, dtype):
    x, w, b, _, pad = conv_arrays(case, dtype)
    inputs = [a.copy() for a in (x, w, b)]
    out = conv_forward.conv2d_forward_in_tile(tile, x, w, b, pad)
    expected = loop.conv2d_forward(x, w, b, 1, pad)
    assert out.dtype == dtype and out.shape == expected.shape
    np.testing.assert_allclose(out, expected, **TOLERANCE[dtype])
    for before, after in zip(inputs, (x, w, b)):
        np.testing.assert_array_equal(before, after, err_msg="an input was changed")


@pytest.mark.parametrize("spoil", ["x", "w", "all nan x"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [CASES[1], CASES[4], CASES[5]], ids=str)
@pytest.mark.parametrize("tile", machine.TILES)
def test_every_tile_propagates_nan_and_inf_as_loop_does(tile, case, dtype, spoil):
    x, w, b, _, pad = conv_arrays(case, dtype)
    if spoil == "all nan x":
        x = np.full_like(x, np.nan)
    elif spoil == "x":
        x = spoiled(x, 1)
    else:
        w = spoiled(w, 2)
    out = conv_forward.conv2d_forward_in_tile(tile, x, w, b, pad)
    # Same NaN and inf positions (assert_allclose checks them), the finite values within rounding.
    np.testing.assert_allclose(out, loop.conv2d_forward(x, w, b, 1, pad), equal_nan=True, **TOLERANCE[dtype])


@pytest.mark.parametrize("name", PRESET_CONVS)
def test_every_tile_gives_the_same_numbers_on_the_presets_shapes(name):
    # Full batches, full blocks of filters and columns; float32 sums of up to 150 products, in
    # each tile's order: within rounding of the largest value, against float64 loop.
    x, w, b, pad = preset_conv_arrays(name, seed=3)
    expected = loop.conv2d_forward(x[:2].astype(np.float64), w.astype(np.float64), b.astype(np.float64), 1, pad)
    outs = [conv_forward.conv2d_forward_in_tile(tile, x, w, b, pad) for tile in machine.TILES]
    for tile, out in zip(machine.TILES, outs):
        np.testing.assert_allclose(out[:2], expected, rtol=0, atol=1e-5 * np.abs(expected).max(), err_msg=tile)
        np.testing.assert_allclose(out, outs[0], rtol=0, atol=1e-5 * np.abs(expected).max(), err_msg=tile)


@pytest.mark.parametrize("tile", machine.TILES)
def test_forcing_a_tile_runs_it_through_the_registry_with_the_same_numbers(tile, monkeypatch):
    x, w, b, _, pad = conv_arrays(CASES[3], np.float32)
    monkeypatch.setenv(machine.TILE_VARIABLE, tile)
    F, C, KH, KW = w.shape
    assert machine.conv_forward_tile(C, F, KH, KW) == tile
    assert tile in machine.describe()
    out = get_backend("tuned").conv2d_forward(x, w, b, 1, pad)
    np.testing.assert_array_equal(out, conv_forward.conv2d_forward_in_tile(tile, x, w, b, pad))
    np.testing.assert_allclose(out, loop.conv2d_forward(x, w, b, 1, pad), **TOLERANCE[np.float32])


def test_an_unknown_tile_is_a_value_error_naming_the_choices(monkeypatch):
    monkeypatch.setenv(machine.TILE_VARIABLE, "eight filters")
    with pytest.raises(ValueError, match="FCNN_CONV_FORWARD_TILE must be one of two filters, four filters"):
        machine.conv_forward_tile(6, 16, 5, 5)
    x, w, b, _, pad = conv_arrays(CASES[0], np.float32)
    with pytest.raises(ValueError, match="tile must be one of two filters, four filters, filters in lanes"):
        conv_forward.conv2d_forward_in_tile("eight filters", x, w, b, pad)


@pytest.mark.parametrize("instructions, C, F, KH, KW, tile", [
    ("AVX-512", 6, 16, 5, 5, machine.FILTERS_IN_LANES),   # LeNet-5 conv2: 150 taps, 16 filters in two vectors
    ("AVX2", 6, 16, 5, 5, machine.TWO_FILTERS),           # 20 vector sums do not fit in AVX2's 16 registers
    ("AVX-512", 1, 8, 3, 3, machine.FOUR_FILTERS),        # the seed conv: 9 taps, too few for lanes
    ("AVX2", 1, 8, 3, 3, machine.FOUR_FILTERS),
    ("AVX-512", 1, 6, 5, 5, machine.TWO_FILTERS),         # LeNet-5 conv1: 6 filters fill no vector
    ("SSE", 6, 16, 5, 5, machine.TWO_FILTERS),
])
def test_the_tile_follows_the_instruction_set_and_the_layer(instructions, C, F, KH, KW, tile, monkeypatch):
    monkeypatch.delenv(machine.TILE_VARIABLE, raising=False)
    assert machine.conv_forward_tile(C, F, KH, KW, instructions) == tile


@pytest.mark.parametrize("features, expected", [
    ("+avx,+avx2,+fma,+avx512f,+avx512vl", "AVX-512"),
    ("+avx,+avx2,+fma,-avx512f", "AVX2"),
    ("+sse4.2,-avx2,+fma", "SSE"),
    ("", "SSE"),
])
def test_instruction_set_reads_llvm_feature_strings(features, expected):
    assert machine.instruction_set(features) == expected


def test_the_choice_follows_numba_cpu_name_and_features():
    # numba compiles for NUMBA_CPU_NAME / NUMBA_CPU_FEATURES when set (a portable cache): the
    # choice must be for that target, not for the host.
    script = "from fcnn.kernels.tuned import machine; print(machine.describe())"
    environment = {**os.environ, "NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "+avx,+avx2,+fma,-avx512f"}
    environment.pop(machine.TILE_VARIABLE, None)
    result = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("AVX2 (haswell): conv forward tile four filters")
    assert machine.FILTERS_IN_LANES not in result.stdout


@pytest.mark.parametrize("tile", machine.TILES)
def test_a_tile_loaded_from_the_disk_cache_gives_a_fresh_compile_s_numbers(tile, tmp_path):
    # One process compiles the forced tile and caches it, a second loads it: both print the
    # same bytes, and the cache holds an index under the tile's own name.
    script = (
        "import numpy as np, sys\n"
        "from fcnn.kernels.tuned.conv_forward import conv2d_forward\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.standard_normal((2, 6, 14, 14), dtype=np.float32)\n"
        "w = rng.standard_normal((16, 6, 5, 5), dtype=np.float32); b = rng.standard_normal(16, dtype=np.float32)\n"
        "sys.stdout.write(conv2d_forward(x, w, b, 1, 0).tobytes().hex())\n"
    )
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), machine.TILE_VARIABLE: tile}
    outputs = []
    for attempt in ("compiles and caches the kernel", "loads it from the cache"):
        result = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True)
        assert result.returncode == 0, f"the process that {attempt} failed: {result.stderr}"
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1]
    name = conv_forward.KERNEL_FACTORIES[tile](6, 14, 14, 16, 5, 5, 0).py_func.__qualname__
    assert list(tmp_path.rglob(f"*{name}*.nbi")), f"no cache index for {name}"
