"""The tuner's bookkeeping of movie reads (Qt-free): what is cached per movie
and Labels pair, which reads are under way, and which of them were overtaken
by an edit of their layers.

A read is asked for by a *key*: ``(id(labels), id(labels.data), id(image),
id(image.data), coefficient)`` (image and its data None for a trace file's
tiles; coefficient None: the ROI means as they are).  Its first four items are
the *pair*.

What is kept, per pair (:class:`PairEntry`): the movie's ROI means ``F`` and,
once read, the neuropil means ``fneu`` (both (n, T) float64), the plain source
(its traces are ``F`` itself, no copy) and the source of ONE coefficient, the
last one read, or the one shown when an older step's read lands after it (its
traces, ``F - c*fneu``, are the only other (n, T) array).  So a pair holds at
most three (n, T) float64 arrays (and its sources' label indexes, counted in
the byte budget), and another coefficient
never reads the movie again: it is ``F - c*fneu`` from the entry.  At most
:data:`MAX_PAIRS` pairs are kept, and older pairs are dropped (oldest first)
once the total passes :data:`MAX_BYTES`; the pair just read and the pair
shown are always kept, whatever their size.

At most one read of the movie runs per pair: a coefficient asked for while
the pair's movie is being read waits for that read (:meth:`SourceBook.awaited`)
and is then made from its ``F`` and ``fneu``; the coefficients asked for in
between are never read.
"""

from __future__ import annotations

MAX_PAIRS = 3
MAX_BYTES = 1 << 30  # 1 GiB of (n, T) arrays for the pairs not in use


def source_key(labels, image, coefficient):
    """The key of ``labels`` read from ``image`` (None: the layer's own traces)."""
    return (id(labels), id(labels.data), id(image),
            id(image.data) if image is not None else None,
            coefficient if image is not None else None)


def pair_of(key) -> tuple:
    return tuple(key[:4])


class PairEntry:
    """One pair's traces: ``F``, ``roi_ids``, ``fneu`` (None until read) and
    ``sources`` (coefficient -> TraceSource: None, the plain one, and the last
    coefficient's).  Also what :func:`~.sourcejob.build_job` reuses as
    ``prior``."""

    def __init__(self, origin):
        self.origin = origin  # (image, labels)
        self.F = self.roi_ids = self.fneu = None
        self.sources: dict = {}

    def add(self, src, keep=None) -> None:
        """Keep ``src``; ``keep``: the source shown, whose coefficient is not
        replaced by another landing later (an older step's read)."""
        if src.F is not None:
            self.F, self.roi_ids = src.F, src.roi_ids
        if src.fneu is not None:
            self.fneu = src.fneu
        c = src.neuropil
        if c is not None:  # one coefficient's traces kept, the last
            old = [k for k in self.sources if k is not None]
            if keep is not None and any(self.sources[k] is keep for k in old if k != c):
                return  # the shown coefficient stays (src is not shown: made again if asked)
            for k in old:
                del self.sources[k]
        self.sources[c] = src

    @property
    def nbytes(self) -> int:
        arrays = {id(a): a for a in [self.F, self.fneu]
                  + [s.traces for s in self.sources.values()]
                  + [a for s in self.sources.values()
                     for a in (getattr(s, "label_index", None) or ())] if a is not None}
        return sum(int(getattr(a, "nbytes", 0)) for a in arrays.values())


class SourceBook:
    """The cache (in ``store``, the session's dict: a reopened dock finds it)
    and the reads under way (``builds``: key -> worker)."""

    def __init__(self, store: dict, max_pairs: int = MAX_PAIRS, max_bytes: int = MAX_BYTES):
        self.store = store  # pair -> PairEntry
        self.max_pairs, self.max_bytes = max_pairs, max_bytes
        self.builds: dict = {}
        self._reads_movie: dict = {}  # key -> True when its worker reads the movie
        self.stale: set = set()  # keys of reads whose layers were edited while they ran

    # ------------------------------------------------------------ cache
    def get(self, key, origin=None):
        """The cached source of ``key`` (of these layers, when ``origin`` is
        given: a deleted layer's id may be reused), or None."""
        entry = self.store.get(pair_of(key))
        src = entry.sources.get(key[4]) if entry is not None else None
        if src is None or (origin is not None and src.origin != origin):
            return None
        self.store[pair_of(key)] = self.store.pop(pair_of(key))  # used last: dropped last
        return src

    def prior(self, key):
        """The pair's entry when it holds ``F`` (and ``fneu`` once read), or None."""
        entry = self.store.get(pair_of(key))
        return entry if entry is not None and entry.F is not None else None

    def put(self, key, src, keep=None) -> None:
        """Keep ``src`` (read for ``key``); ``keep``: another source in use
        whose pair must stay."""
        pair = pair_of(key)
        entry = self.store.pop(pair, None) or PairEntry(src.origin)
        entry.add(src, keep)
        self.store[pair] = entry
        held = {pair} | {p for p, e in self.store.items()
                         if any(s is keep for s in e.sources.values())}
        while len(self.store) > self.max_pairs or (
                len(self.store) > 1 and self.nbytes > self.max_bytes):
            old = next((p for p in self.store if p not in held), None)
            if old is None:
                break
            del self.store[old]

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self.store.values())

    def drop_layer(self, layer) -> None:
        """Forget every pair of ``layer`` (its data were edited or replaced), and
        mark the reads of it under way stale: they took the ROIs before the edit."""
        for p in [p for p, e in self.store.items() if layer in e.origin]:
            del self.store[p]
        self.stale.update(k for k in self.builds if id(layer) in (k[0], k[2]))

    # ------------------------------------------------------------ reads
    def started(self, key, worker, reads_movie: bool) -> None:
        self.builds[key] = worker
        self._reads_movie[key] = reads_movie

    def awaited(self, key):
        """The key of the read of ``key``'s pair under way that reads its movie
        (``key`` waits for it and is then made from its F and Fneu), or None."""
        if key in self.builds:
            return None
        return next((k for k in self.builds
                     if pair_of(k) == pair_of(key) and self._reads_movie.get(k)), None)

    def pending(self, key) -> bool:
        """``key`` is being read, or waits for its pair's read."""
        return key in self.builds or self.awaited(key) is not None

    def landed(self, key) -> bool:
        """A read returned: True when its traces are good to keep (its layers
        were not edited while it ran)."""
        return key not in self.stale

    def ended(self, key, worker) -> bool:
        """A read finished (returned, failed or was cancelled): True when it was stale."""
        if self.builds.get(key) is worker:
            del self.builds[key]
            self._reads_movie.pop(key, None)
        was = key in self.stale
        self.stale.discard(key)
        return was

    @staticmethod
    def follows(current, done, stale: bool) -> bool:
        """Whether the chosen ``current`` key is to be read now that the read of
        ``done`` ended: it waited for it (same pair, another coefficient), or
        ``done`` was dropped by an edit of the same layers (read them again)."""
        if stale:
            return (current[0], current[2]) == (done[0], done[2])
        return pair_of(current) == pair_of(done) and current != done
