"""Train an fcnn network on MNIST from the command line: the story of one run, top to bottom.

    python scripts/train_mnist.py                      # seed net, 5 epochs, the fastest backend here
    python scripts/train_mnist.py --arch lenet5 --save runs/lenet5.npz --plot runs/lenet5

arguments -> settings, outputs and data (every refusal comes before training) -> parameters ->
epochs (train, test, save, then print) -> report. What keeps a run safe lives in the package,
tested there: fcnn.settings (one table checks every setting, typed or resumed), fcnn.outputs (no
output replaces what the user did not ask to replace; a failed stdout says so), fcnn.stop_signals
(Ctrl-C stops between steps), fcnn.training (divergence). docs/faults.md lists every fault.
"""

import sys
import time

import numpy as np
from tqdm import tqdm

import fcnn
from fcnn import keep_freed_memory, settings, use_one_blas_thread
from fcnn.checkpoint import generator_from_state, load_checkpoint, metrics_path, save_checkpoint, write_metrics
from fcnn.command_line import checkpoint_note, describe, describe_tuned_tiles, format_epoch, parse_args, plural
from fcnn.data import checksum, load_mnist, scale
from fcnn.outputs import OutputStreamFailed, check_outputs, make_save_folder, say, tell, write_plot_metrics
from fcnn.stop_signals import StopSignals, Stopped, stop_of
from fcnn.thread_count import check_thread_count
from fcnn.training import TrainingDiverged, evaluate, fresh_state, learning_rate, train_epoch, warm_up

EXIT_FAILED, EXIT_USAGE = 1, 2
EPOCH_SETTINGS = ("optimizer", "momentum", "weight_decay", "shift")  # how train_epoch steps


