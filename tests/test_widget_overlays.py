"""LazyActivity and centroids: the array-like behind the tuner's activity layer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_catune._qt.overlays import LazyActivity, centroids


@pytest.fixture
def lazy():
    labels = np.zeros((6, 7), np.int32)
    labels[0:2, 0:3] = 4
    labels[3:6, 4:7] = 9
    labels[5, 0] = 2  # an ROI without values: painted 0
    values = np.arange(2 * 5, dtype=float).reshape(2, 5) + 1.0  # ROI 4: 1..5, ROI 9: 6..10
    la = LazyActivity(labels, 5)
    la.set_values([4, 9], values)
    # the full array built independently, for comparison
    full = np.zeros((5, 6, 7), np.float32)
    for t in range(5):
        full[t][labels == 4] = values[0, t]
        full[t][labels == 9] = values[1, t]
    return la, full


def test_shape_dtype(lazy):
    la, full = lazy
    assert la.shape == full.shape and la.ndim == 3 and la.dtype == np.float32
    assert len(la) == 5 and la.size == full.size


@pytest.mark.parametrize("key", [
    2, -1, (3,), (1, slice(None), slice(None)), slice(1, 4), (slice(0, 5, 2), 2),
    (Ellipsis, 3), (4, Ellipsis), (slice(None), slice(2, 5), slice(1, 6)), np.int64(0),
    (2, 4, 5),
])
def test_indexing_matches_full_array(lazy, key):
    la, full = lazy
    np.testing.assert_array_equal(np.asarray(la[key]), full[key])


def test_builds_only_requested_frames(lazy):
    la, full = lazy
    before = la.frames_built
    la[3]
    assert la.frames_built - before == 1
    la[1:3]
    assert la.frames_built - before == 3
    with pytest.raises(IndexError):
        la[5]


def test_values_can_change_and_be_emptied(lazy):
    la, full = lazy
    la.set_values([9], np.full((1, 5), 7.0))
    frame = la[0]
    assert np.all(frame[3:6, 4:7] == 7.0) and np.all(frame[0:2, 0:3] == 0)
    la.set_values([], np.zeros((0, 5)))
    assert not np.any(la[2])
    np.testing.assert_array_equal(np.asarray(la), np.zeros(full.shape, np.float32))


def test_centroids():
    labels = np.zeros((10, 10), np.int32)
    labels[2:5, 2:5] = 3
    labels[6:8, 1:9] = 1
    c = centroids(labels, [1, 3, 7])
    np.testing.assert_allclose(c[0], [6.5, 4.5])
    np.testing.assert_allclose(c[1], [3.0, 3.0])
    assert np.all(np.isnan(c[2]))  # id 7 has no pixels


def test_set_values_swaps_lookup_and_values_together(lazy):
    """A frame read between any two attribute writes of set_values (as napari's
    slicing thread may) sees the old or the new state, never a mix."""
    la, full = lazy
    new = np.full((1, 5), 3.0)
    old_frames = [np.asarray(la[t]) for t in range(5)]
    seen = []

    class Probe(LazyActivity):
        def __setattr__(self, name, value):
            object.__setattr__(self, name, value)
            if name not in ("frames_built", "max_frames_per_call") and getattr(self, "_probe", False):
                seen.append([np.asarray(self[t]) for t in range(5)])

    labels = la._labels
    pr = Probe(labels, 5)
    pr.set_values([4, 9], np.arange(10, dtype=float).reshape(2, 5) + 1.0)
    object.__setattr__(pr, "_probe", True)
    pr.set_values([9], new)
    new_frames = [np.where(labels == 9, 3.0, 0.0).astype(np.float32)] * 5
    assert seen
    for frames in seen:
        same_old = all(np.array_equal(a, b) for a, b in zip(frames, old_frames))
        same_new = all(np.array_equal(a, b) for a, b in zip(frames, new_frames))
        assert same_old or same_new


def test_time_axis_is_named_t_in_the_viewer(make_napari_viewer, qtbot):
    """A recording with unnamed axes: once the tuner adds its activity layer the
    viewer's time slider reads "t", not napari's "-3"/"0"."""
    from _widgets import open_tuner, viewer_with_recording, wait

    viewer, _, _ = viewer_with_recording(make_napari_viewer)
    assert viewer.dims.axis_labels[0] != "t"  # napari's default numbering
    w = open_tuner(viewer)
    wait(qtbot, w)
    qtbot.waitUntil(lambda: viewer.dims.axis_labels[0] == "t", timeout=120_000)
    assert len(viewer.dims.axis_labels) == 3
