"""NWB ophys files: read (suite2p and CaImAn layouts, written here by pynwb) and write results.

The files are made with pynwb in the layouts the two pipelines' NWB writers
use (suite2p ``suite2p/io/nwb.py`` ``save_nwb``; CaImAn
``Estimates.save_NWB``); see the module docstring of ``napari_catune.nwb``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import numpy as np
import pytest

pynwb = pytest.importorskip("pynwb")  # the nwb extra, part of the testing extras

from pynwb import NWBHDF5IO, NWBFile  # noqa: E402
from pynwb.base import Images  # noqa: E402
from pynwb.image import GrayscaleImage  # noqa: E402
from pynwb.ophys import (  # noqa: E402
    DfOverF,
    Fluorescence,
    ImageSegmentation,
    OpticalChannel,
    RoiResponseSeries,
    TwoPhotonSeries,
)

from napari_catune.loaders import PipelineData  # noqa: E402
from napari_catune.nwb import list_nwb_series, load_nwb  # noqa: E402
from napari_catune.params import TuningParams  # noqa: E402
from napari_catune.results import load_results, save_results  # noqa: E402

X, Y, T, FS = 24, 32, 60, 15.0
START = datetime(2026, 3, 4, 10, 30, tzinfo=timezone.utc)


def _footprints():
    """Three ROIs on an (X, Y) plane, the second overlapping the first."""
    masks = np.zeros((3, X, Y))
    masks[0, 2:6, 3:8] = 1.0
    masks[1, 5:9, 7:12] = 0.5  # overlaps ROI 0 at [5, 7]: ROI 0 keeps it (weight 1)
    masks[2, 15:20, 25:30] = np.linspace(0.1, 1.0, 25).reshape(5, 5)
    return masks


def _traces(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, T)) + 5.0


def _nwbfile(fs=FS, **kw):
    """A file with an imaging plane at ``fs`` (``kw``: more NWBFile fields)."""
    f = NWBFile(session_description="test", identifier=uuid.uuid4().hex, session_start_time=START,
                **kw)
    device = f.create_device(name="Microscope")
    plane = f.create_imaging_plane(
        name="ImagingPlane", description="plane", device=device,
        optical_channel=OpticalChannel(name="OpticalChannel", description="green",
                                       emission_lambda=520.0),
        excitation_lambda=920.0, imaging_rate=fs, indicator="GCaMP6f", location="V1")
    return f, plane


def _write(f, path):
    with NWBHDF5IO(str(path), "w") as io:
        io.write(f)
    return path


@pytest.fixture
def suite2p_nwb(tmp_path):
    """suite2p's layout: pixel_mask (ypix, xpix, lam), plane0 series in Fluorescence,
    Neuropil and Deconvolved, Backgrounds_0 images, external TwoPhotonSeries."""
    f, plane = _nwbfile()
    movie = TwoPhotonSeries(name="TwoPhotonSeries", dimension=[X, Y], external_file=["rec.tif"],
                            imaging_plane=plane, starting_frame=[0], format="external",
                            starting_time=0.0, rate=FS * 1, num_samples=T)
    f.add_acquisition(movie)
    seg = ImageSegmentation()
    ps = seg.create_plane_segmentation(name="PlaneSegmentation", description="suite2p output",
                                       imaging_plane=plane, reference_images=movie)
    ophys = f.create_processing_module(name="ophys", description="optical physiology")
    ophys.add(seg)
    for m in _footprints():
        ypix, xpix = np.nonzero(m)
        ps.add_roi(pixel_mask=np.column_stack([ypix, xpix, m[ypix, xpix]]))
    ps.add_column("iscell", "iscell & probcell", np.array([[1, 0.9], [0, 0.2], [1, 0.8]]))
    region = ps.create_roi_table_region(region=[0, 1, 2], description="ROIs for plane0")
    F, Fneu, spks = _traces(seed=1), _traces(seed=2), np.abs(_traces(seed=3))
    for name, data in (("Fluorescence", F), ("Neuropil", Fneu), ("Deconvolved", spks)):
        rrs = RoiResponseSeries(name="plane0", data=data.T, rois=region, unit="lumens", rate=FS)
        ophys.add(Fluorescence(roi_response_series=rrs, name=name))
    images = Images(name="Backgrounds_0")
    mean = np.arange(X * Y, dtype=float).reshape(X, Y)
    images.add_image(GrayscaleImage(name="meanImg", data=mean))
    images.add_image(GrayscaleImage(name="Vcorr", data=np.zeros((X, Y))))
    ophys.add(images)
    return _write(f, tmp_path / "suite2p_ophys.nwb"), F, Fneu, mean


@pytest.fixture
def caiman_nwb(tmp_path):
    """CaImAn's layout: image_mask components then background rows, a Fluorescence
    RoiResponseSeries with timestamps, and the background series."""
    f, plane = _nwbfile()
    seg = ImageSegmentation()
    ps = seg.create_plane_segmentation(name="PlaneSegmentation", description="CNMF_ROIs",
                                       imaging_plane=plane)
    mod = f.create_processing_module(name="ophys", description="caiman estimates")
    mod.add(seg)
    for col in ("r", "snr", "cnn", "keep", "accepted", "rejected"):
        ps.add_column(col, col)
    for i, m in enumerate(_footprints()):
        # as save_NWB writes it: A's column (pixels in Fortran order) reshaped in C order
        ps.add_roi(image_mask=m.ravel(order="F").reshape(m.shape), r=0.9, snr=5.0, cnn=0.9,
                   keep=True, accepted=False,
                   rejected=False)
    ps.add_roi(image_mask=np.ones((X, Y)), r=np.nan, snr=np.nan, cnn=np.nan, keep=False,
               accepted=False, rejected=False)  # the background component
    rois = ps.create_roi_table_region(description="ROIs", region=[0, 1, 2])
    bg = ps.create_roi_table_region(description="Background", region=[3])
    fl = Fluorescence()
    mod.add(fl)
    C = _traces(seed=4)
    stamps = 2.0 + np.arange(T) / FS
    fl.create_roi_response_series(name="RoiResponseSeries", data=C.T, rois=rois, unit="lumens",
                                  timestamps=stamps)
    fl.create_roi_response_series(name="Background_Fluorescence_Response",
                                  data=np.ones((T, 1)), rois=bg, unit="lumens",
                                  timestamps=stamps)
    return _write(f, tmp_path / "caiman.nwb"), C


@pytest.fixture
def dff_with_movie(tmp_path):
    """Only a DfOverF container, custom ids, and a TwoPhotonSeries holding the movie."""
    return _dff_nwb(tmp_path)


def _dff_nwb(tmp_path, ids=(10, 20, 30), region=(0, 1, 2), name="dff.nwb"):
    f, plane = _nwbfile()
    movie = np.random.default_rng(5).random((T, X, Y))
    f.add_acquisition(TwoPhotonSeries(name="TwoPhotonSeries", data=movie, imaging_plane=plane,
                                      rate=FS, unit="a.u."))
    seg = ImageSegmentation()
    ps = seg.create_plane_segmentation(name="PlaneSegmentation", description="rois",
                                       imaging_plane=plane)
    mod = f.create_processing_module(name="ophys", description="ophys")
    mod.add(seg)
    masks = _footprints()
    for nwb_id, m in zip(ids, masks):
        x, y = np.nonzero(m)
        ps.add_roi(id=nwb_id, pixel_mask=np.column_stack([x, y, m[x, y]]))
    dff = DfOverF()
    mod.add(dff)
    D = _traces(seed=6)[:len(region)]
    rois = ps.create_roi_table_region(region=list(region), description="all")
    dff.create_roi_response_series(name="dff", data=D.T, rois=rois, unit="n.a.", rate=FS)
    return _write(f, tmp_path / name), D, movie


def _expected_labels(ids):
    masks = _footprints()
    lab = np.zeros((X, Y), np.int32)
    best = np.zeros((X, Y))
    for rid, m in zip(ids, masks):
        take = m > best
        lab[take], best[take] = rid, m[take]
    return lab


# ---------------------------------------------------------------- reading


def test_suite2p_layout(suite2p_nwb):
    path, F, Fneu, mean = suite2p_nwb
    data = load_nwb(path, only_cells=False)  # (the default: only the cells, 1 and 3)
    assert isinstance(data, PipelineData)
    # F - 0.7 Fneu, as load_suite2p computes it from the plane folder
    np.testing.assert_allclose(data.traces, F - 0.7 * Fneu, rtol=1e-12)
    assert data.traces.shape == (3, T) and data.traces.dtype == np.float64
    assert data.fs == FS
    np.testing.assert_array_equal(data.roi_ids, [1, 2, 3])  # NWB ids 0..2, + 1
    assert data.labels.shape == (X, Y) and data.labels.dtype == np.int32
    np.testing.assert_array_equal(data.labels, _expected_labels([1, 2, 3]))
    assert data.labels[5, 7] == 1 and data.labels[8, 11] == 2  # overlap: larger weight
    # which ROIs share the pixel is kept (a click there names both)
    assert data.shared["pixels"].tolist() == [[5, 7]] and data.shared["rois"] == [(1, 2)]
    np.testing.assert_array_equal(data.mean_image, mean)  # Backgrounds_0/meanImg
    assert data.kind == "ophys/Fluorescence/plane0 - 0.7*Neuropil"
    assert any("Neuropil" in n for n in data.notes)
    assert sorted(list_nwb_series(path)) == ["ophys/Deconvolved/plane0",
                                             "ophys/Fluorescence/plane0", "ophys/Neuropil/plane0"]
    # raw F, or another series, on request
    np.testing.assert_allclose(load_nwb(path, neuropil_coefficient=0).traces, F[[0, 2]])
    assert load_nwb(path, series="Deconvolved/plane0").kind == "ophys/Deconvolved/plane0"


def test_caiman_layout(caiman_nwb):
    path, C = caiman_nwb
    data = load_nwb(path)
    np.testing.assert_allclose(data.traces, C, rtol=1e-12)  # estimates.C, not the background
    assert data.fs == pytest.approx(FS, rel=1e-9)  # from the timestamps
    np.testing.assert_array_equal(data.roi_ids, [1, 2, 3])
    np.testing.assert_array_equal(data.labels, _expected_labels([1, 2, 3]))
    assert data.kind == "ophys/Fluorescence/RoiResponseSeries"
    assert "footprints: image_mask" in data.notes
    assert any("timestamps" in n for n in data.notes)


def test_only_cells(suite2p_nwb, caiman_nwb):
    path, F, Fneu, _ = suite2p_nwb
    data = load_nwb(path, only_cells=True)  # iscell column: ROIs 0 and 2
    np.testing.assert_allclose(data.traces, (F - 0.7 * Fneu)[[0, 2]], rtol=1e-12)
    np.testing.assert_array_equal(data.roi_ids, [1, 3])
    assert set(np.unique(data.labels)) == {0, 1, 3}
    assert any("'iscell'" in n and "2 of 3" in n for n in data.notes)
    cpath, C = caiman_nwb
    cm = load_nwb(cpath, only_cells=True)  # keep column: all three components
    np.testing.assert_allclose(cm.traces, C, rtol=1e-12)
    assert any("'keep'" in n for n in cm.notes)


def test_dff_ids_and_movie(dff_with_movie):
    path, D, movie = dff_with_movie
    data = load_nwb(path)
    np.testing.assert_allclose(data.traces, D)
    # ids >= 1 are the ROI ids as they are (the thirty-eighth round; they were + 1)
    np.testing.assert_array_equal(data.roi_ids, [10, 20, 30])
    np.testing.assert_array_equal(data.nwb_ids, [10, 20, 30])
    np.testing.assert_array_equal(data.labels, _expected_labels([10, 20, 30]))
    assert data.labels.shape == movie.shape[1:]  # the plane size comes from the movie
    # no summary image: the mean of the movie's first frames
    np.testing.assert_allclose(data.mean_image, movie.mean(axis=0), rtol=1e-12)
    assert data.fs == FS


def test_bad_choices_and_files(suite2p_nwb, tmp_path):
    path = suite2p_nwb[0]
    with pytest.raises(ValueError, match="series='nope' matches none"):
        load_nwb(path, series="nope")
    with pytest.raises(ValueError, match="matches several"):
        load_nwb(path, series="plane0")
    with pytest.raises(ValueError, match="neuropil_coefficient must be >= 0"):
        load_nwb(path, neuropil_coefficient=-1)
    bad = tmp_path / "bad.nwb"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="not a readable NWB"):
        load_nwb(bad)
    f, _ = _nwbfile()
    empty = _write(f, tmp_path / "empty.nwb")
    with pytest.raises(ValueError, match="no ROI traces found"):
        load_nwb(empty)
    with pytest.raises(FileNotFoundError):
        load_nwb(tmp_path / "none.nwb")


# ---------------------------------------------------------------- writing


def _results(n=3):
    rng = np.random.default_rng(8)
    act = np.maximum(rng.normal(size=(n, T)), 0)
    return dict(activity=act, fit=act + 5.0, baseline=np.full(n, 5.0),
                events={"roi_id": np.array([1, 3]), "onset_s": np.array([0.5, 1.5]),
                        "amplitude": np.array([1.0, 2.0])},
                roi_ids=np.arange(1, n + 1), fs=FS,
                params=TuningParams(0.05, 0.6, FS, 0.2, baseline="rolling"),
                features={"snr": np.arange(n, dtype=float), "converged": np.ones(n, bool)})


def test_results_round_trip_with_footprints_and_session(suite2p_nwb, tmp_path):
    src = suite2p_nwb[0]
    data = load_nwb(src)
    r = _results()
    (out,) = save_results(tmp_path / "res.nwb", **r, labels=data.labels, source=str(src))
    got = load_results(out)
    np.testing.assert_array_equal(got["activity"], r["activity"])
    np.testing.assert_array_equal(got["fit"], r["fit"])
    np.testing.assert_array_equal(got["baseline"], r["baseline"])
    np.testing.assert_array_equal(got["roi_ids"], r["roi_ids"])
    assert got["fs"] == FS and got["params"] == r["params"]
    np.testing.assert_array_equal(got["events"]["onset_s"], [0.5, 1.5])
    assert got["features"]["converged"].tolist() == [True] * 3
    # the file is plain NWB: pynwb reads its modules, the ROIs keep their masks
    with NWBHDF5IO(str(out), "r") as io:
        f = io.read()
        assert f.session_start_time == START  # copied from the source recording
        assert set(f.processing) == {"ophys", "catune"}
        act = f.processing["catune"]["Deconvolution"]["activity"]
        assert act.data.shape == (T, 3) and act.rate == FS
        assert "frame 0" in act.description and "before the recording" in act.description
        assert act.rois.table is f.processing["ophys"]["ImageSegmentation"]["PlaneSegmentation"]
        assert f.processing["catune"]["parameters"]["baseline"].data[0] == "rolling"
    back = load_nwb(out, series="catune/Deconvolution/activity")
    np.testing.assert_array_equal(back.labels, data.labels)
    np.testing.assert_array_equal(back.roi_ids, r["roi_ids"])
    src_again = load_nwb(src)  # the source file is untouched
    np.testing.assert_array_equal(src_again.traces, data.traces)


def test_results_without_footprints_get_tiles_and_per_frame_baseline(tmp_path):
    from napari_catune.loaders import tile_labels

    r = _results(n=2)
    r["baseline"] = np.ones((2, T))
    r["roi_ids"] = np.array([5, 9])
    (out,) = save_results(tmp_path / "res.nwb", **{**r, "events": None})
    got = load_results(out)
    np.testing.assert_array_equal(got["baseline"], np.ones((2, T)))
    assert got["events"] is None
    back = load_nwb(out, series="activity")
    np.testing.assert_array_equal(back.labels, tile_labels(2, ids=[5, 9]))


def test_results_file_is_not_taken_as_traces(tmp_path):
    (out,) = save_results(tmp_path / "res.nwb", **_results())
    with pytest.raises(ValueError, match="is a napari-catune results file"):
        load_nwb(out)


def test_failed_nwb_write_leaves_no_file(tmp_path, monkeypatch):
    from napari_catune import _atomic

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(_atomic.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_results(tmp_path / "res.nwb", **_results())
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- napari reader


def test_napari_reader_layers(suite2p_nwb):
    from napari_catune._reader import get_nwb_reader

    path = suite2p_nwb[0]
    reader = get_nwb_reader(str(path))
    assert callable(reader)
    layers = reader(str(path))
    kinds = [k for _, _, k in layers]
    assert kinds == ["image", "labels"]
    (img, img_meta, _), (lab, lab_meta, _) = layers
    cat = lab_meta["metadata"]["catune"]
    assert cat["fs"] == FS and cat["traces"].shape == (2, T)  # the cells (iscell column)
    assert cat["roi_ids"].tolist() == [1, 3] and lab.shape == img.shape == (X, Y)
    assert cat["kind"].startswith("ophys/Fluorescence/plane0")


def test_napari_reader_declines_other_files(tmp_path):
    from napari_catune._reader import get_nwb_reader

    (tmp_path / "x.nwb").write_text("hello")
    assert get_nwb_reader(str(tmp_path / "x.nwb")) is None
    assert get_nwb_reader(str(tmp_path / "missing.nwb")) is None
    assert get_nwb_reader(str(tmp_path / "x.h5")) is None
    assert get_nwb_reader([str(tmp_path / "a.nwb"), str(tmp_path / "b.nwb")]) is None


def test_viewer_opens_nwb(make_napari_viewer, caiman_nwb):
    viewer = make_napari_viewer()
    layers = viewer.open(str(caiman_nwb[0]), plugin="napari-catune")
    labels = [layer for layer in layers if layer._type_string == "labels"]
    assert len(labels) == 1
    np.testing.assert_allclose(labels[0].metadata["catune"]["traces"], caiman_nwb[1])


def test_cli_reads_nwb_like_the_plugin(suite2p_nwb, tmp_path, capsys):
    from napari_catune.cli import main
    from napari_catune.params import TuningParams, save_params
    from napari_catune.solver import run_deconvolution

    path, F, Fneu, _ = suite2p_nwb
    assert main(["info", str(path)]) == 0
    assert "NWB" in capsys.readouterr().out
    p = TuningParams(0.05, 0.5, FS, 0.01)
    save_params(p, tmp_path / "p.json")
    out = tmp_path / "act.npy"
    assert main(["deconvolve", str(path), "--params", str(tmp_path / "p.json"), "-o", str(out),
                 "-q"]) == 0
    cells = (F - 0.7 * Fneu)[[0, 2]]  # the iscell column's cells, as the plugin reads them
    np.testing.assert_allclose(np.load(out), run_deconvolution(cells, FS, 0.05, 0.5, 0.01),
                               rtol=1e-9, atol=1e-12)


def _cli_outputs(path, tmp_path, stem):
    import pandas as pd

    from napari_catune import cli
    from napari_catune.params import save_params

    p = tmp_path / "p.json"
    save_params(TuningParams(0.05, 0.4, FS, 0.2), p)
    outs = {}
    for ext in (".npz", ".csv", ".nwb"):
        out = tmp_path / f"{stem}_{ext[1:]}{ext}"
        assert cli.main(["deconvolve", str(path), "--params", str(p), "-o", str(out), "-q"]) == 0
        outs[ext] = out
    with np.load(outs[".npz"]) as z:
        npz_ids = z["roi_ids"].tolist()
    csv_ids = [int(c[4:]) for c in pd.read_csv(outs[".csv"]).columns if c.startswith("roi_")]
    with NWBHDF5IO(str(outs[".nwb"]), "r") as io:
        ps = io.read().processing["ophys"]["ImageSegmentation"]["PlaneSegmentation"]
        table_ids, roi_col = ps.id.data[:].tolist(), ps["roi_id"].data[:].tolist()
    return npz_ids, csv_ids, table_ids, roi_col, load_results(outs[".nwb"])["roi_ids"].tolist()


def test_ids_of_a_foreign_nwb_join_back_in_every_output(dff_with_movie, tmp_path):
    """NWB ids 10, 20, 30: every output names them 10, 20, 30 (not 11, 21, 31),
    and the results .nwb's PlaneSegmentation ids are the source's."""
    path, _, _ = dff_with_movie
    npz_ids, csv_ids, table_ids, roi_col, reread = _cli_outputs(path, tmp_path, "dff_out")
    assert npz_ids == csv_ids == table_ids == roi_col == reread == [10, 20, 30]


def test_zero_based_nwb_ids_are_shifted_and_written_back(suite2p_nwb, tmp_path):
    """suite2p-style ids 0..2 (cells 0 and 2): ROI ids 1 and 3 in the results,
    the results .nwb's PlaneSegmentation ids 0 and 2 (the source's), roi_id 1, 3."""
    path = suite2p_nwb[0]
    data = load_nwb(path)
    assert data.roi_ids.tolist() == [1, 3] and data.nwb_ids.tolist() == [0, 2]
    assert any("NWB ids + 1" in n and "start at 0" in n for n in data.notes)
    npz_ids, csv_ids, table_ids, roi_col, reread = _cli_outputs(path, tmp_path, "s2p_out")
    assert npz_ids == csv_ids == roi_col == reread == [1, 3]
    assert table_ids == [0, 2]


def test_duplicate_nwb_ids_still_give_every_output(tmp_path):
    # (review revc: ids 5, 5, 6 got ROI ids 1-3, but the .nwb writer was handed the
    # duplicates and refused)
    path, _, _ = _dff_nwb(tmp_path, ids=(5, 5, 6))
    npz_ids, csv_ids, table_ids, roi_col, reread = _cli_outputs(path, tmp_path, "dup_out")
    assert npz_ids == csv_ids == table_ids == roi_col == reread == [1, 2, 3]


def test_a_series_without_row_0_of_a_0_based_table_is_shifted_too(tmp_path):
    # (review revc: the + 1 was decided on the series' rows only, so the same
    # ROIs got other ids in another series of the file that names row 0)
    path, _, _ = _dff_nwb(tmp_path, ids=(0, 1, 2), region=(1, 2))
    data = load_nwb(path)
    assert data.roi_ids.tolist() == [2, 3] and data.nwb_ids.tolist() == [1, 2]


def test_results_nwb_without_an_nwb_source_uses_the_roi_ids(tmp_path):
    r = _results()
    out = save_results(tmp_path / "r.nwb", **r)[0]
    with NWBHDF5IO(str(out), "r") as io:
        ps = io.read().processing["ophys"]["ImageSegmentation"]["PlaneSegmentation"]
        assert ps.id.data[:].tolist() == ps["roi_id"].data[:].tolist() == list(r["roi_ids"])
