"""The CaTune kernel: a unit-peak double exponential, its AR(2) form and its shape.

Formulas are those of DESIGN.md ("the CaTune model").  Everything here is
plain NumPy/SciPy and cheap enough to call on every slider event.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import warnings

import numpy as np

# The CaTune web app's slider ranges (inclusive): what the tuner's sliders
# span.  Every physically valid value is accepted (as calab does); one outside
# these ranges is kept, with a ParameterRangeWarning naming the range.
PARAM_RANGES: dict[str, tuple[float, float]] = {
    "tau_rise": (0.001, 0.5),
    "tau_decay": (0.01, 10.0),
    "fs": (1.0, 1000.0),
    "lam": (0.0, 10.0),
}
_UNITS = {"tau_rise": " s", "tau_decay": " s", "fs": " Hz", "lam": ""}
_LABELS = {
    "tau_rise": "tau_rise",
    "tau_decay": "tau_decay",
    "fs": "sampling rate fs",
    "lam": "lambda",
}
# what makes a value physically valid, for the error message
_DOMAIN = {
    "tau_rise": "a positive number of seconds",
    "tau_decay": "a positive number of seconds",
    "fs": "a positive number of Hz",
    "lam": "a number >= 0 (0 is plain non-negative least squares)",
}

# the kernel is cut where it has decayed below this fraction of its peak
_TAIL = 1e-6
#: Longest kernel accepted, in samples (ceil(-ln(1e-6) * tau_decay * fs)):
#: 400 MB as float64, and the Lipschitz FFT needs about 8x that.
MAX_KERNEL_SAMPLES = 50_000_000


# exp(-1 / (tau_decay * fs)), the decay per sample, underflows to 0 near
# e^-745: below this many samples per tau_decay the AR(2) form degenerates
_MIN_DECAY_SAMPLES = 1.0 / 700.0


class ParameterRangeWarning(UserWarning):
    """A parameter outside the CaTune web app's slider range (kept as given)."""


# (parameter, value) pairs already warned about: each is warned about once per
# process, however many functions validate it on the way to the solver
_WARNED: set[tuple[str, float]] = set()


def _check_one(name: str, value, warn: bool = True) -> float:
    """``value`` as a float if it is physically valid for ``name``, else ValueError.

    Outside CaTune's slider range (:data:`PARAM_RANGES`) it is kept and (with
    ``warn``) a :class:`ParameterRangeWarning` is issued, once per
    (parameter, value).
    """
    label = _LABELS[name]
    if isinstance(value, (bool, str, bytes)):
        raise ValueError(f"{label} must be a number, got {value!r}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{label} must be a number, got {value!r}") from None
    except OverflowError:  # an int with hundreds of digits
        value = math.inf
    unit = _UNITS[name]
    if not math.isfinite(value):
        raise ValueError(f"{label} must be finite, got {value}; it must be {_DOMAIN[name]}")
    if (value < 0) if name == "lam" else (value <= 0):
        raise ValueError(f"{label} = {value:g}{unit} is invalid: it must be {_DOMAIN[name]}")
    if warn:
        _warn_outside(name, value)
    return value


#: parameters whose values outside CaTune's slider ranges pass without a
#: warning in this thread (:func:`quiet_range`)
_QUIET: contextvars.ContextVar = contextvars.ContextVar("catune_quiet_ranges",
                                                        default=frozenset())


@contextlib.contextmanager
def quiet_range(*names: str):
    """Within the block, values of ``names`` outside CaTune's slider ranges pass
    without a :class:`ParameterRangeWarning`, on this thread only (the tuner
    says it once itself; a process-wide warnings filter would race with other
    threads)."""
    token = _QUIET.set(_QUIET.get() | frozenset(names))
    try:
        yield
    finally:
        _QUIET.reset(token)


def _warn_outside(name: str, value: float) -> None:
    lo, hi = PARAM_RANGES[name]
    if lo <= value <= hi or (name, value) in _WARNED:
        return
    _WARNED.add((name, value))  # (quiet: said by the caller, so not again by a solve)
    if name in _QUIET.get():
        return
    unit = _UNITS[name]
    warnings.warn(
        f"{_LABELS[name]} = {value:g}{unit} is outside CaTune's slider range "
        f"{lo:g}-{hi:g}{unit}; the value is used as given (the CaTune web app's slider "
        "cannot show it)",
        ParameterRangeWarning,
        stacklevel=4,
    )


