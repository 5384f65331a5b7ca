"""How the tuner shares its height between the controls and the trace rows.

The controls sit in a :class:`Pane` (a scroll area) over the rows, a splitter
between them: the pane opens at the controls' own height, and dragging the
splitter up gives the rows more (the controls then scroll; Tab still reaches
every one, scrolled into view).  The plots and the ROI list are a section the
user shows or hides with a toggle under it; until the user chooses, it is shown
where it fits beside the controls (a wide dock: it costs the rows nothing) and
hidden where it would sit under them (a narrow dock: ~130 px of the rows).

The user's choices (the section shown or not, the controls' height after a
splitter drag) are kept per viewer: a closed and reopened tuner comes back as
it was; and in the settings file (settings.py ``fold``), for the tuners of the
next napari.  A drag kept there is restored as it was in a window of the same
height; in one of another height only as far as it leaves the controls whole
(Estimate ... Apply in view), no taller than the controls' content (no empty
pane), and where one whole trace row fits beside the whole controls, short
enough to leave it (the rule of the rows' time strip, timestrip.py).
"""

from __future__ import annotations

import weakref

from qtpy.QtCore import QEvent, QObject, QPoint, QSize, Qt, QTimer, Signal
from qtpy.QtWidgets import QBoxLayout, QFrame, QScrollArea, QToolButton

#: per viewer: {"shown": bool, "top": int (px), "total": int (px)}, what the
#: user chose there ("restored": True while it is the settings file's choice)
_MEMORY: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
#: the least height of the controls' pane (px): it can be dragged this small
PANE_MIN_H = 60
#: the least height of the trace rows' side of the splitter (px), about one row
#: under the trace bar: where the dock is short, the controls (Estimate ... Apply)
#: come first, and the rows shrink to this
ROWS_MIN_H = 120
SECTION_TEXT = "plots && ROI list"
SECTION_TIP = ("Show or hide the kernel / spectrum plots and the ROI list (with Most active "
               "and Random). Hidden by default in a narrow dock, where they would take the "
               "trace rows' room; ROIs can still be selected by clicking them in the viewer.")


def memory_of(key) -> dict:
    """What the user chose in ``key``'s tuner (a viewer), kept while it lives."""
    try:
        return _MEMORY.setdefault(key, {})
    except TypeError:  # not weak-referenceable: nothing kept
        return {}


def section_toggle() -> QToolButton:
    """The toggle of the plots and ROI list: an arrow that says which way it goes."""
    b = QToolButton()
    b.setCheckable(True)
    b.setText(SECTION_TEXT)
    b.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
    b.setAutoRaise(True)
    b.setArrowType(Qt.RightArrow)
    b.setToolTip(SECTION_TIP)
    b.setFocusPolicy(Qt.StrongFocus)
    b.toggled.connect(lambda on: b.setArrowType(Qt.DownArrow if on else Qt.RightArrow))
    return b


class Pane(QScrollArea):
    """Scrolls ``content`` vertically when it is given less than its height; as
    wide as the content's minimum width (a vertical scroll bar's width more
    while it shows).

    Signals
    -------
    resized()  the content's size hints changed (a control shown or hidden, the
               layout turned), not on every layout request: a label's new text
               (a slider moved) asks for one and mostly changes nothing
    """

    resized = Signal()

    def __init__(self, content, whole=(), parent=None):
        """``whole``: the parts of ``content`` (a QBoxLayout's host) shown at
        their own height when the pane opens."""
        super().__init__(parent)
        self.whole = list(whole)
        self.setFrameShape(QFrame.NoFrame)
        # sized here, not by QScrollArea's widgetResizable: that holds the content
        # at its height for its width, which a word-wrapped label and a table make
        # the height of everything at its size hint (700+ px)
        self.setWidgetResizable(False)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAsNeeded)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAsNeeded)
        self.setWidget(content)
        self._hints = None  # the content's size hints when last placed
        content.installEventFilter(self)
        self.verticalScrollBar().installEventFilter(self)

    def _content_hints(self) -> tuple:
        c = self.widget()
        return (c.sizeHint(), c.minimumSizeHint(), c.minimumWidth(), self.natural_height())

    def eventFilter(self, obj, ev):  # noqa: N802 - Qt API
        t = ev.type()
        if obj is self.widget() and t == QEvent.Type.LayoutRequest:
            hints = self._content_hints()
            if hints != self._hints:  # (else nothing to place: a label's new text)
                self._hints = hints
                self.updateGeometry()  # a new minimum width of the content
                self._place()
                self.resized.emit()
        elif t in (QEvent.Type.LayoutRequest, QEvent.Type.Show, QEvent.Type.Hide):
            self.updateGeometry()  # a bar shown or hidden
        return False

    def resizeEvent(self, ev):  # noqa: N802 - Qt API
        super().resizeEvent(ev)
        self._place()

    def _place(self) -> None:
        """The content as wide as the pane (or its least width) and as tall as
        the pane (or its natural height: then it scrolls)."""
        c = self.widget()
        vp = self.viewport()
        # (its least width as its Reflow sets it: the narrower arrangement's, not
        # the current one's, or it would never turn narrow)
        w = max(vp.width(), c.minimumWidth() or c.minimumSizeHint().width())
        h = max(vp.height(), self.natural_height())
        if (c.width(), c.height()) != (w, h):
            c.resize(w, h)

    def _bar_w(self) -> int:
        bar = self.verticalScrollBar()
        return bar.sizeHint().width() if bar.isVisible() else 0

    def minimumSizeHint(self):  # noqa: N802 - Qt API
        c = self.widget()
        w = c.minimumWidth() or c.minimumSizeHint().width()
        return QSize(w + self._bar_w(), PANE_MIN_H)

    def sizeHint(self):  # noqa: N802 - Qt API
        c = self.widget()
        return QSize(c.sizeHint().width() + self._bar_w(), self.natural_height())

    def natural_height(self) -> int:
        """The pane's height that shows every part of the content unscrolled: the
        ``whole`` parts at their own height, the others (a table, plots: they
        ask for far more than they need) at their least."""
        c = self.widget()
        lay = c.layout()
        heights = []
        for i in range(lay.count()):
            w = lay.itemAt(i).widget()
            if w is None or w.isHidden():
                continue
            h = w.sizeHint().height() if w in self.whole else 0
            heights.append(max(h, w.minimumSizeHint().height(), w.minimumHeight()))
        if not heights:
            return PANE_MIN_H
        m = lay.contentsMargins()
        if lay.direction() in (QBoxLayout.Direction.TopToBottom,
                               QBoxLayout.Direction.BottomToTop):
            h = sum(heights) + max(lay.spacing(), 0) * (len(heights) - 1)
        else:
            h = max(heights)
        return h + m.top() + m.bottom()


