"""NWB files with several planes / series: napari opens one Labels layer per
plane and says what it did not open; the CLI's --series; suite2p's own NWB
(voxel_mask, series plane0/plane1) drawn per plane; the .nwb export records
the source's identifier, object_ids and imaging-plane metadata."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

pytest.importorskip("pynwb")

from pynwb import NWBHDF5IO, NWBFile  # noqa: E402
from pynwb.ophys import (DfOverF, Fluorescence, ImageSegmentation,  # noqa: E402
                         OpticalChannel, RoiResponseSeries, TwoPhotonSeries)

from napari_catune.cli import main  # noqa: E402
from napari_catune.nwb import load_nwb  # noqa: E402
from napari_catune.params import TuningParams, save_params  # noqa: E402

FS = 30.0
T = 300
SHAPES = ((20, 24), (18, 30))


def _traces(n, seed):
    rng = np.random.default_rng(seed)
    k = np.exp(-np.arange(40) / (0.5 * FS)) - np.exp(-np.arange(40) / (0.05 * FS))
    s = (rng.random((n, T)) < 0.03).astype(float)
    return 200 * (1 + np.stack([np.convolve(r, k)[:T] for r in s])
                  + 0.05 * rng.standard_normal((n, T)))


def _nwbfile(identifier):
    return NWBFile(session_description="planes", identifier=identifier,
                   session_start_time=datetime.datetime(2024, 3, 1, tzinfo=datetime.timezone.utc))


def _two_planes(path, movie=False, planes=2):
    """Two imaging planes, each a PlaneSegmentation with Fluorescence and DfOverF
    series; with ``movie``, plane 0's TwoPhotonSeries (T, x, y) in the file."""
    nwb = _nwbfile("two-planes-id")
    dev = nwb.create_device(name="Mesoscope")
    oc = OpticalChannel(name="Green", description="green", emission_lambda=510.0)
    mod = nwb.create_processing_module("ophys", "processed")
    iseg = ImageSegmentation()
    mod.add(iseg)
    fl, dff = Fluorescence(), DfOverF()
    mod.add(fl)
    mod.add(dff)
    for p, (shape, n) in enumerate(zip(SHAPES[:planes], (3, 4))):
        ip = nwb.create_imaging_plane(
            name=f"ImagingPlane{p}", optical_channel=oc, imaging_rate=FS,
            description=f"plane {p}", device=dev, excitation_lambda=920.0 + p,
            indicator="GCaMP6f", location=f"V1 L{p + 2}")
        if movie and p == 0:
            nwb.add_acquisition(TwoPhotonSeries(
                name="TwoPhotonSeries0", imaging_plane=ip, rate=FS, unit="n.a.",
                data=np.random.default_rng(0).random((T, *shape)).astype(np.float32)))
        ps = iseg.create_plane_segmentation(name=f"PlaneSegmentation{p}", description="rois",
                                            imaging_plane=ip)
        for i in range(n):
            m = np.zeros(shape, np.float32)
            m[2 + 4 * i: 4 + 4 * i, 3 + p: 6 + p] = 1.0
            ps.add_roi(image_mask=m)
        reg = ps.create_roi_table_region(region=list(range(n)), description="all")
        tr = _traces(n, p)
        fl.create_roi_response_series(name=f"RoiResponseSeries{p}", data=tr.T, rois=reg,
                                      unit="lumens", rate=FS)
        dff.create_roi_response_series(name=f"DfOverF{p}", data=(tr.T / 200 - 1), rois=reg,
                                       unit="n.a.", rate=FS)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def _suite2p_own(path):
    """suite2p's save_nwb layout for 2 planes: one PlaneSegmentation with
    voxel_mask (ypix, xpix, iplane, lam), series plane0/plane1 per container."""
    nwb = _nwbfile("s2p-id")
    dev = nwb.create_device(name="Microscope")
    ip = nwb.create_imaging_plane(
        name="ImagingPlane", optical_channel=OpticalChannel(name="OpticalChannel",
                                                            description="c",
                                                            emission_lambda=500.0),
        imaging_rate=FS, description="standard", device=dev, excitation_lambda=600.0,
        indicator="GCaMP", location="V1")
    Ly, Lx = 16, 22
    tps = TwoPhotonSeries(name="TwoPhotonSeries", dimension=[Ly, Lx], external_file=[""],
                          imaging_plane=ip, starting_frame=[0], format="external",
                          starting_time=0.0, num_samples=2 * T, rate=FS * 2)
    nwb.add_acquisition(tps)
    iseg = ImageSegmentation()
    ps = iseg.create_plane_segmentation(name="PlaneSegmentation", description="suite2p output",
                                        imaging_plane=ip, reference_images=tps)
    mod = nwb.create_processing_module(name="ophys", description="optical physiology")
    mod.add(iseg)
    want = []
    for p in range(2):
        lab = np.zeros((Ly, Lx), np.int32)
        for i in range(3):
            ys, xs = np.mgrid[2 + 4 * i: 4 + 4 * i, 1 + 7 * p + i: 4 + 7 * p + i]
            ys, xs = ys.ravel(), xs.ravel()
            ps.add_roi(voxel_mask=np.array([ys, xs, p * np.ones(ys.size),
                                            np.ones(ys.size)]).T)
            lab[ys, xs] = 3 * p + i + 1  # NWB id (3p + i) + 1
        want.append(lab)
    regs = [ps.create_roi_table_region(region=list(range(3 * p, 3 * p + 3)),
                                       description=f"ROIs for plane{p}") for p in range(2)]
    for name, scale in (("Fluorescence", 1.0), ("Neuropil", 0.1), ("Deconvolved", 0.01)):
        fl = Fluorescence(name=name)
        for p in range(2):
            fl.add_roi_response_series(RoiResponseSeries(
                name=f"plane{p}", data=scale * _traces(3, 10 + p).T, rois=regs[p],
                unit="lumens", rate=FS))
        mod.add(fl)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path, want


