"""The block settle's dropped tails and skipped quiet sweep
(_numba_solvers._coarse_drop, _coarse_quiet_next): a dropped tail adds less
than _BLOCK_DROP max|G| to any sample; a sweep left out as quiet is one
that would have changed nothing."""

import numpy as np
import pytest
from scipy.signal import lfilter

from napari_catune import _numba_local as nl
from napari_catune import _numba_solvers as ns
from napari_catune import solver as S
from napari_catune.simulation import regime_traces


def _tables(g1, g2, n):
    dp = np.empty(n + 2)
    rp = np.empty(n + 2)
    # (NaN where _coarse_sums leaves an entry unwritten: a read shows)
    sums = np.full((2, n + 1), np.nan)
    ns._coarse_tables(g1, g2, n, dp, rp, sums)
    d, r = ns._ar_roots(g1, g2)
    return d, r, dp, rp, sums


@pytest.mark.parametrize("kernel", [(1000.0, 0.2, 3.0), (100.0, 0.1, 1.0), (30.0, 0.1, 1.0)])
def test_a_dropped_tail_adds_below_its_bound(kernel):
    # tails just under the thresholds, carried to the trace's end with the
    # absolute flush alone: what dropping them leaves out of G
    m = S._model_checked(*kernel, 0.0)
    n = 200_000
    d, r, dp, rp, sums = _tables(m.g1, m.g2, n)
    tab = ns._coarse_chunk_tables(d, r)
    # (the tail sums are written up to n_c + 64 and at n: _coarse_sums)
    n_c = np.int64(ns._sums_flat(d, r, n, dp))
    g_max = 3.7
    drop = ns._coarse_drop(d, m.alpha, n, sums, g_max)
    keep = ns._coarse_drop(d, m.alpha, n, sums, 0.0)
    assert drop[0] > keep[0] and drop[2] > keep[2]
    bound = ns._BLOCK_DROP * g_max
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.uniform(0.0, 1.0)
        sw, sv = rng.choice([-1.0, 1.0], 2)
        # forward tail: |w| + drop[1] |v| just below drop[0]
        w = sw * a * drop[0] * 0.999
        v = sv * (1.0 - a) * drop[0] * 0.999 / drop[1]
        G = np.zeros(n)
        lo = int(rng.integers(0, n // 2)) & ~63
        ns._coarse_advance(G, lo, n, w, v, m.alpha, d, r, n, sums, tab, n_c, keep)
        assert np.max(np.abs(G)) <= bound
        # ... and it is dropped at once
        G2 = np.zeros(n)
        assert ns._coarse_advance(G2, lo, n, w, v, m.alpha, d, r, n, sums, tab, n_c,
                                  drop) == (0.0, 0.0)
        # adjoint state (q1, q2) at the drop threshold, continued to 0
        q1 = sw * a * drop[2] * 0.999
        vq = sv * (1.0 - a) * drop[2] * 0.999 / drop[3]
        q2 = (vq + d * q1 - m.g1 * q1) / m.g2
        p1, p2 = q1, q2
        worst = 0.0
        for _j in range(min(n, int(60.0 / (1.0 - d)))):
            p = m.g1 * p1 + m.g2 * p2
            worst = max(worst, abs(m.alpha * p))
            p2, p1 = p1, p
        assert worst <= bound * (1.0 + 1e-9)


def _lam0(T, seed):
    m = S._model_checked(1000.0, 0.2, 3.0, 0.0)
    y = regime_traces("lam0-slow-1kHz", 1, T, seed=seed)[0] - 2.0
    g1, g2, al = m.g1, m.g2, m.alpha

    def grad(z):
        c = np.r_[0.0, al * lfilter([1.0], [1.0, -g1, -g2], z)]
        return al * lfilter([1.0], [1.0, -g1, -g2], (c - y)[1:][::-1])[::-1]

    return (g1, g2, al), grad


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_skipped_sweep_is_quiet(seed):
    # where the sweeps stop on _coarse_quiet_next, one more sweep changes
    # nothing (z, G bit for bit) and ends quiet; sparse starts (few blocks
    # change in the late sweeps) and dense ones
    T = 60_000
    (g1, g2, al), grad = _lam0(T, seed)
    n = T - 1
    d, r, dp, rp, sums = _tables(g1, g2, n)
    thin = max(1, int(ns._THIN_PEAK * nl.peak_samples(g1, g2)))
    rng = np.random.default_rng(seed)
    stopped = 0
    for step in (40, 400, 4000):
        z = np.zeros(n)
        at = np.arange(int(rng.integers(0, step)), n, step)
        z[at] = np.abs(rng.standard_normal(at.size)) * 0.05
        G = grad(z)
        g_max = float(np.max(np.abs(G)))
        tol = 1e-13 * g_max
        wz = np.zeros(n)
        z1, G1 = z.copy(), G.copy()
        sweeps, quiet = ns._coarse_blocks(g1, g2, al, z1, G1, tol, thin, dp, rp, sums,
                                          np.zeros(n + 1), wz, ns._NO, np.int64(60), ns._NO,
                                          np.int64(ns._BLOCK_MAX_LAM0), g_max)
        assert not np.any(wz)
        if not quiet:
            continue
        # (no negative spike, no violator left)
        assert not np.any(z1 < 0.0)
        assert not np.any((z1 == 0.0) & (G1 < -tol))
        z2, G2 = z1.copy(), G1.copy()
        s2, q2 = ns._coarse_blocks(g1, g2, al, z2, G2, tol, thin, dp, rp, sums,
                                   np.zeros(n + 1), wz, ns._NO, np.int64(1), ns._NO,
                                   np.int64(ns._BLOCK_MAX_LAM0), g_max)
        assert s2 == 1 and q2
        assert np.array_equal(z1, z2) and np.array_equal(G1, G2)
        # G exact to rounding after the dropped tails
        assert np.max(np.abs(G1 - grad(z1))) <= 1e-9 * g_max
        stopped += sweeps >= 2
    assert stopped >= 1


def test_quiet_next_reads_only_flagged_chunks():
    n = 1000
    z = np.zeros(n)
    G = np.zeros(n)
    dirty = np.zeros((n >> 6) + 1, np.bool_)
    G[130] = -1.0
    assert ns._coarse_quiet_next(z, G, 0.5, dirty)
    dirty[130 >> 6] = True
    assert not ns._coarse_quiet_next(z, G, 0.5, dirty)
    assert ns._coarse_quiet_next(z, G, 2.0, dirty)
    # a free sample is no violator; a negative one is
    z[130] = 0.1
    assert ns._coarse_quiet_next(z, G, 0.5, dirty)
    z[130] = -0.1
    assert not ns._coarse_quiet_next(z, G, 0.5, dirty)
    # the last, short chunk
    z[:] = 0.0
    G[:] = 0.0
    G[n - 1] = -1.0
    dirty[:] = False
    dirty[(n - 1) >> 6] = True
    assert not ns._coarse_quiet_next(z, G, 0.5, dirty)
