"""The CaTune tuner in a real napari viewer (pytest-qt + Xvfb): opening, selection,
the controls and the trace view, driven as a user does."""

from __future__ import annotations

import math

import numpy as np
import pytest
from qtpy.QtCore import QPoint, Qt

import napari_catune.solver as solver_mod
from napari_catune import session as ses
from napari_catune.kernel import kernel_landmarks, kernel_shape
from napari_catune.params import TuningParams

from _widgets import (  # noqa: F401 - fixtures
    FS, N_FRAMES, ROIS, assert_matches_core, big_viewer, drag, notes, open_tuner, plotted,
    row_of, setup, type_value, wait,
)


# --------------------------------------------------------------------- opening
def test_open_via_npe2_picks_layers_and_lists_rois(setup):
    viewer, w, means, _ = setup
    assert w.labels_combo.value is viewer.layers["rois"]
    assert w.image_combo.value is viewer.layers["movie"]
    listed = w.roi_list.listed_ids()
    assert sorted(listed) == sorted(ROIS)
    snr = [w.session.source.snr[w.session.source.row[i]] for i in listed]
    assert snr == sorted(snr, reverse=True)  # most active first
    # the most active ROI is selected on opening; its raw trace is the ROI mean
    assert w.selected_rois == [listed[0]]
    np.testing.assert_allclose(w.traces.shown[0].data["raw"], means[listed[0]], rtol=1e-6)
    assert w.params.fs == FS  # from the layer metadata
    assert_matches_core(w, means, w.selected_rois)
    assert not w.jobs.isVisible()
    from qtpy.QtGui import QGuiApplication

    # on X11 a window of its own: its paints are not composed with napari's OpenGL canvas
    assert w.testAttribute(Qt.WA_NativeWindow) == (QGuiApplication.platformName() == "xcb")


def test_open_on_sample_data_with_ground_truth(make_napari_viewer, qtbot, notes):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-catune", "synthetic")
    w = open_tuner(viewer)
    wait(qtbot, w)
    assert len(w.selected_rois) == 1
    r = w.traces.shown[0]
    assert len(r.data["fit"]) == 1800
    truth = viewer.layers["ROIs"].metadata["catune"]["ground_truth"]["spikes"]
    row = r.rid - 1
    want = np.flatnonzero(truth[row] > 0) / w.params.fs
    np.testing.assert_allclose(np.unique(r.truth.xData), want)  # one tick per true event
    assert not notes["error"]


