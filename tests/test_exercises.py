"""Tests of the learner exercises: the references pass, classic mistakes fail where and how they should.

The wrong kernels below are written the way a learner would write them, each with one mistake.
"""

import ast
import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from exercise_checks import assert_fails_at_case_with_hint

import fcnn
import fcnn.exercises as exercises
from fcnn.exercises.__main__ import main
from fcnn.exercises import conv, dense, pool, relu, softmax
from fcnn.exercises.exercise import FLOAT32_CASE
from fcnn.exercises.registry import KERNELS
from fcnn.exercises.learner_file import load
from fcnn.kernels import available_backends, get_backend

CONV_POOL = ["conv2d_forward", "conv2d_backward", "maxpool2d_forward", "maxpool2d_backward"]


# --- the references and the backends pass ----------------------------------------------------

@pytest.mark.parametrize("kernel", list(KERNELS))
def test_reference_kernel_passes_its_own_check(kernel):
    report = exercises.check(KERNELS[kernel].reference, kernel)
    assert report.passed, str(report)
    assert report.cases_passed == report.cases_total >= 3


@pytest.mark.parametrize("backend", [b for b in ("numpy", "numba") if b in available_backends()])
@pytest.mark.parametrize("kernel", CONV_POOL)
def test_backend_kernel_passes_the_check(backend, kernel):
    report = exercises.check(getattr(get_backend(backend), kernel), kernel)
    assert report.passed, str(report)


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_case_names_are_unique_so_that_tests_and_reports_can_name_them(kernel):
    names = [case.name for case in KERNELS[kernel].cases()]
    assert len(set(names)) == len(names), names
    assert KERNELS[kernel].case_number(names[-1]) == len(names)
    with pytest.raises(KeyError, match="has no case"):
        KERNELS[kernel].case_number("no such case")


@pytest.mark.parametrize("kernel", [name for name in KERNELS if name.endswith("_backward")] + ["softmax_cross_entropy"])
def test_backward_ladders_end_with_finite_differences(kernel):
    last = KERNELS[kernel].cases()[-1]
    assert "finite differences" in last.name and last.expected is not None


def test_finite_differences_catch_a_gradient_that_is_wrong_only_there():
    """A backward that agrees with the reference except on the finite-difference case still fails."""
    reference = KERNELS["relu_backward"].reference

    def relu_backward(dout, x):
        dx = reference(dout, x)
        return dx * 1.001 if dx.shape == (3, 4) and np.all(np.abs(x) >= 0.1) else dx

    report = exercises.check(relu_backward)
    assert not report.passed
    assert report.failure.case_number == report.cases_total
    assert "finite differences" in report.failure.case_name


# --- wrong kernels, written as a learner would -------------------------------------------------

def conv2d_forward_with(mistake):
    """A loop conv2d_forward with one mistake: flip, transpose, no_pad, no_stride, off_by_one, no_bias, float64."""

    def conv2d_forward(x, w, b, stride=1, pad=0):
        N, C, H, W = x.shape
        F, _, KH, KW = w.shape
        if mistake == "no_pad":
            pad = 0
        if mistake == "no_stride":
            stride = 1
        extra = 0 if mistake == "off_by_one" else 1
        H_out = (H + 2 * pad - KH) // stride + extra
        W_out = (W + 2 * pad - KW) // stride + extra
        xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        kernel = {"flip": w[:, :, ::-1, ::-1], "transpose": w.swapaxes(2, 3)}.get(mistake, w)
        dtype = np.float64 if mistake == "float64" else x.dtype
        out = np.zeros((N, F, H_out, W_out), dtype=dtype)
        for n in range(N):
            for f in range(F):
                for i in range(H_out):
                    for j in range(W_out):
                        window = xpad[n, :, i * stride:i * stride + KH, j * stride:j * stride + KW]
                        bias = 0 if mistake == "no_bias" else b[f]
                        out[n, f, i, j] = np.sum(window * kernel[f]) + bias
        return out

    return conv2d_forward


