"""The loop kernels of fcnn.kernels.loop, compiled to machine code by numba.

One source: nothing here re-implements a kernel. Each function of loop.py is compiled as it
stands, and the compiled code is cached on disk so a second run starts without recompiling.
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


def _compile_as_part_of_loop(function):
    """njit a wrapper of loop.py's kernels, cached as if it lived in loop.py.

    numba's disk cache keys a function on its own source file and does not look at what it
    calls. Giving the wrapper loop.py's file means that editing loop.py recompiles the
    wrapper too, instead of silently running the kernel it inlined from the old file.
    """
    code = function.__code__.replace(co_filename=loop.__file__)
    rebound = types.FunctionType(code, function.__globals__, function.__name__, function.__defaults__)
    rebound.__qualname__ = function.__qualname__
    return numba.njit(cache=True)(rebound)


# loop.py's globals with the compiled helpers swapped in. `prange` stays plain `range`:
# on this project's 2-core machines two threads bought little at batch 32-64 when the
# machine was idle, and cost 10-50x when another process was busy (every parallel loop
# ends in a barrier that waits for a thread the OS has put to sleep). Every kernel is
# compiled once, with one set of options: numba's disk cache is keyed on the function,
# not on its options, so two variants of one function would collide.
_namespace = dict(vars(loop))
_namespace["output_size"] = _compile(loop.output_size, _namespace)
_namespace["zero_pad"] = _compile(loop.zero_pad, _namespace)

conv2d_forward = _compile(loop.conv2d_forward, _namespace)
# fastmath lets the dw and db sums be reordered into SIMD lanes: 3-4x faster, and the
# result differs from the strict left-to-right sum only by float rounding.
conv2d_backward = _compile(loop.conv2d_backward, _namespace, fastmath=True)
maxpool2d_forward = _compile(loop.maxpool2d_forward, _namespace)
maxpool2d_backward = _compile(loop.maxpool2d_backward, _namespace)


# Fast paths for the common shapes, which the registry calls when the arguments match:
# stride-1 convolutions (every preset) and 2x2 pools of stride 2. Called with a literal
# stride, the kernel is inlined and LLVM sees that `j * stride + kj` walks a row one element
# at a time, so it vectorises the row instead of gathering element by element: 3-5x for
# conv2d, 8x / 2x for maxpool2d forward / backward on the presets' shapes.
@_compile_as_part_of_loop
def conv2d_forward_stride1(x, w, b, pad):
    return conv2d_forward(x, w, b, 1, pad)


@_compile_as_part_of_loop
def conv2d_backward_stride1(dout, x, w, pad):
    return conv2d_backward(dout, x, w, 1, pad)


@_compile_as_part_of_loop
def maxpool2d_forward_2x2(x):
    return maxpool2d_forward(x, 2, 2)


@_compile_as_part_of_loop
def maxpool2d_backward_2x2(dout, x):
    return maxpool2d_backward(dout, x, 2, 2)
