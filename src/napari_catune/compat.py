"""``calab`` 0.3's loader and file calls, with calab's signatures and meaning.

``calab`` (the CaTune authors' package) exposes ``load_caiman``,
``load_minian``, ``load_export_params`` and ``deconvolve_from_export``; the
same calls work here, so switching is a one-line import change:

* ``run_deconvolution(traces, fs, tau_r, tau_d, lam, max_iters=2000,
  conv_mode="fft", constraint="nonneg")`` and ``run_deconvolution_full``
  (same arguments): calab's meaning, which subtracts CaTune's rolling
  baseline before the solve (calab's ``DeconvolutionResult`` docstring), so
  these run ``baseline="rolling"``.  ``baseline`` is then one number per
  trace, as calab reports it (the mean of the removed baseline plus the fit's
  offset), and ``reconvolution`` is in the input's frame (the full rolling
  baseline included).  ``napari_catune.run_deconvolution`` itself keeps
  DESIGN's objective (a scalar b fitted jointly, ``baseline="scalar"``), which
  is what our tuner and files mean; ``import napari_catune.compat as calab``
  gives calab's numbers.
* ``load_caiman(path, trace_key="estimates/C", fs_key="params/data/fr", fs=None)``
  and ``load_minian(path, trace_key="C", fs=None)`` return ``(traces, meta)``:
  float64 ``(n_cells, n_timepoints)`` (a 1-D dataset becomes one row) and a
  dict with ``source``, ``sampling_rate_hz``, ``num_cells``,
  ``num_timepoints`` (plus ``trace_key``).  A missing file raises
  FileNotFoundError; a missing ``trace_key`` raises :class:`MissingKeyError`,
  which is both the KeyError calab raises and the ValueError this project
  raises.  ``load_minian`` also reads Minian's own layout (``C.zarr`` beside
  ``A.zarr`` in the output folder), which calab does not.
* ``load_export_params(path)`` returns calab's dict (``tau_rise``,
  ``tau_decay``, ``lambda_``, ``fs``, ``filter_enabled``) from any CaTune
  1.x export.
* ``deconvolve_from_export(traces, params_path, return_full=False)`` solves
  with the file's parameters: its bandpass filter when ``filter_enabled``,
  and its baseline model (files of the CaTune web app and calab carry none
  and are read as ``"rolling"``, the baseline those tools subtract; our own
  files carry theirs).  Activity (same shape as ``traces``), or the full
  ``DeconvolutionResult``.

Footprints, ROI ids and images (for napari, the CLI) come from
:func:`napari_catune.loaders.load_caiman_data` and
:func:`~napari_catune.loaders.load_minian_data`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["run_deconvolution", "run_deconvolution_full", "load_caiman", "load_minian",
           "load_export_params", "deconvolve_from_export", "MissingKeyError",
           "CALAB_NOT_PROVIDED"]

# calab 0.3's public names that napari_catune does not provide, and what to use
# instead: ``napari_catune.<name>`` raises an AttributeError saying so
_SIM = "calab's simulator; napari_catune.simulate_recording makes synthetic recordings"
_INDECA = "calab's automatic deconvolution (InDeCa); napari_catune.estimate_params estimates parameters"
_BRIDGE = "calab's bridge to the CaTune web app; napari-catune's tuner is the napari plugin"
CALAB_NOT_PROVIDED = {
    **dict.fromkeys(("simulate", "presets", "SimulationConfig", "SimulationResult",
                     "CellGroundTruth", "DriftModel", "KernelConfig", "MarkovConfig",
                     "NoiseConfig", "PhotobleachingConfig", "PoissonConfig",
                     "RandomWalkDrift", "SaturationConfig", "SinusoidalDrift", "SpikeModel"),
                    _SIM),
    **dict.fromkeys(("solve_trace", "estimate_kernel", "fit_biexponential",
                     "compute_upsample_factor", "SolveTraceResult", "BiexpFitResult",
                     "CaDeconResult"), _INDECA),
    **dict.fromkeys(("decon", "tune", "DeconConfig", "HeadlessBrowser", "BridgeVersionError",
                     "BridgeVersionWarning"), _BRIDGE),
}


class MissingKeyError(KeyError, ValueError):
    """A key is not in the file: a KeyError as in ``calab``, and a ValueError.

    Its message reads as plain text (a KeyError's ``str`` would quote it).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _meta(source: str, fs, traces: np.ndarray, trace_key: str) -> dict:
    return {
        "source": source,
        "sampling_rate_hz": fs,
        "num_cells": int(traces.shape[0]),
        "num_timepoints": int(traces.shape[1]),
        "trace_key": trace_key,
    }


def _as_rows(values, where: str) -> np.ndarray:
    try:
        traces = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where} is not numeric ({e})") from None
    if traces.ndim == 1:
        traces = traces.reshape(1, -1)
    if traces.ndim != 2:
        raise ValueError(f"{where} has shape {traces.shape}; expected (n_cells, n_timepoints)")
    return traces


