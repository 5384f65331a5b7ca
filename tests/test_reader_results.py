"""Our own results files and cellpose's ``_seg.npy`` opened with the napari reader.

A results ``.npz``/``.npy`` is refused with what it is and what to open
instead (it held no reason before, or opened the activity as if it were
fluorescence); a cellpose ``_seg.npy`` (a pickled dict) opens its masks as
Labels once the user allows the pickle.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_catune import _reader
from napari_catune import _reader_pipelines as rp
from napari_catune.params import TuningParams
from napari_catune.results import save_results

PLUGIN = "napari-catune"
PARAMS = TuningParams(0.05, 0.4, 20.0, 0.2)


@pytest.fixture(autouse=True)
def _fresh_answers(monkeypatch):
    monkeypatch.setattr(rp, "_PICKLE_ANSWERS", {})


def _results(n=3, t=60):
    rng = np.random.default_rng(4)
    act = np.maximum(rng.normal(size=(n, t)), 0.0)
    return dict(activity=act, fit=act + 1.0, baseline=np.ones(n), roi_ids=np.arange(1, n + 1),
                fs=20.0, params=PARAMS, features={"snr": np.ones(n)})


def _saved(tmp_path, name):
    return str(save_results(tmp_path / name, **_results())[0])


def _refusal_of(path):
    reader = _reader.get_traces_reader(path)
    assert reader is not None, "napari would say only 'refused the file'"
    with pytest.raises(ValueError) as info:
        reader(path)
    return str(info.value)


def _says_what_to_do(msg, path):
    assert msg.startswith("CaTune results, not a recording: ") and path in msg
    assert "is a napari-catune results file" in msg and "3 cells x 60 frames" in msg
    assert "open the recording it was made from" in msg and "np.load(path)" in msg


# ---------------------------------------------------------------- results: plain reader calls


def test_results_npz_is_refused_with_a_reason(tmp_path):
    path = _saved(tmp_path, "res.npz")
    msg = _refusal_of(path)
    _says_what_to_do(msg, path)
    assert "load_results(path)" in msg and "np.load(path)['activity']" in msg


def test_cli_results_npz_is_refused_with_a_reason(tmp_path, capsys):
    from napari_catune import cli
    from napari_catune.params import save_params

    rng = np.random.default_rng(1)
    np.savez(tmp_path / "tr.npz", traces=rng.normal(size=(3, 60)) + 5, fs=20.0)
    save_params(PARAMS, tmp_path / "p.json")
    assert cli.main(["deconvolve", str(tmp_path / "tr.npz"), "--params", str(tmp_path / "p.json"),
                     "-o", str(tmp_path / "cli.npz"), "-q"]) == 0
    capsys.readouterr()
    path = str(tmp_path / "cli.npz")
    msg = _refusal_of(path)
    _says_what_to_do(msg, path)
    assert "converged" in msg  # the CLI's own fields are named


def test_results_npy_is_not_opened_as_fluorescence(tmp_path):
    path = _saved(tmp_path, "act.npy")
    msg = _refusal_of(path)
    _says_what_to_do(msg, path)
    assert "act_metadata.json says so" in msg
    # dropping its sidecar instead: the same answer
    side = str(tmp_path / "act_metadata.json")
    reader = _reader.get_params_reader(side)
    with pytest.raises(ValueError, match="CaTune results, not a recording"):
        reader(side)


def test_traces_files_with_sidecars_still_open(tmp_path, capsys):
    """Only results are refused: a hand-off .npy and ``extract``'s output are traces."""
    from napari_catune import cli
    from napari_catune.io import save_for_tuning

    rng = np.random.default_rng(2)
    y = rng.normal(size=(2, 80)) + 10
    save_for_tuning(y, 20.0, tmp_path / "rec")
    assert _reader.get_traces_reader(str(tmp_path / "rec.npy")) is _reader.read_traces
    movie = np.repeat(y.T[:, :, None], 6, axis=2).reshape(80, 2, 6).astype(np.float32)
    labels = np.repeat(np.array([[1], [2]], dtype=np.uint16), 6, axis=1)
    import tifffile

    tifffile.imwrite(tmp_path / "mov.tif", movie)
    tifffile.imwrite(tmp_path / "m_masks.tif", labels)
    assert cli.main(["extract", str(tmp_path / "mov.tif"), str(tmp_path / "m_masks.tif"),
                     "--fs", "20", "-o", str(tmp_path / "ex.npy"), "-q"]) == 0
    capsys.readouterr()
    assert "ROI traces" in json.loads((tmp_path / "ex_metadata.json").read_text())["content"]
    ex = str(tmp_path / "ex.npy")
    assert _reader.get_traces_reader(ex) is _reader.read_traces
    ((_, meta, kind),) = _reader.read_traces(ex)
    assert kind == "labels" and meta["metadata"]["catune"]["traces"].shape == (2, 80)


def test_cli_refuses_a_results_npy_as_input(tmp_path, capsys):
    """The check is shared (sources): the CLI names it as it does a results .npz."""
    from napari_catune import cli

    path = _saved(tmp_path, "act.npy")
    assert cli.main(["info", path]) == 2
    err = capsys.readouterr().err
    assert "is a napari-catune results file" in err and "not traces" in err


# ---------------------------------------------------------------- results: what a user sees


