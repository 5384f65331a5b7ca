"""Automatic parameters, built and checked on real recordings with ground truth.

* **noise** sigma of each trace: the level of its high-frequency power
  spectrum (Welch, upper half of the band), where calcium transients carry
  little power.  Reported, and the unit of lambda: ``lambda G = z sigma
  ||h||_2`` puts the L1 threshold ``z`` noise standard deviations above the
  kernel-matched noise, so the same ``z`` means the same sparsity in dF/F,
  photon counts or uint16 movie units (:func:`lambda_for_noise`).
* **tau_decay**: the kernel under which the data are explained most cheaply,
  i.e. the minimum over tau_decay of the solved CaTune objective (the
  "profile" objective) of each noise-normalised trace, with its own L1
  threshold (``_SEARCH_Z`` = 1.75 noise deviations, stricter than lambda's
  1.5: a laxer one shortens the decay as the noise rises).  Evaluated on a
  log-spaced grid of 0.05-3 s with parabolic refinement, on the trace
  block-averaged to ~30 Hz (the decay is slow against that rate; the
  estimate barely moves with the rate, and it costs a fifth of the time at
  150 Hz).  The grid stops once the objective has clearly risen, and each
  solve is capped, so mismatched slow kernels cost little.  On the real
  recordings of bench/bench_realgt.py, this criterion lands at or next to
  the best fixed tau_decay per dataset, where fitting the kernel to the
  inferred activity (our previous estimator) stayed near its starting value.
* **tau_rise**: ``tau_rise = 0.1 tau_decay``.  Sub-frame rise times cannot be
  read from 30-160 Hz data (fitting it by the same criterion lowered the
  spike correlation on every real dataset); a tenth of the decay gives a
  time to peak of ~0.26 tau_decay, in line with the resolvable burst
  intervals of GCaMP6 (50-75 ms GCaMP6f, 100-150 ms GCaMP6s; Chen et al.
  2013, Nature 499:295) and never a degenerate kernel.
* **pooled**: given many ROIs, each of the (at most 40) highest-SNR traces
  gets its own estimate and the median is returned, so a few bad ROIs
  cannot move it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ._padding import check_no_bad, ends_padded, on_finite_parts, per_row, row_lengths
from .kernel import _check_one, build_kernel
from .params import TuningParams

__all__ = ["estimate_params", "estimate_report", "EstimateReport", "EstimateCancelled",
           "noise_sigma", "lambda_for_noise", "DEFAULTS", "RISE_RATIO", "Z_DEFAULT",
           "RECOMMENDED_BASELINE"]

# what a flat or noise-only input gets (a GCaMP6f-like kernel)
DEFAULTS = {"tau_rise": 0.05, "tau_decay": 0.5, "lam": 0.1}

# L1 threshold in noise standard deviations.  On the real recordings the
# spike correlation changes little with z (median of datasets 0.849, 0.847,
# 0.842, 0.836 at z = 0.5, 1, 1.5, 2.5; 4 rows per dataset): densely firing
# cells want it low, sparse noisy ones higher.  1.5 keeps white noise quiet
# and beats OASIS on calab's simulated presets (at z = 1 it does not on
# jgcamp8f); a per-trace z from the discrepancy principle (residual variance
# = noise variance, as OASIS's constrained deconvolution) did no better (0.842).
Z_DEFAULT = 1.5
# tau_rise = RISE_RATIO * tau_decay (see the module docstring)
RISE_RATIO = 0.1
_MIN_SAMPLES = 100
# noise_sigma: an upper band with less than this fraction of the power
# density of the octave below it has been filtered (see noise_sigma)
_LOWPASS_RATIO = 0.01
# the baseline model of estimated parameters (README, "Which default")
RECOMMENDED_BASELINE = "drift"
# per-trace estimates pooled by their median: at most this many traces
_MAX_TRACES = 40
# the kernel search: rate it runs at, tau_decay grid, solver steps per point
_SEARCH_FS = 30.0
_TD_GRID = (0.05, 3.0, 13)
_SEARCH_ITERS = 300
# the kernel search's own L1 threshold in noise deviations (not lambda's z):
# at lambda's 1.5 a shorter kernel lowers the profile objective by fitting
# noise with small events, so the decay read short as the noise rose (0.39-0.84
# of the truth for six simulated indicators at Cascade noise level 3, 30 Hz);
# 1.75 gives 0.49-0.97 there and keeps calab's jgcamp8f preset within 15 %
# (2.0 does not: 1.153; it also cost realgt DS32 0.006)
_SEARCH_Z = 1.75
# the per-row measures (noise, scale, spread, SNR) run on groups of rows of
# at most this many samples: their temporaries (Welch's overlapping segments,
# their FFT: ~10 float64 copies of the rows) stay ~100 MB whatever the input,
# where all rows at once took ~8x the input (1.5 GB for 383 x 54,000).  Each
# row's value is computed alone either way: the numbers are the same
_GROUP_SAMPLES = 1 << 20


def noise_sigma(traces, fs) -> np.ndarray:
    """Noise standard deviation of each trace from its high-frequency PSD.

    White noise of variance sigma^2 has a one-sided density 2 sigma^2 / fs;
    the median of the Welch density over fs/4-fs/2 gives sigma.  Where that
    band is (nearly) empty -- a trace low-pass filtered or interpolated to a
    higher rate -- the octave below it is read instead (up to three octaves).
    """
    x = np.atleast_2d(np.asarray(traces, dtype=np.float64))
    if x.ndim == 2 and x.size and ends_padded(x):  # NaN padding: each row's finite part
        return on_finite_parts(x, lambda v: noise_sigma(v, fs))
    n = x.shape[-1]
    nperseg = int(min(n, 256))
    f, pxx = welch_density(x, fs, nperseg)
    lo = fs / 4
    level = np.median(pxx[:, f >= lo], axis=-1)
    # A trace low-pass filtered or upsampled (Fourier or spline interpolation
    # to a higher rate) has no noise left at the top of its band: its upper
    # band can hold < 1 % of the power density of the octave below, where
    # shot noise (white) and calcium (falling with frequency) never leave so
    # little.  Its noise is then read in the highest octave that still has
    # it, as the white-noise level of that density (what lambda's rule assumes).
    open_ = np.ones(level.shape, bool)
    for _ in range(3):
        below = (f >= lo / 2) & (f < lo)
        if below.sum() < 2:
            break
        lower = np.median(pxx[:, below], axis=-1)
        open_ &= level < _LOWPASS_RATIO * lower
        if not open_.any():
            break
        level = np.where(open_, lower, level)
        lo /= 2
    return np.sqrt(level * fs / 2.0)


def welch_density(x: np.ndarray, fs: float, nperseg: int):
    """One-sided Welch power density along the last axis: periodic Hann
    window, half overlap, mean removed per segment (scipy.signal.welch's
    defaults).  Written out because importing scipy.signal costs ~1 s, and
    the sample data (through simulation) must open fast.
    """
    step = nperseg - nperseg // 2
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(nperseg) / nperseg)
    segs = np.lib.stride_tricks.sliding_window_view(x, nperseg, axis=-1)[..., ::step, :]
    segs = segs - segs.mean(axis=-1, keepdims=True)
    pxx = np.abs(np.fft.rfft(segs * win, axis=-1)) ** 2 / (fs * float(win @ win))
    pxx[..., 1:] *= 2.0
    if nperseg % 2 == 0:
        pxx[..., -1] /= 2.0
    return np.fft.rfftfreq(nperseg, 1.0 / fs), pxx.mean(axis=-2)


def lambda_for_noise(sigma: float, tau_rise: float, tau_decay: float, fs: float,
                     z: float = Z_DEFAULT) -> float:
    """The lambda that puts the L1 threshold ``z`` noise deviations up.

    With the L1 weight ``lambda G`` (G = sum(h)) an event at t is taken when
    the kernel-correlated residual exceeds ``lambda G``; for noise of std
    ``sigma`` that correlation has std ``sigma ||h||_2``.  Proportional to
    sigma, so scaling the traces scales lambda and leaves the events alone.
    """
    h = build_kernel(tau_rise, tau_decay, fs)
    lam = z * float(sigma) * math.sqrt(float(h @ h)) / float(h.sum())
    return float(lam) if math.isfinite(lam) and lam >= 0 else DEFAULTS["lam"]


class EstimateCancelled(Exception):
    """Raised by :func:`estimate_report` when its ``cancel`` callback says so."""


@dataclass(frozen=True)
class EstimateReport:
    """What :func:`estimate_report` found.

    params : the parameters (tau_rise, tau_decay, fs, lam)
    noise : (n_traces,) noise standard deviation of every input trace, in
        trace units (0 for flat traces)
    noise_median : the median noise, the sigma that lam is computed from
    z : lam in units of the noise (``lam = lambda_for_noise(noise_median, ..., z)``)
    rows : indices of the traces whose kernels were estimated
    tau_decay_rows : each of those traces' own tau_decay estimate (s)
    """

    params: TuningParams
    noise: np.ndarray
    noise_median: float
    z: float
    rows: np.ndarray
    tau_decay_rows: np.ndarray


def _check(traces, fs):
    fs = _check_one("fs", fs)
    x = np.asarray(traces)
    if x.dtype.kind not in "biuf":
        raise ValueError(f"traces must hold real numbers, got dtype {x.dtype}")
    # (no copy of float64 input: nothing here writes into the traces)
    x = np.asarray(x, dtype=np.float64)
    x = x[np.newaxis] if x.ndim == 1 else x
    if x.ndim != 2:
        raise ValueError(f"traces must be (T,) or (n_rois, T), got shape {np.shape(traces)}")
    if x.shape[1] < _MIN_SAMPLES:
        raise ValueError(
            f"estimating parameters needs at least {_MIN_SAMPLES} samples per trace, "
            f"got {x.shape[1]} (traces shape {np.shape(traces)})"
        )
    if x.shape[0] == 0:
        raise ValueError("traces are empty (0 ROIs)")
    lengths = row_lengths(x)
    check_no_bad(x, lengths)
    return x, fs, lengths


def _by_groups(x: np.ndarray, lengths: np.ndarray, fn, rows=None) -> np.ndarray:
    """:func:`~napari_catune._padding.per_row` of ``fn`` on the rows ``rows``
    of ``x`` (all by default), a group of at most ``_GROUP_SAMPLES`` values
    at a time: the temporaries of ``fn`` are bounded, never a copy of every row."""
    rows = np.arange(x.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    out = np.empty(rows.size)
    step = max(1, _GROUP_SAMPLES // max(1, x.shape[1]))
    for a in range(0, rows.size, step):
        r = rows[a : a + step]
        # a run of consecutive rows is a view; other rows are copied (one group)
        block = x[r[0] : r[-1] + 1] if r[-1] - r[0] + 1 == r.size else x[r]
        out[a : a + step] = per_row(block, lengths[r], fn)
    return out


def _block_mean(x: np.ndarray, fs: float, target: float):
    """Average blocks of k samples (k = fs // target); returns (x, fs / k)."""
    k = max(1, int(fs // target))
    if k == 1:
        return x, fs
    T = x.shape[-1] // k * k
    return x[..., :T].reshape(*x.shape[:-1], T // k, k).mean(axis=-1), fs / k


def _profile(y: np.ndarray, fs: float, td: float, z: float, init):
    """The solved objective per sample of a unit-noise trace under tau_decay td."""
    from .solver import run_deconvolution_full

    tr = RISE_RATIO * td
    lam = lambda_for_noise(1.0, tr, td, fs, z)
    res = run_deconvolution_full(y, fs, tr, td, lam, _SEARCH_ITERS, init=init)
    # the iterate is feasible even when the step cap cuts a (mismatched,
    # slow) kernel short, so its objective is an upper bound: safe to compare
    G = float(build_kernel(tr, td, fs).sum())
    J = 0.5 * float(((y - res.reconvolution) ** 2).sum()) + lam * G * float(res.activity.sum())
    return J / y.size, res.activity


def _tau_decay_one(y: np.ndarray, fs: float, z: float) -> float:
    """tau_decay minimising the profile objective of one unit-noise trace."""
    grid = np.geomspace(*_TD_GRID)
    vals = []
    best = math.inf
    warm = None
    for td in grid:
        if td * fs < 0.5:
            vals.append(math.inf)
            continue
        # the previous kernel's activity is a close start for the next one
        J, warm = _profile(y, fs, float(td), z, warm)
        vals.append(J)
        best = min(best, J)
        # the profile is unimodal in practice: stop once it has clearly risen
        if len(vals) >= 3 and J > best * 1.05 and vals[-2] > best:
            break
    vals = np.array(vals)
    k = int(np.argmin(vals))
    lg = np.log(grid[: vals.size])
    if 0 < k < vals.size - 1 and np.isfinite(vals[k - 1 : k + 2]).all():
        # parabola through the three points around the minimum (log tau)
        a, b, c = vals[k - 1 : k + 2]
        den = a - 2 * b + c
        shift = 0.5 * (a - c) / den if den > 0 else 0.0
        return float(np.exp(lg[k] + np.clip(shift, -0.5, 0.5) * (lg[1] - lg[0])))
    return float(grid[k])


def _call(progress, done, total, cancel):
    if cancel is not None and (cancel.is_set() if hasattr(cancel, "is_set") else cancel()):
        raise EstimateCancelled("estimation cancelled")
    if progress is not None:
        progress(done, total)


def estimate_report(traces, fs, *, z: float = Z_DEFAULT, max_traces: int = _MAX_TRACES,
                    progress=None, cancel=None) -> EstimateReport:
    """Automatic parameters with what they were derived from (see the module docstring).

    Parameters
    ----------
    traces : (T,) or (n_rois, T) array_like, finite, T >= 100; rows ending in NaN
        padding are measured on their finite part (if at least 100 samples long)
    fs : float, sampling rate in Hz
    z : lambda in noise standard deviations
    max_traces : pool the estimates of at most this many (highest-SNR) traces
    progress : callable(done, total), called after each trace
    cancel : callable returning True (or a threading.Event that is set) to
        stop: :class:`EstimateCancelled` is raised

    Returns
    -------
    EstimateReport (``.params`` is what :func:`estimate_params` returns)
    """
    x, fs, lengths = _check(traces, fs)
    z = float(z)
    if not (math.isfinite(z) and z >= 0):
        raise ValueError(f"z must be a non-negative number (noise deviations), got {z}")
    if int(max_traces) < 1:
        raise ValueError(f"max_traces must be at least 1, got {max_traces}")
    n_rows, _ = x.shape
    # rows ending in NaN padding: each measured on its finite part
    # (_padding.per_row); a finite part shorter than _MIN_SAMPLES is left out
    long = lengths >= _MIN_SAMPLES
    if not long.any():
        raise ValueError(
            f"estimating parameters needs at least {_MIN_SAMPLES} samples per trace; every "
            f"row's finite part before its NaN padding is shorter (longest {lengths.max()})")
    sigma = np.zeros(n_rows)
    scale = _by_groups(x, lengths, lambda v: np.abs(v).max(axis=1))
    live = long & (_by_groups(x, lengths, lambda v: v.std(axis=1))
                   > 1e-12 * np.maximum(scale, 1e-300))
    if live.any():
        sigma[live] = _by_groups(x, lengths, lambda v: noise_sigma(v, fs),
                                 np.flatnonzero(live))
    live &= sigma > 0
    if not live.any():
        warnings.warn(
            "estimate_params: the traces are flat (constant); using default parameters "
            f"{DEFAULTS}", stacklevel=3,
        )
        p = TuningParams(DEFAULTS["tau_rise"], DEFAULTS["tau_decay"], fs, DEFAULTS["lam"],
                         baseline=RECOMMENDED_BASELINE)
        return EstimateReport(p, sigma, 0.0, z, np.empty(0, np.int64), np.empty(0))
    sig_med = float(np.median(sigma[live]))
    from .traces import roi_snr

    cand = np.flatnonzero(live)
    if cand.size > max_traces:
        snr = _by_groups(x, lengths, lambda v: roi_snr(v, fs), cand)
        cand = cand[np.argsort(-np.nan_to_num(snr, posinf=0.0))[: int(max_traces)]]
    xs, fss = _block_mean(x[cand], fs, _SEARCH_FS)
    # (a padded row's block means are finite for its first L // k blocks)
    ls = lengths[cand] // max(1, int(fs // _SEARCH_FS))
    sig_s = per_row(xs, ls, lambda v: noise_sigma(v, fss))
    tds = np.full(cand.size, np.nan)
    _call(progress, 0, cand.size, cancel)
    for i in range(cand.size):
        if sig_s[i] > 0:
            tds[i] = _tau_decay_one(xs[i, : ls[i]] / sig_s[i], fss, _SEARCH_Z)
        _call(progress, i + 1, cand.size, cancel)
    ok = np.isfinite(tds)
    if ok.any() and _has_transients(xs[ok] / sig_s[ok, None], fss, float(np.median(tds[ok]))):
        td = float(np.exp(np.median(np.log(tds[ok]))))
        tr = RISE_RATIO * td
    else:
        warnings.warn(
            "estimate_params: no calcium transients stand out from the noise; using "
            f"default time constants {DEFAULTS['tau_rise']} s / {DEFAULTS['tau_decay']} s",
            stacklevel=3,
        )
        tr, td = DEFAULTS["tau_rise"], DEFAULTS["tau_decay"]
    lam = lambda_for_noise(sig_med, tr, td, fs, z)
    # "drift": the baseline model that wins on the real recordings (README)
    return EstimateReport(TuningParams(tr, td, fs, lam, baseline=RECOMMENDED_BASELINE),
                          sigma, sig_med, z, cand, tds)


def _has_transients(y: np.ndarray, fs: float, td: float) -> bool:
    """Whether unit-noise traces hold activity well above what noise gives."""
    from .solver import run_deconvolution

    tr = RISE_RATIO * td
    # a strict threshold here (4.5 noise deviations): white noise gives nothing
    lam = lambda_for_noise(1.0, tr, td, fs, 4.5)
    s = run_deconvolution(np.ascontiguousarray(y), fs, tr, td, lam, _SEARCH_ITERS)
    return bool(np.count_nonzero(s > 0) >= 3)


def estimate_params(traces, fs, *, z: float = Z_DEFAULT, progress=None, cancel=None) -> TuningParams:
    """A data-driven starting point for tau_rise, tau_decay and lambda.

    Parameters
    ----------
    traces : (T,) or (n_rois, T) array_like
        Finite fluorescence traces, T >= 100.  One parameter set for all.
    fs : float
        Sampling rate, Hz.
    z, progress, cancel : see :func:`estimate_report`

    Returns
    -------
    TuningParams
        tau_rise = 0.1 tau_decay, baseline "drift".  A flat or noise-only input gives
        :data:`DEFAULTS` and a warning.  Use :func:`estimate_report` for the
        noise level and the per-trace estimates.

    Raises
    ------
    ValueError
        Fewer than 100 samples, NaN/inf values, or an invalid fs.
    EstimateCancelled
        When ``cancel`` asks for it.
    """
    return estimate_report(traces, fs, z=z, progress=progress, cancel=cancel).params
