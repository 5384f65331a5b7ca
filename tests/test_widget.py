"""The CaTune tuner dock widget in a real napari viewer (pytest-qt + Xvfb)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qtpy.QtCore import QPoint, Qt

import napari_catune.solver as solver_mod
from napari_catune.kernel import build_kernel
from napari_catune.params import TuningParams

FS = 30.0
N_FRAMES = 450
SHAPE = (40, 60)
# ROI id -> (row slice, col slice); ids are deliberately not 1..n
ROIS = {
    3: (slice(4, 14), slice(4, 14)),
    5: (slice(4, 14), slice(24, 34)),
    8: (slice(4, 14), slice(44, 54)),
    11: (slice(24, 34), slice(4, 14)),
    12: (slice(24, 34), slice(24, 34)),
    20: (slice(24, 34), slice(44, 54)),
}


def _recording(seed=0):
    """Tiny movie (T, Y, X) float32 + labels (Y, X) + the true per-ROI means."""
    rng = np.random.default_rng(seed)
    h = build_kernel(0.05, 0.5, FS)
    labels = np.zeros(SHAPE, np.int32)
    movie = rng.normal(0.0, 0.15, (N_FRAMES, *SHAPE)).astype(np.float32) + 1.0
    rates = np.linspace(0.01, 0.06, len(ROIS))  # ROIs differ in activity
    for (rid, (ys, xs)), rate in zip(ROIS.items(), rates):
        labels[ys, xs] = rid
        spikes = (rng.random(N_FRAMES) < rate) * rng.uniform(0.5, 1.5, N_FRAMES)
        calcium = np.convolve(spikes, h)[:N_FRAMES]
        movie[:, ys, xs] += calcium[:, None, None].astype(np.float32)
    means = {rid: movie[:, ys, xs].reshape(N_FRAMES, -1).mean(axis=1, dtype=np.float64)
             for rid, (ys, xs) in ROIS.items()}
    return movie, labels, means


@pytest.fixture
def notes(monkeypatch):
    """Record napari notifications instead of showing them."""
    import napari.utils.notifications as nt

    got = {"error": [], "warning": [], "info": []}
    monkeypatch.setattr(nt, "show_error", lambda m: got["error"].append(str(m)))
    monkeypatch.setattr(nt, "show_warning", lambda m: got["warning"].append(str(m)))
    monkeypatch.setattr(nt, "show_info", lambda m: got["info"].append(str(m)))
    return got


def _viewer_with_recording(make_napari_viewer, seed=0):
    viewer = make_napari_viewer()
    movie, labels, means = _recording(seed)
    viewer.add_image(movie, name="movie")
    viewer.add_labels(labels, name="rois")
    return viewer, labels, means


def _open(viewer):
    _, w = viewer.window.add_plugin_dock_widget("napari-catune", "CaTune tuner")
    return w


@pytest.fixture
def setup(make_napari_viewer, qtbot, notes):
    viewer = make_napari_viewer(show=True)
    movie, labels, means = _recording()
    viewer.add_image(movie, name="movie", metadata={"catune": {"fs": FS}})
    viewer.add_labels(labels, name="rois", metadata={"catune": {"fs": FS}})
    w = _open(viewer)
    qtbot.waitUntil(lambda: w.idle, timeout=10000)
    return viewer, w, means, notes


def _wait(qtbot, w):
    qtbot.waitUntil(lambda: w.idle, timeout=10000)


def _reference(w, ids, means):
    p = w.params
    y = np.stack([means[i] for i in ids])
    return solver_mod.run_deconvolution_full(y, p.fs, p.tau_rise, p.tau_decay, p.lam,
                                             baseline=True, filter_enabled=p.filter_enabled)


def _plotted(w, k):
    fit = [np.asarray(w.plots.fit_items[i].yData) for i in range(k)]
    act = [np.asarray(w.plots.activity_items[i].yData) for i in range(k)]
    return np.stack(fit), np.stack(act)


def _assert_matches_core(w, means, ids):
    ref = _reference(w, ids, means)
    fit, act = _plotted(w, len(ids))
    scale = np.ptp(np.stack([means[i] for i in ids]))
    # warm starts converge to the same optimum within the solver tolerance
    np.testing.assert_allclose(fit, ref.reconvolution, atol=2e-3 * scale)
    np.testing.assert_allclose(act, ref.activity, atol=5e-3 * max(ref.activity.max(), 1e-9))
    x = np.asarray(w.plots.fit_items[0].xData)
    np.testing.assert_allclose(x, np.arange(N_FRAMES) / w.params.fs)


# --------------------------------------------------------------------- opening
def test_open_via_npe2_picks_layers_and_lists_rois(setup):
    viewer, w, means, _ = setup
    assert w.labels_combo.value is viewer.layers["rois"]
    assert w.image_combo.value is viewer.layers["movie"]
    assert w.roi_table.rowCount() == len(ROIS)
    listed = [int(w.roi_table.item(r, 0).data(Qt.DisplayRole)) for r in range(len(ROIS))]
    snr = [float(w.roi_table.item(r, 1).data(Qt.DisplayRole)) for r in range(len(ROIS))]
    assert sorted(listed) == sorted(ROIS)
    assert snr == sorted(snr, reverse=True)  # most active first
    # the most active ROI is selected on opening, its raw trace is the ROI mean
    assert w.selected_rois == [listed[0]]
    np.testing.assert_allclose(w.plots.raw_items[0].yData, means[listed[0]], rtol=1e-6)
    assert w.params.fs == FS  # taken from the layer metadata
    _assert_matches_core(w, means, w.selected_rois)


def test_open_on_sample_data(make_napari_viewer, qtbot, notes):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-catune", "synthetic")
    w = _open(viewer)
    _wait(qtbot, w)
    assert len(w.selected_rois) == 1
    assert w.plots.fit_items[0].yData is not None and len(w.plots.fit_items[0].yData) > 0
    assert not notes["error"]


# ------------------------------------------------------------------- selection
def _click_roi(viewer, qtbot, rid, modifier=Qt.NoModifier):
    ys, xs = ROIS[rid]
    cy, cx = (ys.start + ys.stop - 1) / 2, (xs.start + xs.stop - 1) / 2
    viewer.scene.camera.center = (cy, cx)
    viewer.scene.camera.zoom = 4
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.wait(50)
    centre = QPoint(canvas.width() // 2, canvas.height() // 2)
    qtbot.mouseClick(canvas, Qt.LeftButton, modifier, centre)


def test_click_on_canvas_selects_and_shift_adds(setup, qtbot):
    viewer, w, means, _ = setup
    _click_roi(viewer, qtbot, 11)
    qtbot.waitUntil(lambda: w.selected_rois == [11], timeout=5000)
    _click_roi(viewer, qtbot, 5, Qt.ShiftModifier)
    qtbot.waitUntil(lambda: w.selected_rois == [11, 5], timeout=5000)
    _wait(qtbot, w)
    _assert_matches_core(w, means, [11, 5])
    # the outline layer holds exactly the selected ROIs
    sel = np.asarray(viewer.layers["CaTune selection"].data)
    assert set(np.unique(sel)) == {0, 11, 5}
    # shift-click on a selected ROI takes it out again
    _click_roi(viewer, qtbot, 11, Qt.ShiftModifier)
    qtbot.waitUntil(lambda: w.selected_rois == [5], timeout=5000)
    # a plain click replaces the selection; a click on background keeps it
    _click_roi(viewer, qtbot, 20)
    qtbot.waitUntil(lambda: w.selected_rois == [20], timeout=5000)
    viewer.scene.camera.center = (20, 2)  # background between ROIs
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.mouseClick(canvas, Qt.LeftButton, Qt.NoModifier,
                     QPoint(canvas.width() // 2, canvas.height() // 2))
    qtbot.wait(50)
    assert w.selected_rois == [20]


def test_select_in_list(setup, qtbot):
    viewer, w, means, _ = setup
    t = w.roi_table
    rows = {int(t.item(r, 0).data(Qt.DisplayRole)): r for r in range(t.rowCount())}
    t.clearSelection()
    t.selectRow(rows[8])
    assert w.selected_rois == [8]
    _wait(qtbot, w)
    _assert_matches_core(w, means, [8])
    w.select_rois([3, 12], add=True)
    assert w.selected_rois == [8, 3, 12]
    assert {i.row() for i in t.selectedIndexes()} == {rows[8], rows[3], rows[12]}
    assert w.plots.legend.items and len(w.plots.legend.items) == 4  # 3 ROIs + fit


def test_at_most_eight_rois(make_napari_viewer, qtbot, notes):
    viewer = make_napari_viewer()
    lab = np.zeros((30, 30), np.int32)
    traces = np.random.default_rng(1).normal(size=(10, 200)) + 5
    for i in range(10):
        lab[i * 3:(i * 3) + 2, :5] = i + 1
    viewer.add_labels(lab, metadata={"catune": {"fs": 10.0, "traces": traces}})
    w = _open(viewer)
    _wait(qtbot, w)  # traces are read in a worker
    w.select_rois(range(1, 11))
    assert len(w.selected_rois) == 8
    assert any("At most 8" in m for m in notes["warning"])
    _wait(qtbot, w)
    assert all(w.plots.fit_items[i].isVisible() for i in range(8))


# --------------------------------------------------------------------- sliders
@pytest.mark.parametrize("name,new", [("tau_rise", 0.02), ("tau_decay", 1.2),
                                      ("fs", 45.0), ("lam", 0.8)])
def test_each_slider_updates_fit_and_activity(setup, qtbot, name, new):
    viewer, w, means, _ = setup
    w.select_rois([12, 20])
    _wait(qtbot, w)
    fit0, act0 = _plotted(w, 2)
    entry = getattr(w.controls, name)
    entry.slider.value = entry.slider_position(new)  # as a user drag would
    _wait(qtbot, w)
    assert getattr(w.params, name) == pytest.approx(new, rel=2e-3)
    fit1, act1 = _plotted(w, 2)
    assert not np.allclose(act0, act1)
    if name != "fs":  # a new fs rescales time; the fit values may stay close
        assert not np.allclose(fit0, fit1)
    _assert_matches_core(w, means, [12, 20])


def test_typed_entry_and_fs_presets(setup, qtbot):
    viewer, w, means, _ = setup
    w.controls.tau_decay.spin.value = 0.75
    _wait(qtbot, w)
    assert w.params.tau_decay == pytest.approx(0.75)
    assert w.controls.tau_decay.slider.value == pytest.approx(np.log10(0.75), abs=1e-3)
    w.controls.fs_preset.value = "60"
    _wait(qtbot, w)
    assert w.params.fs == 60.0
    assert w.controls.fs_preset.value == "presets"
    _assert_matches_core(w, means, w.selected_rois)
    assert "t_peak" in w.controls.readout.value
    t_peak, fwhm = w.params.t_peak, w.params.fwhm
    assert f"{t_peak * 1e3:.1f} ms" in w.controls.readout.value
    assert w.plots.tpeak_line.value() == pytest.approx(t_peak)
    x, y = w.plots.fwhm_item.getData()
    assert x[1] - x[0] == pytest.approx(fwhm) and np.all(y == 0.5)


def test_toggles_reach_the_solver(setup, qtbot):
    viewer, w, means, _ = setup
    ids = w.selected_rois
    fit0, _ = _plotted(w, 1)
    w.controls.filter_enabled.value = True
    _wait(qtbot, w)
    assert w.params.filter_enabled
    fit1, _ = _plotted(w, 1)
    assert not np.allclose(fit0, fit1)
    _assert_matches_core(w, means, ids)
    w.controls.baseline.value = False
    _wait(qtbot, w)
    p = w.params
    ref = solver_mod.run_deconvolution_full(means[ids[0]], p.fs, p.tau_rise, p.tau_decay,
                                            p.lam, baseline=False, filter_enabled=True)
    np.testing.assert_allclose(w.plots.fit_items[0].yData, ref.reconvolution,
                               atol=2e-3 * np.ptp(means[ids[0]]))


def test_rise_above_decay_is_clamped(setup, qtbot):
    viewer, w, means, notes = setup
    w.controls.tau_decay.slider.value = w.controls.tau_decay.slider_position(0.1)
    w.controls.tau_rise.slider.value = w.controls.tau_rise.slider_position(0.3)
    _wait(qtbot, w)
    p = w.params
    assert p.tau_rise < p.tau_decay == pytest.approx(0.1, rel=2e-3)
    assert notes["info"] and "tau_rise" in notes["info"][0]
    _assert_matches_core(w, means, w.selected_rois)


def test_stale_results_are_never_drawn(setup, qtbot):
    viewer, w, means, _ = setup
    # a burst of slider events: only results newer than what is shown are drawn
    for td in np.linspace(0.4, 2.0, 15):
        w.controls.tau_decay.slider.value = w.controls.tau_decay.slider_position(td)
    _wait(qtbot, w)
    assert w.params.tau_decay == pytest.approx(2.0, rel=2e-3)
    _assert_matches_core(w, means, w.selected_rois)


# ----------------------------------------------------------------- time cursor
def test_time_cursor_follows_dims_and_plot_click_moves_dims(setup, qtbot):
    viewer, w, means, _ = setup
    viewer.dims.set_current_step(0, 120)
    assert w.plots.cursor_seconds == pytest.approx(120 / FS)
    # click in the activity plot at t = 5 s
    qtbot.wait(50)
    scene = w.plots.scene_pos_of_time(5.0)
    view = w.plots.glw
    pos = view.mapFromScene(scene)
    qtbot.mouseClick(view.viewport(), Qt.LeftButton, Qt.NoModifier, pos)
    qtbot.waitUntil(lambda: viewer.dims.current_step[0] != 120, timeout=3000)
    assert abs(viewer.dims.current_step[0] - 5.0 * FS) <= 2
    assert w.plots.cursor_seconds == pytest.approx(viewer.dims.current_step[0] / FS)
    # dragging the cursor line moves napari too
    line = w.plots.cursors[0]
    line.setValue(10.0)
    line.sigDragged.emit(line)
    assert viewer.dims.current_step[0] == 300


# -------------------------------------------------------------------- overlays
def test_activity_layer_is_lazy_and_shows_activity(setup, qtbot):
    viewer, w, means, _ = setup
    w.select_rois([3, 8])
    _wait(qtbot, w)
    layer = viewer.layers["CaTune activity"]
    lazy = layer.data
    assert type(lazy).__name__ == "LazyActivity"
    assert lazy.shape == (N_FRAMES, *SHAPE)
    act = np.stack([w.plots.activity_items[i].yData for i in range(2)])
    t = int(np.argmax(act[1]))
    before = lazy.frames_built
    viewer.dims.set_current_step(0, t)
    qtbot.wait(20)
    frame = np.asarray(lazy[t])
    assert lazy.max_frames_per_call <= 2  # never the whole movie at once
    assert lazy.frames_built - before <= 4
    lab = np.asarray(viewer.layers["rois"].data)
    np.testing.assert_allclose(frame[lab == 8], act[1, t], rtol=1e-5)
    np.testing.assert_allclose(frame[lab == 3], act[0, t], rtol=1e-5)
    assert np.all(frame[~np.isin(lab, [3, 8])] == 0)
    # the fit can be shown instead
    w.controls.overlay_mode.value = "fit"
    fit = np.asarray(w.plots.fit_items[1].yData)
    np.testing.assert_allclose(np.asarray(lazy[t])[lab == 8], fit[t], rtol=1e-5)
    ids_layer = viewer.layers["CaTune ROI ids"]
    assert sorted(ids_layer.features["roi_id"]) == sorted(ROIS)


# ------------------------------------------------------------------ parameters
def test_save_and_reload_into_fresh_widget(setup, make_napari_viewer, qtbot, tmp_path):
    viewer, w, means, notes = setup
    p = TuningParams(tau_rise=0.0321, tau_decay=0.876, fs=20.0, lam=0.37, filter_enabled=True,
                     baseline=False)
    assert w.set_params(p)
    _wait(qtbot, w)
    assert w.params == p
    path = tmp_path / "tuned.json"
    assert w.save_params(path)
    data = json.loads(path.read_text())
    assert data["parameters"]["tau_decay_s"] == pytest.approx(0.876)
    viewer2 = make_napari_viewer()
    w2 = _open(viewer2)
    assert w2.params != p
    assert w2.load_params(path) == p
    assert w2.params == p
    assert w2.controls.baseline.value is False  # the baseline choice travels too
    assert not notes["error"]


def test_estimate_from_data_moves_sliders(setup, qtbot):
    viewer, w, means, notes = setup
    w.set_params(TuningParams(0.2, 3.0, FS, 0.05))
    _wait(qtbot, w)
    worker = w.estimate_from_data()
    assert worker is not None, notes["error"]
    _wait(qtbot, w)
    p = w.last_estimate
    assert p is not None, notes["error"]
    assert w.params.tau_decay == pytest.approx(p.tau_decay)
    assert w.params.tau_rise == pytest.approx(p.tau_rise)
    assert w.params.fs == FS
    _assert_matches_core(w, means, w.selected_rois)


# ---------------------------------------------------------------- apply to all
def test_apply_to_all_stores_results(setup, qtbot, tmp_path):
    viewer, w, means, _ = setup
    worker = w.apply_to_all()
    assert worker is not None
    # the worker may finish before a signal wait could connect: wait on state
    qtbot.waitUntil(lambda: not w.apply_running, timeout=20000)
    _wait(qtbot, w)
    lay = viewer.layers["rois"]
    res = lay.metadata["catune"]["results"]
    ids = [int(i) for i in res["roi_ids"]]
    assert sorted(ids) == sorted(ROIS)
    ref = _reference(w, ids, means)
    np.testing.assert_allclose(res["activity"], ref.activity, atol=1e-6 * ref.activity.max())
    np.testing.assert_allclose(res["baseline"], ref.baseline, rtol=1e-6)
    f = lay.features
    for col in ("roi_id", "snr", "event_rate_hz", "baseline", "converged"):
        assert col in f.columns
    assert list(f["roi_id"]) == ids
    assert np.all(f["event_rate_hz"] >= 0) and np.all(np.isfinite(f["snr"]))
    assert res["params"] == w.params.to_dict()
    # the activity overlay now paints every ROI
    lazy = viewer.layers["CaTune activity"].data
    assert lazy.roi_ids_shown == len(ROIS)
    t = 200
    frame = np.asarray(lazy[t])
    lab = np.asarray(lay.data)
    for k, rid in enumerate(ids):
        np.testing.assert_allclose(frame[lab == rid], res["activity"][k, t], rtol=1e-5)
    assert not w.progress.isVisible()
    # the results go out through the plugin's writers
    out = viewer.layers["rois"].save(str(tmp_path / "activity.npy"), plugin="napari-catune")
    np.testing.assert_array_equal(np.load(out[0] if isinstance(out, list) else out),
                                  res["activity"])
    out = viewer.layers["rois"].save(str(tmp_path / "tuned.json"), plugin="napari-catune")
    from napari_catune.params import load_params

    assert load_params(tmp_path / "tuned.json") == w.params


def test_apply_to_all_cancel_midway(setup, qtbot, monkeypatch):
    viewer, w, means, notes = setup
    import threading

    gate = threading.Event()
    real = solver_mod.run_deconvolution_full
    calls = []

    def slow(*a, **k):
        calls.append(1)
        if len(calls) > 1:
            gate.wait(5)  # hold the worker until cancel was pressed
        return real(*a, **k)

    monkeypatch.setattr(solver_mod, "run_deconvolution_full", slow)
    worker = w.apply_to_all()
    assert w.controls.cancel_btn.enabled and not w.controls.apply_btn.enabled
    qtbot.waitUntil(lambda: len(calls) >= 2, timeout=5000)
    with qtbot.waitSignal(worker.finished, timeout=10000):
        w.controls.cancel_btn.native.click()
        gate.set()
    assert worker.abort_requested
    assert len(calls) < len(ROIS)
    assert "results" not in viewer.layers["rois"].metadata["catune"]
    assert w.controls.apply_btn.enabled and not w.controls.cancel_btn.enabled
    assert "cancelled" in w.status.text()
    monkeypatch.setattr(solver_mod, "run_deconvolution_full", real)
    # still usable afterwards
    w.apply_to_all()
    qtbot.waitUntil(lambda: not w.apply_running, timeout=20000)
    assert "results" in viewer.layers["rois"].metadata["catune"]


# ---------------------------------------------------------------------- errors
def _still_works(w, qtbot, means):
    _wait(qtbot, w)
    w.select_rois([next(iter(ROIS))])
    w.controls.lam.slider.value = 0.123
    _wait(qtbot, w)
    _assert_matches_core(w, means, w.selected_rois)


def test_bad_parameter_files(setup, qtbot, tmp_path):
    viewer, w, means, notes = setup
    before = w.params
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert w.load_params(bad) is None
    assert w.load_params(tmp_path / "missing.json") is None
    out = tmp_path / "out.json"
    p = dict(before.to_dict())
    out.write_text(json.dumps({"schema_version": "1.2.0", "parameters": {
        "tau_rise_s": 5.0, "tau_decay_s": 0.5, "lambda": 0.1, "sampling_rate_hz": 30.0}}))
    assert w.load_params(out) is None
    assert len(notes["error"]) == 3
    assert "missing.json" in notes["error"][1]
    assert "tau_rise" in notes["error"][2]
    assert w.params == before
    p["lam"] = -1.0  # lambda 50 is valid (issue 10); a negative one is not
    assert w.set_params(p) is False
    assert "lambda" in notes["error"][3]
    assert not w.save_params(tmp_path / "no_such_dir" / "x.json")
    assert len(notes["error"]) == 5
    _still_works(w, qtbot, means)


def test_shape_mismatch_notifies(setup, qtbot):
    viewer, w, means, notes = setup
    viewer.add_labels(np.ones((10, 10), np.int32), name="small")
    w.labels_combo.value = viewer.layers["small"]
    assert any("shape" in m and "small" in m for m in notes["error"])
    assert w.roi_table.rowCount() == 0 and w.selected_rois == []
    w.labels_combo.value = viewer.layers["rois"]
    _still_works(w, qtbot, means)


def test_roi_without_pixels_notifies(setup, qtbot):
    viewer, w, means, notes = setup
    w.select_rois([999])
    assert any("999" in m for m in notes["warning"])
    # traces for an id that has no pixels in the tile layer
    lab = np.zeros((10, 10), np.int32)
    lab[:4, :4] = 1
    viewer.add_labels(lab, name="tiles", metadata={"catune": {
        "fs": 10.0, "traces": np.random.default_rng(0).normal(size=(2, 100)),
        "roi_ids": np.array([1, 2])}})
    w.labels_combo.value = viewer.layers["tiles"]
    assert w.image_combo.value is None  # the layer carries its own traces
    _wait(qtbot, w)
    assert any("no pixels" in m and "2" in m for m in notes["warning"])
    assert w.roi_table.rowCount() == 2  # still listed and selectable by the list
    w.select_rois([2])
    _wait(qtbot, w)
    assert w.plots.fit_items[0].yData is not None
    w.labels_combo.value = viewer.layers["rois"]
    assert w.image_combo.value is viewer.layers["movie"]
    _still_works(w, qtbot, means)


def test_layer_removed_while_solving(setup, qtbot, monkeypatch):
    viewer, w, means, notes = setup
    import threading

    gate = threading.Event()
    real = solver_mod.run_deconvolution_full

    def slow(*a, **k):
        gate.wait(5)
        return real(*a, **k)

    monkeypatch.setattr(solver_mod, "run_deconvolution_full", slow)
    w.SYNC_SOLVE_S = 0.0  # force the background solve thread
    w.controls.lam.slider.value = 0.5
    qtbot.waitUntil(lambda: not w._live.idle, timeout=3000)
    labels = viewer.layers["rois"]
    viewer.layers.remove(labels)
    gate.set()
    qtbot.waitUntil(lambda: w._live.idle, timeout=5000)
    qtbot.wait(50)
    assert any("rois" in m and "removed" in m for m in notes["warning"])
    assert w.selected_rois == [] and w.roi_table.rowCount() == 0
    monkeypatch.setattr(solver_mod, "run_deconvolution_full", real)
    viewer.add_labels(np.asarray(labels.data), name="rois again")
    w.labels_combo.value = viewer.layers["rois again"]
    assert w.image_combo.value is viewer.layers["movie"]
    _still_works(w, qtbot, means)


def test_solver_error_notifies_and_recovers(setup, qtbot, monkeypatch):
    viewer, w, means, notes = setup
    real = solver_mod.run_deconvolution_full

    def broken(*a, **k):
        raise ValueError("synthetic solver failure")

    monkeypatch.setattr(solver_mod, "run_deconvolution_full", broken)
    w.controls.lam.slider.value = 0.4
    _wait(qtbot, w)
    assert any("synthetic solver failure" in m for m in notes["error"])
    monkeypatch.setattr(solver_mod, "run_deconvolution_full", real)
    _still_works(w, qtbot, means)


# ------------------------------------------------------------ layers and looks
def test_tuner_opened_before_the_data(make_napari_viewer, qtbot, notes):
    viewer = make_napari_viewer()
    w = _open(viewer)
    assert w.labels_combo.value is None and w.selected_rois == []
    movie, labels, means = _recording(seed=3)
    viewer.add_image(movie, name="movie")
    viewer.add_labels(labels, name="rois")
    qtbot.waitUntil(lambda: len(w.selected_rois) == 1, timeout=5000)
    assert w.image_combo.value is viewer.layers["movie"]
    _wait(qtbot, w)
    _assert_matches_core(w, means, w.selected_rois)
    # the overlay layers are never offered as data sources
    names = [c[0] for c in w.labels_combo.choices] if isinstance(
        w.labels_combo.choices[0], tuple) else [getattr(c, "name", c) for c in
                                                 w.labels_combo.choices]
    assert all("CaTune" not in str(n) for n in names)
    assert not notes["error"]


def test_theme_and_roi_colours(setup, qtbot):
    from napari.utils.theme import get_theme

    viewer, w, means, _ = setup
    w.select_rois([3, 12])
    _wait(qtbot, w)
    lab = viewer.layers["rois"]
    for i, rid in enumerate([3, 12]):
        want = np.asarray(lab.get_color(rid))[:3]
        pen = w.plots.activity_items[i].opts["pen"]
        got = np.array(pen.color().getRgbF()[:3])
        np.testing.assert_allclose(got, want, atol=1 / 255 + 1e-6)
    for theme in ("light", "dark"):
        viewer.theme = theme
        bg = w.plots.glw.backgroundBrush().color().name()
        assert bg.lower() == get_theme(theme).background.as_hex().lower()


def test_traces_extracted_once_per_pair(make_napari_viewer, qtbot, notes, monkeypatch):
    import napari_catune.traces as traces_mod

    calls = []
    real = traces_mod.extract_traces

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(traces_mod, "extract_traces", counting)
    viewer, labels, means = _viewer_with_recording(make_napari_viewer)
    w = _open(viewer)
    _wait(qtbot, w)
    assert len(calls) == 1
    for name, v in (("tau_decay", 0.9), ("lam", 0.3), ("fs", 40.0)):
        entry = getattr(w.controls, name)
        entry.slider.value = entry.slider_position(v)
        _wait(qtbot, w)
    w.select_rois([3, 5, 8])
    _wait(qtbot, w)
    assert len(calls) == 1
    # another labels layer and back: the first pair comes from the cache
    viewer.add_labels(labels.copy(), name="rois 2")
    w.labels_combo.value = viewer.layers["rois 2"]
    _wait(qtbot, w)
    assert len(calls) == 2
    w.labels_combo.value = viewer.layers["rois"]
    _wait(qtbot, w)
    assert len(calls) == 2
    _wait(qtbot, w)
    _assert_matches_core(w, means, w.selected_rois)


def test_painting_a_new_roi_refreshes_the_traces(setup, qtbot):
    viewer, w, means, notes = setup
    w.select_rois([3, 5])
    _wait(qtbot, w)
    lab = viewer.layers["rois"]
    movie = viewer.layers["movie"].data
    # paint a new ROI 30 on a background patch (as a brush stroke would)
    region = (slice(16, 22), slice(16, 22))
    coords = np.argwhere(np.ones((6, 6), bool)) + [16, 16]
    lab.data_setitem(tuple(coords.T), 30)
    qtbot.waitUntil(lambda: w._source is not None and 30 in w._source.row, timeout=5000)
    assert w.selected_rois == [3, 5]  # the selection survives the rebuild
    assert w.roi_table.rowCount() == len(ROIS) + 1
    w.select_rois([30])
    _wait(qtbot, w)
    want = movie[(slice(None), *region)].reshape(N_FRAMES, -1).mean(axis=1, dtype=np.float64)
    np.testing.assert_allclose(w.plots.raw_items[0].yData, want, rtol=1e-6)


# ------------------------------------------------------- review fixes (issue 5)
def _gated(monkeypatch, module, name, *, hold=lambda n: True, fail=None):
    """Replace ``module.name`` by a wrapper that records its thread and waits on a gate."""
    import threading

    gate = threading.Event()
    real = getattr(module, name)
    calls = []

    def wrapper(*a, **k):
        calls.append(threading.current_thread())
        if hold(len(calls)):
            gate.wait(10)
        if fail is not None:
            raise fail
        return real(*a, **k)

    monkeypatch.setattr(module, name, wrapper)
    return gate, calls, real


def test_filter_on_plots_the_trace_that_was_fitted(setup, qtbot):
    from napari_catune.kernel import bandpass_filter

    viewer, w, means, _ = setup
    w.select_rois([12])
    _wait(qtbot, w)
    w.controls.filter_enabled.value = True
    _wait(qtbot, w)
    for td in (None, 1.0):
        if td is not None:  # the taus move: the bandpassed trace follows
            w.controls.tau_decay.slider.value = w.controls.tau_decay.slider_position(td)
            _wait(qtbot, w)
        p = w.params
        want = bandpass_filter(means[12], p.tau_rise, p.tau_decay, p.fs)
        shown = np.asarray(w.plots.raw_items[0].yData)
        np.testing.assert_allclose(shown, want, rtol=1e-9, atol=1e-9 * np.ptp(want))
        fit = np.asarray(w.plots.fit_items[0].yData)
        assert np.corrcoef(fit, shown)[0, 1] > 0.5
        assert abs(np.mean(fit - shown)) < 0.1 * np.std(shown)  # not offset from it
        assert w.plots.fit_items[0].pos() == w.plots.raw_items[0].pos()
    w.controls.filter_enabled.value = False
    _wait(qtbot, w)
    np.testing.assert_allclose(w.plots.raw_items[0].yData, means[12], rtol=1e-9)


def test_traces_are_read_in_a_worker(make_napari_viewer, qtbot, notes, monkeypatch):
    import threading

    import napari_catune.traces as traces_mod

    gate, calls, _ = _gated(monkeypatch, traces_mod, "extract_traces")
    viewer, labels, means = _viewer_with_recording(make_napari_viewer)
    w = _open(viewer)  # returns while the extraction is held
    qtbot.waitUntil(lambda: len(calls) == 1, timeout=5000)
    assert calls[0] is not threading.main_thread()
    assert not w.idle and not w.busy_bar.isHidden()
    assert "Extracting traces" in w.status.text()
    qtbot.wait(30)  # the event loop runs meanwhile
    assert w.select_rois([5, 8]) == [5, 8]  # kept until the traces are ready
    worker = w.apply_to_all()  # starts once the traces are ready
    assert worker is not None and w.apply_running and not w.controls.apply_btn.enabled
    with qtbot.waitSignal(worker.finished, timeout=20000):
        gate.set()
    _wait(qtbot, w)
    res = viewer.layers["rois"].metadata["catune"]["results"]
    assert sorted(int(i) for i in res["roi_ids"]) == sorted(ROIS)
    assert w.controls.apply_btn.enabled and not w.apply_running
    assert w.busy_bar.isHidden()
    assert w.roi_table.rowCount() == len(ROIS)
    assert w.selected_rois == [5, 8]
    _assert_matches_core(w, means, [5, 8])
    assert not notes["error"]


def test_unreadable_movie_notifies_and_the_widget_recovers(make_napari_viewer, qtbot, notes,
                                                          monkeypatch):
    import napari_catune.traces as traces_mod

    gate, calls, real = _gated(monkeypatch, traces_mod, "extract_traces", hold=lambda n: False,
                               fail=OSError("zarr store unreachable"))
    viewer, labels, means = _viewer_with_recording(make_napari_viewer)
    w = _open(viewer)
    _wait(qtbot, w)
    assert len(notes["error"]) == 1
    msg = notes["error"][0]
    assert "zarr store unreachable" in msg and "movie" in msg and "readable" in msg
    assert w.roi_table.rowCount() == 0 and w.busy_bar.isHidden()
    monkeypatch.setattr(traces_mod, "extract_traces", real)
    viewer.add_labels(labels.copy(), name="rois 2")
    w.labels_combo.value = viewer.layers["rois 2"]
    _still_works(w, qtbot, means)
    assert len(notes["error"]) == 1


def test_estimate_runs_in_a_worker(setup, qtbot, monkeypatch):
    import threading

    import napari_catune.estimate as est_mod

    viewer, w, means, notes = setup
    w.set_params(TuningParams(0.2, 3.0, FS, 0.05))
    _wait(qtbot, w)
    gate, calls, _ = _gated(monkeypatch, est_mod, "estimate_params")
    worker = w.estimate_from_data()
    qtbot.waitUntil(lambda: len(calls) == 1, timeout=5000)
    assert calls[0] is not threading.main_thread()
    qtbot.wait(30)
    assert not w.idle and w.params.tau_decay == 3.0  # sliders wait for the result
    assert not w.controls.estimate_btn.enabled
    with qtbot.waitSignal(worker.finished, timeout=10000):
        gate.set()
    _wait(qtbot, w)
    p = w.last_estimate
    assert p is not None and w.params.tau_decay == pytest.approx(p.tau_decay) != 3.0
    assert w.controls.estimate_btn.enabled and not notes["error"]
    # a failing estimate is a notification; the sliders stay
    _gated(monkeypatch, est_mod, "estimate_params", hold=lambda n: False,
           fail=RuntimeError("no clear transients"))
    before = w.params
    w.estimate_from_data()
    _wait(qtbot, w)
    assert any("no clear transients" in m for m in notes["error"])
    assert w.params == before and w.controls.estimate_btn.enabled


def test_closing_the_dock_while_applying(setup, qtbot, monkeypatch):
    viewer, w, means, notes = setup
    gate, calls, _ = _gated(monkeypatch, solver_mod, "run_deconvolution_full",
                            hold=lambda n: n > 1)
    worker = w.apply_to_all()
    qtbot.waitUntil(lambda: len(calls) >= 2, timeout=5000)
    viewer.window.remove_dock_widget(w)
    w.deleteLater()  # the Qt side goes; the worker's closures still hold the Python side
    qtbot.wait(20)
    with qtbot.waitSignal(worker.finished, timeout=10000):
        gate.set()
    qtbot.wait(100)  # queued callbacks run now; pytest-qt fails on any exception in them
    assert w._closed
    assert not notes["error"]
    assert "results" not in viewer.layers["rois"].metadata["catune"]


def test_stale_results_are_never_drawn(setup, qtbot, monkeypatch):
    import threading

    import napari_catune._qt.tuner as tuner_mod

    viewer, w, means, _ = setup
    monkeypatch.setattr(w, "SYNC_SOLVE_S", 0.0)  # every solve on the solve thread
    gate, jobs, _ = threading.Event(), [], None
    real_run = tuner_mod._run_job

    def gated_run(job):
        jobs.append((job, threading.current_thread()))
        if len(jobs) == 1:
            gate.wait(10)  # hold the first solve while a burst of moves queues up
        return real_run(job)

    monkeypatch.setattr(tuner_mod, "_run_job", gated_run)
    drawn = []
    w.plots_updated.connect(drawn.append)
    rid = w.selected_rois[0]
    for td in np.linspace(0.4, 2.0, 15):
        w.controls.tau_decay.slider.value = w.controls.tau_decay.slider_position(td)
    qtbot.waitUntil(lambda: len(jobs) == 1, timeout=5000)
    qtbot.wait(20)
    gate.set()
    _wait(qtbot, w)
    assert all(t is not threading.main_thread() for _, t in jobs)
    assert 2 <= len(jobs) < 15  # the burst was coalesced
    newest = w.plots.activity_items[0].yData.copy()
    # the first (oldest) result arrives once more, after the newest: out of order
    w._live.done.emit(jobs[0][0])
    qtbot.wait(20)
    assert drawn == sorted(set(drawn)) and drawn[-1] == w._gen
    assert w.params.tau_decay == pytest.approx(2.0, rel=2e-3)
    np.testing.assert_array_equal(w.plots.activity_items[0].yData, newest)
    _assert_matches_core(w, means, w.selected_rois)
    # the late result did not replace the newer warm start either
    np.testing.assert_array_equal(w._warm[rid], newest)


def test_cold_solves_never_run_on_the_gui_thread(setup, qtbot, monkeypatch):
    import threading

    import napari_catune._qt.tuner as tuner_mod

    viewer, w, means, _ = setup
    monkeypatch.setattr(w, "SYNC_SOLVE_S", 10.0)  # any solve known to be cheap runs in place
    real_run = tuner_mod._run_job
    ran = []

    def recording(job):
        ran.append((threading.current_thread() is threading.main_thread(),
                    job["init"] is not None))
        return real_run(job)

    monkeypatch.setattr(tuner_mod, "_run_job", recording)

    def move(td):
        w.controls.tau_decay.slider.value = w.controls.tau_decay.slider_position(td)
        _wait(qtbot, w)

    move(0.8)
    assert ran[-1] == (False, True)  # warm, but only cold solves were timed so far
    move(0.85)
    assert ran[-1] == (True, True)  # warm and known to be cheap: in place
    new = next(i for i in ROIS if i not in w.selected_rois)
    w.select_rois([new])  # same size, but no warm start for this ROI
    _wait(qtbot, w)
    assert ran[-1] == (False, False)
    move(0.9)
    assert ran[-1] == (True, True)
    # a new source: the cost estimate starts over
    viewer.add_labels(np.asarray(viewer.layers["rois"].data).copy(), name="rois 2")
    w.labels_combo.value = viewer.layers["rois 2"]
    _wait(qtbot, w)
    assert w._solve_cost == {} and ran[-1] == (False, False)
    move(1.0)
    assert ran[-1] == (False, True)  # warm, but its cost is not known yet
    move(1.1)
    assert ran[-1] == (True, True)
    _assert_matches_core(w, means, w.selected_rois)


def test_slider_event_computes_the_kernel_shape_once(setup, qtbot, monkeypatch):
    import napari_catune._qt.tuner as tuner_mod
    import napari_catune.kernel as kmod
    from napari_catune._qt.controls import ParamControls

    viewer, w, means, _ = setup
    w.select_rois([3, 5])
    _wait(qtbot, w)
    counts = {"landmarks": 0, "shape": 0, "params": 0, "readout": 0}

    def counting(name, f):
        def g(*a, **k):
            counts[name] += 1
            return f(*a, **k)
        return g

    monkeypatch.setattr(kmod, "kernel_landmarks", counting("landmarks", kmod.kernel_landmarks))
    monkeypatch.setattr(kmod, "kernel_shape", counting("shape", kmod.kernel_shape))
    prop = ParamControls.params
    monkeypatch.setattr(ParamControls, "params",
                        property(counting("params", prop.fget)))
    jobs = []
    real_run = tuner_mod._run_job
    monkeypatch.setattr(tuner_mod, "_run_job", lambda job: jobs.append(job) or real_run(job))
    cached = w._sel["raw"]
    w.controls.tau_decay.slider.value = w.controls.tau_decay.slider_position(0.9)
    _wait(qtbot, w)
    assert counts["landmarks"] == 1 and counts["shape"] == 0
    assert counts["params"] == 1  # built once by the controls, passed on
    assert jobs and all(j["traces"] is cached for j in jobs)  # no copy per event
    monkeypatch.setattr(ParamControls, "_update_readout",
                        counting("readout", ParamControls._update_readout))
    w.set_params(TuningParams(0.03, 0.7, FS, 0.1))
    _wait(qtbot, w)
    assert counts["readout"] == 1
    x, y = w.plots.fwhm_item.getData()
    assert x[1] - x[0] == pytest.approx(w.params.fwhm, rel=1e-6)
    assert w.plots.tpeak_line.value() == pytest.approx(w.params.t_peak, rel=1e-6)


def test_replacing_layer_data_rereads_the_traces(setup, qtbot):
    viewer, w, means, notes = setup
    w.select_rois([3])
    _wait(qtbot, w)
    movie = viewer.layers["movie"]
    movie.data = np.asarray(movie.data) * 2.0  # a new array, the same layer
    qtbot.waitUntil(lambda: w._source is not None and np.allclose(
        w._source.traces[w._source.row[3]], 2 * means[3]), timeout=5000)
    _wait(qtbot, w)
    assert w.selected_rois == [3]
    np.testing.assert_allclose(w.plots.raw_items[0].yData, 2 * means[3], rtol=1e-6)


def test_readout_fits_and_raw_and_fit_are_told_apart(setup, qtbot):
    viewer, w, means, _ = setup
    viewer.window._qt_window.resize(1500, 950)
    w.set_params(TuningParams(0.0491, 0.6123, FS, 0.05))  # 4-digit ms figures
    w.select_rois([3, 12])
    _wait(qtbot, w)
    qtbot.wait(50)
    label = w.controls.readout.native
    fm = label.fontMetrics()
    lines = label.text().split("\n")
    assert any("FWHM" in ln for ln in lines) and any("t_peak" in ln for ln in lines)
    room = label.contentsRect()
    for ln in lines:
        assert fm.horizontalAdvance(ln) <= room.width(), (ln, room.width())
    assert len(lines) * fm.lineSpacing() <= room.height() + 2
    # the raw trace is faint, its fit opaque, both in the ROI colour
    for i in range(2):
        raw_pen = w.plots.raw_items[i].opts["pen"]
        fit_pen = w.plots.fit_items[i].opts["pen"]
        assert raw_pen.color().alpha() <= 128 < fit_pen.color().alpha()
        assert fit_pen.widthF() >= raw_pen.widthF()
        assert raw_pen.color().rgb() == fit_pen.color().rgb()
    names = [lab.text for _, lab in w.plots.legend.items]
    assert sum("trace" in n for n in names) == 2 and sum("fit" in n for n in names) == 1


def test_plain_layer_removal_resets_without_a_warning(setup, qtbot):
    viewer, w, means, notes = setup
    _wait(qtbot, w)
    viewer.layers.remove(viewer.layers["rois"])
    qtbot.wait(50)
    assert not any("removed" in m for m in notes["warning"])
    assert "Labels layer" in w.status.text()  # says what to pick next
    assert w.selected_rois == []
