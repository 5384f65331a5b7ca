"""The tuner's actions: parameter files, Estimate and Apply to all (workers with
progress and Cancel; Apply to all in applyall.py).  Everything heavy runs in the
worker; the GUI thread only stores what the worker computed."""

from __future__ import annotations

import os
import threading

from napari.utils import notifications
from qtpy.QtWidgets import QFileDialog

from .. import _overwrite
from .. import kernel as _kernel
from .. import params as _params
from .. import session as _ses
from .applyall import ApplyAll, input_traces
from .jobs import worker as _worker

_ESTIMATE = "estimate"


def fs_mismatch_note(path, tuned_at: float, src) -> str:
    """The warning when a parameter file's rate is not the recording's."""
    where = f" in {src.fs_origin}" if src.fs_origin else ""
    return (f"{path} was tuned at {tuned_at:g} Hz, but '{src.name}' records "
            f"{src.fs_hint:g} Hz{where}: the tuner uses {src.fs_hint:g} Hz and took the "
            "other parameters from the file (the time constants are in seconds; lambda was "
            "tuned on data at the file's rate: check the activity's sparsity). If the "
            f"file's rate is the right one, type {tuned_at:g} in the fs box.")


def _own_warnings(w, handler) -> None:
    """The worker's warnings go to ``handler`` alone (said once, in our words),
    not also to napari's relay where a napari version connects one."""
    try:
        w.warned.disconnect(w._relay_warning)
    except (AttributeError, TypeError, RuntimeError):
        pass  # not connected (napari 0.5/0.6 never connects it)
    w.warned.connect(handler)


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ours(args) -> bool:
    """Whether a warning a worker relayed (``warnings.showwarning``'s arguments)
    was issued by this package's estimator.  A worker's warning capture is
    process-wide, so a warning raised meanwhile by another thread (the user's
    console, another plugin, napari) arrives too; only ours name our files."""
    if str(args[0]).startswith("estimate_params:"):
        return True
    try:
        return os.path.commonpath([_PACKAGE, os.path.abspath(str(args[2]))]) == _PACKAGE
    except (IndexError, ValueError):  # no file named, or another drive
        return False


