"""How the tuner's parts are laid out in its dock.

The dock can be narrow (napari's right dock area, ~400 px) or wide: parts that
sit side by side at the usual width are stacked when they would not fit, so a
control is never squeezed below its own minimum (a slider to its handle, a
combo box's text cut).
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtGui import QGuiApplication
from qtpy.QtWidgets import (
    QBoxLayout, QHBoxLayout, QLabel, QSplitter, QTabWidget, QVBoxLayout, QWidget,
)

from .fold import ROWS_MIN_H, Fold, Pane, memory_of, section_toggle

_ACROSS, _DOWN = QBoxLayout.Direction.LeftToRight, QBoxLayout.Direction.TopToBottom


def _min_width(w: QWidget) -> int:
    """The width a layout will not give ``w`` less of (as Qt's qSmartMinSize)."""
    return w.minimumWidth() or w.minimumSizeHint().width()


class Reflow(QObject):
    """Lays out the widgets of ``host``'s QBoxLayout ``wide`` (a direction)
    when its width holds them all at their minimum widths, else ``narrow``;
    ``host``'s minimum width is that of the narrower arrangement, so a dock
    can be made that narrow.  The ``inner`` Reflows (hosts among the parts)
    turn the other way: across while this one is stacked."""

    def __init__(self, host: QWidget, *, wide=_ACROSS, narrow=_DOWN, inner=(),
                 narrow_stretch=None):
        """``narrow_stretch``: the parts' stretch factors while narrow (the
        layout's own ones while wide)."""
        super().__init__(host)
        self.host, self.lay = host, host.layout()
        self.wide, self.narrow = wide, narrow
        self._stretch = ([self.lay.stretch(i) for i in range(self.lay.count())],
                         narrow_stretch)
        self.inner = {id(r.host): r for r in inner}
        self.outer = None  # the Reflow that turns this one
        for r in inner:
            r.outer = self
        host.installEventFilter(self)
        self.update()

    @property
    def is_wide(self) -> bool:
        return self.lay.direction() == self.wide

    def _parts(self, every: bool = False):
        items = (self.lay.itemAt(i) for i in range(self.lay.count()))
        return [it.widget() for it in items if it.widget() is not None
                and (every or not it.widget().isHidden())]

    def needs(self, direction, every: bool = False) -> int:
        """The least width of ``host`` laid out in ``direction`` (``every``: its
        hidden parts shown too)."""
        widths = []
        for w in self._parts(every):
            r = self.inner.get(id(w))
            widths.append(r.needs(r.narrow if direction == self.narrow else r.wide)
                          if r is not None else _min_width(w))
        if not widths:
            return 0
        m = self.lay.contentsMargins()
        if direction in (_ACROSS, QBoxLayout.Direction.RightToLeft):
            gaps = max(self.lay.spacing(), 0) * (len(widths) - 1)
            return sum(widths) + gaps + m.left() + m.right()
        return max(widths) + m.left() + m.right()

    def eventFilter(self, obj, ev):  # noqa: N802 - Qt API
        if obj is self.host and ev.type() in (QEvent.Type.Resize, QEvent.Type.LayoutRequest):
            self.update()
        return False

    def update(self) -> None:
        if self.outer is not None:
            return  # turned by the outer one
        wide = self.host.width() >= self.needs(self.wide)
        self._turn(wide)
        least = min(self.needs(self.wide), self.needs(self.narrow))
        if self.host.minimumWidth() != least:
            self.host.setMinimumWidth(least)

    def _turn(self, wide: bool) -> None:
        want = self.wide if wide else self.narrow
        if self.lay.direction() != want:
            self.lay.setDirection(want)
            stretch = self._stretch[0] if wide else self._stretch[1]
            for i, k in enumerate(stretch or ()):
                self.lay.setStretch(i, k)
        for r in self.inner.values():
            r._turn(wide)  # its own narrow way while this one is narrow
            least = r.needs(r.lay.direction())
            if r.host.minimumWidth() != least:
                r.host.setMinimumWidth(least)


def _box(parts, stretch, direction=_DOWN) -> QWidget:
    w = QWidget()
    lay = QBoxLayout(direction, w)
    lay.setContentsMargins(0, 0, 0, 0)
    for p, k in zip(parts, stretch):
        lay.addWidget(p, k)
    return w


def lay_out(t) -> None:
    """Controls at the top left; kernel / spectrum tabs over the ROI list at the
    top right (a section the user can hide); the trace rows below, a splitter
    between them; the layer combos above and the job lines and status under
    everything.  Narrow, the controls come first, the plots sit beside the ROI
    list under them (hidden until asked for: there they would take the rows'
    room), and the trace bar wraps.  The controls scroll when the splitter is
    dragged above them."""
    t.plots = QTabWidget()
    t.plots.setDocumentMode(True)
    t.plots.addTab(t.kernel, "kernel")
    t.plots.addTab(t.spectrum, "spectrum")
    t.plots.setTabToolTip(0, "The kernel (the shape of one transient): its time to peak "
                             "(dashed) and full width at half maximum (bar)")
    t.plots.setTabToolTip(1, "Power spectra of the selected ROIs and of all ROIs, with the "
                             "bandpass filter's band")
    # the plots keep a readable width: side by side with the controls only when
    # the width allows that, else under them, beside the ROI list
    t.plots.setMinimumWidth(220)
    right = _box([t.plots, t.roi_list], [2, 3])
    t.section = right  # the plots and the ROI list: shown or hidden by section_btn
    top = _box([t.controls, right], [3, 2], _ACROSS)
    left = QWidget()
    ll = QHBoxLayout(left)
    ll.setContentsMargins(0, 0, 0, 0)
    for w in (t.pin_btn, t.residual_box, t.truth_box, t.truth_btn):
        ll.addWidget(w)
    ll.addStretch(1)
    t.section_btn = section_toggle()
    shows = QWidget()
    sl = QHBoxLayout(shows)
    sl.setContentsMargins(0, 0, 0, 0)
    sl.addWidget(t.section_btn)
    sl.addStretch(1)
    sl.addWidget(QLabel("viewer shows"))
    sl.addWidget(t.overlay_mode)
    bar = _box([left, shows], [1, 0], _ACROSS)
    bar.layout().setSpacing(2)
    bottom = QWidget()
    bl = QVBoxLayout(bottom)
    bl.setContentsMargins(0, 0, 0, 0)
    bl.setSpacing(2)  # (every pixel counts in a short dock: the rows' strip gives way first)
    bl.addWidget(bar)
    bl.addWidget(t.traces, 1)
    # the rows' side may be made shorter than the rows' own least height (the
    # bar, a row and the overview): in a short dock the controls come first, and
    # the rows are cut at the bottom
    bottom.setMinimumHeight(ROWS_MIN_H)
    pane = Pane(top, whole=[t.controls])
    split = QSplitter(Qt.Vertical)
    split.addWidget(pane)
    split.addWidget(bottom)
    split.setStretchFactor(0, 0)
    split.setStretchFactor(1, 1)
    split.setChildrenCollapsible(False)
    t.splitter = split
    picker = t.picker.box.native
    picker.layout().addWidget(t.neuropil_box)  # (stacked under the combos when narrow)
    t.reflows = (Reflow(top, inner=[Reflow(right, wide=_DOWN, narrow=_ACROSS,
                                           narrow_stretch=[3, 2])]),
                 Reflow(bar), Reflow(picker))
    # (kept per viewer, and across restarts in the tuner's settings file)
    t.fold = Fold(t.reflows[0], right, t.section_btn, pane, split, memory_of(t.viewer),
                  keep=t.controls, prefs=t.prefs)
    # Tab goes through the bar left to right: the toggle after Events CSV...
    QWidget.setTabOrder(t.truth_btn, t.section_btn)
    QWidget.setTabOrder(t.section_btn, t.overlay_mode)
    lay = QVBoxLayout(t)
    lay.setContentsMargins(4, 4, 4, 4)
    lay.addWidget(picker)
    lay.addWidget(split, 1)
    lay.addWidget(t.jobs)
    t.status.setWordWrap(True)
    lay.addWidget(t.status)
    if QGuiApplication.platformName() == "xcb":
        # a window of its own on X11: napari's canvas is an OpenGL widget, so every
        # paint of a plain child of its window is composed with OpenGL over the
        # whole window (with software GL ~25 ms of both cores per slider move,
        # competing with the solve); a native child's paint is only copied to the
        # screen
        t.setAttribute(Qt.WA_NativeWindow)
