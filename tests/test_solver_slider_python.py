"""The slider path's Python layer (run_deconvolution_full on one row): its
shortcuts give what the general code gives."""
import numpy as np
import pytest

import napari_catune as nc
from napari_catune import solver as S


def test_prepare_traces_float64_shortcut_is_the_general_answer():
    rng = np.random.default_rng(3)
    for shape in [(50,), (1, 50), (3, 50), (2, 2)]:
        y = rng.standard_normal(shape)
        fast = S.prepare_traces(y, check_finite=False)
        gen = S.prepare_traces(y)
        assert fast.shape == gen.shape == np.atleast_2d(y).shape
        assert fast.dtype == np.float64 and fast.flags.c_contiguous
        assert np.shares_memory(fast, y)  # no copy, as the general path
        assert np.array_equal(fast, gen)
    # what the shortcut leaves to the general path: converted or refused
    y = rng.standard_normal((3, 50))
    for other in (y.astype(np.float32), np.asfortranarray(y), y.astype(">f8"), y[:, ::2]):
        got = S.prepare_traces(other, check_finite=False)
        assert got.dtype == np.float64 and got.flags.c_contiguous
        assert np.array_equal(got, np.ascontiguousarray(other, dtype=np.float64))
    for bad in (np.zeros((1, 1)), np.zeros((0, 5)), np.zeros((2, 2, 2)), np.zeros(1)):
        with pytest.raises(ValueError):
            S.prepare_traces(bad, check_finite=False)


@pytest.mark.parametrize("baseline", ["scalar", "drift", "none"])
def test_one_row_is_solved_as_within_many_rows(baseline):
    """The one-row magnitude and offset tests in Python floats: the same
    answer as the NumPy tests of a two-row call, bit for bit, near 0 and on
    a level far from 0 (where the row is solved about its middle)."""
    rng = np.random.default_rng(5)
    fs, tr, td, lam = 30.0, 0.05, 0.6, 0.05
    s_true = np.where(rng.random(3000) < 0.02, rng.exponential(1.0, 3000), 0.0)
    clean = S.reconvolve(s_true, fs, tr, td)
    for level in (0.0, 3.0, -2.5e6, 7.7e8):
        y = clean + 0.1 * rng.standard_normal(3000) + level
        pair = np.stack([y, clean + 0.1 * rng.standard_normal(3000)])
        one = nc.run_deconvolution_full(y, fs, tr, td, lam, baseline=baseline)
        two = nc.run_deconvolution_full(pair, fs, tr, td, lam, baseline=baseline)
        assert np.array_equal(one.activity, two.activity[0])
        assert np.array_equal(np.asarray(one.baseline), np.asarray(two.baseline[0]))
        assert np.array_equal(one.reconvolution, two.reconvolution[0])
        assert one.iterations == two.iterations[0] and one.converged == two.converged[0]
        assert S._offsets(y[None]) is None or level != 0.0


def test_one_row_magnitude_and_nan_messages():
    y = np.ones(100)
    y[7] = 3e100
    with pytest.raises(ValueError, match="beyond"):
        nc.run_deconvolution_full(y, 30.0, 0.05, 0.6, 0.05)
    y[7] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        nc.run_deconvolution_full(y, 30.0, 0.05, 0.6, 0.05, baseline="drift")
    y[7] = -np.inf
    with pytest.raises(ValueError, match="non-finite"):
        nc.run_deconvolution_full(y, 30.0, 0.05, 0.6, 0.05)
