"""The banded Cholesky factorisation and solve of the NumPy solver's Newton
systems, as machine code made in ~0.1 s by LLVM (``llvmlite``, which numba
brings) from IR generated here with ``llvmlite.ir``: no numba compile.

Every loop is generated on one row-and-sample skeleton (:func:`_loop_fn`):
the bands' factors and solves (:func:`_band_fns`; also the signed LDL' of
the drift's augmented, quasi-definite, Newton band of width 6), the AR(2)
recursions and FIR passes (D x, D' v, and the Newton band's calcium rows
written straight into the band) and the drift band in one pass
(:func:`_loops_module`; beside them the drift smoother's Riccati divisors,
a short IR text: :func:`_ir_riccati`),
and (made on a thread when asked, :meth:`Kernels.start_ipm`) the drift
interior point's element-wise passes and the exact polish's refinement
steps (:func:`_ipm_module`), with the drift band's factor and solve of two
rows at once (the pivot chain is latency-bound, so two rows' chains in one
loop take ~0.65 of the time of one after the other).

LAPACK's banded Cholesky (``dpbtrf``/``dpbtrs``) spends most of its time in
one BLAS call per column (~40 ns a column on the 4-wide drift band), where
the arithmetic is ~15 flops; this loop does the same arithmetic with the
band width a constant (2 or 4), ~4-8x faster.  The factor keeps LAPACK's
lower band storage (``ab[k, j]`` = L[j + k, j]) except that the diagonal
holds 1 / L[j, j], so that the solves multiply instead of dividing.

Layout: ``ab`` is (kd + 1, n + kd), Fortran order, its last kd columns zero
(padding: the loops run without bounds checks and touch them); right-hand
sides are (n + kd,) with the last kd entries zero.  The entries of the band
past the matrix's end (``ab[k, j]`` with j + k >= n) must be zero.

:func:`load` returns the kernels, or None when LLVM is not available or the
self-test fails (the caller then uses LAPACK).  Calls release the GIL
(ctypes).
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import logging
import os
import threading
import weakref

import numpy as np

WIDTHS = (2, 4)  # the Newton bands: AR(2) alone, and with the drift interleaved
# quasi-definite bands (LDL' with pivots of either sign): the drift's
# augmented Newton system (calcium, baseline and the drift's multiplier)
SIGNED = (6,)
_LOCK = threading.Lock()
_STATE: dict = {}  # "k": the kernels or None; "error": why None (repr)
_LOG = logging.getLogger(__name__)
# held while LLVM compiles (load()'s loops and the interior point's passes):
# llvmlite serialises its calls by a lock of its own, which a fork copies
# held if a thread is inside LLVM then, and the child's first LLVM call
# would wait on it forever.  A fork waits for a running compile (~0.1-0.2 s)
# instead (reentrant: a thread that forks while compiling does not wait on
# itself)
_COMPILE_LOCK = threading.RLock()
_FORK_WAIT = 60.0  # seconds a fork waits for a compile (then: no LLVM in the child)
_FORK: dict = {}
_ALL_KERNELS: "weakref.WeakSet" = weakref.WeakSet()


def _before_fork() -> None:
    _FORK["held"] = _COMPILE_LOCK.acquire(timeout=_FORK_WAIT)


def _after_fork_parent() -> None:
    if _FORK.pop("held", False):
        _COMPILE_LOCK.release()


def _after_fork_child() -> None:
    # fresh locks: the parent's may be held by threads the child has not got
    global _LOCK, _COMPILE_LOCK
    held = _FORK.pop("held", True)
    _LOCK = threading.Lock()
    _COMPILE_LOCK = threading.RLock()
    for k in list(_ALL_KERNELS):
        # (the two-row passes: made, or (the thread that was to make them is
        # not in this process) made again when asked, if LLVM may run here)
        k._x2_done = threading.Event()
        if getattr(k, "_passes_x2", None) or not held:
            k._x2_started = True
            k._x2_done.set()
        else:
            k._x2_started = False
    if not held:
        # a compile went on past the wait: LLVM's lock may be held here, so
        # no LLVM in this process (LAPACK's and NumPy's passes)
        if "k" not in _STATE:
            _STATE["k"] = None
            _STATE["error"] = "forked while LLVM compiled"
        for k in list(_ALL_KERNELS):
            # (fresh and set for made ones too: their check, if the parent
            # ran it on a thread, is this process's to run when asked)
            if k._ipm is None:
                k._ipm_started = True
            k._ipm_done = threading.Event()
            k._ipm_done.set()
        return
    for k in list(_ALL_KERNELS):
        k._ipm_done = threading.Event()
        if k._ipm is not None or k._ipm_error is not None:
            k._ipm_done.set()
        else:
            # not made (the thread that was to make them is not in this
            # process): made again when asked
            k._ipm_started = False


def _at_exit() -> None:
    # a daemon thread still inside LLVM while the interpreter finalises
    # (LLVM's own static state torn down) aborts the process or segfaults
    # after the program's work is done (a CLI call or script that exits
    # while the passes compile): wait for a running compile, and keep the
    # lock so that none starts
    _COMPILE_LOCK.acquire(timeout=_FORK_WAIT)


atexit.register(_at_exit)

if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_parent,
                        after_in_child=_after_fork_child)


def _band_fns(mod, kd, signed=False, chains=("",)):
    """The band's LDL' factor and solve for ``chains`` (one, or two
    independent bands of n columns each, ``"A"`` and ``"B"``: both pivot
    chains in one loop, each with its own factor's arithmetic), on
    :func:`_loop_fn`'s skeleton, on one row of n columns (the chains run
    from the band's start to its end): ``pbtrf<kd>`` or ``ldlt<kd>`` (n,
    ab) -> info and ``pbtrs<kd>`` (n, ab, b), suffixed ``x2`` for two
    chains ((n, abA, abB) -> info; (n, abA, bA, abB, bB))."""
    x2 = "x2" if len(chains) == 2 else ""
    _factor_fn(mod, kd, signed, chains, f"{'ldlt' if signed else 'pbtrf'}{kd}{x2}")
    _solve_fn(mod, kd, chains, f"pbtrs{kd}{x2}")


def _factor_col(c, ab, col, d, kd):
    """One column of the LDL' of the band ``ab`` at its pivot ``d``: 1 / d
    on the diagonal, l = a / d below it (a times that reciprocal), then the
    trailing update a[i, k] -= l_i a_k, the next pivot's entry (k = i = 1)
    first as a_1^2 (formed while the division runs) times 1 / d.  Returns
    the next pivot (carried in a register, not through memory)."""
    b = c.b
    pc = b.gep(ab, [b.mul(col, c.c64(kd + 1))])
    r = b.fdiv(c.cd(1.0), d)
    b.store(r, pc)
    a, l_ = {}, {}
    for k in range(1, kd + 1):
        p = b.gep(pc, [c.c64(k)])
        a[k] = b.load(p)
        l_[k] = b.fmul(a[k], r)
        b.store(l_[k], p)
    nxt = None
    for k, i in [(1, 1)] + [(k, i) for k in range(1, kd + 1) for i in range(k, kd + 1)
                            if (k, i) != (1, 1)]:
        q = b.gep(pc, [c.c64(k * kd + i)])
        mul = b.fmul(b.fmul(a[1], a[1]), r) if (k, i) == (1, 1) else b.fmul(l_[i], a[k])
        w = b.fsub(b.load(q), mul)
        b.store(w, q)
        nxt = w if nxt is None else nxt
    return nxt


def _factor_fn(mod, kd, signed, chains, name):
    """LDL' of the band, column by column (:func:`_factor_col`), on
    :func:`_loop_fn`: ``name(i64 n, double* ab<s>...) -> info``, the
    pivot carried from column to column in a register (a Cholesky's square
    root would add ~20 cycles a column; through memory, the store-to-load
    forwarding ~6 more: 1.2 -> 0.7 ms for the drift band of 54,000 frames).
    ``signed``: pivots of either sign (a quasi-definite matrix), only a zero
    (or NaN) one fails; else a non-positive one.  Returns 0, or at a
    failing pivot its column + 1 (the rest of that band left unfactored).
    Two chains: the pivot chain is latency, not throughput, so two take
    ~0.65 of the time of one after the other; both stop at either's failing
    pivot, reported as A's column + 1 if A's fails there, else n + B's
    column + 1 (:meth:`Kernels.factor` factors the other band on alone
    from there)."""
    ld = kd + 1

    def init(c):
        return {"d" + s: c.load(c.P["ab" + s], c.b.mul(c.rows["n"], c.c64(ld)))
                for s in chains}

    def body(c):
        b = c.b
        col = c.idx("n")
        oks = [b.fcmp_ordered("!=" if signed else ">", c.carry["d" + s], c.cd(0.0))
               for s in chains]
        fail, cont = b.append_basic_block("fail"), b.append_basic_block("cont")
        b.cbranch(oks[0] if len(oks) == 1 else b.and_(*oks), cont, fail)
        b.position_at_end(fail)
        jp = b.add(col, c.c64(1))
        b.ret(jp if len(oks) == 1 else b.select(oks[0], b.add(c.n, jp), jp))
        b.position_at_end(cont)
        return {"d" + s: _factor_col(c, c.P["ab" + s], col, c.carry["d" + s], kd)
                for s in chains}

    return _loop_fn(mod, name, tuple("ab" + s for s in chains), (), (), False,
                    tuple("d" + s for s in chains), {}, body, init=init, ret=True, rows=False)


def _solve_fn(mod, kd, chains, name):
    """L w = b (unit L), then x = D^-1 w - L' x from the end: the two passes
    of :func:`_loop_fn` on one row (``name(i64 n, double* ab<s>, double*
    b<s>, ...)``), the pending right-hand sides (forward) and the last kd
    unknowns (backward) carried in registers, not re-read from memory (the
    values themselves: a copy by + 0.0 would put an addition on the chain,
    ~3 cycles a column); two chains: two independent bands and vectors,
    each with its own solve's arithmetic."""
    K, ld = kd, kd + 1
    ptrs = tuple(p + s for s in chains for p in ("ab", "b"))

    def init(c):  # the forward pass carries q_i = b[j + i] updated so far
        return {f"q{i}{s}": c.load(c.P["b" + s], c.b.add(c.rows["n"], c.c64(i)))
                for s in chains for i in range(K)}

    def fwd(c):
        b, out = c.b, {}
        j = c.idx("n")
        for s in chains:
            pc, py = b.gep(c.P["ab" + s], [b.mul(j, c.c64(ld))]), b.gep(c.P["b" + s], [j])
            q = [c.carry[f"q{i}{s}"] for i in range(K)]
            b.store(q[0], py)
            fm = [None] + [b.fmul(b.load(b.gep(pc, [c.c64(k)])), q[0]) for k in range(1, K + 1)]
            for i in range(K - 1):
                out[f"q{i}{s}"] = b.fsub(q[i + 1], fm[i + 1])
            out[f"q{K - 1}{s}"] = b.fsub(b.load(b.gep(py, [c.c64(K)])), fm[K])
        return out

    def bwd(c):  # carries p_k = x[j + k], k = 1 .. K
        b, out = c.b, {}
        j = c.idx("n")
        for s in chains:
            pc, py = b.gep(c.P["ab" + s], [b.mul(j, c.c64(ld))]), b.gep(c.P["b" + s], [j])
            prev = b.fmul(b.load(py), b.load(pc))
            for k in range(K, 0, -1):  # the newest unknown (p_1) last: the short chain
                prev = b.fsub(prev, b.fmul(b.load(b.gep(pc, [c.c64(k)])),
                                           c.carry[f"p{k}{s}"]))
            b.store(prev, py)
            out[f"p1{s}"] = prev
            out.update({f"p{k}{s}": c.carry[f"p{k - 1}{s}"] for k in range(2, K + 1)})
        return out

    return _loop_fn(mod, name, ptrs, (), (), False,
                    tuple(f"q{i}{s}" for s in chains for i in range(K)), {}, fwd, init=init,
                    then=(True, tuple(f"p{k}{s}" for s in chains for k in range(1, K + 1)),
                          bwd), rows=False)


