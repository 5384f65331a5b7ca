"""The warm 1 kHz route's guesses (_numba_solvers._coarse_row): a move whose
guess, binned as the binned start bins, flags more than _WARM_SKIP of the
binned samples (tau_decay -50 %) goes to the binned start without the
full-resolution warm step that would bail; small moves do not; a large first
binned spike is placed at frame 0 (_WARM_FIRST0).  Counted and compared, not
timed: the answers are the cold solve's (objective within 1e-11), KKT."""

import numpy as np
import pytest

import napari_catune as nc
from napari_catune import _numba_solvers as ns
from napari_catune import solver as S
from napari_catune.baseline import drift_mu
from napari_catune.simulation import regime_traces
from test_warm_bail import _binned_route, _settle_polish

MODES = {"scalar": 1, "drift": 2}
PARAMS = {"slow-1kHz": (1000.0, 0.2, 3.0, 0.05), "lam0-slow-1kHz": (1000.0, 0.2, 3.0, 0.0)}


def _setup(regime, mode, key, f):
    fs, tr, td, lam = PARAMS[regime]
    y = np.ascontiguousarray(regime_traces(regime, 1, 54_000, 0)[0])
    base = nc.run_deconvolution_full(y, fs, tr, td, lam, baseline=mode)
    p = {"fs": fs, "tr": tr, "td": td, "lam": lam}
    p[key] *= f
    m = S._model_checked(p["fs"], p["tr"], p["td"], p["lam"])
    mu = drift_mu(None, p["fs"], p["td"]) if mode == "drift" else 0.0
    return y, base, p, m, mu


def _ws(T):
    nf, nb = ns.workspace_sizes(T)
    return np.zeros(nf), np.zeros(nb, bool)


@pytest.mark.parametrize("regime", ["slow-1kHz", "lam0-slow-1kHz"])
@pytest.mark.parametrize("mode", ["scalar", "drift"])
@pytest.mark.parametrize("key, f", [("td", 0.5), ("td", 1.02), ("td", 0.98), ("fs", 1.01),
                                    ("tr", 1.2), ("lam", 0.5)])
def test_only_the_large_move_skips_the_warm_step(regime, mode, key, f):
    y, base, p, m, mu = _setup(regime, mode, key, f)
    T = y.size
    n = T - 1
    fws, bws = _ws(T)
    pws, active = fws[T:], bws[4 * n:5 * n]
    active[:] = np.ravel(base.activity)[:n] <= 0.0
    k = ns._coarse_factor(m.g1, m.g2, m.lamG, np.int64(T), True)
    assert k > 0
    keep = active.copy()
    frac, neg = ns._coarse_warm_frac(y, m.g1, m.g2, m.alpha, m.lamG, np.int64(MODES[mode]), mu,
                                     k, active, pws, bws)
    assert np.array_equal(active, keep)
    if f == 0.5 and key == "td":
        assert frac > ns._WARM_SKIP
    else:
        assert frac < 0.6 * ns._WARM_SKIP
    # at lambda 0 tau_rise +20 % skips by its negative binned spikes
    # (_WARM_SKIP_NEG); no other move of the list does
    if m.lamG == 0.0 and key == "tr":
        assert neg > ns._WARM_SKIP_NEG
    elif m.lamG == 0.0 and not (f == 0.5 and key == "td"):
        assert neg < 0.8 * ns._WARM_SKIP_NEG


@pytest.mark.parametrize("mode", ["scalar", "drift"])
@pytest.mark.parametrize("key, f", [("td", 1.5), ("tr", 1.2)])
def test_lam0_moves_that_would_bail_skip_the_warm_step(mode, key, f):
    """lambda 0, tau_decay +50 % / tau_rise +20 %: the warm step would bail
    (more than n / _BAIL_AT_ONCE flagged); the binned guess's free samples
    tell it (more than _WARM_SKIP_NEG of them flagged), so the move takes
    the binned route at once: one step counted, the same answer as after
    the bail (the route replayed)."""
    y, base, p, m, mu = _setup("lam0-slow-1kHz", mode, key, f)
    T = y.size
    n = T - 1
    code = np.int64(MODES[mode])
    fws, bws = _ws(T)
    pws = fws[T:]
    act = np.ravel(base.activity)[:n] <= 0.0
    b = np.zeros(T)
    s = np.zeros(T)
    it, settled = ns.pdas_one(y, m.g1, m.g2, m.alpha, m.lamG, code, mu, act.copy(), np.int64(100),
                              s, b, pws, bws, 1e-11, ns._YES, ns._YES, ns._BAIL_AT_ONCE)
    assert it == 1 and not settled
    k = ns._coarse_factor(m.g1, m.g2, m.lamG, np.int64(T), True)
    frac, neg = ns._coarse_warm_frac(y, m.g1, m.g2, m.alpha, m.lamG, code, mu, k, act, pws, bws)
    assert frac <= ns._WARM_SKIP < 1.0 and neg > ns._WARM_SKIP_NEG
    warm = nc.run_deconvolution_full(y, p["fs"], p["tr"], p["td"], p["lam"], baseline=mode,
                                     init=base.activity)
    assert bool(np.all(warm.converged))
    it_r, s_r = _binned_route(y, m, mode, mu)
    assert int(np.sum(warm.iterations)) == 1 + it_r
    assert np.array_equal(np.ravel(warm.activity), s_r)