def validate_params(tau_rise, tau_decay, fs, lam=None) -> tuple[float, ...]:
    """Check the CaTune parameters; return them as floats.

    Accepts every physically valid value: ``fs > 0``, ``0 < tau_rise <
    tau_decay``, ``lam >= 0``, all finite, and a kernel of at most
    :data:`MAX_KERNEL_SAMPLES` samples.  Raises ``ValueError`` naming the
    parameter otherwise.  Values outside CaTune's slider ranges
    (:data:`PARAM_RANGES`) are returned unchanged with a
    :class:`ParameterRangeWarning`.  ``lam`` is skipped when None
    (kernel-only callers).
    """
    if (type(tau_rise) is float and type(tau_decay) is float and type(fs) is float
            and (lam is None or type(lam) is float)):
        # (the slider path: plain floats; inside every slider range they pass
        # every check below and warn of nothing: the same result, told
        # without its calls; anything else takes the checks below)
        ranges = PARAM_RANGES
        r, d, f = ranges["tau_rise"], ranges["tau_decay"], ranges["fs"]
        if (0 < r[0] <= tau_rise <= r[1] < math.inf and 0 < d[0] <= tau_decay <= d[1] < math.inf
                and 0 < f[0] <= fs <= f[1] < math.inf and tau_rise < tau_decay
                and tau_decay * fs >= _MIN_DECAY_SAMPLES
                and -math.log(_TAIL) * tau_decay * fs <= MAX_KERNEL_SAMPLES):
            if lam is None:
                return tau_rise, tau_decay, fs
            g = ranges["lam"]
            if 0 <= g[0] <= lam <= g[1] < math.inf:
                return tau_rise, tau_decay, fs, lam
    # every check first: no warning about a value that is then refused
    tau_rise = _check_one("tau_rise", tau_rise, warn=False)
    tau_decay = _check_one("tau_decay", tau_decay, warn=False)
    fs = _check_one("fs", fs, warn=False)
    if lam is not None:
        lam = _check_one("lam", lam, warn=False)
    _check_order(tau_rise, tau_decay)
    if tau_decay * fs < _MIN_DECAY_SAMPLES:
        raise ValueError(
            f"tau_decay = {tau_decay:g} s is below 1/{1 / _MIN_DECAY_SAMPLES:g} of the sampling "
            f"interval (1/fs = {1 / fs:g} s): the kernel vanishes within one sample; check "
            "the units of tau_decay (seconds) and fs (Hz)"
        )
    n = -math.log(_TAIL) * tau_decay * fs
    if n > MAX_KERNEL_SAMPLES:
        raise ValueError(
            f"tau_decay = {tau_decay:g} s at sampling rate fs = {fs:g} Hz needs a kernel of "
            f"{n:.3g} samples (ceil(13.8 * tau_decay * fs)), more than the "
            f"{MAX_KERNEL_SAMPLES:.0e} that fit in memory; check the units of fs (Hz) "
            "and tau_decay (seconds)"
        )
    for name, value in (("tau_rise", tau_rise), ("tau_decay", tau_decay), ("fs", fs),
                        ("lam", lam)):
        if value is not None:
            _warn_outside(name, value)
    if lam is None:
        return tau_rise, tau_decay, fs
    return tau_rise, tau_decay, fs, lam


def _check_order(tau_rise: float, tau_decay: float) -> None:
    if not tau_rise < tau_decay:
        raise ValueError(
            f"tau_rise ({tau_rise:g} s) must be smaller than tau_decay "
            f"({tau_decay:g} s): the rise of a transient is faster than its decay"
        )


def kernel_length(tau_decay: float, fs: float) -> int:
    """Samples until the kernel decays below 1e-6 of its peak (at least 2)."""
    return max(2, math.ceil(-math.log(_TAIL) * tau_decay * fs))


def _raw_kernel(t: np.ndarray, tau_rise: float, tau_decay: float) -> np.ndarray:
    # exp(-t/td) - exp(-t/tr) written as -exp(-t/td) * expm1(-t (1/tr - 1/td)):
    # the same numbers for ordinary taus, and no cancellation when tr ~ td.
    return -np.exp(-t / tau_decay) * np.expm1(-t * (1.0 / tau_rise - 1.0 / tau_decay))


def sampled_raw_kernel(tau_rise: float, tau_decay: float, fs: float) -> np.ndarray:
    """exp(-t/tau_decay) - exp(-t/tau_rise) at t = i / fs, unnormalised
    (parameters already validated)."""
    return _sampled_raw_kernel_peak(tau_rise, tau_decay, fs)[0]


