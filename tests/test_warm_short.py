"""The short-chain recursions of a warm start's steps (``_numba_short``):
the same subspace optimum as the plain recursions (to rounding), the same
violators, and on the slider path the same steps.  Counted, not timed."""

import numpy as np
import pytest

from napari_catune import _numba_local as nl
from napari_catune import _numba_short as nsh
from napari_catune import _numba_solvers as ns
from napari_catune.simulation import regime_traces
from napari_catune.solver import _model_checked
from test_warm_slow import _objective, _params, _solve

REGIMES = ["GCaMP6f-30Hz", "calab-gcamp6s-30Hz", "lowSNR-30Hz"]


def _problem(name, baseline="scalar", T=20_000, mv="td+50%"):
    """A trace, the kernel after the move ``mv`` and the active set of the
    answer before it (a warm start's first guess)."""
    y = regime_traces(name, 1, T, seed=1)
    prev = _solve(y, _params(name), baseline)
    m = _model_checked(*_params(name, mv))
    return y[0], m, prev.activity[0, :T - 1] <= 0.0


def _step(y, m, mode, active, short):
    n = y.size - 1
    gain = np.zeros((n, 3))
    gb = np.zeros((n, 4))
    x, u, nu = np.zeros(n), np.zeros(n), np.zeros(n)
    bvec = np.zeros(y.size)
    flip = np.zeros(n, bool)
    n_bad, last, eps_u, eps_nu = ns._kkt_core(y, m.g1, m.g2, m.alpha, m.lamG / m.alpha,
                                              np.int64(mode), 0.0, active.copy(), gain, gb, x,
                                              bvec, u, nu, flip, 1e-11, True, short)
    return n_bad, flip, x, bvec, u, eps_u, eps_nu


@pytest.mark.parametrize("name", REGIMES)
@pytest.mark.parametrize("mode", [0, 1])
def test_short_riccati_gives_the_plain_step(name, mode):
    """A warm start's first full step after tau_decay +50 % (20,000 frames):
    the short-chain recursion's calcium, baseline and spikes agree with the
    plain recursion's to 1e-9 of their size, and it flags the same
    violators."""
    y, m, active = _problem(name)
    plain = _step(y, m, mode, active, False)
    short = _step(y, m, mode, active, True)
    assert plain[0] > 100  # a large move: many violators
    assert short[0] == plain[0]
    assert np.array_equal(short[1], plain[1])
    for a, b in zip(short[2:5], plain[2:5]):
        assert np.abs(a - b).max() <= 1e-9 * np.abs(b).max()


def test_short_riccati_returns_the_plain_value_function():
    """riccati_short against _subspace_riccati (mode 1) on a random active
    set: gains and the value function before sample 0 to 1e-9."""
    rng = np.random.default_rng(0)
    y, m, _active = _problem("GCaMP6s-30Hz", T=5_000)
    n = y.size - 1
    active = rng.random(n) > 0.1
    g_p, g_s = np.zeros((n, 3)), np.zeros((n, 3))
    a22p, q2p, p0p = ns._subspace_riccati(y, m.g1, m.g2, m.lamG / m.alpha, np.int64(1), 0.0, active,
                                     g_p, np.zeros((1, 4)))
    a22s, q2s, p0s = nsh.riccati_short(y, m.g1, m.g2, m.lamG / m.alpha, active, g_s)
    # the free samples' gains, packed at the end in order of k
    assert p0s == p0p == n - int((~active).sum())
    for j in range(3):
        assert np.abs(g_s[p0s:, j] - g_p[p0s:, j]).max() <= 1e-9 * np.abs(g_p[p0s:, j]).max()
    assert abs(a22s - a22p) <= 1e-12 * a22p
    assert abs(q2s - q2p) <= 1e-9 * abs(q2p)


@pytest.mark.parametrize("name", REGIMES)
def test_short_local_settle_settles_the_same_sets(name):
    """The local settle after a full step of a warm start (the baseline
    fixed, drift): with the short-chain recursion it solves as many samples
    and leaves the same active set as with the plain one."""
    y, m, active = _problem(name, baseline="drift", mv="td-2%")
    n = y.size - 1
    n_bad, flip, x, bvec, u, eps_u, eps_nu = _step(y, m, 1, active, False)
    assert n_bad > 0
    nu = np.zeros(n)
    out = []
    for short in (False, True):
        act, fl = active.copy(), flip.copy()
        xs, us, nus = x.copy(), u.copy(), nu.copy()
        work, left = nl.local_exchange(y, bvec, m.g1, m.g2, m.alpha, m.lamG / m.alpha, act, fl,
                                       xs, us, nus, np.zeros((n, 3)), eps_u, eps_nu, n, 4 * n,
                                       np.int64(8), np.int64(32), np.int64(0), np.int64(0),
                                       short)
        out.append((work, left, act, xs))
    assert out[0][0] == out[1][0] and out[0][1] == out[1][1]
    assert np.array_equal(out[0][2], out[1][2])
    assert np.abs(out[0][3] - out[1][3]).max() <= 1e-9 * np.abs(out[0][3]).max()


@pytest.mark.parametrize("name", REGIMES)
def test_large_warm_moves_settle_exact_in_the_steps_counted(name):
    """Scalar baseline, 20,000 frames, the large moves: the warm re-solve
    (short-chain steps) is KKT-optimal at the cold solve's objective and
    takes no more steps than it."""
    y = regime_traces(name, 1, 20_000, seed=1)
    prev = _solve(y, _params(name), "scalar")
    for mv in ("td+50%", "td-50%", "tr+20%", "lam*2", "lam/2"):
        args = _params(name, mv)
        warm = _solve(y, args, "scalar", init=prev.activity)
        cold = _solve(y, args, "scalar")
        assert warm.converged.all() and cold.converged.all(), mv
        assert warm.iterations[0] <= cold.iterations[0], (mv, warm.iterations, cold.iterations)
        fw, fc = _objective(y, warm, args, "scalar"), _objective(y, cold, args, "scalar")
        assert abs(fw - fc) <= 1e-9 * abs(fc), mv
