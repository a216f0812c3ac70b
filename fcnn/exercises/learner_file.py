"""Read a learner's Python file as Python reads it, and check every kernel it defines in a process of its own.

Bytes are decoded as the interpreter would (UTF-8, a byte-order mark, a coding line); a file that
is not text, holds NUL bytes, or is far too large for a kernel is reported as such. check_file
runs the file in a sandbox (fcnn.exercises.sandbox), a fresh one for each kernel after one that
stopped; `load` runs a file in this process, for a learner's own use.
"""

import io
import tokenize
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fcnn.exercises.checking import CaseFailed, Failure, Report, check_exercise, ladder
from fcnn.exercises.child import describe_exception, describe_syntax_error, run_source
from fcnn.exercises.registry import KERNELS, get_exercise
from fcnn.exercises.sandbox import Limits, LoadFailed, Session, Stopped

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


# --- checking a file, in a process of its own --------------------------------------------------------------------------

BORROWED_HINT = ("write the kernel yourself; helpers such as output_size and zero_pad may be "
                 "imported, the kernel you are asked to write may not.")


def check_file(path, limits=Limits(), borrowed_scores=False):
    """Check every exercisable kernel the file at `path` defines, each in a fresh process -> [Report].

    FileNotFoundError for a missing file; LearnerFileError for a file that is not Python text,
    does not compile, fails or exits while it loads, or defines no exercisable kernel. A kernel
    that is fcnn's own (imported) or calls it fails, unless borrowed_scores.
    """
    source = read_source(path)
    try:
        session = Session(path, source, KERNELS, limits)
    except (LoadFailed, Stopped) as failed:
        raise LearnerFileError(_load_verdict(path, failed)) from None
    found = session.found
    mine = {kernel: where for kernel, where in found.items() if where["own"] or borrowed_scores}
    if not mine:
        session.close()
        imported = [f"{kernel} is fcnn's own {where['borrowed']}" for kernel, where in found.items()]
        own = " of its own" if imported else ""
        note = f" ({'; '.join(imported)}, imported, not written)" if imported else ""
        raise LearnerFileError(
            f"{path} defines no exercisable kernel{own}{note}; define one of: {', '.join(KERNELS)} "
            f"(python -m fcnn.exercises new NAME gives you a stub).")
    reports = []
    for kernel in [name for name in KERNELS if name in mine]:  # the registry's order
        exercise = get_exercise(kernel)
        where = mine[kernel]["borrowed"]
        if where and not borrowed_scores:
            reports.append(_borrowed_report(exercise, where))
            continue
        if session is None or session.process.poll() is not None:
            try:
                session = Session(path, source, [kernel], limits)
            except (LoadFailed, Stopped) as failed:
                reports.append(_stopped_report(exercise, _load_verdict(path, failed), getattr(failed, "hint", None)))
                session = None
                continue
        reports.append(check_exercise(exercise, _caller(session, kernel)))
        if session.process.poll() is not None:
            session = None
    if session is not None:
        session.close()
    return reports


def _load_verdict(path, failed):
    """The text of a LoadFailed, or of a Stopped while the file loaded."""
    if isinstance(failed, Stopped) and failed.timed_out:
        return f"{path} did not finish loading within {failed.seconds:g} s."
    return str(failed) if isinstance(failed, LoadFailed) else f"{path}: {failed.message}"


def _caller(session, kernel):
    """call(case) for check_exercise: the kernel run in the session; CaseFailed if it stopped."""
    names = [case.name for case, _ in ladder(kernel)]

    def call(case):
        try:
            return session.call(kernel, case.args)
        except Stopped as stopped:
            number = names.index(case.name) + 1
            if stopped.timed_out:
                message = f"case {number} ({case.name}) did not finish within {stopped.seconds:g} s."
            else:
                message = f"case {number} ({case.name}): {stopped.message}"
            raise CaseFailed(message, stopped.hint) from None
    return call


def _borrowed_report(exercise, where):
    cases = ladder(exercise.name)
    message = (f"{exercise.name} uses fcnn's own implementation ({where}) instead of computing its "
               f"result itself; that does not score here.")
    return Report(exercise.name, False, 0, len(cases), Failure(1, cases[0][0].name, message, BORROWED_HINT),
                  tuple(case.name for case, _ in cases))


def _stopped_report(exercise, message, hint):
    """The report on a kernel whose file would not load again for it."""
    cases = ladder(exercise.name)
    return Report(exercise.name, False, 0, len(cases), Failure(1, cases[0][0].name, message, hint),
                  tuple(case.name for case, _ in cases))


def check_files(paths, limits=Limits(), borrowed_scores=False, workers=2):
    """Check many files, `workers` at a time (each in its own process) -> {path: ([Report], error or None)}.

    error is the text of the LearnerFileError for a file that could not be checked. The order
    of the result is the order of `paths`.
    """
    def one(path):
        try:
            return check_file(path, limits, borrowed_scores), None
        except (LearnerFileError, FileNotFoundError) as error:
            return [], str(error)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(paths, pool.map(one, paths)))
