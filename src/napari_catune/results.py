"""Deconvolution results a lab can keep: one file with ids, fs and parameters.

:func:`save_results` writes, by the file's extension:

``.npz`` (recommended; ``np.load(path, allow_pickle=False)`` reads it)
    ``activity`` (n, T) float64, ``fit`` (n, T) float64 (K*s + baseline),
    ``baseline`` (n,) or (n, T) float64, ``roi_ids`` (n,) int64 (the label
    values), ``fs`` () float64 in Hz, ``params`` () str: the CaTune export
    JSON of the parameters (the document :func:`params.save_params` writes,
    so ``json.loads(z["params"].item())`` gives it), ``format`` () str
    ``"napari-catune results"`` and ``format_version`` () str.  Tables are
    stored column by column: ``events.<column>`` (one row per event) and
    ``features.<column>`` (one row per ROI, in ``roi_ids`` order: from Apply
    to all and ``deconvolve`` the columns of ``session.FEATURE_NAMES``, and
    ``converged``, ``iterations``, ``skipped`` also as top-level arrays, as
    the CLI's streamed ``.npz`` has them).  ``input_traces`` () str says what
    the deconvolved traces were (e.g. ``"F - 0.7*Fneu"``) when known.  ``t0`` ()
    float64 is the time of the first frame in s (an NWB input's
    ``starting_time`` or first timestamp; 0 otherwise) and ``timestamps`` (T,)
    float64 the input's frame times when they are irregular.  Arrays that
    were not given (``fit=None``, no events...) are absent.  With the
    bandpass on (``filter_enabled``) the solver fitted the band-passed trace,
    not the input: ``fitted_trace`` (n, T) holds it (plot ``fit`` over it)
    and ``fit_note`` () str says that ``fit``, ``baseline`` and the features'
    ``baseline`` and ``r2`` are of that trace (mean about 0, baselines may be
    negative), with the filter's cutoffs.
``.nwb`` (Neurodata Without Borders; needs ``pip install 'napari-catune[nwb]'``)
    See :mod:`napari_catune.nwb`: ROIs in processing module ``ophys``,
    results in processing module ``catune``.
``.csv``
    Wide layout, one row per frame: a header ``time_s,roi_<id>,...`` then
    ``t0 + k / fs`` (or the input's irregular timestamps) and each ROI's
    activity at frame k (10 significant digits).
    Beside it ``{stem}_metadata.json`` (fs, ROI ids, parameters, what the
    columns are, ``input_traces`` when known; ``fit_note`` with the bandpass
    on) and, when features are
    given, ``{stem}_features.csv``.
``.npy``
    The activity alone as (n, T) float64, with the ``{stem}_metadata.json``
    sidecar of the traces hand-off format (``sampling_rate_hz``,
    ``roi_ids``, ``catune_params``, ``start_time_s``; ``timestamps_s`` when
    irregular), so ``io.load_tuning_data`` reads it back with its ids and
    sampling rate (the napari reader and the CLI refuse it as an input: its
    ``content`` says it is deconvolved activity, not fluorescence).  Fit,
    baseline and events need ``.npz`` or ``.nwb``.

Every file is written atomically (temporary file, then rename).  No Qt, no
napari.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from ._atomic import _atomic_write, atomic_write_text
from ._timebase import check_time, frame_times
from .io import json_default

__all__ = [
    "save_results", "save_features_csv", "load_results", "RESULT_FORMATS", "results_metadata",
]

FORMAT = "napari-catune results"
FORMAT_VERSION = "1.0"
#: file extensions :func:`save_results` writes
RESULT_FORMATS = (".npz", ".nwb", ".csv", ".npy")
_SIDECAR = "_metadata.json"


# ---------------------------------------------------------------- validation


def _params(params):
    from .params import TuningParams

    if isinstance(params, TuningParams):
        return params
    if isinstance(params, dict):
        try:
            return TuningParams(**params)
        except TypeError as exc:
            raise ValueError(f"params: {exc}; pass a TuningParams or its to_dict()") from None
    raise ValueError(f"params must be a TuningParams (or its to_dict()), got {type(params).__name__}")


class RowSpool:
    """An (n, T) float64 array kept in a temporary file, written a block of
    rows at a time as results arrive and read back a block of frames at a
    time, so an ``.nwb``/``.csv`` output is written without the whole result
    in memory (the CLI's ``deconvolve``).

    Plain file reads and writes (``os.pread``/``os.pwrite``), no memory map:
    nothing piles up in the resident set, and a full disk raises OSError
    (ENOSPC) instead of SIGBUS.  Rows never written read as NaN.  The file
    (``folder/prefix*.tmp``) is removed by :meth:`close`; with a prefix of
    ``_atomic.temp_prefix`` (the writer's pid, host, boot and start time), a
    killed run's file is removed by the next run writing into ``folder``
    (``_atomic.remove_stale_temps``).
    """

    ndim = 2
    dtype = np.dtype(np.float64)

    def __init__(self, n: int, T: int, folder, prefix: str):
        import os
        import tempfile

        self.shape = (int(n), int(T))
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
        self.fd, self.path = fd, Path(name)
        self.written = np.zeros(self.shape[0], dtype=bool)
        self._os = os

    def write_rows(self, a: int, rows) -> None:
        """Rows ``a .. a + len(rows)`` (each T values)."""
        block = np.ascontiguousarray(rows, dtype="<f8").reshape(-1, self.shape[1])
        view = memoryview(block).cast("B")
        offset = 8 * a * self.shape[1]
        while view.nbytes:
            done = self._os.pwrite(self.fd, view, offset)
            view, offset = view[done:], offset + done
        self.written[a:a + block.shape[0]] = True

    def _rows(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        n, T = self.shape
        out = np.full((r1 - r0, c1 - c0), np.nan)
        width = 8 * (c1 - c0)
        for k, r in enumerate(range(r0, r1)):
            if not self.written[r] or width == 0:
                continue
            buf = bytearray(width)
            view, offset = memoryview(buf), 8 * (r * T + c0)
            while view.nbytes:
                got = self._os.preadv(self.fd, [view], offset)
                if got == 0:
                    raise OSError(f"{self.path}: shorter than written")
                view, offset = view[got:], offset + got
            out[k] = np.frombuffer(buf, dtype="<f8")
        return out

    def __getitem__(self, key) -> np.ndarray:
        """``spool[rows, frames]`` with slices of step 1 (a copy, float64)."""
        if not isinstance(key, tuple):
            key = (key, slice(None))
        if len(key) != 2 or not all(isinstance(k, slice) for k in key):
            raise TypeError("RowSpool takes [row slice, frame slice]")
        spans = [k.indices(size) for k, size in zip(key, self.shape)]
        if any(step != 1 for _, _, step in spans):
            raise TypeError("RowSpool slices take step 1")
        (r0, r1, _), (c0, c1, _) = spans
        return self._rows(r0, max(r0, r1), c0, max(c0, c1))

    def __array__(self, dtype=None, copy=None):
        arr = self[:, :]
        return arr if dtype is None else arr.astype(dtype)

    def close(self) -> None:
        """Close and remove the file (again: nothing)."""
        if self.fd is not None:
            try:
                self._os.close(self.fd)
            except OSError:
                pass
            self.fd = None
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def _matrix(name, value, shape=None) -> np.ndarray:
    if isinstance(value, RowSpool):  # streamed (the CLI's .nwb/.csv): read a block at a time
        if shape is not None and value.shape != shape:
            raise ValueError(f"{name} has shape {value.shape}, but activity has {shape}")
        return value
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = np.array(arr, dtype=np.float64, ndmin=2, order="C", copy=None)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be (n_rois, n_frames), got shape {np.shape(value)}")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, but activity has {shape}")
    return arr


def _roi_ids(value, n: int) -> np.ndarray:
    """n unique integer ids >= 0 (0-based ids name rows of CLI inputs); the one
    validator of :mod:`napari_catune.sources`."""
    from .sources import as_roi_ids

    return as_roi_ids(np.ravel(np.asarray(value)), n, "results")


def _fs(fs) -> float:
    if isinstance(fs, bool):
        raise ValueError(f"fs must be a number of Hz, got {fs!r}")
    try:
        fs = float(np.asarray(fs).reshape(()))
    except (TypeError, ValueError):
        raise ValueError(f"fs must be a single number of Hz, got {fs!r}") from None
    if not (math.isfinite(fs) and fs > 0):
        raise ValueError(f"fs must be a positive number of Hz, got {fs}")
    return fs


def _table(name: str, value, n: int | None = None) -> dict[str, np.ndarray] | None:
    """Columns of a table given as a dict of columns, a DataFrame or a structured array."""
    if value is None:
        return None
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # pandas DataFrame
        value = {str(c): np.asarray(value[c]) for c in value.columns}
    elif isinstance(value, np.ndarray) and value.dtype.names:
        value = {c: value[c] for c in value.dtype.names}
    if not isinstance(value, dict):
        raise ValueError(
            f"{name} must be a dict of equal-length columns, a DataFrame or a structured "
            f"array, got {type(value).__name__}"
        )
    cols: dict[str, np.ndarray] = {}
    length = None
    for key, col in value.items():
        key = str(key)
        if not key or "," in key or "\n" in key:
            raise ValueError(f"{name}: column name {key!r} cannot be stored")
        arr = np.asarray(col)
        if arr.ndim != 1:
            raise ValueError(f"{name}[{key!r}] must be 1-D, got shape {arr.shape}")
        if arr.dtype.hasobject:
            try:
                arr = arr.astype(str) if all(isinstance(v, str) for v in arr) else arr.astype(float)
            except (TypeError, ValueError):
                raise ValueError(f"{name}[{key!r}] must hold numbers or strings") from None
        if arr.dtype.kind not in "biufUS":
            raise ValueError(f"{name}[{key!r}] must hold numbers or strings, got {arr.dtype}")
        if length is None:
            length = arr.shape[0]
        elif arr.shape[0] != length:
            raise ValueError(f"{name}: column {key!r} has {arr.shape[0]} rows, others {length}")
        cols[key] = arr
    if n is not None and length is not None and length != n:
        raise ValueError(f"{name} must have one row per ROI ({n}), got {length}")
    return cols


def _event_columns(events):
    """``detect_events``' table as given: its per-ROI ``unit`` (one value per ROI,
    not per event) is not an event column, so it is left out."""
    if isinstance(events, dict) and "unit" in events and "onset_frame" in events:
        return {k: v for k, v in events.items() if k != "unit"}
    return events


def fit_note(params) -> str | None:
    """What the fit describes when ``params``' bandpass is on (None when off):
    the band-passed trace, not the input trace."""
    from .kernel import bandpass_cutoffs

    p = _params(params)
    if not p.filter_enabled:
        return None
    hp, lp = bandpass_cutoffs(p.tau_rise, p.tau_decay, p.fs)
    return (f"bandpass on (CaTune filter, {hp:.3g} to {lp:.3g} Hz): fit, baseline and the "
            "features baseline and r2 are of the band-passed trace (fitted_trace, mean about 0), "
            "not of the input trace; plot fit over fitted_trace")


def _check_event_clock(events: dict | None, fs: float, t0: float, timestamps, t: int) -> None:
    """An events table with ``onset_frame`` and ``onset_s`` must time its events
    on the results' clock (``t0 + frame / fs`` or the timestamps), as
    ``detect_events(..., t0=, timestamps=)`` does: refuse one counted from
    the first frame (or of another recording) rather than save two clocks."""
    if not events or "onset_frame" not in events or "onset_s" not in events:
        return
    frames = np.asarray(events["onset_frame"])
    onset = np.asarray(events["onset_s"], dtype=np.float64)
    if frames.size == 0 or frames.dtype.kind not in "iuf":
        return
    if frames.min() < 0 or frames.max() >= t or (frames != np.round(frames)).any():
        raise ValueError(f"events['onset_frame'] must be frames of the activity (0 to {t - 1}), "
                         f"got {frames.min():g} to {frames.max():g}")
    want = frame_times(frames.astype(np.int64), fs, t0, timestamps)
    step = (float(np.min(np.diff(timestamps))) if timestamps is not None and t > 1
            else 1.0 / fs)
    if np.all(np.abs(onset - want) <= 0.25 * abs(step)):
        return
    clock = ("the input's timestamps" if timestamps is not None
             else f"t0 + onset_frame / fs with t0 = {t0:g} s")
    hint = ""
    if np.all(np.abs(onset - frames / fs) <= 0.25 / fs):
        hint = (" they count from the first frame: detect them with "
                "detect_events(activity, fs, t0=..., timestamps=...) given the results' t0 "
                "and timestamps (load_results(...)['t0'], ['timestamps'])")
    raise ValueError(f"events['onset_s'] are not on the results' clock ({clock}):"
                     + (hint or " the events are not of this recording's activity"))


def _validated(activity, fit, baseline, events, roi_ids, fs, params, features, t0=0.0,
               timestamps=None, fitted_trace=None):
    events = _event_columns(events)
    act = _matrix("activity", activity)
    n, t = act.shape
    t0, timestamps = check_time(t0, timestamps, t)
    out = {
        "activity": act,
        "fit": None if fit is None else _matrix("fit", fit, act.shape),
        "fitted_trace": (None if fitted_trace is None
                         else _matrix("fitted_trace", fitted_trace, act.shape)),
        "baseline": None,
        "roi_ids": _roi_ids(roi_ids, n),
        "fs": _fs(fs),
        "params": _params(params),
        "events": _table("events", events),
        "features": _table("features", features, n),
        "t0": t0,
        "timestamps": timestamps,
    }
    _check_event_clock(out["events"], out["fs"], t0, timestamps, t)
    if isinstance(baseline, RowSpool):
        out["baseline"] = _matrix("baseline", baseline, act.shape)
    elif baseline is not None:
        b = np.asarray(baseline, dtype=np.float64)
        if b.shape == () and n == 1:
            b = b.reshape(1)
        if b.shape not in ((n,), (n, t)):
            raise ValueError(
                f"baseline must be (n_rois,) (one level per ROI) or (n_rois, n_frames) (a "
                f"level per frame) = ({n},) or ({n}, {t}), got shape {b.shape}"
            )
        out["baseline"] = np.ascontiguousarray(b)
    return out


def results_metadata(*, roi_ids, fs, params, n_frames: int, content: str, t0: float = 0.0,
                     timestamps=None, **extra) -> dict:
    """The JSON sidecar of a results file (``{stem}_metadata.json``).

    ``start_time_s`` is the time of the first frame (``t0``); ``timestamps_s``
    the frame times, only when the input's are irregular.
    """
    from .events import FRAME0_NOTE
    from .params import _export_dict

    ids = [int(i) for i in np.asarray(roi_ids).ravel()]
    out = {
        **extra,
        "schema_version": "1.0.0",
        "sampling_rate_hz": float(fs),
        "num_cells": len(ids),
        "num_timepoints": int(n_frames),
        "roi_ids": ids,
        "content": content,
        "activity_frame_0": FRAME0_NOTE,
        "start_time_s": float(t0),
        "catune_params": _export_dict(_params(params), None),
    }
    if timestamps is not None:
        out["timestamps_s"] = [float(v) for v in np.asarray(timestamps).ravel()]
    return out


# ---------------------------------------------------------------- writers


def save_results(path, *, activity, fit, baseline, events=None, roi_ids, fs, params,
                 features=None, labels=None, source=None, t0=0.0, timestamps=None,
                 input_traces=None, fitted_trace=None, nwb_ids=None) -> list[Path]:
    """Write deconvolution results to ``path``; the format follows its extension.

    Parameters
    ----------
    path : str or Path
        Ends in ``.npz``, ``.nwb``, ``.csv`` or ``.npy`` (see the module
        docstring for each layout).
    activity : (n, T) array
        Deconvolved activity s.
    fit : (n, T) array or None
        The model fit K*s + baseline ("reconvolution").
    baseline : (n,) or (n, T) array or None
        Per-ROI scalar baselines, or per-frame baselines (rolling/drift modes).
    events : table or None
        One row per event (e.g. ``roi_id``, ``onset_s``, ``amplitude``): a
        dict of equal-length columns, a DataFrame or a structured array.
        With ``onset_frame`` and ``onset_s`` (``detect_events``'), the times
        must be on this file's clock (``t0`` / ``timestamps`` below):
        ``detect_events(activity, fs, t0=t0, timestamps=timestamps)``.
    roi_ids : (n,) int
        Label value of each row (positive, unique).
    fs : float
        Sampling rate in Hz.
    params : TuningParams or dict
        The parameters that produced the results.
    features : table or None
        One row per ROI, in ``roi_ids`` order (SNR, event rate, converged...).
    labels : (Y, X) int array, optional
        ROI footprints, for ``.nwb`` (else each ROI gets a placeholder tile and
        the file says the footprints are not known).
    source : str, optional
        Where the traces came from (recorded in ``.nwb`` and the sidecars).
    t0 : float
        Time of the first frame in s (an NWB input's ``starting_time`` or
        first timestamp): ``time_s``, the NWB series and the files start there.
    timestamps : (T,) array, optional
        The input's frame times when they are irregular: written as they are
        (NWB ``timestamps``, CSV ``time_s``, npz ``timestamps``, sidecar).
    input_traces : str, optional
        Which traces were deconvolved (e.g. ``"F - 0.7*Fneu"``): recorded in
        every format: ``.npz`` ``input_traces``, the NWB ``parameters`` table,
        the ``.csv``/``.npy`` sidecars.
    fitted_trace : (n, T) array, optional
        With the bandpass on, the band-passed traces the fit describes
        (``.npz`` and ``.nwb`` store them beside the fit).
    nwb_ids : (n,) int, optional
        ``.nwb`` only: an NWB input's PlaneSegmentation ids of these ROIs,
        written back as the ids (default: the ROI ids).

    Returns
    -------
    list of Path
        Every file written (the results file first).
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in RESULT_FORMATS:
        raise ValueError(
            f"cannot tell the results format from {path.name!r}: use one of "
            f"{', '.join(RESULT_FORMATS)}"
        )
    r = _validated(activity, fit, baseline, events, roi_ids, fs, params, features, t0,
                   timestamps, fitted_trace)
    if not r["params"].filter_enabled:
        r["fitted_trace"] = None  # the input trace itself: the lab has it
    r["input_traces"] = str(input_traces) if input_traces else None
    check_room(path, bytes_needed(ext, r))  # before writing: no half-written file to fill the disk
    if ext in (".npz", ".npy"):  # (read whole: the CLI streams these itself)
        for key in ("activity", "fit", "baseline", "fitted_trace"):
            if isinstance(r[key], RowSpool):
                r[key] = r[key][:, :]
    if ext == ".npz":
        return [_save_npz(path, r)]
    if ext == ".nwb":
        from .nwb import save_results_nwb

        return [save_results_nwb(path, labels=labels, source=source, nwb_ids=nwb_ids,
                                 **{k: v for k, v in r.items()})]
    if ext == ".csv":
        return _save_csv(path, r, source)
    return _save_npy(path, r, source)


#: bytes a results file needs beyond its (n, T) values: the tables, the
#: parameters, the footprints, HDF5's own structures
_ROOM_OVERHEAD = 1 << 20


def bytes_needed(ext: str, r: dict) -> int:
    """The bytes a results file of ``save_results``' validated fields ``r``
    surely takes: 8 per value of each (n, T) field in ``.npz``/``.nwb``
    (stored uncompressed), 8 per activity value in ``.npy``; a ``.csv``
    at least 2 per activity value (a zero and its comma; "%.10g" of
    another value takes up to 17, so this is the floor, not the size)."""
    n, T = r["activity"].shape
    if ext in (".npy", ".csv"):
        return (8 if ext == ".npy" else 2) * n * T + _ROOM_OVERHEAD
    fields = sum(1 for k in ("activity", "fit", "baseline", "fitted_trace")
                 if r.get(k) is not None and np.ndim(r[k]) == 2)
    if ext == ".nwb":  # and the room its writer keeps free beyond the last block
        from .nwb import _ROOM_MARGIN

        return 8 * fields * n * T + _ROOM_OVERHEAD + _ROOM_MARGIN
    return 8 * fields * n * T + _ROOM_OVERHEAD


def size_text(nbytes: float) -> str:
    """``nbytes`` for people: GB from 1 GB on, else MB, else kB ("160 MB", not
    "0.2 GB": two sizes side by side must differ)."""
    for unit, size, least in (("GB", 1e9, 1.0), ("MB", 1e6, 1.0), ("kB", 1e3, 0.0)):
        if nbytes >= least * size:
            value = nbytes / size
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    raise AssertionError  # pragma: no cover


def check_room(path, need: int) -> None:
    """OSError (ENOSPC, naming the sizes and what to do) when the file system
    of ``path``'s folder (its target's, through a symlink) has less than
    ``need`` bytes free now, EFBIG when the process may not write a file of
    ``need`` bytes (``ulimit -f``); nothing when that cannot be told.  A
    quota (EDQUOT) is not seen here: the writer reports it."""
    import errno
    import os

    from ._atomic import resolve_target

    try:
        target = resolve_target(path)
    except (ValueError, FileNotFoundError):
        return  # the writer itself refuses these, with its own message
    folder = target.parent if str(target.parent) else Path(".")
    try:  # a limit on one file's size (ulimit -f): the writer would meet EFBIG
        import resource

        fsize = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError, AttributeError):
        fsize = -1
    if 0 <= fsize != getattr(resource, "RLIM_INFINITY", -1) and fsize < need:
        raise OSError(errno.EFBIG, f"cannot write {target.name}: file too large on {folder} "
                      f"(it needs about {size_text(need)}, this process may write "
                      f"{size_text(fsize)} to a file: ulimit -f); raise that limit",
                      str(target))
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return  # cannot tell (Windows, some network file systems): writing will tell
    free = st.f_bavail * st.f_frsize
    if free < need:
        raise OSError(errno.ENOSPC, f"{target.name} needs about {size_text(need)} on {folder}, "
                      f"{size_text(free)} free; free space there or write elsewhere",
                      str(target))


def _save_npz(path: Path, r: dict) -> Path:
    from .params import _export_dict

    arrays = {
        "format": np.array(FORMAT),
        "format_version": np.array(FORMAT_VERSION),
        "activity": r["activity"],
        "roi_ids": r["roi_ids"],
        "fs": np.array(r["fs"]),
        "t0": np.array(r["t0"]),
        "params": np.array(json.dumps(_export_dict(r["params"], None), allow_nan=False,
                                      default=json_default)),
    }
    for key in ("fit", "baseline", "timestamps", "fitted_trace"):
        if r[key] is not None:
            arrays[key] = r[key]
    note = fit_note(r["params"])
    if note:
        arrays["fit_note"] = np.array(note)
    if r.get("input_traces"):
        arrays["input_traces"] = np.array(r["input_traces"])
    # per-ROI solver answers also at the top level, as the CLI's .npz has them
    for key in ("converged", "iterations", "skipped"):
        if key in (r["features"] or {}):
            arrays[key] = r["features"][key]
    for table in ("events", "features"):
        for col, arr in (r[table] or {}).items():
            arrays[f"{table}.{col}"] = arr
    return _atomic_write(path, lambda fh: np.savez(fh, **arrays))


def _sidecar_path(path: Path) -> Path:
    return path.with_name(path.stem + _SIDECAR)


def _save_npy(path: Path, r: dict, source) -> list[Path]:
    from .io import save_for_tuning

    meta = results_metadata(roi_ids=r["roi_ids"], fs=r["fs"], params=r["params"],
                            n_frames=r["activity"].shape[1],
                            content="deconvolved activity (napari-catune), rows in roi_ids order",
                            output=path.name, t0=r["t0"], timestamps=r["timestamps"],
                            **({"source_filename": Path(str(source)).name} if source else {}),
                            **({"input_traces": r["input_traces"]} if r.get("input_traces")
                               else {}))
    # the hand-off writer keeps its own keys (fs, shape, dtype) over ours
    for key in ("schema_version", "sampling_rate_hz", "num_cells", "num_timepoints"):
        meta.pop(key)
    npy, side = save_for_tuning(r["activity"], r["fs"], path, metadata=meta)
    return [npy, side]


def _csv_text(header: list[str], columns: list[np.ndarray]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    cells = [_csv_cells(c) for c in columns]
    for row in zip(*cells):
        w.writerow(row)
    return buf.getvalue()


def _csv_cells(col: np.ndarray) -> list[str]:
    if col.dtype.kind == "b":
        return ["true" if v else "false" for v in col]
    if col.dtype.kind in "iu":
        return [str(int(v)) for v in col]
    if col.dtype.kind == "f":
        # 10 significant digits: far below any calcium signal's noise
        return ["%.10g" % v for v in col]
    return [str(v) for v in col]


#: values (frames x columns) per block of CSV lines formatted at a time
_CSV_BLOCK_VALUES = 1 << 20


def _save_csv(path: Path, r: dict, source) -> list[Path]:
    act, ids, fs = r["activity"], r["roi_ids"], r["fs"]
    n, t = act.shape
    times = frame_times(np.arange(t), fs, r["t0"], r["timestamps"])
    header = ",".join(["time_s", *(f"roi_{i}" for i in ids)])
    step = max(1, _CSV_BLOCK_VALUES // (n + 1))

    def write(fh):
        # a block of frames at a time (the lines of the file; ``act`` may be a
        # RowSpool on disk): no copy of the whole table or text in memory, and
        # a watched write (_atomic.watched) can be cancelled between blocks
        for a in range(0, t, step) if t else [0]:
            b = min(t, a + step)
            table = np.empty((b - a, n + 1), dtype=np.float64)
            table[:, 0] = times[a:b]
            table[:, 1:] = act[:, a:b].T
            np.savetxt(fh, table, fmt="%.10g", delimiter=",", header=header if a == 0 else "",
                       comments="", encoding="utf-8")

    written = [_atomic_write(path, write)]
    if r["features"]:
        written.append(save_features_csv(path.with_name(path.stem + "_features.csv"),
                                         r["features"], roi_ids=ids))
    extra = {"output": path.name,
             "csv_layout": "wide: one row per frame; time_s = "
                           + ("the input's (irregular) timestamps" if r["timestamps"] is not None
                              else "start_time_s + frame / fs")
                           + ", then one column roi_<id> per ROI holding its deconvolved "
                             "activity"}
    if source:
        extra["source_filename"] = Path(str(source)).name
    if r.get("input_traces"):
        extra["input_traces"] = r["input_traces"]
    if r["features"] and fit_note(r["params"]):
        extra["fit_note"] = fit_note(r["params"])  # the features' baseline and r2
    meta = results_metadata(roi_ids=ids, fs=fs, params=r["params"], n_frames=t,
                            content="deconvolved activity (napari-catune)", t0=r["t0"], **extra)
    written.append(atomic_write_text(_sidecar_path(path),
                                     json.dumps(meta, indent=2, allow_nan=False) + "\n"))
    return written


def save_features_csv(path, features, roi_ids=None) -> Path:
    """Write a per-ROI table as CSV with a header row, ``roi_id`` first.

    ``features`` is a dict of equal-length columns, a DataFrame or a
    structured array (e.g. a napari Labels layer's ``features``); ``roi_ids``
    fills the ``roi_id`` column when the table has none.  Booleans are written
    ``true``/``false``, floats with 10 significant digits.
    """
    cols = _table("features", features)
    if not cols:
        raise ValueError("features is empty: nothing to write")
    n = len(next(iter(cols.values())))
    cols.pop("index", None)  # napari's Labels layer keeps the row index there
    if roi_ids is not None:
        ids = _roi_ids(roi_ids, n)
        if "roi_id" in cols and not np.array_equal(np.asarray(cols["roi_id"]), ids):
            raise ValueError("features['roi_id'] disagrees with roi_ids")
        cols["roi_id"] = ids
    order = (["roi_id"] if "roi_id" in cols else []) + [k for k in cols if k != "roi_id"]
    return atomic_write_text(path, _csv_text(order, [cols[k] for k in order]))


# ---------------------------------------------------------------- reading back


def load_results(path) -> dict:
    """Read a ``.npz``, ``.nwb`` or activity ``.npy`` results file written by
    :func:`save_results` or ``napari-catune deconvolve``.

    Returns a dict with ``activity``, ``fit``, ``baseline``, ``fitted_trace``
    (the band-passed trace the fit describes; each None when absent),
    ``roi_ids``, ``fs``, ``t0`` (time of the first frame, s), ``timestamps``
    (irregular frame times or None), ``params`` (a TuningParams), ``events``
    and ``features`` (dicts of columns, or None) and ``input_traces`` (what the
    deconvolved traces were, e.g. ``"F - 0.7*Fneu"``; None when not recorded).
    An ``.npy`` holds the activity only (``fit``, ``baseline``, ``events``,
    ``features`` None); ids, rate, clock and parameters come from its
    ``{stem}_metadata.json``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file not found: {path}")
    if path.suffix.lower() == ".nwb":
        from .nwb import load_results_nwb

        return load_results_nwb(path)
    if path.suffix.lower() == ".npy":
        return _load_results_npy(path)
    if path.suffix.lower() != ".npz":
        raise ValueError(f"{path}: load_results reads .npz, .nwb and activity .npy results files "
                         "(a .csv: pandas.read_csv)")
    with np.load(path, allow_pickle=False) as z:
        if "format" not in z.files or str(z["format"]) != FORMAT:
            raise ValueError(f"{path} is not a napari-catune results file (no 'format' entry)")
        out = {key: (np.array(z[key]) if key in z.files else None)
               for key in ("activity", "fit", "baseline", "fitted_trace")}
        out["roi_ids"] = np.array(z["roi_ids"])
        out["fs"] = float(z["fs"])
        out["t0"] = float(z["t0"]) if "t0" in z.files else 0.0
        out["timestamps"] = np.array(z["timestamps"]) if "timestamps" in z.files else None
        out["input_traces"] = str(z["input_traces"]) if "input_traces" in z.files else None
        doc = json.loads(str(z["params"]))
        for table in ("events", "features"):
            cols = {k.split(".", 1)[1]: np.array(z[k]) for k in z.files
                    if k.startswith(table + ".")}
            out[table] = cols or None
    out["params"] = _params_from_export(path, doc)
    return out


def _load_results_npy(path: Path) -> dict:
    from .sources import RESULTS_CONTENT, read_sidecar, sidecar_path

    side = sidecar_path(path)
    meta = read_sidecar(path)
    if (meta is None or not str(meta.get("content", "")).startswith(RESULTS_CONTENT)
            or not isinstance(meta.get("catune_params"), dict)):
        raise ValueError(f"{path} is not a napari-catune results .npy: its {side.name} "
                         + ("is missing" if meta is None else
                            "does not describe deconvolved activity with its parameters"))
    act = np.load(path, allow_pickle=False)
    act = act.reshape(1, -1) if act.ndim == 1 else act
    ids = meta.get("roi_ids")
    ts = meta.get("timestamps_s")
    return {
        "activity": act, "fit": None, "baseline": None, "fitted_trace": None,
        "roi_ids": (np.arange(1, act.shape[0] + 1, dtype=np.int64) if ids is None
                    else np.asarray(ids, dtype=np.int64)),
        "fs": float(meta["sampling_rate_hz"]),
        "t0": float(meta.get("start_time_s", 0.0)),
        "timestamps": None if ts is None else np.asarray(ts, dtype=np.float64),
        "input_traces": meta.get("input_traces") or None,
        "params": _params_from_export(side, meta["catune_params"]),
        "events": None, "features": None,
    }


def _params_from_export(path, doc: dict):
    from .params import load_params_dict

    return load_params_dict(doc, path)


# ---------------------------------------------------------------- batch report


def save_report(path, *, traces, fit, activity, baseline=None, roi_ids, params,
                summary: dict | None = None) -> Path:
    """Draw a one-page summary of a batch run (PNG, PDF or SVG by extension).

    One panel per trace (in grey: ``traces``, the band-passed ones when
    ``params.filter_enabled``, what the fit is of; the model fit in colour, the activity
    below it on the same time axis in seconds), then the kernel and a text
    block with the parameters and ``summary`` (e.g. counts of cells and of
    traces that did not converge).  Needs matplotlib (ImportError with the
    install command otherwise); drawn with the Agg backend, no display.
    """
    try:
        import matplotlib  # noqa: F401  (first: a missing matplotlib fails here)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "the report is drawn with matplotlib, which is not installed: "
            "pip install matplotlib"
        ) from None
    from .kernel import build_kernel

    path = Path(path)
    y = np.atleast_2d(np.asarray(traces, dtype=np.float64))
    f = np.atleast_2d(np.asarray(fit, dtype=np.float64))
    s = np.atleast_2d(np.asarray(activity, dtype=np.float64))
    ids = np.asarray(roi_ids).ravel()
    p = _params(params)
    n, t = y.shape
    time_s = np.arange(t) / p.fs
    # a Figure on its own Agg canvas: no pyplot, the process's backend is left alone
    fig = Figure(figsize=(11, 2.0 * n + 2.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(n + 1, 3)
    for i in range(n):
        ax = fig.add_subplot(grid[i, :])
        ax.plot(time_s, y[i], color="0.55", lw=0.6,
                label="band-passed trace" if p.filter_enabled else "trace")
        ax.plot(time_s, f[i], color="tab:orange", lw=0.9, label="fit")
        span = float(np.nanmax(y[i]) - np.nanmin(y[i])) or 1.0
        top = float(np.nanmax(s[i])) if np.isfinite(s[i]).any() else 0.0
        scale = 0.35 * span / top if top > 0 else 1.0
        ax.plot(time_s, np.nanmin(y[i]) - 0.45 * span + s[i] * scale, color="tab:blue",
                lw=0.7, label="activity (scaled)")
        ax.set_ylabel(f"ROI {int(ids[i])}" if i < ids.size else f"row {i}")
        ax.margins(x=0)
        if i == 0:
            ax.legend(loc="upper right", fontsize=8, ncol=3, frameon=False)
        if i == n - 1:
            ax.set_xlabel("time (s)")
    kax = fig.add_subplot(grid[n, 0])
    h = build_kernel(p.tau_rise, p.tau_decay, p.fs)
    kax.plot(np.arange(h.size) / p.fs, h, color="tab:green")
    kax.set_title("kernel", fontsize=9)
    kax.set_xlabel("s")
    tax = fig.add_subplot(grid[n, 1:])
    tax.axis("off")
    lines = [
        f"tau_rise {p.tau_rise:g} s   tau_decay {p.tau_decay:g} s   fs {p.fs:g} Hz   "
        f"lambda {p.lam:g}",
        f"t_peak {p.t_peak:.3g} s   FWHM {p.fwhm:.3g} s   baseline {p.baseline}"
        + (f" (drift scale {p.drift_scale:g} s)" if getattr(p, "drift_scale", None) else ""),
    ]
    lines += [f"{k}: {v}" for k, v in (summary or {}).items()]
    tax.text(0, 1, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=9)
    from ._atomic import _atomic_write

    fmt = path.suffix.lower().lstrip(".") or "png"
    return _atomic_write(path, lambda fh: fig.savefig(fh, format=fmt))
