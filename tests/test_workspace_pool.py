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


def test_one_expiry_timer_rearmed_by_itself_not_one_per_call(monkeypatch):
    """A repeat on a long trace starts no new timer thread (the pending one
    serves); the timer, when it fires, drops what is due and re-arms for
    what is kept (its callback is called here directly: no sleeps)."""
    import time

    monkeypatch.setattr(solver, "_WS_IDLE", 1e6)
    monkeypatch.setattr(solver, "_WS_TIMER", None)
    y = _long_trace(monkeypatch, 5)
    _solve(y)
    first = solver._WS_TIMER
    assert first is not None and first.is_alive()
    _solve(y)
    assert solver._WS_TIMER is first
    first.cancel()
    solver._ws_tick()  # kept entry not due: dropped nothing, re-armed
    again = solver._WS_TIMER
    assert again is not None and again is not first and len(_long()) == 1
    again.cancel()
    with solver._WS_LOCK:
        solver._WS_POOL[:] = [(f, b, None if e is None else time.monotonic() - 1.0)
                              for f, b, e in solver._WS_POOL]
    solver._ws_tick()  # due: dropped, nothing left to wait for
    assert _long() == [] and solver._WS_TIMER is None


def test_long_kernel_model_matches_the_sampled_kernel():
    """_Model of a long kernel (no sampling of the whole kernel): the same
    peak (so alpha) as the sampled kernel, G to rounding, and the
    close-roots fallback; the Lipschitz constant from the sampled kernel."""
    from napari_catune import kernel
    from napari_catune.kernel import build_kernel, compute_lipschitz, kernel_length

    rng = np.random.default_rng(7)
    for q in list(rng.uniform(0.001, 0.5, 20)) + list(rng.uniform(0.9, 0.9999, 10)):
        fs, td = float(rng.uniform(500, 3000)), float(rng.uniform(2.0, 6.0))
        assert kernel_length(td, fs) > kernel._LONG_KERNEL
        m = solver._Model(fs, q * td, td, 0.1)
        kernel._LONG_KERNEL, keep = 10**9, kernel._LONG_KERNEL
        try:
            ref = solver._Model(fs, q * td, td, 0.1)
            alpha_ref = kernel.ar2_scale(q * td, td, fs)
        finally:
            kernel._LONG_KERNEL = keep
        assert (m.g1, m.g2, m.alpha) == (ref.g1, ref.g2, ref.alpha)
        assert kernel.ar2_scale(q * td, td, fs) == alpha_ref == ref.alpha
        assert abs(m.G - ref.G) <= 1e-14 * ref.G
        assert abs(m.lamG - 0.1 * build_kernel(q * td, td, fs).sum()) <= 1e-14 * ref.lamG
    assert m.lipschitz == compute_lipschitz(build_kernel(q * td, td, fs))
