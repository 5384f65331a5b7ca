"""_coarse_block_exact's scratch: indexed from the block's first input, so
every block writes the same stretch at the start of ``work`` (not a new
stretch of an n-long array each time), with the same numbers as with the
scratch indexed by sample."""

import numpy as np

from napari_catune import _numba_solvers as ns
from napari_catune import solver as S
from test_block_lazy import _lazy_tables


def _setup(n):
    m = S._model_checked(1000.0, 0.2, 3.0, 0.0)
    g1, g2, alpha = m.g1, m.g2, m.alpha
    dp, rp, sums, d, r, tab = _lazy_tables(g1, g2, n)
    return g1, g2, alpha, d, r, dp, rp, sums, tab


def test_block_exact_writes_only_the_span_at_the_scratch_start():
    n = 40_000
    g1, g2, alpha, d, r, dp, rp, sums, tab = _setup(n)
    n_c = ns._sums_flat(d, r, n, dp)
    rng = np.random.default_rng(3)
    # short spans (the one-chain recursion) and long ones (four chains)
    for a, span, mb in [(30_000, 100, 3), (5_000, 4_000, 40), (12_345, 700, 9)]:
        idx = np.sort(rng.choice(np.arange(a + 1, a + span - 64), mb - 1, replace=False))
        idx = np.concatenate([[a], idx]).astype(np.int64)
        P = a + span
        dz = rng.standard_normal(mb)
        G = rng.standard_normal(n)
        X = np.zeros(n)
        work = np.full(n + 1, np.nan)
        G1 = G.copy()
        wv = ns._coarse_block_exact(G1, idx, dz, mb, g1, g2, alpha, d, r, n, P, rp, sums, work,
                                    X, tab, n_c)
        # nothing past the span's length is touched
        assert np.isnan(work[P - a:]).all()
        assert not np.isnan(work[:P - a]).any()
        # the same numbers wherever the scratch starts (a scratch that is a
        # view at an offset: the indexing is from the block, not the sample)
        G2 = G.copy()
        X2 = np.zeros(n)
        big = np.full(n + 1 + 777, np.nan)
        wv2 = ns._coarse_block_exact(G2, idx, dz, mb, g1, g2, alpha, d, r, n, P, rp, sums,
                                     big[777:], X2, tab, n_c)
        assert wv == wv2
        assert np.array_equal(G1, G2)
        assert np.array_equal(X, X2)
        # G changed on [a, P) only, X at a - 1, a - 2 only
        assert np.array_equal(G1[:a], G[:a]) and np.array_equal(G1[P:], G[P:])
        assert np.flatnonzero(X).tolist() == [a - 2, a - 1]
