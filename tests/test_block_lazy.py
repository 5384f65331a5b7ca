"""The block settle's lazy gradient update (_numba_solvers._coarse_block_exact
and its sweep state) against dense K'K: exact, not truncated at a reach."""

import numpy as np
import pytest
from scipy.signal import lfilter

from napari_catune import _numba_local as nl
from napari_catune import _numba_solvers as ns
from napari_catune import solver as S

# (fs, tau_rise, tau_decay): the 1 kHz slow kernel, faster ones, r close to d
# (roots 1e-3 and 3e-5 of 1 - d apart: the tail sums' closed forms lost 4e-9
# and 1.2e-5 there, a reviewer found)
KERNELS = [(1000.0, 0.2, 3.0), (1000.0, 0.02, 0.3), (100.0, 0.1, 1.0),
           (30.0, 0.1, 1.0), (100.0, 0.8, 1.0), (1000.0, 1.2, 1.5),
           (1000.0, 0.999, 1.0), (1000.0, 0.99999, 1.0)]


def _ktk(g1, g2, alpha, x):
    """alpha^2 K'K x (K: x at sample k acts from k on, up to the trace's
    end) by two plain recursions (scipy) in extended precision: the
    reference (in doubles, as the recursions it replaces, ~1e-11 off on
    the 1 kHz kernels)."""
    ld = np.longdouble
    b = np.array([1.0], ld)
    a = np.array([1.0, -ld(g1), -ld(g2)], ld)
    u = lfilter(b, a, np.asarray(x, ld))
    v = lfilter(b, a, u[::-1])[::-1]
    return (ld(alpha) * ld(alpha) * v).astype(np.float64)


def _dense_ktk(g1, g2, alpha, n):
    e = np.zeros(n + 1)
    e[0] = 1.0
    h = np.zeros(n + 1)
    nl.forward_conv(e, g1, g2, alpha, h)
    lag = np.arange(n + 1)[:, None] - np.arange(n)[None, :]
    K = np.where(lag >= 0, h[np.clip(lag, 0, None)], 0.0)
    return K.T @ K


def _lazy_tables(g1, g2, n):
    """The lazy update's tables for n samples: the power tables dp, rp, the
    tail sums, the AR roots d, r and the chunk tables.  (The tail sums'
    entries _coarse_sums leaves unwritten are NaN: a reader that reads one
    makes G NaN.)"""
    dp = np.empty(n + 2)
    rp = np.empty(n + 2)
    sums = np.full((2, n + 1), np.nan)
    ns._coarse_tables(g1, g2, n, dp, rp, sums)
    d, r = ns._ar_roots(g1, g2)
    tab = ns._coarse_chunk_tables(d, r)
    return dp, rp, sums, d, r, tab


def _sweep(g1, g2, alpha, n, rng, G, plan):
    """Run a sweep's lazy updates: plan is a list of (front, idx); returns
    the total change and checks, after each block, that G is exact on
    [idx[0], front) (the samples a sweep may read again)."""
    dp, rp, sums, d, r, tab = _lazy_tables(g1, g2, n)
    n_c = ns._sums_flat(d, r, n, dp)
    # (the tails dropped as _coarse_blocks drops them: below _BLOCK_DROP of
    # max|G|)
    drop = ns._coarse_drop(d, alpha, n, sums, float(np.max(np.abs(G))))
    work = np.zeros(n + 1)
    X = np.zeros(n)
    # (X's input positions, as _coarse_blocks lists them: ascending, repeats)
    xs = []
    tw = tv = 0.0
    front = 0
    x_hi = -1
    G0 = G.copy()
    total = np.zeros(n)
    # (the rounding's scale: the blocks' updates, each as large as it is)
    scale = np.max(np.abs(G0))
    worst = 0.0
    for new_front, idx in plan:
        if new_front > front:
            # (in pieces, as a sweep's scan)
            mid = (front + new_front) // 2
            tw, tv = ns._coarse_advance(G, front, mid, tw, tv, alpha, d, r, n, sums, tab,
                                        n_c, drop)
            tw, tv = ns._coarse_advance(G, mid, new_front, tw, tv, alpha, d, r, n, sums, tab,
                                        n_c, drop)
            front = new_front
        idx = np.asarray(idx, np.int64)
        dz = rng.standard_normal(idx.shape[0])
        bw, bv = ns._coarse_block_exact(G, idx, dz, idx.shape[0], g1, g2, alpha, d, r, n, front,
                                        rp, sums, work, X, tab, n_c)
        tw += bw
        tv += bv
        x_hi = max(x_hi, idx[0] - 1)
        xs += list(range(max(idx[0] - 2, 0), idx[0]))
        x = np.zeros(n)
        x[idx] = dz
        scale += np.max(np.abs(_ktk(g1, g2, alpha, x)))
        total[idx] += dz
        ref = G0 + _ktk(g1, g2, alpha, total)
        sl = slice(idx[0], front)
        worst = max(worst, np.max(np.abs(G[sl] - ref[sl])) / scale)
    xs = np.array(xs + [0], np.int64)
    ns._coarse_sweep_end(G, front, tw, tv, x_hi, g1, g2, alpha, d, r, n, sums, X, xs,
                         xs.shape[0] - 1, tab, n_c, drop, np.zeros((n >> 6) + 1, np.bool_))
    assert not np.any(X)
    # (no table entry left unwritten was read: a NaN would pass max() above)
    assert np.all(np.isfinite(G))
    ref = G0 + _ktk(g1, g2, alpha, total)
    worst = max(worst, np.max(np.abs(G - ref)) / scale)
    return worst


