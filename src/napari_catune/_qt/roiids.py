"""The ROI ids on the canvas: every ROI's id when the ids fit between the ROIs
at the current zoom, else only the selected ROIs' (just above their ROIs).

Qt-free: the fit and placement arithmetic, and :class:`RoiIds`, the part of
:class:`~napari_catune._qt.overlays.Overlays` that keeps the ids' Points layer
(``ids_layer``) written and placed for the camera's zoom.
"""

from __future__ import annotations

import math

import numpy as np

#: font size of the ROI ids on the canvas
ID_TEXT_SIZE = 8
#: width of a digit of the ids in screen px per point of font size (~0.6 em at 96 dpi)
_DIGIT_PX_PER_PT = 0.6 * 96 / 72


def camera_of(viewer):
    """The viewer's camera: ``viewer.scene.camera`` from napari 0.9 on
    (``viewer.camera`` is deprecated there and warns on every read), else
    ``viewer.camera``."""
    camera = getattr(getattr(viewer, "scene", None), "camera", None)
    return camera if camera is not None else viewer.camera


def nearest_gap(points: np.ndarray) -> float:
    """Median distance from each point to its nearest neighbour (inf for < 2)."""
    pts = np.asarray(points, dtype=float)
    if len(pts) < 2:
        return math.inf
    from scipy.spatial import cKDTree

    d, _ = cKDTree(pts).query(pts, k=2)
    return float(np.median(d[:, 1]))


class RoiIds:
    """Which ROI ids the ids layer writes, and where (a mixin of ``Overlays``:
    it brings ``ids_layer``, ``viewer`` and ``_alive``)."""

    def _init_ids(self) -> None:
        # the ROI ids: all of them when they fit between the ROIs at the current
        # zoom, else only the selected ones' (one check per zoom change)
        self._selected = np.zeros(0, np.int64)
        self._id_gap = math.inf  # median distance between neighbouring ROIs (data px)
        self._id_digits = 1
        self._id_radius = 0.0  # median ROI radius (data px)
        self.ids_all_shown = True

    def _measure_ids(self, cents, roi_ids, index) -> None:
        """The ROIs' spacing, size and the ids' widest number (``cents``: the
        centroids of the ROIs ``roi_ids`` that have pixels)."""
        self._id_gap = nearest_gap(cents)
        counts = np.bincount(index[1], minlength=index[0].size)[index[0] != 0]
        self._id_radius = float(np.sqrt(np.median(counts) / np.pi)) if counts.size else 0.0
        self._id_digits = len(str(int(np.max(np.abs(roi_ids))))) if len(roi_ids) else 1

    def ids_fit(self) -> bool:
        """True when an id's text fits between neighbouring ROIs at the current
        zoom (the median nearest-neighbour distance on screen >= the text's width)."""
        layer = self.ids_layer
        if not self._alive(layer) or not math.isfinite(self._id_gap):
            return True
        try:
            scale = float(np.min(np.abs(np.asarray(layer.scale)[-2:])))
            zoom = float(camera_of(self.viewer).zoom)
        except Exception:  # noqa: BLE001 - no camera: show them all
            return True
        text_px = (self._id_digits + 0.5) * _DIGIT_PX_PER_PT * ID_TEXT_SIZE
        return self._id_gap * scale * zoom >= text_px

    def show_ids(self, force: bool = False) -> None:
        """Every ROI's id when they fit at this zoom, else only the selected ROIs'
        (readable, and the key from an outline to its row)."""
        layer = self.ids_layer
        if not self._alive(layer) or not len(layer.data):
            return
        fit = self.ids_fit()
        self._place_ids(fit)
        if fit == self.ids_all_shown and not force:
            return
        self.ids_all_shown = fit
        feats = layer.features
        if "label" not in feats:
            return
        ids = np.asarray(feats["roi_id"], dtype=np.int64)
        # (the text, not the points' ``shown``: napari ignores that on a 2D layer)
        label = np.where(np.ones(ids.size, bool) if fit else np.isin(ids, self._selected),
                         ids.astype(str), "")
        if not np.array_equal(label, np.asarray(feats["label"], dtype=str)):
            feats["label"] = label
            # (refresh_text redraws the text; a layer.refresh after it re-sliced all
            # the points again: ~10 ms more on 2,000 ROIs)
            layer.refresh_text()

    def _place_ids(self, fit: bool) -> None:
        """All ids: on their ROIs; only the selected ones': just above their ROIs,
        off the fill and the outline (an offset in data px for the current zoom)."""
        layer = self.ids_layer
        dy = 0.0
        if not fit:
            try:
                scale = float(np.min(np.abs(np.asarray(layer.scale)[-2:])))
                zoom = float(camera_of(self.viewer).zoom)
                dy = self._id_radius + 0.75 * ID_TEXT_SIZE * 96 / 72 / max(zoom * scale, 1e-9)
            except Exception:  # noqa: BLE001 - cosmetic
                dy = 0.0
        old = float(np.ravel(layer.text.translation)[0]) if np.size(layer.text.translation) else 0.0
        if abs(-dy - old) > 0.1 * max(dy, 1e-9) or (dy == 0.0 and old != 0.0):
            # the text's own event moves the drawn text: no layer.refresh, which
            # re-sliced all the points on every zoom step (~5 ms on 2,000 ROIs)
            layer.text.translation = np.array([-dy, 0.0])
