"""Pipeline outputs as a user opens them (round 41 audit, findings 4-6).

* CaImAn: the traces are C + YrA by default where the file stores YrA (C
  alone is CaImAn's denoised trace: its fits look perfect whatever the
  parameters), C where it does not (said); C stays reachable, in the CLI
  (--caiman-trace C) and in napari (CATUNE_CAIMAN_TRACE=C).
* suite2p: a folder CaTune is offered for but cannot read (several planes,
  neither suite2p nor Minian) says why in napari, not napari's "refused".
* suite2p combined/: the zeros suite2p pads a shorter plane with are NaN
  padding, so its rows give the plane folder's results.
"""

from __future__ import annotations

import json
import shutil
import sys
import traceback

import numpy as np
import pytest

from napari_catune import _reader_pipelines as rp
from napari_catune import cli
from napari_catune.loaders import CAIMAN_TRACE_ENV, load_caiman_data, load_suite2p
from napari_catune.params import TuningParams, save_params
from test_loaders import make_caiman, make_suite2p

FS = 10.0


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(CAIMAN_TRACE_ENV, raising=False)
    monkeypatch.setattr(rp, "_PICKLE_ANSWERS", {})


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _without_yra(path):
    import h5py

    with h5py.File(path, "a") as h5:
        del h5["estimates/YrA"]
        h5["estimates/YrA"] = "NoneType"  # as CaImAn stores None


# ---------------------------------------------------------------- CaImAn


def test_caiman_default_is_c_plus_yra_in_the_cli(capsys, tmp_path):
    ref = make_caiman(tmp_path / "cnmf.hdf5", fr=FS)
    params = tmp_path / "params.json"
    save_params(TuningParams(0.1, 0.8, FS, 0.05), params)
    runs = {}
    for name, extra in (("default", ()), ("C", ("--caiman-trace", "C"))):
        out = tmp_path / f"{name}.npz"
        code, _, err = _run(capsys, "deconvolve", tmp_path / "cnmf.hdf5", "--params", params,
                            "-o", out, *extra)
        assert code == 0, err
        meta = json.loads((tmp_path / f"{name}_metadata.json").read_text())
        runs[name] = (meta["input_traces"], np.load(out)["activity"])
    # the provenance says which traces, and they differ: C + YrA by default, C on request
    assert runs["default"][0] == "C + YrA" and runs["C"][0] == "C"
    assert not np.allclose(runs["default"][1], runs["C"][1])
    code, out, err = _run(capsys, "info", tmp_path / "cnmf.hdf5")
    assert code == 0, err
    assert "traces       C + YrA\n" in out
    assert "--caiman-trace C" in out and f"{CAIMAN_TRACE_ENV}=C" in out  # how to get C
    data = load_caiman_data(tmp_path / "cnmf.hdf5")
    np.testing.assert_array_equal(data.traces, (ref["C"] + ref["YrA"])[[0, 2]])


def test_caiman_without_yra_falls_back_to_c_and_says_so(capsys, tmp_path):
    ref = make_caiman(tmp_path / "cnmf.hdf5", fr=FS)
    _without_yra(tmp_path / "cnmf.hdf5")
    data = load_caiman_data(tmp_path / "cnmf.hdf5")
    assert data.kind == "C"
    np.testing.assert_array_equal(data.traces, ref["C"][[0, 2]])
    assert any("no residuals" in n and "already denoised" in n for n in data.notes)
    code, out, err = _run(capsys, "info", tmp_path / "cnmf.hdf5")
    assert code == 0, err
    assert "traces       C\n" in out and "already denoised" in out
    # asked for explicitly, C + YrA without YrA is an error naming the way out
    code, _, err = _run(capsys, "info", tmp_path / "cnmf.hdf5", "--caiman-trace", "C+YrA")
    assert code == 2 and "--caiman-trace C" in err


def test_caiman_reader_default_and_the_env_choice(tmp_path, monkeypatch):
    ref = make_caiman(tmp_path / "cnmf.hdf5", fr=FS)
    cat = rp.read_caiman(str(tmp_path / "cnmf.hdf5"))[-1][1]["metadata"]["catune"]
    assert cat["kind"] == "C + YrA"
    np.testing.assert_array_equal(cat["traces"], (ref["C"] + ref["YrA"])[[0, 2]])
    assert any(f"{CAIMAN_TRACE_ENV}=C" in n for n in cat["notes"])  # how to get C
    monkeypatch.setenv(CAIMAN_TRACE_ENV, "C")
    cat = rp.read_caiman(str(tmp_path / "cnmf.hdf5"))[-1][1]["metadata"]["catune"]
    assert cat["kind"] == "C"
    np.testing.assert_array_equal(cat["traces"], ref["C"][[0, 2]])
    monkeypatch.setenv(CAIMAN_TRACE_ENV, "S")
    with pytest.raises(ValueError, match=f"{CAIMAN_TRACE_ENV}='S' is not a CaImAn trace"):
        rp.read_caiman(str(tmp_path / "cnmf.hdf5"))


