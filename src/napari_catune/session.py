"""One tuning session, without Qt: source, selection, parameters, results.

:class:`TuningSession` is the state behind the napari tuner (as
napari-animation keeps its ``Animation`` model apart from its widgets): the
traces being tuned (:class:`TraceSource`), the selected ROIs, the parameters
(validated once per change), warm starts, the newest-result-wins generation
logic of live solves, the live result with per-ROI read-outs, a pinned
snapshot, parameter undo/redo and the Apply-to-all result.  It emits psygnal
signals; widgets render them and forward input.  It runs in scripts and tests
without a display::

    s = TuningSession()
    s.set_source(TraceSource.build(traces, fs=30.0))
    s.select([1, 2])
    s.set_params(lam=0.02)         # solves at once (synchronous by default)
    s.result.fit, s.result.r2

The long jobs (:func:`build_source`, :func:`estimate_job`, :func:`apply_job`)
are plain functions or generators, so a GUI can run them in a worker thread
with progress and cancel.  :class:`LiveSolver` is a thread that keeps only
the newest request.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from psygnal import Signal

from . import solver as _solver
from ._padding import BAD, bandpass_finite_parts, ends_padded, on_finite_parts, row_lengths
from .baseline import BASELINE_MODES  # noqa: F401 - the menu's modes, re-exported
from .baseline import baseline_mode
from .estimate import RECOMMENDED_BASELINE
from .kernel import bandpass_filter, bandpass_gain
from .params import TuningParams, fs_matches

__all__ = [
    "MAX_ROIS", "BASELINE_MODES", "DEFAULT_PARAMS", "TraceSource", "BandpassCache", "BufferPool",
    "SolveRequest",
    "LiveResult", "BatchResult", "TuningSession", "LiveSolver", "build_source",
    "apply_job", "estimate_job", "event_rate", "slider_range", "lam_slider_range",
    "at_data_rate", "failure_text", "NEUROPIL_RANGE", "check_neuropil", "neuropil_traces",
]

#: most ROIs shown (and solved live) at once
MAX_ROIS = 20

#: the neuropil coefficients the tuner takes (suite2p's default 0.7; 0: F itself)
NEUROPIL_RANGE = (0.0, 1.5)


def check_neuropil(coefficient) -> float:
    """``coefficient`` as a float in :data:`NEUROPIL_RANGE`, else ValueError."""
    try:
        c = float(coefficient)
    except (TypeError, ValueError):
        c = math.nan
    lo, hi = NEUROPIL_RANGE
    if not (math.isfinite(c) and lo <= c <= hi):
        raise ValueError(f"the neuropil coefficient must be a number from {lo:g} to {hi:g} "
                         f"(suite2p's default is 0.7), got {coefficient!r}")
    return c


def neuropil_traces(F: np.ndarray, fneu: np.ndarray, coefficient: float) -> np.ndarray:
    """``F - coefficient * Fneu`` in float64, as ``napari-catune extract --neuropil``."""
    return np.asarray(F, dtype=np.float64) - float(coefficient) * np.asarray(
        fneu, dtype=np.float64)
#: the tuner starts with the baseline model that wins on real recordings
DEFAULT_PARAMS = dict(tau_rise=0.05, tau_decay=0.5, fs=30.0, lam=0.05,
                      baseline=RECOMMENDED_BASELINE)

# Slider spans (what the tuner's sliders show; typed values outside are kept).
# lambda's follows the data's scale once known (lam_slider_range); before, it
# spans 1e-4..10, where the useful ~0.001-0.1 of dF/F traces gets most travel.
_SLIDER_RANGES = {
    "tau_rise": (0.001, 0.5),
    "tau_decay": (0.01, 10.0),
    "fs": (1.0, 1000.0),
    "lam": (1e-4, 10.0),
    "t_peak": (0.002, 2.0),
    "fwhm": (0.01, 20.0),
}


def slider_range(name: str) -> tuple[float, float]:
    """The span a slider shows for parameter ``name`` (log scale); for lambda,
    the span before the data's scale is known (:func:`lam_slider_range`)."""
    return _SLIDER_RANGES[name]


# lambda is in the traces' units: its slider spans these multiples of the
# traces' noise sigma.  On the real recordings (realgt, dF/F) the estimate is
# 0.12-0.23 sigma, activity is about gone at 40-200 sigma and the threshold
# is nothing (< 0.05 noise sigmas of the matched filter) below ~0.005 sigma;
# the same multiples hold for raw fluorescence and for any scaling.
_LAM_SIGMAS = (1e-3, 500.0)
# where a lambda outside the span lands when the span is moved to it: where an
# estimate sits (in sigmas), so both ends stay reachable
_LAM_TYPICAL = 0.2
# a span widened to take a value is at most this many decades wide
_LAM_MAX_DECADES = 8.0


def lam_slider_range(sigma: float | None = None, lam: float | None = None,
                     span: tuple[float, float] | None = None) -> tuple[float, float]:
    """The lambda slider's span (log scale, lo > 0; 0 is the slider's left end).

    From the traces' noise ``sigma`` (median over the ROIs):
    ``_LAM_SIGMAS`` times sigma; without one, :func:`slider_range`'s.  Given
    ``span`` (the current one), that span is kept.  A ``lam`` > 0 outside it
    widens it (to 1.5x past ``lam``), or, when that would span more than
    ``_LAM_MAX_DECADES``, moves the span to ``lam`` as if lam were a typical
    estimate (``_LAM_TYPICAL`` sigma).
    """
    if span is None:
        if sigma is not None and math.isfinite(sigma) and sigma > 0:
            span = (_LAM_SIGMAS[0] * sigma, _LAM_SIGMAS[1] * sigma)
        else:
            span = _SLIDER_RANGES["lam"]
    lo, hi = span
    # (a slider's end positions give lo and hi to rounding: inside)
    if lam is None or not (math.isfinite(lam) and lam > 0) or \
            lo * (1 - 1e-9) <= lam <= hi * (1 + 1e-9):
        return lo, hi
    lo, hi = (lam / 1.5, hi) if lam < lo else (lo, lam * 1.5)
    if math.log10(hi / lo) <= _LAM_MAX_DECADES:
        return lo, hi
    return lam_slider_range(lam / _LAM_TYPICAL)


