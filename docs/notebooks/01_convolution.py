# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1. A convolution by hand
#
# A convolution layer slides each filter over the image and, at every position, sums the
# products of the filter's taps with the pixels under it, then adds the filter's bias:
#
# $$\text{out}[n, f, i, j] = b[f] + \sum_{c, k_i, k_j} x[n, c, i s + k_i, j s + k_j]\; w[f, c, k_i, k_j]$$
#
# fcnn's `loop` backend is that formula written as nested loops. Here it is, as the library runs it:

# %%
import inspect
import time

import numpy as np

import fcnn
from fcnn.kernels import loop

print(inspect.getsource(loop.conv2d_forward))

# %% [markdown]
# The same contract has four implementations: `loop` (the source above, run by Python),
# `numba` (the *same* source compiled by `numba.njit`), `numpy` (vectorised: every window at
# once, then one matrix product) and `tuned` (numba kernels rewritten for speed). They give the
# same numbers:

# %%
rng = np.random.default_rng(0)
x = rng.random((16, 1, 28, 28), dtype=np.float32)          # 16 MNIST-sized images
w = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)   # the seed net's 8 filters, 3x3
b = rng.standard_normal(8).astype(np.float32)

reference = fcnn.get_backend("loop").conv2d_forward(x, w, b)
for name in fcnn.available_backends():
    out = fcnn.get_backend(name).conv2d_forward(x, w, b)
    print(f"{name:6s} output {out.shape}, largest difference from loop: {np.max(np.abs(out - reference)):.1e}")


# %% [markdown]
# And what each costs, timed here (the best of a few calls, after a first call that compiles the
# numba kernels):

# %%
def best_time(function, repeats):
    """The fastest of `repeats` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


seconds = {}
for name in fcnn.available_backends():
    conv = fcnn.get_backend(name).conv2d_forward
    seconds[name] = best_time(lambda: conv(x, w, b), repeats=1 if name == "loop" else 20)
for name, t in seconds.items():
    print(f"{name:6s} {t * 1e6 / len(x):9.1f} us per image   ({seconds['loop'] / t:7.0f}x loop)")

# %% [markdown]
# Compiling the loop buys two to three orders of magnitude; vectorising with NumPy buys about
# as much without a compiler; the tuned kernels, which change the loops' order and keep the
# filter taps in registers, buy more again. [docs/ladder.md](../ladder.md) walks that road one
# measured step at a time, and notebook 4 runs it.
