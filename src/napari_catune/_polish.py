"""An exact end for answers on near-degenerate kernels (issue 12:
converged=True means optimal), in NumPy.

On a kernel whose rise is within ``solver._NEAR_DEGENERATE`` of its decay
(the AR(2) roots nearly coincide; slow at 300-1000 Hz) two spike positions
a few samples apart give nearly the same column of K, and the exact
method's multipliers carry a rounding floor: its answers passed the KKT
test (violation <= 1e-7 of the range) 1e-9 to 1e-8 (relative) above the
optimum, with a spike 4 samples off (bench_audit.py --seed 5 --hard no.
23), a violator left out (no. 447) or the free spikes themselves inexact
(no. 334: the same support, the spikes 1e-3 off).

:func:`polish_row` takes such an answer as the start of an active-set
method (Lawson-Hanson) on the eliminated problem
min_{s >= 0} 1/2 z'(I - B) z + lamG sum(s), z = y - K s, B the
best-baseline operator, K and K' by FFT from the closed-form kernel
(:class:`_Kernel`): the free spikes by Newton steps on the Gram matrix
H = K_W'(I - B) K_W of the free columns, each step from the gradient
formed directly at the current spikes (so the rounding of H, whose
condition grows as the columns come together, slows the steps but does not
bias their end); a step that would take a free spike below 0 stops where
the first one reaches 0 and sets it to 0; then the samples whose gradient
is below ``-_TOL`` G times the data scale join the free set (the worst
``_ADD`` at a time), until none does.  An answer that already holds this
test is left as it is (bit for bit, no step counted); a polished one is
taken only where it settles within the row's step budget and its
objective is not higher than the start's; free sets of more than
``_MAX_FREE`` samples (small lambda: there the answers seen were at most
5e-10 above the optimum) are left as they are.
"""

from __future__ import annotations

import math

import numpy as np

from . import _numpy_solver as npsol
from .kernel import _raw_kernel, kernel_peak_and_sum

# a sample violates below -_TOL G (range + _FLOOR max|y|): 1e-12 of the
# range, five orders under the KKT test's 1e-7, with a floor of ~45 ulp of
# max|y| G over the rounding of the directly formed gradient (~eps max|y| G)
_TOL = 1e-12
_FLOOR = 1e-2
# at most this many free samples, K_W's floats (k T) and the work of the
# samples joining H at once (new k T) at most these: else the start stands
_MAX_FREE = 400
# ... where the exact method did not settle in its budget (then FISTA, slow
# on these kernels, follows: seen with every step of the budget used)
_MAX_FREE_STUCK = 400
_MAX_WORK_STUCK = 2e9
_MAX_WORK = 2e9
_MAX_FLOATS = 2e7
# violators freed per round (the most negative first, none next to
# another freed in the round)
_ADD = 16
# added to the unit diagonal of the scaled H (_Free.solve)
_RIDGE = 1e-13
# Newton steps on one free set (each from the directly formed gradient)
_NEWTON = 8


class _Kernel:
    """K and K' by FFT with the kernel sampled from its closed form
    (kernel._raw_kernel over the peak: no cancellation as tau_rise ->
    tau_decay).  The AR(2) recursion the solvers use amplifies its rounding
    by ~(tau fs)^2 on these kernels (a double root near 1): K s off by
    7e-10 of its largest at 1 kHz, tau 2.6 s (bench_audit.py --seed 5
    --hard no. 334), where the FFT's is 6e-15; the gradient and the
    objective that judge the polish need the latter."""

    def __init__(self, taus, T):
        tau_r, tau_d, fs = taus
        peak_raw, _G = kernel_peak_and_sum(tau_r, tau_d, fs)
        self.h = _raw_kernel(np.arange(T, dtype=np.float64) / fs, tau_r, tau_d) / peak_raw
        self.T = T
        self.nf = 1 << (2 * T - 1).bit_length()
        self.fh = np.fft.rfft(self.h, self.nf)

    def conv(self, s):
        """K s, rows of s ((m, T))."""
        return np.fft.irfft(np.fft.rfft(s, self.nf) * self.fh, self.nf)[..., :self.T]

    def corr(self, r):
        """K' r, rows of r."""
        return self.conv(r[..., ::-1])[..., ::-1]


def _grad(y, s, ker, lamG, mode, mu):
    """(gradient of the eliminated objective, the best baseline, y - K s)
    at s: one row as (1, T) arrays."""
    w = y - ker.conv(s)
    b = npsol.best_baseline(w, mode, mu)
    return lamG - ker.corr(w - b), b, w


