"""Tests of fcnn.plots and scripts/plot_run.py: every picture is a PNG of the size asked for that
shows what its data says (read back pixel by pixel, so a blank or wrong picture fails), the
metrics file round-trips, the confusion counts match a hand count, and a missing matplotlib gives
the install command."""

import json
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fcnn
from fcnn import plots
from fcnn.data import scale

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "plot_run.py"
DPI = 40  # small pictures draw fast; 40 times every figure size in inches is a whole number


# --- reading a picture back ---------------------------------------------------------------------


def read_png(path):
    """The PNG's pixels as RGB floats in [0, 1], (height, width, 3)."""
    image = pytest.importorskip("matplotlib.image")
    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return image.imread(path)[:, :, :3]


def expected_size(kind, dpi=DPI):
    """(height, width) in pixels of a picture of FIGURE_INCHES[kind] at dpi."""
    width, height = plots.FIGURE_INCHES[kind]
    return round(height * dpi), round(width * dpi)


def assert_drawn(pixels):
    """Not blank: at least 1 % of the pixels are not the background, in more than one colour."""
    background = np.abs(pixels - pixels[0, 0]).max(axis=2) < 0.02
    assert (~background).mean() > 0.01, "the picture is blank"
    assert len(np.unique(pixels[~background].round(2), axis=0)) > 1, "the picture is one flat colour"


def pixels_of_colour(pixels, colour_name, tolerance=0.05):
    """Boolean (height, width): where the picture shows the named matplotlib colour."""
    colors = pytest.importorskip("matplotlib.colors")
    return np.abs(pixels - np.array(colors.to_rgb(colour_name))).max(axis=2) < tolerance


def ends_of_line(mask):
    """Mean row (0 = top) of the mask's pixels in its first and in its last few columns."""
    rows, columns = np.nonzero(mask)
    assert len(columns), "the line is not drawn"
    first = rows[columns <= columns.min() + 2].mean()
    last = rows[columns >= columns.max() - 2].mean()
    return first, last


def blobs(mask, min_area=1):
    """Connected regions of the mask with at least min_area pixels -> list of (row slice, column slice, area)."""
    ndimage = pytest.importorskip("scipy.ndimage")
    labels, _ = ndimage.label(mask)
    found = []
    for number, (rows, columns) in enumerate(ndimage.find_objects(labels), start=1):
        area = int((labels[rows, columns] == number).sum())
        if area >= min_area:
            found.append((rows, columns, area))
    return found


def write_blank_png(path, kind, dpi=DPI):
    """A white PNG of the size a picture of `kind` has: what a broken drawing could leave behind."""
    image = pytest.importorskip("matplotlib.image")
    image.imsave(path, np.ones((*expected_size(kind, dpi), 3)))
    return path


# --- the pictures, drawn from data whose picture is known ---------------------------------------


def falling_metrics(epochs=3, steps=40):
    """Loss falling from 2 to 0.02 over the run; train and test accuracy rising each epoch."""
    losses = 2.0 * np.geomspace(1, 0.01, epochs * steps)
    return [
        {"epoch": epoch, "train_loss": float(losses[(epoch - 1) * steps:epoch * steps].mean()),
         "step_losses": [float(v) for v in losses[(epoch - 1) * steps:epoch * steps]],
         "train_accuracy": 0.70 + 0.1 * epoch, "test_accuracy": 0.55 + 0.13 * epoch}
        for epoch in range(1, epochs + 1)
    ]


CURVES_DPI = 100  # at 40 dpi a line is thinner than a pixel and never shows its own colour


