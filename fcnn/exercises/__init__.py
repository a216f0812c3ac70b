"""Exercises for learners: write a kernel yourself, and get told exactly where it first goes wrong.

    python -m fcnn.exercises list                        kernels to practise, with their goals
    python -m fcnn.exercises new conv2d_backward > my_conv.py
    python -m fcnn.exercises check my_conv.py            every exercisable kernel the file defines

From Python: `fcnn.exercises.check(my_function, kernel="conv2d_backward")` returns a Report.
"""

from fcnn.exercises.catalog import KERNELS
from fcnn.exercises.checking import Failure, Report, check
from fcnn.exercises.learner_file import LearnerFileError, kernels_in, load
from fcnn.exercises.stubs import stub


def list_exercises():
    """[(kernel name, one-line goal)] in the order the exercises are best done."""
    return [(name, exercise.goal) for name, exercise in KERNELS.items()]


def check_file(path):
    """Check every exercisable kernel that the file at `path` defines -> [Report].

    FileNotFoundError for a missing file; LearnerFileError for a file that does not compile,
    fails while it loads, or defines no exercisable kernel.
    """
    found = kernels_in(load(path))
    if not found:
        raise LearnerFileError(
            f"{path} defines no exercisable kernel; define one of: {', '.join(KERNELS)} "
            f"(python -m fcnn.exercises new NAME gives you a stub)."
        )
    return [check(function, name) for name, function in found.items()]


__all__ = ["KERNELS", "Failure", "LearnerFileError", "Report", "check", "check_file", "list_exercises", "stub"]
