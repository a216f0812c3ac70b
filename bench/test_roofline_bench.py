"""The machine's roofline, measured in the same run as the other benchmarks (bench/roofline.py).

Not a per-image workload: its figures go into extra_info (peak_gflops, bandwidth_gbs, ...),
where bench/report.py finds them and takes every share of peak against the measured peak.
"""

from roofline import measure, measure_bandwidth, measure_peak

ROOFLINE_GROUP = "roofline: measured fp32 peak and memory bandwidth"


def smoke_test():
    """With --benchmark-disable: the same code on one repeat and a 1 MiB triad, seconds instead of a quarter minute."""
    return {**measure_peak(repeats=1), **measure_bandwidth(array_bytes=2**20, repeats=1)}


def test_roofline(benchmark):
    benchmark.group = ROOFLINE_GROUP
    figures = benchmark.pedantic(smoke_test if benchmark.disabled else measure, rounds=1, iterations=1)
    benchmark.extra_info.update(figures)
    assert figures["peak_gflops"] > 0 and figures["bandwidth_gbs"] > 0