def main(argv=None):
    """Run the script with argv (sys.argv[1:] if None); returns the exit status."""
    try:
        args = parse_args(argv)
    except SystemExit as exit_request:  # --help, or argparse's own refusal (status 2)
        return exit_request.code
    with StopSignals() as stop:
        try:  # Settings, outputs and data: everything that can be refused, before any training.
            warning = check_thread_count()
            if warning:
                tell(warning, 0)
            if args.plot:
                import fcnn.plots as plots  # matplotlib is optional: only --plot needs it

                plots.require_matplotlib()
            checkpoint = {**load_checkpoint(args.resume), "path": args.resume} if args.resume else None
            run = settings.resolve(vars(args), checkpoint)
            save_path = args.save or args.resume
            check_outputs(save_path, args.plot, run["data"], into_resumed=not args.save and bool(args.resume))
            x_train, y_train, x_test, y_test = load_mnist(run["data"])
            data_sha256 = checksum(x_train, y_train, x_test, y_test)
            data_note = settings.check_same_data(run, checkpoint, data_sha256, args.allow_other_data)
            make_save_folder(save_path)
            stop.check()
        except (ValueError, OSError, ImportError) as problem:  # UsageError, CheckpointError, DataFormatError, ...
            return tell(f"error: {problem}", EXIT_USAGE)
        except (Stopped, SystemError) as problem:
            return stopped(problem, "before training started")
        train, test = slice(run["train_limit"]), slice(run["test_limit"])
        x_train, y_train, test_images, y_test = scale(x_train[train]), y_train[train], x_test[test], y_test[test]
        x_test = scale(test_images)

        # Three independent streams from one seed: the initial weights, the data (its order, any shifts), the dropout masks.
        init_seed, shuffle_seed, dropout_seed = np.random.SeedSequence(run["seed"]).spawn(3)
        if checkpoint:
            params, moments, rng = checkpoint["params"], checkpoint["optimizer_state"], generator_from_state(checkpoint["rng_state"])
            model_state, dropout_state = checkpoint["model_state"], checkpoint["dropout_rng_state"]
            # A network without dropout keeps no dropout generator: it never draws from the fresh one.
            dropout_rng = generator_from_state(dropout_state) if dropout_state else np.random.default_rng(dropout_seed)
            done, metrics, saved = checkpoint["epoch"], checkpoint["metrics"], (args.resume, checkpoint["epoch"])
        else:
            params = fcnn.init(run["arch"], seed=np.random.default_rng(init_seed))
            moments, rng, done, metrics, saved = fresh_state(run["optimizer"], params), np.random.default_rng(shuffle_seed), 0, [], None
            model_state, dropout_rng = fcnn.init_state(run["arch"]), np.random.default_rng(dropout_seed)
        if done >= run["epochs"]:
            print(f"{args.resume} already holds {plural(done, 'epoch')}; pass --epochs {done + 1} or more to go on")
            return 0

        try:
            say(describe(run, params, done, len(x_train), len(x_test), data_note))
            seconds = warm_up(params, x_train, y_train, run["arch"], run["backend"])
            say(f"      {run['backend']} kernels ready in {seconds:.1f} s (a first step, compilation included)")
            if run["backend"] == "tuned":
                say(f"      {describe_tuned_tiles(params)}")
            stop.check()
            for epoch in range(done, run["epochs"]):
                lr = learning_rate(run["lr"], run["lr_decay"], epoch)
                with tqdm(total=len(x_train), desc=f"epoch {epoch + 1}/{run['epochs']}", unit="img", leave=False,
                          disable=args.quiet or not sys.stderr.isatty(), mininterval=0.25) as bar:

                    def on_step(step, steps, images, mean_loss):
                        bar.set_postfix(loss=f"{mean_loss:.4f}", refresh=False)
                        bar.update(images)
                        stop.check()

                    start = time.perf_counter()
                    params, moments, stats, model_state = train_epoch(
                        params, moments, x_train, y_train, run["arch"], run["backend"], lr=lr, batch_size=run["batch_size"],
                        rng=rng, epoch=epoch, on_step=on_step, model_state=model_state, dropout_rng=dropout_rng,
                        **{key: run[key] for key in EPOCH_SETTINGS})
                    seconds = time.perf_counter() - start
                test_accuracy = evaluate(params, x_test, y_test, run["arch"], run["backend"], model_state=model_state)
                metrics = metrics + [{"epoch": epoch + 1, "lr": lr, "train_loss": stats["train_loss"],
                                      "train_accuracy": stats["train_accuracy"], "test_accuracy": test_accuracy,
                                      "seconds": seconds, "images_per_second": len(x_train) / seconds,
                                      "step_losses": stats["step_losses"]}]
                done = epoch + 1
                if save_path:  # saved before its line is printed: a failed stdout never costs an epoch
                    save_checkpoint(save_path, arch=run["arch"], params=params, optimizer=run["optimizer"],
                                    optimizer_state=moments, model_state=model_state, epoch=done,
                                    rng_state=rng.bit_generator.state, dropout_rng_state=dropout_rng.bit_generator.state,
                                    metrics=metrics, config=settings.config(run, data_sha256))
                    write_metrics(metrics_path(save_path), metrics)
                    saved = (save_path, done)
                say(format_epoch(metrics[-1], run["epochs"]))
                stop.check()
            say(f"test accuracy {100 * metrics[-1]['test_accuracy']:.2f}% after {plural(done, 'epoch')}")
            if args.plot:
                write_plot_metrics(args.plot, metrics)
                for written in plots.write_run_plots(args.plot, params, run["arch"], metrics, test_images, y_test,
                                                     backend=run["backend"], state=model_state):
                    say(f"wrote {written}")
            stop.check()
        except TrainingDiverged as diverged:
            return tell(f"{diverged.finding()}. Try a lower --lr (a tenth, say), a lower --momentum or a larger "
                        f"--batch-size.{checkpoint_note(saved)}", EXIT_FAILED)
        except OutputStreamFailed as problem:
            return tell(f"{problem}; the run stopped with {done} of {plural(run['epochs'], 'epoch')} "
                        f"finished{checkpoint_note(saved)}", EXIT_FAILED)
        except OSError as problem:
            return tell(f"could not write: {problem}{checkpoint_note(saved)}", EXIT_FAILED)
        except MemoryError:
            return tell(f"out of memory (try a smaller --batch-size){checkpoint_note(saved)}", EXIT_FAILED)
        except (Stopped, SystemError) as problem:
            return stopped(problem, f"with {done} of {plural(run['epochs'], 'epoch')} finished{checkpoint_note(saved)}")
    return 0


def stopped(problem, progress):
    """The exit status of a run a signal stopped, after its message; re-raises a problem that is not a stop."""
    stop = stop_of(problem)
    if stop is None:
        raise problem
    return tell(f"{stop} {progress}", stop.status, lead="\n")


if __name__ == "__main__":
    # Process-wide, so here and not in the library: steps reuse freed memory instead of
    # faulting in fresh pages, and BLAS runs on one thread (fcnn/memory.py, fcnn/blas.py say why).
    keep_freed_memory()
    use_one_blas_thread()
    sys.exit(main())
