"""The 1 kHz warm path's fused passes give the numbers of the passes they
replace (direct_gradient, the drift's exact KKT check), the power tables
found in a workspace are exactly those power_tables forms, and the drift
smoother without a division chain solves the same system."""

import numpy as np
import pytest

from napari_catune import _numba_local as nl
from napari_catune import _numba_solvers as ns
from napari_catune.solver import _model_checked as _model


def _kernel(fs=1000.0, tr=0.2, td=3.0):
    m = _model(fs, tr, td, 0.05)
    return m.g1, m.g2, m.alpha, m.lamG, m.G


@pytest.mark.parametrize("clip", [False, True])
def test_direct_gradient_is_the_five_pass_form(clip):
    rng = np.random.default_rng(3)
    T = 5000
    n = T - 1
    g1, g2, alpha, lamG, _G = _kernel()
    y = rng.standard_normal(T) + 0.01 * np.arange(T)
    b = rng.standard_normal(T)
    active = rng.random(n) > 0.05
    u0 = rng.standard_normal(n)
    u, nu, work, work2 = u0.copy(), np.empty(n), np.empty(T), np.empty(T)
    g_max, f_fit = nl.direct_gradient(y, b, g1, g2, alpha, lamG, active, u, nu, work, work2, clip)
    # the reference: forward_conv, the residual, adjoint_conv, the gradient
    s = np.where(active, 0.0, u0)
    if clip:
        s = np.maximum(s, 0.0)
    s_full = np.append(s, 0.0)
    ks = np.empty(T)
    nl.forward_conv(s_full, g1, g2, alpha, ks)
    r = np.empty(T)
    f_ref = 0.0
    for t in range(T):
        r[t] = y[t] - ks[t] - b[t]
        f_ref += 0.5 * r[t] * r[t]
    kr = np.empty(T)
    nl.adjoint_conv(r, g1, g2, alpha, kr)
    g = lamG - kr[:n]
    assert np.array_equal(u, s)
    assert np.array_equal(nu, g / alpha)
    assert np.array_equal(work2, r) and np.array_equal(work, kr)
    assert g_max == np.abs(g).max() and f_fit == f_ref


def test_drift_kkt_exact_is_the_unfused_form():
    rng = np.random.default_rng(4)
    T = 6000
    g1, g2, alpha, lamG, G = _kernel()
    mu = (60.0 * 1000.0) ** 2
    y = rng.standard_normal(T)
    s = np.maximum(rng.standard_normal(T) - 2.0, 0.0)
    s[-1] = 0.0
    b = np.cumsum(rng.standard_normal(T)) * 1e-3
    w = np.empty((3, T))
    v_s, v_b = ns.kkt_one(y, s, b, g1, g2, alpha, lamG, G, 2, mu, w[0], w[1], w[2], False)
    ks = np.empty(T)
    nl.forward_conv(s, g1, g2, alpha, ks)
    resid = y - ks
    bb, gain = np.empty(T), np.empty(T)
    ns.smooth_baseline(resid, mu, gain, bb)
    kr = np.empty(T)
    nl.adjoint_conv(resid - b, g1, g2, alpha, kr)
    g = lamG - kr
    viol = np.where(s > 0.0, np.abs(g), -g)
    assert v_b == np.abs(bb - b).max()
    assert v_s == max(0.0, viol.max()) / G
    assert np.array_equal(w[0], resid - b)


@pytest.mark.parametrize("mu", [1e-60, 1e-3, 1.0, 100.0, 9e4, 3.6e9, 1e12])
def test_smooth_baseline_solves_the_drift_system(mu):
    rng = np.random.default_rng(5)
    T = 400
    r = np.cumsum(rng.standard_normal(T)) + 3.0
    out, gain = np.empty(T), np.empty(T)
    ns.smooth_baseline(r, mu, gain, out)
    ref, gain2 = np.empty(T), np.empty(T)
    ns._smooth_baseline_div(r, mu, gain2, ref)
    assert np.abs(out - ref).max() <= 1e-12 * np.abs(ref).max()
    # (I + mu L) b = r, L the path graph's Laplacian: its residual, relative
    # to mu's scale of b's rounding
    Lb = np.zeros(T)
    Lb[1:] += out[1:] - out[:-1]
    Lb[:-1] -= out[1:] - out[:-1]
    res = out + mu * Lb - r
    assert np.abs(res).max() <= 1e-9 * (1.0 + mu) * np.abs(r).max()


