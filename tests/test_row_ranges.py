"""The rows' minima and maxima in one compiled pass (_numba_solvers.row_ranges,
solver._row_ranges): NumPy's values where every value is finite, False (and
NumPy's NaN-carrying values from _row_ranges) where one is not; and
pdas_rows' finiteness codes on rows checked one at a time (_SCAN_AHEAD_T)."""

import numpy as np
import pytest

from napari_catune import _numba_solvers as ns
from napari_catune import solver as S
from napari_catune.simulation import REGIMES, regime_traces


def _cases():
    rng = np.random.default_rng(11)
    yield rng.standard_normal((3, 1000))
    yield np.zeros((2, 5))
    yield -np.zeros((2, 5))
    yield np.array([[0.0, -0.0, 0.0], [-0.0, 0.0, -0.0]])
    yield rng.standard_normal((4, 7)) * 1e300
    yield np.array([[5e-324, -5e-324, 0.0], [-5e-324, -1e-320, 2.2e-308]])
    yield np.array([[-1.0, -2.0, -3.0], [3.0, 2.0, 1.0]])
    yield np.array([[1.7976931348623157e308, -1.7976931348623157e308, 2.0]])
    yield rng.random((2, 999)) + 1e6
    yield -rng.random((5, 33)) - 7.0
    yield np.full((1, 2), 3.5)


def test_row_ranges_match_numpy():
    for y in _cases():
        lo = np.full(y.shape[0], np.nan)
        hi = np.full(y.shape[0], np.nan)
        assert ns.row_ranges(y, lo, hi)
        # (a zero's sign may differ; == does not see it, nor do the tests
        # that read lo and hi)
        assert np.array_equal(lo, y.min(axis=1))
        assert np.array_equal(hi, y.max(axis=1))
        lo2, hi2 = S._row_ranges(y)
        assert np.array_equal(lo2, lo) and np.array_equal(hi2, hi)


