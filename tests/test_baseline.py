"""Baseline models: "scalar"/"none" (True/False), CaTune's "rolling" baseline, "drift"."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_catune import build_kernel, objective, run_deconvolution_full
from napari_catune.baseline import (
    baseline_mode,
    default_drift_scale,
    drift_mu,
    rolling_baseline,
    rolling_window,
)
from napari_catune.solver import kkt_violation, reconvolve

FS, TR, TD, LAM = 30.0, 0.05, 0.5, 0.1


def naive_rolling(y, W, q=0.2):
    out = np.empty_like(y)
    for t in range(len(y)):
        w = np.sort(y[max(0, t - W + 1): t + 1])
        out[t] = w[min(int(math.floor((len(w) - 1) * q + 0.5)), len(w) - 1)]
    return out


def quiet_trace(drift, *, T=9000, noise=0.15, seed=0):
    """Spikes only in the first half of every 60 s; returns y, spikes, quiet mask
    (the spike-free halves, 3 s after the last spike on)."""
    rng = np.random.default_rng(seed)
    t = np.arange(T) / FS
    active = (t % 60) < 30
    spikes = np.where(active & (rng.random(T) < 0.02), rng.uniform(0.5, 2.0, T), 0.0)
    y = np.convolve(spikes, build_kernel(TR, TD, FS))[:T] + drift(t) + 2.0
    y += noise * rng.standard_normal(T)
    return y, spikes, (t % 60) > 33


DRIFTS = {
    "linear": lambda t: 0.01 * t,
    "slow sine": lambda t: np.sin(2 * np.pi * t / 300.0),
    "bleaching": lambda t: 3.0 * np.exp(-t / 60.0),
    "step": lambda t: np.where(t > 150.0, 1.0, 0.0),
}


# ------------------------------------------------------------ modes and API
def test_mode_names_and_booleans():
    assert baseline_mode(True) == "scalar" and baseline_mode(False) == "none"
    assert baseline_mode(np.bool_(True)) == "scalar"
    for m in ("scalar", "none", "rolling", "drift", "Drift"):
        assert baseline_mode(m) == m.lower()
    y, _, _ = quiet_trace(DRIFTS["linear"], T=1200)
    a = run_deconvolution_full(y, FS, TR, TD, LAM, baseline=True)
    b = run_deconvolution_full(y, FS, TR, TD, LAM, baseline="scalar")
    c = run_deconvolution_full(y, FS, TR, TD, LAM, baseline=False)
    d = run_deconvolution_full(y, FS, TR, TD, LAM, baseline="none")
    assert np.array_equal(a.activity, b.activity) and a.baseline == b.baseline
    assert np.array_equal(c.activity, d.activity) and c.baseline == d.baseline == 0.0


@pytest.mark.parametrize("bad", ["linear", "", 1, None, 0.5])
def test_bad_baseline_names_the_keyword(bad):
    with pytest.raises(ValueError, match="baseline must be one of"):
        run_deconvolution_full(np.zeros(100), FS, TR, TD, LAM, baseline=bad)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "soon"])
def test_bad_drift_scale_names_the_keyword(bad):
    with pytest.raises(ValueError, match="drift_scale"):
        run_deconvolution_full(np.zeros(100), FS, TR, TD, LAM, baseline="drift", drift_scale=bad)
    with pytest.raises(ValueError, match="drift_scale"):
        objective(np.zeros(100), np.zeros(100), 0.0, FS, TR, TD, LAM, drift_scale=bad)


def test_drift_scale_under_a_hundredth_of_a_frame_is_refused():
    # (mu under ~1e-16 made the drift pivot round to 0: a NaN baseline
    # reported converged; review rev31)
    y = np.zeros(100)
    for bad in (1e-9, 1e-170, 0.009 / FS):
        with pytest.raises(ValueError, match="drift_scale must be at least a hundredth of a frame"):
            run_deconvolution_full(y, FS, TR, TD, LAM, baseline="drift", drift_scale=bad)
    assert drift_mu(0.011 / FS, FS, TD) == pytest.approx(0.011 ** 2)
    res = run_deconvolution_full(y + 1.0, FS, TR, TD, LAM, baseline="drift", drift_scale=0.011 / FS)
    assert bool(np.all(res.converged)) and np.isfinite(res.baseline).all()


def test_bad_rolling_arguments():
    with pytest.raises(ValueError, match="quantile"):
        rolling_baseline(np.zeros(10), FS, TD, quantile=1.5)
    with pytest.raises(ValueError, match="quantile"):
        rolling_baseline(np.zeros(10), FS, TD, quantile="low")
    with pytest.raises(ValueError, match="sampling rate"):
        rolling_baseline(np.zeros(10), 0.0, TD)
    with pytest.raises(ValueError, match="tau_decay"):
        rolling_baseline(np.zeros(10), FS, -1.0)
    with pytest.raises(ValueError, match="NaN"):
        rolling_baseline(np.array([1.0, np.nan, 2.0]), FS, TD)


def test_result_shapes_per_mode():
    y = np.stack([quiet_trace(DRIFTS["linear"], T=900, seed=i)[0] for i in range(3)])
    for mode, per_sample in (("scalar", False), ("none", False), ("rolling", True), ("drift", True)):
        r2 = run_deconvolution_full(y, FS, TR, TD, LAM, baseline=mode)
        r1 = run_deconvolution_full(y[0], FS, TR, TD, LAM, baseline=mode)
        assert r2.activity.shape == r2.reconvolution.shape == y.shape
        assert r2.baseline.shape == (y.shape if per_sample else (3,))
        if per_sample:
            assert r1.baseline.shape == (900,)
        else:
            assert isinstance(r1.baseline, float)
        np.testing.assert_allclose(r1.activity, r2.activity[0], atol=1e-12)
        # the fit is K s + b in every mode
        fit = reconvolve(r2.activity, FS, TR, TD) + np.reshape(r2.baseline, (3, -1))
        np.testing.assert_allclose(r2.reconvolution, fit, atol=1e-12)


def test_default_drift_scale_formula():
    assert default_drift_scale(0.2) == 10.0
    assert default_drift_scale(1.5) == 30.0
    assert drift_mu(None, 30.0, 1.5) == pytest.approx((30.0 * 30.0) ** 2)
    assert drift_mu(2.0, 100.0, 0.5) == pytest.approx(200.0 ** 2)


# ------------------------------------------------------------------ rolling
@pytest.mark.parametrize("T,td,fs", [(2000, 0.5, 30.0), (700, 0.2, 10.0), (50, 1.0, 30.0)])
def test_rolling_baseline_is_the_causal_order_statistic(T, td, fs):
    rng = np.random.default_rng(1)
    y = np.cumsum(rng.standard_normal(T)) * 0.1 + rng.standard_normal(T)
    y[T // 4: T // 3] = y[T // 4]  # ties
    y = np.round(y, 1)  # more ties
    W = rolling_window(td, fs)
    assert W == 5 * max(1, math.ceil(5 * td * fs))
    np.testing.assert_array_equal(rolling_baseline(y, fs, td), naive_rolling(y, W))
    np.testing.assert_array_equal(rolling_baseline(y, fs, td, quantile=0.5),
                                  naive_rolling(y, W, 0.5))
    two = rolling_baseline(np.stack([y, -y]), fs, td)
    np.testing.assert_array_equal(two[1], naive_rolling(-y, W))


def test_rolling_baseline_equals_calab_subtract_baseline():
    from calab._native import _solver

    rng = np.random.default_rng(2)
    y = (np.cumsum(rng.standard_normal(5000)) * 0.1 + rng.standard_normal(5000)).astype(np.float32)
    solver = _solver.PySolver()
    solver.set_params(0.05, 0.4, 0.01, 30.0)
    solver.set_trace(y)
    solver.subtract_baseline()
    theirs = np.asarray(solver.get_trace())
    ours = y - rolling_baseline(y.astype(np.float64), 30.0, 0.4).astype(np.float32)
    np.testing.assert_array_equal(ours, theirs)


def test_rolling_matches_calab_on_drifting_dense_traces():
    import calab

    sim = calab.simulate(calab.SimulationConfig(num_cells=4, num_timepoints=6000, seed=3))
    y = sim.traces
    tr, td, lam = 0.1, 0.6, 0.05
    theirs = calab.run_deconvolution_full(y, FS, tr, td, lam)
    ours = run_deconvolution_full(y, FS, tr, td, lam, baseline="rolling")
    assert ours.converged.all()
    for a, b in zip(ours.activity, theirs.activity):
        assert np.corrcoef(a, b)[0, 1] >= 0.99
    pre = y - rolling_baseline(y, FS, td)
    np.testing.assert_allclose(ours.baseline, y - pre)
    mine = objective(pre, ours.activity, 0.0, FS, tr, td, lam)
    calab_obj = objective(pre, theirs.activity, 0.0, FS, tr, td, lam)
    assert (mine <= calab_obj).all()
    # the scalar model is a different fit on these traces
    scalar = run_deconvolution_full(y, FS, tr, td, lam)
    assert min(np.corrcoef(a, b)[0, 1] for a, b in zip(scalar.activity, theirs.activity)) < 0.9


# -------------------------------------------------------------------- drift
def _generic_qp(y, lam, drift_scale, fs=FS, tr=TR, td=TD):
    """The drift problem solved by a generic method: b eliminated in closed
    form (b = S (y - K s), S = (I + mu L)^-1 as a dense matrix), then the
    quadratic in s written as a non-negative least-squares problem and
    solved by Lawson-Hanson (scipy.optimize.nnls, exact active sets)."""
    from scipy.optimize import nnls

    T = len(y)
    K = np.array([reconvolve(np.eye(1, T, j)[0], fs, tr, td) for j in range(T)]).T
    G = build_kernel(tr, td, fs).sum()
    mu = (drift_scale * fs) ** 2
    D = np.diff(np.eye(T), axis=0)
    P = np.eye(T) - np.linalg.inv(np.eye(T) + mu * D.T @ D)  # residual maker
    K1 = K[:, :-1]  # s[T-1] never reaches the trace
    Q = K1.T @ P @ K1
    c = K1.T @ P @ y - lam * G
    w, V = np.linalg.eigh((Q + Q.T) / 2)
    A = np.sqrt(w)[:, None] * V.T
    z = (V.T @ c) / np.sqrt(w)
    s1, _ = nnls(A, z, maxiter=50 * T)
    s = np.append(s1, 0.0)
    return objective(y, s, None, fs, tr, td, lam, drift_scale=drift_scale)


@pytest.mark.parametrize("drift_scale", [0.3, 2.0, 30.0])
def test_drift_is_exact_against_a_generic_qp(drift_scale):
    rng = np.random.default_rng(4)
    T = 240
    t = np.arange(T) / FS
    s = (rng.random(T) < 0.05) * rng.exponential(1.0, T)
    y = reconvolve(s, FS, TR, TD) + 0.2 * rng.standard_normal(T) + 1 + 0.5 * np.sin(t)
    res = run_deconvolution_full(y, FS, TR, TD, LAM, baseline="drift", drift_scale=drift_scale)
    assert res.converged
    ours = objective(y, res.activity, res.baseline, FS, TR, TD, LAM, drift_scale=drift_scale)
    best = _generic_qp(y, LAM, drift_scale)
    assert ours <= best * (1 + 1e-8)
    assert ours == pytest.approx(best, rel=1e-8)
    assert kkt_violation(y, res.activity, res.baseline, FS, TR, TD, LAM, mode="drift",
                         drift_scale=drift_scale) < 1e-12


@pytest.mark.parametrize("tr,td,fs,lam,T", [(0.05, 0.5, 30.0, 0.1, 1500),
                                            (0.1, 1.5, 100.0, 0.05, 600),
                                            (0.01, 0.15, 100.0, 0.0, 1500)])
def test_drift_matches_tight_fista(tr, td, fs, lam, T):
    rng = np.random.default_rng(5)
    t = np.arange(T) / fs
    s = (rng.random((2, T)) < 0.02) * rng.exponential(1.0, (2, T))
    y = reconvolve(s, fs, tr, td) + 0.3 * rng.standard_normal((2, T)) + 5 + 0.05 * t
    exact = run_deconvolution_full(y, fs, tr, td, lam, baseline="drift")
    fista = run_deconvolution_full(y, fs, tr, td, lam, baseline="drift", method="fista",
                                   tol=1e-15, max_iters=200_000)
    scale = default_drift_scale(td)
    eo = objective(y, exact.activity, exact.baseline, fs, tr, td, lam, drift_scale=scale)
    fo = objective(y, fista.activity, fista.baseline, fs, tr, td, lam, drift_scale=scale)
    assert exact.converged.all()
    assert (eo <= fo * (1 + 1e-9)).all()
    np.testing.assert_allclose(eo, fo, rtol=1e-7)
    # the reported baseline is the best one for the spikes found
    best = objective(y, exact.activity, None, fs, tr, td, lam, drift_scale=scale)
    np.testing.assert_allclose(eo, best, rtol=1e-12)


def test_drift_warm_start_and_huge_scale():
    y, _, _ = quiet_trace(DRIFTS["bleaching"], T=6000)
    prev = run_deconvolution_full(y, FS, TR, TD, LAM, baseline="drift")
    cold = run_deconvolution_full(y, FS, TR, TD * 1.02, LAM, baseline="drift")
    warm = run_deconvolution_full(y, FS, TR, TD * 1.02, LAM, baseline="drift", init=prev.activity)
    np.testing.assert_allclose(warm.activity, cold.activity, atol=1e-9)
    assert warm.iterations < cold.iterations
    # a drift scale far longer than the trace: the scalar model's answer
    flat = run_deconvolution_full(y, FS, TR, TD, LAM, baseline="drift", drift_scale=1e6)
    scalar = run_deconvolution_full(y, FS, TR, TD, LAM)
    assert flat.converged
    assert np.ptp(flat.baseline) < 1e-6
    np.testing.assert_allclose(flat.activity, scalar.activity, atol=1e-5)


@pytest.mark.parametrize("name", list(DRIFTS))
def test_drift_recovered_and_removed_without_false_events(name):
    y, spikes, quiet = quiet_trace(DRIFTS[name])
    t = np.arange(len(y)) / FS
    truth = DRIFTS[name](t) + 2.0
    scalar = run_deconvolution_full(y, FS, TR, TD, LAM)
    drift = run_deconvolution_full(y, FS, TR, TD, LAM, baseline="drift")
    rolling = run_deconvolution_full(y, FS, TR, TD, LAM, baseline="rolling")
    assert drift.converged and rolling.converged
    # the drift model follows the true baseline
    assert np.sqrt(np.mean((drift.baseline - truth) ** 2)) < 0.15
    # no events where there are no spikes (the scalar model has many)
    events = {k: int((r.activity[quiet] > 0.2).sum())
              for k, r in (("scalar", scalar), ("drift", drift), ("rolling", rolling))}
    assert events["drift"] <= 3, events
    # CaTune's window is causal: after the step it lags ~0.8 W (10 s) behind
    assert events["rolling"] <= 15, events
    assert events["scalar"] > 50, events
    # and the spikes are still found
    smooth = np.ones(5)
    for r in (drift, rolling):
        c = np.corrcoef(np.convolve(r.activity, smooth), np.convolve(spikes, smooth))[0, 1]
        assert c > 0.95


def test_objective_with_per_sample_baseline_and_drift_term():
    rng = np.random.default_rng(6)
    y = rng.standard_normal((2, 50))
    s = np.abs(rng.standard_normal((2, 50)))
    b = rng.standard_normal((2, 50))
    G = build_kernel(TR, TD, FS).sum()
    r = y - reconvolve(s, FS, TR, TD) - b
    plain = 0.5 * (r ** 2).sum(axis=1) + LAM * G * s.sum(axis=1)
    np.testing.assert_allclose(objective(y, s, b, FS, TR, TD, LAM), plain)
    mu = (2.0 * FS) ** 2
    with_drift = plain + 0.5 * mu * (np.diff(b, axis=1) ** 2).sum(axis=1)
    np.testing.assert_allclose(objective(y, s, b, FS, TR, TD, LAM, drift_scale=2.0), with_drift)
    assert objective(y[0], s[0], b[0], FS, TR, TD, LAM) == pytest.approx(plain[0])
    with pytest.raises(ValueError, match="baseline must be"):
        objective(y, s, np.zeros(7), FS, TR, TD, LAM)


def test_dask_per_sample_baselines_equal_in_memory():
    da = pytest.importorskip("dask.array")
    y = np.stack([quiet_trace(DRIFTS["step"], T=600, seed=i)[0] for i in range(5)])
    for mode in ("rolling", "drift"):
        ref = run_deconvolution_full(y, FS, TR, TD, LAM, baseline=mode, drift_scale=3.0)
        lazy = run_deconvolution_full(da.from_array(y, chunks=(2, 600)), FS, TR, TD, LAM,
                                      baseline=mode, drift_scale=3.0)
        assert lazy.baseline.shape == y.shape
        for name in ref._fields:
            np.testing.assert_array_equal(np.asarray(getattr(lazy, name)), getattr(ref, name))
        one = run_deconvolution_full(da.from_array(y[0]), FS, TR, TD, LAM, baseline=mode,
                                     drift_scale=3.0)
        np.testing.assert_array_equal(np.asarray(one.baseline), ref.baseline[0])
    with pytest.raises(ValueError, match="baseline"):
        run_deconvolution_full(da.from_array(y), FS, TR, TD, LAM, baseline="wobbly")
    with pytest.raises(ValueError, match="drift_scale"):
        run_deconvolution_full(da.from_array(y), FS, TR, TD, LAM, baseline="drift", drift_scale=-1)
