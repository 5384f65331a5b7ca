"""Writers: tuned parameters (.json) and results (.npz, .nwb, .npy + sidecar, .csv)."""

from __future__ import annotations

import csv
import os
import warnings

import numpy as np
import pytest

from napari_catune._writer import (
    write_features_csv,
    write_params,
    write_results_csv,
    write_results_npy,
    write_results_npz,
    write_results_nwb,
)
from napari_catune.params import TuningParams, load_params

PARAMS = TuningParams(tau_rise=0.04, tau_decay=0.9, fs=12.5, lam=0.3, filter_enabled=False)
IDS = np.array([4, 7, 11], dtype=np.int64)


def _activity():
    rng = np.random.default_rng(11)
    act = np.maximum(rng.normal(size=(3, 25)), 0.0)
    act[1, 3] = 1.0 / 3.0  # a value with no short decimal form
    return act


def _features():
    # what the tuner puts on the Labels layer after Apply to all
    import pandas as pd

    return pd.DataFrame({"index": IDS, "roi_id": IDS, "snr": [3.5, 1.25, 7.0],
                         "event_rate_hz": [0.5, 0.0, 1.5], "baseline": [0.1, 0.2, 0.3],
                         "converged": [True, False, True]})


def _meta(*, params=True, results=True, name="cells"):
    cat = {"fs": PARAMS.fs, "roi_ids": IDS, "traces": np.zeros((3, 25)), "source": "/data/rec_F.npy"}
    if params:
        cat["params"] = PARAMS.to_dict()
    meta = {"name": name, "metadata": {"catune": cat}}
    if results:
        cat["results"] = {
            "activity": _activity(),
            "reconvolution": _activity() + 0.5,
            "baseline": np.full(3, 0.5),
            "converged": np.ones(3, bool),
            "roi_ids": IDS,
            "params": PARAMS.to_dict(),
        }
        meta["features"] = _features()
    return meta


def _labels():
    lab = np.zeros((20, 20), dtype=np.int32)
    for k, i in enumerate(IDS):
        lab[2 + 6 * k : 6 + 6 * k, 2:6] = i
    return lab


def _read_csv(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], np.array(rows[1:], dtype=np.float64)


# ----------------------------------------------------------------------------
# the writer functions (npe2 single-layer signature: path, data, meta)
# ----------------------------------------------------------------------------


def test_write_params(tmp_path):
    path = tmp_path / "tuned.json"
    assert write_params(str(path), _labels(), _meta()) == [str(path)]
    assert load_params(path) == PARAMS
    import json

    doc = json.loads(path.read_text())
    assert doc["schema_version"] == "1.2.0"
    assert doc["metadata"] == {"source_filename": "rec_F.npy", "num_cells": 3, "num_timepoints": 25}


def test_write_params_is_readable_by_calab(tmp_path):
    import calab  # a peer (testing extra), not our code
    path = tmp_path / "for_calab.json"
    write_params(str(path), _labels(), _meta())
    got = calab.load_export_params(path)
    assert got["tau_rise"] == PARAMS.tau_rise and got["tau_decay"] == PARAMS.tau_decay
    assert got["fs"] == PARAMS.fs and got["lambda_"] == PARAMS.lam


def test_write_params_falls_back_to_the_results_params(tmp_path):
    meta = _meta(params=False)
    path = tmp_path / "p.json"
    write_params(str(path), None, meta)
    assert load_params(path) == PARAMS


def test_write_params_keeps_the_baseline_mode(tmp_path):
    drift = PARAMS.replace(baseline="drift", drift_scale=30.0)
    meta = _meta()
    meta["metadata"]["catune"]["params"] = drift.to_dict()
    write_params(str(tmp_path / "d.json"), _labels(), meta)
    assert load_params(tmp_path / "d.json") == drift
    # a layer stored by a tuner of the bool era
    meta["metadata"]["catune"]["params"] = {**PARAMS.to_dict(), "baseline": False}
    del meta["metadata"]["catune"]["params"]["drift_scale"]
    write_params(str(tmp_path / "n.json"), _labels(), meta)
    assert load_params(tmp_path / "n.json").baseline == "none"


