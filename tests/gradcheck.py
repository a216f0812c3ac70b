"""How far an analytic gradient is from central finite differences (fcnn.exercises.gradcheck)."""

import numpy as np

from fcnn.exercises.gradcheck import numerical_gradient

__all__ = ["numerical_gradient", "relative_error"]


def relative_error(analytic, numeric):
    """max |a - n| / max |n| over the entries that were checked numerically (not NaN).

    Scaled by the largest gradient rather than entry by entry: an entry whose true gradient
    is 0 carries ~1e-10 of finite-difference noise, which no per-entry ratio survives.
    """
    checked = ~np.isnan(numeric)
    a, n = np.asarray(analytic, dtype=np.float64)[checked], numeric[checked]
    return float(np.max(np.abs(a - n)) / max(np.max(np.abs(n)), 1e-12))
