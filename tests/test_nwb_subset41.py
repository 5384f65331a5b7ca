"""NWB review fixes (revp41): a DfOverF series of some of a table's ROIs is not
opened as a plane of its own (raw fluorescence first, the notification names
it); suite2p's own multi-plane NWB: the shorter plane's zero padding is NaN
padding with a note, as in suite2p's combined/ folder."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

pytest.importorskip("pynwb")

from pynwb import NWBHDF5IO, NWBFile  # noqa: E402
from pynwb.ophys import (DfOverF, Fluorescence, ImageSegmentation,  # noqa: E402
                         OpticalChannel, RoiResponseSeries)

FS = 30.0
T = 200


def _traces(n, seed, t=T):
    rng = np.random.default_rng(seed)
    return 300 + 20 * rng.standard_normal((n, t))


def _file(identifier):
    nwb = NWBFile(session_description="s", identifier=identifier,
                  session_start_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc))
    dev = nwb.create_device(name="scope")
    mod = nwb.create_processing_module("ophys", "p")
    iseg = ImageSegmentation()
    mod.add(iseg)
    return nwb, dev, mod, iseg


def _plane(nwb, dev, iseg, name, n, shape=(20, 24)):
    ip = nwb.create_imaging_plane(
        name=f"Imaging{name}", optical_channel=OpticalChannel(name="g", description="g",
                                                              emission_lambda=510.0),
        imaging_rate=FS, description="p", device=dev, excitation_lambda=920.0,
        indicator="GCaMP6f", location="V1")
    ps = iseg.create_plane_segmentation(name=name, description="r", imaging_plane=ip)
    for i in range(n):
        m = np.zeros(shape, np.float32)
        m[1 + 2 * i: 2 + 2 * i, 2:5] = 1.0
        ps.add_roi(image_mask=m)
    return ps


def _subset_dff(path, dff_only_plane=False):
    """8 ROIs; Fluorescence of all 8, DfOverF of rows 0-5 only (dF/F kept for
    valid ROIs).  With ``dff_only_plane``, a second table with dF/F only."""
    nwb, dev, mod, iseg = _file("subset")
    ps = _plane(nwb, dev, iseg, "PlaneSegmentation", 8)
    df, fl = DfOverF(), Fluorescence()
    mod.add(df)
    mod.add(fl)
    if dff_only_plane:
        ps2 = _plane(nwb, dev, iseg, "APlane", 3)
        df.create_roi_response_series(
            name="ADfOverF", data=(_traces(3, 7) / 300 - 1).T,
            rois=ps2.create_roi_table_region(region=[0, 1, 2], description="all"),
            unit="n.a.", rate=FS)
    fl.create_roi_response_series(
        name="RoiResponseSeries", data=_traces(8, 1).T,
        rois=ps.create_roi_table_region(region=list(range(8)), description="all"),
        unit="n.a.", rate=FS)
    df.create_roi_response_series(
        name="DfOverF", data=(_traces(6, 1) / 300 - 1).T,
        rois=ps.create_roi_table_region(region=list(range(6)), description="valid"),
        unit="n.a.", rate=FS)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def test_plan_skips_dff_of_some_rois_when_raw_is_there(tmp_path):
    from napari_catune.nwb import plan_nwb_series

    opened, not_opened = plan_nwb_series(_subset_dff(tmp_path / "subset.nwb"))
    assert opened == [("ophys/Fluorescence/RoiResponseSeries", "PlaneSegmentation")]
    assert [p for p, _ in not_opened] == ["ophys/DfOverF/DfOverF"]
    assert "dF/F" in not_opened[0][1]


def test_plan_opens_dff_of_a_table_without_raw_after_the_raw(tmp_path):
    from napari_catune.nwb import plan_nwb_series

    opened, not_opened = plan_nwb_series(_subset_dff(tmp_path / "two.nwb", dff_only_plane=True))
    # the dF/F-only table is opened (it has nothing else), after the raw plane
    assert opened == [("ophys/Fluorescence/RoiResponseSeries", "PlaneSegmentation"),
                      ("ophys/DfOverF/ADfOverF", "APlane")]
    assert [p for p, _ in not_opened] == ["ophys/DfOverF/DfOverF"]


def test_napari_opens_the_raw_series_and_names_the_dff(make_napari_viewer, tmp_path,
                                                       monkeypatch):
    import napari.utils.notifications as nt

    said = []
    monkeypatch.setattr(nt, "show_info", lambda m: said.append(str(m)))
    src = _subset_dff(tmp_path / "subset.nwb")
    viewer = make_napari_viewer(show=False)
    viewer.open(str(src), plugin="napari-catune")
    labels = [la for la in viewer.layers if la._type_string == "labels"]
    assert [la.metadata["catune"]["kind"] for la in labels] == [
        "ophys/Fluorescence/RoiResponseSeries"]
    assert labels[0].metadata["catune"]["traces"].shape == (8, T)
    text = [m for m in said if "opened 1 series" in m]
    assert len(text) == 1 and "DfOverF/DfOverF" in text[0]


def _suite2p_own(path, planes=2, short=5):
    """suite2p's save_nwb layout: one PlaneSegmentation (voxel_mask), series
    Fluorescence/planeN and Neuropil/planeN; the last plane is ``short`` frames
    shorter, its F and Neuropil zero-padded to T as suite2p writes them."""
    nwb, dev, mod, iseg = _file("s2p")
    ip = nwb.create_imaging_plane(
        name="ImagingPlane", optical_channel=OpticalChannel(name="c", description="c",
                                                            emission_lambda=500.0),
        imaging_rate=FS, description="standard", device=dev, excitation_lambda=600.0,
        indicator="GCaMP", location="V1")
    ps = iseg.create_plane_segmentation(name="PlaneSegmentation", description="suite2p",
                                        imaging_plane=ip)
    for p in range(planes):
        for i in range(3):
            ys, xs = np.mgrid[2 + 4 * i: 4 + 4 * i, 1 + 7 * p: 4 + 7 * p]
            ps.add_roi(voxel_mask=np.array([ys.ravel(), xs.ravel(), p * np.ones(ys.size),
                                            np.ones(ys.size)]).T)
    regs = [ps.create_roi_table_region(region=list(range(3 * p, 3 * p + 3)),
                                       description=f"ROIs for plane{p}") for p in range(planes)]
    F = [_traces(3, 10 + p) for p in range(planes)]
    N = [0.2 * _traces(3, 20 + p) for p in range(planes)]
    F[-1][:, T - short:] = 0
    N[-1][:, T - short:] = 0
    for name, arrs in (("Fluorescence", F), ("Neuropil", N)):
        fl = Fluorescence(name=name)
        for p in range(planes):
            fl.add_roi_response_series(RoiResponseSeries(
                name=f"plane{p}", data=arrs[p].T, rois=regs[p], unit="lumens", rate=FS))
        mod.add(fl)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path, F, N


def test_suite2p_own_nwb_zero_padding_is_nan_padding(tmp_path):
    from napari_catune.nwb import load_nwb

    src, F, N = _suite2p_own(tmp_path / "s2p.nwb")
    d1 = load_nwb(src, series="Fluorescence/plane1")
    assert d1.traces.shape == (3, T)
    assert np.isnan(d1.traces[:, T - 5:]).all()
    np.testing.assert_allclose(d1.traces[:, : T - 5], (F[1] - 0.7 * N[1])[:, : T - 5])
    note = next(n for n in d1.notes if n.startswith("suite2p zero padding"))
    assert "3 rows end" in note and f"{T - 5} of {T} frames" in note and "NWB" in note
    d0 = load_nwb(src, series="Fluorescence/plane0")
    assert np.isfinite(d0.traces).all()
    assert not any("zero padding" in n for n in d0.notes)


def test_suite2p_own_nwb_one_plane_keeps_its_zeros(tmp_path):
    from napari_catune.nwb import load_nwb

    src, _, _ = _suite2p_own(tmp_path / "one.nwb", planes=1)
    d = load_nwb(src)
    assert np.isfinite(d.traces).all()
    np.testing.assert_array_equal(d.traces[:, T - 5:], 0.0)
    assert not any("zero padding" in n for n in d.notes)
