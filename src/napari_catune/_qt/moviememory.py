"""Which movie the user chose for each Labels layer, so that coming back to a
layer restores it (a suite2p folder's Labels carry their own traces: falling
back to them silently tuned other traces than the user chose, audit aud40), and
the status note when the traces' source changes between a layer's own traces
and a movie's.  No Qt here."""

from __future__ import annotations

import weakref


class MovieMemory:
    """id(labels) -> (labels ref, movie ref or None: its own traces)."""

    def __init__(self):
        self._for: dict = {}
        self._last_own = None  # the last source said carried its own traces (True) or was a movie's

    def remember(self, labels, image) -> None:
        """The user chose ``image`` (None: the layer's own traces) for ``labels``."""
        if labels is not None:  # kept while both layers are there
            self._for[id(labels)] = (weakref.ref(labels),
                                     None if image is None else weakref.ref(image))

    def recall(self, labels, layers):
        """The movie chosen for ``labels`` (None: its own traces), or ``False``
        when nothing still in ``layers`` was chosen for it."""
        got = self._for.get(id(labels)) if labels is not None else None
        if got is None or got[0]() is not labels:
            return False
        if got[1] is None:
            return None
        image = got[1]()
        if image is None or image not in layers:
            return False
        return image

    def forget(self, layer) -> None:
        """``layer`` was removed: the movies remembered for it (or it as a movie) go."""
        for k, (lab_ref, img_ref) in list(self._for.items()):
            lab, img = lab_ref(), None if img_ref is None else img_ref()
            if lab is None or lab is layer or (img_ref is not None and (img is None
                                                                         or img is layer)):
                del self._for[k]

    def said(self, src) -> str:
        """"n ROIs, T frames.", led by a note when the traces' source changed
        between a Labels layer's own traces and a movie's."""
        image, labels = src.origin
        own = image is None
        carries = "traces" in (labels.metadata.get("catune", {})
                               if isinstance(labels.metadata, dict) else {})
        note = ""
        if carries and self._last_own is not None and own != self._last_own:
            note = (f"Traces from '{labels.name}' itself (the traces its file carries), "
                    "not from a movie: choose a movie above to read them from it. " if own else
                    f"Traces from the movie '{image.name}' (each ROI's mean), not the "
                    f"traces '{labels.name}' carries. ")
        self._last_own = own
        return f"{note}{src.n_rois} ROIs, {src.n_frames} frames."
