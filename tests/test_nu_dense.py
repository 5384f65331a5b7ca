"""The warm drift step's branch-free multipliers' pass
(``_numba_solvers._nu_pass_dense``) against ``_nu_pass_fma`` with thinning:
the same multipliers (bit for bit), flags, list of flagged samples and
returned values, on random sets of every density; and ``_kind_changes``
against numpy.  Arrays compared, nothing timed."""

import numpy as np
import pytest

from napari_catune import _numba_solvers as ns
from napari_catune.baseline import default_drift_scale, drift_mu
from napari_catune.simulation import regime_traces
from napari_catune.solver import _model_checked
from test_warm_slow import _params


def _step(name, T, seed, p_free, runs):
    y = regime_traces(name, 1, T, seed=seed)[0]
    fs, tr, td, lam = _params(name)
    m = _model_checked(fs, tr, td, lam)
    mu = drift_mu(default_drift_scale(td), fs, td)
    n = T - 1
    rng = np.random.default_rng(seed)
    if runs:
        # runs of each kind (few kind changes)
        active = np.repeat(rng.random(n // 16 + 1) > p_free, 16)[:n].copy()
    else:
        active = rng.random(n) > p_free
    beta = m.lamG / m.alpha
    gain, gb = np.zeros((n, 3)), np.zeros((n, 4))
    x, b, u = np.zeros(n), np.zeros(T), np.zeros(n)
    a22, q2, p0 = ns._subspace_riccati(y, m.g1, m.g2, beta, np.int64(2), mu, active, gain, gb)
    u_max = ns._subspace_fwd(y, m.g1, m.g2, m.alpha, np.int64(2), active, gain, gb, x, b, u,
                             True, a22, q2, p0)
    return y, m, beta, active, x, b, u, 1e-11 * u_max


@pytest.mark.parametrize("name", ["dense-30Hz", "calab-gcamp6s-30Hz", "lam0-30Hz"])
@pytest.mark.parametrize("p_free", [0.0, 0.05, 0.3, 0.7, 1.0])
@pytest.mark.parametrize("runs", [False, True])
def test_dense_pass_is_the_fma_pass(name, p_free, runs):
    T = 5_001
    n = T - 1
    y, m, beta, active, x, b, u, eps_u = _step(name, T, 3, p_free, runs)
    # some spikes below -eps_u as well as multipliers below 0
    u = u.copy()
    u[::37] = -1.0
    nu_a, nu_b = np.full(n, np.nan), np.full(n, np.nan)
    fl_a, fl_b = np.zeros(n, np.bool_), np.ones(n, np.bool_)
    rj_a, rj_b = np.full(n, -7, np.int64), np.full(n, -9, np.int64)
    want = ns._nu_pass_fma(y, m.g1, m.g2, beta, active, x, b, u, nu_a, fl_a, eps_u, ns._ALL_B,
                           np.int64(3), rj_a)
    got = ns._nu_pass_dense(y, m.g1, m.g2, beta, active, x, b, u, nu_b, fl_b, eps_u, ns._ALL_B,
                            rj_b)
    assert got == want
    assert np.array_equal(nu_a.view(np.int64), nu_b.view(np.int64))
    assert np.array_equal(fl_a, fl_b)
    k = want[0]
    assert np.array_equal(rj_a[:k], rj_b[:k])
    if 0.0 < p_free < 1.0:
        assert k > 0 and want[7] > 0


def test_kind_changes():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 17, 64, 1_000, 54_000):
        for p in (0.0, 0.1, 0.5, 1.0):
            a = rng.random(n) < p
            assert ns._kind_changes(a) == int(np.count_nonzero(a[1:] != a[:-1]))


@pytest.mark.parametrize("name", ["dense-30Hz", "lowSNR-30Hz", "calab-gcamp6s-30Hz"])
@pytest.mark.parametrize("p_free", [0.05, 0.3, 0.6])
@pytest.mark.parametrize("mode", [0, 1])
def test_thin_step_dense_pass(name, p_free, mode, monkeypatch):
    """A warm step without drift (``_kkt_core_thin`` with fast, short and
    thinning) takes ``_nu_pass_dense`` on sets whose kind changes at more
    than n / _NU_DENSE_CHG samples: the same step as riccati_short, the
    forward pass and ``_nu_pass_fma`` with the same flags' reading."""
    from napari_catune._numba_short import riccati_short

    T = 5_001
    n = T - 1
    y = regime_traces(name, 1, T, seed=4)[0]
    fs, tr, td, lam = _params(name)
    m = _model_checked(fs, tr, td, lam)
    beta = m.lamG / m.alpha
    rng = np.random.default_rng(5)
    active = rng.random(n) > p_free
    rel = 1e-11
    md = np.int64(mode)
    thin = np.int64(3)
    # the reference: the pieces with _nu_pass_fma
    gain, gb = np.zeros((n, 3)), np.zeros((1, 4))
    x, b, u, nu = np.zeros(n), np.zeros(T), np.zeros(n), np.zeros(n)
    fl = np.zeros(n, np.bool_)
    rj = np.full(n, -7, np.int64)
    a22, q2, p0 = riccati_short(y, m.g1, m.g2, beta, active, gain)
    u_max = ns._subspace_fwd(y, m.g1, m.g2, m.alpha, md, active, gain, gb, x, b, u, True, a22,
                             q2, p0)
    eps_u = rel * u_max
    r = ns._nu_pass_fma(y, m.g1, m.g2, beta, active, x, b, u, nu, fl, eps_u, ns._ALL_B, thin, rj)
    n_bad, last_bad, eps_nu, kept = ns._kkt_flags_one(active, nu, fl, r[0], r[1], r[2], r[3],
                                                      r[4], rel, r[6], r[7], r[8])
    want = (n_bad, last_bad, eps_u, eps_nu, r[5] if kept else -1)
    # the step
    gain2, gb2 = np.zeros((n, 3)), np.zeros((1, 4))
    x2, b2, u2, nu2 = np.full(n, np.nan), np.full(T, np.nan), np.full(n, np.nan), np.zeros(n)
    fl2 = np.ones(n, np.bool_)
    rj2 = np.full(n, -9, np.int64)
    got = ns._kkt_core_thin(y, m.g1, m.g2, m.alpha, beta, md, 1.0, active, gain2, gb2, x2, b2, u2,
                            nu2, fl2, rel, True, True, thin, rj2)
    assert got == want
    for p, q in ((x, x2), (b, b2), (u, u2), (nu, nu2)):
        assert np.array_equal(p.view(np.int64), q.view(np.int64))
    assert np.array_equal(fl, fl2)
    if want[4] >= 0:
        assert np.array_equal(rj[:want[4]], rj2[:want[4]])
    dense = ns._kind_changes(active) * ns._NU_DENSE_CHG > n
    assert dense == (p_free >= 0.3)
    # which pass the step took, observed: its Python form with the dense
    # pass wrapped (the same returns as the compiled step)
    calls = []
    dense_pass = ns._nu_pass_dense

    def spy(*a):
        calls.append(1)
        return dense_pass(*a)

    x3, b3, u3, nu3 = np.full(n, np.nan), np.full(T, np.nan), np.full(n, np.nan), np.zeros(n)
    fl3, rj3 = np.ones(n, np.bool_), np.full(n, -9, np.int64)
    monkeypatch.setattr(ns, "_nu_pass_dense", spy)
    got3 = ns._kkt_core_thin.py_func(y, m.g1, m.g2, m.alpha, beta, md, 1.0, active, np.zeros((n, 3)),
                                     np.zeros((1, 4)), x3, b3, u3, nu3, fl3, rel, True, True,
                                     thin, rj3)
    assert got3 == want
    assert np.array_equal(x.view(np.int64), x3.view(np.int64))
    assert bool(calls) == dense
