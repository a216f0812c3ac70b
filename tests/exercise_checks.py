"""The claim every exercise test file makes of its learner-written mistakes, stated once."""

import fcnn.exercises as exercises
from fcnn.exercises.registry import KERNELS


def assert_fails_at_case_with_hint(kernel, function, case_name, hint):
    """Checking `function` as `kernel` fails at the case called case_name, every case before it
    passed, and the failure's hint contains `hint`."""
    case_number = KERNELS[kernel].case_number(case_name)
    report = exercises.check(function, kernel)
    assert not report.passed
    assert report.failure.case_number == case_number, str(report)
    assert report.cases_passed == case_number - 1
    assert hint in report.failure.hint, str(report)
