"""fcnn.data: every accepted format reads the same digits, and every malformed input is refused
with a message naming the file and where in it. Fixtures are a small slice of the bundled MNIST,
written out by hand (IDX headers packed here, not by the code under test).
"""

import gzip
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest

import fcnn
from fcnn.data import DataFormatError, bundled, load_mnist, read_csv, read_idx, scale

# Found from the package's location, not through fcnn.data, so the tests below check BUNDLED_DIR too.
MNIST_DIR = Path(fcnn.__file__).parent / "mnist"

N_TRAIN, N_TEST = 50, 20
OFFICIAL_STEMS = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


@pytest.fixture(scope="module")
def small(mnist):
    """The first 50 training and 20 test digits, as (x_train, y_train, x_test, y_test)."""
    x_train, y_train, x_test, y_test = mnist
    return x_train[:N_TRAIN], y_train[:N_TRAIN], x_test[:N_TEST], y_test[:N_TEST]


def idx_bytes(array):
    """IDX encoding of a uint8 array: 0x0000, type 0x08, ndim, big-endian sizes, then the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def idx_name(split, kind, dotted):
    stem = OFFICIAL_STEMS[(split, kind)]
    return stem.replace("-idx", ".idx") if dotted else stem


def write_idx_dir(directory, arrays, dotted=False, gz=False):
    """Write the four IDX files of `arrays` into directory; returns {(split, kind): path}."""
    x_train, y_train, x_test, y_test = arrays
    content = {
        ("train", "images"): x_train,
        ("train", "labels"): y_train,
        ("test", "images"): x_test,
        ("test", "labels"): y_test,
    }
    paths = {}
    for (split, kind), array in content.items():
        path = directory / (idx_name(split, kind, dotted) + (".gz" if gz else ""))
        raw = idx_bytes(array)
        path.write_bytes(gzip.compress(raw) if gz else raw)
        paths[(split, kind)] = path
    return paths


def csv_text(images, labels, header=None):
    """The CSV release's layout: label then 784 pixels per line, optionally after a header."""
    lines = [] if header is None else [header]
    for image, label in zip(images, labels):
        lines.append(",".join(str(int(v)) for v in [label, *image.reshape(-1)]))
    return "\n".join(lines) + "\n"


PIXEL_HEADER = "label," + ",".join(f"pixel{k}" for k in range(784))
GRID_HEADER = "label," + ",".join(f"{r}x{c}" for r in range(1, 29) for c in range(1, 29))


def write_csv_dir(directory, arrays, header=None, gz=False):
    x_train, y_train, x_test, y_test = arrays
    paths = {}
    for split, images, labels in (("train", x_train, y_train), ("test", x_test, y_test)):
        text = csv_text(images, labels, header).encode()
        path = directory / (f"mnist_{split}.csv" + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(text) if gz else text)
        paths[split] = path
    return paths


def assert_same_digits(loaded, expected):
    assert len(loaded) == 4
    for got, want in zip(loaded, expected):
        assert got.dtype == np.uint8
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def raises_naming(path, *fragments):
    """pytest.raises for a DataFormatError whose message names `path` and every fragment."""
    pattern = "".join(f"(?=.*{re.escape(str(f))})" for f in (path, *fragments))
    return pytest.raises(DataFormatError, match=re.compile(pattern, re.DOTALL))


# --- the bundled copy -------------------------------------------------------------------------


def test_bundled_mnist_has_the_official_shapes_dtypes_and_every_digit(mnist):
    x_train, y_train, x_test, y_test = mnist
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert all(a.dtype == np.uint8 for a in mnist)
    for labels in (y_train, y_test):
        counts = np.bincount(labels, minlength=10)
        assert len(counts) == 10
        # MNIST is roughly balanced: every digit holds 8-12 % of its split.
        assert (counts > 0.08 * len(labels)).all() and (counts < 0.12 * len(labels)).all()
    assert x_train.max() == 255 and x_train.min() == 0
    # Digits are dark strokes on a zero background: most pixels are 0.
    assert 0.7 < (x_train[:1000] == 0).mean() < 0.9


