"""Training as plain functions: seeded mini-batches, one SGD step, one epoch, test accuracy.

Nothing here prints or parses arguments: progress goes to an optional callback, so the
caller (scripts/train_mnist.py, a notebook, a test) decides how to show it.
"""

import math

import numpy as np

from fcnn.model import loss_and_grads, predict
from fcnn.optim import momentum_step, sgd_step


class TrainingDiverged(ValueError):
    """The loss became inf or NaN: the learning rate (the value the user chose) is too high."""

    def __init__(self, epoch, step, steps_per_epoch, loss, lr):
        self.epoch, self.step, self.loss, self.lr = epoch, step, loss, lr
        super().__init__(
            f"training diverged: the loss is {loss} at epoch {epoch + 1}, step {step} of "
            f"{steps_per_epoch} (this epoch's lr: {lr:g}). "
            f"Try a lower --lr (a tenth, say), a lower --momentum or a larger --batch-size."
        )


def batches(n, batch_size, rng):
    """Index arrays that split range(n) into shuffled mini-batches, each index exactly once.

    The order is rng.permutation(n); the last batch is smaller when batch_size does not divide n.
    n, batch_size ints, rng numpy.random.Generator -> list of ceil(n / batch_size) int arrays
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size}")
    order = rng.permutation(n)
    return [order[start:start + batch_size] for start in range(0, n, batch_size)]


def learning_rate(lr, lr_decay, epoch):
    """The step size of epoch `epoch` (counted from 0): lr * lr_decay ** epoch."""
    return lr * lr_decay ** epoch


def train_step(params, velocity, x, labels, arch, backend, lr, momentum):
    """One step of (momentum) SGD on one mini-batch.

    momentum 0: p_new = p - lr * dp (plain SGD; the velocity is passed through unchanged);
    otherwise v_new = momentum * v + dp, p_new = p - lr * v_new.
    Returns (new_params, new_velocity, loss, logits); loss is the batch mean, logits (N, K) are
    the ones the step was computed from.
    """
    loss, grads, logits = loss_and_grads(params, x, labels, arch, backend)
    if momentum == 0:
        return sgd_step(params, grads, lr), velocity, loss, logits
    new_params, new_velocity = momentum_step(params, grads, velocity, lr, momentum)
    return new_params, new_velocity, loss, logits


def train_epoch(params, velocity, x, labels, arch, backend, *, lr, momentum, batch_size, rng,
                epoch=0, on_step=None):
    """One pass over (x, labels) in a fresh shuffled order drawn from rng.

    x (N, 1, 28, 28) or (N, 28, 28) float, labels (N,) ints. on_step(step, steps, images, loss),
    if given, is called after every step (step counted from 1).
    Returns (params, velocity, stats) with stats = {"train_loss": mean loss per image,
    "train_accuracy": fraction of images the network classified right just before it stepped
    on them, "step_losses": [loss of every step]}.
    Raises TrainingDiverged if a loss is inf or NaN (the caller still holds the parameters it
    passed in).
    """
    if len(x) == 0 or len(x) != len(labels):
        raise ValueError(f"train_epoch: x and labels must hold the same number (> 0) of samples; "
                         f"got {len(x)} images and {len(labels)} labels")
    order = batches(len(x), batch_size, rng)
    step_losses = []
    loss_sum = 0.0
    correct = 0
    for step, indices in enumerate(order, start=1):
        # The loss is checked here, so NumPy's overflow warnings would only repeat it, noisily.
        with np.errstate(over="ignore", invalid="ignore"):
            params, velocity, loss, logits = train_step(
                params, velocity, x[indices], labels[indices], arch, backend, lr, momentum
            )
        if not math.isfinite(loss):
            raise TrainingDiverged(epoch, step, len(order), loss, lr)
        step_losses.append(loss)
        loss_sum += loss * len(indices)
        correct += int((logits.argmax(axis=1) == labels[indices]).sum())
        if on_step is not None:
            on_step(step, len(order), len(indices), loss)
    stats = {"train_loss": loss_sum / len(x), "train_accuracy": correct / len(x), "step_losses": step_losses}
    return params, velocity, stats


def evaluate(params, x, labels, arch, backend="numpy", batch_size=1000):
    """Accuracy: the fraction of images whose predicted class equals its label (a float in [0, 1])."""
    if len(x) == 0:
        raise ValueError("evaluate: x holds no images; accuracy of an empty set is undefined")
    return float((predict(params, x, arch, backend, batch_size) == np.asarray(labels)).mean())
