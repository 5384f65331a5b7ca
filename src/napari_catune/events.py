"""Discrete events from deconvolved activity: a table a lab can count and keep.

The deconvolved activity ``s`` of the CaTune model is spread over a few
neighbouring frames when a spike falls between frames or the fit is unsure of
its timing.  An *event* is a run of non-zero activity (gaps shorter than
``merge_s`` are bridged); its

* ``onset_s``: time of the run's first non-zero frame, in seconds on the
  recording's clock (``t0 + frame / fs``, or the frame's timestamp; ``t0 = 0``
  by default: from the first frame);
* ``peak_s``: time of the run's largest frame, on the same clock;
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
(``roi_id``, ``activity_row``, ``onset_frame``, ``onset_s``, ``peak_s``,
``size``, ``amplitude``, ``starts_before_recording``), ready for
``pandas.DataFrame`` or a CSV.  ``roi_id`` is the ROI's label value
(``roi_ids=``; by default 1..n, the ids traces without ids get everywhere in
this package): the id to match ROIs by.  ``activity_row`` is the 0-based row
of the ``activity`` array given here, which is not the row of the source's
files once ROIs were left out (suite2p's non-cells: ``roi_id`` 3 can be
``activity_row`` 1).  Tables of earlier versions call it ``row``.

**Frame 0.**  The model starts with no calcium (DESIGN.md), so the calcium
already present when the recording starts (from spikes before it) has to be
explained by activity at the first frames: the AR(2) calcium's initial state
is its value at frames 0 and 1, so a run of activity starting at frame 0 or 1
is mostly that initial calcium, not a spike.  When the trace starts with
dark frames (a shutter or laser opening late, :func:`leading_dark_frames`)
the recording starts after them: a run starting within frames 0-1 after the
dark frames is that calcium too.  On the ground-truth recordings of
``realgt-dev`` 13 % of such runs have a true spike within 100 ms, against
37 % of the other runs at least as large (``bench/bench_frame0.py``; README,
*Frame 0*).  Such a run is therefore not an event by default
(``keep_first=True`` keeps it, with ``starts_before_recording`` true), and
it never sets a ROI's unit; pass ``traces=`` for the dark frames.  The
activity arrays keep it: it is part of the fit (the reconvolution needs it
to match the first seconds of the trace).  ``activity`` must start at the
recording's first frame for this to hold.

:func:`save_events_csv` writes the table (``roi_id`` first) and
:func:`read_event_times` reads the other direction: a CSV of event times per
ROI id, ours or known ones (ground truth, e.g. electrophysiology), for the
tuner to draw as ticks.
"""

from __future__ import annotations

import math

import numpy as np

from ._padding import BAD, row_lengths
from ._timebase import check_time, frame_times

__all__ = ["detect_events", "EVENT_FIELDS", "save_events_csv", "read_event_times",
           "ROI_COLUMNS", "TIME_COLUMNS", "FRAME0_NOTE", "without_initial_runs",
           "without_frame0_runs", "leading_dark_frames", "initial_run_ends", "INITIAL_FRAMES"]

#: what frame 0 of the activity is, for the results' sidecar and NWB description
FRAME0_NOTE = ("activity at frame 0 or 1 (and the run it starts; after leading dark frames, "
               "the run starting within the 2 frames after them) holds the calcium present "
               "before the recording started (the model starts without calcium), not a "
               "spike; detect_events(..., traces=) leaves it out of the events "
               "(keep_first=True keeps it)")

#: the per-event columns of :func:`detect_events`, in the order a CSV gets them
EVENT_FIELDS = ("roi_id", "activity_row", "onset_frame", "onset_s", "peak_s", "size", "amplitude",
                "starts_before_recording")
_INT_FIELDS = ("roi_id", "activity_row", "onset_frame")


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


def _merge_gap(merge_s: float, fs: float) -> int:
    return max(1, int(round(merge_s * fs)))


#: frames whose activity is the model's initial state: the AR(2) calcium starts
#: from two values (frames 0 and 1), so the calcium present before the recording
#: lands on either (module docstring, "Frame 0")
INITIAL_FRAMES = 2
#: a leading frame is dark (shutter or laser still off) when it is this many noise
#: sigmas below the 1st percentile of the next seconds of its trace
DARK_SIGMA = 8.0
#: dark frames end within the first 0.2 s of a trace (and 6 frames): a shutter
#: or laser opens within it; a longer low start is a slow warm-up, whose first
#: frames hold real activity
DARK_MAX_S = 0.2
DARK_MAX_FRAMES = 6
#: ... and end in a step: the next frame rises by at least this share of the
#: last dark frame's depth
DARK_STEP = 0.5


