"""The dense settle's kernels that work on two or four rows side by side give
the one-row originals' numbers bit for bit: ``_chol_del2`` against
the one-row delete kept in ``tests/_chol_ref.py`` (every delete position of factors of every size parity), the
linear term ``_settle_lin`` and the objective's fall ``_settle_fall``
against the row-by-row sums they replace, the power-table hand-overs (now
by unsigned indices) against their plain loops."""

import numpy as np
import pytest

from _chol_ref import chol_del

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
        chol_del(L1, P1, p0, q, cs1, sn1, t1)
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
        chol_del(L1, P1, p, q, scr[0], scr[1], scr[2])
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


def _gram_ref(H, C, lo, m, n, dp, rp, d, r, a2):
    idd = 1.0 / (1.0 - d * d)
    idr = 1.0 / (1.0 - d * r)
    irr = 1.0 / (1.0 - r * r)
    xt = np.empty((m, 3))
    for k in range(m):
        L = n - C[k]
        dl, rl = dp[L], rp[L]
        xt[k] = 1.0 - dl * dl, 1.0 - dl * rl, 1.0 - rl * rl
    for i in range(lo, m):
        ci = C[i]
        for j in range(i + 1):
            cj = C[j]
            h = i if ci > cj else j
            D = ci - cj if ci > cj else cj - ci
            v = (dp[D + 2] * xt[h, 0] * idd
                 - (dp[D + 1] * r + rp[D + 1] * d) * xt[h, 1] * idr
                 + rp[D + 2] * xt[h, 2] * irr)
            H[i, j] = a2 * v
            H[j, i] = a2 * v


