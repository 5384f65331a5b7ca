"""The full step's memory layout on long traces (issue 12 at 1,000,000 frames):
the Riccati gains packed (a free sample's row next from the end, in order
of k), a flat step's constant baseline kept in bvec[0] only (filled by
pdas_one before anything reads it per sample), and the multipliers' passes'
software prefetch (``_numba_hints``).  Each is a change of storage only:
the same numbers as the per-sample layout."""

import numpy as np
import pytest
from numba import njit

from napari_catune import _numba_solvers as ns
from napari_catune import _numba_short as nsh
from napari_catune._numba_hints import AHEAD, prefetch
from napari_catune.simulation import REGIMES, regime_traces
from napari_catune.solver import KKT_TOL, _model_checked, kkt_violation


def _model(name):
    fs, tr, td, lam, *_ = REGIMES[name]
    return _model_checked(fs, tr, td, lam)


@pytest.mark.parametrize("name", ["GCaMP6f-30Hz", "lowSNR-30Hz", "lam0-30Hz"])
def test_every_riccati_writes_the_free_gains_packed_in_order(name):
    # the forward pass reads rows p0.. as it meets the free samples: each
    # writer puts sample k's gains at row p0 + (free samples before k)
    m = _model(name)
    y = regime_traces(name, 1, 3000, 4)[0]
    n = y.size - 1
    beta = m.lamG / m.alpha
    active = np.random.default_rng(1).random(n) < 0.6
    free = np.flatnonzero(~active)
    p0 = n - free.size
    # the per-sample layout, from the packed one of the plain recursion
    ref = np.full((n, 3), np.nan)
    g = np.full((n, 3), np.nan)
    assert ns._riccati_flat(y, m.g1, m.g2, beta, active, g)[2] == p0
    ref[free] = g[p0:]
    assert np.isnan(g[:p0]).all()  # rows below p0 untouched
    for mode in (0, 1):
        g2 = np.full((n, 3), np.nan)
        out = ns._subspace_riccati(y, m.g1, m.g2, beta, np.int64(mode), 0.0, active, g2,
                                   np.zeros((1, 4)))
        assert out[2] == p0
        np.testing.assert_array_equal(g2[p0:], ref[free])
    g3 = np.full((n, 3), np.nan)
    assert nsh.riccati_short(y, m.g1, m.g2, beta, active, g3)[2] == p0
    assert np.abs(g3[p0:] - ref[free]).max() <= 1e-9 * np.abs(ref[free]).max()
    # the subspace optimum read from the packed rows is the normal equations'
    # (the solve of test_solver_lam0), here checked through its fit: on the
    # free samples the spikes u = M x / alpha are unconstrained, so there the
    # gradient of the fit in x vanishes up to the L1 term
    x = np.empty(n)
    bvec = np.empty(y.size)
    ns._subspace_solve(y, m.g1, m.g2, m.alpha, beta, np.int64(1), 0.0, active,
                       np.empty((n, 3)), np.empty((1, 4)), x, bvec)
    x2 = np.empty(n)
    bvec2 = np.empty(y.size)
    u = np.empty(n)
    a22, q2, p = ns._riccati_flat(y, m.g1, m.g2, beta, active, g)
    ns._subspace_fwd_flat(y, m.g1, m.g2, m.alpha, np.int64(1), active, g, x2, bvec2, u, a22, q2,
                          p)
    np.testing.assert_array_equal(x2, x)
    assert bvec2[0] == bvec[0] and np.all(bvec == bvec[0])


@pytest.mark.parametrize("name", ["dense-30Hz", "lam1-30Hz", "lam0-30Hz"])
@pytest.mark.parametrize("mode", [0, 1])
def test_a_cold_flat_solve_fills_its_baseline(name, mode):
    # the flat steps keep b in bvec[0]; the local settle and the result read
    # bvec per sample: pdas_one fills it (a stale bvec would show in the
    # settle's steps, the KKT check and the fit).  A workspace left with a
    # wrong finite baseline gives the same answer and steps as a fresh one
    m = _model(name)
    y = regime_traces(name, 1, 20_000, 2)[0]
    T = y.size
    n = T - 1
    nf, nb = ns.workspace_sizes(T)
    runs = []
    for stale in (np.nan, 5.0):
        fws = np.full(nf, stale)
        bws = np.zeros(nb, bool)
        bvec = fws[0:T]
        active = np.full(n, m.lamG > 0.0)
        s = np.empty(T)
        it, ok = ns.pdas_one(y, m.g1, m.g2, m.alpha, m.lamG, np.int64(mode), 0.0, active,
                             np.int64(500), s, bvec, fws[T:], bws)
        runs.append((it, s.copy(), bvec.copy()))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    np.testing.assert_array_equal(runs[0][2], runs[1][2])
    assert ok and it <= 20
    assert np.all(bvec == bvec[0])
    if mode == 0:
        assert bvec[0] == 0.0
    fs, tr, td, lam, *_ = REGIMES[name]
    v = kkt_violation(y, s, bvec[0], fs, tr, td, lam, mode="scalar" if mode else "none")
    assert v <= KKT_TOL


@njit(cache=False)
def _sum_back(a, hint):
    t = 0.0
    for j in range(a.shape[0] - 1, -1, -1):
        if hint and (j & 7) == 0:
            prefetch(a, max(j - AHEAD, 0))
        t = 0.5 * t + a[j]
    return t


def test_the_solvers_prefetch_ahead_as_said():
    # (an _AHEAD of the solvers' own once shadowed the imported distance:
    # the passes prefetched 1 sample ahead)
    for f in (ns._nu_pass, ns._nu_pass_fma, ns._nu_riccati):
        assert f.py_func.__globals__["_PF_AHEAD"] == AHEAD == 256


def test_prefetch_is_a_hint():
    # the same numbers with or without, at either end of the array
    a = np.random.default_rng(0).random(5000)
    assert _sum_back(a, True) == _sum_back(a, False)
    assert _sum_back(a[:1], True) == a[0]
