"""The block QP's scratch shared across a settle's blocks (_coarse_blocks
allocates it once): _block_nnqp_ws with scratch left dirty by earlier,
larger blocks (or filled with garbage) takes the same steps to the same
answer as _block_nnqp_rec with fresh scratch; the scan's _none_flagged_at
is _none_flagged on the same stretch."""

import numpy as np

from napari_catune import _numba_block as nb
from napari_catune import _numba_solvers as ns
from napari_catune._numba_local import _gram_fill
from test_block_linear import _block_setup, _state


def test_block_qp_with_reused_dirty_scratch_as_with_fresh():
    m0, n, z, G, dp, rp, tol = _state()
    d, r, a2, thin, cand = _block_setup(m0, z, G, tol)
    rng = np.random.default_rng(0)
    bmax = 64
    fs = np.full(19 * bmax, np.nan)
    iw = np.full(2 * bmax, -1, np.int64)
    F = np.ones(bmax, np.bool_)
    cnt_ws = np.zeros(4, np.int64)
    checked = changed = 0
    for _trial in range(200):
        B = int(rng.integers(2, bmax + 1))
        lo = int(rng.integers(0, cand.size - B))
        C = cand[lo:lo + B].astype(np.int64)
        H = np.empty((B, B))
        _gram_fill(H, C, 0, B, n, dp, rp, d, r, a2)
        zb = z[C]
        if rng.random() < 0.5:  # a start with another free set
            zb = np.where(rng.random(B) < 0.5,
                          np.abs(rng.standard_normal(B)) * (np.abs(zb).max() + 1e-3), 0.0)
        c = G[C] - H @ zb
        tol_b = max(tol, ns._BLOCK_ROUND * (np.abs(G[C]) + np.abs(H) @ np.abs(zb)).max())
        mw = ns._BLOCK_WORK * B ** 3 + ns._BLOCK_WORK_MIN
        za = np.where(zb > 0, zb, 0.0)
        zr = za.copy()
        ba = np.zeros(B, np.bool_)
        br = np.zeros(B, np.bool_)
        ca = np.zeros(4, np.int64)
        wa, oka = nb._block_nnqp_rec(H, c, za, B, ba, C, thin, tol_b, mw, n, dp, rp, d, r, a2, ca)
        if rng.random() < 0.3:  # garbage, not only the last block's values
            fs[:] = rng.choice([np.nan, 1e300, -1.0])
            iw[:] = rng.integers(-5, 100)
            F[:] = rng.random() < 0.5
        c0 = cnt_ws.copy()
        wr, okr = nb._block_nnqp_ws(H, c, zr, B, br, C, thin, tol_b, mw, n, dp, rp, d, r, a2,
                                    cnt_ws, fs, iw, F)
        assert (wa, oka) == (wr, okr)
        assert np.array_equal(za, zr)
        assert np.array_equal(ba, br)
        assert np.array_equal(ca, cnt_ws - c0)
        checked += 1
        changed += int(np.any(za != np.where(zb > 0, zb, 0.0)))
    assert checked == 200 and changed > 50  # the blocks did move


def test_none_flagged_at_is_none_flagged_on_the_stretch():
    rng = np.random.default_rng(1)
    n = 4_000
    for _ in range(300):
        z = np.where(rng.random(n) < 0.002, rng.random(n), 0.0)
        G = rng.standard_normal(n) * 1e-3 + 2e-3
        G[rng.integers(0, n)] = -1.0 if rng.random() < 0.5 else 1.0
        tol = 1e-3
        lo = int(rng.integers(0, n - 1))
        hi = int(rng.integers(lo, n + 1))
        assert (ns._none_flagged_at(z, G, lo, hi, tol)
                == ns._none_flagged(z[lo:hi], G[lo:hi], tol))
