"""The one batch loop (napari_catune.batch) behind Apply to all and `napari-catune deconvolve`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import napari_catune.solver as solver_mod
from napari_catune import batch, cli, session as ses
from napari_catune.params import TuningParams, save_params

from _synth import calcium_traces  # noqa: E402

FS, TR, TD, LAM = 20.0, 0.05, 0.4, 0.2


def _traces(n=7, T=300, seed=1):
    return calcium_traces(n, T, fs=FS, tau_r=TR, tau_d=TD, seed=seed)


def _params(mode="scalar", **kw):
    return TuningParams(TR, TD, FS, LAM, baseline=mode, **kw)


def test_no_qt_imported():
    code = ("import sys, napari_catune.batch; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('qtpy', 'PyQt5', 'PyQt6', "
            "'napari')]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("mode", ["scalar", "drift", "rolling"])
def test_chunks_equal_one_solve_and_keep_per_sample_baselines(mode):
    y = _traces()
    p = _params(mode)
    sink = batch.ArraySink(*y.shape, batch.per_sample_baseline(p))
    seen = []
    summary = batch.run_batch(y, p, sink, chunk=3, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(3, 7), (6, 7), (7, 7)]
    assert summary.skipped.size == 0 and summary.solved == 7
    ref = solver_mod.run_deconvolution_full(y, FS, TR, TD, LAM, baseline=mode)
    np.testing.assert_allclose(sink.activity, ref.activity, atol=1e-9)
    np.testing.assert_allclose(sink.fit, ref.reconvolution, atol=1e-9)
    assert sink.baseline.shape == np.shape(ref.baseline)
    assert sink.baseline.shape == ((7, 300) if mode != "scalar" else (7,))
    np.testing.assert_array_equal(sink.converged, ref.converged)
    assert not sink.skipped.any()


def test_drift_scale_reaches_the_solver():
    y = _traces(n=2)
    p = _params("drift", drift_scale=3.0)
    sink = batch.ArraySink(2, 300, True)
    batch.run_batch(y, p, sink, chunk=5)
    ref = solver_mod.run_deconvolution_full(y, FS, TR, TD, LAM, baseline="drift", drift_scale=3.0)
    np.testing.assert_allclose(sink.baseline, ref.baseline, atol=1e-9)


@pytest.mark.parametrize("given", [False, True])
def test_non_finite_rows_are_skipped_and_reported(given):
    y = _traces()
    y[1, 10] = np.nan
    y[5, 0] = np.inf
    p = _params()
    sink = batch.ArraySink(*y.shape, False)
    skip = batch.nonfinite_rows(y, chunk=2) if given else None
    if given:
        assert skip.tolist() == [1, 5]
    summary = batch.run_batch(y, p, sink, chunk=4, skip=skip)
    assert summary.skipped.tolist() == [1, 5] and summary.solved == 5
    assert sink.skipped.tolist() == [False, True, False, False, False, True, False]
    assert np.isnan(sink.activity[[1, 5]]).all() and not sink.converged[[1, 5]].any()
    ok = [0, 2, 3, 4, 6]
    ref = solver_mod.run_deconvolution_full(y[ok], FS, TR, TD, LAM)
    np.testing.assert_allclose(sink.activity[ok], ref.activity, atol=1e-9)


def test_cancel_stops_between_chunks():
    y = _traces(n=10)
    sink = batch.ArraySink(10, 300, False)
    calls = []
    with pytest.raises(batch.BatchCancelled) as info:
        batch.run_batch(y, _params(), sink, chunk=3,
                        progress=lambda d, t: calls.append(d), cancel=lambda: len(calls) >= 2)
    assert (info.value.done, info.value.total) == (6, 10)
    assert np.isfinite(sink.activity[:6]).all() and np.isnan(sink.activity[6:]).all()


def test_bad_chunk_is_a_clear_error():
    with pytest.raises(ValueError, match="chunk"):
        batch.run_batch(_traces(n=2), _params(), batch.ArraySink(2, 300, False), chunk=0)


def test_apply_to_all_and_the_cli_give_the_same_results(tmp_path, capsys):
    """Both callers go through the same loop: same rows skipped, same numbers."""
    y = _traces()
    y[3, 50] = np.nan
    p = _params("drift")
    inp, par, out = tmp_path / "y.npy", tmp_path / "p.json", tmp_path / "out.npz"
    np.save(inp, y)
    save_params(p, par)
    assert cli.main(["deconvolve", str(inp), "--params", str(par), "-o", str(out), "--full",
                     "--skip-bad", "--chunk-cells", "2"]) == 0
    capsys.readouterr()
    gen = ses.apply_job(y, np.arange(1, 8), p)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        b = stop.value
    assert b.skipped.tolist() == [4]  # the ROI id of row 3
    with np.load(out) as z:
        np.testing.assert_allclose(z["activity"], b.activity, atol=1e-9, equal_nan=True)
        np.testing.assert_allclose(z["baseline"], b.baseline, atol=1e-9, equal_nan=True)
        np.testing.assert_array_equal(z["converged"], b.converged)
        np.testing.assert_array_equal(z["skipped"], np.arange(7) == 3)
    assert np.isnan(b.features["r2"][3]) and np.isfinite(b.features["r2"][[0, 1, 2, 4]]).all()


def test_both_callers_use_the_batch_loop(monkeypatch, tmp_path, capsys):
    calls = []
    real = batch.iter_batch

    def spy(*a, **k):
        calls.append(k.get("chunk"))
        return (yield from real(*a, **k))

    monkeypatch.setattr(batch, "iter_batch", spy)
    y = _traces(n=3)
    gen = ses.apply_job(y, [1, 2, 3], _params())
    for _ in gen:
        pass
    inp, par = tmp_path / "y.npy", tmp_path / "p.json"
    np.save(inp, y)
    save_params(_params(), par)
    assert cli.main(["deconvolve", str(inp), "--params", str(par), "-o",
                     str(tmp_path / "o.npy")]) == 0
    assert len(calls) == 2
