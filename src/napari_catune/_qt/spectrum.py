"""The spectrum plot: power spectra of the traces with the bandpass band shaded.

As the CaTune web app shows it: the power spectrum of the selected ROIs (in
the theme's foreground colour) and of all ROIs (grey), on a log
frequency axis in dB, with the band between the bandpass filter's high-pass
and low-pass cutoffs shaded and its edges dashed (solid shading when the
bandpass is on, faint when off).  The spectra are computed off the GUI thread
when the selection, the source or fs change; moving a slider only moves the
band.
"""

from __future__ import annotations

import math
import threading
import weakref

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import Qt, Signal

from .. import kernel as _kernel
from .._padding import ends_padded, row_lengths
from .inputs import fmt

#: longest stretch of a trace that goes into its spectrum (2^16 samples: 36 min at 30 Hz)
MAX_SAMPLES = 1 << 16
#: most ROIs averaged into the all-ROI spectrum (spread evenly over the source)
MAX_ALL_ROIS = 64
#: log-spaced frequency bins of a drawn spectrum
BINS = 160


def power_spectrum(traces, fs: float, bins: int = BINS, max_samples: int = MAX_SAMPLES):
    """Mean power spectral density of ``traces`` (n, T) in dB, on log-spaced bins.

    Each trace (its first ``max_samples`` samples, mean removed, Hann window) gives
    a one-sided periodogram (units^2 / Hz); they are averaged, then averaged again
    within ``bins`` log-spaced frequency bins from fs/T to fs/2.  Returns
    ``(frequencies in Hz, 10 log10 PSD)``; empty arrays for fewer than 16 samples.
    """
    y = np.atleast_2d(np.asarray(traces, dtype=np.float64))
    if y.size and y.shape[1] and ends_padded(y):
        # rows ending in NaN padding: their common finite part (no zeros in the spectrum)
        lengths = row_lengths(y)
        y = y[lengths >= 16]
        if y.size:
            y = y[:, : int(lengths[lengths >= 16].min())]
    if y.size == 0 or y.shape[1] < 16:
        return np.zeros(0), np.zeros(0)
    y = np.nan_to_num(y[:, : int(max_samples)])
    n = y.shape[1]
    y = y - y.mean(axis=1, keepdims=True)
    w = np.hanning(n)
    spec = np.abs(np.fft.rfft(y * w, axis=1)) ** 2
    p = spec.mean(axis=0) / (fs * float(w @ w))
    p[1:] *= 2.0  # one-sided
    f = np.fft.rfftfreq(n, d=1.0 / fs)[1:]
    p = p[1:]
    edges = np.geomspace(f[0], f[-1] * (1 + 1e-9), int(bins) + 1)
    idx = np.clip(np.searchsorted(edges, f, side="right") - 1, 0, int(bins) - 1)
    counts = np.bincount(idx, minlength=bins)
    keep = counts > 0
    fc = np.bincount(idx, weights=f, minlength=bins)[keep] / counts[keep]
    pc = np.bincount(idx, weights=p, minlength=bins)[keep] / counts[keep]
    return fc, 10.0 * np.log10(pc + 1e-30)


def _ref(obj):
    """A weak reference to ``obj``, or a strong one for objects without weakref
    support (kept alive, so their id cannot be reused either)."""
    try:
        return weakref.ref(obj)
    except TypeError:
        return lambda: obj


_MAX_WORKERS = 4


