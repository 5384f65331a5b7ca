"""How the tuner's parts are laid out in its dock."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtGui import QGuiApplication
from qtpy.QtWidgets import QHBoxLayout, QLabel, QSplitter, QTabWidget, QVBoxLayout, QWidget


def lay_out(t) -> None:
    """Controls at the top left; kernel / spectrum tabs over the ROI list at the
    top right; the trace rows below (a splitter between them); the layer combos
    above and the job lines and status under everything."""
    t.plots = QTabWidget()
    t.plots.setDocumentMode(True)
    t.plots.addTab(t.kernel, "kernel")
    t.plots.addTab(t.spectrum, "spectrum")
    t.plots.setTabToolTip(1, "Power spectra of the selected ROIs and of all ROIs, with the "
                             "bandpass filter's band")
    right = QWidget()
    rl = QVBoxLayout(right)
    rl.setContentsMargins(0, 0, 0, 0)
    rl.addWidget(t.plots, 2)
    rl.addWidget(t.roi_list, 3)
    top = QWidget()
    tl = QHBoxLayout(top)
    tl.setContentsMargins(0, 0, 0, 0)
    tl.addWidget(t.controls, 3)
    tl.addWidget(right, 2)
    bar = QHBoxLayout()
    bar.addWidget(t.pin_btn)
    bar.addWidget(t.residual_box)
    bar.addWidget(t.truth_box)
    bar.addWidget(t.truth_btn)
    bar.addStretch(1)
    bar.addWidget(QLabel("viewer shows"))
    bar.addWidget(t.overlay_mode)
    bottom = QWidget()
    bl = QVBoxLayout(bottom)
    bl.setContentsMargins(0, 0, 0, 0)
    bl.addLayout(bar)
    bl.addWidget(t.traces, 1)
    split = QSplitter(Qt.Vertical)
    split.addWidget(top)
    split.addWidget(bottom)
    split.setStretchFactor(0, 0)
    split.setStretchFactor(1, 1)
    split.setChildrenCollapsible(False)
    split.setSizes([290, 610])
    t.splitter = split
    lay = QVBoxLayout(t)
    lay.setContentsMargins(4, 4, 4, 4)
    lay.addWidget(t.picker.box.native)
    lay.addWidget(split, 1)
    lay.addWidget(t.jobs)
    t.status.setWordWrap(True)
    lay.addWidget(t.status)
    t.setMinimumWidth(560)
    if QGuiApplication.platformName() == "xcb":
        # a window of its own on X11: napari's canvas is an OpenGL widget, so every
        # paint of a plain child of its window is composed with OpenGL over the
        # whole window (with software GL ~25 ms of both cores per slider move,
        # competing with the solve); a native child's paint is only copied to the
        # screen
        t.setAttribute(Qt.WA_NativeWindow)
