"""Tests of fcnn.plots: every picture of a small real run is a PNG of the size asked for, the
metrics file round-trips, the confusion counts match a hand count, and a missing matplotlib
gives the install command."""

import json
import runpy
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fcnn
from fcnn import plots
from fcnn.data import load_mnist, scale

REPO = Path(__file__).resolve().parents[1]
DPI = 40  # small pictures draw fast; 40 times every figure size in inches is a whole number


def png_size(path):
    """(width, height) in pixels from a PNG's IHDR chunk, which the format puts first."""
    header = Path(path).read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


def expected_size(kind):
    width, height = plots.FIGURE_INCHES[kind]
    return round(width * DPI), round(height * DPI)


@pytest.fixture(scope="module")
def run():
    """The seed net after two short epochs of SGD on 512 real MNIST digits, and 300 test digits."""
    x_train, y_train, x_test, y_test = load_mnist()
    x, labels = scale(x_train[:512]), y_train[:512]
    params = fcnn.init("seed", seed=0)
    metrics = []
    for epoch in (1, 2):
        step_losses = []
        for start in range(0, len(x), 32):
            loss, grads, _ = fcnn.loss_and_grads(params, x[start:start + 32], labels[start:start + 32], "seed")
            params = fcnn.sgd_step(params, grads, lr=0.1)
            step_losses.append(loss)
        test_x = scale(x_test[:300])
        metrics.append({
            "epoch": epoch, "lr": 0.1, "train_loss": float(np.mean(step_losses)),
            "train_accuracy": float(np.mean(fcnn.predict(params, x, "seed") == labels)),
            "test_accuracy": float(np.mean(fcnn.predict(params, test_x, "seed") == y_test[:300])),
            "seconds": 1.0, "images_per_second": 512.0, "step_losses": step_losses,
        })
    return {"params": params, "arch": "seed", "metrics": metrics, "x_test": x_test[:300], "y_test": y_test[:300]}


def test_require_matplotlib_returns_pyplot_drawing_to_files_with_agg():
    pytest.importorskip("matplotlib")
    code = "import fcnn.plots; print(fcnn.plots.require_matplotlib().get_backend())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip().lower() == "agg"


def test_require_matplotlib_without_matplotlib_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # None in sys.modules makes import fail
    with pytest.raises(ImportError) as caught:
        plots.require_matplotlib()
    assert isinstance(caught.value, plots.MatplotlibMissingError)
    assert 'pip install -e ".[plot]"' in str(caught.value)
    assert "pip install matplotlib" in str(caught.value)


