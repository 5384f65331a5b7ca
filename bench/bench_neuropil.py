"""Neuropil (Fneu) read speed: ours vs the sparse-matrix way main had vs a
suite2p-style NumPy gather, with F's read (extract_traces) as the yardstick.

Run (2,000 s of movie at 30 Hz is ~3,000 frames; the file is built in a
temporary folder and deleted at the end):

    NUMBA_CACHE_DIR=/tmp/bench_numba .venv/bin/python bench/bench_neuropil.py \
        [--frames 3000] [--size 512] [--rois 300] [--repeat 3] [--dir /tmp]

The movie is an int16 ``np.memmap`` (suite2p's ``data.bin`` layout) with
~300 disk ROIs of radius 4.5-7 px; the surrounds are suite2p's neuropil
masks (:func:`napari_catune.neuropil.neuropil_masks`), ~4x F's pixels.
Every method reads the same memmap after one warm pass (page cache), each
timed ``--repeat`` times (min of the wall and of the CPU seconds, which on a
shared machine is the figure to trust).  Printed: each method's seconds, its
ratio to ours and to F's read, and the largest difference from ours.

* ``F: extract_traces``: the ROI means (the yardstick: the bar is Fneu at
  about 3x F's CPU or less);
* ``Fneu: ours``: :func:`napari_catune.neuropil.extract_neuropil`;
* ``Fneu: csr (main)``: main before round 40: each chunk of 32 frames copied
  to float64, then ``csr_matrix @ block.T``;
* ``Fneu: suite2p-style gather``: suite2p 0.x's batch loop (500 frames
  read as float32, per ROI ``data[:, ipix].mean(1)``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from scipy import sparse

from napari_catune.neuropil import extract_neuropil, neuropil_masks
from napari_catune.traces import extract_traces


def make_labels(size, n_rois, rng):
    labels = np.zeros((size, size), np.int32)
    yy, xx = np.mgrid[:size, :size]
    placed = tries = 0
    while placed < n_rois and tries < 100 * n_rois:
        tries += 1
        cy, cx = rng.integers(0, size, 2)  # edge ROIs too (clipped disks)
        r = rng.uniform(4.5, 7.0)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        if (labels[disk] == 0).all():
            placed += 1
            labels[disk] = placed
    return labels


def make_movie(path, frames, size, labels, rng):
    mm = np.memmap(path, dtype=np.int16, mode="w+", shape=(frames, size, size))
    cell = (labels > 0).astype(np.int16)
    for t0 in range(0, frames, 250):
        t1 = min(frames, t0 + 250)
        blk = rng.integers(50, 1500, (t1 - t0, size, size), dtype=np.int16)
        blk += 400 * cell  # brighter cells
        mm[t0:t1] = blk
    mm.flush()
    del mm
    return np.memmap(path, dtype=np.int16, mode="r", shape=(frames, size, size))


def csr_main(movie, masks, chunk=32):
    """main's iter_neuropil before round 40 (float64 copy, sparse product)."""
    T, Y, X = movie.shape
    npix = np.array([m.size for m in masks])
    rows = np.repeat(np.arange(len(masks)), npix)
    mat = sparse.csr_matrix((np.repeat(1.0 / npix, npix), (rows, np.concatenate(masks))),
                            shape=(len(masks), Y * X))
    out = np.empty((len(masks), T))
    for t0 in range(0, T, chunk):
        t1 = min(T, t0 + chunk)
        block = np.asarray(movie[t0:t1], dtype=np.float64).reshape(t1 - t0, Y * X)
        out[:, t0:t1] = mat @ block.T
    return out


def suite2p_gather(movie, masks, batch=500):
    """suite2p 0.x's extraction loop for Fneu: float32 batches, a gather per ROI."""
    T, Y, X = movie.shape
    out = np.zeros((len(masks), T), np.float32)
    for t0 in range(0, T, batch):
        data = np.asarray(movie[t0:t0 + batch], dtype=np.float32).reshape(-1, Y * X)
        for n, ipix in enumerate(masks):
            out[n, t0:t0 + batch] = data[:, ipix].mean(axis=1)
    return out


def timed(fn, repeat):
    walls, cpus, res = [], [], None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        res = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus), res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--rois", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where the temporary movie goes")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    labels = make_labels(a.size, a.rois, rng)
    ids = np.unique(labels)[1:]
    masks, _ = neuropil_masks(labels, ids)
    npix = np.array([m.size for m in masks])
    with tempfile.TemporaryDirectory(dir=a.dir, prefix="bench_neuropil_") as tmp:
        path = os.path.join(tmp, "data.bin")
        t = time.perf_counter()
        mm = make_movie(path, a.frames, a.size, labels, rng)
        print(f"movie {mm.shape} int16 memmap ({mm.nbytes / 2**30:.2f} GiB, written in "
              f"{time.perf_counter() - t:.1f} s); {ids.size} ROIs, "
              f"{np.count_nonzero(labels)} ROI pixels; surrounds {int(npix.sum())} pixels "
              f"({npix.sum() / np.count_nonzero(labels):.1f}x F's; {int(np.median(npix))} per ROI, "
              f"median); min of {a.repeat}")
        # compile / cache load (not timed), and one pass through the file (page cache)
        t = time.perf_counter()
        extract_traces(mm[:2], labels)
        extract_neuropil(mm[:2], labels)
        print(f"first use (numba compile or cache load, both kernels' int16 "
              f"specialisation): {time.perf_counter() - t:.2f} s")
        int(sum(int(mm[t0:t0 + 500].sum(dtype=np.int64)) for t0 in range(0, a.frames, 500)))

        rows = [
            ("F: extract_traces", lambda: extract_traces(mm, labels)[0]),
            ("Fneu: ours", lambda: extract_neuropil(mm, labels)[0]),
            ("Fneu: csr (main)", lambda: csr_main(mm, masks)),
            ("Fneu: suite2p-style gather", lambda: suite2p_gather(mm, masks)),
        ]
        res = {}
        for name, fn in rows:
            res[name] = timed(fn, a.repeat)
    F_wall, F_cpu, _ = res["F: extract_traces"]
    o_wall, o_cpu, ours = res["Fneu: ours"]
    print(f"{'':28s} {'wall s':>8s} {'CPU s':>8s} {'CPU/ours':>9s} {'CPU/F':>7s} "
          f"{'wall/ours':>9s}  max |x - ours| / max|ours|")
    for name, (w, c, r) in res.items():
        diff = "" if name.startswith("F:") else f"{np.abs(r - ours).max() / np.abs(ours).max():.1e}"
        print(f"{name:28s} {w:8.2f} {c:8.2f} {c / o_cpu:9.2f} {c / F_cpu:7.2f} "
              f"{w / o_wall:9.2f}  {diff}")
    print(f"Fneu ours / F: CPU {o_cpu / F_cpu:.2f}x, wall {o_wall / F_wall:.2f}x (bar: CPU <= ~3x)")


if __name__ == "__main__":
    main()