@pytest.mark.parametrize("m", [1, 2, 7, 40])
def test_gram_fill_is_the_entry_by_entry_fill_bit_for_bit(m):
    d, r = 0.9995, 0.995
    n = 3000
    dp, rp = np.empty(n + 2), np.empty(n + 2)
    nl.power_tables(d, r, n, dp, rp)
    rng = np.random.default_rng(m)
    C = rng.permutation(n)[:m].astype(np.int64)
    for lo in sorted({0, m // 2}):
        H1 = np.full((m + 3, m + 3), np.nan)
        H2 = H1.copy()
        if lo:
            _gram_ref(H1, C, 0, lo, n, dp, rp, d, r, 2.5)
            _gram_ref(H2, C, 0, lo, n, dp, rp, d, r, 2.5)
        _gram_ref(H1, C, lo, m, n, dp, rp, d, r, 2.5)
        nl._gram_fill(H2, C, np.int64(lo), np.int64(m), n, dp, rp, d, r, 2.5)
        assert np.array_equal(H1[:m, :m], H2[:m, :m])


def _ar_ref(inp, out, g1, g2, d, r, dp, rp, back):
    """_ar_chains as it was (signed indices)."""
    n = out.shape[0] - 1
    L = n // 4
    z0 = z1 = y0 = y1 = x0 = x1 = w0 = w1 = 0.0
    if back:
        out[n] = 0.0
        for i in range(L):
            j = n - 1 - i
            qa = inp[j + 1] + g1 * z0 + g2 * z1
            j -= L
            qb = inp[j + 1] + g1 * y0 + g2 * y1
            j -= L
            qc = inp[j + 1] + g1 * x0 + g2 * x1
            j -= L
            qd = inp[j + 1] + g1 * w0 + g2 * w1
            out[j + 3 * L], out[j + 2 * L], out[j + L], out[j] = qa, qb, qc, qd
            z1, z0, y1, y0, x1, x0, w1, w0 = z0, qa, y0, qb, x0, qc, w0, qd
        for j in range(n - 1 - 4 * L, -1, -1):
            qd = inp[j + 1] + g1 * w0 + g2 * w1
            out[j] = qd
            w1, w0 = w0, qd
        for b in range(1, 4):
            hi = n - b * L
            lo = hi - L if b < 3 else 0
            q2 = out[hi + 1] if hi + 1 <= n else 0.0
            nl._hand_over_back(out, lo, hi, out[hi], q2, d, r, dp, rp)
        return
    out[0] = 0.0
    for i in range(L):
        qa = inp[i] + g1 * z0 + g2 * z1
        qb = inp[i + L] + g1 * y0 + g2 * y1
        qc = inp[i + 2 * L] + g1 * x0 + g2 * x1
        qd = inp[i + 3 * L] + g1 * w0 + g2 * w1
        out[i + 1], out[i + L + 1], out[i + 2 * L + 1], out[i + 3 * L + 1] = qa, qb, qc, qd
        z1, z0, y1, y0, x1, x0, w1, w0 = z0, qa, y0, qb, x0, qc, w0, qd
    for k in range(4 * L, n):
        qd = inp[k] + g1 * w0 + g2 * w1
        out[k + 1] = qd
        w1, w0 = w0, qd
    for b in range(1, 4):
        lo = b * L
        hi = lo + L if b < 3 else n
        q2 = out[lo - 1] if lo >= 1 else 0.0
        nl._hand_over(out, lo + 1, hi + 1, out[lo], q2, d, r, dp, rp)


@pytest.mark.parametrize("n", [4, 7, 8, 9, 10, 11, 101, 1002])
@pytest.mark.parametrize("back", [np.bool_(False), np.bool_(True)])
def test_ar_chains_unsigned_is_the_signed_loop(n, back):
    d, r = 0.999, 0.99
    dp, rp = np.empty(n + 2), np.empty(n + 2)
    nl.power_tables(d, r, n, dp, rp)
    inp = np.random.default_rng(n).standard_normal(n + 1)
    o1 = np.full(n + 1, np.nan)
    o2 = o1.copy()
    _ar_ref(inp, o1, d + r, -d * r, d, r, dp, rp, back)
    nl._ar_chains(inp, o2, d + r, -d * r, d, r, dp, rp, back)
    assert np.array_equal(o1, o2)


def _grad_ref(H, P, p, c, z, blocked, zp, m, tol):
    """_nnqp's outer gradient with chains as it was, one row at a time."""
    grad = np.zeros(m)
    viol = []
    for i in range(m):
        if z[i] > 0.0 or blocked[i]:
            continue
        g = c[i]
        g0 = g1 = g2 = g3 = 0.0
        p4 = p - (p & 3)
        for a in range(0, p4, 4):
            g0 += H[i, P[a]] * zp[a]
            g1 += H[i, P[a + 1]] * zp[a + 1]
            g2 += H[i, P[a + 2]] * zp[a + 2]
            g3 += H[i, P[a + 3]] * zp[a + 3]
        for a in range(p4, p):
            g0 += H[i, P[a]] * zp[a]
        g += (g0 + g1) + (g2 + g3)
        if -g > tol:
            grad[i] = g
            viol.append(i)
    return grad, viol


@pytest.mark.parametrize("m", [1, 4, 6, 9, 23, 50])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("tol", [0.1, -np.inf])
def test_nnqp_grad4_is_the_row_by_row_gradient_bit_for_bit(m, seed, tol):
    """(tol -inf: every row off P and not blocked is a violator, so every
    row's gradient is compared, not only the rows that violate)"""
    rng = np.random.default_rng(100 * m + seed)
    H = rng.standard_normal((m, m))
    z = np.where(rng.random(m) < 0.4, rng.random(m), 0.0)
    P = np.flatnonzero(z > 0).astype(np.int64)
    p = P.size
    zp = z[P].copy()
    blocked = rng.random(m) < 0.1
    c = rng.standard_normal(m)
    want, viol_want = _grad_ref(H, P, p, c, z, blocked, zp, m, tol)
    grad = np.full(m, np.nan)
    viol = np.zeros(m, np.int64)
    nv = nl._nnqp_grad4(H, np.concatenate([P, np.zeros(2, np.int64)]), np.int64(p), c, z, blocked,
                        np.concatenate([zp, [0.0, 0.0]]), grad, np.empty(m, np.int64), viol,
                        np.int64(m), tol)
    assert nv == len(viol_want) and list(viol[:nv]) == viol_want
    assert np.array_equal(grad, want)
