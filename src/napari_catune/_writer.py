"""npe2 writers for the layers the CaTune tuner has worked on.

Single-layer npe2 writers are called as ``writer(path, data, meta)`` with
``meta`` the layer's state dict.  The results ride in the Labels layer's
``meta["metadata"]["catune"]`` (``results``: activity, reconvolution,
baseline, converged, roi_ids, params) and its ``features``.  The tuner's
activity overlay (an Image layer) can be saved too: its results are those of
the Labels layer it paints, found in the current viewer.  Files are laid out
by ``napari_catune.results`` (npz, NWB, csv, npy + sidecar) and written
atomically.

napari's File > Save Selected Layers dialog preselects napari's own writer
(the first file type listed) and hands the file to it whatever its
extension, so a ``.npy``/``.npz`` name with the preselected type fails in
napari before any plugin is asked; pick a "CaTune ..." file type there.
``layer.save(path)`` and ``viewer.layers.save(path, selected=True)`` choose
by extension and reach these writers.

When the layer holds nothing to write we raise ``ValueError`` saying what to
do.  napari shows that message when saving from the File menu; through
``layer.save(..., plugin=...)`` napari swallows ValueErrors from writers and
only warns that the plugin wrote nothing, so the same message is also issued
as a warning beforehand (napari discards it in the File-menu path).

Results, features tables and parameter files are never written over a file
the viewer's layers were read from (the recording, its label image) or its
``_metadata.json`` sidecar, nor results as a
``.npy``/``.csv`` whose ``{stem}_metadata.json`` describes another output:
the CLI's checks (:mod:`napari_catune._overwrite`), refused the same way.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

__all__ = [
    "write_params", "write_results_npy", "write_results_csv", "write_results_npz",
    "write_results_nwb", "write_features_csv", "save_results_dialog",
]


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


def _viewer_source(meta) -> dict:
    """The results behind the tuner's activity overlay (an Image layer).

    The overlay's own metadata carries only a flag (or, from newer tuners, the
    name of its Labels layer in ``catune["source_layer"]``); its results live
    on that Labels layer, found in the current viewer.
    """
    md = (meta or {}).get("metadata") or {}
    cat = md.get("catune") if isinstance(md.get("catune"), dict) else {}
    if not (md.get("catune_overlay") or cat.get("source_layer")):
        return {}
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:  # noqa: BLE001 - no napari, no viewer
        return {}
    if viewer is None:
        return {}
    holders = [
        layer for layer in viewer.layers
        if layer._type_string == "labels"
        and isinstance((layer.metadata.get("catune") or {}).get("results"), dict)
    ]
    name = cat.get("source_layer")
    if name:
        holders = [layer for layer in holders if layer.name == name]
    if len(holders) != 1:
        return {}
    layer = holders[0]
    return {"catune": layer.metadata["catune"], "labels": np.asarray(layer.data),
            "features": layer.features, "name": layer.name}


def _source(meta, data):
    """(catune dict, label image or None, features or None) of the layer being saved."""
    cat = _catune(meta)
    if isinstance(cat.get("results"), dict):
        labels = data if np.ndim(data) == 2 and np.asarray(data).dtype.kind in "iu" else None
        return cat, (None if labels is None else np.asarray(labels)), (meta or {}).get("features")
    found = _viewer_source(meta)
    if found:
        return found["catune"], found["labels"], found["features"]
    return cat, None, None


def _results(meta, data=None) -> tuple[dict, np.ndarray]:
    cat, _, _ = _source(meta, data)
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
    """The ROI ids to write: the file's own ids where the reader shifted them to
    label values (a traces file whose ids start at 0: see ``roi_id_shift``)."""
    shift = int(cat.get("roi_id_shift") or 0)
    for ids in ((cat.get("results") or {}).get("roi_ids"), cat.get("roi_ids")):
        if ids is not None and np.size(ids) == n:
            return np.asarray(ids, dtype=np.int64).ravel() - shift
    return np.arange(1, n + 1, dtype=np.int64) - shift


def _nwb_ids(cat: dict, ids: np.ndarray):
    """The source NWB file's own ids of ROIs ``ids`` (``catune["nwb_ids"]``, set
    by the NWB reader), written back as the ``.nwb`` export's PlaneSegmentation
    ids as ``deconvolve`` does; None (id = roi_id) when the source is no NWB
    file or an ROI is not one of its ROIs (painted in the tuner)."""
    found = cat.get("nwb_ids")
    if not isinstance(found, dict) or found.get("ids") is None:
        return None
    of = dict(zip(np.asarray(found["roi_ids"], dtype=np.int64).tolist(),
                  np.asarray(found["ids"], dtype=np.int64).tolist()))
    if not all(int(i) in of for i in ids):
        return None
    return np.array([of[int(i)] for i in ids], dtype=np.int64)


def _tuning_params(params):
    from napari_catune.params import TuningParams

    if params is None or isinstance(params, TuningParams):
        return params
    fields = ("tau_rise", "tau_decay", "fs", "lam", "filter_enabled", "baseline", "drift_scale")
    return TuningParams(**{k: params[k] for k in fields if k in params})


def _features(features, n: int):
    """A Labels layer's features table as columns, when it has one row per ROI."""
    if features is None:
        return None
    try:
        cols = {str(c): np.asarray(features[c]) for c in features.columns}
    except AttributeError:
        cols = {str(k): np.asarray(v) for k, v in dict(features).items()}
    cols.pop("index", None)
    if not cols or any(v.ndim != 1 or v.shape[0] != n for v in cols.values()):
        return None
    return cols


