"""fcnn.settings: one table checks a setting typed on the command line and one a checkpoint
brings back, with the same words; settings come from the command line, else the checkpoint, else
the preset; a schedule that decays to 0 and a resume on other data are refused. Also
fcnn.thread_count, which checks NUMBA_NUM_THREADS before numba reads it."""

import math
import re

import pytest

from fcnn import settings
from fcnn.settings import SETTINGS, UsageError, check_learning_rates, check_same_data, from_text, problem, resolve
from fcnn.thread_count import check_thread_count
from fcnn.training import ARCH_DEFAULTS

NUMBERS = [key for key, setting in SETTINGS.items() if setting.kind in (int, float)]


@pytest.mark.parametrize("key, good, bad", [
    ("lr", "0.5", ["0", "-1", "inf", "nan", "1e400", "x"]),
    ("momentum", "0.9", ["1", "-0.1", "nan"]),
    ("lr_decay", "1", ["0", "1.5", "inf"]),
    ("batch_size", "32", ["0", "2.5", "x"]),
    ("seed", "0", ["-1"]),
    ("epochs", "3", ["0"]),
    ("train_limit", "10", ["0", "-3"]),
    ("weight_decay", "0", ["-1e-4", "inf", "nan"]),
    ("shift", "2", ["-1", "28", "1.5"]),
])
def test_the_command_line_and_a_checkpoint_are_held_to_the_same_rule_in_the_same_words(key, good, bad):
    kind = SETTINGS[key].kind
    assert from_text(key, good) == kind(good)
    assert problem(key, kind(good)) is None
    for text in bad:
        with pytest.raises(ValueError, match=re.escape(f"must be {SETTINGS[key].wanted}")) as caught:
            from_text(key, text)
        assert repr(text) in str(caught.value)
        try:
            value = kind(text)
        except ValueError:
            continue
        assert f"{key!r} must be {SETTINGS[key].wanted}" in problem(key, value)


@pytest.mark.parametrize("key, value", [
    ("lr", "0.1"), ("batch_size", True), ("batch_size", 32.0), ("lr", 10**400), ("seed", None), ("data", ["a"]),
    ("data", ""), ("backend", "gpu"), ("backend", 42),
])
def test_a_checkpoint_value_of_the_wrong_json_type_is_a_problem(key, value):
    assert problem(key, value)


def test_null_is_fine_only_for_the_optional_settings():
    assert [key for key in SETTINGS if problem(key, None) is None] == ["data", "train_limit", "test_limit"]


def test_every_number_the_script_takes_is_in_the_table():
    assert set(NUMBERS) == {"epochs", "batch_size", "lr", "momentum", "weight_decay", "lr_decay", "shift", "seed",
                            "train_limit", "test_limit"}


def test_a_checkpoint_from_before_shift_was_a_setting_resumes_without_shifts():
    assert resolve({"backend": "numpy"}, checkpoint_of({"lr": 0.1}, arch="bn"))["shift"] == 0


def checkpoint_of(config, epoch=1, arch="seed"):
    import fcnn

    return {"path": "run.npz", "arch": fcnn.resolve_arch(arch), "config": config, "epoch": epoch}


def test_settings_come_from_the_command_line_else_the_checkpoint_else_the_preset():
    run = resolve({"lr": 0.5, "backend": "numpy"}, checkpoint_of({"lr": 0.1, "batch_size": 8, "backend": "loop"}))
    assert run["lr"] == 0.5 and run["batch_size"] == 8 and run["backend"] == "numpy"
    assert run["momentum"] == ARCH_DEFAULTS["seed"]["momentum"] and run["epochs"] == ARCH_DEFAULTS["seed"]["epochs"]
    assert resolve({"arch": "lenet5", "backend": "numpy"})["lr"] == ARCH_DEFAULTS["lenet5"]["lr"]
    with pytest.raises(UsageError, match="does not match the checkpoint"):
        resolve({"arch": "lenet5"}, checkpoint_of({}))
    with pytest.raises(UsageError, match=re.escape("checkpoint run.npz: its config 'lr' must be a finite number > 0")):
        resolve({}, checkpoint_of({"lr": -1}))


