"""Saving results from napari never replaces the recording, its sidecar or another
output's sidecar (the CLI's checks, shared through ``napari_catune._overwrite``)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from napari_catune.params import TuningParams

IDS = np.array([4, 7, 11], dtype=np.int64)
PARAMS = TuningParams(tau_rise=0.04, tau_decay=0.9, fs=12.5, lam=0.3, filter_enabled=False)


def _activity():
    return np.maximum(np.random.default_rng(11).normal(size=(3, 25)), 0.0)


def _results_layer(viewer, source):
    """A Labels layer holding results, as the tuner leaves it after Apply to all."""
    cat = {"fs": PARAMS.fs, "roi_ids": IDS, "source": str(source), "params": PARAMS.to_dict(),
           "results": {"activity": _activity(), "reconvolution": _activity(),
                       "baseline": np.zeros(3), "converged": np.ones(3, bool),
                       "roi_ids": IDS, "params": PARAMS.to_dict()}}
    lab = np.zeros((20, 20), dtype=np.int32)
    for k, i in enumerate(IDS):
        lab[2 + 6 * k: 6 + 6 * k, 2:6] = i
    return viewer.add_labels(lab, name="cells", metadata={"catune": cat})


def _save(layer, path):
    """layer.save as a user calls it; returns (written, warning texts)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = layer.save(str(path), plugin="napari-catune")
    return written, [str(w.message) for w in caught]


def test_saving_over_the_opened_recording_or_its_sidecar_is_refused(
        make_napari_viewer, qtbot, tmp_path):
    # reader -> tuner "Apply to all" -> layer.save beside the input, as gui6_sidecar.py
    from napari_catune.io import save_for_tuning

    rng = np.random.default_rng(3)
    traces = rng.normal(size=(3, 300)) + 2.0
    npy, side = save_for_tuning(traces, 20.0, tmp_path / "tr", metadata={"roi_ids": [1, 2, 3]})
    side_text = side.read_text()
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(npy), plugin="napari-catune")
    _, widget = viewer.window.add_plugin_dock_widget("napari-catune", "CaTune tuner")
    widget.set_params(TuningParams(tau_rise=0.05, tau_decay=0.6, fs=20.0, lam=0.1))
    assert widget.apply_to_all() is not None
    qtbot.waitUntil(lambda: "results" in layer.metadata["catune"], timeout=120_000)

    written, said = _save(layer, tmp_path / "tr.csv")  # its sidecar is the input's
    assert written == []
    assert any("tr_metadata.json" in m and f"the input {npy}" in m
               and "choose another file name" in m for m in said), said
    assert not (tmp_path / "tr.csv").exists() and side.read_text() == side_text

    written, said = _save(layer, tmp_path / "tr.npy")  # the input itself
    assert written == []
    assert any(f"Cannot save tr.npy: it is the input {npy}" in m for m in said), said
    np.testing.assert_array_equal(np.load(npy), traces)
    assert side.read_text() == side_text
    # another name is fine
    written, _ = _save(layer, tmp_path / "tr_catune.npy")
    assert written == [str(tmp_path / "tr_catune.npy"), str(tmp_path / "tr_catune_metadata.json")]


def test_a_sidecar_describing_another_output_is_kept(make_napari_viewer, tmp_path):
    # res.npy then res.csv would share res_metadata.json (gui1.py): the second is refused
    viewer = make_napari_viewer()
    layer = _results_layer(viewer, tmp_path / "rec.npz")
    assert _save(layer, tmp_path / "res.npy")[0][0] == str(tmp_path / "res.npy")
    side = tmp_path / "res_metadata.json"
    before = side.read_text()
    assert json.loads(before)["output"] == "res.npy"
    written, said = _save(layer, tmp_path / "res.csv")
    assert written == []
    assert any("res_metadata.json already describes res.npy" in m for m in said), said
    assert not (tmp_path / "res.csv").exists() and side.read_text() == before
    # saving res.npy again replaces its own sidecar; .npz writes none, so no clash
    assert _save(layer, tmp_path / "res.npy")[0][0] == str(tmp_path / "res.npy")
    assert _save(layer, tmp_path / "res.npz")[0] == [str(tmp_path / "res.npz")]


