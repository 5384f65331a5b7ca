"""``estimate``'s memory (audit 41: 1.6-1.9 GB peak for 383 x 54,000, ~8x the
rows, where ``deconvolve`` took 0.76 GB): the per-row measures run on groups
of rows and the rows are not copied, with the same numbers as before."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from napari_catune import estimate as E

from _synth import calcium_traces

REALGT = Path("/work/shared/realgt-dev")


def _peak(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_estimate_peak_stays_near_the_rows_size():
    x = calcium_traces(60, 40_000, fs=30.0, tau_r=0.05, tau_d=0.5, seed=2)  # 19 MB float64
    want = E.estimate_report(x, 30.0, max_traces=1)
    got = []
    peak = _peak(lambda: got.append(E.estimate_report(x, 30.0, max_traces=1)))
    # before: a float64 copy of the rows plus Welch's segments and FFT of all
    # rows at once, 9.5x the rows here; now the groups' temporaries (~100 MB
    # at most whatever the input, ~2x these rows)
    assert peak < 3.0 * x.nbytes, f"peak {peak / 1e6:.0f} MB for {x.nbytes / 1e6:.0f} MB of rows"
    assert got[0].params == want.params and np.array_equal(got[0].noise, want.noise)


def test_cli_sampled_rows_are_read_once():
    from napari_catune import cli

    class Source:  # float32 rows, read a chunk at a time
        def __init__(self, y):
            self.y, (self.n, self.T) = y, y.shape

        def read(self, a, b):
            return self.y[a:b]

    y = np.random.default_rng(1).normal(size=(120, 20_000)).astype(np.float32)
    y[7, 50] = np.nan  # a bad row: left out
    src = Source(y)
    out = []
    peak = _peak(lambda: out.append(cli._finite_rows(src, 30, limit=100)))
    rows, kept, lengths = out[0]
    idx = cli._sampled_rows(120, 100)
    assert np.array_equal(kept, idx[idx != 7]) and lengths.size == idx.size
    assert rows.dtype == np.float64 and np.array_equal(rows, y[kept].astype(np.float64))
    # before: the blocks kept in a list and joined, the rows twice over
    assert peak < 1.4 * rows.nbytes, f"peak {peak / 1e6:.0f} MB for {rows.nbytes / 1e6:.0f} MB"


def _realgt(name, n):
    f = REALGT / f"{name}.npz"
    if not f.is_file():
        pytest.skip(f"no {f}")
    d = np.load(f)
    y = np.array(d["fluorescence"][:n], dtype=np.float64)
    lengths = d["lengths"][:n]
    for i, length in enumerate(lengths):
        y[i, length:] = np.nan  # NaN padding after each row's end, as in the file
    return y[:, : lengths.max()], float(d["fs"])


# (tau_decay, lambda, median noise) from the estimator before the grouping
# (main at c7d73bf, same commands): bit for bit
BEFORE = {
    ("DS07-GCaMP6f-zf-dD", 12): (0.39372020812227027, 0.008635392200605855,
                                  0.029211158589637142),
    ("DS31-GCaMP8m-m-V1", 8): (0.2619259964303917, 0.02114911587544823,
                                0.11810520234722718),
}


@pytest.mark.parametrize("name,n", list(BEFORE))
def test_estimates_are_bit_identical_in_any_grouping(name, n, monkeypatch):
    y, fs = _realgt(name, n)
    r = E.estimate_report(y, fs, max_traces=3)
    assert (r.params.tau_decay, r.params.lam, r.noise_median) == BEFORE[(name, n)]
    # one row a group (with DS07's padded row alone), and all rows at once
    monkeypatch.setattr(E, "_GROUP_SAMPLES", y.shape[1])
    one = E.estimate_report(y, fs, max_traces=3)
    monkeypatch.setattr(E, "_GROUP_SAMPLES", 1 << 40)
    whole = E.estimate_report(y, fs, max_traces=3)
    for other in (one, whole):
        assert other.params == r.params
        assert np.array_equal(other.noise, r.noise)
        assert np.array_equal(other.rows, r.rows)
        assert np.array_equal(other.tau_decay_rows, r.tau_decay_rows, equal_nan=True)
