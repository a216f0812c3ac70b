"""What every MNIST reader shares: the error it raises, a file's bytes (gunzipped, HTML refused),
and range checks that find the first bad value for the message."""

import gzip
import zlib
from pathlib import Path

import numpy as np

IMAGE_SIZE = 28
PIXELS = IMAGE_SIZE * IMAGE_SIZE
GZIP_MAGIC = b"\x1f\x8b"


class DataFormatError(ValueError):
    """A data file is missing, damaged or not in a format fcnn reads; the message says where."""

    __module__ = "fcnn.data"  # where users import it from, so tracebacks name it that way


def read_bytes(path):
    """The file's bytes, gunzipped when they start with the gzip magic; an HTML page is refused.

    Gzip is recognised by its magic, not the name, except that a `.gz` name promising gzip and
    not keeping the promise is an error (usually an error page saved by a failed download).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataFormatError(f"{path}: cannot read ({error.strerror or error})") from error
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise DataFormatError(f"{path}: damaged gzip data: {error}") from error
    elif path.name.endswith(".gz"):
        raise DataFormatError(
            f"{path}: named .gz but is not gzip data (byte offset 0 holds {raw[:16]!r}){_html_hint(raw)}"
        )
    if _looks_like_html(raw):
        raise DataFormatError(f"{path}: not MNIST data{_html_hint(raw)}")
    return raw


def _looks_like_html(raw):
    """IDX starts with a zero byte and CSV with a digit or a header; markup starts with '<'."""
    return raw[:512].lstrip()[:1] == b"<"


def _html_hint(raw):
    """A hint for the usual cause of markup where data should be."""
    if not _looks_like_html(raw):
        return ""
    return ": it is an HTML page, likely saved by a failed download; download again, or use the bundled copy"


def first_outside(values, low, high):
    """Index (into the flattened array) of the first value outside [low, high], or None."""
    if values.size == 0 or (values.min() >= low and values.max() <= high):
        return None  # the usual case: two reductions, cheaper than building the masks below
    return int(np.flatnonzero((values < low) | (values > high))[0])


def check_same_count(images, images_source, labels, labels_source):
    """Each image has exactly one label."""
    if len(images) != len(labels):
        raise DataFormatError(
            f"{images_source} holds {len(images)} images but {labels_source} holds {len(labels)} labels"
        )
