"""Tests of fcnn.checkpoint: round trip, atomic writes that survive a crash, and refusal of
files that are truncated, corrupt or do not fit their architecture."""

import json
import os

import numpy as np
import pytest

import fcnn
from fcnn import checkpoint
from fcnn.checkpoint import CheckpointError, generator_from_state, load_checkpoint, metrics_path, save_checkpoint, write_metrics


def random_tree(arch, seed, dtype="float32"):
    """Parameters shaped for arch, with values unlike init's, so a mix-up cannot go unnoticed."""
    rng = np.random.default_rng(seed)
    return {layer: {k: rng.standard_normal(a.shape).astype(dtype) for k, a in arrays.items()}
            for layer, arrays in fcnn.init(arch, dtype=dtype).items()}


def write(path, arch="seed", epoch=2, dtype="float32"):
    """Save a checkpoint with known contents; return what was saved."""
    rng = np.random.default_rng(123)
    rng.permutation(10)
    saved = {
        "arch": arch, "params": random_tree(arch, 1, dtype), "velocity": random_tree(arch, 2, dtype),
        "epoch": epoch, "rng_state": rng.bit_generator.state,
        "metrics": [{"epoch": 1, "train_loss": 0.5, "step_losses": [2.3, 0.5]}],
        "config": {"arch": arch, "lr": 0.1, "batch_size": 32},
    }
    save_checkpoint(path, **saved)
    return saved, rng


def rewrite(path, change):
    """Load the raw entries of an .npz, let change(entries) edit the dict, write it back."""
    with np.load(path) as archive:
        entries = {key: archive[key] for key in archive.files}
    change(entries)
    np.savez(path, **entries)


@pytest.mark.parametrize("arch, dtype", [("seed", "float32"), ("lenet5", "float32"), ("seed", "float64")])
def test_round_trip_gives_back_every_array_and_setting(tmp_path, arch, dtype):
    path = tmp_path / "run.npz"
    saved, rng = write(path, arch, dtype=dtype)
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 2
    assert loaded["arch"] == fcnn.resolve_arch(arch)
    assert loaded["metrics"] == saved["metrics"]
    assert loaded["config"] == saved["config"]
    for group in ("params", "velocity"):
        assert loaded[group].keys() == saved[group].keys()
        for layer in saved[group]:
            for k, array in saved[group][layer].items():
                assert loaded[group][layer][k].dtype == np.dtype(dtype)
                assert np.array_equal(loaded[group][layer][k], array)
    # The restored generator continues the stream where the saved one stood.
    assert np.array_equal(generator_from_state(loaded["rng_state"]).permutation(20), rng.permutation(20))


