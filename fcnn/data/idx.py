"""MNIST in the official IDX format: one file per split and kind, raw or gzipped.

Layout of an IDX file: bytes 0-1 zero, byte 2 the element type, byte 3 the number of
dimensions d, then d big-endian uint32 sizes, then prod(sizes) elements in C order, big-endian.
"""

import math
import os

import numpy as np

from fcnn.data._files import (
    IMAGE_SIZE,
    MAX_UNPACKED_BYTES,
    DataFile,
    DataFormatError,
    check_same_count,
    first_outside,
    too_large,
)
from fcnn.data.bundled import OFFICIAL_SHA256, check_sha256

IMAGES_MAGIC = 0x00000803  # uint8, 3 dimensions
LABELS_MAGIC = 0x00000801  # uint8, 1 dimension
# The IDX type byte (third byte of the magic) -> element type, stored big-endian.
ELEMENT_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path):
    """One IDX file (raw or gzipped) -> array of the shape and type its header declares.

    Element types: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.
    The result is in native byte order and owns its memory. The header's size is checked against
    the file's and against MAX_UNPACKED_BYTES before the data is read or unpacked.
    """
    return _read_idx(path)[0]


def _read_idx(path):
    """(array, the file's uncompressed bytes) of the IDX file `path`; see the module docstring for the layout."""
    with DataFile(path) as data:
        magic = data.read(4)
        if len(magic) < 4:
            raise DataFormatError(
                f"{path}: truncated IDX header: the file ends at byte offset {len(magic)}, before the 4-byte magic"
            )
        zeros, type_code, ndim = magic[0:2], magic[2], magic[3]
        if zeros != b"\x00\x00" or type_code not in ELEMENT_TYPES or ndim == 0:
            raise DataFormatError(
                f"{path}: not an IDX file: magic at byte offset 0 is 0x{magic.hex()}; expected 0x0000 then a "
                f"type byte ({', '.join(f'0x{code:02x}' for code in ELEMENT_TYPES)}) and a dimension count >= 1 "
                f"(0x{IMAGES_MAGIC:08x} for images, 0x{LABELS_MAGIC:08x} for labels)"
            )
        header_size = 4 + 4 * ndim
        sizes = data.read(4 * ndim)
        if len(sizes) < 4 * ndim:
            raise DataFormatError(
                f"{path}: truncated IDX header: {ndim} dimensions need {header_size} header bytes; "
                f"the file ends at byte offset {4 + len(sizes)}"
            )
        shape = tuple(int(size) for size in np.frombuffer(sizes, ">u4"))
        dtype = ELEMENT_TYPES[type_code]
        data_size = math.prod(shape) * dtype.itemsize
        expected_end = header_size + data_size
        if data_size > MAX_UNPACKED_BYTES:
            raise too_large(path, f"its IDX header claims shape {shape} of {dtype.name}, {data_size} bytes")
        # A raw file's size tells a wrong length before any data is read; gzip must be unpacked.
        body = data.read(data_size) if data.size is None or data.size == expected_end else b""
        end = data.size if data.size is not None else header_size + len(body)
        if end < expected_end:
            raise DataFormatError(
                f"{path}: truncated IDX data: the header promises shape {shape}, ending at byte offset "
                f"{expected_end}, but the (uncompressed) file ends at byte offset {end}"
            )
        extra = end - expected_end if data.size is not None else data.rest()
    if extra:
        counted = f"{extra}" if extra <= MAX_UNPACKED_BYTES else f"more than {MAX_UNPACKED_BYTES}"
        raise DataFormatError(
            f"{path}: {counted} extra bytes after the data: the header promises shape {shape}, ending at byte "
            f"offset {expected_end}, but the (uncompressed) file ends at byte offset "
            f"{expected_end + extra if extra <= MAX_UNPACKED_BYTES else 'beyond that'}"
        )
    array = np.frombuffer(body, dtype).reshape(shape).astype(dtype.newbyteorder("="))
    return array, magic + sizes + body


def spellings(stem):
    """The four names an official IDX file goes by: `-idx` or `.idx`, raw or gzipped."""
    dotted = stem.replace("-idx", ".idx")
    return [stem, stem + ".gz", dotted, dotted + ".gz"]


def find_idx_files(directory):
    """{official stem: path of its first spelling that exists in directory, or None}."""
    found = {}
    for stem in OFFICIAL_SHA256:
        paths = [directory / name for name in spellings(stem)]
        found[stem] = next((p for p in paths if os.path.lexists(p)), None)
    return found


def read_idx_files(idx_files, verify):
    """The four IDX files of find_idx_files -> (x_train, y_train, x_test, y_test).

    verify=True also checks each file's uncompressed bytes against the official SHA-256.
    """
    arrays = {}
    for stem, path in idx_files.items():
        arrays[stem], raw = _read_idx(path)
        if verify:
            check_sha256(raw, path, stem)
    splits = []
    for prefix in ("train", "t10k"):
        images_stem, labels_stem = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
        images, labels = arrays[images_stem], arrays[labels_stem]
        _check_images(images, idx_files[images_stem])
        _check_labels(labels, idx_files[labels_stem])
        check_same_count(images, idx_files[images_stem], labels, idx_files[labels_stem])
        splits += [images, labels]
    return tuple(splits)


def _check_images(images, path):
    """An IDX image file holds uint8 (N, 28, 28), N >= 1."""
    if images.dtype != np.uint8 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or len(images) == 0:
        raise DataFormatError(
            f"{path}: expected IDX images, uint8 of shape (N, 28, 28) with N >= 1 "
            f"(magic 0x{IMAGES_MAGIC:08x}); found {images.dtype} of shape {images.shape}"
        )


def _check_labels(labels, path):
    """An IDX label file holds uint8 (N,) digits 0..9; a bad one is named by record and byte offset."""
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataFormatError(
            f"{path}: expected IDX labels, uint8 of shape (N,) (magic 0x{LABELS_MAGIC:08x}); "
            f"found {labels.dtype} of shape {labels.shape}"
        )
    bad = first_outside(labels, 0, 9)
    if bad is not None:
        raise DataFormatError(
            f"{path}: label {labels[bad]} at record {bad} (byte offset {8 + bad}) is outside 0..9"
        )
