"""Train an fcnn network on MNIST from the command line: parse, call the library, print, save.

    python scripts/train_mnist.py                      # seed net, 5 epochs, the fastest backend here
    python scripts/train_mnist.py --arch lenet5 --save runs/lenet5.npz --plot runs/lenet5

Nothing the user did not ask to replace is ever replaced: every output path is checked before
any training (docs/faults.md lists each fault and bad input, with its exit status and message).
"""

import argparse
import math
import os
import signal
import sys
import tempfile
import time

import numpy as np
from tqdm import tqdm

import fcnn
from fcnn import keep_freed_memory
from fcnn.checkpoint import (
    CheckpointError,
    generator_from_state,
    is_metrics_file,
    load_checkpoint,
    metrics_path,
    save_checkpoint,
    write_metrics,
)
from fcnn.data import load_mnist, scale
from fcnn.kernels import BACKENDS, BackendUnavailableError
from fcnn.training import ARCH_DEFAULTS, TrainingDiverged, evaluate, learning_rate, train_epoch

# The settings a checkpoint remembers, so that --resume continues the run it was written by.
RUN_SETTINGS = ("arch", "backend", "batch_size", "lr", "momentum", "lr_decay", "seed", "data", "train_limit", "test_limit")
# Every numeric setting: its type, its valid range, and how a message says that range. The
# same rules check the command line and the settings a checkpoint brings back.
NUMBERS = {
    "epochs": (int, lambda value: value >= 1, "an integer >= 1"),
    "batch_size": (int, lambda value: value >= 1, "an integer >= 1"),
    "lr": (float, lambda value: 0 < value < math.inf, "a finite number > 0"),
    "momentum": (float, lambda value: 0 <= value < 1, "a number in [0, 1)"),
    "lr_decay": (float, lambda value: 0 < value <= 1, "a number in (0, 1]"),
    "seed": (int, lambda value: value >= 0, "an integer >= 0"),
    "train_limit": (int, lambda value: value >= 1, "an integer >= 1"),
    "test_limit": (int, lambda value: value >= 1, "an integer >= 1"),
}
# What fcnn.plots.write_run_plots writes into the --plot folder (and metrics.jsonl beside them).
PICTURES = ("curves.png", "filters.png", "confusion.png", "mistakes.png")

EXIT_FAILED, EXIT_USAGE = 1, 2
# 128 + the signal's number: the status a shell reports for a process that signal stopped.
STOP_SIGNALS = {signal.SIGINT: ("interrupted (Ctrl-C)", 130), signal.SIGTERM: ("terminated (SIGTERM)", 143)}


class UsageError(ValueError):
    """A bad argument, data set or checkpoint: exit status 2, with a message and no traceback."""


def option(key):
    return "--" + key.replace("_", "-")


def number(key):
    """An argparse type that accepts only NUMBERS[key]'s valid values, naming the range otherwise."""
    kind, valid, wanted = NUMBERS[key]

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not valid(value):
            raise argparse.ArgumentTypeError(f"must be {wanted}; got {text!r}")
        return value

    return parse


def path(text):
    """An argparse type for paths: the empty string is refused (it is what an unset variable gives)."""
    if not text:
        raise argparse.ArgumentTypeError("must not be empty (an unset shell variable?)")
    return text


