"""The ladder: conv2d forward from loop.py's readable loops to the tuned kernel, one step at a time.

    from fcnn.ladder import RUNGS
    for name, conv2d_forward in RUNGS:      # the kernel contract: (x, w, b, stride=1, pad=0) -> out
        out = conv2d_forward(x, w, b, 1, 0)

docs/ladder.md tells why each step helps (or not) on a 2-core AVX2 machine, with figures.
"""

from fcnn.ladder.conv2d_forward import RUNGS

__all__ = ["RUNGS"]
