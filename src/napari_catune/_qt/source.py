"""Where the tuner's traces come from: a movie and a Labels layer, or a Labels
layer that carries its traces (a trace file's tiles).

The chosen pair's traces are extracted once, in a worker, and cached (in the
session, so a reopened dock finds them); editing or replacing a layer's data
drops its cache entry and reads them again.  With neuropil correction on (a
movie only) the worker also reads the surrounds (Fneu) once; another
coefficient is made from the cached F and Fneu, and one asked for while the
movie is read waits for that read.  What is cached, and the reads' bookkeeping:
:mod:`.sourcebook` (this widget renders and forwards); the watch on the
layers' edits: :mod:`.sourceedits`.
"""

from __future__ import annotations

import weakref

from magicgui.widgets import ComboBox, Container
from napari.layers import Image, Labels
from napari.utils import notifications
from qtpy.QtCore import QObject, QTimer, Signal

from .jobs import let_go
from .jobs import worker as _worker
from .moviememory import MovieMemory
from .overlays import is_overlay
from .sourceedits import EditWatch
from .sourcebook import SourceBook, pair_of, source_key
from .sourcejob import FRead, SourceError, build_job, place_beside, read_failed

NONE = "(none: traces in the Labels layer)"


class _MovieCombo(ComboBox):
    """The movie combo: its first choice, no movie, is magicgui's null choice, so
    choosing it emits ``changed`` as any other (a plain ComboBox emits nothing
    for a None value)."""

    null_string = NONE


