"""Compiled per-trace solvers of the CaTune objective (numba, nopython, no GIL).

Notation (DESIGN.md): the kernel h[i] = alpha * a[i-1] for i >= 1, h[0] = 0,
where a is the impulse response of the AR(2) filter
``q[k] = s[k] + g1 q[k-1] + g2 q[k-2]``.  Hence ``(K s)[t] = alpha q[t-1]``
and K s never depends on s[T-1].  Both solvers minimise

    F(s, b) = 1/2 ||y - K s - b||^2 + lamG * sum(s),   s >= 0,

with the baseline b given by ``mode``: 0 fixed at 0, 1 one free scalar, 2 a
free per-sample b_t with the random-walk penalty
``(mu/2) sum_t (b_t - b_{t-1})^2`` added to F ("drift").  Every routine
takes a per-sample baseline buffer ``bvec`` (length T) so the three modes
share one code path; modes 0 and 1 fill it with a constant.

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
# active-set steps without a new fewest-violators count before the pivoting
# falls back from random half exchanges to one exchange per step
_STALL = 200


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
def objective_one(y, s, bvec, g1, g2, alpha, lamG, mu, work):
    """F(s, b) for a per-sample baseline; the drift penalty when mu > 0."""
    forward_conv(s, g1, g2, alpha, work)
    acc = 0.0
    l1 = 0.0
    for t in range(y.shape[0]):
        r = y[t] - work[t] - bvec[t]
        acc += r * r
        l1 += s[t]
    pen = 0.0
    if mu > 0.0:
        for t in range(1, y.shape[0]):
            db = bvec[t] - bvec[t - 1]
            pen += db * db
    return 0.5 * acc + 0.5 * mu * pen + lamG * l1


@njit(cache=_CACHE, nogil=True)
def smooth_baseline(r, mu, gain, out):
    """argmin_b 1/2 ||r - b||^2 + mu/2 sum (b_t - b_{t-1})^2 into ``out``.

    A scalar Riccati recursion (backward value 1/2 P b^2 + q b, forward
    gains): O(T), and every update is a harmonic mean mu P / (P + mu), so
    there is no cancellation however large mu is.  ``gain`` holds T floats.
    """
    T = r.shape[0]
    P = 0.0
    q = 0.0
    for t in range(T - 1, 0, -1):
        P += 1.0
        q -= r[t]
        den = P + mu
        gain[t] = den
        # b_t = (mu b_{t-1} - q) / den; store q in out to recover it
        out[t] = q
        P = mu * P / den
        q = mu * q / den
    P += 1.0
    q -= r[0]
    out[0] = -q / P
    for t in range(1, T):
        out[t] = (mu * out[t - 1] - out[t]) / gain[t]


@njit(cache=_CACHE, nogil=True)
def best_baseline(resid, mode, mu, gain, bvec):
    """The optimal baseline for a residual y - K s, into bvec."""
    T = resid.shape[0]
    if mode == 2:
        smooth_baseline(resid, mu, gain, bvec)
        return
    b = 0.0
    if mode == 1:
        acc = 0.0
        for t in range(T):
            acc += resid[t]
        b = acc / T
    for t in range(T):
        bvec[t] = b


# ------------------------------------------------------------------ FISTA
@njit(cache=_CACHE, nogil=True)
def fista_one(y, g1, g2, alpha, lamG, G, lip, mode, mu, s0, tol, kkt_tol, kkt_every, max_iters,
              s_out, bvec):
    """FISTA with objective-based adaptive restart.  Returns (iters, converged).

    Stops when the relative objective change falls below ``tol`` (after at
    least 5 iterations), when ``kkt_every`` > 0 and the KKT conditions hold
    (:func:`kkt_holds`, checked every ``kkt_every`` iterations), or after
    ``max_iters``.  ``converged`` is the KKT check of the answer, whatever
    stopped it.

    The baseline is eliminated exactly: for given s the best b is a linear
    function of the residual y - K s (its mean, or the random-walk smoother
    for drift), so the smooth part is 1/2 r' (I - B) r with eigenvalues of
    I - B in [0, 1]; its gradient -K' (r - B r) is Lipschitz with constant
    <= ||K||^2.  ``bvec`` receives the baseline of the answer.
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
    bz = np.empty(T)
    b_new = np.empty(T)
    gain = np.empty(T)

    forward_conv(s, g1, g2, alpha, conv)
    for t in range(T):
        resid[t] = y[t] - conv[t]
    best_baseline(resid, mode, mu, gain, bvec)
    f_prev = objective_one(y, s, bvec, g1, g2, alpha, lamG, mu, conv)
    theta = 1.0
    converged = False
    it = 0
    while it < max_iters:
        it += 1
        forward_conv(z, g1, g2, alpha, conv)
        for t in range(T):
            resid[t] = y[t] - conv[t]
        best_baseline(resid, mode, mu, gain, bz)
        for t in range(T):
            resid[t] -= bz[t]
        adjoint_conv(resid, g1, g2, alpha, grad)
        for t in range(T):
            v = z[t] + step * (grad[t] - lamG)
            s_new[t] = v if v > 0.0 else 0.0
        forward_conv(s_new, g1, g2, alpha, conv)
        for t in range(T):
            resid[t] = y[t] - conv[t]
        best_baseline(resid, mode, mu, gain, b_new)
        f_new = objective_one(y, s_new, b_new, g1, g2, alpha, lamG, mu, conv)
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
            bvec[t] = b_new[t]
        theta = theta_new
        rel = abs(f_prev - f_new) / max(abs(f_new), 1e-300)
        f_prev = f_new
        if it >= 5 and rel < tol:
            break
        if kkt_every > 0 and it % kkt_every == 0 and kkt_holds(y, s, bvec, g1, g2, alpha, lamG, G, mode, mu, kkt_tol):
            converged = True
            break
    if not converged:
        converged = kkt_holds(y, s, bvec, g1, g2, alpha, lamG, G, mode, mu, kkt_tol)
    return it, converged


