"""The exercisable kernels: for each, the library function it is held to, its outputs, its ladder and its known mistakes.

The reference is the library's own function, imported, never copied: its signature and docstring
are the contract the stub hands out and the checker enforces.
"""

from dataclasses import dataclass
from typing import Callable

from fcnn import layers, losses
from fcnn.exercises import ladders, mistakes
from fcnn.kernels import loop


@dataclass(frozen=True)
class Exercise:
    """One kernel to practise.

    outputs: names of what the kernel returns, in order (one name: a single array, not a tuple);
    scalars: those of the outputs that are plain numbers. cases: () -> the ladder, simplest first.
    shape_rule: said when an output's shape is off by one. error_hints: (exception type, text in
    its message, hint) for exceptions with a known cause. nonfinite_hint: said when the learner
    returns inf or nan where the reference is finite.
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


KERNELS = {
    exercise.name: exercise
    for exercise in [
        Exercise("conv2d_forward", loop.conv2d_forward, ("out",), ladders.conv2d_forward_cases,
                 tuple(mistakes.CONV2D_FORWARD), shape_rule=mistakes.CONV2D_SHAPE_RULE),
        Exercise("conv2d_backward", loop.conv2d_backward, ("dx", "dw", "db"), ladders.conv2d_backward_cases,
                 tuple(mistakes.CONV2D_BACKWARD)),
        Exercise("maxpool2d_forward", loop.maxpool2d_forward, ("out",), ladders.maxpool2d_forward_cases,
                 tuple(mistakes.MAXPOOL2D_FORWARD), shape_rule=mistakes.MAXPOOL2D_SHAPE_RULE),
        Exercise("maxpool2d_backward", loop.maxpool2d_backward, ("dx",), ladders.maxpool2d_backward_cases,
                 tuple(mistakes.MAXPOOL2D_BACKWARD)),
        Exercise("relu_forward", layers.relu_forward, ("out",), ladders.relu_forward_cases,
                 tuple(mistakes.RELU_FORWARD)),
        Exercise("relu_backward", layers.relu_backward, ("dx",), ladders.relu_backward_cases,
                 tuple(mistakes.RELU_BACKWARD)),
        Exercise("dense_forward", layers.dense_forward, ("out",), ladders.dense_forward_cases,
                 tuple(mistakes.DENSE_FORWARD),
                 error_hints=((ValueError, "matmul", "a matrix product has mismatched shapes: "
                               "out = x @ w + b is (N, D) @ (D, M)."),)),
        Exercise("dense_backward", layers.dense_backward, ("dx", "dw", "db"), ladders.dense_backward_cases,
                 tuple(mistakes.DENSE_BACKWARD),
                 error_hints=((ValueError, "matmul", mistakes.MATMUL_HINT),)),
        Exercise("softmax_cross_entropy", losses.softmax_cross_entropy, ("loss", "dlogits"),
                 ladders.softmax_cross_entropy_cases, tuple(mistakes.SOFTMAX_CROSS_ENTROPY),
                 scalars=("loss",), nonfinite_hint=mistakes.OVERFLOW_HINT),
    ]
}


def get_exercise(kernel):
    """The Exercise called `kernel`; ValueError naming the choices for an unknown one."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}; got {kernel!r}")
    return KERNELS[kernel]
