"""The softmax cross-entropy exercise: its ladder of cases and its known mistakes."""

import numpy as np

from fcnn import losses
from fcnn.exercises.exercise import (
    FLOAT32_CASE, FLOAT32_HINT, GRADCHECK_HINT, Case, Exercise, Mistake, as_float32, random, replace,
)
from fcnn.gradcheck import numerical_gradient

# --- cases ------------------------------------------------------------------------------------

FIRST = "one sample, 3 classes"
BATCH_CASE = "a batch of 4 samples, 5 classes"
LARGE_CASE = "large logits (around 1000)"
GRADCHECK_CASE = "gradient against finite differences (float64)"


def by_finite_differences(logits, labels):
    """(loss, dlogits): the reference loss, and its gradient by central differences."""
    loss, _ = losses.softmax_cross_entropy(logits, labels)
    return loss, numerical_gradient(lambda: losses.softmax_cross_entropy(logits, labels)[0], logits)


def cases():
    """Ladder for softmax_cross_entropy(logits, labels), ending with finite differences."""
    rng = np.random.default_rng(2009)
    batch = (3.0 * random(rng, (4, 5)), np.array([1, 0, 4, 2]))
    return [
        Case(FIRST, (random(rng, (1, 3)), np.array([2])), None),
        Case(BATCH_CASE, batch,
             "This is the first case with more than one sample: the loss is the mean over the batch."),
        Case(LARGE_CASE, (1000.0 + 10.0 * random(rng, (3, 4)), np.array([0, 3, 1])),
             "exp(1000) overflows: subtract each row's maximum before exp."),
        Case(FLOAT32_CASE, as_float32(batch), FLOAT32_HINT),
        Case(GRADCHECK_CASE, (random(rng, (3, 4)), np.array([3, 0, 1])), GRADCHECK_HINT, by_finite_differences),
    ]


# --- known mistakes ---------------------------------------------------------------------------

def _one_hot(labels, K):
    return np.eye(K)[labels]


MISTAKES = [
    Mistake("the loss is summed over the batch; it is the mean: divide by N.",
            lambda logits, labels: (losses.softmax_cross_entropy(logits, labels)[0] * len(logits),
                                    losses.softmax_cross_entropy(logits, labels)[1])),
    Mistake("dlogits is not divided by N: the loss is a mean over the batch, so each row of its "
            "gradient carries 1/N.",
            lambda logits, labels: replace(losses.softmax_cross_entropy(logits, labels), 1,
                                           losses.softmax_cross_entropy(logits, labels)[1] * len(logits))),
    Mistake("dlogits lacks the -1 at the true class: dlogits[n, k] = (softmax[k] - [k == label]) / N.",
            lambda logits, labels: replace(
                losses.softmax_cross_entropy(logits, labels), 1,
                losses.softmax_cross_entropy(logits, labels)[1] + _one_hot(labels, logits.shape[1]) / len(logits))),
    Mistake("the loss has the wrong sign: it is -log(softmax(logits[n])[label]), which is >= 0.",
            lambda logits, labels: replace(losses.softmax_cross_entropy(logits, labels), 0,
                                           -losses.softmax_cross_entropy(logits, labels)[0])),
    Mistake("the loss is one number per sample; return their mean over the batch.",
            lambda logits, labels: replace(
                losses.softmax_cross_entropy(logits, labels), 0,
                np.log(np.exp(logits - logits.max(axis=1, keepdims=True)).sum(axis=1))
                + logits.max(axis=1) - logits[np.arange(len(labels)), labels])),
]
OVERFLOW_HINT = ("exp overflowed to inf: subtract each row's maximum from the logits before exp "
                 "(softmax does not change when every logit of a row moves by the same amount).")

# --- the exercises ----------------------------------------------------------------------------

EXERCISES = [
    Exercise("softmax_cross_entropy", losses.softmax_cross_entropy, ("loss", "dlogits"), cases,
             tuple(MISTAKES), scalars=("loss",), nonfinite_hint=OVERFLOW_HINT),
]
