"""Checkpoints: a training run's full state in one .npz, written atomically, checked on load.

No pickle: arrays are stored as `params/conv1/w`, `velocity/conv1/w` (SGD's velocity) or
`optimizer/m/conv1/w`, `optimizer/v/...` (Adam's moments; RMSProp's `optimizer/s/...`), and the
model's state as `state/batchnorm1/running_mean`, `state/batchnorm1/running_var`; the architecture,
the shuffling and dropout generators' states, metrics and settings as JSON text in 0-d string
arrays; FORMAT_VERSION says which. A network without batch norm has no state entries and one
without dropout no dropout generator, so checkpoints written before either existed still load.
Loading trusts nothing in the file: every entry's .npy header is checked against the
architecture (and the file's size) before its data is read, so a corrupt or hostile file is
refused with CheckpointError and never allocates more than the file holds.
"""

import json
import os
import re
import secrets
import zipfile

import numpy as np

from fcnn.file_kinds import kind_of
from fcnn.model import param_shapes, resolve_arch, state_shapes
from fcnn.npy_header import NpyHeaderError, data_size_problem, read_npy_header
from fcnn.training import OPTIMIZERS, STATE_KEYS
from fcnn.tree import tree_paths

FORMAT_VERSION = 1
# JSON text entries beside the arrays; "config" holds the training settings (lr, batch size, ...).
TEXT_KEYS = ("arch", "rng_state", "metrics", "config")
SCALAR_KEYS = ("format_version", "epoch")
# The optimiser other than SGD and its step count, {"name": "adam", "t": 1875}, as JSON text: an
# SGD checkpoint has no such entry, as before optimisers other than SGD existed.
OPTIMIZER_KEY = "optimizer"
# The dropout Generator's bit_generator.state as JSON text, in the checkpoint of a network with dropout.
DROPOUT_RNG_KEY = "dropout_rng_state"
# The prefix of the model state's arrays (batch norm's running statistics).
MODEL_STATE_GROUP = "state"


def array_groups(optimizer="sgd"):
    """The trees a checkpoint of a run with this optimiser holds, by their entries' prefix."""
    if optimizer == "sgd":
        return ("params", "velocity")
    return ("params", *(f"optimizer/{key}" for key in STATE_KEYS[optimizer] if key != "t"))


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or does not fit its architecture."""


def _leftover_pattern(path):
    """The names atomic_write gives its temporary files for `path`: .NAME.HEX.tmp."""
    return re.compile(rf"\.{re.escape(os.path.basename(path))}\.[0-9a-f]{{12}}\.tmp")


def atomic_write(path, write):
    """Call write(file) on a temporary file beside `path`, then move it onto `path` in one step.

    A crash at any point leaves either the old file or the complete new one, never a torn file:
    the data are flushed and fsync'ed before os.replace, which is atomic within a directory.
    The temporary files of earlier writes to `path` that were killed (SIGKILL, power loss)
    before they could clean up are removed first.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    leftover = _leftover_pattern(path)
    for name in os.listdir(directory):
        if leftover.fullmatch(name):
            os.remove(os.path.join(directory, name))
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


def parameter_shapes(arch, optimizer="sgd"):
    """{"params/conv1/w": (F, C, KH, KW), "params/conv1/b": (F,), "params/dense1/w": (D, M), ...,
    "velocity/...": the same} for an architecture (with "optimizer/m/...", "optimizer/v/..." in
    place of the velocity for Adam, see array_groups), and the model state's arrays,
    "state/batchnorm1/running_mean": (C,), ..., computed from its layer shapes without
    allocating anything (a corrupt file's architecture may claim petabytes).

    Raises ValueError for an architecture whose layers do not fit together.
    """
    shapes = param_shapes(arch)
    return {
        **{"/".join((group, *path)): tuple(shape) for group in array_groups(optimizer) for path, shape in tree_paths(shapes)},
        **{"/".join((MODEL_STATE_GROUP, *path)): tuple(shape) for path, shape in tree_paths(state_shapes(arch))},
    }


def has_dropout(arch):
    """True if the architecture (resolved) draws dropout masks: its checkpoint keeps the dropout generator."""
    return any(spec["type"] == "dropout" for spec in arch)


def _array_problem(key, shape, dtype, expected_shape, first_dtype):
    """What is wrong with an array entry of this shape and dtype, or None."""
    if shape != expected_shape:
        return f"entry {key!r} has shape {shape}; its architecture needs {expected_shape}"
    if dtype not in (np.float32, np.float64) or dtype != first_dtype:
        return (f"entry {key!r} has dtype {dtype}; expected float32 or float64 (native byte order), "
                f"the same for every array ({first_dtype} for the first)")
    return None


