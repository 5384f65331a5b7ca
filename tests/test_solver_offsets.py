"""Traces far from 0, constant traces and out-of-range values (found by an
independent check of the solver on problems it did not choose)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _synth import calcium_traces
from napari_catune import run_deconvolution_full
from napari_catune.solver import KKT_TOL, kkt_violation, objective

DATA = Path(__file__).parent / "data"


def _symmetric(T, fs, tr, td, seed):
    """A trace whose minimum and maximum are -a and +a, on a grid of 2^-20:
    y + 1e6 is then exact and its middle is exactly 1e6."""
    y = calcium_traces(1, T, fs=fs, tau_r=tr, tau_d=td, seed=seed, noise=0.05, offset=0.0)[0]
    y = np.round((y - 0.5 * (y.min() + y.max())) * 2.0**20) / 2.0**20
    a = max(-y.min(), y.max())
    y[np.argmin(y)], y[np.argmax(y)] = -a, a
    return y


@pytest.mark.parametrize("mode", ["scalar", "drift"])
@pytest.mark.parametrize("warm", [False, True])
def test_a_trace_far_from_zero_is_solved_as_the_same_trace_about_its_middle(mode, warm):
    fs, tr, td, lam = 30.0, 0.1, 1.5, 0.05
    y = _symmetric(4000, fs, tr, td, seed=3)
    init = np.zeros_like(y) if warm else None
    near = run_deconvolution_full(y, fs, tr, td, lam, baseline=mode, init=init)
    far = run_deconvolution_full(y + 1e6, fs, tr, td, lam, baseline=mode, init=init)
    assert near.converged and far.converged
    np.testing.assert_array_equal(far.activity, near.activity)
    assert far.iterations == near.iterations
    np.testing.assert_allclose(far.baseline, np.asarray(near.baseline) + 1e6, rtol=0, atol=1e-9)
    np.testing.assert_allclose(far.reconvolution, near.reconvolution + 1e6, rtol=0, atol=1e-9)


@pytest.mark.filterwarnings("ignore::napari_catune.kernel.ParameterRangeWarning")
def test_an_offset_of_1e6_on_a_near_degenerate_kernel_reaches_the_optimum():
    # the independent check's case: tau 1.90/1.99 s at 101 Hz, lambda 0.0018,
    # noise 0.01 on a level of 1e6.  A warm start from zeros stopped 8.8e-5
    # above the optimum with converged=True; the cold solve was exact.
    y = np.load(DATA / "offset_near_degenerate.npz")["y"]
    fs, tr, td, lam = 101.45683536945108, 1.8999305732691758, 1.9859299591184778, 0.0018003317400329087
    cold = run_deconvolution_full(y, fs, tr, td, lam)
    warm = run_deconvolution_full(y, fs, tr, td, lam, init=np.zeros_like(y))
    shifted = run_deconvolution_full(y - 1e6, fs, tr, td, lam)  # exact: the same problem
    ref = objective(y - 1e6, shifted.activity, None, fs, tr, td, lam)
    for r, yr in ((cold, y), (warm, y), (shifted, y - 1e6)):
        assert r.converged
        assert kkt_violation(yr, r.activity, r.baseline, fs, tr, td, lam) <= KKT_TOL
        o = objective(y - 1e6, r.activity, None, fs, tr, td, lam)
        assert abs(o - ref) <= 1e-10 * ref, (o, ref)


@pytest.mark.parametrize("fs, tr, td, lam", [(1000.0, 0.2, 3.0, 0.113), (30.0, 0.1, 1.5, 1.0)])
def test_a_constant_trace_without_a_baseline_converges(fs, tr, td, lam):
    # the activity holds the level; the tolerance's scale is the level (the
    # range measured from 0), not the rounding floor of a zero range
    y = np.ones(2000)
    r = run_deconvolution_full(y, fs, tr, td, lam, baseline="none")
    assert r.converged and r.iterations < 100
    assert kkt_violation(y, r.activity, 0.0, fs, tr, td, lam, mode="none") <= KKT_TOL
    assert r.activity.sum() > 0


@pytest.mark.parametrize("mode", ["scalar", "drift"])
def test_a_constant_trace_with_a_baseline_is_its_level(mode):
    y = np.full(5000, 123.456)
    r = run_deconvolution_full(y, 30.0, 0.05, 0.5, 0.1, baseline=mode)
    assert r.converged
    assert not r.activity.any()
    assert np.all(np.asarray(r.baseline) == 123.456)


def test_values_beyond_float64s_reach_are_refused_with_the_row():
    y = np.zeros((3, 500))
    y[1, 10] = 1e307
    with pytest.raises(ValueError, match=r"row 1\b.*rescale"):
        run_deconvolution_full(y, 30.0, 0.05, 0.5, 0.1)
    y[1, 10] = np.inf  # non-finite: the finiteness message, not this one
    with pytest.raises(ValueError, match="non-finite"):
        run_deconvolution_full(y, 30.0, 0.05, 0.5, 0.1)


def test_the_callers_traces_are_not_shifted():
    y = calcium_traces(2, 1000, fs=30.0, tau_r=0.05, tau_d=0.5, seed=1) + 1e6
    keep = y.copy()
    run_deconvolution_full(y, 30.0, 0.05, 0.5, 0.1)
    np.testing.assert_array_equal(y, keep)