# ------------------------------------------------------------------- PDAS
@njit(cache=_CACHE, nogil=True)
def _subspace_solve(y, g1, g2, alpha, beta, mode, mu, active, gain, gb, x, bvec):
    """Optimum of the objective when s = 0 on ``active`` and s is free (any
    sign) elsewhere: fills x (the calcium K s at samples 1..T-1) and bvec
    (the baseline at samples 0..T-1).

    A backward Riccati recursion over the state (x_k, x_{k-1}, b) followed by
    a forward pass: O(T), and stable however close the AR roots come to 1
    (the dual form, a pentadiagonal solve for the multipliers, is not: it
    cancels catastrophically once (1-d)(1-r) < ~1e-5).  ``beta`` = lamG/alpha
    is the L1 weight per unit of calcium innovation.

    Drift (mode 2): b is a per-sample state b_{k+1} =: c_k with the cost
    mu/2 (c_k - c_{k-1})^2.  After x_k is eliminated (given x_{k-1}, x_{k-2}
    and c_k), c_k is eliminated given c_{k-1}: a Schur complement with
    pivot p22 + mu whose updates are harmonic (mu p / (p + mu)), so large mu
    loses nothing.  Its gains ``gb`` recover c_k in the forward pass.
    """
    n = y.shape[0] - 1
    drift = mode == 2
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
        if drift:
            # c_k = (mu c_{k-1} - p02 x_{k-1} - p12 x_{k-2} - q2) / (p22 + mu)
            inv = 1.0 / (p22 + mu)
            w0 = p02 * inv
            w1 = p12 * inv
            w3 = q2 * inv
            wm = mu * inv
            gb[k, 0] = w0
            gb[k, 1] = w1
            gb[k, 2] = wm
            gb[k, 3] = w3
            p00 -= p02 * w0
            p01 -= p02 * w1
            p11 -= p12 * w1
            q0 -= p02 * w3
            q1 -= p12 * w3
            p02 = p02 * wm
            p12 = p12 * wm
            p22 = p22 * wm
            q2 = q2 * wm
    b = 0.0
    if mode != 0:
        # state before step 0 is (0, 0, b_0); stage 0 of y has no calcium
        b = (y[0] - q2) / (1.0 + p22)
    bvec[0] = b
    xm1 = 0.0
    xm2 = 0.0
    for k in range(n):
        if drift:
            b = gb[k, 2] * b - gb[k, 0] * xm1 - gb[k, 1] * xm2 - gb[k, 3]
        bvec[k + 1] = b
        if active[k]:
            xk = g1 * xm1 + g2 * xm2
        else:
            xk = -(gain[k, 0] * xm1 + gain[k, 1] * b + gain[k, 2])
        x[k] = xk
        xm2 = xm1
        xm1 = xk


