"""Read-only inputs (``np.load(..., mmap_mode="r")``, Dask chunks) reach the
compiled solver as the one array type it is compiled for: no second compile
of any kernel (a read-only array is another type to numba, ~60 s of
compiling on first use), the same answers as writeable inputs; ``out``
arrays must be writeable; a bad warm start on rows solved by several
threads is told before any row is written."""

import numpy as np
import pytest

import napari_catune as nc
from napari_catune import _numba_solvers as ns
from napari_catune import solver as S
from napari_catune.simulation import REGIMES, regime_traces

_KERNELS = ("pdas_rows", "row_ranges", "conv_rows", "kkt_rows", "objective_rows",
            "fit_stats_rows", "rolling_quantile_rows")


def _signatures():
    return {k: len(getattr(ns, k).signatures) for k in _KERNELS}


def _read_only(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("baseline", ["scalar", "drift", "rolling"])
def test_read_only_traces_and_init_compile_nothing_new(baseline):
    fs, tr, td, lam, *_ = REGIMES["GCaMP6f-30Hz"]
    y = regime_traces("GCaMP6f-30Hz", 3, 3000, 4)
    ref = nc.run_deconvolution_full(y, fs, tr, td, lam, baseline=baseline)
    warm = nc.run_deconvolution_full(y, fs, tr, td, 2 * lam, baseline=baseline,
                                     init=ref.activity)
    # (every kernel used once with writeable arrays first)
    S.kkt_violation(y, ref.activity, ref.baseline, fs, tr, td, lam, mode=baseline)
    nc.objective(y, ref.activity, None, fs, tr, td, lam)
    S.fit_stats(y, ref.reconvolution, ref.activity, fs)
    before = _signatures()
    yr, ir = _read_only(y), _read_only(ref.activity)
    got = nc.run_deconvolution_full(yr, fs, tr, td, lam, baseline=baseline)
    got_w = nc.run_deconvolution_full(yr, fs, tr, td, 2 * lam, baseline=baseline, init=ir)
    got_1 = nc.run_deconvolution_full(yr[0], fs, tr, td, lam, baseline=baseline)
    kkt = S.kkt_violation(yr, ir, _read_only(ref.baseline), fs, tr, td, lam, mode=baseline)
    obj = nc.objective(yr, ir, None, fs, tr, td, lam)
    stats = S.fit_stats(yr, _read_only(ref.reconvolution), ir, fs)
    assert _signatures() == before
    for a, b in ((got, ref), (got_w, warm)):
        np.testing.assert_array_equal(a.activity, b.activity)
        np.testing.assert_array_equal(a.baseline, b.baseline)
        np.testing.assert_array_equal(a.iterations, b.iterations)
    np.testing.assert_array_equal(got_1.activity, ref.activity[0])
    np.testing.assert_array_equal(
        kkt, S.kkt_violation(y, ref.activity, ref.baseline, fs, tr, td, lam, mode=baseline))
    np.testing.assert_array_equal(obj, nc.objective(y, ref.activity, None, fs, tr, td, lam))
    for a, b in zip(stats, S.fit_stats(y, ref.reconvolution, ref.activity, fs)):
        np.testing.assert_array_equal(a, b)
    assert not yr.flags.writeable and not ir.flags.writeable  # the caller's, untouched


def test_read_only_out_is_refused():
    fs, tr, td, lam, *_ = REGIMES["GCaMP6f-30Hz"]
    y = regime_traces("GCaMP6f-30Hz", 2, 1000, 1)
    out = [np.empty_like(y), np.empty((2, 1)), np.empty_like(y)]
    out[2].flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        nc.run_deconvolution_full(y, fs, tr, td, lam, out=out)


def test_bad_init_on_threaded_rows_writes_nothing(monkeypatch):
    # rows handed out to two threads: a NaN in the last row's warm start is
    # told before any block is solved into the caller's ``out``
    monkeypatch.setenv("CATUNE_NUM_THREADS", "2")
    monkeypatch.setattr(S, "_GRAB_SAMPLES", 1)  # blocks of a row or two
    fs, tr, td, lam, *_ = REGIMES["GCaMP6f-30Hz"]
    y = regime_traces("GCaMP6f-30Hz", 12, 500, 3)
    init = nc.run_deconvolution_full(y, fs, tr, td, lam).activity.copy()
    init[11, 7] = np.nan
    out = (np.full_like(y, 7.0), np.full((12, 1), 7.0), np.full_like(y, 7.0))
    with pytest.raises(ValueError, match="init contains NaN or Inf"):
        nc.run_deconvolution_full(y, fs, tr, td, 2 * lam, init=init, out=out)
    assert all((a == 7.0).all() for a in out)
