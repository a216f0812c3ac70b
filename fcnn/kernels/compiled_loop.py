"""The numba backend: the loop kernels of fcnn.kernels.loop, compiled to machine code by numba.

One source: nothing here re-implements a kernel. Each function of loop.py is compiled with
`numba.prange` in place of its `prange`, so the loops marked there run in parallel, and
the compiled code is cached on disk so a second run starts without recompiling. The fast
paths at the end compile the same kernels again with their stride fixed.
"""

import types

import numba

from fcnn.kernels import loop
from fcnn.kernels.numba_cache import compile_variant


def _rebound(function, namespace):
    """A copy of `function` whose global names resolve in `namespace` instead of its module."""
    return types.FunctionType(function.__code__, namespace, function.__name__, function.__defaults__)


def _compile(function, namespace, **options):
    """njit `function`, cached, so that its global names resolve in `namespace` instead of loop.py.

    Named for its options (conv2d_forward_fastmath-contract_parallel, see numba_cache.py), so
    that a cache written with other options is never loaded in their place.
    """
    return compile_variant(_rebound(function, namespace), function.__qualname__, **options)


def _fast_path(kernel, **options):
    """Decorator: njit a call of loop.py's `kernel` with constant arguments, `kernel` inlined.

    The kernel's body is compiled into the decorated function, with `options`, so that LLVM
    sees the constants. It is inlined, not called: numba's disk cache can store a call from a
    cached function into a parallel one such that a later process crashes (segfault) loading
    it, when the caller was compiled while the callee came from the cache (numba#8578). The
    fast path is cached as part of loop.py, so editing loop.py recompiles it with the kernel.
    """
    namespace = {**_namespace, kernel.__name__: numba.njit(inline="always")(_rebound(kernel, _namespace))}

    def compile_with_kernel_inlined(wrapper):
        wrapper.__code__ = wrapper.__code__.replace(co_filename=loop.__file__)
        return _compile(wrapper, namespace, **options)

    return compile_with_kernel_inlined


# loop.py's globals, with the compiled helpers and numba's parallel range swapped in.
# Two threads nearly halve the kernels' time on an idle 2-core machine; on a busy one each
# parallel loop's closing barrier waits for a thread the OS has put to sleep, and the kernels
# run many times slower. There, run with NUMBA_NUM_THREADS=1 (or numba.set_num_threads(1)).
# (Figures: docs/performance.md.)
_namespace = dict(vars(loop), prange=numba.prange)
_namespace["output_size"] = output_size = _compile(loop.output_size, _namespace)
_namespace["zero_pad"] = _compile(loop.zero_pad, _namespace)

# The options of each kernel, shared by its fast path below.
# fastmath={"contract"} lets each `a += w * x` be one fused multiply-add (rounded once
# instead of twice), nothing else: at best a few per cent on the presets' convolutions.
# "reassoc" also lets the dw and db sums be reordered into SIMD lanes, several times
# faster; the result differs from the strict left-to-right sum only by float rounding.
# Not full fastmath: its nnan and ninf let the compiler assume away the NaN and inf that
# loop.py propagates.
REASSOCIATE = {"contract", "reassoc"}
CONV2D_FORWARD = dict(parallel=True, fastmath={"contract"})
CONV2D_BACKWARD_WEIGHTS = dict(parallel=True, fastmath=REASSOCIATE)
CONV2D_BACKWARD_INPUT = dict(parallel=True, fastmath={"contract"})
MAXPOOL2D = dict(parallel=True)

conv2d_forward = _compile(loop.conv2d_forward, _namespace, **CONV2D_FORWARD)
conv2d_backward_weights = _compile(loop.conv2d_backward_weights, _namespace, **CONV2D_BACKWARD_WEIGHTS)
conv2d_backward_input = _compile(loop.conv2d_backward_input, _namespace, **CONV2D_BACKWARD_INPUT)
maxpool2d_forward = _compile(loop.maxpool2d_forward, _namespace, **MAXPOOL2D)
maxpool2d_backward = _compile(loop.maxpool2d_backward, _namespace, **MAXPOOL2D)
# loop.py's conv2d_backward as it is, run by Python: it calls the two compiled halves. (Compiled,
# it would be a cached function calling parallel ones, which numba#8578 can crash.)
conv2d_backward = _rebound(
    loop.conv2d_backward,
    {**_namespace, "conv2d_backward_weights": conv2d_backward_weights, "conv2d_backward_input": conv2d_backward_input},
)


# Fast paths for the common shapes, which the registry calls when the arguments match:
# stride-1 convolutions (every preset) and 2x2 pools of stride 2. With the stride a constant,
# LLVM sees that `j * stride + kj` walks a row one element at a time, so it vectorises the
# row instead of gathering element by element: several times faster on the presets' shapes.
@_fast_path(loop.conv2d_forward, **CONV2D_FORWARD)
def conv2d_forward_stride1(x, w, b, pad):
    return conv2d_forward(x, w, b, 1, pad)


