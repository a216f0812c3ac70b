"""Checkpoints: a training run's full state in one .npz, written atomically, checked on load.

No pickle: arrays are stored as `params/conv1/w`, `velocity/conv1/w`, ...; the architecture,
RNG state, metrics and settings as JSON text in 0-d string arrays; FORMAT_VERSION says which.
"""

import json
import os
import secrets
import zipfile
import zlib

import numpy as np

from fcnn.model import init, resolve_arch

FORMAT_VERSION = 1
# JSON text entries beside the arrays; "config" holds the training settings (lr, batch size, ...).
TEXT_KEYS = ("arch", "rng_state", "metrics", "config")
SCALAR_KEYS = ("format_version", "epoch")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or does not fit its architecture."""


def atomic_write(path, write):
    """Call write(file) on a temporary file beside `path`, then move it onto `path` in one step.

    A crash at any point leaves either the old file or the complete new one, never a torn file:
    the data are flushed and fsync'ed before os.replace, which is atomic within a directory.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    # The name is chosen before the file exists, so that a Ctrl-C arriving anywhere after its
    # creation, even inside the call that creates it, finds it in the cleanup below.
    temp_path = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    try:
        # O_EXCL: never an existing file; mode 0666 less the umask, as a plain open() gives.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        with os.fdopen(os.open(temp_path, flags, 0o666), "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_path, path)
    except BaseException:
        # BaseException: a Ctrl-C in the middle must not leave the temporary file behind either.
        if os.path.exists(temp_path):
            os.remove(temp_path)
        raise


def generator_from_state(state):
    """A numpy.random.Generator continuing from `state` (a bit_generator.state dict)."""
    bit_generator = getattr(np.random, str(state.get("bit_generator")), None) if isinstance(state, dict) else None
    if not (isinstance(bit_generator, type) and issubclass(bit_generator, np.random.BitGenerator)):
        raise ValueError(f"rng_state must be a numpy bit_generator.state dict; got {state!r:.200}")
    generator = np.random.Generator(bit_generator())
    generator.bit_generator.state = state
    return generator


def save_checkpoint(path, *, arch, params, velocity, epoch, rng_state, metrics=(), config=None):
    """Write the state of a run after `epoch` completed epochs to `path` (.npz), atomically.

    arch: preset name or list of layer specs (stored resolved, so it reads back the same later);
    params, velocity: {"conv1": {"w", "b"}, ...}; rng_state: the shuffling Generator's
    bit_generator.state; metrics: list of per-epoch dicts; config: dict of training settings.
    """
    arrays = {
        "format_version": np.array(FORMAT_VERSION),
        "epoch": np.array(int(epoch)),
        "arch": np.array(json.dumps(resolve_arch(arch))),
        "rng_state": np.array(json.dumps(rng_state)),
        "metrics": np.array(json.dumps(list(metrics))),
        "config": np.array(json.dumps(config or {})),
    }
    for group, tree in (("params", params), ("velocity", velocity)):
        for layer, layer_arrays in tree.items():
            for name, array in layer_arrays.items():
                arrays[f"{group}/{layer}/{name}"] = np.asarray(array)
    atomic_write(path, lambda file: np.savez(file, **arrays))


def _read_arrays(path):
    """Every entry of the .npz at path as {key: array}; CheckpointError if the file is unreadable."""
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path}: no such file")
    # An .npz is a zip archive whose directory sits at the end: a truncated file has none.
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path}: not an .npz (zip) archive; the file is truncated or not a checkpoint")
    key = None
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {}
            for key in archive.files:
                arrays[key] = archive[key]
            return arrays
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        # A zip archive is read lazily, entry by entry: name the entry that broke, if one did.
        where = f"entry {key!r} is corrupt or truncated" if key else "not a readable .npz checkpoint"
        raise CheckpointError(f"checkpoint {path}: {where} ({error})") from error


def _expected_arrays(arch):
    """{"params/conv1/w": shape, ...} for params and velocity of the architecture."""
    template = init(arch, seed=0)
    return {
        f"{group}/{layer}/{name}": array.shape
        for group in ("params", "velocity")
        for layer, layer_arrays in template.items()
        for name, array in layer_arrays.items()
    }


