"""The dense settle's kernels that work on two or four rows side by side give
the one-row originals' numbers bit for bit: ``_chol_del2`` against
``_chol_del`` (every delete position of factors of every size parity), the
linear term ``_settle_lin`` and the objective's fall ``_settle_fall``
against the row-by-row sums they replace, the power-table hand-overs (now
by unsigned indices) against their plain loops."""

import numpy as np
import pytest

from napari_catune import _numba_local as nl


def _factor(m, seed, chains):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m + 4, m))
    H = a.T @ a + 0.05 * np.eye(m)
    L = np.zeros(m * (m + 1) // 2 + m + 2)
    P = np.zeros(m + 1, np.int64)
    p = 0
    for j in rng.permutation(m):
        assert nl._chol_add(H, L, P, p, j, chains)
        p += 1
    return H, L, P, p


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 8, 11, 30, 67])
@pytest.mark.parametrize("chains", [np.bool_(False), np.bool_(True)])
def test_chol_del2_is_chol_del_bit_for_bit(m, chains):
    H, L0, P0, p0 = _factor(m, m, chains)
    for q in range(p0):
        L1, P1 = L0.copy(), P0.copy()
        L2, P2 = L0.copy(), P0.copy()
        cs1, sn1, t1 = np.zeros(m + 1), np.zeros(m + 1), np.zeros(m + 1)
        cs2, sn2, t2, t2b = np.zeros(m + 1), np.zeros(m + 1), np.zeros(m + 1), np.zeros(m + 1)
        nl._chol_del(L1, P1, p0, q, cs1, sn1, t1)
        nl._chol_del2(L2, P2, p0, q, cs2, sn2, t2, t2b)
        k = (p0 - 1) * p0 // 2
        assert np.array_equal(L1[:k], L2[:k])
        assert np.array_equal(P1[:p0 - 1], P2[:p0 - 1])
        assert np.array_equal(cs1[q:p0 - 1], cs2[q:p0 - 1])
        assert np.array_equal(sn1[q:p0 - 1], sn2[q:p0 - 1])
    # a chain of deletes, each on the last one's factor
    L1, P1 = L0.copy(), P0.copy()
    L2, P2 = L0.copy(), P0.copy()
    scr = [np.zeros(m + 1) for _ in range(7)]
    p = p0
    rng = np.random.default_rng(7)
    while p > 1:
        q = int(rng.integers(0, p))
        nl._chol_del(L1, P1, p, q, scr[0], scr[1], scr[2])
        nl._chol_del2(L2, P2, p, q, scr[3], scr[4], scr[5], scr[6])
        p -= 1
        k = p * (p + 1) // 2
        assert np.array_equal(L1[:k], L2[:k]) and np.array_equal(P1[:p], P2[:p])


def _lin_ref(H, C, nu, alpha, s0, nf, lo, m, c):
    for i in range(lo, m):
        v = alpha * nu[C[i]]
        for f in range(nf):
            v -= H[i, f] * s0[f]
        c[i] = v


def _fall_ref(H, C, nu, alpha, z, s0, m):
    fall = 0.0
    for i in range(m):
        di = z[i] - s0[i]
        if di == 0.0:
            continue
        hd = 0.0
        for j in range(m):
            hd += H[i, j] * (z[j] - s0[j])
        fall -= di * (alpha * nu[C[i]] + 0.5 * hd)
    return fall


@pytest.mark.parametrize("m", [1, 3, 4, 5, 9, 16, 37])
def test_settle_lin_and_fall_are_the_row_sums_bit_for_bit(m):
    rng = np.random.default_rng(m)
    cmax = m + 6
    H = rng.standard_normal((cmax, cmax))
    H = H + H.T
    C = rng.permutation(500)[:cmax].astype(np.int64)
    nu = rng.standard_normal(500)
    alpha = 1.7
    s0 = np.where(rng.random(cmax) < 0.6, rng.random(cmax), 0.0)
    nf = max(0, m - 2)
    for lo in sorted({0, m // 2, m}):
        c1 = np.full(cmax, np.nan)
        c2 = np.full(cmax, np.nan)
        _lin_ref(H, C, nu, alpha, s0, nf, lo, m, c1)
        nl._settle_lin(H, C, nu, alpha, s0, np.int64(nf), np.int64(lo), np.int64(m), c2)
        assert np.array_equal(c1[lo:m], c2[lo:m])
    z = np.where(rng.random(cmax) < 0.5, s0, rng.random(cmax))
    want = _fall_ref(H, C, nu, alpha, z, s0, m)
    got = nl._settle_fall(H, C, nu, alpha, z, s0, np.int64(m), np.empty(cmax),
                          np.empty(cmax, np.int64))
    assert got == want


@pytest.mark.parametrize("lo, hi", [(0, 0), (0, 1), (3, 4), (0, 33), (5, 200)])
def test_hand_overs_are_the_plain_loops(lo, hi):
    d, r = 0.99, 0.7
    n = 260
    dp, rp = d ** np.arange(n + 2), r ** np.arange(n + 2)
    rng = np.random.default_rng(hi)
    out0 = rng.standard_normal(n + 1)
    q1, q2 = 0.3, -1.1
    a = d * (q1 - r * q2) / (d - r)
    b = r * (d * q2 - q1) / (d - r)
    want = out0.copy()
    for j in range(hi - lo):
        want[lo + j] += a * dp[j + 1] + b * rp[j + 1]
    got = out0.copy()
    nl._hand_over(got, lo, hi, q1, q2, d, r, dp, rp)
    assert np.array_equal(got, want)
    want = out0.copy()
    for j in range(hi - lo):
        want[hi - 1 - j] += a * dp[j + 1] + b * rp[j + 1]
    got = out0.copy()
    nl._hand_over_back(got, lo, hi, q1, q2, d, r, dp, rp)
    assert np.array_equal(got, want)
