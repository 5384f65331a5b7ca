"""The block settle's loops that now index by unsigned integers (so they
vectorise, or drop numba's test for a negative index) give the signed
loops' numbers bit for bit: ``_coarse_advance``, the closed-form part of
``_coarse_sums`` and ``_coarse_block_exact``'s adjoint chains, each against
a copy of its former loop; ``_chain_fill``, ``_chain_back`` and
``_none_flagged_at`` index their arrays without taking views (a view costs
two atomic reference counts, per 64 samples there), against their former
loops on views.

Both sides are compiled afresh here from their Python source (no cache)
and called from a caller with and without ``fastmath={"contract"}``: numba
passes a caller's fastmath flags on to a callee that sets none, and inside
the row solver these kernels are compiled so (``_coarse_advance`` is
called from ``_coarse_sweep_end``), with multiply-adds fused."""

import math

import numpy as np
import pytest
from numba import njit

from napari_catune import _numba_solvers as ns

_FLAGS = [None, {"contract"}]


def _ref_advance(G, lo, hi, w, v, alpha, d, r, n, sums, tab, n_c, drop):
    if w == 0.0 and v == 0.0:
        return w, v
    s0 = sums[0]
    s1 = sums[1]
    tp = tab[0]
    tr = tab[1]
    tf = tab[2]
    j = lo
    while j < hi:
        m64 = (j + 63) & ~63
        end = min(hi, m64 + 1)
        base = n - j
        if base - (end - j - 1) >= n_c:
            c0 = s0[n_c]
            c1 = s1[n_c]
            for i in range(end - j):
                G[j + i] += alpha * ((w * tp[i] + v * tf[i]) * c0 + (v * tr[i]) * c1)
        else:
            for i in range(end - j):
                N = base - i
                G[j + i] += alpha * ((w * tp[i] + v * tf[i]) * s0[N] + (v * tr[i]) * s1[N])
        m = end - j
        w, v = w * tp[m] + v * tf[m], v * tr[m]
        j = end
        if end == m64 + 1 and abs(w) + drop[1] * abs(v) < drop[0]:
            return 0.0, 0.0
    return w, v


def _ref_sums_tail(d, r, n, dp, rp, sums, n_end, n_c):
    idd = 1.0 / ((1.0 - d) * (1.0 + d))
    idr = 1.0 / (1.0 - d * r)
    irr = 1.0 / ((1.0 - r) * (1.0 + r))
    im = 1.0 / (d - r)
    s_inf = idd * idr
    s2_inf = (d + r) * idd * irr * idr
    for N in range(n_end + 1, min(n, n_c + 64) + 1):
        dl = dp[N]
        if not dl > 1e-20:
            sums[0, N] = s_inf
            sums[1, N] = s2_inf
            continue
        rl = rp[N]
        dn = d * dl
        rn = r * rl
        sums[0, N] = s_inf - dl * (dn * idd - rn * idr) * im
        sums[1, N] = s2_inf - (dl * dn * idd - dl * rl * (d + r) * idr + rl * rn * irr) * im * im


def _kernel(d, r, n):
    g1 = d + r
    g2 = -d * r
    dp = np.empty(n + 2)
    rp = np.empty(n + 2)
    sums = np.empty((2, n + 1))
    ns._coarse_tables(g1, g2, n, dp, rp, sums)
    dd, rr = ns._ar_roots(g1, g2)
    return g1, g2, dd, rr, dp, rp, sums


def _callers(new, ref, flags):
    """``new`` and ``ref`` called from a compiled caller with ``flags`` (None
    or a fastmath set): numba hands a caller's flags to a callee that sets
    none, so each kernel is checked as each of its callers compiles it."""
    kw = {"fastmath": flags} if flags else {}

    @njit(**kw)
    def call_new(*a):
        return new(*a)

    @njit(**kw)
    def call_ref(*a):
        return ref(*a)

    return call_new, call_ref


