"""npe2 readers for suite2p plane folders, CaImAn HDF5 files and Minian output folders."""

from __future__ import annotations

import numpy as np
import pytest

from napari_catune import _reader_pipelines as rp
from napari_catune.loaders import load_caiman_data, load_minian_data, load_suite2p, tile_labels
from test_loaders import make_caiman, make_minian, make_suite2p, make_suite2p_v1


@pytest.fixture(autouse=True)
def _fresh_answers(monkeypatch):
    monkeypatch.setattr(rp, "_PICKLE_ANSWERS", {})


def _asker(monkeypatch, answer: bool):
    asked = []

    def ask(folder):
        asked.append(folder)
        return answer

    monkeypatch.setattr(rp, "ask_allow_pickle", ask)
    return asked


def test_suite2p_getter_accepts_only_plane_folders(tmp_path):
    plane = make_suite2p(tmp_path)
    assert callable(rp.get_suite2p_reader(str(plane)))
    assert callable(rp.get_suite2p_reader(str(plane.parent)))  # suite2p/ with one plane
    assert callable(rp.get_suite2p_reader([str(plane)]))
    (tmp_path / "empty").mkdir()
    for other in (str(tmp_path / "empty"), str(plane / "F.npy"), str(tmp_path / "nope"),
                  [str(plane), str(plane)], None, 42):
        assert rp.get_suite2p_reader(other) is None


def test_suite2p_reader_with_permission(tmp_path, monkeypatch):
    plane = make_suite2p(tmp_path)
    asked = _asker(monkeypatch, True)
    layers = rp.get_suite2p_reader(str(plane))(str(plane))
    ref = load_suite2p(plane, allow_pickle=True)
    assert [t for _, _, t in layers] == ["image", "labels"]
    image, image_meta, _ = layers[0]
    labels, meta, _ = layers[1]
    np.testing.assert_array_equal(image, ref.mean_image)
    np.testing.assert_array_equal(labels, ref.labels)
    cat = meta["metadata"]["catune"]
    np.testing.assert_array_equal(cat["traces"], ref.traces)
    np.testing.assert_array_equal(cat["roi_ids"], [1, 3, 4])
    assert cat["fs"] == 15.0 and cat["source"] == str(plane)
    assert image_meta["metadata"]["catune"]["fs"] == 15.0
    # label values are the trace ids
    assert set(np.unique(labels)) - {0} == set(cat["roi_ids"].tolist())
    # asked once per folder, even when read again
    rp.get_suite2p_reader(str(plane))(str(plane))
    assert len(asked) == 1 and asked[0] == str(plane.resolve())


def test_suite2p_reader_refused_gives_tiles(tmp_path, monkeypatch):
    plane = make_suite2p(tmp_path)
    asked = _asker(monkeypatch, False)
    marker = tmp_path / "pickle_ran"

    import pathlib

    class Evil:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    np.save(plane / "stat.npy", np.array([Evil()] * 5, dtype=object), allow_pickle=True)
    for _ in range(2):
        layers = rp.get_suite2p_reader(str(plane))(str(plane))
    assert len(asked) == 1
    assert not marker.exists()
    assert [t for _, _, t in layers] == ["labels"]
    labels, meta, _ = layers[0]
    cat = meta["metadata"]["catune"]
    np.testing.assert_array_equal(labels, tile_labels(3, ids=[1, 3, 4]))
    assert cat["fs"] is None and cat["traces"].shape == (3, 300)


def test_no_question_without_pickles(tmp_path, monkeypatch):
    plane = make_suite2p(tmp_path)
    (plane / "stat.npy").unlink()
    (plane / "ops.npy").unlink()
    asked = _asker(monkeypatch, True)
    layers = rp.read_suite2p(str(plane))
    assert asked == [] and [t for _, _, t in layers] == ["labels"]


def test_ask_uses_a_qt_question(qapp, monkeypatch, tmp_path):
    from qtpy.QtWidgets import QMessageBox

    seen = []

    def question(parent, title, text, buttons, default):
        seen.append((title, text, default))
        return QMessageBox.Yes

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    assert rp.ask_allow_pickle(str(tmp_path)) is True
    assert str(tmp_path) in seen[0][1] and "pickle" in seen[0][1]
    assert seen[0][2] == QMessageBox.No  # the safe answer is the default


