"""Cold solves on slow kernels from a binned solve (issue 12): the same
optimum as the plain cold path, and step counts (never seconds) that do not
grow with the trace's length."""

import numpy as np
import pytest

from napari_catune import _numba_solvers as ns
from napari_catune import run_deconvolution_full
from napari_catune.solver import _model_checked
from napari_catune.simulation import REGIMES, regime_traces


def _impulse(g1, g2, n):
    a = np.zeros(n)
    a[0] = 1.0
    if n > 1:
        a[1] = g1
    for j in range(2, n):
        a[j] = g1 * a[j - 1] + g2 * a[j - 2]
    return a


@pytest.mark.parametrize("tr, td, fs", [(0.1, 1.5, 100.0), (0.4, 1.8, 30.0), (0.05, 0.06, 30.0)])
@pytest.mark.parametrize("k", [2, 3, 7, 32])
def test_coarse_model_is_the_kernel_sampled_every_k_frames(tr, td, fs, k):
    # h[i] = alpha a[i-1] (h[0] = 0); the coarse kernel h_c[j] = h[j k]
    # (near-equal taus: complex or nearly double roots)
    m = _model_checked(fs, tr, td, 0.05)
    g1c, g2c, alpha_c = ns._coarse_model(m.g1, m.g2, m.alpha, np.int64(k))
    J = 40
    a = _impulse(m.g1, m.g2, J * k)
    ac = _impulse(g1c, g2c, J)
    h_fine = m.alpha * a[np.arange(1, J) * k - 1]
    h_coarse = alpha_c * ac[np.arange(1, J) - 1]
    np.testing.assert_allclose(h_coarse, h_fine, rtol=1e-9, atol=1e-12 * np.abs(h_fine).max())


def test_coarse_start_applies_to_slow_kernels_with_lambda_only():
    def factor(name, lam=None, T=54_000):
        fs, tr, td, lam0, *_ = REGIMES[name]
        m = _model_checked(fs, tr, td, lam0 if lam is None else lam)
        return ns._coarse_factor(m.g1, m.g2, m.lamG, np.int64(T))

    assert factor("GCaMP6s-100Hz") >= 2
    assert factor("calab-gcamp6s-30Hz") >= 2
    assert factor("GCaMP6s-30Hz") >= 2
    assert factor("GCaMP6f-30Hz") == 0       # fast: the cold exchange settles
    assert factor("jGCaMP8f-100Hz") == 0
    assert factor("GCaMP6s-100Hz", lam=0.0) == 0
    # decay > _EARLY_DECAY samples: with lambda, rising within
    # _COARSE_PEAK_EARLY samples (0.2/3.0 s at 1 kHz: 580)
    assert factor("slow-1kHz") >= 2
    assert factor("slow-1kHz", T=1_000_000) == 0   # beyond _COARSE_EARLY_T
    assert factor("slow-1kHz", lam=0.0) == 0
    m = _model_checked(1000.0, 0.5, 3.0, 0.05)   # peak ~960 samples
    assert ns._coarse_factor(m.g1, m.g2, m.lamG, np.int64(54_000)) == 0
    # a short trace bins less (at least _COARSE_MIN_T coarse frames)
    assert 2 <= factor("GCaMP6s-100Hz", T=300) <= 300 // ns._COARSE_MIN_T


def _plain_cold(y, m, mode, mu):
    """pdas_one from its cold start, without the binned solve."""
    T = y.size
    nf, nb = ns.workspace_sizes(T)
    fws = np.zeros(nf)
    bws = np.zeros(nb, bool)
    s = np.zeros(T)
    bvec = np.zeros(T)
    active = np.ones(T - 1, bool)
    it, ok = ns.pdas_one(y, m.g1, m.g2, m.alpha, m.lamG, np.int64(mode), mu, active,
                         np.int64(500), s, bvec, fws[T:], bws, 1e-11, False)
    return s, it, ok


@pytest.mark.parametrize("name", ["GCaMP6s-100Hz", "calab-gcamp6s-30Hz", "GCaMP6s-30Hz",
                                  "slow-1kHz"])
