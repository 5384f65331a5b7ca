"""A selection change costs the canvas only the ROIs that changed, and the first rows
are built without the context menus the row plots never show.

The selection outline used to be a new full-plane image (and a new colormap) per
selection: napari outlined the whole plane twice each time (seconds on a loaded
2048 x 2048 plane).  Here napari's outline work is counted, not timed.
"""

from __future__ import annotations

import numpy as np
import pytest

from _widgets import FS, big_viewer, open_tuner, wait

SIZE, SIDE, PITCH = 256, 6, 16  # 225 square ROIs; ROIs 1 and 2 touch (see plane)


def plane():
    labels = np.zeros((SIZE, SIZE), np.int32)
    ids = []
    k = 0
    for i in range(1, SIZE // PITCH):
        for j in range(1, SIZE // PITCH):
            k += 1
            labels[i * PITCH: i * PITCH + SIDE, j * PITCH: j * PITCH + SIDE] = k
            ids.append(k)
    # ROI 1 grows to touch ROI 2: a border between two selected ROIs is outlined too
    labels[PITCH: PITCH + SIDE, PITCH + SIDE: 2 * PITCH] = 1
    return labels, ids


@pytest.fixture
def tuned(make_napari_viewer, qtbot):
    viewer = big_viewer(make_napari_viewer, show=True)
    labels, ids = plane()
    rng = np.random.default_rng(0)
    T = 400
    h = np.exp(-np.arange(60) / (0.5 * FS))
    spikes = rng.random((len(ids), T)) < rng.uniform(0.005, 0.05, (len(ids), 1))
    traces = np.array([np.convolve(s, h)[:T] for s in spikes.astype(float)])
    traces += rng.normal(0, 0.1, traces.shape)
    viewer.add_labels(labels, name="rois", metadata={"catune": {
        "traces": traces, "fs": FS, "roi_ids": np.array(ids), "kind": "F - 0.7*Fneu"}})
    w = open_tuner(viewer)
    qtbot.waitUntil(lambda: w.picker.current is not None and not w.picker.builds,
                    timeout=120_000)
    return viewer, w, labels


def _main_outline(labels, ids, colors):
    """What the outline looked like before: ROI ids outlined by napari, coloured by row."""
    from napari.layers.labels._labels_utils import get_contours

    cont = get_contours(np.where(np.isin(labels, ids), labels, 0), 3, 0)
    out = np.zeros(labels.shape + (4,))
    for rid, c in zip(ids, colors):
        out[cont == rid] = [v / 255.0 for v in c[:3]] + [1.0]
    return out


def _shown(layer):
    """What napari draws for the layer: its outline of the data, through its colormap."""
    from napari.layers.labels._labels_utils import get_contours

    return layer.colormap.map(get_contours(np.asarray(layer.data), layer.contour, 0))


def test_a_selection_change_outlines_only_the_rois_that_changed(tuned, qtbot, monkeypatch):
    from napari.layers import Labels

    viewer, w, labels = tuned
    w.select_rois([1, 2, 40])
    wait(qtbot, w)
    qtbot.waitUntil(lambda: "CaTune selection" in viewer.layers, timeout=60_000)
    sel = viewer.layers["CaTune selection"]
    outlined = []
    real = Labels._calculate_contour

    def spy(self, raw, data_slice):
        if self is sel:
            outlined.append(int(np.prod([s.stop - s.start for s in data_slice])))
        return real(self, raw, data_slice)

    monkeypatch.setattr(Labels, "_calculate_contour", spy)
    recoloured = []
    sel.events.colormap.connect(lambda e: recoloured.append(1))
    for ids in ([2, 1, 100, 7], [150], [1, 2, 3, 4, 5, 6, 7, 8]):
        outlined.clear()
        w.select_rois(ids)
        wait(qtbot, w)
        assert [r.rid for r in w.traces.shown] == ids
        # napari outlined the boxes of the ROIs that came, went or changed row, never the
        # plane (before: the whole plane twice, 2 x 65,536 px, per selection change)
        assert 0 < sum(outlined) < 0.1 * SIZE * SIZE, outlined
        # the outline is still exactly the one of the ROI ids, in the rows' colours
        colors = [r.color for r in w.traces.shown]
        np.testing.assert_allclose(_shown(sel), _main_outline(labels, ids, colors), atol=1e-6)
        # and what napari holds for the canvas (updated by parts) is the whole recomputed
        np.testing.assert_array_equal(np.asarray(sel._slice.image.view),
                                      sel._raw_to_displayed(np.asarray(sel.data)))
        rows = np.unique(np.asarray(sel.data))
        assert set(sel.features["roi_id"].to_numpy()[rows]) == {0, *ids}
        # the layer list's thumbnail follows too (napari's redraw by parts leaves it)
        shown = sel.thumbnail.copy()
        sel._update_thumbnail()
        np.testing.assert_array_equal(shown, sel.thumbnail)
    assert not recoloured  # the rows' colours did not change: nor did the colormap


def test_a_theme_change_recolours_the_outline(tuned, qtbot):
    viewer, w, labels = tuned
    for theme in ("light", "dark"):
        viewer.theme = theme
        w.select_rois([3, 1, 2])
        wait(qtbot, w)
        sel = viewer.layers["CaTune selection"]
        colors = [r.color for r in w.traces.shown]
        np.testing.assert_allclose(_shown(sel), _main_outline(labels, [3, 1, 2], colors),
                                   atol=1e-6)


def test_rows_are_built_without_context_menus(tuned, qtbot, monkeypatch):
    """The row plots never show a context menu (style_plot turns it off): building
    the menus and throwing them away was a third of a row's cost on the first
    selection."""
    from pyqtgraph.graphicsItems.ViewBox import ViewBoxMenu

    viewer, w, labels = tuned
    made = []
    real = ViewBoxMenu.ViewBoxMenu.__init__

    def counting(self, *a, **k):
        made.append(1)
        real(self, *a, **k)

    monkeypatch.setattr(ViewBoxMenu.ViewBoxMenu, "__init__", counting)
    n_before = len(w.traces.rows)
    w.select_rois(list(range(1, 9)))
    wait(qtbot, w)
    assert n_before < 8 <= len(w.traces.rows)  # rows were built here
    assert not made
    for r in w.traces.shown:  # still no menu for a right-click, as before
        for p in (r.trace, r.act):
            assert not p.vb.menuEnabled() and p.vb.menu is None and not p.menuEnabled()


def test_the_first_rows_are_built_before_the_first_selection(tuned, qtbot, monkeypatch):
    """The tuner builds its first rows while the user has not selected yet, so the
    first selection only fills them (a row's plots take ~8-20 ms to make)."""
    from napari_catune._qt import rowplot

    viewer, w, labels = tuned
    ahead = w.traces.BUILT_AHEAD
    assert ahead >= 3
    # (the tuner opens showing one ROI; the others are built, not shown)
    qtbot.waitUntil(lambda: len(w.traces.rows) >= ahead, timeout=60_000)
    assert len(w.traces.shown) < ahead
    made = []
    real = rowplot.Row.__init__

    def counting(self, *a, **k):
        made.append(1)
        real(self, *a, **k)

    monkeypatch.setattr(rowplot.Row, "__init__", counting)
    w.select_rois([3, 7, 11])
    wait(qtbot, w)
    assert [r.rid for r in w.traces.shown] == [3, 7, 11]
    assert not made  # the first selection built no row
