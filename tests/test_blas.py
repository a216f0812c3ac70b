"""fcnn.use_one_blas_thread: an explicit process-wide setting, which the library never makes on its own."""

import json
import os
import subprocess
import sys

# A fresh process: the setting is process-wide, and the test must not leave it behind. BLAS starts
# with two threads there, so that a limit that did nothing would show.
PROGRAM = """
import json
import numpy as np
from threadpoolctl import threadpool_info
import fcnn

def blas_threads():
    return sorted({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"})

seen = {"at start": blas_threads()}
params = fcnn.init("seed", seed=0)
x = np.zeros((2, 784), np.float32)
fcnn.backward(params, fcnn.forward(params, x, "seed", "numpy")[1], np.zeros((2, 10), np.float32))
seen["after forward and backward"] = blas_threads()
seen["returned"] = fcnn.use_one_blas_thread()
seen["after the call"] = blas_threads()
seen["returned again"] = fcnn.use_one_blas_thread()
seen["after a second call"] = blas_threads()
print(json.dumps(seen))
"""


def test_use_one_blas_thread_limits_blas_for_the_process_and_the_model_never_does():
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    result = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, env=env, check=True)
    seen = json.loads(result.stdout)
    assert seen == {
        "at start": [2],
        "after forward and backward": [2],  # the model makes no process-wide setting
        "returned": True,
        "after the call": [1],
        "returned again": True,
        "after a second call": [1],
    }
