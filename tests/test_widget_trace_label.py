"""The tuner names the traces it shows (audit finding 5) and says, when it saves
a parameter file calab will read differently, what calab does (finding 6)."""

from __future__ import annotations

import json

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog

from _widgets import (  # noqa: F401 - fixtures
    FS, big_viewer, notes, open_tuner, recording, setup, wait,
)


def _headers(w):
    return [r.header.toPlainText() for r in w.traces.shown]


def test_movie_rows_say_mean_f_and_band_passed_when_the_filter_is_on(setup, qtbot):
    viewer, w, means, notes = setup
    assert w.traces.shown
    assert all("(mean F in ROI)" in h for h in _headers(w)), _headers(w)
    assert not any("raw F" in h for h in _headers(w))
    w.controls.filter_enabled.setChecked(True)  # a click on the box
    wait(qtbot, w)
    qtbot.waitUntil(lambda: all("(mean F in ROI, band-passed)" in h for h in _headers(w)),
                    timeout=20_000)


def test_pipeline_rows_name_the_trace_the_reader_recorded(make_napari_viewer, qtbot, notes):
    viewer = big_viewer(make_napari_viewer)
    _, labels, means = recording()
    ids = sorted(means)
    traces = np.array([means[i] for i in ids])
    viewer.add_labels(labels, name="plane0 ROIs", metadata={"catune": {
        "traces": traces, "fs": FS, "roi_ids": np.array(ids), "kind": "F - 0.7*Fneu"}})
    w = open_tuner(viewer)
    wait(qtbot, w)
    qtbot.waitUntil(lambda: bool(w.traces.shown), timeout=20_000)
    assert all("(F - 0.7·Fneu)" in h for h in _headers(w)), _headers(w)


def test_saving_a_drift_baseline_says_calab_uses_its_rolling_one(setup, qtbot, monkeypatch,
                                                                 tmp_path):
    viewer, w, means, notes = setup
    path = tmp_path / "p.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))
    w.controls.baseline.setCurrentText("drift")
    wait(qtbot, w)
    qtbot.mouseClick(w.controls.save_btn, Qt.LeftButton)
    assert json.loads(path.read_text())["formulation"]["baseline"] == "drift"
    assert "calab 0.3 would use its rolling baseline" in w.status.text(), w.status.text()
    assert any('ignores formulation.baseline="drift"' in m for m in notes["info"]), notes
    notes["info"].clear()
    w.controls.baseline.setCurrentText("rolling")  # what calab computes: nothing to say
    wait(qtbot, w)
    qtbot.mouseClick(w.controls.save_btn, Qt.LeftButton)
    assert "calab" not in w.status.text() and not any("calab" in m for m in notes["info"])
