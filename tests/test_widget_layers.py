"""The tuner follows the viewer's layers: removing the Labels (or movie) layer it
works on takes away the layers made from it and leaves a consistent tuner; a
derived layer removed by hand breaks nothing (usr round 34, finding 8)."""

from __future__ import annotations

import numpy as np
import pytest

from _widgets import (  # noqa: F401 - fixtures
    FS, ROIS, assert_matches_core, drag, notes, recording, setup, wait,
)

NAMES = ("CaTune activity", "CaTune ROI ids", "CaTune selection")


def _ours(viewer):
    return sorted(l.name for l in viewer.layers if l.name.startswith("CaTune"))


def _ready(qtbot, viewer, w):
    qtbot.waitUntil(lambda: _ours(viewer) == sorted(NAMES) and w.idle, timeout=120_000)


def _still_works(w, qtbot, means, ids=(5, 12)):
    w.select_rois(list(ids))
    drag(w, "lam", 0.123)
    wait(qtbot, w)
    assert_matches_core(w, means, list(ids))


def _empty_tuner(w):
    return (w.selected_rois == [] and w.roi_list.listed_ids() == []
            and w.session.source is None and w.session.result is None)


@pytest.mark.parametrize("order", [("rois",), ("rois", "movie"), ("movie", "rois"),
                                   ("movie",), ("rois+movie",)])
def test_removing_the_source_removes_its_layers(setup, qtbot, order):
    viewer, w, means, notes = setup
    _ready(qtbot, viewer, w)
    w.select_rois([5, 12])
    wait(qtbot, w)
    movie, labels = viewer.layers["movie"], viewer.layers["rois"]
    for step in order:
        if step == "rois+movie":  # both in one turn of the event loop
            viewer.layers.remove(labels)
            viewer.layers.remove(movie)
        else:
            viewer.layers.remove(viewer.layers[step])
    qtbot.waitUntil(lambda: not _ours(viewer) and w.idle, timeout=120_000)
    left = [l.name for l in viewer.layers]
    assert left == [n for n in ("movie", "rois") if n in left]
    if "rois" not in left:
        assert _empty_tuner(w)
        assert list(w.labels_combo.choices) == []
        assert "Labels layer" in w.status.text()
    if left == ["rois"]:  # a Labels layer alone, without traces: said, no error
        assert "no movie is chosen" in w.status.text()
    assert not notes["error"] and not notes["warning"]
    # a recording again: the tuner takes it and makes its layers anew
    m, lab, _ = recording()
    if "movie" not in left:
        viewer.add_image(m, name="movie 2", metadata={"catune": {"fs": FS}})
    if "rois" not in left:
        viewer.add_labels(lab, name="rois 2", metadata={"catune": {"fs": FS}})
    w.labels_combo.value = viewer.layers["rois 2" if "rois" not in left else "rois"]
    if "movie" not in left:
        w.image_combo.value = viewer.layers["movie 2"]
    _ready(qtbot, viewer, w)
    assert w.overlays.made_for is w.labels_combo.value
    _still_works(w, qtbot, means)
    assert _ours(viewer) == sorted(NAMES) and not notes["error"]


@pytest.mark.parametrize("name", NAMES)
def test_a_derived_layer_removed_by_hand(setup, qtbot, name):
    viewer, w, means, notes = setup
    _ready(qtbot, viewer, w)
    viewer.layers.remove(viewer.layers[name])
    wait(qtbot, w)
    _still_works(w, qtbot, means)  # the tuner goes on; the selection outline is made anew
    assert "CaTune selection" in viewer.layers
    # a new source makes every layer again
    viewer.layers.remove(viewer.layers["rois"])
    qtbot.waitUntil(lambda: not _ours(viewer) and w.idle, timeout=120_000)
    viewer.add_labels(recording()[1], name="rois 2", metadata={"catune": {"fs": FS}})
    _ready(qtbot, viewer, w)
    assert not notes["error"] and not notes["warning"]


def test_another_labels_layer_removed_keeps_the_layers(setup, qtbot):
    viewer, w, means, notes = setup
    _ready(qtbot, viewer, w)
    other = viewer.add_labels(np.zeros((5, 5), np.int32), name="other labels")
    wait(qtbot, w)
    viewer.layers.remove(other)
    wait(qtbot, w)
    assert _ours(viewer) == sorted(NAMES)
    assert w.overlays.made_for is viewer.layers["rois"]
    _still_works(w, qtbot, means)


@pytest.mark.parametrize("close", ["dock", "viewer"])
def test_closing_while_the_layers_go(setup, qtbot, close):
    viewer, w, means, notes = setup
    _ready(qtbot, viewer, w)
    overlays = w.overlays
    viewer.layers.remove(viewer.layers["rois"])
    assert overlays.leaving  # on their way out, one per turn
    if close == "dock":
        viewer.window.remove_dock_widget(w)  # napari's close button does this
        qtbot.waitUntil(lambda: not _ours(viewer) and not overlays.leaving, timeout=120_000)
        assert [l.name for l in viewer.layers] == ["movie"]
        # no tuner callback is left on the viewer
        viewer.add_labels(recording()[1], name="rois 2")
        assert not any(l.name.startswith("CaTune") for l in viewer.layers)
    else:
        viewer.close()
        qtbot.waitUntil(lambda: not overlays.leaving, timeout=120_000)
    assert not notes["error"] and not notes["warning"]


def test_removing_the_source_resets_the_time_axis_and_overview(setup, qtbot):
    """After the Labels layer is removed, the trace view shows the time axis,
    window and overview of a new tuner, not the old recording's (usr round 34's
    screenshots: 0..45 s and an overview to 150 s over no rows)."""
    from napari_catune._qt.traceview import TraceView

    viewer, w, means, notes = setup
    _ready(qtbot, viewer, w)
    w.select_rois([5, 12])
    wait(qtbot, w)
    fresh = TraceView()
    qtbot.addWidget(fresh)
    tv = w.traces

    def view(t):
        return (tuple(np.round(t.window, 6)),
                tuple(np.round(t.overview.vb.viewRange()[0], 6)),
                tuple(np.round(t.region.getRegion(), 6)), t.cursor_seconds)

    w.traces.set_cursor_frame(200)
    before = view(tv)
    assert before != view(fresh)  # the recording's axis (its duration, cursor)
    viewer.layers.remove(viewer.layers["rois"])
    qtbot.waitUntil(lambda: not _ours(viewer) and w.idle, timeout=120_000)
    assert _empty_tuner(w)
    qtbot.waitUntil(lambda: view(tv) == view(fresh), timeout=10_000)
    assert tv.overview_curve.xData is None or len(tv.overview_curve.xData) == 0
    # a recording again: its own axis
    m, lab, _ = recording()
    viewer.add_labels(lab, name="rois 2", metadata={"catune": {"fs": FS}})
    w.labels_combo.value = viewer.layers["rois 2"]
    _ready(qtbot, viewer, w)
    w.select_rois([5, 12])
    wait(qtbot, w)
    assert view(tv)[1:3] == before[1:3]
    assert not notes["error"]
