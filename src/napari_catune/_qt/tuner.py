"""CaTune tuner: the dock widget that tunes deconvolution on selected ROIs.

Thin by design: layers and clicks become calls of the core (traces, solver,
params, estimate); results become plot data and layers.  Slider moves are
coalesced and solved on a background thread with a warm start (short warm
solves run in place); a generation counter keeps a stale result from ever
being drawn over a newer one.  Trace extraction, parameter estimation and
Apply to all run in napari workers, so a big or lazy movie never freezes the
viewer.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
from magicgui.widgets import ComboBox, Container
from napari.layers import Image, Labels
from napari.utils import notifications
from napari.utils.theme import get_theme
from qtpy.QtCore import QEvent, QObject, Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .. import params as _params
from .. import solver as _solver
from ..kernel import bandpass_filter
from ..params import TuningParams
from .controls import ParamControls
from .overlays import Overlays, is_overlay
from .plots import MAX_ROIS, TunerPlots

_NONE = "(none: traces in the Labels layer)"


@dataclass
class _Source:
    """Traces of one (image, labels) pair, extracted once."""

    image: object  # napari Image layer or None
    labels: object  # napari Labels layer
    traces: np.ndarray  # (n, T) float64
    roi_ids: np.ndarray  # (n,) int
    snr: np.ndarray  # (n,)
    fs_hint: float | None
    row: dict = field(default_factory=dict)  # roi id -> row

    def __post_init__(self):
        self.row = {int(r): i for i, r in enumerate(self.roi_ids)}

    @property
    def n_frames(self) -> int:
        return int(self.traces.shape[1])


class _SourceError(ValueError):
    """A data-source problem whose message is ready for the user."""


def _notify_error(msg: str) -> None:
    notifications.show_error(msg)


def _notify_warning(msg: str) -> None:
    notifications.show_warning(msg)


def _event_rate(activity: np.ndarray, fs: float) -> np.ndarray:
    """Events per second: runs of activity above 10 % of each ROI's maximum."""
    a = np.atleast_2d(activity)
    thr = 0.1 * a.max(axis=1, keepdims=True)
    above = (a > thr) & (thr > 0)
    onsets = above[:, 1:] & ~above[:, :-1]
    n = onsets.sum(axis=1) + above[:, 0]
    return n / (a.shape[1] / fs)


def _run_job(job: dict) -> dict:
    """Solve one live request in place: sets "result" or "error", and "elapsed".

    With the bandpass on, the filtered traces (computed here unless the job
    brings them) are kept in ``job["filtered"]``: the plot shows what was fitted.
    """
    t0 = time.perf_counter()
    try:
        p: TuningParams = job["params"]
        y = job["traces"]
        if p.filter_enabled:
            if job.get("filtered") is None:
                job["filtered"] = bandpass_filter(y, p.tau_rise, p.tau_decay, p.fs)
            # the solver would filter exactly so (its own bandpass of the float64
            # traces); filtering once serves both the solve and the plot
            y = job["filtered"]
        job["result"] = _solver.run_deconvolution_full(
            y, p.fs, p.tau_rise, p.tau_decay, p.lam,
            baseline=job["baseline"], filter_enabled=False, init=job["init"],
        )
    except Exception as e:  # noqa: BLE001 - reported to the user; the GUI lives on
        job["error"] = e
    job["elapsed"] = time.perf_counter() - t0
    return job


class _LiveSolver(QObject):
    """A background solve thread; the newest request replaces any waiting one.

    The thread ends after a few idle seconds and is restarted on demand, so a
    closed widget leaves no thread behind.
    """

    done = Signal(object)
    IDLE_EXIT_S = 2.0

    def __init__(self):
        super().__init__()
        self._cv = threading.Condition()
        self._pending = None
        self._stop = False
        self._thread = None
        self.busy = False

    def submit(self, job: dict) -> None:
        with self._cv:
            if self._stop:
                return
            self._pending = job
            self._cv.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="catune-live",
                                                daemon=True)
                self._thread.start()

    @property
    def idle(self) -> bool:
        with self._cv:
            return self._pending is None and not self.busy

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._pending = None
            self._cv.notify()

    def _loop(self) -> None:
        while True:
            with self._cv:
                if self._pending is None and not self._stop:
                    self._cv.wait(self.IDLE_EXIT_S)
                if self._stop or self._pending is None:
                    self._thread = None
                    return
                job, self._pending = self._pending, None
                self.busy = True
            _run_job(job)
            try:
                self.done.emit(job)
            except RuntimeError:  # widget deleted while solving
                with self._cv:
                    self.busy = False
                    self._thread = None
                return
            with self._cv:
                self.busy = False


def _disconnect(viewer, hooks) -> None:
    if viewer is None:
        return
    on_layers, on_step, on_theme, on_mouse = hooks
    for emitter, cb in ((viewer.layers.events.inserted, on_layers),
                        (viewer.layers.events.removed, on_layers),
                        (viewer.layers.events.moved, on_layers),
                        (viewer.dims.events.current_step, on_step),
                        (viewer.events.theme, on_theme)):
        try:
            emitter.disconnect(cb)
        except Exception:  # noqa: BLE001 - already gone with the viewer
            pass
    try:
        if on_mouse in viewer.mouse_drag_callbacks:
            viewer.mouse_drag_callbacks.remove(on_mouse)
    except Exception:  # noqa: BLE001
        pass


