"""The block settle's stop (_numba_solvers._coarse_settle): where a block
settle leaves the set as it is and ends quiet, the settle is done (the
polish, _coarse_polish_blocks, decides the set), so its full steps do not
grow with T on the slow 1 kHz kernel (counted, not timed)."""

import numpy as np

from napari_catune import _numba_solvers as ns
from napari_catune import solver as S
from napari_catune.simulation import regime_traces

FS, TR, TD, LAM = 1000.0, 0.2, 3.0, 0.05


def _setup(T, lam):
    """The model's (g1, g2, alpha, lamG) and a fresh workspace of T frames:
    (bvec, pws, bws, active)."""
    m = S._model_checked(FS, TR, TD, lam)
    n = T - 1
    nf, nb = ns.workspace_sizes(T)
    fws = np.zeros(nf)
    bws = np.zeros(nb, bool)
    return (m.g1, m.g2, m.alpha, m.lamG), (fws[:T], fws[T:], bws, bws[4 * n:5 * n])


def _cold_block_route(y, lam=LAM):
    """_coarse_row's cold path, phase by phase: the binned solve, the block
    settle, the polish.  Returns (binned steps, settle steps, polish steps,
    activity, baseline)."""
    T = y.size
    (g1, g2, al, lamG), (bvec, pws, bws, active) = _setup(T, lam)
    k = ns._coarse_factor(g1, g2, lamG, np.int64(T), True)
    assert k >= 2
    it_c, ok = ns._coarse_start(y, g1, g2, al, lamG, np.int64(1), 0.0, k, active, pws, bws,
                                np.int64(250))
    assert ok
    # (beyond 100,000 frames the binned guess does not fit the dense settle)
    assert not ns._coarse_dense(g1, g2, active, pws.shape[0])
    s = np.zeros(T)
    it_s, settled = ns._coarse_settle(y, g1, g2, al, lamG, np.int64(1), 0.0, active,
                                      np.int64(ns._BLOCK_STEPS), s, bvec, pws, bws, ns._NO,
                                      ns._SETTLE_DIRECT)
    assert settled
    it_p, _moved = ns._coarse_polish_blocks(y, g1, g2, al, lamG, np.int64(1), 0.0, active, s,
                                            bvec, pws, bws, np.int64(200), ns._YES, 1e-12)
    return it_c, it_s, it_p, s, bvec[0]


def test_settle_steps_do_not_grow_from_200k_to_800k_frames():
    # slow-1kHz (lambda 0.05), seed 4: on the code before, the settle took
    # 2 full steps at 200,000 frames and 5 at 400,000 and 800,000 (its last
    # steps changed the side of violators the blocks refused, at ~1e-7 of
    # max|gradient|, and changed them back); then at most 3 at each length,
    # the polish at most one more.  With the last steps settled on the
    # direct gradient (_SETTLE_DIRECT) the polish's step is the settle's
    # (2 + 1, 3 + 0, 4 + 0 steps): at most 4 in all at each length, and
    # the answer KKT-optimal
    steps = []
    for T in (200_000, 400_000, 800_000):
        y = regime_traces("slow-1kHz", 1, T, seed=4)
        _it_c, it_s, it_p, s, b = _cold_block_route(np.ascontiguousarray(y[0]))
        assert it_s + it_p <= 4 and it_p <= 1, (T, it_s, it_p)
        v = S.kkt_violation(y, s[None], np.array([b]), FS, TR, TD, LAM)
        assert float(np.max(v)) <= S.KKT_TOL
        steps.append(it_s + it_p)
    assert max(steps) <= min(steps) + 1


def test_blocks_report_quiet_only_when_a_sweep_changed_nothing():
    # on the settle's answer (with its baseline fixed) one more block call
    # changes nothing: one sweep, quiet; on the binned guess's first full
    # step one sweep changes much: not quiet
    T = 200_000
    y = np.ascontiguousarray(regime_traces("slow-1kHz", 1, T, seed=4)[0])
    n = T - 1
    (g1, g2, al, lamG), (bvec, pws, bws, active) = _setup(T, LAM)
    k = ns._coarse_factor(g1, g2, lamG, np.int64(T), True)
    ns._coarse_start(y, g1, g2, al, lamG, np.int64(1), 0.0, k, active, pws, bws, np.int64(250))
    gain, gb, x, u, nu, _s, work, _gb, rest = ns._coarse_views(pws, n, T, np.int64(1))
    z, G, wz, dp, rp, _sk, _bk, sums = ns._coarse_block_views(rest, n, T)
    ns._coarse_tables(g1, g2, n, dp, rp, sums)
    wz[:] = 0.0
    thin = max(1, int(ns._THIN_PEAK * ns.peak_samples(g1, g2)))
    quiet_seen = []
    for _step in range(6):
        _bad, _last, _eps_u, eps_nu = ns._kkt_core(y, g1, g2, al, lamG / al, np.int64(1), 0.0,
                                                   active, gain, gb, x, bvec, u, nu, bws[0:n],
                                                   1e-11, ns._YES)
        z[:] = np.where(~active, u[:n], 0.0)
        G[:] = al * nu[:n]
        tol = max(al * eps_nu, 1e-13 * np.max(np.abs(G)))
        sweeps, quiet = ns._coarse_blocks(g1, g2, al, z, G, tol, thin, dp, rp, sums, work, wz,
                                          ns._NO, np.int64(1), ns._NO, np.int64(ns._BLOCK_MAX),
                                          float(np.max(np.abs(G))))
        assert sweeps == 1 and not np.any(wz)
        quiet_seen.append(bool(quiet))
        if quiet:
            break
        active[:] = ~(z > 0.0)
    # the first call moves many spikes; a later one (once the set has
    # settled) moves none
    assert quiet_seen[0] is False and quiet_seen[-1] is True
