"""Load a learner's Python file and find the exercisable kernels it defines.

A file that does not compile or that fails while it runs is reported in the learner's terms:
their file, their line, their text; never a traceback from inside fcnn.
"""

import itertools
import re
import sys
import traceback
import types
from pathlib import Path

from fcnn.exercises.registry import KERNELS


class LearnerFileError(ValueError):
    """The learner's file cannot be checked: a syntax error, an error while it runs, or no kernel in it."""


_module_numbers = itertools.count()
# numba colours its error messages for terminals; in a report the codes are only noise.
ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def load(path):
    """Run the file at `path` as a fresh module and return it; FileNotFoundError if there is no such file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    source = path.read_text(encoding="utf-8")
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as error:
        raise LearnerFileError(describe_syntax_error(error)) from None
    module = types.ModuleType(f"fcnn_exercise_{next(_module_numbers)}_{path.stem}")
    module.__file__ = str(path)
    # Registered while it runs so that code in it that looks itself up (dataclasses, numba) works.
    sys.modules[module.__name__] = module
    try:
        exec(code, module.__dict__)
    except Exception as error:  # any failure of the learner's module code is theirs to see
        raise LearnerFileError(f"{path} raised an exception while it was loaded:\n"
                               + format_traceback(error, str(path))) from None
    finally:
        del sys.modules[module.__name__]
    return module


def format_traceback(error, filename):
    """The traceback lines that point into `filename` (the learner's file), then the error itself."""
    lines = []
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename == filename:
            lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}')
            if frame.line:
                lines.append(f"    {frame.line}")
    lines.append(f"{type(error).__name__}: {ANSI_COLOUR.sub('', str(error))}")
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


def kernels_in(module):
    """{kernel name: function} for the exercisable kernels defined in `module` itself (not imported)."""
    found = {}
    for name in KERNELS:
        function = getattr(module, name, None)
        if callable(function) and getattr(function, "__module__", None) == module.__name__:
            found[name] = function
    return found
