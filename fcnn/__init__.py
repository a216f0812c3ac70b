"""fcnn: a functional, pure-array convolutional neural network for MNIST.

    params = fcnn.init("seed", seed=0)
    logits, cache = fcnn.forward(params, x, "seed", backend="numba")
    loss, dlogits = fcnn.softmax_cross_entropy(logits, labels)
    grads = fcnn.backward(params, cache, dlogits)
    params = fcnn.sgd_step(params, grads, lr=0.1)

With batch norm or dropout, the model's state and the Generator are passed in and handed back,
as is an optimiser's state (None: a fresh start):

    state, moments, rng = fcnn.init_state(arch), None, np.random.default_rng(0)
    loss, grads, logits, state = fcnn.loss_and_grads(params, x, labels, arch, state=state, rng=rng)
    params, moments = fcnn.adam_step(params, grads, moments, lr=1e-3)
    predictions = fcnn.predict(params, x_test, arch, state=state)   # evaluation: running statistics

Nothing mutates its inputs; randomness comes only from the seed or Generator you pass.
The library makes no process-wide setting on its own; fcnn.keep_freed_memory() (fcnn/memory.py)
and fcnn.use_one_blas_thread() (fcnn/blas.py) are the two a training script calls at its start.
"""

from fcnn.blas import use_one_blas_thread
from fcnn.data import DataFormatError, load_mnist, scale
from fcnn.kernels import available_backends, default_backend, get_backend
from fcnn.losses import softmax_cross_entropy
from fcnn.memory import keep_freed_memory
from fcnn.model import (
    PRESETS,
    backward,
    forward,
    init,
    init_state,
    layer_names,
    loss_and_grads,
    output_shapes,
    param_shapes,
    predict,
    resolve_arch,
    state_shapes,
)
from fcnn.optim import (
    adam_step,
    adam_update,
    adamw_step,
    momentum_step,
    rmsprop_step,
    rmsprop_update,
    sgd_step,
    zeros_like,
)

__version__ = "0.1.0"

__all__ = [
    "DataFormatError",
    "PRESETS",
    "adam_step",
    "adam_update",
    "adamw_step",
    "available_backends",
    "backward",
    "default_backend",
    "forward",
    "get_backend",
    "init",
    "init_state",
    "keep_freed_memory",
    "layer_names",
    "load_mnist",
    "loss_and_grads",
    "momentum_step",
    "output_shapes",
    "param_shapes",
    "predict",
    "resolve_arch",
    "rmsprop_step",
    "rmsprop_update",
    "scale",
    "sgd_step",
    "softmax_cross_entropy",
    "state_shapes",
    "use_one_blas_thread",
    "zeros_like",
]
