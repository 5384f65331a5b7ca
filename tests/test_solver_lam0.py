"""Lambda 0 (issue 12): the exact solver's answer is the optimum (FISTA run
to tol 1e-12 from it cannot lower it), and its step counts on the regimes of
the grid (never seconds) stay where they are."""

import numpy as np
import pytest

from napari_catune import _numba_solvers as ns
from napari_catune import run_deconvolution_full
from napari_catune.baseline import drift_mu
from napari_catune.simulation import EXTRA_REGIMES, REGIMES, regime_traces
from napari_catune.solver import _MODE_CODES, KKT_TOL, _model_checked, _objective_rows

_ALL = {**REGIMES, **EXTRA_REGIMES}


def _objective(y, s, fs, tr, td, baseline):
    m = _model_checked(fs, tr, td, 0.0)
    mu = drift_mu(None, fs, td) if baseline == "drift" else 0.0
    return _objective_rows(y, np.atleast_2d(s), m, _MODE_CODES[baseline], mu)


@pytest.mark.parametrize("baseline", ["none", "scalar", "drift"])
@pytest.mark.parametrize("fs, tr, td, noise, T", [
    (30.0, 0.05, 0.5, 0.3, 1500),      # GCaMP6f at 30 Hz: the cold exchange
    (100.0, 0.01, 0.15, 0.3, 2000),    # jGCaMP8f at 100 Hz
    (7.5, 0.1, 1.5, 1.0, 600),         # slow against a low frame rate
    (100.0, 0.1, 1.5, 0.05, 1200),     # GCaMP6s at 100 Hz: the interior point
])
def test_lambda0_matches_fista(fs, tr, td, noise, T, baseline):
    rng = np.random.default_rng(int(fs * 10 + T))
    spikes = rng.poisson(1.0 / fs, (2, T)) * rng.exponential(1.0, (2, T))
    from napari_catune.solver import reconvolve
    y = reconvolve(spikes, fs, tr, td) + 2.0 + noise * rng.standard_normal((2, T))
    r = run_deconvolution_full(y, fs, tr, td, 0.0, baseline=baseline)
    assert np.all(r.converged)
    assert np.all(r.iterations < 500)       # settled by the exact method, no hand-over
    f = _objective(y, r.activity, fs, tr, td, baseline)
    rf = run_deconvolution_full(y, fs, tr, td, 0.0, baseline=baseline, method="fista",
                                tol=1e-12, max_iters=20_000, init=r.activity)
    ff = _objective(y, rf.activity, fs, tr, td, baseline)
    assert np.all(f <= ff + 1e-9 * np.abs(ff))


def _cold_steps(name, T, rows, baseline="scalar"):
    fs, tr, td, lam, *_ = _ALL[name]
    y = regime_traces(name, rows, T)
    r = run_deconvolution_full(y, fs, tr, td, lam, baseline=baseline)
    assert np.all(r.converged)
    return np.atleast_1d(r.iterations)


def test_lambda0_30hz_long_trace_settles_in_five_steps():
    # the exact fit in one pass, then full steps each settled locally; the
    # baseline (interchangeable with the calcium at lambda 0) moves by
    # 18 sd between the first two steps and settles in three
    assert _cold_steps("lam0-30Hz", 54_000, 2).max() <= 5
    assert _cold_steps("lam0-30Hz", 54_000, 1, "drift").max() <= 8


def test_lambda0_slow_1khz_steps():
    # the interior point from its cold start (the first step, the exact fit,
    # counted) and the crossover: ~15-21 steps, not growing with T
    s10 = _cold_steps("lam0-slow-1kHz", 10_000, 2)
    assert s10.max() <= 24


def test_cold_lambda0_exchange_multipliers_by_multiply_add():
    # a cold solve at lambda 0 on a kernel not slow against fs forms its
    # steps' multipliers with one multiply-add on the chain (_nu_pass_fma),
    # as a warm start does; its answer is the plain path's optimum
    assert ns._COLD_FMA0
    fs, tr, td, lam, *_ = REGIMES["lam0-30Hz"]
    m = _model_checked(fs, tr, td, lam)
    y = regime_traces("lam0-30Hz", 1, 20_000)[0]
    T = y.size
    n = T - 1
    nf, nb = ns.workspace_sizes(T)
    fws = np.zeros(nf)
    bws = np.zeros(nb, dtype=bool)
    active = np.zeros(n, dtype=bool)
    s = np.zeros(T)
    bvec = np.zeros(T)
    it, ok = ns.pdas_one(y, m.g1, m.g2, m.alpha, m.lamG, np.int64(1), 0.0, active,
                         np.int64(500), s, bvec, fws, bws, 1e-11, False)
    assert ok and it <= 6
    # the KKT check of the answer (an independent one: the directly formed
    # gradient)
    r = run_deconvolution_full(y, fs, tr, td, lam)
    np.testing.assert_allclose(s, r.activity, rtol=0, atol=1e-9 * np.abs(s).max())
    from napari_catune.solver import kkt_violation
    assert kkt_violation(y, s, bvec[0], fs, tr, td, lam) <= KKT_TOL