def conv2d_backward_with(mistake):
    """A loop conv2d_backward with one mistake (see the branches below)."""

    def conv2d_backward(dout, x, w, stride=1, pad=0):
        N, C, H, W = x.shape
        F, _, KH, KW = w.shape
        _, _, H_out, W_out = dout.shape
        if mistake == "no_stride":
            stride = 1
        xpad = x if mistake == "no_pad" else np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        dxpad = np.zeros_like(xpad)
        dw = np.zeros_like(w)
        db = np.zeros(F, dtype=w.dtype)
        kernel_for_dx = w[:, :, ::-1, ::-1] if mistake == "dx_flipped_kernel" else w
        for n in range(N):
            for f in range(F):
                if mistake == "db_last_image":
                    db[f] = dout[n, f].sum()
                else:
                    db[f] += dout[n, f].sum()
                for c in range(C):
                    for ki in range(KH):
                        for kj in range(KW):
                            for i in range(H_out):
                                for j in range(W_out):
                                    pixel = xpad[n, c, i * stride + ki, j * stride + kj]
                                    if mistake == "transposed_dw":  # the original script's bug
                                        dw[f, c, kj, ki] += dout[n, f, i, j] * pixel
                                    elif mistake == "flipped_dw":
                                        dw[f, c, KH - 1 - ki, KW - 1 - kj] += dout[n, f, i, j] * pixel
                                    else:
                                        dw[f, c, ki, kj] += dout[n, f, i, j] * pixel
                                    dxpad[n, c, i * stride + ki, j * stride + kj] += (
                                        kernel_for_dx[f, c, ki, kj] * dout[n, f, i, j])
        if mistake == "db_averaged":
            db = db / N
        if mistake == "db_per_image":
            db = dout.sum(axis=(2, 3))
        if mistake in ("padded_dx", "no_pad"):
            return dxpad, dw, db
        return dxpad[:, :, pad:pad + H, pad:pad + W], dw, db

    return conv2d_backward


def _windows(H_out, W_out, size, stride):
    for i in range(H_out):
        for j in range(W_out):
            yield i, j, slice(i * stride, i * stride + size), slice(j * stride, j * stride + size)


