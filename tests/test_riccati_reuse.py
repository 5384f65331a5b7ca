"""A warm drift step's Riccati recursion restarted above the highest sample
changed since the last step (``_numba_solvers._subspace_riccati_ck``,
``_kkt_core_ck``): the same gains and value function as a whole run of
``_subspace_riccati``, bit for bit.  Arrays compared, nothing timed."""

import numpy as np
import pytest

from napari_catune import _numba_solvers as ns
from napari_catune.baseline import default_drift_scale, drift_mu
from napari_catune.simulation import regime_traces
from napari_catune.solver import _model_checked
from test_warm_slow import _params

C = ns._RATIO_CHUNK


def _setup(name, T, seed):
    y = regime_traces(name, 1, T, seed=seed)[0]
    fs, tr, td, lam = _params(name)
    m = _model_checked(fs, tr, td, lam)
    mu = drift_mu(default_drift_scale(td), fs, td)
    assert mu >= ns._RATIO_CHUNK_MU
    return y, m, mu


def _whole(y, m, mu, active):
    n = y.size - 1
    gain, gb = np.zeros((n, 3)), np.zeros((n, 4))
    out = ns._subspace_riccati(y, m.g1, m.g2, m.lamG / m.alpha, np.int64(2), mu, active, gain,
                               gb)
    return out, gain, gb


@pytest.mark.parametrize("name", ["dense-30Hz", "calab-gcamp6s-30Hz", "lowSNR-30Hz"])
@pytest.mark.parametrize("seed", [0, 1])
def test_restarted_recursion_is_the_whole_one(name, seed):
    T = 6_001
    y, m, mu = _setup(name, T, seed)
    n = T - 1
    rng = np.random.default_rng(seed)
    active = rng.random(n) > 0.3
    beta = m.lamG / m.alpha
    ck = np.zeros((n // C + 2, 16))
    gain, gb = np.zeros((n, 3)), np.zeros((n, 4))
    first = ns._subspace_riccati_ck(y, m.g1, m.g2, beta, np.int64(2), mu, active, gain, gb, ck,
                                    np.int64(n))
    want, wgain, wgb = _whole(y, m, mu, active)
    assert first == want
    assert np.array_equal(gain[want[2]:], wgain[want[2]:]) and np.array_equal(gb, wgb)
    for hc in (17, 2_345, 4_100, n - 3):
        changed = active.copy()
        changed[rng.integers(0, hc, 5)] ^= True
        changed[hc] ^= True
        hi0 = n - ((n - hc - 1) // C) * C
        assert hc < hi0 <= n
        got = ns._subspace_riccati_ck(y, m.g1, m.g2, beta, np.int64(2), mu, changed, gain, gb,
                                      ck, np.int64(hi0))
        want, wgain, wgb = _whole(y, m, mu, changed)
        assert got == want, hc
        assert np.array_equal(gain[want[2]:], wgain[want[2]:]), hc
        assert np.array_equal(gb, wgb), hc
        active = changed


def test_a_restart_below_a_change_is_not_the_whole_recursion():
    """The check above can fail: restarted below the highest change, the
    recursion keeps the old set's value function there."""
    T = 6_001
    y, m, mu = _setup("dense-30Hz", T, 0)
    n = T - 1
    active = np.random.default_rng(3).random(n) > 0.3
    beta = m.lamG / m.alpha
    ck = np.zeros((n // C + 2, 16))
    gain, gb = np.zeros((n, 3)), np.zeros((n, 4))
    ns._subspace_riccati_ck(y, m.g1, m.g2, beta, np.int64(2), mu, active, gain, gb, ck,
                            np.int64(n))
    changed = active.copy()
    changed[n - 2 * C - 5] ^= True
    hi0 = n - 3 * C  # below the change
    got = ns._subspace_riccati_ck(y, m.g1, m.g2, beta, np.int64(2), mu, changed, gain, gb, ck,
                                  np.int64(hi0))
    want, _g, wgb = _whole(y, m, mu, changed)
    assert got != want or not np.array_equal(gb, wgb)


def test_highest_change():
    a = np.zeros(100, bool)
    b = a.copy()
    assert ns._highest_change(a, b, 100) == -1
    b[7] = True
    b[42] = True
    assert ns._highest_change(a, b, 100) == 42
