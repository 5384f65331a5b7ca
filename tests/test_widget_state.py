"""The CaTune tuner's state and long jobs in a real viewer: parameter files, Estimate,
Apply to all, errors, layers changing under it, closing and reopening, themes."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from qtpy.QtCore import Qt

import napari_catune.solver as solver_mod
from napari_catune import session as _ses
from napari_catune.params import TuningParams

from _widgets import (  # noqa: F401 - fixtures
    FS, N_FRAMES, ROIS, assert_matches_core, drag, gated, notes, open_tuner, recording,
    reference, setup, viewer_with_recording, wait,
)


def _still_works(w, qtbot, means):
    wait(qtbot, w)
    w.select_rois([next(iter(ROIS))])
    drag(w, "lam", 0.123)
    wait(qtbot, w)
    assert_matches_core(w, means, w.selected_rois)


# ------------------------------------------------------------------ parameters
def test_save_and_reload_into_fresh_widget(setup, make_napari_viewer, qtbot, tmp_path):
    viewer, w, means, notes = setup
    p = TuningParams(tau_rise=0.0321, tau_decay=0.876, fs=20.0, lam=0.37, filter_enabled=True,
                     baseline=False)
    assert w.set_params(p)
    wait(qtbot, w)
    assert w.params == p
    path = tmp_path / "tuned.json"
    assert w.save_params(path)
    assert json.loads(path.read_text())["parameters"]["tau_decay_s"] == pytest.approx(0.876)
    viewer2 = make_napari_viewer()
    w2 = open_tuner(viewer2)
    assert w2.params != p
    assert w2.load_params(path) == p
    assert w2.params == p
    assert w2.controls.baseline.currentText() == "none"  # the baseline choice travels too
    assert not notes["error"]


def test_bad_parameter_files(setup, qtbot, tmp_path):
    viewer, w, means, notes = setup
    before = w.params
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert w.load_params(bad) is None
    assert w.load_params(tmp_path / "missing.json") is None
    out = tmp_path / "out.json"
    out.write_text(json.dumps({"schema_version": "1.2.0", "parameters": {
        "tau_rise_s": 5.0, "tau_decay_s": 0.5, "lambda": 0.1, "sampling_rate_hz": 30.0}}))
    assert w.load_params(out) is None
    assert len(notes["error"]) == 3
    assert "missing.json" in notes["error"][1] and "tau_rise" in notes["error"][2]
    assert w.params == before
    assert w.set_params({**before.to_dict(), "lam": -1.0}) is False
    assert "lambda" in notes["error"][3]
    assert not w.save_params(tmp_path / "no_such_dir" / "x.json")
    assert len(notes["error"]) == 5
    _still_works(w, qtbot, means)


# -------------------------------------------------------------------- estimate
def test_estimate_runs_in_a_worker_with_progress_and_cancel(setup, qtbot, monkeypatch):
    import napari_catune.estimate as est_mod

    viewer, w, means, notes = setup
    w.set_params(TuningParams(0.2, 3.0, FS, 0.05))
    wait(qtbot, w)
    gate, calls, _ = gated(monkeypatch, est_mod, "estimate_params")
    worker = w.estimate_from_data()
    qtbot.waitUntil(lambda: len(calls) == 1, timeout=120_000)
    assert calls[0] is not threading.main_thread()
    assert not w.idle and w.params.tau_decay == 3.0  # the sliders wait for the result
    assert w.jobs.running("estimate") and not w.controls.estimate_btn.isEnabled()
    # Cancel: the GUI is free at once and the result is dropped when it comes
    qtbot.mouseClick(w.jobs.cancel_button("estimate"), Qt.LeftButton)
    assert not w.jobs.running("estimate") and w.controls.estimate_btn.isEnabled()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        gate.set()
    wait(qtbot, w)
    assert w.params.tau_decay == 3.0 and w.last_estimate is None
    # again, to the end: the sliders move
    monkeypatch.setattr(est_mod, "estimate_params", _)
    w.estimate_from_data()
    # a condition, not the worker's finished signal: a fast estimate can end
    # before a signal wait would connect
    qtbot.waitUntil(lambda: w.last_estimate is not None and w.controls.estimate_btn.isEnabled(),
                    timeout=120_000)
    wait(qtbot, w)
    p = w.last_estimate
    assert p is not None and w.params.tau_decay == pytest.approx(p.tau_decay) != 3.0
    assert w.params.fs == FS
    assert_matches_core(w, means, w.selected_rois)
    # a failing estimate is a notification; the parameters stay
    gated(monkeypatch, est_mod, "estimate_params", hold=lambda n: False,
          fail=RuntimeError("no clear transients"))
    before = w.params
    w.estimate_from_data()
    wait(qtbot, w)
    assert any("no clear transients" in m for m in notes["error"])
    assert w.params == before and w.controls.estimate_btn.isEnabled()


# ---------------------------------------------------------------- apply to all
def test_apply_to_all_stores_results(setup, qtbot, tmp_path):
    viewer, w, means, _ = setup
    worker = w.apply_to_all()
    assert worker is not None
    qtbot.waitUntil(lambda: not w.apply_running, timeout=120_000)
    wait(qtbot, w)
    lay = viewer.layers["rois"]
    res = lay.metadata["catune"]["results"]
    ids = [int(i) for i in res["roi_ids"]]
    assert sorted(ids) == sorted(ROIS)
    ref = reference(w, ids, means)
    np.testing.assert_allclose(res["activity"], ref.activity, atol=1e-6 * ref.activity.max())
    np.testing.assert_allclose(res["baseline"], ref.baseline, rtol=1e-6)
    f = lay.features
    for col in ("roi_id", "snr", "event_rate_hz", "r2", "baseline", "converged"):
        assert col in f.columns
    assert list(f["roi_id"]) == ids
    assert np.all(f["event_rate_hz"] >= 0) and np.all(np.isfinite(f["snr"]))
    assert res["params"] == w.params.to_dict()
    lazy = viewer.layers["CaTune activity"].data
    assert lazy.roi_ids_shown == len(ROIS)
    frame = np.asarray(lazy[200])
    lab = np.asarray(lay.data)
    for k, rid in enumerate(ids):
        np.testing.assert_allclose(frame[lab == rid], res["activity"][k, 200], rtol=1e-5)
    assert not w.jobs.running("apply")
    out = lay.save(str(tmp_path / "activity.npy"), plugin="napari-catune")
    np.testing.assert_array_equal(np.load(out[0] if isinstance(out, list) else out),
                                  res["activity"])


def test_apply_to_all_features_are_computed_off_the_gui_thread(setup, qtbot, monkeypatch):
    import napari_catune.traces as traces_mod

    viewer, w, means, _ = setup
    threads = []
    real = traces_mod.roi_snr
    monkeypatch.setattr(traces_mod, "roi_snr",
                        lambda *a, **k: threads.append(threading.current_thread())
                        or real(*a, **k))
    w.session.source.snr[:] = np.nan  # force the SNR to be computed again
    w.apply_to_all()
    qtbot.waitUntil(lambda: not w.apply_running, timeout=120_000)
    assert threads and all(t is not threading.main_thread() for t in threads)


def test_apply_to_all_cancel_midway(setup, qtbot, monkeypatch):
    viewer, w, means, notes = setup
    monkeypatch.setattr(_ses, "APPLY_CHUNK_SAMPLES", 450)  # one ROI a chunk: a "midway"
    gate, calls, real = gated(monkeypatch, solver_mod, "run_deconvolution_full",
                              hold=lambda n: n > 1)
    w.session.source.traces = np.tile(w.session.source.traces, (1, 1))
    worker = w.apply_to_all()
    assert w.jobs.running("apply") and not w.controls.apply_btn.isEnabled()
    qtbot.waitUntil(lambda: len(calls) >= 2, timeout=120_000)
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        qtbot.mouseClick(w.jobs.cancel_button("apply"), Qt.LeftButton)
        gate.set()
    assert worker.abort_requested
    assert "results" not in viewer.layers["rois"].metadata["catune"]
    assert w.controls.apply_btn.isEnabled() and not w.jobs.running("apply")
    assert "cancelled" in w.status.text()
    monkeypatch.setattr(solver_mod, "run_deconvolution_full", real)
    w.apply_to_all()
    qtbot.waitUntil(lambda: not w.apply_running, timeout=120_000)
    assert "results" in viewer.layers["rois"].metadata["catune"]


def test_closing_the_dock_while_applying(setup, qtbot, monkeypatch):
    viewer, w, means, notes = setup
    monkeypatch.setattr(_ses, "APPLY_CHUNK_SAMPLES", 450)  # one ROI a chunk
    gate, calls, _ = gated(monkeypatch, solver_mod, "run_deconvolution_full",
                           hold=lambda n: n > 1)
    worker = w.apply_to_all()
    qtbot.waitUntil(lambda: len(calls) >= 2, timeout=120_000)
    viewer.window.remove_dock_widget(w)
    # said at once (the dock and its progress line are gone): never dropped silently
    assert [m for m in notes["warning"] if "Apply to all stopped" in m] == [
        "Apply to all stopped: the CaTune tuner was closed before it finished, so no "
        "results were stored. Open the tuner again and click Apply to all."]
    w.deleteLater()  # the Qt side goes; the worker's closures still hold the Python side
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        gate.set()
    qtbot.waitUntil(lambda: "CaTune activity" not in viewer.layers, timeout=120_000)
    assert w._closed and not notes["error"] and len(notes["warning"]) == 1
    assert "results" not in viewer.layers["rois"].metadata["catune"]


# ---------------------------------------------------------------------- errors
def test_shape_mismatch_notifies(setup, qtbot):
    viewer, w, means, notes = setup
    viewer.add_labels(np.ones((10, 10), np.int32), name="small")
    w.labels_combo.value = viewer.layers["small"]
    assert any("shape" in m and "small" in m for m in notes["error"])
    assert w.roi_list.listed_ids() == [] and w.selected_rois == []
    w.labels_combo.value = viewer.layers["rois"]
    _still_works(w, qtbot, means)


def test_roi_without_pixels_notifies(setup, qtbot):
    viewer, w, means, notes = setup
    w.select_rois([999])
    assert any("999" in m for m in notes["warning"])
    lab = np.zeros((10, 10), np.int32)
    lab[:4, :4] = 1
    viewer.add_labels(lab, name="tiles", metadata={"catune": {
        "fs": 10.0, "traces": np.random.default_rng(0).normal(size=(2, 100)),
        "roi_ids": np.array([1, 2])}})
    w.labels_combo.value = viewer.layers["tiles"]
    assert w.image_combo.value is None  # the layer carries its own traces
    wait(qtbot, w)
    assert any("no pixels" in m and "2" in m for m in notes["warning"])
    assert sorted(w.roi_list.listed_ids()) == [1, 2]  # still listed and selectable
    w.select_rois([2])
    wait(qtbot, w)
    assert len(w.traces.shown[0].data["fit"]) == 100
    w.labels_combo.value = viewer.layers["rois"]
    assert w.image_combo.value is viewer.layers["movie"]
    _still_works(w, qtbot, means)


def test_layer_removed_while_solving(setup, qtbot, monkeypatch):
    viewer, w, means, notes = setup
    gate, calls, real = gated(monkeypatch, solver_mod, "run_deconvolution_full")
    w.SYNC_SOLVE_S = 0.0  # the background solve thread
    drag(w, "lam", 0.5)
    qtbot.waitUntil(lambda: len(calls) == 1, timeout=120_000)
    labels = viewer.layers["rois"]
    viewer.layers.remove(labels)
    gate.set()
    qtbot.waitUntil(lambda: w._live.idle and w.selected_rois == [], timeout=120_000)
    assert any("rois" in m and "removed" in m for m in notes["warning"])
    assert w.roi_list.listed_ids() == [] and w.session.result is None
    monkeypatch.setattr(solver_mod, "run_deconvolution_full", real)
    viewer.add_labels(np.asarray(labels.data), name="rois again")
    w.labels_combo.value = viewer.layers["rois again"]
    assert w.image_combo.value is viewer.layers["movie"]
    _still_works(w, qtbot, means)


def test_plain_layer_removal_resets_without_a_warning(setup, qtbot):
    viewer, w, means, notes = setup
    viewer.layers.remove(viewer.layers["rois"])
    qtbot.waitUntil(lambda: "Labels layer" in w.status.text(), timeout=120_000)
    assert not any("removed" in m for m in notes["warning"])
    assert w.selected_rois == []


def test_solver_error_notifies_and_recovers(setup, qtbot, monkeypatch):
    viewer, w, means, notes = setup
    real = solver_mod.run_deconvolution_full

    def broken(*a, **k):
        raise ValueError("synthetic solver failure")

    monkeypatch.setattr(solver_mod, "run_deconvolution_full", broken)
    drag(w, "lam", 0.4)
    wait(qtbot, w)
    assert sum("synthetic solver failure" in m for m in notes["error"]) == 1
    monkeypatch.setattr(solver_mod, "run_deconvolution_full", real)
    _still_works(w, qtbot, means)


# ------------------------------------------------------------- data and layers
def test_tuner_opened_before_the_data(make_napari_viewer, qtbot, notes):
    viewer = make_napari_viewer()
    w = open_tuner(viewer)
    assert w.labels_combo.value is None and w.selected_rois == []
    movie, labels, means = recording(seed=3)
    viewer.add_image(movie, name="movie")
    viewer.add_labels(labels, name="rois")
    qtbot.waitUntil(lambda: len(w.selected_rois) == 1, timeout=120_000)
    assert w.image_combo.value is viewer.layers["movie"]
    wait(qtbot, w)
    assert_matches_core(w, means, w.selected_rois)
    names = [c[0] if isinstance(c, tuple) else getattr(c, "name", c)
             for c in w.labels_combo.choices]
    assert all("CaTune" not in str(n) for n in names)
    assert not notes["error"]


def test_traces_extracted_once_per_pair_in_a_worker(make_napari_viewer, qtbot, notes,
                                                    monkeypatch):
    import napari_catune.traces as traces_mod

    gate, calls, _ = gated(monkeypatch, traces_mod, "iter_traces")
    viewer, labels, means = viewer_with_recording(make_napari_viewer)
    w = open_tuner(viewer)  # returns while the extraction is held
    qtbot.waitUntil(lambda: len(calls) == 1, timeout=120_000)
    assert calls[0] is not threading.main_thread()
    assert not w.idle and w.jobs.running(next(k for k in w.jobs._lines))
    assert w.select_rois([5, 8]) == [5, 8]  # kept until the traces are ready
    worker = w.apply_to_all()  # starts once the traces are ready
    assert worker is not None and w.apply_running
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        gate.set()
    wait(qtbot, w)
    res = viewer.layers["rois"].metadata["catune"]["results"]
    assert sorted(int(i) for i in res["roi_ids"]) == sorted(ROIS)
    assert w.selected_rois == [5, 8]
    assert_matches_core(w, means, [5, 8])
    for name, v in (("tau_decay", 0.9), ("lam", 0.3)):
        drag(w, name, v)
        wait(qtbot, w)
    assert len(calls) == 1
    viewer.add_labels(labels.copy(), name="rois 2")
    w.labels_combo.value = viewer.layers["rois 2"]
    wait(qtbot, w)
    assert len(calls) == 2
    w.labels_combo.value = viewer.layers["rois"]
    wait(qtbot, w)
    assert len(calls) == 2  # from the cache
    assert not notes["error"]


def test_unreadable_movie_notifies_and_the_widget_recovers(make_napari_viewer, qtbot, notes,
                                                          monkeypatch):
    import napari_catune.traces as traces_mod

    gate, calls, real = gated(monkeypatch, traces_mod, "iter_traces", hold=lambda n: False,
                              fail=OSError("zarr store unreachable"))
    viewer, labels, means = viewer_with_recording(make_napari_viewer)
    w = open_tuner(viewer)
    wait(qtbot, w)
    assert len(notes["error"]) == 1
    msg = notes["error"][0]
    assert "zarr store unreachable" in msg and "movie" in msg and "readable" in msg
    assert w.roi_list.listed_ids() == [] and not w.jobs.isVisibleTo(w)
    monkeypatch.setattr(traces_mod, "iter_traces", real)
    viewer.add_labels(labels.copy(), name="rois 2")
    w.labels_combo.value = viewer.layers["rois 2"]
    _still_works(w, qtbot, means)
    assert len(notes["error"]) == 1


def test_painting_and_replacing_data_reread_the_traces(setup, qtbot):
    viewer, w, means, notes = setup
    w.select_rois([3, 5])
    wait(qtbot, w)
    lab = viewer.layers["rois"]
    movie = viewer.layers["movie"].data
    coords = np.argwhere(np.ones((6, 6), bool)) + [16, 16]
    lab.data_setitem(tuple(coords.T), 30)  # as a brush stroke would
    qtbot.waitUntil(lambda: w.session.source is not None and 30 in w.session.source.row,
                    timeout=120_000)
    assert w.selected_rois == [3, 5]
    w.select_rois([30])
    wait(qtbot, w)
    want = movie[:, 16:22, 16:22].reshape(N_FRAMES, -1).mean(axis=1, dtype=np.float64)
    np.testing.assert_allclose(w.traces.shown[0].data["raw"], want, rtol=1e-6)
    mv = viewer.layers["movie"]
    mv.data = np.asarray(mv.data) * 2.0
    qtbot.waitUntil(lambda: w.session.source is not None and np.allclose(
        w.session.source.traces[w.session.source.row[3]], 2 * means[3]), timeout=120_000)
    wait(qtbot, w)



@pytest.mark.parametrize("keep", [[], [5]])
def test_erasing_the_selected_roi_deselects_it_and_selects_no_other(setup, qtbot, keep):
    viewer, w, means, notes = setup
    w.select_rois([3] + keep)
    wait(qtbot, w)
    lab = viewer.layers["rois"]
    lab.data_setitem(tuple(np.argwhere(lab.data == 3).T), 0)  # as the eraser would
    qtbot.waitUntil(lambda: w.session.source is not None and 3 not in w.session.source.row,
                    timeout=120_000)
    wait(qtbot, w)
    assert w.selected_rois == keep  # ROI 3 dropped, no other ROI put in its place
    assert [r.rid for r in w.traces.shown] == keep
    assert any("[3] are no longer in 'rois'" in m and "deselected" in m
               for m in notes["info"]), notes["info"]
    assert not notes["error"]


def test_huge_label_ids_use_a_compact_map(make_napari_viewer, qtbot, notes):
    big = 2**31 - 1
    viewer = make_napari_viewer()
    movie, labels, means = recording(roi_ids=[3, 5, 8, 11, 12, big])
    viewer.add_image(movie, name="movie", metadata={"catune": {"fs": FS}})
    viewer.add_labels(labels, name="rois")
    w = open_tuner(viewer)
    wait(qtbot, w)
    w.select_rois([big, 3])
    wait(qtbot, w)
    qtbot.waitUntil(lambda: "CaTune activity" in viewer.layers, timeout=120_000)
    wait(qtbot, w)
    lazy = viewer.layers["CaTune activity"].data
    assert lazy._state[0].nbytes <= labels.size * 8  # by the image, not by the largest id
    t = int(np.argmax(w.traces.shown[0].data["activity"]))
    np.testing.assert_allclose(np.asarray(lazy[t])[labels == big],
                               w.traces.shown[0].data["activity"][t], rtol=1e-5)
    assert_matches_core(w, means, [big, 3])
    ids = viewer.layers["CaTune ROI ids"].features["roi_id"]
    assert big in list(ids)
    assert not notes["error"]


def test_second_trace_file_is_placed_beside_the_first(make_napari_viewer, qtbot, notes,
                                                      tmp_path):
    from napari_catune.io import save_for_tuning

    rng = np.random.default_rng(0)
    save_for_tuning(rng.normal(size=(9, 200)), 20.0, tmp_path / "a")
    save_for_tuning(rng.normal(size=(4, 200)), 20.0, tmp_path / "b")
    viewer = make_napari_viewer()
    w = open_tuner(viewer)
    (a,) = viewer.open(str(tmp_path / "a.npy"), plugin="napari-catune")
    (b,) = viewer.open(str(tmp_path / "b.npy"), plugin="napari-catune")
    right_of_a = a.translate[-1] + a.data.shape[-1] * a.scale[-1]
    assert b.translate[-1] >= right_of_a and b.translate[0] == a.translate[0]
    wait(qtbot, w)


# ------------------------------------------------------------ close and reopen
def test_closing_removes_layers_and_reopening_keeps_the_tuning(make_napari_viewer, qtbot,
                                                                notes):
    viewer, labels, means = viewer_with_recording(make_napari_viewer, show=True)
    w = open_tuner(viewer)
    wait(qtbot, w)
    qtbot.waitUntil(lambda: "CaTune activity" in viewer.layers, timeout=120_000)
    w.select_rois([5, 12])
    tuned = w.params.replace(lam=0.234, tau_decay=0.77)
    assert w.set_params(tuned)
    wait(qtbot, w)
    n_layers = len(viewer.layers)
    viewer.window.remove_dock_widget(w)  # napari's close button does this
    qtbot.waitUntil(lambda: not any("CaTune" in l.name for l in viewer.layers), timeout=120_000)
    assert len(viewer.layers) == 2
    w2 = open_tuner(viewer)
    assert w2 is not w
    wait(qtbot, w2)
    assert w2.params == tuned
    assert w2.selected_rois == [5, 12]
    qtbot.waitUntil(lambda: "CaTune activity" in viewer.layers, timeout=120_000)
    wait(qtbot, w2)
    assert len(viewer.layers) == n_layers  # no duplicates
    assert sorted(l.name for l in viewer.layers if "CaTune" in l.name) == sorted(
        ["CaTune activity", "CaTune selection", "CaTune ROI ids"])
    assert_matches_core(w2, means, [5, 12])
    # the old widget is inert: moving its controls changes nothing
    assert w._closed


# ---------------------------------------------------------------------- themes
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_text_and_curves_readable_on_both_themes(setup, qtbot, theme):
    from napari.utils.theme import get_theme

    from napari_catune._qt._style import contrast, hex_to_rgb

    viewer, w, means, _ = setup
    w.select_rois([3, 12])
    wait(qtbot, w)
    viewer.theme = theme
    bg = hex_to_rgb(get_theme(theme).background.as_hex())
    assert w.traces.rows_glw.backgroundBrush().color().name().lower() == \
        get_theme(theme).background.as_hex().lower()
    for r in w.traces.shown:
        fit = r.fit.opts["pen"].color().getRgb()
        raw = r.raw.opts["pen"].color().getRgb()
        assert contrast(fit, bg) >= 3.0, (theme, fit)  # the fit stands out
        assert contrast(raw, bg) >= 2.0
        assert fit[:3] != raw[:3]  # raw and fit told apart by colour
        assert contrast(r.header.defaultTextColor().getRgb(), bg) >= 4.5
        assert contrast(r.trace.getAxis("left").textPen().color().getRgb(), bg) >= 4.5
    kt = w.kernel.text.textItem.defaultTextColor().getRgb()
    assert contrast(kt, bg) >= 4.5
    sp = w.spectrum  # its band read-out, axes and the selection's spectrum
    import pyqtgraph as pg

    assert contrast(pg.mkColor(sp.text.opts["color"]).getRgb(), bg) >= 4.5
    assert contrast(sp.plot.getAxis("bottom").textPen().color().getRgb(), bg) >= 4.5
    assert contrast(sp.sel_curve.opts["pen"].color().getRgb(), bg) >= 4.5
    assert contrast(sp.all_curve.opts["pen"].color().getRgb(), bg) >= 1.5
    ax = w.traces.axis_plot.getAxis("bottom").textPen().color().getRgb()
    assert contrast(ax, bg) >= 4.5


def test_activity_layer_is_lazy_and_shows_activity(setup, qtbot):
    viewer, w, means, _ = setup
    w.select_rois([3, 8])
    wait(qtbot, w)
    qtbot.waitUntil(lambda: "CaTune activity" in viewer.layers, timeout=120_000)
    wait(qtbot, w)
    lazy = viewer.layers["CaTune activity"].data
    assert type(lazy).__name__ == "LazyActivity" and lazy.shape == (N_FRAMES, 40, 60)
    act = np.stack([r.data["activity"] for r in w.traces.shown])
    t = int(np.argmax(act[1]))
    before = lazy.frames_built
    frame = np.asarray(lazy[t])
    assert lazy.frames_built - before == 1
    lab = np.asarray(viewer.layers["rois"].data)
    np.testing.assert_allclose(frame[lab == 8], act[1, t], rtol=1e-5)
    np.testing.assert_allclose(frame[lab == 3], act[0, t], rtol=1e-5)
    assert np.all(frame[~np.isin(lab, [3, 8])] == 0)
    w.overlay_mode.setCurrentText("fit")
    fit = np.asarray(w.traces.shown[1].data["fit"])
    np.testing.assert_allclose(np.asarray(lazy[t])[lab == 8], fit[t], rtol=1e-5)
    assert sorted(viewer.layers["CaTune ROI ids"].features["roi_id"]) == sorted(ROIS)


def test_undo_and_redo_of_a_stroke_reread_the_traces(setup, qtbot):
    """napari's Labels.undo/redo send only ``set_data`` (as display changes do):
    the traces follow them, and a display change reads nothing anew."""
    viewer, w, means, notes = setup
    w.select_rois([3])
    wait(qtbot, w)
    lab = viewer.layers["rois"]
    before = lab.data.copy()
    coords = np.argwhere(np.ones((6, 6), bool)) + [16, 16]
    lab.data_setitem(tuple(coords.T), 30)  # a brush stroke
    qtbot.waitUntil(lambda: w.session.source is not None and 30 in w.session.source.row,
                    timeout=120_000)
    wait(qtbot, w)
    src = w.session.source
    lab.contour = 1  # a display change: set_data, the same ROIs
    lab.opacity = 0.5
    assert not w.picker.edit_pending and w.session.source is src
    lab.undo()
    np.testing.assert_array_equal(lab.data, before)
    qtbot.waitUntil(lambda: w.session.source is not None and 30 not in w.session.source.row,
                    timeout=120_000)
    wait(qtbot, w)
    assert w.selected_rois == [3]
    lab.redo()
    qtbot.waitUntil(lambda: w.session.source is not None and 30 in w.session.source.row,
                    timeout=120_000)
    wait(qtbot, w)
    assert not notes["error"]
