"""bench/roofline.py computes what it says: the FMA loop's sums, the triad, the vector width read
from assembly, and GFLOP/s from the loop's FLOP count (no timing is asserted)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def roofline():
    """bench/roofline.py loaded from its file (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_roofline", BENCH / "roofline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fma_chains_computes_every_sum_step_by_step(roofline):
    start, scale, shift = roofline.fma_inputs()
    expected = start.copy()
    for _ in range(7):
        expected = expected * scale + shift
    np.testing.assert_allclose(roofline.fma_chains(7, start, scale, shift), expected, rtol=1e-6)
    on_threads = roofline.fma_chains_on_threads(3, 7, start, scale, shift)
    assert on_threads.shape == (3, roofline.ACCUMULATORS)
    np.testing.assert_allclose(on_threads, np.broadcast_to(expected, (3, roofline.ACCUMULATORS)), rtol=1e-6)


def test_fma_sums_stay_finite_and_normal_for_a_whole_timed_call(roofline):
    sums = roofline.fma_chains(roofline.FMA_ITERATIONS, *roofline.fma_inputs())
    assert np.all(np.isfinite(sums)) and np.all(np.abs(sums) > np.finfo(np.float32).tiny)


def test_triad(roofline):
    b, c = np.arange(5, dtype=np.float32), np.full(5, 2, np.float32)
    a = np.zeros(5, np.float32)
    roofline.triad(a, b, c, np.float32(3))
    np.testing.assert_array_equal(a, b + 3 * c)


@pytest.mark.parametrize("asm, bits", [
    ("\tvfmadd213ps\t%ymm0, %ymm2, %ymm30\n\tvfmadd231ss\t%xmm1, %xmm2, %xmm3\n", 256),
    ("\tvfmadd213ps\t(%rax), %zmm2, %zmm30\n", 512),
    ("\tvfmadd231ss\t%xmm1, %xmm2, %xmm3\n", 0),  # scalar FMAs only: no vector width
    ("\tvmulps\t%ymm0, %ymm1, %ymm2\n", 0),
])
def test_fma_vector_bits_reads_the_widest_packed_fma(roofline, asm, bits):
    assert roofline.fma_vector_bits(asm) == bits


def test_measure_peak_counts_two_flop_per_fma(roofline, monkeypatch):
    # Every call "takes" 1 ms: 2 * 128 * 500,000 FLOP per call per thread is 128 GFLOP/s a thread.
    monkeypatch.setattr(roofline, "best_seconds", lambda function, args, repeats: 1e-3)
    figures = roofline.measure_peak(threads=2, repeats=1)
    flop = 2 * roofline.ACCUMULATORS * roofline.FMA_ITERATIONS
    assert figures["peak_gflops_per_core"] == round(flop / 1e-3 / 1e9, 1)
    assert figures["peak_gflops"] == round(2 * flop / 1e-3 / 1e9, 1)
    assert figures["vector_bits"] in (128, 256, 512)
