"""Tests of the checker against hostile learner files: whatever a file does, it gets a verdict naming it.

Each case is a file a learner could hand in; the checker runs it in a process of its own and
must answer in time, never with a PASS it did not earn, never with a traceback of fcnn's own.
`pytest --durations=0` lists the time each one takes.
"""

import os
import signal
import time
from pathlib import Path

import pytest

import fcnn
from fcnn.exercises.__main__ import main

RIGHT_RELU = "import numpy as np\n\ndef relu_forward(x):\n    return np.maximum(x, 0)\n"
RIGHT_RELU_BACKWARD = "\ndef relu_backward(dout, x):\n    return dout * (x > 0)\n"
WRONG_RELU = "import numpy as np\n\ndef relu_forward(x):\n    return x.copy()\n"
FCNN_FOLDER = str(Path(fcnn.__file__).parent) + os.sep


def run(tmp_path, capsys, source, *options, name="mine.py"):
    """`check` on a file holding `source` (str or bytes) -> (exit status, what it printed, seconds)."""
    path = tmp_path / name
    path.write_bytes(source if isinstance(source, bytes) else source.encode("utf-8"))
    start = time.monotonic()
    status = main(["check", str(path), *options])
    seconds = time.monotonic() - start
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback (most recent call last)" not in text, text
    assert FCNN_FOLDER not in text, text  # no frame, no path of fcnn's own
    return status, text, seconds


def assert_fails_with(result, *fragments):
    status, text, _ = result
    assert status == 1, text
    assert not text.startswith("PASS"), text
    for fragment in fragments:
        assert fragment in text, text


# --- the hostile files of issue 20 -------------------------------------------------------------

def test_kernel_that_loops_forever_times_out_and_the_next_kernel_is_still_checked(tmp_path, capsys):
    source = "def relu_forward(x):\n    while True:\n        pass\n" + RIGHT_RELU_BACKWARD
    status, text, seconds = run(tmp_path, capsys, source, "--time-limit", "1")
    assert_fails_with((status, text, seconds), "FAIL relu_forward: 0 of 4 cases passed",
                      "case 1 (a row of six values, shape (1, 6)) did not finish within 1 s.")
    assert "PASS relu_backward: 5 of 5 cases passed" in text
    assert seconds < 8


def test_kernel_that_sleeps_a_minute_costs_one_time_limit_not_a_minute_per_case(tmp_path, capsys):
    source = "import time\n\ndef relu_forward(x):\n    time.sleep(60)\n    return x\n"
    result = run(tmp_path, capsys, source, "--time-limit", "1")
    assert_fails_with(result, "did not finish within 1 s")
    assert result[2] < 8


def test_wrong_kernel_with_a_leftover_exit_at_the_end_is_not_exit_0(tmp_path, capsys):
    assert_fails_with(run(tmp_path, capsys, WRONG_RELU + "exit()\n"),
                      "called exit() or sys.exit() while it was loaded", "line 5")


def test_kernel_calling_sys_exit_is_told_so(tmp_path, capsys):
    source = "import sys\n\ndef relu_forward(x):\n    sys.exit(0)\n"
    assert_fails_with(run(tmp_path, capsys, source), "your function called exit() or sys.exit() (SystemExit: 0)",
                      "sys.exit(0)")


def test_kernel_calling_os_exit_is_told_so(tmp_path, capsys):
    source = "import os\n\ndef relu_forward(x):\n    os._exit(0)\n"
    assert_fails_with(run(tmp_path, capsys, source), "your code ended the process while it ran (exit status 0)")


def test_atexit_handler_calling_os_exit_does_not_turn_a_fail_into_exit_0(tmp_path, capsys):
    source = "import atexit, os\natexit.register(lambda: os._exit(0))\n" + WRONG_RELU
    assert_fails_with(run(tmp_path, capsys, source), "FAIL relu_forward", "out is x unchanged")


def test_replacing_the_references_code_does_not_make_a_wrong_kernel_pass(tmp_path, capsys):
    source = ("import fcnn.layers\n"
              "fcnn.layers.relu_forward.__code__ = (lambda x: x.copy()).__code__\n" + WRONG_RELU)
    assert_fails_with(run(tmp_path, capsys, source), "FAIL relu_forward", "expected 0, got")


