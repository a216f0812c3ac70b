"""Fixtures shared by the test modules."""

import pytest

from fcnn.data import load_mnist


@pytest.fixture(scope="session")
def mnist():
    """The bundled MNIST, loaded and checksummed once per test session: (x_train, y_train, x_test, y_test)."""
    return load_mnist()
