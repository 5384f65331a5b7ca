"""A click on a pixel two suite2p ROIs share (pytest-qt + Xvfb).

suite2p flags such pixels ('overlap') and leaves them out of both traces, so
the Labels layer shows background there; the click names both ROIs and
selects them.  Layers made by the plugin's own suite2p reader path.
"""

from __future__ import annotations

import numpy as np
from napari.layers import Layer
from qtpy.QtCore import QPoint, Qt

from napari_catune._reader_pipelines import _layers
from napari_catune.loaders import load_suite2p

from _widgets import big_viewer, notes, open_tuner, wait  # noqa: F401 - fixtures
from test_loaders import make_suite2p


def _click_pixel(viewer, qtbot, row, col, modifier=Qt.NoModifier):
    viewer.scene.camera.center = (row, col)
    viewer.scene.camera.zoom = 20
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.mouseClick(canvas, Qt.LeftButton, modifier,
                     QPoint(canvas.width() // 2, canvas.height() // 2))


def test_click_on_a_shared_pixel_names_and_selects_both(make_napari_viewer, qtbot, notes,
                                                       tmp_path):
    plane = make_suite2p(tmp_path)
    data = load_suite2p(plane, allow_pickle=True, only_cells=False)
    viewer = big_viewer(make_napari_viewer)
    for d, meta, kind in _layers(data, "suite2p plane0"):
        viewer.add_layer(Layer.create(d, meta, kind))
    w = open_tuner(viewer)
    wait(qtbot, w)
    row, col = (int(v) for v in data.shared["pixels"][0])
    assert data.labels[row, col] == 0  # suite2p: the shared pixel is in no trace
    _click_pixel(viewer, qtbot, row, col)
    qtbot.waitUntil(lambda: w.selected_rois == [1, 2], timeout=120_000)
    said = [m for m in notes["info"] if "shared by ROIs 1 and 2" in m]
    assert said and "no trace" in said[-1], notes["info"]
    # a pixel of ROI 1's own: that ROI alone, and nothing more said
    n_info = len(notes["info"])
    ys, xs = np.nonzero(data.labels == 1)
    _click_pixel(viewer, qtbot, ys[0], xs[0])
    qtbot.waitUntil(lambda: w.selected_rois == [1], timeout=120_000)
    assert len(notes["info"]) == n_info
    wait(qtbot, w)
    assert not notes["error"]
