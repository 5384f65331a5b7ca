"""napari-catune: tune calcium-imaging deconvolution by eye, apply it to every ROI.

The numerical core (kernel, solver, parameters, I/O, trace extraction,
estimation, simulation, loaders) imports neither Qt nor napari, so it runs in
scripts, on a cluster and in tests without a display.  Names are resolved on
first use: ``import napari_catune`` stays cheap (no numba compile, no napari).
"""

from __future__ import annotations

import importlib
import os

from ._version import __version__

# public name -> module that defines it
_EXPORTS = {
    # kernel math
    "build_kernel": "kernel",
    "tau_to_ar2": "kernel",
    "compute_lipschitz": "kernel",
    "kernel_shape": "kernel",
    "kernel_landmarks": "kernel",
    "tau_from_shape": "kernel",
    "validate_params": "kernel",
    "bandpass_filter": "kernel",
    "PARAM_RANGES": "kernel",
    # solver
    "run_deconvolution": "solver",
    "run_deconvolution_full": "solver",
    "DeconvolutionResult": "solver",
    "objective": "solver",
    # parameters and files
    "TuningParams": "params",
    "save_params": "params",
    "load_params": "params",
    "save_for_tuning": "io",
    "load_tuning_data": "io",
    # data
    "extract_traces": "traces",
    "roi_snr": "traces",
    "estimate_params": "estimate",
    "detect_events": "events",
    "save_events_csv": "events",
    "read_event_times": "events",
    "simulate_recording": "simulation",
    "SimulatedRecording": "simulation",
    "load_suite2p": "loaders",
    "load_caiman_data": "loaders",
    "load_minian_data": "loaders",
    # calab 0.3's calls, with its signatures (napari_catune.compat)
    "load_caiman": "compat",
    "load_minian": "compat",
    "load_export_params": "compat",
    "deconvolve_from_export": "compat",
    "load_nwb": "nwb",
    "save_results": "results",
    "load_results": "results",
    "estimate_report": "estimate",
    "rolling_baseline": "baseline",
}

__all__ = ["__version__", *_EXPORTS]


def _is_submodule(name: str) -> bool:
    """Whether ``name`` is a submodule's file here: ``from napari_catune import
    solver`` asks :func:`__getattr__` first, which then needs no compat (and
    its imports, ~10 ms) to say no."""
    return any(os.path.isfile(os.path.join(d, name + ".py"))
               or os.path.isfile(os.path.join(d, name, "__init__.py")) for d in __path__)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        if not name.startswith("_") and not _is_submodule(name):
            from .compat import CALAB_NOT_PROVIDED

            if name in CALAB_NOT_PROVIDED:
                raise AttributeError(
                    f"napari_catune does not provide calab's {name!r}: it is "
                    f"{CALAB_NOT_PROVIDED[name]}"
                )
        raise AttributeError(f"module 'napari_catune' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
