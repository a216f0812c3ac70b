"""Fixtures shared by the benchmarks (the workloads themselves live in workloads.py)."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    """A fixed generator: every benchmark times the same inputs run after run."""
    return np.random.default_rng(0)
