"""One digest over drift solves, to show a change left every answer bit for bit.

    PYTHONPATH=<tree>/src NUMBA_CACHE_DIR=<own dir> CATUNE_NUM_THREADS=1 \\
        .venv/bin/python bench/digest_drift.py

Run it on a `git archive` of the start code and on the change (each with its
own numba cache) and compare the printed lines.  Every regime of
``bench_regimes.py``: one 54,000-frame trace solved cold and re-solved warm
after seven slider moves, and 3 x 4,000 frames cold, each at six
``drift_scale`` values (mu from 0.25 to 3.6e9: below, at and above 1);
activity, baseline, steps and ``converged`` of every solve are hashed.
"""

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


def main():
    h = hashlib.sha256()
    n = 0
    warnings.simplefilter("ignore")  # fs +1 % leaves the slider range at 1 kHz
    for name, (fs, tr, td, lam, _noise, _rate) in BR.REGIMES.items():
        for T, rows in ((54_000, 1), (4000, 3)):
            y = BR.make_traces(name, rows, T)
            for ds in (None, 0.5 / fs, 1.0 / fs, 1.5 / fs, 3.0 / fs, 2.0):
                base = nc.run_deconvolution_full(y, fs, tr, td, lam, baseline="drift",
                                                 drift_scale=ds)
                res = [base]
                if T == 54_000 and ds is None:
                    for key, f in MOVES:
                        p = {"fs": fs, "tr": tr, "td": td, "lam": lam}
                        p[key] *= f
                        res.append(nc.run_deconvolution_full(
                            y, p["fs"], p["tr"], p["td"], p["lam"], baseline="drift",
                            drift_scale=ds, init=base.activity))
                for r in res:
                    for a in (r.activity, r.baseline):
                        h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
                    h.update(str((int(np.sum(r.iterations)), bool(np.all(r.converged)))).encode())
                    n += 1
    print(f"{n} drift solves, sha256 {h.hexdigest()}")


if __name__ == "__main__":
    main()
