"""The loop kernels of fcnn.kernels.loop, compiled to machine code by numba.

One source: nothing here re-implements a kernel. Each function of loop.py is compiled with
`numba.prange` in place of its `prange`, so the loops marked there run in parallel, and
the compiled code is cached on disk so a second run starts without recompiling.
"""

import types

import numba

from fcnn.kernels import loop


def _compile(function, namespace, **options):
    """njit `function` so that its global names resolve in `namespace` instead of loop.py.

    numba's disk cache names an entry after the function, not after its options: the
    options and their values go into the name (conv2d_forward_fastmath-contract_parallel),
    so that a cache written with other options is never loaded in their place.
    """
    rebound = types.FunctionType(
        function.__code__, namespace, function.__name__, function.__defaults__
    )
    names = [key if value is True else "-".join([key, *sorted(value)]) for key, value in sorted(options.items())]
    rebound.__qualname__ = "_".join([function.__qualname__, *names])
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


# loop.py's globals, with the compiled helpers and numba's parallel range swapped in.
# Two threads halve the kernels' time on an idle 2-core machine; on a busy one each
# parallel loop's closing barrier waits for a thread the OS has put to sleep, and the
# kernels ran 10-50x slower. There, run with NUMBA_NUM_THREADS=1 (or numba.set_num_threads(1)).
_namespace = dict(vars(loop), prange=numba.prange)
_namespace["output_size"] = _compile(loop.output_size, _namespace)
_namespace["zero_pad"] = _compile(loop.zero_pad, _namespace)

# fastmath={"contract"} lets each `a += w * x` be one fused multiply-add (rounded once
# instead of twice), nothing else. On the presets' convolutions it measured from as fast
# (within 1 %) to 10 % faster, varying from day to day on a shared machine.
conv2d_forward = _compile(loop.conv2d_forward, _namespace, parallel=True, fastmath={"contract"})
# Full fastmath also lets the dw and db sums be reordered into SIMD lanes: 3-4x faster, and
# the result differs from the strict left-to-right sum only by float rounding.
conv2d_backward_weights = _compile(loop.conv2d_backward_weights, _namespace, parallel=True, fastmath=True)
conv2d_backward_input = _compile(loop.conv2d_backward_input, _namespace, parallel=True, fastmath={"contract"})
_namespace["conv2d_backward_weights"] = conv2d_backward_weights
_namespace["conv2d_backward_input"] = conv2d_backward_input
conv2d_backward = _compile(loop.conv2d_backward, _namespace)
maxpool2d_forward = _compile(loop.maxpool2d_forward, _namespace, parallel=True)
maxpool2d_backward = _compile(loop.maxpool2d_backward, _namespace, parallel=True)


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
def conv2d_backward_weights_stride1(dout, x, w, pad):
    return conv2d_backward_weights(dout, x, w, 1, pad)


@_compile_as_part_of_loop
def maxpool2d_forward_2x2(x):
    return maxpool2d_forward(x, 2, 2)


@_compile_as_part_of_loop
def maxpool2d_backward_2x2(dout, x):
    return maxpool2d_backward(dout, x, 2, 2)