def leading_dark_frames(traces, fs: float) -> np.ndarray:
    """Number of dark frames at the start of each trace (an int per row).

    A frame is dark when it lies more than :data:`DARK_SIGMA` noise sigmas
    below the 1st percentile of the trace over the next 10 s (after the first
    :data:`DARK_MAX_S` s); the dark frames are the run of such frames from
    frame 0 that ends within the first :data:`DARK_MAX_S` s (at least
    :data:`DARK_MAX_FRAMES` frames) in a step (the next frame
    rises by at least :data:`DARK_STEP` of the last one's depth: a slow
    warm-up or a smoothed dip is a ramp, not dark frames).  The noise sigma is read from the
    same 10 s (MAD of the frame-to-frame differences).  A shutter or laser
    that opens a few frames into the recording gives them (``realgt-dev``'s
    DS07 and DS08: 1-4 frames 12-38 sigmas below; no leading frame of the
    other datasets is more than 5 below: ``bench/bench_frame0.py``).  NaN
    padding at the end of a row is ignored."""
    depth = _dark_depth(traces, fs)
    dark = depth > DARK_SIGMA
    if dark.shape[1] == 0:
        return np.zeros(dark.shape[0], np.int64)
    # a run filling the whole window is a slow start, not dark frames
    out = np.where(dark.all(axis=1), 0, np.argmin(dark, axis=1)).astype(np.int64)
    # the light comes on in a step: the frame after the dark ones rises by at
    # least half of the last one's depth (a slow warm-up or a smoothed dip is
    # a ramp, and its first frames hold real activity)
    rows = np.flatnonzero((out > 0) & (out < dark.shape[1]))
    last, nxt = depth[rows, out[rows] - 1], depth[rows, out[rows]]
    out[rows[last - nxt < DARK_STEP * last]] = 0
    return out


def dark_prefix(fs: float) -> int:
    """How many first frames :func:`leading_dark_frames` reads of a trace."""
    fs = _positive("fs", fs)
    return max(DARK_MAX_FRAMES, int(math.ceil(DARK_MAX_S * fs))) + max(256, int(round(10.0 * fs)))


def _dark_depth(traces, fs: float) -> np.ndarray:
    """(n, frames of the first DARK_MAX_S s, at least DARK_MAX_FRAMES): how many noise sigmas each first
    frame lies below the 1st percentile of the next 10 s (0 for a row too
    short to tell, or NaN frames)."""
    fs = _positive("fs", fs)
    cap = max(DARK_MAX_FRAMES, int(math.ceil(DARK_MAX_S * fs)))
    win = max(256, int(round(10.0 * fs)))
    y = np.atleast_2d(np.asarray(traces))[:, : cap + win].astype(np.float64)
    out = np.zeros((y.shape[0], min(cap, y.shape[1])))
    for i, x in enumerate(y):
        ok = np.isfinite(x)
        n = int(np.argmin(ok)) if not ok.all() else x.size  # the finite start
        if n < cap + 16:
            continue
        ref = x[cap:n]
        d = np.abs(np.diff(ref))
        sig = 1.4826 * float(np.median(d)) / math.sqrt(2.0)
        if not sig > 0:
            sig = float(np.mean(d)) or 1e-12 * max(float(np.max(np.abs(ref))), 1e-300)
        out[i] = (float(np.percentile(ref, 1)) - x[:cap]) / sig
    return out


def _initial_frames(n: int, fs: float, traces=None, dark=None) -> np.ndarray:
    """Per row, how many first frames belong to the model's initial state: a run
    of activity starting within them holds the calcium present before the
    recording.  :data:`INITIAL_FRAMES` (frames 0-1), after the leading dark
    frames (``dark``, or :func:`leading_dark_frames` of ``traces``)."""
    if dark is None and traces is not None:
        y = np.atleast_2d(np.asarray(traces))
        if y.shape[0] != n:
            raise ValueError(f"traces must have one row per activity row ({n}), got shape "
                             f"{y.shape}")
        dark = leading_dark_frames(y, fs)
    k = np.full(n, INITIAL_FRAMES, np.int64)
    return k if dark is None else k + np.broadcast_to(np.asarray(dark, np.int64), (n,))


