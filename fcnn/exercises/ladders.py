"""The ladders of cases a learner's kernel climbs: from one image and one filter up to everything at once.

Shapes are tiny, so that even a pure-Python loop kernel is checked in well under a second, and
every case is built from a fixed seed, so a verdict is the same on every run.
"""

from dataclasses import dataclass
from typing import Callable

import numpy as np

from fcnn import layers, losses
from fcnn.gradcheck import numerical_gradient
from fcnn.kernels import loop


@dataclass(frozen=True)
class Case:
    """One call of the kernel under test.

    args: the positional arguments, in the case's dtype. expected: args (float64) -> the output
    to expect; None means the reference kernel's output. hint: what this case is the first to
    test, said when a failure matches no known mistake.
    """

    name: str
    args: tuple
    hint: str | None = None
    expected: Callable | None = None


def _random(rng, shape):
    return rng.uniform(-1.0, 1.0, size=shape)


def _as_float32(args):
    """The same arguments with every float64 array made float32 (integer labels stay as they are)."""
    return tuple(a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a
                 for a in args)


# --- conv2d -----------------------------------------------------------------------------------

# (name, N, C, F, H, W, KH, KW, stride, pad, hint)
CONV2D_GEOMETRIES = [
    ("one image, one channel, one 3x3 filter, stride 1, no padding", 1, 1, 1, 4, 4, 3, 3, 1, 0, None),
    ("two filters", 1, 1, 2, 4, 4, 3, 3, 1, 0,
     "This is the first case with two filters: each filter f has its own w[f] and b[f]."),
    ("two input channels", 1, 2, 2, 4, 4, 3, 3, 1, 0,
     "This is the first case with two input channels: every filter sums over all channels c."),
    ("a batch of two images", 2, 2, 2, 4, 4, 3, 3, 1, 0,
     "This is the first case with more than one image: loop over n as well."),
    ("a non-square 5x6 image", 2, 1, 2, 5, 6, 3, 3, 1, 0,
     "This is the first non-square image: H counts rows (axis 2), W counts columns (axis 3)."),
    ("stride 2", 1, 1, 1, 5, 5, 3, 3, 2, 0,
     "This is the first case with stride 2: window (i, j) starts at row i*stride, column j*stride."),
    ("stride 2 on a 6x6 image, last row and column left over", 1, 1, 1, 6, 6, 3, 3, 2, 0,
     "The window does not fit the last row and column: H' = 1 + (H + 2*pad - KH) // stride "
     "rounds down."),
    ("padding 1", 1, 1, 1, 4, 4, 3, 3, 1, 1,
     "This is the first case with padding: read from the zero-padded input xpad "
     "(H + 2*pad rows), and give back gradients of the shape of x."),
    ("a non-square 2x3 kernel", 1, 1, 1, 4, 5, 2, 3, 1, 0,
     "This is the first non-square kernel: ki runs over KH rows, kj over KW columns."),
    ("everything at once: batch, channels, 3x2 kernel, stride 2, padding 1",
     2, 2, 3, 6, 5, 3, 2, 2, 1, None),
]

FLOAT32_HINT = "float32 in must give float32 out: create arrays with dtype=x.dtype."
GRADCHECK_HINT = (
    "Your gradient matches the reference on every earlier case but not central differences of "
    "the forward pass here."
)


def conv2d_forward_cases():
    """Ladder for conv2d_forward(x, w, b, stride, pad)."""
    rng = np.random.default_rng(2001)
    cases = []
    for name, N, C, F, H, W, KH, KW, stride, pad, hint in CONV2D_GEOMETRIES:
        args = (_random(rng, (N, C, H, W)), _random(rng, (F, C, KH, KW)), _random(rng, F), stride, pad)
        cases.append(Case(name, args, hint))
    cases.append(Case("float32 in, float32 out", _as_float32(cases[-1].args), FLOAT32_HINT))
    return cases


def _conv2d_backward_args(rng, N, C, F, H, W, KH, KW, stride, pad):
    H_out = loop.output_size(H, KH, stride, pad)
    W_out = loop.output_size(W, KW, stride, pad)
    return (_random(rng, (N, F, H_out, W_out)), _random(rng, (N, C, H, W)),
            _random(rng, (F, C, KH, KW)), stride, pad)


def conv2d_gradients_by_finite_differences(dout, x, w, stride, pad):
    """(dx, dw, db) of L = sum(conv2d_forward(x, w, b) * dout), by central differences."""
    b = np.zeros(w.shape[0])

    def loss():
        return np.sum(loop.conv2d_forward(x, w, b, stride, pad) * dout)

    return numerical_gradient(loss, x), numerical_gradient(loss, w), numerical_gradient(loss, b)


