"""The batch norm, dropout and average-pooling exercises: the references and the backends pass, and
each classic mistake, written as a learner would write it, fails at its case with its hint."""

import numpy as np
import pytest
from exercise_checks import assert_fails_at_case_with_hint

import fcnn.exercises as exercises
from fcnn.exercises import batchnorm_dropout_avgpool as family
from fcnn.exercises import pool
from fcnn.exercises.exercise import FLOAT32_CASE
from fcnn.exercises.registry import KERNELS
from fcnn.kernels import available_backends, get_backend

FAMILY = [exercise.name for exercise in family.EXERCISES]


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("kernel", FAMILY)
def test_backend_kernel_passes_the_check(backend, kernel):
    report = exercises.check(getattr(get_backend(backend), kernel), kernel)
    assert report.passed, str(report)


def test_the_family_is_listed_with_its_goals():
    listed = dict(exercises.list_exercises())
    assert set(FAMILY) <= set(listed)
    assert listed["dropout_forward"].endswith("scaled by 1 / (1 - rate).")


# --- batch norm, written as learners get it wrong ----------------------------------------------

def _channel_view(x, values):
    return values.reshape((1, -1) + (1,) * (x.ndim - 2))


def batchnorm_forward_per_position(x, gamma, beta, eps=1e-5):
    """Deep Learning from Scratch's way: flatten to (N, C*H*W), normalise each column."""
    flat = x.reshape(x.shape[0], -1)
    xhat = (flat - flat.mean(axis=0)) / np.sqrt(flat.var(axis=0) + eps)
    return _channel_view(x, gamma) * xhat.reshape(x.shape) + _channel_view(x, beta)


def batchnorm_forward_per_image(x, gamma, beta, eps=1e-5):
    axes = (2, 3) if x.ndim == 4 else (0,)
    mean = x.mean(axis=axes, keepdims=True)
    xhat = (x - mean) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    return _channel_view(x, gamma) * xhat + _channel_view(x, beta)


def batchnorm_forward_with(mistake):
    """A batchnorm_forward with one mistake: unbiased, eps_outside, no_eps, variance, float64."""
    def batchnorm_forward(x, gamma, beta, eps=1e-5):
        axes = (0, 2, 3) if x.ndim == 4 else (0,)
        M = x.size // x.shape[1]
        mean = x.sum(axis=axes, keepdims=True) / M
        squares = ((x - mean) ** 2).sum(axis=axes, keepdims=True)
        var = squares / (M - 1) if mistake == "unbiased" else squares / M
        if mistake == "eps_outside":
            xhat = (x - mean) / (np.sqrt(var) + eps)
        elif mistake == "no_eps":
            xhat = (x - mean) / np.sqrt(var)
        elif mistake == "variance":
            xhat = (x - mean) / (var + eps)
        else:
            xhat = (x - mean) / np.sqrt(var + eps)
        out = _channel_view(x, gamma) * xhat + _channel_view(x, beta)
        return out.astype(np.float64) if mistake == "float64" else out
    return batchnorm_forward


