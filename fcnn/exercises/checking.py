"""Judge a learner's kernel against the reference, case by case, and say where it first goes wrong.

Each case: the learner's function is called on copies of the inputs (here by call_in_process,
or in a process of its own by fcnn.exercises.sandbox), then judge checks in this order that it
did not raise, left its inputs alone, returned the right number and kinds of things (plain
arrays, real numbers), with the right shapes and dtypes, and values close to the expected ones,
which are computed here, never where the learner's code runs. The first failure ends the check.
"""

import copy
import functools
import textwrap
from dataclasses import dataclass

import numpy as np

from fcnn.exercises.child import format_traceback
from fcnn.exercises.registry import get_exercise

# float64: the inputs are O(1) and every output is a sum of at most a few hundred terms, so a
# different order of summation moves it by ~1e-14 relative; 1e-7 leaves room for any honest
# order while a missing or extra term moves values by 1e-2 or more. atol (times the largest
# expected magnitude, at least 1) covers entries that cancel to ~0.
RTOL_FLOAT64, ATOL_FLOAT64 = 1e-7, 1e-9
# float32 keeps ~7 digits and a reordered sum of a hundred terms loses up to ~1e-5 of its scale.
RTOL_FLOAT32, ATOL_FLOAT32 = 1e-4, 1e-5
# Central differences carry ~1e-9 of rounding error (see fcnn.gradcheck.EPS); 1e-6 sits well above
# that and far below a wrong gradient.
RTOL_GRADCHECK, ATOL_GRADCHECK = 1e-6, 1e-6


@dataclass(frozen=True)
class Failure:
    """Where a check stopped: the case (number and name), what went wrong, and a hint if one is known."""

    case_number: int
    case_name: str
    message: str
    hint: str | None = None


@dataclass(frozen=True)
class Report:
    """The verdict on one kernel; str(report) is the text the command line prints.

    case_names: every case of the ladder in order; the check stops at the first failure, so the
    cases after failure.case_number were not run.
    """

    kernel: str
    passed: bool
    cases_passed: int
    cases_total: int
    failure: Failure | None = None
    case_names: tuple = ()

    def summary(self):
        """One line: PASS or FAIL, the kernel, and how many cases passed."""
        verdict = "PASS" if self.passed else "FAIL"
        return f"{verdict} {self.kernel}: {self.cases_passed} of {self.cases_total} cases passed"

    def details(self):
        """What went wrong, in a few indented lines ('' when the kernel passed)."""
        if self.failure is None:
            return ""
        failure = self.failure
        lines = [f"{self.kernel}, case {failure.case_number} of {self.cases_total}: {failure.case_name}"]
        lines += ["  " + line for line in failure.message.splitlines()]
        if failure.hint:
            lines.append(textwrap.fill(failure.hint, width=96, initial_indent="  hint: ",
                                       subsequent_indent="        ", break_on_hyphens=False))
        return "\n".join(lines)

    def __str__(self):
        details = self.details()
        return self.summary() + ("\n\n" + details if details else "")


class CaseFailed(Exception):
    """Raised inside a case to stop the check with a message and maybe a hint."""

    def __init__(self, message, hint=None):
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Returned:
    """A call that returned: its result, and the arguments as they were after the call."""

    result: object
    args_after: tuple


@dataclass(frozen=True)
class Raised:
    """A call that raised: the names of the exception's class and its bases (most derived first),
    its message, and the traceback lines of the learner's file ending with the error itself."""

    types: tuple
    message: str
    traceback: str


def check(function, kernel=None):
    """Run `function` through the ladder of `kernel` (default: the function's own name) -> Report.

    The function runs in this process: use it on your own function (a notebook, a test). A
    grader checks files, each in a process of its own: check_file.
    """
    kernel = kernel or getattr(function, "__name__", None)
    exercise = get_exercise(kernel)
    return check_exercise(exercise, lambda case: call_in_process(function, case.args))


def check_exercise(exercise, call):
    """Climb the ladder of `exercise`, each case's outcome from call(case) -> Report.

    call returns a Returned or a Raised, or raises CaseFailed when the call could not finish.
    """
    cases = ladder(exercise.name)
    names = tuple(case.name for case, _ in cases)
    for number, (case, expected) in enumerate(cases, start=1):
        try:
            judge(exercise, case, expected, call(case))
        except CaseFailed as failed:
            hint = failed.hint or case.hint
            return Report(exercise.name, False, number - 1, len(cases),
                          Failure(number, case.name, failed.message, hint), names)
    return Report(exercise.name, True, len(cases), len(cases), None, names)


@functools.lru_cache(maxsize=None)
def ladder(kernel):
    """[(case, expected outputs as a tuple)] of `kernel`, made once per process.

    The case's arrays are made read-only: every call is handed copies.
    """
    exercise = get_exercise(kernel)
    made = []
    for case in exercise.cases():
        for value in case.args:
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
        expected_args = tuple(_as_float64(copy.deepcopy(a)) for a in case.args)
        make_expected = case.expected or exercise.reference
        made.append((case, _as_tuple(make_expected(*expected_args))))
    return made


