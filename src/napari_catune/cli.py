"""The ``napari-catune`` command: view, deconvolve, estimate, extract, info.

This module parses arguments and dispatches; inputs are read by
:mod:`napari_catune.sources` (the same code as the napari readers), results
written by :mod:`napari_catune.results`, and ``view`` lives in
:mod:`napari_catune._qt.launch` (the only part that imports Qt/napari).

Exit codes: 0 success, 2 bad usage or bad input (one line on stderr naming
the problem, no traceback), 1 failure (a full disk: one line, "no space left
on FOLDER: need N GB"; anything unexpected: a traceback), 130 interrupted
(Ctrl-C), 143 terminated (SIGTERM), 141 the reader of the output went away
(``napari-catune info ... | head``: quiet).  Interrupted or terminated, a run
removes its temporary files and leaves an earlier output as it was; the
temporary files of a run killed outright (SIGKILL) carry its pid and are
removed, with a note, by the next run writing the same output.

``deconvolve`` streams ``.npy`` and ``.npz`` outputs: traces are read a chunk
of cells at a time (``.npy`` memory-mapped, re-mapped per chunk so the mapped
pages do not pile up in the resident set), solved, and written into temporary
files in the output folder that replace the target only when everything
succeeded.  ``.nwb`` and ``.csv`` outputs are streamed too: the rows go into
temporary files as they are solved, and
:func:`napari_catune.results.save_results` writes the file from them a block
of frames at a time (an NWB file's series are (frames, ROIs), a CSV's lines
frames), atomically.  Every output gets a
``{stem}_metadata.json`` sidecar (ids, fs, parameters, the command, counts).

An output (``-o``, ``--screenshot``, ``--report``) that is, or resolves to
(symlinks, hard links, ``..``), an input, a file of an input folder, or an
input's ``_metadata.json`` sidecar is refused with exit 2 before anything is
read.
"""

from __future__ import annotations

import argparse
import errno
import io
import json
import logging
import math
import os
import shutil
import signal
import sys
import textwrap
import threading
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np

from . import _overwrite
from .results import size_text as _size_text
from ._atomic import atomic_write_text, publish, remove_stale_temps, resolve_target, temp_prefix
from ._padding import BAD, padding_span, padding_summary, row_lengths
from .baseline import BASELINE_MODES
from .batch import (chunk_fields, fitted_rows, per_sample_baseline, run_batch,
                    scan_rows)
from .sources import SourceError, TraceSource, as_fs, read_spec_rows

PROG = "napari-catune"
log = logging.getLogger("napari_catune.cli")

# bytes of float64 traces per chunk when --chunk-cells is not given
_CHUNK_BYTES = 32 * 2**20
# with --scheduler and no --chunk-cells: tasks of at most n / (4 x the
# cluster's threads) cells, so every thread gets several (and progress moves
# in steps), but no fewer than this many samples each (a task costs ~ms of
# the scheduler's time: tiny ones would be mostly overhead)
_TASKS_PER_THREAD = 4
_MIN_TASK_SAMPLES = 1 << 16

#: output formats of ``deconvolve`` (all streamed)
OUTPUT_FORMATS = (".npy", ".npz", ".nwb", ".csv")

# kept for callers of the old name
Source = TraceSource


class CLIError(Exception):
    """Bad usage or bad input: reported in one line, exit code 2."""


# ----------------------------------------------------------------------------
# inputs (napari_catune.sources)
# ----------------------------------------------------------------------------


def _read_rows_clean(spec, a: int, b: int, bad) -> np.ndarray:
    """Rows a:b with the listed (global) bad rows zeroed: solved, then discarded."""
    block = read_spec_rows(spec, a, b)
    if len(bad):
        block = np.array(block, dtype=np.float64)
        block[np.asarray(bad) - a] = 0.0
    return block


def open_input(path, *, allow_pickle: bool = False, caiman_trace: str = "auto",
               all_rois: bool = False, only_accepted: bool | None = None,
               only_cells: bool | None = None, series: str | None = None) -> TraceSource:
    """Open INPUT for the CLI; CLIError (exit 2) for anything unreadable."""
    import re

    from .sources import open_source

    try:
        return open_source(path, allow_pickle=allow_pickle, caiman_trace=caiman_trace,
                           all_rois=all_rois, only_accepted=only_accepted,
                           only_cells=only_cells, series=series)
    except SourceError as e:
        msg = str(e).replace("use trace='C'", "use --caiman-trace C")
        msg = msg.replace("pick one with series=...", "pick one with --series NAME")
        msg = re.sub(r"series=('[^']*')", r"--series \1", msg)
        raise CLIError(msg) from None


def _open_args(args) -> TraceSource:
    """open_input with the command's input options (--caiman-trace, ...);
    warns when the traces look transposed (frames x cells)."""
    all_rois = getattr(args, "all_rois", False)
    if all_rois and getattr(args, "only_cells", False):
        raise CLIError("--all-rois contradicts --only-cells/--only-accepted: give one "
                       "(cells only is the default)")
    source = open_input(args.input, allow_pickle=args.allow_pickle,
                        caiman_trace=getattr(args, "caiman_trace", "auto"), all_rois=all_rois,
                        series=getattr(args, "series", None))
    _warn_transposed(source, args.input)
    return source


def _no_fs_text(source) -> str:
    """Why the input has no rate and what to do: for a suite2p folder whose
    pickled settings were not read, that ``--allow-pickle`` reads the rate."""
    unread = next((n for n in source.notes if "not read: suite2p stores them as pickles" in n),
                  None)
    if unread:
        files = unread.split(" not read:", 1)[0]
        return (f"records its sampling rate in {files}, which is a pickle and not read "
                "without --allow-pickle: pass --allow-pickle (for files you trust) to read "
                "it, or --fs HZ")
    return "does not record its sampling rate; pass --fs HZ"


def _say_notes(args, source: TraceSource, params=None) -> None:
    """The input's notes (which ROIs, neuropil, ...) on stderr, once a run
    succeeded (a refused run says its one-line error only); with ``params``,
    also where ``deconvolve`` took the rate from when the input has none."""
    from .loaders import LEFT_OUT

    for note in source.notes:
        # ROIs left out by default: said even with -q (the default changed for
        # CaImAn and NWB in the thirty-fifth round)
        (log.warning if LEFT_OUT in note else log.info)("note: %s: %s", args.input, note)
    if params is not None and source.fs is None and args.fs is None:
        log.info("note: %s %s: the %s Hz of %s used (pass --fs HZ if that is not the data's "
                 "rate)", args.input, _no_fs_text(source).split(";")[0].split(":")[0],
                 f"{params.fs:g}", args.params)


#: rows per column beyond which a traces array looks like frames x cells ...
_TRANSPOSED_RATIO = 10
#: ... when it is also shorter than this many frames (3 s at 30 Hz: too short
#: to deconvolve, while a 10-s recording of 3000 cells is legitimate data)
_TRANSPOSED_MAX_T = 100


def _warn_transposed(source: TraceSource, name) -> None:
    """Only a plain .npy/.npz whose orientation nothing states (pipeline
    formats fix it; a sidecar's num_cells/num_timepoints state it)."""
    n, T = source.n, source.T
    if source.kind not in ("npy", "npz") or source.one_d:
        return
    meta = source.meta or {}
    if "num_cells" in meta or "num_timepoints" in meta:
        return
    if 0 < T < _TRANSPOSED_MAX_T and n >= _TRANSPOSED_RATIO * T:
        _warn(f"{name}: {n} rows x {T} columns, far more rows (cells) than columns (frames): "
              f"looks transposed? (cells x frames expected; if its rows are frames, save "
              f"traces.T instead)")


def _fs_value(value, where: str) -> float:
    try:
        fs = as_fs(value, where)
    except SourceError as e:
        raise CLIError(str(e)) from None
    if fs is None:
        raise CLIError(f"{where}: sampling rate missing")
    return fs


# ----------------------------------------------------------------------------
# outputs
# ----------------------------------------------------------------------------


def check_output_folder(out: Path) -> None:
    """Refuse early (exit 2) when OUT cannot be written.

    A symlink is followed (the file it points to is what gets replaced);
    a folder, FIFO, device or socket at OUT is refused.
    """
    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise CLIError(f"output {out} is a folder; give a file name")
    if not out.is_symlink():
        if not folder.exists():
            raise CLIError(f"output folder {folder} does not exist; create it first")
        if not folder.is_dir():
            raise CLIError(f"output folder {folder} is not a folder")
    try:
        target = resolve_target(out)
    except (ValueError, FileNotFoundError) as e:
        raise CLIError(str(e).replace("cannot write ", "cannot write output ", 1)) from None
    folder = target.parent if str(target.parent) else Path(".")
    try:
        fd, probe = tempfile.mkstemp(prefix=temp_prefix(target.name), suffix=".probe",
                                     dir=folder)
    except OSError as e:
        if e.errno in _NO_SPACE:  # not even an empty file (no free inode or block)
            raise _disk_error(e, target, folder, 4096) from None
        raise CLIError(f"output folder {folder} is not writable ({e.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def check_not_an_input(out: Path, *inputs, option: str = "-o") -> None:
    """Refuse (exit 2) an output that is, or resolves to, an input or its sidecar
    (:func:`napari_catune._overwrite.check_not_an_input`, shared with the napari writers)."""
    try:
        _overwrite.check_not_an_input(out, *inputs, name=f"output {out} ({option})")
    except _overwrite.OutputClash as e:
        raise CLIError(str(e)) from None


class DiskFull(Exception):
    """The output's folder has (or had) too little space: one line, exit code 1."""

    def __init__(self, folder: Path, need: int, free: int | None = None):
        self.folder, self.need, self.free = folder, int(need), free
        extra = f", {_size_text(free)} free" if free is not None else ""
        super().__init__(f"no space left on {folder}: need {_size_text(need)}{extra}; free "
                         "space there or write the output elsewhere")


class WriteLimit(DiskFull):
    """The output met a quota (EDQUOT) or a file-size limit (EFBIG): one line,
    exit code 1, as for a full disk."""

    _WHY = {
        errno.EFBIG: ("file too large", "the file system or this process's limit "
                      "(ulimit -f) allows no file that big; write the output elsewhere "
                      "or raise the limit"),
        getattr(errno, "EDQUOT", -1): ("disk quota exceeded", "free space within your quota "
                                       "there or write the output elsewhere"),
    }

    def __init__(self, out: Path, folder: Path, no: int):
        what, todo = self._WHY[no]
        self.folder, self.need, self.free = folder, 0, None
        Exception.__init__(self, f"cannot write {out}: {what} on {folder}; {todo}")


class SchedulerLost(Exception):
    """The Dask scheduler went away mid-run: one line, exit code 1."""

    def __init__(self, address: str, done: int, total: int):
        self.address, self.done, self.total = address, int(done), int(total)
        super().__init__(f"the Dask scheduler at {address} went away after {done} of {total} "
                         "cells; nothing was written; re-run when it is back")


_NO_SPACE = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _disk_error(e: OSError, out: Path, folder: Path, need: int) -> DiskFull:
    """The one-line error (exit 1) for a write that met a full disk, a quota or
    a file-size limit (``e.errno`` in ``_NO_SPACE``)."""
    if e.errno in WriteLimit._WHY:
        return WriteLimit(out, folder, e.errno)
    return DiskFull(folder, need, _free(folder))


def remove_stale_outputs(out: Path) -> None:
    """Remove the temporary files (row spools, half-written outputs) that runs
    killed before they could clean up left in OUT's folder, whichever output
    they were for (``_atomic.remove_stale_temps``: never a live run's); say so
    on stderr."""
    for path, pid, size in remove_stale_temps(resolve_target(out), folder_wide=True):
        print(f"{PROG}: removed {path} ({_size_text(size)}), a temporary file left by an "
              f"interrupted run (process {pid}, no longer running)", file=sys.stderr)


def check_free_space(folder: Path, need: int) -> None:
    """Raise DiskFull (exit 1) when ``folder``'s file system has less than
    ``need`` bytes free (``statvfs``' room for an unprivileged writer), as
    :func:`check_memory_for` does for memory: before any work."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # cannot tell (e.g. some network file systems): writing will tell
    if free < need:
        raise DiskFull(folder, need, free)


#: the cgroup files of a memory limit (a container's, a Slurm job's): v2, then v1
#: (paths relative to the process's cgroup folder; monkeypatched by tests)
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_CGROUP_SELF = Path("/proc/self/cgroup")
_CGROUP_FILES = (("", "memory.max", "memory.current", "inactive_file"),
                 ("memory", "memory.limit_in_bytes", "memory.usage_in_bytes",
                  "total_inactive_file"))
# v1 writes "no limit" as a huge number (PAGE_COUNTER_MAX pages)
_NO_LIMIT = 1 << 60


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        return int(text)
    except ValueError:
        return None  # "max": no limit


def _stat_value(path: Path, key: str) -> int:
    """One counter of a cgroup's ``memory.stat`` (0 if absent)."""
    try:
        for line in path.read_text(encoding="ascii").splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, UnicodeDecodeError, ValueError):
        pass
    return 0


