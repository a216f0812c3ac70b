"""Tests of fcnn.checkpoint: round trip, atomic writes that survive a crash, and refusal of
files that are truncated, corrupt or do not fit their architecture."""

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fcnn
from fcnn import checkpoint
from fcnn.checkpoint import CheckpointError, generator_from_state, load_checkpoint, metrics_path, save_checkpoint, write_metrics
from fcnn.training import STATE_KEYS


def random_tree(arch, seed, dtype="float32"):
    """Parameters shaped for arch, with values unlike init's, so a mix-up cannot go unnoticed."""
    rng = np.random.default_rng(seed)
    return {layer: {k: rng.standard_normal(a.shape).astype(dtype) for k, a in arrays.items()}
            for layer, arrays in fcnn.init(arch, dtype=dtype).items()}


def write(path, arch="seed", epoch=2, dtype="float32"):
    """Save a checkpoint with known contents; return what was saved."""
    rng = np.random.default_rng(123)
    rng.permutation(10)
    saved = {
        "arch": arch, "params": random_tree(arch, 1, dtype), "velocity": random_tree(arch, 2, dtype),
        "epoch": epoch, "rng_state": rng.bit_generator.state,
        "metrics": [{"epoch": 1, "train_loss": 0.5, "step_losses": [2.3, 0.5]}],
        "config": {"arch": arch, "lr": 0.1, "batch_size": 32},
    }
    save_checkpoint(path, **saved)
    return saved, rng


def rewrite(path, change):
    """Load the raw entries of an .npz, let change(entries) edit the dict, write it back."""
    with np.load(path) as archive:
        entries = {key: archive[key] for key in archive.files}
    change(entries)
    np.savez(path, **entries)


@pytest.mark.parametrize("arch, dtype", [("seed", "float32"), ("lenet5", "float32"), ("seed", "float64")])
def test_round_trip_gives_back_every_array_and_setting(tmp_path, arch, dtype):
    path = tmp_path / "run.npz"
    saved, rng = write(path, arch, dtype=dtype)
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 2
    assert loaded["arch"] == fcnn.resolve_arch(arch)
    assert loaded["metrics"] == saved["metrics"]
    assert loaded["config"] == saved["config"]
    for group in ("params", "velocity"):
        assert loaded[group].keys() == saved[group].keys()
        for layer in saved[group]:
            for k, array in saved[group][layer].items():
                assert loaded[group][layer][k].dtype == np.dtype(dtype)
                assert np.array_equal(loaded[group][layer][k], array)
    # The restored generator continues the stream where the saved one stood.
    assert np.array_equal(generator_from_state(loaded["rng_state"]).permutation(20), rng.permutation(20))


