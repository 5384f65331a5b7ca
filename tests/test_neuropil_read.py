"""How the neuropil (Fneu) is read: the movie in its own dtype (no float64
copy of the frames), each surround summed as runs of pixels by a compiled
kernel, the same numbers as before (main's float64 copy + sparse product) to
float64 rounding, and exact means for integer movies."""

from __future__ import annotations

import math
import threading
import time
import tracemalloc

import numpy as np
import pytest
from scipy import sparse

from napari_catune.neuropil import (_mask_runs, extract_neuropil, iter_neuropil,
                                    neuropil_masks)


def _labels():
    """ROIs at every edge and corner, two close enough that their surrounds overlap."""
    lab = np.zeros((60, 70), np.int32)
    yy, xx = np.mgrid[:60, :70]
    for rid, (cy, cx) in zip((2, 7, 9, 4, 11, 5),
                             ((10, 10), (12, 20), (40, 50), (57, 3), (0, 66), (30, 69))):
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= 16] = rid
    return lab


def _movie(dtype, T=45, seed=0):
    rng = np.random.default_rng(seed)
    shape = (T,) + _labels().shape
    if np.dtype(dtype).kind == "f":
        return (rng.normal(0, 1, shape) * 1e3 + 200).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


def _csr_main(movie, masks):
    """main's read before round 40: float64 copy of the frames, csr product."""
    T = movie.shape[0]
    P = movie.shape[1] * movie.shape[2]
    npix = np.array([m.size for m in masks])
    mat = sparse.csr_matrix((np.repeat(1.0 / npix, npix),
                             (np.repeat(np.arange(len(masks)), npix), np.concatenate(masks))),
                            shape=(len(masks), P))
    return mat @ np.asarray(movie, dtype=np.float64).reshape(T, P).T


def _exact(movie, masks):
    """Each surround's mean per frame, the sum exact (integers in int64, floats by fsum)."""
    flat = np.asarray(movie).reshape(movie.shape[0], -1)
    out = np.empty((len(masks), flat.shape[0]))
    for i, m in enumerate(masks):
        g = flat[:, m]
        if g.dtype.kind in "iub":
            out[i] = g.astype(np.int64).sum(axis=1) / m.size
        else:
            out[i] = [math.fsum(row) / m.size for row in g.astype(np.float64)]
    return out


def test_the_test_labels_have_overlapping_surrounds_and_edge_rois():
    masks, ids = neuropil_masks(_labels())
    seen = np.zeros(60 * 70, int)
    for m in masks:
        seen[m] += 1
    assert seen.max() >= 2  # surrounds share pixels: runs of different masks overlap
    ys, xs = np.nonzero(_labels())
    assert ys.min() == 0 and ys.max() == 59 and xs.min() == 0 and xs.max() == 69


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("kind", ["ndarray", "memmap", "dask"])
@pytest.mark.parametrize("ids", [None, [9, 2, 11], [4]])
def test_fneu_is_the_exact_mean_and_main_s_to_float64_rounding(tmp_path, dtype, kind, ids):
    movie = _movie(dtype)
    lab = _labels()
    if kind == "memmap":
        mm = np.memmap(tmp_path / "m.bin", dtype=dtype, mode="w+", shape=movie.shape)
        mm[:] = movie
        mm.flush()
        src = np.memmap(tmp_path / "m.bin", dtype=dtype, mode="r", shape=movie.shape)
    elif kind == "dask":
        import dask.array as da

        src = da.from_array(movie, chunks=(10, -1, -1))
    else:
        src = movie
    # 19-frame chunks: blocks of 8 frames and the frames left over (19 = 16 + 3, 45 = 19+19+7)
    fneu, got_ids, npix = extract_neuropil(src, lab, ids, chunk_frames=19)
    masks, want_ids = neuropil_masks(lab, ids)
    assert got_ids.tolist() == want_ids.tolist()
    assert npix.tolist() == [m.size for m in masks]
    assert fneu.dtype == np.float64 and fneu.shape == (len(masks), movie.shape[0])
    exact = _exact(movie, masks)
    if np.dtype(dtype).kind in "iu":  # exact sums, one rounding: bit for bit
        np.testing.assert_array_equal(fneu, exact)
    else:
        np.testing.assert_allclose(fneu, exact, rtol=1e-12, atol=0)
    # main's numbers, to float64 rounding (relative to the movie's scale: int16
    # surrounds can average near 0)
    scale = float(np.abs(movie).max())
    np.testing.assert_allclose(fneu, _csr_main(movie, masks), rtol=1e-12, atol=1e-12 * scale)


@pytest.mark.parametrize("dtype", [bool, np.float16, ">u2", ">f4", np.int32, np.uint8])
def test_other_dtypes_give_the_exact_means(dtype):
    base = _movie(np.uint16, T=21)
    if dtype is bool:
        movie = base % 3 == 0
    else:
        movie = (base % 200).astype(dtype)
    lab = _labels()
    fneu, _, _ = extract_neuropil(movie, lab, chunk_frames=10)
    masks, _ = neuropil_masks(lab)
    np.testing.assert_allclose(fneu, _exact(movie.astype(np.float64), masks), rtol=1e-12)


