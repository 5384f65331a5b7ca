"""The npe2 manifest: valid, importable, discovered by napari, shipped in the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from npe2 import PluginManager, PluginManifest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "napari-catune"


@pytest.fixture(scope="module")
def manifest():
    return PluginManifest.from_distribution(PLUGIN)


def test_npe2_validate_imports_cli():
    # exactly the documented check: `npe2 validate napari-catune --imports`
    out = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", PLUGIN, "--imports"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in out.stdout


def test_every_python_name_imports(manifest):
    manifest.validate_imports()  # raises if a python_name does not resolve
    for cmd in manifest.contributions.commands:
        module, _, attr = cmd.python_name.partition(":")
        assert callable(getattr(__import__(module, fromlist=[attr]), attr)), cmd.python_name


def test_installed_manifest_is_the_repository_file(manifest):
    assert manifest == PluginManifest.from_file(ROOT / "napari.yaml")


def test_contributions_listed(manifest):
    c = manifest.contributions
    assert [w.display_name for w in c.widgets] == ["CaTune tuner"]
    assert [(s.key, s.display_name) for s in c.sample_data] == [
        ("synthetic", "Synthetic calcium recording")
    ]
    readers = {r.command: r for r in c.readers}
    assert readers[f"{PLUGIN}.read_params"].filename_patterns == ["*.json"]
    assert set(readers[f"{PLUGIN}.read_traces"].filename_patterns) == {"*.npy", "*.npz"}
    assert readers[f"{PLUGIN}.read_nwb"].filename_patterns == ["*.nwb"]
    writers = {}
    for w in c.writers:
        writers.setdefault(w.command.split(".")[1], set()).add(
            (tuple(w.layer_types), tuple(w.filename_extensions)))
    assert writers == {
        "write_params": {(("labels",), (".json",))},
        # results: from the Labels layer and from the tuner's activity overlay
        **{f"write_results_{e}": {(("labels",), (f".{e}",)), (("image",), (f".{e}",))}
           for e in ("npz", "nwb", "npy", "csv")},
        "write_features_csv": {(("labels",), (".csv",))},
    }


def test_plugin_is_discovered_by_npe2():
    pm = PluginManager.instance()
    pm.discover()
    mf = pm.get_manifest(PLUGIN)
    assert mf.name == PLUGIN
    assert any(w.plugin_name == PLUGIN and w.display_name == "CaTune tuner" for w in pm.iter_widgets())
    # the traces reader is offered for .npz, the params reader for .json
    assert PLUGIN in {r.plugin_name for r in pm.iter_compatible_readers(["x.npz"])}
    assert f"{PLUGIN}.read_params" in {r.command for r in pm.iter_compatible_readers(["x.json"])}


def test_no_reader_offered_for_unrelated_files(tmp_path):
    # a reader that matches every file name makes napari ask "which reader?"
    # for every .csv/.png the user drops, although the getter then declines.
    # .tif/.tiff are offered on purpose (round 41): the lazy TIFF movie reader
    # (napari's own loads a whole movie into memory; the README says which to pick)
    from napari.plugins import _initialize_plugins, _npe2

    _initialize_plugins()
    for name in ("table.csv", "image.png", "movie.ome.zarr.txt"):
        assert PLUGIN not in _npe2.get_readers(str(tmp_path / name)), name
    for name in ("movie.tif", "movie.TIFF"):
        assert PLUGIN in _npe2.get_readers(str(tmp_path / name)), name
    plane = tmp_path / "suite2p" / "plane0"
    plane.mkdir(parents=True)
    assert PLUGIN in _npe2.get_readers(str(plane))  # folders still reach the suite2p reader


def test_wheel_ships_the_manifest(tmp_path):
    # the wheel must carry napari_catune/napari.yaml (a real file, once) and the
    # entry point npe2 looks for
    from hatchling.builders.wheel import WheelBuilder

    (whl,) = WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"])
    with zipfile.ZipFile(whl) as zf:
        names = zf.namelist()
        assert names.count("napari_catune/napari.yaml") == 1
        shipped = zf.read("napari_catune/napari.yaml")
        entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = zf.read(entry).decode()
    assert shipped == (ROOT / "napari.yaml").read_bytes()
    assert "[napari.manifest]" in entry_points
    assert "napari-catune = napari_catune:napari.yaml" in entry_points


# ----------------------------------------------------------------------------
# in a real viewer
# ----------------------------------------------------------------------------


def test_plugins_menu_lists_the_tuner(make_napari_viewer):
    viewer = make_napari_viewer()
    texts = [a.text() for a in viewer.window.plugins_menu.actions()]
    assert "CaTune tuner (CaTune)" in texts


def test_open_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "synthetic")
    assert [layer.name for layer in viewer.layers] == ["synthetic movie", "ROIs"]
    movie, rois = viewer.layers
    assert movie._type_string == "image" and movie.data.ndim == 3
    assert rois._type_string == "labels" and rois.data.shape == movie.data.shape[1:]
    fs = movie.metadata["catune"]["fs"]
    assert fs > 0
    cat = rois.metadata["catune"]
    assert cat["fs"] == fs
    truth = cat["ground_truth"]
    n = len(cat["roi_ids"])
    assert n > 0 and set(np.unique(rois.data)) == {0, *cat["roi_ids"]}
    assert truth["spikes"].shape == truth["calcium"].shape == (n, movie.data.shape[0])
    assert truth["params"]["fs"] == fs
    # a napari time slider over the movie frames
    assert viewer.dims.range[0].stop >= movie.data.shape[0] - 1


def test_open_params_file_sets_the_tuner(make_napari_viewer, tmp_path):
    from napari_catune.params import TuningParams, save_params

    viewer = make_napari_viewer()
    first = TuningParams(tau_rise=0.03, tau_decay=0.8, fs=15.0, lam=0.25)
    second = first.replace(tau_decay=1.5, fs=60.0, filter_enabled=True)
    save_params(first, tmp_path / "a.json")
    save_params(second, tmp_path / "b.json")

    from napari.utils.notifications import notification_manager

    n_before = len(notification_manager.records)
    assert viewer.open(str(tmp_path / "a.json"), plugin=PLUGIN) == []  # no layer added
    assert len(viewer.layers) == 0
    messages = [str(r.message) for r in notification_manager.records[n_before:]]
    assert any(m.startswith("Loaded CaTune parameters from") and "a.json" in m for m in messages)
    docks = viewer.window._wrapped_dock_widgets
    (name,) = [k for k in docks if "CaTune tuner" in k]
    widget = docks[name].inner_widget()
    assert widget.params == first

    # a second file goes into the same, already open tuner
    # plugin=None is what File > Open and drag-and-drop use: ours is the only
    # reader for a .json, so no reader dialog comes up
    viewer.open(str(tmp_path / "b.json"), plugin=None)
    assert [k for k in viewer.window._wrapped_dock_widgets if "CaTune tuner" in k] == [name]
    assert widget.params == second


def test_open_bad_params_file_reports_and_leaves_tuner(make_napari_viewer, tmp_path):
    import json

    viewer = make_napari_viewer()
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"parameters": {
        "tau_rise_s": 0.05, "tau_decay_s": 0.02, "lambda": 0.1, "sampling_rate_hz": 30.0,
    }}))
    with pytest.raises(ValueError, match="tau_rise .* must be smaller than tau_decay"):
        viewer.open(str(path), plugin=PLUGIN)
    # File > Open (plugin=None) wraps it; napari's reader dialog shows str(error)
    from napari.errors import ReaderPluginError

    with pytest.raises(ReaderPluginError) as info:
        viewer.open(str(path), plugin=None)
    assert "must be smaller than tau_decay" in str(info.value)
    # the File > Open handler: no other reader takes .json, so no dialog; the
    # error (with our message) goes to napari's error notification
    with pytest.raises(ReaderPluginError) as info:
        viewer.window._qt_viewer._qt_open([str(path)], stack=False)
    assert "must be smaller than tau_decay" in str(info.value)
    assert not [k for k in viewer.window._wrapped_dock_widgets if "CaTune tuner" in k]


def test_tuner_in_layers_measure_menu(make_napari_viewer, manifest):
    """Besides Plugins, the tuner is in Layers > Measure (npe2 ``menus``)."""
    menus = manifest.contributions.menus
    assert [m.command for m in menus["napari/layers/measure"]] == [f"{PLUGIN}.tuner"]
    make_napari_viewer()
    from napari._app_model import get_app_model
    from napari._app_model.constants._menus import is_menu_contributable

    assert is_menu_contributable("napari/layers/measure")
    items = get_app_model().menus.get_menu("napari/layers/measure")
    assert f"{PLUGIN}.tuner" in [getattr(i, "command", None) and i.command.id for i in items]


def test_new_readers_listed(manifest):
    readers = {r.command: r for r in manifest.contributions.readers}
    assert set(readers[f"{PLUGIN}.read_h5_movie"].filename_patterns) == {"*.h5", "*.hdf5"}
    pats = readers[f"{PLUGIN}.read_labels"].filename_patterns
    assert "*_masks.png" in pats and "*.tif" not in pats  # only mask-named TIFF/PNG files


def test_params_file_and_napari_default_reader_choice(make_napari_viewer, tmp_path):
    """napari 0.9's ``viewer.open(path)`` means ``plugin="napari"`` (its built-in
    reader) and cannot be changed by a plugin; File > Open and drag-and-drop use
    ``plugin=None`` where ours is the only reader for .json and is picked
    without a dialog.  Both documented ways work; the bare call names us."""
    from napari_catune.params import TuningParams, save_params

    viewer = make_napari_viewer()
    save_params(TuningParams(0.03, 0.8, 15.0, 0.25), tmp_path / "p.json")
    with pytest.raises(ValueError, match=PLUGIN):
        viewer.open(str(tmp_path / "p.json"))
    from napari.plugins import _npe2

    assert _npe2.get_readers(str(tmp_path / "p.json")) == {PLUGIN: "CaTune"} or \
        list(_npe2.get_readers(str(tmp_path / "p.json"))) == [PLUGIN]
    assert viewer.open(str(tmp_path / "p.json"), plugin=None) == []
    viewer.window._qt_viewer._qt_open([str(tmp_path / "p.json")], stack=False)
    docks = [k for k in viewer.window._wrapped_dock_widgets if "CaTune tuner" in k]
    assert len(docks) == 1


def test_ci_runs_on_pyqt6(qapp):
    """CI (.ci/test with the [testing] extra) runs napari on PyQt6; qtpy and pytest-qt agree."""
    import os

    import qtpy
    from pytestqt.qt_compat import qt_api

    assert qt_api.pytest_qt_api.lower() == qtpy.API_NAME.lower()
    if os.environ.get("CI") or os.environ.get("QT_API") == "pyqt6":
        assert qtpy.API_NAME == "PyQt6"
        from PyQt6.QtCore import QT_VERSION_STR

        assert int(QT_VERSION_STR.split(".")[0]) == 6
    else:
        assert qtpy.API_NAME in ("PyQt5", "PyQt6", "PySide6")


def test_minian_folder_opens_in_napari(make_napari_viewer, tmp_path, manifest):
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from test_loaders import make_minian

    readers = {r.command: r for r in manifest.contributions.readers}
    assert readers[f"{PLUGIN}.read_minian"].accepts_directories
    make_minian(tmp_path / "minian")
    viewer = make_napari_viewer()
    layers = viewer.open(str(tmp_path / "minian"), plugin=PLUGIN)
    labels = [ly for ly in layers if ly._type_string == "labels"]
    assert len(labels) == 1 and labels[0].metadata["catune"]["traces"].shape[0] == 4
