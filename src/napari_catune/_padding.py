"""Rows padded with trailing NaN: recordings of different lengths in one array.

Real recordings of unequal length are often stored as one ``(n, T_max)``
array whose shorter rows end in NaN (realgt's ``fluorescence``, NaN after
``lengths[i]``).  Such a row is solved on its finite part ``row[:L]`` and its
outputs (activity, fit, a per-sample baseline) are NaN from ``L`` on.

What counts as padding: a row whose first ``L`` values are finite and whose
values from ``L`` to the end are all NaN, with at least one NaN (``L < T``)
and ``L >= MIN_FINITE`` (2, the solver's least trace length).  Anything else
that holds NaN or Inf (a NaN inside the finite part, an Inf anywhere, a row
finite for fewer than 2 samples) is *bad*: refused, or skipped with
``--skip-bad``, as before.

This is the one place where rows are told apart; the solver, the batch loop,
the command line, the estimator, the events table and the tuner use it.  No
Qt, no napari.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MIN_FINITE", "BAD", "bad_rows_text", "bandpass_finite_parts", "check_no_bad",
           "ends_padded",
           "on_finite_parts", "padding_span", "padding_summary", "per_row", "row_lengths",
           "solve_padded"]

#: a padded row's finite part must have at least this many samples
MIN_FINITE = 2
#: :func:`row_lengths`' value for a row that is neither finite nor padded
BAD = -1


def row_lengths(block) -> np.ndarray:
    """Per row of the 2-D ``block``: ``T`` when every value is finite, ``L``
    when it is NaN padding (finite for its first ``L >= MIN_FINITE`` values,
    NaN from there to the end), else :data:`BAD` (-1).

    Non-float rows are finite.  One pass over the rows holding a non-finite
    value only (the finite rows cost one ``isfinite``)."""
    block = np.asarray(block)
    if block.ndim == 1:
        block = block[np.newaxis, :]
    n, T = block.shape
    out = np.full(n, T, dtype=np.int64)
    if block.dtype.kind not in "fc" or not block.size:
        return out
    fin = np.isfinite(block)
    rows = np.flatnonzero(~fin.all(axis=1))
    # padded: finite before the first non-finite value k, NaN from k to the
    # end (row by row: no float copy of the rows)
    for r in rows:
        k = int(np.argmin(fin[r]))
        out[r] = k if k >= MIN_FINITE and np.isnan(block[r, k:]).all() else BAD
    return out


#: the most values of padded rows copied at a time to solve them together
#: (8 MB of float64): never a copy of a whole batch
GROUP_SAMPLES = 1 << 20


def _groups(lengths: np.ndarray):
    """``(L, rows)``: the rows of each length, at most GROUP_SAMPLES values a piece."""
    for L in np.unique(lengths):
        L = int(L)
        rows = np.flatnonzero(lengths == L)
        step = max(1, GROUP_SAMPLES // max(L, 1))
        for a in range(0, rows.size, step):
            yield L, rows[a : a + step]


def bad_rows_text(block, lengths, name: str = "traces") -> str:
    """What is wrong with the bad rows (``lengths == BAD``) of ``block``:
    the rows, their non-finite sample counts, and what to do."""
    block = np.asarray(block)
    if block.ndim == 1:
        block = block[np.newaxis, :]
    rows = np.flatnonzero(np.asarray(lengths) == BAD)
    counts = [int(np.count_nonzero(~np.isfinite(block[r]))) for r in rows[:10]]
    listed = ", ".join(f"row {r} ({c} samples)" for r, c in zip(rows[:10], counts))
    more = f" and {rows.size - 10} more rows" if rows.size > 10 else ""
    return (f"{name} contain non-finite values (NaN or Inf) in {rows.size} row(s): "
            f"{listed}{more}; drop or "
            "interpolate those samples first (NaN padding at the end of a row is fine: "
            "that row is solved on its finite part)")


def check_no_bad(block, lengths, name: str = "traces") -> None:
    """ValueError (:func:`bad_rows_text`) when a row of ``block`` is bad."""
    if (np.asarray(lengths) == BAD).any():
        raise ValueError(bad_rows_text(block, lengths, name))


def solve_padded(y: np.ndarray, lengths: np.ndarray, solve, *, per_sample: bool,
                 init=None):
    """Solve the rows of ``y`` (2-D) each on its first ``lengths[i]`` samples.

    ``solve(rows_y, init)`` solves finite rows of one length (2-D, or a 1-D
    row) and returns ``(activity, baseline, fit, iterations, converged)``.
    Rows of one length are solved together, at most :data:`GROUP_SAMPLES`
    values at a time (``y[i, :L]`` of a lone row is a view; a group of rows is
    copied, so a copy never exceeds that bound); the outputs are NaN after
    each row's length (the baseline too when ``per_sample``).
    Returns the five fields for all rows (2-D, the baseline ``(n,)`` or
    ``(n, T)``).
    """
    n, T = y.shape
    lengths = np.asarray(lengths, dtype=np.int64)
    if (lengths < MIN_FINITE).any() or (lengths > T).any():
        raise ValueError("solve_padded: every row needs a length in [2, T]")
    s = np.full((n, T), np.nan)
    fit = np.full((n, T), np.nan)
    b = np.full((n, T) if per_sample else n, np.nan)
    iters = np.zeros(n, dtype=np.int64)
    conv = np.zeros(n, dtype=bool)
    for L, rows in _groups(lengths):
        if rows.size == 1:
            r = int(rows[0])
            sub = y[r, :L]  # a view of the contiguous row
            sub_init = None if init is None else init[r, :L]
            idx = slice(r, r + 1)
        else:
            sub = y[rows, :L]
            sub_init = None if init is None else init[rows, :L]
            idx = rows
        act, base, ft, it, cv = solve(sub, sub_init)
        s[idx, :L] = np.reshape(act, (-1, L))
        fit[idx, :L] = np.reshape(ft, (-1, L))
        if per_sample:
            b[idx, :L] = np.reshape(base, (-1, L))
        else:
            b[idx] = np.reshape(base, -1)
        iters[idx] = np.reshape(it, -1)
        conv[idx] = np.reshape(cv, -1)
    return s, b, fit, iters, conv


def per_row(x: np.ndarray, lengths, fn) -> np.ndarray:
    """``fn`` (a function of finite ``(m, L)`` rows returning ``(m,)`` values)
    applied to each row's finite part ``x[i, :lengths[i]]``, rows of one
    length together; the ``(n,)`` results in row order."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if (lengths == x.shape[1]).all():
        return np.asarray(fn(x), dtype=np.float64)
    out = np.empty(x.shape[0])
    for L, rows in _groups(lengths):
        out[rows] = fn(x[rows, :L])
    return out


