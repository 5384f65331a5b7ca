import math

import numpy as np
import pytest

from napari_catune import (
    bandpass_filter,
    build_kernel,
    compute_lipschitz,
    kernel_shape,
    tau_from_shape,
    tau_to_ar2,
)
from napari_catune.kernel import ar2_scale

TYPICAL = [(0.02, 0.4, 30.0), (0.05, 0.5, 30.0), (0.1, 1.5, 15.0)]
EXTREME = [
    (0.001, 0.01, 1000.0),
    (0.001, 10.0, 1.0),
    (0.5, 10.0, 1000.0),
    (0.4999, 0.5, 30.0),
    (0.001, 0.011, 1.0),
]


def reference_kernel(tau_rise, tau_decay, fs):
    n = max(2, math.ceil(-math.log(1e-6) * tau_decay * fs))
    t = np.arange(n) / fs
    h = np.exp(-t / tau_decay) - np.exp(-t / tau_rise)
    return h / h.max()


@pytest.mark.parametrize("tr,td,fs", TYPICAL + EXTREME)
def test_kernel_peak_first_sample_and_sign(tr, td, fs):
    h = build_kernel(tr, td, fs)
    assert h.max() == pytest.approx(1.0, abs=1e-15)
    assert h[0] == 0.0
    assert (h >= 0).all()
    assert len(h) == max(2, math.ceil(-math.log(1e-6) * td * fs))


@pytest.mark.parametrize("tr,td,fs", TYPICAL)
def test_kernel_equals_reference_formula(tr, td, fs):
    np.testing.assert_allclose(build_kernel(tr, td, fs), reference_kernel(tr, td, fs), rtol=0, atol=1e-12)


def test_kernel_length_grows_with_tau_decay_and_fs():
    assert len(build_kernel(0.02, 0.8, 30)) > len(build_kernel(0.02, 0.4, 30))
    assert len(build_kernel(0.02, 0.4, 60)) > len(build_kernel(0.02, 0.4, 30))


def test_kernel_is_deterministic():
    assert np.array_equal(build_kernel(0.03, 0.7, 20), build_kernel(0.03, 0.7, 20))


@pytest.mark.parametrize("tr,td,fs", TYPICAL + EXTREME)
def test_ar2_roots_and_recursion_reproduce_kernel(tr, td, fs):
    g1, g2, d, r = tau_to_ar2(tr, td, fs)
    # exp(-dt/tau_rise) underflows to 0.0 for tau_rise = 1 ms at 1 Hz (e^-1000)
    assert 0 < d < 1 and 0 <= r < d and (r > 0 or tr * fs < 0.01)
    assert g1 == pytest.approx(d + r) and g2 == pytest.approx(-d * r)
    assert d == pytest.approx(math.exp(-1 / (fs * td))) and r == pytest.approx(math.exp(-1 / (fs * tr)))
    # the AR(2) impulse response, delayed one sample and scaled, is the kernel
    h = build_kernel(tr, td, fs)
    a = np.zeros(len(h))
    a[0] = 1.0
    for k in range(1, len(h)):
        a[k] = g1 * a[k - 1] + (g2 * a[k - 2] if k >= 2 else 0.0)
    alpha = ar2_scale(tr, td, fs)
    np.testing.assert_allclose(alpha * a[:-1], h[1:], rtol=0, atol=1e-9)


@pytest.mark.parametrize("tr,td,fs", TYPICAL + [(0.001, 0.01, 1000.0)])
def test_lipschitz_bounds_and_direct_dft(tr, td, fs):
    h = build_kernel(tr, td, fs)
    lip = compute_lipschitz(h)
    assert lip >= (h**2).sum() - 1e-12
    assert lip <= h.sum() ** 2 + 1e-9
    n = 1 << (2 * len(h) - 1).bit_length()
    i = np.arange(len(h))
    direct = max(abs(np.sum(h * np.exp(-2j * np.pi * k * i / n))) ** 2 for k in range(n // 2 + 1))
    assert lip == pytest.approx(direct, rel=1e-10)


def test_lipschitz_floor():
    assert compute_lipschitz(np.zeros(4)) == 1e-10


@pytest.mark.parametrize("tr,td", [(0.02, 0.4), (0.001, 10.0), (0.5, 10.0), (0.001, 0.0105), (0.3, 0.31)])
def test_kernel_shape_matches_dense_sampling_and_inverts(tr, td):
    t_peak, fwhm = kernel_shape(tr, td)
    t = np.linspace(0, 12 * td, 2_000_001)
    h = np.exp(-t / td) - np.exp(-t / tr)
    assert t_peak == pytest.approx(t[np.argmax(h)], abs=2 * t[1])
    above = t[h >= 0.5 * h.max()]
    assert fwhm == pytest.approx(above[-1] - above[0], abs=2 * t[1])
    tr2, td2 = tau_from_shape(t_peak, fwhm)
    assert tr2 == pytest.approx(tr, rel=1e-6)
    assert td2 == pytest.approx(td, rel=1e-6)


def test_tau_from_shape_rejects_impossible_shape():
    with pytest.raises(ValueError, match="fwhm/t_peak"):
        tau_from_shape(1.0, 1.0)  # narrower than any double exponential
    with pytest.raises(ValueError, match="t_peak"):
        tau_from_shape(-1.0, 1.0)


@pytest.mark.parametrize(
    "args,fragment",
    [
        ((0.5, 0.4, 30), "smaller than tau_decay"),
        ((0.02, 0.02, 30), "smaller than tau_decay"),
        ((0.0, 0.4, 30), "tau_rise"),
        ((-0.01, 0.4, 30), "tau_rise"),
        ((0.6, 0.9, 30), "0.001-0.5"),
        ((0.02, 11.0, 30), "tau_decay"),
        ((0.02, 0.4, 0.0), "sampling rate"),
        ((0.02, 0.4, 2000.0), "1-1000"),
        ((float("nan"), 0.4, 30), "finite"),
        ((0.02, float("inf"), 30), "finite"),
    ],
)
def test_bad_parameters_name_the_parameter_and_range(args, fragment):
    with pytest.raises(ValueError, match=fragment):
        build_kernel(*args)


def test_bandpass_removes_dc_keeps_band_and_skips_short():
    fs, tr, td = 30.0, 0.05, 0.5
    t = np.arange(3000) / fs
    band = np.sin(2 * np.pi * 1.0 * t)  # 1 Hz: between the cutoffs
    out = bandpass_filter(band + 50.0, tr, td, fs)
    assert abs(out.mean()) < 1e-9
    np.testing.assert_allclose(out, band, atol=1e-6)
    short = np.arange(7.0)
    assert np.array_equal(bandpass_filter(short, tr, td, fs), short)
    two = bandpass_filter(np.vstack([band, band]), tr, td, fs)
    np.testing.assert_allclose(two[1], out - 0.0, atol=1e-6)
