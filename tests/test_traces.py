"""extract_traces and roi_snr."""

import numpy as np
import pytest

from napari_catune.traces import extract_traces, roi_snr


def _data(T=37, Y=23, X=31, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    movie = (rng.random((T, Y, X)) * 1000).astype(dtype)
    labels = np.zeros((Y, X), np.int32)
    labels[2:7, 3:9] = 5
    labels[10:12, 0:31] = 2  # spans whole rows
    labels[15, 20] = 9  # single pixel
    labels[18:23, 25:31] = 3
    labels[4, 10:14] = 5  # ROI 5 in two pieces
    return movie, labels


def _naive(movie, labels, ids):
    m = np.asarray(movie, dtype=np.float64)
    return np.array([m[:, labels == i].mean(axis=1) for i in ids])


def test_matches_naive_mean_numpy():
    movie, labels = _data()
    tr, ids = extract_traces(movie, labels)
    np.testing.assert_array_equal(ids, [2, 3, 5, 9])
    assert tr.dtype == np.float64 and tr.shape == (4, 37)
    np.testing.assert_allclose(tr, _naive(movie, labels, ids), rtol=0, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32,
                                   np.float16, ">u2", bool])
def test_dtypes(dtype):
    movie, labels = _data(dtype=np.float64)
    movie = (movie / 4).astype(dtype) if dtype is not bool else movie > 500
    tr, ids = extract_traces(movie, labels)
    np.testing.assert_allclose(tr, _naive(movie, labels, ids), rtol=0, atol=1e-9)


def test_matches_naive_mean_dask():
    import dask.array as da
    movie, labels = _data()
    dm = da.from_array(movie, chunks=(8, -1, -1))
    tr, ids = extract_traces(dm, labels)
    np.testing.assert_allclose(tr, _naive(movie, labels, ids), rtol=0, atol=1e-9)


def test_zarr_and_memmap(tmp_path):
    import zarr
    movie, labels = _data(dtype=np.uint16)
    z = zarr.open(str(tmp_path / "m.zarr"), mode="w", shape=movie.shape, chunks=(5, 23, 31),
                  dtype=movie.dtype)
    z[:] = movie
    expect = _naive(movie, labels, [2, 3, 5, 9])
    np.testing.assert_allclose(extract_traces(z, labels)[0], expect, atol=1e-9, rtol=0)
    mm = np.memmap(tmp_path / "m.dat", dtype=movie.dtype, mode="w+", shape=movie.shape)
    mm[:] = movie
    mm.flush()
    mm = np.memmap(tmp_path / "m.dat", dtype=movie.dtype, mode="r", shape=movie.shape)
    np.testing.assert_allclose(extract_traces(mm, labels)[0], expect, atol=1e-9, rtol=0)


