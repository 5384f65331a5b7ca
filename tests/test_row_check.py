"""pdas_rows' read-out (_numba_solvers._row_check) for modes 0 and 1 in one
pass pair (_kkt_fused with the trace's range and the fit read in its passes):
the same numbers as kkt_one, kkt_tolerance and the fit y - r formed apart,
bit for bit."""

import numpy as np
import pytest

from napari_catune import _numba_solvers as ns
from napari_catune import solver as S


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
                assert np.array_equal(fit, y - w_ref)
                # (ws[0:T]: w = y - K s, whose residual r = w - b is w_ref)
                assert np.array_equal(ws[0:T] - bvec, w_ref)
                assert b[0, 0] == bvec[0]
    # (both outcomes of the check were read)
    assert 0 < n_conv < 12


@pytest.mark.parametrize("mode", [0, 1])
def test_scalar_b_check_matches_kkt_fused(mode):
    """_row_check's pass pair at the one stored baseline (_kkt_scalar_b):
    v_s, v_b, the range and the fit bit for bit _kkt_fused's with that
    baseline at every sample, near and far from the optimum."""
    rng = np.random.default_rng(7 + mode)
    for fs, tr, td in [(30.0, 0.05, 0.5), (1000.0, 0.2, 3.0), (100.0, 0.01, 0.15)]:
        for lam in (0.0, 0.05, 1.0):
            m = S._model_checked(fs, tr, td, lam)
            for T in (2, 3, 5, 64, 4999):
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
                assert got == ref
                assert np.array_equal(fit, fit_ref)
                assert np.array_equal(w - b0, w_ref)
