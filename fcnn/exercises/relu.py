"""The relu exercises: forward and backward, their ladder of cases and their known mistakes."""

import numpy as np

from fcnn import layers
from fcnn.exercises.exercise import (
    GRADCHECK_HINT, Case, Exercise, Mistake, finite_difference_gradients, random, with_float32_case,
)

# --- cases ------------------------------------------------------------------------------------

FIRST = "a row of six values, shape (1, 6)"
ZEROS_CASE = "exact zeros in x"
GRADCHECK_CASE = "gradient against finite differences (float64)"


def _inputs(rng):
    with_zeros = random(rng, (3, 4))
    with_zeros[0, 1] = with_zeros[1, 3] = with_zeros[2, 0] = 0.0
    return [
        (FIRST, random(rng, (1, 6)), None),
        ("activations of shape (2, 3, 4, 4)", random(rng, (2, 3, 4, 4)),
         "This is the first 4-D input: relu works elementwise on any shape."),
        (ZEROS_CASE, with_zeros, "This is the first case where x is exactly 0."),
    ]


def forward_cases():
    """Ladder for relu_forward(x)."""
    return with_float32_case([Case(name, (x,), hint) for name, x, hint in _inputs(np.random.default_rng(2005))],
                             like=1)


def gradient_by_finite_differences(dout, x):
    """dx of L = sum(relu_forward(x) * dout), by central differences (x must stay away from 0)."""
    return finite_difference_gradients(layers.relu_forward, dout, x)[0]


def backward_cases():
    """Ladder for relu_backward(dout, x), ending with finite differences."""
    rng = np.random.default_rng(2006)
    cases = with_float32_case([Case(name, (random(rng, x.shape), x), hint) for name, x, hint in _inputs(rng)], like=1)
    x = random(rng, (3, 4))
    x += np.where(x < 0, -0.1, 0.1)  # at least 0.1 from the kink at 0
    cases.append(Case(GRADCHECK_CASE, (random(rng, x.shape), x), GRADCHECK_HINT,
                      gradient_by_finite_differences))
    return cases


# --- known mistakes ---------------------------------------------------------------------------

FORWARD_MISTAKES = [
    Mistake("np.max(x, 0) is the largest value along axis 0; the elementwise max(x, 0) is np.maximum(x, 0).",
            lambda x: np.max(x, axis=0)),
    Mistake("out is x unchanged: negative values must become 0.", lambda x: x),
]

BACKWARD_MISTAKES = [
    Mistake("the gradient passes where x == 0 exactly; the convention here is x > 0, so dx = 0 where x is 0.",
            lambda dout, x: layers.relu_backward(dout, np.where(x == 0, 1.0, x))),
    Mistake("dx is dout * x; it should be dout where x > 0 and 0 elsewhere (the slope of relu is 0 or 1).",
            lambda dout, x: layers.relu_backward(dout * x, x)),
    Mistake("dx is the mask x > 0 alone; multiply it by dout.",
            lambda dout, x: layers.relu_backward(np.ones_like(dout), x)),
    Mistake("dx is dout everywhere; zero it where x <= 0.", lambda dout, x: dout),
]

# --- the exercises ----------------------------------------------------------------------------

EXERCISES = [
    Exercise("relu_forward", layers.relu_forward, ("out",), forward_cases, tuple(FORWARD_MISTAKES)),
    Exercise("relu_backward", layers.relu_backward, ("dx",), backward_cases, tuple(BACKWARD_MISTAKES)),
]
