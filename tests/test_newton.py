"""The interior point's Newton solve (_numba_solvers._newton_back/_newton_fwd)
and its iteration: the faster paths against the reference ones."""

import numpy as np
import pytest

from napari_catune import _numba_solvers as ns
from napari_catune import solver as S
from napari_catune.simulation import REGIMES, regime_traces


def _problem(regime, T, seed):
    fs, tr, td, lam, *_ = REGIMES[regime]
    m = S._model_checked(fs, tr, td, lam)
    y = regime_traces(regime, 1, T, seed=seed)[0]
    rng = np.random.default_rng(seed)
    n = T - 1
    # barrier weights from a free sample (0) to a settled active one (1e30),
    # in runs as in a late interior-point iterate
    D = 10.0 ** rng.uniform(-8, 30, n)
    D[rng.random(n) < 0.3] = 0.0
    D[2000:2600] = 1e25
    c = rng.normal(size=n)
    return m, y, D, c


@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("regime", ["GCaMP6s-100Hz", "slow-1kHz"])
def test_linear_back_pass_matches_the_refactoring_one(regime, mode):
    """_newton_back without refactoring (the corrector's and Gondzio's solves,
    _newton_back_rhs: the recursion with a one-FMA chain) gives the same
    eliminated right-hand side and first baseline as the pass that factors,
    on a long trace with barrier weights 0 to 1e30 (rounding does not build
    up over 20,000 samples of a 1 kHz kernel)."""
    T = 20_000
    m, y, D, c = _problem(regime, T, seed=5)
    n = T - 1
    coef = np.empty((n + 1, ns._NCOEF))
    g0_ref = np.empty(n)
    gbd = np.empty((1, 4))
    g3 = np.empty(1)
    b_ref = ns._newton_back(y, m.g1, m.g2, mode, 0.0, D, c, coef, g0_ref, gbd, g3, True)
    g0 = np.full(n, np.nan)
    b = ns._newton_back(y, m.g1, m.g2, mode, 0.0, D, c, coef, g0, gbd, g3, False)
    scale = np.abs(g0_ref).max()
    np.testing.assert_allclose(g0, g0_ref, rtol=1e-9, atol=1e-12 * scale)
    if mode == 0:
        assert b == 0.0 and b_ref == 0.0
    else:
        assert b == pytest.approx(b_ref, rel=1e-10, abs=1e-12 * np.abs(y).max())
    # and so the same Newton solution (innovations v), where it matters: the
    # free samples' v (the settled ones are ~1e-25 of it, checked below)
    v_ref = np.empty(n)
    v = np.empty(n)
    ns._newton_fwd(mode, coef, g0_ref, gbd, g3, b_ref, v_ref, v_ref, v_ref, v_ref, v_ref, v_ref,
                   v_ref, v_ref, 0)
    ns._newton_fwd(mode, coef, g0, gbd, g3, b, v, v, v, v, v, v, v, v, 0)
    free = D == 0.0
    np.testing.assert_allclose(v[free], v_ref[free], rtol=1e-8,
                               atol=1e-10 * np.abs(v_ref[free]).max())
    settled = D >= 1e25
    assert np.abs(v[settled]).max() <= 1e-20 * np.abs(v_ref[free]).max()


@pytest.mark.parametrize("mode", [0, 1])
def test_linear_back_pass_with_a_new_right_hand_side_solves_the_system(mode):
    """The linear pass alone, with a c and y other than the factored ones
    (the Gondzio corrector passes y = 0), solves the same system: checked
    against dense linear algebra on a short trace."""
    rng = np.random.default_rng(11 + mode)
    T = 60
    n = T - 1
    g1, g2 = 1.9, -0.905
    y = rng.normal(size=T) + 2.0
    D = 10.0 ** rng.uniform(-3, 5, n)
    D[::5] = 0.0
    c = rng.normal(size=n)
    coef = np.empty((n + 1, ns._NCOEF))
    g0 = np.empty(n)
    gbd = np.empty((1, 4))
    g3 = np.empty(1)
    ns._newton_back(y, g1, g2, mode, 0.0, D, c, coef, g0, gbd, g3, True)
    M = np.eye(n) - g1 * np.eye(n, k=-1) - g2 * np.eye(n, k=-2)
    nb = 1 if mode == 1 else 0
    A = np.zeros((T, n + nb))
    A[1:, :n] = np.eye(n)
    if mode == 1:
        A[:, n] = 1.0
    H = A.T @ A
    H[:n, :n] += M.T @ (D[:, None] * M)
    for y2 in (np.zeros(T), rng.normal(size=T)):
        c2 = rng.normal(size=n) * 10.0
        b = ns._newton_back(y2, g1, g2, mode, 0.0, D, c2, coef, g0, gbd, g3, False)
        v = np.empty(n)
        ns._newton_fwd(mode, coef, g0, gbd, g3, b, v, v, v, v, v, v, v, v, 0)
        rhs = A.T @ y2
        rhs[:n] -= M.T @ c2
        z = np.linalg.solve(H, rhs)
        ref = M @ z[:n]
        np.testing.assert_allclose(v, ref, rtol=1e-7, atol=1e-10 * np.abs(ref).max())
        if mode == 1:
            assert b == pytest.approx(z[n], rel=1e-8, abs=1e-10)


def test_iteration_forms_the_next_weights():
    """After an iteration, winv = 1 / w and D = nu / w of the new point (formed
    in their own vectorised passes) and c = beta - nu."""
    fs, tr, td, lam, *_ = REGIMES["calab-gcamp6s-30Hz"]
    m = S._model_checked(fs, tr, td, lam)
    y = regime_traces("calab-gcamp6s-30Hz", 1, 3000, seed=2)[0]
    n = y.size - 1
    beta = m.lamG / m.alpha
    w = np.full(n, y.std())
    nu = np.full(n, max(beta, y.std()))
    winv, D, c, g0, v, dw, dnu, dw2, dnu2 = (np.empty(n) for _ in range(9))
    coef = np.empty((n + 1, ns._NCOEF))
    guess = np.ones(n, bool)
    gap = -1.0
    for _ in range(5):
        out = ns._ipm_iteration(y, m.g1, m.g2, beta, 1, 0.0, w, nu, winv, gap, D, c, coef, g0,
                                np.empty((1, 4)), np.empty(1), v, dw, dnu, dw2, dnu2,
                                np.zeros(n + 1), guess, 1, 0.0)
        assert out[3]
        gap = out[4]
        np.testing.assert_allclose(winv, 1.0 / w, rtol=1e-15)
        np.testing.assert_allclose(D, nu / w, rtol=1e-14)
        np.testing.assert_allclose(c, beta - nu, rtol=1e-15, atol=1e-15 * beta)
    assert gap < 1e-2 * np.mean(y.std() * max(beta, y.std()))
