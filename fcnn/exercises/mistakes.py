"""Known mistakes, each as the output it produces: a hint is given only when the learner's output equals it.

Most are the reference kernel run on transformed inputs or with its output transformed (a kernel
flipped, padding dropped, a sum that stops at the first image); the max-pool tie rules that the
reference cannot express are written out with NumPy windows below. A function returns None when
its mistake cannot show on the case's arguments.
"""

from dataclasses import dataclass
from typing import Callable

import numpy as np

from fcnn import layers, losses
from fcnn.kernels import loop


@dataclass(frozen=True)
class Mistake:
    """hint: what to say; output: the kernel's arguments (float64) -> what this mistake returns."""

    hint: str
    output: Callable


def _flip(w):
    """w (..., KH, KW) rotated by 180 degrees."""
    return w[..., ::-1, ::-1]


def _transpose(w):
    """w (..., KH, KW) -> (..., KW, KH)."""
    return w.swapaxes(-1, -2)


def _square(w):
    return w.shape[-1] == w.shape[-2]


def _replace(outputs, position, value):
    """outputs with outputs[position] replaced by value."""
    return tuple(value if k == position else output for k, output in enumerate(outputs))


AVERAGED_HINT = (
    "{name} is averaged over the batch; a layer's backward sums over n (the 1/N of the mean "
    "loss is already inside dout)."
)


def _bias_gradient_mistakes(reference, position, formula, shape):
    """Mistakes in a bias gradient db = dout summed over n (and over positions), at outputs[position]."""

    def db_from(per_image_sums):
        """(dout, *rest) -> the reference outputs with db replaced by per_image_sums(sums (N, F))."""
        def output(dout, *rest):
            sums = dout.reshape(dout.shape[0], dout.shape[1], -1).sum(axis=2)  # (N, F) or (N, M)
            return _replace(reference(dout, *rest), position, per_image_sums(sums))
        return output

    summed = f"db must be summed over the batch too, {formula}"
    return [
        Mistake(f"{summed}: it looks like only the first one in the batch counted.", db_from(lambda s: s[0])),
        Mistake(f"{summed}: it looks like only the last one in the batch counted.", db_from(lambda s: s[-1])),
        Mistake(AVERAGED_HINT.format(name="db"), db_from(lambda s: s.mean(axis=0))),
        Mistake(f"db still has a batch axis: sum over n as well, so that db has the shape {shape}.",
                db_from(lambda s: s)),
    ]


# --- conv2d -----------------------------------------------------------------------------------

def _conv2d_forward_stride_ignored_cropped(x, w, b, stride, pad):
    """What a forward gives that sizes its output for the stride but steps its windows by 1."""
    if stride == 1:
        return None
    expected = loop.conv2d_forward(x, w, b, stride, pad)
    return loop.conv2d_forward(x, w, b, 1, pad)[:, :, :expected.shape[2], :expected.shape[3]]


STRIDE_HINT = "stride is ignored: window (i, j) starts at row i*stride and column j*stride."
CONV2D_SHAPE_RULE = "H' = 1 + (H + 2*pad - KH) // stride and W' = 1 + (W + 2*pad - KW) // stride"

CONV2D_FORWARD = [
    Mistake("out is a true convolution (kernel rotated by 180 degrees); this layer is a "
            "cross-correlation: w[f, c, ki, kj] multiplies xpad[n, c, i*stride + ki, j*stride + kj], no flip.",
            lambda x, w, b, stride, pad: loop.conv2d_forward(x, _flip(w), b, stride, pad)),
    Mistake("the kernel is transposed: ki (rows, KH) must pair with i*stride + ki, kj (columns, KW) "
            "with j*stride + kj.",
            lambda x, w, b, stride, pad:
                loop.conv2d_forward(x, _transpose(w), b, stride, pad) if _square(w) else None),
    Mistake("padding is forgotten: pad x with `pad` zeros on every side, then slide the kernel over it.",
            lambda x, w, b, stride, pad: loop.conv2d_forward(x, w, b, stride, 0) if pad else None),
    Mistake(STRIDE_HINT,
            lambda x, w, b, stride, pad: loop.conv2d_forward(x, w, b, 1, pad) if stride != 1 else None),
    Mistake(STRIDE_HINT, _conv2d_forward_stride_ignored_cropped),
    Mistake("the bias is missing: out[n, f, i, j] starts from b[f].",
            lambda x, w, b, stride, pad: loop.conv2d_forward(x, w, np.zeros_like(b), stride, pad)),
]


