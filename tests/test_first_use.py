"""First use after an install (issue 12): the NumPy solver answers while the
compiled one compiles in a subprocess, and it is exact.

Pure core: ``-p no:xvfb`` is fine.  No timing assertions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_catune import _numpy_solver as nps
from napari_catune import simulation, solver
from napari_catune.baseline import drift_mu

_SRC = Path(__file__).resolve().parents[1] / "src"
_CODES = {"none": 0, "scalar": 1, "drift": 2}


@pytest.fixture(scope="module", autouse=True)
def _fused_passes_ready():
    """The interior point's compiled passes made (on a thread after
    _jit_band.load) and checked before any test: a test that counts Newton
    systems or passes does not see the one-off check's, nor a switch to them
    mid-way."""
    from napari_catune import _jit_band

    jit = _jit_band.load()
    if jit is not None and jit.ipm_ready(120.0):
        # (a check that fails would leave every fused test comparing NumPy
        # with NumPy: passing, vacuously)
        assert nps._fused_checked(), nps._FUSED_WHY


@pytest.fixture
def pending(monkeypatch):
    """This process as while a background compile runs (nothing started)."""
    monkeypatch.setattr(solver, "_compile_state", "subprocess")
    yield
    monkeypatch.setattr(solver, "_compile_state", None)


@pytest.mark.parametrize("mode", ["none", "scalar", "drift"])
@pytest.mark.parametrize("regime", sorted(simulation.REGIMES))
def test_numpy_solver_is_the_compiled_optimum_on_every_regime(regime, mode):
    fs, tr, td, lam, _noise, _rate = simulation.REGIMES[regime]
    y = simulation.regime_traces(regime, 2, 1500, seed=3)
    m = solver._model_checked(fs, tr, td, lam)
    mu = drift_mu(None, fs, td) if mode == "drift" else 0.0
    s, b, fit, iters, conv = nps.solve_rows(y, m.g1, m.g2, m.alpha, m.lamG, m.G,
                                            _CODES[mode], mu, solver.KKT_TOL)
    assert conv.all() and (s >= 0).all() and (iters > 0).all()
    ref = solver.run_deconvolution_full(y, fs, tr, td, lam, baseline=mode)
    # the compiled evaluators judge both answers
    ours = solver._objective_rows(y, s, m, _CODES[mode], mu)
    theirs = solver._objective_rows(y, ref.activity, m, _CODES[mode], mu)
    np.testing.assert_array_less(np.abs(ours - theirs), 1e-9 * np.abs(theirs))
    kkt = solver.kkt_violation(y, s, b if mode == "drift" else b[:, 0], fs, tr, td, lam,
                               mode=mode)
    assert np.all(kkt <= solver.KKT_TOL), kkt
    np.testing.assert_allclose(fit, solver.reconvolve(s, fs, tr, td) + b, atol=1e-12,
                               rtol=1e-10)


def test_numpy_read_outs_match_the_compiled_ones():
    from napari_catune._numba_solvers import KKT_FLOOR

    assert nps.KKT_FLOOR == KKT_FLOOR
    fs, tr, td, lam = 30.0, 0.05, 0.5, 0.05
    y = simulation.regime_traces("GCaMP6f-30Hz", 3, 800)
    m = solver._model_checked(fs, tr, td, lam)
    r = solver.run_deconvolution_full(y, fs, tr, td, lam, baseline="drift")
    np.testing.assert_allclose(nps.conv_rows(r.activity, m.g1, m.g2, m.alpha),
                               solver.reconvolve(r.activity, fs, tr, td), rtol=1e-12,
                               atol=1e-12)
    mu = drift_mu(None, fs, td)
    np.testing.assert_allclose(nps.smooth_rows(y, mu), nps.best_baseline(y, 2, mu))
    for mode in ("none", "scalar", "drift"):
        c = _CODES[mode]
        mm = mu if c == 2 else 0.0
        np.testing.assert_allclose(nps.objective_rows(y, r.activity, m.g1, m.g2, m.alpha,
                                                      m.lamG, c, mm),
                                   solver._objective_rows(y, r.activity, m, c, mm),
                                   rtol=1e-12)
        b = r.baseline if c == 2 else np.full((3, 1), 1.5)
        np.testing.assert_allclose(nps.kkt_rows(y, r.activity, b, m.g1, m.g2, m.alpha,
                                                m.lamG, m.G, c, mm),
                                   solver._kkt_rows(y, r.activity, b, m, c, mm),
                                   rtol=1e-6, atol=1e-12)
    noise = np.array([0.1, 0.2, 0.0])
    from napari_catune.session import _r2, event_rate

    for a, b in zip((_r2(y, r.reconvolution), event_rate(r.activity, fs, noise)),
                    solver.fit_stats(y, r.reconvolution, r.activity, fs, noise)):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_while_compiling_the_public_api_answers_with_the_numpy_solver(pending, monkeypatch):
    """run_deconvolution_full (1-D, 2-D, out=, every method), reconvolve,
    objective, kkt_violation and fit_stats: the NumPy code, the same numbers,
    no compiled call (a compiled call here would compile in this process)."""
    import napari_catune._numba_solvers as ns

    called = []
    for name in ("pdas_rows", "fista_rows", "kkt_rows", "objective_rows", "conv_rows",
                 "fit_stats_rows"):
        monkeypatch.setattr(ns, name, lambda *a, _n=name, **k: called.append(_n))
    fs, tr, td, lam = 30.0, 0.05, 0.5, 0.05
    y = simulation.regime_traces("GCaMP6f-30Hz", 3, 900, seed=1)
    r = solver.run_deconvolution_full(y, fs, tr, td, lam, baseline="drift")
    assert r.converged.all() and r.baseline.shape == y.shape
    one = solver.run_deconvolution_full(y[0], fs, tr, td, lam)
    assert isinstance(one.baseline, float) and one.converged
    out = (np.empty_like(y), np.empty((3, 1)), np.empty_like(y))
    rf = solver.run_deconvolution_full(y, fs, tr, td, lam, out=out, init=r.activity,
                                       method="fista")
    assert rf.activity is out[0] and rf.converged.all()
    assert np.all(solver.kkt_violation(y, r.activity, r.baseline, fs, tr, td, lam,
                                       mode="drift") <= solver.KKT_TOL)
    fit = solver.reconvolve(r.activity, fs, tr, td) + r.baseline
    np.testing.assert_allclose(fit, r.reconvolution, atol=1e-12)
    solver.objective(y, r.activity, None, fs, tr, td, lam, drift_scale=10.0)
    r2, ev = solver.fit_stats(y, r.reconvolution, r.activity, fs, np.zeros(3))
    assert np.all(r2 > 0.5) and np.all(ev > 0)
    with pytest.raises(ValueError, match="non-finite"):
        bad = y.copy()
        bad[1, 5] = np.nan
        solver.run_deconvolution_full(bad, fs, tr, td, lam)
    assert called == []
    # the same optimum as the compiled solver (judged by its evaluator)
    monkeypatch.undo()
    solver._compile_state = None
    ref = solver.run_deconvolution_full(y, fs, tr, td, lam, baseline="drift")
    np.testing.assert_allclose(
        solver.objective(y, r.activity, r.baseline, fs, tr, td, lam,
                         drift_scale=solver_drift(td)),
        solver.objective(y, ref.activity, ref.baseline, fs, tr, td, lam,
                         drift_scale=solver_drift(td)), rtol=1e-9)


def solver_drift(td):
    from napari_catune.baseline import default_drift_scale

    return default_drift_scale(td)


def test_a_long_job_goes_on_compiled_once_ready(pending, monkeypatch):
    """Row groups: the NumPy solver answers the first group, the compiled
    code the rest once the compile is over."""
    calls = []
    real = nps.solve_rows

    def numpy_then_ready(y, *a, **k):
        calls.append(len(y))
        solver._compile_state = "ready"
        return real(y, *a, **k)

    monkeypatch.setattr(nps, "solve_rows", numpy_then_ready)
    monkeypatch.setattr(solver, "_FALLBACK_GROUP_SAMPLES", 2 * 500)
    y = simulation.regime_traces("GCaMP6f-30Hz", 7, 500, seed=2)
    r = solver.run_deconvolution_full(y, 30.0, 0.05, 0.5, 0.05)
    assert calls == [2] and r.converged.all()
    ref = solver.run_deconvolution_full(y, 30.0, 0.05, 0.5, 0.05)
    np.testing.assert_allclose(r.activity[2:], ref.activity[2:], atol=1e-9)


def test_a_failing_compile_subprocess_falls_back_to_compiling_here(monkeypatch):
    monkeypatch.setattr(solver, "_child_command",
                        lambda: [sys.executable, "-c", "raise SystemExit(3)"])
    monkeypatch.setattr(solver, "_compile_state", None)
    try:
        assert solver.start_background_compile(force=True) == "started"
        assert solver.start_background_compile(force=True) in ("running", "cached")
        assert solver.wait_compiled(300)
        assert solver.compile_state() == "ready" and solver.compiled_ready()
        assert "exit status 3" in solver._compile_error
    finally:
        solver._compile_state = None


_CHILD = r"""
import json, sys
import numpy as np
from napari_catune import solver, simulation
from numba.core.registry import CPUDispatcher
import napari_catune._numba_solvers as ns, napari_catune._numba_local as nl
def sigs():
    return sum(len(v.signatures) for mod in (ns, nl) for v in vars(mod).values()
               if isinstance(v, CPUDispatcher))
res = {"cached_before": solver.compiled_code_cached()}
res["start"] = solver.start_background_compile()
y = simulation.regime_traces("GCaMP6s-30Hz", 2, 2000)
r = solver.run_deconvolution_full(y, 30.0, 0.1, 1.5, 0.05, baseline="drift")
res["first"] = {"converged": bool(r.converged.all()), "state": solver.compile_state(),
                "signatures": sigs()}
solver.fit_stats(y, r.reconvolution, r.activity, 30.0, np.zeros(2))
res["after_stats_signatures"] = sigs()
res["ready"] = solver.wait_compiled(900)
from napari_catune import _numpy_solver as nps
def boom(*a, **k):
    raise AssertionError("the NumPy solver ran after the switch")
nps.solve_rows = boom
r2 = solver.run_deconvolution_full(y, 30.0, 0.1, 1.5, 0.05, baseline="drift")
res["second"] = {"state": solver.compile_state(), "pdas": len(ns.pdas_rows.signatures),
                 "same": float(np.abs(r2.activity - r.activity).max())}
