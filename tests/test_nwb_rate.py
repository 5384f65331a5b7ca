"""The frame rate of an NWB series that has timestamps instead of a rate: a
least-squares fit of time against frame index, not 1 / median(diff) (which
is 0.85 % off for a 30.048 Hz clock stored to the millisecond)."""

from __future__ import annotations

import datetime
import re

import numpy as np
import pytest

pytest.importorskip("pynwb")

from pynwb import NWBHDF5IO, NWBFile  # noqa: E402
from pynwb.ophys import Fluorescence, ImageSegmentation, OpticalChannel  # noqa: E402

from napari_catune.cli import main  # noqa: E402
from napari_catune.nwb import load_nwb  # noqa: E402
from napari_catune.params import TuningParams, save_params  # noqa: E402

FS = 30.048076923076923  # a resonant scanner's frame rate
T = 3600


def _traces(n, t, seed=0):
    rng = np.random.default_rng(seed)
    k = np.exp(-np.arange(60) / (0.5 * FS)) - np.exp(-np.arange(60) / (0.05 * FS))
    s = (rng.random((n, t)) < 0.02).astype(float)
    x = np.stack([np.convolve(r, k)[:t] for r in s])
    return 300 * (1 + x + 0.05 * rng.standard_normal((n, t)))


def _file(path, timestamps, plane_rate=FS, n=4):
    nwb = NWBFile(session_description="rate", identifier="rate-test",
                  session_start_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc))
    dev = nwb.create_device(name="scope")
    ip = nwb.create_imaging_plane(
        name="ImagingPlane", optical_channel=OpticalChannel(name="g", description="g",
                                                            emission_lambda=510.0),
        imaging_rate=plane_rate, description="p", device=dev, excitation_lambda=920.0,
        indicator="GCaMP6f", location="V1")
    mod = nwb.create_processing_module("ophys", "p")
    iseg = ImageSegmentation()
    mod.add(iseg)
    ps = iseg.create_plane_segmentation(name="PlaneSegmentation", description="r",
                                        imaging_plane=ip)
    for i in range(n):
        ps.add_roi(pixel_mask=[(2 + 4 * i, 3, 1.0), (3 + 4 * i, 3, 1.0)])
    reg = ps.create_roi_table_region(region=list(range(n)), description="all")
    fl = Fluorescence()
    mod.add(fl)
    fl.create_roi_response_series(name="RoiResponseSeries", data=_traces(n, len(timestamps)).T,
                                  rois=reg, unit="n.a.", timestamps=np.asarray(timestamps))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def _ms_stamps():
    return np.round((1234.5 + np.arange(T) / FS) * 1000) / 1000  # a DAQ clock in ms


def _jitter_dropped(seed=5):
    rng = np.random.default_rng(seed)
    ts = 1234.5 + np.arange(T + 1) / FS + rng.uniform(-6e-4, 6e-4, T + 1)
    return np.delete(ts, 1800)  # one dropped frame


def test_ms_quantised_timestamps_give_the_true_rate(tmp_path):
    from napari_catune._timebase import rate_from_timestamps

    ts = _ms_stamps()
    assert abs(1 / np.median(np.diff(ts)) / FS - 1) > 5e-3  # the old estimate: 0.85 % off
    fs, notes = rate_from_timestamps(ts)
    assert abs(fs / FS - 1) < 1e-6
    assert notes == []
    data = load_nwb(_file(tmp_path / "ms.nwb", ts))
    assert abs(data.fs / FS - 1) < 1e-6
    # the irregular-timestamps note reports the quantisation (<= 0.5 ms), not a drift
    # the wrong rate itself made (1 s over 2 minutes)
    irregular = [n for n in data.notes if n.startswith("timestamps irregular")]
    assert len(irregular) == 1
    assert float(re.search(r"up to ([0-9.e+-]+) ms", irregular[0]).group(1)) <= 0.5001
    np.testing.assert_array_equal(data.timestamps, ts)  # kept as they are


