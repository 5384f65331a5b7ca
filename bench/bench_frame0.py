"""Is activity at the start of a recording a spike or the calcium present before it?

Run: .venv/bin/python bench/bench_frame0.py [rows per dataset, default 12]

Reads ../shared/realgt-dev/ (or $CATUNE_REALGT; the ``_fs`` resampled copies
are skipped).  Two parts, whose totals the README's *Frame 0* paragraph quotes:

1. Leading dark frames (``events.leading_dark_frames``), on every row of every
   dataset: how many rows have them, how many frames, and how far below the
   rest of their trace they lie (noise sigmas, ``events._dark_depth``) against
   the deepest of the first 3 frames after them on any row (the margin the
   threshold ``DARK_SIGMA`` sits in).
2. The first ``rows`` rows of each dataset, one pooled estimate_params per
   dataset, our solver, ``detect_events(..., traces=, keep_first=True)``:
   the runs that start before the recording (within frames 0-1 after the
   dark frames), by where they start (frame 0, frame 1, right after dark
   frames), how many are larger than every later run of their row (the
   calcium of many spikes before the recording makes them so) and how many
   have a true spike within 100 ms of their onset; then the
   runs starting at the next frame (just outside the rule) and the other runs
   at least as large as the smallest initial run, with how many have a true
   spike within 100 ms of their onset.
"""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

import numpy as np

import napari_catune as nc
from napari_catune.events import (DARK_SIGMA, _dark_depth, detect_events,
                                  leading_dark_frames)

ROOT = Path(os.environ.get("CATUNE_REALGT", Path(__file__).resolve().parents[2]
                           / "shared" / "realgt-dev"))


def _files():
    files = [f for f in sorted(glob.glob(str(ROOT / "*.npz"))) if "_fs" not in Path(f).name]
    if not files:
        raise SystemExit(f"no recordings in {ROOT}: set CATUNE_REALGT")
    return files


def dark_frames() -> None:
    print(f"leading dark frames (> {DARK_SIGMA:g} noise sigmas below the next 10 s), all rows")
    print("dataset  rows  with dark frames  frames (min-max)  shallowest dark (sigma)  "
          "deepest lit frame 0-2 after them (sigma)")
    tot, shallow, deep = np.zeros(2, int), np.inf, -np.inf
    for f in _files():
        z = np.load(f, allow_pickle=True)
        y, fs = z["fluorescence"], float(z["fs"])
        k = leading_dark_frames(y, fs)
        d = _dark_depth(y, fs)
        dk = [d[i, : k[i]].min() for i in np.flatnonzero(k)]
        lit = [d[i, k[i]: k[i] + 3].max() for i in range(len(y))]
        sh, dp = min(dk, default=np.inf), max(lit)
        shallow, deep = min(shallow, sh), max(deep, dp)
        tot += [len(y), (k > 0).sum()]
        rng = f"{k[k > 0].min()}-{k.max()}" if k.any() else "-"
        print(f"{Path(f).name.split('-')[0]}  {len(y):4d}  {(k > 0).sum():4d}  {rng:>9}  "
              f"{sh:8.1f}  {dp:8.1f}")
    print(f"total {tot[0]} rows, {tot[1]} with dark frames; shallowest dark frame {shallow:.1f} "
          f"sigma, deepest lit frame {deep:.1f} sigma below")


def initial_runs(rows: int) -> None:
    print(f"\nruns of activity at the start, first {rows} rows of each dataset")
    print("dataset  rows | before the recording: frame 0, frame 1, after dark frames; "
          "with a true spike within 100 ms; larger than every later run of its row | "
          "starting at the next frame, with a true spike within 100 ms | other runs >= the "
          "smallest before the recording, with a true spike within 100 ms")
    tot = np.zeros(10, int)
    for f in _files():
        z = np.load(f, allow_pickle=True)
        T = int(z["lengths"][:rows].min())
        y = z["fluorescence"][:rows, :T].astype(np.float64)
        sp = z["spikes"][:rows, :T]
        fs = float(z["fs"])
        p = nc.estimate_params(y, fs)
        s = np.atleast_2d(nc.run_deconvolution_full(y, p.fs, p.tau_rise, p.tau_decay, p.lam,
                                                    **p.solver_kwargs()).activity)
        dark = leading_dark_frames(y, fs)
        w = max(1, int(round(0.1 * fs)))
        e = detect_events(s, fs, keep_first=True, traces=y)
        row, on, size = e["activity_row"], e["onset_frame"], e["size"]
        first = e["starts_before_recording"]

        def hits(sel):
            return sum(sp[row[k], max(0, on[k] - w): on[k] + w].sum() > 0
                       for k in np.flatnonzero(sel))

        top = sum(size[k] > size[(row == row[k]) & ~first].max(initial=0.0)
                  for k in np.flatnonzero(first))
        nxt = ~first & (on == dark[row] + 2)
        cut = size[first].min() if first.any() else np.inf
        big = ~first & ~nxt & (size >= cut)
        r = np.array([len(y), (first & (on == 0)).sum(), (first & (on > 0) & (dark[row] == 0)).sum(),
                      (first & (dark[row] > 0)).sum(), hits(first), top, nxt.sum(), hits(nxt),
                      big.sum(), hits(big)])
        tot += r
        print(Path(f).name.split("-")[0], *r, flush=True)
    print("total ", *tot)
    print(f"before the recording: {tot[1:4].sum()} runs, {tot[4]} with a true spike within "
          f"100 ms ({100 * tot[4] / max(tot[1:4].sum(), 1):.0f} %), {tot[5]} larger than every "
          f"later run of their row; other runs at least as large: {tot[8]}, {tot[9]} with a "
          f"true spike within 100 ms ({100 * tot[9] / max(tot[8], 1):.0f} %)")


def main(rows: int = 12) -> None:
    dark_frames()
    initial_runs(rows)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