class CaTuneTuner(QWidget):
    """Dock widget: pick ROIs, move sliders, see fit/activity/kernel live.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    #: live solves expected to finish within this many seconds run on the GUI thread
    SYNC_SOLVE_S = 0.012

    #: emitted with the generation number once the plots hold a new live result
    plots_updated = Signal(int)

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.setObjectName("CaTuneTuner")
        self._source: _Source | None = None
        self._cache: dict = {}
        self._selected: list[int] = []
        self._gen = 0  # generation of the newest request
        self._drawn_gen = 0  # generation of the result on screen
        self._solve_cost: dict[tuple, float] = {}  # (n ROIs, T) -> last warm solve seconds
        self._warm: dict[int, np.ndarray] = {}  # roi id -> last activity (warm start)
        self._warm_gen: dict[int, int] = {}  # roi id -> generation of that warm start
        self._sel = None  # the selected rows' traces, cached for the slider path
        self._last_result = None  # (ids, params, fit, activity)
        self._apply_worker = None
        self._estimate_worker = None
        self._apply_start = None  # starts an Apply to all waiting for the traces
        self._builds: dict = {}  # cache key -> running trace-extraction worker
        self._pending_sel = None  # (ids, add, quiet) waiting for the source
        self._hooked: dict = {}  # id(layer) -> (layer ref, callback) for data/paint events
        self._docked = False
        self.last_solve_seconds = float("nan")
        self.last_estimate: TuningParams | None = None
        self._closed = False

        # ---- data source
        self.image_combo = ComboBox(label="movie", choices=self._image_choices, name="image")
        self.labels_combo = ComboBox(label="ROIs", choices=self._labels_choices, name="labels")
        self.source_box = Container(widgets=[self.image_combo, self.labels_combo])
        self.image_combo.changed.connect(self._source_changed)
        self.labels_combo.changed.connect(self._labels_picked)

        # ---- ROI list
        self.roi_table = QTableWidget(0, 2)
        self.roi_table.setHorizontalHeaderLabels(["ROI", "SNR"])
        self.roi_table.verticalHeader().setVisible(False)
        self.roi_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.roi_table.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.roi_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.roi_table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.roi_table.setSortingEnabled(True)
        self.roi_table.itemSelectionChanged.connect(self._table_selection_changed)
        self.roi_table.setMaximumHeight(220)
        self.most_active_btn = QPushButton("Select most active")
        self.most_active_btn.setToolTip("Select the 4 ROIs with the highest SNR")
        self.most_active_btn.clicked.connect(lambda: self.select_most_active(4))

        # ---- controls and plots
        self.controls = ParamControls()
        self.plots = TunerPlots()
        self.plots.setMinimumHeight(380)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.busy_bar = QProgressBar()  # indeterminate: extraction or estimation runs
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setMaximumHeight(8)
        self.busy_bar.setTextVisible(False)
        self.busy_bar.setVisible(False)

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(self.controls.native)
        ll.addWidget(self.progress)
        ll.addWidget(self.busy_bar)
        ll.addWidget(self.status)
        ll.addStretch(1)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.source_box.native)
        rl.addWidget(self.roi_table)
        rl.addWidget(self.most_active_btn)
        top = QWidget()
        tl = QHBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(left, 3)
        tl.addWidget(right, 2)
        split = QSplitter(Qt.Vertical)
        split.addWidget(top)
        split.addWidget(self.plots)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        lay = QVBoxLayout(self)
        lay.addWidget(split)
        self.setMinimumWidth(520)

        self.overlays = Overlays(self.viewer)

        # ---- live update machinery
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._request_solve)
        self._edit_timer = QTimer(self)
        self._edit_timer.setSingleShot(True)
        self._edit_timer.setInterval(300)
        self._edit_timer.timeout.connect(self._rebuild_after_edit)
        self._overlay_timer = QTimer(self)
        self._overlay_timer.setSingleShot(True)
        self._overlay_timer.setInterval(200)
        self._overlay_timer.timeout.connect(self._update_activity_overlay)
        self._live = _LiveSolver()
        self._live.done.connect(self._solve_done)

        self.controls.on_params_changed(self._params_changed)
        self.controls.estimate_btn.changed.connect(lambda: self.estimate_from_data())
        self.controls.save_btn.changed.connect(self._save_dialog)
        self.controls.load_btn.changed.connect(self._load_dialog)
        self.controls.apply_btn.changed.connect(lambda: self.apply_to_all())
        self.controls.cancel_btn.changed.connect(self.cancel_apply)
        self.controls.overlay_mode.changed.connect(lambda _: self._update_activity_overlay())
        self.plots.frame_requested.connect(self._goto_frame)

        # ---- viewer hooks (weak: the viewer may outlive this widget; the Qt
        # side may be deleted before Python drops us, hence the `alive` flag)
        ref = weakref.ref(self)
        alive = {"ok": True}

        def me_if_alive():
            me = ref()
            return me if (me is not None and alive["ok"] and not me._closed) else None

        def on_layers(event=None):
            me = me_if_alive()
            if me is not None:
                me._layers_changed((getattr(event, "type", None),
                                    getattr(event, "value", None)))

        def on_step(event=None):
            me = me_if_alive()
            if me is not None:
                me._dims_changed()

        def on_theme(event=None):
            me = me_if_alive()
            if me is not None:
                me._apply_theme()

        def on_mouse(viewer, event):
            me = me_if_alive()
            if me is None:
                return
            yield from me._on_mouse(viewer, event)

        viewer_ref = weakref.ref(self.viewer)
        live = self._live

        hooks = (on_layers, on_step, on_theme, on_mouse)

        def on_destroyed(*_):
            alive["ok"] = False
            live.stop()
            _disconnect(viewer_ref(), hooks)
            me = ref()  # the Python side may outlive the Qt side (worker closures)
            if me is not None:
                me._closed = True
                me._quit_workers()

        self._hooks = hooks
        self.viewer.layers.events.inserted.connect(on_layers)
        self.viewer.layers.events.removed.connect(on_layers)
        self.viewer.layers.events.moved.connect(on_layers)
        self.viewer.dims.events.current_step.connect(on_step)
        self.viewer.events.theme.connect(on_theme)
        self.viewer.mouse_drag_callbacks.append(on_mouse)
        self.destroyed.connect(on_destroyed)

        self._apply_theme()
        self._draw_kernel(self.controls.params)
        with self.image_combo.changed.blocked():
            self.image_combo.value = self._default_image(self.labels_combo.value)
        self._source_changed()

    # ================================================================ API
    @property
    def params(self) -> TuningParams:
        """The parameters shown by the controls."""
        return self.controls.params

    def set_params(self, p) -> bool:
        """Move the controls to ``p`` and re-solve the selected ROIs.

        ``p`` is a TuningParams or a dict of its fields.  Values out of range
        are refused with a notification (returns False); the controls keep
        their values.
        """
        if not isinstance(p, TuningParams):
            try:
                p = TuningParams(**dict(p))
            except (TypeError, ValueError) as e:
                _notify_error(f"Parameters not applied: {e}. Accepted: tau_rise 0.001-0.5 s "
                              "< tau_decay 0.01-10 s, fs 1-1000 Hz, lambda 0-10.")
                return False
        self.controls.set_params(p)
        return True

    @property
    def selected_rois(self) -> list[int]:
        return list(self._selected)

    def select_rois(self, ids, add: bool = False, *, _quiet: bool = False) -> list[int]:
        """Select ROIs by id (``add=True`` keeps the current ones); at most 8.

        While the traces are still being extracted the selection is kept and
        made once they are ready (the ids asked for are returned).
        """
        ids = [int(i) for i in np.atleast_1d(np.asarray(ids, dtype=np.int64))]
        src = self._ensure_source()
        if src is None:
            if self._building():
                self._pending_sel = (ids, add, _quiet)
                return ids[-MAX_ROIS:]
            _notify_warning("No ROIs to select: choose a Labels layer in the CaTune tuner.")
            return self.selected_rois
        unknown = [i for i in ids if i not in src.row]
        if unknown and not _quiet:
            _notify_warning(
                f"ROI id(s) {unknown} are not in the Labels layer "
                f"'{src.labels.name}' (or have no pixels); they were skipped."
            )
        ids = [i for i in ids if i in src.row]
        new = list(self._selected) if add else []
        for i in ids:
            if i in new:
                if add and len(ids) == 1:
                    new.remove(i)  # shift-click on a selected ROI toggles it off
            else:
                new.append(i)
        if len(new) > MAX_ROIS:
            _notify_warning(f"At most {MAX_ROIS} ROIs are shown at once; keeping the last "
                            f"{MAX_ROIS} selected.")
            new = new[-MAX_ROIS:]
        self._selected = new
        self._sync_table()
        self._show_selection()
        return self.selected_rois

    def select_most_active(self, k: int = 4) -> list[int]:
        """Select the ``k`` ROIs with the highest SNR."""
        src = self._ensure_source()
        if src is None:
            if self._building():
                self._pending_sel = (k, None, True)
            return []
        order = np.argsort(-np.nan_to_num(src.snr, nan=-np.inf))
        return self.select_rois(src.roi_ids[order[:k]])

    def save_params(self, path) -> bool:
        """Write the current parameters (CaTune JSON 1.2.0); notify on failure."""
        src = self._source
        meta = {}
        if src is not None:
            meta = {"num_cells": int(src.traces.shape[0]),
                    "num_timepoints": int(src.n_frames),
                    "source_filename": str(src.labels.metadata.get("catune", {}).get(
                        "source", src.labels.name))}
        try:
            _params.save_params(self.params, path, metadata=meta)
        except (OSError, ValueError, TypeError) as e:
            _notify_error(f"Could not save parameters to {path}: {e}. Choose a writable "
                          f"file ending in .json.")
            return False
        if src is not None:
            src.labels.metadata.setdefault("catune", {})["params"] = self.params.to_dict()
        self.status.setText(f"Parameters saved to {path}")
        return True

    def load_params(self, path):
        """Read a CaTune parameter file into the controls; notify on failure.

        Returns the loaded :class:`TuningParams`, or None when the file is bad.
        """
        try:
            p = _params.load_params(path)
        except FileNotFoundError as e:
            _notify_error(f"Parameter file not found: {e}. Pick an existing CaTune .json file.")
            return None
        except (OSError, ValueError, TypeError, KeyError) as e:
            _notify_error(f"Could not load parameters from {path}: {e}. It must be a CaTune "
                          f"export JSON with a 'parameters' block.")
            return None
        self.set_params(p)
        self.status.setText(f"Parameters loaded from {path}")
        return p

    def estimate_from_data(self):
        """Estimate parameters from the selected ROIs (or the most active) in a worker.

        The sliders move when the worker returns (``last_estimate`` then holds
        the result).  Returns the started worker, or None when there is
        nothing to estimate from.
        """
        from napari.qt.threading import create_worker

        from .. import estimate as _estimate

        src = self._ensure_source()
        if src is None:
            _notify_warning("Nothing to estimate from yet: "
                            + ("the traces are still being extracted; try again when the "
                               "ROI list is filled." if self._building() else
                               "choose a Labels layer (and a movie) in the CaTune tuner "
                               "first."))
            return None
        if self._estimate_worker is not None:
            return self._estimate_worker
        if self._selected:
            rows = [src.row[i] for i in self._selected]
        else:
            # the most active ROIs carry the kernel shape; cap the work
            rows = list(np.argsort(-np.nan_to_num(src.snr, nan=-np.inf))[:32])
        traces = src.traces[rows]
        fs = self.params.fs
        n = len(rows)

        def work():
            return _estimate.estimate_params(traces, fs)

        worker = create_worker(work, _progress={"desc": "CaTune: estimating parameters"},
                               _start_thread=False, _ignore_errors=True)
        self._estimate_worker = worker
        self.controls.estimate_btn.enabled = False
        self._set_busy(f"Estimating parameters from {n} ROI{'s' if n != 1 else ''}...")

        def returned(p):
            if self._closed:
                return
            # fs is known, not estimated: keep the user's value
            p = p.replace(fs=fs, filter_enabled=self.params.filter_enabled,
                          baseline=self.params.baseline)
            self.last_estimate = p
            self.set_params(p)
            self.status.setText(f"Parameters estimated from {n} ROI{'s' if n != 1 else ''}.")

        def errored(e):
            if self._closed:
                return
            _notify_error(f"Could not estimate parameters: {e}. Select ROIs with clear "
                          f"transients, or set the sliders by hand.")

        def finished():
            if self._closed:
                return
            self._estimate_worker = None
            self.controls.estimate_btn.enabled = True
            self._set_busy(None)

        worker.returned.connect(returned)
        worker.errored.connect(errored)
        worker.finished.connect(finished)
        worker.start()
        return worker

    def apply_to_all(self):
        """Solve every ROI with the current parameters in a ``thread_worker``.

        Returns the worker (``worker.quit()`` cancels), or None when there is
        nothing to do.  Called while the traces are still being read, the
        worker starts as soon as they are ready.
        """
        from napari.qt.threading import create_worker

        src = self._ensure_source()
        if src is None and not self._building():
            _notify_warning("Nothing to apply to: choose a Labels layer in the CaTune tuner.")
            return None
        if self._apply_worker is not None:
            _notify_warning("Apply to all is already running; cancel it first.")
            return self._apply_worker
        p = self.params
        job: dict = {}  # the source and its chunks, set when the worker is started
        solve = _solver.run_deconvolution_full

        def work():
            traces, chunk = job["src"].traces, job["chunk"]
            n, T = traces.shape
            act, rec = np.zeros((n, T)), np.zeros((n, T))
            base, conv = np.zeros(n), np.zeros(n, dtype=bool)
            for i0 in range(0, n, chunk):
                i1 = min(n, i0 + chunk)
                r = solve(traces[i0:i1], p.fs, p.tau_rise, p.tau_decay, p.lam,
                          baseline=p.baseline, filter_enabled=p.filter_enabled)
                act[i0:i1] = r.activity
                rec[i0:i1] = r.reconvolution
                base[i0:i1] = r.baseline
                conv[i0:i1] = r.converged
                yield i1
            return act, rec, base, conv

        # total 1 for now (a non-zero total makes napari count the yields); the
        # real number of chunks is set once the traces are known
        worker = create_worker(work, _progress={"total": 1,
                                                 "desc": "CaTune: apply to all ROIs"},
                               _start_thread=False, _ignore_errors=True)
        self._apply_worker = worker
        self.controls.apply_btn.enabled = False
        self.controls.cancel_btn.enabled = True

        # every callback checks _closed: the dock may be closed (and its Qt
        # objects deleted) while the worker still runs
        def yielded(i):
            if not self._closed:
                self.progress.setValue(i)

        def returned(out):
            if self._closed:
                return
            src = job["src"]
            if src.labels not in self.viewer.layers:
                _notify_warning("The Labels layer was removed during Apply to all; the "
                                "results were discarded. Re-add it and apply again.")
                return
            self._store_results(src, p, *out)

        def aborted():
            if not self._closed:
                self.status.setText("Apply to all cancelled; no results were stored.")

        def errored(e):
            if not self._closed:
                _notify_error(f"Apply to all failed: {e}. Check the parameters and the "
                              f"data, then try again.")

        def finished():
            if not self._closed:
                self._apply_done()

        def start(src):
            n, T = src.traces.shape
            job["src"] = src
            job["chunk"] = chunk = max(1, min(64, math.ceil(n / 20),
                                              max(1, 2_000_000 // max(T, 1))))
            pbar = getattr(worker, "pbar", None)
            if pbar is not None:
                pbar.total = math.ceil(n / chunk)
            self.progress.setRange(0, n)
            self.progress.setValue(0)
            self.progress.setVisible(True)
            self.status.setText(f"Applying to {n} ROIs...")
            worker.start()

        worker.yielded.connect(yielded)
        worker.returned.connect(returned)
        worker.aborted.connect(aborted)
        worker.errored.connect(errored)
        worker.finished.connect(finished)
        if src is not None:
            start(src)
        else:
            self._apply_start = start
            self.status.setText("Apply to all starts once the traces are read...")
        return worker

    def _apply_done(self) -> None:
        self._apply_worker = None
        self._apply_start = None
        self.progress.setVisible(False)
        self.controls.apply_btn.enabled = True
        self.controls.cancel_btn.enabled = False

    def _drop_pending_apply(self, why: str) -> None:
        """Forget an Apply to all that waited for traces that will not come."""
        if self._apply_start is None:
            return
        worker = self._apply_worker
        self._apply_done()
        if worker is not None and getattr(worker, "pbar", None) is not None:
            worker.pbar.close()
        self.status.setText(f"Apply to all cancelled: {why}")

    def cancel_apply(self, *_):
        """Stop a running Apply to all (nothing is stored)."""
        if self._apply_start is not None:
            self._drop_pending_apply("cancelled before the traces were read.")
        elif self._apply_worker is not None:
            self._apply_worker.quit()
            self.status.setText("Cancelling...")

    @property
    def apply_running(self) -> bool:
        """True while an Apply to all worker runs (until its ``finished``)."""
        return self._apply_worker is not None

    @property
    def idle(self) -> bool:
        """True when no trace extraction, estimation or live solve is pending,
        running, or waiting to be drawn."""
        return (not self._builds and self._estimate_worker is None
                and not self._timer.isActive() and self._live.idle
                and self._drawn_gen >= self._gen and not self._overlay_timer.isActive()
                and not self._edit_timer.isActive())

    # ============================================================ source
    def _candidate_labels(self):
        return [l for l in self.viewer.layers if isinstance(l, Labels) and not is_overlay(l)]

    def _labels_choices(self, widget=None):
        return [(l.name, l) for l in self._candidate_labels()]

    def _image_choices(self, widget=None):
        out = [(_NONE, None)]
        out += [(l.name, l) for l in self.viewer.layers
                if isinstance(l, Image) and not is_overlay(l) and l.ndim >= 3]
        return out

    def _default_image(self, labels):
        # the first movie whose frames match the labels, else none
        if labels is None:
            return None
        if "traces" in labels.metadata.get("catune", {}):
            return None  # the layer carries its traces: no movie to read
        for _, l in self._image_choices()[1:]:
            if tuple(l.data.shape[-2:]) == tuple(labels.data.shape[-2:]):
                return l
        return self._image_choices()[1][1] if len(self._image_choices()) > 1 else None

    def _layers_changed(self, info=(None, None)) -> None:
        # the combos follow the layer list at once; the source itself changes on
        # the next event-loop turn: adding or removing our overlay layers inside
        # napari's own layer-list event crashed vispy
        old_img, old_lab = self.image_combo.value, self.labels_combo.value
        with self.image_combo.changed.blocked(), self.labels_combo.changed.blocked():
            self.labels_combo.reset_choices()
            self.image_combo.reset_choices()
            if old_lab is None and self.labels_combo.choices:
                # a first Labels layer appeared: pick the best movie for it
                self.image_combo.value = self._default_image(self.labels_combo.value)
        gone = info[1] if info[0] == "removed" else None
        src = self._source
        lost = src is not None and gone is not None and gone in (src.labels, src.image)
        if lost:
            # warn only when work was lost; a plain removal (or the viewer
            # closing, which removes every layer) just resets the widget, whose
            # status line then says what to pick
            busy = not self._live.idle or self._apply_worker is not None or bool(self._builds)
            self._cancel_live()
            if self._apply_worker is not None:
                self._apply_worker.quit()
            if busy:
                _notify_warning(
                    f"Layer '{gone.name}' was removed while the CaTune tuner used it; "
                    "choose another data source in the tuner.")
        if lost or self.image_combo.value is not old_img \
                or self.labels_combo.value is not old_lab:
            self._source = None
            QTimer.singleShot(0, self._deferred_source_changed)

    def _deferred_source_changed(self) -> None:
        if not self._closed:
            self._source_changed()

    def _labels_picked(self, *_) -> None:
        with self.image_combo.changed.blocked():
            self.image_combo.value = self._default_image(self.labels_combo.value)
        self._source_changed()

    def _source_changed(self, *_) -> None:
        if self._apply_start is not None and not self._building():
            self._drop_pending_apply("the data source changed.")
        self._cancel_live()
        self._source = None
        self._selected = []
        self._sel = None
        self._pending_sel = None
        self._showing_all = False
        self._warm.clear()
        self._warm_gen.clear()
        self._solve_cost.clear()  # a new source: no warm solve is known to be cheap
        self._last_result = None
        self.plots.set_rois([], [], np.zeros((0, 0)), self.params.fs)
        self.overlays.clear()
        self.roi_table.setRowCount(0)
        src = self._ensure_source()
        if src is not None:
            self._source_ready(src)

    def _source_ready(self, src: _Source) -> None:
        """The traces of the chosen layers are at hand: list and select ROIs."""
        if src.fs_hint and src.fs_hint != self.params.fs:
            try:
                self.controls.set_params(self.params.replace(fs=src.fs_hint), emit=False)
            except ValueError:
                _notify_warning(f"The layer's sampling rate {src.fs_hint} Hz is outside "
                                "1-1000 Hz; set fs by hand.")
        self._fill_table()
        self._draw_kernel(self.params)
        pending, self._pending_sel = self._pending_sel, None
        if pending is not None and pending[1] is None:
            self.select_most_active(pending[0])
        elif pending is not None:
            ids = [i for i in pending[0] if i in src.row] if pending[2] else pending[0]
            if ids:
                self.select_rois(ids, add=pending[1], _quiet=pending[2])
            else:
                self.select_most_active(1)
        else:
            self.select_most_active(1)
        if self._apply_start is not None:
            start, self._apply_start = self._apply_start, None
            start(src)
        # the overlay layers come on the next turn, while the first solve runs
        QTimer.singleShot(0, lambda s=src: self._create_overlays(s))

    def _hook_layer(self, layer) -> None:
        """Drop cached traces when ``layer``'s data are replaced or painted.

        The cache is keyed by object ids, which a new array may reuse; the
        events make the invalidation exact.
        """
        if layer is None:
            return
        known = self._hooked.get(id(layer))
        if known is not None and known[0]() is layer:
            return  # (an id of a deleted layer may be reused: hence the check)
        ref = weakref.ref(self)
        layer_ref = weakref.ref(layer)

        def changed(event=None):
            me, lay = ref(), layer_ref()
            if me is not None and lay is not None and not me._closed:
                me._layer_data_changed(lay)

        emitters = [layer.events.data]
        if isinstance(layer, Labels):
            emitters.append(layer.events.paint)
        for em in emitters:
            em.connect(changed)
        self._hooked[id(layer)] = (layer_ref, changed)

    def _unhook_layers(self) -> None:
        for layer_ref, cb in self._hooked.values():
            layer = layer_ref()
            if layer is None:
                continue
            for name in ("data", "paint"):
                em = getattr(layer.events, name, None)
                try:
                    if em is not None:
                        em.disconnect(cb)
                except Exception:  # noqa: BLE001 - already disconnected
                    pass
        self._hooked.clear()

    def _layer_data_changed(self, layer) -> None:
        self._cache = {k: v for k, v in self._cache.items()
                       if v.labels is not layer and v.image is not layer}
        src = self._source
        if src is not None and layer in (src.labels, src.image):
            # painting comes as a burst of events: rebuild once the strokes pause
            self._edit_timer.start()

    def _rebuild_after_edit(self) -> None:
        if self._closed or self._source is None:
            return
        keep = list(self._selected)
        self._source_changed()
        if keep:
            self.select_rois(keep, _quiet=True)

    def _create_overlays(self, src: _Source) -> None:
        if self._closed or src is not self._source or src.labels not in self.viewer.layers:
            return
        time_scale = time_translate = None
        if src.image is not None:
            time_scale, time_translate = src.image.scale[0], src.image.translate[0]
        try:
            self.overlays.set_source(src.labels, src.roi_ids, src.n_frames,
                                     time_scale or 1.0, time_translate or 0.0)
            self.overlays.set_selection(self._selected)
        except Exception as e:  # noqa: BLE001 - overlays are optional; tuning still works
            _notify_warning(f"Could not create the CaTune overlay layers: {e}")
        self._update_activity_overlay()

    def _source_key(self):
        labels, image = self.labels_combo.value, self.image_combo.value
        return (id(labels), id(labels.data), id(image), id(image.data) if image else None)

    def _building(self) -> bool:
        """True while the traces of the chosen layers are being extracted."""
        labels = self.labels_combo.value
        return labels is not None and self._source_key() in self._builds

    def _ensure_source(self) -> _Source | None:
        """The current source; from the cache, or None while a worker builds it."""
        if self._source is not None:
            if self._source.labels in self.viewer.layers:
                return self._source
            self._source = None
        labels = self.labels_combo.value
        image = self.image_combo.value
        if labels is None or labels not in self.viewer.layers:
            self.status.setText("Add a Labels layer of ROIs (and a movie) to start tuning.")
            return None
        key = self._source_key()
        src = self._cache.get(key)
        if src is None:
            self._start_build(key, image, labels)
            return None
        self._source = src
        return src

    def _start_build(self, key, image, labels) -> None:
        """Extract traces in a worker; the source becomes current when it returns."""
        from napari.qt.threading import create_worker

        if key in self._builds:
            return
        try:
            work = self._build_job(image, labels)
        except _SourceError as e:
            _notify_error(str(e))
            return
        what = f"'{image.name}'" if image is not None else f"'{labels.name}'"
        worker = create_worker(work, _progress={"desc": f"CaTune: reading traces of {what}"},
                               _start_thread=False, _ignore_errors=True)
        self._builds[key] = worker

        def returned(out):
            if self._closed:
                return
            src, missing = out
            self._cache[key] = src
            self._hook_layer(image)
            self._hook_layer(labels)
            # a few pairs cached (traces are small next to a movie); oldest out
            while len(self._cache) > 3:
                self._cache.pop(next(iter(self._cache)))
            if labels not in self.viewer.layers or self._source is not None \
                    or self.labels_combo.value is not labels \
                    or self.image_combo.value is not image or self._source_key() != key:
                return  # the user chose other layers meanwhile: keep it cached only
            if missing:
                _notify_warning(f"ROI(s) {missing} have no pixels in '{labels.name}' and "
                                "cannot be clicked; use the list.")
            self.status.setText(f"{src.traces.shape[0]} ROIs, {src.n_frames} frames.")
            self._source = src
            self._source_ready(src)

        def errored(e):
            if self._closed:
                return
            self._drop_pending_apply("the traces could not be read.")
            if isinstance(e, _SourceError):
                _notify_error(str(e))
                return
            _notify_error(
                f"Could not read traces from {what} with ROIs '{labels.name}': "
                f"{type(e).__name__}: {e}. Check that the movie's file or store is "
                "still readable (or load the movie into memory), then choose the "
                "layers again in the CaTune tuner.")
            self.status.setText("Reading the traces failed; choose the layers again.")

        def finished():
            if self._closed:
                return
            if self._builds.get(key) is worker:
                del self._builds[key]
            if not self._builds:
                self._set_busy(None)

        worker.returned.connect(returned)
        worker.errored.connect(errored)
        worker.finished.connect(finished)
        self._set_busy(f"Extracting traces from {what}...")
        worker.start()

    def _build_job(self, image, labels):
        """Check the layers here (cheap); return the function the worker runs."""
        from .. import traces as _traces

        meta = labels.metadata.get("catune", {}) if isinstance(labels.metadata, dict) else {}
        lab = np.asarray(labels.data)
        fs_hint = meta.get("fs")
        if image is None:
            tr = meta.get("traces")
            if tr is None:
                raise _SourceError(
                    f"Labels layer '{labels.name}' has no traces and no movie is chosen: "
                    "pick the movie (Image layer, T x Y x X) in the CaTune tuner.")
            ids = meta.get("roi_ids")
        else:
            fs_hint = image.metadata.get("catune", {}).get("fs") or fs_hint
            movie = image.data
            if movie.ndim != 3 or tuple(movie.shape[-2:]) != lab.shape[-2:] \
                    or lab.ndim != 2:
                raise _SourceError(
                    f"Movie '{image.name}' has shape {tuple(movie.shape)} and labels "
                    f"'{labels.name}' have shape {lab.shape}: the movie must be (T, Y, X) "
                    "with the same Y, X as the labels. Choose matching layers.")
        fs = float(fs_hint or self.params.fs)

        def work():
            missing = []
            if image is None:
                tr_ = np.asarray(tr, dtype=np.float64)
                ids_ = np.arange(1, tr_.shape[0] + 1) if ids is None else np.asarray(ids)
                if tr_.ndim != 2 or len(ids_) != tr_.shape[0]:
                    raise _SourceError(
                        f"Labels layer '{labels.name}' carries traces of shape "
                        f"{tr_.shape} for {len(ids_)} ROI ids; they must match (n, T).")
                present = np.isin(ids_, np.unique(lab))
                missing = ids_[~present].tolist()
            else:
                tr_, ids_ = _traces.extract_traces(movie, lab)
                tr_ = np.asarray(tr_, dtype=np.float64)
                ids_ = np.asarray(ids_)
            if tr_.shape[0] == 0:
                raise _SourceError(f"Labels layer '{labels.name}' has no ROIs (all pixels "
                                   "are 0). Paint or load ROIs first.")
            if tr_.shape[1] < 2:
                raise _SourceError(f"The traces have {tr_.shape[1]} frame(s); at least 2 "
                                   "are needed.")
            try:
                snr = np.asarray(_traces.roi_snr(tr_, fs), float)
            except Exception:  # noqa: BLE001 - a quality score is optional
                snr = np.full(tr_.shape[0], np.nan)
            src = _Source(image, labels, tr_, ids_.astype(np.int64), snr,
                          float(fs_hint) if fs_hint else None)
            return src, missing

        return work

    def _set_busy(self, text: str | None) -> None:
        if text is None:
            if not self._builds and self._estimate_worker is None:
                self.busy_bar.setVisible(False)
            return
        self.status.setText(text)
        self.busy_bar.setVisible(True)

    def _quit_workers(self) -> None:
        # Python-side only: may run after the Qt objects were deleted
        for w in [self._apply_worker, self._estimate_worker, *self._builds.values()]:
            if w is not None:
                try:
                    w.quit()
                except Exception:  # noqa: BLE001 - already finished
                    pass

    # ============================================================ table
    def _fill_table(self) -> None:
        src = self._source
        t = self.roi_table
        t.blockSignals(True)
        t.setSortingEnabled(False)
        t.setRowCount(len(src.roi_ids))
        for r, (rid, snr) in enumerate(zip(src.roi_ids, src.snr)):
            a = QTableWidgetItem()
            a.setData(Qt.DisplayRole, int(rid))
            b = QTableWidgetItem()
            b.setData(Qt.DisplayRole, round(float(snr), 2) if np.isfinite(snr) else -1.0)
            t.setItem(r, 0, a)
            t.setItem(r, 1, b)
        t.setSortingEnabled(True)
        t.sortItems(1, Qt.DescendingOrder)  # most active first
        t.blockSignals(False)

    def _table_rows_of(self, ids) -> list[int]:
        want = set(int(i) for i in ids)
        return [r for r in range(self.roi_table.rowCount())
                if int(self.roi_table.item(r, 0).data(Qt.DisplayRole)) in want]

    def _sync_table(self) -> None:
        t = self.roi_table
        t.blockSignals(True)
        t.clearSelection()
        mode = t.selectionMode()
        t.setSelectionMode(QAbstractItemView.MultiSelection)
        for r in self._table_rows_of(self._selected):
            t.selectRow(r)
        t.setSelectionMode(mode)
        t.blockSignals(False)

    def _table_selection_changed(self) -> None:
        rows = sorted({i.row() for i in self.roi_table.selectedIndexes()})
        ids = [int(self.roi_table.item(r, 0).data(Qt.DisplayRole)) for r in rows]
        if ids != self._selected:
            self.select_rois(ids)

    # ============================================================ viewer
    def _on_mouse(self, viewer, event):
        if event.button != 1:
            return
        src = self._source
        if src is None or src.labels not in viewer.layers:
            return
        if getattr(src.labels, "mode", "pan_zoom") not in ("pan_zoom", "pick", "transform"):
            return  # the user is painting or erasing
        press = np.asarray(event.pos, dtype=float)
        yield
        moved = False
        while event.type == "mouse_move":
            if np.hypot(*(np.asarray(event.pos, dtype=float) - press)) > 3:
                moved = True
            yield
        if moved:
            return  # a pan, not a click
        try:
            value = src.labels.get_value(event.position, view_direction=event.view_direction,
                                         dims_displayed=event.dims_displayed, world=True)
        except Exception:  # noqa: BLE001 - a click outside the layer is not an error
            return
        if value is None or int(value) == 0:
            return
        self.select_rois([int(value)], add="Shift" in event.modifiers)

    def _dims_changed(self) -> None:
        step = self.viewer.dims.current_step
        if self.viewer.dims.ndim >= 3 and self._source is not None:
            self.plots.set_cursor_frame(int(step[0]))

    def _goto_frame(self, frame: int) -> None:
        if self._source is None or self.viewer.dims.ndim < 3:
            return
        frame = int(min(max(frame, 0), self._source.n_frames - 1))
        self.viewer.dims.set_current_step(0, frame)
        self.plots.set_cursor_frame(frame)

    def _apply_theme(self) -> None:
        try:
            theme = get_theme(self.viewer.theme)
            bg, fg = str(theme.background.as_hex()), str(theme.text.as_hex())
        except Exception:  # noqa: BLE001 - fall back to a dark theme
            bg, fg = "#262930", "#f0f1f2"
        self.plots.set_theme(bg, fg)

    # ============================================================ live
    def _draw_kernel(self, p: TuningParams) -> None:
        # one landmark computation per event, shared with the controls' read-out
        self.plots.set_kernel(p.tau_rise, p.tau_decay, p.fs,
                              self.controls.landmarks(p.tau_rise, p.tau_decay))

    @staticmethod
    def _shown_key(p: TuningParams) -> tuple:
        # what the plotted traces depend on: the filter and, when it is on, its taus/fs
        return (True, p.tau_rise, p.tau_decay, p.fs) if p.filter_enabled else (False,)

    def _params_changed(self, p: TuningParams) -> None:
        self._showing_all = False  # the overlay follows the live selection again
        try:
            self._draw_kernel(p)
        except ValueError as e:
            _notify_error(f"Parameters out of range: {e}")
            return
        if self._sel is not None and self._source is not None and self._selected \
                and self.plots.fs != p.fs:
            self.plots.set_raw(None, p.fs)
            self.plots.set_cursor_frame(int(self.viewer.dims.current_step[0])
                                        if self.viewer.dims.ndim >= 3 else 0)
        # submit at once: the solve thread runs while Qt repaints the sliders and
        # the kernel; the solver keeps only the newest request, which coalesces
        # a burst of slider events.  The plotted traces follow with the result
        # (bandpassed when the filter is on), so trace and fit always match.
        self._request_solve(p)

    def _show_selection(self) -> None:
        src = self._source
        ids = self._selected
        rows = [src.row[i] for i in ids]
        colors = [src.labels.get_color(i) for i in ids]
        colors = [c if c is not None else (1, 1, 1, 1) for c in colors]
        p = self.params
        # one copy per selection, reused by every slider event
        sel = {"ids": list(ids), "source": src, "raw": src.traces[rows],
               "shown": self._shown_key(p), "filtered": None, "filter_key": None}
        if p.filter_enabled:
            sel["filtered"] = bandpass_filter(sel["raw"], p.tau_rise, p.tau_decay, p.fs)
            sel["filter_key"] = sel["shown"]
        self._sel = sel
        self.plots.set_rois(ids, colors, sel["filtered"] if p.filter_enabled else sel["raw"],
                            p.fs)
        self._dims_changed()
        try:
            self.overlays.set_selection(ids)
        except Exception as e:  # noqa: BLE001 - cosmetic; keep tuning
            _notify_warning(f"Could not outline the selection: {e}")
        self._timer.start()

    def _cancel_live(self) -> None:
        self._timer.stop()
        self._gen += 1
        self._drawn_gen = self._gen  # nothing older may be drawn any more

    def _request_solve(self, p: TuningParams | None = None) -> None:
        src = self._source
        sel = self._sel
        if src is None or not self._selected or sel is None or sel["source"] is not src \
                or sel["ids"] != self._selected:
            return
        if p is None:
            try:
                p = self.params
            except ValueError as e:
                _notify_error(f"Parameters out of range: {e}")
                return
        ids = sel["ids"]
        init = None
        if all(i in self._warm for i in ids):
            init = np.stack([self._warm[i] for i in ids])
        self._gen += 1
        filtered = None
        if p.filter_enabled and sel["filter_key"] == self._shown_key(p):
            filtered = sel["filtered"]  # e.g. only lambda moved: no new filtering
        job = {"gen": self._gen, "ids": ids, "source": src, "params": p,
               "traces": sel["raw"], "filtered": filtered, "init": init,
               "baseline": p.baseline}
        # only a warm solve known to be short runs here on the GUI thread; a
        # cold one (new ROI, new source) can take far longer than a frame
        cost = self._solve_cost.get((len(ids), src.n_frames), math.inf)
        if init is not None and cost < self.SYNC_SOLVE_S and self._live.idle:
            # no thread hop: the plots repaint once together with the slider
            self._solve_done(_run_job(job))
        else:
            self._live.submit(job)

    def _solve_done(self, job: dict) -> None:
        if self._closed:
            return
        if job["init"] is not None and "error" not in job:
            # the sync/async choice needs the cost of a warm solve
            self._solve_cost[tuple(np.atleast_2d(job["traces"]).shape)] = job["elapsed"]
        if "error" in job:
            e = job["error"]
            _notify_error(f"Deconvolution failed: {e}. Adjust the parameters or the ROI "
                          f"selection.")
            self._drawn_gen = max(self._drawn_gen, job["gen"])
            return
        src = job["source"]
        if src is not self._source or src.labels not in self.viewer.layers:
            return  # the data source changed or its layer was removed meanwhile
        res = job["result"]
        act = np.atleast_2d(np.asarray(res.activity, dtype=np.float64))
        fit = np.atleast_2d(np.asarray(res.reconvolution, dtype=np.float64))
        gen = job["gen"]
        for i, rid in enumerate(job["ids"]):
            # a late result must not replace a warm start from newer parameters
            if gen >= self._warm_gen.get(rid, -1):
                self._warm[rid] = act[i]
                self._warm_gen[rid] = gen
        if gen <= self._drawn_gen or job["ids"] != self._selected:
            return  # stale: something newer is on screen or the selection moved on
        self._drawn_gen = gen
        self.last_solve_seconds = job["elapsed"]
        sel, p = self._sel, job["params"]
        if sel is not None and sel["ids"] == job["ids"] and sel["source"] is src:
            key = self._shown_key(p)
            if p.filter_enabled:
                sel["filtered"], sel["filter_key"] = job["filtered"], key
            if sel["shown"] != key:
                # a toggle moves the trace between raw and bandpassed levels:
                # stack the bands anew; a tau move keeps them in place
                restack = sel["shown"][0] != key[0]
                self.plots.set_raw(job["filtered"] if p.filter_enabled else sel["raw"],
                                   restack=restack)
                sel["shown"] = key
        self.plots.set_fit(fit, act)
        self._last_result = (job["ids"], job["params"], fit, act)
        self.plots_updated.emit(gen)
        if self._apply_worker is None and not self._showing_all:
            # the viewer canvas repaints slowly (software GL: tens of ms), so the
            # overlay is redrawn once a drag pauses while the plots keep up
            self._overlay_timer.start()

    _showing_all = False

    def _update_activity_overlay(self) -> None:
        src = self._source
        if src is None:
            return
        mode = self.controls.overlay_mode.value
        res = src.labels.metadata.get("catune", {}).get("results") if self._showing_all \
            else None
        try:
            if res is not None:
                vals = res["activity"] if mode == "activity" else res["reconvolution"]
                self.overlays.set_activity(res["roi_ids"], vals)
            elif self._last_result is not None:
                ids, _, fit, act = self._last_result
                self.overlays.set_activity(ids, act if mode == "activity" else fit)
        except Exception as e:  # noqa: BLE001 - cosmetic
            _notify_warning(f"Could not update the activity layer: {e}")

    def _store_results(self, src, p, act, rec, base, conv) -> None:
        from .. import traces as _traces

        meta = src.labels.metadata.setdefault("catune", {})
        meta["results"] = {"activity": act, "reconvolution": rec, "baseline": base,
                           "converged": conv, "roi_ids": src.roi_ids.copy(),
                           "params": p.to_dict()}
        meta["params"] = p.to_dict()
        try:
            snr = np.asarray(_traces.roi_snr(src.traces, p.fs), float)
        except Exception:  # noqa: BLE001
            snr = src.snr
        features = {
            "index": src.roi_ids.copy(),
            "roi_id": src.roi_ids.copy(),
            "snr": snr,
            "event_rate_hz": _event_rate(act, p.fs),
            "baseline": base.copy(),
            "converged": conv.copy(),
        }
        try:
            src.labels.features = features
        except Exception as e:  # noqa: BLE001
            _notify_warning(f"Results stored in metadata, but features failed: {e}")
        self._showing_all = True
        self._update_activity_overlay()
        self.status.setText(f"Applied to {len(src.roi_ids)} ROIs; results stored on "
                            f"'{src.labels.name}' (save them with File > Save Selected "
                            "Layers as .npy or .csv).")

    # ============================================================ dialogs
    def _save_dialog(self, *_):
        path, _ = QFileDialog.getSaveFileName(self, "Save CaTune parameters", "catune_params.json",
                                              "CaTune parameters (*.json)")
        if path:
            self.save_params(path)

    def _load_dialog(self, *_):
        path, _ = QFileDialog.getOpenFileName(self, "Load CaTune parameters", "",
                                              "CaTune parameters (*.json)")
        if path:
            self.load_params(path)

    # ============================================================ teardown
    def closeEvent(self, event):  # noqa: N802 - Qt API
        self._teardown()
        super().closeEvent(event)

    def event(self, ev):  # noqa: D102 - Qt API
        if ev.type() == QEvent.ParentChange:
            # napari's "close" of a dock takes the widget out (parent None)
            # without deleting it: stop reacting to the viewer then
            if self.parent() is not None:
                self._docked = True
            elif self._docked:
                self._teardown()
        return super().event(ev)

    def _teardown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._unhook_layers()
        for t in (self._timer, self._edit_timer, self._overlay_timer):
            t.stop()
        self._live.stop()
        self._quit_workers()
        _disconnect(self.viewer, self._hooks)
