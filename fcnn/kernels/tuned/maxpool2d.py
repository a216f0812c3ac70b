"""maxpool2d in the tuned backend: the numba backend's compiled loops, with its 2x2 fast paths.

Tried and dropped: a 2x2 backward that writes every dx element once (the gradient or a zero,
by flags and selects) was slower than compiled_loop.py's zero-then-add loop on the presets' pools
(docs/performance.md has the figures).
"""

from fcnn.kernels import compiled_loop


def maxpool2d_forward(x, size=2, stride=None):
    """out[n, c, i, j] = max_{di, dj} x[n, c, i*stride + di, j*stride + dj] (see loop.py).

    x (N, C, H, W) -> out (N, C, H', W'), H' = 1 + (H - size) // stride (stride None = size).
    """
    stride = size if stride is None else stride
    if size == stride == 2:
        return compiled_loop.maxpool2d_forward_2x2(x)
    return compiled_loop.maxpool2d_forward(x, size, stride)


def maxpool2d_backward(dout, x, size=2, stride=None):
    """dx[n, c, i*stride + di*, j*stride + dj*] += dout[n, c, i, j], (di*, dj*) the window's first maximum (see loop.py).

    dout (N, C, H', W'), x (N, C, H, W) -> dx (N, C, H, W); overlapping windows accumulate.
    """
    stride = size if stride is None else stride
    if size == stride == 2:
        return compiled_loop.maxpool2d_backward_2x2(dout, x)
    return compiled_loop.maxpool2d_backward(dout, x, size, stride)
