"""Optimisers as pure functions: (params, grads[, state]) -> new params[, new state].

Parameters, gradients, velocities and moments are trees (fcnn.tree) of the same structure, for
example {"conv1": {"w": ..., "b": ...}, "dense1": {...}}; a layer's arrays may have any names.
Nothing is updated in place. Every argument is checked by name before anything is computed.

Each optimiser means what PyTorch's of the same name means, hyper-parameters included:
    sgd_step, momentum_step   torch.optim.SGD (momentum, dampening 0, not Nesterov)
    adam_step                 torch.optim.Adam      state {"t", "m", "v"}
    adamw_step                torch.optim.AdamW     state {"t", "m", "v"}, decoupled weight decay
    rmsprop_step              torch.optim.RMSprop   state {"s"} (not centered, no momentum)
weight_decay, everywhere but AdamW, adds the gradient of the L2 penalty weight_decay/2 * p**2 to
dp, as PyTorch does. The per-array updates adam_update and rmsprop_update are CS231n's form of
the same formulas, one array at a time; the tree versions apply them to every array.

Adam's, AdamW's and RMSProp's per-array updates are kernels of the contract (fcnn.kernels:
adam_update, rmsprop_update; the two here are the numpy backend's): those steps take
backend="numpy" and run that backend's kernel on every array, with the same bits from every
backend. SGD's one or two operations per array stay NumPy's here: through a kernel, the check
and the call per array cost more than they saved (docs/performance.md).
"""

import numpy as np

from fcnn.kernels import get_backend
from fcnn.kernels.contract import check_number
# The numpy backend's own functions (unchecked, as they always were here): the exercises' references.
from fcnn.kernels.vectorized import adam_update, rmsprop_update
from fcnn.tree import describe_structure, same_structure, tree_leaf, tree_map, tree_paths, tree_unzip


def check_like_params(function, name, params, tree):
    """tree (grads, velocity, a moment) must have params' structure, and at every path a float
    array of the shape and dtype of params' array there (a float64 gradient of a float32 param
    would be rounded without a word). Raises ValueError naming the path, e.g. conv1.w."""
    if not same_structure(tree, params):
        raise ValueError(
            f"{function}: {name} must have the structure of params {describe_structure(params)}; "
            f"got {describe_structure(tree)}"
        )
    for path, p in tree_paths(params):
        array, where = tree_leaf(tree, path), ".".join(path)
        if not isinstance(array, np.ndarray) or array.dtype not in (np.float32, np.float64):
            got = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
            raise ValueError(f"{function}: {name} {where} must be a float32 or float64 array; got {got}")
        if array.shape != p.shape:
            raise ValueError(f"{function}: {name} {where} must have the shape of params {where}, {p.shape}; "
                             f"got {array.shape}")
        if array.dtype != p.dtype:
            raise ValueError(f"{function}: {name} {where} must have the dtype of params {where}, {p.dtype}; "
                             f"got {array.dtype}")


def zeros_like(params):
    """A tree of zeros shaped like params: the starting velocity of momentum SGD."""
    return tree_map(np.zeros_like, params)


def _with_l2(function, params, grads, weight_decay):
    """grads with weight_decay * p added (L2 regularisation), once weight_decay is checked."""
    check_number(function, "weight_decay", weight_decay, 0)
    if weight_decay == 0:
        return grads
    weight_decay = float(weight_decay)  # a Python float keeps g in p's dtype (see fcnn.kernels.contract)
    # asarray: on a 0-d leaf, NumPy's arithmetic gives a scalar, and the kernels take arrays.
    return tree_map(lambda p, g: np.asarray(g + weight_decay * p), params, grads)


def _descend(params, grads, lr):
    """p - lr * g at every leaf, of p's dtype."""
    def descend(p, g):
        step = lr * g
        if isinstance(step, np.ndarray):  # not for a 0-d leaf, whose step is a numpy scalar
            # Written over lr * g: a second temporary of LeNet-5's dense1 (192 KB) cost fresh pages, 7x the arithmetic.
            return np.subtract(p, step, out=step).astype(p.dtype, copy=False)
        return (p - step).astype(p.dtype, copy=False)

    return tree_map(descend, params, grads)


def sgd_step(params, grads, lr, weight_decay=0.0):
    """Plain gradient descent: p_new = p - lr * (dp + weight_decay * p), for every array (of params' dtype)."""
    check_number("sgd_step", "lr", lr, 0)
    check_like_params("sgd_step", "grads", params, grads)
    return _descend(params, _with_l2("sgd_step", params, grads, weight_decay), lr)


