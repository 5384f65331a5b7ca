"""Replay the recorded block QPs (record.py -> blocks2.pkl): cycles per block
(rdtsc, min over interleaved repeats) of A = _block_factor + _block_nnqp
and B = _numba_block._block_nnqp_rec (as _coarse_block_solve calls them),
their counts, the answers' difference and both KKT residuals.

    PYTHONPATH=src:bench/bq2 NUMBA_CACHE_DIR=... python bench/bq2/replay3.py /tmp/bq2/blocks2.pkl 5
"""
import sys, pickle, numpy as np
from numba import njit
from replay import rdtsc, run_a, kkt
from napari_catune import _numba_block as nb
from napari_catune import _numba_solvers as ns


@njit(nogil=True)
def run_b(H, c, z0, C, thin, tol_b, budget, n, dp, rp, d, r, a2, zout, cnt):
    m = H.shape[0]
    blocked = np.zeros(m, np.bool_)
    t0 = rdtsc()
    for i in range(m):
        zout[i] = z0[i] if z0[i] > 0.0 else 0.0
    for k in range(4):
        cnt[k] = 0
    w, ok = nb._block_nnqp_rec(H, c, zout, m, blocked, C, thin, tol_b, budget, n, dp, rp, d, r,
                               a2, cnt)
    return rdtsc() - t0, ok


if __name__ == "__main__":
    recs = pickle.load(open(sys.argv[1], 'rb'))
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    tables = {}
    for tag, blocks in recs.items():
        ca = np.full(len(blocks), np.inf); cb = np.full(len(blocks), np.inf)
        same = 0; worst_a = worst_b = 0.0; dzmax = 0.0; fails = 0
        for b, (H, c, z0, C, thin, tol_b, budget, d, r, a2, n) in enumerate(blocks):
            key = (d, r, n)
            if key not in tables:
                dp = np.empty(n + 2); rp = np.empty(n + 2)
                ns._coarse_powers(d, r, n, dp, rp)
                tables = {key: (dp, rp)}
            dp, rp = tables[key]
            m = H.shape[0]
            za = np.empty(m); zb = np.empty(m); cna = np.zeros(4, np.int64); cnb = np.zeros(4, np.int64)
            for k in range(reps):
                t, ok, p = run_a(H, c, z0, C, thin, tol_b, budget, za, cna)
                ca[b] = min(ca[b], t)
                t, okb = run_b(H, c, z0, C, thin, tol_b, budget, n, dp, rp, d, r, a2, zb, cnb)
                cb[b] = min(cb[b], t)
            fails += not okb
            same += np.array_equal(cna, cnb)
            ra = kkt(H, c, za, tol_b); rb = kkt(H, c, zb, tol_b)
            worst_a = max(worst_a, ra[0] / tol_b, ra[1] / tol_b)
            worst_b = max(worst_b, rb[0] / tol_b, rb[1] / tol_b)
            dzmax = max(dzmax, np.max(np.abs(za - zb)) / max(1e-300, np.max(np.abs(za))))
        print(f"{tag}: {len(blocks)} blocks; cycles/block A {ca.mean():.0f} B {cb.mean():.0f} "
              f"(B/A {cb.sum() / ca.sum():.3f}); same counts {same}/{len(blocks)}; B not converged "
              f"{fails}; KKT residual/tol worst A {worst_a:.2g} B {worst_b:.2g}; "
              f"max |zA - zB| / max|zA| {dzmax:.2g}", flush=True)
