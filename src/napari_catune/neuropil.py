"""Neuropil correction for traces extracted from a movie with a label image.

suite2p's convention (``suite2p/extraction/masks.py`` ``create_neuropil_masks``
and ``extract.py``; defaults in ``suite2p/parameters.py``), for ROIs drawn by
hand or by cellpose (a label image: every ROI pixel has weight 1):

* cell pixels: every labelled pixel (suite2p also drops an ROI's low-weight
  pixels from this set, its ``lam_percentile``; a label image has no
  weights, so none are dropped);
* an exclusion zone: the ROI grown ``inner_radius`` times (default 2) to its
  4-connected neighbours, clipped to the image;
* the surround: a rectangle, first the zone's bounding box grown 5 pixels on
  every side, grown by 5 again until it holds more than ``min_pixels``
  (default 350) non-cell pixels outside the zone (at most 100 times);
* the neuropil mask: the rectangle's pixels that are neither cell pixels nor
  in the zone; ``Fneu`` is their plain mean per frame;
* corrected traces ``F - coefficient * Fneu`` (default 0.7, suite2p's
  ``neuropil_coefficient``).

Qt-free; the movie is read once, a chunk of frames at a time, in its own
dtype, and each surround is summed as runs of pixels by a compiled kernel
(about 1.4x the CPU of reading F, the ROI means; a float64 copy of the frames
+ a sparse product took about 20x: bench/bench_neuropil.py).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["neuropil_masks", "extract_neuropil", "iter_neuropil", "neuropil_note",
           "INNER_RADIUS", "MIN_PIXELS", "COEFFICIENT"]

#: suite2p's defaults (parameters.py: inner_neuropil_radius, min_neuropil_pixels,
#: neuropil_coefficient); the rectangle grows 5 pixels a side a step, 100 steps at most
INNER_RADIUS = 2
MIN_PIXELS = 350
COEFFICIENT = 0.7
_STEP = 5
_MAX_STEPS = 100


def _grow4(mask: np.ndarray, times: int) -> np.ndarray:
    """``mask`` grown ``times`` times to its 4-connected neighbours (clipped)."""
    out = mask.copy()
    for _ in range(int(times)):
        g = out.copy()
        g[1:] |= out[:-1]
        g[:-1] |= out[1:]
        g[:, 1:] |= out[:, :-1]
        g[:, :-1] |= out[:, 1:]
        out = g
    return out


def neuropil_masks(labels, ids=None, *, inner_radius: int = INNER_RADIUS,
                   min_pixels: int = MIN_PIXELS) -> tuple[list, np.ndarray]:
    """suite2p-style surround masks of the ROIs of a label image.

    Returns ``(masks, ids)``: per ROI the flat pixel indices (into
    ``labels.ravel()``) of its neuropil mask, in the order of ``ids``
    (default: every id present, ascending).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 2-D integer image, got {labels.dtype} {labels.shape}")
    if int(inner_radius) < 0 or int(min_pixels) < 1:
        raise ValueError(f"inner_radius must be >= 0 and min_pixels >= 1, got {inner_radius} "
                         f"and {min_pixels}")
    from .traces import int64_ids

    labels = int64_ids(labels)  # (uint64 against int64 ids compares as float64)
    Y, X = labels.shape
    cell = labels > 0
    # integral image of the non-cell pixels: a rectangle's count in O(1)
    free = np.zeros((Y + 1, X + 1), dtype=np.int64)
    free[1:, 1:] = np.cumsum(np.cumsum(~cell, axis=0), axis=1)

    def n_free(y0, y1, x0, x1):  # half-open rectangle
        return int(free[y1, x1] - free[y0, x1] - free[y1, x0] + free[y0, x0])

    if ids is None:
        ids = np.unique(labels)
        ids = ids[ids != 0]
    ids = np.asarray(ids, dtype=np.int64).ravel()
    # each id's pixels (ascending flat index) from one sort, not a scan per ROI
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")
    sorted_labels = flat[order]
    lo = np.searchsorted(sorted_labels, ids, side="left")
    hi = np.searchsorted(sorted_labels, ids, side="right")
    masks = []
    r = int(inner_radius)
    for rid, a, b in zip(ids, lo, hi):
        if b <= a:
            raise ValueError(f"ROI {int(rid)} has no pixels in the label image")
        ys, xs = np.divmod(order[a:b], X)
        # the exclusion zone, grown inside a crop that can hold it
        y0, y1 = max(0, ys.min() - r), min(Y, ys.max() + r + 1)
        x0, x1 = max(0, xs.min() - r), min(X, xs.max() + r + 1)
        crop = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        crop[ys - y0, xs - x0] = True
        zone = _grow4(crop, r)
        zy, zx = np.nonzero(zone)
        zy, zx = zy + y0, zx + x0
        in_zone = int(np.count_nonzero(~cell[zy, zx]))
        by0, by1, bx0, bx1 = zy.min(), zy.max() + 1, zx.min(), zx.max() + 1
        for _ in range(_MAX_STEPS):
            by0, by1 = max(0, by0 - _STEP), min(Y, by1 + _STEP)
            bx0, bx1 = max(0, bx0 - _STEP), min(X, bx1 + _STEP)
            if n_free(by0, by1, bx0, bx1) - in_zone > min_pixels:
                break
        box = ~cell[by0:by1, bx0:bx1]
        box[zy - by0, zx - bx0] = False
        py, px = np.nonzero(box)
        masks.append(((py + by0) * X + (px + bx0)).astype(np.int64))
    empty = [int(i) for i, m in zip(ids, masks) if m.size == 0]
    if empty:
        raise ValueError(f"ROIs {empty[:10]} have no neuropil pixels: the label image covers "
                         "their whole surround, so the traces cannot be neuropil-corrected; "
                         "leave the correction off")
    return masks, ids


