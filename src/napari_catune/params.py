"""Tuned parameters and the CaTune export JSON (schema 1.2.0).

The file is the one the CaTune web app and ``calab.load_export_params``
read; we read any 1.x export that has a ``parameters`` block, whichever tool
wrote it.  Loading only parses JSON: nothing in the file is evaluated.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import kernel
# one home for the mode names, their validation, the rolling window and the
# drift default: baseline.py, next to the code that computes them
from .baseline import BASELINE_MODES, baseline_mode, check_drift_scale, default_drift_scale, rolling_window
from .baseline import DEFAULT_QUANTILE as ROLLING_QUANTILE
from ._atomic import atomic_write_text
from .io import json_default
from ._version import __version__

__all__ = [
    "TuningParams", "save_params", "load_params", "SCHEMA_VERSION", "FORMULATION",
    "BASELINE_MODES", "DEFAULT_BASELINE", "BaselineMode", "rolling_window", "written_by_us",
    "load_params_dict", "fs_matches", "FS_REL_TOL",
]

SCHEMA_VERSION = "1.2.0"
# exports are ~1.5 kB; anything this large is some other file opened by mistake
_MAX_BYTES = 4 * 2**20

#: Two frame rates closer than this (relative) are the same rate: a rate
#: stored rounded (suite2p's ops, an NWB file: 121.965) and the same rate at
#: full precision (121.96515600054215) differ by ~1e-6; a real mismatch (a
#: different microscope setting, 30 vs 121.965 Hz, 120.122 vs 121.965) by
#: far more.  1e-4 shifts a 1 s decay by 0.1 ms.
FS_REL_TOL = 1e-4


def fs_matches(a: float, b: float) -> bool:
    """True when frame rates ``a`` and ``b`` (Hz) are the same rate, within
    :data:`FS_REL_TOL`: the one check of parameters tuned at one rate against
    data recorded at another (the tuner's Load... and the CLI)."""
    return math.isclose(float(a), float(b), rel_tol=FS_REL_TOL)


# ---------------------------------------------------------------- baseline modes

#: What a TuningParams gets when no mode is given.
DEFAULT_BASELINE = "scalar"


class BaselineMode(str):
    """One of :data:`BASELINE_MODES`; a ``str`` in every respect but truth.

    ``bool(mode)`` is False only for ``"none"``: code written when the field
    was a bool ("is a baseline estimated?") keeps its meaning.
    """

    __slots__ = ()

    def __new__(cls, value):
        if isinstance(value, cls):
            return value
        # one validation for the solver and the parameters (baseline.py)
        return super().__new__(cls, baseline_mode(value))

    def __bool__(self) -> bool:
        return str.__ne__(self, "none")

    def __repr__(self) -> str:
        return repr(str(self))

    def __reduce__(self):  # pickles (Dask workers) as the class, not a bare str
        return (BaselineMode, (str(self),))


# What our solver computes (solver.py); written into every export.  The
# objective and the baseline entries depend on the mode (_formulation).
_OBJECTIVE = "min_{s>=0, b} (1/2)||y - K*s - b||_2^2 + lambda*G*||s||_1, G = sum(K)"
_OBJECTIVE_NO_BASELINE = "min_{s>=0} (1/2)||y - K*s||_2^2 + lambda*G*||s||_1, G = sum(K)"
_OBJECTIVE_DRIFT = (
    "min_{s>=0, b_1..b_T} (1/2)||y - K*s - b||_2^2 + lambda*G*||s||_1 "
    "+ (mu/2)*sum_t (b_t - b_{t-1})^2, G = sum(K), mu = (drift_scale*fs)^2"
)
FORMULATION = {
    "model": (
        "exact primal-dual active-set method with non-negativity constraint (block "
        "principal pivoting, O(T) Riccati solves on the AR(2) form); FISTA with "
        "adaptive restart as reference and fallback"
    ),
    "objective": _OBJECTIVE,
    "kernel": "h(t) = exp(-t/tau_decay) - exp(-t/tau_rise), normalized to unit peak",
    "ar2_relation": (
        "c[t] = g1*c[t-1] + g2*c[t-2] + s[t], where g1 = decayRoot+riseRoot, "
        "g2 = -(decayRoot*riseRoot), decayRoot = exp(-dt/tau_decay), "
        "riseRoot = exp(-dt/tau_rise)"
    ),
    "lambda_definition": "sparsity: the L1 weight on s is lambda times the kernel DC gain G",
    "convergence": (
        "KKT conditions met exactly (active set unchanged), or FISTA's relative "
        "objective change < 1e-6; at most 2000 iterations"
    ),
    "baseline": DEFAULT_BASELINE,
}

# formulation.baseline as napari-catune wrote it before the modes (a bool)
_LEGACY_BASELINE = {
    "a scalar b per trace, estimated jointly with s": "scalar",
    "none: b = 0": "none",
}


@dataclass(frozen=True)
class TuningParams:
    """One set of CaTune parameters, validated on construction.

    Every physically valid value is accepted (as calab does); values outside
    the CaTune web app's slider ranges (``kernel.PARAM_RANGES``) are kept,
    with a :class:`kernel.ParameterRangeWarning`.

    Parameters
    ----------
    tau_rise, tau_decay : float
        Kernel time constants in seconds, ``0 < tau_rise < tau_decay``
        (CaTune's sliders: 0.001-0.5 s and 0.01-10 s).
    fs : float
        Sampling rate in Hz, > 0 (CaTune's slider: 1-1000 Hz).
    lam : float
        Sparsity lambda, >= 0, in units of the kernel DC gain (slider 0-10).
    filter_enabled : bool
        Apply the CaTune bandpass before solving.
    baseline : str
        The baseline model, one of :data:`BASELINE_MODES`:

        * ``"scalar"``: a constant b per trace, fitted jointly with the spikes;
        * ``"rolling"``: CaTune's preprocessing (the 0.2 quantile over a
          rolling window of ``5*ceil(5*tau_decay*fs)`` samples is subtracted),
          then the scalar fit: what the web app and calab compute;
        * ``"drift"``: a slowly varying b_t fitted jointly with the spikes;
        * ``"none"``: b = 0.

        ``True`` is read as ``"scalar"`` and ``False`` as ``"none"`` (the field
        was a bool); the stored value is a :class:`BaselineMode`, whose truth
        value is False only for ``"none"``.  Saved in the export's
        ``formulation`` block so batch runs solve what was tuned.
    drift_scale : float or None
        Time scale of the drift in seconds (> 0), only meaningful for
        ``baseline="drift"``; None lets the solver choose.  For any other
        mode it is set to None, so two parameter sets that compute the same
        thing compare equal.
    """

    tau_rise: float
    tau_decay: float
    fs: float
    lam: float
    filter_enabled: bool = False
    baseline: str = DEFAULT_BASELINE
    drift_scale: float | None = None

    def __post_init__(self):
        v = self.filter_enabled
        if isinstance(v, np.bool_):
            v = bool(v)
        if not isinstance(v, bool):
            raise ValueError(f"filter_enabled must be True or False, got {v!r}")
        object.__setattr__(self, "filter_enabled", v)
        object.__setattr__(self, "baseline", BaselineMode(self.baseline))
        for name in ("tau_rise", "tau_decay", "fs", "lam"):
            v = getattr(self, name)
            # float("0.1") and float(True) work but are not numbers the user meant
            if isinstance(v, (bool, str, bytes)):
                raise ValueError(f"{name} must be a number, got {v!r}")
        tr, td, fs, lam = kernel.validate_params(self.tau_rise, self.tau_decay, self.fs, self.lam)
        object.__setattr__(self, "tau_rise", tr)
        object.__setattr__(self, "tau_decay", td)
        object.__setattr__(self, "fs", fs)
        object.__setattr__(self, "lam", lam)
        object.__setattr__(self, "drift_scale", _drift_scale(self.drift_scale, self.baseline))

    @cached_property
    def _kernel_shape(self) -> tuple[float, float]:
        # root finding: worth computing once per instance (cached_property
        # writes to __dict__ directly, which a frozen dataclass allows)
        return kernel.kernel_shape(self.tau_rise, self.tau_decay)

    @property
    def t_peak(self) -> float:
        """Time to peak of the kernel, seconds."""
        return self._kernel_shape[0]

    @property
    def fwhm(self) -> float:
        """Full width at half maximum of the kernel, seconds."""
        return self._kernel_shape[1]

    @property
    def ar2(self) -> tuple[float, float, float, float]:
        """AR(2) form ``(g1, g2, d, r)`` at this sampling rate."""
        return kernel.tau_to_ar2(self.tau_rise, self.tau_decay, self.fs)

    def solver_kwargs(self) -> dict:
        """Keywords for ``run_deconvolution(_full)`` beyond the four numbers:
        ``filter_enabled``, ``baseline`` (the mode string; a BaselineMode, so
        a solver that still takes a bool reads "none" as False) and, for
        ``"drift"`` with a scale, ``drift_scale``."""
        kw = {"filter_enabled": self.filter_enabled, "baseline": self.baseline}
        if self.drift_scale is not None:
            kw["drift_scale"] = self.drift_scale
        return kw

    def to_dict(self) -> dict:
        """Plain dict of the fields (JSON-ready; ``TuningParams(**d)`` inverts it)."""
        return {
            "tau_rise": self.tau_rise,
            "tau_decay": self.tau_decay,
            "fs": self.fs,
            "lam": self.lam,
            "filter_enabled": self.filter_enabled,
            "baseline": str(self.baseline),
            "drift_scale": self.drift_scale,
        }

    def replace(self, **changes) -> "TuningParams":
        """A copy with some fields changed (validated again)."""
        return TuningParams(**{**self.to_dict(), **changes})


def _drift_scale(value, baseline: str) -> float | None:
    if value is None:  # None: the solver's default
        return None
    value = check_drift_scale(value)
    return value if baseline == "drift" else None


def _formulation(params: TuningParams) -> dict:
    """The ``formulation`` block: what the solver computes for these parameters."""
    form = dict(FORMULATION)
    mode = str(params.baseline)
    form["baseline"] = mode
    if mode == "none":
        form["objective"] = _OBJECTIVE_NO_BASELINE
    elif mode == "rolling":
        # as the web app and calab: the causal rolling quantile is subtracted
        # and the fit that follows has no baseline of its own (solver.py)
        form["objective"] = (
            f"rolling {ROLLING_QUANTILE:g} quantile over 5*ceil(5*tau_decay*fs) samples "
            f"subtracted (causal window), then {_OBJECTIVE_NO_BASELINE}"
        )
        form["rolling_window_samples"] = rolling_window(params.tau_decay, params.fs)
    elif mode == "drift":
        scale = params.drift_scale
        form["objective"] = (
            f"{_OBJECTIVE_DRIFT}, drift_scale = "
            + (f"{scale:g} s" if scale is not None else
               f"max(20*tau_decay, 10 s) = {default_drift_scale(params.tau_decay):g} s (default)")
        )
        # null: the solver's default time scale (it follows tau_decay)
        form["drift_scale_s"] = scale
    if params.filter_enabled:
        form["objective"] += "; y is the band-passed trace (CaTune bandpass, filter_enabled)"
    return form


def _export_dict(params: TuningParams, metadata: dict | None) -> dict:
    g1, g2, d, r = params.ar2
    data = {
        "schema_version": SCHEMA_VERSION,
        "catune_version": f"napari-catune {__version__}",
        "export_date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "parameters": {
            "tau_rise_s": params.tau_rise,
            "tau_decay_s": params.tau_decay,
            "t_peak_s": params.t_peak,
            "fwhm_s": params.fwhm,
            "lambda": params.lam,
            "sampling_rate_hz": params.fs,
            "filter_enabled": params.filter_enabled,
        },
        "ar2_coefficients": {
            "decayRoot": d,
            "riseRoot": r,
            "g1": g1,
            "g2": g2,
            "dt": 1.0 / params.fs,
        },
        "formulation": _formulation(params),
    }
    data["metadata"] = _metadata_block(metadata)
    return data


