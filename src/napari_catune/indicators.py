"""Published indicator kinetics: the kernels of the tuner's *indicator...* presets.

Qt-free: (tau_rise, tau_decay) from a time to peak and a half-decay (or FWHM).
"""

from __future__ import annotations

import math

from . import kernel as _kernel

_ZHANG_2023 = ("Zhang et al. 2023, Nature 615:884 (jGCaMP8 paper), 1-AP responses in cultured "
               "neurons, as tabulated on janelia.org/jgcamp8-calcium-indicators")
_CHEN_2013 = ("Chen et al. 2013, Nature 499:295 (GCaMP6 paper), Supplementary Table 3: 1-AP "
              "responses in mouse V1 L2/3 in vivo (cell-attached), mean time to peak and "
              "half-decay time")
#: indicator -> (t_peak s, half-rise s or None, half-decay s, source).  With a half-rise
#: the kernel is set to the published time to peak and FWHM = t_peak - half-rise +
#: half-decay; without one (Chen et al. give no half-rise) to the time to peak and the
#: half-decay time (peak to half maximum).
INDICATORS = {
    "GCaMP6f": (0.045, None, 0.142, _CHEN_2013),
    "GCaMP6s": (0.179, None, 0.550, _CHEN_2013),
    "jGCaMP7f": (0.0995, 0.0248, 0.1819, _ZHANG_2023),
    "jGCaMP8f": (0.0248, 0.0071, 0.0674, _ZHANG_2023),
    "jGCaMP8m": (0.0290, 0.0071, 0.1183, _ZHANG_2023),
    "jGCaMP8s": (0.0570, 0.0101, 0.3067, _ZHANG_2023),
}
_CATUNE_PRESETS = ("CaTune's own simulation presets (miniscope/CaLab, "
                   "simulation-presets.ts), which cite {}")
#: indicators for which no single-AP time to peak and half-decay was found to check
#: here: the time constants CaTune itself uses for them, (tau_rise s, tau_decay s)
TAU_PRESETS = {
    "GCaMP6m": (0.15, 0.9, _CATUNE_PRESETS.format("Chen et al. 2013")),
    "OGB-1": (0.05, 1.5, _CATUNE_PRESETS.format("Stosiek et al. 2003, PNAS 100:7319")),
}
for _name, (_tr, _td, _src) in TAU_PRESETS.items():
    INDICATORS[_name] = (_kernel.kernel_landmarks(_tr, _td)[0], None, None, _src)


def _decay_ratio(rho: float) -> float:
    """(half-decay time after the peak) / t_peak of the kernel with tau_rise/tau_decay = rho."""
    with _kernel.quiet_range("tau_rise", "tau_decay"):  # the search passes taus
        tp, _, right = _kernel.kernel_landmarks(rho, 1.0)  # outside CaTune's sliders
    return (right - tp) / tp


def _t_peak_unit(rho: float) -> float:
    with _kernel.quiet_range("tau_rise", "tau_decay"):
        return _kernel.kernel_landmarks(rho, 1.0)[0]


def taus_from_peak_and_half_decay(t_peak: float, half_decay: float) -> tuple[float, float]:
    """(tau_rise, tau_decay) of the kernel with this time to peak and half-decay time
    (from the peak to half its height).  ValueError when no kernel has them."""
    from scipy.optimize import brentq

    target = half_decay / t_peak
    lo, hi = 1e-6, 1.0 - 1e-6
    r_lo, r_hi = _decay_ratio(hi), _decay_ratio(lo)
    if not (t_peak > 0 and r_lo < target < r_hi):
        raise ValueError(f"half_decay/t_peak = {target:.4g} must lie between {r_lo:.4g} and "
                         f"{r_hi:.4g} for a double-exponential kernel")
    z = brentq(lambda z: _decay_ratio(math.exp(z)) - target, math.log(lo), math.log(hi),
               xtol=1e-14, rtol=1e-14)
    rho = math.exp(z)
    tau_decay = t_peak / _t_peak_unit(rho)
    return rho * tau_decay, tau_decay


def indicator_taus(name: str) -> tuple[float, float]:
    """(tau_rise, tau_decay) in seconds of an indicator preset."""
    if name in TAU_PRESETS:
        return TAU_PRESETS[name][:2]
    tp, half_rise, half_decay, _ = INDICATORS[name]
    if half_rise is None:
        return taus_from_peak_and_half_decay(tp, half_decay)
    return _kernel.tau_from_shape(tp, tp - half_rise + half_decay)


def indicator_shape(name: str) -> tuple[float, float]:
    """(t_peak, FWHM) in seconds of an indicator preset."""
    tp, left, right = _kernel.kernel_landmarks(*indicator_taus(name))
    return tp, right - left
