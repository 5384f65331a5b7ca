"""pdas_rows' read-out (_numba_solvers._row_check) for modes 0 and 1 in one
pass pair (_kkt_fused with the trace's range and the fit read in its passes):
the same numbers as kkt_one, kkt_tolerance and the fit y - r formed apart,
bit for bit."""

import numpy as np
import pytest

from napari_catune import _numba_solvers as ns
from napari_catune import solver as S


def _pairs(m, T):
    # _kkt_scalar_b's passes in pairs of chains (_kkt_back_pairs,
    # _kkt_fwd_pairs): rounded otherwise than kkt_one's, so compared within
    # rounding there (bit for bit elsewhere)
    return ns._KKT_PAIRS and T > 8 and ns._KKT_PAIRS_DECAY * (
        1.0 - ns._dominant_root(m.g1, m.g2)) >= 1.0


def _close(a, b, y):
    # the fit or w of the pairs' passes: within rounding of the plain ones
    # (the review's worst 3.9e-13 of max|y|, 6.6e-13 on a constant trace:
    # a margin above those, the pairs' error bound growing as
    # eps / ((1 - d^2)(1 - r^2)) near the gate)
    return np.allclose(a, b, rtol=0.0, atol=1e-11 * max(1.0, float(np.max(np.abs(y)))))


def _tolerance(y, mode):
    # kkt_tolerance's formula, in Python
    lo, hi = float(np.min(y)), float(np.max(y))
    floor = ns.KKT_FLOOR * max(abs(lo), abs(hi))
    if mode == 0:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    return S.KKT_TOL * (hi - lo) + floor


@pytest.mark.parametrize("kernel", [(30.0, 0.05, 0.5), (1000.0, 0.2, 3.0), (100.0, 0.01, 0.15)])
@pytest.mark.parametrize("mode", [0, 1])
def test_row_check_matches_the_separate_passes(kernel, mode):
    fs, tr, td = kernel
    rng = np.random.default_rng(int(fs) + mode)
    n_conv = 0
    for lam in (0.0, 0.05):
        m = S._model_checked(fs, tr, td, lam)
        for T in (3, 64, 5000):
            y = rng.standard_normal(T) * 0.3 + 2.0
            s = np.where(rng.random(T) < 0.3, rng.exponential(1.0, T), 0.0)
            s[-1] = 0.0
            bvec = np.full(T, 1.7 if mode == 1 else 0.0)
            w_ref = np.zeros(T)
            g_ref = np.zeros(T)
            v_s, v_b = ns.kkt_one(y, s, bvec, m.g1, m.g2, m.alpha, m.lamG, m.G, mode, 0.0,
                                  w_ref, g_ref, np.zeros(T))
            tol = ns.kkt_tolerance(y, S.KKT_TOL, mode)
            assert tol == _tolerance(y, mode)
            for scale in (1.0, 1e9 * max(v_s, v_b) / tol):
                b = np.zeros((1, 1))
                conv = np.zeros(1, np.bool_)
                fit = np.full(T, np.nan)
                ws = np.zeros(3 * T)
                ns._row_check(y, s, bvec, b, 0, m.g1, m.g2, m.alpha, m.lamG, m.G, mode, 0.0,
                              S.KKT_TOL * scale, ws, conv, fit)
                assert conv[0] == (max(v_s, v_b) <= ns.kkt_tolerance(y, S.KKT_TOL * scale, mode))
                n_conv += conv[0]
                same = np.array_equal if not _pairs(m, T) else lambda a, b: _close(a, b, y)
                assert same(fit, y - w_ref)
                # (ws[0:T]: w = y - K s, whose residual r = w - b is w_ref)
                assert same(ws[0:T] - bvec, w_ref)
                assert b[0, 0] == bvec[0]
    # (both outcomes of the check were read)
    assert 0 < n_conv < 12


