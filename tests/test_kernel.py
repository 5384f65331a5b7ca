import math
import warnings

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
# physically valid, outside CaTune's sliders (issue 10: calab accepts them)
BEYOND_SLIDERS = [
    (0.02, 0.4, 2000.0),
    (0.02, 0.4, 0.5),
    (0.6, 2.0, 30.0),
    (0.02, 12.0, 30.0),
    (0.0005, 0.4, 30.0),
    (0.0005, 0.4, 0.5),
]


def reference_kernel(tau_rise, tau_decay, fs):
    n = max(2, math.ceil(-math.log(1e-6) * tau_decay * fs))
    t = np.arange(n) / fs
    h = np.exp(-t / tau_decay) - np.exp(-t / tau_rise)
    return h / h.max()


@pytest.mark.parametrize("tr,td,fs", TYPICAL + EXTREME + BEYOND_SLIDERS)
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


@pytest.mark.parametrize("tr,td,fs", TYPICAL + EXTREME + BEYOND_SLIDERS)
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
        ((0.02, -0.4, 30), "tau_decay = -0.4 s is invalid: it must be a positive number"),
        ((0.02, 0.4, 0.0), "sampling rate fs = 0 Hz is invalid"),
        ((0.02, 0.4, -30.0), "sampling rate fs = -30 Hz is invalid"),
        ((float("nan"), 0.4, 30), "finite"),
        ((0.02, float("inf"), 30), "finite"),
        ((0.02, 0.4, float("inf")), "finite"),
        (("0.02", 0.4, 30), "tau_rise must be a number"),
        ((0.02, 0.4, None), "sampling rate fs must be a number"),
        ((0.02, 0.4, True), "sampling rate fs must be a number"),
        # a kernel that would not fit in memory (1.38e9 samples)
        ((0.02, 1e4, 1e4), r"tau_decay = 10000 s at sampling rate fs = 10000 Hz needs a kernel "
                           r"of 1\.38e\+09 samples"),
        # decays within a thousandth of a sample: exp(-1/(tau_decay fs)) underflows
        ((1e-6, 1e-5, 1.0), "vanishes within one sample"),
        # one ulp apart: 1/tau_rise - 1/tau_decay rounds to 0
        ((np.nextafter(0.4, 0.0), 0.4, 30), "too close to tell apart"),
    ],
)
def test_bad_parameters_name_the_parameter(args, fragment):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused: no range warning before the error
        with pytest.raises(ValueError, match=fragment):
            build_kernel(*args)


@pytest.fixture
def fresh_warnings(monkeypatch):
    from napari_catune import kernel

    monkeypatch.setattr(kernel, "_WARNED", set())


@pytest.mark.parametrize(
    "tr,td,fs,lam,fragment",
    [
        (0.02, 0.4, 2000.0, 0.1, "sampling rate fs = 2000 Hz is outside CaTune's slider range "
                                 "1-1000 Hz"),
        (0.02, 0.4, 0.5, 0.1, "sampling rate fs = 0.5 Hz is outside .* 1-1000 Hz"),
        (0.02, 0.4, 30.0, 20.0, "lambda = 20 is outside CaTune's slider range 0-10"),
        (0.6, 2.0, 30.0, 0.1, r"tau_rise = 0\.6 s is outside CaTune's slider range 0\.001-0\.5 s"),
        (0.02, 12.0, 30.0, 0.1, "tau_decay = 12 s is outside CaTune's slider range 0.01-10 s"),
        (0.0005, 0.4, 30.0, 0.1, "tau_rise = 0.0005 s is outside"),
    ],
)
def test_values_beyond_the_sliders_are_kept_with_one_warning(fresh_warnings, tr, td, fs, lam,
                                                             fragment):
    import warnings

    from napari_catune.kernel import ParameterRangeWarning, validate_params

    with pytest.warns(ParameterRangeWarning, match=fragment) as record:
        assert validate_params(tr, td, fs, lam) == (tr, td, fs, lam)
    assert len(record) == 1
    # once per value: the solver path validates the same numbers many times
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_params(tr, td, fs, lam)
        build_kernel(tr, td, fs)
        tau_to_ar2(tr, td, fs)


def test_inside_the_sliders_no_warning(fresh_warnings):
    import warnings

    from napari_catune.kernel import PARAM_RANGES, validate_params

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for tr, td, fs in EXTREME:
            validate_params(tr, td, fs, 10.0)
            validate_params(tr, td, fs, 0.0)
    # the slider ranges themselves are unchanged (the tuner's sliders span them)
    assert PARAM_RANGES == {"tau_rise": (0.001, 0.5), "tau_decay": (0.01, 10.0),
                            "fs": (1.0, 1000.0), "lam": (0.0, 10.0)}


def test_longest_kernel_accepted_is_the_documented_one():
    from napari_catune.kernel import MAX_KERNEL_SAMPLES, kernel_length, validate_params

    assert MAX_KERNEL_SAMPLES == 50_000_000
    # 13.8155 * tau_decay * fs samples: 3.6e6 fine, 5.5e7 refused
    with pytest.warns(UserWarning):
        validate_params(0.1, 60.0, 4400.0)
        assert kernel_length(60.0, 4400.0) < MAX_KERNEL_SAMPLES
    with pytest.raises(ValueError, match="fit in memory"):
        validate_params(0.1, 60.0, 66000.0)


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


def test_quiet_range_is_this_threads_own():
    """The tuner's quiet for lambda above the web app's 0-10 holds on its own
    thread only, and a value it has said is not said again (review rev36: a
    process-wide warnings filter per slider move raced with worker threads)."""
    import threading

    from napari_catune.kernel import ParameterRangeWarning, quiet_range, validate_params

    seen = []
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        with quiet_range("lam"):
            validate_params(0.05, 0.5, 30.0, 37.25)  # quiet here
            t = threading.Thread(target=lambda: seen.append(
                validate_params(0.05, 0.5, 30.0, 41.75)))  # not quiet there
            t.start()
            t.join()
        validate_params(0.05, 0.5, 30.0, 37.25)  # said once already (by the caller)
    msgs = [str(m.message) for m in said if issubclass(m.category, ParameterRangeWarning)]
    assert len(msgs) == 1 and "41.75" in msgs[0] and seen
