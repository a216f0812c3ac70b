"""Turn a pytest-benchmark JSON file into a markdown table (time per image, speed-ups, share of
peak) and, on request, a bar chart of the same figures.

    python -m pytest bench --benchmark-json bench.json
    python bench/report.py bench.json [--stat median] [--peak-gflops 230] [--chart bench.png]

The peak is measured (bench/roofline.py: an FMA loop, and a triad for the memory bandwidth), in
the benchmark run when the JSON holds bench/test_roofline_bench.py's figures, else now; the
nominal formula (cpu_peak_gflops) is printed beside it. A line names the register tiles the tuned
backend chose on the run's machine (fcnn.kernels.tuned.machine, stored by bench/conftest.py).
"""

import argparse
import json
import os
import sys
from pathlib import Path

STATS = ("min", "median", "mean")
BACKEND_ORDER = ("loop", "numpy", "numba", "torch")
# Assumed, not read from the machine: every x86 core since Haswell issues two FMA per cycle
# (Xeon Gold/Platinum and AMD Zen 3 alike; some Xeon Silver parts have one AVX-512 FMA unit).
FMA_UNITS_PER_CORE = 2
# The chart: its width, the height of its title and axis, and the height each bar adds (inches).
CHART_WIDTH_INCHES, CHART_BASE_INCHES, BAR_INCHES = 10.0, 1.2, 0.2
CHART_DPI = 100


