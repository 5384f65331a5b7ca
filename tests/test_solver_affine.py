"""A cold start at lambda 0 carried affine in the baseline (issue 12,
``_numba_affine``, ``_numba_solvers._affine_lam0``): exact (the plain
path's optimum, KKT-optimal), one or two full steps on the lambda-0 regime
of the grid, and a sane iterate when its budget ends (count steps, not
seconds)."""

import numpy as np
import pytest

from napari_catune import _numba_affine as na
from napari_catune import _numba_solvers as ns
from napari_catune import run_deconvolution_full
from napari_catune.simulation import REGIMES, regime_traces
from napari_catune.solver import _model_checked, reconvolve


def _ws(T):
    n = T - 1
    return dict(gain=np.zeros((n, 3)), x=np.zeros(n), z=np.zeros(n), w=np.zeros(n),
                w1=np.zeros(n), flip=np.zeros(n, bool), idx=np.zeros(n, np.int64),
                bvec=np.zeros(T), active=np.zeros(n, bool))


def _affine(y, m, mode, max_steps=100):
    """The exact fit's flags, then _affine_lam0: (steps, converged, full
    steps, spikes, baseline, active set)."""
    T = y.size
    a = _ws(T)
    na.exact_fit_flags(y, m.g1, m.g2, m.alpha, np.int64(mode), 1e-11, ns._COLD_FREE_THR,
                       a["active"])
    st, ok, full = ns._affine_lam0(y, m.g1, m.g2, m.alpha, 0.0, np.int64(mode), a["active"],
                                   a["gain"], a["x"], a["z"], a["w"], a["w1"], a["flip"],
                                   a["idx"], a["bvec"], 1e-11, np.int64(max_steps), ns._NO, 0.0,
                                   0.0, ns._ZERO, a["w"][0:0], ns._YES)
    return st, ok, full, a["w"].copy(), a["bvec"][0], a["active"].copy()


def _plain(y, m, mode, active):
    """pdas_one from ``active`` (not every sample free: the plain path, no
    exact fit and no affine steps)."""
    T = y.size
    nf, nb = ns.workspace_sizes(T)
    s = np.zeros(T)
    bvec = np.zeros(T)
    act = active.copy()
    it, ok = ns.pdas_one(y, m.g1, m.g2, m.alpha, m.lamG, np.int64(mode), 0.0, act,
                         np.int64(500), s, bvec, np.zeros(nf)[T:], np.zeros(nb, bool), 1e-11,
                         False)
    return it, ok, s, bvec[0]


def _objective(y, s, m, mode):
    f = np.zeros(1)
    ns.objective_rows(y[None], s[None], m.g1, m.g2, m.alpha, m.lamG, np.int64(mode), 0.0, f)
    return f[0]


@pytest.mark.parametrize("T, rows", [(10_000, 3), (54_000, 2)])
def test_lam0_30hz_settles_after_one_or_two_full_steps(T, rows):
    # the plain path took 4 full steps after the exact fit (each in effect
    # one Newton step on the baseline); here 1 (54,000 frames) or 2 (10,000:
    # the first leaves more than n / 8 violators), then roots of the
    # baseline between local settles
    fs, tr, td, lam, *_ = REGIMES["lam0-30Hz"]
    m = _model_checked(fs, tr, td, lam)
    for y in regime_traces("lam0-30Hz", rows, T):
        st, ok, full, w, b, act = _affine(y, m, 1)
        assert ok
        assert full <= (1 if T > 50_000 else 2)
        assert st <= 5
        assert np.all(w[act] == 0.0) and np.all(w[~act] >= -1e-9 * np.abs(w).max())


def test_lam0_long_trace_takes_a_second_full_step_then_settles():
    # the baseline sinks as T grows: on 200,000 frames the first full step
    # leaves between n / 16 and n / 8 violators (1.3 % on 54,000, 8 % on
    # 1,000,000), too many for settles at ~135 ns a violator against a full
    # step's ~10 ns a sample: a second full step (_AFFINE_FRAC), then the
    # settles; the plain path's optimum, its free set exactly
    assert ns._AFFINE_FRAC > ns._AFFINE_BAIL
    fs, tr, td, lam, *_ = REGIMES["lam0-30Hz"]
    m = _model_checked(fs, tr, td, lam)
    y = regime_traces("lam0-30Hz", 1, 200_000)[0]
    st, ok, full, w, b, act = _affine(y, m, 1)
    assert ok and full == 2 and st <= 6
    start = np.zeros(y.size - 1, bool)
    na.exact_fit_flags(y, m.g1, m.g2, m.alpha, np.int64(1), 1e-11, ns._COLD_FREE_THR, start)
    it_p, ok_p, s_p, b_p = _plain(y, m, 1, start)
    assert ok_p
    s = np.maximum(np.append(w, 0.0), 0.0)
    assert np.array_equal(act, ~(s_p[:-1] > 0.0))
    f_p = _objective(y, s_p, m, 1)
    assert abs(_objective(y, s, m, 1) - f_p) <= 1e-12 * abs(f_p)


