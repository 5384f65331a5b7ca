"""The first fit after an install, as a user waits for it (issue 12: the first
slider move and the first CLI call within 1 s on a fresh install).

    .venv/bin/python bench/bench_first_call.py                        # this tree
    .venv/bin/python bench/bench_first_call.py --against /old/src     # before/after
    .venv/bin/python bench/bench_first_call.py --against /old/src --no-oasis \
        --one-thread --no-wait --repeat 3                             # a quick A/B

With ``--against`` each tree is first spawned once uncounted (the first spawn
of a run read slow), and the trees' order alternates from one repeat to the
next (the tree measured first in a pair read ~1.1x the other, whichever it
was): use an even ``--repeat`` for a balanced A/B.

Every measurement is a new process with an EMPTY numba cache directory (as
after ``pip install``), timed from the moment it is spawned (Python's start
and every import included) to the answer:

* slider, 1 ROI x 54,000 and 8 ROIs x 54,000 frames (GCaMP6f at 30 Hz, the
  tuner's default drift baseline): what the tuner does without its window:
  ``solver.start_background_compile()`` (before: ``solver.warm_up(
  background=True, live_only=True)``), the first fit with its read-outs
  (``fit_stats``), then the first slider move (tau_decay +5 %, warm start).
* slow1k: the slider case on 1 ROI x 20,000 frames of a slow kernel at
  1 kHz (tau 0.2/3.0 s, the ``slow-1kHz`` regime), where the NumPy solver
  used to leave the row unsettled and wait for the compiled code.
* CLI: ``napari-catune deconvolve`` of 20 x 3,000 frames to an .npz, in the
  same process (``cli.main``), to its return.
* OASIS (``oasis.functions.deconvolve`` per trace, AR(2) kernel given,
  L1 penalty) on the same inputs in a new process: a peer's first call
  (compiled ahead of time, nothing to compile).

Each process then waits for the background compile to end (this tree) so
that the next measurement has the machine to itself; "compiled" is when this
process switched to the compiled code.  Wall time and the process's CPU time
(the compile child's CPU is not in it; the CPU of this process's background
threads, which make the NumPy solver's loops, is).

Each tree's ``.py`` files are compiled to bytecode first, as ``pip install``
does (this machine sets PYTHONDONTWRITEBYTECODE, so without that every child
compiled ~8,000 lines of our source again, ~0.05 s of the main thread that no
installed copy pays); ``--from-source`` leaves them as they are.

``--one-thread`` (CATUNE_NUM_THREADS=1 in the children): the solve runs on
the main thread, and the main thread's own CPU time from its start to the
answer is printed too: the work a user waits for, without the background
threads' (steadier than wall time on a busy machine).  ``--no-wait``: the
compile child is stopped after the measurement instead of waited for
(minutes less; "compiled" is then not measured).
"""

from __future__ import annotations

import argparse
import compileall
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
_SRC = _HERE.parent / "src"
FS, TAU_R, TAU_D, LAM = 30.0, 0.05, 0.5, 0.05
# the slider cases: (regime, rows, frames, fs, tau_rise, tau_decay, lambda)
SLIDERS = {"slider1": ("GCaMP6f-30Hz", 1, 54_000, FS, TAU_R, TAU_D, LAM),
           "slider8": ("GCaMP6f-30Hz", 8, 54_000, FS, TAU_R, TAU_D, LAM),
           "slow1k": ("slow-1kHz", 1, 20_000, 1000.0, 0.2, 3.0, 0.05)}
CASES = tuple(SLIDERS) + ("cli",)

# each child waits for the background compile to end (the next measurement then
# has the machine to itself); "ready" is when it switched to the compiled code
_WAIT = r"""
ready = None
if "--no-wait" in sys.argv:
    import os, signal
    p = getattr(solver, "_compile_proc", None)
    if p is not None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
    print(json.dumps(out), flush=True)
    os._exit(0)
if hasattr(solver, "wait_compiled"):
    solver.wait_compiled(1800)
    ready = time.time()
    if solver._compile_proc is not None:
        solver._compile_proc.wait(1800)
"""

