"""The strip under the trace rows: the time axis and the overview.

The overview shows the whole recording with the rows' time window as a
draggable region (and the viewer's frame as a cursor); the time axis labels the
rows' time.  Where the rows' side of the dock is short, the strip gives the rows
its room so that one whole row (with its y axis) stays in view: first the
overview goes (the window can still be moved by dragging a row), then, only if a
row still does not fit, the time axis.  Both come back when there is room.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import Qt

from .._padding import row_lengths
from .rowplot import decimate, style_plot

#: the strip's heights (px): the time axis alone, and with the overview under it
AXIS_H = 44
FULL_H = 118
#: what the strip shows, most first
FULL, AXIS, NONE = "full", "axis", "none"


def strip_for(room: float, row_h: float) -> str:
    """What the strip shows when the rows and the strip share ``room`` px and a
    whole row needs ``row_h`` px: as much as leaves a whole row in view (all of
    it where nothing would: the rows get every pixel there is)."""
    if room - FULL_H >= row_h:
        return FULL
    if room - AXIS_H >= row_h:
        return AXIS
    return NONE


class TimeStrip:
    """The time axis over the overview, in one GraphicsLayoutWidget (``glw``)."""

    def __init__(self):
        self.glw = pg.GraphicsLayoutWidget()
        self.glw.ci.layout.setContentsMargins(0, 0, 0, 0)
        self.glw.setFixedHeight(FULL_H)
        self.shows = FULL
        self.axis = ax = self.glw.addPlot(row=0, col=0)
        self.overview = ov = self.glw.addPlot(row=1, col=0)
        style_plot(ax)
        ax.showGrid(x=False, y=False)
        ax.showAxis("bottom")
        ax.getAxis("left").setStyle(showValues=False)
        ax.getAxis("left").setPen(pg.mkPen(None))
        ax.setLabel("bottom", "time (s)")
        ax.getAxis("bottom").enableAutoSIPrefix(False)
        ax.setFixedHeight(AXIS_H)
        ax.layout.setContentsMargins(0, 0, 4, 0)
        style_plot(ov)
        ov.setMouseEnabled(x=False, y=False)
        ov.showGrid(x=False, y=False)
        ov.showAxis("bottom")
        ov.getAxis("bottom").enableAutoSIPrefix(False)
        ov.getAxis("left").setStyle(showValues=False)
        ov.setLabel("left", " ")
        ov.layout.setContentsMargins(0, 2, 4, 0)
        self.curve = ov.plot()
        self.region = pg.LinearRegionItem(orientation="vertical")
        self.region.setZValue(10)
        ov.addItem(self.region, ignoreBounds=True)
        self.cursor = pg.InfiniteLine(angle=90, movable=True)
        ov.addItem(self.cursor, ignoreBounds=True)

    def show(self, what: str) -> None:
        """Show the whole strip (FULL), the time axis alone (AXIS) or nothing."""
        if what == self.shows:
            return
        ci = self.glw.ci
        if (what == FULL) != (self.shows == FULL):
            if what == FULL:
                ci.addItem(self.overview, row=1, col=0)
            else:
                ci.removeItem(self.overview)
        self.shows = what
        self.glw.setFixedHeight(FULL_H if what == FULL else AXIS_H)
        self.glw.setVisible(what != NONE)

    def set_curve(self, x, y, duration: float, n_frames: int) -> None:
        """The overview of trace ``y`` (None: no curve; the range of a new view
        when there is no recording)."""
        ov = self.overview
        if y is None or y.size == 0:
            self.curve.setData([], [])
            if n_frames == 0:
                ov.vb.setRange(xRange=(0, duration), yRange=(0, 1), padding=0)
                self.region.setBounds((0, duration))
            return
        n = int(row_lengths(y)[0]) if np.isnan(y[-1]) else y.size
        n = max(n, 1)  # (a trace ending in NaN padding: drawn to its last finite frame)
        xs, env = decimate(x[:n], y[:n], 1500)
        self.curve.setData(xs, env, skipFiniteCheck=True)
        lo, hi = float(np.min(env)), float(np.max(env))
        ov.vb.setRange(xRange=(0, duration), yRange=(lo, hi if hi > lo else lo + 1),
                       padding=0.02)
        self.region.setBounds((0, duration))

    def set_theme(self, pal) -> None:
        self.glw.setBackground(pal.background)
        fg = pg.mkColor(pal.foreground)
        for p in (self.axis, self.overview):
            for a in ("left", "bottom"):
                p.getAxis(a).setTextPen(fg)
                if not (p is self.axis and a == "left"):
                    p.getAxis(a).setPen(fg)
        self.curve.setPen(pg.mkPen(pal.raw, width=1))
        self.region.setBrush(pg.mkBrush(*fg.getRgb()[:3], 40))
        for ln in self.region.lines:
            ln.setPen(pg.mkPen(pal.foreground, width=2))
        self.cursor.setPen(pg.mkPen(pal.foreground, style=Qt.DotLine))