class Actions(ApplyAll):
    def __init__(self, tuner):
        self.t = tuner
        self.s = tuner.session
        self.apply_worker = None
        self.estimate_worker = None
        self.last_estimate = None
        self._apply_start = None  # an Apply to all waiting for the traces
        self._apply_job: dict = {}  # the running Apply to all's source and state
        #: (path, fs) of a parameter file loaded before any data was
        self.loaded_fs = None
        c = tuner.controls
        c.estimate_btn.clicked.connect(lambda: self.estimate())
        c.apply_btn.clicked.connect(lambda: self.apply())
        c.save_btn.clicked.connect(self._save_dialog)
        c.load_btn.clicked.connect(self._load_dialog)
        tuner.truth_btn.clicked.connect(self._events_dialog)
        tuner.picker.edited.connect(self._layer_edited)

    # ------------------------------------------------------------ files
    def save_params(self, path) -> bool:
        src = self.s.source
        meta = {}
        if src is not None:
            meta = {"num_cells": src.n_rois, "num_timepoints": src.n_frames,
                    "source_filename": str(src.origin[1].metadata.get("catune", {}).get(
                        "source", src.name)) if src.origin else src.name}
            said = input_traces(src)  # what the traces were, as estimate -o records it
            if said:
                meta["input_traces"] = said
        try:
            # never over the recording, its sidecar or a file a layer came from
            _overwrite.check_single_file(path, *self._inputs())
        except _overwrite.OutputClash as e:
            return self._not_saved(str(e))  # "Cannot save NAME: it is ...: choose ..."
        try:
            _params.save_params(self.s.params, path, metadata=meta)
        except (OSError, ValueError, TypeError) as e:
            return self._not_saved(f"Could not save parameters to {path}: {e}. Choose a "
                                   "writable file ending in .json.")
        note = _params.calab_note(self.s.params)
        self.t.status.setText(f"Parameters saved to {path}"
                              + ("" if note is None else f" ({self.s.params.baseline} baseline: "
                                 "calab 0.3 would use its rolling baseline instead)"))
        if note:
            notifications.show_info(note)
        return True

    def _inputs(self) -> list[str]:
        """The files the viewer's layers, and the recording being tuned, came from."""
        src = self.s.source
        origin = src.origin if src is not None and isinstance(src.origin, tuple) else ()
        return _overwrite.layer_inputs([*self.t.viewer.layers, *origin])

    def _not_saved(self, why: str) -> bool:
        notifications.show_error(why)
        self.t.status.setText(why)  # not "Parameters saved to" an earlier file
        return False

    def load_params(self, path):
        try:
            p = _params.load_params(path)
        except FileNotFoundError as e:
            # (the message is "parameter file not found: PATH": said once)
            notifications.show_error(f"{str(e)[:1].upper()}{str(e)[1:]}. Pick an existing "
                                     "CaTune .json file.")
            return None
        except (OSError, ValueError, TypeError, KeyError, RecursionError) as e:
            notifications.show_error(f"Could not load parameters from {path}: {e}. It must be "
                                     "a CaTune export JSON with a 'parameters' block.")
            return None
        return self.apply_loaded(p, path)

    def apply_loaded(self, p, path):
        """Move to the parameters ``p`` read from the file ``path`` (Load...,
        File > Open, drag and drop: napari_catune._reader.read_params), the
        recording's own rate kept; the parameters applied, or None."""
        src = self.s.source
        tuned_at, before = p.fs, self.s.params.fs
        # the recording's own rate wins, as in the CLI (which refuses the file)
        p, mismatch = _ses.at_data_rate(p, src.fs_hint if src is not None else None)
        if not self.t.set_params(p):
            return None
        # no data yet: the rate the data brings replaces this one (tuner._take_fs)
        self.loaded_fs = None if src is not None else (str(path), tuned_at)
        note = ""
        if mismatch:
            notifications.show_warning(fs_mismatch_note(path, tuned_at, src))
            note = f"; fs kept at the data's {p.fs:g} Hz (the file says {tuned_at:g} Hz)"
        elif src is not None and not src.fs_hint:
            (notifications.show_info if tuned_at == before else notifications.show_warning)(
                f"'{src.name}' does not record its sampling rate: fs = {tuned_at:g} Hz was "
                f"taken from {path}. Check that it is the recording's rate.")
            note = f"; fs = {tuned_at:g} Hz from the file (the data does not record its rate)"
        self.t.status.setText(f"Parameters loaded from {path}{note}.")
        return p

    def _save_dialog(self, *_):
        path, _ = QFileDialog.getSaveFileName(self.t, "Save CaTune parameters",
                                              self._start("params", "catune_params.json"),
                                              "CaTune parameters (*.json)")
        if path:
            self._chosen("params", path)
            self.save_params(path)

    def _load_dialog(self, *_):
        path, _ = QFileDialog.getOpenFileName(self.t, "Load CaTune parameters",
                                              self._start("params"), "CaTune parameters (*.json)")
        if path:
            self._chosen("params", path)
            self.load_params(path)

    def load_events(self, path) -> dict | None:
        """Ground-truth event times from a CSV (roi, time_s), drawn as ticks."""
        try:
            info = self.s.load_events_csv(path)
        except ValueError as e:
            notifications.show_error(f"Events not loaded: {e}")
            return None
        msg = f"{info['events']} events of {info['rois']} ROIs loaded from {path}"
        if info["unknown"]:
            notifications.show_warning(
                f"{len(info['unknown'])} ROI id(s) of the events file are not in the data "
                f"and were skipped: {info['unknown'][:10]}")
        if info["late"]:
            notifications.show_warning(
                f"{info['late']} event(s) fall after the last frame at fs = "
                f"{self.s.params.fs:g} Hz: check fs, or that the times are in seconds.")
        if info.get("early"):
            src = self.s.source
            notifications.show_warning(
                f"{info['early']} event(s) fall before the first frame (at {src.t0:g} s on the "
                "recording's clock): the times must be on the recording's clock (the time_s "
                "of its results), not counted from another origin.")
        self.t.truth_box.setChecked(True)
        self.t.status.setText(msg + ".")
        return info

    def _events_dialog(self, *_):
        path, _ = QFileDialog.getOpenFileName(self.t, "Load ground-truth events",
                                              self._start("events"),
                                              "Event times (*.csv *.tsv *.txt)")
        if path:
            self._chosen("events", path)
            self.load_events(path)

    def _start(self, kind: str, name: str = "") -> str:
        """Where a file dialog opens: the folder last used for ``kind`` files."""
        folder = self.t.prefs.folder(kind)
        return (os.path.join(folder, name) if name else folder) if folder else name

    def _chosen(self, kind: str, path) -> None:
        self.t.prefs.set_folder_of(kind, path)

    # --------------------------------------------------------- estimate
    def estimate(self):
        """Estimate from the selected ROIs (or the 32 most active) in a worker;
        Cancel drops the result.  Returns the worker, or None."""
        src = self.s.source
        if src is None:
            notifications.show_warning(
                "Nothing to estimate from yet: " + (
                    "the traces are still being read; try again when the ROI list is "
                    "filled." if self.t.picker.building else
                    "choose a Labels layer (and a movie) in the CaTune tuner first."))
            return None
        if self.estimate_worker is not None:
            return self.estimate_worker
        if self.t.picker.interim:  # the rows show F while F - c*Fneu is read
            notifications.show_warning(
                "The neuropil is being read: the rows show F until F - c·Fneu arrives. "
                "Press Estimate then, so the parameters fit the corrected traces.")
            return None
        if self.t.controls.estimate_from.currentIndex() == 1:  # all ROIs
            ids = [int(i) for i in src.roi_ids]
            traces = src.traces
        else:
            ids = list(self.s.selection) or self.s.most_active(32)
            traces = src.traces[[src.row[i] for i in ids]]
        p0 = self.s.params
        n = len(ids)
        stop = threading.Event()
        w = _worker(_ses.estimate_job, traces, p0, stop)
        self.estimate_worker = w
        state = {"cancelled": False}
        t = self.t

        def cancel():
            state["cancelled"] = True
            stop.set()  # the estimator stops at its next trace
            self._estimate_done(w)
            t.status.setText("Estimation cancelled; the parameters were kept.")

        said = []  # the estimator's warnings (flat traces, no transients: defaults)

        def warned(args):
            if not _ours(args):
                return  # another thread's (the capture is process-wide): not the estimate's
            if issubclass(args[1], _kernel.ParameterRangeWarning) and \
                    str(args[0]).startswith("lambda ="):
                return  # not the estimate's fault: the controls say it (the web app's 0-10)
            if not (t._closed or state["cancelled"]):
                said.append(str(args[0]).removeprefix("estimate_params: "))

        def returned(p):
            if t._closed or state["cancelled"]:
                return
            if self.s.source is not src:  # (e.g. F - c*Fneu arrived meanwhile)
                t.status.setText("Estimate dropped: the traces changed while it ran; "
                                 "press Estimate again.")
                return
            self.last_estimate = p
            for msg in said:  # they come before the result (both queued from the worker)
                notifications.show_warning(f"Estimate: {msg}.")
            if t.set_params(p):
                t.status.setText(f"Estimate from {n} ROI{'s' * (n != 1)}: {said[0]}." if said
                                 else f"Parameters estimated from {n} ROI{'s' * (n != 1)}.")

        def errored(e):
            if not (t._closed or state["cancelled"]):
                notifications.show_error(f"Could not estimate parameters: {e}. Select ROIs "
                                         "with clear transients, or set the sliders by hand.")

        w.returned.connect(returned)
        w.errored.connect(errored)
        _own_warnings(w, warned)
        w.finished.connect(lambda: None if t._closed else self._estimate_done(w))
        t.controls.estimate_btn.setEnabled(False)
        t.jobs.start(_ESTIMATE, f"Estimating from {n} ROI{'s' * (n != 1)}...", cancel=cancel)
        w.start()
        return w

    def _estimate_done(self, w) -> None:
        if self.estimate_worker is w:
            self.estimate_worker = None
            self.t.controls.estimate_btn.setEnabled(True)
            self.t.jobs.finish(_ESTIMATE)

    def quit(self) -> None:
        """Python side only: may run after the Qt objects were deleted."""
        for w in (self.apply_worker, self.estimate_worker):
            if w is not None:
                try:
                    w.quit()
                except Exception:  # noqa: BLE001 - already finished
                    pass