def test_smooth_baseline_long_trace_rescales():
    # (the pair N, D grows by ~exp(T / sqrt(mu)): rescaled, never overflows)
    T = 200_000
    r = np.sin(np.arange(T) * 1e-3)
    out, gain = np.empty(T), np.empty(T)
    ns.smooth_baseline(r, 1.0, gain, out)
    ref, gain2 = np.empty(T), np.empty(T)
    ns._smooth_baseline_div(r, 1.0, gain2, ref)
    assert np.isfinite(out).all()
    assert np.abs(out - ref).max() <= 1e-12


def test_tables_hold_only_for_the_exact_tables():
    d, r = ns._ar_roots(*_kernel()[:2])
    n = 3000
    dp, rp = np.empty(n + 2), np.empty(n + 2)
    nl.power_tables(d, r, n, dp, rp)
    assert nl.tables_hold(d, r, n, dp, rp)
    assert not nl.tables_hold(d * (1 - 1e-16), r, n, dp, rp)
    assert not nl.tables_hold(d, r, n + 1, np.append(dp, 0.0), np.append(rp, 0.0))
    for k in (1, 1500, n + 1):
        bad = dp.copy()
        bad[k] = np.nextafter(bad[k], 0.0)
        assert not nl.tables_hold(d, r, n, bad, rp)
        bad = rp.copy()
        bad[k] = np.nextafter(bad[k], 1.0)
        assert not nl.tables_hold(d, r, n, dp, bad)
    assert not nl.tables_hold(d, r, n, np.zeros(n + 2), np.zeros(n + 2))


def test_verified_answer_notes_its_gradient_for_the_polish():
    # a warm 1 kHz re-solve that settles by the dense path and passes
    # dense_verify as it stands (a set it changed is not noted): the note
    # (_verified_mark) and nu are the gradient that
    # _coarse_polish would form at the answer
    import napari_catune as nc
    from napari_catune.simulation import regime_traces

    fs, tr, td, lam = 1000.0, 0.2, 3.0, 0.05
    y = regime_traces("slow-1kHz", 1, 20_000, 1)[0] - 2.0
    T = y.size
    n = T - 1
    base = nc.run_deconvolution_full(y, fs, tr, td, lam)
    m = _model(fs, tr, td * 1.02, lam)
    nf, nb = ns.workspace_sizes(T)
    fws, bws = np.zeros(nf), np.zeros(nb, bool)
    pws, bvec = fws[T:], np.zeros(T)
    active = base.activity[:n] <= 0.0
    s = np.zeros(T)
    it, ok = ns.pdas_one(y, m.g1, m.g2, m.alpha, m.lamG, 1, 0.0, active, 100, s, bvec, pws, bws,
                         1e-11, True, True)
    _g, _gb, _x, u, nu, s_ipm, work, work2, _rest = ns._coarse_views(pws, n, T, 1)
    assert ok and s_ipm[0] == 1.0
    act = ~(s[:n] > 0.0)
    u2, nu2 = s[:n].copy(), np.empty(n)
    g_max, f_fit = nl.direct_gradient(y, bvec, m.g1, m.g2, m.alpha, m.lamG, act, u2, nu2,
                                      np.empty(T), np.empty(T), False)
    assert np.array_equal(nu, nu2) and s_ipm[1] == g_max and s_ipm[2] == f_fit
    # a start that goes to the cold interior point (bail) leaves no note
    active = base.activity[:n] <= 0.0
    m2 = _model(fs, tr, td * 0.5, lam)
    it, ok = ns.pdas_one(y, m2.g1, m2.g2, m2.alpha, m2.lamG, 1, 0.0, active, 100, s, bvec, pws,
                         bws, 1e-11, True, True)
    assert not ok and s_ipm[0] == 0.0


def _settle_roots(g1, g2):
    """The AR roots d > r as dense_settle forms them (its power tables')."""
    d = 0.5 * (g1 + np.sqrt(g1 * g1 + 4.0 * g2))
    return d, g1 - d