def test_patching_the_checkers_comparison_does_not_make_a_wrong_kernel_pass(tmp_path, capsys):
    source = ("import fcnn.exercises.checking as checking\n"
              "checking._compare = lambda *args: None\n"
              "checking.judge = lambda *args: None\n" + WRONG_RELU)
    assert_fails_with(run(tmp_path, capsys, source), "FAIL relu_forward", "expected 0, got")


def test_a_crash_of_the_interpreter_is_a_verdict_not_a_dead_checker(tmp_path, capsys):
    source = "import ctypes\n\ndef relu_forward(x):\n    return ctypes.string_at(0)\n" + RIGHT_RELU_BACKWARD
    status, text, seconds = run(tmp_path, capsys, source)
    assert_fails_with((status, text, seconds), "crashed (segmentation fault, SIGSEGV) while it ran",
                      "boundscheck=True")
    assert "PASS relu_backward" in text


def test_numba_kernel_writing_far_out_of_bounds_is_a_crash_verdict(tmp_path, capsys):
    pytest.importorskip("numba")
    source = ("import numba\nimport numpy as np\n\n@numba.njit\n"
              "def relu_forward(x):\n    out = np.zeros_like(x)\n"
              "    out.ravel()[1 << 40] = 1.0\n    return out\n")
    assert_fails_with(run(tmp_path, capsys, source, "--time-limit", "30"), "SIGSEGV", "boundscheck=True")


def test_base_exception_subclass_is_named_without_fcnns_traceback(tmp_path, capsys):
    source = "class Gotcha(BaseException):\n    pass\n\ndef relu_forward(x):\n    raise Gotcha('boom')\n"
    assert_fails_with(run(tmp_path, capsys, source), "your function raised Gotcha, which is not an Exception",
                      "Gotcha: boom", 'line 5, in relu_forward')


def test_latin1_file_with_a_coding_line_is_read_as_python_reads_it(tmp_path, capsys):
    source = b"# -*- coding: latin-1 -*-\n# r\xe9sum\xe9 of my relu\n" + RIGHT_RELU.encode()
    status, text, _ = run(tmp_path, capsys, source)
    assert status == 0 and text.startswith("PASS relu_forward"), text


def test_binary_file_is_called_not_python_text(tmp_path, capsys):
    assert_fails_with(run(tmp_path, capsys, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), "is not a Python text file")


def test_file_not_in_utf8_without_a_coding_line_names_the_line_and_byte(tmp_path, capsys):
    source = b"import numpy as np\n# r\xe9sum\xe9\n" + RIGHT_RELU.encode()
    assert_fails_with(run(tmp_path, capsys, source), "line 2: byte 0xe9 is not valid utf-8", "coding")


def test_utf8_file_with_a_byte_order_mark_runs_as_python_runs_it(tmp_path, capsys):
    status, text, _ = run(tmp_path, capsys, b"\xef\xbb\xbf" + RIGHT_RELU.encode())
    assert status == 0 and text.startswith("PASS relu_forward"), text


def test_nul_bytes_are_reported_with_their_line(tmp_path, capsys):
    assert_fails_with(run(tmp_path, capsys, RIGHT_RELU.encode() + b"\x00\n"), "contains NUL bytes (the first on line 5)")


def test_np_matrix_result_is_refused(tmp_path, capsys):
    source = "import numpy as np\n\ndef dense_forward(x, w, b):\n    return np.matrix(x) @ np.matrix(w) + b\n"
    assert_fails_with(run(tmp_path, capsys, source), "out is a numpy.matrix, not a plain numpy array",
                      "np.asarray(out)")


SOFTMAX = """\
import numpy as np

def softmax_cross_entropy(logits, labels):
    N = len(labels)
    shifted = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    d = p.copy()
    d[np.arange(N), labels] -= 1
    return -np.log(p[np.arange(N), labels]).mean(){loss_suffix}, d / N
"""


def test_complex_loss_is_refused_and_the_honest_one_passes(tmp_path, capsys):
    assert_fails_with(run(tmp_path, capsys, SOFTMAX.format(loss_suffix=" + 0j")),
                      "loss is complex (complex128); expected real numbers.")
    status, text, _ = run(tmp_path, capsys, SOFTMAX.format(loss_suffix=""))
    assert status == 0, text


