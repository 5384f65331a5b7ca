"""``_numba_local.local_exchange`` finds its next flagged sample eight at a
time where a word of ``flip`` holds none (the thirty-third round): every
flag pattern gives the sample-by-sample scan's active set, local solutions,
work and count left, bit for bit, at lengths around the word size, with
flags only in the last partial word, on the first or last sample of words,
and on real violators of a slider move (review rev33b: a skip to the end
once the scan reached the last partial word passed the older tests)."""

import numpy as np
import pytest
from _local_ref import local_exchange_ref

from napari_catune import _numba_local as nl
from napari_catune import solver as S
from napari_catune.baseline import drift_mu
from napari_catune.simulation import REGIMES, regime_traces
from test_solver_local import _full_step


def _patterns(real, n, rng):
    idx = np.arange(n)
    tail = idx >= (n >> 3) << 3
    pats = {"real": real,
            "real, last partial word only": real & tail,
            "every sample of the last partial word": tail.copy(),
            "last sample only": idx == n - 1,
            "first sample of each word": idx % 8 == 0,
            "last sample of each word": idx % 8 == 7,
            "one word in eight": (idx >> 3) % 8 == 1,
            "random 2 %": rng.random(n) < 0.02,
            "none": np.zeros(n, bool)}
    return pats


@pytest.mark.parametrize("name", ["jGCaMP8f-100Hz", "GCaMP6f-30Hz", "GCaMP6s-100Hz"])
@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize("T", [2, 5, 9, 10, 16, 17, 18, 66, 71, 1003, 5000])
def test_word_skip_is_the_sample_scan(name, mode, T):
    fs, tr, td, lam, *_ = REGIMES[name]
    y = regime_traces(name, 1, T, seed=3)[0]
    base = S.run_deconvolution_full(y, fs, tr, td, lam, baseline=("none", "scalar", "drift")[mode])
    m = S._model_checked(fs, tr, td * 1.5, lam)
    mu = drift_mu(None, fs, td * 1.5) if mode == 2 else 0.0
    n = T - 1
    active = base.activity[:n] <= 0
    _n_bad, eps_u, eps_nu, gain, x, bvec, u, nu, flip = _full_step(y, m, mode, mu, active.copy())
    rng = np.random.default_rng(T)
    seen_tail = 0
    for label, pat in _patterns(flip.copy(), n, rng).items():
        for budget in (n, 4 * n, 3):
            out = []
            for fn in (nl.local_exchange, local_exchange_ref):
                act, fl = active.copy(), np.ascontiguousarray(pat, dtype=bool)
                xs, us, nus = x.copy(), u.copy(), nu.copy()
                work, left = fn(y, bvec, m.g1, m.g2, m.alpha, m.lamG / m.alpha, act, fl, xs, us,
                                nus, gain.copy(), eps_u, eps_nu, n, budget)
                out.append((act, xs, us, nus, work, left))
            new, ref = out
            for a, b in zip(new[:4], ref[:4]):
                assert np.array_equal(a, b, equal_nan=True), (label, budget)
            assert new[4:] == ref[4:], (label, budget)
            if pat[(n >> 3) << 3:].any() and not np.array_equal(ref[0], active):
                seen_tail += 1
    # the last partial word's flags changed the active set somewhere (the
    # patterns reach the case the older tests missed)
    assert seen_tail > 0 or n % 8 == 0 or n < 8
