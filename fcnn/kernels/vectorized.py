"""Vectorised kernels: the same conv2d and maxpool2d as loop.py, written with NumPy.

Windows of the input are views (sliding_window_view), never copies made pixel by pixel;
the sums are matrix products. The only Python loops run over the KH x KW kernel taps.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from fcnn.kernels.loop import output_size


def _pad(x, pad):
    """x (N, C, H, W) -> (N, C, H + 2*pad, W + 2*pad), zeros around the border."""
    if pad == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))


def _windows(xpad, KH, KW, stride):
    """View of every window: xpad (N, C, Hp, Wp) -> (N, C, H', W', KH, KW)."""
    return sliding_window_view(xpad, (KH, KW), axis=(2, 3))[:, :, ::stride, ::stride]


def _columns(xpad, KH, KW, stride):
    """im2col: xpad (N, C, Hp, Wp) -> (C*KH*KW, N*H'*W'), one row per tap (c, ki, kj).

    Row (c, ki, kj), column (n, i, j) holds xpad[n, c, i*stride + ki, j*stride + kj]. In this
    order the copy moves whole output rows (j contiguous), much faster than rows of KW taps.
    """
    windows = _windows(xpad, KH, KW, stride)
    N, C, H_out, W_out = windows.shape[:4]
    return windows.transpose(1, 4, 5, 0, 2, 3).reshape(C * KH * KW, N * H_out * W_out)


def _taps(KH, KW, stride, H_out, W_out):
    """Each tap (di, dj) of a KH x KW window, in row-major order, with the index that selects
    a[:, :, i*stride + di, j*stride + dj] for every output pixel (i, j) of an (N, C, Hp, Wp) array a.
    """
    for di in range(KH):
        for dj in range(KW):
            rows = slice(di, di + stride * (H_out - 1) + 1, stride)
            cols = slice(dj, dj + stride * (W_out - 1) + 1, stride)
            yield (di, dj), (slice(None), slice(None), rows, cols)


def conv2d_forward(x, w, b, stride=1, pad=0):
    """Convolution (cross-correlation) forward as one matrix product: weights @ im2col columns.

    out[n, f, i, j] = b[f] + sum_{c, ki, kj} w[f, c, ki, kj] * xpad[n, c, i*stride + ki, j*stride + kj]

    x (N, C, H, W), w (F, C, KH, KW), b (F,) -> out (N, F, H', W')
    """
    F, C, KH, KW = w.shape
    N, H_out, W_out = x.shape[0], output_size(x.shape[2], KH, stride, pad), output_size(x.shape[3], KW, stride, pad)
    out = w.reshape(F, C * KH * KW) @ _columns(_pad(x, pad), KH, KW, stride) + b[:, None]
    return np.ascontiguousarray(out.reshape(F, N, H_out, W_out).transpose(1, 0, 2, 3))


def conv2d_backward(dout, x, w, stride=1, pad=0):
    """Convolution backward: dw and the per-tap contributions to dx as matrix products.

    dw[f, c, ki, kj] = sum_{n, i, j} dout[n, f, i, j] * xpad[n, c, i*stride + ki, j*stride + kj]
    db[f]            = sum_{n, i, j} dout[n, f, i, j]
    dxpad[n, c, i*stride + ki, j*stride + kj] += sum_f w[f, c, ki, kj] * dout[n, f, i, j]

    dout (N, F, H', W'), x (N, C, H, W), w (F, C, KH, KW) -> dx, dw, db (shapes of x, w, b)
    """
    dw, db = conv2d_backward_weights(dout, x, w, stride, pad)
    return conv2d_backward_input(dout, x, w, stride, pad), dw, db


def _dout_rows(dout):
    """dout (N, F, H', W') -> (F, N*H'*W'), one row per filter, in the column order of _columns."""
    N, F, H_out, W_out = dout.shape
    return dout.transpose(1, 0, 2, 3).reshape(F, N * H_out * W_out)


def conv2d_backward_weights(dout, x, w, stride=1, pad=0):
    """conv2d_backward's dw and db (without dx): dw = dout rows @ im2col columns.T, db = row sums.

    dout (N, F, H', W'), x (N, C, H, W), w (F, C, KH, KW) -> dw (F, C, KH, KW), db (F,)
    """
    KH, KW = w.shape[2:]
    dout_rows = _dout_rows(dout)
    dw = (dout_rows @ _columns(_pad(x, pad), KH, KW, stride).T).reshape(w.shape)
    return dw, dout_rows.sum(axis=1)


def conv2d_backward_input(dout, x, w, stride=1, pad=0):
    """conv2d_backward's dx: every tap's contribution w.T @ dout, added on its grid of input pixels.

    dout (N, F, H', W'), x (N, C, H, W) (read for its shape), w (F, C, KH, KW) -> dx (N, C, H, W)
    """
    F, C, KH, KW = w.shape
    N, _, H, W = x.shape
    H_out, W_out = dout.shape[2:]
    # All taps at once: contributions[c, ki, kj, n, i, j] = sum_f w[f, c, ki, kj] * dout[n, f, i, j].
    contributions = (w.reshape(F, C * KH * KW).T @ _dout_rows(dout)).reshape(C, KH, KW, N, H_out, W_out)
    dxpad = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=x.dtype)
    # Each tap lands on a strided grid of input pixels; grids of different taps overlap,
    # so they are added one tap at a time (KH * KW steps, each over the whole batch).
    for (ki, kj), tap in _taps(KH, KW, stride, H_out, W_out):
        dxpad[tap] += contributions[:, ki, kj].transpose(1, 0, 2, 3)
    return np.ascontiguousarray(dxpad[:, :, pad:pad + H, pad:pad + W])


def maxpool2d_forward(x, size=2, stride=None):
    """Max-pooling forward: the largest value of each size x size window.

    out[n, c, i, j] = max_{di, dj} x[n, c, i*stride + di, j*stride + dj]

    x (N, C, H, W) -> out (N, C, H', W'), H' = 1 + (H - size) // stride (stride None = size)
    """
    if stride is None:
        stride = size
    N, C, H, W = x.shape
    H_out, W_out = output_size(H, size, stride, 0), output_size(W, size, stride, 0)
    # One elementwise maximum per tap over whole (N, C, H', W') planes: NumPy's reduction over
    # the tiny trailing window axes of a strided view is an order of magnitude slower.
    out = None
    for _, tap in _taps(size, size, stride, H_out, W_out):
        out = x[tap].copy() if out is None else np.maximum(out, x[tap], out=out)
    return out


def maxpool2d_backward(dout, x, size=2, stride=None):
    """Max-pooling backward: each window's gradient goes whole to its first maximum.

    dx[n, c, i*stride + di*, j*stride + dj*] += dout[n, c, i, j], (di*, dj*) the first
    maximum of the window in row-major order; overlapping windows accumulate.

    dout (N, C, H', W'), x (N, C, H, W) -> dx (N, C, H, W)
    """
    if stride is None:
        stride = size
    H_out, W_out = dout.shape[2:]
    largest = maxpool2d_forward(x, size, stride)
    # Taps are visited in row-major order, and a window is claimed by the first tap that
    # holds its maximum: a later tie finds it claimed already. A window's maximum is NaN
    # when it holds a NaN (np.maximum), and then its first NaN claims it.
    nan_windows = np.isnan(largest).any()
    # A product with the 0/1 mask: branch-free, unlike np.where, which mispredicts per element.
    # But 0 * inf is NaN: a dout holding an inf or a NaN is added only where a tap wins (slower).
    finite = np.isfinite(dout.sum())
    unclaimed = np.ones(dout.shape, dtype=bool)
    wins = np.empty(dout.shape, dtype=bool)
    dx = np.zeros(x.shape, dtype=x.dtype)
    # Windows that do not overlap (stride >= size) reach each input pixel through one tap
    # only: the product is written straight into dx instead of being added to it.
    overlapping = stride < size
    for _, tap in _taps(size, size, stride, H_out, W_out):
        np.equal(x[tap], largest, out=wins)
        if nan_windows:
            wins |= np.isnan(x[tap])
        wins &= unclaimed
        unclaimed ^= wins
        if not finite:
            np.add(dx[tap], dout, out=dx[tap], where=wins)
        elif overlapping:
            dx[tap] += dout * wins
        else:
            np.multiply(dout, wins, out=dx[tap])
    return dx


# ---- Batch norm, dropout and average pooling -------------------------------------------------


def _channel_axes(x):
    """Every axis of x but the channel's (axis 1): (0,) for (N, C), (0, 2, 3) for (N, C, H, W)."""
    return (0, *range(2, x.ndim))


