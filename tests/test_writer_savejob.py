"""File > IO Utilities > Save CaTune results... writes in a worker thread
(``_qt/savejob.py``): the event loop keeps turning, what is written is what the
layer held when the save was asked for, a cancel or a failure leaves no file."""

from __future__ import annotations

import errno
import threading

import numpy as np
import pytest
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFileDialog

from napari_catune import results as _results
from napari_catune._writer import _DIALOG_FILTERS, save_results_dialog, write_results_npz
from napari_catune.params import TuningParams

from _widgets import notes  # noqa: F401 - fixture

PARAMS = TuningParams(tau_rise=0.05, tau_decay=0.6, fs=20.0, lam=0.4)
IDS = np.array([3, 5, 9])
GATE_TIMEOUT = 60  # s: only so that a synchronous save (the old dialog) cannot hang the test
WAIT = 60_000  # ms: condition waits, generous on a loaded machine


def _layer(viewer, seed=0):
    """A Labels layer holding results, stored as Apply to all stores them."""
    rng = np.random.default_rng(seed)
    act = np.abs(rng.standard_normal((3, 400)))
    lab = np.zeros((20, 20), dtype=np.int32)
    for k, i in enumerate(IDS):
        lab[2 + 6 * k: 6 + 6 * k, 2:6] = i
    layer = viewer.add_labels(lab, name="cells", metadata={"catune": {
        "fs": PARAMS.fs, "roi_ids": IDS, "params": PARAMS.to_dict(),
        "results": {"activity": act, "reconvolution": act + 1.0, "baseline": np.ones(3),
                    "converged": np.ones(3, bool), "roi_ids": IDS,
                    "params": PARAMS.to_dict()}}})
    layer.features = {"snr": rng.random(3), "converged": np.ones(3, bool)}
    return layer


def _pick(monkeypatch, path):
    chosen = next(f for f, e in _DIALOG_FILTERS if path.suffix == e)
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(path), chosen)))


def _npz(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: np.array(z[k]) for k in z.files}


def _same_npz(a, b):
    za, zb = _npz(a), _npz(b)
    assert sorted(za) == sorted(zb)
    for k in za:
        np.testing.assert_array_equal(za[k], zb[k], err_msg=k)


class _Blocked:
    """``np.savez`` of the results writer, held after its first bytes (the temporary
    file exists) until the test opens the gate; it records the thread it ran on."""

    def __init__(self, monkeypatch, fail=None):
        self.gate, self.entered = threading.Event(), threading.Event()
        self.thread, self.fail = None, fail
        real = np.savez

        def savez(fh, **arrays):
            self.thread = threading.current_thread()
            fh.write(b"PK")  # a half file in the temporary file
            self.entered.set()
            self.gate.wait(GATE_TIMEOUT)
            if self.fail is not None:
                raise self.fail
            fh.seek(0)
            return real(fh, **arrays)

        monkeypatch.setattr(_results.np, "savez", savez)


def _held_save(monkeypatch, qtbot, out, fail=None):
    """Save CaTune results... to ``out`` (from the dialog), its write held by the test."""
    _pick(monkeypatch, out)
    blocked = _Blocked(monkeypatch, fail=fail)
    job = save_results_dialog()
    qtbot.waitUntil(blocked.entered.is_set, timeout=WAIT)
    return job, blocked


def _temps(folder):
    return [p.name for p in folder.iterdir() if ".catune-" in p.name]


def test_the_write_runs_off_the_gui_thread(make_napari_viewer, qtbot, tmp_path, monkeypatch,
                                           notes):
    viewer = make_napari_viewer()
    layer = _layer(viewer)
    ref = tmp_path / "sync.npz"  # what napari's synchronous writer writes
    write_results_npz(str(ref), layer.data, {"name": layer.name, "metadata": layer.metadata,
                                             "features": layer.features})
    out = tmp_path / "res.npz"
    _pick(monkeypatch, out)
    blocked = _Blocked(monkeypatch)
    ticks = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(blocked.entered.is_set()))
    timer.start()
    job = save_results_dialog()
    # while the write is held, the event loop keeps running the timer
    qtbot.waitUntil(lambda: sum(ticks) >= 3, timeout=WAIT)
    assert blocked.thread is not threading.main_thread()
    assert _temps(tmp_path) and not out.exists()
    blocked.gate.set()
    qtbot.waitUntil(job.done, timeout=WAIT)
    timer.stop()
    assert job.written == [str(out)] and job.thread is blocked.thread
    _same_npz(out, ref)
    assert _temps(tmp_path) == []
    assert notes["info"][-1] == "Saved CaTune results: res.npz"
    assert any(m.startswith("Saving res.npz...") for m in notes["info"])