def test_caiman_in_napari(make_napari_viewer, tmp_path, monkeypatch):
    import napari.utils.notifications as nt

    said = []
    monkeypatch.setattr(nt, "show_warning", lambda m: said.append(str(m)))
    monkeypatch.setattr(nt, "show_info", lambda m: None)
    ref = make_caiman(tmp_path / "cnmf.hdf5", fr=FS)
    make_caiman(tmp_path / "noyra.hdf5", fr=FS)
    _without_yra(tmp_path / "noyra.hdf5")
    viewer = make_napari_viewer(show=False)
    layers = viewer.open(str(tmp_path / "cnmf.hdf5"), plugin="napari-catune")
    cat = layers[-1].metadata["catune"]
    assert layers[-1].name == "cnmf ROIs" and cat["kind"] == "C + YrA"
    np.testing.assert_array_equal(cat["traces"], (ref["C"] + ref["YrA"])[[0, 2]])
    assert said == []
    layers = viewer.open(str(tmp_path / "noyra.hdf5"), plugin="napari-catune")
    assert layers[-1].metadata["catune"]["kind"] == "C"
    assert len(said) == 1 and "already denoised" in said[0] and "noyra.hdf5" in said[0]
    monkeypatch.setenv(CAIMAN_TRACE_ENV, "C")
    layers = viewer.open(str(tmp_path / "cnmf.hdf5"), plugin="napari-catune")
    np.testing.assert_array_equal(layers[-1].metadata["catune"]["traces"], ref["C"][[0, 2]])


# ---------------------------------------------------------------- suite2p folders


def _two_planes(tmp_path):
    plane0 = make_suite2p(tmp_path)
    shutil.copytree(plane0, plane0.parent / "plane1")
    return plane0.parent


def test_folders_catune_refuses_say_why(tmp_path):
    top = _two_planes(tmp_path)
    with pytest.raises(ValueError, match=r"holds 2 planes \(plane0, plane1\); pass one plane "
                                         r"folder, e\.g\. .*plane0"):
        rp.get_suite2p_reader(str(top))(str(top))
    assert rp.get_minian_reader(str(top)) is not None  # (not reached: suite2p's comes first)
    half = tmp_path / "half"
    half.mkdir()
    np.save(half / "F.npy", np.zeros((2, 5)))
    with pytest.raises(ValueError, match="is not a suite2p plane folder: Fneu.npy not found"):
        rp.get_suite2p_reader(str(half))(str(half))
    other = tmp_path / "pictures"
    other.mkdir()
    assert rp.get_suite2p_reader(str(other)) is None
    with pytest.raises(ValueError, match="is not a folder CaTune reads: it opens a suite2p plane"):
        rp.get_minian_reader(str(other))(str(other))


def test_top_suite2p_folder_message_reaches_the_napari_user(make_napari_viewer, tmp_path,
                                                             qtbot, monkeypatch):
    from napari._qt.dialogs import qt_reader_dialog as dialog
    from napari.utils.notifications import notification_manager
    from qtpy.QtCore import QTimer

    top = _two_planes(tmp_path)
    viewer = make_napari_viewer(show=False)
    want = r"holds 2 planes \(plane0, plane1\); pass one plane folder"
    # from the console or a script
    with pytest.raises(ValueError, match=want):
        viewer.open(str(top), plugin="napari-catune")
    other = tmp_path / "pictures"
    other.mkdir()
    with pytest.raises(ValueError, match="is not a folder CaTune reads"):
        viewer.open(str(other), plugin="napari-catune")
    assert len(viewer.layers) == 0

    # File > Open Folder: several readers take a folder, so napari asks; the user
    # picks CaTune, and the error goes to napari's error notification
    chosen = []

    def get_user_choices(self):
        items = [self.reader_btn_group.buttons()[i].text()
                 for i in range(len(self.reader_btn_group.buttons()))]
        chosen.append(items)
        return next(t for t in items if "catune" in t.lower()), False

    monkeypatch.setattr(dialog.QtReaderDialog, "get_user_choices", get_user_choices)
    shown = []
    notification_manager.notification_ready.connect(shown.append)
    try:
        with notification_manager:  # the hooks napari installs when it runs
            QTimer.singleShot(0, lambda: viewer.window._qt_viewer._qt_open([str(top)], stack=False))
            qtbot.waitUntil(lambda: bool(shown), timeout=10_000)
    finally:
        notification_manager.notification_ready.disconnect(shown.append)
    text = [str(n.message) for n in shown]
    # (the exceptions' tracebacks hold the viewer: let it go, or it counts as leaked)
    for n in shown:
        exc = getattr(n, "exception", None)
        while exc is not None:
            if exc.__traceback__ is not None:
                traceback.clear_frames(exc.__traceback__)
            exc.__traceback__ = None
            exc = exc.__context__ or exc.__cause__
        if n in notification_manager.records:
            notification_manager.records.remove(n)
    shown.clear()
    sys.last_type = sys.last_value = sys.last_traceback = None
    assert chosen, "napari did not ask which reader"
    assert any("holds 2 planes (plane0, plane1); pass one plane folder" in t for t in text), text
    assert not any("refused the file" in t for t in text)