def _loops_module():
    """The bands' factors and solves, the AR(2) recursions, the FIR passes
    and the drift Newton band, on :func:`_loop_fn`'s row-and-sample
    skeleton, as LLVM IR text (compiled by :func:`_compile`)."""
    from llvmlite import ir

    mod = ir.Module(name="loops")
    for kd in WIDTHS + SIGNED:
        _band_fns(mod, kd, signed=kd in SIGNED)
    for backward in (False, True):
        _rec_fn(mod, backward)
        _fir_fn(mod, backward)
    _drift_band_fn(mod)
    return _ir_text(mod)


def _ir_text(mod) -> str:
    """A builder's module as IR text to parse (its header, a target triple
    of its own, left out)."""
    return "\n".join(ln for ln in str(mod).splitlines() if not ln.startswith(("target", ";")))


def _rec_fn(mod, backward):
    """x[r, k] += a1[k] x[r, k -/+ 1] + a2[k] x[r, k -/+ 2] for every row r of
    an (m, n) C-ordered x, forward (k up) or backward, the two previous
    values carried in registers (zero before each row's start):
    ``recf`` / ``recb``."""

    def body(c):
        b = c.b
        p = b.gep(c.P["x"], [c.idx("n")])
        xv = b.load(p)
        c1, c2 = c.load(c.P["a1"], c.k), c.load(c.P["a2"], c.k)
        v = b.fadd(b.fadd(xv, b.fmul(c2, c.carry["p2"])), b.fmul(c1, c.carry["p1"]))
        b.store(v, p)
        return {"p1": v, "p2": c.carry["p1"]}

    _loop_fn(mod, "recb" if backward else "recf", ("x", "a1", "a2"), (), (), backward,
             ("p1", "p2"), {}, body)


def _fir_fn(mod, backward):
    """out[r, k] = cst + c0 x[r, k] + c1 x[r, k -/+ 1] + c2 x[r, k -/+ 2] for
    every row r of an (m, n) C-ordered x (zero before the row's start, or
    past its end backward), written at ``out + r orow + k ostep``: the
    difference operator D (forward), its transpose (backward), and the
    Newton band's rows straight into the band (strided): ``firf`` / ``firb``."""

    def body(c):
        b, S = c.b, c.S
        xv = c.ld("x")
        v = c.fir(S["c0"], S["c1"], S["c2"], xv, c.carry["p1"], c.carry["p2"], S["cst"])
        io = b.add(b.mul(c.r, c.I["orow"]), b.mul(c.k, c.I["ostep"]))
        b.store(v, b.gep(c.P["out"], [io]))
        return {"p1": xv, "p2": c.carry["p1"]}

    _loop_fn(mod, "firb" if backward else "firf", ("x", "out"), ("c0", "c1", "c2", "cst"), (),
             backward, ("p1", "p2"), {}, body, ints=("orow", "ostep"))


def _drift_band_fn(mod):
    """The drift Newton band (width 4, b_0, x_0, b_1, x_1, ..., b_n per
    row; :class:`._numpy_solver._Newton`) written whole, column by column:
    one sequential pass instead of zeroing it and three strided passes.
    ``w``: (m, n) C-ordered, W (zero past each row's end); x_k's
    column: diagonal 1 + c0 w_k + c1 w_{k+1} + c2 w_{k+2}, then 1 (b_{k+1}),
    e1 w_{k+1} + e2 w_{k+2} (x_{k+1}), 0, f2 w_{k+2} (x_{k+2}) (the FIR
    passes' arithmetic); b_t's: bend (t = 0, n) or bmid, 0, -mu, 0, 0 (no
    -mu past the row's end): ``driftband``."""

    def column(c, at, vals):  # ab[at + i] = vals[i]
        for i, v in enumerate(vals):
            v = c.cd(v) if isinstance(v, float) else v
            c.b.store(v, c.b.gep(c.P["ab"], [c.b.add(at, c.c64(i))]))

    def body(c):
        b, S = c.b, c.S
        at = b.add(b.mul(c.rows["N"], c.c64(5)), b.mul(c.k, c.c64(10)))
        bd = b.select(b.icmp_signed("==", c.k, c.c64(0)), S["bend"], S["bmid"])
        w0, w1, w2 = c.ld("w"), c.ld_guard("w", 1), c.ld_guard("w", 2)
        dg = c.fir(S["c0"], S["c1"], S["c2"], w0, w1, w2, c.cd(1.0))
        l1 = b.fadd(b.fmul(S["e1"], w1), b.fmul(S["e2"], w2))
        column(c, at, (bd, 0.0, S["nmu"], 0.0, 0.0, dg, 1.0, l1, 0.0, b.fmul(S["f2"], w2)))
        return {}

    def end(c):
        b = c.b
        at = b.add(b.mul(c.rows["N"], c.c64(5)), b.mul(c.n, c.c64(10)))
        column(c, at, (c.S["bend"], 0.0, 0.0, 0.0, 0.0))

    _loop_fn(mod, "driftband", ("w", "ab"), ("c0", "c1", "c2", "e1", "e2", "f2", "bmid", "bend",
                                             "nmu"), (), False, (), {}, body, end,
             empty_rows=True)


# ------------------------------------------------- the interior point's passes
# One interior-point iteration of the drift problem (mode 2, the Newton band
# of width 4; :func:`._numpy_solver._solve_group`) costs ~60 NumPy passes
# over (m, n) arrays beside its two banded solves and one factorisation;
# these loops do that element-wise work in six passes, each element's
# arithmetic the NumPy expression's, in its order (the products whose means
# it takes are stored, and averaged by NumPy: the same rounding).  Rows are C
# ordered: (m, n) arrays (x, u, z, W, ...), (m, n + 1) baselines, and the
# stacked right-hand side / solution (row r at r (2 n + 1): b_0, x_0, b_1,
# ..., x_{n-1}, b_n).

