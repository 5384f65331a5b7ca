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
    it, _ok = ns.pdas_one(y, m.g1, m.g2, m.alpha, m.lamG, np.int64(mode), mu, active,
                          np.int64(500), s, np.zeros(T), np.zeros(nf)[T:], np.zeros(nb, bool),
                          1e-11, False)
    return s, it


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verbose", action="store_true", help="print each gap above 1e-9")
    ap.add_argument("--khz", action="store_true",
                    help="fs 1 kHz, tau_decay 0.6-3 s, tau_rise 0.02-0.3 tau_decay, T 1,000-"
                         "60,000 (kernels decaying over more than _EARLY_DECAY samples)")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")  # tau_rise outside the sliders' range
    if args.khz and not ns._COARSE_EARLY:
        print("_COARSE_EARLY is off: no 1 kHz problem takes the binned start (set it True "
              "in _numba_solvers.py to measure)")
        return
    rng = np.random.default_rng(args.seed)
    n = bad = 0
    worst = -np.inf
    best = np.inf
    worst_at = ""
    cpu = {"ours": 0.0, "plain": 0.0}
    steps = {"ours": 0, "plain": 0}
    t_end = time.time() + args.seconds
    while time.time() < t_end:
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
        noise = float(10 ** rng.uniform(-2, 0.5))
        mode = int(rng.choice([0, 1, 2]))
        mu = float((rng.uniform(0.5, 20) * fs) ** 2) if mode == 2 else 0.0
        m = _model_checked(fs, tr, td, lam)
        if ns._coarse_factor(m.g1, m.g2, m.lamG, np.int64(T)) == 0:
            continue
        sp = (rng.random(T) < rng.uniform(0.2, 5) / fs) * rng.exponential(1.0, T)
        y = reconvolve(sp[None], fs, tr, td)[0] + noise * rng.standard_normal(T)
        y += 2.0 if mode else 0.0
        if mode == 2:
            y += np.linspace(0.0, rng.uniform(-2, 2), T)
        y = y[None].copy()
        nf, nb = ns.workspace_sizes(T)
        s = np.zeros((1, T))
        b = np.zeros((1, T if mode == 2 else 1))
        it = np.zeros(1, np.int64)
        conv = np.zeros(1, bool)
        c0 = time.process_time()
        ns.pdas_rows(y, y, False, m.g1, m.g2, m.alpha, m.lamG, m.G, np.int64(mode), mu, 1e-7,
                     np.int64(500), s, b, np.zeros((1, T)), it, conv, np.zeros(nf),
                     np.zeros(nb, bool))
        c1 = time.process_time()
        s_p, it_p = plain_cold(y[0], m, mode, mu)
        c2 = time.process_time()
        f = np.zeros(2)
        ns.objective_rows(np.vstack([y, y]), np.vstack([s, s_p[None]]), m.g1, m.g2, m.alpha,
                          m.lamG, np.int64(mode), mu, f)
        n += 1
        if n == 1:
            continue  # (compiles)
        bad += not conv[0]
        gap = (f[0] - f[1]) / abs(f[1])
        best = min(best, gap)
        if gap > worst:
            worst = gap
            worst_at = (f"fs {fs:g} tau {tr:.3g}/{td:.3g} lambda {lam:.3g} noise {noise:.3g} "
                        f"T {T} mode {mode} steps {int(it[0])} vs {int(it_p)}")
        if args.verbose and gap > 1e-9:
            print(f"gap {gap:+.1e}: fs {fs:g} tau {tr:.3g}/{td:.3g} lambda {lam:.3g} noise {noise:.3g} T {T} mode {mode}")
        cpu["ours"] += c1 - c0
        cpu["plain"] += c2 - c1
        steps["ours"] += int(it[0])
        steps["plain"] += int(it_p)
    print(f"{n - 1} problems with the binned start: not converged {bad}; objective "
          f"(ours - plain) / plain at most {worst:+.1e} (at least {best:+.1e}); steps {steps['ours']} vs "
          f"{steps['plain']}; CPU {cpu['ours']:.2f} s vs {cpu['plain']:.2f} s "
          f"({cpu['ours'] / max(cpu['plain'], 1e-12):.2f}x); worst at {worst_at}")


if __name__ == "__main__":
    main()