# ------------------------------------------------------------------- selection
def _click_roi(viewer, qtbot, rid, modifier=Qt.NoModifier):
    ys, xs = ROIS[rid]
    viewer.scene.camera.center = ((ys.start + ys.stop - 1) / 2, (xs.start + xs.stop - 1) / 2)
    viewer.scene.camera.zoom = 4
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.mouseClick(canvas, Qt.LeftButton, modifier,
                     QPoint(canvas.width() // 2, canvas.height() // 2))


def test_click_on_canvas_selects_and_shift_adds(setup, qtbot):
    viewer, w, means, _ = setup
    _click_roi(viewer, qtbot, 11)
    qtbot.waitUntil(lambda: w.selected_rois == [11], timeout=120_000)
    _click_roi(viewer, qtbot, 5, Qt.ShiftModifier)
    qtbot.waitUntil(lambda: w.selected_rois == [11, 5], timeout=120_000)
    wait(qtbot, w)
    assert_matches_core(w, means, [11, 5])
    sel = viewer.layers["CaTune selection"]  # each outlined ROI's row; the ROI ids in features
    rows = np.unique(np.asarray(sel.data))
    assert set(sel.features["roi_id"].to_numpy()[rows]) == {0, 11, 5}
    # the list shows the same selection (one selection, in the session)
    assert sorted(w.roi_list.selected_ids()) == [5, 11]
    _click_roi(viewer, qtbot, 11, Qt.ShiftModifier)
    qtbot.waitUntil(lambda: w.selected_rois == [5], timeout=120_000)
    _click_roi(viewer, qtbot, 20)
    qtbot.waitUntil(lambda: w.selected_rois == [20], timeout=120_000)


def test_selected_rows_and_their_outlines_share_distinct_colours(setup, qtbot):
    """Each selected ROI's row and its outline on the canvas have one colour,
    and no two selected ROIs look alike (napari's own label colours can)."""
    from napari_catune._qt._style import contrast

    viewer, w, means, _ = setup
    for theme in ("dark", "light"):
        viewer.theme = theme
        w.select_rois([3, 5, 12, 20])
        wait(qtbot, w)
        pens = [r.fit.opts["pen"].color().getRgb() for r in w.traces.shown]
        assert [r.rid for r in w.traces.shown] == [3, 5, 12, 20]
        for i in range(4):
            for j in range(i + 1, 4):
                d = sum((a - b) ** 2 for a, b in zip(pens[i][:3], pens[j][:3])) ** 0.5
                assert d > 80, (theme, pens[i], pens[j])  # far apart in RGB
        sel = viewer.layers["CaTune selection"]
        data = np.asarray(sel.data)  # the colour napari gives each ROI's outline
        got = sel.colormap.map(np.array([data[ROIS[r]].max() for r in (3, 5, 12, 20, 8)]))
        np.testing.assert_allclose(got[:4, :3] * 255, np.array(pens)[:, :3], atol=1.0)
        assert got[4, 3] == 0  # an unselected ROI is not outlined
        bg = viewer.layers["CaTune selection"]  # the outline is drawn opaque
        assert bg.opacity == 1.0 and all(c[3] == 255 for c in pens)
        assert min(contrast(c, (38, 41, 48) if theme == "dark" else (240, 241, 242))
                   for c in pens) >= 3.0


def test_select_in_list_and_buttons(setup, qtbot):
    viewer, w, means, _ = setup
    w.roi_list.select_rows([8])
    assert w.selected_rois == [8]
    wait(qtbot, w)
    assert_matches_core(w, means, [8])
    w.select_rois([3, 12], add=True)
    assert w.selected_rois == [8, 3, 12]
    assert sorted(w.roi_list.selected_ids()) == [3, 8, 12]
    assert [r.rid for r in w.traces.shown] == [8, 3, 12]
    w.roi_list.count.setValue(3)
    qtbot.mouseClick(w.roi_list.random_btn, Qt.LeftButton)
    assert len(w.selected_rois) == 3 and set(w.selected_rois) <= set(ROIS)
    qtbot.mouseClick(w.roi_list.most_active_btn, Qt.LeftButton)
    assert w.selected_rois == w.session.most_active(3)
    wait(qtbot, w)
    assert_matches_core(w, means, w.selected_rois)


def test_up_to_twenty_rows_that_scroll(make_napari_viewer, qtbot, notes):
    viewer = big_viewer(make_napari_viewer)
    lab = np.zeros((70, 30), np.int32)
    traces = np.random.default_rng(1).normal(size=(22, 300)) + 5
    for i in range(22):
        lab[i * 3:(i * 3) + 2, :5] = i + 1
    viewer.add_labels(lab, metadata={"catune": {"fs": 10.0, "traces": traces}})
    w = open_tuner(viewer)
    wait(qtbot, w)
    w.select_rois(range(1, 23))
    assert w.selected_rois == list(range(3, 23))
    assert any("At most 20" in m for m in notes["warning"])
    wait(qtbot, w)
    assert len(w.traces.shown) == 20
    assert all(len(r.data["fit"]) == 300 for r in w.traces.shown)
    # the rows do not fit: the view scrolls; the rows in view are drawn, the others
    # when they come into view
    bar = w.traces.scroll.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0, timeout=120_000)
    wait(qtbot, w)
    first, last = w.traces.shown[0], w.traces.shown[-1]
    assert len(first.fit.yData) == 300
    assert last.fit.yData is None or len(last.fit.yData) == 0
    bar.setValue(bar.maximum())
    wait(qtbot, w)
    np.testing.assert_array_equal(last.fit.yData, last.data["fit"])


# --------------------------------------------------------------------- sliders
@pytest.mark.parametrize("name,new", [("tau_rise", 0.02), ("tau_decay", 1.2), ("lam", 0.8)])
def test_each_slider_updates_fit_and_activity(setup, qtbot, name, new):
    viewer, w, means, _ = setup
    w.select_rois([12, 20])
    wait(qtbot, w)
    fit0, act0 = plotted(w)
    drag(w, name, new)
    wait(qtbot, w)
    assert getattr(w.params, name) == pytest.approx(new, rel=0.015)  # one slider step
    fit1, act1 = plotted(w)
    assert not np.allclose(act0, act1) and not np.allclose(fit0, fit1)
    assert_matches_core(w, means, [12, 20])


def test_typed_entry_and_fs_presets(setup, qtbot):
    viewer, w, means, _ = setup
    type_value(qtbot, w, "tau_decay", "0.75")
    wait(qtbot, w)
    assert w.params.tau_decay == 0.75
    s = w.controls.kin_b.slider
    assert s.value_at(s.value()) == pytest.approx(0.75, rel=0.013)
    type_value(qtbot, w, "fs", "45")
    wait(qtbot, w)
    assert w.params.fs == 45.0
    assert_matches_core(w, means, w.selected_rois)
    w.controls.fs_preset.setCurrentText("60")
    wait(qtbot, w)
    assert w.params.fs == 60.0 and w.controls.fs_preset.currentText() == "presets"
    assert_matches_core(w, means, w.selected_rois)
    x = w.traces.shown[0].fit.xData
    assert x[-1] == pytest.approx((N_FRAMES - 1) / 60.0)  # the time axis follows fs


def test_value_boxes_show_the_whole_value(setup, qtbot):
    viewer, w, means, _ = setup
    cases = [("lam", "0.32705", "0.3271"), ("lam", "0.009", "0.009"),
             ("fs", "121.965", "121.965"), ("tau_rise", "0.00512", "0.00512"),
             ("tau_decay", "0.0123", "0.0123")]
    for name, typed, shown in cases:
        type_value(qtbot, w, name, typed)
        wait(qtbot, w)
        box = row_of(w, name).box
        assert getattr(w.params, name) == float(typed)  # the exact value is kept
        assert box.text() == shown
        digits = len(shown.replace("0.", "").lstrip("0").replace(".", ""))
        assert digits >= min(3, len(typed.replace("0.", "").lstrip("0").replace(".", "")))
        le = box.lineEdit()
        assert le.fontMetrics().horizontalAdvance(shown) <= le.contentsRect().width()


def test_lambda_slider_is_logarithmic_over_decades(setup, qtbot):
    viewer, w, means, _ = setup
    s = w.controls.lam.slider
    assert s.value_at(s.minimum()) == 0.0  # its left end is lambda = 0
    # it spans multiples of the traces' noise (lambda is in their units)
    sigma = float(np.nanmedian(w.session.source.noise))
    lo, hi = ses._LAM_SIGMAS
    assert s.value_at(s.minimum() + 1) == pytest.approx(lo * sigma)
    assert s.value_at(s.maximum()) == pytest.approx(hi * sigma)
    assert math.log10(s.value_at(s.maximum()) / s.value_at(1)) >= 3
    # the useful range (estimates sit at ~0.1-0.25 sigma; activity is gone by
    # ~200 sigma) spans most of the travel, not a pixel
    span = s.position_of(200 * sigma) - s.position_of(0.005 * sigma)
    assert span >= 0.7 * (s.maximum() - s.minimum())
    # an arrow key moves lambda by a few per cent
    w.set_params(w.params.replace(lam=0.05))
    wait(qtbot, w)
    s.setFocus()
    qtbot.keyClick(s, Qt.Key_Right)
    wait(qtbot, w)
    assert 1.02 <= w.params.lam / 0.05 <= 1.05
    # so does an arrow key in a number box
    box = w.controls.kin_b.box
    before = w.params.tau_decay
    box.setFocus()
    qtbot.keyClick(box, Qt.Key_Up)
    wait(qtbot, w)
    assert 1.02 <= w.params.tau_decay / before <= 1.05
    # lambda's noise-relative read-out
    p, src = w.params, w.session.source
    sigma = float(np.median(src.noise[[src.row[i] for i in w.selected_rois]]))
    from napari_catune._qt.controls import noise_units

    z = noise_units(p, sigma)
    assert w.controls.lam_noise.text().startswith(f"≈ {z:.3g}"[:5])


def test_typed_values_outside_the_slider_span(setup, qtbot):
    viewer, w, means, notes = setup
    before = w.params
    type_value(qtbot, w, "tau_decay", "25")
    wait(qtbot, w)
    try:
        TuningParams(before.tau_rise, 25.0, before.fs, before.lam)
        core_accepts = True
    except ValueError:
        core_accepts = False
    if core_accepts:  # kept, with a warning; the slider sits at its end
        assert w.params.tau_decay == 25.0
        assert any("outside the slider" in m for m in notes["warning"])
        s = w.controls.kin_b.slider
        assert s.value() == s.maximum()
    else:  # refused by the core: its message, and the last valid value is back
        assert w.params == before
        assert any("tau_decay" in m for m in notes["error"])
        assert w.controls.kin_b.box.text() == "0.5"
    # a value the core never accepts: message, old value shown again
    type_value(qtbot, w, "lam", "-1")
    wait(qtbot, w)
    assert w.params.lam == before.lam
    assert any("lambda" in m for m in notes["error"])
    assert w.controls.lam.box.value() == before.lam
    assert_matches_core(w, means, w.selected_rois)


def test_peak_fwhm_mode_round_trips(setup, qtbot):
    viewer, w, means, _ = setup
    c = w.controls
    c.kernel_mode.setCurrentIndex(1)
    assert c.kin_a.label.text().startswith("t_peak") and c.kin_b.label.text().startswith("FWHM")
    t_peak, fwhm = kernel_shape(w.params.tau_rise, w.params.tau_decay)
    assert c.kin_a.box.value() == pytest.approx(t_peak, rel=1e-12)
    type_value(qtbot, w, "t_peak", "0.08")
    wait(qtbot, w)
    tp, fw = kernel_shape(w.params.tau_rise, w.params.tau_decay)
    assert tp == pytest.approx(0.08, abs=1e-6) and fw == pytest.approx(fwhm, abs=1e-6)
    drag(w, "fwhm", 0.9)
    wait(qtbot, w)
    tp2, fw2 = kernel_shape(w.params.tau_rise, w.params.tau_decay)
    assert tp2 == pytest.approx(0.08, abs=1e-6)
    assert fw2 == pytest.approx(c.kin_b.slider.value_at(c.kin_b.slider.value()), abs=1e-6)
    assert_matches_core(w, means, w.selected_rois)
    # back to taus: the boxes show the taus the shape stands for
    c.kernel_mode.setCurrentIndex(0)
    assert c.kin_a.box.value() == pytest.approx(w.params.tau_rise, rel=1e-9)
    assert c.kin_b.box.value() == pytest.approx(w.params.tau_decay, rel=1e-9)
    assert w.kernel.t_peak == pytest.approx(0.08, abs=1e-6)


@pytest.mark.parametrize("name,t_peak,fwhm,half_decay,source", [
    # Zhang et al. 2023 (janelia.org table): time to peak, FWHM = t_peak - half-rise + half-decay
    ("jGCaMP7f", 0.0995, 0.0995 - 0.0248 + 0.1819, None, "Zhang et al. 2023"),
    ("jGCaMP8f", 0.0248, 0.0248 - 0.0071 + 0.0674, None, "Zhang et al. 2023"),
    ("jGCaMP8m", 0.0290, 0.0290 - 0.0071 + 0.1183, None, "Zhang et al. 2023"),
    ("jGCaMP8s", 0.0570, 0.0570 - 0.0101 + 0.3067, None, "Zhang et al. 2023"),
    # Chen et al. 2013, Supplementary Table 3 (1 AP, V1 in vivo): time to peak, half-decay
    ("GCaMP6f", 0.045, None, 0.142, "Chen et al. 2013"),
    ("GCaMP6s", 0.179, None, 0.550, "Chen et al. 2013"),
    # CaTune's simulation presets (tau_rise, tau_decay): t_peak and FWHM of those taus
    ("GCaMP6m", *kernel_shape(0.15, 0.9), None, "CaTune's own simulation presets"),
    ("OGB-1", *kernel_shape(0.05, 1.5), None, "Stosiek et al. 2003"),
])
def test_indicator_presets_set_the_published_kinetics(setup, qtbot, name, t_peak, fwhm,
                                                      half_decay, source):
    viewer, w, means, notes = setup
    w.controls.indicator.setCurrentText(name)
    wait(qtbot, w)
    tp, left, right = kernel_landmarks(w.params.tau_rise, w.params.tau_decay)
    assert tp == pytest.approx(t_peak, abs=1e-6)
    if fwhm is not None:
        assert right - left == pytest.approx(fwhm, abs=1e-6)
    else:  # the half-decay time, from the peak to half its height
        assert right - tp == pytest.approx(half_decay, abs=1e-6)
    assert w.params.fs == FS  # the sampling rate stays
    assert any(source in m for m in notes["info"])
    assert w.controls.indicator.currentIndex() == 0  # ready for the next choice
    assert_matches_core(w, means, w.selected_rois)
    # the sampled kernel at the current fs peaks where the published kinetics say
    assert w.kernel.t_peak == pytest.approx(t_peak, abs=1e-6)


def test_baseline_mode_reaches_the_solver(setup, qtbot, monkeypatch):
    viewer, w, means, _ = setup
    seen = []
    real = solver_mod.run_deconvolution_full
    monkeypatch.setattr(solver_mod, "run_deconvolution_full",
                        lambda *a, **k: seen.append(k.get("baseline")) or real(*a, **k))
    w.controls.baseline.setCurrentText("none")
    wait(qtbot, w)
    assert w.params.baseline == "none"
    assert seen and seen[-1] == "none"
    ids = w.selected_rois
    ref = real(means[ids[0]], w.params.fs, w.params.tau_rise, w.params.tau_decay,
               w.params.lam, baseline=seen[-1])
    np.testing.assert_allclose(w.traces.shown[0].data["fit"], ref.reconvolution,
                               atol=2e-3 * np.ptp(means[ids[0]]))
    for mode in ("scalar", "rolling", "drift"):
        w.controls.baseline.setCurrentText(mode)
        wait(qtbot, w)
        assert seen[-1] == mode and w.params.baseline == mode
    # the drawn fit is the drift model's (a per-sample baseline)
    ref = real(means[ids[0]], w.params.fs, w.params.tau_rise, w.params.tau_decay,
               w.params.lam, baseline="drift")
    np.testing.assert_allclose(w.traces.shown[0].data["fit"], ref.reconvolution,
                               atol=2e-3 * np.ptp(means[ids[0]]))


def test_bandpass_plots_the_trace_that_was_fitted(setup, qtbot):
    from napari_catune.kernel import bandpass_filter

    viewer, w, means, _ = setup
    w.select_rois([12])
    wait(qtbot, w)
    w.controls.filter_enabled.setChecked(True)
    wait(qtbot, w)
    for td in (None, 1.0):
        if td is not None:
            drag(w, "tau_decay", td)
            wait(qtbot, w)
        p = w.params
        want = bandpass_filter(means[12], p.tau_rise, p.tau_decay, p.fs)
        np.testing.assert_allclose(w.traces.shown[0].data["raw"], want, rtol=1e-9,
                                   atol=1e-9 * np.ptp(want))
        assert_matches_core(w, means, [12])
    w.controls.filter_enabled.setChecked(False)
    wait(qtbot, w)
    np.testing.assert_allclose(w.traces.shown[0].data["raw"], means[12], rtol=1e-9)


def test_rise_above_decay_is_held_below(setup, qtbot):
    viewer, w, means, notes = setup
    drag(w, "tau_decay", 0.1)
    drag(w, "tau_rise", 0.3)
    wait(qtbot, w)
    p = w.params
    assert p.tau_rise < p.tau_decay == pytest.approx(0.1, rel=0.015)
    assert notes["info"] and "tau_rise" in notes["info"][0]
    assert_matches_core(w, means, w.selected_rois)


def test_undo_redo_buttons(setup, qtbot):
    viewer, w, means, _ = setup
    p0 = w.params
    type_value(qtbot, w, "lam", "0.2")
    wait(qtbot, w)
    assert w.controls.undo_btn.isEnabled()
    qtbot.mouseClick(w.controls.undo_btn, Qt.LeftButton)
    wait(qtbot, w)
    assert w.params == p0 and w.controls.lam.box.value() == p0.lam
    qtbot.mouseClick(w.controls.redo_btn, Qt.LeftButton)
    wait(qtbot, w)
    assert w.params.lam == 0.2
    assert_matches_core(w, means, w.selected_rois)


# ------------------------------------------------------------------ the view
def test_rows_have_their_own_y_range_and_x_stays_in_the_recording(setup, qtbot):
    viewer, w, means, _ = setup
    # very different amplitudes: each row still fits its own trace
    w.select_rois([3, 20])
    wait(qtbot, w)
    dur = (N_FRAMES - 1) / FS
    x0, x1 = w.traces.window
    assert 0 <= x0 < x1 <= dur + 1e-9
    for r, rid in zip(w.traces.shown, [3, 20]):
        lo, hi = r.trace.vb.viewRange()[1]
        y = means[rid]
        assert lo <= y.min() and y.max() <= hi
        assert hi - lo <= 1.25 * np.ptp(y)  # tight: no other ROI's range
    # drag the window in the overview past the start: it stops at 0
    w.traces.region.setRegion((-10.0, 5.0))
    x0, x1 = w.traces.window
    assert x0 >= 0 and x1 <= dur + 1e-9
    for r in w.traces.shown:
        assert r.trace.vb.viewRange()[0] == pytest.approx([x0, x1], abs=1e-6)
    # zoom with the mouse wheel over a row: every row and the axis follow
    vb = w.traces.shown[0].trace.vb
    vb.scaleBy(x=0.5, y=1, center=(x0 + 1, 0))
    x0, x1 = w.traces.window
    assert w.traces.shown[1].act.vb.viewRange()[0] == pytest.approx([x0, x1], abs=1e-6)
    assert w.traces.region.getRegion() == pytest.approx((x0, x1), abs=1e-6)
    assert x0 >= 0
    # the y-range follows the data inside the window
    sl = slice(int(x0 * FS), int(np.ceil(x1 * FS)) + 1)
    for r, rid in zip(w.traces.shown, [3, 20]):
        lo, hi = r.trace.vb.viewRange()[1]
        assert lo <= means[rid][sl].min() and means[rid][sl].max() <= hi


def test_long_traces_draw_the_window_with_every_peak(make_napari_viewer, qtbot, notes):
    from _synth import calcium_traces

    viewer = big_viewer(make_napari_viewer)
    y = calcium_traces(2, 20_000, fs=FS, tau_r=0.05, tau_d=0.5, seed=2)
    lab = np.zeros((4, 8), np.int32)
    lab[1:3, 1:3], lab[1:3, 5:7] = 1, 2
    viewer.add_labels(lab, metadata={"catune": {"fs": FS, "traces": y}})
    w = open_tuner(viewer)
    wait(qtbot, w)
    w.select_rois([1, 2])
    wait(qtbot, w)
    res = w.session.result
    assert w.traces.window == pytest.approx((0.0, 45.0))  # the default window
    for i, r in enumerate(w.traces.shown):
        sl = slice(0, 45 * int(FS) + 1)
        x, fit = r.fit.xData, r.fit.yData
        assert x.min() >= 0 and x.max() <= 45.0 + 1 / FS
        assert fit.max() == res.fit[i, sl].max() and fit.min() == res.fit[i, sl].min()
        assert r.activity.yData.max() == res.activity[i, sl].max()  # no spike lost
    # zoomed in to fewer samples than pixels: the drawn curves are the core's numbers
    w.traces.set_window(100.0, 102.0)
    wait(qtbot, w)
    for i, r in enumerate(w.traces.shown):
        sl = slice(int(100.0 * FS), int(102.0 * FS) + 1)
        np.testing.assert_array_equal(r.fit.yData, res.fit[i, sl])
        np.testing.assert_array_equal(r.fit.xData, np.arange(sl.start, sl.stop) / FS)
        np.testing.assert_array_equal(r.activity.yData, res.activity[i, sl])
    ref = solver_mod.run_deconvolution_full(y, FS, w.params.tau_rise, w.params.tau_decay,
                                            w.params.lam, **w.params.solver_kwargs())
    np.testing.assert_allclose(res.fit, ref.reconvolution, atol=2e-3 * np.ptp(y))


def test_row_labels_and_readouts(setup, qtbot):
    viewer, w, means, _ = setup
    w.select_rois([3, 12])
    wait(qtbot, w)
    res = w.session.result
    for i, r in enumerate(w.traces.shown):
        text = r.header.toPlainText()
        assert f"ROI {r.rid}" in text and "R²" in text and "SNR" in text and "σ" in text
        assert f"{res.r2[i]:.2f}" in text
    y = np.stack([means[i] for i in (3, 12)])
    fit = res.fit
    r2 = 1 - ((y - fit) ** 2).sum(1) / ((y - y.mean(1, keepdims=True)) ** 2).sum(1)
    np.testing.assert_allclose(res.r2, r2, rtol=1e-9)


def test_time_cursor_follows_dims_and_plot_click_moves_dims(setup, qtbot):
    viewer, w, means, _ = setup
    viewer.dims.set_current_step(0, 120)
    assert w.traces.cursor_seconds == pytest.approx(120 / FS)
    scene = w.traces.scene_pos_of_time(5.0)
    view = w.traces.rows_glw
    qtbot.waitUntil(lambda: view.isVisible(), timeout=120_000)
    pos = view.mapFromScene(scene)
    qtbot.mouseClick(view.viewport(), Qt.LeftButton, Qt.NoModifier, pos)
    qtbot.waitUntil(lambda: viewer.dims.current_step[0] != 120, timeout=120_000)
    assert abs(viewer.dims.current_step[0] - 5.0 * FS) <= 2
    line = w.traces.cursor
    line.setValue(10.0)
    line.sigDragged.emit(line)
    assert viewer.dims.current_step[0] == 300


def test_pin_draws_the_kept_fit_dashed(setup, qtbot):
    viewer, w, means, _ = setup
    w.select_rois([12])
    wait(qtbot, w)
    kept = np.asarray(w.traces.shown[0].data["fit"]).copy()
    qtbot.mouseClick(w.pin_btn, Qt.LeftButton)
    drag(w, "lam", 0.5)
    wait(qtbot, w)
    r = w.traces.shown[0]
    np.testing.assert_array_equal(r.pinned.yData, kept)
    assert not np.allclose(r.fit.yData, kept)
    assert r.pinned.opts["pen"].style() == Qt.DashLine
    qtbot.mouseClick(w.pin_btn, Qt.LeftButton)
    assert r.pinned.yData is None or len(r.pinned.yData) == 0


def test_residual_and_ground_truth_toggles(make_napari_viewer, qtbot, notes):
    viewer = big_viewer(make_napari_viewer)
    viewer.open_sample("napari-catune", "synthetic")
    w = open_tuner(viewer)
    wait(qtbot, w)
    r = w.traces.shown[0]
    assert w.truth_box.isVisible() and len(r.truth.xData) > 0
    qtbot.mouseClick(w.residual_box, Qt.LeftButton)
    wait(qtbot, w)
    x0, x1 = w.traces.window
    n = len(r.raw.yData)
    want = (r.data["raw"] - r.data["fit"])[:n]
    np.testing.assert_allclose(r.raw.yData, want)  # the window's residual, undecimated
    assert len(r.fit.yData) == 0
    lo, hi = r.trace.vb.viewRange()[1]
    assert lo <= want.min() and want.max() <= hi
    qtbot.mouseClick(w.residual_box, Qt.LeftButton)
    wait(qtbot, w)
    assert len(r.fit.yData) == n
    qtbot.mouseClick(w.truth_box, Qt.LeftButton)  # off: no ticks
    wait(qtbot, w)
    r = w.traces.shown[0]
    assert r.truth.xData is None or len(r.truth.xData) == 0
    assert len(r.fit.yData) == n  # the fit is still drawn


def test_stale_results_are_never_drawn(setup, qtbot, monkeypatch):
    import threading

    viewer, w, means, _ = setup
    monkeypatch.setattr(w, "SYNC_SOLVE_S", 0.0)  # every solve on the solve thread
    gate, jobs = threading.Event(), []
    real_run = ses.SolveRequest.run

    def gated_run(req):
        jobs.append((req, threading.current_thread()))
        if len(jobs) == 1:
            gate.wait(10)  # hold the first solve while a burst of moves queues up
        return real_run(req)

    monkeypatch.setattr(ses.SolveRequest, "run", gated_run)
    drawn = []
    w.plots_updated.connect(drawn.append)
    rid = w.selected_rois[0]
    burst = np.geomspace(0.4, 2.0, 15)
    drag(w, "tau_decay", burst[0])
    qtbot.waitUntil(lambda: len(jobs) == 1, timeout=120_000)  # the first solve is held
    for td in burst[1:]:  # the rest of the burst queues up behind it
        drag(w, "tau_decay", td)
    gate.set()
    wait(qtbot, w)
    assert all(t is not threading.main_thread() for _, t in jobs)
    assert 2 <= len(jobs) < 15  # the burst was coalesced
    newest = np.asarray(w.traces.shown[0].data["activity"]).copy()
    # the first (oldest) result arrives once more, after the newest: out of order
    w._relay.done.emit(jobs[0][0])
    qtbot.waitUntil(lambda: True)
    assert drawn == sorted(set(drawn)) and drawn[-1] == w.session._gen
    assert w.params.tau_decay == pytest.approx(2.0, rel=0.015)
    np.testing.assert_array_equal(w.traces.shown[0].data["activity"], newest)
    assert_matches_core(w, means, w.selected_rois)
    np.testing.assert_array_equal(w.session.warm_start(rid), newest)


def test_cold_solves_never_run_on_the_gui_thread(setup, qtbot, monkeypatch):
    import threading

    viewer, w, means, _ = setup
    monkeypatch.setattr(w, "SYNC_SOLVE_S", 10.0)  # any warm solve known to be cheap: in place
    real_run = ses.SolveRequest.run
    ran = []

    def recording(req):
        ran.append((threading.current_thread() is threading.main_thread(),
                    req.init is not None))
        return real_run(req)

    monkeypatch.setattr(ses.SolveRequest, "run", recording)

    def move(td):
        drag(w, "tau_decay", td)
        wait(qtbot, w)

    move(0.8)
    assert ran[-1] == (False, True)  # warm, but its cost is not known yet
    move(0.84)
    assert ran[-1] == (True, True)  # a slider step, warm and known to be cheap: in place
    move(1.3)
    assert ran[-1] == (False, True)  # a jump (as a preset or typed value): off the GUI
    w.select_rois([next(i for i in ROIS if i not in w.selected_rois)])
    wait(qtbot, w)
    assert ran[-1] == (False, False)  # no warm start for this ROI
    move(1.35)
    assert ran[-1] == (True, True)
    assert_matches_core(w, means, w.selected_rois)


def test_one_slider_event_validates_once_and_shapes_the_kernel_once(setup, qtbot,
                                                                   monkeypatch):
    import napari_catune.kernel as kmod
    from napari_catune._qt import controls as cmod

    viewer, w, means, _ = setup
    w.select_rois([3, 5])
    wait(qtbot, w)
    counts = {"landmarks": 0, "params": 0}
    real_lm = kmod.kernel_landmarks
    monkeypatch.setattr(kmod, "kernel_landmarks",
                        lambda *a: counts.__setitem__("landmarks", counts["landmarks"] + 1)
                        or real_lm(*a))
    cmod.landmarks.cache_clear()
    real_init = TuningParams.__post_init__

    def counting(self):
        counts["params"] += 1
        real_init(self)

    monkeypatch.setattr(TuningParams, "__post_init__", counting)
    reqs = []
    real_run = ses.SolveRequest.run
    monkeypatch.setattr(ses.SolveRequest, "run", lambda r: reqs.append(r) or real_run(r))
    cached = w.session._sel["raw"]
    drag(w, "tau_decay", 0.9)
    wait(qtbot, w)
    assert counts == {"landmarks": 1, "params": 1}
    assert reqs and all(r.traces is cached for r in reqs)  # no copy per event
    assert w.kernel.t_peak == pytest.approx(w.params.t_peak, rel=1e-9)
