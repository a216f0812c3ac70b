"""Conv cases shared by the kernels' tests (test_kernels.py, test_ladder.py, test_tuned.py,
test_tuned_machine.py): the presets' layer shapes, and the random arrays of a case."""

import numpy as np

# The presets' conv layers, (x shape, w shape, pad): the seed conv at the batch it trains with,
# LeNet-5's at 64 images (twice its training batch, as the benchmarks time it too). Full
# batches and filter counts: every register block and tile is filled.
PRESET_CONVS = {
    "seed conv1": ((32, 1, 28, 28), (8, 1, 3, 3), 0),
    "lenet5 conv1": ((64, 1, 28, 28), (6, 1, 5, 5), 2),
    "lenet5 conv2": ((64, 6, 14, 14), (16, 6, 5, 5), 0),
}


def conv_arrays(case, dtype=np.float64, seed=0):
    """(x, w, b, stride, pad) of a case (N, C, H, W, F, KH, KW, stride, pad): standard normal
    values, drawn in that order from default_rng(seed) in float64, then cast to dtype.

    seed: an int, or a Generator to draw from (and go on drawing from, for a dout).
    """
    N, C, H, W, F, KH, KW, stride, pad = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, KH, KW)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    return x, w, b, stride, pad


def preset_conv_arrays(name, seed):
    """(x, w, b, pad) of PRESET_CONVS[name] in float32, as a preset trains: standard normal
    values drawn in that order from default_rng(seed) (an int or a Generator, as in conv_arrays)."""
    x_shape, w_shape, pad = PRESET_CONVS[name]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32)
    b = rng.standard_normal(w_shape[0], dtype=np.float32)
    return x, w, b, pad
