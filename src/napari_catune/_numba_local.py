"""Localized exchange steps of the exact solver (:func:`_numba_solvers.pdas_one`).

Notation as in :mod:`._numba_solvers`: the calcium x_k = (K s)[k+1]
(k = 0 .. n-1, n = T-1), the innovations v = M x = alpha s, an active set A
where s = 0, and the KKT multipliers nu = M^-T (x - y[1:] + b[1:]) + beta.

**Why a block exchange can be settled locally.**  With the baseline b held
fixed, the subspace problem of an active set (s = 0 on A, s free elsewhere)
decouples exactly at every *free pair*, two consecutive free samples
(k, k+1): their innovations are unconstrained, so x_k and x_{k+1} can take
any value whatever came before, and the optimum on either side of the pair
does not depend on the other side.  In the backward Riccati recursion the
value function before such a pair is a constant (P = 0, q = -beta (g1 + g2,
g2)), and on a free pair nu = 0 exactly.  So after a block exchange only
the *segments* between the free pairs that contain a flipped sample change:
each is re-solved on its own (a 2 x 2 recursion with no baseline state,
O(segment)), and exchanged again until its own KKT signs hold: block
exchanges first, then (where they cycle, on kernels slow against the frame
rate) one violator at a time, the one of largest index (Murty's rule,
finite for this strictly convex problem).  The spikes
of the pair that closes a segment on the right read the segment's last two
samples, so they are checked with it (a violator there merges the two
segments).

When the violator count stops falling (a segment's block rounds cycle,
and the same start repeats the cycle), the caller asks for Murty's rule
alone.  A round after a segment's first may re-solve only from a window
before the first sample the previous round changed, with x fixed to its
left (a block-coordinate step, cheaper on long segments of slow kernels).

With the window off this is exact for the problem with b fixed at the last
full step's baseline.  The full step that follows re-optimises b (the scalar offset, or
the drift) jointly, and only its KKT check decides convergence: the local
settling is a better guess for that step, never an answer.  After a small
slider move a full step's violators sit in a few hundred short segments, so
settling them costs a fraction of a full step and usually leaves the next
full step with none (3-5 full steps become 2).
"""

from __future__ import annotations

from numba import njit

_CACHE = True

# block-exchange rounds within one segment
_SEG_ROUNDS = 8
# ... then this many rounds that move only the violator of largest index
# (Murty's rule: the block exchange cycles on kernels slow against fs)
_SEG_SINGLE = 8


@njit(cache=_CACHE, nogil=True, inline="always")
def _pair_free(active, flip, k, n):
    """(k, k+1) is a free pair that the pending exchange did not touch."""
    return (k + 1 < n and not active[k] and not active[k + 1]
            and not flip[k] and not flip[k + 1])


@njit(cache=_CACHE, nogil=True, inline="always")
def _left_edge(active, flip, k, n):
    """Start of the segment that holds sample k: the nearest untouched free
    pair (a, a+1) with a + 1 < k, or 0."""
    a = k - 2
    while a > 0:
        if _pair_free(active, flip, a, n):
            return a
        a -= 1
    return 0


@njit(cache=_CACHE, nogil=True, inline="always")
def _right_edge(active, flip, k, n):
    """End (exclusive) of the segment that holds sample k: the nearest
    untouched free pair (e, e+1) with e > k, or n."""
    e = k + 1
    while e < n - 1:
        if _pair_free(active, flip, e, n):
            return e
        e += 1
    return n


