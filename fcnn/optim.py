"""Optimisers as pure functions: (params, grads[, state]) -> new params[, new state].

Parameters, gradients and velocities are dicts of dicts of arrays with the same structure,
for example {"conv1": {"w": ..., "b": ...}, "dense1": {...}}. Nothing is updated in place.
"""

import numpy as np


def _check_same_structure(name, params, other):
    if params.keys() != other.keys() or any(params[k].keys() != other[k].keys() for k in params):
        raise ValueError(
            f"{name} must have the structure of params "
            f"{ {k: sorted(v) for k, v in params.items()} }; "
            f"got { {k: sorted(v) for k, v in other.items()} }"
        )


def zeros_like(params):
    """A tree of zeros shaped like params: the starting velocity of momentum SGD."""
    return {layer: {k: np.zeros_like(v) for k, v in arrays.items()} for layer, arrays in params.items()}


def sgd_step(params, grads, lr):
    """Plain gradient descent: p_new = p - lr * dp, for every array."""
    _check_same_structure("grads", params, grads)
    return {
        layer: {k: (p - lr * grads[layer][k]).astype(p.dtype, copy=False) for k, p in arrays.items()}
        for layer, arrays in params.items()
    }


def momentum_step(params, grads, velocity, lr, momentum=0.9):
    """SGD with momentum, as PyTorch computes it: v_new = momentum * v + dp; p_new = p - lr * v_new.

    Returns (new_params, new_velocity); start with velocity = zeros_like(params).
    """
    _check_same_structure("grads", params, grads)
    _check_same_structure("velocity", params, velocity)
    new_velocity = {
        layer: {k: (momentum * velocity[layer][k] + g).astype(g.dtype, copy=False) for k, g in arrays.items()}
        for layer, arrays in grads.items()
    }
    return sgd_step(params, new_velocity, lr), new_velocity
