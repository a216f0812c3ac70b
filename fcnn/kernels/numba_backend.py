"""The numba backend: compiled_loop's kernels, each call sent to a fast path where its arguments fit one.

The fast paths (compiled_loop.py) are the same loops compiled with a constant stride:
stride-1 convolutions (every preset) and 2x2 pools of stride 2.
"""

from fcnn.kernels import compiled_loop as compiled


def conv2d_forward(x, w, b, stride, pad):
    """compiled_loop.conv2d_forward, or its stride-1 fast path."""
    if stride == 1:
        return compiled.conv2d_forward_stride1(x, w, b, pad)
    return compiled.conv2d_forward(x, w, b, stride, pad)


def conv2d_backward(dout, x, w, stride, pad):
    """compiled_loop.conv2d_backward, or its stride-1 fast path."""
    if stride == 1:
        return compiled.conv2d_backward_stride1(dout, x, w, pad)
    return compiled.conv2d_backward(dout, x, w, stride, pad)


def conv2d_backward_weights(dout, x, w, stride, pad):
    """compiled_loop.conv2d_backward_weights, or its stride-1 fast path."""
    if stride == 1:
        return compiled.conv2d_backward_weights_stride1(dout, x, w, pad)
    return compiled.conv2d_backward_weights(dout, x, w, stride, pad)


def maxpool2d_forward(x, size, stride):
    """compiled_loop.maxpool2d_forward, or its 2x2 fast path."""
    if size == stride == 2:
        return compiled.maxpool2d_forward_2x2(x)
    return compiled.maxpool2d_forward(x, size, stride)


def maxpool2d_backward(dout, x, size, stride):
    """compiled_loop.maxpool2d_backward, or its 2x2 fast path."""
    if size == stride == 2:
        return compiled.maxpool2d_backward_2x2(dout, x)
    return compiled.maxpool2d_backward(dout, x, size, stride)


batchnorm_statistics = compiled.batchnorm_statistics
batchnorm_forward = compiled.batchnorm_forward
batchnorm_backward = compiled.batchnorm_backward
dropout_forward = compiled.dropout_forward
dropout_backward = compiled.dropout_backward


def avgpool2d_forward(x, size, stride):
    """compiled_loop.avgpool2d_forward, or its 2x2 fast path."""
    if size == stride == 2:
        return compiled.avgpool2d_forward_2x2(x)
    return compiled.avgpool2d_forward(x, size, stride)


def avgpool2d_backward(dout, x, size, stride):
    """compiled_loop.avgpool2d_backward, or its 2x2 fast path."""
    if size == stride == 2:
        return compiled.avgpool2d_backward_2x2(dout, x)
    return compiled.avgpool2d_backward(dout, x, size, stride)


adam_update = compiled.adam_update
rmsprop_update = compiled.rmsprop_update
