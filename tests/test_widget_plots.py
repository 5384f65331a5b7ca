"""The tuner's spectrum (with the bandpass band) and imported ground-truth events,
driven as a user does in a real viewer."""

from __future__ import annotations

import math
import threading

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


# ------------------------------------- spectrum: the newest source's all-ROI curve
def test_all_roi_spectrum_shows_the_newest_source(setup, qtbot, monkeypatch):
    """A slow all-ROI spectrum of a source the user has left is not drawn over the
    one of the source now open, and is not kept as its cache either."""
    viewer, w, means, _ = setup
    sp = w.spectrum
    real = spectrum_mod.power_spectrum
    t = np.arange(200) / FS
    other = np.stack([5 + np.sin(2 * np.pi * f * t) for f in (1.0, 4.0, 9.0)])
    gate, entered, calls = threading.Event(), threading.Event(), []

    def held(y, fs, *a, **k):  # the other source's all-ROI spectrum waits on the gate
        calls.append(np.shape(y))
        if np.shape(y) == other.shape:
            entered.set()
            assert gate.wait(60)
        return real(y, fs, *a, **k)

    monkeypatch.setattr(spectrum_mod, "power_spectrum", held)
    lab = np.zeros((12, 12), np.int32)
    lab[:3, :3], lab[5:8, :3], lab[:3, 5:8] = 1, 2, 3
    viewer.add_labels(lab, name="tiles", metadata={"catune": {
        "fs": FS, "traces": other, "roi_ids": np.array([1, 2, 3])}})
    try:
        w.labels_combo.value = viewer.layers["tiles"]
        qtbot.waitUntil(entered.is_set, timeout=120_000)  # its worker is held
        w.labels_combo.value = viewer.layers["rois"]       # the user goes back
        wait(qtbot, w)
        src = w.session.source
        assert src.origin[1] is viewer.layers["rois"] and src.n_rois == 6
        want = real(src.traces, w.params.fs)  # 6 ROIs: every one in the all-ROI mean
        np.testing.assert_allclose(sp.all_curve.yData, want[1])
        with qtbot.waitSignal(sp._computed, timeout=60_000):
            gate.set()                                      # the old worker ends now
    finally:
        gate.set()
    qtbot.waitUntil(lambda: not sp.pending, timeout=60_000)
    np.testing.assert_allclose(sp.all_curve.xData, want[0])
    np.testing.assert_allclose(sp.all_curve.yData, want[1])
    # nor did the late result become the cache: a new selection here computes the
    # selection's spectrum only, and the all-ROI curve stays this source's
    n = len(calls)
    w.select_rois([8])
    wait(qtbot, w)
    assert calls[n:] == [(1, N_FRAMES)]
    np.testing.assert_allclose(sp.all_curve.yData, want[1])


class _Source:
    def __init__(self, freq, fs=20.0, n=4, T=400):
        t = np.arange(T) / fs
        self.traces = np.stack([np.sin(2 * np.pi * freq * t + k) for k in range(n)])
        self.n_rois = n


def test_all_roi_spectrum_of_a_freed_source_is_not_reused(qtbot):
    """The cache is not keyed by id(): a new source at a freed one's address (CPython
    hands the address out again) gets its own all-ROI spectrum."""
    import gc

    from napari_catune._qt.spectrum import SpectrumPlot

    sp = SpectrumPlot()
    qtbot.addWidget(sp)
    fs = 20.0
    a = _Source(1.0)
    with qtbot.waitSignal(sp._computed, timeout=60_000):
        sp.set_traces(np.zeros((0, 400)), a, fs)
    f_a = sp.all_curve.xData[np.argmax(sp.all_curve.yData)]
    assert f_a == pytest.approx(1.0, rel=0.1)
    for th in threading.enumerate():  # the worker lets go of the source as it ends
        if th.name == "catune-spectrum":
            th.join(60)
    old = id(a)
    del a
    gc.collect()
    b, keep = _Source(7.0), []
    for _ in range(2000):  # try for the freed address (a few hundred tries at most)
        if id(b) == old:
            break
        keep.append(b)
        b = _Source(7.0)
    reused = id(b) == old
    del keep
    with qtbot.waitSignal(sp._computed, timeout=60_000):
        sp.set_traces(np.zeros((0, 400)), b, fs)
    assert not sp.pending
    f_b = sp.all_curve.xData[np.argmax(sp.all_curve.yData)]
    assert f_b == pytest.approx(7.0, rel=0.1), f"address reused: {reused}"
    # the same source again: the all-ROI spectrum is not recomputed
    with qtbot.waitSignal(sp._computed, timeout=60_000) as blocker:
        sp.set_traces(np.zeros((0, 400)), b, fs)
    assert "all" not in blocker.args[1]
    # no source: the all-ROI curve is cleared, not left from the previous one
    with qtbot.waitSignal(sp._computed, timeout=60_000):
        sp.set_traces(b.traces[:1], None, fs)
    assert sp.all_curve.yData is None or len(sp.all_curve.yData) == 0


