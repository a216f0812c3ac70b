"""The batch norm, dropout and average-pooling exercises: forward and backward, their ladders of
cases and their known mistakes (the ones the books and the from-scratch projects make).

The mistakes are written out with NumPy over the channel axis; the references are loop.py's.
"""

import copy

import numpy as np

from fcnn.exercises.exercise import (
    AVERAGED_HINT, GRADCHECK_HINT, Case, Exercise, Mistake, finite_difference_gradients, random, replace,
    with_float32_case,
)
from fcnn.exercises.pool import (
    OVERLAPPING_CASE, SHAPE_RULE, backward_ladder, forward_ladder, spread, stride_mistakes, window_inputs,
)
from fcnn.kernels import loop

EPS = 1e-5  # batch norm's default eps, as the cases leave it

# --- batch norm: cases ------------------------------------------------------------------------

BATCHNORM_FIRST = "a batch of 4 samples with 3 features (N, C), gamma 1 and beta 0"
GAMMA_BETA_CASE = "gamma and beta of their own per feature"
SPATIAL_CASE = "activations (2, 3, 4, 4): spatial batch norm"
CONSTANT_CASE = "a channel whose values are all equal"
BATCHNORM_GRADCHECK_CASE = "gradients against finite differences (float64)"


def _batchnorm_inputs(rng):
    """[(name, x, gamma, beta, hint)], simplest first."""
    constant = random(rng, (3, 2, 2, 3))
    constant[:, 1] = 0.7
    return [
        (BATCHNORM_FIRST, random(rng, (4, 3)), np.ones(3), np.zeros(3), None),
        (GAMMA_BETA_CASE, random(rng, (5, 3)), random(rng, 3), random(rng, 3),
         "This is the first case where gamma and beta are not 1 and 0: out = gamma[c] * xhat + beta[c]."),
        (SPATIAL_CASE, random(rng, (2, 3, 4, 4)), random(rng, 3), random(rng, 3),
         "This is the first 4-D input: channel c's mean and variance are over n, h and w together, "
         "one pair per channel (axis 1), not one per position."),
        ("one image (1, 2, 3, 3)", random(rng, (1, 2, 3, 3)), random(rng, 2), random(rng, 2),
         "This is the first batch of one image: the statistics are over its 3x3 positions."),
        (CONSTANT_CASE, constant, random(rng, 2), random(rng, 2),
         "This is the first case with a constant channel: its variance is 0, and eps inside the "
         "square root keeps out = beta there."),
    ]


def batchnorm_forward_cases():
    """Ladder for batchnorm_forward(x, gamma, beta, eps)."""
    return with_float32_case([Case(name, (x, gamma, beta), hint)
                              for name, x, gamma, beta, hint in _batchnorm_inputs(np.random.default_rng(2009))],
                             like=2)


def batchnorm_gradients_by_finite_differences(dout, x, gamma):
    """(dx, dgamma, dbeta) of L = sum(batchnorm_forward(x, gamma, beta) * dout), by central differences."""
    return finite_difference_gradients(loop.batchnorm_forward, dout, x, gamma, np.zeros_like(gamma))


def batchnorm_backward_cases():
    """Ladder for batchnorm_backward(dout, x, gamma, eps), ending with finite differences."""
    rng = np.random.default_rng(2010)
    cases = with_float32_case([Case(name, (random(rng, x.shape), x, gamma), hint)
                               for name, x, gamma, _, hint in _batchnorm_inputs(rng)], like=2)
    cases.append(Case(BATCHNORM_GRADCHECK_CASE, (random(rng, (2, 2, 3, 3)), random(rng, (2, 2, 3, 3)),
                                                 random(rng, 2)),
                      GRADCHECK_HINT, batchnorm_gradients_by_finite_differences))
    return cases


# --- batch norm: known mistakes ---------------------------------------------------------------

def _axes(x):
    """Every axis of x but the channel's: (0,) for (N, C), (0, 2, 3) for (N, C, H, W)."""
    return (0, *range(2, x.ndim))


def _per_channel(values, x):
    """(C,) values shaped to broadcast along x's axis 1."""
    return values.reshape((1, -1) + (1,) * (x.ndim - 2))


def _normalised(x, axes, ddof=0, eps=EPS, eps_outside=False):
    """(x - mean) / sqrt(var + eps) with the statistics over `axes`; variants for the mistakes."""
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, ddof=ddof, keepdims=True)
    std = np.sqrt(var) + eps if eps_outside else np.sqrt(var + eps)
    return (x - mean) / std


