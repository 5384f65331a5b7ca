"""Peak memory of reading a suite2p plane: ``load_suite2p`` against plain NumPy.

Writes a suite2p plane folder with ``F.npy`` and ``Fneu.npy`` of
``--cells`` x ``--frames`` float32 (2,000 x 30,000 by default: 0.24 GB each),
then runs in child processes, each measured with ``/usr/bin/time -v``
(maximum resident set size):

* ours: ``load_suite2p(plane, neuropil=0.7)`` (rows read in blocks);
* peer: the plain way, ``np.load`` both files and ``F - 0.7 * Fneu`` in float64,
  as a script (or our loader before it streamed) does;
* the float64 traces alone (``np.load`` of an .npy holding them): the floor;
* the bare interpreter with the same imports, for the fixed cost.

Both results are checked equal.  Usage::

    .venv/bin/python bench/bench_suite2p_memory.py [--cells 2000] [--frames 30000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

IMPORTS = "import numpy as np; from napari_catune.loaders import load_suite2p\n"
OURS = IMPORTS + "t = load_suite2p({plane!r}, neuropil=0.7).traces; np.save({out!r}, t[:, :50])\n"
PLAIN = IMPORTS + (
    "F = np.load({plane!r} + '/F.npy').astype(np.float64)\n"
    "t = F - 0.7 * np.load({plane!r} + '/Fneu.npy').astype(np.float64)\n"
    "np.save({out!r}, t[:, :50])\n"
)
FLOOR = IMPORTS + "t = np.load({traces!r})\n"


def peak_rss(code: str) -> float:
    """Maximum resident set size in GiB of ``python -c code``."""
    proc = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-c", code],
                          capture_output=True, text=True, check=True)
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return kb / 2**20


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=2000)
    ap.add_argument("--frames", type=int, default=30000)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args(argv)
    root = args.dir or Path(tempfile.mkdtemp(prefix="catune-s2p-"))
    plane = root / "suite2p" / "plane0"
    plane.mkdir(parents=True, exist_ok=True)
    n, T = args.cells, args.frames
    rng = np.random.default_rng(0)
    for name in ("F.npy", "Fneu.npy"):
        arr = np.lib.format.open_memmap(plane / name, "w+", np.float32, (n, T))
        for i in range(0, n, 100):
            arr[i:i + 100] = rng.standard_normal((min(100, n - i), T), dtype=np.float32)
        arr.flush()
        del arr
    traces = root / "traces64.npy"
    out = np.lib.format.open_memmap(traces, "w+", np.float64, (n, T))
    out[:] = 0
    out.flush()
    del out
    try:
        fixed = peak_rss(IMPORTS)
        ours = peak_rss(OURS.format(plane=str(plane), out=str(root / "ours.npy")))
        plain = peak_rss(PLAIN.format(plane=str(plane), out=str(root / "plain.npy")))
        floor = peak_rss(FLOOR.format(traces=str(traces)))
        np.testing.assert_allclose(np.load(root / "ours.npy"), np.load(root / "plain.npy"))
        size = n * T * 8 / 2**30
        print(f"suite2p plane {n} x {T} float32 F and Fneu; float64 traces {size:.2f} GiB")
        print(f"{'process':<40} {'peak GiB':>9} {'x traces':>9}")
        for label, v in (("interpreter + imports", fixed), ("load_suite2p (ours)", ours),
                         ("np.load both + F - 0.7*Fneu (plain)", plain),
                         ("np.load of the float64 traces (floor)", floor)):
            print(f"{label:<40} {v:9.2f} {v / size:9.2f}")
        print(f"ours / plain: {ours / plain:.2f}   ours / floor: {ours / floor:.2f}")
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
