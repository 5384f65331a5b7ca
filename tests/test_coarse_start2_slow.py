"""The binned start's own binned start where the binned trace's cold solve
would go to the interior point (_numba_solvers._coarse2_slow, any mode,
length and lambda): on 54,000 frames at 1 kHz (binned by 32: 1,687 frames)
after the warm moves that restart from the binned start, the same binned
optimum as the cold solve of the binned trace, so the same guess; its steps
are the two binned solves' (counted, not timed).  Where the binned kernel is
fast enough for the cold exchange (tau_decay -50 %), the route is not taken."""

import numpy as np
import pytest

from napari_catune import _numba_solvers as ns
from napari_catune import solver as S
from napari_catune.baseline import drift_mu
from napari_catune.simulation import regime_traces

FS, TR, TD = 1000.0, 0.2, 3.0
MODES = {"scalar": 1, "drift": 2}


def _cold_guess(yc, g1c, g2c, alc, lam_c, mode, mu_c, k, T):
    """The guess of the binned trace's cold solve (the route before)."""
    Tc = yc.size
    nf2, nb2 = ns.workspace_sizes(Tc)
    act_c = np.ones(Tc - 1, bool)
    sc = np.zeros(Tc)
    bc = np.zeros(Tc)
    it, ok = ns.pdas_one(yc, g1c, g2c, alc, lam_c, np.int64(mode), mu_c, act_c, np.int64(250),
                         sc, bc, np.zeros(nf2), np.zeros(nb2, bool), 1e-11, ns._NO, ns._NO)
    assert ok
    guess = np.ones(T - 1, bool)
    off = (k - 1) // 2
    for j in np.flatnonzero(sc[:Tc - 1] > 0.0):
        guess[min(j * k + off, T - 2)] = False
    return guess, it


@pytest.mark.parametrize("lam", [0.0, 0.05, 0.025])
@pytest.mark.parametrize("mode", ["scalar", "drift"])
@pytest.mark.parametrize("td, slow", [(1.5 * TD, True), (TD, True), (0.5 * TD, False)])
def test_binned_start_at_54000_frames(mode, td, slow, lam):
    T = 54_000
    m = S._model_checked(FS, TR, td, lam)
    code = MODES[mode]
    mu = drift_mu(None, FS, td) if mode == "drift" else 0.0
    y = np.ascontiguousarray(regime_traces("slow-1kHz", 1, T, seed=0)[0])
    k = ns._coarse_factor(m.g1, m.g2, m.lamG, np.int64(T), True)
    Tc = T // k
    assert k >= 2 and Tc < ns._COARSE2_MIN_T
    g1c, g2c, alc = ns._coarse_model(m.g1, m.g2, m.alpha, k)
    assert bool(ns._coarse2_slow(g1c, g2c, np.int64(Tc))) == slow
    nf, nb = ns.workspace_sizes(T)
    fws = np.zeros(nf)
    bws = np.zeros(nb, bool)
    active = np.ones(T - 1, bool)
    it_c, ok = ns._coarse_start(y, m.g1, m.g2, m.alpha, m.lamG, np.int64(code), mu, k, active,
                                fws[T:], bws, np.int64(250))
    assert ok
    yc = fws[T:T + Tc].copy()
    guess, it_cold = _cold_guess(yc, g1c, g2c, alc, m.lamG / k, code, mu / k / k, k, T)
    np.testing.assert_array_equal(active, guess)
    assert (~active).sum() > 20
    if slow:
        # the twice-binned route: more (cheap) steps than the cold solve's
        # 12-14 on the binned trace, which went to the interior point
        assert it_c != it_cold
    else:
        assert it_c == it_cold

