"""How the tuner shares its height is kept across restarts (round 41): the plots &
ROI list shown or hidden, and the controls' height after a splitter drag, are
written to napari-catune's settings file and restored by the tuner of a new
viewer; a drag made in a window of another height is restored only as far as it
leaves Estimate ... Apply in view, no empty pane under the controls, and a whole
trace row where one fits; foreign values in the file fall back to the defaults."""

from __future__ import annotations

import json

import pytest
from qtpy.QtCore import Qt

from _widgets import open_tuner, viewer_with_recording, wait
from _widgets import notes  # noqa: F401 - fixture
from test_widget_layout_fold import (  # noqa: F401
    _dock, _drag_handle, _in_view, narrow, tuner_with_rows)
from napari_catune._qt import settings as st
from napari_catune._qt.fold import ROWS_MIN_H


def _fold_in_file(path) -> dict:
    try:
        return json.loads(path.read_text()).get("fold", {})
    except (OSError, ValueError):
        return {}


def _narrow_tuner(make_napari_viewer, qtbot, height=850):
    """A new viewer's tuner in a floating dock 420 px wide."""
    viewer, _, _ = viewer_with_recording(make_napari_viewer, show=True)
    w = open_tuner(viewer)
    wait(qtbot, w)
    dock = _dock(w)
    dock.setFloating(True)
    dock.resize(420, height)
    qtbot.waitUntil(lambda: dock.width() <= 450 and abs(dock.height() - height) <= 10,
                    timeout=10_000)
    return viewer, w


def test_the_split_is_restored_in_the_next_napari(narrow, make_napari_viewer, qtbot,
                                                  _catune_settings):
    viewer, w = narrow
    split = w.splitter
    qtbot.mouseClick(w.section_btn, Qt.LeftButton)  # the plots & ROI list shown
    qtbot.waitUntil(lambda: w.section.isVisible(), timeout=5_000)
    qtbot.waitUntil(lambda: _fold_in_file(_catune_settings) == {"shown": True}, timeout=5_000)
    _drag_handle(qtbot, split, -40)  # the controls made shorter (the section scrolls)
    qtbot.waitUntil(lambda: split.sizes()[0] < w.fold.pane.natural_height() - 20,
                    timeout=5_000)
    dragged, total = split.sizes()[0], sum(split.sizes())
    # written once the drag stops
    qtbot.waitUntil(lambda: _fold_in_file(_catune_settings)
                    == {"shown": True, "top": dragged, "total": total}, timeout=5_000)
    # the next napari (a new viewer: nothing kept in memory for it), same window
    viewer2, w2 = _narrow_tuner(make_napari_viewer, qtbot)
    assert w2.fold.memory is not w.fold.memory
    qtbot.waitUntil(lambda: w2.section.isVisible() and w2.section_btn.isChecked(),
                    timeout=10_000)
    qtbot.waitUntil(lambda: abs(w2.splitter.sizes()[0] - dragged) <= 2, timeout=10_000)
    # hidden again there: kept so, and the drag forgotten (the pane fits its content)
    qtbot.mouseClick(w2.section_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: _fold_in_file(_catune_settings) == {"shown": False},
                    timeout=5_000)


def test_a_drag_from_a_window_of_another_height_leaves_the_controls_whole(
        make_napari_viewer, qtbot, notes, _catune_settings):
    # the last napari's drag hid Estimate ... Apply (the controls 90 px high) in a
    # window whose splitter was 400 px high
    _catune_settings.write_text(json.dumps(
        {"fold": {"shown": True, "top": 90, "total": 400}}))
    viewer, w = _narrow_tuner(make_napari_viewer, qtbot)
    pane, c, split = w.fold.pane, w.controls, w.splitter
    qtbot.waitUntil(lambda: w.section.isVisible() and abs(sum(split.sizes()) - 400) > 2,
                    timeout=10_000)
    # the section as chosen, but the controls whole: Estimate ... Apply in view
    qtbot.waitUntil(lambda: all(_in_view(b, pane) for b in (
        c.estimate_btn, c.undo_btn, c.save_btn, c.load_btn, c.apply_btn)), timeout=10_000)
    assert pane.verticalScrollBar().value() == 0
    assert split.sizes()[0] < pane.natural_height()  # (the section itself scrolls)
    assert split.widget(1).height() >= ROWS_MIN_H


