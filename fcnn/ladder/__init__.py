"""The ladder: conv2d from loop.py's readable loops to the tuned kernels, one step at a time.

    from fcnn.ladder import RUNGS
    for rung in RUNGS:      # the kernel contract: (x, w, b, stride=1, pad=0) -> out
        out = rung.function(x, w, b, 1, 0)

Each rung names the rung it transforms (rung.builds_on); docs/ladder.md tells why each step
helps (or not), with figures.
"""

from fcnn.ladder.conv2d_forward import RUNGS, Rung, side_branches

__all__ = ["RUNGS", "Rung", "side_branches"]
