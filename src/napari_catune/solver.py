"""Deconvolution with the CaTune model: the public solver API.

Same names, argument order and result fields as ``calab`` 0.3, so a user can
switch by changing an import::

    from napari_catune import run_deconvolution_full
    res = run_deconvolution_full(traces, fs, tau_r, tau_d, lam)
    res.activity, res.baseline, res.reconvolution, res.iterations, res.converged

Objective (DESIGN.md), per trace, over s >= 0 and a scalar baseline b::

    1/2 ||y - K s - b||^2 + lam * G * sum(s),    G = sum(build_kernel(...))

``baseline=`` picks the baseline model (:mod:`napari_catune.baseline`):
"scalar" (the objective above; True), "none" (b = 0; False), "rolling"
(CaTune's rolling 0.2-quantile baseline subtracted first, as the CaTune web
app and ``calab`` 0.3 do) and "drift" (a per-sample b_t fitted jointly,
with ``(mu/2) sum (b_t - b_{t-1})^2`` added, ``mu = (drift_scale fs)^2``).

K s is computed exactly in O(T) by the AR(2) recursion (the kernel is the
AR(2) impulse response delayed by one sample and scaled).  Two methods reach
the same optimum:

* ``"pdas"`` (the default, ``"auto"``): primal-dual active sets on the
  calcium, each step an O(T) Riccati solve; where the exchange of
  violators stalls (kernels slow relative to fs), an interior point on the
  same recursion finds the active set (``_numba_solvers.pdas_one``).  Stops
  at the exact optimum in 10-45 steps whatever T and the kernel.  A warm
  start (``init=``) from the previous activity needs 2-5 steps after a
  small move: this is the slider path.
* ``"fista"``: FISTA with adaptive restart (Beck & Teboulle; O'Donoghue &
  Candes) and a Lipschitz step, the CaTune reference method.

If the active-set iteration ever fails to settle within its budget, the
remaining budget goes to FISTA from its best point, so ``max_iters`` always
bounds the work.
"""

from __future__ import annotations

import logging
import math
import mmap
import os
import sys
import threading
import time
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from .baseline import baseline_mode, drift_mu, rolling_baseline
from .kernel import (
    _ar2_coefficients,
    ar2_root_gap,
    bandpass_filter,
    build_kernel,
    compute_lipschitz,
    kernel_peak_and_sum,
    validate_params,
)

__all__ = [
    "DeconvolutionResult",
    "run_deconvolution",
    "run_deconvolution_full",
    "objective",
    "prepare_traces",
    "warm_up",
]

# Steps of the exact method (active-set steps + interior-point iterations)
# allowed before handing over to FISTA.  Seen (bench/bench_regimes.py, real
# recordings): 10-15 cold on fast kernels, 15-45 on slow kernels and at
# 1 kHz from 2,000 to 1,000,000 frames, 2-40 warm.  The hand-over is a
# safety net that has not been seen to run.
_PDAS_BUDGET = 500
# converged=True means: every KKT condition holds to KKT_TOL times the
# trace's range max(y) - min(y), plus a rounding floor of 1000 ulp of
# max|y| (see kkt_violation).  The exact method lands at 1e-15 to 1e-11.
# FISTA stopped by tol=1e-6 lands at 1e-4 to 1e-3, by tol=1e-15 at ~5e-8;
# measured objective gaps at a violation of 1e-7: 1e-10 to ~1e-7.
KKT_TOL = 1e-7
# a kernel whose rise is within this fraction of its decay (tau_rise >
# (1 - _NEAR_DEGENERATE) tau_decay: the AR(2) roots nearly coincide) is
# solved cold even when given a warm start: there two spike positions give
# nearly the same column of K, and a warm start's exchange could stop on a
# support a few samples off with a gradient violation of only ~1e-9 of the
# range (KKT-optimal to KKT_TOL) and an objective up to 3e-7 (relative)
# above the optimum, where the cold path lands on it (bench/bench_audit.py
# --seed 3 --hard: tau_rise/tau_decay 1 - 1.4e-4 to 1 - 6e-3 at 300-1000 Hz;
# tests/test_audit_found.py).  The cold answers there are then polished
# (_polish: an active-set end at 1e-12 of the range, K by FFT from the
# closed-form kernel): the KKT test alone let them stop 1e-9 to 1e-8 above
# the optimum (bench_audit.py --seed 5 --hard nos. 23, 334, 447)
_NEAR_DEGENERATE = 1e-2
METHODS = ("auto", "pdas", "fista")
# baseline model -> the compiled solvers' code ("rolling" solves with b = 0
# after subtracting CaTune's rolling baseline)
_MODE_CODES = {"none": 0, "scalar": 1, "rolling": 0, "drift": 2}


class DeconvolutionResult(NamedTuple):
    """Result of :func:`run_deconvolution_full` (fields as in ``calab``).

    activity : non-negative spikes s, the traces' shape, float64
    baseline : in trace units.  "scalar"/"none": b per trace, (n,) (a float
        for 1-D input).  "rolling"/"drift": b per sample, the traces' shape
        (the subtracted rolling baseline, or the fitted drift).
    reconvolution : the fit K s + b in trace units, the traces' shape
    iterations : solver steps per trace (active-set steps + FISTA iterations)
    converged : whether the answer is optimal: every KKT condition holds to
        ``KKT_TOL`` (1e-7) times the trace's range (:func:`kkt_violation`),
        whichever method produced it.  False means the budget
        (``max_iters``) ran out first, or FISTA stopped on ``tol`` short of
        the optimum.
    """

    activity: np.ndarray
    baseline: float | np.ndarray
    reconvolution: np.ndarray
    iterations: int | np.ndarray
    converged: bool | np.ndarray


def _is_dask(x) -> bool:
    return type(x).__module__.split(".")[0] == "dask"


_F64 = np.dtype(np.float64)