def _non_finite_problem(key, array):
    bad = array.size - int(np.isfinite(array).sum())
    return f"entry {key!r} holds {bad} inf or NaN values of {array.size}" if bad else None


def save_checkpoint(path, *, arch, params, velocity=None, epoch, rng_state, metrics=(), config=None,
                    optimizer="sgd", optimizer_state=None, model_state=None, dropout_rng_state=None):
    """Write the state of a run after `epoch` completed epochs to `path` (.npz), atomically.

    arch: preset name or list of layer specs (stored resolved, so it reads back the same later);
    params, velocity: {"conv1": {"w", "b"}, ...}; rng_state: the shuffling Generator's
    bit_generator.state; metrics: list of per-epoch dicts; config: dict of training settings.
    optimizer other than "sgd": its state (fcnn.training.fresh_state's form, {"t", "m", "v"} or
    {"s"}) as optimizer_state, in place of the velocity.
    model_state: the model's state (fcnn.init_state's form; needed for a network with batch
    norm); dropout_rng_state: the dropout Generator's bit_generator.state, so that a resumed run
    draws the masks it would have drawn (needed for a network with dropout; not kept for one
    without, which draws none).
    Raises ValueError, writing nothing, for arrays load_checkpoint would refuse: a shape that
    does not fit arch, another dtype, inf or NaN values, a missing model state or dropout state.
    """
    arch = resolve_arch(arch)
    arrays = {
        "format_version": np.array(FORMAT_VERSION),
        "epoch": np.array(int(epoch)),
        "arch": np.array(json.dumps(arch)),
        "rng_state": np.array(json.dumps(rng_state)),
        "metrics": np.array(json.dumps(list(metrics))),
        "config": np.array(json.dumps(config or {})),
    }
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"save_checkpoint: optimizer must be one of {list(OPTIMIZERS)}; got {optimizer!r}")
    state = {"velocity": optimizer_state if velocity is None else velocity} if optimizer == "sgd" else {
        f"optimizer/{key}": tree for key, tree in optimizer_state.items() if key != "t"}
    if "t" in STATE_KEYS[optimizer]:
        arrays[OPTIMIZER_KEY] = np.array(json.dumps({"name": optimizer, "t": int(optimizer_state["t"])}))
    elif optimizer != "sgd":
        arrays[OPTIMIZER_KEY] = np.array(json.dumps({"name": optimizer}))
    if has_dropout(arch):
        if dropout_rng_state is None:
            raise ValueError(f"save_checkpoint: the architecture has dropout: pass dropout_rng_state, the dropout "
                             f"Generator's bit_generator.state; nothing was written to {os.fspath(path)}")
        arrays[DROPOUT_RNG_KEY] = np.array(json.dumps(dropout_rng_state))
    weights = {
        "/".join((group, *path)): np.asarray(array)
        for group, tree in (("params", params), *state.items(), (MODEL_STATE_GROUP, model_state or {}))
        for path, array in tree_paths(tree)
    }
    expected = parameter_shapes(arch, optimizer)
    if weights.keys() != expected.keys():
        raise ValueError(f"save_checkpoint: params, the {optimizer} state and the model state must hold "
                         f"{sorted(expected)}; got {sorted(weights)}")
    first_dtype = weights[next(iter(expected))].dtype
    for key, array in weights.items():
        problem = _array_problem(key, array.shape, array.dtype, expected[key], first_dtype) or _non_finite_problem(key, array)
        if problem:
            raise ValueError(f"save_checkpoint: {problem}; nothing was written to {os.fspath(path)}")
    atomic_write(path, lambda file: np.savez(file, **arrays, **weights))


