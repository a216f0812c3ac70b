"""Gradients by central differences: the independent second opinion on every backward kernel.

dL/da[k] ~ (L(a[k] + eps) - L(a[k] - eps)) / (2 eps), one element at a time, in float64;
relative_error says how far an analytic gradient is from them.
"""

import numpy as np

# The losses checked here are linear in each input (conv, dense, pooling without ties, relu away
# from 0) or smooth (softmax), so truncation error is nil or ~eps**2 = 1e-12, and rounding error
# is ~1e-16 * |L| / eps ~ 1e-9: both far below any real mistake.
EPS = 1e-6


def numerical_gradient(loss, array, indices=None, eps=EPS):
    """dL/d(array) by central differences; `loss()` reads `array`, which is nudged in place and restored.

    loss: () -> float, array (any shape, float64) -> gradient (same shape, float64); with
    `indices` (a list of index tuples) only those entries are computed, the others are NaN.
    """
    gradient = np.full(array.shape, np.nan)
    for index in np.ndindex(array.shape) if indices is None else indices:
        original = array[index]
        array[index] = original + eps
        above = loss()
        array[index] = original - eps
        below = loss()
        array[index] = original
        gradient[index] = (above - below) / (2 * eps)
    return gradient


def relative_error(analytic, numeric):
    """max |a - n| / max |n| over the entries that were checked numerically (not NaN).

    analytic (any shape), numeric (same shape, from numerical_gradient) -> float.
    Scaled by the largest gradient rather than entry by entry: an entry whose true gradient
    is 0 carries ~1e-10 of finite-difference noise, which no per-entry ratio survives.
    """
    checked = ~np.isnan(numeric)
    a, n = np.asarray(analytic, dtype=np.float64)[checked], numeric[checked]
    return float(np.max(np.abs(a - n)) / max(np.max(np.abs(n)), 1e-12))