def test_bundled_test_split_matches_an_independent_decoding(mnist):
    assert bundled.BUNDLED_DIR.resolve() == MNIST_DIR.resolve()
    images_raw = gzip.decompress((MNIST_DIR / "t10k-images-idx3-ubyte.gz").read_bytes())
    labels_raw = gzip.decompress((MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())
    assert struct.unpack(">4I", images_raw[:16]) == (0x803, 10000, 28, 28)
    assert struct.unpack(">2I", labels_raw[:8]) == (0x801, 10000)
    np.testing.assert_array_equal(mnist[2], np.frombuffer(images_raw[16:], np.uint8).reshape(10000, 28, 28))
    np.testing.assert_array_equal(mnist[3], np.frombuffer(labels_raw[8:], np.uint8))


def test_checksum_constants_match_the_bundled_readme():
    readme = (MNIST_DIR / "README.md").read_text()
    table = dict(re.findall(r"\|\s*([\w-]+)\s*\|\s*[0-9a-f]{32}\s*\|\s*([0-9a-f]{64})\s*\|", readme))
    assert table == bundled.OFFICIAL_SHA256


def test_scale_maps_uint8_to_float32_unit_interval():
    images = np.array([[0, 51, 255]], dtype=np.uint8)
    scaled = scale(images)
    assert scaled.dtype == np.float32 and scaled.shape == images.shape
    np.testing.assert_array_equal(scaled, np.array([[0.0, 0.2, 1.0]], dtype=np.float32))


def test_scale_refuses_already_scaled_images():
    with pytest.raises(ValueError, match="uint8.*float32"):
        scale(np.zeros((2, 28, 28), dtype=np.float32))


# --- every accepted format reads the same digits ----------------------------------------------


@pytest.mark.parametrize("dotted", [False, True], ids=["dash-naming", "dot-naming"])
@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_idx_directory_reads_the_same_digits(tmp_path, small, dotted, gz):
    write_idx_dir(tmp_path, small, dotted=dotted, gz=gz)
    assert_same_digits(load_mnist(tmp_path), small)


def test_read_idx_reads_other_element_types_in_native_order(tmp_path):
    values = np.arange(-6, 6, dtype=np.int32).reshape(3, 4) * 1000
    raw = bytes([0, 0, 0x0C, 2]) + struct.pack(">2I", 3, 4) + values.astype(">i4").tobytes()
    (tmp_path / "values.idx").write_bytes(raw)
    got = read_idx(tmp_path / "values.idx")
    assert got.dtype == np.int32 and got.dtype.isnative
    assert got.flags.writeable and got.flags.owndata
    np.testing.assert_array_equal(got, values)


@pytest.mark.parametrize(
    "header", [None, PIXEL_HEADER, GRID_HEADER], ids=["no-header", "label-pixel0", "label-1x1"]
)
@pytest.mark.parametrize("gz", [False, True], ids=["csv", "csv.gz"])
def test_csv_directory_reads_the_same_digits(tmp_path, small, header, gz):
    write_csv_dir(tmp_path, small, header=header, gz=gz)
    assert_same_digits(load_mnist(tmp_path), small)


def test_csv_with_windows_line_ends_reads_the_same_digits(tmp_path, small):
    x_train, y_train = small[:2]
    windows_text = csv_text(x_train, y_train, PIXEL_HEADER).replace("\n", "\r\n")
    (tmp_path / "train.csv").write_bytes(windows_text.encode())
    images, labels = read_csv(tmp_path / "train.csv")
    np.testing.assert_array_equal(images, x_train)
    np.testing.assert_array_equal(labels, y_train)


@pytest.mark.parametrize("flat", [False, True], ids=["N-28-28", "N-784"])
def test_npz_reads_the_same_digits(tmp_path, small, flat):
    x_train, y_train, x_test, y_test = small
    if flat:
        x_train, x_test = x_train.reshape(-1, 784), x_test.reshape(-1, 784)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=x_train, y_train=y_train.astype(np.int64), x_test=x_test, y_test=y_test)
    assert_same_digits(load_mnist(path), small)