def _conv2d_backward_stride_ignored(dout, x, w, stride, pad):
    """What a backward that steps windows by 1 gives: the stride-1 reference with dout in its top-left."""
    if stride == 1:
        return None
    N, F = dout.shape[:2]
    H1 = loop.output_size(x.shape[2], w.shape[2], 1, pad)
    W1 = loop.output_size(x.shape[3], w.shape[3], 1, pad)
    dout_stride1 = np.zeros((N, F, H1, W1))
    dout_stride1[:, :, :dout.shape[2], :dout.shape[3]] = dout
    return loop.conv2d_backward(dout_stride1, x, w, 1, pad)


def _conv2d_backward_padded_dx(dout, x, w, stride, pad):
    """What a backward gives that returns the gradient of the padded input, border and all."""
    if pad == 0:
        return None
    return _replace(loop.conv2d_backward(dout, x, w, stride, pad), 0,
                    loop.conv2d_backward(dout, loop.zero_pad(x, pad), w, stride, 0)[0])


def _conv2d_dw_averaged(dout, x, w, stride, pad):
    """What a backward gives that divides dw by the batch size."""
    dx, dw, db = loop.conv2d_backward(dout, x, w, stride, pad)
    return dx, dw / dout.shape[0], db


def _conv2d_backward_with_kernel(transform):
    """What a backward gives whose dx saw the kernel as transform(w) (None: not applicable)."""
    def output(dout, x, w, stride, pad):
        w_seen = transform(w)
        if w_seen is None:
            return None
        return _replace(loop.conv2d_backward(dout, x, w, stride, pad), 0,
                        loop.conv2d_backward(dout, x, w_seen, stride, pad)[0])
    return output


def _conv2d_backward_with_dw(transform):
    """What a backward gives whose dw is transform(the right dw) (None: not applicable)."""
    def output(dout, x, w, stride, pad):
        dx, dw, db = loop.conv2d_backward(dout, x, w, stride, pad)
        dw_given = transform(dw)
        return None if dw_given is None else (dx, dw_given, db)
    return output


CONV2D_BACKWARD = [
    Mistake("dw is the right gradient with its KH and KW axes swapped: you stored dw[f, c, kj, ki] where "
            "dw[f, c, ki, kj] belongs (or read x with the row and column offsets exchanged). "
            "Row offset ki goes with i*stride + ki, column offset kj with j*stride + kj.",
            _conv2d_backward_with_dw(lambda dw: _transpose(dw) if _square(dw) else None)),
    Mistake("dw is the right gradient rotated by 180 degrees: dw needs no flip, "
            "dw[f, c, ki, kj] = sum dout[n, f, i, j] * xpad[n, c, i*stride + ki, j*stride + kj].",
            _conv2d_backward_with_dw(_flip)),
    Mistake(AVERAGED_HINT.format(name="dw"), _conv2d_dw_averaged),
    Mistake("dx used the kernel rotated by 180 degrees once too often: in the scatter form "
            "dxpad[n, c, i*stride + ki, j*stride + kj] += w[f, c, ki, kj] * dout[n, f, i, j] "
            "the rotation is already built in.",
            _conv2d_backward_with_kernel(_flip)),
    Mistake("dx used the kernel transposed (KH and KW swapped): ki pairs with rows, kj with columns.",
            _conv2d_backward_with_kernel(lambda w: _transpose(w) if _square(w) else None)),
    Mistake("dx has the shape of the padded input: crop the border off, "
            "dx = dxpad[:, :, pad:pad + H, pad:pad + W].",
            _conv2d_backward_padded_dx),
    Mistake(STRIDE_HINT, _conv2d_backward_stride_ignored),
]

