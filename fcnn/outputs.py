"""Output paths of a training run, checked before any training: nothing the user did not ask to
replace is replaced, and nothing that could not be written is found out only after an epoch.

    check_outputs(save_path, plot_dir, data_path, into_resumed)   raises UsageError naming the option
    PICTURES                                                       what --plot writes besides metrics.jsonl
    say(text), tell(message, status)                               stdout that fails by name; stderr

A failed stdout (a closed pipe: `| head -3`; a full disk) raises OutputStreamFailed, which says
it was the output stream; the script saves each epoch before printing its line, so nothing is lost.
"""

import os
import sys
import tempfile

from fcnn.checkpoint import CheckpointError, is_metrics_file, load_checkpoint, metrics_path, write_metrics
from fcnn.file_kinds import not_a_file
from fcnn.settings import UsageError

# What fcnn.plots.write_run_plots writes into the --plot folder (and metrics.jsonl beside them).
PICTURES = ("curves.png", "filters.png", "confusion.png", "mistakes.png")


def refuse(option, path_given, problem):
    raise UsageError(f"{option} {path_given}: {problem}")


def check_folder_writable(option, path_given, folder):
    """Refuse a folder no file can be created in: tried for real, since root ignores permission bits."""
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):  # a missing folder is created later: its parent decides
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        refuse(option, path_given, f"{existing} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        refuse(option, path_given, f"cannot create files in {existing} ({error.strerror or error})")


def check_replaceable(option, path_given, path, is_ours, what):
    """Refuse to replace `path` unless it is missing, or one of our own files (`what`) and writable."""
    if not os.path.lexists(path):
        return
    subject = "" if path == path_given else f"{path} "
    if not os.path.isfile(path):
        refuse(option, path_given, f"{subject}{not_a_file(path)}; fcnn replaces only {what}")
    # Mode bits, not os.access alone: root may write anything, but a file its owner made
    # read-only is one the user wants kept.
    if not os.stat(path).st_mode & 0o222 or not os.access(path, os.W_OK):
        refuse(option, path_given, f"{subject}is write-protected; fcnn does not replace it")
    if not is_ours(path):
        refuse(option, path_given, f"{subject}exists and is not {what}; fcnn replaces only {what}. "
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


def metrics_owner(save_path):
    """The other checkpoint name whose metrics file is save_path's too (run -> run.npz, run.npz -> run)."""
    root, extension = os.path.splitext(save_path)
    return root if extension == ".npz" else save_path + ".npz"


def check_save(option, save_path, data_path, into_resumed):
    """The checkpoint and its metrics file may be written: see check_outputs."""
    if data_path and same_file(save_path, data_path):
        refuse(option, save_path, "is the data set given as --data; fcnn never replaces it")
    check_folder_writable(option, save_path, os.path.dirname(os.path.abspath(save_path)))
    metrics, owner = metrics_path(save_path), metrics_owner(save_path)
    if os.path.lexists(metrics) and os.path.lexists(owner):
        refuse(option, save_path, f"its metrics file {metrics} belongs to the checkpoint {owner} beside it; "
                                  f"fcnn does not replace another run's metrics. Choose another path")
    # A resumed file has just been loaded as a checkpoint: no need to read it again.
    check_replaceable(option, save_path, save_path, (lambda path: True) if into_resumed else is_checkpoint,
                      "an fcnn checkpoint")
    check_replaceable(option, save_path, metrics, is_metrics_file, "a metrics file (JSON lines)")


def check_plot(plot_dir):
    """The --plot folder may take metrics.jsonl and the PICTURES: see check_outputs."""
    if os.path.exists(plot_dir) and not os.path.isdir(plot_dir):
        refuse("--plot", plot_dir, "exists and is not a folder")
    check_folder_writable("--plot", plot_dir, plot_dir)
    check_replaceable("--plot", plot_dir, os.path.join(plot_dir, "metrics.jsonl"), is_metrics_file,
                      "a metrics file (JSON lines)")
    for picture in PICTURES:
        check_replaceable("--plot", plot_dir, os.path.join(plot_dir, picture), is_png, "a PNG picture")


def check_outputs(save_path, plot_dir, data_path, into_resumed):
    """Before any training: refuse every output that would replace what the user did not ask to
    replace, or that could not be written. Raises UsageError naming the option and the path.

    save_path: the checkpoint (its metrics file beside it) or None; plot_dir: the --plot folder
    or None; data_path: the --data path or None; into_resumed: save_path is the --resume file,
    saved to because no --save was given.
    """
    outputs = []
    if save_path:
        option = "--resume" if into_resumed else "--save"
        try:
            check_save(option, save_path, data_path, into_resumed)
        except UsageError as problem:
            if not into_resumed:
                raise
            raise UsageError(f"{problem}; without --save a resumed run is saved to the file it resumed: "
                             "pass --save PATH to save it elsewhere") from None
        outputs += [save_path, metrics_path(save_path)]
    if plot_dir:
        check_plot(plot_dir)
        outputs += [os.path.join(plot_dir, name) for name in ("metrics.jsonl", *PICTURES)]
    real = [os.path.realpath(path) for path in outputs]
    for index, path in enumerate(real):
        if path in real[:index]:
            raise UsageError(f"--save and --plot would both write {outputs[index]}; choose paths apart")


def make_save_folder(save_path):
    """Create the folders a checkpoint path names that do not exist yet (after check_outputs)."""
    if save_path:
        os.makedirs(os.path.dirname(os.path.abspath(save_path)), exist_ok=True)


def write_plot_metrics(plot_dir, metrics):
    """The --plot folder, made if missing, and the run's metrics.jsonl in it."""
    os.makedirs(plot_dir, exist_ok=True)
    write_metrics(os.path.join(plot_dir, "metrics.jsonl"), metrics)


class OutputStreamFailed(OSError):
    """Standard output could not be written (a closed pipe, a full disk): not a file of the run."""


def say(text):
    """Print `text` to stdout now; OutputStreamFailed, saying so, if stdout cannot take it."""
    try:
        print(text, flush=True)
    except OSError as error:
        # The interpreter flushes stdout once more at exit: aim it at /dev/null so that the
        # failure is not reported a second time with a traceback (as Python's docs advise).
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):  # a stream with no file descriptor of its own
            pass
        raise OutputStreamFailed(f"could not write to the output stream (stdout): {error.strerror or error}") from error


def tell(message, status, lead=""):
    """Print the script's message to stderr, after `lead` (a newline ends a progress bar's line);
    a failing stderr is ignored, since nowhere is left to say it. Returns status."""
    try:
        print(f"{lead}train_mnist.py: {message}", file=sys.stderr, flush=True)
    except OSError:
        pass
    return status
