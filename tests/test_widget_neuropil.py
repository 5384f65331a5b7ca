"""Neuropil correction in the tuner (a movie + Labels source): the 'neuropil'
check box and coefficient read each ROI's surround once, in the extraction
worker; another coefficient reuses F and Fneu; Labels edits read both anew;
Apply to all and the saved files use and record the corrected traces, equal
to ``napari-catune extract --neuropil`` + ``deconvolve``."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from qtpy.QtCore import Qt

import napari_catune.neuropil as _np_mod
import napari_catune.traces as _tr_mod
from _widgets import notes, setup, wait  # noqa: F401 - fixtures
from napari_catune import cli
from napari_catune._qt import sourcejob
from napari_catune.neuropil import extract_neuropil, neuropil_note
from napari_catune.results import load_results
from napari_catune.traces import ROI_MEAN_TRACES, extract_traces


@pytest.fixture
def counted(monkeypatch):
    """How often a worker reads the movie for F and for Fneu (the test's own
    reads on the main thread do not count), and on which threads the corrected
    traces are computed."""
    got = {"F": 0, "Fneu": 0, "threads": [], "coefs": []}
    real_f, real_n, real_sub = (_tr_mod.iter_traces, _np_mod.iter_neuropil,
                                sourcejob.neuropil_traces)

    def worker():
        return threading.current_thread() is not threading.main_thread()

    def f(*a, **k):
        got["F"] += worker()
        return (yield from real_f(*a, **k))

    def n(*a, **k):
        got["Fneu"] += worker()
        return (yield from real_n(*a, **k))

    def sub(*a, **k):
        got["threads"].append(threading.current_thread())
        got["coefs"].append(a[2])
        return real_sub(*a, **k)

    monkeypatch.setattr(_tr_mod, "iter_traces", f)
    monkeypatch.setattr(_np_mod, "iter_neuropil", n)
    monkeypatch.setattr(sourcejob, "neuropil_traces", sub)
    return got


@pytest.fixture
def held(monkeypatch):
    """The worker's Fneu read waits on ``gate`` (``inside`` is set once it
    waits), then yields one chunk (where a worker may stop) and reads."""
    gate, inside = threading.Event(), threading.Event()
    real = _np_mod.iter_neuropil

    def read(*a, **k):
        inside.set()
        gate.wait(120)
        yield 0, 1
        return (yield from real(*a, **k))

    monkeypatch.setattr(_np_mod, "iter_neuropil", read)
    return gate, inside


def _parts(viewer):
    movie, lab = viewer.layers["movie"].data, np.asarray(viewer.layers["rois"].data)
    F, ids = extract_traces(movie, lab)
    fneu, _, _ = extract_neuropil(movie, lab, ids)
    return F, fneu, ids


def _set_coefficient(qtbot, w, text):
    le = w.neuropil_box.coef.lineEdit()
    le.selectAll()
    qtbot.keyClicks(le, text)
    qtbot.keyClick(le, Qt.Key_Return)


def _solved(w, ids, src):
    """The selection ``ids`` fitted on ``src``'s traces (the bandpass is off)."""
    res = w.session.result
    return (w.idle and w.session.source is src and res is not None
            and res.ids == tuple(ids) and not w.params.filter_enabled
            and np.array_equal(res.trace, src.traces[[src.row[i] for i in ids]]))


