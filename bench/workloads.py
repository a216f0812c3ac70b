"""The workloads the benchmarks time: the real layer shapes of the presets, batch sizes, FLOP counts.

Every benchmark stores `images` (its batch) and `flops_per_image` in extra_info, so
bench/report.py can compare backends per image even though `loop` runs a smaller batch.
"""

import numpy as np

from fcnn.model import MNIST_SHAPE, layer_names, output_shapes, resolve_arch
from fcnn.training import train_step

# The batch each preset trains with (PyTorch reference figures in docs/performance.md use the same).
PRESET_BATCH = {"seed": 32, "lenet5": 64}
# The pure-Python reference takes tens to hundreds of ms per image per conv: a couple of images is enough to time it.
LOOP_BATCH = 2


def batch_for(backend, preset):
    """Images per call: the preset's real batch, or LOOP_BATCH for the pure-Python loops."""
    return LOOP_BATCH if backend == "loop" else PRESET_BATCH[preset]


def layer_cases():
    """Every conv and maxpool layer of the presets, with the per-image input shape it really sees.

    Returns dicts {"preset", "layer", "spec", "input_shape": (C, H, W), "weight_shape" (conv only)}.
    """
    cases = []
    for preset in PRESET_BATCH:
        specs = resolve_arch(preset)
        shapes = [MNIST_SHAPE] + output_shapes(specs)
        for name, spec, in_shape in zip(layer_names(specs), specs, shapes):
            if spec["type"] == "conv":
                weight_shape = (spec["filters"], in_shape[0], *spec["kernel"])
                cases.append(dict(preset=preset, layer=name, spec=spec, input_shape=in_shape, weight_shape=weight_shape))
            elif spec["type"] == "maxpool":
                cases.append(dict(preset=preset, layer=name, spec=spec, input_shape=in_shape))
    return cases


def conv_multiply_adds(weight_shape, output_hw):
    """Multiply-adds of one conv forward per image: F * C * KH * KW * H' * W'."""
    return int(np.prod(weight_shape)) * output_hw[0] * output_hw[1]


def training_flops_per_image(preset):
    """FLOP per image of the math a training step needs (2 per multiply-add; relu, pooling, softmax ignored).

    conv: forward + dw (+ dx except for the first layer, whose input needs no gradient);
    dense: forward + dw + dx. For seed and lenet5: 0.276 M and 2.26 M (docs/performance.md).
    """
    specs = resolve_arch(preset)
    shapes = [MNIST_SHAPE] + output_shapes(specs)
    flops = 0
    first_weighted = True
    for spec, in_shape, out_shape in zip(specs, shapes, shapes[1:]):
        if spec["type"] == "conv":
            multiply_adds = conv_multiply_adds((spec["filters"], in_shape[0], *spec["kernel"]), out_shape[1:])
        elif spec["type"] == "dense":
            multiply_adds = in_shape[0] * spec["units"]
        else:
            continue
        passes = 2 if first_weighted else 3
        flops += 2 * multiply_adds * passes
        first_weighted = False
    return flops


def inference_flops_per_image(preset):
    """FLOP per image of one forward pass: 2 per multiply-add of every conv and dense layer."""
    specs = resolve_arch(preset)
    shapes = [MNIST_SHAPE] + output_shapes(specs)
    flops = 0
    for spec, in_shape, out_shape in zip(specs, shapes, shapes[1:]):
        if spec["type"] == "conv":
            flops += 2 * conv_multiply_adds((spec["filters"], in_shape[0], *spec["kernel"]), out_shape[1:])
        elif spec["type"] == "dense":
            flops += 2 * in_shape[0] * spec["units"]
    return flops


# Optimiser of each preset as the training script runs it: (learning rate, momentum).
PRESET_OPTIMISER = {"seed": (0.1, 0.0), "lenet5": (0.05, 0.9)}


def training_step(preset, backend):
    """One optimiser step of the preset, as fcnn.training takes it (PRESET_OPTIMISER settings).

    Returns step(params, velocity, x, labels) -> (params, velocity, loss, logits).
    """
    lr, momentum = PRESET_OPTIMISER[preset]

    def step(params, velocity, x, labels):
        return train_step(params, velocity, x, labels, preset, backend, lr, momentum)

    return step


def random_batch(rng, batch):
    """MNIST-like inputs: float32 images in [0, 1) (batch, 1, 28, 28) and labels in 0..9."""
    return rng.random((batch, *MNIST_SHAPE), dtype=np.float32), rng.integers(0, 10, batch)
