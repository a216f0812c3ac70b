"""MNIST as uint8 arrays: the bundled copy, IDX files, the CSV release or a Keras-style .npz.

    load_mnist(path=None) -> (x_train, y_train, x_test, y_test)    this module: which format a path holds
    scale(images)         -> float32 in [0, 1]                     this module
    checksum(*arrays)     -> SHA-256 hex of a data set             this module
    read_idx, read_csv, read_npz                                   idx.py, csv.py, npz.py: one format each
    OFFICIAL_SHA256, BUNDLED_DIR                                   bundled.py: the official files

Every reader checks structure strictly and refuses bad input with DataFormatError naming the
file and the record, line or byte offset; scaling to [0, 1] is the separate step `scale`.
"""

import hashlib
from pathlib import Path

import numpy as np

from fcnn.data import bundled
from fcnn.file_kinds import kind_of
from fcnn.data._files import DataFormatError
from fcnn.data.csv import CSV_FILES, find_csv_files, read_csv, read_csv_files
from fcnn.data.idx import find_idx_files, read_idx, read_idx_files, spellings
from fcnn.data.npz import read_npz

__all__ = ["DataFormatError", "checksum", "load_mnist", "read_csv", "read_idx", "read_npz", "scale"]


def scale(images):
    """The one scaling step: uint8 pixels 0..255 -> float32 in [0, 1], x / 255, same shape."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(
            f"scale: images must be uint8 (0..255) as loaded; got {images.dtype} (already scaled?)"
        )
    return images.astype(np.float32) / np.float32(255)


def checksum(*arrays):
    """SHA-256 (hex) of arrays' dtypes, shapes and bytes, in order: the identity of a loaded data
    set whatever file format or folder it came from (a checkpoint records it, so that a resumed
    run can tell whether it trains on the same data)."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(array.data)
    return digest.hexdigest()


def load_mnist(path=None, verify=False):
    """MNIST as (x_train, y_train, x_test, y_test): images uint8 (N, 28, 28), labels uint8 (N,).

    path None: the copy bundled in fcnn/mnist, always verified against bundled.OFFICIAL_SHA256.
    path a directory holding either
      - the four IDX files, raw or gzipped, named `train-images-idx3-ubyte` or
        `train-images.idx3-ubyte` (likewise train-labels-idx1, t10k-images-idx3,
        t10k-labels-idx1), with or without `.gz` (the first of these spellings that exists;
        IDX files win over CSV files in the same directory);
      - or `mnist_train.csv` and `mnist_test.csv` (or `.csv.gz`), see `read_csv`.
    path a `.npz` file with arrays x_train, y_train, x_test, y_test (the Keras layout), see `read_npz`.

    Checksums are known only for the official IDX files. A user's IDX files are checked for
    structure (magic, shape, length, label range) but may be a subset or a modified copy, so
    their SHA-256 is compared with the official one only when verify=True; verify=True for CSV
    or .npz is refused, since no checksum exists to compare with. Anything malformed raises
    DataFormatError naming the file and where in it.
    """
    if path is None:
        return read_idx_files(find_idx_files(bundled.BUNDLED_DIR), verify=True)
    path = Path(path).expanduser()
    if path.is_file():
        if path.suffix != ".npz":
            raise DataFormatError(
                f"{path}: expected a directory of IDX or CSV files, or a .npz file; "
                f"got a {path.suffix or 'plain'} file"
            )
        _refuse_verify(verify, path, "a .npz file")
        return read_npz(path)
    if not path.is_dir():
        kind = kind_of(path)
        raise DataFormatError(f"{path}: " + ("no such file or directory" if kind == "no such file" else
                                             f"{kind}; expected a directory of IDX or CSV files, or a .npz file"))
    idx_files = find_idx_files(path)
    csv_files = find_csv_files(path)
    if all(idx_files.values()):
        return read_idx_files(idx_files, verify)
    if all(csv_files.values()):
        _refuse_verify(verify, path, "CSV files")
        return read_csv_files(csv_files)
    raise DataFormatError(_missing_files_message(path, idx_files, csv_files))


def _refuse_verify(verify, path, what):
    """verify=True asks for an official checksum, which exists only for the IDX files."""
    if verify:
        raise ValueError(
            f"load_mnist: verify=True needs the official IDX files; {path} holds {what}, "
            "for which no checksum is known"
        )


def _missing_files_message(directory, idx_files, csv_files):
    """Name every file looked for and not found, for the format the directory seems to hold."""
    looked_for = []
    if any(idx_files.values()) or not any(csv_files.values()):
        looked_for += [" or ".join(spellings(stem)) for stem, p in idx_files.items() if p is None]
    if any(csv_files.values()) or not any(idx_files.values()):
        looked_for += [f"{name} or {name}.gz" for split, name in CSV_FILES.items() if not csv_files[split]]
    return f"{directory}: MNIST files missing; looked for: " + "; ".join(looked_for)
