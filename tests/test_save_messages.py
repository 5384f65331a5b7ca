"""What the tuner says when a parameter file is missing or a folder cannot be written
(usr round 34: "not found: ... not found", the temporary file's name)."""

from __future__ import annotations

import errno

import numpy as np
import pytest
from qtpy.QtWidgets import QFileDialog

from napari_catune import _atomic
from napari_catune.params import TuningParams, save_params

from _widgets import notes, setup  # noqa: F401 - fixtures


def _read_only(monkeypatch):
    """The folder refuses new files, as a read-only file system does: mkstemp raises
    EROFS naming the temporary file it tried to create."""
    def refuse(suffix=None, prefix=None, dir=None, text=False):
        raise OSError(errno.EROFS, "Read-only file system", f"{dir}/{prefix}x1y2z3{suffix}")

    monkeypatch.setattr(_atomic.tempfile, "mkstemp", refuse)


def _pick(monkeypatch, path):
    chosen = staticmethod(lambda *a, **k: (str(path), ""))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", chosen)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", chosen)


def test_missing_parameter_file_is_said_once(setup, monkeypatch, tmp_path):
    viewer, w, _, notes = setup
    missing = tmp_path / "none.json"
    _pick(monkeypatch, missing)
    w.controls.load_btn.click()
    assert len(notes["error"]) == 1
    msg = notes["error"][0]
    assert f"not found: {missing}." in msg and msg.lower().count("not found") == 1, msg
    assert "Errno" not in msg and "None" not in msg, msg


def test_read_only_folder_names_the_target_not_the_temporary_file(setup, monkeypatch, tmp_path):
    viewer, w, _, notes = setup
    target = tmp_path / "p.json"
    _pick(monkeypatch, target)
    _read_only(monkeypatch)
    w.controls.save_btn.click()
    assert len(notes["error"]) == 1
    msg = notes["error"][0]
    assert ".catune-" not in msg and "x1y2z3" not in msg, msg
    assert f"p.json in {tmp_path}: the folder is not writable (Read-only file system)" in msg
    assert not target.exists()


def test_failed_save_clears_the_earlier_saved_status(setup, monkeypatch, tmp_path):
    # aud36 finding 12: after a failed save the status line still said
    # "Parameters saved to <the previous file>"
    viewer, w, _, notes = setup
    first = tmp_path / "first.json"
    _pick(monkeypatch, first)
    w.controls.save_btn.click()
    assert w.status.text().startswith(f"Parameters saved to {first}")
    _pick(monkeypatch, tmp_path / "p.json")
    _read_only(monkeypatch)
    w.controls.save_btn.click()
    assert len(notes["error"]) == 1
    assert "Parameters saved" not in w.status.text()
    assert w.status.text() == notes["error"][0]  # names p.json and why, as the error does


def test_read_only_error_keeps_errno_and_target():
    # callers that look at errno (the CLI's disk-full report) still can
    e = _atomic._folder_error(OSError(errno.EROFS, "Read-only file system", "/d/.p.tmp"),
                              "/d/p.json")
    assert isinstance(e, PermissionError) and e.errno == errno.EROFS and e.filename == "/d/p.json"
    full = _atomic._folder_error(OSError(errno.ENOSPC, "No space left on device", "/d/.p.tmp"),
                                 "/d/p.json")
    assert full.errno == errno.ENOSPC and full.filename == "/d/p.json"


def test_results_dialog_on_a_read_only_folder(make_napari_viewer, monkeypatch, notes, tmp_path,
                                              qtbot):
    from napari_catune._writer import _DIALOG_FILTERS, save_results_dialog

    p = TuningParams(tau_rise=0.04, tau_decay=0.9, fs=12.5, lam=0.3)
    ids = np.array([1, 2])
    viewer = make_napari_viewer()
    viewer.add_labels(np.array([[1, 2]], np.int32), name="cells", metadata={"catune": {
        "params": p.to_dict(), "results": {"activity": np.ones((2, 5)), "roi_ids": ids,
                                           "params": p.to_dict()}}})
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(
        lambda *a, **k: (str(tmp_path / "res.npz"), _DIALOG_FILTERS[0][0])))
    _read_only(monkeypatch)
    job = save_results_dialog()  # the folder is tried in the worker thread
    qtbot.waitUntil(job.done, timeout=120_000)
    assert job.written == [] and not (tmp_path / "res.npz").exists()
    assert len(notes["error"]) == 1
    assert f"cannot create res.npz in {tmp_path}: the folder is not writable" in notes["error"][0]


@pytest.mark.parametrize("exists", [False, True])
def test_saving_still_works(tmp_path, exists):
    target = tmp_path / "p.json"
    if exists:
        target.write_text("{}")
    save_params(TuningParams(tau_rise=0.04, tau_decay=0.9, fs=12.5, lam=0.3), target)
    assert target.read_text().startswith("{")