def extract_neuropil(movie, labels, ids=None, *, inner_radius: int = INNER_RADIUS,
                     min_pixels: int = MIN_PIXELS, chunk_frames: int | None = None):
    """``(Fneu, ids, npix)``: each ROI's neuropil mean per frame, (n, T) float64.

    The ROI means themselves are :func:`napari_catune.traces.extract_traces`;
    corrected traces are ``F - coefficient * Fneu``.
    """
    steps = iter_neuropil(movie, labels, ids, inner_radius=inner_radius,
                          min_pixels=min_pixels, chunk_frames=chunk_frames)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


_kernel = None


def _run_sums8():
    """The compiled kernel (built on first use, cached on disk by numba): each
    run's float64 sum, added to its mask's column of ``out``, for every frame.

    Frames are taken eight at a time, one accumulator each: the eight add
    chains run side by side and eight frames' rows are read together, which
    measured 2.5-4x faster than one frame at a time (the surround runs are
    short: about 11 pixels).  Each frame's pixels are still added one by one in
    the run's order, so the sums are those of a frame-by-frame loop, bit for
    bit (and exact for integer movies)."""
    global _kernel
    if _kernel is None:
        import numba

        @numba.njit(cache=True, nogil=True)
        def run_sums8(frames, starts, lengths, rows, out):
            # frames (k, P); out (k, n) accumulates the sum of each run
            k = frames.shape[0]
            f = 0
            while f + 8 <= k:
                for j in range(starts.shape[0]):
                    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
                    a = starts[j]
                    for q in range(a, a + lengths[j]):
                        s0 += frames[f, q]
                        s1 += frames[f + 1, q]
                        s2 += frames[f + 2, q]
                        s3 += frames[f + 3, q]
                        s4 += frames[f + 4, q]
                        s5 += frames[f + 5, q]
                        s6 += frames[f + 6, q]
                        s7 += frames[f + 7, q]
                    r = rows[j]
                    out[f, r] += s0
                    out[f + 1, r] += s1
                    out[f + 2, r] += s2
                    out[f + 3, r] += s3
                    out[f + 4, r] += s4
                    out[f + 5, r] += s5
                    out[f + 6, r] += s6
                    out[f + 7, r] += s7
                f += 8
            for g in range(f, k):  # the last < 8 frames, one at a time
                for j in range(starts.shape[0]):
                    s = 0.0
                    a = starts[j]
                    for q in range(a, a + lengths[j]):
                        s += frames[g, q]
                    out[g, rows[j]] += s

        _kernel = run_sums8
    return _kernel


