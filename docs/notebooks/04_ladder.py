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
# # 4. The ladder: from the readable loop to the fast one
#
# `fcnn.ladder.RUNGS` lists the convolution forward (each a `Rung`: its name, its kernel and the rung it
# builds on) from `loop.py`'s nested loops, compiled as
# they are, to the tuned backend's kernel, one transformation per rung. Every rung has the kernel
# contract's signature and gives `loop`'s numbers. [docs/ladder.md](../ladder.md) says what
# each step changes and why it helps (or, for one, why it did not); here they run on the
# shape where the time goes in LeNet-5, its second convolution (6 -> 16 channels, 5x5, on 14x14
# maps).

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

import fcnn
from fcnn.ladder import RUNGS, side_branches

rng = np.random.default_rng(0)
x = rng.standard_normal((32, 6, 14, 14)).astype(np.float32)
w = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
b = rng.standard_normal(16).astype(np.float32)
reference = fcnn.get_backend("numpy").conv2d_forward(x, w, b)


def best_time(function, repeats=30):
    """The fastest of `repeats` calls, in seconds (after one call that compiles)."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


names, per_image = [], []
for rung in RUNGS:
    out = rung.function(x, w, b, 1, 0)
    assert np.allclose(out, reference, rtol=1e-4, atol=1e-4), rung.name
    names.append(rung.name)
    per_image.append(best_time(lambda: rung.function(x, w, b, 1, 0)) * 1e6 / len(x))
    print(f"{rung.name:28s} {per_image[-1]:8.2f} us per image   (builds on: {rung.builds_on})")
print("side branches (kept for what they teach):", side_branches(RUNGS) or "none: each rung builds on the one before")

# %% [markdown]
# On a shared machine the figures move from run to run; the order of the rungs mostly does not.

# %%
plt.figure(figsize=(6, 3))
plt.barh(names[::-1], per_image[::-1])
plt.xlabel("us per image (lower is faster)")
plt.tight_layout()
plt.show()