@njit(cache=_CACHE, nogil=True)
def _spikes_and_multipliers(y, x, bvec, g1, g2, alpha, beta, active, u, nu):
    """u = M x / alpha on the free set (0 on the active set) and the KKT
    multipliers nu = M^-T (x - y[1:] + b[1:]) + beta; returns (max|u|, max|nu_A|)."""
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
        v = x[j] - y[j + 1] + bvec[j + 1] + g1 * n1 + g2 * n2
        n2 = n1
        n1 = v
        nu[j] = v + beta
        if active[j]:
            nu_max = max(nu_max, abs(nu[j]))
    return u_max, nu_max


@njit(cache=_CACHE, nogil=True)
def pdas_one(y, g1, g2, alpha, lamG, mode, mu, active, max_iters, s_out, bvec, rel_eps=1e-11):
    """Exact solve by primal-dual active sets.  Returns (iters, converged).

    ``active`` (bool, length T-1) is the starting guess of where s = 0 (a
    warm start passes the zeros of the previous activity); it is updated in
    place.  ``s_out`` receives the activity (length T, s[T-1] = 0) and
    ``bvec`` the baseline per sample.

    Each step solves the problem with s = 0 on the active set and s free
    elsewhere (:func:`_subspace_solve`), then reads the KKT signs: spikes u
    on the free set must be >= 0, and the multipliers nu = M^-T (x - y + b)
    + lamG / alpha of the constraints s >= 0 on the active set must be >= 0.
    """
    T = y.shape[0]
    n = T - 1
    beta = lamG / alpha
    gain = np.empty((n, 3))
    gb = np.empty((n if mode == 2 else 1, 4))
    x = np.empty(n)
    u = np.empty(n)
    nu = np.empty(n)
    flip = np.empty(n, np.bool_)
    best_bad = n + 1
    chances = 3
    stall = 0
    seed = np.uint64(0x9E3779B97F4A7C15)
    converged = False
    it = 0
    while it < max_iters:
        it += 1
        _subspace_solve(y, g1, g2, alpha, beta, mode, mu, active, gain, gb, x, bvec)
        u_max, nu_max = _spikes_and_multipliers(y, x, bvec, g1, g2, alpha, beta, active, u, nu)
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
        # while the count of violators keeps falling (with a few chances).
        # When it stalls, slow rises (the dual LCP matrix is then far from an
        # M-matrix) leave small clusters of violators spread over the trace
        # that full exchanges toggle back and forth.  Exchanging a random
        # half of the violators breaks those cycles in every cluster at once
        # (measured: 3-4x fewer steps than one exchange per step on GCaMP6s
        # at 100 Hz, and step counts that grow like log T instead of T).
        # If even that makes no new best for _STALL steps, fall back to
        # Murty's rule, one exchange (the last violator) per step, which
        # cannot cycle: the problem is a strictly convex QP (an LCP with a
        # P-matrix).
        if n_bad < best_bad:
            best_bad = n_bad
            chances = 3
            stall = 0
            rule = 0
        elif chances > 0:
            chances -= 1
            stall += 1
            rule = 0
        else:
            stall += 1
            rule = 1 if stall <= _STALL else 2
        if rule == 0:
            for k in range(n):
                if flip[k]:
                    active[k] = not active[k]
        elif rule == 1:
            for k in range(n):
                if flip[k]:
                    # 64-bit LCG (Knuth's MMIX constants): deterministic
                    seed = seed * np.uint64(6364136223846793005) + np.uint64(1442695040888963407)
                    if (seed >> np.uint64(63)) == np.uint64(1):
                        active[k] = not active[k]
        else:
            active[last_bad] = not active[last_bad]
    for k in range(n):
        s_out[k] = u[k] if u[k] > 0.0 else 0.0
    s_out[T - 1] = 0.0
    if not converged:
        # the budget ran out: report the baseline that suits these spikes
        work = np.empty(T)
        forward_conv(s_out, g1, g2, alpha, work)
        for t in range(T):
            work[t] = y[t] - work[t]
        best_baseline(work, mode, mu, np.empty(T), bvec)
    return it, converged


