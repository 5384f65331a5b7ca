"""Peak memory of ``napari-catune deconvolve`` on a large memory-mapped .npy.

Writes a 2,000 x 100,000 float32 traces file (0.8 GB; calcium-like: sparse
spikes through the CaTune kernel plus noise), then runs in child processes,
each measured with ``/usr/bin/time -v`` (maximum resident set size):

* ours: ``napari-catune deconvolve traces.npy --params p.json -o act.npy``
  (memory-mapped input, chunks of cells, output written chunk by chunk);
* peer: the naive in-memory way, ``np.load`` + ``run_deconvolution`` on the
  whole array + ``np.save`` (same solver, so the difference is the I/O);
* the bare interpreter with the same imports, for the fixed cost.

Target (issue 4): ours <= 1.5 x the input size.  Both outputs are checked
equal.  Usage::

    .venv/bin/python bench/bench_cli_memory.py [--cells 2000] [--frames 100000]
        [--dir /tmp/catune-bench] [--skip-naive] [--keep] [--full]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FS, TAU_R, TAU_D, LAM = 30.0, 0.05, 0.5, 0.5


def write_traces(path: Path, n: int, T: int, seed: int = 0) -> None:
    """Calcium-like float32 traces written 100 rows at a time (bench stays small)."""
    from scipy.signal import lfilter

    from napari_catune.kernel import ar2_scale, tau_to_ar2

    g1, g2, _, _ = tau_to_ar2(TAU_R, TAU_D, FS)
    alpha = ar2_scale(TAU_R, TAU_D, FS)
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, T))
    for a in range(0, n, 100):
        b = min(n, a + 100)
        spikes = (rng.uniform(size=(b - a, T)) < 0.01) * rng.uniform(0.5, 2.0, (b - a, T))
        calcium = alpha * lfilter([1.0], [1.0, -g1, -g2], spikes, axis=1)
        out[a:b] = calcium + 0.2 * rng.standard_normal((b - a, T)) + 1.0
    out.flush()
    del out


def measured(cmd: list[str]) -> tuple[float, float, str]:
    """(peak RSS in bytes, wall seconds, stderr) of a child process."""
    timer = shutil.which("time") or "/usr/bin/time"
    t0 = time.perf_counter()
    if os.path.exists(timer):
        run = subprocess.run([timer, "-v", *cmd], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if run.returncode != 0:
            raise RuntimeError(f"{cmd} failed:\n{run.stderr[-3000:]}")
        kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))
        return kb * 1024.0, wall, run.stderr
    # fallback: the largest waited-for child so far (run ours first)
    import resource

    run = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if run.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{run.stderr[-3000:]}")
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024.0, wall, run.stderr


def equal_chunked(a_path: Path, b_path: Path) -> bool:
    a = np.load(a_path, mmap_mode="r")
    b = np.load(b_path, mmap_mode="r")
    if a.shape != b.shape:
        return False
    return all(np.array_equal(a[i : i + 100], b[i : i + 100]) for i in range(0, a.shape[0], 100))


def equal_npz(a_path: Path, b_path: Path) -> bool:
    with np.load(a_path) as a, np.load(b_path) as b:
        return all(np.array_equal(a[k], b[k]) for k in b.files)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=2000)
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--dir", default=None, help="work folder (default: a temp folder)")
    ap.add_argument("--skip-naive", action="store_true", help="do not run the in-memory peer")
    ap.add_argument("--keep", action="store_true", help="keep the files")
    ap.add_argument("--full", action="store_true",
                    help="deconvolve --full (.npz with fit, baseline, ...) for ours and the peer")
    args = ap.parse_args()

    from napari_catune.params import TuningParams, save_params

    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="catune-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    src, prm = work / "traces.npy", work / "params.json"
    ext = ".npz" if args.full else ".npy"
    ours_out, naive_out = work / f"act_cli{ext}", work / f"act_naive{ext}"
    try:
        t0 = time.perf_counter()
        write_traces(src, args.cells, args.frames)
        save_params(TuningParams(TAU_R, TAU_D, FS, LAM), prm)
        size = src.stat().st_size
        print(f"input: {src} {args.cells} x {args.frames} float32 = {size / 1e9:.2f} GB "
              f"(written in {time.perf_counter() - t0:.1f} s)")
        py = sys.executable
        script = Path(py).with_name("napari-catune")
        cli = [str(script)] if script.exists() else [py, "-m", "napari_catune.cli"]

        base_rss, _, _ = measured([py, "-c", (
            "import numpy, scipy.signal, numba, napari_catune.cli, napari_catune.solver, "
            "napari_catune._numba_solvers; "
            "from napari_catune import run_deconvolution; "
            "run_deconvolution(numpy.ones((2, 50)) , 30, 0.05, 0.5, 0.5)")])
        full = ["--full"] if args.full else []
        ours_rss, ours_wall, _ = measured(
            [*cli, "deconvolve", str(src), "--params", str(prm), "-o", str(ours_out), "-q", *full])
        print(f"command: {' '.join(cli)} deconvolve {src} --params {prm} -o {ours_out} -q "
              f"{' '.join(full)}")
        rows = [("interpreter + imports (fixed cost)", base_rss, None),
                ("ours: napari-catune deconvolve (mmap, chunks)", ours_rss, ours_wall)]
        if not args.skip_naive:
            if args.full:
                code = (
                    "import numpy as np; from napari_catune import run_deconvolution_full; "
                    f"y = np.load({str(src)!r}); "
                    f"r = run_deconvolution_full(y, {FS}, {TAU_R}, {TAU_D}, {LAM}); "
                    f"np.savez({str(naive_out)!r}, activity=r.activity, fit=r.reconvolution, "
                    "baseline=r.baseline, iterations=r.iterations, converged=r.converged)")
                label = "peer: np.load + run_deconvolution_full + savez"
            else:
                code = (
                    "import numpy as np; from napari_catune import run_deconvolution; "
                    f"y = np.load({str(src)!r}); "
                    f"a = run_deconvolution(y, {FS}, {TAU_R}, {TAU_D}, {LAM}); "
                    f"np.save({str(naive_out)!r}, a)")
                label = "peer: np.load + run_deconvolution + np.save"
            naive_rss, naive_wall, _ = measured([py, "-c", code])
            rows.append((label, naive_rss, naive_wall))
        print()
        print(f"{'process':48s} {'peak RSS':>10s} {'x input':>8s} {'wall':>8s}")
        for name, rss, wall in rows:
            w = f"{wall:7.1f}s" if wall is not None else ""
            print(f"{name:48s} {rss / 1e9:8.2f} GB {rss / size:8.2f} {w:>8s}")
        print()
        verdict = "OK" if ours_rss <= 1.5 * size else "ABOVE TARGET"
        print(f"ours / input = {ours_rss / size:.2f} (target <= 1.5): {verdict}")
        if not args.skip_naive:
            print(f"ours / peer peak RSS = {ours_rss / naive_rss:.2f}; "
                  f"wall ours / peer = {ours_wall / naive_wall:.2f}")
            same = (equal_npz(ours_out, naive_out) if args.full
                    else equal_chunked(ours_out, naive_out))
            print(f"outputs identical: {same}")
    finally:
        if not args.keep:
            for p in (src, prm, ours_out, naive_out):
                p.unlink(missing_ok=True)
            if not args.dir:
                shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