def test_a_recording_open_in_the_viewer_is_protected(make_napari_viewer, tmp_path):
    # a movie + labels session: the results' source is the label image, the movie is
    # another layer's file; results saved over the movie are refused too
    movie = tmp_path / "movie.npy"
    np.save(movie, np.zeros((4, 20, 20), np.float32))
    viewer = make_napari_viewer()
    viewer.open(str(movie))
    layer = _results_layer(viewer, tmp_path / "masks.tif")
    written, said = _save(layer, movie)
    assert written == []
    assert any(f"the input {movie}" in m for m in said), said
    assert np.load(movie).shape == (4, 20, 20)


def _dialog(monkeypatch, path, filter_ext, *, replace=None):
    from qtpy.QtWidgets import QFileDialog, QMessageBox

    from napari_catune._writer import _DIALOG_FILTERS

    chosen = next(f for f, e in _DIALOG_FILTERS if e == filter_ext)
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(path), chosen)))
    asked = []

    def question(parent, title, text, *a, **k):
        asked.append(text)
        return QMessageBox.Yes if replace else QMessageBox.No

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    errors = []
    import napari.utils.notifications as nt

    monkeypatch.setattr(nt, "show_error", lambda msg: errors.append(msg))
    return asked, errors


def test_dialog_checks_the_name_with_its_suffix(make_napari_viewer, tmp_path, monkeypatch,
                                                qtbot):
    # typing "tr" with the NPY filter: the suffix is added after Qt's own "replace?" check
    from napari_catune._writer import save_results_dialog

    rec = tmp_path / "tr.npy"
    np.save(rec, np.ones((3, 25)))
    viewer = make_napari_viewer()
    _results_layer(viewer, rec)
    asked, errors = _dialog(monkeypatch, tmp_path / "tr", ".npy", replace=True)
    assert save_results_dialog() is None
    assert asked == []  # refused, not asked
    assert len(errors) == 1 and f"Cannot save tr.npy: it is the input {rec}" in errors[0]
    np.testing.assert_array_equal(np.load(rec), np.ones((3, 25)))

    # an existing file that is not an input: asked first, kept on "No"
    kept = tmp_path / "kept.npz"
    kept.write_bytes(b"earlier")
    asked, errors = _dialog(monkeypatch, tmp_path / "kept", ".npz", replace=False)
    assert save_results_dialog() is None
    assert len(asked) == 1 and "kept.npz already exists" in asked[0] and errors == []
    assert kept.read_bytes() == b"earlier"
    asked, errors = _dialog(monkeypatch, tmp_path / "kept", ".npz", replace=True)
    job = save_results_dialog()  # written in a worker thread
    qtbot.waitUntil(job.done, timeout=120_000)
    assert job.written == [str(kept)]
    assert len(asked) == 1 and errors == []
    with np.load(kept) as z:
        np.testing.assert_array_equal(z["roi_ids"], IDS)


@pytest.mark.parametrize("name", ["tr.npy", "tr_metadata.json"])
def test_cli_and_writer_share_one_check(tmp_path, name):
    # one function: the CLI's words, the writer's words, same files refused
    from napari_catune import _overwrite, cli

    rec = tmp_path / "tr.npy"
    np.save(rec, np.ones((2, 5)))
    with pytest.raises(cli.CLIError, match="would destroy the input"):
        cli.check_not_an_input(tmp_path / name, rec)
    with pytest.raises(_overwrite.OutputClash, match="would destroy the input"):
        _overwrite.check_not_an_input(tmp_path / name, rec)


def test_features_table_is_not_written_over_the_input(tmp_path):
    from napari_catune._writer import write_features_csv

    rec = tmp_path / "rec.csv"
    rec.write_text("time_s,roi_1\n0,1\n")
    cat = {"source": str(rec), "results": {"activity": _activity(), "roi_ids": IDS,
                                           "params": PARAMS.to_dict()}}
    with pytest.warns(UserWarning, match="Cannot save rec.csv: it is the input"), \
            pytest.raises(ValueError, match="choose another file name"):
        write_features_csv(str(rec), None, {"name": "cells", "metadata": {"catune": cat},
                                            "features": {"snr": np.array([1.0, 2.0, 3.0])}})
    assert rec.read_text() == "time_s,roi_1\n0,1\n"


