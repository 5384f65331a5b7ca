"""Apply to all's chunks are bounded in samples (Cancel waits for one chunk, ~0.1-0.4 s),
sized for the solver answering at each chunk (the NumPy solver during a first-use compile:
fewer rows, one thread for long rows), and give the one-solve numbers (audit 39 item 2)."""

from __future__ import annotations

import numpy as np
import pytest

import napari_catune.solver as solver_mod
from napari_catune import session as ses
from napari_catune.params import TuningParams

from _synth import calcium_traces  # noqa: E402

FS, TR, TD, LAM = 20.0, 0.05, 0.4, 0.2


def test_chunk_rows_bounded_by_samples_not_by_the_row_count():
    # the audit's plane: 540 x 54,086 frames took 27-row chunks (n/20), 1/20 of the run
    assert ses.apply_chunk_rows(54_086, compiled=True) == ses.APPLY_CHUNK_SAMPLES // 54_086
    assert ses.apply_chunk_rows(54_086, compiled=True) * 54_086 <= ses.APPLY_CHUNK_SAMPLES
    assert ses.apply_chunk_rows(54_086, compiled=False) == 1  # one row: one thread
    assert ses.apply_chunk_rows(300, compiled=True) == ses.APPLY_CHUNK_MAX_ROWS
    assert ses.apply_chunk_rows(10_000_000, compiled=True) == 1
    assert ses.APPLY_CHUNK_SAMPLES_NUMPY < ses.APPLY_CHUNK_SAMPLES


@pytest.mark.parametrize("mode", ["drift", "scalar"])
def test_apply_job_sizes_each_chunk_for_the_solver_in_use(monkeypatch, mode):
    n, T = 60, 300
    y = 100.0 + 20.0 * calcium_traces(n, T, fs=FS, tau_r=TR, tau_d=TD, seed=4)
    y[17, 40] = np.nan  # a skipped row inside a later chunk keeps its id
    p = TuningParams(TR, TD, FS, LAM, baseline=mode)
    # 1 row per chunk on the NumPy solver, 10 on the compiled one; the compile
    # "finishes" after the third chunk was sized
    monkeypatch.setattr(ses, "APPLY_CHUNK_SAMPLES_NUMPY", T)
    monkeypatch.setattr(ses, "APPLY_CHUNK_SAMPLES", 10 * T)
    asked = []

    def ready():
        asked.append(1)
        return len(asked) > 3

    monkeypatch.setattr(solver_mod, "compiled_ready", ready)
    gen = ses.apply_job(y, np.arange(101, 101 + n), p)
    steps = []
    try:
        while True:
            steps.append(next(gen))
    except StopIteration as stop:
        res = stop.value
    assert [d for d, _ in steps] == [1, 2, 3, 13, 23, 33, 43, 53, 60]
    assert all(t == n for _, t in steps)
    ok = np.arange(n) != 17
    ref = solver_mod.run_deconvolution_full(y[ok], FS, TR, TD, LAM, baseline=mode)
    np.testing.assert_allclose(res.activity[ok], ref.activity, atol=1e-6 * ref.activity.max())
    np.testing.assert_allclose(res.reconvolution[ok], ref.reconvolution, atol=1e-6 * np.ptp(y[ok]))
    assert np.isnan(res.activity[17]).all()
    assert res.skipped.tolist() == [118]
    assert res.features["roi_id"].tolist() == list(range(101, 101 + n))


def test_cancel_stops_after_the_chunk_under_way(monkeypatch):
    n, T = 40, 300
    y = calcium_traces(n, T, fs=FS, tau_r=TR, tau_d=TD, seed=5)
    monkeypatch.setattr(ses, "APPLY_CHUNK_SAMPLES", 4 * T)
    monkeypatch.setattr(solver_mod, "compiled_ready", lambda: True)
    calls = []
    real = solver_mod.run_deconvolution_full
    monkeypatch.setattr(solver_mod, "run_deconvolution_full",
                        lambda tr, *a, **k: calls.append(len(tr)) or real(tr, *a, **k))
    gen = ses.apply_job(y, np.arange(n), TuningParams(TR, TD, FS, LAM))
    assert next(gen) == (4, n)
    gen.close()  # what Cancel does: no further chunk is solved
    assert calls == [4]
