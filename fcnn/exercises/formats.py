"""A file's verdicts in the formats a course reads: text, fcnn's own JSON record, Gradescope and PrairieLearn.

Every function takes the file's path, its reports ([Report], empty when the file could not be
checked), the reason it could not be checked (or None) and the points per case, and returns
what to print or write. One test is one case of one kernel; the check stops at a kernel's first
failing case, so its later cases were not run and score nothing.

fcnn's JSON record (format "fcnn.exercises/1"; fields are only ever added):
    {"format": "fcnn.exercises/1", "file": str, "checked": bool, "error": str | null,
     "passed": bool, "score": number, "max_score": number,
     "kernels": [{"kernel": str, "passed": bool, "cases_passed": int, "cases_total": int,
                  "score": number, "max_score": number,
                  "failure": {"case": str, "case_number": int, "message": str, "hint": str | null} | null,
                  "cases": [{"case": str, "number": int, "status": "passed" | "failed" | "not run",
                             "score": number, "max_score": number}]}]}
    message says what differed (the inputs, the output, the index, expected and actual values).
"""

import json

from fcnn.exercises.registry import KERNELS

FORMAT = "fcnn.exercises/1"
NOT_RUN = "not run: the check stops at the first failing case."


def case_points(points, kernel, case):
    """Points case `case` of `kernel` is worth: points is None (1 each), or {kernel: number | {case: number}}."""
    weight = (points or {}).get(kernel, 1)
    if isinstance(weight, dict):
        return float(weight.get(case, 1))
    return float(weight)


def check_points(points):
    """ValueError naming what is wrong with a points table: unknown kernels or cases, negative points."""
    for kernel, weight in (points or {}).items():
        if kernel not in KERNELS:
            raise ValueError(f"points: unknown kernel {kernel!r}; choose among {', '.join(KERNELS)}")
        names = [case.name for case in KERNELS[kernel].cases()]
        weights = weight.items() if isinstance(weight, dict) else [(None, weight)]
        for case, value in weights:
            if case is not None and case not in names:
                raise ValueError(f"points: {kernel} has no case {case!r}; its cases: {names}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"points: {kernel} {case or ''} must be a number >= 0; got {value!r}")


def _cases(report, points):
    """[(number, name, status, score, max score, output)] for every case of the report's ladder."""
    rows = []
    failed_at = report.failure.case_number if report.failure else None
    for number, name in enumerate(report.case_names, start=1):
        worth = case_points(points, report.kernel, name)
        if failed_at is None or number < failed_at:
            rows.append((number, name, "passed", worth, worth, ""))
        elif number == failed_at:
            rows.append((number, name, "failed", 0.0, worth, report.details()))
        else:
            rows.append((number, name, "not run", 0.0, worth, NOT_RUN))
    return rows


def as_text(path, reports, error, points=None):
    """What `check` prints: one summary line per kernel, then what went wrong (today's text)."""
    if error is not None:
        return error + "\n"
    lines = [report.summary() for report in reports]
    for report in reports:
        if not report.passed:
            lines += ["", report.details()]
    return "\n".join(lines) + "\n"


def as_record(path, reports, error, points=None):
    """fcnn's own JSON record (see the module docstring)."""
    kernels = []
    for report in reports:
        rows = _cases(report, points)
        failure = report.failure
        kernels.append({
            "kernel": report.kernel, "passed": report.passed,
            "cases_passed": report.cases_passed, "cases_total": report.cases_total,
            "score": sum(row[3] for row in rows), "max_score": sum(row[4] for row in rows),
            "failure": None if failure is None else {
                "case": failure.case_name, "case_number": failure.case_number,
                "message": failure.message, "hint": failure.hint},
            "cases": [{"case": name, "number": number, "status": status, "score": score, "max_score": worth}
                      for number, name, status, score, worth, _ in rows],
        })
    return {"format": FORMAT, "file": str(path), "checked": error is None, "error": error,
            "passed": error is None and all(report.passed for report in reports),
            "score": sum(kernel["score"] for kernel in kernels),
            "max_score": sum(kernel["max_score"] for kernel in kernels), "kernels": kernels}


def as_gradescope(path, reports, error, points=None):
    """Gradescope's autograder results.json: a test per case, the total score, the summary as output."""
    tests = []
    for k, report in enumerate(reports, start=1):
        for number, name, status, score, worth, output in _cases(report, points):
            tests.append({"name": f"{report.kernel}: {name}", "number": f"{k}.{number}", "score": score,
                          "max_score": worth, "status": "passed" if status == "passed" else "failed",
                          "output": output, "visibility": "visible"})
    return {"score": sum(test["score"] for test in tests),
            "output": as_text(path, reports, error, points), "visibility": "visible",
            "stdout_visibility": "hidden", "tests": tests}


def as_prairielearn(path, reports, error, points=None):
    """PrairieLearn's external grader results.json: score in [0, 1]; a file that cannot be checked is not gradable."""
    if error is not None:
        return {"gradable": False, "score": 0.0, "message": error, "format_errors": [error], "tests": []}
    tests = []
    for report in reports:
        for number, name, status, score, worth, output in _cases(report, points):
            tests.append({"name": f"{report.kernel}: {name}", "points": score, "max_points": worth,
                          "message": {"passed": "passed", "failed": "failed"}.get(status, NOT_RUN),
                          "output": output})
    total = sum(test["max_points"] for test in tests)
    score = sum(test["points"] for test in tests) / total if total else 0.0
    return {"gradable": True, "score": score, "message": "\n".join(r.summary() for r in reports),
            "output": as_text(path, reports, error, points), "tests": tests}


FORMATS = {"text": as_text, "json": as_record, "gradescope": as_gradescope, "prairielearn": as_prairielearn}


def render(format_name, path, reports, error, points=None):
    """The verdicts as the text to print or write in `format_name` (JSON formats indented)."""
    made = FORMATS[format_name](path, reports, error, points)
    return made if isinstance(made, str) else json.dumps(made, indent=2) + "\n"
