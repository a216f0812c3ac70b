"""The header of one .npy entry in an .npz archive, read without its data: what the checkpoint
and the .npz data reader check against the entry's size before they read a byte of the array."""

import math
import warnings

import numpy as np


class NpyHeaderError(ValueError):
    """A .npy header fcnn does not read: another format version, Fortran order or Python objects."""


def read_npy_header(archive, info):
    """(shape, dtype, header length) of the .npy entry `info` of zipfile `archive`; reads the header only.

    Raises NpyHeaderError for what neither fcnn nor numpy.savez writes; zipfile and numpy raise
    their own errors for corrupt bytes.
    """
    with archive.open(info) as stream, warnings.catch_warnings():
        # numpy warns when it repairs a header in Python 2 style; the checks that follow decide either way.
        warnings.simplefilter("ignore")
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise NpyHeaderError(f"npy format version {version}, which fcnn does not write")
        length = stream.tell()
    if fortran_order or dtype.hasobject:
        raise NpyHeaderError("Fortran order or Python objects, which fcnn does not write")
    return shape, dtype, length


def data_size_problem(info, shape, dtype, length):
    """Why the entry's bytes do not fit its header's claim, or None."""
    if math.prod(shape) * dtype.itemsize != info.file_size - length:
        return (f"its header claims shape {shape} of {dtype}, "
                f"but the entry holds {info.file_size - length} bytes of data")
    return None
