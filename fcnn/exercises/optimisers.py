"""The optimiser exercises: Adam's and RMSProp's update of one array, in CS231n's form, their
ladders of cases and their known mistakes (the references are fcnn.optim's, PyTorch's semantics)."""

import numpy as np

from fcnn import optim
from fcnn.exercises.exercise import Case, Exercise, Mistake, random, with_float32_case

# --- cases ------------------------------------------------------------------------------------

ADAM_FIRST = "the first step: t = 1, m and v still 0"
ADAM_LATER_CASE = "step t = 5, with the moments of the steps before"
ADAM_TINY_CASE = "tiny gradients, where eps matters"
ADAM_HYPERPARAMETERS_CASE = "beta1 0.8, beta2 0.9, eps 0.01 given"


def _moments(rng, shape):
    """A running mean of gradients and one of their squares (positive), as some steps leave them."""
    return 0.1 * random(rng, shape), 0.01 * rng.uniform(0.1, 1.0, size=shape)


def adam_cases():
    """Ladder for adam_update(w, dw, m, v, t, lr, beta1, beta2, eps)."""
    rng = np.random.default_rng(2015)
    shape = (3, 4)
    m, v = _moments(rng, shape)
    tiny_m, tiny_v = _moments(rng, shape)
    cases = [
        Case(ADAM_FIRST, (random(rng, shape), random(rng, shape), np.zeros(shape), np.zeros(shape), 1, 0.01)),
        Case(ADAM_LATER_CASE, (random(rng, shape), random(rng, shape), m, v, 5, 0.01),
             "This is the first case whose m and v are not 0: they carry the steps before, "
             "m = beta1 * m + (1 - beta1) * dw."),
        Case("step t = 1000: the bias corrections have faded",
             (random(rng, shape), random(rng, shape), m, v, 1000, 0.01)),
        Case(ADAM_TINY_CASE, (random(rng, shape), 1e-4 * random(rng, shape), 1e-4 * tiny_m, 1e-8 * tiny_v, 3, 0.01),
             "Tiny gradients: v_hat is near eps, so where eps goes decides the step; it is added to "
             "sqrt(v_hat), outside the square root."),
        Case(ADAM_HYPERPARAMETERS_CASE, (random(rng, shape), random(rng, shape), m, v, 2, 0.05, 0.8, 0.9, 0.01),
             "beta1, beta2 and eps are given here: use the arguments, not the defaults."),
    ]
    return with_float32_case(cases, like=1)


RMSPROP_FIRST = "the first step: s still 0"
RMSPROP_LATER_CASE = "a later step, with the running mean of the steps before"
RMSPROP_TINY_CASE = "tiny gradients, where eps matters"
RMSPROP_HYPERPARAMETERS_CASE = "alpha 0.9 and eps 0.01 given"


def rmsprop_cases():
    """Ladder for rmsprop_update(w, dw, s, lr, alpha, eps)."""
    rng = np.random.default_rng(2016)
    shape = (3, 4)
    _, s = _moments(rng, shape)
    cases = [
        Case(RMSPROP_FIRST, (random(rng, shape), random(rng, shape), np.zeros(shape), 0.01)),
        Case(RMSPROP_LATER_CASE, (random(rng, shape), random(rng, shape), s, 0.01),
             "This is the first case whose s is not 0: s = alpha * s + (1 - alpha) * dw**2 carries the steps before."),
        Case(RMSPROP_TINY_CASE, (random(rng, shape), 1e-4 * random(rng, shape), 1e-8 * s, 0.01),
             "Tiny gradients: s is near eps, so where eps goes decides the step; it is added to sqrt(s), "
             "outside the square root."),
        Case(RMSPROP_HYPERPARAMETERS_CASE, (random(rng, shape), random(rng, shape), s, 0.05, 0.9, 0.01),
             "alpha and eps are given here: use the arguments, not the defaults."),
    ]
    return with_float32_case(cases, like=1)


# --- known mistakes ---------------------------------------------------------------------------

