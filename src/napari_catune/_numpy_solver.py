"""The CaTune problem solved exactly with NumPy/SciPy (LAPACK) only: the
solver used while the compiled one (``_numba_solvers``) is still compiling
in the background after an install (issue 12: no compile wait a user feels).

The problem, per trace (``_numba_solvers``'s notation; DESIGN.md)::

    F(s, b) = 1/2 ||y - K s - b||^2 + lamG sum(s) [+ (mu/2) sum (b_t - b_{t-1})^2],  s >= 0

with b given by ``mode``: 0 none (b = 0), 1 one scalar, 2 drift (per
sample, with the random-walk penalty).  ``(K s)[0] = 0`` and
``x = (K s)[1:] = D^-1 s[:-1]``, D = M / alpha the banded AR(2) difference
operator (``s_k = (x_k - g1 x_{k-1} - g2 x_{k-2}) / alpha``); s[T-1] never
enters the fit and is 0.

Method: a primal-dual interior point (Mehrotra's predictor-corrector) on the
calcium x with the constraint u = D x >= 0 and its dual z.  Each Newton step
is one banded SPD system: ``I + D' diag(z/u) D`` (pentadiagonal) for no
baseline; bordered by one row (a Schur complement, two right-hand sides) for
a scalar baseline; for drift the calcium and the baseline are interleaved
(b_0, x_0, b_1, x_1, ...) into one system of bandwidth 4, or, for a heavy
drift weight (mu > 1e6: high frame rates), with the drift's multiplier
p = mu (b_t - b_{t-1}) as a third unknown per sample (a quasi-definite
system of bandwidth 6, no entry of size mu: see :class:`_Newton`).
LAPACK's banded Cholesky (``dpbtrf``/``dpbtrs``), or the LDL' loops of
:mod:`._jit_band`, make every step O(T); the rows of a batch
are stacked into one banded system (the blocks do not couple).  Once the
complementarity is small, the iterate is rounded to its active set (s = 0
where the dual exceeds the spike) with the best baseline for those spikes,
and accepted when the KKT test of the compiled solver holds
(:func:`kkt_rows`, the same definition); otherwise it iterates on.  For
the drift baseline on the width-4 band, an iteration's element-wise work
and the polish's refinement steps run as a few compiled passes of
:mod:`._jit_band` (:class:`_IpmDrift`, :func:`_polish_spd_drift`) once
they are made, with NumPy's numbers bit for bit.  A
warm start (a slider move) first runs those active-set corrections from
the previous answer's active set, and the interior point only for the rows
they do not settle.

Nothing here imports numba, Qt or ``scipy.signal`` (whose import alone
costs about a second).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from functools import lru_cache

import numpy as np

from . import _jit_band

# the banded Cholesky by LLVM-compiled loops (:mod:`._jit_band`) when available
_USE_JIT = True

# rounding floor of the KKT test (both solvers'), in units of the largest
# |y|: r = y - K s - b cannot be formed more accurately than a few ulp of |y|
KKT_FLOOR = 1000.0 * 2.220446049250313e-16
_TINY = np.finfo(float).tiny
# interior-point iterations allowed (each one or two banded solves)
IPM_BUDGET = 80
# the rounding to the active set is tried once the complementarity (scaled
# data: range 1) is below this
_TRY_BELOW = 1e-10
# ... and the exact solve on the guessed active set (:func:`_settle`: the
# Newton band's factorisation and 2-3 solves, about one iteration) below
# this, at most every few iterations (tried earlier, 1e-8 .. 1e-6: as many
# factorisations over the grid, the slow 1 kHz kernel more)
_POLISH_BELOW = 1e-10
_POLISH_EVERY = 2
_W_MAX = 1e12
# active-set corrections after the interior point's guess
_SETTLE_STEPS = 6
# ... and from a warm start's (the previous answer's) active set, before the
# interior point (0: none)
_WARM_SETTLE = 6
# samples per group of rows solved together (see solve_rows)
_GROUP_SAMPLES = 1 << 16
# drift rows solved two at a time where the rows allow (a group of at least
# two: the band's factor and solve then run both rows' chains at once)
_PAIR_ROWS = True
# a step below this is a stall; a row ends after this many in a row
# (only near the end: far from it a short step is the path's, not a stall)
_STALL = 1e-4
_STALL_STEPS = 4
_STALL_BELOW = 1e-6
# a warm start's distance into the interior (scaled: range 1)
_WARM_CENTRE = 1e-1
# the corrections go on while the KKT violation is above this share of its
# tolerance (the exact optimum lands at ~1e-6 of it): an answer then agrees
# with the compiled solver's objective to ~1e-12, not only to the tolerance
_TIGHT = 1e-3
# interior-point iterations an answer within the tolerance (not tight) waits
_GRACE = 4


# ------------------------------------------------------------- operators
def _d(x, g1, g2, ia):
    """D x per row (x: (m, n))."""
    jit = _jit_band.load() if _USE_JIT else None
    if jit is not None:
        return jit.fir(np.ascontiguousarray(x, dtype=np.float64), ia, -g1 * ia, -g2 * ia)
    u = x.copy()
    u[:, 1:] -= g1 * x[:, :-1]
    u[:, 2:] -= g2 * x[:, :-2]
    u *= ia
    return u


def _dt(v, g1, g2, ia):
    """D' v per row."""
    jit = _jit_band.load() if _USE_JIT else None
    if jit is not None:
        return jit.fir(np.ascontiguousarray(v, dtype=np.float64), ia, -g1 * ia, -g2 * ia,
                       backward=True)
    w = v.copy()
    w[:, :-1] -= g1 * v[:, 1:]
    w[:, :-2] -= g2 * v[:, 2:]
    w *= ia
    return w


def _d_band(m, n, g1, g2, alpha):
    """D (lower triangular, bandwidth 2) for m stacked rows, LAPACK band storage."""
    ab = np.empty((3, m, n))
    ab[0] = 1.0 / alpha
    ab[1] = -g1 / alpha
    ab[2] = -g2 / alpha
    ab[1, :, n - 1:] = 0.0
    ab[2, :, max(n - 2, 0):] = 0.0
    return np.asfortranarray(ab.reshape(3, m * n))


def _tri(ab, v, trans):
    x = np.array(v, dtype=np.float64, order="C")
    info = _lapack().tbtrs(ab, x.reshape(-1), lower=True, trans=trans == "T")
    if info != 0:
        raise np.linalg.LinAlgError(f"dtbtrs failed ({info})")
    return x


def _lapack():
    """LAPACK (imported when first needed: ``scipy.linalg`` costs ~0.3 s to
    import, and with :mod:`._jit_band` the first answer does not need it)."""
    from . import _lapack_nogil

    return _lapack_nogil


# (both caches hold arrays of T: a solve uses 3 constants and 1 smoother;
# kept for the current and the previous parameters, freed by release_caches
# once the compiled code has taken over)
@lru_cache(maxsize=8)
def _const(n, v):
    a = np.full(n, float(v))
    a.setflags(write=False)
    return a


def _cached(fn, *args):
    """``fn(*args)`` (an lru_cache'd function) from its cache, except on the
    one-off check's thread while it checks (:func:`_fused_checked`): its
    small problems, computed afresh, would evict a running solve's entries."""
    if getattr(_TLS, "private", False):
        return fn.__wrapped__(*args)
    return fn(*args)


class _Bufs(dict):
    """A thread's work arrays (:func:`_scratch`), by key (a dict that a
    weak reference can point to: :data:`_ALL_BUFS`; one by identity, not
    by contents)."""

    __hash__ = object.__hash__

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other


# every thread's _Bufs (weakly: gone with its thread), so release_caches
# can empty them all, not only the calling thread's
_ALL_BUFS: "weakref.WeakSet" = weakref.WeakSet()
_BUFS_LOCK = threading.Lock()


def _fresh_bufs_lock():
    global _BUFS_LOCK
    _BUFS_LOCK = threading.Lock()  # (a fork's copy may be held by a thread it has not got)


def release_caches() -> None:
    """Free the cached arrays (the compiled solver has taken over): the
    caches and every thread's work arrays (a solve under way keeps the
    arrays it holds; its next :func:`_scratch` makes new ones)."""
    _const.cache_clear()
    _smoother_gains.cache_clear()
    _smoother_subs.cache_clear()
    lock = _BUFS_LOCK
    with lock:
        bufs = list(_ALL_BUFS)
    for b in bufs:
        b.clear()


def _scratch(key, shape, fortran=False):
    """A work array of this thread's, kept from one call to the next (a
    fresh one of ~0.4-4 MB per row of 54,000 frames costs the kernel a page
    fault per 4 KB on each use: its share of a first answer's main thread
    went from ~10 % to ~8 % with the settle's arrays kept); its contents are
    not kept."""
    bufs = _bufs()
    a = bufs.get(key)
    if a is None or a.shape != shape:
        a = bufs[key] = np.empty(shape[::-1]).T if fortran else np.empty(shape)
    return a


def _bufs():
    """This thread's store of kept work arrays (:func:`_scratch`)."""
    bufs = getattr(_TLS, "scratch", None)
    if bufs is None:
        bufs = _TLS.scratch = _Bufs()
        lock = _BUFS_LOCK
        with lock:
            _ALL_BUFS.add(bufs)
    return bufs


def _ar_solve(v, g1, g2, alpha, backward=False):
    """D^-1 v (the AR(2) recursion forward) or D^-T v (backward) per row of
    v ((m, n)), each row on its own: by :mod:`._jit_band`'s loop, else LAPACK."""
    jit = _jit_band.load() if _USE_JIT else None
    m, n = v.shape
    if jit is None:
        return _tri(_d_band(m, n, g1, g2, alpha), v, "T" if backward else "N")
    x = np.multiply(v, alpha, dtype=np.float64)  # a new C-ordered array
    jit.rec(x, _cached(_const, n, g1), _cached(_const, n, g2), backward)
    return x


def conv_rows(s, g1, g2, alpha):
    """K s for every row of s ((m, T), float64): ``out[0] = 0``, the rest
    ``D^-1 s[:-1]``, by banded substitution (the AR(2) recursion)."""
    s = np.ascontiguousarray(np.atleast_2d(s), dtype=np.float64)
    m, T = s.shape
    out = np.zeros((m, T))
    if T > 1:
        out[:, 1:] = _ar_solve(s[:, :-1], g1, g2, alpha)
    return out