def _loop_fn(mod, name, ptrs, dbls, rowd, backward, carries, reds, body, end=None, ints=(),
             empty_rows=False, init=None, ret=False, then=None, rows=True):
    """A function ``name(i64 m, i64 n, double* <ptrs>..., i64 <ints>...,
    double <dbls>...)`` looping over rows r and, within a row, k = 0 .. n-1
    (or back); with n = 0 nothing, unless ``empty_rows`` (then each row's
    ``end`` still runs; no ``reds`` then).  ``rowd``:
    pointer arguments whose entry [r] is a per-row scalar (loaded at the
    row's start).  ``carries``: names of values carried from one k to the
    next (0.0 at a row's start, or ``init(c)``'s {carry: value}, made at
    the row's start before c.k is set); ``reds``: {name: "sum" | "min" | "max"},
    each row's result stored at ``<name>[r]`` (a pointer argument).
    ``body(c)`` returns {carry: next value, red: this k's value}; ``end(c)``
    runs after the row (c.k is then unset).  ``ret``: the function returns
    an i64, 0 at its end (a body may return earlier on a branch of its own).
    ``then``: (backward, carries, body) of a second pass over the row's k
    after the first (its carries 0.0 at its start; not with ``empty_rows``).
    ``rows`` False: one row, no m argument (``name(i64 n, ...)``)."""
    from llvmlite import ir

    if empty_rows and (reds or then):
        raise ValueError("_loop_fn: empty_rows leaves reds without a value (and no then)")
    dbl, i64 = ir.DoubleType(), ir.IntType(64)
    a0 = 2 if rows else 1  # (the first pointer argument)
    args = [i64] * a0 + [dbl.as_pointer()] * len(ptrs) + [i64] * len(ints) + [dbl] * len(dbls)
    fn = ir.Function(mod, ir.FunctionType(i64 if ret else ir.VoidType(), args), name=name)
    for a in fn.args[a0:a0 + len(ptrs)]:
        a.add_attribute("noalias")
    m, n = (fn.args[0], fn.args[1]) if rows else (ir.Constant(i64, 1), fn.args[0])
    P = dict(zip(ptrs, fn.args[a0:a0 + len(ptrs)]))
    ni = a0 + len(ptrs) + len(ints)
    S = dict(zip(dbls, fn.args[ni:]))
    entry = fn.append_basic_block("entry")
    rowh = fn.append_basic_block("row")
    passes = [(backward, carries, reds, body)] + ([then[:2] + ({},) + then[2:]] if then else [])
    loops = [fn.append_basic_block("loop") for _ in passes]
    rowend = fn.append_basic_block("rowend")
    exitb = fn.append_basic_block("exit")
    b = ir.IRBuilder(entry)
    zero, one = ir.Constant(i64, 0), ir.Constant(i64, 1)
    go = b.icmp_signed(">", m, zero) if rows else None
    if not empty_rows:
        go = b.icmp_signed(">", n, zero) if go is None else b.and_(b.icmp_signed(">", n, zero), go)
    if go is None:
        b.branch(rowh)
    else:
        b.cbranch(go, rowh, exitb)
    b.position_at_end(rowh)
    if rows:
        r = b.phi(i64, "r")
        r.add_incoming(zero, entry)
    else:
        r = zero
    c = _Ctx(b, P, S, n)
    c.I = dict(zip(ints, fn.args[a0 + len(ptrs):ni]))
    c.r = r
    # each row's start in rows of length n, T = n + 1 or N = 2 n + 1, made
    # (in the row's block) only if a pass uses it: the fewer instructions,
    # the shorter LLVM's compile
    lens = {"n": lambda: n, "T": lambda: b.add(n, one),
            "N": lambda: b.add(b.mul(n, ir.Constant(i64, 2)), one)}
    c.rows = _Lazy(b, rowh, lambda row: b.mul(r, lens[row]()))
    c.rowd = {k: c.load(P[k], r) for k in rowd}
    start = init(c) if init is not None else {}
    k0s = [b.sub(n, one) if p_[0] else zero for p_ in passes]
    if empty_rows:
        b.cbranch(b.icmp_signed(">", n, zero), loops[0], rowend)
    else:
        b.branch(loops[0])
    prev, nxt = rowh, {}
    for i, (bwd, carries_, reds_, body_) in enumerate(passes):
        b.position_at_end(loops[i])
        nxt, prev = _k_loop(c, prev, k0s[i], bwd, carries_, reds_, body_,
                            start if i == 0 else {},
                            loops[i + 1] if i + 1 < len(passes) else rowend)
    for name_ in reds:
        b.store(nxt[name_], b.gep(P[name_], [r]))
    c.k = None
    if end is not None:
        end(c)
    if rows:
        r1 = b.add(r, one)
        r.add_incoming(r1, b.block)
        b.cbranch(b.icmp_signed("<", r1, m), rowh, exitb)
    else:
        b.branch(exitb)
    b.position_at_end(exitb)
    if ret:
        b.ret(zero)
    else:
        b.ret_void()
    return fn


def _k_loop(c, prev, k0, backward, carries, reds, body, start, after):
    """:func:`_loop_fn`'s loop over a row's k, in the builder's block (entered
    from ``prev`` with k = ``k0``), then on to ``after`` (the builder left
    there); returns the carries' and reds' last values and the block that
    leaves the loop."""
    from llvmlite import ir

    b, dbl, n = c.b, c.dbl, c.n
    zero, one = c.c64(0), c.c64(1)
    k = b.phi(c.i64, "k")
    k.add_incoming(k0, prev)
    init = {"sum": 0.0, "min": float("inf"), "max": float("-inf")}
    phis = {}
    for name_ in carries:
        phis[name_] = b.phi(dbl, name_)
        phis[name_].add_incoming(start.get(name_, ir.Constant(dbl, 0.0)), prev)
    for name_, kind in reds.items():
        phis[name_] = b.phi(dbl, "red_" + name_)
        phis[name_].add_incoming(ir.Constant(dbl, init[kind]), prev)
    c.k = k
    c.carry = {n_: phis[n_] for n_ in carries}
    out = body(c)
    nxt = {}
    for name_ in carries:
        nxt[name_] = out[name_]
    for name_, kind in reds.items():
        acc, v = phis[name_], out[name_]
        if kind == "sum":
            nxt[name_] = b.fadd(acc, v)
        else:
            # NaN-propagating, as NumPy's min and max: a NaN met stays
            # (v if v is NaN or beyond acc, unless acc is NaN already)
            beyond = b.fcmp_unordered("<" if kind == "min" else ">", v, acc)
            nxt[name_] = b.select(b.fcmp_unordered("uno", acc, acc), acc,
                                  b.select(beyond, v, acc))
    if backward:
        k1 = b.sub(k, one)
        more = b.icmp_signed(">=", k1, zero)
    else:
        k1 = b.add(k, one)
        more = b.icmp_signed("<", k1, n)
    here = b.block
    k.add_incoming(k1, here)
    for name_, v in nxt.items():
        phis[name_].add_incoming(v, here)
    b.cbranch(more, k.parent, after)  # (k's phi heads the loop)
    b.position_at_end(after)
    return nxt, here


class _Lazy(dict):
    """Values made on first use, by ``make(key)``, at the end of ``block``
    (before its branch: a block that dominates where they are used)."""

    def __init__(self, b, block, make):
        super().__init__()
        self.b, self.block, self.make = b, block, make

    def __missing__(self, key):
        here = self.b.block
        with self.b.goto_block(self.block):
            v = self[key] = self.make(key)
        self.b.position_at_end(here)
        return v


class _Ctx:
    """What a loop body sees: the builder, the arguments, the row and k,
    and loads / stores at (row, k + off) of rows of length n, T or N."""

    def __init__(self, b, P, S, n):
        from llvmlite import ir

        self.b, self.P, self.S, self.n = b, P, S, n
        self.ir = ir
        self.dbl, self.i64 = ir.DoubleType(), ir.IntType(64)

    def c64(self, v):
        return self.ir.Constant(self.i64, v)

    def cd(self, v):
        return self.ir.Constant(self.dbl, v)

    def load(self, p, idx):
        return self.b.load(self.b.gep(p, [idx]))

    def idx(self, row, mul=1, off=0, k=None):
        b = self.b
        k = self.k if k is None else k
        i = b.mul(k, self.c64(mul)) if mul != 1 else k
        if off:
            i = b.add(i, self.c64(off))
        return b.add(self.rows[row], i)

    def ld(self, name, row="n", mul=1, off=0):
        return self.load(self.P[name], self.idx(row, mul, off))

    def ld_guard(self, name, off):
        """name[r, k + off] of an (m, n) array, 0 outside the row."""
        b = self.b
        kk = b.add(self.k, self.c64(off))
        ok = b.and_(b.icmp_signed(">=", kk, self.c64(0)), b.icmp_signed("<", kk, self.n))
        safe = b.select(ok, kk, self.c64(0))
        v = self.load(self.P[name], b.add(self.rows["n"], safe))
        return b.select(ok, v, self.cd(0.0))

    def st(self, name, v, row="n", mul=1, off=0):
        self.b.store(v, self.b.gep(self.P[name], [self.idx(row, mul, off)]))

    def fmin(self, a, c):  # np.minimum(a, c), c not NaN: a if a <= c or a is NaN
        return self.b.select(self.b.fcmp_unordered("<=", a, c), a, c)

    def fabs(self, a):
        return self.b.select(self.b.fcmp_ordered("<", a, self.cd(0.0)), self.b.fneg(a), a)

    def fabs_bits(self, a):
        """np.abs(a): the sign bit cleared (-0.0 -> 0.0, as NumPy)."""
        b = self.b
        bits = b.and_(b.bitcast(a, self.i64), self.c64(0x7FFFFFFFFFFFFFFF))
        return b.bitcast(bits, self.dbl)

    def fmax(self, a, c):  # np.maximum(a, c), c not NaN: a if a >= c or a is NaN
        return self.b.select(self.b.fcmp_unordered(">=", a, c), a, c)

    def fir(self, c0, c1, c2, v0, v1, v2, cst=None):
        """The FIR loops' arithmetic: cst + (c0 v0 + (c1 v1 + c2 v2)), cst 0
        if not given."""
        b = self.b
        s1 = b.fadd(b.fmul(c1, v1), b.fmul(c2, v2))
        return b.fadd(self.cd(0.0) if cst is None else cst, b.fadd(b.fmul(c0, v0), s1))