@pytest.mark.parametrize("mode", [0, 1])
def test_scalar_b_check_matches_kkt_fused(mode):
    """_row_check's pass pair at the one stored baseline (_kkt_scalar_b):
    v_s, v_b, the range and the fit bit for bit _kkt_fused's with that
    baseline at every sample, near and far from the optimum (where its
    passes run in pairs of chains, _pairs: the range bit for bit, the rest
    within rounding)."""
    rng = np.random.default_rng(7 + mode)
    n_pairs = 0
    for fs, tr, td in [(30.0, 0.05, 0.5), (1000.0, 0.2, 3.0), (100.0, 0.01, 0.15)]:
        for lam in (0.0, 0.05, 1.0):
            m = S._model_checked(fs, tr, td, lam)
            for T in (2, 3, 5, 8, 9, 10, 11, 64, 4999):
                y = rng.standard_normal(T) * rng.uniform(0.1, 3.0) + rng.uniform(-5, 5)
                s = np.where(rng.random(T) < 0.4, rng.exponential(1.0, T), 0.0)
                s[-1] = 0.0
                b0 = float(rng.uniform(-3, 3)) if mode == 1 else 0.0
                bvec = np.full(T, b0)
                w_ref = np.zeros(T)
                fit_ref = np.full(T, np.nan)
                ref = ns._kkt_fused(y, s, bvec, m.g1, m.g2, m.alpha, m.lamG, m.G, mode, 0.0,
                                    w_ref, np.zeros(T), fit_ref)
                w = np.zeros(T)
                fit = np.full(T, np.nan)
                got = ns._kkt_scalar_b(y, s, b0, m.g1, m.g2, m.alpha, m.lamG, m.G, mode, w, fit)
                if not _pairs(m, T):
                    assert got == ref[:4]
                    assert np.array_equal(fit, fit_ref)
                    assert np.array_equal(w - b0, w_ref)
                    continue
                n_pairs += 1
                assert got[2:] == ref[2:4]
                assert abs(got[0] - ref[0]) <= 1e-11 * ref[0]
                assert abs(got[1] - ref[1]) <= 1e-12 * max(1.0, float(np.max(np.abs(y))))
                assert _close(fit, fit_ref, y)
                assert _close(w - b0, w_ref, y)
    assert n_pairs > 0


def _row_check_drift_ref(y, s, bvec, m, mu, kkt_tol):
    # the drift read-out as formed apart (kkt_tolerance, max |b|, the bound,
    # the exact check where the bound cannot hold or fails, the fit from the
    # residual of the check that ran last)
    T = y.shape[0]
    tol = ns.kkt_tolerance(y, kkt_tol, 2)
    w, g, bb = np.zeros(T), np.zeros(T), np.zeros(T)
    # (above _DRIFT_RANGE_FIRST the exact check at once where mu eps max|b|
    # exceeds _DRIFT_BOUND_SHARE of the tolerance)
    eps = ns._DRIFT_EPS_SHARE if mu > ns._DRIFT_RANGE_FIRST else 2.220446049250313e-16
    bound = not mu * eps * float(np.max(np.abs(bvec))) > tol
    v_s, v_b = ns.kkt_one(y, s, bvec, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, w, g, bb, bound)
    exact = not bound or (v_s <= tol and v_b > tol)
    if bound and exact:
        v_s, v_b = ns.kkt_one(y, s, bvec, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, w, g, bb,
                              False)
    return max(v_s, v_b) <= tol, y - w, w, g, exact


