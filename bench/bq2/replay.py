"""Replay recorded block QPs (blocks.pkl from record.py): cycles per block
(rdtsc via llvm.readcyclecounter) of A = _block_factor + _block_nnqp as
_coarse_block_solve calls them, the counts, and the KKT residual."""
import sys, pickle, numpy as np, time
from numba import njit, types
from numba.extending import intrinsic
from napari_catune import _numba_block as nb

@intrinsic
def rdtsc(typingctx):
    sig = types.uint64()
    def codegen(context, builder, signature, args):
        from llvmlite import ir
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = builder.module.declare_intrinsic('llvm.readcyclecounter', fnty=fnty)
        return builder.call(fn, [])
    return sig, codegen

@njit(nogil=True)
def run_a(H, c, z0, C, thin, tol_b, budget, zout, cnt):
    m = H.shape[0]
    L = np.empty(m * (m + 1) // 2 + m)
    P = np.empty(m, np.int64)
    zeta = np.empty(m); gr = np.empty(m); cs = np.empty(m); sn = np.empty(m)
    blocked = np.zeros(m, np.bool_)
    w = np.empty(2 * m + 4, np.int64)
    Q = w[0:m]; viol = w[m + 4:2 * m + 4]
    t0 = rdtsc()
    nq = 0
    for i in range(m):
        zout[i] = 0.0
        if z0[i] > 0.0:
            Q[nq] = i; nq += 1
    p = nb._block_factor(H, L, P, 0, Q, nq)
    for t in range(nq):
        i = Q[t]
        if i >= 0:
            zout[i] = z0[i]
    for k in range(4):
        cnt[k] = 0
    p, used, ok = nb._block_nnqp(H, L, P, p, c, zout, m, blocked, zeta, gr, C, thin, tol_b, 0,
                                 budget, cs, sn, Q, viol, cnt)
    t1 = rdtsc()
    return t1 - t0, ok, p

def kkt(H, c, z, tol):
    g = H @ z + c
    free = z > 0
    r1 = np.max(np.abs(g[free])) if free.any() else 0.0
    r2 = max(0.0, -np.min(g[~free])) if (~free).any() else 0.0
    return r1, r2

if __name__ == "__main__":
    recs = pickle.load(open(sys.argv[2] if len(sys.argv) > 2 else '/tmp/bq2/blocks.pkl', 'rb'))
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    for tag, blocks in recs.items():
        cyc = np.zeros((len(blocks), reps))
        cnts = np.zeros((len(blocks), 4), np.int64)
        ms = np.zeros(len(blocks), int); ps = np.zeros(len(blocks), int); p0 = np.zeros(len(blocks), int)
        worst = 0.0
        for b, rec in enumerate(blocks):
            H, c, z0, C, thin, tol_b, budget = rec[:7]
            zo = np.empty(H.shape[0]); cnt = np.zeros(4, np.int64)
            for k in range(reps):
                t, ok, p = run_a(H, c, z0, C, thin, tol_b, budget, zo, cnt)
                cyc[b, k] = t
            cnts[b] = cnt; ms[b] = H.shape[0]; ps[b] = p; p0[b] = (z0 > 0).sum()
            r1, r2 = kkt(H, c, zo, tol_b)
            worst = max(worst, r2 / tol_b)
        c = cyc.min(axis=1)
        print(f"{tag}: {len(blocks)} blocks, m median {np.median(ms):.0f} max {ms.max()}, "
              f"p start/end mean {p0.mean():.1f}/{ps.mean():.1f}; cycles/block mean {c.mean():.0f} "
              f"median {np.median(c):.0f}, total {c.sum()/1e6:.1f} M; counts mean solves/adds/dels/outer "
              f"{cnts.mean(axis=0).round(2)}; worst dual viol/tol {worst:.2g}")
