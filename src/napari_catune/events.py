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
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["detect_events", "EVENT_FIELDS"]

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