def call_in_process(function, args):
    """Call `function` on copies of `args` here -> Returned or Raised (Ctrl-C is let through)."""
    args = tuple(copy.deepcopy(a) for a in args)
    try:
        with np.errstate(all="ignore"):
            result = function(*args)
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # noqa: BLE001 - the learner's bug, whatever it is, is reported
        names = tuple(cls.__name__ for cls in type(error).__mro__)
        return Raised(names, str(error), format_traceback(error, _source_file(function)))
    return Returned(result, args)


def judge(exercise, case, expected, outcome):
    """Raise CaseFailed at the first thing wrong with the outcome of one case."""
    inputs = describe_inputs(exercise.reference, case.args)
    if isinstance(outcome, Raised):
        raise _raised(exercise, outcome, inputs)
    for name, given, kept in zip(_parameter_names(exercise.reference, case.args), outcome.args_after, case.args):
        _check_unchanged(name, given, kept, inputs)
    expected_args = tuple(_as_float64(a) for a in case.args)
    actual = _unpack(outcome.result, exercise, inputs)
    dtype = _float_dtype(case.args)
    tolerance = _tolerance(case, dtype)
    for position, name in enumerate(exercise.outputs):
        problem = _compare(name, actual[position], expected[position], dtype, tolerance,
                           name in exercise.scalars)
        if problem:
            raise CaseFailed(f"inputs: {inputs}\n{problem}",
                             _diagnose(exercise, position, actual[position], expected[position],
                                       expected_args, tolerance))


def _raised(exercise, raised, inputs):
    """The CaseFailed for a call that raised."""
    kind = raised.types[0] if raised.types else "Exception"
    if "NotImplementedError" in raised.types:
        return CaseFailed(f"{exercise.name} is not implemented yet (it raises NotImplementedError).",
                          "replace the `raise NotImplementedError` line with your code.")
    if "SystemExit" in raised.types:
        return CaseFailed(f"inputs: {inputs}\nyour function called exit() or sys.exit() "
                          f"(SystemExit: {raised.message}):\n{raised.traceback}",
                          "a kernel must return its result; remove the call that ends the program.")
    if "Exception" not in raised.types:
        return CaseFailed(f"inputs: {inputs}\nyour function raised {kind}, which is not an Exception "
                          f"(it derives from BaseException):\n{raised.traceback}",
                          "a kernel raises only Exceptions (ValueError, ...) and only for bad arguments.")
    hint = next((hint for error_type, text, hint in exercise.error_hints
                 if error_type.__name__ in raised.types and text in raised.message), None)
    return CaseFailed(f"inputs: {inputs}\nyour function raised an exception:\n{raised.traceback}", hint)


def _tolerance(case, dtype):
    """(rtol, atol) for comparing outputs on this case."""
    if case.expected is not None:
        return RTOL_GRADCHECK, ATOL_GRADCHECK
    if dtype == np.float32:
        return RTOL_FLOAT32, ATOL_FLOAT32
    return RTOL_FLOAT64, ATOL_FLOAT64


def _as_float64(value):
    if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating):
        return value.astype(np.float64)
    return value


def _as_tuple(outputs):
    return outputs if isinstance(outputs, tuple) else (outputs,)


def _float_dtype(args):
    """The dtype of the case's float arrays (float32 or float64)."""
    return next(a.dtype for a in args if isinstance(a, np.ndarray) and np.issubdtype(a.dtype, np.floating))


def _parameter_names(reference, args):
    return reference.__code__.co_varnames[:len(args)]


def describe_inputs(reference, args):
    """'dout (1, 1, 2, 2), x (1, 1, 4, 4), stride=1, float64': shapes of arrays, values of the rest."""
    parts = []
    for name, value in zip(_parameter_names(reference, args), args):
        parts.append(f"{name} {value.shape}" if isinstance(value, np.ndarray) else f"{name}={value!r}")
    defaults = reference.__code__.co_varnames[len(args):reference.__code__.co_argcount]
    if defaults:
        parts.append(f"{' and '.join(defaults)} left to their defaults")
    parts.append(str(_float_dtype(args)))
    return ", ".join(parts)


def _source_file(function):
    # numba's compiled functions keep the Python original in py_func.
    function = getattr(function, "py_func", function)
    code = getattr(function, "__code__", None)
    return code.co_filename if code else None


def _check_unchanged(name, given, kept, inputs):
    """The learner must not write into an array it was given (nor change its shape or dtype in place)."""
    if not isinstance(kept, np.ndarray):
        return
    alike = isinstance(given, np.ndarray) and given.shape == kept.shape and given.dtype == kept.dtype
    if alike and np.array_equal(given, kept, equal_nan=np.issubdtype(kept.dtype, np.inexact)):
        return
    where = ""
    if alike:
        index = tuple(int(k) for k in np.argwhere(given != kept)[0])
        where = f" (first change at index {index}: was {kept[index]:.6g}, now {given[index]:.6g})"
    raise CaseFailed(f"inputs: {inputs}\nyour function changed its input {name}{where}.",
                     f"never write into {name}: work on a copy ({name}.copy()) or in a new array; "
                     f"the caller still needs {name} as it was.")


