"""Training as plain functions: seeded mini-batches, one optimiser step, one epoch, test accuracy.

Nothing here prints or parses arguments: progress goes to an optional callback, so the
caller (scripts/train_mnist.py, a notebook, a test) decides how to show it.

Two kinds of state pass through a step, each handed in and handed back, nothing changed in
place: the optimiser's (`state`: SGD's velocity, Adam's moments) and, for a network with batch
norm, the model's (`model_state`: the running statistics, fcnn.model.init_state). Dropout draws
its masks from `dropout_rng`, a Generator of its own, so that the shuffling order does not depend
on the network and a checkpoint can keep both streams.
"""

import math
import time

import numpy as np

from fcnn.kernels.contract import check_int
from fcnn.model import init_state, loss_and_grads, predict
from fcnn.optim import adam_step, adamw_step, momentum_step, rmsprop_step, sgd_step, zeros_like
from fcnn.tree import tree_paths

# The settings each preset trains well with: the training script's defaults, and the workloads
# the benchmarks time (one source, so the benchmarks time what users run; see the README).
# momentum is SGD's; a row without it trains with an optimiser that keeps moments of its own.
ARCH_DEFAULTS = {
    "seed": {"epochs": 5, "batch_size": 32, "optimizer": "sgd", "lr": 0.2, "momentum": 0.0, "lr_decay": 0.6},
    "lenet5": {"epochs": 8, "batch_size": 32, "optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "lr_decay": 0.8},
    "bn": {"epochs": 12, "batch_size": 32, "optimizer": "adam", "lr": 0.002, "lr_decay": 0.75, "shift": 2},
}

# The optimisers a run may train with (fcnn.optim, PyTorch's semantics), and the trees each keeps
# as its state: sgd its velocity (zeros when momentum is 0), the others their moments.
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
ADAPTIVE_STEPS = {"adam": adam_step, "adamw": adamw_step, "rmsprop": rmsprop_step}
STATE_KEYS = {"sgd": (), "adam": ("t", "m", "v"), "adamw": ("t", "m", "v"), "rmsprop": ("s",)}
# PyTorch's defaults for each (torch.optim): the learning rate of Adam, AdamW and RMSprop (SGD's
# comes from ARCH_DEFAULTS), and the weight decay, 0.01 for AdamW and 0 for the others.
OPTIMIZER_DEFAULTS = {
    "sgd": {"weight_decay": 0.0},
    "adam": {"lr": 1e-3, "weight_decay": 0.0},
    "adamw": {"lr": 1e-3, "weight_decay": 0.01},
    "rmsprop": {"lr": 1e-2, "weight_decay": 0.0},
}

# The divergence rule (see divergence()): fastai's loss smoothing, and a threshold far above
# what healthy runs reach and far below what exploding ones do (docs/faults.md has the figures).
LOSS_SMOOTHING = 0.98
DIVERGENCE_FACTOR = 10


class TrainingDiverged(ValueError):
    """The loss exploded (inf, NaN, or far above a guess's; see divergence()): lr is too high.

    Attributes: epoch (from 0), step (from 1), steps (per epoch), loss, lr, and `reason`, the
    finding without advice, for callers (such as the training script) that phrase their own.
    """

    def __init__(self, epoch, step, steps, loss, lr, reason):
        self.epoch, self.step, self.steps, self.loss, self.lr, self.reason = epoch, step, steps, loss, lr, reason
        super().__init__(
            f"{self.finding()}. Try a lower lr (a tenth, say), a lower momentum or a larger batch_size."
        )

    def finding(self):
        """Where and why, without advice: 'training diverged at epoch 3, step 5 of 94: ...'."""
        return (
            f"training diverged at epoch {self.epoch + 1}, step {self.step} of {self.steps}: "
            f"{self.reason} (this epoch's lr: {self.lr:g})"
        )


def smoothed_loss(previous, loss):
    """One step of the moving average of step losses: s_k = 0.98 s_(k-1) + 0.02 loss_k (fastai's
    smoothing). train_epoch starts every epoch at s_0 = ln(classes), the loss of a uniform guess."""
    return LOSS_SMOOTHING * previous + (1 - LOSS_SMOOTHING) * loss


def divergence(smoothed, loss, classes):
    """Why training has diverged after a step of loss `loss`; None if it has not.

    Diverged: the loss is inf or NaN, or the smoothed loss exceeds DIVERGENCE_FACTOR * ln(classes),
    ten times the loss of a uniform guess (23 for 10 classes) - a fixed threshold on a smoothed
    metric, as PyTorch Lightning's EarlyStopping(divergence_threshold=...) applies. Started at
    ln(classes), the average moves by only 2 % of a lone spike, so the noise of per-sample SGD
    cannot reach it, while an exploding loss (1e3 and up) crosses it within a step or a few.
    """
    if not math.isfinite(loss):
        return f"the loss is {loss}"
    threshold = DIVERGENCE_FACTOR * math.log(classes)
    if smoothed > threshold:
        return (f"the smoothed loss is {smoothed:.4g} (this step's: {loss:.4g}), above {threshold:.3g} "
                f"= {DIVERGENCE_FACTOR} x ln({classes}), {DIVERGENCE_FACTOR} times a uniform guess's loss")
    return None


def batches(n, batch_size, rng):
    """Index arrays that split range(n) into shuffled mini-batches, each index exactly once.

    The order is rng.permutation(n); the last batch is smaller when batch_size does not divide n.
    n, batch_size ints, rng numpy.random.Generator -> list of ceil(n / batch_size) int arrays
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size}")
    order = rng.permutation(n)
    return [order[start:start + batch_size] for start in range(0, n, batch_size)]


def shifted_images(x, max_shift, rng):
    """Every image moved by its own (dy, dx), each drawn from -max_shift..max_shift: the
    augmentation that teaches a network that a digit a pixel or two off centre is the same digit.

    out[n, ..., y, x] = x[n, ..., y - dy[n], x - dx[n]], 0 where that falls outside the image.
    x (N, ..., H, W) with max_shift < H and < W, rng a numpy.random.Generator (two draws of N
    integers) -> a new array of x's shape and dtype (x itself for max_shift 0, with nothing drawn).
    """
    H, W = x.shape[-2:]
    check_int("shifted_images", "max_shift", max_shift, 0)
    if max_shift >= min(H, W):
        raise ValueError(f"shifted_images: max_shift must be less than the images' size, {H}x{W}; got {max_shift}")
    if max_shift == 0:
        return x
    dy, dx = (rng.integers(-max_shift, max_shift + 1, len(x)) for _ in range(2))
    border = [(0, 0)] * (x.ndim - 2) + [(max_shift, max_shift)] * 2
    # windows[n, ..., i, j] is the H x W window of the padded image whose corner is (i, j):
    # the window at (max_shift - dy, max_shift - dx) holds the image moved by (dy, dx).
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(x, border), (H, W), axis=(-2, -1))
    images = np.arange(len(x))
    return np.moveaxis(windows, (-4, -3), (1, 2))[images, max_shift - dy, max_shift - dx].copy()


def learning_rate(lr, lr_decay, epoch):
    """The step size of epoch `epoch` (counted from 0): lr * lr_decay ** epoch."""
    return lr * lr_decay ** epoch


def fresh_state(optimizer, params):
    """The optimiser state of a run's first step: sgd's velocity, zeros_like(params); Adam's and
    AdamW's {"t": 0, "m": zeros, "v": zeros}; RMSProp's {"s": zeros}."""
    if optimizer == "sgd":
        return zeros_like(params)
    return {key: 0 if key == "t" else zeros_like(params) for key in STATE_KEYS[optimizer]}


def train_step(params, state, x, labels, arch, backend, lr, momentum=0.0, optimizer="sgd", weight_decay=0.0, *,
               model_state=None, dropout_rng=None):
    """One optimiser step on one mini-batch.

    sgd, momentum 0: p_new = p - lr * dp (plain SGD; the velocity `state` is passed through
    unchanged); otherwise v_new = momentum * v + dp, p_new = p - lr * v_new. adam, adamw,
    rmsprop: fcnn.optim's step of that name, state its moments (fresh_state). dp includes
    weight_decay * p (AdamW: decoupled). Returns (new_params, new_state, loss, logits); loss is
    the batch mean, logits (N, K) are the ones the step was computed from.

    A network with batch norm or dropout steps in training mode with model_state (the model's
    state, init_state(arch) at first) and dropout_rng (a numpy.random.Generator for the masks);
    with model_state given, the new model state (the running statistics after this batch) comes
    back as a fifth item.
    """
    loss, grads, logits, *new_model_state = loss_and_grads(
        params, x, labels, arch, backend, state=model_state, training=True, rng=dropout_rng)
    if optimizer != "sgd":
        new_params, new_state = ADAPTIVE_STEPS[optimizer](params, grads, state, lr, weight_decay=weight_decay,
                                                          backend=backend)
    elif momentum == 0:
        new_params, new_state = sgd_step(params, grads, lr, weight_decay=weight_decay), state
    else:
        new_params, new_state = momentum_step(params, grads, state, lr, momentum, weight_decay=weight_decay)
    return (new_params, new_state, loss, logits, *new_model_state)


def all_finite(tree):
    return all(np.isfinite(array).all() for _, array in tree_paths(tree))


def train_epoch(params, state, x, labels, arch, backend, *, lr, momentum=0.0, batch_size, rng,
                epoch=0, on_step=None, optimizer="sgd", weight_decay=0.0, model_state=None, dropout_rng=None,
                shift=0):
    """One pass over (x, labels) in a fresh shuffled order drawn from rng, stepped by train_step.

    x (N, 1, 28, 28) or (N, 28, 28) float, labels (N,) ints. on_step(step, steps, images,
    mean_loss), if given, is called after every step (step counted from 1) with the images of
    that step and the epoch's mean loss per image so far; it may raise to stop the epoch
    between two steps.
    state: the optimiser's state (sgd's velocity; see fresh_state for the others).
    model_state, dropout_rng: as train_step takes them; rng shuffles, dropout_rng draws the
    dropout masks (two streams, so that the order of the images does not depend on the network).
    shift > 0: every batch is moved image by image by up to `shift` pixels each way before its
    step (shifted_images, the shifts drawn from rng after the order: both are the data's randomness).
    Returns (params, state, stats) with stats = {"train_loss": mean loss per image,
    "train_accuracy": fraction of images the network classified right just before it stepped
    on them (in training mode), "step_losses": [loss of every step]}; with model_state given,
    (params, state, stats, model_state), the model state after the last step.
    Raises TrainingDiverged when the loss explodes (the rule of divergence()) or the parameters are
    not finite after the last step; the caller still holds the parameters it passed in.
    """
    if len(x) == 0 or len(x) != len(labels):
        raise ValueError(f"train_epoch: x and labels must hold the same number (> 0) of samples; "
                         f"got {len(x)} images and {len(labels)} labels")
    order = batches(len(x), batch_size, rng)
    step_losses = []
    loss_sum = 0.0
    seen = correct = 0
    smoothed = None
    for step, indices in enumerate(order, start=1):
        # The loss is checked here, so NumPy's overflow warnings would only repeat it, noisily.
        with np.errstate(over="ignore", invalid="ignore"):
            params, state, loss, logits, *stepped_model_state = train_step(
                params, state, shifted_images(x[indices], shift, rng), labels[indices], arch, backend, lr, momentum,
                optimizer, weight_decay,
                model_state=model_state, dropout_rng=dropout_rng)
        model_state = stepped_model_state[0] if stepped_model_state else None
        classes = logits.shape[1]
        smoothed = smoothed_loss(math.log(classes) if smoothed is None else smoothed, loss)
        reason = divergence(smoothed, loss, classes)
        if reason:
            raise TrainingDiverged(epoch, step, len(order), loss, lr, reason)
        step_losses.append(loss)
        loss_sum += loss * len(indices)
        seen += len(indices)
        correct += int((logits.argmax(axis=1) == labels[indices]).sum())
        if on_step is not None:
            on_step(step, len(order), len(indices), loss_sum / seen)
    # A finite loss is computed before its step, so the last step's update is checked here.
    if not all_finite(params) or not all_finite(state) or not all_finite(model_state or {}):
        raise TrainingDiverged(epoch, len(order), len(order), step_losses[-1], lr,
                               "the parameters are inf or NaN after the last step")
    stats = {"train_loss": loss_sum / len(x), "train_accuracy": correct / len(x), "step_losses": step_losses}
    return (params, state, stats) if model_state is None else (params, state, stats, model_state)


def warm_up(params, x, labels, arch, backend):
    """One step on two images, so that a compiled backend compiles (or loads its cache) before
    any timing; returns the seconds it took. In training mode from a fresh model state, with a
    Generator of its own for any dropout: the run's own state and generators are not touched."""
    start = time.perf_counter()
    dtype = next(iter(tree_paths(params)))[1].dtype
    loss_and_grads(params, x[:2], labels[:2], arch, backend, state=init_state(arch, dtype),
                   rng=np.random.default_rng(0))
    return time.perf_counter() - start


def evaluate(params, x, labels, arch, backend="numpy", batch_size=1000, *, model_state=None):
    """Accuracy: the fraction of images whose predicted class equals its label (a float in [0, 1]).

    In evaluation mode, as predict: batch norm reads model_state's running statistics (needed
    for a network with batch norm), dropout passes its input through.
    """
    if len(x) == 0:
        raise ValueError("evaluate: x holds no images; accuracy of an empty set is undefined")
    return float((predict(params, x, arch, backend, batch_size, state=model_state) == np.asarray(labels)).mean())