def cgroup_memory_room() -> int | None:
    """Bytes this process's cgroup (and its parents) still allow: the
    smallest ``limit - usage`` over ``memory.max``/``memory.current`` (cgroup
    v2) or ``memory.limit_in_bytes``/``memory.usage_in_bytes`` (v1), from
    the process's own cgroup (``/proc/self/cgroup``) up to the root; None when
    no limit is set or none can be read.  The usage leaves out the inactive
    file cache of ``memory.stat`` (``inactive_file``, v1
    ``total_inactive_file``), which the kernel reclaims before it kills: a job
    that has read large files would otherwise look full (the working set
    container runtimes use)."""
    try:
        lines = _CGROUP_SELF.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    own = {}
    for line in lines:  # "0::/path" (v2), "4:memory:/path" (v1)
        parts = line.split(":", 2)
        if len(parts) == 3:
            for ctrl in parts[1].split(",") if parts[1] else [""]:
                own[ctrl] = parts[2]
    room = None
    for sub, limit_name, usage_name, cache_name in _CGROUP_FILES:
        base = _CGROUP_ROOT / sub if sub else _CGROUP_ROOT
        rel = own.get(sub, "/").strip("/")
        folders = [base]
        for part in rel.split("/") if rel else []:
            folders.append(folders[-1] / part)
        for folder in folders:
            limit = _read_int(folder / limit_name)
            if limit is None or limit >= _NO_LIMIT:
                continue
            used = _read_int(folder / usage_name) or 0
            used = max(0, used - _stat_value(folder / "memory.stat", cache_name))
            left = max(0, limit - used)
            room = left if room is None else min(room, left)
    return room


def available_memory() -> int | None:
    """Bytes of memory a new allocation can get, None if unknown: the
    smaller of the machine's ``MemAvailable`` and what the process's cgroup
    limit leaves (:func:`cgroup_memory_room`: a container's or a batch job's
    limit, below which the job is killed whatever the machine has free)."""
    have = None
    try:
        import psutil

        have = int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - no psutil: the kernel's own figure
        try:
            with open("/proc/meminfo", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("MemAvailable:"):
                        have = int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError, IndexError):
            pass
    room = cgroup_memory_room()
    if room is not None:
        have = room if have is None else min(have, room)
    return have


def check_memory_for(out: Path, n: int, T: int, chunk: int, fitted: bool) -> None:
    """Refuse a run whose rows in flight (``chunk`` rows of T frames: the
    traces, the solver's work arrays and its answers; every output is
    streamed) would not fit in the memory available now, naming the size and
    the way out."""
    need = _SpoolWriter.memory_needed(n, T, chunk, fitted)
    have = available_memory()
    if have is not None and need > have:
        rows = min(n, chunk)
        smaller = max(1, int(rows * max(0, have - _SpoolWriter.MEMORY_FLOOR)
                             / max(1, need - _SpoolWriter.MEMORY_FLOOR)))
        raise CLIError(
            f"{out.name}: solving {rows} ROIs of {T} frames at a time needs about "
            f"{_size_text(need)} of memory, and {_size_text(have)} is available (the smaller of "
            "the machine's free memory and this process's cgroup limit); pass --chunk-cells "
            f"{smaller} or fewer" + (" (one row does not fit: split the frames)"
                                     if rows == 1 else ""))


