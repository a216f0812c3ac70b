"""Optimisers as pure functions: (params, grads[, state]) -> new params[, new state].

Parameters, gradients and velocities are trees (fcnn.tree) of the same structure, for example
{"conv1": {"w": ..., "b": ...}, "dense1": {...}}; a layer's arrays may have any names. Nothing
is updated in place. Every argument is checked by name before anything is computed.
"""

import math

import numpy as np

from fcnn.tree import describe_structure, tree_map, tree_paths, tree_structure


def check_number(function, name, value, minimum, below=None):
    """value must be a finite real number >= minimum (and < below, if given); bool is refused."""
    is_real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    upper = "" if below is None else f" and < {below}"
    if not is_real or not math.isfinite(value) or value < minimum or (below is not None and value >= below):
        raise ValueError(f"{function}: {name} must be a finite number >= {minimum}{upper}; got {value!r}")


def check_like_params(function, name, params, tree):
    """tree (grads, velocity, a moment) must have params' structure, and at every path a float
    array of the shape of params' array there. Raises ValueError naming the path, e.g. conv1.w."""
    if tree_structure(tree) != tree_structure(params):
        raise ValueError(
            f"{function}: {name} must have the structure of params {describe_structure(params)}; "
            f"got {describe_structure(tree)}"
        )
    leaves = dict(tree_paths(tree))
    for path, p in tree_paths(params):
        array, where = leaves[path], ".".join(path)
        if not isinstance(array, np.ndarray) or array.dtype not in (np.float32, np.float64):
            got = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
            raise ValueError(f"{function}: {name} {where} must be a float32 or float64 array; got {got}")
        if array.shape != p.shape:
            raise ValueError(f"{function}: {name} {where} must have the shape of params {where}, {p.shape}; "
                             f"got {array.shape}")


def zeros_like(params):
    """A tree of zeros shaped like params: the starting velocity of momentum SGD."""
    return tree_map(np.zeros_like, params)


def sgd_step(params, grads, lr):
    """Plain gradient descent: p_new = p - lr * dp, for every array (of params' dtype)."""
    check_number("sgd_step", "lr", lr, 0)
    check_like_params("sgd_step", "grads", params, grads)
    return tree_map(lambda p, g: (p - lr * g).astype(p.dtype, copy=False), params, grads)


def momentum_step(params, grads, velocity, lr, momentum=0.9):
    """SGD with momentum, as PyTorch computes it: v_new = momentum * v + dp; p_new = p - lr * v_new.

    Returns (new_params, new_velocity); start with velocity = zeros_like(params).
    """
    check_number("momentum_step", "lr", lr, 0)
    check_number("momentum_step", "momentum", momentum, 0, below=1)
    check_like_params("momentum_step", "grads", params, grads)
    check_like_params("momentum_step", "velocity", params, velocity)
    new_velocity = tree_map(lambda v, g: (momentum * v + g).astype(g.dtype, copy=False), velocity, grads)
    return sgd_step(params, new_velocity, lr), new_velocity
