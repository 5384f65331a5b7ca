"""Compiled per-trace solvers of the CaTune objective (numba, nopython, no GIL).

Notation (DESIGN.md): the kernel h[i] = alpha * a[i-1] for i >= 1, h[0] = 0,
where a is the impulse response of the AR(2) filter
``q[k] = s[k] + g1 q[k-1] + g2 q[k-2]``.  Hence ``(K s)[t] = alpha q[t-1]``
and K s never depends on s[T-1].  Both solvers minimise

    F(s, b) = 1/2 ||y - K s - b||^2 + lamG * sum(s),   s >= 0,

with b free (``baseline=True``) or fixed at 0.

``pdas`` is exact: it works on the calcium x = (K s)[1:], where the constraint
reads D x >= 0 with D = M / alpha and M the AR(2) difference operator.  KKT:
x = z + M^T nu, nu >= 0, complementarity between nu and u = D x (the spikes).
The primal-dual active-set iteration guesses where u = 0, solves the
equality-constrained problem there (a pentadiagonal system, O(T)), and
re-guesses from the signs of nu and u; when the guess repeats it is the exact
optimum.  ``fista`` is the reference method of DESIGN.md.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_CACHE = True


# ----------------------------------------------------------------- filters
@njit(cache=_CACHE, nogil=True)
def forward_conv(s, g1, g2, alpha, out):
    """out = K s (length T): out[0] = 0, out[t] = alpha * q[t-1]."""
    T = s.shape[0]
    q1 = 0.0
    q2 = 0.0
    out[0] = 0.0
    for k in range(T - 1):
        q = s[k] + g1 * q1 + g2 * q2
        out[k + 1] = alpha * q
        q2 = q1
        q1 = q


@njit(cache=_CACHE, nogil=True)
def adjoint_conv(v, g1, g2, alpha, out):
    """out = K^T v: out[j] = alpha * p[j], p[j] = v[j+1] + g1 p[j+1] + g2 p[j+2]."""
    T = v.shape[0]
    p1 = 0.0
    p2 = 0.0
    out[T - 1] = 0.0
    for j in range(T - 2, -1, -1):
        p = v[j + 1] + g1 * p1 + g2 * p2
        out[j] = alpha * p
        p2 = p1
        p1 = p


@njit(cache=_CACHE, nogil=True)
def objective_one(y, s, b, g1, g2, alpha, lamG, work):
    forward_conv(s, g1, g2, alpha, work)
    acc = 0.0
    l1 = 0.0
    for t in range(y.shape[0]):
        r = y[t] - work[t] - b
        acc += r * r
        l1 += s[t]
    return 0.5 * acc + lamG * l1


# ------------------------------------------------------------------ FISTA
@njit(cache=_CACHE, nogil=True)
def fista_one(y, g1, g2, alpha, lamG, lip, baseline, s0, tol, max_iters, s_out):
    """FISTA with objective-based adaptive restart.  Returns (b, iters, converged).

    The baseline is eliminated exactly: for given s the best b is
    mean(y - K s), so the smooth part is 1/2 ||P (y - K s)||^2 with P the
    centring projection; its gradient is Lipschitz with constant <= ||K||^2.
    """
    T = y.shape[0]
    step = 1.0 / lip
    s = s_out
    for t in range(T):
        s[t] = max(s0[t], 0.0)
    z = s.copy()
    s_new = np.empty(T)
    conv = np.empty(T)
    resid = np.empty(T)
    grad = np.empty(T)

    def _best_b(conv_):  # noqa: E306 - numba closure
        if not baseline:
            return 0.0
        acc = 0.0
        for t in range(T):
            acc += y[t] - conv_[t]
        return acc / T

    forward_conv(s, g1, g2, alpha, conv)
    b = _best_b(conv)
    f_prev = objective_one(y, s, b, g1, g2, alpha, lamG, conv)
    theta = 1.0
    converged = False
    it = 0
    while it < max_iters:
        it += 1
        forward_conv(z, g1, g2, alpha, conv)
        bz = _best_b(conv)
        for t in range(T):
            resid[t] = y[t] - conv[t] - bz
        adjoint_conv(resid, g1, g2, alpha, grad)
        for t in range(T):
            v = z[t] + step * (grad[t] - lamG)
            s_new[t] = v if v > 0.0 else 0.0
        forward_conv(s_new, g1, g2, alpha, conv)
        b_new = _best_b(conv)
        f_new = objective_one(y, s_new, b_new, g1, g2, alpha, lamG, conv)
        if f_new > f_prev:
            # momentum overshot: restart from the last accepted point
            theta = 1.0
            for t in range(T):
                z[t] = s[t]
            continue
        theta_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * theta * theta))
        mom = (theta - 1.0) / theta_new
        for t in range(T):
            z[t] = s_new[t] + mom * (s_new[t] - s[t])
            s[t] = s_new[t]
        theta = theta_new
        rel = abs(f_prev - f_new) / max(abs(f_new), 1e-300)
        f_prev = f_new
        b = b_new
        if it >= 5 and rel < tol:
            converged = True
            break
    return b, it, converged


# ------------------------------------------------------------------- PDAS
@njit(cache=_CACHE, nogil=True)
def _mmt(i, lag, g1, g2):
    """(M M^T)[i, i-lag] for the AR(2) difference operator M (rows truncated at 0)."""
    if lag == 0:
        v = 1.0
        if i >= 1:
            v += g1 * g1
        if i >= 2:
            v += g2 * g2
        return v
    if lag == 1:
        v = -g1
        if i >= 2:
            v += g1 * g2
        return v
    if lag == 2:
        return -g2
    return 0.0


@njit(cache=_CACHE, nogil=True)
def pdas_one(y, g1, g2, alpha, lamG, baseline, active, max_iters, s_out):
    """Exact solve by primal-dual active sets.  Returns (b, iters, converged).

    ``active`` (bool, length T-1) is the starting guess of where s = 0 (a
    warm start passes the zeros of the previous activity); it is updated in
    place.  ``s_out`` receives the activity (length T, s[T-1] = 0).
    """
    T = y.shape[0]
    n = T - 1
    # z0 = y[1:] - w, w = (lamG / alpha) M^T 1: the L1 term as a linear shift
    wc = lamG / alpha
    z0 = np.empty(n)
    for j in range(n):
        mt1 = 1.0
        if j + 1 <= n - 1:
            mt1 -= g1
        if j + 2 <= n - 1:
            mt1 -= g2
        z0[j] = y[j + 1] - wc * mt1
    # M z0 and M 1 (the two right-hand sides), computed once
    mz = np.empty(n)
    m1 = np.empty(n)
    for k in range(n):
        v = z0[k]
        o = 1.0
        if k >= 1:
            v -= g1 * z0[k - 1]
            o -= g1
        if k >= 2:
            v -= g2 * z0[k - 2]
            o -= g2
        mz[k] = v
        m1[k] = o
    sum_y = 0.0
    for t in range(T):
        sum_y += y[t]

    idx = np.empty(n, np.int64)
    dg = np.empty(n)
    l1 = np.empty(n)
    l2 = np.empty(n)
    r0 = np.empty(n)
    r1 = np.empty(n)
    nu0 = np.zeros(n)
    nu1 = np.zeros(n)
    x = np.empty(n)
    u = np.empty(n)
    b = 0.0
    converged = False
    it = 0
    while it < max_iters:
        it += 1
        # ---- compressed pentadiagonal system on the active set, LDL^T
        na = 0
        for k in range(n):
            nu0[k] = 0.0
            nu1[k] = 0.0
            if active[k]:
                idx[na] = k
                na += 1
        for p in range(na):
            i = idx[p]
            bpp = _mmt(i, 0, g1, g2)
            b1 = 0.0
            b2 = 0.0
            if p >= 1:
                b1 = _mmt(i, i - idx[p - 1], g1, g2)
            if p >= 2:
                b2 = _mmt(i, i - idx[p - 2], g1, g2)
            l2p = 0.0
            l1p = 0.0
            if p >= 2 and b2 != 0.0:
                l2p = b2 / dg[p - 2]
            if p >= 1:
                num = b1
                if p >= 2:
                    num -= l2p * dg[p - 2] * l1[p - 1]
                l1p = num / dg[p - 1]
            dp = bpp
            if p >= 1:
                dp -= l1p * l1p * dg[p - 1]
            if p >= 2:
                dp -= l2p * l2p * dg[p - 2]
            l1[p] = l1p
            l2[p] = l2p
            dg[p] = dp
            # forward substitution, both right-hand sides: -(M z0)_A and (M 1)_A
            f0 = -mz[i]
            f1 = m1[i]
            if p >= 1:
                f0 -= l1p * r0[p - 1]
                f1 -= l1p * r1[p - 1]
            if p >= 2:
                f0 -= l2p * r0[p - 2]
                f1 -= l2p * r1[p - 2]
            r0[p] = f0
            r1[p] = f1
        for p in range(na):
            r0[p] /= dg[p]
            r1[p] /= dg[p]
        for p in range(na - 1, -1, -1):
            if p + 1 < na:
                r0[p] -= l1[p + 1] * r0[p + 1]
                r1[p] -= l1[p + 1] * r1[p + 1]
            if p + 2 < na:
                r0[p] -= l2[p + 2] * r0[p + 2]
                r1[p] -= l2[p + 2] * r1[p + 2]
            nu0[idx[p]] = r0[p]
            nu1[idx[p]] = r1[p]
        # ---- x = (z0 + M^T nu0) + b (-1 + M^T nu1); b = mean of y - [0, x]
        sx0 = 0.0
        sx1 = 0.0
        for j in range(n):
            a0 = nu0[j]
            a1 = nu1[j]
            if j + 1 < n:
                a0 -= g1 * nu0[j + 1]
                a1 -= g1 * nu1[j + 1]
            if j + 2 < n:
                a0 -= g2 * nu0[j + 2]
                a1 -= g2 * nu1[j + 2]
            x0 = z0[j] + a0
            x1 = a1 - 1.0
            x[j] = x0
            u[j] = x1  # scratch: x1 until b is known
            sx0 += x0
            sx1 += x1
        if baseline:
            b = (sum_y - sx0) / (T + sx1)
        else:
            b = 0.0
        for j in range(n):
            x[j] += b * u[j]
        # ---- spikes u = M x / alpha; new active set from the signs
        changed = False
        for k in range(n):
            v = x[k]
            if k >= 1:
                v -= g1 * x[k - 1]
            if k >= 2:
                v -= g2 * x[k - 2]
            v /= alpha
            if active[k]:
                u[k] = 0.0
                if nu0[k] + b * nu1[k] <= 0.0:
                    active[k] = False
                    changed = True
            else:
                u[k] = v
                if v < 0.0:
                    active[k] = True
                    changed = True
        if not changed:
            converged = True
            break
    for k in range(n):
        s_out[k] = u[k] if u[k] > 0.0 else 0.0
    s_out[T - 1] = 0.0
    return b, it, converged


# ------------------------------------------------------------ row drivers
# Serial and GIL-free: solver.py hands blocks of rows to a thread pool, which
# costs nothing for a single row (the slider path), unlike a numba prange
# launch (measured ~9 ms of overhead on one 54k-frame trace).
@njit(cache=_CACHE, nogil=True)
def pdas_rows(y, active, g1, g2, alpha, lamG, baseline, max_iters, s, b, iters, conv):
    for i in range(y.shape[0]):
        bi, it, cv = pdas_one(y[i], g1, g2, alpha, lamG, baseline, active[i], max_iters, s[i])
        b[i] = bi
        iters[i] = it
        conv[i] = cv


@njit(cache=_CACHE, nogil=True)
def fista_rows(y, s0, g1, g2, alpha, lamG, lip, baseline, tol, max_iters, s, b, iters, conv):
    for i in range(y.shape[0]):
        bi, it, cv = fista_one(y[i], g1, g2, alpha, lamG, lip, baseline, s0[i], tol,
                               max_iters, s[i])
        b[i] = bi
        iters[i] = it
        conv[i] = cv
