"""_affine_lam0's flags' pass from a candidates' list (thirty-first round):
_affine_flags_near's flags and list are affine_flags'; _affine_flags_cand's,
after segments re-solved and a move of b within the reach, are affine_flags'
on the changed state; whole _affine_lam0 solves with the candidates' passes
(_AFF_CAND_MIN lowered so that short traces take them) are bit for bit those
without (_AFF_CAND_USE 0)."""


import numpy as np
import pytest

from napari_catune import _numba_affine as na
from napari_catune import _numba_solvers as ns
from napari_catune.simulation import regime_traces
from napari_catune.solver import _model_checked as _model

from _variant import variant as _variant  # noqa: E402




def _state(rng, n, frac_active=0.1):
    active = rng.random(n) < frac_active
    w = rng.standard_normal(n) * rng.choice([1e-3, 1.0, 30.0], n)
    w1 = rng.standard_normal(n) * rng.choice([0.0, 1e-2, 1.0, 5.0], n)
    # signed zeros, values on their thresholds, a few NaN
    w[rng.random(n) < 0.01] = -0.0
    w1[rng.random(n) < 0.01] = -0.0
    return active, w, w1


def _flags(active, w, w1, db, eps_u, eps_nu):
    flip = np.zeros(active.shape[0], np.bool_)
    idx = np.full(active.shape[0], -7, np.int64)
    c = na.affine_flags(active, w, w1, db, eps_u, eps_nu, flip, idx)
    return c, flip, idx[:c].copy()


@pytest.mark.parametrize("seed", range(6))
def test_near_pass_is_affine_flags_and_lists_a_superset(seed):
    rng = np.random.default_rng(seed)
    for n in (1, 2, 7, 8, 9, 64, 1000, 20_001):
        active, w, w1 = _state(rng, n)
        eps_u, eps_nu = 10.0 ** rng.uniform(-12, -1), 10.0 ** rng.uniform(-12, -1)
        for db in (0.0, -0.0, 0.3, -2.5, 1e-9):
            # samples exactly on their thresholds at db (where db w1 is exact)
            on = rng.random(n) < 0.02
            w1[on] = 0.5
            w[on] = np.where(active[on], -eps_nu, -eps_u) - db * 0.5
            for reach in (0.0, 1e-6, 0.1, 3.0, np.inf):
                c0, f0, i0 = _flags(active, w, w1, db, eps_u, eps_nu)
                flip = np.zeros(n, np.bool_)
                idx = np.full(n, -7, np.int64)
                c1, n_c = ns._affine_flags_near(active, w, w1, db, eps_u, eps_nu, flip, idx,
                                                reach)
                assert c1 == c0 and np.array_equal(flip, f0) and np.array_equal(idx[:c1], i0)
                if n_c < 0:
                    continue
                cand = idx[n - n_c:]
                assert (np.diff(cand) > 0).all()
                assert set(i0) <= set(cand)


