"""The warm (slider) path of the exact solver: the localized exchange of
``_numba_local`` is exact for its fixed-baseline problem, and a warm re-solve
after any single slider move lands on the cold optimum on every regime."""

import warnings

import numpy as np
import pytest

import napari_catune as nc
from napari_catune import _numba_local as nl
from napari_catune import _numba_solvers as ns
from napari_catune import solver as S
from napari_catune.baseline import drift_mu

from napari_catune.simulation import REGIMES, regime_traces

MOVES = {"td+2%": ("td", 1.02), "td-2%": ("td", 0.98), "td+50%": ("td", 1.5),
         "td-50%": ("td", 0.5), "tr+20%": ("tr", 1.2), "lam*2": ("lam", 2.0),
         "lam/2": ("lam", 0.5), "fs+1%": ("fs", 1.01), "fs-1%": ("fs", 0.99)}


def traces(name, n, T, seed=0):
    return regime_traces(name, n, T, seed)


def _arrays(T):
    n = T - 1
    return (np.empty((n, 3)), np.empty((n, 4)), np.empty(n), np.empty(T), np.empty(n),
            np.empty(n), np.empty(n, dtype=bool))


def _full_step(y, m, mode, mu, active):
    gain, gb, x, bvec, u, nu, flip = _arrays(y.size)
    n_bad, _last, eps_u, eps_nu = ns._kkt_core(y, m.g1, m.g2, m.alpha, m.lamG / m.alpha, mode,
                                               mu, active, gain, gb, x, bvec, u, nu, flip,
                                               1e-11)
    return n_bad, eps_u, eps_nu, gain, x, bvec, u, nu, flip


def test_a_segment_between_free_pairs_is_solved_exactly_on_its_own():
    """With the baseline fixed, the subspace optimum decouples at two
    consecutive free samples: re-solving one segment from garbage gives the
    whole-trace solution there, its multipliers included."""
    fs, tr, td, lam, *_ = REGIMES["GCaMP6f-30Hz"]
    m = S._model_checked(fs, tr, td, lam)
    y = traces("GCaMP6f-30Hz", 1, 3000, seed=1)[0]
    n = y.size - 1
    rng = np.random.default_rng(0)
    active = rng.random(n) > 0.3
    b = 2.0 + 0.1 * np.sin(np.arange(y.size) / 300.0)
    z = y - b
    # the whole trace with b fixed: mode 0 on y - b
    _nb, _eu, _en, gain, x, _b0, u, nu, _f = _full_step(z, m, 0, 0.0, active)
    pairs = np.flatnonzero(~active[:-1] & ~active[1:])
    a, e = pairs[3], pairs[10]
    assert e - a > 20
    x2, u2, nu2 = x.copy(), u.copy(), nu.copy()
    x2[a:e] = 1e3
    u2[a:e + 2] = -7.0
    nu2[a:e] = -7.0
    act = active.copy()
    n_bad, _gl, _gr, _lo = nl.segment_solve(y, b, m.g1, m.g2, m.alpha, m.lamG / m.alpha, act, a, e,
                                       gain.copy(), x2, u2, nu2, np.inf, np.inf)
    assert n_bad == 0 and (act == active).all()
    scale = np.abs(x).max()
    np.testing.assert_allclose(x2, x, rtol=0, atol=1e-11 * scale)
    np.testing.assert_allclose(u2, u, rtol=0, atol=1e-10 * np.abs(u).max())
    np.testing.assert_allclose(nu2[a:e], nu[a:e], rtol=0, atol=1e-9 * np.abs(nu).max())
    # the trace's ends close a segment too
    x3 = x.copy()
    x3[:pairs[2]] = 0.0
    nl.segment_solve(y, b, m.g1, m.g2, m.alpha, m.lamG / m.alpha, act, 0, pairs[2],
                     gain.copy(), x3, u2, nu2, np.inf, np.inf)
    x3[pairs[-2]:] = 0.0
    nl.segment_solve(y, b, m.g1, m.g2, m.alpha, m.lamG / m.alpha, act, pairs[-2], n,
                     gain.copy(), x3, u2, nu2, np.inf, np.inf)
    np.testing.assert_allclose(x3, x, rtol=0, atol=1e-11 * scale)


