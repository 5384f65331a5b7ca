"""Data-driven starting parameters for the sliders.

* noise: the level of the high-frequency power spectrum (Welch, upper half
  of the band), where calcium transients carry little power;
* time constants, first guess: the autocovariance of the traces, each
  scaled by its noise variance and pooled over ROIs, fit at lags >= 1 (lag 0
  holds the noise) by the exact autocovariance shape of the AR(2) kernel
  (``A d^k + B r^k`` with A, B fixed by the roots d, r) times a scale, plus
  a constant and a linear term for slow drift.  OASIS solves Yule-Walker
  equations on a few lags; fitting the whole shape over ~6 decay times by
  variable projection is less sensitive to noise and large transients;
* refinement: two rounds of "deconvolve with the current kernel, then
  re-estimate the kernel from the inferred activity by least squares and fit
  the double exponential to it".  The autocovariance confuses the kernel's
  rise with bursts of spikes; the rounds bring jGCaMP8f's tau_rise from
  0.11-0.15 s towards the true 0.05 s and raise the spike correlation
  (bench/bench_estimate.py).  More rounds drift (the inferred activity is
  shrunk by the L1 penalty), so we stop at two;
* lambda: the sparsity at which a noise-only stretch of trace produces no
  activity with high probability (``lambda G ~ z sigma ||h||_2``).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .kernel import PARAM_RANGES, _check_one, build_kernel
from .params import TuningParams

__all__ = ["estimate_params", "noise_sigma", "lambda_for_noise", "DEFAULTS"]

# what a flat or noise-only input gets (a GCaMP6f-like kernel)
DEFAULTS = {"tau_rise": 0.05, "tau_decay": 0.5, "lam": 0.1}

# noise-correlation threshold, in standard deviations, for lambda
_Z = 3.0
_MIN_SAMPLES = 100
# pool at most this many traces (the highest-variance ones) for the fit
_MAX_TRACES = 400


def noise_sigma(traces, fs) -> np.ndarray:
    """Noise standard deviation of each trace from its high-frequency PSD.

    White noise of variance sigma^2 has a one-sided density 2 sigma^2 / fs;
    the median of the Welch density over fs/4-fs/2 gives sigma.
    """
    x = np.atleast_2d(np.asarray(traces, dtype=np.float64))
    n = x.shape[-1]
    nperseg = int(min(n, 256))
    f, pxx = welch_density(x, fs, nperseg)
    band = f >= fs / 4
    return np.sqrt(np.median(pxx[:, band], axis=-1) * fs / 2.0)


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
                     z: float = _Z) -> float:
    """The lambda at which noise of std ``sigma`` rarely produces activity.

    With the L1 weight ``lambda G`` (G = sum(h)) an event at t is taken when
    the kernel-correlated residual exceeds ``lambda G``; for noise that
    correlation has std ``sigma ||h||_2``.  Clipped to the accepted range.
    """
    h = build_kernel(tau_rise, tau_decay, fs)
    lam = z * float(sigma) * math.sqrt(float(h @ h)) / float(h.sum())
    lo, hi = PARAM_RANGES["lam"]
    return float(min(max(lam, lo), hi)) if math.isfinite(lam) else DEFAULTS["lam"]


def _check(traces, fs):
    fs = _check_one("fs", fs)
    x = np.asarray(traces)
    if x.dtype.kind not in "biuf":
        raise ValueError(f"traces must hold real numbers, got dtype {x.dtype}")
    x = np.array(x, dtype=np.float64, ndmin=2)
    if x.ndim != 2:
        raise ValueError(f"traces must be (T,) or (n_rois, T), got shape {np.shape(traces)}")
    if x.shape[1] < _MIN_SAMPLES:
        raise ValueError(
            f"estimating parameters needs at least {_MIN_SAMPLES} samples per trace, "
            f"got {x.shape[1]} (traces shape {np.shape(traces)})"
        )
    if x.shape[0] == 0:
        raise ValueError("traces are empty (0 ROIs)")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)[:10].tolist()
        raise ValueError(
            f"traces contain NaN or infinite values (rows {rows}); remove or interpolate them first"
        )
    return x, fs


def _autocov(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Biased autocovariance at lags 0..max_lag of each row (mean removed)."""
    n = x.shape[1]
    nfft = 1 << (n + max_lag).bit_length()  # no circular wrap up to max_lag
    out = np.empty((x.shape[0], max_lag + 1))
    for i in range(0, x.shape[0], 64):  # bounded memory for long recordings
        xc = x[i : i + 64] - x[i : i + 64].mean(axis=1, keepdims=True)
        spec = np.fft.rfft(xc, nfft, axis=1)
        out[i : i + 64] = np.fft.irfft(spec.real**2 + spec.imag**2, nfft, axis=1)[:, : max_lag + 1]
    return out / n


