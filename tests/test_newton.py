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
    M, A, H = _dense_system(T, g1, g2, mode, D)
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
    """After an iteration, winv = 1 / w of the new point (formed in the update
    pass; D = nu / w and c = beta - nu are formed by the next factoring)."""
    fs, tr, td, lam, *_ = REGIMES["calab-gcamp6s-30Hz"]
    m = S._model_checked(fs, tr, td, lam)
    y = regime_traces("calab-gcamp6s-30Hz", 1, 3000, seed=2)[0]
    n = y.size - 1
    beta = m.lamG / m.alpha
    w = np.full(n, y.std())
    nu = np.full(n, max(beta, y.std()))
    winv, c, g0, v, dw, dnu, dw2, dnu2 = (np.empty(n) for _ in range(8))
    coef = np.empty((n + 1, ns._NCOEF))
    guess = np.ones(n, bool)
    gap = -1.0
    for _ in range(5):
        out = ns._ipm_iteration(y, m.g1, m.g2, beta, 1, 0.0, w, nu, winv, gap, c, coef, g0,
                                np.empty((1, 4)), np.empty(1), v, dw, dnu, dw2, dnu2,
                                np.zeros(n + 1), guess, 1, 0.0)
        assert out[3]
        gap = out[4]
        np.testing.assert_allclose(winv, 1.0 / w, rtol=1e-15)
    assert gap < 1e-2 * np.mean(y.std() * max(beta, y.std()))


@pytest.mark.parametrize("mode", [1, 2])
def test_factoring_from_nu_is_the_factoring_of_its_weights(mode):
    """_newton_back_ipm (D = nu / w, c = beta - nu formed in the pass) gives
    bit for bit the factors and rhs of _newton_back given those arrays."""
    fs, tr, td, lam, *_ = REGIMES["GCaMP6s-100Hz"]
    m = S._model_checked(fs, tr, td, lam)
    y = regime_traces("GCaMP6s-100Hz", 1, 2000, seed=3)[0]
    n = y.size - 1
    beta = m.lamG / m.alpha
    rng = np.random.default_rng(0)
    winv = 1.0 / (y.std() * np.exp(rng.normal(0, 4, n)))
    nu = beta * np.exp(rng.normal(0, 4, n))
    mu = 0.3 if mode == 2 else 0.0
    m_d = n if mode == 2 else 1
    outs = []
    for ipm in (False, True):
        coef = np.full((n + 1, ns._NCOEF), np.nan)
        g0 = np.full(n, np.nan)
        gbd = np.full((m_d, 4), np.nan)
        g3 = np.full(m_d, np.nan)
        if ipm:
            b = ns._newton_back_ipm(y, m.g1, m.g2, mode, mu, beta, nu, winv, coef, g0, gbd, g3)
        else:
            b = ns._newton_back(y, m.g1, m.g2, mode, mu, nu * winv, beta - nu, coef, g0, gbd,
                                g3, True)
        outs.append((b, coef[:n], g0, gbd, g3))
    for a, b in zip(outs[0], outs[1]):
        np.testing.assert_array_equal(a, b)


def _dense_system(T, g1, g2, mode, D):
    """M (the AR(2) innovations), A (calcium and, in mode 1, the scalar
    baseline to the trace) and the Newton matrix H = A'A + M' diag(D) M."""
    n = T - 1
    M = np.eye(n) - g1 * np.eye(n, k=-1) - g2 * np.eye(n, k=-2)
    nb = 1 if mode == 1 else 0
    A = np.zeros((T, n + nb))
    A[1:, :n] = np.eye(n)
    if mode == 1:
        A[:, n] = 1.0
    H = A.T @ A
    H[:n, :n] += M.T @ (D[:, None] * M)
    return M, A, H


def _dense_newton(y, g1, g2, mode, D, c):
    """Dense reference of the Newton solve (modes 0, 1): the innovations v =
    M x of the minimiser over (x, b) of 1/2 ||y - A (x, b)||^2 + sum 1/2 D v^2 + c v."""
    T = y.size
    n = T - 1
    M, A, H = _dense_system(T, g1, g2, mode, D)
    rhs = A.T @ y
    rhs[:n] -= M.T @ c
    z = np.linalg.solve(H, rhs)
    return M @ z[:n]


def _point(T, seed):
    """A small problem and an interior point (w, nu > 0) spread over 1e-2..1e1
    around a gap of ~1, as in a middle interior-point iterate."""
    fs, tr, td, lam, *_ = REGIMES["GCaMP6s-100Hz"]
    m = S._model_checked(fs, tr, td, lam)
    y = regime_traces("GCaMP6s-100Hz", 1, T, seed=seed)[0]
    rng = np.random.default_rng(seed)
    n = T - 1
    w = 10.0 ** rng.uniform(-2, 1, n)
    nu = 10.0 ** rng.uniform(-2, 1, n)
    return m, y, w, nu, rng


def _gondzio_ref(w, dw, nu, dnu, apt, adt, lo, hi):
    p = (w + apt * dw) * (nu + adt * dnu)
    return np.where(p < lo, lo - p, np.where(p > hi, np.maximum(hi - p, -hi), 0.0))


