"""Run a learner's file in a process of its own, with limits, and turn whatever happens there into a verdict.

The learner's code runs only in the child (fcnn/exercises/child.py): it cannot reach the checker,
the reference or the grader. The child sends back data (JSON, arrays as .npy), never code, and
the parent judges it against answers it computes itself. A case that runs past the time limit,
a process that exits, is killed by a signal or crashes ends that kernel's check with a verdict
naming what happened; the next kernel is checked in a fresh process.
"""

import base64
import io
import json
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcnn.exercises import child
from fcnn.exercises.checking import Raised, Returned

CHILD = Path(child.__file__)
LONGEST_REPLY = 64 << 20  # bytes: far above any honest reply (the largest case's is a few KB)


@dataclass(frozen=True)
class Limits:
    """What one learner's file may use: seconds per case (and for loading), MB of memory, KB of output."""

    time_s: float = 10.0
    memory_mb: int = 2048
    output_kb: int = 1024


class Stopped(Exception):
    """The child is gone or cannot be trusted any more: message says what happened, hint what to do."""

    def __init__(self, message, hint=None, seconds=None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.seconds = seconds  # the time limit that ran out, or None

    @property
    def timed_out(self):
        return self.seconds is not None


class Session:
    """One child process holding the learner's file loaded; `call` runs a kernel in it on one case."""

    def __init__(self, path, source, kernels, limits):
        self.path = path
        self.limits = limits
        self.workdir = tempfile.TemporaryDirectory(prefix="fcnn_check_")
        request_read, self.request_fd = os.pipe()
        self.reply_fd, reply_write = os.pipe()
        self.output = open(Path(self.workdir.name) / "output.txt", "wb")
        environment = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1",
                           OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
        settings = json.dumps({"memory_mb": limits.memory_mb, "output_kb": limits.output_kb})
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD), str(request_read), str(reply_write), settings],
            stdin=subprocess.DEVNULL, stdout=self.output, stderr=subprocess.STDOUT,
            cwd=self.workdir.name, env=environment, pass_fds=(request_read, reply_write),
            start_new_session=True)  # its own process group: whatever it starts is stopped with it
        os.close(request_read)
        os.close(reply_write)
        os.set_blocking(self.request_fd, False)
        self.found = self._load(source, kernels)

    def _load(self, source, kernels):
        """Load the file in the child -> {kernel: {"own": bool, "borrowed": str or None}}; LoadFailed or Stopped."""
        reply = self._ask({"load": str(self.path), "source": source, "kernels": list(kernels)},
                          "while it was loaded")
        try:
            if "loaded" in reply:
                return {kernel: {"own": bool(where["own"]), "borrowed": _text_or_none(where["borrowed"])}
                        for kernel, where in reply["loaded"].items() if kernel in kernels}
            message = (str(reply["syntax_error"]) if "syntax_error" in reply
                       else describe_load_exception(self.path, reply["raised"]))
        except Exception:  # noqa: BLE001 - the reply is the learner's process's: anything may be in it
            raise self._stop(UNREADABLE) from None
        self.close()
        raise LoadFailed(message)

    def call(self, kernel, args):
        """Run `kernel` on `args` in the child -> Returned or Raised; Stopped if the child is gone."""
        reply = self._ask({"call": kernel, "args": args}, "while it ran")
        try:
            if "raised" in reply:
                raised = reply["raised"]
                return Raised(tuple(str(name) for name in raised["types"]), str(raised["message"]),
                              str(raised["traceback"]))
            return Returned(decode(reply["returned"]), tuple(decode(a) for a in reply["args_after"]))
        except Exception:  # noqa: BLE001 - the reply is the learner's process's: anything may be in it
            raise self._stop(UNREADABLE) from None

    def _ask(self, request, when):
        """Send `request`, wait for the reply (the time limit) and return it as a dict; Stopped if none comes."""
        payload = pickle.dumps(request)
        deadline = time.monotonic() + self.limits.time_s
        written = self._write(child.HEADER.pack(len(payload)) + payload, deadline)
        if written is not True:
            raise self._stop(self._ended(when) if written is None else self._timed_out())
        header = self._read(child.HEADER.size, deadline)
        if header is None:
            raise self._stop(self._ended(when))
        if header is TimeoutError:
            raise self._stop(self._timed_out())
        size = child.HEADER.unpack(header)[0]
        if size > LONGEST_REPLY:
            raise self._stop(Stopped("your code wrote into the checker's channel (a reply of "
                                     f"{size} bytes); a kernel must only return its result."))
        body = self._read(size, deadline)
        if body is None or body is TimeoutError:
            raise self._stop(self._ended(when) if body is None else self._timed_out())
        try:
            reply = json.loads(body)
        except (ValueError, RecursionError):
            raise self._stop(UNREADABLE) from None
        if not isinstance(reply, dict):
            raise self._stop(UNREADABLE)
        return reply

    def _write(self, data, deadline):
        """Send `data` to the child: True, None if it stopped reading for good, TimeoutError past the deadline.

        The pipe is non-blocking, so that a child that stops reading cannot hold up the checker.
        """
        while data:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [self.request_fd], [], remaining)[1]:
                return TimeoutError
            try:
                data = data[os.write(self.request_fd, data):]
            except BlockingIOError:
                continue
            except OSError:  # the child's end is closed
                return None
        return True

    def _read(self, size, deadline):
        """`size` bytes from the child, None at end of file, TimeoutError (the class) past the deadline."""
        chunks = []
        while size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.reply_fd], [], [], remaining)[0]:
                return TimeoutError
            chunk = os.read(self.reply_fd, min(size, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def _timed_out(self):
        return Stopped(f"did not finish within {self.limits.time_s:g} s", TIMEOUT_HINT, self.limits.time_s)

    def _ended(self, when):
        """What made the child go away, as a Stopped."""
        try:
            status = self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return Stopped(f"your code closed the checker's channel {when}; a kernel must only "
                           f"return its result.")
        return describe_exit(status, when, self.limits)

    def _stop(self, stopped):
        self.close()
        return stopped

    def close(self):
        """End the child and everything it started (its process group, which outlives it); idempotent."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        for fd in (self.request_fd, self.reply_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.request_fd = self.reply_fd = -1
        self.output.close()
        self.workdir.cleanup()


class LoadFailed(Exception):
    """The learner's file did not load in the child; the message is the verdict."""


def _text_or_none(value):
    return None if value is None else str(value)


UNREADABLE = Stopped("your code wrote into the checker's channel, or changed what it sends; a "
                     "kernel must only return its result.")


TIMEOUT_HINT = ("look for a loop whose end condition is never met (a while loop, or an index "
                "that is never increased); on these tiny cases an honest kernel takes a fraction of "
                "a second, numba's compilation a few seconds.")
SEGFAULT_HINT = ("a numba kernel does not check its indices: one past the end of an array reads or "
                 "writes memory that is not the array's. Compile it with @njit(boundscheck=True) "
                 "to get an IndexError naming the line.")
SIGNAL_WORDS = {signal.SIGSEGV: "crashed (segmentation fault, SIGSEGV)",
                signal.SIGBUS: "crashed (bus error, SIGBUS)",
                signal.SIGABRT: "aborted (SIGABRT)",
                signal.SIGFPE: "crashed (floating-point exception, SIGFPE)",
                signal.SIGILL: "crashed (illegal instruction, SIGILL)",
                signal.SIGKILL: "was killed (SIGKILL)",
                signal.SIGXFSZ: "was stopped for writing too much (SIGXFSZ)"}


def describe_exit(status, when, limits):
    """A Stopped for a child that ended with `status` (subprocess's returncode) `when`."""
    if status >= 0:
        return Stopped(f"your code ended the process {when} (exit status {status}).",
                       "a kernel must return its result: no os._exit(), no closing of the process's files.")
    number = -status
    try:
        name = signal.Signals(number)
    except ValueError:
        return Stopped(f"the process {when} was ended by signal {number}.")
    if name == signal.SIGXFSZ:
        return Stopped(f"your code wrote more than the {limits.output_kb} KB allowed {when} "
                       f"(printing, or into a file), and was stopped.",
                       "print less: a few lines to debug with, not every value of every loop.")
    words = SIGNAL_WORDS.get(name, f"was ended by signal {name.name}")
    hint = SEGFAULT_HINT if name in (signal.SIGSEGV, signal.SIGBUS) else None
    if name == signal.SIGKILL:
        hint = (f"the process may have used more than the {limits.memory_mb} MB of memory allowed, "
                f"or killed itself.")
    return Stopped(f"the process {words} {when}.", hint)


def describe_load_exception(path, raised):
    """The verdict for a file whose module code raised `raised` (child.describe_exception's record)."""
    types = raised.get("types", [])
    traceback = raised.get("traceback", "")
    if "SystemExit" in types:
        return (f"{path} called exit() or sys.exit() while it was loaded (SystemExit: "
                f"{raised.get('message', '')}); remove the call so that the file runs to its end:\n"
                + traceback)
    if types and "Exception" not in types:
        return (f"{path} raised {types[0]}, which is not an Exception (it derives from "
                f"BaseException), while it was loaded:\n" + traceback)
    return f"{path} raised an exception while it was loaded:\n" + traceback


# --- decoding the child's data ----------------------------------------------------------------

def _array(npy):
    return np.load(io.BytesIO(base64.b64decode(npy)), allow_pickle=False)


def _named_class(qualified, bases=()):
    """A stand-in class with the learner's class name (module.qualname), so reports can name it."""
    module, _, name = str(qualified).rpartition(".")
    return type(name or "object", bases, {"__module__": module or "builtins", "__qualname__": name or "object"})


BUILTIN_NUMBERS = {"builtins.bool": bool, "builtins.int": int, "builtins.float": float, "builtins.complex": complex}


def decode(data):
    """The value the child encoded: arrays and numbers as they were, other objects as named stand-ins."""
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind == "array":
        array = _array(data["npy"])
        cls = data.get("class", "numpy.ndarray")
        return array if cls == "numpy.ndarray" else array.view(_named_class(cls, (np.ndarray,)))
    if kind == "number":
        value = _array(data["npy"])[()]
        convert = BUILTIN_NUMBERS.get(data.get("class"))
        return convert(value) if convert else value
    if kind == "none":
        return None
    if kind in ("tuple", "list"):
        items = [decode(item) for item in data.get("items", [])]
        return tuple(items) if kind == "tuple" else items
    if kind == "str":
        return str(data.get("text", ""))
    return _named_class(data.get("class", "object") if isinstance(data, dict) else "object")()