# --- more hostile files ------------------------------------------------------------------------

def test_printing_megabytes_hits_the_output_limit(tmp_path, capsys):
    source = "def relu_forward(x):\n    while True:\n        print('x' * 10000)\n"
    assert_fails_with(run(tmp_path, capsys, source, "--output-limit", "64"),
                      "wrote more than the 64 KB allowed while it ran")


def test_allocating_too_much_memory_is_a_memory_error_verdict(tmp_path, capsys):
    source = "import numpy as np\n\ndef relu_forward(x):\n    return np.ones((1 << 34,)) * 0\n"
    assert_fails_with(run(tmp_path, capsys, source, "--memory-limit", "1024"), "MemoryError")


@pytest.mark.parametrize("signal_name, verdict", [("SIGKILL", "was killed (SIGKILL)"),
                                                  ("SIGTERM", "was ended by signal SIGTERM")])
def test_a_kernel_that_signals_itself_is_told_which_signal(tmp_path, capsys, signal_name, verdict):
    source = f"import os, signal\n\ndef relu_forward(x):\n    os.kill(os.getpid(), signal.{signal_name})\n"
    assert_fails_with(run(tmp_path, capsys, source), verdict)


def test_kernel_writing_into_its_input_is_told_so_across_the_process_boundary(tmp_path, capsys):
    source = "def relu_forward(x):\n    x[x < 0] = 0\n    return x\n"
    assert_fails_with(run(tmp_path, capsys, source), "your function changed its input x", "never write into x")


def test_file_that_only_imports_fcnns_kernel_is_reported_as_such(tmp_path, capsys):
    assert_fails_with(run(tmp_path, capsys, "from fcnn.kernels.loop import conv2d_forward\n"),
                      "defines no exercisable kernel of its own",
                      "conv2d_forward is fcnn's own fcnn.kernels.loop.conv2d_forward")


CALLS_THE_REFERENCE = """\
from fcnn.kernels import loop

def conv2d_forward(x, w, b, stride=1, pad=0):
    return loop.conv2d_forward(x, w, b, stride, pad)
"""


def test_kernel_that_calls_fcnns_own_does_not_score_unless_the_course_lets_it(tmp_path, capsys):
    assert_fails_with(run(tmp_path, capsys, CALLS_THE_REFERENCE),
                      "uses fcnn's own implementation (fcnn.kernels.loop.conv2d_forward)", "does not score")
    status, text, _ = run(tmp_path, capsys, CALLS_THE_REFERENCE, "--fcnn-kernels-score")
    assert status == 0 and text.startswith("PASS conv2d_forward"), text


def test_file_that_loops_forever_while_loading_times_out(tmp_path, capsys):
    result = run(tmp_path, capsys, "while True:\n    pass\n" + RIGHT_RELU, "--time-limit", "1")
    assert_fails_with(result, "did not finish loading within 1 s")
    assert result[2] < 8


def test_keyboard_interrupt_raised_by_a_kernel_is_a_verdict(tmp_path, capsys):
    source = "def relu_forward(x):\n    raise KeyboardInterrupt\n"
    assert_fails_with(run(tmp_path, capsys, source), "raised KeyboardInterrupt, which is not an Exception")


def test_kernel_reading_input_gets_end_of_file_not_a_hang(tmp_path, capsys):
    source = "def relu_forward(x):\n    input('press enter')\n    return x\n"
    assert_fails_with(run(tmp_path, capsys, source, "--time-limit", "5"), "EOFError")


def test_kernel_writing_into_the_checkers_channel_is_caught(tmp_path, capsys):
    source = ("import os, sys\n\ndef relu_forward(x):\n"
              "    os.write(int(sys.argv[2]), b'\\xff' * 8 + b'PASS')\n    return x\n")
    assert_fails_with(run(tmp_path, capsys, source), "wrote into the checker's channel")


def test_kernel_that_forks_a_sleeper_and_hangs_still_gets_its_verdict_in_time(tmp_path, capsys):
    source = ("import os, time\n\ndef relu_forward(x):\n    if os.fork() == 0:\n        time.sleep(600)\n"
              "    time.sleep(600)\n")
    result = run(tmp_path, capsys, source, "--time-limit", "1")
    assert_fails_with(result, "did not finish within 1 s")
    assert result[2] < 8


