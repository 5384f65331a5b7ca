"""The CLI fixes of the thirty-eighth round's user audit: a traces sidecar's
rate under the pipelines' names, NWB ROI ids kept as the file's, a memory check before
``.csv``/``.nwb`` outputs, ROI ids in bad-row messages, clearer messages."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_catune import cli

from _synth import calcium_traces
from test_cli_inputs import LAM, TAU_D, TAU_R, _error, _params, _run  # noqa: F401 - shared helpers




def _traces(tmp_path, meta, n=3, T=300, fs=30.0, seed=0, name="rec"):
    y = calcium_traces(n, T, fs=fs, tau_r=TAU_R, tau_d=TAU_D, seed=seed)
    np.save(tmp_path / f"{name}.npy", y)
    (tmp_path / f"{name}_metadata.json").write_text(json.dumps(meta))
    return tmp_path / f"{name}.npy", y


# ------------------------------------------------ 1. sidecar rate aliases

@pytest.mark.parametrize("key", ["fs", "fr", "frame_rate", "sampling_rate", "fps"])
def test_sidecar_rate_aliases_are_read_and_checked(capsys, tmp_path, key):
    npy, _ = _traces(tmp_path, {key: 30.0})
    code, out, err = _run(capsys, "info", npy)
    assert code == 0, err
    assert "30 Hz" in out and "unknown" not in out.split("fs", 1)[1].splitlines()[0]
    # data at 30 Hz, parameters at 122 Hz: the mismatch check stops the run
    p = _params(tmp_path / "p.json", 121.965)
    code, _, err = _run(capsys, "deconvolve", npy, "--params", p, "-o", tmp_path / "a.npz")
    assert code == 2
    line = _error(err)
    assert "sampling rate mismatch" in line and "30 Hz" in line
    assert not (tmp_path / "a.npz").exists()
    # the right parameter file runs at the sidecar's rate
    code, _, err = _run(capsys, "deconvolve", npy, "--params", _params(tmp_path / "q.json", 30.0),
                        "-o", tmp_path / "b.npz", "-q")
    assert code == 0, err
    with np.load(tmp_path / "b.npz") as z:
        assert float(z["fs"]) == 30.0


def test_sidecar_with_two_disagreeing_rates_is_refused(capsys, tmp_path):
    npy, _ = _traces(tmp_path, {"sampling_rate_hz": 30.0, "fs": 15.0})
    code, _, err = _run(capsys, "info", npy)
    assert code == 2
    line = _error(err)
    assert "two sampling rates" in line and "fs = 15" in line and "sampling_rate_hz = 30" in line


def test_sidecar_rates_equal_but_for_rounding_are_one_rate(capsys, tmp_path):
    # (review revc: 30 and 30.000000001 were refused as two rates)
    npy, _ = _traces(tmp_path, {"sampling_rate_hz": 30.0, "fs": 30.000000001})
    p = _params(tmp_path / "p.json", 30.0)
    code, _, err = _run(capsys, "deconvolve", npy, "--params", p, "-o", tmp_path / "a.npz", "-q")
    assert code == 0, err


def test_sidecar_rate_under_an_unknown_name_is_refused_with_the_key_to_use(capsys, tmp_path):
    npy, _ = _traces(tmp_path, {"framerate": 30.0})
    p = _params(tmp_path / "p.json", 121.965)
    code, _, err = _run(capsys, "deconvolve", npy, "--params", p, "-o", tmp_path / "a.npz")
    assert code == 2
    line = _error(err)
    assert "'framerate'" in line and "sampling_rate_hz" in line
    assert not (tmp_path / "a.npz").exists()


# ------------------------------------ 3. .nwb/.csv outputs: memory checked first
# (the thirty-ninth round streams them: test_cli_out39.py; its memory check is of
# the rows in flight, with the cgroup limit)


# -------------------------------------------- 4. bad rows named by their ROI ids

def test_bad_rows_are_named_by_roi_id(capsys, tmp_path):
    y = calcium_traces(8, 300, fs=30.0, tau_r=TAU_R, tau_d=TAU_D, seed=3)
    y[2, 100] = np.nan
    y[4, 50] = np.inf
    y[5, :] = np.nan
    np.save(tmp_path / "bad.npy", y)
    (tmp_path / "bad_metadata.json").write_text(json.dumps(
        {"sampling_rate_hz": 30.0, "roi_ids": list(range(101, 109))}))
    p = _params(tmp_path / "p.json", 30.0)
    code, _, err = _run(capsys, "deconvolve", tmp_path / "bad.npy", "--params", p,
                        "-o", tmp_path / "a.npz")
    assert code == 2
    assert "3 of 8 rows hold NaN or Inf before their end (ROI ids 103, 105, 106 = rows 2, 4, 5, " \
           "0-based)" in _error(err)
    code, _, err = _run(capsys, "deconvolve", tmp_path / "bad.npy", "--params", p,
                        "-o", tmp_path / "a.npz", "--skip-bad")
    assert code == 0, err
    assert "ROI ids 103, 105, 106" in err


# ------------------------ 5. estimate on a suite2p folder: --allow-pickle reads fs

def test_estimate_on_suite2p_says_allow_pickle_reads_the_rate(capsys, tmp_path):
    from test_loaders import make_suite2p

    plane = make_suite2p(tmp_path / "s2p", fs=15.0)
    code, _, err = _run(capsys, "estimate", plane)
    assert code == 2
    line = _error(err)
    assert "ops.npy" in line and "--allow-pickle" in line and "--fs HZ" in line
    assert "does not record" not in line


# ------------------------- 6. --neuropil before the file names: a clear message

def test_neuropil_before_the_files_says_where_to_put_it(capsys, tmp_path):
    code, _, err = _run(capsys, "extract", "--neuropil", tmp_path / "movie.tif",
                        tmp_path / "labels.tif", "-o", tmp_path / "x.npz")
    assert code == 2
    assert "not a number" not in err
    assert "--neuropil: takes an optional coefficient" in err
    assert "put --neuropil after the files" in err and "--neuropil=0.7" in err


# --------------------------- 7. the .npy output: load_results reads it; --help

def test_load_results_reads_the_npy_output_with_its_sidecar(capsys, tmp_path):
    from napari_catune import load_results

    npy, _ = _traces(tmp_path, {"sampling_rate_hz": 30.0, "roi_ids": [7, 8, 9]})
    p = _params(tmp_path / "p.json", 30.0)
    for ext in (".npy", ".npz"):
        code, _, err = _run(capsys, "deconvolve", npy, "--params", p,
                            "-o", tmp_path / f"out_{ext[1:]}{ext}", "-q")
        assert code == 0, err
    a, z = load_results(tmp_path / "out_npy.npy"), load_results(tmp_path / "out_npz.npz")
    assert np.array_equal(a["activity"], z["activity"])
    assert a["roi_ids"].tolist() == z["roi_ids"].tolist() == [7, 8, 9]
    assert a["fs"] == z["fs"] == 30.0 and a["t0"] == z["t0"]
    assert a["params"] == z["params"]
    assert a["fit"] is None and a["baseline"] is None
    # a plain traces .npy is no results file
    with pytest.raises(ValueError, match="not a napari-catune results .npy"):
        load_results(npy)


def test_deconvolve_help_does_not_call_the_npy_output_an_input(capsys):
    code, out, _ = _run(capsys, "deconvolve", "--help")
    assert code == 0
    assert "hand-off" not in out
    assert "load_results reads both" in out and "not an input" in out
