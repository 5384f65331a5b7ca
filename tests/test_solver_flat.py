"""The no-drift recursions of the exact solver's steps (issue 12, lambda 0):
``_riccati_flat`` (the Riccati recursion of modes 0 and 1 in a loop of its
own, a free sample before a free one off the division's chain) gives the
same numbers, bit for bit, as the general recursion does through
``_nu_riccati`` (test_solver_ahead.py) and as the drift-capable loop did;
``_subspace_fwd_fma`` (a cold lambda-0 step's forward pass) the plain pass's
iterate to rounding; and a cold solve at lambda 0 keeps its step counts."""

import numpy as np
import pytest

from napari_catune import _numba_solvers as ns
from napari_catune import run_deconvolution_full
from napari_catune.simulation import REGIMES, regime_traces
from napari_catune.solver import _model_checked


def _model(name):
    fs, tr, td, lam, *_ = REGIMES[name]
    return _model_checked(fs, tr, td, lam)


def _pattern(n, frac, seed):
    # runs of active samples between free runs, as at lambda 0 (and random)
    rng = np.random.default_rng(seed)
    act = rng.random(n) < frac
    act[::7] |= rng.random(act[::7].size) < frac
    return act


@pytest.mark.parametrize("name", ["lam0-30Hz", "lam1-30Hz", "GCaMP6s-30Hz"])
@pytest.mark.parametrize("frac", [0.0, 0.15, 0.5, 1.0])
def test_flat_riccati_is_the_ahead_recursion(name, frac):
    # the recursion _nu_riccati forms ahead (the general arithmetic, its own
    # loop) for the set active ^ flip: here no flags (every multiplier and
    # spike set positive), so the set is `active` itself
    m = _model(name)
    y = regime_traces(name, 1, 3000, 5)[0]
    n = y.size - 1
    beta = m.lamG / m.alpha
    active = _pattern(n, frac, 7)
    gain = np.zeros((n, 3))
    a22, q2, p0 = ns._riccati_flat(y, m.g1, m.g2, beta, active, gain)
    x = np.zeros(n)
    bvec = np.full(y.size, 0.0)
    u = np.ones(n)
    nu = np.zeros(n)
    flip = np.zeros(n, bool)
    y_pos = y.copy()
    gain2 = np.zeros((n, 3))
    # x - y + b on active samples must keep nu >= 0: x large
    x[:] = 1e6
    out = ns._nu_riccati(y_pos, m.g1, m.g2, beta, active, x, bvec, u, nu, flip, 0.0, gain2,
                         ns._ALL_B)
    assert not flip.any()
    assert out[5:8] == (a22, q2, p0)
    # the free samples' gains, packed at the end in order of k
    assert p0 == n - int((~active).sum())
    np.testing.assert_array_equal(gain2[p0:], gain[p0:])
    # and _subspace_riccati (modes 0, 1) is this recursion
    gain3 = np.zeros((n, 3))
    for mode in (0, 1):
        assert ns._subspace_riccati(y, m.g1, m.g2, beta, np.int64(mode), 0.0, active, gain3,
                                    np.zeros((1, 4))) == (a22, q2, p0)
        np.testing.assert_array_equal(gain3[p0:], gain[p0:])


@pytest.mark.parametrize("frac", [0.1, 0.3, 0.6])
def test_fma_forward_pass_is_the_plain_one_to_rounding(frac):
    m = _model("lam0-30Hz")
    y = regime_traces("lam0-30Hz", 1, 5000, 2)[0]
    T = y.size
    n = T - 1
    active = _pattern(n, frac, 3)
    gain = np.zeros((n, 3))
    a22, q2, p0 = ns._riccati_flat(y, m.g1, m.g2, 0.0, active, gain)
    out = []
    for fwd in (ns._subspace_fwd_flat, ns._subspace_fwd_fma):
        x, bvec, u = np.zeros(n), np.zeros(T), np.zeros(n)
        u_max = fwd(y, m.g1, m.g2, m.alpha, np.int64(1), active, gain, x, bvec, u, a22, q2, p0)
        out.append((x, bvec, u, u_max))
    (x0, b0, u0, m0), (x1, b1, u1, m1) = out
    np.testing.assert_array_equal(b0, b1)              # the same recursion's baseline
    assert np.abs(x1 - x0).max() <= 1e-12 * np.abs(x0).max()
    assert np.abs(u1 - u0).max() <= 1e-10 * m0
    np.testing.assert_array_equal(u1[active], 0.0)


@pytest.mark.parametrize("n_rows, T, most", [(4, 10_000, 6), (2, 54_000, 5)])
def test_lambda0_cold_steps(n_rows, T, most):
    # lambda 0 at 30 Hz (issue 12's lam0-30Hz): the exact fit's first step,
    # then 3-4 exchange steps settled locally; count steps, never seconds
    fs, tr, td, lam, *_ = REGIMES["lam0-30Hz"]
    y = regime_traces("lam0-30Hz", n_rows, T, 0)
    r = run_deconvolution_full(y, fs, tr, td, lam)
    assert r.converged.all()
    assert r.iterations.max() <= most, r.iterations
