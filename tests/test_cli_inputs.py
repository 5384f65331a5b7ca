"""The CLI's input checks of the thirty-fourth round's user audit: frame
rates equal after rounding, ``deconvolve --fs``, NaN-padded rows, transposed
input, ``view``/``info`` on files that are no traces input."""

from __future__ import annotations

import numpy as np
import pytest

from napari_catune import cli, run_deconvolution_full
from napari_catune.io import save_for_tuning
from napari_catune.params import TuningParams, fs_matches, save_params

from _synth import calcium_traces

TAU_R, TAU_D, LAM = 0.05, 0.4, 0.2
FS_FULL = 121.96515600054215  # a rate estimated at full precision ...
FS_ROUND = 121.965            # ... and as suite2p's ops / an NWB file store it


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert "Traceback" not in err
    return lines[-1]


def _params(path, fs):
    save_params(TuningParams(TAU_R, TAU_D, fs, LAM), path)
    return path


def test_fs_matches():
    assert fs_matches(FS_FULL, FS_ROUND) and fs_matches(FS_ROUND, FS_FULL)
    assert fs_matches(30, 30.0)
    assert not fs_matches(121.965, 120.122)
    assert not fs_matches(30.0, 30.01)  # 3e-4: a real difference


def test_deconvolve_takes_a_rounded_rate(capsys, tmp_path):
    y = calcium_traces(3, 400, fs=FS_ROUND, tau_r=TAU_R, tau_d=TAU_D, seed=1)
    save_for_tuning(y, FS_ROUND, tmp_path / "rec")
    p = _params(tmp_path / "p.json", FS_FULL)
    code, _, err = _run(capsys, "deconvolve", tmp_path / "rec.npy", "--params", p,
                        "-o", tmp_path / "a.npy", "-q")
    assert code == 0, err
    ref = run_deconvolution_full(y, FS_FULL, TAU_R, TAU_D, LAM)
    assert np.array_equal(np.load(tmp_path / "a.npy"), ref.activity)


def test_deconvolve_mismatch_shows_the_difference_and_names_fs(capsys, tmp_path):
    save_for_tuning(calcium_traces(2, 300, fs=30.0, tau_r=TAU_R, tau_d=TAU_D, seed=0), 30.01, tmp_path / "rec")
    p = _params(tmp_path / "p.json", 30.0)
    code, _, err = _run(capsys, "deconvolve", tmp_path / "rec.npy", "--params", p,
                        "-o", tmp_path / "a.npy")
    assert code == 2
    line = _error(err)
    assert "sampling rate mismatch" in line
    assert "30 Hz" in line and "30.01 Hz" in line and "--fs" in line
    assert not (tmp_path / "a.npy").exists()


def test_deconvolve_fs_overrides_the_data_rate(capsys, tmp_path):
    y = calcium_traces(2, 300, fs=30.0, tau_r=TAU_R, tau_d=TAU_D, seed=2)
    save_for_tuning(y, 29.0, tmp_path / "rec")  # a wrong rate in the file
    p = _params(tmp_path / "p.json", 30.0)
    code, _, err = _run(capsys, "deconvolve", tmp_path / "rec.npy", "--params", p,
                        "-o", tmp_path / "a.npz", "--fs", "30", "-q")
    assert code == 0, err
    assert "--fs 30 Hz overrides the 29 Hz recorded" in err
    ref = run_deconvolution_full(y, 30.0, TAU_R, TAU_D, LAM)
    with np.load(tmp_path / "a.npz") as z:
        assert np.array_equal(z["activity"], ref.activity)
        assert float(z["fs"]) == 30.0
    # --fs is checked against the parameter file's rate
    code, _, err = _run(capsys, "deconvolve", tmp_path / "rec.npy", "--params", p,
                        "-o", tmp_path / "b.npz", "--fs", "29")
    assert code == 2
    line = _error(err)
    assert "--fs 29 Hz" in line and "tuned at 30 Hz" in line
    assert not (tmp_path / "b.npz").exists()


