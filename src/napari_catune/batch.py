"""Solve many traces in chunks: the one batch loop behind Apply to all and the CLI.

:func:`iter_batch` reads a chunk of rows, skips the rows holding NaN or Inf
(their outputs are NaN, ``converged`` False, ``skipped`` True) unless it is
NaN padding at the row's end (:mod:`napari_catune._padding`: such a row is
solved on its finite part, its outputs NaN after it), solves the
rest with :func:`napari_catune.solver.run_deconvolution_full` and hands each
chunk's fields to a *sink*.  It is a generator yielding ``(done, total)``
after each chunk, so a GUI worker can show progress and cancel between
chunks by no longer iterating; :func:`run_batch` is the same loop with
``progress(done, total)`` and ``cancel()`` callbacks for scripts and the CLI.

A sink is any object with a ``per_sample`` attribute (whether the baseline
field is ``(n, T)``, as the "drift" and "rolling" baselines give one value
per sample, or ``(n,)``) and ``write(a, b, **fields)`` receiving rows
``a:b`` of ``activity``, ``fit``, ``baseline``, ``iterations``,
``converged`` and ``skipped``.  :class:`ArraySink` keeps them in memory (the
tuner); ``napari-catune deconvolve`` streams them into temporary files that
replace the output at the end.

No Qt, no napari.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import solver as _solver
from ._padding import BAD, row_lengths

__all__ = ["ArraySink", "BatchCancelled", "BatchSummary", "chunk_fields", "iter_batch",
           "nonfinite_rows", "per_sample_baseline", "run_batch", "scan_rows"]

#: the fields a sink receives, in order
FIELDS = ("activity", "fit", "baseline", "iterations", "converged", "skipped")


class BatchCancelled(Exception):
    """``run_batch``'s ``cancel()`` returned True; the sink holds the chunks done so far."""

    def __init__(self, done: int, total: int):
        super().__init__(f"cancelled after {done} of {total} rows")
        self.done, self.total = done, total


@dataclass
class BatchSummary:
    """What a finished batch did: ``skipped`` are the rows left out (non-finite)."""

    total: int
    skipped: np.ndarray

    @property
    def solved(self) -> int:
        return self.total - int(self.skipped.size)


def per_sample_baseline(params) -> bool:
    """Whether ``params``' baseline is one value per sample ("drift", "rolling")."""
    return str(params.baseline) in ("drift", "rolling")


class ArraySink:
    """Results gathered in memory: ``fields[name]`` is the full array of each field.

    Rows never written (a cancelled run) stay NaN / 0 / False; ``skipped``
    starts False.  With ``fitted=True`` it also keeps ``fitted_trace``: the
    band-passed traces the fit describes when the parameters' bandpass is on.
    """

    def __init__(self, n: int, T: int, per_sample: bool, fitted: bool = False):
        self.per_sample = bool(per_sample)
        self.fields = dict(
            activity=np.full((n, T), np.nan), fit=np.full((n, T), np.nan),
            baseline=np.full((n, T) if per_sample else n, np.nan),
            iterations=np.zeros(n, np.int64), converged=np.zeros(n, np.bool_),
            skipped=np.zeros(n, np.bool_),
        )
        if fitted:
            self.fields["fitted_trace"] = np.full((n, T), np.nan)

    def __getattr__(self, name):
        try:
            return self.__dict__["fields"][name]
        except KeyError:
            raise AttributeError(name) from None

    def write(self, a: int, b: int, **fields) -> None:
        for key, rows in fields.items():
            if key in self.fields:
                self.fields[key][a:b] = rows


def _shape(traces) -> tuple[int, int]:
    if hasattr(traces, "read"):
        return int(traces.n), int(traces.T)
    n, T = np.shape(traces)
    return int(n), int(T)


def _reader(traces):
    if hasattr(traces, "read"):
        return traces.read
    return lambda a, b: traces[a:b]


