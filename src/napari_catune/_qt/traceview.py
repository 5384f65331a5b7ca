"""The tuner's trace view: one row per selected ROI, a time axis and an overview.

Each row is the ROI's trace (neutral grey) with its fit (the ROI's colour)
and the fit's baseline (dashed) in the trace's own units and y-range, a
legend above the rows saying which line is what, and the deconvolved activity beneath
it on the same time axis; the ROI id and its read-outs head the row.  All
rows share one time window, in seconds and never below 0; the overview strip
under them shows the whole recording with the window as a draggable region.
Only the rows scrolled into view are drawn; the others catch up when they
come into view.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import QLabel, QScrollArea, QVBoxLayout, QWidget

from .rowplot import (ACT_MIN, HEADER_H, HEADER_LEVELS, LEFT_W, LEGEND_TIP, TRACE_MIN, Row,
                      header_html, header_tip, legend_html, text_width as _text_width,
                      window_slice)
from .rowplot import trace_name  # noqa: F401 - re-exported (the tuner imports it from here)
from .timestrip import FULL, TimeStrip, strip_for

DEFAULT_WINDOW_S = 45.0


class TraceView(QWidget):
    """Rows of traces, a shared time axis and an overview with the window.

    Signals
    -------
    frame_requested(int)   a click in a plot, or the overview's cursor dragged
    window_moved(float, float)  the time window (s) moved, rows shown
    """

    frame_requested = Signal(int)
    window_moved = Signal(float, float)
    MAX_ROWS = 20

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows_glw = pg.GraphicsLayoutWidget()
        self.rows_glw.ci.layout.setContentsMargins(0, 0, 0, 0)
        self.rows_glw.ci.layout.setVerticalSpacing(0)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.rows_glw)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.strip = TimeStrip()  # the time axis and the overview, under the rows
        self.bottom_glw, self.axis_plot = self.strip.glw, self.strip.axis
        self.overview, self.overview_curve = self.strip.overview, self.strip.curve
        self.region, self.cursor = self.strip.region, self.strip.cursor
        self.cursor.sigDragged.connect(lambda line: self.frame_requested.emit(
            int(round(line.value() * self.fs))))
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        self.legend = QLabel()
        self.legend.setToolTip(LEGEND_TIP)
        self.legend.setContentsMargins(LEFT_W - 4, 1, 0, 1)
        self.legend.setWordWrap(True)
        lay.addWidget(self.legend)
        lay.addWidget(self.scroll, 1)
        lay.addWidget(self.bottom_glw)

        self.rows: list[Row] = []
        self.shown: list[Row] = []
        #: a window ``(x0, x1, n_frames, fs)`` to open the first rows of that
        #: recording with (a reopened dock's), instead of the first 45 s
        self.restore: tuple | None = None
        self.fs = 1.0
        self.n_frames = 0
        self.x = np.zeros(0)
        self.unit = "raw"
        self._pal = None
        self._res = None
        self.residual = False
        self._pinned = False
        self._syncing = False
        # read-outs follow once a drag pauses: re-laying out text costs a frame
        self._header_timer = QTimer(self)
        self._header_timer.setSingleShot(True)
        self._header_timer.setInterval(150)
        self._header_timer.timeout.connect(self._headers)
        self._draw_timer = QTimer(self)  # rows moved by a new layout: draw once it settles
        self._draw_timer.setSingleShot(True)
        self._draw_timer.setInterval(0)
        self._draw_timer.timeout.connect(lambda: self.draw())
        self.region.sigRegionChanged.connect(self._region_moved)
        self.axis_plot.vb.sigXRangeChanged.connect(self._view_moved)
        self.scroll.verticalScrollBar().valueChanged.connect(lambda _: self.draw())
        for g in (self.rows_glw, self.bottom_glw):
            g.scene().sigMouseClicked.connect(lambda ev, g=g: self._clicked(ev, g.scene()))
        # the first rows are built while the user has not selected yet, one per
        # turn of the event loop (a row's plots take ~8-20 ms to make): the first
        # selection then only fills them
        self._ahead = QTimer(self)
        self._ahead.setInterval(100)
        self._ahead.timeout.connect(self._build_ahead)
        self._ahead.start()

    #: rows built ahead of the first selection
    BUILT_AHEAD = 4

    def _build_ahead(self) -> None:
        if len(self.rows) >= self.BUILT_AHEAD:
            self._ahead.stop()
        else:
            self._row(len(self.rows))

    @property
    def pending(self) -> bool:
        """True while the rows' read-outs wait to be written."""
        return self._header_timer.isActive() or self._draw_timer.isActive()

    # ------------------------------------------------------------ rows
    def _row(self, i: int) -> Row:
        while len(self.rows) <= i:
            r = Row()
            for p in (r.trace, r.act):
                p.vb.sigXRangeChanged.connect(self._view_moved)
            r.act.geometryChanged.connect(self._draw_timer.start)
            if self._pal is not None:
                r.style(self._pal)
            self.rows.append(r)
        return self.rows[i]

    def set_rows(self, ids, colors, traces: np.ndarray, fs: float, unit: str = "raw",
                 truth: dict | None = None) -> None:
        """Show the selected ROIs: ``traces`` (k, T) are what will be fitted;
        ``unit`` names them in the row headers ("dF/F", "raw" or a name such as
        :func:`trace_name`'s); ``truth`` maps an ROI id to the times (s) of its
        true events."""
        ids = [int(i) for i in ids][: self.MAX_ROWS]
        k = len(ids)
        traces = np.atleast_2d(np.asarray(traces, dtype=np.float64)) if k else np.zeros((0, 0))
        new_len = traces.shape[1] if k else self.n_frames
        resize = new_len != self.n_frames or float(fs) != self.fs
        self.fs, self.n_frames, self.unit = float(fs), int(new_len), unit
        self.x = np.arange(self.n_frames, dtype=np.float64) / self.fs
        self._res = None
        self._legend()
        ci = self.rows_glw.ci
        for r in self.shown:
            ci.removeItem(r.trace)
            ci.removeItem(r.act)
        self.shown = []
        for i, rid in enumerate(ids):
            r = self._row(i)
            t = np.asarray((truth or {}).get(rid, ()), dtype=np.float64)
            r.set(rid, colors[i], traces[i], t)
            if self._pal is not None:
                r.style(self._pal)
            ci.addItem(r.trace, row=2 * i, col=0)
            ci.addItem(r.act, row=2 * i + 1, col=0)
            ci.layout.setRowStretchFactor(2 * i, 3)
            ci.layout.setRowStretchFactor(2 * i + 1, 1)
            self._head(r, None)
            self.shown.append(r)
        self.rows_glw.setMinimumHeight(k * (TRACE_MIN + HEADER_H + ACT_MIN + 4))
        self._overview(traces[0] if k else None)
        self.overview.setLabel("left", f"ROI {ids[0]}" if k else " ")
        keep, self.restore = self.restore, (self.restore if k == 0 else None)
        if keep is not None and k and tuple(keep[2:]) == (self.n_frames, self.fs):
            self.set_window(float(keep[0]), float(keep[1]))
        elif resize or k == 0:
            self.set_window(0.0, min(DEFAULT_WINDOW_S, self.duration))
        else:
            self.set_window(*self.window)  # new rows join the current window
        self.fit_strip()

    def clear(self) -> None:
        """No source (its layer removed): no rows, and the time axis, window and
        overview of a new view, not the last recording's."""
        self.n_frames = 0
        self.set_rows([], [], np.zeros((0, 0)), 1.0)
        self.set_cursor_frame(0)

    @property
    def duration(self) -> float:
        return max(self.n_frames - 1, 1) / self.fs

    def _overview(self, y) -> None:
        self.strip.set_curve(self.x, y, self.duration, self.n_frames)

    # ---------------------------------------------------------- results
    def set_result(self, res) -> None:
        """Fits and activity of a live result (rows in ``res.ids`` order)."""
        self._res = res
        for i, r in enumerate(self.shown):
            r.data["raw"] = res.trace[i]
            r.data["fit"] = res.fit[i]
            r.data["activity"] = res.activity[i]
            # the solver's baseline: per sample ("drift", "rolling") or one level
            b = res.baseline[i]
            r.data["base"] = b if np.ndim(b) else float(b)
            # the run holding the calcium present before the recording does not
            # set the activity row's y-range (it can be 10x the rest)
            r.data["act_from"] = int(res.initial_ends[i])
            r.dirty = True
        self.draw()
        self._header_timer.start()

    def show_residual(self, on: bool) -> None:
        """Draw the trace minus the fit instead of the trace and its fit."""
        self.residual = bool(on)
        self._legend()
        for r in self.shown:
            r.dirty = True
        self.draw()

    def set_pinned(self, res) -> None:
        """Draw the pinned fit (dashed) on the rows of the ROIs it holds."""
        for r in self.shown:
            ok = res is not None and r.rid in res.ids and res.fit.shape[1] == self.n_frames
            r.data["pinned"] = res.fit[res.ids.index(r.rid)] if ok else None
            b = res.baseline[res.ids.index(r.rid)] if ok else None
            r.data["pinned_base"] = b if b is None or np.ndim(b) else float(b)
            r.dirty = True
        self._pinned = any(r.data.get("pinned") is not None for r in self.shown)
        self._legend()
        self.draw()

    def draw(self, everything: bool = False) -> None:
        """Draw the rows that are scrolled into view and out of date."""
        if not self.shown:
            return
        sl = window_slice(*self.window, self.fs, self.n_frames)
        bins = max(64, int(self.rows_glw.width()) - LEFT_W)
        top = float(self.scroll.verticalScrollBar().value())
        bottom = top + max(self.scroll.viewport().height(), 1)
        for r in self.shown:
            if (r.dirty or everything) and r.visible_in(top, bottom):
                r.draw(self.x, sl, bins, self.residual)
        # new y-ranges take effect now, not in the paint (pyqtgraph defers them to its
        # start, so the items they move would be painted a second time on the next turn)
        self.rows_glw.scene().prepareForPaint()

    def header_width(self) -> float:
        """Room for a row's header (px): the rows' width right of where it starts."""
        return float(self.scroll.viewport().width() - (LEFT_W - 4) - 6)

    def _head(self, r: Row, res) -> None:
        """Write ``r``'s header in the longest form that fits the width (a narrow
        dock first leaves what the trace is to the tooltip, then shortens
        "events/min"; what still does not fit wraps, never cut)."""
        forms = [header_html(r, res, self._pal, self.unit, level)
                 for level in range(HEADER_LEVELS)]
        r.set_header(forms, self.header_width(), header_tip(r, res, self.unit))

    def _headers(self) -> None:
        res = self._res
        for r in self.shown:
            self._head(r, res)
        self._legend()
        self.fit_strip()  # (a header or the legend may have wrapped)

    def _legend(self) -> None:
        """Which line is what, for the rows shown (the baseline's model of the live fit):
        the long words when they fit on one line, else the short ones."""
        args = (self._pal, self.shown, self._res, self.residual, self._pinned)
        html = legend_html(*args)
        m = self.legend.contentsMargins()
        room = self.legend.width() - m.left() - m.right() - 2
        if html and _text_width(html, self.legend.font()) > room:
            html = legend_html(*args, short=True)
        if html != self.legend.text():
            self.legend.setText(html)

    # ----------------------------------------------------------- window
    @property
    def window(self) -> tuple[float, float]:
        return tuple(self.axis_plot.vb.viewRange()[0])

    def set_window(self, x0: float, x1: float) -> None:
        """Show seconds ``x0..x1`` (kept within the recording)."""
        d = self.duration
        for p in self._plots():
            p.vb.setLimits(xMin=0.0, xMax=d, minXRange=min(d, 10.0 / self.fs))
        x0, x1 = max(0.0, x0), min(d, x1)
        if x1 <= x0:
            x0, x1 = 0.0, d
        self._move_to(x0, x1)

    def _plots(self):
        return [self.axis_plot] + [q for r in self.shown for q in (r.trace, r.act)]

    def _move_to(self, x0: float, x1: float, source=None) -> None:
        """Every time plot to ``x0..x1`` (one window for all rows), the region too."""
        if self._syncing:
            return
        self._syncing = True
        try:
            for p in self._plots():
                if p.vb is not source:
                    p.vb.setXRange(x0, x1, padding=0)
            self.region.setRegion((x0, x1))
        finally:
            self._syncing = False
        for r in self.shown:
            r.dirty = True
        self.draw()
        if self.shown:
            self.window_moved.emit(float(x0), float(x1))

    def _view_moved(self, vb, rng) -> None:
        if not self._syncing:
            self._move_to(float(rng[0]), float(rng[1]), source=vb)

    def _region_moved(self, *_) -> None:
        if not self._syncing:
            x0, x1 = self.region.getRegion()
            self._move_to(max(0.0, x0), min(self.duration, x1))

    def fit_strip(self) -> None:
        """The time strip as full as leaves one whole row in view (timestrip.py)."""
        if not self.shown:
            self.strip.show(FULL)
            return
        r = self.shown[0]
        row_h = max(self.rows_glw.minimumHeight() / len(self.shown),
                    r.trace.minimumHeight() + r.act.minimumHeight() + 4)
        lg = self.legend
        legend_h = lg.heightForWidth(self.width()) if lg.text() else 0
        room = self.height() - max(legend_h, 0) - 2 * self.scroll.frameWidth()
        self.strip.show(strip_for(room, row_h))

    def resizeEvent(self, ev):  # noqa: N802 - Qt API
        super().resizeEvent(ev)
        self.fit_strip()
        for r in self.shown:
            r.dirty = True  # a new width: a new decimation
        self._draw_timer.start()
        if ev.size().width() != ev.oldSize().width():
            self._header_timer.start()  # a new width: headers and legend fitted to it

    # ------------------------------------------------------------ theme
    def set_theme(self, pal) -> None:
        self._pal = pal
        self.rows_glw.setBackground(pal.background)
        self.strip.set_theme(pal)
        for r in self.rows:
            r.style(pal)
        self._headers()

    # ----------------------------------------------------------- cursor
    def set_cursor_frame(self, frame: int) -> None:
        x = float(frame) / self.fs
        for c in [self.cursor] + [c for r in self.shown for c in r.cursors]:
            if c.value() != x:
                c.blockSignals(True)
                c.setValue(x)
                c.blockSignals(False)

    @property
    def cursor_seconds(self) -> float:
        return float(self.cursor.value())

    def _clicked(self, ev, scene) -> None:
        if ev.button() != Qt.LeftButton:
            return
        pos = ev.scenePos()
        for p in [self.overview] + self._plots():
            if p.scene() is not scene:
                continue
            vb = p.getViewBox()
            if vb.sceneBoundingRect().contains(pos):
                x = vb.mapSceneToView(pos).x()
                self.frame_requested.emit(int(round(min(max(x, 0.0), self.duration) * self.fs)))
                return

    def scene_pos_of_time(self, seconds: float, plot=None):
        """Scene position of time ``seconds`` in the middle of ``plot`` (tests)."""
        p = plot or self.shown[0].act
        vb = p.getViewBox()
        y = float(np.mean(vb.viewRange()[1]))
        return vb.mapViewToScene(pg.Point(seconds, y))