def test_endless_recursion_is_an_exception_verdict(tmp_path, capsys):
    source = "def relu_forward(x):\n    return relu_forward(x)\n"
    assert_fails_with(run(tmp_path, capsys, source), "RecursionError")


def test_result_of_a_class_of_its_own_is_named(tmp_path, capsys):
    source = "class Sneaky:\n    def __eq__(self, other):\n        return True\n\ndef relu_forward(x):\n    return Sneaky()\n"
    assert_fails_with(run(tmp_path, capsys, source), "out must be a numpy array; got Sneaky")


def test_array_subclass_that_claims_equality_is_refused(tmp_path, capsys):
    source = ("import numpy as np\n\nclass Agreeable(np.ndarray):\n    def __eq__(self, other):\n"
              "        return True\n\ndef relu_forward(x):\n    return x.view(Agreeable)\n")
    assert_fails_with(run(tmp_path, capsys, source), "_mine.Agreeable, not a plain numpy array")


def test_unknown_encoding_in_the_coding_line_is_named(tmp_path, capsys):
    assert_fails_with(run(tmp_path, capsys, "# -*- coding: klingon -*-\n" + RIGHT_RELU), "klingon")


def test_a_thread_left_running_does_not_hold_up_a_right_kernel(tmp_path, capsys):
    source = ("import threading, time\n"
              "threading.Thread(target=lambda: time.sleep(600)).start()\n" + RIGHT_RELU)
    status, text, seconds = run(tmp_path, capsys, source)
    assert status == 0 and text.startswith("PASS relu_forward"), text
    assert seconds < 8


def test_syntax_error_and_error_at_import_still_read_as_before(tmp_path, capsys):
    assert_fails_with(run(tmp_path, capsys, "def relu_forward(x)\n    return x\n"), "line 1:", "def relu_forward(x)")
    assert_fails_with(run(tmp_path, capsys, "import numpy as np\nscale = 1 / 0\n"), "line 2", "ZeroDivisionError")


def test_no_learner_process_outlives_the_check(tmp_path, capsys):
    """The sleeper a kernel forks is stopped with its process group."""
    marker = tmp_path / "sleeper.pid"
    source = (f"import os, time\n\ndef relu_forward(x):\n    pid = os.fork()\n    if pid == 0:\n"
              f"        time.sleep(600)\n    open({str(marker)!r}, 'w').write(str(pid))\n    time.sleep(600)\n")
    run(tmp_path, capsys, source, "--time-limit", "1")
    pid = int(marker.read_text())
    for _ in range(50):
        if not _running(pid):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    pytest.fail(f"process {pid} forked by the learner's kernel was still running")


def _running(pid):
    """True while process `pid` exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def test_forged_replies_from_the_learners_process_are_refused_not_trusted(tmp_path, capsys):
    """The learner's code owns its process and may rewrite what it sends: the checker reads it as data."""
    source = ("import __main__\nimport numpy as np\n_send = __main__.send\n\n"
              "def send(fd, message):\n    if 'returned' in message:\n"
              "        message = {'returned': {'kind': 'number', 'class': 'builtins.float',\n"
              "                                'npy': __main__._npy(np.zeros(3))}, 'args_after': []}\n"
              "    _send(fd, message)\n\n__main__.send = send\n" + WRONG_RELU)
    assert_fails_with(run(tmp_path, capsys, source), "changed what it sends")


def test_a_process_that_stops_listening_to_the_checker_times_out(tmp_path, capsys):
    source = "import os, time\nos.read = lambda *args: time.sleep(600)\n" + RIGHT_RELU
    result = run(tmp_path, capsys, source, "--time-limit", "1")
    assert_fails_with(result, "did not finish within 1 s")
    assert result[2] < 8


@pytest.mark.parametrize("change", ["x.dtype = np.int64", "x.dtype = [('a', 'f8')]", "x.dtype = 'S8'",
                                    "x.resize(x.size, refcheck=False)"])
def test_changing_an_inputs_dtype_or_shape_in_place_is_a_changed_input(tmp_path, capsys, change):
    source = f"import numpy as np\n\ndef relu_forward(x):\n    out = np.maximum(x, 0)\n    {change}\n    return out\n"
    assert_fails_with(run(tmp_path, capsys, source), "your function changed its input x")