@pytest.mark.parametrize("kernel", [(30.0, 0.05, 0.5), (1000.0, 0.2, 3.0), (100.0, 0.4, 1.8)])
def test_row_check_drift_matches_the_separate_passes(kernel):
    """Drift: the range and max |b| read in the bound's pass pair (in a pass
    of their own first for a large mu), that pass pair writing the fit;
    the same outcome, fit and residual as the passes
    formed apart, bit for bit, on every branch (the bound holds, the bound
    fails, the exact check at once for a large mu)."""
    fs, tr, td = kernel
    rng = np.random.default_rng(int(fs) + 7)
    seen = set()
    n_conv = 0
    for lam in (0.0, 0.05):
        m = S._model_checked(fs, tr, td, lam)
        for T in (3, 64, 5000):
            y = rng.standard_normal(T) * 0.3 + 2.0 + np.linspace(0.0, 1.0, T)
            s = np.where(rng.random(T) < 0.3, rng.exponential(1.0, T), 0.0)
            s[-1] = 0.0
            conv_s = np.zeros(T)
            ns.forward_conv(s, m.g1, m.g2, m.alpha, conv_s)
            for mu in (0.0, 50.0, 1e6, 1e13):
                best = np.zeros(T)
                ns.best_baseline(y - conv_s, 2, mu, np.zeros(T), best)
                for bvec in (best, best + 0.01 * rng.standard_normal(T)):
                    for scale in (1.0, 1e6, 1e12):
                        ref = _row_check_drift_ref(y, s, bvec, m, mu, S.KKT_TOL * scale)
                        # (pdas_rows solves a drift baseline in b[i] itself)
                        b = bvec[None].copy()
                        conv = np.zeros(1, np.bool_)
                        fit = np.full(T, np.nan)
                        ws = np.zeros(3 * T)
                        ns._row_check(y, s, b[0], b, 0, m.g1, m.g2, m.alpha, m.lamG, m.G, 2,
                                      mu, S.KKT_TOL * scale, ws, conv, fit)
                        assert conv[0] == ref[0]
                        assert np.array_equal(fit, ref[1])
                        assert np.array_equal(ws[0:T], ref[2])
                        # (K' r is not kept: the exact check's three passes,
                        # _drift_exact_fwd / _drift_exact_back, leave the
                        # smoother's gains there; nothing reads it)
                        assert np.array_equal(b[0], bvec)
                        seen.add((bool(ref[0]), ref[4]))
                        n_conv += conv[0]
    # (converged and not, with and without the exact check)
    assert seen == {(True, True), (True, False), (False, True), (False, False)}
    assert n_conv > 0


def test_row_check_drift_exact_at_once_below_the_range_pass_mu():
    """Drift with mu at _DRIFT_RANGE_FIRST (range and max |b| read in the
    bound's pass pair) where mu eps max|b| exceeds the tolerance (a level
    50 times the range): the exact check decided after that pass pair, the
    same outcome, fit and residual as the passes formed apart."""
    mu = ns._DRIFT_RANGE_FIRST
    rng = np.random.default_rng(11)
    for fs, tr, td in [(30.0, 0.05, 0.5), (100.0, 0.4, 1.8)]:
        m = S._model_checked(fs, tr, td, 0.05)
        for T in (64, 5000):
            y = rng.standard_normal(T) * 0.3 + 50.0
            s = np.where(rng.random(T) < 0.3, rng.exponential(1.0, T), 0.0)
            s[-1] = 0.0
            conv_s = np.zeros(T)
            ns.forward_conv(s, m.g1, m.g2, m.alpha, conv_s)
            bvec = np.zeros(T)
            ns.best_baseline(y - conv_s, 2, mu, np.zeros(T), bvec)
            ref = _row_check_drift_ref(y, s, bvec, m, mu, S.KKT_TOL)
            assert ref[4]  # (the exact check)
            b = bvec[None].copy()
            conv = np.zeros(1, np.bool_)
            fit = np.full(T, np.nan)
            ws = np.zeros(3 * T)
            ns._row_check(y, s, b[0], b, 0, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, S.KKT_TOL,
                          ws, conv, fit)
            assert conv[0] == ref[0]
            assert np.array_equal(fit, ref[1])
            assert np.array_equal(ws[0:T], ref[2])