def _adjoint(r, g1, g2, alpha):
    """K' r for every row: ``D^-T r[1:]`` and 0 for the last sample."""
    m, T = r.shape
    out = np.zeros((m, T))
    if T > 1:
        out[:, :-1] = _ar_solve(r[:, 1:], g1, g2, alpha, backward=True)
    return out


@lru_cache(maxsize=2)
def _smoother_gains(mu: float, T: int):
    """The drift smoother's Riccati coefficients (data-free): the backward
    factors c_t = mu / (P_t + mu), the forward divisors den_t = P_t + mu and
    the last P (``_numba_solvers.smooth_baseline``'s recursion, the same
    arithmetic: every update a harmonic mean, no cancellation)."""
    jit = _jit_band.load() if _USE_JIT else None
    if jit is not None:
        den = jit.riccati(mu, T)  # (a Python loop: ~10 ms for 54,000 frames)
    else:
        den = np.empty(T)
        P = 0.0
        for t in range(T - 1, 0, -1):
            P += 1.0
            d = P + mu
            den[t] = d
            P = mu * P / d
        den[0] = P + 1.0
    c = mu / den
    c.setflags(write=False)
    den.setflags(write=False)
    return c, den


def _bidiag(off, rhs, lower):
    """Unit bidiagonal solve per row: lower, x_{t+1} - off_t x_t = rhs_{t+1};
    upper, x_{t-1} - off_t x_t = rhs_{t-1} (``off``: (T,), the same for every
    row); by :mod:`._jit_band`'s loop, else LAPACK."""
    m, T = rhs.shape
    jit = _jit_band.load() if _USE_JIT else None
    if jit is not None:
        a1 = np.zeros(T)
        if lower:
            a1[1:] = off[:-1]
        else:
            a1[:-1] = off[1:]
        x = np.array(rhs, dtype=np.float64, order="C")
        jit.rec(x, a1, _cached(_const, T, 0.0), backward=not lower)
        return x
    diag_off = np.broadcast_to(off[None, :], (m, T))
    ab = np.empty((2, m, T))
    ab[0 if lower else 1] = 1.0
    if lower:
        ab[1] = -diag_off
        ab[1, :, T - 1] = 0.0
    else:
        ab[0] = -diag_off
        ab[0, :, 0] = 0.0
    x = np.array(rhs, dtype=np.float64, order="C")
    _lapack().tbtrs(np.asfortranarray(ab.reshape(2, m * T)), x.reshape(-1), lower=lower)
    return x


def smooth_rows(r, mu):
    """argmin_b 1/2||r - b||^2 + mu/2 sum (b_t - b_{t-1})^2 per row, by the
    Riccati recursion of ``_numba_solvers.smooth_baseline`` written as two
    unit-bidiagonal triangular solves (LAPACK substitution)."""
    m, T = r.shape
    if T == 1 or mu == 0.0:
        return r.copy()
    c, den = _cached(_smoother_gains, float(mu), T)
    # backward: Q_t = c_{t+1} Q_{t+1} - r_t  (Q the running linear term)
    Q = _bidiag(c, -r, lower=False)  # super-diagonal at column t: c_t
    # forward: b_0 = -Q_0 / P_0, b_t = (mu b_{t-1} - Q_t) / den_t
    rhs = -Q / den
    lowc = np.empty(T)
    lowc[:-1] = mu / den[1:]   # sub-diagonal at column t: b_{t+1}'s factor
    lowc[-1] = 0.0
    return _bidiag(lowc, rhs, lower=True)


def best_baseline(resid, mode, mu):
    """The optimal baseline for residuals y - K s: (m, 1), or (m, T) for drift."""
    if mode == 2:
        return smooth_rows(resid, mu)
    if mode == 1:
        return resid.mean(axis=1, keepdims=True)
    return np.zeros((resid.shape[0], 1))


# ----------------------------------------------------------- read-outs
def kkt_tolerance(y, kkt_tol, mode):
    """As ``_numba_solvers.kkt_tolerance``, per row."""
    lo, hi = y.min(axis=1), y.max(axis=1)
    floor = KKT_FLOOR * np.maximum(np.abs(lo), np.abs(hi))
    if mode == 0:
        lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
    return kkt_tol * (hi - lo) + floor


def kkt_rows(y, s, b, g1, g2, alpha, lamG, G, mode, mu):
    """(m, 2) KKT violations in trace units, as ``_numba_solvers.kkt_rows``:
    column 0 the spikes' (max |g| on s > 0, max -g on s = 0, over G; g =
    lamG - K' r, r = y - K s - b), column 1 max |best baseline - b|."""
    b = np.broadcast_to(np.asarray(b, dtype=np.float64).reshape(len(y), -1), y.shape)
    w = y - conv_rows(s, g1, g2, alpha)
    out = np.zeros((len(y), 2))
    if mode != 0:
        out[:, 1] = np.abs(best_baseline(w, mode, mu) - b).max(axis=1)
    out[:, 0] = _kkt_spikes(w, s, b, g1, g2, alpha, lamG, G)
    return out


def _kkt_spikes(w, s, b, g1, g2, alpha, lamG, G):
    """:func:`kkt_rows`' column 0 from w = y - K s."""
    g = lamG - _adjoint(w - b, g1, g2, alpha)
    return np.where(s > 0.0, np.abs(g), -g).max(axis=1) / G


def objective_rows(y, s, g1, g2, alpha, lamG, mode, mu):
    """F at each row's best baseline for the given activity."""
    w = y - conv_rows(s, g1, g2, alpha)
    b = best_baseline(w, mode, mu)
    val = 0.5 * ((w - b) ** 2).sum(axis=1) + lamG * s.sum(axis=1)
    if mode == 2 and mu > 0:
        val += 0.5 * mu * (np.diff(b, axis=1) ** 2).sum(axis=1)
    return val


# -------------------------------------------------------- interior point
def _band_x(W, g1, g2, ia2, m, n):
    """Bands of I + D' diag(W) D per row: (diag, sub-1, sub-2), (m, n) each
    (sub-k at column j is the entry (j + k, j); zero past the row's end)."""
    dg = 1.0 + ia2 * W
    dg[:, :-1] += (g1 * g1 * ia2) * W[:, 1:]
    dg[:, :-2] += (g2 * g2 * ia2) * W[:, 2:]
    l1 = np.zeros((m, n))
    l1[:, :-1] = (-g1 * ia2) * W[:, 1:]
    l1[:, :-2] += (g1 * g2 * ia2) * W[:, 2:]
    l2 = np.zeros((m, n))
    l2[:, :-2] = (-g2 * ia2) * W[:, 2:]
    return dg, l1, l2


def _drift_band(W, g1, g2, ia2, mu, m, T):
    """The drift Newton band of :class:`_Newton` (unknowns per row b_0, x_0,
    b_1, x_1, ..., x_{n-1}, b_n; x_k <-> b_{k+1}) assembled by NumPy (and
    the FIR loops where they load): (5, m (2 T - 1) + 4), Fortran order."""
    n = T - 1
    N = 2 * T - 1
    flat = _fortran_zeros(5, m * N + 4)
    ab = flat[:, :m * N].reshape(5, m, N)  # a view: filled in place
    if not _put_band_x(flat, 4, W, g1, g2, ia2, N, 1, 2, (0, 2, 4)):
        dg, l1, l2 = _band_x(W, g1, g2, ia2, m, n)
        ab[0, :, 1::2] = dg
        ab[2, :, 1:max(N - 2, 0):2] = l1[:, :-1]      # x_{k+1} - x_k
        ab[4, :, 1:max(N - 4, 0):2] = l2[:, :max(n - 2, 0)]  # x_{k+2} - x_k
    ab[0, :, 0::2] = 1.0 + 2.0 * mu
    ab[0, :, 0] = ab[0, :, N - 1] = 1.0 + mu
    ab[1, :, 1::2] = 1.0                  # b_{k+1} - x_k
    ab[2, :, 0:max(N - 2, 0):2] = -mu             # b_{t+1} - b_t
    return flat


_DRIFT_BAND_OK: list = []


def _drift_band_checked(jit) -> bool:
    """Whether _jit_band's one-pass drift band equals :func:`_drift_band`
    on a small random case (checked once per process, as _jit_band checks
    its other loops when they load; if not, NumPy assembles it)."""
    if not _DRIFT_BAND_OK:
        # (no numpy.random: this runs on the first answer's thread)
        m, T = 2, 9
        W = _jit_band._Pseudo(5).uniform(0.0, 50.0, (m, T - 1))
        g1, g2, ia2, mu = 1.45, -0.48, 2.5, 900.0
        got = jit.drift_band(W, ia2, g1, g2, mu)
        ref = _drift_band(W, g1, g2, ia2, mu, m, T)
        _DRIFT_BAND_OK.append(bool(got.shape == ref.shape
                                   and np.allclose(got, ref, rtol=1e-14, atol=0.0)
                                   and np.array_equal(got == 0.0, ref == 0.0)))
    return _DRIFT_BAND_OK[0]


def _put_band_x(flat, kd, W, g1, g2, ia2, N, first, per, rows):
    """Write the bands of I + D' diag(W) D (:func:`_band_x`) straight into
    the stacked band ``flat`` ((kd + 1, M + kd), Fortran order): x_k of row
    r at column r N + first + per k, its sub-diagonals in band rows
    ``rows`` = (diag, sub-1, sub-2) (the x's neighbours are per columns
    apart).  By :mod:`._jit_band`'s loops; returns False without them."""
    jit = _jit_band.load() if _USE_JIT else None
    if jit is None:
        return False
    m, n = W.shape
    W = np.ascontiguousarray(W, dtype=np.float64)
    if not flat.flags.f_contiguous:  # reshape would copy: the writes would be lost
        raise ValueError("_put_band_x needs a Fortran-ordered band")
    mem = flat.reshape(-1, order="F")  # a view
    ld = kd + 1
    for q, (c0, c1, c2, cst) in zip(rows, ((ia2, g1 * g1 * ia2, g2 * g2 * ia2, 1.0),
                                           (0.0, -g1 * ia2, g1 * g2 * ia2, 0.0),
                                           (0.0, 0.0, -g2 * ia2, 0.0))):
        jit.fir(W, c0, c1, c2, backward=True, cst=cst, out=mem[first * ld + q:],
                orow=N * ld, ostep=per * ld)
    return True


def _fortran_zeros(rows, cols):
    """Zeros in LAPACK's (column-major) order."""
    return np.zeros((cols, rows)).T


