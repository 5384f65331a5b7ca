"""The napari-catune command line: every input kind, outputs, exit codes, messages."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_catune import cli, run_deconvolution_full
from napari_catune.params import TuningParams, load_params, save_params
from test_loaders import make_caiman, make_suite2p

from _synth import calcium_traces  # noqa: E402

FS, TAU_R, TAU_D, LAM = 20.0, 0.05, 0.4, 0.2


def _traces(n=8, T=300, seed=0):
    return calcium_traces(n, T, fs=FS, tau_r=TAU_R, tau_d=TAU_D, seed=seed)


@pytest.fixture
def params(tmp_path):
    p = tmp_path / "params.json"
    save_params(TuningParams(TAU_R, TAU_D, FS, LAM), p)
    return p


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("napari-catune ")
    return lines[0]


def _no_temp_files(folder: Path):
    left = [p.name for p in folder.iterdir() if p.name.startswith(".")]
    assert left == [], left


# ---------------------------------------------------------------- help


@pytest.mark.parametrize("cmd", [[], ["view"], ["deconvolve"], ["estimate"], ["info"]])
def test_help_with_examples(capsys, cmd):
    code, out, _ = _run(capsys, *cmd, "--help")
    assert code == 0
    assert "examples:" in out and "napari-catune" in out


def test_usage_errors_exit_2(capsys, tmp_path, params):
    assert _run(capsys)[0] == 2  # no command
    assert _run(capsys, "frobnicate")[0] == 2
    code, _, err = _run(capsys, "deconvolve", "x.npy", "-o", "y.npy")  # --params missing
    assert code == 2 and "--params" in err
    code, _, err = _run(capsys, "deconvolve", "x.npy", "--params", params, "-o", "y.npy",
                        "--chunk-cells", "0")
    assert code == 2 and "--chunk-cells" in err


# ---------------------------------------------------------------- deconvolve


def test_deconvolve_npy_memory_mapped_in_chunks(capsys, tmp_path, params):
    y = _traces().astype(np.float32)
    np.save(tmp_path / "tr.npy", y)
    out = tmp_path / "act.npy"
    code, _, err = _run(capsys, "deconvolve", tmp_path / "tr.npy", "--params", params,
                        "-o", out, "--chunk-cells", "3")
    assert code == 0, err
    ref = run_deconvolution_full(y, FS, TAU_R, TAU_D, LAM)
    act = np.load(out)
    assert act.dtype == np.float64 and np.array_equal(act, ref.activity)
    # stderr is not a terminal here: no progress bar, one summary line with the counts
    assert "deconvolve [" not in err and "\r" not in err and "it/s" not in err
    assert "8 of 8 cells deconvolved" in err and "0 not converged" in err
    _no_temp_files(tmp_path)


def test_deconvolve_full_npz_and_sidecar(capsys, tmp_path, params):
    from napari_catune.io import save_for_tuning

    y = _traces(n=5)
    save_for_tuning(y, FS, tmp_path / "rec")
    out = tmp_path / "res.npz"
    code, _, err = _run(capsys, "deconvolve", tmp_path / "rec.npy", "--params", params,
                        "-o", out, "--full", "-q")
    assert code == 0, err
    ref = run_deconvolution_full(y, FS, TAU_R, TAU_D, LAM)
    with np.load(out) as z:
        assert set(z.files) >= {"activity", "fit", "baseline", "iterations", "converged"}
        assert np.array_equal(z["activity"], ref.activity)
        assert np.array_equal(z["fit"], ref.reconvolution)
        assert np.array_equal(z["baseline"], ref.baseline)
        assert np.array_equal(z["iterations"], ref.iterations)
        assert np.array_equal(z["converged"], ref.converged)
        assert z["roi_ids"].tolist() == [1, 2, 3, 4, 5]
    _no_temp_files(tmp_path)


def test_deconvolve_fs_mismatch_is_refused(capsys, tmp_path, params):
    from napari_catune.io import save_for_tuning

    save_for_tuning(_traces(n=2), 30.0, tmp_path / "rec")
    code, _, err = _run(capsys, "deconvolve", tmp_path / "rec.npy", "--params", params,
                        "-o", tmp_path / "a.npy")
    assert code == 2
    line = _one_line_error(err)
    assert "sampling rate mismatch" in line and "20 Hz" in line and "30 Hz" in line
    assert not (tmp_path / "a.npy").exists()


def test_deconvolve_other_inputs(capsys, tmp_path, params):
    """.npz, 1-D .npy, suite2p folder, CaImAn file and zarr array all give the solver's numbers."""
    y = _traces(n=4)
    ref = run_deconvolution_full(y, FS, TAU_R, TAU_D, LAM).activity

    np.savez(tmp_path / "tr.npz", traces=y, fs=FS)
    assert _run(capsys, "deconvolve", tmp_path / "tr.npz", "--params", params,
                "-o", tmp_path / "a.npy")[0] == 0
    assert np.array_equal(np.load(tmp_path / "a.npy"), ref)

    np.save(tmp_path / "one.npy", y[2])
    assert _run(capsys, "deconvolve", tmp_path / "one.npy", "--params", params,
                "-o", tmp_path / "b.npy")[0] == 0
    b = np.load(tmp_path / "b.npy")
    assert b.shape == y[2].shape and np.array_equal(b, ref[2])

    import zarr

    z = zarr.create_array(str(tmp_path / "tr.zarr"), shape=y.shape, chunks=(2, 100),
                          dtype="f8")
    z[:] = y
    assert _run(capsys, "deconvolve", tmp_path / "tr.zarr", "--params", params,
                "-o", tmp_path / "c.npy", "--chunk-cells", "3")[0] == 0
    assert np.array_equal(np.load(tmp_path / "c.npy"), ref)

    from napari_catune.loaders import load_caiman_data, load_suite2p

    plane = make_suite2p(tmp_path / "s2p", fs=FS)
    code, _, err = _run(capsys, "deconvolve", plane, "--params", params, "-o", tmp_path / "d.npy")
    assert code == 0, err
    s2p = load_suite2p(plane).traces
    assert np.array_equal(np.load(tmp_path / "d.npy"),
                          run_deconvolution_full(s2p, FS, TAU_R, TAU_D, LAM).activity)

    make_caiman(tmp_path / "cnmf.hdf5", fr=FS)
    code, _, err = _run(capsys, "deconvolve", tmp_path / "cnmf.hdf5", "--params", params,
                        "-o", tmp_path / "e.npz", "--full")
    assert code == 0, err
    cm = load_caiman_data(tmp_path / "cnmf.hdf5").traces  # the accepted components
    with np.load(tmp_path / "e.npz") as zf:
        assert np.array_equal(zf["activity"],
                              run_deconvolution_full(cm, FS, TAU_R, TAU_D, LAM).activity)


