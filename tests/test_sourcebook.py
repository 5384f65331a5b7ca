"""The tuner's cache of traces per movie and Labels pair (Qt-free): F and Fneu
kept once per pair, one coefficient's traces, and the bounds on what is kept."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from napari_catune._qt.sourcebook import SourceBook, pair_of


def _source(origin, F, fneu=None, c=None):
    traces = F if c is None else F - c * fneu
    return SimpleNamespace(origin=origin, F=F, fneu=fneu, neuropil=c, traces=traces,
                           roi_ids=np.arange(1, F.shape[0] + 1))


def _pair(n, shape=(4, 100)):
    image, labels = object(), object()
    return (image, labels), (n, n + 1, n + 2, n + 3), np.ones(shape), np.full(shape, 0.5)


def test_coefficients_share_f_and_fneu_and_one_is_kept():
    book = SourceBook({})
    origin, pair, F, fneu = _pair(1)
    book.put(pair + (None,), _source(origin, F))
    for c in (0.7, 0.4, 0.5):
        prior = book.prior(pair + (c,))
        assert prior.F is F and (prior.fneu is fneu or c == 0.7)
        book.put(pair + (c,), _source(origin, F, fneu, c))
    entry = book.store[pair]
    assert set(entry.sources) == {None, 0.5}  # the plain traces and the last coefficient
    assert book.get(pair + (None,), origin).traces is F
    assert book.get(pair + (0.4,), origin) is None  # made again from F and Fneu, no read
    assert book.prior(pair + (0.4,)).fneu is fneu
    assert entry.nbytes == 3 * F.nbytes  # F (= the plain traces), Fneu, one corrected


def test_pairs_are_bounded_by_count_and_bytes_keeping_the_shown_one():
    book = SourceBook({}, max_pairs=3, max_bytes=10 * 4 * 100 * 8)
    pairs = [_pair(10 * i) for i in range(5)]
    shown = None
    for i, (origin, pair, F, fneu) in enumerate(pairs):
        src = _source(origin, F, fneu, 0.7)
        book.put(pair + (0.7,), src, keep=shown)
        if i == 0:
            shown = src
    # at most 3 pairs; the shown pair (the first) stays, the older others go first
    assert list(book.store) == [pairs[0][1], pairs[3][1], pairs[4][1]]
    # a byte budget of 10 arrays: 3 pairs of 3 arrays fit; a big one drops the rest
    big = _pair(99, shape=(4, 1000))
    book.put(big[1] + (0.7,), _source(big[0], big[2], big[3], 0.7), keep=shown)
    assert list(book.store) == [pairs[0][1], big[1]]
    assert book.nbytes > book.max_bytes  # the pair just read is kept whatever its size


def test_a_read_under_way_is_awaited_by_the_pairs_other_coefficients():
    book = SourceBook({})
    origin, pair, F, fneu = _pair(1)
    first = pair + (0.7,)
    book.started(first, "w", reads_movie=True)
    assert book.awaited(pair + (0.75,)) == first and book.pending(pair + (0.75,))
    assert book.awaited(first) is None  # (it is the read)
    other = (5, 6, 7, 8, 0.7)
    assert book.awaited(other) is None and pair_of(other) != pair
    assert book.follows(pair + (0.9,), first, stale=False)
    assert not book.follows(first, first, stale=False)  # failed or cancelled: not again
    book.drop_layer(SimpleNamespace())  # another layer: nothing stale
    assert book.landed(first)
    assert not book.ended(first, "w") and not book.builds


def test_an_older_step_landing_late_does_not_replace_the_shown_coefficient():
    # two subtract-only reads landing out of order left the older coefficient
    # cached (the shown one dropped: made again, and not held as "keep")
    book = SourceBook({})
    origin, pair, F, fneu = _pair(1)
    book.put(pair + (None,), _source(origin, F))
    s8 = _source(origin, F, fneu, 0.8)
    book.put(pair + (0.8,), s8)  # landed first, shown
    book.put(pair + (0.75,), _source(origin, F, fneu, 0.75), keep=s8)
    assert book.get(pair + (0.8,), origin) is s8
    assert book.get(pair + (0.75,), origin) is None
    assert set(book.store[pair].sources) == {None, 0.8}
    # not shown any more: the next one replaces it as before
    book.put(pair + (0.9,), _source(origin, F, fneu, 0.9), keep=None)
    assert set(book.store[pair].sources) == {None, 0.9}


def test_the_byte_budget_counts_the_label_index_once():
    book = SourceBook({})
    origin, pair, F, fneu = _pair(1)
    index = (np.arange(5, dtype=np.int64), np.zeros(64 * 64, dtype=np.intp))
    plain = _source(origin, F)
    plain.label_index = index
    book.put(pair + (None,), plain)
    corrected = _source(origin, F, fneu, 0.7)
    corrected.label_index = index  # shared by the pair's sources
    book.put(pair + (0.7,), corrected)
    assert book.nbytes == 3 * F.nbytes + index[0].nbytes + index[1].nbytes
