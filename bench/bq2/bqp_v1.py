"""B: Lawson & Hanson on a block with the free-set solve by a two-state
recursion (the block's Gram is semiseparable: H[i,j] = al_i d^D + be_i r^D
for C_i >= C_j, D = C_i - C_j)."""
import numpy as np
from numba import njit

@njit(nogil=True)
def gens(C, m, n, d, r, a2, al, be, hd, ed, qd):
    idd = 1.0 / (1.0 - d * d)
    idr = 1.0 / (1.0 - d * r)
    irr = 1.0 / (1.0 - r * r)
    ed[0] = 1.0
    qd[0] = 1.0
    for k in range(m):
        L = n - C[k]
        dl = d ** L
        rl = r ** L
        x0 = 1.0 - dl * dl
        x1 = 1.0 - dl * rl
        x2 = 1.0 - rl * rl
        al[k] = a2 * (d * d * x0 * idd - r * d * x1 * idr)
        be[k] = a2 * (r * r * x2 * irr - d * r * x1 * idr)
        hd[k] = al[k] + be[k]
        if k > 0:
            D = C[k] - C[k - 1]
            ed[k] = d ** D
            qd[k] = r ** D

@njit(nogil=True)
def solve_free(F, m, c, al, be, hd, ed, qd, out, lw0, lw1, ll, yy):
    """out[k] = -(H_FF^-1 c_F)[k] for F[k]; returns -1 or the first index
    whose pivot is numerically zero."""
    m00 = 0.0; m01 = 0.0; m11 = 0.0
    t0 = 0.0; t1 = 0.0
    w0 = 0.0; w1 = 0.0; yp = 0.0
    first = True
    e = 1.0; q = 1.0
    last = -1
    for k in range(m):
        if k > 0:
            e *= ed[k]
            q *= qd[k]
        if not F[k]:
            continue
        if not first:
            a = m00 + w0 * w0
            b = m01 + w0 * w1
            cc = m11 + w1 * w1
            m00 = e * e * a
            m01 = e * q * b
            m11 = q * q * cc
            t0 = e * (t0 + w0 * yp)
            t1 = q * (t1 + w1 * yp)
        a_k = al[k]; b_k = be[k]
        s0 = m00 * a_k + m01 * b_k
        s1 = m01 * a_k + m11 * b_k
        piv = hd[k] - (a_k * s0 + b_k * s1)
        if not piv > 1e-12 * hd[k]:
            return k
        l = np.sqrt(piv)
        w0 = (1.0 - s0) / l
        w1 = (1.0 - s1) / l
        yp = (-c[k] - (a_k * t0 + b_k * t1)) / l
        lw0[k] = w0; lw1[k] = w1; ll[k] = l; yy[k] = yp
        first = False
        e = 1.0; q = 1.0
        last = k
    # backward
    v0 = 0.0; v1 = 0.0
    e = 1.0; q = 1.0
    xn = 0.0
    al_n = 0.0
    be_n = 0.0
    started = False
    for k in range(m - 1, -1, -1):
        if not F[k]:
            if started:
                e *= ed[k]; q *= qd[k]
            continue
        if started:
            v0 = e * (v0 + al_n * xn)
            v1 = q * (v1 + be_n * xn)
        x = (yy[k] - (lw0[k] * v0 + lw1[k] * v1)) / ll[k]
        out[k] = x
        xn = x; al_n = al[k]; be_n = be[k]
        started = True
        e = ed[k]; q = qd[k]
    return -1

@njit(nogil=True)
def nnqp_b(H, c, z, F, m, blocked, zeta, grad, C, thin, tol, work, max_work, al, be, hd, ed,
           qd, Q, viol, cnt, lw0, lw1, ll, yy):
    """z (m): start feasible with F its positive set.  Returns (work, ok)."""
    single = False
    inner = True
    outer_done = False
    p0 = 0
    p = 0
    for i in range(m):
        if F[i]:
            p += 1
    while work < max_work:
        if inner:
            # Lawson & Hanson's inner loop
            work += p * 4
            cnt[0] += 1
            bad = solve_free(F, m, c, al, be, hd, ed, qd, zeta, lw0, lw1, ll, yy)
            if bad >= 0:
                F[bad] = False
                blocked[bad] = True
                z[bad] = 0.0
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
                inner = False
                if outer_done:
                    single = not single and p <= p0
                continue
            for a in range(m):
                if F[a]:
                    za = z[a]
                    z[a] = za + amin * (zeta[a] - za)
            z[qmin] = 0.0
            for a in range(m):
                if F[a] and not z[a] > 0.0:
                    z[a] = 0.0
                    F[a] = False
                    cnt[2] += 1
                    p -= 1
            continue
        work += m * p
        cnt[3] += 1
        n_viol = 0
        for i in range(m):
            grad[i] = 0.0
            if F[i] or blocked[i]:
                continue
            g = c[i]
            hi = H[i]
            for a in range(m):
                if F[a]:
                    g += hi[a] * z[a]
            grad[i] = g
            if -g > tol:
                viol[n_viol] = i
                n_viol += 1
        if n_viol == 0:
            return work, True
        p0 = p
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
                F[i] = True
                z[i] = 0.0
                p += 1
                cnt[1] += 1
        inner = True
        outer_done = True
    return work, False
