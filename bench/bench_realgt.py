"""Spike inference on real recordings with ground truth: ours vs OASIS and calab.

Run: .venv/bin/python bench/bench_realgt.py [--rows 12] [--datasets DS07 DS31] [--modes scalar drift]

Reads ../shared/realgt-dev/ (or $CATUNE_REALGT); exits with a message if absent.
Score: Pearson r of activity and spikes, both smoothed with a 0.1 s Gaussian;
median over rows, then median of datasets (rows with |dF/F| > 20 left out).
``--rows N`` takes the first N rows of each dataset (default: all).

Columns:
* ours, auto, per trace: estimate_params on the trace alone, then our solver;
* ours, auto, pooled: one estimate_params call per dataset file (all its rows);
* ours with each baseline mode (pooled parameters);
* best fixed: our solver with the best tau_decay of a grid per dataset
  (tau_rise = 0.1 tau_decay, the estimator's lambda rule) -- the ceiling;
* OASIS AR(1) and AR(2) automatic: deconvolve(y, g=(None,)/(None, None), penalty=1);
* calab 0.3 with its indicator preset's time constants (GCaMP6f/7f: gcamp6f;
  GCaMP6s/8s: gcamp6s; jGCaMP8m: jgcamp8f), its own rolling baseline, and our
  noise-relative lambda.
Time per trace: our estimation alone against OASIS's whole automatic call.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import defaultdict

import _one_blas  # noqa: F401  (one BLAS thread: per-core timing; before NumPy)
import numpy as np

import _realgt as R

GRID_TD = np.geomspace(0.1, 2.0, 9)
CALAB_PRESET = {"GCaMP6f": (0.1, 0.6), "jGCaMP7f": (0.1, 0.6), "GCaMP6s": (0.4, 1.8),
                "jGCaMP8s": (0.4, 1.8), "jGCaMP8m": (0.05, 0.3)}


CONVERGED = defaultdict(list)


def _ours(y, fs, p, mode=None, tag=None):
    from napari_catune.solver import run_deconvolution_full

    opts = {} if mode is None else {"baseline": mode}
    res = run_deconvolution_full(y, fs, p.tau_rise, p.tau_decay, p.lam, **opts)
    CONVERGED[tag or mode].append(bool(res.converged))
    return res.activity


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=None, help="rows per dataset (default all)")
    ap.add_argument("--datasets", nargs="*", default=None)
    ap.add_argument("--modes", nargs="*", default=["scalar", "rolling", "drift"])
    ap.add_argument("--no-grid", action="store_true", help="skip the best-fixed grid")
    ap.add_argument("--no-calab", action="store_true")
    args = ap.parse_args(argv)
    if not R.DATA.is_dir():
        print(f"no real recordings at {R.DATA}: set CATUNE_REALGT; nothing to do")
        return 0
    warnings.filterwarnings("ignore")
    from oasis.functions import deconvolve

    from napari_catune.estimate import RISE_RATIO, estimate_report, lambda_for_noise, noise_sigma
    from napari_catune.params import TuningParams
    from napari_catune.solver import run_deconvolution

    rows = R.load_rows(datasets=args.datasets, max_rows=args.rows)
    print(f"{len(rows)} rows from {R.DATA}")
    cols = defaultdict(list)
    t_ours = t_oasis = 0.0
    est = defaultdict(list)
    # pooled: one estimate per (dataset, fs) group, as a user would for one recording
    groups = defaultdict(list)
    for i, r in enumerate(rows):
        groups[(r.dataset, round(r.fs, 3))].append(i)
    pooled = {}
    for key, idx in groups.items():
        T = min(rows[i].y.size for i in idx)
        rep = estimate_report(np.stack([rows[i].y[:T] for i in idx]), rows[idx[0]].fs)
        for i in idx:
            pooled[i] = rep.params
    modes_ok = []
    for mode in args.modes:
        try:
            run_deconvolution(rows[0].y[:500], rows[0].fs, 0.05, 0.5, 0.01, baseline=mode)
            modes_ok.append(mode)
        except (TypeError, ValueError) as e:
            print(f"baseline mode {mode!r} not available here: {e}")
    for i, r in enumerate(rows):
        t = time.perf_counter()
        rep = estimate_report(r.y, r.fs)
        t_ours += time.perf_counter() - t
        p = rep.params
        est[r.dataset].append((p.tau_decay, pooled[i].tau_decay))
        cols["ours auto, per trace"].append(R.score(_ours(r.y, r.fs, p), r.spikes, r.fs))
        for mode in modes_ok:
            cols[f"ours auto, pooled, {mode}"].append(
                R.score(_ours(r.y, r.fs, pooled[i], mode), r.spikes, r.fs))
        t = time.perf_counter()
        s2 = deconvolve(r.y, g=(None, None), penalty=1)[1]
        t_oasis += time.perf_counter() - t
        cols["OASIS AR2 auto"].append(R.score(s2, r.spikes, r.fs))
        cols["OASIS AR1 auto"].append(R.score(deconvolve(r.y, g=(None,), penalty=1)[1], r.spikes, r.fs))
        if not args.no_calab:
            import calab

            tr, td = CALAB_PRESET.get(r.indicator, (0.1, 0.6))
            lam = lambda_for_noise(float(noise_sigma(r.y, r.fs)[0]), tr, td, r.fs)
            a = calab.run_deconvolution(r.y, r.fs, tr, td, lam)
            cols["calab 0.3, indicator preset"].append(R.score(np.ravel(a), r.spikes, r.fs))
    best_td = {}
    if not args.no_grid:
        grid = defaultdict(lambda: defaultdict(list))
        for r in rows:
            sig = float(noise_sigma(r.y, r.fs)[0])
            for td in GRID_TD:
                tr = RISE_RATIO * td
                p = TuningParams(tr, td, r.fs, lambda_for_noise(sig, tr, td, r.fs))
                grid[r.dataset][td].append(R.score(_ours(r.y, r.fs, p, tag="grid"), r.spikes, r.fs))
        for ds, per in grid.items():
            td_best = max(per, key=lambda td: np.median(per[td]))
            best_td[ds] = (td_best, float(np.median(per[td_best])))
    # ---------------------------------------------------------------- report
    names = list(cols)
    per_ds = {n: R.summarise(rows, cols[n]) for n in names}
    dsets = sorted(per_ds[names[0]][0])
    short = [d.split("-")[0] for d in dsets]
    print()
    print("| method | " + " | ".join(short) + " | **median** |")
    print("|---|" + "---|" * (len(dsets) + 1))
    for n in names:
        med, tot = per_ds[n]
        print(f"| {n} | " + " | ".join(f"{med[d]:.3f}" for d in dsets) + f" | **{tot:.3f}** |")
    if best_td:
        vals = [best_td[d][1] for d in dsets]
        print("| best fixed tau_decay (grid, ceiling) | " + " | ".join(f"{v:.3f}" for v in vals)
              + f" | **{np.median(vals):.3f}** |")
    print()
    print("| dataset | rows | tau_decay per trace (median) | pooled | best fixed (grid) | within 25 % |")
    print("|---|---|---|---|---|---|")
    for d, s in zip(dsets, short):
        e = np.array(est[d])
        bt = best_td.get(d, (np.nan, np.nan))[0]
        pooled_td = float(np.median(e[:, 1]))
        ok = abs(pooled_td / bt - 1) <= 0.25 if np.isfinite(bt) else "-"
        print(f"| {s} | {len(e)} | {np.median(e[:, 0]):.3f} | {pooled_td:.3f} | {bt:.3f} | {ok} |")
    n = len(rows)
    print()
    for mode in [None, *modes_ok]:
        c = CONVERGED[mode]
        if c:
            label = "estimated per trace" if mode is None else f"pooled, {mode}"
            print(f"converged ({label}): {sum(c)} of {len(c)} traces ({100 * sum(c) / len(c):.1f} %)")
    print(f"time per trace: ours (estimation) {1e3 * t_ours / n:.1f} ms, OASIS AR2 automatic "
          f"{1e3 * t_oasis / n:.1f} ms, ratio {t_ours / t_oasis:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