@pytest.mark.parametrize("mode, mu", [(1, 0.0), (2, 1e3), (0, 0.0)])
def test_coarse_start_reaches_the_plain_cold_optimum(name, mode, mu):
    fs, tr, td, lam, *_ = REGIMES[name]
    m = _model_checked(fs, tr, td, lam)
    N, T = 2, 20_000
    y = regime_traces(name, N, T, seed=3)
    if mode == 0:
        y = y - 2.0
    assert ns._coarse_factor(m.g1, m.g2, m.lamG, np.int64(T)) >= 2
    nf, nb = ns.workspace_sizes(T)
    s = np.zeros((N, T))
    b = np.zeros((N, T if mode == 2 else 1))
    fit = np.zeros((N, T))
    it = np.zeros(N, np.int64)
    conv = np.zeros(N, bool)
    ns.pdas_rows(y, y, False, m.g1, m.g2, m.alpha, m.lamG, m.G, np.int64(mode), mu, 1e-7,
                 np.int64(500), s, b, fit, it, conv, np.zeros(nf), np.zeros(nb, bool))
    assert conv.all()
    f_new = np.zeros(N)
    ns.objective_rows(y, s, m.g1, m.g2, m.alpha, m.lamG, np.int64(mode), mu, f_new)
    s_old = np.array([_plain_cold(row, m, mode, mu)[0] for row in y])
    f_old = np.zeros(N)
    ns.objective_rows(y, s_old, m.g1, m.g2, m.alpha, m.lamG, np.int64(mode), mu, f_old)
    np.testing.assert_allclose(f_new, f_old, rtol=1e-9)


def test_coarse_start_with_a_tiny_budget_reports_not_converged():
    fs, tr, td, lam, *_ = REGIMES["GCaMP6s-100Hz"]
    y = regime_traces("GCaMP6s-100Hz", 2, 20_000, seed=4)
    res = run_deconvolution_full(y, fs, tr, td, lam, max_iters=6)
    assert (res.iterations <= 6).all()
    assert not res.converged.any()


@pytest.mark.parametrize("name", ["GCaMP6s-100Hz", "calab-gcamp6s-30Hz"])
def test_cold_steps_on_slow_kernels_do_not_grow_with_the_length(name):
    # steps counted, not seconds: the binned solve's and the warm settle's
    # (before: the interior point's iterations and crossover exchanges grew,
    # GCaMP6s 100 Hz 12 -> 18 steps from 10,000 to 1,000,000 frames)
    fs, tr, td, lam, *_ = REGIMES[name]
    steps = {}
    for T in (20_000, 200_000):
        y = regime_traces(name, 2, T, seed=6)
        res = run_deconvolution_full(y, fs, tr, td, lam)
        assert res.converged.all()
        steps[T] = int(res.iterations.max())
    # (calab preset, seed 6: 18 -> 20 steps; main before the binned start
    # 12 -> 19, and its growth went on to 23-24 at 1M-4M frames)
    assert steps[200_000] <= steps[20_000] + 4, steps
    assert steps[200_000] <= 26, steps


def _binned_against_plain(rng, count, draw):
    """``count`` random problems that take the binned start (``draw(rng)``
    gives fs, tau_rise, tau_decay, lambda, T; every baseline mode in turn):
    each converges, at an objective not above the plain cold path's."""
    import warnings

    from napari_catune.solver import reconvolve

    done = 0
    while done < count:
        fs, tr, td, lam, T = draw(rng)
        mode = done % 3
        mu = float((rng.uniform(1, 10) * fs) ** 2) if mode == 2 else 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = _model_checked(fs, tr, td, lam)
        if ns._coarse_factor(m.g1, m.g2, m.lamG, np.int64(T)) == 0:
            continue
        done += 1
        sp = (rng.random(T) < 1.0 / fs) * rng.exponential(1.0, T)
        y = reconvolve(sp[None], fs, tr, td) + 10 ** rng.uniform(-2, 0) * rng.standard_normal(T)
        y += 2.0 if mode else 0.0
        nf, nb = ns.workspace_sizes(T)
        s = np.zeros((1, T))
        b = np.zeros((1, T if mode == 2 else 1))
        it = np.zeros(1, np.int64)
        conv = np.zeros(1, bool)
        ns.pdas_rows(y, y, False, m.g1, m.g2, m.alpha, m.lamG, m.G, np.int64(mode), mu, 1e-7,
                     np.int64(500), s, b, np.zeros((1, T)), it, conv, np.zeros(nf),
                     np.zeros(nb, bool))
        assert conv[0]
        s_old = _plain_cold(y[0], m, mode, mu)[0]
        f = np.zeros(2)
        ns.objective_rows(np.vstack([y, y]), np.vstack([s, s_old[None]]), m.g1, m.g2, m.alpha,
                          m.lamG, np.int64(mode), mu, f)
        assert f[0] <= f[1] * (1 + 1e-9) + 1e-12, (fs, tr, td, lam, T, mode, f)


