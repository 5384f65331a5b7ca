"""Spike inference on the real recordings resampled to other frame rates and noise levels: ours vs OASIS.

Run: .venv/bin/python bench/bench_realgt_rates.py [--rows 12] [--rates native 60 30 15 7.5]
     [--noise none 2 4] [--datasets DS07 DS31] [--per-trace] [--workers 2]

Reads ../shared/realgt-dev/ (or $CATUNE_REALGT); exits with a message if absent.
Every row is brought to each target rate and noise level the way Cascade builds
its training data (HelmchenLabSoftware/Cascade, cascade2p/utils.py,
calibrated_ground_truth_artificial_noise; re-implemented here from its
description, see :func:`make`):

* noise level = median(|diff(dF/F)|) * 100 / sqrt(fs) (% per sqrt(Hz));
* a row is resampled only if its rate differs from the target by more than 5 %:
  FFT resampling (scipy.signal.resample) to round(T * target / fs) frames, the
  spikes recounted from the exact AP times in bins centred on the new frame
  times (a row within 5 % keeps its rate and its file's spikes);
* added noise (``--noise L``): its sd is found at the native rate by
  interpolating the level of y + N(0, (i/100) sqrt(fs)), i = 0..19, scaled by
  sqrt(target / fs) after resampling, and multiplied by the Poisson-like
  sqrt(|y + 1|) / median(...); a row already noisier than L is left out.

Columns (each in the same run):
* ours, auto, pooled: estimate_params on the NaN-padded stack of a dataset's
  rows at that rate (one recording, as a user would), solved with what it
  returns (baseline "drift");
* ours, auto, per trace (``--per-trace``): estimate_params on the row alone;
* OASIS AR(1) and AR(2) automatic: deconvolve(y, g=(None,)/(None, None), penalty=1).

Score: Pearson r of activity and spikes, both smoothed with a Gaussian of sd
0.1 s (bench_realgt's metric) and of sd max(0.1 s, 1 frame) (differs below
10 Hz); median over rows, then median of datasets.  The noise draws are seeded
from each row's dataset, index, rate and level (crc32), so a row gets the same
trace whatever --rows, --datasets or --workers say.
"""

from __future__ import annotations

import argparse
import math
import warnings
import zlib
from collections import defaultdict

import _one_blas  # noqa: F401  (one BLAS thread per worker; before NumPy)
import numpy as np

import _realgt as R

RESAMPLE_TOL = 0.05      # Cascade resamples only rates more than 5 % off the target
NOISE_STEPS = 20         # Cascade's ladder of test noise sds, (i / 100) sqrt(fs), i < 20
OURS_POOLED = "ours auto, pooled"
OURS_TRACE = "ours auto, per trace"
OASIS = ("OASIS AR1 auto", "OASIS AR2 auto")


def cascade_level(y: np.ndarray, fs: float) -> float:
    """Cascade's noise level: median(|diff(dF/F)|) * 100 / sqrt(fs)."""
    return float(np.median(np.abs(np.diff(y))) * 100 / math.sqrt(fs))


def seed_of(row: R.Row, index: int, rate, level) -> int:
    """A fixed seed per (row, rate, noise level): no Python hash() (salted per process)."""
    return zlib.crc32(f"{row.dataset}/{index}/{rate}/{level}".encode())