def test_check_and_coefficient_correct_the_traces_reading_the_movie_once(setup, qtbot,
                                                                         counted, tmp_path):
    viewer, w, means, notes = setup
    box = w.neuropil_box
    assert box.check.isEnabled() and not box.check.isChecked()
    assert not box.coef.isEnabled() and box.coef.value() == pytest.approx(0.7)
    w.select_rois([5, 12])
    wait(qtbot, w)
    F, fneu, ids = _parts(viewer)
    src0 = w.session.source
    np.testing.assert_allclose(src0.traces, F)
    reads = counted["F"]

    qtbot.mouseClick(box.check, Qt.LeftButton)
    assert box.check.isChecked() and box.coef.isEnabled()
    assert w.session.neuropil == pytest.approx(0.7)
    qtbot.waitUntil(lambda: w.session.source is not None
                    and w.session.source.neuropil is not None, timeout=60_000)
    src = w.session.source
    qtbot.waitUntil(lambda: _solved(w, [5, 12], src), timeout=60_000)
    np.testing.assert_array_equal(src.traces, F - 0.7 * fneu)  # extract --neuropil's sum
    assert counted["Fneu"] == 1 and counted["F"] == reads  # F reused: the movie read once
    assert w.selected_rois == [5, 12]  # the selection kept and solved again
    # the rows drawn are the corrected traces
    np.testing.assert_array_equal(np.asarray(w.traces.shown[0].data["raw"]),
                                  src.traces[src.row[5]])
    assert all("(F - 0.7·Fneu)" in r.header.toPlainText() for r in w.traces.shown)

    _set_coefficient(qtbot, w, "0.4")
    qtbot.waitUntil(lambda: w.session.source is not None
                    and w.session.source.neuropil == pytest.approx(0.4), timeout=60_000)
    src4 = w.session.source
    qtbot.waitUntil(lambda: _solved(w, [5, 12], src4), timeout=60_000)
    np.testing.assert_array_equal(src4.traces, F - 0.4 * fneu)
    assert counted["Fneu"] == 1 and counted["F"] == reads  # no movie read for a coefficient
    main = threading.main_thread()
    assert counted["threads"] and all(t is not main for t in counted["threads"])

    # the results and the parameter file say what the traces were
    qtbot.mouseClick(w.controls.apply_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.actions.apply_worker is None, timeout=120_000)
    said = neuropil_note(0.4)
    rois = viewer.layers["rois"]
    assert rois.metadata["catune"]["results"]["input_traces"] == said
    out = tmp_path / "res.npz"
    rois.save(str(out), plugin="napari-catune")
    assert load_results(out)["input_traces"] == said
    assert w.save_params(str(tmp_path / "p.json"))
    meta = json.loads((tmp_path / "p.json").read_text())["metadata"]
    assert meta["input_traces"] == said

    # unchecked: the plain ROI means again, from the cache
    qtbot.mouseClick(box.check, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.session.source is not None
                    and w.session.source.neuropil is None, timeout=60_000)
    wait(qtbot, w)
    assert w.session.source is src0 and not box.coef.isEnabled()
    assert counted["Fneu"] == 1 and counted["F"] == reads
    assert not notes["error"]


def test_apply_to_all_equals_extract_neuropil_then_deconvolve(setup, qtbot, tmp_path):
    viewer, w, _, notes = setup
    qtbot.mouseClick(w.neuropil_box.check, Qt.LeftButton)
    _set_coefficient(qtbot, w, "0.55")
    qtbot.waitUntil(lambda: w.session.source is not None
                    and w.session.source.neuropil == pytest.approx(0.55), timeout=60_000)
    wait(qtbot, w)
    qtbot.mouseClick(w.controls.apply_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.actions.apply_worker is None, timeout=120_000)
    rois = viewer.layers["rois"]
    got = rois.metadata["catune"]["results"]
    assert got["input_traces"] == neuropil_note(0.55)

    np.save(tmp_path / "movie.npy", np.asarray(viewer.layers["movie"].data))
    np.save(tmp_path / "masks.npy", np.asarray(rois.data))
    tr = tmp_path / "tr.npz"
    assert cli.main(["extract", str(tmp_path / "movie.npy"), str(tmp_path / "masks.npy"),
                     "--fs", str(w.params.fs), "--neuropil", "0.55", "-o", str(tr), "-q"]) == 0
    with np.load(tr) as z:
        np.testing.assert_array_equal(z["traces"], w.session.source.traces)
    assert w.save_params(str(tmp_path / "p.json"))
    res = tmp_path / "res.npz"
    assert cli.main(["deconvolve", str(tr), "--params", str(tmp_path / "p.json"), "-o",
                     str(res), "--full", "-q"]) == 0
    ref = load_results(res)
    assert ref["input_traces"] == got["input_traces"]
    np.testing.assert_array_equal(ref["roi_ids"], got["roi_ids"])
    scale = np.abs(ref["activity"]).max()
    np.testing.assert_allclose(got["activity"], ref["activity"], atol=1e-6 * scale)
    np.testing.assert_allclose(got["reconvolution"], ref["fit"],
                               atol=1e-6 * np.abs(ref["fit"]).max())
    assert not notes["error"]