def test_what_is_written_is_what_the_layer_held(make_napari_viewer, qtbot, tmp_path,
                                                monkeypatch, notes):
    # Apply to all again, an ROI painted, the layer deleted: the file is the one asked for
    viewer = make_napari_viewer()
    layer = _layer(viewer)
    ref = tmp_path / "sync.npz"
    write_results_npz(str(ref), layer.data, {"name": layer.name, "metadata": layer.metadata,
                                             "features": layer.features})
    job, blocked = _held_save(monkeypatch, qtbot, tmp_path / "res.npz")
    other = _layer(viewer, seed=1)  # new results, stored as Apply to all stores them
    layer.metadata["catune"]["results"] = other.metadata["catune"]["results"]
    layer.metadata["catune"]["params"] = TuningParams(
        tau_rise=0.1, tau_decay=1.0, fs=20.0, lam=0.1).to_dict()
    layer.features = {"snr": np.zeros(3), "converged": np.zeros(3, bool)}
    layer.data[:] = 0  # ROIs erased
    viewer.layers.remove(layer)
    blocked.gate.set()
    qtbot.waitUntil(job.done, timeout=WAIT)
    assert job.error is None and job.written == [str(tmp_path / "res.npz")]
    _same_npz(tmp_path / "res.npz", ref)


def test_cancel_leaves_the_earlier_file_and_no_temporary_file(make_napari_viewer, qtbot,
                                                              tmp_path, monkeypatch, notes):
    from napari._qt.widgets.qt_progress_bar import QtLabeledProgressBar

    viewer = make_napari_viewer()
    _layer(viewer)
    out = tmp_path / "res.npz"
    out.write_bytes(b"earlier")
    job, blocked = _held_save(monkeypatch, qtbot, out)
    # the user clicks Cancel on the save's bar in napari's activity panel
    dialog = viewer.window._qt_window._activity_dialog
    bars = [b for b in dialog.findChildren(QtLabeledProgressBar)
            if b.description_label.text().startswith("Saving res.npz")]
    assert len(bars) == 1 and not bars[0].cancel_button.isHidden()
    bars[0].cancel_button.click()
    qtbot.waitUntil(job._cancel.is_set, timeout=WAIT)
    blocked.gate.set()
    qtbot.waitUntil(job.done, timeout=WAIT)
    assert job.cancelled and job.written == []
    assert out.read_bytes() == b"earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res.npz"]  # no temporary file
    assert notes["info"][-1] == ("Save of res.npz cancelled: nothing was written "
                                 "(the earlier file is kept).")
    assert notes["error"] == []


@pytest.mark.parametrize("existed", [False, True])
def test_a_failed_write_leaves_no_file(make_napari_viewer, qtbot, tmp_path, monkeypatch, notes,
                                       existed):
    viewer = make_napari_viewer()
    _layer(viewer)
    out = tmp_path / "res.npz"
    if existed:
        out.write_bytes(b"earlier")
    job, blocked = _held_save(monkeypatch, qtbot, out,
                              fail=OSError(errno.ENOSPC, "No space left on device"))
    blocked.gate.set()
    qtbot.waitUntil(job.done, timeout=WAIT)
    assert job.written == [] and isinstance(job.error, OSError)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["res.npz"] if existed else [])
    if existed:
        assert out.read_bytes() == b"earlier"
    (msg,) = notes["error"]
    assert msg.startswith("CaTune results not saved to res.npz: [Errno 28] No space left")
    assert "Free some space" in msg
    assert ("Nothing was written (the earlier file is kept)." in msg) == existed


def test_a_second_save_while_one_runs_is_refused(make_napari_viewer, qtbot, tmp_path,
                                                 monkeypatch, notes):
    viewer = make_napari_viewer()
    _layer(viewer)
    out = tmp_path / "res.npz"
    job, blocked = _held_save(monkeypatch, qtbot, out)
    asked = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: asked.append(a) or ("", "")))
    assert save_results_dialog() is None
    assert asked == []  # said before a file is chosen
    (msg,) = notes["warning"]
    assert "being saved to res.npz" in msg and "then save again" in msg
    blocked.gate.set()
    qtbot.waitUntil(job.done, timeout=WAIT)
    assert job.written == [str(out)]
    _pick(monkeypatch, tmp_path / "again.npz")  # once it ended, saving works again
    job2 = save_results_dialog()
    qtbot.waitUntil(job2.done, timeout=WAIT)
    assert job2.written == [str(tmp_path / "again.npz")]