# the keys CaTuneExportSchema types (all optional there; other keys are kept
# in the file and ignored by the web app)
_META_NUMBERS = ("num_cells", "num_timepoints")


def _metadata_block(metadata: dict | None) -> dict:
    """The ``metadata`` block: always present, as the web app's schema requires.

    ``source_filename`` keeps only the file's base name (a full path would
    leak the user's folders into a file meant to be shared); ``None`` values
    are dropped, because the schema's optional fields accept a missing key
    but not ``null``.
    """
    out = {}
    for key, value in (metadata or {}).items():
        if value is None:
            continue
        if key == "source_filename":
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            # either separator: a Windows path written on Linux and vice versa
            value = re.split(r"[\\/]", str(value).rstrip("/\\"))[-1]
            if not value:
                continue
        elif key in _META_NUMBERS:
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer,
                                                                  np.floating)):
                raise ValueError(f"metadata {key} must be a number, got {value!r}")
            value = int(value) if float(value).is_integer() else float(value)
        out[key] = value
    return out


def calab_note(params: TuningParams) -> str | None:
    """What calab does with a file saved with ``params``' baseline model (None
    for "rolling", which calab computes): the note said where a file is saved."""
    if str(params.baseline) == "rolling":
        return None
    return (f'calab 0.3 ignores formulation.baseline="{params.baseline}" in this file: its '
            "deconvolve_from_export subtracts its own rolling baseline, so its activity "
            "differs from napari-catune's, more or less of it by an amount that depends on "
            "the data (in our audits -39 % to -8 % per cell on a suite2p plane, +15 % to "
            "+242 % on other suite2p cells and dF/F recordings). napari-catune and "
            "napari_catune.compat use the file's baseline. To get calab's numbers, save "
            'with baseline "rolling" (the model calab solves; napari-catune then agrees '
            "with calab in totals and fit, per sample to a few % where calab's solver "
            "stops short of the optimum).")