class _Archive:
    """A checkpoint .npz opened for checked reading: headers first, data only on request."""

    def __init__(self, path, archive):
        self.path, self.archive = path, archive
        self.size = os.path.getsize(path)
        self.entries = {}  # key -> (ZipInfo, shape, dtype, header length)
        for info in archive.infolist():
            key = info.filename.removesuffix(".npy")
            if key == info.filename or key in self.entries:
                self.fail(f"entry {info.filename!r} is not a .npy array, or appears twice")
            if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
                self.fail(f"entry {key!r} is compressed; fcnn writes every entry uncompressed")
            if info.header_offset + info.compress_size > self.size:
                self.fail(f"entry {key!r} claims {info.file_size} bytes, more than the file holds")
            shape, dtype, length = self.parse(key, read_npy_header, archive, info)
            problem = data_size_problem(info, shape, dtype, length)
            if problem:
                self.fail(f"entry {key!r}: {problem}")
            self.entries[key] = (info, shape, dtype, length)

    def fail(self, problem):
        raise CheckpointError(f"checkpoint {self.path}: {problem}")

    def parse(self, key, reader, *args):
        """reader(*args), with any exception from parsing corrupt bytes refused as CheckpointError."""
        try:
            return reader(*args)
        except (CheckpointError, NpyHeaderError) as error:
            self.fail(f"entry {key!r}: {error}")
        # zipfile and numpy's header parser raise many types for malformed bytes (BadZipFile,
        # EOFError, UnicodeDecodeError, struct.error, SyntaxError, NotImplementedError, ...):
        # each means the same thing here.
        except Exception as error:  # noqa: BLE001
            self.fail(f"entry {key!r} is corrupt or truncated ({type(error).__name__}: {error})")

    def read(self, key):
        """The array of entry `key`, its data checked by the zip's CRC."""
        info, shape, dtype, length = self.entries[key]

        def read_data():
            with self.archive.open(info) as stream:
                stream.read(length)
                data = stream.read(info.file_size - length)
                # Reading to the end is what makes zipfile check the entry's CRC.
                if len(data) != info.file_size - length or stream.read(1):
                    raise EOFError("the entry's data is shorter or longer than its header says")
            return np.frombuffer(data, dtype=dtype).reshape(shape).copy()

        return self.parse(key, read_data)

    def text(self, key):
        """The JSON entry `key`, decoded."""
        _, shape, dtype, _ = self.entries[key]
        if shape != () or dtype.kind != "U":
            self.fail(f"entry {key!r} must be a 0-d string; got {dtype} {shape}")
        try:
            return json.loads(self.read(key).item())
        except (ValueError, RecursionError) as error:
            self.fail(f"entry {key!r} is not valid JSON ({type(error).__name__}: {error})")

    def integer(self, key):
        _, shape, dtype, _ = self.entries[key]
        value = self.read(key) if shape == () and dtype.kind in "iu" else None
        if value is None or value < 0:
            self.fail(f"entry {key!r} must be a 0-d integer >= 0; got {value if value is not None else f'{dtype} {shape}'}")
        return int(value)


def _tree(arrays, group):
    tree = {}
    for key, array in arrays.items():
        if key.startswith(group + "/"):
            layer, name = key.removeprefix(group + "/").split("/")
            tree.setdefault(layer, {})[name] = array
    return tree


def _optimizer(archive):
    """The optimiser entry: ("sgd", {}) when there is none, else its name and what it holds."""
    if OPTIMIZER_KEY not in archive.entries:
        return "sgd", {}
    entry = archive.text(OPTIMIZER_KEY)
    name = entry.get("name") if isinstance(entry, dict) else None
    if name not in OPTIMIZERS or name == "sgd":
        archive.fail(f"entry {OPTIMIZER_KEY!r} must name one of {list(OPTIMIZERS[1:])}; got {json.dumps(entry)[:200]}")
    t = entry.get("t")
    if "t" in STATE_KEYS[name] and (isinstance(t, bool) or not isinstance(t, int) or t < 0):
        archive.fail(f"entry {OPTIMIZER_KEY!r}: 't' must be an integer >= 0 (the steps taken); got {t!r}")
    return name, {"t": t} if "t" in STATE_KEYS[name] else {}


def load_checkpoint(path):
    """Read and check a checkpoint written by save_checkpoint.

    Returns {"format_version", "epoch", "arch" (resolved list of layer specs), "params",
    "velocity" (None but for SGD), "optimizer" (its name), "optimizer_state" (the velocity for
    SGD, else the state fcnn.optim's step takes), "model_state" (batch norm's running
    statistics; {} for a network without), "rng_state", "dropout_rng_state" (None for a network
    without dropout), "metrics", "config"}.
    Raises CheckpointError naming the file and the entry for anything else: a file that is not
    a zip archive or is truncated or corrupt, a malformed .npy header, a missing or unexpected
    entry, an array whose shape or dtype does not fit the architecture (checked before its data
    is read), inf or NaN weights, or JSON text of the wrong type.
    """
    path = os.fspath(path)
    kind = kind_of(path)
    if kind:  # a FIFO would make the read below wait forever
        raise CheckpointError(f"checkpoint {path}: " + (kind if kind == "no such file" else f"not a file: {kind}"))
    try:
        archive = zipfile.ZipFile(path)
    except Exception as error:  # noqa: BLE001  (as in _Archive.parse: any parse failure is a refusal)
        raise CheckpointError(f"checkpoint {path}: not an .npz (zip) archive; the file is truncated "
                              f"or not a checkpoint ({type(error).__name__}: {error})") from error
    with archive:
        return _load(_Archive(path, archive))


