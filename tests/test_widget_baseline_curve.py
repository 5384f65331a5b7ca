"""The trace rows draw the fit's baseline as the solver returns it (audit 37,
finding 1): per sample for "drift" and "rolling", one level for "scalar", 0 for
"none"; updated in place after a slider move and a baseline-model switch; hidden
in the residual view; the pinned fit's baseline dotted beside it."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt

from _widgets import big_viewer, drag, notes, open_tuner, wait  # noqa: F401 - fixtures

FS_B, T_B = 30.0, 2400  # 80 s


def _bleached(tmp_path):
    """Raw-F traces (level ~300) with calcium transients on a 30 % bleaching ramp."""
    from napari_catune.kernel import build_kernel

    rng = np.random.default_rng(3)
    h = build_kernel(0.05, 0.5, FS_B)
    t = np.arange(T_B) / FS_B
    spikes = (rng.random((2, T_B)) < 0.02) * rng.uniform(20, 60, (2, T_B))
    calcium = np.stack([np.convolve(s, h)[:T_B] for s in spikes])
    y = 300.0 * (1.0 - 0.3 * t / t[-1]) + calcium + rng.normal(0, 2.0, (2, T_B))
    path = tmp_path / "bleached.npz"
    np.savez(path, traces=y, fs=FS_B, roi_ids=np.array([1, 2]))
    return path, y


def _drawn(r):
    return np.asarray(r.base.xData), np.asarray(r.base.yData)


def _window(w):
    from napari_catune._qt.rowplot import window_slice

    return window_slice(*w.traces.window, w.traces.fs, w.traces.n_frames)


def _mode(qtbot, w, mode):
    w.controls.baseline.setCurrentText(mode)
    qtbot.waitUntil(lambda: w.session.result is not None
                    and str(w.session.result.params.baseline) == mode, timeout=120_000)
    wait(qtbot, w)
    qtbot.waitUntil(lambda: not w.traces.shown[0].dirty, timeout=20_000)


def _drift_row(make_napari_viewer, qtbot, tmp_path, rid):
    """The tuner on the bleached traces, ROI ``rid`` selected, "drift", a 45 s window
    (1350 frames on ~1400 px: drawn undecimated); (tuner, traces, its row)."""
    path, y = _bleached(tmp_path)
    viewer = big_viewer(make_napari_viewer, show=True)
    w = open_tuner(viewer)
    viewer.open(str(path), plugin="napari-catune")
    qtbot.waitUntil(lambda: w.session.source is not None, timeout=120_000)
    wait(qtbot, w)
    w.select_rois([rid])
    _mode(qtbot, w, "drift")
    w.traces.set_window(0.0, 45.0)
    r = w.traces.shown[0]
    qtbot.waitUntil(lambda: not r.dirty, timeout=20_000)
    return w, y, r


def test_rows_draw_the_solvers_baseline_in_every_mode(make_napari_viewer, qtbot, notes,
                                                      tmp_path):
    from napari_catune import solver

    w, y, r = _drift_row(make_napari_viewer, qtbot, tmp_path, 1)
    items = list(r.trace.items)
    sl = _window(w)
    res = w.session.result
    xs, ys = _drawn(r)
    np.testing.assert_array_equal(xs, w.traces.x[sl])
    np.testing.assert_array_equal(ys, res.baseline[0][sl])
    # the solver's own answer for this trace (the live one is warm-started)
    p = w.params
    ref = solver.run_deconvolution_full(y[:1], p.fs, p.tau_rise, p.tau_decay, p.lam,
                                        **p.solver_kwargs())
    np.testing.assert_allclose(ys, ref.baseline[0][sl], atol=1e-3 * np.ptp(y[0]))
    assert np.ptp(ys) > 1.0  # a drift baseline on a ramp is not flat
    assert "drift baseline" in w.traces.legend.text()
    assert "fit = activity ⊛ kernel + baseline" in w.traces.legend.text()
    assert r.base.opts["pen"].style() == Qt.DashLine

    # a slider move: the same curve item, the new result's baseline
    old = res.baseline[0].copy()
    drag(w, "lam", 4 * p.lam)
    qtbot.waitUntil(lambda: w.session.result is not res, timeout=120_000)
    wait(qtbot, w)
    qtbot.waitUntil(lambda: not r.dirty, timeout=20_000)
    res = w.session.result
    assert not np.array_equal(res.baseline[0], old)
    np.testing.assert_array_equal(_drawn(r)[1], res.baseline[0][sl])
    assert list(r.trace.items) == items  # no curve added by a move

    # scalar: one level across the window; none: 0; rolling: its subtracted baseline
    _mode(qtbot, w, "scalar")
    res = w.session.result
    assert res.baseline.ndim == 1
    xs, ys = _drawn(r)
    np.testing.assert_array_equal(xs, w.traces.x[sl][[0, -1]])
    np.testing.assert_array_equal(ys, [res.baseline[0]] * 2)
    assert "baseline (one fitted level)" in w.traces.legend.text()
    _mode(qtbot, w, "none")
    np.testing.assert_array_equal(_drawn(r)[1], [0.0, 0.0])
    _mode(qtbot, w, "rolling")
    res = w.session.result
    np.testing.assert_array_equal(_drawn(r)[1], res.baseline[0][sl])
    assert np.ptp(_drawn(r)[1]) > 1.0
    assert list(r.trace.items) == items


def test_residual_view_hides_the_baseline_and_pin_keeps_its_own(make_napari_viewer, qtbot,
                                                                notes, tmp_path):
    w, _, r = _drift_row(make_napari_viewer, qtbot, tmp_path, 2)
    sl = _window(w)
    kept = w.session.result.baseline[0][sl].copy()
    qtbot.mouseClick(w.pin_btn, Qt.LeftButton)
    _mode(qtbot, w, "scalar")
    # the pinned drift baseline (dotted) beside the live scalar level
    np.testing.assert_array_equal(np.asarray(r.pinned_base.yData), kept)
    assert r.pinned_base.opts["pen"].style() == Qt.DotLine
    assert len(r.base.yData) == 2
    assert "pinned fit" in w.traces.legend.text()

    qtbot.mouseClick(w.residual_box, Qt.LeftButton)
    wait(qtbot, w)
    qtbot.waitUntil(lambda: not r.dirty, timeout=20_000)
    for c in (r.base, r.pinned_base, r.fit):
        assert c.yData is None or len(c.yData) == 0
    assert "residual" in w.traces.legend.text()
    assert "one fitted level" not in w.traces.legend.text()
    qtbot.mouseClick(w.residual_box, Qt.LeftButton)
    wait(qtbot, w)
    qtbot.waitUntil(lambda: not r.dirty, timeout=20_000)
    assert len(r.base.yData) == 2 and len(r.pinned_base.yData) == len(kept)

    qtbot.mouseClick(w.pin_btn, Qt.LeftButton)  # unpinned: its baseline goes too
    qtbot.waitUntil(lambda: r.pinned_base.yData is None or len(r.pinned_base.yData) == 0,
                    timeout=20_000)
    assert "pinned fit" not in w.traces.legend.text()
