"""The ladder from a pytest-benchmark JSON file: a table and a chart, time per image and share of peak per rung.

    python -m pytest bench/test_ladder_bench.py bench/test_roofline_bench.py --benchmark-json ladder.json
    python bench/ladder_chart.py ladder.json [--stat min] [--peak-gflops 230] [--only backward] [--chart docs/images/ladder.png]

Reads the groups whose name starts with "ladder:" (bench/test_ladder_bench.py); rungs in ladder
order, PyTorch last. The table's "vs PyTorch" is PyTorch's time / the rung's time.
"""

import argparse
import sys

from report import STATS, human_time, peak_of, ratio, read_benchmarks, rows_of


def ladder_rows(benchmarks, stat, peak_gflops, only=""):
    """bench/report.py's rows for the ladder groups (those whose name holds `only`), each with its rung number (PyTorch last)."""
    ladder = [benchmark for benchmark in benchmarks if benchmark["group"].startswith("ladder:") and only in benchmark["group"]]
    if not ladder:
        raise ValueError(f"no benchmark group starts with 'ladder:' and holds {only!r} (run bench/test_ladder_bench.py)")
    rung_of = {(b["group"], b["extra_info"]["backend"]): b["extra_info"]["rung"] for b in ladder}
    rows = rows_of(ladder, stat, peak_gflops)
    groups = list(dict.fromkeys(row["group"] for row in rows))
    for row in rows:
        row["rung"] = rung_of[row["group"], row["backend"]]
    # Rung 0 is PyTorch: drawn and listed after the last rung.
    return sorted(rows, key=lambda row: (groups.index(row["group"]), row["rung"] or len(rows)))


def rung_label(row, code="`"):
    """'3. wide rows', or PyTorch's call: F.conv2d in the forward groups, autograd in the backward ones."""
    if row["rung"]:
        return f"{row['rung']}. {row['backend']}"
    return f"PyTorch {code}F.conv2d{code}" if " forward " in row["group"] else "PyTorch autograd backward"


def markdown_table(rows, stat, peak_gflops):
    lines = [
        f"| shape | rung | time / image ({stat}) | GFLOP/s | share of {peak_gflops:.0f} GFLOP/s | vs PyTorch |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    previous_group = None
    for row in rows:
        group = row["group"].removeprefix("ladder: ") if row["group"] != previous_group else ""
        previous_group = row["group"]
        name = rung_label(row)
        lines.append(
            f"| {group} | {name} | {human_time(row['seconds_per_image'])} | {row['gflops']:.3g} "
            f"| {100 * row['share_of_peak']:.2g} % | {ratio(row['speedup_over_torch'])} |"
        )
    return "\n".join(lines)


def draw(rows, path, stat, peak_gflops):
    """One row of two panels per shape: time per image (log scale) and share of peak, per rung."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(row["group"] for row in rows))
    figure, axes = plt.subplots(len(groups), 2, figsize=(12, 3.2 * len(groups)), squeeze=False)
    for (time_axis, peak_axis), group in zip(axes, groups):
        members = [row for row in rows if row["group"] == group]
        labels = [rung_label(row, code="") for row in members]
        colours = ["tab:orange" if not row["rung"] else "tab:blue" for row in members]
        positions = range(len(members))
        micros = [row["seconds_per_image"] * 1e6 for row in members]
        time_axis.barh(positions, micros, color=colours)
        time_axis.set_xscale("log")
        time_axis.set_yticks(positions, labels)
        time_axis.invert_yaxis()
        time_axis.set_xlabel(f"us per image ({stat}, log scale)")
        time_axis.set_title(group.removeprefix("ladder: "), loc="left", fontsize=10)
        for position, value in zip(positions, micros):
            time_axis.text(value, position, f" {value:.3g}", va="center", fontsize=8)
        shares = [100 * row["share_of_peak"] for row in members]
        peak_axis.barh(positions, shares, color=colours)
        peak_axis.set_yticks(positions, [])
        peak_axis.invert_yaxis()
        peak_axis.set_xlim(0, 100)
        peak_axis.set_xlabel(f"% of the fp32 peak ({peak_gflops:g} GFLOP/s)")
        for position, row, share in zip(positions, members, shares):
            peak_axis.text(share, position, f" {row['gflops']:.3g} GFLOP/s", va="center", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("result", help="JSON written by pytest bench/test_ladder_bench.py --benchmark-json RESULT.json")
    parser.add_argument("--stat", choices=STATS, default="min", help="which timing statistic to report (default min)")
    parser.add_argument(
        "--peak-gflops", type=float, help="fp32 peak to compare against (default: measured, bench/roofline.py)"
    )
    parser.add_argument("--only", default="", metavar="TEXT", help="only the ladder groups whose name holds TEXT (e.g. backward)")
    parser.add_argument("--chart", metavar="PATH", help="also draw the chart to PATH (needs matplotlib)")
    args = parser.parse_args(argv)
    try:
        benchmarks = read_benchmarks(args.result)
    except ValueError as error:
        parser.error(str(error))
    peak, peak_lines = peak_of(benchmarks, args.peak_gflops)
    try:
        rows = ladder_rows(benchmarks, args.stat, peak, args.only)
    except ValueError as error:
        parser.error(f"{args.result}: {error}")
    print(markdown_table(rows, args.stat, peak))
    print()
    print("GFLOP/s: useful FLOP per image (2 per multiply-add) / time per image.")
    print("\n".join(peak_lines))
    if args.chart:
        draw(rows, args.chart, args.stat, peak)
        print(f"chart written to {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