def _along_channels(values, x):
    """values (C,) shaped to broadcast along axis 1 of x: (1, C) or (1, C, 1, 1)."""
    return values.reshape((1, -1) + (1,) * (x.ndim - 2))


def batchnorm_statistics(x):
    """Per-channel mean and biased variance over every other axis.

    mean[c] = 1/M sum_{n, s} x[n, c, s],  var[c] = 1/M sum_{n, s} (x[n, c, s] - mean[c])**2

    x (N, C) or (N, C, H, W) -> mean (C,), var (C,)
    """
    axes = _channel_axes(x)
    mean = x.mean(axis=axes)
    var = ((x - _along_channels(mean, x)) ** 2).mean(axis=axes)
    return mean, var


def _normalised(x, eps):
    """xhat = (x - mean) / sqrt(var + eps) and 1 / sqrt(var + eps) (C,), from x's batch statistics."""
    mean, var = batchnorm_statistics(x)
    inverse_std = 1 / np.sqrt(var + eps)
    return (x - _along_channels(mean, x)) * _along_channels(inverse_std, x), inverse_std


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    """Batch norm, training mode: out = gamma * (x - mean) / sqrt(var + eps) + beta, per channel.

    x (N, C) or (N, C, H, W), gamma (C,), beta (C,) -> out (shape of x)
    """
    xhat, _ = _normalised(x, eps)
    return _along_channels(gamma, x) * xhat + _along_channels(beta, x)


