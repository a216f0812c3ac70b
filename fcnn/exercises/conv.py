"""The conv2d exercises: forward and backward, their ladder of cases and their known mistakes.

Shapes are tiny, so that even a pure-Python loop kernel is checked in well under a second, and
every case is built from a fixed seed, so a verdict is the same on every run.
"""

import numpy as np

from fcnn.exercises.exercise import (
    AVERAGED_HINT, GRADCHECK_HINT, Case, Exercise, Mistake, bias_gradient_mistakes, finite_difference_gradients,
    flip, random, replace, square, transpose, with_float32_case,
)
from fcnn.kernels import loop

# --- cases ------------------------------------------------------------------------------------

FIRST = "one image, one channel, one 3x3 filter, stride 1, no padding"
GRADCHECK_CASE = "gradients against finite differences (float64)"

# (name, N, C, F, H, W, KH, KW, stride, pad, hint)
GEOMETRIES = [
    (FIRST, 1, 1, 1, 4, 4, 3, 3, 1, 0, None),
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


def forward_cases():
    """Ladder for conv2d_forward(x, w, b, stride, pad)."""
    rng = np.random.default_rng(2001)
    cases = []
    for name, N, C, F, H, W, KH, KW, stride, pad, hint in GEOMETRIES:
        args = (random(rng, (N, C, H, W)), random(rng, (F, C, KH, KW)), random(rng, F), stride, pad)
        cases.append(Case(name, args, hint))
    return with_float32_case(cases)


def _backward_args(rng, N, C, F, H, W, KH, KW, stride, pad):
    H_out = loop.output_size(H, KH, stride, pad)
    W_out = loop.output_size(W, KW, stride, pad)
    return (random(rng, (N, F, H_out, W_out)), random(rng, (N, C, H, W)),
            random(rng, (F, C, KH, KW)), stride, pad)


def gradients_by_finite_differences(dout, x, w, stride, pad):
    """(dx, dw, db) of L = sum(conv2d_forward(x, w, b) * dout), by central differences."""
    return finite_difference_gradients(lambda x, w, b: loop.conv2d_forward(x, w, b, stride, pad), dout,
                                       x, w, np.zeros(w.shape[0]))


def backward_cases():
    """Ladder for conv2d_backward(dout, x, w, stride, pad), ending with finite differences."""
    rng = np.random.default_rng(2002)
    cases = with_float32_case([Case(name, _backward_args(rng, *geometry), hint)
                               for name, *geometry, hint in GEOMETRIES])
    cases.append(Case(GRADCHECK_CASE, _backward_args(rng, 2, 2, 2, 4, 4, 3, 2, 2, 1),
                      GRADCHECK_HINT, gradients_by_finite_differences))
    return cases


# --- known mistakes ---------------------------------------------------------------------------

STRIDE_HINT = "stride is ignored: window (i, j) starts at row i*stride and column j*stride."
SHAPE_RULE = "H' = 1 + (H + 2*pad - KH) // stride and W' = 1 + (W + 2*pad - KW) // stride"


def _forward_stride_ignored_cropped(x, w, b, stride, pad):
    """What a forward gives that sizes its output for the stride but steps its windows by 1."""
    if stride == 1:
        return None
    expected = loop.conv2d_forward(x, w, b, stride, pad)
    return loop.conv2d_forward(x, w, b, 1, pad)[:, :, :expected.shape[2], :expected.shape[3]]


FORWARD_MISTAKES = [
    Mistake("out is a true convolution (kernel rotated by 180 degrees); this layer is a "
            "cross-correlation: w[f, c, ki, kj] multiplies xpad[n, c, i*stride + ki, j*stride + kj], no flip.",
            lambda x, w, b, stride, pad: loop.conv2d_forward(x, flip(w), b, stride, pad)),
    Mistake("the kernel is transposed: ki (rows, KH) must pair with i*stride + ki, kj (columns, KW) "
            "with j*stride + kj.",
            lambda x, w, b, stride, pad:
                loop.conv2d_forward(x, transpose(w), b, stride, pad) if square(w) else None),
    Mistake("padding is forgotten: pad x with `pad` zeros on every side, then slide the kernel over it.",
            lambda x, w, b, stride, pad: loop.conv2d_forward(x, w, b, stride, 0) if pad else None),
    Mistake(STRIDE_HINT,
            lambda x, w, b, stride, pad: loop.conv2d_forward(x, w, b, 1, pad) if stride != 1 else None),
    Mistake(STRIDE_HINT, _forward_stride_ignored_cropped),
    Mistake("the bias is missing: out[n, f, i, j] starts from b[f].",
            lambda x, w, b, stride, pad: loop.conv2d_forward(x, w, np.zeros_like(b), stride, pad)),
]


def _backward_stride_ignored(dout, x, w, stride, pad):
    """What a backward that steps windows by 1 gives: the stride-1 reference with dout in its top-left."""
    if stride == 1:
        return None
    N, F = dout.shape[:2]
    H1 = loop.output_size(x.shape[2], w.shape[2], 1, pad)
    W1 = loop.output_size(x.shape[3], w.shape[3], 1, pad)
    dout_stride1 = np.zeros((N, F, H1, W1))
    dout_stride1[:, :, :dout.shape[2], :dout.shape[3]] = dout
    return loop.conv2d_backward(dout_stride1, x, w, 1, pad)


def _backward_padded_dx(dout, x, w, stride, pad):
    """What a backward gives that returns the gradient of the padded input, border and all."""
    if pad == 0:
        return None
    return replace(loop.conv2d_backward(dout, x, w, stride, pad), 0,
                   loop.conv2d_backward(dout, loop.zero_pad(x, pad), w, stride, 0)[0])


def _dw_averaged(dout, x, w, stride, pad):
    """What a backward gives that divides dw by the batch size."""
    dx, dw, db = loop.conv2d_backward(dout, x, w, stride, pad)
    return dx, dw / dout.shape[0], db


def _backward_with_kernel(transform):
    """What a backward gives whose dx saw the kernel as transform(w) (None: not applicable)."""
    def output(dout, x, w, stride, pad):
        w_seen = transform(w)
        if w_seen is None:
            return None
        return replace(loop.conv2d_backward(dout, x, w, stride, pad), 0,
                       loop.conv2d_backward(dout, x, w_seen, stride, pad)[0])
    return output


def _backward_with_dw(transform):
    """What a backward gives whose dw is transform(the right dw) (None: not applicable)."""
    def output(dout, x, w, stride, pad):
        dx, dw, db = loop.conv2d_backward(dout, x, w, stride, pad)
        dw_given = transform(dw)
        return None if dw_given is None else (dx, dw_given, db)
    return output


BACKWARD_MISTAKES = [
    Mistake("dw is the right gradient with its KH and KW axes swapped: you stored dw[f, c, kj, ki] where "
            "dw[f, c, ki, kj] belongs (or read x with the row and column offsets exchanged). "
            "Row offset ki goes with i*stride + ki, column offset kj with j*stride + kj.",
            _backward_with_dw(lambda dw: transpose(dw) if square(dw) else None)),
    Mistake("dw is the right gradient rotated by 180 degrees: dw needs no flip, "
            "dw[f, c, ki, kj] = sum dout[n, f, i, j] * xpad[n, c, i*stride + ki, j*stride + kj].",
            _backward_with_dw(flip)),
    Mistake(AVERAGED_HINT.format(name="dw"), _dw_averaged),
    Mistake("dx used the kernel rotated by 180 degrees once too often: in the scatter form "
            "dxpad[n, c, i*stride + ki, j*stride + kj] += w[f, c, ki, kj] * dout[n, f, i, j] "
            "the rotation is already built in.",
            _backward_with_kernel(flip)),
    Mistake("dx used the kernel transposed (KH and KW swapped): ki pairs with rows, kj with columns.",
            _backward_with_kernel(lambda w: transpose(w) if square(w) else None)),
    Mistake("dx has the shape of the padded input: crop the border off, "
            "dx = dxpad[:, :, pad:pad + H, pad:pad + W].",
            _backward_padded_dx),
    Mistake(STRIDE_HINT, _backward_stride_ignored),
    *bias_gradient_mistakes(loop.conv2d_backward, 2, "db[f] = sum_{n, i, j} dout[n, f, i, j]", "(F,)"),
]

# --- the exercises ----------------------------------------------------------------------------

EXERCISES = [
    Exercise("conv2d_forward", loop.conv2d_forward, ("out",), forward_cases, tuple(FORWARD_MISTAKES),
             shape_rule=SHAPE_RULE),
    Exercise("conv2d_backward", loop.conv2d_backward, ("dx", "dw", "db"), backward_cases,
             tuple(BACKWARD_MISTAKES)),
]