def test_coarse_start_on_random_problems_reaches_the_plain_cold_optimum():
    # the sweep of bench/bench_cold_start.py in small: slow kernels at
    # 30-300 Hz, up to the coarse start's bounds (decay <= _EARLY_DECAY
    # samples, peak <= _COARSE_PEAK), every baseline mode
    def draw(rng):
        fs = float(rng.choice([30.0, 100.0, 158.0, 300.0]))
        td = float(rng.uniform(0.5, 3.0))
        tr = float(rng.uniform(0.05, 0.5)) * td
        return fs, tr, td, float(10 ** rng.uniform(-2.5, 0.5)), int(rng.integers(2_000, 12_000))

    _binned_against_plain(np.random.default_rng(12), 24, draw)


def test_coarse_start_on_the_1khz_kernel_goes_on_only_where_the_dense_settle_fits():
    # the binned guess of the 1 kHz kernel is settled by the warm start's
    # dense solves: taken where its free set fits them, not beyond
    fs, tr, td, lam, *_ = REGIMES["slow-1kHz"]
    m = _model_checked(fs, tr, td, lam)
    T = 20_000
    n = T - 1
    y = regime_traces("slow-1kHz", 1, T, seed=5)[0]
    k = np.int64(32)            # _coarse_factor's
    nf, nb = ns.workspace_sizes(T)
    active = np.ones(n, bool)
    ns._coarse_start(y, m.g1, m.g2, m.alpha, m.lamG, np.int64(1), 0.0, k, active,
                     np.zeros(nf)[T:], np.zeros(nb, bool), np.int64(250))
    n_pws = nf - T
    assert 0 < (~active).sum() < 100
    assert ns._coarse_dense(m.g1, m.g2, active, n_pws)
    many = np.ones(n, bool)
    many[::20] = False                                  # 1,000 free samples
    assert not ns._coarse_dense(m.g1, m.g2, many, n_pws)
    # a kernel decaying within _EARLY_DECAY samples: the local settle, any set
    m6 = _model_checked(100.0, 0.1, 1.5, lam)
    assert ns._coarse_dense(m6.g1, m6.g2, many, n_pws)


def test_coarse_start_on_random_1khz_problems_reaches_the_plain_cold_optimum():
    # bench/bench_cold_start.py --khz in small: kernels decaying over more
    # than _EARLY_DECAY samples, every baseline mode
    def draw(rng):
        td = float(rng.uniform(0.6, 3.0))
        tr = float(rng.uniform(0.02, 0.3)) * td
        return 1000.0, tr, td, float(10 ** rng.uniform(-2.5, 0.5)), int(rng.integers(2_000, 16_000))

    _binned_against_plain(np.random.default_rng(21), 18, draw)