@pytest.mark.parametrize("mode", [0, 1])
def test_fused_back_passes_solve_the_newton_system_of_their_rhs(mode):
    """_newton_back_corr and _newton_back_gondzio (c formed in the pass) then
    the forward pass give the dense solution of the Newton system with that
    c: the corrector's c = beta - nu - (sgap - p) / w, Gondzio's c = -r / w
    with y = 0 and r the products pushed back into [lo, hi] (each of its
    three cases present)."""
    T = 60
    m, y, w, nu, rng = _point(T, seed=3 + mode)
    n = T - 1
    beta = m.lamG / m.alpha
    winv = 1.0 / w
    D = nu * winv
    coef = np.empty((n + 1, ns._NCOEF))
    g0 = np.empty(n)
    gbd, g3 = np.empty((1, 4)), np.empty(1)
    v = np.empty(n)
    ns._newton_back_ipm(y, m.g1, m.g2, mode, 0.0, beta, nu, winv, coef, g0, gbd, g3)

    def forward(b):
        ns._newton_fwd(mode, coef, g0, gbd, g3, b, v, v, v, v, v, v, v, v, 0)
        return v.copy()

    # corrector
    p = rng.normal(size=n) * 0.3
    sgap = 0.2
    b = ns._newton_back_corr(y, m.g1, m.g2, mode, beta, sgap, nu, winv, p, coef, g0)
    ref = _dense_newton(y, m.g1, m.g2, mode, D, beta - nu - (sgap - p) / w)
    np.testing.assert_allclose(forward(b), ref, rtol=1e-8, atol=1e-11 * np.abs(ref).max())
    # Gondzio
    dw = rng.normal(size=n) * w
    dnu = rng.normal(size=n) * nu
    apt, adt, lo, hi = 0.9, 0.8, 0.02, 2.0
    r_ref = _gondzio_ref(w, dw, nu, dnu, apt, adt, lo, hi)
    assert (r_ref > 0).any() and (r_ref < 0).any() and (r_ref == 0).any()
    r = np.full(n, np.nan)
    b = ns._newton_back_gondzio(m.g1, m.g2, mode, w, nu, winv, dw, dnu, r, apt, adt, lo, hi,
                                coef, g0)
    np.testing.assert_allclose(r, r_ref, rtol=1e-12, atol=1e-14)
    ref = _dense_newton(np.zeros(T), m.g1, m.g2, mode, D, -r_ref / w)
    np.testing.assert_allclose(forward(b), ref, rtol=1e-8, atol=1e-11 * np.abs(ref).max())


@pytest.mark.parametrize("mode", [0, 1])
def test_fused_forward_passes_match_their_definitions(mode):
    """_newton_fwd_pred (keeps p = dw dnu only), _newton_fwd_corr (its rhs
    sgap - p - w nu formed in the pass) and _newton_fwd_gondzio against the
    formulas applied to the stored Newton solution v, ratio tests and sums
    included."""
    T = 500
    m, y, w, nu, rng = _point(T, seed=11 + mode)
    n = T - 1
    beta = m.lamG / m.alpha
    winv = 1.0 / w
    coef = np.empty((n + 1, ns._NCOEF))
    g0 = np.empty(n)
    gbd, g3 = np.empty((1, 4)), np.empty(1)
    b0 = ns._newton_back_ipm(y, m.g1, m.g2, mode, 0.0, beta, nu, winv, coef, g0, gbd, g3)
    v = np.empty(n)
    ns._newton_fwd(mode, coef, g0, gbd, g3, b0, v, v, v, v, v, v, v, v, 0)
    scale = np.abs(v).max()
    # predictor
    p = np.full(n, np.nan)
    rp, rd, s_dn, s_dd = ns._newton_fwd_pred(mode, coef, g0, gbd, g3, b0, w, winv, nu, p)
    dw = v - w
    dnu = -nu * (1.0 + dw / w)
    np.testing.assert_allclose(p, dw * dnu, rtol=1e-9, atol=1e-12 * np.abs(dw * dnu).max())
    assert rp == pytest.approx(max(1.0, (-dw / w).max()), rel=1e-9)
    assert rd == pytest.approx(max(1.0, (-dnu / nu).max()), rel=1e-9)
    assert s_dn == pytest.approx((dw * nu).sum(), rel=1e-9, abs=1e-12)
    assert s_dd == pytest.approx((dw * dnu).sum(), rel=1e-9, abs=1e-12)
    # corrector (same v: the pass does not depend on how g0 was formed)
    sgap = 0.3
    p_in = rng.normal(size=n) * 0.1
    pd = p_in.copy()
    dw_out = np.full(n, np.nan)
    rp, rd, _s, _t = ns._newton_fwd_corr(mode, coef, g0, gbd, g3, b0, w, winv, nu, pd, dw_out,
                                         sgap)
    dnu_ref = (sgap - p_in - w * nu - nu * dw) / w
    np.testing.assert_allclose(dw_out, dw, rtol=1e-12, atol=1e-12 * scale)
    np.testing.assert_allclose(pd, dnu_ref, rtol=1e-9, atol=1e-12 * np.abs(dnu_ref).max())
    assert rp == pytest.approx(max(1.0, (-dw / w).max()), rel=1e-9)
    assert rd == pytest.approx(max(1.0, (-dnu_ref / nu).max()), rel=1e-9)
    # Gondzio: from the step (a1, a2) with rhs r: a1 + v, a2 + (r - nu v) / w
    a1 = rng.normal(size=n)
    a2 = rng.normal(size=n)
    r = rng.normal(size=n) * 1e-2
    o1 = np.empty(n)
    o2 = r.copy()
    rp, rd, _s, _t = ns._newton_fwd_gondzio(mode, coef, g0, gbd, g3, b0, winv, nu, a1, a2, o1,
                                            o2)
    ref = a2 + (r - nu * v) / w
    np.testing.assert_allclose(o1, a1 + v, rtol=1e-12, atol=1e-12 * scale)
    np.testing.assert_allclose(o2, ref, rtol=1e-9, atol=1e-12 * np.abs(ref).max())
    assert rp == pytest.approx(max(1.0, (-(a1 + v) / w).max()), rel=1e-9)
    assert rd == pytest.approx(max(1.0, (-ref / nu).max()), rel=1e-9)


