"""Small lambda on every regime, on traces that start mid-transient: does the
exact solver settle within a step budget, and is its objective at or below
OASIS's?  (Issue 12: converged=True means optimal, on every regime.)

    .venv/bin/python bench/bench_small_lambda.py
    .venv/bin/python bench/bench_small_lambda.py --regimes slow-1kHz --lams 0 0.001

For each regime of bench_regimes.py with distinct traces (8) and each seed, one 200,000-frame trace
(``napari_catune.simulation.regime_traces``) is cut into ten 20,000-frame
pieces (most start in the middle of a transient, as a real recording does),
then solved at each lambda with each baseline (``max_iters`` 400).  Printed:
per regime, baseline and lambda the pieces that did not settle and the
steps (median, max); at the end the totals, and, for the scalar baseline,
whether our objective is at or below OASIS's (``oasisAR2`` on the piece
minus our baseline, the exact lambda mapping of bench_regimes.py) on every
settled piece, with the time of each.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import _one_blas  # noqa: F401  (one BLAS thread: per-core timing; before NumPy)
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_regimes import REGIMES, oasis  # noqa: E402

import napari_catune as nc  # noqa: E402
from napari_catune import solver as S  # noqa: E402
from napari_catune.simulation import regime_traces  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # the grid's regimes with distinct traces (the lambda-0/1 regimes share
    # another's kernel, noise and rate: the same pieces; lambda is set here)
    distinct = list({REGIMES[k][:3] + REGIMES[k][4:]: k for k in reversed(REGIMES)}.values())
    ap.add_argument("--regimes", nargs="*", default=[k for k in REGIMES if k in distinct],
                    choices=list(REGIMES))
    ap.add_argument("--lams", nargs="*", type=float, default=[0.0, 1e-3, 1e-2])
    ap.add_argument("--seeds", nargs="*", type=int, default=[1, 2])
    ap.add_argument("--max-iters", type=int, default=400)
    args = ap.parse_args(argv)
    S.warm_up()
    total = failed = steps = 0
    worse = compared = 0
    t_ours = t_oasis = 0.0
    for name in args.regimes:
        fs, tr, td, *_ = REGIMES[name]
        for seed in args.seeds:
            y = regime_traces(name, 1, 200_000, seed=seed).reshape(10, 20_000)
            for baseline in ("scalar", "drift"):
                for lam in args.lams:
                    c0 = time.process_time()
                    r = nc.run_deconvolution_full(y, fs, tr, td, lam, baseline=baseline,
                                                  max_iters=args.max_iters)
                    c1 = time.process_time()
                    bad = int((~r.converged).sum())
                    total += len(y)
                    failed += bad
                    steps += int(r.iterations.sum())
                    if bad or r.iterations.max() > 100:
                        print(f"{name:20s} seed {seed} {baseline:6s} lambda {lam:g}: "
                              f"{bad}/10 not settled, steps {np.median(r.iterations):.0f}/"
                              f"{r.iterations.max()}", flush=True)
                    if baseline != "scalar":
                        continue
                    t_ours += c1 - c0
                    c0 = time.process_time()
                    s_o = oasis(y, np.atleast_1d(r.baseline), fs, tr, td, lam)
                    t_oasis += time.process_time() - c0
                    ok = r.converged
                    o_ours = np.atleast_1d(nc.objective(y, r.activity, None, fs, tr, td, lam))
                    o_oasis = np.atleast_1d(nc.objective(y, s_o, None, fs, tr, td, lam))
                    compared += int(ok.sum())
                    worse += int((o_ours[ok] > o_oasis[ok] * (1 + 1e-9) + 1e-12).sum())
    print(f"\n{failed} of {total} traces not settled within {args.max_iters} steps; "
          f"{steps} steps in all")
    print(f"scalar baseline: objective above OASIS's on {worse} of {compared} settled "
          f"traces; CPU ours {t_ours:.2f} s, OASIS {t_oasis:.2f} s "
          f"(ours/OASIS {t_ours / t_oasis:.2f})")


if __name__ == "__main__":
    main()
