"""Optimisers as pure functions: (params, grads[, state]) -> new params[, new state].

Parameters, gradients and velocities are trees (fcnn.tree) of the same structure, for example
{"conv1": {"w": ..., "b": ...}, "dense1": {...}}; a layer's arrays may have any names. Nothing
is updated in place.
"""

import numpy as np

from fcnn.tree import describe_structure, tree_map, tree_structure


def _check_same_structure(name, params, other):
    if tree_structure(other) != tree_structure(params):
        raise ValueError(
            f"{name} must have the structure of params {describe_structure(params)}; got {describe_structure(other)}"
        )


def zeros_like(params):
    """A tree of zeros shaped like params: the starting velocity of momentum SGD."""
    return tree_map(np.zeros_like, params)


def sgd_step(params, grads, lr):
    """Plain gradient descent: p_new = p - lr * dp, for every array."""
    _check_same_structure("grads", params, grads)
    return tree_map(lambda p, g: (p - lr * g).astype(p.dtype, copy=False), params, grads)


def momentum_step(params, grads, velocity, lr, momentum=0.9):
    """SGD with momentum, as PyTorch computes it: v_new = momentum * v + dp; p_new = p - lr * v_new.

    Returns (new_params, new_velocity); start with velocity = zeros_like(params).
    """
    _check_same_structure("grads", params, grads)
    _check_same_structure("velocity", params, velocity)
    new_velocity = tree_map(lambda v, g: (momentum * v + g).astype(g.dtype, copy=False), velocity, grads)
    return sgd_step(params, new_velocity, lr), new_velocity
