"""_affine_flags_out: affine_flags' flags, and _affine_lam0's answer in the
same pass (bit for bit)."""

import numpy as np

from napari_catune import solver as S
from napari_catune._numba_affine import affine_flags, count_fit_flags
from napari_catune._numba_solvers import (_AFF_OUT_FRAC, _AFF_OUT_MIN, _NO, _ZERO,
                                          _affine_flags_out,
                                          _affine_lam0)
from napari_catune.simulation import REGIMES, regime_traces


def test_flags_out_matches_affine_flags_near_the_threshold():
    rng = np.random.default_rng(12)
    n = 40_000
    for db in (0.0, 0.37, -1.3e3, 2.5e-7):
        active = rng.random(n) < 0.3
        w1 = rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n)
        eps_u, eps_nu = 1e-9, 3e-10
        thr = np.where(active, eps_nu, eps_u)
        # w placed within a few ulps of the flag's boundary
        w = -thr - db * w1 + rng.integers(-3, 4, n) * np.spacing(np.abs(db * w1) + thr)
        f1 = np.zeros(n, np.bool_)
        f2 = np.zeros(n, np.bool_)
        i1 = np.zeros(n, np.int64)
        i2 = np.zeros(n, np.int64)
        s_out = np.full(n + 1, np.nan)
        k1 = affine_flags(active, w, w1, db, eps_u, eps_nu, f1, i1)
        k2 = _affine_flags_out(active, w, w1, db, eps_u, eps_nu, f2, i2, s_out)
        assert k1 == k2 and k1 > 0
        assert np.array_equal(f1, f2)
        assert np.array_equal(i1[:k1], i2[:k2])
        v = np.where(active, 0.0, w + db * w1)
        assert np.array_equal(s_out[:n], np.where(v > 0.0, v, 0.0))
        assert np.isnan(s_out[n])


def test_affine_lam0_answer_the_same_with_and_without_s_out():
    fs, tr, td, lam, _noise, _rate = REGIMES["lam0-30Hz"]
    m = S._model_checked(fs, tr, td, lam)
    T = 300_000
    y = regime_traces("lam0-30Hz", 1, T, 3)[0].copy()
    n = T - 1
    out = []
    for use_out in (False, True):
        active = np.zeros(n, np.bool_)
        count_fit_flags(y, m.g1, m.g2, 1, 0.03, 16, np.empty(n), active)
        gain = np.zeros((n, 3))
        x, z, w, w1 = (np.zeros(n) for _ in range(4))
        flip = np.zeros(n, np.bool_)
        idx = np.zeros(n, np.int64)
        bvec = np.zeros(T)
        s_out = np.full(T, np.nan) if use_out else np.zeros(0)
        st, ok, full = _affine_lam0(y, m.g1, m.g2, m.alpha, 0.0, 1, active, gain, x, z, w, w1,
                                    flip, idx, bvec, 1e-11, 100, _NO, 0.0, 0.0, _ZERO, s_out,
                                    np.bool_(True))
        assert ok
        s = s_out[:n].copy() if use_out else np.where(w > 0.0, w, 0.0)
        out.append((st, s, bvec[0], active.copy()))
    assert out[0][0] == out[1][0] and out[0][0] >= 2
    assert np.array_equal(out[0][1], out[1][1])
    assert out[0][2] == out[1][2]
    assert np.array_equal(out[0][3], out[1][3])
    assert _AFF_OUT_FRAC > 0 and T - 1 >= _AFF_OUT_MIN