def test_closing_the_viewer_during_a_save_abandons_it_cleanly(make_napari_viewer, qtbot,
                                                               tmp_path, monkeypatch, notes,
                                                               capfd):
    # napari cancels its running workers when the window closes (after asking the user,
    # who sees the save among the running tasks): no file, no temporary file, no error
    viewer = make_napari_viewer()
    _layer(viewer)
    out = tmp_path / "res.npz"
    out.write_bytes(b"earlier")
    job, blocked = _held_save(monkeypatch, qtbot, out)
    tasks = viewer.window._task_status_manager.get_status()
    assert any("saving CaTune results to res.npz" in t for t in tasks), tasks
    viewer.close()
    blocked.gate.set()
    qtbot.waitUntil(job.done, timeout=WAIT)
    assert job.cancelled and job.written == []
    assert out.read_bytes() == b"earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res.npz"]
    assert notes["info"][-1].startswith("Save of res.npz cancelled (the viewer was closed)")
    assert notes["error"] == []
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Error" not in err, err


def test_rois_painted_during_an_nwb_save_are_not_what_it_writes(make_napari_viewer, qtbot,
                                                                tmp_path, monkeypatch, notes):
    # the label image (the NWB footprints) and the features are edited in place, not replaced
    pytest.importorskip("pynwb")
    from napari_catune import nwb
    from napari_catune.nwb import load_nwb
    from napari_catune.results import load_results

    viewer = make_napari_viewer()
    layer = _layer(viewer)
    drawn, snr = layer.data.copy(), np.array(layer.features["snr"])
    out = tmp_path / "res.nwb"
    _pick(monkeypatch, out)
    gate, entered, real = threading.Event(), threading.Event(), nwb.save_results_nwb

    def held(*a, **k):
        entered.set()
        gate.wait(GATE_TIMEOUT)
        return real(*a, **k)

    monkeypatch.setattr(nwb, "save_results_nwb", held)
    job = save_results_dialog()
    qtbot.waitUntil(entered.is_set, timeout=WAIT)
    layer.data[:] = 0  # the ROIs erased with the brush, in place
    layer.refresh()
    layer.features.loc[:, "snr"] = -1.0
    gate.set()
    qtbot.waitUntil(job.done, timeout=WAIT)
    assert job.error is None and job.written == [str(out)]
    np.testing.assert_array_equal(load_nwb(out, series="catune/Deconvolution/activity").labels,
                                  drawn)
    np.testing.assert_array_equal(load_results(out)["features"]["snr"], snr)


class _Stop(Exception):
    pass


@pytest.mark.parametrize("ext", [".npz", ".csv"])
def test_a_watched_write_reports_its_progress_and_stops_mid_file(tmp_path, ext):
    # what the save's progress bar and Cancel rest on (_atomic.watched): chunks of a
    # .npz (numpy's, at most 16 MiB), rows of a .csv; a stop leaves no file
    from napari_catune import _atomic
    from napari_catune.results import save_results

    act = np.abs(np.random.default_rng(2).standard_normal((3, 2000)))
    what = dict(activity=act, fit=act + 1.0, baseline=np.ones(3), roi_ids=IDS, fs=PARAMS.fs,
                params=PARAMS)
    sizes, published = [], []
    with _atomic.watched(lambda n: sizes.append(n), published.append):
        written = save_results(tmp_path / f"r{ext}", **what)
    assert [str(p) for p in published] == [str(p) for p in written]
    total = (tmp_path / f"r{ext}").stat().st_size
    assert sum(sizes) >= 0.9 * total  # (a zip's central directory is written by seek)
    assert len([n for n in sizes if n]) >= (3 if ext == ".npz" else 2000)  # one per array/row

    def stop_midway(n):
        if n and len(sizes) > 10:
            raise _Stop
        sizes.append(n)

    sizes.clear()
    with pytest.raises(_Stop), _atomic.watched(stop_midway):
        save_results(tmp_path / f"s{ext}", **what)
    assert not (tmp_path / f"s{ext}").exists() and _temps(tmp_path) == []