def _sampled_raw_kernel_peak(tau_rise: float, tau_decay: float, fs: float):
    """(:func:`sampled_raw_kernel`, its maximum as a float): :func:`_raw_kernel`'s
    operations in its order, in two arrays (the same numbers, without its
    six temporaries: a new slider value's model is made on every move)."""
    t = np.arange(kernel_length(tau_decay, fs), dtype=np.float64)
    np.divide(t, fs, out=t)
    h = np.negative(t)
    np.divide(h, tau_decay, out=h)
    np.exp(h, out=h)
    np.negative(h, out=h)
    np.negative(t, out=t)
    np.multiply(t, 1.0 / tau_rise - 1.0 / tau_decay, out=t)
    np.expm1(t, out=t)
    np.multiply(h, t, out=h)
    peak = h.max()
    if not (math.isfinite(peak) and peak > 0):
        # 1/tau_rise - 1/tau_decay rounds to 0 when the two differ by ~1 ulp
        raise ValueError(
            f"tau_rise ({tau_rise!r} s) and tau_decay ({tau_decay!r} s) are too close to "
            "tell apart in floating point; make tau_rise clearly smaller"
        )
    return h, float(peak)

# kernels longer than this (slow kernels at high fs: 41,447 samples for
# tau_decay 3 s at 1 kHz, ~0.55 ms per new slider value to sample) get their
# peak and sum without sampling the whole kernel (kernel_peak_and_sum)
_LONG_KERNEL = 4096


def kernel_peak_and_sum(tau_rise: float, tau_decay: float, fs: float) -> tuple[float, float]:
    """(peak_raw, G): the peak of :func:`sampled_raw_kernel` and the sum of
    the unit-peak kernel (:func:`build_kernel`'s), parameters already
    validated.

    Kernels up to ``_LONG_KERNEL`` samples are sampled.  Longer ones are not:
    the peak comes from the few samples around the continuous peak (the same
    numbers as the sampled kernel's), the sum in closed form,
    sum_{i<n} d^i - r^i (a few ulp from the sampled sum), except where the
    two geometric sums nearly cancel (tau_rise ~ tau_decay): sampled there.
    """
    n = kernel_length(tau_decay, fs)
    if n > _LONG_KERNEL:
        dt = 1.0 / fs

        def geometric(tau):  # sum_{i<n} exp(-i dt / tau)
            lx = -dt / tau
            return math.expm1(n * lx) / math.expm1(lx)

        sd, sr = geometric(tau_decay), geometric(tau_rise)
        if sr <= 0.5 * sd:
            k = int(_t_peak(tau_rise, tau_decay) * fs)
            i = np.arange(max(0, k - 2), min(n, k + 4), dtype=np.float64)
            peak_raw = float(_raw_kernel(i / fs, tau_rise, tau_decay).max())
            return peak_raw, (sd - sr) / peak_raw
    raw, peak_raw = _sampled_raw_kernel_peak(tau_rise, tau_decay, fs)
    np.divide(raw, peak_raw, out=raw)  # (raw is ours: divided in place)
    return peak_raw, float(raw.sum())


def build_kernel(tau_rise: float, tau_decay: float, fs: float) -> np.ndarray:
    """The double-exponential kernel sampled at t = i / fs, scaled to peak 1.

    ``h[0] == 0``; length ``max(2, ceil(-ln(1e-6) * tau_decay * fs))``.
    """
    tau_rise, tau_decay, fs = validate_params(tau_rise, tau_decay, fs)
    h = sampled_raw_kernel(tau_rise, tau_decay, fs)
    return h / h.max()


def tau_to_ar2(tau_rise: float, tau_decay: float, fs: float) -> tuple[float, float, float, float]:
    """AR(2) coefficients of the kernel: ``(g1, g2, d, r)``.

    ``d = exp(-dt/tau_decay)`` and ``r = exp(-dt/tau_rise)`` are the roots;
    ``c[t] = g1 c[t-1] + g2 c[t-2] + s[t]`` with ``g1 = d + r``, ``g2 = -d r``.
    """
    return _ar2_coefficients(*validate_params(tau_rise, tau_decay, fs))


def _ar2_coefficients(tau_rise: float, tau_decay: float, fs: float) -> tuple[float, float, float, float]:
    """:func:`tau_to_ar2` of parameters validated already (no second check
    on the slider path's model)."""
    dt = 1.0 / fs
    d = math.exp(-dt / tau_decay)
    r = math.exp(-dt / tau_rise)
    return d + r, -(d * r), d, r


