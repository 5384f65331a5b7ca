"""Trace hand-off files: ``{stem}.npy`` + ``{stem}_metadata.json``.

The format of ``calab.save_for_tuning`` and the CaTune web app: float64,
C order, shape (n_cells, n_timepoints), and a JSON sidecar with schema
1.0.0.  Both files are written atomically; loading never unpickles.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ._atomic import atomic_save_npy, atomic_write_text

__all__ = ["save_for_tuning", "load_tuning_data", "tuning_paths", "json_default"]

SCHEMA_VERSION = "1.0.0"
_SIDECAR = "_metadata.json"


def json_default(obj):
    """``json.dumps`` hook: NumPy scalars and arrays, paths -> plain JSON values."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def tuning_paths(path) -> tuple[Path, Path]:
    """``(npy_path, metadata_path)`` for a stem given with or without ``.npy``.

    ``rec``, ``rec.npy`` and ``rec_metadata.json`` all name the same pair.
    """
    p = Path(path)
    name = p.name
    if name.endswith(_SIDECAR):
        name = name[: -len(_SIDECAR)]
    elif name.lower().endswith(".npy"):
        name = name[:-4]
    if not name:
        raise ValueError(f"{path!s} does not name a file stem")
    return p.with_name(name + ".npy"), p.with_name(name + _SIDECAR)


def save_for_tuning(traces, fs, path, metadata: dict | None = None) -> tuple[Path, Path]:
    """Save traces for CaTune / calab / napari-catune.

    Parameters
    ----------
    traces : array_like
        (n_timepoints,) or (n_cells, n_timepoints), real numbers.
    fs : float
        Sampling rate in Hz.
    path : str or Path
        File stem, with or without ``.npy``.
    metadata : dict, optional
        JSON-serialisable extras; the built-in keys win over them.

    Returns
    -------
    (npy_path, metadata_path)
    """
    arr = np.asarray(traces)
    if arr.dtype.kind not in "biuf":
        raise ValueError(
            f"traces must be real numbers, got dtype {arr.dtype}; convert them first"
        )
    arr = np.ascontiguousarray(arr, dtype="<f8")
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise ValueError(
            f"traces must be 1-D (one trace) or 2-D (n_cells, n_timepoints), got shape {arr.shape}"
        )
    if arr.size == 0:
        raise ValueError(f"traces are empty (shape {arr.shape}); nothing to save")
    if isinstance(fs, bool) or not isinstance(fs, (int, float, np.integer, np.floating)):
        raise ValueError(f"fs (sampling rate) must be a number in Hz, got {fs!r}")
    fs = float(fs)
    if not (math.isfinite(fs) and fs > 0):
        raise ValueError(f"fs (sampling rate) must be a positive number in Hz, got {fs}")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError(f"metadata must be a dict, got {type(metadata).__name__}")
    meta = {
        **(metadata or {}),
        "schema_version": SCHEMA_VERSION,
        "sampling_rate_hz": fs,
        "num_cells": int(arr.shape[0]),
        "num_timepoints": int(arr.shape[1]),
        "dtype": "<f8",
    }
    npy_path, json_path = tuning_paths(path)
    try:
        text = json.dumps(meta, indent=2, allow_nan=False, default=json_default)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata for {json_path} is not JSON-serialisable: {exc}") from None
    # traces first: a sidecar without its data would be worse than the reverse
    atomic_save_npy(npy_path, arr)
    atomic_write_text(json_path, text + "\n")
    return npy_path, json_path


def load_tuning_data(path) -> tuple[np.ndarray, dict]:
    """Load a ``{stem}.npy`` + ``{stem}_metadata.json`` pair.

    Returns
    -------
    traces : (n_cells, n_timepoints) float64
    metadata : dict

    Raises
    ------
    FileNotFoundError
        Naming whichever of the two files is missing.
    ValueError
        If the array is not numeric 1-D/2-D, needs pickling, or disagrees
        with the sidecar's shape.
    """
    npy_path, json_path = tuning_paths(path)
    if not npy_path.is_file():
        raise FileNotFoundError(
            f"trace file not found: {npy_path} (expected beside {json_path.name})"
        )
    if not json_path.is_file():
        raise FileNotFoundError(
            f"metadata file not found: {json_path} (the sidecar of {npy_path.name}; "
            "save_for_tuning writes both)"
        )
    try:
        arr = np.load(npy_path, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{npy_path} cannot be read without unpickling: {exc}") from None
    except Exception as exc:  # corrupt header etc.
        raise ValueError(f"{npy_path} is not a valid .npy file: {exc}") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise ValueError(f"{npy_path} must hold real numbers, got dtype {getattr(arr, 'dtype', '?')}")
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise ValueError(f"{npy_path} must hold (n_cells, n_timepoints) traces, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{json_path} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{json_path} must hold a JSON object, got {type(meta).__name__}")
    for key, size in (("num_cells", arr.shape[0]), ("num_timepoints", arr.shape[1])):
        if key in meta and meta[key] != size:
            raise ValueError(
                f"{json_path} says {key} = {meta[key]!r} but {npy_path.name} has shape "
                f"{arr.shape}; the two files do not belong together"
            )
    return arr, meta
