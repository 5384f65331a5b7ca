"""``napari-catune view``: a napari window with the CaTune tuner docked.

Moved out of :mod:`napari_catune.cli` so that the command line (and the
numerical core) import neither Qt nor napari: only this module does, and
only when ``view`` runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..cli import PROG, CLIError, check_not_an_input, check_output_folder

#: axis names of the layers the readers return (time first for movies)
MOVIE_AXES = ("t", "y", "x")


def _most_active(viewer, k: int = 3) -> list[int]:
    """The ids of the k ROIs with the highest SNR in the viewer's CaTune layers."""
    import napari

    for layer in viewer.layers:
        if not isinstance(layer, napari.layers.Labels):
            continue
        meta = layer.metadata.get("catune", {}) if isinstance(layer.metadata, dict) else {}
        traces = meta.get("traces")
        ids = meta.get("roi_ids")
        fs = meta.get("fs")
        if traces is None:
            movie = next(
                (im for im in viewer.layers if isinstance(im, napari.layers.Image)
                 and im.data.ndim == 3 and im.data.shape[1:] == layer.data.shape),
                None,
            )
            if movie is None:
                continue
            from ..traces import extract_traces

            traces, ids = extract_traces(movie.data, layer.data)
            fs = fs or (movie.metadata.get("catune", {}) or {}).get("fs")
        traces = np.asarray(traces, dtype=np.float64)
        ids = np.arange(1, traces.shape[0] + 1) if ids is None else np.asarray(ids)
        try:
            from ..traces import roi_snr

            score = np.asarray(roi_snr(traces, fs or 30.0))
        except ImportError:
            mad = np.median(np.abs(np.diff(traces, axis=1)), axis=1) + 1e-12
            score = (np.percentile(traces, 99, axis=1) - np.median(traces, axis=1)) / mad
        score = np.where(np.isfinite(score), score, -np.inf)
        order = np.argsort(-score, kind="stable")[:k]
        return [int(ids[i]) for i in order]
    return []


def _close_toasts(viewer) -> None:
    """Close napari's notification pop-ups so they do not cover the screenshot."""
    try:
        from napari._qt.dialogs.qt_notification import NapariQtNotification

        for w in viewer.window._qt_window.findChildren(NapariQtNotification):
            w.close()
    except Exception:  # private API; a toast in the picture is harmless
        pass


def _ours(path: str) -> bool:
    import fnmatch

    from .._reader import MASK_PATTERNS

    low = path.lower().rstrip("/")
    if low.endswith((".npy", ".npz", ".json", ".hdf5", ".h5", ".nwb", ".tif", ".tiff")):
        return True  # a .tif our reader declines (an image, RGB, 4-D) goes to napari's
    if any(fnmatch.fnmatch(Path(low).name, pat) for pat in MASK_PATTERNS):
        return True
    if Path(path).is_dir() and (Path(path) / "C.zarr").is_dir():
        return True  # a Minian output folder (napari_catune._reader_pipelines reads it)
    from ..loaders import find_suite2p_plane

    return find_suite2p_plane(path) is not None


def _open_path(viewer, path: str) -> list:
    """Open with our readers when the file looks like ours, else let napari choose."""
    if _ours(path):
        try:
            return label_axes(viewer.open(path, plugin=PROG), path)
        except ValueError as e:
            # a file our readers say is not theirs (e.g. an image stack in .npy)
            msg = str(e).lower()
            if "refused the file" not in msg and "no compatible" not in msg:
                raise
    return label_axes(viewer.open(path), path)


def label_axes(layers, path: str | None = None) -> list:
    """Name the axes of opened layers (t, y, x) and record a TIFF's frame rate.

    A 3-D image is a movie (frames first); its ``metadata["catune"]["fs"]``
    gets the rate the TIFF records (ImageJ ``finterval``/``fps``, OME
    ``TimeIncrement``) when napari's own reader opened it, so the tuner
    finds the sampling rate.
    """
    from ..sources import tiff_fs

    fs = None
    if path and path.lower().endswith((".tif", ".tiff")):
        fs = tiff_fs(path)
    for layer in layers or []:
        nd = getattr(layer, "ndim", 0)
        try:
            if nd == 3:
                layer.axis_labels = MOVIE_AXES
            elif nd == 2:
                layer.axis_labels = MOVIE_AXES[1:]
        except Exception:  # napari < 0.6 has no per-layer axis labels
            pass
        if fs is not None and nd == 3 and isinstance(getattr(layer, "metadata", None), dict):
            cat = layer.metadata.setdefault("catune", {})
            cat.setdefault("fs", fs)
    return list(layers or [])


def _viewer_axes(viewer) -> None:
    """The viewer's dims axis labels: t, y, x when a movie is shown."""
    if viewer.dims.ndim == 3:
        viewer.dims.axis_labels = MOVIE_AXES
    elif viewer.dims.ndim == 2:
        viewer.dims.axis_labels = MOVIE_AXES[1:]


def run_view(args) -> int:
    """Open the viewer (the ``view`` command); returns the exit code."""
    for p in args.paths:
        if not Path(p).exists():
            raise CLIError(f"{p} does not exist")
    if args.screenshot:
        shot = Path(args.screenshot)
        if shot.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"):
            raise CLIError(f"--screenshot needs an image file name (.png), got {shot}")
        check_output_folder(shot)
        check_not_an_input(shot, *args.paths, option="--screenshot")
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    state = {"code": 0}
    viewer = napari.Viewer(title="napari-catune")
    size = args.size or ((1500, 950) if args.screenshot else None)
    if size:
        viewer.window.resize(*size)
    _dock, widget = viewer.window.add_plugin_dock_widget(PROG, "CaTune tuner")
    try:
        if args.paths:
            for p in args.paths:
                _open_path(viewer, p)
        else:
            viewer.open_sample(PROG, "synthetic")
    except Exception as e:
        viewer.close()
        raise CLIError(f"could not open {' '.join(args.paths) or 'the sample'}: {e}") from None
    _viewer_axes(viewer)
    print(f"{PROG} view: layers: {', '.join(layer.name for layer in viewer.layers)}",
          file=sys.stderr)

    def finish(code: int, msg: str | None = None) -> None:
        if msg:
            print(f"{PROG} view: {msg}", file=sys.stderr)
        state["code"] = code
        try:
            viewer.close()
        finally:
            app = QApplication.instance()
            if app is not None:
                QTimer.singleShot(0, app.quit)

    if args.screenshot:
        def shoot():
            try:
                viewer.screenshot(str(shot), canvas_only=False)
            except Exception as e:
                finish(1, f"screenshot failed: {type(e).__name__}: {e}")
                return
            print(f"saved {shot}", file=sys.stderr)
            finish(0)

        def when_idle():
            # the tuner solves off the GUI thread: wait until its plots are drawn
            if not getattr(widget, "idle", True):
                QTimer.singleShot(100, when_idle)
                return
            _close_toasts(viewer)
            QTimer.singleShot(int(args.settle * 1000), shoot)

        def select():
            try:
                ids = _most_active(viewer, 3)
                if ids:
                    ids = widget.select_rois(ids)
                print(f"{PROG} view: selected ROIs: {', '.join(map(str, ids)) or 'none'}",
                      file=sys.stderr)
            except Exception as e:
                finish(1, f"selecting ROIs failed: {type(e).__name__}: {e}")
                return
            QTimer.singleShot(200, when_idle)

        QTimer.singleShot(200, select)
        QTimer.singleShot(
            int(args.timeout * 1000),
            lambda: finish(1, f"timed out after {args.timeout:g} s without a screenshot"),
        )
    napari.run()
    return state["code"]