def test_row_check_drift_exact_at_once_near_the_tolerance():
    """Drift with mu above _DRIFT_RANGE_FIRST where mu eps max|b| lies
    between _DRIFT_BOUND_SHARE of the tolerance and the tolerance: the exact
    check at once (not after the bound's pass pair); the outcome, fit and
    residual of the exact check formed apart."""
    rng = np.random.default_rng(5)
    m = S._model_checked(1000.0, 0.2, 3.0, 0.05)
    mu = 4.0 * ns._DRIFT_RANGE_FIRST
    n_win = 0
    for T in (64, 5000):
        for frac in (0.4, 0.6, 0.9):
            y = rng.standard_normal(T) * 0.3 + 2.0
            s = np.where(rng.random(T) < 0.1, rng.exponential(1.0, T), 0.0)
            s[-1] = 0.0
            conv_s = np.zeros(T)
            ns.forward_conv(s, m.g1, m.g2, m.alpha, conv_s)
            bvec = np.zeros(T)
            ns.best_baseline(y - conv_s, 2, mu, np.zeros(T), bvec)
            # kkt_tol such that mu eps max|b| = frac * the tolerance
            lo, hi = float(y.min()), float(y.max())
            floor = ns._tolerance_of(lo, hi, 0.0, 2)
            want = mu * 2.220446049250313e-16 * float(np.max(np.abs(bvec))) / frac
            kkt_tol = (want - floor) / (hi - lo)
            assert kkt_tol > 0.0
            tol = ns.kkt_tolerance(y, kkt_tol, 2)
            r = mu * 2.220446049250313e-16 * float(np.max(np.abs(bvec))) / tol
            assert ns._DRIFT_BOUND_SHARE < r < 1.0
            n_win += 1
            ref = _row_check_drift_ref(y, s, bvec, m, mu, kkt_tol)
            assert ref[4]  # (the exact check)
            w, g, bb = np.zeros(T), np.zeros(T), np.zeros(T)
            v_s, v_b = ns.kkt_one(y, s, bvec, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, w, g, bb,
                                  False)
            b = bvec[None].copy()
            conv = np.zeros(1, np.bool_)
            fit = np.full(T, np.nan)
            ws = np.zeros(3 * T)
            ns._row_check(y, s, b[0], b, 0, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, kkt_tol,
                          ws, conv, fit)
            assert conv[0] == (max(v_s, v_b) <= tol)
            assert np.array_equal(fit, y - w)
            assert np.array_equal(ws[0:T], w)
    assert n_win == 6


@pytest.mark.parametrize("kernel", [(30.0, 0.05, 0.5), (100.0, 0.1, 1.5), (30.0, 0.4, 1.8)])
@pytest.mark.parametrize("mode", [0, 1])
def test_scalar_b_pairs_certify_as_kkt_one(kernel, mode):
    """Where _kkt_scalar_b's passes run in pairs of chains (_pairs): at the
    solver's answers (and slightly off them) v_s within 1e-6 of the
    tolerance of kkt_one's, v_b too, the same verdict; every
    length from 9 on (the pairs' ends, odd and even)."""
    from napari_catune.simulation import regime_traces

    fs, tr, td = kernel
    rng = np.random.default_rng(3 + mode)
    n = 0
    for lam in (0.0, 0.05):
        m = S._model_checked(fs, tr, td, lam)
        for T in list(range(9, 24)) + [301, 5000]:
            if not _pairs(m, T):
                continue
            ys = regime_traces("GCaMP6f-30Hz", 2, T, T)
            res = S.run_deconvolution_full(ys, fs, tr, td, lam,
                                           baseline="scalar" if mode else "none")
            for i in range(2):
                y = ys[i]
                b0 = float(res.baseline[i]) if mode == 1 else 0.0
                for s in (res.activity[i],
                          np.maximum(res.activity[i] * (1 + 1e-7 * rng.standard_normal(T)), 0.0)):
                    s = np.ascontiguousarray(s)
                    tol = ns.kkt_tolerance(y, S.KKT_TOL, mode)
                    ref = ns.kkt_one(y, s, np.full(T, b0), m.g1, m.g2, m.alpha, m.lamG, m.G,
                                     mode, 0.0, np.zeros(T), np.zeros(T), np.zeros(T))
                    got = ns._kkt_scalar_b(y, s, b0, m.g1, m.g2, m.alpha, m.lamG, m.G, mode,
                                           np.zeros(T), np.zeros(T))
                    assert abs(got[0] - ref[0]) <= 1e-6 * tol
                    assert abs(got[1] - ref[1]) <= 1e-6 * tol
                    assert (max(got[0], got[1]) <= tol) == (max(ref) <= tol)
                    n += 1
    assert n > 0
