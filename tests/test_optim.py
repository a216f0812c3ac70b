"""The optimisers: pure functions, checked by name before anything is computed."""

import copy

import numpy as np
import pytest

import fcnn
from fcnn.tree import same_structure, tree_map, tree_paths, tree_structure


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
    with pytest.raises(ValueError, match=rf"{step}: lr must be (a number|finite|>= 0); got"):
        STEPS[step](params, grads, lr=lr)


@pytest.mark.parametrize("momentum", [5, 1, 1.0, -0.1, float("nan"), float("inf"), "0.9"])
def test_a_momentum_outside_0_to_1_is_refused(momentum):
    params, grads = seed_trees()
    with pytest.raises(ValueError, match=r"momentum_step: momentum must be (a number|finite|in \[0, 1\)); got"):
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
        # Rounded to float32 without a word before.
        ("grads", "dense1", "w", lambda a: a.astype(np.float64),
         r"grads dense1\.w must have the dtype of params dense1\.w, float32; got float64"),
        ("velocity", "conv1", "w", lambda a: a.astype(np.float64),
         r"velocity conv1\.w must have the dtype of params conv1\.w, float32; got float64"),
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


# ----- Adam, AdamW, RMSProp and weight decay: PyTorch's semantics, per array and per tree ------

def small_tree(rng, dtype=np.float64):
    return {"conv1": {"w": rng.standard_normal((3, 2, 3, 3)).astype(dtype), "b": rng.standard_normal(3).astype(dtype)},
            "batchnorm1": {"gamma": rng.standard_normal(4).astype(dtype), "beta": rng.standard_normal(4).astype(dtype)}}


def test_adam_update_follows_its_formula_and_its_first_step_is_lr_times_the_sign():
    rng = np.random.default_rng(0)
    w, dw = rng.standard_normal(6), rng.standard_normal(6) * 100
    # At t = 1 the bias corrections give m_hat = dw and v_hat = dw**2: a step of lr * dw / (|dw| + eps).
    w1, m1, v1 = fcnn.adam_update(w, dw, np.zeros(6), np.zeros(6), t=1, lr=0.01)
    np.testing.assert_array_equal(m1, (1 - 0.9) * dw)
    np.testing.assert_array_equal(v1, (1 - 0.999) * dw * dw)
    np.testing.assert_allclose(w1, w - 0.01 * dw / (np.abs(dw) + 1e-8), rtol=1e-14)
    # Step 2, by hand.
    dw2 = rng.standard_normal(6)
    w2, m2, v2 = fcnn.adam_update(w1, dw2, m1, v1, t=2, lr=0.01, beta1=0.8, beta2=0.9, eps=1e-3)
    m, v = 0.8 * m1 + 0.2 * dw2, 0.9 * v1 + 0.1 * dw2**2
    np.testing.assert_allclose(w2, w1 - 0.01 * (m / (1 - 0.8**2)) / (np.sqrt(v / (1 - 0.9**2)) + 1e-3), rtol=1e-14)
    np.testing.assert_array_equal(m2, m)
    np.testing.assert_array_equal(v2, v)


def test_rmsprop_update_follows_its_formula_with_eps_outside_the_square_root():
    w, dw, s = np.array([1.0, -2.0]), np.array([3.0, 0.0]), np.array([0.5, 1e-4])
    w1, s1 = fcnn.rmsprop_update(w, dw, s, lr=0.1, alpha=0.9, eps=0.5)
    np.testing.assert_allclose(s1, [0.9 * 0.5 + 0.1 * 9, 0.9e-4])
    np.testing.assert_allclose(w1, [1 - 0.1 * 3 / (np.sqrt(1.35) + 0.5), -2.0])


