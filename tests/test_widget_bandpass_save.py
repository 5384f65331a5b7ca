"""The tuner's Apply to all with the bandpass on, saved: the file holds the
band-passed trace the fit is of, and says so (audit finding 2)."""

from __future__ import annotations

import json

import numpy as np
from qtpy.QtCore import Qt

from _widgets import FS, notes, setup  # noqa: F401 - fixtures
from napari_catune.kernel import bandpass_filter
from napari_catune.results import load_results


def test_saved_results_of_a_band_passed_apply_hold_the_fitted_trace(setup, qtbot, tmp_path):
    viewer, w, means, notes = setup
    w.controls.filter_enabled.setChecked(True)
    qtbot.mouseClick(w.controls.apply_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.actions.apply_worker is None, timeout=120_000)
    out = tmp_path / "res.npz"
    viewer.layers["rois"].save(str(out), plugin="napari-catune")
    r = load_results(out)
    p = r["params"]
    assert p.filter_enabled
    ids = list(r["roi_ids"])
    raw = np.array([means[i] for i in ids])
    np.testing.assert_allclose(r["fitted_trace"],
                               bandpass_filter(raw, p.tau_rise, p.tau_decay, FS), atol=1e-6)
    with np.load(out) as z:
        assert "band-passed" in str(z["fit_note"])
        assert "band-passed" in json.loads(str(z["params"]))["formulation"]["objective"]
    # the features' r2 is of the fit against that trace
    y, f = r["fitted_trace"], r["fit"]
    r2 = 1 - ((y - f) ** 2).sum(1) / ((y - y.mean(1, keepdims=True)) ** 2).sum(1)
    np.testing.assert_allclose(r["features"]["r2"], r2, rtol=1e-6)
