"""The tuner in a narrow dock (napari's right dock area is ~400 px wide): the parts
reflow instead of squeezing a control below its own minimum; and every control
says what it does in a tooltip.  Driven in a real viewer, the dock floated and
resized as a user does."""

from __future__ import annotations

import pytest
from qtpy.QtCore import QPoint, Qt
from qtpy.QtWidgets import (
    QAbstractButton, QAbstractItemView, QAbstractSpinBox, QComboBox, QDockWidget, QSlider,
    QTabBar,
)

from _widgets import open_tuner, viewer_with_recording, wait

CONTROLS = (QAbstractButton, QComboBox, QSlider, QAbstractSpinBox)


def _dock(w):
    d = w
    while d is not None and not isinstance(d, QDockWidget):
        d = d.parent()
    return d


def _shown(w):
    return [c for cls in CONTROLS for c in w.findChildren(cls) if c.isVisibleTo(w)]


@pytest.fixture
def tuner(make_napari_viewer, qtbot):
    viewer, _, _ = viewer_with_recording(make_napari_viewer, show=True)
    w = open_tuner(viewer)
    wait(qtbot, w)
    w.select_rois([3, 5])
    wait(qtbot, w)
    return w


def _x(c, w):
    return c.mapTo(w, QPoint(0, 0)).x()


def _beside(w) -> bool:
    """The plots to the right of the controls (the wide layout)."""
    return _x(w.plots, w) >= _x(w.controls, w) + w.controls.width()


def _check_usable(w):
    assert w.controls.lam.slider.width() >= 120  # still a slider to drag
    for c in _shown(w):
        name = c.currentText() if isinstance(c, QComboBox) else getattr(c, "text", str)()
        x = c.mapTo(w, QPoint(0, 0)).x()
        assert 0 <= x and x + c.width() <= w.width(), f"{name!r} outside the dock"
        # never squeezed below its own minimum (a combo's text cut, a slider a handle)
        assert c.width() >= c.minimumSizeHint().width() > 0, (name, c.width())
        assert c.height() > 0, name


def test_a_narrow_dock_reflows_and_keeps_every_control_whole(tuner, qtbot):
    w = tuner
    assert _beside(w)  # the usual width: controls beside the plots, as before
    qtbot.waitUntil(lambda: _check_usable(w), timeout=10_000)
    dock = _dock(w)
    dock.setFloating(True)
    dock.resize(420, 850)
    # (napari's own title bar and the test's fonts keep it a little wider than 420)
    # narrow, the plots and the ROI list wait behind their toggle (round 40: under the
    # controls they took the trace rows' room)
    qtbot.waitUntil(lambda: dock.width() <= 450 and w.section.isHidden(), timeout=10_000)
    qtbot.waitUntil(lambda: _check_usable(w), timeout=10_000)  # once laid out
    qtbot.mouseClick(w.section_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.section.isVisible() and not _beside(w), timeout=10_000)
    qtbot.waitUntil(lambda: _check_usable(w), timeout=10_000)  # once laid out
    # the plots keep their height and sit beside the ROI list, under the controls
    qtbot.waitUntil(lambda: w.kernel.height() >= 110, timeout=10_000)
    assert w.traces.height() > 0
    assert w.plots.mapTo(w, QPoint(0, 0)).y() >= w.controls.mapTo(w, QPoint(0, 0)).y() \
        + w.controls.height()
    # back to a wide dock: side by side again
    dock.resize(760, 850)
    qtbot.waitUntil(lambda: _beside(w), timeout=10_000)
    qtbot.waitUntil(lambda: _check_usable(w), timeout=10_000)


def test_every_control_has_a_tooltip(tuner):
    w = tuner
    missing = []
    for cls in CONTROLS:
        for c in w.findChildren(cls):
            if isinstance(c.parent(), (QTabBar, QAbstractSpinBox, QAbstractItemView)):
                continue  # a tab bar's scroll arrows, a table's corner button
            if not c.toolTip().strip():
                name = c.currentText() if isinstance(c, QComboBox) else getattr(c, "text", str)()
                missing.append((type(c).__name__, name))
    assert not missing
    for bar in w.findChildren(QTabBar):
        for i in range(bar.count()):
            assert bar.tabToolTip(i).strip(), bar.tabText(i)
    # the kinetic rows keep theirs when switched to peak / FWHM
    w.controls.kernel_mode.setCurrentIndex(1)
    assert "peak" in w.controls.kin_a.slider.toolTip()
    assert "half maximum" in w.controls.kin_b.box.toolTip()