solver._compile_proc.wait(900)
res["child_exit"] = solver._compile_proc.returncode
print(json.dumps(res))
"""


def test_first_use_with_an_empty_cache_solves_before_any_compile_here(tmp_path):
    """A fresh process with an empty numba cache: the first fit comes from the
    NumPy solver with nothing compiled in this process; after the compile
    subprocess has cached the code, this process loads it and uses it."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"),
               PYTHONPATH=str(_SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                         text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["cached_before"] is False and res["start"] == "started"
    assert res["first"] == {"converged": True, "state": "subprocess", "signatures": 0}
    assert res["after_stats_signatures"] == 0
    assert res["ready"] is True
    assert res["second"]["state"] == "ready" and res["second"]["pdas"] == 1
    assert res["second"]["same"] < 1e-6
    assert res["child_exit"] == 0


_WAIT_CHILD = r"""
import json, sys
import numpy as np
from napari_catune import _numpy_solver as nps, simulation, solver
from napari_catune.baseline import drift_mu
import threading
threads = int(sys.argv[1])
steps = []
tls = threading.local()
real, real_group = nps._numpy_step, nps._solve_group
def counted(x, *a, **k):
    if x.shape[1] == 40_000 - 1:
        steps.append(tls.first)
    return real(x, *a, **k)
def group(yg, *a):
    tls.first = float(yg[0, 0])  # (which group: its first sample)
    return real_group(yg, *a)
nps._numpy_step, nps._solve_group = counted, group
fs, tr, td, lam = 30.0, 0.05, 0.5, 0.05
y = simulation.regime_traces("GCaMP6f-30Hz", 4, 40_000, seed=3)
m = solver._model_checked(fs, tr, td, lam)
r = nps.solve_rows(y, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, drift_mu(None, fs, td),
                   solver.KKT_TOL, threads=threads)
print(json.dumps({"converged": bool(r[4].all()),
                  "others": sum(1 for f in steps if f != float(y[0, 0]))}))
"""


def test_a_large_drift_solve_on_threads_waits_for_the_compiled_passes(tmp_path):
    """A fresh process's first drift solve of >= 2^17 samples on two threads
    starts its first group at once and the others once the interior point's
    compiled passes are there (made and checked on their thread): no
    iteration by NumPy's passes but in the first group (one thread: NumPy's
    until they are there; both converge)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"),
               PYTHONPATH=str(_SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    got = {}
    for threads in (2, 1):
        out = subprocess.run([sys.executable, "-c", _WAIT_CHILD, str(threads)], env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        got[threads] = json.loads(out.stdout.strip().splitlines()[-1])
    assert got[2] == {"converged": True, "others": 0}, got
    assert got[1]["converged"], got


def test_rows_the_numpy_solver_cannot_settle_get_the_compiled_answer(monkeypatch):
    """converged=False never comes from the stand-in alone: such rows wait for
    the compiled code (the compile is simulated by a thread that ends it)."""
    import threading

    real = nps.solve_rows

    def unsettled(y, *a, **k):
        r = list(real(y, *a, **k))
        r[4] = r[4].copy()
        r[4][1] = False
        r[0] = r[0].copy()
        r[0][1] = 0.0
        return tuple(r)

    monkeypatch.setattr(nps, "solve_rows", unsettled)
    monkeypatch.setattr(solver, "_compile_state", "subprocess")
    solver._compile_done.clear()
    th = threading.Thread(target=solver._set_state, args=("ready",))
    monkeypatch.setattr(solver, "_compile_thread", th)
    th.start()
    try:
        y = simulation.regime_traces("GCaMP6f-30Hz", 3, 600, seed=4)
        r = solver.run_deconvolution_full(y, 30.0, 0.05, 0.5, 0.05)
    finally:
        th.join()
        solver._compile_state = None
    ref = solver.run_deconvolution_full(y, 30.0, 0.05, 0.5, 0.05)
    assert r.converged.all()
    np.testing.assert_array_equal(r.activity[1], ref.activity[1])


@pytest.mark.parametrize("T,W", [(50, 75), (2000, 75), (3000, 1)])
def test_numpy_rolling_quantile_is_the_compiled_one(T, W):
    from napari_catune._numba_solvers import rolling_quantile_rows

    y = np.random.default_rng(T).standard_normal((2, T))
    y[:, 10:20] = 0.5  # ties
    ref = np.empty_like(y)
    rolling_quantile_rows(y, W, 0.2, ref)
    np.testing.assert_array_equal(nps.rolling_quantile_rows(y, W, 0.2), ref)


def test_rolling_baseline_while_compiling_calls_nothing_compiled(pending, monkeypatch):
    import napari_catune._numba_solvers as ns

    monkeypatch.setattr(ns, "rolling_quantile_rows", None)
    y = simulation.regime_traces("GCaMP6f-30Hz", 2, 1200, seed=5)
    r = solver.run_deconvolution_full(y, 30.0, 0.05, 0.5, 0.05, baseline="rolling")
    assert r.converged.all()
    monkeypatch.undo()
    solver._compile_state = None
    ref = solver.run_deconvolution_full(y, 30.0, 0.05, 0.5, 0.05, baseline="rolling")
    np.testing.assert_allclose(r.baseline, ref.baseline, atol=1e-9)
    np.testing.assert_allclose(r.activity, ref.activity, atol=1e-6)


# ---------------------------------------------------------------- sixth round
def test_compiled_band_loops_match_lapack():
    """_jit_band's LDL' factor and solve (the Newton band) and its AR(2) /
    bidiagonal recursions give LAPACK's numbers."""
    from scipy.linalg import lapack

    from napari_catune import _jit_band

    k = _jit_band.load()
    assert k is not None  # llvmlite comes with numba: the loops are made here
    rng = np.random.default_rng(5)
    for kd, n in ((4, 3001), (2, 2000)):
        ab = np.zeros((kd + 1, n + kd), order="F")
        ab[0, :n] = 2.0 + kd * rng.uniform(0.5, 1.5, n)
        ab[1:, :n] = rng.uniform(-0.5, 0.5, (kd, n))
        for q in range(1, kd + 1):
            ab[q, n - q:] = 0.0
        c, info = lapack.dpbtrf(np.asfortranarray(ab[:, :n]), lower=1)
        rhs = rng.standard_normal(n)
        ref, _ = lapack.dpbtrs(c, rhs, lower=1)
        assert k.factor(ab, n) == 0 and info == 0
        b = np.zeros(n + kd)
        b[:n] = rhs
        k.solve(ab, n, b)
        np.testing.assert_allclose(b[:n], ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(b[n:], 0.0)
    s = rng.uniform(0, 1, (3, 1200))
    g1, g2, alpha = 1.7, -0.72, 0.4
    ab = nps._d_band(3, 1199, g1, g2, alpha)
    np.testing.assert_allclose(nps.conv_rows(s, g1, g2, alpha)[:, 1:],
                               nps._tri(ab, s[:, :-1], "N"), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(nps._adjoint(s, g1, g2, alpha)[:, :-1],
                               nps._tri(ab, s[:, 1:], "T"), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("m, T", [(1, 2), (2, 7), (3, 501)])
def test_the_drift_newton_band_written_in_one_pass_is_numpys(m, T, monkeypatch):
    """The drift Newton band as _jit_band writes it whole (one pass, no
    zeroing) is the band NumPy assembles, entry for entry, its zeros (the
    padding and past each row's end) zero."""
    from napari_catune import _jit_band

    assert _jit_band.load() is not None
    rng = np.random.default_rng(T)
    W = rng.uniform(0.0, 50.0, (m, T - 1))
    g1, g2, ia2, mu = 1.45, -0.48, 2.5, 900.0
    ours = nps._Newton(W, g1, g2, ia2, 2, mu, T)
    got = ours.c.copy(order="F")
    monkeypatch.setattr(_jit_band.Kernels, "factor", lambda self, ab, n, blocks=1: 0)
    unfactored = nps._Newton(W, g1, g2, ia2, 2, mu, T).c
    monkeypatch.setattr(nps, "_USE_JIT", False)
    monkeypatch.setattr(nps, "_factor", lambda ab, M, blocks=1: None)
    ref = nps._Newton(W, g1, g2, ia2, 2, mu, T).c  # NumPy's assembly, not factored
    # (NumPy sums the diagonal's terms in another order: a last bit apart)
    np.testing.assert_allclose(unfactored, ref, rtol=4e-16, atol=0.0)
    np.testing.assert_array_equal(unfactored == 0.0, ref == 0.0)
    assert unfactored.flags.f_contiguous and unfactored.shape == (5, m * (2 * T - 1) + 4)
    assert not np.array_equal(got, ref)  # (ours was factored in place)


def test_numpy_solver_without_the_compiled_loops_is_the_same_optimum(monkeypatch):
    """LAPACK alone (no llvmlite) still answers, with the same optimum."""
    fs, tr, td, lam = 30.0, 0.1, 1.5, 0.05
    y = simulation.regime_traces("GCaMP6s-30Hz", 2, 1500, seed=8)
    m = solver._model_checked(fs, tr, td, lam)
    mu = drift_mu(None, fs, td)
    a = nps.solve_rows(y, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, solver.KKT_TOL)
    monkeypatch.setattr(nps, "_USE_JIT", False)
    b = nps.solve_rows(y, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, solver.KKT_TOL)
    assert a[4].all() and b[4].all()
    fa = nps.objective_rows(y, a[0], m.g1, m.g2, m.alpha, m.lamG, 2, mu)
    fb = nps.objective_rows(y, b[0], m.g1, m.g2, m.alpha, m.lamG, 2, mu)
    np.testing.assert_allclose(fa, fb, rtol=1e-10)


def test_numpy_solver_row_groups_run_on_two_threads_with_the_same_numbers(monkeypatch):
    import threading

    seen = []
    real = nps._solve_group

    def record(y, *a, **k):
        seen.append((threading.current_thread().name, len(y)))
        return real(y, *a, **k)

    monkeypatch.setattr(nps, "_solve_group", record)
    fs, tr, td, lam = 30.0, 0.05, 0.5, 0.05
    y = simulation.regime_traces("GCaMP6f-30Hz", 4, 1000, seed=9)
    m = solver._model_checked(fs, tr, td, lam)
    mu = drift_mu(None, fs, td)
    one = nps.solve_rows(y, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, solver.KKT_TOL)
    assert [n for _, n in seen] == [4]
    seen.clear()
    two = nps.solve_rows(y, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, solver.KKT_TOL,
                         threads=2)
    assert sorted(n for _, n in seen) == [2, 2]
    assert all(name.startswith("catune-solve") for name, _ in seen)
    for p, q in zip(one, two):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("mode", ["none", "scalar", "drift"])
@pytest.mark.parametrize("regime", ["slow-1kHz", "lam1-30Hz", "calab-gcamp6s-30Hz"])
def test_numpy_solver_rows_get_the_numbers_they_get_alone(regime, mode):
    """A row's answer does not depend on the rows grouped with it (so not on
    the thread count): rows of different ranges and offsets solved together,
    cold and warm, equal each row solved alone, bit for bit (iterations too).
    Before: the interior point's first duals took the group's largest scale,
    and the exact polish went on refining settled rows until the whole group
    settled."""
    fs, tr, td, lam, _noise, _rate = simulation.REGIMES[regime]
    y = simulation.regime_traces(regime, 4, 1500, seed=3)
    y = y * np.array([1.0, 3.0, 0.2, 7.0])[:, None] + np.array([0.0, 5.0, -2.0, 100.0])[:, None]
    m = solver._model_checked(fs, tr, td, lam)
    mu = drift_mu(None, fs, td) if mode == "drift" else 0.0
    m0 = solver._model_checked(fs, tr, td * 1.02, lam)
    args = (_CODES[mode], mu, solver.KKT_TOL)
    warm = nps.solve_rows(y, m0.g1, m0.g2, m0.alpha, m0.lamG, m0.G, *args)[0]
    for init in (None, warm):
        together = nps.solve_rows(y, m.g1, m.g2, m.alpha, m.lamG, m.G, *args, init=init)
        assert together[4].all()
        for i in range(4):
            alone = nps.solve_rows(y[i:i + 1], m.g1, m.g2, m.alpha, m.lamG, m.G, *args,
                                   init=None if init is None else init[i:i + 1])
            for p, q in zip(together, alone):
                np.testing.assert_array_equal(p[i:i + 1], q)


@pytest.mark.parametrize("mode", ["none", "scalar", "drift"])
def test_the_active_set_check_is_kkt_rows_with_one_reconvolution(mode, monkeypatch):
    """_check (every rounding and exact solve is judged by it) returns
    kkt_rows' violation to the last bit, forming y - K s and its baseline
    once: one reconvolution and one adjoint per check, not two of each."""
    fs, tr, td, lam = 30.0, 0.05, 0.5, 0.05
    y = simulation.regime_traces("GCaMP6f-30Hz", 3, 900, seed=5)
    m = solver._model_checked(fs, tr, td, lam)
    c = _CODES[mode]
    mu = drift_mu(None, fs, td) if c == 2 else 0.0
    s = nps.solve_rows(y, m.g1, m.g2, m.alpha, m.lamG, m.G, c, mu, solver.KKT_TOL)[0]
    s[1] = 0.0  # no spikes: a row far from its optimum
    s[2, ::7] += 0.01  # and one near it
    count = {"conv": 0, "smooth": 0}
    real_conv, real_base = nps.conv_rows, nps.best_baseline

    def conv(*a, **k):
        count["conv"] += 1
        return real_conv(*a, **k)

    def base(*a, **k):
        count["smooth"] += 1
        return real_base(*a, **k)

    monkeypatch.setattr(nps, "conv_rows", conv)
    monkeypatch.setattr(nps, "best_baseline", base)
    # drift: by the four fused passes (no NumPy reconvolution nor smoother),
    # then by NumPy's; the same numbers
    for fused in ((True, False) if c == 2 else (False,)):
        monkeypatch.setattr(nps, "_FUSED", fused)
        count.update(conv=0, smooth=0)
        bc, v = nps._check(y, s, m.g1, m.g2, m.alpha, m.lamG, m.G, c, mu)
        assert count == ({"conv": 0, "smooth": 0} if fused else {"conv": 1, "smooth": 1}), count
        ref = nps.kkt_rows(y, s, bc, m.g1, m.g2, m.alpha, m.lamG, m.G, c, mu).max(axis=1)
        np.testing.assert_array_equal(v, ref)
        assert v[1] > solver.KKT_TOL and v[0] <= nps.kkt_tolerance(y, solver.KKT_TOL, c)[0]


def test_long_drift_rows_take_few_newton_systems_and_no_banded_lu(monkeypatch):
    """The tuner's first view (drift, 54,000 frames): each row settles in at
    most 15 factorisations of the Newton band (interior point and polish;
    16 iterations plus the banded-LU polish before), the polish by iterative
    refinement on that band, not the banded LU of the saddle system."""
    count = {"newton": 0, "lu": 0}
    real_init, real_polish = nps._Newton.__init__, nps._polish

    def newton(self, *a, **k):
        count["newton"] += 1
        real_init(self, *a, **k)

    def lu(*a, **k):
        count["lu"] += 1
        return real_polish(*a, **k)

    monkeypatch.setattr(nps._Newton, "__init__", newton)
    monkeypatch.setattr(nps, "_polish", lu)
    fs, tr, td, lam = 30.0, 0.05, 0.5, 0.05
    y = simulation.regime_traces("GCaMP6f-30Hz", 2, 54_000, seed=7)
    m = solver._model_checked(fs, tr, td, lam)
    mu = drift_mu(None, fs, td)
    r = nps.solve_rows(y, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, solver.KKT_TOL)
    assert r[4].all() and (r[3] <= 13).all(), r[3]
    assert count["newton"] <= 2 * 15 and count["lu"] == 0, count


def test_slow_1khz_kernel_with_drift_settles_in_the_numpy_solver(monkeypatch):
    """Slow kernels at 1 kHz with the drift baseline (tau 0.2/~3 s, mu ~4e9).
    In the bordered band the baseline's pivots held mu + P and lost ~eps mu
    of the data's information P to cancellation: the interior point stalled
    at a gap ~1e-8 and 7-8 of these 12 rows settled (1 of 12 before the
    dense refinement), the rest waiting for the compiled code.  With the
    drift's multiplier an unknown of the Newton system (no entry of size
    mu) every row settles, each at its compiled optimum to 1e-6 and passing
    the KKT test (measured: every KKT violation <= 2e-4 of its tolerance,
    so the bar holds with a wide margin on other machines' rounding), in at
    most 30 iterations and 4 factorisations of the augmented band beyond
    them per pair of rows."""
    count = {"aug": 0, "other": 0}
    real_init = nps._Newton.__init__

    def newton(self, *a, **k):
        real_init(self, *a, **k)
        count["aug" if self.aug else "other"] += 1

    monkeypatch.setattr(nps._Newton, "__init__", newton)
    fs, tr, _, lam = simulation.REGIMES["slow-1kHz"][:4]
    settled = 0
    for td in (2.85, 2.94, 3.0, 3.15, 3.3, 4.5):
        y = np.vstack([simulation.regime_traces("slow-1kHz", 1, 20_000, seed=seed)
                       for seed in (7, 8)])
        m = solver._model_checked(fs, tr, td, lam)
        mu = drift_mu(None, fs, td)
        before = count["aug"]
        s, b, fit, iters, conv = nps.solve_rows(y, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu,
                                                solver.KKT_TOL)
        assert (iters <= 30).all(), iters
        assert count["aug"] - before <= iters.max() + 4, (count, iters)
        settled += int(conv.sum())
        if not conv.any():
            continue
        y, s, b = y[conv], s[conv], b[conv]
        ref = solver.run_deconvolution_full(y, fs, tr, td, lam, baseline="drift")
        ours = solver._objective_rows(y, s, m, 2, mu)
        theirs = solver._objective_rows(y, ref.activity, m, 2, mu)
        np.testing.assert_array_less(ours - theirs, 1e-6 * np.abs(theirs))
        assert np.all(solver.kkt_violation(y, s, b, fs, tr, td, lam, mode="drift")
                      <= solver.KKT_TOL)
    assert count["other"] == 0, count
    assert settled == 12, settled


def test_a_slider_move_settles_from_the_previous_active_set(monkeypatch):
    """A warm start (tau_decay +5 %, drift, 30 Hz) goes first through the
    exact active-set corrections from the previous answer's active set:
    both rows settle there (iteration count 1) in at most 6 factorisations
    of the stacked Newton band (from the warm interior point: 8-9 iterations
    each, ~20 factorisations a pair), at the compiled optimum."""
    count = {"newton": 0}
    real_init = nps._Newton.__init__

    def newton(self, *a, **k):
        count["newton"] += 1
        real_init(self, *a, **k)

    fs, tr, td, lam = 30.0, 0.05, 0.5, 0.05
    y = simulation.regime_traces("GCaMP6f-30Hz", 2, 20_000, seed=7)
    m = solver._model_checked(fs, tr, td, lam)
    mu = drift_mu(None, fs, td)
    first = nps.solve_rows(y, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, solver.KKT_TOL)
    assert first[4].all()
    td2 = td * 1.05
    m2 = solver._model_checked(fs, tr, td2, lam)
    mu2 = drift_mu(None, fs, td2)
    monkeypatch.setattr(nps._Newton, "__init__", newton)
    s, b, fit, iters, conv = nps.solve_rows(y, m2.g1, m2.g2, m2.alpha, m2.lamG, m2.G, 2, mu2,
                                            solver.KKT_TOL, init=first[0])
    assert conv.all() and (iters == 1).all(), iters
    assert count["newton"] <= 6, count
    ref = solver.run_deconvolution_full(y, fs, tr, td2, lam, baseline="drift")
    ours = solver._objective_rows(y, s, m2, 2, mu2)
    theirs = solver._objective_rows(y, ref.activity, m2, 2, mu2)
    np.testing.assert_array_less(np.abs(ours - theirs), 1e-9 * np.abs(theirs))
    assert np.all(solver.kkt_violation(y, s, b, fs, tr, td2, lam, mode="drift")
                  <= solver.KKT_TOL)


def test_augmented_drift_newton_system_is_the_dense_solve():
    """The drift's augmented Newton system (signed LDL' of the bandwidth-6
    band, rows stacked) solves [I + D'WD, E', 0; E, I, B'; 0, B, -1/mu]
    as a dense solve does, and its (dx, db) is the bordered system's."""
    rng = np.random.default_rng(11)
    m, T = 2, 40
    n = T - 1
    g1, g2, ia, mu = 1.9, -0.902, 3.0, 1e8
    W = 10.0 ** rng.uniform(-3, 6, (m, n))
    nt = nps._Newton(W, g1, g2, ia * ia, 2, mu, T)
    assert nt.aug and nt.kd == 6
    rx, rb, rq = rng.standard_normal((m, n)), rng.standard_normal((m, T)), \
        rng.standard_normal((m, T - 1))
    dx, db, dp = nt.solve(rx, rb, rq)
    Dm = (np.eye(n) - g1 * np.eye(n, k=-1) - g2 * np.eye(n, k=-2)) * ia
    E = np.zeros((T, n))
    E[1:, :] = np.eye(n)
    B = np.eye(T)[1:] - np.eye(T, k=-1)[1:]
    for r in range(m):
        A = np.block([[np.eye(n) + Dm.T @ np.diag(W[r]) @ Dm, E.T, np.zeros((n, T - 1))],
                      [E, np.eye(T), B.T],
                      [np.zeros((T - 1, n)), B, -np.eye(T - 1) / mu]])
        ref = np.linalg.solve(A, np.concatenate((rx[r], rb[r], rq[r])))
        np.testing.assert_allclose(np.concatenate((dx[r], db[r], dp[r])), ref,
                                   rtol=1e-8, atol=1e-8 * np.abs(ref).max())


_NO_SCIPY = r"""
import json, sys
from napari_catune import simulation, solver
solver._compile_state = "subprocess"          # as while the child compiles
y = simulation.regime_traces("GCaMP6f-30Hz", 2, 3000, seed=1)
r = solver.run_deconvolution_full(y, 30.0, 0.05, 0.5, 0.05, baseline="drift")
print(json.dumps({"converged": bool(r.converged.all()),
                  "scipy_linalg": "scipy.linalg" in sys.modules,
                  "numba_compiled": any(len(getattr(v, "signatures", ())) for v in
                      vars(sys.modules.get("napari_catune._numba_solvers", json)).values())}))
"""


def test_first_answer_needs_no_scipy_linalg():
    """The NumPy solver's first answer (compiled loops) imports no
    ``scipy.linalg`` (~0.3 s) and compiles nothing with numba."""
    env = dict(os.environ, PYTHONPATH=str(_SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", _NO_SCIPY], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res == {"converged": True, "scipy_linalg": False, "numba_compiled": False}


_EXIT_DURING_COMPILE = r"""
import sys, threading, time
from napari_catune import _jit_band
inside = threading.Event()

def compiling():  # (a daemon thread inside a compile, as the passes' thread)
    with _jit_band._COMPILE_LOCK:
        inside.set()
        time.sleep(1.0)
        open(sys.argv[1], "w").write("done")

threading.Thread(target=compiling, daemon=True).start()
inside.wait(60.0)
"""


def test_the_interpreter_waits_for_a_running_compile_before_it_exits(tmp_path):
    """A process that ends while the passes' daemon thread is inside LLVM
    aborted or segfaulted (LLVM torn down under it) after its work was done:
    at exit it now waits for the compile to finish."""
    flag = tmp_path / "finished"
    env = dict(os.environ, PYTHONPATH=str(_SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", _EXIT_DURING_COMPILE, str(flag)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert flag.read_text() == "done"


def test_the_compile_child_runs_below_the_user_in_the_scheduler(monkeypatch):
    from napari_catune import _compile

    niced, grouped, warmed = [], [], []
    monkeypatch.setattr(os, "nice", lambda inc: niced.append(inc) or inc, raising=False)
    monkeypatch.setattr(_compile, "_autogroup_nice", lambda inc: grouped.append(inc) or True)
    monkeypatch.setattr(solver, "_warm_up", lambda live_only=False: warmed.append(live_only))
    # as the child runs: the leader of a session of its own (start_new_session)
    monkeypatch.setattr(os, "getsid", lambda pid: os.getpid(), raising=False)
    assert _compile.main() == 0
    assert niced == [_compile.NICE] and _compile.NICE > 0 and warmed == [True, False]
    # its session's autogroup too (Linux): a nice counts only within its session
    assert grouped == ([_compile.NICE] if sys.platform.startswith("linux") else [])
    # not when it does not lead its session (the autogroup would be the caller's)
    grouped.clear()
    monkeypatch.setattr(os, "getsid", lambda pid: os.getpid() + 1, raising=False)
    assert _compile.main() == 0 and grouped == []


def test_the_autogroup_nice_is_written_and_retried_on_eagain(tmp_path, monkeypatch):
    from napari_catune import _compile

    f = tmp_path / "autogroup"
    monkeypatch.setattr(_compile, "_AUTOGROUP", str(f))
    assert _compile._autogroup_nice(7) and f.read_text() == "7"
    calls = []
    real_open = open

    def busy_once(path, mode="r", *a, **k):
        if path == str(f) and not calls:
            calls.append(1)
            raise BlockingIOError(11, "rate limited")
        return real_open(path, mode, *a, **k)

    import builtins

    monkeypatch.setattr(builtins, "open", busy_once)
    assert _compile._autogroup_nice(9) and calls == [1] and f.read_text() == "9"
    monkeypatch.setattr(_compile, "_AUTOGROUP", str(tmp_path / "no" / "such"))
    assert _compile._autogroup_nice(9) is False


@pytest.mark.skipif(not os.path.exists("/proc/self/autogroup"), reason="no autogroups here")
def test_the_compile_child_is_niced_in_its_own_autogroup(tmp_path):
    """Run as the solver starts it (a session of its own), the child's
    autogroup (not the caller's) gets the nice."""
    code = ("import os, time\nfrom napari_catune import _compile\n"
            "ok = _compile._autogroup_nice(_compile.NICE) if os.getsid(0) == os.getpid() else None\n"
            "print(ok, open('/proc/self/autogroup').read().split()[-1])")
    from napari_catune import _compile

    env = dict(os.environ, PYTHONPATH=str(_SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    before = open("/proc/self/autogroup").read()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300, start_new_session=True)
    assert out.returncode == 0, out.stderr[-3000:]
    if out.stdout.split()[0] == "False":
        pytest.skip("this host refuses a session's autogroup nice (the child keeps its "
                    "process nice only)")
    assert out.stdout.split() == ["True", str(_compile.NICE)]
    assert open("/proc/self/autogroup").read() == before  # (ours untouched)


def test_the_cache_check_finds_numbas_directory_without_importing_numba(tmp_path):
    """``_compile.cache_index_absent``: the directory numba caches the live
    solver in, told without numba (~0.3 s of import on first use)."""
    import napari_catune._numba_solvers as ns
    from napari_catune import _compile

    if not sys.platform.startswith("linux"):
        pytest.skip("the fast check is Linux-only")
    assert _compile._cache_dir(ns.__file__) == ns.pdas_rows._cache._cache_path
    code = ("import json, sys\nfrom napari_catune import solver\n"
            "print(json.dumps([solver.compiled_code_cached(), 'numba' in sys.modules]))")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"),
               PYTHONPATH=str(_SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, False]


@pytest.mark.parametrize("mode, scale", [("none", None), ("scalar", None), ("drift", None),
                                         ("drift", 100.0)])
def test_numpy_solver_on_the_shortest_traces(mode, scale):
    """T = 2 .. 7 with stacked rows: the band layouts' ends (the drift band's
    second sub-diagonal is empty below 4 frames; drift scale 100: mu 9e6,
    the augmented band)."""
    rng = np.random.default_rng(11)
    fs, tr, td, lam = 30.0, 0.05, 0.5, 0.05
    m = solver._model_checked(fs, tr, td, lam)
    mu = drift_mu(scale, fs, td) if mode == "drift" else 0.0
    assert nps._augmented(_CODES[mode], mu) == (scale is not None)
    for T in (2, 3, 4, 5, 7):
        y = rng.standard_normal((3, T)) + np.arange(T)
        s, b, fit, iters, conv = nps.solve_rows(y, m.g1, m.g2, m.alpha, m.lamG, m.G,
                                                _CODES[mode], mu, solver.KKT_TOL)
        assert conv.all(), (T, iters)
        ref = solver.run_deconvolution_full(y, fs, tr, td, lam, baseline=mode,
                                            drift_scale=scale)
        ours = solver._objective_rows(y, s, m, _CODES[mode], mu)
        theirs = solver._objective_rows(y, ref.activity, m, _CODES[mode], mu)
        np.testing.assert_array_less(ours - theirs, 1e-9 * np.abs(theirs) + 1e-12)


def test_the_one_pass_drift_band_is_checked_before_it_is_used(monkeypatch):
    """_jit_band's one-pass drift band is compared once with NumPy's
    assembly; a loop that writes a wrong entry is caught (NumPy assembles
    the band then)."""
    from napari_catune import _jit_band

    jit = _jit_band.load()
    assert jit is not None
    monkeypatch.setattr(nps, "_DRIFT_BAND_OK", [])
    assert nps._drift_band_checked(jit)

    class Wrong:
        def drift_band(self, W, ia2, g1, g2, mu):
            out = jit.drift_band(W, ia2, g1, g2, mu)
            out[2, 5] *= 1.0 + 1e-9
            return out

    monkeypatch.setattr(nps, "_DRIFT_BAND_OK", [])
    assert not nps._drift_band_checked(Wrong())


_CLI_NO_SCIPY = r"""
import json, sys
from napari_catune import cli, solver

def started(*a, **k):  # as after an install: the child compiles, the NumPy solver answers
    solver._compile_state = "subprocess"
    return "started"

solver.start_background_compile = started
folder = sys.argv[1]
code = cli.main(["deconvolve", folder + "/y.npy", "--params", folder + "/p.json",
                 "-o", folder + "/out.npz", "-q"])
print(json.dumps({"code": code,
                  "scipy": sorted(m for m in sys.modules if m.split(".")[0] == "scipy"),
                  "numba": "numba" in sys.modules}))
"""


def test_first_cli_call_imports_no_scipy(tmp_path):
    """``napari-catune deconvolve`` on a fresh install (the NumPy solver
    answering) imports nothing of SciPy: its results' kernel landmarks (the
    half-maximum times) are found by bisection, not ``scipy.optimize``
    (~0.5 s of imports, half the first call), and numba is not imported."""
    from napari_catune.params import TuningParams, save_params

    np.save(tmp_path / "y.npy", simulation.regime_traces("GCaMP6f-30Hz", 3, 2000, seed=2))
    save_params(TuningParams(0.05, 0.5, 30.0, 0.05), tmp_path / "p.json")
    env = dict(os.environ, PYTHONPATH=str(_SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", _CLI_NO_SCIPY, str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res == {"code": 0, "scipy": [], "numba": False}, res
    assert (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("taus", [(0.05, 0.5), (0.01, 0.15), (0.2, 3.0), (0.1, 0.1000001),
                                  (1e-3, 10.0)])
def test_kernel_half_max_times_by_bisection_are_half_maximum(taus):
    """The bisection's half-maximum crossings: the kernel there is half its
    peak to rounding, left of the peak and right of it."""
    from napari_catune import kernel

    tr, td = taus
    tp, left, right = kernel.kernel_landmarks(tr, td)
    peak = float(kernel._raw_kernel(np.array(tp), tr, td))
    for t in (left, right):
        assert abs(float(kernel._raw_kernel(np.array(t), tr, td)) / peak - 0.5) < 1e-13
    assert 0.0 < left < tp < right


def _fused_passes():
    """_jit_band's kernels with the interior point's passes made (they are
    made on a thread after load: waited for here), or skip."""
    from napari_catune import _jit_band

    import importlib.util

    jit = _jit_band.load()
    if jit is None and importlib.util.find_spec("llvmlite") is None:
        pytest.skip("no LLVM here: NumPy's passes only")
    # llvmlite here: no loops, or no passes in time, is a failure, not a skip
    assert jit is not None, _jit_band._STATE.get("error")
    if not jit.ipm_ready(120.0):
        pytest.fail(f"the interior point's passes not made: {jit._ipm_error}")
    return jit


def _solve_both(y, m, mu, init=None):
    """solve_rows' numbers with the fused passes and with NumPy's."""
    out = []
    for off in (False, True):
        nps._TLS.off = off
        try:
            out.append(nps.solve_rows(y, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu,
                                      solver.KKT_TOL, init=init))
        finally:
            nps._TLS.off = False
    return out


@pytest.mark.parametrize("regime", ["GCaMP6f-30Hz", "GCaMP6s-100Hz", "calab-gcamp6s-30Hz",
                                    "lam0-30Hz", "dense-30Hz"])
def test_fused_interior_point_passes_give_numpys_numbers_bit_for_bit(regime):
    """The drift interior point's element-wise work and the exact polish's
    refinement steps as _jit_band's passes: the same activity, baseline,
    fit, iteration counts and verdicts as NumPy's passes, bit for bit, cold
    and from a warm start (tau_decay +5 %); so a solve may switch to them
    mid-way (they are made on a thread) and its numbers do not change."""
    _fused_passes()
    fs, tr, td, lam, *_ = simulation.REGIMES[regime]
    y = simulation.regime_traces(regime, 3, 2500, seed=4)
    m = solver._model_checked(fs, tr, td, lam)
    mu = drift_mu(None, fs, td)
    fused, ref = _solve_both(y, m, mu)
    assert ref[4].all()
    for a, b in zip(fused, ref):
        np.testing.assert_array_equal(a, b)
    m2 = solver._model_checked(fs, tr, td * 1.05, lam)
    fused, ref = _solve_both(y, m2, drift_mu(None, fs, td * 1.05), init=ref[0])
    assert ref[4].all()
    for a, b in zip(fused, ref):
        np.testing.assert_array_equal(a, b)


def test_a_fused_iteration_makes_no_numpy_difference_passes(monkeypatch):
    """Each drift interior-point iteration on the fused path is six compiled
    passes (ipm_pre, ipm_dir twice, ipm_aff, ipm_corr, ipm_upd) around its
    two banded solves: the three NumPy D passes and two D' passes an
    iteration makes otherwise are gone (counted against NumPy's path); each
    KKT test is four (chk_f1, chk_b1, chk_f2, chk_b2)."""
    jit = _fused_passes()
    fs, tr, td, lam = 30.0, 0.05, 0.5, 0.05
    y = simulation.regime_traces("GCaMP6f-30Hz", 2, 4000, seed=9)
    m = solver._model_checked(fs, tr, td, lam)
    mu = drift_mu(None, fs, td)
    nps._fused_checked()
    counts = []
    for off in (False, True):
        count = {"d": 0, "dt": 0, "ipm_pre": 0, "ipm_dir": 0, "ipm_aff": 0, "ipm_corr": 0,
                 "ipm_upd": 0, "pol_res": 0, "pol_upd": 0, "chk_f1": 0, "chk_b1": 0,
                 "chk_f2": 0, "chk_b2": 0}
        real_d, real_dt, real_ipm = nps._d, nps._dt, type(jit).ipm

        def d(*a, count=count, real_d=real_d):
            count["d"] += 1
            return real_d(*a)

        def dt(*a, count=count, real_dt=real_dt):
            count["dt"] += 1
            return real_dt(*a)

        def ipm(self, name, *a, count=count, real_ipm=real_ipm):
            count[name] += 1
            return real_ipm(self, name, *a)

        monkeypatch.setattr(nps, "_d", d)
        monkeypatch.setattr(nps, "_dt", dt)
        monkeypatch.setattr(type(jit), "ipm", ipm)
        nps._TLS.off = off
        try:
            r = nps.solve_rows(y, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, solver.KKT_TOL)
        finally:
            nps._TLS.off = False
            monkeypatch.undo()
        assert r[4].all()
        counts.append(count)
    fused, ref = counts
    it = fused["ipm_pre"]
    assert it >= 8 and ref["ipm_pre"] == 0 and ref["pol_res"] == 0
    assert fused["ipm_dir"] == 2 * it and fused["ipm_upd"] == fused["ipm_aff"] == it
    assert fused["ipm_corr"] == it and fused["pol_res"] == fused["pol_upd"] >= 1
    assert ref["d"] - fused["d"] >= 3 * it and ref["dt"] - fused["dt"] >= 2 * it
    # the KKT tests: four passes each (none on NumPy's path)
    assert fused["chk_f1"] == fused["chk_b1"] == fused["chk_f2"] == fused["chk_b2"] >= 1
    assert ref["chk_f1"] == ref["chk_b2"] == 0


@pytest.mark.parametrize("mu", [0.0, 3.7, 900.0, 4e9])
@pytest.mark.parametrize("T", [1, 2, 3, 54_000])
def test_the_drift_smoothers_riccati_loop_is_pythons(mu, T, monkeypatch):
    """The smoother's Riccati divisors by _jit_band's loop equal the Python
    loop's, bit for bit."""
    from napari_catune import _jit_band

    if _jit_band.load() is None:
        pytest.skip("no LLVM here")
    nps._smoother_gains.cache_clear()
    got = nps._smoother_gains(mu, T)
    monkeypatch.setattr(nps, "_USE_JIT", False)
    nps._smoother_gains.cache_clear()
    ref = nps._smoother_gains(mu, T)
    nps._smoother_gains.cache_clear()
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)



def _same_bits(a, b):
    """Equal bit for bit (the sign of a zero too), NaN where NaN (its payload
    aside: which operand's NaN an x86 addition keeps is the compiler's)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    nan = np.isnan(a)
    return (a.shape == b.shape and np.array_equal(nan, np.isnan(b))
            and np.array_equal(a[~nan].view(np.uint64), b[~nan].view(np.uint64)))


def _with_specials(rng, shape):
    """Random values over 12 decades with NaN, +-inf, +-0 and extremes among them."""
    x = rng.standard_normal(shape) * 10.0 ** rng.uniform(-6, 6, shape)
    if x.size:
        at = rng.integers(0, x.size, max(1, x.size // 5))
        x.flat[at] = rng.choice([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e308, 5e-324], at.size)
    return x


@pytest.mark.parametrize("special", [False, True])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 29])
def test_the_row_loops_are_their_arithmetic_bit_for_bit(n, special):
    """The AR(2) recursion, the FIR passes (plain and strided into a band)
    and the one-pass drift band, made on the builder's row-and-sample
    skeleton, give the numbers of their arithmetic written out in its order
    (Python / NumPy), bit for bit, NaN and inf included, on rows of 0-29
    samples (T = 1, 2, 3, ...)."""
    from napari_catune import _jit_band

    k = _jit_band.load()
    assert k is not None
    rng = np.random.default_rng(100 * n + special)
    draw = (lambda s: _with_specials(rng, s)) if special else rng.standard_normal
    m = 3
    x, a1, a2, c = draw((m, n)), draw(n), draw(n), draw(4)
    with np.errstate(all="ignore"):
        _row_loops_against_their_arithmetic(k, m, n, x, a1, a2, c, np.abs(draw((m, n))))


def _row_loops_against_their_arithmetic(k, m, n, x, a1, a2, c, W):
    for backward in (False, True):
        order = range(n - 1, -1, -1) if backward else range(n)
        ref = x.copy()
        for r in range(m):  # x_k += a2_k p2 + a1_k p1, as (x_k + a2_k p2) + a1_k p1
            p1 = p2 = 0.0
            for j in order:
                v = (ref[r, j] + a2[j] * p2) + a1[j] * p1
                ref[r, j], p1, p2 = v, v, p1
        got = x.copy()
        k.rec(got, a1, a2, backward)
        assert _same_bits(got, ref), ("rec", backward)
        xp = np.zeros((m, n + 4))
        xp[:, 2:n + 2] = x
        x1, x2 = ((xp[:, 3:n + 3], xp[:, 4:n + 4]) if backward
                  else (xp[:, 1:n + 1], xp[:, 0:n]))
        ref = c[3] + (c[0] * x + (c[1] * x1 + c[2] * x2))
        assert _same_bits(k.fir(x, *c[:3], backward=backward, cst=c[3]), ref), ("fir", backward)
        band = np.full(m * n * 3 + 2, 7.0)
        k.fir(x, *c[:3], backward=backward, cst=c[3], out=band, orow=3 * n, ostep=3)
        assert _same_bits(band[:m * n * 3].reshape(m, n, 3)[:, :, 0], ref)
        assert (np.delete(band, np.arange(0, m * n * 3, 3)) == 7.0).all()  # nothing else
    for g1, g2, ia2, mu in ((1.45, -0.48, 2.5, 900.0), (0.3, 0.0, 1e-3, 1e6)):
        wp = np.zeros((m, n + 2))
        wp[:, :n] = W
        w0, w1, w2 = wp[:, :n], wp[:, 1:n + 1], wp[:, 2:n + 2]
        ref = np.zeros((5, m, 2 * n + 1))
        ref[0, :, 1::2] = 1.0 + (ia2 * w0 + (g1 * g1 * ia2 * w1 + g2 * g2 * ia2 * w2))
        ref[2, :, 1::2] = -g1 * ia2 * w1 + g1 * g2 * ia2 * w2
        ref[4, :, 1::2] = -g2 * ia2 * w2
        ref[1, :, 1::2] = 1.0
        ref[0, :, 0::2] = 1.0 + 2.0 * mu
        ref[0, :, 0] = ref[0, :, 2 * n] = 1.0 + mu
        ref[2, :, 0:2 * n:2] = -mu
        full = np.zeros((5, m * (2 * n + 1) + 4))
        full[:, :m * (2 * n + 1)] = ref.reshape(5, -1)
        out = np.full((m * (2 * n + 1) + 4, 5), 7.0).T  # every entry written
        assert _same_bits(k.drift_band(W, ia2, g1, g2, mu, out=out), full), "drift band"


def _wait_child(pid, deadline=60.0):
    """The child's exit status, waited for up to ``deadline`` seconds (a
    watchdog: then killed, and None)."""
    import time

    end = time.monotonic() + deadline
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return None


def _holding_llvm(real, entered):
    """``real`` (a compile) called with llvmlite's own lock held throughout,
    ``entered`` set once it is: a fork then copies that lock held unless it
    waits for the compile."""
    from llvmlite.binding import ffi

    def compile_(*a):
        with ffi.lib._lock:
            entered.set()
            return real(*a)

    return compile_


def _fork_and(child):
    """Fork; the child runs ``child()`` (True: exit 0, else 1) and exits."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 2
        try:
            code = 0 if child() else 1
        finally:
            os._exit(code)
    return pid


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_fork_while_a_fallback_solve_counts_leaves_the_child_its_lock():
    """The lock of the NumPy solver's count of solves under way, held by
    another thread when the process forks: the child gets a lock of its own
    (review rev33a; before, its first fallback solve waited forever)."""
    import threading

    from napari_catune import solver

    held, done = threading.Event(), threading.Event()

    def hold():
        with solver._fallback_lock:
            held.set()
            done.wait(120.0)

    th = threading.Thread(target=hold, daemon=True)
    th.start()
    assert held.wait(60.0)

    def child():
        with solver._fallback_lock:
            return solver._fallback_running[0] >= 0

    code = _wait_child(_fork_and(child))
    done.set()
    th.join(60.0)
    assert code == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_fork_while_the_loops_compile_leaves_the_child_working(monkeypatch):
    """A process forked while a thread compiles _jit_band's loops (LLVM's
    own lock held then) gets working loops from its own load(): the fork
    waits for the compile instead of copying that lock held (before: the
    child's load() waited forever)."""
    import threading

    from napari_catune import _jit_band

    if _jit_band.load() is None:
        pytest.skip("no LLVM here")
    entered = threading.Event()
    monkeypatch.setattr(_jit_band, "_STATE", {})
    monkeypatch.setattr(_jit_band, "_compile", _holding_llvm(_jit_band._compile, entered))
    th = threading.Thread(target=_jit_band.load, daemon=True)
    th.start()
    assert entered.wait(60.0)
    pid = _fork_and(lambda: _jit_band.load() is not None)
    code = _wait_child(pid)
    th.join(60.0)
    assert code == 0
    assert _jit_band._STATE["k"] is not None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_fork_while_the_passes_compile_leaves_the_child_working(monkeypatch):
    """A process forked while a thread makes the interior point's passes
    gets them (made there again if need be) instead of an ipm_ready that
    waits out its timeout for a thread the child has not got."""
    import threading

    from napari_catune import _jit_band

    if _jit_band.load() is None:
        pytest.skip("no LLVM here")
    k = _jit_band.Kernels(_jit_band._compile())
    entered = threading.Event()
    monkeypatch.setattr(_jit_band, "_compile_ipm",
                        _holding_llvm(_jit_band._compile_ipm, entered))
    k.start_ipm()
    assert entered.wait(60.0)
    pid = _fork_and(lambda: k.ipm_ready(30.0))
    code = _wait_child(pid)
    assert k.ipm_ready(60.0)
    assert code == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_fork_before_the_passes_thread_runs_leaves_them_to_be_made():
    """Forked after start_ipm but before its thread began to compile: the
    child's ipm_ready makes them (not started in the child)."""
    import threading

    from napari_catune import _jit_band

    if _jit_band.load() is None:
        pytest.skip("no LLVM here")
    k = _jit_band.Kernels(_jit_band._compile())
    go = threading.Event()
    real = k._make_ipm

    def late():  # (the thread started, not yet compiling)
        go.wait(60.0)
        real()

    k._make_ipm = late
    k.start_ipm()
    try:
        # (the child's thread, if one is started there, not held back)
        pid = _fork_and(lambda: go.set() or (k.ipm_ready(30.0) and k._ipm is not None))
    finally:
        go.set()
    code = _wait_child(pid)
    assert k.ipm_ready(60.0)
    assert code == 0


def test_single_fused_iterations_are_numpys_bit_for_bit(monkeypatch):
    """One drift interior-point iteration by the compiled passes
    (_IpmDrift.step) and by NumPy's (_numpy_step): the same x, u, z, b,
    step lengths and mean complementarity, bit for bit, over a few
    iterations, on T = 2 and on states where W hits its cap (counted).
    The solvers' answers alone would not show an error in the passes: they
    come from the exact polish and the KKT test."""
    _fused_passes()
    rng = np.random.default_rng(21)
    states = list(nps._ipm_states())
    for m, T in ((1, 2), (3, 2), (2, 25)):
        n = T - 1
        x = rng.uniform(0.0, 2.0, (m, n))
        u, z = rng.uniform(1e-4, 2.0, (m, n)), rng.uniform(1e-4, 2.0, (m, n))
        if T > 3:
            u[:, 2], z[:, 2] = 1e-14, 1e5  # W past the band's Cholesky: capped
        ys = rng.standard_normal((m, T))
        cvec = rng.uniform(0.0, 0.1, (m, 1)) * np.ones((m, n))
        states.append((x, u, z, rng.standard_normal((m, T)), ys[:, 0].copy(),
                       ys[:, 1:].copy(), cvec, 1.5, -0.55, 1.2, 50.0, T))
    capped = []
    real = nps._Newton

    class Counting(real):
        def __init__(self, W, *a, **k):
            try:
                super().__init__(W, *a, **k)
            except np.linalg.LinAlgError:
                capped.append(W.shape)
                raise

    monkeypatch.setattr(nps, "_Newton", Counting)
    assert nps._iterations_equal(states, iters=4) == [True] * len(states)
    assert len(capped) >= 4  # both paths, both capped states
    assert min(T for *_, T in states) == 2


def test_the_one_off_check_sees_an_error_in_one_pass(monkeypatch):
    """x off by one part in 1e12 after each ipm_upd: the final answers can
    still agree (the exact polish), the iteration check does not."""
    jit = _fused_passes()
    real = type(jit).ipm

    def off(self, name, m, n, arrays, scalars=()):
        real(self, name, m, n, arrays, scalars)
        if name == "ipm_upd":
            arrays[0][:] *= 1.0 + 1e-12

    monkeypatch.setattr(type(jit), "ipm", off)
    assert not all(nps._iterations_equal(nps._ipm_states()))
    monkeypatch.setattr(nps, "_FUSED_OK", [])
    monkeypatch.setattr(nps, "_FUSED_WHY", [])
    assert nps._fused_checked() is False



@pytest.mark.parametrize("name, at", [("chk_f1", 2), ("chk_b1", 3), ("chk_f2", 3),
                                      ("chk_b2", 3), ("chk_b2", 4)])
def test_the_one_off_check_sees_an_error_in_one_kkt_pass(name, at, monkeypatch):
    """One KKT pass's output off by one part in 1e12 (or a row's max by one
    ulp): the single-test comparison fails, and so does the one-off check
    (the passes are then not used: NumPy's)."""
    jit = _fused_passes()
    real = type(jit).ipm

    def off(self, name_, m, n, arrays, scalars=()):
        real(self, name_, m, n, arrays, scalars)
        if name_ == name:
            out = arrays[at]
            out[:] = np.nextafter(out, np.inf) if at == 4 else out * (1.0 + 1e-12)

    assert all(nps._kkt_equal(nps._kkt_states()))
    monkeypatch.setattr(type(jit), "ipm", off)
    assert not all(nps._kkt_equal(nps._kkt_states()))
    monkeypatch.setattr(nps, "_FUSED_OK", [])
    monkeypatch.setattr(nps, "_FUSED_WHY", [])
    assert nps._fused_checked() is False
    y, s, lam, g1, g2, alpha, mu = nps._kkt_states()[2]
    assert nps._kkt_drift(y, s, lam, g1, g2, alpha, mu) is None


def test_the_fused_passes_carry_nans_as_numpy_does():
    """A NaN in the polish's step fails its row's test (NumPy's max is NaN
    there; ordered compares would skip it and pass the row), and a NaN
    iterate stays NaN through ipm_upd's max(u + a du, tiny)."""
    jit = _fused_passes()
    m, n = 3, 4
    T = n + 1
    M = m * (2 * T - 1)
    rhs = np.zeros(M + 4)
    rhs[:M] = 1e-12
    rhs[:2 * T - 1] = np.nan          # row 0: all NaN
    rhs[(2 * T - 1) + 3] = np.nan     # row 1: one
    x, b, A = np.zeros((m, n)), np.zeros((m, T)), np.ones((m, n))
    lam, r2, mdx, mx = np.zeros((m, n)), np.zeros((m, n)), np.empty(m), np.empty(m)
    jit.ipm("pol_upd", m, n, (x, b, rhs, A, lam, r2, mdx, mx), (1.0, -1.5, 0.5, 1e6))
    ok = mdx <= nps._REFINE_TOL * (1.0 + mx)
    ref = np.abs(x).max(axis=1) <= nps._REFINE_TOL * (1.0 + np.abs(x).max(axis=1))
    np.testing.assert_array_equal(ok, ref)
    assert not ok[:2].any()
    # a NaN iterate through a whole iteration: NumPy's numbers, NaNs included
    (x, u, z, b, y0, y1, cvec, g1, g2, ia, mu, T), *_ = nps._ipm_states()[3:]
    x = x.copy()
    x[1, 5] = np.nan  # (then u, z, b, the steps: NaN in that row)
    # (one iteration: the next would factor a NaN band)
    assert nps._iterations_equal([(x, u, z, b, y0, y1, cvec, g1, g2, ia, mu, T)], 1) == [True]


def test_a_failed_compile_or_check_keeps_its_reason_and_is_not_retried(monkeypatch, caplog):
    """The interior point's passes not made: the reason kept (and logged);
    the one-off check raising: False once, its reason kept, not run (nor
    raised) again on the next iteration."""
    import logging

    from napari_catune import _jit_band

    if _jit_band.load() is None:
        pytest.skip("no LLVM here")
    k = _jit_band.Kernels(_jit_band._compile())

    def boom():
        raise RuntimeError("no code generator today")

    monkeypatch.setattr(_jit_band, "_compile_ipm", boom)
    with caplog.at_level(logging.DEBUG, logger=_jit_band.__name__):
        assert not k.ipm_ready(60.0)
    assert "no code generator today" in k._ipm_error
    assert any("no code generator today" in r.getMessage() for r in caplog.records)
    calls = []

    def broken(*a):
        calls.append(a)
        raise ValueError("the check broke")

    monkeypatch.setattr(nps, "_FUSED_OK", [])
    monkeypatch.setattr(nps, "_FUSED_WHY", [])
    monkeypatch.setattr(nps, "_solve_group", broken)
    assert nps._fused_checked() is False
    assert nps._fused_checked() is False
    assert len(calls) == 1 and "the check broke" in nps._FUSED_WHY[0]


def _watched_check(monkeypatch):
    """A freshly made Kernels as the module's, the one-off check not yet
    run, and the list of the names of the threads that run it."""
    import threading

    from napari_catune import _jit_band

    if _jit_band.load() is None:
        pytest.skip("no LLVM here")
    k = _jit_band.Kernels(_jit_band._compile())
    monkeypatch.setattr(_jit_band, "_STATE", {"k": k})
    monkeypatch.setattr(nps, "_FUSED_OK", [])
    monkeypatch.setattr(nps, "_FUSED_WHY", [])
    seen = []
    real = nps._fused_compare
    monkeypatch.setattr(nps, "_fused_compare",
                        lambda: seen.append(threading.current_thread().name) or real())
    return k, seen


def test_the_one_off_check_runs_on_the_thread_that_makes_the_passes(monkeypatch):
    """A drift solve that has the passes made (a fresh Kernels) has them
    checked on that thread (then=), not on the one waiting for an answer;
    while a check runs elsewhere, the answer goes on with NumPy's passes
    (no wait), and a failing check there leaves False and its reason."""
    import threading

    from napari_catune import _jit_band

    k, seen = _watched_check(monkeypatch)
    fs, tr, td, lam = 30.0, 0.05, 0.5, 0.05
    y = simulation.regime_traces("GCaMP6f-30Hz", 1, 3000, seed=3)
    m = solver._model_checked(fs, tr, td, lam)
    nps.solve_rows(y, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, drift_mu(None, fs, td),
                   solver.KKT_TOL)
    assert k.ipm_ready(120.0)  # (done is set after the check: it has run)
    assert seen == ["catune-llvm"] and nps._FUSED_OK == [True]
    # another thread checking: NumPy's passes now, no wait
    monkeypatch.setattr(nps, "_FUSED_OK", [])
    with nps._FUSED_LOCK:
        assert nps._fused_ok(2, False) is False
    assert nps._FUSED_OK == [] and seen == ["catune-llvm"]
    k2 = _jit_band.Kernels(_jit_band._compile())
    monkeypatch.setattr(nps, "_fused_compare", lambda: False)
    k2.start_ipm(then=nps._fused_checked)
    assert k2.ipm_ready(120.0)
    assert nps._FUSED_OK == [False] and "differ" in nps._FUSED_WHY[0]



def test_the_loops_addresses_are_their_arrays_data_while_they_live():
    """The data addresses handed to the compiled loops (kept per live array)
    are each array's own, also for a new array that takes a dead one's id,
    and are let go with the array."""
    import gc

    from napari_catune import _jit_band

    a = np.ones(7)
    assert _jit_band._addr(a) == a.ctypes.data == _jit_band._addr(a)
    assert _jit_band._addr(a[2:]) == a[2:].ctypes.data
    key = id(a)
    assert key in _jit_band._ADDR
    del a
    gc.collect()
    assert key not in _jit_band._ADDR
    # ids are reused: each array gets its own address.  The arrays' memory
    # (bytearrays of alternating sizes) kept alive, so a new array on a dead
    # one's id has other data: an address kept past its array would differ
    keep, seen, moved = [], {}, 0
    for i in range(50):
        buf = bytearray(8 * (5 + 3 * (i % 4)))
        keep.append(buf)
        b = np.frombuffer(buf)
        moved += id(b) in seen and seen[id(b)] != b.ctypes.data
        seen[id(b)] = b.ctypes.data
        assert _jit_band._addr(b) == b.ctypes.data
        del b
    assert moved  # (the loop can tell a stale address: an id came back on other data)



def test_the_loops_self_tests_need_no_numpy_random():
    """Loading the loops (their self-tests) and the drift band's check import
    no numpy.random (~10 ms of a first answer): their inputs are spread
    deterministically."""
    code = ("import sys\nfrom napari_catune import _jit_band, _numpy_solver as nps\n"
            "k = _jit_band.load()\nassert k is not None, _jit_band._STATE\n"
            "assert nps._drift_band_checked(k)\nprint('numpy.random' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(_SRC)), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_no_passes_with_llvmlite_here_fails_rather_than_skips(monkeypatch):
    """The fused tests' helper fails (not skips) when llvmlite is importable
    and the passes are not made: a skip there would hide them."""
    jit = _fused_passes()
    monkeypatch.setattr(type(jit), "ipm_ready", lambda self, timeout=0.0: False)
    outcome = "returned"
    try:
        _fused_passes()
    except pytest.skip.Exception:
        outcome = "skipped"
    except pytest.fail.Exception:
        outcome = "failed"
    assert outcome == "failed"


def test_the_passes_and_the_band_check_their_arguments():
    """Kernels.ipm and drift_band(out=): ValueError (not an assert, gone
    under -O; nor a write past an array's end) on a wrong name, count,
    dtype, order or size."""
    jit = _fused_passes()
    m, n = 2, 6
    T = n + 1
    big = np.zeros(1000)  # (a too-short view's overrun, were it not checked, lands here)
    x, b, A = np.zeros((m, n)), np.zeros((m, T)), np.ones((m, n))
    lam, r2, mdx, mx = np.zeros((m, n)), np.zeros((m, n)), np.empty(m), np.empty(m)
    sol = np.zeros(m * (2 * n + 1) + 4)
    good = (x, b, sol, A, lam, r2, mdx, mx)
    sc = (1.0, -1.5, 0.5, 1e6)
    jit.ipm("pol_upd", m, n, good, sc)
    bad = [
        ("pol_upd", good[:-1], sc),
        ("pol_upd", good, sc[:-1]),
        ("no_such_pass", good, sc),
        ("pol_upd", (x, b, big[:m * (2 * n + 1) - 1]) + good[3:], sc),
        ("pol_upd", (x, big[:m * T - 1]) + good[2:], sc),
        ("pol_upd", (x.astype(np.float32),) + good[1:], sc),
        ("pol_upd", (np.zeros((m, n), order="F"),) + good[1:], sc),
        ("pol_upd", ([0.0] * (m * n),) + good[1:], sc),
    ]
    for name, arrays, scalars in bad:
        with pytest.raises(ValueError):
            jit.ipm(name, m, n, arrays, scalars)
    assert not big.any()
    W = np.ones((m, n))
    band = jit.drift_band(W, 2.0, 1.4, -0.45, 30.0)
    assert jit.drift_band(W, 2.0, 1.4, -0.45, 30.0, out=band) is band
    for out in (np.zeros((5, band.shape[1] - 1), order="F"), np.zeros(band.shape),
                np.zeros(band.shape, order="F", dtype=np.float32)):
        with pytest.raises(ValueError):
            jit.drift_band(W, 2.0, 1.4, -0.45, 30.0, out=out)


def test_the_half_max_times_name_their_root_finder_honestly():
    """The half-maximum times are found by _bisect (bisection), not under
    the name of SciPy's brentq."""
    from napari_catune import kernel

    names = kernel._half_max_times.__code__.co_varnames + kernel._half_max_times.__code__.co_names
    assert "brentq" not in names and "_bisect" in names



# -- the one-off check of the drift passes: where it runs, what it touches --


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_fork_while_the_check_runs_leaves_the_child_working():
    """A process forked while the passes' one-off check runs on their
    thread (held there: at an import of numpy.random, were there one, else
    at its end) gets answers, and its own check, in the child: the check
    imports nothing a fork could copy the import lock of (before: the
    child's check waited forever for numpy.random's import lock)."""
    code = r"""
import os, sys, threading, time
import numpy as np
from napari_catune import _numpy_solver as nps, _jit_band, solver
from napari_catune.baseline import drift_mu
k = _jit_band.load()
assert k is not None, _jit_band._STATE
assert "numpy.random" not in sys.modules
inside, forked = threading.Event(), threading.Event()
def hold():
    if threading.current_thread().name == "catune-llvm":
        inside.set()
        forked.wait(60)
class Hold:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy.random":
            hold()
        return None
sys.meta_path.insert(0, Hold())
real = nps._fused_compare
def compare():
    ok = real()
    hold()
    return ok
nps._fused_compare = compare
m_ = solver._model_checked(30.0, 0.05, 0.5, 0.05)
mu = drift_mu(None, 30.0, 0.5)
y = np.sin(np.arange(3000) / 7.0)[None, :] + 1.0
solve = lambda: nps.solve_rows(y, m_.g1, m_.g2, m_.alpha, m_.lamG, m_.G, 2, mu,
                               solver.KKT_TOL)
solve()
assert inside.wait(120)
pid = os.fork()
if pid == 0:
    code = 2
    try:
        solve()
        code = 0 if nps._FUSED_OK == [True] else 1
    finally:
        os._exit(code)
forked.set()
status, end = None, time.monotonic() + 60
while time.monotonic() < end:
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        status = os.waitstatus_to_exitcode(st)
        break
    time.sleep(0.05)
else:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
assert k.ipm_ready(120)
print(status, nps._FUSED_OK, "numpy.random" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(_SRC)), timeout=400)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["0", "[True]", "False"]


def _polish_case(m=2, T=80):
    rng = np.random.default_rng(3)
    g1, g2, alpha = 1.45, -0.48, 0.9
    ia = 1 / alpha
    ys = rng.standard_normal((m, T))
    active = rng.random((m, T - 1)) < 0.7
    cvec = 0.05 * nps._dt(np.ones((1, T - 1)), g1, g2, ia)
    return ys, active, g1, g2, ia, cvec


def test_the_check_run_inside_a_polish_leaves_its_factor_alone(monkeypatch):
    """The one-off check run by a polish's question (on the same thread,
    its problem of the same size) does not overwrite that polish's factor:
    the answer is the one it gives with the check done (before: rows not
    settled, x off by ~1e44)."""
    _fused_passes()
    ys, active, g1, g2, ia, cvec = _polish_case()
    monkeypatch.setattr(nps, "_FUSED_OK", [])
    monkeypatch.setattr(nps, "_FUSED_WHY", [])
    x1, b1, ok1 = nps._polish_spd(ys, active, 2, 30.0, g1, g2, ia, cvec)
    assert nps._FUSED_OK == [True]
    x2, b2, ok2 = nps._polish_spd(ys, active, 2, 30.0, g1, g2, ia, cvec)
    assert ok1.all() and ok2.all()
    assert _same_bits(x1, x2) and _same_bits(b1, b2)


def test_the_polish_asks_for_the_passes_before_it_takes_its_band(monkeypatch):
    """The polish asks whether the passes run (which may run the check on
    this thread) before it takes this thread's band."""
    _fused_passes()
    ys, active, g1, g2, ia, cvec = _polish_case()
    log = []
    real_ok, real_scratch = nps._fused_ok, nps._scratch
    monkeypatch.setattr(nps, "_fused_ok", lambda *a: log.append("ask") or real_ok(*a))
    monkeypatch.setattr(nps, "_scratch", lambda key, *a, **k: log.append(key)
                        or real_scratch(key, *a, **k))
    nps._polish_spd(ys, active, 2, 30.0, g1, g2, ia, cvec)
    assert "band" in log and log.index("ask") < log.index("band")


def test_the_check_works_on_arrays_of_its_own(monkeypatch):
    """The one-off check leaves the calling thread's work arrays as they
    were (the same arrays, their contents untouched): it may run in the
    middle of a solve on that thread."""
    _fused_passes()
    m, T = 2, 80  # (the check's own problem's size)
    band = nps._scratch("band", (5, m * (2 * T - 1) + 4), fortran=True)
    band[:] = 7.0
    monkeypatch.setattr(nps, "_FUSED_OK", [])
    monkeypatch.setattr(nps, "_FUSED_WHY", [])
    assert nps._fused_checked() is True
    assert nps._scratch("band", band.shape, fortran=True) is band
    assert (band == 7.0).all()


def test_the_check_leaves_the_solves_cached_entries(monkeypatch):
    """The one-off check computes its smoother coefficients and constants
    afresh: a solve's cached entries stay (before: its small problems
    evicted them)."""
    _fused_passes()
    for f in (nps._smoother_gains, nps._smoother_subs, nps._const):
        f.cache_clear()
    nps._smoother_gains(7.0, 50)
    nps._smoother_subs(7.0, 50)
    nps._const(50, 0.25)
    monkeypatch.setattr(nps, "_FUSED_OK", [])
    monkeypatch.setattr(nps, "_FUSED_WHY", [])
    assert nps._fused_checked() is True
    misses = [f.cache_info().misses for f in (nps._smoother_gains, nps._smoother_subs,
                                              nps._const)]
    nps._smoother_gains(7.0, 50)
    nps._smoother_subs(7.0, 50)
    nps._const(50, 0.25)
    assert [f.cache_info().misses for f in (nps._smoother_gains, nps._smoother_subs,
                                            nps._const)] == misses


def test_no_check_on_the_answering_thread_while_the_passes_thread_is_to_run_it(monkeypatch):
    """Between the passes being made and their thread taking the check,
    a solve's question is answered False (NumPy's passes), the check not
    run there; it runs on the passes' thread, then the passes are used."""
    import threading

    k, seen = _watched_check(monkeypatch)
    published, go = threading.Event(), threading.Event()

    def then():  # (the passes published, the check not yet begun)
        published.set()
        go.wait(60.0)
        nps._check_fused_passes()

    k.start_ipm(then=then)
    try:
        assert published.wait(120.0) and k.ipm_ready()
        assert nps._fused_ok(2, False) is False
        assert seen == [] and nps._FUSED_OK == []
    finally:
        go.set()
    assert k.ipm_ready(120.0)
    assert seen == ["catune-llvm"] and nps._FUSED_OK == [True]
    assert nps._fused_ok(2, False) is True


def test_a_fork_past_the_compile_wait_leaves_the_check_to_the_child(monkeypatch):
    """Forked while a compile went on past the fork's wait: passes made
    in the parent, whose check was under way there, are checked in the
    child when asked (their 'done' set there), not left unchecked for good."""
    import threading
    import weakref

    from napari_catune import _jit_band

    k = object.__new__(_jit_band.Kernels)
    k._ipm, k._ipm_error, k._ipm_started = object(), None, True
    k._ipm_done = threading.Event()  # (the parent's check under way)
    kernels = weakref.WeakSet([k])
    monkeypatch.setattr(_jit_band, "_ALL_KERNELS", kernels)
    monkeypatch.setattr(_jit_band, "_FORK", {"held": False})
    monkeypatch.setattr(_jit_band, "_STATE", {"k": k})
    monkeypatch.setattr(_jit_band, "_LOCK", _jit_band._LOCK)
    monkeypatch.setattr(_jit_band, "_COMPILE_LOCK", _jit_band._COMPILE_LOCK)
    _jit_band._after_fork_child()
    assert k._ipm_done.is_set()


def test_release_caches_empties_every_threads_work_arrays():
    """release_caches, called on one thread, lets go of the work arrays of
    the others too (a worker's ~8 MB otherwise kept for good); a thread
    in the middle of a solve keeps the arrays it holds."""
    import threading

    got, started, go = [], threading.Event(), threading.Event()

    def worker():
        a = nps._scratch("t_release", (4,))
        a[:] = 1.0
        got.append(a)
        started.set()
        go.wait(60.0)
        got.append(nps._scratch("t_release", (4,)))

    th = threading.Thread(target=worker)
    th.start()
    try:
        assert started.wait(60.0)
        nps.release_caches()
    finally:
        go.set()
        th.join(60.0)
    assert len(got) == 2
    assert got[1] is not got[0] and (got[0] == 1.0).all()


def test_the_augmented_polish_takes_no_band(monkeypatch):
    """The augmented drift polish (a heavy drift weight) builds its own
    system: it does not take this thread's width-4 band."""
    _fused_passes()
    ys, active, g1, g2, ia, cvec = _polish_case(2, 30)
    keys = []
    real = nps._scratch
    monkeypatch.setattr(nps, "_scratch", lambda key, *a, **k: keys.append(key)
                        or real(key, *a, **k))
    mu = 10 * nps._AUG_MU
    assert nps._augmented(2, mu)
    nps._polish_spd(ys, active, 2, mu, g1, g2, ia, cvec)
    assert "band" not in keys
    nps._polish_spd(ys, active, 2, 30.0, g1, g2, ia, cvec)
    assert "band" in keys


def test_the_check_releases_the_lock_it_took(monkeypatch):
    """The check releases the lock it acquired, even with the module's
    lock replaced meanwhile (as a fork's child replaces it)."""
    import threading

    held = threading.Lock()
    monkeypatch.setattr(nps, "_FUSED_LOCK", held)
    monkeypatch.setattr(nps, "_FUSED_OK", [])
    monkeypatch.setattr(nps, "_FUSED_WHY", [])

    def compare():
        nps._fresh_fused_lock()
        return True

    monkeypatch.setattr(nps, "_fused_compare", compare)
    assert nps._fused_checked() is True
    assert not held.locked() and not nps._FUSED_LOCK.locked()


def _drift_band_blocks(rng, blocks, nb, kd=4):
    """A random SPD band of ``blocks`` uncoupled blocks of nb columns each
    (LAPACK lower storage, Fortran order, kd columns of zero padding)."""
    n = blocks * nb
    ab = np.zeros((kd + 1, n + kd), order="F")
    ab[0, :n] = 3.0 + kd + rng.uniform(0.0, 1.0, n)
    ab[1:, :n] = rng.uniform(-0.6, 0.6, (kd, n))
    for r in range(blocks):
        for q in range(1, kd + 1):
            ab[q, max((r + 1) * nb - q, 0):(r + 1) * nb] = 0.0
    return ab


@pytest.mark.parametrize("blocks", [2, 3, 4, 5])
def test_the_two_row_band_loops_are_the_single_ones_bit_for_bit(blocks):
    """The drift band's factor and solve two blocks (rows) at a time give
    the single loops' numbers bit for bit, an odd block after them, and a
    failing pivot in the second block is reported there."""
    from napari_catune import _jit_band

    k = _jit_band.load()
    assert k is not None and k.ipm_ready(120.0)
    assert 4 in k._pairs  # (made with the passes and through their self-test)
    rng = np.random.default_rng(blocks)
    nb = 301
    n = blocks * nb
    ab = _drift_band_blocks(rng, blocks, nb)
    rhs = np.zeros(n + 4)
    rhs[:n] = rng.standard_normal(n)
    one, two = ab.copy(order="F"), ab.copy(order="F")
    x1, x2 = rhs.copy(), rhs.copy()
    assert k.factor(one, n) == 0 and k.factor(two, n, blocks) == 0
    k.solve(one, n, x1)
    k.solve(two, n, x2, blocks)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(x1, x2)
    bad = ab.copy(order="F")
    bad[0, nb + 7] = -1.0
    assert k.factor(bad, n, blocks) == nb + 8


@pytest.mark.parametrize("fail", [(0,), (1,), (0, 1), (1, 0)])
def test_a_failing_block_leaves_its_partners_factor_alone(fail):
    """The two-block factor with a failing pivot in one block (or both): each
    block is left as its single factor leaves it, bit for bit (the partner
    of a failing block factored to its end), and the column reported is
    the first failing one of the stack, as the single loop over it reports
    ((1, 0): the second block fails first in the loop, the first later)."""
    from napari_catune import _jit_band

    k = _jit_band.load()
    assert k.ipm_ready(120.0) and 4 in k._pairs
    rng = np.random.default_rng(len(fail) * 10 + fail[0])
    nb = 200
    ab = _drift_band_blocks(rng, 2, nb)
    cols = {0: 150, 1: 60} if fail == (1, 0) else {0: 60, 1: 150}
    for r in fail:
        ab[0, r * nb + cols[r]] = -1.0
    two = ab.copy(order="F")
    info = k.factor(two, 2 * nb, 2)
    assert info == k.factor(ab.copy(order="F"), 2 * nb)  # (the single loop's report)
    assert info == min(r * nb + cols[r] + 1 for r in fail)
    for r in range(2):
        one = np.zeros((5, nb + 4), order="F")
        one[:, :nb] = ab[:, r * nb:(r + 1) * nb]
        got = k.factor(one, nb)
        assert got == (cols[r] + 1 if r in fail else 0)
        np.testing.assert_array_equal(two[:, r * nb:(r + 1) * nb], one[:, :nb])


def _capped_state():
    """A drift interior-point state of two rows: row 0's band fails (W 1e19
    at one sample), row 1's holds with a W past the cap (1e13)."""
    rng = np.random.default_rng(5)
    T, m = 40, 2
    n = T - 1
    x = rng.uniform(0.0, 1.0, (m, n))
    u, z = rng.uniform(1e-3, 1.0, (m, n)), rng.uniform(1e-3, 1.0, (m, n))
    u[0, 2], z[0, 2] = 1e-14, 1e5
    u[1, 5], z[1, 5] = 1e-10, 1e3
    b, ys = rng.standard_normal((m, T)), rng.standard_normal((m, T))
    cvec = rng.uniform(0.0, 0.1, (m, 1)) * np.ones((m, n))
    return x, u, z, b, ys[:, 0].copy(), ys[:, 1:].copy(), cvec, 1.45, -0.48, 1.3, 50.0, T


def test_a_failing_row_does_not_cap_its_partner():
    """Where one row's Newton band fails its factor, only that row's W is
    capped: its partner's interior-point step (NumPy's and the compiled
    passes') is the one it takes alone, bit for bit (the whole group was
    capped before: a row's step depended on the rows it was grouped
    with, and so on the threads)."""
    from napari_catune import _jit_band

    assert _jit_band.load() is not None
    x, u, z, b, y0, y1, cvec, g1, g2, ia, mu, T = _capped_state()
    ia2 = ia * ia
    for r, fails in ((0, True), (1, False)):  # (the state is what it says)
        W = np.minimum(z[r:r + 1] / u[r:r + 1], 1e250)
        assert W.max() > nps._W_MAX / ia2
        if fails:
            with pytest.raises(np.linalg.LinAlgError):
                nps._Newton(W, g1, g2, ia2, 2, mu, T)
        else:
            nps._Newton(W, g1, g2, ia2, 2, mu, T)

    def step(s):
        a = [np.ascontiguousarray(v[s]) for v in (x, u, z, b, y0, y1, cvec)]
        with np.errstate(all="ignore"):
            ref = nps._numpy_step(*[v.copy() for v in a[:4]], None, *a[4:], g1, g2, ia, ia2,
                                  2, mu, T, False)
            got = [v.copy() for v in a[:4]]
            got += nps._IpmDrift(len(a[0]), T - 1).step(*got, *a[4:], g1, g2, ia, ia2, mu, T)
        return ref[:4] + ref[5:], got

    pair = step(slice(0, 2))
    for r in range(2):
        alone = step(slice(r, r + 1))
        for p, q in zip(pair, alone):  # NumPy's, then the compiled passes'
            for v, w in zip(p, q):
                np.testing.assert_array_equal(v[r], w[0])
    for v, w in zip(*pair):
        np.testing.assert_array_equal(v, w)


def test_a_broken_two_row_loop_is_not_used():
    """The two-block loops' self-test fails on a factor that leaves its
    second block alone (the single loops are then used), and tests them
    without putting them where a solve would take them."""
    from napari_catune import _jit_band

    k = _jit_band.load()
    assert k.ipm_ready(120.0)
    fac, sol = k._pairs[4]

    def half_factor(n, pa, pb):  # the first block only
        return k._k[4][0](n, pa)

    seen = k._pairs
    assert _jit_band._self_test_pairs(k, {4: (fac, sol)})
    assert not _jit_band._self_test_pairs(k, {4: (half_factor, sol)})
    # (the loops under test are never set on the kernels, where another
    # thread's solve could take them before the test has judged them)
    assert k._pairs is seen and k._pairs[4] == (fac, sol)


def test_drift_rows_are_solved_two_at_a_time_with_the_same_numbers(monkeypatch):
    """Long drift rows go two to a group (one thread: 2 + 2; two threads:
    one pair each), whose band factor and solves run both rows at once;
    the answers are those of the single loops, bit for bit."""
    from napari_catune import _jit_band

    k = _jit_band.load()
    assert k.ipm_ready(120.0)
    fs, tr, td, lam = 30.0, 0.05, 0.5, 0.05
    T = 40_000  # (beyond _GROUP_SAMPLES / 2: one row a group before)
    y = simulation.regime_traces("GCaMP6f-30Hz", 4, T, seed=4)
    m = solver._model_checked(fs, tr, td, lam)
    mu = drift_mu(None, fs, td)
    sizes, calls = [], {"factor": 0, "solve": 0}
    real = nps._solve_group

    def record(yy, *a, **kw):
        sizes.append(len(yy))
        return real(yy, *a, **kw)

    fac, sol = k._pairs[4]

    def count_fac(*a):
        calls["factor"] += 1
        return fac(*a)

    def count_sol(*a):
        calls["solve"] += 1
        return sol(*a)

    monkeypatch.setattr(nps, "_solve_group", record)
    monkeypatch.setitem(k._pairs, 4, (count_fac, count_sol))
    paired = nps.solve_rows(y, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, solver.KKT_TOL)
    assert sizes == [2, 2] and calls["factor"] > 0 and calls["solve"] > 0
    assert paired[4].all()
    monkeypatch.setattr(k, "_pairs", {})
    single = nps.solve_rows(y, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, solver.KKT_TOL)
    for p, q in zip(paired, single):
        np.testing.assert_array_equal(p, q)
    sizes.clear()
    nps.solve_rows(y[:3], m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, solver.KKT_TOL, threads=2)
    assert sorted(sizes) == [1, 2]


def test_the_polish_stops_refining_at_the_rounding_floor(monkeypatch):
    """The exact solve on an active set stops its iterative refinement once
    the next step, at (100 times) the rate of the last, is within the
    tolerance: 3 banded solves a polish where it took 4 (the fourth step
    at the rounding floor), the same optimum to the last digits."""
    from napari_catune import _jit_band

    k = _jit_band.load()
    assert k.ipm_ready(120.0)
    fs, tr, td, lam = 30.0, 0.05, 0.5, 0.05
    y = simulation.regime_traces("GCaMP6f-30Hz", 2, 6000, seed=5)
    m = solver._model_checked(fs, tr, td, lam)
    m2 = solver._model_checked(fs, tr, td * 1.05, lam)
    mu = drift_mu(None, fs, td)
    cold = nps.solve_rows(y, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, solver.KKT_TOL)
    steps = []
    real = nps._polish_spd_drift

    def count(nt, *a, **kw):
        before = calls[0]
        out = real(nt, *a, **kw)
        steps.append(calls[0] - before)
        return out

    calls = [0]
    real_solve = _jit_band.Kernels.solve

    def counted_solve(self, *a, **kw):
        calls[0] += 1
        return real_solve(self, *a, **kw)

    monkeypatch.setattr(nps, "_polish_spd_drift", count)
    monkeypatch.setattr(_jit_band.Kernels, "solve", counted_solve)
    # (every polish to the rounding floor: the loose one first is
    # test_the_loose_polish_saves_a_solve_at_the_same_optimum's)
    monkeypatch.setattr(nps, "_LOOSE", False)
    out = {}
    ours = nps._REFINE_RATIO
    for ratio in (ours, 0.0):  # (0: the tolerance alone, as before)
        monkeypatch.setattr(nps, "_REFINE_RATIO", ratio)
        steps.clear()
        r = nps.solve_rows(y, m2.g1, m2.g2, m2.alpha, m2.lamG, m2.G, 2, mu, solver.KKT_TOL,
                           init=cold[0])
        assert r[4].all()
        out[ratio] = (r, list(steps))
    new, old = out[ours], out[0.0]
    assert new[1] and max(new[1]) <= 3 and min(old[1]) >= 4
    f_new = nps.objective_rows(y, new[0][0], m2.g1, m2.g2, m2.alpha, m2.lamG, 2, mu)
    f_old = nps.objective_rows(y, old[0][0], m2.g1, m2.g2, m2.alpha, m2.lamG, 2, mu)
    np.testing.assert_allclose(f_new, f_old, rtol=1e-13, atol=0.0)


@pytest.mark.parametrize("move", [1.05, 0.8])
def test_the_loose_polish_saves_a_solve_at_the_same_optimum(move, monkeypatch):
    """The active-set corrections polish each guess to the loose tolerance
    first (2 banded solves, not 3), and the KKT test passes those as tight;
    where the set holds but the test does not, it is polished again to the
    rounding floor.  Cold and warm (tau_decay +5 %, -20 %), the same
    optimum as with every polish to the floor: the same iteration counts,
    the objective to 1e-13, the KKT test."""
    from napari_catune import _jit_band

    k = _jit_band.load()
    assert k.ipm_ready(120.0)
    fs, tr, td, lam = 30.0, 0.05, 0.5, 0.05
    y = simulation.regime_traces("GCaMP6f-30Hz", 3, 6000, seed=5)
    m = solver._model_checked(fs, tr, td, lam)
    m2 = solver._model_checked(fs, tr, td * move, lam)
    mu, mu2 = drift_mu(None, fs, td), drift_mu(None, fs, td * move)
    calls = [0]
    real_solve = _jit_band.Kernels.solve

    def counted_solve(self, *a, **kw):
        calls[0] += 1
        return real_solve(self, *a, **kw)

    real = nps._polish_spd_drift
    steps = []

    def count(nt, *a, **kw):
        before = calls[0]
        out = real(nt, *a, **kw)
        steps.append(calls[0] - before)
        return out

    monkeypatch.setattr(_jit_band.Kernels, "solve", counted_solve)
    monkeypatch.setattr(nps, "_polish_spd_drift", count)
    out = {}
    for loose in (False, True):
        monkeypatch.setattr(nps, "_LOOSE", loose)
        steps.clear()
        cold = nps.solve_rows(y, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, solver.KKT_TOL)
        warm = nps.solve_rows(y, m2.g1, m2.g2, m2.alpha, m2.lamG, m2.G, 2, mu2,
                              solver.KKT_TOL, init=cold[0])
        out[loose] = (cold, warm, list(steps))
    assert min(out[False][2]) >= 3 and sum(out[True][2]) < sum(out[False][2])
    assert out[True][2].count(2) > out[True][2].count(3)
    for i, (mm, mu_) in enumerate(((m, mu), (m2, mu2))):
        new, old = out[True][i], out[False][i]
        assert new[4].all() and old[4].all()
        np.testing.assert_array_equal(new[3], old[3])
        f_new = nps.objective_rows(y, new[0], mm.g1, mm.g2, mm.alpha, mm.lamG, 2, mu_)
        f_old = nps.objective_rows(y, old[0], mm.g1, mm.g2, mm.alpha, mm.lamG, 2, mu_)
        np.testing.assert_allclose(f_new, f_old, rtol=1e-13, atol=0.0)
        tds = td * (move if i else 1.0)
        assert np.all(solver.kkt_violation(y, new[0], new[1], fs, tr, tds, lam, mode="drift")
                      <= solver.KKT_TOL)


@pytest.mark.parametrize("m", [1, 2, 3, 5])
def test_the_two_row_kkt_passes_are_the_single_ones_bit_for_bit(m):
    """The KKT test's passes two rows at a time (an odd row after them by
    the pass itself) give the pass's numbers on every row bit for bit,
    NaN and inf carried where the pass carries them."""
    from napari_catune import _jit_band

    k = _jit_band.load()
    assert k is not None and k.ipm_ready(120.0) and k.passes_x2_ready(120.0)
    assert set(_jit_band.PAIRED_PASSES) <= set(k._passes_x2)  # (through their self-test)
    rng = np.random.default_rng(m)
    n = 257
    per = {"n": n, "T": n + 1, "N": 2 * n + 1, "1": 1}
    for name in _jit_band.PAIRED_PASSES:
        na, nd = _jit_band._IPM_SIGS[name]
        arrays = [rng.uniform(-1.0, 2.0, n if kind == "s" else m * per[kind])
                  for kind in _jit_band._IPM_SIZES[name]]
        arrays[0][3] = np.nan
        arrays[0][-5] = -np.inf
        scalars = tuple(rng.uniform(0.1, 0.9, nd))
        one = [a.copy() for a in arrays]
        two = [a.copy() for a in arrays]
        k._run_pass(name, m, n, [a.ctypes.data for a in one], scalars, None)
        k.ipm(name, m, n, two, scalars)
        for a, b in zip(one, two):
            np.testing.assert_array_equal(a, b)


def test_the_interior_points_workspace_is_kept_per_thread(monkeypatch):
    """A thread keeps its drift interior-point workspace from one row group
    (and solve) to the next (fresh memory costs page faults), with the same
    numbers; release_caches lets it go."""
    from napari_catune import _jit_band

    assert _jit_band.load().ipm_ready(120.0)
    fs, tr, td, lam = 30.0, 0.05, 0.5, 0.05
    y = simulation.regime_traces("GCaMP6f-30Hz", 4, 40_000, seed=6)
    m = solver._model_checked(fs, tr, td, lam)
    mu = drift_mu(None, fs, td)
    made = []
    real = nps._IpmDrift.__init__

    def count(self, rows, n):
        made.append((rows, n))
        real(self, rows, n)

    nps.release_caches()
    monkeypatch.setattr(nps._IpmDrift, "__init__", count)
    first = nps.solve_rows(y, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, solver.KKT_TOL)
    assert made and len(made) == len(set(made)) <= 2  # (2 rows, and 1 once a row is done)
    made.clear()
    again = nps.solve_rows(y, m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, solver.KKT_TOL)
    assert made == []
    for p, q in zip(first, again):
        np.testing.assert_array_equal(p, q)
    nps.release_caches()
    nps.solve_rows(y[:2], m.g1, m.g2, m.alpha, m.lamG, m.G, 2, mu, solver.KKT_TOL)
    assert made


def test_a_thread_keeps_at_most_two_interior_point_workspaces():
    """Row groups shed rows as they settle and solves change length: each
    (rows, frames) would keep its own workspace (up to ~50 MB) until
    release_caches; a thread keeps only the last _IPM_KEPT (a reviewer's
    case: four solves kept 14 workspaces, ~91 MB)."""
    from napari_catune import _jit_band

    assert _jit_band.load().ipm_ready(120.0)
    rng = np.random.default_rng(4)
    g1, g2, alpha, lamG, G, mu = 1.45, -0.48, 0.9, 0.08, 2.0, 30.0
    nps.release_caches()
    most = 0
    for T in (1000, 1200, 1500, 2000):
        m = 65536 // T
        s = (rng.random((m, T)) < 0.05) * rng.exponential(1.0, (m, T))
        y = (nps.conv_rows(s, g1, g2, alpha)
             + rng.uniform(0.05, 1.0, (m, 1)) * rng.standard_normal((m, T)) + 1.0)
        nps.solve_rows(y, g1, g2, alpha, lamG, G, 2, mu, 1e-9)
        with nps._BUFS_LOCK:
            stores = list(nps._ALL_BUFS)
        kept = [sum(1 for k in b if isinstance(k, tuple) and k and k[0] == "ipm")
                for b in stores]
        most = max([most, *kept])
    assert 1 <= most <= nps._IPM_KEPT
    nps.release_caches()


def test_the_background_start_has_the_interior_points_passes_made_after_the_loops(monkeypatch):
    """``start_background_compile`` (the tuner's) has the NumPy solver's
    drift passes made on a thread right after its LLVM loops when no fit is
    under way, so a first fit that starts later runs on them from its first
    iteration; the CLI's (``passes=False``) and a running fit leave them to
    the solve, as before."""
    from napari_catune import _jit_band
    from napari_catune import _numpy_solver as npsol

    class Fake:
        def __init__(self):
            self.started = []

        def start_ipm(self, then=None):
            self.started.append(then)

    fake = Fake()
    monkeypatch.setattr(_jit_band, "load", lambda: fake)
    solver._load_band_loops(True)
    assert fake.started == [npsol._check_fused_passes]
    fake.started.clear()
    solver._load_band_loops(False)
    assert fake.started == []
    monkeypatch.setattr(npsol, "_FUSED", False)
    solver._load_band_loops(True)
    assert fake.started == []
    monkeypatch.setattr(_jit_band, "load", lambda: None)  # no LLVM: nothing to make
    solver._load_band_loops(True)
    # not while a fit runs on the NumPy solver (it has them made when it needs them)
    monkeypatch.setattr(npsol, "_FUSED", True)
    monkeypatch.setattr(_jit_band, "load", lambda: fake)
    inside = []

    def fit(*a, **k):
        solver._load_band_loops(True)
        inside.append(list(fake.started))
        raise RuntimeError("stop")

    monkeypatch.setattr(solver, "_solve_rows_numpy", fit)
    with pytest.raises(RuntimeError):
        solver._solve_rows_fallback(None, None, mode=2, mu=1.0, tol=1e-6, max_iters=1,
                                    init=None, out=None)
    assert inside == [[]] and solver._fallback_running == [0]
    solver._load_band_loops(True)
    assert fake.started == [npsol._check_fused_passes]


def test_the_cli_starts_the_background_compile_without_the_passes(monkeypatch):
    from napari_catune import cli

    seen = []
    monkeypatch.setattr(solver, "start_background_compile",
                        lambda *a, **k: seen.append(k) or "cached")
    cli._start_solver()
    assert seen == [{"passes": False}]