def test_plan_opens_one_raw_series_per_plane(tmp_path):
    from napari_catune.nwb import plan_nwb_series

    opened, not_opened = plan_nwb_series(_two_planes(tmp_path / "two.nwb"))
    assert opened == [("ophys/Fluorescence/RoiResponseSeries0", "PlaneSegmentation0"),
                      ("ophys/Fluorescence/RoiResponseSeries1", "PlaneSegmentation1")]
    assert sorted(p for p, _ in not_opened) == ["ophys/DfOverF/DfOverF0",
                                                 "ophys/DfOverF/DfOverF1"]


def test_ambiguous_series_lists_only_the_matches(tmp_path):
    src, _ = _suite2p_own(tmp_path / "s2p.nwb")
    with pytest.raises(ValueError, match="matches several") as e:
        load_nwb(src, series="plane1")
    text = str(e.value)
    assert "ophys/Fluorescence/plane1" in text and "ophys/Neuropil/plane1" in text
    assert "plane0" not in text  # only the matches


def test_voxel_mask_drawn_per_plane(tmp_path):
    src, want = _suite2p_own(tmp_path / "s2p.nwb")
    for p in range(2):
        data = load_nwb(src, series=f"Fluorescence/plane{p}")
        assert data.labels is not None, data.notes
        np.testing.assert_array_equal(data.labels, want[p])
        assert data.roi_ids.tolist() == [3 * p + 1, 3 * p + 2, 3 * p + 3]
        assert any(f"voxel_mask (x, y, z, weight) of plane z = {p}" in n for n in data.notes)


def test_cli_series(tmp_path, capsys):
    src = _two_planes(tmp_path / "two.nwb")
    assert main(["info", str(src), "--series", "RoiResponseSeries1"]) == 0
    out = capsys.readouterr().out
    assert "ophys/Fluorescence/RoiResponseSeries1" in out and "(4, 300)" in out
    # an ambiguous or unknown name: one line, rc 2, naming the option
    s2p, _ = _suite2p_own(tmp_path / "s2p.nwb")
    assert main(["info", str(s2p), "--series", "plane1"]) == 2
    err = capsys.readouterr().err
    assert "--series 'plane1' matches several" in err and "plane0" not in err
    assert main(["info", str(src), "--series", "nope"]) == 2
    assert "matches none" in capsys.readouterr().err
    # --series on a file that is not NWB
    np.save(tmp_path / "t.npy", np.zeros((2, 50)))
    assert main(["info", str(tmp_path / "t.npy"), "--series", "x"]) == 2
    assert "only be chosen in an NWB file" in capsys.readouterr().err