class SourcePicker(QObject, EditWatch):
    """The movie and ROI combos, and the traces of the chosen pair.

    Signals: ``ready(TraceSource)`` when the chosen pair's traces are at hand,
    ``lost(str)`` when the current source went away (``str``: the warning, or
    "" when nothing was lost), ``status(str)``.
    """

    ready = Signal(object)
    failed = Signal(str)  # the traces could not be read
    changed = Signal()  # the choice changed: the current source is dropped
    edited = Signal(object)  # a hooked layer's data were painted or replaced
    status = Signal(str)
    cancelled = Signal(object)  # the key of a build whose neuropil read was cancelled

    def __init__(self, viewer, cache: dict, jobs, fs_default, neuropil=lambda: None):
        """``neuropil``: callable, the coefficient a movie's traces are
        corrected with, or None (the session's ``neuropil``)."""
        super().__init__()
        self.neuropil = neuropil
        self.viewer = viewer
        self.book = SourceBook(cache)  # the cache (per layer pair) and the reads under way
        self.jobs = jobs
        self.fs_default = fs_default  # callable: the sampling rate to assume
        self._current = None
        self._interim = None  # the key read while the F rows of its pair stay shown
        self._shown_key = None  # the key of ``current``
        self.movies = MovieMemory()  # the movie the user chose per Labels layer
        self._cancelled = None  # the pair whose first read the user cancelled
        self._hooked: dict = {}
        self.closed = False
        self._quiet = False  # see _deferred_refresh
        self.image_combo = _MovieCombo(label="movie", choices=self._image_choices, name="image",
                                       nullable=True)
        self.labels_combo = ComboBox(label="ROIs", choices=self._labels_choices, name="labels")
        self.labels_combo.tooltip = ("The Labels layer whose ROIs are tuned (click an ROI in "
                                     "the viewer to select it)")
        self.image_combo.tooltip = ("The movie whose mean over each ROI gives its trace; "
                                    "'(none...)': the traces the Labels layer carries "
                                    "(an opened trace file)")
        for c in (self.labels_combo, self.image_combo):
            # a long layer name is cut rather than the dock made wide; side by
            # side when each has room for 24 characters, else one above the other
            c.native.setSizeAdjustPolicy(
                c.native.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            c.native.setMinimumContentsLength(24)
        self.box = Container(widgets=[self.labels_combo, self.image_combo], layout="horizontal")
        self.box.margins = (0, 0, 0, 0)
        self.image_combo.changed.connect(self._movie_picked)
        # (chosen again, unchanged, after a cancelled read: read it now)
        self.image_combo.native.activated.connect(self._movie_activated)
        self.labels_combo.changed.connect(self._labels_picked)
        self._edit_timer = QTimer()
        self._edit_timer.setSingleShot(True)
        self._edit_timer.setInterval(300)
        self._edit_timer.timeout.connect(self._edited)
        self._reread = False  # the edits touched the current source's layers
        # napari's Labels.undo/redo send no data or paint event, only set_data
        # (also sent on display changes): the ROIs' fingerprints tell them apart
        self._prints: dict = {}  # id(layer) -> fingerprint, None while edits go on
        with self.image_combo.changed.blocked():
            self.image_combo.value = self._default_image(self.labels_combo.value)

    @property
    def current(self):
        """The source shown (None while the chosen pair is read); while the
        neuropil of the shown pair is read it is that pair's ``F`` source."""
        return self._current

    @current.setter
    def current(self, src) -> None:
        self._current = src
        self._interim = None

    @property
    def interim(self) -> bool:
        """The shown rows are the pair's ``F`` while its ``F - c*Fneu`` is read."""
        return self._interim is not None and self._current is not None

    # ---------------------------------------------------------- choices
    def _labels_choices(self, widget=None):
        return [(l.name, l) for l in self.viewer.layers
                if isinstance(l, Labels) and not is_overlay(l)]

    def _image_choices(self, widget=None):  # (and first, NONE: the combo's null choice)
        return [(l.name, l) for l in self.viewer.layers
                if isinstance(l, Image) and not is_overlay(l) and l.ndim >= 3]

    def _default_image(self, labels):
        if labels is None or "traces" in labels.metadata.get("catune", {}):
            return None  # no layers, or the layer carries its traces
        movies = self._image_choices()
        for _, l in movies:
            if tuple(l.data.shape[-2:]) == tuple(labels.data.shape[-2:]):
                return l
        return movies[0][1] if movies else None

    def _labels_picked(self, *_) -> None:
        labels = self.labels_combo.value
        image = self.movies.recall(labels, self.viewer.layers)
        with self.image_combo.changed.blocked():
            self.image_combo.value = self._default_image(labels) if image is False else image
        self.refresh()

    def _movie_picked(self, *_) -> None:
        labels, image = self.labels_combo.value, self.image_combo.value
        self.movies.remember(labels, image)
        self.refresh()

    def _movie_activated(self, *_) -> None:
        """The movie combo was chosen from, perhaps unchanged: after a cancelled
        read (nothing shown, nothing read) that reads it again."""
        if self.current is None and self.labels_combo.value is not None \
                and self._cancelled == pair_of(self.key()) and not self.book.pending(self.key()):
            self.refresh()

    def key(self):
        image = self.image_combo.value
        return source_key(self.labels_combo.value, image,
                          self.neuropil() if image is not None else None)

    @property
    def builds(self) -> dict:
        """The reads under way: key -> worker."""
        return self.book.builds

    @property
    def building(self) -> bool:
        """The chosen pair is being read (or waits for its movie's read)."""
        return self.labels_combo.value is not None and self.book.pending(self.key())

    # ----------------------------------------------------------- layers
    def layers_changed(self, kind, layer) -> bool:
        """Follow the layer list; True when the current source was lost."""
        if kind == "inserted" and isinstance(layer, Labels) and not is_overlay(layer):
            place_beside(self.viewer, layer)
        if kind == "removed":
            self.movies.forget(layer)
        old_img, old_lab = self.image_combo.value, self.labels_combo.value
        with self.image_combo.changed.blocked(), self.labels_combo.changed.blocked():
            self.labels_combo.reset_choices()
            self.image_combo.reset_choices()
            if old_lab is None and self.labels_combo.choices:
                lab = self.labels_combo.value
                image = self.movies.recall(lab, self.viewer.layers)
                self.image_combo.value = self._default_image(lab) if image is False else image
        src = self.current
        lost = (src is not None and kind == "removed" and layer in src.origin)
        if lost or self.image_combo.value is not old_img or self.labels_combo.value is not old_lab:
            self.current = None
            self.changed.emit()
            # on the next turn: adding or removing overlay layers inside napari's
            # own layer-list event crashed vispy
            QTimer.singleShot(0, self._deferred_refresh)
        return lost

    def _deferred_refresh(self) -> None:
        if not self.closed and self.current is None:
            # after the user removed or replaced a layer: a pair that cannot be read
            # (a Labels layer without its movie) is said in the status line, not as an error
            self._quiet = True
            try:
                self.refresh()
            finally:
                self._quiet = False

    def refresh(self, *_) -> None:
        """Make the chosen pair current (from the cache, or start reading it).
        A neuropil read of the pair shown keeps its rows (``F``) on screen
        until ``F - c*Fneu`` arrives (:attr:`interim`)."""
        labels, image = self.labels_combo.value, self.image_combo.value
        key = self.key() if labels is not None else None
        self._cancelled = None
        self._stop_others(key)
        shown, shown_key = self.current, self._shown_key
        if shown is not None and key is not None and key[4] is not None \
                and shown_key is not None and pair_of(shown_key) == pair_of(key) \
                and shown.origin == (image, labels) and labels in self.viewer.layers \
                and shown.neuropil is None and self.book.get(key, (image, labels)) is None:
            self._start_build(key, image, labels)
            if self.book.pending(key):
                self._interim = key
                self.status.emit("Neuropil being read: the rows show F (each ROI's mean) "
                                 "until F - c·Fneu arrives.")
                return
        self.current = None
        self.changed.emit()
        src = self.ensure()
        if src is not None:
            self.ready.emit(src)

    def _stop_others(self, key) -> None:
        """Stop the movie reads of other pairs than ``key``'s (other layers were chosen)."""
        for k, w in list(self.builds.items()):
            if (key is None or pair_of(k) != pair_of(key)) and k[2] is not None \
                    and not getattr(w, "abort_requested", False):
                w.quit()

    def ensure(self):
        """The current source; from the cache, or None while a worker reads it."""
        src = self.current
        if src is not None:
            if src.origin[1] in self.viewer.layers:
                return src
            self.current = None
        labels, image = self.labels_combo.value, self.image_combo.value
        if labels is None or labels not in self.viewer.layers:
            self.status.emit("Add a Labels layer of ROIs (and a movie) to start tuning.")
            return None
        key = self.key()
        src = self.book.get(key, (image, labels))
        if src is None:
            self._start_build(key, image, labels)
            return None
        self.current = src
        self._shown_key = key
        self._hook(image)
        self._hook(labels)
        said, stop = self.movies.said(src), []
        if key[4] is None and image is not None:
            # neuropil unchecked while the pair's Fneu is read: the plain traces
            # are here (F), and the read nobody wants any more is cancelled
            stop = [w for k, w in self.builds.items() if pair_of(k) == pair_of(key)
                    and k[4] is not None and not getattr(w, "abort_requested", False)]
            for w in stop:
                w.quit()
        if stop:  # (a Cancel already said why)
            self.status.emit(f"{src.n_rois} ROIs, {src.n_frames} frames (neuropil off: "
                             "its read was stopped).")
        elif said.startswith("Traces from"):  # the traces' source changed: said first
            self.status.emit(said)
        return src

    def _start_build(self, key, image, labels) -> None:
        if key in self.builds:
            return
        if self.book.awaited(key) is not None:  # made from its F and Fneu once it lands
            self.status.emit("Waiting for the neuropil read under way...")
            return
        neuropil, prior = key[4], self.book.prior(key)
        try:
            work = build_job(image, labels, float(self.fs_default()), neuropil, prior)
        except SourceError as e:
            if self._quiet:
                self.status.emit(str(e))
            else:
                notifications.show_error(str(e))
            return
        # hooked now, with the fingerprint of the ROIs the job just copied: an
        # edit during this (first) read drops it and reads again (_data_changed)
        self._hook(image)
        self._hook(labels)
        what = f"'{image.name}'" if image is not None else f"'{labels.name}'"
        reads_fneu = neuropil is not None and (prior is None or prior.fneu is None)
        w = _worker(work)
        self.book.started(key, w, reads_movie=image is not None and (prior is None or reads_fneu))
        ref = weakref.ref(self)
        failed = []  # the read raised: what waited for it is not read again
        f_read = [prior is not None]  # F is read (or was before): a Cancel then stops Fneu only
        by_user = []  # Cancel was pressed (not: other layers chosen, neuropil unchecked)

        def returned(out):
            me = ref()
            if me is None or me.closed:
                return
            if not me.book.landed(key):
                return  # its layers were edited during the read: read again (finished)
            src, missing = out
            me.book.put(key, src, keep=me.current)
            me._hook(image)
            me._hook(labels)
            if labels not in me.viewer.layers \
                    or (me.current is not None and not me.interim) \
                    or me.labels_combo.value is not labels \
                    or me.image_combo.value is not image or me.key() != key:
                return  # the user chose other layers meanwhile: cached only
            if missing:
                notifications.show_warning(
                    f"ROI(s) {missing[:20]} have no pixels in '{labels.name}' and cannot be "
                    "clicked; use the list.")
            if me.interim:  # the F rows shown so far: swapped for these in place
                me.current = None
                me.changed.emit()  # (the tuner keeps the selection for the new rows)
            me.status.emit(me.movies.said(src))
            me.current = src
            me._shown_key = key
            me.ready.emit(src)

        def yielded(v):
            me = ref()
            if me is None or me.closed:
                return
            if isinstance(v, FRead):  # F is read, Fneu comes next
                f_read[0] = True
                if me.jobs.running(f"extract {key}"):
                    me.jobs.start(f"extract {key}", f"Reading the neuropil of {what}...",
                                  total=1, cancel=cancel)
                if not me.book.landed(key) or labels not in me.viewer.layers:
                    return
                plain = pair_of(key) + (None,)
                me.book.put(plain, v.source, keep=me.current)
                if me.current is None and me.labels_combo.value is labels \
                        and me.image_combo.value is image and me.key() == plain:
                    # neuropil was unchecked during the read: the ROI means now
                    me.status.emit(me.movies.said(v.source))
                    me.refresh()
                return
            me.jobs.update(f"extract {key}", v[0], v[1])

        def aborted():
            me = ref()
            cur = None if me is None or me.closed or me.labels_combo.value is None else me.key()
            if cur is None or cur[:4] != key[:4]:
                return  # a read no longer wanted (other layers chosen) stopped
            if not f_read[0]:  # the first read of the movie: nothing is shown now
                if not by_user:
                    return
                me.current = None
                me._cancelled = pair_of(key)
                me.status.emit(f"Reading cancelled: choose the movie {what} again to read "
                               "it (or choose other layers).")
                me.failed.emit("cancelled")  # (neuropil stays as chosen: read with the movie)
                return
            if cur[4] is None:
                return  # neuropil unchecked: its read is not wanted
            if me.interim:  # the F rows stay; the box unticks (refresh: F, cached)
                me._interim = None
            me.status.emit("Neuropil cancelled: the traces are not corrected (check "
                           "'neuropil' again to read it).")
            me.failed.emit("cancelled")
            me.cancelled.emit(key)

        def errored(e):
            failed.append(True)
            me = ref()
            if me is None or me.closed:
                return
            notifications.show_error(read_failed(e, what, labels.name))
            if me.interim:  # the F rows kept for this read go: nothing half-said stays
                me.current = None
                me.changed.emit()
            me.status.emit("Reading the traces failed; choose the layers again.")
            me.failed.emit(str(e))

        def finished():
            let_go(w, callbacks)
            me = ref()
            if me is None or me.closed:
                return
            stale = me.book.ended(key, w)
            me.jobs.finish(f"extract {key}")
            if stale and me._edit_timer.isActive():
                me._reread = True  # once the edits pause (_edited)
            elif (me.current is None or me.interim) and me.labels_combo.value is not None \
                    and not me.book.pending(me.key()) \
                    and (stale or not failed) \
                    and me.book.follows(me.key(), key, stale):
                me.refresh()  # (a coefficient that waited for this read: from its F and Fneu)

        def cancel(*_):
            by_user.append(True)
            w.quit()

        callbacks = [(w.returned, returned), (w.errored, errored), (w.finished, finished)]
        # (a generator worker: it yields after each chunk of frames, and stops there)
        callbacks += [(w.yielded, yielded), (w.aborted, aborted)]
        for sig, fn in callbacks:
            sig.connect(fn)
        if image is None:
            self.jobs.start(f"extract {key}", f"Reading the traces of {what}...")
        else:  # a frames bar (F, then Fneu) and Cancel
            text = ("Reading the neuropil of" if f_read[0] and reads_fneu else
                    "Correcting the traces of" if f_read[0] else
                    "Reading the traces and neuropil of" if reads_fneu else
                    "Reading the traces of")
            self.jobs.start(f"extract {key}", f"{text} {what}...", total=1, cancel=cancel)
        w.start()

    def close(self) -> None:
        self.closed = True
        try:
            self._edit_timer.stop()
        except RuntimeError:  # at interpreter exit Qt may have deleted the timer first
            pass
        self._unhook_all()
        for w in list(self.builds.values()):
            try:
                w.quit()
            except Exception:  # noqa: BLE001 - already finished
                pass

