"""The exact solver's workspace pool: long traces' workspaces are kept while
in use (a repeat on the same trace reuses them: no page faults) and dropped
once idle for solver._WS_IDLE seconds (checked on an explicit clock, no
sleeps)."""

import math

import numpy as np

from napari_catune import solver


def _solve(y):
    return solver.run_deconvolution_full(y, 30, 0.05, 0.5, 0.05, max_iters=500)


def _long():
    return [e for e in solver._WS_POOL if e[2] is not None]


def _long_trace(monkeypatch, seed):
    """One thread, an empty pool, and a trace just over _WS_KEEP_FRAMES."""
    monkeypatch.setenv("CATUNE_NUM_THREADS", "1")
    solver._ws_expire(math.inf)
    T = solver._WS_KEEP_FRAMES + 1000
    return np.random.default_rng(seed).standard_normal((1, T)) + 2.0


def test_a_long_traces_workspace_is_reused_then_dropped_when_idle(monkeypatch):
    # an idle time no slow machine reaches between the calls (the timer
    # never fires during the test); expiry is checked on explicit clocks
    monkeypatch.setattr(solver, "_WS_IDLE", 1e6)
    y = _long_trace(monkeypatch, 3)
    T = y.shape[1]
    first = _solve(y)
    kept = _long()
    assert len(kept) == 1
    f, b, expires = kept[0]
    from napari_catune._numba_solvers import workspace_sizes

    assert f.size == workspace_sizes(T)[0]
    again = _solve(y)
    np.testing.assert_array_equal(first.activity, again.activity)
    kept2 = _long()
    assert len(kept2) == 1 and kept2[0][0] is f and kept2[0][2] >= expires
    # not idle long enough: kept; past its idle time: dropped
    assert solver._ws_expire(kept2[0][2] - 1.0) == 0
    assert solver._ws_expire(kept2[0][2]) == 1
    assert _long() == []
    assert len(solver._WS_POOL) <= 1


def test_no_long_workspace_is_kept_with_no_idle_time(monkeypatch):
    monkeypatch.setattr(solver, "_WS_IDLE", 0.0)
    _solve(_long_trace(monkeypatch, 4))
    assert _long() == []


def test_long_workspaces_are_anonymous_maps_short_ones_numpy_arrays():
    """Over _WS_KEEP_FRAMES frames the workspace is an anonymous mmap (4 kB
    pages: no huge-page compaction on first touch), writable and aligned."""
    import mmap

    def mapped(a):
        return isinstance(getattr(a.base, "obj", None), mmap.mmap)

    solver._ws_expire(math.inf)
    (f, b), _release = solver._pdas_workspace(solver._WS_KEEP_FRAMES + 10)
    assert mapped(f) and mapped(b)
    assert f.flags.writeable and f.flags.aligned and f.dtype == np.float64
    assert b.dtype == np.bool_ and b.flags.writeable
    (f2, b2), _release2 = solver._pdas_workspace(1000)
    assert not mapped(f2) and not mapped(b2)


def test_a_long_trace_solves_the_same_in_small_pages(monkeypatch):
    y = _long_trace(monkeypatch, 5)
    got = _solve(y)
    solver._ws_expire(math.inf)
    monkeypatch.setattr(solver, "_WS_SMALL_PAGES", False)
    ref = _solve(y)
    assert got.converged.all() and ref.converged.all()
    np.testing.assert_array_equal(got.activity, ref.activity)
    np.testing.assert_array_equal(got.baseline, ref.baseline)
    solver._ws_expire(math.inf)
