"""The kernel plot: the sampled unit-peak kernel with t_peak and the FWHM marked."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import Qt

from .. import kernel as _kernel
from .controls import fmt, landmarks



def theme_small_plot(widget, pal):
    """Background, axes and text colour of a small plot (kernel, spectrum) for a
    napari theme; returns the foreground colour for its curves."""
    widget.setBackground(pal.background)
    widget._fg = pal.foreground
    fg = pg.mkColor(pal.foreground)
    for a in ("left", "bottom"):
        widget.plot.getAxis(a).setPen(fg)
        widget.plot.getAxis(a).setTextPen(fg)
    return fg

class KernelPlot(pg.GraphicsLayoutWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.plot = self.addPlot()
        p = self.plot
        p.hideButtons()
        p.setMenuEnabled(False)
        p.setMouseEnabled(x=False, y=False)
        p.setLabel("bottom", "time (s)")
        p.getAxis("bottom").enableAutoSIPrefix(False)
        p.getAxis("left").setWidth(30)
        p.setYRange(0, 1.1, padding=0)
        p.getAxis("left").setTicks([[(0, "0"), (0.5, "0.5"), (1, "1")]])
        self.curve = p.plot()
        self.fwhm_item = p.plot()
        self.tpeak_line = pg.InfiniteLine(angle=90, movable=False)
        p.addItem(self.tpeak_line, ignoreBounds=True)
        # a TextItem inside the plot: a title change would re-layout the dock
        self.text = pg.TextItem("", anchor=(1, 0))
        p.addItem(self.text, ignoreBounds=True)
        self._fg = "#f0f1f2"
        self.t_peak = self.fwhm = float("nan")
        self.setMinimumHeight(110)

    def set_kernel(self, tau_rise: float, tau_decay: float, fs: float) -> None:
        h = _kernel.build_kernel(tau_rise, tau_decay, fs)
        t_peak, left, right = landmarks(tau_rise, tau_decay)
        fwhm = right - left
        n = min(h.size, max(8, int(math.ceil((t_peak + 5 * fwhm) * fs)) + 1))
        t = np.arange(n) / fs
        self.curve.setData(t, h[:n])
        self.fwhm_item.setData([left, right], [0.5, 0.5])
        self.tpeak_line.setValue(t_peak)
        self.t_peak, self.fwhm = t_peak, fwhm
        self._tmax = float(t[-1])
        self.plot.setXRange(0, self._tmax, padding=0.02)
        self._label()
        self.scene().prepareForPaint()  # the new range now: painted once, not twice

    def _label(self) -> None:
        if not math.isfinite(self.t_peak):
            return
        self.text.setText(f"t_peak {fmt(self.t_peak * 1e3, 3)} ms (dashed)\n"
                          f"FWHM {fmt(self.fwhm * 1e3, 3)} ms (bar)", color=self._fg)
        self.text.setPos(self._tmax, 1.08)

    def set_theme(self, pal) -> None:
        fg = theme_small_plot(self, pal)
        self.curve.setPen(pg.mkPen(fg, width=2))
        self.fwhm_item.setPen(pg.mkPen(fg, width=2))
        self.tpeak_line.setPen(pg.mkPen(fg, style=Qt.DashLine))
        self._label()