def _dense_subspace(y, g1, g2, beta, mode, mu, active):
    """The subspace optimum of _subspace_solve by dense normal equations:
    x = M^-1 w with w = 0 on the active set, cost beta sum(w) on the free
    set, the baseline per mode (none, scalar, drift with weight mu)."""
    T = y.size
    n = T - 1
    M = np.eye(n) - g1 * np.eye(n, k=-1) - g2 * np.eye(n, k=-2)
    F = np.flatnonzero(~active)
    A = np.linalg.inv(M)[:, F]                 # x = A w_F
    # rows: sample 0 (x = 0), samples 1..n (x)
    S = np.vstack([np.zeros((1, F.size)), A])
    if mode == 0:
        B = np.zeros((T, 0))
    elif mode == 1:
        B = np.ones((T, 1))
    else:
        B = np.eye(T)
    J = np.hstack([S, B])
    H = J.T @ J
    if mode == 2:
        D = np.diff(np.eye(T), axis=0)
        H[F.size:, F.size:] += mu * D.T @ D
    g = J.T @ y
    g[:F.size] -= beta
    z = np.linalg.solve(H, g)
    x = A @ z[:F.size]
    b = (B @ z[F.size:]) if mode != 0 else np.zeros(T)
    return x, b


@pytest.mark.parametrize("mode, mu", [(0, 0.0), (1, 0.0), (2, 0.3), (2, 400.0)])
@pytest.mark.parametrize("beta", [0.0, 0.05])
def test_subspace_solve_over_free_pairs_matches_the_normal_equations(mode, mu, beta):
    # long free runs (free pairs: _subspace_riccati and the forward pass take
    # their gains there without the division / the previous x) mixed with
    # active runs, isolated free samples and a free run at each end
    from napari_catune._numba_solvers import _subspace_solve

    rng = np.random.default_rng(7 + mode)
    T = 400
    n = T - 1
    g1, g2, alpha = 1.75, -0.765, 0.2        # roots 0.9, 0.85
    y = rng.normal(size=T) + 2.0
    for pattern in range(4):
        if pattern == 0:
            active = np.zeros(n, bool)       # every sample free
        else:
            active = rng.random(n) < (0.1, 0.5, 0.85)[pattern - 1]
            active[:5] = False
            active[-5:] = False
            active[100:130] = True
            active[200] = False
        x = np.zeros(n)
        b = np.zeros(T)
        _subspace_solve(y, g1, g2, alpha, beta, mode, mu, active, np.zeros((n, 3)),
                        np.zeros((n if mode == 2 else 1, 4)), x, b)
        xr, br = _dense_subspace(y, g1, g2, beta, mode, mu, active)
        scale = np.abs(xr).max() + np.abs(br).max()
        assert np.abs(x - xr).max() <= 1e-8 * scale
        assert np.abs(b - br).max() <= 1e-8 * scale


@pytest.mark.parametrize("baseline", ["scalar", "drift"])
@pytest.mark.parametrize("fs, tr, td, noise, T, seed", [
    (30.0, 0.05, 0.5, 0.01, 2000, 0),
    (12.0, 0.15, 0.4, 0.03, 1500, 2),
    (18.0, 0.08, 0.2, 0.05, 500, 3),
])
def test_lambda0_low_noise_settles_exactly_without_fista(fs, tr, td, noise, T, seed, baseline):
    # low noise at lambda 0: the exact fit's negative spikes (the noise's) all
    # lie within an rms of its spikes, so its first exchange (which frees
    # only those below -1 rms) found none and stopped as if optimal; the KKT
    # check then failed and FISTA took over (261-1341 iterations, within
    # the KKT tolerance but not exact).  Now every negative spike is
    # exchanged there: a few steps, and the optimum
    from napari_catune.solver import reconvolve

    rng = np.random.default_rng(seed)
    spikes = rng.poisson(1.0 / fs, (2, T)) * rng.exponential(1.0, (2, T))
    y = reconvolve(spikes, fs, tr, td) + 2.0 + noise * rng.standard_normal((2, T))
    r = run_deconvolution_full(y, fs, tr, td, 0.0, baseline=baseline)
    assert np.all(r.converged)
    assert np.all(np.atleast_1d(r.iterations) <= 12)
    f = _objective(y, r.activity, fs, tr, td, baseline)
    rf = run_deconvolution_full(y, fs, tr, td, 0.0, baseline=baseline, method="fista",
                                tol=1e-12, max_iters=20_000, init=r.activity)
    ff = _objective(y, rf.activity, fs, tr, td, baseline)
    assert np.all(f <= ff + 1e-9 * np.abs(ff))


@pytest.mark.parametrize("fs, tr, td", [(179.4, 0.167, 1.127), (30.0, 0.05, 0.5)])
def test_lambda0_without_baseline_below_zero_is_no_spikes_at_once(fs, tr, td):
    # baseline 'none' on a trace with an offset far below 0: no spikes is
    # optimal; from the exact fit the interior point took 500 steps on the
    # slow kernel and handed over to FISTA.  Now one step
    from napari_catune.solver import reconvolve

    rng = np.random.default_rng(0)
    T = 4100
    spikes = rng.poisson(1.0 / fs, (1, T)) * rng.exponential(1.0, (1, T))
    for off in (-1000.0, -10.0):
        y = reconvolve(spikes, fs, tr, td) + off + 0.14 * rng.standard_normal((1, T))
        r = run_deconvolution_full(y, fs, tr, td, 0.0, baseline="none")
        assert bool(r.converged[0]) and int(r.iterations[0]) == 1
        assert not np.any(r.activity)
    # a trace that is not below 0 throughout: the check declines, the solve
    # goes on as before
    y = reconvolve(spikes, fs, tr, td) + 0.14 * rng.standard_normal((1, T))
    r = run_deconvolution_full(y, fs, tr, td, 0.0, baseline="none")
    assert bool(r.converged[0]) and 1 < int(r.iterations[0]) < 100
