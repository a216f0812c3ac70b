"""numba's disk cache across processes: whatever sequence of architectures, shapes and dtypes
fresh processes run, the compiled backends load only code compiled for what they run, and give
loop.py's numbers. Each step is a fresh process sharing one cache folder."""

import os
import subprocess
import sys

import pytest

from fcnn.kernels import available_backends

pytestmark = pytest.mark.skipif("numba" not in available_backends(), reason="numba is not installed")

# A network of odd shapes: a non-square kernel, padding, an odd filter count, a 3x3 pool of stride 2.
ODD = [
    {"type": "conv", "filters": 3, "kernel": [2, 4], "pad": 1},
    {"type": "relu"},
    {"type": "maxpool", "size": 3, "stride": 2},
    {"type": "conv", "filters": 5, "kernel": 3},
    {"type": "relu"},
    {"type": "maxpool", "size": 2},
    {"type": "flatten"},
    {"type": "dense", "units": 10},
]

# Run in each fresh process: for every (arch, dtype) named on the command line, one training
# step's loss and gradients on the compiled backends, held to loop.py's.
SCRIPT = f"""
import sys
import numpy as np
import fcnn

ODD = {ODD!r}
TOLERANCE = {{"float32": 2e-4, "float64": 1e-9}}
for step in sys.argv[1:]:
    arch, dtype = step.split(":")
    arch = ODD if arch == "odd" else arch
    params = fcnn.init(arch, seed=0, dtype=dtype)
    rng = np.random.default_rng(1)
    x = rng.random((2, 1, 28, 28)).astype(dtype)
    labels = np.array([3, 7])
    expected_loss, expected_grads, _ = fcnn.loss_and_grads(params, x, labels, arch, backend="loop")
    for backend in ("tuned", "numba"):
        loss, grads, _ = fcnn.loss_and_grads(params, x, labels, arch, backend=backend)
        np.testing.assert_allclose(loss, expected_loss, rtol=TOLERANCE[dtype], err_msg=f"{{step}} {{backend}}")
        for layer in expected_grads:
            for key in expected_grads[layer]:
                np.testing.assert_allclose(grads[layer][key], expected_grads[layer][key],
                                           rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype],
                                           err_msg=f"{{step}} {{backend}} {{layer}} {{key}}")
"""

# Each inner list is one fresh process, in order, over one cache folder. The first three are
# issue 18's crash: a process that loads one shape's kernel from the cache and compiles a
# second makes every later process that loads both run one with the other's symbols.
SEQUENCES = {
    "seed, then seed and lenet5, twice": [["seed:float32"], ["seed:float32", "lenet5:float32"],
                                          ["seed:float32", "lenet5:float32"]],
    "odd shapes and dtypes mixed": [["odd:float64", "seed:float64"], ["seed:float32", "odd:float64", "lenet5:float64"],
                                    ["lenet5:float64", "odd:float32", "seed:float64", "lenet5:float32"],
                                    ["odd:float32", "odd:float64", "seed:float32", "seed:float64"]],
}


@pytest.mark.parametrize("name", SEQUENCES)
def test_fresh_processes_sharing_the_disk_cache_match_loop_in_any_order(name, tmp_path):
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_NUM_THREADS": "1"}
    for number, steps in enumerate(SEQUENCES[name], 1):
        result = subprocess.run([sys.executable, "-c", SCRIPT, *steps], env=environment,
                                capture_output=True, text=True)
        assert result.returncode == 0, f"process {number} ({' '.join(steps)}) failed: {result.stderr[-3000:]}"


def test_without_a_writable_cache_place_fcnn_compiles_uncached_and_says_so_once(tmp_path):
    # A read-only install (a course machine, a container) with an unwritable home and cache
    # folder: numba finds no locator for its cache. A __pycache__ that is a file blocks the
    # package's folders even for root, whom the read-only mode does not stop.
    import shutil
    from pathlib import Path

    import fcnn

    install = tmp_path / "install"
    shutil.copytree(Path(fcnn.__file__).parent, install / "fcnn", ignore=shutil.ignore_patterns("__pycache__"))
    folders = [install, *(path for path in install.rglob("*") if path.is_dir())]
    for folder in folders:
        (folder / "__pycache__").touch()
    for path in [*install.rglob("*"), install]:
        path.chmod(path.stat().st_mode & ~0o222)
    unwritable = "/dev/null/nowhere"  # below a file: no one can create it
    environment = {**os.environ, "PYTHONPATH": str(install), "HOME": unwritable, "XDG_CACHE_HOME": unwritable,
                   "NUMBA_CACHE_DIR": unwritable, "NUMBA_NUM_THREADS": "1"}
    script = (
        "import numpy as np, fcnn\n"
        "assert fcnn.__file__.startswith(%r), fcnn.__file__\n"
        "print(fcnn.available_backends())\n"
        "params = fcnn.init('seed'); x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)\n"
        "expected = fcnn.forward(params, x, 'seed', backend='loop')[0]\n"
        "for backend in ('numba', 'tuned'):\n"
        "    np.testing.assert_allclose(fcnn.forward(params, x, 'seed', backend=backend)[0], expected, rtol=2e-5, atol=2e-5)\n"
    ) % str(install)
    try:
        result = subprocess.run([sys.executable, "-W", "always", "-c", script], env=environment, cwd=tmp_path,
                                capture_output=True, text=True)
    finally:
        for path in [install, *install.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "'numba', 'tuned'" in result.stdout
    assert result.stderr.count("NumbaCacheWarning") == 1, result.stderr
    assert "no writable place for its disk cache" in result.stderr and "NUMBA_CACHE_DIR" in result.stderr


# Run twice over one cache folder: the first process compiles and writes what the tuned backend
# computed, the second loads the kernels from the cache and must compute the same bits. The tile
# "filters in lanes" is forced so that the kernel whose compiling process once ran a copy
# optimised once (docs/ladder.md, "The forward on AMD EPYC Zen 5") is in it on every machine.
SAME_BITS_SCRIPT = """
import sys
import numpy as np
import fcnn
from fcnn.kernels.tuned.conv_forward import filters_in_lanes_kernel
from fcnn.tree import tree_paths

path, mode = sys.argv[1], sys.argv[2]
params = fcnn.init("lenet5", seed=0)
x = np.random.default_rng(1).random((4, 1, 28, 28)).astype(np.float32)
loss, grads, logits = fcnn.loss_and_grads(params, x, np.array([3, 7, 1, 0]), "lenet5", backend="tuned")
arrays = {"logits": logits, **{".".join(path): array for path, array in tree_paths(grads)}}
loaded = len(filters_in_lanes_kernel(6, 14, 14, 16, 5, 5, 0).stats.cache_hits)
if mode == "write":
    assert loaded == 0, "the first process found the kernel cached already"
    np.savez(path, **arrays)
else:
    assert loaded == 1, "the second process did not load the kernel from the cache"
    saved = np.load(path)
    for name, value in arrays.items():
        assert np.array_equal(saved[name], value), name + " differs between the compiling and the loading process"
"""


def test_kernels_loaded_from_the_cache_compute_the_bits_of_the_process_that_compiled_them(tmp_path):
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "NUMBA_NUM_THREADS": "1",
                   "FCNN_CONV_FORWARD_TILE": "filters in lanes"}
    for mode in ("write", "compare"):
        result = subprocess.run([sys.executable, "-c", SAME_BITS_SCRIPT, str(tmp_path / "bits.npz"), mode],
                                env=environment, capture_output=True, text=True)
        assert result.returncode == 0, f"{mode} process failed: {result.stderr[-3000:]}"
