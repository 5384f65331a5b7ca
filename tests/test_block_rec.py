"""The block QP's two-state recursion (_numba_block._block_free_solve): on
real blocks of a lambda 0 1 kHz slow-kernel row its solve with the free set
F is that of the dense Gram (_gram_fill) H[F, F] to rounding; the rows
below ``lo`` kept from the last call give the same numbers as a fresh
solve; a position numerically dependent on those before it is reported;
and _block_nnqp_rec takes the same steps (counts) as _block_nnqp and ends
at the same optimum to rounding."""

import numpy as np

from napari_catune import _numba_block as nb
from napari_catune import _numba_solvers as ns
from napari_catune._numba_local import _gram_fill
from test_block_linear import _block_setup, _state


def _blocks(B=40):
    m, n, z, G, dp, rp, tol = _state()
    d, r, a2, thin, cand = _block_setup(m, z, G, tol)
    out = []
    for lo in range(0, cand.size - B, 2 * B):
        C = cand[lo:lo + B].astype(np.int64)
        H = np.empty((B, B))
        _gram_fill(H, C, 0, B, n, dp, rp, d, r, a2)
        out.append((C, H, z, G, n, dp, rp, d, r, a2, thin, tol))
    return out


def _gens(C, B, n, dp, rp, d, r, a2):
    g = [np.empty(B) for _ in range(5)]
    nb._block_gens(C, B, n, dp, rp, d, r, a2, *g)
    return g


def test_free_solve_is_the_dense_solve_and_keeps_its_rows():
    rng = np.random.default_rng(1)
    B = 40
    checked = 0
    for C, H, _z, _G, n, dp, rp, d, r, a2, _thin, _tol in _blocks(B)[:12]:
        al, be, hd, ed, qd = _gens(C, B, n, dp, rp, d, r, a2)
        # the generators are the Gram's: H[i, j] = al_i d^D + be_i r^D (i later)
        i, j = 30, 11
        D = C[i] - C[j]
        assert abs(al[i] * d ** D + be[i] * r ** D - H[i, j]) <= 1e-9 * H[i, i]
        c = rng.standard_normal(B) * np.abs(H).max()
        F = rng.random(B) < 0.7
        fw = np.full((4, B), np.nan)
        st = np.full((7, B), np.nan)
        out = np.full(B, np.nan)
        assert nb._block_free_solve(F, B, c, al, be, hd, ed, qd, out, fw, st, 0) == -1
        f = np.flatnonzero(F)
        ref = -np.linalg.solve(H[np.ix_(f, f)], c[f])
        assert np.max(np.abs(out[f] - ref)) <= 1e-6 * np.max(np.abs(ref))
        # change F at k, solve from lo = k: the numbers of a fresh solve
        for k in (3, 17, 38):
            F[k] = not F[k]
            nb._block_free_solve(F, B, c, al, be, hd, ed, qd, out, fw, st, k)
            out2 = np.full(B, np.nan)
            assert nb._block_free_solve(F, B, c, al, be, hd, ed, qd, out2, np.empty((4, B)),
                                        np.empty((7, B)), 0) == -1
            f = np.flatnonzero(F)
            assert np.array_equal(out[f], out2[f])
        checked += 1
    assert checked >= 8


def test_dependent_position_is_reported():
    C, _H, _z, _G, n, dp, rp, d, r, a2, _thin, _tol = _blocks()[0]
    B = 40
    C = C.copy()
    C[21] = C[20]  # the same sample twice: H's rows 20 and 21 equal
    al, be, hd, ed, qd = _gens(C, B, n, dp, rp, d, r, a2)
    F = np.ones(B, np.bool_)
    c = np.ones(B)
    assert nb._block_free_solve(F, B, c, al, be, hd, ed, qd, np.empty(B), np.empty((4, B)),
                                np.empty((7, B)), 0) == 21


def test_nnqp_rec_takes_the_steps_of_block_nnqp():
    B = 40
    checked = 0
    for C, H, z, G, n, dp, rp, d, r, a2, thin, tol in _blocks(B):
        zb = z[C]
        c = G[C] - H @ zb
        tol_b = max(tol, ns._BLOCK_ROUND * (np.abs(G[C]) + np.abs(H) @ np.abs(zb)).max())
        max_work = ns._BLOCK_WORK * B ** 3 + ns._BLOCK_WORK_MIN
        # A: the dense factor and _block_nnqp
        L = np.empty(B * (B + 1) // 2 + B)
        P = np.empty(B, np.int64)
        Q = np.flatnonzero(zb > 0).astype(np.int64)
        nq = Q.size
        Q = np.concatenate([Q, np.zeros(B - nq, np.int64)])
        p = nb._block_factor(H, L, P, 0, Q, nq)
        za = np.where(zb > 0, zb, 0.0)
        ca = np.zeros(4, np.int64)
        _p, _w, ok = nb._block_nnqp(H, L, P, p, c, za, B, np.zeros(B, np.bool_), np.empty(B),
                                    np.empty(B), C, thin, tol_b, 0, max_work, np.empty(B),
                                    np.empty(B), Q, np.empty(B, np.int64), ca)
        assert ok
        zr = np.where(zb > 0, zb, 0.0)
        cr = np.zeros(4, np.int64)
        _w2, ok2 = nb._block_nnqp_rec(H, c, zr, B, np.zeros(B, np.bool_), C, thin, tol_b,
                                      max_work, n, dp, rp, d, r, a2, cr)
        assert ok2
        assert np.array_equal(ca, cr)
        assert np.max(np.abs(zr - za)) <= 1e-6 * np.max(np.abs(za))
        g = H @ zr + c
        assert (zr >= 0).all()
        assert np.all(np.abs(g[zr > 0]) <= 1e3 * tol_b)
        assert np.all(g[zr == 0] >= -tol_b * (1 + 1e-9))
        checked += 1
    assert checked >= 10
