"""The training script's command line and the lines it prints about a run.

    parse_args(argv)       -> argparse.Namespace; each setting's type, range and help from fcnn.settings
    describe(...)          the header: what is trained, on what, with which settings
    format_epoch(record)   one epoch's line; checkpoint_note(saved): where the last good epoch is
"""

import argparse

from fcnn import settings
from fcnn.training import ARCH_DEFAULTS
from fcnn.tree import tree_paths


def option(key):
    return "--" + key.replace("_", "-")


def path(text):
    """An argparse type for paths: the empty string is refused (it is what an unset variable gives)."""
    if not text:
        raise argparse.ArgumentTypeError("must not be empty (an unset shell variable?)")
    return text


def typed(key):
    """An argparse type that accepts only setting `key`'s valid values, naming the range otherwise."""

    def parse(text):
        try:
            return settings.from_text(key, text)
        except ValueError as problem:
            raise argparse.ArgumentTypeError(str(problem)) from None

    return parse


def parse_args(argv):
    """The training script's arguments (argv: a list of strings, or None for sys.argv[1:])."""
    defaults = "; ".join(f"{arch}: " + ", ".join(f"{option(key)} {value}" for key, value in values.items())
                         for arch, values in ARCH_DEFAULTS.items())
    parser = argparse.ArgumentParser(
        prog="train_mnist.py",
        description="Train a convolutional network on MNIST with fcnn and report its test accuracy.",
        epilog=f"Defaults per architecture ({defaults}). With --resume, settings not given on the command line "
        "come from the checkpoint. Exit codes: 0 done, 1 training diverged (or a checkpoint or the output "
        "stream could not be written), 2 bad arguments, data or checkpoint, 130 interrupted (Ctrl-C), 143 "
        "terminated (SIGTERM); a run that stops early keeps the checkpoint of its last finished epoch.",
    )
    for key, rule in settings.SETTINGS.items():
        kind = {"choices": rule.choices} if rule.choices else {"type": path if rule.kind is str else typed(key)}
        parser.add_argument(option(key), metavar=rule.metavar, help=rule.help, **kind)
    parser.add_argument("--allow-other-data", action="store_true", help="with --resume and --data: train on "
                        "other data than the checkpoint's (refused without it)")
    parser.add_argument("--save", type=path, metavar="PATH", help="checkpoint .npz written after every epoch, "
                        "with PATH-without-.npz.metrics.jsonl beside it (default with --resume: the resumed "
                        "file); replaces only an fcnn checkpoint")
    parser.add_argument("--resume", type=path, metavar="PATH", help="continue the run saved in this checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (the per-epoch lines stay)")
    parser.add_argument("--plot", type=path, metavar="DIR", help="draw curves, filters, confusion matrix and "
                        "mistakes into DIR after training (needs matplotlib)")
    args = parser.parse_args(argv)
    if args.allow_other_data and not (args.resume and args.data):
        parser.error("--allow-other-data needs --resume and --data PATH, the other data to train on")
    return args


def plural(count, noun):
    return f"{count} {noun}" + ("" if count == 1 else "s")


def describe(run, params, done, train_images, test_images, note=""):
    """The header: what is trained, on what, with which settings (run: fcnn.settings.resolve's)."""
    count = sum(array.size for _, array in tree_paths(params))
    source = run["data"] or "bundled MNIST (fcnn/mnist, SHA-256 verified)"
    return (
        f"fcnn: {run['arch']} net ({count:,} parameters) on the {run['backend']} backend | "
        f"data: {source}, {train_images} train / {test_images} test images\n"
        f"      batch {run['batch_size']}, lr {run['lr']:g}, {optimizer_text(run)}, "
        f"lr decay {run['lr_decay']:g}, {shift_text(run['shift'])}seed {run['seed']}, epochs {done + 1}..{run['epochs']}"
        + (f"\n      note: {note}" if note else "")
    )


def describe_tuned_tiles(params):
    """The start-up line's note on the tuned conv forward: the CPU numba compiles for, and the
    register tile each conv layer (a 4-D "w") gets on it (fcnn.kernels.tuned.machine)."""
    from fcnn.kernels.tuned import machine

    name, _ = machine.target_cpu()
    tiles = ", ".join(f"{layer} {machine.conv_forward_tile(C, F, KH, KW)}"
                      for layer, arrays in params.items() if arrays.get("w") is not None and arrays["w"].ndim == 4
                      for F, C, KH, KW in [arrays["w"].shape])
    return f"tuned conv forward for {machine.target_instruction_set()} ({name}): {tiles}"


def shift_text(shift):
    """'images shifted up to 2 px, ' for a run that shifts its training images, else ''."""
    return f"images shifted up to {shift} px, " if shift else ""


def optimizer_text(run):
    """'momentum 0.9' for SGD (as before other optimisers existed), else the optimiser's name;
    then the weight decay unless it is 0."""
    text = f"momentum {run['momentum']:g}" if run["optimizer"] == "sgd" else run["optimizer"]
    return text + (f", weight decay {run['weight_decay']:g}" if run["weight_decay"] else "")


def format_epoch(record, epochs):
    return (
        f"epoch {record['epoch']}/{epochs}  lr {record['lr']:.4g}  train loss {record['train_loss']:.4f}  "
        f"train acc {100 * record['train_accuracy']:.2f}%  test acc {100 * record['test_accuracy']:.2f}%  "
        f"{record['seconds']:.1f} s ({record['images_per_second']:.0f} images/s)"
    )


def checkpoint_note(saved):
    """Where the last complete epoch is safe (saved: (path, epoch) or None), for a run that stops early."""
    if not saved:
        return ""
    path, epoch = saved
    return f"\ntrain_mnist.py: the last good checkpoint, {path}, holds epoch {epoch} (go on with --resume {path})"
