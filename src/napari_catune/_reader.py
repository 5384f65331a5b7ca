"""npe2 readers: CaTune parameter files and calcium-trace files.

Reader getters run for every file napari is asked to open whose name matches
the manifest patterns, so they only peek (file size, a JSON parse of a small
file, an ``.npy`` header) and return ``None`` for anything that is not theirs,
never raising.  Errors found while reading a file the getter accepted are
``ValueError``\\ s whose message names the file and what to do: napari shows
them to the user (File > Open and drag-and-drop: in the reader-choice dialog
or, when no other reader takes the file, as an error notification;
``viewer.open`` raises them).
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from pathlib import Path

import numpy as np

from ._padding import BAD, row_lengths

__all__ = ["get_params_reader", "get_traces_reader", "get_nwb_reader", "get_h5_movie_reader",
           "get_labels_reader"]

# a CaTune export is ~2 kB; anything this large is someone else's JSON
_MAX_PARAMS_BYTES = 1 << 20

_TILE, _GAP = 16, 2
_SIDECAR = "_metadata.json"


def single_path(path) -> str | None:
    """The one path napari passes (a str, or a list of one when stacking)."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    if not isinstance(path, (str, os.PathLike)):
        return None
    return os.fspath(path)


# ----------------------------------------------------------------------------
# parameter files
# ----------------------------------------------------------------------------


def _looks_like_params(doc) -> bool:
    block = doc.get("parameters") if isinstance(doc, dict) else None
    return isinstance(block, dict) and ("tau_rise_s" in block or "tau_decay_s" in block)


def _traces_of_sidecar(p: str, doc) -> str | None:
    """The ``{stem}.npy`` that a ``{stem}_metadata.json`` hand-off sidecar describes."""
    if not (p.endswith(_SIDECAR) and isinstance(doc, dict) and "sampling_rate_hz" in doc):
        return None
    npy = p[: -len(_SIDECAR)] + ".npy"
    return npy if os.path.isfile(npy) else None


def get_params_reader(path):
    """Return a reader for a CaTune export JSON (a ``parameters`` block), else None.

    A traces sidecar (``{stem}_metadata.json`` beside ``{stem}.npy``) is read
    as the traces it describes, so dropping either file works.
    """
    try:
        p = single_path(path)
        if p is None or not p.lower().endswith(".json") or not os.path.isfile(p):
            return None
        if os.path.getsize(p) > _MAX_PARAMS_BYTES:
            return None
        with open(p, "rb") as fh:
            doc = json.loads(fh.read())
        if _looks_like_params(doc):
            return read_params
        npy = _traces_of_sidecar(p, doc)
        if npy is not None:
            # (a results .npy is refused with a reason: read_results_file)
            return lambda _path: read_results_file(npy)
    except Exception:  # not ours (unreadable, not JSON, ...): let other readers try
        return None
    return None


def read_params(path):
    """Load a CaTune parameter file into the CaTune tuner of the current viewer.

    Opens the tuner dock if it is not open yet.  Returns ``[(None,)]``, napari's
    "handled, no layer" sentinel.

    Raises
    ------
    ValueError
        If the file's values are missing or out of range (the message names
        the file, the parameter and the accepted range), or if no napari
        viewer is open.
    """
    from napari_catune.params import load_params

    p = single_path(path)
    params = load_params(p)  # ValueError naming file + parameter + range

    import napari
    from napari.utils.notifications import show_info

    viewer = napari.current_viewer()
    if viewer is None:
        raise ValueError(
            f"{p} holds CaTune parameters, which load into the CaTune tuner: "
            "open it from a napari window (File > Open), or use "
            "napari_catune.load_params in a script"
        )
    dock, widget = viewer.window.add_plugin_dock_widget("napari-catune", "CaTune tuner")
    # as the tuner's Load...: the recording's own rate is kept, with a warning
    applied = widget.actions.apply_loaded(params, p)
    try:  # a dock the user hid should come back into view
        dock.show()
        dock.raise_()
    except Exception:  # cosmetic only
        pass
    if applied is not None:
        show_info(
            f"Loaded CaTune parameters from {p}: tau_rise {applied.tau_rise:g} s, "
            f"tau_decay {applied.tau_decay:g} s, fs {applied.fs:g} Hz, lambda {applied.lam:g}, "
            f"baseline {applied.baseline}"
        )
    return [(None,)]