def _viewer_inputs() -> list[str]:
    """The files the current viewer's layers were read from (the recording,
    its label image...): results must never replace them."""
    from napari_catune._overwrite import layer_inputs

    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:  # noqa: BLE001 - no napari, no viewer
        return []
    return [] if viewer is None else layer_inputs(viewer.layers)


def _inputs(cat: dict) -> list[str]:
    """The results' own source and every file a layer of the viewer was read from."""
    found = [str(cat["source"])] if cat.get("source") else []
    return list(dict.fromkeys(found + _viewer_inputs()))


def check_output(path, cat: dict) -> None:
    """Refuse (:class:`~napari_catune._overwrite.OutputClash`) writing results over
    the recording they came from, its sidecar, or another output's sidecar.

    The same checks as the CLI's ``-o`` (:mod:`napari_catune._overwrite`).  A
    ``.npy``/``.csv`` whose ``{stem}_metadata.json`` already describes another
    file is refused rather than given a sidecar under another name: the
    hand-off reader finds a ``.npy``'s rate and ids only in
    ``{stem}_metadata.json``, and refusing keeps the earlier file's sidecar.
    """
    from napari_catune import _overwrite
    from napari_catune.results import RESULT_FORMATS

    path = Path(path)
    inputs = _inputs(cat)
    alt = f"{path.stem}_catune{path.suffix}"
    advice = f"choose another file name (e.g. {alt})"
    what = f"Cannot save {path.name}: "
    _overwrite.check_not_an_input(path, *inputs, name=what + "it", advice=advice)
    if path.suffix.lower() in (".npy", ".csv"):  # the formats written with a sidecar
        side = _overwrite.sidecar_of(path)
        _overwrite.check_not_an_input(side, *inputs, name=what + f"its sidecar {side.name}",
                                      advice=advice)
        try:
            _overwrite.check_sidecar_free(path, RESULT_FORMATS, advice=advice)
        except _overwrite.OutputClash as e:
            raise _overwrite.OutputClash(what + str(e)) from None
        if path.suffix.lower() == ".csv":
            feats = path.with_name(path.stem + "_features.csv")
            _overwrite.check_not_an_input(
                feats, *inputs, name=what + f"its features table {feats.name}", advice=advice)


def _refuse(e: ValueError) -> ValueError:
    # layer.save(..., plugin=...) swallows the ValueError: say it as a warning too
    warnings.warn(str(e), UserWarning, stacklevel=3)
    return e


def _check_not_an_input(path, cat: dict) -> None:
    """Refuse (with a warning too) a file without a sidecar (the parameter JSON,
    the features table) that is an input or an input's sidecar."""
    from napari_catune import _overwrite

    try:
        _overwrite.check_single_file(path, *_inputs(cat))
    except _overwrite.OutputClash as e:
        raise _refuse(e) from None


