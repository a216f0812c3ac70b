"""Exercises for learners: write a kernel yourself, and get told exactly where it first goes wrong.

    python -m fcnn.exercises list                        kernels to practise, with their goals
    python -m fcnn.exercises new conv2d_backward > my_conv.py
    python -m fcnn.exercises check my_conv.py            every exercisable kernel the file defines

    python -m fcnn.exercises check my_conv.py --format gradescope --out results.json

From Python: `fcnn.exercises.check(my_function, kernel="conv2d_backward")` returns a Report;
`fcnn.exercises.assert_passes(my_function, kernel="conv2d_backward")` raises AssertionError
with the verdict and its hint (an nbgrader or otter-grader cell passes when nothing is raised).
A file is checked with check_file, in a process of its own with limits (see sandbox.py).

How to add an exercise
----------------------
An exercise lives in one module per kernel family (conv.py, pool.py, relu.py, dense.py,
softmax.py), which holds all of it: its ladder of named cases, its known mistakes and its entry.
To add a family, say batch norm:

1. Write `fcnn/exercises/batchnorm.py` (copy relu.py, the smallest, as a pattern):
   - `forward_cases()` -> [Case(name, args, hint, expected)], simplest first, from a fixed seed,
     tiny shapes; each name unique within the exercise, and a hint saying what the case is the
     first to test. A backward ladder ends with a case whose `expected` computes the gradients
     by central differences (fcnn.gradcheck.numerical_gradient) of the forward reference.
   - `FORWARD_MISTAKES = [Mistake(hint, output)]`: output takes the case's arguments (float64)
     and returns what the mistaken kernel would, or None where the mistake cannot show.
   - `EXERCISES = [Exercise(name, reference, outputs, forward_cases, tuple(FORWARD_MISTAKES)), ...]`,
     with `reference` the library's own function (its signature and docstring become the stub).
2. Add the module to `FAMILIES` in fcnn/exercises/registry.py (one line; the list's order is
   the order `list` shows).
3. Test it in tests/test_exercise_batchnorm.py: its reference passes (the registry-wide tests do
   that already), and each mistake fails at its case, named with `exercise.case_number(name)`.

Shared pieces (random inputs, float32 copies, the usual hints, bias-gradient mistakes) are in
fcnn/exercises/exercise.py. Outputs are numpy arrays or, listed in `scalars`, plain numbers; a
kernel that needs randomness takes a numpy Generator among its arguments (each case makes its
own), so the learner's call and the reference's see the same draws.
"""

from fcnn.exercises.checking import Failure, Report, check
from fcnn.exercises.learner_file import LearnerFileError, check_file, check_files, load
from fcnn.exercises.registry import KERNELS
from fcnn.exercises.sandbox import Limits
from fcnn.exercises.stubs import stub


def assert_passes(function, kernel=None):
    """Check `function` as `kernel` (default: its own name); AssertionError with the verdict if it fails.

    Returns the Report when it passes.
    """
    report = check(function, kernel)
    if not report.passed:
        raise AssertionError(str(report))
    return report


def list_exercises():
    """[(kernel name, one-line goal)] in the order the exercises are best done."""
    return [(name, exercise.goal) for name, exercise in KERNELS.items()]


__all__ = ["KERNELS", "Failure", "LearnerFileError", "Limits", "Report", "assert_passes", "check", "check_file",
           "check_files", "list_exercises", "load", "stub"]