def _ipm_module():
    """The drift interior point's element-wise passes (:func:`_ipm_drift`'s
    steps), as LLVM IR text."""
    from llvmlite import ir

    mod = ir.Module(name="ipm")
    C = ("c0", "c1", "c2")

    def pre(c):
        # rp = D x - u, r = y1 - x - b[1:], W = min(z / u, cap), q = W rp,
        # rx0 = r - cvec - D'q; rb_{k+1} = r_k - (mu L b)_{k+1}; sum u z
        b = c.b
        S = c.S
        x0 = c.ld("x")
        xm1, xm2 = c.ld_guard("x", -1), c.ld_guard("x", -2)
        u, z = c.ld("u"), c.ld("z")
        rp = b.fsub(c.fir(S["c0"], S["c1"], S["c2"], x0, xm1, xm2), u)
        W = c.fmin(b.fdiv(z, u), S["cap"])
        q = b.fmul(W, rp)
        dtq = c.fir(S["c0"], S["c1"], S["c2"], q, c.carry["q1"], c.carry["q2"])
        bk1 = c.ld("b", "T", off=1)
        r = b.fsub(b.fsub(c.ld("y1"), x0), bk1)
        rx0 = b.fsub(b.fsub(r, c.ld("cvec")), dtq)
        c.st("W", W)
        c.st("rp", rp)
        c.st("rx", rx0)
        c.st("rhs", rx0, "N", 2, 1)
        # (mu L b)_t = p_{t-1} - p_t, p_t = mu (b_{t+1} - b_t), p_{n} = 0
        bk = c.ld("b", "T")
        pm = b.fmul(S["mu"], b.fsub(bk1, bk))
        last = b.icmp_signed("==", c.k, b.sub(c.n, c.c64(1)))
        bk2 = c.load(c.P["b"], b.select(last, c.idx("T", off=1), c.idx("T", off=2)))
        pp = b.fmul(S["mu"], b.fsub(bk2, bk1))
        lap = b.select(last, pm, b.fsub(pm, pp))
        rb = b.fsub(r, lap)
        c.st("rb", rb, "T", off=1)
        c.st("rhs", rb, "N", 2, 2)
        c.st("uz", b.fmul(u, z))
        return {"q1": q, "q2": c.carry["q1"]}

    def pre_end(c):
        # rb_0 = (y0 - b_0) - (0 - p_0)   (T >= 2: n >= 1)
        b = c.b
        b0 = c.load(c.P["b"], c.rows["T"])
        b1 = c.load(c.P["b"], b.add(c.rows["T"], c.c64(1)))
        p0 = b.fmul(c.S["mu"], b.fsub(b1, b0))
        rb0 = b.fsub(b.fsub(c.load(c.P["y0"], c.r), b0), b.fsub(c.cd(0.0), p0))
        b.store(rb0, b.gep(c.P["rb"], [c.rows["T"]]))
        b.store(rb0, b.gep(c.P["rhs"], [c.rows["N"]]))

    _pass_fns(mod, "ipm_pre", ("x", "u", "z", "b", "y1", "y0", "cvec", "W", "rp", "rx", "rb",
                              "rhs", "uz"),
             C + ("cap", "mu"), (), True, ("q1", "q2"), {}, pre, pre_end)

    def steps(c):
        # du = D dx + rp; dz = -z - W du (predictor: corr 0) or tu - z - W du
        # (corrector, tu = tgt / u); the smallest du / u and dz / z
        b, S = c.b, c.S
        dx = c.ld("sol", "N", 2, 1)
        du = b.fadd(c.fir(S["c0"], S["c1"], S["c2"], dx, c.carry["d1"], c.carry["d2"]),
                    c.ld("rp"))
        z, u = c.ld("z"), c.ld("u")
        wdu = b.fmul(c.ld("W"), du)
        corr = b.fcmp_ordered("!=", S["corr"], c.cd(0.0))
        dz = b.fsub(b.select(corr, b.fsub(c.ld("tu"), z), b.fneg(z)), wdu)
        c.st("du", du)
        c.st("dz", dz)
        return {"d1": dx, "d2": c.carry["d1"], "mu_": b.fdiv(du, u), "mz": b.fdiv(dz, z)}

    _pass_fns(mod, "ipm_dir", ("sol", "rp", "z", "u", "W", "tu", "du", "dz", "mu_", "mz"),
             C + ("corr",), (), False, ("d1", "d2"), {"mu_": "min", "mz": "min"}, steps)

    def aff(c):
        # (u + a du) (z + a dz) (its mean by NumPy: the same rounding)
        b = c.b
        a = c.rowd["a"]
        v = b.fmul(b.fadd(c.ld("u"), b.fmul(a, c.ld("du"))),
                   b.fadd(c.ld("z"), b.fmul(a, c.ld("dz"))))
        c.st("s", v)
        return {}

    _pass_fns(mod, "ipm_aff", ("u", "du", "z", "dz", "a", "s"), (), ("a",), False, (), {}, aff)

    def corr(c):
        # tgt = sm - du dz; tu = tgt / u; rhs = rx + D'(tu), and the rb rows
        b, S = c.b, c.S
        tgt = b.fsub(c.rowd["sm"], b.fmul(c.ld("du"), c.ld("dz")))
        tu = b.fdiv(tgt, c.ld("u"))
        c.st("tu", tu)
        dt = c.fir(S["c0"], S["c1"], S["c2"], tu, c.carry["w1"], c.carry["w2"])
        c.st("rhs", b.fadd(c.ld("rx"), dt), "N", 2, 1)
        c.st("rhs", c.ld("rb", "T", off=1), "N", 2, 2)
        return {"w1": tu, "w2": c.carry["w1"]}

    def corr_end(c):
        c.b.store(c.load(c.P["rb"], c.rows["T"]), c.b.gep(c.P["rhs"], [c.rows["N"]]))

    _pass_fns(mod, "ipm_corr", ("du", "dz", "u", "rx", "rb", "tu", "rhs", "sm"), C, ("sm",),
             True, ("w1", "w2"), {}, corr, corr_end)

    def upd(c):
        # x += a dx; u = max(u + a du, tiny); z = max(z + ad dz, tiny);
        # b[1:] += a db[1:]; the new sum u z
        b, S = c.b, c.S
        a, ad = c.rowd["a"], c.rowd["ad"]
        x = b.fadd(c.ld("x"), b.fmul(a, c.ld("sol", "N", 2, 1)))
        u = c.fmax(b.fadd(c.ld("u"), b.fmul(a, c.ld("du"))), S["tiny"])
        z = c.fmax(b.fadd(c.ld("z"), b.fmul(ad, c.ld("dz"))), S["tiny"])
        bb = b.fadd(c.ld("b", "T", off=1), b.fmul(a, c.ld("sol", "N", 2, 2)))
        c.st("x", x)
        c.st("u", u)
        c.st("z", z)
        c.st("b", bb, "T", off=1)
        c.st("uz", b.fmul(u, z))
        return {}

    def upd_end(c):
        b = c.b
        p = b.gep(c.P["b"], [c.rows["T"]])
        db = c.load(c.P["sol"], c.rows["N"])
        b.store(b.fadd(b.load(p), b.fmul(c.rowd["a"], db)), p)

    _pass_fns(mod, "ipm_upd", ("x", "u", "z", "b", "sol", "du", "dz", "a", "ad", "uz"),
             ("tiny",), ("a", "ad"), False, (), {}, upd, upd_end)
    # the exact polish's iterative refinement (:func:`._numpy_solver._polish_spd`,
    # drift on the width-4 band): the residual into the right-hand side ...
    def res(c):
        # v = lam - P r2; w = D'v; hx = x + b[1:]; hb = b + mu L b (+ x on b[1:]);
        # rhs = rx - hx - w (x rows), rb - hb (b rows)
        b, S = c.b, c.S
        v = b.fsub(c.ld("lam"), b.fmul(S["P"], c.ld("r2")))
        w = c.fir(S["c0"], S["c1"], S["c2"], v, c.carry["v1"], c.carry["v2"])
        x = c.ld("x")
        bk1, bk = c.ld("b", "T", off=1), c.ld("b", "T")
        hx = b.fadd(x, bk1)
        pm = b.fmul(S["mu"], b.fsub(bk1, bk))
        last = b.icmp_signed("==", c.k, b.sub(c.n, c.c64(1)))
        bk2 = c.load(c.P["b"], b.select(last, c.idx("T", off=1), c.idx("T", off=2)))
        pp = b.fmul(S["mu"], b.fsub(bk2, bk1))
        lap = b.select(last, pm, b.fsub(pm, pp))
        hb = b.fadd(b.fadd(bk1, lap), x)
        c.st("rhs", b.fsub(b.fsub(c.ld("rx"), hx), w), "N", 2, 1)
        c.st("rhs", b.fsub(c.ld("rb", "T", off=1), hb), "N", 2, 2)
        return {"v1": v, "v2": c.carry["v1"]}

    def res_end(c):
        b = c.b
        b0 = c.load(c.P["b"], c.rows["T"])
        b1 = c.load(c.P["b"], b.add(c.rows["T"], c.c64(1)))
        p0 = b.fmul(c.S["mu"], b.fsub(b1, b0))
        hb0 = b.fadd(b0, b.fsub(c.cd(0.0), p0))
        rb0 = c.load(c.P["rb"], c.rows["T"])
        b.store(b.fsub(rb0, hb0), b.gep(c.P["rhs"], [c.rows["N"]]))

    _pass_fns(mod, "pol_res", ("x", "b", "lam", "r2", "rx", "rb", "rhs"), C + ("P", "mu"), (),
             True, ("v1", "v2"), {}, res, res_end)

    # ... and the step: x += dx, b += db, r2 = -(D x) A, lam -= P r2; max |dx|, max |x|
    def pupd(c):
        b, S = c.b, c.S
        dx = c.ld("sol", "N", 2, 1)
        x = b.fadd(c.ld("x"), dx)
        c.st("x", x)
        c.st("b", b.fadd(c.ld("b", "T", off=1), c.ld("sol", "N", 2, 2)), "T", off=1)
        dxx = c.fir(S["c0"], S["c1"], S["c2"], x, c.carry["x1"], c.carry["x2"])
        r2 = b.fmul(b.fneg(dxx), c.ld("A"))
        c.st("r2", r2)
        c.st("lam", b.fsub(c.ld("lam"), b.fmul(S["P"], r2)))
        return {"x1": x, "x2": c.carry["x1"], "mdx": c.fabs(dx), "mx": c.fabs(x)}

    def pupd_end(c):
        b = c.b
        p = b.gep(c.P["b"], [c.rows["T"]])
        b.store(b.fadd(b.load(p), c.load(c.P["sol"], c.rows["N"])), p)

    _pass_fns(mod, "pol_upd", ("x", "b", "sol", "A", "lam", "r2", "mdx", "mx"), C + ("P",), (),
             False, ("x1", "x2"), {"mdx": "max", "mx": "max"}, pupd, pupd_end)
    _kkt_passes(mod)
    for kd in PAIRED:
        _band_fns(mod, kd, chains=("A", "B"))
    return _ir_text(mod)


