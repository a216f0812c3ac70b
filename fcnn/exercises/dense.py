"""The dense (fully connected) exercises: forward and backward, their ladder of cases and their known mistakes."""

import numpy as np

from fcnn import layers
from fcnn.exercises.exercise import (
    AVERAGED_HINT, GRADCHECK_HINT, Case, Exercise, Mistake, bias_gradient_mistakes, finite_difference_gradients,
    random, replace, with_float32_case,
)

# --- cases ------------------------------------------------------------------------------------

FIRST = "one sample, 4 inputs, 3 outputs"
BATCH_CASE = "a batch of 5 samples"
GRADCHECK_CASE = "gradients against finite differences (float64)"

# (name, N, D, M, hint)
SHAPES = [
    (FIRST, 1, 4, 3, None),
    (BATCH_CASE, 5, 4, 3, "This is the first case with more than one sample."),
]


def forward_cases():
    """Ladder for dense_forward(x, w, b)."""
    rng = np.random.default_rng(2007)
    return with_float32_case([Case(name, (random(rng, (N, D)), random(rng, (D, M)), random(rng, M)), hint)
                              for name, N, D, M, hint in SHAPES])


def gradients_by_finite_differences(dout, x, w):
    """(dx, dw, db) of L = sum(dense_forward(x, w, b) * dout), by central differences."""
    return finite_difference_gradients(layers.dense_forward, dout, x, w, np.zeros(w.shape[1]))


def backward_cases():
    """Ladder for dense_backward(dout, x, w), ending with finite differences."""
    rng = np.random.default_rng(2008)
    cases = with_float32_case([Case(name, (random(rng, (N, M)), random(rng, (N, D)), random(rng, (D, M))), hint)
                               for name, N, D, M, hint in SHAPES])
    cases.append(Case(GRADCHECK_CASE, (random(rng, (3, 2)), random(rng, (3, 4)), random(rng, (4, 2))),
                      GRADCHECK_HINT, gradients_by_finite_differences))
    return cases


# --- known mistakes ---------------------------------------------------------------------------

FORWARD_MISTAKES = [
    Mistake("the bias is missing: out = x @ w + b.", lambda x, w, b: x @ w),
    Mistake("out is transposed: out = x @ w + b has the shape (N, M).", lambda x, w, b: (x @ w + b).T),
]

BACKWARD_MISTAKES = [
    Mistake("dw is transposed: dw = x.T @ dout has the shape of w, (D, M).",
            lambda dout, x, w: replace(layers.dense_backward(dout, x, w), 1, (x.T @ dout).T)),
    Mistake("dx is transposed: dx = dout @ w.T has the shape of x, (N, D).",
            lambda dout, x, w: replace(layers.dense_backward(dout, x, w), 0, (dout @ w.T).T)),
    Mistake(AVERAGED_HINT.format(name="dw"),
            lambda dout, x, w: replace(layers.dense_backward(dout, x, w), 1, x.T @ dout / len(x))),
    *bias_gradient_mistakes(layers.dense_backward, 2, "db[m] = sum_n dout[n, m]", "(M,)"),
]

FORWARD_MATMUL_HINT = "a matrix product has mismatched shapes: out = x @ w + b is (N, D) @ (D, M)."
BACKWARD_MATMUL_HINT = ("a matrix product has mismatched shapes: dx = dout @ w.T is (N, M) @ (M, D), "
                        "dw = x.T @ dout is (D, N) @ (N, M).")

# --- the exercises ----------------------------------------------------------------------------

EXERCISES = [
    Exercise("dense_forward", layers.dense_forward, ("out",), forward_cases, tuple(FORWARD_MISTAKES),
             error_hints=((ValueError, "matmul", FORWARD_MATMUL_HINT),)),
    Exercise("dense_backward", layers.dense_backward, ("dx", "dw", "db"), backward_cases,
             tuple(BACKWARD_MISTAKES), error_hints=((ValueError, "matmul", BACKWARD_MATMUL_HINT),)),
]