@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("fs, tr, td, noise, T, off", [
    (30.0, 0.05, 0.5, 0.3, 5_000, 2.0),      # lam0-30Hz
    (100.0, 0.01, 0.15, 0.3, 4_000, 2.0),    # jGCaMP8f at 100 Hz
    (15.0, 0.1, 1.0, 1.0, 3_000, -5.0),      # a low frame rate, the trace below 0
    (30.0, 0.05, 0.5, 0.02, 3_000, 1e4),     # low noise on a large offset
])
def test_affine_path_meets_the_plain_optimum(fs, tr, td, noise, T, off, mode):
    rng = np.random.default_rng(int(fs) + T + mode)
    spikes = rng.poisson(1.0 / fs, T) * rng.exponential(1.0, T)
    y = reconvolve(spikes[None], fs, tr, td)[0] + off + noise * rng.standard_normal(T)
    m = _model_checked(fs, tr, td, 0.0)
    st, ok, full, w, b, act = _affine(y, m, mode)
    # the plain path from the same guess (the exact fit's flags)
    start = np.zeros(T - 1, bool)
    na.exact_fit_flags(y, m.g1, m.g2, m.alpha, np.int64(mode), 1e-11, ns._COLD_FREE_THR, start)
    it_p, ok_p, s_p, b_p = _plain(y, m, mode, start)
    assert ok_p
    f_p = _objective(y, s_p, m, mode)
    if mode == 0 and off < 0.0:
        # no baseline under a trace below 0: most samples active, the
        # exchange's segments too long to settle locally; the plain path
        # goes on from the affine steps' set (below)
        assert not ok and full >= 2
    else:
        assert ok and st <= 6 and full <= 3
        s = np.maximum(np.append(w, 0.0), 0.0)
        f = _objective(y, s, m, mode)
        assert abs(f - f_p) <= 1e-12 * abs(f_p) + 1e-12 * np.abs(y).max() ** 2
        assert np.array_equal(act, ~(s_p[:-1] > 0.0)) or np.abs(s - s_p).max() < 1e-8
    # the answer pdas_rows reports (through the affine path) is checked
    # KKT-optimal and meets the plain path's objective
    r = run_deconvolution_full(y[None], fs, tr, td, 0.0,
                               baseline=("none", "scalar")[mode])
    assert r.converged.all()
    assert abs(_objective(y, r.activity[0], m, mode) - f_p) <= 1e-12 * abs(f_p) + 1e-9


def test_exact_fit_flags_are_the_exact_fit_steps():
    # the flags alone (vectorised) against _all_free_step's
    fs, tr, td, *_ = REGIMES["lam0-30Hz"]
    m = _model_checked(fs, tr, td, 0.0)
    for T, seed in [(4, 0), (500, 1), (10_000, 2)]:
        y = regime_traces("lam0-30Hz", 1, T, seed)[0]
        n = T - 1
        for mode in (0, 1):
            flip = np.zeros(n, bool)
            ns._all_free_step(y, m.g1, m.g2, m.alpha, np.int64(mode), np.zeros(n), np.zeros(T),
                              np.zeros(n), np.zeros(n), flip, 1e-11)
            act = np.zeros(n, bool)
            k = na.exact_fit_flags(y, m.g1, m.g2, m.alpha, np.int64(mode), 1e-11,
                                   ns._COLD_FREE_THR, act)
            assert k == act.sum()
            assert np.array_equal(act, flip)


