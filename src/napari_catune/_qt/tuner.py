"""CaTune tuner: the dock widget.

It renders a :class:`~napari_catune.session.TuningSession` and forwards input
to it: the session holds the source, the selection, the parameters and the
results, and survives closing and reopening the dock (one per viewer).  Live
solves run on a background thread that keeps only the newest request (short
warm solves run in place); extraction, estimation and Apply to all run in
napari workers with progress and Cancel.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
from napari.utils import notifications
from qtpy.QtCore import QObject, QSize, Qt, QTimer, Signal
from qtpy.QtWidgets import QCheckBox, QComboBox, QLabel, QPushButton, QWidget

from .. import session as _ses
from ._style import palette_of, selection_colors
from .actions import Actions
from .controls import ParamControls
from .jobs import JobBar
from .kernelplot import KernelPlot
from .plotsync import PlotsFollow
from .layout import lay_out
from .neuropilbox import NeuropilBox
from .overlays import Overlays
from .roilist import RoiList
from . import settings as _settings
from .source import SourcePicker
from .sourcehooks import SourceHooks
from .spectrum import SpectrumPlot
from .traceview import TraceView, trace_name
from .viewerhooks import ViewerHooks

MAX_ROIS = _ses.MAX_ROIS
_SESSIONS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def session_of(viewer) -> _ses.TuningSession:
    """The viewer's tuning session (created on first use, kept while the viewer lives)."""
    s = _SESSIONS.get(viewer)
    if s is None:
        s = _SESSIONS[viewer] = _ses.TuningSession()
        baseline = _settings.load().baseline  # the baseline last chosen, in any napari
        if baseline and baseline != str(s.params.baseline):
            s.set_params(baseline=baseline, record=False)
    return s


class _Relay(QObject):
    done = Signal(object)  # a finished SolveRequest, delivered on the GUI thread


