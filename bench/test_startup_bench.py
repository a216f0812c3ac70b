"""How long a fresh process takes to finish its first numba training step: compile time, kept apart.

Cold: an empty numba cache directory, so every kernel is compiled. Warm: a second process on
the same directory, as a second run of the training script sees it (numba's on-disk cache).
Each run is a new Python process; the time is from launch to exit, one step included.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from workloads import PRESETS, TRAINING_BATCH

import fcnn

pytestmark = pytest.mark.skipif("numba" not in fcnn.available_backends(), reason="numba is not installed")

REPO = Path(fcnn.__file__).resolve().parent.parent
FIRST_STEP = """
import time
start = time.perf_counter()
import sys
import numpy as np
import fcnn
sys.path.insert(0, {bench_dir!r})
from workloads import optimizer_state, training_step
preset, batch = {preset!r}, {batch}
params = fcnn.init(preset)
x, labels = np.zeros((batch, 1, 28, 28), np.float32), np.zeros(batch, np.int64)
imported = time.perf_counter()
training_step(preset, "numba")(params, optimizer_state(preset, params), x, labels)
print(imported - start, time.perf_counter() - imported)
"""


def first_step_in_new_process(preset, cache_dir):
    """Run one numba training step of `preset` in a new interpreter whose numba cache is `cache_dir`.

    Returns (seconds from launch to exit, seconds to import fcnn, seconds of the first step).
    """
    script = FIRST_STEP.format(bench_dir=str(Path(__file__).parent), preset=preset, batch=TRAINING_BATCH[preset])
    launched = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env={**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)},
        capture_output=True, text=True, check=True,
    )
    total = time.perf_counter() - launched
    import_seconds, step_seconds = map(float, result.stdout.split())
    return total, import_seconds, step_seconds


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory):
    """A numba cache directory filled by one cold run, and what that run took."""
    cache_dir = tmp_path_factory.mktemp("numba-cache")
    total, _, step_seconds = first_step_in_new_process("lenet5", cache_dir)
    return cache_dir, dict(cold_process_seconds=round(total, 2), cold_first_step_seconds=round(step_seconds, 2))


@pytest.mark.parametrize("preset", PRESETS)
def test_numba_first_step_with_warm_cache(benchmark, warm_cache, preset):
    benchmark.group = "numba start-up: new process, first training step"
    cache_dir, cold = warm_cache
    timings = []

    def run():
        timings.append(first_step_in_new_process(preset, cache_dir))

    benchmark.pedantic(run, rounds=3)
    total, import_seconds, step_seconds = min(timings)
    benchmark.extra_info.update(
        backend="numba", preset=preset, warm_process_seconds=round(total, 2),
        warm_import_seconds=round(import_seconds, 2), warm_first_step_seconds=round(step_seconds, 2), **cold,
    )