def test_nan_padded_rows_are_solved_on_their_finite_part(capsys, tmp_path):
    """Recordings of different lengths in one array, NaN after each row's end
    (realgt's own format): each row is solved on its finite part, NaN after it
    (they were refused with advice to trim); a NaN inside a row is still refused."""
    y = calcium_traces(4, 400, fs=30.0, tau_r=TAU_R, tau_d=TAU_D, seed=3)
    y[1, 350:] = np.nan
    y[3, 300:] = np.nan
    np.savez(tmp_path / "pad.npz", traces=y, fs=30.0)
    p = _params(tmp_path / "p.json", 30.0)
    code, _, err = _run(capsys, "deconvolve", tmp_path / "pad.npz", "--params", p,
                        "-o", tmp_path / "a.npz")
    assert code == 0, err
    assert "2 rows end in NaN padding (finite for 300 to 350 of 400 frames); each solved " \
        "on its finite part, its outputs NaN after it" in err
    with np.load(tmp_path / "a.npz") as z:
        act, skipped = z["activity"], z["skipped"]
    assert not skipped.any()
    ref = run_deconvolution_full(y[3, :300].copy(), 30.0, TAU_R, TAU_D, LAM)
    assert np.array_equal(act[3, :300], ref.activity) and np.isnan(act[3, 300:]).all()
    code, out, _ = _run(capsys, "info", tmp_path / "pad.npz")
    assert code == 0 and "bad rows     0" in out and "(4 cells)" in out
    assert "padded rows  2  (ending in NaN padding, finite for 300 to 350 of 400 frames" in out
    # a NaN inside a row is no padding: refused, with what to do
    y[2, 10] = np.nan
    np.savez(tmp_path / "hole.npz", traces=y, fs=30.0)
    code, _, err = _run(capsys, "deconvolve", tmp_path / "hole.npz", "--params", p,
                        "-o", tmp_path / "b.npz")
    line = _error(err)
    assert code == 2 and "1 of 4 rows hold NaN or Inf before their end (ROI id 3 = row 2, 0-based)" in line
    assert "drop or interpolate those samples, or pass --skip-bad" in line
    assert "trim" not in line
    # with --skip-bad only that row is skipped
    code, _, err = _run(capsys, "deconvolve", tmp_path / "hole.npz", "--params", p,
                        "-o", tmp_path / "b.npz", "--skip-bad", "-q")
    assert code == 0 and "(ROI id 3 = row 2, 0-based); skipped: their output rows are NaN" in err
    with np.load(tmp_path / "b.npz") as z:
        assert z["skipped"].tolist() == [False, False, True, False]


def test_padding_lengths_come_from_the_one_chunked_pass(capsys, tmp_path, monkeypatch):
    """The rows were read again one at a time to find their lengths (on zarr a
    chunk decompressed per row: 118 s for a refusal ``info`` scans in 1 s); a
    padded input is read a chunk at a time, once to check, once to solve."""
    y = calcium_traces(300, 200, fs=30.0, tau_r=TAU_R, tau_d=TAU_D, seed=7)
    y[:, 150:] = np.nan
    np.savez(tmp_path / "pad.npz", traces=y, fs=30.0)
    p = _params(tmp_path / "p.json", 30.0)
    reads = []
    real_open = cli.open_input

    def counting_open(*a, **k):
        src = real_open(*a, **k)
        read = src.read

        def counted(a, b):
            reads.append((a, b))
            return read(a, b)

        src.read = counted
        return src

    monkeypatch.setattr(cli, "open_input", counting_open)
    code, _, err = _run(capsys, "deconvolve", tmp_path / "pad.npz", "--params", p,
                        "-o", tmp_path / "a.npz", "--chunk-cells", "100")
    assert code == 0 and "300 rows end in NaN padding (finite for 150 of 200" in err
    assert reads == [(0, 100), (100, 200), (200, 300)] * 2


def test_many_padded_rows_of_one_length_deconvolve_and_estimate(capsys, tmp_path):
    """More rows than the old 2000-row re-read limit, all padded to one length."""
    y = np.random.default_rng(8).normal(size=(2500, 120)) + 5
    y[:, 100:] = np.nan
    np.savez(tmp_path / "many.npz", traces=y, fs=30.0)
    p = _params(tmp_path / "p.json", 30.0)
    code, _, err = _run(capsys, "deconvolve", tmp_path / "many.npz", "--params", p,
                        "-o", tmp_path / "a.npz")
    assert code == 0, err
    assert "2500 rows end in NaN padding (finite for 100 of 120 frames)" in err
    with np.load(tmp_path / "a.npz") as z:
        assert np.isfinite(z["activity"][:, :100]).all()
        assert np.isnan(z["activity"][:, 100:]).all()
    code, out, err = _run(capsys, "estimate", tmp_path / "many.npz", "--max-cells", "50")
    assert code == 0, err
    assert "estimated from 50 of 2500 cells" in out


def test_transposed_input_is_named_and_its_real_shape_reported(capsys, tmp_path):
    y = calcium_traces(3, 400, fs=30.0, tau_r=TAU_R, tau_d=TAU_D, seed=4)
    np.save(tmp_path / "frames_by_cells.npy",
            np.random.default_rng(0).standard_normal((2000, 12)))
    code, _, err = _run(capsys, "estimate", tmp_path / "frames_by_cells.npy", "--fs", "30")
    assert code == 2
    assert "looks transposed? (cells x frames expected" in err
    line = _error(err)
    assert "(2000, 12)" in line and "(500, 12)" not in line
    # cells x frames as expected: no such warning
    np.save(tmp_path / "ok.npy", y)
    code, _, err = _run(capsys, "info", tmp_path / "ok.npy", "--fs", "30")
    assert code == 0 and "transposed" not in err