def _tight_reference(y, m, mode, mu, starts, rel=1e-13):
    """The optimum by an independent exact active-set solve (bench_cold_start's
    tight_reference): from each answer's free set W, the objective on W (Hessian
    K_W' M K_W, M = I minus the best-baseline operator) solved by Lawson-Hanson
    NNLS on its Cholesky factor; the gradient formed directly on every sample,
    active ones below -rel max|g| join W, until none does.  The lowest objective."""
    from scipy.linalg import cholesky, solve_triangular
    from scipy.optimize import nnls

    from napari_catune import _numpy_solver as nps

    T = y.size
    n = T - 1
    best = np.inf
    for s0 in starts:
        W = np.flatnonzero(s0[:n] > 0.0)
        sv = s0.copy()
        for r in range(40):
            w = y[None] - nps.conv_rows(sv[None], m.g1, m.g2, m.alpha)
            w = w - nps.best_baseline(w, mode, mu)
            g = m.lamG - nps._adjoint(w, m.g1, m.g2, m.alpha)[0, :-1]
            viol = np.setdiff1d(np.flatnonzero((sv[:n] <= 0.0)
                                               & (g < -rel * np.abs(g).max())), W)
            if r > 0 and not viol.size:
                break
            W = np.union1d(W, viol)
            if not W.size:
                # (no spike optimal; scipy's nnls frees twice on an empty problem)
                sv = np.zeros(T)
                break
            E = np.zeros((W.size, T))
            E[np.arange(W.size), W] = 1.0
            KW = nps.conv_rows(E, m.g1, m.g2, m.alpha)
            MK = KW - nps.best_baseline(KW, mode, mu)
            H = KW @ MK.T
            R = cholesky(0.5 * (H + H.T), lower=False)
            z, _ = nnls(R, solve_triangular(R, MK @ y - m.lamG, trans="T"),
                        maxiter=50 * W.size)
            sv = np.zeros(T)
            sv[W] = z
        f = np.zeros(1)
        ns.objective_rows(y[None], sv[None], m.g1, m.g2, m.alpha, m.lamG, np.int64(mode), mu, f)
        best = min(best, f[0])
    return best


# two of bench_cold_start.py --khz's problems (seed 2 no. 5673: mode 0, seed 3
# no. 1660: drift) where the binned start's warm settle stopped 1.8e-9 and
# 2.8e-9 above the optimum, KKT-optimal within the tolerance: a spike on a
# sample next to the optimum's, hidden by the full step's rounding
_KHZ_STATES = [
    (339383042517986291443183363888468202891, 121863417007658695389390353187995180015,
     722017272),
    (279764155213744981104237564938464800352, 222003063171874261427395693950637096479,
     3940438610),
]


def _khz_problem(state):
    """bench_cold_start.py --khz's problem drawn from this PCG64 state."""
    import warnings

    from napari_catune.solver import reconvolve

    rng = np.random.default_rng()
    rng.bit_generator.state = {"bit_generator": "PCG64",
                               "state": {"state": state[0], "inc": state[1]},
                               "has_uint32": 1, "uinteger": state[2]}
    fs = 1000.0
    td = float(rng.uniform(0.6, 3.0))
    tr = float(rng.uniform(0.02, 0.3)) * td
    T = int(10 ** rng.uniform(3.0, 4.78))
    lam = float(10 ** rng.uniform(-2.5, 1))
    noise = float(10 ** rng.uniform(-2, 0.5))
    mode = int(rng.choice([0, 1, 2]))
    mu = float((rng.uniform(0.5, 20) * fs) ** 2) if mode == 2 else 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = _model_checked(fs, tr, td, lam)
    sp = (rng.random(T) < rng.uniform(0.2, 5) / fs) * rng.exponential(1.0, T)
    y = reconvolve(sp[None], fs, tr, td)[0] + noise * rng.standard_normal(T)
    y += 2.0 if mode else 0.0
    if mode == 2:
        y += np.linspace(0.0, rng.uniform(-2, 2), T)
    return y, m, mode, mu


def _objective(y, sv, m, mode, mu):
    f = np.zeros(1)
    ns.objective_rows(y[None], sv[None], m.g1, m.g2, m.alpha, m.lamG, np.int64(mode), mu, f)
    return f[0]


