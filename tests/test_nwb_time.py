"""An NWB input's time origin (starting_time / timestamps) reaches every output."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import numpy as np
import pytest

pytest.importorskip("pynwb")

from pynwb import NWBHDF5IO, NWBFile  # noqa: E402
from pynwb.ophys import Fluorescence, ImageSegmentation, OpticalChannel  # noqa: E402

from napari_catune.params import TuningParams, save_params  # noqa: E402

FS, T, N = 20.0, 400, 3
START = datetime(2026, 3, 4, 10, 30, tzinfo=timezone.utc)


def _recording(path, **timing):
    """An NWB file with N ROIs (image masks) and one RoiResponseSeries timed by ``timing``."""
    f = NWBFile(session_description="t", identifier=uuid.uuid4().hex, session_start_time=START)
    dev = f.create_device(name="scope")
    plane = f.create_imaging_plane(
        name="ImagingPlane", description="p", device=dev, excitation_lambda=920.0,
        optical_channel=OpticalChannel(name="g", description="green", emission_lambda=520.0),
        imaging_rate=FS, indicator="GCaMP", location="V1")
    mod = f.create_processing_module(name="ophys", description="ophys")
    seg = ImageSegmentation()
    mod.add(seg)
    ps = seg.create_plane_segmentation(name="PlaneSegmentation", description="s",
                                       imaging_plane=plane)
    for i in range(N):
        m = np.zeros((12, 12))
        m[3 * i:3 * i + 2, 2:5] = 1.0
        ps.add_roi(image_mask=m)
    region = ps.create_roi_table_region(region=list(range(N)), description="all")
    rng = np.random.default_rng(3)
    data = 10.0 + rng.normal(size=(T, N))
    data[50::60] += 8.0
    fl = Fluorescence()
    mod.add(fl)
    fl.create_roi_response_series(name="RoiResponseSeries", data=data, rois=region, unit="a.u.",
                                  **timing)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(f)
    return path


def _deconvolve(tmp_path, src, suffix, capsys=None):
    from napari_catune.cli import main

    p = tmp_path / "p.json"
    if not p.exists():
        save_params(TuningParams(0.05, 0.5, FS, 0.5, baseline="rolling"), p)
    out = tmp_path / f"out_{suffix[1:]}{suffix}"  # each its own sidecar
    assert main(["deconvolve", str(src), "--params", str(p), "-o", str(out), "-q"]) == 0
    return out


def _nwb_series(path):
    with NWBHDF5IO(str(path), "r") as io:
        fl = io.read().processing["catune"]["Deconvolution"]
        return {name: (s.starting_time, None if s.timestamps is None else
                       np.asarray(s.timestamps[:]), s.rate)
                for name, s in fl.roi_response_series.items()}


def test_starting_time_reaches_every_cli_output(tmp_path):
    import pandas as pd

    src = _recording(tmp_path / "rec.nwb", rate=FS, starting_time=12.5)
    series = _nwb_series(_deconvolve(tmp_path, src, ".nwb"))
    assert set(series) >= {"activity", "fit", "baseline"}
    for start, stamps, rate in series.values():
        assert start == 12.5 and stamps is None and rate == FS
    csv = _deconvolve(tmp_path, src, ".csv")
    time_s = pd.read_csv(csv)["time_s"].to_numpy()
    np.testing.assert_allclose(time_s, 12.5 + np.arange(T) / FS, rtol=0, atol=1e-9)
    assert json.loads((csv.with_name("out_csv_metadata.json")).read_text())["start_time_s"] == 12.5
    with np.load(_deconvolve(tmp_path, src, ".npz")) as z:
        assert float(z["t0"]) == 12.5 and "timestamps" not in z.files
    npy = _deconvolve(tmp_path, src, ".npy")
    assert json.loads(npy.with_name("out_npy_metadata.json").read_text())["start_time_s"] == 12.5


def test_regular_timestamps_give_their_first_time(tmp_path):
    jitter = np.random.default_rng(1).uniform(-1e-5, 1e-5, T)  # 0.02% of a frame
    src = _recording(tmp_path / "rec.nwb", timestamps=1000.0 + np.arange(T) / FS + jitter)
    series = _nwb_series(_deconvolve(tmp_path, src, ".nwb"))
    start, stamps, _ = series["activity"]
    assert stamps is None and start == pytest.approx(1000.0 + jitter[0], abs=1e-12)


def test_irregular_timestamps_are_kept_and_said(tmp_path, capsys):
    import pandas as pd

    from napari_catune.results import load_results

    stamps = 5.0 + np.arange(T) / FS
    stamps[200:] += 0.5  # ten frames' worth of gap halfway through
    src = _recording(tmp_path / "rec.nwb", timestamps=stamps)
    out = _deconvolve(tmp_path, src, ".nwb")
    assert "timestamps irregular" in capsys.readouterr().err
    series = _nwb_series(out)
    for name in ("activity", "fit", "baseline"):
        np.testing.assert_array_equal(series[name][1], stamps)
    got = load_results(out)
    assert got["t0"] == 5.0 and got["fs"] == FS
    np.testing.assert_array_equal(got["timestamps"], stamps)
    csv = _deconvolve(tmp_path, src, ".csv")
    np.testing.assert_allclose(pd.read_csv(csv)["time_s"], stamps, rtol=1e-10)
    with np.load(_deconvolve(tmp_path, src, ".npz")) as z:
        np.testing.assert_array_equal(z["timestamps"], stamps)
    npy = _deconvolve(tmp_path, src, ".npy")
    side = json.loads(npy.with_name("out_npy_metadata.json").read_text())
    assert side["start_time_s"] == 5.0 and side["timestamps_s"] == stamps.tolist()


def test_napari_exports_keep_the_time_origin(tmp_path):
    import pandas as pd

    from napari_catune._reader import read_nwb
    from napari_catune._writer import write_results_csv, write_results_nwb

    src = _recording(tmp_path / "rec.nwb", rate=FS, starting_time=12.5)
    labels, meta, _ = [layer for layer in read_nwb(str(src)) if layer[2] == "labels"][0]
    cat = meta["metadata"]["catune"]
    assert cat["t0"] == 12.5
    act = np.maximum(cat["traces"] - 10.0, 0.0)
    cat["results"] = {"activity": act, "reconvolution": act + 10.0, "baseline": np.full(N, 10.0),
                      "roi_ids": cat["roi_ids"],
                      "params": TuningParams(0.05, 0.5, FS, 0.5).to_dict()}
    csv = tmp_path / "gui.csv"
    write_results_csv(str(csv), labels, meta)
    assert pd.read_csv(csv)["time_s"].iloc[0] == 12.5
    nwb = tmp_path / "gui.nwb"
    write_results_nwb(str(nwb), labels, meta)
    assert _nwb_series(nwb)["activity"][0] == 12.5


def test_tuner_draws_an_events_csv_of_the_recordings_clock_at_its_frames(
        make_napari_viewer, qtbot, monkeypatch, tmp_path):
    """A recording starting at 12.5 s: its events CSV (detect_events with the
    results' t0, times from 12.5 s) is drawn at the events' frames on the
    tuner's time axis (seconds from the first frame), with no 'after the last
    frame' warning."""
    import sys

    from qtpy.QtCore import Qt

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from _widgets import big_viewer, notes_fixture, open_tuner, wait

    import napari_catune._qt.actions as actions_mod
    from napari_catune.events import detect_events, save_events_csv

    notes = notes_fixture(monkeypatch)
    src = _recording(tmp_path / "rec.nwb", rate=FS, starting_time=12.5)
    viewer = big_viewer(make_napari_viewer)  # both rows on screen, drawn
    viewer.open(str(src), plugin="napari-catune")
    w = open_tuner(viewer)
    wait(qtbot, w)
    ids = [int(i) for i in w.session.source.roi_ids]
    act = np.zeros((N, T))
    act[0, [60, 300]] = 1.0
    act[1, 200] = 1.0
    ev = save_events_csv(tmp_path / "ev.csv", detect_events(act, FS, roi_ids=ids, t0=12.5))
    monkeypatch.setattr(actions_mod.QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(ev), "")))
    w.select_rois(ids[:2])
    wait(qtbot, w)
    qtbot.mouseClick(w.truth_btn, Qt.LeftButton)
    wait(qtbot, w)
    r0, r1 = w.traces.shown
    np.testing.assert_allclose(np.unique(r0.truth.xData), [60 / FS, 300 / FS])
    np.testing.assert_allclose(np.unique(r1.truth.xData), [200 / FS])
    assert not notes["warning"], notes["warning"]