def save_params(params: TuningParams, path, *, metadata: dict | None = None) -> Path:
    """Write ``params`` as a CaTune export JSON (schema 1.2.0), atomically.

    Parameters
    ----------
    params : TuningParams
    path : str or Path
        Target file; an earlier file there survives any failed write.
    metadata : dict, optional
        JSON-serialisable extras, e.g. ``source_filename``, ``num_cells``,
        ``num_timepoints``.  The file always has a ``metadata`` block (the
        CaTune web app refuses a file without one), empty when none is given;
        ``source_filename`` is reduced to the file's base name and ``None``
        values are left out.

    Returns
    -------
    Path
    """
    if not isinstance(params, TuningParams):
        raise TypeError(f"params must be a TuningParams, got {type(params).__name__}")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError(f"metadata must be a dict, got {type(metadata).__name__}")
    try:
        # allow_nan=False: NaN is not JSON and the web app could not read it
        text = json.dumps(
            _export_dict(params, metadata), indent=2, allow_nan=False, default=json_default
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata for {path} is not JSON-serialisable: {exc}") from None
    return atomic_write_text(path, text + "\n")


def _number(path, key, value) -> float:
    # JSON booleans are ints in Python; a number field must be a real number
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"{path}: parameters.{key} must be a number, got {value!r}; "
            "is this a CaTune export file?"
        )
    try:
        value = float(value)
    except OverflowError:  # an integer literal with hundreds of digits
        value = math.inf
    if not math.isfinite(value):
        raise ValueError(f"{path}: parameters.{key} must be finite, got {value}")
    return value


