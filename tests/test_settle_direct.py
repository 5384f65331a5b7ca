"""The block settle's last steps on the gradient formed directly
(_numba_solvers._SETTLE_DIRECT), after a cold start and after a large warm
move alike: where a step leaves few violators, its
block settle runs at the polish's tolerance on that gradient, so the polish
(_coarse_polish_blocks) finds the set settled and confirms it without a
step; the answer is the one the multipliers' route reaches (counted and
compared, not timed)."""

import numpy as np

import napari_catune as nc
from napari_catune import _numba_solvers as ns
from napari_catune import solver as S
from napari_catune.simulation import regime_traces

FS, TR, TD, LAM = 1000.0, 0.2, 3.0, 0.0


def _route(y, direct_bad, td=TD):
    """_coarse_row's path from the binned start at lambda 0 (a cold start's,
    and a large warm move's: binned start, block settle with ``direct_bad``,
    polish).  Returns (settle steps, polish steps, polish rounds that
    changed the set, activity, baseline, binned steps)."""
    T = y.size
    n = T - 1
    m = S._model_checked(FS, TR, td, LAM)
    nf, nb = ns.workspace_sizes(T)
    fws = np.zeros(nf)
    bws = np.zeros(nb, bool)
    bvec, pws, active = fws[:T], fws[T:], bws[4 * n:5 * n]
    k = ns._coarse_factor(m.g1, m.g2, m.lamG, np.int64(T), True)
    assert k >= 2
    it_c, ok = ns._coarse_start(y, m.g1, m.g2, m.alpha, m.lamG, np.int64(1), 0.0, k, active, pws,
                               bws, np.int64(250))
    assert ok
    s = np.zeros(T)
    it_s, settled = ns._coarse_settle(y, m.g1, m.g2, m.alpha, m.lamG, np.int64(1), 0.0, active,
                                      np.int64(ns._BLOCK_STEPS), s, bvec, pws, bws, ns._NO,
                                      np.int64(direct_bad))
    assert settled
    it_p, moved = ns._coarse_polish_blocks(y, m.g1, m.g2, m.alpha, m.lamG, np.int64(1), 0.0,
                                           active, s, bvec, pws, bws, np.int64(200), ns._YES,
                                           1e-12)
    return it_s, it_p, moved, s, float(bvec[0]), it_c


def test_direct_settle_leaves_the_polish_nothing_to_change():
    # lam0-slow-1kHz, 100,000 frames, seed 0: on the step's multipliers the
    # polish changed the settled set (a full step and a confirming round);
    # with the last step's blocks on the direct gradient it changes nothing
    assert ns._SETTLE_DIRECT > 0
    y = np.ascontiguousarray(regime_traces("lam0-slow-1kHz", 1, 100_000, seed=0)[0])
    it_s0, it_p0, moved0, s0, b0, _c0 = _route(y, 0)
    it_s1, it_p1, moved1, s1, b1, _c1 = _route(y, ns._SETTLE_DIRECT)
    assert moved0 == 1 and it_p0 == 1
    assert moved1 == 0 and it_p1 == 0
    assert it_s1 + it_p1 <= it_s0 + it_p0
    for s, b in ((s0, b0), (s1, b1)):
        v = S.kkt_violation(y[None], s[None], np.array([b]), FS, TR, TD, LAM)
        assert float(np.max(v)) <= S.KKT_TOL
    m = S._model_checked(FS, TR, TD, LAM)
    f0, f1 = S._objective_rows(np.stack([y, y]), np.stack([s0, s1]), m, 1, 0.0)
    assert abs(f1 - f0) <= 1e-12 * abs(f0)


def test_the_cold_row_takes_the_direct_route():
    # the same trace through the solver: its steps are the direct route's
    # (binned + settle + polish, 13 + 5 + 0; the multipliers' route 13 + 4
    # + 1), its answer that route's, KKT-optimal
    y = regime_traces("lam0-slow-1kHz", 1, 100_000, seed=0)
    res = nc.run_deconvolution_full(y, FS, TR, TD, LAM)
    it_s, it_p, moved, s, b, it_c = _route(np.ascontiguousarray(y[0]), ns._SETTLE_DIRECT)
    assert moved == 0
    assert int(np.atleast_1d(res.iterations)[0]) == it_c + it_s + it_p
    assert np.array_equal(np.atleast_2d(res.activity)[0], s)
    assert float(np.atleast_1d(res.baseline)[0]) == b
    assert np.all(np.atleast_1d(res.converged))
    v = S.kkt_violation(y, np.atleast_2d(res.activity), np.atleast_1d(res.baseline), FS, TR, TD,
                        LAM)
    assert float(np.max(v)) <= S.KKT_TOL


def test_after_a_large_warm_move_the_polish_has_nothing_left():
    # 54,000 frames solved at tau_decay +50 % (the warm bench's move that
    # goes to the binned start): on the step's multipliers the polish
    # changed the set (74 samples on the bench's trace), settled once more
    # and confirmed; the direct settle leaves it nothing, bit for bit
    y = np.ascontiguousarray(regime_traces("lam0-slow-1kHz", 1, 54_000, 0)[0])
    it0, p0, moved0, s0, b0, _c0 = _route(y, 0, 1.5 * TD)
    it1, p1, moved1, s1, b1, _c1 = _route(y, ns._SETTLE_DIRECT, 1.5 * TD)
    assert moved0 >= 1 and p0 >= 1
    assert moved1 == 0 and p1 == 0
    assert it1 + p1 < it0 + p0
    assert np.array_equal(s0, s1) and b0 == b1
    v = S.kkt_violation(y[None], s1[None], np.array([b1]), FS, TR, 1.5 * TD, LAM)
    assert float(np.max(v)) <= S.KKT_TOL


def test_the_warm_move_to_the_binned_start_counts_the_step_saved():
    # the public call: the warm re-solve after tau_decay +50 % is
    # KKT-optimal in the warm step, the binned start's steps and at most 4
    # of the settle and polish (5 on the multipliers' route), and has the
    # cold solve's objective
    y = regime_traces("lam0-slow-1kHz", 1, 54_000, 0)[0]
    base = S.run_deconvolution_full(y, FS, TR, TD, LAM, baseline="scalar")
    warm = S.run_deconvolution_full(y, FS, TR, 1.5 * TD, LAM, baseline="scalar",
                                    init=base.activity)
    cold = S.run_deconvolution_full(y, FS, TR, 1.5 * TD, LAM, baseline="scalar")
    assert bool(np.all(warm.converged))
    it_s, it_p, _moved, s, _b, it_c = _route(np.ascontiguousarray(y), ns._SETTLE_DIRECT,
                                             1.5 * TD)
    assert it_s + it_p <= 4
    assert int(np.sum(warm.iterations)) == 1 + it_c + it_s + it_p
    assert np.array_equal(np.ravel(warm.activity), s)
    m = S._model_checked(FS, TR, 1.5 * TD, LAM)
    f_w, f_c = S._objective_rows(np.stack([y, y]), np.stack([np.ravel(warm.activity),
                                                              np.ravel(cold.activity)]), m, 1, 0.0)
    assert abs(float(f_w) - float(f_c)) <= 1e-12 * abs(float(f_c))