def test_saved_file_holds_no_pickled_objects(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    with np.load(path, allow_pickle=False) as archive:
        assert all(archive[key].dtype != object for key in archive.files)
        assert "params/conv1/w" in archive.files and "velocity/dense1/b" in archive.files


def test_a_crash_before_the_rename_keeps_the_old_checkpoint_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "run.npz"
    write(path, epoch=1)
    before = path.read_bytes()

    def crash(source, destination):
        raise OSError("disk vanished")

    monkeypatch.setattr(checkpoint.os, "replace", crash)
    with pytest.raises(OSError, match="disk vanished"):
        write(path, epoch=2)
    assert path.read_bytes() == before
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(os.listdir(tmp_path)) == ["run.npz"]


def test_a_crash_halfway_through_writing_keeps_the_old_checkpoint(tmp_path):
    path = tmp_path / "run.npz"
    write(path, epoch=1)
    before = path.read_bytes()

    def half_then_interrupt(file):
        file.write(before[: len(before) // 2])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        checkpoint.atomic_write(path, half_then_interrupt)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["run.npz"]


def test_a_ctrl_c_just_after_the_temporary_file_is_created_leaves_no_temp_file(tmp_path, monkeypatch):
    # The file exists, but the call that created it has not returned yet.
    path = tmp_path / "run.npz"
    create = os.open

    def create_then_interrupt(*args, **kwargs):
        os.close(create(*args, **kwargs))
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "open", create_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        write(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_written_files_get_the_usual_permissions(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert os.stat(path).st_mode == os.stat(plain).st_mode


def expect_refusal(path, *fragments):
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_refuses_a_missing_file(tmp_path):
    expect_refusal(tmp_path / "nothing.npz", "no such file")


def test_refuses_a_truncated_file(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    path.write_bytes(path.read_bytes()[:-200])
    expect_refusal(path, "truncated")


def test_refuses_a_file_with_a_corrupt_entry_and_names_it(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    data = bytearray(path.read_bytes())
    # Flip bytes inside the stored weights of dense1 (the largest array): the zip CRC catches it.
    with np.load(path) as archive:
        weights = archive["params/dense1/w"].tobytes()
    offset = bytes(data).index(weights[:64]) + 1000
    data[offset:offset + 8] = bytes(255 - b for b in data[offset:offset + 8])
    path.write_bytes(bytes(data))
    expect_refusal(path, "'params/dense1/w'", "corrupt")


def test_refuses_a_file_that_is_not_an_npz(tmp_path):
    path = tmp_path / "run.npz"
    path.write_text("not a checkpoint")
    expect_refusal(path, "not an .npz")


@pytest.mark.parametrize("key", ["params/dense1/b", "velocity/conv1/w", "rng_state", "format_version"])
def test_refuses_a_missing_entry_and_names_it(tmp_path, key):
    path = tmp_path / "run.npz"
    write(path)
    rewrite(path, lambda entries: entries.pop(key))
    expect_refusal(path, "missing entry", repr(key))


def test_refuses_an_extra_entry_and_names_it(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    rewrite(path, lambda entries: entries.update({"params/conv2/w": np.zeros((4, 8, 3, 3), np.float32)}))
    expect_refusal(path, "unexpected entry", "'params/conv2/w'")


def test_refuses_an_array_whose_shape_does_not_fit_the_architecture(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    rewrite(path, lambda entries: entries.update({"params/conv1/w": np.zeros((8, 1, 5, 5), np.float32)}))
    expect_refusal(path, "'params/conv1/w'", "(8, 1, 5, 5)", "(8, 1, 3, 3)")


def test_refuses_params_of_another_architecture(tmp_path):
    path = tmp_path / "run.npz"
    write(path, arch="lenet5")
    rewrite(path, lambda entries: entries.update({"arch": np.array(json.dumps(fcnn.resolve_arch("seed")))}))
    expect_refusal(path, "unexpected entry", "'params/conv2/b'")


@pytest.mark.parametrize("dtype", [np.int32, np.float16])
def test_refuses_an_array_of_the_wrong_dtype(tmp_path, dtype):
    path = tmp_path / "run.npz"
    write(path)
    rewrite(path, lambda entries: entries.update({"velocity/dense1/b": entries["velocity/dense1/b"].astype(dtype)}))
    expect_refusal(path, "'velocity/dense1/b'", "dtype")


def test_refuses_another_format_version(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    rewrite(path, lambda entries: entries.update({"format_version": np.array(99)}))
    expect_refusal(path, "'format_version'", "99")


def test_refuses_an_architecture_that_is_not_valid(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    rewrite(path, lambda entries: entries.update({"arch": np.array('[{"type": "softmax"}]')}))
    expect_refusal(path, "'arch'", "softmax")


def test_refuses_text_that_is_not_json(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    rewrite(path, lambda entries: entries.update({"metrics": np.array("[{oops")}))
    expect_refusal(path, "'metrics'", "JSON")


def test_refuses_an_unusable_rng_state(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    rewrite(path, lambda entries: entries.update({"rng_state": np.array('{"bit_generator": "NoSuchRNG"}')}))
    expect_refusal(path, "'rng_state'")


@pytest.mark.parametrize("checkpoint_path, expected", [
    ("runs/seed.npz", "runs/seed.metrics.jsonl"),
    ("runs/seed", "runs/seed.metrics.jsonl"),
    ("runs/seed.v2.npz", "runs/seed.v2.metrics.jsonl"),
])
def test_metrics_file_sits_beside_the_checkpoint(checkpoint_path, expected):
    assert metrics_path(checkpoint_path) == expected


def test_write_metrics_writes_one_json_object_per_line(tmp_path):
    records = [{"epoch": 1, "train_loss": 0.4, "step_losses": [1.0, 0.5]}, {"epoch": 2, "train_loss": 0.3, "step_losses": []}]
    path = tmp_path / "run.metrics.jsonl"
    write_metrics(path, records)
    assert [json.loads(line) for line in path.read_text().splitlines()] == records


def test_refuses_nan_or_inf_weights_and_names_the_entry(tmp_path):
    path = tmp_path / "run.npz"
    write(path)

    def poison(entries):
        entries["params/dense1/w"] = entries["params/dense1/w"].copy()
        entries["params/dense1/w"][3, 4] = np.nan
        entries["params/dense1/w"][5, 6] = np.inf

    rewrite(path, poison)
    expect_refusal(path, "'params/dense1/w'", "2 inf or NaN")


@pytest.mark.parametrize("key, text, fragment", [
    ("config", "[1, 2]", "JSON object"),
    ("config", '"lr=0.1"', "JSON object"),
    ("metrics", '{"epoch": 1}', "list of objects"),
    ("metrics", "[1, 2]", "list of objects"),
    ("rng_state", "[]", "RNG state"),
    ("rng_state", '{"bit_generator": "PCG64", "state": "oops"}', "RNG state"),
    ("arch", '[{"type": "conv", "filters": "8", "kernel": 3}, {"type": "flatten"}, {"type": "dense", "units": 10}]', "'arch'"),
    ("arch", '{"type": "dense"}', "'arch'"),
    ("metrics", "[" * 100000 + "]" * 100000, "JSON"),
])
def test_refuses_json_entries_of_the_wrong_type(tmp_path, key, text, fragment):
    path = tmp_path / "run.npz"
    write(path)
    rewrite(path, lambda entries: entries.update({key: np.array(text)}))
    expect_refusal(path, repr(key) if key != "arch" else "", fragment)


def test_refuses_a_compressed_entry(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    with np.load(path) as archive:
        entries = {key: archive[key] for key in archive.files}
    np.savez_compressed(path, **entries)
    expect_refusal(path, "compressed")


def npy_bytes(array, header=None):
    """An .npy file of `array`; with `header`, that header dict text in place of numpy's own."""
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    data = buffer.getvalue()
    if header is None:
        return data
    length = int.from_bytes(data[8:10], "little")
    text = header.encode("latin1")
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return data[:8] + len(text).to_bytes(2, "little") + text + data[10 + length:]


def replace_member(path, key, content):
    """Rewrite the .npz at path with the member `key`.npy holding `content` (bytes), as a valid zip."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    members[f"{key}.npy"] = content
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


@pytest.mark.parametrize("header, fragment", [
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (1352, 1000000000000), }", "shape"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (1352, 10, -1), }", "shape"),
    ("{'descr': '>f4', 'fortran_order': False, 'shape': (1352, 10), }", "dtype"),
    ("{'descr': '|O', 'fortran_order': False, 'shape': (1352, 10), }", "objects"),
    ("{'descr': '<f4', 'fortran_order': True, 'shape': (1352, 10), }", "Fortran"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (1352, 10), 'x': 1}", "corrupt"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (1352, 10", "corrupt"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (1352, 20), }", "bytes of data"),
])
def test_refuses_a_malformed_npy_header_before_reading_the_data(tmp_path, header, fragment):
    path = tmp_path / "run.npz"
    write(path)
    with np.load(path) as archive:
        weights = archive["params/dense1/w"]
    replace_member(path, "params/dense1/w", npy_bytes(weights, header))
    expect_refusal(path, "'params/dense1/w'", fragment)


def test_a_header_and_architecture_that_claim_petabytes_allocate_nothing(tmp_path):
    # The architecture agrees with the header (dense1 of 10**11 units), so only the file's size
    # can tell: the claim must be refused before any allocation.
    import tracemalloc

    path = tmp_path / "run.npz"
    write(path)
    huge = 10**11
    arch = fcnn.resolve_arch("seed")
    arch[-1]["units"] = huge
    rewrite(path, lambda entries: entries.update({"arch": np.array(json.dumps(arch))}))
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': (1352, {huge}), }}"
    with np.load(path) as archive:
        weights = archive["params/dense1/w"]
    replace_member(path, "params/dense1/w", npy_bytes(weights, header))
    tracemalloc.start()
    try:
        expect_refusal(path, "'params/dense1/w'")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20


def test_parameter_shapes_are_those_init_allocates():
    arches = ["seed", "lenet5", [{"type": "conv", "filters": 3, "kernel": [2, 4], "stride": 2, "pad": 1},
                                 {"type": "maxpool", "size": 3, "stride": 2}, {"type": "flatten"},
                                 {"type": "dense", "units": 7}, {"type": "relu"}, {"type": "dense", "units": 10}]]
    for arch in arches:
        params = fcnn.init(arch, seed=0)
        expected = {f"{group}/{layer}/{name}": array.shape
                    for group in ("params", "velocity") for layer, arrays in params.items() for name, array in arrays.items()}
        assert checkpoint.parameter_shapes(arch) == expected


@pytest.mark.parametrize("change, fragment", [
    (lambda params: params["dense1"].update(w=np.full_like(params["dense1"]["w"], np.nan)), "'params/dense1/w'"),
    (lambda params: params["conv1"].update(b=params["conv1"]["b"].astype(np.float16)), "'params/conv1/b'"),
    (lambda params: params["conv1"].update(w=np.zeros((8, 1, 5, 5), np.float32)), "'params/conv1/w'"),
    (lambda params: params.pop("dense1"), "params/dense1/w"),
])
def test_save_refuses_what_load_would_refuse_and_writes_nothing(tmp_path, change, fragment):
    params = fcnn.init("seed", seed=0)
    change(params)
    with pytest.raises(ValueError, match="save_checkpoint") as caught:
        save_checkpoint(tmp_path / "run.npz", arch="seed", params=params, velocity=fcnn.zeros_like(fcnn.init("seed")),
                        epoch=1, rng_state=np.random.default_rng(0).bit_generator.state)
    assert fragment in str(caught.value)
    assert os.listdir(tmp_path) == []


def test_the_next_save_removes_the_temporary_files_of_killed_saves_and_nothing_else(tmp_path):
    path = tmp_path / "run.npz"
    leftovers = [tmp_path / ".run.npz.0123456789ab.tmp", tmp_path / ".run.npz.ffffffffffff.tmp"]
    others = [tmp_path / ".other.npz.0123456789ab.tmp", tmp_path / ".run.npz.notes.tmp", tmp_path / "run.npz.tmp",
              tmp_path / ".run.npz.0123456789ab.tmp.keep"]
    for file in leftovers + others:
        file.write_bytes(b"half a checkpoint")
    write(path)
    assert sorted(os.listdir(tmp_path)) == sorted([path.name] + [file.name for file in others])
    assert load_checkpoint(path)["epoch"] == 2


# Fuzzing: every mutated file is either refused with CheckpointError or loads exactly as the
# original did; any other exception, or a silently different result, fails.

@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """The bytes of a seed checkpoint, what loading them gives, and the byte ranges that hold
    structure (zip headers, .npy headers, the central directory) rather than array data."""
    import zipfile

    path = tmp_path_factory.mktemp("fuzz") / "run.npz"
    write(path)
    data = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        directory_start = min(info.header_offset for info in infos) + sum(
            30 + len(info.filename) + len(info.extra) + info.compress_size for info in infos)
    structure = [(info.header_offset, info.header_offset + 30 + len(info.filename) + len(info.extra) + 128)
                 for info in infos] + [(directory_start, len(data))]
    return {"data": data, "loaded": load_checkpoint(path), "structure": structure, "dir": path.parent}


def assert_refused_or_identical(pristine, mutated):
    path = pristine["dir"] / "mutated.npz"
    path.write_bytes(mutated)
    try:
        loaded = load_checkpoint(path)
    except CheckpointError as error:
        assert str(path) in str(error)
        return
    expected = pristine["loaded"]
    assert loaded.keys() == expected.keys()
    for key in ("format_version", "epoch", "arch", "rng_state", "metrics", "config"):
        assert loaded[key] == expected[key], key
    for group in ("params", "velocity"):
        assert loaded[group].keys() == expected[group].keys()
        for layer, arrays in expected[group].items():
            for name, array in arrays.items():
                assert loaded[group][layer][name].dtype == array.dtype
                assert np.array_equal(loaded[group][layer][name], array), f"{group}/{layer}/{name}"


@st.composite
def offsets(draw, pristine):
    """A byte offset: anywhere, or (more often) inside the file's structure."""
    if draw(st.booleans()):
        return draw(st.integers(0, len(pristine["data"]) - 1))
    start, end = draw(st.sampled_from(pristine["structure"]))
    return draw(st.integers(start, min(end, len(pristine["data"])) - 1))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_bit_flips_are_refused_or_harmless(pristine, data):
    mutated = bytearray(pristine["data"])
    for _ in range(data.draw(st.integers(1, 3))):
        mutated[data.draw(offsets(pristine))] ^= 1 << data.draw(st.integers(0, 7))
    assert_refused_or_identical(pristine, bytes(mutated))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_truncations_and_overwrites_are_refused_or_harmless(pristine, data):
    original = pristine["data"]
    if data.draw(st.booleans()):
        mutated = original[:data.draw(st.integers(0, len(original) - 1))]
    else:
        start = data.draw(offsets(pristine))
        mutated = original[:start] + data.draw(st.binary(min_size=1, max_size=16)) + original[start + 16:]
    assert_refused_or_identical(pristine, mutated)


HEADER_VALUES = {
    "descr": st.sampled_from(["'<f4'", "'<f8'", "'>f4'", "'<i4'", "'|O'", "'<U5'", "'|V8'", "[('a', '<f4')]", "'<f4", "42"]),
    "fortran_order": st.sampled_from(["False", "True", "0", "None"]),
    "shape": st.one_of(
        st.lists(st.integers(-2, 2000), max_size=4).map(lambda dims: "(" + "".join(f"{d}, " for d in dims) + ")"),
        st.sampled_from(["(10**9,)", "(1000000000000000000000,)", "[8]", "()", "(1352 10)", "'x'"]),
    ),
}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_npy_header_edits_are_refused_or_harmless(pristine, data):
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(pristine["data"])) as archive:
        names = [info.filename for info in archive.infolist()]
        name = data.draw(st.sampled_from(names))
        array = np.load(io.BytesIO(archive.read(name)))
    fields = {"descr": repr(np.lib.format.dtype_to_descr(array.dtype)), "fortran_order": "False",
              "shape": repr(array.shape)}
    for field in data.draw(st.lists(st.sampled_from(sorted(HEADER_VALUES)), min_size=1, max_size=3, unique=True)):
        fields[field] = data.draw(HEADER_VALUES[field])
    header = "{" + "".join(f"'{field}': {value}, " for field, value in fields.items()) + "}"
    path = pristine["dir"] / "edited.npz"
    path.write_bytes(pristine["data"])
    replace_member(path, name.removesuffix(".npy"), npy_bytes(array, header))
    assert_refused_or_identical(pristine, path.read_bytes())


# --- optimiser state beside the parameters (issue 19 item 5) ------------------------------------


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "rmsprop"])
def test_an_adaptive_optimisers_state_round_trips_exactly(tmp_path, optimizer):
    path = tmp_path / "run.npz"
    params = random_tree("seed", 1, "float32")
    state = {key: 7 if key == "t" else random_tree("seed", 3 + index, "float32")
             for index, key in enumerate(STATE_KEYS[optimizer])}
    save_checkpoint(path, arch="seed", params=params, optimizer=optimizer, optimizer_state=state, epoch=1,
                    rng_state=np.random.default_rng(0).bit_generator.state)
    with np.load(path) as archive:
        assert not any(name.startswith("velocity/") for name in archive.files)
    loaded = load_checkpoint(path)
    assert loaded["optimizer"] == optimizer and loaded["velocity"] is None
    assert loaded["optimizer_state"].keys() == state.keys()
    for key, tree in state.items():
        if key == "t":
            assert loaded["optimizer_state"]["t"] == 7
            continue
        for layer in tree:
            for name, array in tree[layer].items():
                assert np.array_equal(loaded["optimizer_state"][key][layer][name], array)


def test_an_sgd_checkpoint_is_written_as_before_optimisers_existed(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    with np.load(path) as archive:
        assert "optimizer" not in archive.files
    loaded = load_checkpoint(path)
    assert loaded["optimizer"] == "sgd" and loaded["optimizer_state"] is loaded["velocity"]


@pytest.mark.parametrize("entry, fragment", [
    ({"name": "lbfgs"}, "must name one of"),
    ({"name": "adam", "t": -1}, "'t' must be an integer >= 0"),
    ({"name": "adam", "t": True}, "'t' must be an integer >= 0"),
    ([1], "must name one of"),
])
def test_a_bad_optimizer_entry_is_refused_by_name(tmp_path, entry, fragment):
    path = tmp_path / "run.npz"
    params = random_tree("seed", 1, "float32")
    save_checkpoint(path, arch="seed", params=params, optimizer="adam",
                    optimizer_state={"t": 1, "m": params, "v": params}, epoch=1,
                    rng_state=np.random.default_rng(0).bit_generator.state)
    rewrite(path, lambda entries: entries.update({"optimizer": np.array(json.dumps(entry))}))
    expect_refusal(path, "'optimizer'", fragment)


# --- the model's state and the dropout generator (issue 19 item 4) -----------------------------

# Batch norm after a conv and after a dense layer, and dropout: every kind of state a run keeps.
BN_NET = [
    {"type": "conv", "filters": 4, "kernel": 3}, {"type": "batchnorm"}, {"type": "relu"},
    {"type": "maxpool", "size": 2}, {"type": "flatten"}, {"type": "dense", "units": 16},
    {"type": "batchnorm"}, {"type": "relu"}, {"type": "dropout", "rate": 0.3}, {"type": "dense", "units": 10},
]


def random_state(arch, seed, dtype="float32"):
    rng = np.random.default_rng(seed)
    return {layer: {k: rng.random(a.shape).astype(dtype) + 0.5 for k, a in arrays.items()}
            for layer, arrays in fcnn.init_state(arch, dtype=dtype).items()}


def write_bn(path, model_state=None, dropout_rng_state="fresh"):
    """Save a BN_NET checkpoint trained with Adam; return what was saved."""
    params = random_tree(BN_NET, 1)
    dropout = np.random.default_rng(9)
    dropout.random(5)
    saved = {"arch": BN_NET, "params": params, "optimizer": "adam",
             "optimizer_state": {"t": 3, "m": random_tree(BN_NET, 2), "v": random_tree(BN_NET, 3)},
             "model_state": random_state(BN_NET, 4) if model_state is None else model_state,
             "epoch": 1, "rng_state": np.random.default_rng(0).bit_generator.state,
             "dropout_rng_state": dropout.bit_generator.state if dropout_rng_state == "fresh" else dropout_rng_state}
    save_checkpoint(path, **saved)
    return saved, dropout


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_model_state_and_the_dropout_generator_round_trip_exactly(tmp_path, dtype):
    path = tmp_path / "run.npz"
    state = random_state(BN_NET, 4, dtype)
    params = random_tree(BN_NET, 1, dtype)
    dropout = np.random.default_rng(9)
    save_checkpoint(path, arch=BN_NET, params=params, velocity=fcnn.zeros_like(params), model_state=state, epoch=1,
                    rng_state=np.random.default_rng(0).bit_generator.state, dropout_rng_state=dropout.bit_generator.state)
    with np.load(path) as archive:
        assert {"state/batchnorm1/running_mean", "state/batchnorm2/running_var", "dropout_rng_state"} <= set(archive.files)
    loaded = load_checkpoint(path)
    assert loaded["model_state"].keys() == state.keys()
    for layer in state:
        for k, array in state[layer].items():
            assert loaded["model_state"][layer][k].dtype == np.dtype(dtype)
            assert np.array_equal(loaded["model_state"][layer][k], array)
    assert np.array_equal(generator_from_state(loaded["dropout_rng_state"]).random(7), dropout.random(7))


def test_a_network_without_batch_norm_or_dropout_keeps_neither(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    with np.load(path) as archive:
        assert not any(name.startswith("state/") for name in archive.files) and "dropout_rng_state" not in archive.files
    loaded = load_checkpoint(path)
    assert loaded["model_state"] == {} and loaded["dropout_rng_state"] is None


@pytest.mark.parametrize("change, fragment", [
    (lambda entries: entries.pop("state/batchnorm2/running_var"), "missing entry 'state/batchnorm2/running_var'"),
    (lambda entries: entries.pop("dropout_rng_state"), "missing entry 'dropout_rng_state'"),
    (lambda entries: entries.update({"state/batchnorm1/running_mean": np.zeros(5, np.float32)}),
     "entry 'state/batchnorm1/running_mean' has shape (5,); its architecture needs (4,)"),
    (lambda entries: entries.update({"state/batchnorm1/running_var": np.ones(4, np.float64)}),
     "entry 'state/batchnorm1/running_var' has dtype float64"),
    (lambda entries: entries.update({"state/batchnorm1/running_var": np.full(4, np.nan, np.float32)}),
     "entry 'state/batchnorm1/running_var' holds 4 inf or NaN"),
    (lambda entries: entries.update({"state/batchnorm3/running_var": np.ones(4, np.float32)}),
     "unexpected entry 'state/batchnorm3/running_var'"),
    (lambda entries: entries.update({"dropout_rng_state": np.array(json.dumps({"bit_generator": "os"}))}),
     "entry 'dropout_rng_state' is not a usable RNG state"),
    (lambda entries: entries.update({"dropout_rng_state": np.array("{not json")}), "entry 'dropout_rng_state' is not valid JSON"),
])
def test_a_missing_or_wrong_model_state_or_dropout_generator_is_refused_by_name(tmp_path, change, fragment):
    path = tmp_path / "run.npz"
    write_bn(path)
    rewrite(path, change)
    expect_refusal(path, fragment)


def test_a_dropout_generator_in_a_network_without_dropout_is_refused(tmp_path):
    path = tmp_path / "run.npz"
    write(path)
    rewrite(path, lambda entries: entries.update({"dropout_rng_state": np.array(json.dumps(np.random.default_rng(0).bit_generator.state))}))
    expect_refusal(path, "unexpected entry 'dropout_rng_state'")


@pytest.mark.parametrize("model_state, dropout_rng_state, fragment", [
    ({}, "fresh", "state/batchnorm1/running_mean"),
    ({"batchnorm1": {"running_mean": np.zeros(4, np.float32), "running_var": np.ones(4, np.float32)}}, "fresh",
     "state/batchnorm2/running_mean"),
    (None, None, "pass dropout_rng_state"),
])
def test_save_refuses_a_network_whose_state_or_dropout_generator_is_missing_and_writes_nothing(
        tmp_path, model_state, dropout_rng_state, fragment):
    with pytest.raises(ValueError, match="save_checkpoint") as caught:
        write_bn(tmp_path / "run.npz", model_state, dropout_rng_state)
    assert fragment in str(caught.value)
    assert os.listdir(tmp_path) == []


def test_a_checkpoint_of_batch_norm_written_before_state_was_kept_is_refused_by_name(tmp_path):
    # What an fcnn without model state in checkpoints would have written for the same network.
    path = tmp_path / "run.npz"
    write_bn(path)
    rewrite(path, lambda entries: [entries.pop(key) for key in list(entries) if key.startswith("state/")])
    expect_refusal(path, "missing entry 'state/batchnorm1/running_mean' required by its architecture")
