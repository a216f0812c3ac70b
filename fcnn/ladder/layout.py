"""The wide-row layout the compiled rungs share: each plane zero-padded and read as one flat row.

Inline helpers (numba inlines them into the kernel that calls them, so that a kernel compiled
per shape sees its sizes as constants here too): they move data in and out of the layout, and
each rung's own body is the loop nest it changes.
"""

import numba
import numpy as np

from fcnn.kernels import loop

output_size = numba.njit(inline="always")(loop.output_size)


@numba.njit(inline="always")
def wide_sizes(H, W, KH, KW, pad):
    """(Hp, Wp, H', W', P) of a stride-1 convolution in the wide-row layout.

    Hp = H + 2*pad, Wp = W + 2*pad; output position (i, j) is wide position p = i*Wp + j, and
    P = (H' - 1)*Wp + W' positions cover them all (the last row's junk columns are not needed).
    """
    H_out, W_out = output_size(H, KH, 1, pad), output_size(W, KW, 1, pad)
    Wp = W + 2 * pad
    return H + 2 * pad, Wp, H_out, W_out, (H_out - 1) * Wp + W_out


@numba.njit(inline="always")
def padded_planes(image, pad, Hp, Wp):
    """image (C, H, W) -> xpad (C, Hp*Wp): plane c zero-padded, pixel (y, x) at (y + pad)*Wp + x + pad.

    Hp = H + 2*pad, Wp = W + 2*pad: passed in, so a kernel compiled per shape passes constants.
    """
    C, H, W = image.shape
    xpad = np.zeros((C, Hp * Wp), dtype=image.dtype)
    for c in range(C):
        for y in range(H):
            for x_ in range(W):
                xpad[c, (y + pad) * Wp + x_ + pad] = image[c, y, x_]
    return xpad


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
