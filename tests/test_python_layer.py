"""The slider path's Python fast paths in run_deconvolution_full (helper rdf):
a float64 C-ordered init and a Python-float tol are taken without NumPy
calls; every other kind of input goes the general way, with the same
answers and the same errors."""

import math

import numpy as np
import pytest

from napari_catune import solver


def _trace(T=600, seed=0):
    rng = np.random.default_rng(seed)
    s = (rng.random(T) < 0.03) * rng.exponential(1.0, T)
    y = np.convolve(s, np.exp(-np.arange(60) / 12.0))[:T] + 0.05 * rng.standard_normal(T) + 2.0
    return y


@pytest.mark.parametrize("mode", ["scalar", "drift"])
def test_init_kinds_same_answer(mode):
    y = _trace()
    args = (y, 30.0, 0.05, 0.45, 0.05)
    base = solver.run_deconvolution_full(y, 30.0, 0.05, 0.5, 0.05, baseline=mode)
    ref = solver.run_deconvolution_full(*args, baseline=mode, init=base.activity.tolist())
    kinds = [base.activity, base.activity[None, :], base.activity.astype(np.float32),
             np.asfortranarray(base.activity[None, :]), base.activity.copy()[None, :][:, :]]
    wide = np.zeros(2 * y.size)
    wide[::2] = base.activity
    kinds.append(wide[::2])  # not contiguous
    for init in kinds:
        r = solver.run_deconvolution_full(*args, baseline=mode, init=init)
        assert np.array_equal(r.activity, ref.activity)
        assert np.array_equal(np.asarray(r.baseline), np.asarray(ref.baseline))
        assert np.array_equal(r.reconvolution, ref.reconvolution)
        assert r.iterations == ref.iterations and r.converged == ref.converged


def test_init_fast_path_keeps_shape_checks():
    y = _trace()
    for bad in (np.zeros(y.size + 1), np.zeros((2, y.size)), np.zeros((1, 1, y.size)),
                np.float64(0.0)):
        with pytest.raises(ValueError, match="init must have the traces' shape"):
            solver.run_deconvolution_full(y, 30.0, 0.05, 0.5, 0.05, init=bad)
    nan = np.zeros(y.size)
    nan[5] = np.nan
    with pytest.raises(ValueError, match="init contains NaN"):
        solver.run_deconvolution_full(y, 30.0, 0.05, 0.5, 0.05, init=nan)


@pytest.mark.parametrize("tol", [math.nan, math.inf, -math.inf, 0.0, -1e-6,
                                 np.float64(math.nan), np.float64(0.0), 0, -3])
def test_bad_tol_refused(tol):
    with pytest.raises(ValueError, match="tol must be a positive number"):
        solver.run_deconvolution_full(_trace(), 30.0, 0.05, 0.5, 0.05, tol=tol)


@pytest.mark.parametrize("tol", [1e-6, np.float64(1e-6), 1, 5e-324, 1.7e308])
def test_good_tol_taken(tol):
    r = solver.run_deconvolution_full(_trace(), 30.0, 0.05, 0.5, 0.05, tol=tol)
    assert r.converged


def test_compiled_module_kept_and_patchable(monkeypatch):
    y = _trace()
    solver.run_deconvolution_full(y, 30.0, 0.05, 0.5, 0.05)
    from napari_catune import _numba_solvers as ns

    assert solver._NS is ns
    calls = []
    real = ns.pdas_rows

    def spy(*a):
        calls.append(1)
        return real(*a)

    monkeypatch.setattr(ns, "pdas_rows", spy)
    solver.run_deconvolution_full(y, 30.0, 0.05, 0.5, 0.05)
    assert calls