class _Recorder:
    """A lazily indexed movie that records what is read."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.reads = data, data.shape, data.dtype, []

    def __getitem__(self, key):
        assert isinstance(key, slice), "only frame slices, never the whole movie at once"
        self.reads.append((key.start, key.stop))
        return self.data[key]


def test_one_pass_in_bounded_chunks():
    movie, labels = _data(T=100)
    rec = _Recorder(movie)
    tr, ids = extract_traces(rec, labels, chunk_frames=16)
    assert all(b - a <= 16 for a, b in rec.reads)
    # every frame read exactly once, in order
    assert [a for a, _ in rec.reads] == list(range(0, 100, 16))
    assert rec.reads[-1][1] == 100
    np.testing.assert_allclose(tr, _naive(movie, labels, ids), rtol=0, atol=1e-9)


def test_chunk_size_does_not_change_result():
    movie, labels = _data()
    a, _ = extract_traces(movie, labels, chunk_frames=1)
    b, _ = extract_traces(movie, labels, chunk_frames=1000)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)


def test_ids_order_subset_and_noncontiguous_view():
    movie, labels = _data()
    tr, ids = extract_traces(movie, labels, ids=[9, 2])
    np.testing.assert_array_equal(ids, [9, 2])
    np.testing.assert_allclose(tr, _naive(movie, labels, [9, 2]), rtol=0, atol=1e-9)
    view = movie[::2]  # not C-contiguous in time
    tr2, _ = extract_traces(view, labels, ids=[3])
    np.testing.assert_allclose(tr2, _naive(view, labels, [3]), rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "movie_shape, labels, fragment",
    [
        ((5, 23, 31), np.zeros((23, 30), np.int32), r"labels shape \(23, 30\) does not match"),
        ((5, 23, 31), np.zeros((1, 23, 31), np.int32), "2-D"),
        ((23, 31), np.zeros((23, 31), np.int32), r"movie must be 3-D.*\(23, 31\)"),
        ((2, 5, 23, 31), np.zeros((23, 31), np.int32), r"movie must be 3-D"),
        ((5, 23, 31), np.ones((23, 31), np.float32), "must be integers"),
        ((5, 23, 31), -np.ones((23, 31), np.int32), r"negative values \[-1\]"),
        ((5, 23, 31), np.zeros((23, 31), np.int32), "no ROI"),
    ],
)
def test_bad_input(movie_shape, labels, fragment):
    with pytest.raises(ValueError, match=fragment):
        extract_traces(np.zeros(movie_shape, np.float32), labels)


def test_absent_ids_are_an_error():
    movie, labels = _data()
    with pytest.raises(ValueError, match=r"ROI ids \[7, 11\] are not in the labels"):
        extract_traces(movie, labels, ids=[2, 7, 11])
    with pytest.raises(ValueError, match="empty"):
        extract_traces(movie, labels, ids=[])
    with pytest.raises(ValueError, match="integers"):
        extract_traces(movie, labels, ids=[2.5])


def test_complex_movie_refused():
    _, labels = _data()
    with pytest.raises(ValueError, match="real numbers"):
        extract_traces(np.zeros((3, 23, 31), complex), labels)


# ---------------------------------------------------------------- roi_snr


def test_snr_orders_by_signal():
    rng = np.random.default_rng(0)
    fs, T = 30.0, 3000
    t = np.arange(T) / fs
    events = np.zeros(T)
    events[rng.choice(T, 30, replace=False)] = 1
    calcium = np.convolve(events, np.exp(-np.arange(60) / 15.0))[:T]
    noise = rng.standard_normal((4, T))
    traces = np.array([0, 1, 3, 10])[:, None] * calcium + noise + 100 + np.sin(t / 10)[None]
    snr = roi_snr(traces, fs)
    assert snr.shape == (4,)
    assert np.all(np.diff(snr) > 0)
    assert snr[0] < 2.5  # noise + slow drift only
    assert roi_snr(traces[3], fs).shape == (1,)
    assert roi_snr(traces * 7 + 3, fs) == pytest.approx(snr)  # scale/offset invariant


def test_snr_flat_and_noiseless():
    snr = roi_snr(np.array([np.full(200, 5.0), np.r_[np.zeros(100), np.ones(100)]]), 10.0)
    assert snr[0] == 0 and snr[1] == np.inf
    with pytest.raises(ValueError, match="fs"):
        roi_snr(np.zeros((2, 100)), 0)
    with pytest.raises(ValueError, match="shape"):
        roi_snr(np.zeros((2, 3, 100)), 30)


# ---------------------------------------------------------------- iter_traces
def _drain(gen):
    got = []
    while True:
        try:
            got.append(next(gen))
        except StopIteration as done:
            return got, done.value


@pytest.mark.parametrize("lazy", [False, True])
def test_iter_traces_yields_progress_and_returns_the_same_numbers(lazy):
    from napari_catune.traces import iter_traces

    movie, labels = _data(T=100, dtype=np.uint16)
    src = _Recorder(movie) if lazy else movie
    got, (tr, ids) = _drain(iter_traces(src, labels, [9, 2, 5], chunk_frames=16))
    assert got == [(t, 100) for t in (16, 32, 48, 64, 80, 96, 100)]
    ref, ref_ids = extract_traces(movie, labels, [9, 2, 5], chunk_frames=16)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(tr, ref)  # bit for bit
    assert tr.flags.c_contiguous and tr.dtype == np.float64


def test_iter_traces_closed_between_chunks_reads_no_more():
    from napari_catune.traces import iter_traces

    movie, labels = _data(T=100)
    rec = _Recorder(movie)
    gen = iter_traces(rec, labels, chunk_frames=10)
    assert next(gen) == (10, 100)
    gen.close()
    # the chunk read ahead (a lazy movie's prefetch) at most; never the rest
    assert len(rec.reads) <= 2 and rec.reads[-1][1] <= 20


def test_iter_traces_checks_its_arguments_on_the_first_step():
    from napari_catune.traces import iter_traces

    movie, labels = _data()
    gen = iter_traces(movie, labels[:5])
    with pytest.raises(ValueError, match="does not match"):
        next(gen)


def test_uint64_ids_beyond_float_precision_get_their_own_traces():
    """uint64 labels with ids >= 2**53 were compared with int64 ids as float64:
    their traces came back NaN (review revs40)."""
    lab = np.zeros((20, 30), np.uint64)
    lab[2:5, 2:5] = 2**53
    lab[10:14, 10:14] = 2**53 + 1
    movie = np.arange(3 * 20 * 30, dtype=np.float64).reshape(3, 20, 30)
    traces, ids = extract_traces(movie, lab)
    assert [int(i) for i in ids] == [2**53, 2**53 + 1] and np.isfinite(traces).all()
    np.testing.assert_allclose(traces[1], movie[:, 10:14, 10:14].mean(axis=(1, 2)))
    lab[lab == 2**53] = 2**63 + 5
    with pytest.raises(ValueError, match="renumber"):
        extract_traces(movie, lab)