def test_a_nan_pixel_spoils_only_the_surrounds_that_hold_it():
    movie = _movie(np.float32, T=12)
    lab = _labels()
    masks, ids = neuropil_masks(lab)
    px = masks[0][0]  # a pixel of the first surround
    movie.reshape(12, -1)[5, px] = np.nan
    fneu, _, _ = extract_neuropil(movie, lab)
    holds = np.array([px in m for m in masks])
    assert np.isnan(fneu[holds, 5]).all() and np.isfinite(fneu[~holds]).all()
    assert np.isfinite(np.delete(fneu, 5, axis=1)).all()


def test_the_frames_are_read_in_their_own_dtype_not_copied_to_float64():
    """An int16 movie in memory: main's read made a float64 copy of each chunk (4x
    the chunk's bytes); now nothing the size of the frames is allocated."""
    movie = _movie(np.int16, T=400)  # 3.4 MB; a float64 copy would be 13.4 MB
    lab = _labels()
    extract_neuropil(movie[:9], lab)  # compile / cache load outside the trace
    tracemalloc.start()
    try:
        fneu, _, _ = extract_neuropil(movie, lab)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.2 * movie.nbytes, peak  # sums and result: 400 x 6 x 8 B each, and masks
    masks, _ = neuropil_masks(lab)
    np.testing.assert_array_equal(fneu, _exact(movie, masks))


def test_default_chunks_count_the_movie_s_own_bytes(monkeypatch):
    from napari_catune import traces

    monkeypatch.setattr(traces, "_CHUNK_BYTES", 60 * 70 * 2 * 10)  # ten int16 frames
    steps = iter_neuropil(_movie(np.int16, T=25), _labels())
    seen = []
    while True:
        try:
            seen.append(next(steps))
        except StopIteration:
            break
    assert seen == [(10, 25), (20, 25), (25, 25)]  # main: 2-frame chunks (float64 bytes)


class _Lazy:
    """A lazy movie (no ndarray): counts chunk reads; the second one waits on `gate`."""

    def __init__(self, movie):
        self.movie, self.shape, self.dtype = movie, movie.shape, movie.dtype
        self.reads = 0
        self.gate = threading.Event()
        self.second_started = threading.Event()

    def __getitem__(self, key):
        self.reads += 1
        if self.reads == 2:
            self.second_started.set()
            self.gate.wait(30)
        return self.movie[key]


def test_a_lazy_read_stopped_early_returns_at_once_and_reads_no_further():
    movie = _movie(np.uint16, T=40)
    lazy = _Lazy(movie)
    steps = iter_neuropil(lazy, _labels(), chunk_frames=10)
    assert next(steps) == (10, 40)  # chunk 1 summed; chunk 2 being read ahead (held)
    assert lazy.second_started.wait(30)
    closed = threading.Event()
    t = threading.Thread(target=lambda: (steps.close(), closed.set()))
    t.start()
    # the stop does not wait for the read under way
    assert closed.wait(10), "closing the generator waited for the read ahead"
    lazy.gate.set()
    t.join(10)
    deadline = time.monotonic() + 30
    while lazy.reads < 2 and time.monotonic() < deadline:  # (the held read finishes)
        time.sleep(0.01)
    assert lazy.reads == 2  # nothing read after the stop


def test_a_lazy_read_to_the_end_equals_the_in_memory_read():
    movie = _movie(np.int16, T=33)
    lazy = _Lazy(movie)
    lazy.gate.set()
    got, _, _ = extract_neuropil(lazy, _labels(), chunk_frames=10)
    ref, _, _ = extract_neuropil(movie, _labels(), chunk_frames=33)
    np.testing.assert_array_equal(got, ref)
    assert lazy.reads == 4


def test_runs_cover_each_mask_exactly():
    masks, _ = neuropil_masks(_labels())
    starts, lengths, rows, npix = _mask_runs(masks)
    assert (np.diff(starts) >= 0).all()  # one sweep over the frame
    for i, m in enumerate(masks):
        mine = rows == i
        px = np.concatenate([np.arange(s, s + n) for s, n in zip(starts[mine], lengths[mine])])
        assert np.sort(px).tolist() == m.tolist() and npix[i] == m.size


def test_a_movie_that_is_not_real_numbers_is_refused():
    movie = _movie(np.float32, T=4).astype(np.complex64)
    with pytest.raises(ValueError, match="real numbers"):
        extract_neuropil(movie, _labels())


def test_uint64_ids_beyond_float_precision_stay_apart():
    """Hashed segmentations give uint64 ids >= 2**53: compared with int64 ids as
    float64 two such ids merged into one mask (review revm40)."""
    from napari_catune.neuropil import neuropil_masks

    lab = np.zeros((40, 50), np.uint64)
    lab[5:8, 5:8] = 2**53
    lab[20:23, 20:23] = 2**53 + 1
    masks, ids = neuropil_masks(lab)
    assert [int(i) for i in ids] == [2**53, 2**53 + 1]
    small = lab.astype(np.int64)
    small[small == 2**53], small[small == 2**53 + 1] = 1, 2
    want, _ = neuropil_masks(small)
    for m, w in zip(masks, want):
        np.testing.assert_array_equal(m, w)
    lab[lab == 2**53] = 2**63 + 5
    with pytest.raises(ValueError, match="above 2\\*\\*63 - 1; renumber"):
        neuropil_masks(lab)
