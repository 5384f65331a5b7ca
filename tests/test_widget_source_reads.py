"""The tuner's movie reads when the user acts during them (review revs39): an
edit of a layer during its FIRST read, unchecking 'neuropil' or cancelling
during a new pair's first read, a read that fails while a coefficient step
waits, and what finished reads keep alive (napari keeps every worker)."""

from __future__ import annotations

import gc
import threading
import weakref

import numpy as np
import pytest
from qtpy.QtCore import Qt

import napari_catune.neuropil as _np_mod
import napari_catune.traces as _tr_mod
from _widgets import notes, setup, wait  # noqa: F401 - fixtures
from napari_catune.neuropil import extract_neuropil
from napari_catune.traces import extract_traces


def _worker_thread():
    return threading.current_thread() is not threading.main_thread()


@pytest.fixture
def hold(monkeypatch):
    """hold(kind, fail=None): the workers' F ("F") or Fneu ("Fneu") reads from now
    on wait on a gate (``inside`` is set once one waits); ``fail``: raised after
    the gate instead of reading.  Returns (gate, inside, calls)."""

    def make(kind, fail=None):
        gate, inside, calls = threading.Event(), threading.Event(), []
        if kind == "F":
            real = _tr_mod.iter_traces

            def f(*a, **k):
                if _worker_thread():
                    calls.append(1)
                    inside.set()
                    assert gate.wait(120), "the test never opened the gate"
                    if fail is not None:
                        raise fail
                return (yield from real(*a, **k))

            monkeypatch.setattr(_tr_mod, "iter_traces", f)
        else:
            real = _np_mod.iter_neuropil

            def n(*a, **k):
                if _worker_thread():
                    calls.append(1)
                    inside.set()
                    assert gate.wait(120), "the test never opened the gate"
                    yield 0, 1  # (where a worker may stop)
                    if fail is not None:
                        raise fail
                return (yield from real(*a, **k))

            monkeypatch.setattr(_np_mod, "iter_neuropil", n)
        return gate, inside, calls

    return make


@pytest.fixture
def count(monkeypatch):
    """The workers' reads of the movie for F and for Fneu."""
    got = {"F": 0, "Fneu": 0}
    real_f, real_n = _tr_mod.iter_traces, _np_mod.iter_neuropil

    def f(*a, **k):
        got["F"] += _worker_thread()
        return (yield from real_f(*a, **k))

    def n(*a, **k):
        got["Fneu"] += _worker_thread()
        return (yield from real_n(*a, **k))

    monkeypatch.setattr(_tr_mod, "iter_traces", f)
    monkeypatch.setattr(_np_mod, "iter_neuropil", n)
    return got


def _truth(viewer, labels_name, c=None, movie_name="movie"):
    movie = np.asarray(viewer.layers[movie_name].data)
    lab = np.asarray(viewer.layers[labels_name].data)
    F, ids = extract_traces(movie, lab)
    if c is None:
        return F, ids
    fneu, _, _ = extract_neuropil(movie, lab, ids)
    return F - c * fneu, ids


def _choose(w, name, combo=None):
    combo = (combo or w.labels_combo).native
    combo.setCurrentIndex(combo.findText(name))


def _check(qtbot, w):
    qtbot.mouseClick(w.neuropil_box.check, Qt.LeftButton)


def _ready(w, labels, c="any"):
    s = w.session.source
    return (w.idle and s is not None and s.origin[1] is labels
            and (c == "any" or (s.neuropil is None if c is None else
                                s.neuropil == pytest.approx(c))))


def _neuropil_on(qtbot, viewer, w):
    _check(qtbot, w)
    qtbot.waitUntil(lambda: _ready(w, viewer.layers["rois"], 0.7), timeout=120_000)