def test_wide_but_legitimate_data_is_not_called_transposed(capsys, tmp_path):
    """3000 cells x 290 frames (10 s at 29 Hz) is a recording, not frames x
    cells: no warning when a sidecar states the shape, nor on a plain .npy of
    that length; a plain .npy of 2000 x 12 still gets it."""
    rng = np.random.default_rng(9)
    save_for_tuning(rng.normal(size=(3000, 40)) + 5, 29.0, tmp_path / "side")
    code, _, err = _run(capsys, "info", tmp_path / "side.npy")
    assert code == 0 and "transposed" not in err
    np.save(tmp_path / "wide.npy", rng.normal(size=(3000, 290)) + 5)
    code, _, err = _run(capsys, "info", tmp_path / "wide.npy", "--fs", "29")
    assert code == 0 and "transposed" not in err
    np.save(tmp_path / "short.npy", rng.normal(size=(3000, 40)) + 5)
    code, _, err = _run(capsys, "info", tmp_path / "short.npy", "--fs", "29")
    assert code == 0 and "looks transposed?" in err


def test_results_files_are_named_as_such(capsys, tmp_path):
    y = calcium_traces(3, 300, fs=30.0, tau_r=TAU_R, tau_d=TAU_D, seed=5)
    np.savez(tmp_path / "tr.npz", traces=y, fs=30.0)
    p = _params(tmp_path / "p.json", 30.0)
    assert _run(capsys, "deconvolve", tmp_path / "tr.npz", "--params", p,
                "-o", tmp_path / "res.npz", "-q")[0] == 0
    code, _, err = _run(capsys, "info", tmp_path / "res.npz")
    line = _error(err)
    assert code == 2 and "is a napari-catune results file" in line
    assert "activity" in line and "3 cells x 300 frames" in line and "load_results" in line
    assert "open it in napari" not in line and "np.load(path)['activity']" in line
    # as napari's writer / results.save_results write it (features.converged, no converged)
    from napari_catune.results import save_results

    a = np.abs(y)
    save_results(tmp_path / "nap.npz", activity=a, fit=a, baseline=np.zeros(3),
                 roi_ids=np.array([1, 2, 3]), fs=30.0, params=TuningParams(TAU_R, TAU_D, 30.0, LAM),
                 features={"snr": np.ones(3), "converged": np.ones(3, bool)})
    for cmd in (("info",), ("view", "--screenshot", tmp_path / "x.png")):
        code, _, err = _run(capsys, *cmd, tmp_path / "nap.npz")
        line = _error(err)
        assert code == 2 and "is a napari-catune results file" in line, line
        assert "3 cells x 300 frames" in line and "open it in napari" not in line
    assert not (tmp_path / "x.png").exists()
    pytest.importorskip("pynwb")
    assert _run(capsys, "deconvolve", tmp_path / "tr.npz", "--params", p,
                "-o", tmp_path / "out.nwb", "-q")[0] == 0
    code, _, err = _run(capsys, "info", tmp_path / "out.nwb")
    line = _error(err)
    assert code == 2 and "is a napari-catune results file" in line
    assert "series=..." not in line.replace("load_nwb(path, series=...)", "")


def test_view_refuses_an_npz_without_traces_as_info_does(capsys, tmp_path):
    """realgt's own files (``fluorescence``, ``lengths``, ...) fell through to
    napari's reader: "Image data must have at least 2 dimensions"."""
    np.savez(tmp_path / "gt.npz", fluorescence=np.ones((3, 50)), lengths=np.array([50, 40, 30]),
             fs=30.0)
    code, _, err_info = _run(capsys, "info", tmp_path / "gt.npz")
    assert code == 2
    code, _, err = _run(capsys, "view", "--screenshot", tmp_path / "x.png", tmp_path / "gt.npz")
    assert code == 2 and not (tmp_path / "x.png").exists()
    assert _error(err).split("error: ", 1)[1] == _error(err_info).split("error: ", 1)[1]
    assert "no traces found" in _error(err)


def test_estimate_takes_nan_padded_rows_on_their_finite_part(capsys, tmp_path):
    y = calcium_traces(4, 400, fs=30.0, tau_r=TAU_R, tau_d=TAU_D, seed=6)
    y[2, 320:] = np.nan
    np.savez(tmp_path / "pad.npz", traces=y, fs=30.0)
    code, out, err = _run(capsys, "estimate", tmp_path / "pad.npz")
    assert code == 0
    assert "1 row ends in NaN padding (finite for 320 of 400 frames)" in err
    assert "left out" not in err and "estimated from 4 cells" in out
    y[:, 300:] = np.nan
    np.savez(tmp_path / "all.npz", traces=y, fs=30.0)
    code, out, err = _run(capsys, "estimate", tmp_path / "all.npz")
    assert code == 0 and "estimated from 4 cells" in out
    y[1, 5] = np.nan  # inside a row: left out
    np.savez(tmp_path / "hole.npz", traces=y, fs=30.0)
    code, out, err = _run(capsys, "estimate", tmp_path / "hole.npz")
    assert code == 0 and "1 rows with NaN or Inf before their end left out" in err
