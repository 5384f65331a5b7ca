"""npe2 reader: a (T, Y, X) TIFF movie, opened lazily.

napari's own reader loads a whole ``.tif`` into memory (``tifffile.imread``):
a 9 GB two-photon BigTIFF takes 9 GB of RAM before the first frame shows.
This reader opens the first series of a multi-page TIFF (ScanImage, suite2p's
``reg_tif``, ImageJ stacks, BigTIFF, OME) without reading its pixels:

* uncompressed pages stored contiguously: :func:`tifffile.memmap`, a
  zero-copy ``np.memmap`` (the OS reads the frames shown);
* anything else (compressed pages, pages scattered through the file, a
  multi-file OME series): a Dask array in chunks of a few frames, so moving
  the time slider decodes only the pages of the frames shown.  Its chunks
  are read through tifffile's page index (one page per frame, the usual
  movie: tifffile and dask only, both napari's), else through tifffile's
  Zarr store of the series (needs zarr).

Only (T, Y, X) stacks are claimed (singleton axes squeezed): a 2-D image, a
segmentation mask (``*_masks.tif``, ``*_labels.tif``), an RGB image or a
4-D (channels/planes) file is left to other readers (the getter returns
None); a 4-D file gets a notification saying why.
"""

from __future__ import annotations

import fnmatch
import os
import threading
import weakref
from pathlib import Path

import numpy as np

from ._reader import MASK_PATTERNS, single_path

__all__ = ["get_tiff_movie_reader", "read_tiff_movie", "tiff_movie_header"]

#: bytes of one Dask chunk of a compressed movie (frames decoded together);
#: at most _CHUNK_FRAMES frames, so a step of the time slider decodes a few pages
_CHUNK_BYTES = 8 << 20
_CHUNK_FRAMES = 16


def _is_mask_name(p: str) -> bool:
    name = Path(p).name.lower()
    return any(fnmatch.fnmatch(name, pat) for pat in MASK_PATTERNS)


def _series_header(tf):
    """``(squeezed shape, dtype, axes, full shape)`` of an open TIFF's first series."""
    if not tf.series:
        raise ValueError(f"{tf.filename}: no image data")
    s = tf.series[0]
    shape = tuple(int(v) for v in s.shape)
    kept = [(n, a) for n, a in zip(shape, str(s.axes)) if n != 1]
    return tuple(n for n, _ in kept), np.dtype(s.dtype), "".join(a for _, a in kept), shape


def tiff_movie_header(p: str):
    """``(squeezed shape, dtype, axes, full shape)`` of a TIFF's first series
    (tifffile reads the header only), or raises (not a TIFF, no series)."""
    import tifffile

    with tifffile.TiffFile(p) as tf:
        return _series_header(tf)


def _notify(message: str) -> None:
    try:
        from napari.utils.notifications import show_info

        show_info(message)
    except Exception:  # no napari (a script): nothing to show
        pass


def get_tiff_movie_reader(path):
    """A reader for a multi-page (T, Y, X) TIFF movie, else None (never raises)."""
    try:
        p = single_path(path)
        if p is None or not p.lower().endswith((".tif", ".tiff")) or not os.path.isfile(p):
            return None
        if _is_mask_name(p):
            return None  # a segmentation mask: read_labels' (by name)
        squeezed, dtype, axes, shape = tiff_movie_header(p)
    except Exception:  # not a TIFF, unreadable, no tifffile ...
        return None
    if dtype.kind not in "biuf":
        return None
    if len(squeezed) == 3 and "S" not in axes and "C" not in axes:
        return read_tiff_movie
    if len(squeezed) >= 4 or (len(squeezed) == 3 and "C" in axes):
        # our plugin was chosen for this file: say why it is left to another reader
        _notify(
            f"{Path(p).name} is {len(squeezed)}-D (axes {axes}, shape {squeezed}): CaTune's "
            "TIFF movie reader opens (frames, height, width) stacks only, so it leaves this "
            "file to another reader (napari's reads it whole into memory). To tune one "
            "channel or plane, save it as its own stack (e.g. tifffile.imwrite(out, "
            "tifffile.imread(path)[:, 0]))."
        )
    return None


def _file_token(p: str) -> str:
    """A Dask name unique to this file's contents: two movie.tif never share a cache."""
    from dask.base import tokenize

    st = os.stat(p)
    return f"catune-tif-{Path(p).name}-" + tokenize(
        os.path.realpath(p), st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev
    )


def _memmap(tf, p: str, squeezed):
    """The first series as a read-only ``np.memmap`` when its pages are plain
    and contiguous (what ``tifffile.memmap`` maps), else None."""
    s = tf.series[0]
    if s.dataoffset is None:  # compressed, scattered pages, ...: not memory-mappable
        return None
    dtype = np.dtype(tf.byteorder + np.dtype(s.dtype).char)
    return np.memmap(p, dtype=dtype, mode="r", offset=s.dataoffset, shape=tuple(squeezed))


