"""NUMBA_NUM_THREADS, checked before numba reads it: numba's own refusal of 0 is a traceback that
does not name the variable, it takes garbage with a warning, and a count far above the cores
makes every step wait on threads that cannot run (66 times slower, measured in issue 18)."""

import os

from fcnn.settings import UsageError

VARIABLE = "NUMBA_NUM_THREADS"


def available_cores():
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_thread_count(environ=os.environ, cores=None):
    """A warning (text) if NUMBA_NUM_THREADS asks for more threads than the cores here, else None.

    Raises UsageError naming the variable if it is set to anything but a whole number >= 1.
    """
    text = environ.get(VARIABLE)
    if text is None:
        return None
    cores = cores or available_cores()
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise UsageError(f"{VARIABLE}={text!r}: must be a whole number >= 1, the threads the compiled "
                         f"kernels use; unset it to use all {cores} cores here")
    if count > cores:
        return (f"warning: {VARIABLE}={count} is more threads than the {cores} cores here: compiled kernels "
                f"then wait on threads that cannot run and train many times slower; set it to {cores} or less")
    return None
