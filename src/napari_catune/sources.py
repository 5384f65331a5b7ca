"""One source layer: every input kind read once, with one set of validators.

The command line (``napari_catune.cli``) and the napari readers
(``napari_catune._reader``) both open inputs here:

* traces: ``.npy`` (optionally with its ``{stem}_metadata.json`` sidecar),
  ``.npz`` and zarr arrays/groups, read a block of rows at a time
  (:func:`open_traces`), plus the pipeline outputs that
  :mod:`napari_catune.loaders` / :mod:`napari_catune.nwb` read (suite2p
  plane folders, CaImAn HDF5, NWB), wrapped in the same :class:`TraceSource`;
* movies: TIFF, HDF5 and zarr (T, Y, X) stacks (:func:`open_movie`), with the
  frame rate from TIFF metadata where the file records it (:func:`tiff_fs`).

Every problem is a :class:`SourceError` (a ``ValueError``) whose message
names the file and what to do.  Nothing is unpickled; no Qt, no napari.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .loaders import FS_KEYS, ID_KEYS, TRACE_KEYS

__all__ = [
    "SourceError", "TraceSource", "open_traces", "open_source", "check_trace_shape",
    "as_fs", "as_roi_ids", "sidecar_path", "read_sidecar", "npy_header", "is_trace_array",
    "npz_layout", "results_file_summary", "is_zarr", "open_movie", "tiff_fs", "h5_movie_key",
    "MOVIE_SUFFIXES",
]

SIDECAR = "_metadata.json"
#: file endings :func:`open_movie` reads
MOVIE_SUFFIXES = (".tif", ".tiff", ".h5", ".hdf5", ".zarr")


class SourceError(ValueError):
    """An input that cannot be read as asked; the message names the file and the fix."""


# ----------------------------------------------------------------------------
# validators (one set, for the CLI and the readers)
# ----------------------------------------------------------------------------


def check_trace_shape(shape, dtype, where) -> None:
    """Traces are real numbers, (n_cells, n_frames) or (n_frames,), >= 2 frames."""
    dtype = np.dtype(dtype)
    if dtype.hasobject or dtype.kind not in "biuf":
        raise SourceError(
            f"{where}: traces must be real numbers, got dtype {dtype}; "
            "save them as float (n_cells, n_frames)"
        )
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (1, 2):
        raise SourceError(
            f"{where}: traces must have shape (n_cells, n_frames) or (n_frames,), got "
            f"{shape} ({len(shape)}-D); for a movie, extract ROI traces first "
            "(napari-catune extract MOVIE LABELS -o traces.npz)"
        )
    n = 1 if len(shape) == 1 else shape[0]
    if n < 1 or shape[-1] < 2:
        raise SourceError(
            f"{where}: traces have shape {shape}; need (n_cells, n_frames) with "
            ">= 1 cell and >= 2 frames"
        )


def is_trace_array(shape, dtype) -> bool:
    """Whether ``check_trace_shape`` would accept it (no exception)."""
    try:
        check_trace_shape(shape, dtype, "")
    except SourceError:
        return False
    return True


def as_fs(value, where) -> float | None:
    """A sampling rate in Hz (one positive finite number), or None for None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise SourceError(f"{where}: sampling rate must be one number of Hz, got {value!r}")
    try:
        fs = float(np.asarray(value).reshape(()))
    except (TypeError, ValueError):
        raise SourceError(
            f"{where}: sampling rate must be a single number of Hz, got {value!r}"
        ) from None
    if not (math.isfinite(fs) and fs > 0):
        raise SourceError(f"{where}: sampling rate must be a positive number of Hz, got {fs}")
    return fs


def as_roi_ids(value, n: int, where) -> np.ndarray:
    """ROI ids: n unique non-negative integers; 1..n for None.

    Ids are row names here, so 0-based ids are accepted; a Labels image needs
    ids >= 1 (0 is its background), which the napari reader arranges
    (:func:`label_ids`).  Duplicate ids are refused: a row could not be named.
    """
    if value is None:
        return np.arange(1, n + 1, dtype=np.int64)
    ids = np.asarray(value)
    if ids.ndim != 1 or ids.shape[0] != n:
        raise SourceError(
            f"{where}: roi_ids must be a list of {n} ids (one per trace), got shape {ids.shape}"
        )
    if ids.dtype.kind == "f" and np.all(np.isfinite(ids)) and np.all(ids == np.round(ids)):
        ids = ids.astype(np.int64)
    if ids.dtype.kind not in "iu":
        raise SourceError(f"{where}: roi_ids must be integers, got dtype {ids.dtype}")
    ids = ids.astype(np.int64)
    if n and ids.min() < 0:
        raise SourceError(
            f"{where}: roi_ids must be >= 0, got minimum {ids.min()}"
        )
    uniq, counts = np.unique(ids, return_counts=True)
    if uniq.size != n:
        dup = uniq[counts > 1]
        shown = ", ".join(str(int(i)) for i in dup[:5]) + (", ..." if dup.size > 5 else "")
        raise SourceError(
            f"{where}: roi_ids must be unique; {dup.size} id(s) occur more than once "
            f"({shown}), so those rows cannot be told apart: renumber them"
        )
    return ids


def label_ids(ids) -> tuple[np.ndarray, int]:
    """``(ids + shift, shift)``: ids usable as label values (>= 1; 0 is background).

    0-based ids (row names in a traces file) are shifted by one; ids already
    >= 1 are returned as they are (shift 0).
    """
    ids = np.asarray(ids, dtype=np.int64)
    shift = int(1 - ids.min()) if ids.size and ids.min() < 1 else 0
    return ids + shift, shift


