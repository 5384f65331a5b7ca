"""Solver speed and quality against the peers, measured in one run.

    .venv/bin/python bench/bench_solver.py            # the issue's problem
    .venv/bin/python bench/bench_solver.py --no-catune --repeats 3

Problem (issue 2): 100 traces x 10,000 frames at 30 Hz, tau_rise 0.05 s,
tau_decay 0.5 s, lambda 0.05, Poisson-ish spikes, Gaussian noise, offset 2.
Every solver's answer is scored with the same objective
(``napari_catune.objective``, exact AR(2) form of K):
  * ours: run_deconvolution_full (default exact method; FISTA with --fista);
  * OASIS oasisAR2 per trace with the true baseline subtracted and
    lam_o = lambda G peak_raw / (d - r) (DESIGN.md), spikes shifted back;
  * calab.run_deconvolution_full, scored at its best baseline;
  * catune 0.1.0 (plain lambda, no baseline): given the true baseline and
    lambda G so that it solves the same problem.
Then the slider path: one 54,000-frame trace with slow drift, warm-started
re-solve after tau_decay changes by 2 % (median of 20), next to a cold
solve, for each baseline model (scalar, drift, rolling).

``--warm`` (issue 12's slider target, <= 5 ms median and <= 10 ms max):
for every regime of ``bench_regimes.py`` one 54,000-frame trace, solved at
the regime's parameters, then re-solved warm (``init=`` that activity) after
each single slider move: tau_decay +-2 % and +-50 % (x1.5, x0.5), tau_rise
+20 %, lambda x2 and /2, fs +-1 %.  Per move type, the median and max wall
time over ``--warm-repeats`` re-solves (steps of the last), per baseline
model (``--warm-modes``, default drift and scalar); OASIS's cold solve of
the same trace (oasisAR2 on the trace minus our scalar baseline, one core)
is the yardstick, printed as ours/OASIS.

    .venv/bin/python bench/bench_solver.py --warm --no-main
    .venv/bin/python bench/bench_solver.py --warm --no-main --regimes GCaMP6f-30Hz
    .venv/bin/python bench/bench_solver.py --warm --no-main --cpu   # CPU time

``--cpu`` times the solving thread's CPU time (``time.thread_time``) instead
of wall time, for ours and OASIS alike (a single trace is solved on the
calling thread): on a busy shared machine wall time mostly measures the
other processes.  The sum of the medians over the 9 moves and the steps
are printed per regime, to compare two source trees (run each with
``PYTHONPATH=...``).

``--probe`` (with ``--warm``) says which state the host was in: the shared
machine's cache/memory bandwidth has a fast and a slow state that come and
go within one process (the same solve 10.2 or 13.1 ms).  Per regime and
baseline model, a reading of ``bench/_host_probe.py`` (a solver-free 512 kB
pointer chase, median of 3, same clock as the solves) before the first move
and after each move; their median [min-max] is printed beside the regime's
figures and in the summary.  Quiet host: about the lowest probe values seen
on this machine; slow state: ~30-50 % above.  Without ``--probe`` the
output is unchanged.

    .venv/bin/python bench/bench_solver.py --warm --no-main --cpu --probe

The machine is shared and noisy: read the ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import _one_blas  # noqa: F401  (one BLAS thread: per-core timing; before NumPy)
import numpy as np

import napari_catune as nc

FS, TR, TD, LAM, OFFSET, NOISE = 30.0, 0.05, 0.5, 0.05, 2.0, 0.3


def make_traces(n, T, seed=0):
    from scipy.signal import fftconvolve

    rng = np.random.default_rng(seed)
    h = nc.build_kernel(TR, TD, FS)
    spikes = (rng.random((n, T)) < 0.02) * rng.exponential(1.0, (n, T))
    calcium = fftconvolve(spikes, h[None])[:, :T]
    return calcium + NOISE * rng.standard_normal((n, T)) + OFFSET


def timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def oasis_solve(y):
    from oasis.oasis_methods import oasisAR2

    g1, g2, d, r = nc.tau_to_ar2(TR, TD, FS)
    h = nc.build_kernel(TR, TD, FS)
    t = np.arange(len(h)) / FS
    peak_raw = (np.exp(-t / TD) - np.exp(-t / TR)).max()
    scale = peak_raw / (d - r)
    lam_o = LAM * h.sum() * scale
    s = np.zeros_like(y)
    for i, row in enumerate(y):
        _, so = oasisAR2(row - OFFSET, g1, g2, lam=lam_o)
        s[i, :-1] = so[1:] * scale
    return s


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=100)
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-catune", action="store_true", help="skip catune 0.1.0 (~16 s)")
    ap.add_argument("--fista", action="store_true", help="also time our FISTA method")
    ap.add_argument("--warm", action="store_true", help="warm re-solves per regime and move")
    ap.add_argument("--no-main", action="store_true",
                    help="skip the 100-trace comparison and the per-mode slider path")
    ap.add_argument("--regimes", nargs="*", default=None, help="--warm: regimes (default all)")
    ap.add_argument("--warm-modes", nargs="*", default=["drift", "scalar"])
    ap.add_argument("--warm-repeats", type=int, default=5)
    ap.add_argument("--cpu", action="store_true",
                    help="--warm: CPU time of the solving thread instead of wall time")
    ap.add_argument("--probe", action="store_true",
                    help="--warm: host-state probe readings (bench/_host_probe.py) between the "
                         "moves, their median [min-max] per regime")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not args.no_main:
        main_comparison(args)
    if args.warm:
        warm_moves(args)


# slider moves: name -> (parameter, factor)
MOVES = {"td+2%": ("td", 1.02), "td-2%": ("td", 0.98), "td+50%": ("td", 1.5),
         "td-50%": ("td", 0.5), "tr+20%": ("tr", 1.2), "lam*2": ("lam", 2.0),
         "lam/2": ("lam", 0.5), "fs+1%": ("fs", 1.01), "fs-1%": ("fs", 0.99)}


def warm_moves(args):
    import warnings

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_regimes as BR

    regimes = args.regimes or list(BR.REGIMES)
    clock = time.thread_time if args.cpu else time.perf_counter
    HP = None
    if args.probe:
        import _host_probe as HP  # compiles (or loads) its kernels on import
    nc.run_deconvolution_full(BR.make_traces("GCaMP6s-100Hz", 1, 3000)[0], 100.0, 0.1, 1.5, 0.05,
                              baseline="drift")
    print(f"\nwarm re-solve after one slider move, 1 trace x 54,000 frames per regime; "
          f"per move: median/max ms {'CPU' if args.cpu else 'wall'} time over "
          f"{args.warm_repeats} re-solves (steps); target "
          f"5 ms median, 10 ms max.  OASIS: its cold solve of the same trace.")
    if HP is not None:
        print(PROBE_NOTE)
    all_probes = []
    summary = []
    for name in regimes:
        fs, tr, td, lam, _noise, _rate = BR.REGIMES[name]
        y = BR.make_traces(name, 1, 54_000)[0]
        base_s = nc.run_deconvolution_full(y, fs, tr, td, lam)
        ts = []
        for _ in range(3):
            t0 = clock()
            BR.oasis(y[None], np.atleast_1d(base_s.baseline), fs, tr, td, lam)
            ts.append(clock() - t0)
        t_oasis = min(ts) * 1e3
        for mode in args.warm_modes:
            base = nc.run_deconvolution_full(y, fs, tr, td, lam, baseline=mode)
            cells, meds, maxs, steps, pooled = [], [], [], 0, []
            probes, fmas = [], []

            def probe():
                if HP is not None:
                    pc, pf = HP.reading(3, clock)
                    probes.append(pc)
                    fmas.append(pf)

            probe()
            for mv, (key, f) in MOVES.items():
                p = {"fs": fs, "tr": tr, "td": td, "lam": lam}
                p[key] *= f
                times = []
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # fs 1010 Hz is outside the slider range
                    for _ in range(args.warm_repeats):
                        t0 = clock()
                        r = nc.run_deconvolution_full(y, p["fs"], p["tr"], p["td"], p["lam"],
                                                      baseline=mode, init=base.activity)
                        times.append(clock() - t0)
                pooled += times
                probe()
                med, mx = float(np.median(times)) * 1e3, max(times) * 1e3
                meds.append(med)
                maxs.append(mx)
                steps += int(r.iterations)
                cells.append(f"{mv} {med:.1f}/{mx:.1f} ({r.iterations}{'' if r.converged else ' NOT KKT'})")
            pm = float(np.median(pooled)) * 1e3
            summary.append((name, mode, max(meds), max(maxs), t_oasis, sum(meds), steps, pm,
                            probes if HP is not None else None))
            all_probes += probes
            print(f"{name} [{mode}], OASIS {t_oasis:.1f} ms, cold ours {base.iterations} steps:")
            for i in range(0, len(cells), 5):
                print("    " + "   ".join(cells[i:i + 5]))
            print(f"    worst median {max(meds):.1f} ms ({max(meds) / t_oasis:.3f} x OASIS), "
                  f"worst max {max(maxs):.1f} ms; moves within target: "
                  f"{sum(m <= 5.0 and x <= 10.0 for m, x in zip(meds, maxs))}/{len(meds)}; "
                  f"median of all {len(pooled)} re-solves {pm:.1f} ms", flush=True)
            if HP is not None:
                print(f"    host probe: chase {_probe_cell(HP.summarise(probes))} over "
                      f"{len(probes)} readings; control fma {np.median(fmas):.3f} ms "
                      f"[{min(fmas):.3f}-{max(fmas):.3f}]", flush=True)
    print("\nsummary: regime [mode]: worst median / worst max ms, worst median / OASIS cold; "
          "sum of the 9 medians, steps (sum); median of all re-solves (the moves pooled)"
          + ("; host probe: chase median [min-max] ms between the moves, readings >= 1.2 x "
             "the run's lowest" if HP is not None else ""))
    lo = min(all_probes) if all_probes else 0.0
    if HP is not None:
        print("  " + PROBE_READ)
    for name, mode, wm, wx, to, sm, st, pm, pr in summary:
        print(f"  {name:20s} [{mode:6s}] {wm:6.1f} / {wx:6.1f} ms   {wm / to:.3f}   "
              f"sum {sm:6.1f} ms  {st:4d} steps   pooled median {pm:5.1f} ms"
              + ("" if pr is None else f"   probe {_probe_cell(HP.summarise(pr))} "
                 f"{sum(p >= 1.2 * lo for p in pr)}/{len(pr)} high"))
    if HP is not None:
        print(f"  host probe over the run: median {np.median(all_probes):.3f} ms, lowest "
              f"{lo:.3f}, highest {max(all_probes):.3f} ({len(all_probes)} readings); "
              f"readings >= 1.2 x the lowest: {sum(p >= 1.2 * lo for p in all_probes)}")


PROBE_READ = ("Quiet host: about the lowest probe values seen on this machine "
              "(~0.54-0.57 ms, Dec 2026); slow/busy state: higher (+30-50 %) -- "
              "compare figures only between runs at similar probe values.")
PROBE_NOTE = ("host probe (--probe): a solver-free 512 kB pointer chase (bench/_host_probe.py, "
              "131,072 dependent loads, median of 3 after a warm trip, same clock), read before the "
              "first move and after each move.  " + PROBE_READ)


def _probe_cell(pr):
    med, lo, hi = pr
    return f"{med:.3f} [{lo:.3f}-{hi:.3f}] ms"


def main_comparison(args):

    y = make_traces(args.cells, args.frames)
    nc.run_deconvolution_full(y[:2, :500], FS, TR, TD, LAM)  # numba compile / cache load
    print(f"problem: {args.cells} traces x {args.frames} frames, fs={FS}, tau_rise={TR}, "
          f"tau_decay={TD}, lambda={LAM}, noise sd {NOISE}")

    rows = []
    t_ours, res = timed(lambda: nc.run_deconvolution_full(y, FS, TR, TD, LAM), args.repeats)
    obj_ours = nc.objective(y, res.activity, res.baseline, FS, TR, TD, LAM)
    rows.append(("napari-catune (exact active set)", t_ours, obj_ours))
    if args.fista:
        t_f, rf = timed(lambda: nc.run_deconvolution_full(y, FS, TR, TD, LAM, method="fista"), 1)
        rows.append(("napari-catune FISTA", t_f, nc.objective(y, rf.activity, rf.baseline, FS, TR, TD, LAM)))

    t_oasis, s_oasis = timed(lambda: oasis_solve(y), max(1, args.repeats // 2))
    rows.append(("OASIS oasisAR2 (loop)", t_oasis, nc.objective(y, s_oasis, OFFSET, FS, TR, TD, LAM)))

    import calab

    t_calab, rc = timed(lambda: calab.run_deconvolution_full(y, FS, TR, TD, LAM), 1)
    obj_calab = nc.objective(y, np.atleast_2d(rc.activity), None, FS, TR, TD, LAM)
    rows.append(("calab 0.3 run_deconvolution_full", t_calab, obj_calab))
    corr = min(np.corrcoef(a, b)[0, 1] for a, b in zip(res.reconvolution, np.atleast_2d(rc.reconvolution)))

    if not args.no_catune:
        import catune

        G = nc.build_kernel(TR, TD, FS).sum()
        t_cat, sc = timed(lambda: catune.run_deconvolution(y - OFFSET, FS, TR, TD, LAM * G), 1)
        rows.append(("catune 0.1.0", t_cat, nc.objective(y, sc, OFFSET, FS, TR, TD, LAM)))

    print(f"\n{'solver':36s} {'wall s':>9s} {'ours/peer time':>15s} {'objective (sum)':>16s} {'ours/peer obj':>14s}")
    for name, t, obj in rows:
        print(f"{name:36s} {t:9.3f} {t_ours / t:15.3f} {obj.sum():16.3f} {obj_ours.sum() / obj.sum():14.6f}")
    print(f"\nper-trace objective ours <= peer for every trace: "
          + ", ".join(f"{name.split()[0]}: {bool((obj_ours <= obj * (1 + 1e-12)).all())}" for name, _, obj in rows[1:]))
    print(f"min correlation of fits with calab over traces: {corr:.4f}")
    print(f"converged: {int(res.converged.sum())}/{len(res.converged)}, active-set steps "
          f"median {int(np.median(res.iterations))}, max {int(res.iterations.max())}")

    # ---- slider path, every baseline model
    long = make_traces(1, 54_000, seed=1)[0]
    t = np.arange(long.size) / FS
    long = long + 0.5 * np.sin(2 * np.pi * t / 200.0) + 0.002 * t  # slow drift
    print("\nslider path, 1 trace x 54,000 frames (with slow drift), tau_decay +2 %, "
          "warm-started; median of 20 (wall, and CPU of the solving thread); target <= 10 ms")
    for mode in ("scalar", "drift", "rolling"):
        prev = nc.run_deconvolution_full(long, FS, TR, TD, LAM, baseline=mode)
        wall, cpu = [], []
        for _ in range(20):
            w0, c0 = time.perf_counter(), time.thread_time()
            r = nc.run_deconvolution_full(long, FS, TR, TD * 1.02, LAM, baseline=mode,
                                          init=prev.activity)
            wall.append(time.perf_counter() - w0)
            cpu.append(time.thread_time() - c0)
        t_cold, cold = timed(lambda: nc.run_deconvolution_full(long, FS, TR, TD * 1.02, LAM,
                                                               baseline=mode), 5)
        assert np.allclose(r.activity, cold.activity, atol=1e-9)
        print(f"  {mode:8s} warm {np.median(wall) * 1e3:6.2f} ms wall, {np.median(cpu) * 1e3:6.2f} ms "
              f"CPU ({r.iterations} steps); cold {t_cold * 1e3:6.2f} ms ({cold.iterations} steps)")


if __name__ == "__main__":
    main()
