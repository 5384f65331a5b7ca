"""pyqtgraph plots of the tuner: traces with fits, activity, kernel.

Every curve is created once (``MAX_ROIS`` slots) and updated in place with
``setData``; a slider move never rebuilds a plot.  ROIs are stacked
vertically with ``setPos`` offsets, so each item's data are exactly the
core's numbers (``item.xData`` / ``item.yData``) while the display is offset.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QVBoxLayout, QWidget

from .. import kernel as _kernel

MAX_ROIS = 8


def _qcolor(rgba) -> pg.QtGui.QColor:
    r, g, b, *a = (float(c) for c in rgba)
    return pg.mkColor(int(r * 255), int(g * 255), int(b * 255), int((a[0] if a else 1) * 255))


class TunerPlots(QWidget):
    """Trace + fit plot, activity plot (linked x, seconds) and kernel plot.

    Signals
    -------
    frame_requested(int)
        The user clicked in a time plot or dragged the time cursor.
    """

    frame_requested = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.glw = pg.GraphicsLayoutWidget()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.glw)
        self.trace_plot = self.glw.addPlot(row=0, col=0, title="raw trace and fit")
        self.activity_plot = self.glw.addPlot(row=1, col=0, title="deconvolved activity")
        self.kernel_plot = self.glw.addPlot(row=2, col=0, title="kernel")
        self.glw.ci.layout.setRowStretchFactor(0, 3)
        self.glw.ci.layout.setRowStretchFactor(1, 2)
        self.glw.ci.layout.setRowStretchFactor(2, 1)
        self.activity_plot.setXLink(self.trace_plot)
        self.activity_plot.setLabel("bottom", "time", units="s")
        self.kernel_plot.setLabel("bottom", "time", units="s")
        self.legend = self.trace_plot.addLegend(offset=(5, 5), labelTextSize="8pt")
        for p in (self.trace_plot, self.activity_plot):
            # peak-preserving downsampling and clipping keep 54,000-sample
            # curves cheap to draw without changing the stored data
            p.setDownsampling(auto=True, mode="peak")
            p.setClipToView(True)
            p.showGrid(x=True, y=True, alpha=0.15)
        self.raw_items: list[pg.PlotDataItem] = []
        self.fit_items: list[pg.PlotDataItem] = []
        self.activity_items: list[pg.PlotDataItem] = []
        for i in range(MAX_ROIS):
            raw = self.trace_plot.plot([], [], name=None)
            fit = self.trace_plot.plot([], [], name=None)
            act = self.activity_plot.plot([], [])
            for it in (raw, fit, act):
                it.setVisible(False)
            self.raw_items.append(raw)
            self.fit_items.append(fit)
            self.activity_items.append(act)
        self.kernel_item = self.kernel_plot.plot([], [], name="kernel")
        self.fwhm_item = self.kernel_plot.plot([], [])
        self.tpeak_line = pg.InfiniteLine(angle=90, movable=False,
                                          pen=pg.mkPen(style=Qt.DashLine))
        self.kernel_plot.addItem(self.tpeak_line)
        self.kernel_text = pg.TextItem("", anchor=(1, 0))
        self.kernel_plot.addItem(self.kernel_text, ignoreBounds=True)
        self.cursors = []
        for p in (self.trace_plot, self.activity_plot):
            line = pg.InfiniteLine(pos=0.0, angle=90, movable=True)
            line.sigDragged.connect(self._cursor_dragged)
            p.addItem(line)
            self.cursors.append(line)
        self.glw.scene().sigMouseClicked.connect(self._clicked)
        self.roi_ids: list[int] = []
        self.offsets = np.zeros(MAX_ROIS)
        self.fs = 1.0
        self._x = np.zeros(0)
        self._raw = np.zeros((0, 0))
        self._act_span = None
        self._fg = pg.mkColor("w")
        self._colors = [pg.mkColor("w")] * MAX_ROIS
        self._tpeak = self._fwhm = float("nan")

    # ---------------------------------------------------------------- theme
    def set_theme(self, background: str, foreground: str) -> None:
        self.glw.setBackground(background)
        self._fg = pg.mkColor(foreground)
        for p in (self.trace_plot, self.activity_plot, self.kernel_plot):
            for ax in ("left", "bottom"):
                a = p.getAxis(ax)
                a.setPen(self._fg)
                a.setTextPen(self._fg)
            p.titleLabel.setText(p.titleLabel.text, color=foreground)
        self.legend.setLabelTextColor(self._fg)
        self.kernel_item.setPen(pg.mkPen(self._fg, width=2))
        self.fwhm_item.setPen(pg.mkPen(self._fg, width=1))
        self.tpeak_line.setPen(pg.mkPen(self._fg, style=Qt.DashLine))
        cur = pg.mkPen(self._fg, width=1, style=Qt.DotLine)
        for c in self.cursors:
            c.setPen(cur)
        self._restyle()

    #: alpha of the raw traces: faint, so the opaque fit drawn over them stands
    #: out (wider fit pens cost ~2x the repaint time of 8 x 54,000-sample curves)
    RAW_ALPHA = 90

    def _restyle(self) -> None:
        for i in range(MAX_ROIS):
            c = self._colors[i]
            raw = pg.mkColor(c)
            raw.setAlpha(self.RAW_ALPHA)
            fit = pg.mkColor(c)
            fit.setAlpha(255)
            self.raw_items[i].setPen(pg.mkPen(raw, width=1))
            self.fit_items[i].setPen(pg.mkPen(fit, width=1))
            self.activity_items[i].setPen(pg.mkPen(c, width=1))

    # ----------------------------------------------------------------- data
    def set_rois(self, roi_ids, colors, raw: np.ndarray, fs: float) -> None:
        """Show the traces of the selected ROIs (k <= MAX_ROIS rows).

        ``raw`` is the trace the solver fits: the raw trace, or the bandpassed
        one when the filter is on.
        """
        raw = np.atleast_2d(np.asarray(raw, dtype=np.float64)) if len(roi_ids) else np.zeros((0, 0))
        k = len(roi_ids)
        self.roi_ids = [int(r) for r in roi_ids]
        self.fs = float(fs)
        self._x = np.arange(raw.shape[1] if k else 0, dtype=np.float64) / self.fs
        self._colors = [_qcolor(c) for c in colors] + [self._fg] * (MAX_ROIS - k)
        self._restyle()
        self.legend.clear()
        self._raw = raw
        self._stack()
        for i in range(MAX_ROIS):
            on = i < k
            for it in (self.raw_items[i], self.fit_items[i], self.activity_items[i]):
                it.setVisible(on)
            if on:
                self.raw_items[i].setData(self._x, raw[i])
                self.fit_items[i].setData([], [])
                self.activity_items[i].setData([], [])
                self.legend.addItem(self.raw_items[i], f"ROI {self.roi_ids[i]} trace (faint)")
            else:
                self.raw_items[i].setData([], [])
                self.fit_items[i].setData([], [])
                self.activity_items[i].setData([], [])
        if k:
            self.legend.addItem(self.fit_items[0], "fit (solid, ROI colour)")
        self._act_span = None
        self.trace_plot.enableAutoRange()
        self.activity_plot.enableAutoRange()

    def _stack(self) -> None:
        # stack top to bottom: each ROI gets its own band of the robust range
        raw = self._raw
        spans = [float(np.subtract(*np.percentile(r, [99.9, 0.1]))) for r in raw]
        span = max(spans) * 1.15 if spans and max(spans) > 0 else 1.0
        self._span = span
        for i in range(len(self.roi_ids)):
            self.offsets[i] = -i * span - float(np.median(raw[i]))
            self.raw_items[i].setPos(0, self.offsets[i])
            self.fit_items[i].setPos(0, self.offsets[i])

    def set_raw(self, raw: np.ndarray | None, fs: float | None = None, *,
                restack: bool = False) -> None:
        """New plotted traces (same ROIs) and/or a new sampling rate.

        ``raw=None`` keeps the traces; ``fs`` gives a new time axis;
        ``restack`` places the bands anew (the traces changed their level).
        """
        if fs is not None:
            self.fs = float(fs)
        if raw is not None:
            self._raw = np.atleast_2d(raw)
        self._x = np.arange(self._raw.shape[1], dtype=np.float64) / self.fs
        if restack:
            self._stack()
            self.trace_plot.enableAutoRange()
        for i in range(len(self.roi_ids)):
            self.raw_items[i].setData(self._x, self._raw[i])

    def set_fit(self, fit: np.ndarray, activity: np.ndarray) -> None:
        """Update fits and activities in place (rows follow ``set_rois``)."""
        k = len(self.roi_ids)
        if self._act_span is None and k:
            # fix the activity stacking on the first result so a slider move
            # does not make the bands jump
            self._act_span = max(float(np.max(activity)) * 1.1, 1e-12)
        x = self._x
        for i in range(k):
            self.fit_items[i].setData(x, fit[i])
            self.activity_items[i].setData(x, activity[i])
            self.activity_items[i].setPos(0, -i * self._act_span)

    def set_kernel(self, tau_rise: float, tau_decay: float, fs: float,
                   landmarks: tuple[float, float, float] | None = None) -> None:
        """Draw the sampled kernel with t_peak and the FWHM marked.

        ``landmarks`` is ``kernel_landmarks(tau_rise, tau_decay)`` when the
        caller has it already (computed once per slider event).
        """
        h = _kernel.build_kernel(tau_rise, tau_decay, fs)
        if landmarks is None:
            landmarks = _kernel.kernel_landmarks(tau_rise, tau_decay)
        t_peak, left, right = landmarks
        fwhm = right - left
        # show up to ~6 FWHMs so the rise stays visible for slow decays
        n = min(h.size, max(8, int(math.ceil((t_peak + 6 * fwhm) * fs)) + 1))
        t = np.arange(n) / fs
        self.kernel_item.setData(t, h[:n])
        self.fwhm_item.setData([left, right], [0.5, 0.5])
        self.tpeak_line.setValue(t_peak)
        self._tpeak, self._fwhm = t_peak, fwhm
        # a TextItem inside the plot: changing a title would re-layout the plots
        self.kernel_text.setText(f"t_peak {t_peak * 1e3:.1f} ms (dashed)\n"
                                 f"FWHM {fwhm * 1e3:.1f} ms (bar)", color=self._fg)
        self.kernel_text.setPos(t[-1], 1.0)

    # --------------------------------------------------------------- cursor
    def set_cursor_frame(self, frame: int) -> None:
        x = float(frame) / self.fs
        for c in self.cursors:
            if c.value() != x:
                c.blockSignals(True)
                c.setValue(x)
                c.blockSignals(False)

    @property
    def cursor_seconds(self) -> float:
        return float(self.cursors[0].value())

    def _cursor_dragged(self, line) -> None:
        self.frame_requested.emit(int(round(line.value() * self.fs)))

    def _clicked(self, ev) -> None:
        if ev.button() != Qt.LeftButton:
            return
        pos = ev.scenePos()
        for p in (self.trace_plot, self.activity_plot):
            vb = p.getViewBox()
            if vb.sceneBoundingRect().contains(pos):
                x = vb.mapSceneToView(pos).x()
                self.frame_requested.emit(int(round(x * self.fs)))
                return

    def scene_pos_of_time(self, seconds: float, plot=None):
        """Scene position of time ``seconds`` in the middle of ``plot`` (tests)."""
        p = plot or self.activity_plot
        vb = p.getViewBox()
        y = np.mean(vb.viewRange()[1])
        return vb.mapViewToScene(pg.Point(seconds, y))

