"""Tests of the verdicts in a platform's format, field by field: Gradescope, PrairieLearn, fcnn's JSON record.

Each format is checked for a passing, a failing, a non-importing and a hostile file, against
the fields, types and ranges its platform's specification gives.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fcnn.exercises as exercises
from fcnn.exercises import relu
from fcnn.exercises.__main__ import main
from fcnn.exercises.registry import KERNELS

RIGHT = "import numpy as np\n\ndef relu_forward(x):\n    return np.maximum(x, 0)\n"
# relu_backward lets the gradient through at x == 0: it fails at case 3 of 5, "exact zeros in x".
MIXED = RIGHT + "\ndef relu_backward(dout, x):\n    return np.where(x >= 0, dout, 0)\n"
BROKEN = "def relu_forward(x)\n    return x\n"
HANGS = "def relu_forward(x):\n    while True:\n        pass\n"
FILES = {"passing": RIGHT, "failing": MIXED, "non-importing": BROKEN, "hostile": HANGS, "empty": "x = 1\n"}
FORWARD_CASES, BACKWARD_CASES = 4, 5


def check(tmp_path, capsys, kind, format_name, *options):
    """`check --format format_name --out results.json` on the file of that kind -> (exit status, parsed results)."""
    path = tmp_path / "mine.py"
    path.write_text(FILES[kind])
    out = tmp_path / "results" / "results.json"
    status = main(["check", str(path), "--format", format_name, "--out", str(out), "--time-limit", "1", *options])
    assert capsys.readouterr().out == ""  # with --out, nothing is printed
    return status, json.loads(out.read_text())


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --- Gradescope ---------------------------------------------------------------------------------

GRADESCOPE_VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}


def assert_gradescope_results(results):
    """The fields Gradescope's autograder specification gives results.json, with their types."""
    assert is_number(results["score"]) and results["score"] >= 0
    assert isinstance(results["output"], str)
    assert results["visibility"] in GRADESCOPE_VISIBILITY
    assert results["stdout_visibility"] in GRADESCOPE_VISIBILITY
    assert isinstance(results["tests"], list)
    for test in results["tests"]:
        assert set(test) == {"name", "number", "score", "max_score", "status", "output", "visibility"}
        assert isinstance(test["name"], str) and test["name"]
        assert isinstance(test["number"], str)
        assert is_number(test["score"]) and is_number(test["max_score"])
        assert 0 <= test["score"] <= test["max_score"]
        assert test["status"] in {"passed", "failed"}
        assert (test["status"] == "passed") == (test["score"] == test["max_score"] > 0)
        assert isinstance(test["output"], str)
        assert test["visibility"] in GRADESCOPE_VISIBILITY
    assert results["score"] == sum(test["score"] for test in results["tests"])


def test_gradescope_passing_file_scores_every_case(tmp_path, capsys):
    status, results = check(tmp_path, capsys, "passing", "gradescope")
    assert status == 0
    assert_gradescope_results(results)
    assert results["score"] == FORWARD_CASES
    assert [test["number"] for test in results["tests"]] == ["1.1", "1.2", "1.3", "1.4"]
    assert results["tests"][0]["name"] == f"relu_forward: {relu.FIRST}"
    assert all(test["status"] == "passed" and test["output"] == "" for test in results["tests"])
    assert results["output"].startswith("PASS relu_forward: 4 of 4 cases passed")


def test_gradescope_failing_file_scores_the_cases_before_the_failure(tmp_path, capsys):
    status, results = check(tmp_path, capsys, "failing", "gradescope")
    assert status == 1
    assert_gradescope_results(results)
    backward = [test for test in results["tests"] if test["name"].startswith("relu_backward")]
    assert [test["status"] for test in backward] == ["passed", "passed", "failed", "failed", "failed"]
    assert results["score"] == FORWARD_CASES + 2
    failed = backward[2]
    assert failed["name"] == f"relu_backward: {relu.ZEROS_CASE}" and failed["number"] == "2.3"
    assert "inputs: dout (3, 4), x (3, 4), float64" in failed["output"]  # the case
    assert "dx is wrong at index" in failed["output"]  # what differed
    assert "hint: the gradient passes where x == 0 exactly" in failed["output"]  # the hint
    assert backward[3]["output"].startswith("not run")


def test_gradescope_non_importing_file_scores_0_with_the_reason(tmp_path, capsys):
    status, results = check(tmp_path, capsys, "non-importing", "gradescope")
    assert status == 1
    assert_gradescope_results(results)
    assert results["score"] == 0 and results["tests"] == []
    assert "line 1:" in results["output"] and "def relu_forward(x)" in results["output"]


def test_gradescope_hostile_file_gets_its_verdict(tmp_path, capsys):
    status, results = check(tmp_path, capsys, "hostile", "gradescope")
    assert status == 1
    assert_gradescope_results(results)
    assert results["score"] == 0
    assert "did not finish within 1 s" in results["tests"][0]["output"]