# --- malformed input is refused, naming the file and the place --------------------------------


def test_missing_idx_file_names_what_was_looked_for(tmp_path, small):
    paths = write_idx_dir(tmp_path, small)
    paths[("test", "labels")].unlink()
    with raises_naming(tmp_path, "t10k-labels-idx1-ubyte.gz", "t10k-labels.idx1-ubyte"):
        load_mnist(tmp_path)


def test_empty_directory_names_both_formats(tmp_path):
    with raises_naming(tmp_path, "train-images-idx3-ubyte", "mnist_train.csv"):
        load_mnist(tmp_path)


def test_missing_csv_file_names_what_was_looked_for(tmp_path, small):
    write_csv_dir(tmp_path, small)["test"].unlink()
    with raises_naming(tmp_path, "mnist_test.csv or mnist_test.csv.gz"):
        load_mnist(tmp_path)


def test_missing_path_is_refused(tmp_path):
    with raises_naming(tmp_path / "nowhere", "no such file"):
        load_mnist(tmp_path / "nowhere")


def test_wrong_idx_magic_is_refused(tmp_path, small):
    paths = write_idx_dir(tmp_path, small)
    path = paths[("train", "images")]
    path.write_bytes(b"\x12\x34\x56\x78" + path.read_bytes()[4:])
    with raises_naming(path, "magic", "byte offset 0", "0x12345678"):
        load_mnist(tmp_path)


def test_labels_where_images_belong_is_refused(tmp_path, small):
    paths = write_idx_dir(tmp_path, small)
    paths[("train", "images")].write_bytes(idx_bytes(small[1]))
    with raises_naming(paths[("train", "images")], "(N, 28, 28)", "(50,)"):
        load_mnist(tmp_path)


def test_images_of_wrong_size_are_refused(tmp_path, small):
    paths = write_idx_dir(tmp_path, small)
    paths[("test", "images")].write_bytes(idx_bytes(small[2][:, :27, :27]))
    with raises_naming(paths[("test", "images")], "(N, 28, 28)", "(20, 27, 27)"):
        load_mnist(tmp_path)


def test_truncated_idx_file_is_refused(tmp_path, small):
    paths = write_idx_dir(tmp_path, small)
    path = paths[("train", "images")]
    path.write_bytes(path.read_bytes()[:1000])
    with raises_naming(path, "truncated", f"byte offset {16 + 50 * 784}", "byte offset 1000"):
        load_mnist(tmp_path)


def test_truncated_idx_header_is_refused(tmp_path):
    path = tmp_path / "short-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with raises_naming(path, "truncated", "header", "byte offset 6"):
        read_idx(path)


def test_trailing_bytes_after_idx_data_are_refused(tmp_path, small):
    paths = write_idx_dir(tmp_path, small)
    path = paths[("test", "labels")]
    path.write_bytes(path.read_bytes() + b"\x00\x01\x02")
    with raises_naming(path, "3 extra bytes", f"byte offset {8 + 20}"):
        load_mnist(tmp_path)


def test_html_page_saved_as_gz_is_refused(tmp_path, small):
    paths = write_idx_dir(tmp_path, small, gz=True)
    path = paths[("train", "labels")]
    path.write_bytes(b"<!DOCTYPE html>\n<html><body>Access denied</body></html>\n")
    with raises_naming(path, "not gzip", "HTML page"):
        load_mnist(tmp_path)


def test_gzip_holding_an_html_page_is_refused(tmp_path, small):
    paths = write_idx_dir(tmp_path, small, gz=True)
    path = paths[("train", "images")]
    path.write_bytes(gzip.compress(b"  <html><head><title>404</title></head></html>"))
    with raises_naming(path, "HTML page"):
        load_mnist(tmp_path)


def test_truncated_gzip_is_refused(tmp_path, small):
    paths = write_idx_dir(tmp_path, small, gz=True)
    path = paths[("train", "images")]
    path.write_bytes(path.read_bytes()[:-100])
    with raises_naming(path, "damaged gzip"):
        load_mnist(tmp_path)


