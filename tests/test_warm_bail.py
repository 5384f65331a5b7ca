"""A large warm move on the 1 kHz kernel (54,000 frames) goes to the binned
start's block settle once its first step finds more than n / _BAIL_AT_ONCE
violators (_numba_solvers.pdas_one's ``at_once``, _coarse_row), not through
the dense settles: tau_decay +50 % and lambda /2 take the warm step, the
binned start's steps and the block settle's; the answer is the cold solve's
(objective within 1e-11), KKT-optimal.  Small moves stay warm (counted and
compared, not timed)."""

import numpy as np
import pytest

import napari_catune as nc
from napari_catune import _numba_solvers as ns
from napari_catune import solver as S
from napari_catune.baseline import drift_mu
from napari_catune.simulation import regime_traces

FS, TR, TD, LAM = 1000.0, 0.2, 3.0, 0.05
MODES = {"scalar": 1, "drift": 2}


def _binned_route(y, m, mode, mu):
    """Steps of _coarse_row's route after a bail (or a skipped warm step,
    tests/test_warm_skip.py): binned start, block settle, polish (the dense
    attempt skipped); its answer."""
    T = y.size
    n = T - 1
    code = np.int64(MODES[mode])
    nf, nb = ns.workspace_sizes(T)
    fws = np.zeros(nf)
    bws = np.zeros(nb, bool)
    pws, active = fws[T:], bws[4 * n:5 * n]
    b = np.zeros(T)
    k = ns._coarse_factor(m.g1, m.g2, m.lamG, np.int64(T), True)
    it_c, ok = ns._coarse_start(y, m.g1, m.g2, m.alpha, m.lamG, code, mu, k, active, pws, bws,
                                np.int64(250), ns._WARM_FIRST0)
    assert ok
    it_sp, s = _settle_polish(y, m, code, mu, active, pws, bws, b, ns._BLOCK_STEPS)
    return it_c + it_sp, s


def _settle_polish(y, m, code, mu, active, pws, bws, b, budget):
    """The warm 1 kHz route's block settle (warm thresholds, at most
    ``budget`` steps) and exact polish from the set ``active``: their steps
    and the answer."""
    s = np.zeros(y.size)
    it_s, settled = ns._coarse_settle(y, m.g1, m.g2, m.alpha, m.lamG, code, mu, active,
                                      np.int64(budget), s, b, pws, bws, ns._NO,
                                      ns._WARM_SETTLE_DIRECT, ns._WARM_SETTLE_RAW)
    assert settled
    it_p, _moved = ns._coarse_polish_blocks(y, m.g1, m.g2, m.alpha, m.lamG, code, mu, active, s,
                                            b, pws, bws, np.int64(200), ns._YES, 1e-12)
    return it_s + it_p, s


@pytest.mark.parametrize("mode", ["scalar", "drift"])
@pytest.mark.parametrize("key, f", [("td", 1.5), ("lam", 0.5), ("td", 1.02), ("fs", 0.99)])
def test_large_warm_moves_take_the_binned_block_route(mode, key, f):
    assert ns._WARM_BAIL_BLOCKS and ns._BAIL_AT_ONCE > ns._COLD_AT_ONCE
    y = regime_traces("slow-1kHz", 1, 54_000, 0)[0]
    base = nc.run_deconvolution_full(y, FS, TR, TD, LAM, baseline=mode)
    p = {"fs": FS, "td": TD, "lam": LAM}
    p[key] *= f
    warm = nc.run_deconvolution_full(y, p["fs"], TR, p["td"], p["lam"], baseline=mode,
                                     init=base.activity)
    assert bool(np.all(warm.converged))
    m = S._model_checked(p["fs"], TR, p["td"], p["lam"])
    steps = int(np.sum(warm.iterations))
    if f in (1.5, 0.5):
        # the warm step, then the binned start's route
        mu = drift_mu(None, p["fs"], m._taus[1]) if mode == "drift" else 0.0
        it_r, s_r = _binned_route(np.ascontiguousarray(y), m, mode, mu)
        assert steps == 1 + it_r
        assert np.array_equal(np.ravel(warm.activity), s_r)
    else:
        # a small move settles warm in 2 steps (dense settles), no binned start
        assert steps == 2
    cold = nc.run_deconvolution_full(y, p["fs"], TR, p["td"], p["lam"], baseline=mode)
    code = MODES[mode]
    mu = drift_mu(None, p["fs"], p["td"]) if mode == "drift" else 0.0
    f_w, f_c = S._objective_rows(np.stack([y, y]), np.stack([np.ravel(warm.activity),
                                                              np.ravel(cold.activity)]),
                                 m, code, mu)
    assert abs(float(f_w) - float(f_c)) <= 1e-11 * abs(float(f_c))