def _plan(rng, n, n_blocks, span):
    """Blocks as a sweep makes them: each starts at or after the last one's
    first sample; the scan's end at or after each block's last sample."""
    plan = []
    a = 0
    front = 0
    for _ in range(n_blocks):
        if a >= n - 1:
            break
        e = min(n, a + int(rng.integers(1, span + 1)))
        m = min(e - a, int(rng.integers(1, 65)))
        idx = np.sort(rng.choice(np.arange(a, e), m, replace=False))
        idx[0] = a
        idx = np.unique(idx)
        front = max(front, e + int(rng.integers(0, 3 * span)), idx[-1] + 1)
        front = min(front, n)
        plan.append((front, idx))
        a = int(rng.integers(a, idx[-1] + 1))
    return plan


def test_reference_is_dense_ktk():
    m = S._model_checked(100.0, 0.1, 1.0, 0.0)
    n = 400
    x = np.random.default_rng(0).standard_normal(n)
    ref = _dense_ktk(m.g1, m.g2, m.alpha, n) @ x
    assert np.max(np.abs(_ktk(m.g1, m.g2, m.alpha, x) - ref)) < 1e-12 * np.max(np.abs(ref))


@pytest.mark.parametrize("kernel", KERNELS)
def test_lazy_block_update_is_exact(kernel):
    fs, tr, td = kernel
    m = S._model_checked(fs, tr, td, 0.0)
    assert ns._coarse_blocks_apply(m.g1, m.g2)
    d, _r = ns._ar_roots(m.g1, m.g2)
    # four decay lengths: the closed forms beyond the end zone are used
    n = max(2500, int(4.0 / (1.0 - d)))
    rng = np.random.default_rng(7)
    worst = 0.0
    for trial in range(7):
        G = rng.standard_normal(n)
        if trial == 0:
            # one block at the start, the scan's end at the trace's end
            plan = [(n, np.arange(0, 40))]
        elif trial == 1:
            # a block in the middle, one at the trace's end
            h = n // 2
            plan = [(h + 100, np.arange(h, h + 64)), (n, np.array([h + 50, n - 3, n - 1]))]
        elif trial == 2:
            # blocks at the start, then the scan far ahead of them
            plan = [(1, np.array([0])), (3 * n // 4, np.array([0, 1, 5])),
                    (3 * n // 4 + 1, np.array([2, 3 * n // 4]))]
        elif trial == 3:
            # dense blocks (lambda 0: every sample free)
            plan = _plan(rng, n, n // 48 + 10, 64)
        else:
            plan = _plan(rng, n, 60, n // 40)
        worst = max(worst, _sweep(m.g1, m.g2, m.alpha, n, rng, G, plan))
    # (the double recursions the update replaces are ~3e-12 off on the 1 kHz
    # kernel over a decay length: a single spike, to this reference)
    assert worst < 2e-11, worst


def test_ar_roots_to_rounding():
    # the 1 kHz slow kernel: d, r from g1, g2 to rounding (the plain
    # discriminant loses ~1e-11 of itself there)
    from fractions import Fraction

    m = S._model_checked(1000.0, 0.2, 3.0, 0.0)
    d, r = ns._ar_roots(m.g1, m.g2)
    g1 = Fraction(m.g1)
    g2 = Fraction(m.g2)
    for x in (d, r):
        # the residual of x^2 - g1 x - g2 against its slope, exactly
        fx = Fraction(x)
        res = fx * fx - g1 * fx - g2
        slope = 2 * fx - g1
        assert abs(float(res / slope)) < 4e-16


def _lam0_trace_grad(T=54_000):
    from napari_catune.simulation import regime_traces

    m = S._model_checked(1000.0, 0.2, 3.0, 0.0)
    y = regime_traces("lam0-slow-1kHz", 1, T, seed=5)[0] - 2.0
    g1, g2, al = m.g1, m.g2, m.alpha

    def grad(z):
        c = np.r_[0.0, al * lfilter([1.0], [1.0, -g1, -g2], z)]
        return al * lfilter([1.0], [1.0, -g1, -g2], (c - y)[1:][::-1])[::-1]

    return y, (g1, g2, al), grad


def test_direct_gradient_fma_matches_the_direct_gradient():
    # the block polish's gradient (one multiply-add on each chain): the same
    # clipped spikes, fit term and gradient as direct_gradient, both within
    # rounding of the reference, at a sparse point with negative entries
    y, (g1, g2, al), grad = _lam0_trace_grad()
    n = y.size - 1
    rng = np.random.default_rng(2)
    active = rng.random(n) > 0.01
    u = rng.standard_normal(n) * 0.05
    b = np.full(y.size, 0.1)
    u1, nu1, u2, nu2 = u.copy(), np.empty(n), u.copy(), np.empty(n)
    w = np.empty(y.size)
    g_a, f_a = nl.direct_gradient(y, b, g1, g2, al, 0.0, active, u1, nu1, w, np.empty(y.size),
                                  True)
    g_b, f_b = ns._direct_gradient_fma(y, b, g1, g2, al, 0.0, active, u2, nu2, w)
    assert np.array_equal(u1, u2) and np.all(u2 >= 0.0) and not np.any(u2[active])
    ref = grad(u2) + al * lfilter([1.0], [1.0, -g1, -g2], np.full(n, 0.1)[::-1])[::-1]
    for g in (al * nu1, al * nu2):
        assert np.max(np.abs(g - ref)) < 1e-10 * np.max(np.abs(ref))
    assert abs(g_a - g_b) < 1e-10 * g_a and abs(f_a - f_b) < 1e-12 * f_a


@pytest.mark.parametrize("B", [ns._BLOCK_MAX, ns._BLOCK_MAX_LAM0])
def test_block_sweeps_leave_the_exact_gradient(B):
    # lambda 0 at 1 kHz, a sparse guess on 54,000 frames: after the sweeps G
    # is the gradient at their z to rounding (the update truncated at 4 decay
    # lengths left it 4e-2 of max|G| off); blocks of either size (lambda 0
    # takes _BLOCK_MAX_LAM0)
    assert ns._block_size(0.0) == ns._BLOCK_MAX_LAM0 and ns._block_size(0.05) == ns._BLOCK_MAX
    y, (g1, g2, al), grad = _lam0_trace_grad()
    n = y.size - 1
    rng = np.random.default_rng(1)
    z = np.zeros(n)
    z[::32] = np.abs(rng.standard_normal(len(z[::32]))) * 0.05
    G = grad(z)
    dp = np.empty(n + 2)
    rp = np.empty(n + 2)
    sums = np.empty((2, n + 1))
    ns._coarse_tables(g1, g2, n, dp, rp, sums)
    thin = max(1, int(ns._THIN_PEAK * nl.peak_samples(g1, g2)))
    wz = np.zeros(n)
    sweeps, _quiet = ns._coarse_blocks(g1, g2, al, z, G, 1e-13 * np.max(np.abs(G)), thin, dp, rp,
                                       sums, np.zeros(n + 1), wz, ns._NO, np.int64(10), ns._NO,
                                       np.int64(B), float(np.max(np.abs(G))))
    assert sweeps >= 2 and not np.any(wz)
    assert np.max(np.abs(G - grad(z))) < 1e-10 * np.max(np.abs(G))


def test_quiet_sweeps_leave_no_violator():
    # the scan passes runs of samples that are neither candidates nor
    # violators at once (_none_flagged): a quiet end leaves no negative spike
    # and no violator beyond rounding, also isolated ones in long quiet runs
    y, (g1, g2, al), grad = _lam0_trace_grad()
    n = y.size - 1
    dp = np.empty(n + 2)
    rp = np.empty(n + 2)
    sums = np.empty((2, n + 1))
    ns._coarse_tables(g1, g2, n, dp, rp, sums)
    thin = max(1, int(ns._THIN_PEAK * nl.peak_samples(g1, g2)))
    rng = np.random.default_rng(4)
    for step in (32, 300, 5000):
        z = np.zeros(n)
        at = np.arange(int(rng.integers(0, step)), n, step)
        z[at] = np.abs(rng.standard_normal(at.size)) * 0.05
        G = grad(z)
        g_max = np.max(np.abs(G))
        _sweeps, quiet = ns._coarse_blocks(g1, g2, al, z, G, 1e-13 * g_max, thin, dp, rp, sums,
                                           np.zeros(n + 1), np.zeros(n), ns._NO, np.int64(40),
                                           ns._NO, np.int64(ns._BLOCK_MAX_LAM0), g_max)
        assert quiet
        G = grad(z)
        assert not np.any(z < 0.0)
        assert not np.any((z == 0.0) & (G < -1e-9 * g_max))


@pytest.mark.parametrize("kernel", [(1000.0, 0.2, 3.0), (30.0, 0.1, 1.0), (100.0, 0.1, 1.0),
                                    (1000.0, 0.999, 1.0)])
def test_tail_sums_flat_from_n_c_and_the_advance_the_same_numbers(kernel):
    # _coarse_advance takes the tail sums' limits as two numbers from n_c
    # on (_sums_flat), not the table: _coarse_sums writes the limits up to
    # n_c + 64 and at n (the entries between not written; the chunk of 65
    # samples that crosses n_c reads no further), and G comes out bit for
    # bit as from the whole table (every entry from n_c on the limits, as
    # the closed forms round there)
    fs, tr, td = kernel
    m = S._model_checked(fs, tr, td, 0.0)
    d, r = ns._ar_roots(m.g1, m.g2)
    n = 200_000
    dp = np.empty(n + 2)
    rp = np.empty(n + 2)
    sums = np.full((2, n + 1), np.nan)
    ns._coarse_tables(m.g1, m.g2, n, dp, rp, sums)
    n_c = ns._sums_flat(d, r, n, dp)
    if d - r < ns._BLOCK_CLOSE * (1.0 - d):
        # close roots: the compensated sums to n, every entry written
        assert n_c == n + 1
        assert not np.isnan(sums).any()
        full = sums
    else:
        # the 1 kHz 0.2 / 3.0 s kernel's d^N falls below the floor ~138,000
        # samples from the end: most of a long trace
        assert n_c <= n
        # (the first such N: the entry before is not the limit's by rule)
        assert dp[n_c - 1] > ns._BLOCK_TINY or n_c - 1 <= int(ns._BLOCK_END / (1.0 - d))
        # written up to n_c + 64 (the limits from n_c) and at n; left alone
        # between
        assert not np.isnan(sums[:, :n_c + 65]).any()
        assert (sums[:, n_c:n_c + 65] == sums[:, n:n + 1]).all()
        assert np.isnan(sums[:, n_c + 65:n]).all()
        # the whole table, every entry from n_c on the limits (the reference)
        full = sums.copy()
        full[:, n_c + 65:n] = sums[:, n:n + 1]
    tab = ns._coarse_chunk_tables(d, r)
    rng = np.random.default_rng(3)
    G0 = rng.standard_normal(n)
    for lo, hi in ((0, n), (5, 70_000), (n - 150_000, n - 1_000), (n - 3, n)):
        w, v = rng.standard_normal(2)
        G1 = G0.copy()
        G2 = G0.copy()
        drop = ns._coarse_drop(d, m.alpha, n, sums, 0.0)
        out1 = ns._coarse_advance(G1, lo, hi, w, v, m.alpha, d, r, n, sums, tab, n_c, drop)
        out2 = ns._coarse_advance(G2, lo, hi, w, v, m.alpha, d, r, n, full, tab, n + 1, drop)
        assert out1 == out2
        assert np.array_equal(G1, G2)


def test_flag_mask_marks_the_candidates_and_violators_of_a_run():
    # _coarse_blocks' scan jumps between the samples _flag_mask marks: every
    # sample _none_flagged would find, bit k - lo, up to bit 63
    rng = np.random.default_rng(11)
    n = 300
    tol = 0.5
    for trial in range(200):
        z = np.where(rng.random(n) < 0.05, rng.standard_normal(n), 0.0)
        G = rng.standard_normal(n)
        lo = int(rng.integers(0, n - 1))
        hi = min(n, lo + int(rng.integers(1, 65)))
        if trial == 0:
            lo, hi = 0, 64
            z[63] = 1.0
        msk = int(ns._flag_mask(z, G, lo, hi, tol)) & ((1 << 64) - 1)
        want = sum(1 << (k - lo) for k in range(lo, hi) if z[k] != 0.0 or G[k] < -tol)
        assert msk == want
        assert (msk == 0) == ns._none_flagged(z[lo:hi], G[lo:hi], tol)
