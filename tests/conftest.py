"""Fixtures shared by the test modules."""

import pytest
from hypothesis import settings

from fcnn.data import load_mnist


@pytest.fixture(scope="session")
def mnist():
    """The bundled MNIST, loaded and checksummed once per test session: (x_train, y_train, x_test, y_test)."""
    return load_mnist()


# The same hypothesis examples on every run: the tuned backend compiles a kernel for each new
# layer shape, so fresh random shapes would compile anew each time, where fixed ones load from
# numba's disk cache after the first run.
settings.register_profile("fcnn", derandomize=True)
settings.load_profile("fcnn")
