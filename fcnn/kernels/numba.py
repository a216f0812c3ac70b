"""The loop kernels of fcnn.kernels.loop, compiled to machine code by numba.

One source: nothing here re-implements a kernel. Each function of loop.py is compiled with
`numba.prange` in place of its `prange`, so the loops marked there run in parallel, and
the compiled code is cached on disk so a second run starts without recompiling.
"""

import types

import numba

from fcnn.kernels import loop


def _compile(function, namespace, **options):
    """njit `function` so that its global names resolve in `namespace` instead of loop.py."""
    rebound = types.FunctionType(
        function.__code__, namespace, function.__name__, function.__defaults__
    )
    rebound.__qualname__ = function.__qualname__
    return numba.njit(cache=True, **options)(rebound)


# loop.py's globals, with the compiled helpers and numba's parallel range swapped in.
# Every kernel is compiled once, with one set of options: numba's disk cache is keyed
# on the function, not on its options, so two variants of one function would collide.
_namespace = dict(vars(loop), prange=numba.prange)
_namespace["output_size"] = _compile(loop.output_size, _namespace)
_namespace["zero_pad"] = _compile(loop.zero_pad, _namespace)

conv2d_forward = _compile(loop.conv2d_forward, _namespace, parallel=True)
# fastmath lets the dw and db sums be reordered into SIMD lanes: 3-4x faster, and the
# result differs from the strict left-to-right sum only by float rounding.
conv2d_backward = _compile(loop.conv2d_backward, _namespace, parallel=True, fastmath=True)
maxpool2d_forward = _compile(loop.maxpool2d_forward, _namespace, parallel=True)
maxpool2d_backward = _compile(loop.maxpool2d_backward, _namespace, parallel=True)
