"""What the tuner tells the user: a parameter file tuned at another rate than the
recording's, flat traces, a bad setting, the export hint after Apply to all."""

from __future__ import annotations

import json

import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog

from napari_catune.params import TuningParams, fs_matches, save_params
from napari_catune.session import at_data_rate

from _widgets import (  # noqa: F401 - fixtures
    FS, drag, notes, open_tuner, recording, setup, viewer_with_recording, wait,
)


def _load_by_dialog(qtbot, w, monkeypatch, path):
    """Load... as a user: the button, then the file in the dialog."""
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    qtbot.mouseClick(w.controls.load_btn, Qt.LeftButton)
    wait(qtbot, w)


def _file_at(tmp_path, fs, name="other_rate.json"):
    path = tmp_path / name
    save_params(TuningParams(0.03, 0.8, fs, 0.2), path)
    return path


# ------------------------------------------------- a parameter file's sampling rate
def test_fs_matches_allows_rounding_only():
    assert fs_matches(121.965, 121.96515600054215)  # suite2p / NWB round the rate
    assert not fs_matches(30.0, 121.965)
    assert not fs_matches(30.0, 30.01)


def test_at_data_rate():
    p = TuningParams(0.03, 0.8, 30.0, 0.2)
    assert at_data_rate(p, None) == (p, False)
    q, mismatch = at_data_rate(p, 121.965)
    assert mismatch and q == p.replace(fs=121.965)
    q, mismatch = at_data_rate(p, 30.0000001)
    assert not mismatch and q.fs == 30.0000001


def test_load_keeps_the_recordings_rate_and_warns(setup, qtbot, monkeypatch, tmp_path):
    viewer, w, means, notes = setup
    assert w.params.fs == FS  # the recording states its rate (layer metadata)
    path = _file_at(tmp_path, 20.0)
    _load_by_dialog(qtbot, w, monkeypatch, path)
    assert w.params.fs == FS and w.controls.fs.box.value() == pytest.approx(FS)
    assert w.params.tau_decay == pytest.approx(0.8) and w.params.lam == pytest.approx(0.2)
    (msg,) = notes["warning"]
    assert str(path) in msg and "20 Hz" in msg and "30 Hz" in msg
    assert "type 20 in the fs box" in msg
    assert "30 Hz" in w.status.text() and "20 Hz" in w.status.text()
    # Apply to all solves at the recording's rate
    w.controls.apply_btn.click()
    qtbot.waitUntil(lambda: w.actions.apply_worker is None, timeout=120_000)
    assert viewer.layers["rois"].metadata["catune"]["results"]["params"]["fs"] == FS
    assert not notes["error"]


def test_load_at_the_same_rate_rounded_is_quiet(setup, qtbot, monkeypatch, tmp_path):
    viewer, w, means, notes = setup
    _load_by_dialog(qtbot, w, monkeypatch, _file_at(tmp_path, FS * (1 + 2e-6)))
    assert w.params.fs == FS and w.params.tau_decay == pytest.approx(0.8)
    assert not notes["warning"] and not notes["error"]


def test_load_without_a_known_rate_takes_the_files_and_says_so(
        make_napari_viewer, qtbot, notes, monkeypatch, tmp_path):
    viewer, _, means = viewer_with_recording(make_napari_viewer, fs_meta=False)
    w = open_tuner(viewer)
    wait(qtbot, w)
    path = _file_at(tmp_path, 20.0)
    _load_by_dialog(qtbot, w, monkeypatch, path)
    assert w.params.fs == 20.0
    (msg,) = notes["warning"]
    assert "does not record its sampling rate" in msg and "20 Hz" in msg and str(path) in msg


