"""The interior point's cost per iteration and the cold exact solve: this tree
against a git ref (default ``main``), alternating in one process.

    PYTHONPATH=src .venv/bin/python bench/bench_ipm_iteration.py
    PYTHONPATH=src .venv/bin/python bench/bench_ipm_iteration.py --lengths 54000 --rounds 5

The ref's ``_numba_solvers.py`` and ``_numba_local.py`` are copied (``git
show``) into a temporary package and compiled beside this tree's.  Per regime
and length (``simulation.regime_traces``, scalar baseline): one
``_ipm_iteration`` (one Gondzio corrector, as ``pdas_one`` runs it) from the
state after 4 iterations of the default start, ns per sample; and one cold
``pdas_rows`` solve (1 row), seconds; both process CPU time, minimum of
``--rounds`` (ref and ours alternate each round).  Prints ours/ref ratios,
both step counts and the largest difference of the two solutions, and per
regime the exponent p of the cold solve's time ~ T^p over the lengths (each
tree's workspace is reused across rounds: the minimum excludes the first touch of
fresh pages, which bench_scaling.py prints as "first").
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_catune import _numba_solvers as ours
from napari_catune import solver as S
from napari_catune.simulation import EXTRA_REGIMES, REGIMES, regime_traces

ROOT = Path(__file__).resolve().parent.parent


def load_ref(ref):
    d = Path(tempfile.mkdtemp(prefix="catune_ref_"))
    pkg = d / "catune_ref_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for f in ("_numba_solvers.py", "_numba_local.py"):
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:src/napari_catune/{f}"],
                             check=True, capture_output=True, text=True).stdout
        (pkg / f).write_text(src)
    sys.path.insert(0, str(d))
    return importlib.import_module("catune_ref_pkg._numba_solvers")


def ipm_state(ns, y, m, iters=4):
    n = y.size - 1
    beta = m.lamG / m.alpha
    sc = y.std()
    nu0 = max(beta, sc, 5e-4 * sc / max(1.0 - m.g1 - m.g2, 1e-300))
    st = {"w": np.full(n, sc), "nu": np.full(n, nu0)}
    arrs = {k: np.empty(n) for k in ("winv", "D", "c", "g0", "v", "dw", "dnu", "dw2", "dnu2")}
    st.update(arrs)
    st["coef"] = np.empty((n + 1, ns._NCOEF))
    st["guess"] = np.ones(n, bool)
    st["zero"] = np.zeros(n + 1)
    gap = -1.0
    for _ in range(iters):
        gap = one_iteration(ns, y, m, st, gap)[4]
    return st, gap


def one_iteration(ns, y, m, st, gap):
    # (refs before 2026-12 take an unused D before c)
    old = "D" in ns._ipm_iteration.py_func.__code__.co_varnames[:12]
    Dc = (st["D"], st["c"]) if old else (st["c"],)
    return ns._ipm_iteration(y, m.g1, m.g2, m.lamG / m.alpha, np.int64(1), 0.0, st["w"],
                             st["nu"], st["winv"], gap, *Dc, st["coef"], st["g0"],
                             np.empty((1, 4)), np.empty(1), st["v"], st["dw"], st["dnu"],
                             st["dw2"], st["dnu2"], st["zero"], st["guess"], np.int64(1), 0.0)


def time_iteration(ns, y, m, st0, gap):
    st = {k: v.copy() for k, v in st0.items()}
    t0 = time.process_time()
    out = one_iteration(ns, y, m, st, gap)
    return time.process_time() - t0, out, st


_WS = {}


def cold(ns, y, m):
    T = y.size
    nf, nb = ns.workspace_sizes(T)
    # one workspace per tree and length, reused (fresh pages cost their first
    # touch, ~0.4 s a million frames here: the solver's cost is what is timed)
    if _WS.get(id(ns), (None,))[0] != (nf, nb):
        _WS[id(ns)] = ((nf, nb), np.empty(nf), np.zeros(nb, bool))
    _k, fws, bws = _WS[id(ns)]
    Y = y[None, :]
    s, b, fit = np.empty((1, T)), np.empty((1, 1)), np.empty((1, T))
    iters, conv = np.empty(1, np.int64), np.empty(1, bool)
    t0 = time.process_time()
    ns.pdas_rows(Y, Y, False, m.g1, m.g2, m.alpha, m.lamG, m.G, np.int64(1), 0.0, S.KKT_TOL,
                 np.int64(500), s, b, fit, iters, conv, fws, bws)
    return time.process_time() - t0, s[0].copy(), int(iters[0]), bool(conv[0])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="main")
    ap.add_argument("--regimes", nargs="*",
                    default=["GCaMP6s-100Hz", "calab-gcamp6s-30Hz", "slow-1kHz"])
    ap.add_argument("--lengths", nargs="*", type=int, default=[54_000, 200_000, 1_000_000])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-cold", action="store_true")
    args = ap.parse_args(argv)
    ref = load_ref(args.ref)
    mods = {"ref": ref, "ours": ours}
    m0 = S._model_checked(30.0, 0.1, 1.5, 0.05)
    for ns in mods.values():  # compile outside the timings
        cold(ns, regime_traces("GCaMP6s-100Hz", 1, 2000, seed=1)[0], m0)
    summary = []
    for name in args.regimes:
        fs, tr, td, lam, *_ = {**REGIMES, **EXTRA_REGIMES}[name]
        m = S._model_checked(fs, tr, td, lam)
        cold_t = {k: [] for k in mods}
        for T in args.lengths:
            y = regime_traces(name, 1, T, seed=5)[0]
            n = T - 1
            states = {k: ipm_state(ns, y, m) for k, ns in mods.items()}
            it_t = {k: np.inf for k in mods}
            co_t = {k: np.inf for k in mods}
            outs, sols = {}, {}
            for r in range(args.rounds):
                order = list(mods.items())[::1 if r % 2 else -1]
                for k, ns in order:
                    t, out, st = time_iteration(ns, y, m, *states[k])
                    it_t[k] = min(it_t[k], t)
                    outs[k] = (out, st["w"])
                if not args.no_cold:
                    for k, ns in order:
                        t, s, its, conv = cold(ns, y, m)
                        co_t[k] = min(co_t[k], t)
                        sols[k] = (s, its, conv)
            dw = np.max(np.abs(outs["ours"][1] - outs["ref"][1])) / np.max(np.abs(outs["ref"][1]))
            line = (f"{name:20s} T {T:>9,d}  iteration ns/sample ref {1e9 * it_t['ref'] / n:6.1f}"
                    f"  ours {1e9 * it_t['ours'] / n:6.1f}  ratio {it_t['ours'] / it_t['ref']:.3f}"
                    f"  (rel dw {dw:.0e})")
            if not args.no_cold:
                ds = np.max(np.abs(sols["ours"][0] - sols["ref"][0]))
                line += (f"\n{'':20s}   cold solve s ref {co_t['ref']:7.3f} ours {co_t['ours']:7.3f}"
                         f"  ratio {co_t['ours'] / co_t['ref']:.3f}  steps {sols['ref'][1]}/"
                         f"{sols['ours'][1]}  conv {sols['ref'][2]}/{sols['ours'][2]}"
                         f"  max|ds| {ds:.1e}")
            print(line, flush=True)
            for k in mods:
                cold_t[k].append(co_t[k])
        if not args.no_cold and len(args.lengths) >= 2:
            lt = np.log(np.asarray(args.lengths, float))
            p = {k: np.polyfit(lt, np.log(cold_t[k]), 1)[0] for k in mods}
            summary.append(f"  {name:20s} ref {p['ref']:.2f}  ours {p['ours']:.2f}")
    if summary:
        print(f"exponent of the cold solve's time in T ({args.lengths[0]:,d}..{args.lengths[-1]:,d},"
              " least squares on log-log)")
        print("\n".join(summary))


if __name__ == "__main__":
    main()
