"""Lazy deconvolution of Dask arrays of traces, chunked over cells.

``solver.run_deconvolution(_full)`` hand Dask input to :func:`deconvolve_dask`.
Each chunk of cells is solved by the same NumPy core (the solver on a NumPy
block), so the work runs on whichever Dask scheduler is active, including
``dask.distributed`` on a cluster, and gives exactly the in-memory numbers.

A full result is computed once per block as one packed float64 array
``[activity | reconvolution | baseline, iterations, converged]`` (the
baseline one column per trace, or T columns for the per-sample "rolling"
and "drift" baselines) and the fields are lazy slices of it: computing several fields together
(``dask.compute(res.activity, res.baseline)``) solves each block once.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["deconvolve_dask"]

# solver keyword arguments passed through to every block
_OPTS = ("max_iters", "baseline", "drift_scale", "filter_enabled", "tol", "method")


def _check_dtype(dtype, name: str = "traces") -> None:
    dtype = np.dtype(dtype)
    if dtype.hasobject or dtype.kind not in "biuf":
        raise ValueError(
            f"{name} must be a real numeric array, got dtype {dtype}; "
            "convert with .astype(float)"
        )


def _packed_width(T: int, per_sample: bool) -> int:
    return (3 * T + 2) if per_sample else (2 * T + 3)


_ROW = re.compile(r"\brow (\d+)")


def _renumber_rows(message: str, first: int) -> str:
    """A block's error message with its rows ("row 3") numbered in the
    whole array (the block's first cell is row ``first``)."""
    return _ROW.sub(lambda m: f"row {int(m.group(1)) + first}", message)


def _solve_block(block, *init, fs, tau_r, tau_d, lam, full, per_sample, opts, block_info=None):
    """Solve one (n, T) NumPy block; packed full result or activity only.
    An error names its rows as rows of the whole array (``block_info``:
    Dask's, where the block sits)."""
    from .solver import run_deconvolution_full

    block = np.asarray(block)
    if block.shape[0] == 0:
        width = _packed_width(block.shape[1], per_sample) if full else block.shape[1]
        return np.zeros((0, width))
    kw = dict(opts)
    if init:
        kw["init"] = np.asarray(init[0])
    try:
        res = run_deconvolution_full(np.atleast_2d(block), fs, tau_r, tau_d, lam, **kw)
    except ValueError as err:
        first = (block_info or {}).get(0, {}).get("array-location", [(0, 0)])[0][0]
        if not first:
            raise
        raise ValueError(_renumber_rows(str(err), first)) from err
    if not full:
        return res.activity
    n, T = block.shape
    nb = T if per_sample else 1
    out = np.empty((n, _packed_width(T, per_sample)))
    out[:, :T] = res.activity
    out[:, T : 2 * T] = res.reconvolution
    out[:, 2 * T : 2 * T + nb] = np.reshape(res.baseline, (n, nb))
    # iteration counts are far below 2**53: exact in float64
    out[:, 2 * T + nb] = res.iterations
    out[:, 2 * T + nb + 1] = res.converged
    return out


def deconvolve_dask(traces, fs, tau_r, tau_d, lam, *, full: bool, **opts):
    """Deconvolve a Dask array of traces lazily, one task per chunk of cells.

    Parameters
    ----------
    traces : dask.array.Array, (T,) or (n_cells, T), real numeric
        The time axis is rechunked to a single chunk if needed; the cell
        chunks are kept (or set automatically when the time axis had to be
        merged).
    fs, tau_r, tau_d, lam : float
        As for :func:`napari_catune.run_deconvolution_full`; validated now,
        before anything is computed.
    full : bool
        True: a ``DeconvolutionResult`` of lazy arrays (activity and
        reconvolution ``(n, T)``; baseline ``(n,)``, or ``(n, T)`` for
        the "rolling" and "drift" baselines; iterations, converged ``(n,)``;
        0-d / ``(T,)`` for 1-D input).  False: the lazy activity only.
    **opts
        ``max_iters``, ``baseline``, ``drift_scale``, ``filter_enabled``,
        ``tol``, ``method`` and ``init`` (a previous activity, NumPy or
        Dask, the traces' shape).
    """
    import dask.array as da

    from .baseline import baseline_mode, drift_mu
    from .kernel import validate_params
    from .solver import METHODS, DeconvolutionResult

    tau_r, tau_d, fs, lam = validate_params(tau_r, tau_d, fs, lam)
    unknown = set(opts) - set(_OPTS) - {"init"}
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    init = opts.pop("init", None)
    if "method" in opts and opts["method"] not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {opts['method']!r}")
    if "max_iters" in opts and int(opts["max_iters"]) < 1:
        raise ValueError(f"max_iters must be at least 1, got {opts['max_iters']}")
    if "tol" in opts and not (np.isfinite(opts["tol"]) and opts["tol"] > 0):
        raise ValueError(f"tol must be a positive number, got {opts['tol']}")
    mode = baseline_mode(opts.get("baseline", "scalar"))
    if mode == "drift":
        drift_mu(opts.get("drift_scale"), fs, tau_d)  # validates drift_scale
    per_sample = mode in ("rolling", "drift")

    x = da.asarray(traces)
    _check_dtype(x.dtype)
    if x.ndim not in (1, 2):
        raise ValueError(
            f"traces must be 1-D (T,) or 2-D (n_cells, T), got shape {x.shape}; "
            "for a movie, extract ROI traces first (extract_traces)"
        )
    one_d = x.ndim == 1
    if one_d:
        x = x[None, :]
    if any(np.isnan(s) for s in x.shape):
        raise ValueError(
            "traces have unknown chunk sizes; call .compute_chunk_sizes() first"
        )
    if x.size == 0:
        raise ValueError(f"traces are empty (shape {x.shape})")
    if x.shape[1] < 2:
        raise ValueError(f"traces need at least 2 samples per trace, got {x.shape[1]}")
    if len(x.chunks[1]) > 1:
        # every trace must be solved whole; let Dask size the cell chunks
        x = x.rechunk({0: "auto", 1: -1})
    T = x.shape[1]
    args = [x]
    if init is not None:
        y0 = da.asarray(init)
        if y0.ndim == 1:
            y0 = y0[None, :]
        if y0.shape != x.shape:
            raise ValueError(f"init must have the traces' shape {x.shape}, got {y0.shape}")
        args.append(y0.rechunk(x.chunks))

    width = _packed_width(T, per_sample) if full else T
    packed = da.map_blocks(
        _solve_block,
        *args,
        dtype=np.float64,
        chunks=(x.chunks[0], (width,)),
        fs=fs,
        tau_r=tau_r,
        tau_d=tau_d,
        lam=lam,
        full=bool(full),
        per_sample=per_sample,
        opts={k: opts[k] for k in _OPTS if k in opts},
        meta=np.empty((0, 0), dtype=np.float64),
        token="catune-deconvolve",
    )
    if not full:
        return packed[0] if one_d else packed
    activity = packed[:, :T]
    fit = packed[:, T : 2 * T]
    nb = T if per_sample else 1
    baseline = packed[:, 2 * T : 2 * T + nb] if per_sample else packed[:, 2 * T]
    iterations = packed[:, 2 * T + nb].astype(np.int64)
    converged = packed[:, 2 * T + nb + 1].astype(bool)
    if one_d:
        return DeconvolutionResult(
            activity[0], baseline[0], fit[0], iterations[0], converged[0]
        )
    return DeconvolutionResult(activity, baseline, fit, iterations, converged)