class Fold(QObject):
    """Shows or hides ``section`` (a part of ``reflow``'s host) by ``button``,
    and sizes ``pane``, the first widget of ``splitter``, to its content.
    ``keep``: the part of the content a restored drag leaves whole (the
    controls, down to Apply); ``prefs``: the settings (settings.py) the user's
    choices are kept in across restarts (None: kept per viewer only)."""

    #: a drag is written to the settings this long after it stops (ms): not at
    #: every pixel of it
    SAVE_MS = 400

    def __init__(self, reflow, section, button, pane, splitter, memory: dict, *,
                 keep=None, prefs=None):
        super().__init__(button)
        self.reflow, self.section, self.button = reflow, section, button
        self.pane, self.splitter, self.memory = pane, splitter, memory
        self.keep, self.prefs = keep, prefs
        if not memory and prefs is not None:  # this viewer's first tuner
            memory.update(prefs.fold)
            if "top" in memory:
                memory["restored"] = True
        self._fitting = False
        self._fit_timer = self._timer(0, self.fit)
        self._reveal = False  # the section was just opened: scroll it into view
        self._reveal_timer = self._timer(0, self._scroll_to_section)
        self._save_timer = self._timer(self.SAVE_MS, self.save)
        reflow.host.installEventFilter(self)
        pane.installEventFilter(self)
        splitter.installEventFilter(self)
        button.toggled.connect(self._toggled)
        splitter.splitterMoved.connect(self._dragged)
        pane.resized.connect(self._content_resized)
        self._auto()

    def _timer(self, ms: int, slot) -> QTimer:
        t = QTimer(self)
        t.setSingleShot(True)
        t.setInterval(ms)
        t.timeout.connect(slot)
        return t

    @property
    def chosen(self):
        """The user's choice (True: shown), None while the width decides."""
        return self.memory.get("shown")

    def _show(self, on: bool) -> None:
        if self.section.isHidden() == on:
            self.section.setVisible(on)
        if self.button.isChecked() != on:
            self.button.blockSignals(True)
            self.button.setChecked(on)
            self.button.setArrowType(Qt.DownArrow if on else Qt.RightArrow)
            self.button.blockSignals(False)

    def _auto(self) -> None:
        """The section's default: shown when it fits beside the controls."""
        if self.chosen is not None:
            self._show(self.chosen)
            return
        r = self.reflow
        fits = r.host.width() >= r.needs(r.wide, every=True)
        if fits != (not self.section.isHidden()):
            self._fit_timer.start()
        self._show(fits)

    def _toggled(self, on: bool) -> None:
        self.memory["shown"] = bool(on)
        for k in ("top", "total", "restored"):  # the pane fits its new content
            self.memory.pop(k, None)
        self._show(bool(on))
        self._reveal = bool(on)
        self._fit_timer.start()
        self.save()

    def _dragged(self, *_) -> None:
        if not self._fitting:
            sizes = self.splitter.sizes()
            self.memory.update(top=int(sizes[0]), total=int(sum(sizes)))
            self.memory.pop("restored", None)
            self._save_timer.start()  # once the drag stops

    def save(self) -> None:
        """Keep the user's choices in the settings file."""
        self._save_timer.stop()
        if self.prefs is None:
            return
        try:
            self.prefs.fold = {k: self.memory[k] for k in ("shown", "top", "total")
                               if k in self.memory}
        except ValueError:  # (a splitter not laid out: sizes of 0) nothing worth keeping
            pass

    def _content_resized(self) -> None:
        if "top" not in self.memory:
            self._fit_timer.start()  # turned, grown or shrunk: fitted again

    def eventFilter(self, obj, ev):  # noqa: N802 - Qt API
        t = ev.type()
        if obj is self.reflow.host and t == QEvent.Type.Resize:
            self._auto()
        elif obj is self.pane and t == QEvent.Type.Show:
            self._fit_timer.start()  # first shown: sized to its content
        elif obj is self.pane and t == QEvent.Type.Hide and self._save_timer.isActive():
            self.save()  # the dock closed (or napari quits) right after a drag
        elif obj is self.splitter and t == QEvent.Type.Resize \
                and ("top" not in self.memory or self.memory.get("restored")):
            # the dock made taller or shorter: shared again (a restored drag is
            # checked against the new height)
            self._fit_timer.start()
        return False

    def _whole_h(self) -> int:
        """The pane's height that shows ``keep`` whole (0: no such part)."""
        if self.keep is None or self.keep.isHidden():
            return 0
        y = self.keep.mapTo(self.pane.widget(), QPoint(0, 0)).y()
        h = max(self.keep.sizeHint().height(), self.keep.minimumSizeHint().height())
        return max(y, 0) + h + 2 * self.pane.frameWidth()

    def _rows_need(self) -> int:
        """The rows' side's height that shows one whole trace row (its time
        strip given way: timestrip.py's rule); ROWS_MIN_H when the rows' side
        holds no trace view or no row."""
        rows = self.splitter.widget(1)
        tv = None
        lay = rows.layout()
        for i in range(lay.count() if lay is not None else 0):
            w = lay.itemAt(i).widget()
            if w is not None and hasattr(w, "fit_strip") and hasattr(w, "rows_glw"):
                tv = w
        if tv is None or not tv.shown:
            return ROWS_MIN_H
        r = tv.shown[0]  # (traceview.TraceView.fit_strip's row and room)
        row_h = max(tv.rows_glw.minimumHeight() / len(tv.shown),
                    r.trace.minimumHeight() + r.act.minimumHeight() + 4)
        lg = tv.legend
        legend_h = max(lg.heightForWidth(tv.width()), 0) if lg.text() else 0
        around = rows.height() - tv.height()  # (the bar over the rows, spacing)
        return max(ROWS_MIN_H, int(round(around + legend_h + 2 * tv.scroll.frameWidth() + row_h)))

    def _wanted(self, total: int):
        """The pane's height the user chose, None: none (its content's)."""
        want = self.memory.get("top")
        if want is not None and self.memory.get("restored") \
                and abs(total - int(self.memory.get("total", 0))) > 2:
            # a drag of another napari, in a window of another height: the
            # controls whole (Estimate ... Apply in view) first; then no taller
            # than the content (no empty pane under it); and short enough to
            # leave the rows one whole row where that fits beside whole controls
            whole = self._whole_h()
            natural = self.pane.natural_height()
            if not self.section.isHidden():  # (the plots and list use what they get)
                natural = max(natural, self.pane.widget().sizeHint().height())
            natural += 2 * self.pane.frameWidth()
            want = max(int(want), whole)
            want = min(want, max(natural, whole), max(total - self._rows_need(), whole))
        return want

    def fit(self) -> None:
        """The pane at the height the user dragged it to, else at its content's;
        the rows get the rest, down to ROWS_MIN_H (about one row: their side's
        least height), so in a short dock the rows shrink before the controls."""
        sizes = self.splitter.sizes()
        total = sum(sizes)
        if total <= 0:
            return
        want = self._wanted(total)
        if want is None:
            want = self.pane.natural_height() + 2 * self.pane.frameWidth()
        rows = self.splitter.widget(1)
        rest = max(rows.minimumHeight(), min(ROWS_MIN_H, rows.minimumSizeHint().height()))
        top = max(min(int(want), total - rest), PANE_MIN_H)
        if abs(sizes[0] - top) > 1:
            self._fitting = True
            try:
                self.splitter.setSizes([top, total - top])
            finally:
                self._fitting = False
        if self._reveal:
            self._reveal = False
            self._reveal_timer.start()

    def _scroll_to_section(self) -> None:
        """The section just opened, in view even where the pane is too short to
        hold it (the click must visibly do something)."""
        if self.section.isHidden():
            return
        lay = self.pane.widget().layout()
        if lay is not None:
            lay.activate()
        pane = self.pane
        pane._place()
        if self.section.height() <= pane.viewport().height():
            pane.ensureWidgetVisible(self.section, 0, 0)
        else:  # taller than the pane: its top in view (the tabs, the list's first rows)
            y = self.section.mapTo(pane.widget(), QPoint(0, 0)).y()
            pane.verticalScrollBar().setValue(y)