def _free(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _write_at(fh, offset: int, data) -> None:
    """Write ``data`` (bytes-like) at ``offset`` of an open file: plain writes, no memory map.

    A full disk then raises OSError(ENOSPC) here instead of killing the
    process with SIGBUS, as a write through a memory map into a sparse file does.
    """
    fh.seek(offset)
    fh.write(data)


class _Features:
    """The per-ROI features (``session.roi_features``, as Apply to all in the
    tuner) of the rows written so far, computed a chunk at a time from the
    solver's answers and the source's rows."""

    def __init__(self, source, params, n: int):
        self.source, self.params = source, params
        self.cols: dict[str, np.ndarray] = {}
        self.n = n

    def add(self, a: int, b: int, fields: dict) -> None:
        if self.source is None or self.params is None or "fit" not in fields:
            return
        from .session import roi_features

        ids = np.asarray(self.source.roi_ids)[a:b]
        skipped = np.asarray(fields.get("skipped", np.zeros(b - a, bool)), dtype=bool)
        rows = fields.get("traces")  # (iter_batch passes the rows it read)
        if rows is None:
            rows = self.source.read(a, b)
        rows = np.asarray(rows, dtype=np.float64).reshape(b - a, -1)
        feats = roi_features(
            rows, params=self.params, roi_ids=ids, activity=fields["activity"],
            fit=fields["fit"], baseline=fields["baseline"], converged=fields["converged"],
            iterations=fields["iterations"], skipped=skipped,
            fitted_trace=fields.get("fitted_trace"))
        for key, col in feats.items():
            if key not in self.cols:
                fill = np.nan if col.dtype.kind == "f" else 0
                self.cols[key] = np.full(self.n, fill, dtype=col.dtype)
            self.cols[key][a:b] = col


class _Writer:
    """Output rows streamed into temporary .npy files beside OUT; renamed at the end.

    The (n, T) fields (activity, and fit with ``full``) are written with plain
    file writes at their row offsets; the per-cell fields (baseline,
    iterations, converged, skipped) are small and kept in memory until
    :meth:`commit`.  ``bytes_needed`` is the peak disk use, checked up front.
    """

    FULL = ("activity", "fit", "baseline", "iterations", "converged", "skipped", "roi_ids")

    #: the in-memory writer's interface, for the run loops
    per_sample = False

    @staticmethod
    def bytes_needed(n: int, T: int, full: bool, per_sample_baseline: bool = False,
                     fitted: bool = False) -> int:
        big = 8 * n * T + 4096
        # --full: activity and fit (and a per-sample baseline, the band-passed
        # trace) temp files, then the archive built from them (each temp file is
        # removed once copied in)
        n_big = (4 if per_sample_baseline else 3) + bool(fitted)
        return n_big * big + 4 * 9 * n + 8192 if full else big

    def __init__(self, out: Path, n: int, T: int, *, full: bool, one_d: bool, roi_ids,
                 per_sample_baseline: bool = False, fs: float | None = None, params=None,
                 t0: float = 0.0, timestamps=None, source=None):
        self.out, self.full, self.one_d = out, full, one_d
        self.input_traces = getattr(source, "trace", None)
        # the features of an .npz (the same set as the napari writer's)
        self.features = _Features(source if full else None, params, n)
        self.fs, self.params = fs, params
        self.t0, self.timestamps = float(t0), timestamps
        self.per_sample = per_sample_baseline
        # "drift" and "rolling" give a baseline per sample: (n, T) like activity
        self.BIG = ("activity", "fit", "baseline") if per_sample_baseline else ("activity", "fit")
        if full and params is not None and params.filter_enabled:  # what the fit is of
            self.BIG += ("fitted_trace",)
            self.FULL = self.FULL + ("fitted_trace",)
        # temporary files beside the file that will be replaced (a symlink's target)
        target = resolve_target(out)
        self.folder = target.parent if str(target.parent) else Path(".")
        self.n, self.T = n, T
        self.tmp: dict[str, Path] = {}
        self.files: dict = {}
        self.offset: dict[str, int] = {}
        # per-cell fields: small, kept in memory (counted for every output)
        self.small: dict[str, np.ndarray] = dict(
            iterations=np.zeros(n, np.int64), converged=np.zeros(n, np.bool_),
            skipped=np.zeros(n, np.bool_), roi_ids=np.asarray(roi_ids, dtype=np.int64),
        )
        if full and not per_sample_baseline:
            self.small["baseline"] = np.full(n, np.nan)
        try:
            for key in self.BIG if full else ("activity",):
                fd, name = tempfile.mkstemp(
                    prefix=temp_prefix(target.name, key), suffix=".tmp.npy", dir=self.folder
                )
                self.tmp[key] = Path(name)
                fh = self.files[key] = os.fdopen(fd, "wb")
                shape = (T,) if one_d else (n, T)
                np.lib.format.write_array_header_1_0(
                    fh, {"descr": "<f8", "fortran_order": False, "shape": shape}
                )
                self.offset[key] = fh.tell()
        except BaseException:
            self.abort()
            raise

    @property
    def converged(self) -> np.ndarray:
        return self.small["converged"]

    def _results_entries(self) -> dict:
        """The entries that make the archive a ``results.load_results`` file."""
        from .io import json_default
        from .params import _export_dict
        from .results import FORMAT, FORMAT_VERSION, fit_note

        out = {"format": np.array(FORMAT), "format_version": np.array(FORMAT_VERSION)}
        if self.fs is not None:
            out["fs"] = np.array(float(self.fs))
        out["t0"] = np.array(self.t0)
        if self.timestamps is not None:
            out["timestamps"] = np.asarray(self.timestamps, dtype=np.float64)
        if self.params is not None:
            out["params"] = np.array(json.dumps(_export_dict(self.params, None),
                                                allow_nan=False, default=json_default))
            if fit_note(self.params):
                out["fit_note"] = np.array(fit_note(self.params))
        if self.input_traces:
            out["input_traces"] = np.array(str(self.input_traces))
        from .session import FEATURE_NAMES

        cols = {"roi_id": self.small["roi_ids"],
                **{k: self.small[k] for k in ("converged", "iterations", "skipped")},
                **{k: v for k, v in self.features.cols.items()
                   if k not in ("roi_id", "converged", "iterations", "skipped")}}
        for key in FEATURE_NAMES:
            if key in cols:
                out[f"features.{key}"] = cols[key]
        return out

    def write(self, a: int, b: int, **fields) -> None:
        self.features.add(a, b, fields)
        for key, rows in fields.items():
            if key == "baseline" and key not in self.files and key not in self.small:
                continue
            if key in self.files:
                block = np.ascontiguousarray(rows, dtype="<f8")
                _write_at(self.files[key], self.offset[key] + 8 * a * self.T,
                          memoryview(block).cast("B"))
            elif key in self.small:
                self.small[key][a:b] = rows

    def commit(self) -> None:
        try:
            for key, fh in list(self.files.items()):
                fh.close()  # flushes: a full disk raises here at the latest
                del self.files[key]
            if self.full:
                fd, name = tempfile.mkstemp(
                    prefix=temp_prefix(resolve_target(self.out).name), suffix=".tmp",
                    dir=self.folder,
                )
                os.close(fd)
                self.tmp["_archive"] = Path(name)
                with zipfile.ZipFile(name, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                    entries = [(k, None) for k in self.FULL] + list(self._results_entries().items())
                    for key, value in entries:
                        if key in self.tmp:
                            zf.write(self.tmp[key], arcname=f"{key}.npy")
                            self.tmp.pop(key).unlink()  # its copy is in the archive
                        else:
                            arr = self.small[key] if value is None else value
                            if value is None and self.one_d and key != "roi_ids":
                                arr = arr.reshape(())
                            buf = io.BytesIO()
                            np.lib.format.write_array(buf, arr, allow_pickle=False)
                            zf.writestr(f"{key}.npy", buf.getvalue())
                final = Path(name)
            else:
                final = self.tmp["activity"]
            publish(final, self.out)
            self.tmp = {k: v for k, v in self.tmp.items() if v != final}
        finally:
            self.abort()

    def abort(self) -> None:
        for fh in self.files.values():
            try:
                fh.close()
            except OSError:
                pass  # e.g. ENOSPC while flushing: the file is removed below
        self.files = {}
        for p in self.tmp.values():
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        self.tmp = {}


class _SpoolWriter:
    """.nwb/.csv outputs streamed: the (n, T) fields go into temporary files
    beside OUT as the rows arrive (``results.RowSpool``: activity, and for
    .nwb the fit, a per-sample baseline and the band-passed trace), the
    per-ROI fields stay in memory; :meth:`commit` writes the file from them
    a block of frames at a time (``results.save_results``: itself atomic),
    and the temporary files are removed whatever happens."""

    def __init__(self, out: Path, source, params, per_sample: bool):
        from .results import RowSpool

        n, T = source.n, source.T
        self.out, self.source, self.params = out, source, params
        self.per_sample = bool(per_sample)
        self.features = _Features(source, params, n)
        self.small: dict[str, np.ndarray] = dict(
            iterations=np.zeros(n, np.int64), converged=np.zeros(n, np.bool_),
            skipped=np.zeros(n, np.bool_))
        if not per_sample:
            self.small["baseline"] = np.full(n, np.nan)
        target = resolve_target(out)
        folder = target.parent if str(target.parent) else Path(".")
        self.spools: dict = {}
        try:
            for key in self.big_fields(out.suffix.lower(), per_sample, params.filter_enabled):
                self.spools[key] = RowSpool(n, T, folder, temp_prefix(target.name, key))
        except BaseException:
            self.abort()
            raise

    @staticmethod
    def big_fields(suffix: str, per_sample: bool, fitted: bool) -> tuple:
        """The (n, T) fields the output holds (a CSV only the activity)."""
        if suffix == ".csv":
            return ("activity",)
        return (("activity", "fit") + (("baseline",) if per_sample else ())
                + (("fitted_trace",) if fitted else ()))

    @property
    def converged(self) -> np.ndarray:
        return self.small["converged"]

    def write(self, a: int, b: int, **fields) -> None:
        self.features.add(a, b, fields)
        for key, rows in fields.items():
            if key in self.spools:
                self.spools[key].write_rows(a, rows)
            elif key in self.small:
                self.small[key][a:b] = rows

    #: peak memory of a run: a floor (Python, numba's code, pynwb) and bytes per
    #: value in flight (the chunk of rows being read, solved and written), from
    #: /usr/bin/time -v in the thirty-ninth round: 1000 x 100,000 float32, chunks
    #: of 41 rows, peaked at 0.50 GB for .npz, .csv and .nwb alike
    MEMORY_FLOOR = 300 << 20
    MEMORY_PER_VALUE = 64

    @classmethod
    def memory_needed(cls, n: int, T: int, chunk: int, fitted: bool = False) -> int:
        rows = min(n, chunk)
        return cls.MEMORY_FLOOR + (cls.MEMORY_PER_VALUE + (8 if fitted else 0)) * rows * T

    @classmethod
    def bytes_needed(cls, n: int, T: int, suffix: str, per_sample: bool = False,
                     fitted: bool = False) -> int:
        # the temporary files (8 bytes a value per field) and, beside them, the
        # file written from them: CSV ~17 characters a value, NWB 8 bytes a value
        # per field
        # (.nwb: and the room its writer keeps free beyond the last block)
        from .nwb import _ROOM_MARGIN

        k = len(cls.big_fields(suffix, per_sample, fitted))
        return (8 * k * n * T + (18 if suffix == ".csv" else 8 * k) * n * T + 65536
                + (_ROOM_MARGIN if suffix == ".nwb" else 0))

    def commit(self) -> None:
        from .results import save_results

        f = {**self.small, **self.spools}
        labels = self.source.extra.get("labels") if self.source.extra else None
        try:
            save_results(
                self.out, activity=f["activity"], fit=f.get("fit"), baseline=f["baseline"]
                if "baseline" in f else None,
                roi_ids=self.source.roi_ids, fs=self.params.fs, params=self.params,
                features=self.features.cols or {
                    "roi_id": np.asarray(self.source.roi_ids), "converged": f["converged"],
                    "iterations": f["iterations"], "skipped": f["skipped"]},
                labels=labels, source=str(self.source.path), t0=self.source.t0,
                timestamps=self.source.timestamps, input_traces=self.source.trace,
                fitted_trace=f.get("fitted_trace"),
                nwb_ids=(self.source.extra or {}).get("nwb_ids"),
            )
        except ValueError as e:
            raise CLIError(f"{self.out}: {e}") from None
        finally:
            self.abort()

    def abort(self) -> None:
        for spool in self.spools.values():
            spool.close()
        self.spools = {}


# ----------------------------------------------------------------------------
# progress and messages
# ----------------------------------------------------------------------------


def _bar_shape(stream) -> dict:
    """tqdm's size arguments for ``stream``: follow the terminal when it reports
    its size; a fixed 100 x 24 when it reports none (a pty opened by ``script``,
    some CI runners): tqdm then takes 0 rows as "no room" and draws nothing."""
    try:
        size = os.get_terminal_size(stream.fileno())
        sized = size.columns > 0 and size.lines > 0
    except (OSError, ValueError, AttributeError):
        sized = False
    return {"dynamic_ncols": True} if sized else {"ncols": 100, "nrows": 24}


class Progress:
    """A progress bar with rate and ETA on stderr, only when stderr is a terminal.

    tqdm draws it when installed; otherwise a plain line with the same
    figures.  Off a terminal (a log file, a pipe, a batch job) nothing is
    drawn: the run's summary line says what was done.
    """

    def __init__(self, total: int, label: str, unit: str = "cells", enabled: bool = True,
                 stream=None):
        self.total, self.label, self.unit = max(1, int(total)), label, unit
        self.stream = stream if stream is not None else sys.stderr
        try:
            tty = self.stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        self.enabled = bool(enabled and tty)
        self.t0 = time.monotonic()
        self.done = 0
        self.bar = None
        if self.enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=self.total, desc=label, unit=f" {unit}",
                                file=self.stream, smoothing=0.3, leave=True,
                                **_bar_shape(self.stream))

    def update(self, done: int) -> None:
        step, self.done = done - self.done, done
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(step)
            return
        frac = min(1.0, done / self.total)
        dt = time.monotonic() - self.t0
        rate = done / dt if dt > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        width = 30
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        self.stream.write(
            f"\r{self.label} [{bar}] {frac * 100:5.1f}% {done}/{self.total} {self.unit} "
            f"{rate:.1f} {self.unit}/s ETA {eta:4.0f} s"
        )
        if done >= self.total:
            self.stream.write("\n")
        self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (replaced by tests and by redirections)."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


class _Formatter(logging.Formatter):
    def format(self, record):
        msg = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"{PROG}: warning: {msg}"
        if record.levelno <= logging.DEBUG:
            return f"{PROG}: debug: {msg}"
        return f"{PROG}: {msg}"


def _setup_logging(verbose: int, quiet: bool):
    """Log records of napari_catune to stderr: INFO by default, -q WARNING, -v DEBUG."""
    root = logging.getLogger("napari_catune")
    handler = _StderrHandler()
    handler.setFormatter(_Formatter())
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    old = (root.level, root.propagate)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False

    def restore():
        root.removeHandler(handler)
        root.setLevel(old[0])
        root.propagate = old[1]

    return restore


def _warn(msg: str) -> None:
    log.warning(msg)


# ----------------------------------------------------------------------------
# deconvolve
# ----------------------------------------------------------------------------


def _load_params_or_fail(path):
    from .params import load_params

    p = Path(path)
    if not p.is_file():
        raise CLIError(f"parameters file {p} not found")
    try:
        return load_params(p)
    except (ValueError, OSError, KeyError, TypeError) as e:
        msg = str(e)
        raise CLIError(msg if str(p.name) in msg else f"{p}: {msg}") from None


def _chunk_rows(source: TraceSource, chunk_cells: int | None) -> int:
    if chunk_cells is not None:
        if chunk_cells < 1:
            raise CLIError(f"--chunk-cells must be >= 1, got {chunk_cells}")
        return chunk_cells
    return max(1, min(source.n, _CHUNK_BYTES // (8 * source.T)))


def _cluster_threads(client) -> int:
    """The cluster's worker threads (0 when no worker has joined yet)."""
    try:
        return int(sum(client.nthreads().values()))
    except Exception:  # (an old or odd client: count the workers it lists)
        return len(client.scheduler_info().get("workers", {}))


def _task_rows(chunk: int, n: int, T: int, threads: int) -> int:
    """The cells per Dask task: ``chunk`` (the memory bound) capped at about
    ``n / (4 x threads)`` so that every thread gets work, but at least
    ``_MIN_TASK_SAMPLES`` samples a task."""
    cap = -(-n // (_TASKS_PER_THREAD * max(1, threads)))
    floor = max(1, _MIN_TASK_SAMPLES // max(1, T))
    return max(1, min(chunk, max(cap, floor)))


def find_bad_rows_and_padding(source: TraceSource, chunk: int):
    """The bad rows (NaN or Inf that is not NaN padding at a row's end: skipped)
    and every row's length (:func:`napari_catune._padding.row_lengths`), in one
    streaming pass (no row read twice)."""
    return scan_rows(source, chunk)


def _id_ranges(ids, limit: int = 12) -> str:
    """``"25: 1, 3-4, 6-7, 9-10, ..."``: the count, then runs of consecutive ids."""
    ids = np.unique(np.asarray(ids, dtype=np.int64).ravel())
    if not ids.size:
        return "none"
    breaks = np.flatnonzero(np.diff(ids) != 1) + 1
    runs = [(int(r[0]), int(r[-1])) for r in np.split(ids, breaks)]
    parts = [f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:limit]]
    more = ", ..." if len(runs) > limit else ""
    return f"{ids.size}: {', '.join(parts)}{more}"


def _list_rows(rows, limit: int = 20) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    return shown + (f", ... ({len(rows) - limit} more)" if len(rows) > limit else "")


def _list_rois(rows, roi_ids, limit: int = 20) -> str:
    """``ROI ids 103, 105 (rows 2, 4, 0-based)``: the ids name the cells (the
    results files' ids); the rows, where they differ, the input's array rows."""
    rows = np.asarray(rows, dtype=np.int64)
    ids = np.asarray(roi_ids)[rows]
    text = f"ROI id{'s' if rows.size != 1 else ''} {_list_rows(ids, limit)}"
    if not np.array_equal(ids, rows):
        text += f" = row{'s' if rows.size != 1 else ''} {_list_rows(rows, limit)}, 0-based"
    return text


def _check_output_suffix(out: Path, full: bool) -> str:
    suffix = out.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise CLIError(
            f"cannot tell the output format from {out.name!r}: use .npy (activity), .npz "
            "(activity, fit, baseline, ids, fs, parameters), .nwb or .csv"
        )
    if full and suffix in (".npy", ".csv"):
        raise CLIError(
            f"with --full the output is an .npz archive (or .nwb): {suffix} holds the "
            f"activity only, not the fit and baseline; got {out}"
        )
    if suffix == ".nwb":
        try:
            import pynwb  # noqa: F401
        except ImportError:
            raise CLIError(
                f"writing {out.name} needs pynwb: pip install 'napari-catune[nwb]'"
            ) from None
    return suffix


def _check_report(args, inputs) -> Path | None:
    if not getattr(args, "report", None):
        return None
    rep = Path(args.report)
    if rep.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise CLIError(f"--report needs an image file name (.png, .pdf or .svg), got {rep}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CLIError(
            "--report draws with matplotlib, which is not installed: pip install matplotlib "
            "(or napari-catune[report]; or leave out --report)"
        ) from None
    check_output_folder(rep)
    check_not_an_input(rep, *inputs, option="--report")
    return rep


def _cmd_deconvolve(args) -> int:
    params = _load_params_or_fail(args.params)
    if args.baseline is not None and args.baseline != params.baseline:
        _warn(f"--baseline {args.baseline} overrides the {params.baseline!r} baseline of "
              f"{args.params}")
        params = params.replace(baseline=args.baseline)
    if args.drift_scale is not None:
        if params.baseline != "drift":
            raise CLIError(
                f"--drift-scale applies to the drift baseline; {args.params} uses "
                f"{params.baseline!r} (add --baseline drift)"
            )
        try:
            params = params.replace(drift_scale=args.drift_scale)
        except ValueError as e:
            raise CLIError(f"--drift-scale: {e}") from None
    out = Path(args.output)
    suffix = _check_output_suffix(out, args.full)
    check_output_folder(out)
    check_not_an_input(out, args.input, args.params)
    check_not_an_input(_sidecar(out), args.input, args.params, option="-o's sidecar")
    _check_sidecar_free(out)
    report = _check_report(args, (args.input, args.params, out))
    remove_stale_outputs(out)  # before the free-space check: they may be what fills the disk
    source = _open_args(args)
    params = _deconvolve_fs(args, params, source)
    if source.timestamps is not None:
        _warn(next((n for n in source.notes if n.startswith("timestamps irregular")),
                   "the input's timestamps are irregular: the outputs keep them"))
    folder = resolve_target(out).parent
    per_sample = _per_sample_baseline(params)
    full = suffix != ".npy"
    if suffix in (".npy", ".npz"):
        need = _Writer.bytes_needed(source.n, source.T, full, per_sample, params.filter_enabled)
    else:
        need = _SpoolWriter.bytes_needed(source.n, source.T, suffix, per_sample,
                                         params.filter_enabled)
    check_free_space(folder, need)  # before any work
    chunk = _chunk_rows(source, args.chunk_cells)
    check_memory_for(out, source.n, source.T, chunk, params.filter_enabled)
    bad, lengths = find_bad_rows_and_padding(source, chunk)
    if bad.size:
        where = (f"{args.input}: {bad.size} of {source.n} rows hold NaN or Inf before "
                 f"their end ({_list_rois(bad, source.roi_ids)})")
        if not args.skip_bad:
            raise CLIError(f"{where}; drop or interpolate those samples, or pass "
                           "--skip-bad to skip those rows (NaN padding at the end of a "
                           "row is fine: that row is solved on its finite part)")
        if bad.size == source.n:
            raise CLIError(f"{where}: nothing left to deconvolve")
        _warn(f"{where}; skipped: their output rows are NaN (converged False)")
    padded = padding_summary(source.T, lengths)
    if padded:
        log.info("%s: %s; each solved on its finite part, its outputs NaN after it",
                 args.input, padded)
    if not args.scheduler:
        _start_solver()  # (only now: a run refused above starts no compile child)
    client = writer = None
    t0 = time.monotonic()
    progress = None
    try:
        on = ""
        if args.scheduler:
            client = _connect(args.scheduler, args.scheduler_timeout)
            threads = _cluster_threads(client)
            on = (f" on {threads} Dask worker threads" if threads else
                  " on the Dask cluster (no worker joined yet: tasks sized for 1 thread)")
            if args.chunk_cells is None:
                chunk = _task_rows(chunk, source.n, source.T, threads)
        log.debug("input %s (%s): %d cells x %d frames, chunks of %d cells%s", source.path,
                  source.kind, source.n, source.T, chunk, on)
        if suffix in (".npy", ".npz"):
            writer = _Writer(out, source.n, source.T, full=full, one_d=source.one_d,
                             roi_ids=source.roi_ids, per_sample_baseline=per_sample,
                             fs=params.fs, params=params, t0=source.t0,
                             timestamps=source.timestamps, source=source)
        else:
            writer = _SpoolWriter(out, source, params, per_sample)
        progress = Progress(source.n, "deconvolve", enabled=not args.quiet)
        if client is not None:
            _run_distributed(client, source, params, chunk, bad, writer, progress, full,
                             args.scheduler)
        else:
            _run_local(source, params, chunk, bad, writer, progress, full)
        progress.close()
        writer.commit()
    except OSError as e:
        if writer is not None:
            writer.abort()
        if e.errno in _NO_SPACE:
            raise _disk_error(e, out, folder, need) from None
        raise
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        if progress is not None:
            progress.close()
        if client is not None:
            client.close()
    seconds = time.monotonic() - t0
    converged = writer.converged
    skipped = np.zeros(source.n, dtype=bool)
    skipped[bad] = True
    not_conv = np.flatnonzero(~converged & ~skipped)
    kept = source.n - bad.size
    meta_path = _write_sidecar(
        out, args, source, params, kind="deconvolved activity",
        extra={"output_format": suffix[1:], "cells_deconvolved": int(kept),
               "cells_skipped": int(bad.size), "skipped_rows": [int(r) for r in bad],
               "cells_not_converged": int(not_conv.size),
               "not_converged_rows": [int(r) for r in not_conv[:1000]],
               "seconds": round(seconds, 3)},
        merge=isinstance(writer, _SpoolWriter),
    )
    log.info("wrote %s and %s (%d of %d cells deconvolved%s; %d not converged; %.1f s, "
             "%.1f cells/s)", out, meta_path.name, kept, source.n,
             f", {bad.size} skipped" if bad.size else "", not_conv.size, seconds,
             kept / seconds if seconds > 0 else float("inf"))
    _say_notes(args, source, params)
    if not_conv.size:
        _warn(f"{not_conv.size} of {kept} cells did not converge within the iteration "
              f"budget ({_list_rois(not_conv, source.roi_ids)}); their activity is the last "
              "iterate")
    if report is not None:
        _report(report, source, params, bad, writer.converged, args)
    return 0


def _same_fs(a: float, b: float) -> bool:
    from .params import fs_matches  # (params is imported only when needed)

    return fs_matches(a, b)


def _fs_texts(a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` with just enough digits to tell them apart (at least 6)."""
    for digits in range(6, 18):
        ta, tb = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if ta != tb:
            break
    return ta, tb


def _deconvolve_fs(args, params, source):
    """The parameters at the rate ``deconvolve`` uses: the data's recorded rate
    (or ``--fs``, which overrides it) must be the parameter file's
    (:func:`napari_catune.params.fs_matches`); CLIError otherwise."""
    from .params import fs_matches

    if args.fs is not None:
        if not fs_matches(args.fs, params.fs):
            fa, fp = _fs_texts(args.fs, params.fs)
            raise CLIError(
                f"sampling rate mismatch: --fs {fa} Hz but {args.params} was tuned at {fp} Hz; "
                "re-tune or re-save the parameters at the data's rate (napari-catune estimate "
                "INPUT --fs HZ -o PARAMS.json, or the tuner)"
            )
        if source.fs is not None and not fs_matches(args.fs, source.fs):
            fa, fd = _fs_texts(args.fs, source.fs)
            _warn(f"--fs {fa} Hz overrides the {fd} Hz recorded in {args.input}")
        return params.replace(fs=args.fs)
    if source.fs is not None and not fs_matches(source.fs, params.fs):
        fp, fd = _fs_texts(params.fs, source.fs)
        keys = next((n for n in source.notes if "records one sampling rate under" in n), None)
        raise CLIError(
            f"sampling rate mismatch: {args.params} was tuned at {fp} Hz but {args.input} is "
            f"recorded at {fd} Hz" + (f"; {keys}" if keys else "")
            + "; re-tune or re-save the parameters at the data's rate, or, "
            f"if the rate recorded in {args.input} is wrong, pass its true rate with --fs HZ"
        )
    return params


def _start_solver() -> None:
    """On the first run after an install or upgrade (nothing in numba's
    cache), compile the solver in a background subprocess and solve with the
    exact NumPy solver meanwhile (``solver.start_background_compile``; a
    long job switches to the compiled code between row groups once it is
    ready, and the child goes on filling the cache for the next run), and say
    so.  (With the cache filled, loading it takes ~0.5 s and is left to the
    first solve: a background load measured ~0.3 s slower on a small input,
    the two threads contending.)"""
    from . import solver

    # (passes=False: the interior point's compiled passes are made only if
    # a solve is long enough to use them, as before; on a short run they
    # would only add ~0.1 s of CPU before the answer)
    if solver.start_background_compile(passes=False) == "started":
        solver._tell_if_compiling()


def _sidecar(out: Path) -> Path:
    return out.with_name(out.stem + "_metadata.json")


def _check_sidecar_free(out: Path) -> None:
    """Refuse (exit 2) when OUT's ``{stem}_metadata.json`` describes another output
    (:func:`napari_catune._overwrite.check_sidecar_free`, shared with the napari writers)."""
    try:
        _overwrite.check_sidecar_free(out, OUTPUT_FORMATS)
    except _overwrite.OutputClash as e:
        raise CLIError(str(e)) from None


def _write_sidecar(out: Path, args, source, params, *, kind: str, extra: dict,
                   merge: bool = False) -> Path:
    """``{stem}_metadata.json`` beside a CLI output: what it holds and how it was made.

    For an ``.npy`` output the keys of the traces hand-off format come first
    (``sampling_rate_hz``, ``num_cells``, ``num_timepoints``, ``dtype``,
    ``roi_ids``), so ``io.load_tuning_data`` reads it back with its ids and rate
    (as an input it is refused when its ``content`` is the deconvolved activity).
    """
    from datetime import datetime, timezone

    from ._version import __version__
    from .io import json_default
    from .results import results_metadata

    side = _sidecar(out)
    meta = results_metadata(
        roi_ids=source.roi_ids, fs=params.fs if params is not None else source.fs,
        params=params, n_frames=source.T, content=kind, t0=getattr(source, "t0", 0.0),
        # (.npz, .csv and .nwb hold irregular timestamps themselves)
        timestamps=getattr(source, "timestamps", None) if out.suffix.lower() == ".npy" else None,
    ) if params is not None else {
        "schema_version": "1.0.0", "sampling_rate_hz": source.fs, "num_cells": int(source.n),
        "num_timepoints": int(source.T),
        "roi_ids": [int(i) for i in np.asarray(source.roi_ids)], "content": kind,
    }
    if out.suffix.lower() == ".npy":
        meta["dtype"] = "<f8"
    meta.update({
        "created_by": f"napari-catune {__version__}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([PROG, *getattr(args, "argv", [])]),
        "input": os.path.basename(str(source.path).rstrip("/")),
        "input_kind": source.kind,
        "output": out.name,
        **extra,
    })
    if source.trace:
        meta["input_traces"] = source.trace
    if source.notes:
        meta["input_notes"] = list(source.notes)
    if merge and side.is_file():
        # save_results wrote this run's sidecar (csv_layout, source_filename, ...): keep it
        try:
            old = json.loads(side.read_text(encoding="utf-8"))
        except (ValueError, OSError, UnicodeDecodeError):
            old = None
        if isinstance(old, dict):
            meta = {**old, **meta}
    text = json.dumps(meta, indent=2, allow_nan=False, default=json_default)
    return atomic_write_text(side, text + "\n")


_per_sample_baseline = per_sample_baseline


def _fill(a: int, b: int, bad: np.ndarray, T: int, res, ok: np.ndarray,
          per_sample: bool = False):
    """Per-chunk output fields, NaN/False/0 on the skipped rows."""
    return chunk_fields(b - a, T, ok, res, per_sample)


def _run_local(source, params, chunk, bad, writer, progress, full) -> None:
    """The batch loop shared with the tuner's Apply to all (:mod:`napari_catune.batch`)."""
    run_batch(source, params, writer, chunk=chunk, skip=bad,
              progress=lambda done, total: progress.update(done))


def _report(path: Path, source, params, bad, converged, args) -> None:
    """A PNG/PDF summary of a batch run: a few traces with fit and activity, parameters."""
    from .results import save_report
    from .solver import run_deconvolution_full

    ok = np.ones(source.n, dtype=bool)
    ok[bad] = False
    rows = np.flatnonzero(ok)
    rows = rows[np.unique(np.linspace(0, rows.size - 1, min(4, rows.size)).round()
                          .astype(np.int64))]
    traces = np.concatenate([np.asarray(source.read(int(r), int(r) + 1), dtype=np.float64)
                             for r in rows])
    r = run_deconvolution_full(traces, params.fs, params.tau_rise, params.tau_decay,
                               params.lam, **params.solver_kwargs())
    if params.filter_enabled:  # the fit is of the band-passed trace: draw that one
        traces = fitted_rows(traces, np.ones(len(traces), bool), params, traces.shape[1])
    n_conv = int(np.count_nonzero(converged & ok))
    summary = {
        "input": os.path.basename(str(source.path).rstrip("/")),
        "cells": f"{source.n} ({int(ok.sum())} deconvolved, {int(bad.size)} skipped)",
        "frames": f"{source.T} ({source.T / params.fs:.1f} s)",
        "not converged": str(int(ok.sum()) - n_conv),
        "output": os.path.basename(str(args.output)),
    }
    try:
        save_report(path, traces=traces, fit=r.reconvolution, activity=r.activity,
                    baseline=r.baseline, roi_ids=np.asarray(source.roi_ids)[rows],
                    params=params, summary=summary)
    except ImportError as e:
        raise CLIError(f"--report: {e}") from None
    log.info("wrote report %s", path)


# ----------------------------------------------------------------------------
# extract (movie + ROI labels -> traces)
# ----------------------------------------------------------------------------


def _cmd_extract(args) -> int:
    from .sources import open_labels, open_movie

    out = Path(args.output)
    suffix = out.suffix.lower()
    if suffix not in (".npz", ".npy"):
        raise CLIError(f"extract writes traces as .npz (traces, fs, roi_ids) or .npy "
                       f"(+ _metadata.json); got {out}")
    check_output_folder(out)
    check_not_an_input(out, args.movie, args.labels)
    check_not_an_input(_sidecar(out), args.movie, args.labels, option="-o's sidecar")
    _check_sidecar_free(out)
    remove_stale_outputs(out)
    try:
        labels = open_labels(args.labels)
        movie = open_movie(args.movie, key=args.movie_key)
    except SourceError as e:
        raise CLIError(str(e)) from None
    try:
        for note in movie.notes:
            log.info("note: %s: %s", args.movie, note)
        fs = args.fs if args.fs is not None else movie.fs
        if args.fs is not None and movie.fs is not None and not _same_fs(args.fs, movie.fs):
            _warn(f"--fs {args.fs:g} Hz overrides the {movie.fs:g} Hz recorded in {args.movie}")
        if suffix == ".npy" and fs is None:
            raise CLIError(f"{args.movie} does not record its frame rate; pass --fs HZ "
                           "(the .npy sidecar needs it) or write .npz")
        from .traces import time_axis_last

        if time_axis_last(movie.shape, labels.shape):
            raise CLIError(
                f"{args.movie} has shape {tuple(movie.shape)} and the label image {args.labels} "
                f"is {labels.shape[0]}x{labels.shape[1]}: the time axis looks last "
                f"({movie.shape[2]} frames of {movie.shape[0]}x{movie.shape[1]}). extract reads "
                "(T, Y, X) movies: save it with time first, e.g. np.save('movie_tyx.npy', "
                "np.moveaxis(movie, -1, 0))"
            )
        if tuple(movie.shape[1:]) != tuple(labels.shape):
            raise CLIError(
                f"the movie's frames are {movie.shape[1]}x{movie.shape[2]} but the label image "
                f"{args.labels} is {labels.shape[0]}x{labels.shape[1]}; they must match"
            )
        from .traces import extract_traces

        log.info("extracting %d ROIs from %s (%d frames%s)", np.unique(labels[labels > 0]).size,
                 args.movie, movie.shape[0], f", {fs:g} Hz" if fs else "")
        try:
            traces, ids = extract_traces(movie.data, labels)
        except ValueError as e:
            # the movie's own problems name "movie"; the rest are the label image's
            where = args.movie if str(e).startswith("movie") else args.labels
            raise CLIError(f"{where}: {e}") from None
        fneu = None
        if args.neuropil is not None:
            from .neuropil import extract_neuropil

            log.info("neuropil: suite2p's surround masks (inner radius %d px, > %d pixels), "
                     "F - %g*Fneu", args.neuropil_inner_radius, args.neuropil_min_pixels,
                     args.neuropil)
            try:
                fneu, _, npix = extract_neuropil(
                    movie.data, labels, ids, inner_radius=args.neuropil_inner_radius,
                    min_pixels=args.neuropil_min_pixels)
            except ValueError as e:
                raise CLIError(f"{args.labels}: {e}") from None
            log.info("neuropil masks: %d to %d pixels", int(npix.min()), int(npix.max()))
    finally:
        movie.close()
    if traces.shape[0] == 0:
        raise CLIError(f"{args.labels}: no ROIs (every pixel is 0)")
    from .traces import ROI_MEAN_TRACES

    said = ROI_MEAN_TRACES
    if fneu is not None:
        from .neuropil import neuropil_note

        said = neuropil_note(args.neuropil, args.neuropil_inner_radius, args.neuropil_min_pixels)
        traces = traces - args.neuropil * fneu
    check_free_space(resolve_target(out).parent, 8 * traces.size * (1 if fneu is None else 2)
                     + 65536)
    if suffix == ".npz":
        from ._atomic import _atomic_write

        # the label image rides along: deconvolve -o x.nwb writes the ROIs' footprints
        arrays = {"traces": traces, "roi_ids": np.asarray(ids, dtype=np.int64),
                  "labels": np.asarray(labels), "input_traces": np.array(said)}
        if fneu is not None:  # the parts, to redo the subtraction with another coefficient
            arrays.update(Fneu=fneu, neuropil_coefficient=np.array(float(args.neuropil)))
        if fs is not None:
            arrays["fs"] = np.array(float(fs))
        _atomic_write(out, lambda fh: np.savez(fh, **arrays))
    else:
        from .io import save_for_tuning

        save_for_tuning(traces, fs, out, metadata={"roi_ids": [int(i) for i in ids]})
    src = TraceSource(str(args.movie), "movie", traces.shape, traces.dtype, fs, np.asarray(ids),
                      read=lambda a, b: traces[a:b])
    extra = {"labels": os.path.basename(str(args.labels)), "traces": said}
    if fneu is not None:
        extra["neuropil"] = {"convention": "suite2p", "coefficient": float(args.neuropil),
                             "inner_radius": int(args.neuropil_inner_radius),
                             "min_pixels": int(args.neuropil_min_pixels)}
    if movie.key:
        extra["movie_key"] = movie.key
    if suffix == ".npz":
        _write_sidecar(out, args, src, None, kind="ROI traces (napari-catune extract)",
                       extra=extra)
    else:  # save_for_tuning wrote the hand-off sidecar; add how the traces were made
        side = _sidecar(out)
        meta = json.loads(side.read_text(encoding="utf-8"))
        meta.update({"content": "ROI traces (napari-catune extract)",
                     "input": os.path.basename(str(args.movie)), **extra})
        atomic_write_text(side, json.dumps(meta, indent=2) + "\n")
    log.info("wrote %s: %d ROIs x %d frames", out, traces.shape[0], traces.shape[1])
    return 0


def _probe_scheduler(address: str, timeout: float) -> dict:
    """Connect, exchange the Dask comm handshake and ask the peer who it is, all
    within ``timeout`` seconds (plus a second of slack); CLIError otherwise.

    ``distributed.Client(timeout=...)`` bounds only the TCP connect: a service
    that accepts and never speaks made it wait forever, and an HTTP server's
    answer, read as a Dask frame length, asked for exabytes of memory.
    """
    import asyncio

    from distributed.comm import CommClosedError, connect
    from distributed.comm.addressing import parse_address
    from distributed.comm.registry import get_backend
    from distributed.security import Security

    head = f"no Dask scheduler answered at {address}: "
    hint = ("is this the scheduler's address? (tcp://HOST:8786 by default; "
            "8787 is its web dashboard)")
    try:
        get_backend(parse_address(address)[0])
    except (ValueError, TypeError) as e:
        raise CLIError(f"{head}not a Dask address ({e})") from None

    async def probe():
        # connect() retries until `timeout`, then exchanges the comm handshake
        # (unbounded in distributed): the wait_for below bounds the whole
        comm = await connect(address, timeout=timeout,
                             **Security().get_connection_args("client"))
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    result: dict = {}

    def run():
        try:
            result["value"] = asyncio.run(asyncio.wait_for(probe(), timeout + 1.0))
        except BaseException as e:  # reported in the calling thread
            result["error"] = e

    worker = threading.Thread(target=run, name="catune-scheduler-probe", daemon=True)
    worker.start()
    worker.join(timeout + 5.0)
    err = result.get("error")
    if worker.is_alive() or isinstance(err, (asyncio.TimeoutError, TimeoutError)):
        # connect() gives up with OSError at `timeout`: this peer accepted and stayed silent
        raise CLIError(f"{head}no Dask handshake within {timeout:g} s; {hint}")
    if isinstance(err, (KeyboardInterrupt, SystemExit)):
        raise err
    if isinstance(err, CommClosedError):
        raise CLIError(f"{head}the connection was closed without a Dask handshake; {hint}")
    if isinstance(err, OSError):
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CLIError(f"{head}could not connect ({detail})")
    if err is not None:
        # e.g. an HTTP server: its reply read as a frame length asks for exabytes
        raise CLIError(
            f"{head}it answered, but not in the Dask protocol ({type(err).__name__}); {hint}"
        )
    reply = result.get("value")
    kind = reply.get("type") if isinstance(reply, dict) else None
    if not (isinstance(kind, str) and "Scheduler" in kind):
        what = f"a Dask {kind}" if isinstance(kind, str) else "not a Dask scheduler"
        raise CLIError(f"{head}the service there is {what}, not the scheduler; {hint}")
    return reply


class _DropGatherExits(logging.Filter):
    """Ctrl-C in ``client.gather`` leaves distributed's per-future wait tasks
    ending in its internal ``AllExit``; asyncio logs each as "Task exception
    was never retrieved" with a traceback when they are collected.  The run
    says "interrupted" itself: drop those records, and only those."""

    def filter(self, record):
        exc = record.exc_info[1] if record.exc_info else None
        return type(exc).__name__ != "AllExit"


class _DropReconnectCancel(logging.Filter):
    """When the scheduler has gone, closing the client cancels its attempts to
    reconnect, and distributed logs that CancelledError with a traceback; the
    run says what happened in one line (:class:`SchedulerLost`): drop those
    records, and only those."""

    def filter(self, record):
        import asyncio
        import traceback

        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, asyncio.CancelledError):
            return True
        names = {f.name for f in traceback.extract_tb(exc.__traceback__)}
        return "_reconnect" not in names


def _quiet_gather_exits() -> None:
    for name, cls in (("asyncio", _DropGatherExits), ("distributed.client", _DropReconnectCancel)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, cls) for f in logger.filters):
            logger.addFilter(cls())


def _lost_scheduler(client, err: BaseException) -> bool:
    """Whether ``err`` (raised while waiting for results) means the
    connection to the scheduler is gone, not that a task failed."""
    import asyncio
    from concurrent.futures import CancelledError

    if "scheduler-connection-lost" in str(err):
        return True
    try:
        status = client.status
    except Exception:
        status = None
    return (isinstance(err, (CancelledError, asyncio.CancelledError, OSError, TimeoutError))
            and status != "running")


def _connect(address: str, timeout: float = 10.0):
    try:
        from distributed import Client
    except ImportError:
        raise CLIError(
            "--scheduler needs dask.distributed: pip install 'napari-catune[distributed]'"
        ) from None
    _probe_scheduler(address, timeout)
    _quiet_gather_exits()
    t0 = time.monotonic()
    try:
        return Client(address, timeout=f"{timeout}s")
    except (OSError, TimeoutError, ValueError) as e:
        raise CLIError(
            f"no Dask scheduler answered at {address}: could not connect within "
            f"{time.monotonic() - t0:.0f} s ({type(e).__name__}: {e})"
        ) from None


def _run_distributed(client, source, params, chunk, bad, writer, progress, full,
                     address: str = "") -> None:
    """Solve on the Dask cluster of ``client``, ``chunk`` cells a task, a few
    tasks per worker thread in flight; the chunks are written in order.
    :class:`SchedulerLost` when the scheduler goes away."""
    try:
        _run_distributed_chunks(client, source, params, chunk, bad, writer, progress, full)
    except Exception as e:
        if not _lost_scheduler(client, e):
            raise
        address = address or getattr(getattr(client, "scheduler", None), "address", "?")
        raise SchedulerLost(address, progress.done, source.n) from None


def _run_distributed_chunks(client, source, params, chunk, bad, writer, progress,
                            full) -> None:
    import dask
    import dask.array as da

    from .solver import run_deconvolution_full

    n, T = source.shape
    starts = list(range(0, n, chunk))
    bounds = [(a, min(n, a + chunk)) for a in starts]
    if source.spec is not None:
        # workers read their own rows from the shared file system
        blocks = []
        for a, b in bounds:
            bad_here = bad[(bad >= a) & (bad < b)].tolist()
            dtype = np.float64 if bad_here else source.dtype
            d = dask.delayed(_read_rows_clean, pure=True)(source.spec, a, b, bad_here)
            blocks.append(da.from_delayed(d, shape=(b - a, T), dtype=dtype))
        x = da.concatenate(blocks, axis=0) if len(blocks) > 1 else blocks[0]
    else:
        data = np.array(source.read(0, n), dtype=np.float64)
        data[bad] = 0.0
        x = da.from_array(data, chunks=(chunk, T))
    x = x.rechunk({0: chunk, 1: -1})
    args = (x, params.fs, params.tau_rise, params.tau_decay, params.lam)
    kw = params.solver_kwargs()
    if full:
        r = run_deconvolution_full(*args, **kw)
        lazy = [r.activity, r.reconvolution, r.baseline, r.iterations, r.converged]
    else:
        r = run_deconvolution_full(*args, **kw)
        lazy = [r.activity, r.converged]
    window = 2 * max(1, _cluster_threads(client))
    pending: list = []
    bad_set = np.zeros(n, dtype=bool)
    bad_set[bad] = True

    def submit(i):
        pending.append((i, client.compute([f.blocks[i] for f in lazy])))

    nxt = 0
    while nxt < len(bounds) and len(pending) < window:
        submit(nxt)
        nxt += 1
    while pending:
        i, futs = pending.pop(0)
        parts = client.gather(futs)
        if nxt < len(bounds):
            submit(nxt)
            nxt += 1
        a, b = bounds[i]
        ok = ~bad_set[a:b]
        if full:
            res = tuple(np.asarray(p)[ok] for p in parts)
            fields = _fill(a, b, bad, T, res, ok, writer.per_sample)
            if params.filter_enabled:  # the band-passed rows the fit is of
                rows = np.asarray(source.read(a, b))[ok] if ok.any() else None
                fields["fitted_trace"] = fitted_rows(rows, ok, params, T)
        else:
            act = np.asarray(parts[0])
            act[~ok] = np.nan
            conv = np.asarray(parts[1]) & ok
            fields = dict(activity=act, converged=conv, skipped=~ok)
        writer.write(a, b, **fields)
        progress.update(b)

# ----------------------------------------------------------------------------
# estimate / info
# ----------------------------------------------------------------------------


def _sampled_rows(n: int, limit: int | None) -> np.ndarray:
    """Up to ``limit`` evenly spaced row indices of ``n``."""
    if limit is not None and n > limit:
        return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))
    return np.arange(n)


def _finite_rows(source: TraceSource, chunk: int, limit: int | None = None):
    """Up to ``limit`` evenly spaced rows as float64 that are finite or end
    in NaN padding (the estimator takes each on its finite part), their
    indices, and the lengths (:func:`napari_catune._padding.row_lengths`) of
    all the sampled rows (-1: left out, NaN or Inf before the row's end)."""
    idx = _sampled_rows(source.n, limit)
    # one float64 array filled chunk by chunk (no list of blocks to join: that
    # held the rows twice)
    out = np.empty((idx.size, source.T))
    kept, pads = [], []
    k = 0
    for a in range(0, source.n, chunk):
        b = min(source.n, a + chunk)
        want = idx[(idx >= a) & (idx < b)]
        if not want.size:
            continue
        block = np.asarray(source.read(a, b))[want - a]
        lengths = row_lengths(block)
        ok = lengths != BAD
        m = int(np.count_nonzero(ok))
        out[k : k + m] = block[ok]
        k += m
        del block
        kept.append(want[ok])
        pads.append(lengths)
    if not kept:
        return (np.empty((0, source.T)), np.empty(0, dtype=np.int64),
                np.empty(0, dtype=np.int64))
    return out[:k], np.concatenate(kept), np.concatenate(pads)


def _cmd_estimate(args) -> int:
    out = Path(args.output) if args.output else None
    if out is not None:
        if out.suffix.lower() != ".json":
            raise CLIError(f"the parameters file must end in .json; got {out}")
        check_output_folder(out)
        check_not_an_input(out, args.input)
        remove_stale_outputs(out)
    source = _open_args(args)
    fs = args.fs if args.fs is not None else source.fs
    if fs is None:
        raise CLIError(f"{args.input} {_no_fs_text(source)}")
    fs = _fs_value(fs, "--fs")
    if args.fs is not None and source.fs is not None and not _same_fs(args.fs, source.fs):
        _warn(f"--fs {args.fs:g} Hz overrides the {source.fs:g} Hz recorded in {args.input}")
    chunk = _chunk_rows(source, None)
    traces, rows, lengths = _finite_rows(source, chunk, limit=args.max_cells)
    if traces.shape[0] < min(source.n, args.max_cells):
        left = int(np.count_nonzero(lengths == BAD))
        if traces.shape[0] == 0:
            raise CLIError(f"{args.input}: every row holds NaN or Inf before its end; "
                           "nothing to estimate from")
        _warn(f"{left} rows with NaN or Inf before their end left out")
    padded = padding_summary(source.T, lengths)
    if padded:
        log.info("%s: %s; each measured on its finite part", args.input, padded)
    _start_solver()  # (only now: a run refused above starts no compile child)
    from .estimate import estimate_report

    import warnings

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = estimate_report(traces, fs)
            params = report.params
            if args.baseline is not None:
                params = params.replace(baseline=args.baseline)
    except ValueError as e:
        msg = str(e)
        if traces.shape != (source.n, source.T):  # (a sample of the rows: say the file's shape)
            msg = msg.replace(f"traces shape {traces.shape}",
                              f"{args.input} has shape ({source.n}, {source.T}), "
                              "cells x frames")
        raise CLIError(f"{args.input}: {msg}") from None
    for w in caught:
        _warn(str(w.message))
    used = f"{rows.size} of {source.n} cells" if rows.size < source.n else f"{source.n} cells"
    print(f"estimated from {used} at {fs:g} Hz ({args.input}):")
    print(f"  tau_rise    {params.tau_rise:.4g} s")
    print(f"  tau_decay   {params.tau_decay:.4g} s")
    print(f"  t_peak      {params.t_peak:.4g} s")
    print(f"  fwhm        {params.fwhm:.4g} s")
    print(f"  lambda      {params.lam:.4g}  ({report.z:g} noise deviations)")
    print(f"  noise       {report.noise_median:.4g} (median sigma, trace units)")
    print(f"  baseline    {params.baseline}")
    print(f"  fs          {params.fs:g} Hz")
    if out is not None:
        from .params import save_params

        try:
            save_params(params, out, metadata={
                "source_filename": os.path.basename(str(args.input).rstrip("/")),
                "num_cells": int(source.n), "num_timepoints": int(source.T),
                **({"input_traces": source.trace} if source.trace else {}),
            })
        except OSError as e:
            if e.errno in _NO_SPACE:
                folder = resolve_target(out).parent
                # a parameter file is ~1.5 kB: one file-system block
                raise _disk_error(e, out, folder, 4096) from None
            raise
        print(f"saved {out}")
        from .params import calab_note

        if calab_note(params):
            print(f"note: {calab_note(params)}")
    _say_notes(args, source)
    return 0


def _movie_info(path) -> bool:
    """Print a movie's summary (TIFF, HDF5, zarr stack); False when it is not one.

    A TIFF that cannot be a movie raises CLIError with the reason (4-D, a single
    image, unreadable); only its header is read.
    """
    from .sources import MOVIE_SUFFIXES, open_movie

    low = str(path).lower().rstrip("/")
    if not low.endswith(MOVIE_SUFFIXES):
        return False
    try:
        movie = open_movie(path, header_only=True)
    except SourceError as e:
        if low.endswith((".tif", ".tiff")) or _plain_hdf5(path):
            raise CLIError(str(e)) from None
        return False
    try:
        print(f"input        {path} (movie{', dataset ' + repr(movie.key) if movie.key else ''})")
        print(f"shape        {movie.shape}  (frames, height, width)")
        print(f"dtype        {movie.data.dtype}")
        if movie.fs is not None:
            print(f"fs           {movie.fs:g} Hz  (duration {movie.shape[0] / movie.fs:.1f} s)")
        else:
            print("fs           unknown (the file records no frame rate)")
        for note in movie.notes:
            print(f"note         {note}")
        print("next         napari-catune extract MOVIE LABELS -o traces.npz")
    finally:
        movie.close()
    return True


def _plain_hdf5(path) -> bool:
    """An .h5/.hdf5 file that is not a CaImAn file (no 'estimates'), or unreadable without h5py."""
    if not str(path).lower().endswith((".h5", ".hdf5")):
        return False
    try:
        import h5py
    except ImportError:
        return True
    try:
        with h5py.File(path, "r") as f:
            return "estimates" not in f
    except OSError:
        return False


def _cmd_info(args) -> int:
    try:
        source = _open_args(args)
    except CLIError:
        if _movie_info(args.input):
            return 0
        raise
    fs = args.fs if args.fs is not None else source.fs
    chunk = _chunk_rows(source, None)
    nan_values = nan_rows = inf_values = 0
    lengths = []
    snr_parts = []
    snr_error = None
    try:
        from .traces import roi_snr
    except ImportError as e:  # pragma: no cover - the data helper's module
        roi_snr, snr_error = None, str(e)
    for a in range(0, source.n, chunk):
        b = min(source.n, a + chunk)
        block = np.asarray(source.read(a, b))
        if block.dtype.kind == "f":
            nan = np.isnan(block)
            inf = np.isinf(block)
            nan_values += int(nan.sum())
            inf_values += int(inf.sum())
            # rows ending in NaN padding are solved (and scored) on their finite part
            rows = row_lengths(block)
            lengths.append(rows)
            ok = rows != BAD
            nan_rows += int((~ok).sum())
            block = block[ok]
        if fs is not None and roi_snr is not None and block.shape[0]:
            snr_parts.append(np.asarray(roi_snr(np.asarray(block, dtype=np.float64), fs)))
    shape = (source.T,) if source.one_d else source.shape
    print(f"input        {source.path} ({source.kind})")
    if source.trace:
        print(f"traces       {source.trace}")
    print(f"shape        {shape}  " + ("(frames)" if source.one_d else "(cells, frames)"))
    print(f"dtype        {source.dtype}")
    if fs is not None:
        print(f"fs           {fs:g} Hz  (duration {source.T / fs:.1f} s)")
    else:
        print("fs           unknown (pass --fs HZ)")
    print(f"roi ids      {_id_ranges(source.roi_ids)}")
    print(f"NaN values   {nan_values}" + (f"  (Inf values {inf_values})" if inf_values else ""))
    print(f"bad rows     {nan_rows}  (rows with NaN or Inf before their end)")
    count, span = padding_span(source.T, np.concatenate(lengths)) if lengths else (0, "")
    if count:
        print(f"padded rows  {count}  (ending in NaN padding, {span}; each solved on its "
              "finite part)")
    for note in source.notes:
        print(f"note         {note}")
    if snr_parts:
        snr = np.concatenate(snr_parts)
        finite = snr[np.isfinite(snr)]
        if finite.size:
            q = np.percentile(finite, [0, 25, 50, 75, 100])
            print(f"SNR          min {q[0]:.2f}  q25 {q[1]:.2f}  median {q[2]:.2f}  "
                  f"q75 {q[3]:.2f}  max {q[4]:.2f}  ({finite.size} cells)")
        if finite.size < snr.size:
            print(f"SNR          {snr.size - finite.size} cells without a finite SNR (no "
                  "frame-to-frame noise, e.g. deconvolved activity that is mostly 0)")
    elif fs is None:
        print("SNR          needs the sampling rate (pass --fs HZ)")
    elif snr_error:
        print(f"SNR          unavailable ({snr_error})")
    return 0

# ----------------------------------------------------------------------------
# view (napari_catune._qt.launch: the only part importing Qt and napari)
# ----------------------------------------------------------------------------


#: the Qt bindings qtpy can use
_QT_BINDINGS = ("PyQt6", "PyQt5", "PySide6", "PySide2")


def _cmd_view(args) -> int:
    import importlib.util

    _check_view_archives(args.paths)
    missing = [m for m in ("napari", "qtpy") if importlib.util.find_spec(m) is None]
    if missing:
        raise CLIError(
            f"view needs napari and a Qt binding ({', '.join(missing)} not installed): "
            "pip install 'napari-catune[all]' (or napari-catune[napari] plus PyQt6/PyQt5)"
        )
    if not any(importlib.util.find_spec(m) is not None for m in _QT_BINDINGS):
        raise CLIError(
            "view needs a Qt binding for napari, and none is installed (PyQt6, PyQt5, "
            "PySide6 or PySide2): pip install 'napari-catune[qt6]' (or pip install PyQt6)"
        )
    if args.all_rois:  # the readers take no options: they read this variable
        from ._reader_pipelines import ALL_ROIS_ENV

        os.environ[ALL_ROIS_ENV] = "1"
    from ._qt.launch import run_view

    return run_view(args)


def _check_view_archives(paths) -> None:
    """An ``.npz`` that the traces reader does not take would fall through to
    napari's own reader ("Image data must have at least 2 dimensions"): the
    message ``info`` and ``estimate`` give instead (CLIError)."""
    from .sources import npz_layout

    for raw in paths or ():
        p = Path(raw)
        if p.suffix.lower() != ".npz" or not p.is_file():
            continue
        try:
            if npz_layout(p) is not None:
                continue
        except Exception:  # noqa: BLE001 - not an archive: open_input says why
            pass
        open_input(p)  # raises CLIError naming the problem
        raise CLIError(f"{p}: no traces found")  # (not reached: open_input refused it)


# ----------------------------------------------------------------------------
# argument parsing
# ----------------------------------------------------------------------------

_EPILOG = """\
examples:
  napari-catune view                         # the synthetic sample + tuner
  napari-catune view suite2p/plane0 movie.tif
  napari-catune view --screenshot shot.png   # headless: xvfb-run -a ...
  napari-catune estimate traces.npy --fs 30 -o params.json
  napari-catune deconvolve traces.npy --params params.json -o activity.npy
  napari-catune deconvolve run.hdf5 --params params.json -o results.npz
  napari-catune deconvolve rec.nwb --params params.json -o results.nwb
  napari-catune deconvolve big.npy --params p.json -o a.npy \\
      --scheduler tcp://host:8786
  napari-catune extract movie.h5 masks.tif -o traces.npz
  napari-catune info suite2p/plane0 --fs 30

exit codes: 0 success, 2 bad usage or input, 1 failure (e.g. disk full), 130
interrupted (Ctrl-C), 143 terminated (SIGTERM), 141 output pipe closed.
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions wrap to the terminal; indented lines (examples) stay as written."""

    def _fill_text(self, text, width, indent):
        paragraphs = []
        for para in text.split("\n\n"):
            lines = para.splitlines()
            if any(line.startswith((" ", "\t")) for line in lines[1:] or lines) \
                    or (lines and lines[0].rstrip().endswith(":")):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(textwrap.fill(" ".join(line.strip() for line in lines),
                                                width, initial_indent=indent,
                                                subsequent_indent=indent))
        return "\n\n".join(paragraphs)


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def _coefficient(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"takes an optional coefficient, not {text!r}: put --neuropil after the "
            "files (MOVIE LABELS --neuropil [COEF]) or write --neuropil=0.7") from None
    if not (math.isfinite(v) and v >= 0):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return v


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected WIDTHxHEIGHT, e.g. 1600x1000, got {text!r}"
        ) from None
    if w < 100 or h < 100:
        raise argparse.ArgumentTypeError(f"window size too small: {text!r}")
    return w, h


def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    fmt = HelpFormatter
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=fmt, epilog=_EPILOG,
        description="Tune calcium-imaging deconvolution in napari, then apply it to every "
        "ROI from the command line.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    talk = common.add_argument_group("messages")
    talk.add_argument("-v", "--verbose", action="count", default=0,
                      help="say more (chunk sizes, timings)")
    talk.add_argument("-q", "--quiet", action="store_true",
                      help="only warnings and errors; no progress bar")
    pipe = argparse.ArgumentParser(add_help=False)
    choose = pipe.add_argument_group("which traces of a pipeline output")
    choose.add_argument("--caiman-trace", choices=("auto", "C", "C+YrA", "F_dff"),
                        default="auto",
                        help="CaImAn: auto (default) = C + YrA (denoised plus residual, the "
                        "raw-like trace CaImAn's detrend_df_f uses) where the file stores YrA, "
                        "else C (a note says so); C = estimates/C alone (already denoised: fits "
                        "look perfect), C+YrA, or F_dff; recorded in info and the output's "
                        "sidecar")
    choose.add_argument("--series", metavar="NAME",
                        help="NWB: the RoiResponseSeries to read, by its path (e.g. "
                        "ophys/Fluorescence/RoiResponseSeries1) or a unique end of it (e.g. "
                        "RoiResponseSeries1, Fluorescence/plane1); default: the first raw "
                        "Fluorescence series; info lists the file's series")
    choose.add_argument("--all-rois", action="store_true",
                        help="every ROI, also those the pipeline rejected (default: only "
                        "cells: suite2p's iscell, an NWB table's iscell/keep column, "
                        "CaImAn's accepted components; the notes give the counts)")
    choose.add_argument("--only-cells", "--only-accepted", dest="only_cells",
                        action="store_true",
                        help="only cells/accepted components: the default (kept for old "
                        "scripts)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    inputs = (
        "INPUT is a traces .npy (optionally with its _metadata.json sidecar) or .npz, a "
        "zarr array, a suite2p plane folder, a Minian output folder, a CaImAn .hdf5 file "
        "or an NWB file."
    )

    v = sub.add_parser(
        "view", formatter_class=fmt, parents=[common], help="open napari with the CaTune tuner",
        description="Open napari with the CaTune tuner docked and the given files (or the "
        "synthetic sample recording) loaded. Needs the napari extra: "
        "pip install 'napari-catune[all]'.",
        epilog="examples:\n  napari-catune view\n  napari-catune view traces.npy\n"
        "  napari-catune view movie.tif rois.tif\n"
        "  xvfb-run -a napari-catune view --screenshot shot.png\n",
    )
    v.add_argument("paths", nargs="*", metavar="PATH", help="files or folders to open")
    v.add_argument("--all-rois", action="store_true",
                   help="open every ROI of a suite2p, CaImAn or NWB file, also the non-cells "
                   "(default: only cells; sets CATUNE_ALL_ROIS=1)")
    v.add_argument("--screenshot", metavar="PNG",
                   help="select the 3 most active ROIs, save a window screenshot, quit")
    v.add_argument("--timeout", type=_positive, default=120.0, metavar="S",
                   help="with --screenshot: give up (exit 1) after S seconds (default 120)")
    v.add_argument("--settle", type=_positive, default=1.0, metavar="S",
                   help="with --screenshot: seconds to let plots update before the shot")
    v.add_argument("--size", type=_size, default=None, metavar="WxH",
                   help="window size in pixels (default with --screenshot: 1500x950)")
    v.set_defaults(func=_cmd_view)

    d = sub.add_parser(
        "deconvolve", formatter_class=fmt, parents=[common, pipe],
        help="apply saved parameters to every trace",
        description="Deconvolve every trace of INPUT with the parameters of a CaTune export "
        "JSON. " + inputs + " .npy input is memory-mapped and processed a chunk of cells at "
        "a time; the output replaces OUT only when complete, and OUT's "
        "{stem}_metadata.json sidecar records the ids, sampling rate, parameters, the "
        "command and how many cells did not converge.",
        epilog="examples:\n"
        "  napari-catune deconvolve traces.npy --params params.json -o activity.npy\n"
        "  napari-catune deconvolve suite2p/plane0 --params p.json -o res.npz\n"
        "  napari-catune deconvolve rec.nwb --params p.json -o res.nwb --report run.png\n"
        "  napari-catune deconvolve big.npy --params p.json -o a.npy --chunk-cells 200\n"
        "  napari-catune deconvolve big.zarr --params p.json -o a.npy \\\n"
        "      --scheduler tcp://10.0.0.5:8786\n\n"
        "outputs:\n"
        "  .npy  activity (n, T), streamed; its _metadata.json holds ids, fs, parameters\n"
        "        (load_results reads both; a results file, not an input)\n"
        "  .npz  activity, fit, baseline, iterations, converged, skipped, roi_ids, fs,\n"
        "        params: napari_catune.load_results reads it; streamed\n"
        "  .nwb  a processing module 'catune' (needs pynwb); streamed\n"
        "  .csv  activity, one row per frame, plus _features.csv; streamed\n\n"
        "Rows with NaN/Inf stop the run unless --skip-bad; skipped rows are NaN in\n"
        "activity/fit/baseline and False in converged.",
    )
    d.add_argument("input", metavar="INPUT")
    d.add_argument("--params", required=True, metavar="PARAMS.json",
                   help="CaTune export JSON (schema 1.x)")
    d.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="results file: .npy (activity), .npz, .nwb or .csv")
    d.add_argument("--full", action="store_true",
                   help="require the fit, baseline and convergence in OUT (an .npz or .nwb; "
                   ".npz always has them)")
    d.add_argument("--chunk-cells", type=_count, default=None, metavar="N",
                   help="cells per chunk (default: ~32 MB of float64 traces)")
    d.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on a dask.distributed scheduler (e.g. tcp://host:8786); "
                   "workers read .npy/zarr input from the same path")
    d.add_argument("--scheduler-timeout", type=_positive, default=10.0, metavar="S",
                   help="with --scheduler: give up (exit 2) when the scheduler has not "
                   "connected and answered within S seconds (default 10)")
    d.add_argument("--fs", type=_positive, metavar="HZ",
                   help="the data's frame rate, overriding the one INPUT records (when that "
                   "is wrong or missing); must match PARAMS.json's rate")
    d.add_argument("--skip-bad", action="store_true",
                   help="skip rows with NaN/Inf (NaN in the output) instead of stopping")
    d.add_argument("--allow-pickle", action="store_true",
                   help="suite2p: read ops.npy/stat.npy (pickles; trusted folders only)")
    d.add_argument("--baseline", choices=BASELINE_MODES, default=None,
                   help="override the baseline model saved in PARAMS.json")
    d.add_argument("--drift-scale", type=_positive, default=None, metavar="S",
                   help="with the drift baseline: its time scale in seconds (how slowly the "
                   "baseline may change), overriding PARAMS.json")
    d.add_argument("--report", metavar="PNG",
                   help="also draw a summary (a few traces with fit and activity, the "
                   "parameters, counts) into PNG (.png/.pdf/.svg; needs matplotlib)")
    d.set_defaults(func=_cmd_deconvolve)

    e = sub.add_parser(
        "estimate", formatter_class=fmt, parents=[common, pipe], help="automatic starting parameters",
        description="Estimate starting parameters from the traces; print them and optionally "
        "save a CaTune export JSON. " + inputs,
        epilog="examples:\n  napari-catune estimate traces.npy --fs 30\n"
        "  napari-catune estimate run.hdf5 -o params.json\n",
    )
    e.add_argument("input", metavar="INPUT")
    e.add_argument("--fs", type=_positive, metavar="HZ",
                   help="sampling rate in Hz (required unless INPUT records it)")
    e.add_argument("-o", "--output", metavar="PARAMS.json", help="save the parameters here")
    e.add_argument("--max-cells", type=_count, default=500, metavar="N",
                   help="estimate from at most N evenly spaced cells (default 500)")
    e.add_argument("--allow-pickle", action="store_true",
                   help="suite2p: read ops.npy (a pickle) for the sampling rate")
    e.add_argument("--baseline", choices=BASELINE_MODES, default=None,
                   help="baseline model saved with the parameters (default: the package "
                   "default)")
    e.set_defaults(func=_cmd_estimate)

    x = sub.add_parser(
        "extract", formatter_class=fmt, parents=[common],
        help="movie + ROI labels -> traces",
        description="Average each ROI's pixels in every frame of MOVIE (a TIFF, HDF5 or "
        "zarr stack, or a 3-D .npy; HDF5 and zarr are read a block of frames at a time) "
        "and write the traces with their ROI ids and the frame rate (from --fs or the "
        "movie's metadata: ImageJ finterval/fps, OME TimeIncrement, an fs attribute). "
        "LABELS is a (height, width) integer image, 0 = background (e.g. cellpose "
        "masks saved as TIFF/PNG, or a .npy).",
        epilog="examples:\n  napari-catune extract movie.tif masks.tif -o traces.npz\n"
        "  napari-catune extract run.h5 rois.npy -o traces.npy --fs 30\n",
    )
    x.add_argument("movie", metavar="MOVIE")
    x.add_argument("labels", metavar="LABELS")
    x.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="traces .npz (traces, roi_ids, fs) or .npy (+ _metadata.json)")
    x.add_argument("--fs", type=_positive, metavar="HZ",
                   help="frame rate in Hz (default: what MOVIE records)")
    x.add_argument("--movie-key", metavar="KEY",
                   help="HDF5/zarr dataset holding the movie (default: found)")
    x.add_argument("--neuropil", nargs="?", const=0.7, default=None, type=_coefficient,
                   metavar="COEF",
                   help="subtract neuropil as suite2p does: traces = F - COEF*Fneu, Fneu the "
                   "mean of a surround that excludes every ROI pixel (default COEF 0.7); the "
                   ".npz keeps Fneu, and the exports record it")
    x.add_argument("--neuropil-inner-radius", type=int, default=2, metavar="PX",
                   help="pixels around each ROI left out of its neuropil (suite2p: 2)")
    x.add_argument("--neuropil-min-pixels", type=_count, default=350, metavar="N",
                   help="the surround grows until it holds more than N pixels (suite2p: 350)")
    x.set_defaults(func=_cmd_extract)

    i = sub.add_parser(
        "info", formatter_class=fmt, parents=[common, pipe], help="shape, sampling rate, NaN count, SNR",
        description="Summarise INPUT: shape, dtype, sampling rate, NaN count and an SNR "
        "summary. " + inputs + " A movie (TIFF, HDF5, zarr) gets its shape and frame rate.",
        epilog="examples:\n  napari-catune info traces.npy\n"
        "  napari-catune info suite2p/plane0 --fs 30\n"
        "  napari-catune info movie.tif\n",
    )
    i.add_argument("input", metavar="INPUT")
    i.add_argument("--fs", type=_positive, metavar="HZ", help="sampling rate, if INPUT lacks it")
    i.add_argument("--allow-pickle", action="store_true",
                   help="suite2p: read ops.npy (a pickle) for the sampling rate")
    i.set_defaults(func=_cmd_info)
    return parser


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM: unwinds like KeyboardInterrupt (Ctrl-C)."""


def _on_sigterm(signum, frame):
    # once: a second SIGTERM must not interrupt the clean-up the first one started
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


def _stdout_gone() -> None:
    """After EPIPE on stdout: point it at /dev/null so the exit flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


# commands that run the solver: a bad CATUNE_NUM_THREADS is a usage error
# there, told before any input is read
_SOLVING_COMMANDS = ("deconvolve", "estimate", "view")


def _check_threads_setting() -> None:
    from .solver import check_num_threads

    try:
        check_num_threads()
    except ValueError as e:
        raise CLIError(str(e)) from None


def main(argv=None) -> int:
    """Entry point of the ``napari-catune`` console script; returns the exit code.

    SIGTERM (sent by ``timeout``, SLURM, ``docker stop``) is handled like
    Ctrl-C: temporary files are removed, an earlier output is left as it
    was, and the exit code is 143 (128 + SIGTERM; Ctrl-C gives 130).  A
    closed output pipe (``info ... | head``) ends the run quietly with 141.
    """
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help/--version (0) or a usage error (2)
        return int(e.code) if isinstance(e.code, int) else (0 if e.code is None else 2)
    except BrokenPipeError:  # --help | head
        _stdout_gone()
        return 141
    args.argv = list(argv)
    previous = None
    if args.command != "view" and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    restore_logging = _setup_logging(args.verbose, args.quiet)
    old_showwarning = warnings.showwarning
    # library warnings (a parameter outside the sliders' range...) as one line each
    warnings.showwarning = lambda message, category, *a, **k: log.warning(str(message))
    try:
        if args.command in _SOLVING_COMMANDS:
            _check_threads_setting()
        return int(args.func(args))
    except CLIError as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 2
    except DiskFull as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 1
    except SchedulerLost as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        _stdout_gone()
        return 141
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"{PROG} {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except Exception as e:
        import traceback

        traceback.print_exc()
        print(f"{PROG} {args.command}: unexpected error: {type(e).__name__}: {e}",
              file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = old_showwarning
        restore_logging()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    # ``python -m napari_catune.cli``: run the imported module's main, so that the
    # exceptions raised by modules importing ``napari_catune.cli`` (CLIError from
    # _qt.launch, DiskFull) are the classes main catches, not __main__'s copies
    from napari_catune.cli import main as _main

    sys.exit(_main())