def test_load_before_the_data_then_the_recordings_rate_wins_aloud(
        make_napari_viewer, qtbot, notes, monkeypatch, tmp_path):
    viewer = make_napari_viewer()
    w = open_tuner(viewer)
    path = _file_at(tmp_path, 20.0)
    _load_by_dialog(qtbot, w, monkeypatch, path)
    assert w.params.fs == 20.0 and not notes["warning"]
    movie, labels, _ = recording()
    viewer.add_image(movie, name="movie", metadata={"catune": {"fs": FS}})
    viewer.add_labels(labels, name="rois", metadata={"catune": {"fs": FS}})
    qtbot.waitUntil(lambda: w.session.source is not None, timeout=120_000)
    wait(qtbot, w)
    assert w.params.fs == FS and w.params.tau_decay == pytest.approx(0.8)
    (msg,) = notes["warning"]
    assert str(path) in msg and "20 Hz" in msg and "30 Hz" in msg


# ------------------------------------------------------------------- Estimate
def test_estimate_on_flat_traces_warns_that_it_used_defaults(make_napari_viewer, qtbot, notes):
    viewer = make_napari_viewer()
    movie, labels, _ = recording()
    viewer.add_image(movie * 0 + 1.0, name="flat", metadata={"catune": {"fs": FS}})
    viewer.add_labels(labels, name="rois", metadata={"catune": {"fs": FS}})
    w = open_tuner(viewer)
    qtbot.waitUntil(lambda: w.session.source is not None, timeout=120_000)
    wait(qtbot, w)
    w.controls.estimate_from.setCurrentIndex(1)  # all ROIs
    qtbot.mouseClick(w.controls.estimate_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.actions.estimate_worker is None, timeout=120_000)
    wait(qtbot, w)
    (msg,) = notes["warning"]
    assert "flat" in msg and "default parameters" in msg and "estimate_params" not in msg
    assert "flat" in w.status.text() and "estimated from" not in w.status.text()
    assert not notes["error"]


def test_estimate_on_real_transients_says_nothing_more(setup, qtbot):
    viewer, w, means, notes = setup
    qtbot.mouseClick(w.controls.estimate_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.actions.estimate_worker is None, timeout=120_000)
    wait(qtbot, w)
    assert not notes["warning"] and not notes["error"]
    assert w.status.text().startswith("Parameters estimated from")


# ------------------------------------------------------------ a bad setting
def test_bad_thread_setting_is_named_without_unfitting_advice(setup, qtbot, monkeypatch):
    viewer, w, means, notes = setup
    w.select_rois([3, 5])  # two ROIs: the solve asks for its threads
    wait(qtbot, w)
    monkeypatch.setenv("CATUNE_NUM_THREADS", "abc")
    drag(w, "lam", 0.4)
    wait(qtbot, w)
    drag(w, "lam", 0.5)
    wait(qtbot, w)
    (msg,) = notes["error"]  # once, not on every solve
    assert "CATUNE_NUM_THREADS" in msg and "'abc'" in msg and "unset it" in msg
    assert "Adjust the parameters" not in msg
    w.controls.apply_btn.click()
    qtbot.waitUntil(lambda: w.actions.apply_worker is None, timeout=120_000)
    assert len(notes["error"]) == 2 and "CATUNE_NUM_THREADS" in notes["error"][1]
    assert "Check the parameters" not in notes["error"][1]
    monkeypatch.delenv("CATUNE_NUM_THREADS")
    drag(w, "lam", 0.3)
    wait(qtbot, w)
    assert len(notes["error"]) == 2 and w.session.result.params == w.params  # solves again


# ------------------------------------------------------------- Apply to all
def test_apply_status_names_the_menu_item_that_saves_the_results(setup, qtbot):
    from napari._app_model import get_app_model

    viewer, w, means, notes = setup
    qtbot.mouseClick(w.controls.apply_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.actions.apply_worker is None, timeout=120_000)
    text = w.status.text()
    assert "File > IO Utilities > Save CaTune results..." in text, text
    assert ".npz, .nwb or .csv" in text and "Save Selected Layers" not in text
    # the item the status names is in napari's File > IO Utilities menu (README step 6)
    titles = {i.command.title for i in get_app_model().menus.get_menu("napari/file/io_utilities")
              if getattr(i, "command", None)}
    assert any(t.startswith("Save CaTune results...") for t in titles), titles