def test_data_is_recorded_by_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve({"data": "mnist.npz", "backend": "numpy"})["data"] == str(tmp_path / "mnist.npz")


@pytest.mark.parametrize("lr, decay, epochs, first, zero", [
    (1e-300, 1e-30, 3, 0, 2), (5e-324, 0.5, 2, 0, 2), (1e-320, 1e-10, 5, 1, 2),
])
def test_a_schedule_that_underflows_to_zero_is_refused_naming_the_first_dead_epoch(lr, decay, epochs, first, zero):
    assert lr * decay ** (zero - 1) == 0 and (zero - 1 == 0 or lr * decay ** (zero - 2) > 0)
    with pytest.raises(UsageError, match=f"gives epoch {zero} a learning rate of exactly 0"):
        check_learning_rates({"lr": lr, "lr_decay": decay, "epochs": epochs}, first)


def test_a_schedule_that_stays_above_zero_is_fine():
    check_learning_rates({"lr": 1e-300, "lr_decay": 1e-30, "epochs": 1}, 0)
    check_learning_rates({"lr": 0.2, "lr_decay": 0.6, "epochs": 1000}, 0)
    assert 0.2 * 0.6**999 > 0 and math.isfinite(0.2 * 0.6**999)


def test_resume_on_other_data_is_refused_unless_asked_and_then_said():
    checkpoint = checkpoint_of({"data": "/a/mnist.npz", "data_sha256": "a" * 64})
    run = {"data": "/b/mnist.npz"}
    assert check_same_data(run, checkpoint, "a" * 64, allow_other_data=False) == ""
    with pytest.raises(UsageError, match="trained on /a/mnist.npz .* but /b/mnist.npz holds other data"):
        check_same_data(run, checkpoint, "b" * 64, allow_other_data=False)
    assert "as --allow-other-data asks" in check_same_data(run, checkpoint, "b" * 64, allow_other_data=True)
    assert "records no checksum" in check_same_data(run, checkpoint_of({}), "b" * 64, allow_other_data=False)
    assert check_same_data(run, None, "b" * 64, allow_other_data=False) == ""


def test_the_checkpoint_config_holds_every_remembered_setting_and_the_checksum():
    run = resolve({"backend": "numpy"})
    config = settings.config(run, "c" * 64)
    assert set(config) == set(settings.REMEMBERED) | {"data_sha256"} and "epochs" not in config


@pytest.mark.parametrize("value", ["0", "-1", "abc", "", "1.5"])
def test_a_thread_count_that_is_not_a_whole_number_above_zero_is_refused_by_name(value):
    with pytest.raises(UsageError, match=re.escape(f"NUMBA_NUM_THREADS={value!r}: must be a whole number >= 1")):
        check_thread_count({"NUMBA_NUM_THREADS": value}, cores=2)


def test_a_thread_count_above_the_cores_warns_and_one_within_them_does_not():
    assert "more threads than the 2 cores" in check_thread_count({"NUMBA_NUM_THREADS": "3"}, cores=2)
    assert check_thread_count({"NUMBA_NUM_THREADS": "2"}, cores=2) is None
    assert check_thread_count({}, cores=2) is None


def test_adaptive_optimisers_take_pytorchs_defaults_and_refuse_sgds_momentum():
    assert resolve({"optimizer": "adam", "backend": "numpy"})["lr"] == 1e-3
    assert resolve({"optimizer": "adamw", "backend": "numpy"})["weight_decay"] == 0.01
    assert resolve({"optimizer": "rmsprop", "backend": "numpy", "lr": 0.5})["lr"] == 0.5
    assert resolve({"backend": "numpy"})["weight_decay"] == 0.0
    with pytest.raises(UsageError, match="--momentum is an option of sgd"):
        resolve({"optimizer": "adam", "momentum": 0.9, "backend": "numpy"})


def test_the_optimiser_comes_from_the_checkpoints_arrays():
    checkpoint = {**checkpoint_of({"lr": 0.002}), "optimizer": "adam"}
    assert resolve({"backend": "numpy"}, checkpoint)["optimizer"] == "adam"
    with pytest.raises(UsageError, match="--optimizer sgd does not match the checkpoint, which holds 'adam'"):
        resolve({"optimizer": "sgd", "backend": "numpy"}, checkpoint)
