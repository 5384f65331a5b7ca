"""The lazy TIFF movie reader (napari_catune._reader_tiff) and the traces
reader's sidecar rate note (round 41).

napari's own reader loads a whole .tif into memory; ours reads plain pages
through a file handle at their offsets (not memory-mapped: a file re-saved
shorter while open would SIGBUS) and decodes compressed ones a page at a time.  "Not read" is checked
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


@pytest.mark.parametrize("how, lazy", [("plain", "plain"), ("bigtiff", "plain"),
                                       ("imagej", "plain"), ("pages", "plain"),
                                       ("zlib", "dask"), ("imagej-zlib", "dask")])
def test_frames_equal_tifffile_and_are_not_held_in_memory(tmp_path, how, lazy):
    import dask.array as da

    movie = _movie()
    path = _write(tmp_path / "rec.tif", movie, how)
    data, meta = _read(path)
    cat = meta["metadata"]["catune"]
    assert cat["lazy"] == lazy
    # a few small frames per chunk (these are 2.9 KB), read when shown; never a memmap
    assert isinstance(data, da.Array) and not isinstance(np.asarray(data[:2]), np.memmap)
    assert 1 <= max(data.chunks[0]) <= 16 and data.chunks[1:] == ((40,), (36,))
    assert data.shape == movie.shape and data.dtype == movie.dtype
    np.testing.assert_array_equal(np.asarray(data), tifffile.imread(path))
    np.testing.assert_array_equal(np.asarray(data[7]), movie[7])
    assert meta["axis_labels"] == ("t", "y", "x")
    assert cat["fs"] == (pytest.approx(FS) if how.startswith("imagej") else None)
    assert cat["source"] == os.path.realpath(path)
    lo, hi = meta["contrast_limits"]  # from five frames spread over it, not the whole movie
    picks = [0, 5, 10, 14, 19]
    assert (lo, hi) == (movie[picks].min(), movie[picks].max())


def test_a_compressed_movie_in_one_page_is_read_through_zarr(tmp_path, monkeypatch):
    import dask.array as da

    from napari_catune import _reader_tiff

    movie = _movie(T=12)
    path = str(tmp_path / "volume.tif")  # one SGI page of depth 12: no page per frame
    tifffile.imwrite(path, movie, volumetric=True, tile=(16, 16), compression="zlib")
    with tifffile.TiffFile(path) as tf:
        assert len(tf.series[0].pages) == 1
        assert not _reader_tiff._one_page_per_frame(tf, movie.shape)
        axes = tf.series[0].axes
    # tifffile calls its depth Z (a z-stack, an image); as a movie, T, it is read through zarr
    assert axes == "ZYX"
    monkeypatch.setattr(_reader_tiff, "_is_movie", lambda squeezed, axes: len(squeezed) == 3)
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
    # the header (its page directories), 5 frames of 40 (contrast limits), frame 30
    assert read < 0.35 * size, (read, size)
    assert data.chunks[0] == (1,) * 40  # 128 KB frames: one per chunk
    before = _rchar()
    np.asarray(data[31])
    assert _rchar() - before < 0.05 * size  # one page of 40
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


@pytest.mark.parametrize("how", ["plain", "zlib"])
@pytest.mark.parametrize("resave", ["shorter", "longer", "same size", "replaced"])
def test_a_movie_re_saved_while_open_gives_a_clear_error(tmp_path, how, resave):
    """Re-saved under its name while its layer is open (motion correction run
    again): the next read says so.  With the old memmap a shorter file killed
    the process (SIGBUS) and a same-size one showed the new pixels unflagged."""
    from napari_catune._reader_tiff import MovieChangedError

    movie = _movie(T=40, Y=128, X=256)  # 64 KB frames: a chunk each when compressed
    path = _write(tmp_path / "rec.tif", movie, how)
    data, _ = _read(path)
    np.testing.assert_array_equal(np.asarray(data[3]), movie[3])
    st = os.stat(path)
    new = {"shorter": movie[:5], "longer": np.concatenate([movie, movie]),
           "same size": movie[::-1].copy(), "replaced": movie[::-1].copy()}[resave]
    if resave == "replaced":  # a new file moved over the name (an atomic save)
        _write(tmp_path / "new.tif", new, how)
        os.replace(tmp_path / "new.tif", path)
    else:
        _write(tmp_path / "rec.tif", new, how)
    # (a file system with coarse times: keep the size the only change it could miss)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    for t in (30, 3):  # a frame not read yet, and one read before (Dask has no cache here)
        with pytest.raises(MovieChangedError, match=r"rec\.tif changed on disk since it was "
                           r"opened .*open it again"):
            np.asarray(data[t])
    # opened again: the file as it is now
    data2, _ = _read(path)
    assert data2.shape == new.shape
    np.testing.assert_array_equal(np.asarray(data2[4]), new[4])


@pytest.mark.parametrize("how", ["plain", "zlib"])
def test_a_deleted_or_renamed_movie_still_reads_through_its_handle(tmp_path, how):
    movie = _movie()
    path = _write(tmp_path / "rec.tif", movie, how)
    data, _ = _read(path)
    os.rename(path, tmp_path / "moved.tif")
    np.testing.assert_array_equal(np.asarray(data[11]), movie[11])


def test_a_truncated_movie_is_named_as_truncated(tmp_path):
    movie = _movie()
    for how in ("plain", "zlib"):
        path = _write(tmp_path / f"cut_{how}.tif", movie, how)
        with open(path, "r+b") as fh:
            fh.truncate(int(os.path.getsize(path) * 0.9))
        from napari_catune._reader_tiff import read_tiff_movie

        with pytest.raises(ValueError, match=rf"cut_{how}\.tif is truncated: .*a copy cut short"):
            read_tiff_movie(path)


def test_pages_of_another_shape_left_out_are_said(tmp_path, monkeypatch):
    """A page of another size mid-file is not a frame (tifffile makes it a
    second series, as napari's builtin reads it): the user is told."""
    import napari.utils.notifications as notifications

    said = []
    monkeypatch.setattr(notifications, "show_info", said.append)
    movie = _movie(T=6)
    path = str(tmp_path / "odd.tif")
    with tifffile.TiffWriter(path) as tw:
        for i, frame in enumerate(movie):
            tw.write(np.zeros((16, 16), np.uint16) if i == 3 else frame, metadata=None)
    data, _ = _read(path)
    assert data.shape == (5, 40, 36)
    (note,) = said
    assert "odd.tif: the movie is the file's first series, 5 frames of 40 x 36" in note
    assert "1 more series of other shapes ((16, 16)) are left out" in note
    said.clear()
    _read(_write(tmp_path / "fine.tif", movie, "zlib"))
    assert said == []


def test_one_frame_per_chunk_unless_frames_are_tiny(tmp_path):
    """Moving the time slider over a compressed movie decodes the frame shown,
    not 16 (a 0.2 s stall every 16th frame at 512 x 512)."""
    big = _read(_write(tmp_path / "big.tif", _movie(T=20, Y=128, X=256), "zlib"))[0]
    assert big.chunks[0] == (1,) * 20
    small = _read(_write(tmp_path / "small.tif", _movie(T=40, Y=40, X=36), "zlib"))[0]
    assert small.chunks[0] == (16, 16, 8)  # 2.9 KB frames: 16 together
    # uncompressed frames are read, not decoded: up to 8 MB a chunk (fewer Dask tasks)
    plain = _read(_write(tmp_path / "plain.tif", _movie(T=20, Y=512, X=512), "plain"))[0]
    assert plain.chunks[0] == (16, 4)


def test_contrast_limits_from_frames_over_the_movie(tmp_path):
    """A blank first frame (shutter still closed) does not saturate the rest."""
    movie = np.random.default_rng(0).integers(200, 3000, (50, 32, 48)).astype(np.uint16)
    movie[0] = 0
    for how in ("plain", "zlib"):
        _, meta = _read(_write(tmp_path / f"{how}.tif", movie, how))
        lo, hi = meta["contrast_limits"]
        assert lo == 0 and hi > 2900, (how, lo, hi)


def test_masks_and_files_that_are_not_tiffs_are_not_claimed(tmp_path):
    from napari_catune._reader_tiff import get_tiff_movie_reader

    masks = np.zeros((3, 40, 36), np.uint16)
    tifffile.imwrite(tmp_path / "rec_cp_masks.tif", masks)  # a mask stack, by name
    tifffile.imwrite(tmp_path / "rec_labels.tiff", masks)
    (tmp_path / "not_a.tif").write_bytes(b"not a tiff at all")
    for name in ("rec_cp_masks.tif", "rec_labels.tiff", "not_a.tif", "missing.tif"):
        assert get_tiff_movie_reader(str(tmp_path / name)) is None, name
    # a 3-D movie is claimed (and a list of one path, napari's stack call)
    tifffile.imwrite(tmp_path / "movie.tif", _movie())
    assert get_tiff_movie_reader([str(tmp_path / "movie.tif")]) is not None


def test_fiji_stacks_of_slices_and_many_channels_are_movies(tmp_path, monkeypatch):
    """ImageJ/Fiji saves a plain stack's planes as slices (Z), and tifffile's
    ImageJ writer calls an unlabelled 3-D array's first axis C: their planes are
    the frames (a note says so), as the command line reads them; up to four
    channels stay an image of channels."""
    import napari.utils.notifications as notifications

    from napari_catune import _reader_tiff

    said = []
    monkeypatch.setattr(notifications, "show_info", said.append)
    movie = _movie(T=40)
    for name, kw in (("zyx.tif", {"imagej": True, "metadata": {"axes": "ZYX"}}),
                     ("imagej_default.tif", {"imagej": True})):
        path = str(tmp_path / name)
        tifffile.imwrite(path, movie, **kw)
        [(data, meta, kind)] = _reader_tiff.read_tiff_movie(path)
        assert meta["axis_labels"] == ("t", "y", "x"), name
        assert "taken as frames" in meta["metadata"]["catune"]["notes"][0], name
        np.testing.assert_array_equal(np.asarray(data), movie)
    assert len(said) == 2 and all("set fs in the tuner" in t for t in said), said
    tifffile.imwrite(tmp_path / "two.tif", movie[:2], imagej=True, metadata={"axes": "CYX"})
    [(_, meta, _)] = _reader_tiff.read_tiff_movie(str(tmp_path / "two.tif"))
    assert "catune" not in meta["metadata"]  # two channels: an image


def test_images_rgb_4d_and_zstacks_open_as_images_not_movies(tmp_path, monkeypatch):
    """Any TIFF napari's builtin opens, ours opens too (choosing CaTune for
    *.tif is safe): as it shows them, without a frame rate or t axis."""
    import dask.array as da
    import napari.utils.notifications as notifications

    from napari_catune import _reader_tiff

    said = []
    monkeypatch.setattr(notifications, "show_info", said.append)
    img = _movie(T=1)[0]
    rgb = np.random.default_rng(1).integers(0, 255, (40, 36, 3)).astype(np.uint8)
    files = {
        "image.tif": (img, {}),  # one 2-D image
        "one.tif": (img[None], {}),  # (1, Y, X): still one image
        "rgb.tif": (rgb, {"photometric": "rgb"}),
        "rgba.tif": (np.dstack([rgb, rgb[..., :1]]), {"photometric": "rgb", "extrasamples": [2]}),
        "rgb3.tif": (np.stack([rgb] * 3), {"photometric": "rgb"}),  # 3 RGB pages: no "4-D"
        "two_channels.tif": (_movie(T=2), {"imagej": True, "metadata": {"axes": "CYX"}}),
        "tcyx.tif": (_movie(T=10).reshape(5, 2, 40, 36),
                     {"imagej": True, "metadata": {"axes": "TCYX"}}),
    }
    layers = {}
    for name, (arr, kw) in files.items():
        tifffile.imwrite(tmp_path / name, arr, **kw)
        path = str(tmp_path / name)
        assert _reader_tiff.get_tiff_movie_reader(path) is _reader_tiff.read_tiff_movie, name
        [(data, meta, kind)] = _reader_tiff.read_tiff_movie(path)
        assert kind == "image" and "catune" not in meta["metadata"], name  # not a movie: no fs
        np.testing.assert_array_equal(np.asarray(data), tifffile.imread(path).squeeze())
        layers[name] = (data, meta)
    assert layers["image.tif"][0].shape == layers["one.tif"][0].shape == (40, 36)
    assert [n for n, (_, m) in layers.items() if m["rgb"]] == ["rgb.tif", "rgba.tif", "rgb3.tif"]
    assert layers["rgb3.tif"][0].shape == (3, 40, 36, 3)
    assert all("axis_labels" not in m for n, (_, m) in layers.items())
    assert len(said) == 2, said  # the channels and the 4-D file: how to make a movie of them
    assert "two_channels.tif is 3-D (axes CYX" in said[0]
    assert "tcyx.tif is 4-D (axes TCYX, shape (5, 2, 40, 36))" in said[1]
    assert "opened as an image, not a movie" in said[1] and "its own stack" in said[1]
    # a big one is read lazily (here: anything over 0 bytes)
    monkeypatch.setattr(_reader_tiff, "_EAGER_BYTES", 0)
    [(data, meta, _)] = _reader_tiff.read_tiff_movie(str(tmp_path / "tcyx.tif"))
    assert isinstance(data, da.Array) and meta["metadata"]["catune_image"]["lazy"] == "dask"
    np.testing.assert_array_equal(np.asarray(data[3]), files["tcyx.tif"][0][3])


# ---------------------------------------------------------------- in napari


def test_viewer_opens_a_tiff_movie_lazily_with_its_rate(make_napari_viewer, tmp_path):
    import dask.array as da

    movie = _movie(T=30, seed=2)
    plain = _write(tmp_path / "plain.tif", movie, "imagej")
    packed = _write(tmp_path / "packed.tif", movie, "imagej-zlib")
    viewer = make_napari_viewer()
    (a,) = viewer.open(plain, plugin=PLUGIN)
    (b,) = viewer.open(packed, plugin=PLUGIN)
    assert isinstance(a.data, da.Array) and isinstance(b.data, da.Array)
    assert a.metadata["catune"]["lazy"] == "plain" and b.metadata["catune"]["lazy"] == "dask"
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
    # a 2-D image and an RGB one chosen for CaTune: opened as images, as napari's builtin does
    tifffile.imwrite(tmp_path / "image.tif", movie[0])
    (img,) = viewer.open(str(tmp_path / "image.tif"), plugin=PLUGIN)
    np.testing.assert_array_equal(img.data, movie[0])
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((40, 36, 3), np.uint8), photometric="rgb")
    (rgb,) = viewer.open(str(tmp_path / "rgb.tif"), plugin=PLUGIN)
    assert rgb.rgb and rgb.data.shape == (40, 36, 3)


