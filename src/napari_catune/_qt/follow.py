"""Where the tuner's overlay layers sit in the world: their source layers' transforms.

The overlays (activity, ROI ids, selection) are drawn on the ROIs' pixel grid,
so their scale, translate, rotate, shear, affine and units are the Labels
layer's; the activity layer's time axis is the movie's.  A :class:`Follower`
listens to those layers' transform events and lets the overlays copy them
each time one changes (a scale set after the tuner opened), until the tuner
takes another source.
"""

from __future__ import annotations

import weakref

import numpy as np

#: the layer events the overlays follow
FOLLOWED = ("scale", "translate", "rotate", "shear", "affine", "units")


def _embed(matrix, n: int = 1) -> np.ndarray:
    """``matrix`` in the lower right of an identity ``n`` rows/columns larger."""
    matrix = np.asarray(matrix, dtype=float)
    out = np.eye(matrix.shape[0] + n)
    out[n:, n:] = matrix
    return out


def plane_transforms(labels) -> dict:
    """The 2D layer keywords (``scale`` ... ``units``) of the Labels layer ``labels``."""
    out = {"scale": tuple(labels.scale[-2:]), "translate": tuple(labels.translate[-2:])}
    if labels.ndim == 2:  # (the tuner's ROIs are 2D; anything else keeps scale/translate)
        out.update(rotate=np.asarray(labels.rotate), shear=np.asarray(labels.shear),
                   affine=np.asarray(labels.affine.affine_matrix))
    out["units"] = tuple(labels.units[-2:])
    return out


def movie_transforms(plane: dict, image) -> dict:
    """The 3D (t, y, x) keywords: the plane's in y, x and the movie's time axis
    (scale 1 s per frame and origin 0 without a movie)."""
    t_scale = float(image.scale[0]) if image is not None else 1.0
    t_shift = float(image.translate[0]) if image is not None else 0.0
    out = {"scale": (t_scale, *plane["scale"]), "translate": (t_shift, *plane["translate"])}
    if "rotate" in plane:
        shear = plane["shear"]
        # napari gives a 2D shear as its one upper-triangular value, else as a matrix
        out.update(rotate=_embed(plane["rotate"]),
                   shear=np.r_[0.0, 0.0, shear] if shear.ndim == 1 else _embed(shear),
                   affine=_embed(plane["affine"]))
    t_unit = image.units[0] if image is not None else "pixel"
    out["units"] = (t_unit, *plane["units"])
    return out


def _current(layer, key):
    if key == "affine":
        return np.asarray(layer.affine.affine_matrix)
    if key == "units":
        return tuple(layer.units)
    return np.asarray(getattr(layer, key))


def apply(layer, transforms: dict) -> None:
    """Set on ``layer`` the transforms that differ (each set redraws and moves the dims)."""
    for key, value in transforms.items():
        now = _current(layer, key)
        if key == "units":
            if tuple(now) == tuple(value):
                continue
        elif np.array_equal(now, np.asarray(value, dtype=float)):
            continue
        try:
            setattr(layer, key, value)
        except Exception:  # noqa: BLE001 - a transform napari refuses here: keep the rest
            pass


class Follower:
    """Calls ``on_change()`` whenever the followed movie or Labels layer changes a
    transform; :meth:`stop` lets go (another source, or none)."""

    def __init__(self, on_change):
        self._on_change = on_change
        self._links: list = []
        self.image = None
        self.labels = None

    def follow(self, image, labels) -> None:
        if image is self.image and labels is self.labels and self._links:
            return
        self.stop()
        self.image, self.labels = image, labels
        ref = weakref.ref(self)

        def changed(event=None):
            me = ref()
            if me is not None:
                me._on_change()

        for layer in (image, labels):
            if layer is None:
                continue
            for name in FOLLOWED:
                emitter = getattr(layer.events, name, None)
                if emitter is not None:
                    emitter.connect(changed)
                    self._links.append((emitter, changed))

    def stop(self) -> None:
        links, self._links = self._links, []
        for emitter, cb in links:
            try:
                emitter.disconnect(cb)
            except Exception:  # noqa: BLE001 - gone with its layer
                pass
        self.image = self.labels = None
