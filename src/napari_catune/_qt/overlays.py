"""Viewer overlays of the tuner: selection outline, lazy activity, ROI ids.

The activity layer is a :class:`~.lazyactivity.LazyActivity` (frames built
only when napari asks for them); which ROI ids are written, and where:
:mod:`.roiids`.
"""

from __future__ import annotations

import weakref

import numpy as np
from qtpy.QtCore import QTimer

from . import follow as _follow
from .lazyactivity import LazyActivity, centroids, label_index  # noqa: F401 - re-exported
from .roiids import ID_TEXT_SIZE, RoiIds, camera_of, nearest_gap  # noqa: F401 - re-exported

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
        #: the selection layer's state: its array, each outlined ROI's row, the colormap's colours
        self._sel: dict | None = None
        #: (source layer, its ROI image, (ids, boxes) once found) and the ROI index of set_source
        self._plane = None
        self._index = None
        self._init_ids()  # (roiids.RoiIds)

        def on_zoom(event=None):
            me = ref()
            if me is not None:
                me.show_ids()

        self._on_zoom = on_zoom
        camera_of(viewer).events.zoom.connect(on_zoom)

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
            camera_of(self.viewer).events.zoom.disconnect(self._on_zoom)
        except Exception:  # noqa: BLE001 - already gone with the viewer
            pass
        self.selection_layer = self.activity_layer = self.ids_layer = None
        self.lazy = None
        self.made_for = None
        self._sel = self._plane = self._index = None

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
        self._plane = self._index = None
        if self._alive(self.selection_layer) and np.any(self.selection_layer.data):
            self.selection_layer.data = np.zeros_like(np.asarray(self.selection_layer.data))
        self._sel = None
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
        self._plane, self._index = (labels_layer, labels, None), index
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
        self._sel = None
        if self._alive(self.selection_layer):
            self._selection_target(labels, labels_layer)  # emptied
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
        without them, the ROIs' own colours).

        The layer holds each selected ROI's row (1 = the first) on its pixels,
        its ``features`` the ROI ids, and a colormap of the rows' colours.  A new
        selection rewrites only the pixels of the ROIs that came, went or moved
        to another row, and napari outlines only their boxes again: assigning a
        whole new image (and a new colormap) made napari outline the whole
        plane twice per selection (~1 s on 2048 x 2048, 2,000 ROIs).  The colormap changes
        only when the rows' colours do (a theme change)."""
        self._selected = np.asarray(roi_ids, dtype=np.int64)
        self.show_ids(force=True)
        src = self._labels_layer
        if src is None or src not in self.viewer.layers:
            return
        labels = self._plane_of(src)
        ids = list(dict.fromkeys(int(r) for r in roi_ids))  # (a repeated id: its first row)
        if colors is not None and len(colors) == len(roi_ids):
            first = {}
            for r, c in zip((int(r) for r in roi_ids), colors):
                first.setdefault(r, tuple(float(v) / 255.0 for v in tuple(c)[:3]) + (1.0,))
            rgba = [first[r] for r in ids]
        else:
            rgba = self._own_colors(src, ids)
        layer = self._selection_target(labels, src)
        st = self._sel
        want = {rid: k + 1 for k, rid in enumerate(ids) if self._roi_pixels(labels, rid)[0].size}
        cdict = self._slot_colors(rgba, colors if colors is not None else None)
        recolor = any(st["colors"].get(k) != v for k, v in cdict.items())
        changes = [(rid, 0) for rid, k in st["slots"].items() if want.get(rid) != k]
        changes += [(rid, k) for rid, k in want.items() if st["slots"].get(rid) != k]
        data = st["data"]
        for rid, k in changes:
            where = self._roi_pixels(labels, rid)
            if recolor:
                data[where] = k  # the colormap's refresh below redraws the whole layer
            else:
                # napari redraws (and outlines) this ROI's box only
                layer.data_setitem(where, k)
        st["slots"] = want
        if changes and not recolor:
            self._selection_thumbnail(layer, data)
        try:
            layer.features = {"index": np.arange(len(ids) + 1),
                              "roi_id": np.array([0] + ids, dtype=np.int64)}
        except Exception:  # noqa: BLE001 - the hover read-out is cosmetic
            pass
        if recolor:
            st["colors"] = {**st["colors"], **cdict}
            try:
                from napari.utils.colormaps import DirectLabelColormap

                cmap = {None: (0.0, 0.0, 0.0, 0.0)}
                cmap.update(st["colors"])
                layer.colormap = DirectLabelColormap(color_dict=cmap)
            except Exception:  # noqa: BLE001 - colours are cosmetic; keep the outline
                layer.refresh()

    @staticmethod
    def _selection_thumbnail(layer, data) -> None:
        """The layer list's thumbnail of the selection (a redraw by parts leaves it
        as it was): the rows sampled down to its size, as napari makes it."""
        try:
            from scipy import ndimage as ndi

            room = np.asarray(layer.thumbnail.shape[:2], dtype=float)
            shape = np.asarray(data.shape[-2:], dtype=float)
            new = np.clip(np.min(room / shape) * shape, 1, room)
            small = ndi.zoom(data.reshape(data.shape[-2:]) if data.ndim > 2 else data,
                             tuple(new / shape), order=0, prefilter=False)
            rgba = np.asarray(layer.colormap.map(small), dtype=float)
            rgba[..., 3] *= layer.opacity
            layer.thumbnail = rgba
        except Exception:  # noqa: BLE001 - cosmetic
            pass

    #: rows whose colours the outline's colormap holds from the start (the tuner's
    #: most: a growing selection then never changes the colormap)
    SLOTS = 20

    def _slot_colors(self, rgba, given) -> dict:
        """Row (1-based) -> rgba (0-1) for the colormap: the rows' colours and,
        when they are the tuner's selection colours, those of the rows to come."""
        out = {k + 1: tuple(c) for k, c in enumerate(rgba)}
        if given is None:
            return out
        try:
            from ._style import palette_of, selection_colors

            more = [tuple(float(v) / 255.0 for v in tuple(c)[:3]) + (1.0,)
                    for c in selection_colors(max(self.SLOTS, len(rgba)), palette_of(self.viewer))]
            if all(np.allclose(a, b, atol=1e-6) for a, b in zip(rgba, more)):
                out = {k + 1: c for k, c in enumerate(more)}
        except Exception:  # noqa: BLE001 - only the colormap's reuse is lost
            pass
        return out

    def _own_colors(self, src, ids) -> list:
        """The ROIs' colours in their Labels layer (opaque), for a selection
        outlined without its rows' colours."""
        try:
            got = np.asarray(src.colormap.map(np.asarray(ids, dtype=np.int64)), dtype=float)
            return [tuple(float(v) for v in c[:3]) + (1.0,) for c in got.reshape(len(ids), -1)]
        except Exception:  # noqa: BLE001 - cosmetic
            return [(1.0, 1.0, 1.0, 1.0)] * len(ids)

    def _plane_of(self, src) -> np.ndarray:
        """The source Labels layer's ROI image (read once per source)."""
        if self._plane is None or self._plane[0] is not src:
            self._plane = (src, np.asarray(src.data), None)
        return self._plane[1]

    def _roi_pixels(self, labels, rid: int):
        """(rows, cols) of ROI ``rid``'s pixels, found in its bounding box (the
        boxes of every ROI are found once per source, in one pass)."""
        src, arr, boxes = self._plane
        if boxes is None:
            from scipy import ndimage as ndi

            uniq, inverse = self._index if self._index is not None else label_index(arr)
            if inverse.size != arr.size:
                uniq, inverse = label_index(arr)
            self._index = (uniq, inverse)
            found = ndi.find_objects((inverse + 1).reshape(arr.shape), max_label=uniq.size)
            boxes = (uniq, found)
            self._plane = (src, arr, boxes)
        uniq, found = boxes
        p = int(np.searchsorted(uniq, rid))
        if rid == 0 or p >= uniq.size or uniq[p] != rid or found[p] is None:
            return tuple(np.zeros(0, np.intp) for _ in range(labels.ndim))
        box = found[p]
        return tuple(i + s.start for i, s in zip(np.nonzero(labels[box] == rid), box))

    def _selection_target(self, labels, src):
        """The selection layer, made (or emptied) for ``labels`` when it is new,
        was replaced, or holds another image."""
        st = self._sel
        layer = self.selection_layer
        ok = (self._alive(layer) and st is not None and st["layer"] is layer
              and layer.data is st["data"] and st["data"].shape == labels.shape)
        if ok:
            return layer
        data = np.zeros(labels.shape, dtype=np.uint8)  # rows 1..20: the texture as is
        if self._alive(layer):
            layer.data = data
        else:
            self.selection_layer = layer = self._add_quietly(
                self.viewer.add_labels, data, name=SELECTION_NAME, opacity=1.0,
                metadata={OVERLAY_KEY: True}, **_follow.plane_transforms(src),
            )
            layer.contour = 3  # thicker than napari's label edges
            layer.editable = False
        self._sel = {"layer": layer, "data": data, "slots": {}, "colors": {}}
        return layer

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