def _adam(w, dw, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, corrected_at=None, eps_inside=False,
          reset=False, return_corrected=False):
    """adam_update with the mistakes' variants: bias corrections at step corrected_at(t) (None: none)."""
    if reset:
        m, v = np.zeros_like(m), np.zeros_like(v)
    m = beta1 * m + (1 - beta1) * dw
    v = beta2 * v + (1 - beta2) * dw * dw
    if corrected_at is None:
        m_hat, v_hat = m, v
    else:
        step = corrected_at(t)
        m_hat, v_hat = m / (1 - beta1**step), v / (1 - beta2**step)
    root = np.sqrt(v_hat + eps) if eps_inside else np.sqrt(v_hat) + eps
    w = w - lr * m_hat / root
    return (w, m_hat, v_hat) if return_corrected else (w, m, v)


def _adam_with(**variant):
    return lambda *args: _adam(*args, **{"corrected_at": lambda t: t, **variant})


T_FROM_ONE_HINT = ("t is this step's number, counted from 1 (the first step is t = 1): the bias "
                   "corrections are 1 - beta1**t and 1 - beta2**t with t as given.")

ADAM_MISTAKES = [
    Mistake("the bias correction is missing: m_hat = m / (1 - beta1**t), v_hat = v / (1 - beta2**t) "
            "undo the moments' start at 0.", _adam_with(corrected_at=None)),
    Mistake(T_FROM_ONE_HINT, _adam_with(corrected_at=lambda t: t + 1)),
    Mistake(T_FROM_ONE_HINT, _adam_with(corrected_at=lambda t: t - 1)),
    Mistake("eps is inside the square root: w -= lr * m_hat / (sqrt(v_hat) + eps), as PyTorch computes it.",
            _adam_with(eps_inside=True)),
    Mistake("the moments start from 0 at every step: m and v carry the steps before, "
            "m = beta1 * m + (1 - beta1) * dw with the m handed in.", _adam_with(reset=True)),
    Mistake("the bias-corrected m_hat and v_hat are returned as the new moments: the correction is "
            "for this step's update only; return m and v themselves.", _adam_with(return_corrected=True)),
]


def _rmsprop(w, dw, s, lr, alpha=0.99, eps=1e-8, eps_inside=False, reset=False, swapped=False, root=True):
    """rmsprop_update with the mistakes' variants."""
    if reset:
        s = np.zeros_like(s)
    s = (1 - alpha) * s + alpha * dw * dw if swapped else alpha * s + (1 - alpha) * dw * dw
    scale = np.sqrt(s + eps) if eps_inside else (np.sqrt(s) if root else s) + eps
    return w - lr * dw / scale, s


def _rmsprop_with(**variant):
    return lambda *args: _rmsprop(*args, **variant)


RMSPROP_MISTAKES = [
    Mistake("eps is inside the square root: w -= lr * dw / (sqrt(s) + eps), as PyTorch computes it.",
            _rmsprop_with(eps_inside=True)),
    Mistake("s starts from 0 at every step: it is a running mean, s = alpha * s + (1 - alpha) * dw**2 "
            "with the s handed in.", _rmsprop_with(reset=True)),
    Mistake("alpha and 1 - alpha are swapped: s = alpha * s + (1 - alpha) * dw**2 keeps most of the old s.",
            _rmsprop_with(swapped=True)),
    Mistake("dw is divided by s; divide it by the root mean square, sqrt(s) + eps.", _rmsprop_with(root=False)),
]

# --- the exercises ----------------------------------------------------------------------------

NONFINITE_HINT = "a division by 0: t starts at 1 (1 - beta**0 is 0), and eps keeps sqrt(v_hat) + eps above 0."

EXERCISES = [
    Exercise("adam_update", optim.adam_update, ("w", "m", "v"), adam_cases, tuple(ADAM_MISTAKES),
             nonfinite_hint=NONFINITE_HINT),
    Exercise("rmsprop_update", optim.rmsprop_update, ("w", "s"), rmsprop_cases, tuple(RMSPROP_MISTAKES)),
]