def _factor(ab, M, blocks=1):
    """Banded Cholesky of the first M columns of ``ab`` ((kd + 1, M + kd),
    Fortran order, LOWER storage: ``ab[k, j]`` = entry (j + k, j), the last
    kd columns zero padding), in place.  By the LLVM-compiled loop of
    :mod:`._jit_band` when it is there (its diagonal then holds 1 / L[j, j]),
    else LAPACK (OpenBLAS's lower ``dpbtrf``, ~2x its upper one on these
    bands).  Returns the kernels used (None: LAPACK)."""
    jit = _jit_band.load() if _USE_JIT else None
    if jit is not None:
        info = jit.factor(ab, M, blocks)
    else:
        info = _lapack().pbtrf(ab[:, :M], lower=True)
    if info != 0:
        raise _PivotError(f"dpbtrf failed ({info})", (info - 1) // (M // blocks))
    return jit


class _PivotError(np.linalg.LinAlgError):
    """A failing pivot of a stacked Newton band, in the block (row) ``row``."""

    def __init__(self, msg, row):
        super().__init__(msg)
        self.row = row


def _newton_capped(W, cap_row, g1, g2, ia2, mode, mu, T, band=None):
    """:class:`_Newton`, and where a row's pivot fails (past ~1e12 of the
    identity the banded Cholesky of I + D'WD can lose the identity to
    rounding), ``cap_row(r)`` caps that row's W (and what is formed from
    it) and the band is made again: a row is capped by its own band alone,
    whatever rows it is solved with (the row groups, and so the numbers,
    would otherwise depend on the threads).  A capped row that fails again
    raises."""
    capped = set()
    while True:
        try:
            return _Newton(W, g1, g2, ia2, mode, mu, T, band=band)
        except _PivotError as e:
            if e.row in capped:
                raise
            capped.add(e.row)
            cap_row(e.row)


def _augmented(mode, mu):
    """Whether the drift's Newton systems carry its multiplier p = mu B b
    (:class:`_Newton`): for a heavy drift weight, with the compiled loops."""
    return mode == 2 and mu > _AUG_MU and _USE_JIT and _jit_band.load() is not None


# the drift weight above which the Newton systems are augmented: in the
# bordered band the baseline's pivots hold mu + P (P the data's information,
# ~1 .. sqrt(mu)) and every elimination step cancels the mu, losing ~eps mu
# of P; at 1 kHz (mu ~4e9) the interior point then stalls at a gap ~1e-8
_AUG_MU = 1e6


class _Newton:
    """The factored Newton system of one iteration (all rows of a batch).

    Drift (mode 2): the calcium and the baseline interleaved, b_0, x_0, b_1,
    x_1, ... (bandwidth 4, the penalty mu B'B in the band); or, augmented
    (:func:`_augmented`), with the penalty's multiplier p = mu B b (B the
    first difference, p_t for t = 1 .. T-1) as unknowns of their own,

        [I + D'WD, E', 0; E, I, B'; 0, B, -1/mu] [dx; db; dp] = [rx; rb; rq],

    ordered b_0, p_1, x_0, b_1, p_2, x_1, b_2, ... (bandwidth 6): a
    quasi-definite matrix, factored by the signed LDL' of :mod:`._jit_band`.
    Nothing of size mu enters: eliminating p_t after b_{t-1} forms the
    Riccati smoother's harmonic mean 1 / (1/mu + 1/P), no cancellation."""

    def __init__(self, W, g1, g2, ia2, mode, mu, T, band=None):
        # band: (drift, width 4, compiled loops) a band to write this one
        # into, whose factor the caller no longer needs
        m, n = W.shape
        self.mode, self.m, self.n, self.T = mode, m, n, T
        self.aug = _augmented(mode, mu)
        if self.aug:
            # per row: b_0 at 0, then p_{k+1}, x_k, b_{k+1} at 3k+1, 3k+2, 3k+3
            N = 3 * T - 2
            self.M, self.kd = m * N, 6
            flat = _fortran_zeros(7, m * N + 6)
            ab = flat[:, :m * N].reshape(7, m, N)
            ab[0, :, 0::3] = 1.0                  # b_t
            ab[1, :, 0:N - 1:3] = -1.0            # p_{t+1} - b_t
            ab[0, :, 1::3] = -1.0 / mu            # p_t
            ab[2, :, 1::3] = 1.0                  # b_t - p_t
            ab[1, :, 2::3] = 1.0                  # b_{k+1} - x_k
            # x_k: diagonal, x_{k+1} - x_k, x_{k+2} - x_k
            _put_band_x(flat, 6, W, g1, g2, ia2, N, 2, 3, (0, 3, 6))
            self.c = flat
            self.jit = _jit_band.load()
            info = self.jit.factor(flat, self.M)
            if info != 0:
                raise _PivotError(f"signed LDL' failed ({info})", (info - 1) // N)
            return
        if mode == 2:
            # unknowns per row: b_0, x_0, b_1, x_1, ..., x_{n-1}, b_n (x_k <-> b_{k+1})
            N = 2 * T - 1
            self.M, self.kd = m * N, 4
            jit = _jit_band.load() if _USE_JIT else None
            if jit is not None and _drift_band_checked(jit):
                # written whole in one pass (no zeroing, no strided passes)
                self.c = jit.drift_band(np.ascontiguousarray(W, dtype=np.float64), ia2, g1, g2,
                                        mu, out=band)
            else:
                self.c = _drift_band(W, g1, g2, ia2, mu, m, T)
            self.jit = _factor(self.c, self.M, m)
            return
        self.M, self.kd = m * n, 2
        flat = _fortran_zeros(3, m * n + 2)
        if not _put_band_x(flat, 2, W, g1, g2, ia2, n, 0, 1, (0, 1, 2)):
            ab = flat[:, :m * n].reshape(3, m, n)
            ab[0], ab[1], ab[2] = _band_x(W, g1, g2, ia2, m, n)
        self.c = flat
        self.jit = _factor(flat, self.M, m)
        if mode == 1:
            # H w = 1: the scalar baseline's border, by its Schur complement
            w = self._solve(np.ones((m, n)))
            self.w = w
            self.schur = T - w.sum(axis=1)

    def _solve(self, rhs):
        x = np.zeros(self.M + self.kd)
        x[:self.M] = rhs.reshape(-1)
        if self.jit is not None:
            self.jit.solve(self.c, self.M, x, self.m)
        else:
            info = _lapack().pbtrs(self.c[:, :self.M], x[:self.M], lower=True)
            if info != 0:
                raise np.linalg.LinAlgError(f"dpbtrs failed ({info})")
        return x[:self.M].reshape(rhs.shape)

    def solve(self, rx, rb, rq=None):
        """(dx, db) for the right-hand sides rx ((m, n)) and rb (the baseline
        rows: (m,) scalar, (m, T) drift, None); augmented, (dx, db, dp) with
        rq ((m, T - 1), the multiplier's rows)."""
        if self.aug:
            m, T = self.m, self.T
            rhs = np.empty((m, 3 * T - 2))
            rhs[:, 0::3] = rb
            rhs[:, 1::3] = rq
            rhs[:, 2::3] = rx
            sol = self._solve(rhs)
            return sol[:, 2::3], sol[:, 0::3], sol[:, 1::3]
        if self.mode == 2:
            m, n, T = self.m, self.n, self.T
            rhs = np.empty((m, 2 * T - 1))
            rhs[:, 1::2] = rx
            rhs[:, 0::2] = rb
            sol = self._solve(rhs)
            return sol[:, 1::2], sol[:, 0::2]
        v = self._solve(rx)
        if self.mode == 1:
            db = (rb - v.sum(axis=1)) / self.schur
            return v - self.w * db[:, None], db
        return v, None


def _bt(p):
    """B' p per row (B the first difference, p: (m, T - 1)): (m, T)."""
    m, k = p.shape
    out = np.zeros((m, k + 1))
    out[:, 1:] += p
    out[:, :-1] -= p
    return out


def _max_step(v, dv):
    """Largest a <= 1 per row with v + a dv >= 0 (v > 0): 1 / max(1, max -dv / v)."""
    return 1.0 / np.maximum(1.0, -(dv / v).min(axis=1))


def _lap(b, mu):
    """mu L b per row (L = B'B the path Laplacian)."""
    return _bt(mu * np.diff(b, axis=1))


def _check(y, sc, g1, g2, alpha, lamG, G, mode, mu):
    """The best baseline for the spikes ``sc`` and the KKT violation (trace units)."""
    # kkt_rows(y, sc, bc, ...).max(axis=1) without forming w and bc again:
    # its baseline column, |best_baseline(w) - bc|, is 0 (the same arithmetic)
    bc, _g, v = _kkt(y, sc, lamG, g1, g2, alpha, mode, mu)
    return bc, np.maximum(v / G, 0.0)


def _kkt(y, s, lam, g1, g2, alpha, mode, mu, want_v=True):
    """For the spikes s ((m, T); s[:, -1] unused): the best baseline bc for
    w = y - K s, the spikes' gradient g = lam - K'(w - bc) ((m, T); lam a
    scalar or per row; valid until the next call on this thread: a work
    array) and (``want_v``) each row's max of |g| where s > 0, -g elsewhere
    (:func:`_kkt_spikes` times G).  Drift: by the four passes
    of :mod:`._jit_band` once made and checked (:func:`_kkt_drift`), else
    NumPy's (the same numbers)."""
    if mode == 2:
        out = _kkt_drift(y, s, lam, g1, g2, alpha, mu)
        if out is not None:
            return out
    w = y - conv_rows(s, g1, g2, alpha)
    bc = best_baseline(w, mode, mu)
    g = lam - _adjoint(w - bc, g1, g2, alpha)
    return bc, g, (np.where(s > 0.0, np.abs(g), -g).max(axis=1) if want_v else None)


@lru_cache(maxsize=2)
def _smoother_subs(mu: float, T: int):
    """The coefficients of :func:`smooth_rows`' two substitutions as
    :func:`_bidiag` forms them (the backward one's, the forward one's)."""
    c, den = _cached(_smoother_gains, mu, T)
    a1b = np.zeros(T)
    a1b[:-1] = c[1:]
    lowc = np.empty(T)
    lowc[:-1] = mu / den[1:]
    lowc[-1] = 0.0
    a1f = np.zeros(T)
    a1f[1:] = lowc[:-1]
    a1b.setflags(write=False)
    a1f.setflags(write=False)
    return a1b, a1f


def _kkt_drift(y, s, lam, g1, g2, alpha, mu):
    """:func:`_kkt` of the drift problem in four passes of :mod:`._jit_band`
    (``chk_f1``: w = y - K s; ``chk_b1``, ``chk_f2``: the smoother's
    substitutions, bc and w - bc; ``chk_b2``: g and the row's max) instead
    of ~20 NumPy passes, or None where they are not there (not made yet,
    or their one-off check failed: :func:`_fused_ok`) or not needed (T = 1,
    mu = 0: the smoother is the identity)."""
    m, T = y.shape
    if T < 2 or not mu > 0.0 or not _fused_ok(2, False):
        return None
    jit = _jit_band.load()
    y = np.ascontiguousarray(y, dtype=np.float64)
    s = np.ascontiguousarray(s, dtype=np.float64)
    lam = np.ascontiguousarray(np.broadcast_to(np.asarray(lam, dtype=np.float64).reshape(-1),
                                               (m,)))
    den = _cached(_smoother_gains, float(mu), T)[1]
    a1b, a1f = _cached(_smoother_subs, float(mu), T)
    w, q, d, g = (_scratch(k, (m, T)) for k in ("kkt_w", "kkt_q", "kkt_d", "kkt_g"))
    bc, vmax = np.empty((m, T)), np.empty(m)
    c = (float(alpha), float(g1), float(g2))
    jit.ipm("chk_f1", m, T, (y, s, w), c)
    jit.ipm("chk_b1", m, T, (w, a1b, den, q))
    jit.ipm("chk_f2", m, T, (q, a1f, w, bc, d))
    jit.ipm("chk_b2", m, T, (d, s, lam, g, vmax), c)
    return bc, g, vmax


def _settle(y, ys, active, S, tol, g1, g2, alpha, lamG, G, mode, mu, lam,
            steps=_SETTLE_STEPS, refine=True, lu=True):
    """From a guess of the active set (True: s = 0; the interior point's, or
    a warm start's: the previous answer's), the exact optimum: the
    equality-constrained problem on that set solved exactly
    (:func:`_polish_rows`), then primal-dual active-set corrections while
    the KKT violation is above ``_TIGHT`` of its tolerance (at most
    ``steps``).  Where the active set holds (no sign to correct) and the
    test still fails, the spikes are refined on it (:func:`_refine`; not
    with ``refine`` False).  ``lu`` False: a row whose iterative-refinement
    solve does not settle is given up (no banded LU).  Returns the best s,
    b (trace units) and their KKT violation (inf: never judged)."""
    m, T = y.shape
    n = T - 1
    ia = 1.0 / alpha
    s_best = np.zeros((m, T))
    b_best = np.zeros((m, T if mode == 2 else 1))
    v_best = np.full(m, np.inf)
    left = np.arange(m)
    dt1 = _dt(np.ones((1, n)), g1, g2, ia)

    def judge(rows, u):
        sc = np.zeros((rows.size, T))
        sc[:, :-1] = np.maximum(u, 0.0) * S[rows, None]
        bc, v = _check(y[rows], sc, g1, g2, alpha, lamG, G, mode, mu)
        better = v < v_best[rows]
        idx = rows[better]
        s_best[idx], b_best[idx], v_best[idx] = sc[better], bc[better], v[better]
        return v

    # (the loose polish first on the drift band of width 4, the tuner's)
    loose = _LOOSE and mode == 2 and not _augmented(mode, mu)
    done = 0
    while done < steps:
        try:
            x = _polish_rows(ys[left], active, mode, mu, g1, g2, ia, lam[left] * dt1, lu,
                             loose)
        except np.linalg.LinAlgError:
            break
        if not lu:
            ok = np.isfinite(x).all(axis=1)  # (the rows left without the LU: given up)
            if not ok.all():
                left, active, x = left[ok], active[ok], x[ok]
                if not left.size:
                    break
        u = _d(x, g1, g2, ia)
        u[active] = 0.0
        v = judge(left, u)
        keep = ~(v <= _TIGHT * tol[left])
        if not keep.any():
            break
        left, active, u = left[keep], active[keep], u[keep]
        # the spikes' gradient (scaled data): g = lam - K' r
        sk = np.zeros((left.size, T))
        sk[:, :-1] = u
        g = _kkt(ys[left], sk, lam[left], g1, g2, alpha, mode, mu, want_v=False)[1][:, :-1]
        new = (active & (g >= 0.0)) | (~active & (u < 0.0))
        same = (new == active).all(axis=1)
        if loose and same.any():
            # a set that holds after a loose polish: polished again to the
            # rounding floor (with the rows whose sets change), not counted
            active = np.where(same[:, None], active, new)
            loose = False
            continue
        if same.all():
            break
        left, active = left[~same], new[~same]
        loose = _LOOSE and mode == 2 and not _augmented(mode, mu)
        done += 1
    # rows still failing near the optimum: the precision of the free spikes,
    # not the set (slow kernels at high rates): refined on the best one's set
    bad = np.flatnonzero(~(v_best <= _TIGHT * tol) & (v_best <= _REFINE_NEAR * tol))
    if bad.size and refine:
        u0 = s_best[bad, :-1] / S[bad, None]
        _refine(judge, bad, u0, v_best[bad], u0 <= 0.0, y, S, tol, g1, g2, alpha, lamG,
                mode, mu)
    return s_best, b_best, v_best


# Newton refinements of the free spikes on their active set, tried where
# the corrections did not settle, the KKT violation is within this many
# tolerances and the free spikes are few enough for a dense reduced Hessian
_REFINE_SPIKES = 3
_REFINE_NEAR = 1e5
_DENSE_FREE = 200
_DENSE_WORK = 6e6
_DENSE_CHUNK = 1e6


def _refine(judge, rows, u, v, active, y, S, tol, g1, g2, alpha, lamG, mode, mu):
    """Newton steps on the free spikes with the active set fixed, on the
    reduced problem (the baseline minimised out: Hessian K_F' (I - S_b) K_F,
    S_b the baseline's smoother; gradient lamG - K_F' (y - K s - b(s))), all
    by the stable recursions (reconvolution, adjoint, Riccati smoother).
    Spikes formed as D x from the banded solves lose ~eps |x| / alpha to
    cancellation and the drift's weight (mu ~1e9 at 1 kHz) costs the banded
    LU its precision: on slow kernels that is as much as the KKT test allows.
    Rows with more than ``_DENSE_FREE`` free spikes are left as they are.
    Returns the refined u (scaled) and v, the best per row."""
    T = y.shape[1]
    u, v = u.copy(), v.copy()
    for i in range(rows.size):
        F = np.flatnonzero(~active[i] & (u[i] > 0.0))
        if F.size == 0 or F.size > _DENSE_FREE or F.size * T > _DENSE_WORK:
            continue
        r_ = rows[i]
        e = np.zeros((F.size, T))
        e[np.arange(F.size), F] = 1.0
        KF = conv_rows(e, g1, g2, alpha)                 # columns of K, as rows
        del e
        H = np.empty((F.size, F.size))
        step = max(1, int(_DENSE_CHUNK // T))
        for a0 in range(0, F.size, step):                # (I - S_b) K_F in chunks
            part = KF[a0:a0 + step]
            H[:, a0:a0 + step] = KF @ (part - best_baseline(part, mode, mu)).T
        si = np.zeros((1, T))
        si[0, :-1] = u[i] * S[r_]
        for _ in range(_REFINE_SPIKES):
            w = y[r_:r_ + 1] - conv_rows(si, g1, g2, alpha)
            w = w - best_baseline(w, mode, mu)
            g = lamG - (KF @ w[0])
            try:
                d = np.linalg.solve(H, g)
            except np.linalg.LinAlgError:
                break
            sn = si.copy()
            sn[0, F] = np.maximum(si[0, F] - d, 0.0)
            un = sn[0, :-1] / S[r_]
            vn = judge(rows[i:i + 1], un[None, :])[0]
            if not vn < v[i]:
                break
            si, u[i], v[i] = sn, un, vn
            if v[i] <= _TIGHT * tol[r_]:
                break
    return u, v


# the exact solve on an active set by the Newton system's banded Cholesky: a
# penalty on the active spikes (scaled: this over the data's 1) preconditions
# iterative refinement of the saddle-point system, one banded solve a step.
# Rows where it does not settle in a few steps (slow kernels' long active
# runs: the penalty's contraction is weak there) go to the banded LU of the
# saddle system (:func:`_polish`, ~10x the cost of a step)
_PEN = 1e8
_REFINE_STEPS = 6
_REFINE_TOL = 1e-13
# ... or once the steps contract by at least _REFINE_RATIO and the next one,
# at _REFINE_SLACK times that rate, would be within the tolerance: the steps
# go ~0.5, 1e-7, 5e-13, 1e-15 of |x| (the rate falls ~10x from one to the
# next), and the fourth, at the rounding floor, is not taken
_REFINE_RATIO = 1e-3
_REFINE_SLACK = 1e2
# ... and, first, a looser tolerance (``loose``: the drift band's polish in
# the active-set corrections): the refinement then stops a step earlier
# (after the step of ~1e-7 of |x|, the next one predicted at ~1e-12), which
# the KKT test most often passes as tight; where it does not and the active
# set holds, that set is polished again to _REFINE_TOL (:func:`_settle`)
_LOOSE_TOL = 1e-9
_LOOSE = True


def _refined(md, prev, lim):
    """Which rows' refinement has settled: the last step ``md`` (max |dx|)
    within ``lim``, or (``prev``: the step before's) the next step, at
    ``_REFINE_SLACK`` times the last rate (itself ``_REFINE_RATIO`` or
    less), within it."""
    ok = md <= lim
    if prev is not None:
        ok |= (md <= _REFINE_RATIO * prev) & (md * md * _REFINE_SLACK <= lim * prev)
    return ok


def _h0(x, b, mode, mu, T):
    """The quadratic terms (data fit, drift penalty) applied to (x, b)."""
    if mode == 2:
        hx = x + b[:, 1:]
        hb = b + _lap(b, mu)
        hb[:, 1:] += x
        return hx, hb
    if mode == 1:
        return x + b[:, None], T * b + x.sum(axis=1)
    return x.copy(), None


def _polish_spd(ys, active, mode, mu, g1, g2, ia, cvec, loose=False):
    """:func:`_polish`'s system, [H0, D_A'; D_A, 0] [x, b; lambda] = [rhs; 0],
    by iterative refinement preconditioned with its regularisation
    [H0, D_A'; D_A, -1/P] (one factorisation of H0 + P D_A' D_A, the
    Newton system's band; augmented drift: H0 with the multiplier p = mu B b
    and its rows B b - p / mu = 0).  Returns x, b and whether each row
    settled."""
    m, T = ys.shape
    A = active.astype(np.float64)
    ia2 = ia * ia
    P = _PEN / ia2
    aug = _augmented(mode, mu)
    # (before the band is taken: the one-off check, if it runs here, solves
    # on this thread too)
    fused = _fused_ok(mode, aug)
    # (drift on the width-4 band: written into this thread's band, used
    # only here; the augmented system has its own)
    band = _scratch("band", (5, m * (2 * T - 1) + 4), fortran=True) if mode == 2 and not aug \
        else None
    nt = _Newton(P * A, g1, g2, ia2, mode, mu, T, band=band)
    if fused:
        return _polish_spd_drift(nt, ys, A, P, mu, g1, g2, ia, cvec, loose)
    rx = ys[:, 1:] - cvec
    rb = ys if mode == 2 else (ys.sum(axis=1) if mode == 1 else None)
    x = np.zeros_like(rx)
    b = np.zeros_like(ys) if mode == 2 else (np.zeros(m) if mode == 1 else None)
    q = np.zeros((m, T - 1)) if nt.aug else None
    lam = np.zeros_like(rx)
    ok = np.zeros(m, dtype=bool)
    r2 = np.zeros_like(rx)  # -D x on the active set, the constraints' residual
    prev = None
    for _ in range(_REFINE_STEPS):
        # the saddle system's residual, its constraint rows folded in by the
        # regularisation: rx - H0 x - D' lam + D' P r2 (one D' pass)
        w = _dt(lam - P * r2, g1, g2, ia)
        if nt.aug:
            hx = x + b[:, 1:]
            hb = b + _bt(q)
            hb[:, 1:] += x
            dx, db, dq = nt.solve(rx - hx - w, rb - hb, q / mu - np.diff(b, axis=1))
            q += dq
        else:
            hx, hb = _h0(x, b, mode, mu, T)
            dx, db = nt.solve(rx - hx - w, None if mode == 0 else rb - hb)
        if ok.any():
            # rows settled at an earlier step stay as they settled: a row's
            # numbers are those it gets alone, whatever its group (threads)
            dx[ok] = 0.0
            if mode:
                db[ok] = 0.0
        x += dx
        # lam += P (D dx - r2) A = P D x_new A = -P r2_new (one D pass)
        r2 = -_d(x, g1, g2, ia) * A
        lam -= P * r2
        if mode:
            b += db
        md = np.abs(dx).max(axis=1)
        ok |= _refined(md, prev, (_LOOSE_TOL if loose else _REFINE_TOL)
                       * (1.0 + np.abs(x).max(axis=1)))
        if ok.all():
            break
        prev = md
    return x, b, ok


def _polish_spd_drift(nt, ys, A, P, mu, g1, g2, ia, cvec, loose=False):
    """:func:`_polish_spd`'s refinement for the drift problem on the width-4
    band, each step two passes of :mod:`._jit_band` (``pol_res``: the
    residual straight into the solve's vector; ``pol_upd``: the step, the
    constraints' residual, the multipliers and the test's maxima) and the
    banded solve: the same arithmetic as the NumPy steps."""
    jit = _jit_band.load()
    m, T = ys.shape
    n = T - 1
    c = (ia, -g1 * ia, -g2 * ia)
    rx = np.ascontiguousarray(ys[:, 1:] - cvec)
    rb = np.ascontiguousarray(ys, dtype=np.float64)
    A = np.ascontiguousarray(A)
    x = np.zeros((m, n))
    lam, r2, b = _scratch("pol_lam", (m, n)), _scratch("pol_r2", (m, n)), np.zeros((m, T))
    lam.fill(0.0)
    r2.fill(0.0)
    rhs = _scratch("pol_rhs", (nt.M + nt.kd,))
    rhs[nt.M:] = 0.0  # (the solve's padding; the passes write the rest)
    mdx, mx = np.empty(m), np.empty(m)
    ok = np.zeros(m, dtype=bool)
    prev = None
    for _ in range(_REFINE_STEPS):
        jit.ipm("pol_res", m, n, (x, b, lam, r2, rx, rb, rhs), c + (P, mu))
        jit.solve(nt.c, nt.M, rhs, m)
        jit.ipm("pol_upd", m, n, (x, b, rhs, A, lam, r2, mdx, mx), c + (P,))
        if ok.any():  # (settled rows stay as they settled: see _polish_spd)
            x[ok], b[ok] = xk, bk
        now = ok | _refined(mdx, prev, (_LOOSE_TOL if loose else _REFINE_TOL) * (1.0 + mx))
        if now.all():
            ok = now
            break
        if (now != ok).any():
            xk, bk = x[now], b[now]
        ok = now
        prev = mdx.copy()
    return x, b, ok


def _polish_rows(ys, active, mode, mu, g1, g2, ia, cvec, lu=True, loose=False):
    """x of the exact solve on the active set: :func:`_polish_spd`, and
    :func:`_polish` for the rows it did not settle (``lu`` False: those
    rows' x is NaN instead)."""
    x, _b, ok = _polish_spd(ys, active, mode, mu, g1, g2, ia, cvec, loose)
    if not lu:
        x[~ok] = np.nan
    elif not ok.all():
        bad = ~ok
        x[bad] = _polish(ys[bad], active[bad], mode, mu, g1, g2, ia, cvec[bad])[0]
    return x


def _band_put(ab, kl, ku, i, j, val):
    """A[i, j] = val in LAPACK general band storage (dgbsv's, with kl extra rows)."""
    ab[kl + ku + i - j, j] = val


def _polish(ys, active, mode, mu, g1, g2, ia, cvec):
    """Exact minimiser (scaled data) with s = D x fixed at 0 on ``active``
    and free elsewhere: the saddle-point system [I, D_A'; D_A, 0] with the
    multipliers interleaved with the calcium (banded LU, partial pivoting).
    Returns x (m, n) and b (m,) / (m, T) / None."""
    m, T = ys.shape
    n = T - 1
    y0, y1 = ys[:, 0], ys[:, 1:]
    k = np.arange(n)
    # (LAPACK's banded LU: augmented with or without the compiled loops)
    aug = mode == 2 and mu > _AUG_MU
    if aug:
        # b_t at 4t; p_{k+1}, x_k, lambda_k at 4k + 1, 4k + 2, 4k + 3 (the
        # drift's multiplier p = mu B b an unknown: no entry of size mu)
        per, kl = 4, 9
        N = 4 * n + 1
        xi, li = 4 * k + 2, 4 * k + 3
    elif mode == 2:
        per, kl = 3, 7
        N = 3 * n + 1
        xi, li = 3 * k + 1, 3 * k + 2
    else:
        per, kl = 2, 5
        N = 2 * n
        xi, li = 2 * k, 2 * k + 1
    ab = _fortran_zeros(3 * kl + 1, m * N)
    off = (np.arange(m) * N)[:, None]
    X, L = (xi + off).ravel(), (li + off).ravel()
    act = active.ravel()
    kk = np.tile(k, m)
    _band_put(ab, kl, kl, X, X, 1.0)
    # x_j's row: + D_{k,j} lambda_k for k = j, j + 1, j + 2 (k < n)
    for d, coef in ((0, ia), (1, -g1 * ia), (2, -g2 * ia)):
        sel = kk + d < n
        _band_put(ab, kl, kl, X[sel], (L + per * d)[sel], coef)
        # lambda_k's row (k active): D_{k,k-d} x_{k-d}
        sel2 = act & (kk - d >= 0)
        _band_put(ab, kl, kl, L[sel2], (X - per * d)[sel2], coef)
    _band_put(ab, kl, kl, L[~act], L[~act], 1.0)
    rhs = np.zeros((m, N))
    rhs[:, xi] = y1 - cvec
    if aug:
        t = np.arange(T)
        B = (4 * t + off).ravel()
        tt = np.tile(t, m)
        Pp = (4 * k + 1 + off).ravel()  # p_{k+1}
        _band_put(ab, kl, kl, B, B, 1.0)
        _band_put(ab, kl, kl, B[tt >= 1], B[tt >= 1] - 2, 1.0)  # b_t's row: x_{t-1}
        _band_put(ab, kl, kl, X, X + 2, 1.0)                    # x_k's row: b_{k+1}
        # b_t's row: + p_t - p_{t+1}; p_t's row: b_t - b_{t-1} - p_t / mu
        _band_put(ab, kl, kl, Pp + 3, Pp, 1.0)
        _band_put(ab, kl, kl, Pp - 1, Pp, -1.0)
        _band_put(ab, kl, kl, Pp, Pp + 3, 1.0)
        _band_put(ab, kl, kl, Pp, Pp - 1, -1.0)
        _band_put(ab, kl, kl, Pp, Pp, -1.0 / mu)
        rhs[:, 4 * t] = ys
        info = _lapack().gbsv(kl, kl, ab, rhs.reshape(-1))
        if info != 0:
            raise np.linalg.LinAlgError(f"dgbsv failed ({info})")
        return rhs[:, xi], rhs[:, 4 * t]
    if mode == 2:
        t = np.arange(T)
        B = (3 * t + off).ravel()
        tt = np.tile(t, m)
        deg = np.where((tt == 0) | (tt == T - 1), 1.0, 2.0)
        _band_put(ab, kl, kl, B, B, 1.0 + mu * deg)
        sel = tt >= 1
        _band_put(ab, kl, kl, B[sel], B[sel] - 3, -mu)
        _band_put(ab, kl, kl, B[sel] - 3, B[sel], -mu)
        _band_put(ab, kl, kl, B[sel], B[sel] - 2, 1.0)  # b_t's row: x_{t-1}
        _band_put(ab, kl, kl, X, X + 2, 1.0)            # x_k's row: b_{k+1}
        rhs[:, 3 * t] = ys
        info = _lapack().gbsv(kl, kl, ab, rhs.reshape(-1))
        if info != 0:
            raise np.linalg.LinAlgError(f"dgbsv failed ({info})")
        return rhs[:, xi], rhs[:, 3 * t]
    if mode == 0:
        info = _lapack().gbsv(kl, kl, ab, rhs.reshape(-1))
        if info != 0:
            raise np.linalg.LinAlgError(f"dgbsv failed ({info})")
        return rhs[:, xi], None
    # scalar: b by the Schur complement of its border (ones on the x rows)
    e = np.zeros((m, N))
    e[:, xi] = 1.0
    sol = np.asfortranarray(np.stack((rhs.ravel(), e.ravel()), axis=1))
    info = _lapack().gbsv(kl, kl, ab, sol)
    if info != 0:
        raise np.linalg.LinAlgError(f"dgbsv failed ({info})")
    p_, q_ = sol[:, 0].reshape(m, N)[:, xi], sol[:, 1].reshape(m, N)[:, xi]
    b = (y0 + y1.sum(axis=1) - p_.sum(axis=1)) / (T - q_.sum(axis=1))
    return p_ - q_ * b[:, None], b


# the drift interior point's element-wise work by _jit_band's passes once
# they are made (False: always NumPy's; the same numbers either way)
_FUSED = True


def _fused_ok(mode, aug):
    """Whether an iteration's element-wise work runs as :class:`_IpmDrift`'s
    compiled passes: the drift problem on the bordered band of width 4, once
    the passes are made (on a thread: :func:`solve_rows`; until then NumPy's
    passes, the same numbers) and checked (:func:`_fused_checked`)."""
    if mode != 2 or aug or not (_FUSED and _USE_JIT) or getattr(_TLS, "off", False):
        return False
    jit = _jit_band.load()
    if jit is None or not jit.ipm_ready() or not _drift_band_checked(jit):
        return False
    if getattr(_TLS, "checking", False):
        return True
    if not _FUSED_OK and not jit._ipm_done.is_set():
        # (made, and their check under way or about to start on the thread
        # that made them: NumPy's passes meanwhile, not the check here)
        return False
    return _fused_checked(wait=False)


_TLS = threading.local()
_FUSED_OK: list = []
# held while the one-off check runs (on the thread that made the passes,
# :func:`solve_rows`, or on the first that uses them)
_FUSED_LOCK = threading.Lock()


def _fresh_fused_lock():
    global _FUSED_LOCK
    _FUSED_LOCK = threading.Lock()  # (a fork's copy may be held by a thread it has not got)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_fused_lock)
    os.register_at_fork(after_in_child=_fresh_bufs_lock)


def _fused_checked(wait=True) -> bool:
    """Whether the compiled passes give NumPy's numbers bit for bit on a
    small drift problem, cold and warm, over single iterations
    (:func:`_iterations_equal`) and single KKT tests (:func:`_kkt_equal`)
    (checked once per process, as :func:`_drift_band_checked`; if not,
    NumPy's passes run).  ``wait`` False: False while another thread
    checks (NumPy's passes meanwhile, the same numbers)."""
    if not _FUSED_OK:
        lock = _FUSED_LOCK  # (the one released: a fork's child replaces the global)
        if not lock.acquire(blocking=wait):
            return False
        try:
            if not _FUSED_OK:
                # (on work arrays and caches of its own: it may run on a
                # thread in the middle of a solve, whose arrays it would
                # overwrite, and evict another thread's cached entries)
                saved = getattr(_TLS, "scratch", None)
                _TLS.scratch, _TLS.private = None, True
                try:
                    ok = _fused_compare()
                    why = None if ok else "their numbers differ from NumPy's"
                except Exception as e:  # noqa: BLE001 - no compiled passes, not an error each time
                    ok, why = False, repr(e)
                finally:
                    _TLS.scratch, _TLS.private = saved, False
                if why is not None:
                    _FUSED_WHY.append(why)
                    logging.getLogger(__name__).warning(
                        "the drift interior point's compiled passes are off (NumPy's run): %s",
                        why)
                _FUSED_OK.append(ok)
        finally:
            lock.release()
    return _FUSED_OK[0]


def _check_fused_passes():
    """Run on the thread that made the passes (:meth:`._jit_band.Kernels.start_ipm`):
    their one-off check there, not on the thread that waits for an answer
    (the band's check first: the passes need it too)."""
    jit = _jit_band.load()
    if jit is not None and _drift_band_checked(jit):
        _fused_checked()


_FUSED_WHY: list = []  # why the check failed, if it did


def _fused_compare() -> bool:
    """:func:`_fused_checked`'s comparison (may raise)."""
    # (no numpy.random: this runs on a thread a fork does not wait for, and
    # an import under way there would leave the child's import lock held)
    rng = _jit_band._Pseudo(8)
    m, T = 2, 80
    g1, g2, alpha, lamG, G, mu = 1.45, -0.48, 0.9, 0.08, 2.0, 30.0
    s = (rng.random((m, T)) < 0.1) * rng.exponential(1.0, (m, T))
    y = conv_rows(s, g1, g2, alpha) + 0.1 * rng.standard_normal((m, T)) + 1.0
    got = []
    for off in (True, False):
        _TLS.off, _TLS.checking = off, not off
        try:
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                r = _solve_group(y, g1, g2, alpha, lamG, G, 2, mu, 1e-6, IPM_BUDGET, None)
                r2 = _solve_group(y, g1 * 0.99, g2, alpha, lamG, G, 2, mu, 1e-6, IPM_BUDGET,
                                  r[0])
            got.append(r + r2)
        finally:
            _TLS.off = _TLS.checking = False
    # (and single iterations: the answers come from the exact polish
    # and the KKT test, which an error in the passes need not change)
    return (all(np.array_equal(a, b) for a, b in zip(*got))
            and all(_iterations_equal(_ipm_states())) and all(_kkt_equal(_kkt_states())))


def _kkt_states(seed=9):
    """Small drift KKT tests for :func:`_kkt_equal`: T = 2, 3 and 40, one
    with NaN, inf and -0.0 among the data and spikes."""
    rng = _jit_band._Pseudo(seed)  # (no numpy.random: :func:`_fused_compare`)
    out = []
    for m, T, odd in ((1, 2, False), (2, 3, False), (3, 40, False), (2, 40, True)):
        y = rng.standard_normal((m, T))
        s = np.maximum(rng.standard_normal((m, T)), 0.0)
        if odd:
            y[0, 3], y[1, 7], s[0, 5], s[1, 2], s[1, 9] = np.nan, np.inf, -0.0, np.inf, np.nan
        lam = rng.uniform(0.0, 0.2, (m, 1))
        g1, g2, alpha, mu = 1.45, -0.48, rng.uniform(0.5, 3.0), float(10 ** rng.uniform(-1, 4))
        out.append((y, s, lam, g1, g2, alpha, mu))
    return out


def _kkt_equal(states):
    """For each state, whether :func:`_kkt` by the compiled passes gives
    NumPy's baseline, gradient and row maxima, bit for bit (NaN where NaN)
    (the verdicts come from these: the answers' equality alone would not
    show an error in a pass the exact polish does not depend on)."""
    res = []
    for y, s, lam, g1, g2, alpha, mu in states:
        got = []
        for off in (True, False):
            _TLS.off, _TLS.checking = off, not off
            try:
                with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                    got.append(_kkt(y, s, lam, g1, g2, alpha, 2, mu))
            finally:
                _TLS.off = _TLS.checking = False
        # (the sign of a zero too; a NaN's sign is the compiler's choice of operand)
        res.append(all(np.array_equal(a, b, equal_nan=True)
                       and np.array_equal(np.signbit(a) & ~np.isnan(a),
                                          np.signbit(b) & ~np.isnan(b)) for a, b in zip(*got)))
    return res


def _ipm_states(seed=8):
    """Small drift interior-point states for :func:`_iterations_equal`:
    T = 2, 3 and 40, one with a constraint near its floor under a large dual
    (W past what the band's Cholesky takes: the capped branch)."""
    rng = _jit_band._Pseudo(seed)  # (no numpy.random: :func:`_fused_compare`)
    out = []
    for m, T, cap in ((1, 2, False), (2, 2, False), (2, 3, False), (3, 40, False), (2, 40, True)):
        n = T - 1
        g1, g2, ia, mu = 1.45, -0.48, rng.uniform(0.5, 3.0), float(10 ** rng.uniform(-1, 4))
        x = rng.uniform(0.0, 1.0, (m, n))
        u, z = rng.uniform(1e-3, 1.0, (m, n)), rng.uniform(1e-3, 1.0, (m, n))
        if cap:
            u[:, 2], z[:, 2] = 1e-14, 1e5
        b = rng.standard_normal((m, T))
        ys = rng.standard_normal((m, T))
        cvec = rng.uniform(0.0, 0.1, (m, 1)) * np.ones((m, n))
        out.append((x, u, z, b, ys[:, 0].copy(), ys[:, 1:].copy(), cvec, g1, g2, ia, mu, T))
    return out


def _iterations_equal(states, iters=3):
    """For each state, whether ``iters`` drift iterations of :func:`_numpy_step`
    and of :meth:`_IpmDrift.step` (each from NumPy's previous iterate) give
    the same x, u, z, b, step lengths and mean complementarity, bit for bit
    (the answers alone would not show it: they come from the exact polish)."""
    res = []
    for x, u, z, b, y0, y1, cvec, g1, g2, ia, mu, T in states:
        m, n = x.shape
        ws = _IpmDrift(m, n)
        same = True
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            for _ in range(iters):
                ref = _numpy_step(x.copy(), u.copy(), z.copy(), b.copy(), None, y0, y1, cvec,
                                  g1, g2, ia, ia * ia, 2, mu, T, False)
                got = [v.copy() for v in (x, u, z, b)]
                got += ws.step(*got, y0, y1, cvec, g1, g2, ia, ia * ia, mu, T)
                ref = ref[:4] + ref[5:]
                same = same and all(np.array_equal(p_, q_, equal_nan=True)
                                    for p_, q_ in zip(got, ref))
                x, u, z, b = ref[:4]
        res.append(same)
    return res


# samples (rows x frames) up to which a thread keeps its interior-point
# workspace between row groups and solves (~200 bytes a sample, its band
# included; freed by release_caches)
_IPM_KEEP = 1 << 18
# ... and at most this many of them per thread (the last used)
_IPM_KEPT = 2


class _IpmDrift:
    """One interior-point iteration of the drift problem (the loop body of
    :func:`_solve_group` for mode 2 on the width-4 band), its element-wise
    work in six passes of :mod:`._jit_band` (``ipm_pre``, ``ipm_dir``,
    ``ipm_aff``, ``ipm_corr``, ``ipm_dir`` again, ``ipm_upd``) instead of
    ~60 NumPy passes and their temporaries, the same arithmetic (the means
    by NumPy over the products the passes store: the same rounding); the
    right-hand sides written straight into the stacked solve's vector and
    the steps read from it.
    x, u, z and b are updated in place.  Buffers are kept while the number
    of rows stays (a group's iterations)."""

    def __init__(self, m, n):
        self.m, self.n = m, n
        T = n + 1
        self.M = m * (2 * T - 1)
        # the work arrays as views of one block: from 4 MB on (a row of
        # ~45,000 frames) NumPy asks the kernel for huge pages there, and a
        # first answer's fresh memory costs ~500x fewer page faults
        sizes = (m * n,) * 7 + (m * T, self.M + 4)
        block = np.empty(sum(sizes))
        views, at = [], 0
        for size in sizes:
            views.append(block[at:at + size])
            at += size
        self.W, self.rp, self.rx, self.du, self.dz, self.tu, self.uz = (
            v.reshape(m, n) for v in views[:7])
        # (uz: u z, then (u + a du)(z + a dz): their means by NumPy)
        self.rb = views[7].reshape(m, T)
        self.rhs = views[8]
        self.rhs[:] = 0.0
        self.r2, self.r3 = np.empty(m), np.empty(m)
        # the Newton band, written and factored in place each iteration
        # (fresh, its 4 MB per 54,000 frames cost page faults each time)
        self.band = np.empty((self.M + 4, 5)).T
        self._src = self._data = None

    @classmethod
    def for_rows(cls, ws, m, n):
        """A workspace for m rows of n: ``ws`` if it is one, else this
        thread's kept one (:func:`_scratch`'s store: the next row group of
        a solve, or the next solve, reuses its memory; every array is
        written before it is read, the right-hand side's padding stays 0)."""
        if ws is not None and ws.m == m and ws.n == n:
            return ws
        if m * (n + 1) > _IPM_KEEP:
            return cls(m, n)
        bufs = _bufs()
        key = ("ipm", m, n)
        ws = bufs.pop(key, None)
        if ws is None:
            ws = cls(m, n)
            # (a group sheds rows as they settle: each row count would keep
            # its own workspace, up to ~50 MB each, until release_caches;
            # only the _IPM_KEPT used last stay)
            kept = [k for k in bufs if isinstance(k, tuple) and k and k[0] == "ipm"]
            for k in kept[:max(0, len(kept) - _IPM_KEPT + 1)]:
                del bufs[k]
        bufs[key] = ws  # (last in the dict's order: used last)
        return ws

    def step(self, x, u, z, b, y0, y1, cvec, g1, g2, ia, ia2, mu, T):
        """One predictor-corrector iteration; returns the primal step
        lengths a and the new mean complementarity."""
        jit = _jit_band.load()
        m, n = self.m, self.n
        c = (ia, -g1 * ia, -g2 * ia)
        if self._src is not y1:  # (the data rows: copied once, not every iteration)
            self._src = y1
            self._data = tuple(np.ascontiguousarray(v, dtype=np.float64) for v in (y0, y1, cvec))
        y0, y1, cvec = self._data
        pre = (x, u, z, b, y1, y0, cvec, self.W, self.rp, self.rx, self.rb, self.rhs, self.uz)
        jit.ipm("ipm_pre", m, n, pre, c + (1e250, mu))
        mu_c = self.uz.mean(axis=1)

        def cap_row(r):
            # (as the NumPy loop: the row's W capped, its right-hand side
            # with it; the pass on that row's part of each array)
            per = {"n": n, "T": n + 1, "N": 2 * n + 1, "1": 1}
            row = tuple(a.reshape(-1)[r * per[q]:(r + 1) * per[q]]
                        for a, q in zip(pre, _jit_band._IPM_SIZES["ipm_pre"]))
            jit.ipm("ipm_pre", 1, n, row, c + (min(1e250, _W_MAX / ia2), mu))

        nt = _newton_capped(self.W, cap_row, g1, g2, ia2, 2, mu, T, band=self.band)
        rhs = self.rhs
        dirs = (rhs, self.rp, z, u, self.W, self.tu, self.du, self.dz, self.r2, self.r3)
        # predictor (affine scaling)
        jit.solve(nt.c, self.M, rhs, m)
        jit.ipm("ipm_dir", m, n, dirs, c + (0.0,))
        a_aff = np.minimum(1.0 / np.maximum(1.0, -self.r2), 1.0 / np.maximum(1.0, -self.r3))
        jit.ipm("ipm_aff", m, n, (u, self.du, z, self.dz, a_aff, self.uz))
        sigma = (self.uz.mean(axis=1) / mu_c) ** 3
        # corrector: centring and the second-order term
        jit.ipm("ipm_corr", m, n, (self.du, self.dz, u, self.rx, self.rb, self.tu, rhs,
                                   sigma * mu_c), c)
        jit.solve(nt.c, self.M, rhs, m)
        jit.ipm("ipm_dir", m, n, dirs, c + (1.0,))
        a = np.minimum(1.0, 0.995 * (1.0 / np.maximum(1.0, -self.r2)))
        ad = np.minimum(1.0, 0.995 * (1.0 / np.maximum(1.0, -self.r3)))
        jit.ipm("ipm_upd", m, n, (x, u, z, b, rhs, self.du, self.dz, a, ad, self.uz), (_TINY,))
        return a, self.uz.mean(axis=1)


# samples of a drift solve from which the interior point's compiled passes
# are made at its start (on a thread: ~0.13 s of one core), for its later row
# groups; a smaller solve has them made after its answer
_FUSE_NOW = 1 << 17
# ... and from which, solved on more than one thread, only its first group
# starts at once (NumPy's passes until they are there) and the others wait
# for them (made and checked: ~0.1-0.15 s of one core), up to _FUSE_WAIT_S
# seconds: an iteration by NumPy's passes takes ~2.5x the compiled ones'
# time, and groups all started on them share the cores with the compile
# (8 x 54,000 on two threads, load ~3: the first half of the rows 0.85 s by
# NumPy's passes beside the compile, the second half 0.36 s by the compiled
# ones).  All of them waiting left the cores to other programs on a busy
# machine.  On one thread the compile has a core of its own
_FUSE_WAIT = 1 << 17
_FUSE_WAIT_S = 5.0


def solve_rows(y, g1, g2, alpha, lamG, G, mode, mu, kkt_tol, max_iters=IPM_BUDGET,
               init=None, threads=1):
    """Solve every row of y ((m, T) float64, finite, T >= 2) exactly.

    Returns s (m, T), b ((m, 1), or (m, T) for drift), fit K s + b, the
    iteration counts and converged (the KKT test, :func:`kkt_rows`, to
    ``kkt_tol`` times each row's range plus the rounding floor).
    ``init``: a previous activity ((m, T)), a warm start.

    Rows are solved in groups of about ``_GROUP_SAMPLES`` samples: LAPACK's
    banded factorisation of a stacked system slows down ~1.5x per sample once
    its bands leave the cache.  Drift rows (the width-4 band) go at least
    two to a group: the band's factor and solve then run two rows' chains at
    once (:meth:`._jit_band.Kernels.factor`, the same numbers).  ``threads`` > 1: the groups (at least that
    many when there are as many rows) are solved on that many threads
    (the compiled loops and LAPACK run without the GIL: :mod:`._jit_band`,
    :mod:`._lapack_nogil`); the numbers do not depend on it."""
    y = np.ascontiguousarray(np.atleast_2d(y), dtype=np.float64)
    m, T = y.shape
    step = max(1, _GROUP_SAMPLES // T)
    if (_PAIR_ROWS and mode == 2 and _USE_JIT and not _augmented(mode, mu)
            and _jit_band.load() is not None):
        # at least two rows a group: the drift band's factor and solve then
        # run two rows' chains at once (:meth:`._jit_band.Kernels.factor`)
        step = max(step, 2)
    threads = max(1, min(int(threads), m)) if _nogil() else 1
    if threads > 1:
        step = min(step, -(-m // threads))
    def part(i):
        # (a dual over a spike at its floor may overflow to inf: capped, no warning)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            return _solve_group(y[i:i + step], g1, g2, alpha, lamG, G, mode, mu, kkt_tol,
                                max_iters, None if init is None else init[i:i + step])

    jit = _jit_band.load() if mode == 2 and _USE_JIT and not _augmented(mode, mu) else None
    if jit is not None and m * T >= _FUSE_NOW:
        # (ready within this solve: its later groups use them; checked on
        # the thread that makes them)
        jit.start_ipm(then=_check_fused_passes)
    starts = range(0, m, step)
    run = part
    if (jit is not None and m * T >= _FUSE_WAIT and threads > 1 and m > step and _FUSED
            and not jit._ipm_done.is_set()):  # (made, and their check done)
        def run(i):
            # the first group at once (NumPy's passes until the compiled
            # ones are there), every other one after them (made and checked,
            # or failed: then NumPy's)
            if i != starts[0]:
                jit.ipm_ready(_FUSE_WAIT_S)
            return part(i)

    if threads > 1 and m > step:
        from .solver import _executor  # the compiled solver's pool (fork-safe, kept)

        parts = list(_executor(threads).map(run, starts))
    else:
        parts = [part(i) for i in starts]
    if jit is not None:
        jit.start_ipm(then=_check_fused_passes)  # (after a small answer: for the next)
    if len(parts) == 1:
        return parts[0]
    return tuple(np.concatenate(p) for p in zip(*parts))


def _nogil():
    return (_USE_JIT and _jit_band.load() is not None) or _lapack().NOGIL


def _numpy_step(x, u, z, b, p, y0, y1, cvec, g1, g2, ia, ia2, mode, mu, T, aug):
    """One predictor-corrector iteration by NumPy's passes (the loop body of
    :func:`_solve_group`; :meth:`_IpmDrift.step` is the drift one's compiled
    passes, the same numbers: :func:`_iterations_equal`).  Returns the new
    x, u, z, b and p, the primal step lengths a and the mean
    complementarity."""
    rp = _d(x, g1, g2, ia) - u
    if mode == 2:
        r = y1 - x - b[:, 1:]
    else:
        r = y1 - x - b[:, None]
    mu_c = (u * z).mean(axis=1)
    W = np.minimum(z / u, 1e250)  # (u >= _TINY)

    def cap_row(r):
        # a row whose band fails: its W capped (those constraints are
        # active; the cap only shortens their Newton step).  The augmented
        # band's signed LDL' does not test its pivots' signs, so it never
        # comes here: a step it gets wrong is only shorter progress, since
        # convergence is decided by the KKT test alone
        W[r] = np.minimum(W[r], _W_MAX / ia2)

    nt = _newton_capped(W, cap_row, g1, g2, ia2, mode, mu, T)
    rx0 = r - cvec - _dt(W * rp, g1, g2, ia)
    rq = None
    if aug:
        rb = np.concatenate(((y0 - b[:, 0])[:, None], r), axis=1) - _bt(p)
        rq = p / mu - np.diff(b, axis=1)
    elif mode == 2:
        rb = np.concatenate(((y0 - b[:, 0])[:, None], r), axis=1) - _lap(b, mu)
    elif mode == 1:
        rb = (y0 - b) + r.sum(axis=1)
    else:
        rb = None
    # predictor (affine scaling)
    dx, db = nt.solve(rx0, rb, rq)[:2]
    du = _d(dx, g1, g2, ia) + rp
    dz = -z - W * du
    a_aff = np.minimum(_max_step(u, du), _max_step(z, dz))[:, None]
    mu_aff = ((u + a_aff * du) * (z + a_aff * dz)).mean(axis=1)
    sigma = (mu_aff / mu_c) ** 3
    # corrector: centring and the second-order term
    tgt = (sigma * mu_c)[:, None] - du * dz
    dx, db, *dp = nt.solve(rx0 + _dt(tgt / u, g1, g2, ia), rb, rq)
    du = _d(dx, g1, g2, ia) + rp
    dz = tgt / u - z - W * du
    # primal and dual steps of their own lengths (the stationarity residual
    # a shorter dual step leaves is the next iteration's right-hand side):
    # ~1-8 fewer iterations than one common length
    a = np.minimum(1.0, 0.995 * _max_step(u, du))
    ad = np.minimum(1.0, 0.995 * _max_step(z, dz))
    x = x + a[:, None] * dx
    u = np.maximum(u + a[:, None] * du, _TINY)
    z = np.maximum(z + ad[:, None] * dz, _TINY)
    if mode == 2:
        b = b + a[:, None] * db
        if aug:
            p = p + a[:, None] * dp[0]
    elif mode == 1:
        b = b + a * db
    mu_c = (u * z).mean(axis=1)
    return x, u, z, b, p, a, mu_c


def _solve_group(y, g1, g2, alpha, lamG, G, mode, mu, kkt_tol, max_iters, init):
    m, T = y.shape
    s_out = np.zeros((m, T))
    b_out = np.zeros((m, T if mode == 2 else 1))
    iters = np.zeros(m, dtype=np.int64)
    v_out = np.full(m, np.inf)
    polished = np.full(m, -10**9)
    stall_count = np.zeros(m, dtype=np.int64)
    tol = kkt_tolerance(y, kkt_tol, mode)
    # scale: each row to range 1 about its median (the baseline absorbs a shift)
    lo, hi = y.min(axis=1), y.max(axis=1)
    S = np.maximum(hi - lo, np.maximum(np.abs(hi), 1.0) * 1e-12)
    c = np.median(y, axis=1) if mode != 0 else np.zeros(m)
    ys = (y - c[:, None]) / S[:, None]
    n = T - 1
    ia = 1.0 / alpha
    ia2 = ia * ia
    lam = (lamG / S)[:, None]
    dt1 = _dt(np.ones((1, n)), g1, g2, ia)  # D' 1
    cvec = lam * dt1
    y0, y1 = ys[:, 0], ys[:, 1:]
    if init is None:
        # a start inside the cone: spikes of total size 1/4 of the range
        # spread evenly, duals at the gradient's scale
        u = np.full((m, n), 0.25 / max(1.0, G))
        x = _ar_solve(u, g1, g2, alpha)
        # (each row's own scale: a row's numbers do not depend on its group)
        z = np.repeat(np.maximum(1.0, lam * dt1.max()), n, axis=1)
        if mode == 2:
            b = np.repeat(np.median(y1 - x, axis=1)[:, None], T, axis=1)
        elif mode == 1:
            b = np.median(y1 - x, axis=1)
        else:
            b = np.zeros(m)
    else:
        # a warm start (a slider move): the previous spikes and their
        # gradient, pushed into the interior by a small centring term
        sk = np.zeros((m, T))
        sk[:, :-1] = u = np.maximum(init[:, :-1] / S[:, None], 0.0)
        # r = ys - K s (x = D^-1 u after a 0), its best baseline bb, g = lam - K'(r - bb)
        bb, g = _kkt(ys, sk, lam, g1, g2, alpha, mode, mu, want_v=False)[:2]
        g = g[:, :-1]
        delta = _WARM_CENTRE * np.maximum(1.0, lam * dt1.max())  # (each row's own)
        z = np.maximum(g, 0.0) + delta
        u = u + _WARM_CENTRE / max(1.0, G)
        x = _ar_solve(u, g1, g2, alpha)
        b = bb if mode == 2 else bb[:, 0]
    rows = np.arange(m)
    aug = _augmented(mode, mu)
    if init is not None and _WARM_SETTLE and not aug:
        # a slider move: the previous answer's active set is most often
        # nearly the new one, and the active-set corrections of _settle
        # reach the optimum from it in a few exact solves; the rows they
        # do not settle go on from the warm start by the interior point.
        # Not on the augmented (heavy drift) band: at 1 kHz the corrections
        # did not settle those rows (the same iterations after them)
        sc, bc, v = _settle(y, ys, init[:, :-1] <= 0.0, S, tol, g1, g2, alpha, lamG, G,
                            mode, mu, lam, steps=_WARM_SETTLE, refine=False, lu=False)
        s_out[:], b_out[:], v_out[:] = sc, bc, v
        iters[:] = 1
        keep = ~(v <= _TIGHT * tol)
        if not keep.any():
            fit = conv_rows(s_out, g1, g2, alpha) + b_out
            return s_out, b_out, fit, iters, v_out <= tol
        rows, x, z, u = rows[keep], x[keep], z[keep], u[keep]
        b, y0, y1, cvec, lam = b[keep], y0[keep], y1[keep], cvec[keep], lam[keep]
    # augmented drift: the multiplier p = mu B b an iterate of its own (its
    # residual p / mu - B b is formed without multiplying b by mu)
    p = mu * np.diff(b, axis=1) if aug else None
    # u = D x is an iterate of its own (updated by its steps, kept > 0):
    # formed from x it would lose ~eps |x| / alpha to cancellation (slow
    # kernels: a second difference), as much as the small spikes hold
    fused = False
    ws = None
    for it in range(1, max_iters + 1):
        # (the passes may become ready mid-way: made on a thread)
        fused = fused or _fused_ok(mode, aug)
        if fused:
            # the element-wise work of an iteration in six compiled passes
            ws = _IpmDrift.for_rows(ws, len(rows), n)
            a, mu_c = ws.step(x, u, z, b, y0, y1, cvec, g1, g2, ia, ia2, mu, T)
        else:
            x, u, z, b, p, a, mu_c = _numpy_step(x, u, z, b, p, y0, y1, cvec, g1, g2, ia,
                                                 ia2, mode, mu, T, aug)
        done = np.zeros(len(rows), dtype=bool)
        last = it == max_iters
        # a step cut to nothing: the Newton direction has lost its accuracy
        # (huge duals over tiny spikes); the guessed active set is tried
        # exactly, and the row ends after a few such steps
        stalled = (a < _STALL) & (mu_c < _STALL_BELOW)
        stall_count[rows] = np.where(stalled, stall_count[rows] + 1, 0)
        cand = (np.flatnonzero((mu_c < _TRY_BELOW) | stalled) if not last
                else np.arange(len(rows)))
        if cand.size:
            rc = rows[cand]
            # rounded to the active set: s = 0 where the dual exceeds the spike
            act = u[cand] <= z[cand]
            sc = np.zeros((cand.size, T))
            sc[:, :-1] = np.where(act, 0.0, u[cand]) * S[rc, None]
            bc, v = _check(y[rc], sc, g1, g2, alpha, lamG, G, mode, mu)
            better = v < v_out[rc]
            s_out[rc[better]], b_out[rc[better]] = sc[better], bc[better]
            v_out[rc[better]], iters[rc[better]] = v[better], it
            # the exact optimum on that active set (and active-set corrections)
            # once the interior point is near its floor of precision, or at the
            # end; at most every few iterations
            pol = ((v_out[rc] > _TIGHT * tol[rc]) & (it - polished[rc] >= _POLISH_EVERY)
                   & ((mu_c[cand] < _POLISH_BELOW) | last | stalled[cand]
                      | (it >= max_iters // 2)))
            if pol.any():
                pc = cand[pol]
                rp = rows[pc]
                polished[rp] = it
                sc, bc, v = _settle(y[rp], ys[rp], act[pol], S[rp], tol[rp],
                                    g1, g2, alpha, lamG, G, mode, mu, lam[pc])
                better = v < v_out[rp]
                s_out[rp[better]], b_out[rp[better]] = sc[better], bc[better]
                v_out[rp[better]], iters[rp[better]] = v[better], it
            for i in cand:
                r_ = rows[i]
                # done when tight; an answer within the tolerance only is
                # kept while the interior point goes on a few iterations
                if (v_out[r_] <= _TIGHT * tol[r_] or last
                        or stall_count[r_] >= _STALL_STEPS
                        or (v_out[r_] <= tol[r_] and it - iters[r_] >= _GRACE)):
                    done[i] = True
        if done.all():
            break
        if done.any():
            keep = ~done
            rows, x, z, u = rows[keep], x[keep], z[keep], u[keep]
            b, y0, y1, cvec, lam = b[keep], y0[keep], y1[keep], cvec[keep], lam[keep]
            if aug:
                p = p[keep]
    fit = conv_rows(s_out, g1, g2, alpha) + b_out
    return s_out, b_out, fit, iters, v_out <= tol


# the NumPy rolling quantile handles windows x samples up to this (beyond:
# the compiled one, compiling here if need be)
ROLLING_MAX_WORK = 5e7


def rolling_quantile_rows(y, W, q):
    """``_numba_solvers.rolling_quantile_rows``'s numbers: at sample t the
    k-th smallest of ``y[max(0, t - W + 1) .. t]``, k = round((n_t - 1) q)
    (half up) over the n_t samples there; by ``np.partition`` over sliding
    windows, a block of windows at a time."""
    from numpy.lib.stride_tricks import sliding_window_view

    y = np.atleast_2d(y)
    n, T = y.shape
    out = np.empty((n, T))
    for t in range(min(W - 1, T)):  # the windows that start at sample 0
        k = min(int(np.floor(t * q + 0.5)), t)
        out[:, t] = np.partition(y[:, :t + 1], k, axis=1)[:, k]
    if T >= W:
        k = min(int(np.floor((W - 1) * q + 0.5)), W - 1)
        win = sliding_window_view(y, W, axis=1)  # (n, T - W + 1, W), a view
        step = max(1, (1 << 22) // W)
        for a in range(0, T - W + 1, step):
            b = min(T - W + 1, a + step)
            out[:, W - 1 + a:W - 1 + b] = np.partition(win[:, a:b], k, axis=2)[:, :, k]
    return out
