"""Rows ending in NaN padding (recordings of different lengths in one array, as
realgt's ``fluorescence``): every path solves each row on its finite part, exactly
as the trimmed row alone, and leaves NaN after it; a NaN inside a row is still
refused (or skipped with --skip-bad)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_catune import run_deconvolution, run_deconvolution_full
from napari_catune._padding import BAD, row_lengths
from napari_catune.params import TuningParams

from _synth import calcium_traces

FS, TR, TD, LAM = 30.0, 0.05, 0.5, 0.05
T = 900
LENGTHS = [900, 600, 600, 450, 300, 900, 120]  # two rows of 600: solved together


def _padded(seed=2):
    y = calcium_traces(len(LENGTHS), T, fs=FS, tau_r=TR, tau_d=TD, seed=seed)
    for i, L in enumerate(LENGTHS):
        y[i, L:] = np.nan
    return y


def _alone(y, i, **kw):
    """The reference: row i trimmed to its length, solved on its own."""
    L = LENGTHS[i]
    return run_deconvolution_full(np.array(y[i, :L]), FS, TR, TD, LAM, **kw)


def _assert_rows(act, fit, base, y, per_sample=False, **kw):
    for i, L in enumerate(LENGTHS):
        ref = _alone(y, i, **kw)
        np.testing.assert_array_equal(act[i, :L], ref.activity)
        np.testing.assert_array_equal(fit[i, :L], ref.reconvolution)
        assert np.isnan(act[i, L:]).all() and np.isnan(fit[i, L:]).all()
        if per_sample:
            np.testing.assert_array_equal(base[i, :L], ref.baseline)
            assert np.isnan(base[i, L:]).all()
        else:
            assert base[i] == ref.baseline


def test_row_lengths_tell_padding_from_bad_rows():
    y = np.zeros((6, 10))
    y[1, 7:] = np.nan                # padding: 7
    y[2, 3] = np.nan                 # inside: bad
    y[3, 5:] = np.nan
    y[3, 9] = np.inf                 # Inf in the tail: bad
    y[4, 1:] = np.nan                # one finite sample: too short, bad
    y[5, :] = np.nan                 # all NaN (a skipped row): bad
    assert row_lengths(y).tolist() == [10, 7, BAD, BAD, BAD, BAD]


@pytest.mark.parametrize("kw", [{}, {"baseline": "drift"}, {"baseline": "rolling"},
                                {"method": "fista"}, {"filter_enabled": True}])
def test_python_api_solves_each_row_on_its_finite_part(kw):
    y = _padded()
    r = run_deconvolution_full(y, FS, TR, TD, LAM, **kw)
    per_sample = kw.get("baseline") in ("drift", "rolling")
    _assert_rows(r.activity, r.reconvolution, r.baseline, y, per_sample, **kw)
    np.testing.assert_array_equal(run_deconvolution(y, FS, TR, TD, LAM, **kw), r.activity)


def test_one_padded_row_and_float32():
    y = _padded()
    r = run_deconvolution_full(y[3], FS, TR, TD, LAM)  # 1-D: the slider path
    ref = _alone(y, 3)
    assert r.activity.shape == (T,) and np.isnan(r.activity[450:]).all()
    np.testing.assert_array_equal(r.activity[:450], ref.activity)
    assert r.baseline == ref.baseline
    r32 = run_deconvolution_full(y.astype(np.float32), FS, TR, TD, LAM)
    assert np.isnan(r32.activity[6, 120:]).all() and np.isfinite(r32.activity[6, :120]).all()


def test_out_buffers_get_the_padded_result():
    y = _padded()[:3].copy()
    out = (np.empty((3, T)), np.empty((3, 1)), np.empty((3, T)))
    r = run_deconvolution_full(y, FS, TR, TD, LAM, out=out)
    assert r.activity is out[0]
    np.testing.assert_array_equal(out[0][1, :600], _alone(y, 1).activity)
    assert np.isnan(out[0][1, 600:]).all() and np.isnan(out[2][1, 600:]).all()


def test_a_nan_inside_a_row_is_still_refused_by_name():
    y = _padded()
    y[2, 50] = np.nan
    with pytest.raises(ValueError, match=r"in 1 row\(s\): row 2 .*NaN padding at the end"):
        run_deconvolution_full(y, FS, TR, TD, LAM)
    with pytest.raises(ValueError, match="row 0"):
        run_deconvolution_full(y[2], FS, TR, TD, LAM)


def test_batch_loop_in_chunks_across_lengths():
    from napari_catune.batch import ArraySink, run_batch

    y = _padded()
    p = TuningParams(TR, TD, FS, LAM, baseline="drift")
    sink = ArraySink(*y.shape, per_sample=True)
    summary = run_batch(y, p, sink, chunk=3)
    assert summary.skipped.size == 0 and not sink.skipped.any()
    _assert_rows(sink.activity, sink.fit, sink.baseline, y, True, **p.solver_kwargs())


def test_bandpass_batch_stores_each_rows_band_passed_finite_part():
    # the fitted trace a bandpass export stores: each padded row band-passed
    # on its finite part (not NaN throughout), NaN after; r2 of the finite part
    from napari_catune.kernel import bandpass_filter
    from napari_catune.session import apply_job

    y = _padded()
    p = TuningParams(TR, TD, FS, LAM, baseline="drift", filter_enabled=True)
    job = apply_job(y, np.arange(1, len(LENGTHS) + 1), p)
    try:
        while True:
            next(job)
    except StopIteration as stop:
        res = stop.value
    fitted = res.fitted_trace
    for i, L in enumerate(LENGTHS):
        np.testing.assert_allclose(fitted[i, :L], bandpass_filter(y[i, :L], TR, TD, FS),
                                   rtol=0, atol=1e-12)
        assert np.isnan(fitted[i, L:]).all()
    assert np.isfinite(res.features["r2"]).all()


def test_fitted_rows_with_a_skipped_row_before_a_padded_one():
    # the chunk's solved rows (ok) index the block of solved rows, not the chunk
    from napari_catune._padding import bandpass_finite_parts
    from napari_catune.batch import fitted_rows
    from napari_catune.kernel import bandpass_filter

    y = _padded()[:4]  # lengths 900, 600, 600, 450
    p = TuningParams(TR, TD, FS, LAM, filter_enabled=True)
    ok = np.array([False, True, True, True])  # row 0 skipped (bad)
    out = fitted_rows(y[ok], ok, p, T)
    assert np.isnan(out[0]).all()
    for i in (1, 2, 3):
        L = LENGTHS[i]
        np.testing.assert_allclose(out[i, :L], bandpass_filter(y[i, :L], TR, TD, FS),
                                   rtol=0, atol=1e-12)
        assert np.isnan(out[i, L:]).all()
    # finite rows: the one transform of the whole block, as before
    fin = _padded()[[0, 5]]
    np.testing.assert_array_equal(bandpass_finite_parts(fin, TR, TD, FS),
                                  bandpass_filter(fin, TR, TD, FS))


def test_dask_path():
    da = pytest.importorskip("dask.array")
    y = _padded()
    r = run_deconvolution_full(da.from_array(y, chunks=(3, T)), FS, TR, TD, LAM)
    import dask

    act, base, fit, _, _ = dask.compute(*r, scheduler="synchronous")
    _assert_rows(np.asarray(act), np.asarray(fit), np.asarray(base), y)


def _cli(*argv):
    from napari_catune import cli

    return cli.main([str(a) for a in argv])


@pytest.mark.parametrize("chunk", [None, 2])
def test_cli_deconvolve_plain_and_chunked(tmp_path, capsys, chunk):
    y = _padded()
    src = tmp_path / "pad.npz"
    np.savez(src, traces=y, fs=FS)
    p = TuningParams(TR, TD, FS, LAM, baseline="scalar")
    from napari_catune.params import save_params

    save_params(p, tmp_path / "p.json")
    more = [] if chunk is None else ["--chunk-cells", chunk]
    assert _cli("deconvolve", src, "--params", tmp_path / "p.json",
                "-o", tmp_path / "o.npz", *more) == 0
    err = capsys.readouterr().err
    assert "5 rows end in NaN padding (finite for 120 to 600 of 900 frames)" in err
    o = np.load(tmp_path / "o.npz")
    assert not o["skipped"].any()
    _assert_rows(o["activity"], o["fit"], o["baseline"], y, **p.solver_kwargs())
    meta = json.loads((tmp_path / "o_metadata.json").read_text())
    assert meta["cells_skipped"] == 0
    # .npy holds the activity with the same NaN tails
    assert _cli("deconvolve", src, "--params", tmp_path / "p.json",
                "-o", tmp_path / "a.npy", *more) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), o["activity"])


def test_cli_csv_writes_nan_in_the_padding(tmp_path):
    y = _padded()
    np.savez(tmp_path / "pad.npz", traces=y, fs=FS)
    from napari_catune.params import save_params

    save_params(TuningParams(TR, TD, FS, LAM), tmp_path / "p.json")
    assert _cli("deconvolve", tmp_path / "pad.npz", "--params", tmp_path / "p.json",
                "-o", tmp_path / "c.csv") == 0
    lines = (tmp_path / "c.csv").read_text().splitlines()
    last = lines[-1].split(",")  # frame 899: rows 1-4 and 6 are padding
    assert [v == "nan" for v in last[1:]] == [False, True, True, True, True, False, True]


def test_cli_refuses_a_nan_inside_a_row_and_skips_it_only(tmp_path, capsys):
    y = _padded()
    y[2, 50] = np.nan
    np.savez(tmp_path / "bad.npz", traces=y, fs=FS)
    from napari_catune.params import save_params

    save_params(TuningParams(TR, TD, FS, LAM), tmp_path / "p.json")
    args = ["deconvolve", tmp_path / "bad.npz", "--params", tmp_path / "p.json",
            "-o", tmp_path / "o.npz"]
    assert _cli(*args) == 2
    err = capsys.readouterr().err
    assert "1 of 7 rows hold NaN or Inf before their end (ROI id 3 = row 2, 0-based)" in err
    assert "--skip-bad" in err and "trim" not in err
    assert _cli(*args, "--skip-bad") == 0
    o = np.load(tmp_path / "o.npz")
    assert o["skipped"].tolist() == [False, False, True, False, False, False, False]
    assert np.isnan(o["activity"][2]).all()
    np.testing.assert_array_equal(o["activity"][1, :600], _alone(y, 1).activity)


def test_estimate_on_each_rows_finite_part(tmp_path, capsys):
    from napari_catune.estimate import estimate_report

    y = calcium_traces(4, 1500, fs=FS, tau_r=TR, tau_d=TD, seed=1)
    lengths = [1500, 1000, 700, 90]  # the last is too short to measure: left out
    for i, L in enumerate(lengths):
        y[i, L:] = np.nan
    rep = estimate_report(y, FS)
    assert rep.rows.tolist() == [0, 1, 2] and rep.noise[3] == 0
    for i, L in enumerate(lengths[:3]):
        alone = estimate_report(y[i, :L], FS)
        assert rep.noise[i] == alone.noise[0]
        assert rep.tau_decay_rows[i] == alone.tau_decay_rows[0]
    assert rep.params.tau_decay == pytest.approx(
        float(np.exp(np.median(np.log(rep.tau_decay_rows)))))
    np.savez(tmp_path / "pad.npz", traces=y, fs=FS)
    assert _cli("estimate", tmp_path / "pad.npz", "-o", tmp_path / "p.json") == 0
    out = capsys.readouterr()
    assert "estimated from 4 cells" in out.out and "warning" not in out.err
    saved = json.loads((tmp_path / "p.json").read_text())
    assert json.dumps(saved)  # written
    y[0, 10] = np.nan
    with pytest.raises(ValueError, match="in 1 row"):
        estimate_report(y, FS)


def test_events_table_has_no_events_in_the_padding():
    from napari_catune.events import detect_events

    y = _padded()
    act = run_deconvolution_full(y, FS, TR, TD, LAM).activity
    ev = detect_events(act, FS)
    for i, L in enumerate(LENGTHS):
        alone = detect_events(act[i, :L], FS)
        mine = ev["activity_row"] == i
        np.testing.assert_array_equal(ev["onset_frame"][mine], alone["onset_frame"])
        np.testing.assert_array_equal(ev["size"][mine], alone["size"])
        assert (ev["onset_frame"][mine] < L).all()
    bad = act.copy()
    bad[1, 5] = np.nan
    with pytest.raises(ValueError, match="before the end of a row"):
        detect_events(bad, FS)


def test_nwb_output_stores_nan_in_the_padding(tmp_path):
    pytest.importorskip("pynwb")
    y = _padded()
    np.savez(tmp_path / "pad.npz", traces=y, fs=FS)
    from napari_catune.params import save_params

    save_params(TuningParams(TR, TD, FS, LAM), tmp_path / "p.json")
    assert _cli("deconvolve", tmp_path / "pad.npz", "--params", tmp_path / "p.json",
                "-o", tmp_path / "w.nwb") == 0
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(tmp_path / "w.nwb"), "r") as io:
        f = io.read()
        act = np.asarray(f.processing["catune"]["Deconvolution"]
                         .roi_response_series["activity"].data[:]).T
    for i, L in enumerate(LENGTHS):
        np.testing.assert_array_equal(act[i, :L], _alone(y, i).activity)
        assert np.isnan(act[i, L:]).all()


def test_rows_of_one_length_are_copied_in_bounded_groups(monkeypatch):
    """No copy of a whole batch: rows of one length are solved together at
    most GROUP_SAMPLES values at a time (a lone row is a view)."""
    from napari_catune import _padding

    monkeypatch.setattr(_padding, "GROUP_SAMPLES", 1300)  # two rows of 600 a group
    y = np.tile(_padded()[1:3], (3, 1))  # six rows of length 600
    seen = []
    real = run_deconvolution_full

    def spy(traces, *a, **k):
        seen.append(np.shape(traces))
        return real(traces, *a, **k)

    monkeypatch.setattr("napari_catune.solver.run_deconvolution_full", spy)
    r = real(y, FS, TR, TD, LAM)
    assert seen == [(2, 600)] * 3
    ref = real(np.array(y[0, :600]), FS, TR, TD, LAM)
    np.testing.assert_array_equal(r.activity[4, :600], ref.activity)  # row 4 = row 0
    assert np.isnan(r.activity[:, 600:]).all()


def test_cli_deconvolve_on_a_dask_cluster(tmp_path):
    """--scheduler: the workers read their rows from the file and solve the
    padded ones on their finite part; a row with a NaN inside is skipped."""
    distributed = pytest.importorskip("distributed")
    y = _padded()
    y[5, 10] = np.nan  # inside a row: skipped
    np.save(tmp_path / "tr.npy", y)
    from napari_catune.params import save_params

    p = TuningParams(TR, TD, FS, LAM, baseline="drift")
    save_params(p, tmp_path / "p.json")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        assert _cli("deconvolve", tmp_path / "tr.npy", "--params", tmp_path / "p.json",
                    "-o", tmp_path / "o.npz", "--chunk-cells", 3, "--skip-bad", "-q",
                    "--scheduler", client.scheduler.address) == 0
    o = np.load(tmp_path / "o.npz")
    assert o["skipped"].tolist() == [i == 5 for i in range(len(LENGTHS))]
    for i, L in enumerate(LENGTHS):
        if i == 5:
            continue
        ref = _alone(y, i, **p.solver_kwargs())
        np.testing.assert_array_equal(o["activity"][i, :L], ref.activity)
        np.testing.assert_array_equal(o["baseline"][i, :L], ref.baseline)
        assert np.isnan(o["activity"][i, L:]).all() and np.isnan(o["baseline"][i, L:]).all()


def test_live_read_outs_of_a_padded_row_are_of_its_finite_part():
    from napari_catune.solver import fit_stats

    y = _padded()
    r = run_deconvolution_full(y, FS, TR, TD, LAM)
    r2, ev = fit_stats(y, r.reconvolution, r.activity, FS, 0.1)
    for i, L in enumerate(LENGTHS):
        a, b = fit_stats(y[i, :L], r.reconvolution[i, :L], r.activity[i, :L], FS, 0.1)
        assert r2[i] == a[0] and ev[i] == b[0] and np.isfinite(r2[i])


def test_unit_guess_reads_the_finite_part_of_padded_rows():
    """dF/F rows padded with NaN are still told dF/F (the label of the rows),
    and raw fluorescence stays raw; all-NaN input falls back to raw."""
    from napari_catune.session import _guess_unit

    y = _padded() * 0.1  # dF/F-sized, about 0
    assert _guess_unit(y[:, :300]) == "dF/F"
    assert _guess_unit(y) == "dF/F"
    assert _guess_unit(y + 500.0) == "raw"
    assert _guess_unit(np.full((2, 10), np.nan)) == "raw"
