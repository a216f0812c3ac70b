"""fcnn.outputs and fcnn.file_kinds: output paths refused by name before training, a failed stdout
named as the output stream, and every path called what it is. The script-level cases (exit
statuses, files kept) are in tests/test_train_script.py."""

import os
import sys

import pytest

from fcnn.file_kinds import kind_of, not_a_file
from fcnn.outputs import OutputStreamFailed, check_outputs, metrics_owner, say, tell
from fcnn.settings import UsageError


def test_paths_are_called_what_they_are(tmp_path):
    (tmp_path / "file").write_text("x")
    os.mkfifo(tmp_path / "fifo")
    os.symlink(tmp_path / "gone", tmp_path / "link")
    assert kind_of(tmp_path / "file") is None
    assert kind_of(tmp_path / "missing") == "no such file"
    assert kind_of(tmp_path / "link") == "a broken symbolic link"
    assert kind_of(tmp_path) == "a directory"
    assert kind_of(tmp_path / "fifo") == "a FIFO (named pipe)"
    assert kind_of("/dev/null") == "a character device"
    assert not_a_file(tmp_path / "fifo") == "is a FIFO (named pipe), not a regular file"


@pytest.mark.parametrize("save, owner", [("run", "run.npz"), ("run.npz", "run"), ("a/b.c", "a/b.c.npz")])
def test_the_checkpoint_that_shares_a_metrics_file_is_found(save, owner):
    assert metrics_owner(save) == owner


def test_a_save_path_whose_metrics_file_is_another_runs_is_refused(tmp_path):
    (tmp_path / "run.npz").write_bytes(b"another run")
    (tmp_path / "run.metrics.jsonl").write_text("{}\n")
    with pytest.raises(UsageError, match="belongs to the checkpoint"):
        check_outputs(str(tmp_path / "run"), None, None, into_resumed=False)


class Closed:
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        pass


def test_a_failed_stdout_is_named_as_the_output_stream(monkeypatch):
    monkeypatch.setattr(sys, "stdout", Closed())
    with pytest.raises(OutputStreamFailed, match=r"could not write to the output stream \(stdout\): Broken pipe"):
        say("epoch 1/1")


def test_a_failed_stderr_does_not_hide_the_exit_status(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Closed())
    assert tell("error: something", 2) == 2