# ----------------------------------------------------------------------------
# trace files (read by napari_catune.sources, shared with the CLI)
# ----------------------------------------------------------------------------


def get_traces_reader(path):
    """Return a reader for calcium traces (``.npy`` (+ sidecar) or ``.npz``), else None.

    Bare ``.npy`` files are taken only when they hold a 1-D (T,) or 2-D
    (n_cells, T) numeric array, so image stacks go to other readers; a 2-D
    unsigned-integer ``.npy`` that is image-shaped and named or sampled like a
    segmentation mask (``sources.npy_looks_like_labels``: the header and a few
    rows, never the whole file) goes to the labels reader, a cellpose
    ``*_seg.npy`` (a pickled dict: name and header only) to
    :func:`read_cellpose_seg`, and our own results files
    (``sources.results_file_summary``) to :func:`read_results_file`, which
    says what they are instead of napari's bare "refused the file".
    """
    from . import sources

    try:
        p = single_path(path)
        if p is None:
            return None
        low = p.lower()
        if not os.path.isfile(p):
            return None
        if sources.results_file_summary(p) is not None:
            return read_results_file  # ours, to refuse with a reason (not "refused the file")
        from .loaders import is_cellpose_seg

        if is_cellpose_seg(p):
            return read_cellpose_seg  # a pickle: asks first
        if low.endswith(".npy"):
            if sources.sidecar_path(p).is_file():
                return read_traces
            with open(p, "rb") as fh:
                shape, dtype = sources.npy_header(fh)
            if len(shape) == 2 and np.dtype(dtype).kind == "u" \
                    and sources.npy_looks_like_labels(p):
                return read_labels  # a segmentation mask, not traces
            return read_traces if sources.is_trace_array(shape, dtype) else None
        if low.endswith(".npz"):
            return read_traces if sources.npz_layout(p) is not None else None
    except Exception:  # not ours (corrupt, not an array file, ...)
        return None
    return None


def results_refusal(path) -> str | None:
    """What to tell someone who opens one of our results files in napari, else None."""
    from .sources import results_file_summary

    summary = results_file_summary(path)
    if summary is None:
        return None
    numbers = ("napari_catune.load_results(path) or np.load(path)['activity']"
               if str(path).lower().endswith(".npz") else "np.load(path)")
    return (f"CaTune results, not a recording: {path} is a napari-catune results file "
            f"({summary}); its rows are deconvolved activity, not fluorescence to tune. "
            "To tune, open the recording it was made from (the movie and its ROI masks, or "
            f"the traces file); to read the numbers, use {numbers} in Python")


def read_results_file(path):
    """Refuse a napari-catune results file with a reason (napari's own "refused
    the file" gives none): a ``ValueError`` naming what the file is and what to
    open instead.  napari shows it as it is (File > Open and drag-and-drop pick
    a reader in its dialog, as napari's own reader takes ``.npy``/``.npz`` too;
    ``viewer.open`` raises it), or after its own text when ours was the
    remembered reader for the extension."""
    p = single_path(path)
    message = results_refusal(p) if p is not None else None
    if message is None:  # changed since the getter looked: read it as traces
        return read_traces(path)
    raise ValueError(message)


def _labels_for(ids: np.ndarray) -> np.ndarray:
    from napari_catune.loaders import tile_labels

    return tile_labels(ids.size, tile=_TILE, gap=_GAP, ids=ids)


#: values read from a traces file at a time (32 MB of float64)
_READ_BLOCK = 1 << 22