def test_labels_edit_reads_f_and_fneu_anew(setup, qtbot, counted):
    viewer, w, _, notes = setup
    qtbot.mouseClick(w.neuropil_box.check, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.session.source is not None
                    and w.session.source.neuropil is not None, timeout=60_000)
    wait(qtbot, w)
    f0, n0 = counted["F"], counted["Fneu"]
    rois = viewer.layers["rois"]
    rois.selected_label = 3
    rois.paint((20, 20), 3)  # ROI 3 grows: its F changes, and its neighbours' surrounds
    qtbot.waitUntil(lambda: counted["Fneu"] == n0 + 1, timeout=60_000)
    qtbot.waitUntil(lambda: w.session.source is not None
                    and w.session.source.neuropil is not None, timeout=60_000)
    wait(qtbot, w)
    assert counted["F"] == f0 + 1
    F, fneu, _ = _parts(viewer)
    np.testing.assert_array_equal(w.session.source.traces, F - 0.7 * fneu)
    # undo: read anew again
    rois.undo()
    qtbot.waitUntil(lambda: counted["Fneu"] == n0 + 2, timeout=60_000)
    wait(qtbot, w)
    F, fneu, _ = _parts(viewer)
    np.testing.assert_array_equal(w.session.source.traces, F - 0.7 * fneu)
    assert not notes["error"]


def test_a_paint_during_the_neuropil_read_is_read_anew(setup, qtbot, held):
    # review rev38n: a paint while Fneu was being read left F of the old ROIs
    # minus Fneu of the new ones, shown, cached and applied
    viewer, w, _, notes = setup
    gate, inside = held
    qtbot.mouseClick(w.neuropil_box.check, Qt.LeftButton)
    qtbot.waitUntil(inside.is_set, timeout=60_000)  # the worker has F, and waits to read Fneu
    rois = viewer.layers["rois"]
    rois.selected_label = 3
    rois.paint((20, 20), 3)
    qtbot.waitUntil(lambda: not w.picker._edit_timer.isActive(), timeout=60_000)
    gate.set()
    qtbot.waitUntil(lambda: not w.picker.builds and w.session.source is not None
                    and w.session.source.neuropil is not None, timeout=120_000)
    wait(qtbot, w)
    F, fneu, _ = _parts(viewer)
    np.testing.assert_array_equal(w.session.source.traces, F - 0.7 * fneu)
    assert not notes["error"]


def test_no_movie_no_neuropil_and_the_tooltip_says_why(setup, qtbot, counted):
    viewer, w, _, notes = setup
    box = w.neuropil_box
    assert "F - c*Fneu" in box.check.toolTip()
    combo = w.image_combo.native
    combo.setCurrentIndex(combo.findText("(none: traces in the Labels layer)"))
    assert w.image_combo.value is None and w.session.source is None  # (the movie's dropped)
    assert not box.check.isEnabled() and not box.coef.isEnabled()
    assert "already are F - 0.7*Fneu" in box.check.toolTip()
    combo.setCurrentIndex(combo.findText("movie"))
    wait(qtbot, w)
    assert box.check.isEnabled() and "already are" not in box.check.toolTip()
    assert w.session.source is not None
    # the ROIs carry no traces: said once, when "(none...)" was chosen
    assert len(notes["error"]) == 1 and "no traces and no movie" in notes["error"][0]


def _cancel_and_check_plain_traces_kept(qtbot, w, btn, gate, src0, notes):
    """Click the read's Cancel ``btn``, release the held read, and check the
    neuropil is off again with the plain traces ``src0`` kept and said."""
    qtbot.mouseClick(btn, Qt.LeftButton)
    gate.set()
    qtbot.waitUntil(lambda: not w.neuropil_box.check.isChecked(), timeout=60_000)
    wait(qtbot, w)
    assert w.session.neuropil is None and w.session.source is src0
    assert "Neuropil cancelled" in w.status.text()
    assert not notes["error"]


def test_cancel_the_neuropil_read_keeps_the_plain_traces(setup, qtbot, held):
    viewer, w, _, notes = setup
    gate, _inside = held
    viewer.layers["movie"].name = "2026-12-06 mouse 12 V1 jGCaMP8m plane 0 registered movie"
    src0 = w.session.source
    qtbot.mouseClick(w.neuropil_box.check, Qt.LeftButton)
    key = w.picker.key()
    qtbot.waitUntil(lambda: w.jobs.cancel_button(f"extract {key}") is not None, timeout=10_000)
    btn = w.jobs.cancel_button(f"extract {key}")
    assert btn.isVisible() and "neuropil" in w.jobs.text(f"extract {key}")
    # its line (a long movie name) never widens the dock past napari's ~420 px
    assert w.jobs.minimumSizeHint().width() <= 400
    _cancel_and_check_plain_traces_kept(qtbot, w, btn, gate, src0, notes)


