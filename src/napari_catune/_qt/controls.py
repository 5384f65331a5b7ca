"""The parameter controls of the tuner: magicgui sliders with typed entry.

tau_rise and tau_decay span decades, so their sliders are log-scaled; each
slider has a spin box beside it for typed values.  The sampling rate has
presets because it is usually known rather than tuned.
"""

from __future__ import annotations

import math
from typing import Callable

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSlider,
    FloatSpinBox,
    Label,
    PushButton,
)
from napari.utils import notifications

from .. import kernel as _kernel
from ..kernel import PARAM_RANGES, tau_to_ar2
from ..params import TuningParams

FS_PRESETS = (7.5, 15.0, 20.0, 30.0, 60.0)
_PRESET_PROMPT = "presets"
# tau_rise is kept at most this fraction of tau_decay when a drag crosses it
_TAU_GAP = 0.95
DEFAULT_PARAMS = dict(tau_rise=0.05, tau_decay=0.5, fs=30.0, lam=0.05)


class _SliderEntry(Container):
    """A slider and a spin box kept in step; ``value`` is the parameter value."""

    def __init__(self, name: str, label: str, value: float, *, log: bool, step: float,
                 decimals_hint: float):
        lo, hi = PARAM_RANGES[name]
        # magicgui's LogSlider is coarse and emits its internal integer, so
        # a log scale is a FloatSlider over log10(value)
        self._log = log
        if log:
            slider = FloatSlider(value=math.log10(value), min=math.log10(lo),
                                 max=math.log10(hi), step=0.0005, readout=False,
                                 tracking=True)
        else:
            slider = FloatSlider(value=value, min=lo, max=hi, step=step, readout=False,
                                 tracking=True)
        spin = FloatSpinBox(value=value, min=lo, max=hi, step=decimals_hint)
        spin.native.setDecimals(5 if decimals_hint < 0.1 else 3)
        spin.native.setKeyboardTracking(False)  # typed text counts on Enter / focus-out
        spin.max_width = 90
        super().__init__(layout="horizontal", widgets=[slider, spin], labels=False,
                         label=label, name=name)
        self.margins = (0, 0, 0, 0)
        self.slider, self.spin = slider, spin
        self._lo, self._hi = lo, hi
        self._block = False
        self._value = float(value)  # exact; the spin box shows it rounded
        self._callbacks: list[Callable[[float], None]] = []
        slider.changed.connect(self._from_slider)
        spin.changed.connect(self._from_spin)

    # a single "value changed by the user" hook; programmatic sets go through set()
    def on_change(self, cb: Callable[[float], None]) -> None:
        self._callbacks.append(cb)

    def _from_slider(self, v: float) -> None:
        if self._block:
            return
        if self._log:
            v = 10.0 ** v
        self._set_widgets(v, skip=self.slider)
        for cb in self._callbacks:
            cb(float(v))

    def _from_spin(self, v: float) -> None:
        if self._block:
            return
        self._set_widgets(v, skip=self.spin)
        for cb in self._callbacks:
            cb(float(v))

    def _set_widgets(self, v: float, skip=None) -> None:
        self._block = True
        try:
            v = min(max(v, self._lo), self._hi)
            self._value = v
            if self.spin is not skip:
                self.spin.value = v
            if self.slider is not skip:
                self.slider.value = math.log10(v) if self._log else v
        finally:
            self._block = False

    @property
    def value(self) -> float:  # type: ignore[override]
        return self._value

    def slider_position(self, v: float) -> float:
        """The slider value that shows parameter value ``v`` (log10 for log sliders)."""
        return math.log10(v) if self._log else float(v)

    def set(self, v: float) -> None:
        """Set both widgets without calling the change hooks."""
        self._set_widgets(float(v))


