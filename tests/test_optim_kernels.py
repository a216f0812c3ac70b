"""Adam's and RMSProp's per-array updates as kernels: every backend gives the numpy backend's bits,
step after step, in float32 and float64, for any shape (0-d too) and for NaN and inf; bad
arguments are refused by name. (Against PyTorch, through every backend: tests/test_optim.py.)"""

import numpy as np
import pytest
from test_optim import assert_trees_equal, small_tree

import fcnn
from fcnn.kernels import available_backends, get_backend
from fcnn.tree import tree_map

BACKENDS = available_backends()
OTHER_BACKENDS = [name for name in BACKENDS if name != "numpy"]
NUMPY = get_backend("numpy")
SHAPES = [(3, 5), (7,), (), (2, 3, 1, 4)]
DTYPES = [np.float32, np.float64]

# kernel: (the names of its arrays after w and dw, which it hands back updated; its numbers).
# The numbers are not the defaults, so that a kernel that ignored one would be caught.
UPDATES = {
    "adam_update": (("m", "v"), {"lr": 0.01, "beta1": 0.8, "beta2": 0.95, "eps": 1e-3}),
    "rmsprop_update": (("s",), {"lr": 0.01, "alpha": 0.9, "eps": 1e-3}),
}


def bits(array):
    """The array's bytes, to compare exactly (NaN equal to the same NaN, -0.0 unequal to 0.0)."""
    assert isinstance(array, np.ndarray)
    return array.dtype, array.shape, array.tobytes()


def random_state(rng, shape, dtype, names):
    """w and each of `names` (a moment, which is >= 0 when squared: v and s), dtype arrays of `shape`."""
    arrays = {"w": np.asarray(rng.standard_normal(shape).astype(dtype))}
    for name in names:
        value = rng.standard_normal(shape).astype(dtype)
        arrays[name] = np.asarray(np.abs(value) if name in ("v", "s") else value)
    return arrays


def run_steps(kernel, backend, state, gradients, numbers):
    """state after one update per gradient; returns every state on the way (each step's outputs)."""
    moments = UPDATES[kernel][0]
    update = getattr(get_backend(backend), kernel)
    states = []
    for t, dw in enumerate(gradients, start=1):
        args = [state["w"], dw, *(state[name] for name in moments)]
        if kernel == "adam_update":
            args.append(t)
        state = dict(zip(("w", *moments), update(*args, **numbers)))
        states.append(state)
    return states