def test_nan_rows_named_and_skipped(capsys, tmp_path, params):
    y = _traces(n=6)
    y[1, 7] = np.nan
    y[4, :3] = np.inf
    np.save(tmp_path / "bad.npy", y)
    out = tmp_path / "a.npy"
    code, _, err = _run(capsys, "deconvolve", tmp_path / "bad.npy", "--params", params, "-o", out)
    assert code == 2
    line = _one_line_error(err)
    assert "rows 1, 4" in line and "2 of 6" in line and "--skip-bad" in line
    assert not out.exists()

    code, _, err = _run(capsys, "deconvolve", tmp_path / "bad.npy", "--params", params,
                        "-o", out, "--skip-bad", "--chunk-cells", "4")
    assert code == 0
    assert "warning" in err and "rows 1, 4" in err and "2 of 6" in err
    act = np.load(out)
    good = [0, 2, 3, 5]
    assert np.array_equal(act[good], run_deconvolution_full(y[good], FS, TAU_R, TAU_D, LAM).activity)
    assert np.isnan(act[[1, 4]]).all()


def _bad_params(tmp_path):
    p = tmp_path / "bad_params.json"
    save_params(TuningParams(TAU_R, TAU_D, FS, LAM), p)
    doc = json.loads(p.read_text())
    doc["parameters"]["tau_rise_s"] = 2.0  # above its range and above tau_decay
    p.write_text(json.dumps(doc))
    return p


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("missing_input", r"nope\.npy does not exist"),
        ("three_d", r"tr3\.npy.*\(2, 3, 40\).*3-D"),
        ("strings", r"str\.npy.*real numbers.*<U"),
        ("objects", r"obj\.npy.*Python objects"),
        ("truncated", r"cut\.npy.*truncated"),
        ("params_invalid", r"bad_params\.json.*tau_rise"),
        ("params_missing", r"missing\.json not found"),
        ("out_folder_missing", r"output folder .*nofolder does not exist"),
        ("out_suffix", r"with --full the output is an \.npz"),
        ("unsupported", r"notes\.txt: unsupported input"),
        ("plain_folder", r"neither a suite2p plane folder"),
        ("bad_caiman", r"junk\.hdf5.*not an HDF5"),
    ],
)
def test_bad_input_one_line_exit_2(capsys, tmp_path, params, case, pattern):
    inp = tmp_path / "tr.npy"
    np.save(inp, _traces(n=2))
    out = tmp_path / "a.npy"
    prm = params
    extra = []
    if case == "missing_input":
        inp = tmp_path / "nope.npy"
    elif case == "three_d":
        inp = tmp_path / "tr3.npy"
        np.save(inp, np.zeros((2, 3, 40)))
    elif case == "strings":
        inp = tmp_path / "str.npy"
        np.save(inp, np.array([["a", "b", "c"]]))
    elif case == "objects":
        inp = tmp_path / "obj.npy"
        np.save(inp, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    elif case == "truncated":
        inp = tmp_path / "cut.npy"
        raw = (tmp_path / "tr.npy").read_bytes()
        inp.write_bytes(raw[: len(raw) // 2])
    elif case == "params_invalid":
        prm = _bad_params(tmp_path)
    elif case == "params_missing":
        prm = tmp_path / "missing.json"
    elif case == "out_folder_missing":
        out = tmp_path / "nofolder" / "a.npy"
        # the output is checked before the input is read: a broken input is not reached
        inp = tmp_path / "cut.npy"
        inp.write_bytes(b"\x93NUMPY garbage")
    elif case == "out_suffix":
        extra = ["--full"]
    elif case == "unsupported":
        inp = tmp_path / "notes.txt"
        inp.write_text("1 2 3")
    elif case == "plain_folder":
        inp = tmp_path / "folder"
        inp.mkdir()
    elif case == "bad_caiman":
        inp = tmp_path / "junk.hdf5"
        inp.write_bytes(b"not hdf5 at all")
    code, _, err = _run(capsys, "deconvolve", inp, "--params", prm, "-o", out, *extra)
    assert code == 2
    line = _one_line_error(err)
    import re

    assert re.search(pattern, line), line
    assert not out.exists()


def test_read_only_output_folder_checked_first(capsys, tmp_path, params):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        probe_ok = os.access(ro, os.W_OK)
        # root ignores permission bits: sysfs refuses new files even to root
        folder = Path("/sys") if probe_ok else ro
        code, _, err = _run(capsys, "deconvolve", tmp_path / "missing_input.npy",
                            "--params", params, "-o", folder / "a.npy")
    finally:
        ro.chmod(0o755)
    assert code == 2
    line = _one_line_error(err)
    assert "not writable" in line and str(folder) in line


def test_interrupted_run_leaves_no_partial_output(capsys, tmp_path, params, monkeypatch):
    import napari_catune.solver as solver

    y = _traces(n=6)
    np.save(tmp_path / "tr.npy", y)
    out = tmp_path / "a.npy"
    np.save(out, np.arange(3.0))  # an earlier result must survive a failed run
    real = solver.run_deconvolution_full
    calls = []

    def failing(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(*a, **k)

    monkeypatch.setattr(solver, "run_deconvolution_full", failing)
    code, _, err = _run(capsys, "deconvolve", tmp_path / "tr.npy", "--params", params,
                        "-o", out, "--chunk-cells", "2", "-q")
    assert code == 1
    assert "unexpected error" in err and "disk on fire" in err
    assert np.array_equal(np.load(out), np.arange(3.0))
    _no_temp_files(tmp_path)


def test_unreachable_scheduler_fails_within_10_s(capsys, tmp_path, params):
    np.save(tmp_path / "tr.npy", _traces(n=2))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    code, _, err = _run(capsys, "deconvolve", tmp_path / "tr.npy", "--params", params,
                        "-o", tmp_path / "a.npy", "--scheduler", f"tcp://127.0.0.1:{port}")
    elapsed = time.monotonic() - t0
    assert code == 2
    line = _one_line_error(err)
    assert f"127.0.0.1:{port}" in line and "could not connect" in line
    # our 10 s connect timeout, not distributed's default 30 s (generous for slow machines)
    assert elapsed < 25
    assert not (tmp_path / "a.npy").exists()
    _no_temp_files(tmp_path)


# ---------------------------------------------------------------- estimate / info


def test_estimate_prints_and_saves(capsys, tmp_path):
    from napari_catune.estimate import estimate_params

    y = _traces(n=6, T=1200)
    np.save(tmp_path / "tr.npy", y)
    out = tmp_path / "est.json"
    code, text, err = _run(capsys, "estimate", tmp_path / "tr.npy", "--fs", FS, "-o", out)
    assert code == 0, err
    want = estimate_params(y, FS)
    saved = load_params(out)
    assert saved.tau_rise == pytest.approx(want.tau_rise)
    assert saved.tau_decay == pytest.approx(want.tau_decay)
    assert saved.lam == pytest.approx(want.lam) and saved.fs == FS
    assert f"{want.tau_decay:.4g} s" in text and f"{want.lam:.4g}" in text
    meta = json.loads(out.read_text())["metadata"]
    assert meta["num_cells"] == 6 and meta["num_timepoints"] == 1200
    # without a known rate: a one-line request for --fs
    code, _, err = _run(capsys, "estimate", tmp_path / "tr.npy")
    assert code == 2 and "--fs" in _one_line_error(err)


def test_info_summary(capsys, tmp_path):
    from napari_catune.io import save_for_tuning
    from napari_catune.traces import roi_snr

    y = _traces(n=5)
    y[3, 10:13] = np.nan
    save_for_tuning(np.nan_to_num(y, nan=0.0), FS, tmp_path / "rec")
    np.save(tmp_path / "rec.npy", y)  # NaNs on disk, rate from the sidecar
    code, text, err = _run(capsys, "info", tmp_path / "rec.npy")
    assert code == 0, err
    assert "(5, 300)" in text and "float64" in text and "20 Hz" in text
    assert "NaN values   3" in text and "bad rows     1" in text
    snr = roi_snr(y[[0, 1, 2, 4]], FS)
    assert f"median {np.median(snr):.2f}" in text and f"max {snr.max():.2f}" in text
    code, text, _ = _run(capsys, "info", tmp_path / "rec.npy", "--fs", 10)
    assert "10 Hz" in text


# ---------------------------------------------------------------- console script


def _script() -> str:
    exe = Path(sys.executable).with_name("napari-catune")
    return str(exe) if exe.exists() else shutil.which("napari-catune")


def test_console_script(tmp_path, params):
    y = _traces(n=3)
    np.save(tmp_path / "tr.npy", y)
    ok = subprocess.run(
        [_script(), "deconvolve", str(tmp_path / "tr.npy"), "--params", str(params),
         "-o", str(tmp_path / "a.npy")], capture_output=True, text=True, timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert np.array_equal(np.load(tmp_path / "a.npy"),
                          run_deconvolution_full(y, FS, TAU_R, TAU_D, LAM).activity)
    bad = subprocess.run(
        [_script(), "deconvolve", str(tmp_path / "nope.npy"), "--params", str(params),
         "-o", str(tmp_path / "b.npy")], capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 2
    assert "nope.npy does not exist" in bad.stderr and "Traceback" not in bad.stderr


def test_view_screenshot(tmp_path):
    """The README's main-job command: sample + tuner, 3 ROIs selected, a window screenshot."""
    shot = tmp_path / "shot.png"
    env = dict(os.environ)
    assert env.get("DISPLAY"), "pytest-xvfb provides a virtual display"
    run = subprocess.run(
        [_script(), "view", "--screenshot", str(shot), "--timeout", "150"],
        capture_output=True, text=True, timeout=200, env=env,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    selected = next(ln for ln in run.stderr.splitlines() if "selected ROIs:" in ln)
    assert len(selected.split(":")[-1].split(",")) == 3
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[:2] == (950, 1500)
    # not a blank window: many distinct colours (image, labels, plots, docks)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 200


def test_view_opens_given_files(tmp_path):
    """Our trace file through our reader, an image stack in .npy through napari's."""
    y = _traces(n=4)
    np.save(tmp_path / "tr.npy", y)
    np.save(tmp_path / "movie.npy", np.random.default_rng(0).uniform(size=(10, 24, 24)))
    shot = tmp_path / "shot.png"
    run = subprocess.run(
        [_script(), "view", str(tmp_path / "tr.npy"), str(tmp_path / "movie.npy"),
         "--screenshot", str(shot), "--size", "1300x900", "--settle", "0.3"],
        capture_output=True, text=True, timeout=200,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    from PIL import Image

    assert Image.open(shot).size == (1300, 900)
    layers = next(ln for ln in run.stderr.splitlines() if "view: layers:" in ln)
    assert "tr ROIs" in layers and "movie" in layers
    selected = next(ln for ln in run.stderr.splitlines() if "selected ROIs:" in ln)
    assert len(selected.split(":")[-1].split(",")) == 3


def test_view_rejects_missing_paths_before_opening_napari(capsys, tmp_path):
    code, _, err = _run(capsys, "view", tmp_path / "nope.tif")
    assert code == 2 and "nope.tif does not exist" in _one_line_error(err)
    code, _, err = _run(capsys, "view", "--screenshot", tmp_path / "nofolder" / "s.png")
    assert code == 2 and "does not exist" in _one_line_error(err)


def test_most_active_rois_by_snr(make_napari_viewer):
    from napari_catune._qt import launch

    from napari_catune.traces import extract_traces, roi_snr

    viewer = make_napari_viewer()
    y = _traces(n=6)
    from napari_catune.kernel import build_kernel

    big = 5.0 * np.convolve((np.arange(300) % 60 == 5).astype(float),
                            build_kernel(TAU_R, TAU_D, FS))[:300]
    y[[1, 4]] += big  # larger transients over the same noise: higher SNR
    ids = np.array([3, 5, 7, 9, 11, 13])
    labels = np.zeros((20, 20), np.int32)
    viewer.add_labels(labels, metadata={"catune": {"traces": y, "roi_ids": ids, "fs": FS}})
    want = ids[np.argsort(-roi_snr(y, FS), kind="stable")[:3]].tolist()
    got = launch._most_active(viewer, 3)
    assert got == want and {5, 11} <= set(got)
    # no traces attached: extracted from the movie under the labels
    viewer.layers.clear()
    rng = np.random.default_rng(1)
    movie = rng.normal(size=(200, 10, 12)).astype(np.float32)
    lab = np.zeros((10, 12), np.int32)
    lab[1:4, 1:4], lab[5:9, 2:6], lab[2:5, 7:11] = 1, 2, 3
    movie[:, 5:9, 2:6] += 8 * (np.arange(200) % 40 == 0)[:, None, None]  # ROI 2 is active
    viewer.add_image(movie, metadata={"catune": {"fs": FS}})
    viewer.add_labels(lab)
    tr, tid = extract_traces(movie, lab)
    order = tid[np.argsort(-roi_snr(tr, FS), kind="stable")].tolist()
    assert launch._most_active(viewer, 3) == order and order[0] == 2


def test_deconvolve_honours_a_saved_baseline_off(tmp_path):
    from napari_catune import run_deconvolution_full
    from napari_catune.cli import main
    from napari_catune.params import TuningParams, save_params

    rng = np.random.default_rng(0)
    traces = rng.standard_normal((3, 400)) + 5.0
    np.save(tmp_path / "t.npy", traces)
    p = TuningParams(0.05, 0.5, 30.0, 0.1, baseline=False)
    save_params(p, tmp_path / "p.json")
    assert main([
        "deconvolve", str(tmp_path / "t.npy"), "--params", str(tmp_path / "p.json"),
        "-o", str(tmp_path / "out.npz"), "--full", "-q",
    ]) == 0
    with np.load(tmp_path / "out.npz") as z:
        assert np.array_equal(z["baseline"], np.zeros(3))
        ref = run_deconvolution_full(traces, 30.0, 0.05, 0.5, 0.1, baseline=False)
        np.testing.assert_array_equal(z["activity"], ref.activity)


def test_estimate_reports_noise_and_saves_the_baseline_mode(tmp_path, capsys):
    from napari_catune.cli import main
    from napari_catune.io import save_for_tuning
    from napari_catune.params import load_params

    rng = np.random.default_rng(1)
    y = 0.2 * rng.standard_normal((3, 2000))
    y[:, 500:520] += 2.0
    src = tmp_path / "tr.npy"
    save_for_tuning(y, 30.0, src)
    out = tmp_path / "p.json"
    assert main(["estimate", str(src), "--baseline", "drift", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "noise" in text and "noise deviations" in text
    assert load_params(out).baseline == "drift"
    # deconvolve can override the file's mode, and says so
    res = tmp_path / "a.npy"
    assert main(["deconvolve", str(src), "--params", str(out), "-o", str(res), "-q",
                 "--baseline", "scalar"]) == 0
    assert "overrides the 'drift' baseline" in capsys.readouterr().err
    assert main(["estimate", str(src), "--baseline", "wobbly"]) == 2


@pytest.mark.parametrize("mode", ["drift", "rolling"])
def test_full_output_with_a_per_sample_baseline(tmp_path, mode):
    """drift/rolling: the baseline is (n, T) in the .npz, NaN on skipped rows."""
    from napari_catune.params import TuningParams, save_params

    rng = np.random.default_rng(3)
    T = 400
    y = 0.05 * rng.standard_normal((5, T)) + np.linspace(0, 1, T)  # a drift
    y[:, 200] += 1.0
    y[2, 10] = np.nan
    src = tmp_path / "tr.npy"
    np.save(src, y)
    pfile = tmp_path / "p.json"
    p = TuningParams(TAU_R, TAU_D, FS, LAM, baseline=mode)
    save_params(p, pfile)
    out = tmp_path / "out.npz"
    assert cli.main(["deconvolve", str(src), "--params", str(pfile), "-o", str(out), "--full",
                     "--skip-bad", "-q", "--chunk-cells", "2"]) == 0
    with np.load(out) as z:
        base, fit, act = z["baseline"], z["fit"], z["activity"]
    assert base.shape == (5, T)
    assert np.isnan(base[2]).all() and np.isnan(act[2]).all()
    good = [0, 1, 3, 4]
    ref = run_deconvolution_full(y[good], FS, TAU_R, TAU_D, LAM, baseline=mode)
    np.testing.assert_allclose(base[good], ref.baseline, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fit[good], ref.reconvolution, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- issue 10: outputs, messages


def _cli_env():
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_npz_output_is_a_results_file_with_a_sidecar(capsys, tmp_path, params):
    """-o x.npz (no --full needed): load_results reads ids, fs, parameters, fit, features."""
    from napari_catune.results import load_results

    y = _traces(n=5)
    ids = np.array([3, 7, 8, 10, 12])
    np.savez(tmp_path / "tr.npz", traces=y, fs=FS, roi_ids=ids)
    out = tmp_path / "res.npz"
    code, _, err = _run(capsys, "deconvolve", tmp_path / "tr.npz", "--params", params, "-o", out)
    assert code == 0, err
    r = load_results(out)
    ref = run_deconvolution_full(y, FS, TAU_R, TAU_D, LAM)
    assert np.array_equal(r["activity"], ref.activity) and np.array_equal(r["fit"], ref.reconvolution)
    assert np.array_equal(r["roi_ids"], ids) and r["fs"] == FS and r["params"].tau_decay == TAU_D
    assert r["features"]["converged"].all() and np.array_equal(r["features"]["roi_id"], ids)
    meta = json.loads((tmp_path / "res_metadata.json").read_text())
    assert meta["roi_ids"] == ids.tolist() and meta["sampling_rate_hz"] == FS
    assert meta["catune_params"]["parameters"]["tau_decay_s"] == TAU_D
    assert meta["cells_not_converged"] == 0 and meta["input"] == "tr.npz"
    assert meta["command"].startswith("napari-catune deconvolve")


def test_npy_output_sidecar_reads_back_but_is_not_an_input(capsys, tmp_path, params):
    from napari_catune.io import load_tuning_data
    from napari_catune.sources import SourceError, open_traces

    y = _traces(n=4)
    np.save(tmp_path / "tr.npy", y)
    out = tmp_path / "act.npy"
    assert _run(capsys, "deconvolve", tmp_path / "tr.npy", "--params", params, "-o", out)[0] == 0
    act, meta = load_tuning_data(out)
    assert meta["sampling_rate_hz"] == FS and meta["roi_ids"] == [1, 2, 3, 4]
    assert act.shape == (4, y.shape[1])
    # the deconvolved activity is not traces to deconvolve again
    with pytest.raises(SourceError, match="is a napari-catune results file"):
        open_traces(out)


@pytest.mark.parametrize("ext", [".csv", ".nwb"])
def test_csv_and_nwb_outputs_via_save_results(capsys, tmp_path, params, ext):
    y = _traces(n=3)
    np.save(tmp_path / "tr.npy", y)
    out = tmp_path / f"res{ext}"
    code, _, err = _run(capsys, "deconvolve", tmp_path / "tr.npy", "--params", params, "-o", out)
    assert code == 0, err
    ref = run_deconvolution_full(y, FS, TAU_R, TAU_D, LAM).activity
    if ext == ".csv":
        table = np.loadtxt(out, delimiter=",", skiprows=1)
        assert out.read_text().splitlines()[0] == "time_s,roi_1,roi_2,roi_3"
        np.testing.assert_allclose(table[:, 1:].T, ref, rtol=1e-9, atol=1e-12)
        assert (tmp_path / "res_features.csv").is_file()
    else:
        from napari_catune.results import load_results

        r = load_results(out)
        np.testing.assert_array_equal(r["activity"], ref)
    meta = json.loads((tmp_path / "res_metadata.json").read_text())
    assert meta["output_format"] == ext[1:] and meta["cells_deconvolved"] == 3


def test_unknown_output_suffix_is_refused(capsys, tmp_path, params):
    np.save(tmp_path / "tr.npy", _traces(n=2))
    code, _, err = _run(capsys, "deconvolve", tmp_path / "tr.npy", "--params", params,
                        "-o", tmp_path / "a.txt")
    assert code == 2 and ".npy" in _one_line_error(err) and ".nwb" in err


def test_non_converged_rows_are_counted(capsys, tmp_path, params, monkeypatch):
    import napari_catune.solver as solver

    real = solver.run_deconvolution_full

    def budget_hit(y, *a, **k):
        r = real(y, *a, **k)
        conv = np.array(r.converged, copy=True)
        conv[::2] = False  # every other row of each chunk "ran out of iterations"
        return r._replace(converged=conv)

    monkeypatch.setattr(solver, "run_deconvolution_full", budget_hit)
    np.save(tmp_path / "tr.npy", _traces(n=6))
    out = tmp_path / "a.npz"
    code, _, err = _run(capsys, "deconvolve", tmp_path / "tr.npy", "--params", params,
                        "-o", out, "--chunk-cells", "3")
    assert code == 0, err
    assert "4 not converged" in err and "warning: 4 of 6 cells did not converge" in err
    assert "rows 0, 2, 3, 5" in err
    meta = json.loads((tmp_path / "a_metadata.json").read_text())
    assert meta["cells_not_converged"] == 4 and meta["not_converged_rows"] == [0, 2, 3, 5]
    # -q keeps the warning and drops the summary line
    code, _, err = _run(capsys, "deconvolve", tmp_path / "tr.npy", "--params", params,
                        "-o", out, "-q")
    assert code == 0 and "did not converge" in err and "wrote" not in err


def test_verbose_logs_debug_lines(capsys, tmp_path, params):
    np.save(tmp_path / "tr.npy", _traces(n=2))
    code, _, err = _run(capsys, "deconvolve", tmp_path / "tr.npy", "--params", params,
                        "-o", tmp_path / "a.npy", "-v")
    assert code == 0 and "napari-catune: debug: input" in err and "chunks of" in err


def test_drift_scale_option(capsys, tmp_path, params):
    y = _traces(n=2)
    np.save(tmp_path / "tr.npy", y)
    out = tmp_path / "a.npz"
    code, _, err = _run(capsys, "deconvolve", tmp_path / "tr.npy", "--params", params,
                        "-o", out, "--drift-scale", "7")
    assert code == 2 and "--baseline drift" in _one_line_error(err)
    code, _, err = _run(capsys, "deconvolve", tmp_path / "tr.npy", "--params", params,
                        "-o", out, "--baseline", "drift", "--drift-scale", "7")
    assert code == 0, err
    ref = run_deconvolution_full(y, FS, TAU_R, TAU_D, LAM, baseline="drift", drift_scale=7.0)
    with np.load(out) as z:
        assert np.array_equal(z["activity"], ref.activity)
        assert json.loads(str(z["params"]))["parameters"].get("drift_scale_s", 7.0) == 7.0
    other = run_deconvolution_full(y, FS, TAU_R, TAU_D, LAM, baseline="drift", drift_scale=70.0)
    assert not np.array_equal(other.activity, ref.activity)  # the option has an effect


def test_report_png_written(capsys, tmp_path, params):
    np.save(tmp_path / "tr.npy", _traces(n=6))
    rep = tmp_path / "run.png"
    code, _, err = _run(capsys, "deconvolve", tmp_path / "tr.npy", "--params", params,
                        "-o", tmp_path / "a.npy", "--report", rep)
    assert code == 0, err
    data = rep.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    import matplotlib.image as mpimg

    img = mpimg.imread(rep)
    assert img.shape[0] > 600 and img.shape[1] > 800
    # not a blank page: many distinct colours (traces, fit, activity, text)
    assert np.unique(img.reshape(-1, img.shape[-1]), axis=0).shape[0] > 50


def test_report_without_matplotlib_says_so_before_work(capsys, tmp_path, params, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    np.save(tmp_path / "tr.npy", _traces(n=2))
    code, _, err = _run(capsys, "deconvolve", tmp_path / "tr.npy", "--params", params,
                        "-o", tmp_path / "a.npy", "--report", tmp_path / "r.png")
    assert code == 2 and "pip install matplotlib" in _one_line_error(err)
    assert not (tmp_path / "a.npy").exists()


def test_broken_pipe_is_quiet(tmp_path):
    """`napari-catune info x | head`: the reader went away; no traceback, exit 141."""
    np.save(tmp_path / "tr.npy", _traces(n=3))
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first line is written
    try:
        proc = subprocess.run([sys.executable, "-m", "napari_catune.cli", "info",
                               str(tmp_path / "tr.npy"), "--fs", "20"],
                              stdout=w, stderr=subprocess.PIPE, text=True, timeout=120,
                              env=_cli_env())
    finally:
        os.close(w)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == "", proc.stderr


def test_progress_bar_on_a_terminal_has_rate_and_eta(capsys, tmp_path, params, monkeypatch):
    """On a terminal the bar shows count, rate and ETA; off one (the other tests) nothing."""
    import io as _io

    class Terminal(_io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    np.save(tmp_path / "tr.npy", _traces(n=6))
    code = cli.main(["deconvolve", str(tmp_path / "tr.npy"), "--params", str(params), "-o",
                     str(tmp_path / "a.npy"), "--chunk-cells", "2"])
    err = term.getvalue()
    assert code == 0, err
    assert "deconvolve" in err and "6/6" in err and "cells/s" in err and "<00:00" in err
    assert "\r" in err  # redrawn in place
    bar = cli.Progress(4, "x", stream=Terminal(), enabled=False)  # -q
    bar.update(4)
    assert bar.stream.getvalue() == ""


def test_help_wraps_to_the_terminal(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "60")
    assert cli.main(["deconvolve", "--help"]) == 0
    out = capsys.readouterr().out
    long = [ln for ln in out.splitlines() if len(ln) > 60 and not ln.startswith("  ")]
    assert long == []
    assert "-v, --verbose" in out and "--drift-scale" in out and "--report" in out


# ---------------------------------------------------------------- extract / movies


def _movie(T=40, seed=1):
    rng = np.random.default_rng(seed)
    labels = np.zeros((12, 14), np.uint16)
    labels[1:5, 1:6] = 3
    labels[6:11, 7:13] = 9
    movie = rng.normal(100, 1, (T, 12, 14)).astype(np.float32)
    return movie, labels


def test_extract_hdf5_movie_with_tiff_masks(capsys, tmp_path):
    import h5py
    import tifffile

    from napari_catune.traces import extract_traces

    movie, labels = _movie()
    with h5py.File(tmp_path / "mov.h5", "w") as f:
        f.create_dataset("mov", data=movie, chunks=(8, 12, 14))
        f["mov"].attrs["fs"] = 15.0
    tifffile.imwrite(tmp_path / "masks.tif", labels)
    out = tmp_path / "traces.npz"
    code, _, err = _run(capsys, "extract", tmp_path / "mov.h5", tmp_path / "masks.tif", "-o", out)
    assert code == 0, err
    ref, ids = extract_traces(movie, labels)
    with np.load(out) as z:
        np.testing.assert_allclose(z["traces"], ref)
        assert z["roi_ids"].tolist() == [3, 9] and float(z["fs"]) == 15.0
    meta = json.loads((tmp_path / "traces_metadata.json").read_text())
    assert meta["movie_key"] == "mov" and meta["labels"] == "masks.tif"
    # the output is a traces input for the other commands
    code, out_text, err = _run(capsys, "info", out)
    assert code == 0 and "15 Hz" in out_text and "roi ids      2: 3, 9" in out_text


def test_extract_tiff_movie_reads_the_frame_rate(capsys, tmp_path):
    import tifffile

    movie, labels = _movie()
    tifffile.imwrite(tmp_path / "mov.tif", movie, imagej=True,
                     metadata={"axes": "TYX", "finterval": 0.05})
    np.save(tmp_path / "rois.npy", labels)
    out = tmp_path / "tr.npy"
    code, _, err = _run(capsys, "extract", tmp_path / "mov.tif", tmp_path / "rois.npy", "-o", out)
    assert code == 0, err
    meta = json.loads((tmp_path / "tr_metadata.json").read_text())
    assert meta["sampling_rate_hz"] == pytest.approx(20.0) and meta["roi_ids"] == [3, 9]
    code, text, _ = _run(capsys, "info", tmp_path / "mov.tif")
    assert code == 0 and "(40, 12, 14)" in text and "20 Hz" in text
    # a size mismatch is one line naming both sizes
    np.save(tmp_path / "small.npy", labels[:5])
    code, _, err = _run(capsys, "extract", tmp_path / "mov.tif", tmp_path / "small.npy",
                        "-o", tmp_path / "x.npz")
    assert code == 2 and "12x14" in _one_line_error(err) and "5x14" in err


def test_view_without_napari_is_one_line(capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "napari" else real(name, *a))
    code, _, err = _run(capsys, "view")
    assert code == 2 and "napari-catune[all]" in _one_line_error(err)


def test_core_imports_no_qt_or_napari():
    """`import napari_catune` and the CLI's modules load without napari/Qt (a core install)."""
    code = (
        "import sys, napari_catune, napari_catune.cli, napari_catune.sources, "
        "napari_catune.results, napari_catune.session, napari_catune.solver\n"
        "napari_catune.cli.build_parser()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide6', 'magicgui', 'pyqtgraph', 'npe2', "
        "'vispy', 'dask', 'matplotlib'))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=_cli_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_pyproject_core_has_no_napari_or_qt():
    import tomllib

    meta = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    import re

    names = {re.split(r"[<>=\[ ;]", d, maxsplit=1)[0].lower()
             for d in meta["project"]["dependencies"]}
    assert not names & {"napari", "pyqt5", "pyqt6", "pyside6", "qtpy", "magicgui", "npe2"}
    extras = meta["project"]["optional-dependencies"]
    for extra in ("all", "testing"):
        assert any(d.startswith("PyQt6") for d in extras[extra])
        assert not any(d.startswith("PyQt5") for d in extras[extra])
        assert any(d.startswith("napari") for d in extras[extra])
    assert (Path(__file__).resolve().parents[1] / "LICENSE").read_text().startswith(
        "BSD 3-Clause License")


def test_view_names_axes_and_reads_the_tiff_frame_rate(make_napari_viewer, tmp_path):
    import tifffile

    from napari_catune._qt import launch

    viewer = make_napari_viewer()
    movie, labels = _movie()
    tifffile.imwrite(tmp_path / "mov.tif", movie, imagej=True,
                     metadata={"axes": "TYX", "finterval": 0.1})
    tifffile.imwrite(tmp_path / "rec_cp_masks.tif", labels)
    (layer,) = launch._open_path(viewer, str(tmp_path / "mov.tif"))
    (rois,) = launch._open_path(viewer, str(tmp_path / "rec_cp_masks.tif"))
    launch._viewer_axes(viewer)
    assert layer.metadata["catune"]["fs"] == pytest.approx(10.0)
    # the movie is opened lazily by CaTune's TIFF reader, not read whole by napari's
    assert layer.source.reader_plugin == "napari-catune"
    assert layer.metadata["catune"]["lazy"] == "plain"  # read at offsets, not loaded whole
    np.testing.assert_array_equal(np.asarray(layer.data), movie)
    assert tuple(layer.axis_labels) == ("t", "y", "x")
    assert rois._type_string == "labels"  # a cellpose mask is Labels, not an Image
    assert tuple(viewer.dims.axis_labels) == ("t", "y", "x")


def test_minian_folder_is_a_cli_input(capsys, tmp_path):
    """The same loader as the napari reader: a Minian folder needs --fs (Minian stores none)."""
    from test_loaders import make_minian

    from napari_catune.loaders import load_minian_data

    make_minian(tmp_path / "minian")
    code, out, err = _run(capsys, "info", tmp_path / "minian", "--fs", "20")
    assert code == 0, err
    data = load_minian_data(tmp_path / "minian")
    assert "(minian)" in out and f"{data.traces.shape}" in out


# ---------------------------------------------------------------- review fixes (2nd session)


def test_caiman_trace_option_is_recorded(capsys, tmp_path, params):
    """C + YrA is the default where stored; --caiman-trace/--all-rois choose; info
    and the sidecar say which traces were used."""
    make_caiman(tmp_path / "cnmf.hdf5", fr=FS, with_dff=True)
    code, out, err = _run(capsys, "info", tmp_path / "cnmf.hdf5", "--all-rois",
                          "--caiman-trace", "C")
    assert code == 0, err
    assert "traces       C\n" in out and "(4, 250)" in out
    code, out, err = _run(capsys, "info", tmp_path / "cnmf.hdf5", "--caiman-trace", "C+YrA",
                          "--only-accepted")
    assert code == 0, err
    assert "traces       C + YrA" in out and "(2, 250)" in out
    code, _, err = _run(capsys, "deconvolve", tmp_path / "cnmf.hdf5", "--params", params,
                        "-o", tmp_path / "r.npz", "--caiman-trace", "F_dff")
    assert code == 0, err
    meta = json.loads((tmp_path / "r_metadata.json").read_text())
    assert meta["input_traces"] == "F_dff" and meta["input_kind"] == "caiman"
    assert "--caiman-trace F_dff" in meta["command"]
    make_caiman(tmp_path / "nodff.hdf5", fr=FS)
    code, _, err = _run(capsys, "info", tmp_path / "nodff.hdf5", "--caiman-trace", "F_dff")
    assert code == 2 and "--caiman-trace C" in _one_line_error(err)


def test_suite2p_v1_and_minian_inputs_are_protected(capsys, tmp_path, params):
    from test_loaders import make_minian, make_suite2p_v1

    make_suite2p_v1(tmp_path / "s2p", fs=FS)
    plane = tmp_path / "s2p" / "suite2p" / "plane0"
    for name in ("settings.npy", "db.npy", "reg_outputs.npy"):
        before = (plane / name).read_bytes()
        code, _, err = _run(capsys, "deconvolve", plane, "--params", params, "-o", plane / name)
        assert code == 2 and "destroy the input" in _one_line_error(err), name
        assert (plane / name).read_bytes() == before
    make_minian(tmp_path / "minian")
    code, _, err = _run(capsys, "info", tmp_path / "minian", "--fs", "20")
    assert code == 0, err
    out = tmp_path / "minian" / "C.zarr" / "x.npy"
    code, _, err = _run(capsys, "deconvolve", tmp_path / "minian", "--params", params, "-o", out)
    assert code == 2 and "inside the Minian input" in _one_line_error(err)


def test_zero_based_roi_ids_are_accepted_by_the_cli(capsys, tmp_path, params):
    y = _traces(n=5, T=200)
    np.savez(tmp_path / "t.npz", traces=y, roi_ids=np.arange(5), fs=FS)
    for out in ("r.npz", "c.csv"):
        code, _, err = _run(capsys, "deconvolve", tmp_path / "t.npz", "--params", params,
                            "-o", tmp_path / out)
        assert code == 0, err
    with np.load(tmp_path / "r.npz") as z:
        assert np.array_equal(z["roi_ids"], np.arange(5))
    assert (tmp_path / "c.csv").read_text().splitlines()[0].startswith("time_s,roi_0,roi_1")
    np.savez(tmp_path / "d.npz", traces=y, roi_ids=[0, 1, 1, 2, 3], fs=FS)
    code, _, err = _run(capsys, "info", tmp_path / "d.npz")
    assert code == 2 and "more than once (1)" in _one_line_error(err)


def test_wrong_movie_key_lists_the_keys(capsys, tmp_path):
    import h5py
    import tifffile
    import zarr

    movie, labels = _movie()
    tifffile.imwrite(tmp_path / "m.tif", labels)
    with h5py.File(tmp_path / "mov.h5", "w") as f:
        f["grp/mov"] = movie
    for key in ("grp", "nothere"):
        code, _, err = _run(capsys, "extract", tmp_path / "mov.h5", tmp_path / "m.tif",
                            "-o", tmp_path / "t.npz", "--movie-key", key)
        line = _one_line_error(err)
        assert code == 2 and "grp/mov (40, 12, 14)" in line and "--movie-key" in line, key
    g = zarr.open(str(tmp_path / "mov.zarr"), mode="w")
    g.create_array("data", data=movie)
    code, _, err = _run(capsys, "extract", tmp_path / "mov.zarr", tmp_path / "m.tif",
                        "-o", tmp_path / "t.npz", "--movie-key", "nothere")
    line = _one_line_error(err)
    assert code == 2 and "'nothere'" in line and "data (40, 12, 14)" in line


def test_info_on_a_tiff_reads_the_header_only(capsys, tmp_path, monkeypatch):
    import tifffile

    movie, _ = _movie()
    tifffile.imwrite(tmp_path / "m.tif", movie, compression="zlib")
    tifffile.imwrite(tmp_path / "four.tif", np.zeros((3, 2, 12, 14), np.uint16))
    tifffile.imwrite(tmp_path / "flat.tif", np.zeros((12, 14), np.uint16))
    (tmp_path / "junk.tif").write_bytes(b"II*\x00garbage")

    def no_pixels(*a, **k):
        raise AssertionError("info read the pixels")

    monkeypatch.setattr(tifffile, "imread", no_pixels)
    monkeypatch.setattr(tifffile, "memmap", no_pixels)
    code, out, err = _run(capsys, "info", tmp_path / "m.tif")
    assert code == 0, err
    assert "(40, 12, 14)" in out and "float32" in out
    for name, why in (("four.tif", "4-D"), ("flat.tif", "single image"),
                      ("junk.tif", "not a readable TIFF")):
        code, _, err = _run(capsys, "info", tmp_path / name)
        assert code == 2 and why in _one_line_error(err), (name, err)


def test_a_tiff_too_large_for_memory_says_so(tmp_path, monkeypatch):
    import tifffile

    from napari_catune.sources import SourceError, open_movie

    movie, _ = _movie()
    tifffile.imwrite(tmp_path / "m.tif", movie, compression="zlib")
    assert open_movie(tmp_path / "m.tif").shape == (40, 12, 14)  # compressed: read whole

    def oom(*a, **k):
        raise MemoryError

    monkeypatch.setattr(tifffile, "imread", oom)
    with pytest.raises(SourceError, match="too large to read into memory"):
        open_movie(tmp_path / "m.tif")
    tifffile.imwrite(tmp_path / "plain.tif", movie)  # uncompressed: memory-mapped
    m = open_movie(tmp_path / "plain.tif")
    assert isinstance(m.data, np.memmap) and np.array_equal(m.data, movie)


def test_csv_output_with_full_is_refused(capsys, tmp_path, params):
    np.save(tmp_path / "t.npy", _traces())
    code, _, err = _run(capsys, "deconvolve", tmp_path / "t.npy", "--params", params,
                        "-o", tmp_path / "r.csv", "--full")
    assert code == 2 and "activity only" in _one_line_error(err)
    assert not (tmp_path / "r.csv").exists()


def test_csv_sidecar_keeps_the_csv_layout_and_sidecars_do_not_collide(capsys, tmp_path,
                                                                       params):
    np.save(tmp_path / "t.npy", _traces())
    code, _, err = _run(capsys, "deconvolve", tmp_path / "t.npy", "--params", params,
                        "-o", tmp_path / "r.csv")
    assert code == 0, err
    meta = json.loads((tmp_path / "r_metadata.json").read_text())
    assert "csv_layout" in meta and meta["source_filename"] == "t.npy"
    assert meta["command"].startswith("napari-catune deconvolve") and meta["output"] == "r.csv"
    code, _, err = _run(capsys, "deconvolve", tmp_path / "t.npy", "--params", params,
                        "-o", tmp_path / "res.npy")
    assert code == 0, err
    side = (tmp_path / "res_metadata.json").read_text()
    code, _, err = _run(capsys, "deconvolve", tmp_path / "t.npy", "--params", params,
                        "-o", tmp_path / "res.npz")
    assert code == 2 and "already describes res.npy" in _one_line_error(err)
    assert (tmp_path / "res_metadata.json").read_text() == side
    # the same output again is fine (its own sidecar)
    code, _, err = _run(capsys, "deconvolve", tmp_path / "t.npy", "--params", params,
                        "-o", tmp_path / "res.npy")
    assert code == 0, err


def test_python_m_cli_view_errors_are_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "napari_catune.cli", "view",
                        str(tmp_path / "missing.npy")], capture_output=True, text=True,
                       env=_cli_env(), timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "does not exist" in r.stderr


def test_report_leaves_the_matplotlib_backend_alone(tmp_path, monkeypatch):
    import matplotlib

    from napari_catune.results import save_report

    def refuse(*a, **k):
        raise AssertionError("save_report changed the process's backend")

    monkeypatch.setattr(matplotlib, "use", refuse)
    y = _traces(n=2, T=100)
    save_report(tmp_path / "r.png", traces=y, fit=y, activity=np.abs(y), roi_ids=[1, 2],
                params=TuningParams(TAU_R, TAU_D, FS, LAM))
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_extract_label_errors_name_the_labels_file(capsys, tmp_path):
    import tifffile

    movie, labels = _movie()
    tifffile.imwrite(tmp_path / "m.tif", movie)
    bad = labels.astype(np.int16)
    bad[0, 0] = -1
    np.save(tmp_path / "neg_labels.npy", bad)
    code, _, err = _run(capsys, "extract", tmp_path / "m.tif", tmp_path / "neg_labels.npy",
                        "-o", tmp_path / "t.npz", "-q")
    line = _one_line_error(err)
    assert code == 2 and "neg_labels.npy" in line and "m.tif" not in line


def test_extract_names_a_movie_with_time_last(capsys, tmp_path):
    """A (Y, X, T) movie is named as such, not read as frames of Y x T (audit aud40)."""
    movie, labels = _movie()
    Y, X = labels.shape
    tlast = np.zeros((Y, X, max(Y, X) + 7), dtype=np.uint16)
    np.save(tmp_path / "tlast.npy", tlast)
    np.save(tmp_path / "labels.npy", labels)
    code, _, err = _run(capsys, "extract", tmp_path / "tlast.npy", tmp_path / "labels.npy",
                        "-o", tmp_path / "t.npz", "-q")
    line = _one_line_error(err)
    assert code == 2 and "time axis looks last" in line and "np.moveaxis" in line
    assert not (tmp_path / "t.npz").exists()


def test_missing_optional_readers_name_the_smallest_extra(capsys, tmp_path, monkeypatch):
    import h5py

    movie, labels = _movie()
    with h5py.File(tmp_path / "mov.h5", "w") as f:
        f["mov"] = movie
    from napari_catune.sources import SourceError, open_labels

    (tmp_path / "m_masks.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    monkeypatch.setitem(sys.modules, "h5py", None)
    monkeypatch.setitem(sys.modules, "imageio", None)
    monkeypatch.setitem(sys.modules, "imageio.v3", None)
    code, _, err = _run(capsys, "info", tmp_path / "mov.h5")
    line = _one_line_error(err)
    assert code == 2 and "napari-catune[h5]" in line and "CaImAn" not in line
    with pytest.raises(SourceError, match=r"pip install imageio"):
        open_labels(tmp_path / "m_masks.png")
    toml = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert 'h5 = ["h5py' in toml and 'zarr = ["zarr' in toml and 'masks = ["imageio' in toml


def test_info_on_deconvolved_activity_has_no_nan_snr(capsys, tmp_path, params):
    np.save(tmp_path / "t.npy", _traces())
    code, _, err = _run(capsys, "deconvolve", tmp_path / "t.npy", "--params", params,
                        "-o", tmp_path / "a.npy")
    assert code == 0, err
    # the results file itself is named as such (as a results .npz is)
    code, _, err = _run(capsys, "info", tmp_path / "a.npy")
    assert code == 2 and "is a napari-catune results file" in err
    # the same activity as a bare array (mostly zeros)
    np.save(tmp_path / "bare.npy", np.load(tmp_path / "a.npy"))
    code, out, err = _run(capsys, "info", tmp_path / "bare.npy", "--fs", str(FS))
    assert code == 0, err
    assert "min nan" not in out and "RuntimeWarning" not in err and "Warning" not in err
    assert "cells without a finite SNR" in out


def test_view_without_a_qt_binding_is_one_line(capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    qt = ("PyQt6", "PyQt5", "PySide6", "PySide2")
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in qt else real(name, *a))
    code, _, err = _run(capsys, "view")
    assert code == 2 and "napari-catune[qt6]" in _one_line_error(err)


def test_only_cells_reaches_the_nwb_loader(capsys, tmp_path, monkeypatch):
    from napari_catune import nwb
    from napari_catune.loaders import PipelineData

    seen = {}

    def fake(path, **kw):
        seen.update(kw)
        y = _traces(n=3 if not kw.get("only_cells") else 2, T=100)
        return PipelineData(y, FS, np.arange(1, y.shape[0] + 1), None, None, str(path),
                            kind="ophys/Fluorescence/RoiResponseSeries",
                            notes=["only cells: 2 of 3"] if kw.get("only_cells") else [])

    monkeypatch.setattr(nwb, "load_nwb", fake)
    (tmp_path / "rec.nwb").write_bytes(b"")
    code, out, err = _run(capsys, "info", tmp_path / "rec.nwb", "--only-cells")
    assert code == 0, err
    assert seen == {"only_cells": True} and "(2, 100)" in out
    assert "traces       ophys/Fluorescence/RoiResponseSeries" in out


@pytest.mark.parametrize("value", ["abc", "0", "-1"])
def test_a_bad_thread_setting_is_a_one_line_usage_error(capsys, tmp_path, params, monkeypatch,
                                                        value):
    np.save(tmp_path / "tr.npy", _traces())
    monkeypatch.setenv("CATUNE_NUM_THREADS", value)
    code, _, err = _run(capsys, "deconvolve", tmp_path / "tr.npy", "--params", params,
                        "-o", tmp_path / "act.npy")
    assert code == 2
    assert "CATUNE_NUM_THREADS" in _one_line_error(err)
    assert not (tmp_path / "act.npy").exists()
