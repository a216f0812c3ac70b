"""Read a learner's Python file as Python reads it, and say in the learner's terms why one cannot be read.

Bytes are decoded as the interpreter would (UTF-8, a byte-order mark, a coding line); a file that
is not text, holds NUL bytes, or is far too large for a kernel is reported as such. `load` runs
a file in this process, for a learner's own use; a grader checks files with check_file, which
runs each in a process of its own.
"""

import io
import tokenize
from pathlib import Path

from fcnn.exercises.child import describe_exception, describe_syntax_error, run_source

LARGEST_FILE = 1 << 20  # bytes: a kernel exercise is a few KB


class LearnerFileError(ValueError):
    """The learner's file cannot be checked: not text, a syntax error, an error while it runs, or no kernel in it."""


def read_source(path):
    """The text of the Python file at `path`, decoded as Python would; LearnerFileError if it is not Python text.

    FileNotFoundError if there is no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    data = path.read_bytes()
    if len(data) > LARGEST_FILE:
        raise LearnerFileError(f"{path} is {len(data)} bytes, too large to be a kernel exercise "
                               f"(the limit is {LARGEST_FILE} bytes); is it the right file?")
    if b"\0" in data:
        line = data[:data.index(b"\0")].count(b"\n") + 1
        raise LearnerFileError(f"{path} contains NUL bytes (the first on line {line}), so it is not a "
                               f"Python text file: was it saved by a word processor, or is it a "
                               f"compiled or binary file? Save your code as plain text (.py).")
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data.decode(encoding)
    except SyntaxError as error:  # an unknown encoding named in the coding line
        raise LearnerFileError(f"{path}: {error}") from None
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise LearnerFileError(
            f"{path}, line {line}: byte 0x{data[error.start]:02x} is not valid {error.encoding}, so "
            f"this is not Python text as saved. Save the file as UTF-8 (or declare its encoding "
            f"with a line such as # -*- coding: latin-1 -*-); a binary file cannot be checked."
        ) from None


def load(path):
    """Run the file at `path` as a fresh module in this process and return it.

    FileNotFoundError if there is no such file; LearnerFileError if it cannot be read, does not
    compile or fails while it runs (sys.exit included), in the learner's terms.
    """
    source = read_source(path)
    try:
        return run_source(source, str(path))
    except SyntaxError as error:
        raise LearnerFileError(describe_syntax_error(error)) from None
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # noqa: BLE001 - any failure of the learner's module code is theirs to see
        record = describe_exception(error, str(path))
        raise LearnerFileError(f"{path} raised an exception while it was loaded:\n"
                               + record["traceback"]) from None
