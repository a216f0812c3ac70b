"""The Adam and RMSProp update exercises: the references pass, and each classic mistake, written as
a learner would write it, fails at its case with its hint."""

import numpy as np
import pytest
from exercise_checks import assert_fails_at_case_with_hint

import fcnn.exercises as exercises
from fcnn.exercises import optimisers as family
from fcnn.exercises.exercise import FLOAT32_CASE
from fcnn.exercises.registry import KERNELS


def test_the_updates_are_listed_and_their_references_pass():
    listed = dict(exercises.list_exercises())
    for exercise in family.EXERCISES:
        assert exercise.name in listed
        assert exercises.check(exercise.reference, exercise.name).passed


def adam_update_with(mistake):
    """An adam_update with one mistake: no_correction, t_from_zero, t_minus_one, eps_inside, reset,
    corrected_moments, float64."""
    def adam_update(w, dw, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        if mistake == "reset":  # Alescontrela/Numpy-CNN's Adam: fresh moments every batch
            m, v = np.zeros_like(w), np.zeros_like(w)
        if mistake == "t_from_zero":  # CS231n's config["t"] starts at 0 and is incremented first
            t = t + 1
        m = beta1 * m + (1 - beta1) * dw
        v = beta2 * v + (1 - beta2) * (dw**2)
        if mistake == "no_correction":
            m_hat, v_hat = m, v
        else:
            step = t - 1 if mistake == "t_minus_one" else t
            m_hat, v_hat = m / (1 - beta1**step), v / (1 - beta2**step)
        denominator = np.sqrt(v_hat + eps) if mistake == "eps_inside" else np.sqrt(v_hat) + eps
        w = w - lr * m_hat / denominator
        if mistake == "corrected_moments":
            return w, m_hat, v_hat
        if mistake == "float64":
            return w.astype(np.float64), m, v
        return w, m, v
    return adam_update


def rmsprop_update_with(mistake):
    """An rmsprop_update with one mistake: eps_inside, reset, swapped, no_root."""
    def rmsprop_update(w, dw, s, lr, alpha=0.99, eps=1e-8):
        if mistake == "reset":
            s = np.zeros_like(w)
        if mistake == "swapped":
            s = (1 - alpha) * s + alpha * dw**2
        else:
            s = alpha * s + (1 - alpha) * dw**2
        if mistake == "eps_inside":
            return w - lr * dw / np.sqrt(s + eps), s
        if mistake == "no_root":
            return w - lr * dw / (s + eps), s
        return w - lr * dw / (np.sqrt(s) + eps), s
    return rmsprop_update


MISTAKES = {
    "adam without bias correction": ("adam_update", adam_update_with("no_correction"), family.ADAM_FIRST,
                                     "bias correction is missing"),
    "adam t counted from 0": ("adam_update", adam_update_with("t_from_zero"), family.ADAM_FIRST, "counted from 1"),
    "adam t - 1 in the correction": ("adam_update", adam_update_with("t_minus_one"), family.ADAM_FIRST,
                                     "t starts at 1"),
    "adam eps inside the root": ("adam_update", adam_update_with("eps_inside"), family.ADAM_FIRST,
                                 "eps is inside the square root"),
    "adam moments reset every step": ("adam_update", adam_update_with("reset"), family.ADAM_LATER_CASE,
                                      "start from 0 at every step"),
    "adam corrected moments returned": ("adam_update", adam_update_with("corrected_moments"), family.ADAM_FIRST,
                                        "returned as the new moments"),
    "adam float64 out": ("adam_update", adam_update_with("float64"), FLOAT32_CASE, "dtype=x.dtype"),
    "rmsprop eps inside the root": ("rmsprop_update", rmsprop_update_with("eps_inside"), family.RMSPROP_FIRST,
                                    "eps is inside the square root"),
    "rmsprop s reset every step": ("rmsprop_update", rmsprop_update_with("reset"), family.RMSPROP_LATER_CASE,
                                   "starts from 0 at every step"),
    "rmsprop alpha swapped": ("rmsprop_update", rmsprop_update_with("swapped"), family.RMSPROP_FIRST, "swapped"),
    "rmsprop no square root": ("rmsprop_update", rmsprop_update_with("no_root"), family.RMSPROP_FIRST,
                               "root mean square"),
}


@pytest.mark.parametrize("kernel, function, case_name, hint", MISTAKES.values(), ids=MISTAKES.keys())
def test_classic_mistake_fails_at_the_expected_case_with_its_hint(kernel, function, case_name, hint):
    assert_fails_at_case_with_hint(kernel, function, case_name, hint)


def test_adam_ignoring_the_given_hyperparameters_fails_where_they_are_given():
    reference = KERNELS["adam_update"].reference

    def adam_update(w, dw, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        return reference(w, dw, m, v, t, lr)

    assert_fails_at_case_with_hint("adam_update", adam_update, family.ADAM_HYPERPARAMETERS_CASE, "use the arguments")
