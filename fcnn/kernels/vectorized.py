"""Vectorised kernels: the same conv2d and maxpool2d as loop.py, written with NumPy.

Windows of the input are views (sliding_window_view), never copies made pixel by pixel;
the sums are matrix products. The only Python loops run over the KH x KW kernel taps.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _pad(x, pad):
    """x (N, C, H, W) -> (N, C, H + 2*pad, W + 2*pad), zeros around the border."""
    if pad == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))


def _windows(xpad, KH, KW, stride):
    """View of every window: xpad (N, C, Hp, Wp) -> (N, C, H', W', KH, KW)."""
    return sliding_window_view(xpad, (KH, KW), axis=(2, 3))[:, :, ::stride, ::stride]


def conv2d_forward(x, w, b, stride=1, pad=0):
    """Convolution (cross-correlation) forward as one matrix product: weights @ im2col columns.

    out[n, f, i, j] = b[f] + sum_{c, ki, kj} w[f, c, ki, kj] * xpad[n, c, i*stride + ki, j*stride + kj]

    x (N, C, H, W), w (F, C, KH, KW), b (F,) -> out (N, F, H', W')
    """
    F, C, KH, KW = w.shape
    windows = _windows(_pad(x, pad), KH, KW, stride)
    N, _, H_out, W_out = windows.shape[:4]
    # Rows: one per tap (c, ki, kj); columns: one per output pixel (n, i, j). In this order
    # the copy moves whole output rows (j contiguous), 2-3x faster than rows of KW taps.
    columns = windows.transpose(1, 4, 5, 0, 2, 3).reshape(C * KH * KW, N * H_out * W_out)
    out = w.reshape(F, C * KH * KW) @ columns + b[:, None]
    return np.ascontiguousarray(out.reshape(F, N, H_out, W_out).transpose(1, 0, 2, 3))


def conv2d_backward(dout, x, w, stride=1, pad=0):
    """Convolution backward: dw by one tensor contraction over the windows, dx tap by tap.

    dw[f, c, ki, kj] = sum_{n, i, j} dout[n, f, i, j] * xpad[n, c, i*stride + ki, j*stride + kj]
    db[f]            = sum_{n, i, j} dout[n, f, i, j]
    dxpad[n, c, i*stride + ki, j*stride + kj] += sum_f w[f, c, ki, kj] * dout[n, f, i, j]

    dout (N, F, H', W'), x (N, C, H, W), w (F, C, KH, KW) -> dx, dw, db (shapes of x, w, b)
    """
    F, C, KH, KW = w.shape
    N, _, H, W = x.shape
    H_out, W_out = dout.shape[2:]
    xpad = _pad(x, pad)
    windows = _windows(xpad, KH, KW, stride)
    dw = np.tensordot(dout, windows, axes=([0, 2, 3], [0, 2, 3]))  # (F, C, KH, KW)
    db = dout.sum(axis=(0, 2, 3))
    # All taps at once: contributions[n, c, ki, kj, i, j] = sum_f w[f, c, ki, kj] * dout[n, f, i, j].
    contributions = np.tensordot(w, dout, axes=([0], [1])).transpose(3, 0, 1, 2, 4, 5)
    dxpad = np.zeros(xpad.shape, dtype=x.dtype)
    # Each tap lands on a strided grid of input pixels; grids of different taps overlap,
    # so they are added one tap at a time (KH * KW steps, each over the whole batch).
    for ki in range(KH):
        for kj in range(KW):
            rows = slice(ki, ki + stride * (H_out - 1) + 1, stride)
            cols = slice(kj, kj + stride * (W_out - 1) + 1, stride)
            dxpad[:, :, rows, cols] += contributions[:, :, ki, kj]
    dx = dxpad[:, :, pad:pad + H, pad:pad + W]
    return np.ascontiguousarray(dx), dw.astype(w.dtype, copy=False), db.astype(w.dtype, copy=False)


def _taps(x, size, stride, H_out, W_out):
    """Each (di, dj) of the window, in row-major order, with the view x[:, :, i*stride + di, j*stride + dj]."""
    for di in range(size):
        for dj in range(size):
            rows = slice(di, di + stride * (H_out - 1) + 1, stride)
            cols = slice(dj, dj + stride * (W_out - 1) + 1, stride)
            yield (slice(None), slice(None), rows, cols)


def maxpool2d_forward(x, size=2, stride=None):
    """Max-pooling forward: the largest value of each size x size window.

    out[n, c, i, j] = max_{di, dj} x[n, c, i*stride + di, j*stride + dj]

    x (N, C, H, W) -> out (N, C, H', W'), H' = 1 + (H - size) // stride (stride None = size)
    """
    if stride is None:
        stride = size
    N, C, H, W = x.shape
    H_out, W_out = 1 + (H - size) // stride, 1 + (W - size) // stride
    # One elementwise maximum per tap over whole (N, C, H', W') planes: a reduction over
    # the tiny trailing window axes of a strided view is 10-50x slower in NumPy.
    out = None
    for tap in _taps(x, size, stride, H_out, W_out):
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
    # holds its maximum: a later tie finds it claimed already.
    unclaimed = np.ones(dout.shape, dtype=bool)
    dx = np.zeros(x.shape, dtype=x.dtype)
    for tap in _taps(x, size, stride, H_out, W_out):
        wins = unclaimed & (x[tap] == largest)
        dx[tap] += np.where(wins, dout, 0)
        unclaimed &= ~wins
    return dx
