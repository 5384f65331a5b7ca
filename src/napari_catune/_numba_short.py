"""Short-chain recursions for a warm start's exchange steps (the slider path).

:func:`._numba_solvers._subspace_riccati` (no drift) is latency-bound on
its active samples: the value function's entries form a loop-carried
chain whose longest cycle is a multiply-add and a product per sample
(p01 = g2 (g1 a00 + a01): a01 -> a01 is two operations, and a01 feeds
a00 through a second multiply-add) and the linear term q0's another
subtraction and multiply-add.  :func:`riccati_short` forms the same
recursion with every loop-carried entry one multiply-add from its own
last value (p01 = g2 a01 + (g1 g2) a00, a02 = g1 a02 + (a12 + 1),
q0 = g1 q0 + (q1 - g1 y)): on the sparse free sets of the bench's 30 and
100 Hz regimes the recursion takes ~0.13 ms instead of ~0.20 ms on 54,000
frames (on lowSNR-30Hz's ~40 % free samples 0.23 -> 0.20 ms: there the
free samples' division sets the pace).  A warm re-solve without drift
after one slider move then takes 0.78-0.95 of the CPU time at the same
steps (bench_solver.py --warm, 30 and 100 Hz regimes; 0.87 summed over
all regimes and moves, two back-to-back pairs).  Rounded differently
(g1 g2 is a rounded constant, sums grouped otherwise): the spikes of a
step differ from the plain recursion's by ~1e-11 of their largest on
kernels decaying over ~80 samples, the flagged violators are the same.
Only a warm start's phase-1 steps use it, on kernels decaying over fewer
than ``_EARLY_DECAY`` samples (the slider path; the cold solves and the
interior point keep the plain recursion); the step's KKT check and the
final check decide as before.

The drift recursion is not latency- but throughput-bound (~25 products
and multiply-adds and a division per active sample, ~12 cycles): the
same regrouping made it slower (0.25 -> 0.28-0.30 ms), so it is kept.

:func:`segment_back_short` is the same for the local settle's backward
recursion (:func:`._numba_local.segment_solve`, the baseline fixed).

The module also holds the steps the Riccati recursions share
(:func:`free_pair_step`, :func:`free_step`, :func:`flat_free_step`,
:func:`active_sub`), inlined into each (``riccati_short`` here,
``_subspace_riccati``, ``_riccati_flat`` and ``_nu_riccati`` in
:mod:`._numba_solvers`): one copy of the arithmetic, the same machine code.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_CACHE = True


@njit(cache=_CACHE, nogil=True, inline="always")
def free_pair_step(gain, p, q0, l1, l2, yk, beta, bg1, bg2):
    """One step of the Riccati recursions (module docstring) at a free
    sample before a free pair: there a00 = a02 = 1 and a01 = a11 = a12 = 0
    exactly, so the general free step would form the gains (0, 1, lb); they
    go to row ``p`` of ``gain`` and the linear terms (q0, q1, q2) after the
    step are returned (no division on the loop-carried chain)."""
    lb = q0 + (beta - yk)
    gain[p, 0] = 0.0
    gain[p, 1] = 1.0
    gain[p, 2] = lb
    return l1 - bg1, bg2, l2 - lb


@njit(cache=_CACHE, nogil=True, inline="always")
def free_step(gain, p, a00, a01, a02, q0, l1, l2, yk, beta, bg1, bg2):
    """A free sample's step in the Riccati recursions (the general case):
    x_k minimised out, its gains (c1, c2, c3) = (a01, a02, lb) / a00 stored
    in row ``p`` of ``gain``.  Returns 1 / a00, the linear terms (q0, q1,
    q2) after the step (the remaining quadratic is in (x_{k-1}, b) only;
    -beta (g1 x_{k-1} + g2 x_{k-2}) stays) and a01^2, a01 a02, a02^2 for
    the caller's update of the quadratic."""
    inv = 1.0 / a00
    lb = q0 + (beta - yk)
    c1 = a01 * inv
    c2 = a02 * inv
    c3 = lb * inv
    gain[p, 0] = c1
    gain[p, 1] = c2
    gain[p, 2] = c3
    return (inv, (l1 - bg1) - c1 * lb, bg2, l2 - c2 * lb,
            a01 * a01, a01 * a02, a02 * a02)