def test_write_results_npy(tmp_path):
    import json

    path = tmp_path / "activity.npy"
    side = tmp_path / "activity_metadata.json"
    assert write_results_npy(str(path), _labels(), _meta()) == [str(path), str(side)]
    got = np.load(path, allow_pickle=False)
    assert got.dtype == np.float64 and got.shape == (3, 25)
    np.testing.assert_array_equal(got, _activity())
    # the sidecar carries what the bare array cannot (issue 10)
    meta = json.loads(side.read_text())
    assert meta["sampling_rate_hz"] == PARAMS.fs and meta["roi_ids"] == IDS.tolist()
    assert meta["num_cells"] == 3 and meta["num_timepoints"] == 25
    assert meta["catune_params"]["parameters"]["tau_decay_s"] == PARAMS.tau_decay
    assert meta["source_filename"] == "rec_F.npy"


def test_write_results_npz_holds_everything(tmp_path):
    from napari_catune.results import load_results

    path = tmp_path / "results.npz"
    assert write_results_npz(str(path), _labels(), _meta()) == [str(path)]
    got = load_results(path)
    np.testing.assert_array_equal(got["activity"], _activity())
    np.testing.assert_array_equal(got["fit"], _activity() + 0.5)
    np.testing.assert_array_equal(got["baseline"], np.full(3, 0.5))
    np.testing.assert_array_equal(got["roi_ids"], IDS)
    assert got["fs"] == PARAMS.fs and got["params"] == PARAMS
    assert got["features"]["snr"].tolist() == [3.5, 1.25, 7.0]
    assert got["features"]["converged"].tolist() == [True, False, True]
    assert "index" not in got["features"]


def test_write_results_nwb(tmp_path):
    pytest.importorskip("pynwb")  # the nwb extra (in the testing extras)
    from napari_catune.nwb import load_nwb
    from napari_catune.results import load_results

    path = tmp_path / "results.nwb"
    assert write_results_nwb(str(path), _labels(), _meta()) == [str(path)]
    got = load_results(path)
    np.testing.assert_array_equal(got["activity"], _activity())
    np.testing.assert_array_equal(got["roi_ids"], IDS)
    assert got["params"] == PARAMS
    # the footprints are the layer's label image
    back = load_nwb(path, series="catune/Deconvolution/activity")
    np.testing.assert_array_equal(back.labels, _labels())


def test_write_features_csv(tmp_path):
    path = tmp_path / "features.csv"
    assert write_features_csv(str(path), _labels(), _meta()) == [str(path)]
    header, rows = path.read_text().splitlines()[0], path.read_text().splitlines()[1:]
    assert header == "roi_id,snr,event_rate_hz,baseline,converged"
    assert rows == ["4,3.5,0.5,0.1,true", "7,1.25,0,0.2,false", "11,7,1.5,0.3,true"]


def test_write_results_csv(tmp_path):
    path = tmp_path / "activity.csv"
    written = write_results_csv(str(path), _labels(), _meta())
    assert written == [str(path), str(tmp_path / "activity_features.csv"),
                       str(tmp_path / "activity_metadata.json")]
    header, table = _read_csv(path)
    assert header == ["time_s", "roi_4", "roi_7", "roi_11"]
    assert table.shape == (25, 4)
    # frame k is at k / fs seconds; fs = 12.5 Hz -> 0.08 s per frame
    np.testing.assert_allclose(table[:, 0], 0.08 * np.arange(25), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(table[:, 1:], _activity().T, rtol=1e-9, atol=0)


def test_writers_refuse_a_layer_without_results(tmp_path):
    for writer, name in ((write_results_npy, "a.npy"), (write_results_csv, "a.csv"),
                         (write_results_npz, "a.npz"), (write_results_nwb, "a.nwb"),
                         (write_features_csv, "f.csv")):
        with pytest.warns(UserWarning), pytest.raises(ValueError, match="Apply to all ROIs"):
            writer(str(tmp_path / name), _labels(), _meta(results=False))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no CaTune parameters"):
        write_params(str(tmp_path / "a.json"), _labels(), _meta(params=False, results=False))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="'cells'"):
        write_params(str(tmp_path / "a.json"), _labels(), {"name": "cells", "metadata": {}})
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_the_earlier_file(tmp_path, monkeypatch):
    path = tmp_path / "activity.csv"
    path.write_text("earlier results\n")

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_results_csv(str(path), _labels(), _meta())
    assert path.read_text() == "earlier results\n"
    assert os.listdir(tmp_path) == ["activity.csv"]  # no temporary file left behind
    for name in ("r.npz", "r.nwb"):
        with pytest.raises(OSError, match="disk full"):
            write_results_npz(str(tmp_path / name), _labels(), _meta()) if name.endswith(
                "npz") else write_results_nwb(str(tmp_path / name), _labels(), _meta())
    assert os.listdir(tmp_path) == ["activity.csv"]