def _prepare(path: str, data, meta: dict) -> dict:
    """What :func:`_save` writes, checked: the keyword arguments of
    ``results.save_results`` (raises ValueError, with a warning too, when
    the layer holds nothing to write or ``path`` is refused)."""
    from napari_catune._overwrite import OutputClash

    cat, activity = _results(meta, data)
    try:
        check_output(path, cat)
    except OutputClash as e:
        raise _refuse(e) from None
    _, labels, features = _source(meta, data)
    res = cat["results"]
    params = _tuning_params(_params_dict(cat))
    if params is None:
        raise ValueError(
            "the layer's results carry no parameters: run 'Apply to all ROIs' in the CaTune "
            "tuner again"
        )
    n = activity.shape[0]
    ids = _roi_ids(cat, n)
    if labels is not None and not np.isin(ids, labels).any():
        labels = None  # not the footprints of these ROIs (e.g. a tile grid of another file)
    return dict(
        activity=activity, fit=res.get("reconvolution"), baseline=res.get("baseline"),
        events=res.get("events"), roi_ids=ids, fs=params.fs, params=params,
        features=_features(features, n), labels=labels, source=cat.get("source"),
        t0=cat.get("t0") or 0.0, timestamps=cat.get("timestamps"),
        input_traces=res.get("input_traces") or cat.get("input_traces") or cat.get("kind") or None,
        fitted_trace=res.get("fitted_trace"),
        **({"nwb_ids": _nwb_ids(cat, ids)} if Path(path).suffix.lower() == ".nwb" else {}),
    )


def _write(path: str, what: dict) -> list[str]:
    from napari_catune.results import save_results

    return [str(p) for p in save_results(path, **what)]


def _save(path: str, data, meta: dict) -> list[str]:
    """Everything the layer's results hold, through ``results.save_results``."""
    return _write(path, _prepare(path, data, meta))


def write_params(path: str, data, meta: dict) -> list[str]:
    """Save the layer's tuned parameters as a CaTune export JSON (schema 1.2.0).

    Parameters come from ``metadata["catune"]["params"]`` (or, failing that,
    from the parameters stored with the results).
    """
    from napari_catune.params import save_params

    cat, _, _ = _source(meta, data)
    params = _params_dict(cat)
    if params is None:
        raise _nothing_to_write(meta, "CaTune parameters")
    _check_not_an_input(path, cat)  # e.g. the recording's tr_metadata.json
    params = _tuning_params(params)
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
    """Save the deconvolved activity (n_rois, n_frames) as float64 ``.npy`` plus
    ``{stem}_metadata.json`` (fs, ROI ids, parameters; ``io.load_tuning_data``
    reads both back)."""
    return _save(path, data, meta)


def write_results_csv(path: str, data, meta: dict) -> list[str]:
    """Save the activity as CSV (``time_s`` then ``roi_<id>`` per ROI), with
    ``{stem}_metadata.json`` and, when the layer has features, ``{stem}_features.csv``."""
    return _save(path, data, meta)


def write_results_npz(path: str, data, meta: dict) -> list[str]:
    """Save activity, fit, baseline, events, ROI ids, fs, parameters and features
    in one ``.npz`` (layout: ``napari_catune.results``)."""
    return _save(path, data, meta)


def write_results_nwb(path: str, data, meta: dict) -> list[str]:
    """Save the results (with the ROI footprints) as a new NWB file."""
    return _save(path, data, meta)


def write_features_csv(path: str, data, meta: dict) -> list[str]:
    """Save the per-ROI features (SNR, event rate, baseline, converged...) as CSV."""
    from napari_catune.results import save_features_csv

    cat, activity = _results(meta, data)
    _check_not_an_input(path, cat)
    _, _, features = _source(meta, data)
    n = activity.shape[0]
    cols = _features(features, n)
    if cols is None:
        raise _nothing_to_write(meta, "per-ROI features")
    return [str(save_features_csv(path, cols, roi_ids=_roi_ids(cat, n)))]


# ----------------------------------------------------------------------------
# File > IO Utilities > Save CaTune results...
# ----------------------------------------------------------------------------

_DIALOG_FILTERS = (
    ("CaTune results: activity, fit, baseline, ids, fs, parameters (*.npz)", ".npz"),
    ("CaTune results, NWB (*.nwb)", ".nwb"),
    ("Deconvolved activity, CSV with sidecar (*.csv)", ".csv"),
    ("Deconvolved activity, NPY with sidecar (*.npy)", ".npy"),
)


