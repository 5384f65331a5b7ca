"""The tuner's trace view: one row per selected ROI, a time axis and an overview.

Each row is the ROI's trace (neutral grey) with its fit (the ROI's colour)
in the trace's own units and y-range, and the deconvolved activity beneath
it on the same time axis; the ROI id and its read-outs head the row.  All
rows share one time window, in seconds and never below 0; the overview strip
under them shows the whole recording with the window as a draggable region.
Curves are created once per row and updated in place with ``setData``.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QGraphicsTextItem, QScrollArea, QVBoxLayout, QWidget

from .controls import fmt

LEFT_W = 52  # left axis width, the same for every plot so the time axes line up
HEADER_H = 17
TRACE_MIN, ACT_MIN = 64, 30
DEFAULT_WINDOW_S = 45.0


def _rgb(c) -> str:
    return "#%02x%02x%02x" % tuple(int(v) for v in c[:3])


def _style(p: pg.PlotItem) -> None:
    p.hideButtons()
    p.setMenuEnabled(False)
    p.setMouseEnabled(x=True, y=False)
    p.setDownsampling(auto=True, mode="peak")
    p.setClipToView(True)
    p.hideAxis("bottom")
    p.getAxis("left").setWidth(LEFT_W)
    p.getAxis("left").enableAutoSIPrefix(False)
    p.vb.disableAutoRange()
    p.showGrid(x=True, y=False, alpha=0.12)


class _Row:
    """The plots and curves of one ROI."""

    def __init__(self):
        self.trace = pg.PlotItem()
        self.act = pg.PlotItem()
        for p in (self.trace, self.act):
            _style(p)
        self.trace.layout.setContentsMargins(0, HEADER_H, 4, 0)
        self.act.layout.setContentsMargins(0, 0, 4, 6)
        self.trace.setMinimumHeight(TRACE_MIN + HEADER_H)
        self.act.getAxis("left").setStyle(showValues=False)
        self.act.setMinimumHeight(ACT_MIN)
        self.raw = self.trace.plot()
        self.pinned = self.trace.plot()
        self.fit = self.trace.plot()
        self.activity = self.act.plot()
        self.truth = pg.PlotCurveItem(connect="pairs")  # one tick per true event
        self.act.addItem(self.truth)
        self.cursors = [pg.InfiniteLine(angle=90, movable=False) for _ in range(2)]
        self.trace.addItem(self.cursors[0], ignoreBounds=True)
        self.act.addItem(self.cursors[1], ignoreBounds=True)
        self.header = QGraphicsTextItem(self.trace)
        self.header.setPos(LEFT_W - 4, -4)
        self.rid = None
        self.color = (255, 255, 255, 255)
        self.truth_t = np.zeros(0)
        self.act_top = 1.0

    def curves(self):
        return (self.raw, self.pinned, self.fit, self.activity)


class TraceView(QWidget):
    """Rows of traces, a shared time axis and an overview with the window.

    Signals
    -------
    frame_requested(int)   a click in a plot, or the overview's cursor dragged
    """

    frame_requested = Signal(int)
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
        self.bottom_glw = pg.GraphicsLayoutWidget()
        self.bottom_glw.ci.layout.setContentsMargins(0, 0, 0, 0)
        self.bottom_glw.setFixedHeight(118)
        self.axis_plot = self.bottom_glw.addPlot(row=0, col=0)
        self.overview = self.bottom_glw.addPlot(row=1, col=0)
        ax = self.axis_plot
        ax.hideButtons()
        ax.setMenuEnabled(False)
        ax.setMouseEnabled(x=True, y=False)
        ax.getAxis("left").setWidth(LEFT_W)
        ax.getAxis("left").setStyle(showValues=False)
        ax.getAxis("left").setPen(pg.mkPen(None))
        ax.setLabel("bottom", "time (s)")
        ax.getAxis("bottom").enableAutoSIPrefix(False)
        ax.setFixedHeight(44)
        ax.layout.setContentsMargins(0, 0, 4, 0)
        ov = self.overview
        _style(ov)
        ov.setMouseEnabled(x=False, y=False)
        ov.showGrid(x=False, y=False)
        ov.showAxis("bottom")
        ov.getAxis("bottom").enableAutoSIPrefix(False)
        ov.getAxis("left").setStyle(showValues=False)
        ov.setLabel("left", "all")
        ov.layout.setContentsMargins(0, 2, 4, 0)
        self.overview_curve = ov.plot()
        self.region = pg.LinearRegionItem(orientation="vertical")
        self.region.setZValue(10)
        ov.addItem(self.region, ignoreBounds=True)
        self.cursor = pg.InfiniteLine(angle=90, movable=True)
        ov.addItem(self.cursor, ignoreBounds=True)
        self.cursor.sigDragged.connect(lambda line: self.frame_requested.emit(
            int(round(line.value() * self.fs))))
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.scroll, 1)
        lay.addWidget(self.bottom_glw)

        self.rows: list[_Row] = []
        self.shown: list[_Row] = []
        self.fs = 1.0
        self.n_frames = 0
        self.x = np.zeros(0)
        self._traces = np.zeros((0, 0))
        self._activity = None
        self.unit = "raw"
        self._pal = None
        self._syncing = False
        self.region.sigRegionChanged.connect(self._region_moved)
        ax.vb.sigXRangeChanged.connect(self._view_moved)
        for g in (self.rows_glw, self.bottom_glw):
            g.scene().sigMouseClicked.connect(lambda ev, g=g: self._clicked(ev, g.scene()))

    # ------------------------------------------------------------ rows
    def _row(self, i: int) -> _Row:
        while len(self.rows) <= i:
            r = _Row()
            for p in (r.trace, r.act):
                p.vb.sigXRangeChanged.connect(self._view_moved)
            if self._pal is not None:
                self._style_row(r)
            self.rows.append(r)
        return self.rows[i]

    def set_rows(self, ids, colors, traces: np.ndarray, fs: float, unit: str = "raw",
                 truth: dict | None = None) -> None:
        """Show the selected ROIs: ``traces`` (k, T) are what will be fitted."""
        ids = [int(i) for i in ids][: self.MAX_ROWS]
        k = len(ids)
        traces = np.atleast_2d(np.asarray(traces, dtype=np.float64)) if k else np.zeros((0, 0))
        new_len = traces.shape[1] if k else self.n_frames
        resize = new_len != self.n_frames or float(fs) != self.fs
        self.fs, self.n_frames, self.unit = float(fs), int(new_len), unit
        self.x = np.arange(self.n_frames, dtype=np.float64) / self.fs
        self._traces = traces
        self._activity = None
        lay = self.rows_glw.ci.layout
        for r in self.shown:
            self.rows_glw.ci.removeItem(r.trace)
            self.rows_glw.ci.removeItem(r.act)
        self.shown = []
        for i, rid in enumerate(ids):
            r = self._row(i)
            r.rid = rid
            r.color = tuple(colors[i])
            self._style_row(r)
            self.rows_glw.ci.addItem(r.trace, row=2 * i, col=0)
            self.rows_glw.ci.addItem(r.act, row=2 * i + 1, col=0)
            lay.setRowStretchFactor(2 * i, 3)
            lay.setRowStretchFactor(2 * i + 1, 1)
            r.raw.setData(self.x, traces[i], skipFiniteCheck=True)
            r.fit.setData([], [])
            r.pinned.setData([], [])
            r.activity.setData([], [])
            r.truth_t = np.asarray((truth or {}).get(rid, ()), dtype=np.float64) / self.fs
            r.truth.setData([], [])
            r.act_top = None
            r.header.setHtml(self._header(r, None))
            self.shown.append(r)
        self.rows_glw.setMinimumHeight(k * (TRACE_MIN + HEADER_H + ACT_MIN + 4))
        self._overview(traces[0] if k else None)
        if resize or k == 0:
            self.set_window(0.0, min(DEFAULT_WINDOW_S, self.duration))
        else:
            self.set_window(*self.window)  # new rows join the current window

    @property
    def duration(self) -> float:
        return max(self.n_frames - 1, 1) / self.fs

    def _overview(self, y) -> None:
        ov = self.overview
        if y is None or y.size == 0:
            self.overview_curve.setData([], [])
            return
        bins = 1500
        n = y.size // bins
        if n >= 2:
            blk = y[: n * bins].reshape(bins, n)
            env = np.stack([blk.min(axis=1), blk.max(axis=1)], axis=1).ravel()
            x = np.repeat(np.arange(bins) * n, 2) / self.fs
        else:
            env, x = y, self.x
        self.overview_curve.setData(x, env, skipFiniteCheck=True)
        lo, hi = float(np.min(env)), float(np.max(env))
        ov.vb.setRange(xRange=(0, self.duration), yRange=(lo, hi if hi > lo else lo + 1),
                       padding=0.02)
        self.region.setBounds((0, self.duration))

    # ---------------------------------------------------------- results
    def set_trace(self, traces: np.ndarray) -> None:
        """New plotted traces for the same rows (the bandpass changed them)."""
        self._traces = np.atleast_2d(traces)
        for i, r in enumerate(self.shown):
            r.raw.setData(self.x, self._traces[i], skipFiniteCheck=True)
        self._ranges()

    def set_result(self, res) -> None:
        """Fits and activity of a live result (rows in ``res.ids`` order)."""
        if res.trace is not self._traces:
            self.set_trace(res.trace)
        self._activity = res.activity
        x = self.x
        for i, r in enumerate(self.shown):
            r.fit.setData(x, res.fit[i], skipFiniteCheck=True)
            r.activity.setData(x, res.activity[i], skipFiniteCheck=True)
            r.header.setHtml(self._header(r, res, i))
        self._act_ranges()

    def set_pinned(self, res) -> None:
        """Draw the pinned fit (dashed) on the rows of the ROIs it holds."""
        for r in self.shown:
            if res is not None and r.rid in res.ids and res.fit.shape[1] == self.n_frames:
                r.pinned.setData(self.x, res.fit[res.ids.index(r.rid)], skipFiniteCheck=True)
            else:
                r.pinned.setData([], [])

    def _header(self, r: _Row, res, i: int = 0) -> str:
        fg = self._pal.foreground if self._pal else "#ffffff"
        unit = "ΔF/F" if self.unit == "dF/F" else "raw F"
        head = (f'<span style="color:{_rgb(r.color)}; font-weight:bold">■ ROI {r.rid}</span>'
                f' <span style="color:{self._pal.muted_hex if self._pal else fg}">({unit})</span>')
        if res is None:
            return f'<span style="color:{fg}">{head}</span>'
        bits = [f"σ {fmt(res.noise[i], 2)}", f"SNR {fmt(res.snr[i], 3)}",
                f"R² {res.r2[i]:.2f}", f"{fmt(res.events_per_min[i], 3)} events/min"]
        if not res.converged[i]:
            bits.append("<b>not converged</b>")
        return f'<span style="color:{fg}">{head} &nbsp; {" · ".join(bits)}</span>'

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
        self._ranges()

    def _view_moved(self, vb, rng) -> None:
        if not self._syncing:
            self._move_to(float(rng[0]), float(rng[1]), source=vb)

    def _region_moved(self, *_) -> None:
        if not self._syncing:
            x0, x1 = self.region.getRegion()
            self._move_to(max(0.0, x0), min(self.duration, x1))

    def _slice(self) -> slice:
        x0, x1 = self.window
        i0 = int(max(0, np.floor(x0 * self.fs)))
        i1 = int(min(self.n_frames, np.ceil(x1 * self.fs) + 1))
        return slice(i0, max(i1, i0 + 2))

    def _ranges(self) -> None:
        """Each row's y-range: its own trace within the window."""
        if not self.shown:
            return
        sl = self._slice()
        for i, r in enumerate(self.shown):
            y = self._traces[i, sl]
            lo, hi = float(np.min(y)), float(np.max(y))
            pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.05
            r.trace.vb.setYRange(lo - pad, hi + pad, padding=0)
        self._act_ranges()

    def _act_ranges(self) -> None:
        if self._activity is None:
            return
        sl = self._slice()
        for i, r in enumerate(self.shown):
            top = float(np.max(self._activity[i, sl], initial=0.0))
            top = top * 1.08 if top > 0 else 1.0
            band = 0.22 * top if r.truth_t.size else 0.0
            r.act.vb.setYRange(-band - 0.02 * top, top, padding=0)
            if r.truth_t.size and top != r.act_top:
                y = np.tile([-0.95 * band, -0.1 * band], r.truth_t.size)
                r.truth.setData(np.repeat(r.truth_t, 2), y)
            r.act_top = top

    # ------------------------------------------------------------ theme
    def set_theme(self, pal) -> None:
        self._pal = pal
        for g in (self.rows_glw, self.bottom_glw):
            g.setBackground(pal.background)
        fg = pg.mkColor(pal.foreground)
        for p in (self.axis_plot, self.overview):
            for a in ("left", "bottom"):
                p.getAxis(a).setTextPen(fg)
                if not (p is self.axis_plot and a == "left"):
                    p.getAxis(a).setPen(fg)
        self.overview_curve.setPen(pg.mkPen(pal.raw, width=1))
        self.region.setBrush(pg.mkBrush(*pg.mkColor(pal.foreground).getRgb()[:3], 40))
        for ln in self.region.lines:
            ln.setPen(pg.mkPen(pal.foreground, width=2))
        self.cursor.setPen(pg.mkPen(pal.foreground, style=Qt.DotLine))
        for r in self.rows:
            self._style_row(r)
            r.header.setHtml(self._header(r, None))

    def _style_row(self, r: _Row) -> None:
        pal = self._pal
        if pal is None:
            return
        fg = pg.mkColor(pal.foreground)
        for p in (r.trace, r.act):
            p.getAxis("left").setTextPen(fg)
            p.getAxis("left").setPen(fg)
        r.raw.setPen(pg.mkPen(pal.raw, width=1))
        r.fit.setPen(pg.mkPen(r.color, width=1.5))
        r.pinned.setPen(pg.mkPen(pal.foreground, width=1, style=Qt.DashLine))
        fill = pg.mkColor(r.color)
        fill.setAlpha(90)
        r.activity.setPen(pg.mkPen(r.color, width=1))
        r.activity.setFillLevel(0.0)
        r.activity.setBrush(pg.mkBrush(fill))
        r.truth.setPen(pg.mkPen(pal.truth, width=1))
        for c in r.cursors:
            c.setPen(pg.mkPen(pal.foreground, width=1, style=Qt.DotLine))
        r.header.setDefaultTextColor(fg)

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
        plots = [self.axis_plot, self.overview] + [q for r in self.shown
                                                   for q in (r.trace, r.act)]
        for p in plots:
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