def parse_args(argv):
    defaults = "; ".join(
        f"{arch}: " + ", ".join(f"{option(key)} {value}" for key, value in settings.items())
        for arch, settings in ARCH_DEFAULTS.items()
    )
    parser = argparse.ArgumentParser(
        prog="train_mnist.py",
        description="Train a convolutional network on MNIST with fcnn and report its test accuracy.",
        epilog=f"Defaults per architecture ({defaults}). With --resume, settings not given on the "
        "command line come from the checkpoint. Exit codes: 0 done, 1 training diverged (or a "
        "checkpoint could not be written), 2 bad arguments, data or checkpoint, 130 interrupted "
        "(Ctrl-C), 143 terminated (SIGTERM); a run that stops early keeps the checkpoint of its "
        "last finished epoch.",
    )
    parser.add_argument("--arch", choices=sorted(fcnn.PRESETS), help="network (default: seed)")
    parser.add_argument("--backend", choices=list(BACKENDS),
                        help="kernel backend (default: the fastest available here, fcnn.default_backend())")
    parser.add_argument("--epochs", type=number("epochs"), help="total number of epochs, counting those of a resumed run")
    parser.add_argument("--batch-size", type=number("batch_size"), help="images per SGD step (1 = per-sample SGD)")
    parser.add_argument("--lr", type=number("lr"), help="learning rate of the first epoch")
    parser.add_argument("--momentum", type=number("momentum"), help="momentum of SGD, PyTorch style (0 = plain SGD)")
    parser.add_argument("--lr-decay", type=number("lr_decay"), help="lr of epoch e (from 0) is lr * lr_decay**e")
    parser.add_argument("--seed", type=number("seed"), help="seed of the initial weights and the shuffling (default: 0)")
    parser.add_argument("--data", type=path, metavar="PATH", help="MNIST directory (IDX or CSV) or .npz (default: bundled copy)")
    parser.add_argument("--train-limit", type=number("train_limit"), metavar="N", help="train on the first N training images only")
    parser.add_argument("--test-limit", type=number("test_limit"), metavar="N", help="test on the first N test images only")
    parser.add_argument("--save", type=path, metavar="PATH", help="checkpoint .npz written after every epoch, "
                        "with PATH-without-.npz.metrics.jsonl beside it (default with --resume: the resumed "
                        "file); replaces only an fcnn checkpoint")
    parser.add_argument("--resume", type=path, metavar="PATH", help="continue the run saved in this checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (the per-epoch lines stay)")
    parser.add_argument("--plot", type=path, metavar="DIR", help="draw curves, filters, confusion matrix and mistakes "
                        "into DIR after training (needs matplotlib)")
    return parser.parse_args(argv)


def preset_of(checkpoint):
    """The preset name of a checkpoint's architecture; UsageError for one this script cannot train."""
    for name in sorted(fcnn.PRESETS):
        if fcnn.resolve_arch(name) == checkpoint["arch"]:
            return name
    raise UsageError(
        f"checkpoint {checkpoint['path']} holds an architecture that is not one of the presets "
        f"{sorted(fcnn.PRESETS)}; this script trains presets only (use fcnn.training from Python for your own)"
    )


def remembered_settings(checkpoint, overridden):
    """The run settings a checkpoint's config holds (except those `overridden` on the command
    line), each checked as strictly as the command line checks its own."""
    where = f"checkpoint {checkpoint['path']}: its config"
    remembered = {key: value for key, value in checkpoint["config"].items() if key in RUN_SETTINGS and key not in overridden}
    for key, value in remembered.items():
        if key in NUMBERS:
            kind, valid, wanted = NUMBERS[key]
            if value is None and key in ("train_limit", "test_limit"):
                continue
            # JSON has one number type and bool is an int in Python: accept exactly what fits.
            fits = isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool)
            try:
                fits = fits and valid(kind(value))
            except OverflowError:  # an integer too large for a float
                fits = False
            if not fits:
                raise UsageError(f"{where} {key!r} must be {wanted}; got {value!r}")
        elif key == "backend" and value not in BACKENDS:
            raise UsageError(f"{where} 'backend' is {value!r}, not one of {list(BACKENDS)}; pass --backend")
        elif key == "data" and not (value is None or isinstance(value, str) and value):
            raise UsageError(f"{where} 'data' must be a path or null; got {value!r}")
    return {**remembered, "arch": preset_of(checkpoint)}