def _load(archive):
    for key in SCALAR_KEYS + TEXT_KEYS:
        if key not in archive.entries:
            archive.fail(f"missing entry {key!r} (not written by fcnn.save_checkpoint?)")
    version = archive.integer("format_version")
    if version != FORMAT_VERSION:
        archive.fail(f"entry 'format_version' is {version}; this fcnn reads version {FORMAT_VERSION}")
    optimizer, scalars = _optimizer(archive)
    try:
        arch = resolve_arch(archive.text("arch"))
        expected = parameter_shapes(arch, optimizer)
    except CheckpointError:
        raise
    # A corrupt architecture may hold values of any JSON type where numbers belong.
    except (ValueError, TypeError, OverflowError) as error:
        archive.fail(f"entry 'arch' is not a valid architecture ({type(error).__name__}: {error})")

    stored = set(archive.entries) - set(SCALAR_KEYS) - set(TEXT_KEYS) - {OPTIMIZER_KEY, DROPOUT_RNG_KEY}
    missing, unexpected = sorted(expected.keys() - stored), sorted(stored - expected.keys())
    if missing:
        archive.fail(f"missing entry {missing[0]!r} required by its architecture")
    if unexpected:
        archive.fail(f"unexpected entry {unexpected[0]!r}; its architecture has {sorted(expected)}")
    first_dtype = archive.entries[next(iter(expected))][2]
    for key, shape in expected.items():
        _, stored_shape, dtype, _ = archive.entries[key]
        problem = _array_problem(key, stored_shape, dtype, shape, first_dtype)
        if problem:
            archive.fail(problem)
    # Every header fits: only now is any array's data read.
    arrays = {key: archive.read(key) for key in expected}
    for key, array in arrays.items():
        problem = _non_finite_problem(key, array)
        if problem:
            archive.fail(problem)

    rng_state = _generator_state(archive, "rng_state")
    if has_dropout(arch) and DROPOUT_RNG_KEY not in archive.entries:
        archive.fail(f"missing entry {DROPOUT_RNG_KEY!r} (the dropout generator) required by its architecture")
    if not has_dropout(arch) and DROPOUT_RNG_KEY in archive.entries:
        archive.fail(f"unexpected entry {DROPOUT_RNG_KEY!r}; its architecture has no dropout")
    dropout_rng_state = _generator_state(archive, DROPOUT_RNG_KEY) if has_dropout(arch) else None
    metrics, config = archive.text("metrics"), archive.text("config")
    if not isinstance(metrics, list) or not all(isinstance(record, dict) for record in metrics):
        archive.fail(f"entry 'metrics' must be a JSON list of objects; got {json.dumps(metrics)[:200]}")
    if not isinstance(config, dict):
        archive.fail(f"entry 'config' must be a JSON object; got {json.dumps(config)[:200]}")
    trees = {group.removeprefix("optimizer/"): _tree(arrays, group) for group in array_groups(optimizer)[1:]}
    return {
        "format_version": version,
        "epoch": archive.integer("epoch"),
        "arch": arch,
        "params": _tree(arrays, "params"),
        "velocity": trees.get("velocity"),
        "optimizer": optimizer,
        "optimizer_state": trees["velocity"] if optimizer == "sgd" else {**scalars, **trees},
        "model_state": _tree(arrays, MODEL_STATE_GROUP),
        "rng_state": rng_state,
        "dropout_rng_state": dropout_rng_state,
        "metrics": metrics,
        "config": config,
    }


def _generator_state(archive, key):
    """The bit_generator.state the JSON entry `key` holds, once a Generator is known to take it."""
    state = archive.text(key)
    try:
        generator_from_state(state)
    except (ValueError, TypeError, KeyError, OverflowError) as error:
        archive.fail(f"entry {key!r} is not a usable RNG state ({type(error).__name__}: {error})")
    return state


def metrics_path(checkpoint_path):
    """Where the per-epoch metrics of a checkpoint live: run.npz -> run.metrics.jsonl."""
    root, extension = os.path.splitext(os.fspath(checkpoint_path))
    return (root if extension == ".npz" else os.fspath(checkpoint_path)) + ".metrics.jsonl"


def is_metrics_file(path):
    """True if `path` reads as a metrics file write_metrics wrote: UTF-8, one JSON object per line."""
    try:
        with open(path, encoding="utf-8") as file:
            return all(isinstance(json.loads(line), dict) for line in file)
    except (OSError, ValueError, RecursionError):
        return False


def write_metrics(path, metrics):
    """Write the per-epoch metric dicts to `path`, one JSON object per line, atomically."""
    text = "".join(json.dumps(record) + "\n" for record in metrics)
    atomic_write(path, lambda file: file.write(text.encode("utf-8")))
