"""The block settle's QP (_numba_block): _block_nnqp takes Lawson &
Hanson's steps of _numba_local._nnqp with the factor's rows side by side:
on real blocks of a lambda 0 1 kHz slow-kernel row the answer, the work
count and so the route are bit for bit those of _chol_add + _nnqp, and the
answer is the block's optimum (KKT); _coarse_block_solve (the same steps
with the solves by the two-state recursion, _block_nnqp_rec) ends at the
same answer to rounding, optimal.  Each rearranged kernel (append four rows, the forward pass
four rows and kept between solves, delete two rows at a time) matches its
one-row-at-a-time original, rejections of dependent columns included."""

import numpy as np
import pytest

from napari_catune import _numba_block as nb
from napari_catune import _numba_solvers as ns
from napari_catune._numba_local import _chol_add, _chol_del2, _chol_solve, _gram_fill, _nnqp
from _chol_ref import chol_del
from test_block_linear import _block_setup, _state


@pytest.fixture(scope="module")
def blocks():
    m, n, z, G, dp, rp, tol = _state()
    d, r, a2, thin, cand = _block_setup(m, z, G, tol)
    B = 40
    out = []
    for lo in range(0, cand.size - B, B):
        C = cand[lo:lo + B].astype(np.int64)
        out.append((C, z, G, n, dp, rp, d, r, a2, thin, tol))
    return out


def _scratch(B):
    return dict(H=np.empty((B, B)), P=np.empty(B, np.int64), c=np.empty(B), zz=np.empty(B),
                gr=np.empty(B), dz=np.empty(B), blocked=np.zeros(B, np.bool_))


