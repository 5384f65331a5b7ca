"""Cold compile time of the solver: what a fresh install waits for once (issue 12).

    .venv/bin/python bench/bench_compile.py                      # this tree
    .venv/bin/python bench/bench_compile.py --against /old/src   # before/after, back to back
    .venv/bin/python bench/bench_compile.py --profile            # per compiled function

Each measurement is a new process with an empty numba cache directory (so
numba compiles everything, as after ``pip install``): the import of
``napari_catune.solver``, ``solver.warm_up(live_only=True)`` (what the tuner's
first fit and a first ``napari-catune deconvolve`` need: the exact solver,
its warm start and the read-outs), then ``solver.warm_up()`` (the rest:
FISTA, the rolling baseline, the stand-alone KKT check and objective).
Wall and process CPU time; CPU time is the steadier figure on a shared
machine (compiling is single-threaded).  With ``--against`` the runs
alternate (``--repeats`` of each) and the ratio of the CPU-time minima is
printed.  Then, the same two calls again in a new process reading the cache
this compile wrote (what every later start costs).

``--profile`` prints, per compiled function, the time spent compiling it
(exclusive of the functions it calls, which numba compiles separately and
links in) and the number of signatures it was compiled for: a function
compiled twice, or one that is cheap alone but costly inclusive, is where
compile time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_SRC = _HERE.parent / "src"

_CHILD = r"""
import json, os, sys, time
from collections import Counter, defaultdict
profile = sys.argv[1] == "1"
excl = defaultdict(float); nsig = Counter(); stack = []
if profile:
    from numba.core import event as ev
    class L(ev.Listener):
        def on_start(self, e):
            stack.append([e.data["dispatcher"].py_func.__qualname__, time.process_time(), 0.0])
        def on_end(self, e):
            name, t0, child = stack.pop()
            dt = time.process_time() - t0
            excl[name] += dt - child
            nsig[name] += 1
            if stack:
                stack[-1][2] += dt
    ev.register("numba:compile", L())
def now():
    return time.perf_counter(), time.process_time()
t0 = now()
from napari_catune import solver
t1 = now(); solver.warm_up(live_only=True); t2 = now(); solver.warm_up(); t3 = now()
d = lambda a, b: [b[0] - a[0], b[1] - a[1]]
print(json.dumps({"import": d(t0, t1), "live": d(t1, t2), "rest": d(t2, t3),
                  "cached": solver.compiled_code_cached(),
                  "profile": sorted(([k, v, nsig[k]] for k, v in excl.items()),
                                    key=lambda r: -r[1])}))
"""


def _run(src: Path, cache: str, profile: bool = False) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(src))
    out = subprocess.run([sys.executable, "-c", _CHILD, "1" if profile else "0"], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _measure(src: Path, profile: bool = False) -> tuple[dict, dict]:
    with tempfile.TemporaryDirectory(prefix="catune-numba-") as cache:
        cold = _run(src, cache, profile)
        warm = _run(src, cache)
    return cold, warm


def _fmt(r: dict) -> str:
    return "  ".join(f"{k} {r[k][0]:6.2f} / {r[k][1]:6.2f}" for k in ("import", "live", "rest"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, default=_SRC, help="source tree to measure (src/)")
    ap.add_argument("--against", type=Path, help="another source tree, measured in turn")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--profile", action="store_true", help="per compiled function (one run)")
    a = ap.parse_args(argv)
    trees = [("this", a.src)] + ([("against", a.against)] if a.against else [])
    print("seconds, wall / CPU: import of the solver, warm_up(live_only=True), warm_up() rest")
    best = {}
    for rep in range(a.repeats):
        for name, src in (trees if rep % 2 == 0 else trees[::-1]):
            cold, warm = _measure(src, a.profile and rep == 0)
            print(f"{name:8s} cold   {_fmt(cold)}   (cache written: {cold['cached']})", flush=True)
            print(f"{name:8s} cached {_fmt(warm)}", flush=True)
            cpu = cold["live"][1] + cold["rest"][1]
            live = cold["live"][1]
            b = best.setdefault(name, [cpu, live])
            best[name] = [min(b[0], cpu), min(b[1], live)]
            if a.profile and rep == 0:
                print(f"  {'compiled function':32s} {'CPU s':>6s}  signatures")
                for fn, sec, n in cold["profile"]:
                    if sec >= 0.05:
                        print(f"  {fn:32s} {sec:6.2f}  {n}")
    if a.against:
        t, o = best["this"], best["against"]
        print(f"cold compile CPU, this / against: live {t[1]:.2f} / {o[1]:.2f} = "
              f"{t[1] / o[1]:.2f}; all {t[0]:.2f} / {o[0]:.2f} = {t[0] / o[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
