"""A row's header (ROI id and read-outs) and the legend stay readable in a
420 px dock (audit 39, item 4): the header is shortened in a set order (what the
trace is goes to the tooltip first, then "events/min" becomes "ev/min"), and
wraps at word boundaries if that is not enough; never cut off at the plot's edge."""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QDockWidget

from _widgets import FS, big_viewer, open_tuner, recording, wait
from _widgets import notes  # noqa: F401 - fixture


def _dock(w):
    d = w
    while d is not None and not isinstance(d, QDockWidget):
        d = d.parent()
    return d


def _pipeline_tuner(make_napari_viewer, qtbot):
    """A suite2p-like Labels layer (traces F - 0.7*Fneu in its metadata), 4 rows shown."""
    viewer = big_viewer(make_napari_viewer, show=True)
    _, labels, means = recording()
    ids = sorted(means)
    traces = np.array([means[i] * 500.0 for i in ids])
    viewer.add_labels(labels, name="plane0 ROIs", metadata={"catune": {
        "traces": traces, "fs": FS, "roi_ids": np.array(ids), "kind": "F - 0.7*Fneu"}})
    w = open_tuner(viewer)
    wait(qtbot, w)
    w.select_rois([3, 5, 12, 20])
    wait(qtbot, w)
    return viewer, w


def _fits(w) -> bool:
    """Every row's header ends inside its trace plot and holds every read-out."""
    if not w.idle or w.session.result is None:
        return False
    for r in w.traces.shown:
        text = r.header.toPlainText()
        if not all(k in text for k in (f"ROI {r.rid}", "σ ", "SNR ", "R² ", "/min")):
            return False
        head = r.header.sceneBoundingRect()
        plot = r.trace.sceneBoundingRect()
        if head.right() > plot.right() + 1:
            return False
    return True


def test_row_header_and_legend_fit_a_420_px_dock(make_napari_viewer, qtbot):
    viewer, w = _pipeline_tuner(make_napari_viewer, qtbot)
    wide = [r.header.toPlainText() for r in w.traces.shown]
    dock = _dock(w)
    dock.setFloating(True)
    dock.resize(420, 900)
    qtbot.waitUntil(lambda: dock.width() <= 450, timeout=10_000)
    qtbot.waitUntil(lambda: _fits(w), timeout=20_000)
    for r in w.traces.shown:
        text = r.header.toPlainText()
        # what the trace is: in the header when there is room, else in its tooltip
        assert "F - 0.7·Fneu" in text or "F - 0.7·Fneu" in r.header.toolTip()
        # the header never runs into the plot below it
        assert r.header.boundingRect().height() - 4 <= r.header_room + 6
        # a word is never cut: the last read-out ends with its unit
        assert text.rstrip().endswith(("events/min", "ev/min", "not converged")), text
    # the legend keeps to one line (it does not eat the rows' height)
    fm = w.traces.legend.fontMetrics()
    qtbot.waitUntil(lambda: w.traces.legend.height() < 2 * fm.height(), timeout=10_000)
    # a wide dock again: the long forms come back
    dock.resize(1100, 900)
    qtbot.waitUntil(lambda: dock.width() >= 1000 and _fits(w), timeout=20_000)
    qtbot.waitUntil(lambda: [r.header.toPlainText() for r in w.traces.shown] == wide,
                    timeout=20_000)
    assert all("(F - 0.7·Fneu)" in t and "events/min" in t for t in wide)


def test_a_header_that_fits_no_form_wraps_at_words_and_makes_room(qtbot):
    """Narrower than the shortest form: the header wraps between words (each
    read-out whole) and the trace plot moves down by the extra lines."""
    from napari_catune._qt.rowplot import HEADER_H, Row

    r = Row()
    forms = ['<span>■ ROI 12 &nbsp; σ 17 · SNR 92.4 · R² 0.99 · 80.6 ev/min</span>']
    r.set_header(forms, 400.0)
    assert r.header_room == HEADER_H  # one line: as before
    one = r.header.boundingRect().height()
    r.set_header(forms, 120.0)
    assert r.header.boundingRect().width() <= 121
    assert r.header.boundingRect().height() > 1.5 * one  # wrapped
    assert r.header_room >= HEADER_H + r.header.boundingRect().height() - one - 1
    assert r.header.toPlainText().replace("\u2028", " ").split() == \
        "■ ROI 12 σ 17 · SNR 92.4 · R² 0.99 · 80.6 ev/min".split()
    r.set_header(forms, 400.0)
    assert r.header_room == HEADER_H  # room back to one line
