"""End-to-end tests of scripts/train_mnist.py, run as a user runs it (a subprocess), on small
subsets of the bundled MNIST: every backend, exit codes 0/1/2/130, resume, metrics, plots."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fcnn
from fcnn.checkpoint import load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "train_mnist.py"
SMALL = ["--train-limit", "500", "--test-limit", "200", "--epochs", "1", "--quiet"]


def script_env(extra_path=()):
    # The repo first on the path, so the script runs against this checkout even if not installed.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, extra_path), str(REPO), env.get("PYTHONPATH", "")])
    return env


def run_script(*args, extra_path=()):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
        cwd=REPO, env=script_env(extra_path), timeout=300,
    )


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    """A checkpoint after 1 of 1 epochs (numpy backend, small subset), written once per module."""
    save = tmp_path_factory.mktemp("one_epoch") / "run.npz"
    result = run_script("--backend", "numpy", *SMALL, "--save", save)
    assert result.returncode == 0, result.stderr
    return save


@pytest.fixture
def finished_run(one_epoch_run, tmp_path):
    """A private copy of one_epoch_run that a test may overwrite."""
    return Path(shutil.copy(one_epoch_run, tmp_path / "run.npz"))


def assert_clean_failure(result, code, *fragments):
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


@pytest.mark.parametrize("arch, backend, limits", [
    ("seed", "numpy", SMALL),
    ("seed", "numba", SMALL),
    ("lenet5", "numpy", SMALL),
    ("lenet5", "numba", SMALL),
    # The loop backend is the readable reference, not a fast one: a tiny subset only.
    ("seed", "loop", ["--train-limit", "40", "--test-limit", "20", "--epochs", "1", "--quiet"]),
])
def test_one_epoch_on_a_subset_runs_and_writes_checkpoint_and_metrics(tmp_path, arch, backend, limits):
    save = tmp_path / "run.npz"
    result = run_script("--arch", arch, "--backend", backend, *limits, "--save", save)
    assert result.returncode == 0, result.stderr
    assert f"{arch} net" in result.stdout and f"{backend} backend" in result.stdout
    assert "epoch 1/1" in result.stdout and "test acc" in result.stdout
    assert load_checkpoint(save)["epoch"] == 1
    records = [json.loads(line) for line in (tmp_path / "run.metrics.jsonl").read_text().splitlines()]
    assert len(records) == 1
    assert set(records[0]) == {"epoch", "lr", "train_loss", "train_accuracy", "test_accuracy", "seconds",
                               "images_per_second", "step_losses"}
    assert 0 <= records[0]["test_accuracy"] <= 1
    batch = 32 if arch == "seed" else 64
    train_images = int(limits[limits.index("--train-limit") + 1])
    assert len(records[0]["step_losses"]) == -(-train_images // batch)


def test_two_epochs_straight_equal_one_epoch_then_resume(tmp_path):
    straight, resumed = tmp_path / "straight.npz", tmp_path / "resumed.npz"
    settings = ["--backend", "numpy", "--train-limit", "300", "--test-limit", "100", "--quiet",
                "--lr", "0.05", "--momentum", "0.9", "--lr-decay", "0.5", "--batch-size", "16", "--seed", "4"]
    assert run_script(*settings, "--epochs", "2", "--save", straight).returncode == 0
    assert run_script(*settings, "--epochs", "1", "--save", resumed).returncode == 0
    # Only --epochs and --resume: every other setting must come back from the checkpoint.
    second = run_script("--resume", resumed, "--epochs", "2", "--quiet")
    assert second.returncode == 0, second.stderr
    assert "epoch 2/2" in second.stdout and "epoch 1/2" not in second.stdout

    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert a["epoch"] == b["epoch"] == 2
    for group in ("params", "velocity"):
        for layer in a[group]:
            for k in a[group][layer]:
                assert np.array_equal(a[group][layer][k], b[group][layer][k]), f"{group}/{layer}/{k}"
    assert a["rng_state"] == b["rng_state"]
    for record_a, record_b in zip(a["metrics"], b["metrics"], strict=True):
        for key in ("epoch", "lr", "train_loss", "train_accuracy", "test_accuracy", "step_losses"):
            assert record_a[key] == record_b[key], key
    assert (tmp_path / "resumed.metrics.jsonl").read_text().count("\n") == 2


def test_resume_of_a_finished_run_does_nothing(finished_run):
    save = finished_run
    before = save.read_bytes()
    result = run_script("--resume", save, "--epochs", "1")
    assert result.returncode == 0 and "already holds 1 epoch;" in result.stdout
    assert save.read_bytes() == before


def test_divergence_exits_1_naming_the_step_and_keeps_the_last_good_checkpoint(finished_run):
    save = finished_run
    good = save.read_bytes()
    result = run_script("--resume", save, "--epochs", "2", "--lr", "1e20", "--quiet")
    assert_clean_failure(result, 1, "diverged", "epoch 2, step", "--lr", "holds epoch 1")
    assert save.read_bytes() == good


@pytest.mark.parametrize("args, fragment", [
    (["--arch", "alexnet"], "invalid choice"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--lr", "-1"], "--lr > 0"),
    (["--data", "/nonexistent/mnist"], "/nonexistent/mnist"),
    (["--resume", "/nonexistent/run.npz"], "no such file"),
])
def test_bad_arguments_exit_2_with_a_message(args, fragment):
    assert_clean_failure(run_script(*args, "--quiet"), 2, fragment)


def test_resume_takes_the_architecture_from_a_checkpoint_saved_from_python(tmp_path):
    # Written by the library with no training settings: the arch must come from the arrays.
    save = tmp_path / "lenet5.npz"
    params = fcnn.init("lenet5", seed=0)
    save_checkpoint(save, arch="lenet5", params=params, velocity=fcnn.zeros_like(params), epoch=1,
                    rng_state=np.random.default_rng(0).bit_generator.state)
    result = run_script("--resume", save, "--epochs", "2", "--backend", "numpy",
                        "--train-limit", "64", "--test-limit", "20", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "lenet5 net" in result.stdout and "epoch 2/2" in result.stdout
    assert load_checkpoint(save)["epoch"] == 2


def test_resume_of_a_custom_architecture_exits_2(tmp_path):
    save = tmp_path / "custom.npz"
    arch = [{"type": "flatten"}, {"type": "dense", "units": 10}]
    params = fcnn.init(arch, seed=0)
    save_checkpoint(save, arch=arch, params=params, velocity=fcnn.zeros_like(params), epoch=1,
                    rng_state=np.random.default_rng(0).bit_generator.state)
    assert_clean_failure(run_script("--resume", save, "--epochs", "2"), 2, "presets only")


def test_a_corrupt_checkpoint_exits_2(tmp_path):
    save = tmp_path / "run.npz"
    save.write_bytes(b"PK\x03\x04 this is not really a zip")
    assert_clean_failure(run_script("--resume", save), 2, str(save))


def test_resume_with_another_arch_exits_2(finished_run):
    assert_clean_failure(run_script("--resume", finished_run, "--arch", "lenet5", "--epochs", "2"), 2, "does not match")


def test_missing_matplotlib_fails_fast_with_the_install_hint(tmp_path):
    # A stand-in package that fails to import, found before the real matplotlib.
    fake = tmp_path / "fake" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    start = time.perf_counter()
    result = run_script("--plot", tmp_path / "plots", "--data", "/nonexistent", extra_path=[fake.parent])
    # The data path is bad too: the matplotlib check must come first, before any data is read.
    assert_clean_failure(result, 2, 'pip install -e ".[plot]"')
    assert "/nonexistent" not in result.stderr
    assert not (tmp_path / "plots").exists()
    assert time.perf_counter() - start < 60


def test_plot_writes_pictures_and_metrics_without_save(tmp_path):
    pytest.importorskip("matplotlib")
    plots = tmp_path / "plots"
    result = run_script("--backend", "numpy", *SMALL, "--plot", plots)
    assert result.returncode == 0, result.stderr
    assert (plots / "metrics.jsonl").read_text().count("\n") == 1
    assert sorted(p.name for p in plots.glob("*.png")) == ["confusion.png", "curves.png", "filters.png", "mistakes.png"]


def test_ctrl_c_exits_130_and_leaves_a_loadable_checkpoint(tmp_path):
    save = tmp_path / "run.npz"
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--backend", "numpy", "--train-limit", "300", "--test-limit", "50",
         "--epochs", "1000", "--quiet", "--save", str(save)],
        cwd=REPO, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while not save.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert load_checkpoint(save)["epoch"] >= 1
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_help_lists_the_options_and_exit_codes():
    result = run_script("--help")
    assert result.returncode == 0
    for option in ("--arch", "--backend", "--epochs", "--batch-size", "--lr", "--momentum", "--lr-decay",
                   "--seed", "--data", "--train-limit", "--test-limit", "--save", "--resume", "--quiet", "--plot"):
        assert option in result.stdout
    assert "130 interrupted" in " ".join(result.stdout.split())
