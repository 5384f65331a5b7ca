"""The cold exchange's Riccati recursion formed a step ahead, inside the
multipliers' pass (``_numba_solvers._kkt_core_ahead``, ``_nu_riccati``):
the same numbers, bit for bit, as the separate passes it replaces, so the
same steps and the same answers."""

import numpy as np
import pytest

from napari_catune import _numba_solvers as ns
from napari_catune.simulation import REGIMES, regime_traces
from napari_catune.solver import _model_checked


def _model(name):
    fs, tr, td, lam, *_ = REGIMES[name]
    return _model_checked(fs, tr, td, lam)


def _arrays(T):
    n = T - 1
    return (np.zeros((n, 3)), np.zeros((n, 4)), np.zeros(n), np.zeros(T), np.zeros(n),
            np.zeros(n), np.zeros(n, bool))


@pytest.mark.parametrize("name", ["lowSNR-30Hz", "dense-30Hz", "GCaMP6s-100Hz", "slow-1kHz",
                                  "lam0-30Hz", "lam1-30Hz"])
@pytest.mark.parametrize("frac", [0.05, 0.5, 0.95])
def test_nu_riccati_is_nu_pass_and_riccati_bit_for_bit(name, frac):
    m = _model(name)
    y = regime_traces(name, 1, 4000, 3)[0]
    T = y.size
    n = T - 1
    beta = m.lamG / m.alpha
    rng = np.random.default_rng(int(frac * 100))
    active = rng.random(n) < frac
    gain, gb, x, bvec, u, nu, flip = _arrays(T)
    ns._kkt_core(y, m.g1, m.g2, m.alpha, beta, np.int64(1), 0.0, active, gain, gb, x, bvec, u,
                 nu, flip, 1e-11, ns._NO)
    eps_u = 1e-11 * np.abs(u).max()
    nu1, flip1 = nu.copy(), flip.copy()
    ref = ns._nu_pass(y, m.g1, m.g2, beta, active, x, bvec, u, nu1, flip1, eps_u, ns._ALL_B)
    gain_ref = np.zeros_like(gain)
    ric = ns._subspace_riccati(y, m.g1, m.g2, beta, np.int64(1), 0.0, active ^ flip1, gain_ref,
                               gb)
    gain2 = np.zeros_like(gain)
    out = ns._nu_riccati(y, m.g1, m.g2, beta, active, x, bvec, u, nu, flip, eps_u, gain2,
                         ns._ALL_B)
    assert out[:5] == ref[:5]
    assert out[5:8] == ric
    assert out[8:] == ref[5:]
    np.testing.assert_array_equal(nu, nu1)
    np.testing.assert_array_equal(flip, flip1)
    # the free samples' gains, packed at the end in order of k
    p0 = n - int((~(active ^ flip1)).sum())
    assert out[7] == ric[2] == p0
    np.testing.assert_array_equal(gain2[p0:], gain_ref[p0:])


@pytest.mark.parametrize("name", ["lowSNR-30Hz", "dense-30Hz", "lam1-30Hz"])
@pytest.mark.parametrize("mode", [0, 1])
def test_exchange_with_recursions_ahead_takes_the_same_steps(name, mode):
    # a plain cold block exchange, once by _kkt_core, once by
    # _kkt_core_ahead with every recursion formed a step ahead (the first,
    # every sample active, by _all_active_fwd): the same
    # violators, thresholds, iterates and baseline at every step
    m = _model(name)
    y = regime_traces(name, 1, 20_000, 1)[0]
    T = y.size
    n = T - 1
    beta = m.lamG / m.alpha
    A = _arrays(T)
    B = _arrays(T)
    act_a = np.ones(n, bool)
    act_b = np.ones(n, bool)
    ready, a22, q2, p0 = False, 0.0, 0.0, 0
    steps = 0
    for _ in range(40):
        gain, gb, x, bvec, u, nu, flip = A
        ra = ns._kkt_core(y, m.g1, m.g2, m.alpha, beta, np.int64(mode), 0.0, act_a, gain, gb,
                          x, bvec, u, nu, flip, 1e-11, ns._NO)
        gain, gb, x2, bvec2, u2, nu2, flip2 = B
        rb = ns._kkt_core_ahead(y, m.g1, m.g2, m.alpha, beta, np.int64(mode), act_b, gain, x2,
                                bvec2, u2, nu2, flip2, 1e-11, ready, a22, q2, p0, ns._YES,
                                np.bool_(steps == 0), ns._NO)
        steps += 1
        assert rb[:4] == ra
        for p, q in ((x, x2), (u, u2), (nu, nu2), (flip, flip2)):
            np.testing.assert_array_equal(p, q)
        # (the flat step leaves its constant baseline in bvec[0] only)
        assert np.all(bvec == bvec2[0])
        if ra[0] == 0:
            break
        ready, a22, q2, p0 = rb[4], rb[5], rb[6], rb[7]
        act_a ^= flip
        act_b ^= flip2
    assert ra[0] == 0
    assert steps >= 5   # the steps formed ahead were used


def test_cold_steps_of_the_fast_kernels():
    # the regimes this serves: their cold step counts (54,000 frames)
    expect = {"lowSNR-30Hz": 10, "dense-30Hz": 10, "lam0-30Hz": 5}
    for name, steps in expect.items():
        fs, tr, td, lam, *_ = REGIMES[name]
        y = regime_traces(name, 2, 54_000, 0)
        from napari_catune import run_deconvolution_full

        res = run_deconvolution_full(y, fs, tr, td, lam)
        assert res.converged.all()
        assert res.iterations.max() <= steps, (name, res.iterations)
