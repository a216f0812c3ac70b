"""Tests of bench/report.py: the table from a pytest-benchmark JSON file, and the bar chart, whose
bars must be as long as the times say (a blank or mixed-up chart fails)."""

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

REPORT_PATH = Path(__file__).resolve().parents[1] / "bench" / "report.py"
DPI = 40  # small pictures draw fast; 40 times every size in inches here is a whole number of pixels


@pytest.fixture(scope="module")
def report():
    """bench/report.py loaded from its file (bench/ is not a package), whatever pytest's import mode."""
    spec = importlib.util.spec_from_file_location("bench_report", REPORT_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# (backend, seconds per image): loop slowest, numba fastest, as the bars must show.
TIMES = (("loop", 2e-3), ("numpy", 4e-5), ("numba", 1e-5))


def benchmark_rows(groups):
    return [
        {"group": group, "backend": backend, "seconds_per_image": seconds, "speedup_over_loop": 2e-3 / seconds}
        for group in groups
        for backend, seconds in TIMES
    ]


# What bench/test_roofline_bench.py stores: a peak of 50 GFLOP/s, half what the numba rows reach.
ROOFLINE = {"peak_gflops": 50.0, "peak_gflops_per_core": 26.0, "threads": 2, "vector_bits": 256,
            "bandwidth_gbs": 14.4, "triad_mib": 768}


def benchmark_json(path, groups, roofline=None):
    """A pytest-benchmark JSON file holding TIMES for each group, 4 images per round (and the roofline, if given)."""
    benchmarks = [
        {"group": group, "name": f"test_{backend}", "stats": {stat: 4 * seconds for stat in ("min", "median", "mean")},
         "extra_info": {"backend": backend, "images": 4, "flops_per_image": 1e6}}
        for group in groups
        for backend, seconds in TIMES
    ]
    if roofline:
        benchmarks.append({"group": "roofline", "name": "test_roofline", "stats": {stat: 1.0 for stat in ("min", "median", "mean")},
                           "extra_info": roofline})
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    return path


def table_rows(output):
    """The table's rows of a report's output, by backend."""
    return {line.split("|")[2].strip(): line for line in output.splitlines() if line.startswith("| ") and "---" not in line}


def read_png(path):
    """The PNG's pixels as RGB floats in [0, 1], (height, width, 3)."""
    matplotlib_image = pytest.importorskip("matplotlib.image")
    return matplotlib_image.imread(path)[:, :, :3]


def pixels_of_colour(pixels, colour_name):
    """Boolean (height, width): where the picture shows the named matplotlib colour."""
    colors = pytest.importorskip("matplotlib.colors")
    return np.abs(pixels - np.array(colors.to_rgb(colour_name))).max(axis=2) < 0.05


def test_main_prints_the_table_with_per_image_times_and_speedups(report, tmp_path, capsys):
    path = benchmark_json(tmp_path / "bench.json", ["conv2d forward"])
    assert report.main([str(path), "--stat", "min", "--peak-gflops", "100"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert "| conv2d forward | loop | 4 | 2 ms | 500 | 1x |" in rows["loop"]
    assert "| numba | 4 | 10 us | 100,000 | 200x |" in rows["numba"]
    # 1e6 FLOP per image in 10 us is 100 GFLOP/s: all of the given peak.
    assert rows["numba"].endswith("| 100 | 1e+02 % |")


def test_share_of_peak_is_against_the_peak_measured_in_the_run(report, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(report, "measure_roofline", lambda: pytest.fail("the run's own figures were not used"))
    path = benchmark_json(tmp_path / "bench.json", ["conv2d forward"], roofline=ROOFLINE)
    assert report.main([str(path), "--stat", "min"]) == 0
    output = capsys.readouterr().out
    # 100 GFLOP/s against the measured 50: twice the peak (a row beyond it is a wrong FLOP count or peak).
    assert table_rows(output)["numba"].endswith("| 100 | 2e+02 % |")
    assert "measured fp32 peak, 50 GFLOP/s on 2 threads (26 on one; an FMA loop of 256-bit vectors" in output
    assert "Memory bandwidth, measured in this benchmark run: 14.4 GB/s (triad over 768 MiB)" in output
    nominal, _ = report.cpu_peak_gflops()
    used = min(2, len(os.sched_getaffinity(0)))
    nominal_here = nominal * used / len(os.sched_getaffinity(0))
    assert f"for the {used} core{'s' if used > 1 else ''} the run used that is {nominal_here:.0f}" in output
    assert f"the measured peak is {100 * 50 / nominal_here:.0f} % of it" in output
    assert "test_roofline" not in output  # said in sentences, not as a raw extra_info line


def test_a_peak_measured_on_a_busy_machine_is_flagged(report, tmp_path, capsys):
    # Two threads below one core's figure: the threads were paused by other work while measured.
    disturbed = {**ROOFLINE, "peak_gflops": 20.0, "peak_gflops_per_core": 26.0}
    path = benchmark_json(tmp_path / "bench.json", ["conv2d forward"], roofline=disturbed)
    assert report.main([str(path), "--stat", "min"]) == 0
    assert "WARNING: the 2 threads together reached less than one alone" in capsys.readouterr().out
    assert report.disturbed_warning(ROOFLINE) == []


def test_without_a_roofline_in_the_run_the_report_measures_one_and_says_so(report, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(report, "measure_roofline", lambda: {**ROOFLINE, "peak_gflops": 400.0})
    path = benchmark_json(tmp_path / "bench.json", ["conv2d forward"])
    assert report.main([str(path), "--stat", "min"]) == 0
    output = capsys.readouterr().out
    assert table_rows(output)["numba"].endswith("| 100 | 25 % |")
    assert "measured now, by bench/roofline.py (the JSON holds no roofline benchmark)" in output


def test_a_given_peak_wins_over_the_measured_one(report, tmp_path, capsys):
    path = benchmark_json(tmp_path / "bench.json", ["conv2d forward"], roofline=ROOFLINE)
    assert report.main([str(path), "--stat", "min", "--peak-gflops", "400"]) == 0
    output = capsys.readouterr().out
    assert table_rows(output)["numba"].endswith("| 100 | 25 % |")
    assert "as given by --peak-gflops" in output


def test_main_refuses_a_file_that_is_not_a_benchmark_json(report, tmp_path, capsys):
    path = tmp_path / "bench.json"
    path.write_text('{"machine_info": {}}')
    with pytest.raises(SystemExit) as exited:
        report.main([str(path)])
    assert exited.value.code == 2
    assert f"{path}: expected a pytest-benchmark JSON file" in capsys.readouterr().err


def test_chart_bars_are_as_long_as_the_times_say(report, tmp_path):
    pytest.importorskip("matplotlib")
    path = report.plot_benchmark(benchmark_rows(["conv2d forward"]), tmp_path / "chart.png", dpi=DPI)
    pixels = read_png(path)
    # One bar per backend in colours C0, C1, C2; on a log axis a bar's area grows with log(time).
    areas = {backend: pixels_of_colour(pixels, f"C{rank}").sum() for rank, (backend, _) in enumerate(TIMES)}
    assert areas["loop"] > areas["numpy"] > areas["numba"] > 0, areas


def test_chart_grows_by_bar_inches_per_row(report, tmp_path):
    pytest.importorskip("matplotlib")
    one = read_png(report.plot_benchmark(benchmark_rows(["conv2d forward"]), tmp_path / "one.png", dpi=DPI))
    two = read_png(report.plot_benchmark(benchmark_rows(["conv2d forward", "maxpool2d backward"]),
                                         tmp_path / "two.png", dpi=DPI))
    assert one.shape[1] == two.shape[1] == round(report.CHART_WIDTH_INCHES * DPI)
    assert two.shape[0] - one.shape[0] == round(3 * report.BAR_INCHES * DPI)


def test_main_draws_the_chart_of_the_rows_it_prints(report, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = benchmark_json(tmp_path / "bench.json", ["conv2d forward", "maxpool2d forward"])
    chart = tmp_path / "charts" / "bench.png"
    assert report.main([str(path), "--peak-gflops", "100", "--chart", str(chart)]) == 0
    assert f"chart written to {chart}" in capsys.readouterr().out
    height = round((report.CHART_BASE_INCHES + 6 * report.BAR_INCHES) * report.CHART_DPI)
    assert read_png(chart).shape[:2] == (height, round(report.CHART_WIDTH_INCHES * report.CHART_DPI))


@pytest.mark.parametrize("ratio, label", [(0.5234, "0.523x"), (16.71, "16.7x"), (797.2, "797x"), (2184.9, "2,185x")])
def test_speedup_label_writes_plain_numbers(report, ratio, label):
    assert report.speedup_label(ratio) == label


def test_plot_benchmark_names_the_row_missing_a_key(report, tmp_path):
    rows = [{"group": "conv", "backend": "loop", "seconds_per_image": 1e-3}]
    with pytest.raises(ValueError, match=r"rows\[0\].*speedup_over_loop"):
        report.plot_benchmark(rows, tmp_path / "bench.png")


def test_the_report_names_the_tuned_kernels_the_run_chose(report, tmp_path, capsys):
    # bench/conftest.py stores fcnn.kernels.tuned.machine.describe() in the JSON's machine_info.
    path = benchmark_json(tmp_path / "bench.json", ["conv2d forward"])
    data = json.loads(path.read_text())
    data["machine_info"] = {"fcnn_tuned_kernels": "AVX2 (znver3): conv forward tile four filters (KH*KW <= 9), else two filters"}
    path.write_text(json.dumps(data))
    assert report.main([str(path), "--peak-gflops", "100"]) == 0
    assert "Tuned kernels in this run: AVX2 (znver3): conv forward tile four filters" in capsys.readouterr().out


def test_without_it_in_the_json_the_report_names_this_machine_s_and_says_so(report, tmp_path, capsys):
    from fcnn.kernels.tuned import machine

    path = benchmark_json(tmp_path / "bench.json", ["conv2d forward"])
    assert report.main([str(path), "--peak-gflops", "100"]) == 0
    assert f"Tuned kernels on this machine now (the JSON does not say): {machine.describe()}." in capsys.readouterr().out