_SLIDER = r"""
import json, resource, sys, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
import numpy as np
from napari_catune import session, solver
fs, tr, td, lam = map(float, sys.argv[2:6])
start = getattr(solver, "start_background_compile", None)
if start is None or start() == "cached":
    solver.warm_up(background=True, live_only=True)   # what the tuner did before
y = np.load(sys.argv[1])
r = solver.run_deconvolution_full(y, fs, tr, td, lam, baseline="drift")
solver.fit_stats(y, r.reconvolution, r.activity, fs, np.zeros(len(y)), threaded=False)
first = (time.time(), cpu(), bool(np.all(r.converged)), time.thread_time())
r2 = solver.run_deconvolution_full(y, fs, tr, td * 1.05, lam, baseline="drift", init=r.activity)
solver.fit_stats(y, r2.reconvolution, r2.activity, fs, np.zeros(len(y)), threaded=False)
move = (time.time(), cpu(), bool(np.all(r2.converged)), time.thread_time())
out = {"first": first, "move": move, "ready": None}
""" + _WAIT + r"""
out["ready"] = ready
print(json.dumps(out))
"""

_CLI = r"""
import json, resource, sys, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
from napari_catune import cli
code = cli.main(["deconvolve", sys.argv[1], "--params", sys.argv[2], "-o", sys.argv[3], "-q"])
first = (time.time(), cpu(), code == 0, time.thread_time())
from napari_catune import solver
out = {"first": first, "ready": None}
""" + _WAIT + r"""
out["ready"] = ready
print(json.dumps(out))
"""

_OASIS = r"""
import json, resource, sys, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
import numpy as np
from oasis.functions import deconvolve
g1, g2 = float(sys.argv[2]), float(sys.argv[3])
y = np.load(sys.argv[1])
for row in y:
    deconvolve(row, g=(g1, g2), penalty=1)
print(json.dumps({"first": (time.time(), cpu(), True)}))
"""


_OPTS = {"one_thread": False, "no_wait": False}


def _spawn(code: str, args: list, src: Path | None, cache: str) -> tuple[float, dict]:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    if _OPTS["one_thread"]:
        env["CATUNE_NUM_THREADS"] = "1"
    if _OPTS["no_wait"]:
        args = [*args, "--no-wait"]
    if src is not None:
        env["PYTHONPATH"] = str(src)
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env,
                         capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return t0, json.loads(out.stdout.strip().splitlines()[-1])


def _ar2(fs, tr, td):
    d, r = math.exp(-1.0 / (td * fs)), math.exp(-1.0 / (tr * fs))
    return d + r, -d * r


def _data(folder: Path) -> dict:
    from napari_catune import simulation
    from napari_catune.params import TuningParams, save_params

    files = {}
    sizes = {k: (v[0], v[1], v[2]) for k, v in SLIDERS.items()}
    sizes["cli"] = ("GCaMP6f-30Hz", 20, 3_000)
    for name, (regime, n, T) in sizes.items():
        y = simulation.regime_traces(regime, n, T, seed=7)
        files[name] = folder / f"{name}.npy"
        np.save(files[name], y)
    files["params"] = folder / "params.json"
    save_params(TuningParams(TAU_R, TAU_D, FS, LAM), files["params"])
    return files