def test_a_budget_that_ends_in_the_affine_steps_leaves_an_answer():
    # 2 steps: the full step and one root of the baseline, not settled;
    # the iterate left is finite, 0 on the active set, its baseline finite
    fs, tr, td, *_ = REGIMES["lam0-30Hz"]
    m = _model_checked(fs, tr, td, 0.0)
    y = regime_traces("lam0-30Hz", 1, 20_000, 3)[0]
    st, ok, full, w, b, act = _affine(y, m, 1, max_steps=2)
    assert not ok and st == 2
    assert np.all(np.isfinite(w)) and np.isfinite(b) and np.all(w[act] == 0.0)
    # and through pdas_rows: a small budget reports not converged, finite
    r = run_deconvolution_full(y[None], fs, tr, td, 0.0, max_iters=3)
    assert not r.converged.any()
    assert np.all(np.isfinite(r.activity)) and np.all(r.activity >= 0.0)


def _first_flags(y, m, a):
    """_lam0_first_flags into a["active"] (scalar baseline): (flagged, the
    prefixes' steps)."""
    return ns._lam0_first_flags(y, m.g1, m.g2, m.alpha, np.int64(1), 1e-11, a["active"],
                                a["gain"], a["x"], a["z"], a["w"], a["w1"], a["flip"],
                                a["idx"], a["bvec"], np.zeros(y.size - 1), np.int64(100))


def test_lam0_long_trace_first_set_by_count_takes_one_full_step():
    # 250,000 frames (>= _PREFIX_T): the fraction at s = 0 read from two
    # prefixes' optima (~6 % here, the exact fit's flags ~14 %); the first
    # full step then leaves few violators (no second one, which the exact
    # fit's flags need) and the settles end on the same optimum, its free
    # set exactly
    T = 250_000
    assert T >= ns._PREFIX_T
    fs, tr, td, lam, *_ = REGIMES["lam0-30Hz"]
    m = _model_checked(fs, tr, td, lam)
    y = regime_traces("lam0-30Hz", 1, T)[0]
    a = _ws(T)
    flagged, pre = _first_flags(y, m, a)
    assert pre > 0 and 0 < flagged < 0.1 * (T - 1)
    st, ok, full = ns._affine_lam0(y, m.g1, m.g2, m.alpha, 0.0, np.int64(1), a["active"],
                                   a["gain"], a["x"], a["z"], a["w"], a["w1"], a["flip"],
                                   a["idx"], a["bvec"], 1e-11, np.int64(100), ns._NO, 0.0, 0.0,
                                   ns._ZERO, a["w"][0:0], ns._YES)
    assert ok and full == 1 and st <= 5
    st_e, ok_e, full_e, w_e, b_e, act_e = _affine(y, m, 1)
    assert ok_e and full_e == 2
    assert np.array_equal(a["active"], act_e)
    s = np.maximum(np.append(a["w"], 0.0), 0.0)
    s_e = np.maximum(np.append(w_e, 0.0), 0.0)
    f_e = _objective(y, s_e, m, 1)
    assert abs(_objective(y, s, m, 1) - f_e) <= 1e-12 * abs(f_e)
    assert abs(a["bvec"][0] - b_e) <= 1e-9 * abs(b_e)


def test_count_fit_flags_threshold_the_exact_fit_spikes():
    # the flags are the exact fit's spikes d = M (y[1:] - y[0]) below one
    # threshold (every flagged d below every other), about frac of them
    fs, tr, td, lam, *_ = REGIMES["lam0-30Hz"]
    m = _model_checked(fs, tr, td, lam)
    y = regime_traces("lam0-30Hz", 1, 20_000)[0]
    n = y.size - 1
    d = np.empty(n)
    b = y[0]
    d[0] = y[1] - b
    d[1] = (y[2] - m.g1 * (y[1] - b)) - b
    d[2:] = (y[3:] - m.g1 * y[2:-1] - m.g2 * y[1:-2]) - (1.0 - m.g1 - m.g2) * b
    for frac in (0.02, 0.1, 0.3):
        act = np.zeros(n, bool)
        k = na.count_fit_flags(y, m.g1, m.g2, np.int64(1), frac, np.int64(16), np.zeros(n), act)
        assert k == act.sum() and abs(k / n - frac) < 0.2 * frac
        assert d[act].max() < d[~act].min()


