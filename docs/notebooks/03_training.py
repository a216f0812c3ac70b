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
# # 3. Training, with its pictures
#
# Training is four pure functions in a loop: `forward` (output and a cache), the loss and its
# gradient with respect to the logits, `backward` (gradients shaped like the parameters) and
# `sgd_step` (new parameters). Nothing is changed in place, so every step's parameters can be
# kept, compared or plotted. Here the seed net trains for one pass over 12,000 images.

# %%
import matplotlib.pyplot as plt
import numpy as np

import fcnn
from fcnn.plots import confusion_matrix

x_train, y_train, x_test, y_test = fcnn.load_mnist()
x, y = fcnn.scale(x_train[:12_000]), y_train[:12_000]
backend = fcnn.default_backend()

rng = np.random.default_rng(0)
params = fcnn.init("seed", seed=rng)
losses = []
for start in range(0, len(x), 32):
    batch = slice(start, start + 32)
    logits, cache = fcnn.forward(params, x[batch], "seed", backend=backend)
    loss, dlogits = fcnn.softmax_cross_entropy(logits, y[batch])
    params = fcnn.sgd_step(params, fcnn.backward(params, cache, dlogits), lr=0.2)
    losses.append(loss)

predictions = fcnn.predict(params, fcnn.scale(x_test), "seed", backend=backend)
print(f"{len(losses)} steps on the {backend} backend; test accuracy {np.mean(predictions == y_test):.2%}")

# %% [markdown]
# The loss per step, and its moving average:

# %%
smoothed = np.convolve(losses, np.ones(25) / 25, mode="valid")
plt.figure(figsize=(6, 3))
plt.plot(losses, alpha=0.3, label="per step")
plt.plot(np.arange(24, len(losses)), smoothed, label="moving average of 25")
plt.xlabel("step (32 images)")
plt.ylabel("cross-entropy")
plt.legend()
plt.show()

# %% [markdown]
# What the eight filters learned, and what they make of a test digit (the conv output before
# the ReLU; red positive, blue negative):

# %%
w, b = params["conv1"]["w"], params["conv1"]["b"]
digit = fcnn.scale(x_test[:1])[:, None]
maps = fcnn.get_backend(backend).conv2d_forward(digit, w, b)[0]
figure, axes = plt.subplots(2, 8, figsize=(10, 2.8))
for f in range(8):
    for row, image in enumerate((w[f, 0], maps[f])):
        limit = np.max(np.abs(image))
        axes[row, f].imshow(image, cmap="RdBu_r", vmin=-limit, vmax=limit)
        axes[row, f].axis("off")
plt.show()

# %% [markdown]
# Which digits it confuses (rows: the true class, columns: the prediction):

# %%
counts = confusion_matrix(y_test, predictions)
plt.figure(figsize=(4, 4))
plt.imshow(np.log1p(counts), cmap="Blues")
plt.xticks(range(10))
plt.yticks(range(10))
plt.xlabel("predicted")
plt.ylabel("true")
plt.show()
off_diagonal = counts - np.diag(np.diag(counts))
true, predicted = np.unravel_index(np.argmax(off_diagonal), counts.shape)
print(f"most common mistake: {true} taken for {predicted}, {off_diagonal[true, predicted]} times")