# ---------------------------------------------------------------- suite2p combined/


def _combined(tmp_path, short: int = 7):
    """plane0 (T frames) and plane1 (T - short frames) with combined/ made as
    suite2p's io/save.py combined() makes it: plane1's rows zero-padded."""
    plane0 = make_suite2p(tmp_path, seed=0)
    root = plane0.parent
    (root / "plane1").mkdir()
    other = make_suite2p(tmp_path / "p1", seed=3)
    T = np.load(plane0 / "F.npy").shape[1]
    for f in ("F.npy", "Fneu.npy", "spks.npy"):
        np.save(root / "plane1" / f, np.load(other / f)[:, : T - short])
    for f in ("iscell.npy", "stat.npy", "ops.npy"):
        shutil.copy(other / f, root / "plane1" / f)
    comb = root / "combined"
    comb.mkdir()
    for f in ("F.npy", "Fneu.npy", "spks.npy"):
        a, b = np.load(plane0 / f), np.load(root / "plane1" / f)
        b = np.concatenate([b, np.zeros((b.shape[0], T - b.shape[1]), "float32")], axis=1)
        np.save(comb / f, np.concatenate([a, b]))
    np.save(comb / "iscell.npy", np.concatenate([np.load(plane0 / "iscell.npy"),
                                                 np.load(root / "plane1" / "iscell.npy")]))
    stat = [dict(s, iplane=0) for s in np.load(plane0 / "stat.npy", allow_pickle=True)]
    stat += [dict(s, iplane=1) for s in np.load(other / "stat.npy", allow_pickle=True)]
    np.save(comb / "stat.npy", np.array(stat, dtype=object), allow_pickle=True)
    shutil.copy(other / "ops.npy", comb / "ops.npy")
    return root, T


def test_combined_zero_padding_is_nan_padding(tmp_path):
    root, T = _combined(tmp_path)
    comb = load_suite2p(root / "combined", allow_pickle=True)
    p1 = load_suite2p(root / "plane1", allow_pickle=True)
    n0 = 3  # plane0's cells (iscell 1, 0, 1, 1, 0)
    np.testing.assert_array_equal(comb.roi_ids, [1, 3, 4, 6, 8, 9])
    tail = comb.traces[n0:]
    assert np.isnan(tail[:, T - 7:]).all() and np.isfinite(tail[:, : T - 7]).all()
    np.testing.assert_array_equal(tail[:, : T - 7], p1.traces)
    assert np.isfinite(comb.traces[:n0]).all()  # plane0's rows are whole
    note = next(n for n in comb.notes if n.startswith("suite2p zero padding"))
    assert "3 rows end" in note and f"{T - 7} of {T} frames" in note
    planes = next(n for n in comb.notes if n.startswith("ROI ids by plane"))
    assert "plane0 1, 3-4" in planes and "plane1 6, 8-9" in planes
    # a plane folder's rows are left alone
    assert not any("zero padding" in n for n in p1.notes)


def test_combined_results_equal_the_plane_folders(capsys, tmp_path):
    root, T = _combined(tmp_path)
    params = tmp_path / "params.json"
    save_params(TuningParams(0.1, 0.8, 15.0, 0.05, baseline="drift"), params)
    out = {}
    for name in ("plane1", "combined"):
        code, _, err = _run(capsys, "deconvolve", root / name, "--allow-pickle", "--params",
                            params, "-o", tmp_path / f"{name}.npz")
        assert code == 0, err
        out[name] = np.load(tmp_path / f"{name}.npz")
    c, p = out["combined"], out["plane1"]
    rows = np.isin(c["roi_ids"], [6, 8, 9])
    for key in ("activity", "fit"):
        assert np.isnan(c[key][rows][:, T - 7:]).all()
        np.testing.assert_allclose(c[key][rows][:, : T - 7], p[key], rtol=1e-9, atol=1e-9)


def test_plane_folder_trailing_zeros_are_data(tmp_path):
    """A lone plane folder is never zero-padded by suite2p: frames where F and
    Fneu are exactly 0 at its end (a closed shutter, clipped data) stay data,
    with no note claiming suite2p padded them (revp41 #3)."""
    plane = make_suite2p(tmp_path, seed=0)
    F, N = np.load(plane / "F.npy"), np.load(plane / "Fneu.npy")
    F[:, -20:] = 0
    N[:, -20:] = 0
    np.save(plane / "F.npy", F)
    np.save(plane / "Fneu.npy", N)
    d = load_suite2p(plane, allow_pickle=True)
    assert np.isfinite(d.traces).all()
    np.testing.assert_array_equal(d.traces[:, -20:], 0.0)
    assert not any("zero padding" in n for n in d.notes)