def load_params(path) -> TuningParams:
    """Read a CaTune 1.x export JSON (web app, calab, or ours).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (or is not a file): "parameter file not
        found: PATH" (calab's ``load_export_params`` says "not found" too).
    ValueError
        If the file is not JSON, has no ``parameters`` block, has a field of
        the wrong type or a value out of range; the message names the path.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parameter file not found: {path}")
    size = path.stat().st_size
    if size > _MAX_BYTES:
        raise ValueError(
            f"{path} is not a CaTune export: {size / 2**20:.0f} MB is far larger than a "
            "parameter file (a few kB)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a CaTune export: not a UTF-8 text (JSON) file") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:  # JSONDecodeError and NaN/Infinity
        raise ValueError(f"{path} is not a CaTune export: not valid JSON ({exc})") from None
    return load_params_dict(data, path)


def load_params_dict(data, source="<dict>") -> TuningParams:
    """The parameters of an already parsed CaTune export document.

    What :func:`load_params` does after reading the JSON; ``source`` names
    the document in error messages (e.g. the file holding it).
    """
    path = source
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a CaTune export: the top level is not a JSON object")
    version = data.get("schema_version")
    if version is not None:
        if not isinstance(version, str) or not version.split(".")[0] == "1":
            raise ValueError(
                f"{path}: unsupported schema_version {version!r}; this version reads 1.x exports"
            )
    block = data.get("parameters")
    if not isinstance(block, dict):
        raise ValueError(
            f"{path} is not a CaTune export: no 'parameters' block "
            "(expected keys tau_rise_s, tau_decay_s, lambda, sampling_rate_hz)"
        )
    missing = [k for k in ("tau_rise_s", "tau_decay_s", "lambda", "sampling_rate_hz") if k not in block]
    if missing:
        raise ValueError(f"{path}: 'parameters' lacks {', '.join(missing)}")
    tr = _number(path, "tau_rise_s", block["tau_rise_s"])
    td = _number(path, "tau_decay_s", block["tau_decay_s"])
    lam = _number(path, "lambda", block["lambda"])
    fs = _number(path, "sampling_rate_hz", block["sampling_rate_hz"])
    flt = block.get("filter_enabled", False)
    if not isinstance(flt, bool):
        raise ValueError(f"{path}: parameters.filter_enabled must be true or false, got {flt!r}")
    baseline, drift_scale = _read_baseline(path, data)
    try:
        return TuningParams(tau_rise=tr, tau_decay=td, fs=fs, lam=lam, filter_enabled=flt,
                            baseline=baseline, drift_scale=drift_scale)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def written_by_us(data: dict) -> bool:
    """Whether an export's ``catune_version`` says napari-catune wrote it."""
    version = data.get("catune_version")
    return isinstance(version, str) and version.strip().lower().startswith("napari-catune")


