"""Tuned conv2d forward: a stride-1 kernel compiled per layer shape, the top of the ladder (fcnn.ladder).

Each padded input plane is read as one flat "wide row" of pitch Wp, so output pixel p = i*Wp + j
meets input pixel p + ki*Wp + kj through tap (ki, kj): one long unit-stride loop over p that LLVM
vectorises, where loop.py's rows are W' (10 for LeNet-5's second conv) long. The sizes are
compile-time constants, so the KH x KW taps unroll inside that loop and each output vector keeps
its running sum in a register; two filters share every input load. docs/ladder.md has the steps
and their figures. Other strides go to the numba backend's compiled loop (same numbers, slower).
"""

import functools

import numba
import numpy as np

from fcnn.kernels import compiled_loop
from fcnn.kernels.numba_cache import compile_variant


def conv2d_forward(x, w, b, stride=1, pad=0):
    """Convolution layer (cross-correlation), forward, tuned.

    out[n, f, i, j] = b[f] + sum_{c, ki, kj} w[f, c, ki, kj] * xpad[n, c, i*stride + ki, j*stride + kj]

    x (N, C, H, W), w (F, C, KH, KW), b (F,) -> out (N, F, H', W'),
    H' = 1 + (H + 2*pad - KH) // stride, W' = 1 + (W + 2*pad - KW) // stride.
    C-contiguous arrays of one float dtype; stride and pad ints (the registry sees to that).
    """
    if stride != 1:
        return compiled_loop.conv2d_forward(x, w, b, stride, pad)
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    return stride1_kernel(C, H, W, F, KH, KW, pad)(x, w, b)


@functools.cache
def stride1_kernel(C, H, W, F, KH, KW, pad):
    """The compiled stride-1 kernel for one layer shape: (x, w, b) -> out, any batch size N.

    The sizes are captured by the closure, so numba compiles them in as constants: LLVM knows
    every trip count, unrolls the KH x KW taps and needs no remainder checks for them. The
    compiled kernel is named for them too (tuned_conv2d_forward_stride1_..._C1_..._pad0), so
    the disk cache keeps one entry per shape, and no two shapes share their code's symbols.
    """
    Hp, Wp = H + 2 * pad, W + 2 * pad
    H_out, W_out = Hp - KH + 1, Wp - KW + 1
    # Wide positions p = i*Wp + j of the output; the last row's Wp - W' junk columns are not
    # needed, and would read past the end of the padded plane.
    P = (H_out - 1) * Wp + W_out

    def kernel(x, w, b):
        N = x.shape[0]
        out = np.empty((N, F, H_out, W_out), dtype=x.dtype)
        # One parallel region per call, one image per iteration: 64 images keep 2 cores busy.
        for n in numba.prange(N):
            xpad = np.zeros((C, Hp * Wp), dtype=x.dtype)
            for c in range(C):
                for y in range(H):
                    for x_ in range(W):
                        xpad[c, (y + pad) * Wp + x_ + pad] = x[n, c, y, x_]
            wide = np.empty((2, P), dtype=x.dtype)
            # Two filters at a time: each input load feeds two FMAs, and the two running sums
            # are two independent dependency chains, so the FMA latency is hidden. (Four
            # filters made the unrolled body too large for LLVM to vectorise; see the ladder.)
            # An odd F computes its last filter twice, as f0 and f1: same result, written twice.
            for f0 in range(0, F, 2):
                f1 = min(f0 + 1, F - 1)
                for p in range(P):
                    wide[0, p] = b[f0]
                    wide[1, p] = b[f1]
                for c in range(C):
                    # The vectorised loop: 8 (float32) or 4 (float64) positions p per step.
                    # Its KH*KW taps unroll in it, so the sums stay in registers over a whole
                    # channel: one load and one store of `wide` per channel, not per tap.
                    for p in range(P):
                        sum0 = wide[0, p]
                        sum1 = wide[1, p]
                        for ki in range(KH):
                            for kj in range(KW):
                                pixel = xpad[c, p + ki * Wp + kj]
                                sum0 += w[f0, c, ki, kj] * pixel
                                sum1 += w[f1, c, ki, kj] * pixel
                        wide[0, p] = sum0
                        wide[1, p] = sum1
                for i in range(H_out):
                    for j in range(W_out):
                        out[n, f0, i, j] = wide[0, i * Wp + j]
                        out[n, f1, i, j] = wide[1, i * Wp + j]
        return out

    return compile_variant(
        kernel, "tuned_conv2d_forward_stride1", parallel=True, fastmath={"contract"}, error_model="numpy"
    )
