"""The recording's clock: where the time origin ``t0`` (or irregular frame
timestamps) of an input enters the outputs, in one place.

Inside the package a frame ``k`` is at ``k / fs`` seconds from the first frame
(the solver, the tuner's plots).  An input may start at ``t0`` (an NWB series'
``starting_time`` or first timestamp) or carry irregular ``timestamps``, one
per frame; every time written out (results' ``time_s``, events' ``onset_s`` and
``peak_s``) is on the recording's clock: ``timestamps[k]`` when there are, else
``t0 + k / fs``.  Times read back (an events CSV) go the other way with
:func:`to_first_frame`.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["check_time", "frame_times", "to_first_frame", "rate_from_timestamps"]


def check_time(t0, timestamps, n_frames: int) -> tuple[float, np.ndarray | None]:
    """``(t0, timestamps)`` checked: ``t0`` a finite number of seconds (None: 0),
    ``timestamps`` None or ``n_frames`` finite times (then ``t0`` is the first)."""
    try:
        t0 = float(np.asarray(0.0 if t0 is None else t0).reshape(()))
    except (TypeError, ValueError):
        raise ValueError(f"t0 must be a number of seconds, got {t0!r}") from None
    if not math.isfinite(t0):
        raise ValueError(f"t0 must be a finite number of seconds, got {t0}")
    if timestamps is None:
        return t0, None
    ts = np.asarray(timestamps, dtype=np.float64).ravel()
    if ts.shape != (n_frames,) or not np.isfinite(ts).all():
        raise ValueError(f"timestamps must be {n_frames} finite times in s (one per frame), "
                         f"got shape {ts.shape}")
    return float(ts[0]), ts


def frame_times(frames, fs: float, t0: float = 0.0, timestamps=None) -> np.ndarray:
    """Times (s, on the recording's clock) of frame indices ``frames``."""
    f = np.asarray(frames, dtype=np.int64)
    if timestamps is not None:
        return np.asarray(timestamps, dtype=np.float64)[f]
    return float(t0) + f / float(fs)


def to_first_frame(times, fs: float, t0: float = 0.0, timestamps=None) -> np.ndarray:
    """Times on the recording's clock as seconds from the first frame at ``fs``
    (the tuner's time axis): ``t - t0``, or with irregular ``timestamps`` the
    (fractional) frame the time falls on, divided by ``fs``; times outside the
    timestamps continue at ``fs``."""
    t = np.asarray(times, dtype=np.float64)
    if timestamps is None:
        return t - float(t0)
    ts = np.asarray(timestamps, dtype=np.float64)
    k = np.interp(t, ts, np.arange(ts.size, dtype=np.float64))
    k = np.where(t < ts[0], (t - ts[0]) * fs, k)
    k = np.where(t > ts[-1], ts.size - 1 + (t - ts[-1]) * fs, k)
    return k / float(fs)


def rate_from_timestamps(timestamps) -> tuple[float | None, list[str]]:
    """The frame rate (Hz) of frame ``timestamps`` and notes on them: the
    least-squares slope of time against frame index, the one place where
    timestamps become a rate.

    ``1 / median(diff)`` is wrong for the usual DAQ clocks: timestamps
    stored to the millisecond make the intervals of a 30.048 Hz recording
    33 and 34 ms, whose median (33 ms) is 0.85 % off; jitter moves the
    median too.  The slope of all the times against their frame index uses
    every stamp and averages quantisation and jitter away.

    Dropped frames would bias that slope (every later stamp one interval
    late), so each interval is first counted in frames: ``round(diff /
    step)`` with ``step`` the median interval (a dropped frame makes an
    interval of ~2 steps), and the fit is against those frame indices; a
    second pass recounts with the fitted step and drops stamps more than
    a quarter frame off the line (outliers).  The notes say how many frames
    were missing and where.  None when the stamps do not increase.
    """
    ts = np.asarray(timestamps, dtype=np.float64).ravel()
    if ts.size < 2 or not np.isfinite(ts).all():
        return None, []
    d = np.diff(ts)
    step = float(np.median(d))
    if not (step > 0 and math.isfinite(step)):
        return None, []
    notes: list[str] = []
    keep = np.ones(ts.size, dtype=bool)
    for _ in range(2):
        inc = np.maximum(np.rint(d / step), 1.0)
        k = np.concatenate(([0.0], np.cumsum(inc)))
        kk, tt = k[keep], ts[keep]
        km, tm = kk.mean(), tt.mean()
        var = float(((kk - km) ** 2).sum())
        if var <= 0:
            return 1.0 / step, notes
        slope = float(((kk - km) * (tt - tm)).sum() / var)
        if not (slope > 0 and math.isfinite(slope)):
            return 1.0 / step, notes
        step = slope
        resid = ts - (tm + (k - km) * slope)
        mad = float(np.median(np.abs(resid - np.median(resid))))
        keep = np.abs(resid) <= max(0.25 * slope, 6 * 1.4826 * mad)
        if keep.sum() < 2:
            keep[:] = True
    missing = int(k[-1]) - (ts.size - 1)
    if missing > 0:
        where = np.flatnonzero(inc > 1)
        shown = ", ".join(str(int(i) + 1) for i in where[:5]) + (", ..." if where.size > 5 else "")
        notes.append(f"timestamps: {missing} frame(s) missing (intervals of 2 or more frames "
                     f"before sample(s) {shown}); the rate is fitted on the frame count, and "
                     "the traces are solved as if those frames were not there")
    off = int((~keep).sum())
    if off:
        notes.append(f"timestamps: {off} stamp(s) more than a quarter frame off the fitted clock "
                     "were left out of the rate fit")
    return 1.0 / step, notes
