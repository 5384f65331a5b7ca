"""The cold start from a binned solve (``_numba_solvers._coarse_start``)
against the plain cold path, on random problems where it applies.

    PYTHONPATH=src .venv/bin/python bench/bench_cold_start.py --seconds 120

Random fs (7.5-300 Hz), tau_decay 0.3-3 s, tau_rise up to 0.5 tau_decay
(``--khz``: fs 1 kHz, tau_decay 0.6-3 s, tau_rise 0.02-0.3 tau_decay, T to
60,000), lambda 0.003-10, noise sd 0.01-3, T 160-50,000, baseline modes 0/1/2 (drift
mu = (0.5-20 fs)^2 with a linear drift added).  Per problem where
``_coarse_factor`` > 0: ``pdas_rows`` (cold: binned solve, then the warm
settle) and ``pdas_one`` from its cold start without it; both objectives at
their own answers.  Prints the count, how many ``pdas_rows`` did not
converge, the largest relative objective gap (ours - plain) / plain, steps
and process CPU time of each (the first problem, which compiles, left out).
With ``--ref R`` both answers of every problem where they differ by more
than R (relative), or not at all (bit for bit: both can be off alike),
and of every ``--ref-every``-th problem, are measured against the
optimum found by an independent exact solve (:func:`tight_reference`:
NNLS on the free set, the gradient formed directly); ``--only I`` solves
problem I of the seed's sequence alone (``--dump`` saves it).

    PYTHONPATH=src .venv/bin/python bench/bench_cold_start.py --khz --count 6000 \
        --seed 2 --ref 1e-10 --verbose

Not a peer comparison: OASIS and calab are in bench_regimes.py.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from napari_catune import _numba_solvers as ns
from napari_catune.solver import _model_checked, reconvolve


def plain_cold(y, m, mode, mu):
    T = y.size
    nf, nb = ns.workspace_sizes(T)
    s = np.zeros(T)
    active = np.ones(T - 1, bool)
    it, ok = ns.pdas_one(y, m.g1, m.g2, m.alpha, m.lamG, np.int64(mode), mu, active,
                          np.int64(500), s, np.zeros(T), np.zeros(nf)[T:], np.zeros(nb, bool),
                          1e-11, False)
    return s, it, ok


def tight_reference(y, m, mode, mu, starts, rel=1e-13, rounds=40):
    """The optimum by an independent exact active-set solve (NumPy/SciPy, not
    the solver's recursions): from each answer in ``starts`` its free set W;
    the objective restricted to W, a quadratic with Hessian K_W' M K_W (M =
    I minus the best-baseline operator; the columns of K formed by the
    NumPy solver's recursions), solved exactly by Lawson-Hanson NNLS on its
    Cholesky factor; then the gradient lamG - K' M (y - K s) formed directly
    on every sample, and the active ones below -``rel`` max|g| join W, until
    none does.  Returns (lowest objective, the largest such violation left
    (relative), the size of W)."""
    from scipy.linalg import cholesky, solve_triangular
    from scipy.optimize import nnls

    from napari_catune import _numpy_solver as nps

    T = y.size
    n = T - 1

    def grad(sv):
        w = y[None] - nps.conv_rows(sv[None], m.g1, m.g2, m.alpha)
        w = w - nps.best_baseline(w, mode, mu)
        return m.lamG - nps._adjoint(w, m.g1, m.g2, m.alpha)[0, :-1]

    def objective(sv):
        f = np.zeros(1)
        ns.objective_rows(y[None], sv[None], m.g1, m.g2, m.alpha, m.lamG, np.int64(mode), mu, f)
        return f[0]

    best = np.inf
    worst_left = 0.0
    size = 0
    for s0 in starts:
        W = np.flatnonzero(s0[:n] > 0.0)
        sv = s0.copy()
        left = 0.0
        for _ in range(rounds):
            g = grad(sv)
            g_max = np.abs(g).max()
            viol = np.flatnonzero((sv[:n] <= 0.0) & (g < -rel * g_max))
            viol = np.setdiff1d(viol, W)
            left = (-g[viol].min() / g_max) if viol.size else 0.0
            if not viol.size and W.size:
                # W's own problem solved (NNLS) and no violator off it
                if _ > 0:
                    break
            W = np.union1d(W, viol)
            if not W.size:
                break
            E = np.zeros((W.size, T))
            E[np.arange(W.size), W] = 1.0
            KW = nps.conv_rows(E, m.g1, m.g2, m.alpha)
            MK = KW - nps.best_baseline(KW, mode, mu)
            H = KW @ MK.T
            H = 0.5 * (H + H.T)
            c = MK @ y - m.lamG
            R = cholesky(H + 1e-300 * np.eye(W.size), lower=False)
            z, _r = nnls(R, solve_triangular(R, c, trans="T"), maxiter=50 * W.size)
            sv = np.zeros(T)
            sv[W] = z
        f = objective(sv)
        if f < best:
            best = f
            size = W.size
        worst_left = max(worst_left, left)
    return best, worst_left, size


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=0,
                    help="stop after this many problems (0: --seconds decides)")
    ap.add_argument("--verbose", action="store_true", help="print each gap above 1e-9")
    ap.add_argument("--ref", type=float, default=0.0,
                    help="where |ours - plain| / plain exceeds this (and on every "
                         "--ref-every-th problem), both against tight_reference")
    ap.add_argument("--ref-every", type=int, default=0)
    ap.add_argument("--only", type=int, default=-1,
                    help="solve only problem ONLY of this seed's sequence (as --verbose numbers "
                         "them)")
    ap.add_argument("--dump", default="", help="with --only: save the problem to this .npz")
    ap.add_argument("--khz", action="store_true",
                    help="fs 1 kHz, tau_decay 0.6-3 s, tau_rise 0.02-0.3 tau_decay, T 1,000-"
                         "60,000 (kernels decaying over more than _EARLY_DECAY samples)")
    ap.add_argument("--lam0", type=float, default=0.0,
                    help="--khz: this fraction of the problems at lambda 0")
    ap.add_argument("--warm", action="store_true",
                    help="ours warm-started from the cold answer of a moved problem (tau_decay "
                         "x0.5-1.5, tau_rise x0.8-1.2, lambda x0.5-2: a slider move), not cold")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")  # tau_rise outside the sliders' range
    rng = np.random.default_rng(args.seed)
    n = bad = bad_p = same = 0
    idx = -1
    worst = -np.inf
    best = np.inf
    worst_at = ""
    cpu = {"ours": 0.0, "plain": 0.0}
    steps = {"ours": 0, "plain": 0}
    t_end = time.time() + args.seconds
    n_ref = 0
    ref_worst = {"ours": -np.inf, "plain": -np.inf}
    ref_above = {"ours": 0, "plain": 0}
    while (n - 1 < args.count) if args.count else (time.time() < t_end):
        state = rng.bit_generator.state if args.only >= 0 else None
        if args.khz:
            fs = 1000.0
            td = float(rng.uniform(0.6, 3.0))
            tr = float(rng.uniform(0.02, 0.3)) * td
            T = int(10 ** rng.uniform(3.0, 4.78))
        else:
            fs = float(rng.choice([7.5, 15, 30, 60, 100, 158, 300]))
            td = float(rng.uniform(0.3, 3.0))
            tr = float(rng.uniform(0.01, 0.5)) * td
            T = int(10 ** rng.uniform(2.2, 4.7))
        lam = float(10 ** rng.uniform(-2.5, 1))
        if args.khz and args.lam0 > 0.0 and rng.random() < args.lam0:
            lam = 0.0
        noise = float(10 ** rng.uniform(-2, 0.5))
        mode = int(rng.choice([0, 1, 2]))
        mu = float((rng.uniform(0.5, 20) * fs) ** 2) if mode == 2 else 0.0
        m = _model_checked(fs, tr, td, lam)
        if args.warm:
            # the problem before the move (drawn whether or not it is used)
            f_td = float(rng.uniform(0.5, 1.5))
            f_tr = float(rng.uniform(0.8, 1.2))
            f_lam = float(2.0 ** rng.uniform(-1, 1))
            m_old = _model_checked(fs, tr * f_tr, td * f_td, lam * f_lam)
        # (--khz: the kernels settled by blocks, _coarse_row)
        if ns._coarse_factor(m.g1, m.g2, m.lamG, np.int64(T), args.khz) == 0:
            continue
        sp = (rng.random(T) < rng.uniform(0.2, 5) / fs) * rng.exponential(1.0, T)
        y = reconvolve(sp[None], fs, tr, td)[0] + noise * rng.standard_normal(T)
        y += 2.0 if mode else 0.0
        if mode == 2:
            y += np.linspace(0.0, rng.uniform(-2, 2), T)
        y = y[None].copy()
        idx += 1
        if args.only >= 0:
            if idx < args.only:
                continue
            print(f"problem {idx} drawn from rng.bit_generator.state = {state}")
            if args.dump:
                np.savez(args.dump, y=y[0], fs=fs, tr=tr, td=td, lam=lam, mode=mode, mu=mu)
            n = 1  # (counted, not taken as the compiling one)
            t_end = 0.0
            args.count = 0
        nf, nb = ns.workspace_sizes(T)
        s = np.zeros((1, T))
        b = np.zeros((1, T if mode == 2 else 1))
        it = np.zeros(1, np.int64)
        conv = np.zeros(1, bool)
        init = y
        if args.warm:
            init = np.zeros((1, T))
            ns.pdas_rows(y, y, False, m_old.g1, m_old.g2, m_old.alpha, m_old.lamG, m_old.G,
                         np.int64(mode), mu, 1e-7, np.int64(500), init, b.copy(),
                         np.zeros((1, T)), it, conv, np.zeros(nf), np.zeros(nb, bool))
        c0 = time.process_time()
        ns.pdas_rows(y, init, args.warm, m.g1, m.g2, m.alpha, m.lamG, m.G, np.int64(mode), mu,
                     1e-7, np.int64(500), s, b, np.zeros((1, T)), it, conv, np.zeros(nf),
                     np.zeros(nb, bool))
        c1 = time.process_time()
        s_p, it_p, ok_p = plain_cold(y[0], m, mode, mu)
        c2 = time.process_time()
        f = np.zeros(2)
        ns.objective_rows(np.vstack([y, y]), np.vstack([s, s_p[None]]), m.g1, m.g2, m.alpha,
                          m.lamG, np.int64(mode), mu, f)
        n += 1
        if n == 1:
            continue  # (compiles)
        bad += not conv[0]
        bad_p += (not conv[0]) and ok_p
        gap = (f[0] - f[1]) / abs(f[1])
        best = min(best, gap)
        if gap > worst:
            worst = gap
            worst_at = (f"fs {fs:g} tau {tr:.3g}/{td:.3g} lambda {lam:.3g} noise {noise:.3g} "
                        f"T {T} mode {mode} steps {int(it[0])} vs {int(it_p)}")
        if args.verbose and abs(gap) > 1e-9:
            print(f"problem {idx} gap {gap:+.1e}: fs {fs:g} tau {tr:.3g}/{td:.3g} lambda "
                  f"{lam:.3g} noise {noise:.3g} T {T} mode {mode}")
        same += f[0] == f[1]
        if args.ref > 0.0 and (abs(gap) > args.ref or f[0] == f[1]
                               or (args.ref_every and idx % args.ref_every == 0)):
            f_ref, left, size = tight_reference(y[0], m, mode, mu, [s[0], s_p])
            f_ref = min(f_ref, f[0], f[1])
            n_ref += 1
            for key, fv in (("ours", f[0]), ("plain", f[1])):
                e = (fv - f_ref) / abs(f_ref)
                ref_worst[key] = max(ref_worst[key], e)
                ref_above[key] += e > 1e-9
            if args.verbose:
                print(f"  problem {idx}: ours {(f[0] - f_ref) / abs(f_ref):+.1e}, plain "
                      f"{(f[1] - f_ref) / abs(f_ref):+.1e} above the reference (|W| {size}, "
                      f"left {left:.1e}); conv {bool(conv[0])}")
        cpu["ours"] += c1 - c0
        cpu["plain"] += c2 - c1
        steps["ours"] += int(it[0])
        steps["plain"] += int(it_p)
    print(f"{n - 1} problems with the binned start: not converged {bad} ({bad_p} where plain "
          f"settled); objective (ours - plain) / plain at most {worst:+.1e} (at least "
          f"{best:+.1e}); steps {steps['ours']} vs "
          f"{steps['plain']}; CPU {cpu['ours']:.2f} s vs {cpu['plain']:.2f} s "
          f"({cpu['ours'] / max(cpu['plain'], 1e-12):.2f}x); worst at {worst_at}")
    print(f"{same} problems where ours and plain met the same objective bit for bit (the "
          f"same last active set; with --ref measured against the reference too)")
    if n_ref:
        print(f"against tight_reference on {n_ref} problems: ours at most "
              f"{ref_worst['ours']:+.1e} above ({ref_above['ours']} above 1e-9), plain at most "
              f"{ref_worst['plain']:+.1e} above ({ref_above['plain']} above 1e-9)")


if __name__ == "__main__":
    main()