def test_caiman_getter_and_reader(tmp_path):
    path = tmp_path / "cnmf.hdf5"
    make_caiman(path)
    assert callable(rp.get_caiman_reader(str(path)))
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5["data"] = np.zeros(3)
    (tmp_path / "text.hdf5").write_text("hello")
    for other in (str(tmp_path / "other.h5"), str(tmp_path / "text.hdf5"),
                  str(tmp_path / "missing.h5"), str(tmp_path), None):
        assert rp.get_caiman_reader(other) is None
    layers = rp.read_caiman(str(path))
    ref = load_caiman_data(path)
    assert [t for _, _, t in layers] == ["image", "labels"]
    np.testing.assert_array_equal(layers[0][0], ref.mean_image)
    np.testing.assert_array_equal(layers[1][0], ref.labels)
    cat = layers[1][1]["metadata"]["catune"]
    np.testing.assert_array_equal(cat["traces"], ref.traces)
    assert cat["fs"] == 10.0
    np.testing.assert_array_equal(cat["roi_ids"], [1, 3])  # the accepted components
    # which trace, recorded: C + YrA (the file stores YrA); rejected components said in notes
    assert cat["kind"] == "C + YrA"
    assert any("rejected" in n for n in cat["notes"])


def test_readers_in_a_viewer(make_napari_viewer, tmp_path, monkeypatch):
    import napari

    plane = make_suite2p(tmp_path)
    _asker(monkeypatch, True)
    path = tmp_path / "cnmf.hdf5"
    make_caiman(path)
    viewer = make_napari_viewer()
    viewer.open(str(plane), plugin="napari-catune")
    viewer.open(str(path), plugin="napari-catune")
    kinds = [(type(layer).__name__, layer.name) for layer in viewer.layers]
    assert kinds == [
        ("Image", "suite2p plane0 image"), ("Labels", "suite2p plane0 ROIs"),
        ("Image", "cnmf image"), ("Labels", "cnmf ROIs"),
    ]
    s2p = viewer.layers["suite2p plane0 ROIs"]
    assert isinstance(s2p, napari.layers.Labels)
    assert s2p.metadata["catune"]["traces"].shape == (3, 300)
    assert viewer.layers["cnmf ROIs"].metadata["catune"]["fs"] == 10.0


def test_suite2p_v1_reader(tmp_path, monkeypatch):
    plane, shape, mean = make_suite2p_v1(tmp_path)
    asked = _asker(monkeypatch, True)
    assert callable(rp.get_suite2p_reader(str(plane)))
    layers = rp.read_suite2p(str(plane))
    assert len(asked) == 1  # settings.npy/db.npy/reg_outputs.npy are pickles too
    (image, image_meta, _), (labels, meta, _) = layers
    assert labels.shape == shape and image.shape == shape
    np.testing.assert_array_equal(image, mean)
    cat = meta["metadata"]["catune"]
    assert cat["fs"] == 20.0 and cat["kind"] == "F - 0.6*Fneu"


def test_minian_getter_and_reader(tmp_path):
    ref = make_minian(tmp_path / "minian")
    assert callable(rp.get_minian_reader(str(tmp_path / "minian")))
    for other in (str(tmp_path / "none"), str(tmp_path / "minian" / "C.zarr" / "zarr.json"),
                  None):
        assert rp.get_minian_reader(other) is None
    # any other folder: a reader that says what CaTune reads (napari shows it)
    for other in (str(tmp_path), str(tmp_path / "minian" / "C.zarr" / "C")):
        with pytest.raises(ValueError, match="is not a folder CaTune reads.*Minian output"):
            rp.get_minian_reader(other)(other)
    assert rp.get_suite2p_reader(str(tmp_path / "minian")) is None
    layers = rp.read_minian(str(tmp_path / "minian"))
    want = load_minian_data(tmp_path / "minian")
    assert [t for _, _, t in layers] == ["image", "labels"]
    np.testing.assert_array_equal(layers[0][0], ref["max_proj"])
    np.testing.assert_array_equal(layers[1][0], want.labels)
    cat = layers[1][1]["metadata"]["catune"]
    np.testing.assert_array_equal(cat["traces"], ref["C"].astype(float))
    np.testing.assert_array_equal(cat["roi_ids"], ref["ids"] + 1)
    assert cat["fs"] is None  # Minian keeps no frame rate: the tuner asks
    assert set(np.unique(layers[1][0])) - {0} == set(cat["roi_ids"].tolist())
