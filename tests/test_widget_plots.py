"""The tuner's spectrum (with the bandpass band) and imported ground-truth events,
driven as a user does in a real viewer."""

from __future__ import annotations

import math

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_catune._qt import spectrum as spectrum_mod
from napari_catune.kernel import bandpass_cutoffs

from _widgets import FS, N_FRAMES, drag, notes, setup, wait  # noqa: F401 - fixtures


# ------------------------------------------------------------------ spectrum
def test_power_spectrum_finds_a_sine_and_keeps_its_power():
    fs, T = 30.0, 6000
    t = np.arange(T) / fs
    rng = np.random.default_rng(0)
    y = np.stack([np.sin(2 * np.pi * 2.0 * t) + 0.01 * rng.standard_normal(T),
                  2 * np.sin(2 * np.pi * 2.0 * t + 1)])
    f, db = spectrum_mod.power_spectrum(y, fs)
    assert f[0] >= fs / T * 0.99 and f[-1] <= fs / 2 + 1e-9
    assert np.all(np.diff(np.log(f)) > 0)  # log-spaced bins, increasing
    assert f[np.argmax(db)] == pytest.approx(2.0, rel=0.05)
    # unbinned, the one-sided PSD integrates to the variance (Parseval), per trace
    f1, db1 = spectrum_mod.power_spectrum(y[:1], fs, bins=10 ** 6)
    df = fs / T
    assert np.sum(10 ** (db1 / 10)) * df == pytest.approx(np.var(y[0]), rel=0.05)
    assert spectrum_mod.power_spectrum(np.zeros((1, 8)), fs)[0].size == 0


def test_spectrum_of_the_selection_with_the_band(setup, qtbot, monkeypatch):
    viewer, w, means, _ = setup
    calls = []
    real = spectrum_mod.power_spectrum
    monkeypatch.setattr(spectrum_mod, "power_spectrum",
                        lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    w.select_rois([5, 12])
    wait(qtbot, w)
    sp = w.spectrum
    src = w.session.source
    f, db = real(src.traces[[src.row[5], src.row[12]]], FS)
    np.testing.assert_allclose(sp.sel_curve.xData, f)  # pyqtgraph keeps x in Hz
    np.testing.assert_allclose(sp.sel_curve.yData, db)
    assert sp.all_curve.yData is not None and len(sp.all_curve.yData) > 0
    assert (2, N_FRAMES) in calls
    # the band: the bandpass cutoffs of the current parameters, on the log axis
    p = w.params
    hp, lp = bandpass_cutoffs(p.tau_rise, p.tau_decay, p.fs)
    assert sp.cutoffs == pytest.approx((hp, lp))
    lo, hi = sp.band.getRegion()
    assert (10 ** lo, 10 ** hi) == pytest.approx((hp, lp))
    assert "(bandpass off)" in sp.text.text
    # a slider move moves the band and computes no spectrum
    n = len(calls)
    y_before = sp.sel_curve.yData
    drag(w, "tau_decay", 1.5)
    wait(qtbot, w)
    hp2, _ = bandpass_cutoffs(w.params.tau_rise, w.params.tau_decay, FS)
    assert hp2 < hp and 10 ** sp.band.getRegion()[0] == pytest.approx(hp2)
    assert len(calls) == n and sp.sel_curve.yData is y_before
    # the bandpass switch shades the band and says so
    qtbot.mouseClick(w.controls.filter_enabled, Qt.LeftButton)
    wait(qtbot, w)
    assert w.params.filter_enabled and "(bandpass on)" in sp.text.text
    assert sp.band.brush.color().alpha() > 40
    # a new selection is a new spectrum
    w.select_rois([20])
    wait(qtbot, w)
    np.testing.assert_allclose(sp.sel_curve.yData, real(src.traces[[src.row[20]]], FS)[1])
    # the tab is there for the user
    w.plots.setCurrentWidget(sp)
    qtbot.waitUntil(sp.isVisible)
    assert w.plots.tabText(w.plots.currentIndex()) == "spectrum"


# ------------------------------------------------------ ground truth from CSV
def test_events_csv_drawn_as_ticks(setup, qtbot, monkeypatch, tmp_path):
    viewer, w, means, notes = setup
    import napari_catune._qt.actions as actions_mod

    w.select_rois([5, 12])
    wait(qtbot, w)
    assert not w.truth_box.isVisible()  # no ground truth in this recording
    p = tmp_path / "spikes.csv"
    p.write_text("roi,time_s\n5,1.0\n5,2.5\n12,4.0\n77,1.0\n")
    monkeypatch.setattr(actions_mod.QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(p), "")))
    qtbot.mouseClick(w.truth_btn, Qt.LeftButton)
    wait(qtbot, w)
    assert w.truth_box.isVisible() and w.truth_box.text() == "imported events"
    r5, r12 = w.traces.shown
    assert np.unique(r5.truth.xData).tolist() == [1.0, 2.5]  # one tick per event, in s
    assert np.unique(r12.truth.xData).tolist() == [4.0]
    assert any("[77]" in m for m in notes["warning"])  # not an ROI here: said, skipped
    assert "3 events of 2 ROIs" in w.status.text()
    # ticks stay at their time when fs changes (the trace's time axis moves)
    w.controls.fs_preset.setCurrentText("60")
    wait(qtbot, w)
    assert np.unique(w.traces.shown[0].truth.xData).tolist() == [1.0, 2.5]
    # the toggle hides them
    qtbot.mouseClick(w.truth_box, Qt.LeftButton)
    wait(qtbot, w)
    assert w.traces.shown[0].truth.xData is None or len(w.traces.shown[0].truth.xData) == 0
    qtbot.mouseClick(w.truth_box, Qt.LeftButton)
    wait(qtbot, w)
    # a bad file: its message, the loaded events stay
    bad = tmp_path / "bad.csv"
    bad.write_text("roi,time_s\n5,later\n")
    monkeypatch.setattr(actions_mod.QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(bad), "")))
    qtbot.mouseClick(w.truth_btn, Qt.LeftButton)
    wait(qtbot, w)
    assert any("line 2" in m and "later" in m for m in notes["error"])
    assert np.unique(w.traces.shown[0].truth.xData).tolist() == [1.0, 2.5]
