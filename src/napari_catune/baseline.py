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
    "rolling_baseline",
    "rolling_window",
]

#: The baseline models, in the order the tuner and the CLI offer them.
BASELINE_MODES = ("scalar", "rolling", "drift", "none")
DEFAULT_QUANTILE = 0.2
# default drift_scale = max(_DRIFT_TAUS * tau_decay, _DRIFT_MIN_S)
_DRIFT_TAUS = 20.0
_DRIFT_MIN_S = 10.0
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
