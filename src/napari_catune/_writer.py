"""npe2 writers for a Labels layer the CaTune tuner has worked on.

Single-layer npe2 writers are called as ``writer(path, data, meta)`` with
``meta`` the layer's state dict; everything we write rides in
``meta["metadata"]["catune"]`` (see the layer conventions in the project
notes).  All files are written atomically.

When the layer holds nothing to write we raise ``ValueError`` saying what to
do.  napari shows that message when saving from the File menu; through
``layer.save(..., plugin=...)`` napari swallows ValueErrors from writers and
only warns that the plugin wrote nothing, so the same message is also issued
as a warning beforehand (napari discards it in the File-menu path).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

__all__ = ["write_params", "write_results_npy", "write_results_csv"]


def _catune(meta) -> dict:
    md = (meta or {}).get("metadata") or {}
    cat = md.get("catune") if isinstance(md, dict) else None
    return cat if isinstance(cat, dict) else {}


def _nothing_to_write(meta, what: str) -> ValueError:
    name = (meta or {}).get("name") or "this layer"
    msg = (
        f"Labels layer {name!r} holds no {what}: "
        "run 'Apply to all ROIs' in the CaTune tuner first"
    )
    warnings.warn(msg, UserWarning, stacklevel=3)
    return ValueError(msg)


def _params_dict(cat: dict):
    params = cat.get("params")
    if not params:
        params = (cat.get("results") or {}).get("params")
    return params or None


def _results(meta) -> tuple[dict, np.ndarray]:
    cat = _catune(meta)
    results = cat.get("results")
    if not isinstance(results, dict) or results.get("activity") is None:
        raise _nothing_to_write(meta, "deconvolution results")
    activity = np.asarray(results["activity"], dtype=np.float64)
    if activity.ndim == 1:
        activity = activity[None, :]
    if activity.ndim != 2:
        raise ValueError(
            f"the layer's deconvolved activity has shape {activity.shape}; expected "
            "(n_rois, n_frames): run 'Apply to all ROIs' again"
        )
    return cat, activity


def _roi_ids(cat: dict, n: int) -> np.ndarray:
    for ids in ((cat.get("results") or {}).get("roi_ids"), cat.get("roi_ids")):
        if ids is not None and np.size(ids) == n:
            return np.asarray(ids, dtype=np.int64).ravel()
    return np.arange(1, n + 1, dtype=np.int64)


def write_params(path: str, data, meta: dict) -> list[str]:
    """Save the layer's tuned parameters as a CaTune export JSON (schema 1.2.0).

    Parameters come from ``metadata["catune"]["params"]`` (or, failing that,
    from the parameters stored with the results).
    """
    from napari_catune.params import TuningParams, save_params

    cat = _catune(meta)
    params = _params_dict(cat)
    if params is None:
        raise _nothing_to_write(meta, "CaTune parameters")
    if not isinstance(params, TuningParams):
        fields = ("tau_rise", "tau_decay", "fs", "lam", "filter_enabled", "baseline",
                  "drift_scale")
        params = TuningParams(**{k: params[k] for k in fields if k in params})
    extra = {}
    if cat.get("source"):
        extra["source_filename"] = Path(str(cat["source"])).name
    for arr in ((cat.get("results") or {}).get("activity"), cat.get("traces")):
        if arr is not None and np.ndim(arr) == 2:
            extra["num_cells"], extra["num_timepoints"] = (int(s) for s in np.shape(arr))
            break
    save_params(params, path, metadata=extra or None)
    return [str(path)]


def write_results_npy(path: str, data, meta: dict) -> list[str]:
    """Save the deconvolved activity (n_rois, n_frames) as a float64 ``.npy``."""
    from napari_catune._atomic import atomic_save_npy

    _, activity = _results(meta)
    atomic_save_npy(path, np.ascontiguousarray(activity))
    return [str(path)]


def write_results_csv(path: str, data, meta: dict) -> list[str]:
    """Save the deconvolved activity as CSV: ``time_s`` then one ``roi_<id>`` column per ROI."""
    from napari_catune._atomic import atomic_write_text

    cat, activity = _results(meta)
    params = _params_dict(cat) or {}
    fs = params.get("fs") if isinstance(params, dict) else getattr(params, "fs", None)
    if fs is None:
        fs = cat.get("fs")
    if fs is None or not float(fs) > 0:
        raise ValueError(
            "the layer's results carry no sampling rate, needed for the time_s column: "
            "set fs in the CaTune tuner and run 'Apply to all ROIs' again"
        )
    n, t = activity.shape
    ids = _roi_ids(cat, n)
    table = np.empty((t, n + 1), dtype=np.float64)
    table[:, 0] = np.arange(t) / float(fs)
    table[:, 1:] = activity.T
    buf = io.StringIO()
    header = ",".join(["time_s", *(f"roi_{i}" for i in ids)])
    # 10 significant digits: far below any calcium signal's noise, half the
    # size of a lossless %.17g
    np.savetxt(buf, table, fmt="%.10g", delimiter=",", header=header, comments="")
    atomic_write_text(path, buf.getvalue())
    return [str(path)]
