"""The lazy TIFF movie reader (napari_catune._reader_tiff) and the traces
reader's sidecar rate note (round 41).

napari's own reader loads a whole .tif into memory; ours memory-maps plain
pages and reads compressed ones a few pages at a time.  "Not read" is checked
with the bytes the process reads from files (/proc/self/io ``rchar``): a
compressed movie's frame costs its own pages, not the file.
"""

from __future__ import annotations

import gc
import json
import os

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")
pytest.importorskip("zarr")
pytest.importorskip("dask")

PLUGIN = "napari-catune"
FS = 30.0


def _movie(T=20, Y=40, X=36, seed=0):
    return np.random.default_rng(seed).integers(0, 60000, (T, Y, X)).astype(np.uint16)


def _write(path, data, how):
    if how == "plain":
        tifffile.imwrite(path, data)
    elif how == "bigtiff":
        tifffile.imwrite(path, data, bigtiff=True)
    elif how == "zlib":
        tifffile.imwrite(path, data, compression="zlib")
    elif how == "imagej":  # Fiji's stack, with its frame interval
        tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TYX", "finterval": 1 / FS})
    elif how == "imagej-zlib":
        tifffile.imwrite(path, data, imagej=True, compression="zlib",
                         metadata={"axes": "TYX", "finterval": 1 / FS})
    elif how == "pages":  # one tifffile.write per frame: separate series of one page...
        with tifffile.TiffWriter(path) as tw:  # ...but contiguous: the file is one stack
            for frame in data:
                tw.write(frame, contiguous=True)
    else:
        raise AssertionError(how)
    return str(path)


def _rchar() -> int:
    with open("/proc/self/io") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("rchar"))


def _open_files(path) -> list[str]:
    """The process's file descriptors and memory maps of ``path``."""
    real = os.path.realpath(path)
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == real:
                found.append(f"fd {fd}")
        except OSError:
            pass
    with open("/proc/self/maps") as fh:
        found += [line.strip() for line in fh if line.rstrip().endswith(real)]
    return found


def _read(path):
    from napari_catune._reader_tiff import get_tiff_movie_reader

    reader = get_tiff_movie_reader(path)
    assert reader is not None, path
    [(data, meta, kind)] = reader(path)
    assert kind == "image"
    return data, meta


# ---------------------------------------------------------------- the reader function


@pytest.mark.parametrize("how, lazy", [("plain", "memmap"), ("bigtiff", "memmap"),
                                       ("imagej", "memmap"), ("pages", "memmap"),
                                       ("zlib", "dask"), ("imagej-zlib", "dask")])
def test_frames_equal_tifffile_and_are_not_held_in_memory(tmp_path, how, lazy):
    import dask.array as da

    movie = _movie()
    path = _write(tmp_path / "rec.tif", movie, how)
    data, meta = _read(path)
    cat = meta["metadata"]["catune"]
    assert cat["lazy"] == lazy
    if lazy == "memmap":  # the file's pages, mapped: no copy of the frames
        assert isinstance(data, np.memmap) and data.filename == os.path.realpath(path)
    else:  # a few frames per chunk, read when shown
        assert isinstance(data, da.Array)
        assert 1 <= max(data.chunks[0]) <= 16 and data.chunks[1:] == ((40,), (36,))
    assert data.shape == movie.shape and data.dtype == movie.dtype
    np.testing.assert_array_equal(np.asarray(data), tifffile.imread(path))
    np.testing.assert_array_equal(np.asarray(data[7]), movie[7])
    assert meta["axis_labels"] == ("t", "y", "x")
    assert cat["fs"] == (pytest.approx(FS) if how.startswith("imagej") else None)
    assert cat["source"] == os.path.realpath(path)
    lo, hi = meta["contrast_limits"]  # from the first frame, not the whole movie
    assert (lo, hi) == (movie[0].min(), movie[0].max())


def test_a_compressed_movie_in_one_page_is_read_through_zarr(tmp_path):
    import dask.array as da

    from napari_catune import _reader_tiff

    movie = _movie(T=12)
    path = str(tmp_path / "volume.tif")  # one SGI page of depth 12: no page per frame
    tifffile.imwrite(path, movie, volumetric=True, tile=(16, 16), compression="zlib")
    with tifffile.TiffFile(path) as tf:
        assert len(tf.series[0].pages) == 1
        assert not _reader_tiff._one_page_per_frame(tf, movie.shape)
    data, meta = _read(path)
    assert isinstance(data, da.Array) and meta["metadata"]["catune"]["lazy"] == "dask"
    np.testing.assert_array_equal(np.asarray(data), movie)
    np.testing.assert_array_equal(np.asarray(data[5, 3:9, 2:20]), movie[5, 3:9, 2:20])