def resolve_settings(args, checkpoint):
    """Each run setting from the command line, else the checkpoint, else the arch's default."""
    given = {key: getattr(args, key) for key in RUN_SETTINGS if getattr(args, key) is not None}
    remembered = remembered_settings(checkpoint, given) if checkpoint else {}
    if checkpoint and "arch" in given and given["arch"] != remembered["arch"]:
        raise UsageError(f"--arch {given['arch']} does not match the checkpoint, which holds {remembered['arch']!r}")
    arch = given.get("arch") or remembered.get("arch") or "seed"
    settings = {**ARCH_DEFAULTS[arch], "seed": 0, "data": None, "train_limit": None, "test_limit": None}
    settings.update(remembered)
    settings.update(given)
    settings["arch"] = arch
    settings["epochs"] = args.epochs if args.epochs is not None else ARCH_DEFAULTS[arch]["epochs"]
    if "backend" not in settings:
        settings["backend"] = fcnn.default_backend()
    try:
        fcnn.get_backend(settings["backend"])
    except BackendUnavailableError as error:
        source = "--backend" if "backend" in given else "the checkpoint's backend (pass another with --backend)"
        raise UsageError(f"{source}: {error}") from error
    return settings


def refuse(option_name, path_given, problem):
    raise UsageError(f"{option_name} {path_given}: {problem}")


def check_folder_writable(option_name, path_given, folder):
    """Refuse a folder no file can be created in: tried for real, since root ignores permission bits."""
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):  # a missing folder is created later: its parent decides
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        refuse(option_name, path_given, f"{existing} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        refuse(option_name, path_given, f"cannot create files in {existing} ({error.strerror or error})")


def check_replaceable(option_name, path_given, path, is_ours, what):
    """Refuse to replace `path` unless it is missing, or one of our own files (`what`) and writable."""
    if not os.path.lexists(path):
        return
    subject = "" if path == path_given else f"{path} "
    if not os.path.isfile(path):
        refuse(option_name, path_given, f"{subject}exists and is not a regular file; fcnn replaces only {what}")
    # Mode bits, not os.access alone: root may write anything, but a file its owner made
    # read-only is one the user wants kept.
    if not os.stat(path).st_mode & 0o222 or not os.access(path, os.W_OK):
        refuse(option_name, path_given, f"{subject}is write-protected; fcnn does not replace it")
    if not is_ours(path):
        refuse(option_name, path_given, f"{subject}exists and is not {what}; fcnn replaces only {what}. "
                                        "Choose another path, or move that file away")


def is_checkpoint(path):
    try:
        load_checkpoint(path)
    except CheckpointError:
        return False
    return True


def is_png(path):
    with open(path, "rb") as file:
        return file.read(8) == b"\x89PNG\r\n\x1a\n"


def same_file(a, b):
    return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)


def check_outputs(save_path, plot_dir, settings, into_resumed):
    """Before any training: refuse every output that would replace what the user did not ask to
    replace, or that could not be written. Raises UsageError naming the option and the path.

    into_resumed: save_path is the --resume file, saved to because no --save was given.
    """
    outputs = []
    if save_path:
        name = "--resume" if into_resumed else "--save"
        if settings["data"] and same_file(save_path, settings["data"]):
            refuse(name, save_path, "is the data set given as --data; fcnn never replaces it")
        check_folder_writable(name, save_path, os.path.dirname(os.path.abspath(save_path)))
        try:
            # A resumed file has just been loaded as a checkpoint: no need to read it again.
            check_replaceable(name, save_path, save_path, (lambda path: True) if into_resumed else is_checkpoint,
                              "an fcnn checkpoint")
            check_replaceable(name, save_path, metrics_path(save_path), is_metrics_file, "a metrics file (JSON lines)")
        except UsageError as problem:
            if not into_resumed:
                raise
            raise UsageError(f"{problem}; without --save a resumed run is saved to the file it resumed: "
                             "pass --save PATH to save it elsewhere") from None
        outputs += [save_path, metrics_path(save_path)]
    if plot_dir:
        if os.path.exists(plot_dir) and not os.path.isdir(plot_dir):
            refuse("--plot", plot_dir, "exists and is not a folder")
        check_folder_writable("--plot", plot_dir, plot_dir)
        check_replaceable("--plot", plot_dir, os.path.join(plot_dir, "metrics.jsonl"), is_metrics_file,
                          "a metrics file (JSON lines)")
        for picture in PICTURES:
            check_replaceable("--plot", plot_dir, os.path.join(plot_dir, picture), is_png, "a PNG picture")
        outputs += [os.path.join(plot_dir, name) for name in ("metrics.jsonl", *PICTURES)]
    real = [os.path.realpath(path) for path in outputs]
    for index, path in enumerate(real):
        if path in real[:index]:
            raise UsageError(f"--save and --plot would both write {outputs[index]}; choose paths apart")


