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
# # 2. Backpropagation and the gradient check
#
# A backward kernel takes the gradient of the loss with respect to a layer's output, `dout`,
# and returns the gradients with respect to the layer's input and parameters. For the
# convolution, every product `x * w` in the forward sum sends `dout` back to both factors:
#
# $$dw[f, c, k_i, k_j] = \sum_{n, i, j} dout[n, f, i, j]\; x[n, c, i s + k_i, j s + k_j], \qquad db[f] = \sum_{n, i, j} dout[n, f, i, j]$$
#
# and `dx` collects `w * dout` at every pixel each window touched.

# %%
import inspect

import numpy as np

import fcnn
from fcnn.gradcheck import numerical_gradient, relative_error
from fcnn.kernels import loop

print(inspect.getsource(loop.conv2d_backward))

# %% [markdown]
# How do we know it is right? Finite differences: nudge one input by a tiny `eps` either way
# and see how the loss moves, $\partial L / \partial a \approx (L(a + \epsilon) - L(a - \epsilon)) / 2\epsilon$.
# In float64 that agrees with a correct analytic gradient to about 1e-9, and with a wrong one
# not at all. Take the loss $L = \sum \text{out} \cdot r$ for a fixed random `r`, so that
# $dout = r$:

# %%
rng = np.random.default_rng(1)
x = rng.standard_normal((2, 3, 7, 7))
w = rng.standard_normal((4, 3, 3, 3))
b = rng.standard_normal(4)
r = rng.standard_normal(loop.conv2d_forward(x, w, b, stride=2, pad=1).shape)


def loss():
    return float(np.sum(loop.conv2d_forward(x, w, b, stride=2, pad=1) * r))


dx, dw, db = loop.conv2d_backward(r, x, w, stride=2, pad=1)
for name, array, analytic in [("x", x, dx), ("w", w, dw), ("b", b, db)]:
    print(f"d{name}: relative error {relative_error(analytic, numerical_gradient(loss, array)):.1e}")

# %% [markdown]
# The same check, on a whole network: the seed net (conv -> ReLU -> max-pool -> dense ->
# softmax cross-entropy), float64, on four images, a few entries of each gradient.
#
# One trap first. `init` starts the biases at 0, and an MNIST digit is mostly background of
# exactly 0, so there the conv output is exactly 0: the ReLU's kink. A nudge of `eps` to a
# bias then crosses the kink, the loss is not differentiable there, and the finite difference
# disagrees with any analytic gradient. Small random biases keep the check away from it.

# %%
x_train, y_train, _, _ = fcnn.load_mnist()
images, labels = fcnn.scale(x_train[:4]).astype(np.float64), y_train[:4]
params = fcnn.init("seed", seed=0, dtype="float64")
params = {name: {**arrays, "b": rng.uniform(0.05, 0.15, arrays["b"].shape)} for name, arrays in params.items()}
_, grads, _ = fcnn.loss_and_grads(params, images, labels, "seed", backend="numpy")

for layer, arrays in params.items():
    for key, array in arrays.items():
        picks = [tuple(int(i) for i in rng.integers(0, array.shape)) for _ in range(5)]
        numeric = numerical_gradient(
            lambda: fcnn.loss_and_grads(params, images, labels, "seed", backend="numpy")[0], array, picks
        )
        print(f"{layer}.{key}: relative error {relative_error(grads[layer][key], numeric):.1e}")