def assert_same_bits(states, expected):
    for step, (state, reference) in enumerate(zip(states, expected), start=1):
        for name in reference:
            assert bits(state[name]) == bits(reference[name]), f"step {step}, {name}"


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize("kernel", sorted(UPDATES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_every_backend_gives_numpys_bits_over_several_steps(backend, kernel, dtype, shape):
    rng = np.random.default_rng(7)
    names, numbers = UPDATES[kernel]
    state = random_state(rng, shape, dtype, names)
    # Gradients of every scale, as training meets them: where eps matters and where it does not.
    gradients = [np.asarray((rng.standard_normal(shape) * 10.0 ** rng.uniform(-6, 2)).astype(dtype)) for _ in range(5)]
    expected = run_steps(kernel, "numpy", state, gradients, numbers)
    assert_same_bits(run_steps(kernel, backend, state, gradients, numbers), expected)
    assert all(bits(s["w"])[:2] == (np.dtype(dtype), shape) for s in expected)


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize("kernel", sorted(UPDATES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_in_any_array_come_out_as_numpys(backend, kernel, dtype):
    names, numbers = UPDATES[kernel]
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, 1e-30, 1.0], dtype=dtype)
    # Every array takes every special value against every other array's: a grid of them all.
    grid = np.meshgrid(*([special] * (2 + len(names))), indexing="ij")
    state = {name: np.ascontiguousarray(values.ravel()) for name, values in zip(("w", *names), [grid[0], *grid[2:]])}
    for name in set(state) & {"v", "s"}:  # a running mean of squares is never negative
        state[name] = np.abs(state[name])
    dw = np.ascontiguousarray(grid[1].ravel())
    with np.errstate(all="ignore"):
        expected = run_steps(kernel, "numpy", state, [dw, dw], numbers)
        assert_same_bits(run_steps(kernel, backend, state, [dw, dw], numbers), expected)


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize("kernel", ["adam_update", "rmsprop_update"])
def test_eps_0_and_a_zero_gradient_divide_0_by_0_as_numpy_does(backend, kernel):
    names, numbers = UPDATES[kernel]
    state = {name: np.zeros(3, dtype=np.float32) for name in ("w", *names)}
    with np.errstate(all="ignore"):
        expected = run_steps(kernel, "numpy", state, [np.zeros(3, np.float32)], {**numbers, "eps": 0.0})
        assert np.isnan(expected[0]["w"]).all()
        assert_same_bits(run_steps(kernel, backend, state, [np.zeros(3, np.float32)], {**numbers, "eps": 0.0}), expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_numpy_float64_numbers_keep_float32_arithmetic(backend):
    """lr as np.float64 would make NumPy compute float32 arrays in float64; the kernels round it as a Python float."""
    rng = np.random.default_rng(3)
    w, dw, m, v = (rng.standard_normal(9).astype(np.float32) for _ in range(4))
    v = np.abs(v)
    update = get_backend(backend).adam_update
    given = update(w, dw, m, v, np.int64(4), np.float64(0.01), np.float64(0.8), np.float32(0.95), np.float64(1e-3))
    plain = NUMPY.adam_update(w, dw, m, v, 4, 0.01, 0.8, float(np.float32(0.95)), 1e-3)
    assert [bits(a) for a in given] == [bits(a) for a in plain]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_kernels_make_new_arrays_and_leave_their_inputs_alone(backend):
    rng = np.random.default_rng(4)
    for kernel, (names, numbers) in UPDATES.items():
        state = random_state(rng, (4, 3), np.float32, names)
        dw = rng.standard_normal((4, 3)).astype(np.float32)
        before = {name: array.copy() for name, array in state.items()}
        result = run_steps(kernel, backend, state, [dw], numbers)[0]
        for name, array in state.items():
            np.testing.assert_array_equal(array, before[name])
            assert not np.shares_memory(result[name], array), f"{kernel}: {name}"


def test_the_tuned_backend_steps_with_numbas_kernels():
    if "tuned" not in BACKENDS:
        pytest.skip("numba is not installed")
    assert {get_backend("tuned").served_by[kernel] for kernel in UPDATES} == {"numba"}


# ----- the optimisers' steps, through each backend --------------------------------------------

STEPS = {
    "adam_step": {"lr": 0.01, "weight_decay": 0.1},
    "adamw_step": {"lr": 0.01, "weight_decay": 0.3},
    "rmsprop_step": {"lr": 0.01, "alpha": 0.9},
}


def step_with(name, params, grads, state, backend):
    return getattr(fcnn, name)(params, grads, state, **STEPS[name], backend=backend)


def with_scalar_leaf(tree, dtype):
    """tree with a layer whose parameter is one number, a 0-d array."""
    return {**tree, "scale": {"s": np.array(0.5, dtype=dtype)}}


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize("name", sorted(STEPS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_step_through_every_backend_gives_numpys_trees(backend, name, dtype):
    rng = np.random.default_rng(5)
    params = with_scalar_leaf(small_tree(rng, dtype), dtype)
    expected_params, expected_state, actual_params, actual_state = params, None, params, None
    for _ in range(4):
        grads = tree_map(lambda p: np.asarray((rng.standard_normal(p.shape) * 10 ** rng.uniform(-3, 1)).astype(dtype)),
                         params)
        expected_params, expected_state = step_with(name, expected_params, grads, expected_state, "numpy")
        actual_params, actual_state = step_with(name, actual_params, grads, actual_state, backend)
        assert_trees_equal((actual_params, actual_state), (expected_params, expected_state))
        assert isinstance(actual_params["scale"]["s"], np.ndarray) and actual_params["scale"]["s"].dtype == dtype


def test_an_unknown_backend_is_refused_by_the_step():
    params, grads = small_tree(np.random.default_rng(6)), small_tree(np.random.default_rng(7))
    with pytest.raises(ValueError, match=r"backend must be one of .*; got 'cuda'"):
        fcnn.adam_step(params, grads, None, lr=0.1, backend="cuda")


# ----- bad arguments, refused by name before any arithmetic -----------------------------------

A = np.ones((2, 3), dtype=np.float32)
CALLS = [
    ("adam_update", (A.astype(np.int64), A, A, A, 1, 0.1), r"adam_update: w must be float32 or float64; got int64"),
    ("adam_update", (A.tolist(), A, A, A, 1, 0.1), r"adam_update: w must be a numpy array; got list"),
    ("adam_update", (A, A[:1], A, A, 1, 0.1), r"adam_update: dw must have the shape of w \(2, 3\); got \(1, 3\)"),
    ("adam_update", (A, A.astype(np.float64), A, A, 1, 0.1), r"adam_update: dw must have the dtype of w \(float32\); got float64"),
    ("adam_update", (A, A, A, A, 1, -0.1), r"adam_update: lr must be >= 0; got -0.1"),
    ("adam_update", (A, A, A, A, 1, float("nan")), r"adam_update: lr must be finite; got nan"),
    ("rmsprop_update", (A, A, A, "0.1"), r"rmsprop_update: lr must be a number; got '0.1'"),
    ("adam_update", (A, A, A, A[0], 1, 0.1), r"adam_update: v must have the shape of w \(2, 3\); got \(3,\)"),
    ("adam_update", (A, A, 1.0, A, 1, 0.1), r"adam_update: m must be a numpy array; got float"),
    ("adam_update", (A, A, A, A, 0, 0.1), r"adam_update: t must be >= 1; got 0"),
    ("adam_update", (A, A, A, A, 1.5, 0.1), r"adam_update: t must be an integer; got 1.5"),
    ("adam_update", (A, A, A, A, True, 0.1), r"adam_update: t must be an integer; got True"),
    ("adam_update", (A, A, A, A, 1, 0.1, 1.0), r"adam_update: beta1 must be in \[0, 1\); got 1.0"),
    ("adam_update", (A, A, A, A, 1, 0.1, 0.9, -0.5), r"adam_update: beta2 must be in \[0, 1\); got -0.5"),
    ("adam_update", (A, A, A, A, 1, 0.1, 0.9, 0.999, -1e-8), r"adam_update: eps must be >= 0; got -1e-08"),
    ("rmsprop_update", (A, A, A.astype(np.float64), 0.1), r"rmsprop_update: s must have the dtype of w \(float32\); got float64"),
    ("rmsprop_update", (A, A, A, 0.1, 1.5), r"rmsprop_update: alpha must be in \[0, 1\); got 1.5"),
    ("rmsprop_update", (A, A, A, 0.1, 0.9, float("inf")), r"rmsprop_update: eps must be finite; got inf"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernel, args, message", CALLS, ids=lambda value: value if isinstance(value, str) else None)
def test_bad_arguments_are_refused_naming_the_argument(backend, kernel, args, message):
    with pytest.raises(ValueError, match=message):
        getattr(get_backend(backend), kernel)(*args)
