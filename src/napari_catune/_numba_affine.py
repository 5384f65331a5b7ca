"""A cold start at lambda 0 carried affine in the baseline (issue 12).

Notation as in :mod:`._numba_solvers` and :mod:`._numba_local`: the
calcium x_k = (K s)[k+1], the spikes u = M x / alpha, the multipliers nu,
an active set A (s = 0), a scalar baseline b (modes 0 and 1).

At lambda 0 the optimal baseline sinks as T grows (calcium and baseline
nearly trade places), and it is the only thing that couples the whole
trace: with b held fixed the subproblem of a set A splits exactly at every
free pair (:mod:`._numba_local`).  :func:`._numba_solvers.pdas_one`'s
plain path settles each block exchange segment by segment with b fixed
and then takes a full step (the Riccati recursion, its forward pass and
the multipliers' pass over the whole trace), which re-fits b; about four
such steps, each in effect one Newton step on b.

Here the subspace optimum of A is carried as an affine function of b:
for every b, x(b) = x + (b - b_ref) z, u(b) = u + (b - b_ref) u1 and
nu(b) = nu + (b - b_ref) nu1 (one more right-hand side in the same
recursions: the gains do not depend on b), and so is the sum of the
residuals, R(b) = R - (b - b_ref) (T + sum z), whose root is the joint
optimum of (x, b) on A.  So after a local settle (at a fixed b, each
segment re-solved with its slope) b is re-solved exactly from two sums,
and the violators at the new b are read from the stored values and slopes
in one pass without a recursion.  The loop

    settle the violators at b; b <- the root of R; flag the violators at b

is a Newton iteration on the (convex, piecewise quadratic) objective as a
function of b, each iterate the fixed-b optimum.  It stops when no sample
violates at the root of R: then (A, b) is the joint optimum of A and every
KKT sign holds, the same test as a full step's, formed from segment-wise
exact solves (:func:`affine_lam0`).  Where it cannot go on (a segment left
unsettled, the settle's budget, too many violators, no progress) the
plain path goes on from the current set.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._numba_hints import prefetch as _prefetch
from ._numba_local import _left_edge, _right_edge

# numba's cache of this file's functions is keyed on this file alone, not on
# _numba_local's and _numba_hints', which they call: this digest of those
# sources (checked by tests/test_numba_cache_key.py) makes a change there a
# change here
_CALLEES_SHA = "30785fafc94dfa5f"


_CACHE = True
# (a constant argument of a call between compiled functions: see
# _numba_solvers._NO)
_YES = np.bool_(True)


# affine_settle asks for the data of the violator this many ahead of the one
# it settles (0: never): its segments lie far apart on a long trace, each
# one's eight arrays a cache miss apiece
_AFF_AHEAD = 8


@njit(cache=_CACHE, nogil=True, inline="always")
def _settle_ahead(y, active, flip, gain, x, z, w, w1, k):
    """The cache lines a segment around sample k reads (_prefetch)."""
    for d in (-4, 4):
        j = k + d
        _prefetch(y, j)
        _prefetch(x, j)
        _prefetch(z, j)
        _prefetch(w, j)
        _prefetch(w1, j)
    _prefetch(active, k)
    _prefetch(flip, k)
    _prefetch(gain, k - 3)
    _prefetch(gain, k)
    _prefetch(gain, k + 3)


# block-exchange rounds within one segment, then single (Murty) rounds
_AFF_ROUNDS = 8
_AFF_SINGLE = 8
# Newton updates of b within one call, at most
_AFF_MAX_UPDATES = 16


@njit(cache=_CACHE, nogil=True, fastmath={"reassoc", "contract"})
def _fit_sums(y, g1, g2, b, want_max):
    """The sum of squares of the exact fit's spikes times alpha, d = M (y[1:]
    - b) (:func:`exact_fit_flags`), vectorised, and with ``want_max`` their
    largest |d| (not vectorised: numba's max is not).  The samples from 2
    on read y through slices (no negative index, whose wraparound test
    keeps LLVM from vectorising)."""
    n = y.shape[0] - 1
    c = (1.0 - g1 - g2) * b
    v0 = y[1] - b
    v1 = (y[2] - g1 * (y[1] - b)) - b
    y0 = y[3:n + 1]
    y1 = y[2:n]
    y2 = y[1:n - 1]
    ss = v0 * v0 + v1 * v1
    for k in range(n - 2):
        d = (y0[k] - g1 * y1[k] - g2 * y2[k]) - c
        ss += d * d
    d_max = max(abs(v0), abs(v1))
    if want_max:
        for k in range(n - 2):
            d = (y0[k] - g1 * y1[k] - g2 * y2[k]) - c
            d_max = max(d_max, abs(d))
    return d_max, ss


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _fit_flags(y, g1, g2, b, thr, active):
    """active[k] = M (y[1:] - b)[k] < thr (:func:`exact_fit_flags`),
    vectorised as :func:`_fit_sums`; returns the count."""
    n = y.shape[0] - 1
    c = (1.0 - g1 - g2) * b
    active[0] = y[1] - b < thr
    active[1] = (y[2] - g1 * (y[1] - b)) - b < thr
    n_bad = np.int64(active[0]) + np.int64(active[1])
    y0 = y[3:n + 1]
    y1 = y[2:n]
    y2 = y[1:n - 1]
    act = active[2:n]
    for k in range(n - 2):
        d = (y0[k] - g1 * y1[k] - g2 * y2[k]) - c
        bad = d < thr
        act[k] = bad
        n_bad += bad
    return n_bad


@njit(cache=_CACHE, nogil=True)
def exact_fit_flags(y, g1, g2, alpha, mode, rel_eps, thr_rms, active):
    """The violators of :func:`._numba_solvers._all_free_step` (the exact
    fit at lambda 0, every sample free: the spikes u = M (y[1:] - b) /
    alpha, b = y[0] or 0 without a baseline, flagged below ``thr_rms`` times
    their rms, or below -rel_eps max |u| where none is) set active in
    ``active``, without that step's x, u and nu: only the flags are needed
    here.  The spikes formed as M y - (1 - g1 - g2) b, compared times alpha
    (rounded otherwise than that step: a spike within rounding of the
    threshold may be flagged otherwise; the threshold is a guess's).
    Returns their count.  (T >= 4.)"""
    n = y.shape[0] - 1
    b = y[0] if mode != 0 else 0.0
    want_max = thr_rms == 0.0
    d_max, ss = _fit_sums(y, g1, g2, b, want_max)
    thr = thr_rms * math.sqrt(ss / n)
    n_bad = 0
    if not want_max:
        n_bad = _fit_flags(y, g1, g2, b, thr, active)
    if n_bad == 0:
        # none below the threshold: every negative one (_all_free_step)
        if not want_max:
            d_max, ss = _fit_sums(y, g1, g2, b, _YES)
        eps_d = rel_eps * d_max
        if not want_max and not thr < -eps_d:
            return n_bad
        n_bad = _fit_flags(y, g1, g2, b, -eps_d, active)
    return n_bad


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def affine_fwd(y, g1, g2, alpha, active, gain, p0, b, x, z, u, u1):
    """The forward pass of a full step (:func:`._numba_solvers._subspace_fwd_fma`,
    the same formulas) at the baseline b, with the slope z = dx/db beside it
    (its gains: c1 on z_{k-1}, c2 the constant; a free sample before a free
    pair -1) and the spikes' slope u1.  The free samples' gains are packed
    from row ``p0`` in order of k (:func:`._numba_solvers._riccati_flat`).  Returns (max |u|, R, H): the sum of
    the residuals y - b - K s over the trace and H = T + sum z, minus the
    slope of R in b (summed as 1 + sum (1 + z): a free sample before a free
    pair adds 0 exactly, and H, which may be ~1e-4 of T at lambda 0, keeps
    its digits; a plain sum of z loses ~1e-12 T)."""
    n = y.shape[0] - 1
    xm1 = 0.0
    xm2 = 0.0
    zm1 = 0.0
    zm2 = 0.0
    u_max = 0.0
    r_sum = y[0] - b
    h_sum = 1.0
    inv_alpha = 1.0 / alpha
    p = p0
    for k in range(n):
        a = active[k]
        pair = ((k + 2 < n) & (not a) & (not active[min(k + 1, n - 1)])
                & (not active[min(k + 2, n - 1)]))
        # (row p is this sample's if it is free: read either way)
        pk = min(p, n - 1)
        p += 0 if a else 1
        xa = g1 * xm1 + g2 * xm2
        xp = -(b + gain[pk, 2])
        xf = -(gain[pk, 0] * xm1 + (gain[pk, 1] * b + gain[pk, 2]))
        xk = xa if a else (xp if pair else xf)
        za = g1 * zm1 + g2 * zm2
        zf = -(gain[pk, 0] * zm1 + gain[pk, 1])
        zk = za if a else (-1.0 if pair else zf)
        uk = (xk - g1 * xm1 - g2 * xm2) * inv_alpha
        uk = 0.0 if a else uk
        vk = (zk - g1 * zm1 - g2 * zm2) * inv_alpha
        vk = 0.0 if a else vk
        u[k] = uk
        u1[k] = vk
        u_max = max(u_max, abs(uk))
        x[k] = xk
        z[k] = zk
        r_sum += (y[k + 1] - b) - xk
        h_sum += 1.0 + zk
        xm2 = xm1
        xm1 = xk
        zm2 = zm1
        zm1 = zk
    return u_max, r_sum, h_sum


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def affine_nu(y, g1, g2, beta, active, b, x, z, w, w1, flip, eps_u):
    """The multipliers' pass of a full step (:func:`._numba_solvers._nu_pass_fma`,
    the same formulas and flags) with their slope M^-T (z + 1) beside them,
    both written over the spikes and their slope (``w``, ``w1``: u on the
    free set, nu on the active set).  Returns what _nu_pass_fma returns."""
    n = x.shape[0]
    n1 = 0.0
    n2 = 0.0
    m1 = 0.0
    m2 = 0.0
    nu_max = 0.0
    noise = 0.0
    near = -math.inf
    n_bad = 0
    last_bad = -1
    for j in range(n - 1, -1, -1):
        v = ((x[j] - y[j + 1] + b) + g2 * n2) + g1 * n1
        m = ((z[j] + 1.0) + g2 * m2) + g1 * m1
        n2 = n1
        n1 = v
        m2 = m1
        m1 = m
        nj = v + beta
        if active[j]:
            w[j] = nj
            w1[j] = m
            nu_max = max(nu_max, abs(nj))
            bad = nj < 0.0
            if bad:
                near = max(near, nj)
        else:
            noise = max(noise, abs(nj))
            bad = w[j] < -eps_u
        flip[j] = bad
        if bad:
            n_bad += 1
            if last_bad < 0:
                last_bad = j
    return n_bad, last_bad, nu_max, noise, near


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def affine_flags(active, w, w1, db, eps_u, eps_nu, flip, idx):
    """The violators at b_ref + db from the stored values and slopes (no
    recursion): a free sample's spike below -eps_u, an active sample's
    multiplier below -eps_nu; flagged in ``flip`` (a vectorised pass) and
    listed in ``idx``, ascending (the flags read eight at a time).  Returns
    their count."""
    n = active.shape[0]
    n_bad = 0
    for k in range(n):
        thr = eps_nu if active[k] else eps_u
        bad = w[k] + db * w1[k] < -thr
        flip[k] = bad
        n_bad += bad
    if n_bad > 0:
        m = n // 8
        words = flip[0:8 * m].view(np.uint64)
        c = 0
        for i in range(m):
            if words[i] != 0:
                for k in range(8 * i, 8 * i + 8):
                    if flip[k]:
                        idx[c] = k
                        c += 1
        for k in range(8 * m, n):
            if flip[k]:
                idx[c] = k
                c += 1
    return n_bad


@njit(cache=_CACHE, nogil=True, inline="always")
def affine_segment(y, g1, g2, inv_alpha, beta, active, a, e, gain, b_ref, db, x, z, w, w1,
                   eps_u, eps_nu, single):
    """:func:`._numba_local.segment_solve` (no window, no thinning) on
    [a, e) at the baseline b_ref, with the slopes beside the values (z
    beside x; ``w``: the spikes u on the free set, the multipliers nu on
    the active set, ``w1`` their slopes), the violators read at b_ref + db
    and flipped in ``active`` as they are found.  Returns (violators,
    grow_left, grow_right, dR, dH): the changes of the residuals' sum at
    b_ref and of T + sum z."""
    n = x.shape[0]
    g1sq = g1 * g1
    g1x2 = 2.0 * g1
    g2sq = g2 * g2
    bg1 = beta * g1
    bg2 = -beta * g2
    a00 = 1.0
    a01 = 0.0
    a11 = 0.0
    # the slope's linear terms (p0, p1): the right-hand side d(b - y)/db = 1
    p0 = 0.0
    p1 = 0.0
    if e >= n:
        q0 = 0.0
        q1 = 0.0
    else:
        q0 = -beta * (g1 + g2)
        q1 = bg2
    # a01 = a11 = 0 at sample k (sample k+1 free, or the segment's end)
    f1 = True
    for k in range(e - 1, a - 1, -1):
        l0 = q0 - (y[k + 1] - b_ref)
        m0 = p0 + 1.0
        if active[k]:
            a01n = g2 * (g1 * a00 + a01)
            a11n = g2sq * a00
            a00 = g1sq * a00 + (g1x2 * a01 + (a11 + 1.0))
            a01 = a01n
            a11 = a11n
            q0 = g1 * l0 + q1
            q1 = g2 * l0
            p0 = g1 * m0 + p1
            p1 = g2 * m0
            f1 = False
        elif f1:
            # a free sample before a free one: c1 = 0 and a00 <- 1 exactly
            # whatever 1 / a00 is (the general branch's numbers, the
            # division off the loop-carried chain; _riccati_flat)
            inv = 1.0 / a00
            gain[k, 0] = 0.0
            gain[k, 1] = m0 * inv
            gain[k, 2] = (l0 + beta) * inv
            q0 = q1 - bg1
            q1 = bg2
            p0 = p1
            p1 = 0.0
            a00 = 1.0
        else:
            inv = 1.0 / a00
            e11 = a01 * a01
            lb = l0 + beta
            c1 = a01 * inv
            c3 = lb * inv
            d3 = m0 * inv
            gain[k, 0] = c1
            gain[k, 1] = d3
            gain[k, 2] = c3
            q0 = (q1 - a01 * c3) - bg1
            q1 = bg2
            p0 = p1 - a01 * d3
            p1 = 0.0
            a00 = (a11 + 1.0) - e11 * inv
            a01 = 0.0
            a11 = 0.0
            f1 = True
    xm1 = x[a - 1] if a >= 1 else 0.0
    xm2 = x[a - 2] if a >= 2 else 0.0
    zm1 = z[a - 1] if a >= 1 else 0.0
    zm2 = z[a - 2] if a >= 2 else 0.0
    d_r = 0.0
    d_h = 0.0
    for k in range(a, e):
        if active[k]:
            xk = g1 * xm1 + g2 * xm2
            zk = g1 * zm1 + g2 * zm2
        else:
            xk = -(gain[k, 0] * xm1 + gain[k, 2])
            zk = -(gain[k, 0] * zm1 + gain[k, 1])
            w[k] = (xk - g1 * xm1 - g2 * xm2) * inv_alpha
            w1[k] = (zk - g1 * zm1 - g2 * zm2) * inv_alpha
        d_r += x[k] - xk
        d_h += zk - z[k]
        x[k] = xk
        z[k] = zk
        xm2 = xm1
        xm1 = xk
        zm2 = zm1
        zm1 = zk
    n_bad = 0
    grow_left = False
    grow_right = False
    first = -1
    if e < n:
        # the closing pair's spikes read the segment's last two samples
        w[e] = (x[e] - g1 * xm1 - g2 * xm2) * inv_alpha
        w1[e] = (z[e] - g1 * zm1 - g2 * zm2) * inv_alpha
        w[e + 1] = (x[e + 1] - g1 * x[e] - g2 * xm1) * inv_alpha
        w1[e + 1] = (z[e + 1] - g1 * z[e] - g2 * zm1) * inv_alpha
        if w[e + 1] + db * w1[e + 1] < -eps_u:
            n_bad += 1
            first = e + 1
            active[e + 1] = True
            grow_right = True
        if w[e] + db * w1[e] < -eps_u:
            n_bad += 1
            if not single or first < 0:
                first = e
                active[e] = True
                grow_right = True
        n1 = -beta
        n2 = -beta
    else:
        n1 = 0.0
        n2 = 0.0
    m1 = 0.0
    m2 = 0.0
    for j in range(e - 1, a - 1, -1):
        v = ((x[j] - y[j + 1] + b_ref) + g2 * n2) + g1 * n1
        m = ((z[j] + 1.0) + g2 * m2) + g1 * m1
        n2 = n1
        n1 = v
        m2 = m1
        m1 = m
        if active[j]:
            nj = v + beta
            w[j] = nj
            w1[j] = m
            bad = nj + db * m < -eps_nu
        else:
            bad = w[j] + db * w1[j] < -eps_u
        if bad:
            n_bad += 1
            if not single or first < 0:
                first = j
                active[j] = not active[j]
                if j <= a + 1 and a > 0:
                    grow_left = True
    return n_bad, grow_left, grow_right, d_r, d_h


@njit(cache=_CACHE, nogil=True)
def affine_settle(y, g1, g2, alpha, beta, active, flip, idx, n_idx, gain, b_ref, db, x, z, w, w1,
                  eps_u, eps_nu, max_work, segs):
    """:func:`._numba_local.local_exchange` (no window, no thinning) with
    :func:`affine_segment`: applies the exchange flagged in ``flip`` (its
    samples listed in idx[:n_idx], ascending) and settles each segment it
    touches with the baseline fixed at b_ref + db.  Returns (samples
    solved, segments left unsettled or -1 when the budget ran out, dR,
    dH, segments).  Each segment's samples whose values, slopes or kind
    it may have changed, [a, min(e + 2, n)), are recorded in ``segs``
    (int64; pairs, in the order settled, while they fit: more segments
    than ``segs`` holds pairs shows in the count returned)."""
    n = x.shape[0]
    inv_alpha = 1.0 / alpha
    work = 0
    left = 0
    d_r = 0.0
    d_h = 0.0
    e = 0
    n_seg = 0
    cap = segs.shape[0] // 2
    for i in range(n_idx):
        k = idx[i]
        if _AFF_AHEAD > 0 and i + _AFF_AHEAD < n_idx:
            _settle_ahead(y, active, flip, gain, x, z, w, w1, idx[i + _AFF_AHEAD])
        if k < e:
            # within the segment just settled (its flips applied there)
            continue
        if work >= max_work:
            return work, -1, d_r, d_h, n_seg
        a = _left_edge(active, flip, k, n)
        e = _right_edge(active, flip, k, n)
        for j in range(k, e):
            if flip[j]:
                active[j] = not active[j]
        settled = False
        for rnd in range(_AFF_ROUNDS + _AFF_SINGLE):
            if work + (e - a) > max_work:
                return work, -1, d_r, d_h, n_seg
            n_bad, grow_left, grow_right, dr, dh = affine_segment(
                y, g1, g2, inv_alpha, beta, active, a, e, gain, b_ref, db, x, z, w, w1, eps_u,
                eps_nu, rnd >= _AFF_ROUNDS)
            d_r += dr
            d_h += dh
            work += e - a
            if n_bad == 0:
                settled = True
                break
            if grow_left:
                a = _left_edge(active, flip, a, n)
            if grow_right:
                e_new = _right_edge(active, flip, e + 1, n)
                for j in range(e + 2, e_new):
                    if flip[j]:
                        active[j] = not active[j]
                e = e_new
        if n_seg < cap:
            segs[2 * n_seg] = a
            segs[2 * n_seg + 1] = min(e + 2, n)
        n_seg += 1
        if not settled:
            left += 1
    return work, left, d_r, d_h, n_seg


@njit(cache=_CACHE, nogil=True)
def count_fit_flags(y, g1, g2, mode, frac, stride, scratch, active):
    """The exact fit's flags (:func:`exact_fit_flags`: the spikes d = M (y[1:]
    - b), b = y[0] or 0) below a threshold set so that about ``frac`` of the
    samples are flagged: the threshold the quantile ``frac`` of every
    ``stride``-th d (:func:`order_stat`; in ``scratch``, at least n //
    stride + 1 floats, its rest order_stat's buffer; a
    guess's, its rounding immaterial).  The order of d does not depend on
    b (d shifts by (1 - g1 - g2) b): only the count moves with it.  Returns
    the count flagged.  (T >= 4.)"""
    n = y.shape[0] - 1
    b = y[0] if mode != 0 else 0.0
    c = (1.0 - g1 - g2) * b
    m = 0
    for k in range(2, n, stride):
        scratch[m] = (y[k + 1] - g1 * y[k] - g2 * y[k - 1]) - c
        m += 1
    r = min(max(int(frac * m), 0), m - 1)
    thr = order_stat(scratch[0:m], r, scratch[m:])
    return _fit_flags(y, g1, g2, b, thr, active)


# order_stat's sample of the values (about this many) and the margin of its
# bracket around the rank, in the sample's standard deviations of a rank
# (plus _SELECT_PAD samples)
_SELECT_SAMPLE = 2048
_SELECT_SD = 4.0
_SELECT_PAD = 4


@njit(cache=_CACHE, nogil=True)
def order_stat(v, r, buf):
    """The value np.partition(v, r)[r] (the r-th smallest of ``v``, 0 <= r
    < len(v)), found without sorting or partitioning v: the values of a
    sorted sample of ~``_SELECT_SAMPLE`` bracket the rank, one pass counts
    those below the bracket and copies those in it to ``buf``, which is
    partitioned alone (numba's np.partition of the 62,500 values of a
    1,000,000-frame :func:`count_fit_flags` ~0.8 ms; this ~0.1 ms).  The
    same value (a zero's sign aside, which a comparison does not see);
    where the bracket misses the rank or ``buf`` is too
    short, np.partition of v.  ``v`` is not changed."""
    m = v.shape[0]
    step = m // _SELECT_SAMPLE
    if step < 4:
        return np.partition(v, r)[r]
    ls = m // step
    smp = np.empty(ls)
    for i in range(ls):
        smp[i] = v[i * step]
    smp.sort()
    pos = (r + 0.5) * ls / m
    q = min(max(r / m, 1.0 / ls), 1.0 - 1.0 / ls)
    pad = _SELECT_SD * math.sqrt(ls * q * (1.0 - q)) + _SELECT_PAD
    i_lo = int(pos - pad)
    i_hi = int(pos + pad) + 1
    lo = smp[i_lo] if i_lo >= 0 else -math.inf
    hi = smp[i_hi] if i_hi < ls else math.inf
    below = 0
    c = 0
    cap = buf.shape[0]
    for i in range(m):
        vi = v[i]
        below += vi < lo
        if vi >= lo and vi <= hi:
            if c >= cap:
                return np.partition(v, r)[r]
            buf[c] = vi
            c += 1
    k = r - below
    if k < 0 or k >= c:
        return np.partition(v, r)[r]
    return np.partition(buf[0:c], k)[k]
