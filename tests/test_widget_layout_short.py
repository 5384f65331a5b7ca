"""The trace rows in a short dock (round 41): the strip under them (the time axis
and the overview) gives way so that a whole row stays in view, and comes back
when there is room; and a slider move does not refit the controls' pane.
Driven as a user does: napari's window resized, the dock resized, a slider
moved."""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, QPoint, QRect, Qt

from _widgets import drag, wait
from _widgets import notes  # noqa: F401 - fixture
from test_widget_layout_fold import _dock, _in_view, narrow, tuner_with_rows  # noqa: F401
from napari_catune._qt import timestrip


def _seen(widget) -> QRect:
    """The part of ``widget`` (its own coordinates) not clipped by its parents."""
    if not widget.isVisible():
        return QRect()
    r, p, off = widget.rect(), widget, QPoint(0, 0)
    while p.parentWidget() is not None and not p.isWindow():
        off, p = off + p.pos(), p.parentWidget()
        r = r.intersected(QRect(-off, p.size()))
    return r


def _whole_rows(w) -> int:
    """How many trace rows are seen whole: the trace with its header and y axis
    and the activity under it."""
    tv = w.traces
    vp = tv.scroll.viewport()
    seen = _seen(vp)
    n = 0
    for r in tv.shown:
        top = tv.rows_glw.mapTo(vp, QPoint(0, int(r.trace.mapToScene(0, 0).y()))).y()
        bottom = tv.rows_glw.mapTo(vp, QPoint(0, int(r.act.mapToScene(
            r.act.boundingRect().bottomLeft()).y()))).y()
        n += bool(seen.height()) and top >= seen.top() and bottom <= seen.bottom() + 1
    return n


def _strip_whole_or_gone(w) -> bool:
    """The strip under the rows is seen whole or not shown: never cut."""
    g = w.traces.bottom_glw
    return not g.isVisible() or _seen(g).height() == g.height()


def test_a_short_window_keeps_a_whole_row_in_view(make_napari_viewer, qtbot, notes):
    # napari's window on a 1000-px screen, ~650 px high, the tuner docked 420 px wide:
    # main showed half a row (55 px) over a cut overview
    viewer, w = tuner_with_rows(make_napari_viewer, qtbot)
    qw = viewer.window._qt_window
    qw.resize(1100, 650)
    qw.resizeDocks([_dock(w)], [420], Qt.Horizontal)
    qtbot.waitUntil(lambda: qw.height() <= 660 and _dock(w).width() <= 440, timeout=10_000)
    wait(qtbot, w)
    qtbot.waitUntil(lambda: _whole_rows(w) >= 1, timeout=10_000)
    assert _strip_whole_or_gone(w)
    assert w.traces.strip.shows != timestrip.FULL  # the overview gave way
    # Estimate ... Apply to all stay in view, unscrolled
    pane, c = w.fold.pane, w.controls
    assert all(_in_view(b, pane) for b in (c.estimate_btn, c.undo_btn, c.save_btn,
                                           c.load_btn, c.apply_btn))
    assert pane.verticalScrollBar().value() == 0
    # a taller window: the time axis and the overview come back, whole
    qw.resize(1100, 950)
    qtbot.waitUntil(lambda: qw.height() >= 900, timeout=10_000)
    g = w.traces.bottom_glw
    qtbot.waitUntil(lambda: w.traces.strip.shows == timestrip.FULL and g.isVisible()
                    and _seen(g).height() == g.height() == timestrip.FULL_H, timeout=10_000)
    assert w.traces.overview.scene() is g.scene()
    assert _whole_rows(w) >= 2
    # and short again: gone again (not cut)
    qw.resize(1100, 650)
    qtbot.waitUntil(lambda: qw.height() <= 660 and _whole_rows(w) >= 1
                    and w.traces.strip.shows != timestrip.FULL, timeout=10_000)
    assert _strip_whole_or_gone(w)


def test_the_strip_gives_way_in_steps():
    row = 115
    assert timestrip.strip_for(row + timestrip.FULL_H, row) == timestrip.FULL
    assert timestrip.strip_for(row + timestrip.FULL_H - 1, row) == timestrip.AXIS
    assert timestrip.strip_for(row + timestrip.AXIS_H, row) == timestrip.AXIS
    assert timestrip.strip_for(row + timestrip.AXIS_H - 1, row) == timestrip.NONE
    assert timestrip.strip_for(10, row) == timestrip.NONE


class _Count(QObject):
    """Counts the layout requests ``obj`` gets."""

    def __init__(self, obj):
        super().__init__(obj)
        self.n = 0
        obj.installEventFilter(self)

    def eventFilter(self, obj, ev):  # noqa: N802 - Qt API
        if ev.type() == QEvent.Type.LayoutRequest:
            self.n += 1
        return False


def test_a_slider_move_does_not_refit_the_controls_pane(narrow, qtbot, monkeypatch):
    viewer, w = narrow
    fold, pane = w.fold, w.fold.pane
    qtbot.waitUntil(lambda: not fold._fit_timer.isActive(), timeout=5_000)
    calls = {"fit timer": 0, "place": 0}
    start, place = fold._fit_timer.start, pane._place

    def counting(name, f):
        def g(*a):
            calls[name] += 1
            return f(*a)
        return g

    monkeypatch.setattr(fold._fit_timer, "start", counting("fit timer", start))
    monkeypatch.setattr(pane, "_place", counting("place", place))
    asked = _Count(pane.widget())
    for lam in (0.05, 0.2, 0.08, 0.5):
        drag(w, "lam", lam)  # the lambda slider's read-outs change their text
        wait(qtbot, w)
        qtbot.waitUntil(lambda: asked.n > 0, timeout=5_000)
    # the controls asked for a layout (a label's new text) but their size did not
    # change: no refit (main restarted the fit timer and placed them at each)
    assert asked.n > 0
    assert calls == {"fit timer": 0, "place": 0}, (calls, asked.n)
    # a real change still refits: the section shown
    qtbot.mouseClick(w.section_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: calls["place"] > 0 and calls["fit timer"] > 0, timeout=5_000)