def momentum_step(params, grads, velocity, lr, momentum=0.9, weight_decay=0.0):
    """SGD with momentum, as PyTorch computes it: v_new = momentum * v + dp; p_new = p - lr * v_new.

    dp includes weight_decay * p. Returns (new_params, new_velocity); start with velocity =
    zeros_like(params).
    """
    check_number("momentum_step", "lr", lr, 0)
    check_number("momentum_step", "momentum", momentum, 0, 1)
    check_like_params("momentum_step", "grads", params, grads)
    check_like_params("momentum_step", "velocity", params, velocity)
    grads = _with_l2("momentum_step", params, grads, weight_decay)

    def accumulate(v, g):
        new_v = momentum * v
        new_v += g  # in place, as in _descend
        return new_v.astype(v.dtype, copy=False)

    new_velocity = tree_map(accumulate, velocity, grads)
    return _descend(params, new_velocity, lr), new_velocity


def _check_state(function, params, state, keys):
    """state must be None (a fresh start) or a dict of exactly `keys`, each tree like params
    ("t", if a key, an integer >= 0: the steps taken). Returns state, a fresh one for None."""
    if state is None:
        fresh = {key: zeros_like(params) for key in keys if key != "t"}
        return {"t": 0, **fresh} if "t" in keys else fresh
    if not isinstance(state, dict) or sorted(state) != sorted(keys):
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{function}: state must be None or the state it returned, a dict of {sorted(keys)}; got {got}")
    for key in keys:
        if key == "t":
            if isinstance(state["t"], bool) or not isinstance(state["t"], (int, np.integer)) or state["t"] < 0:
                raise ValueError(f"{function}: state t must be an integer >= 0 (the steps taken); got {state['t']!r}")
        else:
            check_like_params(function, f"state {key}", params, state[key])
    return state


def _adam(function, params, grads, state, lr, beta1, beta2, eps, weight_decay, decoupled, backend):
    check_number(function, "lr", lr, 0)
    check_number(function, "beta1", beta1, 0, 1)
    check_number(function, "beta2", beta2, 0, 1)
    check_number(function, "eps", eps, 0)
    check_like_params(function, "grads", params, grads)
    state = _check_state(function, params, state, ("t", "m", "v"))
    t = int(state["t"]) + 1
    if decoupled:
        check_number(function, "weight_decay", weight_decay, 0)
        shrink = float(1 - lr * weight_decay)  # a Python float keeps p in its dtype (see fcnn.kernels.contract)
        params_to_step = tree_map(lambda p: np.asarray(p * shrink), params)  # asarray: as in _with_l2
    else:
        params_to_step, grads = params, _with_l2(function, params, grads, weight_decay)
    # Every argument is checked above (the arrays by path), so each array skips the kernel's own check;
    # the numbers as Python floats, as that check hands them on (fcnn.kernels.contract says why).
    update, numbers = get_backend(backend).unchecked("adam_update"), (float(lr), float(beta1), float(beta2), float(eps))
    new_params, m, v = tree_unzip(tree_map(lambda p, g, m, v: update(p, g, m, v, t, *numbers),
                                           params_to_step, grads, state["m"], state["v"]), 3)
    return new_params, {"t": t, "m": m, "v": v}


def adam_step(params, grads, state, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, *, backend="numpy"):
    """Adam (adam_update on every array), as torch.optim.Adam with betas=(beta1, beta2).

    dp includes weight_decay * p (L2, coupled: it passes through the moments). state: None on
    the first step, then the state the previous step returned, {"t": steps taken, "m": tree,
    "v": tree}. Returns (new_params, new_state). backend: whose adam_update steps each array.
    """
    return _adam("adam_step", params, grads, state, lr, beta1, beta2, eps, weight_decay, False, backend)


def adamw_step(params, grads, state, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, *, backend="numpy"):
    """AdamW (Loshchilov & Hutter 2019), as torch.optim.AdamW: weight decay decoupled from the moments.

    p is first shrunk, p = p * (1 - lr * weight_decay), then stepped by adam_update with dp
    alone. state, result and backend as adam_step's; weight_decay defaults to PyTorch's 0.01.
    """
    return _adam("adamw_step", params, grads, state, lr, beta1, beta2, eps, weight_decay, True, backend)


def rmsprop_step(params, grads, state, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, *, backend="numpy"):
    """RMSProp (rmsprop_update on every array), as torch.optim.RMSprop (not centered, no momentum).

    dp includes weight_decay * p. state: None on the first step, then the state the previous
    step returned, {"s": tree}. Returns (new_params, new_state). backend: whose rmsprop_update
    steps each array.
    """
    check_number("rmsprop_step", "lr", lr, 0)
    check_number("rmsprop_step", "alpha", alpha, 0, 1)
    check_number("rmsprop_step", "eps", eps, 0)
    check_like_params("rmsprop_step", "grads", params, grads)
    state = _check_state("rmsprop_step", params, state, ("s",))
    grads = _with_l2("rmsprop_step", params, grads, weight_decay)
    update, numbers = get_backend(backend).unchecked("rmsprop_update"), (float(lr), float(alpha), float(eps))  # as in _adam
    new_params, s = tree_unzip(tree_map(lambda p, g, s: update(p, g, s, *numbers), params, grads, state["s"]), 2)
    return new_params, {"s": s}
