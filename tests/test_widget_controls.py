"""The tuner's controls beyond the sliders' basics: wheel steps, and where Estimate
pools from; driven as a user does in a real viewer."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QPoint, QPointF, Qt
from qtpy.QtGui import QWheelEvent
from qtpy.QtWidgets import QApplication

from _widgets import ROIS, notes, setup, wait  # noqa: F401 - fixtures


def _wheel(widget, notches: int = 1):
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    ev = QWheelEvent(pos, QPointF(widget.mapToGlobal(pos.toPoint())), QPoint(0, 0),
                     QPoint(0, 120 * notches),
                     Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
    QApplication.sendEvent(widget, ev)


def test_wheel_steps_a_few_per_cent(setup, qtbot):
    viewer, w, means, _ = setup
    w.set_params(w.params.replace(lam=0.05))
    wait(qtbot, w)
    # lambda's slider: one notch is one position, ~2.5 %
    _wheel(w.controls.lam.slider)
    wait(qtbot, w)
    assert 1.01 <= w.params.lam / 0.05 <= 1.05
    before = w.params.lam
    _wheel(w.controls.lam.slider, -1)
    wait(qtbot, w)
    assert 1.01 <= before / w.params.lam <= 1.05
    # a number box: one notch is 3 %
    box = w.controls.kin_b.box
    before = w.params.tau_decay
    box.setFocus()
    _wheel(box)
    wait(qtbot, w)
    assert 1.01 <= w.params.tau_decay / before <= 1.05


def test_estimate_pools_the_selection_or_all_rois(setup, qtbot, monkeypatch):
    import napari_catune.estimate as est_mod

    viewer, w, means, _ = setup
    seen = []
    real = est_mod.estimate_params
    monkeypatch.setattr(est_mod, "estimate_params",
                        lambda tr, *a, **k: seen.append(np.asarray(tr).copy()) or real(tr, *a, **k))
    w.select_rois([5, 12])
    wait(qtbot, w)
    combo = w.controls.estimate_from
    assert combo.currentText() == "from selection"
    qtbot.mouseClick(w.controls.estimate_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: len(seen) == 1 and w.controls.estimate_btn.isEnabled(),
                    timeout=120_000)
    wait(qtbot, w)
    src = w.session.source
    np.testing.assert_array_equal(seen[0], src.traces[[src.row[5], src.row[12]]])
    combo.setCurrentText("from all ROIs")
    qtbot.mouseClick(w.controls.estimate_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: len(seen) == 2 and w.controls.estimate_btn.isEnabled(),
                    timeout=120_000)
    wait(qtbot, w)
    assert seen[1].shape == (len(ROIS), src.n_frames)
    np.testing.assert_array_equal(seen[1], src.traces)
    assert "6 ROIs" in w.status.text()
    assert w.selected_rois == [5, 12]  # the selection is left as it was
