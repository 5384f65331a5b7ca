"""Discrete events from deconvolved activity: a table a lab can count and keep.

The deconvolved activity ``s`` of the CaTune model is spread over a few
neighbouring frames when a spike falls between frames or the fit is unsure of
its timing.  An *event* is a run of non-zero activity (gaps shorter than
``merge_s`` are bridged); its

* ``onset_s``: time of the run's first non-zero frame, in seconds;
* ``peak_s``: time of the run's largest frame;
* ``size``: the run's summed activity, in trace units per unit-peak kernel
  (a transient of peak height ``size`` in the trace's own units);
* ``amplitude``: ``size`` divided by the trace's *unit*, the size of a single
  isolated event.  By default the unit is the median size of the trace's
  isolated events (no other event within ``isolation_s``), which for sparse
  firing is the single-spike transient (the number CaImAn and OASIS call
  s_min is a threshold on this scale).  Pass ``unit=`` to fix it, e.g. from
  a calibration.

Events smaller than ``min_size`` (in units) are dropped.  Works on one trace
``(T,)`` or many ``(n, T)``; the result is a dict of equal-length 1-D arrays
(``roi``, ``onset_frame``, ``onset_s``, ``peak_s``, ``size``, ``amplitude``),
ready for ``pandas.DataFrame`` or a CSV.

:func:`read_event_times` reads the other direction: a CSV of known event times
per ROI (ground truth, e.g. electrophysiology), for the tuner to draw as ticks.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["detect_events", "EVENT_FIELDS", "read_event_times", "ROI_COLUMNS", "TIME_COLUMNS"]

EVENT_FIELDS = ("roi", "onset_frame", "onset_s", "peak_s", "size", "amplitude")


def _positive(name: str, value, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    ok = v >= 0 if allow_zero else v > 0
    if not (math.isfinite(v) and ok):
        need = "a non-negative" if allow_zero else "a positive"
        raise ValueError(f"{name} must be {need} finite number, got {value!r}")
    return v


def _runs(s: np.ndarray, gap: int):
    """(start, stop) frame bounds of runs of s > 0, bridging gaps < ``gap``."""
    nz = np.flatnonzero(s > 0)
    if nz.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    breaks = np.flatnonzero(np.diff(nz) > gap)
    starts = nz[np.r_[0, breaks + 1]]
    stops = nz[np.r_[breaks, nz.size - 1]] + 1
    return starts, stops


def detect_events(activity, fs, *, min_size: float = 0.0, unit=None,
                  merge_s: float = 0.05, isolation_s: float = 1.0) -> dict:
    """Event table of deconvolved activity (see the module docstring).

    Parameters
    ----------
    activity : (T,) or (n_rois, T) array_like, non-negative, finite
    fs : float, sampling rate in Hz
    min_size : float, events below this amplitude (in units) are dropped
    unit : None, float or (n_rois,) array; the size of one event per ROI.
        None: the median size of each ROI's isolated events.
    merge_s : gaps of non-zero activity shorter than this join one event
    isolation_s : an event is isolated if no other is this close (for the unit)

    Returns
    -------
    dict of 1-D arrays, keys :data:`EVENT_FIELDS`, one entry per event,
    sorted by ROI then onset; plus ``"unit"``, the unit of each ROI.
    """
    fs = _positive("fs", fs)
    min_size = _positive("min_size", min_size, allow_zero=True)
    merge_s = _positive("merge_s", merge_s, allow_zero=True)
    isolation_s = _positive("isolation_s", isolation_s, allow_zero=True)
    s = np.asarray(activity)
    if s.dtype.kind not in "biuf":
        raise ValueError(f"activity must hold real numbers, got dtype {s.dtype}")
    if s.ndim not in (1, 2) or s.size == 0:
        raise ValueError(f"activity must be (T,) or (n_rois, T) and non-empty, got shape {s.shape}")
    s = np.atleast_2d(np.asarray(s, dtype=np.float64))
    if not np.isfinite(s).all():
        raise ValueError("activity contains non-finite values (NaN or Inf)")
    n = s.shape[0]
    if unit is not None:
        units = np.broadcast_to(np.asarray(unit, dtype=np.float64), (n,)) if np.ndim(unit) <= 1 else None
        if units is None or units.shape != (n,) or not (np.isfinite(units).all() and (units > 0).all()):
            raise ValueError(f"unit must be a positive number or one per ROI ({n}), got {unit!r}")
    gap = max(1, int(round(merge_s * fs)))
    iso = isolation_s * fs
    cols = {k: [] for k in EVENT_FIELDS}
    unit_out = np.full(n, np.nan)
    for i in range(n):
        start, stop = _runs(s[i], gap)
        if start.size == 0:
            unit_out[i] = np.nan if unit is None else units[i]
            continue
        csum = np.r_[0.0, np.cumsum(s[i])]
        size = csum[stop] - csum[start]
        peak = np.array([a + int(np.argmax(s[i, a:b])) for a, b in zip(start, stop)])
        if unit is None:
            before = np.r_[np.inf, start[1:] - stop[:-1]]
            after = np.r_[start[1:] - stop[:-1], np.inf]
            lone = (before >= iso) & (after >= iso)
            pool = size[lone] if lone.sum() >= 3 else size
            u = float(np.median(pool))
        else:
            u = float(units[i])
        unit_out[i] = u
        amp = size / u
        keep = amp >= min_size
        cols["roi"].append(np.full(int(keep.sum()), i, dtype=np.int64))
        cols["onset_frame"].append(start[keep].astype(np.int64))
        cols["onset_s"].append(start[keep] / fs)
        cols["peak_s"].append(peak[keep] / fs)
        cols["size"].append(size[keep])
        cols["amplitude"].append(amp[keep])
    out = {}
    for k in EVENT_FIELDS:
        dtype = np.int64 if k in ("roi", "onset_frame") else np.float64
        out[k] = np.concatenate(cols[k]).astype(dtype) if cols[k] else np.empty(0, dtype)
    out["unit"] = unit_out
    return out


# ------------------------------------------------------------ event-time files
#: accepted names of the ROI column (case-insensitive), in order of preference
ROI_COLUMNS = ("roi", "roi_id", "cell", "neuron")
#: accepted names of the time column, in seconds (case-insensitive), in order of preference
TIME_COLUMNS = ("time_s", "spike_time_s", "t_s", "onset_s", "peak_s")


def read_event_times(path) -> dict:
    """Event times per ROI from a CSV: ``{roi id: sorted times in seconds}``.

    Layout: one event per line, with a header line naming an ROI column (one
    of :data:`ROI_COLUMNS`) and a time column in seconds from the first frame
    (one of :data:`TIME_COLUMNS`), in any order and case; other columns are
    ignored, so the events CSV written by this package (``roi_id``,
    ``onset_s``, ...) reads as is.  Separators: comma, semicolon or tab.
    Blank lines and lines starting with ``#`` are skipped.  ROI ids are
    integers (the label values); times are finite and >= 0.

    Raises ValueError naming the line and what to fix.
    """
    import csv
    from pathlib import Path

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ValueError(f"events file {str(p)!r} not found; choose an existing .csv "
                         "file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"events file {str(p)!r} could not be read as text: {e}") from None
    lines = [(i, ln) for i, ln in enumerate(text.splitlines(), start=1)
             if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ValueError(f"events file {p.name!r} is empty; it needs a header line "
                         "'roi,time_s' and one line per event")
    head_no, head = lines[0]
    sep = max((",", ";", "\t"), key=head.count)
    names = [c.strip().strip('"').strip().lower() for c in head.split(sep)]
    roi_col = next((names.index(c) for c in ROI_COLUMNS if c in names), None)
    t_col = next((names.index(c) for c in TIME_COLUMNS if c in names), None)
    if roi_col is None or t_col is None:
        missing = [what for what, col in (("an ROI column (" + ", ".join(ROI_COLUMNS) + ")",
                                           roi_col),
                                          ("a time column in seconds (" +
                                           ", ".join(TIME_COLUMNS) + ")", t_col))
                   if col is None]
        raise ValueError(f"events file {p.name!r}: the header (line {head_no}: {head.strip()!r}) "
                         f"needs {' and '.join(missing)}; e.g. 'roi,time_s'")
    out: dict = {}
    for no, row in zip((n for n, _ in lines[1:]),
                       csv.reader((ln for _, ln in lines[1:]), delimiter=sep)):
        if len(row) <= max(roi_col, t_col):
            raise ValueError(f"events file {p.name!r}, line {no}: {len(row)} field(s), but the "
                             f"header has {len(names)}; every line needs an ROI and a time")
        r_txt, t_txt = row[roi_col].strip(), row[t_col].strip()
        try:
            r_val = float(r_txt)
            if r_val != int(r_val):
                raise ValueError
            rid = int(r_val)
        except (ValueError, OverflowError):
            raise ValueError(f"events file {p.name!r}, line {no}: ROI {r_txt!r} is not an "
                             "integer ROI id (the label value)") from None
        try:
            t = float(t_txt)
        except ValueError:
            raise ValueError(f"events file {p.name!r}, line {no}: time {t_txt!r} is not a "
                             "number of seconds") from None
        if not (math.isfinite(t) and t >= 0):
            raise ValueError(f"events file {p.name!r}, line {no}: time {t_txt!r} must be a "
                             "finite number of seconds >= 0 (from the first frame)")
        out.setdefault(rid, []).append(t)
    if not out:
        raise ValueError(f"events file {p.name!r} has a header but no events")
    return {rid: np.sort(np.asarray(ts, dtype=np.float64)) for rid, ts in out.items()}