# ----------------------------------------------------------------------------
# through napari: layer.save and the File-menu path
# ----------------------------------------------------------------------------


def _viewer_with_layer(make_napari_viewer, **kw):
    viewer = make_napari_viewer()
    meta = _meta(**kw)
    layer = viewer.add_labels(_labels(), name=meta["name"], metadata=meta["metadata"],
                              features=meta.get("features"))
    return viewer, layer


def test_layer_save_round_trips(make_napari_viewer, tmp_path):
    _, layer = _viewer_with_layer(make_napari_viewer)
    # .npy and .csv each get a {stem}_metadata.json: one stem each (a shared one is refused)
    p_json, p_npy, p_csv = (str(tmp_path / f"out_{e}.{e}") for e in ("json", "npy", "csv"))
    assert layer.save(p_json, plugin="napari-catune") == [p_json]
    assert layer.save(p_npy, plugin="napari-catune")[0] == p_npy
    assert layer.save(p_csv, plugin="napari-catune")[0] == p_csv
    assert load_params(p_json) == PARAMS
    np.testing.assert_array_equal(np.load(p_npy), _activity())
    header, table = _read_csv(p_csv)
    assert header[1:] == [f"roi_{i}" for i in IDS]
    np.testing.assert_allclose(table[:, 1:], _activity().T, rtol=1e-9)


def test_saved_activity_is_not_reopened_as_traces(make_napari_viewer, tmp_path):
    # the .npy written by the writer holds the activity, not fluorescence: reading it
    # back is np.load's (and io.load_tuning_data's); the plugin's reader names it
    viewer, layer = _viewer_with_layer(make_napari_viewer)
    path = str(tmp_path / "act.npy")
    layer.save(path, plugin="napari-catune")
    np.testing.assert_array_equal(np.load(path), _activity())
    with pytest.raises(ValueError, match="CaTune results, not a recording"):
        viewer.open(path, plugin="napari-catune")
    assert len(viewer.layers) == 1


def test_layer_save_without_results_tells_the_user(make_napari_viewer, tmp_path):
    _, layer = _viewer_with_layer(make_napari_viewer, params=False, results=False)
    path = tmp_path / "nothing.csv"
    # napari's layer.save swallows writer ValueErrors; our warning carries the reason
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert layer.save(str(path), plugin="napari-catune") == []
    assert any("Apply to all ROIs" in str(w.message) for w in caught)
    assert not path.exists()


def test_file_menu_path_raises_the_message(make_napari_viewer, tmp_path):
    # File > Save Selected Layers passes the chosen writer contribution
    from napari.plugins import _npe2
    from napari.plugins.io import save_layers

    viewer, layer = _viewer_with_layer(make_napari_viewer, results=False)
    _, writers = _npe2.file_extensions_string_for_layers([layer])
    ours = {w.command: w for w in writers if w.command.startswith("napari-catune.")}
    assert set(ours) == {
        "napari-catune.write_params",
        "napari-catune.write_results_npz",
        "napari-catune.write_results_nwb",
        "napari-catune.write_results_npy",
        "napari-catune.write_results_csv",
        "napari-catune.write_features_csv",
    }
    with pytest.raises(ValueError, match="Apply to all ROIs"):
        save_layers(str(tmp_path / "a.csv"), [layer], _writer=ours["napari-catune.write_results_csv"])
    # the parameters are there, so that writer works through the same path
    out = str(tmp_path / "p.json")
    assert save_layers(out, [layer], _writer=ours["napari-catune.write_params"]) == [out]
    assert load_params(out) == PARAMS


