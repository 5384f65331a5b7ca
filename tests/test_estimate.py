"""estimate_params: accuracy on seeded synthetic data, robustness, bad input."""

import math
import warnings

import numpy as np
import pytest

from napari_catune.estimate import DEFAULTS, estimate_params, lambda_for_noise, noise_sigma
from napari_catune.params import TuningParams


def _synthetic(tau_rise, tau_decay, fs=30.0, n=12, T=4000, rate=0.5, noise=0.15, seed=0):
    """Poisson spikes through the double exponential (written out here), plus noise."""
    rng = np.random.default_rng(seed)
    spikes = rng.poisson(rate / fs, (n, T)).astype(float)
    t = np.arange(int(15 * tau_decay * fs)) / fs
    h = np.exp(-t / tau_decay) - np.exp(-t / tau_rise)
    h /= h.max()
    calcium = np.array([np.convolve(s, h)[:T] for s in spikes])
    amp = rng.uniform(0.7, 1.5, (n, 1))
    y = amp * calcium + noise * rng.standard_normal((n, T)) + rng.uniform(1, 3, (n, 1))
    return y, spikes


def _in_range(p):
    assert isinstance(p, TuningParams)
    assert 0.001 <= p.tau_rise < p.tau_decay <= 10
    assert 0 <= p.lam and math.isfinite(p.lam)


@pytest.mark.parametrize("tau_rise, tau_decay, fs", [(0.05, 0.4, 30.0), (0.1, 1.5, 15.0),
                                                     (0.02, 0.2, 60.0)])
def test_accuracy_on_seeded_synthetic(tau_rise, tau_decay, fs):
    y, _ = _synthetic(tau_rise, tau_decay, fs=fs, seed=1)
    p = estimate_params(y, fs)
    _in_range(p)
    assert p.fs == fs
    assert abs(p.tau_decay / tau_decay - 1) <= 0.25
    assert p.tau_rise < 3 * tau_rise


def test_accuracy_on_calab_preset_beats_oasis():
    import calab
    import oasis.functions as oasis
    from scipy.ndimage import gaussian_filter1d

    from napari_catune.solver import run_deconvolution

    fs = 30.0
    sim = calab.simulate(calab.presets.jgcamp8f(num_cells=8, num_timepoints=3000, seed=3))
    y = sim.traces.astype(float)
    spikes = np.array([g.spikes for g in sim.ground_truth], float)
    p = estimate_params(y, fs)
    assert abs(p.tau_decay / 0.3 - 1) <= 0.25
    ours = run_deconvolution(y, fs, p.tau_rise, p.tau_decay, p.lam)

    def r(a, b):
        a, b = gaussian_filter1d(a, 0.1 * fs), gaussian_filter1d(b, 0.1 * fs)
        return np.corrcoef(a, b)[0, 1]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = [oasis.deconvolve(row, g=(None, None), penalty=1)[1] for row in y]
    r_ours = np.median([r(a, b) for a, b in zip(ours, spikes)])
    r_oasis = np.median([r(a, b) for a, b in zip(theirs, spikes)])
    assert r_ours >= r_oasis


def test_accuracy_on_our_simulation():
    from napari_catune.simulation import simulate_recording

    rec = simulate_recording(n_cells=8, n_frames=1500, shape=(64, 64), tau_rise=0.05,
                             tau_decay=0.8, seed=2)
    p = estimate_params(rec.traces, rec.fs)
    assert abs(p.tau_decay / 0.8 - 1) <= 0.25


def test_noise_sigma_from_high_frequencies():
    y, _ = _synthetic(0.05, 1.0, noise=0.3, seed=4)
    sig = noise_sigma(y, 30.0)
    np.testing.assert_allclose(sig, 0.3, rtol=0.06)


