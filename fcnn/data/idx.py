"""MNIST in the official IDX format: one file per split and kind, raw or gzipped.

Layout of an IDX file: bytes 0-1 zero, byte 2 the element type, byte 3 the number of
dimensions d, then d big-endian uint32 sizes, then prod(sizes) elements in C order, big-endian.
"""

import math

import numpy as np

from fcnn.data._files import IMAGE_SIZE, DataFormatError, check_same_count, first_outside, read_bytes
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
    The result is in native byte order and owns its memory.
    """
    return _parse_idx(read_bytes(path), path)


def _parse_idx(raw, path):
    """The IDX bytes of `path` (already uncompressed) -> array; see the module docstring for the layout."""
    if len(raw) < 4:
        raise DataFormatError(
            f"{path}: truncated IDX header: the file ends at byte offset {len(raw)}, before the 4-byte magic"
        )
    zeros, type_code, ndim = raw[0:2], raw[2], raw[3]
    if zeros != b"\x00\x00" or type_code not in ELEMENT_TYPES or ndim == 0:
        raise DataFormatError(
            f"{path}: not an IDX file: magic at byte offset 0 is 0x{raw[:4].hex()}; expected 0x0000 then a "
            f"type byte ({', '.join(f'0x{code:02x}' for code in ELEMENT_TYPES)}) and a dimension count >= 1 "
            f"(0x{IMAGES_MAGIC:08x} for images, 0x{LABELS_MAGIC:08x} for labels)"
        )
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataFormatError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header_size} header bytes; "
            f"the file ends at byte offset {len(raw)}"
        )
    shape = tuple(int(size) for size in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = ELEMENT_TYPES[type_code]
    expected_end = header_size + math.prod(shape) * dtype.itemsize
    if len(raw) < expected_end:
        raise DataFormatError(
            f"{path}: truncated IDX data: the header promises shape {shape}, ending at byte offset "
            f"{expected_end}, but the (uncompressed) file ends at byte offset {len(raw)}"
        )
    if len(raw) > expected_end:
        raise DataFormatError(
            f"{path}: {len(raw) - expected_end} extra bytes after the data: the header promises shape "
            f"{shape}, ending at byte offset {expected_end}, but the (uncompressed) file ends at byte offset "
            f"{len(raw)}"
        )
    data = np.frombuffer(raw, dtype, offset=header_size).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def spellings(stem):
    """The four names an official IDX file goes by: `-idx` or `.idx`, raw or gzipped."""
    dotted = stem.replace("-idx", ".idx")
    return [stem, stem + ".gz", dotted, dotted + ".gz"]


def find_idx_files(directory):
    """{official stem: path of its first spelling that exists in directory, or None}."""
    found = {}
    for stem in OFFICIAL_SHA256:
        paths = [directory / name for name in spellings(stem)]
        found[stem] = next((p for p in paths if p.is_file()), None)
    return found


def read_idx_files(idx_files, verify):
    """The four IDX files of find_idx_files -> (x_train, y_train, x_test, y_test).

    verify=True also checks each file's uncompressed bytes against the official SHA-256.
    """
    arrays = {}
    for stem, path in idx_files.items():
        raw = read_bytes(path)
        if verify:
            check_sha256(raw, path, stem)
        arrays[stem] = _parse_idx(raw, path)
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