def test_idx_label_outside_0_to_9_is_refused_with_its_byte_offset(tmp_path, small):
    x_train, y_train, x_test, y_test = small
    y_bad = y_train.copy()
    y_bad[7] = 10
    paths = write_idx_dir(tmp_path, (x_train, y_bad, x_test, y_test))
    with raises_naming(paths[("train", "labels")], "label 10", "record 7", "byte offset 15"):
        load_mnist(tmp_path)


def test_idx_images_and_labels_of_different_counts_are_refused(tmp_path, small):
    x_train, y_train, x_test, y_test = small
    paths = write_idx_dir(tmp_path, (x_train, y_train[:-1], x_test, y_test))
    with raises_naming(paths[("train", "images")], paths[("train", "labels")], "50 images", "49 labels"):
        load_mnist(tmp_path)


def test_modified_idx_copy_fails_verification_but_loads_unverified(tmp_path, small):
    write_idx_dir(tmp_path, small)
    official = bundled.OFFICIAL_SHA256["train-images-idx3-ubyte"]
    with raises_naming(tmp_path / "train-images-idx3-ubyte", "checksum mismatch", official):
        load_mnist(tmp_path, verify=True)
    assert_same_digits(load_mnist(tmp_path, verify=False), small)


def test_bundled_copy_is_always_verified(tmp_path, small, monkeypatch):
    write_idx_dir(tmp_path, small, gz=True)
    monkeypatch.setattr(bundled, "BUNDLED_DIR", tmp_path)
    with raises_naming(tmp_path / "train-images-idx3-ubyte.gz", "checksum mismatch"):
        load_mnist()


def test_verify_is_refused_where_no_checksum_exists(tmp_path, small):
    write_csv_dir(tmp_path, small)
    with pytest.raises(ValueError, match="verify=True.*CSV"):
        load_mnist(tmp_path, verify=True)


def write_bad_csv(tmp_path, small, edit, header=None):
    """The test split's CSV with `edit(lines)` applied; returns its path."""
    paths = write_csv_dir(tmp_path, small, header=header)
    lines = paths["test"].read_text().split("\n")
    edit(lines)
    paths["test"].write_text("\n".join(lines))
    return paths["test"]


def test_csv_line_with_a_missing_cell_is_refused(tmp_path, small):
    def drop_last_cell(lines):
        lines[2] = lines[2].rsplit(",", 1)[0]

    path = write_bad_csv(tmp_path, small, drop_last_cell, header=PIXEL_HEADER)
    with raises_naming(path, "line 3", "785", "found 784"):
        load_mnist(tmp_path)


@pytest.mark.parametrize("cell", ["1.5", "x", "", " 5", "+5", "-0", "99999", "5\r"])
def test_csv_cell_that_is_not_a_plain_number_is_refused(tmp_path, small, cell):
    def spoil_cell(lines):
        cells = lines[4].split(",")
        cells[100] = cell
        lines[4] = ",".join(cells)

    path = write_bad_csv(tmp_path, small, spoil_cell)
    with raises_naming(path, "line 5", repr(cell.encode()), "column 101", "a pixel"):
        load_mnist(tmp_path)


def test_csv_pixel_outside_0_to_255_is_refused(tmp_path, small):
    def brighten(lines):
        cells = lines[9].split(",")
        cells[300] = "256"
        lines[9] = ",".join(cells)

    path = write_bad_csv(tmp_path, small, brighten, header=GRID_HEADER)
    with raises_naming(path, "line 10", "pixel 256", "column 301"):
        load_mnist(tmp_path)


def test_csv_label_outside_0_to_9_is_refused(tmp_path, small):
    def relabel(lines):
        lines[0] = "10" + lines[0][lines[0].index(","):]

    path = write_bad_csv(tmp_path, small, relabel)
    with raises_naming(path, "line 1", "label 10"):
        load_mnist(tmp_path)