def conv2d_backward_cases():
    """Ladder for conv2d_backward(dout, x, w, stride, pad), ending with finite differences."""
    rng = np.random.default_rng(2002)
    cases = [Case(name, _conv2d_backward_args(rng, *geometry), hint)
             for name, *geometry, hint in CONV2D_GEOMETRIES]
    cases.append(Case("float32 in, float32 out", _as_float32(cases[-1].args), FLOAT32_HINT))
    cases.append(Case("gradients against finite differences (float64)",
                      _conv2d_backward_args(rng, 2, 2, 2, 4, 4, 3, 2, 2, 1),
                      GRADCHECK_HINT, conv2d_gradients_by_finite_differences))
    return cases


# --- maxpool2d --------------------------------------------------------------------------------

# Every window of this 4x4 image has a tied maximum, each in a different place.
TIES = np.array([[1, 1, 0, 2],
                 [0, 1, 2, 2],
                 [3, 0, 5, 5],
                 [3, 3, 5, 5]], dtype=np.float64)


def _maxpool2d_inputs():
    """[(name, x, (size, stride) or () for the defaults, hint)], random values without ties first."""
    rng = np.random.default_rng(2003)
    overlapping = _random(rng, (1, 1, 7, 7))
    overlapping[0, 0, 2, 2] = 2.0  # the maximum of four overlapping windows
    return [
        ("one image, one channel, 4x4, 2x2 windows, stride 2", _random(rng, (1, 1, 4, 4)), (2, 2),
         None),
        ("a batch of two images with two channels", _random(rng, (2, 2, 4, 4)), (2, 2),
         "This is the first case with several images and channels: each (n, c) is pooled on its own."),
        ("a non-square 4x6 image", _random(rng, (1, 1, 4, 6)), (2, 2),
         "This is the first non-square image: H counts rows (axis 2), W counts columns (axis 3)."),
        ("3x3 windows, stride 3", _random(rng, (1, 1, 6, 6)), (3, 3), None),
        ("a 5x5 image: the last row and column are left over", _random(rng, (1, 1, 5, 5)), (2, 2),
         "The windows do not tile the image: H' = 1 + (H - size) // stride rounds down."),
        ("size and stride left to their defaults (2, and None means stride = size)",
         _random(rng, (1, 2, 4, 4)), (),
         "Called as maxpool2d(x) (or (dout, x)): size defaults to 2 and stride None means stride = size."),
        ("ties: equal values in every window", TIES[None, None].copy(), (2, 2),
         "This is the first case with ties: a window's gradient goes whole to its first maximum "
         "in row-major order."),
        ("overlapping windows (size 3, stride 2)", overlapping, (3, 2),
         "This is the first case with overlapping windows: an input can win several windows."),
        ("overlapping windows with ties (size 2, stride 1)",
         rng.integers(0, 3, size=(1, 1, 4, 4)).astype(np.float64), (2, 1), None),
        ("everything at once: batch, channels, 7x6 image, size 3, stride 2, ties",
         rng.integers(0, 4, size=(2, 3, 7, 6)).astype(np.float64), (3, 2), None),
    ]


def maxpool2d_forward_cases():
    """Ladder for maxpool2d_forward(x, size, stride)."""
    cases = [Case(name, (x, *window), hint) for name, x, window, hint in _maxpool2d_inputs()]
    cases.append(Case("float32 in, float32 out", _as_float32(cases[-1].args), FLOAT32_HINT))
    return cases


def maxpool2d_gradient_by_finite_differences(dout, x, size=2, stride=None):
    """dx of L = sum(maxpool2d_forward(x) * dout), by central differences (x must have no ties)."""
    return numerical_gradient(lambda: np.sum(loop.maxpool2d_forward(x, size, stride) * dout), x)


def maxpool2d_backward_cases():
    """Ladder for maxpool2d_backward(dout, x, size, stride), ending with finite differences."""
    rng = np.random.default_rng(2004)
    cases = []
    for name, x, window, hint in _maxpool2d_inputs():
        out_shape = loop.maxpool2d_forward(x, *window).shape
        cases.append(Case(name, (_random(rng, out_shape), x, *window), hint))
    cases.append(Case("float32 in, float32 out", _as_float32(cases[-1].args), FLOAT32_HINT))
    # Distinct values 0.01 apart: a step of 1e-6 never changes which input wins a window.
    x = (rng.permutation(2 * 2 * 5 * 5) * 0.01).reshape(2, 2, 5, 5)
    cases.append(Case("gradient against finite differences (float64)",
                      (_random(rng, (2, 2, 2, 2)), x, 3, 2), GRADCHECK_HINT,
                      maxpool2d_gradient_by_finite_differences))
    return cases


# --- relu -------------------------------------------------------------------------------------

