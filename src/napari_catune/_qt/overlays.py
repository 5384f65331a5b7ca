"""Viewer overlays of the tuner: selection outline, lazy activity, ROI ids.

The activity layer is a :class:`~.lazyactivity.LazyActivity` (frames built
only when napari asks for them); which ROI ids are written, and where:
:mod:`.roiids`.
"""

from __future__ import annotations

import copy
import weakref

import numpy as np
from qtpy.QtCore import QTimer

from . import follow as _follow
from .lazyactivity import LazyActivity, centroids, label_index  # noqa: F401 - re-exported
from .roiids import ID_TEXT_SIZE, RoiIds, nearest_gap  # noqa: F401 - re-exported

OVERLAY_KEY = "catune_overlay"  # metadata flag: our layers, hidden from the source combos
SELECTION_NAME = "CaTune selection"
ACTIVITY_NAME = "CaTune activity"
IDS_NAME = "CaTune ROI ids"


def is_overlay(layer) -> bool:
    return bool(getattr(layer, "metadata", {}).get(OVERLAY_KEY, False))


class Overlays(RoiIds):
    """Creates and updates the tuner's layers in a viewer (re-created if deleted)."""

    NAMES = (SELECTION_NAME, ACTIVITY_NAME, IDS_NAME)
    #: ms between two layers taken out after their source went away (see drop)
    DROP_GAP_MS = 60

    def __init__(self, viewer):
        self.viewer = viewer
        self.lazy: LazyActivity | None = None
        self._labels_layer = None
        #: the Labels layer the overlay layers were made for (kept while emptied)
        self.made_for = None
        #: layers on their way out (drop), reclaimed if a new source comes first
        self.leaving: list = []
        # layers left by an earlier tuner in this viewer are reused, never doubled
        found = {l.name: l for l in viewer.layers if is_overlay(l)}
        self.selection_layer = found.get(SELECTION_NAME)
        self.activity_layer = found.get(ACTIVITY_NAME)
        self.ids_layer = found.get(IDS_NAME)
        ref = weakref.ref(self)
        #: the source layers whose transforms the overlays copy (set_source .. clear)
        self.follower = _follow.Follower(lambda: (me := ref()) and me.match_transforms())
        self._init_ids()  # (roiids.RoiIds)

        def on_zoom(event=None):
            me = ref()
            if me is not None:
                me.show_ids()

        self._on_zoom = on_zoom
        viewer.camera.events.zoom.connect(on_zoom)

    def layers(self) -> list:
        return [l for l in (self.selection_layer, self.activity_layer, self.ids_layer)
                if self._alive(l)]

    def remove(self) -> None:
        """Take the tuner's layers out of the viewer (the dock was closed)."""
        leaving, self.leaving = self.leaving, []
        for layer in self.layers() + leaving:
            try:
                self.viewer.layers.remove(layer)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.follower.stop()
        try:
            self.viewer.camera.events.zoom.disconnect(self._on_zoom)
        except Exception:  # noqa: BLE001 - already gone with the viewer
            pass
        self.selection_layer = self.activity_layer = self.ids_layer = None
        self.lazy = None
        self.made_for = None

    def drop(self) -> None:
        """Take the overlay layers out after their source layer was removed.

        Never inside napari's own layer-list event, and one layer per
        ``DROP_GAP_MS``, the ROI ids (emptied by :meth:`clear` first) last:
        with the last Labels layer gone, removing the text Points layer or
        two layers between two canvas draws crashed Mesa (glDrawArrays, software
        GL, plain napari + vispy).  A new source before the end takes them back.
        """
        self.clear()
        self.made_for = None
        order = (self.activity_layer, self.selection_layer, self.ids_layer)
        self.selection_layer = self.activity_layer = self.ids_layer = None
        self.lazy = None
        self.leaving = [l for l in order if self._alive(l) and l not in self.leaving]
        if self.leaving:
            self._drop_next_later()

    def _drop_next_later(self) -> None:
        ref = weakref.ref(self)

        def step():
            me = ref()
            if me is None or not me.leaving:
                return
            layer = me.leaving.pop(0)
            try:
                if layer in me.viewer.layers:
                    me.viewer.layers.remove(layer)
            except Exception:  # noqa: BLE001 - the viewer closed meanwhile
                me.leaving.clear()
                return
            if me.leaving:
                me._drop_next_later()

        QTimer.singleShot(self.DROP_GAP_MS, step)

    def _reclaim(self, name):
        for layer in list(self.leaving):
            if layer.name == name:
                self.leaving.remove(layer)
                if self._alive(layer):
                    return layer
        return None

    def _alive(self, layer) -> bool:
        return layer is not None and layer in self.viewer.layers

    def _add_quietly(self, adder, *args, **kwargs):
        # adding a layer makes it the active one; keep the user's active layer
        sel = set(self.viewer.layers.selection)
        active = self.viewer.layers.selection.active
        layer = adder(*args, **kwargs)
        layer.metadata[OVERLAY_KEY] = True
        self.viewer.layers.selection.clear()
        self.viewer.layers.selection.update(l for l in sel if l in self.viewer.layers)
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active
        return layer

    def clear(self) -> None:
        """Empty the overlays in place (no source).

        Layers are emptied rather than removed: removing several layers inside
        napari's layer events while a notification was up crashed vispy.
        Each layer is emptied once: new data twice between two canvas draws made
        vispy lose a Labels texture ("Could not find texture with id ...").
        """
        self._labels_layer = None
        self.follower.stop()
        if self._alive(self.selection_layer) and np.any(self.selection_layer.data):
            self.selection_layer.data = np.zeros_like(np.asarray(self.selection_layer.data))
        if self.lazy is not None and self._alive(self.activity_layer) and self.lazy._state[1].size:
            self.lazy.set_values([], np.zeros((0, self.lazy.shape[0])))
            self.activity_layer.refresh()
        if self._alive(self.ids_layer) and len(self.ids_layer.data):
            self.ids_layer.data = np.zeros((0, 2))

    def set_source(self, labels_layer, roi_ids, n_frames: int, image=None,
                   index=None) -> None:
        """New data source: ROI id text for every ROI, a fresh activity layer.

        The layers sit where ``labels_layer``'s pixels are, on the time axis of
        the movie ``image`` (1 s per frame without one), and follow both layers'
        transforms until the next source (:meth:`match_transforms`)."""
        self._labels_layer = self.made_for = labels_layer
        self.follower.follow(image, labels_layer)
        self.activity_layer = self.activity_layer or self._reclaim(ACTIVITY_NAME)
        self.ids_layer = self.ids_layer or self._reclaim(IDS_NAME)
        self.selection_layer = self.selection_layer or self._reclaim(SELECTION_NAME)
        labels = np.asarray(labels_layer.data)
        plane = _follow.plane_transforms(labels_layer)
        movie = _follow.movie_transforms(plane, image)
        if index is None or index[1].size != labels.size:
            index = label_index(labels)
        self.lazy = LazyActivity(labels, n_frames, index)
        if self._alive(self.activity_layer):
            self.activity_layer.data = self.lazy
            _follow.apply(self.activity_layer, movie)
        else:
            self.activity_layer = self._add_quietly(
                self.viewer.add_image, self.lazy, name=ACTIVITY_NAME, colormap="inferno",
                blending="additive", contrast_limits=(0.0, 1.0), multiscale=False,
                opacity=0.8, metadata={OVERLAY_KEY: True}, **movie,
            )
        self._name_time_axis()
        cents = centroids(labels, roi_ids, index)
        ok = np.all(np.isfinite(cents), axis=1)
        feats = {"roi_id": np.asarray(roi_ids)[ok]}
        feats["label"] = feats["roi_id"].astype(str)  # what is written ("" hides one)
        self._measure_ids(cents[ok], feats["roi_id"], index)
        text = {"string": "{label}", "color": "white", "size": ID_TEXT_SIZE}
        if self._alive(self.ids_layer):
            self.ids_layer.data = np.zeros((0, 2))
            _follow.apply(self.ids_layer, plane)
            self.ids_layer.data = cents[ok]
            self.ids_layer.features = feats
            self.ids_layer.text = text
        else:
            self.ids_layer = self._add_quietly(
                self.viewer.add_points, cents[ok], name=IDS_NAME, size=0.0,
                features=feats, text=text, metadata={OVERLAY_KEY: True}, **plane,
            )
            self.ids_layer.editable = False
        self.ids_all_shown = True  # (a new layer's points are all shown)
        self.show_ids(force=True)
        if self._alive(self.selection_layer):
            self.selection_layer.data = np.zeros_like(labels)
            _follow.apply(self.selection_layer, plane)

    def match_transforms(self) -> None:
        """Give the overlays the source layers' current transforms (one changed)."""
        labels, image = self.follower.labels, self.follower.image
        if labels is None or labels is not self._labels_layer:
            return
        plane = _follow.plane_transforms(labels)
        for layer in (self.selection_layer, self.ids_layer):
            if self._alive(layer):
                _follow.apply(layer, plane)
        if self._alive(self.activity_layer):
            _follow.apply(self.activity_layer, _follow.movie_transforms(plane, image))

    def set_selection(self, roi_ids, colors=None) -> None:
        """Outline the selected ROIs (a Labels layer drawn as contours), each in
        its row's colour (``colors``, 0-255 rgba in the order of ``roi_ids``;
        without them, the ROIs' own colours)."""
        self._selected = np.asarray(roi_ids, dtype=np.int64)
        self.show_ids(force=True)
        src = self._labels_layer
        if src is None or src not in self.viewer.layers:
            return
        labels = np.asarray(src.data)
        data = np.where(np.isin(labels, np.asarray(roi_ids, dtype=labels.dtype)), labels, 0)
        if self._alive(self.selection_layer):
            self.selection_layer.data = data
        else:
            self.selection_layer = self._add_quietly(
                self.viewer.add_labels, data, name=SELECTION_NAME, opacity=1.0,
                metadata={OVERLAY_KEY: True}, **_follow.plane_transforms(src),
            )
            self.selection_layer.contour = 3  # thicker than napari's label edges
            self.selection_layer.editable = False
        try:
            if colors is not None and len(colors) == len(roi_ids):
                from napari.utils.colormaps import DirectLabelColormap

                cdict = {None: (0.0, 0.0, 0.0, 0.0)}
                cdict.update({int(r): tuple(v / 255.0 for v in c[:3]) + (1.0,)
                              for r, c in zip(roi_ids, colors)})
                self.selection_layer.colormap = DirectLabelColormap(color_dict=cdict)
            else:
                # a copy: sharing the colormap object ties the outline's GL state
                # to the source layer, which crashed vispy once that layer was removed
                self.selection_layer.colormap = copy.deepcopy(src.colormap)
        except Exception:  # noqa: BLE001 - colours are cosmetic; keep the outline
            pass

    def _name_time_axis(self) -> None:
        """The activity layer adds a time axis: name it "t" where napari numbers it."""
        try:
            labels = list(self.viewer.dims.axis_labels)
            if len(labels) == 3 and labels[0].lstrip("-").isdigit():
                self.viewer.dims.axis_labels = ("t", *labels[1:])
        except Exception:  # noqa: BLE001 - cosmetic
            pass

    def set_activity(self, roi_ids, values: np.ndarray, hi: float | None = None) -> None:
        """Paint ``values`` (k, T) on the ROIs ``roi_ids``; redraws the current frame.
        ``hi`` is the values' maximum when known (spares a pass over them)."""
        if self.lazy is None or not self._alive(self.activity_layer):
            return
        self.lazy.set_values(roi_ids, values)
        if hi is None:
            hi = float(np.max(values)) if np.size(values) else 1.0
        self.activity_layer.contrast_limits = (0.0, hi if hi > 0 else 1.0)
        self.activity_layer.refresh()
