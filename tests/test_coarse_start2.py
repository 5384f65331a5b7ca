"""The binned start's own binned start at lambda 0 (_numba_solvers._coarse_start2):
the binned trace solved from the optimum of it binned again, warm, reaches the
same binned optimum as its cold solve, so the block settle gets the same guess."""

import numpy as np
import pytest

from napari_catune import _numba_solvers as ns
from napari_catune import solver as S
from napari_catune.simulation import regime_traces

FS, TR, TD = 1000.0, 0.2, 3.0


@pytest.mark.parametrize("T, seed", [(300_000, 5), (400_000, 2)])
def test_binned_start_from_its_own_binned_start_gives_the_cold_guess(T, seed):
    m = S._model_checked(FS, TR, TD, 0.0)
    y = np.ascontiguousarray(regime_traces("lam0-slow-1kHz", 1, T, seed=seed)[0])
    k = ns._coarse_factor(m.g1, m.g2, m.lamG, np.int64(T), True)
    Tc = T // k
    assert k >= 2 and Tc >= ns._COARSE2_MIN_T  # (the route under test is taken)
    nf, nb = ns.workspace_sizes(T)
    fws = np.zeros(nf)
    bws = np.zeros(nb, bool)
    active = np.ones(T - 1, bool)
    it_c, ok = ns._coarse_start(y, m.g1, m.g2, m.alpha, m.lamG, np.int64(1), 0.0, k, active,
                                fws[T:], bws, np.int64(250))
    assert ok
    # the binned trace _coarse_start formed (left at the start of its workspace),
    # solved cold as before
    yc = fws[T:T + Tc].copy()
    g1c, g2c, alc = ns._coarse_model(m.g1, m.g2, m.alpha, k)
    nf2, nb2 = ns.workspace_sizes(Tc)
    act_c = np.ones(Tc - 1, bool)
    sc = np.zeros(Tc)
    bc = np.zeros(Tc)
    _it, ok_cold = ns.pdas_one(yc, g1c, g2c, alc, 0.0, np.int64(1), 0.0, act_c, np.int64(250),
                               sc, bc, np.zeros(nf2), np.zeros(nb2, bool), 1e-11, ns._NO, ns._NO)
    assert ok_cold
    guess = np.ones(T - 1, bool)
    off = (k - 1) // 2
    for j in np.flatnonzero(sc[:Tc - 1] > 0.0):
        guess[min(j * k + off, T - 2)] = False
    np.testing.assert_array_equal(active, guess)
    assert (~active).sum() > 100
    # (steps of both binned solves counted)
    assert it_c > 0
