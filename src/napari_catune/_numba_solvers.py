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
from llvmlite import ir as _llir
from numba import njit, types
from numba.core import cgutils
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic

from ._numba_local import (_SEG_ROUNDS, _SEG_SINGLE, _gram_fill, adjoint_conv,
                           closed_form_roots, dense_fits, dense_settle, dense_verify,
                           direct_gradient, forward_conv, local_exchange, peak_samples,
                           power_tables, settle_gradient, thin_flips)
from ._numba_affine import (_AFF_MAX_UPDATES, affine_flags, affine_fwd, affine_nu,
                            affine_settle, count_fit_flags, exact_fit_flags)
from ._numba_short import active_sub, flat_free_step, free_pair_step, free_step, riccati_short
from ._numba_block import _block_nnqp_ws
from ._numba_hints import AHEAD as _PF_AHEAD
from ._numba_hints import FROM as _HINT_FROM
from ._numba_hints import prefetch as _prefetch

# numba keys its on-disk cache of this file's functions on this file alone
# (numba 0.68: a digest of its contents; before: its time stamp and size),
# not on the modules they call into: pdas_one's cached machine code holds
# _numba_local's, _numba_short's, _numba_hints' and _numba_affine's code
# as it was when it compiled.  So this file holds a digest of those sources (a change there
# is a change here; tests/test_numba_cache_key.py checks it and prints the
# new value), or a checkout or an upgrade with a warm cache would run the
# old code (seen: wdrift's edge-scan fix measured nothing until the cache
# was cleared; a reviewer ran a callee numba could no longer compile).
_CALLEES_SHA = "e7148010b9d43c44"

# (int64, not literal ints: see _NO)
_SEG_ROUNDS = np.int64(_SEG_ROUNDS)
_SEG_SINGLE = np.int64(_SEG_SINGLE)
# a warm start's local settle: Murty's rounds per segment after its block
# rounds (a segment left cycling costs a full step or more: calab's gcamp6s
# preset at 30 Hz, 54,000 frames, scalar, tau_rise +20 %: 9 -> 6 steps;
# no other move of the bench's regimes changed its steps)
_WARM_SEG_SINGLE = np.int64(32)

_CACHE = True
# the interior point's element-wise passes may reassociate (vectorised sums and
# maxima); no 'nnan'/'ninf': its NaN guards must stay
_IPM_FAST = {"reassoc", "nsz", "arcp", "contract"}
# Constant arguments of calls between compiled functions go as these (plain
# bool / int64), never as a literal False, 0 or a module constant: numba
# compiles a callee, and everything it calls, once per literal value it is
# given (a literal False made a second copy of pdas_one and its interior
# point, ~10 s of a cold compile), and an omitted default is a type of its
# own as well.
_NO = np.bool_(False)
_YES = np.bool_(True)
_ZERO = np.int64(0)
# the multipliers' passes' ``bmask``: the baseline per sample, or the
# constant in bvec[0] (a flat step's, which leaves bvec[1:] unset)
_ALL_B = np.int64(-1)
_ONE_B = np.int64(0)
# the passes _newton_fwd runs over each Newton solution (its ``kind``)
_FWD_PRED = np.int64(1)
_FWD_CORR = np.int64(2)
_FWD_GONDZIO = np.int64(3)
# ... the same with their right-hand sides formed in the passes (modes 0, 1:
# _ipm_iteration without drift; see _newton_back_fused)
_FWD_PRED_P = np.int64(4)
_FWD_CORR_P = np.int64(5)
# the right-hand sides _newton_back_fused forms (its ``kind``)
_RHS_C = np.int64(0)
_RHS_CORR = np.int64(1)
_RHS_GONDZIO = np.int64(2)