def ar2_scale(tau_rise: float, tau_decay: float, fs: float) -> float:
    """alpha with ``h[i] = alpha * a[i-1]``, ``a`` the AR(2) impulse response.

    ``a[k] = (d^(k+1) - r^(k+1)) / (d - r)`` and ``h[i] = (d^i - r^i) / peak_raw``
    (peak_raw = max of the unnormalised sampled kernel), so
    ``alpha = (d - r) / peak_raw``.  Computed from the sampled peak the same
    way build_kernel normalises, so the two forms agree to rounding.
    """
    tau_rise, tau_decay, fs = validate_params(tau_rise, tau_decay, fs)
    peak_raw, _G = kernel_peak_and_sum(tau_rise, tau_decay, fs)
    return ar2_root_gap(tau_rise, tau_decay, fs) / peak_raw


def ar2_root_gap(tau_rise: float, tau_decay: float, fs: float) -> float:
    """d - r, computed without cancellation (it is tiny when tau_rise ~ tau_decay)."""
    dt = 1.0 / fs
    return -math.exp(-dt / tau_decay) * math.expm1(-dt * (1 / tau_rise - 1 / tau_decay))


def compute_lipschitz(kernel: np.ndarray) -> float:
    """Lipschitz constant of the gradient of 1/2 ||y - K s||^2.

    ``max |H(w)|^2`` over an FFT of the kernel zero-padded to the next power
    of two >= 2 len(kernel); never below 1e-10.
    """
    kernel = np.asarray(kernel, dtype=np.float64).ravel()
    if kernel.size == 0:
        raise ValueError("kernel is empty")
    n = 1 << max(0, (2 * kernel.size - 1).bit_length())
    power = np.abs(np.fft.rfft(kernel, n)) ** 2
    return max(float(power.max()), 1e-10)


def _t_peak(tau_rise: float, tau_decay: float) -> float:
    # td*tr/(td-tr) * ln(td/tr) = td * ln(x)/(x-1), x = td/tr, via log1p
    xm1 = (tau_decay - tau_rise) / tau_rise
    return tau_decay * math.log1p(xm1) / xm1


def _bisect(f, a: float, b: float, xtol: float, rtol: float) -> float:
    """A root of f in [a, b] (f(a), f(b) of opposite signs, or one of them 0)
    to within ``xtol + rtol |x|``, by bisection: ~50 evaluations, and no
    ``scipy.optimize`` import (~0.5 s of a first CLI call)."""
    fa = f(a)
    if fa == 0.0:
        return a
    while True:
        m = 0.5 * (a + b)
        if abs(b - a) <= 2.0 * (xtol + rtol * abs(m)) or m in (a, b):
            return m
        fm = f(m)
        if fm == 0.0:
            return m
        if (fm > 0.0) == (fa > 0.0):
            a, fa = m, fm
        else:
            b = m


def _half_max_times(tau_rise: float, tau_decay: float, t_peak: float) -> tuple[float, float]:
    """The two half-maximum times by bisection (:func:`_bisect`, no SciPy)."""
    peak = float(_raw_kernel(np.array(t_peak), tau_rise, tau_decay))

    def half(t: float) -> float:
        return float(_raw_kernel(np.array(t), tau_rise, tau_decay)) / peak - 0.5

    left = _bisect(half, 0.0, t_peak, xtol=1e-15 * t_peak, rtol=1e-15)
    hi = t_peak + tau_decay
    while half(hi) > 0:
        hi += tau_decay
    right = _bisect(half, t_peak, hi, xtol=1e-15 * hi, rtol=1e-15)
    return left, right


def _fwhm(tau_rise: float, tau_decay: float, t_peak: float) -> float:
    left, right = _half_max_times(tau_rise, tau_decay, t_peak)
    return right - left


def kernel_shape(tau_rise: float, tau_decay: float) -> tuple[float, float]:
    """``(t_peak, fwhm)`` in seconds of the continuous kernel.

    t_peak is closed form; the FWHM is found by root-finding on both flanks.
    """
    t_peak, left, right = kernel_landmarks(tau_rise, tau_decay)
    return t_peak, right - left


def kernel_landmarks(tau_rise: float, tau_decay: float) -> tuple[float, float, float]:
    """``(t_peak, t_half_rise, t_half_decay)`` in seconds: the peak and the two
    half-maximum crossings of the continuous kernel (what a plot marks)."""
    tau_rise = _check_one("tau_rise", tau_rise, warn=False)
    tau_decay = _check_one("tau_decay", tau_decay, warn=False)
    _check_order(tau_rise, tau_decay)
    _warn_outside("tau_rise", tau_rise)
    _warn_outside("tau_decay", tau_decay)
    t_peak = _t_peak(tau_rise, tau_decay)
    return (t_peak, *_half_max_times(tau_rise, tau_decay, t_peak))


