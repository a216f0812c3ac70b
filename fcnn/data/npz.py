"""MNIST as one Keras-layout .npz: arrays x_train, y_train, x_test, y_test, read without pickle."""

import zipfile

import numpy as np

from fcnn.data._files import (
    IMAGE_SIZE,
    MAX_UNPACKED_BYTES,
    PIXELS,
    DataFormatError,
    check_regular_file,
    check_same_count,
    first_outside,
    too_large,
)
from fcnn.npy_header import data_size_problem, read_npy_header

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def read_npz(path):
    """A Keras-layout .npz -> (x_train, y_train, x_test, y_test), validated and as uint8.

    Images: integers 0..255 of shape (N, 28, 28) or (N, 784) -> uint8 (N, 28, 28).
    Labels: integers 0..9 of shape (N,) -> uint8 (N,). Read with allow_pickle=False.
    """
    check_regular_file(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataFormatError(f"{path}: cannot read as .npz: {error}") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataFormatError(f"{path}: holds a single .npy array, not an .npz archive of {NPZ_KEYS}")
    with archive:
        missing = [key for key in NPZ_KEYS if key not in archive.files]
        if missing:
            raise DataFormatError(f"{path}: missing arrays {missing}; found {sorted(archive.files)}")
        try:
            for key in NPZ_KEYS:
                _check_entry_size(archive.zip, key, path)
            arrays = {key: archive[key] for key in NPZ_KEYS}
        except DataFormatError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise DataFormatError(f"{path}: cannot read its arrays: {error}") from error
    splits = []
    for split in ("train", "test"):
        images = _images(arrays[f"x_{split}"], f"{path}: x_{split}")
        labels = _labels(arrays[f"y_{split}"], f"{path}: y_{split}")
        check_same_count(images, f"{path}: x_{split}", labels, f"y_{split}")
        splits += [images, labels]
    return tuple(splits)


def _check_entry_size(archive, key, path):
    """The entry `key` of the zipfile `archive` unpacks to at most MAX_UNPACKED_BYTES, and its .npy
    header claims exactly the bytes it holds: both checked before numpy reads (or allocates) its data."""
    info = archive.getinfo(key + ".npy")
    if info.file_size > MAX_UNPACKED_BYTES:
        raise too_large(path, f"array {key} unpacks to {info.file_size} bytes")
    shape, dtype, length = read_npy_header(archive, info)
    problem = data_size_problem(info, shape, dtype, length)
    if problem:
        raise DataFormatError(f"{path}: array {key}: {problem}")


def _images(images, source):
    """Integer images (N, 28, 28) or (N, 784) with values 0..255 -> uint8 (N, 28, 28)."""
    if (
        images.dtype.kind not in "ui"
        or images.shape[1:] not in ((PIXELS,), (IMAGE_SIZE, IMAGE_SIZE))
        or len(images) == 0
    ):
        raise DataFormatError(
            f"{source}: expected integer images of shape (N, 28, 28) or (N, 784), N >= 1; "
            f"found {images.dtype} {images.shape}"
        )
    bad = first_outside(images, 0, 255)
    if bad is not None:
        record = bad // PIXELS
        pixel = images.reshape(-1)[bad]
        raise DataFormatError(f"{source}: image {record} has pixel value {pixel} outside 0..255")
    return images.astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)


def _labels(labels, source):
    """Integer labels (N,) with values 0..9 -> uint8 (N,)."""
    if labels.dtype.kind not in "ui" or labels.ndim != 1:
        raise DataFormatError(
            f"{source}: expected integer labels of shape (N,); found {labels.dtype} {labels.shape}"
        )
    bad = first_outside(labels, 0, 9)
    if bad is not None:
        raise DataFormatError(f"{source}: label {labels[bad]} at record {bad} is outside 0..9")
    return labels.astype(np.uint8)