def check_curves(path):
    """Left panel: the moving average of the loss falls; right panel: both accuracies rise."""
    pixels = read_png(path)
    assert pixels.shape[:2] == expected_size("curves", CURVES_DPI)
    assert_drawn(pixels)
    middle = pixels.shape[1] // 2
    loss_panel, accuracy_panel = pixels[:, :middle], pixels[:, middle:]
    start, end = ends_of_line(pixels_of_colour(loss_panel, "tab:blue"))
    assert start < end, "the moving average of a falling loss must end lower than it starts"
    assert pixels_of_colour(loss_panel, "tab:orange").any(), "the epoch means are missing"
    for colour in ("tab:blue", "tab:green"):  # train, test
        first, last = ends_of_line(pixels_of_colour(accuracy_panel, colour))
        assert first > last, f"the {colour} accuracy rose, so its line must end higher than it starts"


def test_plot_curves_draws_the_falling_loss_and_rising_accuracies(tmp_path):
    pytest.importorskip("matplotlib")
    check_curves(plots.plot_curves(falling_metrics(), tmp_path / "curves.png", dpi=CURVES_DPI))


def test_curves_check_fails_on_a_blank_and_on_a_wrong_picture(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(AssertionError, match="blank"):
        check_curves(write_blank_png(tmp_path / "blank.png", "curves", CURVES_DPI))
    rising_loss = [{**record, "step_losses": record["step_losses"][::-1]} for record in falling_metrics()[::-1]]
    for epoch, record in enumerate(rising_loss, start=1):
        record["epoch"] = epoch
    with pytest.raises(AssertionError, match="falling loss"):
        check_curves(plots.plot_curves(rising_loss, tmp_path / "wrong.png", dpi=CURVES_DPI))


def test_plot_curves_refuses_empty_metrics(tmp_path):
    with pytest.raises(ValueError, match="metrics is empty"):
        plots.plot_curves([], tmp_path / "curves.png")


def single_conv_arch(filters):
    return [{"type": "conv", "filters": filters, "kernel": 3}, {"type": "flatten"}, {"type": "dense", "units": 10}]


def signed_filters(filters=8, seed=0):
    """A conv layer whose kernels are +-1 in a random sign pattern and whose biases are +-1."""
    rng = np.random.default_rng(seed)
    params = fcnn.init(single_conv_arch(filters))
    params["conv1"]["w"] = rng.choice([-1.0, 1.0], size=(filters, 1, 3, 3)).astype(np.float32)
    params["conv1"]["b"] = rng.choice([-1.0, 1.0], size=filters).astype(np.float32)
    return params


def check_filters(path, params):
    """Kernel f's panel shows w[f, 0]'s signs cell by cell (red +, blue -); on a blank digit, map f
    is b[f] everywhere, so its panel is all red or all blue. Panels come eight to a row, a row of
    kernels above a row of their maps."""
    pixels = read_png(path)
    assert_drawn(pixels)
    w, b = params["conv1"]["w"], params["conv1"]["b"]
    red, blue = pixels[:, :, 0] - pixels[:, :, 2] > 0.2, pixels[:, :, 2] - pixels[:, :, 0] > 0.2
    panels = blobs(red | blue, min_area=50)
    assert len(panels) == 2 * len(w), f"expected {2 * len(w)} coloured panels (kernels and maps); found {len(panels)}"
    panels.sort(key=lambda panel: panel[0].start)
    per_row = min(len(w), 8)
    rows_of_panels = [sorted(panels[k:k + per_row], key=lambda panel: panel[1].start)
                      for k in range(0, len(panels), per_row)]
    kernels = [panel for row in rows_of_panels[0::2] for panel in row]
    maps = [panel for row in rows_of_panels[1::2] for panel in row]
    for f, (rows, columns, _) in enumerate(kernels):
        cell_rows = np.linspace(rows.start, rows.stop, 7)[1::2].astype(int)  # the centres of 3 cells
        cell_columns = np.linspace(columns.start, columns.stop, 7)[1::2].astype(int)
        shown = np.where(red[np.ix_(cell_rows, cell_columns)], 1.0, -1.0)
        np.testing.assert_array_equal(shown, w[f, 0], err_msg=f"kernel {f}: red cells are positive weights")
    for f, (rows, columns, _) in enumerate(maps):
        assert (red if b[f] > 0 else blue)[rows, columns].mean() > 0.9, f"map {f} must show the sign of b[{f}]"


def test_plot_filters_shows_each_kernels_signs_and_each_maps_bias(tmp_path):
    pytest.importorskip("matplotlib")
    params = signed_filters()
    path = plots.plot_filters(params, single_conv_arch(8), np.zeros((28, 28), np.uint8), tmp_path / "f.png", dpi=DPI)
    assert read_png(path).shape[:2] == expected_size("filters")
    check_filters(path, params)


def test_filters_check_fails_on_a_blank_and_on_a_wrong_picture(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(AssertionError, match="blank"):
        check_filters(write_blank_png(tmp_path / "blank.png", "filters"), signed_filters())
    params, transposed = signed_filters(), signed_filters()
    transposed["conv1"]["w"] = params["conv1"]["w"].swapaxes(2, 3).copy()
    path = plots.plot_filters(transposed, single_conv_arch(8), np.zeros((28, 28), np.uint8),
                              tmp_path / "wrong.png", dpi=DPI)
    with pytest.raises(AssertionError, match="red cells are positive weights"):
        check_filters(path, params)


def test_plot_filters_stacks_a_second_row_for_sixteen_filters(tmp_path):
    pytest.importorskip("matplotlib")
    params = signed_filters(16)
    path = plots.plot_filters(params, single_conv_arch(16), np.zeros((28, 28), np.uint8), tmp_path / "16.png",
                              dpi=DPI)
    height, width = expected_size("filters")
    assert read_png(path).shape[:2] == (2 * height, width)
    check_filters(path, params)


def test_plot_filters_draws_lenet5_whose_first_conv_pads(run, tmp_path):
    pytest.importorskip("matplotlib")
    path = plots.plot_filters(fcnn.init("lenet5", seed=1), "lenet5", run["x_test"][0], tmp_path / "f.png", dpi=DPI)
    pixels = read_png(path)
    assert pixels.shape[:2] == expected_size("filters")
    assert_drawn(pixels)


def confused_labels():
    """(y_true, y_pred): every class 50 times, all predicted right except twenty 3s taken for 5s."""
    y_true = np.repeat(np.arange(10), 50)
    y_pred = y_true.copy()
    y_pred[150:170] = 5  # samples 150..199 are the 3s
    return y_true, y_pred


def cell_darkness(path, classes=10):
    """The confusion picture's cells: median darkness (0 white, 1 black) of each, (classes, classes).

    The matrix is the region drawn in blue tints; the median ignores the count written in a cell.
    """
    pixels = read_png(path)
    assert_drawn(pixels)
    tinted = (pixels[:, :, 2] - pixels[:, :, 0] > 0.02) & (pixels.max(axis=2) - pixels.min(axis=2) > 0.02)
    rows, columns = np.nonzero(tinted)
    edges_down = np.linspace(rows.min(), rows.max() + 1, classes + 1).astype(int)
    edges_across = np.linspace(columns.min(), columns.max() + 1, classes + 1).astype(int)
    darkness = 1 - pixels.mean(axis=2)
    return np.array([[np.median(darkness[edges_down[t]:edges_down[t + 1], edges_across[p]:edges_across[p + 1]])
                      for p in range(classes)] for t in range(classes)])


def check_confusion(path):
    """The picture of confused_labels(): the 3s taken for 5s in row 3 (true), column 5 (predicted);
    the diagonal (50 right, 30 for the 3s) darker than that cell, and it darker than the empty ones."""
    darkness = cell_darkness(path)
    assert darkness[3, 5] > darkness[5, 3], "rows are the true class, columns the predicted one"
    empty = ~np.eye(10, dtype=bool)
    empty[3, 5] = False
    assert np.diag(darkness).min() > darkness[3, 5] > darkness[empty].max(), "darkness must follow the counts"


def test_plot_confusion_darkens_the_diagonal_and_the_confused_cell(tmp_path):
    pytest.importorskip("matplotlib")
    path = plots.plot_confusion(*confused_labels(), tmp_path / "c.png", dpi=DPI)
    assert read_png(path).shape[:2] == expected_size("confusion")
    check_confusion(path)


def test_confusion_check_fails_on_a_blank_and_on_a_wrong_picture(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(AssertionError, match="blank"):
        check_confusion(write_blank_png(tmp_path / "blank.png", "confusion"))
    y_true, y_pred = confused_labels()
    transposed = plots.plot_confusion(y_pred, y_true, tmp_path / "wrong.png", dpi=DPI)
    with pytest.raises(AssertionError, match="rows are the true class"):
        check_confusion(transposed)


def blocky_mistakes():
    """Ten digits drawn as a black 20x20 square on white, five misclassified with confidence 0.9,
    0.8, ... 0.5; the surest mistake (sample 7) has only the left half of its square."""
    images = np.zeros((10, 28, 28), np.uint8)
    images[:, 4:24, 4:24] = 255
    images[7, :, 14:] = 0
    y_true = np.arange(10)
    y_pred = y_true.copy()
    probs = np.full((10, 10), 0.01)
    for n, confidence in ((7, 0.9), (2, 0.8), (4, 0.7), (9, 0.6), (0, 0.5)):
        y_pred[n] = (n + 1) % 10
        probs[n, y_pred[n]] = confidence
    return images, y_true, y_pred, probs


def black_squares(pixels):
    """Areas in pixels of the solid black regions of a mistakes picture, in reading order."""
    squares = [(rows, columns, area) for rows, columns, area in blobs(pixels.max(axis=2) < 0.2, min_area=200)
               if area > 0.8 * (rows.stop - rows.start) * (columns.stop - columns.start)]  # not thin frames
    squares.sort(key=lambda square: (square[0].start // 20, square[1].start))
    return [area for _, _, area in squares]


def check_mistakes(path):
    """The picture of blocky_mistakes() with limit=4: four digits, the half square (the surest) first."""
    pixels = read_png(path)
    assert_drawn(pixels)
    areas = black_squares(pixels)
    assert len(areas) == 4, f"four of the five mistakes fit the limit, and only mistakes are shown; found {len(areas)}"
    assert areas[0] < 0.7 * min(areas[1:]), "the surest mistake (the half square) must come first"


def test_plot_mistakes_shows_the_surest_mistakes_first_up_to_the_limit(tmp_path):
    pytest.importorskip("matplotlib")
    images, y_true, y_pred, probs = blocky_mistakes()
    path = plots.plot_mistakes(images, y_true, y_pred, probs, tmp_path / "some.png", limit=4, dpi=DPI)
    assert read_png(path).shape[:2] == expected_size("mistakes")
    check_mistakes(path)


def test_mistakes_check_fails_on_a_blank_and_on_a_wrong_picture(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(AssertionError, match="blank"):
        check_mistakes(write_blank_png(tmp_path / "blank.png", "mistakes"))
    images, y_true, y_pred, probs = blocky_mistakes()
    least_sure_first = np.where(probs > 0.1, 1 - probs, probs)
    path = plots.plot_mistakes(images, y_true, y_pred, least_sure_first, tmp_path / "wrong.png", limit=4, dpi=DPI)
    with pytest.raises(AssertionError, match="surest mistake"):
        check_mistakes(path)


def test_plot_mistakes_without_mistakes_draws_the_title_and_no_digit(tmp_path):
    pytest.importorskip("matplotlib")
    images, y_true, _, probs = blocky_mistakes()
    pixels = read_png(plots.plot_mistakes(images, y_true, y_true, probs, tmp_path / "none.png", dpi=DPI))
    assert (pixels.max(axis=2) < 0.5).any(), "the title is missing"
    assert black_squares(pixels) == []


# --- a small real run, its four pictures, and the script that draws them from a checkpoint ------


@pytest.fixture(scope="module")
def run(mnist):
    """The seed net after two short epochs of SGD on 512 real MNIST digits, and 300 test digits."""
    x_train, y_train, x_test, y_test = mnist
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


def check_run_pictures(paths):
    """The four pictures of a run: the names in order, each of its kind's size and not blank."""
    assert [Path(path).name for path in paths] == ["curves.png", "filters.png", "confusion.png", "mistakes.png"]
    for path in paths:
        pixels = read_png(path)
        assert pixels.shape[:2] == expected_size(Path(path).stem), path
        assert_drawn(pixels)


def test_write_run_plots_writes_the_four_pictures(run, tmp_path):
    pytest.importorskip("matplotlib")
    written = plots.write_run_plots(tmp_path / "pictures", run["params"], run["arch"], run["metrics"],
                                    run["x_test"], run["y_test"], dpi=DPI)
    check_run_pictures(written)


def test_write_run_plots_without_metrics_skips_only_the_curves(run, tmp_path):
    pytest.importorskip("matplotlib")
    written = plots.write_run_plots(tmp_path, run["params"], run["arch"], None, run["x_test"][:50],
                                    run["y_test"][:50], dpi=DPI)
    assert [path.name for path in written] == ["filters.png", "confusion.png", "mistakes.png"]
    assert not (tmp_path / "curves.png").exists()


def test_require_matplotlib_returns_pyplot_drawing_to_files_with_agg():
    pytest.importorskip("matplotlib")
    assert plots.require_matplotlib().get_backend().lower() == "agg"


def test_require_matplotlib_without_matplotlib_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # None in sys.modules makes import fail
    with pytest.raises(ImportError) as caught:
        plots.require_matplotlib()
    assert isinstance(caught.value, plots.MatplotlibMissingError)
    assert 'pip install -e ".[plot]"' in str(caught.value)
    assert "pip install matplotlib" in str(caught.value)


def plot_run_main():
    """scripts/plot_run.py's main, loaded from its file (scripts/ is not a package)."""
    return runpy.run_path(str(SCRIPT))["main"]


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
    arguments = [str(checkpoint), "--data", str(data), "--out", str(tmp_path / "out"), "--dpi", str(DPI)]
    assert plot_run_main()(arguments) == 0
    check_run_pictures(capsys.readouterr().out.split())


def test_plot_run_script_exits_1_naming_the_bad_metrics_line(saved_run, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    checkpoint, data = saved_run
    metrics = tmp_path / "bad.metrics.jsonl"
    metrics.write_text('{"epoch": 1}\n')
    assert plot_run_main()([str(checkpoint), "--data", str(data), "--metrics", str(metrics)]) == 1
    assert f"{metrics}, line 1: missing keys" in capsys.readouterr().err


def test_plot_run_script_exits_2_with_the_hint_without_matplotlib(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # None in sys.modules makes import fail
    assert plot_run_main()([str(tmp_path / "run.npz")]) == 2
    assert 'pip install -e ".[plot]"' in capsys.readouterr().err


def test_plot_run_script_run_as_a_program_exits_with_mains_status(tmp_path):
    """The one real process: run from another directory, the script's exit status is main's."""
    pytest.importorskip("matplotlib")
    result = subprocess.run([sys.executable, str(SCRIPT), "nowhere.npz"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "plot_run.py: checkpoint nowhere.npz: no such file" in result.stderr


# --- the numbers behind the pictures ------------------------------------------------------------


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


def test_class_probabilities_of_a_network_with_batch_norm_use_the_running_statistics_given():
    params, state = fcnn.init("bn", seed=0), fcnn.init_state("bn")
    trained = {layer: {"running_mean": stats["running_mean"] + 0.5, "running_var": stats["running_var"] * 2}
               for layer, stats in state.items()}
    x = scale(np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8))
    logits = fcnn.forward(params, x, "bn", "numpy", state=trained)[0]
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    probs = plots.class_probabilities(params, x, "bn", state=trained, batch_size=3)
    np.testing.assert_allclose(probs, expected, rtol=1e-6)
    assert not np.allclose(probs, plots.class_probabilities(params, x, "bn", state=state))
