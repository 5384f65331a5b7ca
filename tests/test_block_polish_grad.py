"""The block polish's gradient in one pass pair (_polish_gradient): the
same active set, clipped spikes, gradient (alpha times
_direct_gradient_fma's nu), max|gradient| and fit term, bit for bit."""

import numpy as np

from napari_catune import _numba_solvers as ns
from napari_catune import solver as S


def test_polish_gradient_is_the_direct_gradient_scaled_bit_for_bit():
    rng = np.random.default_rng(11)
    for fs, tr, td, T in [(1000.0, 0.2, 3.0, 20_000), (30.0, 0.1, 1.0, 3_000),
                          (100.0, 0.05, 0.8, 7_001)]:
        m = S._model_checked(fs, tr, td, 0.3)
        n = T - 1
        y = rng.standard_normal(T) * 2.0 + 5.0
        bvec = np.full(T, 1.7) + 0.01 * rng.standard_normal(T)
        s = np.where(rng.random(T) < 0.05, rng.exponential(1.0, T), 0.0)
        # zeros of both signs and negatives, as a caller may hand in
        s[rng.random(T) < 0.01] = -0.0
        s[rng.random(T) < 0.01] = -0.5
        for lamG in (0.0, m.lamG):
            # the reference: _coarse_polish_blocks' former steps
            act1 = np.empty(n, np.bool_)
            u1 = np.empty(n)
            nu1 = np.empty(n)
            w1 = np.empty(T)
            for k in range(n):
                act1[k] = not s[k] > 0.0
                u1[k] = s[k]
            g1m, f1 = ns._direct_gradient_fma(y, bvec, m.g1, m.g2, m.alpha, lamG, act1, u1, nu1,
                                              w1)
            nu1 = m.alpha * nu1
            act2 = np.zeros(n, np.bool_)
            u2 = np.full(n, np.nan)
            nu2 = np.full(n, np.nan)
            w2 = np.empty(T)
            g2m, f2 = ns._polish_gradient(y, bvec, m.g1, m.g2, m.alpha, lamG, act2, s, u2, nu2,
                                          w2)
            assert g1m == g2m and f1 == f2
            assert np.array_equal(act1, act2)
            assert np.array_equal(u1.view(np.int64), u2.view(np.int64))
            assert np.array_equal(nu1.view(np.int64), nu2.view(np.int64))
