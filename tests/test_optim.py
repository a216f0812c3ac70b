"""The optimisers: pure functions, checked by name before anything is computed."""

import numpy as np
import pytest

import fcnn


def seed_trees(dtype="float32"):
    params = fcnn.init("seed", seed=0, dtype=dtype)
    grads = fcnn.zeros_like(params)
    return params, grads


STEPS = {
    "sgd_step": lambda params, grads, **kw: fcnn.sgd_step(params, grads, **kw),
    "momentum_step": lambda params, grads, **kw: fcnn.momentum_step(params, grads, fcnn.zeros_like(params), **kw),
}


@pytest.mark.parametrize("step", sorted(STEPS))
@pytest.mark.parametrize("lr", [float("nan"), float("inf"), -0.1, "0.1", True, None])
def test_a_learning_rate_that_cannot_be_right_is_refused(step, lr):
    params, grads = seed_trees()
    with pytest.raises(ValueError, match=rf"{step}: lr must be a finite number >= 0; got"):
        STEPS[step](params, grads, lr=lr)


@pytest.mark.parametrize("momentum", [5, 1, 1.0, -0.1, float("nan"), float("inf"), "0.9"])
def test_a_momentum_outside_0_to_1_is_refused(momentum):
    params, grads = seed_trees()
    with pytest.raises(ValueError, match=r"momentum_step: momentum must be a finite number >= 0 and < 1; got"):
        fcnn.momentum_step(params, grads, fcnn.zeros_like(params), lr=0.1, momentum=momentum)


def test_the_edges_of_the_ranges_are_accepted():
    params, grads = seed_trees()
    assert fcnn.sgd_step(params, grads, lr=0)["conv1"]["w"] is not params["conv1"]["w"]
    fcnn.momentum_step(params, grads, fcnn.zeros_like(params), lr=np.float32(0.1), momentum=0)
    fcnn.momentum_step(params, grads, fcnn.zeros_like(params), lr=1, momentum=0.999)


def with_leaf(tree, layer, key, value):
    return {name: {k: (value if (name, k) == (layer, key) else a) for k, a in arrays.items()}
            for name, arrays in tree.items()}


@pytest.mark.parametrize(
    "which, layer, key, make, message",
    [
        # A new leading axis broadcast silently before: params came back (2, 8, 1, 3, 3).
        ("grads", "conv1", "w", lambda a: np.stack([a, a]),
         r"grads conv1\.w must have the shape of params conv1\.w, \(8, 1, 3, 3\); got \(2, 8, 1, 3, 3\)"),
        ("grads", "dense1", "b", lambda a: a[:1],
         r"grads dense1\.b must have the shape of params dense1\.b, \(10,\); got \(1,\)"),
        ("velocity", "dense1", "w", lambda a: a.T,
         r"velocity dense1\.w must have the shape of params dense1\.w, \(1352, 10\); got \(10, 1352\)"),
        ("grads", "conv1", "b", lambda a: a.astype(np.int64),
         r"grads conv1\.b must be a float32 or float64 array; got int64"),
        ("velocity", "conv1", "b", lambda a: a.tolist(),
         r"velocity conv1\.b must be a float32 or float64 array; got list"),
    ],
)
def test_trees_that_do_not_match_params_are_refused_naming_the_path(which, layer, key, make, message):
    params, grads = seed_trees()
    velocity = fcnn.zeros_like(params)
    if which == "grads":
        grads = with_leaf(grads, layer, key, make(grads[layer][key]))
    else:
        velocity = with_leaf(velocity, layer, key, make(velocity[layer][key]))
    with pytest.raises(ValueError, match=rf"momentum_step: {message}"):
        fcnn.momentum_step(params, grads, velocity, lr=0.1)
    if which == "grads":
        with pytest.raises(ValueError, match=rf"sgd_step: {message}"):
            fcnn.sgd_step(params, grads, lr=0.1)


def test_velocity_of_another_structure_is_refused():
    params, grads = seed_trees()
    velocity = {"conv1": fcnn.zeros_like(params)["conv1"]}
    with pytest.raises(ValueError, match=r"momentum_step: velocity must have the structure of params"):
        fcnn.momentum_step(params, grads, velocity, lr=0.1)
