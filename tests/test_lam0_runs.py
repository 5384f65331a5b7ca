"""The cold lambda-0 row's thirtieth-round changes, each against the path it
replaced (a variant compiled from the same Python function with the old
constant or rule):

* _riccati_pk's lambda-0 runs of free pairs (q2 and a22 left as they are):
  the same gains, a22 and packed rows, q2 within rounding; a whole
  _affine_lam0 solve the same steps and set, its answer within rounding;
  lambda > 0 bit for bit;
* affine_settle's look-ahead (_prefetch): bit for bit;
* _affine_lam0's choice of the flags' pass that writes the answer
  (_aff_out_likely) and pdas_one's ``b_all``: bit for bit (bvec[0] alone
  where b_all is False)."""

import numpy as np
import pytest
from numba import njit

from napari_catune import _numba_affine as na
from napari_catune import _numba_solvers as ns
from napari_catune.simulation import regime_traces
from napari_catune.solver import _model_checked as _model

from _variant import variant as _variant  # noqa: E402




_M = _model(30.0, 0.05, 0.5, 0.0)


def _trace(T, seed):
    return np.ascontiguousarray(regime_traces("lam0-30Hz", 1, T, seed)[0], dtype=np.float64)


def _ws(T):
    n = T - 1
    return dict(active=np.zeros(n, np.bool_), gain=np.zeros((n, 3)), x=np.zeros(n),
                z=np.zeros(n), w=np.zeros(n), w1=np.zeros(n), flip=np.zeros(n, np.bool_),
                idx=np.zeros(n, np.int64), bvec=np.full(T, np.nan), s_out=np.zeros(T))


def _copy(a):
    return {k: v.copy() for k, v in a.items()}


def _first_set(y, a, count):
    m = _M
    if count:
        nu = np.zeros(y.shape[0] - 1)
        ns._lam0_first_flags(y, m.g1, m.g2, m.alpha, 1, 1e-11, a["active"], a["gain"], a["x"],
                             a["z"], a["w"], a["w1"], a["flip"], a["idx"], a["bvec"], nu, 500)
    else:
        na.exact_fit_flags(y, m.g1, m.g2, m.alpha, 1, 1e-11, ns._COLD_FREE_THR, a["active"])


def _affine(fn, y, a, s_out, b_all=True):
    m = _M
    return fn(y, m.g1, m.g2, m.alpha, 0.0, np.int64(1), a["active"], a["gain"], a["x"], a["z"],
              a["w"], a["w1"], a["flip"], a["idx"], a["bvec"], 1e-11, np.int64(200), ns._NO,
              0.0, 0.0, ns._ZERO, s_out, np.bool_(b_all))


_RIC_OLD = _variant(ns._riccati_pk, _RIC_RUNS=False)


@pytest.mark.parametrize("beta", [0.0, 0.37])
def test_riccati_runs_against_rounded_runs(beta):
    rng = np.random.default_rng(11)
    m = _M
    for T in (5, 9, 40, 3_000, 60_000):
        for frac in (0.0, 0.01, 0.05, 0.3, 1.0):
            y = 5.0 + np.cumsum(rng.standard_normal(T)) * 0.2 + rng.standard_normal(T)
            active = rng.random(T - 1) < frac
            outs = []
            for fn in (_RIC_OLD, ns._riccati_pk):
                gain = np.full((T - 1, 3), np.nan)
                g3 = np.full(T - 1, np.nan)
                ret = fn(y, m.g1, m.g2, beta, active, gain, g3)
                outs.append((ret, gain, g3))
            (r0, gain0, g30), (r1, gain1, g31) = outs
            assert (r1[0], r1[2], r1[3]) == (r0[0], r0[2], r0[3])
            assert np.array_equal(gain0, gain1, equal_nan=True)
            assert np.array_equal(g30, g31, equal_nan=True)
            if beta == 0.0:
                assert abs(r1[1] - r0[1]) <= 1e-13 * (1.0 + np.abs(y).sum())
            else:
                assert r1[1] == r0[1]


def _started(T, seed, count, copies):
    """A trace of T frames and ``copies`` identical workspaces holding its
    first set: (y, ws, ws, ...)."""
    y = _trace(T, seed)
    a = _ws(T)
    _first_set(y, a, count)
    return (y, a) + tuple(_copy(a) for _ in range(copies - 1))


def test_affine_solve_with_runs_against_rounded_runs():
    aff_old = _variant(ns._affine_lam0, _riccati_pk=_RIC_OLD)
    for T, seed, count in ((20_000, 0, False), (250_000, 1, True), (250_000, 2, False)):
        y, a, b = _started(T, seed, count, 2)
        st0, ok0, f0 = _affine(aff_old, y, a, a["s_out"])
        st1, ok1, f1 = _affine(ns._affine_lam0, y, b, b["s_out"])
        assert ok0 and ok1 and (st0, f0) == (st1, f1)
        assert np.array_equal(a["active"], b["active"])
        scale = np.abs(a["s_out"]).max()
        assert np.abs(a["s_out"] - b["s_out"]).max() <= 1e-12 * scale
        assert abs(a["bvec"][0] - b["bvec"][0]) <= 1e-12 * (1.0 + abs(a["bvec"][0]))


