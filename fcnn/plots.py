"""Pictures of a training run, as PNG files: loss and accuracy curves, the first conv layer's
kernels and feature maps, the confusion matrix and the misclassified digits.

matplotlib is optional (pip install -e ".[plot]"); it is imported only when a picture is drawn.
"""

import json
import math
import sys
from pathlib import Path

import numpy as np

from fcnn.data import scale
from fcnn.kernels import get_backend
from fcnn.model import forward, layer_names, resolve_arch

INSTALL_HINT = 'pip install -e ".[plot]" (or: pip install matplotlib)'

# Figure sizes in inches; a PNG is these times `dpi` pixels.
FIGURE_INCHES = {
    "curves": (10.0, 4.0),
    "filters": (10.0, 3.0),
    "confusion": (6.5, 6.0),
    "mistakes": (8.0, 9.0),
}
DPI = 100


class MatplotlibMissingError(ImportError):
    """matplotlib is not installed; the message says how to install it."""


def require_matplotlib():
    """The matplotlib.pyplot module, drawing with Agg (files only, no window).

    Raises MatplotlibMissingError (an ImportError) naming the install command when it is absent.
    """
    try:
        import matplotlib
    except ImportError as error:
        raise MatplotlibMissingError(
            f"drawing pictures needs matplotlib, which is not installed; install it with: {INSTALL_HINT}"
        ) from error
    # A caller who already imported pyplot (a notebook) chose a backend; keep theirs.
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def _new_figure(kind, dpi, height=None):
    """A Figure drawn by Agg, outside pyplot's registry so nothing has to be closed.

    Its size in inches is FIGURE_INCHES[kind], or that width and `height` when one is given.
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, default_height = FIGURE_INCHES[kind]
    figure = Figure(figsize=(width, height or default_height), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path):
    """Write the figure as PNG to path (parent directories created) and return the Path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=figure.dpi)
    return path


def read_metrics(path):
    """The per-epoch records of a metrics file: one JSON object per line -> list of dicts.

    Blank lines are skipped. Raises ValueError naming the file and line of a line that is not a
    JSON object or lacks "epoch" or "train_loss".
    """
    records = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not valid JSON ({error.msg}): {line[:80]!r}") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}, line {number}: expected a JSON object; got {type(record).__name__}")
            missing = {"epoch", "train_loss"} - set(record)
            if missing:
                raise ValueError(f"{path}, line {number}: missing keys {sorted(missing)}; got {sorted(record)}")
            records.append(record)
    return records


def exponential_moving_average(values, smoothing=0.98):
    """Smoothed values: s[0] = v[0], s[t] = smoothing * s[t-1] + (1 - smoothing) * v[t].

    values (T,) -> (T,) float64. smoothing in [0, 1): 0 returns the values unchanged.
    """
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must lie in [0, 1); got {smoothing}")
    values = np.asarray(values, dtype=np.float64)
    smoothed = np.empty_like(values)
    running = values[0] if len(values) else 0.0
    for t, value in enumerate(values):
        running = smoothing * running + (1 - smoothing) * value
        smoothed[t] = running
    return smoothed


def _step_loss_curve(metrics):
    """(x in epochs, loss) for every training step; an epoch's k steps sit at e-1 + (i+1)/k."""
    positions, losses = [], []
    for record in metrics:
        steps = record.get("step_losses") or []
        epoch = record["epoch"]
        positions.extend(epoch - 1 + (i + 1) / len(steps) for i in range(len(steps)))
        losses.extend(steps)
    return np.array(positions), np.array(losses, dtype=np.float64)


def plot_curves(metrics, path, dpi=DPI):
    """Training loss per step (raw, faint, and its moving average) beside accuracy per epoch.

    metrics: list of per-epoch dicts with "epoch", "train_loss" and optionally "step_losses",
    "train_accuracy", "test_accuracy" (fractions in [0, 1]). Returns the written Path.
    """
    if not metrics:
        raise ValueError("plot_curves: metrics is empty; nothing to draw (did an epoch finish?)")
    figure = _new_figure("curves", dpi)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    epochs = [record["epoch"] for record in metrics]

    positions, step_losses = _step_loss_curve(metrics)
    if len(step_losses):
        loss_axes.plot(positions, step_losses, color="tab:blue", alpha=0.2, linewidth=0.6, label="each step")
        loss_axes.plot(positions, exponential_moving_average(step_losses), color="tab:blue",
                       label="moving average")
    # An epoch's mean loss is drawn mid-epoch, among the steps it averages.
    loss_axes.plot([epoch - 0.5 for epoch in epochs], [record["train_loss"] for record in metrics], "o",
                   color="tab:orange", label="epoch mean")
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy loss", title="training loss", yscale="log")
    # A falling loss leaves the upper right empty; one fixed place keeps every run's picture alike.
    loss_axes.legend(loc="upper right")

    for key, label, color in (("train_accuracy", "train", "tab:blue"), ("test_accuracy", "test", "tab:green")):
        points = [(record["epoch"], 100 * record[key]) for record in metrics if record.get(key) is not None]
        if points:
            accuracy_axes.plot(*zip(*points), "o-", color=color, label=f"{label} (last: {points[-1][1]:.2f} %)")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy per epoch")
    accuracy_axes.set_xticks(epochs)
    if accuracy_axes.has_data():
        accuracy_axes.legend(loc="lower right")
    figure.tight_layout()
    return _save(figure, path)


