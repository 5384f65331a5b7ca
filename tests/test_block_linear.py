"""The block settle's linear term (_numba_solvers._coarse_block_solve):
c = G - H z formed over the block's non-zero spikes alone, by rows of H,
takes the same numbers as the running sum over each row of H with every
entry (a zero spike's term is a zero), and the block's answer is that of
_nnqp from that c to rounding (the QP's solves by the two-state recursion,
_numba_block._block_nnqp_rec) and optimal (KKT)."""

import numpy as np

from napari_catune import _numba_solvers as ns
from napari_catune import solver as S
from napari_catune._numba_local import _chol_add, _gram_fill, _nnqp
from napari_catune.simulation import regime_traces


def _state(T=60_000):
    y = regime_traces("lam0-slow-1kHz", 1, T, 0)[0]
    m = S._model_checked(1000.0, 0.2, 3.0, 0.0)
    nf, nb = ns.workspace_sizes(T)
    fws = np.zeros(nf)
    bws = np.zeros(nb, bool)
    n = T - 1
    bvec = fws[0:T]
    pws = fws[T:]
    active = bws[4 * n:5 * n]
    kb = ns._coarse_factor(m.g1, m.g2, m.lamG, T, True)
    active[:] = False
    ns._coarse_start(y, m.g1, m.g2, m.alpha, m.lamG, 1, 0.0, kb, active, pws, bws, 250)
    gain, gb, x, u, nu, _s, _work, _gb2, rest = ns._coarse_views(pws, n, T, 1)
    _z, _G, _wz, dp, rp, _sk, _bk, sums = ns._coarse_block_views(rest, n, T)
    ns._coarse_tables(m.g1, m.g2, n, dp, rp, sums)
    beta = m.lamG / m.alpha
    _nb, _lb, _eu, eps_nu = ns._kkt_core(y, m.g1, m.g2, m.alpha, beta, 1, 0.0, active, gain, gb,
                                         x, bvec, u, nu, bws[0:n], 1e-11, True, False)
    G = m.alpha * nu.copy()
    tol = max(m.alpha * eps_nu, 1e-13 * np.abs(G).max())
    return m, n, u.copy(), G, dp, rp, tol


def _block_setup(m, z, G, tol):
    """The kernel's roots, the Gram scale, the thinning distance and the
    block candidates (non-zero spikes and violators) of a :func:`_state`."""
    d, r = ns._ar_roots(m.g1, m.g2)
    a2 = m.alpha * m.alpha / ((d - r) * (d - r))
    thin = max(1, int(ns._THIN_PEAK * ns.peak_samples(m.g1, m.g2)))
    cand = np.flatnonzero((z != 0.0) | (G < -tol))
    return d, r, a2, thin, cand


def test_linear_term_bit_for_bit():
    m, n, z, G, dp, rp, tol = _state()
    d, r, a2, thin, cand = _block_setup(m, z, G, tol)
    B = 40
    assert cand.size > 4 * B
    checked = 0
    for lo in range(0, cand.size - B, 3 * B):
        C = cand[lo:lo + B].astype(np.int64)
        zb = z[C]
        if not (np.any(zb == 0.0) and np.any(zb > 0.0)):
            continue
        # the reference: each row's running sum over every entry, as before
        H = np.empty((B, B))
        _gram_fill(H, C, 0, B, n, dp, rp, d, r, a2)
        c_ref = np.empty(B)
        for i in range(B):
            v = G[C[i]]
            for f in range(B):
                v -= H[i, f] * z[C[f]]
            c_ref[i] = v
        H2 = np.empty((B, B))
        P = np.empty(B, np.int64)
        c = np.full(B, np.nan)
        zz = np.empty(B)
        gr = np.empty(B)
        dz = np.empty(B)
        blocked = np.zeros(B, np.bool_)
        zc = z.copy()
        nz = ns._coarse_block_solve(H2, P, C, B, zc, G, c, zz, gr, dz, blocked, n, dp, rp, d, r,
                                    a2, thin, tol)
        assert nz >= 0
        assert np.array_equal(c, c_ref)
        # the block's answer from the reference c (the rounding bound's
        # sums as before, in a plain pass)
        c_max = max(abs(G[C[i]]) + sum(abs(H[i, f] * z[C[f]]) for f in range(B))
                    for i in range(B))
        tol_b = max(tol, ns._BLOCK_ROUND * c_max)
        L2 = np.empty(B * (B + 1) // 2 + B)
        P2 = np.empty_like(P)
        z2 = np.zeros(B)
        bl2 = np.zeros(B, np.bool_)
        p = 0
        for i in range(B):
            if z[C[i]] > 0.0 and _chol_add(H, L2, P2, p, i, False):
                z2[i] = z[C[i]]
                p += 1
        _p, _w, ok = _nnqp(H, L2, P2, p, c_ref.copy(), z2, B, bl2, np.empty(B), np.empty(B), C,
                           thin, tol_b, 0, ns._BLOCK_WORK * B ** 3 + ns._BLOCK_WORK_MIN,
                           np.empty(B), np.empty(B), np.empty(B + 1), False)
        assert ok
        zb = zc[C]
        assert np.max(np.abs(zb - z2)) <= 1e-6 * np.max(np.abs(z2))
        g = H @ zb + c_ref
        assert (zb >= 0).all()
        assert np.all(np.abs(g[zb > 0]) <= 1e3 * tol_b)
        assert np.all(g[zb == 0] >= -tol_b * (1 + 1e-9))
        checked += 1
    assert checked >= 3