def maxpool2d_forward_with(mistake):
    """maxpool2d_forward with one mistake: stride_none_is_1, stride_is_size, ceil."""

    def maxpool2d_forward(x, size=2, stride=None):
        if stride is None:
            stride = 1 if mistake == "stride_none_is_1" else size
        if mistake == "stride_is_size":
            stride = size
        N, C, H, W = x.shape
        if mistake == "ceil":
            H_out, W_out = -(-(H - size) // stride) + 1, -(-(W - size) // stride) + 1
        else:
            H_out, W_out = (H - size) // stride + 1, (W - size) // stride + 1
        out = np.empty((N, C, H_out, W_out), dtype=x.dtype)
        for i, j, rows, columns in _windows(H_out, W_out, size, stride):
            out[:, :, i, j] = x[:, :, rows, columns].max(axis=(2, 3))
        return out

    return maxpool2d_forward


def maxpool2d_backward_with(mistake):
    """maxpool2d_backward with one mistake: every_tie, split_tie, last_tie, overwrite."""

    def maxpool2d_backward(dout, x, size=2, stride=None):
        stride = size if stride is None else stride
        dx = np.zeros_like(x)
        for n in range(x.shape[0]):
            for c in range(x.shape[1]):
                for i, j, rows, columns in _windows(dout.shape[2], dout.shape[3], size, stride):
                    window = x[n, c, rows, columns]
                    winners = np.argwhere(window == window.max())
                    if mistake in ("every_tie", "split_tie"):
                        share = 1 if mistake == "every_tie" else 1 / len(winners)
                        for di, dj in winners:
                            dx[n, c, i * stride + di, j * stride + dj] += share * dout[n, c, i, j]
                        continue
                    di, dj = winners[-1] if mistake == "last_tie" else winners[0]
                    if mistake == "overwrite":
                        dx[n, c, i * stride + di, j * stride + dj] = dout[n, c, i, j]
                    else:
                        dx[n, c, i * stride + di, j * stride + dj] += dout[n, c, i, j]
        return dx

    return maxpool2d_backward


def relu_forward_max_along_axis(x):
    return np.max(x, 0)


def relu_forward_in_place(x):
    x[x < 0] = 0
    return x


def relu_forward_float64(x):
    return np.where(x > 0, x, 0.0).astype(np.float64)


def relu_backward_at_zero(dout, x):
    return np.where(x >= 0, dout, 0).astype(dout.dtype)


def relu_backward_times_x(dout, x):
    return np.where(x > 0, dout * x, 0).astype(dout.dtype)


def relu_backward_pass_through(dout, x):
    return dout.copy()


def relu_backward_in_place(dout, x):
    dout[x <= 0] = 0
    return dout


def dense_forward_without_bias(x, w, b):
    return x @ w


def dense_forward_transposed(x, w, b):
    return w.T @ x.T + b[:, None]


def dense_backward_missing_transpose(dout, x, w):
    return dout @ w, x.T @ dout, dout.sum(axis=0)


def dense_backward_transposed_dw(dout, x, w):
    return dout @ w.T, dout.T @ x, dout.sum(axis=0)


def dense_backward_db_first_sample(dout, x, w):
    return dout @ w.T, x.T @ dout, dout[0]


def dense_backward_db_averaged(dout, x, w):
    return dout @ w.T, x.T @ dout, dout.mean(axis=0)


def softmax_cross_entropy_with(mistake):
    """softmax_cross_entropy with one mistake: not_divided, summed_loss, per_sample_loss, no_minus_one,
    no_shift, in_place."""

    def softmax_cross_entropy(logits, labels):
        N = len(labels)
        if mistake == "in_place":
            logits -= logits.max(axis=1, keepdims=True)
            shifted = logits
        elif mistake == "no_shift":
            shifted = logits
        else:
            shifted = logits - logits.max(axis=1, keepdims=True)
        probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        losses = -np.log(probabilities[np.arange(N), labels])
        loss = {"summed_loss": losses.sum(), "per_sample_loss": losses}.get(mistake, losses.mean())
        dlogits = probabilities.copy()
        if mistake != "no_minus_one":
            dlogits[np.arange(N), labels] -= 1
        return loss, dlogits if mistake == "not_divided" else dlogits / N

    return softmax_cross_entropy


# (kernel, wrong function, name of the case where it must fail, text the hint must contain)
MISTAKES = {
    "conv2d_forward flipped kernel": ("conv2d_forward", conv2d_forward_with("flip"), conv.FIRST,
                                      "true convolution"),
    "conv2d_forward transposed kernel": ("conv2d_forward", conv2d_forward_with("transpose"), conv.FIRST,
                                         "kernel is transposed"),
    "conv2d_forward off by one": ("conv2d_forward", conv2d_forward_with("off_by_one"), conv.FIRST,
                                  "off by one"),
    "conv2d_forward no bias": ("conv2d_forward", conv2d_forward_with("no_bias"), conv.FIRST,
                               "bias is missing"),
    "conv2d_forward stride ignored": ("conv2d_forward", conv2d_forward_with("no_stride"), "stride 2",
                                      "stride is ignored"),
    "conv2d_forward padding forgotten": ("conv2d_forward", conv2d_forward_with("no_pad"), "padding 1",
                                         "padding is forgotten"),
    "conv2d_forward float64 out": ("conv2d_forward", conv2d_forward_with("float64"), FLOAT32_CASE,
                                   "dtype=x.dtype"),
    "conv2d_backward transposed dw": ("conv2d_backward", conv2d_backward_with("transposed_dw"), conv.FIRST,
                                      "KH and KW axes swapped"),
    "conv2d_backward flipped dw": ("conv2d_backward", conv2d_backward_with("flipped_dw"), conv.FIRST,
                                   "dw needs no flip"),
    "conv2d_backward dx flipped kernel": ("conv2d_backward", conv2d_backward_with("dx_flipped_kernel"),
                                          conv.FIRST, "dx used the kernel rotated"),
    "conv2d_backward db last image": ("conv2d_backward", conv2d_backward_with("db_last_image"),
                                      "a batch of two images", "only the last"),
    "conv2d_backward db averaged": ("conv2d_backward", conv2d_backward_with("db_averaged"),
                                    "a batch of two images", "db is averaged"),
    "conv2d_backward db per image": ("conv2d_backward", conv2d_backward_with("db_per_image"), conv.FIRST,
                                     "db still has a batch axis"),
    "conv2d_backward stride ignored": ("conv2d_backward", conv2d_backward_with("no_stride"), "stride 2",
                                       "stride is ignored"),
    "conv2d_backward padded dx": ("conv2d_backward", conv2d_backward_with("padded_dx"), "padding 1",
                                  "shape of the padded input"),
    "conv2d_backward padding forgotten": ("conv2d_backward", conv2d_backward_with("no_pad"), "padding 1",
                                          "first case with padding"),
    "maxpool2d_forward stride None as 1": ("maxpool2d_forward", maxpool2d_forward_with("stride_none_is_1"),
                                           pool.DEFAULTS_CASE, "stride None means stride = size"),
    "maxpool2d_forward stride ignored": ("maxpool2d_forward", maxpool2d_forward_with("stride_is_size"),
                                         pool.OVERLAPPING_CASE, "stride is ignored"),
    "maxpool2d_forward rounds up": ("maxpool2d_forward", maxpool2d_forward_with("ceil"),
                                    "a 5x5 image: the last row and column are left over", "off by one"),
    "maxpool2d_backward every tie": ("maxpool2d_backward", maxpool2d_backward_with("every_tie"),
                                     pool.TIES_CASE, "every tied maximum"),
    "maxpool2d_backward split tie": ("maxpool2d_backward", maxpool2d_backward_with("split_tie"),
                                     pool.TIES_CASE, "split among tied maxima"),
    "maxpool2d_backward last tie": ("maxpool2d_backward", maxpool2d_backward_with("last_tie"), pool.TIES_CASE,
                                    "last tied maximum"),
    "maxpool2d_backward overwrite": ("maxpool2d_backward", maxpool2d_backward_with("overwrite"),
                                     pool.OVERLAPPING_CASE, "overwrite each other"),
    "relu_forward np.max": ("relu_forward", relu_forward_max_along_axis, relu.FIRST, "np.maximum"),
    "relu_forward in place": ("relu_forward", relu_forward_in_place, relu.FIRST, "never write into x"),
    "relu_forward float64 out": ("relu_forward", relu_forward_float64, FLOAT32_CASE, "dtype=x.dtype"),
    "relu_backward at zero": ("relu_backward", relu_backward_at_zero, "exact zeros in x", "x == 0 exactly"),
    "relu_backward times x": ("relu_backward", relu_backward_times_x, relu.FIRST, "dout * x"),
    "relu_backward pass through": ("relu_backward", relu_backward_pass_through, relu.FIRST,
                                   "dx is dout everywhere"),
    "relu_backward in place": ("relu_backward", relu_backward_in_place, relu.FIRST, "never write into dout"),
    "dense_forward no bias": ("dense_forward", dense_forward_without_bias, dense.FIRST, "bias is missing"),
    "dense_forward transposed": ("dense_forward", dense_forward_transposed, dense.FIRST, "out is transposed"),
    "dense_backward missing transpose": ("dense_backward", dense_backward_missing_transpose, dense.FIRST,
                                         "mismatched shapes"),
    "dense_backward transposed dw": ("dense_backward", dense_backward_transposed_dw, dense.FIRST,
                                     "dw is transposed"),
    "dense_backward db first sample": ("dense_backward", dense_backward_db_first_sample,
                                       "a batch of 5 samples", "only the first"),
    "dense_backward db averaged": ("dense_backward", dense_backward_db_averaged, "a batch of 5 samples",
                                   "db is averaged"),
    "softmax not divided by N": ("softmax_cross_entropy", softmax_cross_entropy_with("not_divided"),
                                 softmax.BATCH_CASE, "not divided by N"),
    "softmax loss summed": ("softmax_cross_entropy", softmax_cross_entropy_with("summed_loss"),
                            softmax.BATCH_CASE, "summed over the batch"),
    "softmax per-sample loss": ("softmax_cross_entropy", softmax_cross_entropy_with("per_sample_loss"),
                                softmax.FIRST, "one number per sample"),
    "softmax no -1": ("softmax_cross_entropy", softmax_cross_entropy_with("no_minus_one"), softmax.FIRST,
                      "lacks the -1 at the true class"),
    "softmax no shift": ("softmax_cross_entropy", softmax_cross_entropy_with("no_shift"),
                         softmax.LARGE_CASE, "subtract each row's maximum"),
    "softmax in place": ("softmax_cross_entropy", softmax_cross_entropy_with("in_place"), softmax.FIRST,
                         "never write into logits"),
}


@pytest.mark.parametrize("kernel, function, case_name, hint", MISTAKES.values(), ids=MISTAKES.keys())
def test_classic_mistake_fails_at_the_expected_case_with_its_hint(kernel, function, case_name, hint):
    assert_fails_at_case_with_hint(kernel, function, case_name, hint)


def test_report_names_the_first_differing_index_with_expected_and_actual_values():
    report = exercises.check(conv2d_backward_with("transposed_dw"), "conv2d_backward")
    text = str(report)
    assert text.startswith("FAIL conv2d_backward: 0 of 12 cases passed")
    assert "x (1, 1, 4, 4), w (1, 1, 3, 3), stride=1, pad=0, float64" in text
    assert "dw is wrong at index (0, 0, 0, 1): expected" in text


def test_learner_exception_shows_only_the_learners_own_lines():
    def conv2d_forward(x, w, b, stride=1, pad=0):
        xpad = np.pad(x, ((pad, pad), (pad, pad)))  # pads two axes of four: np.pad raises
        return xpad

    report = exercises.check(conv2d_forward)
    message = report.failure.message
    assert report.failure.case_name == conv.FIRST
    assert "xpad = np.pad(x, ((pad, pad), (pad, pad)))" in message
    assert "ValueError" in message
    # The frames shown are this file's alone: none from fcnn or numpy, wherever the checkout lives.
    assert re.findall(r'File "([^"]+)"', message) == [conv2d_forward.__code__.co_filename]
    library_folders = [str(Path(module.__file__).parent) + os.sep for module in (fcnn, np)]
    assert not [folder for folder in library_folders if folder in message]


@pytest.mark.parametrize("kernel, result, complaint", [
    ("conv2d_backward", lambda dout, x, w, stride=1, pad=0: [x, w],
     "expected a tuple (dx, dw, db); got a list of 2 items"),
    ("conv2d_backward", lambda dout, x, w, stride=1, pad=0: (x, w.tolist(), w[:, 0, 0, 0]),
     "dw must be a numpy array; got list"),
    ("relu_forward", lambda x: None, "your function returned None"),
    ("relu_forward", lambda x: (np.maximum(x, 0), x), "expected one array (out); got a tuple of 2 items"),
    ("softmax_cross_entropy", lambda logits, labels: ("0.5", logits), "loss must be a number; got str"),
])
def test_wrong_kind_of_result_is_named(kernel, result, complaint):
    report = exercises.check(result, kernel)
    assert report.failure.case_name == KERNELS[kernel].cases()[0].name
    assert complaint in report.failure.message


@pytest.mark.parametrize("dtype, relative_error, case_name", [(np.float64, 1e-6, conv.FIRST),
                                                              (np.float32, 1e-3, FLOAT32_CASE)])
def test_tolerance_does_not_let_a_small_error_through(dtype, relative_error, case_name):
    """An output off by relative_error, only on cases of `dtype`, fails there; all others pass."""
    reference = KERNELS["conv2d_forward"].reference

    def conv2d_forward(x, w, b, stride=1, pad=0):
        out = reference(x, w, b, stride, pad)
        return out * dtype(1 + relative_error) if x.dtype == dtype else out

    report = exercises.check(conv2d_forward)
    assert report.failure is not None and report.failure.case_name == case_name, str(report)


def test_unknown_kernel_is_a_value_error_naming_the_choices():
    with pytest.raises(ValueError, match="kernel must be one of conv2d_forward"):
        exercises.check(lambda x: x, "conv3d_forward")


# --- stubs -------------------------------------------------------------------------------------

def _load_function(tmp_path, source, kernel):
    path = tmp_path / f"my_{kernel}.py"
    path.write_text(source)
    return path, getattr(load(path), kernel)


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_stub_has_the_reference_contract_and_is_not_implemented_yet(tmp_path, kernel):
    path, function = _load_function(tmp_path, exercises.stub(kernel), kernel)
    reference = KERNELS[kernel].reference
    assert inspect.signature(function) == inspect.signature(reference)
    assert inspect.getdoc(function) == inspect.getdoc(reference)
    [report] = exercises.check_file(path)
    assert not report.passed and report.cases_passed == 0
    assert "not implemented yet" in report.failure.message


def _body_of(function):
    """The source lines of `function`'s body, without its docstring."""
    source = textwrap.dedent(inspect.getsource(function))
    definition = ast.parse(source).body[0]
    lines = source.splitlines()
    return "\n".join(lines[definition.body[1].lineno - 1:]) + "\n"


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_stub_with_the_reference_body_pasted_in_passes(tmp_path, kernel):
    stub = exercises.stub(kernel)
    todo = stub.index("    # TODO")
    helpers = (
        "from fcnn.kernels.loop import (batchnorm_statistics, conv2d_backward_input, conv2d_backward_weights,\n"
        "    dropout_forward_given_draws, output_size, per_channel, prange, zero_pad)\n"
    )
    source = helpers + stub[:todo] + _body_of(KERNELS[kernel].reference)
    path = tmp_path / "my_kernel.py"
    path.write_text(source)
    [report] = exercises.check_file(path)
    assert report.passed, str(report)


def test_imported_reference_is_not_taken_for_the_learners_kernel(tmp_path):
    path = tmp_path / "cheat.py"
    path.write_text("from fcnn.kernels.loop import conv2d_forward\n")
    with pytest.raises(exercises.LearnerFileError, match="defines no exercisable kernel"):
        exercises.check_file(path)


# --- the command line --------------------------------------------------------------------------

def run_cli(capsys, *arguments):
    """main(arguments) in this process -> (exit status, stdout, stderr)."""
    status = main(list(arguments))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_list_names_every_kernel_with_its_goal(capsys):
    status, out, _ = run_cli(capsys, "list")
    assert status == 0
    for name, goal in exercises.list_exercises():
        assert f"  {name} " in out and goal in out


def test_cli_new_prints_the_stub_and_refuses_an_unknown_kernel(capsys):
    assert run_cli(capsys, "new", "relu_backward") == (0, exercises.stub("relu_backward"), "")
    status, _, err = run_cli(capsys, "new", "conv3d")
    assert status == 2 and "unknown kernel 'conv3d'" in err


def test_cli_check_passes_a_right_file_and_prints_what_the_report_says(tmp_path, capsys):
    path = tmp_path / "my_relu.py"
    path.write_text("import numpy as np\n\n\ndef relu_forward(x):\n    return np.maximum(x, 0)\n")
    status, out, err = run_cli(capsys, "check", str(path))
    assert status == 0, out + err
    assert out == str(exercises.check_file(path)[0]) + "\n"
    assert out.startswith("PASS relu_forward: 4 of 4 cases passed")


MINE = """\
import numpy as np


def relu_forward(x):
    return np.maximum(x, 0)


def relu_backward(dout, x):
    return np.where(x >= 0, dout, 0)
"""


def test_cli_check_lists_every_kernel_then_the_failure(tmp_path, monkeypatch, capsys):
    (tmp_path / "mine.py").write_text(MINE)
    monkeypatch.chdir(tmp_path)
    status, out, _ = run_cli(capsys, "check", "mine.py")
    assert status == 1
    lines = out.splitlines()
    assert lines[0].startswith("PASS relu_forward")
    assert lines[1] == "FAIL relu_backward: 2 of 5 cases passed"
    assert "relu_backward, case 3 of 5: exact zeros in x" in out


def test_cli_reports_a_syntax_error_with_file_line_and_text(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken.py").write_text("import numpy as np\n\ndef relu_forward(x)\n    return x\n")
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli(capsys, "check", "broken.py")
    assert status == 1
    assert "broken.py, line 3:" in out
    assert "def relu_forward(x)" in out
    assert "Traceback" not in out + err


def test_cli_reports_an_error_while_loading_in_the_learners_terms(tmp_path, monkeypatch, capsys):
    (tmp_path / "oops.py").write_text("import numpy as np\nscale = 1 / 0\n")
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli(capsys, "check", "oops.py")
    assert status == 1
    assert 'File "oops.py", line 2' in out and "ZeroDivisionError" in out
    assert "Traceback" not in out + err


def test_cli_file_without_kernel_exits_1_and_missing_file_exits_2(tmp_path, monkeypatch, capsys):
    (tmp_path / "empty.py").write_text("x = 1\n")
    monkeypatch.chdir(tmp_path)
    status, out, _ = run_cli(capsys, "check", "empty.py")
    assert status == 1 and "defines no exercisable kernel" in out
    status, _, err = run_cli(capsys, "check", "nowhere.py")
    assert status == 2 and "no such file: nowhere.py" in err


def test_python_m_fcnn_exercises_exits_with_the_status_a_grader_reads(tmp_path, capsys):
    """The one real process: `python -m fcnn.exercises check` exits 1 when a kernel fails, and
    prints what main() prints."""
    (tmp_path / "mine.py").write_text(MINE)
    result = subprocess.run([sys.executable, "-m", "fcnn.exercises", "check", "mine.py"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 1, result.stderr
    expected = "\n".join([report.summary() for report in exercises.check_file(tmp_path / "mine.py")])
    assert result.stdout.startswith(expected + "\n")


# --- an exercise whose kernel draws random numbers ----------------------------------------------

def add_noise(x, rng):
    """out = x + a standard normal draw of x's shape from rng."""
    return x + rng.standard_normal(x.shape).astype(x.dtype)


def _noise_cases():
    return [exercises.exercise.Case("one draw", (np.zeros((2, 3)), np.random.default_rng(7)))]


@pytest.fixture
def noise_exercise(monkeypatch):
    """A toy exercise registered for one test: its reference takes a numpy Generator."""
    from fcnn.exercises import registry
    from fcnn.exercises.exercise import Exercise

    monkeypatch.setitem(registry.KERNELS, "add_noise", Exercise("add_noise", add_noise, ("out",), _noise_cases))
    return "add_noise"


def test_a_kernel_given_a_generator_sees_the_same_draws_as_the_reference(noise_exercise, tmp_path):
    """What the package docstring promises a family that needs randomness: in this process and in a file's."""
    assert exercises.check(add_noise, noise_exercise).passed
    assert not exercises.check(lambda x, rng: x + rng.standard_normal(x.shape) * 2, noise_exercise).passed
    path = tmp_path / "mine.py"
    path.write_text("def add_noise(x, rng):\n    return x + rng.standard_normal(x.shape)\n")
    [report] = exercises.check_file(path)
    assert report.passed, str(report)