def _objective(y, s, ker, lamG, mode, mu):
    w = y - ker.conv(s)
    b = npsol.best_baseline(w, mode, mu)
    r = (w - b)[0]
    val = 0.5 * math.fsum(r * r) + lamG * math.fsum(s[0])
    if mode == 2 and mu > 0:
        val += 0.5 * mu * math.fsum(np.diff(b[0]) ** 2)
    return val


def _columns(idx, ker, mode, mu):
    """K e_j and (I - B) K e_j for j in idx: two (k, T) arrays."""
    T = ker.T
    ke = np.zeros((idx.size, T))
    for k, j in enumerate(idx):
        ke[k, j:] = ker.h[:T - j]
    if mode == 0:
        return ke, ke
    return ke, ke - npsol.best_baseline(ke, mode, mu)


class _Free:
    """The free set W (in the order its samples joined), the columns K e_j
    and (I - B) K e_j of its samples, and H = K_W'(I - B) K_W kept up to
    date as samples join and leave (k T work per sample, not k^2 T per
    set), with H's Cholesky factor formed once per set."""

    def __init__(self, W, ker, mode, mu, max_free, max_work):
        self.ker, self.mode, self.mu = ker, mode, mu
        self.max_free, self.max_work = max_free, max_work
        self.W = np.zeros(0, dtype=np.int64)
        self.KE = np.zeros((0, ker.T))
        self.MKE = np.zeros((0, ker.T))
        self.H = np.zeros((0, 0))
        self.chol = None
        self.add(W)

    def add(self, idx):
        if idx.size == 0:
            return
        k = self.W.size + idx.size
        T = self.ker.T
        if k > self.max_free or k * T > _MAX_FLOATS or idx.size * k * T > self.max_work:
            raise _TooLarge
        ke, mke = _columns(idx, self.ker, self.mode, self.mu)
        cross = ke @ self.MKE.T  # (new, old)
        corner = ke @ mke.T
        corner = 0.5 * (corner + corner.T)
        n0 = self.W.size
        H = np.empty((k, k))
        H[:n0, :n0] = self.H
        H[n0:, :n0] = cross
        H[:n0, n0:] = cross.T
        H[n0:, n0:] = corner
        self.H = H
        self.W = np.concatenate([self.W, idx])
        self.KE = np.concatenate([self.KE, ke])
        self.MKE = np.concatenate([self.MKE, mke])
        self.chol = None

    def drop(self, mask):
        keep = ~mask
        self.W = self.W[keep]
        self.KE = self.KE[keep]
        self.MKE = self.MKE[keep]
        self.H = self.H[np.ix_(keep, keep)]
        self.chol = None

    def solve(self, r):
        """~H^-1 r: H scaled to a unit diagonal, _RIDGE added to it, by its
        Cholesky factor L (L^-1 formed once per set).  The ridge keeps the
        pivots of a run of adjacent free samples (nearly equal columns)
        far from the denormals, where the factorisation crawls; the Newton
        steps from the directly formed gradient correct what it leaves."""
        if self.chol is None:
            d = np.sqrt(np.maximum(np.diag(self.H), 1e-300))
            Hs = self.H / d[:, None] / d[None, :]
            Hs[np.diag_indices_from(Hs)] += _RIDGE
            try:
                L = np.linalg.cholesky(Hs)
                self.chol = (np.linalg.solve(L, np.eye(L.shape[0])), d)
            except np.linalg.LinAlgError:
                self.chol = False
        if self.chol is False:
            return np.linalg.lstsq(self.H, r, rcond=None)[0]
        X, d = self.chol
        return (X.T @ (X @ (r / d))) / d


class _TooLarge(Exception):
    pass


def _violators(g, W, T, tol):
    out = np.ones(T - 1, dtype=bool)
    out[W] = False
    return np.flatnonzero(out & (g[:T - 1] < -tol))


