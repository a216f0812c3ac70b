"""Reference kernels: conv2d and maxpool2d, forward and backward, as plain nested loops.

Every value is computed one scalar at a time, exactly as the formula in the docstring
reads. This is the code to learn from and to check your own kernels against; the
numba backend compiles these very functions.

Conventions: NCHW activations, weights (F, C, KH, KW), cross-correlation (no kernel flip),
zero padding. The output column `j` is the innermost loop of every nest, so each one reads
along a row of the image.
"""

import numpy as np

# `prange` marks a loop whose iterations are independent: each writes its own part of
# the output and nothing else. Here it is plain `range`; fcnn.kernels.compiled_loop compiles
# these functions with numba.prange in its place, which runs those loops in parallel.
prange = range


def output_size(size, kernel, stride, pad):
    """Output length along one axis: 1 + (size + 2*pad - kernel) // stride."""
    return 1 + (size + 2 * pad - kernel) // stride


def zero_pad(x, pad):
    """x (N, C, H, W) -> (N, C, H + 2*pad, W + 2*pad), zeros around the border."""
    N, C, H, W = x.shape
    xpad = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for y in range(H):
                for x_ in range(W):
                    xpad[n, c, y + pad, x_ + pad] = x[n, c, y, x_]
    return xpad


def conv2d_forward(x, w, b, stride=1, pad=0):
    """Convolution layer (cross-correlation), forward.

    out[n, f, i, j] = b[f] + sum_{c, ki, kj} w[f, c, ki, kj] * xpad[n, c, i*stride + ki, j*stride + kj]

    x (N, C, H, W), w (F, C, KH, KW), b (F,) -> out (N, F, H', W'),
    H' = 1 + (H + 2*pad - KH) // stride, W' = 1 + (W + 2*pad - KW) // stride.
    """
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    H_out = output_size(H, KH, stride, pad)
    W_out = output_size(W, KW, stride, pad)
    xpad = zero_pad(x, pad)
    out = np.empty((N, F, H_out, W_out), dtype=x.dtype)
    for n in prange(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    out[n, f, i, j] = b[f]
            # Each kernel tap (c, ki, kj) adds its weight times a shifted view of the input.
            for c in range(C):
                for ki in range(KH):
                    for kj in range(KW):
                        for i in range(H_out):
                            for j in range(W_out):
                                out[n, f, i, j] += (
                                    w[f, c, ki, kj] * xpad[n, c, i * stride + ki, j * stride + kj]
                                )
    return out


def conv2d_backward(dout, x, w, stride=1, pad=0):
    """Convolution layer, backward: gradients of the loss with respect to x, w and b.

    dw[f, c, ki, kj] = sum_{n, i, j} dout[n, f, i, j] * xpad[n, c, i*stride + ki, j*stride + kj]
    db[f]            = sum_{n, i, j} dout[n, f, i, j]
    dxpad[n, c, i*stride + ki, j*stride + kj] += w[f, c, ki, kj] * dout[n, f, i, j]

    Read the last line backwards and dx is dout correlated with the kernel rotated by 180
    degrees: output pixel (i, j) saw input pixel (i*stride + ki, ...) through tap (ki, kj),
    so the input pixel receives the gradient through that same tap, seen from the other side.

    dout (N, F, H', W'), x (N, C, H, W), w (F, C, KH, KW) -> dx (N, C, H, W), dw (F, C, KH, KW), db (F,)
    The two functions below compute these sums: dw and db first, then dx.
    """
    dw, db = conv2d_backward_weights(dout, x, w, stride, pad)
    dx = conv2d_backward_input(dout, x, w, stride, pad)
    return dx, dw, db


def conv2d_backward_weights(dout, x, w, stride=1, pad=0):
    """The parameters' part of conv2d_backward: dw and db, without dx.

    dw[f, c, ki, kj] = sum_{n, i, j} dout[n, f, i, j] * xpad[n, c, i*stride + ki, j*stride + kj]
    db[f]            = sum_{n, i, j} dout[n, f, i, j]

    All that the network's first layer needs: its input is the data, which has no gradient.
    dout (N, F, H', W'), x (N, C, H, W), w (F, C, KH, KW) -> dw (F, C, KH, KW), db (F,)
    """
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    H_out = dout.shape[2]
    W_out = dout.shape[3]
    xpad = zero_pad(x, pad)
    # Every image adds to the same dw[f], so the independent loop is f, not n. The sums
    # accumulate in the arrays themselves, in the dtype of w (a `total = 0.0` would
    # silently sum float32 inputs in float64 once compiled).
    dw = np.zeros(w.shape, dtype=w.dtype)
    db = np.zeros(F, dtype=w.dtype)
    for f in prange(F):
        for n in range(N):
            for i in range(H_out):
                for j in range(W_out):
                    db[f] += dout[n, f, i, j]
            # Row i outside the taps, for the compiled speed: one row of dout serves all KH * KW taps from cache.
            for c in range(C):
                for i in range(H_out):
                    for ki in range(KH):
                        for kj in range(KW):
                            for j in range(W_out):
                                dw[f, c, ki, kj] += dout[n, f, i, j] * xpad[n, c, i * stride + ki, j * stride + kj]
    return dw, db


def conv2d_backward_input(dout, x, w, stride=1, pad=0):
    """The input's part of conv2d_backward: dx (x is read for its shape only).

    dxpad[n, c, i*stride + ki, j*stride + kj] += w[f, c, ki, kj] * dout[n, f, i, j], dx = dxpad without its border

    dout (N, F, H', W'), x (N, C, H, W), w (F, C, KH, KW) -> dx (N, C, H, W)
    """
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    H_out = dout.shape[2]
    W_out = dout.shape[3]
    # Each image's gradient depends only on that image, so the independent loop is n.
    dxpad = np.empty((N, C, H + 2 * pad, W + 2 * pad), dtype=x.dtype)
    for n in prange(N):
        dxpad[n] = 0.0  # zeroed image by image, in the loop that fills it (see maxpool2d_backward)
        for f in range(F):
            for c in range(C):
                for ki in range(KH):
                    for kj in range(KW):
                        for i in range(H_out):
                            for j in range(W_out):
                                dxpad[n, c, i * stride + ki, j * stride + kj] += (
                                    w[f, c, ki, kj] * dout[n, f, i, j]
                                )
    dx = np.empty(x.shape, dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for y in range(H):
                for x_ in range(W):
                    dx[n, c, y, x_] = dxpad[n, c, y + pad, x_ + pad]
    return dx


def maxpool2d_forward(x, size=2, stride=None):
    """Max-pooling layer, forward: the largest value of each size x size window.

    out[n, c, i, j] = max_{di, dj} x[n, c, i*stride + di, j*stride + dj]   (NaN if the window holds a NaN)

    x (N, C, H, W) -> out (N, C, H', W'), H' = 1 + (H - size) // stride (stride None = size).
    """
    if stride is None:
        stride = size
    N, C, H, W = x.shape
    H_out = output_size(H, size, stride, 0)
    W_out = output_size(W, size, stride, 0)
    out = np.empty((N, C, H_out, W_out), dtype=x.dtype)
    for n in prange(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    largest = x[n, c, i * stride, j * stride]
                    for di in range(size):
                        for dj in range(size):
                            value = x[n, c, i * stride + di, j * stride + dj]
                            # A NaN is not <= any number, so it replaces one, and once the largest
                            # is NaN nothing replaces it: the max of a window holding a NaN is NaN.
                            if not (value <= largest or np.isnan(largest)):
                                largest = value
                    out[n, c, i, j] = largest
    return out


def maxpool2d_backward(dout, x, size=2, stride=None):
    """Max-pooling layer, backward: each window's gradient goes to the input that won it.

    dx[n, c, i*stride + di*, j*stride + dj*] += dout[n, c, i, j],
    where (di*, dj*) is the first maximum of the window in row-major order (ties: the
    first one takes the whole gradient; a NaN is the maximum of its window, and the first
    NaN takes the gradient). Overlapping windows (stride < size) accumulate.

    dout (N, C, H', W'), x (N, C, H, W) -> dx (N, C, H, W)
    """
    if stride is None:
        stride = size
    N, C, H, W = x.shape
    H_out = dout.shape[2]
    W_out = dout.shape[3]
    dx = np.empty(x.shape, dtype=x.dtype)
    for n in prange(N):
        # Zeroed here, not by np.zeros up front: compiled, the thread that fills an image clears it.
        dx[n] = 0.0
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    best_di = 0
                    best_dj = 0
                    largest = x[n, c, i * stride, j * stride]
                    for di in range(size):
                        for dj in range(size):
                            value = x[n, c, i * stride + di, j * stride + dj]
                            # Strictly greater: a later tie does not replace the first maximum.
                            # A NaN beats every number, and the first NaN is never replaced.
                            if not (value <= largest or np.isnan(largest)):
                                largest = value
                                best_di = di
                                best_dj = dj
                    dx[n, c, i * stride + best_di, j * stride + best_dj] += dout[n, c, i, j]
    return dx