def test_settle_look_ahead_bit_for_bit():
    settle_old = _variant(na.affine_settle, _AFF_AHEAD=0)
    m = _M
    for T, seed in ((30_000, 3), (200_000, 4)):
        y = _trace(T, seed)
        a = _ws(T)
        n = T - 1
        _first_set(y, a, False)
        g3 = a["idx"].view(np.float64)
        a22, q2, p0, q0 = ns._riccati_pk(y, m.g1, m.g2, 0.0, a["active"], a["gain"], g3)
        bb = (y[0] - q2) / a22
        um, _r, _h = ns._affine_fwd_runs(y, m.g1, m.g2, m.alpha, a["active"], a["gain"], g3, p0,
                                         q0, bb, a["x"], a["z"], a["w"], a["w1"])
        eps_u = 1e-11 * um
        nb, lb, nm, noise, near = na.affine_nu(y, m.g1, m.g2, 0.0, a["active"], bb, a["x"],
                                               a["z"], a["w"], a["w1"], a["flip"], eps_u)
        nb, lb, eps_nu, _k = ns._kkt_flags(a["active"], a["w"], a["flip"], nb, lb, nm, noise,
                                           near, 1e-11)
        n_idx = ns._list_set(a["flip"], a["idx"])
        assert n_idx > 50
        b = _copy(a)
        rets = []
        for fn, c in ((settle_old, a), (na.affine_settle, b)):
            rets.append(fn(y, m.g1, m.g2, m.alpha, 0.0, c["active"], c["flip"], c["idx"], n_idx,
                           c["gain"], bb, 0.1, c["x"], c["z"], c["w"], c["w1"], eps_u, eps_nu,
                           4 * n, c["idx"][0:0]))
        assert rets[0] == rets[1]
        for k in a:
            assert np.array_equal(a[k], b[k], equal_nan=True), k


def test_prefetch_is_a_hint():
    @njit
    def touch(a, b, k):
        na._prefetch(a, k)
        na._prefetch(b, k)
        return a[0] + b[0, 0]

    a = np.arange(10.0)
    b = np.ones((5, 3))
    for k in (-(10 ** 9), -1, 0, 4, 10 ** 9):
        assert touch(a, b, np.int64(k)) == 1.0


@njit
def _old_rule(rate, move, g1, g2, alpha, eps_u):
    return True


def test_answer_pass_rule_and_b_all_bit_for_bit():
    # the answer written in the pass _aff_out_likely picks, or by the old
    # rule (violators settled alone), or after the pass: the same bits
    aff_old = _variant(ns._affine_lam0, _aff_out_likely=_old_rule)
    for T, seed, count in ((200_000, 5, True), (300_000, 6, True), (250_000, 7, False)):
        y, a, b, c = _started(T, seed, count, 3)
        r0 = _affine(aff_old, y, a, a["s_out"])
        r1 = _affine(ns._affine_lam0, y, b, b["s_out"])
        r2 = _affine(ns._affine_lam0, y, c, c["s_out"], b_all=False)
        assert r0 == r1 == r2 and r0[1]
        for k in ("active", "s_out", "w", "w1", "x", "z"):
            assert np.array_equal(a[k], b[k]) and np.array_equal(a[k], c[k]), k
        assert np.array_equal(a["bvec"], b["bvec"]) and (a["bvec"] == a["bvec"][0]).all()
        # b_all False: the baseline in bvec[0] alone
        assert c["bvec"][0] == a["bvec"][0] and np.isnan(c["bvec"][1:]).all()


def test_pdas_one_b_all():
    m = _M
    T = 250_000
    y = _trace(T, 8)
    n = T - 1
    nf, nb = ns.workspace_sizes(T)
    outs = []
    for b_all in (True, False):
        fws = np.zeros(nf - T)
        bws = np.zeros(nb - n, np.bool_)
        active = np.zeros(n, np.bool_)
        s = np.zeros(T)
        bvec = np.full(T, np.nan)
        it, ok = ns.pdas_one(y, m.g1, m.g2, m.alpha, m.lamG, np.int64(1), 0.0, active,
                             np.int64(2000), s, bvec, fws, bws, 1e-11, ns._NO, ns._NO,
                             ns._COLD_AT_ONCE, np.bool_(b_all))
        outs.append((it, ok, s, bvec, active))
    (it0, ok0, s0, b0, a0), (it1, ok1, s1, b1, a1) = outs
    assert ok0 and ok1 and it0 == it1
    assert np.array_equal(s0, s1) and np.array_equal(a0, a1)
    assert (b0 == b0[0]).all() and b1[0] == b0[0] and np.isnan(b1[1:]).all()
