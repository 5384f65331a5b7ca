"""The tuner's Apply to all on a movie + masks, saved: the files say what the
traces were (the movie's ROI means), hold the CLI's feature set and the ROIs'
footprints (audit 37, finding 6)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from qtpy.QtCore import Qt

from _widgets import notes, setup, type_value, wait  # noqa: F401 - fixtures
from napari_catune.results import load_results
from napari_catune.session import FEATURE_NAMES
from napari_catune.traces import ROI_MEAN_TRACES

pynwb = pytest.importorskip("pynwb")


def test_saved_apply_of_movie_rois_records_traces_features_and_footprints(setup, qtbot,
                                                                          tmp_path):
    viewer, w, means, notes = setup
    qtbot.mouseClick(w.controls.apply_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.actions.apply_worker is None, timeout=120_000)
    rois = viewer.layers["rois"]
    npz, nwb = tmp_path / "res.npz", tmp_path / "res.nwb"
    rois.save(str(npz), plugin="napari-catune")
    rois.save(str(nwb), plugin="napari-catune")
    for path in (npz, nwb):
        assert load_results(path)["input_traces"] == ROI_MEAN_TRACES
    with np.load(npz, allow_pickle=False) as z:
        feats = {k.split(".", 1)[1] for k in z.files if k.startswith("features.")}
        assert set(FEATURE_NAMES) <= feats
        for key in ("converged", "iterations", "skipped"):
            np.testing.assert_array_equal(z[key], z[f"features.{key}"])
    lab = np.asarray(rois.data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pynwb.NWBHDF5IO(str(nwb), "r") as io:
            f = io.read()
            ps = f.processing["ophys"]["ImageSegmentation"]["PlaneSegmentation"]
            assert "FOOTPRINTS NOT KNOWN" not in ps.description
            for i in range(len(ps)):
                rid = int(ps["roi_id"][i])
                got = {(int(x), int(y)) for x, y, _ in ps["pixel_mask"][i]}
                assert got == {tuple(v) for v in np.argwhere(lab == rid)}


def test_apply_scores_rois_at_the_rate_in_use_not_the_one_read_at(setup, qtbot):
    """The SNR read with the traces (at the rate of that time) is not saved
    after fs changed: Apply's features are those of the rate in use, as the CLI's."""
    from napari_catune.traces import roi_snr

    viewer, w, means, notes = setup
    fs0 = w.session.source.scores_fs
    type_value(qtbot, w, "fs", "45")
    qtbot.waitUntil(lambda: w.params.fs == 45.0, timeout=120_000)
    wait(qtbot, w)
    assert fs0 != 45.0
    qtbot.mouseClick(w.controls.apply_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.actions.apply_worker is None, timeout=120_000)
    src = w.session.source
    feats = viewer.layers["rois"].features
    want = roi_snr(src.traces, 45.0)
    assert not np.allclose(want, roi_snr(src.traces, fs0))
    np.testing.assert_allclose(feats["snr"].to_numpy(), want, rtol=1e-12)
