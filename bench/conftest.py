"""Fixtures shared by the benchmarks (the workloads themselves live in workloads.py)."""

import numpy as np
import pytest

from fcnn import keep_freed_memory, use_one_blas_thread


def pytest_configure(config):
    # The configuration scripts/train_mnist.py runs in: freed memory stays in the heap (see
    # fcnn/memory.py). torch runs in this same process, so the comparison stays even.
    keep_freed_memory()
    # BLAS on one thread, as the script runs it (fcnn/blas.py): numba's threads are the parallelism.
    use_one_blas_thread()


@pytest.fixture
def rng():
    """A fixed generator: every benchmark times the same inputs run after run."""
    return np.random.default_rng(0)
