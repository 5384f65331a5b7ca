"""The tuner's source as a user meets it on a big movie (audit aud40): the movie
chosen for a Labels layer survives a switch to another layer and back; the F
rows stay on screen while the neuropil is read; the first read of a movie has
a frames bar and a Cancel, and choosing other layers stops it; a movie with
its time axis last is named as such."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from qtpy.QtCore import Qt

from _widgets import FS, notes, setup, wait  # noqa: F401 - fixtures
from napari_catune.neuropil import extract_neuropil
from napari_catune.traces import extract_traces


def _choose(combo, name):
    """Choose ``name`` in a magicgui combo as a user does (Qt emits activated too)."""
    box = combo.native
    i = box.findText(name)
    assert i >= 0, (name, [box.itemText(k) for k in range(box.count())])
    box.setCurrentIndex(i)
    box.activated.emit(i)


class Slow:
    """A dask movie whose chunk reads in a worker thread wait on ``gate`` once
    ``armed`` is set (``inside`` is set when one waits); napari's own reads
    (the GUI thread) never wait."""

    def __init__(self, movie, chunk=50):
        import dask.array as da

        self.gate, self.armed, self.inside = threading.Event(), threading.Event(), \
            threading.Event()

        def block(x):
            if self.armed.is_set() and threading.current_thread() is not \
                    threading.main_thread():
                self.inside.set()
                assert self.gate.wait(120), "the test never opened the gate"
            return x

        self.data = da.from_array(movie, chunks=(chunk, *movie.shape[1:])).map_blocks(
            block, dtype=movie.dtype)


def add_slow(viewer, name="slow movie"):
    """The viewer's "movie" as a ``Slow`` layer ``name``: (the frames, the Slow)."""
    movie = np.asarray(viewer.layers["movie"].data)
    slow = Slow(movie)
    viewer.add_image(slow.data, name=name)
    return movie, slow


@pytest.fixture(autouse=True)
def _dask_in_the_calling_thread():
    """dask computes in the thread that asks (napari's slicing: the GUI thread;
    the tuner's reads: its worker), so ``Slow`` tells them apart."""
    import dask

    with dask.config.set(scheduler="synchronous"):
        yield


def _rows(w):
    return [r.rid for r in w.traces.shown]


# ------------------------------------------------ the movie survives a switch-back
def test_the_movie_chosen_for_a_labels_layer_survives_a_switch_back(setup, qtbot):
    viewer, w, means, notes = setup
    rois = viewer.layers["rois"]
    ids = sorted(means)
    # a Labels layer carrying its own traces (as a suite2p folder's), deliberately
    # unlike the movie: the user sees which traces are tuned
    own = np.full((len(ids), 450), 1000.0)
    carrier = viewer.add_labels(np.array(rois.data), name="plane0 ROIs", metadata={
        "catune": {"traces": own, "roi_ids": np.array(ids), "fs": FS,
                   "kind": "F - 0.7*Fneu"}})
    _choose(w.labels_combo, "plane0 ROIs")
    wait(qtbot, w)
    assert w.image_combo.value is None  # a traces-carrying layer: its own traces first
    assert w.session.source.origin == (None, carrier)
    _choose(w.image_combo, "movie")
    wait(qtbot, w)
    assert w.session.source.origin[0] is viewer.layers["movie"]
    assert "Traces from the movie 'movie'" in w.status.text()
    _choose(w.labels_combo, "rois")
    wait(qtbot, w)
    _choose(w.labels_combo, "plane0 ROIs")  # back: the movie chosen for it stays chosen
    wait(qtbot, w)
    assert w.image_combo.value is viewer.layers["movie"]
    src = w.session.source
    assert src.origin == (viewer.layers["movie"], carrier)
    np.testing.assert_allclose(src.traces[src.row[3]], means[3])
    # the user's own choice of the layer's traces is said on the status line
    _choose(w.image_combo, w.image_combo.native.itemText(0))
    wait(qtbot, w)
    assert w.session.source.origin == (None, carrier)
    assert w.status.text().startswith("Traces from 'plane0 ROIs' itself"), w.status.text()
    _choose(w.labels_combo, "rois")
    wait(qtbot, w)
    _choose(w.labels_combo, "plane0 ROIs")
    wait(qtbot, w)
    assert w.image_combo.value is None  # (that choice is remembered as well)
    # a removed movie is forgotten: the layer's default again
    _choose(w.image_combo, "movie")
    wait(qtbot, w)
    _choose(w.labels_combo, "rois")
    wait(qtbot, w)
    movie2 = viewer.add_image(np.array(viewer.layers["movie"].data), name="movie 2")
    del viewer.layers["movie"]
    wait(qtbot, w)
    _choose(w.labels_combo, "plane0 ROIs")
    wait(qtbot, w)
    assert w.image_combo.value is None and movie2 in viewer.layers
    assert not notes["error"]


