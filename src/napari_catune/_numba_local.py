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

A warm start thins every block exchange, the full step's and the
segments' rounds alike (:func:`thin_flips`): of the violators of one kind
within a fraction of the kernel's rise of each other only the most negative
changes side.  On kernels slow against fs the violators come in runs that
answer one misfit; flipping a whole run overshoots, and the rounds cycle.

With the window off this is exact for the problem with b fixed at the last
full step's baseline.  The full step that follows re-optimises b (the scalar offset, or
the drift) jointly, and only its KKT check decides convergence: the local
settling is a better guess for that step, never an answer.  After a small
slider move a full step's violators sit in a few hundred short segments, so
settling them costs a fraction of a full step and usually leaves the next
full step with none (3-5 full steps become 2).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._numba_short import segment_back_short

# numba's cache of this file's functions is keyed on this file alone, not on
# _numba_short's, which they call: this digest of that source (checked by
# tests/test_numba_cache_key.py) makes a change there a change here
_CALLEES_SHA = "83c91990cfe6eab3"

_CACHE = True

# block-exchange rounds within one segment
_SEG_ROUNDS = 8
# ... then this many rounds that move only the violator of largest index
# (Murty's rule: the block exchange cycles on kernels slow against fs)
_SEG_SINGLE = 8
# _ar_chains' direction (one compiled kind: typed, not literal, booleans)
_FWD = np.bool_(False)
# the dense settle's Cholesky factor, solves and gradients with their dot
# products in four chains (_dot4; the coarse blocks keep the plain sums)
_CHAINS = np.bool_(True)
_BACK = np.bool_(True)
# unsigned index constants (a signed index + int64 literal would be a float)
_U0 = np.uint64(0)
_U1 = np.uint64(1)
_U2 = np.uint64(2)
_U3 = np.uint64(3)
_U4 = np.uint64(4)


# ---------------------------------------------- filters (used by _numba_solvers)
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


# The edges' scans test for an untouched free pair (both samples free, neither
# flagged) in the loop itself: with the test in a helper that numba inlined
# (inline="always") every test took the arrays' reference counts (~20 ns a
# sample scanned; 0.58 of the 0.78 ms a settle took on GCaMP6s at 100 Hz,
# 54,000 frames, after tau_decay +2 %).
@njit(cache=_CACHE, nogil=True)
def _left_edge(active, flip, k, n):
    """Start of the segment that holds sample k: the nearest untouched free
    pair (a, a+1) with a + 1 < k, or 0."""
    a = k - 2
    while a > 0:
        # (a + 1 < k <= n: the pair lies within the trace)
        if not (active[a] or active[a + 1] or flip[a] or flip[a + 1]):
            return a
        a -= 1
    return 0


@njit(cache=_CACHE, nogil=True)
def _right_edge(active, flip, k, n):
    """End (exclusive) of the segment that holds sample k: the nearest
    untouched free pair (e, e+1) with e > k, or n."""
    e = k + 1
    while e < n - 1:
        if not (active[e] or active[e + 1] or flip[e] or flip[e + 1]):
            return e
        e += 1
    return n


@njit(cache=_CACHE, nogil=True)
def segment_solve(y, bvec, g1, g2, alpha, beta, active, a, e, gain, x, u, nu, eps_u, eps_nu,
                  single=False, thin=0, short=False):
    """Subspace optimum on samples [a, e) with the baseline fixed at bvec and
    the segment closed by free pairs (or the trace's ends): x, u (spikes on
    the free set, 0 on A) and nu on [a, e), plus u at the closing pair
    (e, e+1), which reads x_{e-1}, x_{e-2}.  Every violator there (below
    -eps_u, -eps_nu) changes side in ``active`` as it is found.  Returns
    (violators, whether the opening pair / the closing pair changed, the
    smallest index that changed side or e + 2).
    ``gain`` (n, 3): scratch.

    With ``thin`` > 0 (and not ``single``) a violator of the segment changes
    side only if it is the most negative of its kind (a negative spike, a
    negative multiplier) in its cluster: scanning leftwards, a violator
    within ``thin`` samples of the current most negative one joins its
    cluster.  On a kernel slow against fs neighbouring violators all
    answer the same misfit, and flipping them all overshoots (the block
    rounds cycle); flipping one per cluster settles in fewer rounds.  The
    count returned is of all violators.

    With ``short`` the backward recursion is
    :func:`._numba_short.segment_back_short` (shorter loop-carried chains,
    rounded differently: a warm start's slider path)."""
    n = x.shape[0]
    # the value function 1/2 xi' P xi + q' xi of (x_k, x_{k-1}) carried with
    # the next stage cost's one already in a00 = p00 + 1 (a shorter
    # loop-carried chain: an active sample's a00 is one product and one sum
    # of the last, a free sample's the division and one product and sum)
    g1sq = g1 * g1
    g1x2 = 2.0 * g1
    g2sq = g2 * g2
    bg1 = beta * g1
    bg2 = -beta * g2
    a00 = 1.0
    a01 = 0.0
    a11 = 0.0
    if e >= n:
        q0 = 0.0
        q1 = 0.0
    else:
        # the value before a free pair: its two free innovations cost
        # beta (x_e - g1 x_{e-1} - g2 x_{e-2}) + beta (x_{e+1} - g1 x_e - g2 x_{e-1})
        q0 = -beta * (g1 + g2)
        q1 = bg2
    if short:
        segment_back_short(y, bvec, g1, g2, beta, active, a, e, gain, q0, q1)
    else:
        for k in range(e - 1, a - 1, -1):
            l0 = q0 - (y[k + 1] - bvec[k + 1])
            if active[k]:
                a01n = g2 * (g1 * a00 + a01)
                a11n = g2sq * a00
                a00 = g1sq * a00 + (g1x2 * a01 + (a11 + 1.0))
                a01 = a01n
                a11 = a11n
                q0 = g1 * l0 + q1
                q1 = g2 * l0
            else:
                inv = 1.0 / a00
                e11 = a01 * a01
                lb = l0 + beta
                c1 = a01 * inv
                c3 = lb * inv
                gain[k, 0] = c1
                gain[k, 2] = c3
                q0 = (q1 - a01 * c3) - bg1
                q1 = bg2
                a00 = (a11 + 1.0) - e11 * inv
                a01 = 0.0
                a11 = 0.0
    xm1 = x[a - 1] if a >= 1 else 0.0
    xm2 = x[a - 2] if a >= 2 else 0.0
    inv_alpha = 1.0 / alpha
    for kk in range(a, e):
        # (indices unsigned here and below: no tests for negative ones)
        k = np.uint64(kk)
        if active[k]:
            xk = g1 * xm1 + g2 * xm2
            u[k] = 0.0
        else:
            xk = -(gain[k, 0] * xm1 + gain[k, 2])
            u[k] = (xk - g1 * xm1 - g2 * xm2) * inv_alpha
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
    # thinning: the pending candidate of each kind (0: a free sample's
    # negative spike, 1: an active sample's negative multiplier), its index
    # and value; committed when the next violator of its kind lies more
    # than ``thin`` samples to its left
    thinning = thin > 0 and not single
    c0 = -1
    c1 = -1
    v0 = 0.0
    v1 = 0.0
    for j in range(e - 1, a - 1, -1):
        ju = np.uint64(j)
        # n2 off the loop-carried chain (one product and one sum on it)
        v = ((x[ju] - y[np.uint64(j + 1)] + bvec[np.uint64(j + 1)]) + g2 * n2) + g1 * n1
        n2 = n1
        n1 = v
        nj = v + beta
        nu[ju] = nj
        if active[ju]:
            bad = nj < -eps_nu
        else:
            bad = u[ju] < -eps_u
        if bad:
            n_bad += 1
            if thinning:
                if active[j]:
                    if c1 >= 0 and c1 - j > thin:
                        active[c1] = False
                        lo = min(lo, c1)
                        c1 = -1
                    if c1 < 0 or nj < v1:
                        c1 = j
                        v1 = nj
                else:
                    if c0 >= 0 and c0 - j > thin:
                        active[c0] = True
                        lo = min(lo, c0)
                        c0 = -1
                    if c0 < 0 or u[j] < v0:
                        c0 = j
                        v0 = u[j]
            elif not single or first < 0:
                first = j
                active[j] = not active[j]
                lo = j
                if j <= a + 1 and a > 0:
                    grow_left = True
    if thinning:
        for c, val in ((c0, True), (c1, False)):
            if c >= 0:
                active[c] = val
                if c < lo:
                    lo = c
                if c <= a + 1 and a > 0:
                    grow_left = True
        if lo <= a + 1 and a > 0:
            grow_left = True
    return n_bad, grow_left, grow_right, lo