@pytest.mark.parametrize("regime, T", [("lam0-30Hz", 54_000), ("GCaMP6s-30Hz", 250_000)])
def test_first_flags_are_the_exact_fits_below_prefix_t_or_on_slow_kernels(regime, T):
    # below _PREFIX_T frames, or on a kernel decaying over more than
    # _PREFIX_DECAY samples (GCaMP6s at 30 Hz, 45), the exact fit's flags
    fs, tr, td, *_ = REGIMES[regime]
    m = _model_checked(fs, tr, td, 0.0)
    y = regime_traces(regime, 1, T)[0]
    a = _ws(T)
    flagged, pre = _first_flags(y, m, a)
    start = np.zeros(T - 1, bool)
    k = na.exact_fit_flags(y, m.g1, m.g2, m.alpha, np.int64(1), 1e-11, ns._COLD_FREE_THR, start)
    assert pre == 0 and flagged == k and np.array_equal(a["active"], start)


@pytest.mark.parametrize("regime", ["dense-30Hz", "lowSNR-30Hz", "GCaMP6f-30Hz",
                                    "jGCaMP8f-100Hz", "lam1-30Hz"])
@pytest.mark.parametrize("mode", [0, 1])
def test_late_affine_at_positive_lambda(regime, mode):
    """_affine_lam0 at lambda > 0 from a block exchange's set with its gains
    formed (pdas_one's late path, _AFFINE_LATE): where it converges, the
    answer it writes to s_out is KKT-optimal and the plain path's optimum
    (pdas_one warm from every sample active: no affine steps); where it
    does not, s_out is left alone."""
    fs, tr, td, lam, _noise, _rate = REGIMES[regime]
    m = _model_checked(fs, tr, td, lam)
    beta = m.lamG / m.alpha
    n_conv = 0
    for seed, T in ((0, 3000), (1, 20_000)):
        y = regime_traces(regime, 1, T, seed)[0]
        if mode == 0:
            y = y - 2.0
        n = T - 1
        a = _ws(T)
        act = np.ones(n, bool)
        u = np.zeros(n)
        nu = np.zeros(n)
        # plain block exchanges until at most n / _AFFINE_LATE violate
        for _step in range(30):
            a22, q2, p0 = ns._riccati_flat(y, m.g1, m.g2, beta, act, a["gain"])
            u_max = ns._subspace_fwd_flat(y, m.g1, m.g2, m.alpha, np.int64(mode), act,
                                          a["gain"], a["x"], a["bvec"], u, a22, q2, p0)
            nb, lb, nu_max, noise, near, _f, _a, _fb = ns._nu_pass(y, m.g1, m.g2, beta, act, a["x"],
                                                                   a["bvec"], u, nu,
                                                                   a["flip"], 1e-11 * u_max,
                                                                   ns._ONE_B)
            nb, lb, _e, _k = ns._kkt_flags(act, nu, a["flip"], nb, lb, nu_max, noise, near,
                                           1e-11)
            act ^= a["flip"]
            if nb * ns._AFFINE_LATE <= n:
                break
        assert ns._free_pairs(act) == int(np.sum(~act[:-1] & ~act[1:]))
        a22, q2, p0 = ns._riccati_flat(y, m.g1, m.g2, beta, act, a["gain"])
        s_out = np.full(T, np.nan)
        st, ok, full = ns._affine_lam0(y, m.g1, m.g2, m.alpha, beta, np.int64(mode), act,
                                       a["gain"], a["x"], a["z"], a["w"], a["w1"], a["flip"],
                                       a["idx"], a["bvec"], 1e-11, np.int64(100), True, a22, q2,
                                       p0, s_out, ns._YES)
        if not ok:
            assert np.isnan(s_out).all()
            continue
        n_conv += 1
        assert full == 1
        s_out[-1] = 0.0
        assert (s_out >= 0.0).all()
        b = a["bvec"][0]
        assert (a["bvec"] == b).all()
        assert ns.kkt_holds(y, s_out, a["bvec"], m.g1, m.g2, m.alpha, m.lamG, m.G,
                            np.int64(mode), 0.0, 1e-7)
        nf, nbs = ns.workspace_sizes(T)
        s_ref = np.zeros(T)
        b_ref = np.zeros(T)
        it, ok_ref = ns.pdas_one(y, m.g1, m.g2, m.alpha, m.lamG, np.int64(mode), 0.0,
                                 np.ones(n, bool), np.int64(500), s_ref, b_ref,
                                 np.zeros(nf)[T:], np.zeros(nbs, bool), 1e-11, True)
        assert ok_ref
        f, f_ref = _objective(y, s_out, m, mode), _objective(y, s_ref, m, mode)
        assert abs(f - f_ref) <= 1e-12 * abs(f_ref)
        assert np.array_equal(s_out > 0.0, s_ref > 0.0)
    if regime == "dense-30Hz":
        assert n_conv == 2