def _forward_over(axes_of, **variant):
    """A batchnorm_forward whose statistics are over axes_of(x), with a _normalised variant."""
    def output(x, gamma, beta, eps=EPS):
        axes = axes_of(x)
        if axes is None:
            return None
        return _per_channel(gamma, x) * _normalised(x, axes, eps=eps, **variant) + _per_channel(beta, x)
    return output


def _spatial_only(axes):
    """axes of a 4-D x only (None for (N, C), where the mistake cannot show)."""
    return lambda x: axes if x.ndim == 4 else None


PER_POSITION_HINT = ("the statistics are per position (over the batch axis only, as a flattened "
                     "(N, C*H*W) batch norm computes them): spatial batch norm has one mean and one "
                     "variance per channel, over n, h and w together.")

BATCHNORM_FORWARD_MISTAKES = [
    Mistake(PER_POSITION_HINT, _forward_over(_spatial_only((0,)))),
    Mistake("the statistics are per image (over h and w only, instance norm): batch norm's are over "
            "the batch too, n, h and w together.", _forward_over(_spatial_only((2, 3)))),
    Mistake("the variance is the unbiased one (divided by M - 1): batch norm normalises by the "
            "biased variance, divided by the M = N*H*W values of the channel (np.var's default, ddof=0).",
            _forward_over(_axes, ddof=1)),
    Mistake("eps is outside the square root: divide by sqrt(var + eps), not sqrt(var) + eps.",
            _forward_over(_axes, eps_outside=True)),
    Mistake("eps is missing: divide by sqrt(var + eps).",
            lambda x, gamma, beta, eps=EPS: _forward_over(_axes)(x, gamma, beta, 0.0)),
    Mistake("x is divided by the variance: divide by the standard deviation, sqrt(var + eps).",
            lambda x, gamma, beta, eps=EPS: _per_channel(gamma, x) * (x - x.mean(_axes(x), keepdims=True))
            / (x.var(_axes(x), keepdims=True) + eps) + _per_channel(beta, x)),
]


def _backward_with(dx_of):
    """The reference outputs with dx = dx_of(dout, xhat, gamma / std, axes)."""
    def output(dout, x, gamma, eps=EPS):
        axes = _axes(x)
        xhat = _normalised(x, axes, eps=eps)
        scale = _per_channel(gamma, x) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
        return replace(loop.batchnorm_backward(dout, x, gamma, eps), 0, dx_of(dout, xhat, scale, axes))
    return output


def _parameter_gradients_over(axes_of, average=False):
    """The reference outputs with dgamma and dbeta summed (or averaged) over axes_of(x) only."""
    def output(dout, x, gamma, eps=EPS):
        axes = axes_of(x)
        if axes is None:
            return None
        reduce = np.mean if average else np.sum
        xhat = _normalised(x, _axes(x), eps=eps)
        dx, _, _ = loop.batchnorm_backward(dout, x, gamma, eps)
        return dx, reduce(dout * xhat, axis=axes), reduce(dout, axis=axes)
    return output


CONSTANTS_HINT = ("dx treats the mean and the variance as constants: both are functions of every x "
                  "of the channel, dx = gamma / sqrt(var + eps) * (dout - mean(dout) - xhat * "
                  "mean(dout * xhat)), the means over the channel's n, h, w.")
NOT_SUMMED_HINT = ("dgamma and dbeta must be summed over n, h and w, every axis but the channel's, "
                   "so that they have gamma's shape (C,).")

BATCHNORM_BACKWARD_MISTAKES = [
    Mistake(CONSTANTS_HINT, _backward_with(lambda dout, xhat, scale, axes: scale * dout)),
    Mistake("dx treats the variance as a constant: it depends on x too, which adds the term "
            "- xhat * mean(dout * xhat) inside the bracket.",
            _backward_with(lambda dout, xhat, scale, axes: scale * (dout - dout.mean(axes, keepdims=True)))),
    Mistake("dx treats the mean as a constant: it depends on x too, which adds the term "
            "- mean(dout) inside the bracket.",
            _backward_with(lambda dout, xhat, scale, axes:
                           scale * (dout - xhat * (dout * xhat).mean(axes, keepdims=True)))),
    Mistake(NOT_SUMMED_HINT + " They are summed over n only.", _parameter_gradients_over(_spatial_only((0,)))),
    Mistake(NOT_SUMMED_HINT + " They are summed over h and w only.",
            _parameter_gradients_over(_spatial_only((2, 3)))),
    Mistake(AVERAGED_HINT.format(name="dgamma or dbeta"), _parameter_gradients_over(_axes, average=True)),
    Mistake("dgamma multiplies dout by x; it is sum(dout * xhat), with xhat the normalised x.",
            lambda dout, x, gamma, eps=EPS:
                replace(loop.batchnorm_backward(dout, x, gamma, eps), 1, np.sum(dout * x, axis=_axes(x)))),
]