def _relu_inputs(rng):
    with_zeros = _random(rng, (3, 4))
    with_zeros[0, 1] = with_zeros[1, 3] = with_zeros[2, 0] = 0.0
    return [
        ("a row of six values, shape (1, 6)", _random(rng, (1, 6)), None),
        ("activations of shape (2, 3, 4, 4)", _random(rng, (2, 3, 4, 4)),
         "This is the first 4-D input: relu works elementwise on any shape."),
        ("exact zeros in x", with_zeros, "This is the first case where x is exactly 0."),
    ]


def relu_forward_cases():
    """Ladder for relu_forward(x)."""
    cases = [Case(name, (x,), hint) for name, x, hint in _relu_inputs(np.random.default_rng(2005))]
    cases.append(Case("float32 in, float32 out", _as_float32(cases[1].args), FLOAT32_HINT))
    return cases


def relu_gradient_by_finite_differences(dout, x):
    """dx of L = sum(relu_forward(x) * dout), by central differences (x must stay away from 0)."""
    return numerical_gradient(lambda: np.sum(layers.relu_forward(x) * dout), x)


def relu_backward_cases():
    """Ladder for relu_backward(dout, x), ending with finite differences."""
    rng = np.random.default_rng(2006)
    cases = [Case(name, (_random(rng, x.shape), x), hint) for name, x, hint in _relu_inputs(rng)]
    cases.append(Case("float32 in, float32 out", _as_float32(cases[1].args), FLOAT32_HINT))
    x = _random(rng, (3, 4))
    x += np.where(x < 0, -0.1, 0.1)  # at least 0.1 from the kink at 0
    cases.append(Case("gradient against finite differences (float64)", (_random(rng, x.shape), x),
                      GRADCHECK_HINT, relu_gradient_by_finite_differences))
    return cases


# --- dense ------------------------------------------------------------------------------------

# (name, N, D, M, hint)
DENSE_SHAPES = [
    ("one sample, 4 inputs, 3 outputs", 1, 4, 3, None),
    ("a batch of 5 samples", 5, 4, 3, "This is the first case with more than one sample."),
]


def dense_forward_cases():
    """Ladder for dense_forward(x, w, b)."""
    rng = np.random.default_rng(2007)
    cases = [Case(name, (_random(rng, (N, D)), _random(rng, (D, M)), _random(rng, M)), hint)
             for name, N, D, M, hint in DENSE_SHAPES]
    cases.append(Case("float32 in, float32 out", _as_float32(cases[-1].args), FLOAT32_HINT))
    return cases


def dense_gradients_by_finite_differences(dout, x, w):
    """(dx, dw, db) of L = sum(dense_forward(x, w, b) * dout), by central differences."""
    b = np.zeros(w.shape[1])

    def loss():
        return np.sum(layers.dense_forward(x, w, b) * dout)

    return numerical_gradient(loss, x), numerical_gradient(loss, w), numerical_gradient(loss, b)


def dense_backward_cases():
    """Ladder for dense_backward(dout, x, w), ending with finite differences."""
    rng = np.random.default_rng(2008)
    cases = [Case(name, (_random(rng, (N, M)), _random(rng, (N, D)), _random(rng, (D, M))), hint)
             for name, N, D, M, hint in DENSE_SHAPES]
    cases.append(Case("float32 in, float32 out", _as_float32(cases[-1].args), FLOAT32_HINT))
    cases.append(Case("gradients against finite differences (float64)",
                      (_random(rng, (3, 2)), _random(rng, (3, 4)), _random(rng, (4, 2))),
                      GRADCHECK_HINT, dense_gradients_by_finite_differences))
    return cases


# --- softmax cross-entropy --------------------------------------------------------------------

def softmax_cross_entropy_by_finite_differences(logits, labels):
    """(loss, dlogits): the reference loss, and its gradient by central differences."""
    loss, _ = losses.softmax_cross_entropy(logits, labels)
    return loss, numerical_gradient(lambda: losses.softmax_cross_entropy(logits, labels)[0], logits)


def softmax_cross_entropy_cases():
    """Ladder for softmax_cross_entropy(logits, labels), ending with finite differences."""
    rng = np.random.default_rng(2009)
    batch = (3.0 * _random(rng, (4, 5)), np.array([1, 0, 4, 2]))
    cases = [
        Case("one sample, 3 classes", (_random(rng, (1, 3)), np.array([2])), None),
        Case("a batch of 4 samples, 5 classes", batch,
             "This is the first case with more than one sample: the loss is the mean over the batch."),
        Case("large logits (around 1000)", (1000.0 + 10.0 * _random(rng, (3, 4)), np.array([0, 3, 1])),
             "exp(1000) overflows: subtract each row's maximum before exp."),
        Case("float32 in, float32 out", _as_float32(batch), FLOAT32_HINT),
        Case("gradient against finite differences (float64)", (_random(rng, (3, 4)), np.array([3, 0, 1])),
             GRADCHECK_HINT, softmax_cross_entropy_by_finite_differences),
    ]
    return cases