@pytest.mark.parametrize("name", ["GCaMP6f-30Hz", "GCaMP6s-100Hz", "dense-30Hz"])
@pytest.mark.parametrize("mode", [0, 1, 2])
def test_local_exchange_settles_the_fixed_baseline_problem(name, mode):
    """After a slider move, one full step and the localized exchange leave
    an active set that is optimal for the problem with the baseline fixed
    (checked by a whole-trace step on y - b), unless a segment was left to
    the next full step."""
    fs, tr, td, lam, *_ = REGIMES[name]
    y = traces(name, 1, 5000, seed=2)[0]
    base = nc.run_deconvolution_full(y, fs, tr, td, lam,
                                     baseline=("none", "scalar", "drift")[mode])
    m = S._model_checked(fs, tr, td * 1.02, lam)
    mu = drift_mu(None, fs, td * 1.02) if mode == 2 else 0.0
    n = y.size - 1
    active = base.activity[:n] <= 0
    n_bad, eps_u, eps_nu, gain, x, bvec, u, nu, flip = _full_step(y, m, mode, mu, active)
    assert n_bad > 0
    work, left = nl.local_exchange(y, bvec, m.g1, m.g2, m.alpha, m.lamG / m.alpha, active, flip,
                                   x, u, nu, gain, eps_u, eps_nu, n, n)
    assert 0 < work <= n
    # a slow kernel may leave a segment cycling to the next full step
    assert left == 0 or name == "GCaMP6s-100Hz"
    check = _full_step(y - bvec, m, 0, 0.0, active.copy())
    assert check[0] < n_bad
    if left == 0:
        assert check[0] == 0
        # and the local solutions are that step's
        np.testing.assert_allclose(x, check[4], rtol=0, atol=1e-9 * np.abs(x).max())