# --- dropout: cases ---------------------------------------------------------------------------

DROPOUT_FIRST = "a batch of 3 samples with 8 features, rate 0.25"
DROPOUT_RATE_CASE = "rate 0.6: more dropped than kept"
DROPOUT_GRADCHECK_CASE = "gradient against finite differences (float64)"


def _dropout_inputs(rng):
    """[(name, x, rate, seed, hint)]: each case's generator is made from its seed."""
    return [
        (DROPOUT_FIRST, random(rng, (3, 8)), 0.25, 11,
         "The draws must come from rng, the Generator handed in (rng.random(x.shape)), so that your "
         "mask is the one expected: no np.random.rand, no generator of your own."),
        ("activations (2, 3, 4, 4), rate 0.5", random(rng, (2, 3, 4, 4)), 0.5, 12,
         "This is the first 4-D input: dropout works elementwise on any shape."),
        (DROPOUT_RATE_CASE, random(rng, (4, 6)), 0.6, 13,
         "rate is the probability to drop a value: keep where the draw is >= rate."),
        ("rate 0: nothing dropped", random(rng, (2, 5)), 0.0, 14,
         "rate 0 keeps every value: mask is 1 everywhere and out is x."),
    ]


def dropout_forward_cases():
    """Ladder for dropout_forward(x, rate, rng); each case hands the kernel a Generator of its own."""
    return with_float32_case([Case(name, (x, rate, np.random.default_rng(seed)), hint)
                              for name, x, rate, seed, hint in _dropout_inputs(np.random.default_rng(2011))],
                             like=1)


def dropout_gradient_by_finite_differences(dout, mask):
    """dx of L = sum(dout * x * mask) at some x, by central differences: the forward with the mask fixed."""
    x = np.linspace(-1.0, 1.0, dout.size).reshape(dout.shape)
    return finite_difference_gradients(lambda x: x * mask, dout, x)[0]


NEW_MASK_HINT = ("dx = dout * mask, with the mask the forward drew and handed in: a mask drawn anew in "
                 "backward drops other values than the forward did, and the gradient no longer "
                 "matches the forward.")


def dropout_backward_cases():
    """Ladder for dropout_backward(dout, mask), ending with finite differences."""
    rng = np.random.default_rng(2012)
    cases = []
    for number, (name, x, rate, seed, hint) in enumerate(_dropout_inputs(rng)):
        _, mask = loop.dropout_forward(x, rate, np.random.default_rng(seed))
        # No known mistake explains a random dx: the first case's hint names the likely cause.
        cases.append(Case(name, (random(rng, x.shape), mask), NEW_MASK_HINT if number == 0 else hint))
    cases = with_float32_case(cases, like=1)
    _, mask = loop.dropout_forward(random(rng, (3, 4)), 0.5, np.random.default_rng(15))
    cases.append(Case(DROPOUT_GRADCHECK_CASE, (random(rng, (3, 4)), mask), GRADCHECK_HINT,
                      dropout_gradient_by_finite_differences))
    return cases


# --- dropout: known mistakes ------------------------------------------------------------------

