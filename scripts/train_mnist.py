"""Train an fcnn network on MNIST from the command line: parse, call the library, print, save.

    python scripts/train_mnist.py                      # seed net, numba, 5 epochs (about 15 s once numba has compiled)
    python scripts/train_mnist.py --arch lenet5 --save runs/lenet5.npz --plot runs/lenet5
"""

import argparse
import os
import sys
import time

import numpy as np
from tqdm import tqdm

import fcnn
from fcnn._memory import keep_freed_memory
from fcnn.checkpoint import (
    generator_from_state,
    load_checkpoint,
    metrics_path,
    save_checkpoint,
    write_metrics,
)
from fcnn.data import load_mnist, scale
from fcnn.training import TrainingDiverged, evaluate, learning_rate, train_epoch

# Settings each architecture trains well with on a 2-core machine (measured; see the README).
ARCH_DEFAULTS = {
    "seed": {"backend": "numba", "epochs": 5, "batch_size": 32, "lr": 0.2, "momentum": 0.0, "lr_decay": 0.6},
    # numba: 3 epochs took 22.2 s wall (6.7 s per epoch, 99.00 %) against numpy's 35.4 s
    # (10.7 s per epoch, 98.83 %), on an idle 2-core machine.
    "lenet5": {"backend": "numba", "epochs": 3, "batch_size": 64, "lr": 0.05, "momentum": 0.9, "lr_decay": 0.5},
}
# The settings a checkpoint remembers, so that --resume continues the run it was written by.
RUN_SETTINGS = ("arch", "backend", "batch_size", "lr", "momentum", "lr_decay", "seed", "data", "train_limit", "test_limit")

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def parse_args(argv):
    defaults = "; ".join(
        f"{arch}: " + ", ".join(f"{key.replace('_', '-')} {value}" for key, value in settings.items())
        for arch, settings in ARCH_DEFAULTS.items()
    )
    parser = argparse.ArgumentParser(
        prog="train_mnist.py",
        description="Train a convolutional network on MNIST with fcnn and report its test accuracy.",
        epilog=f"Defaults per architecture ({defaults}). With --resume, settings not given on the "
        "command line come from the checkpoint. Exit codes: 0 done, 1 training diverged (or a "
        "checkpoint could not be written), "
        "2 bad arguments or data, 130 interrupted.",
    )
    parser.add_argument("--arch", choices=sorted(fcnn.PRESETS), help="network (default: seed)")
    parser.add_argument("--backend", choices=["numpy", "numba", "loop"], help="kernel backend (default: per arch)")
    parser.add_argument("--epochs", type=int, help="total number of epochs, counting those of a resumed run")
    parser.add_argument("--batch-size", type=int, help="images per SGD step (1 = per-sample SGD)")
    parser.add_argument("--lr", type=float, help="learning rate of the first epoch")
    parser.add_argument("--momentum", type=float, help="momentum of SGD, PyTorch style (0 = plain SGD)")
    parser.add_argument("--lr-decay", type=float, help="lr of epoch e (from 0) is lr * lr_decay**e")
    parser.add_argument("--seed", type=int, help="seed of the initial weights and the shuffling (default: 0)")
    parser.add_argument("--data", metavar="PATH", help="MNIST directory (IDX or CSV) or .npz (default: bundled copy)")
    parser.add_argument("--train-limit", type=int, metavar="N", help="train on the first N training images only")
    parser.add_argument("--test-limit", type=int, metavar="N", help="test on the first N test images only")
    parser.add_argument("--save", metavar="PATH", help="checkpoint .npz written after every epoch, "
                        "with PATH-without-.npz.metrics.jsonl beside it (default with --resume: the resumed file)")
    parser.add_argument("--resume", metavar="PATH", help="continue the run saved in this checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (the per-epoch lines stay)")
    parser.add_argument("--plot", metavar="DIR", help="draw curves, filters, confusion matrix and mistakes "
                        "into DIR after training (needs matplotlib)")
    return parser.parse_args(argv)


def preset_of(checkpoint):
    """The preset name of a checkpoint's architecture; ValueError for one this script cannot train."""
    for name in sorted(fcnn.PRESETS):
        if fcnn.resolve_arch(name) == checkpoint["arch"]:
            return name
    raise ValueError(
        f"the checkpoint holds an architecture that is not one of the presets {sorted(fcnn.PRESETS)}; "
        "this script trains presets only (use fcnn.training from Python for your own)"
    )


def resolve_settings(args, checkpoint):
    """Each run setting from the command line, else the checkpoint, else the arch's default."""
    remembered = {**checkpoint["config"], "arch": preset_of(checkpoint)} if checkpoint else {}
    given = {key: getattr(args, key) for key in RUN_SETTINGS if getattr(args, key) is not None}
    if checkpoint and "arch" in given and given["arch"] != remembered["arch"]:
        raise ValueError(f"--arch {given['arch']} does not match the checkpoint, which holds {remembered['arch']!r}")
    arch = given.get("arch") or remembered.get("arch") or "seed"
    settings = {**ARCH_DEFAULTS[arch], "seed": 0, "data": None, "train_limit": None, "test_limit": None}
    settings.update({key: value for key, value in remembered.items() if key in RUN_SETTINGS})
    settings.update(given)
    settings["arch"] = arch
    settings["epochs"] = args.epochs if args.epochs is not None else ARCH_DEFAULTS[arch]["epochs"]
    for key in ("epochs", "batch_size"):
        if settings[key] < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be at least 1; got {settings[key]}")
    for key in ("train_limit", "test_limit"):
        if settings[key] is not None and settings[key] < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be at least 1; got {settings[key]}")
    if not settings["lr"] > 0 or not 0 <= settings["momentum"] < 1 or not settings["lr_decay"] > 0:
        raise ValueError(
            f"need --lr > 0, 0 <= --momentum < 1 and --lr-decay > 0; got lr {settings['lr']}, "
            f"momentum {settings['momentum']}, lr-decay {settings['lr_decay']}"
        )
    return settings


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
    """Run one tiny step so numba compiles (or loads from its cache) before any timing; seconds."""
    start = time.perf_counter()
    fcnn.loss_and_grads(params, x[:2], y[:2], settings["arch"], settings["backend"])
    return time.perf_counter() - start


