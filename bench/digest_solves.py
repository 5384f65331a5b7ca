"""One digest over many solves, to show a change left every answer bit for bit.

    PYTHONPATH=<tree>/src NUMBA_CACHE_DIR=<own dir> CATUNE_NUM_THREADS=1 \\
        .venv/bin/python bench/digest_solves.py [--modes drift scalar none]

Run it on a `git archive` of the start code and on the change (each with its
own numba cache) and compare the printed lines.  Every regime of
``bench_regimes.py``: one 54,000-frame trace solved cold and re-solved warm
after seven slider moves, and 3 x 4,000 frames cold, each at six
``drift_scale`` values (mu from 0.25 to 3.6e9: below, at and above 1) for
"drift", once for the other baseline modes; activity, baseline, steps and
``converged`` of every solve are hashed, one digest per mode.
"""

import argparse
import hashlib
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_regimes as BR  # noqa: E402

import napari_catune as nc  # noqa: E402

MOVES = [("td", 1.5), ("td", 0.5), ("tr", 1.2), ("lam", 2.0), ("lam", 0.5), ("fs", 1.01),
         ("td", 0.98)]


def digest(mode):
    h = hashlib.sha256()
    n = 0
    for name, (fs, tr, td, lam, _noise, _rate) in BR.REGIMES.items():
        # drift_scale: the default, 0.5-3 samples (mu 0.25-9), 2 s
        scales = [None, 0.5 / fs, 1.0 / fs, 1.5 / fs, 3.0 / fs, 2.0] if mode == "drift" else [None]
        for T, rows in ((54_000, 1), (4000, 3)):
            y = BR.make_traces(name, rows, T)
            for ds in scales:
                kw = {"baseline": mode, "drift_scale": ds} if mode == "drift" else {"baseline": mode}
                base = nc.run_deconvolution_full(y, fs, tr, td, lam, **kw)
                res = [base]
                if T == 54_000 and ds is None:
                    for key, f in MOVES:
                        p = {"fs": fs, "tr": tr, "td": td, "lam": lam}
                        p[key] *= f
                        res.append(nc.run_deconvolution_full(
                            y, p["fs"], p["tr"], p["td"], p["lam"], init=base.activity, **kw))
                for r in res:
                    for a in (r.activity, r.baseline):
                        h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
                    h.update(str((int(np.sum(r.iterations)), bool(np.all(r.converged)))).encode())
                    n += 1
    return n, h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", nargs="+", default=["drift", "scalar", "none"],
                    choices=["drift", "scalar", "none"])
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # fs +1 % leaves the slider range at 1 kHz
    for mode in args.modes:
        n, hexdigest = digest(mode)
        print(f"{mode}: {n} solves, sha256 {hexdigest}", flush=True)


if __name__ == "__main__":
    main()