def load_caiman(path, trace_key: str = "estimates/C", fs_key: str = "params/data/fr",
                fs: float | None = None) -> tuple[np.ndarray, dict]:
    """Traces from a CaImAn HDF5 results file, as ``calab.load_caiman``.

    Parameters
    ----------
    path : path of the HDF5 file (``cnm.save("file.hdf5")``).
    trace_key : HDF5 dataset of the traces (default ``"estimates/C"``; e.g.
        ``"estimates/F_dff"``).
    fs_key : HDF5 dataset of the sampling rate (default ``"params/data/fr"``).
    fs : sampling rate in Hz; when given, ``fs_key`` is not read.

    Returns
    -------
    traces : (n_cells, n_timepoints) float64
    meta : dict with ``source`` ("caiman"), ``sampling_rate_hz`` (None when
        neither ``fs`` nor ``fs_key`` gives one), ``num_cells``,
        ``num_timepoints``, ``trace_key``.
    """
    from .loaders import _is_none, open_caiman_h5

    p = Path(path)
    with open_caiman_h5(p) as f:
        obj = f.get(trace_key)
        if obj is None or not hasattr(obj, "shape"):
            raise MissingKeyError(
                f"Trace key '{trace_key}' not found in {p}. Available keys: {list(f.keys())}"
            )
        value = obj[()]
        if _is_none(value):
            raise MissingKeyError(f"Trace key '{trace_key}' in {p} holds None (\"NoneType\")")
        traces = _as_rows(value, f"{p}: '{trace_key}'")
        if fs is None and fs_key in f and hasattr(f[fs_key], "shape"):
            raw = f[fs_key][()]
            if not _is_none(raw):
                fs = float(np.asarray(raw).ravel()[0])
    if fs is not None:
        fs = float(fs)
    return traces, _meta("caiman", fs, traces, trace_key)


def load_minian(path, trace_key: str = "C", fs: float | None = None) -> tuple[np.ndarray, dict]:
    """Traces from Minian output, as ``calab.load_minian``.

    ``path`` is Minian's output folder (``save_minian`` writes ``C.zarr``
    there), a ``C.zarr`` store, or any zarr group holding ``trace_key``.
    Minian stores no frame rate: ``sampling_rate_hz`` is ``fs`` (None if not
    given).  Returns ``(traces, meta)`` with ``source`` "minian".
    """
    from .loaders import load_minian_data

    data = load_minian_data(path, trace_key=trace_key, fs=fs)
    return data.traces, _meta("minian", data.fs, data.traces, trace_key)


def load_export_params(path) -> dict:
    """calab's parameter dict from a CaTune 1.x export JSON.

    Keys ``tau_rise``, ``tau_decay``, ``lambda_``, ``fs``, ``filter_enabled``.
    The file is validated as :func:`napari_catune.load_params` does (which
    also returns its baseline model); FileNotFoundError if it is missing.
    """
    from .params import load_params

    p = load_params(path)
    return {
        "tau_rise": p.tau_rise,
        "tau_decay": p.tau_decay,
        "lambda_": p.lam,
        "fs": p.fs,
        "filter_enabled": p.filter_enabled,
    }


def run_deconvolution_full(traces, fs: float, tau_r: float, tau_d: float, lam: float,
                           max_iters: int = 2000, conv_mode: str = "fft",
                           constraint: str = "nonneg"):
    """calab 0.3's ``run_deconvolution_full``: rolling baseline removed, then the
    exact solve; the result's ``baseline`` is one value per trace (a float for
    1-D input), as calab reports it."""
    from .solver import DeconvolutionResult
    from .solver import run_deconvolution_full as _full

    res = _full(traces, fs, tau_r, tau_d, lam, max_iters, conv_mode, constraint,
                baseline="rolling")
    b = np.asarray(res.baseline, dtype=np.float64)
    level = b.mean(axis=-1)
    if np.ndim(level) == 0:
        level = float(level)
    return DeconvolutionResult(res.activity, level, res.reconvolution, res.iterations,
                               res.converged)


def run_deconvolution(traces, fs: float, tau_r: float, tau_d: float, lam: float,
                      max_iters: int = 2000, conv_mode: str = "fft",
                      constraint: str = "nonneg") -> np.ndarray:
    """calab 0.3's ``run_deconvolution``: the activity of :func:`run_deconvolution_full`."""
    return run_deconvolution_full(traces, fs, tau_r, tau_d, lam, max_iters, conv_mode,
                                  constraint).activity


def deconvolve_from_export(traces, params_path, return_full: bool = False):
    """Deconvolve ``traces`` with the parameters of a CaTune export JSON.

    As ``calab.deconvolve_from_export``: the file's tau_rise, tau_decay,
    lambda and fs, its bandpass filter when ``filter_enabled``, and the
    baseline model it was tuned with (``"rolling"`` for the web app's and
    calab's files: what they compute).  Returns the activity, same shape as
    ``traces``, or with ``return_full=True`` the ``DeconvolutionResult``
    (activity, baseline, reconvolution, iterations, converged).
    """
    from .params import load_params
    from .solver import run_deconvolution, run_deconvolution_full

    p = load_params(params_path)
    solve = run_deconvolution_full if return_full else run_deconvolution
    return solve(traces, p.fs, p.tau_rise, p.tau_decay, p.lam, **p.solver_kwargs())
