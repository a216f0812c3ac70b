"""What every MNIST reader shares: the error it raises, a file opened as a bounded stream of its
bytes (gunzipped, HTML refused, never more read than asked for), and range checks that find the
first bad value for the message."""

import gzip
import zlib
from pathlib import Path

import numpy as np

from fcnn.file_kinds import kind_of

IMAGE_SIZE = 28
PIXELS = IMAGE_SIZE * IMAGE_SIZE
GZIP_MAGIC = b"\x1f\x8b"
# The most bytes (uncompressed) fcnn reads from one data file: 20 times MNIST's largest file (the
# training images, 47 MB) and above EMNIST's (0.64 GB), far below what a header or a gzip bomb can
# claim. Sizes are checked against it before anything is read or unpacked.
MAX_UNPACKED_BYTES = 2**30
CHUNK = 2**20
HEAD = 512  # the bytes looked at for an HTML page


class DataFormatError(ValueError):
    """A data file is missing, damaged or not in a format fcnn reads; the message says where."""

    __module__ = "fcnn.data"  # where users import it from, so tracebacks name it that way


def too_large(path, claim):
    """The refusal of a file whose size or header claims more than MAX_UNPACKED_BYTES; claim says what."""
    return DataFormatError(
        f"{path}: {claim}; fcnn reads at most {MAX_UNPACKED_BYTES} bytes from one data file (MNIST's "
        f"largest holds 47 MB) and refuses more before reading it (a corrupt header, or a gzip bomb?)"
    )


def check_regular_file(path):
    """Refuse a path that is not a regular file by what it is: a FIFO would make open() wait
    forever, and a folder is not "no such file"."""
    kind = kind_of(path)
    if kind:
        raise DataFormatError(f"{path}: {kind}" + ("" if kind == "no such file" else ", not a data file"))


class DataFile:
    """A data file opened for bounded reading: its bytes, gunzipped when they start with the gzip
    magic. `size` is the (uncompressed) size when known without unpacking, else None.

    Gzip is recognised by its magic, not the name, except that a `.gz` name promising gzip and
    not keeping the promise is an error (usually an error page saved by a failed download); so
    is a file whose first bytes are markup.
    """

    def __init__(self, path):
        self.path = Path(path)
        check_regular_file(self.path)
        try:
            self.file = open(self.path, "rb")
        except OSError as error:
            raise DataFormatError(f"{self.path}: cannot read ({error.strerror or error})") from error
        magic = self.file.read(2)
        self.file.seek(0)
        self.gzipped = magic == GZIP_MAGIC
        self.stream = gzip.GzipFile(fileobj=self.file) if self.gzipped else self.file
        self.size = None if self.gzipped else self.path.stat().st_size
        self.head = b""
        try:
            self.head = self.read(HEAD)
            if not self.gzipped and self.path.name.endswith(".gz"):
                raise DataFormatError(f"{self.path}: named .gz but is not gzip data (byte offset 0 holds "
                                      f"{self.head[:16]!r}){_html_hint(self.head)}")
            if _looks_like_html(self.head):
                raise DataFormatError(f"{self.path}: not MNIST data{_html_hint(self.head)}")
        except DataFormatError:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        self.file.close()

    def read(self, count):
        """The next `count` bytes (fewer only at the end of the data), read chunk by chunk."""
        parts, wanted = [self.head[:count]], count - len(self.head[:count])
        self.head = self.head[count:]
        try:
            while wanted > 0:
                part = self.stream.read(min(wanted, CHUNK))
                if not part:
                    break
                parts.append(part)
                wanted -= len(part)
        except (OSError, EOFError, zlib.error) as error:
            raise DataFormatError(f"{self.path}: damaged gzip data: {error}") from error
        return b"".join(parts)

    def rest(self):
        """How many bytes are left, counted without keeping them, and at most MAX_UNPACKED_BYTES + 1."""
        left = 0
        while left <= MAX_UNPACKED_BYTES:
            part = self.read(CHUNK)
            if not part:
                break
            left += len(part)
        return left


def read_bytes(path):
    """The file's bytes, gunzipped when they start with the gzip magic (see DataFile), after its
    size is checked: at most MAX_UNPACKED_BYTES, stopped there when it unpacks to more."""
    with DataFile(path) as data:
        if data.size is not None and data.size > MAX_UNPACKED_BYTES:
            raise too_large(path, f"the file holds {data.size} bytes")
        raw = data.read(MAX_UNPACKED_BYTES + 1)
    if len(raw) > MAX_UNPACKED_BYTES:
        raise too_large(path, f"its gzip data unpacks to more than {MAX_UNPACKED_BYTES} bytes")
    return raw


def _looks_like_html(raw):
    """IDX starts with a zero byte and CSV with a digit or a header; markup starts with '<'."""
    return raw[:HEAD].lstrip()[:1] == b"<"


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
