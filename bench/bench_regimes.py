"""The solver on every regime of issue 12, against OASIS and calab, in one run.

    .venv/bin/python bench/bench_regimes.py                    # default sizes (shared machine)
    .venv/bin/python bench/bench_regimes.py --sizes 100x10000,20x54000,10x1000000
    .venv/bin/python bench/bench_regimes.py --regimes 6s100,1k --sizes 5x10000

Regimes (tau_rise / tau_decay in s, fs in Hz, lambda, noise sd, spike rate):
jGCaMP8f at 100 Hz (0.01/0.15), GCaMP6f at 30 Hz (0.05/0.5), GCaMP6s at 30
and 100 Hz (0.1/1.5), calab's gcamp6s preset at 30 Hz (0.4/1.8), a 1 kHz
slow kernel (0.2/3.0), low SNR (sd 2), dense spiking (5 Hz), lambda 0 and 1.
Traces: Poisson spikes with exponential amplitudes through the kernel, plus
Gaussian noise and an offset of 2.

Per regime and size, interleaved, the minimum over ``--repeats`` runs of
wall time and process CPU time (all threads) for
  * ours: run_deconvolution_full, default method, every core
    (CATUNE_NUM_THREADS unset) - the CPU time is what both cores spent;
  * OASIS: oasisAR2 per trace on one core, given the true offset and
    lam_o = lambda G peak_raw / (d - r) (DESIGN.md), spikes shifted back;
  * calab: calab.run_deconvolution_full (FISTA, 2000 iterations), skipped
    above ``--calab-max-frames``.
Every answer is scored with napari_catune.objective (peers at their best
scalar baseline where that helps them: calab; OASIS at the true offset).
Printed ratios: ours / peer CPU time and wall time, and whether our
objective is <= the peer's on every trace; our active-set steps (median,
max) and how many traces are KKT-optimal (converged).
The machine is shared and noisy: read the ratios of one run, not absolute
times across runs.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

import napari_catune as nc

# name: (fs, tau_rise, tau_decay, lambda, noise sd, spike rate Hz)
REGIMES = {
    "8f100": (100.0, 0.01, 0.15, 0.05, 0.3, 1.0),
    "6f30": (30.0, 0.05, 0.5, 0.05, 0.3, 1.0),
    "6s30": (30.0, 0.1, 1.5, 0.05, 0.3, 1.0),
    "6s100": (100.0, 0.1, 1.5, 0.05, 0.3, 1.0),
    "calab6s30": (30.0, 0.4, 1.8, 0.05, 0.3, 1.0),
    "slow1k": (1000.0, 0.2, 3.0, 0.05, 0.3, 1.0),
    "lowsnr": (30.0, 0.05, 0.5, 0.05, 2.0, 1.0),
    "dense": (30.0, 0.05, 0.5, 0.05, 0.3, 5.0),
    "lam0": (30.0, 0.05, 0.5, 0.0, 0.3, 1.0),
    "lam1": (30.0, 0.05, 0.5, 1.0, 0.3, 1.0),
}
OFFSET = 2.0


def make_traces(n, T, fs, tr, td, noise, rate, seed=0):
    from scipy.signal import fftconvolve

    rng = np.random.default_rng(seed)
    h = nc.build_kernel(tr, td, fs)
    spikes = (rng.random((n, T)) < rate / fs) * rng.exponential(1.0, (n, T))
    calcium = fftconvolve(spikes, h[None])[:, :T]
    return calcium + noise * rng.standard_normal((n, T)) + OFFSET


def oasis_solve(y, fs, tr, td, lam):
    from oasis.oasis_methods import oasisAR2

    g1, g2, d, r = nc.tau_to_ar2(tr, td, fs)
    h = nc.build_kernel(tr, td, fs)
    t = np.arange(len(h)) / fs
    peak_raw = (np.exp(-t / td) - np.exp(-t / tr)).max()
    scale = peak_raw / (d - r)
    lam_o = lam * h.sum() * scale
    s = np.zeros_like(y)
    for i, row in enumerate(y):
        _, so = oasisAR2(row - OFFSET, g1, g2, lam=lam_o)
        s[i, :-1] = so[1:] * scale
    return s


def measure(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regimes", default=",".join(REGIMES))
    ap.add_argument("--sizes", default="20x10000,4x54000",
                    help="comma-separated NxT (issue 12: 100x10000,20x54000,10x1000000)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--calab-max-frames", type=int, default=60_000)
    ap.add_argument("--no-oasis", action="store_true")
    args = ap.parse_args(argv)

    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    nc.run_deconvolution_full(np.ones((2, 500)), 30.0, 0.05, 0.5, 0.05)  # compile/cache load
    print(f"{'regime':10s} {'N x T':>13s} | {'ours wall':>9s} {'ours cpu':>9s} steps(med/max) "
          f"opt | {'cpu/OASIS':>9s} {'wall/OASIS':>10s} obj<= | {'cpu/calab':>9s} "
          f"{'wall/calab':>10s} obj<=")
    for name in args.regimes.split(","):
        fs, tr, td, lam, noise, rate = REGIMES[name]
        for n, T in sizes:
            y = make_traces(n, T, fs, tr, td, noise, rate)
            runs = {"ours": [], "oasis": [], "calab": []}
            out = {}
            use_calab = T <= args.calab_max_frames
            for _ in range(args.repeats):
                w, c, out["ours"] = measure(lambda: nc.run_deconvolution_full(y, fs, tr, td, lam))
                runs["ours"].append((w, c))
                if not args.no_oasis:
                    w, c, out["oasis"] = measure(lambda: oasis_solve(y, fs, tr, td, lam))
                    runs["oasis"].append((w, c))
                if use_calab:
                    import calab

                    w, c, out["calab"] = measure(
                        lambda: calab.run_deconvolution_full(y, fs, tr, td, lam))
                    runs["calab"].append((w, c))
            best = {k: (min(r[0] for r in v), min(r[1] for r in v)) for k, v in runs.items() if v}
            res = out["ours"]
            obj = nc.objective(y, res.activity, res.baseline, fs, tr, td, lam)
            line = (f"{name:10s} {n:>5d} x {T:<7d}| {best['ours'][0]:9.3f} {best['ours'][1]:9.3f} "
                    f"{int(np.median(res.iterations)):>6d}/{int(res.iterations.max()):<6d} "
                    f"{int(res.converged.sum()):>3d}/{n:<3d}|")
            if "oasis" in best:
                o_obj = nc.objective(y, out["oasis"], OFFSET, fs, tr, td, lam)
                line += (f" {best['ours'][1] / best['oasis'][1]:9.3f} "
                         f"{best['ours'][0] / best['oasis'][0]:10.3f} "
                         f"{str(bool((obj <= o_obj * (1 + 1e-12)).all())):>5s} |")
            else:
                line += f" {'-':>9s} {'-':>10s} {'-':>5s} |"
            if "calab" in best:
                c_obj = nc.objective(y, np.atleast_2d(out["calab"].activity), None, fs, tr, td, lam)
                line += (f" {best['ours'][1] / best['calab'][1]:9.3f} "
                         f"{best['ours'][0] / best['calab'][0]:10.3f} "
                         f"{str(bool((obj <= c_obj * (1 + 1e-12)).all())):>5s}")
            else:
                line += f" {'-':>9s} {'-':>10s} {'-':>5s}"
            print(line, flush=True)
    print("\nratios < 1: ours faster.  cpu: process CPU time (ours on every core, peers on one); "
          "opt: traces whose KKT check passed (converged).")


if __name__ == "__main__":
    main()