def _measure(tree: str, src: Path, files: dict, folder: Path, cases=CASES) -> dict:
    res = {}
    for case in cases:
        with tempfile.TemporaryDirectory(prefix="catune-numba-") as cache:
            if case == "cli":
                t0, r = _spawn(_CLI, [files["cli"], files["params"], folder / f"{tree}.npz"],
                               src, cache)
            else:
                t0, r = _spawn(_SLIDER, [files[case], *SLIDERS[case][3:]], src, cache)
        row = {"first": [r["first"][0] - t0, r["first"][1]], "ok": r["first"][2],
               "main": r["first"][3]}
        if "move" in r:
            row["move"] = [r["move"][0] - t0, r["move"][1]]
            row["main_move"] = r["move"][3]
        row["ready"] = None if r.get("ready") is None else r["ready"] - t0
        res[case] = row
        print(f"  {tree:8s} {case:8s} first answer {row['first'][0]:6.2f} s wall "
              f"{row['first'][1]:6.2f} s CPU"
              + (f" ({row['main']:.2f} s main thread)" if _OPTS["one_thread"] else "")
              + (f"; first slider move done at {row['move'][0]:6.2f} s" if "move" in row else "")
              + (f" ({row['main_move']:.2f} s main thread)"
                 if _OPTS["one_thread"] and "move" in row else "")
              + (f"; compiled code in use from {row['ready']:6.1f} s" if row["ready"] else "")
              + ("" if row["ok"] else "; NOT CONVERGED"),
              flush=True)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, default=_SRC, help="source tree to measure (src/)")
    ap.add_argument("--against", type=Path, help="another source tree (e.g. main's src/)")
    ap.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES),
                    help="measure only these cases (default: all)")
    ap.add_argument("--no-oasis", action="store_true",
                    help="skip OASIS (its slow1k case takes minutes)")
    ap.add_argument("--one-thread", action="store_true",
                    help="CATUNE_NUM_THREADS=1, and print the main thread's CPU time")
    ap.add_argument("--no-wait", action="store_true",
                    help="stop the compile child after the measurement (no 'compiled' time)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="measure each tree this many times, alternating (default 1)")
    ap.add_argument("--no-warmup", action="store_true",
                    help="with --against: no uncounted first spawn of each tree")
    ap.add_argument("--from-source", action="store_true",
                    help="do not compile the trees' .py files to bytecode first")
    a = ap.parse_args(argv)
    if not a.from_source:
        for src in (a.src, a.against):
            if src is not None and not compileall.compile_dir(str(src), quiet=1):
                raise SystemExit(f"could not compile {src} to bytecode")
    _OPTS.update(one_thread=a.one_thread, no_wait=a.no_wait)
    cases = tuple(a.cases)
    with tempfile.TemporaryDirectory(prefix="catune-first-") as tmp:
        folder = Path(tmp)
        files = _data(folder)
        print("seconds from process spawn (empty numba cache) to the answer")
        runs = {"this": [], "against": []}
        trees = [("this", a.src)] + ([("against", a.against)] if a.against else [])
        if a.against and not a.no_warmup:
            # one spawn of each tree first, not counted: the first measurement
            # of a run read slower than the rest (files, caches, the CPU's clock)
            print("  (warm-up, not counted)")
            for tree, src in trees:
                _measure(tree, src, files, folder, cases[:1])
        for i in range(max(1, a.repeat)):
            # the order alternates (this, against; against, this; ...): the
            # tree measured first in a pair read ~1.1x the other, whichever it was
            for tree, src in (trees if i % 2 == 0 else trees[::-1]):
                runs[tree].append(_measure(tree, src, files, folder, cases))
        # per tree and case, the median over the repeats (of each figure)
        results = {tree: {case: {k: np.median([r[case][k] for r in rs], axis=0).tolist()
                                 for k in rs[0][case] if k not in ("ok", "ready")}
                          for case in cases}
                   for tree, rs in runs.items() if rs}
        oasis = {}
        for case in cases if not a.no_oasis else ():
            g1, g2 = _ar2(*(SLIDERS[case][3:6] if case in SLIDERS else (FS, TAU_R, TAU_D)))
            with tempfile.TemporaryDirectory(prefix="catune-numba-") as cache:
                t0, r = _spawn(_OASIS, [files[case], g1, g2], None, cache)
            oasis[case] = [r["first"][0] - t0, r["first"][1]]
            print(f"  {'OASIS':8s} {case:8s} first answer {oasis[case][0]:6.2f} s wall "
                  f"{oasis[case][1]:6.2f} s CPU", flush=True)
    if a.repeat > 1:
        print(f"medians of {a.repeat}:")
        for tree, res in results.items():
            for case in cases:
                row = res[case]
                print(f"  {tree:8s} {case:8s} first answer {row['first'][0]:6.2f} s wall "
                      f"{row['first'][1]:6.2f} s CPU"
                      + (f" ({row['main']:.2f} s main thread)" if _OPTS["one_thread"] else "")
                      + (f"; move done at {row['move'][0]:6.2f} s" if "move" in row else "")
                      + (f" ({row['main_move']:.2f} s main thread)"
                         if _OPTS["one_thread"] and "move" in row else ""))
    print("ratios of the first answer, wall (CPU: steadier on a shared machine):")
    for case in cases:
        t, tc = results["this"][case]["first"]
        line = f"  {case:8s}"
        if case in oasis:
            line += (f" this / OASIS {t / oasis[case][0]:6.2f} "
                     f"({tc / oasis[case][1]:5.2f})")
        if a.against:
            o, oc = results["against"][case]["first"]
            line += (f"   this / against {t / o:6.3f} ({tc / oc:5.3f})  "
                     f"(against {o:.2f} s, this {t:.2f} s)")
            if _OPTS["one_thread"]:
                line += (f"; main thread {results['this'][case]['main']:.2f} / "
                         f"{results['against'][case]['main']:.2f} s")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
