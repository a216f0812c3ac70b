"""The process a learner's file runs in: it loads the file, calls its kernels on the cases it is sent, and sends back what they return.

Run by path (python child.py REQUEST_FD REPLY_FD LIMITS_JSON), not as part of fcnn: it needs only
the standard library and NumPy, starts fast, and holds nothing the checker relies on. Everything
it sends is data (JSON, arrays in .npy form), judged in the parent against answers the parent
computes itself; nothing in this process can make a kernel pass.

Requests (parent -> child, pickled: the parent is trusted) and replies (child -> parent, JSON):
    {"load": path, "source": text, "kernels": [names]} -> {"loaded": {name: borrowed}} | {"syntax_error": ...} | {"raised": ...}
    {"call": name, "args": tuple}                     -> {"returned": value, "args_after": [values]} | {"raised": ...}
"""

import base64
import io
import itertools
import json
import os
import pickle
import re
import struct
import sys
import traceback
import types

import numpy as np

HEADER = struct.Struct("!Q")
# numba colours its error messages for terminals; in a report the codes are only noise.
ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
LONGEST_TEXT = 2000
MOST_ITEMS = 100
_module_numbers = itertools.count()


# --- loading the learner's file (also used in-process by fcnn.exercises.learner_file) ---------

def run_source(source, path, name=None):
    """Compile and run `source` (text of the file at `path`) as a fresh module and return it.

    SyntaxError, and whatever the module's code raises, propagate to the caller.
    """
    code = compile(source, str(path), "exec")
    stem = os.path.splitext(os.path.basename(str(path)))[0]
    module = types.ModuleType(name or f"fcnn_exercise_{next(_module_numbers)}_{stem}")
    module.__file__ = str(path)
    # Registered while it runs so that code in it that looks itself up (dataclasses, numba) works.
    sys.modules[module.__name__] = module
    try:
        exec(code, module.__dict__)
    finally:
        sys.modules.pop(module.__name__, None)
    return module


def format_traceback(error, filename):
    """The traceback lines that point into `filename` (the learner's file), then the error itself.

    A frame repeated more than three times in a row (endless recursion) is shown three times and counted.
    """
    lines = []
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename == filename]
    for _, group in itertools.groupby(frames, key=lambda frame: (frame.lineno, frame.name)):
        group = list(group)
        for frame in group[:3]:
            lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}')
            if frame.line:
                lines.append(f"    {frame.line}")
        if len(group) > 3:
            lines.append(f"  [the frame above repeated {len(group) - 3} more times]")
    lines.append(f"{type(error).__name__}: {ANSI_COLOUR.sub('', _text(error))[:LONGEST_TEXT]}")
    return "\n".join(lines)


def describe_syntax_error(error):
    """'my_conv.py, line 12: invalid syntax', the offending line, and a caret under the spot."""
    lines = [f"{error.filename}, line {error.lineno}: {error.msg}"]
    if error.text:
        text = error.text.rstrip("\n")
        stripped = text.lstrip()
        lines.append("    " + stripped)
        if error.offset:
            column = max(error.offset - 1 - (len(text) - len(stripped)), 0)
            lines.append("    " + " " * column + "^")
    return "\n".join(lines)


def describe_exception(error, filename):
    """An exception as data: its class and base class names (most derived first), message, traceback."""
    names = [cls.__name__ for cls in type(error).__mro__]
    return {"types": names, "message": _text(error)[:LONGEST_TEXT],
            "traceback": format_traceback(error, filename)}


def _text(error):
    try:
        return str(error)
    except BaseException:  # noqa: BLE001 - a learner's exception whose str() itself fails
        return "(its message could not be printed)"


# --- fcnn's own implementations in a learner's file --------------------------------------------

def _is_fcnn_implementation(value, kernel):
    """True for fcnn's own function called `kernel` (plain, or compiled by numba)."""
    function = getattr(value, "py_func", value)
    module = getattr(function, "__module__", None) or ""
    return (getattr(function, "__name__", None) == kernel
            and (module == "fcnn" or module.startswith("fcnn.")))


