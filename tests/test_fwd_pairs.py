"""The subspace forward pass (:func:`_subspace_fwd`): x, b and u bit for bit
those of the per-sample free-pair test (sample k free before a free pair),
written here in plain Python, also at the trace's ends (the last two
samples can start no pair) and on the shortest traces: a guard for any
change of its control flow (a read-ahead form, tried on branch wd2-fwd, was
faster on mixed patterns and slower at lambda 0).  And pdas_rows'
finiteness codes."""

import numpy as np
import pytest

from napari_catune import _numba_solvers as ns
from napari_catune.simulation import REGIMES, regime_traces
from napari_catune.solver import _model_checked, drift_mu


def _fwd_reference(y, g1, g2, alpha, mode, active, gain, gb, a22, q2, p0):
    n = y.shape[0] - 1
    x = np.zeros(n)
    bvec = np.zeros(n + 1)
    u = np.zeros(n)
    p = p0
    b = (y[0] - q2) / a22 if mode != 0 else 0.0
    bvec[0] = b
    xm1 = xm2 = 0.0
    u_max = 0.0
    for k in range(n):
        pair = k + 2 < n and not active[k] and not active[k + 1] and not active[k + 2]
        if mode == 2:
            if pair:
                b = gb[k, 2] * b - gb[k, 3]
            else:
                b = gb[k, 2] * b - ((gb[k, 0] * xm1 + gb[k, 1] * xm2) + gb[k, 3])
        bvec[k + 1] = b
        if active[k]:
            xk = g1 * xm1 + g2 * xm2
        else:
            if pair:
                xk = -(b + gain[p, 2])
            else:
                xk = -(gain[p, 0] * xm1 + gain[p, 1] * b + gain[p, 2])
            p += 1
            u[k] = (xk - g1 * xm1 - g2 * xm2) / alpha
            u_max = max(u_max, abs(u[k]))
        x[k] = xk
        xm2, xm1 = xm1, xk
    return x, bvec, u, u_max


def _patterns(n, rng):
    yield rng.random(n) < 0.5
    yield rng.random(n) < 0.15  # mostly free: long free runs, many pairs
    yield np.zeros(n, bool)  # every sample free
    yield np.ones(n, bool)
    a = rng.random(n) < 0.5
    a[-3:] = False  # a free run to the end
    yield a
    a = np.zeros(n, bool)
    a[::2] = True  # alternating: no pair anywhere
    yield a


@pytest.mark.parametrize("name", ["lowSNR-30Hz", "GCaMP6s-30Hz"])
@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize("T", [2, 3, 4, 5, 401])
def test_forward_pair_test_matches_the_per_sample_test(name, mode, T):
    fs, tr, td, lam, *_ = REGIMES[name]
    m = _model_checked(fs, tr, td, lam)
    mu = drift_mu(None, fs, td) if mode == 2 else 0.0
    y = regime_traces(name, 1, max(T, 10), 3)[0][:T].copy()
    n = T - 1
    beta = m.lamG / m.alpha
    rng = np.random.default_rng(T + 7 * mode)
    for active in _patterns(n, rng):
        gain = np.zeros((n, 3))
        gb = np.zeros((n if mode == 2 else 1, 4))
        a22, q2, p0 = ns._subspace_riccati(y, m.g1, m.g2, beta, np.int64(mode), mu, active,
                                           gain, gb)
        x = np.full(n, np.nan)
        bvec = np.full(T, np.nan)
        u = np.full(n, np.nan)
        u_max = ns._subspace_fwd(y, m.g1, m.g2, m.alpha, np.int64(mode), active, gain, gb, x,
                                 bvec, u, True, a22, q2, p0)
        xr, br, ur, umr = _fwd_reference(y, m.g1, m.g2, m.alpha, mode, active, gain, gb, a22,
                                         q2, p0)
        np.testing.assert_array_equal(x, xr)
        np.testing.assert_array_equal(bvec, br)
        np.testing.assert_array_equal(u, ur)
        assert u_max == umr
