import sys, pickle, numpy as np
from numba import njit
from replay import rdtsc, run_a, kkt
import bqp

@njit(nogil=True)
def run_b(H, c, z0, C, thin, tol_b, budget, d, r, a2, n, zout, cnt):
    m = H.shape[0]
    al = np.empty(m); be = np.empty(m); hd = np.empty(m); ed = np.empty(m); qd = np.empty(m)
    lw0 = np.empty(m); lw1 = np.empty(m); ll = np.empty(m); yy = np.empty(m)
    zeta = np.empty(m); gr = np.empty(m); st = np.empty((m, 5))
    F = np.zeros(m, np.bool_); blocked = np.zeros(m, np.bool_)
    Q = np.empty(m, np.int64); viol = np.empty(m, np.int64)
    bqp.gens(C, m, n, d, r, a2, al, be, hd, ed, qd)
    t0 = rdtsc()
    for i in range(m):
        zout[i] = z0[i] if z0[i] > 0.0 else 0.0
        F[i] = z0[i] > 0.0
    for k in range(4):
        cnt[k] = 0
    w, ok = bqp.nnqp_b(H, c, zout, F, m, blocked, zeta, gr, C, thin, tol_b, 0, budget, al, be,
                       hd, ed, qd, Q, viol, cnt, lw0, lw1, ll, yy, st)
    t1 = rdtsc()
    return t1 - t0, ok

if __name__ == "__main__":
    recs = pickle.load(open(sys.argv[1], 'rb'))
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    for tag, blocks in recs.items():
        ca = np.full(len(blocks), np.inf); cb = np.full(len(blocks), np.inf)
        cnta = np.zeros((len(blocks), 4)); cntb = np.zeros((len(blocks), 4))
        worst_a = worst_b = 0.0; dzmax = 0.0; fails = 0; objd = []
        for b, (H, c, z0, C, thin, tol_b, budget, d, r, a2, n) in enumerate(blocks):
            m = H.shape[0]
            za = np.empty(m); zb = np.empty(m); cn = np.zeros(4, np.int64)
            for k in range(reps):  # interleaved A, B
                t, ok, p = run_a(H, c, z0, C, thin, tol_b, budget, za, cn)
                ca[b] = min(ca[b], t); cnta[b] = cn
                t, okb = run_b(H, c, z0, C, thin, tol_b, budget, d, r, a2, n, zb, cn)
                cb[b] = min(cb[b], t); cntb[b] = cn
            fails += not okb
            ra = kkt(H, c, za, tol_b); rb = kkt(H, c, zb, tol_b)
            worst_a = max(worst_a, ra[1] / tol_b, ra[0] / tol_b); worst_b = max(worst_b, rb[1] / tol_b, rb[0] / tol_b)
            dzmax = max(dzmax, np.max(np.abs(za - zb)) / max(1e-300, np.max(np.abs(za))))
            fa = 0.5 * za @ H @ za + c @ za; fb = 0.5 * zb @ H @ zb + c @ zb
            objd.append((fb - fa) / max(abs(fa), 1e-300))
        objd = np.array(objd)
        print(f"{tag}: {len(blocks)} blocks; cycles/block A mean {ca.mean():.0f} B {cb.mean():.0f} "
              f"(B/A {cb.sum()/ca.sum():.3f}); counts A {cnta.mean(0).round(2)} B {cntb.mean(0).round(2)}; "
              f"dual viol/tol worst A {worst_a:.2g} B {worst_b:.2g}; B fails {fails}; "
              f"max rel |dz| {dzmax:.2g}; rel obj B-A max {objd.max():.2g} min {objd.min():.2g}")