def _shape_ratio(rho: float) -> float:
    """fwhm / t_peak for tau_rise = rho, tau_decay = 1 (scale-free)."""
    t_peak = _t_peak(rho, 1.0)
    return _fwhm(rho, 1.0, t_peak) / t_peak


def tau_from_shape(t_peak: float, fwhm: float) -> tuple[float, float]:
    """Inverse of :func:`kernel_shape`: ``(tau_rise, tau_decay)`` from a transient.

    Both readouts scale with a common factor of the taus, so their ratio fixes
    tau_rise / tau_decay; a 1-D root find on that ratio, then a rescale.
    """
    t_peak, fwhm = float(t_peak), float(fwhm)
    if not (math.isfinite(t_peak) and t_peak > 0):
        raise ValueError(f"t_peak must be a positive number of seconds, got {t_peak}")
    if not (math.isfinite(fwhm) and fwhm > 0):
        raise ValueError(f"fwhm must be a positive number of seconds, got {fwhm}")
    target = fwhm / t_peak
    # search rho = tau_rise / tau_decay on a log scale
    lo, hi = 1e-9, 1.0 - 1e-9
    r_lo, r_hi = _shape_ratio(lo), _shape_ratio(hi)
    if not r_hi <= target <= r_lo:
        raise ValueError(
            f"no double-exponential kernel has fwhm/t_peak = {target:.4g}: it must lie "
            f"between {r_hi:.4g} (tau_rise -> tau_decay) and {r_lo:.4g}"
        )
    from scipy.optimize import brentq

    log_rho = brentq(
        lambda z: _shape_ratio(math.exp(z)) - target,
        math.log(lo),
        math.log(hi),
        xtol=1e-15,
        rtol=1e-15,
    )
    rho = math.exp(log_rho)
    tau_decay = t_peak / _t_peak(rho, 1.0)
    return rho * tau_decay, tau_decay


def bandpass_filter(traces, tau_rise: float, tau_decay: float, fs: float) -> np.ndarray:
    """The optional CaTune bandpass, along the last axis, via a real FFT.

    High-pass at ``1 / (2 pi tau_decay 16)``, low-pass at
    ``min(4 / (2 pi tau_rise), fs / 2)``; each edge a raised-cosine taper of
    half-width half its cutoff.  Traces shorter than 8 samples come back
    unchanged (as a float64 copy).
    """
    tau_rise, tau_decay, fs = validate_params(tau_rise, tau_decay, fs)
    x = np.array(traces, dtype=np.float64)
    n = x.shape[-1]
    if n < 8:
        return x
    f = np.fft.rfftfreq(n, d=1.0 / fs)
    return np.fft.irfft(np.fft.rfft(x, axis=-1) * _gain(f, tau_rise, tau_decay, fs),
                        n=n, axis=-1)


def _cutoffs(tau_rise: float, tau_decay: float, fs: float) -> tuple[float, float]:
    return 1.0 / (2 * math.pi * tau_decay * 16), min(4.0 / (2 * math.pi * tau_rise), fs / 2)


def _gain(f: np.ndarray, tau_rise: float, tau_decay: float, fs: float) -> np.ndarray:
    hp, lp = _cutoffs(tau_rise, tau_decay, fs)
    return _edge(f, hp, rising=True) * _edge(f, lp, rising=False)


def bandpass_cutoffs(tau_rise: float, tau_decay: float, fs: float) -> tuple[float, float]:
    """(high-pass, low-pass) cutoffs in Hz of :func:`bandpass_filter`."""
    return _cutoffs(*validate_params(tau_rise, tau_decay, fs))


def bandpass_gain(f, tau_rise: float, tau_decay: float, fs: float) -> np.ndarray:
    """The gain of :func:`bandpass_filter` at frequencies ``f`` (Hz)."""
    tau_rise, tau_decay, fs = validate_params(tau_rise, tau_decay, fs)
    return _gain(np.asarray(f, dtype=np.float64), tau_rise, tau_decay, fs)


def _edge(f: np.ndarray, f_cut: float, *, rising: bool) -> np.ndarray:
    w = 0.5 * f_cut
    # 0 -> 1 across [f_cut - w, f_cut + w] along a raised cosine
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.clip((f - (f_cut - w)) / (2 * w), 0.0, 1.0))
    return ramp if rising else 1.0 - ramp
