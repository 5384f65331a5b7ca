"""The drift read-out's exact check in three passes (_drift_exact_fwd,
_drift_exact_back) gives kkt_one's numbers bit for bit, and smooth_baseline's
rescaling test once per chunk gives the per-sample recursion's numbers."""

import numpy as np
import pytest

ns = pytest.importorskip("napari_catune._numba_solvers")


def _smooth_reference(r, mu):
    """smooth_baseline as it was: the rescaling test at every sample (plain
    Python floats: the same IEEE operations in the same order)."""
    T = r.shape[0]
    gain = [0.0] * T
    out = [0.0] * T
    imu = 1.0 / mu
    N, D, q = 0.0, 1.0, 0.0
    for t in range(T - 1, 0, -1):
        Dn = N * imu + D + D * imu
        N = N + D
        c = D / Dn
        D = Dn
        gain[t] = c
        q -= float(r[t])
        out[t] = q
        q = c * q
        if D > 4.149515568880993e+180:
            N *= 2.409919865102884e-181
            D *= 2.409919865102884e-181
    P = N / D + 1.0
    q -= float(r[0])
    out[0] = -q / P
    for t in range(1, T):
        out[t] = gain[t] * (out[t - 1] - out[t] * imu)
    return np.array(out)


@pytest.mark.parametrize("mu", [1e-3, 0.5, 1.0, 7.0, 1e4, 3.6e9, 1e60, 1e100, 1e120])
@pytest.mark.parametrize("T", [2, 63, 64, 65, 3001])
def test_smooth_baseline_rescaled_by_chunks_is_the_per_sample_recursion(mu, T):
    rng = np.random.default_rng(T)
    r = rng.standard_normal(T) * 3.0 + np.linspace(0, 5, T)
    out = np.empty(T)
    ns.smooth_baseline(r, mu, np.empty(T), out)
    ref = _smooth_reference(r, mu)
    assert np.array_equal(out, ref)
    assert np.all(np.isfinite(out))


def test_small_mu_rescales_often_and_still_matches():
    # mu = 1: D grows ~2.6x a sample, rescaled every ~430 samples, at other
    # samples with chunks than without
    T = 5000
    r = np.sin(np.arange(T) * 0.01) + 0.1 * np.random.default_rng(1).standard_normal(T)
    out = np.empty(T)
    ns.smooth_baseline(r, 1.0, np.empty(T), out)
    assert np.array_equal(out, _smooth_reference(r, 1.0))


@pytest.mark.parametrize("mu", [9e4, 1.2e6, 3.6e9, 0.25])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_three_pass_drift_check_is_kkt_ones(mu, seed):
    rng = np.random.default_rng(seed)
    T = 4000
    # an AR(2) kernel (roots 0.999, 0.95) and a sparse activity
    d, r = 0.999, 0.95
    g1, g2 = d + r, -d * r
    alpha = 0.05
    s = np.where(rng.random(T) < 0.01, rng.random(T) * 2.0, 0.0)
    s[-1] = 0.0
    b = 0.3 * np.cumsum(rng.standard_normal(T)) / np.sqrt(T) + 1.0
    y = np.empty(T)
    ns.forward_conv(s, g1, g2, alpha, y)
    y = y + b + 0.05 * rng.standard_normal(T)
    if seed == 2:
        b = b + 1e-3  # a baseline off its optimum
    lamG, G = 0.01, 1.0 / ((1 - d) * (1 - r)) * alpha
    ws = np.empty(3 * T)
    v1 = ns.kkt_one(y, s, b, g1, g2, alpha, lamG, G, 2, mu, ws[0:T], ws[T:2 * T], ws[2 * T:],
                    False)
    fit1 = y - ws[0:T]
    ws2 = np.full(3 * T, np.nan)
    fit2 = np.full(T, np.nan)
    lo, hi, bm = ns._drift_exact_fwd(y, s, b, g1, g2, alpha, ws2[0:T])
    assert (lo, hi, bm) == (y.min(), y.max(), np.abs(b).max())
    v2 = ns._drift_exact_back(y, s, b, g1, g2, alpha, lamG, G, mu, ws2[0:T], ws2[T:2 * T],
                              ws2[2 * T:], fit2)
    assert v1 == v2
    assert np.array_equal(fit1, fit2)
    assert np.array_equal(ws[0:T], ws2[0:T])


