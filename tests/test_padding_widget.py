"""The tuner on a traces file whose rows end in NaN padding (recordings of
different lengths, realgt's own format): every ROI is kept (they were left out),
each row is drawn to its last finite frame, its fit and activity are the trimmed
row's, and Apply to all stores NaN after each row's end."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt

from napari_catune import run_deconvolution_full

from _synth import calcium_traces
from _widgets import big_viewer, notes, open_tuner, wait  # noqa: F401 - fixtures

FS = 30.0
T = 600
LENGTHS = {1: 600, 2: 420, 3: 420, 4: 250}


def _file(tmp_path):
    y = calcium_traces(len(LENGTHS), T, fs=FS, tau_r=0.05, tau_d=0.5, seed=4)
    for i, L in enumerate(LENGTHS.values()):
        y[i, L:] = np.nan
    path = tmp_path / "padded.npz"
    np.savez(path, traces=y, fs=FS, roi_ids=np.array(list(LENGTHS)))
    return path, y


def _alone(w, y, rid):
    p = w.params
    L = LENGTHS[rid]
    return run_deconvolution_full(np.array(y[rid - 1, :L]), p.fs, p.tau_rise, p.tau_decay,
                                  p.lam, **p.solver_kwargs())


def test_tuner_draws_and_applies_padded_rows(make_napari_viewer, qtbot, notes, tmp_path):
    path, y = _file(tmp_path)
    viewer = big_viewer(make_napari_viewer)
    w = open_tuner(viewer)
    (layer,) = viewer.open(str(path), plugin="napari-catune")
    qtbot.waitUntil(lambda: w.session.source is not None, timeout=120_000)
    wait(qtbot, w)
    assert w.session.source.n_rois == 4  # none left out
    assert not any("left out" in m for ms in notes.values() for m in ms), notes
    w.select_rois([4, 2])
    wait(qtbot, w)
    w.traces.set_window(0.0, w.traces.duration)
    rows = {r.rid: r for r in w.traces.shown}
    qtbot.waitUntil(lambda: all(not r.dirty for r in rows.values()), timeout=60_000)
    for rid, r in rows.items():
        L = LENGTHS[rid]
        x, raw = r.raw.getData()
        assert np.isfinite(raw).all() and x[-1] == (L - 1) / FS  # drawn to its end
        ref = _alone(w, y, rid)
        act = r.data["activity"]
        assert np.isnan(act[L:]).all() and np.isnan(r.data["fit"][L:]).all()
        np.testing.assert_allclose(act[:L], ref.activity, atol=5e-3 * ref.activity.max())
    assert np.isfinite(w.traces.overview_curve.getData()[1]).all()
    # Estimate (the selected, padded rows): each on its finite part, no error
    qtbot.mouseClick(w.controls.estimate_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.last_estimate is not None and w.controls.estimate_btn.isEnabled(),
                    timeout=120_000)
    wait(qtbot, w)
    assert not notes["error"], notes
    assert 0.1 < w.last_estimate.tau_decay < 2.0  # the traces were made with 0.5 s
    # Apply to all: NaN after each row's end, the trimmed row's answer before it
    assert w.apply_to_all() is not None
    qtbot.waitUntil(lambda: not w.apply_running, timeout=120_000)
    res = layer.metadata["catune"]["results"]
    ids = [int(i) for i in res["roi_ids"]]
    assert "Applied to 4 ROIs" in w.status.text() and w.params.baseline == "drift"
    for rid, L in LENGTHS.items():
        k = ids.index(rid)
        ref = _alone(w, y, rid)
        np.testing.assert_array_equal(res["activity"][k, :L], ref.activity)
        np.testing.assert_array_equal(res["reconvolution"][k, :L], ref.reconvolution)
        assert np.isnan(res["activity"][k, L:]).all() and np.isnan(res["reconvolution"][k, L:]).all()
        assert bool(res["converged"][k])
        base = np.asarray(res["baseline"])[k]  # "drift" (the default): one per frame
        assert np.isnan(base[L:]).all() and np.isfinite(base[:L]).all()


def test_spectrum_of_padded_rows_is_of_their_common_finite_part():
    from napari_catune._qt.spectrum import power_spectrum

    y = calcium_traces(3, T, fs=FS, tau_r=0.05, tau_d=0.5, seed=5)
    y[1, 400:] = np.nan
    y[2, 10] = np.nan  # a bad row: left out
    f, db = power_spectrum(y, FS)
    f0, db0 = power_spectrum(y[:2, :400], FS)
    np.testing.assert_array_equal(f, f0)
    np.testing.assert_array_equal(db, db0)


def test_bandpass_on_with_a_padded_row_selected(make_napari_viewer, qtbot, notes, tmp_path):
    # the live bandpass filters each selected row on its finite part (an FFT of
    # the whole row was NaN throughout, and the solve then refused the row)
    from napari_catune.kernel import bandpass_filter

    path, y = _file(tmp_path)
    viewer = big_viewer(make_napari_viewer)
    w = open_tuner(viewer)
    viewer.open(str(path), plugin="napari-catune")
    qtbot.waitUntil(lambda: w.session.source is not None, timeout=120_000)
    wait(qtbot, w)
    w.select_rois([1, 2])
    wait(qtbot, w)
    w.controls.filter_enabled.setChecked(True)  # the "bandpass" box, as a click sets it
    qtbot.waitUntil(lambda: w.params.filter_enabled, timeout=60_000)
    wait(qtbot, w)
    w.traces.set_window(0.0, w.traces.duration)
    rows = {r.rid: r for r in w.traces.shown}
    qtbot.waitUntil(lambda: all(not r.dirty for r in rows.values()), timeout=60_000)
    assert not notes["error"], notes
    p = w.params
    for rid, r in rows.items():
        L = LENGTHS[rid]
        ref = run_deconvolution_full(bandpass_filter(y[rid - 1, :L], p.tau_rise, p.tau_decay, p.fs),
                                     p.fs, p.tau_rise, p.tau_decay, p.lam,
                                     **{**p.solver_kwargs(), "filter_enabled": False})
        act = r.data["activity"]
        assert np.isfinite(act[:L]).all() and np.isnan(act[L:]).all()
        np.testing.assert_allclose(act[:L], ref.activity, atol=5e-3 * ref.activity.max())
