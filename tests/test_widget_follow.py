"""The tuner's overlay layers follow the transforms of the movie and Labels layer
they were made from, also when those are set after the tuner opened (aud37,
finding 2): the ROI ids and outlines stay on the cells, the activity on the
movie's frames, and the dims slider, the plot's cursor and clicks agree."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import QPoint, Qt

from _widgets import FS, N_FRAMES, ROIS, notes, recording, setup, wait  # noqa: F401

NAMES = ("CaTune activity", "CaTune ROI ids", "CaTune selection")


def _ready(qtbot, viewer, w):
    qtbot.waitUntil(lambda: all(n in viewer.layers for n in NAMES) and w.idle,
                    timeout=120_000)


def _d2w(layer):
    return np.asarray(layer._data_to_world.affine_matrix)


def _plane_matches(layer, labels):
    return np.allclose(_d2w(layer), _d2w(labels), rtol=0, atol=1e-12)


def _activity_matches(act, movie, labels):
    """The activity's time axis is the movie's, its y, x the labels'."""
    m = _d2w(act)
    return (np.allclose(m[1:, 1:], _d2w(labels), rtol=0, atol=1e-12)
            and np.allclose(m[0], _d2w(movie)[0], rtol=0, atol=1e-12)
            and np.allclose(m[1:, 0], 0.0))


def _all_follow(viewer):
    movie, labels = viewer.layers["movie"], viewer.layers["rois"]
    act, ids, sel = (viewer.layers[n] for n in NAMES)
    return (_activity_matches(act, movie, labels) and _plane_matches(ids, labels)
            and _plane_matches(sel, labels))