def _results_layer(viewer):
    """The Labels layer whose results to save: the active one, the one the
    active activity overlay paints, or the only one with results."""
    active = viewer.layers.selection.active
    if active is not None:
        meta = {"name": active.name, "metadata": active.metadata}
        if isinstance(_catune(meta).get("results"), dict):
            return active
        found = _viewer_source(meta)
        if found:
            return viewer.layers[found["name"]]
    holders = [layer for layer in viewer.layers if layer._type_string == "labels"
               and isinstance((layer.metadata.get("catune") or {}).get("results"), dict)]
    return holders[0] if len(holders) == 1 else None


def save_results_dialog():
    """Ask where, then save the current CaTune results (no file type to pick first).

    The File > Save Selected Layers dialog preselects napari's own writer;
    this menu entry offers the CaTune formats only.  The checks and questions
    come first, here; then what the layer holds is taken as it is now and
    written in a worker thread (:mod:`napari_catune._qt.savejob`: a progress
    bar with Cancel in napari's activity panel, a message when done).
    Returns that :class:`~napari_catune._qt.savejob.SaveJob`, or None when
    nothing is saved (no results, no file chosen, refused, a save running).
    """
    import napari
    from napari.utils.notifications import show_error, show_warning
    from qtpy.QtWidgets import QFileDialog

    from napari_catune._qt import savejob

    running = savejob.running()
    if running is not None:  # one at a time (see savejob): said before any file is chosen
        show_warning(f"CaTune results are being saved to {Path(running.path).name}: wait "
                     "until that save ends (or cancel it in the activity panel, bottom right), "
                     "then save again.")
        return None
    viewer = napari.current_viewer()
    layer = None if viewer is None else _results_layer(viewer)
    if layer is None:
        show_error("No CaTune results to save: run 'Apply to all ROIs' in the CaTune tuner "
                   "first (with several result layers, select the one to save).")
        return None
    filters = ";;".join(f for f, _ in _DIALOG_FILTERS)
    path, chosen = QFileDialog.getSaveFileName(
        None, "Save CaTune results", f"{layer.name}_catune.npz", filters)
    if not path:
        return None
    typed = path
    if Path(path).suffix.lower() not in {e for _, e in _DIALOG_FILTERS}:
        path += dict(_DIALOG_FILTERS).get(chosen, ".npz")
    meta = {"name": layer.name, "metadata": layer.metadata, "features": layer.features}
    try:
        check_output(path, _catune(meta))  # the recording or a sidecar: refused, not asked
    except ValueError as e:
        show_error(str(e))  # "Cannot save NAME: ..." (a toast shows its first words)
        return None
    # the dialog asked "replace?" about the name as typed, not the one with the suffix
    if path != typed and os.path.lexists(path) and not _confirm_replace(path):
        return None
    try:
        what = _snapshot(_prepare(path, np.asarray(layer.data), meta))
    except ValueError as e:
        show_error(f"CaTune results not saved: {e}")
        return None
    return savejob.start(path, lambda: _write(path, what), _size(path, what))


def _snapshot(what: dict) -> dict:
    """``what`` kept as it is now, for a write in another thread.

    The results arrays are kept by reference: Apply to all stores new arrays
    in a new ``results`` dict and nothing writes into them.  What can change
    in place is copied: the label image (painted), the features columns.
    """
    out = dict(what)
    if out["labels"] is not None:
        out["labels"] = np.array(out["labels"], copy=True)
    if out["features"] is not None:
        out["features"] = {k: np.array(v, copy=True) for k, v in out["features"].items()}
    return out


def _size(path: str, what: dict) -> int:
    """Bytes the results file will hold, roughly; 0 when not known ahead (CSV text, NWB)."""
    ext = Path(path).suffix.lower()
    if ext == ".npy":
        return int(np.asarray(what["activity"]).size) * 8
    if ext != ".npz":
        return 0
    arrays = [what[k] for k in ("activity", "fit", "baseline", "timestamps", "fitted_trace")]
    arrays += list((what["features"] or {}).values())
    return int(sum(np.asarray(a).nbytes for a in arrays if a is not None))


def _confirm_replace(path: str) -> bool:
    from qtpy.QtWidgets import QMessageBox

    answer = QMessageBox.question(
        None, "Save CaTune results",
        f"{Path(path).name} already exists.\nDo you want to replace it?",
        QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
    return answer == QMessageBox.Yes
