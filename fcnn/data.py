"""MNIST as uint8 arrays: the bundled copy, IDX files, the CSV release or a Keras-style .npz.

Every reader checks structure strictly and refuses bad input with DataFormatError naming the
file and the record, line or byte offset; scaling to [0, 1] is the separate step `scale`.
"""

import gzip
import hashlib
import http.client
import math
import os
import re
import shutil
import tempfile
import urllib.request
import zipfile
import zlib
from pathlib import Path

import numpy as np

BUNDLED_DIR = Path(__file__).parent / "mnist"

# SHA-256 of the *uncompressed* official files (fcnn/mnist/README.md); the one place they live.
OFFICIAL_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# Maintained copies of the official .gz files (yann.lecun.com refuses many clients).
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

CSV_FILES = {"train": "mnist_train.csv", "test": "mnist_test.csv"}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
IMAGE_SIZE = 28
PIXELS = IMAGE_SIZE * IMAGE_SIZE
IDX_IMAGES_MAGIC = 0x00000803  # uint8, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # uint8, 1 dimension
# The IDX type byte (third byte of the magic) -> element type, stored big-endian.
IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"
USE_BUNDLED = "fcnn ships the full MNIST: load_mnist() with path=None (omit --data) needs no download."


class DataFormatError(ValueError):
    """A data file is missing, damaged or not in a format fcnn reads; the message says where."""


class DownloadError(DataFormatError):
    """No mirror delivered a file whose uncompressed bytes have the official SHA-256."""


def scale(images):
    """The one scaling step: uint8 pixels 0..255 -> float32 in [0, 1], x / 255, same shape."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(
            f"scale: images must be uint8 (0..255) as loaded; got {images.dtype} (already scaled?)"
        )
    return images.astype(np.float32) / np.float32(255)


def load_mnist(path=None, verify=False):
    """MNIST as (x_train, y_train, x_test, y_test): images uint8 (N, 28, 28), labels uint8 (N,).

    path None: the copy bundled in fcnn/mnist, always verified against OFFICIAL_SHA256.
    path a directory holding either
      - the four IDX files, raw or gzipped, named `train-images-idx3-ubyte` or
        `train-images.idx3-ubyte` (likewise train-labels-idx1, t10k-images-idx3,
        t10k-labels-idx1), with or without `.gz` (the first of these spellings that exists;
        IDX files win over CSV files in the same directory);
      - or `mnist_train.csv` and `mnist_test.csv` (or `.csv.gz`): one image per line, the label
        then 784 pixels, with or without a header line (see `read_csv`).
    path a `.npz` file with arrays x_train, y_train, x_test, y_test (the Keras layout; images
    (N, 28, 28) or (N, 784), integers 0..255), read with allow_pickle=False.

    Checksums are known only for the official IDX files. A user's IDX files are checked for
    structure (magic, shape, length, label range) but may be a subset or a modified copy, so
    their SHA-256 is compared with the official one only when verify=True; verify=True for CSV
    or .npz is refused, since no checksum exists to compare with. Anything malformed raises
    DataFormatError naming the file and where in it.
    """
    if path is None:
        return load_idx_directory(BUNDLED_DIR, find_idx_files(BUNDLED_DIR), verify=True)
    path = Path(path).expanduser()
    if path.is_file():
        if path.suffix != ".npz":
            raise DataFormatError(
                f"{path}: expected a directory of IDX or CSV files, or a .npz file; "
                f"got a {path.suffix or 'plain'} file"
            )
        refuse_verify(verify, path, "a .npz file")
        return read_npz(path)
    if not path.is_dir():
        raise DataFormatError(f"{path}: no such file or directory")
    idx_files = find_idx_files(path)
    csv_files = find_csv_files(path)
    if all(idx_files.values()):
        return load_idx_directory(path, idx_files, verify)
    if all(csv_files.values()):
        refuse_verify(verify, path, "CSV files")
        return load_csv_directory(csv_files)
    raise DataFormatError(missing_files_message(path, idx_files, csv_files))


def refuse_verify(verify, path, what):
    """verify=True asks for an official checksum, which exists only for the IDX files."""
    if verify:
        raise ValueError(
            f"load_mnist: verify=True needs the official IDX files; {path} holds {what}, "
            "for which no checksum is known"
        )


def idx_spellings(stem):
    """The four names an official IDX file goes by: `-idx` or `.idx`, raw or gzipped."""
    dotted = stem.replace("-idx", ".idx")
    return [stem, stem + ".gz", dotted, dotted + ".gz"]


def find_idx_files(directory):
    """{official stem: path of the first spelling that exists in directory, or None}."""
    found = {}
    for stem in OFFICIAL_SHA256:
        paths = [directory / name for name in idx_spellings(stem)]
        found[stem] = next((p for p in paths if p.is_file()), None)
    return found


def find_csv_files(directory):
    """{"train"/"test": path of mnist_<split>.csv or .csv.gz in directory, or None}."""
    found = {}
    for split, name in CSV_FILES.items():
        paths = [directory / name, directory / (name + ".gz")]
        found[split] = next((p for p in paths if p.is_file()), None)
    return found


def missing_files_message(directory, idx_files, csv_files):
    """Name every file looked for and not found, for the format the directory seems to hold."""
    looked_for = []
    if any(idx_files.values()) or not any(csv_files.values()):
        looked_for += [" or ".join(idx_spellings(stem)) for stem, p in idx_files.items() if p is None]
    if any(csv_files.values()) or not any(idx_files.values()):
        looked_for += [f"{name} or {name}.gz" for split, name in CSV_FILES.items() if not csv_files[split]]
    return f"{directory}: MNIST files missing; looked for: " + "; ".join(looked_for)


def read_bytes(path):
    """The file's bytes, gunzipped when they start with the gzip magic; HTML pages are refused."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataFormatError(f"{path}: cannot read ({error.strerror or error})") from error
    return unpack(raw, path)


