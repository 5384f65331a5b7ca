"""One ROI's row of the trace view, the window decimation its curves use, and
the words of the rows' headers and legend.

A row keeps the full arrays (``data``) and draws only the shown time window,
peak-decimated to about two points per pixel: a slider move costs the same
for 54,000 frames as for 5,000, and no spike is lost between two pixels.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from qtpy.QtGui import QTextDocument
from qtpy.QtWidgets import QGraphicsItem, QGraphicsTextItem

from .._padding import row_lengths
from .controls import fmt

LEFT_W = 52  # left axis width, the same for every plot so the time axes line up
HEADER_H = 17
TRACE_MIN, ACT_MIN = 64, 30


def window_slice(x0: float, x1: float, fs: float, n: int) -> slice:
    i0 = int(max(0, np.floor(x0 * fs)))
    i1 = int(min(n, np.ceil(x1 * fs) + 1))
    return slice(i0, max(i1, min(n, i0 + 2)))


def decimate(x: np.ndarray, y: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of ``y`` per bin, interleaved (keeps every peak and trough)."""
    n = y.size
    m = n // max(bins, 1)
    if m < 3:
        return x, y
    b = n // m
    blk = y[: b * m].reshape(b, m)
    ys = np.empty(2 * b + (2 if n > b * m else 0))
    ys[0:2 * b:2] = blk.min(axis=1)
    ys[1:2 * b:2] = blk.max(axis=1)
    xs = np.empty_like(ys)
    xs[0:2 * b:2] = x[: b * m: m]
    xs[1:2 * b:2] = x[m - 1: b * m: m]
    if n > b * m:
        tail = y[b * m:]
        ys[-2:] = tail.min(), tail.max()
        xs[-2:] = x[b * m], x[-1]
    return xs, ys


def style_plot(p: pg.PlotItem) -> None:
    p.hideButtons()
    p.setMenuEnabled(False)
    p.setMouseEnabled(x=True, y=False)
    p.hideAxis("bottom")
    p.getAxis("left").setWidth(LEFT_W)
    p.getAxis("left").enableAutoSIPrefix(False)
    p.vb.disableAutoRange()
    p.showGrid(x=True, y=False, alpha=0.12)


class FilledCurve(pg.PlotCurveItem):
    """A curve filled to its fill level as one path: pyqtgraph fills in chunks of
    50 points, a Python-built path each (~1.5 ms a paint of 4 rows of activity)."""

    def _shouldUseFillPathList(self):  # noqa: N802 - pyqtgraph's name
        return False


