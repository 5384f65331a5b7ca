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

__all__ = ["check_time", "frame_times", "to_first_frame"]


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