@njit(cache=_CACHE, nogil=True)
def segment_solve(y, bvec, g1, g2, alpha, beta, active, a, e, gain, x, u, nu, eps_u, eps_nu,
                  single=False):
    """Subspace optimum on samples [a, e) with the baseline fixed at bvec and
    the segment closed by free pairs (or the trace's ends): x, u (spikes on
    the free set, 0 on A) and nu on [a, e), plus u at the closing pair
    (e, e+1), which reads x_{e-1}, x_{e-2}.  Every violator there (below
    -eps_u, -eps_nu) changes side in ``active`` as it is found.  Returns
    (violators, whether the opening pair / the closing pair changed, the
    smallest index that changed side or e + 2).
    ``gain`` (n, 3): scratch."""
    n = x.shape[0]
    p00 = 0.0
    p01 = 0.0
    p11 = 0.0
    if e >= n:
        q0 = 0.0
        q1 = 0.0
    else:
        # the value before a free pair: its two free innovations cost
        # beta (x_e - g1 x_{e-1} - g2 x_{e-2}) + beta (x_{e+1} - g1 x_e - g2 x_{e-1})
        q0 = -beta * (g1 + g2)
        q1 = -beta * g2
    for k in range(e - 1, a - 1, -1):
        zk = y[k + 1] - bvec[k + 1]
        a00 = p00 + 1.0
        a01 = p01
        a11 = p11
        l0 = q0 - zk
        l1 = q1
        if active[k]:
            p00 = g1 * g1 * a00 + 2.0 * g1 * a01 + a11
            p01 = g2 * (g1 * a00 + a01)
            p11 = g2 * g2 * a00
            q0 = g1 * l0 + l1
            q1 = g2 * l0
        else:
            inv = 1.0 / a00
            c1 = a01 * inv
            c3 = (l0 + beta) * inv
            gain[k, 0] = c1
            gain[k, 2] = c3
            p00 = a11 - a01 * c1
            p01 = 0.0
            p11 = 0.0
            q0 = (l1 - a01 * c3) - beta * g1
            q1 = -beta * g2
    xm1 = x[a - 1] if a >= 1 else 0.0
    xm2 = x[a - 2] if a >= 2 else 0.0
    for k in range(a, e):
        if active[k]:
            xk = g1 * xm1 + g2 * xm2
            u[k] = 0.0
        else:
            xk = -(gain[k, 0] * xm1 + gain[k, 2])
            u[k] = (xk - g1 * xm1 - g2 * xm2) / alpha
        x[k] = xk
        xm2 = xm1
        xm1 = xk
    # violators are flipped as they are found (the caller re-solves);
    # returns (count, whether the opening pair / the closing pair flipped)
    n_bad = 0
    grow_left = False
    grow_right = False
    # with ``single`` only the violator of largest index changes side
    # (Murty's rule: finite for this strictly convex problem)
    first = -1
    # the smallest index that changed side
    lo = e + 2
    if e < n:
        u[e] = (x[e] - g1 * xm1 - g2 * xm2) / alpha
        u[e + 1] = (x[e + 1] - g1 * x[e] - g2 * xm1) / alpha
        for j in (e + 1, e):
            if u[j] < -eps_u:
                n_bad += 1
                if not single or first < 0:
                    first = j
                    active[j] = True
                    grow_right = True
                    lo = j
        # nu = 0 on the free pair: M^-T's recursion starts from -beta there
        n1 = -beta
        n2 = -beta
    else:
        n1 = 0.0
        n2 = 0.0
    for j in range(e - 1, a - 1, -1):
        v = x[j] - y[j + 1] + bvec[j + 1] + g1 * n1 + g2 * n2
        n2 = n1
        n1 = v
        nj = v + beta
        nu[j] = nj
        if active[j]:
            bad = nj < -eps_nu
        else:
            bad = u[j] < -eps_u
        if bad:
            n_bad += 1
            if not single or first < 0:
                first = j
                active[j] = not active[j]
                lo = j
                if j <= a + 1 and a > 0:
                    grow_left = True
    return n_bad, grow_left, grow_right, lo


@njit(cache=_CACHE, nogil=True)
def local_exchange(y, bvec, g1, g2, alpha, beta, active, flip, x, u, nu, gain, eps_u, eps_nu,
                   max_seg, max_work, n_block=_SEG_ROUNDS, n_single=_SEG_SINGLE, window=0):
    """Apply the block exchange flagged in ``flip`` (after a full step of
    :func:`_numba_solvers._kkt_core`, whose x, u, nu, bvec and thresholds
    eps_u, eps_nu are given), then settle each segment that changed with
    the baseline fixed (module docstring).  A segment longer than
    ``max_seg`` is left to the next full step, as is everything once
    ``max_work`` samples have been solved.  Per segment ``n_block`` block
    rounds, then ``n_single`` rounds of Murty's rule (the caller passes 0
    and more single rounds when the last call left a segment in a cycle:
    the same start gives the same cycle).  ``active`` is updated in place;
    x, u, nu hold the local solutions (the next full step recomputes them).
    Returns (samples solved, segments left unsettled).
    """
    n = x.shape[0]
    work = 0
    left = 0
    k = 0
    while k < n:
        if not flip[k]:
            k += 1
            continue
        if work >= max_work:
            # out of budget: the rest of the exchange as a plain block flip
            for j in range(k, n):
                if flip[j]:
                    active[j] = not active[j]
            left += 1
            break
        # the pairs that close a segment are untouched by the exchange, so
        # its edges do not depend on whether its flips are applied yet
        a = _left_edge(active, flip, k, n)
        e = _right_edge(active, flip, k, n)
        for j in range(k, e):
            if flip[j]:
                active[j] = not active[j]
        settled = False
        lo = a
        for rnd in range(n_block + n_single):
            if e - a > max_seg or work + (e - a) > max_work:
                break
            # with ``window``, a round after the first re-solves only from
            # ``window`` samples before the smallest index the last one
            # changed, with x fixed before that (a block-coordinate step:
            # a guess for the next full step, exact only with window 0)
            wa = a
            if window > 0 and lo - window > a:
                wa = lo - window
            n_bad, grow_left, grow_right, lo = segment_solve(
                y, bvec, g1, g2, alpha, beta, active, wa, e, gain, x, u, nu, eps_u, eps_nu,
                rnd >= n_block)
            work += e - wa
            if n_bad == 0:
                settled = True
                break
            if grow_left and wa == a:
                a = _left_edge(active, flip, a, n)
                lo = a
            if grow_right:
                e_new = _right_edge(active, flip, e + 1, n)
                for j in range(e + 2, e_new):
                    if flip[j]:
                        active[j] = not active[j]
                e = e_new
        if not settled:
            left += 1
        # the next flipped sample lies at or after e (the closing pair is
        # untouched)
        k = e
    return work, left