class ParamControls(Container):
    """Sliders, read-outs, toggles and action buttons of the tuner.

    ``on_params_changed(cb)`` registers ``cb(TuningParams)`` for user edits;
    the action buttons are attributes (``estimate_btn``, ``save_btn``,
    ``load_btn``, ``apply_btn``, ``cancel_btn``) the tuner connects to.
    """

    def __init__(self):
        d = DEFAULT_PARAMS
        self.tau_rise = _SliderEntry("tau_rise", "tau_rise (s)", d["tau_rise"], log=True,
                                     step=0.001, decimals_hint=0.001)
        self.tau_decay = _SliderEntry("tau_decay", "tau_decay (s)", d["tau_decay"], log=True,
                                      step=0.01, decimals_hint=0.01)
        self.fs = _SliderEntry("fs", "fs (Hz)", d["fs"], log=False, step=0.5,
                               decimals_hint=0.5)
        self.fs_preset = ComboBox(
            choices=[_PRESET_PROMPT] + [f"{p:g}" for p in FS_PRESETS], value=_PRESET_PROMPT,
            label="fs presets", name="fs_preset",
        )
        self.lam = _SliderEntry("lam", "lambda", d["lam"], log=False, step=0.001,
                                decimals_hint=0.001)
        self.readout = Label(value="", label="kernel", name="readout")
        self.baseline = CheckBox(value=True, text="baseline", name="baseline")
        self.filter_enabled = CheckBox(value=False, text="bandpass", name="filter")
        self.overlay_mode = ComboBox(choices=["activity", "fit"], value="activity",
                                     label="overlay shows", name="overlay_mode")
        self.estimate_btn = PushButton(text="Estimate from data", name="estimate",
                                       tooltip="Estimate from data: selected ROIs, or the most active")
        self.save_btn = PushButton(text="Save parameters...", name="save",
                                   tooltip="Save parameters (CaTune JSON)")
        self.load_btn = PushButton(text="Load parameters...", name="load",
                                   tooltip="Load parameters (CaTune JSON)")
        self.apply_btn = PushButton(text="Apply to all ROIs", name="apply")
        self.cancel_btn = PushButton(text="Cancel", name="cancel", enabled=False)
        buttons1 = Container(layout="horizontal", widgets=[self.save_btn, self.load_btn],
                             labels=False)
        buttons2 = Container(layout="horizontal", widgets=[self.apply_btn, self.cancel_btn],
                             labels=False)
        toggles = Container(layout="horizontal", widgets=[self.baseline, self.filter_enabled],
                            labels=False)
        for c in (buttons1, buttons2, toggles):
            c.margins = (0, 0, 0, 0)
        super().__init__(widgets=[self.tau_rise, self.tau_decay, self.fs, self.fs_preset,
                                  self.lam, self.readout, toggles, self.overlay_mode,
                                  self.estimate_btn, buttons1, buttons2])
        self._callbacks: list[Callable[[TuningParams], None]] = []
        self._warned_order = False
        self.tau_rise.on_change(lambda v: self._edited("tau_rise", v))
        self.tau_decay.on_change(lambda v: self._edited("tau_decay", v))
        self.fs.on_change(lambda v: self._edited("fs", v))
        self.lam.on_change(lambda v: self._edited("lam", v))
        self.filter_enabled.changed.connect(lambda _: self._emit())
        self.baseline.changed.connect(lambda _: self._emit())
        self.fs_preset.changed.connect(self._preset)
        self._landmarks = (None, None, None)  # (tau_rise, tau_decay, landmarks)
        # fixed size: a label that grows with its text re-lays out the whole dock;
        # three short lines fit the narrowest dock (one long line was cut off)
        self.readout.native.setFixedHeight(3 * self.readout.native.fontMetrics().height() + 6)
        self.readout.native.setMinimumWidth(10)
        from qtpy.QtWidgets import QSizePolicy

        self.readout.native.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        self._update_readout()

    def on_params_changed(self, cb: Callable[[TuningParams], None]) -> None:
        self._callbacks.append(cb)

    @property
    def params(self) -> TuningParams:
        return TuningParams(
            tau_rise=self.tau_rise.value,
            tau_decay=self.tau_decay.value,
            fs=self.fs.value,
            lam=self.lam.value,
            filter_enabled=bool(self.filter_enabled.value),
            baseline=bool(self.baseline.value),
        )

    def set_params(self, p: TuningParams, *, emit: bool = True) -> None:
        """Move every control to ``p`` (validated by TuningParams already)."""
        self.tau_rise.set(p.tau_rise)
        self.tau_decay.set(p.tau_decay)
        self.fs.set(p.fs)
        self.lam.set(p.lam)
        with self.filter_enabled.changed.blocked():
            self.filter_enabled.value = bool(p.filter_enabled)
        with self.baseline.changed.blocked():
            self.baseline.value = bool(p.baseline)
        if emit:
            self._emit()  # updates the read-out too
        else:
            self._update_readout()

    def _preset(self, text: str) -> None:
        if text == _PRESET_PROMPT:
            return
        self.fs.set(float(text))
        with self.fs_preset.changed.blocked():
            self.fs_preset.value = _PRESET_PROMPT
        self._emit()

    def _edited(self, name: str, value: float) -> None:
        # keep tau_rise < tau_decay while dragging: clamp the control being moved
        tr, td = self.tau_rise.value, self.tau_decay.value
        if not tr < td:
            if name == "tau_rise":
                self.tau_rise.set(max(PARAM_RANGES["tau_rise"][0], td * _TAU_GAP))
            else:
                self.tau_decay.set(min(PARAM_RANGES["tau_decay"][1], tr / _TAU_GAP))
                if not self.tau_rise.value < self.tau_decay.value:
                    self.tau_rise.set(self.tau_decay.value * _TAU_GAP)
            if not self._warned_order:
                self._warned_order = True
                notifications.show_info(
                    "tau_rise must stay below tau_decay: the slider was held just below "
                    "it. Raise tau_decay first to allow a slower rise."
                )
        self._emit()

    def _emit(self) -> None:
        self._update_readout()
        try:
            p = self.params
        except ValueError as e:  # typed values are range-limited, so this is defensive
            notifications.show_error(f"Parameters out of range: {e}")
            return
        for cb in self._callbacks:
            cb(p)

    def landmarks(self, tau_rise: float, tau_decay: float) -> tuple[float, float, float]:
        """``kernel_landmarks(tau_rise, tau_decay)``, computed once per pair of taus
        (the read-out and the kernel plot share it)."""
        tr, td, lm = self._landmarks
        if (tr, td) != (tau_rise, tau_decay):
            lm = _kernel.kernel_landmarks(tau_rise, tau_decay)
            self._landmarks = (tau_rise, tau_decay, lm)
        return lm

    def _update_readout(self) -> None:
        tr, td, fs = self.tau_rise.value, self.tau_decay.value, self.fs.value
        try:
            t_peak, left, right = self.landmarks(tr, td)
            fwhm = right - left
            g1, g2, _, _ = tau_to_ar2(tr, td, fs)
        except ValueError:
            self.readout.value = "invalid: tau_rise must be below tau_decay"
            return
        if not (math.isfinite(t_peak) and math.isfinite(fwhm)):
            self.readout.value = ""
            return
        self.readout.value = (
            f"t_peak {t_peak * 1e3:.1f} ms\n"
            f"FWHM {fwhm * 1e3:.1f} ms\n"
            f"g1 {g1:.4f}, g2 {g2:.4f}"
        )
