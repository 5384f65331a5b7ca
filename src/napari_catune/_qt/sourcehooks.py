"""The tuner's answers to its source: traces ready or dropped, the sampling rate
a movie file records, ground-truth events, and the overlay layers made once the
first fit is on screen.  A mixin of the tuner."""

from __future__ import annotations

import weakref

import numpy as np
from napari.utils import notifications

from .. import session as _ses
from ..params import fs_matches
from .actions import fs_mismatch_note

#: session -> the fs it took from a movie file (replaced by the next file's, not a user's)
_AUTO_FS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class SourceHooks:
    """Methods of :class:`CaTuneTuner` that follow the session's source."""

    # ========================================================== source
    def _source_dropped(self) -> None:
        if self._pending_sel is None and self.session.selection:
            # the same ROIs again when the traces are read anew (an edit, a new array)
            self._pending_sel = (list(self.session.selection), False, True)
            self._dropped_origin = self.session.source.origin if self.session.source else None
        self.session.cancel()
        if self.session.source is not None:
            self.session.set_source(None)

    def _source_ready(self, src) -> None:
        if self._closed:
            return
        s = self.session
        s.set_source(src)
        # (path, fs) of a parameter file loaded before the data
        loaded, self.actions.loaded_fs = self.actions.loaded_fs, None
        if loaded is not None and loaded[1] != s.params.fs:
            loaded = None  # fs was changed since
        if src.fs_hint and src.fs_hint != s.params.fs:
            self._take_fs(src, loaded)
        elif loaded is not None and not src.fs_hint:
            notifications.show_info(f"'{src.name}' does not record its sampling rate: fs = "
                                    f"{loaded[1]:g} Hz was taken from {loaded[0]}. Check that "
                                    "it is the recording's rate.")
        self._start_lam(src)
        pending, self._pending_sel = self._pending_sel, None
        was, self._dropped_origin = getattr(self, "_dropped_origin", None), None
        if pending is not None and pending[1] is None:
            self.select_most_active(pending[0])
        elif pending is not None:
            ids = [i for i in pending[0] if i in src.row] if pending[2] else pending[0]
            if ids:
                self.select_rois(ids, add=pending[1], _quiet=pending[2])
            # the same layers read anew (an ROI erased, the array replaced): the gone
            # ROIs are deselected, never swapped for an ROI nobody chose
            edited = pending[2] and was is not None and all(
                a is b for a, b in zip(was, src.origin))
            gone = [i for i in pending[0] if i not in ids] if edited else []
            if not ids and not edited:
                self.select_most_active(1)
            if gone:
                notifications.show_info(
                    f"ROI id(s) {gone[:20]} are no longer in "
                    f"'{getattr(src.origin[1], 'name', src.name)}' (erased or "
                    "replaced) and were deselected" + ("." if ids else "; click an ROI in "
                                                       "the image or the list to select one."))
        else:
            self.select_most_active(1)
        self.actions.source_ready(src)

    def _start_lam(self, src) -> None:
        """lambda from the data's noise when nobody chose it (the dF/F default
        0.05 is ~0.02 sigma on raw fluorescence: a fit of the noise), said in
        the status line."""
        lam = self.session.start_lam_from_noise()
        if lam is None:
            return
        from ..estimate import Z_DEFAULT

        # (a message about these traces, e.g. "Neuropil cancelled", stays in front)
        said = self.status.text()
        head = said if said.startswith(("Neuropil", "Traces from")) else \
            f"{src.n_rois} ROIs, {src.n_frames} frames."
        self.status.setText(
            f"{head} λ starts at {lam:.3g}: {Z_DEFAULT:g} noise σ of these traces (Estimate's "
            "rule at the current kernel); press Estimate to fit the kernel too.")

    def _movie_chosen(self) -> None:
        self.neuropil_box.set_movie(self.picker.image_combo.value is not None)

    def _neuropil_changed(self, coefficient) -> None:
        """Another neuropil choice: the movie's traces anew (from the cached F and
        Fneu when read before, in a worker); the selection is solved again."""
        self.neuropil_box.sync()
        if self.picker.image_combo.value is not None and \
                self.picker.labels_combo.value is not None:
            self.picker.refresh()

    def _take_fs(self, src, loaded=None) -> None:
        """The source's sampling rate.  One read from a movie file (a TIFF's metadata)
        replaces only a rate nobody chose: the default, or one taken from a file.
        ``loaded``: (path, fs) of the parameter file that set the current rate
        before the data came; the recording's rate replaces it, with a warning."""
        s = self.session
        from_file = src.fs_origin is not None
        if loaded is not None:
            try:
                s.set_params(fs=src.fs_hint, record=False)
            except ValueError:
                notifications.show_warning(f"The sampling rate {src.fs_hint} Hz of "
                                           f"'{src.name}' was refused; fs = {loaded[1]:g} Hz "
                                           f"from {loaded[0]} is kept.")
                return
            if from_file:  # the movie's rate, not a user's: the next movie's replaces it
                _AUTO_FS[s] = s.params.fs
            if not fs_matches(loaded[1], src.fs_hint):
                notifications.show_warning(fs_mismatch_note(loaded[0], loaded[1], src))
            return
        if from_file and s.params.fs not in (_ses.DEFAULT_PARAMS["fs"], _AUTO_FS.get(s)):
            notifications.show_info(
                f"'{src.name}' records {src.fs_hint:g} Hz in {src.fs_origin}; keeping "
                f"fs = {s.params.fs:g} Hz as set. Type {src.fs_hint:g} in fs to use it.")
            return
        try:
            s.set_params(fs=src.fs_hint, record=False)
        except ValueError:
            notifications.show_warning(f"The sampling rate {src.fs_hint} Hz of "
                                       f"'{src.name}' was refused; set fs by hand.")
            return
        if from_file:
            _AUTO_FS[s] = s.params.fs
            notifications.show_info(f"fs = {src.fs_hint:g} Hz, taken from {src.fs_origin}.")

    def _source_changed(self, src) -> None:
        self._solve_cost.clear()  # a new source: no warm solve is known to be cheap
        self._showing_all = False
        self._truth_changed()
        if src is None:
            self.overlays.clear()
            self.traces.clear()  # nor the old recording's time axis and overview

    def _truth_changed(self, *args) -> None:
        src = self.session.source
        self.truth_box.setText("imported events" if src is not None and src.events_s
                               else "true spikes")
        self.truth_box.setVisible(bool(src is not None and (src.ground_truth or src.events_s)))
        if args and src is not None and self.session.selection:  # from the session: redraw
            self._show_selection(self.session.selection)

    def _create_overlays(self, src) -> None:
        if self._closed or src is not self.session.source or src.origin[1] not in \
                self.viewer.layers:
            return
        image, labels = src.origin
        try:
            self.overlays.set_source(labels, src.roi_ids, src.n_frames, image,
                                     src.label_index)
            sel = self.session.selection
            self.overlays.set_selection(sel, self._colors(sel))
        except Exception as e:  # noqa: BLE001 - overlays are optional; tuning still works
            notifications.show_warning(f"Could not create the CaTune overlay layers: {e}")
        self.update_overlay()