CONV2D_BACKWARD += _bias_gradient_mistakes(
    loop.conv2d_backward, 2, "db[f] = sum_{n, i, j} dout[n, f, i, j]", "(F,)")


# --- maxpool2d --------------------------------------------------------------------------------

def _stride(size, stride):
    return size if stride is None else stride


def _pool_backward_shared(dout, x, size, stride, share):
    """dx when every window spreads its gradient over its inputs by weights share(window)."""
    stride = _stride(size, stride)
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            rows = slice(i * stride, i * stride + size)
            columns = slice(j * stride, j * stride + size)
            dx[:, :, rows, columns] += share(x[:, :, rows, columns]) * dout[:, :, i:i + 1, j:j + 1]
    return dx


def _every_maximum(window):
    return (window == window.max(axis=(2, 3), keepdims=True)).astype(window.dtype)


def _maximum_share(window):
    tied = _every_maximum(window)
    return tied / tied.sum(axis=(2, 3), keepdims=True)


def _pool_backward_overwriting(dout, x, size=2, stride=None):
    """dx when each window assigns (=) its gradient to its first maximum instead of adding (+=)."""
    stride = _stride(size, stride)
    N, C = x.shape[:2]
    n, c = np.indices((N, C))
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = x[:, :, i * stride:i * stride + size, j * stride:j * stride + size]
            di, dj = np.divmod(window.reshape(N, C, -1).argmax(axis=2), size)
            dx[n, c, i * stride + di, j * stride + dj] = dout[:, :, i, j]
    return dx


def _pool_backward_last_maximum(dout, x, size=2, stride=None):
    """dx when ties go to the last maximum: the reference on the image rotated by 180 degrees."""
    stride = _stride(size, stride)
    if (x.shape[2] - size) % stride or (x.shape[3] - size) % stride:
        return None  # the rotated image's windows would not be the same windows
    return _flip(loop.maxpool2d_backward(_flip(dout), _flip(x), size, stride))


STRIDE_NONE_HINT = "stride None means stride = size (windows side by side), not stride 1."
POOL_STRIDE_HINT = "stride is ignored: window (i, j) starts at row i*stride and column j*stride, not i*size."
MAXPOOL2D_SHAPE_RULE = "H' = 1 + (H - size) // stride and W' = 1 + (W - size) // stride"

MAXPOOL2D_FORWARD = [
    Mistake(STRIDE_NONE_HINT,
            lambda x, size=2, stride=None: loop.maxpool2d_forward(x, size, 1) if stride is None else None),
    Mistake(POOL_STRIDE_HINT,
            lambda x, size=2, stride=None:
                loop.maxpool2d_forward(x, size, size) if stride not in (None, size) else None),
]

MAXPOOL2D_BACKWARD = [
    Mistake("the gradient went to every tied maximum of a window; on ties it goes whole to the "
            "first maximum in row-major order.",
            lambda dout, x, size=2, stride=None: _pool_backward_shared(dout, x, size, stride, _every_maximum)),
    Mistake("the gradient was split among tied maxima; on ties it goes whole to the first maximum "
            "in row-major order.",
            lambda dout, x, size=2, stride=None: _pool_backward_shared(dout, x, size, stride, _maximum_share)),
    Mistake("the gradient went to the last tied maximum; keep the first (replace the best so far "
            "only when value > largest, not >=).",
            _pool_backward_last_maximum),
    Mistake("overlapping windows overwrite each other's gradient: add it (+=), so that an input "
            "that wins two windows receives both.",
            _pool_backward_overwriting),
    Mistake(STRIDE_NONE_HINT,
            lambda dout, x, size=2, stride=None:
                loop.maxpool2d_backward(dout, x, size, 1) if stride is None else None),
    Mistake(POOL_STRIDE_HINT,
            lambda dout, x, size=2, stride=None:
                loop.maxpool2d_backward(dout, x, size, size) if stride not in (None, size) else None),
]


# --- relu -------------------------------------------------------------------------------------

