"""The layers that need no kernel backend: ReLU and dense (fully connected), forward and backward.

They are a few NumPy operations each, the same in every backend.
"""

import numpy as np


def relu_forward(x):
    """out = max(x, 0), elementwise. x any shape -> out same shape."""
    return np.maximum(x, 0)


def relu_backward(dout, x):
    """dx = dout * [x > 0], elementwise (the gradient at exactly 0 is taken as 0).

    dout, x same shape -> dx same shape
    """
    return dout * (x > 0)


def dense_forward(x, w, b):
    """out[n, m] = b[m] + sum_d x[n, d] * w[d, m].

    x (N, D), w (D, M), b (M,) -> out (N, M)
    """
    return x @ w + b


def dense_backward(dout, x, w):
    """dx = dout @ w.T, dw = x.T @ dout, db[m] = sum_n dout[n, m].

    dout (N, M), x (N, D), w (D, M) -> dx (N, D), dw (D, M), db (M,)
    """
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)
