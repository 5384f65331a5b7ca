"""_kkt_flags_one (the thresholds' second look in one pass over the flagged
range) against _kkt_flags (two passes over the trace): the same flags and
returns, also where the rounding floor decides."""
import numpy as np
import pytest

from napari_catune import _numba_solvers as ns


def _case(rng, n, free_bad, noise_scale):
    active = rng.random(n) < 0.7
    nu = rng.standard_normal(n) * np.where(rng.random(n) < 0.5, 1e-3, 1.0)
    flip = np.where(active, nu < 0.0, False)
    if free_bad:
        flip |= ~active & (rng.random(n) < 0.01)
    # no flag outside a window (first_bad .. last_bad)
    lo, hi = sorted(rng.integers(0, n, 2))
    flip[:lo] = False
    flip[hi + 1:] = False
    idx = np.flatnonzero(flip)
    n_bad = idx.size
    last_bad = int(idx[-1]) if n_bad else -1
    first_bad = int(idx[0]) if n_bad else 0
    fa = flip & active
    nu_max = float(np.abs(nu[active]).max())
    near = float(nu[fa].max()) if fa.any() else -np.inf
    far = float(nu[fa].min()) if fa.any() else np.inf
    noise = noise_scale * nu_max
    return active, nu, flip, n_bad, last_bad, nu_max, noise, near, far, int(fa.sum()), first_bad


@pytest.mark.parametrize("free_bad", [False, True])
def test_flags_one_pass_equals_two(free_bad):
    rng = np.random.default_rng(7 + free_bad)
    looks = floors = 0
    for trial in range(400):
        n = int(rng.integers(1, 400))
        rel_eps = 10.0 ** rng.uniform(-6, -1)
        noise_scale = rel_eps * 10.0 ** rng.uniform(-2, 2)
        (active, nu, flip, n_bad, last_bad, nu_max, noise, near, far, n_act,
         first_bad) = _case(rng, n, free_bad, noise_scale)
        f1 = flip.copy()
        f2 = flip.copy()
        ref = ns._kkt_flags(active, nu, f1, n_bad, last_bad, nu_max, noise, near, rel_eps)
        out = ns._kkt_flags_one(active, nu, f2, n_bad, last_bad, nu_max, noise, near, rel_eps,
                                far, n_act, first_bad)
        assert out == ref
        np.testing.assert_array_equal(f1, f2)
        if not ref[3]:
            looks += 1
            floors += ref[2] == 4.0 * noise and ref[2] != rel_eps * nu_max
    # the second look ran, with and without the rounding floor
    assert looks > 50
    assert 10 < floors < looks


def test_nu_pass_figures():
    """The multipliers' passes report far, n_act and first_bad as
    _kkt_flags_one reads them."""
    rng = np.random.default_rng(3)
    from napari_catune.simulation import regime_traces
    y = regime_traces("dense-30Hz", 1, 3000, 1)[0]
    n = y.size - 1
    g1, g2, alpha = 1.6, -0.64, 1.0
    active = rng.random(n) < 0.6
    x = rng.standard_normal(n)
    u = rng.standard_normal(n)
    bvec = np.full(n + 1, 0.3)
    for fn in ("_nu_pass", "_nu_pass_fma"):
        nu = np.zeros(n)
        flip = np.zeros(n, bool)
        args = (y, g1, g2, 0.05, active, x, bvec, u, nu, flip, 0.5, ns._ALL_B)
        if fn == "_nu_pass":
            out = ns._nu_pass(*args)
            far, n_act, first_bad = out[5:]
        else:
            out = ns._nu_pass_fma(*args, np.int64(0), np.zeros(0, np.int64))
            far, n_act, first_bad = out[6:]
        fa = flip & active
        assert fa.any() and (flip & ~active).any()
        assert far == nu[fa].min()
        assert n_act == fa.sum()
        assert first_bad == np.flatnonzero(flip)[0]
        assert out[1] == np.flatnonzero(flip)[-1]