class CaTuneTuner(SourceHooks, ViewerHooks, QWidget):
    """Dock widget: pick ROIs, move sliders, see traces, fits and activity live."""

    #: warm live solves expected to finish within this many seconds run in place
    #: (with the hand-over after it, ~3 ms for 20 rows, the GUI thread stays
    #: under 16 ms per move; 12 ms let 20 x 14,400 frames block it for 16-20 ms)
    SYNC_SOLVE_S = 0.008
    #: emitted with the generation number once the plots hold a new live result
    plots_updated = Signal(int)

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.setObjectName("CaTuneTuner")
        self.session = s = session_of(napari_viewer)
        keep = list(s.selection)
        s.set_source(None)
        self._closed = False
        self._docked = False
        self._pending_sel = (keep, False, True) if keep else None
        self._showing_all = False
        self._overlays_for = None
        self._solve_cost: dict = {}
        self.last_solve_seconds = float("nan")

        self.jobs = JobBar()
        self.picker = SourcePicker(napari_viewer, s.cache, self.jobs, lambda: s.params.fs,
                                   lambda: s.neuropil)
        self.neuropil_box = NeuropilBox(s)
        self.controls = ParamControls(s, readouts_later=True)
        self.kernel = KernelPlot()
        self.spectrum = SpectrumPlot()
        self.roi_list = RoiList(s)
        self.traces = TraceView()
        self.traces.restore = s.view_window  # the time window of the last dock
        self.traces.window_moved.connect(self._window_moved)
        self.status = QLabel("")
        self.overlay_mode = QComboBox()
        self.overlay_mode.addItems(["activity", "fit"])
        self.prefs = _settings.load()
        self.overlay_mode.setCurrentText(self.prefs.overlay)
        self.overlay_mode.setToolTip("What the 'CaTune activity' layer paints on the ROIs")
        self.pin_btn = QPushButton("Pin fit")
        self.pin_btn.setCheckable(True)
        self.pin_btn.setToolTip("Keep the current fit (dashed) to compare new parameters with")
        self.residual_box = QCheckBox("residual")
        self.residual_box.setToolTip("Show the trace minus the fit: what the model leaves out")
        self.truth_box = QCheckBox("true spikes")
        self.truth_box.setChecked(True)
        self.truth_box.setToolTip("Draw the data's true spikes or the events loaded with "
                                  "Events CSV... as ticks under the activity")
        self.truth_box.setVisible(False)
        self.truth_btn = QPushButton("Events CSV...")
        self.truth_btn.setToolTip("Load ground-truth event times (a CSV with columns roi, "
                                  "time_s) and draw them as ticks under the activity")
        lay_out(self)
        if self.prefs.kernel_mode == "shape":
            self.controls.kernel_mode.setCurrentIndex(1)
        self.overlays = Overlays(napari_viewer)
        self.actions = Actions(self)

        self._live = _ses.LiveSolver(self._from_thread)
        self._relay = _Relay()
        self._relay.done.connect(self._deliver)
        s.submit = self._submit
        # first use: compile in a subprocess, fit with the NumPy solver meanwhile;
        # else load the cached live solver on a thread
        if _ses._solver.start_background_compile() != "cached":
            self.status.setText("First use: " + _ses._solver.FALLBACK_MESSAGE + ".")
        else:
            _ses._solver.warm_up(background=True, live_only=True)
        self._overlay_timer = QTimer(self)
        self._overlay_timer.setSingleShot(True)
        self._overlay_timer.setInterval(300)
        self._overlay_timer.timeout.connect(self.update_overlay)
        self._plots = PlotsFollow(self, self._update_kernel_plots,
                                  lambda: self.session.pending)

        self._session_slots = [
            (s.source_changed, self._source_changed), (s.selection_changed, self._show_selection),
            (s.params_changed, self._params_changed), (s.result_changed, self._result),
            (s.failed, notifications.show_error), (s.pinned_changed, self.traces.set_pinned),
            (s.truth_changed, self._truth_changed), (s.neuropil_changed, self._neuropil_changed)]
        for sig, slot in self._session_slots:
            sig.connect(slot)
        self.picker.ready.connect(self._source_ready)
        self.picker.changed.connect(self._source_dropped)
        self.picker.changed.connect(self._movie_chosen)
        self.picker.cancelled.connect(lambda _: s.set_neuropil(on=False))
        self.picker.status.connect(self.status.setText)
        self.picker.failed.connect(lambda why: self.actions._drop_pending(
            "the traces could not be read.", after_status=why == "cancelled"))
        self.traces.frame_requested.connect(self._goto_frame)
        self.overlay_mode.currentTextChanged.connect(lambda _: self.update_overlay())
        # what the user chooses is kept for the next tuner (and the next napari)
        self.overlay_mode.currentTextChanged.connect(self._remember("overlay"))
        self.controls.kernel_mode.currentIndexChanged.connect(
            lambda i: self._remember("kernel_mode")("shape" if i == 1 else "tau"))
        self.controls.baseline.currentTextChanged.connect(self._remember("baseline"))
        self.pin_btn.toggled.connect(lambda on: s.pin() if on else s.unpin())
        self.residual_box.toggled.connect(self.traces.show_residual)
        self.truth_box.toggled.connect(lambda _: self._show_selection(s.selection))
        self._hook_viewer()
        self._apply_theme()
        self.kernel.set_kernel(s.params.tau_rise, s.params.tau_decay, s.params.fs)
        self.spectrum.set_band(s.params.tau_rise, s.params.tau_decay, s.params.fs,
                               s.params.filter_enabled)
        self._movie_chosen()
        self.picker.refresh()

    def _remember(self, key):
        def store(value):
            try:
                setattr(self.prefs, key, value)
            except ValueError:  # not a value worth keeping
                pass
        return store

    def sizeHint(self):  # noqa: N802 - Qt API
        return QSize(760, 900)

    # ============================================================ API
    @property
    def params(self):
        return self.session.params

    def set_params(self, p) -> bool:
        """Move to parameters ``p`` (TuningParams or dict); False (and a message)
        when the core refuses them, which keeps the current ones."""
        try:
            self.session.set_params(p)
        except ValueError as e:
            notifications.show_error(f"Parameters not applied: {e}")
            return False
        return True

    @property
    def selected_rois(self) -> list[int]:
        return list(self.session.selection)

    @property
    def labels_combo(self):
        return self.picker.labels_combo

    @property
    def image_combo(self):
        return self.picker.image_combo

    def select_rois(self, ids, add: bool = False, *, _quiet: bool = False) -> list[int]:
        """Select ROIs by id (``add`` keeps the current ones), at most 20; kept
        until the traces are ready when they are still being read."""
        ids = [int(i) for i in np.atleast_1d(np.asarray(ids, dtype=np.int64))]
        src = self.picker.ensure()
        if src is None:
            if self.picker.building:
                self._pending_sel = (ids, add, _quiet)
                return ids[-MAX_ROIS:]
            notifications.show_warning("No ROIs to select: choose a Labels layer in the "
                                       "CaTune tuner.")
            return self.selected_rois
        if self.session.source is not src:
            self.session.set_source(src)
        unknown, cut = self.session.select(ids, add)
        if unknown and not _quiet:
            notifications.show_warning(
                f"ROI id(s) {unknown[:20]} are not in '{src.name}' (or have no pixels); "
                "they were skipped.")
        if cut:
            notifications.show_warning(f"At most {MAX_ROIS} ROIs are shown at once; keeping "
                                       f"the last {MAX_ROIS} selected.")
        return self.selected_rois

    def select_most_active(self, k: int = 4) -> list[int]:
        if self.session.source is None:
            if self.picker.building:
                self._pending_sel = (k, None, True)
            return []
        return self.select_rois(self.session.most_active(k))

    @property
    def idle(self) -> bool:
        """True when nothing is being read, estimated, solved or waiting to be drawn."""
        return (not self.picker.builds and self.actions.estimate_worker is None
                and not self.spectrum.pending
                and self._live.idle and not self.session.pending and not self.traces.pending
                and not self._overlay_timer.isActive() and not self._plots.waiting
                and not self.picker._edit_timer.isActive())

    # the actions (files, estimate, apply to all) live in actions.py
    def save_params(self, path) -> bool:
        return self.actions.save_params(path)

    def load_params(self, path):
        return self.actions.load_params(path)

    def estimate_from_data(self):
        return self.actions.estimate()

    def apply_to_all(self):
        return self.actions.apply()

    def cancel_apply(self, *_):
        self.actions.cancel_apply()

    @property
    def apply_running(self) -> bool:
        return self.actions.apply_worker is not None

    @property
    def last_estimate(self):
        return self.actions.last_estimate

    # ======================================================= rendering
    def _window_moved(self, x0: float, x1: float) -> None:
        if not self._closed:  # kept in the session for a reopened dock
            self.session.view_window = (x0, x1, self.traces.n_frames, self.traces.fs)

    def _colors(self, ids) -> list:
        """The selected rows' colours, distinct from each other (napari's random
        label colours can nearly match); the canvas outlines them alike."""
        return selection_colors(len(ids), self.traces._pal or palette_of(self.viewer))

    def _show_selection(self, ids) -> None:
        src = self.session.source
        if src is None:
            return
        rows = [src.row[i] for i in ids]
        truth = src.truth_seconds(self.params.fs) if self.truth_box.isChecked() else None
        colors = self._colors(ids)
        self.traces.set_rows(ids, colors, src.traces[rows], self.params.fs,
                             trace_name(src), truth)
        self.spectrum.set_traces(src.traces[rows], src, self.params.fs)
        res = self.session.result
        if res is not None and res.ids == tuple(ids):
            self.traces.set_result(res)  # the same ROIs drawn anew (theme, fs, ticks)
        self.traces.set_pinned(self.session.pinned)
        self.controls.set_source_noise(src.noise)  # lambda's slider: the data's scale
        sig = src.noise[rows] if rows else src.noise
        self.controls.set_noise(float(np.nanmedian(sig)) if np.isfinite(sig).any() else math.nan)
        self._dims_changed()
        try:
            self.overlays.set_selection(ids, colors)
        except Exception as e:  # noqa: BLE001 - cosmetic; keep tuning
            notifications.show_warning(f"Could not outline the selection: {e}")

    def _params_changed(self, p) -> None:
        self._showing_all = False  # the overlay follows the live selection again
        if self._overlay_timer.isActive():
            self._overlay_timer.start()  # still moving: the canvas repaints once it stops
        src = self.session.source
        self._plots.due(p, now=src is None or not self.session.selection)  # no solve follows
        if src is not None and self.traces.fs != p.fs and self.session.selection:
            self._show_selection(self.session.selection)  # a new time axis
        if src is not None and src.origin and src.origin[1] in self.viewer.layers:
            src.origin[1].metadata.setdefault("catune", {})["params"] = p.to_dict()

    def _update_kernel_plots(self, p) -> None:
        self.kernel.set_kernel(p.tau_rise, p.tau_decay, p.fs)
        self.spectrum.set_band(p.tau_rise, p.tau_decay, p.fs, p.filter_enabled)
        self.controls.show_readouts(p)

    def _result(self, res) -> None:
        self.traces.set_result(res)
        self.plots_updated.emit(res.gen)
        src = self.session.source
        if self._overlays_for is not src:
            # the viewer's layers come after the first fit is on screen: adding
            # three layers repaints the canvas several times (software GL: ~1 s)
            self._overlays_for = src
            QTimer.singleShot(0, lambda: self._create_overlays(src))
            return
        if self.actions.apply_worker is None and not self._showing_all:
            # the canvas repaints slowly (software GL: tens of ms): once a drag pauses,
            # never between a move and its result
            self._overlay_timer.start()

    def update_overlay(self) -> None:
        mode = self.overlay_mode.currentText()
        b, res = self.session.batch, self.session.result
        try:
            if self._showing_all and b is not None:
                vals = b.activity if mode == "activity" else b.reconvolution
                hi = b.activity_max if mode == "activity" else b.fit_max
                self.overlays.set_activity(b.roi_ids, vals, hi)
            elif res is not None:
                self.overlays.set_activity(res.ids, res.activity if mode == "activity"
                                           else res.fit)
        except Exception as e:  # noqa: BLE001 - cosmetic
            notifications.show_warning(f"Could not update the activity layer: {e}")

    # ====================================================== live solves
    def _submit(self, req) -> None:
        cost = self._solve_cost.get((len(req.ids), req.source.n_frames), math.inf)
        if (req.init is not None and cost < self.SYNC_SOLVE_S and self._live.idle
                and req.small_step_from(self.session.result)):
            self._deliver(req.run())  # no thread hop: repainted with the slider
        else:
            self._live.submit(req)

    def _from_thread(self, req) -> None:
        self._relay.done.emit(req)  # raises RuntimeError once the relay is deleted

    def _deliver(self, req) -> None:
        if self._closed:
            return
        first_use = self.status.text().startswith("First use: compiling")
        if _ses._solver.compiled_ready():
            if first_use:
                self.status.setText("")  # the compiled solver is ready
        elif not first_use:  # say which solver this fit came from
            self.status.setText("First use: " + _ses._solver.FALLBACK_MESSAGE + ".")
        if req.init is not None and req.error is None:
            # one row runs on the calling thread: its CPU time is its in-place cost
            cost = min(req.elapsed, req.cpu) if len(req.ids) == 1 else req.elapsed
            self._solve_cost[(len(req.ids), req.source.n_frames)] = cost
        if req.error is None:
            self.last_solve_seconds = req.elapsed
        src = req.source
        try:
            if src.origin and src.origin[1] not in self.viewer.layers:
                return  # its layer was removed meanwhile
            self.session.accept(req)
        finally:
            self._plots.rows_shown(req.gen >= self.session._gen)