def test_page_reads_are_the_frames_asked_for(tmp_path, monkeypatch):
    """Each chunk decodes its own pages: counted at tifffile's page reads."""
    movie = _movie(T=50)
    path = _write(tmp_path / "rec.tif", movie, "zlib")
    data, _ = _read(path)
    pages = []
    real = tifffile.TiffFile.asarray

    def counting(self, key=None, **kwargs):
        assert key is not None, "the whole series read"
        pages.extend([key] if isinstance(key, int) else list(key))
        return real(self, key=key, **kwargs)

    monkeypatch.setattr(tifffile.TiffFile, "asarray", counting)
    np.testing.assert_array_equal(np.asarray(data[33]), movie[33])
    np.testing.assert_array_equal(np.asarray(data[40:44, 5:9]), movie[40:44, 5:9])
    assert 33 in pages and set(range(40, 44)) <= set(pages)
    assert len(pages) <= 2 * 16 and 0 not in pages  # two chunks at most, of 50 pages


def test_two_compressed_movies_of_one_name_do_not_share_frames(tmp_path):
    """Dask caches chunks by name (napari turns its cache on): each file its own."""
    got = []
    for k, folder in enumerate(("a", "b")):
        (tmp_path / folder).mkdir()
        movie = _movie(seed=10 + k)
        path = _write(tmp_path / folder / "movie.tif", movie, "zlib")
        data, _ = _read(path)
        got.append((data, movie))
    assert got[0][0].name != got[1][0].name
    for data, movie in got:
        np.testing.assert_array_equal(np.asarray(data[2]), movie[2])


def test_singleton_axes_are_squeezed(tmp_path):
    movie = _movie(T=6)
    path = str(tmp_path / "rec.tif")
    tifffile.imwrite(path, movie[:, None], imagej=True, metadata={"axes": "TZYX"})
    data, _ = _read(path)
    assert data.shape == movie.shape
    np.testing.assert_array_equal(np.asarray(data), movie)


def test_a_compressed_frame_reads_its_pages_not_the_file(tmp_path):
    # the first read of a compressed file imports zarr's codecs (files read too)
    warm = _write(tmp_path / "warm.tif", _movie(T=6), "zlib")
    np.asarray(_read(warm)[0][1])
    movie = _movie(T=40, Y=256, X=256, seed=1)  # noise: zlib keeps ~all 5.2 MB
    path = _write(tmp_path / "big.tif", movie, "zlib")
    size = os.path.getsize(path)
    assert size > 5e6
    before = _rchar()
    data, meta = _read(path)
    frame = np.asarray(data[30])
    read = _rchar() - before
    np.testing.assert_array_equal(frame, movie[30])
    assert meta["metadata"]["catune"]["lazy"] == "dask"
    # the header (its page directories), frame 0 (contrast limits), frame 30
    assert read < 0.25 * size, (read, size)
    before = _rchar()
    np.asarray(data[31])
    assert _rchar() - before < 0.1 * size
    before = _rchar()
    np.asarray(data[:8])  # a chunk of frames: its pages, no more
    assert _rchar() - before < 0.35 * size


@pytest.mark.parametrize("how", ["plain", "zlib"])
def test_the_file_is_closed_once_the_data_is_gone(tmp_path, how):
    path = _write(tmp_path / "rec.tif", _movie(), how)
    data, meta = _read(path)
    np.asarray(data[3])
    assert _open_files(path), "the reader keeps the file open while the layer is there"
    del data, meta
    gc.collect()
    assert _open_files(path) == []


# ---------------------------------------------------------------- not ours


def test_masks_images_rgb_and_4d_are_not_claimed(tmp_path, monkeypatch):
    import napari.utils.notifications as notifications

    from napari_catune._reader_tiff import get_tiff_movie_reader

    said = []
    monkeypatch.setattr(notifications, "show_info", said.append)
    img = _movie(T=1)[0]
    tifffile.imwrite(tmp_path / "image.tif", img)  # one 2-D image
    tifffile.imwrite(tmp_path / "one.tif", img[None])  # (1, Y, X): still one image
    masks = np.zeros((3, 40, 36), np.uint16)
    tifffile.imwrite(tmp_path / "rec_cp_masks.tif", masks)  # a mask stack, by name
    tifffile.imwrite(tmp_path / "rec_labels.tiff", masks)
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((40, 36, 3), np.uint8), photometric="rgb")
    tifffile.imwrite(tmp_path / "two_channels.tif", np.zeros((2, 40, 36), np.uint16),
                     imagej=True, metadata={"axes": "CYX"})
    (tmp_path / "not_a.tif").write_bytes(b"not a tiff at all")
    for name in ("image.tif", "one.tif", "rec_cp_masks.tif", "rec_labels.tiff", "rgb.tif",
                 "two_channels.tif", "not_a.tif", "missing.tif"):
        assert get_tiff_movie_reader(str(tmp_path / name)) is None, name
    assert said == [said[0]] and "two_channels.tif is 3-D (axes CYX" in said[0]
    said.clear()
    tifffile.imwrite(tmp_path / "tcyx.tif", np.zeros((5, 2, 40, 36), np.uint16),
                     imagej=True, metadata={"axes": "TCYX"})
    assert get_tiff_movie_reader(str(tmp_path / "tcyx.tif")) is None
    (note,) = said
    assert "tcyx.tif is 4-D (axes TCYX, shape (5, 2, 40, 36))" in note
    assert "(frames, height, width) stacks only" in note and "its own stack" in note
    # a 3-D movie is claimed (and a list of one path, napari's stack call)
    tifffile.imwrite(tmp_path / "movie.tif", _movie())
    assert get_tiff_movie_reader([str(tmp_path / "movie.tif")]) is not None