@pytest.mark.parametrize("regime", ["slow-1kHz", "lam0-slow-1kHz"])
@pytest.mark.parametrize("mode", ["scalar", "drift"])
def test_a_skipped_warm_step_is_the_binned_route(regime, mode):
    """tau_decay -50 %: one binned step counted, then the binned start, the
    block settle and the polish, as after a bail (the same answer as that
    route replayed; at the cold objective)."""
    y, base, p, m, mu = _setup(regime, mode, "td", 0.5)
    warm = nc.run_deconvolution_full(y, p["fs"], p["tr"], p["td"], p["lam"], baseline=mode,
                                     init=base.activity)
    assert bool(np.all(warm.converged))
    it_r, s = _binned_route(y, m, mode, mu)
    assert int(np.sum(warm.iterations)) == 1 + it_r
    assert np.array_equal(np.ravel(warm.activity), s)
    cold = nc.run_deconvolution_full(y, p["fs"], p["tr"], p["td"], p["lam"], baseline=mode)
    f_w, f_c = S._objective_rows(np.stack([y, y]), np.stack([np.ravel(warm.activity),
                                                              np.ravel(cold.activity)]),
                                 m, MODES[mode], mu)
    assert abs(float(f_w) - float(f_c)) <= 1e-11 * abs(float(f_c))


@pytest.mark.parametrize("mode", ["scalar", "drift"])
@pytest.mark.parametrize("key, f", [("td", 1.5), ("tr", 1.2)])
def test_a_large_first_spike_goes_to_frame_0(mode, key, f):
    """lambda 0, tau_decay +50 % / tau_rise +20 %: the binned guess frees
    frame 0 instead of the first bin's middle; the first full step's baseline
    from it is much nearer the optimum's, and the settle ends on the same set."""
    y, base, p, m, mu = _setup("lam0-slow-1kHz", mode, key, f)
    T = y.size
    n = T - 1
    code = np.int64(MODES[mode])
    k = ns._coarse_factor(m.g1, m.g2, m.lamG, np.int64(T), True)
    b_first, b_end, sets = [], [], []
    for first0 in (False, True):
        fws, bws = _ws(T)
        pws, active = fws[T:], bws[4 * n:5 * n]
        ns._coarse_start(y, m.g1, m.g2, m.alpha, m.lamG, code, mu, k, active, pws, bws,
                         np.int64(250), first0)
        assert active[0] == (not first0)
        gain, gb, x, u, nu, _si, _w, _g, _r = ns._coarse_views(pws, n, T, code)
        b = np.zeros(T)
        ns._kkt_core(y, m.g1, m.g2, m.alpha, 0.0, code, mu, active.copy(), gain, gb, x, b, u,
                     nu, np.zeros(n, bool), 1e-11, ns._YES, ns._NO)
        b_first.append(b[0])
        s = np.zeros(T)
        _it, settled = ns._coarse_settle(y, m.g1, m.g2, m.alpha, m.lamG, code, mu, active,
                                         np.int64(ns._BLOCK_STEPS), s, b, pws, bws, ns._NO,
                                         ns._WARM_SETTLE_DIRECT, ns._WARM_SETTLE_RAW)
        assert settled
        ns._coarse_polish_blocks(y, m.g1, m.g2, m.alpha, m.lamG, code, mu, active, s, b, pws,
                                 bws, np.int64(200), ns._YES, 1e-12)
        b_end.append(b[0])
        sets.append(s > 0.0)
    assert np.array_equal(sets[0], sets[1])
    assert abs(b_first[1] - b_end[1]) < 0.5 * abs(b_first[0] - b_end[0])
    warm = nc.run_deconvolution_full(y, p["fs"], p["tr"], p["td"], p["lam"], baseline=mode,
                                     init=base.activity)
    assert bool(np.all(warm.converged))
    assert np.array_equal(np.ravel(warm.activity) > 0.0, sets[1])


