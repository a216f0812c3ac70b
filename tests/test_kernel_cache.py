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