def progress_bar(settings, epoch, steps, quiet):
    """A tqdm bar for one epoch on stderr; off with --quiet or when stderr is not a terminal."""
    return tqdm(
        total=steps, desc=f"epoch {epoch + 1}/{settings['epochs']}", unit="step", leave=False,
        disable=quiet or not sys.stderr.isatty(), mininterval=0.25,
    )


def run_epoch(state, data, settings, epoch, quiet):
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
    """Everything that can fail on bad arguments or data, before any training: raises ValueError."""
    plots = None
    if args.plot:
        import fcnn.plots as plots  # matplotlib is optional: only --plot needs it

        plots.require_matplotlib()
    checkpoint = {**load_checkpoint(args.resume), "path": args.resume} if args.resume else None
    settings = resolve_settings(args, checkpoint)
    if args.save:
        os.makedirs(os.path.dirname(os.path.abspath(args.save)), exist_ok=True)
    fcnn.get_backend(settings["backend"])
    return plots, settings, start_state(settings, checkpoint), load_data(settings)


def describe(settings, state, data):
    """The header: what is trained, on what, with which settings."""
    count = sum(array.size for layer in state["params"].values() for array in layer.values())
    return (
        f"fcnn: {settings['arch']} net ({count:,} parameters) on the {settings['backend']} backend | "
        f"data: {data['source']}, {len(data['x_train'])} train / {len(data['x_test'])} test images\n"
        f"      batch {settings['batch_size']}, lr {settings['lr']:g}, momentum {settings['momentum']:g}, "
        f"lr decay {settings['lr_decay']:g}, seed {settings['seed']}, epochs {state['epoch'] + 1}..{settings['epochs']}"
    )


def train(state, data, settings, save_path, quiet):
    """The epoch loop: train, test, print one line, checkpoint. Updates state."""
    if settings["backend"] == "numba":
        seconds = warm_up(state["params"], data["x_train"], data["y_train"], settings)
        print(f"      numba kernels ready in {seconds:.1f} s (compiled, or loaded from numba's cache)", flush=True)
    for epoch in range(state["epoch"], settings["epochs"]):
        record = run_epoch(state, data, settings, epoch, quiet)
        state["metrics"] = state["metrics"] + [record]
        state["epoch"] = epoch + 1
        print(format_epoch(record, settings["epochs"]), flush=True)
        if save_path:
            save(state, settings, save_path)


def plural(count, noun):
    return f"{count} {noun}" + ("" if count == 1 else "s")


def checkpoint_note(state):
    """Where the last complete epoch is safe, for the messages of a run that stops early."""
    if not state["saved"]:
        return ""
    path, epoch = state["saved"]
    return f"\ntrain_mnist.py: the last good checkpoint, {path}, holds epoch {epoch} (go on with --resume {path})"


def main(argv=None):
    args = parse_args(argv)
    try:
        plots, settings, state, data = setup(args)
    except (ValueError, OSError, ImportError) as error:
        # CheckpointError, DataFormatError, an unknown arch or backend, missing matplotlib, ...
        print(f"train_mnist.py: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ntrain_mnist.py: interrupted before training started", file=sys.stderr)
        return EXIT_INTERRUPTED
    if state["epoch"] >= settings["epochs"]:
        print(f"{args.resume} already holds {plural(state['epoch'], 'epoch')}; pass --epochs {state['epoch'] + 1} or more to go on")
        return 0
    save_path = args.save or args.resume
    print(describe(settings, state, data), flush=True)
    try:
        train(state, data, settings, save_path, args.quiet)
    except TrainingDiverged as error:
        print(f"train_mnist.py: {error}{checkpoint_note(state)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"\ntrain_mnist.py: interrupted in epoch {state['epoch'] + 1}{checkpoint_note(state)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as error:
        print(f"train_mnist.py: could not write the checkpoint: {error}{checkpoint_note(state)}", file=sys.stderr)
        return EXIT_FAILED
    print(f"test accuracy {100 * state['metrics'][-1]['test_accuracy']:.2f}% after {plural(state['epoch'], 'epoch')}")
    if plots:
        os.makedirs(args.plot, exist_ok=True)
        write_metrics(os.path.join(args.plot, "metrics.jsonl"), state["metrics"])
        for path in plots.write_run_plots(args.plot, state["params"], settings["arch"], state["metrics"],
                                          data["test_images"], data["y_test"], backend=settings["backend"]):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    # Process-wide, so here and not in the library: steps reuse freed memory instead of
    # faulting in fresh pages (seed 2.1 -> 1.35 ms per step; fcnn/_memory.py has the numbers).
    keep_freed_memory()
    sys.exit(main())
