"""Closing and reopening the dock keeps the time window (audit 39, item 7), as it
keeps the parameters and the selection: the window lives in the Qt-free session."""

from __future__ import annotations

import numpy as np
import pytest

from _widgets import open_tuner, viewer_with_recording, wait
from _widgets import notes  # noqa: F401 - fixture


def test_reopening_the_dock_keeps_the_time_window(make_napari_viewer, qtbot, notes):
    viewer, labels, means = viewer_with_recording(make_napari_viewer, show=True)
    w = open_tuner(viewer)
    wait(qtbot, w)
    w.select_rois([5, 12])
    wait(qtbot, w)
    full = w.traces.window
    assert full[0] == 0.0 and full[1] > 10.0  # 450 frames at 30 Hz: all 15 s shown
    w.traces.region.setRegion((3.0, 8.0))  # the overview's window dragged
    qtbot.waitUntil(lambda: w.traces.window == pytest.approx((3.0, 8.0)), timeout=10_000)
    viewer.window.remove_dock_widget(w)  # napari's close button does this
    qtbot.waitUntil(lambda: not any("CaTune" in l.name for l in viewer.layers),
                    timeout=60_000)
    w2 = open_tuner(viewer)
    wait(qtbot, w2)
    qtbot.waitUntil(lambda: w2.selected_rois == [5, 12] and bool(w2.traces.shown),
                    timeout=60_000)
    wait(qtbot, w2)
    assert w2.traces.window == pytest.approx((3.0, 8.0))
    assert [r.rid for r in w2.traces.shown] == [5, 12]
    # the rows draw that window
    r = w2.traces.shown[0]
    xs = np.asarray(r.raw.xData)
    assert xs.min() >= 3.0 - 1 / 30 and xs.max() <= 8.0 + 1 / 30
    # a new selection keeps the window; another recording would start at 0 again
    w2.select_rois([3])
    wait(qtbot, w2)
    assert w2.traces.window == pytest.approx((3.0, 8.0))
    assert not notes["error"]
