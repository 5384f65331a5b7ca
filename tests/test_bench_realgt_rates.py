"""bench/bench_realgt_rates.py: Cascade's resampling and added noise, and one
run of the whole bench on a tiny synthetic folder in realgt's format (CI has
no realgt-dev; the bench never needs it here)."""

import math
import sys

import numpy as np
import pytest
from _bench import ROOT, load_bench

sys.path.insert(0, str(ROOT / "bench"))  # the bench imports _one_blas and _realgt from there


@pytest.fixture(scope="module")
def B():
    return load_bench("bench_realgt_rates")


def _kernel(fs, tr, td, T):
    t = np.arange(T) / fs
    h = np.exp(-t / td) - np.exp(-t / tr)
    return h / h.max()


def _recording(rng, fs, T, rate_hz=1.0, tr=0.02, td=0.4, noise=0.03):
    """dF/F with exact AP times (s from t0 = 0), and the spikes per nearest frame."""
    times = np.sort(rng.uniform(1.0, T / fs - 1.0, rng.poisson(rate_hz * T / fs)))
    spikes = np.bincount(np.rint(times * fs).astype(int), minlength=T)[:T].astype(float)
    y = np.convolve(spikes, _kernel(fs, tr, td, T))[:T] * 0.5 + noise * rng.standard_normal(T)
    return y, spikes, times


def _write(path, name, indicator, rows, fs):
    T = max(r[0].size for r in rows)
    fl = np.full((len(rows), T), np.nan, np.float32)
    sp = np.zeros((len(rows), T), np.int16)
    for i, (y, s, _) in enumerate(rows):
        fl[i, : y.size] = y
        sp[i, : s.size] = s
    offsets = np.cumsum([0] + [r[2].size for r in rows])
    np.savez(path / f"{name}.npz", fluorescence=fl, spikes=sp, fs=np.float64(fs),
             lengths=np.array([r[0].size for r in rows]), fs_per_row=np.full(len(rows), fs),
             t0=np.zeros(len(rows)), spike_times=np.concatenate([r[2] for r in rows]),
             spike_times_offsets=offsets, indicator=np.array(indicator))


def _row(B, fs=30.0, T=1800, seed=0):
    y, s, times = _recording(np.random.default_rng(seed), fs, T)
    return B.R.Row("DSX-test", "GCaMP6f", fs, y, s, 0.0, times)


def test_resampling_recounts_the_spikes_on_the_new_frames(B):
    """At 15 Hz a 30 Hz row has half the frames, fs exactly 15, and each AP
    counted in the bin centred on its nearest new frame; a rate within 5 %
    keeps the row as it is (Cascade's rule)."""
    row = _row(B)
    y, s, fs = B.make(row, 15.0, None, np.random.default_rng(0))
    assert y.size == row.y.size // 2 and fs == pytest.approx(15.0, rel=1e-12)
    inside = (row.spike_times >= -0.5 / fs) & (row.spike_times < (y.size - 0.5) / fs)
    assert s.sum() == inside.sum()
    expect = np.bincount(np.rint(row.spike_times[inside] * fs).astype(int), minlength=y.size)
    np.testing.assert_array_equal(s, expect)
    # FFT resampling keeps the slow signal: the trace smoothed over 0.5 s matches
    sm = B.R.smooth(row.y, row.fs, 0.5)[::2]
    assert np.corrcoef(B.R.smooth(y, fs, 0.5), sm)[0, 1] > 0.99
    y2, s2, fs2 = B.make(row, 31.0, None, np.random.default_rng(0))
    assert fs2 == row.fs and y2 is row.y and s2 is row.spikes


def test_added_noise_reaches_cascades_level(B):
    """--noise L: the trace's Cascade noise level is L (at the native rate and
    after resampling, where the sd is scaled by sqrt(target / fs)); a row
    already noisier than L is left out; the draw is fixed by the row's seed."""
    row = _row(B, T=6000)
    own = B.cascade_level(row.y, row.fs)
    for rate in ("native", 15.0):
        seed = B.seed_of(row, 0, rate, 4.0)
        y, _, fs = B.make(row, rate, 4.0, np.random.default_rng(seed))
        assert B.cascade_level(y, fs) == pytest.approx(4.0, rel=0.1)
        again = B.make(row, rate, 4.0, np.random.default_rng(B.seed_of(row, 0, rate, 4.0)))[0]
        np.testing.assert_array_equal(y, again)
    assert B.make(row, "native", 0.5 * own, np.random.default_rng(0)) is None
    assert B.seed_of(row, 0, 15.0, 4.0) != B.seed_of(row, 1, 15.0, 4.0)


def test_absent_folder_says_so(B, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(B.R, "DATA", tmp_path / "nowhere")
    assert B.main(["--rows", "1"]) == 0
    assert "no real recordings" in capsys.readouterr().out


def test_runs_on_a_synthetic_folder(B, monkeypatch, tmp_path, capsys):
    """The whole bench on two small datasets: a table per rate with both
    datasets and every column, the summary lines, and ours finds the spikes
    of clean synthetic data (r > 0.8)."""
    pytest.importorskip("oasis", reason="OASIS (testing extra) not installed")
    rng = np.random.default_rng(7)
    for name, fs in (("DS01-GCaMP6f-test", 30.0), ("DS02-GCaMP6f-test", 60.0)):
        _write(tmp_path, name, "GCaMP6f", [_recording(rng, fs, int(60 * fs)) for _ in range(2)], fs)
    monkeypatch.setattr(B.R, "DATA", tmp_path)
    assert B.main(["--rows", "2", "--rates", "native", "7.5", "--noise", "none", "2",
                   "--workers", "1", "--per-trace"]) == 0
    out = capsys.readouterr().out
    assert "4 rows from" in out
    for rate in ("native", "7.5 Hz"):
        for noise in ("none added", "2"):
            assert f"### rate {rate}, noise {noise}: 4 rows" in out
    assert out.count("| method | DS01 | DS02 | **median** |") == 6   # the 7.5 Hz ones twice (both widths)
    summary = out.split("Summary")[1].splitlines()[1:]
    assert len(summary) == 6 and all("ours / best OASIS" in s for s in summary)
    for line in out.splitlines():
        if line.startswith("| ours auto, pooled |") or line.startswith("| ours auto, per trace |"):
            assert float(line.split("**")[1]) > 0.8, line
    assert math.isfinite(float(summary[0].split("ours / best OASIS ")[1].split(";")[0]))
