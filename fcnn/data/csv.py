"""MNIST in the CSV release (mnist_train.csv, mnist_test.csv): one image per line, the label then
784 pixels, with or without a header line, raw or gzipped."""

import os
import re

import numpy as np

from fcnn.data._files import IMAGE_SIZE, PIXELS, DataFormatError, first_outside, read_bytes

CSV_FILES = {"train": "mnist_train.csv", "test": "mnist_test.csv"}
# A record: label then 784 pixels, each a plain decimal integer of one to three digits.
_RECORD = re.compile(rb"[0-9]{1,3}(?:,[0-9]{1,3}){%d}\r?" % PIXELS)
_CELL = re.compile(rb"[0-9]{1,3}")
_ALPHABET = b"0123456789,\r"


def read_csv(path):
    """The CSV release of MNIST (raw or gzipped) -> images uint8 (N, 28, 28), labels uint8 (N,).

    One image per line: the label 0..9, then the 784 pixels 0..255 row by row, comma-separated,
    plain decimal integers (no spaces, signs or decimal points). An optional first line is a
    header whose first cell is `label` and which has 785 cells (Kaggle writes `label,pixel0,...`
    or `label,1x1,...`). The file may end with one newline; any other empty line is an error.
    """
    lines = read_bytes(path).split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    first_record = 1 if lines and _is_header(lines[0], path) else 0
    records = lines[first_record:]
    if not records:
        raise DataFormatError(f"{path}: no records (expected lines of a label then {PIXELS} pixels)")
    values = _parse_records(records)
    if values is None:
        index, problem = _first_bad_record(records)
        raise DataFormatError(f"{path}, line {first_record + index + 1}: {problem}")
    bad = first_outside(values[:, 1:], 0, 255)
    if bad is not None:
        row, column = divmod(bad, PIXELS)
        pixel = values[row, 1 + column]
        raise DataFormatError(
            f"{path}, line {first_record + row + 1}: pixel {pixel} in column {column + 2} is outside 0..255"
        )
    bad = first_outside(values[:, 0], 0, 9)
    if bad is not None:
        raise DataFormatError(
            f"{path}, line {first_record + bad + 1}: label {values[bad, 0]} in column 1 is outside 0..9"
        )
    return values[:, 1:].astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE), values[:, 0].astype(np.uint8)


def find_csv_files(directory):
    """{"train"/"test": path of mnist_<split>.csv or .csv.gz in directory, or None}."""
    found = {}
    for split, name in CSV_FILES.items():
        paths = [directory / name, directory / (name + ".gz")]
        found[split] = next((p for p in paths if os.path.lexists(p)), None)
    return found


def read_csv_files(csv_files):
    """The two CSV files of find_csv_files -> (x_train, y_train, x_test, y_test)."""
    x_train, y_train = read_csv(csv_files["train"])
    x_test, y_test = read_csv(csv_files["test"])
    return x_train, y_train, x_test, y_test


def _parse_records(records):
    """Record lines -> int16 (N, 785), or None if any line is not 785 comma-separated integers.

    np.loadtxt is the fast parser but is laxer than the format (it skips blank lines, accepts
    spaces and signs); the byte filter and the shape check close those gaps at a fraction of the
    cost of matching _RECORD against every line. On None the caller looks for the line to blame.
    """
    if any(line.translate(None, _ALPHABET) for line in records):
        return None
    try:
        values = np.loadtxt(records, delimiter=",", dtype=np.int16, comments=None, ndmin=2)
    except ValueError:
        return None
    return values if values.shape == (len(records), 1 + PIXELS) else None


def _first_bad_record(records):
    """(index, what is wrong) for the first line that is not a record."""
    for index, line in enumerate(records):
        problem = _line_problem(line)
        if problem is not None:
            return index, problem
    raise AssertionError("np.loadtxt refused lines that all have the form of a record")


def _is_header(line, path):
    """True if the first line is a valid header, False if it is a record; a broken header raises."""
    cells = line.removesuffix(b"\r").split(b",")
    if _CELL.fullmatch(cells[0]):
        return False
    first = cells[0].strip().strip(b'"').lower()
    if first != b"label" or len(cells) != 1 + PIXELS:
        raise DataFormatError(
            f"{path}, line 1: a header must start with 'label' and have {1 + PIXELS} cells; "
            f"found {cells[0][:20]!r} first and {len(cells)} cells"
        )
    return True


def _line_problem(line):
    """None for a record; otherwise what is wrong: the cell count, or the first bad cell."""
    if _RECORD.fullmatch(line):
        return None
    cells = line.removesuffix(b"\r").split(b",")
    if len(cells) != 1 + PIXELS:
        return f"expected {1 + PIXELS} comma-separated cells (label, then {PIXELS} pixels); found {len(cells)}"
    column, cell = next((k, cell) for k, cell in enumerate(cells, start=1) if not _CELL.fullmatch(cell))
    meaning = "the label, 0..9" if column == 1 else "a pixel, 0..255"
    return f"cell {cell[:20]!r} in column {column} ({meaning}) is not a plain whole number of 1-3 digits"
