"""The maxpool2d exercises: forward and backward, their ladder of cases and their known mistakes,
and the ladder and mistakes every pooling kernel shares (average pooling's build on them).

The tie rules that the reference cannot express (every maximum, a split, the last one) are
written out with NumPy windows below.
"""

import numpy as np

from fcnn.exercises.exercise import (
    GRADCHECK_HINT, Case, Exercise, Mistake, finite_difference_gradients, flip, random, with_float32_case,
)
from fcnn.kernels import loop

# --- cases, every pooling kernel's ------------------------------------------------------------

FIRST = "one image, one channel, 4x4, 2x2 windows, stride 2"
DEFAULTS_CASE = "size and stride left to their defaults (2, and None means stride = size)"
TIES_CASE = "ties: equal values in every window"
OVERLAPPING_CASE = "overlapping windows (size 3, stride 2)"
GRADCHECK_CASE = "gradient against finite differences (float64)"


def window_inputs(kernel, rng):
    """The first cases of every pooling ladder, `kernel` ("maxpool2d", "avgpool2d") named in
    their hints: [(name, x, (size, stride) or () for the defaults, hint)], simplest first."""
    return [
        (FIRST, random(rng, (1, 1, 4, 4)), (2, 2), None),
        ("a batch of two images with two channels", random(rng, (2, 2, 4, 4)), (2, 2),
         "This is the first case with several images and channels: each (n, c) is pooled on its own."),
        ("a non-square 4x6 image", random(rng, (1, 1, 4, 6)), (2, 2),
         "This is the first non-square image: H counts rows (axis 2), W counts columns (axis 3)."),
        ("3x3 windows, stride 3", random(rng, (1, 1, 6, 6)), (3, 3), None),
        ("a 5x5 image: the last row and column are left over", random(rng, (1, 1, 5, 5)), (2, 2),
         "The windows do not tile the image: H' = 1 + (H - size) // stride rounds down, and the "
         "left-over pixels get no gradient."),
        (DEFAULTS_CASE, random(rng, (1, 2, 4, 4)), (),
         f"Called as {kernel}(x) (or (dout, x)): size defaults to 2 and stride None means stride = size."),
    ]


def forward_ladder(inputs):
    """Ladder for a pooling forward(x, size, stride): one case per input of `inputs`
    (window_inputs' form), then the last in float32."""
    return with_float32_case([Case(name, (x, *window), hint) for name, x, window, hint in inputs])


def backward_ladder(inputs, forward, rng, gradcheck_x):
    """Ladder for a pooling backward(dout, x, size, stride): one case per input, the last in float32,
    then dx at gradcheck_x (2, 2, 5, 5), size 3, stride 2, against central differences of `forward`."""
    cases = [Case(name, (random(rng, forward(x, *window).shape), x, *window), hint)
             for name, x, window, hint in inputs]

    def gradient_by_finite_differences(dout, x, size=2, stride=None):
        """dx of L = sum(forward(x, size, stride) * dout), by central differences."""
        return finite_difference_gradients(lambda x: forward(x, size, stride), dout, x)[0]

    return [*with_float32_case(cases),
            Case(GRADCHECK_CASE, (random(rng, (2, 2, 2, 2)), gradcheck_x, 3, 2), GRADCHECK_HINT,
                 gradient_by_finite_differences)]


# Every window of this 4x4 image has a tied maximum, each in a different place.
TIES = np.array([[1, 1, 0, 2],
                 [0, 1, 2, 2],
                 [3, 0, 5, 5],
                 [3, 3, 5, 5]], dtype=np.float64)


def _inputs():
    """Max-pooling's inputs: window_inputs (random values, no ties), then ties and overlaps."""
    rng = np.random.default_rng(2003)
    overlapping = random(rng, (1, 1, 7, 7))
    overlapping[0, 0, 2, 2] = 2.0  # the maximum of four overlapping windows
    return window_inputs("maxpool2d", rng) + [
        (TIES_CASE, TIES[None, None].copy(), (2, 2),
         "This is the first case with ties: a window's gradient goes whole to its first maximum "
         "in row-major order."),
        (OVERLAPPING_CASE, overlapping, (3, 2),
         "This is the first case with overlapping windows: an input can win several windows."),
        ("overlapping windows with ties (size 2, stride 1)",
         rng.integers(0, 3, size=(1, 1, 4, 4)).astype(np.float64), (2, 1), None),
        ("everything at once: batch, channels, 7x6 image, size 3, stride 2, ties",
         rng.integers(0, 4, size=(2, 3, 7, 6)).astype(np.float64), (3, 2), None),
    ]


def forward_cases():
    """Ladder for maxpool2d_forward(x, size, stride)."""
    return forward_ladder(_inputs())