class Row:
    """The plots and curves of one ROI: trace with fit and its baseline (and the
    pinned fit and baseline) over the activity (and true-spike ticks).

    ``data["base"]`` is the solver's baseline: an array per sample ("drift",
    "rolling": its subtracted baseline plus its level) or one number ("scalar",
    "none": 0), drawn as a line across the window."""

    CURVES = ("raw", "pinned_base", "base", "pinned", "fit", "activity")
    #: curves of the fit, not drawn in the residual view (trace minus fit)
    FIT_CURVES = ("pinned_base", "base", "pinned", "fit")

    def __init__(self):
        # no context menus (style_plot disables them): built and thrown away they
        # were a third of a row's construction, paid on the GUI thread at a selection
        self.trace = pg.PlotItem(enableMenu=False)
        self.act = pg.PlotItem(enableMenu=False)
        for p in (self.trace, self.act):
            style_plot(p)
        self.trace.layout.setContentsMargins(0, HEADER_H, 4, 0)
        self.act.layout.setContentsMargins(0, 0, 4, 6)
        self.trace.setMinimumHeight(TRACE_MIN + HEADER_H)
        self.act.setMinimumHeight(ACT_MIN)
        self.act.getAxis("left").setStyle(showValues=False, tickLength=0)
        self.raw = pg.PlotCurveItem()
        self.pinned_base = pg.PlotCurveItem()
        self.base = pg.PlotCurveItem()  # under the fit: the fit runs on top of it
        self.pinned = pg.PlotCurveItem()
        self.fit = pg.PlotCurveItem()
        # the fit's second pixel row: two 1-px curves cost a fraction of one wider pen
        # (stroked as polygons: ~2.5 ms a paint of 4 rows)
        self.fit2 = pg.PlotCurveItem()
        self.activity = FilledCurve()
        for c in (self.raw, self.pinned_base, self.base, self.pinned, self.fit, self.fit2):
            self.trace.addItem(c)
        self.act.addItem(self.activity)
        self.truth = pg.PlotCurveItem(connect="pairs")  # one tick per true event
        self.act.addItem(self.truth)
        self.cursors = [pg.InfiniteLine(angle=90, movable=False) for _ in range(2)]
        self.trace.addItem(self.cursors[0], ignoreBounds=True)
        self.act.addItem(self.cursors[1], ignoreBounds=True)
        self.header = QGraphicsTextItem(self.trace)
        self.header.setPos(LEFT_W - 4, -4)
        #: height of the header's room above the trace (px; more when it wraps)
        self.header_room = HEADER_H
        # drawn from a pixmap while unchanged (rich text is laid out at every paint)
        self.header.setCacheMode(QGraphicsItem.DeviceCoordinateCache)
        self.rid = None
        self.color = (255, 255, 255, 255)
        self.truth_t = np.zeros(0)
        self.data: dict = {}
        self.n_finite = 0
        self.dirty = True
        self.act_top = None

    def set(self, rid: int, color, raw: np.ndarray, truth_t: np.ndarray) -> None:
        self.rid, self.color = rid, tuple(color)
        self.data = {"raw": raw}
        # a trace ending in NaN padding (a shorter recording) is drawn to its
        # last finite frame; its fit and activity are NaN after it too
        n = int(row_lengths(raw)[0]) if raw.size and np.isnan(raw[-1]) else raw.shape[-1]
        self.n_finite = max(n, 1)
        self.truth_t = truth_t
        self.act_top = None
        self.dirty = True
        for c in (self.raw, self.pinned_base, self.base, self.pinned, self.fit, self.fit2,
                  self.activity, self.truth):
            c.setData([], [])

    def visible_in(self, top: float, bottom: float) -> bool:
        a, b = self.trace.geometry(), self.act.geometry()
        if b.bottom() <= a.top():  # not laid out yet: draw it
            return True
        return a.top() < bottom and b.bottom() > top

    def draw(self, x: np.ndarray, sl: slice, bins: int, residual: bool = False) -> None:
        """Draw the window ``sl`` of every curve and fit the y-ranges to it; with
        ``residual`` the grey curve is the trace minus the fit (and no fit, nor
        its baseline, is drawn)."""
        if sl.stop is None or sl.stop > self.n_finite:
            start = min(sl.start or 0, self.n_finite - 1)
            sl = slice(start, self.n_finite)  # (the padding of a shorter recording)
        xs = x[sl]
        fit = self.data.get("fit")
        residual = residual and fit is not None and fit.shape[-1] == x.size
        for name in self.CURVES:
            y = self.data.get(name)
            item = getattr(self, name)
            if y is not None and np.ndim(y) == 0 and not residual:
                # one level (a scalar baseline): a line across the window
                v = float(y)
                if math.isfinite(v) and xs.size:
                    item.setData(np.array((xs[0], xs[-1])), np.array((v, v)))
                else:
                    item.setData([], [])
                continue
            if (y is None or np.ndim(y) == 0 or y.shape[-1] != x.size
                    or (residual and name in self.FIT_CURVES)):
                item.setData([], [])
                if name == "fit":
                    self.fit2.setData([], [])
                continue
            y = y[sl] - fit[sl] if residual and name == "raw" else y[sl]
            xy = decimate(xs, y, bins)
            item.setData(*xy, skipFiniteCheck=True)
            if name == "fit":
                self.fit2.setData(*xy, skipFiniteCheck=True)
        y = self.data["raw"][sl] - (fit[sl] if residual else 0.0)
        lo, hi = float(np.min(y)), float(np.max(y))
        # a y-range that holds the data and is at most 20 % too tall stays: a slider
        # step then does not redraw the axis (~1 ms a row), nor make the rows jitter
        y0, y1 = self.trace.vb.viewRange()[1]
        if not (y0 <= lo and hi <= y1 and y1 - y0 <= 1.2 * (hi - lo)):
            pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.05
            y0, y1 = lo - pad, hi + pad
            self.trace.vb.setYRange(y0, y1, padding=0)
        self.fit2.setPos(0.0, -(y1 - y0) / max(self.trace.vb.height(), 1.0))  # 1 px lower
        act = self.data.get("activity")
        if act is not None and act.shape[-1] == x.size:
            # the initial calcium's run (before act_from) is drawn, clipped, but
            # sets the range only when the window holds no other activity
            a0 = max(sl.start or 0, int(self.data.get("act_from", 0)))
            top = float(np.max(act[a0: sl.stop], initial=0.0)) if a0 < sl.stop else 0.0
            if top == 0.0:
                top = float(np.max(act[sl], initial=0.0))
            top = top * 1.08 if top > 0 else 1.0
            if self.act_top is not None and top / 1.08 <= self.act_top <= 1.3 * top:
                top = self.act_top  # holds the activity, not much too tall: kept
            band = 0.4 * top if self.truth_t.size else 0.0
            if top != self.act_top:
                self.act.vb.setYRange(-band - 0.02 * top, top, padding=0)
                if self.truth_t.size:
                    y = np.tile([-0.95 * band, -0.1 * band], self.truth_t.size)
                    self.truth.setData(np.repeat(self.truth_t, 2), y)
            self.act_top = top
        self.dirty = False

    def set_header(self, forms, width: float, tip: str = "") -> None:
        """Head the row with the first of ``forms`` (rich text, longest first) that
        fits on one line of ``width`` px; when none does, the last one wraps at
        word boundaries (never cut) and the trace plot makes room for the lines."""
        h = self.header
        h.setTextWidth(-1)
        line = None
        for html in forms:
            h.setHtml(html)
            line = line or h.boundingRect().height()  # one line's height
            if h.boundingRect().width() <= width:
                break
        else:
            h.setTextWidth(max(width, 40.0))
        if tip != h.toolTip():
            h.setToolTip(tip)
        extra = h.boundingRect().height() - (line or 0.0)  # the wrapped lines
        top = HEADER_H + (int(math.ceil(extra)) if extra > 1 else 0)
        if top != self.header_room:
            self.header_room = top
            self.trace.layout.setContentsMargins(0, top, 4, 0)
            self.trace.setMinimumHeight(TRACE_MIN + top)

    def style(self, pal) -> None:
        fg = pg.mkColor(pal.foreground)
        for p in (self.trace, self.act):
            p.getAxis("left").setTextPen(fg)
            p.getAxis("left").setPen(fg)
        self.raw.setPen(pg.mkPen(pal.raw, width=1))
        self.fit.setPen(pg.mkPen(self.color, width=1))
        self.fit2.setPen(pg.mkPen(self.color, width=1))
        self.pinned.setPen(pg.mkPen(pal.foreground, width=1, style=pg.QtCore.Qt.DashLine))
        # the baseline: dashed in the row's colour (a cosmetic 1-px pen: Qt dashes it
        # as it draws, no polygon); the pinned one dotted in the pinned fit's colour
        self.base.setPen(pg.mkPen(self.color, width=1, style=pg.QtCore.Qt.DashLine))
        self.pinned_base.setPen(pg.mkPen(pal.foreground, width=1, style=pg.QtCore.Qt.DotLine))
        fill = pg.mkColor(self.color)
        fill.setAlpha(90)
        self.activity.setPen(pg.mkPen(self.color, width=1))
        self.activity.setFillLevel(0.0)
        self.activity.setBrush(pg.mkBrush(fill))
        self.truth.setPen(pg.mkPen(pal.truth, width=2))
        for c in self.cursors:
            c.setPen(pg.mkPen(pal.foreground, width=1, style=pg.QtCore.Qt.DotLine))
        self.header.setDefaultTextColor(fg)