# ---------------------------------------------------------------- in napari


def test_viewer_opens_a_tiff_movie_lazily_with_its_rate(make_napari_viewer, tmp_path):
    import dask.array as da

    movie = _movie(T=30, seed=2)
    plain = _write(tmp_path / "plain.tif", movie, "imagej")
    packed = _write(tmp_path / "packed.tif", movie, "imagej-zlib")
    viewer = make_napari_viewer()
    (a,) = viewer.open(plain, plugin=PLUGIN)
    (b,) = viewer.open(packed, plugin=PLUGIN)
    assert isinstance(a.data, np.memmap) and isinstance(b.data, da.Array)
    for layer in (a, b):
        assert layer.metadata["catune"]["fs"] == pytest.approx(FS)  # the tuner's rate
        assert tuple(layer.axis_labels) == ("t", "y", "x")
        assert layer.data.shape == movie.shape
    viewer.dims.set_point(0, 17)  # the time slider on frame 17
    for layer in (a, b):
        np.testing.assert_array_equal(np.asarray(layer._slice.image.view), movie[17])
    # the masks of the same recording still open as Labels (read_labels' by name)
    tifffile.imwrite(tmp_path / "plain_cp_masks.tif", np.zeros((40, 36), np.uint16))
    (rois,) = viewer.open(str(tmp_path / "plain_cp_masks.tif"), plugin=PLUGIN)
    assert rois._type_string == "labels"
    # a 2-D image chosen for CaTune: refused, so napari's dialog offers its own reader
    tifffile.imwrite(tmp_path / "image.tif", movie[0])
    with pytest.raises(ValueError, match="refused the file"):
        viewer.open(str(tmp_path / "image.tif"), plugin=PLUGIN)


def test_file_open_of_a_tif_offers_catune_and_napari_builtins(make_napari_viewer, tmp_path):
    """File > Open and drag-and-drop (plugin=None) ask which reader (README)."""
    from napari.errors import MultipleReaderError

    path = _write(tmp_path / "rec.tif", _movie(), "plain")
    viewer = make_napari_viewer()
    with pytest.raises(MultipleReaderError) as err:
        viewer.open(path, plugin=None)
    assert "CaTune" in str(err.value) and "napari builtins" in str(err.value)


def test_remembered_catune_reads_tif_movies_and_hands_images_back(make_napari_viewer, tmp_path,
                                                                  monkeypatch):
    """With CaTune remembered for *.tif (the README's advice), a movie opens
    lazily without the question, and a 2-D image goes back to napari's reader
    dialog (ours refused it), which offers napari builtins."""
    from napari._qt.dialogs import qt_reader_dialog
    from napari.settings import get_settings

    movie = _movie()
    path = _write(tmp_path / "rec.tif", movie, "zlib")
    viewer = make_napari_viewer()
    settings = get_settings().plugins
    monkeypatch.setattr(settings, "extension2reader", {"*.tif": PLUGIN})
    offered = []

    def choose(self):
        offered.append([b.text() for b in self.reader_btn_group.buttons()])
        return "napari builtins", False

    monkeypatch.setattr(qt_reader_dialog.QtReaderDialog, "get_user_choices", choose)
    viewer.window._qt_viewer._qt_open([path], stack=False)
    assert offered == [] and viewer.layers[-1].metadata["catune"]["lazy"] == "dask"
    tifffile.imwrite(tmp_path / "image.tif", movie[0])
    viewer.window._qt_viewer._qt_open([str(tmp_path / "image.tif")], stack=False)
    assert offered == [["napari builtins"]]
    assert viewer.layers[-1].data.shape == movie.shape[1:]


# ---------------------------------------------------------------- the traces' rate note


def _traces_with_two_rate_keys(tmp_path):
    npy = tmp_path / "traces.npy"
    np.save(npy, np.random.default_rng(3).normal(size=(3, 300)))
    (tmp_path / "traces_metadata.json").write_text(
        json.dumps({"sampling_rate_hz": 30, "fps": 29.97}))
    return str(npy)