def test_spectrum_requests_do_not_pile_up(qtbot, monkeypatch):
    """Requests faster than spectra (an arrow key held in the ROI list) run at most
    four workers at once; one overtaken before it starts computes nothing, the
    rest wait in one slot, and the newest is drawn."""
    from napari_catune._qt import spectrum as mod

    sp = mod.SpectrumPlot()
    qtbot.addWidget(sp)
    real = spectrum_mod.power_spectrum
    gate, calls, lock = threading.Event(), [], threading.Lock()

    def held(y, fs, *a, **k):
        with lock:
            calls.append(np.asarray(y).copy())
        assert gate.wait(60)
        return real(y, fs, *a, **k)

    monkeypatch.setattr(spectrum_mod, "power_spectrum", held)
    fs = 20.0
    t = np.arange(400) / fs
    rows = [np.sin(2 * np.pi * (0.5 + 0.6 * k) * t)[None] for k in range(12)]
    try:
        for r in rows:
            sp.set_traces(r, None, fs)
            assert sp._workers <= mod._MAX_WORKERS
        assert sum(th.name == "catune-spectrum" for th in threading.enumerate()) \
            <= mod._MAX_WORKERS
        qtbot.waitUntil(lambda: len(calls) >= 1, timeout=60_000)
    finally:
        gate.set()
    qtbot.waitUntil(lambda: not sp.pending and sp._workers == 0, timeout=60_000)
    assert 1 <= len(calls) <= mod._MAX_WORKERS + 1
    np.testing.assert_array_equal(calls[-1], rows[-1])
    peak = sp.sel_curve.xData[np.argmax(sp.sel_curve.yData)]
    assert peak == pytest.approx(0.5 + 0.6 * 11, rel=0.1)


# ------------------------------------------------ activity row's y-range
def test_initial_calcium_run_does_not_set_the_activity_rows_range(make_napari_viewer, qtbot,
                                                                 tmp_path):
    """A recording starting with dark frames and then high with calcium from
    before it (realgt's DS07): the run holding that calcium is many times the
    row's later activity; the activity row's y-range is set by the rest, which
    stays readable (the run is drawn, clipped)."""
    from napari_catune.kernel import build_kernel

    from _widgets import big_viewer, open_tuner

    fs, T = 30.0, 1500
    rng = np.random.default_rng(7)
    t = np.arange(T) / fs
    spikes = np.zeros((2, T))
    spikes[:, 60::90] = 0.5
    h = build_kernel(0.05, 0.8, fs)
    y = np.stack([np.convolve(sp, h)[:T] for sp in spikes]) + 6.0 * np.exp(-t / 0.8)
    y += 0.02 * rng.standard_normal((2, T))
    y[:, :3] = -0.9  # the shutter opens at frame 3
    path = tmp_path / "dark.npz"
    np.savez(path, traces=y, fs=fs, roi_ids=np.array([1, 2]))
    viewer = big_viewer(make_napari_viewer)
    w = open_tuner(viewer)
    viewer.open(str(path), plugin="napari-catune")
    qtbot.waitUntil(lambda: w.session.source is not None, timeout=120_000)
    wait(qtbot, w)
    w.select_rois([1])
    wait(qtbot, w)
    w.traces.set_window(0.0, 45.0)
    (r,) = w.traces.shown
    qtbot.waitUntil(lambda: not r.dirty and r.data.get("activity") is not None, timeout=60_000)
    act = r.data["activity"]
    end = int(r.data["act_from"])
    assert 0 < end <= 10 and act[:end].max() > 5 * act[end:].max() > 0
    top = r.act.vb.viewRange()[1][1]
    assert act[end:].max() <= top <= 1.3 * 1.08 * act[end:].max()