def test_an_npy_output_keeps_its_clock_in_its_sidecar(tmp_path):
    # the sidecar records start_time_s / timestamps_s; the results .npy itself is
    # refused as an input (deconvolved activity), a traces .npy with that sidecar
    # clock (a hand-off) is read back with it
    from napari_catune.sources import SourceError, open_source

    src = _recording(tmp_path / "rec.nwb", rate=FS, starting_time=12.5)
    out = _deconvolve(tmp_path, src, ".npy")
    meta = json.loads(out.with_name(out.stem + "_metadata.json").read_text())
    assert meta["start_time_s"] == 12.5 and "timestamps_s" not in meta
    with pytest.raises(SourceError, match="is a napari-catune results file"):
        open_source(out)
    stamps = 1000.0 + np.cumsum(np.r_[0.0, np.full(T - 1, 1 / FS)])
    stamps[200:] += 0.5  # a pause: irregular
    src2 = _recording(tmp_path / "rec2.nwb", timestamps=stamps)
    (tmp_path / "b").mkdir()
    out2 = _deconvolve(tmp_path / "b", src2, ".npy")
    meta = json.loads(out2.with_name(out2.stem + "_metadata.json").read_text())
    np.testing.assert_array_equal(meta["timestamps_s"], stamps)
    traces = tmp_path / "b" / "tr.npy"
    np.save(traces, np.load(out2) + 1.0)
    meta["content"] = "ROI traces"
    side = traces.with_name("tr_metadata.json")
    side.write_text(json.dumps(meta))
    again2 = open_source(traces)
    assert again2.t0 == 1000.0
    np.testing.assert_array_equal(again2.timestamps, stamps)
    meta["timestamps_s"] = meta["timestamps_s"][:-1]
    side.write_text(json.dumps(meta))
    with pytest.raises(SourceError, match="not a time axis of"):
        open_source(traces)
