"""Parameter controls of the tuner: log sliders with number boxes, bound to a session.

Number boxes show the whole value to a few significant digits (never cut to
fixed decimals) and commit on Enter or focus-out; arrow keys and the wheel
change a value by a few per cent.  Sliders are logarithmic (lambda has a
position for 0 at its left end).  A typed value outside a slider's span is
kept, with a warning, when the core accepts it; a value the core refuses
gives its message and the last valid value comes back.  Lambda is in the
traces' units: its slider spans multiples of the traces' noise
(``session.lam_slider_range``), and a value outside that span widens or
moves it (the slider never sits pinned at an end).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from napari.utils import notifications
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox, QComboBox, QGridLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget,
)

from .. import kernel as _kernel
from .. import session as _ses
from ..indicators import (  # noqa: F401 - re-exported
    INDICATORS, TAU_PRESETS, indicator_shape, indicator_taus, taus_from_peak_and_half_decay,
)
from .inputs import LogSlider, NumberBox, ParamRow, fmt  # noqa: F401 - re-exported

#: the CaTune web app's lambda slider ends here (its parameter files keep any value)
_WEB_LAM_MAX = _kernel.PARAM_RANGES["lam"][1]
FS_PRESETS = (7.5, 15.0, 20.0, 30.0, 60.0, 100.0)
_PRESET_PROMPT = "presets"
_TAU_GAP = 0.95  # a dragged tau_rise is held at this fraction of tau_decay
KERNEL_MODES = ("tau rise / decay", "peak / FWHM")
ESTIMATE_FROM = ("from selection", "from all ROIs")
_INDICATOR_PROMPT = "indicator..."
#: what each kinetic row means (the row's label, its tooltip)
TAU_RISE = ("tau_rise (s)", "Rise time constant of the kernel, in seconds")
TAU_DECAY = ("tau_decay (s)", "Decay time constant of the kernel, in seconds")
T_PEAK = ("t_peak (s)", "Time from a spike to the peak of its transient, in seconds")
FWHM = ("FWHM (s)", "Full width at half maximum of a transient, in seconds")


@functools.lru_cache(maxsize=16)
def landmarks(tau_rise: float, tau_decay: float) -> tuple[float, float, float]:
    """``kernel_landmarks``, once per pair of taus (read-out and plot share it)."""
    return _kernel.kernel_landmarks(tau_rise, tau_decay)


@functools.lru_cache(maxsize=16)
def _kernel_norms(tau_rise: float, tau_decay: float, fs: float) -> tuple[float, float]:
    h = _kernel.build_kernel(tau_rise, tau_decay, fs)
    return float(h.sum()), float(math.sqrt(h @ h))


def noise_units(p, sigma: float) -> float:
    """lambda as a threshold in noise sigmas of the kernel-matched filter
    (``lambda G / (sigma ||h||)``; estimate.lambda_for_noise inverts it)."""
    if not (sigma and math.isfinite(sigma) and sigma > 0):
        return float("nan")
    g, norm = _kernel_norms(p.tau_rise, p.tau_decay, p.fs)
    return p.lam * g / (sigma * norm)


class ParamControls(QWidget):
    """Sliders, boxes, toggles and buttons; every edit goes to ``session.set_params``.

    The action buttons (``estimate_btn``, ``save_btn``, ``load_btn``,
    ``apply_btn``, ``undo_btn``, ``redo_btn``) are connected by the tuner.
    """

    def __init__(self, session, parent=None, *, readouts_later: bool = False):
        """``readouts_later``: the read-outs wait for :meth:`show_readouts` (the
        tuner writes them once a move's rows have painted, not during its solve)."""
        super().__init__(parent)
        self.session = session
        self._sigma = float("nan")
        self._scale_of = None  # the noise array lambda's slider span was set from
        self._said_web_lam = False
        self._warned_order = False
        self.readouts_later = readouts_later
        self.kernel_mode = QComboBox()
        self.kernel_mode.addItems(KERNEL_MODES)
        self.kernel_mode.setToolTip("Tune the kernel by its time constants or by the shape of "
                                    "a transient (time to peak, full width at half maximum)")
        self.indicator = QComboBox()
        self.indicator.addItem(_INDICATOR_PROMPT)
        for i, (name, v) in enumerate(INDICATORS.items(), start=1):
            tp, fw = indicator_shape(name)
            self.indicator.addItem(name)
            self.indicator.setItemData(
                i, f"t_peak {fmt(tp * 1e3)} ms, FWHM {fmt(fw * 1e3)} ms; source: {v[3]}",
                Qt.ToolTipRole)
        self.indicator.setToolTip("Set the kernel to an indicator's published kinetics "
                                  "(a starting point: kinetics in vivo are often slower)")
        lo, hi = _ses.slider_range("tau_rise")
        self.kin_a = ParamRow(TAU_RISE[0], lo, hi, tip=TAU_RISE[1])
        lo, hi = _ses.slider_range("tau_decay")
        self.kin_b = ParamRow(TAU_DECAY[0], lo, hi, tip=TAU_DECAY[1])
        self.fs = ParamRow("fs (Hz)", 1.0, 1000.0, digits=6, slider=False,
                           tip="Sampling rate in Hz (frames per second)")
        self.fs_preset = QComboBox()
        self.fs_preset.addItems([_PRESET_PROMPT] + [f"{p:g}" for p in FS_PRESETS])
        self.fs_preset.setToolTip("Set fs to a common sampling rate (Hz)")
        self.fs.layout().insertWidget(0, self.fs_preset)
        lo, hi = _ses.slider_range("lam")
        self.lam = ParamRow(
            "lambda", lo, hi, zero=True,
            tip="Sparsity: a higher lambda gives sparser activity, fewer events (in the "
                "traces' units; 0 at the slider's left end)")
        self.lam_noise = QLabel("")
        self.lam_noise.setToolTip(
            "lambda in noise units: the kernel-matched noise level it stands for "
            "(lambda G / (sigma ||h||), sigma the median noise of the selected ROIs). "
            "About 2-4 sigma keeps noise out of the activity.")
        self.lam_noise.setMinimumWidth(self.fontMetrics().horizontalAdvance("≈ 10.0 σ") + 4)
        self.lam.layout().addWidget(self.lam_noise)
        self.readout = QLabel("")
        self.readout.setWordWrap(True)
        self.baseline = QComboBox()
        self.baseline.addItems(_ses.BASELINE_MODES)
        self.baseline.setToolTip(
            "Baseline: 'scalar' fits one level per trace with the spikes; 'rolling' "
            "subtracts CaTune's rolling 20th percentile first; 'drift' fits a slow "
            "baseline jointly with the spikes (the default: best on real recordings); "
            "'none' fixes it at 0.")
        self.filter_enabled = QCheckBox("bandpass")
        self.filter_enabled.setToolTip("CaTune's bandpass filter before the fit")
        self._baseline_label = QLabel("baseline")
        self._baseline_label.setToolTip(self.baseline.toolTip())
        self.estimate_btn = QPushButton("Estimate")
        self.estimate_btn.setToolTip("Estimate tau and lambda, pooled over the ROIs chosen "
                                     "beside it")
        self.estimate_from = QComboBox()
        self.estimate_from.addItems(ESTIMATE_FROM)
        self.estimate_from.setToolTip(
            "Estimate from the selected ROIs (the most active when none are selected), or "
            "from all ROIs (pooled over the highest-SNR ones)")
        self.undo_btn = QPushButton("Undo")
        self.undo_btn.setToolTip("Go back to the parameters before the last change")
        self.redo_btn = QPushButton("Redo")
        self.redo_btn.setToolTip("Go forward again to the parameters undone last")
        self.save_btn = QPushButton("Save...")
        self.save_btn.setToolTip("Save parameters (CaTune JSON)")
        self.load_btn = QPushButton("Load...")
        self.load_btn.setToolTip("Load parameters (CaTune JSON)")
        self.apply_btn = QPushButton("Apply to all ROIs")
        self.apply_btn.setToolTip(
            "Deconvolve every ROI with these parameters, in the background (Cancel stops "
            "it): the results become the 'CaTune activity' layer and features of the "
            "Labels layer; save them with File > IO Utilities > Save CaTune results...")

        grid = QGridLayout()
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setVerticalSpacing(2)
        kernel_label = QLabel("kernel")
        kernel_label.setToolTip(self.kernel_mode.toolTip())
        grid.addWidget(kernel_label, 0, 0)
        mode = QHBoxLayout()
        mode.addWidget(self.kernel_mode, 1)
        mode.addWidget(self.indicator, 1)
        grid.addLayout(mode, 0, 1)
        for r, row in enumerate((self.kin_a, self.kin_b, self.fs, self.lam), start=1):
            grid.addWidget(row.label, r, 0)
            grid.addWidget(row, r, 1)
        opts = QHBoxLayout()
        opts.addWidget(self._baseline_label)
        opts.addWidget(self.baseline)
        opts.addWidget(self.filter_enabled)
        opts.addStretch(1)
        grid.addLayout(opts, 5, 0, 1, 2)
        grid.addWidget(self.readout, 6, 0, 1, 2)
        buttons = QGridLayout()
        est = QHBoxLayout()
        est.setSpacing(2)
        est.addWidget(self.estimate_btn, 1)
        est.addWidget(self.estimate_from, 1)
        buttons.addLayout(est, 0, 0, 1, 2)
        buttons.addWidget(self.undo_btn, 0, 2)
        buttons.addWidget(self.redo_btn, 0, 3)
        buttons.addWidget(self.save_btn, 1, 0)
        buttons.addWidget(self.load_btn, 1, 1)
        buttons.addWidget(self.apply_btn, 1, 2, 1, 2)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(grid)
        lay.addLayout(buttons)
        lay.addStretch(1)

        self.kin_a.edited.connect(lambda v, typed: self._kinetic("a", v, typed))
        self.kin_b.edited.connect(lambda v, typed: self._kinetic("b", v, typed))
        self.fs.edited.connect(lambda v, typed: self._set("fs", v, typed))
        self.lam.edited.connect(lambda v, typed: self._set("lam", v, typed))
        self.fs_preset.currentTextChanged.connect(self._preset)
        self.indicator.currentTextChanged.connect(self._indicator)
        self.baseline.currentTextChanged.connect(self._baseline)
        self.filter_enabled.toggled.connect(lambda on: self._apply(filter_enabled=bool(on)))
        self.kernel_mode.currentIndexChanged.connect(self._mode_changed)
        self.undo_btn.clicked.connect(lambda: self.session.undo())
        self.redo_btn.clicked.connect(lambda: self.session.redo())
        session.params_changed.connect(self.show_params)
        self.show_params(session.params)
        self.show_readouts()

    def close_session(self) -> None:
        try:
            self.session.params_changed.disconnect(self.show_params)
        except Exception:  # noqa: BLE001
            pass

    # ------------------------------------------------------------ state
    @property
    def shape_mode(self) -> bool:
        return self.kernel_mode.currentIndex() == 1

    def set_noise(self, sigma: float) -> None:
        """The noise level that lambda's read-out refers to."""
        self._sigma = float(sigma)
        self._show_noise(self.session.params)

    def set_source_noise(self, noise) -> None:
        """Span lambda's slider by the noise of all ROIs (``TraceSource.noise``):
        once per source (a new array), not per selection."""
        if noise is self._scale_of:
            return
        self._scale_of = noise
        sig = math.nan
        if noise is not None and len(noise):
            fin = np.asarray(noise, dtype=np.float64)
            fin = fin[np.isfinite(fin)]
            if fin.size:  # (all NaN: no scale)
                sig = float(np.median(fin))
        self.lam.respan(*_ses.lam_slider_range(sig, self.session.params.lam))

    def _fit_lam_span(self, lam: float) -> None:
        s = self.lam.slider
        span = _ses.lam_slider_range(lam=lam, span=(s.lo, s.hi))
        if span != (s.lo, s.hi):
            self.lam.respan(*span)

    def show_params(self, p) -> None:
        """Move every control to ``p`` without emitting edits (the read-outs too,
        unless ``readouts_later``: then :meth:`show_readouts` writes them)."""
        if self.shape_mode:
            tp, left, right = landmarks(p.tau_rise, p.tau_decay)
            self.kin_a.show_value(tp)
            self.kin_b.show_value(right - left)
        else:
            self.kin_a.show_value(p.tau_rise)
            self.kin_b.show_value(p.tau_decay)
        self.fs.show_value(p.fs)
        self._fit_lam_span(p.lam)
        self.lam.show_value(p.lam)
        if p.lam > _WEB_LAM_MAX and not self._said_web_lam:
            self._said_web_lam = True
            notifications.show_info(
                f"lambda = {fmt(p.lam)} is above {fmt(_WEB_LAM_MAX)}, the end of the CaTune web "
                "app's lambda slider (sized for dF/F traces; lambda is in the traces' units). "
                "The tuner, the CLI and a saved file use the value as given; the web app's "
                "slider cannot show it.")
        mode = str(p.baseline)
        if self.baseline.currentText() != mode:
            self.baseline.blockSignals(True)
            self.baseline.setCurrentText(mode)
            self.baseline.blockSignals(False)
        if self.filter_enabled.isChecked() != p.filter_enabled:
            self.filter_enabled.blockSignals(True)
            self.filter_enabled.setChecked(p.filter_enabled)
            self.filter_enabled.blockSignals(False)
        self.undo_btn.setEnabled(self.session.can_undo)
        self.redo_btn.setEnabled(self.session.can_redo)
        if not self.readouts_later:
            self.show_readouts(p)

    def show_readouts(self, p=None) -> None:
        """The kernel's other parametrisation and lambda in noise units, for ``p``
        (default: the session's parameters)."""
        p = self.session.params if p is None else p
        tp, left, right = landmarks(p.tau_rise, p.tau_decay)
        if self.shape_mode:
            other = f"tau_rise {fmt(p.tau_rise * 1e3)} ms, tau_decay {fmt(p.tau_decay * 1e3)} ms"
        else:
            other = f"t_peak {fmt(tp * 1e3)} ms, FWHM {fmt((right - left) * 1e3)} ms"
        g1, g2, _, _ = p.ar2
        self.readout.setText(other)
        self.readout.setToolTip(f"AR(2) form at fs = {fmt(p.fs, 6)} Hz: g1 {g1:.6f}, "
                                f"g2 {g2:.6f}")
        self._show_noise(p)

    def _show_noise(self, p) -> None:
        z = noise_units(p, self._sigma)
        self.lam_noise.setText(f"≈ {fmt(z, 3)} σ" if math.isfinite(z) else "")
        need = self.lam_noise.sizeHint().width()
        if need > self.lam_noise.minimumWidth():  # (grows only: no re-layout per move)
            self.lam_noise.setMinimumWidth(need)

    def _mode_changed(self, _=None) -> None:
        if self.shape_mode:
            self.kin_a.set_span(T_PEAK[0], *_ses.slider_range("t_peak"), tip=T_PEAK[1])
            self.kin_b.set_span(FWHM[0], *_ses.slider_range("fwhm"), tip=FWHM[1])
        else:
            self.kin_a.set_span(TAU_RISE[0], *_ses.slider_range("tau_rise"), tip=TAU_RISE[1])
            self.kin_b.set_span(TAU_DECAY[0], *_ses.slider_range("tau_decay"),
                                tip=TAU_DECAY[1])
        self.show_params(self.session.params)
        self.show_readouts()

    # ------------------------------------------------------------ edits
    def _apply(self, **changes) -> bool:
        try:
            # lambda above the web app's 0-10: said once, by show_params (a
            # thread's own quiet: no process-wide warnings filter per move)
            with _kernel.quiet_range("lam"):
                self.session.set_params(**changes)
        except ValueError as e:
            notifications.show_error(f"Parameters not applied: {e}")
            self.show_params(self.session.params)  # the last valid values come back
            return False
        return True

    def _warn_span(self, name: str, label: str, v: float) -> None:
        lo, hi = _ses.slider_range(name)
        if not lo <= v <= hi:
            notifications.show_warning(
                f"{label} = {fmt(v)} is outside the slider's span {fmt(lo)}-{fmt(hi)}; "
                "the value is kept (the slider stays at its end).")

    def _set(self, name: str, v: float, typed: bool) -> None:
        # (lambda's slider span follows a typed value: no warning)
        if self._apply(**{name: v}) and typed and name == "fs":
            self._warn_span(name, "fs", v)

    def _kinetic(self, which: str, v: float, typed: bool) -> None:
        p = self.session.params
        if self.shape_mode:
            tp, left, right = landmarks(p.tau_rise, p.tau_decay)
            t_peak, fwhm = (v, right - left) if which == "a" else (tp, v)
            try:
                tr, td = _kernel.tau_from_shape(t_peak, fwhm)
            except ValueError as e:
                notifications.show_error(f"Kernel shape not possible: {e}")
                self.show_params(p)
                return
            if self._apply(tau_rise=tr, tau_decay=td) and typed:
                self._warn_span("t_peak" if which == "a" else "fwhm",
                                "t_peak" if which == "a" else "FWHM", v)
            return
        name = "tau_rise" if which == "a" else "tau_decay"
        changes = {name: v}
        if not typed:
            # a drag holds tau_rise below tau_decay instead of failing
            if name == "tau_rise" and v >= p.tau_decay:
                changes[name] = p.tau_decay * _TAU_GAP
            elif name == "tau_decay" and v <= p.tau_rise:
                changes["tau_rise"] = v * _TAU_GAP
            if len(changes) > 1 or changes[name] != v:
                if not self._warned_order:
                    self._warned_order = True
                    notifications.show_info(
                        "tau_rise must stay below tau_decay: it was held just below it. "
                        "Raise tau_decay first to allow a slower rise.")
        if self._apply(**changes) and typed:
            self._warn_span(name, name, v)

    def _preset(self, text: str) -> None:
        if text == _PRESET_PROMPT:
            return
        self._apply(fs=float(text))
        self.fs_preset.blockSignals(True)
        self.fs_preset.setCurrentText(_PRESET_PROMPT)
        self.fs_preset.blockSignals(False)

    def _indicator(self, name: str) -> None:
        if name not in INDICATORS:
            return
        tr, td = indicator_taus(name)
        if self._apply(tau_rise=tr, tau_decay=td):
            tp = INDICATORS[name][0]
            fs = self.session.params.fs
            slow = (f" Note: its time to peak ({fmt(tp * 1e3)} ms) is shorter than two frames "
                    f"at fs = {fmt(fs)} Hz.") if tp * fs < 2 else ""
            notifications.show_info(f"Kernel set to {name}: {INDICATORS[name][3]}.{slow}")
        self.indicator.blockSignals(True)
        self.indicator.setCurrentText(_INDICATOR_PROMPT)
        self.indicator.blockSignals(False)

    def _baseline(self, mode: str) -> None:
        self._apply(baseline=mode)