@pytest.mark.parametrize("name", list(REGIMES))
@pytest.mark.parametrize("baseline", ["scalar", "drift"])
def test_warm_start_after_any_slider_move_is_the_cold_optimum(name, baseline):
    """Issue 12's slider moves on every regime: the warm re-solve is
    KKT-optimal and has the cold solve's objective."""
    fs, tr, td, lam, *_ = REGIMES[name]
    y = traces(name, 1, 4000, seed=7)
    prev = nc.run_deconvolution_full(y, fs, tr, td, lam, baseline=baseline)
    assert prev.converged.all()
    for mv, (key, f) in MOVES.items():
        p = {"fs": fs, "tr": tr, "td": td, "lam": lam}
        p[key] *= f
        args = (p["fs"], p["tr"], p["td"], p["lam"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fs 1010 Hz: outside the slider range
            warm = nc.run_deconvolution_full(y, *args, init=prev.activity, baseline=baseline)
            cold = nc.run_deconvolution_full(y, *args, baseline=baseline)
            assert warm.converged.all() and cold.converged.all(), (mv, warm.iterations)
            viol = S.kkt_violation(y, warm.activity, warm.baseline, *args, mode=baseline)
            assert (viol <= S.KKT_TOL).all(), (mv, viol)
            ds = max(20 * p["td"], 10.0) if baseline == "drift" else None
            fw = nc.objective(y, warm.activity, warm.baseline, *args, drift_scale=ds)
            fc = nc.objective(y, cold.activity, cold.baseline, *args, drift_scale=ds)
        np.testing.assert_allclose(fw, fc, rtol=1e-9, err_msg=mv)


@pytest.mark.parametrize("mode", [1, 2])
def test_murty_rounds_settle_a_segment_the_block_rounds_leave_cycling(mode):
    """A large move on a slow kernel: the block rounds leave segments
    unsettled; Murty's rule alone (as pdas_one calls it when the violators
    stop falling) is finite and settles every segment for the fixed
    baseline."""
    name = "GCaMP6s-100Hz"
    fs, tr, td, lam, *_ = REGIMES[name]
    y = traces(name, 1, 5000, seed=2)[0]
    base = nc.run_deconvolution_full(y, fs, tr, td, lam, baseline=("scalar", "drift")[mode - 1])
    m = S._model_checked(fs, tr, td * 1.5, lam)
    mu = drift_mu(None, fs, td * 1.5) if mode == 2 else 0.0
    n = y.size - 1
    active = base.activity[:n] <= 0
    n_bad, eps_u, eps_nu, gain, x, bvec, u, nu, flip = _full_step(y, m, mode, mu, active)
    _work, left = nl.local_exchange(y, bvec, m.g1, m.g2, m.alpha, m.lamG / m.alpha,
                                    active.copy(), flip.copy(), x.copy(), u.copy(), nu.copy(),
                                    gain.copy(), eps_u, eps_nu, n, n, 8, 0)
    assert left > 0  # block rounds alone leave some
    work, left = nl.local_exchange(y, bvec, m.g1, m.g2, m.alpha, m.lamG / m.alpha, active, flip,
                                   x, u, nu, gain, eps_u, eps_nu, n, 10_000 * n, 0, 100_000)
    assert left == 0
    check = _full_step(y - bvec, m, 0, 0.0, active.copy())
    assert check[0] == 0
    np.testing.assert_allclose(x, check[4], rtol=0, atol=1e-9 * np.abs(x).max())


@pytest.mark.parametrize("name", ["GCaMP6s-100Hz", "calab-gcamp6s-30Hz"])
@pytest.mark.parametrize("baseline", ["scalar", "drift"])
def test_large_moves_on_slow_kernels_take_few_full_steps(name, baseline):
    """Issue 12: a large slider move on a slow kernel (20,000 frames) is
    re-solved warm in a few full steps (counted, not timed): the localized
    exchange breaks its segments' cycles with Murty's rule instead of
    stalling into the interior point (main before this: 10.5-13.5 steps
    on average, up to 26)."""
    fs, tr, td, lam, *_ = REGIMES[name]
    y = traces(name, 3, 20_000, seed=3)
    prev = nc.run_deconvolution_full(y, fs, tr, td, lam, baseline=baseline)
    steps = []
    for mv in ("td+50%", "td-50%", "tr+20%", "lam*2", "lam/2"):
        key, f = MOVES[mv]
        p = {"fs": fs, "tr": tr, "td": td, "lam": lam}
        p[key] *= f
        warm = nc.run_deconvolution_full(y, p["fs"], p["tr"], p["td"], p["lam"],
                                         init=prev.activity, baseline=baseline)
        assert warm.converged.all(), mv
        steps += list(warm.iterations)
    assert max(steps) <= 24 and np.mean(steps) <= 9.5, (max(steps), np.mean(steps))


@pytest.mark.parametrize("name", ["GCaMP6s-100Hz", "calab-gcamp6s-30Hz", "GCaMP6f-30Hz"])
def test_windowed_rounds_are_a_good_guess_and_off_when_wider_than_the_segments(name):
    """Rounds that re-solve only a window left of what changed (x fixed
    before it) still leave few violators of the fixed-baseline problem; a
    window wider than the trace is the exact whole-segment path."""
    fs, tr, td, lam, *_ = REGIMES[name]
    y = traces(name, 1, 5000, seed=4)[0]
    base = nc.run_deconvolution_full(y, fs, tr, td, lam, baseline="scalar")
    m = S._model_checked(fs, tr, td * 1.5, lam)
    n = y.size - 1
    active = base.activity[:n] <= 0
    n_bad, eps_u, eps_nu, gain, x, bvec, u, nu, flip = _full_step(y, m, 1, 0.0, active)
    beta = m.lamG / m.alpha
    d = m.g1 / 2 + np.sqrt(m.g1 ** 2 / 4 + m.g2)
    out = {}
    for w in (0, int(4 / (1 - d)) + 2, 10 * n):
        act, xw = active.copy(), x.copy()
        work, left = nl.local_exchange(y, bvec, m.g1, m.g2, m.alpha, beta, act, flip.copy(), xw,
                                       u.copy(), nu.copy(), gain.copy(), eps_u, eps_nu, n,
                                       4 * n, 8, 8, w)
        check = _full_step(y - bvec, m, 0, 0.0, act.copy())
        assert check[0] < n_bad, w
        out[w] = (act, xw, work, check[0])
    w4 = int(4 / (1 - d)) + 2
    # the window's guess is about as good as the whole segments' (the full
    # step decides either way)
    assert out[w4][3] <= out[0][3] + n_bad // 10, (out[w4][3], out[0][3])
    if name == "GCaMP6f-30Hz":
        assert out[w4][3] == 0 and out[w4][2] < out[0][2]
    assert (out[0][0] == out[10 * n][0]).all() and out[0][2] == out[10 * n][2]
    np.testing.assert_array_equal(out[0][1], out[10 * n][1])