def first_conv_layer(arch):
    """(name, resolved spec) of the first conv layer; ValueError if the architecture has none."""
    for name, spec in zip(layer_names(arch), resolve_arch(arch)):
        if spec["type"] == "conv":
            return name, spec
    raise ValueError("arch has no conv layer, so it has no filters to draw")


def _as_float_image(image, dtype):
    """One digit, (H, W) or (C, H, W), uint8 0..255 or float -> (1, C, H, W) of dtype in [0, 1]."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise ValueError(f"image must be one (H, W) or (C, H, W) image; got shape {image.shape}")
    scaled = scale(image) if image.dtype == np.uint8 else image
    return scaled[None].astype(dtype)


def plot_filters(params, arch, image, path, backend="numpy", dpi=DPI):
    """The first conv layer's kernels (input channel 0) above the feature maps they make of one digit.

    Feature maps are the conv output before ReLU, out[f] = b[f] + (w[f] * image) (cross-correlation).
    Colours are symmetric about zero: red positive, blue negative. Eight filters to a row; each
    further row of eight adds the figure's height again. Returns the written Path.
    """
    name, spec = first_conv_layer(arch)
    w, b = params[name]["w"], params[name]["b"]
    x = _as_float_image(image, w.dtype)
    feature_maps = get_backend(backend).conv2d_forward(x, w, b, spec["stride"], spec["pad"])[0]

    filters = w.shape[0]
    columns = min(filters, 8)
    row_pairs = math.ceil(filters / columns)
    figure = _new_figure("filters", dpi, height=FIGURE_INCHES["filters"][1] * row_pairs)
    grid = figure.add_gridspec(2 * row_pairs, columns + 1)
    digit_axes = figure.add_subplot(grid[:, 0])
    digit_axes.imshow(x[0, 0], cmap="gray_r")
    digit_axes.set_title("input", fontsize=9)
    for f in range(filters):
        row, column = 2 * (f // columns), 1 + f % columns
        for axes_row, picture, label in ((row, w[f, 0], "kernel"), (row + 1, feature_maps[f], "map")):
            axes = figure.add_subplot(grid[axes_row, column])
            limit = float(np.abs(picture).max()) or 1.0
            axes.imshow(picture, cmap="RdBu_r", vmin=-limit, vmax=limit)
            axes.set_title(f"{label} {f}", fontsize=8)
    for axes in figure.axes:
        axes.set_xticks([])
        axes.set_yticks([])
    figure.suptitle(f"{name}: kernels (channel 0) and their feature maps before ReLU", fontsize=10)
    return _save(figure, path)


def confusion_matrix(y_true, y_pred, classes=10):
    """counts[t, p] = number of samples of true class t predicted as class p.

    y_true, y_pred (N,) integers in 0..classes-1 -> (classes, classes) int64.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    for name, labels in (("y_true", y_true), ("y_pred", y_pred)):
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"confusion_matrix: {name} must be a 1-D integer array; got {labels.dtype} {labels.shape}")
        if len(labels) and (labels.min() < 0 or labels.max() >= classes):
            raise ValueError(
                f"confusion_matrix: {name} must lie in 0..{classes - 1}; got {labels.min()} to {labels.max()}"
            )
    if y_true.shape != y_pred.shape:
        raise ValueError(f"confusion_matrix: y_true {y_true.shape} and y_pred {y_pred.shape} must have one shape")
    pairs = y_true.astype(np.int64) * classes + y_pred
    return np.bincount(pairs, minlength=classes * classes).reshape(classes, classes)