def test_parameter_file_is_not_written_over_the_inputs_sidecar(make_napari_viewer, tmp_path):
    # layer.save("tr_metadata.json") would replace the recording's sidecar with a
    # parameter file (the CLI refuses `estimate -o tr_metadata.json` the same way)
    from napari_catune.io import save_for_tuning

    traces = np.random.default_rng(0).normal(size=(3, 300)) + 2.0
    npy, side = save_for_tuning(traces, 20.0, tmp_path / "tr")
    before = side.read_text()
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(npy), plugin="napari-catune")
    layer.metadata["catune"]["params"] = PARAMS.to_dict()
    written, said = _save(layer, side)
    assert written == []
    assert any(f"Cannot save tr_metadata.json: it is the sidecar tr_metadata.json of the "
               f"input {npy}" in m and "choose another file name" in m for m in said), said
    assert side.read_text() == before
    # another name is fine
    assert _save(layer, tmp_path / "tr_params.json")[0] == [str(tmp_path / "tr_params.json")]


def test_a_sidecar_naming_no_output_belongs_to_a_npy_or_csv_only(make_napari_viewer, tmp_path):
    # res.npz and res.csv saved by the earlier writer (its sidecar has no "output"):
    # a .npz or .nwb never gets a sidecar, so re-saving res.csv is not refused
    from napari_catune import cli

    viewer = make_napari_viewer()
    layer = _results_layer(viewer, tmp_path / "rec.npz")
    assert _save(layer, tmp_path / "res.npz")[0]
    assert _save(layer, tmp_path / "res.csv")[0]
    side = tmp_path / "res_metadata.json"
    meta = json.loads(side.read_text())
    del meta["output"]  # as the earlier writer left it
    side.write_text(json.dumps(meta))
    written, said = _save(layer, tmp_path / "res.csv")
    assert written and written[0] == str(tmp_path / "res.csv"), said
    # the CLI's check (the same function) agrees
    cli._check_sidecar_free(tmp_path / "res.csv")
    # an unnamed sidecar beside a .npy (save_for_tuning, the earlier writer) is still its
    (tmp_path / "res.csv").unlink()
    np.save(tmp_path / "res.npy", np.zeros((3, 25)))
    side.write_text(json.dumps(meta))
    written, said = _save(layer, tmp_path / "res.csv")
    assert written == []
    assert any("res_metadata.json already describes res.npy" in m for m in said), said
    with pytest.raises(cli.CLIError, match="already describes res.npy"):
        cli._check_sidecar_free(tmp_path / "res.nwb")


def test_tuner_parameter_save_spares_the_recordings_open_in_the_viewer(
        make_napari_viewer, qtbot, tmp_path, monkeypatch):
    # aud36 finding 1: the tuner's Save... (parameters) wrote a CaTune JSON over the
    # open recording's sidecar tr_metadata.json (its fs lost) and over an open .npz
    import napari.utils.notifications as nt
    from qtpy.QtWidgets import QFileDialog

    from napari_catune.io import save_for_tuning

    rng = np.random.default_rng(5)
    npy, side = save_for_tuning(rng.normal(size=(3, 300)) + 2.0, 20.0, tmp_path / "tr")
    npz = tmp_path / "rec.npz"
    np.savez(npz, traces=rng.normal(size=(4, 200)) + 1.0, fs=np.float64(15.0),
             roi_ids=np.array([1, 2, 3, 4]))
    before = {f: f.read_bytes() for f in (npy, side, npz)}
    errors = []
    monkeypatch.setattr(nt, "show_error", lambda m: errors.append(str(m)))
    viewer = make_napari_viewer()
    viewer.open(str(npy), plugin="napari-catune")
    viewer.open(str(npz), plugin="napari-catune")
    _, w = viewer.window.add_plugin_dock_widget("napari-catune", "CaTune tuner")
    qtbot.waitUntil(lambda: w.idle and w.session.source is not None, timeout=120_000)

    def save_to(path):
        chosen = (str(path), "CaTune parameters (*.json)")
        monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: chosen))
        n = len(errors)
        w.controls.save_btn.click()
        return errors[n:]

    why = {npy: f"it is the input {npy}",
           side: f"it is the sidecar tr_metadata.json of the input {npy}",
           npz: f"it is the input {npz}"}
    for target, reason in why.items():
        said = save_to(target)
        assert len(said) == 1 and said[0].startswith(f"Cannot save {target.name}: {reason}")
        assert said[0].endswith("choose another file name"), said
        assert w.status.text() == said[0]  # the status line says it too
    assert {f: f.read_bytes() for f in before} == before  # nothing written over
    # another name is fine
    assert save_to(tmp_path / "tr_params.json") == []
    assert w.status.text().startswith(f"Parameters saved to {tmp_path / 'tr_params.json'}")
