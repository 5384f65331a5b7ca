"""Lambda 0, random problems: the exact solver's objective against a reference
(issue 12: converged=True means optimal), its steps and CPU time.

    .venv/bin/python bench/bench_lam0.py                       # 60 problems, vs FISTA (T <= 3000)
    .venv/bin/python bench/bench_lam0.py --save /tmp/a.npz     # store objectives and steps
    PYTHONPATH=/other/src .venv/bin/python bench/bench_lam0.py --compare /tmp/a.npz

Random problems at lambda 0 (seeded): fs 7.5-1000 Hz, tau_decay 0.15-3 s,
tau_rise 0.02-0.4 tau_decay, noise sd 0.01-3, spike rate 0.2-8 Hz, offset
-1e3..1e4 (and 1e6 on some), T 200-60,000, baseline ``none``, ``scalar`` and
``drift``.  Per problem: converged, KKT violation, steps, and the objective
against FISTA run to tol 1e-12 / 100,000 iterations from our answer
(T <= ``--fista-max-t``: FISTA can only lower it, so a rise above ours by
more than 1e-9 relative would show ours is not optimal), and, with
``--compare``, against another source tree's stored objectives (both exact:
they agree to rounding).  Printed: the worst relative gaps, the
unconverged count and the step and time totals.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import napari_catune as nc
from napari_catune import solver as S
from napari_catune.baseline import drift_mu


def problems(n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        fs = float(np.exp(rng.uniform(np.log(7.5), np.log(1000.0))))
        td = float(np.exp(rng.uniform(np.log(0.15), np.log(3.0))))
        tr = float(td * rng.uniform(0.02, 0.4))
        tr = max(tr, 1.5 / fs)
        if tr >= td:
            tr = 0.5 * td
        T = int(np.exp(rng.uniform(np.log(200), np.log(60_000))))
        noise = float(np.exp(rng.uniform(np.log(0.01), np.log(3.0))))
        rate = float(np.exp(rng.uniform(np.log(0.2), np.log(8.0))))
        off = float(rng.choice([0.0, 2.0, -1e3, 1e4, 1e6]))
        base = ("none", "scalar", "drift")[i % 3]
        spikes = rng.poisson(rate / fs, T) * rng.exponential(1.0, T)
        y = S.reconvolve(spikes, fs, tr, td) + off + noise * rng.standard_normal(T)
        out.append(dict(fs=fs, tr=tr, td=td, T=T, noise=noise, off=off, base=base, y=y))
    return out


def obj(y, r, p):
    """The objective of a result at its best baseline of the problem's mode
    (the drift at the default drift scale)."""
    m = S._model_checked(p["fs"], p["tr"], p["td"], 0.0)
    mu = drift_mu(None, p["fs"], p["td"]) if p["base"] == "drift" else 0.0
    return float(S._objective_rows(y, np.atleast_2d(r.activity), m, S._MODE_CODES[p["base"]],
                                   mu)[0])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fista-max-t", type=int, default=3000)
    ap.add_argument("--save")
    ap.add_argument("--compare")
    args = ap.parse_args(argv)
    S.warm_up()
    probs = problems(args.n, args.seed)
    objs, steps, conv, kkts, cpu = [], [], [], [], 0.0
    worst_f = -np.inf
    n_f = 0
    for p in probs:
        y = p["y"][None]
        c0 = time.process_time()
        r = nc.run_deconvolution_full(y, p["fs"], p["tr"], p["td"], 0.0, baseline=p["base"])
        cpu += time.process_time() - c0
        f = obj(y, r, p)
        objs.append(f)
        steps.append(int(np.atleast_1d(r.iterations)[0]))
        conv.append(bool(np.atleast_1d(r.converged)[0]))
        if not conv[-1] or steps[-1] > S._PDAS_BUDGET:
            print(f"  {'not converged' if not conv[-1] else 'handed over to FISTA'} ({steps[-1]} steps): "
                  f"{dict((k, v) for k, v in p.items() if k != 'y')}")
        if p["T"] <= args.fista_max_t:
            rf = nc.run_deconvolution_full(y, p["fs"], p["tr"], p["td"], 0.0, baseline=p["base"],
                                           method="fista", tol=1e-12, max_iters=100_000,
                                           init=np.atleast_2d(r.activity))
            ff = obj(y, rf, p)
            gap = (f - ff) / max(abs(ff), 1e-300)
            worst_f = max(worst_f, gap)
            n_f += 1
            if gap > 1e-9:
                print(f"  ours above FISTA by {gap:.1e} (converged {conv[-1]}, {steps[-1]} steps): {dict((k, v) for k, v in p.items() if k != 'y')}")
    objs = np.array(objs)
    print(f"{len(probs)} lambda-0 problems: unconverged {len(probs) - sum(conv)}, steps total "
          f"{sum(steps)} (median {int(np.median(steps))}, max {max(steps)}), cpu {cpu:.2f} s")
    print(f"vs FISTA (tol 1e-12 from ours, {n_f} problems, T <= {args.fista_max_t}): worst "
          f"(ours - FISTA)/FISTA {worst_f:+.1e}")
    if args.save:
        np.savez(args.save, objs=objs, steps=np.array(steps), conv=np.array(conv))
    if args.compare:
        ref = np.load(args.compare)
        rel = (objs - ref["objs"]) / np.maximum(np.abs(ref["objs"]), 1e-300)
        print(f"vs stored ({args.compare}): worst (ours - ref)/|ref| {rel.max():+.1e}, best "
              f"{rel.min():+.1e}; above 1e-9: {int((rel > 1e-9).sum())}; steps {sum(steps)} vs "
              f"{int(ref['steps'].sum())}; unconverged ref {int((~ref['conv']).sum())}")


if __name__ == "__main__":
    main()
