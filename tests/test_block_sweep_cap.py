"""The block settle's sweep cap (_numba_solvers._coarse_blocks with cost_cap,
as _coarse_settle calls it): sweeps counted, the gradient kept exact, the
settle's answer still the optimum."""

import numpy as np
import pytest
from scipy.signal import lfilter

from napari_catune import _numba_local as nl
from napari_catune import _numba_solvers as ns
from napari_catune import solver as S
from napari_catune.simulation import regime_traces
from napari_catune.solver import reconvolve

FS, TR, TD = 1000.0, 0.2, 3.0


def _trace(T, rate, noise):
    # lambda 0 at 1 kHz: the slow kernel, Poisson spikes at `rate` Hz
    rng = np.random.default_rng(3)
    sp = (rng.random(T) < rate / FS) * rng.exponential(1.0, T)
    return (reconvolve(sp[None], FS, TR, TD) + noise * rng.standard_normal((1, T)) + 2.0)[0]


def _first_block_call(y, cap, lam=0.0):
    """_coarse_settle's first block call: the binned guess, its full step,
    then the blocks on the step's spikes and multipliers.  Returns the
    sweeps and the largest error of the gradient's change (relative)."""
    m = S._model_checked(FS, TR, TD, lam)
    g1, g2, al = m.g1, m.g2, m.alpha
    T = y.size
    n = T - 1
    nf, nb = ns.workspace_sizes(T)
    fws = np.zeros(nf)
    bws = np.zeros(nb, bool)
    active = np.zeros(n, bool)
    k = ns._coarse_factor(g1, g2, m.lamG, np.int64(T), True)
    assert k >= 2
    _it, ok = ns._coarse_start(y, g1, g2, al, m.lamG, np.int64(1), 0.0, k, active, fws[T:], bws,
                               np.int64(250))
    assert ok
    pws = fws[T:]
    bvec = fws[:T]
    gain, gb, x, u, nu, _s, _work, _gb, _rest = ns._coarse_views(pws, n, T, np.int64(1))
    _bad, _last, _eps_u, eps_nu = ns._kkt_core(y, g1, g2, al, m.lamG / al, np.int64(1), 0.0, active,
                                               gain, gb, x, bvec, u, nu, bws[0:n], 1e-11,
                                               ns._YES)
    z = np.where(~active, u[:n], 0.0)
    G = al * nu[:n].copy()
    z0 = z.copy()
    G0 = G.copy()
    dp = np.empty(n + 2)
    rp = np.empty(n + 2)
    sums = np.empty((2, n + 1))
    ns._coarse_tables(g1, g2, n, dp, rp, sums)
    thin = max(1, int(ns._THIN_PEAK * nl.peak_samples(g1, g2)))
    wz = np.zeros(n)
    tol = max(al * eps_nu, 1e-13 * np.max(np.abs(G)))
    sweeps, _quiet = ns._coarse_blocks(g1, g2, al, z, G, tol, thin, dp, rp, sums, np.zeros(n + 1),
                                       wz, ns._NO, np.int64(ns._BLOCK_SWEEPS), cap,
                                       np.int64(ns._BLOCK_MAX), float(np.max(np.abs(G))))
    assert not np.any(wz)
    # G moved by exactly alpha^2 K'K (z - z0) (the step's multipliers carry
    # their own rounding floor, ~1e-7 of max|G|: not the sweeps')
    c = np.r_[0.0, al * lfilter([1.0], [1.0, -g1, -g2], z - z0)]
    change = al * lfilter([1.0], [1.0, -g1, -g2], c[1:][::-1])[::-1]
    return sweeps, np.max(np.abs(G - G0 - change)) / np.max(np.abs(G0))


def test_sweep_cap_stops_a_costly_block_call_after_the_minimum_sweeps():
    # lambda 0, 30,000 frames, 8 Hz: ~400 free samples, 11-13 blocks solved
    # a sweep, beyond the cap (0.3 a decay length of 3,000 samples: 3): 3
    # sweeps (uncapped 8), G kept exact
    y = _trace(30_000, 8.0, 0.3)
    free, err_free = _first_block_call(y, ns._NO)
    capped, err_capped = _first_block_call(y, ns._YES)
    assert free > ns._BLOCK_SWEEPS_MIN
    assert capped == ns._BLOCK_SWEEPS_MIN
    assert max(err_free, err_capped) < 1e-10


def test_sweep_cap_leaves_a_cheap_block_call_alone():
    # the grid's slow kernel at lambda 0.1, 400,000 frames: 14 blocks solved
    # in the first sweep, 12 in the third, below the cap (0.3 a decay length
    # of 3,000 samples: 40): the same sweeps either way (8)
    y = regime_traces("slow-1kHz", 1, 400_000, seed=5)[0]
    capped, _err = _first_block_call(y, ns._YES, 0.1)
    assert capped == _first_block_call(y, ns._NO, 0.1)[0] > ns._BLOCK_SWEEPS_MIN


@pytest.mark.parametrize("rate, noise", [(8.0, 0.3), (16.0, 1.0)])
def test_capped_settle_reaches_the_plain_cold_optimum(rate, noise):
    # where the cap stops the settle's sweeps, its next full steps and the
    # polish still settle: converged, at the plain cold path's objective
    T = 30_000 if rate == 8.0 else 20_000
    y = _trace(T, rate, noise)
    assert _first_block_call(y, ns._YES)[0] == ns._BLOCK_SWEEPS_MIN
    m = S._model_checked(FS, TR, TD, 0.0)
    n = T - 1
    nf, nb = ns.workspace_sizes(T)
    s = np.zeros((1, T))
    it = np.zeros(1, np.int64)
    conv = np.zeros(1, bool)
    ns.pdas_rows(y[None], y[None], False, m.g1, m.g2, m.alpha, m.lamG, m.G, np.int64(1), 0.0,
                 1e-7, np.int64(500), s, np.zeros((1, 1)), np.zeros((1, T)), it, conv,
                 np.zeros(nf), np.zeros(nb, bool))
    assert conv[0]
    s_p = np.zeros(T)
    _it, _ok = ns.pdas_one(y, m.g1, m.g2, m.alpha, m.lamG, np.int64(1), 0.0, np.zeros(n, bool),
                           np.int64(2000), s_p, np.zeros(T), np.zeros(nf)[T:],
                           np.zeros(nb, bool), 1e-11, False)
    f = np.zeros(2)
    ns.objective_rows(np.vstack([y, y]), np.vstack([s[0], s_p]), m.g1, m.g2, m.alpha, m.lamG,
                      np.int64(1), 0.0, f)
    assert f[0] <= f[1] + 1e-10 * abs(f[1]), f
