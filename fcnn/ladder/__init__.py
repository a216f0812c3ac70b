"""The ladders: conv2d from loop.py's readable loops to the tuned kernels, one step at a time.

    from fcnn.ladder import RUNGS, WEIGHT_RUNGS, INPUT_RUNGS
    for rung in RUNGS:      # conv2d forward, the kernel contract: (x, w, b, stride=1, pad=0) -> out
        out = rung.function(x, w, b, 1, 0)

WEIGHT_RUNGS: conv2d_backward_weights (dout, x, w, stride, pad) -> (dw, db); INPUT_RUNGS:
conv2d_backward -> (dx, dw, db); FUSED_RUNGS: the fused conv -> ReLU -> max-pool backward,
(dout, x, z, w, stride, pad, size, pool_stride, input_gradient) -> (dx or None, dw, db). Each rung names the rung it transforms (rung.builds_on);
docs/ladder.md tells why each step helps (or not), with figures.
"""

from fcnn.ladder.conv2d_backward import INPUT_RUNGS, WEIGHT_RUNGS
from fcnn.ladder.conv2d_forward import RUNGS
from fcnn.ladder.fused_backward import FUSED_RUNGS
from fcnn.ladder.rung import Rung, side_branches

__all__ = ["RUNGS", "WEIGHT_RUNGS", "INPUT_RUNGS", "FUSED_RUNGS", "Rung", "side_branches"]