def test_points_weight_the_cases(tmp_path, capsys):
    weights = tmp_path / "points.json"
    weights.write_text(json.dumps({"relu_forward": 0.5, "relu_backward": {relu.ZEROS_CASE: 3}}))
    _, results = check(tmp_path, capsys, "failing", "gradescope", "--points", str(weights))
    assert_gradescope_results(results)
    assert [test["max_score"] for test in results["tests"]] == [0.5] * 4 + [1, 1, 3, 1, 1]
    assert results["score"] == 0.5 * 4 + 2


@pytest.mark.parametrize("table, complaint", [({"conv3d": 1}, "unknown kernel 'conv3d'"),
                                              ({"relu_forward": {"no such case": 1}}, "has no case"),
                                              ({"relu_forward": -1}, "must be a number >= 0")])
def test_a_bad_points_table_is_a_usage_error(tmp_path, capsys, table, complaint):
    weights = tmp_path / "points.json"
    weights.write_text(json.dumps(table))
    (tmp_path / "mine.py").write_text(RIGHT)
    assert main(["check", str(tmp_path / "mine.py"), "--points", str(weights)]) == 2
    assert complaint in capsys.readouterr().err


# --- PrairieLearn -------------------------------------------------------------------------------

def assert_prairielearn_results(results):
    """The fields PrairieLearn's external grader reads from results.json, with their types and ranges."""
    assert isinstance(results["gradable"], bool)
    assert is_number(results["score"]) and 0 <= results["score"] <= 1
    assert isinstance(results["tests"], list)
    if not results["gradable"]:
        assert isinstance(results["format_errors"], list) and results["format_errors"]
        assert all(isinstance(error, str) for error in results["format_errors"])
    for test in results["tests"]:
        assert {"name", "points", "max_points", "message", "output"} <= set(test)
        assert isinstance(test["name"], str) and test["name"]
        assert is_number(test["points"]) and is_number(test["max_points"])
        assert 0 <= test["points"] <= test["max_points"]
        assert isinstance(test["message"], str) and isinstance(test["output"], str)


def test_prairielearn_passing_file_scores_1(tmp_path, capsys):
    status, results = check(tmp_path, capsys, "passing", "prairielearn")
    assert status == 0
    assert_prairielearn_results(results)
    assert results["gradable"] is True and results["score"] == 1.0
    assert [test["points"] for test in results["tests"]] == [1.0] * FORWARD_CASES


def test_prairielearn_failing_file_scores_the_fraction_of_points(tmp_path, capsys):
    status, results = check(tmp_path, capsys, "failing", "prairielearn")
    assert status == 1
    assert_prairielearn_results(results)
    assert results["score"] == pytest.approx((FORWARD_CASES + 2) / (FORWARD_CASES + BACKWARD_CASES))
    failed = results["tests"][FORWARD_CASES + 2]
    assert failed["message"] == "failed" and failed["points"] == 0
    assert "hint: the gradient passes where x == 0 exactly" in failed["output"]


def test_prairielearn_non_importing_file_is_not_gradable(tmp_path, capsys):
    """A file that does not compile costs the learner no attempt: gradable false, with format_errors."""
    status, results = check(tmp_path, capsys, "non-importing", "prairielearn")
    assert status == 1
    assert_prairielearn_results(results)
    assert results["gradable"] is False and results["score"] == 0
    assert "line 1:" in results["format_errors"][0]


def test_prairielearn_file_without_a_kernel_is_not_gradable(tmp_path, capsys):
    _, results = check(tmp_path, capsys, "empty", "prairielearn")
    assert results["gradable"] is False
    assert "defines no exercisable kernel" in results["format_errors"][0]


def test_prairielearn_hostile_file_is_gradable_and_scores_0(tmp_path, capsys):
    _, results = check(tmp_path, capsys, "hostile", "prairielearn")
    assert_prairielearn_results(results)
    assert results["gradable"] is True and results["score"] == 0
    assert "did not finish within 1 s" in results["tests"][0]["output"]


# --- fcnn's JSON record -------------------------------------------------------------------------

def assert_record(record):
    """The fields fcnn.exercises.formats documents for its record, with their types."""
    assert record["format"] == "fcnn.exercises/1"
    assert isinstance(record["file"], str)
    assert isinstance(record["checked"], bool) and isinstance(record["passed"], bool)
    assert record["error"] is None or isinstance(record["error"], str)
    assert record["checked"] == (record["error"] is None)
    assert is_number(record["score"]) and is_number(record["max_score"])
    for kernel in record["kernels"]:
        assert kernel["kernel"] in KERNELS
        assert isinstance(kernel["passed"], bool)
        assert 0 <= kernel["cases_passed"] <= kernel["cases_total"] == len(kernel["cases"])
        failure = kernel["failure"]
        assert (failure is None) == kernel["passed"]
        if failure is not None:
            assert set(failure) == {"case", "case_number", "message", "hint"}
            assert kernel["cases"][failure["case_number"] - 1]["case"] == failure["case"]
        for number, case in enumerate(kernel["cases"], start=1):
            assert case["number"] == number and case["status"] in {"passed", "failed", "not run"}
            assert 0 <= case["score"] <= case["max_score"]
    assert record["score"] == sum(kernel["score"] for kernel in record["kernels"])


