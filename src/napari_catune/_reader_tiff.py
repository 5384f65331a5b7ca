"""npe2 reader: a (T, Y, X) TIFF movie, opened lazily.

napari's own reader loads a whole ``.tif`` into memory (``tifffile.imread``):
a 9 GB two-photon BigTIFF takes 9 GB of RAM before the first frame shows.
This reader opens the first series of a multi-page TIFF (ScanImage, suite2p's
``reg_tif``, ImageJ stacks, BigTIFF, OME) without reading its pixels:

* uncompressed pages stored contiguously: :func:`tifffile.memmap`, a
  zero-copy ``np.memmap`` (the OS reads the frames shown);
* anything else (compressed pages, pages scattered through the file, a
  multi-file OME series): a Dask array over tifffile's Zarr store of the
  series, in chunks of a few frames, so moving the time slider decodes only
  the pages of the frames shown.

Only (T, Y, X) stacks are claimed (singleton axes squeezed): a 2-D image, a
segmentation mask (``*_masks.tif``, ``*_labels.tif``), an RGB image or a
4-D (channels/planes) file is left to other readers (the getter returns
None); a 4-D file gets a notification saying why.
"""

from __future__ import annotations

import fnmatch
import os
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


def _lazy(tf, p: str, squeezed, dtype):
    """A Dask array over tifffile's Zarr store of the first series of ``tf``,
    an open ``TiffFile`` that this takes over: it stays open (one handle)
    until the store is garbage collected, i.e. when the layer is gone."""
    import dask.array as da
    import zarr

    store = tf.series[0].aszarr(level=0)
    z = zarr.open(store, mode="r")
    # (closes the file once nothing holds the store; the finalizer does not hold it)
    weakref.finalize(store, tf.close)
    T, Y, X = squeezed
    frames = max(1, min(_CHUNK_FRAMES, T, _CHUNK_BYTES // max(1, Y * X * dtype.itemsize)))
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
        squeezed, dtype, axes, shape = _series_header(tf)
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
                    f"{p}: its pages are compressed or scattered, so it is read through "
                    f"zarr, which is not installed ({e}): pip install zarr, or open it with "
                    "napari's own reader (it loads the whole file into memory)") from None
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
