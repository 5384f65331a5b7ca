"""Dask input: lazy results chunked over cells, equal to the in-memory solve,
also on a dask.distributed LocalCluster with two worker processes (and the
CLI pointed at that cluster with --scheduler)."""

from __future__ import annotations

import numpy as np
import pytest

import dask.array as da
import distributed

from napari_catune import run_deconvolution, run_deconvolution_full  # noqa: E402

from _synth import calcium_traces  # noqa: E402

FS, TAU_R, TAU_D, LAM = 20.0, 0.05, 0.4, 0.2


def _traces(n=9, T=400, seed=3):
    return calcium_traces(n, T, fs=FS, tau_r=TAU_R, tau_d=TAU_D, seed=seed)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def _assert_same(lazy, ref):
    for name in ("activity", "baseline", "reconvolution", "iterations", "converged"):
        got = np.asarray(getattr(lazy, name))
        want = np.asarray(getattr(ref, name))
        assert got.shape == want.shape, name
        assert got.dtype == want.dtype or name in ("baseline",), name
        assert np.array_equal(got, want), name


def test_lazy_result_equals_in_memory_threaded_scheduler():
    y = _traces()
    ref = run_deconvolution_full(y, FS, TAU_R, TAU_D, LAM)
    x = da.from_array(y, chunks=(4, 150))  # time axis split on purpose
    res = run_deconvolution_full(x, FS, TAU_R, TAU_D, LAM)
    assert all(isinstance(f, da.Array) for f in res)
    assert res.activity.shape == y.shape and res.baseline.shape == (y.shape[0],)
    # time axis in one chunk: every trace is solved whole
    assert len(res.activity.chunks[1]) == 1
    import dask

    computed = dask.compute(*res, scheduler="threads")
    _assert_same(type(ref)(*computed), ref)


def test_one_d_float32_and_activity_only():
    y = _traces(n=3).astype(np.float32)
    ref = run_deconvolution_full(y[1], FS, TAU_R, TAU_D, LAM)
    res = run_deconvolution_full(da.from_array(y[1], chunks=100), FS, TAU_R, TAU_D, LAM)
    assert res.activity.shape == y[1].shape and res.baseline.shape == ()
    assert np.array_equal(res.activity.compute(), ref.activity)
    assert res.baseline.compute() == ref.baseline
    assert bool(res.converged.compute()) == ref.converged
    act = run_deconvolution(da.from_array(y, chunks=(2, -1)), FS, TAU_R, TAU_D, LAM)
    assert isinstance(act, da.Array)
    assert np.array_equal(act.compute(), run_deconvolution(y, FS, TAU_R, TAU_D, LAM))


def test_warm_start_options_pass_through():
    y = _traces(n=5)
    prev = run_deconvolution(y, FS, TAU_R, TAU_D, LAM)
    kw = dict(init=prev, baseline=False, method="fista", max_iters=50)
    ref = run_deconvolution_full(y, FS, TAU_R, TAU_D, 0.3, **kw)
    kw["init"] = da.from_array(prev, chunks=(2, -1))
    res = run_deconvolution_full(da.from_array(y, chunks=(3, -1)), FS, TAU_R, TAU_D, 0.3, **kw)
    import dask

    _assert_same(type(ref)(*dask.compute(*res)), ref)
    assert (np.asarray(res.baseline.compute()) == 0).all()


def test_validation_is_eager_and_solving_lazy():
    import dask

    def boom():
        raise RuntimeError("computed")

    x = da.from_delayed(dask.delayed(boom)(), shape=(3, 50), dtype=np.float64)
    with pytest.raises(ValueError, match="tau_rise"):
        run_deconvolution_full(x, FS, 0.6, 0.4, LAM)  # rise > decay: caught before compute
    with pytest.raises(ValueError, match="lambda"):
        run_deconvolution(x, FS, TAU_R, TAU_D, -1.0)  # lambda 50 is valid (issue 10)
    with pytest.raises(ValueError, match=r"2-D.*\(2, 3, 40\)"):
        run_deconvolution_full(da.zeros((2, 3, 40)), FS, TAU_R, TAU_D, LAM)
    with pytest.raises(ValueError, match="real numeric"):
        run_deconvolution_full(da.from_array(np.array([["a"] * 10])), FS, TAU_R, TAU_D, LAM)
    with pytest.raises(ValueError, match="init must have"):
        run_deconvolution_full(da.zeros((3, 50)), FS, TAU_R, TAU_D, LAM, init=np.zeros((2, 50)))
    res = run_deconvolution_full(x, FS, TAU_R, TAU_D, LAM)  # valid: nothing computed yet
    with pytest.raises(RuntimeError, match="computed"):
        res.activity.compute()


def test_distributed_cluster_equals_in_memory(client):
    y = _traces(n=10, T=300)
    ref = run_deconvolution_full(y, FS, TAU_R, TAU_D, LAM)
    x = da.from_array(y, chunks=(3, -1))  # 4 cell chunks over 2 worker processes
    res = run_deconvolution_full(x, FS, TAU_R, TAU_D, LAM)
    with distributed.get_task_stream(client) as ts:
        computed = client.compute(list(res), sync=True)
    _assert_same(type(ref)(*computed), ref)
    # the solving ran on the worker processes, both of them
    solved = [t for t in ts.data if "catune-deconvolve" in str(t["key"])]
    workers = {t["worker"] for t in solved}
    assert solved and len(workers) == 2