_CASES = [(1000.0, 0.2, 3.0, 54_000), (1000.0, 0.2, 3.0, 3_000), (100.0, 0.1, 1.5, 20_000),
          (30.0, 0.05, 0.5, 5_000), (1000.0, 0.05, 0.06, 10_000), (30.0, 0.4, 1.8, 300)]


@pytest.mark.parametrize("flags", _FLAGS)
def test_coarse_advance_unsigned_bit_for_bit(flags):
    new = njit(ns._coarse_advance.py_func)
    ref = njit(_ref_advance)
    call_new, call_ref = _callers(new, ref, flags)

    rng = np.random.default_rng(3)
    for fs, tr, td, n in _CASES:
        g1, g2, d, r, dp, rp, sums = _kernel(math.exp(-1 / (td * fs)), math.exp(-1 / (tr * fs)),
                                             n)
        tab = ns._coarse_chunk_tables(d, r)
        n_c = ns._sums_flat(d, r, n, dp)
        drop = ns._coarse_drop(d, 0.8, n, sums, 1.0)
        for lo in (0, 1, 63, 64, n // 3, max(0, n - 70), max(0, n - 1)):
            for _k in range(3):
                hi = min(n, lo + int(rng.integers(1, 6000)))
                w, v = rng.standard_normal(2) * 10.0 ** rng.integers(-3, 4)
                G0 = rng.standard_normal(n)
                G1 = G0.copy()
                G2 = G0.copy()
                a = (lo, hi, w, v, 0.8, d, r, n, sums, tab, n_c, drop)
                r1 = call_new(G1, *a)
                r2 = call_ref(G2, *a)
                assert r1 == r2
                assert np.array_equal(G1, G2)


@pytest.mark.parametrize("flags", _FLAGS)
def test_coarse_sums_unsigned_bit_for_bit(flags):
    new = njit(ns._coarse_sums.py_func)
    ref = njit(_ref_sums_tail)
    kw = {"fastmath": flags} if flags else {}

    @njit(**kw)
    def call_new(d, r, n, dp, rp, sums):
        new(d, r, n, dp, rp, sums)

    @njit(**kw)
    def call_ref(d, r, n, dp, rp, sums, n_end, n_c):
        ref(d, r, n, dp, rp, sums, n_end, n_c)

    for fs, tr, td, n in _CASES + [(1000.0, 0.2, 3.0, 400_000)]:
        _g1, _g2, d, r, dp, rp, _s = _kernel(math.exp(-1 / (td * fs)),
                                               math.exp(-1 / (tr * fs)), n)
        s1 = np.full((2, n + 1), np.nan)
        call_new(d, r, n, dp, rp, s1)
        n_end = min(n, int(1.0 / (1.0 - d)))
        if not d - r >= 0.1 * (1.0 - d):
            n_end = n
        n_c = ns._sums_flat(d, r, n, dp)
        s2 = s1.copy()
        s2[:, n_end + 1:min(n, n_c + 64) + 1] = np.nan
        call_ref(d, r, n, dp, rp, s2, n_end, n_c)
        assert np.array_equal(s1, s2, equal_nan=True)


@pytest.mark.parametrize("flags", _FLAGS)
def test_block_exact_chains_unsigned_bit_for_bit(flags):
    """The whole of ``_coarse_block_exact`` (new) against the same with its
    adjoint loops swapped for the former ones (the returned tail, G, the
    scratch and the deferred inputs)."""
    # (the kernel sets fastmath={"contract"} itself: both sides so)
    new = njit(fastmath={"contract"})(ns._coarse_block_exact.py_func)
    ref = njit(fastmath={"contract"})(_ref_exact)
    call_new, call_ref = _callers(new, ref, flags)

    rng = np.random.default_rng(5)
    n_cases = 0
    for fs, tr, td, n in _CASES:
        g1, g2, d, r, dp, rp, sums = _kernel(math.exp(-1 / (td * fs)), math.exp(-1 / (tr * fs)),
                                             n)
        tab = ns._coarse_chunk_tables(d, r)
        n_c = ns._sums_flat(d, r, n, dp)
        for _k in range(12):
            mb = int(rng.integers(1, 41))
            idx = np.sort(rng.choice(n - 1, size=min(mb, n - 2), replace=False)).astype(np.int64)
            mb = idx.shape[0]
            P = int(rng.integers(idx[-1] + 1, min(n, idx[-1] + 9000) + 1))
            dz = rng.standard_normal(mb)
            G0 = rng.standard_normal(n)
            W0 = rng.standard_normal(n + 1)
            X0 = rng.standard_normal(n)
            out = []
            for f in (call_new, call_ref):
                G, W, X = G0.copy(), W0.copy(), X0.copy()
                wv = f(G, idx, dz, mb, g1, g2, 0.8, d, r, n, P, rp, sums, W, X, tab, n_c)
                out.append((G, W, X, np.array(wv)))
            for x, y in zip(*out):
                assert np.array_equal(x, y)
            n_cases += 1
    assert n_cases == 12 * len(_CASES)


def _ref_exact(G, idx, dz, mb, g1, g2, alpha, d, r, n, P, rp, sums, work, X, tab, n_c):
    """_coarse_block_exact as it was (signed loops)."""
    a = idx[0]
    w = 0.0
    v = 0.0
    for i in range(mb):
        hi = idx[i + 1] if i + 1 < mb else P
        ad = alpha * dz[i]
        w, v = ns._chain_fill(work, idx[i] - a, hi - a, w + ad, v + ad * r, tab)
    sr = 0.0
    for i in range(mb):
        sr += dz[i] * rp[P - idx[i] + 1]
    v = alpha * sr
    N = n - P
    p1 = 0.0
    p2 = 0.0
    if N > 0:
        N0 = min(N, n_c)
        N1 = min(N - 1, n_c)
        p1 = w * sums[0, N0] + v * sums[1, N0]
        p2 = (w * d + v) * sums[0, N1] + v * r * sums[1, N1]
    if P - a >= 256:
        L = (P - a) // 4
        b1 = 0.0
        b2 = 0.0
        c1 = 0.0
        c2 = 0.0
        e1 = 0.0
        e2 = 0.0
        for i in range(L):
            j = P - 1 - i - a
            p = g1 * p1 + (work[j] + g2 * p2)
            b = g1 * b1 + (work[j - L] + g2 * b2)
            c = g1 * c1 + (work[j - 2 * L] + g2 * c2)
            e = g1 * e1 + (work[j - 3 * L] + g2 * e2)
            work[j] = p
            work[j - L] = b
            work[j - 2 * L] = c
            work[j - 3 * L] = e
            p2 = p1
            p1 = p
            b2 = b1
            b1 = b
            c2 = c1
            c1 = c
            e2 = e1
            e1 = e
        for j in range(P - 4 * L - 1 - a, -1, -1):
            e = g1 * e1 + (work[j] + g2 * e2)
            work[j] = e
            e2 = e1
            e1 = e
        Ga = G[a:]
        ns._chain_back(work, Ga, P - L - a, P - a, 0.0, 0.0, alpha, tab)
        for hi in (P - L, P - 2 * L, P - 3 * L):
            u1 = work[hi - a]
            ns._chain_back(work, Ga, hi - L - a if hi > P - 3 * L else 0, hi - a, u1,
                           r * u1 + g2 * work[hi + 1 - a], alpha, tab)
        p1 = work[0]
        p2 = work[1]
    else:
        for j in range(P - 1, a - 1, -1):
            p = g1 * p1 + (work[j - a] + g2 * p2)
            G[j] += alpha * p
            p2 = p1
            p1 = p
    if a >= 1:
        X[a - 1] += g1 * p1 + g2 * p2
    if a >= 2:
        X[a - 2] += g2 * p1
    return w, v


def _ref_chain_fill(out, lo, hi, w, v, tab):
    tp = tab[0]
    tr = tab[1]
    tf = tab[2]
    j = lo
    while j < hi:
        c = min(64, hi - j)
        o = out[j:j + c]
        for k in range(c):
            o[k] = w * tp[k] + v * tf[k]
        w, v = w * tp[c] + v * tf[c], v * tr[c]
        if abs(v) < 1e-290:
            v = 0.0
        j += c
    return w, v


def _ref_chain_back(out, G, lo, hi, w, v, alpha, tab):
    tr = tab[1]
    tpr = tab[3]
    tfr = tab[4]
    j = hi
    while j > lo:
        c = min(64, j - lo)
        o = out[j - c:j]
        g = G[j - c:j]
        pr = tpr[64 - c:64]
        fr = tfr[64 - c:64]
        for k in range(c):
            x = o[k] + (w * pr[k] + v * fr[k])
            o[k] = x
            g[k] += alpha * x
        w, v = w * tab[0, c] + v * tab[2, c], v * tr[c]
        if abs(v) < 1e-290:
            v = 0.0
        j -= c


def _ref_none_flagged_at(z, G, lo, hi, tol):
    zs = z[lo:]
    gs = G[lo:]
    hit = False
    for t in range(np.uint64(hi - lo)):
        hit |= (zs[t] != 0.0) | (gs[t] < -tol)
    return not hit


@pytest.mark.parametrize("flags", _FLAGS)
def test_chains_without_views_bit_for_bit(flags):
    # (both kernels set fastmath={"contract"} themselves)
    fill_new = njit(fastmath={"contract"})(ns._chain_fill.py_func)
    fill_ref = njit(fastmath={"contract"})(_ref_chain_fill)
    back_new = njit(fastmath={"contract"})(ns._chain_back.py_func)
    back_ref = njit(fastmath={"contract"})(_ref_chain_back)
    kw = {"fastmath": flags} if flags else {}

    @njit(**kw)
    def call(f, g, out, G, lo, hi, w, v, alpha, tab):
        a = f(out, lo, hi, w, v, tab)
        g(out, G, lo, hi, w, v, alpha, tab)
        return a

    rng = np.random.default_rng(9)
    for fs, tr, td, n in _CASES:
        _g1, _g2, d, r, _dp, _rp, _s = _kernel(math.exp(-1 / (td * fs)),
                                               math.exp(-1 / (tr * fs)), n)
        tab = ns._coarse_chunk_tables(d, r)
        for _k in range(20):
            lo = int(rng.integers(0, n))
            hi = int(rng.integers(lo, min(n, lo + 3000) + 1))
            w, v = rng.standard_normal(2) * 10.0 ** rng.integers(-300, 4, size=2)
            O0 = rng.standard_normal(n + 1)
            G0 = rng.standard_normal(n)
            res = []
            for f, g in ((fill_new, back_new), (fill_ref, back_ref)):
                out, G = O0.copy(), G0.copy()
                wv = call(f, g, out, G, lo, hi, w, v, 0.8, tab)
                res.append((out, G, np.array(wv)))
            for x, y in zip(*res):
                assert np.array_equal(x, y)


def test_none_flagged_at_without_views():
    new = njit(ns._none_flagged_at.py_func)
    ref = njit(_ref_none_flagged_at)
    rng = np.random.default_rng(11)
    n = 5000
    for _k in range(400):
        z = np.where(rng.random(n) < 0.002, rng.standard_normal(n), 0.0)
        G = rng.standard_normal(n) + 3.0
        lo = int(rng.integers(0, n))
        hi = int(rng.integers(lo, min(n, lo + 64) + 1))
        assert new(z, G, lo, hi, 1.0) == ref(z, G, lo, hi, 1.0)