def _drift_row(fs, tr, td, lam, seed, T, rate):
    """A drift-mode solve of a simulated trace: (model, y, mu, activity,
    baseline, rng, result)."""
    import napari_catune as nc
    from napari_catune import solver as S
    from napari_catune.baseline import drift_mu

    rng = np.random.default_rng(seed)
    m = S._model_checked(fs, tr, td, lam)
    s = np.where(rng.random(T) < rate, rng.random(T) * 2.0, 0.0)
    y = np.empty(T)
    ns.forward_conv(s, m.g1, m.g2, m.alpha, y)
    y += 0.2 * rng.standard_normal(T) + 1.0
    r = nc.run_deconvolution_full(y, fs, tr, td, lam, baseline="drift")
    mu = drift_mu(None, fs, td)
    si = np.ascontiguousarray(r.activity, dtype=float).ravel()
    bi = np.ascontiguousarray(r.baseline, dtype=float).ravel()
    return m, y, mu, si, bi, rng, r


def test_row_check_drift_uses_the_three_passes_with_kkt_ones_answer():
    # the read-out at 1 kHz (mu above _DRIFT_RANGE_FIRST: the exact check)
    # against kkt_one's verdict and fit
    from napari_catune import solver as S

    T = 20_000
    m, y, mu, si, bi, _rng, r = _drift_row(1000.0, 0.2, 3.0, 0.05, 3, T, 0.002)
    assert mu > ns._DRIFT_RANGE_FIRST
    for bb in (bi, bi + 1e-4):
        b = bb[None, :].copy()
        conv = np.zeros(1, bool)
        fi = np.full(T, np.nan)
        tol_ws = np.full(3 * T + 16, np.nan)
        ns._row_check(y, si, b[0], b, 0, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, S.KKT_TOL,
                      tol_ws, conv, fi)
        ws = np.empty(3 * T)
        v_s, v_b = ns.kkt_one(y, si, b[0], m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, ws[0:T],
                              ws[T:2 * T], ws[2 * T:], False)
        tol = ns.kkt_tolerance(y, S.KKT_TOL, 2)
        assert conv[0] == (max(v_s, v_b) <= tol)
        assert np.array_equal(fi, y - ws[0:T])
    assert r.converged


def test_row_check_drift_below_the_range_first_mu_takes_the_exact_check_after_the_bound():
    # 30 Hz (mu 9e4 <= _DRIFT_RANGE_FIRST): the bound first; a baseline with
    # 1e-9 noise on it fails the bound (mu times its second difference) but
    # not the exact check, which the read-out then runs (three passes)
    from napari_catune import solver as S

    T = 6000
    m, y, mu, si, bi, rng, _r = _drift_row(30.0, 0.05, 0.5, 0.05, 5, T, 0.02)
    assert mu <= ns._DRIFT_RANGE_FIRST
    tol = ns.kkt_tolerance(y, S.KKT_TOL, 2)
    seen_exact = False
    for bb in (bi, bi + 1e-9 * (y.max() - y.min()) * rng.standard_normal(T), bi + 1e-3):
        b = bb[None, :].copy()
        conv = np.zeros(1, bool)
        fi = np.full(T, np.nan)
        ns._row_check(y, si, b[0], b, 0, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, S.KKT_TOL,
                      np.full(3 * T, np.nan), conv, fi)
        ws = np.empty(3 * T)
        v_s, v_b = ns.kkt_one(y, si, b[0], m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, ws[0:T],
                              ws[T:2 * T], ws[2 * T:], False)
        assert conv[0] == (max(v_s, v_b) <= tol)
        bs, bb_ = ns.kkt_one(y, si, b[0], m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, ws[0:T],
                             ws[T:2 * T], ws[2 * T:], True)
        if bs <= tol and bb_ > tol:
            # the exact path: its fit is kkt_one's residual's
            seen_exact = True
            ws2 = np.empty(3 * T)
            ns.kkt_one(y, si, b[0], m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, ws2[0:T],
                       ws2[T:2 * T], ws2[2 * T:], False)
            assert np.array_equal(fi, y - ws2[0:T])
            assert conv[0]
    assert seen_exact