def _names_used(code):
    """Every global or attribute name the code object and the code nested in it mention."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _names_used(constant)
    return names


def borrowed(function, kernel):
    """Where `function` takes fcnn's own `kernel` from ('fcnn.kernels.loop.conv2d_forward'), or None.

    Follows the names its code mentions from its globals through attributes (loop.conv2d_forward,
    fcnn.kernels.loop.conv2d_forward), three steps deep. A call through a computed name
    (getattr with a string built at run time) is not seen.
    """
    function = getattr(function, "py_func", function)
    code = getattr(function, "__code__", None)
    if code is None:
        return None
    names = _names_used(code)
    namespace = getattr(function, "__globals__", {})
    reached = [namespace[name] for name in names if name in namespace]
    for _ in range(3):
        for value in reached:
            if _is_fcnn_implementation(value, kernel):
                found = getattr(value, "py_func", value)
                return f"{found.__module__}.{kernel}"
        reached = [attribute for value in reached if isinstance(value, types.ModuleType)
                   for name in names if (attribute := getattr(value, name, None)) is not None]
    return None


def find_kernels(module, kernels):
    """{kernel: None (written in the file) or where fcnn's own comes from} for the kernels `module` has."""
    found = {}
    for kernel in kernels:
        function = getattr(module, kernel, None)
        if not callable(function):
            continue
        if getattr(function, "__module__", None) == module.__name__:
            found[kernel] = {"own": True, "borrowed": borrowed(function, kernel)}
        elif _is_fcnn_implementation(function, kernel):
            source = getattr(function, "py_func", function).__module__
            found[kernel] = {"own": False, "borrowed": f"{source}.{kernel}"}
    return found


# --- values as data ---------------------------------------------------------------------------

def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _class_name(value):
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def encode(value, depth=0):
    """A learner's value as JSON-ready data: arrays and numbers exactly, containers item by item, the rest by class."""
    try:
        return _encode(value, depth)
    except Exception:  # noqa: BLE001 - a learner's object whose methods raise is sent by its class alone
        return {"kind": "other", "class": _class_name(value)}


def _encode(value, depth):
    if isinstance(value, np.ndarray):
        array = np.asarray(value).view(np.ndarray)
        if array.dtype.hasobject or array.dtype.names is not None:
            return {"kind": "other", "class": f"numpy array of dtype {array.dtype}"}
        return {"kind": "array", "class": _class_name(value), "npy": _npy(array)}
    if isinstance(value, (bool, int, float, complex, np.generic)):
        try:
            return {"kind": "number", "class": _class_name(value), "npy": _npy(np.asarray(value))}
        except (OverflowError, ValueError, TypeError):
            return {"kind": "other", "class": _class_name(value)}
    if value is None:
        return {"kind": "none"}
    if isinstance(value, (tuple, list)) and depth < 4:
        kind = "tuple" if isinstance(value, tuple) else "list"
        return {"kind": kind, "length": len(value),
                "items": [encode(item, depth + 1) for item in list(value)[:MOST_ITEMS]]}
    if isinstance(value, str):
        return {"kind": "str", "text": value[:LONGEST_TEXT]}
    return {"kind": "other", "class": _class_name(value)}


# --- the conversation with the parent ---------------------------------------------------------

def _read_exactly(fd, size):
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def receive(fd):
    header = _read_exactly(fd, HEADER.size)
    if header is None:
        return None
    return pickle.loads(_read_exactly(fd, HEADER.unpack(header)[0]))


def send(fd, message):
    payload = json.dumps(message).encode("utf-8")
    data = HEADER.pack(len(payload)) + payload
    while data:
        data = data[os.write(fd, data):]


def set_limits(limits):
    """Memory (address space), size of any file written (the output goes to a file), no core dumps."""
    import resource

    import signal

    megabyte = 1 << 20
    # Python ignores SIGXFSZ, so that a write past the limit would only raise OSError, which a
    # learner's code may catch and go on printing; with the default action the process stops.
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_mb"] * megabyte,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["output_kb"] * 1024,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _load(request):
    path = request["load"]
    sys.path[0] = os.path.dirname(os.path.abspath(path))
    try:
        module = run_source(request["source"], path)
    except SyntaxError as error:
        return None, {"syntax_error": describe_syntax_error(error)}
    except BaseException as error:  # noqa: BLE001 - sys.exit, KeyboardInterrupt...: each is reported
        return None, {"raised": describe_exception(error, path)}
    return module, {"loaded": find_kernels(module, request["kernels"])}


def _call(module, request):
    function = getattr(module, request["call"])
    args = request["args"]
    try:
        with np.errstate(all="ignore"):
            result = function(*args)
    except BaseException as error:  # noqa: BLE001 - whatever the kernel raises is its verdict
        return {"raised": describe_exception(error, module.__file__)}
    return {"returned": encode(result), "args_after": [encode(a) for a in args]}


def main(argv):
    request_fd, reply_fd = int(argv[1]), int(argv[2])
    set_limits(json.loads(argv[3]))
    module = None
    while (request := receive(request_fd)) is not None:
        if "load" in request:
            module, reply = _load(request)
        else:
            reply = _call(module, request)
        send(reply_fd, reply)
    os._exit(0)  # skip atexit handlers and interpreter teardown: nothing of the learner's runs after


if __name__ == "__main__":
    main(sys.argv)