def _kkt_passes(mod, x2=False):
    """The KKT test of the drift problem (:func:`._numpy_solver._kkt_drift`:
    ``_check`` and the active-set corrections' gradient) in four passes
    over rows of length T (called with n = T): w = y - K s and the drift
    smoother's two substitutions on it (``chk_f1``, ``chk_b1``,
    ``chk_f2``: the baseline bc and d = w - bc), then g = lam - K' d and
    each row's max of (|g| where s > 0, else -g) (``chk_b2``).  Each
    element's arithmetic is NumPy's (the AR(2) recursion's
    (c0 v + c2 p2) + c1 p1, the substitutions' 0 * p2 term included)."""
    A = ("alpha", "g1", "g2")

    def f1(c):
        # K s: out[0] = 0, out[k] = the recursion on alpha s[:-1] up to k - 1
        b, S = c.b, c.S
        conv = c.carry["p1"]
        c.st("w", b.fsub(c.ld("y"), conv))
        rv = b.fadd(b.fadd(b.fmul(c.ld("s"), S["alpha"]), b.fmul(S["g2"], c.carry["p2"])),
                    b.fmul(S["g1"], conv))
        return {"p1": rv, "p2": conv}

    _pass_fns(mod, "chk_f1", ("y", "s", "w"), A, (), False, ("p1", "p2"), {}, f1, x2=x2)

    def b1(c):
        # Q = (-w + 0 Q_{k+2}) + a1b_k Q_{k+1} (a1b_k = c_{k+1}); q = -Q / den
        b = c.b
        Q = b.fadd(b.fadd(b.fneg(c.ld("w")), b.fmul(c.cd(0.0), c.carry["q2"])),
                   b.fmul(c.load(c.P["a1b"], c.k), c.carry["q1"]))
        c.st("q", b.fdiv(b.fneg(Q), c.load(c.P["den"], c.k)))
        return {"q1": Q, "q2": c.carry["q1"]}

    _pass_fns(mod, "chk_b1", ("w", "a1b", "den", "q"), (), (), True, ("q1", "q2"), {}, b1,
              x2=x2)

    def f2(c):
        # bc = (q + 0 bc_{k-2}) + a1f_k bc_{k-1} (a1f_k = mu / den_k); d = w - bc
        b = c.b
        v = b.fadd(b.fadd(c.ld("q"), b.fmul(c.cd(0.0), c.carry["b2"])),
                   b.fmul(c.load(c.P["a1f"], c.k), c.carry["b1"]))
        c.st("bc", v)
        c.st("d", b.fsub(c.ld("w"), v))
        return {"b1": v, "b2": c.carry["b1"]}

    _pass_fns(mod, "chk_f2", ("q", "a1f", "w", "bc", "d"), (), (), False, ("b1", "b2"), {}, f2,
              x2=x2)

    def b2(c):
        # K'd: 0 at the last sample, else the recursion on alpha d[1:] from
        # the end; g = lam - K'd; the row's max of where(s > 0, |g|, -g)
        b, S = c.b, c.S
        last = b.icmp_signed("==", c.k, b.sub(c.n, c.c64(1)))
        rv = b.fadd(b.fadd(b.fmul(c.ld_guard("d", 1), S["alpha"]),
                           b.fmul(S["g2"], c.carry["p2"])), b.fmul(S["g1"], c.carry["p1"]))
        adj = b.select(last, c.cd(0.0), rv)
        g = b.fsub(c.rowd["lam"], adj)
        c.st("g", g)
        pos = b.fcmp_ordered(">", c.ld("s"), c.cd(0.0))
        return {"p1": adj, "p2": c.carry["p1"],
                "vmax": b.select(pos, c.fabs_bits(g), b.fneg(g))}

    _pass_fns(mod, "chk_b2", ("d", "s", "lam", "g", "vmax"), A, ("lam",), True, ("p1", "p2"),
              {"vmax": "max"}, b2, x2=x2)


# the passes also made two rows at a time (``<name>x2``): a recurrence along
# the row (the AR(2) and smoother substitutions) is latency-bound, so two
# rows' chains in one loop take about the time of one.  Made on a thread of
# their own when first asked for (:meth:`Kernels.start_x2`: ~25 ms of LLVM
# that a first answer waiting for the passes does not wait for; the single
# passes until then).  (The interior point's and the polish's passes gain
# ~0-20 % so, against ~40 ms more of LLVM: not made)
PAIRED_PASSES = ("chk_f1", "chk_b1", "chk_f2", "chk_b2")
# ... asked for by a pass over this many samples or more (not by the passes'
# one-off check, nor by small problems, which gain little from them)
_X2_FROM = 1 << 15


def _pass_fns(mod, name, ptrs, dbls, rowd, backward, carries, reds, body, end=None,
              x2=False):
    """:func:`_loop_fn`'s pass ``name`` over m rows, or (``x2``, for the
    names in :data:`PAIRED_PASSES`) ``<name>x2``: the same body on two rows
    in one loop over k (``name(i64 n, <ptrs>A..., <ptrs>B..., double
    <dbls>...)``, each row's pointers at its own start; each row's
    arithmetic its own, in the same order: the same numbers)."""
    if not x2:
        _loop_fn(mod, name, ptrs, dbls, rowd, backward, carries, reds, body, end)
        return
    if name not in PAIRED_PASSES:
        return
    chains = ("A", "B")

    def view(c, s_):
        import copy

        v = copy.copy(c)  # (the row's view: its pointers, carries, per-row values)
        v.P = {p_: c.P[p_ + s_] for p_ in ptrs}
        v.carry = {k_: c.carry[k_ + s_] for k_ in carries} if c.k is not None else None
        v.rowd = {k_: c.rowd[k_ + s_] for k_ in rowd}
        return v

    def both(c):
        out = {}
        for s_ in chains:
            out.update({k_ + s_: val for k_, val in body(view(c, s_)).items()})
        return out

    def both_end(c):
        for s_ in chains:
            end(view(c, s_))

    _loop_fn(mod, name + "x2", tuple(p_ + s_ for s_ in chains for p_ in ptrs), dbls,
             tuple(k_ + s_ for s_ in chains for k_ in rowd), backward,
             tuple(k_ + s_ for s_ in chains for k_ in carries),
             {k_ + s_: kind for s_ in chains for k_, kind in reds.items()}, both,
             None if end is None else both_end, rows=False)


def _ir_riccati() -> str:
    """The drift smoother's Riccati divisors (:func:`._numpy_solver._smoother_gains`,
    the same arithmetic): P = 0; for t = T-1 .. 1: P += 1, den[t] = P + mu,
    P = mu P / den[t]; den[0] = P + 1."""
    return """
define void @riccati(i64 %T, double %mu, double* noalias %den) {
entry:
  %tl = sub i64 %T, 1
  %go = icmp sgt i64 %T, 1
  br i1 %go, label %loop, label %done
loop:
  %t = phi i64 [%tl, %entry], [%t1, %loop]
  %P = phi double [0.0, %entry], [%Pn, %loop]
  %P1 = fadd double %P, 1.0
  %d = fadd double %P1, %mu
  %pd = getelementptr double, double* %den, i64 %t
  store double %d, double* %pd
  %mp = fmul double %mu, %P1
  %Pn = fdiv double %mp, %d
  %t1 = sub i64 %t, 1
  %more = icmp sge i64 %t1, 1
  br i1 %more, label %loop, label %done
done:
  %Pf = phi double [0.0, %entry], [%Pn, %loop]
  %d0 = fadd double %Pf, 1.0
  store double %d0, double* %den
  ret void
}
"""


def _engine(text):
    """An LLVM module's text verified and compiled for the host's CPU (as
    numba compiles for: its scheduling model and FMA): (engine, target
    machine, module), all three to be kept alive while its functions run."""
    import llvmlite.binding as llvm

    mod = llvm.parse_assembly(text)
    mod.verify()
    tm = llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=2)
    ee = llvm.create_mcjit_compiler(mod, tm)
    ee.finalize_object()
    return ee, tm, mod


def _compile():
    import llvmlite.binding as llvm

    try:  # llvmlite < 0.45 wants this; later versions initialise themselves
        llvm.initialize()
    except Exception:  # noqa: BLE001
        pass
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    ee, tm, mod = _engine(_ir_riccati() + "\n" + _loops_module())
    k = {kd: _band_calls(ee, f"{'ldlt' if kd in SIGNED else 'pbtrf'}{kd}", f"pbtrs{kd}", 1)
         for kd in WIDTHS + SIGNED}
    rec = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                           ctypes.c_void_p, ctypes.c_void_p)
    k["rec"] = (rec(ee.get_function_address("recf")), rec(ee.get_function_address("recb")))
    d = ctypes.c_double
    fir = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                           ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, d, d, d, d)
    k["fir"] = (fir(ee.get_function_address("firf")), fir(ee.get_function_address("firb")))
    k["driftband"] = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                                      ctypes.c_void_p, *([d] * 9))(
        ee.get_function_address("driftband"))
    k["riccati"] = ctypes.CFUNCTYPE(None, ctypes.c_int64, d, ctypes.c_void_p)(
        ee.get_function_address("riccati"))
    return ee, tm, mod, k


