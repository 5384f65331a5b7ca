"""A warm start's thinned block exchange from the list of flagged samples
that the multipliers' pass keeps (``_numba_solvers._kkt_core_thin``,
``_apply_thin``): the same flips as ``_numba_local.thin_flips`` run on the
step's flags, which the pass leaves whole.  Arrays compared, nothing
timed."""

import numpy as np
import pytest

from napari_catune import _numba_local as nl
from napari_catune import _numba_solvers as ns
from napari_catune.baseline import default_drift_scale, drift_mu
from napari_catune.simulation import regime_traces
from napari_catune.solver import _model_checked
from test_warm_slow import _params, _solve

BASELINES = {0: "none", 1: "scalar", 2: "drift"}


def _step(y, m, mode, mu, active, thin):
    """One warm phase-1 step (multiply-add multipliers, as pdas_one takes
    it); returns the flags, the spikes, the multipliers, the count and the
    list of the flagged samples (with its count)."""
    n = y.size - 1
    gain, gb = np.zeros((n, 3)), np.zeros((n, 4))
    x, u, nu, bvec = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(y.size)
    flip = np.zeros(n, bool)
    rej = np.full(n, -1, np.int64)
    n_bad, _last, _eu, _en, n_rej = ns._kkt_core_thin(
        y, m.g1, m.g2, m.alpha, m.lamG / m.alpha, np.int64(mode), mu, active.copy(), gain, gb,
        x, bvec, u, nu, flip, 1e-11, True, mode != 2, np.int64(thin), rej)
    return flip, u, nu, n_bad, rej, n_rej


@pytest.mark.parametrize("name", ["GCaMP6f-30Hz", "GCaMP6s-100Hz", "dense-30Hz"])
@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize("mv", ["td-50%", "lam/2", "td+2%"])
def test_thinning_in_the_pass_flips_what_thin_flips_flips(name, mode, mv):
    """The first warm step after a slider move (20,000 frames): the flags
    are those of the plain step, the pass lists them leftwards, and
    thinning that list gives exactly what thin_flips leaves of them."""
    T = 20_000
    y = regime_traces(name, 1, T, seed=2)
    prev = _solve(y, _params(name), BASELINES[mode])
    args = _params(name, mv)
    m = _model_checked(*args)
    mu = drift_mu(default_drift_scale(args[2]), args[0], args[2]) if mode == 2 else 0.0
    active = prev.activity[0, :T - 1] <= 0.0
    thin = max(1, int(ns._THIN_PEAK * nl.peak_samples(m.g1, m.g2)))
    flip0, *_ = _step(y[0], m, mode, mu, active, 0)
    flip, u, nu, n_bad, rej, n_rej = _step(y[0], m, mode, mu, active, thin)
    assert np.array_equal(flip, flip0)
    assert n_bad == flip.sum() > 0
    want = flip.copy()
    nl.thin_flips(active, want, u, nu, thin)
    assert n_rej == n_bad  # (no second look of the thresholds on these)
    assert np.array_equal(rej[:n_rej], np.flatnonzero(flip)[::-1])
    got = flip.copy()
    ns._apply_thin(active, got, u, nu, np.int64(thin), rej, np.int64(n_rej))
    assert np.array_equal(got, want)
    # where the list does not hold (n_rej -1), the pass itself
    got = flip.copy()
    ns._apply_thin(active, got, u, nu, np.int64(thin), rej, np.int64(-1))
    assert np.array_equal(got, want)


def test_large_moves_thin_many_flags():
    """(The test above must not pass where thinning drops nothing: after
    tau_decay -50 % on GCaMP6s at 100 Hz it drops most flags.)"""
    T = 20_000
    y = regime_traces("GCaMP6s-100Hz", 1, T, seed=2)
    prev = _solve(y, _params("GCaMP6s-100Hz"), "scalar")
    m = _model_checked(*_params("GCaMP6s-100Hz", "td-50%"))
    thin = max(1, int(ns._THIN_PEAK * nl.peak_samples(m.g1, m.g2)))
    active = prev.activity[0, :T - 1] <= 0.0
    flip, u, nu, n_bad, rej, n_rej = _step(y[0], m, 1, 0.0, active, thin)
    ns._apply_thin(active, flip, u, nu, np.int64(thin), rej, np.int64(n_rej))
    assert n_bad > 100 and flip.sum() < n_bad // 2
