"""The registry: every exercise of every family module, in the order the exercises are best done.

The reference is the library's own function, imported, never copied: its signature and docstring
are the contract the stub hands out and the checker enforces.
"""

from fcnn.exercises import batchnorm_dropout_avgpool, conv, dense, optimisers, pool, relu, softmax

# One line per family module; each module's EXERCISES list holds its entries in order.
FAMILIES = [conv, pool, relu, dense, softmax, batchnorm_dropout_avgpool, optimisers]

KERNELS = {exercise.name: exercise for family in FAMILIES for exercise in family.EXERCISES}


def get_exercise(kernel):
    """The Exercise called `kernel`; ValueError naming the choices for an unknown one."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}; got {kernel!r}")
    return KERNELS[kernel]
