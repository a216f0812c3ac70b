"""numba's njit with its disk cache, made safe: one name per compiled variant, no cache where none can be kept.

numba files a cached function under its qualified name and keys each entry on the signature,
the bytecode and the values a closure captured, but not on the compile options. The qualified
name is also the name of the compiled code's symbols: two kernels made by one closure factory
(one per layer shape) under one name carry the same symbols, and a process that loads both from
the cache runs one with the other's environment (RuntimeError: 'descr' is NULL). So every
variant is named for its options and for the values its closure captured.
"""

import functools
import warnings

import numba


class NumbaCacheWarning(UserWarning):
    """numba cannot keep its disk cache here: fcnn compiles without it."""


def variant_name(name, function, options):
    """`name`, then each option and each value `function`'s closure captured, as one identifier.

    variant_name("kernel", f, {"parallel": True, "fastmath": {"contract"}}) for f capturing C = 1:
    "kernel_fastmath-contract_parallel_C1". Only numbers, strings and booleans may be captured:
    the name must say everything the compiled code depends on.
    """
    parts = [name]
    for key, value in sorted(options.items()):
        if value is True:
            parts.append(key)
        elif isinstance(value, (set, frozenset, list, tuple)):
            parts.append("-".join([key, *sorted(value)]))
        else:
            parts.append(f"{key}-{value}")
    captured = zip(function.__code__.co_freevars, function.__closure__ or ())
    for variable, cell in sorted(captured):
        value = cell.cell_contents
        if not isinstance(value, (int, float, str)):
            raise TypeError(f"{name}: a cached kernel may capture numbers only; {variable} is {type(value).__name__}")
        parts.append(f"{variable}{value}")
    return "_".join(parts)


def compile_variant(function, name, **options):
    """numba.njit(cache=True, **options) of `function`, under the qualified name variant_name(name, ...).

    Where numba finds no writable place for its cache (a read-only install and an unwritable
    home or NUMBA_CACHE_DIR), the function is compiled without the disk cache, and a
    NumbaCacheWarning says so once per process.
    """
    function.__qualname__ = variant_name(name, function, options)
    try:
        return numba.njit(cache=True, **options)(function)
    except RuntimeError as error:
        if "no locator available" not in str(error):
            raise
        _warn_once()
        return numba.njit(**options)(function)


def cached(**options):
    """Decorator: compile_variant(function, function.__qualname__, **options)."""
    return lambda function: compile_variant(function, function.__qualname__, **options)


@functools.cache
def _warn_once():
    warnings.warn(
        "numba has no writable place for its disk cache (numba: 'cannot cache function ...: no locator "
        "available'; neither fcnn's folder, NUMBA_CACHE_DIR nor the home directory can be written). "
        "fcnn compiles its kernels without the cache, anew in every process; set NUMBA_CACHE_DIR "
        "to a writable directory to keep them.",
        NumbaCacheWarning,
        stacklevel=4,
    )