RELU_FORWARD = [
    Mistake("np.max(x, 0) is the largest value along axis 0; the elementwise max(x, 0) is np.maximum(x, 0).",
            lambda x: np.max(x, axis=0)),
    Mistake("out is x unchanged: negative values must become 0.", lambda x: x),
]

RELU_BACKWARD = [
    Mistake("the gradient passes where x == 0 exactly; the convention here is x > 0, so dx = 0 where x is 0.",
            lambda dout, x: layers.relu_backward(dout, np.where(x == 0, 1.0, x))),
    Mistake("dx is dout * x; it should be dout where x > 0 and 0 elsewhere (the slope of relu is 0 or 1).",
            lambda dout, x: layers.relu_backward(dout * x, x)),
    Mistake("dx is the mask x > 0 alone; multiply it by dout.",
            lambda dout, x: layers.relu_backward(np.ones_like(dout), x)),
    Mistake("dx is dout everywhere; zero it where x <= 0.", lambda dout, x: dout),
]


# --- dense ------------------------------------------------------------------------------------

DENSE_FORWARD = [
    Mistake("the bias is missing: out = x @ w + b.", lambda x, w, b: x @ w),
    Mistake("out is transposed: out = x @ w + b has the shape (N, M).", lambda x, w, b: (x @ w + b).T),
]

DENSE_BACKWARD = [
    Mistake("dw is transposed: dw = x.T @ dout has the shape of w, (D, M).",
            lambda dout, x, w: _replace(layers.dense_backward(dout, x, w), 1, (x.T @ dout).T)),
    Mistake("dx is transposed: dx = dout @ w.T has the shape of x, (N, D).",
            lambda dout, x, w: _replace(layers.dense_backward(dout, x, w), 0, (dout @ w.T).T)),
    Mistake(AVERAGED_HINT.format(name="dw"),
            lambda dout, x, w: _replace(layers.dense_backward(dout, x, w), 1, x.T @ dout / len(x))),
]
DENSE_BACKWARD += _bias_gradient_mistakes(layers.dense_backward, 2, "db[m] = sum_n dout[n, m]", "(M,)")
MATMUL_HINT = ("a matrix product has mismatched shapes: dx = dout @ w.T is (N, M) @ (M, D), "
               "dw = x.T @ dout is (D, N) @ (N, M).")


# --- softmax cross-entropy --------------------------------------------------------------------

def _one_hot(labels, K):
    return np.eye(K)[labels]


SOFTMAX_CROSS_ENTROPY = [
    Mistake("the loss is summed over the batch; it is the mean: divide by N.",
            lambda logits, labels: (losses.softmax_cross_entropy(logits, labels)[0] * len(logits),
                                    losses.softmax_cross_entropy(logits, labels)[1])),
    Mistake("dlogits is not divided by N: the loss is a mean over the batch, so each row of its "
            "gradient carries 1/N.",
            lambda logits, labels: _replace(losses.softmax_cross_entropy(logits, labels), 1,
                                            losses.softmax_cross_entropy(logits, labels)[1] * len(logits))),
    Mistake("dlogits lacks the -1 at the true class: dlogits[n, k] = (softmax[k] - [k == label]) / N.",
            lambda logits, labels: _replace(
                losses.softmax_cross_entropy(logits, labels), 1,
                losses.softmax_cross_entropy(logits, labels)[1] + _one_hot(labels, logits.shape[1]) / len(logits))),
    Mistake("the loss has the wrong sign: it is -log(softmax(logits[n])[label]), which is >= 0.",
            lambda logits, labels: _replace(losses.softmax_cross_entropy(logits, labels), 0,
                                            -losses.softmax_cross_entropy(logits, labels)[0])),
    Mistake("the loss is one number per sample; return their mean over the batch.",
            lambda logits, labels: _replace(
                losses.softmax_cross_entropy(logits, labels), 0,
                np.log(np.exp(logits - logits.max(axis=1, keepdims=True)).sum(axis=1))
                + logits.max(axis=1) - logits[np.arange(len(labels)), labels])),
]
OVERFLOW_HINT = ("exp overflowed to inf: subtract each row's maximum from the logits before exp "
                 "(softmax does not change when every logit of a row moves by the same amount).")