def _unpack(result, exercise, inputs):
    """The learner's result as a tuple of outputs, or CaseFailed if it is not shaped like the reference's."""
    names = exercise.outputs
    if result is None:
        raise CaseFailed(f"inputs: {inputs}\nyour function returned None.",
                         f"did you forget the last line, return {', '.join(names)}?")
    if len(names) == 1:
        if isinstance(result, tuple):
            raise CaseFailed(f"inputs: {inputs}\nexpected one array ({names[0]}); "
                             f"got a tuple of {len(result)} items.",
                             f"return {names[0]} alone: in fcnn a kernel returns no cache "
                             f"(the model keeps what backward needs).")
        result = (result,)
    elif not isinstance(result, (tuple, list)) or len(result) != len(names):
        found = (f"{type(result).__name__} of {len(result)} items" if isinstance(result, (tuple, list))
                 else type(result).__name__)
        raise CaseFailed(f"inputs: {inputs}\nexpected a tuple ({', '.join(names)}); got a {found}.")
    for name, value in zip(names, result):
        if isinstance(value, np.ndarray) and type(value) is not np.ndarray:
            kind = f"{type(value).__module__}.{type(value).__qualname__}"
            raise CaseFailed(f"inputs: {inputs}\n{name} is a {kind}, not a plain numpy array.",
                             f"return np.asarray({name}): np.matrix and other array subclasses change what "
                             f"*, ** and indexing mean, so the same code gives other numbers.")
        if name in exercise.scalars:
            if not (isinstance(value, (int, float, np.number)) or
                    (isinstance(value, np.ndarray) and value.ndim <= 1)):
                raise CaseFailed(f"inputs: {inputs}\n{name} must be a number; got {type(value).__name__}.")
        elif not isinstance(value, np.ndarray):
            raise CaseFailed(f"inputs: {inputs}\n{name} must be a numpy array; got {type(value).__name__}.")
    return tuple(result)


def _tolerance_mask(actual, expected, tolerance):
    """True where actual is close enough to expected (nan and inf are never close)."""
    rtol, atol = tolerance
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    return np.isfinite(actual) & np.isclose(actual, expected, rtol=rtol, atol=atol * scale)


def _compare(name, actual, expected, dtype, tolerance, scalar):
    """What is wrong with one output (shape, dtype, values), or None if it is right."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if actual.shape != expected.shape:
        return f"{name} has shape {actual.shape}; expected {expected.shape}."
    if not scalar and actual.dtype != dtype:
        return f"{name} has dtype {actual.dtype}; expected {dtype} (the dtype of the inputs)."
    if not np.issubdtype(actual.dtype, np.number):
        return f"{name} has dtype {actual.dtype}; expected numbers."
    if np.iscomplexobj(actual):
        return f"{name} is complex ({actual.dtype}); expected real numbers."
    close = _tolerance_mask(actual.astype(np.float64), expected, tolerance)
    if close.all():
        return None
    if scalar:
        return f"{name} is wrong: expected {float(expected):.6g}, got {float(actual):.6g}."
    index = tuple(int(k) for k in np.argwhere(~close)[0])
    return (f"{name} is wrong at index {index}: expected {expected[index]:.6g}, got {actual[index]:.6g} "
            f"({int((~close).sum())} of {close.size} values differ).")


def _matches(actual, candidate, tolerance):
    actual = np.asarray(actual)
    candidate = np.asarray(candidate)
    if (actual.shape != candidate.shape or not np.issubdtype(actual.dtype, np.number)
            or np.iscomplexobj(actual)):
        return False
    return bool(_tolerance_mask(actual.astype(np.float64), candidate, tolerance).all())


def _diagnose(exercise, position, actual, expected, args, tolerance):
    """The hint of the first known mistake whose output equals the learner's, or of a generic signature."""
    for mistake in exercise.mistakes:
        try:
            with np.errstate(all="ignore"):
                candidate = mistake.output(*args)
        except Exception:  # noqa: BLE001 - a mistake that cannot be made on these shapes gives no hint
            continue
        if candidate is None:
            continue
        candidate = _as_tuple(candidate)[position]
        if _matches(actual, candidate, tolerance) and not _matches(candidate, expected, tolerance):
            return mistake.hint
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if exercise.nonfinite_hint and np.all(np.isfinite(expected)) and not np.all(np.isfinite(actual)):
        return exercise.nonfinite_hint
    if exercise.shape_rule and actual.ndim == expected.ndim and actual.shape != expected.shape:
        differences = {abs(a - e) for a, e in zip(actual.shape, expected.shape)}
        if differences <= {0, 1}:
            return f"the output shape is off by one: {exercise.shape_rule}."
    return None