# ----------------------------------------------- an edit during the first read
@pytest.mark.parametrize("neuropil", [False, True])
def test_a_paint_during_the_first_read_of_a_layer_is_read_anew(setup, qtbot, hold,
                                                               neuropil):
    # the layer was hooked only once its first read landed, with the fingerprint
    # of the painted ROIs: the erased ROI was shown, cached and applied
    viewer, w, _, notes = setup
    rois = viewer.layers["rois"]
    if neuropil:
        _neuropil_on(qtbot, viewer, w)
    rois2 = viewer.add_labels(np.array(rois.data), name="rois2")
    gate, inside, calls = hold("F")
    _choose(w, "rois2")
    qtbot.waitUntil(inside.is_set, timeout=60_000)
    rois2.brush_size = 30
    rois2.paint((9, 9), 0)  # ROI 3 erased
    assert 3 not in np.unique(rois2.data)
    gate.set()
    qtbot.waitUntil(lambda: _ready(w, rois2), timeout=120_000)
    want, ids = _truth(viewer, "rois2", 0.7 if neuropil else None)
    src = w.session.source
    assert src.roi_ids.tolist() == ids.tolist() and 3 not in ids
    np.testing.assert_array_equal(src.traces, want)
    assert len(calls) == 2  # the read of the old ROIs, then one of the painted ones
    assert not notes["error"]


@pytest.mark.parametrize("what", ["labels", "movie"])
def test_data_replaced_during_the_first_read_is_read_anew(setup, qtbot, hold, what):
    # the read landed under the old data's id, no edit hook ran: no traces, no
    # read under way, "Nothing to apply to" and a stale status line
    viewer, w, _, notes = setup
    rois = viewer.layers["rois"]
    if what == "labels":
        layer = viewer.add_labels(np.array(rois.data), name="rois2")
        gate, inside, _ = hold("F")
        _choose(w, "rois2")
        labels, movie_name = layer, "movie"
    else:
        layer = viewer.add_image(np.asarray(viewer.layers["movie"].data) + 0, name="movie2")
        gate, inside, _ = hold("F")
        _choose(w, "movie2", w.image_combo)
        labels, movie_name = rois, "movie2"
    qtbot.waitUntil(inside.is_set, timeout=60_000)
    new = np.array(layer.data)
    if what == "labels":
        new[new == 3] = 0
    else:
        new = new * 2.0
    layer.data = new
    gate.set()
    qtbot.waitUntil(lambda: _ready(w, labels), timeout=120_000)
    src = w.session.source
    want, ids = _truth(viewer, labels.name, movie_name=movie_name)
    assert src.origin[0] is viewer.layers[movie_name]
    np.testing.assert_array_equal(src.traces, want)
    assert not notes["error"]


# --------------------------------------- unchecking / cancel during a first read
def test_uncheck_during_a_new_pairs_first_read_shows_the_plain_traces_at_once(
        setup, qtbot, hold, count):
    # src39 made the plain traces wait for the whole neuropil read just turned off
    viewer, w, _, notes = setup
    _neuropil_on(qtbot, viewer, w)
    rois2 = viewer.add_labels(np.array(viewer.layers["rois"].data), name="rois2")
    gate, inside, _ = hold("Fneu")
    f0 = count["F"]
    _choose(w, "rois2")
    qtbot.waitUntil(inside.is_set, timeout=60_000)  # F read, Fneu held
    try:
        _check(qtbot, w)  # unchecked
        assert w.session.neuropil is None
        # the Fneu read is still held: only the F already read can answer
        qtbot.waitUntil(lambda: w.session.source is not None
                        and w.session.source.origin[1] is rois2
                        and w.session.source.neuropil is None, timeout=30_000)
        F, _ = _truth(viewer, "rois2")
        np.testing.assert_array_equal(w.session.source.traces, F)
        assert "6 ROIs" in w.status.text()
    finally:
        gate.set()
    wait(qtbot, w)  # the neuropil read nobody wants is cancelled
    assert _ready(w, rois2, None)
    assert count["F"] - f0 == 1 and not notes["error"]


def test_uncheck_during_the_f_read_of_a_new_pair(setup, qtbot, hold, count):
    # unchecked before F is read: the plain traces come as soon as F is read
    viewer, w, _, notes = setup
    _neuropil_on(qtbot, viewer, w)
    rois2 = viewer.add_labels(np.array(viewer.layers["rois"].data), name="rois2")
    gate, inside, _ = hold("F")
    f0, n0 = count["F"], count["Fneu"]
    _choose(w, "rois2")
    qtbot.waitUntil(inside.is_set, timeout=60_000)
    _check(qtbot, w)  # unchecked while F is read
    gate.set()
    qtbot.waitUntil(lambda: _ready(w, rois2, None), timeout=120_000)
    F, _ = _truth(viewer, "rois2")
    np.testing.assert_array_equal(w.session.source.traces, F)
    assert len(_) == 6 and count["F"] - f0 == 1 and not notes["error"]
    assert count["Fneu"] - n0 <= 1  # (cancelled at its first chunk, or done)