# ------------------------------------------------- rolling baseline (CaTune)
@njit(cache=_CACHE, nogil=True)
def rolling_quantile_one(y, W, q, out):
    """Causal rolling k-th smallest over blocks of W samples.

    The outputs of block j = [jW, (j+1)W) only see samples of blocks j-1 and
    j.  Each block is sorted once; the two sorted neighbours are merged (O(W))
    into ranks over 2W slots, and a Fenwick tree over those ranks counts the
    samples in the window: one insert, one removal and one k-th query
    (binary lifting) per sample, O(log W) each.
    """
    T = y.shape[0]
    m_max = 2 * W
    tree = np.zeros(m_max + 1, np.int64)
    rank = np.empty(m_max, np.int64)
    vals = np.empty(m_max)
    top = 1
    while top * 2 <= m_max:
        top *= 2
    prev = np.empty(0, np.int64)  # sorted order of the previous block (global indices)
    c0 = 0
    while c0 < T:
        c1 = min(c0 + W, T)
        cur = np.argsort(y[c0:c1]) + c0
        lo = c0 - prev.shape[0]
        m = c1 - lo
        # merge the two sorted blocks: slot j of the merged order
        i = 0
        j = 0
        n_prev = prev.shape[0]
        n_cur = cur.shape[0]
        for slot in range(m):
            if j >= n_cur or (i < n_prev and y[prev[i]] <= y[cur[j]]):
                g = prev[i]
                i += 1
            else:
                g = cur[j]
                j += 1
            rank[g - lo] = slot
            vals[slot] = y[g]
        # counts before the block's first sample: the whole previous block
        # (its first sample leaves as the block's first sample enters)
        for s_ in range(m + 1):
            tree[s_] = 0
        for g in range(lo, c0):
            tree[rank[g - lo] + 1] += 1
        for s_ in range(1, m + 1):
            p = s_ + (s_ & (-s_))
            if p <= m:
                tree[p] += tree[s_]
        for t in range(c0, c1):
            s_ = rank[t - lo] + 1
            while s_ <= m:
                tree[s_] += 1
                s_ += s_ & (-s_)
            if t - W >= lo:
                s_ = rank[t - W - lo] + 1
                while s_ <= m:
                    tree[s_] -= 1
                    s_ += s_ & (-s_)
            n_t = min(t + 1, W)
            k = int(math.floor((n_t - 1) * q + 0.5))
            if k > n_t - 1:
                k = n_t - 1
            # slot of the (k+1)-th smallest
            need = k + 1
            pos = 0
            bit = top
            while bit > 0:
                nxt = pos + bit
                if nxt <= m and tree[nxt] < need:
                    need -= tree[nxt]
                    pos = nxt
                bit >>= 1
            out[t] = vals[pos]
        prev = cur
        c0 = c1


@njit(cache=_CACHE, nogil=True)
def rolling_quantile_rows(y, W, q, out):
    for i in range(y.shape[0]):
        rolling_quantile_one(y[i], W, q, out[i])


# ------------------------------------------------------------ row drivers
# Serial and GIL-free: solver.py hands blocks of rows to a thread pool, which
# costs nothing for a single row (the slider path), unlike a numba prange
# launch (measured ~9 ms of overhead on one 54k-frame trace).  ``b`` is
# (n, 1) for the constant-baseline modes and (n, T) for drift.
@njit(cache=_CACHE, nogil=True)
def pdas_rows(y, active, g1, g2, alpha, lamG, G, mode, mu, kkt_tol, max_iters, s, b, iters,
              conv):
    """pdas_one per row; ``conv`` is the KKT check of each answer."""
    bvec = np.empty(y.shape[1])
    for i in range(y.shape[0]):
        it, settled = pdas_one(y[i], g1, g2, alpha, lamG, mode, mu, active[i], max_iters, s[i],
                               bvec)
        _store_baseline(b, i, bvec)
        iters[i] = it
        conv[i] = kkt_holds(y[i], s[i], bvec, g1, g2, alpha, lamG, G, mode, mu, kkt_tol)


@njit(cache=_CACHE, nogil=True)
def fista_rows(y, s0, g1, g2, alpha, lamG, G, lip, mode, mu, tol, kkt_tol, kkt_every,
               max_iters, s, b, iters, conv):
    bvec = np.empty(y.shape[1])
    for i in range(y.shape[0]):
        it, cv = fista_one(y[i], g1, g2, alpha, lamG, G, lip, mode, mu, s0[i], tol, kkt_tol,
                           kkt_every, max_iters, s[i], bvec)
        _store_baseline(b, i, bvec)
        iters[i] = it
        conv[i] = cv


@njit(cache=_CACHE, nogil=True)
def _store_baseline(b, i, bvec):
    if b.shape[1] == 1:
        b[i, 0] = bvec[0]
    else:
        b[i, :] = bvec


