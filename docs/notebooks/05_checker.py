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
# # 5. Write a kernel, and have the checker grade it
#
# `python -m fcnn.exercises new NAME` prints a stub: the signature and the docstring (formula
# and shapes) of the library's own kernel, with a body to replace. `check FILE` runs every
# kernel the file defines against the reference on a ladder of cases, from one tiny input to
# float32 batches and finite-difference gradients, and names the first mistake it recognises.

# %%
import pathlib
import subprocess
import sys
import tempfile


def exercises(*arguments):
    """Run `python -m fcnn.exercises ARGUMENTS` and show what it prints."""
    result = subprocess.run([sys.executable, "-m", "fcnn.exercises", *arguments], capture_output=True, text=True)
    print(result.stdout + result.stderr, end="")
    print(f"(exit status {result.returncode})")


exercises("list")

# %% [markdown]
# The stub for the ReLU's backward pass:

# %%
folder = pathlib.Path(tempfile.mkdtemp())
stub = subprocess.run(
    [sys.executable, "-m", "fcnn.exercises", "new", "relu_backward"], capture_output=True, text=True, check=True
).stdout
print(stub)

# %% [markdown]
# A first try that makes a classic slip: multiplying by the ReLU's output, `max(x, 0)`, where its
# slope belongs.

# %%
attempt = folder / "my_relu.py"
attempt.write_text(
    "import numpy as np\n\n"
    "def relu_backward(dout, x):\n"
    "    return dout * np.maximum(x, 0)\n"
)
exercises("check", str(attempt))

# %% [markdown]
# The slope of `max(x, 0)` is 1 where `x > 0` and 0 elsewhere:

# %%
attempt.write_text(
    "import numpy as np\n\n"
    "def relu_backward(dout, x):\n"
    "    return np.where(x > 0, dout, 0).astype(dout.dtype)\n"
)
exercises("check", str(attempt))