@intrinsic
def _fence(typingctx, x):
    """x behind ``llvm.arithmetic.fence``: a product passed through it is
    not fused into a multiply-add in a function compiled with fastmath
    'contract' (:func:`_nu_riccati` forms the multipliers with the plain
    sum's rounding of :func:`_nu_pass` there)."""
    sig = types.float64(types.float64)

    def codegen(context, builder, signature, args):
        fnty = _llir.FunctionType(_llir.DoubleType(), [_llir.DoubleType()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.arithmetic.fence.f64")
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def _fma(typingctx, a, b, c):
    """a b + c rounded once (``llvm.fma``): the multiply-add that a function
    compiled with fastmath 'contract' forms of it (:func:`_affine_flags_out`
    reads the flags as :func:`._numba_affine.affine_flags` does)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        dbl = _llir.DoubleType()
        fnty = _llir.FunctionType(dbl, [dbl, dbl, dbl])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.fma.f64")
        return builder.call(fn, args)

    return sig, codegen


# ----------------------------------------------------------------- filters
# forward_conv (K s) and adjoint_conv (K^T v) live in _numba_local (its dense
# settle needs them) and are imported above


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
    if not mu >= 1e-50:
        _smooth_baseline_div(r, mu, gain, out)
        return
    # P = N / D carried as the pair (both positive, no cancellation):
    # P + 1 = (N + D) / D and P + 1 + mu = mu D' / D give N' = N + D,
    # D' = (N + (1 + mu) D) / mu and the harmonic factor mu / (P + 1 + mu)
    # = D / D', divided off the loop-carried chains (1 kHz, mu 3.6e9,
    # 54,000 frames: 0.63 -> 0.40 ms; the same to ~1e-14 of max |b|)
    imu = 1.0 / mu
    N = 0.0
    D = 1.0
    q = 0.0
    # (the rescaling test once per _SMOOTH_CHUNK samples where mu allows it,
    # _smooth_chunk: the same numbers)
    K = _smooth_chunk(mu)
    t = T - 1
    while t > 0:
        t_end = max(t - K, 0)
        for tt in range(t, t_end, -1):
            N, D, c, q = _smooth_back(N, D, q, imu, r[tt])
            gain[tt] = c
            out[tt] = q
            q = c * q
        t = t_end
        N, D = _smooth_rescale(N, D)
    P = N / D + 1.0
    q -= r[0]
    out[0] = -q / P
    # b_t = (mu b_{t-1} - q_t) / (P_t + mu) = c_t (b_{t-1} - q_t / mu)
    for t in range(1, T):
        out[t] = gain[t] * (out[t - 1] - out[t] * imu)


# smooth_baseline's rescaling test (N, D by 2^-600 once D exceeds 2^600) once
# per _SMOOTH_CHUNK samples where 1 <= mu <= _SMOOTH_CHUNK_MU, not every
# sample (with it on the loop-carried chains, as the select LLVM makes of
# it, the backward recursion took 0.33 ms on 54,000 samples; without, 0.09).
# The same numbers: a rescaling by a power of two is exact, and every later
# N, D scales with it (sums, products with 1/mu, all normal) while the gains
# D / Dn and P = N / D + 1 are ratios.  No overflow: with 1/mu <= 1, D grows
# at most 3x a sample (3^64 < 2^102), and N <= (sqrt(mu) + 1) D
# (N / D + 1 is the Riccati value, below its limit ~sqrt(mu)), so N stays
# below 2^(600 + 102 + 167) with mu <= 1e100.
_SMOOTH_CHUNK = 64
_SMOOTH_CHUNK_MU = 1e100


@njit(cache=_CACHE, nogil=True, inline="always")
def _smooth_back(N, D, q, imu, r):
    """One sample of :func:`smooth_baseline`'s backward recursion (P = N / D
    as the pair): the next (N, D), the gain D / D' and the sum q - r."""
    Dn = N * imu + D + D * imu
    return N + D, Dn, D / Dn, q - r


@njit(cache=_CACHE, nogil=True, inline="always")
def _smooth_rescale(N, D):
    """(N, D) by 2^-600 once D exceeds 2^600 (exact: a power of two)."""
    if D > 4.149515568880993e+180:
        return N * 2.409919865102884e-181, D * 2.409919865102884e-181
    return N, D


@njit(cache=_CACHE, nogil=True, inline="always")
def _smooth_chunk(mu):
    """Samples between smooth_baseline's rescaling tests (1: every sample)."""
    if mu >= 1.0 and mu <= _SMOOTH_CHUNK_MU:
        return _SMOOTH_CHUNK
    return 1


@njit(cache=_CACHE, nogil=True)
def _smooth_baseline_div(r, mu, gain, out):
    """:func:`smooth_baseline` by the recursion in P itself (a division on
    its chain), for mu below 1e-50 (where 1 / mu could overflow)."""
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
@njit(cache=_CACHE, nogil=True, inline="always")
def _drift_quadratic(p00, p01, p11, p02, p12, p22, mu):
    """Eliminate the drift baseline from the Riccati value function (shared
    by :func:`_subspace_solve` and :func:`_newton_solve`).

    The state after sample k holds c = b_{k+1}; with the random-walk cost
    mu/2 (c - c')^2 to the previous baseline c', the best c is
    ``wm c' - w0 x_{k-1} - w1 x_{k-2} - inv q2`` (q2 the linear term of
    c): a Schur complement with pivot p22 + mu whose updates are harmonic
    (mu p / (p + mu)), so a large mu loses nothing.  Returns the reduced
    quadratic part and (w0, w1, wm, inv).
    """
    inv = 1.0 / (p22 + mu)
    w0 = p02 * inv
    w1 = p12 * inv
    wm = mu * inv
    return (p00 - p02 * w0, p01 - p02 * w1, p11 - p12 * w1, p02 * wm, p12 * wm, p22 * wm,
            w0, w1, wm, inv)


@njit(cache=_CACHE, nogil=True, inline="always")
def _drift_linear(q0, q1, q2, w0, w1, wm, inv):
    """The linear part of :func:`_drift_quadratic`'s elimination; returns
    (q0, q1, q2) reduced and the offset ``inv q2`` of the best c."""
    return q0 - w0 * q2, q1 - w1 * q2, q2 * wm, q2 * inv


# exact powers of two that rescale :func:`_subspace_riccati`'s ratio a22 = hn / hd
_RATIO_TINY = 2.0 ** -500
_RATIO_SCALE = 2.0 ** 500


# mu >= _RATIO_CHUNK_MU: hd is tested once every _RATIO_CHUNK samples
# instead of after every free sample (see _subspace_riccati)
_RATIO_CHUNK = 64
_RATIO_CHUNK_MU = 1.0


@njit(cache=_CACHE, nogil=True, inline="always")
def _ratio_step(rn, hd, mm, sig, mn):
    """The drift's ratio a22 = hn / hd after a sample, from the numerator rn
    it leaves (an active sample hn, a free one hn - e22 hd / a00): a22 <-
    mu r / (r + mu) + 1 as (hn, hd).  The caller rescales them (by
    _RATIO_SCALE) before hd underflows."""
    hdm = mm * hd
    return mn * rn + hdm, sig * rn + hdm


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _subspace_riccati(y, g1, g2, beta, mode, mu, active, gain, gb):
    """The backward Riccati recursion of :func:`_subspace_core`: fills the
    gains (gain; gb for drift) and returns (1 + p22, q2) of the value
    function before sample 0 and p0, the first row of the gains: a free
    sample's three gains go to the next row down from the end (rows p0 ..
    n-1 hold the free samples' in order of k; an active sample has none),
    so that the forward pass reads one compact stream (on 1,000,000 frames
    a gain row per sample streamed 24 MB from memory every pass: the
    forward pass took 5 ns a sample there against 1.9 on 54,000, packed
    1.9 on both).  gb (drift) stays one row per sample.

    The recursion is latency-bound (each sample's value function needs the
    previous one), so it carries the value function with the stage cost's
    ones already added (a00 = p00 + 1, a02 = p02 + 1, a22 = p22 + 1) and
    forms every new entry as one multiply-add from the previous ones: a
    free sample's chain is the division by a00 and one multiply-add
    (a01^2, a01 a02 and a02^2 are formed while it divides), an active
    sample's one multiply-add.  Drift: the pivot p22 + mu of the baseline's
    elimination after a free sample is det / a00 of the 2x2 block of
    (x_k, c), so its division runs alongside the first instead of after it
    (det >= a00 mu: a02^2 <= a00 a22, nothing cancels that the sequential
    form would not).

    The recursion itself is :func:`_subspace_riccati_ck`'s, from the end
    and saving no checkpoints (one body: the warm drift steps' restart and
    every other caller take the same operations in the same order).
    """
    return _subspace_riccati_ck(y, g1, g2, beta, mode, mu, active, gain, gb,
                                np.empty((0, 16)), y.shape[0] - 1)


@njit(cache=_CACHE, nogil=True, fastmath={"contract"}, error_model="numpy")
def _subspace_riccati_ck(y, g1, g2, beta, mode, mu, active, gain, gb, ck, hi0):
    """:func:`_subspace_riccati`'s recursion (its one body), which, where
    ``ck`` has rows, saves its carried state at the start of every chunk of
    ``_RATIO_CHUNK`` samples (counted from the end, as the ratio's rescaling
    test runs) into row (n - hi) / _RATIO_CHUNK of ``ck``, and with ``hi0``
    < n starts at the chunk that begins there from the state saved in its
    row: the samples from hi0 on (their gains in ``gain`` and ``gb`` and
    the state) are then those of an earlier run whose set agreed with
    ``active`` from hi0 on (the state at a chunk's start depends on the
    set above it only).  Checkpoints only where a chunk is _RATIO_CHUNK
    samples (drift with mu >= _RATIO_CHUNK_MU, or no drift): otherwise
    (one sample a chunk, more rows than ck has) none are saved or read and
    the run is whole."""
    n = y.shape[0] - 1
    drift = mode == 2
    g1sq = g1 * g1
    g1x2 = 2.0 * g1
    g2sq = g2 * g2
    bg1 = beta * g1
    bg2 = -beta * g2
    # drift: a22 = hn / hd kept as a ratio, so that its update by the
    # baseline's elimination, a22 <- mu a22 / (a22 + mu) + 1 (a Moebius map
    # with positive coefficients), is linear: two multiply-adds instead of a
    # division on the loop-carried chain.  Scaled by 1 / (a* + mu), a* =
    # (1 + sqrt(1 + 4 mu)) / 2 its fixed point (the dominant eigenvalue), so
    # that a run of active samples keeps (hn, hd) bounded; a run of free
    # samples shrinks them, undone by an exact power of two.
    sig = 1.0 / ((1.0 + math.sqrt(1.0 + 4.0 * mu)) / 2.0 + mu) if drift else 1.0
    mn = sig * (mu + 1.0)
    mm = sig * mu
    hn = 1.0
    hd = 1.0
    # value function 1/2 xi' P xi + q' xi of the state after step k, with the
    # next stage cost's ones added to a00, a02, a22
    a00 = 1.0
    a01 = 0.0
    a02 = 1.0
    a11 = 0.0
    a12 = 0.0
    a22 = 1.0
    q0 = 0.0
    q1 = 0.0
    q2 = 0.0
    inv_d = 0.0
    w0 = 0.0
    w1 = 0.0
    wm = 0.0
    # whether samples k+1 and k+2 are free (a free pair follows sample k)
    f1 = False
    f2 = False
    # the free samples' gains, packed: rows p .. n-1 in order of k
    p = n
    # mu >= 1: a free sample leaves hd >= mm hd = mu hd / (a* + mu) >= hd /
    # 2.62 (r22 >= 0), an active one hd = sig (a22 + mu) hd >= mm hd too, so
    # 64 samples shrink it by at most 2^-89: tested after every chunk of 64
    # samples it stays above 2^-589, far from the subnormals, and the test
    # leaves the loop (after every free sample it had been a compare and
    # select on the loop-carried chain).  mu < 1: after every sample.  The
    # rescale is by an exact power of two and every use of (hn, hd) is
    # homogeneous in them, so where it happens changes no bit of the output.
    chunk = 1 if drift and not mu >= _RATIO_CHUNK_MU else _RATIO_CHUNK
    hi = n
    save = ck.shape[0] > 0 and chunk == _RATIO_CHUNK
    if hi0 < n and save:
        r = (n - hi0) // chunk
        a00 = ck[r, 0]
        a01 = ck[r, 1]
        a02 = ck[r, 2]
        a11 = ck[r, 3]
        a12 = ck[r, 4]
        a22 = ck[r, 5]
        q0 = ck[r, 6]
        q1 = ck[r, 7]
        q2 = ck[r, 8]
        hn = ck[r, 9]
        hd = ck[r, 10]
        f1 = ck[r, 11] != 0.0
        f2 = ck[r, 12] != 0.0
        p = int(ck[r, 13])
        hi = hi0
    while hi > 0:
        if save:
            r = (n - hi) // chunk
            ck[r, 0] = a00
            ck[r, 1] = a01
            ck[r, 2] = a02
            ck[r, 3] = a11
            ck[r, 4] = a12
            ck[r, 5] = a22
            ck[r, 6] = q0
            ck[r, 7] = q1
            ck[r, 8] = q2
            ck[r, 9] = hn
            ck[r, 10] = hd
            ck[r, 11] = 1.0 if f1 else 0.0
            ck[r, 12] = 1.0 if f2 else 0.0
            ck[r, 13] = p
        lo = max(hi - chunk, 0)
        for kk in range(hi - 1, lo - 1, -1):
            # (indices unsigned: no test for a negative index; no test for
            # a zero divisor either, error_model "numpy": the divisors, a00
            # >= 1 and the drift's pivot, are positive, and a zero would
            # give inf where it raised.  Together -2.5 % of the recursion's
            # time on sparse sets, -5 to -12 % with a free sample in four
            # to six; the same numbers)
            k = np.uint64(kk)
            yk = y[np.uint64(kk + 1)]
            l1 = q1
            l2 = q2 - yk
            if not active[k] and f1 and f2:
                # a free sample before a free pair (most samples at lambda 0):
                # there a00 = a02 = 1 and a01 = a11 = a12 = 0 exactly, so the
                # general branch below would form c1 = 0, c2 = 1, c3 = lb and
                # leave a00, a02 at 1 (drift: r12 = w0 = 0, e22d = hd); the
                # same numbers without its division on the loop-carried chain
                p -= 1
                q0, q1, q2 = free_pair_step(gain, np.uint64(p), q0, l1, l2, yk, beta, bg1, bg2)
                if drift:
                    inv_d = hd / ((hn + mu * hd) - hd)
                    wm = mu * inv_d
                    hn, hd = _ratio_step(hn - hd, hd, mm, sig, mn)
                    q0, q1, q2, w3 = _drift_linear(q0, q1, q2, 0.0, 0.0, wm, inv_d)
                    gb[k, 0] = 0.0
                    gb[k, 1] = 0.0
                    gb[k, 2] = wm
                    gb[k, 3] = w3
                else:
                    a22 = (a22 + 1.0) - 1.0
                continue
            f2 = f1
            f1 = not active[k]
            if active[k]:
                # x_k = g1 x_{k-1} + g2 x_{k-2}: substitute the dynamics
                p00, p01, p11, p02, p12, q0, q1, q2 = active_sub(
                    a00, a01, a11, a02, a12, q0, l1, l2, yk, g1, g2, g1sq, g1x2, g2sq)
                if drift:
                    # 1 / (a22 + mu) off the chain; a22 <- mu a22 inv_d + 1
                    inv_d = hd / (hn + mu * hd)
                    w0 = p02 * inv_d
                    w1 = p12 * inv_d
                    wm = mu * inv_d
                    a00 = p00 - p02 * w0
                    a01 = p01 - p02 * w1
                    a11 = p11 - p12 * w1
                    a02 = p02 * wm + 1.0
                    a12 = p12 * wm
                    hn, hd = _ratio_step(hn, hd, mm, sig, mn)
                else:
                    a00 = p00
                    a01 = p01
                    a11 = p11
                    a02 = p02 + 1.0
                    a12 = p12
                    a22 = a22 + 1.0
            else:
                # x_k free at cost beta * (x_k - g1 x_{k-1} - g2 x_{k-2}):
                # minimise over x_k, then substitute the rest of the dynamics
                if drift:
                    # the pivot r22 + mu = det / a00 of the 2x2 block of (x_k, c)
                    # (a22 = hn / hd): divides alongside 1 / a00
                    e22d = (a02 * a02) * hd
                    inv_d = (a00 * hd) / (a00 * (hn + mu * hd) - e22d)
                p -= 1
                inv, q0, q1, q2, e11, e12, e22 = free_step(gain, np.uint64(p), a00, a01, a02, q0, l1,
                                                           l2, yk, beta, bg1, bg2)
                if drift:
                    r12 = a12 - e12 * inv
                    w0 = r12 * inv_d
                    w1 = 0.0
                    wm = mu * inv_d
                    a00 = ((a11 + 1.0) - e11 * inv) - r12 * w0
                    a02 = r12 * wm + 1.0
                    # hn / hd <- (mu r22 / (r22 + mu) + 1), r22 = a22 - e22 inv
                    hn, hd = _ratio_step(hn - e22d * inv, hd, mm, sig, mn)
                else:
                    a00 = (a11 + 1.0) - e11 * inv
                    a02 = (a12 + 1.0) - e12 * inv
                    a22 = (a22 + 1.0) - e22 * inv
                a01 = 0.0
                a11 = 0.0
                a12 = 0.0
            if drift:
                q0, q1, q2, w3 = _drift_linear(q0, q1, q2, w0, w1, wm, inv_d)
                gb[k, 0] = w0
                gb[k, 1] = w1
                gb[k, 2] = wm
                gb[k, 3] = w3
        if hd < _RATIO_TINY:
            hn *= _RATIO_SCALE
            hd *= _RATIO_SCALE
        hi = lo
    if drift:
        a22 = hn / hd
    return a22, q2, p


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _riccati_flat(y, g1, g2, beta, active, gain):
    """:func:`_subspace_riccati` without drift (modes 0 and 1): the same
    arithmetic, so the same gains and (1 + p22, q2), in a loop that holds
    no drift branch (numba kept them in _subspace_riccati's loop: 4.2 ->
    2.3 ns a sample on lam0-30Hz's set), and a free sample before a free
    one (not a pair) in a branch of its own, its division off the
    loop-carried chain.  Called in place of _subspace_riccati where there
    is no drift (_subspace_core, _kkt_core_ahead): _subspace_riccati keeps
    its compiled body, so drift's numbers stay as they were.  The gains
    packed as there; returns (1 + p22, q2, p0)."""
    n = y.shape[0] - 1
    g1sq = g1 * g1
    g1x2 = 2.0 * g1
    g2sq = g2 * g2
    bg1 = beta * g1
    bg2 = -beta * g2
    a00 = 1.0
    a01 = 0.0
    a02 = 1.0
    a11 = 0.0
    a12 = 0.0
    a22 = 1.0
    q0 = 0.0
    q1 = 0.0
    q2 = 0.0
    f1 = False
    f2 = False
    # the free samples' gains, packed: rows p .. n-1 in order of k
    p = n
    for k in range(n - 1, -1, -1):
        yk = y[k + 1]
        l1 = q1
        l2 = q2 - yk
        if not active[k] and f1 and f2:
            # a free sample before a free pair (_subspace_riccati)
            p -= 1
            q0, q1, q2 = free_pair_step(gain, p, q0, l1, l2, yk, beta, bg1, bg2)
            a22 = (a22 + 1.0) - 1.0
            continue
        after_free = f1
        f2 = f1
        f1 = not active[k]
        if active[k]:
            a00, a01, a11, p02, a12, q0, q1, q2 = active_sub(a00, a01, a11, a02, a12, q0, l1, l2,
                                                             yk, g1, g2, g1sq, g1x2, g2sq)
            a02 = p02 + 1.0
            a22 = a22 + 1.0
        elif after_free:
            # a free sample before a free one (not a pair: an active sample
            # follows that): a01 = a11 = a12 = 0 here, so c1 = 0 and the
            # branch below leaves a00 = a02 = 1 exactly, whatever 1 / a00
            # is: the same numbers with the division off the loop-carried
            # chain
            inv = 1.0 / a00
            lb = q0 + (beta - yk)
            c2 = a02 * inv
            c3 = lb * inv
            p -= 1
            gain[p, 0] = 0.0
            gain[p, 1] = c2
            gain[p, 2] = c3
            q0 = l1 - bg1
            q1 = bg2
            q2 = l2 - c2 * lb
            e22 = a02 * a02
            a22 = (a22 + 1.0) - e22 * inv
            a00 = 1.0
            a02 = 1.0
        else:
            p -= 1
            a00, a02, a22, q0, q1, q2 = flat_free_step(gain, p, a00, a01, a11, a02, a12, a22,
                                                       q0, l1, l2, yk, beta, bg1, bg2)
            a01 = 0.0
            a11 = 0.0
            a12 = 0.0
    return a22, q2, p


# _riccati_pk leaves q2 and a22 as they are along lambda 0's runs of free
# samples before free pairs (False: rounded there as _riccati_flat does;
# tests/test_lam0_runs.py compiles that variant)
_RIC_RUNS = True


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _riccati_pk(y, g1, g2, beta, active, gain, g3):
    """:func:`_riccati_flat` (the same arithmetic, the same gains) with the
    gains stored for :func:`_affine_fwd_runs`: every free
    sample's c3 packed in ``g3`` (rows p .. n-1 in order of k), and c1, c2
    only for a free sample not before a free pair, packed in ``gain``
    (rows q .. n-1; c3 there too).  A free sample before a free pair (c1 =
    0, c2 = 1: most samples of a long lambda-0 trace) writes 8 bytes
    instead of 24, and the forward pass reads 8.  At lambda 0 (``beta``
    +0.0) a run of such samples leaves q2 and a22 as they are once q0 = q1
    = 0 (from its second sample on, counted from its end: lb = -y there,
    so q2 - y - lb = q2 exactly, where _riccati_flat rounds (q2 - y) + y a
    sample; q2, and the answer formed from it, round otherwise: the same
    steps and sets, spikes and baseline within 5e-14 relative in review
    rev30's 976 solves, the scalar digest 63d5134d...; mode 0 bit for bit),
    in a loop that stores c3 alone.
    Returns (1 + p22, q2, p, q)."""
    n = y.shape[0] - 1
    g1sq = g1 * g1
    g1x2 = 2.0 * g1
    g2sq = g2 * g2
    bg1 = beta * g1
    bg2 = -beta * g2
    a00 = 1.0
    a01 = 0.0
    a02 = 1.0
    a11 = 0.0
    a12 = 0.0
    a22 = 1.0
    q0 = 0.0
    q1 = 0.0
    q2 = 0.0
    f1 = False
    f2 = False
    p = n
    q = n
    # (lambda 0's runs of free pairs: below)
    lam0 = _RIC_RUNS and beta == 0.0
    kk = n
    while kk > 0:
        kk -= 1
        # (indices cast to unsigned: no test for a negative index)
        k = np.uint64(kk)
        yk = y[np.uint64(kk + 1)]
        l1 = q1
        l2 = q2 - yk
        if not active[k] and f1 and f2:
            # a free sample before a free pair (free_pair_step: gains (0, 1,
            # lb), only lb stored)
            p -= 1
            lb = q0 + (beta - yk)
            g3[np.uint64(p)] = lb
            q0 = l1 - bg1
            q1 = bg2
            q2 = l2 - lb
            a22 = (a22 + 1.0) - 1.0
            if lam0 and q0 == 0.0 and q1 == 0.0 and a22 >= 0.0:
                # lambda 0, q0 = q1 = 0 (a run's second such sample on):
                # the next ones' lb = -y, so q2 - y - lb = q2, and (a22 + 1)
                # - 1 = a22 for a22 >= 0 (rounded onto its grid once):
                # nothing but c3 (and q0, q1, zeros) changes while the run
                # goes on.  (q2 kept exact, not (q2 - y) + y rounded on a
                # chain of two additions a sample, which bound this pass at
                # ~1.6 ns a sample on lambda 0's long runs; a22 the same
                # bits)
                while kk > 0 and not active[np.uint64(kk - 1)]:
                    kk -= 1
                    p -= 1
                    g3[np.uint64(p)] = q0 + (beta - y[np.uint64(kk + 1)])
                    q0 = q1 - bg1
                    q1 = bg2
            continue
        after_free = f1
        f2 = f1
        f1 = not active[k]
        if active[k]:
            a00, a01, a11, p02, a12, q0, q1, q2 = active_sub(a00, a01, a11, a02, a12, q0, l1, l2,
                                                             yk, g1, g2, g1sq, g1x2, g2sq)
            a02 = p02 + 1.0
            a22 = a22 + 1.0
        elif after_free:
            # a free sample before a free one, not a pair (_riccati_flat)
            inv = 1.0 / a00
            lb = q0 + (beta - yk)
            c2 = a02 * inv
            c3 = lb * inv
            p -= 1
            q -= 1
            g3[np.uint64(p)] = c3
            gain[np.uint64(q), 0] = 0.0
            gain[np.uint64(q), 1] = c2
            gain[np.uint64(q), 2] = c3
            q0 = l1 - bg1
            q1 = bg2
            q2 = l2 - c2 * lb
            e22 = a02 * a02
            a22 = (a22 + 1.0) - e22 * inv
            a00 = 1.0
            a02 = 1.0
        else:
            p -= 1
            q -= 1
            a00, a02, a22, q0, q1, q2 = flat_free_step(gain, q, a00, a01, a11, a02, a12, a22,
                                                       q0, l1, l2, yk, beta, bg1, bg2)
            g3[np.uint64(p)] = gain[q, 2]
            a01 = 0.0
            a11 = 0.0
            a12 = 0.0
    return a22, q2, p, q


@njit(cache=_CACHE, nogil=True)
def _affine_fwd_runs(y, g1, g2, alpha, active, gain, g3, p0, q0, b, x, z, u, u1):
    """:func:`._numba_affine.affine_fwd` (the same numbers bit for bit) on
    the gains as :func:`_riccati_pk` stores them,
    with a run of free samples before free pairs in a loop of its own: there
    x_k = -(b + c3) and z_k = -1 do not depend on the samples before, so
    nothing but the residuals' sum is carried from sample to sample (the
    branch-free pass carries x and z through two selects and holds ~70
    instructions a sample: 2.9-3.5 ns, in cache or not).  Compiled without
    fastmath: the multiply-adds affine_fwd's compiled loop forms are
    written out (:func:`_fma`), the rest rounded as there.  h, the sum of
    1 + z, takes nothing from such a sample (1 + z = 0 exactly).  Bit for
    bit with affine_fwd where LLVM fuses those multiply-adds there, as on
    an FMA target (numba's default, the host CPU); elsewhere
    (NUMBA_CPU_NAME=generic) both are valid roundings, no longer equal,
    as for :func:`_affine_flags_out`; tests/test_affine_runs.py assumes
    an FMA target."""
    n = y.shape[0] - 1
    xm1 = 0.0
    xm2 = 0.0
    zm1 = 0.0
    zm2 = 0.0
    u_max = 0.0
    r_sum = y[0] - b
    h_sum = 1.0
    inv_alpha = 1.0 / alpha
    ng1 = -g1
    ng2 = -g2
    p = p0
    q = q0
    k = 0
    while k < n:
        # (indices cast to unsigned: no test for a negative index)
        ku = np.uint64(k)
        if active[ku]:
            m1 = g1 * xm1
            m2 = g2 * xm2
            xk = m1 + m2
            zk = _fma(g2, zm2, g1 * zm1)
            u[ku] = 0.0
            u1[ku] = 0.0
            x[ku] = xk
            z[ku] = zk
            r_sum += (y[np.uint64(k + 1)] - b) - xk
            h_sum += 1.0 + zk
            xm2 = xm1
            xm1 = xk
            zm2 = zm1
            zm1 = zk
            k += 1
            continue
        if k + 2 < n and not active[np.uint64(k + 1)] and not active[np.uint64(k + 2)]:
            # a run of free samples before free pairs
            while True:
                ku = np.uint64(k)
                xk = -(b + g3[np.uint64(p)])
                p += 1
                uk = ((xk - g1 * xm1) - g2 * xm2) * inv_alpha
                vk = _fma(ng2, zm2, _fma(ng1, zm1, -1.0)) * inv_alpha
                u[ku] = uk
                u1[ku] = vk
                u_max = max(u_max, abs(uk))
                x[ku] = xk
                z[ku] = -1.0
                r_sum += (y[np.uint64(k + 1)] - b) - xk
                xm2 = xm1
                xm1 = xk
                zm2 = zm1
                zm1 = -1.0
                k += 1
                if k + 2 >= n or active[np.uint64(k + 2)]:
                    break
            continue
        # a free sample not before a free pair
        c3 = g3[np.uint64(p)]
        p += 1
        qu = np.uint64(q)
        c1 = gain[qu, 0]
        c2 = gain[qu, 1]
        q += 1
        xk = -_fma(c1, xm1, _fma(c2, b, c3))
        zk = -_fma(c1, zm1, c2)
        uk = ((xk - g1 * xm1) - g2 * xm2) * inv_alpha
        vk = _fma(ng2, zm2, _fma(ng1, zm1, zk)) * inv_alpha
        u[ku] = uk
        u1[ku] = vk
        u_max = max(u_max, abs(uk))
        x[ku] = xk
        z[ku] = zk
        r_sum += (y[np.uint64(k + 1)] - b) - xk
        h_sum += 1.0 + zk
        xm2 = xm1
        xm1 = xk
        zm2 = zm1
        zm1 = zk
        k += 1
    return u_max, r_sum, h_sum


@njit(cache=_CACHE, nogil=True)
def _subspace_solve(y, g1, g2, alpha, beta, mode, mu, active, gain, gb, x, bvec):
    """Optimum of the objective when s = 0 on ``active`` (see
    :func:`_subspace_core`): fills x and bvec."""
    _subspace_core(y, g1, g2, alpha, beta, mode, mu, active, gain, gb, x, bvec, x, False)


@njit(cache=_CACHE, nogil=True, inline="always")
def _subspace_core(y, g1, g2, alpha, beta, mode, mu, active, gain, gb, x, bvec, u, want_u):
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

    With ``want_u`` the forward pass also writes the spikes u = M x / alpha
    on the free set (0 on the active set) and returns max |u|.
    """
    if mode == 2:
        a22, q2, p0 = _subspace_riccati(y, g1, g2, beta, mode, mu, active, gain, gb)
    else:
        # (the same numbers in a loop without the drift's branches)
        a22, q2, p0 = _riccati_flat(y, g1, g2, beta, active, gain)
    return _subspace_fwd(y, g1, g2, alpha, mode, active, gain, gb, x, bvec, u, want_u, a22, q2,
                         p0)


@njit(cache=_CACHE, nogil=True, inline="always")
def _subspace_fwd(y, g1, g2, alpha, mode, active, gain, gb, x, bvec, u, want_u, a22, q2, p0):
    """The forward pass of :func:`_subspace_core`, given the gains of its
    Riccati recursion and (1 + p22, q2) of the value function before
    sample 0 (from :func:`_subspace_riccati`, or formed ahead by
    :func:`_nu_riccati`).  ``gain``: the free samples' gains packed from
    row ``p0`` on, in order of k.  Returns max |u| (``want_u``)."""
    n = y.shape[0] - 1
    drift = mode == 2
    p = p0
    b = 0.0
    if mode != 0:
        # state before step 0 is (0, 0, b_0); stage 0 of y has no calcium
        b = (y[0] - q2) / a22
    bvec[0] = b
    xm1 = 0.0
    xm2 = 0.0
    u_max = 0.0
    for k in range(n):
        # a free sample before a free pair: its gains on x_{k-1} are 0 and on
        # b 1 (_subspace_riccati), so x_k and the drift take the same numbers
        # without the previous x on their chain
        pair = k + 2 < n and not active[k] and not active[k + 1] and not active[k + 2]
        if drift:
            # the x terms apart: b's own chain is one product and one sum
            if pair:
                b = gb[k, 2] * b - gb[k, 3]
            else:
                b = gb[k, 2] * b - ((gb[k, 0] * xm1 + gb[k, 1] * xm2) + gb[k, 3])
        bvec[k + 1] = b
        if active[k]:
            xk = g1 * xm1 + g2 * xm2
            if want_u:
                u[k] = 0.0
        else:
            if pair:
                xk = -(b + gain[p, 2])
            else:
                xk = -(gain[p, 0] * xm1 + gain[p, 1] * b + gain[p, 2])
            p += 1
            if want_u:
                # the spike M x / alpha
                uk = (xk - g1 * xm1 - g2 * xm2) / alpha
                u[k] = uk
                u_max = max(u_max, abs(uk))
        x[k] = xk
        xm2 = xm1
        xm1 = xk
    return u_max


@njit(cache=_CACHE, nogil=True)
def _fill_b(bvec):
    """bvec[1:] = bvec[0]: the constant baseline of a flat step
    (:func:`_kkt_core_ahead`) on every sample."""
    b = bvec[0]
    for t in range(1, bvec.shape[0]):
        bvec[t] = b


@njit(cache=_CACHE, nogil=True)
def pdas_one(y, g1, g2, alpha, lamG, mode, mu, active, max_iters, s_out, bvec, fws, bws,
             rel_eps=1e-11, warm=False, bail=False, at_once=np.int64(8), b_all=True):
    """Exact solve by primal-dual active sets.  Returns (iters, converged).

    ``active`` (bool, length T-1) is the starting guess of where s = 0 (a
    warm start passes the zeros of the previous activity); it is updated in
    place.  ``s_out`` receives the activity (length T, s[T-1] = 0) and
    ``bvec`` the baseline per sample (``mode``: 0 none, 1 scalar, 2 drift
    with weight ``mu``).  ``fws`` and ``bws`` are float and bool workspaces
    of at least :func:`workspace_sizes` (T) elements, reused across calls
    (fresh memory costs a page fault per 4 kB, ~1.5 ms per 54,000-frame
    solve).  ``b_all`` False: a converged answer in modes 0 and 1 may leave
    its baseline in bvec[0] alone (pdas_rows reads no more; the fill of a
    1,000,000-frame bvec ~0.25 ms).

    Each step solves the problem with s = 0 on the active set and s free
    elsewhere (:func:`_subspace_solve`), then reads the KKT signs: spikes u
    on the free set must be >= 0, and the multipliers nu = M^-T (x - y + b)
    + lamG / alpha of the constraints s >= 0 on the active set must be >= 0.
    When none is violated the answer is the exact optimum.

    Three phases, every step counted against ``max_iters``:

    1. Block exchange from the given guess: every violator changes side.
       From a good guess (a warm start, a fast kernel) this settles in a few
       steps.  A cold start at lambda 0 (every sample free) takes its first
       step in one pass (:func:`_all_free_step`: the exact fit) and frees
       only its clearly negative spikes (every negative one when none is
       clearly so; without a baseline, no spikes at once when that is
       optimal: :func:`_zero_is_optimal`); its steps form the multipliers
       by :func:`_nu_pass_fma` unless the interior point follows.  Without
       drift on a kernel not slow against fs it goes on by steps carried
       affine in the baseline (on traces of at least ``_PREFIX_T`` frames
       from a first set by count, :func:`_lam0_first_flags`;
       :func:`_affine_lam0`: one or two full steps,
       then local settles each followed by the exact root of b and one pass
       that reads the violators; where that cannot go on, the steps below
       from its set).  A solve at lambda > 0 without drift (cold, or a warm
       start's block step) ends the
       same way once a block exchange leaves at most n / ``_AFFINE_LATE``
       violators, no more than its set's free pairs (:func:`_free_pairs`):
       one full step by :func:`_affine_lam0` (the gains formed ahead reused),
       then its settles and roots of b.  A warm start settles each exchange
       locally before the next
       full step (:func:`._numba_local.local_exchange`: only the segments
       between untouched free pairs that hold a violator are re-solved,
       with the baseline fixed; at most 4n samples, not counted as a step;
       by Murty's rule alone once the violators stop falling, or when a
       few remain and the last settle left a segment unsettled),
       from the second exchange on, or the first on kernels decaying over
       more than ``_LOCAL_SLOW`` samples (not beyond ``_EARLY_DECAY``); a
       cold start does so once fewer than n / ``_COLD_LOCAL_FRAC`` samples
       (at lambda 0 n / ``_COLD_LOCAL_FRAC0``) violate, from its second
       exchange on.  A warm start's exchanges flip
       one violator per cluster of its kind (:func:`._numba_local.thin_flips`,
       ``_THIN_PEAK`` kernel rises wide).  On ill-conditioned problems
       (kernels slow relative to fs) a
       wrong free set gives a wildly oscillating subspace solution and the
       exchange stops shrinking the violators (:func:`_exchange_stalls`).
    2. Then a primal-dual interior-point method (Mehrotra predictor-corrector,
       :func:`_ipm_iteration`), whose Newton system is the same O(T) Riccati
       recursion with a barrier weight per sample (:func:`_newton_solve`).
       Its iteration count barely depends on T or on the kernel.  After each
       iteration whose guess of the active set has settled, the guess is
       tried by block exchanges while they shrink the violators; the first
       guess that passes the KKT test is the exact optimum (crossover).
       After a warm start (``warm``) it starts from phase 1's last iterate,
       centred at a small mu, and on kernels decaying over more than
       ``_EARLY_DECAY`` samples phase 1 hands over as soon as the violators
       stop halving every two steps (there the exchange ends in a cycle of
       a few dozen violators that only the interior point resolves); so
       does a cold start on kernels decaying over more than
       ``_COLD_DECAY`` samples, after its first step (there the exchange
       creeps for 10-25 steps, and the interior point starts afresh).
    3. If the interior point stops making progress (rounding, budget), the
       safe rule of Judice & Pires from the best guess seen: block exchanges
       while the violators fall, else one exchange at a time (finite for
       this strictly convex problem, an LCP with a P-matrix).

    On a kernel decaying over more than ``_EARLY_DECAY`` samples a warm
    start settles each exchange by a dense solve instead
    (:func:`._numba_local.dense_settle`, with the baseline fixed; there the
    free set is a few hundred isolated samples and a small move settles in
    2-4 full steps).  Where that does not apply (a large move: thousands of
    violators) or has not settled in ``_DENSE_STEPS`` full steps, the
    interior point takes over from its cold start (on those kernels the
    warm interior point took more steps than a whole cold solve; a cold
    solve's own first step, all samples active, is not needed).
    """
    T = y.shape[0]
    n = T - 1
    beta = lamG / alpha
    gain = fws[0:3 * n].reshape((n, 3))
    o = 3 * n
    m_d = n if mode == 2 else 1
    gb = fws[o:o + 4 * m_d].reshape((m_d, 4))
    o += 4 * n
    x = fws[o:o + n]
    u = fws[o + n:o + 2 * n]
    nu = fws[o + 2 * n:o + 3 * n]
    s_ipm = fws[o + 3 * n:o + 4 * n]
    work = fws[o + 4 * n:o + 4 * n + T]
    gain_b = fws[o + 4 * n + T:o + 4 * n + 2 * T]
    ipm_ws = fws[o + 4 * n + 2 * T:]
    flip = bws[0:n]
    converged = False
    it = 0
    # ---- phase 1: block exchange from the caller's guess
    hist = np.empty(_HIST, np.int64)
    for j in range(_HIST):
        hist[j] = n + 1
    # the set with the fewest violators (once few: phase 2 keeps it away
    # from them) and those violators
    best = bws[n:2 * n]
    best_flip = bws[2 * n:3 * n]
    for k in range(n):
        best_flip[k] = False
    best_bad = n + 1
    d_root = _dominant_root(g1, g2)
    local = warm and _LOCAL_FRAC > 0
    if not warm and _COLD_LOCAL_FRAC > 0:
        local = True
    # on fast kernels the first block exchange of a warm start lands nearly
    # right by itself; on slow ones it overshoots
    slow = d_root >= 1.0 or _LOCAL_SLOW * (1.0 - d_root) < 1.0
    local_from = 1 if slow else _LOCAL_FROM
    local_frac = _LOCAL_FRAC if (slow or mode == 2) else _LOCAL_FRAC_S
    local_work = _LOCAL_WORK
    seg_single = _WARM_SEG_SINGLE
    if not warm:
        seg_single = _SEG_SINGLE
        local_work = _COLD_LOCAL_WORK
        local_frac = _COLD_LOCAL_FRAC if lamG > 0.0 else _COLD_LOCAL_FRAC0
        local_from = _COLD_LOCAL_FROM
    # rounds after a segment's first re-solve only this far left of what
    # changed (_numba_local.local_exchange): _LOCAL_WINDOW decay lengths
    window = 0
    if _LOCAL_WINDOW > 0.0 and d_root < 1.0:
        window = int(_LOCAL_WINDOW / (1.0 - d_root)) + 2
    early = (warm and _IPM_WARM > 0.0 and _EARLY_DECAY > 0.0
             and (d_root >= 1.0 or _EARLY_DECAY * (1.0 - d_root) < 1.0))
    if early:
        # a kernel decaying over more than _EARLY_DECAY samples: segments
        # span thousands of samples and a large move ends in the interior
        # point anyway (measured: no gain, worst move slower)
        local = False
    # a cold start on a kernel slow against fs hands over after its first
    # step (the exchange there creeps, ~1.5x fewer violators per step, for
    # 10-25 steps before it stalls; the interior point does not need its
    # iterate)
    cold_slow = (not warm and _COLD_DECAY > 0.0
                 and (d_root >= 1.0 or _COLD_DECAY * (1.0 - d_root) < 1.0))
    early = early or cold_slow
    # a warm start's exchanges flip one violator per cluster of its kind
    # (_numba_local.thin_flips): _THIN_PEAK times the kernel's rise in samples
    thin = 0
    if warm and _THIN_PEAK > 0.0:
        thin = max(1, int(_THIN_PEAK * peak_samples(g1, g2)))
        local_frac = max(local_frac, _LOCAL_FRAC_T)
    # (a warm drift start settles from n / _LOCAL_FRAC_D violators on, but
    # above n / late_frac only where the set's free pairs are many: below)
    late_frac = local_frac
    if thin > 0 and mode == 2 and _LOCAL_FRAC_D > 0:
        local_frac = min(local_frac, _LOCAL_FRAC_D)
    # ... the rule applied by the steps' multipliers' pass, which lists the
    # flags it drops in rej (_kkt_core_thin; not where the dense settle
    # follows, which uses gain_b)
    thin_in = thin if (thin > 0 and not early) else 0
    # a warm drift start's steps start their Riccati recursion at the chunk
    # above the highest sample changed since the last one, the rest reused
    # (_kkt_core_ck; its checkpoints in work, the set it ran for in ref; the
    # local settles then use ipm_ws, not gain, for their gains).  Sound
    # because ckr implies a warm start that is not early: no phase-1 path
    # that writes work or gain or uses ipm_ws (flat, aff, late, direct, the
    # dense settles and dense_verify, slow_warm) runs then, and in_c (the
    # same part of bws as ref) stays unused; a new phase-1 path must keep
    # it so or reset ck_ok
    n_ck = n // _RATIO_CHUNK + 2
    ckr = (_CK_REUSE and mode == 2 and thin_in > 0 and mu >= _RATIO_CHUNK_MU
           and n_ck * 16 <= T and ipm_ws.shape[0] >= 3 * n)
    ck = work[0:n_ck * 16].reshape((n_ck, 16)) if ckr else work[0:0].reshape((0, 16))
    ref = bws[3 * n:4 * n]
    lgain = ipm_ws[0:3 * n].reshape((n, 3)) if ckr else gain
    ck_ok = False
    rej = gain_b.view(np.int64)[0:n]
    n_rej = -1
    cycle_last = False
    # segments the last local settle left unsettled
    left_last = 0
    # a warm start on a kernel decaying over more than _EARLY_DECAY samples
    # settles each full step's exchange by a dense working-set solve with
    # the baseline fixed (_numba_local.dense_settle): its free set is a few
    # hundred isolated samples
    cmax = 0
    if warm and early and _DENSE_MAX > 0:
        room = ipm_ws.shape[0] - 2 * (n + 2)
        if room > 0:
            cmax = min(_DENSE_MAX, int(math.sqrt(room / 2.0)) - 8)
    # (at lambda 0 only with _DENSE_LAM0: settled on the step's multipliers
    # it stopped 1.7e-6 above the optimum there, on 10,000 frames after
    # tau_decay +50 %; on the direct gradient and checked, at the optimum)
    dense = cmax >= _DENSE_MIN and (lamG > 0.0 or _DENSE_LAM0)
    slow_warm = warm and early
    # a warm start on a kernel not slow against fs: its steps' Riccati
    # recursion with short chains (_numba_short.riccati_short; no drift)
    short = _SHORT_RIC and warm and not early and mode != 2
    # ... and its local settles' (the baseline fixed: with drift too)
    short_local = _SHORT_RIC and warm and not early
    dense_steps = 0
    verified = 0
    # (the answer passed dense_verify as it stands: its gradient, in nu, is
    # the polish's, _coarse_polish; g_ver, f_ver its max |g| and fit term)
    verified_ok = False
    g_ver = 0.0
    f_ver = 0.0
    # (whether the dense settle's power tables are formed: dense_settle
    # sets it, also when called by dense_verify or when it declines after
    # forming them)
    tables = np.zeros(1, np.bool_)
    ipm_cold = False
    in_c = bws[3 * n:4 * n]
    if dense:
        for k in range(n):
            in_c[k] = False
    # a cold start at lambda 0 with every sample free: its first step is the
    # exact fit, formed in one pass (_all_free_step) instead of a solve
    direct = not warm and lamG == 0.0 and _COLD_FREE_PASS
    # ... whose exchange steps form the multipliers by the multiply-add
    # recursion (_nu_pass_fma) where no interior point follows them
    # (_COLD_FMA0)
    fast0 = not warm and lamG == 0.0 and _COLD_FMA0 and not cold_slow
    if direct:
        # (an or-reduction, which vectorises: the loop with an early exit
        # read 1,000,000 flags one at a time, ~0.3 ms)
        direct = not _any_set(active)
    # a cold exchange without drift runs the next step's Riccati recursion
    # inside this step's multipliers' pass (_kkt_core_ahead) where a plain
    # block exchange is likely to follow: the violators a step before more
    # than _AHEAD_MARGIN times the local settle's threshold
    # (and a cold start at lambda 0, whose steps settle locally, takes the
    # same path without the recursion ahead: its forward pass branch-free)
    flat = _AHEAD and not warm and mode != 2 and not cold_slow
    ahead_ok = flat and not fast0
    ready = False
    formed = False
    a22r = 0.0
    q2r = 0.0
    p0r = 0
    a22n = 0.0
    q2n = 0.0
    p0n = 0
    bad_prev = n
    # a cold start with every sample active: its first step needs no
    # recursion (no spikes; the baseline the mean)
    first = ahead_ok and max_iters > 0
    if first:
        for k in range(n):
            if not active[k]:
                first = False
                break
    if direct and mode == 0 and max_iters > 0 and _zero_is_optimal(y, g1, g2):
        # no baseline and no spikes optimal (a trace below 0 throughout the
        # kernel's reach, e.g. an offset left in with baseline 'none'): the
        # exact fit's step and the interior point took 500 steps there on
        # slow kernels, then FISTA
        for k in range(n):
            active[k] = True
            u[k] = 0.0
        for t in range(T):
            bvec[t] = 0.0
        it = 1
        converged = True
    # ... and goes on from that step's block exchange carried affine in the
    # baseline (_affine_lam0; not with drift), the step's flags formed alone
    # (_numba_affine.exact_fit_flags)
    aff = direct and fast0 and flat and _AFFINE0 and max_iters > 2 and T > 3
    # a solve at lambda > 0 without drift ends the same way once a block
    # exchange leaves few violators (_AFFINE_LATE; cold, or a warm start's
    # block step: exact either way)
    aff_late = _AFFINE_LATE and flat and lamG > 0.0 and T > 3
    late = False
    # (a converged affine path wrote s_out and bvec itself)
    aff_out = False
    while it < max_iters and not converged:
        if late:
            late = False
            st, converged, _f = _affine_lam0(y, g1, g2, alpha, beta, mode, active, gain, x, s_ipm,
                                             u, work[0:n], flip, gain_b.view(np.int64)[0:n],
                                             bvec, rel_eps, max_iters - it, ready, a22r, q2r,
                                             p0r, s_out, b_all)
            aff_out = converged
            ready = False
            it += st
            if _TRACE:
                print("TRACE   late affine steps", st, "converged", converged)
            if converged:
                break
            continue
        if aff:
            aff = False
            hist[0], st0 = _lam0_first_flags(y, g1, g2, alpha, mode, rel_eps, active, gain, x,
                                             s_ipm, u, work[0:n], flip,
                                             gain_b.view(np.int64)[0:n], bvec, nu,
                                             (max_iters - it) // 4)
            it += 1 + st0
            st, converged, _f = _affine_lam0(y, g1, g2, alpha, beta, mode, active, gain, x, s_ipm,
                                             u, work[0:n], flip, gain_b.view(np.int64)[0:n],
                                             bvec, rel_eps, max_iters - it, _NO, 0.0, 0.0,
                                             _ZERO, s_out, b_all)
            aff_out = converged
            it += st
            if converged:
                break
            continue
        n_rej = -1
        if direct and it == 0:
            n_bad, last_bad, eps_u, eps_nu = _all_free_step(y, g1, g2, alpha, mode, x, bvec, u,
                                                            nu, flip, rel_eps)
        elif flat:
            ahead = ahead_ok and (not local or bad_prev * local_frac > _AHEAD_MARGIN * n)
            n_bad, last_bad, eps_u, eps_nu, formed, a22n, q2n, p0n = _kkt_core_ahead(
                y, g1, g2, alpha, beta, mode, active, gain, x, bvec, u, nu, flip, rel_eps, ready,
                a22r, q2r, p0r, ahead, first and it == 0, fast0)
        elif ckr:
            hi0 = n
            if ck_ok:
                hc = max(_highest_change(active, ref, n), 0)
                hi0 = n - ((n - hc - 1) // _RATIO_CHUNK) * _RATIO_CHUNK
            n_bad, last_bad, eps_u, eps_nu, n_rej = _kkt_core_ck(
                y, g1, g2, alpha, beta, mode, mu, active, gain, gb, x, bvec, u, nu, flip,
                rel_eps, thin_in, rej, ck, hi0)
            for k in range(n):
                ref[k] = active[k]
            ck_ok = True
        else:
            n_bad, last_bad, eps_u, eps_nu, n_rej = _kkt_core_thin(
                y, g1, g2, alpha, beta, mode, mu, active, gain, gb, x, bvec, u, nu, flip, rel_eps,
                warm or fast0, short, thin_in, rej)
        # (the gains formed ahead hold only if this step's flags are flipped
        # as they stand: the plain block exchange below)
        ready = False
        bad_prev = n_bad
        hist[it % _HIST] = n_bad
        it += 1
        if _TRACE:
            print("TRACE step", it, "n_bad", n_bad)
        if n_bad == 0:
            if dense and verified < _DENSE_VERIFY and dense_fits(active, cmax, _DENSE_WORK * n):
                # the dense path's answer, checked on the directly formed
                # gradient (_numba_local.dense_verify): a changed set is
                # solved again
                verified += 1
                changed_v, g_ver, f_ver = dense_verify(
                    y, bvec, g1, g2, alpha, lamG, active, u, nu, flip, thin, ipm_ws, in_c, work,
                    gain_b, cmax, _DENSE_WORK * n, _DENSE_TOL, _DENSE_GAIN, tables)
                if changed_v > 0:
                    continue
                verified_ok = True
            converged = True
            break
        if n_bad < best_bad and n_bad <= _MERGE_MAX:
            best_bad = n_bad
            for k in range(n):
                best[k] = active[k]
                best_flip[k] = flip[k]
        # (a few violators that the last step left as well: one at a time,
        # Murty's rule, below)
        few = n_bad <= 4 and it >= 2 and n_bad >= hist[(it - 2) % _HIST]
        if slow_warm and not few:
            rounds = -1
            if it == 1 and n_bad * at_once > n:
                # a move so large that most of the trace violates (tau_decay
                # -50 %): the interior point from its cold start at once
                ipm_cold = True
                best_bad = n + 1
                break
            if dense and dense_steps < _DENSE_STEPS and dense_fits(active, cmax, _DENSE_WORK * n):
                eps_d = eps_nu
                # (the settle's gradient by four chains, _numba_local.settle_gradient:
                # a guess; the answer is checked by dense_verify's one chain;
                # a large move's first settle on the step's multipliers)
                if _DENSE_DIRECT and (dense_steps > 0 or n_bad * _DENSE_NU_FIRST <= n
                                      or lamG == 0.0):
                    g_max = settle_gradient(y, bvec, g1, g2, alpha, lamG, active, u, nu, work,
                                            gain_b, ipm_ws[0:n + 2], ipm_ws[n + 2:2 * n + 4],
                                            tables)
                    if g_max < 0.0:
                        g_max, _f = direct_gradient(y, bvec, g1, g2, alpha, lamG, active, u, nu,
                                                    work, gain_b, _NO)
                    eps_d = _DENSE_TOL * g_max / alpha
                rounds, changed = dense_settle(g1, g2, alpha, active, flip, u, nu, eps_d, thin,
                                               ipm_ws, in_c, work, gain_b, cmax, _DENSE_ROUNDS,
                                               _DENSE_WORK * n, -math.inf, tables)
                if rounds > 0 and changed == 0:
                    # the fixed-baseline problem has no violator: those of
                    # the full step answer the baseline, one at a time
                    # (Murty's rule)
                    active[last_bad] = not active[last_bad]
                    continue
            if rounds > 0:
                dense_steps += 1
                continue
            if dense_steps > 0 or n_bad * _COLD_RESTART > n:
                # a large move (many violators, too many for the dense
                # solve), or one that has not settled in _DENSE_STEPS full
                # steps or within the dense solve's budget: the interior
                # point from its cold start (the warm one took more steps),
                # as a cold solve goes on from its first step
                ipm_cold = True
                best_bad = n + 1
                break
            # a small move with many free samples (lambda 0): the exchange
            # and the warm interior point as before
            slow_warm = False
        use_local = local and it >= local_from and n_bad * local_frac <= n
        if use_local and n_bad * late_frac > n:
            # an early settle (drift): only where the segments are short
            use_local = _drift_early(active, n_bad, n)
        # no fewer violators than a step ago: with the localized exchange a
        # segment is stuck in a cycle of block exchanges (the same start
        # repeats it), so Murty's rule only there
        cycle = use_local and it >= 3 and n_bad >= hist[(it - 2) % _HIST]
        if _exchange_stalls(hist, it):
            if not use_local or cycle_last or it >= 30:
                if _TRACE:
                    print("TRACE   stall: to the interior point")
                break
            # a stall of the localized exchange: Murty's rule in its
            # segments first (the test is tuned on plain block exchanges)
            cycle = True
        if cold_slow and n_bad > _EARLY_MIN and it >= _COLD_STEPS:
            # a cold start on a slow kernel: its exchange steps do not help
            # the interior point, which starts afresh
            break
        if (early and n_bad > _EARLY_MIN and it >= 3
                and 2 * n_bad > hist[(it - 3) % _HIST]):
            # a warm start on a slow kernel whose violators stopped halving
            # every two steps: the (warm) interior point is cheaper (fewer
            # violators: the exchange's tail, which often settles)
            break
        if few and use_local and left_last > 0 and not cycle_last:
            # the last local settle left a segment unsettled (a cycle of its
            # block rounds): Murty's rule in that segment first, which costs
            # a fraction of the full steps of Murty's rule on the trace
            # (calab's gcamp6s at 30 Hz, tau_rise +20 %: 3 such steps)
            few = False
            cycle = True
        if _TRACE and few:
            print("TRACE   few: Murty")
        if few:
            # a few that the block exchange keeps misplacing: one at a time
            # (Murty's rule)
            active[last_bad] = not active[last_bad]
        elif use_local:
            if thin > 0 and not cycle:
                _apply_thin(active, flip, u, nu, thin, rej, n_rej)
            # the block exchange, settled segment by segment with the
            # baseline fixed (_numba_local): the next full step then finds
            # few violators or none.  At most _LOCAL_WORK n samples
            # re-solved, not counted as a step
            if flat:
                # (a flat step leaves its baseline in bvec[0] only)
                _fill_b(bvec)
            if cycle:
                lw, ll = local_exchange(y, bvec, g1, g2, alpha, beta, active, flip, x, u, nu,
                                        lgain, eps_u, eps_nu, n, local_work * n, _ZERO,
                                        _LOCAL_CYCLE, window, thin, short_local)
            else:
                lw, ll = local_exchange(y, bvec, g1, g2, alpha, beta, active, flip, x, u, nu,
                                        lgain, eps_u, eps_nu, n, local_work * n, _SEG_ROUNDS,
                                        seg_single, window, thin, short_local)
            left_last = ll
            if _TRACE:
                print("TRACE   local cycle", cycle, "work", lw, "left", ll)
            cycle_last = cycle
        else:
            if thin > 0:
                _apply_thin(active, flip, u, nu, thin, rej, n_rej)
            for k in range(n):
                if flip[k]:
                    active[k] = not active[k]
            if formed and thin == 0:
                ready = True
                a22r = a22n
                q2r = q2n
                p0r = p0n
            if aff_late and n_bad * _AFFINE_LATE <= n and n_bad <= _free_pairs(active):
                # few enough violators: the next full step carried affine in
                # the baseline and the exchange settled from there
                # (_affine_lam0), the gains formed ahead reused
                aff_late = False
                late = True
    if flat and not aff_out and (b_all or not converged):
        _fill_b(bvec)
    if bail and ipm_cold:
        # (``bail``: a warm start that would go to the cold interior point
        # returns at once, not converged, before its budget; pdas_rows
        # then starts from a binned solve.  It must not write s_out:
        # _coarse_row keeps the warm guess there for _WARM_BAIL_OLD)
        _verified_mark(s_ipm, _NO, 0.0, 0.0)
        return it, False
    n_ipm = 0
    if not converged and it < max_iters:
        # ---- phase 2: interior point + crossover
        it, converged, best_bad, n_ipm = _ipm_crossover(
            y, g1, g2, alpha, beta, mode, mu, active, best, best_flip, best_bad, it, max_iters,
            gain, gb, x, bvec, u, nu, flip, rel_eps, s_ipm, ipm_ws, bws[3 * n:4 * n],
            warm and not ipm_cold)
    if not converged and it < max_iters:
        # ---- phase 3: the safe rule from the best guess seen
        if best_bad <= n:
            for k in range(n):
                active[k] = best[k]
        best_bad = n + 1
        chances = 3
        while it < max_iters:
            n_bad, last_bad = _kkt_step(y, g1, g2, alpha, beta, mode, mu, active, gain, gb, x,
                                        bvec, u, nu, flip, rel_eps)
            it += 1
            if n_bad == 0:
                converged = True
                break
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
    if not aff_out:
        for k in range(n):
            s_out[k] = u[k] if u[k] > 0.0 else 0.0
    s_out[T - 1] = 0.0
    if not converged:
        # the budget ran out: report the better of the last active-set
        # iterate (clipped) and the interior point, with the baseline that
        # suits its spikes
        f_as = _objective_best_b(y, s_out, g1, g2, alpha, lamG, mode, mu, work, gain_b, bvec)
        if n_ipm > 0:
            b_as = bvec.copy()
            for k in range(n):
                u[k] = s_out[k]
                s_out[k] = s_ipm[k]
            f_ip = _objective_best_b(y, s_out, g1, g2, alpha, lamG, mode, mu, work, gain_b, bvec)
            if not f_ip < f_as:
                for k in range(n):
                    s_out[k] = u[k]
                for t in range(T):
                    bvec[t] = b_as[t]
    _verified_mark(s_ipm, converged and verified_ok, g_ver, f_ver)
    return it, converged


@njit(cache=_CACHE, nogil=True)
def _verified_mark(s_ipm, ok, g_max, f_fit):
    """pdas_one's note for :func:`_coarse_polish` in its interior point's
    iterate (not read once it has converged): s_ipm[0] 1 where its answer
    passed dense_verify as it stands (nu then holds the gradient / alpha
    formed directly at it; s_ipm[1:3] that gradient's max |g| and the fit
    term), else 0."""
    if s_ipm.shape[0] < 3:
        return
    s_ipm[0] = 1.0 if ok else 0.0
    s_ipm[1] = g_max
    s_ipm[2] = f_fit


# a cold start at lambda 0 forms its first step (every sample free) in one
# pass (:func:`_all_free_step`)
_COLD_FREE_PASS = True
# ... and frees again only the spikes below this many rms of its spikes
# (0: every negative one).  Steps at lambda 0, 3 traces each of 10,000 and
# 54,000 frames of jGCaMP8f, GCaMP6f, GCaMP6s 30 Hz, low SNR and dense:
# 216 at 0, 193 at -1 (drift 218 -> 194); on lambda 0 GCaMP6f, 4 traces
# each: 55 at 0, 52 at -0.3, 46 at -1, 50 at -1.5, 59 at -2.5; positive
# thresholds cost steps (57-79)
_COLD_FREE_THR = -1.0
# a cold start at lambda 0 on a kernel not slow against fs (_COLD_DECAY)
# forms its steps' multipliers by the multiply-add recursion, as a warm
# start does (_nu_pass_fma)
_COLD_FMA0 = True


@njit(cache=_CACHE, nogil=True)
def _all_free_step(y, g1, g2, alpha, mode, x, bvec, u, nu, flip, rel_eps):
    """:func:`_kkt_core` at lambda 0 with no sample active: the subspace
    optimum then fits every sample exactly (residual 0: x = y[1:] - b with
    b = y[0] for modes 1 and 2, a constant drift costing nothing, b = 0 for
    mode 0), every multiplier is 0, and the violators are the negative
    spikes u = M x / alpha.  Flags only those below ``_COLD_FREE_THR``
    times the rms of u (a block exchange from the exact fit that fixes
    every negative spike overshoots: most small ones are noise that the
    next step's fit moves anyway).  Returns (n_bad, last_bad, eps_u,
    eps_nu)."""
    T = y.shape[0]
    n = T - 1
    b = y[0] if mode != 0 else 0.0
    for t in range(T):
        bvec[t] = b
    xm1 = 0.0
    xm2 = 0.0
    u_max = 0.0
    for k in range(n):
        xk = y[k + 1] - b
        uk = (xk - g1 * xm1 - g2 * xm2) / alpha
        x[k] = xk
        u[k] = uk
        nu[k] = 0.0
        u_max = max(u_max, abs(uk))
        xm2 = xm1
        xm1 = xk
    eps_u = rel_eps * u_max
    thr = -eps_u
    if _COLD_FREE_THR != 0.0:
        ss = 0.0
        for k in range(n):
            ss += u[k] * u[k]
        thr = _COLD_FREE_THR * math.sqrt(ss / n)
    n_bad = 0
    last_bad = -1
    for k in range(n):
        bad = u[k] < thr
        flip[k] = bad
        if bad:
            n_bad += 1
            last_bad = k
    if n_bad == 0 and thr < -eps_u:
        # no spike below the threshold, but the fit is optimal only if none
        # is negative (low noise: the noise's negative spikes all lie within
        # an rms of the spikes): every negative one then (seen: converged
        # at this step, then the KKT check failed and FISTA took over)
        for k in range(n):
            bad = u[k] < -eps_u
            flip[k] = bad
            if bad:
                n_bad += 1
                last_bad = k
    return n_bad, last_bad, eps_u, 0.0


# a cold start at lambda 0 without drift goes on from the exact fit's block
# exchange by steps carried affine in the baseline (_affine_lam0,
# _numba_affine): one full step, then local settles each followed by the
# exact root of the baseline and one pass that reads the violators
_AFFINE0 = True
# ... once at most n / _AFFINE_FRAC samples violate after the first full
# step, n / _AFFINE_BAIL after a later one (else the full step's block
# exchange, carried affine as well).  A settle costs ~135 ns per
# violator (segments of ~4 samples, one round each), a full step ~10 ns per
# sample, alike at 54,000 and 1,000,000 frames: at 8 the first full step's
# 8 % violators on lam0-30Hz at 1,000,000 frames (the baseline sinks as T
# grows: 1.3 % at 54,000) went to settles of 400,000 samples (~21 ms); at 16
# a second full step leaves 3 % (the same Newton step on b: -30.03 against
# the settle's -30.08) and the settles re-solve 130,000 (pdas_rows 7-13 %
# less CPU there; 54,000 frames unchanged; measured from the exact fit's
# flags, before _lam0_first_flags: from its set by count the first full
# step leaves 0.08 % there)
_AFFINE_FRAC = 16
# ... and the settles hand over to the plain path where a root of b leaves
# more than n / _AFFINE_BAIL violators (where the affine steps cannot go
# on, e.g. no baseline under a trace below 0, a second full step by
# _AFFINE_FRAC would be one step more before the plain path)
_AFFINE_BAIL = 8
# ... re-solving at most _AFFINE_WORK n samples per settle
_AFFINE_WORK = 4


# a solve at lambda > 0 without drift (mostly a cold start; a warm start's
# block step too) goes to _affine_lam0 once a block exchange leaves at most
# n / _AFFINE_LATE violators (0: never): its full step then carries the
# slopes in b and the settles that follow need no further full step (the
# plain path: a local settle with b fixed, then a full step whose new b
# leaves violators, 3 such steps on dense-30Hz at 1,000,000 frames)
_AFFINE_LATE = 16


@njit(cache=_CACHE, nogil=True)
def _drift_early(active, n_bad, n):
    """Whether a warm drift start settles early (pdas_one): at least
    _EARLY_PAIRS free pairs a violator, or one from n / _LOCAL_FRAC_D2 on."""
    fpc = _free_pairs(active)
    return fpc >= _EARLY_PAIRS * n_bad or (n_bad * _LOCAL_FRAC_D2 <= n and fpc >= n_bad)


@njit(cache=_CACHE, nogil=True)
def _free_pairs(active):
    """The count of free pairs (k, k + 1 both free) in ``active``.  The late
    affine path (_AFFINE_LATE) is taken only where the violators are no more
    than that: the settles' segments end at free pairs, and where they are
    fewer than the violators the segments are long, hold several violators
    and their block rounds cycle (lam1-30Hz, 2,075 violators against 686
    pairs at 54,000 frames: the settle ran out of budget, its full step was
    lost, 100 -> 120-135 ms at 1,000,000 frames; dense-30Hz 2,244 against
    5,685)."""
    c = 0
    for k in range(active.shape[0] - 1):
        c += (not active[k]) & (not active[k + 1])
    return c


@njit(cache=_CACHE, nogil=True)
def _affine_lam0(y, g1, g2, alpha, beta, mode, active, gain, x, z, w, w1, flip, idx, bvec,
                 rel_eps, max_steps, ready, a22r, q2r, p0r, s_out, b_all):
    """A cold start's exchange carried affine in the scalar baseline
    (:mod:`._numba_affine`; modes 0 and 1).  Full steps (the Riccati
    recursion of :func:`_riccati_pk`, the forward pass
    :func:`_affine_fwd_runs` (:func:`._numba_affine.affine_fwd` on a caller's
    gains) and the multipliers' pass, with their slopes in b; c3 packed in
    idx's memory until the settles) with block exchanges while more than
    n / ``_AFFINE_FRAC`` samples violate; then, while any does: the
    violators settled segment by segment at the current b
    (:func:`._numba_affine.affine_settle`), b set to the joint optimum of
    the settled set (the root of the residuals' sum, affine in b) and the
    violators there read from the stored values and slopes
    (:func:`._numba_affine.affine_flags`).  Every full step and every such
    root counts as a step.  ``w``, ``w1``: the spikes (multipliers on the
    active set) and their slopes; ``idx``: int64 scratch of n (the
    violators' list; on a long trace also the next flags' pass's
    candidates at its top and the settled segments between:
    _affine_flags_near, _affine_flags_cand).  ``ready``:
    the caller's last step formed the gains of ``active`` (a22r, q2r, p0r
    its :func:`_riccati_flat` returns), else _NO with 0.0, 0.0, _ZERO.
    ``s_out``: where a converged answer is written (clipped, s_out[n] left
    to the caller, w not updated), or an empty array to leave it in w.
    ``b_all`` False: a converged answer's baseline in bvec[0] alone (else
    at every sample).  Every call passes all of them (one compiled kind).  Returns
    (steps, converged, full steps among them): converged with the spikes in
    ``w`` (0 on the active set; or in s_out) and the baseline in bvec; else
    ``active`` is a set for the plain path to go on from (x is not its
    solution; w holds the spikes of the last iterate and bvec its baseline,
    an answer should the budget end there)."""
    T = y.shape[0]
    n = T - 1
    steps = 0
    b = 0.0
    r0 = 0.0
    h = 1.0
    eps_u = 0.0
    eps_nu = 0.0
    n_bad = n
    full = 0
    while steps < max_steps:
        if ready:
            # (the gains of ``active``, formed by the caller's last step)
            ready = False
            b = (y[0] - q2r) / a22r if mode != 0 else 0.0
            u_max, r0, h = affine_fwd(y, g1, g2, alpha, active, gain, p0r, b, x, z, w, w1)
        else:
            # (c3 packed apart in idx's memory, scratch until the settles)
            g3 = idx.view(np.float64)
            a22, q2, p0, q0 = _riccati_pk(y, g1, g2, beta, active, gain, g3)
            b = (y[0] - q2) / a22 if mode != 0 else 0.0
            u_max, r0, h = _affine_fwd_runs(y, g1, g2, alpha, active, gain, g3, p0, q0, b, x, z,
                                             w, w1)
        eps_u = rel_eps * u_max
        n_bad, last_bad, nu_max, noise, near = affine_nu(y, g1, g2, beta, active, b, x, z, w, w1,
                                                         flip, eps_u)
        n_bad, last_bad, eps_nu, _kept = _kkt_flags(active, w, flip, n_bad, last_bad, nu_max,
                                                    noise, near, rel_eps)
        steps += 1
        full += 1
        if _TRACE:
            print("TRACE affine full step", steps, "n_bad", n_bad, "b", b)
        if n_bad == 0:
            break
        if n_bad * (_AFFINE_FRAC if full == 1 else _AFFINE_BAIL) <= n:
            break
        _flip_set(active, flip)
    db = 0.0
    n_idx = 0
    if n_bad > 0:
        n_idx = _list_set(flip, idx)
    # (the answer written into s_out by the last flags' pass)
    written = False
    # violators flagged per unit move of b by the last flags' pass (< 0: none
    # yet), which foretells whether the next is the last (_aff_out_likely)
    rate = -1.0
    # the next flags' pass's candidates listed by the last (_affine_flags_near:
    # in idx[n - n_cand:], at b_ref + db_cand, for moves within the reach;
    # < 0: none)
    n_cand = -1
    db_cand = 0.0
    reach = 0.0
    for _upd in range(_AFF_MAX_UPDATES):
        if n_bad == 0:
            if s_out.shape[0] == 0:
                for k in range(n):
                    w[k] = 0.0 if active[k] else w[k] + db * w1[k]
            elif written:
                pass
            else:
                # (pdas_one's answer written at once, s_out[n] left to it; w
                # not updated)
                for k in range(n):
                    v = 0.0 if active[k] else w[k] + db * w1[k]
                    s_out[k] = v if v > 0.0 else 0.0
            if b_all:
                for t in range(T):
                    bvec[t] = b + db
            else:
                bvec[0] = b + db
            return steps, True, full
        if steps >= max_steps or n_bad * _AFFINE_BAIL > n:
            break
        # (the settled segments recorded where a candidates' list is kept:
        # idx[n_idx:n - n_cand], between the violators and the list)
        segs = idx[0:0]
        if n_cand >= 0 and 3 * n_idx + n_cand <= n:
            segs = idx[n_idx:n - n_cand]
        work, left, d_r, d_h, n_seg = affine_settle(y, g1, g2, alpha, beta, active, flip, idx,
                                                    n_idx, gain, b, db, x, z, w, w1, eps_u,
                                                    eps_nu, _AFFINE_WORK * n, segs)
        if left != 0:
            # a segment left unsettled (or the budget ran out): its values
            # are not its set's
            break
        r0 += d_r
        h += d_h
        db_old = db
        if mode != 0:
            db = r0 / h
        move = abs(db - db_old)
        if (s_out.shape[0] > 0 and n_bad * _AFF_OUT_FRAC <= n and n >= _AFF_OUT_MIN
                and _aff_out_likely(rate, move, g1, g2, alpha, eps_u)):
            # few violators settled and b barely moved: likely the last
            # flags' pass, which then writes the answer too (a pass over w,
            # w1 fewer; overwritten if it is not the last)
            n_idx = _affine_flags_out(active, w, w1, db, eps_u, eps_nu, flip, idx, s_out)
            written = n_idx == 0
            n_cand = -1
        elif (n_cand >= 0 and 2 * n_seg <= segs.shape[0]
              and abs(db - db_cand) <= _AFF_CAND_USE * reach):
            # b moved within the reach of the last pass's candidates: only
            # they and the settled segments can be flagged
            n_idx = _affine_flags_cand(active, w, w1, db, eps_u, eps_nu, flip, idx, n_cand,
                                       segs, n_seg)
            n_cand = -1
        elif n >= _AFF_CAND_MIN and _AFF_CAND_USE > 0.0:
            # the flags with the candidates of the next pass listed beside
            # them (within _AFF_CAND_REACH times this move)
            reach = _AFF_CAND_REACH * move
            db_cand = db
            n_idx, n_cand = _affine_flags_near(active, w, w1, db, eps_u, eps_nu, flip, idx,
                                               reach)
        else:
            n_idx = affine_flags(active, w, w1, db, eps_u, eps_nu, flip, idx)
        if move > 0.0:
            rate = n_idx / move
        n_bad = n_idx
        steps += 1
        if _TRACE:
            print("TRACE affine step", steps, "work", work, "n_bad", n_bad, "b", b + db)
    # (an iterate to report should the budget end here: the spikes at b)
    for k in range(n):
        w[k] = 0.0 if active[k] else w[k] + db * w1[k]
    for t in range(T):
        bvec[t] = b + db
    return steps, False, full


@njit(cache=_CACHE, nogil=True)
def _any_set(flags):
    """Whether any of the bools ``flags`` is True (an or-reduction of their
    bytes eight at a time, which vectorises; a loop that stops at the first
    reads them one at a time)."""
    n = flags.shape[0]
    m = n // 8
    words = flags[0:8 * m].view(np.uint64)
    acc = np.uint64(0)
    for i in range(m):
        acc |= words[i]
    for k in range(8 * m, n):
        if flags[k]:
            return True
    return acc != 0


@njit(cache=_CACHE, nogil=True)
def _flip_set(active, flip):
    """active[k] = not active[k] where flip[k] (as an exclusive or of the
    bools, which vectorises; the branch on flip did not)."""
    for k in range(active.shape[0]):
        active[k] = active[k] != flip[k]


@njit(cache=_CACHE, nogil=True)
def _list_set(flip, idx):
    """The samples flagged in ``flip`` listed ascending in ``idx`` (the
    flags read eight at a time, as :func:`._numba_affine.affine_flags`
    lists them).  Returns their count."""
    n = flip.shape[0]
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
    return c


# _affine_lam0 reads the flags after a settle of at most n / _AFF_OUT_FRAC
# violators by _affine_flags_out, which writes the answer beside them (the
# last settle of lam0-30Hz at 1,000,000 frames: 76 violators, 0 after it),
# where n = T - 1 is at least _AFF_OUT_MIN (shorter ones' passes stay in
# the caches: little to save, a wasted write when the guess is wrong)
_AFF_OUT_FRAC = 4096
_AFF_OUT_MIN = 131_072


@njit(cache=_CACHE, nogil=True)
def _aff_out_likely(rate, move, g1, g2, alpha, eps_u):
    """Whether :func:`_affine_lam0`'s next flags' pass, after b moved by
    ``move``, likely finds no violator (then :func:`_affine_flags_out` writes
    the answer in it): the last pass's violators per unit move (``rate``)
    times this move below 1/2; before any (the first settle after a full
    step, ``rate`` < 0), a move that shifts a free run's spikes (slope (g1 +
    g2 - 1) / alpha) by at most their threshold ``eps_u``.  (lam0-30Hz at
    1,000,000 frames: the first settle moves b by ~0.6 and ~2,000 samples
    violate after it even where it settled ~200, the second by ~0.02 and
    ~60, the third by ~3e-5 and none; with a count of violators settled
    alone as the test, the first settle's pass wrote the answer in vain.)
    A wrong guess costs a pass: the answer written separately, or in vain."""
    if rate >= 0.0:
        return rate * move < 0.5
    return move * abs(1.0 - g1 - g2) <= eps_u * alpha


@njit(cache=_CACHE, nogil=True)
def _affine_flags_out(active, w, w1, db, eps_u, eps_nu, flip, idx, s_out):
    """:func:`._numba_affine.affine_flags` (the same flags: its multiply-add
    formed by :func:`_fma`) with :func:`_affine_lam0`'s answer at b_ref + db
    written into s_out[0:n] in the same pass (the same numbers as its own
    loop: this function is compiled without fastmath).  Returns the count
    flagged.  The flags equal affine_flags' where the compiler fuses its
    multiply-add, as it does on an FMA target (numba's default, the host
    CPU).  On a target without FMA (NUMBA_CPU_NAME=generic) affine_flags is
    not fused and a sample within an ulp of its threshold may be flagged
    differently: one settle more, or a spike of about -1e-11 u_max clipped
    to 0, both inside the KKT tolerance (review, twenty-seventh round; a
    fastmath version with the answer's product behind _fence kept the bits
    on every target but ran 15 times slower: the fence stops the loop's
    vectorisation).  tests/test_affine_out.py assumes an FMA target."""
    n = active.shape[0]
    n_bad = 0
    for k in range(n):
        a = active[k]
        thr = eps_nu if a else eps_u
        bad = _fma(db, w1[k], w[k]) < -thr
        flip[k] = bad
        n_bad += bad
        v = 0.0 if a else w[k] + db * w1[k]
        s_out[k] = v if v > 0.0 else 0.0
    if n_bad > 0:
        c = 0
        for k in range(n):
            if flip[k]:
                idx[c] = k
                c += 1
    return n_bad


# a cold start at lambda 0 with a baseline on a long trace (at least
# _PREFIX_T frames) flags its first set from the exact fit's spikes by count
# (_lam0_first_flags): the optimal baseline sinks as T grows and the
# fraction of samples at s = 0 falls with it (lam0-30Hz, one trace: 26.9 %
# at 13,500 frames, 14.1 % at 54,000, 5.7 / 3.5 / 2.1 % at 250,000 /
# 500,000 / 1,000,000), while the exact fit's rms-relative threshold
# (_COLD_FREE_THR) flags ~15 % at any T (at 1,000,000 frames the first full
# step then left 8 % violating, the second 3 %).  Flagged by the optimum's
# count (an oracle), the same order of d left 0.09 %.  The fraction is read
# from the solves of two prefixes, T / (2 _PREFIX_DIV) and T / _PREFIX_DIV
# frames (each the cold lambda-0 path: the exact fit's flags,
# _affine_lam0), and extrapolated linearly in log T on the normal quantile
# scale (its probit: on 5 random long traces, 5 prefixes each, the probit
# fell 0.18-0.23 per doubling, nearly constant; a geometric or linear
# extrapolation missed where the fraction is high), the slope clipped to
# [-_PREFIX_SLOPE_MAX, 0] per doubling.  Used only where that fraction is
# below _PREFIX_GATE times the exact fit's (on the longer prefix): nearer,
# the exact fit's set did as well (dense spiking at 250,000 frames, 5 %
# against 8 %: one full step either way) or better (a high fraction, 20 %
# against 15 %: the d order matches the optimum's set less well there); the
# prefixes' cost (~1/10 of the solve) then stays.  On kernels decaying over
# at most _PREFIX_DECAY samples (lambda 0, 250,000 and 1,000,000 frames:
# jGCaMP8f at 100 Hz, GCaMP6f at 30 Hz, low SNR, ~15 samples, one full
# step where the exact fit's flags took two, settles 2-10x smaller; GCaMP6s
# at 30 Hz, 45 samples: the optimal fraction 37 % at 250,000 frames, two
# full steps either way and the prefixes' cost on top)
_PREFIX_DECAY = 30.0
_PREFIX_T = 200_000
_PREFIX_DIV = 32
_PREFIX_SLOPE_MAX = 1.0
_PREFIX_GATE = 0.5
# ... the threshold the quantile of every _PREFIX_STRIDE-th spike
# (twenty-ninth round: _PREFIX_DIV 16 -> 32 and _PREFIX_STRIDE 16 -> 64; 36
# cold lambda-0 rows, lam0-30Hz, jGCaMP8f 100 Hz, low SNR and dense at
# 250,000, 1M and 4M frames, seeds 0-2: steps 562 -> 551, settle work
# (prefixes' and the trace's) 1,167k -> 964k samples, the prefixes' full
# steps on half as many frames; the trace's own first set leaves more
# violators at 4M (its settles 406k -> 479k); 10 x 1M lam0-30Hz in
# process 0.95-0.96; the stride alone 0.975-0.98, the same steps there)
_PREFIX_STRIDE = 64


# _affine_lam0's flags' pass after a settle (not the answer's) lists, on
# traces of at least _AFF_CAND_MIN samples, the candidates of the next: the
# samples whose value lies within _AFF_CAND_REACH times the last move of b
# (the reach) of their threshold (_affine_flags_near); the next pass, where b
# moved by at most _AFF_CAND_USE times that reach, reads only them and the
# segments the settle between re-solved (_affine_flags_cand; 0: never), else
# the trace's.  At lambda 0 on 1,000,000 frames the settle after the first
# flags' pass moves b by 1.7-5 % of the move before it (lam0-30Hz 0.70 then
# 0.028; jGCaMP8f 100 Hz, low SNR, dense 0.017-0.041 of it): the second
# pass's flags from ~2,500 candidates and ~2,000 segments instead of a pass
# over the trace's w, w1 and flags (~0.3 ms), the first's ~0.1 ms longer for
# its list.  Four lam0-30Hz 1M traces' affine solves, in process: 0.97-0.99
# of their time (0.25 against 1.0 as the reach's factor: 0.974 against
# 0.983 in sum; thirty-first round).  The same flags: the same steps and bits
_AFF_CAND_MIN = 131_072
_AFF_CAND_USE = 0.49
_AFF_CAND_REACH = 0.25


@njit(cache=_CACHE, nogil=True)
def _affine_flags_near(active, w, w1, db, eps_u, eps_nu, flip, idx, reach):
    """:func:`._numba_affine.affine_flags` (the same flags and list; its
    multiply-add formed by :func:`_fma`, as :func:`_affine_flags_out`) with
    the candidates of a later pass listed in idx[n - n_cand:], ascending:
    every sample whose value at b_ref + db lies below its threshold plus
    ``reach`` times its slope's size (and 1e-12 of its terms' sizes, above
    the rounding), or where that bound is NaN.  At any b_ref + db2 with
    |db2 - db| <= reach / 2 a sample not listed is not flagged while its
    value, slope and kind stay (its value moves by at most |db2 - db| |w1|
    <= reach |w1| / 2; the flags as affine_flags' on an FMA target, as
    :func:`_affine_flags_out`'s).  Returns (count flagged, n_cand; -1 when
    the candidates are more than n / 4 and not kept)."""
    n = active.shape[0]
    n_near = 0
    for k in range(n):
        a = active[k]
        thr = eps_nu if a else eps_u
        wk = w[k]
        w1k = w1[k]
        v = _fma(db, w1k, wk)
        lim = (reach * abs(w1k) + 1e-12 * ((abs(wk) + abs(db * w1k)) + thr)) - thr
        # (listed unless v >= lim holds: a NaN, as of an infinite reach
        # times a zero slope, lists the sample)
        near = not v >= lim
        flip[k] = near
        n_near += near
    # the candidates listed (flags read eight at a time), then each one's
    # flag formed; the flagged compacted into idx[0:n_bad] (c <= i) and the
    # candidates copied to the top where they fit
    n_near = _list_set(flip, idx)
    keep = 4 * n_near <= n
    top = n - n_near
    c = 0
    for i in range(n_near):
        k = idx[i]
        thr = eps_nu if active[k] else eps_u
        bad = _fma(db, w1[k], w[k]) < -thr
        flip[k] = bad
        if keep:
            idx[top + i] = k
        if bad:
            idx[c] = k
            c += 1
    return c, (n_near if keep else -1)


@njit(cache=_CACHE, nogil=True)
def _affine_flags_cand(active, w, w1, db, eps_u, eps_nu, flip, idx, n_cand, segs, n_seg):
    """The flags at b_ref + db (:func:`._numba_affine.affine_flags`' flags
    and list, its multiply-add formed by :func:`_fma`) where only the
    candidates listed by :func:`_affine_flags_near` (idx[n - n_cand:]) and
    the samples of the segments settled since (``segs``: n_seg pairs [a, e))
    can be flagged: every other flag was False after that pass and stays so.
    Each of those samples' flag formed (a segment's overlap twice: the same
    flag), then the flagged listed from all flags read eight at a time.
    Returns their count."""
    n = active.shape[0]
    for i in range(n_seg):
        for k in range(segs[2 * i], segs[2 * i + 1]):
            thr = eps_nu if active[k] else eps_u
            flip[k] = _fma(db, w1[k], w[k]) < -thr
    for i in range(n - n_cand, n):
        k = idx[i]
        thr = eps_nu if active[k] else eps_u
        flip[k] = _fma(db, w1[k], w[k]) < -thr
    return _list_set(flip, idx)


@njit(cache=_CACHE, nogil=True)
def _probit(p):
    """The standard normal quantile of ``p`` in (0, 1) (bisection on erfc
    to ~1e-12: a guess's fraction)."""
    lo = -40.0
    hi = 40.0
    for _i in range(80):
        mid = 0.5 * (lo + hi)
        if 0.5 * math.erfc(-mid / math.sqrt(2.0)) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@njit(cache=_CACHE, nogil=True)
def _lam0_first_flags(y, g1, g2, alpha, mode, rel_eps, active, gain, x, z, w, w1, flip, idx,
                      bvec, scratch, max_steps):
    """The first set of a cold start at lambda 0 (every sample free, then
    the exact fit's violators active): :func:`._numba_affine.exact_fit_flags`,
    or on a trace of at least ``_PREFIX_T`` frames with a baseline
    (``mode`` 1) and a kernel decaying over at most ``_PREFIX_DECAY``
    samples the exact fit's spikes below the quantile of the fraction
    of active samples extrapolated from two prefixes' optima, where that is
    below ``_PREFIX_GATE`` times the exact fit's
    (:func:`._numba_affine.count_fit_flags`; where a prefix does not settle
    within its budget, ``max_steps`` for both, the exact fit's flags).  The
    workspaces are :func:`_affine_lam0`'s (the prefixes' solves use their
    heads), ``scratch`` n floats.  Returns (flagged, the prefixes' steps)."""
    T = y.shape[0]
    n = T - 1
    d_root = _dominant_root(g1, g2)
    if (mode != 1 or T < _PREFIX_T or _PREFIX_DIV < 2 or not d_root < 1.0
            or _PREFIX_DECAY * (1.0 - d_root) < 1.0):
        return exact_fit_flags(y, g1, g2, alpha, mode, rel_eps, _COLD_FREE_THR, active), 0
    steps = 0
    f_short = 0.0
    f_long = 0.0
    f_fit = 0.0
    t_long = 1
    for j in range(2):
        tp = T // (_PREFIX_DIV * (2 - j))
        npr = tp - 1
        act = active[0:npr]
        k_fit = exact_fit_flags(y[0:tp], g1, g2, alpha, mode, rel_eps, _COLD_FREE_THR, act)
        st, ok, _f = _affine_lam0(y[0:tp], g1, g2, alpha, 0.0, mode, act, gain[0:npr],
                                  x[0:npr], z[0:npr], w[0:npr], w1[0:npr], flip[0:npr],
                                  idx[0:npr], bvec[0:tp], rel_eps, max_steps - steps, _NO, 0.0,
                                  0.0, _ZERO, w[0:0], _NO)
        steps += st + 1
        if not ok:
            return exact_fit_flags(y, g1, g2, alpha, mode, rel_eps, _COLD_FREE_THR,
                                   active), steps
        cnt = 0
        for k in range(npr):
            cnt += act[k]
        if j == 0:
            f_short = cnt / npr
        else:
            f_long = cnt / npr
            f_fit = k_fit / npr
            t_long = tp
    if not f_short > 0.0 or not f_long > 0.0:
        return exact_fit_flags(y, g1, g2, alpha, mode, rel_eps, _COLD_FREE_THR, active), steps
    z_long = _probit(f_long)
    slope = min(max(z_long - _probit(f_short), -_PREFIX_SLOPE_MAX), 0.0)
    frac = 0.5 * math.erfc(-(z_long + slope * math.log2(T / t_long)) / math.sqrt(2.0))
    if not frac < _PREFIX_GATE * f_fit:
        return exact_fit_flags(y, g1, g2, alpha, mode, rel_eps, _COLD_FREE_THR, active), steps
    return count_fit_flags(y, g1, g2, mode, frac, _PREFIX_STRIDE, scratch, active), steps


@njit(cache=_CACHE, nogil=True)
def _zero_is_optimal(y, g1, g2):
    """Whether s = 0 is optimal at lambda 0 without a baseline: every
    multiplier nu = M^-T (0 - y[1:]) is >= 0 (its backward recursion, which
    stops at the first negative one: at once on a trace that is not below
    0 at its end)."""
    n = y.shape[0] - 1
    n1 = 0.0
    n2 = 0.0
    for j in range(n - 1, -1, -1):
        v = -y[j + 1] + g1 * n1 + g2 * n2
        if v < 0.0:
            return False
        n2 = n1
        n1 = v
    return True


# a warm start's exchange hands over early (violators not halving every two
# steps) when the kernel decays over more than this many samples (0: never)
_EARLY_DECAY = 500.0
_EARLY_MIN = 64
# ... and a cold start's when the kernel decays over more than this (0: never).
# Below ~50 samples it depends on the data: the cold exchange settles in
# 11-17 steps on the real recordings with a 0.3 s decay at 122-158 Hz
# (37-48 samples; the interior point costs ~2x there), but creeps (~1.5x
# fewer violators per step, 33 steps) on GCaMP6s at 30 Hz (45 samples)
_COLD_DECAY = 50.0
# ... after at most this many exchange steps with many violators
_COLD_STEPS = 1
# a cold start's exchange settles locally (as a warm start's) once at most
# n / _COLD_LOCAL_FRAC samples violate, from step _COLD_LOCAL_FROM (0: never)
# (measured on GCaMP6s at 30 Hz, 54,000 frames: 8.7 ms at 64, 11.8 ms at 8;
# a settle with thousands of violators costs several full steps)
_COLD_LOCAL_FRAC = 64
_COLD_LOCAL_FROM = 2
# ... n / _COLD_LOCAL_FRAC0 at lambda 0 (there the exchange from the exact
# fit leaves ~n/60 violators at its second step; settled locally the next
# full steps find ~430, then ~5: lambda 0 at 30 Hz, 4 traces of 54,000
# frames, 5-6 -> 5 steps, 3.5 -> 3.2 ms; at 8 on every lambda the fast
# kernels took fewer steps but 1.2-1.6x the time)
_COLD_LOCAL_FRAC0 = 8
# ... re-solving at most _COLD_LOCAL_WORK n samples per exchange
_COLD_LOCAL_WORK = 4

# phase 1 of a warm start settles a block exchange locally
# (_numba_local.local_exchange) when at most n / _LOCAL_FRAC samples
# violate (0: never)
_LOCAL_FRAC = 8
# ... n / _LOCAL_FRAC_S without the drift baseline on fast kernels (there a
# full step costs little more than settling many segments)
_LOCAL_FRAC_S = 64
# ... from the first exchange on when the kernel decays over more than
# _LOCAL_SLOW samples, else from the second (a fast kernel's first block
# exchange lands nearly right by itself)
_LOCAL_FROM = 2
_LOCAL_SLOW = 30.0
# ... re-solving at most _LOCAL_WORK n samples per exchange
_LOCAL_WORK = 4
# ... and with Murty's rule only, this many rounds per segment, when the
# violators did not fall over the last step
_LOCAL_CYCLE = np.int64(64)
# ... a round after a segment's first re-solving only from this many decay
# lengths before the first sample it changed (0: the whole segment)
_LOCAL_WINDOW = 4.0

# a warm start's block exchanges flip, of each cluster of violators of one
# kind, only the most negative (_numba_local.thin_flips), clusters this
# many times the kernel's rise (samples from a spike to its peak) wide (0:
# off); then it settles locally only once at most n / _LOCAL_FRAC_T violate
_THIN_PEAK = 0.7
_LOCAL_FRAC_T = 200
# ... with drift from n / _LOCAL_FRAC_D on where the set has at least
# _EARLY_PAIRS free pairs a violator (the settle's segments end at free
# pairs: short segments, a few samples re-solved a violator; dense spiking
# 10-30, against 100-330 on the calab preset and GCaMP6s 100 Hz, where an
# early settle costs more than the full steps it saves)
_LOCAL_FRAC_D = 60
_EARLY_PAIRS = 2
# ... and from n / _LOCAL_FRAC_D2 on where it has a free pair a violator
# (the calab preset's tau_decay +50 %: 10 -> 9 steps)
_LOCAL_FRAC_D2 = 100

# a warm start on a kernel decaying over more than _EARLY_DECAY samples
# settles each exchange by a dense solve on a working set of at most
# _DENSE_MAX samples (_numba_local.dense_settle; 0: off, not below
# _DENSE_MIN: the workspace of a short trace), growing it for at most
# _DENSE_ROUNDS rounds (1 kHz kernel, 54,000 frames: 3 saves 0.5-1.5 ms a
# move against 8, but tau_decay +50 % took 12 steps, not 7), for at most
# _DENSE_STEPS full steps
_DENSE_MAX = 512
_DENSE_MIN = 32
_DENSE_ROUNDS = 3
_DENSE_STEPS = 8
# ... and checks its answer on the directly formed gradient at most this
# many times, a sample violating below -_DENSE_TOL max|gradient|
_DENSE_VERIFY = 1
# ... and settles on that gradient too (else on the step's multipliers:
# 1 kHz kernel, 54,000 frames, drift: tau_decay +50 % 12 -> 4 steps, the
# other dense moves one step fewer or the same; 0.4 ms per settle)
_DENSE_DIRECT = True
# ... but the first settle of a move with more than n / _DENSE_NU_FIRST
# violators on the step's multipliers: their rounding floor (~1e-7 of the
# largest) is far below such a move's violations, and the next full step
# re-reads them (54,000 frames at 1 kHz: tau_decay +50 %, lambda /2 the
# same steps, one settle_gradient pass pair less, ~0.2 ms; on every first
# settle, tau +-2 % and fs +-1 % took a step more).  Not at lambda 0, whose
# multipliers' floor is looser (bench_cold_start.py --khz --warm --lam0 0.3
# --seed 3: a lambda-0 move then 6.6e-11 above the plain solve, 5.9e-11 at
# most before)
_DENSE_NU_FIRST = 100
_DENSE_LAM0 = True
_DENSE_TOL = 1e-10
# ... and takes the checked set only if the objective falls by more than
# _DENSE_GAIN times the fit term (1e-8 seen on 20,000 frames: the cold
# optimum; below this the change is rounding and costs a full step)
_DENSE_GAIN = 1e-12
# ... at most this many multiply-adds per sample of the trace per settle
# (at 40, lambda x2 and /2 on one of two 54,000-frame traces ran out and
# went cold, a step more than a cold solve)
_DENSE_WORK = 100
# ... where it does not apply at the first step, a solve from a cold start
# when more than n / _COLD_RESTART samples violate (first-step violators on
# the 1 kHz kernels, 54,000 frames: 35-240 after tau +-2 %, fs +-1 %;
# 770-30,000 after tau +-50 %, tau_rise +20 %, lambda x2, /2; there the
# warm interior point took 16-29 steps, a cold solve 14-20)
_COLD_RESTART = 100
# ... and without trying it when more than n / _COLD_AT_ONCE violate at the
# first step (tau_decay -50 % on the 1 kHz kernel: the dense settle took a
# step and then handed over; tau_decay +50 %, n / 30: it settles in 3-7)
_COLD_AT_ONCE = np.int64(8)
# ... on a warm start that can restart from the binned start (pdas_one's
# ``bail``, _coarse_row's first call): when more than n / _BAIL_AT_ONCE
# violate at its first step, it returns at once and the binned start's
# block settle takes over (slow-1kHz, 54,000 frames: tau_decay +50 %,
# lambda /2, n / 30 and n / 8.5 violators, dense settles 5.2-5.6 ms in 4
# steps; the binned start's block settle ~4 ms with the step spent)
_BAIL_AT_ONCE = np.int64(40)
# ... and there the binned guess is settled by blocks even where it fits the
# dense settle (_WARM_BAIL_BLOCKS; False: as a cold start's)
_WARM_BAIL_BLOCKS = True

# a cold exchange without drift forms the next step's Riccati recursion in
# this step's multipliers' pass (_kkt_core_ahead; False: off) when the
# violators a step before were more than _AHEAD_MARGIN times the count at
# which the local settle takes over (a recursion formed ahead for a step
# that does not follow costs ~0.15 of a step; one used saves ~0.15-0.3)
_AHEAD = True
_AHEAD_MARGIN = 2
# ... a warm drift start's steps reuse the last step's Riccati recursion above the
# highest changed sample (_kkt_core_ck; False: _kkt_core_thin)
_CK_REUSE = True

# a warm start's phase-1 steps without drift on kernels decaying over at most
# _EARLY_DECAY samples form the Riccati recursion with short loop-carried
# chains (_numba_short.riccati_short; False: the plain recursion)
_SHORT_RIC = True

# print each phase-1 step (debugging only; numba folds it away when False)
_TRACE = False

# violator counts remembered by the phase-1 stall test
_HIST = 8


@njit(cache=_CACHE, nogil=True)
def _exchange_stalls(hist, it):
    """Whether block exchanges have stopped paying (phase 1 of pdas_one).

    ``hist[(j - 1) % _HIST]`` is the violator count of step j <= it.  The
    exchange is judged from step 4 on (the first exchanges from a cold start
    often raise the count).  With more than 16 violators it stalls when the
    count rose twice in a row, or fell by less than 30 % over two steps
    three steps running; with fewer (the local cycles a warm start ends in)
    when the last 4 steps brought no new low.  After 30 steps at most.
    Tuned on the step-count sequences of the bench's regimes and the real
    recordings, cold and warm, counting an interior-point phase as ~45 steps.
    """
    if it < 4:
        return False
    c0 = hist[(it - 1) % _HIST]
    c1 = hist[(it - 2) % _HIST]
    c2 = hist[(it - 3) % _HIST]
    if it >= 30:
        return True
    if c0 > 16:
        if c0 >= c1 and c1 >= c2:
            return True
        if it < 5:
            return False
        for j in range(3):
            if 10 * hist[(it - 1 - j) % _HIST] <= 7 * hist[(it - 3 - j) % _HIST]:
                return False
        return True
    recent = c0
    for j in range(2, 5):
        recent = min(recent, hist[(it - j) % _HIST])
    before = hist[(it - 5) % _HIST]
    for j in range(6, _HIST + 1):
        before = min(before, hist[(it - j) % _HIST])
    return recent >= before


@njit(cache=_CACHE, nogil=True)
def _kkt_step(y, g1, g2, alpha, beta, mode, mu, active, gain, gb, x, bvec, u, nu, flip, rel_eps):
    """One active-set step (:func:`_kkt_core`).  Returns (n_bad, last_bad)."""
    n_bad, last_bad, _eu, _en = _kkt_core(y, g1, g2, alpha, beta, mode, mu, active, gain, gb, x,
                                          bvec, u, nu, flip, rel_eps, _NO, _NO)
    return n_bad, last_bad


@njit(cache=_CACHE, nogil=True)
def _nu_pass(y, g1, g2, beta, active, x, bvec, u, nu, flip, eps_u, bmask):
    """The multipliers' backward recursion of :func:`_kkt_core` (plain sum):
    nu = beta + K'(K s + b - y) on every sample; flags in ``flip`` each
    candidate violator (a negative multiplier on the active set, a spike
    below -eps_u on the free set).  Returns (n_bad, last_bad, nu_max,
    noise, near, far, n_act, first_bad): the count, the last flagged
    sample, max |nu| on the active set and on the free set, the flagged
    multipliers nearest 0 and lowest (far: +inf if none), the count of
    flagged active samples and the first flagged sample (0 if none; the
    last three for :func:`_kkt_flags_one`).
    ``bmask``: -1 reads the baseline per sample, 0 the constant bvec[0]
    (a flat step's, :func:`_kkt_core_ahead`: one stream fewer, the same
    numbers)."""
    n = x.shape[0]
    n1 = 0.0
    n2 = 0.0
    nu_max = 0.0
    noise = 0.0
    near = -math.inf
    far = math.inf
    n_act = 0
    first_bad = 0
    n_bad = 0
    last_bad = -1
    hint = n >= _HINT_FROM
    for j in range(n - 1, -1, -1):
        if hint and (j & 7) == 0:
            # (a software prefetch on long traces: _numba_hints)
            jp = max(j - _PF_AHEAD, 0)
            _prefetch(x, jp)
            _prefetch(y, jp)
            _prefetch(bvec, jp & bmask)
            _prefetch(u, jp)
            _prefetch(nu, jp)
            _prefetch(active, jp)
        v = x[j] - y[j + 1] + bvec[(j + 1) & bmask] + g1 * n1 + g2 * n2
        n2 = n1
        n1 = v
        nj = v + beta
        nu[j] = nj
        if active[j]:
            nu_max = max(nu_max, abs(nj))
            bad = nj < 0.0
            if bad:
                near = max(near, nj)
                far = min(far, nj)
                n_act += 1
        else:
            noise = max(noise, abs(nj))
            bad = u[j] < -eps_u
        flip[j] = bad
        if bad:
            n_bad += 1
            first_bad = j
            if last_bad < 0:
                last_bad = j
    return n_bad, last_bad, nu_max, noise, near, far, n_act, first_bad


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _nu_pass_fma(y, g1, g2, beta, active, x, bvec, u, nu, flip, eps_u, bmask, thin, rej):
    """The multipliers' backward recursion of :func:`_kkt_core` with one
    multiply-add on its loop-carried chain (n2 added off it, g1 n1 fused):
    a third of the latency of the plain sum, rounded differently.  Used by
    a warm start's phase-1 steps (the slider path); a cold solve keeps the
    plain sum (its interior point's crossover path is sensitive to the
    rounding: a 1 kHz trace at lambda 1e-3 took 67 steps, not 53).
    Returns what :func:`_nu_pass` returns, with ``thin`` > 0 the count of
    ``rej`` (else -1) sixth (its far, n_act, first_bad after it): there it
    lists the flagged samples (int, at
    least n long), in the order formed (leftwards), which
    :func:`_apply_thin` thins as :func:`._numba_local.thin_flips` does
    without its pass over every sample's flag (0.02-0.16 ms a step on
    54,000 frames, mostly mispredicted branches on which are flagged).  (The
    thinning itself inside this loop slowed its unflagged samples.)"""
    n = x.shape[0]
    n1 = 0.0
    n2 = 0.0
    nu_max = 0.0
    noise = 0.0
    near = -math.inf
    far = math.inf
    n_act = 0
    first_bad = 0
    n_bad = 0
    last_bad = -1
    hint = n >= _HINT_FROM
    for j in range(n - 1, -1, -1):
        if hint and (j & 7) == 0:
            # (a software prefetch on long traces: _numba_hints)
            jp = max(j - _PF_AHEAD, 0)
            _prefetch(x, jp)
            _prefetch(y, jp)
            _prefetch(bvec, jp & bmask)
            _prefetch(u, jp)
            _prefetch(nu, jp)
            _prefetch(active, jp)
        v = ((x[j] - y[j + 1] + bvec[(j + 1) & bmask]) + g2 * n2) + g1 * n1
        n2 = n1
        n1 = v
        nj = v + beta
        nu[j] = nj
        if active[j]:
            nu_max = max(nu_max, abs(nj))
            bad = nj < 0.0
            if bad:
                near = max(near, nj)
                far = min(far, nj)
                n_act += 1
        else:
            noise = max(noise, abs(nj))
            bad = u[j] < -eps_u
        flip[j] = bad
        if bad:
            if thin > 0:
                rej[n_bad] = j
            n_bad += 1
            first_bad = j
            if last_bad < 0:
                last_bad = j
    return (n_bad, last_bad, nu_max, noise, near, n_bad if thin > 0 else -1, far, n_act,
            first_bad)


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _nu_pass_dense(y, g1, g2, beta, active, x, bvec, u, nu, flip, eps_u, bmask, rej):
    """:func:`_nu_pass_fma` with ``thin`` > 0 (the same recursion, flags,
    list ``rej`` and returns) without a branch on a sample's kind or flag:
    the kind's maxima by 0/1 factors, the flags' list by an increment, and
    what :func:`_nu_pass_fma` reads of the flagged samples alone (the
    extremes of their negative multipliers, their count, the first and last)
    from that list after the loop.  On sets whose kind changes every few
    samples (dense spiking: ~20,000 changes in 54,000 samples) the branches
    of :func:`_nu_pass_fma` mispredict (0.19-0.24 ms a pass there against
    0.07-0.13 on sparse sets); this pass costs about the same whatever the
    set.  ``rej`` holds at least n entries (those from ``n_bad`` on are
    overwritten here and mean nothing; :func:`_nu_pass_fma` leaves them)."""
    n = x.shape[0]
    n1 = 0.0
    n2 = 0.0
    nu_max = 0.0
    noise = 0.0
    n_bad = 0
    top = n - 1
    hint = n >= _HINT_FROM
    for j in range(n - 1, -1, -1):
        if hint and (j & 7) == 0:
            jp = max(j - _PF_AHEAD, 0)
            _prefetch(x, jp)
            _prefetch(y, jp)
            _prefetch(bvec, jp & bmask)
            _prefetch(u, jp)
            _prefetch(nu, jp)
            _prefetch(active, jp)
        v = ((x[j] - y[j + 1] + bvec[(j + 1) & bmask]) + g2 * n2) + g1 * n1
        n2 = n1
        n1 = v
        nj = v + beta
        nu[j] = nj
        act = active[j]
        fa = np.float64(act)
        a_nj = abs(nj)
        nu_max = max(nu_max, a_nj * fa)
        noise = max(noise, a_nj * (1.0 - fa))
        bad = (act & (nj < 0.0)) | ((not act) & (u[j] < -eps_u))
        flip[j] = bad
        rej[min(n_bad, top)] = j
        n_bad += np.int64(bad)
    near = -math.inf
    far = math.inf
    n_act = 0
    for i in range(n_bad):
        j = rej[i]
        # (a flagged active sample: its multiplier is below 0; a flagged
        # free one's is not read)
        nj = nu[j] if active[j] else math.nan
        near = max(near, nj) if nj < 0.0 else near
        far = min(far, nj) if nj < 0.0 else far
        n_act += np.int64(nj < 0.0)
    last_bad = rej[0] if n_bad > 0 else -1
    first_bad = rej[n_bad - 1] if n_bad > 0 else 0
    return n_bad, last_bad, nu_max, noise, near, n_bad, far, n_act, first_bad


@njit(cache=_CACHE, nogil=True)
def _kkt_core(y, g1, g2, alpha, beta, mode, mu, active, gain, gb, x, bvec, u, nu, flip, rel_eps,
              fast=False, short=False):
    """One active-set step (:func:`_kkt_core_thin` without thinning).
    Returns (n_bad, last_bad, eps_u, eps_nu)."""
    n_bad, last_bad, eps_u, eps_nu, _n_rej = _kkt_core_thin(
        y, g1, g2, alpha, beta, mode, mu, active, gain, gb, x, bvec, u, nu, flip, rel_eps, fast,
        short, _ZERO, u.view(np.int64)[0:0])
    return n_bad, last_bad, eps_u, eps_nu


@njit(cache=_CACHE, nogil=True)
def _kkt_core_thin(y, g1, g2, alpha, beta, mode, mu, active, gain, gb, x, bvec, u, nu, flip,
                   rel_eps, fast, short, thin, rej):
    """One active-set step: the subspace optimum for ``active`` (x, bvec)
    and its KKT violators (flagged in ``flip``).  Returns (n_bad, last_bad,
    eps_u, eps_nu), the last two the thresholds it applied.

    A multiplier counts as negative below -max(rel_eps * max|nu_A|, 4 e),
    with e the largest |nu| on the free set: there nu vanishes in exact
    arithmetic, so e is the rounding error of the recursion that forms nu
    (it grows as the AR roots approach 1, e.g. 1e-8 of max|nu| for a 3 s
    decay at 1 kHz).  Without that floor such a problem can flip one sample
    back and forth for ever.  (The floor applies only when the relative
    test alone finds a violator.)

    Three passes: the Riccati recursion, its forward pass (which also forms
    the spikes u), and the multipliers' backward recursion, which flags
    every candidate (a spike below -rel_eps max|u|, a multiplier below 0);
    a fourth pass re-reads the flags only when a negative multiplier lies
    within the final threshold.  With ``fast`` the third pass is
    :func:`_nu_pass_fma` (a warm start's phase 1).  With ``short`` (not
    with drift) the Riccati recursion is :func:`._numba_short.riccati_short`
    (a warm start's phase 1 on kernels not slow against fs: the same
    recursion with shorter loop-carried chains, rounded differently).
    With ``fast`` and ``thin`` > 0 the multipliers' pass also lists in
    ``rej`` the flags that :func:`._numba_local.thin_flips` would drop
    (:func:`_nu_pass_fma`); the fifth value returned is their count, -1
    where that list does not hold (no thinning, or the second look of the
    thresholds unflagged samples: then thin_flips itself).  With ``fast``
    and ``thin`` > 0 on a set whose kind changes at more than n /
    ``_NU_DENSE_CHG`` samples the third pass is :func:`_nu_pass_dense`
    instead (the same numbers, flags and list; dense spiking and low SNR
    sets, where _nu_pass_fma's branches mispredict), as in
    :func:`_kkt_core_ck`.
    """
    n = x.shape[0]
    # (the free samples' count where the recursion returns it: the kind
    # changes at most twice per free sample)
    n_free = n
    if short and mode != 2:
        a22, q2, p0 = riccati_short(y, g1, g2, beta, active, gain)
        n_free = n - p0
        u_max = _subspace_fwd(y, g1, g2, alpha, mode, active, gain, gb, x, bvec, u, True, a22, q2,
                              p0)
    else:
        u_max = _subspace_core(y, g1, g2, alpha, beta, mode, mu, active, gain, gb, x, bvec, u,
                               True)
    eps_u = rel_eps * u_max
    n_rej = -1
    # a warm step on a set whose kind changes every few samples (dense
    # spiking, low SNR): the multipliers' pass without branches on the kind,
    # as _kkt_core_ck's (_nu_pass_dense; the same numbers)
    kdense = (fast and thin > 0 and _NU_DENSE_CHG > 0 and 2 * n_free * _NU_DENSE_CHG > n
              and _kind_changes(active) * _NU_DENSE_CHG > n)
    if kdense:
        n_bad, last_bad, nu_max, noise, near, n_rej, far, n_act, first_bad = _nu_pass_dense(
            y, g1, g2, beta, active, x, bvec, u, nu, flip, eps_u, _ALL_B, rej)
    elif fast:
        n_bad, last_bad, nu_max, noise, near, n_rej, far, n_act, first_bad = _nu_pass_fma(
            y, g1, g2, beta, active, x, bvec, u, nu, flip, eps_u, _ALL_B, thin, rej)
        if thin <= 0:
            n_rej = -1
    else:
        n_bad, last_bad, nu_max, noise, near, far, n_act, first_bad = _nu_pass(
            y, g1, g2, beta, active, x, bvec, u, nu, flip, eps_u, _ALL_B)
    n_bad, last_bad, eps_nu, kept = _kkt_flags_one(active, nu, flip, n_bad, last_bad, nu_max,
                                                   noise, near, rel_eps, far, n_act, first_bad)
    if not kept:
        n_rej = -1
    return n_bad, last_bad, eps_u, eps_nu, n_rej


@njit(cache=_CACHE, nogil=True)
def _kkt_core_ck(y, g1, g2, alpha, beta, mode, mu, active, gain, gb, x, bvec, u, nu, flip,
                 rel_eps, thin, rej, ck, hi0):
    """:func:`_kkt_core_thin` with ``fast`` and not ``short`` (a warm drift
    step; the same numbers), its Riccati recursion
    :func:`_subspace_riccati_ck`: from the chunk at ``hi0`` on (n: all of
    it), the rest reused from the last step (its checkpoints in ``ck``)."""
    a22, q2, p0 = _subspace_riccati_ck(y, g1, g2, beta, mode, mu, active, gain, gb, ck, hi0)
    u_max = _subspace_fwd(y, g1, g2, alpha, mode, active, gain, gb, x, bvec, u, True, a22, q2, p0)
    eps_u = rel_eps * u_max
    n = x.shape[0]
    # (the kind changes at most twice per free sample, n - p0 of them: sparse
    # sets are told without the count's pass)
    if (thin > 0 and _NU_DENSE_CHG > 0 and 2 * (n - p0) * _NU_DENSE_CHG > n
            and _kind_changes(active) * _NU_DENSE_CHG > n):
        # a set whose kind changes every few samples: the multipliers' pass
        # without branches on the kind (_nu_pass_dense; the same numbers)
        n_bad, last_bad, nu_max, noise, near, n_rej, far, n_act, first_bad = _nu_pass_dense(
            y, g1, g2, beta, active, x, bvec, u, nu, flip, eps_u, _ALL_B, rej)
    else:
        n_bad, last_bad, nu_max, noise, near, n_rej, far, n_act, first_bad = _nu_pass_fma(
            y, g1, g2, beta, active, x, bvec, u, nu, flip, eps_u, _ALL_B, thin, rej)
    if thin <= 0:
        n_rej = -1
    n_bad, last_bad, eps_nu, kept = _kkt_flags_one(active, nu, flip, n_bad, last_bad, nu_max,
                                                   noise, near, rel_eps, far, n_act, first_bad)
    if not kept:
        n_rej = -1
    return n_bad, last_bad, eps_u, eps_nu, n_rej


# _kkt_core_ck and _kkt_core_thin (warm steps with thinning): the
# multipliers' pass without branches (_nu_pass_dense) on a set whose kind
# changes at more than n / _NU_DENSE_CHG samples (0: never).
# Its pass against _nu_pass_fma's on the warm drift steps' sets of 54,000
# frames (medians, branch predictor not trained on the set), changes:
# dense td -50 % 14.5-21k 0.11-0.13 against 0.18-0.23 ms, low SNR 22-29k
# 0.11-0.12 / 0.19-0.23, lambda 0 13.6k 0.116 / 0.133; GCaMP6f 12.4k
# 0.114-0.117 / 0.114-0.123, jGCaMP8f 10k 0.113-0.120 / 0.090-0.125; the
# sparse sets (calab, GCaMP6s 100 Hz, lambda 1: 0.1-8k) 0.11-0.13 against
# 0.07-0.13
_NU_DENSE_CHG = 4


@njit(cache=_CACHE, nogil=True)
def _kind_changes(active):
    """The number of k with active[k] != active[k + 1] (a pass that
    vectorises: a few us per 54,000 samples)."""
    a8 = active.view(np.uint8)
    c = 0
    for k in range(active.shape[0] - 1):
        c += a8[k] ^ a8[k + 1]
    return c


@njit(cache=_CACHE, nogil=True)
def _highest_change(active, ref, n):
    """The highest k with active[k] != ref[k] (-1 if none); blocks of 64
    tested by an or-reduction first (54,000 samples: 26 us against 36 for
    the plain scan)."""
    a8 = active.view(np.uint8)
    r8 = ref.view(np.uint8)
    hi = n
    while hi > 0:
        lo = max(hi - 64, 0)
        d = 0
        for k in range(lo, hi):
            d |= a8[k] ^ r8[k]
        if d != 0:
            for k in range(hi - 1, lo - 1, -1):
                if active[k] != ref[k]:
                    return k
        hi = lo
    return -1


@njit(cache=_CACHE, nogil=True)
def _apply_thin(active, flip, u, nu, thin, rej, n_rej):
    """thin_flips(active, flip, u, nu, thin) after a step of
    :func:`_kkt_core_thin`: where its list ``rej`` of the flagged samples
    holds (``n_rej`` >= 0) the same rule over that list (the same order,
    the same values: the same flips), else the pass itself."""
    if n_rej < 0:
        thin_flips(active, flip, u, nu, thin)
        return
    c0 = -1
    c1 = -1
    v0 = 0.0
    v1 = 0.0
    for i in range(n_rej):
        j = rej[i]
        act = active[j]
        if act:
            vj, c, v = nu[j], c1, v1
        else:
            vj, c, v = u[j], c0, v0
        if c >= 0 and c - j > thin:
            c = -1
        if c < 0:
            c, v = j, vj
        elif vj < v:
            flip[c] = False
            c, v = j, vj
        else:
            flip[j] = False
        if act:
            c1, v1 = c, v
        else:
            c0, v0 = c, v


@njit(cache=_CACHE, nogil=True)
def _kkt_core_ahead(y, g1, g2, alpha, beta, mode, active, gain, x, bvec, u, nu, flip, rel_eps,
                    ready, a22, q2, p0, ahead, first, fast):
    """:func:`_kkt_core` (plain-sum multipliers, no drift) with the Riccati
    recursions of two steps overlapped, the same numbers.  With ``ready``
    the gains of ``active`` are already in ``gain`` and (a22, q2, p0) closes
    their recursion (formed by the step before: only the forward pass
    runs).  ``first``: every sample is active (a cold start's first step;
    :func:`_all_active_fwd`).  With ``ahead`` the multipliers' backward pass also runs the
    Riccati recursion of the next step's set, ``active`` with every flagged
    sample flipped (:func:`_nu_riccati`: both chains latency-bound, one
    loop).  Returns (n_bad, last_bad, eps_u, eps_nu, formed, a22n, q2n, p0n):
    ``formed`` says that ``gain`` and (a22n, q2n, p0n) hold the next set's
    recursion, valid if the caller then flips exactly the flagged samples
    (not when the thresholds' second look unflagged any).  ``fast`` (not
    with ``ahead``; a cold start at lambda 0): the forward pass by
    :func:`_subspace_fwd_fma` and the multipliers by :func:`_nu_pass_fma`,
    as :func:`_kkt_core` forms them for a cold start at lambda 0.  The
    baseline (modes 0 and 1: one value) is left in bvec[0] only, read from
    there by the multipliers' pass (on 1,000,000 frames a stream written
    and read per step; the caller fills bvec before anything else reads
    it, :func:`_fill_b`)."""
    if first:
        u_max = _all_active_fwd(y, mode, x, bvec, u)
    else:
        if not ready:
            a22, q2, p0 = _riccati_flat(y, g1, g2, beta, active, gain)
        if fast:
            u_max = _subspace_fwd_fma(y, g1, g2, alpha, mode, active, gain, x, bvec, u, a22, q2,
                                      p0)
        else:
            u_max = _subspace_fwd_flat(y, g1, g2, alpha, mode, active, gain, x, bvec, u, a22,
                                       q2, p0)
    eps_u = rel_eps * u_max
    a22n = 0.0
    q2n = 0.0
    p0n = 0
    if ahead:
        (n_bad, last_bad, nu_max, noise, near, a22n, q2n, p0n, far, n_act,
         first_bad) = _nu_riccati(y, g1, g2, beta, active, x, bvec, u, nu, flip, eps_u, gain,
                                  _ONE_B)
    elif fast:
        n_bad, last_bad, nu_max, noise, near, _r, far, n_act, first_bad = _nu_pass_fma(
            y, g1, g2, beta, active, x, bvec, u, nu, flip, eps_u, _ONE_B, _ZERO,
            u.view(np.int64)[0:0])
    else:
        n_bad, last_bad, nu_max, noise, near, far, n_act, first_bad = _nu_pass(
            y, g1, g2, beta, active, x, bvec, u, nu, flip, eps_u, _ONE_B)
    n_bad, last_bad, eps_nu, kept = _kkt_flags_one(active, nu, flip, n_bad, last_bad, nu_max,
                                                   noise, near, rel_eps, far, n_act, first_bad)
    return n_bad, last_bad, eps_u, eps_nu, ahead and kept, a22n, q2n, p0n


@njit(cache=_CACHE, nogil=True)
def _subspace_fwd_flat(y, g1, g2, alpha, mode, active, gain, x, bvec, u, a22, q2, p0):
    """:func:`_subspace_fwd` without drift, with u, and with the sample's
    kind chosen by selects rather than branches (both candidates formed,
    the same arithmetic: the same numbers): the kinds of an exchange's
    iterate follow no pattern a branch predictor learns, and the
    mispredictions cost more than the extra multiply-adds (forward pass
    10-17 % less CPU on the cold steps of lowSNR/dense/lam0-30Hz).  Not
    inlined: inlined into :func:`_kkt_core_ahead` the cold solves of
    lowSNR/dense/GCaMP6f-30Hz took 4-6 % more CPU than with the branchy
    pass, as a call 3-4 % less."""
    n = y.shape[0] - 1
    b = 0.0
    if mode != 0:
        b = (y[0] - q2) / a22
    bvec[0] = b
    xm1 = 0.0
    xm2 = 0.0
    u_max = 0.0
    p = p0
    for k in range(n):
        a = active[k]
        pair = ((k + 2 < n) & (not a) & (not active[min(k + 1, n - 1)])
                & (not active[min(k + 2, n - 1)]))
        # (the free samples' gains packed from row p0: row p is this
        # sample's if it is free, read either way, the next free one's or
        # the last row if not)
        pk = min(p, n - 1)
        p += 0 if a else 1
        xa = g1 * xm1 + g2 * xm2
        xp = -(b + gain[pk, 2])
        xf = -(gain[pk, 0] * xm1 + gain[pk, 1] * b + gain[pk, 2])
        xk = xa if a else (xp if pair else xf)
        uk = (xk - g1 * xm1 - g2 * xm2) / alpha
        uk = 0.0 if a else uk
        u[k] = uk
        u_max = max(u_max, abs(uk))
        x[k] = xk
        xm2 = xm1
        xm1 = xk
    return u_max


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _subspace_fwd_fma(y, g1, g2, alpha, mode, active, gain, x, bvec, u, a22, q2, p0):
    """:func:`_subspace_fwd_flat` with one multiply-add on the loop-carried
    chain: a free sample's x_k = -(c1 x_{k-1} + (c2 b + c3)), the sum off the
    chain formed first (the plain pass adds c2 b after the product with
    x_{k-1}: a product and two sums on the chain), and an active sample's
    g1 x_{k-1} + g2 x_{k-2} fused.  Rounded otherwise than the plain pass
    (|dx| ~1e-14 on lam0-30Hz); 3.9 -> 2.65 ns a sample there.  A cold
    start at lambda 0 (whose multipliers are formed by multiply-adds too,
    :func:`_nu_pass_fma`)."""
    n = y.shape[0] - 1
    b = 0.0
    if mode != 0:
        b = (y[0] - q2) / a22
    bvec[0] = b
    xm1 = 0.0
    xm2 = 0.0
    u_max = 0.0
    p = p0
    for k in range(n):
        a = active[k]
        pair = ((k + 2 < n) & (not a) & (not active[min(k + 1, n - 1)])
                & (not active[min(k + 2, n - 1)]))
        pk = min(p, n - 1)
        p += 0 if a else 1
        xa = g1 * xm1 + g2 * xm2
        xp = -(b + gain[pk, 2])
        xf = -(gain[pk, 0] * xm1 + (gain[pk, 1] * b + gain[pk, 2]))
        xk = xa if a else (xp if pair else xf)
        uk = (xk - g1 * xm1 - g2 * xm2) / alpha
        uk = 0.0 if a else uk
        u[k] = uk
        u_max = max(u_max, abs(uk))
        x[k] = xk
        xm2 = xm1
        xm1 = xk
    return u_max


@njit(cache=_CACHE, nogil=True)
def _all_active_fwd(y, mode, x, bvec, u):
    """:func:`_subspace_core` (no drift, with u) when every sample is
    active, the same numbers: no spikes, so x = 0, and the baseline is
    (y[0] - q2) / (1 + p22) with q2 = -(sum of y[1:], summed backwards) and
    1 + p22 = T, as the Riccati recursion forms them.  Returns max |u| = 0."""
    n = y.shape[0] - 1
    b = 0.0
    if mode != 0:
        q2 = 0.0
        a22 = 1.0
        for k in range(n - 1, -1, -1):
            q2 = q2 - y[k + 1]
            a22 = a22 + 1.0
        b = (y[0] - q2) / a22
    bvec[0] = b
    for k in range(n):
        x[k] = 0.0
        u[k] = 0.0
    return 0.0


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _nu_riccati(y, g1, g2, beta, active, x, bvec, u, nu, flip, eps_u, gain, bmask):
    """:func:`_nu_pass` (the same numbers: its products fenced off the
    multiply-adds) and, in the same backward loop, the Riccati recursion of
    :func:`_subspace_riccati` (no drift; the same numbers) for the set
    ``active`` with every flagged sample flipped: its gains into ``gain``.
    The two recursions' loop-carried chains run side by side.  Returns what
    _nu_pass returns, (a22, q2, p0) of the recursion (the gains packed as
    :func:`_subspace_riccati` packs them) after its first five."""
    n = x.shape[0]
    n1 = 0.0
    n2 = 0.0
    nu_max = 0.0
    noise = 0.0
    near = -math.inf
    far = math.inf
    n_act = 0
    first_bad = 0
    n_bad = 0
    last_bad = -1
    hint = n >= _HINT_FROM
    g1sq = g1 * g1
    g1x2 = 2.0 * g1
    g2sq = g2 * g2
    bg1 = beta * g1
    bg2 = -beta * g2
    a00 = 1.0
    a01 = 0.0
    a02 = 1.0
    a11 = 0.0
    a12 = 0.0
    a22 = 1.0
    q0 = 0.0
    q1 = 0.0
    q2 = 0.0
    f1 = False
    f2 = False
    # the free samples' gains, packed: rows p .. n-1 in order of k
    p = n
    for k in range(n - 1, -1, -1):
        if hint and (k & 7) == 0:
            # (a software prefetch on long traces: _numba_hints)
            jp = max(k - _PF_AHEAD, 0)
            _prefetch(x, jp)
            _prefetch(y, jp)
            _prefetch(bvec, jp & bmask)
            _prefetch(u, jp)
            _prefetch(nu, jp)
            _prefetch(active, jp)
        # ---- the multipliers (_nu_pass)
        v = x[k] - y[k + 1] + bvec[(k + 1) & bmask] + _fence(g1 * n1) + _fence(g2 * n2)
        n2 = n1
        n1 = v
        nj = v + beta
        nu[k] = nj
        was = active[k]
        if was:
            nu_max = max(nu_max, abs(nj))
            bad = nj < 0.0
            if bad:
                near = max(near, nj)
                far = min(far, nj)
                n_act += 1
        else:
            noise = max(noise, abs(nj))
            bad = u[k] < -eps_u
        flip[k] = bad
        if bad:
            n_bad += 1
            first_bad = k
            if last_bad < 0:
                last_bad = k
        # ---- the next set's Riccati recursion (_subspace_riccati, no drift)
        act = was != bad
        yk = y[k + 1]
        l1 = q1
        l2 = q2 - yk
        if not act and f1 and f2:
            p -= 1
            q0, q1, q2 = free_pair_step(gain, p, q0, l1, l2, yk, beta, bg1, bg2)
            a22 = (a22 + 1.0) - 1.0
            continue
        f2 = f1
        f1 = not act
        if act:
            a00, a01, a11, p02, a12, q0, q1, q2 = active_sub(a00, a01, a11, a02, a12, q0, l1, l2,
                                                             yk, g1, g2, g1sq, g1x2, g2sq)
            a02 = p02 + 1.0
            a22 = a22 + 1.0
        else:
            p -= 1
            a00, a02, a22, q0, q1, q2 = flat_free_step(gain, p, a00, a01, a11, a02, a12, a22,
                                                       q0, l1, l2, yk, beta, bg1, bg2)
            a01 = 0.0
            a11 = 0.0
            a12 = 0.0
    return n_bad, last_bad, nu_max, noise, near, a22, q2, p, far, n_act, first_bad


@njit(cache=_CACHE, nogil=True, inline="always")
def _kkt_flags(active, nu, flip, n_bad, last_bad, nu_max, noise, near, rel_eps):
    """The thresholds of :func:`_kkt_core` applied to the flags of its
    multipliers' pass.  Returns (n_bad, last_bad, eps_nu, kept): ``kept``
    False when the second look ran (it may unflag samples)."""
    n = nu.shape[0]
    eps_nu = rel_eps * nu_max
    if near < -eps_nu and (n_bad == 0 or not 4.0 * noise > eps_nu or near < -4.0 * noise):
        # every flagged multiplier is below the final threshold
        if n_bad > 0 and 4.0 * noise > eps_nu:
            eps_nu = 4.0 * noise
        return n_bad, last_bad, eps_nu, True
    # some negative multiplier is within a threshold: the count against the
    # relative threshold decides whether the rounding floor applies
    n_rel = 0
    for k in range(n):
        if flip[k] and not (active[k] and nu[k] >= -eps_nu):
            n_rel += 1
    if 4.0 * noise > eps_nu and n_rel > 0:
        eps_nu = 4.0 * noise
    n_bad, last_bad = _second_look(active, nu, flip, eps_nu, 0, n - 1)
    return n_bad, last_bad, eps_nu, False


@njit(cache=_CACHE, nogil=True, inline="always")
def _second_look(active, nu, flip, eps_nu, lo, hi):
    """The second look of :func:`_kkt_flags` and :func:`_kkt_flags_one`
    over samples lo .. hi: a flagged active sample whose multiplier is at
    least -eps_nu is unflagged.  Returns (n_bad, last_bad) of the flags
    left (-1 if none)."""
    n_bad = 0
    last_bad = -1
    for k in range(lo, hi + 1):
        if flip[k]:
            if active[k] and nu[k] >= -eps_nu:
                flip[k] = False
            else:
                n_bad += 1
                last_bad = k
    return n_bad, last_bad


@njit(cache=_CACHE, nogil=True, inline="always")
def _kkt_flags_one(active, nu, flip, n_bad, last_bad, nu_max, noise, near, rel_eps, far, n_act,
                   first_bad):
    """:func:`_kkt_flags` given three more figures of the multipliers'
    pass: ``far`` the lowest flagged multiplier (+inf if none), ``n_act``
    the count of flagged active samples and ``first_bad`` the first flagged
    sample (0 if none).  The same flags, thresholds and returns; its second
    look is one pass over first_bad .. last_bad instead of two over the
    trace: the count against the relative threshold that decides the
    rounding floor is > 0 exactly when a free sample is flagged (n_bad >
    n_act) or a flagged multiplier lies below it (far < -eps_nu), and no
    sample outside that range is flagged."""
    eps_nu = rel_eps * nu_max
    if near < -eps_nu and (n_bad == 0 or not 4.0 * noise > eps_nu or near < -4.0 * noise):
        # every flagged multiplier is below the final threshold
        if n_bad > 0 and 4.0 * noise > eps_nu:
            eps_nu = 4.0 * noise
        return n_bad, last_bad, eps_nu, True
    if 4.0 * noise > eps_nu and (n_bad > n_act or far < -eps_nu):
        eps_nu = 4.0 * noise
    n_bad, last_bad = _second_look(active, nu, flip, eps_nu, first_bad, last_bad)
    return n_bad, last_bad, eps_nu, False


# ------------------------------------------------------- interior point
# coefficients per sample of :func:`_newton_solve`'s factorisation (inv, d1,
# O, gx; row n: the last p22, g1, g2)
_NCOEF = 4


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _newton_solve(y, g1, g2, mode, mu, D, c, coef, g0, gbd, g3, v, refactor):
    """Minimise over the calcium x (length T-1) and the baseline

        1/2 sum_t (y[t] - (K s)[t] - b_t)^2 + sum_k (1/2 D_k v_k^2 + c_k v_k)
            [+ mu/2 sum_t (b_t - b_{t-1})^2 for drift],    v = M x = alpha s,

    and write the innovations v (not x).  This is the Newton system of the
    interior point: D = nu / w is the barrier weight of s_k >= 0 (D = 0 and
    c = lamG/alpha is a free sample of :func:`_subspace_solve`, D -> inf an
    active one).  Same backward Riccati recursion over the state
    (x_k, x_{k-1}, b) as :func:`_subspace_solve` (and the same elimination
    of the drift baseline after each sample), here with the innovation of
    each sample eliminated against its weight:

        x_k = A x_{k-1} + R x_{k-2} + gx b + g0_k,
        v_k = d1 x_{k-1} - O x_{k-2} + gx b + g0_k,
        inv = 1 / (a00 + D),  A = (g1 D - a01) inv,  d1 = -(a01 + g1 a00) inv,
        R = g2 D inv,  O = g2 a00 inv  (A = g1 + d1, R = g2 - O),

    written so that nothing cancels for any D in [0, inf): v is formed
    directly (M x would lose every digit of v where D is large and v tiny),
    and x from its own coefficients, so the loop-carried chains are one
    fused multiply-add per sample (the recursion is latency-bound: the
    division's result meets each new value function in one multiply-add).
    A and R are stored as d1 and O and formed where used, A = g1 + d1 and
    R = g2 - O (off the chains): R loses its relative digits where D << a00,
    but only as an absolute error of eps g2, the rounding x_k has anyway;
    the passes over coef are what long traces wait for (memory: 4 values a
    sample instead of 6, read 5 times an iteration).

    ``refactor`` recomputes the quadratic part (coef: inv, d1, O, gx per
    sample, coef[n] the last p22, g1, g2; gbd the drift gains); without it
    only the linear part is redone for a new c (the corrector of the same
    iteration).  ``gbd``, ``g3``: (n, 4) and (n,) for drift, else unused.
    """
    b = _newton_back(y, g1, g2, mode, mu, D, c, coef, g0, gbd, g3, refactor)
    _newton_fwd(mode, coef, g0, gbd, g3, b, v, v, v, v, v, v, v, v, _ZERO)


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _newton_back(y, g1, g2, mode, mu, D, c, coef, g0, gbd, g3, refactor):
    """The backward recursion of :func:`_newton_solve`; returns the
    baseline of the first sample (for :func:`_newton_fwd`).

    Measured (Zen 4, 54,000 samples, in cache): the factoring pass takes
    ~22 cycles a sample against 17 for its division chain alone, and is
    about as bound by its ~28 multiplies on two pipes: two independent
    chains interleaved in one loop (as a two-sided factorisation would
    run) gave 1.1-1.3x, a shorter chain alone (pivot carried, e00 expanded)
    1.03x.  Long traces (>= 200,000) are bound by memory instead.

    Stream cuts measured against this (bench/bench_ipm_iteration.py, one
    iteration, 54k / 200k / 1M samples, three slow regimes): D and c formed
    here from nu and 1 / w (:func:`_newton_back_ipm`, kept) 0.89-1.11, the
    cold solve at 1M 0.91-0.94; the corrector's and Gondzio's rhs formed
    inside the back and forward passes instead of passes of their own
    1.11-1.18 at 54k, 1.0 at 1M (more work in the recursions) with one
    function for every kind; with a function per kind (kept, without drift:
    :func:`_newton_back_corr`, :func:`_newton_back_gondzio`,
    :func:`_newton_fwd_pred`, :func:`_newton_fwd_corr`) 0.98-1.03 at 54k,
    0.90-0.97 at 1M-4M, the cold solve at 1M-4M 0.85-0.99; 1 / w formed
    where used instead of stored 0.85-1.06, and not bit for bit (arcp);
    coefficients stored as float32: the 1 kHz kernel's interior point no
    longer converges (steps 0.0-0.6 from a gap of 1e-7 on)."""
    if not refactor and mode != 2:
        return _newton_back_rhs(y, g1, g2, mode, c, coef, g0)
    return _newton_back_core(y, g1, g2, mode, mu, D, c, 0.0, _NO, coef, g0, gbd, g3, refactor)


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _newton_back_ipm(y, g1, g2, mode, mu, beta, nu, winv, coef, g0, gbd, g3):
    """:func:`_newton_back` (refactoring) with the weights of the interior
    point's current point formed in the pass, D = nu / w and c = beta - nu,
    from nu and 1 / w (``winv``): two streams read instead of two written by
    the previous update pass and read here (long traces are bound by memory).
    """
    return _newton_back_core(y, g1, g2, mode, mu, nu, winv, beta, _YES, coef, g0, gbd, g3, _YES)


@njit(cache=_CACHE, nogil=True, fastmath={"contract"}, inline="always")
def _newton_back_core(y, g1, g2, mode, mu, D, c, beta, from_nu, coef, g0, gbd, g3, refactor):
    """The body of :func:`_newton_back`; with ``from_nu`` D, c are nu, 1 / w
    and the weights D = nu / w, c = beta - nu are formed here."""
    n = y.shape[0] - 1
    drift = mode == 2
    p00 = 0.0
    p01 = 0.0
    p02 = 0.0
    p11 = 0.0
    p12 = 0.0
    p22 = 0.0
    q0 = 0.0
    q1 = 0.0
    q2 = 0.0
    g1sq = g1 * g1
    inv_d = 0.0
    for k in range(n - 1, -1, -1):
        yk = y[k + 1]
        l0 = q0 - yk
        l1 = q1
        l2 = q2 - yk
        if from_nu:
            nk = D[k]
            Dk = nk * c[k]
            ck = beta - nk
        else:
            ck = c[k]
            Dk = D[k] if refactor else 0.0
        if refactor:
            a00 = p00 + 1.0
            a01 = p01
            a02 = p02 + 1.0
            # the division starts as soon as p00 is known; every new p is
            # one multiply(-add) with inv of terms formed meanwhile
            s00 = p00 + (1.0 + Dk)
            inv = 1.0 / s00
            if drift:
                # the drift pivot 1 / (p22_new + mu) = s00 / det of the 2x2
                # block of (x_k, c): a second division that runs alongside
                # the first instead of after it (det >= a00 mu + D (a22 + mu):
                # a02^2 <= a00 a22, so the difference does not cancel)
                inv_d = s00 / (s00 * (p22 + (1.0 + mu)) - a02 * a02)
            e00 = Dk * (g1 * (2.0 * a01) + g1sq * a00) - a01 * a01
            e01 = (g2 * Dk) * (g1 * a00 + a01)
            e11 = (g2 * g2 * Dk) * a00
            ia = inv * a02
            A = (g1 * Dk - a01) * inv
            d1 = -(a01 + g1 * a00) * inv
            R = (g2 * Dk) * inv
            O = (g2 * a00) * inv
            gx = -ia
            coef[k, 0] = inv
            coef[k, 1] = d1
            coef[k, 2] = O
            coef[k, 3] = gx
            p00 = p11 + inv * e00
            p01 = inv * e01
            p11 = inv * e11
            p02 = p12 + a02 * A
            p12 = a02 * R
            p22 = (p22 + 1.0) - a02 * ia
        else:
            inv = coef[k, 0]
            d1 = coef[k, 1]
            O = coef[k, 2]
            gx = coef[k, 3]
            A = g1 + d1
            R = g2 - O
        g0[k] = -(l0 + ck) * inv
        q0 = A * l0 + (l1 + d1 * ck)
        q1 = R * l0 - O * ck
        q2 = l2 + gx * (l0 + ck)
        if drift:
            if refactor:
                w0 = p02 * inv_d
                w1 = p12 * inv_d
                wm = mu * inv_d
                p00 -= p02 * w0
                p01 -= p02 * w1
                p11 -= p12 * w1
                p02 *= wm
                p12 *= wm
                p22 *= wm
                gbd[k, 0] = w0
                gbd[k, 1] = w1
                gbd[k, 2] = wm
                gbd[k, 3] = inv_d
            else:
                w0 = gbd[k, 0]
                w1 = gbd[k, 1]
                wm = gbd[k, 2]
                inv_d = gbd[k, 3]
            q0, q1, q2, g3[k] = _drift_linear(q0, q1, q2, w0, w1, wm, inv_d)
    if refactor:
        coef[n, 0] = p22
        coef[n, 1] = g1
        coef[n, 2] = g2
    b = 0.0
    if mode != 0:
        b = (y[0] - q2) / (1.0 + coef[n, 0])
    return b


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _newton_back_rhs(y, g1, g2, mode, c, coef, g0):
    """:func:`_newton_back` without refactoring and without drift: the
    linear part alone, for a new c (:func:`_newton_back_fused` given c)."""
    return _newton_back_fused(y, g1, g2, mode, _RHS_C, 0.0, 0.0, c, c, c, c, c, c, 0.0, 0.0,
                              0.0, 0.0, coef, g0)


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _newton_back_corr(y, g1, g2, mode, beta, sgap, nu, winv, p, coef, g0):
    """The corrector's linear back pass, c = beta - nu - (sgap - p) / w
    formed in it (:func:`_newton_back_fused`, ``_RHS_CORR``)."""
    return _newton_back_fused(y, g1, g2, mode, _RHS_CORR, beta, sgap, p, nu, winv, p, p, p, 0.0,
                              0.0, 0.0, 0.0, coef, g0)


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _newton_back_gondzio(g1, g2, mode, w, nu, winv, dw, dnu, r_out, apt, adt, lo, hi, coef, g0):
    """Gondzio's linear back pass (y = 0), its complementarity rhs r formed
    in it and stored in ``r_out`` (:func:`_newton_back_fused`,
    ``_RHS_GONDZIO``)."""
    return _newton_back_fused(w, g1, g2, mode, _RHS_GONDZIO, 0.0, 0.0, w, nu, winv, dw, dnu, r_out,
                              apt, adt, lo, hi, coef, g0)


@njit(cache=_CACHE, nogil=True, fastmath={"contract"}, inline="always")
def _gondzio_rhs(wk, dwk, nk, dnk, apt, adt, lo, hi):
    """Gondzio's complementarity right-hand side of one sample: the product
    (w + apt dw)(nu + adt dnu) pushed back into [lo, hi] (by at most hi
    from above), branch-free: r = max(lo - p, 0) + max(min(hi - p, 0), -hi)."""
    p = (wk + apt * dwk) * (nk + adt * dnk)
    return max(lo - p, 0.0) + max(min(hi - p, 0.0), -hi)


@njit(cache=_CACHE, nogil=True, fastmath={"contract"}, inline="always")
def _newton_back_fused(y, g1, g2, mode, kind, beta, sgap, w, nu, winv, a1, a2, r_out, apt, adt,
                       lo, hi, coef, g0):
    """:func:`_newton_back` without refactoring and without drift: the
    linear part alone, for a new right-hand side c formed here per sample
    (``kind``; the passes over c that the interior point ran before each
    solve are gone, and with them two streams written and five read):

    - 0 (``_RHS_C``): c = ``a1`` given.
    - 1 (``_RHS_CORR``, the corrector): c = beta - nu - (sgap - p) / w with
      p = ``a1`` the predictor's dw dnu (``_FWD_PRED_P``).
    - 2 (``_RHS_GONDZIO``): y = 0 (not read) and c = -r / w, r
      :func:`_gondzio_rhs` of w, dw = ``a1``, nu, dnu = ``a2``, stored in
      ``r_out`` (for the forward pass).

    Inlined into one function per kind (the kind a constant there: these
    passes are bound by their instruction count as much as by their chain).

    The recursion is written with a loop-carried chain of one fused
    multiply-add per sample (:func:`_newton_back_core`'s is a subtraction
    and a multiply-add, 7 cycles a sample instead of 4): with l_k = q0 -
    y[k+1] the value function's linear term at step k,

        l_{k-1} = A_k l_k + (R_{k+1} l_{k+1} + (d1_k c_k - O_{k+1} c_{k+1} - y_k)),

    (q1 of step k+1 expanded in place), and the baseline's term q2 summed
    as q2 + (gx (l + c) - y) (an addition a sample); forming c is off the
    chain."""
    n = coef.shape[0] - 1
    has_y = kind != _RHS_GONDZIO
    l0 = -y[n] if has_y else 0.0
    l_prev = 0.0
    r_prev = 0.0
    oc_prev = 0.0
    q2 = 0.0
    for k in range(n - 1, -1, -1):
        if kind == _RHS_C:
            ck = a1[k]
        elif kind == _RHS_CORR:
            ck = (beta - nu[k]) - (sgap - a1[k]) * winv[k]
        else:
            r = _gondzio_rhs(w[k], a1[k], nu[k], a2[k], apt, adt, lo, hi)
            r_out[k] = r
            ck = -r * winv[k]
        y1 = y[k + 1] if has_y else 0.0
        y0 = y[k] if has_y else 0.0
        inv = coef[k, 0]
        d1 = coef[k, 1]
        O = coef[k, 2]
        gx = coef[k, 3]
        A = g1 + d1
        R = g2 - O
        t = l0 + ck
        g0[k] = -t * inv
        q2 = q2 + (gx * t - y1)
        l_new = A * l0 + (r_prev * l_prev + ((d1 * ck - oc_prev) - y0))
        l_prev = l0
        r_prev = R
        oc_prev = O * ck
        l0 = l_new
    b = 0.0
    if mode != 0:
        b = ((y[0] if has_y else 0.0) - q2) / (1.0 + coef[n, 0])
    return b


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _newton_fwd(mode, coef, g0, gbd, g3, b, v, w, winv, nu, a1, a2, o1, o2, kind):
    """:func:`_newton_fwd_core` for ``kind`` 0-3 (no scalars)."""
    return _newton_fwd_core(mode, coef, g0, gbd, g3, b, v, w, winv, nu, a1, a2, o1, o2, kind,
                            0.0)


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _newton_fwd_pred(mode, coef, g0, gbd, g3, b, w, winv, nu, p_out):
    """The predictor's forward pass keeping only p = dw dnu (``p_out``) of
    its step: :func:`_newton_fwd_core`, kind ``_FWD_PRED_P``."""
    return _newton_fwd_core(mode, coef, g0, gbd, g3, b, p_out, w, winv, nu, p_out, p_out, p_out,
                            p_out, _FWD_PRED_P, 0.0)


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _newton_fwd_corr(mode, coef, g0, gbd, g3, b, w, winv, nu, p_dnu, dw, sgap):
    """The corrector's forward pass from the predictor's p = dw dnu
    (``p_dnu``, overwritten by dnu): :func:`_newton_fwd_core`, kind
    ``_FWD_CORR_P``."""
    return _newton_fwd_core(mode, coef, g0, gbd, g3, b, dw, w, winv, nu, p_dnu, p_dnu, dw, dw,
                            _FWD_CORR_P, sgap)


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _newton_fwd_gondzio(mode, coef, g0, gbd, g3, b, winv, nu, dw, dnu, dw2, dnu2):
    """Gondzio's forward pass (kind ``_FWD_GONDZIO``, its rhs read from
    ``dnu2``, which it overwrites), as its own function: :func:`_newton_fwd_core`."""
    return _newton_fwd_core(mode, coef, g0, gbd, g3, b, dw2, winv, winv, nu, dw, dnu, dw2, dnu2,
                            _FWD_GONDZIO, 0.0)


@njit(cache=_CACHE, nogil=True, fastmath={"contract"}, inline="always")
def _newton_fwd_core(mode, coef, g0, gbd, g3, b, v, w, winv, nu, a1, a2, o1, o2, kind, sgap):
    """The forward recursion of :func:`_newton_solve` from the baseline
    ``b`` (:func:`_newton_back`), with the interior point's pass over each
    innovation v_k fused in (the recursion is latency-bound: the pass runs
    in its shadow instead of re-reading v).  ``kind`` 0: store v.  1 (the
    predictor): o1 = dw = v - w, o2 = dnu = -nu (1 + dw / w).  2 (the
    corrector, a1 its complementarity rhs): o1 = dw = v - w, a1 = dnu =
    (a1 - nu dw) / w.  3 (a Gondzio corrector from the step a1, a2, o2 its
    complementarity rhs): o1 = a1 + v, o2 = a2 + (o2 - nu v) / w.  Returns
    the ratio tests' maxima (rp, rd) of -dw / w and -dnu / nu (at least 1)
    and, for kinds 1 and 4, the sums of dw nu and dw dnu.

    Kinds 4 and 5 are 1 and 2 with their right-hand sides formed here (as
    :func:`_newton_back_fused` forms its c) instead of read: 4 (the
    predictor) stores only o2 = p = dw dnu (what the corrector needs of it);
    5 (the corrector, a1 = p in): o1 = dw = v - w, a1 = dnu = (sgap - p - w
    nu - nu dw) / w.  Inlined into a function per kind where the interior
    point calls it (the kind a constant there: the pass is bound by its
    instruction count as much as by its chain).
    """
    n = coef.shape[0] - 1
    g1 = coef[n, 1]
    g2 = coef[n, 2]
    drift = mode == 2
    rp = 1.0
    rd = 1.0
    s_dn = 0.0
    s_dd = 0.0
    xm1 = 0.0
    xm2 = 0.0
    for k in range(n):
        if drift:
            b = gbd[k, 2] * b - gbd[k, 0] * xm1 - gbd[k, 1] * xm2 - g3[k]
        d1 = coef[k, 1]
        O = coef[k, 2]
        r = coef[k, 3] * b + g0[k]
        vk = d1 * xm1 - O * xm2 + r
        xk = (g1 + d1) * xm1 + ((g2 - O) * xm2 + r)
        xm2 = xm1
        xm1 = xk
        if kind == 0:
            v[k] = vk
            continue
        nk = nu[k]
        wi = winv[k]
        if kind == 1 or kind == 4:
            d_w = vk - w[k]
            t = d_w * wi
            d_nu = -nk * (1.0 + t)
            s_dn += d_w * nk
            s_dd += d_w * d_nu
            if kind == 1:
                o1[k] = d_w
                o2[k] = d_nu
            else:
                o2[k] = d_w * d_nu
        elif kind == 2:
            d_w = vk - w[k]
            d_nu = (a1[k] - nk * d_w) * wi
            o1[k] = d_w
            a1[k] = d_nu
        elif kind == 5:
            wk = w[k]
            d_w = vk - wk
            d_nu = (((sgap - a1[k]) - wk * nk) - nk * d_w) * wi
            o1[k] = d_w
            a1[k] = d_nu
        else:
            d_w = a1[k] + vk
            d_nu = a2[k] + (o2[k] - nk * vk) * wi
            o1[k] = d_w
            o2[k] = d_nu
        rp = max(rp, -d_w * wi)
        if -d_nu > rd * nk:
            # rare once rd is near its maximum: no division per sample
            rd = -d_nu / nk
    return rp, rd, s_dn, s_dd


@njit(cache=_CACHE, nogil=True, fastmath=_IPM_FAST)
def _ipm_iteration(y, g1, g2, beta, mode, mu, w, nu, winv, gap_in, c, coef, g0, gbd, g3, v,
                   dw, dnu, dw2, dnu2, zero, guess, n_corr, sig_min):
    """One Mehrotra predictor-corrector iteration (with up to ``n_corr``
    Gondzio centrality correctors) of the primal-dual interior point on

        min 1/2 ||y - x - b||^2 [+ drift] + beta 1'w   s.t.  M x = w >= 0

    (w = alpha s, beta = lamG / alpha), state (w, nu > 0).  The Newton
    step's primal point does not depend on the current x, so the state is
    (w, nu) alone.  Updates
    w, nu in place, writes the active-set guess (Tapia indicator: w falls
    faster than nu) into ``guess`` and returns (gap before the step,
    number of guesses that changed, step length, ok, gap after it); gap is
    the mean complementarity w'nu / n, the barrier parameter.

    ``winv`` (1 / w) of the new point is formed in the update's pass, for
    the next iteration, which is told so by ``gap_in`` >= 0 (the gap
    returned); with ``gap_in`` < 0 (the first iteration) it is formed here.
    The factoring pass forms D = nu / w and c = beta - nu itself
    (:func:`_newton_back_ipm`).  Without drift (``mode`` 0, 1) every right-hand side is formed
    inside the solves' passes (:func:`_newton_back_corr`,
    :func:`_newton_back_gondzio`, :func:`_newton_fwd_pred`,
    :func:`_newton_fwd_corr`) and ``c``, ``v``, ``zero`` are not touched;
    with drift the corrector's and Gondzio's c are formed in passes of their
    own and solved by :func:`_newton_back` (``zero``: zeros, length T).
    """
    n = w.shape[0]
    gap = gap_in
    if not gap_in >= 0.0:
        gap = 0.0
        for k in range(n):
            winv[k] = 1.0 / w[k]
            gap += w[k] * nu[k]
        gap /= n
    if not (gap > 0.0 and gap < math.inf):
        return gap, 0, 0.0, False, -1.0
    # predictor (affine scaling): complementarity target 0; dnu = -nu (1 + dw / w)
    # (the predicted gap sum (w + ap dw)(nu + ad dnu) from sums formed in
    # the same pass: w dnu = -w nu - nu dw)
    # (without drift the right-hand sides are formed inside the solves'
    # passes, _newton_back_fused and _newton_fwd_core's kinds 4, 5: no passes
    # of their own; the predictor's step is kept only as p = dw dnu, in dnu)
    fused = mode != 2
    b0 = _newton_back_ipm(y, g1, g2, mode, mu, beta, nu, winv, coef, g0, gbd, g3)
    if fused:
        rp, rd, s_dn, s_dd = _newton_fwd_pred(mode, coef, g0, gbd, g3, b0, w, winv, nu, dnu)
    else:
        rp, rd, s_dn, s_dd = _newton_fwd(mode, coef, g0, gbd, g3, b0, v, w, winv, nu, v, v, dw,
                                         dnu, _FWD_PRED)
    ap = 1.0 / rp
    ad = 1.0 / rd
    gap_aff = gap + ((ap - ad) * s_dn + ap * ad * s_dd) / n - ad * gap
    sig = min(1.0, max(sig_min, (max(gap_aff, 0.0) / gap) ** 3))
    sgap = sig * gap
    # corrector: target sig gap, with the predictor's second-order term
    if fused:
        b0 = _newton_back_corr(y, g1, g2, mode, beta, sgap, nu, winv, dnu, coef, g0)
        rp, rd, _s, _t = _newton_fwd_corr(mode, coef, g0, gbd, g3, b0, w, winv, nu, dnu, dw, sgap)
    else:
        for k in range(n):
            r = sgap - dw[k] * dnu[k]
            dnu[k] = r - w[k] * nu[k]          # the corrector's complementarity rhs
            c[k] = beta - nu[k] - r * winv[k]
        b0 = _newton_back(y, g1, g2, mode, mu, c, c, coef, g0, gbd, g3, _NO)  # (D, not read here: c)
        rp, rd, _s, _t = _newton_fwd(mode, coef, g0, gbd, g3, b0, v, w, winv, nu, dnu, v, dw, v,
                                     _FWD_CORR)
    ap = 1.0 / rp
    ad = 1.0 / rd
    # Gondzio: push the products that would leave [0.1, 10] sig gap back in
    for corr in range(n_corr):
        if 1.01 * min(ap, ad) > 1.0:
            # a corrector is kept only if it lengthens the step by 1 %, and
            # no step exceeds 1: skipped, exactly (late iterations)
            break
        apt = min(1.0, 1.5 * ap + 0.2)
        adt = min(1.0, 1.5 * ad + 0.2)
        lo = 0.1 * sgap
        hi = 10.0 * sgap
        if fused:
            b0 = _newton_back_gondzio(g1, g2, mode, w, nu, winv, dw, dnu, dnu2, apt, adt, lo, hi,
                                      coef, g0)
        else:
            for k in range(n):
                r = _gondzio_rhs(w[k], dw[k], nu[k], dnu[k], apt, adt, lo, hi)
                c[k] = -r * winv[k]
                dnu2[k] = r
            b0 = _newton_back(zero, g1, g2, mode, mu, c, c, coef, g0, gbd, g3, _NO)
        rp, rd, _s, _t = _newton_fwd_gondzio(mode, coef, g0, gbd, g3, b0, winv, nu, dw, dnu, dw2,
                                             dnu2)
        ap2 = 1.0 / rp
        ad2 = 1.0 / rd
        if min(ap2, ad2) < 1.01 * min(ap, ad):
            break
        ap = ap2
        ad = ad2
        dw, dw2 = dw2, dw
        dnu, dnu2 = dnu2, dnu
    ap = min(1.0, 0.99 * ap)
    ad = min(1.0, 0.99 * ad)
    changes = 0
    bad = 0
    gap_next = 0.0
    for k in range(n):
        wk = w[k]
        nk = nu[k]
        w_new = wk + ap * dw[k]
        nu_new = nk + ad * dnu[k]
        # Tapia indicator (El-Bakry, Tapia & Zhang): at the solution w/w_old
        # -> 0 on the active set and nu/nu_old -> 0 on the free set
        g = w_new * nk < nu_new * wk
        changes += g != guess[k]
        guess[k] = g
        w[k] = w_new
        nu[k] = nu_new
        bad += not (w_new > 0.0 and nu_new > 0.0)
        # the next iteration's weights; np.divide, not '/': numba checks
        # each '/' divisor for zero, which keeps the loop scalar (2x slower);
        # this one vectorises (and gives inf, not an exception, at w = 0)
        wi = np.divide(1.0, w_new)
        winv[k] = wi
        gap_next += w_new * nu_new
    return gap, changes, min(ap, ad), bad == 0, gap_next / n


# interior-point iterations that may pass without mu falling below a half
# of its best before phase 2 gives up (rounding floor reached)
_IPM_PATIENCE = 4
# ... while the gap is above _IPM_NEAR times the first one
_IPM_PATIENCE_FAR = 32
_IPM_NEAR = 1e-6
# ... not counting, up to _IPM_RISE_MAX of them, iterations after which the
# gap rose by more than _IPM_RISE times
_IPM_RISE = 1.05
_IPM_RISE_MAX = 100
# crossover: below this many violators the best exchanged set is kept and
# only the neighbourhoods of its violators take the interior point's guess
_MERGE_MAX = 256
# Gondzio correctors per interior-point iteration
_IPM_CORRECTORS = 1
# after a step shorter than _IPM_SHORT, aim at least _IPM_RECENTRE * mu
_IPM_SHORT = 0.2
_IPM_RECENTRE = 0.3
# interior point started from the exchange's last iterate at mu0 = this *
# the default start's mu (0: the default start, every w and nu equal)
_IPM_WARM = 1e-2
# the interior point's start treats lambda below this * the trace's sd as
# this (see _ipm_crossover)
_IPM_LAM_FLOOR = 5e-4
# a cold interior point starts with w (= alpha s) at which the calcium is
# about this many sd of the trace (at most w = sd).  Steps on 3 traces each
# of GCaMP6s 100 Hz, the calab preset and the 1 kHz kernel at lambda 0.05
# and 0, at 10k, 100k and 1M frames, 863 in all at w = sd, 786 at 3, 719 at
# 10, 728 at 30, 737 at 100 (lambda 0 at 1 kHz, 1M frames: 57-64 -> 32-35)
_IPM_X0 = 10.0
# after each iteration, w nu >= this times the gap on every sample (0: off).
# Steps, the same 36 traces: 719 without, 712-715 at 0.01-0.001 after
# short steps, 732 at 0.1, 649 at 0.3 (1M frames: GCaMP6s 100 Hz 22-25 ->
# 19-21, calab preset 20-23 -> 18-19, 1 kHz 25-30 -> 20-22)
_IPM_LIFT = 0.3


@njit(cache=_CACHE, nogil=True)
def _ipm_crossover(y, g1, g2, alpha, beta, mode, mu, active, best, best_flip, best_bad, it,
                   max_iters, gain, gb, x, bvec, u, nu_kkt, flip, rel_eps, s_ipm, ws, guess, warm):
    """Phase 2 of :func:`pdas_one`: interior point with crossover.

    Returns (it, converged, best_bad, n_ipm).  On success ``active``,
    ``x``, ``bvec``, ``u`` hold the exact optimum.  ``best``, ``best_flip``
    and ``best_bad`` are the set with the fewest violators seen so far, its
    violators and their count (n + 1 if none); a guess is tried merged into
    it while that count is small.  Without success ``best`` is updated and
    ``s_ipm`` receives the last interior point's activity w / alpha
    (feasible, and near-optimal once the gap is small); n_ipm = 0 if there
    is none.  ``ws`` (float, :func:`workspace_sizes`' interior-point part)
    and ``guess`` (bool, n) are workspaces.
    """
    T = y.shape[0]
    n = T - 1
    mean = 0.0
    for t in range(T):
        mean += y[t]
    mean /= T
    sc = 0.0
    for t in range(T):
        sc += (y[t] - mean) ** 2
    sc = math.sqrt(sc / T)
    if not sc > 0.0:
        sc = 1.0
    # start: every w and nu equal (the Newton step does not need an x)
    # (the factoring pass forms D from nu and 1 / w; c, v and zero are
    # touched only with drift)
    w = ws[0:n]
    nu = ws[n:2 * n]
    winv = ws[2 * n:3 * n]
    c = ws[3 * n:4 * n]
    g0 = ws[4 * n:5 * n]
    v = ws[5 * n:6 * n]
    dw = ws[6 * n:7 * n]
    dnu = ws[7 * n:8 * n]
    dw2 = ws[8 * n:9 * n]
    dnu2 = ws[9 * n:10 * n]
    o = 10 * n
    m_d = n if mode == 2 else 1
    g3 = ws[o:o + m_d]
    o += n
    coef = ws[o:o + _NCOEF * (n + 1)].reshape((n + 1, _NCOEF))
    o += _NCOEF * (n + 1)
    gbd = ws[o:o + 4 * m_d].reshape((m_d, 4))
    o += 4 * n
    zero = ws[o:o + T]
    # nu = beta (c = 0) is the start that works (x0.5 or x2 costs 5-10
    # iterations); at lambda ~ 0 it has no scale and the interior point
    # stalled on slow kernels (rel. gap ~5e-4 at 1 kHz, 0.2/3.0 s): a floor
    # at the beta of lambda = _IPM_LAM_FLOOR sc (beta = lambda / (1 - g1 - g2))
    nu0 = max(beta, sc, _IPM_LAM_FLOOR * sc / max(1.0 - g1 - g2, 1e-300))
    if warm and _IPM_WARM > 0.0 and it > 0:
        # warm start from the last exchange step's subspace optimum (spikes u
        # on its free set, multipliers nu_kkt on its active set), every
        # product w nu set to one small mu0: a centred point, so the first
        # steps are not cut short at the boundary
        mu0 = _IPM_WARM * sc * nu0
        wf = math.sqrt(mu0 * sc / nu0)
        nf = mu0 / wf
        for k in range(n):
            a = alpha * u[k] if not active[k] else 0.0
            bn = nu_kkt[k] if active[k] else 0.0
            if a * nf >= bn * wf:
                wk = max(a, wf)
                w[k] = wk
                nu[k] = mu0 / wk
                guess[k] = False
            else:
                nk = max(bn, nf)
                nu[k] = nk
                w[k] = mu0 / nk
                guess[k] = True
    else:
        # every w equal, the calcium it makes (x = M^-1 w, ~ w / (1 - g1 -
        # g2) away from the trace's start) about _IPM_X0 sd of the trace
        # (w = sc: ~6e5 sd on the 1 kHz 0.2/3.0 s kernel)
        w0 = sc * min(1.0, _IPM_X0 * max(1.0 - g1 - g2, 1e-300))
        for k in range(n):
            w[k] = w0
            nu[k] = nu0
            guess[k] = True
    if mode == 2:
        for t in range(T):
            zero[t] = 0.0
    gap_best = math.inf
    gap_first = -1.0
    step = 1.0
    n_ipm = 0
    stale = 0
    rising = 0
    tried = False
    since_try = 0
    merge = True
    # reach of a sample: twice the decay time in samples (d the larger AR root)
    d_root = _dominant_root(g1, g2)
    reach = n if d_root >= 1.0 else min(n, int(2.0 / (1.0 - d_root)) + 2)
    gap_next = -1.0
    # (not where lambda is below the floor of the start: there the samples
    # before the first spike need products far from the gap; lambda 0 at
    # 1 kHz, 1M frames: 32-35 -> 51-91 steps with it)
    lift = _IPM_LIFT > 0.0 and beta >= nu0
    while it < max_iters:
        gap, changes, step, ok, gap_next = _ipm_iteration(
            y, g1, g2, beta, mode, mu, w, nu, winv, gap_next, c, coef, g0, gbd, g3, v, dw,
            dnu, dw2, dnu2, zero, guess, _IPM_CORRECTORS,
            _IPM_RECENTRE if step < _IPM_SHORT else 0.0)
        it += 1
        if not ok:
            n_ipm = 0
            break
        n_ipm += 1
        gap_after = gap_next
        if lift:
            # the samples that blocked the step land at 1 % of their w or nu
            # and block the next step in the other one (a sample between two
            # spike times: seen on every long trace); products below
            # _IPM_LIFT times the gap are raised to it, in nu where the
            # guess is active, else in w
            lo = _IPM_LIFT * gap_next
            raised = 0.0
            for k in range(n):
                p = w[k] * nu[k]
                if p < lo:
                    raised += lo - p
                    if guess[k]:
                        nu[k] = lo / w[k]
                    else:
                        w[k] = lo / nu[k]
                        winv[k] = 1.0 / w[k]
                    # (the next iteration forms its weights from nu and winv:
                    # _newton_back_ipm)
            gap_next += raised / n
        if gap_first < 0.0:
            gap_first = gap
        # stop at the rounding floor: the gap has fallen by 1e-18, or has
        # stopped falling
        done = gap < 1e-18 * gap_first
        if gap < 0.5 * gap_best:
            gap_best = gap
            stale = 0
        elif gap_after > _IPM_RISE * gap and rising < _IPM_RISE_MAX:
            # the gap rises: the iterate is still far from the central path
            # (lambda 0 with a free baseline on a slow kernel: the samples
            # before the first spike take multipliers that grow with T,
            # ~1.3-2x per iteration while the gap rises, 35 iterations at
            # 4,000,000 frames at 1 kHz), not at a rounding floor: not stale
            rising += 1
        else:
            stale += 1
            # patience near the rounding floor only: far from it a long
            # trace on a slow kernel takes short steps (some sample always
            # blocks) and the gap halves only every few iterations (lambda 0,
            # 1 kHz, 400,000 frames: stopped at 1/5 of the first gap, then
            # 10,000 steps of crossover without success; now ~45 iterations;
            # 20,000-frame pieces of long traces on slow kernels at small
            # lambda: 93 of 720 unsettled after 400 steps, now 0)
            patience = _IPM_PATIENCE if gap < _IPM_NEAR * gap_first else _IPM_PATIENCE_FAR
            done = done or stale > patience
        since_try += changes
        n_free = 0
        for k in range(n):
            if not guess[k]:
                n_free += 1
        # try the guess once it has settled, unless it is the one tried last
        # (or the all-active start)
        if n_free == 0 or (tried and since_try == 0) or (changes > 2 + n_free // 8 and not done):
            if done:
                break
            continue
        tried = True
        since_try = 0
        use_merge = merge and best_bad <= _MERGE_MAX
        bad_before = best_bad
        if use_merge:
            # keep the best exchanged set, take the new guess only around
            # its violators (the rest of it is right already)
            for k in range(n):
                active[k] = best[k]
            for k in range(n):
                if best_flip[k]:
                    for j in range(max(0, k - reach), min(n, k + reach + 1)):
                        active[j] = guess[j]
        else:
            for k in range(n):
                active[k] = guess[k]
        prev = n + 1
        singles = 0
        while it < max_iters:
            n_bad, last_bad = _kkt_step(y, g1, g2, alpha, beta, mode, mu, active, gain, gb, x,
                                        bvec, u, nu_kkt, flip, rel_eps)
            it += 1
            if n_bad == 0:
                return it, True, 0, n_ipm
            if n_bad < best_bad:
                best_bad = n_bad
                for k in range(n):
                    best[k] = active[k]
                    best_flip[k] = flip[k]
            if 2 * n_bad <= prev:
                # exchanges from a good guess settle fast
                prev = n_bad
                for k in range(n):
                    if flip[k]:
                        active[k] = not active[k]
            elif n_bad <= 4 and singles < 4:
                # a few left that the block exchange cannot place: one at a
                # time (Murty's rule)
                singles += 1
                prev = n_bad
                active[last_bad] = not active[last_bad]
            else:
                # go back to the interior point
                break
        # a merge that did not beat the best set is not tried again until a
        # plain guess improves on it
        if use_merge:
            merge = best_bad < bad_before
        elif best_bad < bad_before:
            merge = True
        if done:
            break
    for k in range(n):
        s_ipm[k] = w[k] / alpha
    return it, False, best_bad, n_ipm


@njit(cache=_CACHE, nogil=True)
def _objective_best_b(y, s, g1, g2, alpha, lamG, mode, mu, work, gain, bvec):
    """F(s, b) at the best baseline b for s (written to bvec)."""
    T = y.shape[0]
    forward_conv(s, g1, g2, alpha, work)
    for t in range(T):
        work[t] = y[t] - work[t]
    best_baseline(work, mode, mu, gain, bvec)
    return objective_one(y, s, bvec, g1, g2, alpha, lamG, mu, work)



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
    scratch = np.empty(W, np.int64)
    c0 = 0
    while c0 < T:
        c1 = min(c0 + W, T)
        cur = np.empty(c1 - c0, np.int64)
        _argsort(y[c0:c1], cur, scratch)
        for i in range(c1 - c0):
            cur[i] += c0
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


_RUN = 16


@njit(cache=_CACHE, nogil=True)
def _argsort(v, out, tmp):
    """The order of v (ascending, ties in index order) into ``out``; ``tmp``
    scratch of at least v's length.  Runs of _RUN sorted by insertion, then
    merged pairwise (a stable merge sort, O(m log m)):
    np.argsort would compile numba's quicksort machinery, ~3 s of a cold
    compile."""
    m = v.shape[0]
    # runs of _RUN by insertion, then merged pairwise
    for lo in range(0, m, _RUN):
        hi = min(lo + _RUN, m)
        for i in range(lo, hi):
            vi = v[i]
            j = i
            while j > lo and v[out[j - 1]] > vi:
                out[j] = out[j - 1]
                j -= 1
            out[j] = i
    src = out
    dst = tmp
    in_out = True
    width = _RUN
    while width < m:
        lo = 0
        while lo < m:
            mid = min(lo + width, m)
            hi = min(lo + 2 * width, m)
            i = lo
            j = mid
            for k in range(lo, hi):
                if j >= hi or (i < mid and v[src[i]] <= v[src[j]]):
                    dst[k] = src[i]
                    i += 1
                else:
                    dst[k] = src[j]
                    j += 1
            lo = hi
        src, dst = dst, src
        in_out = not in_out
        width *= 2
    if not in_out:
        for i in range(m):
            out[i] = src[i]


@njit(cache=_CACHE, nogil=True)
def rolling_quantile_rows(y, W, q, out):
    for i in range(y.shape[0]):
        rolling_quantile_one(y[i], W, q, out[i])


# ------------------------------------------------------------ row drivers
# Serial and GIL-free: solver.py hands blocks of rows to a thread pool, which
# costs nothing for a single row (the slider path), unlike a numba prange
# launch (measured ~9 ms of overhead on one 54k-frame trace).  ``b`` is
# (n, 1) for the constant-baseline modes and (n, T) for drift.
def workspace_sizes(T):
    """(floats, bools) of the workspaces :func:`pdas_rows` needs for T frames:
    the baseline, :func:`pdas_one`'s arrays and its interior point's."""
    n = T - 1
    return (26 + _NCOEF) * n + 4 * T + _NCOEF, 5 * n


# a cold start on a kernel decaying over more than _COARSE_DECAY samples
# (0: never) starts from the exact solve of the trace binned by k frames
# (:func:`_coarse_start`), k = the decay in samples / _COARSE_PER (at least
# 2, at most _COARSE_MAX, the binned trace at least _COARSE_MIN_T frames),
# and settles from its spikes as a warm start does.  One trace of 54,000
# frames, cold pdas_rows before -> after (coarse + warm steps): GCaMP6s
# 100 Hz 15 -> 6 ms (k 4-12 alike), calab's gcamp6s preset 17-19 -> 7-8 ms,
# GCaMP6s 30 Hz 8.4 -> 6 ms.  Not at lambda 0: there the binned spikes
# miss most of the free samples' neighbours and the warm start went cold
# (lambda 0 at 1 kHz: 1600 violators at the first step).  Not on kernels
# decaying over more than _EARLY_DECAY samples on traces longer than
# _COARSE_EARLY_T frames, whose warm start settles by
# dense solves and the interior point, not locally: the 1 kHz kernel (0.2/
# 3.0 s) took 17 -> 8-9 ms at 54,000 frames, but at 1,000,000 it went cold
# after the binned solve (515 -> 545 ms at k = 32, 2.3 s at k = 8), and the
# local exchange from that guess cycles (7,000 violators after 40 steps)
# ... and not on kernels peaking more than _COARSE_PEAK samples after a
# spike: a random sweep of 25,000 problems (fs 7.5-300 Hz, tau_rise up to
# 0.5 tau_decay, lambda 0.003-10, T 160-50,000, every baseline mode) met
# the plain cold path's objective within 1e-10 wherever the decay was at
# most 340 samples or the peak at most 170; beyond both (tau_rise 0.6-1.4 s
# at 158-300 Hz, outside the sliders) the warm settle stopped up to 4e-9
# above it in 20 of 2,200, KKT-optimal within its tolerance but not exact
_COARSE_DECAY = 30.0
_COARSE_PEAK = 120.0
_COARSE_PER = 10.0
_COARSE_MAX = 32
_COARSE_MIN_T = 64
# ... and only with a step budget of at least _COARSE_MIN_BUDGET (its steps
# count in full against max_iters: a small budget that the plain cold path
# meets is not spent on it)
_COARSE_MIN_BUDGET = 40
# ... and on kernels decaying over more than _EARLY_DECAY samples (the 1 kHz
# kernel) where the binned guess's free set fits the warm start's dense
# settle (_coarse_dense; else the plain cold path, the binned solve lost:
# ~1/k of a cold solve).  There the warm start settles by dense solves, not
# by the local exchange, and its answer is polished exact (_coarse_polish).
# 1 kHz (0.2/3.0 s), lambda 0.05, 1 Hz spikes, 54,000 frames, per trace,
# plain -> binned (k 16 / 32 / 64): scalar 22.4 -> 13.0 / 11.4 / 12.5 ms,
# drift 31.2 -> 10.1 / 10.0 / 11.8 ms, same objectives (bench_regimes.py
# --size mid, 20 traces: CPU 0.333 -> 0.186 s, before the polish).
# Without the polish bench_cold_start.py --khz found 3 of 24,000 random
# problems 1.8e-9 to 2.8e-9 above the optimum (an independent NNLS
# reference; tau 0.16-0.32 / 1.15-2.75 s, low noise), KKT-optimal within
# the tolerance: a spike on the sample next to the optimum's, hidden by the
# full step's rounding (_coarse_polish)
# ... on traces of at most _COARSE_EARLY_T frames: longer ones rarely fit
# (1 Hz spikes: ~1,500 free samples at 1,000,000 frames, where the binned
# solve alone took 67 of ~600 ms, lost)
_COARSE_EARLY_T = 100_000
# ... peaking at most _COARSE_PEAK_EARLY samples after a spike: on slower
# rises at 1 kHz (tau_rise 0.33-0.8 s, peaks 720-1,200 samples) the dense
# settle from the binned guess stopped 2e-9 to 7e-6 above the plain cold
# optimum on ~1 % of random problems (bench_cold_start.py --khz; low noise,
# small lambda), KKT-optimal within the tolerance (a warm re-solve from
# that answer wanders among such sets too; _DENSE_VERIFY 4 did not help;
# measured before _coarse_polish)
_COARSE_PEAK_EARLY = 600.0
# ... and not on kernels whose AR roots lie closer than _COARSE_CLOSE of
# 1 - d (tau_rise within ~1 % of tau_decay; outside the sliders at 1 kHz):
# a reviewer's 150 random 1 kHz problems with tau_rise 1e-5 to 1e-2 below
# tau_decay, 9 stopped 9e-9 to 7.2e-4 above the optimum (roots 5e-5 to
# 3e-4 of 1 - d apart) while the plain cold path met it on all: there a
# wrong free set passed the settle's full step with no violators
_COARSE_CLOSE = 1e-2


@njit(cache=_CACHE, nogil=True)
def _dominant_root(g1, g2):
    """The larger AR(2) root d (the kernel decays as d^t; with complex
    roots their real part)."""
    disc = g1 * g1 + 4.0 * g2
    return 0.5 * (g1 + math.sqrt(disc)) if disc > 0.0 else 0.5 * g1


@njit(cache=_CACHE, nogil=True)
def _coarse_close_roots(g1, g2):
    """Whether the AR(2) roots are real and apart by less than
    ``_COARSE_CLOSE`` of 1 - d (tau_rise within ~1 % of tau_decay), or not
    real: no binned start there (its settle can stop on a wrong set that
    the full step's KKT test passes)."""
    disc = g1 * g1 + 4.0 * g2
    if not disc > 0.0:
        return True
    d, r = _ar_roots(g1, g2)
    return not (d - r >= _COARSE_CLOSE * (1.0 - d))


@njit(cache=_CACHE, nogil=True)
def _coarse_factor(g1, g2, lamG, T, blocks=False):
    """The binning factor of :func:`_coarse_start` for a cold start (0: a
    plain cold start).  With ``blocks``, on kernels decaying over more than
    ``_EARLY_DECAY`` samples: the binned start settled by blocks
    (:func:`_coarse_settle`; any T, lambda 0 too); else by the dense
    settle."""
    d_root = _dominant_root(g1, g2)
    if d_root >= 1.0:
        decay = math.inf
    else:
        decay = 1.0 / (1.0 - d_root)
    if _coarse_close_roots(g1, g2):
        return 0
    early = _EARLY_DECAY > 0.0 and decay > _EARLY_DECAY
    if blocks:
        if (not early or _BLOCK_STEPS <= 0 or not _coarse_blocks_apply(g1, g2)
                or peak_samples(g1, g2) > _BLOCK_PEAK or not lamG >= 0.0):
            return 0
    elif _COARSE_DECAY <= 0.0 or not lamG > 0.0:
        return 0
    if not decay > _COARSE_DECAY:
        return 0
    if early:
        # settled by dense solves (pdas_rows checks that the binned guess
        # fits them, _coarse_dense), or by blocks
        if not blocks and (T > _COARSE_EARLY_T or peak_samples(g1, g2) > _COARSE_PEAK_EARLY):
            return 0
    elif peak_samples(g1, g2) > _COARSE_PEAK:
        return 0
    k = int(min(decay / _COARSE_PER, float(_COARSE_MAX)))
    k = max(k, 2)
    while k > 1 and T // k < _COARSE_MIN_T:
        k -= 1
    return k if k >= 2 else 0


@njit(cache=_CACHE, nogil=True)
def _coarse_dense(g1, g2, active, n_pws):
    """Whether a binned guess ``active`` may go on as a warm start: always
    on kernels decaying over at most ``_EARLY_DECAY`` samples; beyond, only
    if its free set fits the dense settle of :func:`pdas_one`'s warm start
    (its ``cmax`` from the interior point's workspace, ``n_pws`` floats of
    ``pdas_rows``' pws), else that warm start goes to the cold interior
    point at its first step."""
    if not _EARLY_DECAY > 0.0:
        return True
    d_root = _dominant_root(g1, g2)
    if d_root < 1.0 and _EARLY_DECAY * (1.0 - d_root) >= 1.0:
        return True
    n = active.shape[0]
    T = n + 1
    # (pdas_one's ipm_ws: the rest of _coarse_views)
    room = n_pws - _COARSE_VIEWS_HEAD * n - 2 * T - 2 * (n + 2)
    if _DENSE_MAX <= 0 or room <= 0:
        return False
    cmax = min(_DENSE_MAX, int(math.sqrt(room / 2.0)) - 8)
    return cmax >= _DENSE_MIN and dense_fits(active, cmax, _DENSE_WORK * n)


@njit(cache=_CACHE, nogil=True)
def _coarse_model(g1, g2, alpha, k):
    """(g1, g2, alpha) of the kernel sampled every ``k`` >= 2 frames,
    h_c[j] = h[j k]: AR(2) roots d^k, r^k, so g1_c = d^k + r^k, g2_c =
    -(d r)^k = -(-g2)^k, and alpha_c = alpha a[k-1], a the AR(2) impulse
    response ((d^k - r^k) / (d - r)).  Both p_j = d^j + r^j and a follow
    the AR(2) recursion: real or complex roots alike."""
    p2 = 2.0
    p1 = g1
    a2 = 1.0
    a1 = g1
    for _j in range(2, k + 1):
        p = g1 * p1 + g2 * p2
        p2 = p1
        p1 = p
        a = g1 * a1 + g2 * a2
        a2 = a1
        a1 = a
    # (p1 = p_k, a2 = a[k-1])
    return p1, -((-g2) ** k), alpha * a2


@njit(cache=_CACHE, nogil=True)
def _bin_means(y, k, out):
    """out[j] = the mean of y[j k : j k + k] (its sum times 1 / k), for
    every j < len(out)."""
    inv = 1.0 / k
    for j in range(out.shape[0]):
        acc = 0.0
        for t in range(j * k, j * k + k):
            acc += y[t]
        out[j] = acc * inv


@njit(cache=_CACHE, nogil=True)
def _coarse_start(y, g1, g2, alpha, lamG, mode, mu, k, active, fws, bws, max_iters,
                  first0=False):
    """A cold start's guess from the trace binned by ``k`` frames: the same
    problem on the bin means (the kernel sampled every k frames: AR(2)
    roots d^k, r^k, h_c[j] = h[j k]; lamG / k and mu / k^2, the objective
    per frame), solved exactly by :func:`pdas_one` (cold), each coarse spike
    placed at the middle frame of its bin.  Writes ``active`` (length T-1)
    and returns the coarse solve's steps and whether it settled (if not,
    its iterate is no guess: the caller starts cold).  ``fws``, ``bws``:
    float and bool workspaces of at least :func:`workspace_sizes` (T) minus T floats
    (``pdas_rows``' pws), not read afterwards.  With ``first0`` a spike in
    the first bin is placed at frame 0 instead (the calcium already there
    when the trace starts; ``_WARM_FIRST0``)."""
    T = y.shape[0]
    n = T - 1
    Tc = T // k
    nc = Tc - 1
    g1c, g2c, alpha_c = _coarse_model(g1, g2, alpha, k)
    yc = fws[0:Tc]
    sc = fws[Tc:2 * Tc]
    bc = fws[2 * Tc:3 * Tc]
    pws = fws[3 * Tc:]
    inv_k = 1.0 / k
    _bin_means(y, k, yc)
    act_c = bws[4 * nc:5 * nc]
    for j in range(nc):
        act_c[j] = True
    it_c = 0
    ok = False
    if (_COARSE2_K >= 3 and bws.shape[0] - 5 * nc >= Tc // _COARSE2_K
            and ((lamG == 0.0 and mode != 2 and Tc >= _COARSE2_MIN_T)
                 or ((lamG == 0.0 or _COARSE2_LAM) and _coarse2_slow(g1c, g2c, Tc)))):
        # (the binned trace's own binned start, then its warm start)
        it_c, ok = _coarse_start2(yc, g1c, g2c, alpha_c, lamG * inv_k, mode, mu * inv_k * inv_k,
                                  act_c, max_iters, sc, bc, pws, bws, bws[5 * nc:])
        if not ok:
            for j in range(nc):
                act_c[j] = True
    if not ok:
        it2, ok = pdas_one(yc, g1c, g2c, alpha_c, lamG * inv_k, mode, mu * inv_k * inv_k,
                           act_c, max_iters - it_c, sc, bc, pws, bws, 1e-11, _NO, _NO,
                           _COLD_AT_ONCE, _YES)
        it_c += it2
    for t in range(n):
        active[t] = True
    if not ok:
        return it_c, False
    off = (k - 1) // 2
    for j in range(nc):
        if sc[j] > 0.0:
            active[min(j * k + off, n - 1)] = False
    if first0 and nc > 0 and sc[0] > 0.0 and sc[0] > _WARM_FIRST0_MED * _positive_median(sc[0:nc]):
        active[min(off, n - 1)] = True
        active[0] = False
    return it_c, True


@njit(cache=_CACHE, nogil=True)
def _positive_median(v):
    """The median of the positive entries of ``v`` (0 if none)."""
    m = 0
    for j in range(v.shape[0]):
        m += v[j] > 0.0
    if m == 0:
        return 0.0
    w = np.empty(m)
    m = 0
    for j in range(v.shape[0]):
        if v[j] > 0.0:
            w[m] = v[j]
            m += 1
    return np.median(w)


# a large warm move at 1 kHz that bails to the binned start (_coarse_row)
# places the first bin's spike at frame 0 where it is more than
# _WARM_FIRST0_MED times the median binned spike (_WARM_FIRST0: the calcium
# already there when the trace starts; at the bin's middle frame it left the
# first step's baseline 0.10 above the optimum's on lambda 0 at 1 kHz,
# tau_decay +50 %: 3,357 violators at the second step against 140; where that
# spike is small, tau_decay -50 % (0.3-1.1 times the median), moving it cost
# 0.3-0.9 ms), and settles directly (_coarse_settle's direct_bad) once a step
# leaves at most _WARM_SETTLE_DIRECT violators
_WARM_FIRST0 = True
_WARM_FIRST0_MED = 2.0
_WARM_SETTLE_DIRECT = np.int64(256)
# ... on the gradient at the step's own spikes, negative ones too (clipped,
# lambda 0 at 1 kHz, tau_decay -2 %, seeds 1 and 2: a step with 178 / 253
# violators, 7 / 1 of them negative spikes, settled directly changed 7 / 5
# samples and the next step flagged 177 / 248 again)
_WARM_SETTLE_RAW = True


# a warm start at 1 kHz (_coarse_row) whose guess, binned by the binned
# start's k frames, leaves more than _WARM_SKIP of the binned samples
# violating at its first binned step goes to the binned start without its
# full-resolution warm step (which would flag more than n / _BAIL_AT_ONCE and
# bail; 0.3-0.45 ms).  Measured on both 1 kHz regimes, seeds 0-5, the nine
# bench moves, scalar and drift: tau_decay -50 % 0.40-0.55 of the binned
# samples, every other move at most 0.17 (tau_decay +50 %, lambda / 2 and at
# lambda 0 tau_rise +20 % bail all the same, from the warm step)
_WARM_SKIP = 0.3
# ... and, at lambda 0, where more than _WARM_SKIP_NEG of the binned guess's
# free samples are flagged (negative binned spikes: the old spikes too large
# for the new kernel).  Measured on lam0-slow-1kHz, seeds 0-3, the nine bench
# moves, scalar and drift: tau_decay +50 % 0.39-0.48 and tau_rise +20 %
# 0.22-0.28 (both bail from the warm step), every move that settles warm at
# most 0.15 (tau_decay +2 %, seed 0).  (At lambda > 0, slow-1kHz, the moves
# that bail read 0.29-0.36 against up to 0.26 for ones that do not: too close
# to tell, left out.)
_WARM_SKIP_NEG = 0.2
# ... both only on kernels whose peak spans at least _WARM_SKIP_PEAK bins of
# k frames: where the rise is a few bins the binned model is too coarse and
# the binned optimum itself reads as a large move (1 kHz, lambda 0, 54,000
# frames, seeds 0-2, the unchanged parameters re-solved from their own
# answer: peak / k 2.1 (0.02/0.5 s) frac 0.27-0.30 and neg 0.29-0.34, 3.5
# (0.036/0.709 s) neg 0.21-0.24, 4.6-5.5 neg 0.16-0.20, each skip 14-19
# steps where one settles it; 6.3-7.3 neg at most 0.19; 9.1-18.1, the
# kernels the thresholds were measured on, at most 0.15)
_WARM_SKIP_PEAK = 8.0
# ... and at lambda 0 a warm move that the binned checks let through but
# whose warm step bails (lam0-slow-1kHz, seeds 1-3: tau_decay -2 % and fs
# -1 %, 0.083-0.122 of the binned samples flagged, as many as moves that
# settle warm) is settled by blocks from its own guess, then polished
# (_coarse_settle, _coarse_polish_blocks), not from the binned start: 3-4
# full steps from 563-1,353 violators, settle and polish 2.9-3.9 ms against
# 4.4-6.0 ms by the binned start's route.  (At lambda > 0, slow-1kHz, the
# moves that bail (tau_decay +50 %, lambda / 2) took 4 steps and 0.6-0.7 ms
# more from their own guess: not there)
_WARM_BAIL_OLD = True
# ... in at most this many steps (it took 3-4; the binned start's route it
# replaces 4-6), else on to the binned start
_WARM_OLD_STEPS = 8


@njit(cache=_CACHE, nogil=True)
def _coarse_warm_frac(y, g1, g2, alpha, lamG, mode, mu, k, active, fws, bws):
    """The share of the binned samples that violate at the first step of
    the warm start ``active`` binned by ``k`` frames (a bin free where any
    of its frames is free; the problem of :func:`_coarse_start`, the same
    workspace layout), and the share of its free binned samples that
    violate (negative binned spikes; 0 if none is free).  ``active`` is not
    changed."""
    T = y.shape[0]
    n = T - 1
    Tc = T // k
    nc = Tc - 1
    if nc < 2:
        return 0.0, 0.0
    g1c, g2c, alpha_c = _coarse_model(g1, g2, alpha, k)
    yc = fws[0:Tc]
    bc = fws[2 * Tc:3 * Tc]
    _bin_means(y, k, yc)
    act_c = bws[4 * nc:5 * nc]
    for j in range(nc):
        hi = min(j * k + k, n)
        c = 0
        for t in range(j * k, hi):
            c += active[t]
        act_c[j] = c == hi - j * k
    inv_k = 1.0 / k
    gain, gb, x, u, nu, _s, _w, _gb2, _rest = _coarse_views(fws[3 * Tc:], nc, Tc, mode)
    flip = bws[0:nc]
    n_bad, _l, _eu, _en = _kkt_core(yc, g1c, g2c, alpha_c, lamG * inv_k / alpha_c, mode,
                                    mu * inv_k * inv_k, act_c, gain, gb, x, bc, u, nu,
                                    flip, 1e-11, _YES, _NO)
    n_free = 0
    n_neg = 0
    for j in range(nc):
        free = not act_c[j]
        n_free += free
        n_neg += free and flip[j]
    return n_bad / nc, n_neg / n_free if n_free > 0 else 0.0


# at lambda 0 (the block settle's route) a binned trace of at least
# _COARSE2_MIN_T frames is itself solved from its own binned start, by
# _COARSE2_K frames (0: never; _coarse_start2): the same binned optimum, so
# the same guess (lambda 0 at 1 kHz, 1,000,000 frames, k 32: the binned
# solve cold 21 steps, 13 ms; binned again by 6, 11 steps 0.9 ms, then warm
# 12 steps 5.6 ms, the same free set; by 2 / 3 / 4 / 8 both solves 14.9 /
# 9.4 / 7.3 / 6.4 ms, warm 10 / 11 / 11 / 12 steps)
_COARSE2_K = 6
_COARSE2_MIN_T = 8192


# ... and, any mode and length, where the binned trace's cold solve would go
# to the interior point after its first step (its kernel decaying over more
# than _COLD_DECAY samples, pdas_one's cold_slow) and the trace binned again
# has at least _COARSE2_MIN_TC frames (_COARSE2_SLOW; False: only the rule
# above).  The same binned optimum, so the same guess (lambda 0 at 1 kHz,
# 54,000 frames, warm moves that restart from the binned start: tau_decay
# +50 %, tau_rise +20 %, binned 1,687 frames, decay 94-141 samples: drift
# 0.70 -> 0.23 ms, scalar 0.29 -> 0.13 ms, the same free set; tau_decay
# -50 % (decay 47) keeps its cold exchange: 0.24 against 0.36 ms)
_COARSE2_SLOW = True
# ... at lambda > 0 too (_COARSE2_LAM; slow-1kHz, 54,000 frames, the binned
# start after a large warm move: drift 0.58 -> ~0.2 ms, the same guess)
_COARSE2_LAM = True
_COARSE2_MIN_TC = 64


@njit(cache=_CACHE, nogil=True)
def _coarse2_slow(g1c, g2c, Tc):
    """Whether :func:`_coarse_start` solves its binned trace (``Tc``
    frames, AR coefficients ``g1c``, ``g2c``) from :func:`_coarse_start2`
    whatever its length (``_COARSE2_SLOW``): where its cold solve would hand
    over to the interior point after one step."""
    if not (_COARSE2_SLOW and _COLD_DECAY > 0.0 and Tc // _COARSE2_K >= _COARSE2_MIN_TC):
        return False
    dc = _dominant_root(g1c, g2c)
    return dc >= 1.0 or _COLD_DECAY * (1.0 - dc) < 1.0


@njit(cache=_CACHE, nogil=True)
def _coarse_start2(yc, g1c, g2c, alpha_c, lam_c, mode, mu_c, act_c, max_iters, sc, bc, pws,
                   bws, act_cc):
    """:func:`_coarse_start`'s binned solve (``lam_c`` its lamG) from a binned start
    of its own: ``yc`` binned by ``_COARSE2_K`` frames (the kernel sampled
    every ``_COARSE2_K`` frames, :func:`_coarse_model`), solved cold by
    :func:`pdas_one`, each spike placed at the middle frame of its bin as
    the guess ``act_c`` of a warm :func:`pdas_one` on ``yc``.  ``sc``,
    ``bc``: its answer (``sc`` holds the twice-binned trace and answer
    before, 3 Tc / _COARSE2_K floats); ``pws``, ``bws``: pdas_one's
    workspaces; ``act_cc``: at least Tc / _COARSE2_K bools.  Returns (steps
    of both, settled); not settled: ``act_c`` is no guess."""
    Tc = yc.shape[0]
    nc = Tc - 1
    k2 = _COARSE2_K
    Tcc = Tc // k2
    ncc = Tcc - 1
    g1cc, g2cc, alpha_cc = _coarse_model(g1c, g2c, alpha_c, k2)
    ycc = sc[0:Tcc]
    scc = sc[Tcc:2 * Tcc]
    bcc = sc[2 * Tcc:3 * Tcc]
    inv = 1.0 / k2
    _bin_means(yc, k2, ycc)
    acts = act_cc[0:ncc]
    for j in range(ncc):
        acts[j] = True
    it1, ok = pdas_one(ycc, g1cc, g2cc, alpha_cc, lam_c * inv, mode, mu_c * inv * inv, acts,
                       max_iters, scc, bcc, pws, bws, 1e-11, _NO, _NO, _COLD_AT_ONCE, _YES)
    if not ok:
        return it1, False
    for t in range(nc):
        act_c[t] = True
    off = (k2 - 1) // 2
    for j in range(ncc):
        if scc[j] > 0.0:
            act_c[min(j * k2 + off, nc - 1)] = False
    it2, ok = pdas_one(yc, g1c, g2c, alpha_c, lam_c, mode, mu_c, act_c, max_iters - it1, sc,
                       bc, pws, bws, 1e-11, _YES, _NO, _COLD_AT_ONCE, _YES)
    return it1 + it2, ok


# the binned start's answer on a kernel decaying over more than _EARLY_DECAY
# samples is polished at most _COARSE_POLISH times (0: never;
# _coarse_polish): its free spikes solved exactly (dense, the baseline
# fixed), the gradient formed directly, violators below -_COARSE_POLISH_TOL
# max|gradient| placed by the dense settle with at most _COARSE_POLISH_WORK
# multiply-adds per sample, and taken if the objective falls by more than
# _DENSE_GAIN of the fit term
_COARSE_POLISH = 3
_COARSE_POLISH_TOL = 1e-12
_COARSE_POLISH_WORK = 400


@njit(cache=_CACHE, nogil=True)
def _coarse_polish(y, g1, g2, alpha, lamG, mode, mu, active, s_i, bvec, fws, bws, budget,
                   gain=1e-12):
    """Make a settled answer of the binned start on a kernel decaying over
    more than ``_EARLY_DECAY`` samples exact.  There the full step's
    multipliers carry a rounding floor (~1e-7 of their largest, the KKT
    test's threshold) and its free spikes are as inexact (the directly
    formed gradient on the free set ~1e-6 of its largest): a sample next to
    a spike (the same spike one or two samples off, or split over two) can
    violate by ~3e-7 of the largest gradient, worth 2-3e-9 of the
    objective, and pass both the step's test and :func:`dense_verify`
    (whose gradient at those spikes hides it).  Each round: the gradient
    formed directly at the answer (``s_i``, ``bvec``;
    :func:`._numba_local.direct_gradient`), then the dense settle on the
    free set (:func:`._numba_local.dense_settle`, the baseline fixed): its
    first solve makes the free spikes exact, its next rounds bring in the
    samples that then violate.  If that changes the set and lowers the
    objective by more than ``_DENSE_GAIN`` of the fit term, the warm start
    settles from the new set (at most ``budget`` steps in all; if it does
    not settle, the answer before stands; ``gain`` in place of
    ``_DENSE_GAIN``).  ``fws``/``bws``: ``pdas_rows``' pws and bws.
    Returns (steps, rounds that changed the set)."""
    T = y.shape[0]
    n = T - 1
    _gain, _gb, _x, u, nu, s_ipm, work, work2, ws = _coarse_views(fws, n, T, mode)
    room = ws.shape[0] - 2 * (n + 2)
    if _DENSE_MAX <= 0 or room <= 0:
        return 0, 0
    cmax = min(_DENSE_MAX, int(math.sqrt(room / 2.0)) - 8)
    if cmax < _DENSE_MIN:
        return 0, 0
    flip = bws[0:n]
    in_c = bws[3 * n:4 * n]
    thin = max(1, int(_THIN_PEAK * peak_samples(g1, g2)))
    tables = np.zeros(1, np.bool_)
    it = 0
    moved = 0
    s_keep = np.empty(0)
    b_keep = np.empty(0)
    for _r in range(_COARSE_POLISH):
        for k in range(n):
            active[k] = not s_i[k] > 0.0
            u[k] = s_i[k]
            flip[k] = False
            in_c[k] = False
        # (s_i >= 0: pdas_one clips its spikes)
        if n >= 3 and s_ipm[0] == 1.0:
            # the pdas_one just before passed dense_verify at this answer:
            # its directly formed gradient is in nu (the same numbers)
            g_max = s_ipm[1]
            f_fit = s_ipm[2]
        else:
            g_max, f_fit = direct_gradient(y, bvec, g1, g2, alpha, lamG, active, u, nu, work,
                                           work2, _NO)
        if n >= 3:
            s_ipm[0] = 0.0
        if not g_max > 0.0:
            break
        rounds, changed = dense_settle(g1, g2, alpha, active, flip, u, nu,
                                       _COARSE_POLISH_TOL * g_max / alpha, thin, ws, in_c, work,
                                       work2, cmax, _DENSE_ROUNDS, _COARSE_POLISH_WORK * n,
                                       gain * f_fit, tables)
        if rounds <= 0 or changed == 0 or it >= budget:
            break
        # (the power tables at the start of ws: the warm start's own solves
        # overwrite them)
        tables[0] = False
        if s_keep.shape[0] == 0:
            s_keep = np.empty(T)
            b_keep = np.empty(T)
        for t in range(T):
            s_keep[t] = s_i[t]
            b_keep[t] = bvec[t]
        it2, ok = pdas_one(y, g1, g2, alpha, lamG, mode, mu, active, budget - it, s_i, bvec,
                           fws, bws, 1e-11, _YES, _NO, _COLD_AT_ONCE, _YES)
        it += it2
        if not ok:
            for t in range(T):
                s_i[t] = s_keep[t]
                bvec[t] = b_keep[t]
            break
        moved += 1
    for k in range(n):
        active[k] = not s_i[k] > 0.0
    return it, moved


# floats per sample of :func:`_coarse_views` before its two T-long arrays
_COARSE_VIEWS_HEAD = 11


@njit(cache=_CACHE, nogil=True)
def _coarse_views(fws, n, T, mode):
    """:func:`pdas_one`'s workspace layout, named (``fws``: its float
    workspace, ``pdas_rows``' pws): gain (n, 3), gb (n or 1, 4; 4 n floats
    kept), x, u, nu, s_ipm (n each), work, gain_b (T each), then the
    interior point's workspace (the rest)."""
    gain = fws[0:3 * n].reshape((n, 3))
    o = 3 * n
    m_d = n if mode == 2 else 1
    gb = fws[o:o + 4 * m_d].reshape((m_d, 4))
    o += 4 * n
    x = fws[o:o + n]
    u = fws[o + n:o + 2 * n]
    nu = fws[o + 2 * n:o + 3 * n]
    s_ipm = fws[o + 3 * n:o + 4 * n]
    o += 4 * n
    work = fws[o:o + T]
    gain_b = fws[o + T:o + 2 * T]
    rest = fws[o + 2 * T:]
    return gain, gb, x, u, nu, s_ipm, work, gain_b, rest


@njit(cache=_CACHE, nogil=True)
def _coarse_block_views(rest, n, T):
    """The block settle's arrays in the interior point's workspace (``rest``
    of :func:`_coarse_views`, not used by the interior point meanwhile):
    z, G, wz (n each), the power tables dp, rp (n + 2 each), s_keep,
    b_keep (T each), the tail sums (2, n + 1) (:func:`_coarse_tables`)."""
    z = rest[0:n]
    G = rest[n:2 * n]
    wz = rest[2 * n:3 * n]
    o = 3 * n
    dp = rest[o:o + n + 2]
    rp = rest[o + n + 2:o + 2 * n + 4]
    o += 2 * n + 4
    s_keep = rest[o:o + T]
    b_keep = rest[o + T:o + 2 * T]
    o += 2 * T
    sums = rest[o:o + 2 * (n + 1)].reshape((2, n + 1))
    return z, G, wz, dp, rp, s_keep, b_keep, sums


# the binned start on a kernel decaying over more than _EARLY_DECAY samples
# settles by block settles (_coarse_blocks): working sets of at most
# _BLOCK_MAX samples, the next block starting _BLOCK_MAX / 4 candidates
# before the last one ended, at most _BLOCK_SWEEPS sweeps per full step.
# After each block the gradient is updated exactly, lazily
# (_coarse_block_exact): O(block span) per block plus O(n) per sweep (the
# update over 4 decay lengths either side of each block was 0.24 ms per
# block at 54,000 frames and, left out beyond, a guess; beyond 100,000
# frames at 1 kHz half the settle).
# (B 48 / 64 / 96 / 256 on the 1 kHz, tau_decay 1.5 s move with drift:
# 18.6 / 16.2 / 14.2 / 36.6 ms, with the truncated update)
_BLOCK_MAX = 64
# ... at lambda 0 _BLOCK_MAX_LAM0 (denser free sets, ~1 free sample in 220 at
# 1 kHz against ~1 in 700 at lambda 0.05: a block's Lawson & Hanson solve
# churns, ~75 us a 64-candidate block at 54,000 frames, ~2/3 of a sweep).
# lam0-slow-1kHz, the settle from the binned guess, CPU min (load ~1):
# B 64 / 48 / 40 / 32 / 24: 54,000 frames 6.8-8.1 / 5.6-6.2 / 5.0-5.4 /
# 5.3-5.7 / 4.8-8.4 ms, 1,000,000 193-232 / 185-192 / 191-194 / 171-186 /
# 174-181 ms (the same steps but 24: one more); not at lambda 0.05 (40:
# the slow kernel's 200,000 frames took more block calls to fall quiet)
_BLOCK_MAX_LAM0 = 40
_BLOCK_SWEEPS = 10
# ... but the settle (_coarse_settle) stops sweeping after _BLOCK_SWEEPS_MIN
# sweeps once a sweep has solved more than _BLOCK_SWEEP_DENSE blocks per
# decay length of the trace (1 / (1 - d) samples), i.e. where neighbouring
# blocks lie within a decay length of each other and the sweeps, with the
# baseline fixed, converge slowly (each re-solving most blocks): lambda 0 at
# 1 kHz (0.2/3.0 s: 0.45-0.85 blocks a decay length from 54,000 to
# 4,000,000 frames), not the slow kernel at lambda 0.05 (<= 0.15) nor a warm
# tau_decay -50 % move there (~0.1).  The next full step re-solves the set
# exactly and re-fits the baseline (at lambda 0 traded against activity: it
# moves the optimum the sweeps head for); its KKT test alone decides, so
# the settle stays exact.  lambda 0 at 1 kHz, the settle alone from the
# binned guess, CPU min of 2-10 (load 4-8), no cap -> capped after 3
# sweeps: 54,000 frames 14 -> 11-12 ms, 100,000 28 -> 22-24 ms, 1,000,000
# 0.36 -> 0.28-0.31 s, 4,000,000 2.10 -> 1.60 s (steps 4 / 4 / 4 / 6 -> 4 /
# 4 / 4-5 / 6).  (A cap by block solves alone, 10 n / 64^3 a sweep, also
# cut the slow kernel's 4,000,000 frames 0.89 -> 0.73 s but cost it 2 steps
# at 200,000 frames and on that warm move; 2 sweeps: 1.44 s at 4,000,000,
# no gain up to 100,000; a looser block tolerance while the step has many
# violators, 1e-6 / 1e-4 of max|G|: no gain / no settle in 40 steps at
# 1,000,000)
_BLOCK_SWEEPS_MIN = 3
_BLOCK_SWEEP_DENSE = 0.3
# _coarse_settle stops where a block settle leaves the set as it is and ends
# quiet (False: the step's violators change side then, as before)
_SETTLE_QUIET = True
# ... for at most _BLOCK_STEPS full steps (then the plain cold path)
_BLOCK_STEPS = 40
# ... and a step that leaves at most _SETTLE_DIRECT violators is settled by
# blocks on the gradient formed directly, at the polish's tolerance (0:
# never); cold starts and large warm moves alike.  lambda 0 at 1 kHz,
# 1,000,000 frames, cold: the step after the binned start's fourth had 22
# violators; the polish then changed 22 samples of the settled set below
# the step's threshold, took a full step and confirmed in a second round.
# Now the step after settles, the polish's first round confirms: one step
# and ~12 % of the row less, the same answer.  54,000 frames, tau_decay
# +50 % / tau_rise +20 % (warm, to the binned start): the polish had changed
# 74 / 9 samples; now one step and ~1 ms a move less, bit for bit (see
# docs/solver_history.md)
_SETTLE_DIRECT = np.int64(64)
# ... on kernels peaking at most _BLOCK_PEAK samples after a spike (the dense
# route only up to _COARSE_PEAK_EARLY: its settle stopped above the optimum
# on slower rises before its polish)
_BLOCK_PEAK = 1500.0
# a block's solve stops after _BLOCK_WORK m^3 + _BLOCK_WORK_MIN multiply-adds
# (m candidates; the block then keeps its values), its violators below
# -_BLOCK_ROUND of the largest sum of |terms| of its linear term
_BLOCK_WORK = 50
_BLOCK_WORK_MIN = 100_000
_BLOCK_ROUND = 64.0 * 2.220446049250313e-16
# the lazy update's tail sums (_coarse_tables): in closed form beyond
# _BLOCK_END decay lengths from the trace's end (within, the closed form
# cancels: 1e-11 to 1e-9 of the update on the 1 kHz kernels), there by
# compensated sums; constant where d^N is below _BLOCK_TINY (the rest is
# below rounding)
_BLOCK_END = 1.0
# ... but to the trace's end where the roots lie closer than _BLOCK_CLOSE of
# 1 - d (the closed forms' relative error ~1e-16 ((1 - d) / (d - r))^2: a
# reviewer's 2e-7 at 0.99999 / 1.0 s; compensated ~1e-15)
_BLOCK_CLOSE = 0.1
_BLOCK_TINY = 1e-20
# a pending tail flushes below _BLOCK_FLUSH; a sweep's scan adds its share
# to the samples ahead _BLOCK_AHEAD at a time
_BLOCK_FLUSH = 1e-290
# ... and a sweep's pending tails (the forward one, _coarse_advance, and the
# deferred adjoint one, _coarse_sweep_end) are dropped once the most they can
# still add to any later sample of G is below _BLOCK_DROP of the largest
# |gradient| at the call (:func:`_coarse_drop`): below G's own rounding
# (~1e-16 of it), so G stays exact to rounding, but a change's tail then
# spans ~30 decay lengths, not the trace (the absolute flush alone carried
# each one ~670 decay lengths: a sweep that changes one block still cost
# two passes over the trace)
_BLOCK_DROP = 2.0 ** -64
_BLOCK_AHEAD = 64


@njit(cache=_CACHE, nogil=True)
def _ar_roots(g1, g2):
    """The real AR(2) roots d >= r of x^2 = g1 x + g2 to rounding: g1^2
    split exactly (Dekker) in the discriminant, which on slow kernels
    (1 kHz, tau 0.2 / 3 s: (d - r)^2 = 2e-5) otherwise loses up to ~1e-11
    of itself.  r = -g2 / d (the roots' product)."""
    p = g1 * g1
    c = 134217729.0 * g1
    hi = c - (c - g1)
    lo = g1 - hi
    err = ((hi * hi - p) + 2.0 * hi * lo) + lo * lo
    disc = (p + 4.0 * g2) + err
    sq = math.sqrt(disc) if disc > 0.0 else 0.0
    d = 0.5 * (g1 + sq)
    r = -g2 / d if d != 0.0 else g1 - d
    return d, r


@njit(cache=_CACHE, nogil=True)
def _coarse_sums(d, r, n, dp, rp, sums):
    """The lazy update's tail sums for N = 0..n: sums[0, N] = sum_{k<N}
    e(k) d^k, sums[1, N] = sum_{k<N} e(k) f(k), e(k) = (d^(k+1) -
    r^(k+1)) / (d - r) the AR(2) impulse response, f(k) = (d^k - r^k) /
    (d - r) (:func:`_coarse_block_exact`).  Up to _BLOCK_END decay lengths
    by compensated sums (e(k) = f(k + 1) = d f(k) + r^k),
    beyond as the infinite sums S = 1 / ((1 - d^2)(1 - d r)), S2 = (d + r)
    / ((1 - d^2)(1 - r^2)(1 - d r)) less their tails beyond N (bounded
    terms of the power tables dp, rp).  From n_c = :func:`_sums_flat` on
    every entry is the limit: written up to n_c + 64 and at n alone
    (:func:`_coarse_advance` reads no further; :func:`_coarse_block_exact`
    takes sums[., min(N, n_c)])."""
    n_end = min(n, int(_BLOCK_END / (1.0 - d)))
    if not d - r >= _BLOCK_CLOSE * (1.0 - d):
        # the closed forms below cancel ~((1 - d) / (d - r))^2 eps: close
        # roots sum on (O(n), compensated)
        n_end = n
    # (e(k) = f(k + 1): positive terms, no cancellation; the AR recursion
    # for e drifts ~3e-12 over a decay length at 1 kHz)
    f = 0.0
    s0 = 0.0
    c0 = 0.0
    s1 = 0.0
    c1 = 0.0
    for k in range(n_end + 1):
        sums[0, k] = s0
        sums[1, k] = s1
        e = d * f + rp[k]
        y = e * dp[k] - c0
        t = s0 + y
        c0 = (t - s0) - y
        s0 = t
        y = e * f - c1
        t = s1 + y
        c1 = (t - s1) - y
        s1 = t
        f = e
    idd = 1.0 / ((1.0 - d) * (1.0 + d))
    idr = 1.0 / (1.0 - d * r)
    irr = 1.0 / ((1.0 - r) * (1.0 + r))
    im = 1.0 / (d - r)
    s_inf = idd * idr
    s2_inf = (d + r) * idd * irr * idr
    # (from n_c on every entry is the limit (_sums_flat): written up to
    # n_c + 64 (the 65 samples of _coarse_advance's chunk that crosses n_c
    # read no further) and at n, the entries between left unwritten
    # (1,000,000 frames at 1 kHz: ~2 x 6.9 MB, 0.8 -> 0.35 ms);
    # _coarse_block_exact reads sums[., min(N, n_c)])
    n_c = _sums_flat(d, r, n, dp)
    if n_c <= n:
        sums[0, n] = s_inf
        sums[1, n] = s2_inf
    # (unsigned indices and the floor's test as a select: the loop
    # vectorises, the same operations on each entry; 54,000 frames at 1 kHz
    # ~0.1 -> ~0.02 ms a call)
    s0 = sums[0]
    s1 = sums[1]
    for N in range(np.uint64(n_end + 1), np.uint64(min(n, n_c + 64) + 1)):
        dl = dp[N]
        rl = rp[N]
        dn = d * dl
        rn = r * rl
        a0 = s_inf - dl * (dn * idd - rn * idr) * im
        a1 = s2_inf - (dl * dn * idd - dl * rl * (d + r) * idr + rl * rn * irr) * im * im
        big = dl > _BLOCK_TINY
        s0[N] = a0 if big else s_inf
        s1[N] = a1 if big else s2_inf


# _coarse_block_exact: the forward response in closed form between the
# inputs (_chain_fill), the adjoint recursion as four chains, the span's
# quarters (each from a zero state, then handed the state of the one above)
# over spans of at least _EXACT_CHAINS samples: the recursions' latency, not
# their arithmetic, bound the single chains (~2.7 ns a sample, ~7,300
# samples a block on lambda 0 at 1 kHz, 54,000 frames: 1.3 ms of a row's 7.8)
_EXACT_CHAINS = 256


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _coarse_block_exact(G, idx, dz, mb, g1, g2, alpha, d, r, n, P, rp, sums, work, X, tab, n_c):
    """The gradient's change alpha^2 K'K dz for dz at the sample indices
    idx[0:mb] (increasing, all below ``P``), exactly, split three ways:
    on [idx[0], P) added to G now (a forward recursion to P, an adjoint
    one back to idx[0], started from the adjoint state of the change's
    tail beyond P); below idx[0] deferred as two inputs of the homogeneous
    adjoint recursion in ``X`` (at idx[0] - 1, idx[0] - 2: one backward
    pass over X adds every deferred share, :func:`_coarse_sweep_end`);
    from P on returned as (w, v): the change of alpha K dz at P + k is
    w d^k + v f(k), f(k) = (d^k - r^k) / (d - r) (a basis that stays well
    conditioned when r is close to d; u_P = w, u_P+1 = w d + v), whose
    share of G[j >= P] is alpha (w_j sums[0, n - j] + v_j sums[1, n - j])
    (:func:`_coarse_advance`).  O(P - idx[0] + mb).  ``work`` (n + 1):
    scratch; ``rp``, ``sums``: :func:`_coarse_tables` (``n_c``:
    :func:`_sums_flat`, the entries beyond it not read); ``tab``:
    :func:`_coarse_chunk_tables`.  The forward response in closed form
    between the inputs; spans of ``_EXACT_CHAINS`` or more: the adjoint
    recursion as four chains (both rounded otherwise than by the
    recursions, to a few ulps)."""
    a = idx[0]
    # (``work`` indexed from a: work[j - a] for sample j, so every block's
    # scratch is the same few kB at work's start, not a new stretch of an
    # 8 MB array each time; the same operations on the same numbers)
    # alpha K dz on [a, P): from each input on the continuation of the state
    # (w, v) there (an input dz adds (alpha dz, alpha dz r): x_0 = alpha dz,
    # x_1 = alpha dz g1)
    w = 0.0
    v = 0.0
    for i in range(mb):
        hi = idx[i + 1] if i + 1 < mb else P
        ad = alpha * dz[i]
        w, v = _chain_fill(work, idx[i] - a, hi - a, w + ad, v + ad * r, tab)
    # the tail beyond P: alpha sum_i dz_i e(P + k - idx_i) = w d^k + v f(k),
    # w its value at P, v = alpha sum_i dz_i r^(P - idx_i + 1)
    sr = 0.0
    for i in range(mb):
        sr += dz[i] * rp[P - idx[i] + 1]
    v = alpha * sr
    N = n - P
    p1 = 0.0
    p2 = 0.0
    if N > 0:
        # (sums[., N] for N >= n_c is sums[., n_c]: _coarse_sums)
        N0 = min(N, n_c)
        N1 = min(N - 1, n_c)
        p1 = w * sums[0, N0] + v * sums[1, N0]
        p2 = (w * d + v) * sums[0, N1] + v * r * sums[1, N1]
    if P - a >= _EXACT_CHAINS:
        # quarters from the top: the first from the tail's state, the others
        # from zero states, then handed the state of the one above
        L = (P - a) // 4
        b1 = 0.0
        b2 = 0.0
        c1 = 0.0
        c2 = 0.0
        e1 = 0.0
        e2 = 0.0
        # (unsigned indices: no test for a negative one on the four chains'
        # loads and stores; the same operations)
        uL = np.uint64(L)
        uL2 = np.uint64(2 * L)
        uL3 = np.uint64(3 * L)
        top = np.uint64(P - 1 - a)
        for i in range(uL):
            j = top - i
            p = g1 * p1 + (work[j] + g2 * p2)
            b = g1 * b1 + (work[j - uL] + g2 * b2)
            c = g1 * c1 + (work[j - uL2] + g2 * c2)
            e = g1 * e1 + (work[j - uL3] + g2 * e2)
            work[j] = p
            work[j - uL] = b
            work[j - uL2] = c
            work[j - uL3] = e
            p2 = p1
            p1 = p
            b2 = b1
            b1 = b
            c2 = c1
            c1 = c
            e2 = e1
            e1 = e
        top = np.uint64(P - 4 * L - a)
        for t in range(top):
            j = top - np.uint64(1) - t
            e = g1 * e1 + (work[j] + g2 * e2)
            work[j] = e
            e2 = e1
            e1 = e
        Ga = G[a:]
        _chain_back(work, Ga, P - L - a, P - a, 0.0, 0.0, alpha, tab)
        for hi in (P - L, P - 2 * L, P - 3 * L):
            u1 = work[hi - a]
            _chain_back(work, Ga, hi - L - a if hi > P - 3 * L else 0, hi - a, u1,
                        r * u1 + g2 * work[hi + 1 - a], alpha, tab)
        p1 = work[0]
        p2 = work[1]
    else:
        ua = np.uint64(a)
        top = np.uint64(P - a)
        for t in range(top):
            j = top - np.uint64(1) - t
            p = g1 * p1 + (work[j] + g2 * p2)
            G[ua + j] += alpha * p
            p2 = p1
            p1 = p
    if a >= 1:
        X[a - 1] += g1 * p1 + g2 * p2
    if a >= 2:
        X[a - 2] += g2 * p1
    return w, v


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _chain_fill(out, lo, hi, w, v, tab):
    """out[lo + m] = w d^m + v f(m) on [lo, hi): the homogeneous AR(2)
    recursion from the state (w, v) at lo (x_0 = w, x_1 = w d + v), 64
    samples at a time from ``tab`` (:func:`_coarse_chunk_tables`; no
    loop-carried chain).  Returns the state at hi."""
    # (unsigned indices, no views: a view costs two atomic reference counts
    # a chunk)
    j = lo
    while j < hi:
        c = min(64, hi - j)
        uj = np.uint64(j)
        for k in range(np.uint64(c)):
            out[uj + k] = w * tab[0, k] + v * tab[2, k]
        w, v = w * tab[0, c] + v * tab[2, c], v * tab[1, c]
        if abs(v) < _BLOCK_FLUSH:
            v = 0.0
        j += c
    return w, v


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _chain_back(out, G, lo, hi, w, v, alpha, tab):
    """out[lo:hi] += the adjoint (backward) AR(2) recursion's homogeneous
    continuation of the state (w, v) at hi (out[hi - m] += w d^m + v f(m),
    m >= 1), then G[lo:hi] += alpha out[lo:hi]; 64 samples at a time from
    ``tab``'s reversed rows (:func:`_coarse_chunk_tables`)."""
    j = hi
    while j > lo:
        c = min(64, j - lo)
        # (out[j - c + k] takes m = c - k: tab[.., c - k] = reversed[64 - c + k];
        # unsigned indices, no views: a view costs two atomic reference counts)
        u0 = np.uint64(j - c)
        ur = np.uint64(64 - c)
        for k in range(np.uint64(c)):
            x = out[u0 + k] + (w * tab[3, ur + k] + v * tab[4, ur + k])
            out[u0 + k] = x
            G[u0 + k] += alpha * x
        w, v = w * tab[0, c] + v * tab[2, c], v * tab[1, c]
        if abs(v) < _BLOCK_FLUSH:
            v = 0.0
        j -= c


@njit(cache=_CACHE, nogil=True)
def _coarse_chunk_tables(d, r):
    """d^i, r^i and f(i) = (d^i - r^i) / (d - r) for i = 0..64 (rows 0-2 of
    a (5, 65) array; f by its recursion f(i + 1) = d f(i) + r^i, positive
    terms): a tail (w, v) carried i samples is (w d^i + v f(i), v r^i).
    Rows 3, 4: d^(64-i), f(64-i) (:func:`_chain_back`)."""
    tab = np.empty((5, 65))
    a = 1.0
    b = 1.0
    f = 0.0
    for i in range(65):
        tab[0, i] = a
        tab[1, i] = b
        tab[2, i] = f
        f = d * f + b
        a *= d
        b *= r
    for i in range(65):
        tab[3, i] = tab[0, 64 - i]
        tab[4, i] = tab[2, 64 - i]
    return tab


@njit(cache=_CACHE, nogil=True)
def _sums_flat(d, r, n, dp):
    """The first N from which :func:`_coarse_sums` writes the tail sums'
    limits themselves (sums[:, N] = sums[:, n] for every N >= it: beyond
    the compensated head, d^N at or below _BLOCK_TINY; d^N falls with N);
    n + 1 where there is none.  A search over ``dp`` (the power table)."""
    if not d - r >= _BLOCK_CLOSE * (1.0 - d):
        return n + 1
    lo = min(n, int(_BLOCK_END / (1.0 - d))) + 1
    hi = n + 1
    if lo > n or dp[n] > _BLOCK_TINY:
        return n + 1
    # (dp[hi] at or below the floor; the first such N in [lo, hi])
    while lo < hi:
        mid = (lo + hi) // 2
        if dp[mid] > _BLOCK_TINY:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=_CACHE, nogil=True)
def _coarse_advance(G, lo, hi, w, v, alpha, d, r, n, sums, tab, n_c, drop):
    """Add the pending tail's share to G[lo:hi] (samples a sweep reads for
    the first time; the tail (w, v) as :func:`_coarse_block_exact`
    returns it, from lo), carrying it on.  Returns it, from hi.  Up to 64
    samples at a time from the chunk's tail in closed form (``tab``,
    :func:`_coarse_chunk_tables`): no loop-carried chain (the recursion
    w <- w d + v, v <- v r per sample was latency-bound, ~1.4 ns a sample on
    1,000,000 frames; rounded differently, to a few ulps).  Where the
    chunk's sums are their limits (N >= ``n_c``, :func:`_sums_flat`: on
    lambda 0 at 1 kHz, 1,000,000 frames, all but the last ~138,000
    samples) those two numbers, not the (2, n + 1) table: the same
    numbers, the table not streamed (nor written beyond n_c + 64,
    :func:`_coarse_sums`: the chunk that crosses n_c reads at most 64
    entries past it).  The tail is dropped (0, 0 returned) where its share
    of every later sample is below what ``drop`` (:func:`_coarse_drop`)
    allows, tested at each sample 0 mod 64."""
    if w == 0.0 and v == 0.0:
        return w, v
    # (the tables indexed in two dimensions, no row views: a view costs two
    # atomic reference counts, and this runs every 64 samples of a scan)
    j = lo
    while j < hi:
        # up to the next sample at 0 mod 64, the flush tested after it
        m64 = (j + 63) & ~63
        end = min(hi, m64 + 1)
        base = n - j
        # (unsigned indices: numba's test for a negative one kept the loops
        # scalar; now they vectorise, the same operations on each sample)
        ub = np.uint64(base)
        uj = np.uint64(j)
        um = np.uint64(end - j)
        if base - (end - j - 1) >= n_c:
            c0 = sums[0, n_c]
            c1 = sums[1, n_c]
            for i in range(um):
                G[uj + i] += alpha * ((w * tab[0, i] + v * tab[2, i]) * c0 + (v * tab[1, i]) * c1)
        else:
            for i in range(um):
                N = ub - i
                G[uj + i] += alpha * ((w * tab[0, i] + v * tab[2, i]) * sums[0, N]
                                      + (v * tab[1, i]) * sums[1, N])
        m = end - j
        w, v = w * tab[0, m] + v * tab[2, m], v * tab[1, m]
        j = end
        if end == m64 + 1 and abs(w) + drop[1] * abs(v) < drop[0]:
            # (below the share _coarse_drop allows; no subnormals)
            return 0.0, 0.0
    return w, v


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _coarse_sweep_end(G, P, tw, tv, x_hi, g1, g2, alpha, d, r, n, sums, X, xs, n_xs, tab, n_c,
                      drop, dirty):
    """End a sweep of lazy updates: the pending tail's (tw, tv) share on
    [P, n), then the deferred shares (one backward pass of the adjoint
    recursion over the inputs X[0:x_hi+1], cleared): G is then exact
    everywhere.  X is read (and cleared) only at xs[0:n_xs] (ascending,
    repeats allowed: every non-zero of X among them).  The pass 64 samples
    at a time, the flush tested after each (at j = 0 mod 64); a block of
    samples without inputs in closed form from its state (``tab``,
    :func:`_coarse_chunk_tables`; the homogeneous recursion's states
    x_m = w d^m + v f(m), w = q1, v = q0 - d q1), with no loop-carried
    chain (1,000,000 frames: 1.3 -> ~0.3 ms; rounded differently, to a few
    ulps), one with inputs by the recursion.  The state is dropped where
    its share of every sample below is under what ``drop``
    (:func:`_coarse_drop`) allows (as the pending tail, in
    :func:`_coarse_advance`).  Marks in ``dirty`` (one flag per 64 samples,
    j >> 6) every chunk of G it changes (or may: the whole span [P, n)
    with a pending tail)."""
    if (tw != 0.0 or tv != 0.0) and P < n:
        for c in range(P >> 6, ((n - 1) >> 6) + 1):
            dirty[c] = True
    _coarse_advance(G, P, n, tw, tv, alpha, d, r, n, sums, tab, n_c, drop)
    tp = tab[0]
    tf = tab[2]
    q1 = 0.0
    q2 = 0.0
    # the highest input at or below the pass: xs[i]
    i = n_xs - 1
    while i >= 0 and xs[i] > x_hi:
        i -= 1
    hi = x_hi
    while hi >= 0:
        lo = hi & ~63
        if i >= 0 and xs[i] >= lo:
            dirty[lo >> 6] = True
            for j in range(hi, lo - 1, -1):
                q = g1 * q1 + (X[j] + g2 * q2)
                X[j] = 0.0
                G[j] += alpha * q
                q2 = q1
                q1 = q
            while i >= 0 and xs[i] >= lo:
                i -= 1
        elif q1 != 0.0 or q2 != 0.0:
            # x_0 = q1 (at hi + 1), x_1 = g1 q1 + g2 q2 (at hi), ...
            dirty[lo >> 6] = True
            w = q1
            v = (g1 * q1 + g2 * q2) - d * q1
            m = hi - lo + 1
            # (G in increasing order: the loop vectorises; 7x the reversed one)
            for k in range(m):
                G[lo + k] += alpha * (w * tp[m - k] + v * tf[m - k])
            q1 = w * tp[m] + v * tf[m]
            q2 = w * tp[m - 1] + v * tf[m - 1]
        if abs(q1) + drop[3] * abs((g1 * q1 + g2 * q2) - d * q1) < drop[2]:
            q1 = 0.0
            q2 = 0.0
            # (no state: on at the chunk of the next input, if any)
            if i < 0:
                break
            hi = min(lo - 1, xs[i] | 63)
            continue
        hi = lo - 1


@njit(cache=_CACHE, nogil=True)
def _coarse_drop(d, alpha, n, sums, g_max):
    """The thresholds at which :func:`_coarse_blocks`' pending tails are
    dropped: a share below ``_BLOCK_DROP`` g_max of every later sample of G
    (at least the absolute ``_BLOCK_FLUSH``: no subnormals).  The states
    x_m = w d^m + v f(m) of the AR(2) recursion (roots 0 < r < d < 1) are at
    most |w| + F |v|, F = 1 / (1 - d) >= f(m); the forward tail's share of
    G[j] is alpha (x_m sums[0, N] + v r^m sums[1, N]), both sums positive
    and rising with N (:func:`_coarse_sums`), at most sums[., n]; the
    adjoint state's share is alpha x_m.  So a forward tail (w, v) is dropped
    where |w| + drop[1] |v| < drop[0], an adjoint one where |w| + drop[3]
    |v| < drop[2]."""
    f_max = 1.0 / (1.0 - d)
    s0 = sums[0, n]
    s1 = sums[1, n]
    eps = _BLOCK_DROP * g_max / alpha
    drop = np.empty(4)
    drop[0] = _BLOCK_FLUSH
    drop[1] = f_max
    if s0 > 0.0:
        drop[0] = max(_BLOCK_FLUSH, eps / s0)
        drop[1] = f_max + s1 / s0
    drop[2] = max(_BLOCK_FLUSH, eps)
    drop[3] = f_max
    return drop


@njit(cache=_CACHE, nogil=True)
def _coarse_block_solve(H, P, C, m, z, G, c, zz, gr, dz, blocked, n, dp, rp, d, r, a2, thin,
                        tol):
    """:func:`_coarse_block_solve_ws` with its scratch allocated here (the
    tests' entry; :func:`_coarse_blocks` passes its own, once a settle)."""
    return _coarse_block_solve_ws(H, P, C, m, z, G, c, zz, gr, dz, blocked, n, dp, rp, d, r, a2,
                                  thin, tol, np.zeros(4, np.int64), np.empty(19 * m),
                                  np.empty(2 * m, np.int64), np.empty(m, np.bool_))


@njit(cache=_CACHE, nogil=True)
def _coarse_block_solve_ws(H, P, C, m, z, G, c, zz, gr, dz, blocked, n, dp, rp, d, r, a2, thin,
                           tol, cnt, fs, iw, F):
    """One block of :func:`_coarse_blocks`: min over z[C] >= 0 of the
    objective with the baseline fixed and every other sample held (gradient
    G, Hessian (K'K)[C, C] from the power tables), exactly (Lawson &
    Hanson's steps of :func:`._numba_local._nnqp` from the block's positive
    entries, the solves by the Gram's two-state recursion,
    :func:`._numba_block._block_nnqp_ws`); z
    updated, the change in dz[0:m] (G is not).  ``cnt`` (4; counts, not
    read), ``fs``, ``iw``, ``F``: the QP's scratch (of at least m
    candidates).  Returns the entries that changed (-1: out of its work
    budget, the block kept its values)."""
    _gram_fill(H, C, 0, m, n, dp, rp, d, r, a2)
    # c = G - H z over the block's non-zero spikes alone (a zero spike's
    # term is a zero, which leaves c and its bound as they are; at lambda 0
    # at 1 kHz about half a block's entries are violators at 0), by rows of
    # H (symmetric: H[f, i] is H[i, f]), every entry taking the same
    # differences in the same order as a running sum over its row, the
    # entries side by side (a vectorised loop, not m dependent chains): the
    # same numbers.  P, zz: the spikes gathered (both written below); gr:
    # the bound's sums (scratch of _nnqp)
    nzc = 0
    for f in range(m):
        zf = z[C[f]]
        if zf != 0.0:
            P[nzc] = f
            zz[nzc] = zf
            nzc += 1
    for i in range(m):
        v = G[C[i]]
        c[i] = v
        gr[i] = abs(v)
    for t in range(nzc):
        hf = H[P[t]]
        zf = zz[t]
        for i in range(m):
            w = hf[i] * zf
            c[i] -= w
            gr[i] += abs(w)
    c_max = 0.0
    for i in range(m):
        c_max = max(c_max, gr[i])
    # (c carries the rounding of its terms: a violator below it is noise, on
    # which Lawson & Hanson's steps can cycle, e.g. near an exact fit)
    tol_b = max(tol, _BLOCK_ROUND * c_max)
    # the start: the positive spikes free, then Lawson & Hanson's steps with
    # the free-set solves by the Gram's two-state recursion
    # (_numba_block._block_nnqp_ws: O(m) a solve, no dense factor)
    for i in range(m):
        blocked[i] = False
        zi = z[C[i]]
        zz[i] = zi if zi > 0.0 else 0.0
    _used, ok = _block_nnqp_ws(H, c, zz, m, blocked, C, thin, tol_b,
                               _BLOCK_WORK * m * m * m + _BLOCK_WORK_MIN, n, dp, rp, d, r, a2,
                               cnt, fs, iw, F)
    if not ok:
        # (out of budget: the block keeps its values)
        return -1
    nz = 0
    for i in range(m):
        dz[i] = zz[i] - z[C[i]]
        if dz[i] != 0.0:
            nz += 1
        z[C[i]] = zz[i]
    return nz


@njit(cache=_CACHE, nogil=True)
def _coarse_blocks(g1, g2, alpha, z, G, tol, thin, dp, rp, sums, work, wz, solve_all,
                   max_sweeps, cost_cap, B, g_max):
    """Settle the problem with the baseline fixed block by block (a block
    Gauss-Seidel sweep of exact solves; for free sets too large for one
    dense solve, :func:`._numba_local.dense_settle`).  ``z`` (length n):
    the spikes (free samples' values, negative ones too; 0 elsewhere), ``G``
    the objective's gradient there (both current at return).  A sweep walks
    the trace: each block takes the next ``B`` candidates (z != 0,
    or of each run of violators G < -``tol`` not parted by a free sample
    and within ``thin`` samples of each other the most negative) and, if
    one is negative or violates (every block in the first sweep with
    ``solve_all``), is solved exactly (:func:`_coarse_block_solve`); the
    next starts a quarter block back, never before the last one's first
    candidate.  So within a sweep a sample below a block is not read again
    and one past the scan not yet: G is updated lazily and exactly
    (:func:`_coarse_block_exact`: now between the block and the scan's
    end, the samples beyond as the scan reaches them, those below in one
    pass at the sweep's end).  Sweeps until one changes nothing, at most
    ``max_sweeps`` (with ``cost_cap``, after ``_BLOCK_SWEEPS_MIN`` once a
    sweep solved more than ``_BLOCK_SWEEP_DENSE`` blocks per decay length of
    the trace).  ``dp``, ``rp``, ``sums``: :func:`_coarse_tables`;
    ``work`` (n + 1), ``wz`` (n, zero, left so): scratch.  Returns (the
    sweeps, quiet): quiet where the last sweep changed nothing and no block
    in it ran out of its work budget (z is then the optimum with the
    baseline fixed, to the blocks' tolerances).  ``g_max``: max|G| (the
    pending tails are dropped below ``_BLOCK_DROP`` of it,
    :func:`_coarse_drop`)."""
    n = z.shape[0]
    overlap = B // 4
    d, r = _ar_roots(g1, g2)
    a2 = alpha * alpha / ((d - r) * (d - r))
    H = np.empty((B, B))
    zz = np.empty(B)
    c = np.empty(B)
    gr = np.empty(B)
    dz = np.empty(B)
    C = np.empty(B, np.int64)
    P = np.empty(B, np.int64)
    blocked = np.zeros(B, np.bool_)
    # (the block QP's scratch and counts, once a settle, not once a block)
    q_cnt = np.zeros(4, np.int64)
    q_fs = np.empty(19 * B)
    q_iw = np.empty(2 * B, np.int64)
    q_F = np.empty(B, np.bool_)
    tab = _coarse_chunk_tables(d, r)
    # (the tail sums are their limits from n_c on)
    n_c = _sums_flat(d, r, n, dp)
    drop = _coarse_drop(d, alpha, n, sums, g_max)
    # the positions of wz's inputs (ascending: each block starts past the
    # last one's first candidate), for _coarse_sweep_end
    xs = np.empty(256, np.int64)
    # the 64-sample chunks (j >> 6) of z or G changed after the sweep read
    # them, or where it met a negative spike or a violator: elsewhere the
    # next sweep would meet neither (_coarse_quiet_next)
    dirty = np.zeros((n >> 6) + 1, np.bool_)
    sweeps = 0
    # (a sweep's block solves beyond which they lie within a decay length)
    cap = _BLOCK_SWEEP_DENSE * n * (1.0 - d) if cost_cap else math.inf
    quiet = False
    for sw in range(max_sweeps):
        sweeps += 1
        pos = 0
        any_change = False
        failed = False
        solved = 0
        # the lazy update's state: G exact below the scan's end `front`
        # but for the shares deferred into wz (below x_hi + 1); the
        # tail (tw, tv) pending from front on (_coarse_advance)
        front = 0
        tw = 0.0
        tv = 0.0
        x_hi = -1
        n_xs = 0
        for ch in range(dirty.shape[0]):
            dirty[ch] = False
        while pos < n:
            m = 0
            need = 0
            k = pos
            cl_best = -1
            cl_last = -1
            dropped = False
            # (samples below ``seen`` tested already; ``flags``: those of
            # [f_lo, seen) that are candidates or violators, bit k - f_lo)
            seen = k
            flags = np.int64(0)
            f_lo = k
            while k < n and m < B:
                if k == front:
                    # (the pending tail's share, _BLOCK_AHEAD samples at a time)
                    front = min(n, k + _BLOCK_AHEAD)
                    tw, tv = _coarse_advance(G, k, front, tw, tv, alpha, d, r, n, sums, tab,
                                             n_c, drop)
                # samples up to the scan's end that are neither candidates
                # nor violators pass at once (one vectorised test: candidates
                # are ~1 sample in 200 at lambda 0 at 1 kHz; the same blocks),
                # and in a run that has some, the scan goes from one to the
                # next (their bit mask; 37 % of the 64-sample runs hold a
                # free sample at lambda 0 at 1 kHz, 1,000,000 frames)
                if k >= seen:
                    seen = min(front, k + _BLOCK_AHEAD)
                    if _none_flagged_at(z, G, k, seen, tol):
                        k = seen
                        continue
                    flags = _flag_mask(z, G, k, seen, tol)
                    f_lo = k
                left = flags & ~((np.int64(1) << (k - f_lo)) - 1)
                if left == 0:
                    k = seen
                    continue
                k = f_lo + trailing_zeros(left)
                if z[k] != 0.0:
                    C[m] = k
                    m += 1
                    if z[k] < 0.0:
                        need += 1
                        dirty[k >> 6] = True
                    if cl_best >= 0:
                        if m < B:
                            C[m] = cl_best
                            m += 1
                        else:
                            dropped = True
                    cl_best = -1
                elif G[k] < -tol:
                    need += 1
                    dirty[k >> 6] = True
                    if cl_best >= 0 and k - cl_last <= thin:
                        if G[k] < G[cl_best]:
                            cl_best = k
                    else:
                        if cl_best >= 0:
                            C[m] = cl_best
                            m += 1
                        cl_best = k
                    cl_last = k
                k += 1
            if cl_best >= 0:
                if m < B:
                    C[m] = cl_best
                    m += 1
                else:
                    dropped = True
            if m == 0:
                break
            # (nearly increasing: a run's pick follows the free sample after it)
            for i in range(1, m):
                v = C[i]
                j = i - 1
                while j >= 0 and C[j] > v:
                    C[j + 1] = C[j]
                    j -= 1
                C[j + 1] = v
            if need > 0 or (solve_all and sw == 0):
                solved += 1
                nz = _coarse_block_solve_ws(H, P, C, m, z, G, c, zz, gr, dz, blocked, n, dp, rp,
                                            d, r, a2, thin, tol, q_cnt, q_fs, q_iw, q_F)
                failed = failed or nz < 0
                if nz > 0:
                    any_change = True
                    bw, bv = _coarse_block_exact(G, C, dz, m, g1, g2, alpha, d, r, n, front, rp,
                                                 sums, work, wz, tab, n_c)
                    for ch in range(C[0] >> 6, ((front - 1) >> 6) + 1):
                        dirty[ch] = True
                    tw += bw
                    tv += bv
                    x_hi = max(x_hi, C[0] - 1)
                    if n_xs + 2 > xs.shape[0]:
                        grown = np.empty(2 * xs.shape[0], np.int64)
                        grown[:n_xs] = xs[:n_xs]
                        xs = grown
                    for a in range(max(C[0] - 2, 0), C[0]):
                        xs[n_xs] = a
                        n_xs += 1
            if k >= n and not dropped:
                break
            # (a full block that reached the end with a pick left over: one
            # more, from a quarter block back)
            pos = max(C[m - overlap] if m > overlap else k, pos + 1)
        _coarse_sweep_end(G, front, tw, tv, x_hi, g1, g2, alpha, d, r, n, sums, wz, xs, n_xs,
                          tab, n_c, drop, dirty)
        quiet = not any_change and not failed
        if not any_change or (sweeps >= _BLOCK_SWEEPS_MIN and solved > cap):
            break
        if sweeps < max_sweeps and _coarse_quiet_next(z, G, tol, dirty):
            # the next sweep would solve no block (none has a negative
            # spike or a violator): it changes nothing and ends quiet; its
            # scan left out (the same z, G and return)
            sweeps += 1
            quiet = True
            break
    return sweeps, quiet


@njit(cache=_CACHE, nogil=True)
def _coarse_quiet_next(z, G, tol, dirty):
    """Whether no sample of the chunks flagged in ``dirty`` (64 samples
    each, j >> 6) is a negative spike (z < 0) or a violator (z == 0,
    G < -tol), as :func:`_coarse_blocks`' scan counts them."""
    n = z.shape[0]
    for c in range(dirty.shape[0]):
        if dirty[c]:
            lo = c << 6
            hi = min(n, lo + 64)
            hit = False
            # (unsigned: no negative-index test, which made the loop gather)
            for t in range(np.uint64(lo), np.uint64(hi)):
                hit |= (z[t] < 0.0) | ((z[t] == 0.0) & (G[t] < -tol))
            if hit:
                return False
    return True


@njit(cache=_CACHE, nogil=True)
def _none_flagged(zs, gs, tol):
    """Whether no sample of the views zs, gs is a candidate of
    :func:`_coarse_blocks`' scan (z != 0) or a violator (G < -tol)."""
    hit = False
    for t in range(zs.shape[0]):
        hit |= (zs[t] != 0.0) | (gs[t] < -tol)
    return not hit


@njit(cache=_CACHE, nogil=True)
def _none_flagged_at(z, G, lo, hi, tol):
    """:func:`_none_flagged` on z[lo:hi], G[lo:hi], the views taken here,
    not by the caller (a caller's view passed on costs its reference
    count, two calls, per 64 samples of every sweep's scan; indexed from lo
    the loop does not vectorise: 0.16 against 0.18 and 0.68 ms per
    1,000,000 samples)."""
    hit = False
    # (an unsigned index: numba's test for a negative one, inlined into
    # _coarse_blocks' scan, made the loop gather its loads, 8 a vector;
    # from lo unsigned, no views: a view costs two atomic reference counts)
    ul = np.uint64(lo)
    for t in range(np.uint64(hi - lo)):
        i = ul + t
        hit |= (z[i] != 0.0) | (G[i] < -tol)
    return not hit


@njit(cache=_CACHE, nogil=True)
def _flag_mask(z, G, lo, hi, tol):
    """The samples of [lo, hi) (at most 64) that :func:`_none_flagged`
    finds, as bits (bit k - lo for sample k)."""
    msk = np.int64(0)
    u0 = np.uint64(lo)
    for t in range(hi - lo):
        i = u0 + np.uint64(t)
        f = (z[i] != 0.0) | (G[i] < -tol)
        msk |= np.int64(f) << t
    return msk


@njit(cache=_CACHE, nogil=True)
def _block_size(lamG):
    """The block settle's candidates per block: ``_BLOCK_MAX``, at lambda 0
    ``_BLOCK_MAX_LAM0``."""
    return _BLOCK_MAX if lamG > 0.0 else _BLOCK_MAX_LAM0


@njit(cache=_CACHE, nogil=True)
def _coarse_tables(g1, g2, n, dp, rp, sums):
    """The power tables d^k, r^k (k <= n + 1) of the AR roots d > r
    (:func:`_ar_roots`) and the lazy update's tail sums ``sums`` (2, n + 1)
    (:func:`_coarse_sums`)."""
    d, r = _ar_roots(g1, g2)
    _coarse_powers(d, r, n, dp, rp)
    _coarse_sums(d, r, n, dp, rp, sums)


@njit(cache=_CACHE, nogil=True, inline="always")
def _dd_mul(ah, al, bh, bl):
    """(ah + al)(bh + bl) in double-double (Dekker's product, no fused
    multiply-add): (hi, lo), hi + lo to ~1e-32 relative."""
    p = ah * bh
    c = 134217729.0 * ah
    a1 = c - (c - ah)
    a2 = ah - a1
    c = 134217729.0 * bh
    b1 = c - (c - bh)
    b2 = bh - b1
    e = ((a1 * b1 - p) + a1 * b2 + a2 * b1) + a2 * b2
    e += ah * bl + al * bh
    hi = p + e
    return hi, e - (hi - p)


@njit(cache=_CACHE, nogil=True)
def _coarse_powers(d, r, n, dp, rp):
    """The power tables d^k, r^k (k <= n + 1; r^k 0 below 1e-290) of
    :func:`._numba_local.power_tables`, 64 at a time: x^(64 j + i) = x^(64 j)
    x^i, the 64 powers x^i and the chain x^(64 j) (one product per 64
    entries) in double-double, each entry one rounded product of the two:
    no loop-carried product per entry (power_tables' chain is latency-
    bound: 1,000,000 frames 2.8 ms against ~0.3), and within ~2 ulps of
    x^k (power_tables' k products drift ~2e-14 by k = 200,000).  Rounded
    otherwise than power_tables (its tables_hold does not hold for
    these)."""
    td = np.empty(64)
    tr = np.empty(64)
    ah = 1.0
    al = 0.0
    bh = 1.0
    bl = 0.0
    for i in range(64):
        td[i] = ah
        tr[i] = bh
        ah, al = _dd_mul(ah, al, d, 0.0)
        bh, bl = _dd_mul(bh, bl, r, 0.0)
    # (ah + al, bh + bl: d^64, r^64)
    pah = 1.0
    pal = 0.0
    pbh = 1.0
    pbl = 0.0
    j = 0
    while j < n + 2:
        c = min(64, n + 2 - j)
        o = dp[j:j + c]
        for i in range(c):
            o[i] = pah * td[i]
        q = rp[j:j + c]
        if pbh == 0.0:
            for i in range(c):
                q[i] = 0.0
        else:
            for i in range(c):
                v = pbh * tr[i]
                q[i] = v if abs(v) >= 1e-290 else 0.0
        pah, pal = _dd_mul(pah, pal, ah, al)
        if pbh != 0.0:
            pbh, pbl = _dd_mul(pbh, pbl, bh, bl)
            if abs(pbh) < 1e-290:
                pbh = 0.0
                pbl = 0.0
        j += c


@njit(cache=_CACHE, nogil=True)
def _coarse_blocks_apply(g1, g2):
    """Whether :func:`_coarse_blocks` applies: real AR roots 0 < r < d < 1
    (its Gram entries)."""
    return closed_form_roots(g1, g2)[0] > 0.0


@njit(cache=_CACHE, nogil=True)
def _coarse_settle(y, g1, g2, alpha, lamG, mode, mu, active, max_steps, s_out, bvec, fws,
                   bws, tables_ok, direct_bad, raw=False):
    """Settle a guess ``active`` (the binned start's) on a kernel decaying
    over more than ``_EARLY_DECAY`` samples: full steps
    (:func:`_kkt_core`: the subspace optimum, the baseline re-optimised),
    each followed by the block settle of the problem with that baseline
    fixed (:func:`_coarse_blocks`, on the step's multipliers, violators
    below -max(the step's threshold, 1e-13 max|gradient|)).  Settled where
    the step finds no violator, or where the block settle leaves the set
    as it is and ends quiet (:func:`_coarse_blocks`): with the step's
    baseline fixed the set is then optimal, and the baseline is optimal
    for the set (the step fits both), so the step's violators are ones the
    blocks refuse (below their rounding floors, or dependent on a
    neighbouring spike in their factorisation; the polish,
    :func:`_coarse_polish_blocks`, then decides the set at its tolerance
    with the gradient formed directly).  Where the block settle changes
    nothing but was not quiet (a block out of its work budget, or the sweep
    cap), the step's violators change side, or where they did not fall
    since the last step its last one (Murty's rule).  At most
    ``max_steps`` full steps.  Writes s_out, bvec (and ``active``).  With
    ``tables_ok`` the block settle's tables (:func:`_coarse_tables`) are
    current and its ``wz`` zero (a polish round's call).  Where a step
    leaves at most ``direct_bad`` violators, its block settle runs on the
    gradient formed directly at the step's clipped spikes
    (:func:`_direct_gradient_fma`) at the polish's tolerance
    (``_COARSE_POLISH_TOL`` of its max|gradient|), not on the step's
    multipliers (``_SETTLE_DIRECT``); with ``raw`` at the step's own
    spikes, negative ones too (``_WARM_SETTLE_RAW``).  Returns (steps,
    converged)."""
    T = y.shape[0]
    n = T - 1
    beta = lamG / alpha
    gain, gb, x, u, nu, _s_ipm, work, gain_b, rest = _coarse_views(fws, n, T, mode)
    _z, _G, wz, dp, rp, _sk, _bk, sums = _coarse_block_views(rest, n, T)
    flip = bws[0:n]
    if not tables_ok:
        _coarse_tables(g1, g2, n, dp, rp, sums)
        for k in range(n):
            wz[k] = 0.0
    thin = max(1, int(_THIN_PEAK * peak_samples(g1, g2)))
    it = 0
    converged = False
    prev_bad = n + 1
    while it < max_steps:
        n_bad, last_bad, _eps_u, eps_nu = _kkt_core(y, g1, g2, alpha, beta, mode, mu, active,
                                                    gain, gb, x, bvec, u, nu, flip, 1e-11, _YES,
                                                    _NO)
        it += 1
        if n_bad == 0:
            converged = True
            break
        if it >= max_steps:
            break
        # (the step's multipliers, not the gradient formed directly: a guess
        # either way, the same steps on the 1 kHz moves and 1M frames, one
        # pass pair less per step)
        # (max|G| in a pass of its own: the copy then vectorises; 1,000,000
        # frames ~2.7 -> ~2.1 ms a step, the same numbers)
        # (the spikes z are u itself, 0 on the active set as the step leaves
        # it, and the gradient alpha nu formed in nu's place: no copies, the
        # same numbers; u then ends as the blocks leave it)
        if n_bad <= direct_bad:
            # few violators left: the blocks on the gradient formed directly
            # at the step's clipped spikes, at the polish's tolerance (the
            # polish, _coarse_polish_blocks, would otherwise change the set
            # below the step's threshold, then take a full step and a
            # confirming round)
            # (alpha applied in the gradient's backward pass: the same
            # numbers as nu *= alpha after it, a pass fewer)
            if raw:
                g_max, _f = _direct_gradient_raw(y, bvec, g1, g2, alpha, lamG, active, u, nu,
                                                 gain_b, alpha)
            else:
                g_max, _f = _direct_gradient_fma(y, bvec, g1, g2, alpha, lamG, active, u, nu,
                                                 gain_b, alpha)
            tol_b = _COARSE_POLISH_TOL * g_max
        else:
            g_max = _scale_max(nu, alpha)
            tol_b = max(alpha * eps_nu, 1e-13 * g_max)
        _sweeps, quiet = _coarse_blocks(g1, g2, alpha, u, nu, tol_b, thin, dp, rp, sums, work, wz,
                                        _NO, _BLOCK_SWEEPS, _YES, _block_size(lamG), g_max)
        changed = 0
        for k in range(n):
            a_new = not u[k] > 0.0
            changed += a_new != active[k]
            active[k] = a_new
        if changed == 0 and quiet and _SETTLE_QUIET:
            # the set is optimal with the step's baseline, which is optimal
            # for the set: what the step still flags the blocks refuse
            # (slow-1kHz, 4,000,000 frames: 16 violators at 7e-8 to 2.5e-7
            # of max|gradient| that the blocks solved without change, below
            # their rounding floor or left out as dependent by their
            # factorisation (which, not measured); changing their side took
            # 3 steps, 14 came back as negative spikes, and the polish
            # ended on the same set)
            converged = True
            break
        if changed == 0:
            if n_bad < prev_bad:
                # the step's violators answer the baseline (with it fixed
                # none violates): a block exchange of them (one at a time
                # took 30 steps on 4,000,000 frames at 1 kHz, 17 violators
                # left by the settle; at once 5)
                for k in range(n):
                    if flip[k]:
                        active[k] = not active[k]
            else:
                active[last_bad] = not active[last_bad]
        prev_bad = n_bad
    for k in range(n):
        s_out[k] = u[k] if u[k] > 0.0 else 0.0
    s_out[T - 1] = 0.0
    return it, converged


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _direct_gradient_fma(y, bvec, g1, g2, alpha, lamG, active, u, nu, work2, scale=1.0):
    """:func:`._numba_local.direct_gradient` (clipped) with one multiply-add
    on each recursion's loop-carried chain (g2 q2 and the input added off
    it, as in :func:`_nu_pass_fma`) and the residual formed in the forward
    pass: 54,000 frames 0.44 -> 0.14 ms; the same accuracy, other rounding
    (~3e-12 of max|g| apart on the 1 kHz 3 s kernel).  nu is written as
    scale * (g / alpha) (alpha: the gradient g itself, as nu *= alpha after
    it)."""
    # (the spikes clipped in the forward pass itself, not a pass of their
    # own before it: the same numbers, a pass fewer)
    return _direct_gradient_core(y, bvec, g1, g2, alpha, lamG, active, u, nu, work2, scale,
                                 True)


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _direct_gradient_raw(y, bvec, g1, g2, alpha, lamG, active, u, nu, work2, scale=1.0):
    """:func:`_direct_gradient_fma` at the free spikes as they are (negative
    ones too; 0 on the active set)."""
    return _direct_gradient_core(y, bvec, g1, g2, alpha, lamG, active, u, nu, work2, scale,
                                 False)


@njit(cache=_CACHE, nogil=True, fastmath={"contract"}, inline="always")
def _direct_gradient_core(y, bvec, g1, g2, alpha, lamG, active, u, nu, work2, scale, clip):
    """The two recursions of :func:`_direct_gradient_fma` at spikes ``u``,
    set to 0 on the active set (with ``clip`` also where not positive) in
    the forward pass as it reads them; nu = scale * (g / alpha)
    (:func:`_gradient_back`).  Returns (max |gradient|, fit term)."""
    n = u.shape[0]
    rt = y[0] - bvec[0]
    f_fit = 0.5 * rt * rt
    q1 = 0.0
    q2 = 0.0
    for k in range(n):
        uk = u[k]
        keep = (not active[k]) & ((uk > 0.0) | (not clip))
        v = uk if keep else 0.0
        u[k] = v
        q = g1 * q1 + (v + g2 * q2)
        rt = y[k + 1] - alpha * q - bvec[k + 1]
        work2[k + 1] = rt
        f_fit += 0.5 * rt * rt
        q2 = q1
        q1 = q
    return _gradient_back(g1, g2, alpha, lamG, nu, work2, scale), f_fit


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _gradient_back(g1, g2, alpha, lamG, nu, work2, scale):
    """The direct gradient's backward pass from the residual in work2[1:]:
    g = lamG - alpha K' r, nu = scale * (g / alpha).  Returns max|g|.
    (Not inline="always": inlined into its two callers it slowed the 30 /
    100 Hz scalar warm moves, which never run it, by 2-6 % (in-process
    A/B, 21 alternations): the compiled row solver's code grew.)"""
    n = nu.shape[0]
    p1 = 0.0
    p2 = 0.0
    g_max = 0.0
    for j in range(n - 1, -1, -1):
        p = g1 * p1 + (work2[j + 1] + g2 * p2)
        g = lamG - alpha * p
        nu[j] = scale * (g / alpha)
        g_max = max(g_max, abs(g))
        p2 = p1
        p1 = p
    return g_max


@njit(cache=_CACHE, nogil=True, fastmath=True)
def _scale_max(nu, alpha):
    """nu *= alpha and max|nu| in one pass (each product and the maximum are
    exact whatever the order: the same numbers as two passes; fastmath lets
    the maximum vectorise with the products; 1,000,000 samples 0.62 -> 0.45
    ms)."""
    g_max = 0.0
    for k in range(nu.shape[0]):
        v = alpha * nu[k]
        nu[k] = v
        g_max = max(g_max, abs(v))
    return g_max


@njit(cache=_CACHE, nogil=True)
def _coarse_polish_blocks(y, g1, g2, alpha, lamG, mode, mu, active, s_i, bvec, fws, bws,
                          budget, tables_ok, gain=1e-12):
    """:func:`_coarse_polish` by block settles (:func:`_coarse_blocks`; any
    free set): each round forms the gradient directly at the answer, solves
    every block once (the free spikes made exact, which the full step's
    rounding leaves ~1e-6 of the largest gradient off), then the blocks with
    violators below -``_COARSE_POLISH_TOL`` max|gradient|; if that changes
    the set and lowers the objective (baseline fixed) by more than
    ``_DENSE_GAIN`` of the fit term, :func:`_coarse_settle` settles from the
    new set (at most ``budget`` steps in all; if it does not settle, the
    answer before stands).  At most ``_COARSE_POLISH`` rounds.  With
    ``tables_ok`` the tables (:func:`_coarse_tables`) are current and ``wz``
    zero (after :func:`_coarse_settle`; nothing in between uses that part
    of the workspace), else built here, once: the rounds and their settles
    leave both so.  Returns (steps, rounds that changed the set)."""
    T = y.shape[0]
    n = T - 1
    _gain, _gb, _x, u, nu, _s_ipm, work, work2, rest = _coarse_views(fws, n, T, mode)
    _z, _G, wz, dp, rp, s_keep, b_keep, sums = _coarse_block_views(rest, n, T)
    thin = max(1, int(_THIN_PEAK * peak_samples(g1, g2)))
    it = 0
    moved = 0
    if not tables_ok:
        _coarse_tables(g1, g2, n, dp, rp, sums)
        for k in range(n):
            wz[k] = 0.0
    # (active is not s_i > 0 while s_i is unchanged: set by the first
    # round's gradient pass, again only after a settle)
    fresh = False
    for _r in range(_COARSE_POLISH):
        g_max, f_fit = _polish_gradient(y, bvec, g1, g2, alpha, lamG, active, s_i, u, nu, work2)
        fresh = True
        if not g_max > 0.0:
            break
        f0 = f_fit
        # (the spikes z are u itself, s_i clipped at 0, and the gradient
        # alpha nu formed in nu's place: no copies, the same numbers)
        z = u
        # (the sum in a pass of its own, in the same order; at lambda 0 it
        # adds zeros to a positive f0: left out)
        if lamG != 0.0:
            for k in range(n):
                f0 += lamG * z[k]
        _coarse_blocks(g1, g2, alpha, z, nu, _COARSE_POLISH_TOL * g_max, thin, dp, rp, sums, work,
                       wz, _YES, _BLOCK_SWEEPS, _NO, _block_size(lamG), g_max)
        changed = 0
        for k in range(n):
            changed += (z[k] > 0.0) != (not active[k])
        if changed == 0 or it >= budget:
            break
        # the objective at z with the baseline fixed: forward_conv's
        # recursion on z and the fit term in one pass (the same numbers in
        # the same order; z not copied, K z not stored)
        rt = (y[0] - 0.0) - bvec[0]
        f1 = 0.5 * rt * rt
        q1 = 0.0
        q2 = 0.0
        for k in range(n):
            q = z[k] + g1 * q1 + g2 * q2
            rt = y[k + 1] - alpha * q - bvec[k + 1]
            f1 += 0.5 * rt * rt
            q2 = q1
            q1 = q
        if lamG != 0.0:
            for k in range(n):
                f1 += lamG * z[k]
        if not f0 - f1 > gain * f_fit:
            break
        for t in range(T):
            s_keep[t] = s_i[t]
            b_keep[t] = bvec[t]
        for k in range(n):
            active[k] = not z[k] > 0.0
        it2, ok = _coarse_settle(y, g1, g2, alpha, lamG, mode, mu, active, budget - it, s_i,
                                 bvec, fws, bws, _YES, _ZERO, _NO)
        fresh = False
        it += it2
        if not ok:
            for t in range(T):
                s_i[t] = s_keep[t]
                bvec[t] = b_keep[t]
            break
        moved += 1
    if not fresh:
        for k in range(n):
            active[k] = not s_i[k] > 0.0
    return it, moved


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _polish_gradient(y, bvec, g1, g2, alpha, lamG, active, s_i, u, nu, work2):
    """:func:`_coarse_polish_blocks`' gradient at s_i: active = not s_i > 0,
    u = s_i clipped at 0, then :func:`_direct_gradient_fma`'s passes with the
    gradient's scale alpha applied in its backward pass (nu = alpha (g /
    alpha), as that function's nu times alpha): the same numbers in three
    passes fewer.  Returns (max|gradient|, the fit term)."""
    n = u.shape[0]
    rt = y[0] - bvec[0]
    f_fit = 0.5 * rt * rt
    q1 = 0.0
    q2 = 0.0
    for k in range(n):
        sk = s_i[k]
        pos = sk > 0.0
        active[k] = not pos
        v = sk if pos else 0.0
        u[k] = v
        q = g1 * q1 + (v + g2 * q2)
        rt = y[k + 1] - alpha * q - bvec[k + 1]
        work2[k + 1] = rt
        f_fit += 0.5 * rt * rt
        q2 = q1
        q1 = q
    return _gradient_back(g1, g2, alpha, lamG, nu, work2, alpha), f_fit


# steps a warm start may take before the trace is solved again from a cold
# start (cold solves take <= ~40 steps on every regime of bench_regimes.py;
# warm ones <= ~35)
_WARM_BUDGET = 100


# _row_check: a drift weight mu above which y's range and max |b| are read
# before the bound's pass pair (mu eps max|b| can exceed the tolerance only
# where max |b| > 4.5e8 range / mu: at 30-100 Hz mu is 1e5-1e7)
_DRIFT_RANGE_FIRST = 1e8


@njit(cache=_CACHE, nogil=True)
def _row_check(yi, si, bvec, b, i, g1, g2, alpha, lamG, G, mode, mu, kkt_tol, tol_ws, conv, fi):
    """pdas_rows' read-out of row i: its baseline into b (a drift baseline
    is solved in b[i] itself: there ``bvec`` is b[i]), the KKT check into
    conv[i], the fit K s + b into fi."""
    T = yi.shape[0]
    if mode != 2:
        _store_baseline(b, i, bvec)
        # one pass pair: kkt_one's (_kkt_fused) at the one baseline stored,
        # the trace's range and the fit read in them (_kkt_scalar_b: the
        # same numbers, or within rounding where its recursions run as two
        # chains; 1,000,000 frames 4.6 -> 3.6 -> ~2.5 -> ~1.9 ms)
        v_s, v_b, lo, hi = _kkt_scalar_b(yi, si, bvec[0], g1, g2, alpha, lamG, G, mode,
                                         tol_ws[0:T], fi)
        conv[i] = max(v_s, v_b) <= _tolerance_of(lo, hi, kkt_tol, mode)
        return
    # drift: the bound needs no smoother but carries mu times b's rounding;
    # where that alone exceeds the tolerance (1 kHz, mu ~4e9: 5e-6 against
    # 1e-6) it always fails: the exact check at once.  Else the bound, whose
    # pass pair writes the fit.  Where mu is large enough for that (mu over
    # _DRIFT_RANGE_FIRST), y's range and max |b| in a pass of their own
    # first; else read in the bound's pass pair (the same numbers, the same
    # decision after it; 0.03 ms per 54,000 frames less)
    # (the exact check in three passes, _drift_exact_fwd and _drift_exact_back:
    # kkt_one's numbers; its forward pass also reads y's range and max |b|)
    split = _DRIFT_EXACT3 and mu >= 1e-50
    fwd = False
    if mu > _DRIFT_RANGE_FIRST:
        if split:
            lo, hi, b_max = _drift_exact_fwd(yi, si, bvec, g1, g2, alpha, tol_ws[0:T])
            fwd = True
        else:
            lo = yi[0]
            hi = yi[0]
            b_max = 0.0
            for t in range(T):
                lo = min(lo, yi[t])
                hi = max(hi, yi[t])
                b_max = max(b_max, abs(bvec[t]))
        tol = _tolerance_of(lo, hi, kkt_tol, mode)
        # (the exact check at once already where the bound's own rounding
        # term comes near the tolerance: mu eps max|b| over _DRIFT_BOUND_SHARE
        # of it, one constant _DRIFT_EPS_SHARE = eps / _DRIFT_BOUND_SHARE; as
        # a product by the share the 30/100 Hz scalar moves, which never run
        # this branch, read 2-3.5 % slower in-process: the row solver's code)
        exact = mu * _DRIFT_EPS_SHARE * b_max > tol
        if not exact:
            # (K' r not stored: not read here)
            v_s, v_b, _lo, _hi, _bm = _kkt_fused(yi, si, bvec, g1, g2, alpha, lamG, G, mode, mu,
                                                 tol_ws[0:T], tol_ws[T:T], fi)
            exact = v_s <= tol and v_b > tol
            fwd = False
    else:
        v_s, v_b, lo, hi, b_max = _kkt_fused(yi, si, bvec, g1, g2, alpha, lamG, G, mode, mu,
                                             tol_ws[0:T], tol_ws[T:T], fi)
        tol = _tolerance_of(lo, hi, kkt_tol, mode)
        exact = mu * 2.220446049250313e-16 * b_max > tol or (v_s <= tol and v_b > tol)
    if exact and split:
        if not fwd:
            _drift_exact_fwd(yi, si, bvec, g1, g2, alpha, tol_ws[0:T])
        v_s, v_b = _drift_exact_back(yi, si, bvec, g1, g2, alpha, lamG, G, mu, tol_ws[0:T],
                                     tol_ws[T:2 * T], tol_ws[2 * T:3 * T], fi)
    elif exact:
        v_s, v_b = kkt_one(yi, si, bvec, g1, g2, alpha, lamG, G, mode, mu, tol_ws[0:T],
                           tol_ws[T:2 * T], tol_ws[2 * T:3 * T], _NO)
        for t in range(T):
            # the fit K s + b = y - r, r the residual kkt_one leaves
            fi[t] = yi[t] - tol_ws[t]
    conv[i] = max(v_s, v_b) <= tol


# _row_check (mu over _DRIFT_RANGE_FIRST): the exact drift check at once, not
# after the bound, where mu eps max|b| exceeds _DRIFT_BOUND_SHARE of the
# tolerance.  The bound's baseline term carries 2.3-2.9 times mu eps max|b| on
# the 1 kHz kernels (72 warm drift solves, both 1 kHz regimes, seeds 0-3, the
# nine bench moves): it passed up to mu eps max|b| = 0.38 of the tolerance
# and failed from 0.42 on (slow-1kHz tau_decay -50 %, lambda 0 tau_decay
# +50 %), where the bound's pass pair (~0.25 ms per 54,000 frames) was spent
# before the exact check; the exact check where the bound would have passed
# costs ~0.04 ms more
_DRIFT_BOUND_SHARE = 1.0 / 3.0
_DRIFT_EPS_SHARE = 2.220446049250313e-16 / _DRIFT_BOUND_SHARE


# _row_check's exact drift check in three passes (_drift_exact_fwd,
# _drift_exact_back: kkt_one's and smooth_baseline's arithmetic in their
# order, the same v_s, v_b and fit) instead of kkt_one's six and a copy
_DRIFT_EXACT3 = True


@njit(cache=_CACHE, nogil=True)
def _drift_exact_fwd(y, s, bvec, g1, g2, alpha, work):
    """First pass of :func:`_row_check`'s exact drift check: w = y - K s
    into ``work`` (kkt_one's forward arithmetic), with y's range and max |b|
    read in it.  Returns (lo, hi, max |b|)."""
    T = y.shape[0]
    q1 = 0.0
    q2 = 0.0
    work[0] = y[0] - 0.0
    lo = y[0]
    hi = y[0]
    b_max = max(0.0, abs(bvec[0]))
    for k in range(T - 1):
        yk = y[k + 1]
        lo = min(lo, yk)
        hi = max(hi, yk)
        b_max = max(b_max, abs(bvec[k + 1]))
        q = s[k] + g1 * q1 + g2 * q2
        work[k + 1] = yk - alpha * q
        q2 = q1
        q1 = q
    return lo, hi, b_max


@njit(cache=_CACHE, nogil=True)
def _drift_exact_back(y, s, bvec, g1, g2, alpha, lamG, G, mu, work, gain, qout, fi):
    """The rest of :func:`kkt_one`'s drift check from w = y - K s in
    ``work`` (:func:`_drift_exact_fwd`; mu >= 1e-50): one backward pass
    runs the smoother's backward recursion (:func:`smooth_baseline`: its
    gains into ``gain``, its sums into ``qout``) beside the adjoint
    recursion of r = w - b (v_s; the fit y - r into ``fi``), one forward
    pass the smoother's substitution, each best baseline compared with b
    as it is formed (v_b).  The same operations in the same order as
    kkt_one, so the same (v_s, v_b); ``work`` ends holding r as there."""
    T = y.shape[0]
    imu = 1.0 / mu
    N = 0.0
    D = 1.0
    q = 0.0
    p1 = 0.0
    p2 = 0.0
    g = lamG - 0.0
    v_s = max(0.0, abs(g) if s[T - 1] > 0.0 else -g)
    K = _smooth_chunk(mu)
    t0 = T - 1
    while t0 > 0:
        t_end = max(t0 - K, 0)
        for t in range(t0, t_end, -1):
            wt = work[t]
            # the smoother's backward recursion at t
            N, D, c, q = _smooth_back(N, D, q, imu, wt)
            gain[t] = c
            qout[t] = q
            q = c * q
            # the adjoint recursion at j = t - 1, from r[t] = w[t] - b[t]
            rt = wt - bvec[t]
            work[t] = rt
            fi[t] = y[t] - rt
            p = rt + g1 * p1 + g2 * p2
            gr = alpha * p
            p2 = p1
            p1 = p
            g = lamG - gr
            v = abs(g) if s[t - 1] > 0.0 else -g
            if v > v_s:
                v_s = v
        t0 = t_end
        N, D = _smooth_rescale(N, D)
    w0 = work[0]
    P = N / D + 1.0
    q -= w0
    bb = -q / P
    r0 = w0 - bvec[0]
    work[0] = r0
    fi[0] = y[0] - r0
    v_b = 0.0
    v = abs(bb - bvec[0])
    if v > v_b:
        v_b = v
    for t in range(1, T):
        bb = gain[t] * (bb - qout[t] * imu)
        v = abs(bb - bvec[t])
        if v > v_b:
            v_b = v
    return v_s / G, v_b


# a settled warm start's polish takes a changed set only where the objective
# (baseline fixed) falls by more than _WARM_POLISH_GAIN of the fit term (at
# 1e-12 it took a step more for 1e-12 to 4e-11 on bench_solver.py --warm's
# small moves at lambda 0, ~3 ms; the moves it must fix fell 3e-9 to 2.4e-8)
_WARM_POLISH_GAIN = 1e-10


@njit(cache=_CACHE, nogil=True)
def _coarse_polish_any(yi, g1, g2, alpha, lamG, mode, mu, active, si, bvec, pws, bws, budget,
                      gain):
    """The polish of an answer on a kernel decaying over more than
    ``_EARLY_DECAY`` samples: dense (:func:`_coarse_polish`) where its free
    set fits the dense settle, else by blocks (:func:`_coarse_polish_blocks`);
    a changed set taken where the objective falls by more than ``gain`` of
    the fit term.  Returns its steps."""
    for k in range(active.shape[0]):
        active[k] = not si[k] > 0.0
    if _coarse_dense(g1, g2, active, pws.shape[0]):
        it, _moved = _coarse_polish(yi, g1, g2, alpha, lamG, mode, mu, active, si, bvec, pws,
                                    bws, budget, gain)
    else:
        it, _moved = _coarse_polish_blocks(yi, g1, g2, alpha, lamG, mode, mu, active, si, bvec,
                                           pws, bws, budget, _NO, gain)
    return it


@njit(cache=_CACHE, nogil=True)
def _coarse_row(yi, warm, g1, g2, alpha, lamG, mode, mu, k, active, max_iters, si, bvec, pws,
                bws):
    """One row of :func:`pdas_rows` on a kernel decaying over more than
    ``_EARLY_DECAY`` samples (``k`` from :func:`_coarse_factor` with
    blocks).  A warm start (``active`` its guess) goes on as
    :func:`pdas_one`'s warm start unless its first steps find a large move
    (where that would go to the cold interior point, or its first step
    flags more than n / ``_BAIL_AT_ONCE`` samples); then, and on a cold
    start, the binned start (:func:`_coarse_start`, at most half the
    budget; after such a warm move settled by blocks, below, with
    ``_WARM_BAIL_BLOCKS``): where lambda > 0 and its guess fits the dense settle
    (:func:`_coarse_dense`), on as a warm start and polished
    (:func:`_coarse_polish`) as :func:`pdas_rows` does on at most
    ``_COARSE_EARLY_T`` frames; else (or where that warm start would go to
    the cold interior point) settled by blocks (:func:`_coarse_settle`, at
    most ``_BLOCK_STEPS`` steps) and polished exact
    (:func:`_coarse_polish_blocks`).  Where the binned solve or the settle
    does not settle: the plain cold path with the steps left.  A warm move
    goes to the binned start at once where its guess, binned, reads as a
    large move (``_WARM_SKIP``; at lambda 0 also ``_WARM_SKIP_NEG``; on
    kernels whose peak spans ``_WARM_SKIP_PEAK`` bins); at lambda 0 a warm
    move that bails all the same is first settled by blocks from its own
    guess (``_WARM_BAIL_OLD``, at most ``_WARM_OLD_STEPS`` steps).  Returns
    the steps (all of them, a binned step counted as one)."""
    n = active.shape[0]
    it = 0
    skip = False
    if warm and _WARM_SKIP > 0.0 and peak_samples(g1, g2) >= _WARM_SKIP_PEAK * k:
        frac, neg = _coarse_warm_frac(yi, g1, g2, alpha, lamG, mode, mu, k, active, pws, bws)
        skip = frac > _WARM_SKIP or (lamG == 0.0 and neg > _WARM_SKIP_NEG)
    if skip:
        # a large move (tau_decay -50 %; at lambda 0 tau_decay +50 %,
        # tau_rise +20 %): the binned start at once (its binned step counted
        # as one)
        it = 1
    if warm and not skip:
        # (at lambda 0 the guess kept in si for a bail: pdas_one returns
        # from one before writing its answer there)
        old = _WARM_BAIL_OLD and lamG == 0.0
        if old:
            for j in range(n):
                si[j] = 0.0 if active[j] else 1.0
        budget = min(max_iters, _WARM_BUDGET)
        it, settled = pdas_one(yi, g1, g2, alpha, lamG, mode, mu, active, budget, si, bvec,
                               pws, bws, 1e-11, _YES, _YES, _BAIL_AT_ONCE, _YES)
        if settled:
            # polished as the binned start's answer: its dense check
            # (dense_verify, 1e-10 of the gradient) left it 3e-9 to 2.4e-8
            # above the optimum on 2 of 4,037 random moves
            # (bench_cold_start.py --khz --warm --lam0 0.2 --seed 32, nos.
            # 2084 and 2613; the same on main), and it skips free sets too
            # large for the dense settle
            return it + _coarse_polish_any(yi, g1, g2, alpha, lamG, mode, mu, active, si, bvec,
                                           pws, bws, max_iters - it, _WARM_POLISH_GAIN)
        if it >= budget:
            # not a large move but no settle either: cold, as pdas_rows
            for j in range(n):
                active[j] = lamG > 0.0
            it2, _ok = pdas_one(yi, g1, g2, alpha, lamG, mode, mu, active, max_iters - it, si,
                                bvec, pws, bws, 1e-11, _NO, _NO, _COLD_AT_ONCE, _YES)
            return it + it2
        if old:
            # a move the binned checks let through that bails at lambda 0
            # (tau_decay -2 %, fs -1 % on some traces): settled by blocks
            # from its own guess (_WARM_BAIL_OLD); the binned start only
            # where that does not settle
            for j in range(n):
                active[j] = not si[j] > 0.0
            it2, settled = _coarse_settle(yi, g1, g2, alpha, lamG, mode, mu, active,
                                          min(max_iters - it, _WARM_OLD_STEPS), si, bvec, pws,
                                          bws, _NO, _WARM_SETTLE_DIRECT,
                                          warm and _WARM_SETTLE_RAW)
            it += it2
            if settled:
                it3, _moved = _coarse_polish_blocks(yi, g1, g2, alpha, lamG, mode, mu, active,
                                                    si, bvec, pws, bws, max_iters - it, _YES,
                                                    1e-12)
                return it + it3
    it_c, ok_c = _coarse_start(yi, g1, g2, alpha, lamG, mode, mu, k, active, pws, bws,
                               (max_iters - it) // 2, warm and _WARM_FIRST0)
    it += it_c
    # (a warm start that bailed: by blocks, _WARM_BAIL_BLOCKS)
    if (ok_c and lamG > 0.0 and not (warm and _WARM_BAIL_BLOCKS)
            and peak_samples(g1, g2) <= _COARSE_PEAK_EARLY
            and _coarse_dense(g1, g2, active, pws.shape[0])):
        # a guess that fits the dense settle: on as a warm start there, then
        # polished (the binned start's route on at most _COARSE_EARLY_T
        # frames: faster where it fits, 1 kHz 0.2/3.0 s, 54,000 frames,
        # ~80 free samples: 9 against 13 ms); by blocks if that warm start
        # would go to the cold interior point
        budget = min(max_iters - it, _WARM_BUDGET)
        it2, settled = pdas_one(yi, g1, g2, alpha, lamG, mode, mu, active, budget, si, bvec,
                                pws, bws, 1e-11, _YES, _YES, _COLD_AT_ONCE, _YES)
        it += it2
        if settled:
            it3, _moved = _coarse_polish(yi, g1, g2, alpha, lamG, mode, mu, active, si, bvec,
                                         pws, bws, max_iters - it, 1e-12)
            return it + it3
        ok_c = it2 < budget
    if ok_c:
        it2, settled = _coarse_settle(yi, g1, g2, alpha, lamG, mode, mu, active,
                                      min(max_iters - it, _BLOCK_STEPS), si, bvec, pws, bws, _NO,
                                      _WARM_SETTLE_DIRECT if warm else _SETTLE_DIRECT,
                                      warm and _WARM_SETTLE_RAW)
        it += it2
        if settled:
            it3, _moved = _coarse_polish_blocks(yi, g1, g2, alpha, lamG, mode, mu, active, si,
                                                bvec, pws, bws, max_iters - it, _YES, 1e-12)
            return it + it3
    for j in range(n):
        active[j] = lamG > 0.0
    it2, _ok = pdas_one(yi, g1, g2, alpha, lamG, mode, mu, active, max_iters - it, si, bvec,
                        pws, bws, 1e-11, _NO, _NO, _COLD_AT_ONCE, _YES)
    return it + it2


_KEY_LOW = np.int64(0x7FFFFFFFFFFFFFFF)
_EXP_BITS = np.int64(0x7FF0000000000000)


@njit(cache=_CACHE, nogil=True)
def row_ranges(y, lo, hi):
    """Each row's minimum and maximum into ``lo``, ``hi`` in one pass, where
    every value of y is finite (returns True; else False, lo and hi then
    unspecified).  The values compared as integers (a double's bits, its
    lower 63 flipped where it is negative, order as the doubles do, -0.0
    below +0.0), which vectorises where numba's float min and max do not:
    one pass ~0.1 ms per 1,000,000 values in the caches, against NumPy's
    min and max 0.1 ms each; a non-finite value has every exponent bit
    set."""
    N, T = y.shape
    lo_k = lo.view(np.int64)
    hi_k = hi.view(np.int64)
    for i in range(N):
        yi = y[i].view(np.int64)
        a = _KEY_LOW
        b = -_KEY_LOW - 1
        bad = False
        for t in range(T):
            x = yi[t]
            k = x ^ ((x >> 63) & _KEY_LOW)
            a = k if k < a else a
            b = k if k > b else b
            bad |= (x & _EXP_BITS) == _EXP_BITS
        if bad:
            return False
        lo_k[i] = a ^ ((a >> 63) & _KEY_LOW)
        hi_k[i] = b ^ ((b >> 63) & _KEY_LOW)
    return True


# pdas_rows: rows longer than this checked for finiteness one at a time,
# just before each is solved
_SCAN_AHEAD_T = 1 << 17


@njit(cache=_CACHE, nogil=True)
def _row_finite(v):
    """Whether every value of ``v`` is finite (or-reduced, which vectorises:
    0.03 -> 0.008 ms per 54,000)."""
    bad = False
    for t in range(v.shape[0]):
        bad |= not math.isfinite(v[t])
    return not bad


@njit(cache=_CACHE, nogil=True)
def pdas_rows(y, init, warm, g1, g2, alpha, lamG, G, mode, mu, kkt_tol, max_iters, s, b, fit,
              iters, conv, fws, bws, y_finite=False):
    """pdas_one per row, in one call (one GIL release: the slider path's
    solve thread then never queues for the GIL behind the GUI thread).

    Checks first that y (and with ``warm`` the warm start ``init``, whose
    zeros are the starting guess; without, no spikes, or at lamG = 0 spikes
    everywhere) is finite: returns 1 (y) or 2 (init) and
    does nothing else if not, else 0 (y's rows over ``_SCAN_AHEAD_T``
    frames are checked one at a time just before each is solved: there the
    rows before a non-finite one are solved and written, and init is
    checked first; run_deconvolution_full tells a non-finite y before it
    calls this, so nothing is written there).  Fills the activity ``s``, the
    baseline ``b`` ((n, 1), or (n, T) for drift), the fit K s + b, the
    step counts and ``conv``, the KKT check of each answer.  ``fws``,
    ``bws``: workspaces of :func:`workspace_sizes` (T).  ``y_finite``: the
    caller has checked every value of y (run_deconvolution_full's row
    ranges): y is not scanned again (0.2-0.3 ms a 1,000,000-frame row).

    A cold start on a slow kernel (:func:`_coarse_factor`) first solves the
    trace binned by k frames (:func:`_coarse_start`, at most half the step
    budget, given a budget of at least ``_COARSE_MIN_BUDGET``) and settles
    from those spikes as a warm start does (on kernels decaying over more
    than ``_EARLY_DECAY`` samples only if the guess fits the dense settle,
    :func:`_coarse_dense`, else from the plain cold start, and there its
    answer is polished exact, :func:`_coarse_polish`); its steps count
    both solves' and the polish's (a binned step costs ~1/k of a full one).
    """
    N, T = y.shape
    n = T - 1
    # (or-reduced per row, which vectorizes: 0.03 -> 0.008 ms per 54,000)
    if T <= _SCAN_AHEAD_T and not y_finite:
        for i in range(N):
            if not _row_finite(y[i]):
                return 1
    if warm:
        # (every row's init first, at any T: a bad one then writes nothing)
        for i in range(N):
            if not _row_finite(init[i]):
                return 2
    bvec = fws[0:T]
    pws = fws[T:]
    active = bws[4 * n:5 * n]
    tol_ws = pws[0:3 * T]
    # a cold start guesses no spikes; at lambda = 0 (no sparsity: most
    # samples carry some activity) spikes everywhere, which saves a third
    # of the steps there
    cold = lamG > 0.0
    # a cold start on a slow kernel: from a binned solve (_coarse_start)
    # ... settled by blocks on kernels decaying over more than _EARLY_DECAY
    # samples (_coarse_settle), also after a large warm move there
    kb = _coarse_factor(g1, g2, lamG, T, _YES) if max_iters >= _COARSE_MIN_BUDGET else 0
    kc = 0 if (warm or kb > 0) else _coarse_factor(g1, g2, lamG, T, _NO)
    d_root = _dominant_root(g1, g2)
    polish = (kc > 0 and _COARSE_POLISH > 0 and _EARLY_DECAY > 0.0
              and not (d_root < 1.0 and _EARLY_DECAY * (1.0 - d_root) >= 1.0))
    for i in range(N):
        if T > _SCAN_AHEAD_T and not y_finite:
            # a long row checked just before it is solved: the check then
            # brings it into the caches for the solve's first pass (rows
            # before it are then solved and written: the caller raises)
            if not _row_finite(y[i]):
                return 1
        # a drift baseline is solved in b[i] itself (no copy: _row_check)
        bvec_i = b[i] if mode == 2 else bvec
        for k in range(n):
            active[k] = init[i, k] <= 0.0 if warm else cold
        if kb > 0:
            iters[i] = _coarse_row(y[i], warm, g1, g2, alpha, lamG, mode, mu, kb, active,
                                   max_iters, s[i], bvec_i, pws, bws)
            _row_check(y[i], s[i], bvec_i, b, i, g1, g2, alpha, lamG, G, mode, mu, kkt_tol, tol_ws,
                       conv, fit[i])
            continue
        it_c = 0
        warm_i = warm
        if kc > 0 and max_iters >= _COARSE_MIN_BUDGET:
            it_c, ok_c = _coarse_start(y[i], g1, g2, alpha, lamG, mode, mu, kc, active, pws,
                                       bws, max_iters // 2, _NO)
            if ok_c:
                warm_i = _YES
                if not _coarse_dense(g1, g2, active, pws.shape[0]):
                    # too many free samples for the dense settle: plain cold
                    for k in range(n):
                        active[k] = cold
                    warm_i = _NO
        left = max_iters - it_c
        budget = min(left, _WARM_BUDGET) if warm_i else left
        # (modes 0 and 1: _row_check reads bvec[0] alone; b_all does
        # nothing with drift, whose steps are not flat)
        it, settled = pdas_one(y[i], g1, g2, alpha, lamG, mode, mu, active, budget, s[i],
                               bvec_i, pws, bws, 1e-11, warm_i, _NO, _COLD_AT_ONCE, _NO)
        if warm_i and not settled and it >= budget and left > budget:
            # a warm start that has not settled in many times a cold solve's
            # steps is leading the exchange astray (seen at lambda = 0 on a
            # slow 1 kHz kernel after tau_decay +50 %: 2000 steps, 4 s): cold
            for k in range(n):
                active[k] = cold
            it2, settled = pdas_one(y[i], g1, g2, alpha, lamG, mode, mu, active,
                                    left - it, s[i], bvec_i, pws, bws, 1e-11, _NO, _NO,
                                    _COLD_AT_ONCE, _NO)
            it += it2
        elif polish and warm_i and not warm and settled:
            # the binned start on a kernel decaying over more than
            # _EARLY_DECAY samples: its answer made exact (_coarse_polish)
            it2, _moved = _coarse_polish(y[i], g1, g2, alpha, lamG, mode, mu, active, s[i],
                                         bvec_i, pws, bws, left - it, 1e-12)
            it += it2
        it += it_c
        iters[i] = it
        _row_check(y[i], s[i], bvec_i, b, i, g1, g2, alpha, lamG, G, mode, mu, kkt_tol, tol_ws,
                   conv, fit[i])
    return 0


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
        # a loop: the slice assignment b[i, :] = bvec compiles numba's
        # broadcasting and its error messages (~2.5 s of a cold compile)
        bi = b[i]
        for t in range(bi.shape[0]):
            bi[t] = bvec[t]


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
def kkt_one(y, s, bvec, g1, g2, alpha, lamG, G, mode, mu, work, grad, bbest, bound_b=False):
    """Largest violations of the optimality conditions, in trace units.

    Returns (v_s, v_b).  v_s: with r = y - K s - b and g = lamG - K' r, the
    largest of |g| on s > 0 and max(-g, 0) on s = 0, divided by G = sum(h)
    (so it reads as a residual amplitude).  v_b: how far b is from the best
    baseline for these spikes, max |B(y - K s) - b| (B the mean, or the
    drift smoother): the baseline's stationarity condition mapped through
    (I + mu L)^-1, whose rows are non-negative and sum to 1, so this is
    never smaller than the gradient's size measured that way, and it is
    computed without the cancellation of forming mu L b.  With ``bound_b``
    (drift only) v_b is an upper bound that needs no smoother: the gradient
    max |(I + mu L) b - (y - K s)|.
    """
    T = y.shape[0]
    if mode != 2 or bound_b:
        v_s, v_b, _lo, _hi, _bm = _kkt_fused(y, s, bvec, g1, g2, alpha, lamG, G, mode, mu, work,
                                        grad, work[0:0])
        return v_s, v_b
    # the drift's exact check: forward_conv's and adjoint_conv's arithmetic
    # with the residual and the spikes' violation read in their passes
    q1 = 0.0
    q2 = 0.0
    work[0] = y[0] - 0.0
    for k in range(T - 1):
        q = s[k] + g1 * q1 + g2 * q2
        work[k + 1] = y[k + 1] - alpha * q
        q2 = q1
        q1 = q
    best_baseline(work, mode, mu, grad, bbest)
    v_b = 0.0
    for t in range(T):
        v = abs(bbest[t] - bvec[t])
        if v > v_b:
            v_b = v
        work[t] -= bvec[t]
    p1 = 0.0
    p2 = 0.0
    grad[T - 1] = 0.0
    g = lamG - 0.0
    v_s = max(0.0, abs(g) if s[T - 1] > 0.0 else -g)
    for j in range(T - 2, -1, -1):
        p = work[j + 1] + g1 * p1 + g2 * p2
        gr = alpha * p
        grad[j] = gr
        p2 = p1
        p1 = p
        g = lamG - gr
        v = abs(g) if s[j] > 0.0 else -g
        if v > v_s:
            v_s = v
    return v_s / G, v_b


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _kkt_fused(y, s, bvec, g1, g2, alpha, lamG, G, mode, mu, work, grad, fi):
    """:func:`kkt_one` in two passes (the same arithmetic, so the same
    numbers) where its baseline part needs no smoother: mode 0, mode 1 (the
    mean) and the drift bound.  The forward pass forms y - K s (and its mean,
    or the drift bound), the backward pass K' r and the spikes' violation;
    ``work`` ends holding r = y - K s - b as in kkt_one, ``grad`` (unless
    empty) K' r, and ``fi`` (unless empty) the fit y - r.  Returns (v_s,
    v_b, y's range lo, hi, and with drift max |b|, else 0: the read-out's
    tolerance and its drift test, :func:`_row_check`, with no pass of their
    own)."""
    T = y.shape[0]
    v_b = 0.0
    acc = 0.0
    q1 = 0.0
    q2 = 0.0
    w = y[0]
    work[0] = w
    lo = w
    hi = w
    b_max = 0.0
    for t in range(T):
        if t > 0:
            # q2 off the loop-carried chain: one multiply-add on it
            yt = y[t]
            lo = min(lo, yt)
            hi = max(hi, yt)
            q = (s[t - 1] + g2 * q2) + g1 * q1
            w = yt - alpha * q
            work[t] = w
            q2 = q1
            q1 = q
        if mode == 1:
            acc += w
        elif mode == 2 and t > 0:
            # the bound of sample t - 1 (it reads b up to t)
            tt = t - 1
            b_max = max(b_max, abs(bvec[tt]))
            d = 0.0
            if tt > 0:
                d += bvec[tt] - bvec[tt - 1]
            d -= bvec[tt + 1] - bvec[tt]
            v = abs((bvec[tt] - work[tt]) + mu * d)
            if v > v_b:
                v_b = v
    if mode == 2:
        tt = T - 1
        b_max = max(b_max, abs(bvec[tt]))
        d = 0.0
        if tt > 0:
            d += bvec[tt] - bvec[tt - 1]
        v = abs((bvec[tt] - work[tt]) + mu * d)
        if v > v_b:
            v_b = v
    elif mode == 1:
        b_best = acc / T
        for t in range(T):
            v = abs(b_best - bvec[t])
            if v > v_b:
                v_b = v
    # backward: r = work - b, p = r[j+1] + g1 p[j+1] + g2 p[j+2], grad = alpha p
    p1 = 0.0
    p2 = 0.0
    r_next = work[T - 1] - bvec[T - 1]
    work[T - 1] = r_next
    fit = fi.shape[0] > 0
    if fit:
        fi[T - 1] = y[T - 1] - r_next
    keep_g = grad.shape[0] > 0
    if keep_g:
        grad[T - 1] = 0.0
    g = lamG - 0.0
    v_s = max(0.0, abs(g) if s[T - 1] > 0.0 else -g)
    for j in range(T - 2, -1, -1):
        p = (r_next + g2 * p2) + g1 * p1
        gr = alpha * p
        if keep_g:
            grad[j] = gr
        p2 = p1
        p1 = p
        g = lamG - gr
        v = abs(g) if s[j] > 0.0 else -g
        if v > v_s:
            v_s = v
        r_next = work[j] - bvec[j]
        work[j] = r_next
        if fit:
            fi[j] = y[j] - r_next
    return v_s / G, v_b, lo, hi, b_max


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _kkt_scalar_b(y, s, b0, g1, g2, alpha, lamG, G, mode, work, fi):
    """:func:`_kkt_fused` (modes 0 and 1) for the one baseline b0 that the
    read-out stores (b[i, 0] = bvec[0]; those modes' bvec holds it at every
    sample) with fewer streams: no baseline array read, v_b from the mean
    alone, the fit y - r written by the forward pass, the backward pass
    reading only w = y - K s and s (neither r nor K' r stored).  48 bytes a
    sample, not 96: on 1,000,000 frames, far beyond the caches, ~40 % less
    time.  The same arithmetic and so the same numbers as _kkt_fused where
    the recursions run sample by sample; on kernels decaying over at most
    _KKT_PAIRS_DECAY samples they run as two chains (_kkt_fwd_pairs,
    _kkt_back_pairs), rounded otherwise: against a long-double reference
    the fit within 3.9e-13 of max|y| (sample by sample 1.3e-13) and v_s
    within 4.4e-6 of the tolerance (8e-7), 0 verdicts changed (review,
    twenty-eighth round, 300 cases with the gate's corners).  ``work``
    ends holding w (not r).  Returns (v_s, v_b, lo, hi) as _kkt_fused
    does."""
    T = y.shape[0]
    q1 = 0.0
    q2 = 0.0
    w = y[0]
    acc = w
    work[0] = w
    fi[0] = y[0] - (w - b0)
    lo = w
    hi = w
    # (with _KKT_PAIRS, on a kernel decaying over at most _KKT_PAIRS_DECAY
    # samples, each pass's first 4 samples so and the rest in pairs:
    # _kkt_fwd_pairs, _kkt_back_pairs)
    pairs = _KKT_PAIRS and T > 8 and _KKT_PAIRS_DECAY * (1.0 - _dominant_root(g1, g2)) >= 1.0
    fwd_pairs = pairs and _KKT_FWD_PAIRS
    q3 = 0.0
    q4 = 0.0
    for t in range(1, 5 if fwd_pairs else T):
        yt = y[t]
        lo = min(lo, yt)
        hi = max(hi, yt)
        q = (s[t - 1] + g2 * q2) + g1 * q1
        w = yt - alpha * q
        work[t] = w
        fi[t] = yt - (w - b0)
        q4 = q3
        q3 = q2
        q2 = q1
        q1 = q
        acc += w
    if fwd_pairs:
        acc, lo, hi = _kkt_fwd_pairs(y, s, b0, g1, g2, alpha, work, fi, q1, q2, q3, q4, acc,
                                     lo, hi)
    v_b = 0.0
    if mode == 1:
        b_best = acc / T
        v_b = abs(b_best - b0)
    # backward: r = w - b0, p = r[j+1] + g1 p[j+1] + g2 p[j+2], grad = alpha p
    p1 = 0.0
    p2 = 0.0
    r_next = work[T - 1] - b0
    g = lamG - 0.0
    v_s = max(0.0, abs(g) if s[T - 1] > 0.0 else -g)
    j_end = T - 6 if pairs else -1
    p3 = 0.0
    p4 = 0.0
    for j in range(T - 2, j_end, -1):
        p = (r_next + g2 * p2) + g1 * p1
        # (fenced: _kkt_fused stores the product, which keeps it unfused)
        gr = _fence(alpha * p)
        p4 = p3
        p3 = p2
        p2 = p1
        p1 = p
        g = lamG - gr
        v = abs(g) if s[j] > 0.0 else -g
        if v > v_s:
            v_s = v
        r_next = work[j] - b0
    if pairs:
        v_s = _kkt_back_pairs(s, b0, g1, g2, alpha, lamG, work, j_end, p1, p2, p3, p4, v_s)
    return v_s / G, v_b, lo, hi


# _kkt_scalar_b's backward recursion in pairs (_kkt_back_pairs) on kernels
# decaying over at most _KKT_PAIRS_DECAY samples; with _KKT_FWD_PAIRS its
# forward one too (_kkt_fwd_pairs)
_KKT_PAIRS = True
_KKT_PAIRS_DECAY = 200.0
_KKT_FWD_PAIRS = True


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _kkt_fwd_pairs(y, s, b0, g1, g2, alpha, work, fi, q1, q2, q3, q4, acc, lo, hi):
    """The rest of :func:`_kkt_scalar_b`'s forward pass from sample 5 on, the
    calcium q_t = s_{t-1} + g1 q_{t-1} + g2 q_{t-2} in two chains as
    :func:`_kkt_back_pairs` (q_t = A q_{t-2} - C q_{t-4} + s_{t-1} + g1
    s_{t-2} - g2 s_{t-3}); ``q1``..``q4`` are q_4..q_1.  Writes w = y -
    alpha q into ``work`` and the fit y - (w - b0) into ``fi``; returns the
    sum of w (from ``acc``) and y's range (from ``lo``, ``hi``)."""
    T = y.shape[0]
    a2 = g1 * g1 + 2.0 * g2
    c4 = g2 * g2
    e1 = q2
    e2 = q4
    o1 = q1
    o2 = q3
    t = 5
    while t + 1 < T:
        qe = (((s[t - 1] + g1 * s[t - 2]) - g2 * s[t - 3]) - c4 * e2) + a2 * e1
        qo = (((s[t] + g1 * s[t - 1]) - g2 * s[t - 2]) - c4 * o2) + a2 * o1
        yt = y[t]
        lo = min(lo, yt)
        hi = max(hi, yt)
        w = yt - alpha * qe
        work[t] = w
        fi[t] = yt - (w - b0)
        acc += w
        yt = y[t + 1]
        lo = min(lo, yt)
        hi = max(hi, yt)
        w = yt - alpha * qo
        work[t + 1] = w
        fi[t + 1] = yt - (w - b0)
        acc += w
        e2 = e1
        e1 = qe
        o2 = o1
        o1 = qo
        t += 2
    if t < T:
        qe = (((s[t - 1] + g1 * s[t - 2]) - g2 * s[t - 3]) - c4 * e2) + a2 * e1
        yt = y[t]
        lo = min(lo, yt)
        hi = max(hi, yt)
        w = yt - alpha * qe
        work[t] = w
        fi[t] = yt - (w - b0)
        acc += w
    return acc, lo, hi


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def _kkt_back_pairs(s, b0, g1, g2, alpha, lamG, work, j0, p1, p2, p3, p4, v_s):
    """The rest of :func:`_kkt_scalar_b`'s backward pass from sample ``j0``
    down, the recursion p_j = r_{j+1} + g1 p_{j+1} + g2 p_{j+2} (r = w -
    b0) taken as two chains, one over even and one over odd j: applying
    (1 + g1 S - g2 S^2) (S the shift j -> j + 1) to it gives p_j = A p_{j+2}
    - C p_{j+4} + f_j, A = g1^2 + 2 g2, C = g2^2, f_j = r_{j+1} + g1 r_{j+2}
    - g2 r_{j+3}: each chain's step depends on its own last value only, so
    the two run side by side (the pass's loop-carried latency per sample
    halved; 1,000,000 frames ~2.5 -> ~2.2 ms for the pass pair).  Its roots
    are the squares of the kernel's (stable); rounded otherwise than the
    plain recursion (the gradient's rounding, not the fit's).  ``p1``..``p4``
    are p_{j0+1}..p_{j0+4}; returns the largest violation (v_s) with the
    given one."""
    a2 = g1 * g1 + 2.0 * g2
    c4 = g2 * g2
    # even chain (j0, j0 - 2, ...): p_{j+2}, p_{j+4}; odd chain (j0 - 1, ...)
    e1 = p2
    e2 = p4
    o1 = p1
    o2 = p3
    r1 = work[j0 + 1] - b0
    r2 = work[j0 + 2] - b0
    r3 = work[j0 + 3] - b0
    j = j0
    while j >= 1:
        r0 = work[j] - b0
        rm = work[j - 1] - b0
        pe = (((r1 + g1 * r2) - g2 * r3) - c4 * e2) + a2 * e1
        po = (((r0 + g1 * r1) - g2 * r2) - c4 * o2) + a2 * o1
        g = lamG - _fence(alpha * pe)
        v = abs(g) if s[j] > 0.0 else -g
        if v > v_s:
            v_s = v
        g = lamG - _fence(alpha * po)
        v = abs(g) if s[j - 1] > 0.0 else -g
        if v > v_s:
            v_s = v
        e2 = e1
        e1 = pe
        o2 = o1
        o1 = po
        r3 = r1
        r2 = r0
        r1 = rm
        j -= 2
    if j == 0:
        pe = (((r1 + g1 * r2) - g2 * r3) - c4 * e2) + a2 * e1
        g = lamG - _fence(alpha * pe)
        v = abs(g) if s[0] > 0.0 else -g
        if v > v_s:
            v_s = v
    return v_s


# rounding floor of the KKT check (defined with the NumPy solver, which
# imports neither numba nor this module)
from ._numpy_solver import KKT_FLOOR  # noqa: E402


@njit(cache=_CACHE, nogil=True)
def kkt_tolerance(y, kkt_tol, mode):
    """kkt_tol times the trace's range, plus the rounding floor.  Without a
    fitted baseline (mode 0) the fit is measured from 0, so the range
    includes 0 (a constant trace then has a scale: its level)."""
    lo = y[0]
    hi = y[0]
    for t in range(y.shape[0]):
        lo = min(lo, y[t])
        hi = max(hi, y[t])
    return _tolerance_of(lo, hi, kkt_tol, mode)


@njit(cache=_CACHE, nogil=True)
def _tolerance_of(lo, hi, kkt_tol, mode):
    """:func:`kkt_tolerance` of a trace whose range is [lo, hi]."""
    floor = KKT_FLOOR * max(abs(lo), abs(hi))
    if mode == 0:
        lo = min(lo, 0.0)
        hi = max(hi, 0.0)
    return kkt_tol * (hi - lo) + floor


@njit(cache=_CACHE, nogil=True)
def kkt_holds(y, s, bvec, g1, g2, alpha, lamG, G, mode, mu, kkt_tol):
    """Whether (s, b) is optimal to :func:`kkt_tolerance`."""
    T = y.shape[0]
    v_s, v_b = kkt_one(y, s, bvec, g1, g2, alpha, lamG, G, mode, mu, np.empty(T),
                       np.empty(T), np.empty(T), _NO)
    return max(v_s, v_b) <= kkt_tolerance(y, kkt_tol, mode)


@njit(cache=_CACHE, nogil=True)
def kkt_rows(y, s, b, g1, g2, alpha, lamG, G, mode, mu, out):
    """kkt_one per row; b is (n, 1) or (n, T); out (n, 2)."""
    T = y.shape[1]
    work = np.empty(T)
    grad = np.empty(T)
    bvec = np.empty(T)
    bbest = np.empty(T)
    for i in range(y.shape[0]):
        # loops, not bvec[:] = b[i] (see _store_baseline)
        for t in range(T):
            bvec[t] = b[i, 0] if b.shape[1] == 1 else b[i, t]
        v_s, v_b = kkt_one(y[i], s[i], bvec, g1, g2, alpha, lamG, G, mode, mu, work, grad,
                           bbest, _NO)
        out[i, 0] = v_s
        out[i, 1] = v_b


@njit(cache=_CACHE, nogil=True)
def conv_rows(s, g1, g2, alpha, out):
    for i in range(s.shape[0]):
        forward_conv(s[i], g1, g2, alpha, out[i])


@njit(cache=_CACHE, nogil=True)
def fit_stats_rows(y, fit, act, sig, fs, r2, events):
    """The live read-outs of the tuner per row, in one GIL-free call: r2 of
    the fit (NaN for a constant trace) and events per minute, the same
    arithmetic as ``session._r2`` and ``session.event_rate``: runs of
    activity above 1e-12 of its largest value, whose summed size (from the
    running sum) exceeds max(2 sig, 5 % of the largest run)."""
    N, T = y.shape
    for i in range(N):
        acc = 0.0
        for t in range(T):
            acc += y[i, t]
        mean = acc / T
        res = 0.0
        tot = 0.0
        for t in range(T):
            d = y[i, t] - fit[i, t]
            res += d * d
            e = y[i, t] - mean
            tot += e * e
        r2[i] = 1.0 - res / tot if tot > 0.0 else np.nan
        a = act[i]
        amax = 0.0
        for t in range(T):
            amax = max(amax, a[t])
        cut = 1e-12 * max(amax, 1e-300)
        # pass 1: the largest run; pass 2: count the runs above threshold
        biggest = -1.0
        thr = 0.0
        count = 0
        for p in range(2):
            c = 0.0
            start = 0.0
            inside = False
            for t in range(T + 1):
                on = t < T and a[t] > cut
                if on and not inside:
                    start = c
                    inside = True
                elif inside and not on:
                    size = c - start
                    inside = False
                    if p == 0:
                        biggest = max(biggest, size)
                    elif size > thr:
                        count += 1
                if t < T:
                    c += a[t]
            if p == 0:
                if biggest < 0.0:
                    break
                thr = max(2.0 * sig[i], 0.05 * biggest)
        events[i] = count / (T / fs / 60.0)