def _compile_ipm():
    """The interior point's passes (:func:`_ipm_module`), an engine of their
    own: ~0.13 s of LLVM's code generation (level 0 would take ~0.02 s, but
    its code runs ~5x slower), so it is made on a thread
    (:meth:`Kernels.start_ipm`) while the first answers go on with NumPy's
    passes (the same numbers)."""
    # (and the drift band's factor and solve of two blocks at once,
    # :func:`_band_fns`: ~16 ms more of LLVM here, not on the way to a
    # first answer; they pay back only where a thread solves two rows)
    ee, tm, mod = _engine(_ipm_module())
    v, d = ctypes.c_void_p, ctypes.c_double
    k = {name: ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_int64, *([v] * np_),
                                *([d] * nd))(ee.get_function_address(name))
         for name, (np_, nd) in _IPM_SIGS.items()}
    k["pairs"] = {kd: _band_calls(ee, f"pbtrf{kd}x2", f"pbtrs{kd}x2", 2) for kd in PAIRED}
    return (ee, tm, mod), k


def _compile_passes_x2():
    """The two-row passes (:data:`PAIRED_PASSES`), an engine of their own."""
    from llvmlite import ir

    m_ = ir.Module(name="passes_x2")
    _kkt_passes(m_, x2=True)
    ee, tm, mod = _engine(_ir_text(m_))
    v, d = ctypes.c_void_p, ctypes.c_double
    k = {name: ctypes.CFUNCTYPE(None, ctypes.c_int64, *([v] * 2 * _IPM_SIGS[name][0]),
                                *([d] * _IPM_SIGS[name][1]))(ee.get_function_address(name + "x2"))
         for name in PAIRED_PASSES}
    return (ee, tm, mod), k


def _band_calls(ee, fac, sol, chains):
    """The factor ``fac`` and solve ``sol`` of :func:`_band_fns`:
    ``fac(n, ab...)`` -> info and ``sol(n, ab, b, ...)``."""
    i64, v = ctypes.c_int64, ctypes.c_void_p
    return (ctypes.CFUNCTYPE(i64, i64, *([v] * chains))(ee.get_function_address(fac)),
            ctypes.CFUNCTYPE(None, i64, *([v] * 2 * chains))(ee.get_function_address(sol)))


# the bands whose factor and solve also come two blocks at a time (made with
# the interior point's passes): the drift band (the tuner's baseline)
PAIRED = (4,)


# the interior point's passes: (pointer arguments, double arguments)
_IPM_SIGS = {"ipm_pre": (13, 5), "ipm_dir": (10, 4), "ipm_aff": (6, 0),
             "ipm_corr": (8, 3), "ipm_upd": (10, 1), "pol_res": (7, 5), "pol_upd": (8, 4),
             "chk_f1": (3, 3), "chk_b1": (4, 0), "chk_f2": (5, 0), "chk_b2": (5, 3)}
# ... and the rows' lengths of their arrays (each m rows long): n (an (m, n)
# array), T = n + 1, N = 2 n + 1 (the stacked solve's vector), 1 (per row),
# s (one row of n shared by all rows)
_IPM_SIZES = {"ipm_pre": "nnnTn1nnnnTNn", "ipm_dir": "Nnnnnnnn11", "ipm_aff": "nnnn1n",
              "ipm_corr": "nnnnTnN1", "ipm_upd": "nnnTNnn11n", "pol_res": "nTnnnTN",
              "pol_upd": "nTNnnn11", "chk_f1": "nnn", "chk_b1": "nssn", "chk_f2": "nsnnn",
              "chk_b2": "nn1n1"}


_F64 = np.dtype(np.float64)


@functools.lru_cache(maxsize=256)
def _ipm_needs(name, m, n):
    """The elements each array of the pass ``name`` reads or writes on m
    rows of length n (0 with m or n 0: nothing is touched)."""
    if not (m and n):
        return (0,) * len(_IPM_SIZES[name])
    per = {"n": n, "T": n + 1, "N": 2 * n + 1, "1": 1}
    return tuple(n if kind == "s" else m * per[kind] for kind in _IPM_SIZES[name])
# the data's address of each live array given to the loops: a.ctypes.data
# costs ~2 us (a ctypes helper object each time), ~10 of them a pass, ~1000
# passes a first answer; kept per array while it lives.  This assumes an
# array's data never move while it lives: no ndarray.resize (in place) of an
# array given to the loops, whose old address would then be handed out
_ADDR: dict = {}


def _addr(a) -> int:
    """``a.ctypes.data``, kept for ``a`` while it lives."""
    if not isinstance(a, np.ndarray):
        return a.ctypes.data  # (raises, as it did)
    return _entry(a)[1]


def _entry(a):
    """(a weak reference, ``a.ctypes.data``, its size, whether it is a
    C-ordered float64 ndarray), kept for ``a`` while it lives (none of
    these changes while it lives: see :data:`_ADDR`)."""
    key = id(a)
    e = _ADDR.get(key)
    if e is not None and e[0]() is a:
        return e
    if not isinstance(a, np.ndarray):
        return (None, 0, 0, False)  # (not kept; the passes refuse it)
    ok = a.dtype == np.float64 and a.flags.c_contiguous
    e = (None, a.ctypes.data, a.size if ok else 0, ok)
    try:
        e = (weakref.ref(a, lambda ref, key=key: _drop_addr(key, ref)),) + e[1:]
        _ADDR[key] = e
    except TypeError:  # (not weakly referenceable: not kept)
        pass
    return e


def _drop_addr(key, ref):
    e = _ADDR.get(key)
    if e is not None and e[0] is ref:
        _ADDR.pop(key, None)