def initial_run_ends(activity, fs: float, dark=None, merge_s: float = 0.05) -> np.ndarray:
    """Per row, the frame where the runs of activity that start before the
    recording end: runs starting within frames 0-1 after the row's ``dark``
    leading dark frames (:func:`leading_dark_frames`; None: none), gaps
    shorter than ``merge_s`` bridged as :func:`detect_events` does; 0 for a
    row without one.  Activity before it is the initial calcium."""
    a = np.atleast_2d(np.asarray(activity))
    k = _initial_frames(a.shape[0], fs, dark=dark)
    gap = _merge_gap(merge_s, fs)
    out = np.zeros(a.shape[0], np.int64)
    for i in range(a.shape[0]):
        head = np.flatnonzero(a[i, : k[i]] > 0)
        if head.size:
            out[i] = _run_stop(a[i], int(head[-1]), gap)
    return out


def without_initial_runs(activity, fs: float, merge_s: float = 0.05, dark=None) -> np.ndarray:
    """``activity`` (n, T) with each row's runs that start before the recording
    (the ones :func:`detect_events` leaves out by default, :func:`initial_run_ends`;
    ``dark``: the rows' leading dark frames, :func:`leading_dark_frames`) set
    to 0, for counts that must match the events table (the tuner's
    events/min, the batch features' event rate).  The array itself when no
    row has such a run, else a copy; NaN padding is kept."""
    a = np.atleast_2d(np.asarray(activity))
    ends = initial_run_ends(a, fs, dark, merge_s)
    if not ends.any():
        return a
    a = a.copy()
    for i in np.flatnonzero(ends):
        a[i, : ends[i]] = 0.0
    return a


#: the earlier name (runs starting at frame 0 only)
without_frame0_runs = without_initial_runs


def _run_stop(row: np.ndarray, last: int, gap: int) -> int:
    """End of the run holding frame ``last`` (non-zero) of ``row`` as :func:`_runs`
    bounds it (gaps up to ``gap`` bridged), read a block at a time: that run is a
    few frames, the row can be 10^5 (NaN padding is not > 0: never in a run)."""
    n, block = row.size, max(256, 2 * gap)
    while True:
        hi = min(n, last + 1 + block)
        seq = np.r_[last, last + 1 + np.flatnonzero(row[last + 1 : hi] > 0)]
        br = np.flatnonzero(np.diff(seq) > gap)
        if br.size:
            return int(seq[br[0]]) + 1
        last = int(seq[-1])
        if hi >= n or hi - last > gap:
            return last + 1


def _ids(roi_ids, n: int, name: str = "roi_ids") -> np.ndarray:
    if roi_ids is None:
        return np.arange(1, n + 1, dtype=np.int64)
    ids = np.asarray(roi_ids)
    if ids.ndim != 1 or ids.size != n:
        raise ValueError(f"{name} must hold one label value per ROI ({n}), got shape "
                         f"{ids.shape}")
    if ids.dtype.kind not in "iu":
        if ids.dtype.kind != "f" or not (np.isfinite(ids).all() and (ids == np.round(ids)).all()):
            raise ValueError(f"{name} must be integer label values, got {ids.dtype}")
    ids = ids.astype(np.int64)
    if n and ids.min() < 0:
        raise ValueError(f"{name} must be ROI ids >= 0, got {int(ids.min())}")
    if np.unique(ids).size != n:
        raise ValueError(f"{name} must be unique")
    return ids