class SpectrumPlot(pg.GraphicsLayoutWidget):
    """Spectra of the selection and of all ROIs, and the bandpass band."""

    _computed = Signal(int, object)  # (generation, result) from the worker thread

    def __init__(self, parent=None):
        super().__init__(parent)
        # the band's read-out on a row of its own: text over the curves is unreadable
        self.text = self.addLabel("", row=0, col=0, size="8pt", justify="right")
        self.plot = p = self.addPlot(row=1, col=0)
        p.hideButtons()
        p.setMenuEnabled(False)
        p.setMouseEnabled(x=False, y=False)
        p.setLogMode(x=True, y=False)
        p.setLabel("bottom", "frequency (Hz)")
        p.getAxis("bottom").label.setVisible(False)  # the read-out above says Hz
        p.getAxis("bottom").setHeight(22)
        p.setLabel("left", "dB")
        p.getAxis("bottom").enableAutoSIPrefix(False)
        p.getAxis("left").setWidth(40)
        self.band = pg.LinearRegionItem(orientation="vertical", movable=False)
        self.band.setZValue(-10)
        for edge in self.band.lines:  # the dashed cutoff lines mark the edges
            edge.setPen(pg.mkPen(None))
        p.addItem(self.band, ignoreBounds=True)
        self.hp_line = pg.InfiniteLine(angle=90, movable=False)
        self.lp_line = pg.InfiniteLine(angle=90, movable=False)
        for line in (self.hp_line, self.lp_line):
            p.addItem(line, ignoreBounds=True)
        self.all_curve = p.plot()
        self.sel_curve = p.plot()
        self._fg = "#f0f1f2"
        self._on = False
        self.cutoffs = (float("nan"), float("nan"))
        self._gen = 0
        self._drawn = 0
        # (a reference to the source, fs) of the drawn all-ROI spectrum: a weak
        # reference, so a freed source (whose id() a new one may get) never matches
        self._all_key = None
        self._all = (np.zeros(0), np.zeros(0))
        # at most _MAX_WORKERS spectra at once (a slow one of a recording the user
        # has left does not hold up the newest); later requests wait in one slot,
        # and a request overtaken before it starts is dropped
        self._lock = threading.Lock()
        self._workers = 0
        self._next = None
        self._computed.connect(self._show)
        self.setMinimumHeight(110)

    # ------------------------------------------------------------ spectra
    @property
    def pending(self) -> bool:
        """True while a spectrum is being computed for the newest request."""
        return self._drawn < self._gen

    def set_traces(self, selected, source, fs: float) -> None:
        """Spectra of ``selected`` (k, T) and of ``source``'s traces, in a worker
        thread; the newest request wins (an older one's result is dropped, both
        curves).  ``source`` None: selection only."""
        self._gen += 1
        gen = self._gen
        sel = np.asarray(selected)
        fs = float(fs)
        need_all = source is not None and not self._has_all(source, fs)
        rows = None
        if need_all:
            n = source.n_rois
            rows = np.unique(np.linspace(0, n - 1, min(n, MAX_ALL_ROIS)).round().astype(int))
            key = (_ref(source), fs)

        def work():
            if gen < self._gen:  # a newer request came before this one started
                return
            res = {"sel": power_spectrum(sel, fs) if sel.size else (np.zeros(0), np.zeros(0))}
            if need_all and gen < self._gen:
                return
            if need_all:
                res["all"] = (key, power_spectrum(source.traces[rows], fs))
            elif source is None:
                res["all"] = (None, (np.zeros(0), np.zeros(0)))
            try:
                self._computed.emit(gen, res)
            except RuntimeError:  # the plot was deleted meanwhile
                pass

        with self._lock:
            if self._workers >= _MAX_WORKERS:
                # all workers busy (an arrow key held in the ROI list): the newest
                # request waits for the next free one, the older waiting one is dropped
                self._next = work
                return
            self._workers += 1
        threading.Thread(target=self._run, args=(work,), name="catune-spectrum",
                         daemon=True).start()

    def _run(self, work) -> None:
        """A worker: ``work``, then the newest waiting request, until none waits."""
        while work is not None:
            work()
            with self._lock:
                work, self._next = self._next, None
                if work is None:
                    self._workers -= 1

    def _has_all(self, source, fs: float) -> bool:
        """True when the all-ROI spectrum drawn is ``source``'s at ``fs``."""
        return (self._all_key is not None and self._all_key[0]() is source
                and self._all_key[1] == fs)

    def _show(self, gen: int, res: dict) -> None:
        if gen < self._gen:
            # a newer request is on its way; it computes the all-ROI spectrum itself
            # unless the one drawn already fits, so nothing of this one is kept
            return
        self._drawn = gen
        if "all" in res:
            self._all_key, self._all = res["all"]
        f, db = res["sel"]
        self.sel_curve.setData(f, db)
        self.all_curve.setData(*self._all)

    # --------------------------------------------------------------- band
    def set_band(self, tau_rise: float, tau_decay: float, fs: float, enabled: bool) -> None:
        """Shade the bandpass filter's band for these parameters (cheap)."""
        hp, lp = _kernel.bandpass_cutoffs(tau_rise, tau_decay, fs)
        self.cutoffs = (hp, lp)
        self._on = bool(enabled)
        lo, hi = math.log10(hp), math.log10(lp)
        self.band.setRegion((lo, hi))
        self.hp_line.setValue(lo)
        self.lp_line.setValue(hi)
        self._style_band()
        self._label()

    def _label(self) -> None:
        hp, lp = self.cutoffs
        if math.isfinite(hp):
            self.text.setText(f"band {fmt(hp, 3)}-{fmt(lp, 3)} Hz "
                              f"(bandpass {'on' if self._on else 'off'})", color=self._fg)

    def _style_band(self) -> None:
        c = pg.mkColor(self._fg)
        c.setAlpha(60 if self._on else 18)
        self.band.setBrush(pg.mkBrush(c))
        for line in (self.hp_line, self.lp_line):
            lc = pg.mkColor(self._fg)
            lc.setAlpha(200 if self._on else 90)
            line.setPen(pg.mkPen(lc, width=1.5, style=Qt.DashLine))

    def set_theme(self, pal) -> None:
        from .kernelplot import theme_small_plot

        fg = theme_small_plot(self, pal)
        self.sel_curve.setPen(pg.mkPen(fg, width=1.5))
        self.all_curve.setPen(pg.mkPen(pal.muted, width=1.2))
        self._style_band()
        self._label()
