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
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["get_params_reader", "get_traces_reader", "get_nwb_reader"]

# a CaTune export is ~2 kB; anything this large is someone else's JSON
_MAX_PARAMS_BYTES = 1 << 20
from .loaders import FS_KEYS as _NPZ_FS_KEYS
from .loaders import ID_KEYS as _NPZ_ID_KEYS
from .loaders import TRACE_KEYS as _NPZ_TRACE_KEYS

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
            return lambda _path: read_traces(npy)
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
    widget.set_params(params)
    try:  # a dock the user hid should come back into view
        dock.show()
        dock.raise_()
    except Exception:  # cosmetic only
        pass
    show_info(
        f"Loaded CaTune parameters from {p}: tau_rise {params.tau_rise:g} s, "
        f"tau_decay {params.tau_decay:g} s, fs {params.fs:g} Hz, lambda {params.lam:g}, "
        f"baseline {params.baseline}"
    )
    return [(None,)]


# ----------------------------------------------------------------------------
# trace files
# ----------------------------------------------------------------------------


def _sidecar(p: str) -> Path:
    q = Path(p)
    return q.with_name(q.stem + _SIDECAR)


def _is_trace_array(shape, dtype) -> bool:
    """1-D (T,) or 2-D (n, T) real numbers, with at least two frames."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "iuf" or len(shape) not in (1, 2):
        return False
    if len(shape) == 1:
        return shape[0] >= 2
    # (n_cells, n_frames); a 2-D image would pass too, but napari offers its
    # own reader for those and the user picks (File > Open asks)
    return shape[0] >= 1 and shape[1] >= 2


def _npy_header(fh):
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    return shape, dtype


def _npz_layout(p: str):
    """(trace member, fs member, ids member) of a .npz, from names and headers only."""
    with zipfile.ZipFile(p) as zf:
        members = {}
        for info in zf.infolist():
            if info.filename.endswith(".npy"):
                with zf.open(info) as fh:
                    members[info.filename[:-4]] = _npy_header(fh)
    if not members:
        return None
    if "traces" in members:  # our name: ours even if malformed (the reader says why)
        key = "traces"
    else:
        named = [k for k in _NPZ_TRACE_KEYS if k in members]
        key = next((k for k in named if _is_trace_array(*members[k])), None)
    if key is None:
        others = [k for k in members if k not in _NPZ_FS_KEYS + _NPZ_ID_KEYS]
        # one unnamed array (np.savez(f, x) -> "arr_0"), perhaps beside fs/ids;
        # several unnamed arrays would be guesswork
        if len(others) == 1 and _is_trace_array(*members[others[0]]):
            key = others[0]
        else:
            return None
    fs_key = next((k for k in _NPZ_FS_KEYS if k in members), None)
    id_key = next((k for k in _NPZ_ID_KEYS if k in members), None)
    return key, fs_key, id_key


def get_traces_reader(path):
    """Return a reader for calcium traces (``.npy`` (+ sidecar) or ``.npz``), else None.

    Bare ``.npy`` files are taken only when they hold a 1-D (T,) or 2-D
    (n_cells, T) numeric array, so image stacks go to other readers.
    """
    try:
        p = single_path(path)
        if p is None or not os.path.isfile(p):
            return None
        low = p.lower()
        if low.endswith(".npy"):
            if _sidecar(p).is_file():
                return read_traces
            with open(p, "rb") as fh:
                shape, dtype = _npy_header(fh)
            return read_traces if _is_trace_array(shape, dtype) else None
        if low.endswith(".npz"):
            return read_traces if _npz_layout(p) is not None else None
    except Exception:  # not ours (corrupt, not an array file, ...)
        return None
    return None


def _as_traces(arr, p) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iuf":
        raise ValueError(
            f"{p}: traces must be real numbers, got dtype {arr.dtype}; "
            "save them as float (n_cells, n_frames)"
        )
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] < 2 or arr.shape[0] < 1:
        raise ValueError(
            f"{p}: traces must have shape (n_cells, n_frames) with at least 2 frames, "
            f"got {arr.shape}"
        )
    # a real copy: np.asarray of a float64 memmap would keep the file open
    traces = np.array(arr, dtype=np.float64, order="C", copy=True)
    bad = ~np.isfinite(traces)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        shown = ", ".join(str(r) for r in rows[:5]) + (", ..." if rows.size > 5 else "")
        raise ValueError(
            f"{p}: {int(bad.sum())} non-finite values (NaN/inf) in trace rows {shown}; "
            "replace them (e.g. interpolate) before tuning"
        )
    return traces


def _as_fs(value, p) -> float | None:
    if value is None:
        return None
    try:
        fs = float(np.asarray(value).reshape(()))
    except (TypeError, ValueError):
        raise ValueError(f"{p}: sampling rate must be a single number, got {value!r}") from None
    if not np.isfinite(fs) or fs <= 0:
        raise ValueError(f"{p}: sampling rate must be a positive number of Hz, got {fs}")
    return fs


def _as_ids(value, n: int, p) -> np.ndarray:
    if value is None:
        return np.arange(1, n + 1, dtype=np.int64)
    ids = np.asarray(value)
    if ids.ndim != 1 or ids.shape[0] != n:
        raise ValueError(
            f"{p}: roi_ids must be a list of {n} ids (one per trace), got shape {ids.shape}"
        )
    if ids.dtype.kind == "f" and np.all(ids == np.round(ids)):
        ids = ids.astype(np.int64)
    if ids.dtype.kind not in "iu":
        raise ValueError(f"{p}: roi_ids must be integers, got dtype {ids.dtype}")
    ids = ids.astype(np.int64)
    if n and ids.min() < 1:
        raise ValueError(
            f"{p}: roi_ids must be positive (0 is the background label), got minimum {ids.min()}; "
            "add 1 to 0-based ids"
        )
    if np.unique(ids).size != n:
        raise ValueError(f"{p}: roi_ids must be unique")
    return ids


def _labels_for(ids: np.ndarray) -> np.ndarray:
    from napari_catune.loaders import tile_labels

    return tile_labels(ids.size, tile=_TILE, gap=_GAP, ids=ids)


def _read_npy(p: str):
    side = _sidecar(p)
    if side.is_file():
        from napari_catune.io import load_tuning_data

        traces, meta = load_tuning_data(p)
        fs = meta.get("sampling_rate_hz")
        ids = meta.get("roi_ids")
        return _as_traces(traces, p), _as_fs(fs, side), ids
    arr = np.load(p, mmap_mode="r", allow_pickle=False)
    try:
        return _as_traces(arr, p), None, None
    finally:
        del arr


def _read_npz(p: str):
    layout = _npz_layout(p)
    if layout is None:
        raise ValueError(
            f"{p}: no traces found; expected an array named one of "
            f"{', '.join(_NPZ_TRACE_KEYS)} (or a single 2-D array)"
        )
    key, fs_key, id_key = layout
    with np.load(p, allow_pickle=False) as z:
        traces = _as_traces(z[key], f"{p}[{key!r}]")
        fs = _as_fs(z[fs_key], f"{p}[{fs_key!r}]") if fs_key else None
        ids = np.asarray(z[id_key]) if id_key else None
    return traces, fs, ids


def read_traces(path):
    """Read a traces file into a Labels layer of tiles, one per ROI.

    Returns
    -------
    list of LayerData
        One ``(labels, meta, "labels")`` tuple; ``meta["metadata"]["catune"]``
        holds ``traces`` (n, T) float64, ``fs`` (Hz or None), ``roi_ids`` (n,)
        and ``source`` (the path).
    """
    p = single_path(path)
    if p is None:
        raise ValueError(f"cannot read {path!r} as traces: pass a single file")
    if p.lower().endswith(".npz"):
        traces, fs, ids = _read_npz(p)
    else:
        traces, fs, ids = _read_npy(p)
    roi_ids = _as_ids(ids, traces.shape[0], p)
    if roi_ids.max() > np.iinfo(np.int32).max:
        raise ValueError(f"{p}: roi_ids above {np.iinfo(np.int32).max} cannot be labels")
    labels = _labels_for(roi_ids)
    meta = {
        "name": f"{Path(p).stem} ROIs",
        "metadata": {
            "catune": {
                "traces": traces,
                "fs": fs,
                "roi_ids": roi_ids,
                "source": str(Path(p).resolve()),
            }
        },
    }
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
    """Read an NWB ophys file: its summary image and the ROI footprints.

    The Labels layer's ``metadata["catune"]`` carries the traces, ``fs``,
    ``roi_ids`` and the source (``napari_catune.nwb.load_nwb`` picks the
    series; its notes say which).
    """
    from ._reader_pipelines import _layers
    from .nwb import load_nwb

    p = single_path(path)
    if p is None:
        raise ValueError(f"cannot read {path!r} as NWB: pass a single file")
    data = load_nwb(p)
    layers = _layers(data, Path(p).stem)
    for _, meta, kind in layers:
        if kind == "labels":
            meta["metadata"]["catune"]["notes"] = list(data.notes)
            meta["metadata"]["catune"]["kind"] = data.kind
    return layers
