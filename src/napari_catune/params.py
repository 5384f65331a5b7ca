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
from ._atomic import atomic_write_text
from .io import json_default
from ._version import __version__

__all__ = ["TuningParams", "save_params", "load_params", "SCHEMA_VERSION", "FORMULATION"]

SCHEMA_VERSION = "1.2.0"
# exports are ~1.5 kB; anything this large is some other file opened by mistake
_MAX_BYTES = 4 * 2**20

# How the baseline was treated; load_params reads it back (other tools'
# files lack it: they all estimate a baseline).
_BASELINE_ON = "a scalar b per trace, estimated jointly with s"
_BASELINE_OFF = "none: b = 0"
_OBJECTIVE_NO_BASELINE = "min_{s>=0} (1/2)||y - K*s||_2^2 + lambda*G*||s||_1, G = sum(K)"

# What our solver computes (solver.py); written into every export.
FORMULATION = {
    "model": (
        "exact primal-dual active-set method with non-negativity constraint (block "
        "principal pivoting, O(T) Riccati solves on the AR(2) form); FISTA with "
        "adaptive restart as reference and fallback"
    ),
    "objective": "min_{s>=0, b} (1/2)||y - K*s - b||_2^2 + lambda*G*||s||_1, G = sum(K)",
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
    "baseline": _BASELINE_ON,
}


@dataclass(frozen=True)
class TuningParams:
    """One set of CaTune parameters, validated on construction.

    Parameters
    ----------
    tau_rise, tau_decay : float
        Kernel time constants in seconds (0.001-0.5 and 0.01-10, rise < decay).
    fs : float
        Sampling rate in Hz (1-1000).
    lam : float
        Sparsity lambda (0-10), in units of the kernel DC gain.
    filter_enabled : bool
        Apply the CaTune bandpass before solving.
    baseline : bool
        Estimate a scalar baseline per trace (False fixes it at 0).  Saved in
        the export's ``formulation`` block so batch runs solve what was tuned.
    """

    tau_rise: float
    tau_decay: float
    fs: float
    lam: float
    filter_enabled: bool = False
    baseline: bool = True

    def __post_init__(self):
        for name in ("filter_enabled", "baseline"):
            v = getattr(self, name)
            if type(v).__name__ == "bool_":  # numpy bool
                v = bool(v)
            if not isinstance(v, bool):
                raise ValueError(f"{name} must be True or False, got {v!r}")
            object.__setattr__(self, name, v)
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

    def to_dict(self) -> dict:
        """Plain dict of the fields (JSON-ready; ``TuningParams(**d)`` inverts it)."""
        return {
            "tau_rise": self.tau_rise,
            "tau_decay": self.tau_decay,
            "fs": self.fs,
            "lam": self.lam,
            "filter_enabled": self.filter_enabled,
            "baseline": self.baseline,
        }

    def replace(self, **changes) -> "TuningParams":
        """A copy with some fields changed (validated again)."""
        return TuningParams(**{**self.to_dict(), **changes})


def _formulation(baseline: bool) -> dict:
    form = dict(FORMULATION)
    if not baseline:
        form["objective"] = _OBJECTIVE_NO_BASELINE
        form["baseline"] = _BASELINE_OFF
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
        "formulation": _formulation(params.baseline),
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
        If ``path`` does not exist.
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
    form = data.get("formulation")
    baseline = not (isinstance(form, dict) and form.get("baseline") == _BASELINE_OFF)
    try:
        return TuningParams(tau_rise=tr, tau_decay=td, fs=fs, lam=lam, filter_enabled=flt,
                            baseline=baseline)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _reject_constant(name):
    # Python's json accepts NaN/Infinity, which are not JSON
    raise ValueError(f"non-JSON constant {name}")