@pytest.mark.parametrize("which", [0, 1])
def test_binned_start_on_the_1khz_kernel_is_exact_where_the_settle_stopped_early(which):
    y, m, mode, mu = _khz_problem(_KHZ_STATES[which])
    T = y.size
    n = T - 1
    kc = ns._coarse_factor(m.g1, m.g2, m.lamG, np.int64(T))
    assert kc >= 2
    nf, nb = ns.workspace_sizes(T)
    fws = np.zeros(nf)
    bws = np.zeros(nb, bool)
    pws = fws[T:]
    # the route without the polish: the binned guess, settled as a warm start
    active = np.ones(n, bool)
    it_c, ok = ns._coarse_start(y, m.g1, m.g2, m.alpha, m.lamG, np.int64(mode), mu,
                                np.int64(kc), active, pws, bws, np.int64(250))
    assert ok and ns._coarse_dense(m.g1, m.g2, active, pws.shape[0])
    s0 = np.zeros(T)
    bvec = np.zeros(T)
    it0, ok = ns.pdas_one(y, m.g1, m.g2, m.alpha, m.lamG, np.int64(mode), mu, active,
                          np.int64(100), s0, bvec, pws, bws, 1e-11, True)
    assert ok
    # the polish from that answer
    s1 = s0.copy()
    it1, moved = ns._coarse_polish(y, m.g1, m.g2, m.alpha, m.lamG, np.int64(mode), mu, active,
                                   s1, bvec, pws, bws, np.int64(100))
    # the whole route (pdas_rows)
    s = np.zeros((1, T))
    b = np.zeros((1, T if mode == 2 else 1))
    it = np.zeros(1, np.int64)
    conv = np.zeros(1, bool)
    ns.pdas_rows(y[None].copy(), y[None].copy(), False, m.g1, m.g2, m.alpha, m.lamG, m.G,
                 np.int64(mode), mu, 1e-7, np.int64(500), s, b, np.zeros((1, T)), it, conv,
                 np.zeros(nf), np.zeros(nb, bool))
    assert conv[0]
    f_ref = _tight_reference(y, m, mode, mu, [s0, s1, s[0]])
    gap0 = (_objective(y, s0, m, mode, mu) - f_ref) / f_ref
    gap1 = (_objective(y, s1, m, mode, mu) - f_ref) / f_ref
    gap = (_objective(y, s[0], m, mode, mu) - f_ref) / f_ref
    assert gap <= 1e-9 and gap1 <= 1e-9, (gap0, gap1, gap)
    if gap0 > 1e-9:
        # (1.8e-9 and 2.8e-9 when this was written) the polish moved the set
        assert moved >= 1
    # steps, not seconds: the polish's warm settle took one full step here
    assert it1 <= 3 * max(moved, 1)
    assert it[0] <= 40


# ------------------------------------------------ the 1 kHz kernel by blocks
def _regime(name):
    from napari_catune.simulation import EXTRA_REGIMES

    return {**REGIMES, **EXTRA_REGIMES}[name]


def test_block_route_applies_to_the_1khz_kernel_at_any_length_and_lambda():
    def factor(name, lam=None, T=54_000, tr=None):
        fs, tr0, td, lam0, *_ = _regime(name)
        m = _model_checked(fs, tr0 if tr is None else tr, td, lam0 if lam is None else lam)
        return ns._coarse_factor(m.g1, m.g2, m.lamG, np.int64(T), True)

    assert factor("slow-1kHz") >= 2
    assert factor("slow-1kHz", T=1_000_000) >= 2     # the dense route: 0 beyond 100,000
    assert factor("lam0-slow-1kHz") >= 2             # the dense route: lambda only
    assert factor("slow-1kHz", tr=0.5) >= 2          # peak ~960 samples (dense route: 0)
    assert factor("slow-1kHz", tr=1.5) == 0          # peak ~2,000 samples
    assert factor("GCaMP6s-100Hz") == 0              # decays within _EARLY_DECAY


def _cold_steps(name, T, seed):
    fs, tr, td, lam, *_ = _regime(name)
    y = regime_traces(name, 1, T, seed=seed)
    res = run_deconvolution_full(y, fs, tr, td, lam)
    assert res.converged.all()
    return int(res.iterations.max())


@pytest.mark.parametrize("name, most", [("slow-1kHz", 20), ("lam0-slow-1kHz", 26)])
def test_cold_steps_on_the_1khz_kernel_do_not_grow_with_the_length(name, most):
    # steps counted, not seconds (a binned step as one).  Seed 6, 20,000 ->
    # 200,000 frames: main before the block route 12 -> 16 (slow-1kHz) and
    # 18 -> 29 (lambda 0: the plain cold path beyond 100,000 frames, and at
    # lambda 0 always); by blocks 12 -> 14 and 14 -> 18; with the binned
    # trace solved from its own binned start wherever its cold solve would
    # go to the interior point (_numba_solvers._coarse2_slow: more, cheaper
    # binned steps) 15 -> 19 and 23 -> 25
    steps = {T: _cold_steps(name, T, 6) for T in (20_000, 200_000)}
    assert steps[200_000] <= steps[20_000] + 4, steps
    assert steps[200_000] <= most, steps