@pytest.mark.parametrize("mode", ["scalar", "drift"])
def test_a_small_lam0_move_that_bails_settles_from_its_own_guess(mode):
    """lambda 0, seed 1, tau_decay -2 %: the binned checks let the move
    through, its warm step bails (more than n / _BAIL_AT_ONCE flagged); it
    is then settled by blocks from its own guess and polished
    (_WARM_BAIL_OLD), not from the binned start: the bailed step, the
    settle's and the polish's steps counted, that route's answer replayed,
    at the cold objective."""
    assert ns._WARM_BAIL_OLD
    fs, tr, td, lam = PARAMS["lam0-slow-1kHz"]
    y = np.ascontiguousarray(regime_traces("lam0-slow-1kHz", 1, 54_000, 1)[0])
    base = nc.run_deconvolution_full(y, fs, tr, td, lam, baseline=mode)
    td2 = td * 0.98
    m = S._model_checked(fs, tr, td2, lam)
    mu = drift_mu(None, fs, td2) if mode == "drift" else 0.0
    T = y.size
    n = T - 1
    code = np.int64(MODES[mode])
    guess = np.ravel(base.activity)[:n] <= 0.0
    fws, bws = _ws(T)
    pws, active = fws[T:], bws[4 * n:5 * n]
    active[:] = guess
    k = ns._coarse_factor(m.g1, m.g2, m.lamG, np.int64(T), True)
    frac, neg = ns._coarse_warm_frac(y, m.g1, m.g2, m.alpha, m.lamG, code, mu, k, active, pws,
                                     bws)
    assert frac <= ns._WARM_SKIP and neg <= ns._WARM_SKIP_NEG
    b = np.zeros(T)
    s = np.zeros(T)
    it, settled = ns.pdas_one(y, m.g1, m.g2, m.alpha, m.lamG, code, mu, active, np.int64(100), s,
                              b, pws, bws, 1e-11, ns._YES, ns._YES, ns._BAIL_AT_ONCE)
    assert it == 1 and not settled
    # the route replayed from the guess
    fws, bws = _ws(T)
    pws, active = fws[T:], bws[4 * n:5 * n]
    active[:] = guess
    it_sp, s = _settle_polish(y, m, code, mu, active, pws, bws, np.zeros(T), ns._WARM_OLD_STEPS)
    warm = nc.run_deconvolution_full(y, fs, tr, td2, lam, baseline=mode, init=base.activity)
    assert bool(np.all(warm.converged))
    steps = int(np.sum(warm.iterations))
    assert steps == 1 + it_sp
    assert steps <= 8
    assert np.array_equal(np.ravel(warm.activity), s)
    cold = nc.run_deconvolution_full(y, fs, tr, td2, lam, baseline=mode)
    f_w, f_c = S._objective_rows(np.stack([y, y]), np.stack([np.ravel(warm.activity),
                                                              np.ravel(cold.activity)]),
                                 m, MODES[mode], mu)
    assert abs(float(f_w) - float(f_c)) <= 1e-11 * abs(float(f_c))


@pytest.mark.parametrize("mode", ["scalar", "drift"])
@pytest.mark.parametrize("tr, td, lam", [(0.02, 0.5, 0.0), (0.036, 0.709, 0.0), (0.05, 0.8, 0.0),
                                         (0.02, 0.5, 0.05)])
def test_a_fast_rise_kernel_re_solved_unchanged_is_not_a_large_move(mode, tr, td, lam):
    # where the rise spans a few bins of the binned start the binned optimum
    # itself flags 0.2-0.34 of its samples: the skips are for kernels whose
    # peak spans _WARM_SKIP_PEAK bins; the answer re-solved from itself
    # settles in a step or two (14-19 steps through the binned start)
    fs = 1000.0
    rng = np.random.default_rng(0)
    T = 54_000
    sp = (rng.random(T) < 1.0 / fs) * rng.exponential(1.0, T)
    y = np.ascontiguousarray(S.reconvolve(sp[None], fs, tr, td)[0]
                             + 0.3 * rng.standard_normal(T) + 2.0)
    m = S._model_checked(fs, tr, td, lam)
    k = ns._coarse_factor(m.g1, m.g2, m.lamG, np.int64(T), True)
    assert k >= 2 and ns.peak_samples(m.g1, m.g2) < ns._WARM_SKIP_PEAK * k
    cold = nc.run_deconvolution_full(y, fs, tr, td, lam, baseline=mode)
    assert cold.converged
    w = nc.run_deconvolution_full(y, fs, tr, td, lam, baseline=mode, init=cold.activity)
    assert w.converged and int(w.iterations) <= 3
    np.testing.assert_allclose(w.activity, cold.activity, rtol=0, atol=1e-9 * np.abs(cold.activity).max())
