"""Stubs to start an exercise from: the reference's signature and docstring, and a body still to write.

Both come from the reference function itself (inspect), so the contract is written in one place.
"""

import inspect
import textwrap

from fcnn.exercises.registry import get_exercise

STUB = '''"""Exercise: write {kernel} yourself.

Check it with:  python -m fcnn.exercises check <this file>
"""

import numpy as np


def {kernel}{signature}:
{docstring}
    # TODO: compute {outputs} as the docstring says{tuple_note}.
    raise NotImplementedError("{kernel}: not implemented yet")
'''


def stub(kernel):
    """Python source of a stub for `kernel`: the reference's signature and docstring, a body to write."""
    exercise = get_exercise(kernel)
    reference = exercise.reference
    doc = inspect.getdoc(reference)
    docstring = '"""' + doc + ('\n"""' if "\n" in doc else '"""')
    return STUB.format(
        kernel=kernel,
        signature=inspect.signature(reference),
        docstring=textwrap.indent(docstring, "    "),
        outputs=", ".join(exercise.outputs),
        tuple_note=", and return them as a tuple" if len(exercise.outputs) > 1 else "",
    )