@njit(cache=_CACHE, nogil=True)
def objective_rows(y, s, g1, g2, alpha, lamG, mode, mu, out):
    """F at each row's best baseline for the given activity."""
    T = y.shape[1]
    work = np.empty(T)
    resid = np.empty(T)
    bvec = np.empty(T)
    gain = np.empty(T)
    for i in range(y.shape[0]):
        forward_conv(s[i], g1, g2, alpha, work)
        for t in range(T):
            resid[t] = y[i, t] - work[t]
        best_baseline(resid, mode, mu, gain, bvec)
        out[i] = objective_one(y[i], s[i], bvec, g1, g2, alpha, lamG, mu, work)


@njit(cache=_CACHE, nogil=True)
def kkt_one(y, s, bvec, g1, g2, alpha, lamG, G, mode, mu, work, grad, bbest):
    """Largest violations of the optimality conditions, in trace units.

    Returns (v_s, v_b).  v_s: with r = y - K s - b and g = lamG - K' r, the
    largest of |g| on s > 0 and max(-g, 0) on s = 0, divided by G = sum(h)
    (so it reads as a residual amplitude).  v_b: how far b is from the best
    baseline for these spikes, max |B(y - K s) - b| (B the mean, or the
    drift smoother): the baseline's stationarity condition mapped through
    (I + mu L)^-1, whose rows are non-negative and sum to 1, so this is
    never smaller than the gradient's size measured that way, and it is
    computed without the cancellation of forming mu L b.
    """
    T = y.shape[0]
    forward_conv(s, g1, g2, alpha, work)
    for t in range(T):
        work[t] = y[t] - work[t]
    v_b = 0.0
    if mode != 0:
        best_baseline(work, mode, mu, grad, bbest)
        for t in range(T):
            v = abs(bbest[t] - bvec[t])
            if v > v_b:
                v_b = v
    for t in range(T):
        work[t] -= bvec[t]
    adjoint_conv(work, g1, g2, alpha, grad)
    v_s = 0.0
    for t in range(T):
        g = lamG - grad[t]
        if s[t] > 0.0:
            v = abs(g)
        else:
            v = -g
        if v > v_s:
            v_s = v
    return v_s / G, v_b


# rounding floor of the KKT check, in units of the largest |y|: r = y - K s - b
# cannot be formed more accurately than a few ulp of |y|
KKT_FLOOR = 1000.0 * 2.220446049250313e-16


@njit(cache=_CACHE, nogil=True)
def kkt_tolerance(y, kkt_tol):
    """kkt_tol times the trace's range, plus the rounding floor."""
    lo = y[0]
    hi = y[0]
    for t in range(y.shape[0]):
        lo = min(lo, y[t])
        hi = max(hi, y[t])
    return kkt_tol * (hi - lo) + KKT_FLOOR * max(abs(lo), abs(hi))


@njit(cache=_CACHE, nogil=True)
def kkt_holds(y, s, bvec, g1, g2, alpha, lamG, G, mode, mu, kkt_tol):
    """Whether (s, b) is optimal to :func:`kkt_tolerance`."""
    T = y.shape[0]
    v_s, v_b = kkt_one(y, s, bvec, g1, g2, alpha, lamG, G, mode, mu, np.empty(T),
                       np.empty(T), np.empty(T))
    return max(v_s, v_b) <= kkt_tolerance(y, kkt_tol)


@njit(cache=_CACHE, nogil=True)
def kkt_rows(y, s, b, g1, g2, alpha, lamG, G, mode, mu, out):
    """kkt_one per row; b is (n, 1) or (n, T); out (n, 2)."""
    T = y.shape[1]
    work = np.empty(T)
    grad = np.empty(T)
    bvec = np.empty(T)
    bbest = np.empty(T)
    for i in range(y.shape[0]):
        if b.shape[1] == 1:
            bvec[:] = b[i, 0]
        else:
            bvec[:] = b[i]
        v_s, v_b = kkt_one(y[i], s[i], bvec, g1, g2, alpha, lamG, G, mode, mu, work, grad,
                           bbest)
        out[i, 0] = v_s
        out[i, 1] = v_b


@njit(cache=_CACHE, nogil=True)
def conv_rows(s, g1, g2, alpha, out):
    for i in range(s.shape[0]):
        forward_conv(s[i], g1, g2, alpha, out[i])