def test_trace_file_to_tuner_to_saved_results(make_napari_viewer, qtbot, tmp_path):
    # reader -> tuner "Apply to all" -> writers, compared with the core solver
    from napari_catune.io import save_for_tuning
    from napari_catune.solver import run_deconvolution_full

    rng = np.random.default_rng(5)
    fs, t = 20.0, 400
    p = TuningParams(tau_rise=0.05, tau_decay=0.6, fs=fs, lam=0.1)
    spikes = (rng.random((3, t)) < 0.03).astype(float)
    from napari_catune.kernel import build_kernel

    k = build_kernel(p.tau_rise, p.tau_decay, fs)
    traces = np.stack([np.convolve(s, k)[:t] for s in spikes]) + 0.05 * rng.normal(size=(3, t)) + 1.0
    npy, _ = save_for_tuning(traces, fs, tmp_path / "cells", metadata={"roi_ids": [2, 5, 9]})

    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(npy), plugin="napari-catune")
    _, widget = viewer.window.add_plugin_dock_widget("napari-catune", "CaTune tuner")
    widget.set_params(p)
    worker = widget.apply_to_all()
    assert worker is not None
    # wait on the condition, not on the worker's signal (it may finish first)
    qtbot.waitUntil(lambda: "results" in layer.metadata["catune"], timeout=120_000)

    # .csv and .npy each get a {stem}_metadata.json: one stem each (a shared one is refused)
    out_csv, out_npy, out_json = (str(tmp_path / f"res_{e}.{e}") for e in ("csv", "npy", "json"))
    assert layer.save(out_csv, plugin="napari-catune")[0] == out_csv
    assert layer.save(out_npy, plugin="napari-catune")[0] == out_npy
    assert layer.save(out_json, plugin="napari-catune") == [out_json]
    out_npz = str(tmp_path / "res.npz")
    assert layer.save(out_npz, plugin="napari-catune") == [out_npz]

    expected = run_deconvolution_full(traces, fs, p.tau_rise, p.tau_decay, p.lam).activity
    scale = np.abs(expected).max()
    np.testing.assert_allclose(np.load(out_npy), expected, rtol=0, atol=1e-6 * scale)
    header, table = _read_csv(out_csv)
    assert header == ["time_s", "roi_2", "roi_5", "roi_9"]
    np.testing.assert_allclose(table[:, 0], np.arange(t) / fs, rtol=1e-9)
    np.testing.assert_allclose(table[:, 1:], expected.T, rtol=1e-8, atol=1e-6 * scale)
    assert load_params(out_json) == p
    from napari_catune.results import load_results

    kept = load_results(out_npz)
    np.testing.assert_allclose(kept["activity"], expected, rtol=0, atol=1e-6 * scale)
    np.testing.assert_array_equal(kept["roi_ids"], [2, 5, 9])
    assert kept["fs"] == fs and kept["params"] == p
    assert set(kept["features"]) >= {"snr", "event_rate_hz", "converged"}


# ----------------------------------------------------------------------------
# issue 10: File > Save Selected Layers on "activity.npy"
# ----------------------------------------------------------------------------


def _viewer_with_overlay(make_napari_viewer):
    """A Labels layer with results and the tuner's activity overlay painting them."""
    from napari_catune._qt.overlays import OVERLAY_KEY, LazyActivity

    viewer, layer = _viewer_with_layer(make_napari_viewer)
    lazy = LazyActivity(_labels(), 25)
    lazy.set_values(IDS, _activity())
    overlay = viewer.add_image(lazy, name="CaTune activity", metadata={OVERLAY_KEY: True})
    return viewer, layer, overlay


def test_napari_default_type_cannot_write_npy(make_napari_viewer, tmp_path):
    # the reproduction: napari's dialog preselects its own writer (the first
    # type listed) and gives it the file whatever the name; it writes no .npy
    from napari.plugins import _npe2

    viewer, layer, overlay = _viewer_with_overlay(make_napari_viewer)
    for lay in (layer, overlay):
        _, writers = _npe2.file_extensions_string_for_layers([lay])
        assert writers[0].plugin_name == "napari"  # the dialog's default type
        viewer.layers.selection = {lay}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert viewer.layers.save(str(tmp_path / "activity.npy"), selected=True,
                                      _writer=writers[0]) == []
    assert not (tmp_path / "activity.npy").exists()