def test_extract_traces_on_dask_movie_under_distributed(client):
    from napari_catune.traces import extract_traces

    rng = np.random.default_rng(0)
    movie = rng.uniform(0, 100, (60, 16, 20)).astype(np.float32)
    labels = np.zeros((16, 20), np.int32)
    labels[2:6, 3:8] = 1
    labels[9:14, 10:18] = 4
    dmovie = da.from_array(movie, chunks=(15, 16, 20))
    with distributed.get_task_stream(client) as ts:
        traces, ids = extract_traces(dmovie, labels)
    traces = np.asarray(traces)
    np.testing.assert_array_equal(ids, [1, 4])
    # independent reference: plain NumPy means over each mask
    want = np.stack([movie[:, labels == k].astype(np.float64).mean(axis=1) for k in (1, 4)])
    np.testing.assert_allclose(traces, want, rtol=1e-12)
    assert ts.data, "the movie chunks were not computed on the cluster"


@pytest.mark.parametrize("mode", ["scalar", "drift"])
def test_cli_deconvolve_with_scheduler(client, tmp_path, mode):
    from napari_catune import cli
    from napari_catune.params import TuningParams, save_params

    y = _traces(n=11, T=250).astype(np.float32)
    y[4, 10] = np.nan
    np.save(tmp_path / "tr.npy", y)
    save_params(TuningParams(TAU_R, TAU_D, FS, LAM, baseline=mode), tmp_path / "p.json")
    addr = client.scheduler.address
    out = tmp_path / "res.npz"
    with distributed.get_task_stream(client) as ts:
        code = cli.main([
            "deconvolve", str(tmp_path / "tr.npy"), "--params", str(tmp_path / "p.json"),
            "-o", str(out), "--full", "--chunk-cells", "3", "--scheduler", addr,
            "--skip-bad", "-q",
        ])
    assert code == 0
    assert ts.data  # the work went to the cluster
    good = np.array([i for i in range(11) if i != 4])
    ref = run_deconvolution_full(y[good], FS, TAU_R, TAU_D, LAM, baseline=mode)
    with np.load(out) as z:
        assert np.array_equal(z["activity"][good], ref.activity)
        assert np.array_equal(z["fit"][good], ref.reconvolution)
        assert np.array_equal(z["baseline"][good], ref.baseline)
        assert np.array_equal(z["iterations"][good], ref.iterations)
        assert np.isnan(z["activity"][4]).all() and not z["converged"][4]
        assert z["skipped"].tolist() == [i == 4 for i in range(11)]
    # activity only, no bad rows, in-memory source (npz) shipped to the workers
    np.savez(tmp_path / "tr.npz", traces=y[good], fs=FS)
    code = cli.main([
        "deconvolve", str(tmp_path / "tr.npz"), "--params", str(tmp_path / "p.json"),
        "-o", str(tmp_path / "act.npy"), "--scheduler", addr, "-q",
    ])
    assert code == 0
    assert np.array_equal(np.load(tmp_path / "act.npy"), ref.activity)


def test_cli_scheduler_with_the_bandpass_stores_the_fitted_trace(client, tmp_path):
    """Audit finding 2: the band-passed trace the fit is of, beside the fit."""
    from napari_catune import cli
    from napari_catune.kernel import bandpass_filter
    from napari_catune.params import TuningParams, save_params

    y = _traces(n=7, T=250)
    y[2, 10] = np.nan
    np.save(tmp_path / "tr.npy", y)
    save_params(TuningParams(TAU_R, TAU_D, FS, LAM, filter_enabled=True), tmp_path / "p.json")
    out = tmp_path / "res.npz"
    assert cli.main(["deconvolve", str(tmp_path / "tr.npy"), "--params",
                     str(tmp_path / "p.json"), "-o", str(out), "--chunk-cells", "3",
                     "--scheduler", client.scheduler.address, "--skip-bad", "-q"]) == 0
    good = [i for i in range(7) if i != 2]
    with np.load(out) as z:
        np.testing.assert_allclose(z["fitted_trace"][good],
                                   bandpass_filter(y[good], TAU_R, TAU_D, FS), atol=1e-9)
        assert np.isnan(z["fitted_trace"][2]).all()
        assert "band-passed" in str(z["fit_note"])


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_error_names_rows_of_the_whole_array(chunk):
    """A NaN in cell 4 of a Dask array chunked over cells: the message
    names row 4 (not the row inside its chunk)."""
    y = _traces(6, 300)
    y[4, 7] = np.nan
    x = da.from_array(y, chunks=(chunk, 300))
    with pytest.raises(ValueError, match=r"in 1 row\(s\): row 4 \(1 samples\)"):
        run_deconvolution_full(x, FS, TAU_R, TAU_D, LAM).activity.compute()


def test_renumber_rows():
    from napari_catune._dask import _renumber_rows

    msg = "values beyond 1e+300 in 2 row(s): row 0, row 11 and 3 more rows"
    assert _renumber_rows(msg, 40) == "values beyond 1e+300 in 2 row(s): row 40, row 51 and 3 more rows"