def _f64c(a) -> np.ndarray:
    """``a`` as a float64 C-ordered array that numba's compiled code takes
    as its one array type: a read-only array (``np.load(..., mmap_mode="r")``,
    a Dask chunk) is another type to numba, whose first use would compile
    every kernel again (~60 s), so it is copied."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    return a if a.flags.writeable else a.copy()


def prepare_traces(traces, name: str = "traces", *, check_finite: bool = True) -> np.ndarray:
    """Validate traces and return them as a 2-D float64 C-ordered array.

    Raises ValueError for non-numeric, empty, 3-D or too-short input, and for
    NaN/Inf with the rows and sample counts that hold them (unless
    ``check_finite`` is False: the compiled solver checks them itself).
    """
    if (not check_finite and type(traces) is np.ndarray and traces.dtype == _F64
            and traces.flags.c_contiguous and traces.flags.writeable
            and 0 < traces.ndim <= 2 and traces.shape[-1] >= 2 and traces.size):
        # (the slider path: float64 C-ordered already; what the general path
        # below returns, without its dtype tests, ~5-10 us a call)
        return traces if traces.ndim == 2 else traces[np.newaxis, :]
    arr = np.asarray(traces)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or arr.dtype == bool
    ) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(
            f"{name} must be a real numeric array, got dtype {arr.dtype}; "
            "convert with np.asarray(traces, dtype=float)"
        )
    if arr.ndim not in (1, 2):
        raise ValueError(
            f"{name} must be 1-D (T,) or 2-D (n_cells, T), got shape {arr.shape}; "
            "for a movie, extract ROI traces first (extract_traces)"
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    # (read-only input copied: see _f64c)
    arr2 = _f64c(np.atleast_2d(arr))
    if arr2.shape[1] < 2:
        raise ValueError(
            f"{name} need at least 2 samples per trace, got {arr2.shape[1]}"
        )
    if not check_finite:
        return arr2
    bad = ~np.isfinite(arr2)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        counts = bad[rows].sum(axis=1)
        listed = ", ".join(f"row {r} ({c} samples)" for r, c in zip(rows[:10], counts[:10]))
        more = f" and {rows.size - 10} more rows" if rows.size > 10 else ""
        raise ValueError(
            f"{name} contain non-finite values (NaN or Inf) in {rows.size} row(s): {listed}{more}; "
            "drop or interpolate those samples first"
        )
    return arr2


class _Model:
    """Per-parameter constants of the solvers (cached: a slider revisits values)."""

    __slots__ = ("g1", "g2", "alpha", "lamG", "G", "near_degenerate", "_taus", "_lipschitz")

    def __init__(self, fs, tau_r, tau_d, lam, validated=False):
        if not validated:  # (_model_valid: floats validate_params returned)
            tau_r, tau_d, fs, lam = validate_params(tau_r, tau_d, fs, lam)
        self._taus = (tau_r, tau_d, fs)
        self.g1, self.g2, self.alpha, self.G = _kernel_consts(fs, tau_r, tau_d)
        self.lamG = lam * self.G
        self.near_degenerate = tau_r > (1.0 - _NEAR_DEGENERATE) * tau_d
        self._lipschitz = None

    @property
    def lipschitz(self) -> float:
        # an FFT of the kernel: only FISTA needs it
        if self._lipschitz is None:
            self._lipschitz = compute_lipschitz(build_kernel(*self._taus))
        return self._lipschitz


@lru_cache(maxsize=64)
def _kernel_consts(fs: float, tau_r: float, tau_d: float) -> tuple:
    """(g1, g2, alpha, G) of validated float parameters: what does not
    depend on lam (cached apart: a lam slider's moves sample no kernel)."""
    g1, g2, _d, _r = _ar2_coefficients(tau_r, tau_d, fs)
    peak_raw, G = kernel_peak_and_sum(tau_r, tau_d, fs)
    # h[i] = alpha * a[i-1], a the AR(2) impulse response (kernel.ar2_scale)
    return g1, g2, ar2_root_gap(tau_r, tau_d, fs) / peak_raw, G


@lru_cache(maxsize=64)
def _model_valid(fs: float, tau_r: float, tau_d: float, lam: float) -> _Model:
    # (floats validate_params returned: not validated again)
    return _Model(fs, tau_r, tau_d, lam, validated=True)


def _model_checked(fs, tau_r, tau_d, lam) -> _Model:
    # validate first (a clear error for any input), then key the cache on floats
    tau_r, tau_d, fs, lam = validate_params(tau_r, tau_d, fs, lam)
    return _model_valid(fs, tau_r, tau_d, lam)


def check_num_threads() -> None:
    """Raise ValueError (naming the setting and the fix) if the
    ``CATUNE_NUM_THREADS`` environment variable is set to anything but a
    positive whole number; the command line checks it before it starts."""
    _n_threads(1)


def _n_threads(n_rows: int) -> int:
    env = os.environ.get("CATUNE_NUM_THREADS", "").strip()
    if env:
        try:
            cores = int(env)
        except ValueError:
            cores = 0
        if cores < 1:
            raise ValueError(
                f"CATUNE_NUM_THREADS must be a positive whole number of threads, got {env!r}; "
                "unset it to use every available core"
            )
    elif n_rows <= 1:
        return 1  # (the count of cores would not change it: no system call)
    elif hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    return max(1, min(n_rows, cores))


_POOL = None
_POOL_SIZE = 0
_POOL_PID = 0
_POOL_LOCK = threading.Lock()


def _executor(n_threads: int):
    """A persistent thread pool (threads are not started per solve); a new
    one in a forked child, whose copy of the parent's pool has no threads."""
    global _POOL, _POOL_SIZE, _POOL_PID
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE < n_threads or _POOL_PID != os.getpid():
            from concurrent.futures import ThreadPoolExecutor

            if _POOL is not None and _POOL_PID == os.getpid():
                _POOL.shutdown(wait=False)
            _POOL = ThreadPoolExecutor(n_threads, thread_name_prefix="catune-solve")
            _POOL_SIZE, _POOL_PID = n_threads, os.getpid()
        return _POOL


# rows handed out a block at a time (_run_blocks): a block of rows left //
# (2 x threads) rows, or of ceil(_GRAB_SAMPLES / T) rows if that is more (a
# block costs a kernel call, ~10-20 us), never over the static share
_GRAB_SAMPLES = 1 << 16


def _run_blocks(kernel, n_rows: int, arrays_in: tuple, scalars: tuple, arrays_out: tuple,
                workspace=None, stop=None):
    """Call a serial row driver on contiguous row blocks on every thread.

    ``kernel(*block_inputs, *scalars..., *block_outputs[, *workspace])`` is
    a numba nogil function, so the threads run truly in parallel.
    ``workspace()`` returns (workspace arrays, release callback), one per
    thread that takes rows.  Returns the kernels' return values (one per
    call; callers read them with any()/all()).

    On one thread, one call on all rows.  On more, the rows are handed out
    in contiguous blocks while any are left (each thread, the caller
    included, takes the next block when it is done with its last): a thread
    slowed by another process or by page faults takes fewer rows.  A block
    is max(rows left // (2 x threads), ceil(``_GRAB_SAMPLES`` / T) capped at
    the static share ceil(rows / threads)) rows, or the rows left if fewer.
    An exception in a call, or ``stop(value)`` true for a call's value, stops
    the hand-out (the other threads finish their current block); once every
    thread is done, an exception is raised: the calling thread's own, else
    the first pool thread's in the order they were started.
    """
    n_threads = _n_threads(n_rows)
    if n_threads == 1:
        ws, release = workspace() if workspace is not None else ((), None)
        try:
            return [kernel(*arrays_in, *scalars, *arrays_out, *ws)]
        finally:
            if release is not None:
                release()
    T = arrays_in[0].shape[-1] if arrays_in and arrays_in[0].ndim == 2 else 1
    share = -(-n_rows // n_threads)
    least = min(share, max(1, -(-_GRAB_SAMPLES // max(T, 1))))
    split = 2 * n_threads
    lock = threading.Lock()
    state = [0, False]  # the next row to hand out; stop handing out

    def grab():
        with lock:
            lo = state[0]
            if state[1] or lo >= n_rows:
                return None
            hi = min(n_rows, lo + max(least, (n_rows - lo) // split))
            state[0] = hi
            return lo, hi

    def work():
        done = []
        release = None
        try:
            block = grab()
            if block is None:
                return done
            ws, release = workspace() if workspace is not None else ((), None)
            while block is not None:
                lo, hi = block
                r = kernel(*(a[lo:hi] for a in arrays_in), *scalars,
                           *(a[lo:hi] for a in arrays_out), *ws)
                done.append(r)
                if stop is not None and stop(r):
                    state[1] = True
                block = grab()
            return done
        except BaseException:
            state[1] = True
            raise
        finally:
            if release is not None:
                release()

    # the calling thread works too: one thread fewer to wake, and it starts
    # on the first block while the pool's threads wake
    futures = [_executor(n_threads - 1).submit(work) for _ in range(n_threads - 1)]
    err = None
    try:
        mine = work()
    except BaseException as e:  # (raised after the others are done)
        mine, err = [], e
    values = []
    for f in futures:
        try:
            values += f.result()
        except BaseException as e:
            err = err or e
    if err is not None:
        raise err
    return values + mine


# Workspaces of the exact solver, kept between calls: fresh memory costs a
# page fault per 4 kB (~1.5 ms of a 54,000-frame slider re-solve).  Kept for
# traces up to _WS_KEEP_FRAMES frames (~300 bytes per frame each), at most
# one per core.
_WS_KEEP_FRAMES = 1 << 17
# ... and longer ones (~270 bytes a frame: 270 MB at 1,000,000 frames, 1.1 GB
# at 4,000,000) for _WS_IDLE seconds after their last use (0: never), then
# dropped: a repeat on such a trace (a re-run, the next chunk of the command
# line, a benchmark's repeat) otherwise touches fresh pages again.  Their
# memory comes in 4 kB pages (anonymous mmap, without numpy's huge-page
# advice, _WS_SMALL_PAGES): a fresh huge page's first touch can stall (on
# this project's VM, memory freed ~2 s earlier has gone back to the host:
# docs/solver_history.md, twenty-ninth round).  Helper khz2, slow-1kHz, one trace of
# 4,000,000 frames, fresh process, 3 runs each (load ~4.6): system CPU
# 2.5-2.8 s -> 0.19 s, user 0.66-0.75 s either way.  Fresh 4 kB pages on
# every call instead cost 40-90 ms more per 1M-frame trace than kept ones.
_WS_IDLE = 30.0
_WS_SMALL_PAGES = True
_WS_POOL: list = []  # (f, b, expires: monotonic time, None for short traces)
_WS_LOCK = threading.Lock()
_WS_TIMER = None  # the one pending expiry (threading.Timer)


def _ws_expire(now: float | None = None) -> int:
    """Drop kept workspaces of more than _WS_KEEP_FRAMES frames whose idle
    time is up at ``now`` (default: the monotonic clock); returns how many."""
    now = time.monotonic() if now is None else now
    with _WS_LOCK:
        keep = [e for e in _WS_POOL if e[2] is None or e[2] > now]
        dropped = len(_WS_POOL) - len(keep)
        _WS_POOL[:] = keep
    return dropped


def _ws_arm(delay: float) -> None:
    # (under _WS_LOCK)
    global _WS_TIMER
    _WS_TIMER = threading.Timer(delay, _ws_tick)
    _WS_TIMER.daemon = True
    _WS_TIMER.start()


def _ws_tick() -> None:
    """The expiry timer: drop what is due, re-arm for the next expiry."""
    global _WS_TIMER
    _ws_expire()
    with _WS_LOCK:
        _WS_TIMER = None
        due = [e[2] for e in _WS_POOL if e[2] is not None]
        if due:
            _ws_arm(max(0.0, min(due) - time.monotonic()) + 0.05)


def _ws_forked() -> None:
    global _WS_TIMER
    _WS_TIMER = None  # (a forked child has no copy of the timer's thread)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ws_forked)


@lru_cache(maxsize=16)
def _workspace_sizes(T: int):
    from ._numba_solvers import workspace_sizes

    return workspace_sizes(T)


def _ws_array(size: int, dtype, T: int) -> np.ndarray:
    """An uninitialised workspace array; for a trace over _WS_KEEP_FRAMES
    frames in 4 kB pages (_WS_SMALL_PAGES)."""
    if not (_WS_SMALL_PAGES and T > _WS_KEEP_FRAMES) or size == 0:
        return np.empty(size, dtype=dtype)
    return np.frombuffer(mmap.mmap(-1, size * np.dtype(dtype).itemsize), dtype=dtype)


def _pdas_workspace(T: int):
    nf, nb = _workspace_sizes(T)
    with _WS_LOCK:
        for i, (f, b, _exp) in enumerate(_WS_POOL):
            if nf <= f.size <= 2 * nf and nb <= b.size:
                del _WS_POOL[i]
                break
        else:
            f = b = None
    if f is None:
        f, b = _ws_array(nf, np.float64, T), _ws_array(nb, np.bool_, T)

    def release():
        short = T <= _WS_KEEP_FRAMES
        if not (short or _WS_IDLE > 0):
            return
        expires = None if short else time.monotonic() + _WS_IDLE
        with _WS_LOCK:
            _WS_POOL.append((f, b, expires))
            if len(_WS_POOL) > 1:  # (at most one kept per core)
                del _WS_POOL[:-max(1, _n_threads(1 << 30))]
            if not short and _WS_TIMER is None:
                # one pending timer, not one started per call (a thread
                # start, ~0.1 ms): it re-arms itself while entries are kept
                _ws_arm(_WS_IDLE + 0.05)

    return (f, b), release


# the compiled solvers' module once imported (a function-level import costs
# ~1 us hot, 5-12 us right after a 54,000-frame solve: helper rdf)
_NS = None


def _numba_solvers():
    global _NS
    from . import _numba_solvers as ns

    _NS = ns
    return ns


def _code_set(code) -> bool:
    # (pdas_rows: a non-zero code, a non-finite input; no more rows)
    return code != 0


def _pdas_rows_finite(*args):
    """pdas_rows on a y whose every value is known finite (no scan of its own)."""
    return _NS.pdas_rows(*args, True)


def _pdas_rows_scan(*args):
    """pdas_rows checking y itself (y_finite passed, not omitted: the same
    compiled signature as :func:`_pdas_rows_finite`, no second compile)."""
    return _NS.pdas_rows(*args, False)


def _solve_rows(y, m: _Model, *, mode, mu, method, tol, max_iters, init, out=None,
                y_finite=False):
    """Solve every row of y (2-D float64) with baseline code ``mode`` (0 none,
    1 scalar, 2 drift); returns s, b ((n, 1), or (n, T) for drift),
    iterations, converged and the fit K s + b (None: not computed).
    ``out``: arrays (s, b, fit) to write them into (see run_deconvolution_full).

    The exact method checks that y and init are finite itself (ValueError
    as from :func:`prepare_traces`), y only unless ``y_finite`` (the caller
    has checked it: run_deconvolution_full's row ranges).

    While the compiled code is being compiled in the background
    (:func:`start_background_compile`), rows go to the NumPy solver
    (:mod:`napari_catune._numpy_solver`, the same optimum), a group at a
    time: a long job goes on with the compiled code once it is ready."""
    if init is not None and method != "fista" and m.near_degenerate:
        # see _NEAR_DEGENERATE: the exact method solves such a kernel cold
        # (compiled or NumPy, whatever the baseline model)
        _check_init_finite(init)
        init = None
    if _fallback_now():
        return _solve_rows_fallback(y, m, mode=mode, mu=mu, tol=tol, max_iters=max_iters,
                                    init=init, out=out)
    ns = _NS or _numba_solvers()

    n, T = y.shape
    if out is not None:
        s, b, fit = out
    else:
        s = np.empty_like(y)
        # (every row's baseline is written by the solver; FISTA zeroes it
        # below: a drift baseline's memset is ~0.01-0.02 ms per 54,000 frames)
        b = np.empty((n, T if mode == 2 else 1))
        fit = None
    iters = np.zeros(n, dtype=np.int64)
    conv = np.zeros(n, dtype=bool)
    if method == "fista":
        s0 = np.zeros_like(y) if init is None else init
        b[...] = 0.0
        _run_blocks(ns.fista_rows, n, (y, s0),
                    (m.g1, m.g2, m.alpha, m.lamG, m.G, m.lipschitz, mode, mu, tol, KKT_TOL,
                     0, max_iters),
                    (s, b, iters, conv))
        if fit is not None:
            fit[...] = _reconvolve(s, m) + b
        return s, b, iters, conv, fit
    if fit is None:
        fit = np.empty_like(y)
    if init is not None and n > 1 and _n_threads(n) > 1 and not _rows_finite(init):
        # (pdas_rows reads its own rows' init before it solves the first,
        # but with rows on several threads another block could be written
        # into ``out`` before the error: every row told first)
        _check_init_finite(init)
    codes = _run_blocks(_pdas_rows_finite if y_finite else _pdas_rows_scan, n,
                        (y, y if init is None else init),
                        (init is not None, m.g1, m.g2, m.alpha, m.lamG, m.G, mode, mu, KKT_TOL,
                         min(_PDAS_BUDGET, max_iters)),
                        (s, b, fit, iters, conv), lambda: _pdas_workspace(T), _code_set)
    if any(codes):
        prepare_traces(y)  # raises the message that names the rows
        _check_init_finite(init)
    if (conv[0] if n == 1 else conv.all()):
        return s, b, iters, conv, fit
    stuck = np.flatnonzero(~conv)
    left = max_iters - _PDAS_BUDGET
    if stuck.size and left > 0 and m.near_degenerate:
        # the active-set end of _polish from the clipped iterate first (it
        # settled bench_audit.py --seed 5 --hard nos. 361 and 666.0 in 1-5
        # rounds, where FISTA used 1,500 steps and stopped at a KKT
        # violation of 1e-3); the rows it leaves go on to FISTA
        from ._polish import _MAX_FREE_STUCK, polish_rows

        sub = (np.ascontiguousarray(y[stuck]), s[stuck], b[stuck], iters[stuck], conv[stuck],
               fit[stuck])
        polish_rows(*sub, m, mode, mu, max_iters, KKT_TOL, _MAX_FREE_STUCK)
        s[stuck], b[stuck], iters[stuck], conv[stuck], fit[stuck] = sub[1:]
        stuck = np.flatnonzero(~conv)
        left = max_iters - int(iters[stuck].max()) if stuck.size else 0
    if stuck.size and left > 0:
        # hand over to FISTA, from whichever feasible point is best: the
        # clipped active-set iterate, the warm start, or no activity at all
        ys = np.ascontiguousarray(y[stuck])
        starts = [s[stuck], np.zeros_like(ys)] + ([init[stuck]] if init is not None else [])
        scores = np.array([_objective_rows(ys, st, m, mode, mu) for st in starts])
        s0 = np.ascontiguousarray(np.choose(scores.argmin(axis=0)[:, None], starts))
        s_f = np.empty_like(ys)
        b_f = np.zeros((stuck.size, b.shape[1]))
        it_f = np.zeros(stuck.size, dtype=np.int64)
        cv_f = np.zeros(stuck.size, dtype=bool)
        # run until optimal (KKT checked every 20 iterations) or out of budget
        _run_blocks(ns.fista_rows, stuck.size, (ys, s0),
                    (m.g1, m.g2, m.alpha, m.lamG, m.G, m.lipschitz, mode, mu, 0.0, KKT_TOL,
                     20, left),
                    (s_f, b_f, it_f, cv_f))
        s[stuck], b[stuck], conv[stuck] = s_f, b_f, cv_f
        iters[stuck] += it_f
        fit[stuck] = _reconvolve(s_f, m) + b_f
    return s, b, iters, conv, fit


# rows of the NumPy solver per group (a group of about this many samples):
# between groups a long job switches to the compiled code once it is ready
_FALLBACK_GROUP_SAMPLES = 1 << 18


# NumPy-solver solves under way (any thread): the loops' thread of
# start_background_compile makes the interior point's passes ahead of the
# first fit only while none runs (a running one has them made when it needs
# them, and a small one's answer would only wait behind their ~0.1 s of CPU)
_fallback_running = [0]
_fallback_lock = threading.Lock()


def _fallback_forked() -> None:
    global _fallback_lock
    _fallback_lock = threading.Lock()  # (a fork's copy may be held by a thread it has not got)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fallback_forked)


def _solve_rows_fallback(*args, **kwargs):
    with _fallback_lock:
        _fallback_running[0] += 1
    try:
        return _solve_rows_numpy(*args, **kwargs)
    finally:
        with _fallback_lock:
            _fallback_running[0] -= 1


def _solve_rows_numpy(y, m: _Model, *, mode, mu, tol, max_iters, init, out):
    """:func:`_solve_rows` by the NumPy solver, row groups at a time, the
    rest by the compiled code as soon as it is ready (every method: the
    NumPy solver is exact; ``init`` is its warm start).  A row the NumPy
    solver cannot settle waits for the compiled code (rare: see below)."""
    from . import _numpy_solver as npsol

    n, T = y.shape
    if not np.isfinite(y).all():
        prepare_traces(y)  # raises the message that names the rows
    _check_init_finite(init)
    if out is not None:
        s, b, fit = out
    else:
        s, b, fit = np.empty_like(y), np.zeros((n, T if mode == 2 else 1)), np.empty_like(y)
    iters = np.zeros(n, dtype=np.int64)
    conv = np.zeros(n, dtype=bool)
    step = max(1, _FALLBACK_GROUP_SAMPLES // T)

    def put(rows, r):  # a _solve_rows answer (method "auto": with its fit)
        s[rows], b[rows], iters[rows], conv[rows], fit[rows] = r

    lo = 0
    while lo < n:
        if lo and not _fallback_now():
            rest = slice(lo, n)
            r = _solve_rows(np.ascontiguousarray(y[rest]), m, mode=mode, mu=mu,
                            method="auto", tol=tol, max_iters=max_iters,
                            init=None if init is None else np.ascontiguousarray(init[rest]))
            put(rest, r)
            break
        hi = min(n, lo + step)
        r = npsol.solve_rows(y[lo:hi], m.g1, m.g2, m.alpha, m.lamG, m.G, mode, mu, KKT_TOL,
                             min(max_iters, npsol.IPM_BUDGET),
                             None if init is None else init[lo:hi], _n_threads(hi - lo))
        s[lo:hi], b[lo:hi], fit[lo:hi], iters[lo:hi], conv[lo:hi] = r
        lo = hi
    stuck = np.flatnonzero(~conv)
    if stuck.size and max_iters >= npsol.IPM_BUDGET:
        # rows the NumPy solver could not settle (seen: slow kernels at 1 kHz
        # over tens of thousands of samples): the compiled solver's answer,
        # once it is ready, so that converged=False never comes from the
        # stand-in alone
        wait_compiled()
        r = _solve_rows(np.ascontiguousarray(y[stuck]), m, mode=mode, mu=mu, method="auto",
                        tol=tol, max_iters=max_iters, init=None)
        put(stuck, r)
    return s, b, iters, conv, fit


def _check_init_finite(init) -> None:
    if init is not None and not np.isfinite(init).all():
        raise ValueError("init contains NaN or Inf; pass init=None for a cold start")


def _objective_rows(y, s, m: _Model, mode: int, mu: float) -> np.ndarray:
    """Objective of each row at its best baseline for the given activity."""
    if _fallback_now():
        from . import _numpy_solver as npsol

        return npsol.objective_rows(np.ascontiguousarray(y, dtype=np.float64),
                                    np.ascontiguousarray(s, dtype=np.float64),
                                    m.g1, m.g2, m.alpha, m.lamG, mode, float(mu))
    from . import _numba_solvers as ns

    out = np.empty(len(y))
    ns.objective_rows(_f64c(y), _f64c(s), m.g1, m.g2, m.alpha, m.lamG, mode, float(mu), out)
    return out


def run_deconvolution_full(
    traces,
    fs: float,
    tau_r: float,
    tau_d: float,
    lam: float,
    max_iters: int = 2000,
    conv_mode: str = "fft",
    constraint: str = "nonneg",
    *,
    baseline: str | bool = "scalar",
    drift_scale: float | None = None,
    filter_enabled: bool = False,
    tol: float = 1e-6,
    method: str = "auto",
    init=None,
    out=None,
) -> DeconvolutionResult:
    """Deconvolve one trace ``(T,)`` or many ``(n_cells, T)``; full result.

    Parameters
    ----------
    traces : array (T,) or (n_cells, T), float32 or float64; NumPy or Dask
        (Dask gives a lazy result chunked over cells).  A row that ends in NaN
        padding (finite for its first L >= 2 samples, NaN from there to the
        end: recordings of different lengths in one array) is solved on
        ``row[:L]`` exactly as that trimmed row alone, its activity, fit and
        per-sample baseline NaN after L; any other NaN or Inf raises
        ValueError naming the rows (:mod:`napari_catune._padding`).
    fs, tau_r, tau_d, lam : sampling rate (Hz), rise and decay (s), sparsity.
    max_iters : bound on solver steps per trace (always honoured).
    conv_mode, constraint : ``calab`` 0.3's positional options, accepted
        with its meaning.  ``conv_mode`` "fft" or "banded" only chose how
        calab computes K s; ours is always the exact O(T) AR(2) recursion, so
        both give the same answer.  ``constraint`` must be "nonneg" (calab's
        "box01" is not supported: a clear ValueError says so).
    baseline : the baseline model (:mod:`napari_catune.baseline`):
        "scalar" (or True): one b per trace, fitted jointly (default).
        "none" (or False): b = 0.
        "rolling": CaTune's preprocessing, exactly as the CaTune web app and
        ``calab`` 0.3 compute it: subtract the rolling 0.2 quantile over a
        causal window of 5 * ceil(5 tau_d fs) samples
        (:func:`~napari_catune.baseline.rolling_baseline`), then fit with
        b = 0 (calab skips its baseline update after that subtraction).
        "drift": a per-sample b_t fitted jointly with the spikes, with
        ``(mu/2) sum_t (b_t - b_{t-1})^2`` added to the objective.
    drift_scale : "drift" only: the time scale in seconds below which the
        baseline cannot follow the trace; ``mu = (drift_scale * fs)^2``
        (sqrt(mu) samples is the smoother's length scale).  Default
        ``max(20 * tau_d, 10 s)``.
    filter_enabled : apply the CaTune bandpass (DESIGN.md) before solving;
        the fit is then of the filtered trace.
    tol : FISTA's stopping rule: relative objective change (FISTA also stops
        as soon as the KKT conditions hold to ``KKT_TOL``).
    method : "auto"/"pdas" (exact active sets, default) or "fista".
    init : a previous activity of the same shape: warm start.
    out : (activity, baseline, fit), float64 C-contiguous arrays of shapes
        (n, T), (n, T) for "drift" else (n, 1), and (n, T) for 2-D NumPy
        traces: the result is written into them (reused memory costs no page
        faults; the tuner's slider path).  Must not overlap ``init``.
    """
    if _is_dask(traces):
        from ._dask import deconvolve_dask

        if out is not None:
            raise ValueError("out is for NumPy traces only; pass out=None with Dask traces")
        return deconvolve_dask(
            traces, fs, tau_r, tau_d, lam, full=True, max_iters=max_iters,
            baseline=baseline, drift_scale=drift_scale, filter_enabled=filter_enabled,
            tol=tol, method=method, init=init,
        )
    _check_calab_options(conv_mode, constraint)
    m = _model_checked(fs, tau_r, tau_d, lam)
    _tell_if_compiling()
    mode = baseline_mode(baseline)
    mu = drift_mu(drift_scale, fs, tau_d) if mode == "drift" else 0.0
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    max_iters = int(max_iters)
    if max_iters < 1:
        raise ValueError(f"max_iters must be at least 1, got {max_iters}")
    # (a Python float, the usual case, tested in Python: the same test)
    if not ((0.0 < tol < math.inf) if type(tol) is float else (np.isfinite(tol) and tol > 0)):
        raise ValueError(f"tol must be a positive number, got {tol}")
    one_d = (traces.ndim if type(traces) is np.ndarray else np.ndim(traces)) == 1
    # the exact method checks finiteness in its compiled pass (no extra
    # GIL-releasing NumPy pass on the slider path)
    exact_only = method != "fista" and not filter_enabled and mode != "rolling"
    y = prepare_traces(traces, check_finite=False)
    if init is not None:
        if not (type(init) is np.ndarray and init.dtype == _F64 and init.flags.c_contiguous
                and init.flags.writeable and 1 <= init.ndim <= 2):
            init = _f64c(np.atleast_2d(np.asarray(init, dtype=np.float64)))
        elif init.ndim == 1:  # (what the line above returns for these, without its calls)
            init = init[np.newaxis, :]
        if init.shape != y.shape:
            raise ValueError(
                f"init must have the traces' shape {y.shape}, got {init.shape}"
            )

    def padded():
        # rows ending in NaN padding: each solved on its finite part, NaN
        # after (see _padding); any other NaN or Inf is refused by name
        return _run_padded(y, init, out, one_d, fs, tau_r, tau_d, lam, max_iters, mode,
                           dict(baseline=baseline, drift_scale=drift_scale,
                                filter_enabled=filter_enabled, tol=tol, method=method))

    if not exact_only and not _rows_finite(y):
        return padded()
    if filter_enabled:
        y = np.ascontiguousarray(bandpass_filter(y, tau_r, tau_d, fs))
    if init is not None and not exact_only:
        _check_init_finite(init)

    rolled = None
    if mode == "rolling":
        rolled = rolling_baseline(y, fs, tau_d)
        y = y - rolled
    if out is not None:
        out = tuple(out)
        shapes = (y.shape, (y.shape[0], y.shape[1] if mode == "drift" else 1), y.shape)
        if one_d or len(out) != 3 or not all(map(_out_ok, out, shapes)):
            raise ValueError(
                "out must be three writeable float64 C-contiguous arrays (activity, baseline, fit) "
                f"of shapes {shapes} for these traces; pass out=None to allocate them")
    lo, hi = _row_ranges(y)
    if y.shape[0] == 1:
        # one row (the slider path): the tests below in Python floats, the
        # same IEEE operations (~10-20 us less than NumPy's on 1-element
        # arrays); anything but a plain magnitude goes to the general tests
        lo0, hi0 = float(lo[0]), float(hi[0])
        if not max(abs(lo0), abs(hi0)) <= _MAX_ABS:
            _check_magnitude(lo, hi)
        y_finite = math.isfinite(lo0) and math.isfinite(hi0)
        if not y_finite:
            return padded()
        level = None
        if mode in ("scalar", "drift"):
            mid = 0.5 * lo0 + 0.5 * hi0
            if abs(mid) > _OFFSET_RATIO * (hi0 - lo0):
                level = _offsets(y, lo, hi)
    else:
        _check_magnitude(lo, hi)
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            # NaN or Inf: told (or, NaN padding, solved row by row) before
            # any row is solved (pdas_rows checks long rows one at a time,
            # and would write the rows before a bad one into ``out``)
            return padded()
        level = _offsets(y, lo, hi) if mode in ("scalar", "drift") else None
        y_finite = True
    if level is not None:
        y = y - level  # exact (see _offsets); a copy, never the caller's array
    s, b, iters, conv, fit = _solve_rows(
        y, m, mode=_MODE_CODES[mode], mu=mu, method=method, tol=float(tol),
        max_iters=max_iters, init=init, out=out, y_finite=y_finite,
    )
    if m.near_degenerate and method != "fista":
        # see _NEAR_DEGENERATE: the KKT test does not bound the objective
        # there; an active-set end at 1e-12 of the range (_polish)
        from ._polish import polish_rows

        polish_rows(y, s, b, iters, conv, fit, m, _MODE_CODES[mode], mu, max_iters, KKT_TOL)
    if fit is None:
        fit = _reconvolve(s, m) + b
    if level is not None:
        b += level
        fit += level
    if rolled is not None:
        b = rolled + b
        fit += rolled
    if b.shape[1] == 1:
        b = b[:, 0]
        if one_d:
            return DeconvolutionResult(s[0], float(b[0]), fit[0], int(iters[0]), bool(conv[0]))
    elif one_d:
        return DeconvolutionResult(s[0], b[0], fit[0], int(iters[0]), bool(conv[0]))
    return DeconvolutionResult(s, b, fit, iters, conv)


def _run_padded(y, init, out, one_d, fs, tau_r, tau_d, lam, max_iters, mode, kw):
    """:func:`run_deconvolution_full` of ``y`` (2-D float64, some rows not
    finite): rows ending in NaN padding are solved on their finite part
    (:func:`napari_catune._padding.solve_padded`), their outputs NaN after
    it; any other NaN or Inf raises ValueError naming the rows."""
    from . import _padding

    lengths = _padding.row_lengths(y)
    _padding.check_no_bad(y, lengths)
    if init is not None:
        _check_init_finite(np.where(np.isnan(y), 0.0, init))

    def solve(sub, sub_init):
        return tuple(run_deconvolution_full(sub, fs, tau_r, tau_d, lam, max_iters,
                                            init=sub_init, **kw))

    s, b, fit, iters, conv = _padding.solve_padded(
        y, lengths, solve, per_sample=mode in ("drift", "rolling"), init=init)
    if out is not None:
        shapes = (y.shape, (y.shape[0], y.shape[1] if mode == "drift" else 1), y.shape)
        if one_d or len(tuple(out)) != 3 or not all(map(_out_ok, out, shapes)):
            raise ValueError(
                "out must be three writeable float64 C-contiguous arrays (activity, baseline, fit) "
                f"of shapes {shapes} for these traces; pass out=None to allocate them")
        o_s, o_b, o_fit = out
        o_s[...] = s
        o_fit[...] = fit
        if mode == "rolling":
            o_b[...] = 0.0  # (the fitted offset: none after the rolling baseline)
        else:
            o_b[...] = b if b.ndim == 2 else b[:, None]
        s, fit = o_s, o_fit
        if mode != "rolling":
            b = o_b if mode == "drift" else o_b[:, 0]
    if one_d:
        b0 = b[0] if b.ndim == 2 else float(b[0])
        return DeconvolutionResult(s[0], b0, fit[0], int(iters[0]), bool(conv[0]))
    return DeconvolutionResult(s, b, fit, iters, conv)


def _out_ok(a, shape) -> bool:
    # one array of ``out=``: writeable float64 C-contiguous of this shape
    if not (isinstance(a, np.ndarray) and a.dtype == _F64 and a.shape == shape):
        return False
    flags = a.flags
    return flags.c_contiguous and flags.writeable


def _check_calab_options(conv_mode, constraint) -> None:
    if conv_mode not in ("fft", "banded"):
        raise ValueError(f"conv_mode must be 'fft' or 'banded' (as in calab), got {conv_mode!r}")
    if constraint != "nonneg":
        raise ValueError(
            f"constraint {constraint!r} is not supported: napari-catune solves the "
            "non-negative problem only (constraint='nonneg')"
        )


def run_deconvolution(
    traces, fs: float, tau_r: float, tau_d: float, lam: float, max_iters: int = 2000,
    conv_mode: str = "fft", constraint: str = "nonneg", **opts
) -> np.ndarray:
    """Deconvolve and return only the activity (see :func:`run_deconvolution_full`)."""
    _check_calab_options(conv_mode, constraint)
    if _is_dask(traces):
        from ._dask import deconvolve_dask

        return deconvolve_dask(
            traces, fs, tau_r, tau_d, lam, full=False, max_iters=max_iters, **opts
        )
    return run_deconvolution_full(traces, fs, tau_r, tau_d, lam, max_iters, **opts).activity


def _kkt_rows(y, s, b, m: _Model, mode: int, mu: float) -> np.ndarray:
    """(n, 2) KKT violations in trace units (see ``_numba_solvers.kkt_one``):
    column 0 for the spikes, column 1 for the baseline."""
    if _fallback_now():
        from . import _numpy_solver as npsol

        return npsol.kkt_rows(np.ascontiguousarray(y, dtype=np.float64),
                              np.ascontiguousarray(s, dtype=np.float64),
                              np.asarray(b, dtype=np.float64).reshape(len(y), -1),
                              m.g1, m.g2, m.alpha, m.lamG, m.G, mode, float(mu))
    from . import _numba_solvers as ns

    y = _f64c(y)
    b = _f64c(np.asarray(b, dtype=np.float64).reshape(len(y), -1))
    out = np.empty((len(y), 2))
    ns.kkt_rows(y, _f64c(s), b, m.g1, m.g2, m.alpha, m.lamG, m.G, mode, float(mu), out)
    return out


def kkt_violation(traces, activity, baseline, fs, tau_r, tau_d, lam, *,
                  mode="scalar", drift_scale=None) -> np.ndarray:
    """Relative violation of the optimality (KKT) conditions, per trace.

    For a result of ``run_deconvolution_full(..., baseline=mode)``: with
    r = y - K s - b and g = lam G - K' r, the conditions are g = 0 where
    s > 0, g >= 0 where s = 0, and the baseline's optimality for these
    spikes (b = mean(y - K s) for "scalar", the drift smoother of y - K s
    for "drift"; none for "none" and "rolling", whose baseline is given).
    Returned: the largest violation (the spike part divided by G, so both
    are in trace units) over the data scale ``max(y) - min(y) + 2.2e-6 *
    max|y|`` (the second term is the rounding floor of forming y - K s - b,
    1000 ulp of max|y| over KKT_TOL; it only matters for a large offset
    with a small signal).  Where the baseline is given ("none", "rolling")
    the fit is measured from it, so the range is that of y - b and
    includes 0.  A trace far from 0 relative to its range is checked as the
    solver solves it, about its middle (:func:`_offsets`).  The solver
    reports ``converged`` exactly when this is at most ``KKT_TOL`` (1e-7).
    """
    m = _model_checked(fs, tau_r, tau_d, lam)
    mode = baseline_mode(mode)
    code = _MODE_CODES[mode]
    mu = drift_mu(drift_scale, fs, tau_d) if mode == "drift" else 0.0
    y = prepare_traces(traces)
    s = np.atleast_2d(np.asarray(activity, dtype=np.float64))
    b = np.asarray(baseline, dtype=np.float64)
    if b.size in (1, y.shape[0]):
        b = np.broadcast_to(b.reshape(-1, 1), (y.shape[0], 1))
    b = b.reshape(y.shape[0], -1)
    if code == 0:
        z = y - b
    else:
        c = _offsets(y)
        y, b = (y, b) if c is None else (y - c, b - c)
        z = y
    v = _kkt_rows(y, s, b, m, code, mu).max(axis=1)
    rel = v / _data_scale(z, code)
    return float(rel[0]) if np.ndim(traces) == 1 else rel


def _data_scale(y: np.ndarray, mode: int) -> np.ndarray:
    """Per-row scale of the KKT tolerance (``_numba_solvers.kkt_tolerance``
    divided by KKT_TOL): the range (from 0 where the baseline is given,
    mode 0) plus the rounding floor (never 0)."""
    from ._numpy_solver import KKT_FLOOR  # (the same number, without importing numba)

    hi, lo = y.max(axis=1), y.min(axis=1)
    floor = (KKT_FLOOR / KKT_TOL) * np.maximum(np.abs(hi), np.abs(lo))
    if mode == 0:
        hi, lo = np.maximum(hi, 0.0), np.minimum(lo, 0.0)
    return np.maximum((hi - lo) + floor, np.finfo(float).tiny)


# a trace whose middle is this many times its range from 0 is solved about
# its middle (_offsets)
_OFFSET_RATIO = 64.0
# the largest |value| the solver takes (sums of squares of millions of
# samples stay far inside float64)
_MAX_ABS = 1e100


def _offsets(y: np.ndarray, lo=None, hi=None) -> np.ndarray | None:
    """Per-row level c (an (n, 1) array) to subtract before solving with a
    fitted baseline, or None if no row needs one.

    A trace sitting far from 0 relative to its range (a raw fluorescence
    level of 1e6 with a signal of a few units) loses digits in the
    baseline's sums, and the active sets then stop short of the optimum
    (seen: 8.8e-5 above it with converged=True) or run out of steps.  For
    rows whose middle is more than ``_OFFSET_RATIO`` times their range from
    0, c is that middle: every sample lies within a factor 2 of c, so y - c
    is exact (Sterbenz) and the problem solved is the same one, its
    baseline c lower.  Other rows get c = 0.  ``lo``, ``hi``: the rows'
    minima and maxima if known."""
    if lo is None:
        lo, hi = y.min(axis=1), y.max(axis=1)
    mid = 0.5 * lo + 0.5 * hi
    far = np.abs(mid) > _OFFSET_RATIO * (hi - lo)
    if not far.any():
        return None
    return np.where(far, mid, 0.0)[:, None]


def _row_ranges(y: np.ndarray):
    """The rows' minima and maxima, as y.min(axis=1), y.max(axis=1): with
    the compiled code in one pass (``_numba_solvers.row_ranges``) where
    every value is finite; else (or while the NumPy solver answers) NumPy's
    two reductions, whose NaN the checks after read."""
    if not _fallback_now():
        ns = _NS or _numba_solvers()
        lo, hi = np.empty(y.shape[0]), np.empty(y.shape[0])
        if y.size < _RANGES_BLOCKS:
            if ns.row_ranges(y, lo, hi):
                return lo, hi
        elif all(_run_blocks(ns.row_ranges, y.shape[0], (y,), (), (lo, hi))):
            # (many values: row blocks on the solver's threads)
            return lo, hi
    return y.min(axis=1), y.max(axis=1)


def _rows_finite(a: np.ndarray) -> bool:
    """Whether every value of the 2-D float64 C-contiguous ``a`` is finite
    (from its row ranges: NaN or Inf shows in a row's minimum or maximum)."""
    lo, hi = _row_ranges(a)
    return bool(np.isfinite(lo).all() and np.isfinite(hi).all())


# _row_ranges: from this many values on, row blocks on the solver's threads
_RANGES_BLOCKS = 1 << 21


def _check_magnitude(lo: np.ndarray, hi: np.ndarray) -> None:
    """ValueError naming the rows (of minima ``lo``, maxima ``hi``) whose
    finite values float64 cannot solve with (NaN and Inf are told apart
    by the finiteness check)."""
    with np.errstate(invalid="ignore"):
        top = np.maximum(np.abs(lo), np.abs(hi))
        big = (top > _MAX_ABS) & np.isfinite(top)
    if big.any():
        rows = np.flatnonzero(big)
        listed = ", ".join(f"row {r}" for r in rows[:10])
        more = f" and {rows.size - 10} more rows" if rows.size > 10 else ""
        raise ValueError(
            f"traces hold values beyond {_MAX_ABS:g} in magnitude in {rows.size} row(s): "
            f"{listed}{more}; the solver's sums would overflow float64: rescale the "
            "traces (e.g. divide them by their scale)")


def _reconvolve(s: np.ndarray, m: _Model) -> np.ndarray:
    """K s for every row (exact AR(2) recursion, compiled; no scipy.signal
    import, which alone costs ~1 s at the first slider move)."""
    if _fallback_now():
        from . import _numpy_solver as npsol

        return npsol.conv_rows(s, m.g1, m.g2, m.alpha)
    from . import _numba_solvers as ns

    s = _f64c(s)
    out = np.empty_like(s)
    ns.conv_rows(s, m.g1, m.g2, m.alpha, out)
    return out


def reconvolve(activity, fs: float, tau_r: float, tau_d: float) -> np.ndarray:
    """K s in trace units (no baseline), the activity's shape."""
    m = _model_checked(fs, tau_r, tau_d, 0.0)
    s = np.atleast_2d(np.asarray(activity, dtype=np.float64))
    out = _reconvolve(s, m)
    return out[0] if np.ndim(activity) == 1 else out


def objective(traces, activity, baseline, fs, tau_r, tau_d, lam, *, drift_scale=None):
    """The CaTune objective ``1/2||y - K s - b||^2 + lam G sum(s)`` per trace.

    ``baseline`` is a scalar, one value per trace ``(n,)``, or one per sample
    (the traces' shape: "rolling" and "drift" results).  ``baseline=None``
    uses the best baseline for the given activity: ``mean(y - K s)``, the
    fairest value for a solver that reports none, or with ``drift_scale``
    the best drift baseline.  ``drift_scale`` (seconds) adds the drift
    model's ``(mu/2) sum (b_t - b_{t-1})^2``, ``mu = (drift_scale fs)^2``.
    """
    m = _model_checked(fs, tau_r, tau_d, lam)
    mu = 0.0 if drift_scale is None else drift_mu(drift_scale, fs, tau_d)
    y = prepare_traces(traces)
    s = np.atleast_2d(np.asarray(activity, dtype=np.float64))
    if s.shape != y.shape:
        raise ValueError(f"activity shape {s.shape} differs from traces shape {y.shape}")
    if baseline is None:
        val = _objective_rows(y, s, m, 2 if mu > 0 else 1, mu)
    else:
        b = np.asarray(baseline, dtype=np.float64)
        if b.shape == y.shape or (np.ndim(traces) == 1 and b.shape == (y.shape[1],)):
            b = b.reshape(y.shape)
        elif b.ndim == 0 or b.shape == (y.shape[0],):
            b = np.broadcast_to(b.reshape(-1, 1), (y.shape[0], 1))
        else:
            raise ValueError(
                f"baseline must be a scalar, one value per trace {(y.shape[0],)} or one "
                f"per sample {y.shape if np.ndim(traces) == 2 else (y.shape[1],)}, "
                f"got shape {b.shape}"
            )
        val = 0.5 * ((y - _reconvolve(s, m) - b) ** 2).sum(axis=1) + m.lamG * s.sum(axis=1)
        if mu > 0:
            val = val + 0.5 * mu * (np.diff(b, axis=1) ** 2).sum(axis=1)
    return float(val[0]) if np.ndim(traces) == 1 else val


COMPILE_MESSAGE = ("compiling the solver for this machine: once after an install or upgrade, "
                   "about 10-40 s; later runs start within about a second")
_told_compile = False


def compiled_code_cached() -> bool | None:
    """Whether numba's on-disk cache holds the solver's machine code for this
    version (True), so a new process starts solving within about a second, or
    it will compile first (False); None if that cannot be told."""
    from ._compile import cache_index_absent

    if cache_index_absent():  # (told without importing numba)
        return False
    try:
        from ._numba_solvers import pdas_rows

        return bool(pdas_rows._cache._cache_file._load_index())
    except Exception:  # noqa: BLE001 - numba internals; only a hint for the user
        return None


def _tell_if_compiling() -> None:
    """Log once per process that the first solve compiles, or that the NumPy
    solver answers while a background compile runs (the CLI shows it)."""
    global _told_compile
    if not _told_compile:
        _told_compile = True
        if _compile_state not in (None, "ready"):
            logging.getLogger("napari_catune").info(FALLBACK_MESSAGE)
        elif compiled_code_cached() is False:
            logging.getLogger("napari_catune").info(COMPILE_MESSAGE)


FALLBACK_MESSAGE = ("compiling the solver in the background (once after an install or "
                    "upgrade); solving with the NumPy solver meanwhile")

# First use (nothing in numba's cache): the compiled code is compiled in a
# subprocess, which holds its own GIL (a compiling thread would hold this
# process's, and the first fit would wait for it); meanwhile solves go to the
# NumPy solver.  States: None (not started: compiled code, compiled on demand
# as before), "subprocess" (the child compiles), "loading" (the child has
# cached the live path; this process loads it on a thread), "thread" (no
# child could run: compiling on a thread, as before), "ready".
_compile_state = None
_compile_error = None
_compile_proc = None
_compile_thread = None
_compile_lock = threading.Lock()
_compile_done = threading.Event()
_local = threading.local()


def compiled_ready() -> bool:
    """Whether solves use the compiled code (False while
    :func:`start_background_compile`'s compile is under way: they use the
    NumPy solver then)."""
    return _compile_state in (None, "ready")


def compile_state() -> str | None:
    """None (no background compile started), "subprocess", "loading",
    "thread" or "ready"."""
    return _compile_state


def _fallback_now() -> bool:
    # the loading thread itself runs the compiled code (that is the load)
    return _compile_state not in (None, "ready") and not getattr(_local, "compiled", False)


def _set_state(state) -> None:
    global _compile_state
    _compile_state = state
    if state == "ready":
        _compile_done.set()
        npsol = sys.modules.get(__package__ + "._numpy_solver")
        if npsol is not None:
            npsol.release_caches()


def wait_compiled(timeout: float | None = None) -> bool:
    """Wait until a background compile is over (True), or ``timeout`` s."""
    # (the compiling thread always ends in "ready": _background_compile)
    return _compile_state is None or _compile_done.wait(timeout)



def start_background_compile(live_only: bool = True, *, force: bool = False,
                             passes: bool = True) -> str:
    """Make the compiled code ready without a wait a user feels.

    If numba's on-disk cache holds it (or that cannot be told), nothing is
    started (the first solve loads it in about a second, as before) and
    "cached" is returned.  Otherwise a subprocess
    (``python -m napari_catune._compile``, the same numba cache directory)
    compiles the live path, then the rest; meanwhile every solve, fit
    statistic, reconvolution, objective and KKT check of this process goes to
    the NumPy solver (:mod:`napari_catune._numpy_solver`).  Once the child has
    cached the live path, a thread here loads it and switches over
    (:func:`compiled_ready`).  If the child fails (no writable cache, no
    interpreter), the compile runs on a thread here as before, the NumPy
    solver still answering meanwhile.  Returns "cached", "started" or
    "running" (already started).  ``force`` starts even with a full cache
    (tests, benchmarks).  ``passes``: once the NumPy solver's LLVM loops
    are made, if no fit is under way then, its drift interior point's
    passes too (~0.1 s more of one core on that thread): a fit that starts
    after them runs on them from its first iteration, not on NumPy's passes
    (the same numbers).  A fit already under way has them made as it needs
    them, as before (one of under 2^17 samples only after its answer).  The
    tuner's fits are drift fits, started after it opens; a short CLI run's
    are answered before they would pay back (``passes=False``).
    """
    global _compile_thread
    with _compile_lock:
        if _compile_state is not None:
            return "running" if _compile_state != "ready" else "cached"
        if not force and (_compiled_here() or compiled_code_cached() is not False):
            return "cached"
        _compile_done.clear()
        th = threading.Thread(target=_background_compile, args=(live_only,),
                              name="catune-compile", daemon=True)
        _set_state("subprocess")
        try:
            th.start()
        except RuntimeError:  # no thread to be had: compiled on demand, as before
            _set_state(None)
            return "cached"
        _compile_thread = th
    # the NumPy solver's LLVM loops (~0.1 s to make) on a thread of their
    # own meanwhile: the caller goes on (reading its data) while they compile
    try:
        threading.Thread(target=_load_band_loops, args=(passes,), name="catune-llvm-load",
                         daemon=True).start()
    except RuntimeError:  # no thread: made by the first solve
        pass
    return "started"


def _load_band_loops(passes: bool = False) -> None:
    try:
        from . import _jit_band

        k = _jit_band.load()
        if passes and k is not None and not _fallback_running[0]:
            from . import _numpy_solver as npsol

            if npsol._FUSED and npsol._USE_JIT:
                # (made and checked on a thread of their own, as a solve
                # has them made: :func:`._numpy_solver.solve_rows`)
                k.start_ipm(then=npsol._check_fused_passes)
    except Exception:  # noqa: BLE001 - the first solve tells (LAPACK then)
        pass


def _compiled_here() -> bool:
    """Whether this process already holds the compiled live solver."""
    import sys

    ns = sys.modules.get(__package__ + "._numba_solvers")
    return ns is not None and bool(ns.pdas_rows.signatures)


def _child_command():
    import sys

    if getattr(sys, "frozen", False) or not sys.executable:
        # a frozen app's executable is not a Python that takes -m
        raise RuntimeError("no Python interpreter to run the compile in")
    return [sys.executable, "-m", "napari_catune._compile"]


def _background_compile(live_only: bool) -> None:
    global _compile_proc, _compile_error
    import subprocess
    import tempfile

    from . import _compile

    log = logging.getLogger("napari_catune")
    ok = False
    proc = None
    try:
        pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [pkg_root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        # the child outlives this process if need be (a short CLI run): the
        # cache it fills serves the next start
        # (stderr to a file: a pipe nobody reads could fill and stall the child)
        err = tempfile.TemporaryFile(mode="w+")
        try:
            proc = subprocess.Popen(
                _child_command(), env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=err, text=True,
                start_new_session=True)
        except BaseException:
            err.close()
            raise
        _compile_proc = proc
        busy = False
        for line in proc.stdout:
            if line.strip() == "live":
                ok = True
                break
            if line.strip() == _compile.BUSY:
                busy = True
        if busy:
            # another process's child compiles into the same cache: wait
            # for it (the NumPy solver answering meanwhile), then load
            proc.wait()
            proc.stdout.close()
            err.close()
            proc = None
            _compile.wait_unlocked()
            ok = True
        if not ok:
            proc.wait()
            proc.stdout.close()
            err.seek(0)
            _compile_error = (err.read() or f"exit status {proc.returncode}")[-2000:]
            err.close()
    except Exception as e:  # noqa: BLE001 - fall back to compiling here
        _compile_error = repr(e)
    if not ok:
        last = (_compile_error or "").strip().splitlines()
        log.info("the compile subprocess failed; compiling here instead (%s)",
                 last[-1] if last else "no message")
        _set_state("thread")
    else:
        _set_state("loading")
    _local.compiled = True
    try:
        _warm_up(live_only=True)
    except Exception as e:  # noqa: BLE001 - a real solve will report the problem
        _compile_error = repr(e)
    finally:
        _local.compiled = False
        _set_state("ready")
    if ok and proc is not None:
        # let the child finish the rest (its stdout is read to the end so it never blocks)
        try:
            for _line in proc.stdout:
                pass
            proc.stdout.close()
            proc.wait()
            err.close()
        except Exception:  # noqa: BLE001 - the child only fills a cache
            pass
    elif not live_only:
        _warm_up_quietly(False)


def warm_up(background: bool = False, live_only: bool = False):
    """Compile every solver kernel (or load it from numba's on-disk cache)
    on a tiny problem, so that the first real solve does not wait.

    Compiling takes seconds the first time after an install (numba then
    caches the machine code on disk, and later processes load it in well
    under a second).  ``background=True`` runs it on a daemon thread and
    returns the thread at once; a solve started meanwhile waits only for
    what is still compiling.  ``live_only`` does the tuner's live path only
    (the exact solver, its warm start and the read-outs), which is what the
    tuner starts when it opens: the rest (FISTA, the rolling baseline, the
    stand-alone KKT and objective) would only hold up its first fit.
    """
    if background:
        th = threading.Thread(target=_warm_up_quietly, args=(live_only,),
                              name="catune-warm-up", daemon=True)
        th.start()
        return th
    _warm_up(live_only)
    return None


def _warm_up_quietly(live_only):
    try:
        _warm_up(live_only)
    except Exception:  # noqa: BLE001 - a real solve will report the problem
        pass


# warm_up's solver: the function itself, not the module attribute it is
# looked up by (a wrapper or test double that replaces
# run_deconvolution_full, e.g. one counting calls, never sees warm-up calls
# from a background thread)
_RUN_FULL = run_deconvolution_full


def _warm_up(live_only=False):
    rng = np.random.default_rng(0)
    T = 400
    fs, tr, td, lam = 30.0, 0.05, 0.5, 0.05
    s = (rng.random((2, T)) < 0.05) * 1.0
    y = reconvolve(s, fs, tr, td) + 0.1 * rng.standard_normal((2, T)) + 1.0
    r = _RUN_FULL(y, fs, tr, td, lam, baseline="drift")
    _RUN_FULL(y, fs, tr, td * 1.1, lam, baseline="drift", init=r.activity)
    fit_stats(y, r.reconvolution, r.activity, fs, np.ones(2))
    if live_only:
        return
    for mode in ("scalar", "drift", "rolling", "none"):
        r = _RUN_FULL(y, fs, tr, td, lam, baseline=mode)
        _RUN_FULL(y, fs, tr, td * 1.1, lam, baseline=mode, init=r.activity)
        kkt_violation(y, r.activity, r.baseline, fs, tr, td, lam, mode=mode)
    _RUN_FULL(y, fs, tr, td, lam, method="fista", max_iters=5)
    objective(y, s, None, fs, tr, td, lam)
    objective(y, s, None, fs, tr, td, lam, drift_scale=10.0)


def fit_stats(traces, fit, activity, fs: float, noise=None, *, threaded: bool = True,
              dark=None):
    """(r2, events per minute) per row for the tuner's live read-outs, in one
    compiled call (no NumPy pass that would hand the GIL to a busy GUI
    thread): r2 of ``fit`` against ``traces`` (NaN for a constant trace) and
    the event rate of ``activity`` as ``session.event_rate`` defines it (the
    runs that start before the recording left out, as in ``detect_events``'
    table given the traces: frames 0-1 after any leading dark frames).
    ``threaded=False`` runs on the calling thread alone, never queued behind
    a solve that holds the solver's threads.  ``dark``: the rows' leading dark
    frames when known (``events.leading_dark_frames`` of ``traces``, which
    is what None computes)."""
    y = _f64c(np.atleast_2d(traces))
    f = _f64c(np.atleast_2d(fit))
    a = _f64c(np.atleast_2d(activity))
    n = y.shape[0]
    sig = np.zeros(n) if noise is None else np.nan_to_num(np.asarray(noise, dtype=np.float64))
    sig = np.ascontiguousarray(np.broadcast_to(sig, (n,)))
    if dark is None:
        from .events import leading_dark_frames

        dark = leading_dark_frames(y, fs)
    dark = np.broadcast_to(np.asarray(dark, np.int64), (n,))
    if np.isnan(f[:, -1]).any():
        # a row ending in NaN padding (its fit is NaN after its finite
        # part, one column tells it): each such row on its finite part
        from ._padding import BAD, row_lengths

        lengths = row_lengths(f)
        r2, ev = np.full(n, np.nan), np.full(n, np.nan)
        for i in range(n):
            L = int(lengths[i])
            if L != BAD:
                r, e = fit_stats(y[i, :L], f[i, :L], a[i, :L], fs, sig[i], threaded=threaded,
                                 dark=dark[i])
                r2[i], ev[i] = r[0], e[0]
        return r2, ev
    # the events table's count: a run starting before the recording (the
    # calcium present before it: frames 0-1 after any leading dark frames) is
    # no event (a copy when a row has one)
    from .events import without_initial_runs

    a = without_initial_runs(a, fs, dark=dark)
    if _fallback_now():  # the same numbers, in NumPy (session's definitions)
        from .session import _r2, event_rate

        return _r2(y, f), event_rate(a, float(fs), sig)
    from . import _numba_solvers as ns

    r2 = np.empty(n)
    ev = np.empty(n)
    if threaded:
        # on the solver's threads, as the solve (a serial pass over 8 x 54,000
        # frames is ~2.5 ms after the parallel solve)
        _run_blocks(ns.fit_stats_rows, n, (y, f, a, sig), (float(fs),), (r2, ev))
    else:
        ns.fit_stats_rows(y, f, a, sig, float(fs), r2, ev)
    return r2, ev