def _fit_taus(acov: np.ndarray, fs: float, drift: bool = True):
    """Fit ``a g(k; d, r) + c (+ e k)`` by variable projection over a grid.

    ``g`` is the exact autocovariance shape of the AR(2) kernel driven by
    white input (``A d^k + B r^k`` with A, B fixed by d and r); the constant
    and linear terms take up slow drift.  acov (K,) holds lags 1..K.
    Returns (tau_rise, tau_decay).
    """
    K = acov.size
    k = np.arange(1, K + 1, dtype=np.float64)
    td_lo = max(PARAM_RANGES["tau_decay"][0], 0.25 / fs)
    td_hi = min(PARAM_RANGES["tau_decay"][1], max(K / (2 * fs), 2 * td_lo))
    tds = np.geomspace(td_lo, td_hi, 90)
    tr_lo = PARAM_RANGES["tau_rise"][0]
    best = (np.inf, DEFAULTS["tau_rise"], DEFAULTS["tau_decay"])
    extra = [np.ones(K)] + ([k / K] if drift else [])
    for td in tds:
        tr_hi = min(PARAM_RANGES["tau_rise"][1], 0.8 * td)
        if tr_hi <= tr_lo:
            continue
        trs = np.geomspace(tr_lo, tr_hi, 40)
        d = math.exp(-1.0 / (fs * td))
        r = np.exp(-1.0 / (fs * trs))[:, None]  # (R, 1)
        dr = d * r
        A = d * d / (1 - d * d) - dr / (1 - dr)
        B = r * r / (1 - r * r) - dr / (1 - dr)
        G = A * d ** k[None] + B * r ** k[None]  # (R, K)
        G /= np.abs(G).max(axis=1, keepdims=True)
        M = np.stack([G, *(np.broadcast_to(e, G.shape) for e in extra)], axis=2)
        MtM = np.einsum("rki,rkj->rij", M, M) + 1e-12 * np.eye(M.shape[2])
        Mty = np.einsum("rki,k->ri", M, acov)
        coef = np.linalg.solve(MtM, Mty[..., None])[..., 0]
        sse = (((M @ coef[..., None])[..., 0] - acov) ** 2).sum(axis=1)
        sse = np.where(coef[:, 0] > 0, sse, np.inf)
        j = int(np.argmin(sse))
        if sse[j] < best[0]:
            best = (sse[j], float(trs[j]), float(td))
    return best[1], best[2]