def batchnorm_backward_with(mistake):
    """A batchnorm_backward with one mistake (see MISTAKES)."""
    def batchnorm_backward(dout, x, gamma, eps=1e-5):
        axes = (0, 2, 3) if x.ndim == 4 else (0,)
        std = np.sqrt(x.var(axis=axes, keepdims=True) + eps)
        xhat = (x - x.mean(axis=axes, keepdims=True)) / std
        parameter_axes = {"summed_over_n": (0,), "summed_over_hw": (2, 3)}.get(mistake, axes)
        if x.ndim == 2:
            parameter_axes = (0,)
        dbeta = dout.sum(axis=parameter_axes)
        dgamma = (dout * (x if mistake == "dgamma_times_x" else xhat)).sum(axis=parameter_axes)
        if mistake == "averaged":
            dbeta, dgamma = dbeta / (x.size // x.shape[1]), dgamma / (x.size // x.shape[1])
        mean_dout = dout.mean(axis=axes, keepdims=True)
        mean_dout_xhat = (dout * xhat).mean(axis=axes, keepdims=True)
        bracket = {"constants": dout, "variance_constant": dout - mean_dout,
                   "mean_constant": dout - xhat * mean_dout_xhat}.get(mistake, dout - mean_dout - xhat * mean_dout_xhat)
        return _channel_view(x, gamma) / std * bracket, dgamma, dbeta
    return batchnorm_backward


# --- dropout -------------------------------------------------------------------------------------

def dropout_forward_with(mistake):
    """A dropout_forward with one mistake: not_scaled, scaled_by_rate, keep_probability, out_not_scaled, np_random."""
    def dropout_forward(x, rate, rng):
        u = np.random.rand(*x.shape) if mistake == "np_random" else rng.random(x.shape)
        if mistake == "not_scaled":
            mask = (u >= rate).astype(x.dtype)
        elif mistake == "scaled_by_rate":
            mask = ((u >= rate) / rate).astype(x.dtype)
        elif mistake == "keep_probability":  # stax: keep = random < rate, then x / rate
            mask = ((u < rate) / rate).astype(x.dtype)
        else:
            mask = ((u >= rate) / (1 - rate)).astype(x.dtype)
        if mistake == "out_not_scaled":
            return x * (u >= rate), mask
        return x * mask, mask
    return dropout_forward


def dropout_backward_new_mask(dout, mask):
    """Draws a mask of its own, at the rate read off the one it was given."""
    rate = 1 - 1 / mask.max()
    new_mask = (np.random.rand(*dout.shape) >= rate) / (1 - rate)
    return (dout * new_mask).astype(dout.dtype)


def dropout_backward_pass_through(dout, mask):
    return dout.copy()


def dropout_backward_unscaled(dout, mask):
    return dout * (mask > 0)


# --- average pooling -----------------------------------------------------------------------------

def avgpool2d_forward_with(mistake):
    """An avgpool2d_forward with one mistake: summed, by_size, stride_one, stride_ignored."""
    def avgpool2d_forward(x, size=2, stride=None):
        if stride is None:
            stride = 1 if mistake == "stride_one" else size
        step = size if mistake == "stride_ignored" else stride
        N, C, H, W = x.shape
        H_out, W_out = 1 + (H - size) // step, 1 + (W - size) // step
        out = np.zeros((N, C, H_out, W_out), dtype=x.dtype)
        for i in range(H_out):
            for j in range(W_out):
                window = x[:, :, i * step:i * step + size, j * step:j * step + size]
                out[:, :, i, j] = window.sum(axis=(2, 3))
        if mistake == "summed":
            return out
        return out / size if mistake == "by_size" else out / (size * size)
    return avgpool2d_forward


def avgpool2d_backward_with(mistake):
    """An avgpool2d_backward with one mistake: not_divided, by_size, overwriting."""
    def avgpool2d_backward(dout, x, size=2, stride=None):
        stride = size if stride is None else stride
        share = {"not_divided": 1, "by_size": size}.get(mistake, size * size)
        dx = np.zeros_like(x)
        for i in range(dout.shape[2]):
            for j in range(dout.shape[3]):
                window = (slice(None), slice(None), slice(i * stride, i * stride + size),
                          slice(j * stride, j * stride + size))
                gradient = dout[:, :, i:i + 1, j:j + 1] / share
                if mistake == "overwriting":
                    dx[window] = gradient
                else:
                    dx[window] += gradient
        return dx
    return avgpool2d_backward


# The mistake, the case where it must first fail, and a piece of the hint it must get.
MISTAKES = {
    "batchnorm per position": ("batchnorm_forward", batchnorm_forward_per_position, family.SPATIAL_CASE,
                               "per position"),
    "batchnorm per image": ("batchnorm_forward", batchnorm_forward_per_image, family.SPATIAL_CASE, "per image"),
    "batchnorm unbiased variance": ("batchnorm_forward", batchnorm_forward_with("unbiased"),
                                    family.BATCHNORM_FIRST, "unbiased"),
    "batchnorm eps outside": ("batchnorm_forward", batchnorm_forward_with("eps_outside"), family.BATCHNORM_FIRST,
                              "eps is outside the square root"),
    "batchnorm no eps": ("batchnorm_forward", batchnorm_forward_with("no_eps"), family.BATCHNORM_FIRST,
                         "eps is missing"),
    "batchnorm divided by variance": ("batchnorm_forward", batchnorm_forward_with("variance"),
                                      family.BATCHNORM_FIRST, "divided by the variance"),
    "batchnorm float64 out": ("batchnorm_forward", batchnorm_forward_with("float64"), FLOAT32_CASE, "dtype=x.dtype"),
    "batchnorm backward constants": ("batchnorm_backward", batchnorm_backward_with("constants"),
                                     family.BATCHNORM_FIRST, "mean and the variance as constants"),
    "batchnorm backward variance constant": ("batchnorm_backward", batchnorm_backward_with("variance_constant"),
                                             family.BATCHNORM_FIRST, "variance as a constant"),
    "batchnorm backward mean constant": ("batchnorm_backward", batchnorm_backward_with("mean_constant"),
                                         family.BATCHNORM_FIRST, "mean as a constant"),
    "batchnorm dgamma summed over n only": ("batchnorm_backward", batchnorm_backward_with("summed_over_n"),
                                            family.SPATIAL_CASE, "summed over n only"),
    "batchnorm dgamma summed over h, w only": ("batchnorm_backward", batchnorm_backward_with("summed_over_hw"),
                                               family.SPATIAL_CASE, "summed over h and w only"),
    "batchnorm dgamma averaged": ("batchnorm_backward", batchnorm_backward_with("averaged"),
                                  family.BATCHNORM_FIRST, "averaged"),
    "batchnorm dgamma times x": ("batchnorm_backward", batchnorm_backward_with("dgamma_times_x"),
                                 family.BATCHNORM_FIRST, "sum(dout * xhat)"),
    "dropout not scaled": ("dropout_forward", dropout_forward_with("not_scaled"), family.DROPOUT_FIRST,
                           "not scaled"),
    "dropout scaled by rate": ("dropout_forward", dropout_forward_with("scaled_by_rate"), family.DROPOUT_FIRST,
                               "scaled by 1 / rate"),
    "dropout rate as keep probability": ("dropout_forward", dropout_forward_with("keep_probability"),
                                         family.DROPOUT_FIRST, "probability to keep"),
    "dropout out not scaled": ("dropout_forward", dropout_forward_with("out_not_scaled"), family.DROPOUT_FIRST,
                               "not scaled"),
    "dropout draws from np.random": ("dropout_forward", dropout_forward_with("np_random"), family.DROPOUT_FIRST,
                                     "the Generator handed in"),
    "dropout backward new mask": ("dropout_backward", dropout_backward_new_mask, family.DROPOUT_FIRST,
                                  "a mask drawn anew in backward"),
    "dropout backward pass through": ("dropout_backward", dropout_backward_pass_through, family.DROPOUT_FIRST,
                                      "dout unchanged"),
    "dropout backward unscaled": ("dropout_backward", dropout_backward_unscaled, family.DROPOUT_FIRST,
                                  "unscaled"),
    "avgpool summed": ("avgpool2d_forward", avgpool2d_forward_with("summed"), pool.FIRST,
                       "window's sum"),
    "avgpool divided by size": ("avgpool2d_forward", avgpool2d_forward_with("by_size"), pool.FIRST,
                                "divided by size"),
    "avgpool stride None as 1": ("avgpool2d_forward", avgpool2d_forward_with("stride_one"),
                                 pool.DEFAULTS_CASE, "stride None means stride = size"),
    "avgpool stride ignored": ("avgpool2d_forward", avgpool2d_forward_with("stride_ignored"),
                               pool.OVERLAPPING_CASE, "stride is ignored"),
    "avgpool backward not divided": ("avgpool2d_backward", avgpool2d_backward_with("not_divided"),
                                     pool.FIRST, "not divided by the window's area"),
    "avgpool backward divided by size": ("avgpool2d_backward", avgpool2d_backward_with("by_size"),
                                         pool.FIRST, "divided by size"),
    "avgpool backward overwriting": ("avgpool2d_backward", avgpool2d_backward_with("overwriting"),
                                     pool.OVERLAPPING_CASE, "overwrite each other"),
}


@pytest.mark.parametrize("kernel, function, case_name, hint", MISTAKES.values(), ids=MISTAKES.keys())
def test_classic_mistake_fails_at_the_expected_case_with_its_hint(kernel, function, case_name, hint):
    assert_fails_at_case_with_hint(kernel, function, case_name, hint)


def test_batchnorm_without_eps_gets_the_eps_hint_on_a_constant_channel():
    # Right on every case but the constant channel, where it gives NaN (as 0 / 0 would).
    reference = KERNELS["batchnorm_forward"].reference

    def batchnorm_forward(x, gamma, beta, eps=1e-5):
        out = reference(x, gamma, beta, eps)
        axes = (0, 2, 3) if x.ndim == 4 else (0,)
        return np.where(x.var(axis=axes, keepdims=True) < 1e-20, np.nan, out).astype(x.dtype)

    assert_fails_at_case_with_hint("batchnorm_forward", batchnorm_forward, family.CONSTANT_CASE,
                                   "inside the square root")


def test_checking_dropout_leaves_each_case_generator_where_it_was():
    # The learner's call and the mistakes' draws each use a copy: checking twice gives the same verdict.
    first = exercises.check(dropout_forward_with("not_scaled"), "dropout_forward")
    second = exercises.check(dropout_forward_with("not_scaled"), "dropout_forward")
    assert first.failure == second.failure
    assert exercises.check(KERNELS["dropout_forward"].reference, "dropout_forward").passed
