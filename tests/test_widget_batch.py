"""Apply to all in a real viewer goes through the batch loop of the CLI: ROIs whose
traces hold NaN are skipped and named, the others solved."""

from __future__ import annotations

import numpy as np

from _widgets import (  # noqa: F401 - fixtures
    FS, ROIS, big_viewer, notes, open_tuner, recording, reference, wait,
)


def test_apply_to_all_skips_and_names_rois_with_nan(make_napari_viewer, qtbot, notes):
    viewer = big_viewer(make_napari_viewer)
    movie, labels, means = recording()
    ys, xs = ROIS[8]
    movie[100, ys.start, xs.start] = np.nan  # one pixel of ROI 8 in one frame
    viewer.add_image(movie, name="movie", metadata={"catune": {"fs": FS}})
    viewer.add_labels(labels, name="rois", metadata={"catune": {"fs": FS}})
    w = open_tuner(viewer)
    wait(qtbot, w)
    w.select_rois([3])
    wait(qtbot, w)
    assert w.apply_to_all() is not None
    qtbot.waitUntil(lambda: not w.apply_running, timeout=120_000)
    res = viewer.layers["rois"].metadata["catune"]["results"]
    ids = [int(i) for i in res["roi_ids"]]
    k = ids.index(8)
    assert np.isnan(res["activity"][k]).all() and not res["converged"][k]
    ok = [i for i in ids if i != 8]
    ref = reference(w, ok, means)
    rows = [ids.index(i) for i in ok]
    np.testing.assert_allclose(res["activity"][rows], ref.activity,
                               atol=1e-6 * ref.activity.max())
    assert any("1 ROI(s) skipped" in m and "ROI 8" in m for m in notes["warning"]), notes
    assert "Applied to 5 of 6 ROIs" in w.status.text()