def scan_rows(traces, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """``(bad, lengths)`` in one pass, ``chunk`` rows at a time: the indices
    of the rows holding NaN or Inf that is not NaN padding (skipped), and
    every row's length (:func:`napari_catune._padding.row_lengths`: T, the
    finite part of a padded row, -1 for a bad row).

    ``traces``: an ``(n, T)`` array or an object with ``n``, ``T`` and
    ``read(a, b)`` (a :class:`napari_catune.sources.TraceSource`).
    """
    n, _ = _shape(traces)
    read = _reader(traces)
    lengths = []
    for a in range(0, n, max(1, int(chunk))):
        b = min(n, a + chunk)
        lengths.append(row_lengths(np.asarray(read(a, b))))
    lengths = np.concatenate(lengths) if lengths else np.empty(0, dtype=np.int64)
    return np.flatnonzero(lengths == BAD).astype(np.int64), lengths


def nonfinite_rows(traces, chunk: int) -> np.ndarray:
    """Indices of the rows that cannot be solved: NaN or Inf that is not NaN
    padding at a row's end (a padded row is solved on its finite part)."""
    return scan_rows(traces, chunk)[0]


def chunk_fields(n: int, T: int, ok: np.ndarray, res, per_sample: bool) -> dict:
    """One chunk's fields for ``n`` rows of which ``ok`` were solved into ``res``
    (activity, fit, baseline, iterations, converged of the ok rows; None when
    none was): NaN / 0 / False on the skipped rows."""
    ok = np.asarray(ok, dtype=bool)
    if res is not None and ok.all():
        return dict(activity=res[0], fit=res[1], baseline=res[2], iterations=res[3],
                    converged=res[4], skipped=~ok)
    act = np.full((n, T), np.nan)
    fit = np.full((n, T), np.nan)
    base = np.full((n, T) if per_sample else n, np.nan)
    iters = np.zeros(n, dtype=np.int64)
    conv = np.zeros(n, dtype=bool)
    if res is not None:
        act[ok], fit[ok], base[ok] = res[0], res[1], res[2]
        iters[ok], conv[ok] = res[3], res[4]
    return dict(activity=act, fit=fit, baseline=base, iterations=iters, converged=conv,
                skipped=~ok)


def fitted_rows(block, ok: np.ndarray, params, T: int) -> np.ndarray:
    """The band-passed rows (the trace the solver fitted with the bandpass on)
    of a chunk whose solved rows ``ok`` are ``block``; NaN on the others.  A
    row ending in NaN padding is band-passed on its finite part, NaN after."""
    from ._padding import bandpass_finite_parts

    out = np.full((ok.size, T), np.nan)
    if ok.any():
        out[ok] = bandpass_finite_parts(block, params.tau_rise, params.tau_decay, params.fs)
    return out


def iter_batch(traces, params, sink, *, chunk: int, skip=None):
    """Generator: solve every row of ``traces`` with ``params`` (a
    :class:`~napari_catune.params.TuningParams`: fs, taus, lambda, filter,
    baseline mode, drift scale) ``chunk`` rows at a time, writing each chunk
    into ``sink``; yields ``(done, total)`` after each chunk and returns a
    :class:`BatchSummary`.

    ``skip``: row indices known to be bad (:func:`scan_rows`; found up front, e.g. to
    refuse the run before any work); None finds them chunk by chunk.  Either
    way those rows are not solved.  ``traces`` is an ``(n, T)`` array or an
    object with ``n``, ``T`` and ``read(a, b)``.  With the bandpass on
    (``params.filter_enabled``) the chunks also carry ``fitted_trace``: the
    band-passed rows, the trace that fit and baseline describe (NaN rows skipped).
    """
    n, T = _shape(traces)
    chunk = int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 rows, got {chunk}")
    read = _reader(traces)
    per_sample = bool(getattr(sink, "per_sample", per_sample_baseline(params)))
    known = None
    if skip is not None:
        known = np.zeros(n, dtype=bool)
        known[np.asarray(skip, dtype=np.int64)] = True
    skipped: list[np.ndarray] = []
    kw = params.solver_kwargs()
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        if known is not None:
            ok = ~known[a:b]
            block = read(a, b) if ok.any() else None
        else:
            block = read(a, b)
            ok = row_lengths(block) != BAD
        res = None
        if ok.any():
            if not ok.all():
                block = np.asarray(block)[ok]
            r = _solver.run_deconvolution_full(
                block, params.fs, params.tau_rise, params.tau_decay, params.lam, **kw)
            res = (r.activity, r.reconvolution, r.baseline, r.iterations, r.converged)
        fields = chunk_fields(b - a, T, ok, res, per_sample)
        if params.filter_enabled:
            fields["fitted_trace"] = fitted_rows(block, ok, params, T)
        # the rows themselves, for sinks that compute per-ROI features (the CLI's
        # writers): no second read of the input
        fields["traces"] = _all_rows(block, ok, T)
        del block
        if not ok.all():
            skipped.append(a + np.flatnonzero(~ok))
        sink.write(a, b, **fields)
        yield b, n
    bad = np.concatenate(skipped) if skipped else np.empty(0, dtype=np.int64)
    return BatchSummary(n, bad.astype(np.int64))


def _all_rows(block, ok: np.ndarray, T: int):
    """A chunk's rows with NaN on the skipped ones, from ``block`` (its solved
    rows ``ok`` when some were skipped, else every row; None when none was)."""
    if block is not None and ok.all():
        return block
    out = np.full((ok.size, T), np.nan)
    if block is not None and ok.any():
        out[ok] = block
    return out


def run_batch(traces, params, sink, *, chunk: int, skip=None, progress=None,
              cancel=None) -> BatchSummary:
    """:func:`iter_batch` run to the end: ``progress(done, total)`` after each
    chunk; ``cancel()`` returning True stops between chunks with
    :class:`BatchCancelled`."""
    gen = iter_batch(traces, params, sink, chunk=chunk, skip=skip)
    while True:
        try:
            done, total = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(done, total)
        if cancel is not None and done < total and cancel():
            gen.close()
            raise BatchCancelled(done, total)