def estimate_params(traces, fs) -> TuningParams:
    """A data-driven starting point for tau_rise, tau_decay and lambda.

    Parameters
    ----------
    traces : (T,) or (n_rois, T) array_like
        Finite fluorescence traces, T >= 100.  One parameter set for all.
    fs : float
        Sampling rate, Hz.

    Returns
    -------
    TuningParams
        Always within the accepted ranges, tau_rise < tau_decay.  A flat or
        noise-only input gives :data:`DEFAULTS` and a warning.

    Raises
    ------
    ValueError
        Fewer than 100 samples, NaN/inf values, or fs out of range.
    """
    x, fs = _check(traces, fs)
    n_rows, T = x.shape
    scale = np.abs(x).max(axis=1)
    spread = x.std(axis=1)
    live = spread > 1e-12 * np.maximum(scale, 1e-300)
    if not live.any():
        warnings.warn(
            "estimate_params: the traces are flat (constant); using default parameters "
            f"{DEFAULTS}", stacklevel=2,
        )
        return TuningParams(DEFAULTS["tau_rise"], DEFAULTS["tau_decay"], fs, DEFAULTS["lam"])
    x = x[live]
    if x.shape[0] > _MAX_TRACES:
        x = x[np.argsort(spread[live])[::-1][:_MAX_TRACES]]

    sigma = noise_sigma(x, fs)
    sig_med = float(np.median(sigma))
    # lags out to ~10 s (or a third of the recording): long enough for slow
    # indicators, short enough to stay above the estimation noise
    max_lag = int(min(T // 3, max(10, round(10.0 * fs))))
    acov = _autocov(x, max_lag)
    # each ROI weighs by its signal-to-noise: normalise by its noise variance
    noise_var = np.maximum(sigma**2, 1e-12 * np.maximum(acov[:, 0], 1e-300))
    pooled = (acov / noise_var[:, None]).mean(axis=0)
    signal_var = pooled[0] - 1.0  # in units of the noise variance
    se = 3.0 / math.sqrt(T * x.shape[0])  # ~3 standard errors of a pooled autocorrelation
    if not (signal_var > 0.05 and pooled[1] > se):
        warnings.warn(
            "estimate_params: no calcium transients stand out from the noise; using "
            f"default time constants {DEFAULTS['tau_rise']} s / {DEFAULTS['tau_decay']} s",
            stacklevel=2,
        )
        tr, td = DEFAULTS["tau_rise"], DEFAULTS["tau_decay"]
    else:
        tr, td = _fit(pooled, fs, T)
        tr, td = _refine(x, sigma, fs, tr, td)
    lam = lambda_for_noise(sig_med, tr, td, fs)
    return TuningParams(tr, td, fs, lam)


def _fit(pooled: np.ndarray, fs: float, T: int):
    lags = pooled[1:]
    # first pass over all lags, then refit on lags within ~6 decay times
    # (beyond that the autocovariance is mostly drift and estimation noise)
    tr, td = _fit_taus(lags, fs)
    K = int(min(lags.size, max(8, round(6.0 * td * fs))))
    tr, td = _fit_taus(lags[:K], fs)
    tr = min(max(tr, PARAM_RANGES["tau_rise"][0]), PARAM_RANGES["tau_rise"][1])
    td = min(max(td, PARAM_RANGES["tau_decay"][0]), PARAM_RANGES["tau_decay"][1])
    if not tr < td:
        tr = max(PARAM_RANGES["tau_rise"][0], 0.5 * td)
    return tr, td


# traces and rounds used by the refinement (its cost is a few deconvolutions)
_REFINE_TRACES = 60
_REFINE_ROUNDS = 2


def _kernel_from_activity(y: np.ndarray, s: np.ndarray, n: int) -> np.ndarray:
    """Least-squares kernel h (length n) with y ~ s * h + const, pooled over rows."""
    from scipy.linalg import solve_toeplitz

    T = y.shape[1]
    # only the means are removed: a matching running-mean high-pass of y and
    # s (against drift) biased tau_decay low by 10-40 % on calab's presets
    yc = y - y.mean(axis=1, keepdims=True)
    sc = s - s.mean(axis=1, keepdims=True)
    nfft = 1 << (T + n).bit_length()
    S = np.fft.rfft(sc, nfft, axis=1)
    Yf = np.fft.rfft(yc, nfft, axis=1)
    r_ss = np.fft.irfft((S * S.conj()).sum(axis=0), nfft)[:n]
    r_sy = np.fft.irfft((S.conj() * Yf).sum(axis=0), nfft)[:n]
    r_ss[0] *= 1.0 + 1e-6  # a touch of ridge: r_ss is a PSD Toeplitz matrix
    return solve_toeplitz(r_ss, r_sy)


def _fit_double_exp(h: np.ndarray, fs: float):
    """(tau_rise, tau_decay, R^2) of the best unit-peak double exponential times a scale.

    A coarse grid over both time constants, then a Nelder-Mead polish in
    log space (the grid alone would quantise the answer by a few percent).
    """
    from scipy.optimize import minimize

    t = np.arange(h.size) / fs
    hh = float(h @ h)
    if not hh > 0:
        return None
    tr_lo, tr_hi = PARAM_RANGES["tau_rise"]
    td_lo = PARAM_RANGES["tau_decay"][0]
    td_hi = min(PARAM_RANGES["tau_decay"][1], max(h.size / fs, 2 * td_lo))

    def sse_of(K):
        kh = K @ h
        a = kh / (K * K).sum(axis=-1)
        return np.where(a > 0, hh - a * kh, np.inf)

    best = (np.inf, None, None)
    for td in np.geomspace(td_lo, td_hi, 60):
        trs = np.geomspace(tr_lo, min(tr_hi, 0.9 * td), 40)
        K = np.exp(-t[None] / td) - np.exp(-t[None] / trs[:, None])
        K /= K.max(axis=1, keepdims=True)
        sse = sse_of(K)
        j = int(np.argmin(sse))
        if sse[j] < best[0]:
            best = (float(sse[j]), float(trs[j]), float(td))
    if best[1] is None or not math.isfinite(best[0]):
        return None

    def cost(z):
        tr, td = math.exp(z[0]), math.exp(z[1])
        if not (tr_lo <= tr <= tr_hi and td_lo <= td <= td_hi and tr < 0.95 * td):
            return hh
        K = np.exp(-t / td) - np.exp(-t / tr)
        K /= K.max()
        return float(sse_of(K[None])[0])

    res = minimize(cost, [math.log(best[1]), math.log(best[2])], method="Nelder-Mead",
                   options={"xatol": 1e-4, "fatol": 1e-12 * hh, "maxiter": 200})
    tr, td, sse = best[1], best[2], best[0]
    if res.fun < sse:
        tr, td, sse = math.exp(res.x[0]), math.exp(res.x[1]), float(res.fun)
    return tr, td, 1.0 - sse / hh


def _refine(x: np.ndarray, sigma: np.ndarray, fs: float, tr: float, td: float):
    """Deconvolve / re-fit the kernel, ``_REFINE_ROUNDS`` times; keep the start on trouble."""
    from .solver import run_deconvolution

    ok = sigma > 0
    if not ok.any():
        return tr, td
    y = x[ok] / sigma[ok, None]  # unit noise: every trace weighs by its SNR
    if y.shape[0] > _REFINE_TRACES:
        snr = y.std(axis=1)
        y = y[np.argsort(snr)[::-1][:_REFINE_TRACES]]
    T = y.shape[1]
    for _ in range(_REFINE_ROUNDS):
        lam = lambda_for_noise(1.0, tr, td, fs)
        try:
            s = np.asarray(run_deconvolution(y, fs, tr, td, lam), dtype=np.float64)
        except Exception:  # never let the refinement break the estimate
            return tr, td
        if not np.isfinite(s).all() or np.count_nonzero(s) < 3:
            return tr, td
        n = int(min(T // 3, max(8, math.ceil(5.0 * td * fs) + 2)))
        h = _kernel_from_activity(y, s, n)
        fit = _fit_double_exp(h, fs) if np.isfinite(h).all() else None
        if fit is None or fit[2] < 0.8:  # not kernel-shaped: keep what we had
            return tr, td
        tr, td = fit[0], fit[1]
    return tr, td
