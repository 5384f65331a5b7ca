"""Does the exact solver's time grow linearly with the recording's length?
(issue 12: exponent <= 1.1 from 10,000 to 4,000,000 frames on every regime,
with a step count that does not grow with T.)  Ours and OASIS, same run.

    .venv/bin/python bench/bench_scaling.py                       # every regime, 10k..4M
    .venv/bin/python bench/bench_scaling.py --regimes GCaMP6s-30Hz --lengths 10000 1000000

One trace per regime and length (``napari_catune.simulation.regime_traces``,
the grid of bench_regimes.py), solved by ``run_deconvolution_full`` (exact,
scalar baseline; one row runs on one thread) and by OASIS ``oasisAR2`` on the
trace minus our baseline (one core; the same problem, see bench_regimes.py).
Step budget ``--max-iters`` (500).  Process CPU time, minimum of ``--repeats``
at every length; the first of our calls at each length is printed too ("first"): it
pays the kernel's first touch of the workspace's fresh pages (~270 bytes a frame,
~145 touched on the 1 kHz path; 4 kB pages above 131,072 frames, solver._WS_SMALL_PAGES),
0.2-1 s of system time at 4M frames; the repeats reuse it (solver._pdas_workspace
keeps a longer trace's workspace for solver._WS_IDLE seconds after its last use), so
the minimum is the solver's own cost.
Printed per length: our CPU time, steps, KKT-optimal, OASIS's CPU time and the
ratio; per regime, the exponent p of time ~ T^p fitted on log-log from the
shortest to the longest length (least squares), ours and OASIS's.
Timings on a shared machine are noisy: read the exponents and the ratios.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _one_blas  # noqa: F401  (one BLAS thread: per-core timing; before NumPy)
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_regimes import REGIMES, oasis, timed  # noqa: E402

import napari_catune as nc  # noqa: E402

from napari_catune import solver as S  # noqa: E402
from napari_catune.simulation import regime_traces  # noqa: E402


def run(name, lengths, repeats, max_iters):
    fs, tr, td, lam, *_ = REGIMES[name]
    rows, t_ours, t_oasis = [], [], []
    for T in lengths:
        y = regime_traces(name, 1, T, seed=5)
        c_o = c_p = np.inf
        first = None
        for _ in range(repeats):
            _w, c, _us, res = timed(lambda: nc.run_deconvolution_full(y, fs, tr, td, lam,
                                                                      max_iters=max_iters))
            first = c if first is None else first
            c_o = min(c_o, c)
            b = np.atleast_1d(res.baseline)
            _w, c, _us, _s = timed(lambda: oasis(y, b, fs, tr, td, lam))
            c_p = min(c_p, c)
        kkt = float(np.max(S.kkt_violation(y, np.atleast_2d(res.activity),
                                           np.atleast_1d(res.baseline), fs, tr, td, lam)))
        ok = bool(np.all(res.converged)) and kkt <= S.KKT_TOL
        steps = int(np.max(res.iterations))
        t_ours.append(c_o)
        t_oasis.append(c_p)
        rows.append(f"  T {T:>9,d}  ours cpu {c_o:8.3f}s (first {first:7.3f}s)  steps {steps:4d}  "
                    f"{'optimal' if ok else 'NOT OPTIMAL'} ({kkt:.0e})  OASIS cpu {c_p:8.3f}s  "
                    f"ours/OASIS {c_o / c_p:5.2f}")
        print(rows[-1], flush=True)
    lt = np.log(np.asarray(lengths, float))
    p_o = np.polyfit(lt, np.log(t_ours), 1)[0]
    p_p = np.polyfit(lt, np.log(t_oasis), 1)[0]
    print(f"{name:20s} exponent {lengths[0]:,d}..{lengths[-1]:,d}: ours {p_o:.2f}  "
          f"OASIS {p_p:.2f}  {'(<= 1.1)' if p_o <= 1.1 else '(ABOVE 1.1)'}", flush=True)
    return p_o, p_p


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regimes", nargs="*", default=list(REGIMES), choices=list(REGIMES))
    ap.add_argument("--lengths", nargs="*", type=int,
                    default=[10_000, 100_000, 1_000_000, 4_000_000])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--max-iters", type=int, default=500,
                    help="our step budget (a trace that does not settle shows NOT OPTIMAL)")
    args = ap.parse_args(argv)
    S.warm_up()
    out = {}
    for name in args.regimes:
        print(f"== {name} {REGIMES[name][:3]}", flush=True)
        out[name] = run(name, sorted(args.lengths), args.repeats, args.max_iters)
    print("\nsummary: exponent of CPU time in T (ours / OASIS)")
    for name, (p_o, p_p) in out.items():
        print(f"  {name:20s} {p_o:5.2f} / {p_p:5.2f}")


if __name__ == "__main__":
    main()
