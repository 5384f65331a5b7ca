"""The source picker's watch on its layers' edits (a mixin of
:class:`~napari_catune._qt.source.SourcePicker`).

Painting or replacing a hooked layer's data drops its cached traces; napari's
Labels undo/redo sends no data or paint event, only ``set_data`` (also sent on
display changes), so the ROIs' fingerprints tell an edit apart.  Once a burst
of edits pauses, the current source's traces are read again.
"""

from __future__ import annotations

import weakref

from napari.layers import Labels

from .sourcejob import fingerprint as _fingerprint


class EditWatch:
    """Uses the picker's ``_hooked``, ``_prints``, ``_reread``, ``_edit_timer``,
    ``book``, ``current``, ``closed``, ``labels_combo``, ``key``, ``edited``
    and ``refresh``."""

    def _hook(self, layer) -> None:
        """Drop cached traces when ``layer``'s data are replaced or painted."""
        if layer is None:
            return
        known = self._hooked.get(id(layer))
        if known is not None and known[0]() is layer:
            return  # (a deleted layer's id may be reused: hence the check)
        ref, layer_ref = weakref.ref(self), weakref.ref(layer)

        def changed(event=None):
            me, lay = ref(), layer_ref()
            if me is not None and lay is not None and not me.closed:
                me._data_changed(lay)

        def set_data(event=None):
            me, lay = ref(), layer_ref()
            if me is not None and lay is not None and not me.closed:
                me._maybe_undone(lay)

        emitters = [layer.events.data] + ([layer.events.paint]
                                          if isinstance(layer, Labels) else [])
        for em in emitters:
            em.connect(changed)
        if isinstance(layer, Labels):
            self._prints[id(layer)] = _fingerprint(layer.data)
            layer.events.set_data.connect(set_data)
            layer.events.visible.connect(set_data)  # (a hidden layer sends no set_data)
        self._hooked[id(layer)] = (layer_ref, changed, set_data)

    def check_edits(self) -> None:
        """Compare every hooked ROI layer with its fingerprint now (an undo
        napari did not announce: Apply to all asks before it starts and stores)."""
        for layer_ref, *_ in list(self._hooked.values()):
            layer = layer_ref()
            if layer is not None and not self.closed:
                self._maybe_undone(layer)

    def _maybe_undone(self, layer) -> None:
        """``set_data`` came: an undo or redo if the ROIs differ from their
        fingerprint (while strokes go on there is none: their own events count)."""
        old = self._prints.get(id(layer))
        if old is None:
            return
        new = _fingerprint(layer.data)
        if new is not None and new != old:
            self._data_changed(layer)

    def _data_changed(self, layer) -> None:
        if id(layer) in self._prints:
            self._prints[id(layer)] = None  # taken again once the edits pause
        self.edited.emit(layer)
        # its cached traces go; a read of it under way took the ROIs before this
        # edit: its traces (F of the old ROIs, perhaps Fneu of the new) are dropped
        self.book.drop_layer(layer)
        if not self.closed and self.current is not None and layer in self.current.origin:
            self._reread = True
        self._edit_timer.start()  # a burst of paint events: once they pause

    @property
    def edit_pending(self) -> bool:
        """The current source's layers were just edited: their traces are read
        anew once the edits pause."""
        return self._reread and self._edit_timer.isActive()

    def _edited(self) -> None:
        for key, (layer_ref, *_) in list(self._hooked.items()):
            layer = layer_ref()
            if layer is not None and key in self._prints and self._prints[key] is None:
                self._prints[key] = _fingerprint(layer.data)
        reread, self._reread = self._reread, False
        if reread and not self.closed and (self.current is not None or (
                self.labels_combo.value is not None and not self.book.pending(self.key()))):
            self.refresh()

    def _unhook_all(self) -> None:
        """Disconnect from every hooked layer (the picker closes)."""
        for layer_ref, cb, on_set in self._hooked.values():
            layer = layer_ref()
            for name, fn in (("data", cb), ("paint", cb), ("set_data", on_set),
                             ("visible", on_set)):
                em = getattr(getattr(layer, "events", None), name, None)
                try:
                    if em is not None:
                        em.disconnect(fn)
                except Exception:  # noqa: BLE001 - already disconnected
                    pass
        self._hooked.clear()
        self._prints.clear()