def _steps_during_the_read(qtbot, w, held, n):
    """Check the box, then press Up ``n`` times while the Fneu read is held."""
    gate, inside = held
    box = w.neuropil_box
    qtbot.mouseClick(box.check, Qt.LeftButton)
    qtbot.waitUntil(inside.is_set, timeout=60_000)  # the worker waits to read Fneu
    first = w.picker.key()
    for _ in range(n):
        qtbot.keyClick(box.coef, Qt.Key_Up)
    last = round(first[4] + 0.05 * n, 2)
    qtbot.waitUntil(lambda: w.picker.key()[4] == pytest.approx(last), timeout=10_000)
    return first, last


def test_steps_during_the_first_read_wait_for_it(setup, qtbot, counted, held):
    # review rev38n: each step of the coefficient during the first Fneu read started
    # its own read of the movie; now they wait, and the last one is applied
    viewer, w, _, notes = setup
    gate, _ = held
    reads = counted["F"]
    first, last = _steps_during_the_read(qtbot, w, held, 4)
    assert list(w.picker.builds) == [first]  # one read under way, one job line
    assert w.picker.building
    gate.set()
    qtbot.waitUntil(lambda: not w.picker.builds and w.session.source is not None
                    and w.session.source.neuropil is not None, timeout=120_000)
    wait(qtbot, w)
    src = w.session.source
    assert src.neuropil == pytest.approx(last) and w.neuropil_box.coef.value() == \
        pytest.approx(last)
    F, fneu, _ = _parts(viewer)
    np.testing.assert_array_equal(src.traces, F - last * fneu)
    assert counted["Fneu"] == 1 and counted["F"] == reads  # the movie read once, for Fneu
    # the read's own coefficient, then the last one; those in between never
    assert counted["coefs"] == pytest.approx([first[4], last])
    assert not notes["error"]


def test_cancel_during_the_steps_cancels_the_one_read(setup, qtbot, held):
    # the steps share the read under way: its Cancel turns the neuropil off (the
    # plain traces stay), not only an older coefficient's read
    viewer, w, _, notes = setup
    gate, _ = held
    src0 = w.session.source
    first, _last = _steps_during_the_read(qtbot, w, held, 2)
    assert list(w.picker.builds) == [first]
    _cancel_and_check_plain_traces_kept(qtbot, w, w.jobs.cancel_button(f"extract {first}"), gate,
                                        src0, notes)


def test_another_pair_and_its_coefficients_keep_the_first_pairs_f_and_fneu(setup, qtbot,
                                                                          counted):
    # the cache held 3 entries, one per coefficient: a second Labels layer and a few
    # coefficient steps on it pushed the first pair's F and Fneu out (a movie read)
    viewer, w, _, notes = setup
    box = w.neuropil_box
    rois = viewer.layers["rois"]
    qtbot.mouseClick(box.check, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.session.source is not None
                    and w.session.source.neuropil is not None, timeout=60_000)
    wait(qtbot, w)
    viewer.add_labels(np.array(rois.data), name="rois2")
    combo = w.labels_combo.native
    combo.setCurrentIndex(combo.findText("rois2"))
    qtbot.waitUntil(lambda: w.session.source is not None
                    and w.session.source.origin[1] is viewer.layers["rois2"]
                    and w.session.source.neuropil is not None, timeout=60_000)
    wait(qtbot, w)
    reads = counted["F"], counted["Fneu"]
    for k in range(1, 4):
        qtbot.keyClick(box.coef, Qt.Key_Up)
        qtbot.waitUntil(lambda: w.session.source is not None and w.session.source.neuropil
                        == pytest.approx(0.7 + 0.05 * k), timeout=60_000)
        wait(qtbot, w)
    combo.setCurrentIndex(combo.findText("rois"))
    qtbot.waitUntil(lambda: w.session.source is not None
                    and w.session.source.origin[1] is rois, timeout=60_000)
    wait(qtbot, w)
    F, fneu, _ = _parts(viewer)
    np.testing.assert_array_equal(w.session.source.traces, F - 0.85 * fneu)
    assert (counted["F"], counted["Fneu"]) == reads  # no movie read: F and Fneu at hand
    assert not notes["error"]