# ------------------------------------------- the F rows stay during the Fneu read
def test_the_rows_and_selection_stay_while_the_neuropil_is_read(setup, qtbot):
    viewer, w, means, notes = setup
    movie, slow = add_slow(viewer)
    _choose(w.image_combo, "slow movie")
    wait(qtbot, w)  # F is read (not held) and cached
    w.select_rois([5, 11])
    wait(qtbot, w)
    assert _rows(w) == [5, 11]
    listed = w.roi_list.listed_ids()
    slow.armed.set()
    qtbot.mouseClick(w.neuropil_box.check, Qt.LeftButton)
    qtbot.waitUntil(slow.inside.is_set, timeout=60_000)
    key = next(iter(w.picker.builds))
    # the neuropil is being read: F's rows, the selection and the list stay
    assert w.session.source is not None and w.session.source.neuropil is None
    assert _rows(w) == [5, 11] and w.selected_rois == [5, 11]
    assert w.roi_list.listed_ids() == listed
    assert "Neuropil being read" in w.status.text()
    assert w.jobs.text(f"extract {key}").startswith("Reading the neuropil of 'slow movie'")
    w.select_rois([3])  # still tunable meanwhile
    qtbot.waitUntil(lambda: _rows(w) == [3], timeout=60_000)
    # Estimate now would fit F, not F - c*Fneu: it says so and waits for the user
    before = w.params
    qtbot.mouseClick(w.controls.estimate_btn, Qt.LeftButton)
    assert w.actions.estimate_worker is None and w.params == before
    assert "neuropil is being read" in notes["warning"][-1]
    # Apply to all clicked now waits for F - c*Fneu: the box is ticked, so the
    # results must not be of the F rows on screen
    qtbot.mouseClick(w.controls.apply_btn, Qt.LeftButton)
    assert "starts once the traces are read" in w.jobs.text("apply")
    slow.armed.clear()
    slow.gate.set()
    qtbot.waitUntil(lambda: w.idle and w.session.source.neuropil == pytest.approx(0.7),
                    timeout=120_000)
    qtbot.waitUntil(lambda: w.actions.apply_worker is None, timeout=120_000)
    assert _rows(w) == [3] and w.selected_rois == [3]
    src = w.session.source
    lab = np.asarray(viewer.layers["rois"].data)
    F, ids = extract_traces(movie, lab)
    fneu, _, _ = extract_neuropil(movie, lab, ids)
    np.testing.assert_allclose(src.traces, F - 0.7 * fneu, rtol=1e-6, atol=1e-9)
    stored = viewer.layers["rois"].metadata["catune"]["results"]
    assert stored["input_traces"].startswith("F - 0.7*Fneu"), stored["input_traces"]
    assert not notes["error"]


# ------------------------------------------------------ the first read: Cancel
def test_cancel_of_the_first_read_leaves_a_clear_state(setup, qtbot):
    viewer, w, means, notes = setup
    movie, slow = add_slow(viewer)
    slow.armed.set()
    _choose(w.image_combo, "slow movie")
    qtbot.waitUntil(slow.inside.is_set, timeout=60_000)
    (key, worker), = w.picker.builds.items()
    job = f"extract {key}"
    assert w.jobs.text(job).startswith("Reading the traces of 'slow movie'")
    btn = w.jobs.cancel_button(job)
    assert btn is not None and btn.isVisibleTo(w)
    qtbot.mouseClick(btn, Qt.LeftButton)
    slow.gate.set()  # the chunk under way ends; the read stops before the next
    qtbot.waitUntil(lambda: not w.picker.builds and w.idle, timeout=60_000)
    assert w.status.text().startswith("Reading cancelled: choose the movie 'slow movie' again")
    assert w.session.source is None and _rows(w) == [] and w.roi_list.listed_ids() == []
    assert w.picker.book.prior(key) is None  # nothing half-read was kept
    assert not notes["error"]
    # choosing the movie again reads it
    slow.armed.clear()
    _choose(w.image_combo, "slow movie")
    qtbot.waitUntil(lambda: w.idle and w.session.source is not None, timeout=120_000)
    src = w.session.source
    assert src.origin[0] is viewer.layers["slow movie"]
    np.testing.assert_allclose(src.traces[src.row[3]], means[3])


def test_the_first_read_has_a_frames_bar_and_other_layers_stop_it(setup, qtbot):
    viewer, w, means, notes = setup
    movie, slow = add_slow(viewer)
    seen = []
    real_update = w.jobs.update
    w.jobs.update = lambda k, v, t=None: (seen.append((v, t)), real_update(k, v, t))
    slow.armed.set()
    _choose(w.image_combo, "slow movie")
    qtbot.waitUntil(slow.inside.is_set, timeout=60_000)
    (key, worker), = w.picker.builds.items()
    aborted = []
    worker.aborted.connect(lambda: aborted.append(True))
    _choose(w.image_combo, "movie")  # other layers: the slow read is not wanted
    slow.gate.set()
    qtbot.waitUntil(lambda: w.idle and w.session.source is not None
                    and w.session.source.origin[0] is viewer.layers["movie"], timeout=120_000)
    assert aborted == [True]
    assert w.picker.book.prior(key) is None  # stopped, not read to the end and cached
    # a read to its end: frames read / T after each chunk
    seen.clear()
    slow.armed.clear()
    _choose(w.image_combo, "slow movie")
    wait(qtbot, w)
    assert seen and seen[-1] == (450, 450) and all(t == 450 for _, t in seen)
    assert w.session.source.origin[0] is viewer.layers["slow movie"]