def backward_cases():
    """Ladder for maxpool2d_backward(dout, x, size, stride), ending with finite differences."""
    rng = np.random.default_rng(2004)
    # Distinct values 0.01 apart: a step of 1e-6 never changes which input wins a window.
    gradcheck_x = (rng.permutation(2 * 2 * 5 * 5) * 0.01).reshape(2, 2, 5, 5)
    return backward_ladder(_inputs(), loop.maxpool2d_forward, rng, gradcheck_x)


# --- known mistakes ---------------------------------------------------------------------------

def _stride(size, stride):
    return size if stride is None else stride


def spread(dout, x, size, stride, share, accumulate=True):
    """dx when every window hands its gradient to its inputs, weighted by share(the window's x values)
    (a scalar or the window's shape); = instead of += when not accumulate."""
    stride = _stride(size, stride)
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = (slice(None), slice(None), slice(i * stride, i * stride + size),
                      slice(j * stride, j * stride + size))
            gradient = share(x[window]) * dout[:, :, i:i + 1, j:j + 1]
            if accumulate:
                dx[window] += gradient
            else:
                dx[window] = gradient
    return dx


def _every_maximum(window):
    return (window == window.max(axis=(2, 3), keepdims=True)).astype(window.dtype)


def _maximum_share(window):
    tied = _every_maximum(window)
    return tied / tied.sum(axis=(2, 3), keepdims=True)


def _backward_overwriting(dout, x, size=2, stride=None):
    """dx when each window assigns (=) its gradient to its first maximum instead of adding (+=)."""
    stride = _stride(size, stride)
    N, C = x.shape[:2]
    n, c = np.indices((N, C))
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = x[:, :, i * stride:i * stride + size, j * stride:j * stride + size]
            di, dj = np.divmod(window.reshape(N, C, -1).argmax(axis=2), size)
            dx[n, c, i * stride + di, j * stride + dj] = dout[:, :, i, j]
    return dx


def _backward_last_maximum(dout, x, size=2, stride=None):
    """dx when ties go to the last maximum: the reference on the image rotated by 180 degrees."""
    stride = _stride(size, stride)
    if (x.shape[2] - size) % stride or (x.shape[3] - size) % stride:
        return None  # the rotated image's windows would not be the same windows
    return flip(loop.maxpool2d_backward(flip(dout), flip(x), size, stride))


STRIDE_NONE_HINT = "stride None means stride = size (windows side by side), not stride 1."
STRIDE_HINT = "stride is ignored: window (i, j) starts at row i*stride and column j*stride, not i*size."
SHAPE_RULE = "H' = 1 + (H - size) // stride and W' = 1 + (W - size) // stride"


def stride_mistakes(reference, arrays):
    """A pooling kernel's two stride mistakes, stride None taken as 1 and stride taken as size, made
    by reference(*args) (its first `arrays` arguments arrays, then size=2, stride=None)."""
    def with_stride(wrong_stride):
        def output(*args):
            window = args[arrays:]
            size = window[0] if window else 2
            stride = window[1] if len(window) > 1 else None
            wrong = wrong_stride(size, stride)
            return None if wrong is None else reference(*args[:arrays], size, wrong)
        return output

    return [Mistake(STRIDE_NONE_HINT, with_stride(lambda size, stride: 1 if stride is None else None)),
            Mistake(STRIDE_HINT, with_stride(lambda size, stride: size if stride not in (None, size) else None))]


FORWARD_MISTAKES = stride_mistakes(loop.maxpool2d_forward, 1)

BACKWARD_MISTAKES = [
    Mistake("the gradient went to every tied maximum of a window; on ties it goes whole to the "
            "first maximum in row-major order.",
            lambda dout, x, size=2, stride=None: spread(dout, x, size, stride, _every_maximum)),
    Mistake("the gradient was split among tied maxima; on ties it goes whole to the first maximum "
            "in row-major order.",
            lambda dout, x, size=2, stride=None: spread(dout, x, size, stride, _maximum_share)),
    Mistake("the gradient went to the last tied maximum; keep the first (replace the best so far "
            "only when value > largest, not >=).",
            _backward_last_maximum),
    Mistake("overlapping windows overwrite each other's gradient: add it (+=), so that an input "
            "that wins two windows receives both.",
            _backward_overwriting),
    *stride_mistakes(loop.maxpool2d_backward, 2),
]

# --- the exercises ----------------------------------------------------------------------------

EXERCISES = [
    Exercise("maxpool2d_forward", loop.maxpool2d_forward, ("out",), forward_cases, tuple(FORWARD_MISTAKES),
             shape_rule=SHAPE_RULE),
    Exercise("maxpool2d_backward", loop.maxpool2d_backward, ("dx",), backward_cases,
             tuple(BACKWARD_MISTAKES)),
]