@pytest.mark.parametrize("name", ["slow-1kHz", "lam0-slow-1kHz"])
@pytest.mark.parametrize("mode", ["drift", "scalar"])
def test_warm_tau_decay_halved_on_the_1khz_kernel_restarts_from_the_binned_solve(name, mode):
    # bench_solver.py --warm's slider move tau_decay -50 % on its trace (54,000
    # frames): the warm start would go to the cold interior point (main: 20
    # steps, drift and scalar, either lambda); from the binned solve settled
    # by blocks 12-14.  The same optimum as a cold solve.
    fs, tr, td, lam, *_ = _regime(name)
    y = regime_traces(name, 1, 54_000, seed=0)
    base = run_deconvolution_full(y, fs, tr, td, lam, baseline=mode)
    warm = run_deconvolution_full(y, fs, tr, td * 0.5, lam, baseline=mode, init=base.activity)
    cold = run_deconvolution_full(y, fs, tr, td * 0.5, lam, baseline=mode)
    assert warm.converged.all() and cold.converged.all()
    assert int(warm.iterations.max()) <= 15, warm.iterations
    m = _model_checked(fs, tr, td * 0.5, lam)
    mu = 0.0
    if mode == "drift":
        from napari_catune.baseline import drift_mu

        mu = drift_mu(None, fs, td * 0.5)
    code = np.int64(2 if mode == "drift" else 1)
    f = np.zeros(2)
    ns.objective_rows(np.vstack([y, y]), np.vstack([warm.activity, cold.activity]), m.g1, m.g2,
                      m.alpha, m.lamG, code, mu, f)
    assert abs(f[0] - f[1]) <= 1e-9 * abs(f[1])


def test_block_route_on_random_1khz_problems_reaches_the_optimum():
    # bench/bench_cold_start.py --khz --lam0 0.3 (--warm) in small: cold and
    # warm after a slider move, every baseline mode, lambda 0 too; against
    # the independent reference
    import warnings

    from napari_catune.solver import reconvolve

    rng = np.random.default_rng(33)
    done = 0
    tries = 0
    while done < 8:
        # (bounded: a disabled route fails here instead of drawing forever)
        tries += 1
        assert tries <= 200, "the block route took too few of the draws"
        td = float(rng.uniform(0.6, 3.0))
        tr = float(rng.uniform(0.02, 0.3)) * td
        lam = 0.0 if rng.random() < 0.3 else float(10 ** rng.uniform(-2.5, 0.5))
        T = int(rng.integers(2_000, 12_000))
        mode = done % 3
        mu = float((rng.uniform(1, 10) * 1000.0) ** 2) if mode == 2 else 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = _model_checked(1000.0, tr, td, lam)
            m_old = _model_checked(1000.0, tr, td * float(rng.uniform(0.5, 1.5)), lam * 2.0)
        if ns._coarse_factor(m.g1, m.g2, m.lamG, np.int64(T), True) == 0:
            continue
        done += 1
        sp = (rng.random(T) < 1.0 / 1000.0) * rng.exponential(1.0, T)
        y = reconvolve(sp[None], 1000.0, tr, td) + 10 ** rng.uniform(-2, 0) * rng.standard_normal(T)
        y += 2.0 if mode else 0.0
        nf, nb = ns.workspace_sizes(T)
        answers = []
        init = np.zeros((1, T))
        for warm, mm in ((False, m_old), (False, m), (True, m)):
            s = np.zeros((1, T))
            b = np.zeros((1, T if mode == 2 else 1))
            it = np.zeros(1, np.int64)
            conv = np.zeros(1, bool)
            ns.pdas_rows(y, init, warm, mm.g1, mm.g2, mm.alpha, mm.lamG, mm.G, np.int64(mode),
                         mu, 1e-7, np.int64(500), s, b, np.zeros((1, T)), it, conv,
                         np.zeros(nf), np.zeros(nb, bool))
            if mm is m_old:
                init = s
                continue
            assert conv[0]
            answers.append(s[0])
        f_ref = _tight_reference(y[0], m, mode, mu, answers)
        for sv in answers:
            assert _objective(y[0], sv, m, mode, mu) <= f_ref + 1e-9 * abs(f_ref), (
                tr, td, lam, T, mode)