def _dropout_with(mask_of):
    """A dropout_forward whose mask is mask_of(u, rate), u the draws the reference sees."""
    def output(x, rate, rng):
        # A copy: the case's generator must give the next candidate (and the next check) the same draws.
        uniform = copy.deepcopy(rng).random(x.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            mask = mask_of(uniform, rate).astype(x.dtype)
        return x * mask, mask
    return output


KEEP_HINT = ("rate is taken as the probability to keep (as JAX's stax does); here it is the probability "
             "to drop: keep where the draw is >= rate and divide by 1 - rate.")

DROPOUT_FORWARD_MISTAKES = [
    Mistake("the kept values are not scaled: inverted dropout divides them by 1 - rate, so that the "
            "expected output stays x and evaluation needs no change.",
            _dropout_with(lambda u, rate: (u >= rate) * 1.0)),
    Mistake("the kept values are scaled by 1 / rate; divide by 1 - rate, the probability to keep.",
            _dropout_with(lambda u, rate: (u >= rate) / rate)),
    Mistake(KEEP_HINT, _dropout_with(lambda u, rate: (u < rate) / rate)),
    Mistake(KEEP_HINT, _dropout_with(lambda u, rate: (u < rate) / (1 - rate))),
]

DROPOUT_BACKWARD_MISTAKES = [
    Mistake("dx is dout unchanged: multiply by the mask, so that dropped values get no gradient.",
            lambda dout, mask: dout),
    Mistake("dx is dout where the mask is not 0, unscaled: multiply by the mask itself, 1 / (1 - rate) "
            "where kept, as the forward did.", lambda dout, mask: dout * (mask != 0)),
    Mistake("dx is the mask alone; multiply it by dout.", lambda dout, mask: mask),
    Mistake("dx divides dout by the mask; the forward multiplied by it, so does its backward.",
            lambda dout, mask: np.divide(dout, mask, out=np.zeros_like(dout), where=mask != 0)),
]

# --- average pooling: cases (the pooling ladder of pool.py) ------------------------------------


def _avgpool_inputs():
    """pool.window_inputs, then overlapping windows: [(name, x, (size, stride) or (), hint)]."""
    rng = np.random.default_rng(2013)
    return window_inputs("avgpool2d", rng) + [
        (OVERLAPPING_CASE, random(rng, (1, 1, 7, 7)), (3, 2),
         "This is the first case with overlapping windows: an input in two windows gets a share of both."),
        ("everything at once: batch, channels, 7x6 image, size 3, stride 2", random(rng, (2, 3, 7, 6)), (3, 2),
         None),
    ]


def avgpool2d_forward_cases():
    """Ladder for avgpool2d_forward(x, size, stride)."""
    return forward_ladder(_avgpool_inputs())


def avgpool2d_backward_cases():
    """Ladder for avgpool2d_backward(dout, x, size, stride), ending with finite differences."""
    rng = np.random.default_rng(2014)
    return backward_ladder(_avgpool_inputs(), loop.avgpool2d_forward, rng, random(rng, (2, 2, 5, 5)))


# --- average pooling: known mistakes ----------------------------------------------------------

AVGPOOL_FORWARD_MISTAKES = [
    Mistake("out is each window's sum: divide it by the window's area, size * size.",
            lambda x, size=2, stride=None: loop.avgpool2d_forward(x, size, stride) * size * size),
    Mistake("the sum is divided by size; the window has size * size values.",
            lambda x, size=2, stride=None: loop.avgpool2d_forward(x, size, stride) * size),
    *stride_mistakes(loop.avgpool2d_forward, 1),
]


AVGPOOL_BACKWARD_MISTAKES = [
    Mistake("the gradient is not divided by the window's area: each of the size * size inputs of a "
            "window gets dout / (size * size), its share of the mean.",
            lambda dout, x, size=2, stride=None: spread(dout, x, size, stride, lambda window: 1.0)),
    Mistake("the gradient is divided by size; each window has size * size inputs, each gets "
            "dout / (size * size).",
            lambda dout, x, size=2, stride=None: spread(dout, x, size, stride, lambda window: 1.0 / size)),
    Mistake("overlapping windows overwrite each other's gradient: add it (+=), so that an input in "
            "two windows receives both shares.",
            lambda dout, x, size=2, stride=None:
                spread(dout, x, size, stride, lambda window: 1.0 / size**2, accumulate=False)),
    *stride_mistakes(loop.avgpool2d_backward, 2),
]

# --- the exercises ----------------------------------------------------------------------------

EXERCISES = [
    Exercise("batchnorm_forward", loop.batchnorm_forward, ("out",), batchnorm_forward_cases,
             tuple(BATCHNORM_FORWARD_MISTAKES),
             nonfinite_hint="eps belongs inside the square root, sqrt(var + eps): it keeps the division "
                            "finite when a channel's values are all equal."),
    Exercise("batchnorm_backward", loop.batchnorm_backward, ("dx", "dgamma", "dbeta"), batchnorm_backward_cases,
             tuple(BATCHNORM_BACKWARD_MISTAKES)),
    Exercise("dropout_forward", loop.dropout_forward, ("out", "mask"), dropout_forward_cases,
             tuple(DROPOUT_FORWARD_MISTAKES)),
    Exercise("dropout_backward", loop.dropout_backward, ("dx",), dropout_backward_cases,
             tuple(DROPOUT_BACKWARD_MISTAKES)),
    Exercise("avgpool2d_forward", loop.avgpool2d_forward, ("out",), avgpool2d_forward_cases,
             tuple(AVGPOOL_FORWARD_MISTAKES), shape_rule=SHAPE_RULE),
    Exercise("avgpool2d_backward", loop.avgpool2d_backward, ("dx",), avgpool2d_backward_cases,
             tuple(AVGPOOL_BACKWARD_MISTAKES)),
]