def unpack(raw, source):
    """Bytes named `source` (a path or URL) -> their uncompressed content; HTML is refused.

    Gzip is recognised by its magic, not the name, except that a `.gz` name promising gzip and
    not keeping the promise is an error (usually an error page saved by a failed download).
    """
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise DataFormatError(f"{source}: damaged gzip data: {error}") from error
    elif str(source).endswith(".gz"):
        raise DataFormatError(
            f"{source}: named .gz but is not gzip data (byte offset 0 holds {raw[:16]!r}){html_hint(raw)}"
        )
    if looks_like_html(raw):
        raise DataFormatError(f"{source}: not MNIST data{html_hint(raw)}")
    return raw


def looks_like_html(raw):
    """IDX starts with a zero byte and CSV with a digit or a header; markup starts with '<'."""
    return raw[:512].lstrip()[:1] == b"<"


def html_hint(raw):
    """A hint for the usual cause of markup where data should be."""
    if not looks_like_html(raw):
        return ""
    return ": it is an HTML page, likely saved by a failed download; download again, or use the bundled copy"


def check_sha256(raw, path, stem):
    """The uncompressed bytes must hash to the official SHA-256 of `stem`."""
    found = hashlib.sha256(raw).hexdigest()
    if found != OFFICIAL_SHA256[stem]:
        raise DataFormatError(
            f"{path}: checksum mismatch for {stem}: SHA-256 of the uncompressed bytes is {found}, "
            f"the official file's is {OFFICIAL_SHA256[stem]}"
        )


def read_idx(path):
    """One IDX file (raw or gzipped) -> array of the shape and type its header declares.

    Layout: bytes 0-1 zero, byte 2 the element type (0x08 uint8, 0x09 int8, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64), byte 3 the number of dimensions d, then d
    big-endian uint32 sizes, then exactly prod(sizes) elements in C order, big-endian.
    The result is in native byte order and owns its memory.
    """
    return parse_idx(read_bytes(path), path)