def load_data(settings):
    """The first train_limit / test_limit images and labels, scaled, plus the raw test images for plots."""
    x_train, y_train, x_test, y_test = load_mnist(settings["data"])
    train, test = slice(settings["train_limit"]), slice(settings["test_limit"])
    return {
        "x_train": scale(x_train[train]), "y_train": y_train[train],
        "x_test": scale(x_test[test]), "y_test": y_test[test], "test_images": x_test[test],
        "source": settings["data"] or "bundled MNIST (fcnn/mnist, SHA-256 verified)",
    }


def warm_up(params, x, y, settings):
    """Run one tiny step so a compiled backend compiles (or loads its cache) before any timing; seconds."""
    start = time.perf_counter()
    fcnn.loss_and_grads(params, x[:2], y[:2], settings["arch"], settings["backend"])
    return time.perf_counter() - start


def progress_bar(settings, epoch, steps, quiet):
    """A tqdm bar for one epoch on stderr; off with --quiet or when stderr is not a terminal."""
    return tqdm(
        total=steps, desc=f"epoch {epoch + 1}/{settings['epochs']}", unit="step", leave=False,
        disable=quiet or not sys.stderr.isatty(), mininterval=0.25,
    )


class Stopped(Exception):
    """A stop signal (SIGINT, SIGTERM) took effect; `signum` says which."""

    def __init__(self, signum):
        super().__init__(STOP_SIGNALS[signum][0])
        self.signum = signum


class StopSignals:
    """Signal handlers that only take note, so that no exception is ever raised inside a
    compiled kernel (which numba reports as a SystemError): training checks `check()` between
    steps and stops there. A second signal stops at once, as a user pressing Ctrl-C again expects.
    """

    def __init__(self):
        self.signum = None
        self.previous = {}

    def __enter__(self):
        for signum in STOP_SIGNALS:
            # A signal ignored at start-up stays ignored (as Python itself leaves it): a shell
            # starts background jobs with SIGINT ignored, so that Ctrl-C is not for them.
            if signal.getsignal(signum) is not signal.SIG_IGN:
                self.previous[signum] = signal.signal(signum, self.note)
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def note(self, signum, frame):
        if self.signum is not None:
            raise Stopped(signum)
        self.signum = signum

    def check(self):
        if self.signum is not None:
            raise Stopped(self.signum)


def stop_of(error):
    """The Stopped exception behind `error`, if any: a second signal's Stopped raised while a
    compiled kernel ran reaches Python as a SystemError whose cause it is."""
    while error is not None and not isinstance(error, Stopped):
        error = error.__cause__ or error.__context__
    return error