def ends_padded(x: np.ndarray) -> bool:
    """Whether a row of the 2-D ``x`` may end in NaN padding (its last value
    is NaN): a test of one column, for the paths that must stay cheap."""
    return x.dtype.kind in "fc" and bool(np.isnan(x[:, -1]).any())


def bandpass_finite_parts(y, tau_rise: float, tau_decay: float, fs: float) -> np.ndarray:
    """The CaTune bandpass (:func:`napari_catune.kernel.bandpass_filter`) of
    each row of ``y``; a row ending in NaN padding is filtered on its finite
    part, NaN after (the whole row would come back NaN)."""
    from .kernel import bandpass_filter

    y = np.asarray(y, dtype=np.float64)
    y2 = y.reshape(1, -1) if y.ndim == 1 else y
    if not ends_padded(y2):
        return bandpass_filter(y, tau_rise, tau_decay, fs)
    lengths = row_lengths(y2)
    out = np.full(y2.shape, np.nan)
    for i, L in enumerate(lengths):
        L = y2.shape[1] if L == BAD else int(L)  # (a bad row: NaN, as before)
        out[i, :L] = bandpass_filter(y2[i, :L], tau_rise, tau_decay, fs)
    return out.reshape(y.shape)


def on_finite_parts(x: np.ndarray, fn) -> np.ndarray:
    """``fn`` (``(m, L)`` finite rows to ``(m,)`` values) on each row's finite
    part (:func:`per_row`); NaN for a bad row."""
    lengths = row_lengths(x)
    out = np.full(x.shape[0], np.nan)
    good = lengths != BAD
    if good.any():
        out[good] = per_row(x[good], lengths[good], fn)
    return out


def padding_summary(T: int, lengths) -> str:
    """``"N rows end in NaN padding (finite for 120 to 4000 of 5000 frames)"``
    for the padded rows among ``lengths`` (from :func:`row_lengths`), else ""."""
    count, span = padding_span(T, lengths)
    if not count:
        return ""
    rows = "row ends" if count == 1 else "rows end"
    return f"{count} {rows} in NaN padding ({span})"


def padding_span(T: int, lengths) -> tuple[int, str]:
    """How many of ``lengths`` are padded rows, and ``"finite for 120 to 600
    of 900 frames"`` ("" when none)."""
    lengths = np.asarray(lengths)
    padded = lengths[(lengths >= MIN_FINITE) & (lengths < T)]
    if not padded.size:
        return 0, ""
    lo, hi = int(padded.min()), int(padded.max())
    span = f"{lo}" if lo == hi else f"{lo} to {hi}"
    return int(padded.size), f"finite for {span} of {T} frames"
