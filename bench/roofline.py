"""The machine's roofline, measured: its real fp32 peak (a compiled FMA loop) and memory bandwidth (a triad).

    python bench/roofline.py          # prints both, and the nominal peak of bench/report.py beside them

The peak is what numba's code reaches, at the vector width numba generates (read from the
loop's own assembly): on AVX-512 Xeons LLVM prefers 256-bit vectors, so half the nominal lanes.
bench/test_roofline_bench.py stores these figures in the benchmark JSON, and bench/report.py
takes every share of peak against them.
"""

import re
import time

import numba
import numpy as np

# float32 running sums of the FMA loop: 16 vectors of 8 lanes (or 8 of 16), enough independent
# chains to keep two FMA units busy through a 4-cycle latency, few enough to stay in 32 vector
# registers (256 sums spilled to the stack and measured a third less).
ACCUMULATORS = 128
# One call of the FMA loop: 2 * ACCUMULATORS * FMA_ITERATIONS = 128 MFLOP, some 2 ms at 60 GFLOP/s.
FMA_ITERATIONS = 500_000
# Each of the triad's three float32 arrays: 256 MiB, so that the 768 MiB it streams are not
# served from a cache (this machine reports a 480 MiB L3, shared with other tenants).
TRIAD_BYTES = 256 * 2**20
# The machine is shared: the best of several calls is the one least disturbed by other work.
REPEATS = 20
TRIAD_REPEATS = 5


@numba.njit(fastmath=True, error_model="numpy")
def fma_chains(iterations, start, scale, shift):
    """start (ACCUMULATORS,) float32 after `iterations` steps of s <- s*scale + shift, every sum its own chain.

    2 * ACCUMULATORS FLOP per iteration; the inner loop's trip count is a constant, so LLVM
    unrolls it into vector FMAs on registers that live across the whole outer loop.
    """
    sums = start.copy()
    for _ in range(iterations):
        for k in range(ACCUMULATORS):
            sums[k] = sums[k] * scale + shift
    return sums


@numba.njit(parallel=True, fastmath=True, error_model="numpy")
def fma_chains_on_threads(threads, iterations, start, scale, shift):
    """fma_chains on each of `threads` threads at once -> (threads, ACCUMULATORS)."""
    out = np.empty((threads, start.size), dtype=start.dtype)
    for thread in numba.prange(threads):
        out[thread] = fma_chains(iterations, start, scale, shift)
    return out


@numba.njit(parallel=True, fastmath=True, error_model="numpy")
def triad(a, b, c, scalar):
    """a[i] = b[i] + scalar * c[i] (STREAM's triad), in parallel: 3 arrays of traffic, 2 FLOP per element."""
    for i in numba.prange(a.size):
        a[i] = b[i] + scalar * c[i]


def fma_vector_bits(asm):
    """The widest vector FMA in assembly text: 512 (zmm), 256 (ymm), 128 (xmm) or 0 (scalar only)."""
    widths = {"zmm": 512, "ymm": 256, "xmm": 128}
    found = re.findall(r"vfmadd\w*ps\s+[^\n]*?%([xyz]mm)", asm)
    return max((widths[register] for register in found), default=0)


def best_seconds(function, args, repeats):
    """The shortest of `repeats` timed calls of function(*args), after one untimed call (numba compiles there)."""
    function(*args)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function(*args)
        best = min(best, time.perf_counter() - start)
    return best


def fma_inputs():
    """(start, scale, shift): sums that stay finite and normal through any number of steps (s -> 1)."""
    start = np.linspace(0.5, 1.5, ACCUMULATORS).astype(np.float32)
    return start, np.float32(0.999), np.float32(0.001)


def measure_peak(threads=None, repeats=REPEATS):
    """The fp32 FMA peak numba's code reaches: {"peak_gflops" (all threads), "peak_gflops_per_core",
    "threads", "vector_bits"}. threads: numba's thread count unless given."""
    threads = threads or numba.get_num_threads()
    start, scale, shift = fma_inputs()
    flop = 2 * ACCUMULATORS * FMA_ITERATIONS
    one = best_seconds(fma_chains, (FMA_ITERATIONS, start, scale, shift), repeats)
    every = best_seconds(fma_chains_on_threads, (threads, FMA_ITERATIONS, start, scale, shift), repeats)
    # The assembly of the very specialisation timed: (int, C-contiguous float32 array, float32, float32).
    signature = (numba.int64, numba.float32[::1], numba.float32, numba.float32)
    fma_chains.compile(signature)
    asm = fma_chains.inspect_asm(signature)
    return dict(
        peak_gflops=round(threads * flop / every / 1e9, 1), peak_gflops_per_core=round(flop / one / 1e9, 1),
        threads=threads, vector_bits=fma_vector_bits(asm),
    )


def measure_bandwidth(array_bytes=TRIAD_BYTES, repeats=TRIAD_REPEATS):
    """Memory bandwidth of the triad on numba's threads: {"bandwidth_gbs", "triad_mib"}.

    Counted as STREAM counts it: 3 arrays of bytes per call (the write-allocate read of `a` not included).
    """
    n = array_bytes // 4
    a, b, c = np.zeros(n, np.float32), np.ones(n, np.float32), np.full(n, 2, np.float32)
    seconds = best_seconds(triad, (a, b, c, np.float32(3)), repeats)
    return dict(bandwidth_gbs=round(3 * a.nbytes / seconds / 1e9, 1), triad_mib=3 * a.nbytes // 2**20)


def measure():
    """Both figures, as bench/test_roofline_bench.py stores them and bench/report.py reads them."""
    return {**measure_peak(), **measure_bandwidth()}


if __name__ == "__main__":
    from report import cpu_peak_gflops

    figures = measure()
    print(f"fp32 peak, measured: {figures['peak_gflops']} GFLOP/s on {figures['threads']} threads "
          f"({figures['peak_gflops_per_core']} on one), {figures['vector_bits']}-bit vector FMAs")
    print(f"memory bandwidth, triad over {figures['triad_mib']} MiB: {figures['bandwidth_gbs']} GB/s")
    print(cpu_peak_gflops()[1])