def polish_row(y, s0, ker, lamG, G, mode, mu, budget, max_free=None):
    """The Lawson-Hanson end from ``s0`` (a row's answer, s0 >= 0) of row
    ``y`` (both (T,) float64).  Returns (s, steps): s is ``s0`` itself
    where it already holds the test (no step taken), None where the polish
    does not settle within ``budget`` rounds (a round: one free set's
    Newton steps and one look for violators) or the free set is too large
    (``_MAX_FREE``, ``_MAX_FLOATS``); the caller compares objectives."""
    T = y.shape[0]
    if T < 3:
        return None, 0
    y2 = y.reshape(1, T)
    s = np.maximum(s0, 0.0).reshape(1, T).copy()
    s[0, T - 1] = 0.0
    hi, lo = float(y.max()), float(y.min())
    top = max(abs(hi), abs(lo))
    if mode == 0:
        hi, lo = max(hi, 0.0), min(lo, 0.0)
    tol = _TOL * G * ((hi - lo) + _FLOOR * top)
    if not tol > 0.0:
        return None, 0
    W = np.flatnonzero(s[0] > 0.0)
    g, _b, _w = _grad(y2, s, ker, lamG, mode, mu)
    g = g[0]
    if ((W.size == 0 or float(np.abs(g[W]).max()) <= tol)
            and _violators(g, W, T, tol).size == 0 and np.array_equal(s[0], s0)):
        return s0, 0
    if budget <= 0:
        return None, 0
    steps = 0
    try:
        F = _Free(W, ker, mode, mu, _MAX_FREE if max_free is None else max_free,
                  _MAX_WORK if max_free is None else _MAX_WORK_STUCK)
        while steps < budget:
            steps += 1
            # the free spikes: Newton steps, stepping back where one hits 0
            prev = np.inf
            for _ in range(_NEWTON):
                W = F.W
                if W.size == 0:
                    break
                gW = g[W]
                gm = float(np.abs(gW).max())
                if gm <= tol or not gm < 0.5 * prev:
                    break
                prev = gm
                dz = F.solve(-gW)
                sW = s[0, W]
                z = sW + dz
                neg = z <= 0.0
                if not neg.any():
                    s[0, W] = z
                else:
                    ratio = sW[neg] / (sW[neg] - z[neg])
                    a = float(ratio.min())
                    s[0, W] = np.maximum(sW + a * dz, 0.0)
                    drop = np.zeros(W.size, dtype=bool)
                    drop[np.flatnonzero(neg)[ratio <= a * (1.0 + 1e-12) + 1e-300]] = True
                    s[0, W[drop]] = 0.0
                    F.drop(drop)
                    prev = np.inf
                g = _grad(y2, s, ker, lamG, mode, mu)[0][0]
            W = F.W
            viol = _violators(g, W, T, tol)
            if viol.size == 0:
                if W.size and float(np.abs(g[W]).max()) > tol:
                    return None, steps  # the free spikes did not settle
                return s[0], steps
            # the most negative first, one per run of adjacent violators
            taken = np.zeros(T + 1, dtype=bool)
            add = []
            for j in viol[np.argsort(g[viol])]:
                if not (taken[j - 1] if j else False) and not taken[j + 1]:
                    add.append(j)
                    taken[j] = True
                    if len(add) == _ADD:
                        break
            F.add(np.array(add, dtype=np.int64))
    except _TooLarge:
        return None, steps
    return None, steps


def polish_rows(y, s, b, iters, conv, fit, m, mode, mu, max_iters, kkt_tol, max_free=None):
    """:func:`polish_row` for every row of a solve (arrays as
    ``solver._solve_rows`` returns them, changed in place; ``m`` its
    ``solver._Model``): a row's answer replaced (with its best baseline, fit
    and KKT check) where the polish settles and its objective (by FFT) is
    not higher; its steps added to ``iters`` (never beyond ``max_iters``)."""
    n, T = y.shape
    if T < 3:
        return
    ker = _Kernel(m._taus, T)
    for i in range(n):
        budget = int(max_iters - iters[i])
        si = s[i]
        s_new, steps = polish_row(y[i], si, ker, m.lamG, m.G, mode, mu, budget, max_free)
        iters[i] += steps
        if s_new is None or s_new is si:
            continue
        yi = y[i:i + 1]
        if not (_objective(yi, s_new.reshape(1, T), ker, m.lamG, mode, mu)
                <= _objective(yi, s[i:i + 1], ker, m.lamG, mode, mu)):
            continue
        _g, bb, w = _grad(yi, s_new.reshape(1, T), ker, m.lamG, mode, mu)
        s[i] = s_new
        b[i] = bb[0] if mode == 2 else bb[0, 0]
        if fit is not None:
            fit[i] = (y[i] - w[0]) + bb[0]
        v = npsol.kkt_rows(yi, s[i:i + 1], b[i:i + 1], m.g1, m.g2, m.alpha, m.lamG, m.G, mode,
                           mu).max(axis=1)
        conv[i] = bool(v[0] <= npsol.kkt_tolerance(yi, kkt_tol, mode)[0])