OPTIMISERS = {
    # name: (fcnn step, torch optimiser, hyper-parameters of both)
    "adam": ("adam_step", "Adam", {"lr": 0.01}),
    "adam, betas and eps": ("adam_step", "Adam", {"lr": 0.003, "beta1": 0.8, "beta2": 0.95, "eps": 1e-3}),
    "adam, weight decay": ("adam_step", "Adam", {"lr": 0.01, "weight_decay": 0.1}),
    "adamw": ("adamw_step", "AdamW", {"lr": 0.01}),
    "adamw, weight decay": ("adamw_step", "AdamW", {"lr": 0.01, "weight_decay": 0.3}),
    "rmsprop": ("rmsprop_step", "RMSprop", {"lr": 0.01}),
    "rmsprop, alpha, eps, weight decay": ("rmsprop_step", "RMSprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-2, "weight_decay": 0.1}),
    "sgd, weight decay": ("sgd_step", "SGD", {"lr": 0.1, "weight_decay": 0.1}),
    "momentum, weight decay": ("momentum_step", "SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1}),
}


def torch_hyperparameters(hyper):
    renamed = {k: v for k, v in hyper.items() if k not in ("beta1", "beta2")}
    if "beta1" in hyper:
        renamed["betas"] = (hyper["beta1"], hyper["beta2"])
    return renamed


def fcnn_step(name, params, grads, state, hyper, backend="numpy"):
    """One step of `name`; the adaptive optimisers through `backend`'s kernels (SGD's are NumPy's)."""
    if name == "sgd_step":
        return fcnn.sgd_step(params, grads, **hyper), None
    if name == "momentum_step":
        return fcnn.momentum_step(params, grads, fcnn.zeros_like(params) if state is None else state, **hyper)
    return getattr(fcnn, name)(params, grads, state, **hyper, backend=backend)


# The adaptive optimisers through every backend's kernels; SGD's steps take no backend (their updates are NumPy's).
@pytest.mark.parametrize("case, backend", [
    (case, backend) for case in sorted(OPTIMISERS)
    for backend in (["numpy"] if OPTIMISERS[case][0] in ("sgd_step", "momentum_step") else fcnn.available_backends())
])
def test_optimisers_match_pytorch_over_several_steps(case, backend):
    torch = pytest.importorskip("torch")
    name, torch_name, hyper = OPTIMISERS[case]
    rng = np.random.default_rng(1)
    params = small_tree(rng)
    leaves = [torch.tensor(array, requires_grad=True) for _, array in tree_paths(params)]
    optimiser = getattr(torch.optim, torch_name)(leaves, **torch_hyperparameters(hyper))
    state = None
    for step in range(6):
        grads = tree_map(lambda p: rng.standard_normal(p.shape) * 10 ** rng.uniform(-3, 1), params)
        for leaf, (_, g) in zip(leaves, tree_paths(grads)):
            leaf.grad = torch.tensor(g)
        optimiser.step()
        params, state = fcnn_step(name, params, grads, state, hyper, backend)
        for leaf, (path, p) in zip(leaves, tree_paths(params)):
            np.testing.assert_allclose(p, leaf.detach().numpy(), rtol=1e-12, atol=1e-15, err_msg=f"step {step}, {path}")


@pytest.mark.parametrize("name", ["adam_step", "adamw_step", "rmsprop_step"])
def test_adaptive_optimisers_are_pure_keep_the_dtype_and_start_fresh_from_none(name):
    rng = np.random.default_rng(2)
    params = small_tree(rng, np.float32)
    grads = tree_map(lambda p: rng.standard_normal(p.shape, dtype=np.float32), params)
    before = copy.deepcopy((params, grads))
    step = getattr(fcnn, name)
    new_params, state = step(params, grads, None, lr=0.01)
    again, state_again = step(params, grads, None, lr=0.01)
    assert_trees_equal((params, grads), before)
    assert_trees_equal((new_params, state), (again, state_again))
    state_before = copy.deepcopy(state)
    later, later_state = step(new_params, grads, state, lr=0.01)
    assert_trees_equal(state, state_before)
    for _, array in tree_paths((later, later_state)):
        assert not isinstance(array, np.ndarray) or array.dtype == np.float32
    if name != "rmsprop_step":
        assert (state["t"], later_state["t"]) == (1, 2)


def assert_trees_equal(a, b):
    a_leaves, b_leaves = list(tree_paths(list_tree(a))), list(tree_paths(list_tree(b)))
    assert [path for path, _ in a_leaves] == [path for path, _ in b_leaves]
    for (_, x), (_, y) in zip(a_leaves, b_leaves):
        np.testing.assert_array_equal(x, y)


def list_tree(tree):
    """Tuples of trees as one tree, for tree_paths."""
    return {str(i): list_tree(item) for i, item in enumerate(tree)} if isinstance(tree, tuple) else tree


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda p, g: fcnn.adam_step(p, g, None, lr=-1), r"adam_step: lr must be >= 0; got -1"),
        (lambda p, g: fcnn.adam_step(p, g, None, lr=0.1, beta1=1.0), r"adam_step: beta1 must be in \[0, 1\); got 1.0"),
        (lambda p, g: fcnn.adamw_step(p, g, None, lr=0.1, beta2=float("nan")), r"adamw_step: beta2 must be"),
        (lambda p, g: fcnn.adamw_step(p, g, None, lr=0.1, weight_decay=-0.1), r"adamw_step: weight_decay must be >= 0; got -0.1"),
        (lambda p, g: fcnn.rmsprop_step(p, g, None, lr=0.1, alpha=1.5), r"rmsprop_step: alpha must be in \[0, 1\); got 1.5"),
        (lambda p, g: fcnn.rmsprop_step(p, g, None, lr=0.1, eps=-1e-8), r"rmsprop_step: eps must be"),
        (lambda p, g: fcnn.sgd_step(p, g, lr=0.1, weight_decay=float("inf")), r"sgd_step: weight_decay must be"),
        (lambda p, g: fcnn.adam_step(p, g, {"m": g, "v": g}, lr=0.1), r"adam_step: state must be None or the state it returned, a dict of \['m', 't', 'v'\]; got \['m', 'v'\]"),
        (lambda p, g: fcnn.adam_step(p, g, {"t": -1, "m": g, "v": g}, lr=0.1), r"adam_step: state t must be an integer >= 0"),
        (lambda p, g: fcnn.adam_step(p, g, {"t": 1, "m": g, "v": {"conv1": g["conv1"]}}, lr=0.1), r"adam_step: state v must have the structure of params"),
        (lambda p, g: fcnn.rmsprop_step(p, g, {"s": tree_map(lambda a: a[:1], g)}, lr=0.1), r"rmsprop_step: state s conv1\.w must have the shape of params conv1\.w"),
        (lambda p, g: fcnn.rmsprop_step(p, {"conv1": g["conv1"]}, None, lr=0.1), r"rmsprop_step: grads must have the structure of params"),
        (lambda p, g: fcnn.adam_step(p, tree_map(lambda a: a.astype(np.float32), g), None, lr=0.1),
         r"adam_step: grads conv1\.w must have the dtype of params conv1\.w, float64; got float32"),
        (lambda p, g: fcnn.adamw_step(p, g, {"t": 1, "m": g, "v": tree_map(lambda a: a.astype(np.float32), g)}, lr=0.1),
         r"adamw_step: state v conv1\.w must have the dtype of params conv1\.w, float64; got float32"),
        (lambda p, g: fcnn.rmsprop_step(p, g, {"s": tree_map(lambda a: a.astype(np.float32), g)}, lr=0.1),
         r"rmsprop_step: state s conv1\.w must have the dtype of params conv1\.w, float64; got float32"),
    ],
)
def test_adaptive_optimisers_refuse_arguments_that_cannot_be_right(call, message):
    rng = np.random.default_rng(3)
    params = small_tree(rng)
    with pytest.raises(ValueError, match=message):
        call(params, tree_map(np.ones_like, params))


@pytest.mark.parametrize("tree, other, same", [
    ({"a": {"w": 1, "b": 2}}, {"a": {"b": 0, "w": 0}}, True),  # key order does not matter
    ({"a": {"w": 1}}, {"a": {"w": 1, "b": 2}}, False),
    ({"a": {"w": 1}}, {"a": 1}, False),
    ({"a": 1}, {"a": {"w": 1}}, False),
    (1, 2, True),
    ({}, 1, False),
])
def test_same_structure_agrees_with_comparing_tree_structures(tree, other, same):
    assert same_structure(tree, other) is same
    assert (tree_structure(tree) == tree_structure(other)) is same
