"""Results files (napari_catune.results): npz, csv, npy + sidecar, features CSV."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from napari_catune import _atomic
from napari_catune.params import TuningParams
from napari_catune.results import load_results, save_features_csv, save_results

PARAMS = TuningParams(0.04, 0.9, 12.5, 0.3, baseline="drift", drift_scale=20.0)
IDS = np.array([3, 8, 21])


def _results(t=40, per_frame_baseline=False):
    rng = np.random.default_rng(2)
    act = np.maximum(rng.normal(size=(3, t)), 0.0)
    act[0, 5] = 1.0 / 3.0  # needs all 17 digits
    base = rng.normal(size=(3, t)) if per_frame_baseline else np.array([1.5, -0.25, 2.0])
    fit = act + (base if base.ndim == 2 else base[:, None])
    events = {"roi_id": np.array([3, 3, 21]), "onset_s": np.array([0.4, 1.2, 2.0]),
              "amplitude": np.array([1.0, 2.5, 0.75])}
    features = {"snr": np.array([4.0, 0.5, 9.25]), "converged": np.array([True, False, True]),
                "label": np.array(["a", "b", "c"])}
    return dict(activity=act, fit=fit, baseline=base, events=events, roi_ids=IDS, fs=12.5,
                params=PARAMS, features=features)


@pytest.mark.parametrize("per_frame", [False, True])
def test_npz_round_trip_is_exact(tmp_path, per_frame):
    r = _results(per_frame_baseline=per_frame)
    (path,) = save_results(tmp_path / "res.npz", **r)
    got = load_results(path)
    for key in ("activity", "fit", "baseline"):
        assert got[key].dtype == np.float64
        np.testing.assert_array_equal(got[key], r[key])
    np.testing.assert_array_equal(got["roi_ids"], IDS)
    assert got["roi_ids"].dtype == np.int64
    assert got["fs"] == 12.5 and got["params"] == PARAMS
    for key, col in r["events"].items():
        np.testing.assert_array_equal(got["events"][key], col)
    for key, col in r["features"].items():
        np.testing.assert_array_equal(got["features"][key], col)


def test_npz_layout_is_plain_numpy(tmp_path):
    # a lab needs numpy and json only (no pickles, no napari-catune)
    (path,) = save_results(tmp_path / "res.npz", **_results())
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) == {
            "format", "format_version", "activity", "fit", "baseline", "roi_ids", "fs", "t0",
            "params",
            "events.roi_id", "events.onset_s", "events.amplitude",
            "features.snr", "features.converged", "features.label",
            "converged",  # the features' solver answers, also top level (as the CLI's)
        }
        assert str(z["format"]) == "napari-catune results"
        assert z["activity"].shape == (3, 40) and z["fs"].shape == ()
        doc = json.loads(str(z["params"]))
    assert doc["parameters"]["tau_rise_s"] == 0.04 and doc["parameters"]["lambda"] == 0.3
    assert doc["formulation"]["baseline"] == "drift" and doc["formulation"]["drift_scale_s"] == 20.0


def test_optional_parts_are_absent_not_empty(tmp_path):
    r = _results()
    (path,) = save_results(tmp_path / "res.npz", **{**r, "fit": None, "baseline": None,
                                                     "events": None, "features": None})
    with np.load(path, allow_pickle=False) as z:
        assert not {"fit", "baseline"} & set(z.files)
        assert not [k for k in z.files if k.startswith(("events.", "features."))]
    got = load_results(path)
    assert got["fit"] is None and got["events"] is None and got["features"] is None


def test_events_as_a_dataframe_or_structured_array(tmp_path):
    import pandas as pd

    r = _results()
    df = pd.DataFrame(r["events"])
    rec = df.to_records(index=False)
    for events in (df, rec):
        (path,) = save_results(tmp_path / "e.npz", **{**r, "events": events})
        np.testing.assert_array_equal(load_results(path)["events"]["onset_s"], [0.4, 1.2, 2.0])


def test_csv_is_wide_with_ids_and_a_sidecar(tmp_path):
    r = _results()
    written = save_results(tmp_path / "act.csv", **r, source="/home/ana/rec_F.npy")
    assert [p.name for p in written] == ["act.csv", "act_features.csv", "act_metadata.json"]
    with open(written[0], newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["time_s", "roi_3", "roi_8", "roi_21"]
    table = np.array(rows[1:], dtype=float)
    assert table.shape == (40, 4)
    np.testing.assert_allclose(table[:, 0], np.arange(40) / 12.5, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(table[:, 1:], r["activity"].T, rtol=1e-9, atol=0)
    meta = json.loads(written[2].read_text())
    assert meta["sampling_rate_hz"] == 12.5 and meta["roi_ids"] == [3, 8, 21]
    assert meta["num_timepoints"] == 40 and meta["source_filename"] == "rec_F.npy"
    assert meta["catune_params"]["formulation"]["baseline"] == "drift"
    assert "wide" in meta["csv_layout"]
    # frame 0 is the calcium before the recording: the sidecar says so
    assert "frame 0" in meta["activity_frame_0"] and "before" in meta["activity_frame_0"]
    feats = written[1].read_text().splitlines()
    assert feats[0] == "roi_id,snr,converged,label"
    assert feats[1:] == ["3,4,true,a", "8,0.5,false,b", "21,9.25,true,c"]


def test_npy_reads_back_with_ids_and_fs(tmp_path):
    from napari_catune._reader import read_traces
    from napari_catune.io import load_tuning_data

    r = _results()
    npy, side = save_results(tmp_path / "act.npy", **r)
    traces, meta = load_tuning_data(npy)
    np.testing.assert_array_equal(traces, r["activity"])
    assert meta["roi_ids"] == [3, 8, 21] and meta["sampling_rate_hz"] == 12.5
    # the activity is not fluorescence: the tuner's reader names the file instead
    # of tuning it (tests/test_reader_results.py)
    with pytest.raises(ValueError, match="is a napari-catune results file"):
        read_traces(str(npy))


def test_features_csv_standalone(tmp_path):
    path = save_features_csv(tmp_path / "f.csv",
                             {"index": [0, 1], "roi_id": [5, 6], "snr": [1.0, np.nan]})
    assert path.read_text().splitlines() == ["roi_id,snr", "5,1", "6,nan"]
    path = save_features_csv(tmp_path / "g.csv", {"snr": [2.0, 3.0]}, roi_ids=[5, 6])
    assert path.read_text().splitlines() == ["roi_id,snr", "5,2", "6,3"]
    with pytest.raises(ValueError, match="disagrees"):
        save_features_csv(tmp_path / "h.csv", {"roi_id": [1, 2]}, roi_ids=[5, 6])
    with pytest.raises(ValueError, match="empty"):
        save_features_csv(tmp_path / "h.csv", {})


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"activity": np.zeros((2, 3, 4))}, "activity must be \\(n_rois, n_frames\\)"),
        ({"activity": np.array([["a"]])}, "activity must hold real numbers"),
        ({"fit": np.zeros((3, 39))}, "fit has shape \\(3, 39\\), but activity has \\(3, 40\\)"),
        ({"baseline": np.zeros(4)}, "baseline must be \\(n_rois,\\)"),
        ({"roi_ids": [1, 2]}, "roi_ids must be a list of 3 ids"),
        ({"roi_ids": [-1, 1, 2]}, ">= 0"),  # 0-based ids name rows (CLI inputs)
        ({"roi_ids": [1, 1, 2]}, "unique"),
        ({"roi_ids": [1.5, 2, 3]}, "integers"),
        ({"fs": 0.0}, "fs must be a positive number"),
        ({"fs": True}, "fs must be a number"),
        ({"params": "p.json"}, "params must be a TuningParams"),
        ({"params": {"tau_rise": 0.5, "tau_decay": 0.4, "fs": 10, "lam": 0}}, "tau_rise"),
        ({"features": {"snr": [1.0, 2.0]}}, "one row per ROI \\(3\\)"),
        ({"events": {"a": [1, 2], "b": [1]}}, "column 'b' has 1 rows"),
        ({"events": [1, 2]}, "events must be a dict"),
    ],
)
def test_bad_input_names_the_argument(tmp_path, change, fragment):
    with pytest.raises(ValueError, match=fragment):
        save_results(tmp_path / "r.npz", **{**_results(), **change})
    assert os.listdir(tmp_path) == []


def test_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match=r"use one of \.npz, \.nwb, \.csv, \.npy"):
        save_results(tmp_path / "r.mat", **_results())


def test_params_as_dict_and_one_roi(tmp_path):
    r = _results()
    one = dict(r, activity=r["activity"][0], fit=r["fit"][0], baseline=1.5, roi_ids=[7],
               params=PARAMS.to_dict(), features=None)
    (path,) = save_results(tmp_path / "one.npz", **one)
    got = load_results(path)
    assert got["activity"].shape == (1, 40) and got["baseline"].tolist() == [1.5]
    assert got["params"] == PARAMS


def test_failed_write_keeps_the_earlier_file(tmp_path, monkeypatch):
    path = tmp_path / "res.npz"
    save_results(path, **_results())
    before = path.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(_atomic.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_results(path, **{**_results(), "fs": 30.0})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["res.npz"]


def test_load_results_refuses_other_files(tmp_path):
    np.savez(tmp_path / "x.npz", traces=np.zeros((2, 5)))
    with pytest.raises(ValueError, match="not a napari-catune results file"):
        load_results(tmp_path / "x.npz")
    with pytest.raises(FileNotFoundError):
        load_results(tmp_path / "none.npz")


def test_save_report_draws_traces_and_parameters(tmp_path, monkeypatch):
    from napari_catune.params import TuningParams
    from napari_catune.results import save_report
    from napari_catune.solver import run_deconvolution_full

    rng = np.random.default_rng(0)
    y = rng.normal(1.0, 0.05, (3, 600))
    y[:, 100:110] += 2.0
    p = TuningParams(0.05, 0.5, 30.0, 0.2)
    r = run_deconvolution_full(y, p.fs, p.tau_rise, p.tau_decay, p.lam)
    out = save_report(tmp_path / "r.png", traces=y, fit=r.reconvolution, activity=r.activity,
                      roi_ids=[4, 5, 6], params=p, summary={"not converged": "0"})
    assert out == tmp_path / "r.png" and out.read_bytes()[:4] == b"\x89PNG"
    pdf = save_report(tmp_path / "r.pdf", traces=y[:1], fit=r.reconvolution[:1],
                      activity=r.activity[:1], roi_ids=[4], params=p)
    assert pdf.read_bytes()[:4] == b"%PDF"
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        save_report(tmp_path / "x.png", traces=y, fit=y, activity=y, roi_ids=[1, 2, 3], params=p)
    assert not (tmp_path / "x.png").exists()


def test_detect_events_output_is_saved_as_is(tmp_path):
    """``detect_events``' table goes straight into a results file (its per-ROI unit
    is not an event column) and comes back with each event on its ROI id."""
    from napari_catune.events import detect_events
    from napari_catune.params import TuningParams
    from napari_catune.results import load_results, save_results

    act = np.zeros((3, 300))
    act[0, 30] = act[1, 100] = act[1, 200] = act[2, 250] = 1.0
    ev = detect_events(act, 30.0, roi_ids=[7, 1, 40])
    out = tmp_path / "res.npz"
    save_results(out, activity=act, fit=None, baseline=None, events=ev, roi_ids=[7, 1, 40],
                 fs=30.0, params=TuningParams(0.05, 0.5, 30.0, 0.05))
    back = load_results(out)
    np.testing.assert_array_equal(back["events"]["roi_id"], ev["roi_id"])
    assert sorted(set(back["events"]["roi_id"].tolist())) == [1, 7, 40]
    assert "unit" not in back["events"]
    # as many events as ROIs: the per-ROI unit must still not become an event column
    act2 = np.zeros((3, 300))
    act2[0, 30] = act2[0, 150] = act2[1, 100] = 1.0
    ev2 = detect_events(act2, 30.0, roi_ids=[7, 1, 40])
    assert len(ev2["roi_id"]) == 3 == len(ev2["unit"])
    save_results(out, activity=act2, fit=None, baseline=None, events=ev2, roi_ids=[7, 1, 40],
                 fs=30.0, params=TuningParams(0.05, 0.5, 30.0, 0.05))
    assert "unit" not in load_results(out)["events"]