def test_save_selected_activity_layer_by_extension(make_napari_viewer, tmp_path):
    # Save Selected Layers with a CaTune type, and saving by extension, work on
    # the activity overlay: ids, fs and parameters come along
    from napari.plugins import _npe2

    from napari_catune.results import load_results

    viewer, layer, overlay = _viewer_with_overlay(make_napari_viewer)
    viewer.layers.selection = {overlay}
    out = str(tmp_path / "activity.npy")
    assert viewer.layers.save(out, selected=True)[0] == out  # no type chosen: by extension
    np.testing.assert_array_equal(np.load(out), _activity())
    from napari_catune.io import load_tuning_data

    _, meta = load_tuning_data(out)
    assert meta["sampling_rate_hz"] == PARAMS.fs and meta["roi_ids"] == IDS.tolist()
    ext_str, writers = _npe2.file_extensions_string_for_layers([overlay])
    ours = {w.command: w for w in writers if w.plugin_name == "napari-catune"}
    assert set(ours) == {"napari-catune.write_results_npz", "napari-catune.write_results_nwb",
                         "napari-catune.write_results_npy", "napari-catune.write_results_csv"}
    npz = str(tmp_path / "activity.npz")
    viewer.layers.selection = {overlay}  # opening selected the new layer
    assert viewer.layers.save(npz, selected=True,
                              _writer=ours["napari-catune.write_results_npz"]) == [npz]
    got = load_results(npz)
    np.testing.assert_array_equal(got["activity"], _activity())
    assert got["params"] == PARAMS and got["features"]["snr"].tolist() == [3.5, 1.25, 7.0]


def test_activity_overlay_of_an_unknown_layer_says_what_to_do(make_napari_viewer, tmp_path):
    viewer, layer, overlay = _viewer_with_overlay(make_napari_viewer)
    viewer.layers.remove(layer)
    with pytest.warns(UserWarning, match="Apply to all ROIs"), pytest.raises(ValueError):
        write_results_npz(str(tmp_path / "a.npz"), None, {"name": overlay.name,
                                                         "metadata": dict(overlay.metadata)})


def test_file_menu_save_results_action(make_napari_viewer, tmp_path, monkeypatch, qtbot):
    # File > IO Utilities > Save CaTune results...: no napari file type in the way
    from qtpy.QtWidgets import QFileDialog

    from napari_catune._writer import save_results_dialog
    from napari_catune.results import load_results

    viewer, layer, overlay = _viewer_with_overlay(make_napari_viewer)
    from napari._app_model import get_app_model

    items = get_app_model().menus.get_menu("napari/file/io_utilities")
    assert "napari-catune.save_results_dialog" in {
        getattr(i, "command", None) and i.command.id for i in items}
    asked = []

    def fake_dialog(parent, caption, start, filters):
        asked.append((start, filters))
        return str(tmp_path / "kept"), filters.split(";;")[0]  # no extension typed

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(fake_dialog))
    viewer.layers.selection.active = overlay  # the activity layer is what the user sees
    job = save_results_dialog()  # written in a worker thread
    qtbot.waitUntil(job.done, timeout=120_000)
    assert job.written == [str(tmp_path / "kept.npz")]
    assert asked[0][0] == "cells_catune.npz" and "(*.nwb)" in asked[0][1]
    got = load_results(tmp_path / "kept.npz")
    np.testing.assert_array_equal(got["activity"], _activity())
    np.testing.assert_array_equal(got["roi_ids"], IDS)
    # with no results anywhere, nothing is asked and nothing written
    viewer.layers.remove(layer)
    asked.clear()
    assert save_results_dialog() is None
    assert asked == []


def test_results_of_a_zero_based_file_keep_the_files_ids(tmp_path):
    """A traces file whose ids start at 0 is shown as labels 1..n (0 is the background);
    what is written for it carries the file's own ids again, as the CLI writes them."""
    import json

    from napari_catune._reader import read_traces
    from napari_catune._writer import _roi_ids

    np.save(tmp_path / "z.npy", np.random.default_rng(0).standard_normal((4, 200)))
    (tmp_path / "z_metadata.json").write_text(json.dumps({"fs": 30.0, "roi_ids": [0, 1, 2, 3]}))
    [(_, meta, _)] = read_traces(str(tmp_path / "z.npy"))
    cat = meta["metadata"]["catune"]
    assert list(cat["roi_ids"]) == [1, 2, 3, 4] and cat["roi_id_shift"] == 1
    assert _roi_ids(cat, 4).tolist() == [0, 1, 2, 3]
    cat["results"] = {"roi_ids": np.array([1, 2, 3, 4])}
    assert _roi_ids(cat, 4).tolist() == [0, 1, 2, 3]