def parse_idx(raw, path):
    """The IDX bytes of `path` (already uncompressed) -> array; see read_idx for the layout."""
    if len(raw) < 4:
        raise DataFormatError(
            f"{path}: truncated IDX header: the file ends at byte offset {len(raw)}, before the 4-byte magic"
        )
    zeros, type_code, ndim = raw[0:2], raw[2], raw[3]
    if zeros != b"\x00\x00" or type_code not in IDX_TYPES or ndim == 0:
        raise DataFormatError(
            f"{path}: not an IDX file: magic at byte offset 0 is 0x{raw[:4].hex()}; expected 0x0000 then a "
            f"type byte ({', '.join(f'0x{code:02x}' for code in IDX_TYPES)}) and a dimension count >= 1 "
            f"(0x{IDX_IMAGES_MAGIC:08x} for images, 0x{IDX_LABELS_MAGIC:08x} for labels)"
        )
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataFormatError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header_size} header bytes; "
            f"the file ends at byte offset {len(raw)}"
        )
    shape = tuple(int(size) for size in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[type_code]
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


def load_idx_directory(directory, idx_files, verify):
    """The four IDX files found in `directory` -> (x_train, y_train, x_test, y_test)."""
    arrays = {}
    for stem, path in idx_files.items():
        raw = read_bytes(path)
        if verify:
            check_sha256(raw, path, stem)
        arrays[stem] = parse_idx(raw, path)
    splits = []
    for prefix in ("train", "t10k"):
        images_stem, labels_stem = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
        images, labels = arrays[images_stem], arrays[labels_stem]
        check_idx_images(images, idx_files[images_stem])
        check_idx_labels(labels, idx_files[labels_stem])
        check_same_count(images, idx_files[images_stem], labels, idx_files[labels_stem])
        splits += [images, labels]
    return tuple(splits)


def check_idx_images(images, path):
    """An IDX image file holds uint8 (N, 28, 28), N >= 1."""
    if images.dtype != np.uint8 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or len(images) == 0:
        raise DataFormatError(
            f"{path}: expected IDX images, uint8 of shape (N, 28, 28) with N >= 1 "
            f"(magic 0x{IDX_IMAGES_MAGIC:08x}); found {images.dtype} of shape {images.shape}"
        )


def check_idx_labels(labels, path):
    """An IDX label file holds uint8 (N,) digits 0..9; a bad one is named by record and byte offset."""
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataFormatError(
            f"{path}: expected IDX labels, uint8 of shape (N,) (magic 0x{IDX_LABELS_MAGIC:08x}); "
            f"found {labels.dtype} of shape {labels.shape}"
        )
    bad = first_outside(labels, 0, 9)
    if bad is not None:
        raise DataFormatError(
            f"{path}: label {labels[bad]} at record {bad} (byte offset {8 + bad}) is outside 0..9"
        )


def first_outside(values, low, high):
    """Index (into the flattened array) of the first value outside [low, high], or None."""
    if values.size == 0 or (values.min() >= low and values.max() <= high):
        return None  # the usual case: two reductions, about 3x faster than building the masks below
    return int(np.flatnonzero((values < low) | (values > high))[0])


def check_same_count(images, images_source, labels, labels_source):
    """Each image has exactly one label."""
    if len(images) != len(labels):
        raise DataFormatError(
            f"{images_source} holds {len(images)} images but {labels_source} holds {len(labels)} labels"
        )


def load_csv_directory(csv_files):
    """mnist_train.csv and mnist_test.csv -> (x_train, y_train, x_test, y_test)."""
    x_train, y_train = read_csv(csv_files["train"])
    x_test, y_test = read_csv(csv_files["test"])
    return x_train, y_train, x_test, y_test


# A record: label then 784 pixels, each a plain decimal integer of one to three digits.
CSV_RECORD = re.compile(rb"[0-9]{1,3}(?:,[0-9]{1,3}){%d}\r?" % PIXELS)
CSV_CELL = re.compile(rb"[0-9]{1,3}")
CSV_ALPHABET = b"0123456789,\r"


def read_csv(path):
    """The CSV release of MNIST (raw or gzipped) -> images uint8 (N, 28, 28), labels uint8 (N,).

    One image per line: the label 0..9, then the 784 pixels 0..255 row by row, comma-separated,
    plain decimal integers (no spaces, signs or decimal points). An optional first line is a
    header whose first cell is `label` and which has 785 cells (Kaggle writes `label,pixel0,...`
    or `label,1x1,...`). The file may end with one newline; any other empty line is an error.
    """
    path = Path(path)
    lines = read_bytes(path).split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    first_record = 1 if lines and is_csv_header(lines[0], path) else 0
    records = lines[first_record:]
    if not records:
        raise DataFormatError(f"{path}: no records (expected lines of a label then {PIXELS} pixels)")
    values = parse_csv_records(records)
    if values is None:
        index, problem = first_bad_record(records)
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


def parse_csv_records(records):
    """Record lines -> int16 (N, 785), or None if any line is not 785 comma-separated integers.

    np.loadtxt is the fast parser but is laxer than the format (it skips blank lines, accepts
    spaces and signs); the byte filter and the shape check close those gaps, which costs far
    less than matching CSV_RECORD against every line (measured: about 0.1 s against 0.9 s for
    60,000 lines). On None the caller looks for the line to blame.
    """
    if any(line.translate(None, CSV_ALPHABET) for line in records):
        return None
    try:
        values = np.loadtxt(records, delimiter=",", dtype=np.int16, comments=None, ndmin=2)
    except ValueError:
        return None
    return values if values.shape == (len(records), 1 + PIXELS) else None


def first_bad_record(records):
    """(index, what is wrong) for the first line that is not a record."""
    for index, line in enumerate(records):
        problem = csv_line_problem(line)
        if problem is not None:
            return index, problem
    raise AssertionError("np.loadtxt refused lines that all have the form of a record")


def is_csv_header(line, path):
    """True if the first line is a valid header, False if it is a record; a broken header raises."""
    cells = line.removesuffix(b"\r").split(b",")
    if CSV_CELL.fullmatch(cells[0]):
        return False
    first = cells[0].strip().strip(b'"').lower()
    if first != b"label" or len(cells) != 1 + PIXELS:
        raise DataFormatError(
            f"{path}, line 1: a header must start with 'label' and have {1 + PIXELS} cells; "
            f"found {cells[0][:20]!r} first and {len(cells)} cells"
        )
    return True


def csv_line_problem(line):
    """None for a record; otherwise what is wrong: the cell count, or the first bad cell."""
    if CSV_RECORD.fullmatch(line):
        return None
    cells = line.removesuffix(b"\r").split(b",")
    if len(cells) != 1 + PIXELS:
        return f"expected {1 + PIXELS} comma-separated cells (label, then {PIXELS} pixels); found {len(cells)}"
    column, cell = next((k, cell) for k, cell in enumerate(cells, start=1) if not CSV_CELL.fullmatch(cell))
    meaning = "the label, 0..9" if column == 1 else "a pixel, 0..255"
    return f"cell {cell[:20]!r} in column {column} ({meaning}) is not a plain whole number of 1-3 digits"


def read_npz(path):
    """A Keras-layout .npz -> (x_train, y_train, x_test, y_test), validated and as uint8."""
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
            arrays = {key: archive[key] for key in NPZ_KEYS}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise DataFormatError(f"{path}: cannot read its arrays: {error}") from error
    splits = []
    for split in ("train", "test"):
        images = npz_images(arrays[f"x_{split}"], f"{path}: x_{split}")
        labels = npz_labels(arrays[f"y_{split}"], f"{path}: y_{split}")
        check_same_count(images, f"{path}: x_{split}", labels, f"y_{split}")
        splits += [images, labels]
    return tuple(splits)


def npz_images(images, source):
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


def npz_labels(labels, source):
    """Integer labels (N,) with values 0..9 -> uint8 (N,)."""
    if labels.dtype.kind not in "ui" or labels.ndim != 1:
        raise DataFormatError(
            f"{source}: expected integer labels of shape (N,); found {labels.dtype} {labels.shape}"
        )
    bad = first_outside(labels, 0, 9)
    if bad is not None:
        raise DataFormatError(f"{source}: label {labels[bad]} at record {bad} is outside 0..9")
    return labels.astype(np.uint8)


def default_cache_dir():
    """$XDG_CACHE_HOME/fcnn/mnist, or ~/.cache/fcnn/mnist."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fcnn" / "mnist"


def download_mnist(cache_dir=None, mirrors=MIRRORS):
    """The four official IDX .gz files, fetched into cache_dir (default ~/.cache/fcnn/mnist) -> cache_dir.

    A file already there whose uncompressed SHA-256 is official is kept. Otherwise each mirror
    is tried in turn: the download goes to a temporary file in cache_dir, its uncompressed
    bytes must have the official SHA-256, and only then is it renamed into place (os.replace),
    so a failed or corrupt download never leaves a file behind. If every mirror fails, raises
    DownloadError listing each failure and how to use the bundled copy instead.
    """
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(f"{cache_dir}: cannot create the download directory ({error}).\n{USE_BUNDLED}") from error
    for stem in OFFICIAL_SHA256:
        target = cache_dir / (stem + ".gz")
        if not is_official_file(target, stem):
            fetch_verified(stem, target, mirrors)
    return cache_dir


def is_official_file(path, stem):
    """True if path exists and its uncompressed bytes have the official SHA-256 of `stem`."""
    if not path.is_file():
        return False
    try:
        check_sha256(read_bytes(path), path, stem)
    except DataFormatError:
        return False
    return True


def fetch_verified(stem, target, mirrors):
    """Download <stem>.gz from the first mirror that serves the official bytes, into target."""
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + stem + ".gz"
        partial = None
        try:
            descriptor, partial_name = tempfile.mkstemp(dir=target.parent, prefix=f".{stem}.", suffix=".part")
            os.close(descriptor)
            partial = Path(partial_name)
            request = urllib.request.Request(url, headers={"User-Agent": "fcnn"})
            with urllib.request.urlopen(request, timeout=60) as response, partial.open("wb") as out:
                shutil.copyfileobj(response, out)
            check_sha256(unpack(partial.read_bytes(), url), url, stem)
            os.replace(partial, target)
            return
        except DataFormatError as error:  # its message already names the URL
            failures.append(str(error))
        except (OSError, ValueError, http.client.HTTPException) as error:
            failures.append(f"{url}: {error}")
        finally:
            if partial is not None:
                partial.unlink(missing_ok=True)
    raise DownloadError(
        f"could not download {stem}.gz into {target.parent}; every mirror failed:\n  "
        + "\n  ".join(failures)
        + f"\n{USE_BUNDLED}"
    )
