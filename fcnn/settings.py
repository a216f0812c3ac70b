"""A training run's settings: one table of every setting's type, valid range and meaning, and
how a run's settings come together: given on the command line, else remembered by the checkpoint
it resumes, else the preset's default (fcnn.training.ARCH_DEFAULTS), each checked by the same
table wherever it came from. Used by scripts/train_mnist.py; raises UsageError, never prints.
"""

import math
import os
from typing import Callable, NamedTuple

from fcnn.kernels import BACKENDS, BackendUnavailableError, default_backend, get_backend
from fcnn.model import PRESETS, resolve_arch
from fcnn.training import ARCH_DEFAULTS, OPTIMIZER_DEFAULTS, OPTIMIZERS, learning_rate


class UsageError(ValueError):
    """A bad argument, data set, checkpoint or output path: exit status 2, with a message and no traceback."""


class Setting(NamedTuple):
    kind: type  # int, float or str
    valid: Callable  # valid(value) for a value of that kind
    wanted: str  # the valid values, as a message says them
    help: str
    choices: tuple = None  # for a setting that is one of a few names
    optional: bool = False  # a checkpoint may hold null: "not set" (all images, the bundled data)
    metavar: str = None  # how --help names the value (default: the option's name in capitals)


SETTINGS = {
    "arch": Setting(str, PRESETS.__contains__, "", "network (default: seed)", choices=tuple(sorted(PRESETS))),
    "backend": Setting(str, BACKENDS.__contains__, "", "kernel backend (default: the fastest available here, "
                       "fcnn.default_backend())", choices=tuple(BACKENDS)),
    "epochs": Setting(int, lambda value: value >= 1, "an integer >= 1",
                      "total number of epochs, counting those of a resumed run"),
    "batch_size": Setting(int, lambda value: value >= 1, "an integer >= 1", "images per SGD step (1 = per-sample SGD)"),
    "lr": Setting(float, lambda value: 0 < value < math.inf, "a finite number > 0", "learning rate of the first epoch"),
    "optimizer": Setting(str, OPTIMIZERS.__contains__, "", "sgd, adam, adamw or rmsprop as torch.optim's "
                         "(default: the preset's; one other than the preset's takes PyTorch's lr, 0.001, "
                         "0.001, 0.01 for the adaptive ones)", choices=OPTIMIZERS),
    "momentum": Setting(float, lambda value: 0 <= value < 1, "a number in [0, 1)",
                        "momentum of SGD, PyTorch style (0 = plain SGD)"),
    "weight_decay": Setting(float, lambda value: 0 <= value < math.inf, "a finite number >= 0",
                            "L2 weight decay, as torch.optim's (AdamW's decoupled; default 0, AdamW 0.01)"),
    "lr_decay": Setting(float, lambda value: 0 < value <= 1, "a number in (0, 1]",
                        "lr of epoch e (from 0) is lr * lr_decay**e"),
    "shift": Setting(int, lambda value: 0 <= value < 28, "an integer from 0 to 27",
                     "move each training image by up to N pixels each way, new shifts every epoch (0 = off)",
                     metavar="N"),
    "seed": Setting(int, lambda value: value >= 0, "an integer >= 0",
                    "seed of the initial weights, the data order (and shifts) and dropout (default: 0)"),
    "data": Setting(str, bool, "a path", "MNIST directory (IDX or CSV) or .npz (default: bundled copy)",
                    optional=True, metavar="PATH"),
    "train_limit": Setting(int, lambda value: value >= 1, "an integer >= 1",
                           "train on the first N training images only", optional=True, metavar="N"),
    "test_limit": Setting(int, lambda value: value >= 1, "an integer >= 1",
                          "test on the first N test images only", optional=True, metavar="N"),
}
# The settings a checkpoint remembers (all but epochs), so that --resume continues its run; with
# data_sha256, the checksum of the data trained on (fcnn.data.checksum).
REMEMBERED = tuple(key for key in SETTINGS if key != "epochs")
# momentum, weight_decay and shift: plain SGD, no decay and no shifted images, for a preset whose
# row does not name them.
DEFAULTS = {"arch": "seed", "backend": None, "momentum": 0.0, "weight_decay": 0.0, "shift": 0, "seed": 0, "data": None,
            "train_limit": None, "test_limit": None}

# Settings newer than the first checkpoints: a checkpoint that lacks one was trained with its DEFAULTS value.
LATER_SETTINGS = ("weight_decay", "shift")


def from_text(key, text):
    """The value of setting `key` typed as `text` on the command line; ValueError naming the range."""
    kind, valid, wanted = SETTINGS[key][:3]
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not valid(value):
        raise ValueError(f"must be {wanted}; got {text!r}")
    return value


def problem(key, value):
    """What is wrong with `value` (of any JSON type) as setting `key`, or None: the same rules as from_text."""
    setting = SETTINGS[key]
    if setting.choices:
        return None if value in setting.choices else f"{key!r} is {value!r}, not one of {list(setting.choices)}"
    if value is None and setting.optional:
        return None
    # JSON has one number type and bool is an int in Python: accept exactly what fits.
    fits = isinstance(value, (int, float) if setting.kind is float else setting.kind) and not isinstance(value, bool)
    try:
        fits = fits and setting.valid(setting.kind(value))
    except OverflowError:  # an integer too large for a float
        fits = False
    return None if fits else f"{key!r} must be {setting.wanted}{' or null' if setting.optional else ''}; got {value!r}"


def preset_of(checkpoint):
    """The preset name of a checkpoint's architecture; UsageError for one the script cannot train."""
    for name in sorted(PRESETS):
        if resolve_arch(name) == checkpoint["arch"]:
            return name
    raise UsageError(
        f"checkpoint {checkpoint['path']} holds an architecture that is not one of the presets "
        f"{sorted(PRESETS)}; this script trains presets only (use fcnn.training from Python for your own)"
    )