def test_csv_label_that_is_not_a_number_is_refused(tmp_path, small):
    def spoil_label(lines):
        lines[1] = "seven" + lines[1][lines[1].index(","):]

    path = write_bad_csv(tmp_path, small, spoil_label)
    with raises_naming(path, "line 2", "'seven'", "column 1", "the label"):
        load_mnist(tmp_path)


def test_csv_empty_line_is_refused(tmp_path, small):
    path = write_bad_csv(tmp_path, small, lambda lines: lines.insert(6, ""))
    with raises_naming(path, "line 7", "found 1"):
        load_mnist(tmp_path)


def test_csv_header_without_label_is_refused(tmp_path, small):
    def rename_label_column(lines):
        lines[0] = lines[0].replace("label", "digit", 1)

    path = write_bad_csv(tmp_path, small, rename_label_column, header=PIXEL_HEADER)
    with raises_naming(path, "line 1", "header", "'label'"):
        load_mnist(tmp_path)


def test_csv_header_only_is_refused(tmp_path, small):
    def keep_only_the_header(lines):
        del lines[1:]

    path = write_bad_csv(tmp_path, small, keep_only_the_header, header=PIXEL_HEADER)
    with raises_naming(path, "no records"):
        load_mnist(tmp_path)


def test_npz_missing_array_is_refused(tmp_path, small):
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=small[0], y_train=small[1], x_test=small[2])
    with raises_naming(path, "y_test"):
        load_mnist(path)


def test_npz_pixel_outside_0_to_255_is_refused(tmp_path, small):
    x_train = small[0].astype(np.int64)
    x_train[3, 5, 6] = 300
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=x_train, y_train=small[1], x_test=small[2], y_test=small[3])
    with raises_naming(path, "x_train", "image 3", "300"):
        load_mnist(path)


def test_npz_scaled_float_images_are_refused(tmp_path, small):
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=scale(small[0]), y_train=small[1], x_test=small[2], y_test=small[3])
    with raises_naming(path, "x_train", "integer", "float32"):
        load_mnist(path)


def test_npz_images_and_labels_of_different_counts_are_refused(tmp_path, small):
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=small[0], y_train=small[1], x_test=small[2], y_test=small[3][:-2])
    with raises_naming(path, "20 images", "18 labels"):
        load_mnist(path)


def test_npz_that_is_not_an_archive_is_refused(tmp_path):
    path = tmp_path / "mnist.npz"
    path.write_bytes(b"<html>not found</html>")
    with raises_naming(path, "cannot read as .npz"):
        load_mnist(path)


def test_single_npy_array_named_npz_is_refused(tmp_path, small):
    path = tmp_path / "mnist.npz"
    with path.open("wb") as out:
        np.save(out, small[0])
    with raises_naming(path, "single .npy array"):
        load_mnist(path)


# --- sizes checked before anything is read or unpacked (issue 18) -------------------------------


def traced_peak(function):
    """(what function() raised or returned, the peak of Python allocations meanwhile, in bytes)."""
    import tracemalloc

    tracemalloc.start()
    try:
        try:
            outcome = function()
        except Exception as error:  # noqa: BLE001  (the caller checks what it is)
            outcome = error
        return outcome, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_size_bound_is_far_above_mnist_and_far_below_a_machines_memory():
    from fcnn.data import _files

    assert 20 * 60000 * 784 < _files.MAX_UNPACKED_BYTES <= 2**30


def test_a_sparse_8_gib_idx_file_is_refused_by_its_header_before_reading(tmp_path, small):
    paths = write_idx_dir(tmp_path, small)
    path = paths[("train", "images")]
    count = (8 * 2**30 - 16) // 784
    with path.open("wb") as file:
        file.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", count, 28, 28))
        file.truncate(16 + count * 784)  # sparse: takes no disk space
    refusal, peak = traced_peak(lambda: load_mnist(tmp_path))
    assert isinstance(refusal, DataFormatError), refusal
    assert re.search(re.escape(str(path)) + r".*IDX header claims shape \(%d, 28, 28\)" % count, str(refusal))
    assert peak < 20 * 2**20