# ------------------- a parameter file opened by File > Open / drag and drop (review rev34)
def test_open_after_the_data_keeps_the_recordings_rate(setup, qtbot, tmp_path):
    viewer, w, means, notes = setup
    assert w.params.fs == FS
    path = _file_at(tmp_path, 20.0)
    viewer.open(str(path), plugin=None)  # what File > Open and drag-and-drop do
    wait(qtbot, w)
    assert w.params.fs == FS and w.params.tau_decay == pytest.approx(0.8)
    (msg,) = notes["warning"]
    assert "20 Hz" in msg and "30 Hz" in msg and "lambda" in msg
    assert any("fs 30 Hz" in m for m in notes["info"])  # what was applied, not the file's


def test_open_before_the_data_then_the_recordings_rate_with_a_warning(
        make_napari_viewer, qtbot, notes, tmp_path):
    viewer = make_napari_viewer()
    viewer.open(str(_file_at(tmp_path, 20.0)), plugin=None)
    w = open_tuner(viewer)
    assert w.params.fs == 20.0  # no data yet: the file's rate
    movie, labels, _ = recording()
    viewer.add_image(movie, name="movie", metadata={"catune": {"fs": FS}})
    viewer.add_labels(labels, name="rois", metadata={"catune": {"fs": FS}})
    qtbot.waitUntil(lambda: w.session.source is not None, timeout=120_000)
    wait(qtbot, w)
    assert w.params.fs == FS
    assert any("20 Hz" in m and "30 Hz" in m for m in notes["warning"])


def _tiff(path, finterval):
    import tifffile

    movie, labels, _ = recording()
    tifffile.imwrite(path, movie, imagej=True, metadata={"axes": "TYX", "finterval": finterval})
    return labels


@pytest.mark.parametrize("load_first", [False, True])
def test_a_second_movie_brings_its_own_rate(make_napari_viewer, qtbot, notes, monkeypatch,
                                            tmp_path, load_first):
    """A rate taken from a movie file is nobody's choice: the next movie's
    replaces it, also when a parameter file was loaded before the first."""
    l1, l2 = _tiff(tmp_path / "m1.tif", 0.1), _tiff(tmp_path / "m2.tif", 0.04)  # 10, 25 Hz
    viewer = make_napari_viewer()
    w = open_tuner(viewer)
    if load_first:
        _load_by_dialog(qtbot, w, monkeypatch, _file_at(tmp_path, 20.0))
    for path, labels, fs in ((tmp_path / "m1.tif", l1, 10.0), (tmp_path / "m2.tif", l2, 25.0)):
        viewer.layers.clear()
        qtbot.waitUntil(lambda: w.session.source is None, timeout=60_000)
        viewer.open(str(path), plugin="napari")
        viewer.add_labels(labels, name="rois")
        qtbot.waitUntil(lambda: w.session.source is not None, timeout=120_000)
        wait(qtbot, w)
        assert w.params.fs == pytest.approx(fs)


def test_estimate_does_not_claim_other_threads_warnings(setup, qtbot, monkeypatch):
    """A worker's warning capture is process-wide: a warning raised meanwhile by
    another thread (the user's console, a monitoring thread, another plugin)
    must not be shown as the estimate's (audit aud40, finding 6)."""
    import threading
    import warnings

    from napari_catune import session as ses

    viewer, w, means, notes = setup
    started, release = threading.Event(), threading.Event()
    real = ses.estimate_job

    def held(*a, **k):
        started.set()
        release.wait(60)
        warnings.warn("estimate_params: no calcium transients stand out (ours)", UserWarning)
        return real(*a, **k)

    monkeypatch.setattr(ses, "estimate_job", held)
    qtbot.mouseClick(w.controls.estimate_btn, Qt.LeftButton)
    qtbot.waitUntil(started.is_set, timeout=60_000)
    warnings.warn("unclosed file <_io.TextIOWrapper name='/proc/self/status'>", ResourceWarning)
    warnings.warn("a foreign plugin's warning", UserWarning)
    release.set()
    qtbot.waitUntil(lambda: w.actions.estimate_worker is None, timeout=120_000)
    wait(qtbot, w)
    said = " | ".join(notes["warning"])
    assert "no calcium transients stand out (ours)" in said  # the estimator's own still shown
    assert "unclosed file" not in said and "foreign plugin" not in said