def test_traces_reader_says_which_of_two_rate_keys_was_used(tmp_path, monkeypatch):
    import napari.utils.notifications as notifications

    from napari_catune._reader import get_params_reader, get_traces_reader

    said = []
    monkeypatch.setattr(notifications, "show_info", said.append)
    npy = _traces_with_two_rate_keys(tmp_path)
    [(_, meta, _)] = get_traces_reader(npy)(npy)
    cat = meta["metadata"]["catune"]
    assert cat["fs"] == 30.0
    (note,) = said
    assert "traces_metadata.json records one sampling rate under two keys" in note
    assert "sampling_rate_hz = 30" in note and "fps = 29.97" in note
    assert "30 Hz from sampling_rate_hz is used, the canonical key" in note
    assert cat["notes"] == [note]
    # dropping the sidecar instead of the .npy: the same traces, the same note
    said.clear()
    side = str(tmp_path / "traces_metadata.json")
    get_params_reader(side)(side)
    assert said == [note]


def test_traces_rate_note_in_a_viewer(make_napari_viewer, tmp_path, monkeypatch):
    import napari.utils.notifications as notifications

    said = []
    monkeypatch.setattr(notifications, "show_info", said.append)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(_traces_with_two_rate_keys(tmp_path), plugin=PLUGIN)
    assert layer.metadata["catune"]["fs"] == 30.0
    assert any("from sampling_rate_hz is used" in s for s in said), said


# ---------------------------------------------------------------- ScanImage's rate


def _scanimage(path, extra=""):
    """A file laid out as ScanImage 2016+ tags its pages (non-varying frame
    data in Software, per-frame data in ImageDescription)."""
    software = ("SI.VERSION_MAJOR = 2022\nSI.hChannels.channelSave = 1\n"
                "SI.hRoiManager.scanFrameRate = 29.9876\nSI.hRoiManager.scanVolumeRate = 7.4969\n"
                "SI.hScan2D.logAverageFactor = 2\n" + extra)
    movie = _movie(T=12).astype(np.int16)
    with tifffile.TiffWriter(path) as tw:
        for i, frame in enumerate(movie):
            tw.write(frame, contiguous=False, software=software, metadata=None,
                     description=f"frameNumbers = {i + 1}\nframeTimestamps_sec = {i / 15:.6f}\n")
    return str(path)


def test_scanimage_frame_rate_for_the_tuner(tmp_path):
    from napari_catune.sources import tiff_fs

    path = _scanimage(tmp_path / "si.tif", "SI.hStackManager.numSlices = 1\n")
    with tifffile.TiffFile(path) as tf:
        assert tf.is_scanimage
    data, meta = _read(path)
    # two frames averaged into each saved one: half the scan rate
    assert meta["metadata"]["catune"]["fs"] == pytest.approx(29.9876 / 2)
    assert tiff_fs(path) == pytest.approx(29.9876 / 2)  # (the CLI's and the tuner's)
    np.testing.assert_array_equal(np.asarray(data), tifffile.imread(path))
    volume = _scanimage(tmp_path / "vol.tif", "SI.hStackManager.actualNumSlices = 4\n")
    assert tiff_fs(volume) == pytest.approx(7.4969)  # each plane: the volume rate


def test_readme_says_how_to_pick_the_tiff_movie_reader():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert "A **TIFF movie**" in readme and "*Read a TIFF movie (T, Y, X), lazily*" in readme
    assert "napari matches readers by file name only" in readme
    assert 'viewer.open("movie.tif", plugin="napari-catune")' in readme


# ---------------------------------------------------------------- the tuner on it


@pytest.mark.parametrize("how", ["imagej", "imagej-zlib"])
def test_the_tuner_reads_traces_and_rate_from_a_lazy_tiff(make_napari_viewer, qtbot, tmp_path,
                                                          how):
    from _widgets import ROIS, open_tuner, recording, wait

    movie, labels, means = recording(seed=4)
    path = _write(tmp_path / "rec.tif", movie, how)  # ImageJ: its frame interval, 1/30 s
    viewer = make_napari_viewer()
    (layer,) = viewer.open(path, plugin=PLUGIN)
    assert layer.metadata["catune"]["lazy"] == ("dask" if "zlib" in how else "memmap")
    viewer.add_labels(labels, name="rois")  # no rate of its own: the movie's is used
    w = open_tuner(viewer)
    qtbot.waitUntil(lambda: w.session.source is not None, timeout=120_000)
    wait(qtbot, w)
    assert w.image_combo.value is layer
    assert w.params.fs == pytest.approx(FS)
    assert sorted(w.roi_list.listed_ids()) == sorted(ROIS)
    rid = w.selected_rois[0]
    np.testing.assert_allclose(w.traces.shown[0].data["raw"], means[rid], rtol=1e-6)
