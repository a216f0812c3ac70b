"""Softmax cross-entropy: the loss of a classifier, and its gradient with respect to the logits."""

import numpy as np


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of softmax(logits) against integer labels, and d(loss)/d(logits).

    loss = mean_n [ logsumexp(logits[n]) - logits[n, labels[n]] ]
    dlogits[n, k] = (softmax(logits[n])[k] - [k == labels[n]]) / N

    Subtracting each row's maximum before exp keeps it finite for logits of any size.
    logits (N, K) float, labels (N,) integers in 0..K-1 -> loss (Python float), dlogits (N, K)
    """
    if not isinstance(logits, np.ndarray) or logits.ndim != 2:
        raise ValueError(
            f"softmax_cross_entropy: logits must be an (N, K) array; "
            f"got {getattr(logits, 'shape', type(logits).__name__)}"
        )
    if logits.dtype not in (np.float32, np.float64):
        raise ValueError(f"softmax_cross_entropy: logits must be float32 or float64; got {logits.dtype}")
    labels = np.asarray(labels)
    N, K = logits.shape
    if N == 0:
        raise ValueError("softmax_cross_entropy: logits hold no samples; the mean loss of an empty batch is undefined")
    if labels.shape != (N,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"softmax_cross_entropy: labels must be ({N},) integers; "
            f"got shape {labels.shape} dtype {labels.dtype}"
        )
    if labels.min() < 0 or labels.max() >= K:
        raise ValueError(
            f"softmax_cross_entropy: labels must lie in 0..{K - 1}; "
            f"got values from {labels.min()} to {labels.max()}"
        )
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(N)
    loss = -log_probs[rows, labels].mean()
    dlogits = np.exp(log_probs)
    dlogits[rows, labels] -= 1
    return float(loss), dlogits / N
