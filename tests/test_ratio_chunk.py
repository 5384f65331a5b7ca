"""_subspace_riccati's drift ratio a22 = hn / hd: for mu >= 1 its rescaling
test runs once every 64 samples instead of after every sample.  The
rescale is by an exact power of two and every use of (hn, hd) is homogeneous
in them, so the gains must be the per-sample test's bit for bit, and hd must
never reach the subnormals (a run of free samples at mu = 1 shrinks it by
~0.62 a sample: without a rescale it underflows within ~1,500 samples)."""

import math

import numpy as np
import pytest

ns = pytest.importorskip("napari_catune._numba_solvers")


def _problem(n, free_share, seed):
    rng = np.random.default_rng(seed)
    y = np.concatenate([[0.0], rng.normal(0.0, 1.0, n)])
    active = rng.random(n) >= free_share
    return y, active


def _riccati(fn, y, active, mu, g1=1.6, g2=-0.64, beta=0.3):
    n = y.shape[0] - 1
    gain = np.zeros((n, 3))
    gb = np.zeros((n, 4))
    a22, q2, p0 = fn(y, g1, g2, beta, 2, mu, active, gain, gb)
    return a22, q2, p0, gain, gb


def _py_riccati(y, g1, g2, beta, mode, mu, active, gain, gb):
    # the recursion's body in plain Python (py_func of _subspace_riccati_ck)
    return ns._subspace_riccati_ck.py_func(y, g1, g2, beta, mode, mu, active, gain, gb,
                                           np.empty((0, 16)), y.shape[0] - 1)


@pytest.mark.parametrize("mu", [1.0, 1.0 + 2 ** -40, 3.7, 1e6])
@pytest.mark.parametrize("free_share", [1.0, 0.97, 0.5])
def test_the_chunked_test_gives_the_per_sample_tests_numbers(monkeypatch, mu, free_share):
    # plain Python floats (_py_riccati): the same IEEE operations in the same order;
    # _RATIO_CHUNK_MU = inf tests after every sample
    y, active = _problem(4000, free_share, seed=int(mu * 10) % 97)
    chunked = _riccati(_py_riccati, y, active, mu)
    monkeypatch.setattr(ns, "_RATIO_CHUNK_MU", math.inf)
    per_sample = _riccati(_py_riccati, y, active, mu)
    assert chunked[:3] == per_sample[:3]
    assert np.array_equal(chunked[3], per_sample[3])
    assert np.array_equal(chunked[4], per_sample[4])
    assert math.isfinite(chunked[0]) and chunked[0] >= 1.0


@pytest.mark.parametrize("mu", [0.25, 1.0, 2.0, 1e4])
def test_long_free_runs_stay_finite_and_match_python(mu):
    # compiled (numba may fuse multiply-adds: close, not bit for bit)
    y, active = _problem(200_000, 1.0, seed=3)
    a22, q2, p0, gain, gb = _riccati(ns._subspace_riccati, y, active, mu)
    assert math.isfinite(a22) and math.isfinite(q2) and p0 == 0
    assert np.isfinite(gb).all() and np.isfinite(gain).all()
    ref = _riccati(_py_riccati, y[:20_001], active[:20_000], mu)
    # the last 20,000 samples' gains do not depend on the earlier ones
    assert np.allclose(gb[-20_000:], ref[4], rtol=1e-9, atol=1e-12)


def test_the_fixed_points_are_reached():
    # all active: a22 <- mu a22 / (a22 + mu) + 1, fixed point a* = (1 +
    # sqrt(1 + 4 mu)) / 2; all free: r22 = a22 - 1 = 0 throughout, a22 = 1
    # exactly (hd shrinks by mu / (a* + mu) a sample: many rescales)
    for mu in (1.0, 9.0, 1e4):
        y, free = _problem(100_000, 1.0, seed=5)
        a22 = _riccati(ns._subspace_riccati, y, ~free, mu)[0]
        assert a22 == pytest.approx((1.0 + math.sqrt(1.0 + 4.0 * mu)) / 2.0, rel=1e-9)
        assert _riccati(ns._subspace_riccati, y, free, mu)[0] == 1.0