def detect_events(activity, fs, *, min_size: float = 0.0, unit=None,
                  merge_s: float = 0.05, isolation_s: float = 1.0, roi_ids=None,
                  keep_first: bool = False, t0: float = 0.0, timestamps=None,
                  traces=None) -> dict:
    """Event table of deconvolved activity (see the module docstring).

    Parameters
    ----------
    activity : (T,) or (n_rois, T) array_like, non-negative, finite; a row may end
        in NaN padding (a shorter recording): its events are those of the finite part
    fs : float, sampling rate in Hz
    min_size : float, events below this amplitude (in units) are dropped
    unit : None, float or (n_rois,) array; the size of one event per ROI.
        None: the median size of each ROI's isolated events.
    merge_s : gaps of non-zero activity shorter than this join one event
    isolation_s : an event is isolated if no other is this close (for the unit)
    roi_ids : None or (n_rois,) int; the label value of each row, written in
        the ``roi_id`` column.  None: 1..n_rois.
    keep_first : bool, keep the runs of activity that start before the
        recording as events (``starts_before_recording`` true): runs starting
        within the model's initial state (frames 0-1) or right after leading
        dark frames.  By default they are left out: they are the calcium
        present before the recording (module docstring, "Frame 0").
    traces : None or the traces (same shape) the activity was deconvolved
        from: their leading dark frames (:func:`leading_dark_frames`, a
        shutter or laser that opens late) move the recording's start.  Without
        them only frames 0-1 count as before the recording.
    t0 : float, time (s) of the first frame: ``onset_s`` and ``peak_s`` are
        ``t0 + frame / fs``, on the clock of the results' ``time_s`` (an NWB
        input's ``starting_time``: ``load_results(...)["t0"]``).
    timestamps : None or (T,) times (s) of the frames (irregular sampling,
        ``load_results(...)["timestamps"]``): the events take their frames'
        timestamps (``t0`` is then the first).

    Returns
    -------
    dict of 1-D arrays, keys :data:`EVENT_FIELDS`, one entry per event,
    sorted by row then onset; plus ``"unit"``, the unit of each ROI (one per
    row, not per event: :func:`save_events_csv` leaves it out).
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
    t0, timestamps = check_time(t0, timestamps, s.shape[1])
    # rows ending in NaN padding (recordings of different lengths): events
    # of the finite part only (_padding); any other NaN or Inf is refused
    lengths = row_lengths(s)
    if (lengths == BAD).any():
        raise ValueError("activity contains non-finite values (NaN or Inf) before the end "
                         "of a row (NaN padding at the end of a row is fine)")
    n = s.shape[0]
    ids = _ids(roi_ids, n)
    if unit is not None:
        units = np.broadcast_to(np.asarray(unit, dtype=np.float64), (n,)) if np.ndim(unit) <= 1 else None
        if units is None or units.shape != (n,) or not (np.isfinite(units).all() and (units > 0).all()):
            raise ValueError(f"unit must be a positive number or one per ROI ({n}), got {unit!r}")
    gap = _merge_gap(merge_s, fs)
    k0 = _initial_frames(n, fs, traces)
    iso = isolation_s * fs
    cols = {k: [] for k in EVENT_FIELDS}
    unit_out = np.full(n, np.nan)
    for i in range(n):
        si = s[i, : lengths[i]]
        start, stop = _runs(si, gap)
        first = start < k0[i]  # the calcium present before the recording
        if start.size == 0 or (first.all() and not keep_first):
            unit_out[i] = np.nan if unit is None else units[i]
            continue
        csum = np.r_[0.0, np.cumsum(si)]
        size = csum[stop] - csum[start]
        peak = np.array([a + int(np.argmax(si[a:b])) for a, b in zip(start, stop)])
        if unit is None and not first.all():
            a, b, sz = start[~first], stop[~first], size[~first]
            before = np.r_[np.inf, a[1:] - b[:-1]]
            after = np.r_[a[1:] - b[:-1], np.inf]
            lone = (before >= iso) & (after >= iso)
            pool = sz[lone] if lone.sum() >= 3 else sz
            u = float(np.median(pool))
        else:
            u = np.nan if unit is None else float(units[i])  # (no event but frame 0's)
        unit_out[i] = u
        amp = size / u if np.isfinite(u) else np.full(size.shape, np.nan)
        keep = ~first if not keep_first else np.ones(size.shape, bool)
        keep &= ~(amp < min_size)  # (NaN amplitude: a frame-0 run only, no unit)
        cols["roi_id"].append(np.full(int(keep.sum()), ids[i], dtype=np.int64))
        cols["activity_row"].append(np.full(int(keep.sum()), i, dtype=np.int64))
        cols["starts_before_recording"].append(first[keep])
        cols["onset_frame"].append(start[keep].astype(np.int64))
        cols["onset_s"].append(frame_times(start[keep], fs, t0, timestamps))
        cols["peak_s"].append(frame_times(peak[keep], fs, t0, timestamps))
        cols["size"].append(size[keep])
        cols["amplitude"].append(amp[keep])
    out = {}
    for k in EVENT_FIELDS:
        dtype = np.int64 if k in _INT_FIELDS else bool if k == "starts_before_recording" \
            else np.float64
        out[k] = np.concatenate(cols[k]).astype(dtype) if cols[k] else np.empty(0, dtype)
    out["unit"] = unit_out
    return out


# ------------------------------------------------------------ event-time files
def save_events_csv(path, events):
    """Write an events table (as :func:`detect_events` returns it, a DataFrame
    or a dict of columns) as CSV, atomically: a header line, then one event per
    line, ``roi_id`` first (the label value, what :func:`read_event_times`
    and the tuner's *Events CSV...* read), then the other per-event columns
    (``activity_row``, ``onset_frame``, ``onset_s``, ...).  The per-ROI ``unit`` of
    :func:`detect_events` is left out.  Floats get 10 significant digits.
    Returns the Path written.
    """
    from ._atomic import atomic_write_text
    from .results import _csv_text, _table

    if isinstance(events, dict) and "unit" in events:
        events = {k: v for k, v in events.items() if k != "unit"}
    cols = _table("events", events)
    if not cols or "roi_id" not in cols:
        raise ValueError("events needs a 'roi_id' column (the ROI label values), e.g. from "
                         "detect_events(activity, fs, roi_ids=...)")
    uniq = np.unique(cols["roi_id"])
    _ids(uniq, uniq.size, "events['roi_id']")  # positive integer label values
    order = ["roi_id"] + [k for k in EVENT_FIELDS if k in cols and k != "roi_id"]
    order += [k for k in cols if k not in order]
    return atomic_write_text(path, _csv_text(order, [cols[k] for k in order]))


#: accepted names of the ROI column (case-insensitive), in order of preference;
#: each holds ROI ids (label values), never 0-based rows
ROI_COLUMNS = ("roi_id", "roi", "cell", "neuron")
#: accepted names of the time column, in seconds (case-insensitive), in order of preference
TIME_COLUMNS = ("time_s", "spike_time_s", "t_s", "onset_s", "peak_s")


def read_event_times(path) -> dict:
    """Event times per ROI from a CSV: ``{roi id: sorted times in seconds}``.

    Layout: one event per line, with a header line naming an ROI column (one
    of :data:`ROI_COLUMNS`) and a time column in seconds on the recording's
    clock (one of :data:`TIME_COLUMNS`; from the first frame, or from an NWB
    input's start time as the results' ``time_s``: the tuner maps them back), in any order and case; other columns are
    ignored, so the events CSV written by :func:`save_events_csv` (``roi_id``,
    ``activity_row``, ``onset_frame``, ``onset_s``, ...; ``row`` instead of
    ``activity_row`` in earlier versions) reads as is, onto the ROI ids it was
    detected on.  Separators: comma, semicolon or tab.  Blank lines and
    lines starting with ``#`` are skipped.  ROI ids are positive integers (the
    label values; 0 is the background); times are finite and >= 0.  A 0-based
    ``activity_row`` or ``row`` column is never read as an id.

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
    if roi_col is not None and names[roi_col] == "roi" and {"onset_frame", "size",
                                                            "amplitude"} <= set(names):
        # detect_events before roi_id existed wrote the 0-based row as 'roi'
        raise ValueError(f"events file {p.name!r} looks like an events table of an earlier "
                         "napari-catune, whose 'roi' column is the 0-based row, not the ROI "
                         "id; write it again with save_events_csv (it has 'roi_id'), or "
                         "rename the column to 'row' and add a 'roi_id' column of label "
                         "values")
    if roi_col is None or t_col is None:
        missing = [what for what, col in (("an ROI column (" + ", ".join(ROI_COLUMNS) + ")",
                                           roi_col),
                                          ("a time column in seconds (" +
                                           ", ".join(TIME_COLUMNS) + ")", t_col))
                   if col is None]
        rows = [c for c in ("activity_row", "row") if c in names]
        hint = (f"; '{rows[0]}' is a 0-based row, not an ROI id: add a 'roi_id' column of "
                "label values" if roi_col is None and rows else "")
        raise ValueError(f"events file {p.name!r}: the header (line {head_no}: {head.strip()!r}) "
                         f"needs {' and '.join(missing)}; e.g. 'roi,time_s'{hint}")
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
        if rid < 1:
            raise ValueError(f"events file {p.name!r}, line {no}: ROI {r_txt!r} is not an ROI "
                             "id: ids are label values from 1 (0 is the background); for "
                             "0-based rows, add 1 or write the ids in a 'roi_id' column")
        try:
            t = float(t_txt)
        except ValueError:
            raise ValueError(f"events file {p.name!r}, line {no}: time {t_txt!r} is not a "
                             "number of seconds") from None
        if not (math.isfinite(t) and t >= 0):
            raise ValueError(f"events file {p.name!r}, line {no}: time {t_txt!r} must be a "
                             "finite number of seconds >= 0 (on the recording's clock)")
        out.setdefault(rid, []).append(t)
    if not out:
        raise ValueError(f"events file {p.name!r} has a header but no events")
    return {rid: np.sort(np.asarray(ts, dtype=np.float64)) for rid, ts in out.items()}