@njit(cache=_CACHE, nogil=True)
def local_exchange(y, bvec, g1, g2, alpha, beta, active, flip, x, u, nu, gain, eps_u, eps_nu,
                   max_seg, max_work, n_block=_SEG_ROUNDS, n_single=_SEG_SINGLE, window=0,
                   thin=0, short=False):
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
    ``short``: :func:`segment_solve`'s recursion with short chains.
    ``flip`` must be C-contiguous (its flags are read eight at a time; the
    solver passes a slice of its bool workspace).
    Returns (samples solved, segments left unsettled).
    """
    n = x.shape[0]
    work = 0
    left = 0
    # the flags eight at a time where a word holds none (a step's flags are
    # a few hundred among tens of thousands of samples: the sample-by-sample
    # scan took ~35 us a settle on 54,000 frames)
    nw = n >> 3
    f64 = flip[0:nw << 3].view(np.uint64)
    k = 0
    while k < n:
        if not flip[k]:
            k += 1
            if (k & 7) == 0:
                w = k >> 3
                while w < nw and f64[w] == 0:
                    w += 1
                if (w << 3) > k:
                    k = w << 3
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
                rnd >= n_block, thin, short)
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


@njit(cache=_CACHE, nogil=True)
def thin_flips(active, flip, u, nu, thin):
    """Keep, of the violators flagged in ``flip`` (after a full step: u the
    spikes, nu the multipliers), only the most negative of each cluster of
    its kind (a free sample's negative spike, an active sample's negative
    multiplier): scanning leftwards, a violator within ``thin`` samples of
    its kind's current most negative one joins that one's cluster.
    Returns the number kept.

    On a kernel slow against fs neighbouring violators answer the same
    misfit; flipping them all overshoots (spikes added at every sample of a
    rise, then removed), and the block exchange creeps or cycles."""
    n = flip.shape[0]
    c0 = -1
    c1 = -1
    v0 = 0.0
    v1 = 0.0
    kept = 0
    for j in range(n - 1, -1, -1):
        if not flip[j]:
            continue
        act = active[j]
        # the cluster of this violator's kind: (0) negative spikes, (1)
        # negative multipliers
        if act:
            vj, c, v = nu[j], c1, v1
        else:
            vj, c, v = u[j], c0, v0
        if c >= 0 and c - j > thin:
            c = -1
        if c < 0:
            c, v = j, vj
            kept += 1
        elif vj < v:
            flip[c] = False
            c, v = j, vj
        else:
            flip[j] = False
        if act:
            c1, v1 = c, v
        else:
            c0, v0 = c, v
    return kept


@njit(cache=_CACHE, nogil=True)
def peak_samples(g1, g2):
    """Samples from a spike to the kernel's peak (AR(2) roots d > r > 0:
    d^k - r^k peaks at ln(ln r / ln d) / ln(d / r)); 1 if the smaller
    root is not positive (the kernel peaks within a sample)."""
    disc = g1 * g1 + 4.0 * g2
    if disc <= 0.0:
        return 1.0
    d = 0.5 * (g1 + disc ** 0.5)
    r = g1 - d
    if r <= 0.0 or d >= 1.0 or r >= d:
        return 1.0
    return max(1.0, np.log(np.log(r) / np.log(d)) / np.log(d / r))


@njit(cache=_CACHE, nogil=True)
def closed_form_roots(g1, g2):
    """The AR(2) roots (d, r) where the dense settle's closed forms (Gram
    entries, power tables, :func:`_ar_chains`' hand-overs) apply: real,
    0 < r < d < 1; else (-1, -1)."""
    disc = g1 * g1 + 4.0 * g2
    if not disc > 0.0:
        return -1.0, -1.0
    d = 0.5 * (g1 + np.sqrt(disc))
    r = g1 - d
    if not (r > 0.0 and r < d and d < 1.0):
        return -1.0, -1.0
    return d, r


# ---------------------------------------------------------------- dense settle
# (kernels slow against fs: a few hundred free samples, segments the whole
# trace long)


@njit(cache=_CACHE, nogil=True)
def _gram_fill(H, C, lo, m, n, dp, rp, d, r, a2):
    """H[i, j] = (K'K)[C[i], C[j]] for the rows/columns i >= lo of the first
    m (both triangles).  (K'K)[i, j] = alpha^2 sum_{k=max(i,j)}^{n-1}
    e(k-i) e(k-j), e(m) = (d^(m+1) - r^(m+1)) / (d - r) the AR(2) impulse
    response: four geometric sums, from the power tables dp, rp."""
    idd = 1.0 / (1.0 - d * d)
    idr = 1.0 / (1.0 - d * r)
    irr = 1.0 / (1.0 - r * r)
    # the tail factors of each position (those of the later sample of a
    # pair), formed once per position, not per entry: the same numbers
    xt = np.empty((m, 3))
    for k in range(m):
        L = n - C[k]
        dl = dp[L]
        rl = rp[L]
        xt[k, 0] = 1.0 - dl * dl
        xt[k, 1] = 1.0 - dl * rl
        xt[k, 2] = 1.0 - rl * rl
    for i in range(lo, m):
        ci = C[i]
        for j in range(i + 1):
            cj = C[j]
            h = i if ci > cj else j
            D = ci - cj if ci > cj else cj - ci
            v = (dp[D + 2] * xt[h, 0] * idd
                 - (dp[D + 1] * r + rp[D + 1] * d) * xt[h, 1] * idr
                 + rp[D + 2] * xt[h, 2] * irr)
            H[i, j] = a2 * v
            H[j, i] = a2 * v


@njit(cache=_CACHE, nogil=True, inline="always")
def _row(a):
    """Offset of row a of a lower triangle packed by rows."""
    return (a * (a + 1)) // 2


@njit(cache=_CACHE, nogil=True, inline="always")
def _dot4(A, oa, B, ob, k):
    """sum_{b<k} A[oa + b] B[ob + b] as four partial sums (b mod 4), added
    (s0 + s1) + (s2 + s3): four chains, where one running sum is bound by
    the add's latency (rounded otherwise than the plain sum)."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    k4 = k - (k & 3)
    # (unsigned indices: no negative-index test on each load)
    ua = np.uint64(oa)
    ub = np.uint64(ob)
    for b in range(_U0, np.uint64(k4), _U4):
        s0 += A[ua + b] * B[ub + b]
        s1 += A[ua + b + _U1] * B[ub + b + _U1]
        s2 += A[ua + b + _U2] * B[ub + b + _U2]
        s3 += A[ua + b + _U3] * B[ub + b + _U3]
    for b in range(np.uint64(k4), np.uint64(k)):
        s0 += A[ua + b] * B[ub + b]
    return (s0 + s1) + (s2 + s3)


@njit(cache=_CACHE, nogil=True)
def _chol_add(H, L, P, p, j, chains):
    """Append position j to the Cholesky factor L (H[P, P] = L L', P[0:p],
    L packed by rows: every access runs along a row).  False (nothing
    changed) when j is numerically dependent on P.  With ``chains`` the
    row's dot products by :func:`_dot4` (the dense settle's larger sets:
    one running sum a product made them latency-bound)."""
    op = _row(p)
    hj = H[j]
    if chains:
        for a in range(p):
            oa = _row(a)
            L[op + a] = (hj[P[a]] - _dot4(L, oa, L, op, a)) / L[oa + a]
        dd = hj[j] - _dot4(L, op, L, op, p)
    else:
        for a in range(p):
            oa = _row(a)
            v = hj[P[a]]
            for b in range(a):
                v -= L[oa + b] * L[op + b]
            L[op + a] = v / L[oa + a]
        dd = hj[j]
        for b in range(p):
            dd -= L[op + b] * L[op + b]
    if not dd > 1e-12 * hj[j]:
        return False
    L[op + p] = np.sqrt(dd)
    P[p] = j
    return True


@njit(cache=_CACHE, nogil=True, inline="always")
def _givens(x1, x2):
    """The delete's Givens rotation zeroing x2 against x1: (cos, sin, r)."""
    rr = np.hypot(x1, x2)
    if rr > 0.0:
        return x1 / rr, x2 / rr, rr
    return 1.0, 0.0, rr


@njit(cache=_CACHE, nogil=True)
def _chol_del2(L, P, p, q, cs, sn, tmp, tmp2):
    """Remove the q-th of the p positions from the packed factor: each later
    row moves up one, with the Givens rotations that restore the triangle
    applied along it (the one-row form, kept in ``tests/_chol_ref.py``, gives
    the same numbers: each entry takes the same rotations in the same order),
    two rows at a time: the second row takes
    the rotations of the rows above side by side with the first (two
    independent chains where one waited on each rotation), then the first's
    own.  ``tmp``, ``tmp2``: scratch (p + 1)."""
    i = q
    while i + 2 < p:
        # rows i, i + 1 of the result: the old rows i + 1, i + 2
        P[i] = P[i + 1]
        P[i + 1] = P[i + 2]
        oi = _row(i + 1)
        oj = _row(i + 2)
        for b in range(i + 2):
            tmp[b] = L[oi + b]
        for b in range(i + 3):
            tmp2[b] = L[oj + b]
        for k in range(q, i):
            ck = cs[k]
            sk = sn[k]
            v1 = tmp[k]
            v2 = tmp[k + 1]
            w1 = tmp2[k]
            w2 = tmp2[k + 1]
            tmp[k] = ck * v1 + sk * v2
            tmp[k + 1] = ck * v2 - sk * v1
            tmp2[k] = ck * w1 + sk * w2
            tmp2[k + 1] = ck * w2 - sk * w1
        ci, si, rr = _givens(tmp[i], tmp[i + 1])
        cs[i] = ci
        sn[i] = si
        tmp[i] = rr
        w1 = tmp2[i]
        w2 = tmp2[i + 1]
        tmp2[i] = ci * w1 + si * w2
        tmp2[i + 1] = ci * w2 - si * w1
        cj, sj, rr2 = _givens(tmp2[i + 1], tmp2[i + 2])
        cs[i + 1] = cj
        sn[i + 1] = sj
        tmp2[i + 1] = rr2
        on = _row(i)
        for b in range(i + 1):
            L[on + b] = tmp[b]
        on = _row(i + 1)
        for b in range(i + 2):
            L[on + b] = tmp2[b]
        i += 2
    if i < p - 1:
        P[i] = P[i + 1]
        oi = _row(i + 1)
        for b in range(i + 2):
            tmp[b] = L[oi + b]
        for k in range(q, i):
            v1 = tmp[k]
            v2 = tmp[k + 1]
            tmp[k] = cs[k] * v1 + sn[k] * v2
            tmp[k + 1] = cs[k] * v2 - sn[k] * v1
        ci, si, rr = _givens(tmp[i], tmp[i + 1])
        cs[i] = ci
        sn[i] = si
        tmp[i] = rr
        on = _row(i)
        for b in range(i + 1):
            L[on + b] = tmp[b]


@njit(cache=_CACHE, nogil=True)
def _chol_solve(L, P, p, c, out, chains):
    """out[a] = -(H[P, P]^-1 c[P])[a] (both passes along rows; ``chains``:
    the forward pass's dot products by :func:`_dot4`)."""
    for a in range(p):
        oa = _row(a)
        if chains:
            out[a] = (-c[P[a]] - _dot4(L, oa, out, 0, a)) / L[oa + a]
            continue
        v = -c[P[a]]
        for b in range(a):
            v -= L[oa + b] * out[b]
        out[a] = v / L[oa + a]
    for a in range(p - 1, -1, -1):
        oa = _row(a)
        v = out[a] / L[oa + a]
        out[a] = v
        ua = np.uint64(oa)
        for b in range(np.uint64(a)):
            out[b] -= L[ua + b] * v


@njit(cache=_CACHE, nogil=True)
def _nnqp_inner(L, P, p, c, z, zeta, work, max_work, cs, sn, tmp, tmp2, chains):
    """Lawson & Hanson's inner loop: the optimum on P (zeta), stepping back
    along the segment from z while some entry would go non-positive, whose
    positions leave P.  ``work`` counts multiply-adds, up to ``max_work``.
    Returns (p, work)."""
    while work < max_work:
        work += p * p
        _chol_solve(L, P, p, c, zeta, chains)
        amin = 2.0
        qmin = -1
        for a in range(p):
            if zeta[a] <= 0.0:
                za = z[P[a]]
                # (den >= 0: z >= 0 on P; 0 only where z and zeta are both
                # 0, the step's limit there: none)
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
                work += (p - a) * p
                p -= 1
    return p, work


@njit(cache=_CACHE, nogil=True)
def _nnqp_grad4(H, P, p, c, z, blocked, zp, grad, cand, viol, m, tol):
    """:func:`_nnqp`'s outer gradient with ``chains`` (the same numbers):
    grad[i] = c[i] + H[i, P] zp (four chains, added (g0 + g1) + (g2 + g3))
    for the positions i off P and not blocked, four rows side by side;
    grad 0 elsewhere.  The violators (-grad > tol), ascending, into
    ``viol``; returns their count.  ``cand``: scratch (m)."""
    nc = 0
    for i in range(m):
        grad[i] = 0.0
        if z[i] > 0.0 or blocked[i]:
            continue
        cand[nc] = i
        nc += 1
    p4 = p - (p & 3)
    up4 = np.uint64(p4)
    f = 0
    while f + 4 <= nc:
        i0 = cand[f]
        i1 = cand[f + 1]
        i2 = cand[f + 2]
        i3 = cand[f + 3]
        h0 = H[i0]
        h1 = H[i1]
        h2 = H[i2]
        h3 = H[i3]
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        b0 = 0.0
        b1 = 0.0
        b2 = 0.0
        b3 = 0.0
        c0 = 0.0
        c1 = 0.0
        c2 = 0.0
        c3 = 0.0
        e0 = 0.0
        e1 = 0.0
        e2 = 0.0
        e3 = 0.0
        for a in range(_U0, up4, _U4):
            q0 = P[a]
            q1 = P[a + _U1]
            q2 = P[a + _U2]
            q3 = P[a + _U3]
            w0 = zp[a]
            w1 = zp[a + _U1]
            w2 = zp[a + _U2]
            w3 = zp[a + _U3]
            a0 += h0[q0] * w0
            a1 += h0[q1] * w1
            a2 += h0[q2] * w2
            a3 += h0[q3] * w3
            b0 += h1[q0] * w0
            b1 += h1[q1] * w1
            b2 += h1[q2] * w2
            b3 += h1[q3] * w3
            c0 += h2[q0] * w0
            c1 += h2[q1] * w1
            c2 += h2[q2] * w2
            c3 += h2[q3] * w3
            e0 += h3[q0] * w0
            e1 += h3[q1] * w1
            e2 += h3[q2] * w2
            e3 += h3[q3] * w3
        for a in range(p4, p):
            q = P[a]
            w = zp[a]
            a0 += h0[q] * w
            b0 += h1[q] * w
            c0 += h2[q] * w
            e0 += h3[q] * w
        grad[i0] = c[i0] + ((a0 + a1) + (a2 + a3))
        grad[i1] = c[i1] + ((b0 + b1) + (b2 + b3))
        grad[i2] = c[i2] + ((c0 + c1) + (c2 + c3))
        grad[i3] = c[i3] + ((e0 + e1) + (e2 + e3))
        f += 4
    for f in range(f, nc):
        i = cand[f]
        hi = H[i]
        g0 = 0.0
        g1 = 0.0
        g2 = 0.0
        g3 = 0.0
        for a in range(_U0, up4, _U4):
            g0 += hi[P[a]] * zp[a]
            g1 += hi[P[a + _U1]] * zp[a + _U1]
            g2 += hi[P[a + _U2]] * zp[a + _U2]
            g3 += hi[P[a + _U3]] * zp[a + _U3]
        for a in range(p4, p):
            g0 += hi[P[a]] * zp[a]
        grad[i] = c[i] + ((g0 + g1) + (g2 + g3))
    n_viol = 0
    for f in range(nc):
        i = cand[f]
        g = grad[i]
        if -g > tol:
            viol[n_viol] = i
            n_viol += 1
        else:
            grad[i] = 0.0
    return n_viol


@njit(cache=_CACHE, nogil=True)
def _nnqp(H, L, P, p, c, z, m, blocked, zeta, grad, C, thin, tol, work, max_work, cs, sn,
          tmp, chains):
    """min 1/2 z'Hz + c'z over z >= 0 (first m positions), Lawson & Hanson's
    active-set method, from the feasible z whose positive entries are
    P[0:p] with L their Cholesky factor (both updated: a warm start for the
    next call).  Each outer step adds the most violated position of every
    cluster of violators (sample indices C within ``thin`` of each other),
    or the single most violated one after a block that left P no larger,
    then the inner loop (:func:`_nnqp_inner`; the objective never rises).
    Positions found numerically dependent are ``blocked`` (left at 0);
    ``zeta``, ``grad``: scratch.  ``work`` counts multiply-adds, up to
    ``max_work``.  Returns (p, work, converged)."""
    # (the second row of _chol_del2's pairs)
    tmp2 = np.empty(m + 1)
    p, work = _nnqp_inner(L, P, p, c, z, zeta, work, max_work, cs, sn, tmp, tmp2, chains)
    single = False
    # the violators' positions, ascending (a position with grad 0 never
    # beats one below 0: the rule below compares violators alone)
    viol = np.empty(m, np.int64)
    # (with ``chains``: z on P gathered once a step, each gradient's sum in
    # four chains)
    zp = np.empty(m if chains else 0)
    # (with ``chains``: the positions off P, four rows side by side)
    cand = np.empty(m if chains else 0, np.int64)
    while work < max_work:
        work += m * p
        n_viol = 0
        if chains:
            for a in range(p):
                zp[a] = z[P[a]]
            n_viol = _nnqp_grad4(H, P, p, c, z, blocked, zp, grad, cand, viol, m, tol)
        for i in range(m if not chains else 0):
            grad[i] = 0.0
            if z[i] > 0.0 or blocked[i]:
                continue
            g = c[i]
            hi = H[i]
            for a in range(p):
                g += hi[P[a]] * z[P[a]]
            if -g > tol:
                grad[i] = g
                viol[n_viol] = i
                n_viol += 1
        if n_viol == 0:
            return p, work, True
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
                work += p * p
                if _chol_add(H, L, P, p, i, chains):
                    p += 1
                    z[i] = 0.0
                else:
                    blocked[i] = True
        if p == p0:
            continue
        p, work = _nnqp_inner(L, P, p, c, z, zeta, work, max_work, cs, sn, tmp, tmp2, chains)
        single = not single and p <= p0
    return p, work, False


@njit(cache=_CACHE, nogil=True)
def power_tables(d, r, n, dp, rp):
    """The power tables d^k, r^k (k <= n + 1) of the AR roots d > r > 0
    (r^k flushed to 0 below 1e-290)."""
    a = 1.0
    b = 1.0
    for k in range(n + 2):
        dp[k] = a
        rp[k] = b
        a *= d
        b *= r
        if abs(b) < 1e-290:
            b = 0.0


@njit(cache=_CACHE, nogil=True)
def tables_hold(d, r, n, dp, rp):
    """Whether dp, rp already hold :func:`power_tables` (d, r, n): each
    entry its predecessor times the root, as formed there (the same
    numbers).  A pass without a loop-carried chain (~0.02 ms on 54,000
    frames against 0.15 ms for the tables): a warm re-solve's polish and
    its next solve on the same kernel find them in the workspace."""
    if not (dp[0] == 1.0 and rp[0] == 1.0):
        return False
    ok = True
    for k in range(n + 1):
        b = rp[k] * r
        if abs(b) < 1e-290:
            b = 0.0
        ok &= (dp[k + 1] == dp[k] * d) & (rp[k + 1] == b)
        if (k & 1023) == 1023 and not ok:
            return False
    return ok


@njit(cache=_CACHE, nogil=True)
def dense_fits(active, cmax, max_work):
    """Whether :func:`dense_settle` can take this free set at all (its
    size and first factorisation; checked before the direct gradient is
    formed for it)."""
    n_free = 0
    for k in range(active.shape[0]):
        if not active[k]:
            n_free += 1
    f3 = n_free * n_free * n_free // 3
    return n_free < cmax // 2 and 4 * f3 <= max_work and f3 + 8 * n_free * n_free <= max_work


@njit(cache=_CACHE, nogil=True)
def _hand_over(out, lo, hi, q1, q2, d, r, dp, rp):
    """out[lo:hi] += the response of x_t = g1 x_{t-1} + g2 x_{t-2} (AR
    roots d > r > 0, g1 = d + r, g2 = -d r) to the state (q1, q2) one and
    two places before lo: a d^(j+1) + b r^(j+1) at lo + j, from the power
    tables dp, rp (no loop-carried chain)."""
    a = d * (q1 - r * q2) / (d - r)
    b = r * (d * q2 - q1) / (d - r)
    if hi <= lo:
        return
    # (unsigned indices: the loop vectorises)
    ul = np.uint64(lo)
    for j in range(np.uint64(hi - lo)):
        out[ul + j] += a * dp[j + _U1] + b * rp[j + _U1]


@njit(cache=_CACHE, nogil=True)
def _ar_chains(inp, out, g1, g2, d, r, dp, rp, back):
    """The AR(2) recursion over n = out.shape[0] - 1 samples, forward
    (``back`` False: out[0] = 0, out[k + 1] = q_k = inp[k] + g1 q_{k-1} +
    g2 q_{k-2}) or backward (out[n] = 0, out[j] = p_j = inp[j + 1] + g1
    p_{j+1} + g2 p_{j+2}), as four chains in one loop, the trace's
    quarters, each from a zero state; each quarter then takes the state the
    one before hands over (:func:`_hand_over`, in turn).  The recursion's
    latency, not its arithmetic, bounds one chain (K'K dz on 54,000 frames,
    both passes: 0.23 ms as one chain, 0.11 ms as four).  Rounded otherwise
    (~1e-11 of the largest value against ~1e-12): for guesses, not
    checks."""
    n = out.shape[0] - 1
    L = n // 4
    z0 = 0.0
    z1 = 0.0
    y0 = 0.0
    y1 = 0.0
    x0 = 0.0
    x1 = 0.0
    w0 = 0.0
    w1 = 0.0
    # (unsigned indices in the four-chain loops: no negative-index tests)
    uL = np.uint64(L)
    if back:
        # quarter 0 the last L samples, quarter 3 the first n - 3 L
        out[n] = 0.0
        un = np.uint64(n)
        for i in range(uL):
            j = un - i
            qa = inp[j] + g1 * z0 + g2 * z1
            j -= uL
            qb = inp[j] + g1 * y0 + g2 * y1
            j -= uL
            qc = inp[j] + g1 * x0 + g2 * x1
            j -= uL
            qd = inp[j] + g1 * w0 + g2 * w1
            j -= _U1
            out[j + np.uint64(3) * uL] = qa
            out[j + _U2 * uL] = qb
            out[j + uL] = qc
            out[j] = qd
            z1 = z0
            z0 = qa
            y1 = y0
            y0 = qb
            x1 = x0
            x0 = qc
            w1 = w0
            w0 = qd
        for j in range(n - 1 - 4 * L, -1, -1):
            qd = inp[j + 1] + g1 * w0 + g2 * w1
            out[j] = qd
            w1 = w0
            w0 = qd
        for b in range(1, 4):
            # quarter b: samples n - b L - 1 down to n - (b + 1) L (the last:
            # down to 0)
            hi = n - b * L
            lo = hi - L if b < 3 else 0
            q2 = out[hi + 1] if hi + 1 <= n else 0.0
            _hand_over_back(out, lo, hi, out[hi], q2, d, r, dp, rp)
        return
    out[0] = 0.0
    u2L = _U2 * uL
    u3L = _U3 * uL
    for i in range(uL):
        qa = inp[i] + g1 * z0 + g2 * z1
        qb = inp[i + uL] + g1 * y0 + g2 * y1
        qc = inp[i + u2L] + g1 * x0 + g2 * x1
        qd = inp[i + u3L] + g1 * w0 + g2 * w1
        out[i + _U1] = qa
        out[i + uL + _U1] = qb
        out[i + u2L + _U1] = qc
        out[i + u3L + _U1] = qd
        z1 = z0
        z0 = qa
        y1 = y0
        y0 = qb
        x1 = x0
        x0 = qc
        w1 = w0
        w0 = qd
    for k in range(4 * L, n):
        qd = inp[k] + g1 * w0 + g2 * w1
        out[k + 1] = qd
        w1 = w0
        w0 = qd
    for b in range(1, 4):
        lo = b * L
        hi = lo + L if b < 3 else n
        q2 = out[lo - 1] if lo >= 1 else 0.0
        _hand_over(out, lo + 1, hi + 1, out[lo], q2, d, r, dp, rp)


@njit(cache=_CACHE, nogil=True)
def _hand_over_back(out, lo, hi, q1, q2, d, r, dp, rp):
    """:func:`_hand_over` backward: out[hi - 1 - j] += a d^(j+1) + b r^(j+1)
    (j < hi - lo), the state (q1, q2) at hi, hi + 1."""
    a = d * (q1 - r * q2) / (d - r)
    b = r * (d * q2 - q1) / (d - r)
    if hi <= lo:
        return
    # (unsigned indices: the loop vectorises)
    uh = np.uint64(hi - 1)
    for j in range(np.uint64(hi - lo)):
        out[uh - j] += a * dp[j + _U1] + b * rp[j + _U1]


@njit(cache=_CACHE, nogil=True)
def _settle_grad(work, work2, g1, g2, alpha, d, r, dp, rp, nu, inC, flip, tol):
    """A settle round's gradient, alpha nu + K'K dz (dz in ``work``, length
    n + 1), into ``work``; the samples off C (``inC``) below -``tol`` are
    flagged in ``flip`` (the others cleared).  Returns their count.  Both
    passes by :func:`_ar_chains` (a guess for the next full step, as the
    settle's answer is)."""
    n = work.shape[0] - 1
    _ar_chains(work, work2, g1, g2, d, r, dp, rp, _FWD)
    _ar_chains(work2, work, g1, g2, d, r, dp, rp, _BACK)
    a2 = alpha * alpha
    n_new = 0
    for k in range(n):
        g = a2 * work[k]
        bad = False
        if not inC[k]:
            g = alpha * nu[k] + g
            bad = g < -tol
        flip[k] = bad
        n_new += bad
        work[k] = g
    return n_new


@njit(cache=_CACHE, nogil=True)
def _settle_lin(H, C, nu, alpha, s0, nf, lo, m, c):
    """The dense settle's linear term, c[i] = alpha nu[C[i]] - sum_{f < nf}
    H[i, f] s0[f] for lo <= i < m: each row's sum in f order, as one
    running sum (four rows side by side: four independent chains where one
    waited on each add; the same numbers)."""
    i = lo
    while i + 4 <= m:
        h0 = H[i]
        h1 = H[i + 1]
        h2 = H[i + 2]
        h3 = H[i + 3]
        v0 = alpha * nu[C[i]]
        v1 = alpha * nu[C[i + 1]]
        v2 = alpha * nu[C[i + 2]]
        v3 = alpha * nu[C[i + 3]]
        for f in range(np.uint64(nf)):
            sf = s0[f]
            v0 -= h0[f] * sf
            v1 -= h1[f] * sf
            v2 -= h2[f] * sf
            v3 -= h3[f] * sf
        c[i] = v0
        c[i + 1] = v1
        c[i + 2] = v2
        c[i + 3] = v3
        i += 4
    for i in range(i, m):
        hi = H[i]
        v = alpha * nu[C[i]]
        for f in range(np.uint64(nf)):
            v -= hi[f] * s0[f]
        c[i] = v


@njit(cache=_CACHE, nogil=True)
def _settle_fall(H, C, nu, alpha, z, s0, m, dz, rows):
    """The objective's fall from the expansion point s0 to z (the baseline
    fixed): -sum_i dz_i (alpha nu[C[i]] + 1/2 (H dz)_i) over the i with
    dz_i = z_i - s0_i != 0, in i order; each (H dz)_i summed over j in
    order as one running sum (four rows side by side; the same numbers).
    ``dz`` (float) and ``rows`` (int): scratch of m."""
    nr = 0
    for i in range(m):
        di = z[i] - s0[i]
        dz[i] = di
        if di != 0.0:
            rows[nr] = i
            nr += 1
    fall = 0.0
    k = 0
    while k + 4 <= nr:
        i0 = rows[k]
        i1 = rows[k + 1]
        i2 = rows[k + 2]
        i3 = rows[k + 3]
        h0 = H[i0]
        h1 = H[i1]
        h2 = H[i2]
        h3 = H[i3]
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        for j in range(np.uint64(m)):
            dj = dz[j]
            a0 += h0[j] * dj
            a1 += h1[j] * dj
            a2 += h2[j] * dj
            a3 += h3[j] * dj
        fall -= dz[i0] * (alpha * nu[C[i0]] + 0.5 * a0)
        fall -= dz[i1] * (alpha * nu[C[i1]] + 0.5 * a1)
        fall -= dz[i2] * (alpha * nu[C[i2]] + 0.5 * a2)
        fall -= dz[i3] * (alpha * nu[C[i3]] + 0.5 * a3)
        k += 4
    for k in range(k, nr):
        i = rows[k]
        hi = H[i]
        a = 0.0
        for j in range(np.uint64(m)):
            a += hi[j] * dz[j]
        fall -= dz[i] * (alpha * nu[C[i]] + 0.5 * a)
    return fall


@njit(cache=_CACHE, nogil=True)
def dense_settle(g1, g2, alpha, active, flip, u, nu, eps_nu, thin, ws, inC, work, work2, cmax,
                 max_rounds, max_work, min_gain, tables):
    """Settle a block exchange on a kernel slow against fs with the
    baseline fixed, by a dense working-set solve: after a full step of
    :func:`_numba_solvers._kkt_core` (spikes ``u`` on its free set,
    multipliers ``nu``, violators flagged in ``flip``, threshold
    ``eps_nu``), the objective with the baseline fixed is an exact
    quadratic in s (gradient alpha nu, Hessian K'K, whose entries are
    closed-form geometric sums).  On the working set C (the free samples,
    the violators) it is solved exactly by :func:`_nnqp`; then the
    gradient of every sample off C is formed (:func:`_settle_grad`, one
    forward and one adjoint pass) and its violators join C (thinned to one per cluster
    (:func:`thin_flips`) when many), up to ``max_rounds`` rounds and
    ``cmax`` samples.  ``active`` then takes C's answer (a guess for the
    next full step, which re-optimises the baseline and alone decides
    convergence).  There the free set is a few hundred isolated samples
    and segments span the trace, so :func:`local_exchange` cannot help;
    the exchange itself creeps or cycles.

    ``ws``: float scratch of at least 2 (n + 2) + 2 cmax^2 + 8 cmax;
    ``inC`` (bool, n, all False, left so), ``work``, ``work2`` (float, n + 1)
    scratch; ``tables`` (bool, 1): with ``tables[0]`` the power tables at
    the start of ``ws`` are those of an earlier call (same kernel, same n);
    set once this call has formed them (also when it then returns -1).
    With ``min_gain`` > -inf the set changes only if the objective (b
    fixed) falls by at least that much (else rounds 0).
    Returns (rounds, samples that changed side); rounds -1 when
    it does not apply
    (complex or non-positive AR roots, too many free samples or
    violators, or the first round's solve not done within ``max_work``
    multiply-adds: ``active`` unchanged; a large move, which the interior
    point handles better).  Later rounds stop at that budget too."""
    n = u.shape[0]
    d, r = closed_form_roots(g1, g2)
    if d < 0.0:
        return -1, 0
    # the working set: the free samples (negative spikes included) and the
    # active violators, thinned to one per cluster when many
    n_free = 0
    n_bad = 0
    for k in range(n):
        if not active[k]:
            n_free += 1
        elif flip[k]:
            n_bad += 1
    if n_free >= cmax // 2:
        return -1, 0
    if n_free + n_bad > cmax // 2:
        thin_flips(active, flip, u, nu, thin)
        n_bad = 0
        for k in range(n):
            if active[k] and flip[k]:
                n_bad += 1
        if n_free + n_bad > cmax:
            return -1, 0
    # the first factorisation and the matrix alone would exceed the budget,
    # or the factorisation a quarter of it (a free set of a few hundred:
    # lambda 0 on 54,000 frames at 1 kHz, where each settle then cost
    # 3-5 ms and the exchange does better)
    f3 = n_free * n_free * n_free // 3
    if f3 + 8 * (n_free + n_bad) ** 2 > max_work or 4 * f3 > max_work:
        return -1, 0
    # power tables d^k, r^k (k <= n + 1)
    dp = ws[0:n + 2]
    rp = ws[n + 2:2 * n + 4]
    o = 2 * n + 4
    H = ws[o:o + cmax * cmax].reshape((cmax, cmax))
    o += cmax * cmax
    L = ws[o:o + cmax * cmax]
    o += cmax * cmax
    z = ws[o:o + cmax]
    c = ws[o + cmax:o + 2 * cmax]
    s0 = ws[o + 2 * cmax:o + 3 * cmax]
    zeta = ws[o + 3 * cmax:o + 4 * cmax]
    grad = ws[o + 4 * cmax:o + 5 * cmax]
    cs = ws[o + 5 * cmax:o + 6 * cmax]
    sn = ws[o + 6 * cmax:o + 7 * cmax]
    tmp = ws[o + 7 * cmax:o + 8 * cmax]
    if not tables[0]:
        if not tables_hold(d, r, n, dp, rp):
            power_tables(d, r, n, dp, rp)
        tables[0] = True
    a2 = alpha * alpha / ((d - r) * (d - r))
    C = np.empty(cmax, np.int64)
    P = np.empty(cmax, np.int64)
    blocked = np.zeros(cmax, np.bool_)
    # the free samples, then the violators (each ascending), in one pass:
    # the violators' positions first in P (free scratch until the factor)
    m = 0
    nb = 0
    for k in range(n):
        if not active[k]:
            C[m] = k
            s0[m] = u[k]
            m += 1
        elif flip[k]:
            P[nb] = k
            nb += 1
    nf = m
    for b in range(nb):
        C[m] = P[b]
        s0[m] = 0.0
        m += 1
    for i in range(m):
        inC[C[i]] = True
    lo = 0
    _gram_fill(H, C, lo, m, n, dp, rp, d, r, a2)
    used = 8 * m * m
    _settle_lin(H, C, nu, alpha, s0, nf, lo, m, c)
    tol = alpha * eps_nu
    if not tol > 0.0:
        tol = 1e-14
    # start: the free samples with positive spikes
    p = 0
    for i in range(m):
        z[i] = 0.0
        if s0[i] > 0.0:
            used += p * p
            if _chol_add(H, L, P, p, i, _CHAINS):
                z[i] = s0[i]
                p += 1
    rounds = 0
    while True:
        rounds += 1
        p, used, ok = _nnqp(H, L, P, p, c, z, m, blocked, zeta, grad, C, thin, tol, used,
                            max_work, cs, sn, tmp, _CHAINS)
        if not ok and rounds == 1:
            rounds = -1
            break
        if not ok or rounds >= max_rounds or m >= cmax:
            break
        # gradient off C: alpha nu + K'K (z - s0)
        for t in range(n + 1):
            work[t] = 0.0
        for i in range(m):
            work[C[i]] = z[i] - s0[i]
        n_new = _settle_grad(work, work2, g1, g2, alpha, d, r, dp, rp, nu, inC, flip, tol)
        if n_new == 0:
            break
        if m + n_new > cmax:
            thin_flips(active, flip, work, work, thin)
        lo = m
        for k in range(n):
            if flip[k] and m < cmax:
                C[m] = k
                s0[m] = 0.0
                z[m] = 0.0
                blocked[m] = False
                inC[k] = True
                m += 1
        _gram_fill(H, C, lo, m, n, dp, rp, d, r, a2)
        used += 8 * (m - lo) * m
        _settle_lin(H, C, nu, alpha, s0, nf, lo, m, c)
    # the objective's fall from the expansion point (b fixed): g'dz +
    # 1/2 dz'H dz; below ``min_gain`` the set is left as it was
    fall = 0.0
    if rounds > 0 and min_gain > -math.inf:
        fall = _settle_fall(H, C, nu, alpha, z, s0, m, zeta, P)
        if not fall >= min_gain:
            rounds = 0
    changed = 0
    for i in range(m):
        if rounds > 0:
            a_new = not z[i] > 0.0
            changed += a_new != active[C[i]]
            active[C[i]] = a_new
        inC[C[i]] = False
    return rounds, changed


@njit(cache=_CACHE, nogil=True)
def direct_gradient(y, bvec, g1, g2, alpha, lamG, active, u, nu, work, work2, clip):
    """nu = g / alpha with g = lamG - K'(y - K s - b) the objective's gradient
    in s, formed directly (one forward, one adjoint pass: accurate to the
    rounding of the data), at s = u on the free set (clipped at 0 with
    ``clip``, written back to u) and 0 on the active set.  A full step's
    multipliers come from a recursion that, on a kernel slow against fs,
    carries a rounding floor (~1e-7 of their largest on the 1 kHz 3 s
    kernel).  Returns (max |g|, 1/2 ||y - K s - b||^2)."""
    n = u.shape[0]
    # two passes with forward_conv's and adjoint_conv's arithmetic, in their
    # order (the same numbers as the five passes they replace, ~half the time)
    q1 = 0.0
    q2 = 0.0
    f_fit = 0.0
    rt = y[0] - 0.0 - bvec[0]
    work2[0] = rt
    f_fit += 0.5 * rt * rt
    for k in range(n):
        v = u[k] if not active[k] else 0.0
        if clip and v < 0.0:
            v = 0.0
        u[k] = v
        work[k] = v
        q = v + g1 * q1 + g2 * q2
        rt = y[k + 1] - alpha * q - bvec[k + 1]
        work2[k + 1] = rt
        f_fit += 0.5 * rt * rt
        q2 = q1
        q1 = q
    work[n] = 0.0
    p1 = 0.0
    p2 = 0.0
    g_max = 0.0
    for j in range(n - 1, -1, -1):
        p = work2[j + 1] + g1 * p1 + g2 * p2
        gr = alpha * p
        work[j] = gr
        p2 = p1
        p1 = p
        g = lamG - gr
        nu[j] = g / alpha
        g_max = max(g_max, abs(g))
    return g_max, f_fit


@njit(cache=_CACHE, nogil=True)
def settle_gradient(y, bvec, g1, g2, alpha, lamG, active, u, nu, work, work2, dp, rp, tables):
    """:func:`direct_gradient` (without clipping) for the dense settle's
    guess, its passes by :func:`_ar_chains` (rounded otherwise, ~1e-11 of
    the largest term; not for checks).  Forms the power tables in dp, rp
    unless ``tables[0]`` (then set; as :func:`dense_settle` does).  Returns
    max |g|, or -1 (nothing done) where the AR roots are not d > r > 0,
    d < 1."""
    n = u.shape[0]
    d, r = closed_form_roots(g1, g2)
    if d < 0.0:
        return -1.0
    if not tables[0]:
        if not tables_hold(d, r, n, dp, rp):
            power_tables(d, r, n, dp, rp)
        tables[0] = True
    for k in range(n):
        v = u[k] if not active[k] else 0.0
        u[k] = v
        work[k] = v
    work[n] = 0.0
    _ar_chains(work, work2, g1, g2, d, r, dp, rp, _FWD)
    work2[0] = y[0] - bvec[0]
    for k in range(n):
        work2[k + 1] = y[k + 1] - alpha * work2[k + 1] - bvec[k + 1]
    _ar_chains(work2, work, g1, g2, d, r, dp, rp, _BACK)
    g_max = 0.0
    for j in range(n):
        g = lamG - alpha * work[j]
        nu[j] = g / alpha
        g_max = max(g_max, abs(g))
    return g_max


@njit(cache=_CACHE, nogil=True)
def dense_verify(y, bvec, g1, g2, alpha, lamG, active, u, nu, flip, thin, ws, inC, work,
                 work2, cmax, max_work, rel_tol, rel_gain, tables):
    """A full step found no violator: check its answer (spikes u on the free
    set, clipped; baseline bvec) with the gradient formed directly,
    g = lamG - K'(y - K s - b) (one forward and one adjoint pass, accurate
    to rounding of the data), instead of the step's multipliers, whose
    recursion on a kernel slow against fs carries a rounding floor that
    can hide a negative multiplier worth 1e-8 of the objective.  Active
    samples with g below -``rel_tol`` max|g| are violators: the dense
    settle (:func:`dense_settle`, on this gradient) re-places them and
    the free samples, if that lowers the objective by more than
    ``rel_gain`` times 1/2 ||y - K s - b||^2 (less is rounding: a set
    changed for it costs a full step and gains nothing).  ``u``, ``nu``,
    ``flip`` are overwritten.  Returns the samples that changed side (0:
    the answer stands; then ``u`` holds the clipped spikes and ``nu`` the
    gradient / alpha at them), max |g| and 1/2 ||y - K s - b||^2
    (:func:`direct_gradient`'s).  ``tables``: as for :func:`dense_settle`."""
    g_max, f_fit = direct_gradient(y, bvec, g1, g2, alpha, lamG, active, u, nu, work, work2, True)
    n = u.shape[0]
    tol = rel_tol * g_max
    n_bad = 0
    for k in range(n):
        bad = active[k] and alpha * nu[k] < -tol
        flip[k] = bad
        n_bad += bad
    if n_bad == 0:
        return 0, g_max, f_fit
    rounds, changed = dense_settle(g1, g2, alpha, active, flip, u, nu, tol / alpha, thin, ws, inC,
                                   work, work2, cmax, 1, max_work, rel_gain * f_fit,
                                   tables)
    return (changed if rounds > 0 else 0), g_max, f_fit

