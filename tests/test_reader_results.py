"""Our own results files opened with the napari reader.

A results ``.npz``/``.npy`` is refused with what it is and what to open
instead (it held no reason before, or opened the activity as if it were
fluorescence).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_catune import _reader
from napari_catune.params import TuningParams
from napari_catune.results import save_results

PLUGIN = "napari-catune"
PARAMS = TuningParams(0.05, 0.4, 20.0, 0.2)


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