def test_viewer_open_with_plugin_names_the_results_file(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    for name in ("res.npz", "act.npy"):
        path = _saved(tmp_path, name)
        with pytest.raises(ValueError) as info:
            viewer.open(path, plugin=PLUGIN)
        assert "refused the file" not in str(info.value)
        _says_what_to_do(str(info.value), path)
    assert len(viewer.layers) == 0


def test_file_open_and_drop_show_the_reason(make_napari_viewer, tmp_path, monkeypatch):
    """File > Open and drag-and-drop (``_qt_open``, plugin=None): napari's own
    reader takes .npy/.npz too, so its dialog asks which; choosing CaTune, our
    error is what napari's exception hook shows.  With CaTune remembered for
    the extension, the dialog that follows shows our reason."""
    from napari._qt.dialogs import qt_reader_dialog
    from napari.settings import get_settings

    viewer = make_napari_viewer()
    shown = []

    def choose(self):
        from qtpy.QtWidgets import QLabel

        shown.append(" ".join(w.text() for w in self.findChildren(QLabel)))
        return ("CaTune", False) if len(shown) == 1 else ("", False)

    monkeypatch.setattr(qt_reader_dialog.QtReaderDialog, "get_user_choices", choose)
    path = _saved(tmp_path, "res.npz")
    with pytest.raises(ValueError) as info:
        viewer.window._qt_viewer._qt_open([path], stack=False)
    _says_what_to_do(str(info.value), path)
    assert len(shown) == 1 and "Choose reader" in shown[0]

    settings = get_settings().plugins
    monkeypatch.setattr(settings, "extension2reader", {"*.npz": PLUGIN})
    viewer.window._qt_viewer._qt_open([path], stack=False)  # the user cancels the dialog
    assert len(shown) == 2 and "CaTune results, not a recording" in shown[1]
    assert "open the recording it was made from" in shown[1]
    assert len(viewer.layers) == 0


# ---------------------------------------------------------------- cellpose _seg.npy


def _cellpose_seg(tmp_path, name="movie"):
    """A ``_seg.npy`` laid out as cellpose's ``io.masks_flows_to_seg`` writes it
    (a dict saved with ``np.save``: a pickled 0-d object array)."""
    masks = np.zeros((40, 48), dtype=np.uint16)
    masks[5:12, 6:14] = 1
    masks[20:30, 30:41] = 2
    masks[31:38, 3:9] = 3
    outlines = masks.copy()
    outlines[6:11, 7:13] = 0
    outlines[21:29, 31:40] = 0
    outlines[32:37, 4:8] = 0
    flows = [np.zeros((1, 40, 48, 3), np.uint8), np.zeros((1, 40, 48), np.uint8),
             np.zeros((1, 40, 48), np.uint8), np.zeros((2, 40, 48), np.float32),
             np.zeros((3, 40, 48), np.float32)]
    dat = {"outlines": outlines, "masks": masks, "chan_choose": [0, 0],
           "ismanual": np.zeros(int(masks.max()), bool), "filename": str(tmp_path / f"{name}.tif"),
           "flows": flows, "diameter": 30.0}
    path = tmp_path / f"{name}_seg.npy"
    np.save(path, dat)
    return str(path), masks


def _asker(monkeypatch, answer):
    asked = []

    def ask(where, kind="suite2p"):
        asked.append((where, kind))
        return answer

    monkeypatch.setattr(rp, "ask_allow_pickle", ask)
    return asked


def test_cellpose_seg_opens_its_masks_when_allowed(tmp_path, monkeypatch):
    path, masks = _cellpose_seg(tmp_path)
    asked = _asker(monkeypatch, True)
    reader = _reader.get_traces_reader(path)
    assert reader is _reader.read_cellpose_seg and asked == []  # the getter unpickles nothing
    ((data, meta, kind),) = reader(path)
    assert kind == "labels" and data.shape == (40, 48)
    np.testing.assert_array_equal(data, masks)
    assert [k for _, k in asked] == ["cellpose"]
    reader(path)  # asked once per file
    assert len(asked) == 1


def test_cellpose_seg_refused_says_to_export_masks(tmp_path, monkeypatch):
    path, _ = _cellpose_seg(tmp_path)
    _asker(monkeypatch, False)
    with pytest.raises(ValueError) as info:
        _reader.get_traces_reader(path)(path)
    msg = str(info.value)
    assert "pickle" in msg and "movie_cp_masks.tif" in msg and "--save_tif" in msg


def test_cellpose_seg_bad_contents(tmp_path, monkeypatch):
    _asker(monkeypatch, True)
    np.save(tmp_path / "a_seg.npy", {"outlines": np.zeros((4, 4), np.uint16)})
    with pytest.raises(ValueError, match="no 'masks'"):
        _reader.read_cellpose_seg(str(tmp_path / "a_seg.npy"))
    np.save(tmp_path / "b_seg.npy", {"masks": np.zeros((3, 8, 8), np.uint16) + 1})
    with pytest.raises(ValueError, match="one \\(height, width\\)"):
        _reader.read_cellpose_seg(str(tmp_path / "b_seg.npy"))
    # an object .npy not named *_seg.npy is not taken for cellpose's
    np.save(tmp_path / "other.npy", {"masks": np.zeros((8, 8), np.uint16)})
    assert _reader.get_traces_reader(str(tmp_path / "other.npy")) is None


def test_cellpose_seg_in_a_viewer_asks_with_qt(make_napari_viewer, tmp_path, monkeypatch):
    """The real question (a QMessageBox, as for suite2p) names the file and the pickle."""
    from qtpy.QtWidgets import QMessageBox

    viewer = make_napari_viewer()
    path, masks = _cellpose_seg(tmp_path, "cells")
    questions = []

    def question(parent, title, text, *args):
        questions.append((title, text))
        return QMessageBox.Yes

    monkeypatch.setattr(QMessageBox, "question", question)
    (layer,) = viewer.open(path, plugin=PLUGIN)
    assert type(layer).__name__ == "Labels" and layer.name == "cells_seg"
    np.testing.assert_array_equal(layer.data, masks)
    ((title, text),) = questions
    assert "cellpose" in title and str(tmp_path / "cells_seg.npy") in text and "pickle" in text