def read_benchmarks(path):
    """The benchmarks of a pytest-benchmark JSON file; ValueError if it is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: expected a pytest-benchmark JSON file (--benchmark-json); {error}") from error
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise ValueError(f"{path}: expected a pytest-benchmark JSON file with a 'benchmarks' list; got keys {list(data)[:5]}")
    if not data["benchmarks"]:
        raise ValueError(f"{path}: holds no benchmarks (was it written with --benchmark-disable?)")
    return data["benchmarks"]


def tuned_kernels_line(path):
    """"Tuned kernels: ..." of the run: the instruction set numba compiled for and the register tiles
    the tuned backend took (bench/conftest.py stores fcnn.kernels.tuned.machine.describe() in the
    JSON's machine_info), or, for a JSON without it, this machine's now, said so."""
    machine_info = json.loads(Path(path).read_text()).get("machine_info", {})
    if "fcnn_tuned_kernels" in machine_info:
        return f"Tuned kernels in this run: {machine_info['fcnn_tuned_kernels']}."
    from fcnn.kernels.tuned import machine

    return f"Tuned kernels on this machine now (the JSON does not say): {machine.describe()}."


def cpu_peak_gflops(cpuinfo="/proc/cpuinfo"):
    """Nominal fp32 peak: cores x FMA units x SIMD lanes x 2 FLOP per FMA x clock (GHz).

    Lanes come from the CPU flags (avx512f: 16, avx2/fma: 8, else 4), the clock from the
    first "cpu MHz" line of /proc/cpuinfo; FMA units per core are assumed (FMA_UNITS_PER_CORE).
    Returns (gflops, how) with `how` a sentence stating every factor.
    """
    text = Path(cpuinfo).read_text()
    fields = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in text.splitlines())
        if value
    )
    flags = set(fields.get("flags", "").split())
    lanes = 16 if "avx512f" in flags else 8 if {"avx2", "fma"} <= flags else 4
    ghz = float(fields["cpu MHz"]) / 1000
    cores = len(os.sched_getaffinity(0))
    gflops = cores * FMA_UNITS_PER_CORE * lanes * 2 * ghz
    how = (
        f"nominal fp32 peak {gflops:.0f} GFLOP/s = {cores} cores x {FMA_UNITS_PER_CORE} FMA units (assumed) "
        f"x {lanes} lanes ({'AVX-512' if lanes == 16 else 'AVX2' if lanes == 8 else 'SSE'}, /proc/cpuinfo flags) "
        f"x 2 FLOP per FMA x {ghz:.3f} GHz (/proc/cpuinfo cpu MHz)"
    )
    return gflops, how


def roofline_in(benchmarks):
    """The figures bench/test_roofline_bench.py stored in the run (peak_gflops, bandwidth_gbs, ...), or None."""
    for benchmark in benchmarks:
        if "peak_gflops" in benchmark["extra_info"]:
            return benchmark["extra_info"]
    return None


def measure_roofline():
    """bench/roofline.py's figures, measured now (imported here: it compiles numba kernels)."""
    from roofline import measure

    return measure()


def peak_of(benchmarks, given=None):
    """(peak GFLOP/s every share of peak is taken against, lines that say where each figure comes from).

    given (--peak-gflops) wins; else the peak measured in the run (roofline_in), else one measured
    now. The lines also give the memory bandwidth and the nominal formula beside the measured peak.
    """
    nominal, nominal_how = cpu_peak_gflops()
    if given:
        return given, [f"Share of peak is against {given:g} GFLOP/s, as given by --peak-gflops; the {nominal_how}."]
    roofline, when = roofline_in(benchmarks), "in this benchmark run"
    if roofline is None:
        roofline, when = measure_roofline(), "now, by bench/roofline.py (the JSON holds no roofline benchmark)"
    peak, threads = roofline["peak_gflops"], roofline["threads"]
    cores = len(os.sched_getaffinity(0))
    nominal_here = nominal * min(threads, cores) / cores  # the nominal figure of the cores the run used
    return peak, [
        f"Share of peak is against the measured fp32 peak, {peak:g} GFLOP/s on {plural(threads, 'thread')} "
        f"({roofline['peak_gflops_per_core']:g} on one; an FMA loop of {roofline['vector_bits']}-bit vectors, "
        f"the width numba generates), measured {when}.",
        f"Memory bandwidth, measured {when}: {roofline['bandwidth_gbs']:g} GB/s (triad over {roofline['triad_mib']} MiB).",
        f"Beside it, the {nominal_how}; for the {plural(min(threads, cores), 'core')} the run used that is "
        f"{nominal_here:.0f}, and the measured peak is {100 * peak / nominal_here:.0f} % of it.",
    ] + disturbed_warning(roofline)


def disturbed_warning(roofline):
    """A line saying the peak was measured on a busy machine, when all threads together did less than one
    core alone (they cannot, undisturbed); else no line."""
    if roofline["threads"] > 1 and roofline["peak_gflops"] < roofline["peak_gflops_per_core"]:
        estimate = roofline["threads"] * roofline["peak_gflops_per_core"]
        return [f"WARNING: the {roofline['threads']} threads together reached less than one alone: other work "
                f"disturbed the measurement, so the shares are too high. {roofline['threads']} x the one-core "
                f"figure is {estimate:g} GFLOP/s (--peak-gflops {estimate:g})."]
    return []


def plural(count, noun):
    """'1 thread', '2 threads'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def rows_of(benchmarks, stat, peak_gflops):
    """One dict per benchmark with its time per image and how it compares within its group."""
    rows = []
    for benchmark in benchmarks:
        extra = benchmark["extra_info"]
        if "images" not in extra:
            continue
        seconds = benchmark["stats"][stat] / extra["images"]
        rows.append(dict(
            group=benchmark["group"], backend=extra["backend"], images=extra["images"],
            seconds_per_image=seconds, flops_per_image=extra["flops_per_image"],
        ))
    for row in rows:
        same_group = {other["backend"]: other for other in rows if other["group"] == row["group"]}
        for reference in ("loop", "torch"):
            other = same_group.get(reference)
            row[f"speedup_over_{reference}"] = other["seconds_per_image"] / row["seconds_per_image"] if other else None
        row["gflops"] = row["flops_per_image"] / row["seconds_per_image"] / 1e9
        row["share_of_peak"] = row["gflops"] / peak_gflops
    order = {name: rank for rank, name in enumerate(BACKEND_ORDER)}
    groups = list(dict.fromkeys(row["group"] for row in rows))
    return sorted(rows, key=lambda row: (groups.index(row["group"]), order.get(row["backend"], len(order))))


def human_time(seconds):
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def ratio(value):
    return "" if value is None else f"{value:.3g}x"


def markdown_table(rows, stat):
    """The rows as one markdown table, the group named once above its backends."""
    lines = [
        f"| group | backend | batch | time / image ({stat}) | images/s | speed-up over loop | vs PyTorch | GFLOP/s | share of peak |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    previous_group = None
    for row in rows:
        group = row["group"] if row["group"] != previous_group else ""
        previous_group = row["group"]
        lines.append(
            f"| {group} | {row['backend']} | {row['images']} | {human_time(row['seconds_per_image'])} "
            f"| {1 / row['seconds_per_image']:,.0f} | {ratio(row['speedup_over_loop'])} "
            f"| {ratio(row['speedup_over_torch'])} | {row['gflops']:.3g} | {100 * row['share_of_peak']:.2g} % |"
        )
    return "\n".join(lines)


def extra_lines(benchmarks):
    """Benchmarks that are not per-image workloads (numba start-up): their extra_info, one line each.

    The roofline is left out: peak_of says its figures in sentences.
    """
    return [
        f"- {benchmark['name']}: " + ", ".join(f"{key} = {value}" for key, value in benchmark["extra_info"].items())
        for benchmark in benchmarks
        if "images" not in benchmark["extra_info"] and "peak_gflops" not in benchmark["extra_info"]
    ]


def speedup_label(ratio):
    """A speed-up as a reader says it: 0.52x, 16.7x, 797x, 2,180x (never 2.18e+03x)."""
    return f"{ratio:,.0f}x" if ratio >= 100 else f"{ratio:.3g}x"


def plot_benchmark(rows, path, dpi=CHART_DPI):
    """Time per image of each group and backend as horizontal bars on a log scale, each bar
    labelled with its speed-up over the loop backend; groups top to bottom in row order.

    rows: list of dicts with "group", "backend", "seconds_per_image" (> 0), "speedup_over_loop"
    (as rows_of makes them). The figure grows by BAR_INCHES per row. Returns the written Path.
    Needs matplotlib (imported here, so the table does not).
    """
    required = {"group", "backend", "seconds_per_image", "speedup_over_loop"}
    for index, row in enumerate(rows):
        missing = required - set(row)
        if missing:
            raise ValueError(f"plot_benchmark: rows[{index}] is missing {sorted(missing)}; got {row!r}")
        if not row["seconds_per_image"] > 0:
            raise ValueError(f"plot_benchmark: rows[{index}] seconds_per_image must be > 0; got {row!r}")
    if not rows:
        raise ValueError("plot_benchmark: rows is empty; nothing to draw")
    from fcnn.plots import require_matplotlib

    require_matplotlib()
    from matplotlib.figure import Figure

    groups = list(dict.fromkeys(row["group"] for row in rows))
    backends = list(dict.fromkeys(row["backend"] for row in rows))
    # Each group has a bar slot per backend, plus one slot of space below it.
    slots_per_group = len(backends) + 1

    figure = Figure(figsize=(CHART_WIDTH_INCHES, CHART_BASE_INCHES + BAR_INCHES * len(rows)), dpi=dpi)
    axes = figure.subplots()
    colors = {backend: f"C{rank}" for rank, backend in enumerate(backends)}
    for backend in backends:
        mine = [row for row in rows if row["backend"] == backend]
        positions = [groups.index(row["group"]) * slots_per_group + backends.index(backend) for row in mine]
        bars = axes.barh(positions, [1e6 * row["seconds_per_image"] for row in mine], height=0.8,
                         color=colors[backend], label=backend)
        axes.bar_label(bars, [" " + speedup_label(row["speedup_over_loop"]) for row in mine], fontsize=7)
    axes.set_yticks([rank * slots_per_group + (len(backends) - 1) / 2 for rank in range(len(groups))], groups,
                    fontsize=8)
    axes.invert_yaxis()  # the first group on top, as in the table
    axes.set_xscale("log")
    axes.margins(x=0.12)  # room for the speed-up written after the longest bar
    axes.set(xlabel="time per image (microseconds, log scale)",
             title="kernel time per image; after each bar: its speed-up over loop")
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=dpi)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("result", help="JSON written by pytest bench --benchmark-json RESULT.json")
    parser.add_argument("--stat", choices=STATS, default="median", help="which timing statistic to report (default median)")
    parser.add_argument("--peak-gflops", type=float, help="fp32 peak to compare against (default: measured, bench/roofline.py)")
    parser.add_argument("--chart", metavar="PATH", help="also draw the time per image as bars (needs matplotlib)")
    args = parser.parse_args(argv)
    try:
        benchmarks = read_benchmarks(args.result)
    except ValueError as error:
        parser.error(str(error))
    peak, peak_lines = peak_of(benchmarks, args.peak_gflops)
    rows = rows_of(benchmarks, args.stat, peak)
    print(markdown_table(rows, args.stat))
    print()
    print("GFLOP/s: useful FLOP per image (2 per multiply-add) / time per image.")
    print("\n".join(peak_lines))
    print("vs PyTorch: PyTorch's time per image / this one's (above 1: faster than PyTorch).")
    print(tuned_kernels_line(args.result))
    print("\n".join(extra_lines(benchmarks)))
    if args.chart:
        try:
            plot_benchmark([row for row in rows if row["speedup_over_loop"] is not None], args.chart)
        except ImportError as error:  # matplotlib is missing: the message names the install command
            print(f"report.py: {error}", file=sys.stderr)
            return 2
        print(f"chart written to {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
