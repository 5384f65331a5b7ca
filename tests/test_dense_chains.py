"""The dense settle's Cholesky factor, solves and Lawson-Hanson gradients with
their dot products in four chains (``_numba_local._dot4``, ``chains``) give
the plain sums' numbers to rounding, for every length modulo 4."""

import numpy as np
import pytest

from napari_catune import _numba_local as nl


def _spd(m, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m + 3, m))
    return a.T @ a + 0.1 * np.eye(m)


@pytest.mark.parametrize("k", [0, 1, 2, 3, 4, 5, 7, 8, 13, 64, 101])
def test_dot4_is_the_dot_product(k):
    rng = np.random.default_rng(k)
    a = rng.standard_normal(k + 5)
    b = rng.standard_normal(k + 9)
    got = nl._dot4(a, 3, b, 7, k)
    want = float(np.dot(a[3:3 + k], b[7:7 + k]))
    assert abs(got - want) <= 1e-13 * (1.0 + float(np.abs(a[3:3 + k]) @ np.abs(b[7:7 + k])))


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 6, 9, 17, 40])
def test_factor_and_solve_with_chains_match_the_plain_ones(m):
    H = _spd(m, m)
    c = np.random.default_rng(100 + m).standard_normal(m)
    out = {}
    for chains in (np.bool_(False), np.bool_(True)):
        L = np.zeros(m * (m + 1) // 2)
        P = np.zeros(m, np.int64)
        p = 0
        # positions in a scrambled order (P maps factor rows to H's)
        for j in np.random.default_rng(m).permutation(m):
            assert nl._chol_add(H, L, P, p, j, chains)
            p += 1
        x = np.zeros(m)
        nl._chol_solve(L, P, p, c, x, chains)
        out[bool(chains)] = (L.copy(), P.copy(), x)
    (L0, P0, x0), (L1, P1, x1) = out[False], out[True]
    assert np.array_equal(P0, P1)
    np.testing.assert_allclose(L1, L0, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(x1, x0, rtol=1e-9, atol=1e-11)
    # and x solves H[P, P] x = -c[P]
    np.testing.assert_allclose(H[np.ix_(P1, P1)] @ x1, -c[P1], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("m", [3, 8, 21, 50])
def test_nnqp_with_chains_reaches_the_same_optimum(m):
    H = _spd(m, 7 * m)
    c = np.random.default_rng(m).standard_normal(m) * 3.0
    res = {}
    for chains in (np.bool_(False), np.bool_(True)):
        L = np.zeros(m * (m + 1) // 2)
        P = np.zeros(m, np.int64)
        z = np.zeros(m)
        blocked = np.zeros(m, np.bool_)
        zeta = np.zeros(m)
        grad = np.zeros(m)
        C = np.arange(m, dtype=np.int64) * 1000  # no two within thin
        cs = np.zeros(m)
        sn = np.zeros(m)
        tmp = np.zeros(m + 2)
        p, _work, ok = nl._nnqp(H, L, P, 0, c, z, m, blocked, zeta, grad, C, 1, 1e-12, 0,
                                10 ** 9, cs, sn, tmp, chains)
        assert ok
        res[bool(chains)] = z.copy()
    np.testing.assert_allclose(res[True], res[False], rtol=1e-9, atol=1e-11)
    z = res[True]
    g = H @ z + c
    # KKT of min 1/2 z'Hz + c'z, z >= 0
    assert np.all(z >= 0.0)
    assert np.all(np.abs(g[z > 0]) <= 1e-9 * (1 + np.abs(c).max()))
    assert np.all(g[z == 0] >= -1e-9 * (1 + np.abs(c).max()))
