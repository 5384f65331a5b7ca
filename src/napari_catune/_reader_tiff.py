"""npe2 reader: a (T, Y, X) TIFF movie, opened lazily; any other TIFF as an image.

napari's own reader loads a whole ``.tif`` into memory (``tifffile.imread``):
a 9 GB two-photon BigTIFF takes 9 GB of RAM before the first frame shows.
This reader opens the first series of a multi-page TIFF (ScanImage, suite2p's
``reg_tif``, ImageJ stacks, BigTIFF, OME) without reading its pixels, as a
Dask array in chunks of frames, so moving the time slider reads only the
frames near the one shown:

* uncompressed pages stored contiguously: read through a file handle at the
  frames' offsets, up to 8 MB a chunk (:class:`_PlainFrames`; not memory-mapped: a mapped file
  re-saved shorter kills the process with SIGBUS on the next access);
* anything else (compressed pages, pages scattered through the file, a
  multi-file OME series): decoded by tifffile, a frame a chunk (a few when
  tiny), through its page index (one page per frame, the usual movie), else
  through its Zarr store (needs zarr).

Each read checks the file's size and modification time against those at
open: a movie re-saved or replaced under its name while open raises
:class:`MovieChangedError` ("... changed on disk since it was opened: open it
again") rather than show wrong pixels or crash.

Any other TIFF (a 2-D image, RGB(A), up to four channels, 4-D) opens
as an ordinary image layer as napari's builtin reader shows it (lazily when
big), so choosing CaTune for ``*.tif`` is always safe; only segmentation masks
(``*_masks.tif``, ``*_labels.tif``) are left to the Labels reader.
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

#: frames of one Dask chunk: as many as fit in _CHUNK_BYTES, at least one, at
#: most _CHUNK_FRAMES: a frame of 256 x 128 uint16 or more is a chunk of its
#: own (a step of the time slider reads or decodes one page), tiny frames go
#: a few together (a long read, the tuner's, is not millions of chunks)
_CHUNK_BYTES = 64 << 10
_CHUNK_FRAMES = 16
#: uncompressed frames are read, not decoded: a chunk may be bigger (fewer
#: Dask tasks for the tuner's long reads) at no cost a slider step can feel
_PLAIN_CHUNK_BYTES = 8 << 20


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


#: at most this many channels make a 3-D stack an image of channels, not a movie
_MAX_CHANNELS = 4


def _is_movie(squeezed, axes: str) -> bool:
    """A (T, Y, X) stack: three axes, no colour samples, not a few channels.

    A plain stack's planes are frames whatever the file calls them: ImageJ/Fiji
    calls a stack's planes slices (Z) unless told they are frames, and tifffile's
    ImageJ writer labels an unlabelled 3-D array's first axis C; the
    command line (``sources._open_tiff``) reads every such stack as frames too."""
    if len(squeezed) != 3 or "S" in axes:
        return False
    return not (axes[0] == "C" and squeezed[0] <= _MAX_CHANNELS)


def _is_rgb(shape, axes: str) -> bool:
    return len(shape) >= 3 and axes.endswith("S") and shape[-1] in (3, 4)


def get_tiff_movie_reader(path):
    """The reader of any TIFF (a (T, Y, X) movie, lazily; any other image as
    napari's builtin would show it), None for a mask, a file that is not a
    TIFF or non-numeric pixels (never raises)."""
    try:
        p = single_path(path)
        if p is None or not p.lower().endswith((".tif", ".tiff")) or not os.path.isfile(p):
            return None
        if _is_mask_name(p):
            return None  # a segmentation mask: read_labels' (by name)
        squeezed, dtype, axes, shape = tiff_movie_header(p)
    except Exception:  # not a TIFF, unreadable, no tifffile ...
        return None
    if dtype.kind not in "biuf" or not squeezed:
        return None
    return read_tiff_movie


def _file_token(p: str) -> str:
    """A Dask name unique to this file's contents: two movie.tif never share a cache."""
    from dask.base import tokenize

    st = os.stat(p)
    return f"catune-tif-{Path(p).name}-" + tokenize(
        os.path.realpath(p), st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev
    )


class MovieChangedError(ValueError):
    """The movie's file was re-saved, truncated or replaced while it was open."""


def _stamp(st) -> tuple:
    return (st.st_size, st.st_mtime_ns)


class _Guard:
    """The file's size and modification time when it was opened, checked on
    each read: through the open handle (``os.fstat``: the same file re-written
    in place) and through its path (``os.stat``: another file saved under its
    name).  A file deleted or renamed away is still read through the handle
    (its pages are intact)."""

    def __init__(self, path: str, fd: int):
        self.path = path
        st = os.fstat(fd)
        self.stamp, self.ident = _stamp(st), (st.st_ino, st.st_dev)

    def changed(self, fd: int) -> bool:
        if _stamp(os.fstat(fd)) != self.stamp:
            return True
        try:
            st = os.stat(self.path)
        except OSError:  # deleted or renamed: the handle still reads the pages
            return False
        return _stamp(st) != self.stamp or (st.st_ino, st.st_dev) != self.ident

    def error(self) -> MovieChangedError:
        return MovieChangedError(
            f"{self.path} changed on disk since it was opened (its size or modification "
            "time differs: re-saved, cut short or replaced): open it again to see the "
            "file as it is now")

    def check(self, fd: int) -> None:
        if self.changed(fd):
            raise self.error()


def _truncated(p: str, have: int, need: int) -> ValueError:
    return ValueError(
        f"{p} is truncated: {have} bytes, but its header places image data up to byte "
        f"{need} (a copy cut short, or a recording that stopped while writing?). Copy it "
        "again from the original.")


def _time_index(index, T: int):
    index = index if isinstance(index, tuple) else (index,)
    t = index[0]
    if isinstance(t, (int, np.integer)):
        return int(t), True, index[1:]
    return t.indices(T), False, index[1:]


def _pread_into(fd: int, view, offset: int, lock) -> int:
    """Read into ``view`` from ``offset`` of ``fd``: ``os.preadv`` (no seek,
    threads need no lock), else (Windows) a seek and read under ``lock``."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], offset)
    with lock:
        os.lseek(fd, offset, os.SEEK_SET)
        data = os.read(fd, len(view))
    view[: len(data)] = data
    return len(data)


class _OwnHandle:
    """Pickled (to a Dask worker in another process) without its open file
    handle (attribute ``_HANDLE``) or lock: the copy opens its own."""

    _HANDLE = "_fd"

    def __getstate__(self):
        state = self.__dict__.copy()
        state[self._HANDLE], state["_lock"] = None, None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


class _PlainFrames(_OwnHandle):
    """Uncompressed frames stored back to back, read through a file handle
    (``os.preadv`` at the frames' offsets: one read for a run of frames), not
    memory-mapped: a file re-saved shorter while open would kill the process
    (SIGBUS) on the next access to a mapped page.  Each read first and last
    checks the file against its size and time at open
    (:class:`MovieChangedError`).  The handle is closed once this object is
    garbage collected, i.e. when its layer is gone."""

    def __init__(self, path: str, offset: int, shape, file_dtype):
        self.path, self.offset = path, int(offset)
        self.shape = tuple(int(v) for v in shape)
        self.ndim = len(self.shape)
        self.file_dtype = np.dtype(file_dtype)
        self.dtype = self.file_dtype.newbyteorder("=")
        self.frame_bytes = int(np.prod(self.shape[1:])) * self.file_dtype.itemsize
        self._fd = None
        self._lock = threading.Lock()
        self._open()
        self._guard = _Guard(path, self._fd)

    def _open(self):
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self._fd = fd
        weakref.finalize(self, os.close, fd)

    def _read(self, start: int, n: int) -> np.ndarray:
        buf = np.empty(n * self.frame_bytes, np.uint8)
        want, got = buf.nbytes, 0
        while got < want:
            k = _pread_into(self._fd, memoryview(buf)[got:],
                            self.offset + start * self.frame_bytes + got, self._lock)
            if k == 0:
                break
            got += k
        if got < want:
            self._guard.check(self._fd)  # re-saved shorter: say so
            raise _truncated(self.path, os.fstat(self._fd).st_size,
                             self.offset + (start + n) * self.frame_bytes)
        return buf.view(self.file_dtype).reshape((n, *self.shape[1:]))

    def __getitem__(self, index):
        if self._fd is None:  # (unpickled in another process)
            self._open()
        t, single, rest = _time_index(index, self.shape[0])
        if single:
            return self[(slice(t, t + 1), *rest)][0]
        start, stop, step = t
        keys = range(start, stop, step)
        self._guard.check(self._fd)
        if len(keys) == 0:
            out = np.empty((0, *self.shape[1:]), self.dtype)
        elif step == 1:
            out = self._read(start, len(keys))
        else:
            out = np.stack([self._read(k, 1)[0] for k in keys])
        self._guard.check(self._fd)  # (changed while being read: these pixels may be mixed)
        out = out[(slice(None), *rest)]
        return out if out.dtype.isnative else out.astype(self.dtype)



def _plain(tf, p: str, squeezed):
    """The first series read through :class:`_PlainFrames` when its pages are
    plain and contiguous (what ``tifffile.memmap`` would map), else None."""
    s = tf.series[0]
    if s.dataoffset is None:  # compressed, scattered pages, ...
        return None
    dtype = np.dtype(tf.byteorder + np.dtype(s.dtype).char)
    need = int(s.dataoffset) + int(np.prod(squeezed)) * dtype.itemsize
    size = os.path.getsize(p)
    if size < need:
        raise _truncated(p, size, need)
    return _PlainFrames(os.path.realpath(p), s.dataoffset, squeezed, dtype)


class _TiffFrames(_OwnHandle):
    """A TIFF movie's pages for Dask, one page per frame: ``[a:b, ys, xs]``
    decodes pages a..b only.  The ``TiffFile`` (one handle) is kept open, with
    its page index, until this object is garbage collected, i.e. when its
    layer is gone; a lock serialises reads (Dask reads chunks in threads).
    Each read checks the file against its size and time at open
    (:class:`MovieChangedError`, not a decoder's error from stale offsets)."""

    _HANDLE = "_tf"

    def __init__(self, tf, path: str, shape, dtype):
        self.path = path
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.ndim = len(self.shape)
        self._lock = threading.Lock()
        self._tf = None
        self._own(tf)
        self._guard = _Guard(path, tf.filehandle.fileno())

    def _own(self, tf):
        self._tf = tf
        weakref.finalize(self, tf.close)

    def _file(self):
        if self._tf is None:  # (unpickled in another process)
            import tifffile

            self._own(tifffile.TiffFile(self.path))
        return self._tf

    def __getitem__(self, index):
        t, single, rest = _time_index(index, self.shape[0])
        if single:
            return self[(slice(t, t + 1), *rest)][0]
        start, stop, step = t
        keys = range(start, stop, step)
        if len(keys) == 0:
            return np.empty((0, *self.shape[1:]), self.dtype)[(slice(None), *rest)]
        with self._lock:
            tf = self._file()
            fd = tf.filehandle.fileno()
            self._guard.check(fd)
            try:
                got = tf.asarray(key=keys, series=0, maxworkers=1)
            except Exception:
                if self._guard.changed(fd):
                    raise self._guard.error() from None
                raise
            self._guard.check(fd)
        got = np.reshape(got, (len(keys), *self.shape[1:]))
        return got[(slice(None), *rest)]



def _one_page_per_frame(tf, squeezed) -> bool:
    s = tf.series[0]
    page = tuple(v for v in s.keyframe.shape if v != 1)
    return len(s.pages) == squeezed[0] and page == tuple(squeezed[1:])


def _check_pages_fit(tf, p: str) -> None:
    """A truncated file (its last page's data past the end): a clear error now,
    not a decoder's error when the slider reaches the end."""
    s = tf.series[0]
    try:
        last = s.pages[-1] if len(s.pages) else None
        ends = [int(o) + int(n) for o, n in zip(last.dataoffsets, last.databytecounts)]
    except Exception:  # (pages tifffile cannot index cheaply: no check)
        return
    size = os.path.getsize(p)
    if ends and max(ends) > size:
        raise _truncated(p, size, max(ends))


def _check_declared_pages(tf, p: str) -> None:
    """A tifffile-written (shaped) file whose last pages are cut off: tifffile
    then offers the first page alone, a "2-D image"; say it is truncated."""
    try:
        if not tf.is_shaped or tf.series[0].dataoffset is not None:
            return  # (plain contiguous data: checked against the file size)
        shape = tf.shaped_metadata[0]["shape"]
        page = tf.pages.first.shape
        want = int(np.prod(shape)) // max(1, int(np.prod(page)))
        have = len(tf.pages)
    except Exception:
        return
    if have < want:
        raise ValueError(
            f"{p} is truncated: its header records {want} pages, only {have} are readable "
            "(a copy cut short, or a recording that stopped while writing?). Copy it "
            "again from the original.")


def _chunk_frames(T: int, frame_bytes: int, chunk_bytes: int | None = None) -> int:
    """Frames per Dask chunk: one when a frame is big enough (moving the time
    slider reads or decodes the frame shown, no more), a few small ones together
    (a long movie of tiny frames would be too many chunks for one read)."""
    chunk_bytes = _CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    return max(1, min(_CHUNK_FRAMES, T, chunk_bytes // max(1, frame_bytes)))


def _lazy(tf, p: str, squeezed, dtype):
    """A Dask array over the first series of ``tf``, an open ``TiffFile`` that
    this takes over (closed once the array is garbage collected), in chunks
    of :func:`_chunk_frames` frames: one page per frame (the usual movie) through
    :class:`_TiffFrames`, anything else through tifffile's Zarr store
    (needs zarr)."""
    import dask.array as da

    T, Y, X = squeezed
    frames = _chunk_frames(T, Y * X * dtype.itemsize)
    if _one_page_per_frame(tf, squeezed):
        _check_pages_fit(tf, p)
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


#: a non-movie image up to this size is read whole (as napari's builtin does);
#: a bigger one through tifffile's Zarr store (Dask), when zarr is installed
_EAGER_BYTES = 512 << 20


def _image_layer(tf, p: str, squeezed, axes: str):
    """Any TIFF that is not a (T, Y, X) movie (a 2-D image, RGB(A), a z-stack,
    channels, 4-D and more): an ordinary image layer, the first series with
    singleton axes squeezed, as napari's builtin reader shows it; read whole
    when small, else lazily.  Closes ``tf`` unless a Dask array keeps it."""
    s = tf.series[0]
    nbytes = int(np.prod(squeezed)) * np.dtype(s.dtype).itemsize
    data, how = None, None
    if nbytes > _EAGER_BYTES:
        try:
            import dask.array as da
            import zarr

            store = s.aszarr(level=0)
            z = zarr.open(store, mode="r")
            weakref.finalize(store, tf.close)
            data = da.from_zarr(z, name=_file_token(p), inline_array=True).reshape(squeezed)
            how = "dask"
        except ImportError:
            data = None
    if data is None:
        try:
            data = s.asarray(maxworkers=1).reshape(squeezed)
        finally:
            tf.close()
    rgb = _is_rgb(squeezed, axes)
    plain = [a for a in axes[: len(axes) - rgb]]
    if len(plain) >= 4 or (len(plain) == 3 and "C" in plain):
        _notify(
            f"{Path(p).name} is {len(plain)}-D (axes {axes}, shape {tuple(squeezed)}): opened "
            "as an image, not a movie: CaTune's tuner reads (frames, height, width) stacks. "
            "To tune one channel or plane, save it as its own stack (e.g. "
            "tifffile.imwrite(out, tifffile.imread(path)[:, 0]))."
        )
    meta = {"name": Path(p).stem, "rgb": rgb,
            "metadata": {"catune_image": {"source": str(Path(p).resolve()), "axes": axes,
                                          "lazy": how}}}
    if axes == "ZYX":
        meta["axis_labels"] = ("z", "y", "x")
    return [(data, meta, "image")]


def _contrast(data, T: int):
    """Contrast limits from up to five frames spread over the movie (a blank
    first frame, the shutter still closed, does not saturate all the rest)."""
    picks = sorted({int(round(v)) for v in np.linspace(0, T - 1, min(5, T))})
    lo, hi = np.inf, -np.inf
    for t in picks:
        f = np.asarray(data[t])
        lo, hi = min(lo, float(f.min())), max(hi, float(f.max()))
    return (lo, hi if hi > lo else lo + 1.0)


def read_tiff_movie(path):
    """Read a (T, Y, X) TIFF movie lazily (a Dask array over its pages); any
    other TIFF as an ordinary image layer (:func:`_image_layer`).

    ``metadata["catune"]["fs"]`` holds the frame rate the file records
    (:func:`napari_catune.sources.tiff_fs`: ImageJ ``finterval``/``fps``, OME
    ``TimeIncrement``), else None; ``metadata["catune"]["lazy"]`` says how the
    pixels are read (``"plain"``: uncompressed frames read at their offsets,
    :class:`_PlainFrames`; ``"dask"``: pages decoded by tifffile).  The axes
    are named t, y, x.  A read after the file changed on disk raises
    :class:`MovieChangedError`.
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
        _check_declared_pages(tf, p)
        squeezed, dtype, axes, shape = _series_header(tf)
        if not _is_movie(squeezed, axes):
            return _image_layer(tf, p, squeezed, axes)
        fs = tiff_file_fs(tf)
        if len(tf.series) > 1:  # (pages of another size or kind: not frames of this movie)
            others = [tuple(int(v) for v in o.shape) for o in tf.series[1:]]
            _notify(
                f"{Path(p).name}: the movie is the file's first series, {squeezed[0]} frames of "
                f"{squeezed[1]} x {squeezed[2]}; {len(others)} more series of other shapes "
                f"({', '.join(map(str, others[:5]))}{', ...' if len(others) > 5 else ''}) "
                "are left out. If those pages are frames too (a page of another size mid-"
                "recording), the frames after them are shifted in time: check the file.")
        data = _plain(tf, p, squeezed)
        how = "plain"
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
    if how == "plain":
        tf.close()  # (the frames have their own handle)
        import dask.array as da

        T, Y, X = squeezed
        data = da.from_array(data, chunks=(_chunk_frames(T, Y * X * dtype.itemsize, _PLAIN_CHUNK_BYTES), Y, X),
                             name=_file_token(p), meta=np.empty((0, 0, 0), data.dtype))
    notes = []
    if axes[0] in "ZC":
        notes.append(f"{Path(p).name}: its {squeezed[0]} planes (axis {axes[0]} in the file: "
                     f"{'slices' if axes[0] == 'Z' else 'channels'}) are taken as frames, as "
                     "ImageJ/Fiji saves a plain stack; the frame rate is not recorded there: "
                     "set fs in the tuner")
        _notify(notes[-1])
    meta = {
        "name": Path(p).stem,
        "metadata": {"catune": {"fs": fs, "source": str(Path(p).resolve()),
                                "lazy": how, **({"notes": notes} if notes else {})}},
        "contrast_limits": _contrast(data, squeezed[0]),
        "axis_labels": ("t", "y", "x"),
    }
    return [(data, meta, "image")]