def test_cancel_during_a_new_pairs_first_read_reads_f_once_and_says_so(
        setup, qtbot, hold, count):
    viewer, w, _, notes = setup
    _neuropil_on(qtbot, viewer, w)
    rois2 = viewer.add_labels(np.array(viewer.layers["rois"].data), name="rois2")
    f0 = count["F"]
    gate, inside, _ = hold("Fneu")
    _choose(w, "rois2")
    qtbot.waitUntil(inside.is_set, timeout=60_000)
    key = w.picker.key()
    btn = w.jobs.cancel_button(f"extract {key}")
    assert btn is not None
    qtbot.mouseClick(btn, Qt.LeftButton)
    gate.set()
    qtbot.waitUntil(lambda: _ready(w, rois2, None), timeout=120_000)
    F, _ = _truth(viewer, "rois2")
    np.testing.assert_array_equal(w.session.source.traces, F)
    assert not w.neuropil_box.check.isChecked()
    assert "Neuropil cancelled" in w.status.text()  # not overwritten at once
    assert count["F"] - f0 == 1  # the cancelled worker's F is kept
    assert not notes["error"]


# ---------------------------------------------------------- a read that fails
def test_a_failed_read_with_a_waiting_step_is_not_repeated(setup, qtbot, hold):
    viewer, w, _, notes = setup
    gate, inside, calls = hold("Fneu", fail=OSError("the movie's store went away"))
    _check(qtbot, w)
    qtbot.waitUntil(inside.is_set, timeout=60_000)
    qtbot.keyClick(w.neuropil_box.coef, Qt.Key_Up)  # waits for the read under way
    qtbot.waitUntil(lambda: w.picker.key()[4] == pytest.approx(0.75), timeout=10_000)
    gate.set()
    qtbot.waitUntil(lambda: bool(notes["error"]), timeout=60_000)
    wait(qtbot, w)
    assert len(calls) == 1, "the movie was read again after the read failed"
    assert len(notes["error"]) == 1 and "the movie's store went away" in notes["error"][0]
    assert "failed" in w.status.text()


# ------------------------------------------------------------------- memory
def test_finished_reads_keep_no_traces_alive(setup, qtbot, count):
    # napari keeps every worker in its task list; each kept its pair's F/Fneu,
    # the ROI copy and the movie: ~3 (n, T) arrays per pair read again
    from napari_catune.session import TraceSource

    viewer, w, _, notes = setup
    rois = viewer.layers["rois"]
    _neuropil_on(qtbot, viewer, w)
    for k in range(5):
        viewer.add_labels(np.roll(np.array(rois.data), k + 1, axis=1), name=f"r{k}")
    names = ["rois"] + [f"r{k}" for k in range(5)]
    gone = []  # weak references to sources that left the cache
    for name in names * 2:
        _choose(w, name)
        qtbot.waitUntil(lambda: _ready(w, viewer.layers[name]), timeout=120_000)
        for key in (Qt.Key_Up, Qt.Key_Up, Qt.Key_Down):
            qtbot.keyClick(w.neuropil_box.coef, key)
            wait(qtbot, w)
        gc.collect()
        cached = {id(s) for e in w.session.cache.values() for s in e.sources.values()}
        # (type(), not isinstance: gc.get_objects() can hold dead weak proxies of
        # other tests' objects, and isinstance dereferences them: ReferenceError)
        live = [o for o in gc.get_objects() if issubclass(type(o), TraceSource)
                and any(o.origin[1] is lay for lay in viewer.layers)]  # (this test's)
        gone += [weakref.ref(o) for o in live if id(o) not in cached]
        del live
        assert len(w.session.cache) <= 3
    gc.collect()
    cached = {id(s) for e in w.session.cache.values() for s in e.sources.values()}
    kept = [r() for r in gone if r() is not None and id(r()) not in cached
            and r() is not w.session.source]
    assert not kept, (f"{len(kept)} sources outside the cache are still alive: "
                      f"{[(s.origin[1].name, s.neuropil) for s in kept]}")
    assert count["Fneu"] == 12 and not notes["error"]  # (3 pairs kept: each visit reads)