class Kernels:
    """``factor(ab, n)`` -> info (0, or j + 1 at a non-positive pivot) and
    ``solve(ab, n, b)`` in place, for the widths in :data:`WIDTHS`; for the
    widths in :data:`SIGNED` the factor takes pivots of either sign (info:
    j + 1 at a zero one)."""

    def __init__(self, compiled):
        self._keep = compiled[:3]  # the engine owns the code: keep it alive
        self._k = compiled[3]
        # the interior point's passes, once made (:func:`_compile_ipm`)
        self._ipm = None
        self._ipm_keep = None
        self._ipm_done = threading.Event()
        self._ipm_started = False
        self._ipm_error = None  # why the passes could not be made (repr)
        self._ipm_then = None  # run on the thread once they are made
        # the two-block factor and solve ({kd: (factor, solve)}), made with
        # the passes and checked against the single loops (:func:`_self_test_pairs`)
        self._pairs = {}
        # the passes two rows at a time ({name: function}, :data:`PAIRED_PASSES`),
        # made with the passes and checked against them (:func:`_self_test_passes_x2`)
        self._passes_x2 = {}
        self._x2_keep = None
        self._x2_done = threading.Event()
        self._x2_started = False
        _ALL_KERNELS.add(self)

    def ipm_ready(self, timeout=0.0) -> bool:
        """Whether the interior point's passes are there (with ``timeout``:
        making them if not started (:meth:`start_ipm`) and waiting up to that
        many seconds for them)."""
        if timeout:
            self.start_ipm()
            self._ipm_done.wait(timeout)
        return self._ipm is not None

    def start_ipm(self, then=None) -> None:
        """Have the interior point's passes made on a thread (once; ~0.1 s
        of LLVM's code generation, which a first answer on a small problem
        does not wait for).  ``then``: a callable run on that thread once
        they are made (a check of them; if the thread has started already,
        not run)."""
        with _LOCK:
            if self._ipm_started:
                return
            self._ipm_started = True
            self._ipm_then = then
        th = threading.Thread(target=self._make_ipm, name="catune-llvm", daemon=True)
        try:
            th.start()
        except RuntimeError:  # no thread to be had: made here
            self._make_ipm()

    def _make_ipm(self):
        done = self._ipm_done
        try:
            with _COMPILE_LOCK:
                keep, k = _compile_ipm()
            pairs = k.pop("pairs")
            self._ipm_keep = keep
            self._ipm = k
            try:
                ok = _self_test_pairs(self, pairs)
            except Exception as e:  # noqa: BLE001 - the single loops then, as before
                ok = False
                _LOG.debug("the two-block band loops' self-test raised: %r", e)
            if ok:
                self._pairs = pairs
            else:
                _LOG.debug("the two-block band loops are off: their self-test failed")
        except Exception as e:  # noqa: BLE001 - no passes: NumPy's, as before
            self._ipm_error = repr(e)
            _LOG.debug("the interior point's compiled passes not made: %r", e)
        then, self._ipm_then = self._ipm_then, None
        try:
            if then is not None and self._ipm is not None:
                then()
        except Exception as e:  # noqa: BLE001 - the caller checks again on its own
            _LOG.debug("the check after making the passes failed: %r", e)
        finally:
            done.set()

    def start_x2(self) -> None:
        """Have the two-row passes made on a thread (once; ~25 ms of LLVM),
        asked for by the first pass on two rows or more once the passes are
        there: a first answer waiting for the passes does not wait for them
        too, and a process that never runs such a pass (one trace, the CLI's
        first call) does not make them (nor waits for them at its exit)."""
        with _LOCK:
            if self._x2_started or self._ipm is None:
                return
            self._x2_started = True
        try:
            threading.Thread(target=self._make_x2, name="catune-llvm-x2", daemon=True).start()
        except RuntimeError:  # no thread to be had: single passes
            self._x2_done.set()

    def _make_x2(self):
        done = self._x2_done
        try:
            with _COMPILE_LOCK:
                keep, passes_x2 = _compile_passes_x2()
            if _self_test_passes_x2(self, passes_x2):
                self._x2_keep = keep
                self._passes_x2 = passes_x2
            else:
                _LOG.debug("the two-row passes are off: their self-test failed")
        except Exception as e:  # noqa: BLE001 - one row at a time, as before
            _LOG.debug("the two-row passes not made: %r", e)
        finally:
            done.set()

    def passes_x2_ready(self, timeout=0.0) -> bool:
        """Whether the two-row passes are there (with ``timeout``: having
        them made if the passes are there and waiting up to that many
        seconds for them)."""
        if timeout:
            self.start_x2()
            if self._x2_started:
                self._x2_done.wait(timeout)
        return bool(self._passes_x2)

    def factor(self, ab, n, blocks=1):
        """``blocks``: the band is that many independent blocks of n / blocks
        columns each (stacked rows): two at a time by the two-block loop
        where it is made (the same numbers as block by block; an odd one
        last by the single loop).  A failing pivot is reported as the single
        loop over the stack reports it (its first one); a block's factor
        does not depend on its partner's failing (blocks after the failing
        one may be left unfactored)."""
        kd = ab.shape[0] - 1
        return self._factor(ab, n, blocks, self._pairs.get(kd) if blocks >= 2 else None)

    def _factor(self, ab, n, blocks, pair):
        """:meth:`factor` by the two-block loops ``pair`` (None: the single loop)."""
        kd = ab.shape[0] - 1
        assert ab.flags.f_contiguous and ab.dtype == np.float64 and ab.shape[1] >= n + kd
        p = _addr(ab)
        if pair is None:
            return int(self._k[kd][0](n, p))
        nb, half = self._halves(n, blocks)
        col = 8 * (kd + 1)  # (bytes a column)
        info = int(pair[0](half, p, p + col * half))
        if info:
            # both chains stopped at column j, where one failed: the other
            # factored on alone from there (its numbers are its own, not
            # its partner's), and the stack's first failing column reported
            j = (info - 1) % half
            if info <= half:  # (the first half's: the second's may fail at j too)
                self._k[kd][0](half - j, p + col * (half + j))
            else:
                more = int(self._k[kd][0](half - j, p + col * j))
                info = j + more if more else info
            return info
        if 2 * half < n:
            info = int(self._k[kd][0](nb, p + col * 2 * half))
            if info:
                info += 2 * half
        return info

    @staticmethod
    def _halves(n, blocks):
        nb = n // blocks
        if nb * blocks != n:
            raise ValueError(f"{n} columns are not {blocks} blocks of equal size")
        return nb, nb * (blocks // 2)

    def rec(self, x, a1, a2, backward=False):
        """x[r, k] += a1[k] x[r, k -/+ 1] + a2[k] x[r, k -/+ 2], in place, each
        row from its start (forward) or its end (backward)."""
        m, n = x.shape
        assert x.flags.c_contiguous and x.dtype == np.float64
        assert a1.shape == a2.shape == (n,) and a1.flags.c_contiguous and a2.flags.c_contiguous
        self._k["rec"][int(bool(backward))](m, n, _addr(x), _addr(a1), _addr(a2))

    def fir(self, x, c0, c1, c2, backward=False, cst=0.0, out=None, orow=None, ostep=1):
        """out[r, k] = cst + c0 x[r, k] + c1 x[r, k -/+ 1] + c2 x[r, k -/+ 2]
        (zero outside the row), into a new (m, n) array, or at ``out``'s
        memory + r orow + k ostep (elements; ``out`` a float64 array that
        holds every such place: the caller's promise)."""
        m, n = x.shape
        assert x.flags.c_contiguous and x.dtype == np.float64
        if out is None:
            out = np.empty((m, n))
            orow, ostep = n, 1
        else:
            assert out.dtype == np.float64 and (out.flags.c_contiguous or out.flags.f_contiguous)
            assert m == 0 or n == 0 or (m - 1) * orow + (n - 1) * ostep < out.size
        self._k["fir"][int(bool(backward))](m, n, _addr(x), _addr(out), orow, ostep,
                                            c0, c1, c2, cst)
        return out

    def drift_band(self, W, ia2, g1, g2, mu, out=None):
        """The drift Newton band of :class:`._numpy_solver._Newton` for W
        ((m, n)): (5, m (2 n + 1) + 4), Fortran order, every entry written
        (:func:`_drift_band_fn`); into ``out`` (that shape and order: a
        band kept from an earlier iteration) if given."""
        m, n = W.shape
        W = np.ascontiguousarray(W, dtype=np.float64)
        M = m * (2 * n + 1)
        if out is None:
            flat = np.empty((M + 4, 5)).T
        else:
            if not (isinstance(out, np.ndarray) and out.shape == (5, M + 4)
                    and out.flags.f_contiguous and out.dtype == np.float64):
                raise ValueError(f"drift_band: out must be a Fortran-ordered float64 array of "
                                 f"shape (5, {M + 4}) for W of shape {W.shape}")
            flat = out
        flat[:, M:] = 0.0
        self._k["driftband"](m, n, _addr(W), _addr(flat), ia2, g1 * g1 * ia2,
                             g2 * g2 * ia2, -g1 * ia2, g1 * g2 * ia2, -g2 * ia2,
                             1.0 + 2.0 * mu, 1.0 + mu, -mu)
        return flat

    def riccati(self, mu, T):
        """The drift smoother's divisors den (T,) (:func:`_ir_riccati`)."""
        den = np.empty(max(int(T), 1))
        self._k["riccati"](int(T), float(mu), den.ctypes.data)
        return den

    def ipm(self, name, m, n, arrays, scalars=()):
        """One of the interior point's passes (:func:`_ipm_module`) on rows
        of length n: ``arrays`` C-ordered float64, each as long as the pass
        reads and writes (checked: ValueError otherwise)."""
        if name not in _IPM_SIGS:
            raise ValueError(f"ipm: name {name!r} is not one of {sorted(_IPM_SIGS)}")
        if len(arrays) != _IPM_SIGS[name][0] or len(scalars) != _IPM_SIGS[name][1]:
            raise ValueError(f"ipm: {name} takes {_IPM_SIGS[name][0]} arrays and "
                             f"{_IPM_SIGS[name][1]} scalars, not {len(arrays)} and "
                             f"{len(scalars)}")
        m, n = int(m), int(n)
        if m < 0 or n < 0:
            raise ValueError(f"ipm: m and n must be >= 0 (got {m}, {n})")
        need = _ipm_needs(name, m, n)
        addrs = []
        for i, a in enumerate(arrays):
            e = _ADDR.get(id(a))
            if e is None or e[0]() is not a:
                e = _entry(a)
            if not e[3]:
                raise ValueError(f"ipm: {name}'s array {i} must be a C-ordered float64 array")
            if e[2] < need[i]:
                raise ValueError(f"ipm: {name}'s array {i} has {e[2]} elements, fewer than "
                                 f"the {need[i]} it reads or writes (m={m}, n={n})")
            addrs.append(e[1])
        pair = self._passes_x2.get(name) if m >= 2 else None
        if (pair is None and m >= 2 and m * n >= _X2_FROM and not self._x2_started
                and name in PAIRED_PASSES):
            self.start_x2()  # (for the next such pass: this one by the single loop)
        self._run_pass(name, m, n, addrs, tuple(map(float, scalars)), pair)

    def _run_pass(self, name, m, n, addrs, scalars, pair):
        """The pass on m rows at ``addrs``: by ``pair`` (its two-row loop)
        two rows at a time, an odd last row by the pass itself (None: the
        pass on all m rows)."""
        if pair is None:
            self._ipm[name](m, n, *addrs, *scalars)
            return
        # (each array's row in bytes: its rows' length, 0 for a shared one)
        per = {"n": n, "T": n + 1, "N": 2 * n + 1, "1": 1, "s": 0}
        step = [8 * per[kind] for kind in _IPM_SIZES[name]]
        for r in range(0, m - 1, 2):
            pair(n, *(a + q * r for a, q in zip(addrs, step)),
                 *(a + q * (r + 1) for a, q in zip(addrs, step)), *scalars)
        if m % 2:
            self._ipm[name](1, n, *(a + q * (m - 1) for a, q in zip(addrs, step)), *scalars)

    def solve(self, ab, n, b, blocks=1):
        """``blocks``: as :meth:`factor`'s (the band factored with the same)."""
        kd = ab.shape[0] - 1
        self._solve(ab, n, b, blocks, self._pairs.get(kd) if blocks >= 2 else None)

    def _solve(self, ab, n, b, blocks, pair):
        """:meth:`solve` by the two-block loops ``pair`` (None: the single loop)."""
        kd = ab.shape[0] - 1
        assert b.flags.c_contiguous and b.dtype == np.float64 and b.shape[0] >= n + kd
        pa, pb = _addr(ab), _addr(b)
        if pair is None:
            self._k[kd][1](n, pa, pb)
            return
        nb, half = self._halves(n, blocks)
        pair[1](half, pa, pb, pa + 8 * (kd + 1) * half, pb + 8 * half)
        if 2 * half < n:
            self._k[kd][1](nb, pa + 8 * (kd + 1) * 2 * half, pb + 8 * 2 * half)


class _Pseudo:
    """Deterministic spread values for the self-tests, the few of
    ``numpy.random.Generator``'s calls they use, without importing
    ``numpy.random`` (~10 ms of a first answer's main thread): a Weyl
    sequence (fractional parts of k times the golden ratio)."""

    def __init__(self, seed):
        self._k = 1 + 7919 * int(seed)

    def _u(self, size):
        if size is None:  # (a float, as Generator's)
            return float(self._u(1)[0])
        n = int(np.prod(size))
        k = np.arange(self._k, self._k + n, dtype=np.float64)
        self._k += n
        return np.modf(k * 0.6180339887498949)[0].reshape(size)

    def random(self, size=None):
        return self._u(size)

    def uniform(self, lo, hi, size=None):
        return lo + (hi - lo) * self._u(size)

    def exponential(self, scale, size=None):
        # (-log of a value in (0, 1]: 1 - u, u in [0, 1))
        return -scale * np.log1p(-self._u(size))

    def standard_normal(self, size):
        # (signed, spread about 0 over (-2.45, 2.45): a sum of two uniforms)
        return (self._u(size) + self._u(size) - 1.0) * 2.449489742783178


def _self_test_pairs(k: "Kernels", pairs) -> bool:
    """The two-block factor and solve against the single loops on 2 and 3
    stacked random SPD blocks (bit for bit), a non-positive pivot in the
    second block reported, and one in the first reported with the second
    block factored as alone (the single loops passed :func:`_self_test`)."""
    rng = _Pseudo(6)
    for kd in pairs:
        for blocks, nb in ((2, 17), (3, 11), (2, 1)):
            n = blocks * nb
            ab = np.zeros((kd + 1, n + kd), order="F")
            ab[0, :n] = 3.0 + kd + rng.uniform(0.0, 1.0, n)
            ab[1:, :n] = rng.uniform(-0.6, 0.6, (kd, n))
            for r in range(blocks):  # (no coupling from one block to the next)
                for q in range(1, kd + 1):
                    ab[q, max((r + 1) * nb - q, 0):(r + 1) * nb] = 0.0
            rhs = np.zeros(n + kd)
            rhs[:n] = rng.standard_normal(n)
            ref, got = ab.copy(order="F"), ab.copy(order="F")
            x_ref, x_got = rhs.copy(), rhs.copy()
            if k._factor(ref, n, 1, None) != 0:
                return False
            # (the pair given, not set on the kernels: other threads may be
            # factoring with them meanwhile)
            if k._factor(got, n, blocks, pairs[kd]) != 0:
                return False
            k._solve(got, n, x_got, blocks, pairs[kd])
            bad = ab.copy(order="F")
            bad[0, nb + nb // 2] = -1.0  # (in the second block)
            info = k._factor(bad, n, blocks, pairs[kd])
            first = ab.copy(order="F")
            first[0, nb // 2] = -1.0  # (in the first: the second factored on)
            info1 = k._factor(first, n, blocks, pairs[kd])
            k._solve(ref, n, x_ref, 1, None)
            if not (np.array_equal(ref, got) and np.array_equal(x_ref, x_got)
                    and info == nb + nb // 2 + 1 and info1 == nb // 2 + 1
                    and np.array_equal(first[:, nb:2 * nb], ref[:, nb:2 * nb])):
                return False
    return True


def _self_test_passes_x2(k: "Kernels", passes) -> bool:
    """The two-row passes against the passes on 3 rows (one pair, the odd
    row alone) of spread values, NaN and inf among them: every array the
    same bit for bit (NaN where NaN)."""
    rng = _Pseudo(7)
    m, n = 3, 13
    per = {"n": n, "T": n + 1, "N": 2 * n + 1, "1": 1}
    for name, pair in passes.items():
        na, nd = _IPM_SIGS[name]
        arrays = []
        for kind in _IPM_SIZES[name]:
            a = rng.uniform(0.5, 2.0, n if kind == "s" else m * per[kind])
            arrays.append(a)
        arrays[0][5] = np.nan
        arrays[0][n + 3] = np.inf
        scalars = tuple(float(v) for v in rng.uniform(0.2, 0.9, nd))
        ref = [a.copy() for a in arrays]
        got = [a.copy() for a in arrays]
        k._run_pass(name, m, n, [_addr(a) for a in ref], scalars, None)
        k._run_pass(name, m, n, [_addr(a) for a in got], scalars, pair)
        for a, b in zip(ref, got):
            if not (np.array_equal(a, b, equal_nan=True)
                    and np.array_equal(np.isnan(a), np.isnan(b))):
                return False
    return True


def _self_test_rec(k: "Kernels") -> bool:
    rng = _Pseudo(2)
    m, n = 3, 11
    a1, a2 = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
    v = rng.standard_normal((m, n))
    for backward in (False, True):
        ref = v.copy()
        ks = range(n - 1, -1, -1) if backward else range(n)
        d = -1 if backward else 1
        for r in range(m):
            for j in ks:
                for c, q in ((a1, 1), (a2, 2)):
                    if 0 <= j - d * q < n:
                        ref[r, j] += c[j] * ref[r, j - d * q]
        got = v.copy()
        k.rec(got, a1, a2, backward)
        if not np.allclose(got, ref, rtol=1e-13, atol=1e-13):
            return False
    return True


def _self_test(k: Kernels) -> bool:
    """The kernels against dense NumPy algebra on small random SPD bands of
    every width (and a non-positive pivot reported where it is)."""
    rng = _Pseudo(1)
    for kd in WIDTHS:
        n = 23
        ab = np.zeros((kd + 1, n + kd), order="F")
        ab[0, :n] = 3.0 + kd
        ab[1:, :n] = rng.uniform(-0.6, 0.6, (kd, n))
        for q in range(1, kd + 1):
            ab[q, n - q:] = 0.0
        A = np.diag(ab[0, :n])
        for q in range(1, kd + 1):
            A += np.diag(ab[q, :n - q], -q) + np.diag(ab[q, :n - q], q)
        C = np.linalg.cholesky(A)
        rhs = rng.standard_normal(n)
        x = np.linalg.solve(A, rhs)
        if k.factor(ab, n) != 0:
            return False
        # LDL': L = the Cholesky factor's columns over their diagonal, d its square
        for q in range(1, kd + 1):
            Lq = np.diag(C, -q) / np.diag(C)[:n - q]
            if not np.allclose(ab[q, :n - q], Lq, rtol=1e-12, atol=1e-14):
                return False
        if not np.allclose(1.0 / ab[0, :n], np.diag(C) ** 2, rtol=1e-12):
            return False
        b = np.zeros(n + kd)
        b[:n] = rhs
        k.solve(ab, n, b)
        if not np.allclose(b[:n], x, rtol=1e-10, atol=1e-12):
            return False
        bad = np.zeros((kd + 1, 4 + kd), order="F")
        bad[0, :4] = [1.0, 1.0, -1.0, 1.0]
        if k.factor(bad, 4) != 3:
            return False
    return _self_test_signed(k) and _self_test_rec(k) and _self_test_fir(k)


def _self_test_fir(k: "Kernels") -> bool:
    rng = _Pseudo(4)
    m, n = 3, 9
    x = rng.standard_normal((m, n))
    c = rng.standard_normal(4)
    for backward in (False, True):
        xp = np.zeros((m, n + 4))
        xp[:, 2:n + 2] = x
        if backward:
            ref = c[3] + c[0] * x + c[1] * xp[:, 3:n + 3] + c[2] * xp[:, 4:n + 4]
        else:
            ref = c[3] + c[0] * x + c[1] * xp[:, 1:n + 1] + c[2] * xp[:, 0:n]
        if not np.allclose(k.fir(x, *c[:3], backward=backward, cst=c[3]), ref, rtol=1e-14,
                           atol=1e-14):
            return False
        big = np.zeros((m * n * 3,))
        k.fir(x, *c[:3], backward=backward, cst=c[3], out=big, orow=3 * n, ostep=3)
        if not np.allclose(big.reshape(m, n, 3)[:, :, 0], ref, rtol=1e-14, atol=1e-14):
            return False
    return True


def _self_test_signed(k: "Kernels") -> bool:
    """The signed LDL' on a quasi-definite band ([H, B'; B, -C] permuted into
    the band) against a dense solve."""
    rng = _Pseudo(3)
    for kd in SIGNED:
        n = 29
        A = np.zeros((n, n))
        for q in range(1, kd + 1):
            A += np.diag(rng.uniform(-0.5, 0.5, n - q), -q)
        A = A + A.T
        sign = np.where(np.arange(n) % 3 == 1, -1.0, 1.0)
        A += np.diag(sign * (2.0 + kd + rng.uniform(0, 1, n)))
        ab = np.zeros((kd + 1, n + kd), order="F")
        for q in range(kd + 1):
            ab[q, :n - q] = np.diag(A, -q)
        rhs = rng.standard_normal(n)
        x = np.linalg.solve(A, rhs)
        if k.factor(ab, n) != 0:
            return False
        b = np.zeros(n + kd)
        b[:n] = rhs
        k.solve(ab, n, b)
        if not np.allclose(b[:n], x, rtol=1e-10, atol=1e-12):
            return False
        bad = np.zeros((kd + 1, 3 + kd), order="F")
        bad[0, :3] = [1.0, -1.0, 0.0]
        if k.factor(bad, 3) != 3:
            return False
    return True


def load():
    """The kernels (compiled once per process), or None: use LAPACK."""
    with _LOCK:
        if "k" not in _STATE:
            # (the self-test too: its first use of numpy.linalg imports it,
            # and a fork mid-import would leave the child that module's lock)
            with _COMPILE_LOCK:
                try:
                    k = Kernels(_compile())
                    _STATE["k"] = k if _self_test(k) else None
                    if _STATE["k"] is None:
                        _STATE["error"] = "the self-test failed"
                except Exception as e:  # noqa: BLE001 - no LLVM here: LAPACK
                    _STATE["k"] = None
                    _STATE["error"] = repr(e)
                if _STATE["k"] is None:
                    _LOG.debug("no LLVM loops (LAPACK instead): %s", _STATE["error"])
        return _STATE["k"]