def run_epoch(state, data, settings, epoch, quiet, stop):
    """Train one epoch and test; returns the epoch's metrics record (and updates state)."""
    lr = learning_rate(settings["lr"], settings["lr_decay"], epoch)
    steps = -(-len(data["x_train"]) // settings["batch_size"])
    start = time.perf_counter()
    seen = {"images": 0, "loss": 0.0}
    with progress_bar(settings, epoch, steps, quiet) as bar:

        def on_step(step, steps, images, loss):
            seen["images"] += images
            seen["loss"] += loss * images
            bar.set_postfix(
                loss=f"{seen['loss'] / seen['images']:.4f}",
                images_per_s=f"{seen['images'] / (time.perf_counter() - start):.0f}",
                refresh=False,
            )
            bar.update()
            stop.check()

        state["params"], state["velocity"], stats = train_epoch(
            state["params"], state["velocity"], data["x_train"], data["y_train"], settings["arch"], settings["backend"],
            lr=lr, momentum=settings["momentum"], batch_size=settings["batch_size"], rng=state["rng"],
            epoch=epoch, on_step=on_step,
        )
    seconds = time.perf_counter() - start
    test_accuracy = evaluate(state["params"], data["x_test"], data["y_test"], settings["arch"], settings["backend"])
    return {
        "epoch": epoch + 1,
        "lr": lr,
        "train_loss": stats["train_loss"],
        "train_accuracy": stats["train_accuracy"],
        "test_accuracy": test_accuracy,
        "seconds": seconds,
        "images_per_second": len(data["x_train"]) / seconds,
        "step_losses": stats["step_losses"],
    }


def save(state, settings, save_path):
    """Checkpoint and metrics file after an epoch, both written atomically."""
    config = {key: settings[key] for key in RUN_SETTINGS}
    save_checkpoint(
        save_path, arch=settings["arch"], params=state["params"], velocity=state["velocity"],
        epoch=state["epoch"], rng_state=state["rng"].bit_generator.state, metrics=state["metrics"], config=config,
    )
    write_metrics(metrics_path(save_path), state["metrics"])
    state["saved"] = (save_path, state["epoch"])


def start_state(settings, checkpoint):
    """params, velocity, shuffling rng, epochs done and metrics: fresh from the seed, or resumed."""
    if checkpoint:
        return {
            "params": checkpoint["params"], "velocity": checkpoint["velocity"],
            "rng": generator_from_state(checkpoint["rng_state"]),
            "epoch": checkpoint["epoch"], "metrics": checkpoint["metrics"],
            "saved": (checkpoint["path"], checkpoint["epoch"]),
        }
    # Two independent streams from one seed: the initial weights, and the shuffling order.
    init_seed, shuffle_seed = np.random.SeedSequence(settings["seed"]).spawn(2)
    params = fcnn.init(settings["arch"], seed=np.random.default_rng(init_seed))
    return {
        "params": params, "velocity": fcnn.zeros_like(params), "rng": np.random.default_rng(shuffle_seed),
        "epoch": 0, "metrics": [], "saved": None,
    }


def format_epoch(record, epochs):
    return (
        f"epoch {record['epoch']}/{epochs}  lr {record['lr']:.4g}  train loss {record['train_loss']:.4f}  "
        f"train acc {100 * record['train_accuracy']:.2f}%  test acc {100 * record['test_accuracy']:.2f}%  "
        f"{record['seconds']:.1f} s ({record['images_per_second']:.0f} images/s)"
    )


def setup(args):
    """Everything that can fail on bad arguments, data or output paths, before any training.

    Returns (plots module or None, settings, state, data, save path); raises UsageError,
    CheckpointError, DataFormatError, ImportError (matplotlib missing) or OSError.
    """
    plots = None
    if args.plot:
        import fcnn.plots as plots  # matplotlib is optional: only --plot needs it

        plots.require_matplotlib()
    checkpoint = {**load_checkpoint(args.resume), "path": args.resume} if args.resume else None
    settings = resolve_settings(args, checkpoint)
    save_path = args.save or args.resume
    check_outputs(save_path, args.plot, settings, into_resumed=not args.save and bool(args.resume))
    data = load_data(settings)
    if save_path:
        os.makedirs(os.path.dirname(os.path.abspath(save_path)), exist_ok=True)
    return plots, settings, start_state(settings, checkpoint), data, save_path


def describe(settings, state, data):
    """The header: what is trained, on what, with which settings."""
    count = sum(array.size for layer in state["params"].values() for array in layer.values())
    return (
        f"fcnn: {settings['arch']} net ({count:,} parameters) on the {settings['backend']} backend | "
        f"data: {data['source']}, {len(data['x_train'])} train / {len(data['x_test'])} test images\n"
        f"      batch {settings['batch_size']}, lr {settings['lr']:g}, momentum {settings['momentum']:g}, "
        f"lr decay {settings['lr_decay']:g}, seed {settings['seed']}, epochs {state['epoch'] + 1}..{settings['epochs']}"
    )


def train(state, data, settings, save_path, quiet, stop):
    """The epoch loop: train, test, print one line, checkpoint; stops between steps on a signal."""
    seconds = warm_up(state["params"], data["x_train"], data["y_train"], settings)
    print(f"      {settings['backend']} kernels ready in {seconds:.1f} s (a first step, compilation included)", flush=True)
    stop.check()
    for epoch in range(state["epoch"], settings["epochs"]):
        record = run_epoch(state, data, settings, epoch, quiet, stop)
        state["metrics"] = state["metrics"] + [record]
        state["epoch"] = epoch + 1
        print(format_epoch(record, settings["epochs"]), flush=True)
        if save_path:
            save(state, settings, save_path)
        stop.check()


def plural(count, noun):
    return f"{count} {noun}" + ("" if count == 1 else "s")


def checkpoint_note(state):
    """Where the last complete epoch is safe, for the messages of a run that stops early."""
    if not state["saved"]:
        return ""
    path, epoch = state["saved"]
    return f"\ntrain_mnist.py: the last good checkpoint, {path}, holds epoch {epoch} (go on with --resume {path})"


def error(message):
    print(f"train_mnist.py: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def stopped(problem, state=None, settings=None):
    """The exit status and message of a run a signal stopped; re-raises a problem that is not a stop."""
    stop = stop_of(problem)
    if stop is None:
        raise problem
    what, status = STOP_SIGNALS[stop.signum]
    if state is None:
        print(f"\ntrain_mnist.py: {what} before training started", file=sys.stderr)
    else:
        print(f"\ntrain_mnist.py: {what} with {state['epoch']} of {plural(settings['epochs'], 'epoch')} finished"
              f"{checkpoint_note(state)}", file=sys.stderr)
    return status


def draw(plots, folder, state, settings, data):
    """The --plot pictures and metrics.jsonl of the finished run."""
    os.makedirs(folder, exist_ok=True)
    write_metrics(os.path.join(folder, "metrics.jsonl"), state["metrics"])
    for written in plots.write_run_plots(folder, state["params"], settings["arch"], state["metrics"],
                                         data["test_images"], data["y_test"], backend=settings["backend"]):
        print(f"wrote {written}")


def main(argv=None):
    """Run the script with argv (sys.argv[1:] if None); returns the exit status."""
    try:
        args = parse_args(argv)
    except SystemExit as exit_request:  # --help, or argparse's own refusal (status 2)
        return exit_request.code
    with StopSignals() as stop:
        try:
            plots, settings, state, data, save_path = setup(args)
            stop.check()
        except (ValueError, OSError, ImportError) as problem:
            # UsageError, CheckpointError, DataFormatError, missing matplotlib, ...
            return error(problem)
        except (Stopped, SystemError) as problem:
            return stopped(problem)
        if state["epoch"] >= settings["epochs"]:
            print(f"{args.resume} already holds {plural(state['epoch'], 'epoch')}; pass --epochs {state['epoch'] + 1} or more to go on")
            return 0
        print(describe(settings, state, data), flush=True)
        try:
            train(state, data, settings, save_path, args.quiet, stop)
            print(f"test accuracy {100 * state['metrics'][-1]['test_accuracy']:.2f}% after {plural(state['epoch'], 'epoch')}")
            if plots:
                draw(plots, args.plot, state, settings, data)
            stop.check()
        except TrainingDiverged as diverged:
            print(f"train_mnist.py: {diverged.finding()}. Try a lower --lr (a tenth, say), a lower --momentum "
                  f"or a larger --batch-size.{checkpoint_note(state)}", file=sys.stderr)
            return EXIT_FAILED
        except OSError as problem:
            print(f"train_mnist.py: could not write: {problem}{checkpoint_note(state)}", file=sys.stderr)
            return EXIT_FAILED
        except MemoryError:
            print(f"train_mnist.py: out of memory (try a smaller --batch-size){checkpoint_note(state)}", file=sys.stderr)
            return EXIT_FAILED
        except (Stopped, SystemError) as problem:
            return stopped(problem, state, settings)
    return 0


if __name__ == "__main__":
    # Process-wide, so here and not in the library: steps reuse freed memory instead of
    # faulting in fresh pages (fcnn/memory.py says why).
    keep_freed_memory()
    sys.exit(main())