def test_export_records_the_source(tmp_path, capsys):
    src = _two_planes(tmp_path / "two.nwb")
    save_params(TuningParams(0.05, 0.5, FS, 0.5), tmp_path / "p.json")
    out = tmp_path / "res.nwb"
    assert main(["deconvolve", str(src), "--series", "RoiResponseSeries1", "--params",
                 str(tmp_path / "p.json"), "-o", str(out), "-q"]) == 0, capsys.readouterr().err
    with NWBHDF5IO(str(src), "r") as io:
        f = io.read()
        series = f.processing["ophys"]["Fluorescence"]["RoiResponseSeries1"]
        want = {"source_identifier": "two-planes-id",
                "series": "ophys/Fluorescence/RoiResponseSeries1",
                "series_object_id": series.object_id,
                "plane_segmentation": "PlaneSegmentation1",
                "plane_segmentation_object_id": series.rois.table.object_id,
                "imaging_plane_object_id": series.rois.table.imaging_plane.object_id,
                "series_unit": "lumens"}
    with NWBHDF5IO(str(out), "r") as io:
        f = io.read()
        table = f.processing["catune"]["source"]
        for k, v in want.items():
            assert table[k].data[0] == v, k
        plane = f.imaging_planes["ImagingPlane"]
        assert plane.indicator == "GCaMP6f" and plane.location == "V1 L3"
        assert plane.excitation_lambda == 921.0 and plane.imaging_rate == FS
        assert plane.device.name == "Mesoscope"
        assert "two-planes-id" in f.session_description
        act = f.processing["catune"]["Deconvolution"]["activity"]
        assert act.unit.startswith("lumens")
    from napari_catune.results import load_results

    got = load_results(out)  # still the project's own reader's
    assert got["activity"].shape == (4, 300)


def test_napari_opens_every_plane_and_says_what_it_left(make_napari_viewer, tmp_path,
                                                        monkeypatch):
    import napari.utils.notifications as nt

    said = []
    monkeypatch.setattr(nt, "show_info", lambda m: said.append(str(m)))
    src = _two_planes(tmp_path / "two.nwb")
    viewer = make_napari_viewer(show=False)
    viewer.open(str(src), plugin="napari-catune")
    labels = [layer for layer in viewer.layers if layer._type_string == "labels"]
    assert [layer.data.shape for layer in labels] == list(SHAPES)
    kinds = [layer.metadata["catune"]["kind"] for layer in labels]
    assert kinds == ["ophys/Fluorescence/RoiResponseSeries0",
                     "ophys/Fluorescence/RoiResponseSeries1"]
    assert [layer.metadata["catune"]["traces"].shape for layer in labels] == [(3, T), (4, T)]
    assert len({layer.name for layer in labels}) == 2
    text = [m for m in said if "opened 2 series" in m]
    assert len(text) == 1
    assert "DfOverF/DfOverF0" in text[0] and "DfOverF/DfOverF1" in text[0]
    assert "--series" in text[0]


def test_napari_suite2p_own_nwb_two_planes(make_napari_viewer, tmp_path):
    src, want = _suite2p_own(tmp_path / "s2p.nwb")
    viewer = make_napari_viewer(show=False)
    viewer.open(str(src), plugin="napari-catune")
    labels = [layer for layer in viewer.layers if layer._type_string == "labels"]
    assert len(labels) == 2
    for layer, lab in zip(labels, want):
        np.testing.assert_array_equal(layer.data, lab)


def test_napari_offers_the_plane_movie_lazily(make_napari_viewer, tmp_path):
    import dask.array as da

    src = _two_planes(tmp_path / "two.nwb", movie=True)
    viewer = make_napari_viewer(show=False)
    viewer.open(str(src), plugin="napari-catune")
    movies = [layer for layer in viewer.layers
              if layer._type_string == "image" and layer.data.ndim == 3]
    assert len(movies) == 1  # plane 0 has one; plane 1 none
    assert isinstance(movies[0].data, da.Array)  # not read into memory
    assert movies[0].data.shape == (T, *SHAPES[0])
    assert movies[0].metadata["catune"]["h5_key"] == "/acquisition/TwoPhotonSeries0/data"
    with NWBHDF5IO(str(src), "r") as io:
        want = io.read().acquisition["TwoPhotonSeries0"].data[5]
    np.testing.assert_array_equal(np.asarray(movies[0].data[5]), want)
    # under the plane's ROIs
    names = [layer.name for layer in viewer.layers]
    rois0 = next(n for n in names if n.endswith("PlaneSegmentation0 ROIs"))
    assert names.index(movies[0].name) < names.index(rois0)


def test_napari_one_plane_says_dff_was_not_opened(make_napari_viewer, tmp_path, monkeypatch):
    import napari.utils.notifications as nt

    said = []
    monkeypatch.setattr(nt, "show_info", lambda m: said.append(str(m)))
    src = _two_planes(tmp_path / "one.nwb", planes=1)
    viewer = make_napari_viewer(show=False)
    viewer.open(str(src), plugin="napari-catune")
    assert len([la for la in viewer.layers if la._type_string == "labels"]) == 1
    assert len(said) == 1 and "opened 1 series" in said[0] and "DfOverF/DfOverF0" in said[0]
