"""The block settle's small dense QP (:func:`._numba_solvers._coarse_block_solve`):
Lawson & Hanson's active-set method on one block of ~40 candidates, the
same steps and the same numbers as :func:`._numba_local._nnqp` (without its
``chains`` option), with its factor work rearranged for instruction-level
parallelism.

At lambda 0 on slow kernels at 1 kHz a block starts from ~30 positive
spikes and takes ~7 inner solves, ~5 adds and ~4 deletes; each of the
factor's loops is a chain of dependent subtractions (a row's running dot
product, a row's Givens rotations), bound by the adder's latency, not its
throughput.  Rows that do not depend on each other's result can run side
by side: every entry still takes the same operations in the same order, so
the factor, and so every answer, is bit for bit that of the one-row-at-a-
time code (tests/test_block_start.py):

* :func:`_block_factor` appends several positions at once (the start's
  positive spikes, an outer step's adds): four rows' dot products against
  the factor's rows in one loop, then their own 4 x 4 corner in turn.
* :func:`_block_solve`: the forward substitution four rows at a time (their
  sums over the finished entries side by side, then the corner).
* a deletion's rows two at a time (the rotations of the rows above on
  both, then each row's own): :func:`._numba_local._chol_del2`, shared
  with the dense settle.
* :func:`_block_solve` keeps the forward pass's values between solves: the
  rows above the lowest one an add or a delete changed keep theirs.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._numba_local import _chol_add, _chol_del2, _row

# numba's cache of this file's functions is keyed on this file alone, not on
# _numba_local's, which they call: this digest of that source (checked by
# tests/test_numba_cache_key.py) makes a change there a change here
_CALLEES_SHA = "d11a32961197ee67"

_CACHE = True
_NO = np.bool_(False)


@njit(cache=_CACHE, nogil=True)
def _block_factor(H, L, P, p, Q, nq):
    """Append the positions Q[0:nq] in turn to the factor L of P[0:p], as
    :func:`._numba_local._chol_add` one by one (the same numbers and the same
    rejections: a position numerically dependent on those before it is left
    out and its Q entry j set to -1 - j).  Four rows at a time: their entries
    against the rows already in L in one loop (four running sums side by
    side), then their own corner.  Returns the new p."""
    t = 0
    while t + 4 <= nq:
        j0 = Q[t]
        j1 = Q[t + 1]
        j2 = Q[t + 2]
        j3 = Q[t + 3]
        h0 = H[j0]
        h1 = H[j1]
        h2 = H[j2]
        h3 = H[j3]
        o0 = _row(p)
        o1 = _row(p + 1)
        o2 = _row(p + 2)
        o3 = _row(p + 3)
        for a in range(p):
            oa = _row(a)
            pa = P[a]
            v0 = h0[pa]
            v1 = h1[pa]
            v2 = h2[pa]
            v3 = h3[pa]
            for b in range(a):
                la = L[oa + b]
                v0 -= la * L[o0 + b]
                v1 -= la * L[o1 + b]
                v2 -= la * L[o2 + b]
                v3 -= la * L[o3 + b]
            daa = L[oa + a]
            L[o0 + a] = v0 / daa
            L[o1 + a] = v1 / daa
            L[o2 + a] = v2 / daa
            L[o3 + a] = v3 / daa
        # the corner: each row's sums against the group's rows before it and
        # its own square, over the first p entries, then the rest in order
        c10 = h1[j0]
        c20 = h2[j0]
        c30 = h3[j0]
        c21 = h2[j1]
        c31 = h3[j1]
        c32 = h3[j2]
        s0 = h0[j0]
        s1 = h1[j1]
        s2 = h2[j2]
        s3 = h3[j3]
        for b in range(p):
            l0 = L[o0 + b]
            l1 = L[o1 + b]
            l2 = L[o2 + b]
            l3 = L[o3 + b]
            c10 -= l0 * l1
            c20 -= l0 * l2
            c30 -= l0 * l3
            c21 -= l1 * l2
            c31 -= l1 * l3
            c32 -= l2 * l3
            s0 -= l0 * l0
            s1 -= l1 * l1
            s2 -= l2 * l2
            s3 -= l3 * l3
        # (a rejected row: the rows after it were formed for the wrong
        # place; they are appended one by one below)
        if not s0 > 1e-12 * h0[j0]:
            Q[t] = -1 - j0
            t += 1
            break
        d0 = np.sqrt(s0)
        L[o0 + p] = d0
        P[p] = j0
        e10 = c10 / d0
        L[o1 + p] = e10
        s1 -= e10 * e10
        if not s1 > 1e-12 * h1[j1]:
            Q[t + 1] = -1 - j1
            p += 1
            t += 2
            break
        d1 = np.sqrt(s1)
        L[o1 + p + 1] = d1
        P[p + 1] = j1
        e20 = c20 / d0
        L[o2 + p] = e20
        c21 -= e20 * e10
        e21 = c21 / d1
        L[o2 + p + 1] = e21
        s2 -= e20 * e20
        s2 -= e21 * e21
        if not s2 > 1e-12 * h2[j2]:
            Q[t + 2] = -1 - j2
            p += 2
            t += 3
            break
        d2 = np.sqrt(s2)
        L[o2 + p + 2] = d2
        P[p + 2] = j2
        e30 = c30 / d0
        L[o3 + p] = e30
        c31 -= e30 * e10
        e31 = c31 / d1
        L[o3 + p + 1] = e31
        c32 -= e30 * e20
        c32 -= e31 * e21
        e32 = c32 / d2
        L[o3 + p + 2] = e32
        s3 -= e30 * e30
        s3 -= e31 * e31
        s3 -= e32 * e32
        if not s3 > 1e-12 * h3[j3]:
            Q[t + 3] = -1 - j3
            p += 3
            t += 4
            break
        L[o3 + p + 3] = np.sqrt(s3)
        P[p + 3] = j3
        p += 4
        t += 4
    while t < nq:
        if _chol_add(H, L, P, p, Q[t], _NO):
            p += 1
        else:
            Q[t] = -1 - Q[t]
        t += 1
    return p


@njit(cache=_CACHE, nogil=True)
def _block_solve(L, P, p, c, out, fw, lo):
    """out[a] = -(H[P, P]^-1 c[P])[a], as :func:`._numba_local._chol_solve`
    (the same numbers).  ``fw`` keeps the forward pass's values: those of
    rows below ``lo`` are current (rows of L and entries of P below it have
    not changed since they were formed: each depends on those alone), the
    rest are formed four rows at a time."""
    a0 = lo
    while a0 + 4 <= p:
        o0 = _row(a0)
        o1 = _row(a0 + 1)
        o2 = _row(a0 + 2)
        o3 = _row(a0 + 3)
        v0 = -c[P[a0]]
        v1 = -c[P[a0 + 1]]
        v2 = -c[P[a0 + 2]]
        v3 = -c[P[a0 + 3]]
        for b in range(a0):
            ob = fw[b]
            v0 -= L[o0 + b] * ob
            v1 -= L[o1 + b] * ob
            v2 -= L[o2 + b] * ob
            v3 -= L[o3 + b] * ob
        x0 = v0 / L[o0 + a0]
        fw[a0] = x0
        v1 -= L[o1 + a0] * x0
        x1 = v1 / L[o1 + a0 + 1]
        fw[a0 + 1] = x1
        v2 -= L[o2 + a0] * x0
        v2 -= L[o2 + a0 + 1] * x1
        x2 = v2 / L[o2 + a0 + 2]
        fw[a0 + 2] = x2
        v3 -= L[o3 + a0] * x0
        v3 -= L[o3 + a0 + 1] * x1
        v3 -= L[o3 + a0 + 2] * x2
        fw[a0 + 3] = v3 / L[o3 + a0 + 3]
        a0 += 4
    for a in range(a0, p):
        oa = _row(a)
        v = -c[P[a]]
        for b in range(a):
            v -= L[oa + b] * fw[b]
        fw[a] = v / L[oa + a]
    for a in range(p):
        out[a] = fw[a]
    for a in range(p - 1, -1, -1):
        oa = _row(a)
        v = out[a] / L[oa + a]
        out[a] = v
        for b in range(a):
            out[b] -= L[oa + b] * v


@njit(cache=_CACHE, nogil=True)
def _block_inner(L, P, p, c, z, zeta, fw, lo, work, max_work, cs, sn, tmp, tmp2, cnt):
    """:func:`._numba_local._nnqp_inner` (the same steps, numbers and work
    count) on :func:`_block_solve` (``fw``, ``lo``: its forward values, those
    below lo current) and :func:`._numba_local._chol_del2`; ``cnt``: [inner solves, adds,
    deletes, outer steps] counted.  Returns (p, work, lo)."""
    while work < max_work:
        work += p * p
        cnt[0] += 1
        _block_solve(L, P, p, c, zeta, fw, lo)
        lo = p
        amin = 2.0
        qmin = -1
        for a in range(p):
            if zeta[a] <= 0.0:
                za = z[P[a]]
                den = za - zeta[a]
                t = za / den if den > 0.0 else 0.0
                if t < amin:
                    amin = t
                    qmin = a
        if qmin < 0:
            for a in range(p):
                z[P[a]] = zeta[a]
            break
        for a in range(p):
            za = z[P[a]]
            z[P[a]] = za + amin * (zeta[a] - za)
        z[P[qmin]] = 0.0
        for a in range(p - 1, -1, -1):
            if not z[P[a]] > 0.0:
                z[P[a]] = 0.0
                _chol_del2(L, P, p, a, cs, sn, tmp, tmp2)
                lo = min(lo, a)
                cnt[2] += 1
                work += (p - a) * p
                p -= 1
    return p, work, lo


@njit(cache=_CACHE, nogil=True)
def _block_nnqp(H, L, P, p, c, z, m, blocked, zeta, grad, C, thin, tol, work, max_work, cs,
                sn, Q, viol, cnt):
    """:func:`._numba_local._nnqp` without ``chains`` (the same steps,
    numbers and work count): min 1/2 z'Hz + c'z over z >= 0 (first m
    positions) from the feasible z whose positive entries are P[0:p] with L
    their factor.  An outer step's adds go in together
    (:func:`_block_factor`, in the order and with the rejections of one by
    one).  ``Q``, ``viol`` (m): scratch; ``cnt`` (4): counts (see
    :func:`_block_inner`).  Returns (p, work, converged)."""
    # (one allocation for the float scratch: fw, zp (m), tmp, tmp2 (m + 1))
    fs = np.empty(4 * m + 2)
    fw = fs[0:m]
    zp = fs[m:2 * m]
    tmp = fs[2 * m:3 * m + 1]
    tmp2 = fs[3 * m + 1:4 * m + 2]
    p, work, lo = _block_inner(L, P, p, c, z, zeta, fw, 0, work, max_work, cs, sn, tmp, tmp2,
                               cnt)
    single = False
    while work < max_work:
        work += m * p
        cnt[3] += 1
        # the gradient at the positions off P, four running sums side by
        # side (each over P in order, as one by one); zp: z on P gathered
        n_off = 0
        for i in range(m):
            grad[i] = 0.0
            if z[i] > 0.0 or blocked[i]:
                continue
            viol[n_off] = i
            n_off += 1
        for a in range(p):
            zp[a] = z[P[a]]
        f = 0
        while f + 4 <= n_off:
            i0 = viol[f]
            i1 = viol[f + 1]
            i2 = viol[f + 2]
            i3 = viol[f + 3]
            h0 = H[i0]
            h1 = H[i1]
            h2 = H[i2]
            h3 = H[i3]
            g0 = c[i0]
            g1 = c[i1]
            g2 = c[i2]
            g3 = c[i3]
            for a in range(p):
                pa = P[a]
                za = zp[a]
                g0 += h0[pa] * za
                g1 += h1[pa] * za
                g2 += h2[pa] * za
                g3 += h3[pa] * za
            grad[i0] = g0
            grad[i1] = g1
            grad[i2] = g2
            grad[i3] = g3
            f += 4
        for f in range(f, n_off):
            i = viol[f]
            g = c[i]
            hi = H[i]
            for a in range(p):
                g += hi[P[a]] * zp[a]
            grad[i] = g
        n_viol = 0
        for f in range(n_off):
            i = viol[f]
            g = grad[i]
            if -g > tol:
                viol[n_viol] = i
                n_viol += 1
            else:
                grad[i] = 0.0
        if n_viol == 0:
            return p, work, True
        p0 = p
        nq = 0
        for vi in range(n_viol):
            i = viol[vi]
            gi = grad[i]
            keep = True
            for vj in range(n_viol):
                j = viol[vj]
                gj = grad[j]
                if (gj < gi or (gj == gi and j < i)) and (single or abs(C[j] - C[i]) <= thin):
                    keep = False
                    break
            if keep:
                Q[nq] = i
                nq += 1
        p = _block_factor(H, L, P, p, Q, nq)
        lo = min(lo, p0)
        pw = p0
        for t in range(nq):
            work += pw * pw
            i = Q[t]
            if i >= 0:
                pw += 1
                z[i] = 0.0
                cnt[1] += 1
            else:
                blocked[-1 - i] = True
        if p == p0:
            continue
        p, work, lo = _block_inner(L, P, p, c, z, zeta, fw, lo, work, max_work, cs, sn, tmp,
                                   tmp2, cnt)
        single = not single and p <= p0
    return p, work, False


# ---------------------------------------------------------------------------
# The block QP by a two-state recursion (what _coarse_block_solve calls).
#
# The block's Gram H = (K'K)[C, C] (C increasing) is semiseparable: for
# C_i >= C_j, D = C_i - C_j, H[i, j] = al_i d^D + be_i r^D, al_i and be_i
# of the later position alone (._numba_local._gram_fill's four geometric
# sums, their tail factors those of the later sample).  So is the Cholesky
# factor of H on any increasing set F of positions: L[i, j] = u_i'
# Lam(C_i - C_j) w_j, u_i = (al_i, be_i), Lam(D) = diag(d^D, r^D), with w_j
# and the pivots from the 2 x 2 state M_j = sum_{k<j} Lam w_k w_k' Lam
# carried along F (kept as LDL', without square roots): a solve with
# H[F, F] is O(|F|) (the factor, the forward and the backward pass), not a
# dense factor with add and delete updates.  Lawson & Hanson's steps are
# those of _block_nnqp (the same rule for adds, deletes, steps and the work
# count); the numbers are rounded otherwise.  Recorded block QPs
# (bench/bq2/replay3.py): ~0.39x _block_factor + _block_nnqp's cycles at
# lambda 0 at 1 kHz (0.28x on the slow kernel's 64-candidate blocks), the
# same counts on every block.


# the block QP's float scratch ``fs`` (at least 19 m, m the candidates):
# offsets of its pieces in units of m (:func:`_block_nnqp_ws`).  The hot
# calls take ``fs`` and these offsets, not a view of each piece: numba takes
# and drops a reference on each array argument of a call (an atomic add
# each; ~17 free-set solves a block), and on each view it makes
_FS_AL = 0      # al
_FS_BE = 1      # be
_FS_HD = 2      # hd = al + be
_FS_ED = 3      # ed
_FS_QD = 4      # qd
_FS_OUT = 5     # the free-set solve's answer (zeta)
_FS_GRAD = 6    # the outer steps' gradient
_FS_ZP = 7      # the free spikes gathered
_FS_FW = 8      # fw: 4 rows
_FS_ST = 12     # st: 7 rows
_FS_LEN = 19


@njit(cache=_CACHE, nogil=True)
def _block_gens(C, m, n, dp, rp, d, r, a2, al, be, hd, ed, qd):
    """The recursion's generators: al, be (H[i, j] = al_i d^D + be_i r^D,
    C_i >= C_j), hd = al + be (the diagonal), ed[k] = d^(C_k - C_(k-1)),
    qd[k] likewise (ed[0] = qd[0] = 1).  (The tests' entry:
    :func:`_block_gens_fs` into the block QP's scratch.)"""
    fs = np.empty(_FS_LEN * m)
    _block_gens_fs(C, m, n, dp, rp, d, r, a2, fs)
    al[:m] = fs[_FS_AL * m:(_FS_AL + 1) * m]
    be[:m] = fs[_FS_BE * m:(_FS_BE + 1) * m]
    hd[:m] = fs[_FS_HD * m:(_FS_HD + 1) * m]
    ed[:m] = fs[_FS_ED * m:(_FS_ED + 1) * m]
    qd[:m] = fs[_FS_QD * m:(_FS_QD + 1) * m]


@njit(cache=_CACHE, nogil=True)
def _block_gens_fs(C, m, n, dp, rp, d, r, a2, fs):
    """:func:`_block_gens` written into ``fs`` at its offsets (_FS_AL,
    _FS_BE, _FS_HD, _FS_ED, _FS_QD times m)."""
    idd = 1.0 / (1.0 - d * d)
    idr = 1.0 / (1.0 - d * r)
    irr = 1.0 / (1.0 - r * r)
    dd = a2 * d * d * idd
    dr = a2 * d * r * idr
    rr = a2 * r * r * irr
    o_al = _FS_AL * m
    o_be = _FS_BE * m
    o_hd = _FS_HD * m
    o_ed = _FS_ED * m
    o_qd = _FS_QD * m
    fs[o_ed] = 1.0
    fs[o_qd] = 1.0
    for k in range(m):
        L = n - C[k]
        dl = dp[L]
        rl = rp[L]
        x1 = dr * (1.0 - dl * rl)
        a = dd * (1.0 - dl * dl) - x1
        b = rr * (1.0 - rl * rl) - x1
        fs[o_al + k] = a
        fs[o_be + k] = b
        fs[o_hd + k] = a + b
        if k > 0:
            D = C[k] - C[k - 1]
            fs[o_ed + k] = dp[D]
            fs[o_qd + k] = rp[D]


@njit(cache=_CACHE, nogil=True)
def _block_free_solve(F, m, c, al, be, hd, ed, qd, out, fw, st, lo):
    """out[k] = -(H[F, F]^-1 c[F])[k] for the k with F[k], by the two-state
    recursion (:func:`_block_free_solve_fs`, the block QP's entry, on a
    scratch array holding these: the tests' entry).  ``fw`` (4, m), ``st``
    (7, m): kept between calls as there (read below ``lo``, written on)."""
    fs = np.empty(_FS_LEN * m)
    fs[_FS_AL * m:(_FS_AL + 1) * m] = al[:m]
    fs[_FS_BE * m:(_FS_BE + 1) * m] = be[:m]
    fs[_FS_HD * m:(_FS_HD + 1) * m] = hd[:m]
    fs[_FS_ED * m:(_FS_ED + 1) * m] = ed[:m]
    fs[_FS_QD * m:(_FS_QD + 1) * m] = qd[:m]
    fs[_FS_OUT * m:(_FS_OUT + 1) * m] = out[:m]
    for i in range(4):
        fs[(_FS_FW + i) * m:(_FS_FW + i + 1) * m] = fw[i, :m]
    for i in range(7):
        fs[(_FS_ST + i) * m:(_FS_ST + i + 1) * m] = st[i, :m]
    bad = _block_free_solve_fs(F, c, fs, m, lo)
    out[:m] = fs[_FS_OUT * m:(_FS_OUT + 1) * m]
    for i in range(4):
        fw[i, :m] = fs[(_FS_FW + i) * m:(_FS_FW + i + 1) * m]
    for i in range(7):
        st[i, :m] = fs[(_FS_ST + i) * m:(_FS_ST + i + 1) * m]
    return bad


@njit(cache=_CACHE, nogil=True)
def _block_free_solve_fs(F, c, fs, m, lo):
    """out[k] = -(H[F, F]^-1 c[F])[k] for the k with F[k], by the two-state
    recursion, in LDL' form (no square roots: the state takes u u' / piv,
    u = 1 - M a, a = (al, be) of the row).  The generators al, be, hd, ed,
    qd (:func:`_block_gens_fs`), out, and the kept rows fw, st are pieces
    of ``fs`` at their offsets (_FS_*, times m).  ``fw`` (4 rows of m): per
    free row u / piv, 1 / piv and the forward value; ``st`` (7 rows): the
    state (M, t) before the row and u; rows below ``lo`` (F unchanged there
    since the last call) keep both.
    Returns -1, or the first free row whose pivot is numerically zero (as
    _chol_add's test; out not formed)."""
    o_al = _FS_AL * m
    o_be = _FS_BE * m
    o_hd = _FS_HD * m
    o_ed = _FS_ED * m
    o_qd = _FS_QD * m
    o_out = _FS_OUT * m
    f0 = _FS_FW * m
    f1 = f0 + m
    f2 = f1 + m
    f3 = f2 + m
    s0 = _FS_ST * m
    s1 = s0 + m
    s2 = s1 + m
    s3 = s2 + m
    s4 = s3 + m
    s5 = s4 + m
    s6 = s5 + m
    m00 = 0.0
    m01 = 0.0
    m11 = 0.0
    t0 = 0.0
    t1 = 0.0
    w0 = 0.0
    w1 = 0.0
    u0 = 0.0
    u1 = 0.0
    yp = 0.0
    first = True
    e = 1.0
    q = 1.0
    k0 = 0
    kk = min(lo, m) - 1
    while kk >= 0 and not F[kk]:
        kk -= 1
    if kk >= 0:
        m00 = fs[s0 + kk]
        m01 = fs[s1 + kk]
        m11 = fs[s2 + kk]
        t0 = fs[s3 + kk]
        t1 = fs[s4 + kk]
        w0 = fs[f0 + kk]
        w1 = fs[f1 + kk]
        yp = fs[f3 + kk]
        u0 = fs[s5 + kk]
        u1 = fs[s6 + kk]
        first = False
        k0 = kk + 1
    for k in range(k0, m):
        if k > 0:
            e *= fs[o_ed + k]
            q *= fs[o_qd + k]
        if not F[k]:
            continue
        if not first:
            a = m00 + u0 * w0
            b = m01 + u0 * w1
            cc = m11 + u1 * w1
            m00 = (e * e) * a
            m01 = (e * q) * b
            m11 = (q * q) * cc
            t0 = e * (t0 + w0 * yp)
            t1 = q * (t1 + w1 * yp)
        fs[s0 + k] = m00
        fs[s1 + k] = m01
        fs[s2 + k] = m11
        fs[s3 + k] = t0
        fs[s4 + k] = t1
        ak = fs[o_al + k]
        bk = fs[o_be + k]
        hk = fs[o_hd + k]
        sa = m00 * ak + m01 * bk
        sb = m01 * ak + m11 * bk
        piv = hk - (ak * sa + bk * sb)
        if not piv > 1e-12 * hk:
            return k
        il = 1.0 / piv
        u0 = 1.0 - sa
        u1 = 1.0 - sb
        yh = -c[k] - (ak * t0 + bk * t1)
        # (LDL': w = u / sqrt(piv) never formed; M, t take u u' / piv)
        w0 = u0 * il
        w1 = u1 * il
        yp = yh
        fs[f0 + k] = w0
        fs[f1 + k] = w1
        fs[f2 + k] = il
        fs[s5 + k] = u0
        fs[s6 + k] = u1
        fs[f3 + k] = yh
        first = False
        e = 1.0
        q = 1.0
    v0 = 0.0
    v1 = 0.0
    e = 1.0
    q = 1.0
    xn = 0.0
    an = 0.0
    bn = 0.0
    started = False
    for k in range(m - 1, -1, -1):
        if not F[k]:
            if started:
                e *= fs[o_ed + k]
                q *= fs[o_qd + k]
            continue
        if started:
            v0 = e * (v0 + an * xn)
            v1 = q * (v1 + bn * xn)
        x = fs[f3 + k] * fs[f2 + k] - (fs[f0 + k] * v0 + fs[f1 + k] * v1)
        fs[o_out + k] = x
        xn = x
        an = fs[o_al + k]
        bn = fs[o_be + k]
        started = True
        e = fs[o_ed + k]
        q = fs[o_qd + k]
    return -1


@njit(cache=_CACHE, nogil=True)
def _block_nnqp_rec(H, c, z, m, blocked, C, thin, tol, max_work, n, dp, rp, d, r, a2, cnt):
    """:func:`_block_nnqp_ws` with its scratch allocated here (the tests'
    entry; :func:`._numba_solvers._coarse_blocks` passes its own, once a
    settle)."""
    return _block_nnqp_ws(H, c, z, m, blocked, C, thin, tol, max_work, n, dp, rp, d, r, a2, cnt,
                          np.empty(19 * m), np.empty(2 * m, np.int64), np.empty(m, np.bool_))


@njit(cache=_CACHE, nogil=True)
def _block_nnqp_ws(H, c, z, m, blocked, C, thin, tol, max_work, n, dp, rp, d, r, a2, cnt, fs,
                   iw, F):
    """min 1/2 z'Hz + c'z over z >= 0 (z: m, feasible; its positive entries
    the start's free set; C increasing), Lawson & Hanson's steps of
    :func:`_block_nnqp` (the same adds, deletes, outer rule and work count)
    with the free-set solves by :func:`_block_free_solve` (a numerically
    dependent free position: blocked and left at 0, as _chol_add's
    rejection).  H (the block's Gram, dense) for the outer steps' gradient.
    ``cnt`` (4): counts as :func:`_block_inner`.  ``fs`` (at least 19 m
    floats), ``iw`` (2 m ints), ``F`` (m flags): scratch.  Returns (work,
    converged)."""
    zeta = fs[_FS_OUT * m:(_FS_OUT + 1) * m]
    grad = fs[_FS_GRAD * m:(_FS_GRAD + 1) * m]
    zp = fs[_FS_ZP * m:(_FS_ZP + 1) * m]
    P = iw[0:m]
    viol = iw[m:2 * m]
    _block_gens_fs(C, m, n, dp, rp, d, r, a2, fs)
    p = 0
    for i in range(m):
        F[i] = z[i] > 0.0
        if F[i]:
            p += 1
    work = 0
    lo = 0
    single = False
    outer = False
    p0 = 0
    while work < max_work:
        # the inner loop (_block_inner)
        while work < max_work:
            work += p * p
            cnt[0] += 1
            bad = _block_free_solve_fs(F, c, fs, m, lo)
            lo = m
            if bad >= 0:
                F[bad] = False
                blocked[bad] = True
                z[bad] = 0.0
                lo = bad
                p -= 1
                continue
            amin = 2.0
            qmin = -1
            for a in range(m):
                if F[a] and zeta[a] <= 0.0:
                    za = z[a]
                    den = za - zeta[a]
                    t = za / den if den > 0.0 else 0.0
                    if t < amin:
                        amin = t
                        qmin = a
            if qmin < 0:
                for a in range(m):
                    if F[a]:
                        z[a] = zeta[a]
                break
            for a in range(m):
                if F[a]:
                    za = z[a]
                    z[a] = za + amin * (zeta[a] - za)
            z[qmin] = 0.0
            for a in range(m - 1, -1, -1):
                if F[a] and not z[a] > 0.0:
                    z[a] = 0.0
                    F[a] = False
                    lo = min(lo, a)
                    cnt[2] += 1
                    work += p
                    p -= 1
        if outer:
            single = not single and p <= p0
        if not work < max_work:
            break
        # the outer step: the gradient off F (dense rows of H, four side
        # by side, over the free positions gathered)
        work += m * p
        cnt[3] += 1
        n_off = 0
        pp = 0
        for i in range(m):
            grad[i] = 0.0
            if F[i]:
                P[pp] = i
                zp[pp] = z[i]
                pp += 1
            elif not blocked[i]:
                viol[n_off] = i
                n_off += 1
        f = 0
        while f + 4 <= n_off:
            i0 = viol[f]
            i1 = viol[f + 1]
            i2 = viol[f + 2]
            i3 = viol[f + 3]
            h0 = H[i0]
            h1 = H[i1]
            h2 = H[i2]
            h3 = H[i3]
            g0 = c[i0]
            g1 = c[i1]
            g2 = c[i2]
            g3 = c[i3]
            for a in range(pp):
                pa = P[a]
                za = zp[a]
                g0 += h0[pa] * za
                g1 += h1[pa] * za
                g2 += h2[pa] * za
                g3 += h3[pa] * za
            grad[i0] = g0
            grad[i1] = g1
            grad[i2] = g2
            grad[i3] = g3
            f += 4
        for f in range(f, n_off):
            i = viol[f]
            g = c[i]
            hi = H[i]
            for a in range(pp):
                g += hi[P[a]] * zp[a]
            grad[i] = g
        n_viol = 0
        for f in range(n_off):
            i = viol[f]
            if -grad[i] > tol:
                viol[n_viol] = i
                n_viol += 1
        if n_viol == 0:
            return work, True
        p0 = p
        pw = p
        for vi in range(n_viol):
            i = viol[vi]
            gi = grad[i]
            keep = True
            for vj in range(n_viol):
                j = viol[vj]
                gj = grad[j]
                if (gj < gi or (gj == gi and j < i)) and (single or abs(C[j] - C[i]) <= thin):
                    keep = False
                    break
            if keep:
                work += pw * pw
                pw += 1
                F[i] = True
                z[i] = 0.0
                lo = min(lo, i)
                cnt[1] += 1
        p = pw
        outer = True
    return work, False