def _fourier_upsample(y, factor):
    """Band-limited (FFT) interpolation to ``factor`` times the rate, as
    Cascade resamples its ground truth and as scipy.signal.resample does:
    nothing above the old Nyquist frequency."""
    n = y.shape[-1]
    spec = np.fft.rfft(y, axis=-1)
    out = np.zeros(y.shape[:-1] + (n * factor // 2 + 1,), complex)
    out[..., :spec.shape[-1]] = spec
    return np.fft.irfft(out, n * factor, axis=-1) * factor


def test_noise_sigma_of_an_upsampled_trace_is_not_zero():
    # A trace interpolated to twice its rate has an empty top half-band; the
    # noise is then read in the octave below (white at the old rate: density
    # 2 sigma^2 / fs_old, i.e. sigma * sqrt(2) as white noise at the new rate).
    y, _ = _synthetic(0.05, 0.5, noise=0.3, seed=4)
    up = _fourier_upsample(y, 2)
    sig0 = noise_sigma(y, 30.0)
    sig = noise_sigma(up, 60.0)
    np.testing.assert_allclose(sig / sig0, np.sqrt(2.0), rtol=0.15)
    # ... so the estimate stays what it is at the recorded rate, not lambda ~ 0
    # with tau_decay at the grid's floor
    p0, p = estimate_params(y, 30.0), estimate_params(up, 60.0)
    assert abs(math.log(p.tau_decay / p0.tau_decay)) < math.log(1.3)
    assert p.lam > 0.3 * p0.lam


def test_noise_sigma_unchanged_on_white_noise_at_the_top():
    # the fallback never fires on an ordinary trace: same value as the top band alone
    y, _ = _synthetic(0.02, 0.2, fs=60.0, noise=0.2, seed=6)
    from napari_catune.estimate import welch_density

    f, pxx = welch_density(y, 60.0, 256)
    direct = np.sqrt(np.median(pxx[:, f >= 15.0], axis=-1) * 30.0)
    np.testing.assert_array_equal(noise_sigma(y, 60.0), direct)


def test_lambda_rejects_noise_sized_events():
    from napari_catune.solver import run_deconvolution

    rng = np.random.default_rng(7)
    fs, sigma = 30.0, 0.5
    noise = sigma * rng.standard_normal((5, 3000)) + 10
    lam = lambda_for_noise(sigma, 0.05, 0.5, fs, z=3.0)
    s = run_deconvolution(noise, fs, 0.05, 0.5, lam)
    assert np.count_nonzero(s > 1e-9) / s.size < 0.01
    # the default threshold (z = 1.5) lets a little noise through, never much
    lam_default = lambda_for_noise(sigma, 0.05, 0.5, fs)
    assert lam_default == pytest.approx(lam / 2)
    s_def = run_deconvolution(noise, fs, 0.05, 0.5, lam_default)
    assert 0 < np.count_nonzero(s_def > 1e-9) / s.size < 0.05
    # and a real transient of a few sigma still comes through
    y = noise[0].copy()
    t = np.arange(300) / fs
    h = np.exp(-t / 0.5) - np.exp(-t / 0.05)
    y[1000:1300] += 6 * sigma * h / h.max()
    s1 = run_deconvolution(y, fs, 0.05, 0.5, lam)
    assert s1[995:1010].sum() > 0.5 * s1.sum() > 0


def test_lambda_scales_with_noise():
    y, _ = _synthetic(0.05, 0.5, noise=0.1, seed=5)
    p1 = estimate_params(y, 30.0)
    p10 = estimate_params(y * 10, 30.0)
    assert p10.lam == pytest.approx(10 * p1.lam, rel=1e-6)
    assert p10.tau_decay == pytest.approx(p1.tau_decay)


def test_flat_trace_gives_defaults_and_warns():
    with pytest.warns(UserWarning, match="flat"):
        p = estimate_params(np.full((3, 500), 7.0), 30.0)
    assert (p.tau_rise, p.tau_decay, p.lam) == (DEFAULTS["tau_rise"], DEFAULTS["tau_decay"],
                                               DEFAULTS["lam"])
    assert p.fs == 30.0


def test_pure_noise_warns_and_stays_in_range():
    rng = np.random.default_rng(0)
    with pytest.warns(UserWarning, match="no calcium transients"):
        p = estimate_params(rng.standard_normal((4, 2000)), 20.0)
    _in_range(p)
    assert p.tau_decay == DEFAULTS["tau_decay"]


def _weird_traces():
    rng = np.random.default_rng(3)
    T = 100
    yield "random walk", np.cumsum(rng.standard_normal(3000))
    yield "single spike", np.r_[np.zeros(500), 1.0, np.zeros(499)]
    yield "step", np.r_[np.zeros(300), np.ones(300)]
    yield "sinusoid", np.sin(np.arange(1000) / 3.0)
    yield "alternating", np.tile([0.0, 1.0], 200)
    yield "huge", 1e12 * rng.random(400)
    yield "tiny", 1e-12 * rng.random(400)
    yield "int16", rng.integers(-5, 5, 400).astype(np.int16)
    yield "exactly 100", rng.random(T)
    yield "flat but one row varies", np.vstack([np.ones(300), rng.random(300)])
    yield "one huge outlier", np.r_[rng.standard_normal(999) * 0.01, 1e6]
    yield "saturated", np.clip(np.cumsum(rng.standard_normal(2000)), -1, 1)


@pytest.mark.parametrize("fs", [1.0, 30.0, 1000.0])
def test_never_raises_on_finite_traces(fs):
    for name, y in _weird_traces():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = estimate_params(y, fs)
        _in_range(p)
        assert p.fs == fs, name


@pytest.mark.parametrize(
    "traces, fs, fragment",
    [
        (np.zeros(99), 30.0, "at least 100 samples"),
        # (a NaN at the end is padding: the row is measured on its finite part)
        (np.r_[np.zeros(75), np.nan, np.zeros(75)], 30.0, "NaN"),
        (np.vstack([np.zeros(150), np.r_[np.zeros(149), np.inf]]), 30.0, r"row 1 \(1 samples\)"),
        (np.zeros((0, 200)), 30.0, "0 ROIs"),
        (np.zeros((2, 3, 200)), 30.0, "shape"),
        (np.array(["a"] * 200), 30.0, "real numbers"),
        (np.zeros(200), 0.0, "sampling rate fs"),  # 0.5 and 5000 Hz are valid (issue 10)
        (np.zeros(200), -30.0, "sampling rate fs"),
    ],
)
def test_bad_input(traces, fs, fragment):
    with pytest.raises(ValueError, match=fragment):
        estimate_params(traces, fs)


def test_one_dimensional_input():
    y, _ = _synthetic(0.05, 0.4, n=1, seed=8)
    p = estimate_params(y[0], 30.0)
    assert abs(p.tau_decay / 0.4 - 1) <= 0.25
    assert math.isfinite(p.lam)


def test_welch_density_equals_scipy():
    from scipy.signal import welch

    from napari_catune.estimate import welch_density

    x = np.random.default_rng(3).standard_normal((3, 1000)).cumsum(axis=1)
    for nperseg in (256, 255, 1000):
        f, p = welch_density(x, 30.0, nperseg)
        f2, p2 = welch(x, fs=30.0, nperseg=nperseg, axis=-1)
        np.testing.assert_allclose(f, f2)
        np.testing.assert_allclose(p, p2, rtol=1e-10)


@pytest.mark.parametrize("preset, tau_decay", [("gcamp6f", 0.6), ("gcamp6s", 1.8),
                                               ("jgcamp8f", 0.3)])
def test_tau_decay_within_15_percent_on_calab_presets_with_drift(preset, tau_decay):
    import calab

    # calab's presets carry its default random-walk baseline drift
    sim = calab.simulate(getattr(calab.presets, preset)(num_cells=12, num_timepoints=6000, seed=4))
    p = estimate_params(sim.traces.astype(float), 30.0)
    assert abs(p.tau_decay / tau_decay - 1) <= 0.15
    # never a degenerate kernel
    assert p.tau_rise <= 0.2 * p.tau_decay


def test_scaling_the_traces_by_50_gives_the_same_events():
    from napari_catune.estimate import estimate_report
    from napari_catune.events import detect_events
    from napari_catune.solver import run_deconvolution

    y, _ = _synthetic(0.05, 0.5, noise=0.1, seed=6)
    r1 = estimate_report(y, 30.0)
    r50 = estimate_report(50 * y, 30.0)
    assert r50.params.tau_decay == pytest.approx(r1.params.tau_decay)
    assert r50.params.lam == pytest.approx(50 * r1.params.lam, rel=1e-9)
    np.testing.assert_allclose(r50.noise, 50 * r1.noise, rtol=1e-9)
    ev = []
    for scale, rep in ((1, r1), (50, r50)):
        p = rep.params
        ev.append(detect_events(run_deconvolution(scale * y, 30.0, p.tau_rise, p.tau_decay, p.lam), 30.0))
    np.testing.assert_array_equal(ev[0]["onset_frame"], ev[1]["onset_frame"])
    np.testing.assert_allclose(ev[0]["amplitude"], ev[1]["amplitude"], rtol=1e-6, atol=1e-9)


def test_report_gives_noise_and_per_trace_estimates():
    from napari_catune.estimate import estimate_report

    y, _ = _synthetic(0.05, 0.4, n=6, noise=0.2, seed=9)
    rep = estimate_report(y, 30.0, max_traces=4)
    assert rep.noise.shape == (6,)
    np.testing.assert_allclose(rep.noise, 0.2, rtol=0.1)
    assert rep.noise_median == pytest.approx(float(np.median(rep.noise)))
    assert rep.rows.size == 4 and rep.tau_decay_rows.size == 4
    assert rep.params.lam == pytest.approx(
        lambda_for_noise(rep.noise_median, rep.params.tau_rise, rep.params.tau_decay, 30.0, rep.z))


def test_progress_and_cancel():
    import threading

    from napari_catune.estimate import EstimateCancelled

    y, _ = _synthetic(0.05, 0.4, n=5, seed=10)
    seen = []
    estimate_params(y, 30.0, progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, 5) and seen[-1] == (5, 5)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    stop = threading.Event()

    def progress(done, total):
        if done == 2:
            stop.set()

    with pytest.raises(EstimateCancelled):
        estimate_params(y, 30.0, progress=progress, cancel=stop)
    with pytest.raises(EstimateCancelled):
        estimate_params(y, 30.0, cancel=lambda: True)


@pytest.mark.parametrize("kwargs, fragment", [({"z": -1}, "z must"), ({"z": float("nan")}, "z must"),
                                              ({"max_traces": 0}, "max_traces")])
def test_report_bad_options(kwargs, fragment):
    from napari_catune.estimate import estimate_report

    with pytest.raises(ValueError, match=fragment):
        estimate_report(np.random.default_rng(0).random(300), 30.0, **kwargs)


def test_estimated_parameters_carry_the_drift_baseline():
    y, _ = _synthetic(0.05, 0.4, n=3, seed=11)
    assert estimate_params(y, 30.0).baseline == "drift"
    with pytest.warns(UserWarning, match="flat"):
        assert estimate_params(np.ones((2, 300)), 30.0).baseline == "drift"


def test_tau_decay_at_high_noise_within_25_percent():
    # The search's noise bias: at ~1.7 noise deviations per spike (amplitude
    # 0.7-1.5, noise 0.6) a search at lambda's threshold (z = 1.5) read
    # 0.72-0.78 of the true 0.7 s (median of seeds 0.724); its own stricter
    # threshold (_SEARCH_Z) keeps it within the +-25 % asked of the clean
    # traces above (0.76-0.81).
    ratios = []
    for seed in (1, 2, 3):
        y, _ = _synthetic(0.07, 0.7, noise=0.6, seed=seed)
        ratios.append(estimate_params(y, 30.0).tau_decay / 0.7)
    assert 0.75 <= np.median(ratios) <= 1.25, ratios