def _text(path, arrays, key):
    """The JSON entry `key`, decoded; CheckpointError if it is not a 0-d string of valid JSON."""
    value = arrays[key]
    if value.shape != () or value.dtype.kind != "U":
        raise CheckpointError(f"checkpoint {path}: entry {key!r} must be a 0-d string; got {value.dtype} {value.shape}")
    try:
        return json.loads(value.item())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"checkpoint {path}: entry {key!r} is not valid JSON ({error})") from error


def _integer(path, arrays, key):
    value = arrays[key]
    if value.shape != () or value.dtype.kind not in "iu" or value < 0:
        raise CheckpointError(f"checkpoint {path}: entry {key!r} must be a 0-d integer >= 0; got {value!r}")
    return int(value)


def _tree(arrays, group):
    tree = {}
    for key, array in arrays.items():
        if key.startswith(group + "/"):
            _, layer, name = key.split("/")
            tree.setdefault(layer, {})[name] = array
    return tree


def load_checkpoint(path):
    """Read and check a checkpoint written by save_checkpoint.

    Returns {"format_version", "epoch", "arch" (resolved list of layer specs), "params",
    "velocity", "rng_state", "metrics", "config"}.
    Raises CheckpointError naming the file and the entry for an unreadable, truncated or corrupt
    file, a missing or unexpected entry, or an array whose shape or dtype does not fit the
    architecture.
    """
    path = os.fspath(path)
    arrays = _read_arrays(path)
    for key in SCALAR_KEYS + TEXT_KEYS:
        if key not in arrays:
            raise CheckpointError(f"checkpoint {path}: missing entry {key!r} (not written by fcnn.save_checkpoint?)")
    version = _integer(path, arrays, "format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path}: entry 'format_version' is {version}; this fcnn reads version {FORMAT_VERSION}")
    try:
        arch = resolve_arch(_text(path, arrays, "arch"))
        expected = _expected_arrays(arch)
    except CheckpointError:
        raise
    except ValueError as error:
        raise CheckpointError(f"checkpoint {path}: entry 'arch' is not a valid architecture ({error})") from error

    stored = set(arrays) - set(SCALAR_KEYS) - set(TEXT_KEYS)
    missing, unexpected = sorted(expected.keys() - stored), sorted(stored - expected.keys())
    if missing:
        raise CheckpointError(f"checkpoint {path}: missing entry {missing[0]!r} required by its architecture")
    if unexpected:
        raise CheckpointError(f"checkpoint {path}: unexpected entry {unexpected[0]!r}; its architecture has {sorted(expected)}")
    dtype = arrays[next(iter(expected))].dtype
    for key, shape in expected.items():
        array = arrays[key]
        if array.shape != shape:
            raise CheckpointError(f"checkpoint {path}: entry {key!r} has shape {array.shape}; its architecture needs {shape}")
        if array.dtype not in (np.float32, np.float64) or array.dtype != dtype:
            raise CheckpointError(
                f"checkpoint {path}: entry {key!r} has dtype {array.dtype}; expected float32 or float64, "
                f"the same for every array ({dtype} for the first)"
            )

    rng_state = _text(path, arrays, "rng_state")
    try:
        generator_from_state(rng_state)
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"checkpoint {path}: entry 'rng_state' is not a usable RNG state ({error})") from error
    metrics = _text(path, arrays, "metrics")
    config = _text(path, arrays, "config")
    if not isinstance(metrics, list) or not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {path}: entry 'metrics' must be a JSON list and 'config' a JSON object")
    return {
        "format_version": version,
        "epoch": _integer(path, arrays, "epoch"),
        "arch": arch,
        "params": _tree(arrays, "params"),
        "velocity": _tree(arrays, "velocity"),
        "rng_state": rng_state,
        "metrics": metrics,
        "config": config,
    }


def metrics_path(checkpoint_path):
    """Where the per-epoch metrics of a checkpoint live: run.npz -> run.metrics.jsonl."""
    root, extension = os.path.splitext(os.fspath(checkpoint_path))
    return (root if extension == ".npz" else os.fspath(checkpoint_path)) + ".metrics.jsonl"


def write_metrics(path, metrics):
    """Write the per-epoch metric dicts to `path`, one JSON object per line, atomically."""
    text = "".join(json.dumps(record) + "\n" for record in metrics)
    atomic_write(path, lambda file: file.write(text.encode("utf-8")))