def plot_confusion(y_true, y_pred, path, classes=10, dpi=DPI):
    """The confusion matrix, counts written in the cells (rows: true class, columns: predicted)."""
    counts = confusion_matrix(y_true, y_pred, classes)
    figure = _new_figure("confusion", dpi)
    from matplotlib.colors import PowerNorm

    axes = figure.subplots()
    # A power norm lifts the few off-diagonal errors out of the white next to ~1000 correct.
    norm = PowerNorm(gamma=0.3, vmin=0, vmax=max(int(counts.max()), 1))
    axes.imshow(counts, cmap="Blues", norm=norm)
    for t in range(classes):
        for p in range(classes):
            dark = norm(counts[t, p]) > 0.6
            axes.text(p, t, str(counts[t, p]), ha="center", va="center", fontsize=8,
                      color="white" if dark else "black")
    accuracy = 100 * np.trace(counts) / max(counts.sum(), 1)
    axes.set(xticks=range(classes), yticks=range(classes), xlabel="predicted class", ylabel="true class",
             title=f"confusion matrix: {accuracy:.2f} % of {counts.sum()} correct")
    figure.tight_layout()
    return _save(figure, path)


def plot_mistakes(images, y_true, y_pred, probs, path, limit=36, dpi=DPI):
    """The misclassified digits the network was surest of, each titled "true -> predicted (p)".

    images (N, H, W); y_true, y_pred (N,); probs (N, K) class probabilities; p = probs[n, y_pred[n]].
    """
    if limit < 1:
        raise ValueError(f"plot_mistakes: limit must be at least 1; got {limit}")
    images, y_true, y_pred, probs = map(np.asarray, (images, y_true, y_pred, probs))
    if not (len(images) == len(y_true) == len(y_pred) == len(probs)):
        raise ValueError(
            f"plot_mistakes: images, y_true, y_pred, probs must have one length; got "
            f"{len(images)}, {len(y_true)}, {len(y_pred)}, {len(probs)}"
        )
    wrong = np.flatnonzero(y_true != y_pred)
    confidence = probs[wrong, y_pred[wrong]]
    shown = wrong[np.argsort(-confidence, kind="stable")][:limit]

    figure = _new_figure("mistakes", dpi)
    columns = max(math.ceil(math.sqrt(limit)), 1)
    rows = max(math.ceil(limit / columns), 1)
    grid = figure.add_gridspec(rows, columns)
    for slot, n in enumerate(shown):
        axes = figure.add_subplot(grid[slot // columns, slot % columns])
        axes.imshow(images[n].reshape(images.shape[-2:]), cmap="gray_r")
        axes.set_title(f"{y_true[n]} -> {y_pred[n]} ({probs[n, y_pred[n]]:.2f})", fontsize=8)
        axes.set_xticks([])
        axes.set_yticks([])
    figure.suptitle(
        f"{len(wrong)} of {len(y_true)} test digits misclassified; the {len(shown)} most confident shown",
        fontsize=10,
    )
    figure.subplots_adjust(left=0.03, right=0.97, bottom=0.02, top=0.92, hspace=0.35)
    return _save(figure, path)


def class_probabilities(params, x, arch, backend="numpy", batch_size=1000, state=None):
    """softmax(logits) for images x (N, C, H, W) float (or (N, H, W)), batch_size at a time -> (N, K).

    Evaluation mode: a network with batch norm uses the running statistics in `state`.
    """
    batches = []
    for start in range(0, len(x), batch_size):
        logits = forward(params, x[start:start + batch_size], arch, backend, state=state)[0]
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        batches.append(shifted / shifted.sum(axis=1, keepdims=True))
    return np.concatenate(batches)


def write_run_plots(directory, params, arch, metrics, x_test, y_test, backend="numpy", dpi=DPI, state=None):
    """Draw curves.png (skipped when metrics is None or empty), filters.png, confusion.png and
    mistakes.png into directory, for uint8 test images x_test (N, 28, 28) and labels y_test (N,);
    state: the model's state (batch norm's running statistics), for the networks that have one.

    Returns the list of written Paths.
    """
    directory = Path(directory)
    x_test, y_test = np.asarray(x_test), np.asarray(y_test)
    if len(x_test) == 0:
        raise ValueError("write_run_plots: x_test holds no images; there is nothing to predict or draw")
    probs = class_probabilities(params, scale(x_test), arch, backend, state=state)
    y_pred = probs.argmax(axis=1)
    written = []
    if metrics:
        written.append(plot_curves(metrics, directory / "curves.png", dpi=dpi))
    written.append(plot_filters(params, arch, x_test[0], directory / "filters.png", backend, dpi=dpi))
    written.append(plot_confusion(y_test, y_pred, directory / "confusion.png", probs.shape[1], dpi=dpi))
    written.append(plot_mistakes(x_test, y_test, y_pred, probs, directory / "mistakes.png", dpi=dpi))
    return written