#: what each baseline model's dashed line is (the legend's words)
BASELINE_WORDS = {
    "drift": "drift baseline (fitted per sample)",
    "rolling": "rolling 20 % quantile + level",
    "scalar": "baseline (one fitted level)",
    "none": "no baseline (0)",
}


def _rgb(c) -> str:
    return "#%02x%02x%02x" % tuple(int(v) for v in c[:3])


def header_html(r: Row, res, pal, unit: str, level: int = 0) -> str:
    """A row's header: the ROI id in its colour, what its trace is (``unit``) and,
    with a live result ``res`` holding it, its read-outs.

    ``level`` shortens it for a narrow dock, in this order: 1 leaves out what the
    trace is (the header's tooltip says it, see :func:`header_tip`), 2 also
    writes "ev/min" for "events/min".  The id and every read-out stay."""
    fg = pal.foreground if pal else "#ffffff"
    muted = pal.muted_hex if pal else fg
    head = f'<span style="color:{_rgb(r.color)}; font-weight:bold">■ ROI {r.rid}</span>'
    if level < 1:
        head += f' <span style="color:{muted}">({unit_words(unit, res)})</span>'
    if res is None or r.rid not in res.ids:
        return f'<span style="color:{fg}">{head}</span>'
    i = res.ids.index(r.rid)
    rate = "ev/min" if level >= 2 else "events/min"
    bits = [f"σ {fmt(res.noise[i], 2)}", f"SNR {fmt(res.snr[i], 3)}",
            f"R² {res.r2[i]:.2f}", f"{fmt(res.events_per_min[i], 3)} {rate}"]
    if not res.converged[i]:
        bits.append("<b>not converged</b>")
    return f'<span style="color:{fg}">{head} &nbsp; {" · ".join(bits)}</span>'