class _TiffFrames:
    """A TIFF movie's pages for Dask, one page per frame: ``[a:b, ys, xs]``
    decodes pages a..b only.  The ``TiffFile`` (one handle) is kept open, with
    its page index, until this object is garbage collected, i.e. when its
    layer is gone; a lock serialises reads (Dask reads chunks in threads)."""

    def __init__(self, tf, path: str, shape, dtype):
        self.path = path
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.ndim = len(self.shape)
        self._lock = threading.Lock()
        self._tf = None
        self._own(tf)

    def _own(self, tf):
        self._tf = tf
        weakref.finalize(self, tf.close)

    def _file(self):
        if self._tf is None:  # (unpickled in another process)
            import tifffile

            self._own(tifffile.TiffFile(self.path))
        return self._tf

    def __getitem__(self, index):
        index = index if isinstance(index, tuple) else (index,)
        t = index[0]
        if isinstance(t, (int, np.integer)):
            return self[(slice(int(t), int(t) + 1), *index[1:])][0]
        start, stop, step = t.indices(self.shape[0])
        keys = range(start, stop, step)
        if len(keys) == 0:
            return np.empty((0, *self.shape[1:]), self.dtype)[(slice(None), *index[1:])]
        with self._lock:
            got = self._file().asarray(key=keys, series=0, maxworkers=1)
        got = np.reshape(got, (len(keys), *self.shape[1:]))
        return got[(slice(None), *index[1:])]

    def __getstate__(self):  # a Dask worker in another process opens its own handle
        state = self.__dict__.copy()
        state["_tf"], state["_lock"] = None, None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


def _one_page_per_frame(tf, squeezed) -> bool:
    s = tf.series[0]
    page = tuple(v for v in s.keyframe.shape if v != 1)
    return len(s.pages) == squeezed[0] and page == tuple(squeezed[1:])


def _lazy(tf, p: str, squeezed, dtype):
    """A Dask array over the first series of ``tf``, an open ``TiffFile`` that
    this takes over (closed once the array is garbage collected), in chunks
    of a few frames: one page per frame (the usual movie) through
    :class:`_TiffFrames`, anything else through tifffile's Zarr store
    (needs zarr)."""
    import dask.array as da

    T, Y, X = squeezed
    frames = max(1, min(_CHUNK_FRAMES, T, _CHUNK_BYTES // max(1, Y * X * dtype.itemsize)))
    if _one_page_per_frame(tf, squeezed):
        lazy = _TiffFrames(tf, os.path.realpath(p), squeezed, dtype)
        return da.from_array(lazy, chunks=(frames, Y, X), name=_file_token(p),
                             meta=np.empty((0, 0, 0), dtype))
    import zarr

    store = tf.series[0].aszarr(level=0)
    z = zarr.open(store, mode="r")
    # (closes the file once nothing holds the store; the finalizer does not hold it)
    weakref.finalize(store, tf.close)
    if tuple(z.shape) == tuple(squeezed):  # (tifffile's store squeezes singleton axes)
        return da.from_zarr(z, chunks=(frames, Y, X), name=_file_token(p), inline_array=True)
    arr = da.from_zarr(z, name=_file_token(p), inline_array=True)
    return arr.reshape(squeezed).rechunk((frames, Y, X))


def read_tiff_movie(path):
    """Read a (T, Y, X) TIFF movie lazily (memory-mapped, else Dask over its pages).

    ``metadata["catune"]["fs"]`` holds the frame rate the file records
    (:func:`napari_catune.sources.tiff_fs`: ImageJ ``finterval``/``fps``, OME
    ``TimeIncrement``), else None; ``metadata["catune"]["lazy"]`` says how the
    pixels are read (``"memmap"`` or ``"dask"``).  The axes are named t, y, x.
    """
    import tifffile

    from .sources import tiff_file_fs

    p = single_path(path)
    if p is None:
        raise ValueError(f"cannot read {path!r} as a movie: pass a single file")
    # one parse of the file's pages (a long movie has thousands of IFDs to walk)
    try:
        tf = tifffile.TiffFile(p)
    except Exception as e:
        raise ValueError(f"{p}: not a readable TIFF ({type(e).__name__}: {e})") from None
    try:
        squeezed, dtype, _, shape = _series_header(tf)
        if len(squeezed) != 3:
            raise ValueError(f"{p}: a movie is (frames, height, width), got shape {shape}")
        fs = tiff_file_fs(tf)
        data = _memmap(tf, p, squeezed)
        how = "memmap"
        if data is None:
            try:
                data = _lazy(tf, p, squeezed, dtype)  # (keeps tf open, closed with the store)
            except ImportError as e:
                raise ValueError(
                    f"{p}: its pages are compressed and not one per frame, so it is read "
                    f"through zarr, which is not installed ({e}): pip install zarr, or open "
                    "it with napari's own reader (it loads the whole file into memory)"
                ) from None
            how = "dask"
    except BaseException:
        tf.close()
        raise
    if how == "memmap":
        tf.close()  # (the map keeps its own handle)
    first = np.asarray(data[0])
    lo, hi = float(first.min()), float(first.max())
    meta = {
        "name": Path(p).stem,
        "metadata": {"catune": {"fs": fs, "source": str(Path(p).resolve()),
                                "lazy": how}},
        "contrast_limits": (lo, hi if hi > lo else lo + 1.0),
        "axis_labels": ("t", "y", "x"),
    }
    return [(data, meta, "image")]