def _row_h(tv) -> float:
    """A whole trace row's height (TraceView.fit_strip's)."""
    r = tv.shown[0]
    return max(tv.rows_glw.minimumHeight() / len(tv.shown),
               r.trace.minimumHeight() + r.act.minimumHeight() + 4)


@pytest.mark.parametrize("height", [700, 850])
def test_a_taller_drag_restored_in_a_shorter_window_leaves_no_empty_pane_and_a_whole_row(
        make_napari_viewer, qtbot, notes, _catune_settings, height):
    # the last napari's drag (revt41 #5): the controls dragged taller than their
    # content in a taller window (a 900-px napari: a 675-px splitter)
    _catune_settings.write_text(json.dumps({"fold": {"top": 499, "total": 675}}))
    viewer, w = tuner_with_rows(make_napari_viewer, qtbot)
    dock = _dock(w)
    dock.setFloating(True)
    dock.resize(420, height)
    pane, c, split, tv = w.fold.pane, w.controls, w.splitter, w.traces
    qtbot.waitUntil(lambda: dock.width() <= 450 and abs(dock.height() - height) <= 10
                    and w.section.isHidden(), timeout=10_000)
    wait(qtbot, w)
    natural = pane.natural_height() + 2 * pane.frameWidth()

    def settled():
        return (abs(sum(split.sizes()) - 675) > 2 and split.sizes()[0] <= natural + 2
                and tv.scroll.viewport().height() >= _row_h(tv))
    qtbot.waitUntil(settled, timeout=10_000)
    # no empty pane under the controls, which are whole (Estimate ... Apply in view)
    assert split.sizes()[0] <= natural + 2
    assert all(_in_view(b, pane) for b in (c.estimate_btn, c.apply_btn))
    assert pane.verticalScrollBar().value() == 0
    # and a whole row in the rows' view (its strip given way as far as needed)
    assert tv.scroll.viewport().height() >= _row_h(tv)
    assert w.fold.memory == {"top": 499, "total": 675, "restored": True}  # (kept as it was)


def test_a_drag_restored_where_no_whole_row_fits_keeps_the_controls_whole(
        make_napari_viewer, qtbot, notes, _catune_settings):
    _catune_settings.write_text(json.dumps({"fold": {"top": 3000, "total": 3100}}))
    viewer, w = _narrow_tuner(make_napari_viewer, qtbot, height=560)
    pane, c, split = w.fold.pane, w.controls, w.splitter
    qtbot.waitUntil(lambda: abs(sum(split.sizes()) - 3100) > 2
                    and split.sizes()[0] <= pane.natural_height() + 2 * pane.frameWidth() + 2
                    and all(_in_view(b, pane) for b in (c.estimate_btn, c.apply_btn)),
                    timeout=10_000)
    assert split.widget(1).height() >= ROWS_MIN_H


@pytest.mark.parametrize("fold", [
    {"shown": "yes"}, {"top": 120}, {"top": 500, "total": 400}, {"top": True, "total": 400},
    {"top": -3, "total": 400}, {"shown": True, "height": 3}, ["shown"], 7,
])
def test_foreign_fold_values_fall_back_to_the_defaults(_catune_settings, fold):
    _catune_settings.write_text(json.dumps({"fold": fold, "overlay": "fit"}))
    with pytest.warns(UserWarning, match="fold"):
        s = st.load()
    assert s.fold == {} and s.overlay == "fit"  # (the rest of the file kept)
    with pytest.raises(ValueError, match="fold"):
        s.fold = fold if isinstance(fold, dict) else {"shown": fold}


def test_fold_values_round_trip(_catune_settings):
    s = st.load()
    assert s.fold == {}
    s.fold = {"shown": False, "top": 180, "total": 610}
    assert st.load().fold == {"shown": False, "top": 180, "total": 610}
    assert json.loads(_catune_settings.read_text())["fold"]["top"] == 180
