"""Fixtures shared by the benchmarks (the workloads themselves live in workloads.py)."""

import numpy as np
import pytest

from fcnn import keep_freed_memory, use_one_blas_thread
from fcnn.kernels.tuned import machine

# The key of the benchmark JSON's machine_info that says which kernels the tuned backend chose here.
MACHINE_INFO_KEY = "fcnn_tuned_kernels"


def pytest_configure(config):
    # The configuration scripts/train_mnist.py runs in: freed memory stays in the heap (see
    # fcnn/memory.py). torch runs in this same process, so the comparison stays even.
    keep_freed_memory()
    # BLAS on one thread, as the script runs it (fcnn/blas.py): numba's threads are the parallelism.
    use_one_blas_thread()


def pytest_benchmark_update_machine_info(config, machine_info):
    # The instruction set numba compiles for and the register tiles the tuned backend takes on
    # it (fcnn.kernels.tuned.machine): bench/report.py prints it above the table.
    machine_info[MACHINE_INFO_KEY] = machine.describe()


@pytest.fixture
def rng():
    """A fixed generator: every benchmark times the same inputs run after run."""
    return np.random.default_rng(0)
