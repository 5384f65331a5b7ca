"""ROI trace extraction speed vs one ``movie.sum()`` pass over the same array.

Run: .venv/bin/python bench/bench_extract.py [--frames 2000] [--size 512] [--rois 200]

The issue's bar: extract_traces on a 2000 x 512 x 512 uint16 movie with 200
ROIs takes at most 2x the time of ``movie.sum()``, both measured here.  Also
shown: a NumPy gather + scipy.sparse product (the obvious vectorised
approach) and Dask / memmap inputs of the same movie.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import scipy.sparse as sp

from napari_catune.traces import extract_traces


def make(frames, size, n_rois, seed=0):
    rng = np.random.default_rng(seed)
    movie = rng.integers(0, 4000, (frames, size, size), dtype=np.uint16)
    labels = np.zeros((size, size), np.int32)
    yy, xx = np.mgrid[:size, :size]
    placed = 0
    while placed < n_rois:
        cy, cx = rng.integers(10, size - 10, 2)
        r = rng.uniform(5, 9)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        if (labels[disk] == 0).all():
            placed += 1
            labels[disk] = placed
    return movie, labels


def sparse_gather(movie, labels, chunk=50):
    T, Y, X = movie.shape
    flat = labels.ravel()
    idx = np.flatnonzero(flat)
    ids, inv, counts = np.unique(flat[idx], return_inverse=True, return_counts=True)
    W = sp.csr_matrix((1.0 / counts[inv], (inv, np.arange(idx.size))), shape=(ids.size, idx.size))
    out = np.empty((ids.size, T))
    for t0 in range(0, T, chunk):
        g = movie[t0 : t0 + chunk].reshape(-1, Y * X)[:, idx].astype(np.float64)
        out[:, t0 : t0 + chunk] = W @ g.T
    return out


def best_of(f, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        r = f()
        times.append(time.perf_counter() - t)
    return min(times), r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--rois", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    movie, labels = make(a.frames, a.size, a.rois)
    print(f"movie {movie.shape} {movie.dtype} ({movie.nbytes / 2**20:.0f} MB), "
          f"{a.rois} ROIs, {np.count_nonzero(labels)} labelled pixels; best of {a.repeat}")
    extract_traces(movie[:2], labels)  # numba compile / cache load, not timed

    t_sum, _ = best_of(lambda: movie.sum(), a.repeat)
    t_ours, (ours, _) = best_of(lambda: extract_traces(movie, labels), a.repeat)
    t_sp, ref = best_of(lambda: sparse_gather(movie, labels), a.repeat)
    assert np.allclose(ours, ref, rtol=1e-12, atol=1e-9)
    print(f"movie.sum()                 {t_sum:7.3f} s   1.00x")
    print(f"extract_traces (ours)       {t_ours:7.3f} s   {t_ours / t_sum:.2f}x   (bar: <= 2x)")
    print(f"gather + scipy.sparse       {t_sp:7.3f} s   {t_sp / t_sum:.2f}x")

    import dask.array as da

    dmovie = da.from_array(movie, chunks=(100, -1, -1))
    t_dsum, _ = best_of(lambda: dmovie.sum().compute(), 1)
    t_d, (dtr, _) = best_of(lambda: extract_traces(dmovie, labels), 1)
    assert np.allclose(dtr, ours, rtol=1e-12, atol=1e-9)
    print(f"dask: .sum().compute()      {t_dsum:7.3f} s;  extract_traces {t_d:.3f} s  "
          f"{t_d / t_dsum:.2f}x")

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "movie.dat")
        mm = np.memmap(path, dtype=movie.dtype, mode="w+", shape=movie.shape)
        mm[:] = movie
        mm.flush()
        mm = np.memmap(path, dtype=movie.dtype, mode="r", shape=movie.shape)
        t_msum, _ = best_of(lambda: mm.sum(), 1)
        t_m, (mtr, _) = best_of(lambda: extract_traces(mm, labels), 1)
        assert np.allclose(mtr, ours, rtol=1e-12, atol=1e-9)
        print(f"memmap: .sum()              {t_msum:7.3f} s;  extract_traces {t_m:.3f} s  "
              f"{t_m / t_msum:.2f}x")


if __name__ == "__main__":
    main()