def _read_baseline(path, data: dict) -> tuple[str, float | None]:
    """The baseline mode (and drift scale) a file was tuned with.

    * ``formulation.baseline`` present: that mode (napari-catune's files; the
      two sentences our files held before the modes are read as "scalar" and
      "none").
    * absent, written by napari-catune (an older version): "scalar", the one
      model those versions solved.
    * absent, any other writer (the CaTune web app, whose ``catune_version``
      is its release tag such as "v2.7.1" or "dev", hand-made files, tools
      copying its format): "rolling", because the web app's solver and
      calab 0.3 (``deconvolve_from_export``) subtract that rolling baseline
      before their fit; the parameters were tuned on that model.
    """
    form = data.get("formulation")
    if not isinstance(form, dict) or "baseline" not in form:
        return ("scalar" if written_by_us(data) else "rolling"), None
    raw = form["baseline"]
    mode = _LEGACY_BASELINE.get(raw, raw) if isinstance(raw, str) else raw
    if not (isinstance(mode, str) and mode in BASELINE_MODES):
        raise ValueError(
            f"{path}: formulation.baseline must be one of "
            f"{', '.join(map(repr, BASELINE_MODES))}, got {raw!r}"
        )
    scale = form.get("drift_scale_s") if mode == "drift" else None
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))):
        raise ValueError(
            f"{path}: formulation.drift_scale_s must be a number of seconds or null, "
            f"got {scale!r}"
        )
    return mode, scale


def _reject_constant(name):
    # Python's json accepts NaN/Infinity, which are not JSON
    raise ValueError(f"non-JSON constant {name}")
