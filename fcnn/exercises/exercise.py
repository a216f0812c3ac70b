"""What an exercise is made of (its entry, its cases, its known mistakes) and the pieces families share.

A family module (conv.py, pool.py, ...) builds its exercises from these; the registry collects them.
"""

from dataclasses import dataclass
from typing import Callable

import numpy as np

from fcnn.gradcheck import numerical_gradient


@dataclass(frozen=True)
class Case:
    """One call of the kernel under test.

    name: the case's name, unique within its exercise (tests and reports refer to it). args: the
    positional arguments, in the case's dtype. expected: args (float64) -> the output to expect;
    None means the reference kernel's output. hint: what this case is the first to test, said
    when a failure matches no known mistake.
    """

    name: str
    args: tuple
    hint: str | None = None
    expected: Callable | None = None


@dataclass(frozen=True)
class Mistake:
    """hint: what to say; output: the kernel's arguments (float64) -> what this mistake returns.

    output returns None when the mistake cannot show on the case's arguments.
    """

    hint: str
    output: Callable


@dataclass(frozen=True)
class Exercise:
    """One kernel to practise.

    reference: the library's function the learner's is held to (its signature and docstring are
    the stub). outputs: names of what the kernel returns, in order (one name: a single array, not
    a tuple); scalars: those of the outputs that are plain numbers. cases: () -> the ladder,
    simplest first. mistakes: known mistakes, tried in order. shape_rule: said when an output's
    shape is off by one. error_hints: (exception type, text in its message, hint) for exceptions
    with a known cause. nonfinite_hint: said when the learner returns inf or nan where the
    reference is finite.
    """

    name: str
    reference: Callable
    outputs: tuple
    cases: Callable
    mistakes: tuple = ()
    scalars: tuple = ()
    shape_rule: str | None = None
    error_hints: tuple = ()
    nonfinite_hint: str | None = None

    @property
    def goal(self):
        """The first line of the reference's docstring."""
        return self.reference.__doc__.strip().splitlines()[0]

    def case_number(self, name):
        """The 1-based position of the case called `name` in the ladder; KeyError naming the cases."""
        names = [case.name for case in self.cases()]
        if name not in names:
            raise KeyError(f"{self.name} has no case {name!r}; its cases: {names}")
        return names.index(name) + 1


# --- pieces the families share ----------------------------------------------------------------

FLOAT32_HINT = "float32 in must give float32 out: create arrays with dtype=x.dtype."
GRADCHECK_HINT = (
    "Your gradient matches the reference on every earlier case but not central differences of "
    "the forward pass here."
)
AVERAGED_HINT = (
    "{name} is averaged over the batch; a layer's backward sums over n (the 1/N of the mean "
    "loss is already inside dout)."
)
FLOAT32_CASE = "float32 in, float32 out"


def random(rng, shape):
    """Uniform values in [-1, 1) of `shape`, float64."""
    return rng.uniform(-1.0, 1.0, size=shape)


def as_float32(args):
    """The same arguments with every float64 array made float32 (integer labels stay as they are)."""
    return tuple(a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a
                 for a in args)


def with_float32_case(cases, like=-1):
    """cases, then FLOAT32_CASE: the arguments of cases[like] in float32."""
    return [*cases, Case(FLOAT32_CASE, as_float32(cases[like].args), FLOAT32_HINT)]


def finite_difference_gradients(forward, dout, *arrays):
    """Gradients of L = sum(forward(*arrays) * dout) with respect to each of `arrays` (float64),
    by central differences: the expected outputs of a backward ladder's last case."""
    def loss():
        return np.sum(forward(*arrays) * dout)

    return tuple(numerical_gradient(loss, array) for array in arrays)


def flip(w):
    """w (..., KH, KW) rotated by 180 degrees."""
    return w[..., ::-1, ::-1]


def transpose(w):
    """w (..., KH, KW) -> (..., KW, KH)."""
    return w.swapaxes(-1, -2)


def square(w):
    return w.shape[-1] == w.shape[-2]


def replace(outputs, position, value):
    """outputs with outputs[position] replaced by value."""
    return tuple(value if k == position else output for k, output in enumerate(outputs))


def bias_gradient_mistakes(reference, position, formula, shape):
    """Mistakes in a bias gradient db = dout summed over n (and over positions), at outputs[position]."""

    def db_from(per_image_sums):
        """(dout, *rest) -> the reference outputs with db replaced by per_image_sums(sums (N, F))."""
        def output(dout, *rest):
            sums = dout.reshape(dout.shape[0], dout.shape[1], -1).sum(axis=2)  # (N, F) or (N, M)
            return replace(reference(dout, *rest), position, per_image_sums(sums))
        return output

    summed = f"db must be summed over the batch too, {formula}"
    return [
        Mistake(f"{summed}: it looks like only the first one in the batch counted.", db_from(lambda s: s[0])),
        Mistake(f"{summed}: it looks like only the last one in the batch counted.", db_from(lambda s: s[-1])),
        Mistake(AVERAGED_HINT.format(name="db"), db_from(lambda s: s.mean(axis=0))),
        Mistake(f"db still has a batch axis: sum over n as well, so that db has the shape {shape}.",
                db_from(lambda s: s)),
    ]
