"""Is activity at frame 0 a spike at t = 0 or the calcium present before the recording?

Run: .venv/bin/python bench/bench_frame0.py

Reads ../shared/realgt-dev/ (or $CATUNE_REALGT; the ``_fs`` resampled copies
are skipped), the first 12 rows of each dataset, one pooled estimate_params
per dataset and our solver.  Per dataset: rows with activity at frame 0, how
many of those have a true spike in the first 0.5 s, and for comparison how
many of the other runs of activity (``detect_events``) at least as large as
the smallest frame-0 run have a true spike within 100 ms of their onset.
The README's *Frame 0* paragraph quotes the totals.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np

import napari_catune as nc
from napari_catune.events import detect_events

ROOT = Path(os.environ.get("CATUNE_REALGT", Path(__file__).resolve().parents[2]
                           / "shared" / "realgt-dev"))


def main(rows: int = 12) -> None:
    files = [f for f in sorted(glob.glob(str(ROOT / "*.npz"))) if "_fs" not in Path(f).name]
    if not files:
        raise SystemExit(f"no recordings in {ROOT}: set CATUNE_REALGT")
    tot = np.zeros(5, int)
    print("dataset  rows  frame-0 runs  with a true spike in 0.5 s  | other runs >= size  "
          "with a true spike within 100 ms")
    for f in files:
        z = np.load(f, allow_pickle=True)
        T = int(z["lengths"][:rows].min())
        y = z["fluorescence"][:rows, :T].astype(np.float64)
        sp = z["spikes"][:rows, :T]
        fs = float(z["fs"])
        p = nc.estimate_params(y, fs)
        s = np.atleast_2d(nc.run_deconvolution_full(y, p.fs, p.tau_rise, p.tau_decay, p.lam,
                                                    **p.solver_kwargs()).activity)
        w = max(1, int(round(0.1 * fs)))
        f0 = s[:, 0] > 0
        early = sp[:, : int(round(0.5 * fs))].sum(1) > 0
        e = detect_events(s, fs, keep_first=True)
        first = e["starts_before_recording"]
        cut = e["size"][first].min() if first.any() else np.inf
        big = np.flatnonzero(~first & (e["size"] >= cut))
        hit = sum(sp[e["activity_row"][k], max(0, e["onset_frame"][k] - w):
                     e["onset_frame"][k] + w].sum() > 0 for k in big)
        row = np.array([len(y), f0.sum(), (f0 & early).sum(), big.size, hit])
        tot += row
        print(Path(f).name.split("-")[0], *row)
    print("total ", *tot)


if __name__ == "__main__":
    main()
