"""Shared helpers of the real-data benchmarks: load the ground-truth recordings
of ../shared/realgt-dev/ and score inferred activity against the true spikes.

Score (DESIGN.md, Cascade / spikefinder convention): Pearson r between the
inferred activity and the spike counts, both smoothed with a Gaussian of
sd 0.1 s; median over the rows (recordings) of a dataset, then median over
datasets.  Rows flagged in the README (|dF/F| > 20) are left out.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("CATUNE_REALGT", HERE.parent.parent / "shared" / "realgt-dev"))


@dataclass
class Row:
    dataset: str      # e.g. "DS31-GCaMP8m-m-V1"
    indicator: str
    fs: float
    y: np.ndarray     # dF/F, float64
    spikes: np.ndarray
    t0: float = 0.0   # time of frame 0 (s): frame i is at t0 + i / fs
    spike_times: np.ndarray | None = None   # exact AP times (s), where the file has them


def dataset_name(path: str) -> str:
    stem = Path(path).stem
    return re.sub(r"_fs[0-9.]+$", "", stem)


def load_rows(data=DATA, max_abs: float = 20.0, datasets=None, max_rows=None) -> list[Row]:
    """Every usable row, grouped by dataset (files of one dataset at other
    frame rates join it).  Rows with |dF/F| > max_abs are left out."""
    rows: list[Row] = []
    files = sorted(glob.glob(str(Path(data) / "*.npz")))
    if not files:
        raise SystemExit(f"no recordings in {data}: set CATUNE_REALGT or see shared/realgt-dev/README.md")
    counts: dict[str, int] = {}
    for f in files:
        name = dataset_name(f)
        if datasets and not any(name.startswith(d) for d in datasets):
            continue
        d = np.load(f)
        fs_row = d["fs_per_row"] if "fs_per_row" in d else np.full(len(d["lengths"]), float(d["fs"]))
        exact = "spike_times" in d and "spike_times_offsets" in d and "t0" in d
        for i, L in enumerate(d["lengths"]):
            y = np.asarray(d["fluorescence"][i, :L], dtype=np.float64)
            if not np.isfinite(y).all() or np.abs(y).max() > max_abs:
                continue
            if max_rows and counts.get(name, 0) >= max_rows:
                continue
            counts[name] = counts.get(name, 0) + 1
            times = (np.asarray(d["spike_times"][d["spike_times_offsets"][i]:d["spike_times_offsets"][i + 1]],
                                dtype=np.float64) if exact else None)
            rows.append(Row(name, str(d["indicator"]), float(fs_row[i]), y,
                            np.asarray(d["spikes"][i, :L], dtype=np.float64),
                            float(d["t0"][i]) if exact else 0.0, times))
    return rows


def smooth(x: np.ndarray, fs: float, sd_s: float = 0.1) -> np.ndarray:
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(np.asarray(x, dtype=np.float64), sd_s * fs, mode="constant")


def score(activity: np.ndarray, spikes: np.ndarray, fs: float, sd_s: float = 0.1) -> float:
    a = smooth(activity, fs, sd_s)
    s = smooth(spikes, fs, sd_s)
    if a.std() == 0 or s.std() == 0:
        return 0.0
    return float(np.corrcoef(a, s)[0, 1])


def summarise(rows: list[Row], scores) -> tuple[dict, float]:
    """Median per dataset, then median of datasets."""
    per: dict[str, list[float]] = {}
    for r, v in zip(rows, scores):
        per.setdefault(r.dataset, []).append(v)
    med = {k: float(np.median(v)) for k, v in sorted(per.items())}
    return med, float(np.median(list(med.values())))