def test_jitter_and_a_dropped_frame_deconvolve_at_the_nominal_rate(tmp_path, capsys):
    ts = _jitter_dropped()
    assert abs(1 / np.median(np.diff(ts)) / FS - 1) > 1e-4  # the old estimate: refused
    src = _file(tmp_path / "jit.nwb", ts)
    data = load_nwb(src)
    assert abs(data.fs / FS - 1) < 1e-5
    assert any("1 frame(s) missing" in n and "1800" in n for n in data.notes)
    # parameters tuned at the nominal rate are accepted (params.fs_matches: 1e-4)
    save_params(TuningParams(0.05, 0.5, FS, 0.5), tmp_path / "p.json")
    out = tmp_path / "res.npz"
    assert main(["deconvolve", str(src), "--params", str(tmp_path / "p.json"), "-o", str(out),
                 "-q"]) == 0, capsys.readouterr().err
    assert out.is_file()


def test_plane_rate_that_disagrees_is_said(tmp_path):
    data = load_nwb(_file(tmp_path / "r.nwb", _ms_stamps(), plane_rate=30.0))
    assert abs(data.fs / FS - 1) < 1e-6  # the measured clock wins
    assert any("imaging_rate is 30 Hz" in n for n in data.notes)


def test_rate_helper_edge_cases():
    from napari_catune._timebase import rate_from_timestamps

    assert rate_from_timestamps([1.0])[0] is None
    assert rate_from_timestamps([1.0, 1.0, 1.0])[0] is None
    fs, _ = rate_from_timestamps(np.arange(100) / 20.0)
    assert fs == pytest.approx(20.0, rel=1e-12)
    # an outlier stamp is left out of the fit, and said
    ts = np.arange(1000) / 20.0
    ts[500] += 0.02  # 0.4 frame: not a dropped frame
    fs, notes = rate_from_timestamps(ts)
    assert fs == pytest.approx(20.0, rel=1e-9)
    assert any("left out of the rate fit" in n for n in notes)


def _trials(rng, n=30, frames=300, fs=FS):
    out, t = [], 1234.5
    for _ in range(n):
        out.append(t + np.arange(frames) / fs)
        t = out[-1][-1] + rng.uniform(2.0, 3.0)  # a pause between trials, any length
    return np.concatenate(out)


@pytest.mark.parametrize("case", ["trials", "trials_ms", "jitter_100Hz", "os_timer", "zero_stamp",
                                  "dropped_50", "ms_at_700Hz"])
def test_rate_from_awkward_clocks(case):
    """Pauses between trials, heavy jitter, a coarse clock, a stamp written as 0,
    many dropped frames: the rate stays within fs_matches' tolerance (1e-4) of
    the truth and never worse than the median interval's (review revp41)."""
    from napari_catune._timebase import rate_from_timestamps

    rng = np.random.default_rng(3)
    fs = FS
    if case in ("trials", "trials_ms"):
        ts = _trials(rng)
        if case == "trials_ms":
            ts = np.round(ts * 1000) / 1000
    elif case == "jitter_100Hz":
        fs = 100.0
        ts = np.arange(3600) / fs + rng.normal(0, 0.002, 3600)
    elif case == "os_timer":
        ts = np.floor(np.arange(3600) / fs / 0.015625) * 0.015625  # a 15.6 ms OS timer
    elif case == "zero_stamp":
        ts = 1234.5 + np.arange(3600) / fs
        ts[500] = 0.0
    elif case == "dropped_50":
        ts = np.arange(3650) / fs
        ts = np.delete(ts, rng.choice(np.arange(1, 3649), 50, replace=False))
    else:
        fs = 700.0
        ts = np.round((1234.5 + np.arange(3600) / fs) * 1000) / 1000
    got, notes = rate_from_timestamps(ts)
    old = 1 / np.median(np.diff(ts))
    assert abs(got / fs - 1) < 1e-4, (got, notes)
    assert abs(got / fs - 1) <= abs(old / fs - 1) + 1e-9
    if case.startswith("trials"):  # pauses are said as such, not as thousands of missing frames
        assert any("29 other break(s)" in n for n in notes) and not any("missing" in n for n in notes)
    if case == "dropped_50":
        assert any("50 frame(s) missing" in n for n in notes)