def remembered(checkpoint, given):
    """The settings a checkpoint's config holds, except those `given` on the command line, each
    checked by the table; the architecture comes from the checkpoint's arrays."""
    config = {key: value for key, value in {**{key: DEFAULTS[key] for key in LATER_SETTINGS}, **checkpoint["config"]}.items()
              if key in REMEMBERED and key not in given and key not in ("arch", "optimizer")}
    for key, value in config.items():
        wrong = problem(key, value)
        if wrong:
            advice = "; pass --backend" if key == "backend" else ""
            raise UsageError(f"checkpoint {checkpoint['path']}: its config {wrong}{advice}")
    # The architecture and the optimiser come from the arrays the checkpoint holds.
    return {**config, "arch": preset_of(checkpoint), "optimizer": checkpoint.get("optimizer", "sgd")}


def resolve(given, checkpoint=None):
    """Every setting of a run: `given` (None = not given), else the checkpoint's, else the default.

    given: {key: value} as the command line parsed them; checkpoint: load_checkpoint's dict plus
    "path", or None. --data is made absolute, so that a resumed run finds the same data from
    any folder. Raises UsageError for a checkpoint setting outside the table, another --arch than
    the checkpoint's, a backend that cannot run here, or a learning rate that decays to 0. The
    optimiser is the preset's (ARCH_DEFAULTS) unless given or resumed; an optimiser other than
    the preset's trains with its own defaults (OPTIMIZER_DEFAULTS: PyTorch's lr and weight decay).
    """
    given = {key: value for key, value in given.items() if key in SETTINGS and value is not None}
    if given.get("data"):
        given["data"] = os.path.abspath(os.path.expanduser(given["data"]))
    kept = remembered(checkpoint, given) if checkpoint else {}
    for key in ("arch", "optimizer"):
        if kept and given.get(key, kept[key]) != kept[key]:
            raise UsageError(f"--{key} {given[key]} does not match the checkpoint, which holds {kept[key]!r}")
    arch = given.get("arch") or kept.get("arch") or DEFAULTS["arch"]
    preset = ARCH_DEFAULTS[arch]
    optimizer = given.get("optimizer") or kept.get("optimizer") or preset["optimizer"]
    if optimizer != "sgd" and "momentum" in given:
        raise UsageError(f"--momentum is an option of sgd; {optimizer} keeps moments of its own")
    other_optimizer = OPTIMIZER_DEFAULTS[optimizer] if optimizer != preset["optimizer"] else {}
    settings = {**DEFAULTS, **preset, **other_optimizer, **kept, **given, "arch": arch, "optimizer": optimizer}
    try:
        settings["backend"] = settings["backend"] or default_backend()
        get_backend(settings["backend"])
    except BackendUnavailableError as error:
        source = "--backend" if "backend" in given else "the checkpoint's backend (pass another with --backend)"
        raise UsageError(f"{source}: {error}") from error
    check_learning_rates(settings, checkpoint["epoch"] if checkpoint else 0)
    return settings


def check_learning_rates(settings, first_epoch):
    """Refuse a schedule whose learning rate underflows to exactly 0 before the last epoch: from
    that epoch on nothing would be learned, while the run would seem to train."""
    lr, decay, epochs = settings["lr"], settings["lr_decay"], settings["epochs"]
    if epochs <= first_epoch or learning_rate(lr, decay, epochs - 1) != 0:
        return
    zero = next(epoch for epoch in range(first_epoch, epochs) if learning_rate(lr, decay, epoch) == 0)
    advice = f"pass --epochs {zero} or fewer, or a larger --lr or --lr-decay" if zero > first_epoch else \
        "pass a larger --lr or --lr-decay"
    raise UsageError(
        f"lr {lr:g} with lr decay {decay:g} gives epoch {zero + 1} a learning rate of exactly 0 "
        f"(lr * lr_decay**{zero} underflows): it and every later epoch would learn nothing; {advice}"
    )


def check_same_data(settings, checkpoint, checksum, allow_other_data):
    """Refuse to resume a run on other data than it was trained on, unless asked for by name.

    checksum: fcnn.data.checksum of the data just loaded for `settings`. Returns a note for the
    run's header (other data, as asked; or a checkpoint too old to hold a checksum), or "".
    """
    if not checkpoint:
        return ""
    recorded = checkpoint["config"].get("data_sha256")
    if recorded is None:
        return "the checkpoint records no checksum of its data (an older fcnn wrote it): not compared"
    if not isinstance(recorded, str):
        raise UsageError(f"checkpoint {checkpoint['path']}: its config 'data_sha256' must be a string; got {recorded!r}")
    if recorded == checksum:
        return ""
    trained_on = checkpoint["config"].get("data") or "the bundled MNIST"
    here = settings["data"] or "the bundled MNIST"
    if allow_other_data:
        return (f"training on other data than the checkpoint's, as --allow-other-data asks: {here} "
                f"(SHA-256 {checksum[:12]}...), not {trained_on} ({recorded[:12]}...)")
    raise UsageError(
        f"--resume {checkpoint['path']}: the run was trained on {trained_on} (SHA-256 {recorded[:12]}...), "
        f"but {here} holds other data (SHA-256 {checksum[:12]}...); to train on it anyway, pass "
        "--data PATH --allow-other-data"
    )


def config(settings, checksum):
    """What a checkpoint remembers of a run: its settings (all but epochs) and its data's checksum."""
    return {**{key: settings[key] for key in REMEMBERED}, "data_sha256": checksum}