@_fast_path(loop.conv2d_backward_weights, **CONV2D_BACKWARD_WEIGHTS)
def conv2d_backward_weights_stride1(dout, x, w, pad):
    return conv2d_backward_weights(dout, x, w, 1, pad)


@_fast_path(loop.conv2d_backward_input, **CONV2D_BACKWARD_INPUT)
def conv2d_backward_input_stride1(dout, x, w, pad):
    return conv2d_backward_input(dout, x, w, 1, pad)


@_fast_path(loop.maxpool2d_forward, **MAXPOOL2D)
def maxpool2d_forward_2x2(x):
    return maxpool2d_forward(x, 2, 2)


@_fast_path(loop.maxpool2d_backward, **MAXPOOL2D)
def maxpool2d_backward_2x2(dout, x):
    return maxpool2d_backward(dout, x, 2, 2)


def conv2d_backward_stride1(dout, x, w, pad):
    """loop.conv2d_backward at stride 1, from the fast paths of its two halves: dw and db, then dx."""
    dw, db = conv2d_backward_weights_stride1(dout, x, w, pad)
    return conv2d_backward_input_stride1(dout, x, w, pad), dw, db


# ---- Batch norm, dropout and average pooling -------------------------------------------------
# The same one source: loop.py's functions compiled. Batch norm's two kernels call loop.py's
# batchnorm_statistics, whose channel loop is parallel: it is inlined into them rather than
# called, for the cache crash the fast paths above avoid (numba#8578), and also compiled on its
# own for callers outside (a model's running statistics).
# Batch norm's sums are the whole cost: fastmath's reassoc lets each be vectorised (nearly ten
# times faster), arcp and nsz a little more; none of these assumes away NaN or inf, which
# propagate as in loop.py. (Figures: docs/performance.md.)
BATCHNORM = dict(parallel=True, fastmath={"reassoc", "contract", "arcp", "nsz"})
PARALLEL = dict(parallel=True)

_norm_namespace = dict(_namespace)
_norm_namespace["per_channel"] = _compile(loop.per_channel, _norm_namespace)
_norm_namespace["batchnorm_statistics"] = numba.njit(inline="always", fastmath=BATCHNORM["fastmath"])(
    _rebound(loop.batchnorm_statistics, _norm_namespace)
)

batchnorm_statistics = _compile(loop.batchnorm_statistics, _norm_namespace, **BATCHNORM)
batchnorm_forward = _compile(loop.batchnorm_forward, _norm_namespace, **BATCHNORM)
batchnorm_backward = _compile(loop.batchnorm_backward, _norm_namespace, **BATCHNORM)
avgpool2d_forward = _compile(loop.avgpool2d_forward, _namespace, **PARALLEL)
avgpool2d_backward = _compile(loop.avgpool2d_backward, _namespace, **PARALLEL)
dropout_forward_given_draws = _compile(loop.dropout_forward_given_draws, _namespace, **PARALLEL)
dropout_backward = _compile(loop.dropout_backward, _namespace, **PARALLEL)
# numba has no numpy.random.Generator: loop.py's dropout_forward as it is, run by Python, draws
# from rng and hands the draws to the compiled arithmetic.
dropout_forward = _rebound(
    loop.dropout_forward, {**_namespace, "dropout_forward_given_draws": dropout_forward_given_draws}
)


# 2x2 windows of stride 2, as for max-pool: with the window constant the rows are vectorised.
@_fast_path(loop.avgpool2d_forward, **PARALLEL)
def avgpool2d_forward_2x2(x):
    return avgpool2d_forward(x, 2, 2)


@_fast_path(loop.avgpool2d_backward, **PARALLEL)
def avgpool2d_backward_2x2(dout, x):
    return avgpool2d_backward(dout, x, 2, 2)


# ---- Optimisers: the update of one parameter array -------------------------------------------
# Not parallel: the presets' arrays are small (bn's largest, dense1's w, holds 102 400 values),
# and starting a parallel loop and waiting at its closing barrier would cost more than the pass,
# once per array. No fastmath: the updates' bits are NumPy's in every backend. error_model "numpy": a
# division by 0 (eps 0 and a zero moment) gives inf or NaN, as NumPy's does, instead of raising
# ZeroDivisionError, and the loop, without a test on every divisor, is vectorised.
OPTIMISER = dict(error_model="numpy")

adam_update = _compile(loop.adam_update, _namespace, **OPTIMISER)
rmsprop_update = _compile(loop.rmsprop_update, _namespace, **OPTIMISER)