def _finite_rows_of(src, path):
    """(traces of the finite rows, their file ids, the file ids left out).

    Rows holding NaN/inf (a suite2p ROI with no pixels, a row skipped by
    ``deconvolve --skip-bad``) cannot be solved, except NaN padding at a row's
    end (recordings of different lengths); the rest of the recording
    can still be tuned, so only those ROIs are left out (and named).  A file
    with no finite row at all is refused.
    """
    # read a block of rows at a time straight into the float64 array: the file's
    # rows in their own dtype (a float32 copy of the whole file) never all at once
    n, T = src.n, src.T
    traces = np.empty((n, T), dtype=np.float64)
    step = max(1, _READ_BLOCK // max(T, 1))
    ok = np.empty(n, dtype=bool)
    for a in range(0, n, step):
        b = min(n, a + step)
        traces[a:b] = np.reshape(src.read(a, b), (b - a, T))
        # a row ending in NaN padding (a shorter recording) is kept: it is
        # solved on its finite part (napari_catune._padding)
        ok[a:b] = row_lengths(traces[a:b]) != BAD
    ids = np.asarray(src.roi_ids)
    if not ok.any():
        raise ValueError(f"{path}: every trace row holds NaN/inf values; nothing to tune "
                         "(replace them, e.g. interpolate, and open the file again)")
    if ok.all():
        return traces, ids, ids[:0]
    # the kept rows moved up in place, then the array shrunk: no second copy
    keep = np.flatnonzero(ok)
    for j, i in enumerate(keep):
        if i != j:
            traces[j] = traces[i]
    traces.resize((keep.size, T), refcheck=False)
    return traces, ids[ok], ids[~ok]


def read_traces(path):
    """Read a traces file into a Labels layer of tiles, one per ROI.

    Returns
    -------
    list of LayerData
        One ``(labels, meta, "labels")`` tuple; ``meta["metadata"]["catune"]``
        holds ``traces`` (n, T) float64, ``fs`` (Hz or None), ``roi_ids`` (n,)
        and ``source`` (the path).
    """
    from . import sources

    p = single_path(path)
    if p is None:
        raise ValueError(f"cannot read {path!r} as traces: pass a single file")
    src = sources.open_traces(p)
    traces, file_ids, skipped = _finite_rows_of(src, p)
    # label values must be >= 1 (0 is the background): 0-based ids move up by one
    roi_ids, shift = sources.label_ids(file_ids)
    if roi_ids.max() > np.iinfo(np.int32).max:
        raise ValueError(f"{p}: roi_ids above {np.iinfo(np.int32).max} cannot be labels")
    labels = _labels_for(roi_ids)
    cat = {
        "traces": traces,
        "fs": src.fs,
        "roi_ids": roi_ids,
        "source": str(Path(p).resolve()),
    }
    if src.trace:  # what the file says the traces are (napari-catune extract's)
        cat["input_traces"] = src.trace
    # what the source says about how it was read (a sidecar's two rate keys merged
    # into one, naming them and the one used), as the CLI prints them
    notes = list(src.notes)
    if skipped.size:
        shown = ", ".join(str(int(i)) for i in skipped[:8]) + (", ..." if skipped.size > 8 else "")
        notes.append(f"{Path(p).name}: {skipped.size} of {src.n} ROIs hold NaN/inf values "
                     f"(roi_id {shown}) and are left out: they cannot be tuned or solved "
                     "(e.g. rows skipped by `deconvolve --skip-bad`)")
        cat["skipped_roi_ids"] = skipped
    if shift:
        notes.append(f"{Path(p).name}: roi_ids start at {int(file_ids.min())}; shown as label "
                     f"values + {shift} (0 is the background label), so id i is label {shift}+i")
        cat.update(roi_id_shift=shift, file_roi_ids=np.asarray(file_ids))
    if notes:
        cat["notes"] = notes
        try:
            from napari.utils.notifications import show_info

            for note in notes:
                show_info(note)
        except Exception:  # no napari (a script): the metadata says it
            pass
    meta = {"name": f"{Path(p).stem} ROIs", "metadata": {"catune": cat}}
    return [(labels, meta, "labels")]


# ----------------------------------------------------------------------------
# NWB ophys files
# ----------------------------------------------------------------------------


def get_nwb_reader(path):
    """A reader for an ``.nwb`` (HDF5) file with processing modules, else None.

    Without pynwb the reader is still returned, so that opening the file says
    which extra to install instead of "no reader".
    """
    try:
        p = single_path(path)
        if p is None or not p.lower().endswith(".nwb") or not os.path.isfile(p):
            return None
        try:
            import h5py
        except ImportError:
            return read_nwb
        with h5py.File(p, "r") as f:
            if "processing" not in f:
                return None
    except Exception:  # not ours (not HDF5, unreadable ...)
        return None
    return read_nwb


def read_nwb(path):
    """Read an NWB ophys file: per plane, its summary image and ROI footprints.

    One Labels layer per set of ROIs (a PlaneSegmentation, or one plane's
    rows of suite2p's single table), each with its plane's raw fluorescence
    series (``napari_catune.nwb.plan_nwb_series`` chooses; ``load_nwb``
    reads); its ``metadata["catune"]`` carries the traces, ``fs``,
    ``roi_ids`` and the source.  A notification names the series opened and
    those not opened (dF/F, neuropil, ...) when the file holds more than one.
    """
    from ._reader_pipelines import _layers, all_rois, tell_selection
    from .nwb import load_nwb, plan_nwb_series

    p = single_path(path)
    if p is None:
        raise ValueError(f"cannot read {path!r} as NWB: pass a single file")
    opened, not_opened = plan_nwb_series(p)
    if not opened:  # nothing usable: load_nwb says why
        opened = [(None, None)]
    several = len(opened) > 1
    layers = []
    for series, plane in opened:
        data = load_nwb(p, only_cells=not all_rois(), series=series)
        name = Path(p).stem + (f" {plane}" if several else "")
        tell_selection(data, name if several else Path(p).name)
        plane_layers = _layers(data, name)
        for _, meta, kind in plane_layers:
            if kind == "labels":
                meta["metadata"]["catune"]["notes"] = list(data.notes)
                meta["metadata"]["catune"]["kind"] = data.kind
                if data.nwb_ids is not None:  # the file's own ids, for the .nwb export
                    meta["metadata"]["catune"]["nwb_ids"] = {
                        "roi_ids": np.asarray(data.roi_ids, dtype=np.int64),
                        "ids": np.asarray(data.nwb_ids, dtype=np.int64)}
        layers.extend(plane_layers)
        if data.labels is not None and series_of(data):
            movie = _nwb_movie(p, series_of(data), data.labels.shape, name, data.fs)
            if movie is not None:  # under the ROIs: the neuropil box can use it
                layers.insert(len(layers) - len(plane_layers), movie)
    # said when a plane or a series a user may want was not opened (not for a
    # single plane's neuropil, already subtracted, or a pipeline's deconvolved
    # output: the layer's notes list those)
    if several or not all(_derived(s) for s, _ in not_opened):
        _tell_series(Path(p).name, [s for s, _ in opened if s], not_opened)
    return layers


def _derived(series: str) -> bool:
    """A neuropil or deconvolved series (suite2p's), or napari-catune results."""
    return series.startswith("catune/") or any(
        f"/{c}/" in series.lower() for c in ("neuropil", "deconvolved"))


def series_of(data) -> str | None:
    """The series path of an NWB PipelineData (its kind, minus " - 0.7*Neuropil")."""
    kind = str(getattr(data, "kind", "") or "")
    return kind.split(" - ", 1)[0] or None


def _nwb_movie(path, series, shape, name, fs):
    """The plane's TwoPhotonSeries as a lazy image layer (Dask over the HDF5
    dataset, frame blocks on demand, never the whole movie), or None."""
    from .nwb import movie_key

    key = movie_key(path, series, shape)
    if key is None:
        return None
    import dask.array as da
    import h5py

    with h5py.File(path, "r") as f:
        ds = f[key]
        T, Y, X = ds.shape
        dtype = np.dtype(ds.dtype)
        first = np.asarray(ds[0], dtype=np.float64)
    frames = max(1, min(T, (64 << 20) // max(1, Y * X * dtype.itemsize)))
    lazy = _H5Frames(os.path.realpath(path), key, (T, Y, X), dtype)
    data = da.from_array(lazy, chunks=(frames, Y, X), name=_h5_token(path, key),
                         meta=np.empty((0, 0, 0), dtype))
    lo, hi = float(first.min()), float(first.max())
    meta = {"name": f"{name} {key.rsplit('/', 2)[-2]}",
            "metadata": {"catune": {"fs": fs, "source": str(Path(path).resolve()),
                                    "h5_key": key}},
            "contrast_limits": (lo, hi if hi > lo else lo + 1.0),
            "axis_labels": ("t", "y", "x")}
    return (data, meta, "image")


def _tell_series(name, opened, not_opened) -> None:
    """A notification: which series of an NWB file were opened, which not."""
    def short(series):
        return series.split("/", 1)[-1]

    text = f"{name}: opened {len(opened)} series ({', '.join(map(short, opened))})"
    if not_opened:
        whys: dict = {}
        for series, why in not_opened:
            whys.setdefault(why, []).append(short(series))
        text += "; not opened: " + "; ".join(f"{', '.join(v)} ({k})" for k, v in whys.items())
        text += ("; to deconvolve another: napari-catune deconvolve FILE --series NAME, or "
                 "napari_catune.load_nwb(path, series=NAME) in Python")
    try:
        from napari.utils.notifications import show_info

        show_info(text)
    except Exception:  # no napari (a script)
        pass


# ----------------------------------------------------------------------------
# HDF5 movies and segmentation masks
# ----------------------------------------------------------------------------


def get_h5_movie_reader(path):
    """A reader for a (T, Y, X) movie in an HDF5 file (not a CaImAn or NWB file), else None."""
    try:
        p = single_path(path)
        if p is None or not p.lower().endswith((".h5", ".hdf5")) or not os.path.isfile(p):
            return None
        import h5py

        from .sources import h5_movie_key

        with h5py.File(p, "r") as f:
            if "estimates" in f or "processing" in f or "acquisition" in f:
                return None  # CaImAn / NWB: their own readers
            if h5_movie_key(f) is None:
                return None
    except Exception:  # not HDF5, no h5py ...
        return None
    return read_h5_movie


class _H5Frames:
    """An HDF5 dataset for Dask: the file is opened on the first read and kept
    open (with a 64 MB chunk cache, so compressed chunks are not decompressed
    again for each frame while the movie plays) until this object is garbage
    collected, i.e. when its layer is gone."""

    CHUNK_CACHE = 64 * 2**20

    def __init__(self, path: str, key: str, shape, dtype):
        self.path, self.key = path, key
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.ndim = len(self.shape)
        self._file = self._ds = None
        self._lock = threading.Lock()

    def _dataset(self):
        # HDF5's chunk cache belongs to the open dataset: keep the dataset, not only the file
        if self._file is None:
            import h5py

            self._file = h5py.File(self.path, "r", rdcc_nbytes=self.CHUNK_CACHE)
            weakref.finalize(self, self._file.close)
            self._ds = self._file[self.key]
        return self._ds

    def __getitem__(self, index):
        with self._lock:
            return np.asarray(self._dataset()[index])

    def __getstate__(self):  # a Dask worker in another process opens its own handle
        state = self.__dict__.copy()
        state["_file"], state["_ds"], state["_lock"] = None, None, None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


def _h5_token(path: str, key: str) -> str:
    """A Dask name unique to this file's contents: two movie.h5 never share a cache."""
    from dask.base import tokenize

    st = os.stat(path)
    return f"catune-h5-{Path(path).name}-" + tokenize(
        os.path.realpath(path), key, st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev
    )


def read_h5_movie(path):
    """Read an HDF5 movie lazily (a Dask array over the dataset, frame blocks on demand).

    ``metadata["catune"]["fs"]`` holds the frame rate when the file records it
    (an ``fs``/``frame_rate``/``fr`` attribute); the axes are named t, y, x.
    The file is opened on the first read and closed when the layer's data is
    garbage collected; the Dask name is unique to the file (path, key, size,
    mtime).
    """
    import dask.array as da

    from .sources import open_movie

    p = single_path(path)
    if p is None:
        raise ValueError(f"cannot read {path!r} as a movie: pass a single file")
    movie = open_movie(p)
    try:
        d = movie.data
        T, Y, X = movie.shape
        dtype = np.dtype(d.dtype)
        first = np.asarray(d[0])
        key, fs = movie.key, movie.fs
    finally:
        movie.close()
    frames = max(1, min(T, (64 << 20) // max(1, Y * X * dtype.itemsize)))
    lazy = _H5Frames(os.path.realpath(p), key, (T, Y, X), dtype)
    data = da.from_array(lazy, chunks=(frames, Y, X), name=_h5_token(p, key),
                         meta=np.empty((0, 0, 0), dtype))
    lo, hi = float(first.min()), float(first.max())
    meta = {
        "name": f"{Path(p).stem}" + (f" {key}" if key not in (None, "mov") else ""),
        "metadata": {"catune": {"fs": fs, "source": str(Path(p).resolve()),
                                "h5_key": key}},
        "contrast_limits": (lo, hi if hi > lo else lo + 1.0),
        "axis_labels": ("t", "y", "x"),
    }
    return [(data, meta, "image")]


#: file names a segmentation tool gives its masks (cellpose: {name}_cp_masks.png/.tif)
MASK_PATTERNS = ("*_masks.tif", "*_masks.tiff", "*_masks.png", "*_labels.tif",
                 "*_labels.tiff", "*_labels.png")


def get_labels_reader(path):
    """A reader for a 2-D unsigned-integer mask (cellpose style: uint16, 0 = background)."""
    try:
        p = single_path(path)
        if p is None or not os.path.isfile(p):
            return None
        from .sources import looks_like_labels, npy_looks_like_labels, open_labels

        if p.lower().endswith(".npy"):  # header and a few rows, not the whole file
            return read_labels if npy_looks_like_labels(p) else None
        arr = open_labels(p)
        return read_labels if looks_like_labels(arr.shape, arr.dtype, arr, name=p) else None
    except Exception:
        return None


def read_cellpose_seg(path):
    """Read the ``masks`` of a cellpose ``*_seg.npy`` as a Labels layer.

    The file is a pickle: the user is asked first (once per file and session,
    as for suite2p's stat.npy/ops.npy); refused, a ValueError says to open
    the ``*_cp_masks.tif``/``.png`` instead.
    """
    from ._reader_pipelines import pickle_allowed
    from .loaders import load_cellpose_seg

    p = single_path(path)
    if p is None:
        raise ValueError(f"cannot read {path!r} as labels: pass a single file")
    masks = load_cellpose_seg(p, allow_pickle=pickle_allowed(p, "cellpose"))
    return _labels_layer(masks, p)


def read_labels(path):
    """Read a segmentation mask as a Labels layer (the tuner's ROI source)."""
    from .sources import open_labels

    p = single_path(path)
    if p is None:
        raise ValueError(f"cannot read {path!r} as labels: pass a single file")
    return _labels_layer(open_labels(p), p)


def _labels_layer(arr: np.ndarray, p: str):
    if arr.dtype.kind == "b" or arr.dtype.itemsize > 4:
        arr = arr.astype(np.int32 if arr.max() <= np.iinfo(np.int32).max else np.int64)
    return [(arr, {"name": Path(p).stem, "axis_labels": ("y", "x"),
                   "metadata": {"catune": {"source": str(Path(p).resolve())}}}, "labels")]
