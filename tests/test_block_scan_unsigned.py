"""The block scan's tests on unsigned indices (_numba_solvers._none_flagged_at,
_flag_mask, _coarse_quiet_next): the same samples as the plain numpy test, at
every run length 1-64 and offset, a flag at the run's first or last sample or
just outside it."""
import numpy as np

from napari_catune import _numba_solvers as ns


def _flags(z, G, tol):
    return (z != 0.0) | (G < -tol)


def test_scan_tests_match_numpy_at_every_length_and_edge():
    rng = np.random.default_rng(3)
    n = 300
    tol = 0.5
    for lo in (0, 1, 63, 64, 200, n - 64):
        for ln in range(1, 65):
            hi = min(n, lo + ln)
            for where in (lo - 1, lo, hi - 1, hi, None):
                z = np.zeros(n)
                G = rng.uniform(-0.4, 1.0, n)
                if where is not None and 0 <= where < n:
                    if rng.random() < 0.5:
                        z[where] = rng.choice([-1.0, 1.0])
                    else:
                        G[where] = -1.0
                f = _flags(z, G, tol)[lo:hi]
                assert ns._none_flagged_at(z, G, lo, hi, tol) == (not f.any())
                want = 0
                for t in np.nonzero(f)[0]:
                    want |= 1 << int(t)
                got = ns._flag_mask(z, G, lo, hi, tol)
                assert np.uint64(np.int64(got)) == np.uint64(want)


def test_quiet_next_reads_each_flagged_chunk_to_its_end():
    n = 64 * 5 + 17
    for c in range(6):
        lo = c << 6
        hi = min(n, lo + 64)
        for where in (lo, hi - 1):
            for kind in ("neg", "viol", "pos"):
                z = np.zeros(n)
                G = np.zeros(n)
                if kind == "neg":
                    z[where] = -1.0
                elif kind == "viol":
                    G[where] = -1.0
                else:
                    z[where] = 1.0
                dirty = np.zeros((n >> 6) + 1, np.bool_)
                dirty[c] = True
                # a positive spike is neither a negative one nor a violator
                assert ns._coarse_quiet_next(z, G, 0.5, dirty) == (kind == "pos")
                dirty[c] = False
                if c + 1 < dirty.shape[0]:
                    dirty[c + 1] = True
                assert ns._coarse_quiet_next(z, G, 0.5, dirty)
