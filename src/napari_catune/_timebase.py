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


def _runs_slope(ts: np.ndarray, run: np.ndarray, keep: np.ndarray) -> float | None:
    """The one slope of ``ts`` against the sample index over the kept samples,
    each run of consecutive frames (``run``: its number per sample) with an
    intercept of its own; None without two kept samples in a run."""
    i = np.arange(ts.size, dtype=np.float64)
    r, k, t = run[keep], i[keep], ts[keep]
    n = np.bincount(r).astype(np.float64)
    ok = n > 0
    km = np.zeros(n.size)
    tm = np.zeros(n.size)
    km[ok] = np.bincount(r, k)[ok] / n[ok]
    tm[ok] = np.bincount(r, t)[ok] / n[ok]
    dk, dt = k - km[r], t - tm[r]
    sxx = float((dk * dk).sum())
    if sxx <= 0:
        return None
    slope = float((dk * dt).sum() / sxx)
    return slope if slope > 0 and math.isfinite(slope) else None


def rate_from_timestamps(timestamps) -> tuple[float | None, list[str]]:
    """The frame rate (Hz) of frame ``timestamps`` and notes on them: the one
    place where timestamps become a rate.

    ``1 / median(diff)`` is wrong for the usual DAQ clocks: timestamps stored
    to the millisecond make the intervals of a 30.048 Hz recording 33 and
    34 ms, whose median (33 ms) is 0.85 % off; jitter moves the median too.
    The least-squares slope of the times against the frame index uses every
    stamp and averages quantisation and jitter away.

    A gap (a dropped frame, a pause between trials, a clock reset) is an
    interval outside half to one and a half of the median interval.  The
    stamps between gaps are runs of consecutive frames: the slope is fitted
    within the runs (one slope, an intercept per run), so neither a gap's
    length nor a guess of how many frames it hides enters the rate.  Where
    more than 1 % of the intervals lie within a quarter frame of those
    bounds, or more than a tenth are gaps, gaps cannot be told from jitter
    or a clock coarser than the frames (a 15.6 ms timer at 30 Hz, stamps in
    ms at 700 Hz): every stamp is then taken as the next frame.  A second pass leaves out stamps more than a
    quarter frame (or six deviations of the residuals) off the fitted clock.
    The notes say what was found.  None when no two stamps increase.
    """
    ts = np.asarray(timestamps, dtype=np.float64).ravel()
    if ts.size < 2 or not np.isfinite(ts).all():
        return None, []
    d = np.diff(ts)
    pos = d[d > 0]
    if pos.size == 0:
        return None, []
    step = float(np.median(pos))
    if not (step > 0 and math.isfinite(step)):
        return None, []
    r = d / step
    gap = (r < 0.5) | (r > 1.5)
    near = ((r > 0.25) & (r < 0.75)) | ((r > 1.25) & (r < 1.75))
    if near.sum() > 0.01 * d.size or gap.sum() > 0.1 * d.size:
        gap[:] = False  # gaps cannot be told from jitter or a coarse clock
    run = np.concatenate(([0], np.cumsum(gap)))
    keep = np.ones(ts.size, dtype=bool)
    slope = _runs_slope(ts, run, keep)
    if slope is None:
        return 1.0 / step, []
    # stamps far off the fitted clock (a stamp written wrong) are left out
    i = np.arange(ts.size, dtype=np.float64)
    n = np.bincount(run).astype(np.float64)
    resid = ts - slope * i
    resid -= (np.bincount(run, resid) / n)[run]
    mad = float(np.median(np.abs(resid - np.median(resid))))
    keep = np.abs(resid) <= max(0.25 * slope, 6 * 1.4826 * mad)
    if 2 <= keep.sum() < ts.size:
        slope = _runs_slope(ts, run, keep) or slope
    notes: list[str] = []
    if gap.any():
        g = d[gap] / slope
        # a few whole frames: dropped; longer, or not whole: a pause (trials) or a jump
        whole = (g >= 1.5) & (g < 10.5) & (np.abs(g - np.rint(g)) <= 0.25)
        missing = int((np.rint(g[whole]) - 1).sum())
        where = np.flatnonzero(gap)
        shown = ", ".join(str(int(j) + 1) for j in where[:5]) + (", ..." if where.size > 5 else "")
        what = []
        if missing:
            what.append(f"{missing} frame(s) missing")
        if (~whole).any():
            what.append(f"{int((~whole).sum())} other break(s) of the clock (a pause, a jump "
                        f"back or a repeated stamp; the largest {np.abs(d[gap][~whole]).max():.3g} s)")
        notes.append(f"timestamps: {' and '.join(what)} (before sample(s) {shown}); the rate is "
                     "fitted within the runs of consecutive frames, and the traces are solved "
                     "as if the frames were consecutive")
    off = int((~keep).sum())
    if off:
        notes.append(f"timestamps: {off} stamp(s) more than a quarter frame off the fitted clock "
                     "were left out of the rate fit")
    return 1.0 / slope, notes
