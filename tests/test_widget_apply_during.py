"""Apply to all while the user does something else: paints the ROIs, switches the
tuner to other ROIs, closes the tuner.  The results never describe ROIs that are no
longer drawn, go to the layer they were computed for, and every outcome is said."""

from __future__ import annotations

import numpy as np
import pytest

import napari_catune.solver as solver_mod

from _widgets import gated, notes, setup, wait  # noqa: F401 - fixtures


def _paint_5_as_3(lab):
    """ROI 5's pixels become ROI 3's, in place, as napari's brush and fill do."""
    lab.data_setitem(tuple(np.argwhere(lab.data == 5).T), 3)


@pytest.mark.parametrize("in_place", [True, False])
def test_rois_edited_during_apply_stop_it_with_a_message(setup, qtbot, monkeypatch,
                                                         in_place):
    viewer, w, means, notes = setup
    gate, calls, real = gated(monkeypatch, solver_mod, "run_deconvolution_full")
    worker = w.apply_to_all()
    qtbot.waitUntil(lambda: len(calls) >= 1, timeout=120_000)
    lab = viewer.layers["rois"]
    data = lab.data
    if in_place:  # the brush: the array stays the same object
        _paint_5_as_3(lab)
        assert lab.data is data
    else:  # new ROIs in a new array
        lab.data = np.where(data == 5, 3, data)
    said = [m for m in notes["warning"] if "edited during Apply to all" in m]
    assert len(said) == 1 and "'rois'" in said[0] and "discarded" in said[0]
    assert said[0] == w.status.text()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        gate.set()
    assert worker.abort_requested
    assert "results" not in lab.metadata["catune"] and "roi_id" not in lab.features
    assert "cancelled" not in w.status.text()  # the reason stays on screen
    # applied again: the ROIs as drawn now (5 is gone)
    monkeypatch.setattr(solver_mod, "run_deconvolution_full", real)
    wait(qtbot, w)
    w.apply_to_all()
    qtbot.waitUntil(lambda: not w.apply_running, timeout=120_000)
    assert list(lab.metadata["catune"]["results"]["roi_ids"]) == [3, 8, 11, 12, 20]
    assert not notes["error"]


def test_apply_right_after_a_paint_stroke_waits_for_the_new_rois(setup, qtbot):
    viewer, w, means, notes = setup
    lab = viewer.layers["rois"]
    _paint_5_as_3(lab)  # the traces are read anew once the strokes pause
    w.apply_to_all()
    assert "starts once the traces are read" in w.jobs.text("apply")
    qtbot.waitUntil(lambda: not w.apply_running, timeout=120_000)
    res = lab.metadata["catune"]["results"]
    assert list(res["roi_ids"]) == [3, 8, 11, 12, 20]
    assert list(lab.features["roi_id"]) == [3, 8, 11, 12, 20]
    assert "Applied to 5 ROIs" in w.status.text()
    assert not notes["error"] and not notes["warning"]


def test_other_rois_chosen_during_apply_get_no_results_of_the_first(setup, qtbot,
                                                                    monkeypatch):
    viewer, w, means, notes = setup
    viewer.add_labels(np.pad(np.ones((4, 4), np.int32), ((0, 0), (0, 4)), constant_values=2),
                      name="tiles", metadata={"catune": {
                          "fs": 30.0, "traces": np.random.default_rng(1).normal(size=(2, 100)),
                          "roi_ids": np.array([1, 2])}})
    # the first solve of Apply to all waits; the new source's live solves do not
    gate, calls, _ = gated(monkeypatch, solver_mod, "run_deconvolution_full",
                           hold=lambda n: n == 1)
    worker = w.apply_to_all()
    qtbot.waitUntil(lambda: len(calls) >= 1, timeout=120_000)
    w.labels_combo.value = viewer.layers["tiles"]
    # the tuner shows the new ROIs: 100 frames, its own activity layer
    qtbot.waitUntil(lambda: w.overlays.lazy is not None and w.overlays.lazy.shape[0] == 100
                    and w.overlays.made_for is viewer.layers["tiles"], timeout=120_000)
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        gate.set()
    assert not notes["error"] and not notes["warning"]  # (was: "cannot reshape ...")
    rois = viewer.layers["rois"]
    res = rois.metadata["catune"]["results"]
    assert list(res["roi_ids"]) == [3, 5, 8, 11, 12, 20]
    assert res["activity"].shape == (6, 450)
    assert "results" not in viewer.layers["tiles"].metadata["catune"]
    assert w.session.batch is None  # the tuner's canvas keeps the new ROIs' activity
    assert w.overlays.lazy.roi_ids_shown <= 2
    said = [m for m in notes["info"] if "Apply to all finished for 'rois'" in m]
    assert len(said) == 1 and "'tiles'" in said[0] and "stored on 'rois'" in said[0]
    assert said[0] == w.status.text()


def test_closing_the_tuner_after_cancel_says_nothing_more(setup, qtbot, monkeypatch):
    viewer, w, means, notes = setup
    gate, calls, _ = gated(monkeypatch, solver_mod, "run_deconvolution_full")
    worker = w.apply_to_all()
    qtbot.waitUntil(lambda: len(calls) >= 1, timeout=120_000)
    w.jobs.cancel_button("apply").click()
    viewer.window.remove_dock_widget(w)
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        gate.set()
    assert not notes["warning"] and not notes["error"]


def test_an_edit_after_the_results_are_stored_is_no_discard(setup, qtbot):
    """An edit handled between the run's ``returned`` (results stored) and its
    ``finished`` is an edit after Apply: no "discarded" message (review rev36)."""
    viewer, w, means, notes = setup
    lab = viewer.layers["rois"]
    worker = w.apply_to_all()
    worker.returned.connect(lambda _: _paint_5_as_3(lab))  # after the tuner's handler
    qtbot.waitUntil(lambda: not w.apply_running, timeout=120_000)
    assert "results" in lab.metadata["catune"]
    assert not [m for m in notes["warning"] if "discarded" in m]
    assert "discarded" not in w.status.text()


def test_an_undo_napari_does_not_announce_is_seen_by_apply(setup, qtbot):
    """napari sends nothing for an undo on a hidden Labels layer: Apply to all
    compares the ROIs with what the traces were read from, and reads them anew."""
    viewer, w, means, notes = setup
    lab = viewer.layers["rois"]
    coords = np.argwhere(np.ones((6, 6), bool)) + [16, 16]
    lab.data_setitem(tuple(coords.T), 30)  # a brush stroke: ROI 30
    qtbot.waitUntil(lambda: w.session.source is not None and 30 in w.session.source.row,
                    timeout=120_000)
    wait(qtbot, w)
    lab.visible = False
    lab.undo()  # ROI 30 is gone; no event
    assert 30 not in lab.data and 30 in w.session.source.row
    w.apply_to_all()
    qtbot.waitUntil(lambda: not w.apply_running, timeout=120_000)
    assert 30 not in list(lab.metadata["catune"]["results"]["roi_ids"])
    assert list(lab.features["roi_id"]) == [3, 5, 8, 11, 12, 20]
    assert not notes["error"]