@pytest.mark.parametrize("bad", [np.nan, -np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [(0, 0), (1, 99), (2, 50)])
def test_row_ranges_not_finite(bad, where):
    y = np.random.default_rng(5).standard_normal((3, 100))
    y[where] = bad
    assert not ns.row_ranges(y, np.empty(3), np.empty(3))
    lo, hi = S._row_ranges(y)
    with np.errstate(invalid="ignore"):
        assert np.array_equal(lo, y.min(axis=1), equal_nan=True)
        assert np.array_equal(hi, y.max(axis=1), equal_nan=True)


def test_row_ranges_in_blocks(monkeypatch):
    # (row blocks on the solver's threads from _RANGES_BLOCKS values on)
    monkeypatch.setattr(S, "_RANGES_BLOCKS", 64)
    monkeypatch.setenv("CATUNE_NUM_THREADS", "2")
    y = np.random.default_rng(2).standard_normal((5, 40)) * 4.0 + 1.0
    lo, hi = S._row_ranges(y)
    assert np.array_equal(lo, y.min(axis=1)) and np.array_equal(hi, y.max(axis=1))
    y[4, 3] = np.inf
    lo, hi = S._row_ranges(y)
    assert hi[4] == np.inf and np.array_equal(hi[:4], y[:4].max(axis=1))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("T,where", [
    (300, (0, 0)), (300, (1, 0)), (300, (1, 299)), (300, (2, 150)),
    (ns._SCAN_AHEAD_T + 1, (0, 0)), (ns._SCAN_AHEAD_T + 1, (2, -1)),
])
def test_pdas_rows_finiteness_codes(bad, T, where):
    # pdas_rows' checks (or-reduced per row): 1 for y, 2 for a warm start's
    # init, wherever the value sits (first or last sample of any row); rows
    # over _SCAN_AHEAD_T frames are checked one at a time, just before each
    # is solved: the same codes
    fs, tr, td, lam, *_ = REGIMES["GCaMP6f-30Hz"]
    m = S._model_checked(fs, tr, td, lam)
    y = regime_traces("GCaMP6f-30Hz", 3, T, 1)
    init = np.zeros_like(y)
    (fws, bws), release = S._pdas_workspace(T)

    def run(yy, ii, warm):
        out = (np.empty_like(yy), np.zeros((3, 1)), np.empty_like(yy), np.zeros(3, np.int64),
               np.zeros(3, bool))
        return ns.pdas_rows(yy, ii, warm, m.g1, m.g2, m.alpha, m.lamG, m.G, np.int64(1), 0.0,
                            1e-6, 50, *out, fws, bws)

    try:
        assert run(y, init, True) == 0
        yb = y.copy()
        yb[where] = bad
        assert run(yb, init, True) == 1
        assert run(yb, init, False) == 1
        ib = init.copy()
        ib[where] = bad
        assert run(y, ib, True) == 2
        assert run(y, ib, False) == 0  # a cold start does not read init
    finally:
        release()
    if np.isnan(bad) and where[1] in (-1, T - 1):
        # a NaN at a row's end is NaN padding: that row is solved on its
        # finite part, NaN after it (napari_catune._padding)
        r = S.run_deconvolution_full(yb, fs, tr, td, lam)
        assert np.isnan(r.activity[where]) and np.isfinite(r.activity[where[0], :-1]).all()
        return
    with pytest.raises(ValueError, match="non-finite"):
        S.run_deconvolution_full(yb, fs, tr, td, lam)


def test_long_rows_bad_input_writes_nothing():
    # a non-finite value in the last long row: run_deconvolution_full raises
    # before any row is solved (the caller's ``out`` arrays untouched), and
    # pdas_rows reads every row's init before it solves the first row
    fs, tr, td, lam, *_ = REGIMES["GCaMP6f-30Hz"]
    m = S._model_checked(fs, tr, td, lam)
    T = ns._SCAN_AHEAD_T + 1
    y = regime_traces("GCaMP6f-30Hz", 3, T, 2)
    yb = y.copy()
    yb[2, T // 2] = np.nan
    out = (np.full_like(y, 7.0), np.full((3, 1), 7.0), np.full_like(y, 7.0))
    with pytest.raises(ValueError, match="non-finite"):
        S.run_deconvolution_full(yb, fs, tr, td, lam, out=out)
    assert all((a == 7.0).all() for a in out)
    ib = np.zeros_like(y)
    ib[2, -1] = np.inf
    s = np.full_like(y, 7.0)
    (fws, bws), release = S._pdas_workspace(T)
    try:
        code = ns.pdas_rows(y, ib, True, m.g1, m.g2, m.alpha, m.lamG, m.G, np.int64(1), 0.0,
                            1e-6, 50, s, np.zeros((3, 1)), np.empty_like(y),
                            np.zeros(3, np.int64), np.zeros(3, bool), fws, bws)
    finally:
        release()
    assert code == 2 and (s == 7.0).all()


@pytest.mark.parametrize("T", [300, ns._SCAN_AHEAD_T + 1])
def test_pdas_rows_y_finite_same_answers(T):
    # y_finite (the caller checked y: run_deconvolution_full's row ranges)
    # skips pdas_rows' own scan of y and changes nothing else; init is
    # still checked
    fs, tr, td, lam, *_ = REGIMES["lam0-30Hz"]
    m = S._model_checked(fs, tr, td, lam)
    y = regime_traces("lam0-30Hz", 2, T, 3)
    (fws, bws), release = S._pdas_workspace(T)

    def run(ii, warm, *flag):
        out = (np.empty_like(y), np.zeros((2, 1)), np.empty_like(y), np.zeros(2, np.int64),
               np.zeros(2, bool))
        code = ns.pdas_rows(y, ii, warm, m.g1, m.g2, m.alpha, m.lamG, m.G, np.int64(1), 0.0,
                            1e-7, 500, *out, fws, bws, *flag)
        return code, out

    try:
        c0, a = run(y, False)
        c1, b = run(y, False, True)
        assert c0 == c1 == 0
        for u, v in zip(a, b):
            assert np.array_equal(u, v)
        ib = np.zeros_like(y)
        ib[1, -1] = np.nan
        assert run(ib, True, True)[0] == 2
    finally:
        release()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("n", [1, 3])
def test_y_finite_errors_unchanged(bad, n):
    # one row (pdas_rows tells it) and several (the wrapper tells it first):
    # the message names the row either way, long rows too
    fs, tr, td, lam, *_ = REGIMES["lam0-30Hz"]
    T = ns._SCAN_AHEAD_T + 1
    y = regime_traces("lam0-30Hz", n, T, 4)
    y[n - 1, T - 2] = bad
    for bl in ("scalar", "none"):
        with pytest.raises(ValueError, match="non-finite") as e:
            S.run_deconvolution_full(y[0] if n == 1 else y, fs, tr, td, lam, baseline=bl)
        assert f"row {n - 1} (1 samples)" in str(e.value)
