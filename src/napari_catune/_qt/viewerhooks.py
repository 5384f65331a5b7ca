"""The tuner's ties to the viewer: weak hooks on its layers, dims, theme and mouse
(clicks select ROIs), and the teardown that undoes them.  A mixin of the tuner."""

from __future__ import annotations

import weakref

import numpy as np
from napari.utils import notifications
from qtpy.QtCore import QEvent, QTimer

from ._style import palette_of


def disconnect(viewer, hooks) -> None:
    if viewer is None:
        return
    on_layers, on_step, on_theme, on_mouse = hooks
    for em, cb in ((viewer.layers.events.inserted, on_layers),
                   (viewer.layers.events.removed, on_layers),
                   (viewer.dims.events.current_step, on_step),
                   (viewer.events.theme, on_theme)):
        try:
            em.disconnect(cb)
        except Exception:  # noqa: BLE001 - already gone with the viewer
            pass
    try:
        if on_mouse in viewer.mouse_drag_callbacks:
            viewer.mouse_drag_callbacks.remove(on_mouse)
    except Exception:  # noqa: BLE001
        pass


class ViewerHooks:
    """Methods of :class:`CaTuneTuner` that talk to the napari viewer."""

    # ========================================================== viewer
    def _hook_viewer(self) -> None:
        ref, alive = weakref.ref(self), {"ok": True}

        def me():
            w = ref()
            return w if (w is not None and alive["ok"] and not w._closed) else None

        def on_layers(event=None):
            if (w := me()) is not None:
                w._layers_changed(getattr(event, "type", None), getattr(event, "value", None))

        def on_step(event=None):
            if (w := me()) is not None:
                w._dims_changed()

        def on_theme(event=None):
            if (w := me()) is not None:
                w._apply_theme()

        def on_mouse(viewer, event):
            if (w := me()) is not None:
                yield from w._on_mouse(viewer, event)

        hooks = self._hooks = (on_layers, on_step, on_theme, on_mouse)
        viewer_ref, live = weakref.ref(self.viewer), self._live

        def on_destroyed(*_):
            alive["ok"] = False
            live.stop()
            disconnect(viewer_ref(), hooks)
            w = ref()
            if w is not None:
                w._closed = True
                w.actions.quit()
                w.picker.close()

        v = self.viewer
        v.layers.events.inserted.connect(on_layers)
        v.layers.events.removed.connect(on_layers)
        v.dims.events.current_step.connect(on_step)
        v.events.theme.connect(on_theme)
        v.mouse_drag_callbacks.append(on_mouse)
        self.destroyed.connect(on_destroyed)

    def _layers_changed(self, kind, layer) -> None:
        busy = (not self._live.idle or self.actions.apply_worker is not None
                or bool(self.picker.builds))
        made_for = self.overlays.made_for
        lost = self.picker.layers_changed(kind, layer)
        if kind == "removed" and (lost or (layer is not None and layer is made_for)):
            # the activity, ROI ids and selection of that source go with it
            self._overlay_timer.stop()
            self.overlays.drop()
        if lost:
            self.session.cancel()
            self.actions.layer_lost()
            if busy:
                notifications.show_warning(
                    f"Layer '{layer.name}' was removed while the CaTune tuner used it; "
                    "choose another data source in the tuner.")

    def _on_mouse(self, viewer, event):
        src = self.session.source
        if event.button != 1 or src is None or src.origin[1] not in viewer.layers:
            return
        labels = src.origin[1]
        if getattr(labels, "mode", "pan_zoom") not in ("pan_zoom", "pick", "transform"):
            return  # the user is painting or erasing
        press = np.asarray(event.pos, dtype=float)
        yield
        moved = False
        while event.type == "mouse_move":
            moved |= bool(np.hypot(*(np.asarray(event.pos, dtype=float) - press)) > 3)
            yield
        if moved:
            return  # a pan, not a click
        try:
            value = labels.get_value(event.position, view_direction=event.view_direction,
                                     dims_displayed=event.dims_displayed, world=True)
        except Exception:  # noqa: BLE001 - a click outside the layer is not an error
            return
        value = 0 if value is None else int(value)
        add = "Shift" in event.modifiers
        shared = self._shared_at(labels, event.position)
        if shared:
            # a pixel several ROIs share: the label shows one of them or none
            # (suite2p leaves shared pixels out of every trace): name them all
            opened = [i for i in shared if i in src.row]
            pick = [value] if value else opened
            names = ", ".join(map(str, shared[:-1])) + f" and {shared[-1]}"
            shown = (f"ROI {value} is drawn there" if value else
                     "it belongs to no trace (suite2p leaves shared pixels out)")
            left = [i for i in shared if i not in src.row]
            notifications.show_info(
                f"This pixel is shared by ROIs {names}; {shown}; selected: "
                f"{', '.join(map(str, pick)) or 'none'}"
                + (f" (not opened: {', '.join(map(str, left))})" if left else "") + "."
                + (" Pick another in the ROI list, or Shift-click a pixel of its own."
                   if value else ""))
            if pick:
                self.select_rois(pick, add=add)
        elif value != 0:
            self.select_rois([value], add=add)

    @staticmethod
    def _shared_at(labels, position) -> list:
        """The ids of the ROIs sharing the clicked pixel (the loader's overlap
        facts in the layer's metadata), or []."""
        from ..loaders import rois_at

        shared = (getattr(labels, "metadata", None) or {}).get("catune", {}).get("shared")
        if not shared:
            return []
        try:
            data = np.asarray(labels.world_to_data(position), dtype=float)
            row, col = (int(np.floor(v + 0.5)) for v in data[-2:])
        except Exception:  # noqa: BLE001 - outside the layer
            return []
        return list(rois_at(shared, row, col))

    def _time_layer(self):
        """The layer whose first axis is the traces' frames: the source movie, or
        the activity overlay (which follows it, 1 s a frame without one)."""
        src = self.session.source
        for layer in (None if src is None else src.origin[0], self.overlays.activity_layer):
            if layer is not None and layer in self.viewer.layers and layer.ndim == 3:
                return layer
        return None

    def _dims_changed(self) -> None:
        if self.viewer.dims.ndim >= 3 and self.session.source is not None:
            frame = int(self.viewer.dims.current_step[0])
            layer = self._time_layer()
            if layer is not None:  # another layer may set the slider's steps
                point = np.asarray(self.viewer.dims.point, dtype=float)[-3:]
                frame = int(np.floor(float(layer.world_to_data(point)[0]) + 0.5))
            self.traces.set_cursor_frame(frame)

    def _goto_frame(self, frame: int) -> None:
        src = self.session.source
        if src is None or self.viewer.dims.ndim < 3:
            return
        frame = int(min(max(frame, 0), src.n_frames - 1))
        layer = self._time_layer()
        if layer is None:
            self.viewer.dims.set_current_step(0, frame)
        else:
            t = float(layer.data_to_world([frame, 0.0, 0.0])[0])
            self.viewer.dims.set_point(self.viewer.dims.ndim - 3, t)
        self.traces.set_cursor_frame(frame)

    def _apply_theme(self) -> None:
        pal = palette_of(self.viewer)
        self.traces.set_theme(pal)
        self.kernel.set_theme(pal)
        self.spectrum.set_theme(pal)
        if self.session.selection:
            self._show_selection(self.session.selection)

    # ======================================================== teardown
    def closeEvent(self, event):  # noqa: N802 - Qt API
        self._teardown()
        super().closeEvent(event)

    def event(self, ev):  # noqa: D102 - Qt API
        if ev.type() == QEvent.ParentChange:
            # napari's close button takes the widget out of its dock (parent None)
            if self.parent() is not None:
                self._docked = True
            elif self._docked:
                self._teardown()
        return super().event(ev)

    def _teardown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._overlay_timer.stop()
        self._live.stop()
        self.actions.tuner_closed()  # (says what became of a running Apply to all)
        self.picker.close()
        disconnect(self.viewer, self._hooks)
        self.controls.close_session()
        self.roi_list.close_session()
        s = self.session
        for sig, slot in self._session_slots:
            try:
                sig.disconnect(slot)
            except Exception:  # noqa: BLE001
                pass
        s.submit = s._run_now
        s.cancel()
        # the tuner's layers go with it (on the next turn: not inside a Qt event
        # of the dock being removed)
        overlays = self.overlays
        QTimer.singleShot(0, overlays.remove)
