"""The layers that need no kernel backend: ReLU, tanh, sigmoid, dense (fully connected) and
batch norm in evaluation, forward and backward.

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
    # np.dot, not @: for a batch of one, @ leaves BLAS for its own loops (docs/performance.md).
    return dout @ w.T, np.dot(x.T, dout), dout.sum(axis=0)


def tanh_forward(x):
    """out = tanh(x), elementwise. x any shape -> out same shape."""
    return np.tanh(x)


def tanh_backward(dout, out):
    """dx = dout * (1 - out**2), from the forward's output (tanh' = 1 - tanh**2).

    dout, out same shape -> dx same shape
    """
    return dout * (1 - out * out)


def sigmoid_forward(x):
    """out = 1 / (1 + exp(-x)) = (1 + tanh(x / 2)) / 2, elementwise; the tanh form never overflows.

    x any shape -> out same shape
    """
    return 0.5 * (1 + np.tanh(0.5 * x))


def sigmoid_backward(dout, out):
    """dx = dout * out * (1 - out), from the forward's output (sigmoid' = sigmoid (1 - sigmoid)).

    dout, out same shape -> dx same shape
    """
    return dout * out * (1 - out)


def _per_channel(array, ndim):
    """A (C,) array shaped to broadcast against (N, C) or (N, C, H, W): (1, C) or (1, C, 1, 1)."""
    return array.reshape((1, -1) + (1,) * (ndim - 2))


def batchnorm_eval_forward(x, gamma, beta, mean, var, eps):
    """Batch norm in evaluation: out = gamma * (x - mean) / sqrt(var + eps) + beta, per channel (axis 1),
    with given (running) statistics.

    x (N, C) or (N, C, H, W), gamma, beta, mean, var (C,) -> out (shape of x)
    """
    scale = gamma / np.sqrt(var + eps)
    return (x - _per_channel(mean, x.ndim)) * _per_channel(scale, x.ndim) + _per_channel(beta, x.ndim)


def batchnorm_eval_backward(dout, x, gamma, mean, var, eps):
    """Batch norm in evaluation, backward: mean and var are constants, so the layer is affine per channel.

    dx = dout * gamma / sqrt(var + eps),  dgamma[c] = sum dout * xhat,  dbeta[c] = sum dout,
    xhat = (x - mean) / sqrt(var + eps), sums over every axis but 1.
    dout, x (N, C) or (N, C, H, W), gamma, mean, var (C,) -> dx (shape of x), dgamma (C,), dbeta (C,)
    """
    axes = (0, *range(2, x.ndim))
    inverse_std = 1 / np.sqrt(var + eps)
    xhat = (x - _per_channel(mean, x.ndim)) * _per_channel(inverse_std, x.ndim)
    dx = dout * _per_channel(gamma * inverse_std, x.ndim)
    return dx, (dout * xhat).sum(axis=axes), dout.sum(axis=axes)
