"""npe2 sample data: a synthetic calcium recording with ground truth.

A movie (Image layer), its ROIs (Labels layer) and, in the Labels layer's
metadata, the true spikes, calcium and kernel parameters the recording was
simulated with, so tuning results can be checked against the truth.
"""

from __future__ import annotations

import numpy as np

__all__ = ["make_sample_data", "SAMPLE_KWARGS"]

# Small enough to open in well under 2 s and hold ~50 MB, long enough (60 s)
# for a few dozen transients per cell.
SAMPLE_KWARGS = dict(n_cells=16, n_frames=1800, fs=30.0, shape=(96, 96), seed=0)


def make_sample_data():
    """Synthetic recording as napari LayerData: ``[movie image, ROI labels]``.

    Returns
    -------
    list of (data, meta, layer_type)
        ``"synthetic movie"`` (T, Y, X) float32 with ``metadata["catune"] =
        {"fs": fs}`` and ``"ROIs"`` (Y, X) int32 with ``metadata["catune"] =
        {"fs", "roi_ids", "ground_truth": {"spikes", "calcium", "params"}}``.
    """
    from napari_catune.simulation import simulate_recording

    rec = simulate_recording(**SAMPLE_KWARGS)
    fs = float(rec.fs)
    movie = np.asarray(rec.movie)
    labels = np.asarray(rec.labels)
    # simulate_recording labels cell i as i + 1: row i of the ground truth
    roi_ids = np.arange(1, np.shape(rec.spikes)[0] + 1, dtype=np.int64)
    # percentiles of a frame subset: napari would otherwise scan the whole movie
    sub = movie[:: max(1, movie.shape[0] // 50)]
    lo, hi = (float(v) for v in np.percentile(sub, (0.5, 99.8)))
    if not hi > lo:
        hi = lo + 1.0
    movie_meta = {
        "name": "synthetic movie",
        "colormap": "gray",
        "contrast_limits": (lo, hi),
        "metadata": {"catune": {"fs": fs}},
    }
    labels_meta = {
        "name": "ROIs",
        "opacity": 0.35,
        "metadata": {
            "catune": {
                "fs": fs,
                "roi_ids": roi_ids,
                "ground_truth": {
                    "spikes": np.asarray(rec.spikes),
                    "calcium": np.asarray(rec.calcium),
                    "params": rec.params.to_dict(),
                },
            }
        },
    }
    return [(movie, movie_meta, "image"), (labels, labels_meta, "labels")]