@njit(cache=_CACHE, nogil=True, inline="always")
def flat_free_step(gain, p, a00, a01, a11, a02, a12, a22, q0, l1, l2, yk, beta, bg1, bg2):
    """:func:`free_step` and the update of the quadratic without drift:
    returns (a00, a02, a22, q0, q1, q2) after the step (a01 = a11 = a12 =
    0 after it)."""
    inv, q0, q1, q2, e11, e12, e22 = free_step(gain, p, a00, a01, a02, q0, l1, l2, yk,
                                               beta, bg1, bg2)
    return ((a11 + 1.0) - e11 * inv, (a12 + 1.0) - e12 * inv, (a22 + 1.0) - e22 * inv,
            q0, q1, q2)


@njit(cache=_CACHE, nogil=True, inline="always")
def active_sub(a00, a01, a11, a02, a12, q0, l1, l2, yk, g1, g2, g1sq, g1x2, g2sq):
    """An active sample's step in the Riccati recursions: x_k = g1 x_{k-1}
    + g2 x_{k-2} substituted.  Returns (p00, p01, p11, p02, p12) and the
    linear terms (q0, q1, q2).  p00 holds the next stage cost's one
    already; g1 a00 + a01 cancels for slow kernels, so p01 forms it before
    the product with g2 (a rounded g1 g2 would perturb the model)."""
    l0 = q0 - yk
    return (g1sq * a00 + (g1x2 * a01 + (a11 + 1.0)), g2 * (g1 * a00 + a01), g2sq * a00,
            g1 * a02 + a12, g2 * a02, g1 * l0 + l1, g2 * l0, l2)


@njit(cache=_CACHE, nogil=True, fastmath={"contract"})
def riccati_short(y, g1, g2, beta, active, gain):
    """:func:`._numba_solvers._subspace_riccati` for modes 0 and 1 (no
    drift), its active samples with short loop-carried chains (module
    docstring).  Fills ``gain`` (the free samples' rows packed at its end,
    as _subspace_riccati does) and returns (1 + p22, q2) of the value
    function before sample 0 and the first row of the gains."""
    n = y.shape[0] - 1
    g1sq = g1 * g1
    g1x2 = 2.0 * g1
    g2sq = g2 * g2
    g12 = g1 * g2
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
            p -= 1
            q0, q1, q2 = free_pair_step(gain, p, q0, l1, l2, yk, beta, bg1, bg2)
            a22 = (a22 + 1.0) - 1.0
            continue
        f2 = f1
        f1 = not active[k]
        if active[k]:
            # each entry one multiply-add from its own last value, the
            # other terms formed off the chain
            a01n = g2 * a01 + g12 * a00
            a11n = g2sq * a00
            a12n = g2 * a02
            a00 = g1sq * a00 + (g1x2 * a01 + (a11 + 1.0))
            a02 = g1 * a02 + (a12 + 1.0)
            a01 = a01n
            a11 = a11n
            a12 = a12n
            a22 = a22 + 1.0
            q0n = g1 * q0 + (l1 - g1 * yk)
            q1 = g2 * q0 - g2 * yk
            q0 = q0n
            q2 = l2
        else:
            p -= 1
            a00, a02, a22, q0, q1, q2 = flat_free_step(gain, p, a00, a01, a11, a02, a12, a22,
                                                       q0, l1, l2, yk, beta, bg1, bg2)
            a01 = 0.0
            a11 = 0.0
            a12 = 0.0
    return a22, q2, p


@njit(cache=_CACHE, nogil=True, fastmath={"contract"}, error_model="numpy")
def segment_back_short(y, bvec, g1, g2, beta, active, a, e, gain, q0, q1):
    """The backward recursion of :func:`._numba_local.segment_solve` on
    samples [a, e) (the baseline fixed at ``bvec``) with short loop-carried
    chains on its active samples (module docstring), from segment_solve's
    value (a00, a01, a11) = (1, 0, 0) and linear term (q0, q1) at e: its
    gains into ``gain[k, 0]`` and ``gain[k, 2]`` of the free samples."""
    g1sq = g1 * g1
    g1x2 = 2.0 * g1
    g2sq = g2 * g2
    g12 = g1 * g2
    bg1 = beta * g1
    bg2 = -beta * g2
    a00 = 1.0
    a01 = 0.0
    a11 = 0.0
    for kk in range(e - 1, a - 1, -1):
        # (indices unsigned: no tests for negative ones; the same numbers)
        k = np.uint64(kk)
        yb = y[np.uint64(kk + 1)] - bvec[np.uint64(kk + 1)]
        if active[k]:
            a01n = g2 * a01 + g12 * a00
            a11n = g2sq * a00
            a00 = g1sq * a00 + (g1x2 * a01 + (a11 + 1.0))
            a01 = a01n
            a11 = a11n
            q0n = g1 * q0 + (q1 - g1 * yb)
            q1 = g2 * q0 - g2 * yb
            q0 = q0n
        else:
            l0 = q0 - yb
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