#: how many shorter forms :func:`header_html` has (levels 0..HEADER_LEVELS - 1)
HEADER_LEVELS = 3


def unit_words(unit: str, res=None) -> str:
    """What a row's trace is, in the header's words."""
    unit = {"dF/F": "ΔF/F", "raw": "trace units"}.get(unit, unit)
    if res is not None and res.params.filter_enabled:  # res.trace is what is drawn
        unit += ", band-passed"
    return unit


def trace_name(src) -> str:
    """What the traces of ``src`` (a TraceSource; ``origin`` = (movie layer or
    None, Labels layer)) are, for the row headers: the mean of the movie in each
    ROI (less c times its neuropil when corrected), else what the reader
    recorded in the layer metadata's ``kind`` (suite2p "F - 0.7*Fneu", CaImAn
    "C", an NWB series), else the guessed unit."""
    origin = src.origin if isinstance(src.origin, tuple) and len(src.origin) == 2 else (None,) * 2
    image, labels = origin
    if image is not None:
        c = getattr(src, "neuropil", None)
        return "mean F in ROI" if c is None else f"F - {c:g}·Fneu"
    meta = getattr(labels, "metadata", None)
    cat = meta.get("catune") if isinstance(meta, dict) else None
    kind = str(cat.get("kind") or "") if isinstance(cat, dict) else ""
    if kind:
        if kind in ("C", "C + YrA", "F_dff"):
            kind = f"CaImAn {kind}"
        elif "/" in kind:  # an NWB series path: its name (and a neuropil term)
            kind = kind.rsplit("/", 1)[1]
        return kind.replace("*", "·")
    return src.unit


def text_width(html: str, font) -> float:
    """Width (px) of rich text ``html`` on one line in ``font``."""
    doc = QTextDocument()
    doc.setDefaultFont(font)
    doc.setDocumentMargin(0)
    doc.setHtml(html)
    return float(doc.idealWidth())


def header_tip(r: Row, res, unit: str) -> str:
    """The header's tooltip: the ROI, what its trace is and the read-outs' words
    (a narrow dock's header leaves the trace's name out)."""
    return (f"ROI {r.rid}: the trace is {unit_words(unit, res)}.\n"
            "σ: noise level; SNR: signal to noise; R²: how much of the trace the fit "
            "explains; ev/min: events per minute in the activity.")


def legend_html(pal, rows, res, residual: bool, pinned: bool, short: bool = False) -> str:
    """The trace rows' legend: which line is what (in the first row's colour; the
    baseline's model that of the live fit ``res``).  The fit includes the baseline:
    a fit that follows a bleaching trace does not say the baseline does.
    ``short``: a narrow dock's one line (the tooltip, :data:`LEGEND_TIP`, says the rest)."""
    if not rows:
        return ""
    mode = str(res.params.baseline) if res is not None else None
    fg = pal.foreground if pal is not None else "#ffffff"
    grey = _rgb(pal.raw) if pal is not None else "#969696"
    c = _rgb(rows[0].color)

    def item(glyph, col, text):
        return f'<span style="color:{col}"><b>{glyph}</b></span> {text}'

    if short:
        if residual:
            bits = [item("—", grey, "trace − fit")]
        else:
            bits = [item("—", grey, "trace"), item("━", c, "fit")]
            if mode is not None:
                bits.append(item("‐ ‐", c, f"baseline ({mode})"))
            if pinned:
                bits += [item("‐ ‐", fg, "pinned"), item("···", fg, "its baseline")]
    elif residual:
        bits = [item("—", grey, "trace − fit (residual; the fit includes the baseline)")]
    else:
        bits = [item("—", grey, "trace"), item("━", c, "fit = activity ⊛ kernel + baseline")]
        if mode is not None:
            bits.append(item("‐ ‐", c, BASELINE_WORDS.get(mode, f"{mode} baseline")))
        if pinned:
            bits += [item("‐ ‐", fg, "pinned fit"), item("···", fg, "its baseline")]
    return f'<span style="color:{fg}">{" &nbsp; ".join(bits)}</span>'


LEGEND_TIP = (
    "The grey trace is what is fitted. The fit (solid, the ROI's colour) is the activity "
    "convolved with the kernel PLUS the baseline: it can follow a slow bleaching or drift "
    "even when the baseline does not (the activity then absorbs it). The dashed line in "
    "the ROI's colour is the baseline alone, as the solver returns it: 'drift' a per-sample "
    "fitted baseline, 'rolling' CaTune's rolling 20 % quantile plus a fitted level, "
    "'scalar' one level per ROI, 'none' 0 (often below the trace's range). With a pinned "
    "fit, its fit is dashed and its baseline dotted in the text colour: switch the baseline "
    "model to compare them.")