def _mask_runs(masks):
    """The masks (flat pixel indices) as runs of consecutive pixels:
    ``(starts, lengths, rows, npix)``, ``rows`` the mask of each run, ordered by
    start (one sweep over a frame; each mask's runs stay in its order).  Runs
    of different masks overlap where surrounds share pixels: the kernel only
    reads the frames, so each run is summed on its own."""
    npix = np.array([m.size for m in masks], dtype=np.int64)
    idx = np.concatenate(masks).astype(np.int64)
    row = np.repeat(np.arange(len(masks), dtype=np.int64), npix)
    new = np.ones(idx.size, dtype=bool)
    new[1:] = (idx[1:] != idx[:-1] + 1) | (row[1:] != row[:-1])
    first = np.flatnonzero(new)
    lengths = np.diff(np.append(first, idx.size))
    starts, rows = idx[first], row[first]
    order = np.argsort(starts, kind="stable")
    return starts[order], lengths[order].astype(np.int64), rows[order], npix


def iter_neuropil(movie, labels, ids=None, *, inner_radius: int = INNER_RADIUS,
                  min_pixels: int = MIN_PIXELS, chunk_frames: int | None = None):
    """:func:`extract_neuropil` as a generator: yields ``(frames_read, T)`` after
    each chunk of frames (a worker's progress, and where it can stop) and
    returns ``(Fneu, ids, npix)``.

    The movie is read in its own dtype, a chunk of about 64 MB at a time; each
    surround is summed as runs of consecutive pixels by a compiled kernel
    (float64 sums; integer movies give the exact mean, correctly rounded).
    Lazy arrays (Dask, zarr) read the next chunk while the current one is
    summed.  The first use compiles the kernel for the movie's dtype (about
    0.4-0.7 s CPU; numba caches it on disk).
    """
    from .traces import _frames_per_chunk, sum_runs_by_chunk

    shape = tuple(getattr(movie, "shape", ()))
    if len(shape) != 3:
        movie = np.asarray(movie)
        shape = movie.shape
        if len(shape) != 3:
            raise ValueError(f"movie must be 3-D (T, Y, X), got shape {shape}")
    dtype = np.dtype(getattr(movie, "dtype", np.float64))
    if dtype.kind not in "biuf":
        raise ValueError(f"movie must hold real numbers, got dtype {dtype}")
    labels = np.asarray(labels)
    if tuple(labels.shape) != tuple(shape[1:]):
        raise ValueError(f"labels {labels.shape} do not match the movie's frames {shape[1:]}")
    masks, ids = neuropil_masks(labels, ids, inner_radius=inner_radius, min_pixels=min_pixels)
    T, Y, X = shape
    P = Y * X
    starts, lengths, rows, npix = _mask_runs(masks)
    if chunk_frames is None:
        chunk_frames = _frames_per_chunk(movie, P * dtype.itemsize)
    chunk_frames = max(1, int(chunk_frames))
    kernel = _run_sums8()
    sums = np.zeros((T, len(masks)), dtype=np.float64)
    bounds = [(t0, min(T, t0 + chunk_frames)) for t0 in range(0, T, chunk_frames)]

    yield from sum_runs_by_chunk(movie, bounds, P, kernel, starts, lengths, rows, sums)
    out = sums.T / npix[:, None]
    return np.ascontiguousarray(out), ids, npix


def neuropil_note(coefficient: float, inner_radius: int = INNER_RADIUS,
                  min_pixels: int = MIN_PIXELS) -> str:
    """What corrected traces are, as the exports record it (``input_traces``)."""
    c = float(coefficient)
    if not (math.isfinite(c) and c >= 0):
        raise ValueError(f"the neuropil coefficient must be a number >= 0, got {coefficient!r}")
    return (f"F - {c:g}*Fneu: F the mean of each ROI's pixels per frame, Fneu the mean of "
            f"its surround (suite2p's neuropil mask: ROI grown {int(inner_radius)} px "
            f"excluded, all ROI pixels excluded, a rectangle grown 5 px a side until it "
            f"holds > {int(min_pixels)} pixels; napari_catune.neuropil)")
