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
def _subspace_solve(y, g1, g2, alpha, beta, baseline, active, gain, x):
    """Optimum of the objective when s = 0 on ``active`` and s is free (any
    sign) elsewhere: fills x (the calcium K s at samples 1..T-1), returns b.

    A backward Riccati recursion over the state (x_k, x_{k-1}, b) followed by
    a forward pass: O(T), and stable however close the AR roots come to 1
    (the dual form, a pentadiagonal solve for the multipliers, is not: it
    cancels catastrophically once (1-d)(1-r) < ~1e-5).  ``beta`` = lamG/alpha
    is the L1 weight per unit of calcium innovation.
    """
    n = y.shape[0] - 1
    # value function 1/2 xi' P xi + q' xi of the state after step k
    p00 = 0.0
    p01 = 0.0
    p02 = 0.0
    p11 = 0.0
    p12 = 0.0
    p22 = 0.0
    q0 = 0.0
    q1 = 0.0
    q2 = 0.0
    for k in range(n - 1, -1, -1):
        # add the stage cost 1/2 (y[k+1] - x_k - b)^2
        yk = y[k + 1]
        a00 = p00 + 1.0
        a01 = p01
        a02 = p02 + 1.0
        a11 = p11
        a12 = p12
        a22 = p22 + 1.0
        l0 = q0 - yk
        l1 = q1
        l2 = q2 - yk
        if active[k]:
            # x_k = g1 x_{k-1} + g2 x_{k-2}: substitute the dynamics
            p00 = g1 * g1 * a00 + 2.0 * g1 * a01 + a11
            p01 = g2 * (g1 * a00 + a01)
            p11 = g2 * g2 * a00
            p02 = g1 * a02 + a12
            p12 = g2 * a02
            p22 = a22
            q0 = g1 * l0 + l1
            q1 = g2 * l0
            q2 = l2
        else:
            # x_k free at cost beta * (x_k - g1 x_{k-1} - g2 x_{k-2}):
            # minimise over x_k, then substitute the rest of the dynamics
            inv = 1.0 / a00
            c1 = a01 * inv
            c2 = a02 * inv
            c3 = (l0 + beta) * inv
            gain[k, 0] = c1
            gain[k, 1] = c2
            gain[k, 2] = c3
            r11 = a11 - a01 * c1
            r12 = a12 - a01 * c2
            r22 = a22 - a02 * c2
            s1 = l1 - a01 * c3
            s2 = l2 - a02 * c3
            # the remaining quadratic is in (x_{k-1}, b) only; the linear
            # term -beta * (g1 x_{k-1} + g2 x_{k-2}) stays
            p00 = r11
            p01 = 0.0
            p11 = 0.0
            p02 = r12
            p12 = 0.0
            p22 = r22
            q0 = s1 - beta * g1
            q1 = -beta * g2
            q2 = s2
    b = 0.0
    if baseline:
        # state before step 0 is (0, 0, b); stage 0 of y has no calcium
        b = (y[0] - q2) / (1.0 + p22)
    xm1 = 0.0
    xm2 = 0.0
    for k in range(n):
        if active[k]:
            xk = g1 * xm1 + g2 * xm2
        else:
            xk = -(gain[k, 0] * xm1 + gain[k, 1] * b + gain[k, 2])
        x[k] = xk
        xm2 = xm1
        xm1 = xk
    return b


@njit(cache=_CACHE, nogil=True)
def _spikes_and_multipliers(y, x, b, g1, g2, alpha, beta, active, u, nu):
    """u = M x / alpha on the free set (0 on the active set) and the KKT
    multipliers nu = M^-T (x - y[1:] + b) + beta; returns (max|u|, max|nu_A|)."""
    n = x.shape[0]
    u_max = 0.0
    for k in range(n):
        if active[k]:
            u[k] = 0.0
        else:
            v = x[k]
            if k >= 1:
                v -= g1 * x[k - 1]
            if k >= 2:
                v -= g2 * x[k - 2]
            u[k] = v / alpha
            u_max = max(u_max, abs(u[k]))
    n1 = 0.0
    n2 = 0.0
    nu_max = 0.0
    for j in range(n - 1, -1, -1):
        v = x[j] - y[j + 1] + b + g1 * n1 + g2 * n2
        n2 = n1
        n1 = v
        nu[j] = v + beta
        if active[j]:
            nu_max = max(nu_max, abs(nu[j]))
    return u_max, nu_max


@njit(cache=_CACHE, nogil=True)
def pdas_one(y, g1, g2, alpha, lamG, baseline, active, max_iters, s_out, rel_eps=1e-11):
    """Exact solve by primal-dual active sets.  Returns (b, iters, converged).

    ``active`` (bool, length T-1) is the starting guess of where s = 0 (a
    warm start passes the zeros of the previous activity); it is updated in
    place.  ``s_out`` receives the activity (length T, s[T-1] = 0).

    Each step solves the problem with s = 0 on the active set and s free
    elsewhere (:func:`_subspace_solve`), then reads the KKT signs: spikes u
    on the free set must be >= 0, and the multipliers nu = M^-T (x - y + b)
    + lamG / alpha of the constraints s >= 0 on the active set must be >= 0.
    """
    T = y.shape[0]
    n = T - 1
    beta = lamG / alpha
    gain = np.empty((n, 3))
    x = np.empty(n)
    u = np.empty(n)
    nu = np.empty(n)
    flip = np.empty(n, np.bool_)
    best_bad = n + 1
    chances = 3
    b = 0.0
    converged = False
    it = 0
    while it < max_iters:
        it += 1
        b = _subspace_solve(y, g1, g2, alpha, beta, baseline, active, gain, x)
        u_max, nu_max = _spikes_and_multipliers(y, x, b, g1, g2, alpha, beta, active, u, nu)
        eps_nu = rel_eps * nu_max
        eps_u = rel_eps * u_max
        n_bad = 0
        last_bad = -1
        for k in range(n):
            if active[k]:
                bad = nu[k] < -eps_nu
            else:
                bad = u[k] < -eps_u
            flip[k] = bad
            if bad:
                n_bad += 1
                last_bad = k
        if n_bad == 0:
            converged = True
            break
        # Block principal pivoting (Judice & Pires): exchange every violator
        # while the count of violators keeps falling (with a few chances),
        # else exchange only the last one.  Plain exchanges can cycle on
        # ill-conditioned kernels; this rule cannot, the problem being a
        # strictly convex QP (an LCP with a P-matrix).
        if n_bad < best_bad:
            best_bad = n_bad
            chances = 3
            block = True
        elif chances > 0:
            chances -= 1
            block = True
        else:
            block = False
        if block:
            for k in range(n):
                if flip[k]:
                    active[k] = not active[k]
        else:
            active[last_bad] = not active[last_bad]
    for k in range(n):
        s_out[k] = u[k] if u[k] > 0.0 else 0.0
    s_out[T - 1] = 0.0
    if not converged:
        # the budget ran out: report the baseline that suits these spikes
        b = _best_baseline(y, s_out, g1, g2, alpha, baseline, np.empty(T))
    return b, it, converged


@njit(cache=_CACHE, nogil=True)
def _best_baseline(y, s, g1, g2, alpha, baseline, work):
    if not baseline:
        return 0.0
    forward_conv(s, g1, g2, alpha, work)
    acc = 0.0
    for t in range(y.shape[0]):
        acc += y[t] - work[t]
    return acc / y.shape[0]



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


@njit(cache=_CACHE, nogil=True)
def conv_rows(s, g1, g2, alpha, out):
    for i in range(s.shape[0]):
        forward_conv(s[i], g1, g2, alpha, out[i])
