"""The neuropil choice of the tuner's source area: a check box and the
coefficient, which render and set the session's ``neuropil`` (the state and
its validation live in :class:`~napari_catune.session.TuningSession`)."""

from __future__ import annotations

from napari.utils import notifications
from qtpy.QtWidgets import QCheckBox, QDoubleSpinBox, QHBoxLayout, QWidget

from ..session import NEUROPIL_RANGE

_WHAT = ("Subtract each ROI's neuropil as suite2p does: traces = F - c*Fneu, Fneu the mean "
         "of a surround (the ROI grown 2 px left out, every ROI pixel left out, a rectangle "
         "grown 5 px a side until it holds > 350 pixels), read from the movie once; "
         "as napari-catune extract --neuropil. The results record it.")
_NO_MOVIE = ("Only for traces read from a movie: choose the movie above. A suite2p folder's "
             "traces already are F - 0.7*Fneu (suite2p's own neuropil correction); other "
             "trace files are taken as they are.")


class NeuropilBox(QWidget):
    """'neuropil' check box + coefficient spin box (enabled with a movie only)."""

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.check = QCheckBox("neuropil")
        self.coef = QDoubleSpinBox()
        self.coef.setRange(*NEUROPIL_RANGE)
        self.coef.setSingleStep(0.05)
        self.coef.setDecimals(2)
        self.coef.setPrefix("c = ")
        self.coef.setKeyboardTracking(False)  # a typed number counts once, on Enter
        self.coef.setToolTip("The neuropil coefficient c in F - c*Fneu (suite2p's default "
                             "0.7; 0 gives F itself). Another value is applied without "
                             "reading the movie again.")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.check)
        lay.addWidget(self.coef)
        lay.addStretch(1)
        self._movie = False
        self.sync(session.neuropil)
        self.set_movie(False)
        self.check.toggled.connect(self._toggled)
        self.coef.valueChanged.connect(self._coefficient)

    def sync(self, *_) -> None:
        """Show the session's choice (e.g. after a reopened dock or a cancel)."""
        s = self.session
        for w, v in ((self.check, s.neuropil is not None), (self.coef, s.neuropil_coefficient)):
            w.blockSignals(True)
            (w.setChecked if w is self.check else w.setValue)(v)
            w.blockSignals(False)
        self._enable()

    def set_movie(self, chosen: bool) -> None:
        """A movie is (not) the chosen source: the choice applies (or not)."""
        self._movie = bool(chosen)
        self.check.setToolTip(_WHAT if self._movie else _WHAT + " " + _NO_MOVIE)
        self._enable()

    def _enable(self) -> None:
        self.check.setEnabled(self._movie)
        self.coef.setEnabled(self._movie and self.check.isChecked())

    def _toggled(self, on: bool) -> None:
        self._set(on=on)

    def _coefficient(self, value: float) -> None:
        self._set(coefficient=value)

    def _set(self, **kw) -> None:
        try:
            self.session.set_neuropil(**kw)
        except ValueError as e:
            notifications.show_error(f"Neuropil not changed: {e}")
        self.sync()