def make(row: R.Row, rate, level, rng) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(dF/F, spikes per frame, fs) of ``row`` at ``rate`` ("native" or Hz) and
    Cascade noise ``level`` (None: none added); None if the row is already noisier."""
    y, fs = row.y, row.fs
    noise_sd = 0.0
    if level is not None:
        test = np.array([cascade_level(y + rng.normal(0.0, i / 100 * math.sqrt(fs), y.shape), fs)
                         for i in range(NOISE_STEPS)])
        if level < test[0]:
            return None
        if level > test.max():
            raise SystemExit(f"noise level {level} is above what Cascade's ladder reaches on a "
                             f"{row.dataset} row ({test.max():.1f}); choose a lower --noise")
        order = np.argsort(test)
        noise_sd = float(np.interp(level, test[order], np.arange(NOISE_STEPS)[order])) / 100 * math.sqrt(fs)
    if rate != "native" and abs(rate - fs) / fs > RESAMPLE_TOL:
        if row.spike_times is None:
            raise SystemExit(f"{row.dataset}: the file has no exact spike times (spike_times, "
                             "spike_times_offsets, t0); only --rates native works on it")
        from scipy.signal import resample

        n = int(round(y.size * rate / fs))
        y, t = resample(y, n, row.t0 + np.arange(y.size) / fs)
        noise_sd *= math.sqrt(rate / fs)
        fs = fs * n / row.y.size
        edges = np.append(t, t[-1] + 1 / fs) - 0.5 / fs
        spikes = np.histogram(row.spike_times, bins=edges)[0].astype(np.float64)
    else:
        spikes = row.spikes
    if noise_sd > 0:
        gain = np.sqrt(np.abs(y + 1))
        y = y + rng.normal(0.0, 1.0, y.shape) * noise_sd * gain / np.median(gain)
    return y, spikes, fs


def widths(fs: float) -> tuple[float, float]:
    return 0.1, max(0.1, 1.0 / fs)


def _solve(y, fs, p):
    from napari_catune.solver import run_deconvolution_full

    res = run_deconvolution_full(y, fs, p.tau_rise, p.tau_decay, p.lam, baseline=p.baseline,
                                 drift_scale=p.drift_scale, filter_enabled=p.filter_enabled)
    return res.activity, bool(res.converged)


def _pooled(task):
    """estimate_params on one group's rows (NaN-padded stack) at the group's median rate."""
    ys, fss = task
    from napari_catune.estimate import estimate_params

    warnings.filterwarnings("ignore")
    T = max(y.size for y in ys)
    x = np.full((len(ys), T), np.nan)
    for i, y in enumerate(ys):
        x[i, : y.size] = y
    return estimate_params(x, float(np.median(fss)))


def _row(task):
    """Scores {column: (r at 0.1 s, r at max(0.1 s, 1 frame))} and convergence of one row."""
    y, spikes, fs, p, per_trace = task
    from oasis.functions import deconvolve

    from napari_catune.estimate import estimate_params

    warnings.filterwarnings("ignore")
    acts, conv = {}, {}
    acts[OURS_POOLED], conv[OURS_POOLED] = _solve(y, fs, p)
    if per_trace:
        acts[OURS_TRACE], conv[OURS_TRACE] = _solve(y, fs, estimate_params(y, fs))
    for name, g in zip(OASIS, ((None,), (None, None))):
        try:
            acts[name] = deconvolve(y, g=g, penalty=1)[1]
        except Exception:  # OASIS fails on a few traces; that row scores 0 for it
            acts[name] = np.zeros_like(y)
    return {k: tuple(R.score(a, spikes, fs, w) for w in widths(fs)) for k, a in acts.items()}, conv


def _positive(word: str, what: str):
    """An argparse type: ``word`` (kept as "native", or None for "none") or a positive number."""
    def parse(text: str):
        if text == word:
            return None if word == "none" else word
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {word!r} or {what}, not {text!r}")
        if not (math.isfinite(v) and v > 0):
            raise argparse.ArgumentTypeError(f"{what} must be positive, not {text!r}")
        return v
    return parse


def _label_rate(rate) -> str:
    return "native" if rate == "native" else f"{rate:g} Hz"


def _label_level(level) -> str:
    return "none added" if level is None else f"{level:g}"


def condition(rows, rate, level, args, pool_map) -> dict:
    """Everything about one (rate, noise level): per-dataset medians and the summary."""
    prep = [make(r, rate, level, np.random.default_rng(seed_of(r, k, rate, level)))
            for r, k in zip(rows, args.index)]
    keep = [i for i, p in enumerate(prep) if p is not None]
    groups = defaultdict(list)   # one recording per dataset and rate, as a user would estimate it
    for i in keep:
        key = round(rows[i].fs, 3) if rate == "native" else rate
        groups[(rows[i].dataset, key)].append(i)
    keys = list(groups)
    params = pool_map(_pooled, [([prep[i][0] for i in groups[k]], [prep[i][2] for i in groups[k]])
                                for k in keys])
    p_of = {i: p for k, p in zip(keys, params) for i in groups[k]}
    out = pool_map(_row, [(*prep[i], p_of[i], args.per_trace) for i in keep])
    kept = [rows[i] for i in keep]
    cols = list(out[0][0]) if out else []
    tables = []
    for w in range(2):
        per = {c: R.summarise(kept, [o[0][c][w] for o in out]) for c in cols}
        tables.append(per)
    td = R.summarise(kept, [p_of[i].tau_decay for i in keep])[0]
    conv = {c: [o[1][c] for o in out if c in o[1]] for c in (OURS_POOLED, OURS_TRACE)}
    fss = [prep[i][2] for i in keep]
    return dict(rate=rate, level=level, n=len(keep), dropped=len(rows) - len(keep), cols=cols,
                tables=tables, td=td, conv=conv, wide=any(1.0 / f > 0.1 for f in fss))


def print_condition(c) -> None:
    head = f"### rate {_label_rate(c['rate'])}, noise {_label_level(c['level'])}: {c['n']} rows"
    if c["dropped"]:
        head += f" ({c['dropped']} left out: already noisier than the level)"
    print(head)
    if not c["n"]:
        return
    for w, title in enumerate(("0.1 s", "max(0.1 s, 1 frame)")):
        if w == 1 and not c["wide"]:
            continue   # identical to the 0.1 s table above 10 Hz
        per = c["tables"][w]
        dsets = sorted(per[c["cols"][0]][0])
        print()
        print(f"Gaussian sd {title}")
        print("| method | " + " | ".join(d.split("-")[0] for d in dsets) + " | **median** |")
        print("|---|" + "---|" * (len(dsets) + 1))
        for name in c["cols"]:
            med, tot = per[name]
            print(f"| {name} | " + " | ".join(f"{med[d]:.3f}" for d in dsets) + f" | **{tot:.3f}** |")
        if w == 0:
            print("| pooled tau_decay (s) | " + " | ".join(f"{c['td'][d]:.3f}" for d in dsets) + " | |")
    for name, ok in c["conv"].items():
        if ok:
            print(f"converged ({name}): {sum(ok)} of {len(ok)} rows")
    print()


def summary_line(c, w: int) -> str:
    per = c["tables"][w]
    ours = per[OURS_POOLED][1]
    best = max(per[o][1] for o in OASIS)
    med_ours = per[OURS_POOLED][0]
    behind = [d.split("-")[0] for d in sorted(med_ours)
              if med_ours[d] < max(per[o][0][d] for o in OASIS)]
    extra = f", per trace {per[OURS_TRACE][1]:.3f}" if OURS_TRACE in per else ""
    sd = ("0.1 s", "max(0.1 s, 1 fr)")[w]
    return (f"rate {_label_rate(c['rate'])}, noise {_label_level(c['level'])}, sd {sd}: "
            f"ours pooled {ours:.3f}{extra}; OASIS AR1 {per[OASIS[0]][1]:.3f}, AR2 {per[OASIS[1]][1]:.3f}; "
            f"ours / best OASIS {ours / best:.3f}; datasets where ours < best OASIS: {' '.join(behind) or '-'}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=None, help="rows per dataset (default all)")
    ap.add_argument("--datasets", nargs="*", default=None)
    ap.add_argument("--rates", nargs="+", type=_positive("native", "a frame rate in Hz"),
                    default=["native", 60.0, 30.0, 15.0, 7.5],
                    help="'native' and/or frame rates in Hz (default: native 60 30 15 7.5)")
    ap.add_argument("--noise", nargs="+", type=_positive("none", "a Cascade noise level (e.g. 2)"),
                    default=[None],
                    help="'none' and/or Cascade noise levels, e.g. --noise none 2 4 (default: none)")
    ap.add_argument("--per-trace", action="store_true", help="also ours estimated on each row alone")
    ap.add_argument("--workers", type=int, default=2, help="processes (default 2; 1: no pool)")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error("--workers must be at least 1")
    if not R.DATA.is_dir():
        print(f"no real recordings at {R.DATA}: set CATUNE_REALGT; nothing to do")
        return 0
    rows = R.load_rows(R.DATA, datasets=args.datasets, max_rows=args.rows)
    if not rows:
        print(f"no usable rows in {R.DATA} for datasets {args.datasets}; nothing to do")
        return 0
    count = defaultdict(int)
    args.index = []   # each row's index within its dataset: its noise seed
    for r in rows:
        args.index.append(count[r.dataset])
        count[r.dataset] += 1
    import napari_catune

    print(f"{len(rows)} rows from {R.DATA}; napari_catune from {napari_catune.__file__}")
    print()
    if args.workers == 1:
        pool, pool_map = None, lambda f, xs: [f(x) for x in xs]
    else:
        import multiprocessing as mp

        pool = mp.Pool(args.workers)
        pool_map = lambda f, xs: pool.map(f, xs, chunksize=1)  # noqa: E731
    try:
        done = []
        for level in args.noise:
            for rate in args.rates:
                c = condition(rows, rate, level, args, pool_map)
                print_condition(c)
                done.append(c)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    print("Summary (median of datasets; ours = auto, pooled, drift baseline):")
    for c in done:
        if c["n"]:
            for w in range(2 if c["wide"] else 1):
                print(summary_line(c, w))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
