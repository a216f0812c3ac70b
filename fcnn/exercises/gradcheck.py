"""Gradients by central differences: the independent second opinion on every backward kernel.

dL/da[k] ~ (L(a[k] + eps) - L(a[k] - eps)) / (2 eps), one element at a time, in float64.
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
