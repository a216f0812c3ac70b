"""The wide-row layout the compiled rungs share: each plane zero-padded and read as one flat row.

Inline helpers (numba inlines them into the kernel that calls them, so that a kernel compiled
per shape sees its sizes as constants here too): they move data in and out of the layout, and
each rung's own body is the loop nest it changes. wide_sizes and padded_planes are the tuned
tiles' own (fcnn.kernels.tuned.conv_forward): a rung and the tile it leads to lay out alike.
"""

import numba
import numpy as np

from fcnn.kernels.tuned import conv_forward as tuned_forward

# The sizes and the padding of the tuned tiles, the same code in rung and tile.
wide_sizes = numba.njit(inline="always")(tuned_forward.wide_sizes)
padded_planes = tuned_forward.padded_planes


@numba.njit(inline="always")
def store_wide_rows(wide, Wp, out_plane):
    """out_plane[i, j] = wide[i*Wp + j]: an (H', W') plane from its wide row, the junk columns dropped."""
    H_out, W_out = out_plane.shape
    for i in range(H_out):
        for j in range(W_out):
            out_plane[i, j] = wide[i * Wp + j]


@numba.njit(inline="always")
def load_wide_rows(plane, lead, Wp, length):
    """plane (H', W') -> wide (length,): plane[i, j] at lead + i*Wp + j, zeros everywhere else."""
    H_out, W_out = plane.shape
    wide = np.zeros(length, dtype=plane.dtype)
    for i in range(H_out):
        for j in range(W_out):
            wide[lead + i * Wp + j] = plane[i, j]
    return wide
