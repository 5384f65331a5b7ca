"""_direct_gradient_fma / _direct_gradient_raw set the spikes to 0 on the
active set (fma: also where not positive) in the forward pass itself, not in
a pass of their own before it: the same spikes, gradient, max|gradient| and
fit term as the former two passes, bit for bit."""

import numpy as np
from numba import njit

from napari_catune import _numba_solvers as ns
from napari_catune import solver as S


@njit(cache=False, fastmath={"contract"})
def _former(y, bvec, g1, g2, alpha, lamG, active, u, nu, work2, scale, clip):
    # the former steps: the clip pass, then the recursions
    # (_direct_gradient_core's former loop, _gradient_back)
    n = u.shape[0]
    for k in range(n):
        if clip:
            v = u[k] if not active[k] and u[k] > 0.0 else 0.0
        else:
            v = u[k] if not active[k] else 0.0
        u[k] = v
    rt = y[0] - bvec[0]
    f_fit = 0.5 * rt * rt
    q1 = 0.0
    q2 = 0.0
    for k in range(n):
        q = g1 * q1 + (u[k] + g2 * q2)
        rt = y[k + 1] - alpha * q - bvec[k + 1]
        work2[k + 1] = rt
        f_fit += 0.5 * rt * rt
        q2 = q1
        q1 = q
    p1 = 0.0
    p2 = 0.0
    g_max = 0.0
    for j in range(n - 1, -1, -1):
        p = g1 * p1 + (work2[j + 1] + g2 * p2)
        g = lamG - alpha * p
        nu[j] = scale * (g / alpha)
        g_max = max(g_max, abs(g))
        p2 = p1
        p1 = p
    return g_max, f_fit


def test_direct_gradient_clip_in_the_forward_pass_bit_for_bit():
    rng = np.random.default_rng(34)
    for fs, tr, td, T in [(1000.0, 0.2, 3.0, 20_000), (30.0, 0.1, 1.0, 3_001),
                          (100.0, 0.05, 0.8, 7)]:
        m = S._model_checked(fs, tr, td, 0.3)
        n = T - 1
        y = rng.standard_normal(T) * 2.0 + 5.0
        bvec = np.full(T, 1.7) + 0.01 * rng.standard_normal(T)
        u0 = np.where(rng.random(n) < 0.05, rng.exponential(1.0, n), 0.0)
        # zeros of both signs, negatives, a NaN-free mix on both sides of
        # the active set
        u0[rng.random(n) < 0.01] = -0.0
        u0[rng.random(n) < 0.02] = -0.5
        active = rng.random(n) < 0.5
        for lamG in (0.0, m.lamG):
            for scale in (1.0, m.alpha):
                for clip, fn in ((True, ns._direct_gradient_fma),
                                 (False, ns._direct_gradient_raw)):
                    u1, nu1, w1 = u0.copy(), np.empty(n), np.empty(T)
                    g1m, f1 = _former(y, bvec, m.g1, m.g2, m.alpha, lamG, active, u1, nu1, w1,
                                      scale, clip)
                    u2, nu2, w2 = u0.copy(), np.full(n, np.nan), np.empty(T)
                    g2m, f2 = fn(y, bvec, m.g1, m.g2, m.alpha, lamG, active, u2, nu2, w2, scale)
                    assert g1m == g2m and f1 == f2
                    assert np.array_equal(u1.view(np.int64), u2.view(np.int64))
                    assert np.array_equal(nu1.view(np.int64), nu2.view(np.int64))
                    assert np.array_equal(w1[1:].view(np.int64), w2[1:].view(np.int64))
