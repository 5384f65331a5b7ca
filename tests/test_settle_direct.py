"""The block settle after a large warm move (_numba_solvers._coarse_settle,
``direct_bad``): a full step that leaves at most _SETTLE_DIRECT violators
is settled by blocks on the directly formed gradient at the polish's
tolerance, so the polish (_coarse_polish_blocks) finds nothing left to
change; the same answer, bit for bit, with fewer steps (counted, not
timed)."""

import numpy as np

from napari_catune import _numba_solvers as ns
from napari_catune import solver as S
from napari_catune.simulation import regime_traces

FS, TR, TD = 1000.0, 0.2, 3.0


def _block_route(y, td, direct_bad, mode=1):
    """_coarse_row's route after a large move, phase by phase, from the
    binned guess: the block settle (``direct_bad``), then the polish.
    Returns (settle steps, polish steps, polish rounds that moved, activity,
    baseline)."""
    T = y.size
    n = T - 1
    m = S._model_checked(FS, TR, td, 0.0)
    g1, g2, al, lamG = m.g1, m.g2, m.alpha, m.lamG
    nf, nb = ns.workspace_sizes(T)
    fws = np.zeros(nf)
    bws = np.zeros(nb, bool)
    bvec, pws, active = fws[:T], fws[T:], bws[4 * n:5 * n]
    k = ns._coarse_factor(g1, g2, lamG, np.int64(T), True)
    assert k >= 2
    _it, ok = ns._coarse_start(y, g1, g2, al, lamG, np.int64(mode), 0.0, k, active, pws, bws,
                               np.int64(250))
    assert ok
    s = np.zeros(T)
    it_s, settled = ns._coarse_settle(y, g1, g2, al, lamG, np.int64(mode), 0.0, active,
                                      np.int64(ns._BLOCK_STEPS), s, bvec, pws, bws, ns._NO,
                                      np.int64(direct_bad))
    assert settled
    it_p, moved = ns._coarse_polish_blocks(y, g1, g2, al, lamG, np.int64(mode), 0.0, active, s,
                                           bvec, pws, bws, np.int64(200), ns._YES, 1e-12)
    return it_s, it_p, moved, s, bvec.copy()


def test_direct_settle_leaves_the_polish_nothing_and_the_answer_as_it_was():
    # lambda 0 at 1 kHz, 54,000 frames, solved at tau_decay +50 % (the
    # bench's warm move that goes to the binned start): the settle on the
    # step's multipliers stopped where the polish then changed the set
    # (74 samples on the bench's trace), settled once more and confirmed
    assert ns._SETTLE_DIRECT > 0
    y = np.ascontiguousarray(regime_traces("lam0-slow-1kHz", 1, 54_000, 0)[0])
    it0, p0, moved0, s0, b0 = _block_route(y, 1.5 * TD, 0)
    it1, p1, moved1, s1, b1 = _block_route(y, 1.5 * TD, ns._SETTLE_DIRECT)
    assert moved0 >= 1 and p0 >= 1
    assert moved1 == 0 and p1 == 0
    assert it1 + p1 < it0 + p0
    assert np.array_equal(s0, s1) and np.array_equal(b0, b1)
    v = S.kkt_violation(y[None], s1[None], np.array([b1[0]]), FS, TR, 1.5 * TD, 0.0)
    assert float(np.max(v)) <= S.KKT_TOL


def test_the_warm_route_counts_the_step_saved():
    # the public call: a warm re-solve after tau_decay +50 % at lambda 0 on
    # the 1 kHz kernel is KKT-optimal and has the cold start's answer's
    # objective
    y = regime_traces("lam0-slow-1kHz", 1, 54_000, 0)[0]
    base = S.run_deconvolution_full(y, FS, TR, TD, 0.0, baseline="scalar")
    warm = S.run_deconvolution_full(y, FS, TR, 1.5 * TD, 0.0, baseline="scalar",
                                    init=base.activity)
    cold = S.run_deconvolution_full(y, FS, TR, 1.5 * TD, 0.0, baseline="scalar")
    assert bool(np.all(warm.converged))
    assert int(np.sum(warm.iterations)) <= 19
    f_w = S._objective_rows(np.atleast_2d(y), np.atleast_2d(warm.activity),
                            S._model_checked(FS, TR, 1.5 * TD, 0.0), 1, 0.0)
    f_c = S._objective_rows(np.atleast_2d(y), np.atleast_2d(cold.activity),
                            S._model_checked(FS, TR, 1.5 * TD, 0.0), 1, 0.0)
    assert abs(float(f_w[0]) - float(f_c[0])) <= 1e-12 * abs(float(f_c[0]))
