"""_affine_lam0's own full step: _riccati_pk's gains (c3 packed apart) and
_affine_fwd_runs' forward pass (runs of free pairs in a loop of their own,
written out without fastmath) against _riccati_flat and affine_fwd, bit for
bit: gains, baseline terms, x, z, the spikes and their slopes, max |u|, R
and H, but at lambda 0 q2: there _riccati_pk leaves it exact along runs of
free pairs where _riccati_flat rounds (q2 - y) + y a sample (within
rounding of it).  Both forward passes run from _riccati_flat's
baseline."""

import numpy as np
import pytest

from napari_catune._numba_affine import affine_fwd, affine_nu
from napari_catune._numba_solvers import _affine_fwd_runs, _riccati_flat, _riccati_pk
from napari_catune.solver import _model_checked as _model


def _both(y, g1, g2, alpha, beta, active):
    n = y.shape[0] - 1
    gain = np.full((n, 3), np.nan)
    a22, q2, p0 = _riccati_flat(y, g1, g2, beta, active, gain)
    b = (y[0] - q2) / a22
    outs = [np.full(n, np.nan) for _ in range(4)]
    ret = affine_fwd(y, g1, g2, alpha, active, gain, p0, b, *outs)
    gain2 = np.full((n, 3), np.nan)
    g3 = np.full(n, np.nan)
    a22b, q2b, p0b, q0b = _riccati_pk(y, g1, g2, beta, active, gain2, g3)
    outs2 = [np.full(n, np.nan) for _ in range(4)]
    ret2 = _affine_fwd_runs(y, g1, g2, alpha, active, gain2, g3, p0b, q0b, b, *outs2)
    return (a22, q2, p0, gain, ret, outs), (a22b, q2b, p0b, q0b, gain2, g3, ret2, outs2)


def _check(y, g1, g2, alpha, beta, active):
    (a22, q2, p0, gain, ret, outs), (a22b, q2b, p0b, q0b, gain2, g3, ret2, outs2) = _both(
        y, g1, g2, alpha, beta, active)
    n = y.shape[0] - 1
    assert (a22b, p0b) == (a22, p0)
    if beta == 0.0:
        scale = 1.0 + abs(y).sum()
        assert abs(q2b - q2) <= 1e-13 * scale
    else:
        assert q2b == q2
    # every free sample's c3 in g3, in order; c1, c2 of the others in gain2
    assert np.array_equal(g3[p0:], gain[p0:, 2])
    free = ~active
    nxt1 = np.r_[active[1:], True]
    nxt2 = np.r_[active[2:], True, True]
    pair = free & ~nxt1 & ~nxt2
    pair[max(n - 2, 0):] = False
    kinds = pair[free]
    assert np.array_equal(gain[p0:][kinds, 0:2], np.tile([0.0, 1.0], (int(kinds.sum()), 1)))
    assert np.array_equal(gain2[q0b:, 0:2], gain[p0:][~kinds, 0:2])
    assert n - q0b == int((~kinds).sum())
    assert ret2 == ret
    for a, b in zip(outs, outs2):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("regime", [(30.0, 0.05, 0.5, 0.0), (30.0, 0.05, 0.5, 0.05),
                                    (100.0, 0.4, 1.8, 0.05), (1000.0, 0.2, 3.0, 0.0)])
def test_fwd_runs_bit_for_bit(regime):
    fs, tr, td, lam = regime
    m = _model(fs, tr, td, lam)
    beta = m.lamG / m.alpha
    rng = np.random.default_rng(7)
    for T in (4, 5, 6, 7, 9, 17, 64, 301, 5_000):
        for frac in (0.0, 0.02, 0.1, 0.3, 0.6, 0.95, 1.0):
            for _rep in range(3):
                y = 2.0 + np.cumsum(rng.standard_normal(T)) * 0.1 + rng.standard_normal(T)
                active = rng.random(T - 1) < frac
                _check(y, m.g1, m.g2, m.alpha, beta, active)
        # patterns: alternating, runs of 1-4 free samples between active ones
        for period in (2, 3, 4, 5):
            active = (np.arange(T - 1) % period) == 0
            _check(y, m.g1, m.g2, m.alpha, beta, active)
            _check(y, m.g1, m.g2, m.alpha, beta, ~active)


def test_affine_nu_flags_after_runs():
    # the multipliers' pass over _affine_fwd_runs' output: its flags and
    # figures equal those over affine_fwd's
    m = _model(30.0, 0.05, 0.5, 0.0)
    rng = np.random.default_rng(3)
    T = 20_000
    y = 2.0 + rng.standard_normal(T)
    active = rng.random(T - 1) < 0.05
    (_a, _q, _p, _g, ret, outs), (_a2, _q2, _p2, _q0, _g2, _g3, ret2, outs2) = _both(
        y, m.g1, m.g2, m.alpha, 0.0, active)
    b = (y[0] - _q) / _a
    f1 = np.zeros(T - 1, np.bool_)
    f2 = np.zeros(T - 1, np.bool_)
    r1 = affine_nu(y, m.g1, m.g2, 0.0, active, b, outs[0], outs[1], outs[2], outs[3], f1,
                   1e-9 * ret[0])
    r2 = affine_nu(y, m.g1, m.g2, 0.0, active, b, outs2[0], outs2[1], outs2[2], outs2[3], f2,
                   1e-9 * ret2[0])
    assert r1 == r2 and r1[0] > 0
    assert np.array_equal(f1, f2)
    assert np.array_equal(outs[2], outs2[2]) and np.array_equal(outs[3], outs2[3])
