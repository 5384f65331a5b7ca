"""Sample data: the synthetic recording as napari layers, with ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from napari_catune._sample_data import make_sample_data
from napari_catune.params import TuningParams


@pytest.fixture(scope="module")
def sample():
    return make_sample_data()


def test_layers_and_types(sample):
    assert [(meta["name"], kind) for _, meta, kind in sample] == [
        ("synthetic movie", "image"),
        ("ROIs", "labels"),
    ]
    (movie, mmeta, _), (labels, lmeta, _) = sample
    assert movie.ndim == 3 and movie.dtype == np.float32
    assert labels.dtype == np.int32 and labels.shape == movie.shape[1:]
    assert np.isfinite(movie).all()
    lo, hi = mmeta["contrast_limits"]
    assert movie.min() <= lo < hi <= movie.max()
    # small enough to open quickly: well under 100 MB
    assert movie.nbytes < 100e6


def test_metadata_follows_the_layer_conventions(sample):
    (movie, mmeta, _), (labels, lmeta, _) = sample
    fs = mmeta["metadata"]["catune"]["fs"]
    assert isinstance(fs, float) and fs > 0
    cat = lmeta["metadata"]["catune"]
    assert cat["fs"] == fs
    ids = np.asarray(cat["roi_ids"])
    present = np.unique(labels)
    np.testing.assert_array_equal(ids, present[present != 0])
    truth = cat["ground_truth"]
    n, t = ids.size, movie.shape[0]
    assert truth["spikes"].shape == (n, t) and truth["calcium"].shape == (n, t)
    assert (truth["spikes"] >= 0).all() and truth["spikes"].sum(axis=1).min() > 0
    params = TuningParams(**truth["params"])
    assert params.fs == fs


def test_ground_truth_rows_belong_to_their_roi(sample):
    # the footprint mean of ROI roi_ids[i] follows calcium row i, not another row
    (movie, _, _), (labels, lmeta, _) = sample
    cat = lmeta["metadata"]["catune"]
    calcium = cat["ground_truth"]["calcium"]
    flat = movie.reshape(movie.shape[0], -1)
    means = np.stack([flat[:, labels.ravel() == i].mean(axis=1) for i in cat["roi_ids"]])
    z = lambda a: (a - a.mean(1, keepdims=True)) / a.std(1, keepdims=True)  # noqa: E731
    corr = z(means) @ z(calcium).T / movie.shape[0]
    np.testing.assert_array_equal(corr.argmax(axis=1), np.arange(len(cat["roi_ids"])))
    assert np.diag(corr).min() > 0.5


def test_deterministic():
    a, b = make_sample_data(), make_sample_data()
    np.testing.assert_array_equal(a[0][0], b[0][0])
    np.testing.assert_array_equal(a[1][0], b[1][0])


def test_sample_in_viewer_feeds_the_tuner(make_napari_viewer):
    # the sample is what the tuner opens on: its Labels layer carries fs, so
    # the tuner's sampling rate follows the recording
    viewer = make_napari_viewer()
    viewer.open_sample("napari-catune", "synthetic")
    rois = viewer.layers["ROIs"]
    truth = rois.metadata["catune"]["ground_truth"]
    assert viewer.layers["synthetic movie"].metadata["catune"]["fs"] == truth["params"]["fs"]
    _, widget = viewer.window.add_plugin_dock_widget("napari-catune", "CaTune tuner")
    assert widget.params.fs == truth["params"]["fs"]
