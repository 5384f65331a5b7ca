"""Apply to all of the tuner (a mixin of :class:`~napari_catune._qt.actions.Actions`):
every ROI solved with the current parameters in a worker, with progress and Cancel;
the GUI thread only stores what the worker computed."""

from __future__ import annotations

import numpy as np
from napari.utils import notifications

from .. import session as _ses
from .jobs import worker as _worker

_APPLY = "apply"


def input_traces(src) -> str | None:
    """What the traces of ``src`` (a TraceSource; ``origin`` = (movie layer or
    None, Labels layer)) are, as the results files record it (``input_traces``):
    the movie's ROI means (neuropil-corrected: ``F - c*Fneu`` as
    ``extract --neuropil`` says it), else what the reader recorded (suite2p
    "F - 0.7*Fneu", CaImAn "C", an NWB series, extract's traces), else None."""
    from ..neuropil import neuropil_note
    from ..traces import ROI_MEAN_TRACES

    origin = src.origin if isinstance(src.origin, tuple) and len(src.origin) == 2 else (None,) * 2
    image, labels = origin
    if image is not None:
        c = getattr(src, "neuropil", None)
        return ROI_MEAN_TRACES if c is None else neuropil_note(c)
    meta = getattr(labels, "metadata", None)
    cat = meta.get("catune") if isinstance(meta, dict) else None
    if not isinstance(cat, dict):
        return None
    said = cat.get("input_traces") or cat.get("kind")
    return str(said) if said else None


