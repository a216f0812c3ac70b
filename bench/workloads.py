"""The workloads the benchmarks time: the presets as the training script runs them, their real
layer shapes, and FLOP counts.

The settings come from fcnn.training.ARCH_DEFAULTS, the training script's own defaults (batch
size, optimiser, lr, momentum), so the benchmarks time what users run. Every benchmark stores `images` (its
batch) and `flops_per_image` in extra_info, so bench/report.py can compare backends per image
even though `loop` runs a smaller batch.
"""

import math

import numpy as np

from fcnn.model import MNIST_SHAPE, init_state, layer_names, output_shapes, param_shapes, resolve_arch
from fcnn.training import ARCH_DEFAULTS, fresh_state, train_step

PRESETS = list(ARCH_DEFAULTS)
# The batch each preset trains with (the script's default).
TRAINING_BATCH = {preset: ARCH_DEFAULTS[preset]["batch_size"] for preset in PRESETS}
# Batch sizes whose training step is timed too: LeNet-5 at 64, the batch of earlier figures.
ALSO_TIMED = {"lenet5": (64,)}
BATCH_SIZES = {preset: tuple(dict.fromkeys((TRAINING_BATCH[preset], *ALSO_TIMED.get(preset, ())))) for preset in PRESETS}
# The pure-Python reference takes tens to hundreds of ms per image per conv: a couple of images is enough to time it.
LOOP_BATCH = 2


def batch_for(backend, preset):
    """Images per call: the preset's training batch, or LOOP_BATCH for the pure-Python loops."""
    return LOOP_BATCH if backend == "loop" else TRAINING_BATCH[preset]


def weighted_layers(preset):
    """(name, spec, input shape, output shape, {"w": shape, "b": shape}) of each conv and dense layer, per image.

    Batch norm's gamma and beta are parameters too, but it is counted with the cheap layers (below).
    """
    specs = resolve_arch(preset)
    shapes = [MNIST_SHAPE] + output_shapes(specs)
    weights = param_shapes(specs)
    return [
        (name, spec, in_shape, out_shape, weights[name])
        for name, spec, in_shape, out_shape in zip(layer_names(specs), specs, shapes, shapes[1:])
        if spec["type"] in ("conv", "dense")
    ]


def layer_cases():
    """Every conv and maxpool layer of the presets, with the per-image input shape it really sees.

    Returns dicts {"preset", "layer", "spec", "input_shape": (C, H, W), "weight_shape" (conv only)}.
    """
    cases = []
    for preset in PRESETS:
        specs = resolve_arch(preset)
        shapes = [MNIST_SHAPE] + output_shapes(specs)
        weights = param_shapes(specs)
        for name, spec, in_shape in zip(layer_names(specs), specs, shapes):
            if spec["type"] in ("conv", "maxpool"):
                case = dict(preset=preset, layer=name, spec=spec, input_shape=in_shape)
                if name in weights:
                    case["weight_shape"] = weights[name]["w"]
                cases.append(case)
    return cases


def conv_multiply_adds(weight_shape, output_hw):
    """Multiply-adds of one conv forward per image: F * C * KH * KW * H' * W'."""
    return int(np.prod(weight_shape)) * output_hw[0] * output_hw[1]


def multiply_adds(weights, out_shape):
    """Multiply-adds of one layer's forward per image: every weight meets every output position.

    conv: w (F, C, KH, KW), out (F, H', W') -> F*C*KH*KW * H'*W'; dense: w (D, M), out (M,) -> D*M.
    """
    return math.prod(weights["w"]) * math.prod(out_shape[1:])


def training_flops_per_image(preset):
    """FLOP per image of the math a training step needs (2 per multiply-add; relu, pooling, batch
    norm, dropout, softmax and the optimiser ignored: a few operations per value, not per weight).

    Every weighted layer: forward + dw, and + dx except for the first, whose input needs no
    gradient. For seed and lenet5: 0.276 M and 2.26 M (docs/performance.md).
    """
    layers = weighted_layers(preset)
    return sum(2 * multiply_adds(weights, out_shape) * (2 if rank == 0 else 3)
               for rank, (_, _, _, out_shape, weights) in enumerate(layers))


def inference_flops_per_image(preset):
    """FLOP per image of one forward pass: 2 per multiply-add of every conv and dense layer."""
    return sum(2 * multiply_adds(weights, out_shape) for _, _, _, out_shape, weights in weighted_layers(preset))


def optimiser(preset):
    """(lr, momentum) of the preset as the training script runs it (fcnn.training.ARCH_DEFAULTS;
    momentum 0 for a preset trained with an optimiser other than SGD)."""
    return ARCH_DEFAULTS[preset]["lr"], ARCH_DEFAULTS[preset].get("momentum", 0.0)


def optimizer_name(preset):
    """The optimiser the training script trains the preset with: sgd, adam, adamw or rmsprop."""
    return ARCH_DEFAULTS[preset]["optimizer"]


def optimizer_state(preset, params):
    """The optimiser state of a first step: SGD's zero velocity, Adam's zero moments (fcnn.training.fresh_state)."""
    return fresh_state(optimizer_name(preset), params)


def training_step(preset, backend):
    """One optimiser step of the preset, as fcnn.training takes it with the script's optimiser, lr
    and momentum: in training mode from a fresh model state (batch norm's running statistics),
    dropout masks drawn from a Generator of the step's own.

    Returns step(params, state, x, labels) -> train_step's result; state: optimizer_state's.
    """
    lr, momentum = optimiser(preset)
    model_state, dropout_rng = init_state(preset), np.random.default_rng(0)

    def step(params, state, x, labels):
        return train_step(params, state, x, labels, preset, backend, lr, momentum, optimizer_name(preset),
                          model_state=model_state, dropout_rng=dropout_rng)

    return step


def random_batch(rng, batch):
    """MNIST-like inputs: float32 images in [0, 1) (batch, 1, 28, 28) and labels in 0..9."""
    return rng.random((batch, *MNIST_SHAPE), dtype=np.float32), rng.integers(0, 10, batch)
