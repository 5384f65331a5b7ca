"""The exact solver's workspaces: a long trace's in 4 kB pages (no huge-page
compaction on first touch), a short one's an ordinary pooled NumPy array."""

import mmap

import numpy as np

from napari_catune import solver


def _mapped(a):
    return isinstance(getattr(a.base, "obj", None), mmap.mmap)


def test_long_workspaces_are_anonymous_maps_short_ones_numpy_arrays():
    (f, b), release = solver._pdas_workspace(solver._WS_KEEP_FRAMES + 10)
    assert _mapped(f) and _mapped(b)
    assert f.flags.writeable and f.flags.aligned and f.dtype == np.float64
    assert b.dtype == np.bool_ and b.flags.writeable
    release()
    (f2, b2), release2 = solver._pdas_workspace(1000)
    assert not _mapped(f2) and not _mapped(b2)
    release2()


def test_a_long_trace_solves_the_same_in_small_pages(monkeypatch):
    monkeypatch.setenv("CATUNE_NUM_THREADS", "1")
    T = solver._WS_KEEP_FRAMES + 1000
    y = np.random.default_rng(3).standard_normal((1, T)) + 2.0
    got = solver.run_deconvolution_full(y, 30, 0.05, 0.5, 0.05)
    monkeypatch.setattr(solver, "_WS_SMALL_PAGES", False)
    ref = solver.run_deconvolution_full(y, 30, 0.05, 0.5, 0.05)
    assert got.converged.all() and ref.converged.all()
    np.testing.assert_array_equal(got.activity, ref.activity)
    np.testing.assert_array_equal(got.baseline, ref.baseline)