def test_saved_file_holds_no_pickled_objects(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    with np.load(path, allow_pickle=False) as archive:
        assert all(archive[key].dtype != object for key in archive.files)
        assert "params/conv1/w" in archive.files and "velocity/dense1/b" in archive.files


def test_a_crash_before_the_rename_keeps_the_old_checkpoint_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "run.npz"
    write(path, epoch=1)
    before = path.read_bytes()

    def crash(source, destination):
        raise OSError("disk vanished")

    monkeypatch.setattr(checkpoint.os, "replace", crash)
    with pytest.raises(OSError, match="disk vanished"):
        write(path, epoch=2)
    assert path.read_bytes() == before
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(os.listdir(tmp_path)) == ["run.npz"]


def test_a_crash_halfway_through_writing_keeps_the_old_checkpoint(tmp_path):
    path = tmp_path / "run.npz"
    write(path, epoch=1)
    before = path.read_bytes()

    def half_then_interrupt(file):
        file.write(before[: len(before) // 2])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        checkpoint.atomic_write(path, half_then_interrupt)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["run.npz"]


def test_a_ctrl_c_just_after_the_temporary_file_is_created_leaves_no_temp_file(tmp_path, monkeypatch):
    # The file exists, but the call that created it has not returned yet.
    path = tmp_path / "run.npz"
    create = os.open

    def create_then_interrupt(*args, **kwargs):
        os.close(create(*args, **kwargs))
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "open", create_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        write(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_written_files_get_the_usual_permissions(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert os.stat(path).st_mode == os.stat(plain).st_mode


def expect_refusal(path, *fragments):
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_refuses_a_missing_file(tmp_path):
    expect_refusal(tmp_path / "nothing.npz", "no such file")


def test_refuses_a_truncated_file(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    path.write_bytes(path.read_bytes()[:-200])
    expect_refusal(path, "truncated")


def test_refuses_a_file_with_a_corrupt_entry_and_names_it(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    data = bytearray(path.read_bytes())
    # Flip bytes inside the stored weights of dense1 (the largest array): the zip CRC catches it.
    with np.load(path) as archive:
        weights = archive["params/dense1/w"].tobytes()
    offset = bytes(data).index(weights[:64]) + 1000
    data[offset:offset + 8] = bytes(255 - b for b in data[offset:offset + 8])
    path.write_bytes(bytes(data))
    expect_refusal(path, "'params/dense1/w'", "corrupt")


def test_refuses_a_file_that_is_not_an_npz(tmp_path):
    path = tmp_path / "run.npz"
    path.write_text("not a checkpoint")
    expect_refusal(path, "not an .npz")


@pytest.mark.parametrize("key", ["params/dense1/b", "velocity/conv1/w", "rng_state", "format_version"])
def test_refuses_a_missing_entry_and_names_it(tmp_path, key):
    path = tmp_path / "run.npz"
    write(path)
    rewrite(path, lambda entries: entries.pop(key))
    expect_refusal(path, "missing entry", repr(key))


def test_refuses_an_extra_entry_and_names_it(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    rewrite(path, lambda entries: entries.update({"params/conv2/w": np.zeros((4, 8, 3, 3), np.float32)}))
    expect_refusal(path, "unexpected entry", "'params/conv2/w'")


def test_refuses_an_array_whose_shape_does_not_fit_the_architecture(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    rewrite(path, lambda entries: entries.update({"params/conv1/w": np.zeros((8, 1, 5, 5), np.float32)}))
    expect_refusal(path, "'params/conv1/w'", "(8, 1, 5, 5)", "(8, 1, 3, 3)")


def test_refuses_params_of_another_architecture(tmp_path):
    path = tmp_path / "run.npz"
    write(path, arch="lenet5")
    rewrite(path, lambda entries: entries.update({"arch": np.array(json.dumps(fcnn.resolve_arch("seed")))}))
    expect_refusal(path, "unexpected entry", "'params/conv2/b'")


@pytest.mark.parametrize("dtype", [np.int32, np.float16])
def test_refuses_an_array_of_the_wrong_dtype(tmp_path, dtype):
    path = tmp_path / "run.npz"
    write(path)
    rewrite(path, lambda entries: entries.update({"velocity/dense1/b": entries["velocity/dense1/b"].astype(dtype)}))
    expect_refusal(path, "'velocity/dense1/b'", "dtype")


def test_refuses_another_format_version(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    rewrite(path, lambda entries: entries.update({"format_version": np.array(99)}))
    expect_refusal(path, "'format_version'", "99")


def test_refuses_an_architecture_that_is_not_valid(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    rewrite(path, lambda entries: entries.update({"arch": np.array('[{"type": "softmax"}]')}))
    expect_refusal(path, "'arch'", "softmax")


def test_refuses_text_that_is_not_json(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    rewrite(path, lambda entries: entries.update({"metrics": np.array("[{oops")}))
    expect_refusal(path, "'metrics'", "JSON")


def test_refuses_an_unusable_rng_state(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    rewrite(path, lambda entries: entries.update({"rng_state": np.array('{"bit_generator": "NoSuchRNG"}')}))
    expect_refusal(path, "'rng_state'")


@pytest.mark.parametrize("checkpoint_path, expected", [
    ("runs/seed.npz", "runs/seed.metrics.jsonl"),
    ("runs/seed", "runs/seed.metrics.jsonl"),
    ("runs/seed.v2.npz", "runs/seed.v2.metrics.jsonl"),
])
def test_metrics_file_sits_beside_the_checkpoint(checkpoint_path, expected):
    assert metrics_path(checkpoint_path) == expected


def test_write_metrics_writes_one_json_object_per_line(tmp_path):
    records = [{"epoch": 1, "train_loss": 0.4, "step_losses": [1.0, 0.5]}, {"epoch": 2, "train_loss": 0.3, "step_losses": []}]
    path = tmp_path / "run.metrics.jsonl"
    write_metrics(path, records)
    assert [json.loads(line) for line in path.read_text().splitlines()] == records