def test_json_record_of_a_failing_file_names_kernel_case_what_differed_and_hint(tmp_path, capsys):
    status, record = check(tmp_path, capsys, "failing", "json")
    assert status == 1
    assert_record(record)
    forward, backward = record["kernels"]
    assert forward["passed"] and forward["failure"] is None and forward["score"] == FORWARD_CASES
    assert backward["kernel"] == "relu_backward" and backward["passed"] is False
    assert backward["failure"]["case"] == relu.ZEROS_CASE and backward["failure"]["case_number"] == 3
    assert "dx is wrong at index" in backward["failure"]["message"]
    assert "x == 0 exactly" in backward["failure"]["hint"]
    assert [case["status"] for case in backward["cases"]] == ["passed", "passed", "failed", "not run", "not run"]


@pytest.mark.parametrize("kind, checked, passed", [("passing", True, True), ("non-importing", False, False),
                                                   ("hostile", True, False)])
def test_json_record_of_other_files(tmp_path, capsys, kind, checked, passed):
    _, record = check(tmp_path, capsys, kind, "json")
    assert_record(record)
    assert (record["checked"], record["passed"]) == (checked, passed)


def test_text_format_is_what_check_prints_by_default(tmp_path, capsys):
    path = tmp_path / "mine.py"
    path.write_text(MIXED)
    main(["check", str(path)])
    default = capsys.readouterr().out
    main(["check", str(path), "--format", "text"])
    assert capsys.readouterr().out == default
    assert default.startswith("PASS relu_forward: 4 of 4 cases passed\nFAIL relu_backward: 2 of 5 cases passed\n")


# --- assert_passes, for notebook graders --------------------------------------------------------

def test_assert_passes_is_silent_for_a_right_kernel_and_returns_the_report():
    report = exercises.assert_passes(lambda x: np.maximum(x, 0), kernel="relu_forward")
    assert report.passed


def test_assert_passes_raises_assertion_error_with_the_verdict_and_hint():
    def relu_backward(dout, x):
        return np.where(x >= 0, dout, 0)

    with pytest.raises(AssertionError) as raised:
        exercises.assert_passes(relu_backward)
    message = str(raised.value)
    assert message.startswith("FAIL relu_backward: 2 of 5 cases passed")
    assert f"case 3 of 5: {relu.ZEROS_CASE}" in message
    assert "hint: the gradient passes where x == 0 exactly" in message


# --- the platforms' own layouts: the scripts of docs/courses.md, run under a temporary root ---------

COURSES = Path(__file__).resolve().parent.parent / "docs" / "courses.md"


def script_in_courses_page(name):
    """The bash block that follows `<!-- file: name -->` in docs/courses.md."""
    match = re.search(rf"<!-- file: {re.escape(name)} -->\n```bash\n(.*?)```", COURSES.read_text(), re.S)
    assert match, f"docs/courses.md has no script {name}"
    return match.group(1)


def run_script(tmp_path, name, environment):
    """Run the page's script `name` as the platform would, with python3 the interpreter running these tests."""
    script = tmp_path / name
    script.write_text(script_in_courses_page(name))
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = dict(os.environ, PATH=path, **environment)
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("kind", ["passing", "failing", "non-importing", "missing"])
def test_gradescope_run_autograder_writes_results_where_gradescope_reads_them(tmp_path, kind):
    root = tmp_path / "autograder"
    (root / "submission").mkdir(parents=True)
    (root / "source").mkdir()
    (root / "source" / "points.json").write_text(json.dumps({"relu_forward": 2}))
    if kind != "missing":
        (root / "submission" / "my_kernels.py").write_text(FILES[kind])
    run_script(tmp_path, "run_autograder", {"AUTOGRADER_ROOT": str(root)})
    results = json.loads((root / "results" / "results.json").read_text())
    assert_gradescope_results(results)
    expected = {"passing": 2 * FORWARD_CASES, "failing": 2 * FORWARD_CASES + 2, "non-importing": 0, "missing": 0}
    assert results["score"] == expected[kind]
    if kind == "missing":
        assert "No .py file was handed in" in results["output"]


@pytest.mark.parametrize("kind, gradable, score", [("passing", True, 1.0), ("failing", True, 6 / 9),
                                                   ("non-importing", False, 0), ("missing", False, 0)])
def test_prairielearn_grader_command_writes_results_where_prairielearn_reads_them(tmp_path, kind, gradable, score):
    root = tmp_path / "grade"
    (root / "student").mkdir(parents=True)
    if kind != "missing":
        (root / "student" / "my_kernels.py").write_text(FILES[kind])
    run_script(tmp_path, "run.sh", {"GRADE_ROOT": str(root)})
    results = json.loads((root / "results" / "results.json").read_text())
    assert_prairielearn_results(results)
    assert results["gradable"] is gradable
    assert results["score"] == pytest.approx(score)