# ------------------------------------------------------------------- T last
def test_a_movie_with_time_last_is_named_so(setup, qtbot):
    viewer, w, means, notes = setup
    movie = np.asarray(viewer.layers["movie"].data)
    viewer.add_image(np.moveaxis(movie, 0, -1), name="T last")  # (40, 60, 450)
    _choose(w.image_combo, "T last")
    wait(qtbot, w)
    assert len(notes["error"]) == 1, notes["error"]
    msg = notes["error"][0]
    assert "time axis looks last" in msg and "np.moveaxis(movie, -1, 0)" in msg
    assert "(40, 60, 450)" in msg
    # a frame-size mismatch is still said as one
    viewer.add_image(movie[:, :20], name="cropped")
    _choose(w.image_combo, "cropped")
    wait(qtbot, w)
    assert "time axis" not in notes["error"][-1] and "same Y, X" in notes["error"][-1]


def test_an_estimate_of_traces_replaced_meanwhile_is_dropped(setup, qtbot, monkeypatch):
    """An Estimate started on F and finishing after F - c*Fneu replaced the rows
    must not set parameters fitted to F (review revs40)."""
    from napari_catune import session as ses

    viewer, w, means, notes = setup
    started, release = threading.Event(), threading.Event()
    real = ses.estimate_job

    def held(*a, **k):
        started.set()
        assert release.wait(120)
        return real(*a, **k)

    monkeypatch.setattr(ses, "estimate_job", held)
    before = w.params
    qtbot.mouseClick(w.controls.estimate_btn, Qt.LeftButton)
    qtbot.waitUntil(started.is_set, timeout=60_000)
    qtbot.mouseClick(w.neuropil_box.check, Qt.LeftButton)  # F - 0.7*Fneu, read now
    qtbot.waitUntil(lambda: w.session.source is not None
                    and w.session.source.neuropil == pytest.approx(0.7), timeout=120_000)
    release.set()
    qtbot.waitUntil(lambda: w.actions.estimate_worker is None, timeout=120_000)
    wait(qtbot, w)
    # (lambda may follow the new traces' noise: it was never chosen; the kernel not)
    assert (w.params.tau_rise, w.params.tau_decay) == (before.tau_rise, before.tau_decay)
    assert w.actions.last_estimate is None
    assert "Estimate dropped: the traces changed" in w.status.text()


# ------------------------------------- an Apply to all waiting for a first read
def test_an_apply_waiting_for_a_read_is_not_run_on_other_layers_or_after_cancel(setup, qtbot):
    """Apply to all clicked during a first read starts on those traces only: if
    the user picks other layers meanwhile it is dropped and said; if the read is
    cancelled, the read's own message stays (review revs40)."""
    viewer, w, means, notes = setup
    movie, slow = add_slow(viewer)
    slow.armed.set()
    _choose(w.image_combo, "slow movie")
    qtbot.waitUntil(slow.inside.is_set, timeout=60_000)
    qtbot.mouseClick(w.controls.apply_btn, Qt.LeftButton)
    assert "starts once the traces are read" in w.jobs.text("apply")
    _choose(w.image_combo, "movie")  # other layers while the Apply waits
    slow.gate.set()
    qtbot.waitUntil(lambda: w.idle and w.session.source is not None
                    and w.session.source.origin[0] is viewer.layers["movie"], timeout=120_000)
    qtbot.waitUntil(lambda: w.actions.apply_worker is None, timeout=60_000)
    assert "results" not in viewer.layers["rois"].metadata.get("catune", {})
    assert "other layers were chosen" in w.status.text(), w.status.text()
    # a cancelled read: its message stays, followed by what became of the Apply
    slow.gate.clear()
    slow.inside.clear()
    del viewer.layers["slow movie"]
    movie, slow = add_slow(viewer, "slow movie 2")
    slow.armed.set()
    _choose(w.image_combo, "slow movie 2")
    qtbot.waitUntil(slow.inside.is_set, timeout=60_000)
    qtbot.mouseClick(w.controls.apply_btn, Qt.LeftButton)
    (key, _), = w.picker.builds.items()
    qtbot.mouseClick(w.jobs.cancel_button(f"extract {key}"), Qt.LeftButton)
    slow.gate.set()
    qtbot.waitUntil(lambda: not w.picker.builds and w.idle
                    and w.actions.apply_worker is None, timeout=60_000)
    text = w.status.text()
    assert text.startswith("Reading cancelled") and text.endswith("Apply to all was not started."), text
    assert not notes["error"]
