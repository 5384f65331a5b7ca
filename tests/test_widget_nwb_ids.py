"""The tuner's .nwb export of an NWB recording keeps the file's own ROI ids
(as ``deconvolve`` does): opened in napari, Apply to all, saved, read back."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from qtpy.QtCore import Qt

from _widgets import big_viewer, notes, open_tuner, wait  # noqa: F401 - fixtures
from napari_catune.results import load_results

from test_cli_out39 import _nwb_with_ids

pytest.importorskip("pynwb")


def test_tuner_nwb_export_round_trip_keeps_the_source_ids(make_napari_viewer, qtbot, notes,
                                                          tmp_path):
    src = _nwb_with_ids(tmp_path / "rec.nwb", [0, 1, 2], T=600)  # 0-based: labels 1..3
    viewer = big_viewer(make_napari_viewer)
    viewer.open(str(src), plugin="napari-catune")
    rois = [layer for layer in viewer.layers if layer._type_string == "labels"][0]
    w = open_tuner(viewer)
    wait(qtbot, w)
    qtbot.mouseClick(w.controls.apply_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.actions.apply_worker is None, timeout=120_000)
    out = tmp_path / "tuned.nwb"
    rois.save(str(out), plugin="napari-catune")
    with h5py.File(src, "r") as f:
        want = f["processing/ophys/ImageSegmentation/PlaneSegmentation/id"][()].tolist()
    with h5py.File(out, "r") as f:
        ps = f["processing/ophys/ImageSegmentation/PlaneSegmentation"]
        assert ps["id"][()].tolist() == want == [0, 1, 2]
        assert ps["roi_id"][()].tolist() == [1, 2, 3]
    got = load_results(out)
    assert got["roi_ids"].tolist() == [1, 2, 3]  # the label values, as in every other output
    assert got["activity"].shape == (3, 600)