def finite_traces(arr, where, *, copy: bool = True) -> np.ndarray:
    """(n, T) float64 C-order; SourceError naming the rows with NaN/Inf.

    ``copy=False`` returns ``arr`` itself when it is already float64 C-order
    (a block the caller just read and owns): no second copy of the traces.
    """
    traces = np.array(arr, dtype=np.float64, order="C", copy=True) if copy else \
        np.ascontiguousarray(arr, dtype=np.float64)
    if traces.ndim == 1:
        traces = traces[None, :]
    # row blocks: the NaN mask of the whole array would be another n*T bytes
    step = max(1, (8 << 20) // max(1, traces.shape[1]))
    rows = np.concatenate([
        a + np.flatnonzero(~np.isfinite(traces[a:a + step]).all(axis=1))
        for a in range(0, traces.shape[0], step)
    ]) if traces.shape[0] else np.empty(0, dtype=np.int64)
    if rows.size:
        count = int(sum(np.count_nonzero(~np.isfinite(traces[r])) for r in rows))
        shown = ", ".join(str(r) for r in rows[:5]) + (", ..." if rows.size > 5 else "")
        raise SourceError(
            f"{where}: {count} non-finite values (NaN/inf) in trace rows {shown}; "
            "replace them (e.g. interpolate) before tuning"
        )
    return traces


# ----------------------------------------------------------------------------
# sidecars and headers
# ----------------------------------------------------------------------------


def sidecar_path(path) -> Path:
    """``{stem}_metadata.json`` beside ``{stem}.npy`` / ``.npz`` / ``.csv``."""
    q = Path(path)
    return q.with_name(q.stem + SIDECAR)


def read_sidecar(path) -> dict | None:
    """The JSON object of ``path``'s sidecar, None when there is none."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise SourceError(f"{side}: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise SourceError(f"{side}: expected a JSON object, got {type(meta).__name__}")
    return meta


def npy_header(fh):
    """``(shape, dtype)`` from an open ``.npy`` stream, reading the header only."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    return shape, dtype


def npz_layout(path):
    """``(trace key, fs key, ids key)`` of an ``.npz`` from names and headers only.

    None when no member looks like traces.  An array named ``traces`` is
    taken even if malformed (reading it then says why); otherwise the first
    of ``TRACE_KEYS`` that holds traces, else a single other array
    (``np.savez(f, x)`` stores it as ``arr_0``) beside fs/ids.
    """
    with zipfile.ZipFile(path) as zf:
        members = {}
        for info in zf.infolist():
            if info.filename.endswith(".npy"):
                with zf.open(info) as fh:
                    members[info.filename[:-4]] = npy_header(fh)
    if not members:
        return None
    if "traces" in members:
        key = "traces"
    else:
        key = next((k for k in TRACE_KEYS if k in members and is_trace_array(*members[k])),
                   None)
    if key is None:
        others = [k for k in members if k not in FS_KEYS + ID_KEYS and "." not in k]
        if len(others) == 1 and is_trace_array(*members[others[0]]):
            key = others[0]
        else:
            return None
    fs_key = next((k for k in FS_KEYS if k in members), None)
    id_key = next((k for k in ID_KEYS if k in members), None)
    return key, fs_key, id_key


def is_zarr(path) -> bool:
    p = Path(path)
    if p.suffix.lower() == ".zarr":
        return True
    return p.is_dir() and any((p / m).is_file() for m in (".zarray", ".zgroup", "zarr.json"))


# ----------------------------------------------------------------------------
# trace sources
# ----------------------------------------------------------------------------


@dataclass
class TraceSource:
    """Traces to process, readable a block of rows at a time."""

    path: str
    kind: str
    shape: tuple  # (n, T); 1-D input is one row
    dtype: np.dtype
    fs: float | None
    roi_ids: np.ndarray
    read: Callable[[int, int], np.ndarray]
    one_d: bool = False
    #: how another process (a Dask worker) reads rows itself:
    #: ("npy", path) / ("zarr", path, key); None when only ``read`` can
    spec: tuple | None = None
    notes: list = field(default_factory=list)
    #: which traces a pipeline loader took (e.g. CaImAn "C", suite2p "F - 0.7*Fneu")
    trace: str | None = None
    #: the sidecar's JSON object (``.npy``/``.npz``), or None
    meta: dict | None = None
    #: labels / mean image of pipeline inputs (for the napari readers)
    extra: dict = field(default_factory=dict)
    #: time of the first frame, s (an NWB series' starting_time / first timestamp)
    t0: float = 0.0
    #: irregular frame times of an NWB series (kept in the outputs), else None
    timestamps: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.shape[0]

    @property
    def T(self) -> int:
        return self.shape[1]

    def load(self) -> np.ndarray:
        """All rows as (n, T) float64; SourceError naming non-finite rows.

        An on-disk source (``spec``) reads a fresh array, converted in place
        of a second copy; an in-memory one is copied (its rows stay intact).
        """
        return finite_traces(self.read(0, self.n), self.path, copy=self.spec is None)


def read_spec_rows(spec, a: int, b: int) -> np.ndarray:
    """Rows a:b of an on-disk source, as a 2-D array (runs on Dask workers too)."""
    if spec[0] == "npy":
        mm = np.load(spec[1], mmap_mode="r", allow_pickle=False)
        try:
            # a copy, then drop the map: mapped pages would count as resident
            return np.array(mm.reshape(1, -1) if mm.ndim == 1 else mm[a:b])
        finally:
            del mm
    if spec[0] == "zarr":
        import zarr

        node = zarr.open(spec[1], mode="r")
        arr = node[spec[2]] if spec[2] is not None else node
        block = np.asarray(arr[a:b] if arr.ndim == 2 else arr[:])
        return block.reshape(1, -1) if block.ndim == 1 else block
    raise ValueError(f"unknown source spec {spec!r}")


# a sidecar's sampling rate, in Hz: ours (and the CaTune web app's) first,
# then the names the pipelines use for the same number (suite2p/OASIS/CaLab
# ``fs``, CaImAn ``fr``, and the common ``frame_rate``/``sampling_rate``/``fps``)
SIDECAR_FS_KEYS = ("sampling_rate_hz", "fs", "fr", "frame_rate", "sampling_rate", "fps")
# ... or as the time between frames, read only with its unit in the name (a bare
# ``frame_period``/``frame_interval`` could be s or ms -- ScanImage writes s,
# Bruker/Prairie ms -- and is refused), and ``dt`` in s: the unit of CaTune's
# own ``ar2_coefficients.dt`` (dt = 1/fs in the parameter files) and of SI
# time steps.  seconds per unit:
SIDECAR_PERIOD_KEYS = {
    "frame_period_s": 1.0, "frame_interval_s": 1.0, "sampling_interval_s": 1.0,
    "dt_s": 1.0, "dt": 1.0,
    "frame_period_ms": 1e-3, "frame_interval_ms": 1e-3, "sampling_interval_ms": 1e-3,
    "dt_ms": 1e-3,
}
# (a period or interval only of frames or samples: "inter_trial_interval_s" or
# "line_period_s" in a sidecar are other clocks, not a rate read wrongly)
_RATE_LIKE = re.compile(r"rate|fps|freq|^fs|hz$|(frame|sampl\w*)_?(period|interval)|^dt(_|$)",
                        re.IGNORECASE)


def _sidecar_period_fs(value, key: str, side) -> float:
    """The rate of a period ``value`` under ``key`` (SIDECAR_PERIOD_KEYS)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise SourceError(f"{side} {key!r} must be a positive number of "
                          f"{'ms' if SIDECAR_PERIOD_KEYS[key] < 1 else 's'} between frames, "
                          f"got {value!r}")
    return 1.0 / (float(value) * SIDECAR_PERIOD_KEYS[key])


#: Two of a sidecar's rate keys that differ by at most this (relative) are one
#: rate written twice: a nominal rate beside the measured one (NTSC 30 vs
#: 29.97 Hz, 0.1 %; 60 vs 59.94; a resonant scanner's 30 vs 30.048, 0.16 %).
#: Real disagreements (another zoom or line count, 15 vs 30, 30 vs 31.25 Hz)
#: are 4 % and more apart; a 0.5 % rate error moves a 1 s decay by 5 ms (a
#: sixth of a frame at 30 Hz), far inside the decay's own estimation error.
SIDECAR_FS_REL_TOL = 5e-3


def _percent(x: float) -> str:
    """A percentage as people write it: 0.1, 1.01, 4.17, 100, 2400."""
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


def sidecar_fs(meta: dict, side, notes: list | None = None) -> float | None:
    """The sampling rate (Hz) a sidecar (a traces ``.npy``'s or a movie
    ``.npy``'s ``_metadata.json``) records under any of ``SIDECAR_FS_KEYS``,
    or as a period under one of ``SIDECAR_PERIOD_KEYS``.

    Keys within :data:`SIDECAR_FS_REL_TOL` of each other are one rate
    (``sampling_rate_hz`` 30 beside ``fps`` 29.97).  The one used:
    ``sampling_rate_hz`` (the canonical key) when it is one of them, else a
    period key (a time between frames), else the first key in the file.
    Unless they agree within the parameter file's tolerance, a note naming
    the keys and which was used goes to ``notes`` (logged when ``notes`` is
    None).  Two that disagree by more, or a rate or period under
    another name (``framerate``, ``frame_rate_ms``, ``frame_period`` without
    its unit ...) are refused: a rate read wrongly, or not at all, would
    silently run at the parameter file's rate.
    """
    from .params import fs_matches

    found = [(k, as_fs(meta[k], f"{side} {k!r}") if k in SIDECAR_FS_KEYS
              else _sidecar_period_fs(meta[k], k, side))
             for k in meta if (k in SIDECAR_FS_KEYS or k in SIDECAR_PERIOD_KEYS)
             and meta[k] is not None]  # (in the file's order)

    def said(k, v):
        return f"{k} = {meta[k]!r}" + ("" if k in SIDECAR_FS_KEYS else f" ({v:.6g} Hz)")

    if found:
        lo, hi = min(v for _, v in found), max(v for _, v in found)
        apart = _percent(100 * (hi / lo - 1))
        count = {2: "two", 3: "three"}.get(len(found), str(len(found)))
        if hi > lo * (1 + SIDECAR_FS_REL_TOL):
            raise SourceError(
                f"{side} records {count} sampling rates {apart} % apart ("
                + ", ".join(said(k, v) for k, v in found)
                + f"), more than the {100 * SIDECAR_FS_REL_TOL:g} % of one rate written twice; "
                "keep the right one, "
                "as 'sampling_rate_hz', and remove the other" + ("s" if len(found) > 2 else ""))
        periods = [kv for kv in found if kv[0] in SIDECAR_PERIOD_KEYS]
        if any(k == "sampling_rate_hz" for k, _ in found):
            (key, fs), why = next(kv for kv in found if kv[0] == "sampling_rate_hz"), \
                "the canonical key"
        elif periods:
            (key, fs), why = periods[0], "a time between frames"
        else:
            (key, fs), why = found[0], "the first in the file"
        if any(not fs_matches(v, fs) for _, v in found):
            keys = [said(k, v) for k, v in found]
            note = (f"{side} records one sampling rate under {count} keys {apart} % apart, "
                    + ", ".join(keys[:-1]) + f" and {keys[-1]}: "
                    f"{fs:.6g} Hz from {key} is used, {why}")
            if notes is None:
                logging.getLogger(__name__).info("%s", note)
            else:
                notes.append(note)
        return fs
    odd = [k for k in meta if isinstance(k, str) and _RATE_LIKE.search(k)
           and k not in SIDECAR_FS_KEYS and meta[k] is not None
           and not isinstance(meta[k], (dict, list))]
    if odd:
        raise SourceError(
            f"{side}: key {odd[0]!r} is not read as the sampling rate (its unit is not known "
            f"from its name); name the rate in Hz 'sampling_rate_hz' (or one of "
            f"{', '.join(SIDECAR_FS_KEYS[1:])}), or the time between frames with its unit: "
            "'frame_period_s', 'frame_period_ms' (or frame_interval_/sampling_interval_ s/ms, "
            "'dt' in s)")
    return None


def _sidecar_values(path: Path, n: int, notes: list | None = None):
    meta = read_sidecar(path)
    if meta is None:
        return None, None, None
    side = sidecar_path(path).name
    fs = sidecar_fs(meta, side, notes)
    ids = meta.get("roi_ids")
    ids = None if ids is None else as_roi_ids(np.asarray(ids), n, f"{side} 'roi_ids'")
    for key, size in (("num_cells", n),):
        if key in meta and meta[key] != size:
            raise SourceError(
                f"{side} says {key} = {meta[key]!r} but {path.name} has {size} traces; "
                "the two files do not belong together"
            )
    return fs, ids, meta


def _sidecar_clock(path: Path, meta, T: int) -> dict:
    """``t0`` and ``timestamps`` of a results file's sidecar (``start_time_s``,
    ``timestamps_s``: the time axis of an NWB input it was made from), so the
    file opened again as traces keeps its clock; {} without them."""
    if not meta or ("start_time_s" not in meta and "timestamps_s" not in meta):
        return {}
    side = sidecar_path(path).name
    try:
        t0 = float(meta.get("start_time_s", 0.0))
        ts = meta.get("timestamps_s")
        ts = None if ts is None else np.asarray(ts, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        t0, ts = math.nan, None
    if not math.isfinite(t0) or (ts is not None and (ts.shape != (T,)
                                                     or not np.isfinite(ts).all())):
        raise SourceError(f"{side}: 'start_time_s' / 'timestamps_s' are not a time axis of "
                          f"{T} frames; fix or remove them")
    return {"t0": float(ts[0]) if ts is not None else t0, "timestamps": ts}


def _open_npy(path: Path) -> TraceSource:
    try:
        mm = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e) or "bject" in str(e):
            raise SourceError(
                f"{path}: holds Python objects, not numbers (needs a numeric .npy)"
            ) from None
        raise SourceError(f"{path}: truncated or not a .npy file ({e})") from None
    except (OSError, EOFError) as e:
        raise SourceError(f"{path}: truncated or not a .npy file ({e})") from None
    shape, dtype = mm.shape, mm.dtype
    del mm
    _refuse_results(path)  # the deconvolved activity is not fluorescence
    check_trace_shape(shape, dtype, path)
    n = 1 if len(shape) == 1 else shape[0]
    notes: list = []
    fs, ids, meta = _sidecar_values(path, n, notes)
    if meta is not None and "num_timepoints" in meta and meta["num_timepoints"] != shape[-1]:
        raise SourceError(
            f"{sidecar_path(path).name} says num_timepoints = {meta['num_timepoints']!r} but "
            f"{path.name} has {shape[-1]} frames; the two files do not belong together"
        )
    spec = ("npy", str(path.resolve()))
    return TraceSource(
        str(path), "npy", (n, int(shape[-1])), np.dtype(dtype), fs,
        as_roi_ids(None, n, path) if ids is None else ids,
        read=lambda a, b: read_spec_rows(spec, a, b), one_d=len(shape) == 1, spec=spec,
        meta=meta, trace=_sidecar_trace(meta), notes=notes,
        **_sidecar_clock(path, meta, int(shape[-1])),
    )


#: how a napari-catune results sidecar (``results.results_metadata``) starts its
#: ``content``: the GUI's "deconvolved activity (napari-catune)...", the CLI's
#: "deconvolved activity"; ``extract``'s traces say "ROI traces ..."
RESULTS_CONTENT = "deconvolved activity"


def _results_npz_summary(path) -> str | None:
    try:
        with zipfile.ZipFile(path) as zf:
            names = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
            shape = None
            if "activity" in names:
                with zf.open("activity.npy") as fh:
                    shape = npy_header(fh)[0]
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError):
        return None
    if "activity" not in names:
        return None
    if "converged" not in names:  # the napari writer's: features.converged, a format tag
        try:
            from .results import FORMAT

            with np.load(path, allow_pickle=False) as z:
                if "format" not in z.files or str(z["format"]) != FORMAT:
                    return None
        except (OSError, EOFError, ValueError, KeyError):
            return None
    size = (f" of {shape[0]} cells x {shape[-1]} frames" if shape is not None and len(shape) == 2
            else "")
    held = ", ".join(n for n in ("activity", "fit", "baseline", "converged", "iterations",
                                 "skipped", "roi_ids", "fs", "params") if n in names)
    return f"{held}{size}"


def _results_sidecar_summary(path) -> str | None:
    side = sidecar_path(path)
    try:
        if not side.is_file() or side.stat().st_size > (64 << 20):
            return None
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (ValueError, OSError, UnicodeDecodeError):
        return None
    content = meta.get("content") if isinstance(meta, dict) else None
    if not (isinstance(content, str) and content.startswith(RESULTS_CONTENT)):
        return None
    n, t = meta.get("num_cells"), meta.get("num_timepoints")
    size = f" of {n} cells x {t} frames" if isinstance(n, int) and isinstance(t, int) else ""
    return f"the deconvolved activity{size}; {side.name} says so"


def results_file_summary(path) -> str | None:
    """What a napari-catune results file holds (e.g. "activity, fit, ... of 3
    cells x 300 frames"), else None.

    A results ``.npz`` has ``activity`` and the ``format`` tag (or the CLI's
    ``converged``); a results ``.npy``'s sidecar says its ``content`` is the
    deconvolved activity.  Peeks only (zip names, headers, the sidecar); never raises.
    """
    try:
        low = os.fspath(path).lower()
        if low.endswith(".npz"):
            return _results_npz_summary(path)
        if low.endswith(".npy"):
            return _results_sidecar_summary(path)
    except Exception:  # unreadable: not recognisably ours
        return None
    return None


def _refuse_results(path) -> None:
    """SourceError naming a napari-catune results file (``deconvolve -o
    res.npz``/``.npy``, the napari writer) as such, with what it holds."""
    summary = results_file_summary(path)
    if summary is None:
        return
    how = ("napari_catune.load_results(path), or np.load(path)['activity'] (cells x frames)"
           if os.fspath(path).lower().endswith(".npz") else
           "np.load(path) (cells x frames; ids and fs in its _metadata.json)")
    raise SourceError(
        f"{path} is a napari-catune results file ({summary}), not traces: read it with "
        f"{how}; give the traces it was made from to deconvolve or estimate"
    )


def _open_npz(path: Path) -> TraceSource:
    try:
        layout = npz_layout(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise SourceError(f"{path}: truncated or not an .npz archive ({e})") from None
    if layout is None:
        _refuse_results(path)
        raise SourceError(
            f"{path}: no traces found; name the array one of {', '.join(TRACE_KEYS)} "
            "(or store a single (n_cells, n_frames) array)"
        )
    key, fs_key, id_key = layout
    try:
        with np.load(path, allow_pickle=False) as z:
            arr = z[key]
            fs_raw = z[fs_key] if fs_key else None
            ids_raw = z[id_key] if id_key else None
            # napari-catune extract's: the label image and what the traces are
            lab = z["labels"] if key != "labels" and "labels" in z.files else None
            said = z["input_traces"] if "input_traces" in z.files else None
    except ValueError as e:
        raise SourceError(f"{path}: holds Python objects or is damaged ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise SourceError(f"{path}: truncated or damaged ({e})") from None
    where = f"{path}[{key!r}]"
    check_trace_shape(arr.shape, arr.dtype, where)
    one_d = arr.ndim == 1
    arr2 = arr.reshape(1, -1) if one_d else arr
    n = arr2.shape[0]
    fs = as_fs(fs_raw, f"{path}[{fs_key!r}]") if fs_key else None
    ids = as_roi_ids(ids_raw, n, f"{path}[{id_key!r}]") if id_key else None
    notes: list = []
    s_fs, s_ids, meta = _sidecar_values(path, n, notes)
    ids = ids if ids is not None else (s_ids if s_ids is not None else as_roi_ids(None, n, path))
    extra = {}
    if lab is not None and lab.ndim == 2 and lab.dtype.kind in "iu" and np.isin(ids, lab).all():
        extra["labels"] = lab  # the footprints of these ROIs (results .nwb)
    trace = str(said) if said is not None and said.ndim == 0 and said.dtype.kind == "U" else None
    return TraceSource(
        str(path), "npz", arr2.shape, arr.dtype, fs if fs is not None else s_fs, ids,
        read=lambda a, b: arr2[a:b], one_d=one_d, meta=meta,
        trace=trace or _sidecar_trace(meta), extra=extra, notes=[] if fs is not None else notes,
        **_sidecar_clock(path, meta, arr2.shape[1]),
    )


def _sidecar_trace(meta) -> str | None:
    """What the traces are, from the ``traces`` entry of ``napari-catune extract``'s
    sidecar (results sidecars name their *input* ``input_traces``: not read here)."""
    said = (meta or {}).get("traces")
    return said if isinstance(said, str) and said else None


def _zarr_open(path: Path):
    try:
        import zarr
    except ImportError:
        raise SourceError(
            f"{path}: reading zarr needs the zarr package: pip install 'napari-catune[zarr]'"
        ) from None
    try:
        return zarr.open(str(path), mode="r")
    except Exception as e:
        raise SourceError(f"{path}: not a readable zarr array or group ({e})") from None


def _open_zarr(path: Path) -> TraceSource:
    node = _zarr_open(path)
    key = None
    fs = None
    ids = None
    if hasattr(node, "array_keys"):  # a group
        keys = list(node.array_keys())
        key = next((k for k in TRACE_KEYS if k in keys), None)
        if key is None:
            arrays = [k for k in keys if node[k].ndim in (1, 2)
                      and k not in FS_KEYS + ID_KEYS]
            if len(arrays) != 1:
                raise SourceError(
                    f"{path}: no traces found; name the array one of {', '.join(TRACE_KEYS)} "
                    f"(found: {', '.join(sorted(keys)) or 'nothing'})"
                )
            key = arrays[0]
        arr = node[key]
        fs_key = next((k for k in FS_KEYS if k in keys), None)
        if fs_key:
            fs = as_fs(node[fs_key][...], f"{path}/{fs_key}")
        id_key = next((k for k in ID_KEYS if k in keys), None)
        if id_key:
            ids_raw = np.asarray(node[id_key][...])
        else:
            ids_raw = None
        attrs = dict(node.attrs)
    else:
        arr = node
        ids_raw = None
        attrs = {}
    attrs.update(dict(arr.attrs))
    if fs is None:
        v = next((attrs[k] for k in FS_KEYS if k in attrs), None)
        fs = as_fs(v, f"{path} attribute")
    check_trace_shape(arr.shape, arr.dtype, path)
    one_d = arr.ndim == 1
    n = 1 if one_d else arr.shape[0]
    ids = as_roi_ids(ids_raw, n, f"{path}/{id_key}" if ids_raw is not None else path)
    spec = ("zarr", str(path.resolve()), key)
    return TraceSource(
        str(path), "zarr", (n, int(arr.shape[-1])), np.dtype(arr.dtype), fs, ids,
        read=lambda a, b: read_spec_rows(spec, a, b), one_d=one_d, spec=spec,
    )


def from_pipeline(data, kind: str) -> TraceSource:
    """Wrap a ``loaders.PipelineData`` (suite2p, CaImAn, NWB, Minian) as a TraceSource."""
    traces = data.traces
    check_trace_shape(traces.shape, traces.dtype, data.source)
    return TraceSource(
        str(data.source), kind, tuple(traces.shape), traces.dtype, data.fs,
        np.asarray(data.roi_ids), read=lambda a, b: traces[a:b],
        notes=list(getattr(data, "notes", [])), trace=getattr(data, "kind", None) or None,
        extra={"labels": getattr(data, "labels", None),
               "mean_image": getattr(data, "mean_image", None),
               "nwb_ids": getattr(data, "nwb_ids", None)},
        t0=float(getattr(data, "t0", 0.0) or 0.0), timestamps=getattr(data, "timestamps", None),
    )


def open_traces(path) -> TraceSource:
    """Open a traces file: ``.npy`` (+ sidecar), ``.npz`` or a zarr array/group."""
    p = Path(path)
    if not p.exists():
        raise SourceError(f"input {p} does not exist")
    low = p.name.lower()
    if is_zarr(p):
        return _open_zarr(p)
    if low.endswith(".npy"):
        return _open_npy(p)
    if low.endswith(".npz"):
        return _open_npz(p)
    raise SourceError(f"{p}: not a traces file; give a .npy, .npz or zarr array")


def open_source(path, *, allow_pickle: bool = False, caiman_trace: str = "auto",
                all_rois: bool = False, only_accepted: bool | None = None,
                only_cells: bool | None = None, series: str | None = None) -> TraceSource:
    """Open any traces input: the files of :func:`open_traces`, a suite2p plane
    folder, a Minian output folder, a CaImAn HDF5 file or an NWB file.

    One rule for every pipeline: only the ROIs it classed as cells (suite2p's
    ``iscell``, an NWB table's ``iscell``/``keep`` column, CaImAn's accepted
    components), with a note giving the counts; ``all_rois=True`` keeps every
    ROI.  ``only_cells``/``only_accepted`` (default: ``not all_rois``) set it
    per pipeline.  ``caiman_trace`` ("auto": C + YrA where stored, else C;
    "C", "C+YrA" or "F_dff") chooses CaImAn's traces.  The choice is recorded in ``TraceSource.trace`` and
    ``notes``.  ``series`` (NWB only) names the ``RoiResponseSeries`` (see
    :func:`napari_catune.nwb.load_nwb`).
    """
    if series is not None and not Path(path).name.lower().endswith(".nwb"):
        raise SourceError(f"a series ({series!r}) can only be chosen in an NWB file (.nwb); "
                          f"{Path(path).name} is not one")
    if only_cells is None:
        only_cells = not all_rois
    if only_accepted is None:
        only_accepted = not all_rois
    p = Path(path)
    if not p.exists():
        raise SourceError(f"input {p} does not exist")
    low = p.name.lower()
    try:
        if p.is_dir() and (p / "C.zarr").is_dir():
            from .loaders import load_minian_data

            return from_pipeline(load_minian_data(p), "minian")
        if p.is_dir() and not is_zarr(p):
            from .loaders import find_suite2p_plane, load_suite2p

            if find_suite2p_plane(p) is not None or any(p.glob("plane*")):
                return from_pipeline(load_suite2p(p, allow_pickle=allow_pickle,
                                                          only_cells=only_cells), "suite2p")
            present = [f for f in ("F.npy", "Fneu.npy", "iscell.npy", "stat.npy", "ops.npy")
                       if (p / f).is_file()]
            if present:  # a suite2p plane folder with a file missing
                missing = " and ".join(f for f in ("F.npy", "Fneu.npy") if f not in present)
                raise SourceError(
                    f"{p}: {missing} {'is' if ' and ' not in missing else 'are'} missing "
                    f"(a suite2p plane folder needs F.npy and Fneu.npy; found "
                    f"{', '.join(present)})"
                )
            raise SourceError(
                f"{p} is a folder but neither a suite2p plane folder (F.npy, Fneu.npy), "
                "a Minian output folder (C.zarr) nor a zarr array"
            )
        if is_zarr(p) or low.endswith((".npy", ".npz")):
            return open_traces(p)
        if low.endswith((".hdf5", ".h5")):
            from .loaders import load_caiman_data

            return from_pipeline(load_caiman_data(p, trace=caiman_trace,
                                                  only_accepted=only_accepted),
                                 "caiman")
        if low.endswith(".nwb"):
            from .nwb import load_nwb

            chosen = {} if series is None else {"series": series}
            return from_pipeline(load_nwb(p, only_cells=only_cells, **chosen), "NWB")
    except SourceError:
        raise
    except (ValueError, FileNotFoundError, ImportError, OSError, KeyError) as e:
        raise SourceError(str(e)) from None
    if low.endswith((".tif", ".tiff")):
        raise SourceError(
            f"{p} is a movie, not ROI traces: extract them first with napari-catune extract "
            f"{p} MASKS -o traces.npz (MASKS: a label image of the ROIs), then use traces.npz"
        )
    raise SourceError(
        f"{p}: unsupported input; give a traces .npy/.npz, a suite2p plane folder, "
        "a Minian folder, a CaImAn .hdf5 file, an NWB file (.nwb) or a zarr array"
    )


# ----------------------------------------------------------------------------
# movies
# ----------------------------------------------------------------------------


def _fs_from_interval(interval) -> float | None:
    try:
        dt = float(interval)
    except (TypeError, ValueError):
        return None
    return 1.0 / dt if math.isfinite(dt) and dt > 0 else None


def tiff_fs(path) -> float | None:
    """The frame rate recorded in a TIFF, or None.

    Read from ImageJ metadata (``finterval`` in seconds, else ``fps``),
    OME-XML (``Pixels/@TimeIncrement`` with its ``TimeIncrementUnit``,
    seconds by default) and ScanImage's frame data (:func:`_scanimage_fs`),
    as tifffile exposes them.  Needs tifffile (napari
    installs it); None without it.
    """
    try:
        import tifffile
    except ImportError:
        return None
    try:
        with tifffile.TiffFile(path) as tf:
            return tiff_file_fs(tf)
    except Exception:  # unreadable metadata: fs unknown, not an error
        return None


def tiff_file_fs(tf) -> float | None:
    """:func:`tiff_fs` of an open ``tifffile.TiffFile`` (None when unreadable)."""
    try:
        ij = tf.imagej_metadata or {}
        fs = _fs_from_interval(ij.get("finterval"))
        if fs is None and _positive_number(ij.get("fps")):
            fs = float(ij["fps"])
        if fs is None and tf.is_ome and tf.ome_metadata:
            fs = _ome_fs(tf.ome_metadata)
        if fs is None and tf.is_scanimage:
            fs = _scanimage_fs(tf)
        return fs
    except Exception:  # unreadable metadata: fs unknown, not an error
        return None


def _scanimage_fs(tf) -> float | None:
    """The rate of a ScanImage (2016 and later) file's saved frames.

    From its non-varying frame data (the BigTIFF header, else the first
    page's Software tag): ``SI.hRoiManager.scanFrameRate`` divided by the
    frames averaged into each saved one (``SI.hScan2D.logAverageFactor``);
    a volume (``SI.hStackManager`` with several slices) is sampled at
    ``SI.hRoiManager.scanVolumeRate`` per plane.
    """
    import tifffile

    data = (tf.scanimage_metadata or {}).get("FrameData") or {}
    if "SI.hRoiManager.scanFrameRate" not in data:
        software = tf.pages.first.software or ""
        if not software.startswith("SI."):
            return None
        data = tifffile.matlabstr2py(software)
    slices = data.get("SI.hStackManager.actualNumSlices",
                      data.get("SI.hStackManager.numSlices", 1))
    try:
        if _positive_number(slices) and float(slices) > 1:
            rate = data.get("SI.hRoiManager.scanVolumeRate")
            return float(rate) if _positive_number(rate) else None
        rate = data.get("SI.hRoiManager.scanFrameRate")
        avg = data.get("SI.hScan2D.logAverageFactor", 1)
        avg = float(avg) if _positive_number(avg) else 1.0
        return float(rate) / avg if _positive_number(rate) else None
    except (TypeError, ValueError):
        return None


def _positive_number(v) -> bool:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return False
    return math.isfinite(f) and f > 0


_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "min": 60.0,
               "h": 3600.0}


def _ome_fs(xml: str) -> float | None:
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] == "Pixels" and el.get("TimeIncrement"):
            scale = _TIME_UNITS.get(el.get("TimeIncrementUnit", "s"))
            if scale is None:
                return None
            try:
                return _fs_from_interval(float(el.get("TimeIncrement")) * scale)
            except ValueError:
                return None
    return None


def h5_movie_key(f) -> str | None:
    """The (T, Y, X) numeric dataset of an open HDF5 file, or None.

    Tried in order: ``mov`` (CaImAn memmaps saved as HDF5), ``data``,
    ``imaging`` and ``movie``; else the largest 3-D numeric dataset.
    """
    import h5py

    found: list[tuple[int, str]] = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.ndim == 3 and obj.dtype.kind in "biuf":
            found.append((int(np.prod(obj.shape)), name))

    f.visititems(visit)
    names = {name for _, name in found}
    for key in ("mov", "data", "imaging", "movie"):
        if key in names:
            return key
    return max(found)[1] if found else None


def _h5py(path):
    try:
        import h5py
    except ImportError:
        raise SourceError(
            f"{path}: reading HDF5 needs h5py: pip install 'napari-catune[h5]'"
        ) from None
    return h5py


@dataclass
class Movie:
    """A (T, Y, X) movie: ``data`` is array-like (an h5py/zarr dataset reads lazily)."""

    path: str
    data: object
    fs: float | None
    key: str | None = None
    _closer: Callable | None = None
    #: what was read how (e.g. which of a sidecar's two rate keys was used)
    notes: list = field(default_factory=list)

    @property
    def shape(self):
        return tuple(self.data.shape)

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
            self._closer = None


def open_movie(path, key: str | None = None, *, header_only: bool = False) -> Movie:
    """Open a (T, Y, X) movie: TIFF, HDF5 (``key`` or found), zarr or ``.npy``.

    HDF5 and zarr stay on disk (datasets read frame blocks on indexing);
    call :meth:`Movie.close` when done.  A TIFF is memory-mapped when its
    pages are stored plainly, else read whole; ``header_only`` gives its shape
    and dtype without reading pixels (``Movie.data`` then holds no data).
    fs comes from TIFF metadata or an
    HDF5/zarr attribute named like ``fs``/``frame_rate``; None when absent.
    """
    p = Path(path)
    if not p.exists():
        raise SourceError(f"movie {p} does not exist")
    low = p.name.lower()
    if low.endswith((".h5", ".hdf5")):
        h5py = _h5py(p)
        try:
            f = h5py.File(p, "r")
        except OSError as e:
            raise SourceError(f"{p}: not an HDF5 file ({e})") from None
        try:
            k = key or h5_movie_key(f)
            d = f.get(k) if k is not None else None
            if not isinstance(d, h5py.Dataset):
                raise SourceError(
                    f"{p}: no (frames, height, width) dataset "
                    + (f"at {key!r}" + (" (a group)" if d is not None else "") if key
                       else "found")
                    + f"; datasets in the file: {_h5_datasets(f, h5py)}; name one with "
                    "--movie-key"
                )
            if d.ndim != 3:
                raise SourceError(f"{p}[{k!r}]: a movie is (frames, height, width), got {d.shape}")
            attrs = {**dict(f.attrs), **dict(d.attrs)}
            v = next((attrs[a] for a in FS_KEYS if a in attrs), None)
            fs = as_fs(v, f"{p}[{k!r}] attribute") if v is not None else None
        except BaseException:
            f.close()
            raise
        return Movie(str(p), d, fs, k, f.close)
    if is_zarr(p):
        node = _zarr_open(p)
        if hasattr(node, "array_keys"):
            keys = list(node.array_keys())
            k = key or next((a for a in ("mov", "data", "movie") if a in keys), None)
            if k is None:
                three = [a for a in keys if node[a].ndim == 3]
                k = three[0] if len(three) == 1 else None
            if k is None or k not in keys:
                listed = ", ".join(f"{a} {tuple(node[a].shape)}" for a in sorted(keys))
                raise SourceError(
                    f"{p}: no (frames, height, width) array "
                    + (f"named {key!r}" if key else "found")
                    + f"; arrays in the group: {listed or 'none'}; name one with --movie-key"
                )
            arr, attrs = node[k], {**dict(node.attrs), **dict(node[k].attrs)}
        else:
            arr, attrs, k = node, dict(node.attrs), None
        if arr.ndim != 3:
            raise SourceError(f"{p}: a movie is (frames, height, width), got {arr.shape}")
        v = next((attrs[a] for a in FS_KEYS if a in attrs), None)
        return Movie(str(p), arr, as_fs(v, f"{p} attribute") if v is not None else None, k)
    if low.endswith((".tif", ".tiff")):
        data = _open_tiff(p, header_only=header_only)
        return Movie(str(p), data, tiff_fs(p))
    if low.endswith(".npy"):
        try:
            data = np.load(p, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as e:
            raise SourceError(f"{p}: not a numeric .npy ({e})") from None
        if data.ndim != 3:
            raise SourceError(f"{p}: a movie is (frames, height, width), got {data.shape}")
        meta = read_sidecar(p) or {}
        # (the traces sidecar's keys: a rate in Hz, or a period with its unit)
        notes: list = []
        fs = sidecar_fs(meta, sidecar_path(p).name, notes)
        return Movie(str(p), data, fs, notes=notes)
    raise SourceError(f"{p}: unsupported movie; give a .tif, .h5/.hdf5, zarr or .npy stack")


def _h5_datasets(f, h5py) -> str:
    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and len(found) < 20:
            found.append(f"{name} {tuple(obj.shape)}")

    f.visititems(visit)
    return ", ".join(found) or "none"


@dataclass
class _Header:
    """Shape and dtype of a movie whose pixels were not read."""

    shape: tuple
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)


def _open_tiff(p: Path, *, header_only: bool = False):
    try:
        import tifffile
    except ImportError:
        raise SourceError(f"{p}: reading TIFF needs tifffile: pip install tifffile") from None
    try:
        with tifffile.TiffFile(p) as tf:
            if not tf.series:
                raise SourceError(f"{p}: not a readable TIFF (no image data)")
            series = tf.series[0]
            shape = tuple(int(s) for s in series.shape)
            dtype = np.dtype(series.dtype)
    except SourceError:
        raise
    except Exception as e:
        raise SourceError(f"{p}: not a readable TIFF ({type(e).__name__}: {e})") from None
    squeezed = tuple(s for s in shape if s != 1)
    if len(squeezed) != 3:
        what = ("a single image, not a movie" if len(squeezed) <= 2 else
                f"{len(squeezed)}-D (e.g. channels or z-planes): save one (frames, height, "
                "width) stack per channel/plane")
        raise SourceError(
            f"{p}: a movie is (frames, height, width), got shape {shape}: {what}"
        )
    if header_only:
        return _Header(squeezed, dtype)
    try:
        data = tifffile.memmap(p, mode="r")  # plain (uncompressed, contiguous) pages
    except Exception:
        data = None
    if data is None:
        try:
            data = tifffile.imread(p)
        except MemoryError:
            need = int(np.prod(shape)) * dtype.itemsize
            raise SourceError(
                f"{p}: too large to read into memory ({need / 1e9:.1f} GB, compressed "
                "TIFF pages cannot be memory-mapped); save it uncompressed or as HDF5/zarr"
            ) from None
        except Exception as e:
            raise SourceError(f"{p}: not a readable TIFF ({type(e).__name__}: {e})") from None
    return np.reshape(data, squeezed)


def open_labels(path) -> np.ndarray:
    """A (Y, X) integer label image (ROIs): TIFF, PNG (imageio), ``.npy`` or ``.npz``.

    A cellpose ``_seg.npy`` is a pickle and is refused with the way out
    (save the masks as TIFF/PNG or a plain ``.npy``).
    """
    p = Path(path)
    if not p.exists():
        raise SourceError(f"labels {p} does not exist")
    low = p.name.lower()
    try:
        if low.endswith(".npy"):
            arr = np.load(p, allow_pickle=False)
        elif low.endswith(".npz"):
            with np.load(p, allow_pickle=False) as z:
                key = next((k for k in ("masks", "labels") if k in z.files), None)
                if key is None and len(z.files) == 1:
                    key = z.files[0]
                if key is None:
                    raise SourceError(f"{p}: name the label image 'masks' or 'labels'")
                arr = z[key]
        elif low.endswith((".tif", ".tiff")):
            import tifffile

            arr = tifffile.imread(p)
        elif low.endswith(".png"):
            try:
                import imageio.v3 as iio
            except ImportError:
                raise SourceError(
                    f"{p}: reading PNG needs imageio: pip install imageio "
                    "(or pip install 'napari-catune[masks]')"
                ) from None
            arr = iio.imread(p)
        else:
            raise SourceError(f"{p}: unsupported label image; give .tif, .png, .npy or .npz")
    except SourceError:
        raise
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise SourceError(
                f"{p}: holds Python objects (a cellpose _seg.npy is a pickle); save the "
                "masks as a TIFF (cellpose --save_tif) or np.save(path, masks)"
            ) from None
        raise SourceError(f"{p}: not readable ({e})") from None
    except OSError as e:
        raise SourceError(f"{p}: not readable ({e})") from None
    arr = np.squeeze(np.asarray(arr))
    if arr.ndim != 2 or arr.dtype.kind not in "iub":
        raise SourceError(
            f"{p}: a label image is (height, width) integers, got shape {arr.shape} "
            f"dtype {arr.dtype}"
        )
    return arr


#: file names a segmentation tool gives its masks (cellpose: {name}_cp_masks.png/.tif)
MASK_HINTS = ("_masks", "_mask", "_labels", "_label", "_seg", "_rois", "_roi")


def looks_like_labels(shape, dtype, sample=None, name: str | None = None) -> bool:
    """A 2-D unsigned-integer image: a segmentation mask, not (n_cells, n_frames) traces.

    Decided from the header (shape, dtype), the file name and, if given, a
    ``sample`` of a few rows (never the whole file): a label image is
    image-like (both sides >= 4 pixels, aspect ratio < 20) whereas traces
    have far more frames than cells.  Given a ``sample`` (a few rows), it
    must look like masks: 0 = background and long runs of one value along a
    row (a raw uint16 trace, even a low-range or clipped one, changes from
    frame to frame), or background only; without one, a name like
    ``*_masks``/``*_labels`` decides.
    """
    dtype = np.dtype(dtype)
    if len(shape) != 2 or dtype.kind != "u" or dtype.itemsize < 2:
        return False
    a, b = (int(v) for v in shape)
    if min(a, b) < 4 or max(a, b) >= 20 * min(a, b):
        return False
    if sample is None:
        # the header alone: the file's name says it (cellpose *_cp_masks, *_labels)
        stem = Path(name or "").name.lower().rsplit(".", 1)[0]
        return any(h in stem for h in MASK_HINTS)
    arr = np.asarray(sample)
    if arr.ndim != 2 or arr.size == 0 or arr.min() != 0:
        return False
    if arr.max() == 0:
        return True  # rows of background only (a sparse mask); traces are not all 0
    # masks: long runs of one value along a row (background, cells); a raw trace,
    # even a low-range or clipped one, changes from frame to frame
    same = np.count_nonzero(arr[:, 1:] == arr[:, :-1]) / max(1, arr[:, 1:].size)
    return same >= 0.5


def label_sample(arr, rows: int = 16) -> np.ndarray:
    """Up to ``rows`` evenly spaced rows of a 2-D (memory-mapped) array."""
    idx = np.unique(np.linspace(0, arr.shape[0] - 1, min(rows, arr.shape[0])).astype(int))
    return np.asarray(arr[idx])


def npy_looks_like_labels(path) -> bool:
    """Whether a 2-D ``.npy`` is a label image: header, name and a few rows only."""
    mm = np.load(path, mmap_mode="r", allow_pickle=False)
    try:
        if mm.ndim != 2 or mm.size == 0:
            return False
        return looks_like_labels(mm.shape, mm.dtype, label_sample(mm), name=str(path))
    finally:
        del mm


def path_kind(path) -> str:
    """'zarr', 'folder', 'file' or 'missing' (for messages and dispatch)."""
    p = Path(path)
    if not os.path.exists(p):
        return "missing"
    if is_zarr(p):
        return "zarr"
    return "folder" if p.is_dir() else "file"
