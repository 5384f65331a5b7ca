"""napari-catune's persisted settings, and the frame rate of a TIFF movie, in a real viewer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_catune._qt import settings as st
from napari_catune.params import TuningParams, save_params

from _widgets import (  # noqa: F401 - fixtures
    FS, notes, open_tuner, recording, setup, viewer_with_recording, wait,
)


# ------------------------------------------------------------ the settings file (no Qt)
def test_settings_round_trip_and_atomic_write(_catune_settings, monkeypatch):
    written = []
    real = st.atomic_write_text
    monkeypatch.setattr(st, "atomic_write_text", lambda p, t: written.append(p) or real(p, t))
    a = st.load()
    assert a.path == _catune_settings
    assert (a.kernel_mode, a.baseline, a.overlay) == ("tau", None, "activity")
    a.kernel_mode = "shape"
    a.baseline = "rolling"
    a.overlay = "fit"
    a.set_folder_of("params", _catune_settings.parent / "p.json")
    assert written and set(written) == {_catune_settings}
    # (no temporary file left; the lock file beside it is empty)
    assert sorted(p.name for p in _catune_settings.parent.iterdir()) == sorted(
        [_catune_settings.name] + [f".{_catune_settings.name}.lock"] * (st.fcntl is not None))
    b = st.load()
    assert (b.kernel_mode, b.baseline, b.overlay) == ("shape", "rolling", "fit")
    assert b.folder("params") == str(_catune_settings.parent)
    assert b.folder("events") == ""
    with pytest.raises(ValueError, match="kernel_mode"):
        b.kernel_mode = "sideways"


def test_two_tuners_writing_other_keys_keep_each_others(_catune_settings):
    """Each tuner loads the file once (two viewers, or two napari processes); a
    write changes only its own key in the file as it is then (revt41 #4)."""
    a, b = st.load(), st.load()
    b.overlay = "fit"
    b.kernel_mode = "shape"
    b.set_folder_of("events", _catune_settings.parent / "ev.csv")
    a.fold = {"shown": True}  # a toggle in the other tuner, whose copy is stale
    a.set_folder_of("params", _catune_settings.parent / "sub" / "p.json")
    a.baseline = "drift"
    on_disk = json.loads(_catune_settings.read_text())
    assert on_disk == {
        "overlay": "fit", "kernel_mode": "shape", "fold": {"shown": True}, "baseline": "drift",
        "folders": {"events": str(_catune_settings.parent),
                    "params": str(_catune_settings.parent / "sub")}}
    assert a.overlay == "fit" and a.kernel_mode == "shape"  # (a's copy refreshed by its write)
    b.overlay = "activity"  # and b's write keeps a's
    assert st.load().data == {**on_disk, "overlay": "activity"}
    with pytest.raises(ValueError, match="overlay"):
        a.overlay = "both"  # (validated as before: nothing written)
    assert st.load().overlay == "activity"


_WRITER = """
import sys
from napari_catune._qt import settings as st
s = st.load()                      # once, as a tuner does
key, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    if key == "fold":
        s.fold = {"shown": i % 2 == 0, "top": i + 1, "total": 5000}
    else:  # (the two kinds in turn: each merged into the file's folders)
        s.set_folder_of(("params", "events")[i % 2], f"/nowhere/d{i}/x.json")
print("done")
"""


def test_two_processes_writing_other_keys_keep_both(_catune_settings, tmp_path):
    import os
    import subprocess
    import sys

    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    env = dict(os.environ, NAPARI_CATUNE_SETTINGS=str(_catune_settings))
    n = 120
    procs = [subprocess.Popen([sys.executable, str(script), key, str(n)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for key in ("fold", "folders")]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    on_disk = json.loads(_catune_settings.read_text())
    # each process's last value is there, whichever wrote last
    assert on_disk == {"fold": {"shown": False, "top": n, "total": 5000},
                       "folders": {"params": f"/nowhere/d{n - 2}",
                                   "events": f"/nowhere/d{n - 1}"}}, on_disk


def test_a_folder_in_the_settings_files_place_is_not_an_error(tmp_path, caplog):
    """Settings are a convenience: an unwritable place is logged, never raised."""
    (tmp_path / "napari-catune.json").mkdir()
    a = st.Settings(tmp_path / "napari-catune.json")
    a.set_folder_of("params", tmp_path / "p.json")  # what a file dialog does
    a.kernel_mode = "shape"
    assert (tmp_path / "napari-catune.json").is_dir()
    assert "not saved" in caplog.text


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"kernel_mode": 3}'])
def test_a_broken_settings_file_is_ignored_with_a_warning(_catune_settings, text):
    _catune_settings.write_text(text)
    with pytest.warns(UserWarning, match="napari-catune settings"):
        s = st.load()
    assert s.kernel_mode == "tau"
    s.overlay = "fit"  # the next change rewrites a valid file
    assert json.loads(_catune_settings.read_text()) == {"overlay": "fit"}


def test_settings_live_beside_naparis_own(monkeypatch, tmp_path):
    from napari.settings import get_settings

    monkeypatch.delenv(st.ENV)
    cfg = get_settings().config_path
    if cfg is None:
        assert st.settings_path() is None
    else:
        assert st.settings_path() == cfg.parent / st.FILE_NAME


# ------------------------------------------------------------ the tuner keeps them
def test_choices_survive_a_napari_restart(make_napari_viewer, qtbot, notes, _catune_settings):
    viewer, _, _ = viewer_with_recording(make_napari_viewer, show=True)
    w = open_tuner(viewer)
    wait(qtbot, w)
    c = w.controls
    assert not c.shape_mode and w.overlay_mode.currentText() == "activity"
    c.kernel_mode.setCurrentIndex(1)   # peak / FWHM
    c.baseline.setCurrentText("rolling")
    w.overlay_mode.setCurrentText("fit")
    qtbot.waitUntil(lambda: w.params.baseline == "rolling")
    saved = json.loads(_catune_settings.read_text())
    assert saved == {"kernel_mode": "shape", "baseline": "rolling", "overlay": "fit"}
    viewer.close()
    # a new napari: a new viewer, a new session
    viewer2, _, _ = viewer_with_recording(make_napari_viewer, show=True)
    w2 = open_tuner(viewer2)
    wait(qtbot, w2)
    assert w2.controls.shape_mode
    assert w2.controls.kin_a.label.text().startswith("t_peak")
    assert w2.overlay_mode.currentText() == "fit"
    assert w2.params.baseline == "rolling"
    assert w2.controls.baseline.currentText() == "rolling"


def test_file_dialogs_open_in_the_last_folder(setup, qtbot, monkeypatch, tmp_path):
    from napari_catune._qt import actions

    viewer, w, means, notes = setup
    seen = []
    folder = tmp_path / "tuning"
    folder.mkdir()
    events = tmp_path / "ephys"
    events.mkdir()
    (events / "ev.csv").write_text("roi,time_s\n3,1.0\n")

    def save(parent, title, start, filt):
        seen.append(("save", start))
        return str(folder / "mine.json"), filt

    def open_(parent, title, start, filt):
        seen.append(("open", start))
        return (str(folder / "mine.json") if "parameters" in title else
                str(events / "ev.csv")), filt

    monkeypatch.setattr(actions.QFileDialog, "getSaveFileName", save)
    monkeypatch.setattr(actions.QFileDialog, "getOpenFileName", open_)
    w.controls.save_btn.click()
    assert (folder / "mine.json").exists()
    w.controls.load_btn.click()
    w.truth_btn.click()
    w.truth_btn.click()
    assert seen == [("save", "catune_params.json"), ("open", str(folder)),
                    ("open", ""), ("open", str(events))]
    # a new tuner (in another napari) starts there too
    assert st.load().folder("params") == str(folder)


# ------------------------------------------------------------ fs from a TIFF movie
def _tiff_movie(path, finterval):
    tifffile = pytest.importorskip("tifffile")
    movie, labels, means = recording()
    tifffile.imwrite(path, movie, imagej=True, metadata={"axes": "TYX", "finterval": finterval})
    return labels, means


def _open_tiff(make_napari_viewer, path, labels):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    viewer.open(str(path), plugin="napari")
    viewer.add_labels(labels, name="rois")
    assert viewer.layers[path.stem].source.path == str(path)
    return viewer


def test_tiff_frame_rate_is_taken_with_a_note(make_napari_viewer, qtbot, notes, tmp_path):
    path = tmp_path / "movie.tif"
    labels, _ = _tiff_movie(path, 0.05)   # 20 Hz
    viewer = _open_tiff(make_napari_viewer, path, labels)
    w = open_tuner(viewer)
    qtbot.waitUntil(lambda: w.session.source is not None, timeout=120_000)
    wait(qtbot, w)
    assert w.params.fs == pytest.approx(20.0)
    assert any("20 Hz" in m and "movie.tif" in m and "TIFF" in m for m in notes["info"]), notes


def test_tiff_frame_rate_does_not_override_a_chosen_fs(make_napari_viewer, qtbot, notes,
                                                       tmp_path):
    path = tmp_path / "movie.tif"
    labels, _ = _tiff_movie(path, 0.1)   # 10 Hz
    viewer = make_napari_viewer(show=True)
    w = open_tuner(viewer)               # opened first: the user sets fs by hand
    w.set_params(w.params.replace(fs=15.0))
    viewer.open(str(path), plugin="napari")
    viewer.add_labels(labels, name="rois")
    qtbot.waitUntil(lambda: w.session.source is not None, timeout=120_000)
    wait(qtbot, w)
    assert w.params.fs == 15.0
    assert any("10 Hz" in m and "keeping fs = 15 Hz" in m for m in notes["info"]), notes