def test_block_solve_is_lawson_hanson_bit_for_bit(blocks):
    B = 40
    checked = 0
    counts = np.zeros(4, np.int64)
    for C, z, G, n, dp, rp, d, r, a2, thin, tol in blocks:
        s = _scratch(B)
        zc = z.copy()
        nz = ns._coarse_block_solve(s["H"], s["P"], C, B, zc, G, s["c"], s["zz"], s["gr"],
                                    s["dz"], s["blocked"], n, dp, rp, d, r, a2, thin, tol)
        assert nz >= 0
        H = s["H"]
        c = s["c"].copy()
        c_max = max(abs(G[C[i]]) + sum(abs(H[i, f] * z[C[f]]) for f in range(B))
                    for i in range(B))
        tol_b = max(tol, ns._BLOCK_ROUND * c_max)
        max_work = ns._BLOCK_WORK * B ** 3 + ns._BLOCK_WORK_MIN
        # the reference: the factor one row at a time, _nnqp
        L = np.empty(B * (B + 1) // 2 + B)
        P = np.empty(B, np.int64)
        z_ref = np.zeros(B)
        bl = np.zeros(B, np.bool_)
        p = 0
        for i in range(B):
            if z[C[i]] > 0.0 and _chol_add(H, L, P, p, i, False):
                z_ref[i] = z[C[i]]
                p += 1
        p_ref, w_ref, ok = _nnqp(H, L, P, p, c, z_ref, B, bl, np.empty(B), np.empty(B), C, thin,
                                 tol_b, 0, max_work, np.empty(B), np.empty(B), np.empty(B + 1),
                                 False)
        assert ok
        zb = zc[C]
        assert np.max(np.abs(zb - z_ref)) <= 1e-6 * np.max(np.abs(z_ref))
        gb = H @ zb + c
        assert (zb >= 0).all()
        assert np.all(np.abs(gb[zb > 0]) <= 1e3 * tol_b)
        assert np.all(gb[zb == 0] >= -tol_b * (1 + 1e-9))
        # the same work count (so the same steps), counted
        L2 = np.empty_like(L)
        P2 = np.empty_like(P)
        z2 = np.zeros(B)
        Q = np.empty(B, np.int64)
        nq = 0
        for i in range(B):
            if z[C[i]] > 0.0:
                Q[nq] = i
                nq += 1
        p2 = nb._block_factor(H, L2, P2, 0, Q, nq)
        for t in range(nq):
            if Q[t] >= 0:
                z2[Q[t]] = z[C[Q[t]]]
        cnt = np.zeros(4, np.int64)
        p2, w2, ok2 = nb._block_nnqp(H, L2, P2, p2, c, z2, B, np.zeros(B, np.bool_),
                                     np.empty(B), np.empty(B), C, thin, tol_b, 0, max_work,
                                     np.empty(B), np.empty(B), Q, np.empty(B, np.int64), cnt)
        assert ok2 and p2 == p_ref and w2 == w_ref and np.array_equal(z2, z_ref)
        counts += cnt
        # the block's KKT: z >= 0, gradient 0 on the support, >= -tol_b off it
        g = H @ z_ref + c
        assert (z_ref >= 0).all()
        assert np.all(np.abs(g[z_ref > 0]) <= 1e3 * tol_b)
        assert np.all(g[z_ref == 0] >= -tol_b * (1 + 1e-9))
        checked += 1
    assert checked >= 10
    # the rearranged deletes, adds and solves were all taken
    assert counts[0] > checked and counts[1] > 0 and counts[2] > 0 and counts[3] >= checked


def _factor(H, idx):
    B = H.shape[0]
    L = np.empty(B * (B + 1) // 2 + B)
    P = np.empty(B, np.int64)
    p = 0
    for i in idx:
        if _chol_add(H, L, P, p, i, False):
            p += 1
    return L, P, p


def test_kernels_match_their_one_row_originals():
    rng = np.random.default_rng(3)
    B = 40
    A = rng.standard_normal((B, 3 * B))
    H = A @ A.T
    # a dependent column (13 = 2 * 5 - 7) and one again later (29 = 13): both rejected
    H[13] = 2 * H[5] - H[7]
    H[:, 13] = H[13]
    H[29] = H[13]
    H[:, 29] = H[13]
    idx = list(range(31))
    L1, P1, p1 = _factor(H, idx)
    L2 = np.full_like(L1, np.nan)
    P2 = np.zeros_like(P1)
    Q = np.array(idx + [0] * (B - len(idx)), np.int64)
    p2 = nb._block_factor(H, L2, P2, 0, Q, len(idx))
    assert p1 == p2 == 29
    assert sorted(-1 - q for q in Q[:len(idx)] if q < 0) == [13, 29]
    k = p1 * (p1 + 1) // 2
    assert np.array_equal(P1[:p1], P2[:p2]) and np.array_equal(L1[:k], L2[:k])
    c = rng.standard_normal(B)
    ref = np.empty(B)
    _chol_solve(L1, P1, p1, c, ref, False)
    out = np.empty(B)
    fw = np.empty(B)
    nb._block_solve(L1, P1, p1, c, out, fw, 0)
    assert np.array_equal(out[:p1], ref[:p1])
    for q in (0, 1, 6, 17, p1 - 3, p1 - 2, p1 - 1):
        La, Pa = L1.copy(), P1.copy()
        Lb, Pb = L1.copy(), P1.copy()
        chol_del(La, Pa, p1, q, np.empty(B), np.empty(B), np.empty(B + 1))
        _chol_del2(Lb, Pb, p1, q, np.empty(B), np.empty(B), np.empty(B + 1), np.empty(B + 1))
        k = (p1 - 1) * p1 // 2
        assert np.array_equal(Pa[:p1 - 1], Pb[:p1 - 1]) and np.array_equal(La[:k], Lb[:k])
        # the forward values of the rows above q kept: the same solve
        fw2 = fw.copy()
        _chol_solve(La, Pa, p1 - 1, c, ref, False)
        nb._block_solve(Lb, Pb, p1 - 1, c, out, fw2, q)
        assert np.array_equal(out[:p1 - 1], ref[:p1 - 1])
    # appending to a factor (an outer step's adds) from p > 0
    L3, P3, p3 = _factor(H, range(10))
    Q = np.array([12, 13, 14, 15, 16, 29, 30] + [0] * (B - 7), np.int64)
    p4 = nb._block_factor(H, L3, P3, p3, Q, 7)
    L5, P5, p5 = _factor(H, list(range(10)) + [12, 13, 14, 15, 16, 29, 30])
    k = p5 * (p5 + 1) // 2
    assert p4 == p5 and np.array_equal(P3[:p4], P5[:p5]) and np.array_equal(L3[:k], L5[:k])
