"""Trace hand-off files ({stem}.npy + {stem}_metadata.json) and atomic .npy writes."""

import pickle

import numpy as np
import pytest

from napari_catune import _atomic
from napari_catune._atomic import atomic_save_npy, atomic_write_bytes
from napari_catune.io import load_tuning_data, save_for_tuning, tuning_paths


def test_round_trip_exact(tmp_path):
    rng = np.random.default_rng(0)
    traces = rng.standard_normal((5, 300)) * 1e3
    traces[0, 0] = np.nextafter(1.0, 2.0)  # last-bit exactness
    npy, meta_path = save_for_tuning(traces, 30.0, tmp_path / "rec", metadata={"animal": "m1"})
    assert npy.name == "rec.npy" and meta_path.name == "rec_metadata.json"
    got, meta = load_tuning_data(tmp_path / "rec")
    assert got.dtype == np.float64 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, traces)
    assert meta == {
        "animal": "m1", "schema_version": "1.0.0", "sampling_rate_hz": 30.0,
        "num_cells": 5, "num_timepoints": 300, "dtype": "<f8",
    }


def test_path_with_or_without_npy(tmp_path):
    save_for_tuning(np.arange(10.0), 10, tmp_path / "a.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "a_metadata.json"]
    for name in ("a", "a.npy", "a_metadata.json"):
        got, _ = load_tuning_data(tmp_path / name)
        np.testing.assert_array_equal(got, np.arange(10.0)[None])
    assert tuning_paths("x/b.NPY") == tuning_paths("x/b")


def test_1d_saved_as_one_row_and_dtypes_converted(tmp_path):
    save_for_tuning(np.arange(7, dtype=np.int16), 20, tmp_path / "i")
    arr = np.load(tmp_path / "i.npy", allow_pickle=False)
    assert arr.shape == (1, 7) and arr.dtype == np.dtype("<f8")
    x = np.random.default_rng(1).random((2, 50)).astype(np.float32)
    save_for_tuning(x, 20, tmp_path / "f")
    np.testing.assert_array_equal(load_tuning_data(tmp_path / "f")[0], x.astype(np.float64))


def test_builtin_keys_win(tmp_path):
    save_for_tuning(np.zeros((2, 4)), 15.0, tmp_path / "r", metadata={"num_cells": 99, "note": "x"})
    _, meta = load_tuning_data(tmp_path / "r")
    assert meta["num_cells"] == 2 and meta["note"] == "x"


def test_calab_compatibility_both_ways(tmp_path):
    import calab
    x = np.random.default_rng(2).random((3, 40))
    save_for_tuning(x, 7.5, tmp_path / "ours", metadata={"k": 1})
    theirs_arr, theirs_meta = calab.load_tuning_data(tmp_path / "ours")
    np.testing.assert_array_equal(theirs_arr, x)
    assert theirs_meta["sampling_rate_hz"] == 7.5 and theirs_meta["k"] == 1
    calab.save_for_tuning(x, 12.0, tmp_path / "theirs", metadata={"k": 2})
    arr, meta = load_tuning_data(tmp_path / "theirs")
    np.testing.assert_array_equal(arr, x)
    assert meta["sampling_rate_hz"] == 12.0 and meta["num_timepoints"] == 40


# ---------------------------------------------------------------- bad input


def test_missing_npy_named(tmp_path):
    (tmp_path / "m_metadata.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"m\.npy"):
        load_tuning_data(tmp_path / "m")


def test_missing_sidecar_named(tmp_path):
    np.save(tmp_path / "m.npy", np.zeros((1, 3)))
    with pytest.raises(FileNotFoundError, match=r"m_metadata\.json"):
        load_tuning_data(tmp_path / "m.npy")


def test_never_unpickles(tmp_path):
    np.save(tmp_path / "p.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "p_metadata.json").write_text("{}")
    with pytest.raises(ValueError, match="without unpickling"):
        load_tuning_data(tmp_path / "p")
    # a raw pickle renamed to .npy is refused too, and nothing in it runs
    (tmp_path / "q.npy").write_bytes(pickle.dumps([1, 2, 3]))
    (tmp_path / "q_metadata.json").write_text("{}")
    with pytest.raises(ValueError, match="q.npy"):
        load_tuning_data(tmp_path / "q")


def test_shape_mismatch_with_sidecar(tmp_path):
    save_for_tuning(np.zeros((2, 5)), 10, tmp_path / "s")
    np.save(tmp_path / "s.npy", np.zeros((3, 5)))
    with pytest.raises(ValueError, match="num_cells = 2"):
        load_tuning_data(tmp_path / "s")


def test_bad_sidecar_json(tmp_path):
    np.save(tmp_path / "b.npy", np.zeros((1, 3)))
    (tmp_path / "b_metadata.json").write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_tuning_data(tmp_path / "b")


@pytest.mark.parametrize(
    "traces, fs, fragment",
    [
        (np.zeros((2, 3, 4)), 30, "shape \\(2, 3, 4\\)"),
        (np.zeros((0, 10)), 30, "empty"),
        (np.array(["a", "b"]), 30, "real numbers"),
        (np.zeros(5), 0.0, "positive"),
        (np.zeros(5), float("nan"), "positive"),
        (np.zeros(5), "30", "must be a number"),
    ],
)
def test_bad_save_input(tmp_path, traces, fs, fragment):
    with pytest.raises(ValueError, match=fragment):
        save_for_tuning(traces, fs, tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_unserialisable_metadata_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="JSON-serialisable"):
        save_for_tuning(np.zeros(4), 10, tmp_path / "x", metadata={"f": lambda: 0})
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- atomic writes


def test_failed_npy_write_keeps_earlier_files(tmp_path, monkeypatch):
    old = np.arange(12.0).reshape(3, 4)
    save_for_tuning(old, 10, tmp_path / "r")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_write_array = np.lib.format.write_array

    def half_then_die(fh, array, **kw):
        real_write_array(fh, array[: len(array) // 2], **kw)  # partial data hits the disk
        raise OSError("disk full")

    monkeypatch.setattr(_atomic.np.lib.format, "write_array", half_then_die)
    with pytest.raises(OSError, match="disk full"):
        save_for_tuning(np.ones((50, 400)), 10, tmp_path / "r")
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before  # same files, same bytes, no temp file
    np.testing.assert_array_equal(load_tuning_data(tmp_path / "r")[0], old)


def test_atomic_helpers(tmp_path, monkeypatch):
    target = tmp_path / "t.bin"
    atomic_write_bytes(target, b"first")
    monkeypatch.setattr(_atomic.os, "replace", lambda s, d: (_ for _ in ()).throw(OSError("no")))
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"first" and [p.name for p in tmp_path.iterdir()] == ["t.bin"]
    monkeypatch.undo()
    atomic_save_npy(tmp_path / "exact.name", np.arange(3))  # no .npy appended
    np.testing.assert_array_equal(np.load(tmp_path / "exact.name"), np.arange(3))
    with pytest.raises(ValueError, match="pickling"):
        atomic_save_npy(tmp_path / "o.npy", np.array([None], dtype=object))