def batchnorm_backward(dout, x, gamma, eps=1e-5):
    """Batch norm backward: dbeta = sum dout, dgamma = sum dout * xhat (over all but axis 1),
    dx = gamma / sqrt(var + eps) * (dout - dbeta / M - xhat * dgamma / M), M values per channel.

    dout (shape of x), x (N, C) or (N, C, H, W), gamma (C,) -> dx (shape of x), dgamma (C,), dbeta (C,)
    """
    axes = _channel_axes(x)
    M = x.size // x.shape[1]
    xhat, inverse_std = _normalised(x, eps)
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * xhat).sum(axis=axes)
    dx = _along_channels(gamma * inverse_std, x) * (
        dout - _along_channels(dbeta / M, x) - xhat * _along_channels(dgamma / M, x)
    )
    return dx, dgamma, dbeta


def dropout_forward(x, rate, rng):
    """Inverted dropout: mask = (rng.random(x.shape) >= rate) / (1 - rate) in x's dtype, out = x * mask.

    x (any shape), rate in [0, 1), rng a numpy.random.Generator -> out, mask (shape and dtype of x)
    """
    mask = ((rng.random(x.shape) >= rate) / (1 - rate)).astype(x.dtype)
    return x * mask, mask


def dropout_backward(dout, mask):
    """Dropout backward: dx = dout * mask, the forward's mask. dout, mask (same shape) -> dx"""
    return dout * mask


def avgpool2d_forward(x, size=2, stride=None):
    """Average-pooling forward: out[n, c, i, j] = 1/size**2 sum_{di, dj} x[n, c, i*stride + di, j*stride + dj].

    x (N, C, H, W) -> out (N, C, H', W'), H' = 1 + (H - size) // stride (stride None = size)
    """
    if stride is None:
        stride = size
    N, C, H, W = x.shape
    H_out, W_out = output_size(H, size, stride, 0), output_size(W, size, stride, 0)
    # One addition per tap over whole (N, C, H', W') planes, in row-major tap order (as loop.py
    # sums), for the reason maxpool2d_forward gives.
    out = np.zeros((N, C, H_out, W_out), dtype=x.dtype)
    for _, tap in _taps(size, size, stride, H_out, W_out):
        out += x[tap]
    out /= size * size
    return out


def avgpool2d_backward(dout, x, size=2, stride=None):
    """Average-pooling backward: dx[n, c, i*stride + di, j*stride + dj] += dout[n, c, i, j] / size**2.

    dout (N, C, H', W'), x (N, C, H, W) (read for its shape) -> dx (N, C, H, W); overlaps accumulate
    """
    if stride is None:
        stride = size
    H_out, W_out = dout.shape[2:]
    share = dout / (size * size)
    dx = np.zeros(x.shape, dtype=x.dtype)
    for _, tap in _taps(size, size, stride, H_out, W_out):
        dx[tap] += share
    return dx


# ---- Optimisers: the update of one parameter array -------------------------------------------
# With Python float scalars (the contract's check makes them so), NumPy rounds each to the
# arrays' dtype as it meets them (NEP 50): float32 in, float32 arithmetic, float32 out.


def adam_update(w, dw, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    """One Adam step on one array (Kingma & Ba 2015), as torch.optim.Adam computes it:

        m = beta1 * m + (1 - beta1) * dw          the gradients' running mean
        v = beta2 * v + (1 - beta2) * dw**2       their squares' running mean
        w = w - lr * m_hat / (sqrt(v_hat) + eps), m_hat = m / (1 - beta1**t), v_hat = v / (1 - beta2**t)

    t is this step's number, 1 on the first: m and v start at 0, and the bias corrections m_hat,
    v_hat undo that start (at t = 1, m_hat = dw exactly). eps is outside the square root.
    w, dw, m, v the same shape -> (w, m, v), new arrays.
    """
    m = beta1 * m + (1 - beta1) * dw
    v = beta2 * v + (1 - beta2) * dw * dw
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return np.asarray(w), np.asarray(m), np.asarray(v)  # arrays: on 0-d arrays NumPy's arithmetic gives scalars


def rmsprop_update(w, dw, s, lr, alpha=0.99, eps=1e-8):
    """One RMSProp step on one array (Hinton's lecture 6e), as torch.optim.RMSprop computes it:

        s = alpha * s + (1 - alpha) * dw**2       the squared gradients' running mean
        w = w - lr * dw / (sqrt(s) + eps)         eps outside the square root

    w, dw, s the same shape -> (w, s), new arrays; s starts at 0.
    """
    s = alpha * s + (1 - alpha) * dw * dw
    w = w - lr * dw / (np.sqrt(s) + eps)
    return np.asarray(w), np.asarray(s)  # as in adam_update
