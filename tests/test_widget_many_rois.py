"""Finding cells among hundreds of ROIs (audit 39, item 5): the ROI ids on the
canvas only when they fit at the current zoom (else the selected ROIs' ids), 20
selected rows in 20 distinct colours, and the ROI list scrolled to an ROI
selected on the canvas."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from qtpy.QtCore import QPoint, Qt

from _widgets import FS, big_viewer, open_tuner, wait

PITCH, SIDE, GRID = 5, 3, 24  # 576 ROIs of 3x3 px, 5 px apart


def _lab(c):
    c = np.asarray(c[:3], float) / 255.0
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                  [0.0193, 0.1192, 0.9505]])
    x, y, z = m @ c / np.array([0.95047, 1.0, 1.08883])
    f = lambda t: np.cbrt(t) if t > 0.008856 else 7.787 * t + 16 / 116  # noqa: E731
    return np.array([116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))])


def _delta_e(a, b) -> float:
    return float(np.linalg.norm(_lab(a) - _lab(b)))


@pytest.fixture
def many(make_napari_viewer, qtbot):
    """A suite2p-like plane: 576 ROIs with their traces in the Labels metadata."""
    viewer = big_viewer(make_napari_viewer, show=True)
    rng = np.random.default_rng(3)
    labels = np.zeros((GRID * PITCH, GRID * PITCH), np.int32)
    ids = []
    for k, (i, j) in enumerate(itertools.product(range(GRID), range(GRID))):
        labels[i * PITCH: i * PITCH + SIDE, j * PITCH: j * PITCH + SIDE] = k + 1
        ids.append(k + 1)
    T = 600
    spikes = (rng.random((len(ids), T)) < rng.uniform(0.005, 0.05, (len(ids), 1)))
    h = np.exp(-np.arange(60) / (0.5 * FS))
    traces = np.array([np.convolve(s, h)[:T] for s in spikes.astype(float)])
    traces += rng.normal(0, 0.1, traces.shape)
    viewer.add_labels(labels, name="plane0 ROIs", metadata={"catune": {
        "traces": traces, "fs": FS, "roi_ids": np.array(ids), "kind": "F - 0.7*Fneu"}})
    w = open_tuner(viewer)
    wait(qtbot, w)
    qtbot.waitUntil(lambda: "CaTune ROI ids" in viewer.layers, timeout=60_000)
    wait(qtbot, w)
    return viewer, w, labels


def _shown_ids(layer):
    """The ids napari draws (its text in view)."""
    return {int(t) for t in layer._view_text if str(t)}


def test_roi_ids_show_only_when_they_fit_at_the_zoom(many, qtbot):
    viewer, w, labels = many
    layer = viewer.layers["CaTune ROI ids"]
    w.select_rois([5, 77])
    wait(qtbot, w)
    n = len(layer.data)
    assert n == GRID * GRID
    viewer.camera.zoom = 1.0  # 5 screen px between ROIs: three digits do not fit
    qtbot.waitUntil(lambda: _shown_ids(layer) == {5, 77}, timeout=10_000)
    # the selection changes: its ids follow
    w.select_rois([300])
    qtbot.waitUntil(lambda: _shown_ids(layer) == {300}, timeout=10_000)
    viewer.camera.zoom = 12.0  # 60 screen px between ROIs: every id fits
    qtbot.waitUntil(lambda: len(_shown_ids(layer)) == n, timeout=10_000)
    viewer.camera.zoom = 1.0
    qtbot.waitUntil(lambda: _shown_ids(layer) == {300}, timeout=10_000)


def test_twenty_selected_rows_have_twenty_distinct_colours(many, qtbot):
    from napari_catune._qt._style import Palette, selection_colors

    for pal in (Palette("#262930", "#f0f1f2", True), Palette("#efebe9", "#3b3a39", False)):
        cs = selection_colors(20, pal)
        worst = min(_delta_e(a, b) for a, b in itertools.combinations(cs, 2))
        assert worst > 10, (pal.dark, worst)  # CIELAB: told apart side by side
    viewer, w, labels = many
    ids = list(range(1, 21))
    w.select_rois(ids)
    wait(qtbot, w)
    pens = [r.fit.opts["pen"].color().getRgb()[:3] for r in w.traces.shown]
    assert [r.rid for r in w.traces.shown] == ids
    assert len(set(pens)) == 20  # rows 1, 9 and 17 no longer share one
    sel = viewer.layers["CaTune selection"]
    data = np.asarray(sel.data)
    for rid, pen in zip(ids, pens):  # each outline in its row's colour
        got = np.asarray(sel.colormap.map(np.array([data[labels == rid].max()])))[0][:3] * 255
        np.testing.assert_allclose(got, pen, atol=1.0)
    assert viewer.layers["CaTune selection"].contour >= 3  # thicker than label edges


def test_roi_list_scrolls_to_an_roi_selected_on_the_canvas(many, qtbot):
    viewer, w, labels = many
    table = w.roi_list.table
    last = w.roi_list.listed_ids()[-1]  # the lowest SNR: the end of the list
    row = len(w.roi_list.listed_ids()) - 1

    def in_view(r):
        rect = table.visualRect(w.roi_list.proxy.index(r, 0))
        return table.viewport().rect().contains(rect)

    assert not in_view(row)
    ys, xs = np.nonzero(labels == last)
    viewer.camera.center = (float(ys.mean()), float(xs.mean()))
    viewer.camera.zoom = 8
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.mouseClick(canvas, Qt.LeftButton, Qt.NoModifier,
                     QPoint(canvas.width() // 2, canvas.height() // 2))
    qtbot.waitUntil(lambda: w.selected_rois == [last], timeout=60_000)
    qtbot.waitUntil(lambda: in_view(row), timeout=10_000)
    assert w.roi_list.selected_ids() == [last]
    # a click in the list does not move it
    top = table.verticalScrollBar().value()
    r0 = table.rowAt(table.viewport().height() // 2)
    qtbot.mouseClick(table.viewport(), Qt.LeftButton, Qt.NoModifier,
                     table.visualRect(w.roi_list.proxy.index(r0, 0)).center())
    qtbot.waitUntil(lambda: w.selected_rois == [w.roi_list.listed_ids()[r0]], timeout=60_000)
    assert table.verticalScrollBar().value() == top
    wait(qtbot, w)
