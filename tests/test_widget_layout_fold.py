"""The trace rows get the dock's height (round 40): the controls sit in a pane over
the rows with a splitter between them; the plots and the ROI list are a section
shown or hidden by a toggle (hidden by default in a narrow dock, where it would
sit above the rows).  Driven as a user does: the dock floated and resized, the
toggle clicked and pressed with the keyboard, the splitter's handle dragged, the
dock closed and reopened."""

from __future__ import annotations

import pytest
from qtpy.QtCore import QPoint, QRect, Qt
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QDockWidget

from _widgets import open_tuner, viewer_with_recording, wait
from _widgets import notes  # noqa: F401 - fixture


def _dock(w):
    d = w
    while d is not None and not isinstance(d, QDockWidget):
        d = d.parent()
    return d


def _y(c, w):
    return c.mapTo(w, QPoint(0, 0)).y()


def _rows_share(w) -> float:
    """The share of the tuner's height where trace rows are seen."""
    return w.traces.scroll.viewport().height() / w.height()


def tuner_with_rows(make_napari_viewer, qtbot, ids=(3, 5, 8)):
    """A shown viewer with the recording and its tuner, ``ids`` selected (three rows)."""
    viewer, _, _ = viewer_with_recording(make_napari_viewer, show=True)
    w = open_tuner(viewer)
    wait(qtbot, w)
    w.select_rois(list(ids))
    wait(qtbot, w)
    return viewer, w


@pytest.fixture
def narrow(make_napari_viewer, qtbot, notes):
    viewer, w = tuner_with_rows(make_napari_viewer, qtbot)
    dock = _dock(w)
    dock.setFloating(True)
    dock.resize(420, 850)
    qtbot.waitUntil(lambda: dock.width() <= 450 and w.section.isHidden(), timeout=10_000)
    qtbot.wait(200)  # (the pane is fitted on the next turn of the event loop)
    wait(qtbot, w)
    return viewer, w


def test_a_narrow_dock_gives_the_rows_the_room(narrow, qtbot):
    viewer, w = narrow
    # the plots and the ROI list wait behind the toggle, which says so
    assert w.section.isHidden() and not w.section_btn.isChecked()
    assert w.section_btn.isVisibleTo(w) and "plots" in w.section_btn.text()
    # the controls are whole (no scrolling) and the rows get the rest:
    # two rows of 3 in view (main: one, 13 % of the height)
    pane = w.fold.pane
    qtbot.waitUntil(lambda: not pane.verticalScrollBar().isVisible(), timeout=5_000)
    assert w.controls.apply_btn.isVisibleTo(w)
    rows = w.traces.shown
    assert len(rows) == 3
    row_h = rows[1].trace.mapToScene(0, 0).y() - rows[0].trace.mapToScene(0, 0).y()
    assert w.traces.scroll.viewport().height() >= 1.8 * row_h
    assert _rows_share(w) > 0.22


def test_the_toggle_shows_and_hides_the_plots_and_the_roi_list(narrow, qtbot):
    viewer, w = narrow
    share = _rows_share(w)
    qtbot.mouseClick(w.section_btn, Qt.LeftButton)
    # under the controls (once laid out), whole: the pane grew to hold them
    qtbot.waitUntil(lambda: w.section.isVisible()
                    and _y(w.plots, w) >= _y(w.controls, w) + w.controls.height(),
                    timeout=5_000)
    assert w.section_btn.isChecked() and w.roi_list.isVisible()
    qtbot.waitUntil(lambda: w.kernel.height() >= 110, timeout=5_000)
    pane = w.fold.pane
    qtbot.waitUntil(lambda: not pane.verticalScrollBar().isVisible()
                    and pane.height() >= pane.natural_height(), timeout=5_000)
    assert _rows_share(w) < share
    # and hidden again from the keyboard; the rows get their room back
    w.section_btn.setFocus()
    QTest.keyClick(w.section_btn, Qt.Key_Space)
    qtbot.waitUntil(lambda: w.section.isHidden() and not w.section_btn.isChecked(),
                    timeout=5_000)
    qtbot.waitUntil(lambda: _rows_share(w) >= share - 0.01, timeout=5_000)
    # the user's choice holds when the dock is made wide again
    _dock(w).resize(900, 850)
    qtbot.waitUntil(lambda: w.reflows[0].is_wide, timeout=10_000)
    qtbot.wait(100)
    assert w.section.isHidden()


def test_a_wide_dock_shows_the_section_beside_the_controls(make_napari_viewer, qtbot, notes):
    viewer, _, _ = viewer_with_recording(make_napari_viewer, show=True)
    w = open_tuner(viewer)
    wait(qtbot, w)
    qtbot.waitUntil(lambda: w.reflows[0].is_wide and w.section.isVisible(), timeout=10_000)
    assert w.section_btn.isChecked()
    assert _y(w.plots, w) < _y(w.controls, w) + w.controls.height()  # beside, not under