def test_a_small_gzip_bomb_is_refused_without_unpacking_it(tmp_path, small):
    # 2 MiB on disk, 2 GiB unpacked: gzip members of 64 MiB of zeros, one after another.
    paths = write_idx_dir(tmp_path, small, gz=True)
    path = paths[("train", "images")]
    count = 2**31 // 784
    zeros = gzip.compress(bytes(64 * 2**20), compresslevel=9)
    with path.open("wb") as file:
        file.write(gzip.compress(bytes([0, 0, 8, 3]) + struct.pack(">3I", count, 28, 28)))
        for _ in range(32):
            file.write(zeros)
    assert path.stat().st_size < 4 * 2**20
    refusal, peak = traced_peak(lambda: load_mnist(tmp_path))
    assert isinstance(refusal, DataFormatError), refusal
    assert str(path) in str(refusal) and "header claims" in str(refusal)
    assert peak < 20 * 2**20


def test_gzip_data_beyond_the_header_is_counted_not_kept(tmp_path, small):
    # An honest header (the 20 test labels), then 1.1 GiB of zeros unpacked from 1.2 MiB.
    paths = write_idx_dir(tmp_path, small, gz=True)
    path = paths[("test", "labels")]
    zeros = gzip.compress(bytes(64 * 2**20), compresslevel=9)
    with path.open("wb") as file:
        file.write(gzip.compress(idx_bytes(small[3])))
        for _ in range(18):
            file.write(zeros)
    refusal, peak = traced_peak(lambda: load_mnist(tmp_path))
    assert isinstance(refusal, DataFormatError), refusal
    assert str(path) in str(refusal) and "extra bytes after the data" in str(refusal)
    assert peak < 20 * 2**20


def test_a_csv_that_unpacks_beyond_the_bound_is_refused(tmp_path, small, monkeypatch):
    from fcnn.data import _files

    # The bound made small so that the test is quick; the rule is the same at 1 GiB.
    monkeypatch.setattr(_files, "MAX_UNPACKED_BYTES", 2**20)
    paths = write_csv_dir(tmp_path, small, gz=True)
    paths["train"].write_bytes(gzip.compress(csv_text(*small[:2]).encode() * 60))
    with raises_naming(paths["train"], "unpacks to more than 1048576 bytes"):
        load_mnist(tmp_path)
    raw = tmp_path / "raw"
    raw.mkdir()
    paths = write_csv_dir(raw, small)
    paths["test"].write_bytes(b"0" * (2**20 + 1))
    with raises_naming(paths["test"], "the file holds 1048577 bytes"):
        load_mnist(raw)


def test_an_npz_entry_whose_header_claims_more_than_it_holds_is_refused_before_reading(tmp_path, small):
    import io
    import zipfile

    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=small[0], y_train=small[1], x_test=small[2], y_test=small[3])
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (10**13, 28, 28)})
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    entries["x_train.npy"] = header.getvalue() + bytes(784)
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    refusal, peak = traced_peak(lambda: load_mnist(path))
    assert isinstance(refusal, DataFormatError), refusal
    assert str(path) in str(refusal) and "x_train" in str(refusal) and "header claims shape" in str(refusal)
    assert peak < 20 * 2**20


def test_a_fifo_or_a_folder_where_a_data_file_belongs_is_called_what_it_is(tmp_path, small):
    fifo = tmp_path / "mnist.npz"
    os.mkfifo(fifo)
    with raises_naming(fifo, "a FIFO (named pipe)"):
        load_mnist(fifo)
    folder = tmp_path / "idx"
    folder.mkdir()
    paths = write_idx_dir(folder, small)
    paths[("test", "labels")].unlink()
    paths[("test", "labels")].mkdir()
    with raises_naming(paths[("test", "labels")], "a directory, not a data file"):
        load_mnist(folder)
    paths[("test", "labels")].rmdir()
    os.mkfifo(paths[("test", "labels")])
    with raises_naming(paths[("test", "labels")], "a FIFO (named pipe), not a data file"):
        load_mnist(folder)
