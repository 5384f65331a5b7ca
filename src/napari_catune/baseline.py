"""Baseline models of the deconvolution: names, defaults, and CaTune's rolling baseline.

``run_deconvolution(_full)`` take ``baseline=`` one of:

* ``"scalar"`` (also ``True``): one baseline b per trace, fitted jointly
  with the spikes (the CaTune objective of DESIGN.md).
* ``"none"`` (also ``False``): b = 0.
* ``"rolling"``: CaTune's preprocessing (the web app's worker and ``calab``
  0.3): subtract :func:`rolling_baseline`, then fit as ``"scalar"``.
* ``"drift"``: a per-sample baseline b_t fitted jointly with the spikes
  under a random-walk prior, i.e. the objective gains
  ``(mu/2) * sum_t (b_t - b_{t-1})^2`` with ``mu = (drift_scale * fs)^2``.
  ``sqrt(mu)`` samples is the length scale of that smoother (its response
  to a slow sine of period P samples is 1 / (1 + mu (2 pi / P)^2)), so the
  baseline follows changes slower than ``drift_scale`` seconds and not a
  calcium transient.  Default ``drift_scale = max(20 * tau_decay, 10 s)``
  (:func:`default_drift_scale`).
  The random walk is about a line fixed beforehand from the trace
  (:func:`drift_slope`): ``b_t = c (t - (T-1)/2) + w_t`` with the penalty on
  ``w``, i.e. ``(mu/2) * sum_t (b_t - b_{t-1} - c)^2``.  Without it, a
  bleach over a recording only a few drift_scales long costs the random walk
  more than spikes that absorb it (a 19 % bleach over one minute: baseline
  flat, 4x the activity in the first half); with it a linear bleach costs
  nothing and a curved one little.  ``c = w c0``: ``c0`` is the Theil-Sen
  slope (median of the pairwise slopes) of the 0.2 quantiles of 32
  consecutive blocks of ``floor(T / 32)`` samples (the middle ``32 L``; 0
  under 256 samples): a low quantile follows the baseline under the
  transients, the median ignores a few blocks of bursts.  The weight ``w``
  in [0, 1] is a soft switch (no line turns on or off with a frame more or
  less) of two rules:

  - significance: 0 to 1 as the line's rise over the blocks goes from 2.5 to
    4.5 standard errors, the error from the quantiles' robust scatter about
    the line (1.4826 MAD) counting its serial correlation (lag-1 rho clipped
    to [0, 0.9]: ``32 (1 - rho) / (1 + rho)`` independent blocks, rise /
    error = rise / MAD * sqrt(n_eff / 12)).  On recordings already detrended
    (dF/F) the block quantiles rise and fall with long periods of activity,
    a slow, serially correlated scatter (real data, DS07: 0.533 -> 0.513
    with an unconditional line).
  - activity: 1 to 0 as the Theil-Sen slope of the blocks' spread (0.5
    quantile minus 0.05 quantile) goes from 0.25 to 0.5 of ``c0``.  A bleach
    (or any offset, a z-drift too) moves the low quantiles together and the
    spread only by the bleach's fraction of it (raw F: spread / level,
    about 0.05 in the simulations), while a change of firing rate lifts the
    spread with the quantiles (0.35-1.5 of the slope for rate steps and
    ramps between 0.2 and 5 Hz): the line of a rate step lifted the
    baseline under the active half (review rev37b: 35 of 40 rows, activity
    ratio 6.7-7.8 against 9.9-12.9).  The rule does not use the line's sign:
    a rising offset (slow z-drift) is followed as a falling one.

  The blocks depend on T alone, so c depends on the trace alone: a caller
  re-solving the same traces (the tuner's slider) computes it once and
  passes it (``run_deconvolution_full(..., drift_slope=c)``).  A row ending
  in NaN padding gets its finite part's slope.

CaTune's rolling baseline (CaLab ``crates/solver/src/baseline.rs``, used by
``Solver::subtract_baseline``; facts, not code): at each sample t the
baseline is the k-th smallest value of the causal window
``y[max(0, t - W + 1) .. t]`` (shorter at the start), with
``k = round((n_t - 1) * q)`` (half away from zero) for the n_t samples in
the window, q = 0.2, and ``W = 5 * max(1, ceil(5 * tau_decay * fs))``.  No
centring, no smoothing.  Here it is an order statistic on a Fenwick tree over
the ranks of blocks of 2W samples: O(T log W), compiled, no Python loop over
samples.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "BASELINE_MODES",
    "DEFAULT_QUANTILE",
    "baseline_mode",
    "default_drift_scale",
    "drift_mu",
    "add_trend",
    "drift_slope",
    "drift_trend",
    "rolling_baseline",
    "rolling_window",
]

#: The baseline models, in the order the tuner and the CLI offer them.
BASELINE_MODES = ("scalar", "rolling", "drift", "none")
DEFAULT_QUANTILE = 0.2
# default drift_scale = max(_DRIFT_TAUS * tau_decay, _DRIFT_MIN_S)
_DRIFT_TAUS = 20.0
_DRIFT_MIN_S = 10.0
# the drift's line (drift_slope): quantiles of _TREND_BLOCKS blocks of the
# trace, none with blocks under _TREND_MIN_BLOCK samples; its weight 0 -> 1 as
# its rise goes over _TREND_Z standard errors, 1 -> 0 as the spread's slope
# goes over _TREND_SPREAD of the line's
_TREND_QUANTILES = (0.05, 0.2, 0.5)
_TREND_BLOCKS = 32
_TREND_MIN_BLOCK = 8
_TREND_Z = (2.5, 4.5)
_TREND_SPREAD = (0.25, 0.5)
# drift_slope's rows at a time: at most this many values (512 kB of float64)
_TREND_CHUNK = 1 << 16
# the block pairs i < j of the Theil-Sen slope
_PAIR_I, _PAIR_J = np.triu_indices(_TREND_BLOCKS, 1)
# the shortest drift_scale, in frames (mu = 1e-4)
_DRIFT_MIN_FRAMES = 0.01
_CANONICAL = frozenset(BASELINE_MODES)


def baseline_mode(baseline) -> str:
    """The canonical mode name of a ``baseline=`` argument (True/False accepted)."""
    if type(baseline) is str and baseline in _CANONICAL:
        return baseline  # (a canonical name as it is: what the tests below return)
    if baseline is True or baseline is False or isinstance(baseline, np.bool_):
        return "scalar" if baseline else "none"
    if isinstance(baseline, str) and baseline.strip().lower() in BASELINE_MODES:
        return baseline.strip().lower()
    raise ValueError(
        f"baseline must be one of {', '.join(repr(m) for m in BASELINE_MODES)} "
        f"(or True = 'scalar', False = 'none'), got {baseline!r}"
    )


def default_drift_scale(tau_decay: float) -> float:
    """Default time scale (s) of the "drift" baseline: max(20 tau_decay, 10 s)."""
    return max(_DRIFT_TAUS * float(tau_decay), _DRIFT_MIN_S)


def check_drift_scale(drift_scale) -> float:
    """``drift_scale`` as a float; a ValueError naming it unless it is a
    positive, finite number of seconds (the solver and TuningParams share it)."""
    if isinstance(drift_scale, (bool, str, bytes)):
        raise ValueError(f"drift_scale must be a number of seconds, got {drift_scale!r}")
    try:
        value = float(drift_scale)
    except (TypeError, ValueError):
        raise ValueError(
            f"drift_scale must be a number of seconds, got {drift_scale!r}"
        ) from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"drift_scale must be a positive, finite number of seconds, got {drift_scale!r}"
        )
    return value


def drift_mu(drift_scale, fs: float, tau_decay: float) -> float:
    """Weight mu of the random-walk prior: ``(drift_scale * fs)^2``.

    ``drift_scale=None`` takes :func:`default_drift_scale`.  Raises a
    ValueError naming ``drift_scale`` unless it is a positive finite number
    of at least a hundredth of a frame.
    """
    if drift_scale is None:
        drift_scale = default_drift_scale(tau_decay)
    value = check_drift_scale(drift_scale)
    frames = value * float(fs)
    if not frames >= _DRIFT_MIN_FRAMES:
        # (below it the solver's drift pivot (1 + mu) - 1 loses every digit
        # to rounding: mu under ~1e-16 gives 0 and a NaN baseline)
        raise ValueError(
            f"drift_scale must be at least a hundredth of a frame ({_DRIFT_MIN_FRAMES / float(fs):.3g} s "
            f"at fs = {float(fs):g} Hz), got {drift_scale!r}: a drift that fast follows every "
            "sample; the default is max(20 * tau_decay, 10 s)")
    return frames ** 2


def drift_slope(y: np.ndarray) -> np.ndarray:
    """The drift baseline's slope c per row (trace units per sample) of
    ``y`` (2-D float64, finite or NaN-padded rows): the Theil-Sen slope of
    the 0.2 quantiles of 32 blocks, shrunk towards 0 by its significance and
    by how much the blocks' spread moves with it (see the module doc); 0 for
    a row under 256 samples.  A row ending in NaN padding gets its finite
    part's slope (what the solver uses for it).  It depends on the trace
    alone (no parameter): a caller re-solving the same traces computes it
    once (``run_deconvolution_full(..., drift_slope=)``)."""
    n, T = y.shape
    if n and not np.isfinite(y[:, -1]).all():
        from ._padding import per_row, row_lengths

        lengths = row_lengths(y)
        if (lengths >= 0).all():
            return per_row(y, lengths, drift_slope)
    # at most _TREND_CHUNK values of y at a time (the blocks' partition is a
    # copy): one trace's worth of temporary memory at most, not the input's
    rows = max(1, _TREND_CHUNK // max(T, 1))
    if n > rows:
        return np.concatenate([_drift_slope_rows(y[i:i + rows]) for i in range(0, n, rows)])
    return _drift_slope_rows(y)


def _drift_slope_rows(y: np.ndarray) -> np.ndarray:
    n, T = y.shape
    nb = _TREND_BLOCKS
    L = T // nb
    if L < _TREND_MIN_BLOCK:
        return np.zeros(n)
    start = (T - nb * L) // 2
    blocks = y[:, start:start + nb * L].reshape(n, nb, L)
    # the blocks' 0.05, 0.2 and 0.5 quantiles as np.quantile's linear rule,
    # by one partition (a copy of the blocks: the caller's y is not touched)
    ks = [p * (L - 1) for p in _TREND_QUANTILES]
    kth = sorted({i for k in ks for i in (math.floor(k), min(math.floor(k) + 1, L - 1))})
    part = np.partition(blocks, kth, axis=2)
    q05, q20, q50 = (part[:, :, math.floor(k)] + (part[:, :, min(math.floor(k) + 1, L - 1)]
                                                  - part[:, :, math.floor(k)]) * (k - math.floor(k))
                     for k in ks)
    del part
    i, j = _PAIR_I, _PAIR_J
    steps = (j - i) * float(L)
    c = np.median((q20[:, j] - q20[:, i]) / steps, axis=1)
    # the spread's slope: a bleach (or any offset) moves the low quantiles
    # together, the blocks' spread q50 - q05 by the bleach's fraction of it
    # only; more (or less) activity moves the spread with the quantiles
    spread = q50 - q05
    cs = np.median((spread[:, j] - spread[:, i]) / steps, axis=1)
    # the line's significance: its rise over the blocks against its standard
    # error from their scatter about it (1.4826 MAD), counting the scatter's
    # serial correlation (lag-1 rho: nb (1 - rho) / (1 + rho) independent
    # blocks)
    r = q20 - c[:, None] * (np.arange(nb) * float(L))
    r -= np.median(r, axis=1)[:, None]
    mad = 1.4826 * np.median(np.abs(r), axis=1)
    rc = r - r.mean(axis=1)[:, None]
    num = (rc[:, 1:] * rc[:, :-1]).sum(axis=1)
    den = (rc * rc).sum(axis=1)
    rho = np.clip(np.divide(num, den, out=np.zeros(n), where=den > 0), 0.0, 0.9)
    rise = np.abs(c) * (nb * float(L))
    se = mad * np.sqrt(12.0 * (1 + rho) / (nb * (1 - rho)))
    z = np.divide(rise, se, out=np.full(n, np.inf), where=se > 0)
    return c * _trend_weight(z, c, cs)


def _trend_weight(z, c, cs):
    # the soft switch: 0 to 1 as the line's rise goes from _TREND_Z[0] to
    # _TREND_Z[1] standard errors, times 1 to 0 as the spread's slope goes
    # from _TREND_SPREAD[0] to _TREND_SPREAD[1] of the line's (same sign)
    z0, z1 = _TREND_Z
    w = np.clip((z - z0) / (z1 - z0), 0.0, 1.0)
    a = np.divide(cs, c, out=np.zeros_like(c), where=c != 0)
    a0, a1 = _TREND_SPREAD
    return w * np.clip((a1 - a) / (a1 - a0), 0.0, 1.0)


def drift_trend(y: np.ndarray, slope: np.ndarray | None = None) -> np.ndarray:
    """The drift baseline's line ``c (t - (T-1)/2)`` per row of ``y`` (2-D
    float64), float64 of y's shape; ``c = slope`` (one per row) or
    :func:`drift_slope` of ``y``."""
    c = drift_slope(y) if slope is None else slope
    out = np.zeros(y.shape)
    add_trend(out, c)
    return out


def add_trend(a: np.ndarray, slope: np.ndarray, sign: float = 1.0) -> None:
    """``a += sign * c (t - (T-1)/2)`` in place per row of the 2-D ``a``
    (``c = slope``, one per row), rows with c = 0 untouched: no temporary of
    a's size (a few rows at a time)."""
    n, T = a.shape
    c = np.asarray(slope, dtype=np.float64) * float(sign)
    t = np.arange(T, dtype=np.float64) - 0.5 * (T - 1)
    rows = max(1, _TREND_CHUNK // max(T, 1))
    for i in range(0, n, rows):
        ci = c[i:i + rows]
        if ci.any():
            a[i:i + rows] += ci[:, None] * t


def rolling_window(tau_decay: float, fs: float) -> int:
    """CaTune's rolling-baseline window in samples: 5 * max(1, ceil(5 tau_decay fs))."""
    return 5 * max(1, math.ceil(5.0 * float(tau_decay) * float(fs)))


def rolling_baseline(traces, fs: float, tau_decay: float, quantile: float = DEFAULT_QUANTILE
                     ) -> np.ndarray:
    """CaTune's rolling low-quantile baseline of each trace (see the module doc).

    Parameters
    ----------
    traces : array (T,) or (n_cells, T), real, finite
    fs, tau_decay : sampling rate (Hz) and decay time (s); they set the window
        ``W = 5 * max(1, ceil(5 * tau_decay * fs))`` samples.
    quantile : in [0, 1], 0.2 in CaTune.

    Returns float64 of the traces' shape: subtract it to get CaTune's
    preprocessed trace.
    """
    from .kernel import _check_one
    from .solver import prepare_traces

    fs = _check_one("fs", fs)
    tau_decay = _check_one("tau_decay", tau_decay)
    try:
        q = float(quantile)
    except (TypeError, ValueError):
        raise ValueError(f"quantile must be a number in [0, 1], got {quantile!r}") from None
    if not (0.0 <= q <= 1.0):
        raise ValueError(f"quantile must be a number in [0, 1], got {quantile!r}")
    one_d = np.ndim(traces) == 1
    y = prepare_traces(traces)
    W = rolling_window(tau_decay, fs)
    from .solver import _fallback_now

    if _fallback_now():
        # the compiled code is being compiled in the background: the NumPy
        # version of the same numbers (if not too long)
        from . import _numpy_solver as npsol

        if y.size * min(W, y.shape[1]) <= npsol.ROLLING_MAX_WORK:
            out = npsol.rolling_quantile_rows(y, W, q)
            return out[0] if one_d else out
    from ._numba_solvers import rolling_quantile_rows

    out = np.empty_like(y)
    rolling_quantile_rows(y, W, q, out)
    return out[0] if one_d else out