@pytest.mark.parametrize("seed", range(8))
def test_candidates_pass_after_segments_and_a_move(seed):
    rng = np.random.default_rng(100 + seed)
    for n in (50, 3_000, 40_000):
        for _rep in range(6):
            active, w, w1 = _state(rng, n, rng.uniform(0.0, 0.5))
            eps_u, eps_nu = 10.0 ** rng.uniform(-9, -2), 10.0 ** rng.uniform(-9, -2)
            db = rng.uniform(-1, 1)
            reach = 10.0 ** rng.uniform(-4, 0)
            # samples just beyond their candidates' bound (slopes of both
            # signs), which the largest move allowed brings nearest
            edge = rng.random(n) < 0.05
            ne = int(edge.sum())
            w1[edge] = rng.choice([-1.0, 1.0], ne) * rng.uniform(0.5, 2, ne)
            thr = np.where(active[edge], eps_nu, eps_u)
            w[edge] = (-thr + reach * np.abs(w1[edge]) * (1 + 1e-9)) - db * w1[edge]
            flip = np.zeros(n, np.bool_)
            idx = np.full(n, -7, np.int64)
            n_bad, n_c = ns._affine_flags_near(active, w, w1, db, eps_u, eps_nu, flip, idx,
                                               reach)
            if n_c < 0 or 3 * n_bad + n_c > n:
                continue
            # a settle: segments holding every listed violator re-solved
            # (new values, slopes and kinds there), recorded in the gap
            segs = idx[n_bad:n - n_c]
            n_seg = 0
            e = 0
            for i in range(n_bad):
                k = idx[i]
                if k < e:
                    continue
                a = max(0, k - int(rng.integers(0, 30)))
                e = min(n, k + 1 + int(rng.integers(0, 30)))
                active[a:e] = rng.random(e - a) < 0.5
                w[a:e] = rng.standard_normal(e - a)
                w1[a:e] = rng.standard_normal(e - a)
                segs[2 * n_seg] = a
                segs[2 * n_seg + 1] = e
                n_seg += 1
            for frac in (0.0, 0.3, 1.0):
                db2 = db + rng.choice([-1.0, 1.0]) * frac * ns._AFF_CAND_USE * reach
                c0, f0, i0 = _flags(active, w, w1, db2, eps_u, eps_nu)
                f1 = flip.copy()
                i1 = idx.copy()
                c1 = ns._affine_flags_cand(active, w, w1, db2, eps_u, eps_nu, f1, i1, n_c,
                                           segs.copy(), n_seg)
                assert c1 == c0 and np.array_equal(f1, f0) and np.array_equal(i1[:c1], i0)


_M = _model(30.0, 0.05, 0.5, 0.0)


def _ws(T):
    n = T - 1
    return dict(active=np.zeros(n, np.bool_), gain=np.zeros((n, 3)), x=np.zeros(n),
                z=np.zeros(n), w=np.zeros(n), w1=np.zeros(n), flip=np.zeros(n, np.bool_),
                idx=np.zeros(n, np.int64), bvec=np.full(T, np.nan), s_out=np.zeros(T))


@pytest.mark.parametrize("regime", ["lam0-30Hz", "jGCaMP8f-100Hz", "lowSNR-30Hz", "dense-30Hz"])
def test_affine_lam0_with_candidates_bit_for_bit(regime):
    from napari_catune.simulation import EXTRA_REGIMES, REGIMES

    fs, tr, td, _lam, _noise, _rate = {**REGIMES, **EXTRA_REGIMES}[regime]
    m = _model(fs, tr, td, 0.0)
    old = _variant(ns._affine_lam0, _AFF_CAND_USE=0.0, _AFF_OUT_MIN=2)
    new = _variant(ns._affine_lam0, _AFF_CAND_MIN=2, _AFF_OUT_MIN=2)
    for T, seed in ((3_000, 0), (20_000, 1), (60_000, 2), (150_000, 3)):
        y = np.ascontiguousarray(regime_traces(regime, 1, T, seed)[0], dtype=np.float64)
        for mode in (0, 1):
            outs = []
            for fn in (old, new, ns._affine_lam0):
                a = _ws(T)
                na.exact_fit_flags(y, m.g1, m.g2, m.alpha, mode, 1e-11, ns._COLD_FREE_THR,
                                   a["active"])
                r = fn(y, m.g1, m.g2, m.alpha, 0.0, np.int64(mode), a["active"], a["gain"],
                       a["x"], a["z"], a["w"], a["w1"], a["flip"], a["idx"], a["bvec"], 1e-11,
                       np.int64(300), ns._NO, 0.0, 0.0, ns._ZERO, a["s_out"], np.bool_(True))
                outs.append((r, a))
            (r0, a0), (r1, a1), (r2, a2) = outs
            assert r0 == r1 == r2
            for k in ("active", "s_out", "bvec", "w", "w1", "x", "z", "flip"):
                assert np.array_equal(a0[k], a1[k], equal_nan=True), (k, T, mode)
                assert np.array_equal(a0[k], a2[k], equal_nan=True), (k, T, mode)