def test_plot_run_script_exits_2_with_the_hint_without_matplotlib(tmp_path):
    code = (
        "import runpy, sys; sys.modules['matplotlib'] = None; "
        f"sys.argv = ['plot_run.py', {str(tmp_path / 'run.npz')!r}]; "
        "runpy.run_path('scripts/plot_run.py', run_name='__main__')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert 'pip install -e ".[plot]"' in result.stderr


def plot_run_main():
    return runpy.run_path(str(REPO / "scripts" / "plot_run.py"))["main"]


@pytest.fixture
def saved_run(run, tmp_path):
    """The run saved as a checkpoint (metrics inside it, no metrics file beside it), and a small
    .npz of its 300 test digits for --data."""
    from fcnn.checkpoint import save_checkpoint

    checkpoint = tmp_path / "run.npz"
    save_checkpoint(checkpoint, arch=run["arch"], params=run["params"], velocity=fcnn.zeros_like(run["params"]),
                    epoch=len(run["metrics"]), rng_state=np.random.default_rng(0).bit_generator.state,
                    metrics=run["metrics"])
    data = tmp_path / "digits.npz"
    np.savez(data, x_train=run["x_test"], y_train=run["y_test"], x_test=run["x_test"], y_test=run["y_test"])
    return checkpoint, data


def test_plot_run_script_draws_the_four_pictures_of_a_checkpoint(saved_run, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    checkpoint, data = saved_run
    assert plot_run_main()([str(checkpoint), "--data", str(data), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out.split()
    assert [Path(line).name for line in printed] == ["curves.png", "filters.png", "confusion.png", "mistakes.png"]
    assert all(Path(line).stat().st_size > 0 for line in printed)


def test_plot_run_script_exits_1_naming_the_bad_metrics_line(saved_run, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    checkpoint, data = saved_run
    metrics = tmp_path / "bad.metrics.jsonl"
    metrics.write_text('{"epoch": 1}\n')
    assert plot_run_main()([str(checkpoint), "--data", str(data), "--metrics", str(metrics)]) == 1
    assert f"{metrics}, line 1: missing keys" in capsys.readouterr().err


def test_plot_curves_writes_png_of_requested_size(run, tmp_path):
    pytest.importorskip("matplotlib")
    path = plots.plot_curves(run["metrics"], tmp_path / "curves.png", dpi=DPI)
    assert png_size(path) == expected_size("curves")


def test_plot_curves_refuses_empty_metrics(tmp_path):
    with pytest.raises(ValueError, match="metrics is empty"):
        plots.plot_curves([], tmp_path / "curves.png")


def test_plot_filters_writes_png_of_requested_size(run, tmp_path):
    pytest.importorskip("matplotlib")
    path = plots.plot_filters(run["params"], run["arch"], run["x_test"][0], tmp_path / "f.png", dpi=DPI)
    assert png_size(path) == expected_size("filters")


def test_plot_filters_draws_lenet5_whose_first_conv_pads(tmp_path):
    pytest.importorskip("matplotlib")
    params = fcnn.init("lenet5", seed=1)
    image = np.zeros((28, 28), np.uint8)
    path = plots.plot_filters(params, "lenet5", image, tmp_path / "f.png", dpi=DPI)
    assert png_size(path) == expected_size("filters")


def test_plot_filters_stacks_a_second_row_for_sixteen_filters(tmp_path):
    pytest.importorskip("matplotlib")
    image = np.zeros((28, 28), np.uint8)
    sizes = {}
    for filters in (8, 16):
        arch = [{"type": "conv", "filters": filters, "kernel": 3}, {"type": "flatten"}, {"type": "dense", "units": 10}]
        path = plots.plot_filters(fcnn.init(arch), arch, image, tmp_path / f"{filters}.png", dpi=DPI)
        sizes[filters] = png_size(path)
    assert sizes[8] == expected_size("filters")
    assert sizes[16] == (sizes[8][0], 2 * sizes[8][1])


def test_plot_confusion_writes_png_of_requested_size(run, tmp_path):
    pytest.importorskip("matplotlib")
    y_pred = fcnn.predict(run["params"], scale(run["x_test"]), run["arch"])
    path = plots.plot_confusion(run["y_test"], y_pred, tmp_path / "c.png", dpi=DPI)
    assert png_size(path) == expected_size("confusion")


def test_plot_mistakes_writes_png_of_requested_size_with_and_without_mistakes(run, tmp_path):
    pytest.importorskip("matplotlib")
    images, y_true = run["x_test"], run["y_test"]
    probs = plots.class_probabilities(run["params"], scale(images), run["arch"])
    y_pred = probs.argmax(axis=1)
    assert (y_pred != y_true).any(), "two short epochs should leave some test digits wrong"
    for name, predicted in (("some.png", y_pred), ("none.png", y_true)):
        path = plots.plot_mistakes(images, y_true, predicted, probs, tmp_path / name, dpi=DPI)
        assert png_size(path) == expected_size("mistakes")


def test_write_run_plots_writes_the_four_pictures(run, tmp_path):
    pytest.importorskip("matplotlib")
    written = plots.write_run_plots(tmp_path / "pictures", run["params"], run["arch"], run["metrics"],
                                    run["x_test"], run["y_test"], dpi=DPI)
    assert [path.name for path in written] == ["curves.png", "filters.png", "confusion.png", "mistakes.png"]
    for path in written:
        assert png_size(path) == expected_size(path.stem)


def benchmark_rows(groups):
    return [
        {"group": group, "backend": backend, "seconds_per_image": seconds, "speedup_over_loop": speedup}
        for group in groups
        for backend, seconds, speedup in (("loop", 2e-3, 1.0), ("numpy", 4e-5, 50.0), ("numba", 1e-5, 200.0))
    ]


def test_write_run_plots_without_metrics_skips_only_the_curves(run, tmp_path):
    pytest.importorskip("matplotlib")
    written = plots.write_run_plots(tmp_path, run["params"], run["arch"], None, run["x_test"][:50],
                                    run["y_test"][:50], dpi=DPI)
    assert [path.name for path in written] == ["filters.png", "confusion.png", "mistakes.png"]
    assert not (tmp_path / "curves.png").exists()


def test_plot_benchmark_writes_png_growing_by_bar_inches_per_row(tmp_path):
    pytest.importorskip("matplotlib")
    one = png_size(plots.plot_benchmark(benchmark_rows(["conv2d forward"]), tmp_path / "one.png", dpi=DPI))
    two = png_size(plots.plot_benchmark(benchmark_rows(["conv2d forward", "maxpool2d backward"]),
                                        tmp_path / "two.png", dpi=DPI))
    assert one[0] == two[0] == expected_size("benchmark")[0]
    assert two[1] - one[1] == round(3 * plots.BAR_INCHES * DPI)


@pytest.mark.parametrize("ratio, label", [(0.5234, "0.523x"), (16.71, "16.7x"), (797.2, "797x"), (2184.9, "2,185x")])
def test_speedup_label_writes_plain_numbers(ratio, label):
    assert plots.speedup_label(ratio) == label


def test_plot_benchmark_names_the_row_missing_a_key(tmp_path):
    rows = [{"group": "conv", "backend": "loop", "seconds_per_image": 1e-3}]
    with pytest.raises(ValueError, match=r"rows\[0\].*speedup_over_loop"):
        plots.plot_benchmark(rows, tmp_path / "bench.png")


def test_class_probabilities_are_a_softmax_whose_argmax_is_predict(run):
    x = scale(run["x_test"])
    probs = plots.class_probabilities(run["params"], x, run["arch"], batch_size=128)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    assert (probs > 0).all()
    np.testing.assert_array_equal(probs.argmax(axis=1), fcnn.predict(run["params"], x, run["arch"]))


def test_metrics_round_trip_through_read_metrics(run, tmp_path):
    path = tmp_path / "run.metrics.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in run["metrics"]) + "\n")
    assert plots.read_metrics(path) == run["metrics"]


@pytest.mark.parametrize("bad_line, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"epoch": 2}', "missing keys"),
])
def test_read_metrics_names_file_and_line_of_a_bad_record(tmp_path, bad_line, message):
    path = tmp_path / "run.metrics.jsonl"
    path.write_text('{"epoch": 1, "train_loss": 0.5}\n' + bad_line + "\n")
    with pytest.raises(ValueError, match=message) as caught:
        plots.read_metrics(path)
    assert str(path) in str(caught.value) and "line 2" in str(caught.value)


def test_confusion_matrix_counts_a_hand_worked_example():
    y_true = [0, 0, 1, 2, 2, 2]
    y_pred = [0, 1, 1, 2, 0, 2]
    # By hand: true 0 -> {0: 1, 1: 1}; true 1 -> {1: 1}; true 2 -> {0: 1, 2: 2}.
    expected = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    np.testing.assert_array_equal(plots.confusion_matrix(y_true, y_pred, classes=3), expected)


def test_confusion_matrix_sums_to_samples_and_diagonal_to_correct():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 10, 500), rng.integers(0, 10, 500)
    counts = plots.confusion_matrix(y_true, y_pred)
    assert counts.sum() == 500
    assert np.trace(counts) == np.sum(y_true == y_pred)


@pytest.mark.parametrize("y_true, y_pred, message", [
    ([0, 10], [0, 1], "y_true must lie in 0..9"),
    ([0, 1], [0, -1], "y_pred must lie in 0..9"),
    ([0.0, 1.0], [0, 1], "y_true must be a 1-D integer array"),
    ([0, 1, 2], [0, 1], "one shape"),
])
def test_confusion_matrix_rejects_bad_labels(y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        plots.confusion_matrix(y_true, y_pred)


def test_exponential_moving_average_follows_its_recurrence():
    np.testing.assert_allclose(plots.exponential_moving_average([4.0, 0.0, 2.0], smoothing=0.5), [4.0, 2.0, 2.0])
    np.testing.assert_allclose(plots.exponential_moving_average([3.0] * 5), [3.0] * 5)
    np.testing.assert_allclose(plots.exponential_moving_average([1.0, 5.0], smoothing=0.0), [1.0, 5.0])
