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


# ---- Batch norm, dropout and average pooling -------------------------------------------------
# Batch norm's kernels read x (N, C) or (N, C, H, W) through `per_channel`, as (N, C, S): each
# image's values of channel c along one axis s, so one loop nest serves dense and conv layers.


def per_channel(x):
    """x (N, C) or (N, C, H, W) -> the same numbers as (N, C, S), S = H*W (S = 1 for (N, C))."""
    N, C = x.shape[0], x.shape[1]
    return x.reshape((N, C, x.size // (N * C)))


def batchnorm_statistics(x):
    """Per-channel mean and biased variance of a batch, over every axis but the channel's (axis 1).

    mean[c] = 1/M sum_{n, s} x[n, c, s],  var[c] = 1/M sum_{n, s} (x[n, c, s] - mean[c])**2,  M = N*S

    x (N, C) or (N, C, H, W) -> mean (C,), var (C,). Biased: divided by M, not M - 1, as batch
    norm normalises (a running variance for evaluation wants var * M / (M - 1)).
    """
    xs = per_channel(x)
    N, C, S = xs.shape
    M = N * S
    # The sums accumulate in the arrays, in x's dtype (see conv2d_backward_weights).
    mean = np.zeros(C, dtype=x.dtype)
    var = np.zeros(C, dtype=x.dtype)
    for c in prange(C):
        for n in range(N):
            for s in range(S):
                mean[c] += xs[n, c, s]
        mean[c] /= M
        for n in range(N):
            for s in range(S):
                var[c] += (xs[n, c, s] - mean[c]) ** 2
        var[c] /= M
    return mean, var


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    """Batch norm, training mode: each channel normalised by its batch statistics, then scaled and shifted.

    xhat[n, c, s] = (x[n, c, s] - mean[c]) / sqrt(var[c] + eps),  out[n, c, s] = gamma[c] * xhat[n, c, s] + beta[c]
    mean, var = batchnorm_statistics(x) (biased variance), s every position of an image.

    x (N, C) or (N, C, H, W), gamma (C,), beta (C,) -> out (shape of x)
    """
    mean, var = batchnorm_statistics(x)
    xs = per_channel(x)
    N, C, S = xs.shape
    out = np.empty(xs.shape, dtype=x.dtype)
    for c in prange(C):
        inverse_std = 1 / np.sqrt(var[c] + eps)
        for n in range(N):
            for s in range(S):
                xhat = (xs[n, c, s] - mean[c]) * inverse_std
                out[n, c, s] = gamma[c] * xhat + beta[c]
    return out.reshape(x.shape)


def batchnorm_backward(dout, x, gamma, eps=1e-5):
    """Batch norm, training mode, backward: gradients of the loss with respect to x, gamma and beta.

    dbeta[c]  = sum_{n, s} dout[n, c, s]
    dgamma[c] = sum_{n, s} dout[n, c, s] * xhat[n, c, s]
    dx[n, c, s] = gamma[c] / sqrt(var[c] + eps) * (dout[n, c, s] - dbeta[c] / M - xhat[n, c, s] * dgamma[c] / M)

    The mean and variance are functions of every x of the channel, not constants: the two
    means, dbeta / M and dgamma / M (M = N*S values per channel), are their share of the gradient.

    dout (shape of x), x (N, C) or (N, C, H, W), gamma (C,) -> dx (shape of x), dgamma (C,), dbeta (C,)
    """
    mean, var = batchnorm_statistics(x)
    xs = per_channel(x)
    douts = per_channel(dout)
    N, C, S = xs.shape
    M = N * S
    dx = np.empty(xs.shape, dtype=x.dtype)
    dgamma = np.zeros(C, dtype=x.dtype)
    dbeta = np.zeros(C, dtype=x.dtype)
    for c in prange(C):
        inverse_std = 1 / np.sqrt(var[c] + eps)
        # One sum per loop nest: compiled, each is vectorised, where two sums in one loop are not.
        for n in range(N):
            for s in range(S):
                dbeta[c] += douts[n, c, s]
        # xhat's common factor inverse_std is taken out of the sum, which so stays in x's dtype
        # (compiled, a float64 factor would make it a float64 sum rounded every step, not vectorised).
        for n in range(N):
            for s in range(S):
                dgamma[c] += douts[n, c, s] * (xs[n, c, s] - mean[c])
        dgamma[c] *= inverse_std
        mean_dout = dbeta[c] / M
        mean_dout_xhat = dgamma[c] / M
        for n in range(N):
            for s in range(S):
                xhat = (xs[n, c, s] - mean[c]) * inverse_std
                dx[n, c, s] = gamma[c] * inverse_std * (douts[n, c, s] - mean_dout - xhat * mean_dout_xhat)
    return dx.reshape(x.shape), dgamma, dbeta


def dropout_forward(x, rate, rng):
    """Inverted dropout, training mode: each value kept with probability 1 - rate, scaled by 1 / (1 - rate).

    Scaled so that each output's expected value is x: evaluation then uses x as it is.

    mask[k] = (u[k] >= rate) / (1 - rate), u = rng.random(x.shape), uniform in [0, 1);  out[k] = x[k] * mask[k]

    x (any shape), rate in [0, 1), rng a numpy.random.Generator -> out, mask (shape and dtype of x).
    The randomness comes only from rng; dropout_forward_given_draws does the arithmetic.
    """
    return dropout_forward_given_draws(x, rng.random(x.shape), rate)


def dropout_forward_given_draws(x, uniform, rate):
    """dropout_forward with its uniform draws u given: mask[k] = (u[k] >= rate) / (1 - rate), out[k] = x[k] * mask[k].

    x (any shape), uniform (shape of x, float64 in [0, 1)), rate in [0, 1) -> out, mask (shape and dtype of x)
    """
    x_flat = x.ravel()
    u_flat = uniform.ravel()
    out = np.empty(x.size, dtype=x.dtype)
    mask = np.empty(x.size, dtype=x.dtype)
    for k in prange(x.size):
        if u_flat[k] >= rate:
            mask[k] = 1 / (1 - rate)
        else:
            mask[k] = 0
        out[k] = x_flat[k] * mask[k]
    return out.reshape(x.shape), mask.reshape(x.shape)


def dropout_backward(dout, mask):
    """Dropout backward: the forward's own mask, not a new one, scales the gradient.

    dx[k] = dout[k] * mask[k]

    dout (any shape), mask (shape of dout, from dropout_forward) -> dx (shape of dout)
    """
    dout_flat = dout.ravel()
    mask_flat = mask.ravel()
    dx = np.empty(dout.size, dtype=dout.dtype)
    for k in prange(dout.size):
        dx[k] = dout_flat[k] * mask_flat[k]
    return dx.reshape(dout.shape)


def avgpool2d_forward(x, size=2, stride=None):
    """Average-pooling layer, forward: the mean of each size x size window.

    out[n, c, i, j] = 1/size**2 sum_{di, dj} x[n, c, i*stride + di, j*stride + dj]

    x (N, C, H, W) -> out (N, C, H', W'), H' = 1 + (H - size) // stride (stride None = size).
    """
    if stride is None:
        stride = size
    N, C, H, W = x.shape
    H_out = output_size(H, size, stride, 0)
    W_out = output_size(W, size, stride, 0)
    # The sum accumulates in out itself, in x's dtype, and is divided once at the end.
    out = np.zeros((N, C, H_out, W_out), dtype=x.dtype)
    for n in prange(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    for di in range(size):
                        for dj in range(size):
                            out[n, c, i, j] += x[n, c, i * stride + di, j * stride + dj]
                    out[n, c, i, j] /= size * size
    return out


def avgpool2d_backward(dout, x, size=2, stride=None):
    """Average-pooling layer, backward: each window's gradient shared equally by its size**2 inputs.

    dx[n, c, i*stride + di, j*stride + dj] += dout[n, c, i, j] / size**2, for every di, dj < size;
    overlapping windows (stride < size) accumulate, pixels in no window get 0.

    dout (N, C, H', W'), x (N, C, H, W) (read for its shape) -> dx (N, C, H, W)
    """
    if stride is None:
        stride = size
    N, C, H, W = x.shape
    H_out = dout.shape[2]
    W_out = dout.shape[3]
    dx = np.empty(x.shape, dtype=x.dtype)
    for n in prange(N):
        dx[n] = 0.0  # zeroed image by image, in the loop that fills it (see maxpool2d_backward)
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    share = dout[n, c, i, j] / (size * size)
                    for di in range(size):
                        for dj in range(size):
                            dx[n, c, i * stride + di, j * stride + dj] += share
    return dx


# ---- Optimisers: the update of one parameter array -------------------------------------------
# Each value is updated on its own, in one pass over the arrays flattened; the results are new
# arrays, nothing is updated in place. Each scalar meets the values rounded to their dtype,
# `real(lr)`, as NumPy rounds a Python float that meets a float32 array (NEP 50); a scalar made
# of others, 1 - beta1, is computed first and rounded once, as NumPy does. Compiled, a float64
# scalar would lift the float32 arithmetic to float64, and the backends would differ in the last bit.


def adam_update(w, dw, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    """One Adam step on one array (Kingma & Ba 2015), as torch.optim.Adam computes it.

    m_new[k] = beta1 * m[k] + (1 - beta1) * dw[k]          the gradients' running mean
    v_new[k] = beta2 * v[k] + (1 - beta2) * dw[k] * dw[k]  their squares' running mean
    w_new[k] = w[k] - lr * m_hat / (sqrt(v_hat) + eps),  m_hat = m_new[k] / (1 - beta1**t),
                                                          v_hat = v_new[k] / (1 - beta2**t)

    t is this step's number, 1 on the first: m and v start at 0, and the bias corrections undo
    that start (at t = 1, m_hat = dw exactly). eps is outside the square root.
    w, dw, m, v (any shape, the same) -> (w_new, m_new, v_new) (shape and dtype of w)
    """
    real = w.dtype.type
    # t as a float: compiled, beta1**t with an integer t is a chain of multiplications, which
    # rounds otherwise than the pow() that Python and NumPy take.
    correction1 = real(1 - beta1 ** float(t))
    correction2 = real(1 - beta2 ** float(t))
    shape = w.shape
    w, dw, m, v = w.ravel(), dw.ravel(), m.ravel(), v.ravel()
    new_w = np.empty(w.size, dtype=w.dtype)
    new_m = np.empty(w.size, dtype=w.dtype)
    new_v = np.empty(w.size, dtype=w.dtype)
    for k in range(w.size):
        new_m[k] = real(beta1) * m[k] + real(1 - beta1) * dw[k]
        new_v[k] = real(beta2) * v[k] + real(1 - beta2) * dw[k] * dw[k]
        m_hat = new_m[k] / correction1
        v_hat = new_v[k] / correction2
        new_w[k] = w[k] - real(lr) * m_hat / (np.sqrt(v_hat) + real(eps))
    return new_w.reshape(shape), new_m.reshape(shape), new_v.reshape(shape)


def rmsprop_update(w, dw, s, lr, alpha=0.99, eps=1e-8):
    """One RMSProp step on one array (Hinton's lecture 6e), as torch.optim.RMSprop computes it
    (not centered, no momentum).

    s_new[k] = alpha * s[k] + (1 - alpha) * dw[k] * dw[k]   the squared gradients' running mean
    w_new[k] = w[k] - lr * dw[k] / (sqrt(s_new[k]) + eps)    eps outside the square root

    w, dw, s (any shape, the same; s starts at 0) -> (w_new, s_new) (shape and dtype of w)
    """
    real = w.dtype.type
    shape = w.shape
    w, dw, s = w.ravel(), dw.ravel(), s.ravel()
    new_w = np.empty(w.size, dtype=w.dtype)
    new_s = np.empty(w.size, dtype=w.dtype)
    for k in range(w.size):
        new_s[k] = real(alpha) * s[k] + real(1 - alpha) * dw[k] * dw[k]
        new_w[k] = w[k] - real(lr) * dw[k] / (np.sqrt(new_s[k]) + real(eps))
    return new_w.reshape(shape), new_s.reshape(shape)
