"""Readers: CaTune parameter files and trace files (npe2 getters and readers)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_catune._reader import get_params_reader, get_traces_reader
from napari_catune.io import save_for_tuning
from napari_catune.params import TuningParams, load_params, save_params

TILE = 16  # the reader's tile side in pixels (manifest convention: 16 px, gap 2)


# ----------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------


@pytest.fixture
def params():
    return TuningParams(tau_rise=0.03, tau_decay=0.7, fs=20.0, lam=0.2, filter_enabled=True)


@pytest.fixture
def params_file(tmp_path, params):
    path = tmp_path / "tuned.json"
    save_params(params, path)
    return path


@pytest.fixture
def traces():
    rng = np.random.default_rng(3)
    return rng.normal(size=(5, 40))


def _calab_style(path, **block):
    """A minimal export as the CaTune web app / calab 1.1 write it (not by our code)."""
    doc = {
        "schema_version": "1.1.0",
        "parameters": {
            "tau_rise_s": 0.02,
            "tau_decay_s": 0.4,
            "lambda": 0.05,
            "sampling_rate_hz": 30.0,
            "filter_enabled": False,
            **block,
        },
    }
    path.write_text(json.dumps(doc))
    return path


def _layer(result):
    assert isinstance(result, list) and len(result) == 1
    data, meta, kind = result[0]
    assert kind == "labels"
    return data, meta, meta["metadata"]["catune"]


def _check_tiles(labels, ids):
    """Every ROI id owns exactly one TILE x TILE square, nothing else is labelled."""
    assert labels.ndim == 2 and labels.dtype.kind in "iu"
    values, counts = np.unique(labels, return_counts=True)
    assert set(values.tolist()) == {0, *map(int, ids)}
    assert all(c == TILE * TILE for v, c in zip(values, counts) if v != 0)
    for i in ids:
        ys, xs = np.nonzero(labels == i)
        assert ys.max() - ys.min() == TILE - 1 and xs.max() - xs.min() == TILE - 1


# ----------------------------------------------------------------------------
# parameter files
# ----------------------------------------------------------------------------


def test_params_getter_accepts_our_export_and_calab_style(params_file, tmp_path):
    assert callable(get_params_reader(str(params_file)))
    assert callable(get_params_reader([str(params_file)]))  # napari's stack=True form
    other = _calab_style(tmp_path / "web_app_export.json")
    assert callable(get_params_reader(str(other)))


def test_params_reader_parses_values_without_a_viewer_error_first(tmp_path, params_file, params):
    # the reader validates the file before it touches the viewer: loading the
    # values is load_params's job, and it returns exactly what was saved
    assert load_params(params_file) == params
    bad = _calab_style(tmp_path / "bad.json", tau_rise_s=0.9)
    reader = get_params_reader(str(bad))
    assert callable(reader)  # the file is ours ...
    with pytest.raises(ValueError, match=r"bad\.json: tau_rise \(0\.9 s\) must be smaller than "
                                         r"tau_decay \(0\.4 s\)"):
        reader(str(bad))  # ... and its error names the file and the parameter


def test_params_reader_without_a_viewer_says_what_to_do(params_file, monkeypatch):
    import napari

    monkeypatch.setattr(napari, "current_viewer", lambda: None)
    with pytest.raises(ValueError, match="napari window"):
        get_params_reader(str(params_file))(str(params_file))


def test_params_reader_missing_field_is_a_clear_error(tmp_path):
    path = tmp_path / "partial.json"
    path.write_text(json.dumps({"parameters": {"tau_rise_s": 0.02, "tau_decay_s": 0.4}}))
    reader = get_params_reader(str(path))
    assert callable(reader)
    with pytest.raises(ValueError, match="lambda"):
        reader(str(path))


@pytest.mark.parametrize(
    "content",
    [
        json.dumps({"name": "something else", "values": [1, 2, 3]}),
        json.dumps([{"parameters": {"tau_rise_s": 0.02}}]),  # not an object at the top
        json.dumps({"parameters": {"sigma": 2.0}}),  # someone else's parameters
        json.dumps({"parameters": "tau_rise_s"}),
        '{"parameters": {"tau_rise_s": 0.02',  # truncated
        "plain text, not JSON at all",
        "",
    ],
)
def test_params_getter_refuses_foreign_json(tmp_path, content):
    path = tmp_path / "foreign.json"
    path.write_text(content)
    assert get_params_reader(str(path)) is None


def test_params_getter_refuses_other_files(tmp_path, traces):
    binary = tmp_path / "binary.json"
    binary.write_bytes(bytes(range(256)) * 4)
    npy_path, sidecar = save_for_tuning(traces, 30.0, tmp_path / "rec")
    big = tmp_path / "big.json"
    # a parameters block hidden in a file far larger than any export
    big.write_text(json.dumps({"parameters": {"tau_rise_s": 0.02}, "pad": "x" * (2 << 20)}))
    txt = tmp_path / "notes.txt"
    txt.write_text(json.dumps({"parameters": {"tau_rise_s": 0.02}}))
    lonely = tmp_path / "lonely_metadata.json"  # a sidecar whose .npy is gone
    lonely.write_text(sidecar.read_text())
    for path in (binary, lonely, big, txt, npy_path, tmp_path / "missing.json", tmp_path):
        assert get_params_reader(str(path)) is None, path
    assert get_params_reader([str(sidecar), str(binary)]) is None
    assert get_params_reader(None) is None


# ----------------------------------------------------------------------------
# trace files
# ----------------------------------------------------------------------------


def test_sidecar_json_opens_its_traces(tmp_path, traces):
    # dropping rec_metadata.json reads rec.npy with its sampling rate
    _, sidecar = save_for_tuning(traces, 7.5, tmp_path / "rec")
    reader = get_params_reader(str(sidecar))
    assert callable(reader)
    labels, _, cat = _layer(reader(str(sidecar)))
    assert cat["fs"] == 7.5
    np.testing.assert_array_equal(cat["traces"], traces)
    assert cat["source"] == str((tmp_path / "rec.npy").resolve())


def test_bare_2d_npy(tmp_path, traces):
    path = tmp_path / "F.npy"
    np.save(path, traces.astype(np.float32))
    reader = get_traces_reader(str(path))
    assert callable(reader)
    labels, meta, cat = _layer(reader(str(path)))
    assert cat["traces"].dtype == np.float64 and cat["traces"].flags.c_contiguous
    np.testing.assert_array_equal(cat["traces"], traces.astype(np.float32).astype(np.float64))
    assert cat["fs"] is None
    np.testing.assert_array_equal(cat["roi_ids"], [1, 2, 3, 4, 5])
    assert cat["source"] == str(path.resolve())
    assert "F" in meta["name"]
    _check_tiles(labels, [1, 2, 3, 4, 5])
    # the traces are a copy: the memory map of the file is not kept alive
    assert not isinstance(cat["traces"], np.memmap) and cat["traces"].base is None


def test_bare_1d_npy_is_one_roi(tmp_path):
    path = tmp_path / "one.npy"
    trace = np.arange(50, dtype=np.int16)
    np.save(path, trace)
    labels, _, cat = _layer(get_traces_reader(str(path))(str(path)))
    assert cat["traces"].shape == (1, 50)
    np.testing.assert_array_equal(cat["traces"][0], trace)
    _check_tiles(labels, [1])


def test_npy_with_sidecar_gives_fs_and_ids(tmp_path, traces):
    ids = [3, 8, 9, 12, 40]
    npy_path, _ = save_for_tuning(traces, 15.0, tmp_path / "rec", metadata={"roi_ids": ids})
    reader = get_traces_reader(str(npy_path))
    labels, _, cat = _layer(reader(str(npy_path)))
    assert cat["fs"] == 15.0
    np.testing.assert_array_equal(cat["roi_ids"], ids)
    np.testing.assert_allclose(cat["traces"], traces, rtol=0, atol=0)
    _check_tiles(labels, ids)
    # row i of the traces belongs to the tile labelled ids[i]: tiles are row-major
    first = [int(labels[np.nonzero(labels == i)][0]) for i in ids]
    assert first == ids


def test_npz_named_arrays(tmp_path, traces):
    path = tmp_path / "session.npz"
    ids = np.array([10, 20, 30, 40, 50], dtype=np.int32)
    np.savez(path, traces=traces, fs=np.float64(7.5), roi_ids=ids, other=np.zeros(3))
    labels, _, cat = _layer(get_traces_reader(str(path))(str(path)))
    assert cat["fs"] == 7.5
    np.testing.assert_array_equal(cat["roi_ids"], ids)
    np.testing.assert_array_equal(cat["traces"], traces)
    _check_tiles(labels, ids)


@pytest.mark.parametrize("key", ["F", "C"])
def test_npz_pipeline_names(tmp_path, key, traces):
    path = tmp_path / "pipe.npz"
    np.savez_compressed(path, **{key: (traces * 100).astype(np.int16), "iscell": np.ones((5, 2))})
    _, _, cat = _layer(get_traces_reader(str(path))(str(path)))
    np.testing.assert_array_equal(cat["traces"], (traces * 100).astype(np.int16))


def test_npz_single_unnamed_array(tmp_path, traces):
    path = tmp_path / "plain.npz"
    np.savez(path, traces[:2])  # stored as "arr_0"
    _, _, cat = _layer(get_traces_reader(str(path))(str(path)))
    np.testing.assert_array_equal(cat["traces"], traces[:2])


def _write(path, content: bytes):
    path.write_bytes(content)
    return path


def test_traces_getter_refuses_foreign_files(tmp_path, traces):
    stack = tmp_path / "stack.npy"
    np.save(stack, np.zeros((4, 8, 8), dtype=np.uint16))  # an image stack: napari's builtin reads it
    obj = tmp_path / "objects.npy"
    np.save(obj, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    strings = tmp_path / "names.npy"
    np.save(strings, np.array(["roi1", "roi2"]))
    cplx = tmp_path / "complex.npy"
    np.save(cplx, np.ones((2, 10), dtype=complex))
    scalar = tmp_path / "scalar.npy"
    np.save(scalar, np.float64(3.0))
    text = _write(tmp_path / "fake.npy", b"this is not an array\n")
    npz3d = tmp_path / "volume.npz"
    np.savez(npz3d, np.zeros((2, 3, 4)))
    npz_two = tmp_path / "two.npz"
    np.savez(npz_two, np.zeros((2, 30)), np.ones((2, 30)))  # which one? not ours to guess
    npz_named3d = tmp_path / "F3d.npz"
    np.savez(npz_named3d, F=np.zeros((2, 3, 4)))
    not_zip = _write(tmp_path / "broken.npz", b"PK\x03\x04garbage")
    json_file = _write(tmp_path / "x.json", b"{}")
    txt = _write(tmp_path / "notes.txt", b"1 2 3\n4 5 6\n")
    foreign = [stack, obj, strings, cplx, scalar, text, npz3d, npz_two, npz_named3d, not_zip,
               json_file, txt, tmp_path / "missing.npy", tmp_path]
    for path in foreign:
        assert get_traces_reader(str(path)) is None, path
    good = tmp_path / "good.npy"
    np.save(good, traces)
    assert get_traces_reader([str(good), str(good)]) is None  # a stack of several files


def test_traces_errors_in_files_we_own(tmp_path, traces):
    bad = traces.copy()
    bad[2, 5] = np.nan
    path = tmp_path / "nan.npy"
    np.save(path, bad)
    # the ROI with NaN is left out and named; the rest can be tuned
    [(labels, meta, _)] = get_traces_reader(str(path))(str(path))
    cat = meta["metadata"]["catune"]
    assert np.array_equal(cat["roi_ids"], [1, 2, 4, 5])
    assert np.array_equal(cat["traces"], traces[[0, 1, 3, 4]])
    assert np.array_equal(cat["skipped_roi_ids"], [3]) and "roi_id 3" in cat["notes"][0]
    assert set(np.unique(labels)) == {0, 1, 2, 4, 5}
    # a `deconvolve --skip-bad` output: whole NaN rows, 0-based ids in the file
    skipped = tmp_path / "skipped.npz"
    rows = traces.copy()
    rows[[0, 4]] = np.nan
    np.savez(skipped, traces=rows, roi_ids=np.arange(5))
    [(labels, meta, _)] = get_traces_reader(str(skipped))(str(skipped))
    cat = meta["metadata"]["catune"]
    assert np.array_equal(cat["roi_ids"], [1, 2, 3]) and "roi_id_shift" not in cat
    assert np.array_equal(cat["skipped_roi_ids"], [0, 4])
    all_bad = tmp_path / "allnan.npy"
    np.save(all_bad, np.full((3, 50), np.nan))
    with pytest.raises(ValueError, match=r"every trace row holds NaN"):
        get_traces_reader(str(all_bad))(str(all_bad))

    zero_based = tmp_path / "zero.npz"
    np.savez(zero_based, traces=traces, roi_ids=np.arange(5))
    [(labels, meta, _)] = get_traces_reader(str(zero_based))(str(zero_based))
    cat = meta["metadata"]["catune"]  # shifted to label values >= 1, and said so
    assert np.array_equal(cat["roi_ids"], np.arange(1, 6)) and cat["roi_id_shift"] == 1
    assert np.array_equal(cat["file_roi_ids"], np.arange(5)) and "+ 1" in cat["notes"][0]
    assert set(np.unique(labels)) == {0, 1, 2, 3, 4, 5}
    negative = tmp_path / "neg.npz"
    np.savez(negative, traces=traces, roi_ids=np.arange(-1, 4))
    with pytest.raises(ValueError, match="roi_ids must be >= 0"):
        get_traces_reader(str(negative))(str(negative))

    dup = tmp_path / "dup.npz"
    np.savez(dup, traces=traces, roi_ids=np.array([1, 2, 2, 3, 4]))
    with pytest.raises(ValueError, match=r"unique; 1 id\(s\) occur more than once \(2\)"):
        get_traces_reader(str(dup))(str(dup))

    short_ids = tmp_path / "short.npz"
    np.savez(short_ids, traces=traces, roi_ids=np.array([1, 2]))
    with pytest.raises(ValueError, match="5 ids"):
        get_traces_reader(str(short_ids))(str(short_ids))

    # our own key name with an unusable array: ours, so a clear error instead of None
    cube = tmp_path / "cube.npz"
    np.savez(cube, traces=np.zeros((2, 3, 4)))
    reader = get_traces_reader(str(cube))
    assert callable(reader)
    with pytest.raises(ValueError, match=r"\(n_cells, n_frames\).*\(2, 3, 4\)"):
        reader(str(cube))

    bad_fs = tmp_path / "badfs.npz"
    np.savez(bad_fs, traces=traces, fs=np.float64(-3))
    with pytest.raises(ValueError, match="sampling rate"):
        get_traces_reader(str(bad_fs))(str(bad_fs))


def test_npz_member_headers_only_are_read_by_the_getter(tmp_path, traces, monkeypatch):
    # the getter decides from names and .npy headers; it never loads the arrays
    path = tmp_path / "lazy.npz"
    np.savez(path, traces=traces)
    calls = []
    monkeypatch.setattr(np, "load", lambda *a, **k: calls.append(a))
    assert callable(get_traces_reader(str(path)))
    assert calls == []


# ----------------------------------------------------------------------------
# in a real viewer
# ----------------------------------------------------------------------------


def test_viewer_opens_trace_files_with_the_plugin(make_napari_viewer, tmp_path, traces):
    viewer = make_napari_viewer()
    npy_path, sidecar = save_for_tuning(traces, 30.0, tmp_path / "rec")
    layers = viewer.open(str(npy_path), plugin="napari-catune")
    assert len(layers) == 1 and layers[0]._type_string == "labels"
    cat = layers[0].metadata["catune"]
    assert cat["fs"] == 30.0
    np.testing.assert_array_equal(cat["traces"], traces)
    _check_tiles(np.asarray(layers[0].data), [1, 2, 3, 4, 5])
    # File > Open / drag-and-drop of the sidecar (plugin=None): no reader dialog
    (again,) = viewer.open(str(sidecar), plugin=None)
    np.testing.assert_array_equal(again.metadata["catune"]["traces"], traces)

    stack = tmp_path / "stack.npy"
    np.save(stack, np.zeros((3, 8, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="refused"):
        viewer.open(str(stack), plugin="napari-catune")
    # ... and napari's own reader still opens the stack as an image
    (img,) = viewer.open(str(stack), plugin="napari")
    assert img._type_string == "image" and img.data.shape == (3, 8, 8)


# ----------------------------------------------------------------------------
# issue 10: HDF5 movies, segmentation masks, one source layer
# ----------------------------------------------------------------------------


def _mask():
    m = np.zeros((20, 24), np.uint16)
    m[2:7, 3:9] = 1
    m[10:16, 12:20] = 2
    m[15:19, 1:5] = 300
    return m


def test_h5_movie_reader_is_lazy_and_carries_fs(tmp_path):
    import h5py

    from napari_catune._reader import get_h5_movie_reader

    movie = np.random.default_rng(0).normal(size=(30, 8, 9)).astype(np.float32)
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["data"] = movie
        f.attrs["frame_rate"] = 12.5
    reader = get_h5_movie_reader(str(tmp_path / "m.h5"))
    assert callable(reader)
    [(data, meta, kind)] = reader(str(tmp_path / "m.h5"))
    assert kind == "image" and data.shape == (30, 8, 9) and not isinstance(data, np.ndarray)
    np.testing.assert_array_equal(np.asarray(data[5]), movie[5])
    assert meta["metadata"]["catune"]["fs"] == 12.5 and meta["axis_labels"] == ("t", "y", "x")
    # a CaImAn file, an NWB file and a 2-D dataset are not movies
    with h5py.File(tmp_path / "cnmf.hdf5", "w") as f:
        f["estimates/C"] = np.zeros((2, 10))
        f["mov"] = movie
    with h5py.File(tmp_path / "flat.h5", "w") as f:
        f["img"] = movie[0]
    assert get_h5_movie_reader(str(tmp_path / "cnmf.hdf5")) is None
    assert get_h5_movie_reader(str(tmp_path / "flat.h5")) is None
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    assert get_h5_movie_reader(str(tmp_path / "junk.h5")) is None


def test_uint16_mask_opens_as_labels(tmp_path, traces):
    import tifffile

    from napari_catune._reader import get_labels_reader

    m = _mask()
    tifffile.imwrite(tmp_path / "img_cp_masks.tif", m)
    [(data, meta, kind)] = get_labels_reader(str(tmp_path / "img_cp_masks.tif"))(
        str(tmp_path / "img_cp_masks.tif"))
    assert kind == "labels" and np.array_equal(data, m)
    # a 2-D uint16 .npy is a mask, not 20 traces of 24 frames
    np.save(tmp_path / "masks.npy", m)
    reader = get_traces_reader(str(tmp_path / "masks.npy"))
    [(data, meta, kind)] = reader(str(tmp_path / "masks.npy"))
    assert kind == "labels" and np.array_equal(data, m)
    # an intensity image under a mask's name is declined (many distinct values)
    img = np.random.default_rng(1).integers(0, 60000, (20, 24)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "x_masks.tif", img)
    assert get_labels_reader(str(tmp_path / "x_masks.tif")) is None
    # float traces stay traces
    np.save(tmp_path / "tr.npy", traces)
    assert get_traces_reader(str(tmp_path / "tr.npy"))(str(tmp_path / "tr.npy"))[0][2] == "labels"
    assert "traces" in get_traces_reader(str(tmp_path / "tr.npy"))(
        str(tmp_path / "tr.npy"))[0][1]["metadata"]["catune"]


def test_cli_and_reader_read_the_same_source(tmp_path, traces):
    """One source layer: the CLI's input and the reader's layer agree on traces, fs and ids."""
    from napari_catune.cli import open_input

    ids = np.array([4, 9, 11, 12, 30])
    np.savez(tmp_path / "t.npz", F=traces, fr=7.5, cell_ids=ids)
    [(_, meta, _)] = get_traces_reader(str(tmp_path / "t.npz"))(str(tmp_path / "t.npz"))
    cat = meta["metadata"]["catune"]
    src = open_input(tmp_path / "t.npz")
    assert src.fs == cat["fs"] == 7.5
    assert np.array_equal(src.roi_ids, cat["roi_ids"]) and np.array_equal(src.roi_ids, ids)
    assert np.array_equal(src.read(0, src.n), cat["traces"])
    # 0-based ids: row names for the CLI, label values + 1 for the reader
    np.savez(tmp_path / "z.npz", traces=traces, roi_ids=np.arange(5))
    from napari_catune.cli import CLIError

    assert np.array_equal(open_input(tmp_path / "z.npz").roi_ids, np.arange(5))
    [(_, meta, _)] = get_traces_reader(str(tmp_path / "z.npz"))(str(tmp_path / "z.npz"))
    assert np.array_equal(meta["metadata"]["catune"]["roi_ids"], np.arange(1, 6))
    # and they refuse duplicate ids the same way
    np.savez(tmp_path / "d.npz", traces=traces, roi_ids=[0, 1, 1, 2, 3])
    with pytest.raises(CLIError, match="unique"):
        open_input(tmp_path / "d.npz")
    with pytest.raises(ValueError, match="unique"):
        get_traces_reader(str(tmp_path / "d.npz"))(str(tmp_path / "d.npz"))


@pytest.mark.parametrize("how", ["imagej_finterval", "imagej_fps", "ome", "none"])
def test_tiff_frame_rate(tmp_path, how):
    import tifffile

    from napari_catune.sources import tiff_fs

    d = np.zeros((4, 5, 6), np.uint16)
    p = tmp_path / "m.tif"
    if how == "imagej_finterval":
        tifffile.imwrite(p, d, imagej=True, metadata={"axes": "TYX", "finterval": 0.04})
        want = 25.0
    elif how == "imagej_fps":
        tifffile.imwrite(p, d, imagej=True, metadata={"axes": "TYX", "fps": 9.0})
        want = 9.0
    elif how == "ome":
        tifffile.imwrite(p, d, ome=True, metadata={"axes": "TYX", "TimeIncrement": 100,
                                                  "TimeIncrementUnit": "ms"})
        want = 10.0
    else:
        tifffile.imwrite(p, d)
        want = None
    got = tiff_fs(p)
    assert got == (pytest.approx(want) if want else None)


def test_viewer_opens_h5_movie_and_mask_with_axis_names(make_napari_viewer, tmp_path):
    import h5py
    import tifffile

    viewer = make_napari_viewer()
    with h5py.File(tmp_path / "rec.h5", "w") as f:
        f["mov"] = np.zeros((6, 20, 24), np.float32)
        f["mov"].attrs["fs"] = 30.0
    tifffile.imwrite(tmp_path / "rec_cp_masks.tif", _mask())
    (movie,) = viewer.open(str(tmp_path / "rec.h5"), plugin="napari-catune")
    (rois,) = viewer.open(str(tmp_path / "rec_cp_masks.tif"), plugin="napari-catune")
    assert movie._type_string == "image" and movie.metadata["catune"]["fs"] == 30.0
    assert tuple(movie.axis_labels) == ("t", "y", "x")
    assert rois._type_string == "labels" and rois.data.shape == (20, 24)


# ---------------------------------------------------------------- review fixes (2nd session)


def _open_h5_files() -> int:
    import h5py

    return len(h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE))


def test_h5_movies_with_one_name_do_not_share_frames(tmp_path):
    """Two movie.h5 in different folders: distinct Dask names, their own frames, no open handle."""
    import h5py

    from napari_catune._reader import get_h5_movie_reader

    before = _open_h5_files()
    layers = []
    for k, folder in enumerate(("a", "b")):
        (tmp_path / folder).mkdir()
        with h5py.File(tmp_path / folder / "movie.h5", "w") as f:
            f["mov"] = np.full((6, 8, 9), float(k + 1), np.float32)
        p = str(tmp_path / folder / "movie.h5")
        [(data, meta, kind)] = get_h5_movie_reader(p)(p)
        layers.append(data)
    assert layers[0].name != layers[1].name
    assert float(layers[0][0].compute().mean()) == 1.0
    assert float(layers[1][0].compute().mean()) == 2.0
    # one handle per movie while its data lives (playback keeps h5py's chunk cache),
    # closed when the layer's data is gone
    assert _open_h5_files() == before + 2
    del data, layers
    import gc

    gc.collect()
    assert _open_h5_files() == before


def test_uint16_traces_npy_still_open_as_traces(tmp_path):
    """A 2-D uint16 .npy of raw fluorescence (n, T) is traces, decided without reading it all."""
    from napari_catune import sources
    from napari_catune._reader import read_labels, read_traces

    rng = np.random.default_rng(0)
    raw = (1000 + rng.normal(0, 30, (40, 600))).astype(np.uint16)  # image-like by shape
    np.save(tmp_path / "raw.npy", raw)
    long = (1000 + rng.normal(0, 30, (5, 2000))).astype(np.uint16)  # T >> n
    np.save(tmp_path / "long.npy", long)
    for name, arr in (("raw.npy", raw), ("long.npy", long)):
        reader = get_traces_reader(str(tmp_path / name))
        assert reader is read_traces, name
        [(_, meta, kind)] = reader(str(tmp_path / name))
        assert np.array_equal(meta["metadata"]["catune"]["traces"], arr)
    np.save(tmp_path / "rec_masks.npy", _mask())
    calls = []
    real = np.load

    def spy(path, *a, **k):  # the getter maps the file, it never loads it whole
        calls.append(k.get("mmap_mode"))
        return real(path, *a, **k)

    import unittest.mock as mock

    with mock.patch.object(np, "load", spy):
        assert get_traces_reader(str(tmp_path / "rec_masks.npy")) is read_labels
        assert get_traces_reader(str(tmp_path / "raw.npy")) is read_traces
    assert calls and all(m == "r" for m in calls)
    assert sources.looks_like_labels((5000, 20000), np.uint16) is False  # header alone
    assert sources.looks_like_labels((512, 512), np.uint16, name="x_cp_masks.npy") is True


def test_loading_npy_traces_copies_once(tmp_path):
    import tracemalloc

    from napari_catune import sources

    y = np.random.default_rng(1).normal(size=(200, 5000))  # 8 MB
    np.save(tmp_path / "t.npy", y)
    src = sources.open_traces(tmp_path / "t.npy")
    tracemalloc.start()
    try:
        out = src.load()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(out, y)
    assert peak < 1.3 * y.nbytes, peak / y.nbytes


def test_view_recognises_a_minian_folder(make_napari_viewer, tmp_path):
    from test_loaders import make_minian

    from napari_catune._qt import launch

    make_minian(tmp_path / "minian")
    assert launch._ours(str(tmp_path / "minian"))
    viewer = make_napari_viewer()
    layers = launch._open_path(viewer, str(tmp_path / "minian"))
    labels = [ly for ly in layers if ly._type_string == "labels"]
    assert labels and "traces" in labels[0].metadata["catune"]


def test_low_range_uint16_traces_and_sparse_masks(tmp_path):
    """Clipped low-range uint16 traces (some exact zeros) stay traces; a sparse mask
    whose sampled rows hold background only is still a label image."""
    from napari_catune._reader import read_labels, read_traces

    rng = np.random.default_rng(0)
    raw = np.clip(rng.normal(300, 100, (200, 3000)), 0, None).astype(np.uint16)
    assert raw.min() == 0
    np.save(tmp_path / "raw.npy", raw)
    assert get_traces_reader(str(tmp_path / "raw.npy")) is read_traces
    m = np.zeros((512, 512), np.uint16)
    for k, (y, x) in enumerate([(40, 40), (100, 300), (200, 77), (350, 420), (470, 260)], 1):
        m[y:y + 6, x:x + 6] = k
    np.save(tmp_path / "img.npy", m)
    assert get_traces_reader(str(tmp_path / "img.npy")) is read_labels