def _ld_recursion(inp, g1, g2, n, back):
    """The AR(2) recursion of _ar_chains in extended precision, one chain."""
    g1, g2 = np.longdouble(g1), np.longdouble(g2)
    x = inp.astype(np.longdouble)
    out = np.zeros(n + 1, np.longdouble)
    a = b = np.longdouble(0.0)
    order = range(n - 1, -1, -1) if back else range(n)
    for k in order:
        q = (x[k + 1] if back else x[k]) + g1 * a + g2 * b
        out[k if back else k + 1] = q
        a, b = q, a
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 9, 4001, 20_003])
@pytest.mark.parametrize("back", [False, True])
def test_ar_chains_is_the_recursion(n, back):
    # four chains and their hand-overs: the one-chain recursion to ~1e-11 of
    # its largest value, every sample (lengths not a multiple of 4, quarters
    # of 0-2 samples), on the 1 kHz kernel (close roots: 3 s / 0.2 s)
    rng = np.random.default_rng(n)
    g1, g2, _alpha, _lamG, _G = _kernel()
    d, r = _settle_roots(g1, g2)
    dp, rp = np.empty(n + 2), np.empty(n + 2)
    nl.power_tables(d, r, n, dp, rp)
    inp = np.zeros(n + 1)
    idx = rng.choice(n, size=min(n, 60), replace=False)
    inp[idx + (1 if back else 0)] = rng.standard_normal(idx.size)
    out = np.full(n + 1, np.nan)
    nl._ar_chains(inp, out, g1, g2, d, r, dp, rp, back)
    ref = _ld_recursion(inp, g1, g2, n, back)
    assert np.all(np.isfinite(out))
    assert out[n if back else 0] == 0.0
    err = np.abs(out - ref.astype(float)).max()
    assert err <= 1e-10 * max(np.abs(ref).max(), 1e-300)


def test_settle_gradient_and_round_gradient_match_the_direct_gradient():
    # the dense settle's guesses (settle_gradient, _settle_grad): the
    # gradient direct_gradient and forward/adjoint_conv form, to rounding,
    # the same samples flagged; the power tables formed once and noted
    rng = np.random.default_rng(7)
    T = 30_001
    n = T - 1
    g1, g2, alpha, lamG, _G = _kernel()
    d, r = _settle_roots(g1, g2)
    y = rng.standard_normal(T) + 3.0 * np.sin(np.arange(T) / 900.0)
    b = np.full(T, 0.2)
    active = rng.random(n) > 0.01
    u0 = np.abs(rng.standard_normal(n))
    u1, nu1, w, w2 = u0.copy(), np.empty(n), np.empty(T), np.empty(T)
    g_ref, _f = nl.direct_gradient(y, b, g1, g2, alpha, lamG, active, u1, nu1, w, w2, False)
    u2, nu2 = u0.copy(), np.empty(n)
    ws = np.zeros(2 * (n + 2))
    dp, rp = ws[:n + 2], ws[n + 2:]
    tables = np.zeros(1, np.bool_)
    g_max = nl.settle_gradient(y, b, g1, g2, alpha, lamG, active, u2, nu2, w, w2, dp, rp, tables)
    assert tables[0] and nl.tables_hold(d, r, n, dp, rp)
    assert np.array_equal(u1, u2)
    assert abs(g_max - g_ref) <= 1e-10 * g_ref
    assert np.abs(nu2 - nu1).max() * alpha <= 1e-10 * g_ref
    # the round's gradient alpha nu + K'K dz off C, flagged below -tol
    dz = np.zeros(T)
    C = rng.choice(n, size=200, replace=False)
    dz[C] = rng.standard_normal(200)
    inC = np.zeros(n, np.bool_)
    inC[C] = True
    kd, ktkd = np.empty(T), np.empty(T)
    nl.forward_conv(dz, g1, g2, alpha, kd)
    nl.adjoint_conv(kd, g1, g2, alpha, ktkd)
    g_ref = np.where(inC, ktkd[:n], alpha * nu1 + ktkd[:n])
    # (a threshold midway between two of the gradients off C: ~30 % below)
    off = np.sort(g_ref[~inC])
    i = off.size * 3 // 10
    tol = -0.5 * (off[i] + off[i + 1])
    assert off[i + 1] - off[i] > 1e-9 * np.abs(g_ref).max()
    work, flip = dz.copy(), np.zeros(n, np.bool_)
    n_new = nl._settle_grad(work, w2, g1, g2, alpha, d, r, dp, rp, nu1, inC, flip, tol)
    assert np.abs(work[:n] - g_ref).max() <= 1e-10 * np.abs(g_ref).max()
    want = ~inC & (g_ref < -tol)
    assert want.sum() > 0 and n_new == want.sum() and np.array_equal(flip, want)