def _click_world(viewer, qtbot, world_yx):
    viewer.scene.camera.center = tuple(world_yx)
    viewer.scene.camera.zoom = 4
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.mouseClick(canvas, Qt.LeftButton, Qt.NoModifier,
                     QPoint(canvas.width() // 2, canvas.height() // 2))


def _centre(rid):
    ys, xs = ROIS[rid]
    return np.array([(ys.start + ys.stop - 1) / 2, (xs.start + xs.stop - 1) / 2])


def test_scale_and_translate_set_after_opening(setup, qtbot):
    viewer, w, means, notes = setup
    _ready(qtbot, viewer, w)
    w.select_rois([5])
    wait(qtbot, w)
    movie, labels = viewer.layers["movie"], viewer.layers["rois"]
    # as after loading a TIFF: seconds and micrometres, an offset stage position
    movie.scale, movie.translate = (1 / FS, 0.8, 0.8), (2.0, 10.0, 20.0)
    labels.scale, labels.translate = (0.8, 0.8), (10.0, 20.0)
    qtbot.waitUntil(lambda: _all_follow(viewer), timeout=10_000)
    act, ids, sel = (viewer.layers[n] for n in NAMES)
    np.testing.assert_allclose(act.scale, (1 / FS, 0.8, 0.8))
    np.testing.assert_allclose(act.translate, (2.0, 10.0, 20.0))
    for layer in (ids, sel):
        np.testing.assert_allclose(layer.scale, (0.8, 0.8))
        np.testing.assert_allclose(layer.translate, (10.0, 20.0))
    # the slider steps through the movie's frames, not 1-s frames of the activity
    assert viewer.dims.nsteps[0] == N_FRAMES
    # dims -> plot cursor, and the activity shows the movie's frame
    viewer.dims.set_current_step(0, 300)
    qtbot.waitUntil(lambda: w.traces.cursor_seconds == pytest.approx(300 / FS), timeout=10_000)
    point = np.asarray(viewer.dims.point)
    assert np.round(act.world_to_data(point)[0]) == np.round(movie.world_to_data(point)[0]) == 300
    # plot cursor -> dims
    line = w.traces.cursor
    line.setValue(5.0)
    line.sigDragged.emit(line)
    qtbot.waitUntil(lambda: viewer.dims.current_step[0] == 150, timeout=10_000)
    assert np.round(movie.world_to_data(np.asarray(viewer.dims.point))[0]) == 150
    # a click on ROI 12 where the labels now are selects it, and its outline is there
    _click_world(viewer, qtbot, labels.data_to_world(_centre(12)))
    qtbot.waitUntil(lambda: w.selected_rois == [12], timeout=120_000)
    wait(qtbot, w)
    world = labels.data_to_world(_centre(12))
    assert sel.features["roi_id"].to_numpy()[sel.get_value(world, world=True)] == 12
    k = list(ids.features["roi_id"]).index(12)
    np.testing.assert_allclose(ids.data_to_world(ids.data[k]), world, atol=1e-9)
    assert not notes["error"] and not notes["warning"]


def test_rotate_shear_and_affine_are_followed(setup, qtbot):
    viewer, w, means, notes = setup
    _ready(qtbot, viewer, w)
    movie, labels = viewer.layers["movie"], viewer.layers["rois"]
    labels.rotate = 25.0
    movie.rotate = np.array([[1.0, 0, 0], [0, *labels.rotate[0]], [0, *labels.rotate[1]]])
    labels.shear = [0.2]
    labels.affine = np.array([[1.2, 0.0, 3.0], [0.1, 0.9, -4.0], [0.0, 0.0, 1.0]])
    movie.scale = (0.5, 1.0, 1.0)
    qtbot.waitUntil(lambda: _all_follow(viewer), timeout=10_000)
    sel = viewer.layers["CaTune selection"]
    w.select_rois([11])
    wait(qtbot, w)
    world = labels.data_to_world(_centre(11))
    assert sel.features["roi_id"].to_numpy()[sel.get_value(world, world=True)] == 11
    assert not notes["error"] and not notes["warning"]


def test_an_old_source_is_no_longer_followed(setup, qtbot):
    viewer, w, means, notes = setup
    _ready(qtbot, viewer, w)
    old = viewer.layers["rois"]
    n_hooks = len(old.events.scale.callbacks)
    _, lab, _ = recording()
    new = viewer.add_labels(lab, name="rois 2", scale=(2.0, 2.0), metadata={"catune": {"fs": FS}})
    w.labels_combo.value = new
    qtbot.waitUntil(lambda: w.overlays.made_for is new and w.idle
                    and np.allclose(viewer.layers["CaTune ROI ids"].scale, 2.0),
                    timeout=120_000)
    assert len(old.events.scale.callbacks) < n_hooks  # the tuner let go of it
    old.scale = (3.0, 3.0)
    old.translate = (7.0, 7.0)
    for name in NAMES:
        layer = viewer.layers[name]
        np.testing.assert_allclose(layer.scale[-2:], (2.0, 2.0))
        np.testing.assert_allclose(layer.translate[-2:], (0.0, 0.0))
    new.translate = (1.0, 4.0)  # the new source is followed
    qtbot.waitUntil(lambda: all(np.allclose(viewer.layers[n].translate[-2:], (1.0, 4.0))
                                for n in NAMES), timeout=10_000)


def test_cursor_and_slider_agree_on_the_source_movie_when_another_sets_the_steps(setup, qtbot):
    """Two movies of other time scales: the plot's cursor is the chosen movie's
    frame under the slider, and a frame asked from the plot is shown there."""
    viewer, w, means, notes = setup
    _ready(qtbot, viewer, w)
    movie = viewer.layers["movie"]
    movie.scale = (1 / FS, 1, 1)
    half = viewer.add_image(np.asarray(movie.data)[::2].copy(), name="movie2",
                            metadata={"catune": {"fs": FS / 2}}, scale=(2 / FS, 1, 1),
                            translate=(7.0, 0, 0))
    w.picker.image_combo.value = half
    qtbot.waitUntil(lambda: w.session.source is not None and w.session.source.origin[0] is half
                    and w.idle, timeout=120_000)
    wait(qtbot, w)
    for step in (230, 300, 400):  # the slider's steps are the 1/FS movie's
        viewer.dims.set_current_step(0, step)
        shown = int(np.round(half.world_to_data(viewer.dims.point)[0]))
        assert shown != step
        assert w.traces.cursor_seconds == pytest.approx(shown / (FS / 2))
    w.traces.frame_requested.emit(100)
    assert int(np.round(half.world_to_data(viewer.dims.point)[0])) == 100
    assert w.traces.cursor_seconds == pytest.approx(100 / (FS / 2))
