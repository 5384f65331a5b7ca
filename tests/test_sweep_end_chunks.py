"""The block settle's sweep end (_numba_solvers._coarse_sweep_end): its
backward pass over the deferred shares runs 64 samples at a time and tests
the flush (both states below _BLOCK_FLUSH) after each such block, at
j = 0 mod 64 as the per-sample test did; the same samples flushed and the
same values to rounding as a plain reference."""

import numpy as np
import pytest

from napari_catune import _numba_solvers as ns
from napari_catune import solver as S


def _reference(G, X, x_hi, g1, g2, alpha):
    """The pass as a per-sample loop with the flush test inside (Python)."""
    G = G.copy()
    X = X.copy()
    q1 = q2 = 0.0
    for j in range(x_hi, -1, -1):
        q = X[j] + g1 * q1 + g2 * q2
        X[j] = 0.0
        G[j] += alpha * q
        q2, q1 = q1, q
        if j % 64 == 0 and abs(q1) < ns._BLOCK_FLUSH and abs(q2) < ns._BLOCK_FLUSH:
            q1 = q2 = 0.0
    return G, X


def _run(G, X, x_hi, m):
    n = G.shape[0]
    d, r = ns._ar_roots(m.g1, m.g2)
    sums = np.zeros((2, n + 1))
    G = G.copy()
    X = X.copy()
    # (no pending tail: tw = tv = 0, the pass alone)
    xs = np.flatnonzero(X)
    ns._coarse_sweep_end(G, n, 0.0, 0.0, x_hi, m.g1, m.g2, m.alpha, d, r, n, sums, X, xs,
                         xs.shape[0], ns._coarse_chunk_tables(d, r), n + 1,
                         ns._coarse_drop(d, m.alpha, n, sums, 0.0), np.zeros((n >> 6) + 1, np.bool_))
    return G, X


@pytest.mark.parametrize("x_hi", [-1, 0, 1, 62, 63, 64, 65, 127, 128, 129, 1000, 1999])
def test_sweep_end_pass_matches_the_per_sample_loop(x_hi):
    m = S._model_checked(1000.0, 0.2, 3.0, 0.0)
    n = 2000
    rng = np.random.default_rng(x_hi + 5)
    G = rng.standard_normal(n)
    X = np.zeros(n)
    k = max(x_hi + 1, 1)
    pos = rng.choice(k, min(k, 7), replace=False)
    X[pos] = rng.standard_normal(pos.shape[0])
    X[x_hi + 1:] = 0.0
    got_G, got_X = _run(G, X, x_hi, m)
    ref_G, ref_X = _reference(G, X, x_hi, m.g1, m.g2, m.alpha)
    assert not np.any(got_X)
    assert np.array_equal(got_X, ref_X)
    scale = np.max(np.abs(ref_G - G)) + 1e-300
    assert np.max(np.abs(got_G - ref_G)) <= 1e-12 * scale
    # (untouched above x_hi)
    assert np.array_equal(got_G[x_hi + 1:], G[x_hi + 1:])


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("start", [63, 64, 100, 191, 640, 1999])
def test_sweep_end_flushes_at_the_same_samples(start):
    # a tiny share that decays below the flush within a few hundred samples
    # on a fast kernel: the samples the reference leaves alone (flushed)
    # are left alone, the ones it changes are changed
    m = S._model_checked(1000.0, 0.001, 0.004, 0.0)
    n = 2000
    X = np.zeros(n)
    X[start] = 1e-280
    got_G, got_X = _run(np.zeros(n), X, start, m)
    ref_G, ref_X = _reference(np.zeros(n), X, start, m.g1, m.g2, m.alpha)
    assert not np.any(got_X)
    touched_ref = ref_G != 0.0
    touched = got_G != 0.0
    assert touched_ref.sum() > 0
    if start >= 191:
        # (the flush stopped the pass before sample 0)
        assert touched_ref.sum() < start + 1
    assert np.array_equal(touched, touched_ref)
    nz = touched_ref
    assert np.max(np.abs(got_G[nz] - ref_G[nz]) / np.abs(ref_G[nz])) <= 1e-12