class ApplyAll:
    """The Apply to all methods of :class:`Actions` (``self.t``: the tuner,
    ``self.s``: its session)."""

    def apply(self):
        """Solve every ROI with the current parameters in a worker (Cancel stops
        it between chunks).  Called while the traces are read, it starts when
        they are ready.  Returns the worker, or None."""
        t = self.t
        src = self.s.source
        if src is None and not t.picker.building:
            notifications.show_warning("Nothing to apply to: choose a Labels layer in the "
                                       "CaTune tuner.")
            return None
        if self.apply_worker is not None:
            notifications.show_warning("Apply to all is already running; cancel it first.")
            return self.apply_worker
        p = self.s.params
        job: dict = {}
        self._apply_job = job

        def work():
            s = job["src"]
            # the scores read with the traces, if they were read at this rate
            same = s.scores_fs is not None and s.scores_fs == p.fs
            return (yield from _ses.apply_job(s.traces, s.roi_ids, p, snr=s.snr if same else None,
                                              noise=s.noise if same else None))

        w = _worker(work)
        self.apply_worker = w

        def yielded(v):
            if not t._closed:
                t.jobs.update(_APPLY, v[0], v[1])

        def returned(batch):
            if not t._closed:
                t.picker.check_edits()  # an undo napari did not announce (hidden layer)
            job["done"] = True  # an edit from now on is an edit after the run
            if t._closed or job.get("edited") is not None:
                return  # (edited: said by _layer_edited)
            s = job["src"]
            labels = s.origin[1]
            if labels not in t.viewer.layers or labels.data is not job["data"]:
                notifications.show_warning(
                    "The Labels layer was removed or its ROIs changed during Apply to all; "
                    "the results were discarded. Apply again.")
                return
            self._store(s, batch)

        def aborted():
            if not t._closed and job.get("edited") is None:
                t.status.setText("Apply to all cancelled; no results were stored.")

        def errored(e):
            if not t._closed:
                notifications.show_error(_ses.failure_text(
                    e, "Apply to all", "Check the parameters and the data, then try again."))

        def start(src):
            job["src"], job["data"] = src, src.origin[1].data
            t.jobs.start(_APPLY, f"Applying to {src.n_rois} ROIs...", total=src.n_rois,
                         cancel=self.cancel_apply)
            w.start()

        w.yielded.connect(yielded)
        w.returned.connect(returned)
        w.aborted.connect(aborted)
        w.errored.connect(errored)
        w.finished.connect(lambda: None if t._closed else self._apply_done())
        t.controls.apply_btn.setEnabled(False)
        t.picker.check_edits()  # an undo napari did not announce: read the ROIs anew first
        # the chosen traces still being read (e.g. the F rows on screen while the
        # neuropil is read for F - c*Fneu), or a layer just edited: wait for them
        waiting = t.picker.edit_pending or t.picker.building
        src = self.s.source if not waiting else None
        if src is not None:
            start(src)
        else:
            self._apply_start = start
            # the layers it was asked for: other layers chosen meanwhile drop it
            self._apply_pair = (t.picker.image_combo.value, t.picker.labels_combo.value)
            t.jobs.start(_APPLY, "Apply to all starts once the traces are read...",
                         cancel=self.cancel_apply)
        return w

    def _store(self, src, b) -> None:
        labels = src.origin[1]
        meta = labels.metadata.setdefault("catune", {})
        meta["results"] = {"activity": b.activity, "reconvolution": b.reconvolution,
                           "baseline": b.baseline, "converged": b.converged,
                           "roi_ids": b.roi_ids, "params": b.params.to_dict(),
                           "input_traces": input_traces(src)}
        if getattr(b, "fitted_trace", None) is not None:  # what fit and baseline describe
            meta["results"]["fitted_trace"] = b.fitted_trace
        meta["params"] = b.params.to_dict()
        try:
            labels.features = b.features
        except Exception as e:  # noqa: BLE001
            notifications.show_warning(f"Results stored in metadata, but features failed: {e}")
        cur = self.s.source
        shown = cur is src or (cur is not None and cur.origin == src.origin
                               and np.array_equal(cur.roi_ids, src.roi_ids)
                               and cur.n_frames == src.n_frames)
        if shown:  # (another source chosen meanwhile: the canvas shows its ROIs)
            self.s.set_batch(b)
            self.t._showing_all = True
            self.t.update_overlay()
        skipped = getattr(b, "skipped", ())
        note = ""
        if len(skipped):
            shown = ", ".join(str(int(r)) for r in skipped[:10])
            more = f", ... ({len(skipped) - 10} more)" if len(skipped) > 10 else ""
            note = (f" {len(skipped)} ROI(s) skipped: their traces hold NaN or Inf "
                    f"(ROI {shown}{more}); their results are NaN.")
            notifications.show_warning("Apply to all:" + note)
        done = (f"{src.n_rois - len(skipped)} of {src.n_rois}" if len(skipped)
                else f"{src.n_rois}")
        stored = (f"results stored on '{labels.name}' (save them with File > IO Utilities > "
                  "Save CaTune results... as .npz, .nwb or .csv).")
        if shown:
            text = f"Applied to {done} ROIs; {stored}"
        else:
            now = f"'{cur.origin[1].name}'" if cur is not None and cur.origin else "other ROIs"
            text = (f"Apply to all finished for '{labels.name}' ({done} ROIs) while the tuner "
                    f"shows {now}: {stored} The activity layer keeps showing {now}.")
            notifications.show_info(text)
        self.t.status.setText(text + note)

    def _layer_edited(self, layer) -> None:
        """A layer of the running Apply to all was painted, filled or given new data:
        its results would describe the ROIs (or movie) as they were, so it stops
        with a message.  (Not re-run by itself: a brush stroke is mostly one of
        many; the user applies again once the ROIs are drawn.)"""
        job, w = self._apply_job, self.apply_worker
        if (w is None or self._apply_start is not None or job.get("edited") is not None
                or job.get("done") or "src" not in job or layer not in job["src"].origin):
            return
        job["edited"] = layer
        w.quit()
        if layer is job["src"].origin[1]:
            msg = (f"The ROIs of '{layer.name}' were edited during Apply to all (brush, fill "
                   "or new data), so its results would describe the ROIs as they were: Apply "
                   "to all was stopped and its results discarded. Apply again once the ROIs "
                   "are drawn.")
        else:
            msg = (f"The movie '{layer.name}' changed during Apply to all, so its results "
                   "would describe the old movie: Apply to all was stopped and its results "
                   "discarded. Apply again.")
        notifications.show_warning(msg)
        self.t.status.setText(msg)

    def tuner_closed(self) -> None:
        """The dock is closing: a running (or waiting) Apply to all stops and says so.
        (Not kept running: its progress and Cancel go with the dock, so nothing
        could stop it, and the overlays it fills are removed.)"""
        w = self.apply_worker
        told = w is None or self._apply_job.get("edited") is not None or self._apply_job.get(
            "done") or (
            self._apply_start is None and w.abort_requested)  # cancelled, or its layer gone
        if not told:
            notifications.show_warning(
                "Apply to all stopped: the CaTune tuner was closed before it finished, so "
                "no results were stored. Open the tuner again and click Apply to all.")
        self.quit()

    def _apply_done(self) -> None:
        self.apply_worker = None
        self._apply_start = None
        self.t.jobs.finish(_APPLY)
        self.t.controls.apply_btn.setEnabled(True)

    def cancel_apply(self, *_) -> None:
        if self._apply_start is not None:
            self._drop_pending("cancelled before the traces were read.")
        elif self.apply_worker is not None:
            self.apply_worker.quit()
            self.t.status.setText("Cancelling...")

    def _drop_pending(self, why: str, after_status: bool = False) -> None:
        """Drop an Apply to all that waits for its traces, saying ``why`` (or,
        ``after_status``, after what the status line already says: a read's
        own cancel message)."""
        if self._apply_start is None:
            return
        said = self.t.status.text()
        self._apply_done()
        self.t.status.setText(f"{said} Apply to all was not started." if after_status and said
                              else f"Apply to all cancelled: {why}")

    def source_ready(self, src) -> None:
        if self._apply_start is None:
            return
        pair = getattr(self, "_apply_pair", None)
        if pair is not None and tuple(src.origin) != pair:
            self._drop_pending("other layers were chosen while the traces were read; "
                               "click Apply to all again to apply to these.")
            return
        start, self._apply_start = self._apply_start, None
        start(src)

    def layer_lost(self) -> None:
        if self.apply_worker is not None and self._apply_start is None:
            self.apply_worker.quit()
        self._drop_pending("the data source went away.")
