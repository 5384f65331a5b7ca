"""Input widgets of the tuner: number boxes with significant digits, log sliders."""

from __future__ import annotations

import math

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QValidator
from qtpy.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QSlider, QWidget


def fmt(v: float, digits: int = 4) -> str:
    """``v`` to ``digits`` significant digits, without exponent for usual values."""
    if v == 0 or not math.isfinite(v):
        return f"{v:g}"
    if 1e-4 <= abs(v) < 10 ** digits:
        dec = max(0, digits - 1 - int(math.floor(math.log10(abs(v)))))
        s = f"{v:.{dec}f}"
        return s.rstrip("0").rstrip(".") if "." in s else s
    return f"{v:.{digits - 1}e}"


class NumberBox(QDoubleSpinBox):
    """A spin box that shows significant digits and steps by a ratio."""

    def __init__(self, digits: int = 4, ratio: float = 0.03, floor: float = 1e-4):
        super().__init__()
        self._digits, self._ratio, self._floor = digits, ratio, floor
        self.setDecimals(15)
        self.setRange(-1e12, 1e12)
        self.setKeyboardTracking(False)  # typed text counts on Enter / focus-out
        self.setButtonSymbols(QDoubleSpinBox.NoButtons)
        self.setAlignment(Qt.AlignRight)
        self.setMinimumWidth(self.fontMetrics().horizontalAdvance("0.000123x") + 12)
        self.setAccelerated(True)

    def textFromValue(self, v):  # noqa: N802 - Qt API
        return fmt(v, self._digits)

    def valueFromText(self, text):  # noqa: N802 - Qt API
        if text == self.textFromValue(self.value()):
            return self.value()  # the shown, rounded text means the exact value
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text, pos):
        t = text.strip()
        try:
            float(t)
            return QValidator.Acceptable, text, pos
        except ValueError:
            ok = all(c in "0123456789.-+eE" for c in t)
            return (QValidator.Intermediate if ok else QValidator.Invalid), text, pos

    def stepBy(self, steps):  # noqa: N802 - Qt API
        v = self.value()
        if v <= 0:
            new = self._floor if steps > 0 else 0.0
        else:
            new = v * (1.0 + self._ratio) ** steps
        self.setValue(new)

    def show_value(self, v: float) -> None:
        v = float(v)
        if v == self.value() and self.lineEdit().text() == self.textFromValue(v):
            return  # unchanged: no repaint
        self.blockSignals(True)
        self.setValue(v)
        self.blockSignals(False)


class LogSlider(QSlider):
    """A horizontal slider over ``lo..hi`` on a log scale; one step ~``ratio``.

    With ``zero`` its left-most position means 0.  ``moved(value)`` is emitted
    for user moves only.  It is never narrower than ``MIN_WIDTH`` (still a
    slider to drag in a narrow dock).
    """

    moved = Signal(float)
    MIN_WIDTH = 120

    def __init__(self, lo: float, hi: float, ratio: float = 0.025, zero: bool = False):
        super().__init__(Qt.Horizontal)
        self.lo, self.hi, self._zero, self._ratio = float(lo), float(hi), zero, ratio
        self._n = self._steps(self.lo, self.hi)
        self.setRange(0, self._n + (1 if zero else 0))
        self.setSingleStep(1)
        self.setPageStep(10)
        self.setMinimumWidth(self.MIN_WIDTH)
        self._block = False
        self._wheel = 0
        self.valueChanged.connect(self._changed)

    def _steps(self, lo: float, hi: float) -> int:
        return int(math.ceil(math.log10(hi / lo) / math.log10(1.0 + self._ratio)))

    def respan(self, lo: float, hi: float) -> None:
        """Span ``lo..hi`` instead, at the same ~ratio per step, keeping the
        value shown (no ``moved``; the widget is kept: no layout work)."""
        lo, hi = float(lo), float(hi)
        if (lo, hi) == (self.lo, self.hi):
            return
        v = self.value_at(self.value())
        self.lo, self.hi, self._n = lo, hi, self._steps(lo, hi)
        self._block = True
        try:
            self.setRange(0, self._n + (1 if self._zero else 0))
            self.setValue(self.position_of(v))
        finally:
            self._block = False

    @property
    def decades(self) -> float:
        return math.log10(self.hi / self.lo)

    def value_at(self, pos: int) -> float:
        if self._zero:
            if pos <= 0:
                return 0.0
            pos -= 1
        return 10.0 ** (math.log10(self.lo) + self.decades * pos / self._n)

    def position_of(self, v: float) -> int:
        off = 1 if self._zero else 0
        if v <= 0:
            return 0
        x = (math.log10(v) - math.log10(self.lo)) / self.decades * self._n
        return int(min(max(round(x), 0), self._n)) + off

    def show_value(self, v: float) -> None:
        self._block = True
        try:
            self.setValue(self.position_of(v))
        finally:
            self._block = False

    def _changed(self, pos: int) -> None:
        if not self._block:
            self.moved.emit(self.value_at(pos))

    def wheelEvent(self, ev):  # noqa: N802 - Qt API
        """One position (~2.5 %) per wheel notch (Qt's default is three)."""
        self._wheel += ev.angleDelta().y() or ev.angleDelta().x()
        steps = int(self._wheel / 120)
        if steps:
            self._wheel -= steps * 120
            self.setValue(self.value() + steps)
        ev.accept()


class ParamRow(QWidget):
    """A label, a log slider and a number box; ``edited(value, typed)``."""

    edited = Signal(float, bool)

    def __init__(self, label: str, lo: float, hi: float, *, zero: bool = False,
                 digits: int = 4, slider: bool = True, tip: str = ""):
        super().__init__()
        self.label = QLabel(label)
        self.box = NumberBox(digits, floor=lo)
        self.slider = LogSlider(lo, hi, zero=zero) if slider else None
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        if self.slider is not None:
            lay.addWidget(self.slider, 1)
            self.slider.moved.connect(lambda v: self.edited.emit(v, False))
        lay.addWidget(self.box)
        self.box.valueChanged.connect(lambda v: self.edited.emit(float(v), True))
        self.set_tip(tip)

    def set_tip(self, tip: str) -> None:
        """The tooltip of the label, the slider and the box: what the value is;
        the slider's and the box's say how they change it."""
        self.tip = tip
        self.label.setToolTip(tip)
        if self.slider is not None:
            self.slider.setToolTip(f"{tip}. Drag (log scale), or arrow keys and the wheel "
                                   "(~2.5 % a step)" if tip else "")
        self.box.setToolTip(f"{tip}. Type a value and press Enter; arrow keys and the wheel "
                            "step by 3 %" if tip else "")

    def set_span(self, label: str, lo: float, hi: float, tip: str | None = None) -> None:
        self.label.setText(label)
        zero = self.slider._zero
        lay = self.layout()
        old = self.slider
        self.slider = LogSlider(lo, hi, zero=zero)
        self.slider.moved.connect(lambda v: self.edited.emit(v, False))
        lay.replaceWidget(old, self.slider)
        old.deleteLater()
        self.box._floor = lo
        self.set_tip(self.tip if tip is None else tip)

    def respan(self, lo: float, hi: float) -> None:
        """The slider spans ``lo..hi`` (the same widget: see LogSlider.respan)."""
        self.slider.respan(lo, hi)
        self.box._floor = lo

    def show_value(self, v: float) -> None:
        self.box.show_value(v)
        if self.slider is not None:
            self.slider.show_value(v)

    @property
    def value(self) -> float:
        return float(self.box.value())