def test_viewer_survives_a_movie_re_saved_shorter_while_open(make_napari_viewer, tmp_path):
    """The old memmap died with SIGBUS (the whole test run) on the next slider move."""
    from napari_catune._reader_tiff import MovieChangedError

    movie = _movie(T=64, Y=128, X=256, seed=5)
    path = _write(tmp_path / "rec.tif", movie, "imagej")
    viewer = make_napari_viewer()
    (layer,) = viewer.open(path, plugin=PLUGIN)
    assert layer.data.chunks[0] == (16,) * 4
    shown = {int(viewer.dims.point[0]) // 16, 1}  # (napari caches the chunks it showed)
    viewer.dims.set_point(0, 17)
    np.testing.assert_array_equal(np.asarray(layer._slice.image.view), movie[17])
    _write(tmp_path / "rec.tif", movie[:4], "imagej")  # motion correction re-run, 4 frames
    target = 16 * next(k for k in (3, 2) if k not in shown) + 5
    with pytest.raises(MovieChangedError, match="rec.tif changed on disk since it was opened"):
        viewer.dims.set_point(0, target)  # (in the GUI: napari's error notification)
    (again,) = viewer.open(path, plugin=PLUGIN)
    assert again.data.shape == (4, 128, 256)
    np.testing.assert_array_equal(np.asarray(again.data[3]), movie[3])


def test_file_open_of_a_tif_offers_catune_and_napari_builtins(make_napari_viewer, tmp_path):
    """File > Open and drag-and-drop (plugin=None) ask which reader (README)."""
    from napari.errors import MultipleReaderError

    path = _write(tmp_path / "rec.tif", _movie(), "plain")
    viewer = make_napari_viewer()
    with pytest.raises(MultipleReaderError) as err:
        viewer.open(path, plugin=None)
    assert "CaTune" in str(err.value) and "napari builtins" in str(err.value)


def test_remembered_catune_reads_tif_movies_and_images(make_napari_viewer, tmp_path,
                                                       monkeypatch):
    """With CaTune remembered for *.tif (the README's advice), a movie opens
    lazily without the question, and so does a 2-D image (as an image): no
    reader dialog, no error."""
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
    assert offered == []
    assert viewer.layers[-1].data.shape == movie.shape[1:]
    assert "catune" not in viewer.layers[-1].metadata  # an image, not a movie


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
    assert "Remembering CaTune for `.tif` is safe" in readme
    assert "changed on disk since it was opened" in readme
    assert "memory-mapped" not in readme.split("A **TIFF movie**")[1].split("In a script")[0]


# ---------------------------------------------------------------- the tuner on it


@pytest.mark.parametrize("how", ["imagej", "imagej-zlib"])
def test_the_tuner_reads_traces_and_rate_from_a_lazy_tiff(make_napari_viewer, qtbot, tmp_path,
                                                          how):
    from _widgets import ROIS, open_tuner, recording, wait

    movie, labels, means = recording(seed=4)
    path = _write(tmp_path / "rec.tif", movie, how)  # ImageJ: its frame interval, 1/30 s
    viewer = make_napari_viewer()
    (layer,) = viewer.open(path, plugin=PLUGIN)
    assert layer.metadata["catune"]["lazy"] == ("dask" if "zlib" in how else "plain")
    viewer.add_labels(labels, name="rois")  # no rate of its own: the movie's is used
    w = open_tuner(viewer)
    qtbot.waitUntil(lambda: w.session.source is not None, timeout=120_000)
    wait(qtbot, w)
    assert w.image_combo.value is layer
    assert w.params.fs == pytest.approx(FS)
    assert sorted(w.roi_list.listed_ids()) == sorted(ROIS)
    rid = w.selected_rois[0]
    np.testing.assert_allclose(w.traces.shown[0].data["raw"], means[rid], rtol=1e-6)