def _drag_handle(qtbot, split, dy):
    h = split.handle(1)
    c = QPoint(h.width() // 2, h.height() // 2)
    QTest.mousePress(h, Qt.LeftButton, Qt.NoModifier, c)
    QTest.mouseMove(h, c + QPoint(0, dy // 2))
    QTest.mouseMove(h, c + QPoint(0, dy))
    QTest.mouseRelease(h, Qt.LeftButton, Qt.NoModifier, c + QPoint(0, dy))


def test_a_dragged_splitter_scrolls_the_controls_and_is_kept_on_reopen(narrow, qtbot):
    viewer, w = narrow
    split = w.splitter
    before = split.sizes()[0]
    _drag_handle(qtbot, split, -120)
    qtbot.waitUntil(lambda: split.sizes()[0] <= before - 100, timeout=5_000)
    dragged = split.sizes()[0]
    pane = w.fold.pane
    qtbot.waitUntil(lambda: pane.verticalScrollBar().isVisible(), timeout=5_000)
    # Tab still reaches a control scrolled out of view, and scrolls it in
    apply = w.controls.apply_btn
    win = w.window()  # (the floating dock: the window whose focus moves)
    w.controls.kin_a.box.setFocus()
    seen = []
    for _ in range(40):
        if win.focusWidget() is apply:
            break
        seen.append(win.focusWidget())
        QTest.keyClick(win.focusWidget(), Qt.Key_Tab)
    assert win.focusWidget() is apply, [type(x).__name__ for x in seen]
    top = apply.mapTo(pane.viewport(), QPoint(0, 0)).y()
    assert 0 <= top and top + apply.height() <= pane.viewport().height()
    # closed and reopened: the same split, the section as the user left it
    qtbot.mouseClick(w.section_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.section.isVisible(), timeout=5_000)
    _drag_handle(qtbot, split, -40)
    qtbot.waitUntil(lambda: split.sizes()[0] < w.fold.pane.natural_height() - 20,
                    timeout=5_000)
    dragged = split.sizes()[0]
    viewer.window.remove_dock_widget(w)  # napari's close button does this
    qtbot.waitUntil(lambda: not any("CaTune" in l.name for l in viewer.layers),
                    timeout=60_000)
    w2 = open_tuner(viewer)
    wait(qtbot, w2)
    dock2 = _dock(w2)
    dock2.setFloating(True)
    dock2.resize(420, 850)
    qtbot.waitUntil(lambda: not w2.reflows[0].is_wide, timeout=10_000)
    qtbot.waitUntil(lambda: abs(w2.splitter.sizes()[0] - dragged) <= 2, timeout=10_000)
    assert w2.section.isVisible() and w2.section_btn.isChecked()


def _in_view(c, pane) -> bool:
    """``c`` whole inside the pane's visible viewport (not scrolled away)."""
    vp = pane.viewport()
    r = QRect(c.mapTo(vp, QPoint(0, 0)), c.size())
    return c.isVisible() and vp.rect().contains(r)


def test_in_napari_s_default_short_window_the_controls_come_before_the_rows(
        make_napari_viewer, qtbot, notes):
    # napari's window on a 1000-px screen is ~650 px high; the tuner docked ~420
    # px wide: Estimate ... Apply to all open in view, the rows get the rest
    viewer, w = tuner_with_rows(make_napari_viewer, qtbot)
    qw = viewer.window._qt_window
    qw.resize(1100, 650)
    qw.resizeDocks([_dock(w)], [420], Qt.Horizontal)
    qtbot.waitUntil(lambda: qw.height() <= 660 and _dock(w).width() <= 440
                    and w.section.isHidden(), timeout=10_000)
    pane = w.fold.pane
    c = w.controls
    qtbot.waitUntil(lambda: all(_in_view(b, pane) for b in (
        c.estimate_btn, c.undo_btn, c.save_btn, c.load_btn, c.apply_btn)), timeout=5_000)
    assert pane.verticalScrollBar().value() == 0  # opened so, not scrolled there
    # the rows keep a part of the height, and have it back when the window grows
    rows = w.splitter.widget(1)
    assert rows.height() >= 100
    qw.resize(1100, 950)
    qtbot.waitUntil(lambda: qw.height() >= 900, timeout=10_000)
    qtbot.waitUntil(lambda: w.traces.scroll.viewport().height()
                    >= 1.8 * (w.traces.shown[1].trace.mapToScene(0, 0).y()
                              - w.traces.shown[0].trace.mapToScene(0, 0).y()), timeout=5_000)
    assert _in_view(c.apply_btn, pane)


def test_opening_the_section_in_a_short_dock_brings_the_roi_list_into_view(
        make_napari_viewer, qtbot, notes):
    viewer, w = tuner_with_rows(make_napari_viewer, qtbot)
    dock = _dock(w)
    dock.setFloating(True)
    dock.resize(420, 220)  # as short as it goes
    qtbot.waitUntil(lambda: dock.width() <= 450 and w.section.isHidden(), timeout=10_000)
    pane = w.fold.pane
    qtbot.waitUntil(lambda: pane.height() < pane.natural_height(), timeout=5_000)
    qtbot.mouseClick(w.section_btn, Qt.LeftButton)
    # the click visibly does something: the ROI list (or its top) comes into view
    qtbot.waitUntil(lambda: w.roi_list.isVisible()
                    and w.roi_list.visibleRegion().boundingRect().height() >= 30, timeout=5_000)
    vp = pane.viewport()
    top = w.roi_list.mapTo(vp, QPoint(0, 0)).y()
    assert 0 <= top < vp.height()