# ------------------------------------------------------------------- source
def _guess_unit(traces: np.ndarray) -> str:
    """"dF/F" when the traces sit near 0 with dF/F-sized excursions, else "raw"."""
    if traces.size == 0:
        return "raw"
    sub = traces[:, :: max(1, traces.shape[1] // 4000)]
    fin = np.isfinite(sub)
    if not fin.all():  # rows ending in NaN padding: their finite part
        ok = fin.any(axis=1)
        if not ok.any():
            return "raw"
        sub = sub[ok]  # (each row has a finite value: nanmedian does not warn)
        med = float(np.median(np.nanmedian(sub, axis=1)))
        hi = float(np.percentile(np.abs(sub[fin[ok]]), 99))
    else:
        med = float(np.median(np.median(sub, axis=1)))
        hi = float(np.percentile(np.abs(sub), 99))
    return "dF/F" if abs(med) < 0.5 and hi < 50 else "raw"


@dataclass(eq=False)
class TraceSource:
    """The traces being tuned, read once.

    ``origin`` is whatever the front end needs to know where they came from
    (the napari layers); the session never looks into it.  ``ground_truth``
    maps an ROI id to the frames of its true events (a sample's spikes);
    ``events_s`` maps an ROI id to event times in seconds imported from a file
    (:meth:`TuningSession.load_events_csv`), in seconds from the first frame
    (the plots' axis); ``t0`` and ``timestamps`` are the recording's clock (an
    NWB input's start time, irregular frame times), which the times of an events
    file are on.  ``label_index``
    (optional) is ``(ids, inverse)`` of the label image, for overlays that
    paint ROIs without allocating by the largest id.
    """

    traces: np.ndarray
    roi_ids: np.ndarray
    fs_hint: float | None = None
    name: str = ""
    unit: str = "raw"
    snr: np.ndarray | None = None
    noise: np.ndarray | None = None
    #: the sampling rate ``snr`` and ``noise`` were read at (the rate in use then)
    scores_fs: float | None = None
    ground_truth: dict | None = None
    events_s: dict | None = None
    origin: object = None
    label_index: tuple | None = None
    row: dict = field(default_factory=dict)
    #: where ``fs_hint`` was read, when not from the layers' metadata (e.g. a TIFF file)
    fs_origin: str | None = None
    #: time (s) of the first frame on the recording's clock, and its frames'
    #: irregular times (None: ``t0 + k / fs``); see ``napari_catune._timebase``
    t0: float = 0.0
    timestamps: np.ndarray | None = None
    #: a movie's ROI means ``F`` and neuropil means ``fneu`` (n, T) when read, and
    #: the coefficient ``traces`` were corrected with (``F - neuropil * fneu``;
    #: None: ``traces`` are ``F``); another coefficient needs no movie read
    F: np.ndarray | None = field(default=None, repr=False)
    fneu: np.ndarray | None = field(default=None, repr=False)
    neuropil: float | None = None
    #: the last rows' leading dark frames read (:meth:`dark_frames`)
    _dark_last: tuple = field(default=(None, None), repr=False)

    def dark_frames(self, rows, fs: float) -> np.ndarray:
        """The leading dark frames of the raw traces of ``rows``
        (:func:`napari_catune.events.leading_dark_frames`), kept for the last
        rows and rate asked: a slider move on the same ROIs reads no trace."""
        key = (tuple(int(r) for r in rows), float(fs))
        last_key, last = self._dark_last
        if last_key != key:
            from .events import dark_prefix, leading_dark_frames

            last = leading_dark_frames(self.traces[:, : dark_prefix(fs)][list(key[0])], fs)
            self._dark_last = (key, last)
        return last

    def __post_init__(self):
        self.roi_ids = np.asarray(self.roi_ids, dtype=np.int64)
        self.row = {int(r): i for i, r in enumerate(self.roi_ids)}
        n = self.traces.shape[0]
        if self.timestamps is not None:
            ts = np.asarray(self.timestamps, dtype=np.float64).ravel()
            # the clock of these traces only (not of a movie of another length)
            self.timestamps = ts if ts.shape == (self.traces.shape[1],) else None
        self.t0 = float(self.timestamps[0]) if self.timestamps is not None else float(self.t0 or 0.0)
        if self.snr is None:
            self.snr = np.full(n, np.nan)
        if self.noise is None:
            self.noise = np.full(n, np.nan)

    @property
    def n_frames(self) -> int:
        return int(self.traces.shape[1])

    @property
    def n_rois(self) -> int:
        return int(self.traces.shape[0])

    def truth_seconds(self, fs: float) -> dict | None:
        """ROI id -> true event times in seconds: the imported ones when there are,
        else the sample's spike frames at sampling rate ``fs``; None without any."""
        if self.events_s:
            return self.events_s
        if self.ground_truth:
            return {r: np.asarray(f, dtype=np.float64) / fs for r, f in self.ground_truth.items()}
        return None

    @classmethod
    def build(cls, traces, roi_ids=None, fs: float | None = None, **kw) -> "TraceSource":
        return build_source(traces, roi_ids, fs, **kw)


def build_source(traces, roi_ids=None, fs: float | None = None, *, fs_default: float = 30.0,
                 unit: str | None = None, **kw) -> TraceSource:
    """A :class:`TraceSource` with its SNR and noise per ROI (run it in a worker).

    Raises ValueError for traces that cannot be tuned (not 2-D, no ROIs,
    fewer than 2 frames, ids that do not match).
    """
    from .estimate import noise_sigma
    from .traces import roi_snr

    tr = np.asarray(traces, dtype=np.float64)
    if tr.ndim == 1:
        tr = tr[None]
    if tr.ndim != 2:
        raise ValueError(f"traces must be (n_rois, n_frames), got shape {tr.shape}")
    ids = np.arange(1, tr.shape[0] + 1) if roi_ids is None else np.asarray(roi_ids)
    if ids.shape != (tr.shape[0],):
        raise ValueError(f"traces of shape {tr.shape} come with {ids.size} ROI ids; "
                         "they must match (n, T)")
    if tr.shape[0] == 0:
        raise ValueError("there are no ROIs (all label pixels are 0); paint or load ROIs first")
    if tr.shape[1] < 2:
        raise ValueError(f"the traces have {tr.shape[1]} frame(s); at least 2 are needed")
    f = float(fs or fs_default)
    try:
        snr = by_rows(lambda x: roi_snr(x, f), tr)
    except Exception:  # noqa: BLE001 - a quality score is optional
        snr = None
    try:
        noise = by_rows(lambda x: noise_sigma(x, f), tr) if tr.shape[1] >= 16 else None
    except Exception:  # noqa: BLE001 - so is the noise read-out
        noise = None
    return TraceSource(tr, ids, float(fs) if fs else None, unit=unit or _guess_unit(tr),
                       snr=snr, noise=noise, scores_fs=f, **kw)


#: the most values taken at a time by the per-ROI read-outs (SNR, noise, R²,
#: events/min): their temporaries are several float64 copies of their input,
#: which for a whole recording would be many times its size
ROW_BLOCK_SAMPLES = 1 << 21


def by_rows(fn, *arrays) -> np.ndarray:
    """``fn`` (rows of each 2-D array in ``arrays`` to one float per row) on
    blocks of at most :data:`ROW_BLOCK_SAMPLES` values; the ``(n,)`` float64
    results.  ``fn`` must treat each row on its own (so the values do not
    depend on the blocks)."""
    n, T = arrays[0].shape
    step = max(1, ROW_BLOCK_SAMPLES // max(T, 1))
    if n <= step:
        return np.asarray(fn(*arrays), dtype=np.float64)
    out = np.empty(n)
    for a in range(0, n, step):
        out[a:a + step] = fn(*(x[a:a + step] for x in arrays))
    return out


# -------------------------------------------------------------------- solves
def event_rate(activity: np.ndarray, fs: float, noise=None, dark=None) -> np.ndarray:
    """Events per minute: runs of activity whose summed size is above a threshold
    (2 noise sigmas when known, and 5 % of the ROI's largest run).  A run that
    starts before the recording (frames 0-1 after the row's ``dark`` leading
    dark frames: the calcium present before it) is not counted, nor does it
    set the threshold, as in ``detect_events``' table
    (:func:`napari_catune.events.without_initial_runs`)."""
    from .events import without_initial_runs

    a = without_initial_runs(np.atleast_2d(np.asarray(activity, dtype=np.float64)), fs,
                             dark=dark)
    n, T = a.shape
    out = np.zeros(n)
    # a row ending in NaN padding: the rate over its finite part
    dur = np.full(n, float(T))
    if ends_padded(a):
        dur = np.maximum(row_lengths(a), 1).astype(np.float64)
    sig = np.full(n, 0.0) if noise is None else np.nan_to_num(np.asarray(noise, float))
    for i in range(n):
        ai = a[i, : int(dur[i])]
        on = ai > 1e-12 * max(float(ai.max(initial=0.0)), 1e-300)
        if not on.any():
            continue
        edges = np.flatnonzero(np.diff(np.concatenate(([0], on.view(np.int8), [0]))))
        starts, stops = edges[::2], edges[1::2]
        c = np.concatenate(([0.0], np.cumsum(ai)))
        size = c[stops] - c[starts]
        thr = max(2.0 * sig[i], 0.05 * float(size.max()))
        out[i] = np.count_nonzero(size > thr)
    return out / (dur / fs / 60.0)


def _r2(y: np.ndarray, fit: np.ndarray) -> np.ndarray:
    if ends_padded(fit):  # rows ending in NaN padding: r2 of the finite part
        lengths = row_lengths(fit)
        out = np.full(fit.shape[0], np.nan)
        for i in np.flatnonzero(lengths != BAD):
            L = int(lengths[i])
            out[i] = _r2(y[i : i + 1, :L], fit[i : i + 1, :L])[0]
        return out
    res = ((y - fit) ** 2).sum(axis=1)
    tot = ((y - y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tot > 0, 1.0 - res / np.where(tot > 0, tot, 1.0), np.nan)


@dataclass(eq=False)
class LiveResult:
    """The live fit of the selected ROIs (rows follow ``ids``), with read-outs.

    ``r2`` and ``events_per_min`` are computed when first read (the tuner shows
    them once a drag pauses: no need to delay every slider step's fit with them)."""

    gen: int
    ids: tuple
    params: TuningParams
    trace: np.ndarray  # what was fitted: the raw trace or its bandpassed version
    fit: np.ndarray
    activity: np.ndarray
    baseline: np.ndarray
    converged: np.ndarray
    noise: np.ndarray
    snr: np.ndarray
    elapsed: float = float("nan")
    _stats: tuple | None = field(default=None, repr=False)
    _init: np.ndarray | None = field(default=None, repr=False)
    _dark: np.ndarray | None = field(default=None, repr=False)

    def row(self, rid: int) -> int:
        return self.ids.index(int(rid))

    def _fit_stats(self) -> tuple:
        """(r2, events per minute), as ``solver.fit_stats`` computes them, on the
        calling thread alone (never waiting for a solver thread busy with a solve)."""
        if self._stats is None:
            self._stats = _solver.fit_stats(self.trace, self.fit, self.activity,
                                            self.params.fs, self.noise, threaded=False,
                                            dark=self.dark_frames)
        return self._stats

    @property
    def r2(self) -> np.ndarray:
        """Variance of each trace explained by its fit (NaN for a constant trace)."""
        return self._fit_stats()[0]

    @property
    def events_per_min(self) -> np.ndarray:
        """Events per minute in each activity (:func:`event_rate`)."""
        return self._fit_stats()[1]

    @property
    def dark_frames(self) -> np.ndarray:
        """Each row's leading dark frames (:func:`napari_catune.events.leading_dark_frames`
        of the raw traces: the tuner's solve hands them over; else read here once),
        for the read-outs and the activity row's y-range."""
        if self._dark is None:
            from .events import leading_dark_frames

            self._dark = leading_dark_frames(self.trace, self.params.fs)
        return self._dark

    @property
    def initial_ends(self) -> np.ndarray:
        """Per row, the frame where the runs of activity that start before the
        recording end (:func:`napari_catune.events.initial_run_ends`; 0: none):
        the tuner's activity row leaves them out of its y-range."""
        if self._init is None:
            from .events import initial_run_ends

            self._init = initial_run_ends(self.activity, self.params.fs, self.dark_frames)
        return self._init


class BufferPool:
    """float64 arrays reused by the live solves (results, warm starts, filtered
    traces): fresh memory costs a page fault per 4 kB, ~2-3 ms of CPU per
    8 x 54,000-frame slider step.  An array is handed out again only once
    nothing else refers to it (no result, view of one, or warm start): a fit
    still drawn is never overwritten."""

    KEEP = 16

    def __init__(self):
        self._arrays: list = []
        self._lock = threading.Lock()

    def take(self, shape) -> np.ndarray:
        shape = tuple(map(int, shape))
        with self._lock:
            for a in self._arrays:
                # 3: the list, ``a`` and getrefcount's argument
                if a.shape == shape and sys.getrefcount(a) == 3:
                    return a
            a = np.empty(shape)
            keep = [b for b in self._arrays if b.shape == shape][-(self.KEEP - 1):]
            self._arrays = keep + [a]
            return a


class BandpassCache:
    """The selected raw traces' real FFT, taken once per selection: filtering them
    for new taus or fs (:func:`~napari_catune.kernel.bandpass_filter`, the same
    numbers) is then a product and one inverse transform, ~2 ms for 8 x 54,000
    frames where a whole filter is ~12 ms."""

    def __init__(self, raw: np.ndarray):
        self.raw = raw
        self._spec = None
        self._buf = None
        self._lock = threading.Lock()

    def filtered(self, tau_rise: float, tau_decay: float, fs: float,
                 pool: BufferPool | None = None) -> np.ndarray:
        n = self.raw.shape[-1]
        if n < 8:
            return bandpass_filter(self.raw, tau_rise, tau_decay, fs)
        if self.raw.ndim == 2 and ends_padded(self.raw):
            # a row ending in NaN padding: each row on its finite part (the
            # transform of the whole row would be NaN throughout)
            return bandpass_finite_parts(self.raw, tau_rise, tau_decay, fs)
        gain = bandpass_gain(np.fft.rfftfreq(n, d=1.0 / fs), tau_rise, tau_decay, fs)
        with self._lock:
            if self._spec is None:
                self._spec = np.fft.rfft(np.asarray(self.raw, dtype=np.float64), axis=-1)
                self._buf = np.empty_like(self._spec)
            np.multiply(self._spec, gain, out=self._buf)
            out = pool.take(self.raw.shape) if pool is not None else None
            return np.fft.irfft(self._buf, n=n, axis=-1, out=out)


_F64 = np.dtype(np.float64)
_BOOL = np.dtype(bool)


def _as_nd(a, dtype, nd: int) -> np.ndarray:
    """``np.atleast_1d``/``np.atleast_2d`` (``nd``) of ``np.asarray(a, dtype)``;
    an array of that dtype and at least ``nd`` dimensions as it is (what
    those calls return for it, without them: the live path's results)."""
    if type(a) is np.ndarray and a.dtype == dtype and a.ndim >= nd:
        return a
    a = np.asarray(a, dtype=dtype)
    return np.atleast_2d(a) if nd == 2 else np.atleast_1d(a)


def _rows_of_one(rows: list) -> np.ndarray | None:
    """The float64 C-ordered 2-D array whose rows 0, 1, ... these views are,
    in that order (the warm starts of a step on the same ROIs: the last
    result's activity, which the pool never hands out while they refer to
    it), else None."""
    base = rows[0].base
    if not (type(base) is np.ndarray and base.ndim == 2 and base.shape[0] == len(rows)
            and base.dtype == _F64 and base.flags.c_contiguous):
        return None
    start, step, shape, strides = base.ctypes.data, base.strides[0], base.shape[1:], base.strides[1:]
    for k, r in enumerate(rows):
        if (r.base is not base or r.shape != shape or r.strides != strides
                or r.ctypes.data != start + k * step):
            return None
    return base


@dataclass(eq=False)
class SolveRequest:
    """One live solve: built by :meth:`TuningSession.request`, run anywhere
    (``run()`` fills ``result`` or ``error``), then handed to ``accept``."""

    gen: int
    ids: tuple
    source: TraceSource
    params: TuningParams
    traces: np.ndarray
    filtered: np.ndarray | None
    init: np.ndarray | None
    result: LiveResult | None = None
    error: Exception | None = None
    #: the selection's transformed traces (None: filter them from scratch)
    spectra: BandpassCache | None = None
    elapsed: float = float("nan")
    #: CPU time of the thread that ran it: on a worker thread the wall time also
    #: counts waits for the GIL while the GUI repaints; one row solves on this
    #: thread alone, so its CPU time is what the same solve costs in place
    cpu: float = float("nan")
    #: where the results go (None: fresh arrays)
    buffers: BufferPool | None = None

    def small_step_from(self, result) -> bool:
        """Whether this is a slider step from ``result`` (same ROIs and model, every
        number within 10 %): its warm solve then costs what the last ones did,
        where a preset or a typed value may cost a cold solve's time."""
        if result is None or result.ids != self.ids:
            return False
        a, b = result.params, self.params
        if a.baseline != b.baseline or a.filter_enabled != b.filter_enabled:
            return False
        for k in ("tau_rise", "tau_decay", "fs", "lam"):
            x, y = getattr(a, k), getattr(b, k)
            if not (x == y or (x > 0 and abs(y / x - 1) <= 0.1)):
                return False
        return True

    def run(self) -> "SolveRequest":
        t0 = time.perf_counter()
        c0 = time.thread_time()
        try:
            p = self.params
            y = self.traces
            if p.filter_enabled:
                if self.filtered is None:
                    self.filtered = (self.spectra or BandpassCache(y)).filtered(
                        p.tau_rise, p.tau_decay, p.fs, self.buffers)
                # filtered once here: the solver would filter the same way, and the
                # plot shows what was fitted
                y = self.filtered
            kw = p.solver_kwargs()  # the baseline model and its drift scale, as Apply to all
            kw.update(baseline=str(p.baseline), filter_enabled=False)  # filtered above
            pool = self.buffers
            if pool is not None and y.ndim == 2 and y.dtype == np.float64:
                n, T = y.shape
                kw["out"] = (pool.take((n, T)),
                             pool.take((n, T if baseline_mode(p.baseline) == "drift" else 1)),
                             pool.take((n, T)))
            r = _solver.run_deconvolution_full(
                y, p.fs, p.tau_rise, p.tau_decay, p.lam, init=self.init, **kw)
            act = _as_nd(r.activity, _F64, 2)
            fit = _as_nd(r.reconvolution, _F64, 2)
            rows = [self.source.row[i] for i in self.ids]
            noise = self.source.noise[rows]
            self.result = LiveResult(
                self.gen, self.ids, p, y, fit, act, _as_nd(r.baseline, _F64, 1),
                _as_nd(r.converged, _BOOL, 1), noise, self.source.snr[rows],
                _dark=self.source.dark_frames(rows, p.fs))  # of the raw traces, as Apply
        except Exception as e:  # noqa: BLE001 - reported by whoever accepts it
            self.error = e
        self.elapsed = time.perf_counter() - t0
        self.cpu = time.thread_time() - c0
        if self.result is not None:
            self.result.elapsed = self.elapsed
        return self


@dataclass(eq=False)
class BatchResult:
    """Apply to all: every ROI solved with ``params``; per-ROI features."""

    params: TuningParams
    roi_ids: np.ndarray
    activity: np.ndarray
    reconvolution: np.ndarray
    baseline: np.ndarray
    converged: np.ndarray
    features: dict
    activity_max: float
    fit_max: float
    #: ids of the ROIs not solved (their traces hold NaN or Inf)
    skipped: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    #: with the bandpass on: the band-passed traces, which reconvolution,
    #: baseline and the features baseline and r2 describe (None otherwise)
    fitted_trace: np.ndarray | None = None


# ------------------------------------------------------------------- session
class TuningSession:
    """State of one tuning session; see the module docstring.

    Signals
    -------
    source_changed(TraceSource | None)
    selection_changed(tuple)         the selected ROI ids, in display order
    params_changed(TuningParams)     once per accepted change
    result_changed(LiveResult)       the newest live fit only
    failed(str)                      a live solve failed (message for the user)
    pinned_changed(LiveResult | None)
    batch_changed(BatchResult | None)
    truth_changed(dict | None)       imported event times (ROI id -> seconds)
    neuropil_changed(float | None)   the neuropil coefficient a movie's traces
                                     are corrected with (None: off)
    """

    source_changed = Signal(object)
    selection_changed = Signal(tuple)
    params_changed = Signal(object)
    result_changed = Signal(object)
    failed = Signal(str)
    pinned_changed = Signal(object)
    batch_changed = Signal(object)
    truth_changed = Signal(object)
    neuropil_changed = Signal(object)

    HISTORY = 100

    def __init__(self, params: TuningParams | None = None):
        self._params = params or TuningParams(**DEFAULT_PARAMS)
        # lambda as nobody chose it (the dF/F default): a source sets it from
        # its noise (start_lam_from_noise) until a user, a file or undo moves it
        self._lam_default = params is None
        self.source: TraceSource | None = None
        self._selection: tuple = ()
        self._gen = 0
        self._drawn_gen = 0
        self._failure = None  # the last failure said (not repeated on every solve)
        self._warm: dict[int, tuple[int, np.ndarray]] = {}
        self._sel: dict | None = None  # the selected rows' traces (and filtered copy)
        self._buffers = BufferPool()
        self.result: LiveResult | None = None
        self.pinned: LiveResult | None = None
        self.batch: BatchResult | None = None
        self._undo: list[TuningParams] = []
        self._redo: list[TuningParams] = []
        self._last_push = -math.inf
        #: the front end's store (e.g. traces already extracted per layer pair)
        self.cache: dict = {}
        #: the front end's time window ``(x0, x1, n_frames, fs)`` (seconds, of that
        #: recording): a reopened dock shows it again, like the selection
        self.view_window: tuple | None = None
        # neuropil correction of traces read from a movie (see set_neuropil)
        self._neuropil_on = False
        self._neuropil_coef = 0.7
        #: how requests are run: ``submit(request)``; the default solves at once
        self.submit = self._run_now

    # ------------------------------------------------------------- params
    @property
    def params(self) -> TuningParams:
        return self._params

    def set_params(self, p: TuningParams | dict | None = None, *, record: bool = True,
                   **changes) -> TuningParams:
        """Validate and take new parameters (a TuningParams, a dict, or fields).

        Raises ValueError (naming the parameter) and keeps the old ones when
        invalid.  A change is recorded for :meth:`undo` unless ``record`` is
        False; a burst of changes within half a second is one step.
        """
        if p is not None or "lam" in changes:
            self._lam_default = False  # chosen: a slider, a file, Estimate, undo
        if p is None:
            p = self._params.replace(**changes) if changes else self._params
        elif not isinstance(p, TuningParams):
            try:
                p = TuningParams(**{**self._params.to_dict(), **dict(p), **changes})
            except TypeError as e:
                raise ValueError(f"parameters not understood: {e}") from None
        elif changes:
            p = p.replace(**changes)
        if p == self._params:
            return p
        if record:
            now = time.monotonic()
            if now - self._last_push > 0.5:
                self._undo.append(self._params)
                del self._undo[:-self.HISTORY]
            self._last_push = now
            self._redo.clear()
        self._params = p
        self.params_changed.emit(p)
        self.resolve()
        return p

    def undo(self) -> bool:
        return self._step_history(self._undo, self._redo)

    def redo(self) -> bool:
        return self._step_history(self._redo, self._undo)

    def _step_history(self, source: list, other: list) -> bool:
        """Restore the newest parameters of ``source``; the current ones go to ``other``."""
        if not source:
            return False
        other.append(self._params)
        p = source.pop()
        self._last_push = -math.inf
        if p.lam != self._params.lam:
            self._lam_default = False
        self._params = p
        self.params_changed.emit(p)
        self.resolve()
        return True

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    # ----------------------------------------------------------- neuropil
    @property
    def neuropil(self) -> float | None:
        """The coefficient a movie's traces are corrected with (``F - c*Fneu``,
        suite2p's surround masks), or None when the correction is off.  Traces
        that come without a movie (a suite2p folder: already ``F - 0.7*Fneu``)
        are never corrected again."""
        return self._neuropil_coef if self._neuropil_on else None

    @property
    def neuropil_coefficient(self) -> float:
        """The coefficient chosen, also while the correction is off."""
        return self._neuropil_coef

    def set_neuropil(self, on: bool | None = None, coefficient=None) -> float | None:
        """Turn the correction on or off and/or choose its coefficient (validated
        by :func:`check_neuropil`: ValueError keeps the current choice).  Emits
        ``neuropil_changed`` when :attr:`neuropil` changes; returns it."""
        c = self._neuropil_coef if coefficient is None else check_neuropil(coefficient)
        was = self.neuropil
        self._neuropil_coef = c
        if on is not None:
            self._neuropil_on = bool(on)
        if self.neuropil != was:
            self.neuropil_changed.emit(self.neuropil)
        return self.neuropil

    # ------------------------------------------------------------- source
    def set_source(self, src: TraceSource | None) -> None:
        """A new source: selection, warm starts and results start over."""
        self.cancel()
        self.source = src
        self._selection = ()
        self._sel = None
        self._warm.clear()
        self.result = None
        self.batch = None
        if self.pinned is not None:
            self.pinned = None
            self.pinned_changed.emit(None)
        self.source_changed.emit(src)
        self.selection_changed.emit(())

    @property
    def lam_is_default(self) -> bool:
        """Whether lambda is still the starting default nobody chose (nor a
        source's noise replaced)."""
        return self._lam_default

    def start_lam_from_noise(self) -> float | None:
        """When lambda was never chosen (the dF/F default 0.05, not moved, not
        loaded): set it from the source's noise by Estimate's lambda rule
        (:func:`~napari_catune.estimate.lambda_for_noise` of the median noise at
        the current kernel and rate, no kernel search).  The default is ~0.02
        noise sigmas on raw fluorescence (sigma ~15): every noise wiggle is
        "activity" then, with R^2 ~1.  Returns the lambda set, else None (a
        chosen lambda, no source or no noise read), to three significant
        digits; None too when lambda already is that value.  Not recorded for undo;
        lambda counts as unchosen still, so the next source sets its own."""
        from .estimate import Z_DEFAULT, lambda_for_noise

        src = self.source
        if not self._lam_default or src is None or src.noise is None:
            return None
        noise = np.asarray(src.noise, dtype=np.float64)
        noise = noise[np.isfinite(noise) & (noise > 0)]
        if not noise.size:
            return None
        p = self._params
        lam = lambda_for_noise(float(np.median(noise)), p.tau_rise, p.tau_decay, p.fs, Z_DEFAULT)
        # three significant digits: what the box shows is the value (a start, not a fit)
        lam = float(f"{lam:.3g}")
        if not (math.isfinite(lam) and lam > 0) or lam == p.lam:
            return None  # (the same traces again, e.g. a neuropil read cancelled: nothing new)
        try:
            self.set_params(lam=lam, record=False)
        except ValueError:
            return None
        self._lam_default = True
        return self._params.lam

    # ---------------------------------------------------------- selection
    @property
    def selection(self) -> tuple:
        return self._selection

    def select(self, ids, add: bool = False) -> tuple[list[int], bool]:
        """Select ROIs by id; ``add`` keeps the current ones (one id given that
        is selected already toggles it off).  At most :data:`MAX_ROIS`: the
        last ones asked for are kept.

        Returns ``(unknown ids that were skipped, whether the list was cut)``.
        """
        src = self.source
        ids = [int(i) for i in np.atleast_1d(np.asarray(ids, dtype=np.int64))]
        if src is None:
            return ids, False
        unknown = [i for i in ids if i not in src.row]
        ids = [i for i in ids if i in src.row]
        new = list(self._selection) if add else []
        for i in ids:
            if i in new:
                if add and len(ids) == 1:
                    new.remove(i)
            else:
                new.append(i)
        cut = len(new) > MAX_ROIS
        if cut:
            new = new[-MAX_ROIS:]
        self._set_selection(tuple(new))
        return unknown, cut

    def _set_selection(self, sel: tuple) -> None:
        if sel == self._selection:
            return
        self._selection = sel
        self._sel = None
        self.result = None
        self.selection_changed.emit(sel)
        self.resolve()

    def most_active(self, k: int = 4) -> list[int]:
        """The ``k`` ROI ids with the highest SNR."""
        src = self.source
        if src is None:
            return []
        order = np.argsort(-np.nan_to_num(src.snr, nan=-np.inf), kind="stable")
        return [int(i) for i in src.roi_ids[order[:k]]]

    def random_rois(self, k: int = 4, seed=None) -> list[int]:
        """``k`` ROI ids drawn at random (without replacement)."""
        src = self.source
        if src is None:
            return []
        rng = np.random.default_rng(seed)
        pick = rng.choice(src.n_rois, size=min(k, src.n_rois), replace=False)
        return [int(i) for i in src.roi_ids[np.sort(pick)]]

    # --------------------------------------------------------- live solves
    @property
    def pending(self) -> bool:
        """True while a requested result has not been accepted yet."""
        return self._drawn_gen < self._gen

    def cancel(self) -> None:
        """Forget requests in flight: nothing older than now may be shown."""
        self._gen += 1
        self._drawn_gen = self._gen

    def resolve(self) -> None:
        """Request a solve of the selection with the current parameters."""
        req = self.request()
        if req is not None:
            self.submit(req)

    def request(self) -> SolveRequest | None:
        """A new live request (the newest generation), or None with nothing selected."""
        src, ids = self.source, self._selection
        if src is None or not ids:
            return None
        p = self._params
        sel = self._sel
        if sel is None or sel["ids"] != ids or sel["source"] is not src:
            rows = [src.row[i] for i in ids]
            raw = src.traces[rows]
            sel = self._sel = {"ids": ids, "source": src, "raw": raw,
                               "filtered": None, "key": None, "spectra": BandpassCache(raw)}
        key = (p.tau_rise, p.tau_decay, p.fs)
        filtered = sel["filtered"] if p.filter_enabled and sel["key"] == key else None
        init = None
        if len(ids) == 1:
            # one ROI: its warm start as it is (a row of the last result's
            # activity, which nothing writes while this view holds it: the
            # pool never hands it out for this solve's results), not a copy
            w = self._warm.get(ids[0])
            if w is not None:
                init = w[1][np.newaxis]
        elif all(i in self._warm for i in ids):
            rows = [self._warm[i][1] for i in ids]
            init = _rows_of_one(rows)  # (a slider step on the same ROIs: no copy)
            if init is None:
                init = np.stack(rows, out=self._buffers.take(sel["raw"].shape))
        self._gen += 1
        return SolveRequest(self._gen, ids, src, p, sel["raw"], filtered, init,
                            spectra=sel["spectra"], buffers=self._buffers)

    def accept(self, req: SolveRequest) -> bool:
        """Take a finished request: keep its warm starts, and show it when it is
        the newest for the current source and selection.  Returns True if shown."""
        if req.error is not None:
            if req.gen > self._drawn_gen:
                self._drawn_gen = req.gen
                msg = failure_text(req.error, "Deconvolution",
                                   "Adjust the parameters or the ROI selection.")
                if msg != self._failure:  # said once until a solve succeeds
                    self._failure = msg
                    self.failed.emit(msg)
            return False
        res = req.result
        if res is None or req.source is not self.source:
            return False
        for i, rid in enumerate(req.ids):
            # a late result must not replace a warm start from newer parameters
            if req.gen >= self._warm.get(rid, (-1, None))[0]:
                self._warm[rid] = (req.gen, res.activity[i])
        if req.gen <= self._drawn_gen or req.ids != self._selection:
            return False
        self._drawn_gen = req.gen
        self._failure = None
        sel = self._sel
        if req.params.filter_enabled and sel is not None and sel["ids"] == req.ids:
            sel["filtered"] = req.filtered
            sel["key"] = (req.params.tau_rise, req.params.tau_decay, req.params.fs)
        self.result = res
        self.result_changed.emit(res)
        return True

    def warm_start(self, rid: int):
        w = self._warm.get(int(rid))
        return None if w is None else w[1]

    def _run_now(self, req: SolveRequest) -> None:
        self.accept(req.run())

    # -------------------------------------------------------------- pinning
    def pin(self) -> LiveResult | None:
        """Keep the current fit to compare later ones with (None: nothing to pin)."""
        self.pinned = self.result
        self.pinned_changed.emit(self.pinned)
        return self.pinned

    def unpin(self) -> None:
        self.pinned = None
        self.pinned_changed.emit(None)

    # --------------------------------------------------------- ground truth
    def load_events_csv(self, path) -> dict:
        """Import event times per ROI from a CSV (see
        :func:`napari_catune.events.read_event_times` for the layouts) as the
        source's ground truth, drawn as ticks.  The file's times are on the
        recording's clock (``source.t0``, ``source.timestamps``: an NWB input
        starting at 12.5 s has its first frame at 12.5 s, as in the results and
        events this package writes); they are kept in seconds from the first
        frame.  Returns a summary: ``events``
        and ``rois`` kept, ``unknown`` ROI ids (not in the source, skipped),
        ``late`` events after the last frame (kept), ``early`` events before
        the first frame (kept).  Raises ValueError for a
        file that cannot be read, or when no ROI in it is in the source.
        """
        from ._timebase import to_first_frame
        from .events import read_event_times

        src = self.source
        if src is None:
            raise ValueError("no traces are open: open the data (and its ROIs) before "
                             "loading their events")
        times = read_event_times(path)
        fs = self._params.fs
        kept = {r: to_first_frame(t, fs, src.t0, src.timestamps)
                for r, t in times.items() if r in src.row}
        unknown = sorted(r for r in times if r not in src.row)
        if not kept:
            raise ValueError(f"none of the {len(times)} ROI id(s) in the events file "
                             f"({unknown[:10]}) is an ROI of '{src.name}' (ids "
                             f"{src.roi_ids[:10].tolist()}...); the ROI column must hold "
                             "the label values")
        duration = src.n_frames / fs
        late = int(sum(int((t >= duration).sum()) for t in kept.values()))
        early = int(sum(int((t < 0).sum()) for t in kept.values()))
        self.set_events(kept)
        return {"events": int(sum(t.size for t in kept.values())), "rois": len(kept),
                "unknown": unknown, "late": late, "early": early}

    def set_events(self, events: dict | None) -> None:
        """Set (or with None clear) the source's imported event times."""
        if self.source is None:
            return
        self.source.events_s = events or None
        self.truth_changed.emit(self.source.events_s)

    # ---------------------------------------------------------------- batch
    def set_batch(self, batch: BatchResult | None) -> None:
        self.batch = batch
        self.batch_changed.emit(batch)


# ------------------------------------------------------------------ long jobs
def _row_medians(base: np.ndarray) -> np.ndarray:
    """Each row's median, over its finite part when it ends in NaN padding."""
    if ends_padded(base):
        return on_finite_parts(base, lambda v: np.median(v, axis=1))
    return np.median(base, axis=1)


def _rows(a: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``a[ok]``, without copying ``a`` when every row is kept."""
    return a if ok.all() else a[ok]


#: the per-ROI features every results file holds (``features.<name>`` in
#: ``.npz``, the NWB ``rois`` table, the features CSV), in this order; the
#: GUI's Apply to all and the CLI's ``deconvolve`` compute them with
#: :func:`roi_features`
FEATURE_NAMES = ("roi_id", "snr", "event_rate_hz", "r2", "baseline", "converged", "iterations",
                 "skipped")


def roi_features(traces, *, params: TuningParams, roi_ids, activity, fit, baseline, converged,
                 iterations, skipped, fitted_trace=None, snr=None, noise=None) -> dict:
    """The per-ROI features (:data:`FEATURE_NAMES`) of deconvolved rows.

    ``traces`` are the input rows (n, T); ``activity``, ``fit``, ``baseline``
    (n,) or (n, T), ``converged``, ``iterations`` and ``skipped`` the solver's
    answers for them; ``fitted_trace`` the band-passed rows when the bandpass
    is on (r2 is of the trace the solver fitted).  ``snr`` and ``noise`` (n,)
    may be given when already known (the tuner's); otherwise they are read
    from ``traces`` as the tuner does (:func:`napari_catune.traces.roi_snr`,
    ``estimate.noise_sigma``).  Every value is per row, so the rows may be
    given a block at a time (the CLI's streamed outputs).  Skipped rows
    (NaN or Inf traces) get NaN scores.
    """
    from .estimate import noise_sigma
    from .events import leading_dark_frames
    from .traces import roi_snr

    p = params
    traces = np.asarray(traces)
    n = traces.shape[0]
    skipped = np.asarray(skipped, dtype=bool).reshape(n)
    ok = ~skipped
    if snr is not None:
        snr = np.asarray(snr, dtype=np.float64)
    if snr is None or snr.shape != (n,) or not np.all(np.isfinite(snr[ok])):
        try:
            snr = np.full(n, np.nan)
            snr[ok] = by_rows(lambda x: roi_snr(x, p.fs), _rows(traces, ok))
        except Exception:  # noqa: BLE001 - a quality score is optional
            snr = np.full(n, np.nan)
    else:
        snr = np.where(ok, snr, np.nan)  # a skipped row has no score (as when read here)
    if noise is not None:
        noise = np.asarray(noise, dtype=np.float64)
        noise = np.where(ok, noise, np.nan) if noise.shape == (n,) else None
    if noise is None and traces.shape[1] >= 16 and ok.any():
        try:
            noise = np.full(n, np.nan)
            noise[ok] = by_rows(lambda x: noise_sigma(x, p.fs), _rows(traces, ok))
        except Exception:  # noqa: BLE001 - so is the noise read-out
            noise = None
    act = np.asarray(activity)
    rec = np.asarray(fit)
    base = np.asarray(baseline)
    rate, r2 = np.full(n, np.nan), np.full(n, np.nan)
    if ok.any():
        # r2 of the fit against the trace it fitted (band-passed when the filter is on)
        y = _rows(fitted_trace if (p.filter_enabled and fitted_trace is not None) else traces, ok)
        nz = np.zeros(n) if noise is None else np.asarray(noise, float)
        dark = leading_dark_frames(traces, p.fs)  # (reads the first seconds only)
        rate[ok] = by_rows(
            lambda a, s, d: event_rate(a, p.fs, None if noise is None else s[:, 0], d[:, 0]),
            _rows(act, ok), _rows(nz[:, None], ok), _rows(dark[:, None], ok)) / 60.0
        r2[ok] = by_rows(lambda y_, f_: _r2(np.asarray(y_, np.float64), f_), y, _rows(rec, ok))
    return {
        "roi_id": np.asarray(roi_ids, dtype=np.int64).copy(),
        "snr": np.asarray(snr, float),
        "event_rate_hz": rate,
        "r2": r2,
        # one number per ROI: the median of a per-sample baseline
        "baseline": _row_medians(base) if base.ndim == 2 else base.astype(np.float64),
        "converged": np.asarray(converged, dtype=bool).copy(),
        "iterations": np.asarray(iterations, dtype=np.int64).copy(),
        "skipped": skipped.copy(),
    }


# Samples per Apply-to-all chunk: Cancel waits for the chunk under way, so a
# chunk is a fixed amount of solving, not a share of the run.  Compiled:
# ~2 million samples/s on 2 cores (540 x 54,086 frames in 13-20 s), so ~0.5 s
# (19 rows of 54,086; fewer, smaller chunks would leave a core idle longer at
# each chunk's last row).  The NumPy solver that answers while numba compiles
# in the background is ~10x slower: ~0.3-0.6 s per 65,536 samples, and a
# one-row chunk there runs on one thread (solver._n_threads), leaving the
# other core to the compile.
APPLY_CHUNK_SAMPLES = 1 << 20
APPLY_CHUNK_SAMPLES_NUMPY = 1 << 16
APPLY_CHUNK_MAX_ROWS = 64


def apply_chunk_rows(T: int, compiled: bool | None = None) -> int:
    """Rows per Apply-to-all chunk for rows of ``T`` samples: at least 1, at
    most :data:`APPLY_CHUNK_MAX_ROWS`, else a fixed number of samples, fewer
    on the NumPy solver (``compiled`` False; None: whichever answers now)."""
    if compiled is None:
        compiled = _solver.compiled_ready()
    budget = APPLY_CHUNK_SAMPLES if compiled else APPLY_CHUNK_SAMPLES_NUMPY
    return max(1, min(APPLY_CHUNK_MAX_ROWS, budget // max(int(T), 1)))


class _RowOffsetSink:
    """``sink`` seen from rows ``offset..``: a chunk's iter_batch writes its rows
    where they belong in the whole run."""

    def __init__(self, sink, offset: int):
        self._sink, self._offset = sink, int(offset)
        self.per_sample = sink.per_sample

    def write(self, a: int, b: int, **fields) -> None:
        self._sink.write(a + self._offset, b + self._offset, **fields)


def _shifted(gen, offset: int, total: int):
    """Yield ``gen``'s ``(done, _)`` as ``(offset + done, total)``; return its value."""
    while True:
        try:
            done, _ = next(gen)
        except StopIteration as stop:
            return stop.value
        yield offset + done, total


def apply_job(traces: np.ndarray, roi_ids, params: TuningParams, *, snr=None, noise=None):
    """Generator: solve every row in chunks (:func:`napari_catune.batch.iter_batch`,
    the loop of ``napari-catune deconvolve``), yielding ``(done, total)``; returns a
    :class:`BatchResult` with every per-ROI feature computed (nothing left for a
    GUI thread to do).  Rows holding NaN or Inf are not solved: their results are
    NaN, ``converged`` False, and ``BatchResult.skipped`` lists their ids.  Stop
    iterating to cancel between chunks."""
    from .batch import ArraySink, iter_batch, per_sample_baseline

    traces = np.asarray(traces)
    n, T = traces.shape
    p = params
    # "drift" and "rolling" give a baseline per sample, "scalar" one per ROI
    sink = ArraySink(n, T, per_sample_baseline(p), fitted=p.filter_enabled)
    bad = []
    a = 0
    while a < n:
        # each chunk sized for the solver answering now (the NumPy solver until
        # a background compile is ready, then the compiled one): Cancel waits
        # for one chunk at most
        b = min(n, a + apply_chunk_rows(T))
        summary = yield from _shifted(iter_batch(traces[a:b], p, _RowOffsetSink(sink, a),
                                                 chunk=b - a), a, n)
        bad.append(a + summary.skipped)
        a = b
    skipped = np.concatenate(bad) if bad else np.empty(0, dtype=np.int64)
    act, rec, base, conv = sink.activity, sink.fit, sink.baseline, sink.converged
    ids = np.asarray(roi_ids, dtype=np.int64).copy()
    features = roi_features(traces, params=p, roi_ids=ids, activity=act, fit=rec, baseline=base,
                            converged=conv, iterations=sink.iterations, skipped=sink.skipped,
                            fitted_trace=sink.fitted_trace if p.filter_enabled else None,
                            snr=snr, noise=noise)
    features = {"index": ids.copy(), **features}
    return BatchResult(p, ids, act, rec, base, conv, features,
                       float(np.nanmax(act, initial=0.0)), float(np.nanmax(rec, initial=0.0)),
                       skipped=ids[skipped],
                       fitted_trace=sink.fitted_trace if p.filter_enabled else None)


def failure_text(error, what: str, advice: str) -> str:
    """The message when ``what`` (a solve, Apply to all) failed with ``error``:
    ``advice`` about the parameters or data, except for a bad ``CATUNE_NUM_THREADS``
    setting, whose own message names the setting and its fix."""
    try:
        _solver.check_num_threads()
    except ValueError as e:
        if str(e) == str(error):
            return f"{what} failed: {e}."
    return f"{what} failed: {error}. {advice}"


def at_data_rate(p: TuningParams, data_fs: float | None) -> tuple[TuningParams, bool]:
    """Loaded parameters ``p`` for data recorded at ``data_fs`` Hz (None: unknown).

    Returns ``(params, mismatch)``: when the data states its rate, ``params`` has
    that rate (the time constants are in seconds, so they carry over) and
    ``mismatch`` says whether ``p.fs`` was another rate (beyond
    :func:`~napari_catune.params.fs_matches`), as the CLI's ``deconvolve`` refuses;
    without a known rate, ``p`` itself and False.
    """
    if not data_fs:
        return p, False
    try:
        return p.replace(fs=float(data_fs)), not fs_matches(p.fs, data_fs)
    except ValueError:  # a rate the core refuses: the file's stays
        return p, False


def estimate_job(traces: np.ndarray, params: TuningParams, cancel=None) -> TuningParams:
    """Estimated parameters for ``traces``, keeping the sampling rate, filter and
    baseline of ``params`` (those are known, not estimated).  ``cancel`` (a
    threading.Event) stops the estimation between traces
    (:class:`napari_catune.estimate.EstimateCancelled`)."""
    from . import estimate as _estimate

    p = _estimate.estimate_params(traces, params.fs, cancel=cancel)
    return p.replace(fs=params.fs, filter_enabled=params.filter_enabled,
                     baseline=params.baseline)


# -------------------------------------------------------------- live thread
class LiveSolver:
    """A background solve thread; the newest request replaces any waiting one.

    ``done(request)`` is called on the solve thread once a request has run.
    The thread ends after a few idle seconds and is restarted on demand.
    """

    IDLE_EXIT_S = 2.0
    #: the interpreter's switch interval while a request runs
    SWITCH_INTERVAL_S = 0.0005

    def __init__(self, done):
        self._done = done
        self._cv = threading.Condition()
        self._pending = None
        self._stop = False
        self._thread = None
        self._busy = False

    def submit(self, req: SolveRequest) -> None:
        with self._cv:
            if self._stop:
                return
            self._pending = req
            self._cv.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="catune-live",
                                                daemon=True)
                self._thread.start()

    @property
    def idle(self) -> bool:
        with self._cv:
            return self._pending is None and not self._busy

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._pending = None
            self._cv.notify()

    def _loop(self) -> None:
        while True:
            with self._cv:
                if self._pending is None and not self._stop:
                    self._cv.wait(self.IDLE_EXIT_S)
                if self._stop or self._pending is None:
                    self._thread = None
                    return
                req, self._pending = self._pending, None
                self._busy = True
            # while the GUI thread paints (Python code holding the GIL), every
            # return from a compiled, GIL-free stretch of the solve waits up to
            # the switch interval (5 ms by default) for the GIL: ask for it sooner
            old = sys.getswitchinterval()
            sys.setswitchinterval(min(old, self.SWITCH_INTERVAL_S))
            try:
                req.run()
                self._done(req)
                if req.result is not None and self._pending is None:
                    req.result._fit_stats()  # the read-outs, while the GUI draws the fit
            except RuntimeError:  # the receiver is gone (widget deleted)
                with self._cv:
                    self._busy = False
                    self._thread = None
                return
            finally:
                sys.setswitchinterval(old)
                with self._cv:
                    self._busy = False
