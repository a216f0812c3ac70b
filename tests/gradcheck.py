"""Central finite differences in float64: the independent yardstick for every gradient test."""

import numpy as np

EPS = 1e-6


def numerical_gradient(loss, array, indices=None, eps=EPS):
    """d loss() / d array[index] by central differences, for every index (or the ones given).

    `loss` takes no arguments and reads `array`, which is perturbed in place and restored.
    Returns an array shaped like `array` (NaN where no index was asked for).
    """
    grad = np.full(array.shape, np.nan)
    for index in np.ndindex(array.shape) if indices is None else indices:
        original = array[index]
        array[index] = original + eps
        plus = loss()
        array[index] = original - eps
        minus = loss()
        array[index] = original
        grad[index] = (plus - minus) / (2 * eps)
    return grad


def relative_error(analytic, numeric):
    """max |a - n| / max |n| over the entries that were checked numerically.

    Scaled by the largest gradient rather than entry by entry: an entry whose true gradient
    is 0 carries ~1e-10 of finite-difference noise, which no per-entry ratio survives.
    """
    checked = ~np.isnan(numeric)
    a, n = np.asarray(analytic, dtype=np.float64)[checked], numeric[checked]
    return float(np.max(np.abs(a - n)) / max(np.max(np.abs(n)), 1e-12))