def _dense_iteration(y, g1, g2, beta, mode, w, nu):
    """One Mehrotra predictor-corrector iteration with one Gondzio corrector
    (_ipm_iteration's rules) with every Newton system solved densely."""
    n = w.size
    gap = np.mean(w * nu)
    D = nu / w

    def ratio(x, dx):
        return max(1.0, (-dx / x).max())

    v = _dense_newton(y, g1, g2, mode, D, beta - nu)
    dw = v - w
    dnu = -nu * (1.0 + dw / w)
    ap, ad = 1.0 / ratio(w, dw), 1.0 / ratio(nu, dnu)
    s_dn, s_dd = (dw * nu).sum(), (dw * dnu).sum()
    gap_aff = gap + ((ap - ad) * s_dn + ap * ad * s_dd) / n - ad * gap
    sgap = min(1.0, max(0.0, (max(gap_aff, 0.0) / gap) ** 3)) * gap
    r = sgap - dw * dnu
    v = _dense_newton(y, g1, g2, mode, D, beta - nu - r / w)
    dw = v - w
    dnu = (r - w * nu - nu * dw) / w
    ap, ad = 1.0 / ratio(w, dw), 1.0 / ratio(nu, dnu)
    apt, adt = min(1.0, 1.5 * ap + 0.2), min(1.0, 1.5 * ad + 0.2)
    rg = _gondzio_ref(w, dw, nu, dnu, apt, adt, 0.1 * sgap, 10.0 * sgap)
    v = _dense_newton(np.zeros(y.size), g1, g2, mode, D, -rg / w)
    dw2 = dw + v
    dnu2 = dnu + (rg - nu * v) / w
    ap2, ad2 = 1.0 / ratio(w, dw2), 1.0 / ratio(nu, dnu2)
    if min(ap2, ad2) >= 1.01 * min(ap, ad):
        ap, ad, dw, dnu = ap2, ad2, dw2, dnu2
    ap, ad = min(1.0, 0.99 * ap), min(1.0, 0.99 * ad)
    return w + ap * dw, nu + ad * dnu


@pytest.mark.parametrize("mode", [0, 1])
def test_iteration_without_drift_matches_dense_algebra(mode):
    """_ipm_iteration's fused path (modes 0, 1: every right-hand side formed
    inside the passes) takes the same steps as the same rules with dense
    solves, iteration after iteration from the default start."""
    T = 120
    fs, tr, td, lam, *_ = REGIMES["calab-gcamp6s-30Hz"]
    m = S._model_checked(fs, tr, td, lam)
    y = regime_traces("calab-gcamp6s-30Hz", 1, T, seed=6)[0]
    n = T - 1
    beta = m.lamG / m.alpha
    w = np.full(n, y.std())
    nu = np.full(n, max(beta, y.std()))
    winv, c, g0, v, dw, dnu, dw2, dnu2 = (np.full(n, np.nan) for _ in range(8))
    coef = np.empty((n + 1, ns._NCOEF))
    guess = np.ones(n, bool)
    gap = -1.0
    for _ in range(6):
        w_ref, nu_ref = _dense_iteration(y, m.g1, m.g2, beta, mode, w.copy(), nu.copy())
        out = ns._ipm_iteration(y, m.g1, m.g2, beta, mode, 0.0, w, nu, winv, gap, c, coef,
                                g0, np.empty((1, 4)), np.empty(1), v, dw, dnu, dw2, dnu2,
                                np.full(T, np.nan), guess, 1, 0.0)
        assert out[3]
        gap = out[4]
        # (the dense solves lose digits as the weights D = nu / w spread)
        np.testing.assert_allclose(w, w_ref, rtol=1e-6, atol=1e-8 * w_ref.max())
        np.testing.assert_allclose(nu, nu_ref, rtol=1e-6, atol=1e-8 * nu_ref.max())
        # c, v and zero are not used without drift (NaN stays NaN)
        assert np.isnan(c).all() and np.isnan(v).all()
