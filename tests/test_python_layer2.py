"""The slider path's Python layer, thirty-first round (helper wpy): the fast
paths give what the general code gives, and every bad input is still told."""

import math
import warnings

import numpy as np
import pytest

from napari_catune import kernel as K
from napari_catune import session as ses
from napari_catune import solver
from napari_catune.baseline import baseline_mode


def _validated(*args):
    """validate_params' result (or error) and its warnings, from a clean slate."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        K._WARNED.clear()
        try:
            out = ("ok", K.validate_params(*args))
        except ValueError as e:
            out = ("error", str(e))
    return out, [str(x.message) for x in w]


VALUES = [0.0, -0.0, 0.001, 0.5, 0.5000001, 0.01, 10.0, 10.5, 1.0, 30.0, 1000.0, 1000.5,
          math.inf, math.nan, -1.0, 1e-300, 1e300, 0.2, 3.0]


def test_validate_params_plain_floats_as_the_general_checks():
    # np.float64 is a float subclass: it always takes the per-parameter checks
    for tr in VALUES:
        for td in VALUES:
            for fs in VALUES:
                for lam in (None, 0.0, 0.05, 10.0, 10.5, -1.0, math.nan):
                    fast = _validated(tr, td, fs, lam)
                    general = _validated(*(None if v is None else np.float64(v)
                                           for v in (tr, td, fs, lam)))
                    assert fast == general, (tr, td, fs, lam)
                    if fast[0][0] == "ok":
                        assert all(type(v) is float for v in fast[0][1])


def test_validate_params_fast_path_follows_param_ranges(monkeypatch):
    monkeypatch.setitem(K.PARAM_RANGES, "tau_decay", (0.01, 0.4))
    K._WARNED.clear()
    with pytest.warns(K.ParameterRangeWarning, match="tau_decay = 0.5 s is outside"):
        K.validate_params(0.05, 0.5, 30.0, 0.05)


def test_baseline_mode_names():
    for name in ("scalar", "drift", "none", "rolling"):
        assert baseline_mode(name) == name
        assert baseline_mode(f" {name.upper()} ") == name
    assert baseline_mode(True) == "scalar" and baseline_mode(False) == "none"
    for bad in ("x", "", 1, None):
        with pytest.raises(ValueError, match="baseline must be one of"):
            baseline_mode(bad)


def test_sampled_kernel_as_the_plain_formula():
    rng = np.random.default_rng(5)
    for i in range(300):
        fs = float(np.exp(rng.uniform(np.log(5), np.log(1000))))
        td = float(np.exp(rng.uniform(np.log(0.05), np.log(3))))
        tr = td * (float(rng.uniform(0.001, 0.999)) if i % 7 else 1 - float(rng.uniform(1e-8, 1e-3)))
        t = np.arange(K.kernel_length(td, fs), dtype=np.float64) / fs
        h = K._raw_kernel(t, tr, td)
        assert np.array_equal(K.sampled_raw_kernel(tr, td, fs), h)
        if h.size <= K._LONG_KERNEL:
            peak = float(h.max())
            assert K.kernel_peak_and_sum(tr, td, fs) == (peak, float((h / peak).sum()))


def test_model_as_the_public_kernel_functions():
    for fs, tr, td in ((30.0, 0.05, 0.5), (100.0, 0.1, 1.5), (1000.0, 0.2, 3.0), (30.0, 0.4999, 0.5)):
        for lam in (0.0, 0.05, 1.0):
            m = solver._model_checked(fs, tr, td, lam)
            g1, g2, _d, _r = K.tau_to_ar2(tr, td, fs)
            peak, G = K.kernel_peak_and_sum(tr, td, fs)
            assert (m.g1, m.g2, m.G, m.lamG) == (g1, g2, G, lam * G)
            assert m.alpha == K.ar2_scale(tr, td, fs)
            assert m is solver._model_checked(fs, tr, td, lam)
            assert m.near_degenerate == (tr > (1 - solver._NEAR_DEGENERATE) * td)


def test_num_threads_setting_checked_for_one_row(monkeypatch):
    monkeypatch.setenv("CATUNE_NUM_THREADS", "zero")
    with pytest.raises(ValueError, match="CATUNE_NUM_THREADS must be a positive whole number"):
        solver._n_threads(1)
    y = np.sin(np.arange(400) / 9.0) + 2.0
    with pytest.raises(ValueError, match="CATUNE_NUM_THREADS must be a positive whole number"):
        solver.run_deconvolution_full(y, 30.0, 0.05, 0.5, 0.05)
    monkeypatch.setenv("CATUNE_NUM_THREADS", "3")
    assert solver._n_threads(1) == 1 and solver._n_threads(8) == 3


def _session(n_rows=3, T=1500):
    rng = np.random.default_rng(2)
    s = (rng.random((n_rows, T)) < 0.03) * rng.exponential(1.0, (n_rows, T))
    y = solver.reconvolve(s, 30.0, 0.05, 0.5) + 0.1 * rng.standard_normal((n_rows, T)) + 2.0
    sess = ses.TuningSession()
    sess.set_source(ses.build_source(y, fs=30.0))
    sess.set_params(tau_rise=0.05, tau_decay=0.5, fs=30.0, lam=0.05, baseline="drift",
                    filter_enabled=False)
    return sess, y


def test_one_roi_warm_start_is_the_last_activity():
    sess, y = _session()
    rid = sess.source.roi_ids[1]
    sess.select([rid])
    first = sess.result.activity.copy()
    req = sess.request()
    assert req.init.shape == (1, y.shape[1])
    assert np.shares_memory(req.init, sess.result.activity)  # a view, not a copy
    sess.accept(req.run())
    ref = solver.run_deconvolution_full(y[1], 30.0, 0.05, 0.5, 0.05, baseline="drift",
                                        drift_scale=sess.params.drift_scale, init=first[0])
    assert np.array_equal(sess.result.activity[0], ref.activity)
    # the next results never go into the array the warm start reads
    for f in (1.02, 1.04, 0.97):
        sess.set_params(tau_decay=0.5 * f)
        assert sess.result.converged.all()
    req = sess.request()
    assert np.shares_memory(req.init, sess.result.activity)
    out = [sess._buffers.take(req.traces.shape) for _ in range(3)]
    assert not any(np.shares_memory(req.init, a) for a in out)


def test_rows_of_one():
    a = np.arange(12.0).reshape(3, 4).copy()
    assert ses._rows_of_one([a[0], a[1], a[2]]) is a
    assert ses._rows_of_one([a[1], a[0], a[2]]) is None
    assert ses._rows_of_one([a[0], a[1]]) is None
    assert ses._rows_of_one([a[0], a[1], a[2][::-1]]) is None
    assert ses._rows_of_one([a[0], a[1], a[2].copy()]) is None
    assert ses._rows_of_one([a[0].copy(), a[1], a[2]]) is None
    f = np.asfortranarray(a)
    assert ses._rows_of_one([f[0], f[1], f[2]]) is None


def test_same_rois_warm_start_is_the_last_activity():
    sess, y = _session(n_rows=4)
    ids = list(sess.source.roi_ids[:3])
    sess.select(ids)
    req = sess.request()
    assert req.init is sess.result.activity  # every row's warm start, no copy
    prev = sess.result.activity.copy()
    sess.accept(req.run())
    ref = solver.run_deconvolution_full(y[:3], 30.0, 0.05, 0.5, 0.05, baseline="drift",
                                        drift_scale=sess.params.drift_scale, init=prev)
    assert np.array_equal(sess.result.activity, ref.activity)