def test_warm_small_move_on_a_slow_rising_1khz_kernel_is_polished_exact():
    # bench_cold_start.py --khz --warm --lam0 0.2 --seed 32, no. 2084 (tau
    # 0.77/2.88 s, peak ~1,390 samples, lambda 0.75, no baseline, 6,019
    # frames, ~420 free samples): the warm start settled in 3 steps, KKT-
    # optimal within the tolerance, 2.4e-8 above the optimum (also on main;
    # its dense check skips free sets that large); polished, at it
    import warnings

    from napari_catune.solver import reconvolve

    rng = np.random.default_rng()
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": 209889323869994369090419611359170628403,
                  "inc": 302235580631359622804948280511983440719},
        "has_uint32": 1, "uinteger": 466044479}
    fs = 1000.0
    td = float(rng.uniform(0.6, 3.0))
    tr = float(rng.uniform(0.02, 0.3)) * td
    T = int(10 ** rng.uniform(3.0, 4.78))
    lam = float(10 ** rng.uniform(-2.5, 1))
    if rng.random() < 0.2:
        lam = 0.0
    noise = float(10 ** rng.uniform(-2, 0.5))
    mode = int(rng.choice([0, 1, 2]))
    mu = float((rng.uniform(0.5, 20) * fs) ** 2) if mode == 2 else 0.0
    f_td, f_tr, f_lam = (float(rng.uniform(0.5, 1.5)), float(rng.uniform(0.8, 1.2)),
                         float(2.0 ** rng.uniform(-1, 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = _model_checked(fs, tr, td, lam)
        m_old = _model_checked(fs, tr * f_tr, td * f_td, lam * f_lam)
    sp = (rng.random(T) < rng.uniform(0.2, 5) / fs) * rng.exponential(1.0, T)
    y = reconvolve(sp[None], fs, tr, td)[0] + noise * rng.standard_normal(T)
    y += 2.0 if mode else 0.0
    if mode == 2:
        y += np.linspace(0.0, rng.uniform(-2, 2), T)
    y = y[None].copy()
    assert mode == 0 and T == 6019
    nf, nb = ns.workspace_sizes(T)
    init = np.zeros((1, T))
    s = np.zeros((1, T))
    it = np.zeros(1, np.int64)
    conv = np.zeros(1, bool)
    for warm, mm, out in ((False, m_old, init), (True, m, s)):
        ns.pdas_rows(y, init, warm, mm.g1, mm.g2, mm.alpha, mm.lamG, mm.G, np.int64(mode), mu,
                     1e-7, np.int64(500), out, np.zeros((1, 1)), np.zeros((1, T)), it, conv,
                     np.zeros(nf), np.zeros(nb, bool))
        assert conv[0]
    s_cold = _plain_cold(y[0], m, mode, mu)[0]
    f_ref = _tight_reference(y[0], m, mode, mu, [s[0], s_cold])
    assert _objective(y[0], s[0], m, mode, mu) <= f_ref * (1 + 1e-9)


_NOISE_FREE_SCRIPT = """
import sys, warnings
import numpy as np
from napari_catune import run_deconvolution_full
from napari_catune.solver import reconvolve
warnings.simplefilter("ignore")
for T, mode, n_spikes in ((128, "none", 1), (2000, "none", 1), (6000, "scalar", 6)):
    rng = np.random.default_rng(0)
    sp = np.zeros(T)
    if n_spikes == 1:
        sp[T // 3] = 2.0
    else:
        sp[rng.choice(T, n_spikes, replace=False)] = rng.exponential(1.0, n_spikes)
    y = reconvolve(sp[None], 1000.0, 0.2, 3.0)[0] + (1.0 if mode != "none" else 0.0)
    r = run_deconvolution_full(y, 1000.0, 0.2, 3.0, 0.0, baseline=mode)
    err = float(np.max(np.abs(y - r.reconvolution)) / np.ptp(y))
    print(T, mode, bool(r.converged), err, flush=True)
"""


def test_block_route_returns_on_noise_free_1khz_traces():
    # noise-free traces at lambda 0 on the 1 kHz kernel: a near-exact fit,
    # whose block violators (1e-12 of a gradient ~1e-11) are below the
    # rounding of the blocks' linear terms; Lawson & Hanson's steps cycled
    # there without end (the solve ran in a subprocess so that a hang fails
    # on the timeout instead of stopping the suite)
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    try:
        r = subprocess.run([sys.executable, "-c", _NOISE_FREE_SCRIPT], capture_output=True,
                           text=True, timeout=900, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("run_deconvolution_full did not return on a noise-free 1 kHz trace")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")[:3]
    assert len(lines) == 3, r.stdout
    for line in lines:
        T, mode, conv, err = line.split()
        assert conv == "True", line
        # (the fit exact: the trace is the kernel's output)
        assert float(err) < 1e-6, line


@pytest.mark.parametrize("chains", [np.bool_(False), np.bool_(True)])
def test_nnqp_takes_a_zero_step_where_an_entry_and_its_optimum_are_both_zero(chains):
    # two violators added at once, the second's optimum on the pair exactly
    # 0 (c2 = a c1): Lawson & Hanson's step back to it was 0 / 0
    # (ZeroDivisionError); the limit is a zero step that drops it
    from napari_catune import _numba_local as nl

    H = np.array([[1.0, 0.5], [0.5, 1.0]])
    c = np.array([-1.0, -0.5])
    C = np.array([0, 100], np.int64)
    B = 2
    L = np.empty(B * (B + 1) // 2 + B)
    P = np.empty(B, np.int64)
    z = np.zeros(B)
    p, _work, ok = nl._nnqp(H, L, P, np.int64(0), c, z, np.int64(B), np.zeros(B, np.bool_),
                            np.empty(B), np.empty(B), C, np.int64(1), 0.0, np.int64(0),
                            np.int64(10 ** 6), np.empty(B), np.empty(B), np.empty(B + 1), chains)
    assert ok
    assert p == 1 and P[0] == 0
    assert z[0] == 1.0 and z[1] == 0.0


def test_block_sweep_takes_a_violator_dropped_by_a_full_last_block():
    # the last block of a sweep fills to _BLOCK_MAX candidates with the
    # pick of a run of violators still pending: one more block takes it
    from napari_catune import _numba_local as nl

    m = _model_checked(1000.0, 0.02, 0.3, 0.0)
    n = 1000
    T = n + 1
    assert ns._coarse_blocks_apply(m.g1, m.g2)
    e = np.zeros(T)
    e[0] = 1.0
    h = np.zeros(T)
    nl.forward_conv(e, m.g1, m.g2, m.alpha, h)
    lag = np.arange(T)[:, None] - np.arange(n)[None, :]
    K = np.where(lag >= 0, h[np.clip(lag, 0, None)], 0.0)
    B = ns._BLOCK_MAX
    s_true = np.zeros(n)
    s_true[0:B - 1] = 1.0
    s_true[n - 1] = 1.0
    s_true[n - 200] = 5.0
    y = K @ s_true
    z = s_true.copy()
    z[n - 200] = 0.0
    G = K.T @ (K @ z - y)
    tol = 1e-9 * float(np.max(np.abs(G)))
    # the sweep's only block: 63 spikes, the spike at the end, the run of
    # violators between left over
    assert np.count_nonzero(z) == B and np.all(G[B - 1:n - 1] < -tol)
    dp = np.empty(n + 2)
    rp = np.empty(n + 2)
    sums = np.empty((2, n + 1))
    ns._coarse_tables(m.g1, m.g2, n, dp, rp, sums)
    thin = max(1, int(ns._THIN_PEAK * nl.peak_samples(m.g1, m.g2)))
    ns._coarse_blocks(m.g1, m.g2, m.alpha, z, G, tol, thin, dp, rp, sums, np.zeros(n + 1),
                      np.zeros(n), ns._NO, np.int64(1), ns._NO, np.int64(ns._BLOCK_MAX),
                      float(np.max(np.abs(G))))
    assert np.any(z[B - 1:n - 1] > 0.0)
