"""The ``napari-catune`` command: view, deconvolve, estimate, info.

Exit codes: 0 success, 2 bad usage or bad input (one line on stderr naming
the problem, no traceback), 1 failure (a full disk: one line, "no space left
on FOLDER: need N GB"; anything unexpected: a traceback), 130 interrupted
(Ctrl-C), 143 terminated (SIGTERM).  Interrupted or terminated, a run
removes its temporary files and leaves an earlier output as it was; the
temporary files of a run killed outright (SIGKILL) carry its pid and are
removed, with a note, by the next run writing the same output.

``deconvolve`` streams: traces are read a chunk of cells at a time (``.npy``
memory-mapped, re-mapped per chunk so the mapped pages do not pile up in
the resident set), solved, and written into a temporary ``.npy`` in the
output folder that replaces the target only when everything succeeded.

An output (``-o``, ``--screenshot``) that is, or resolves to (symlinks, hard
links, ``..``), an input, a file of an input folder, or an input's
``_metadata.json`` sidecar is refused with exit 2 before anything is read.
"""

from __future__ import annotations

import argparse
import errno
import io
import json
import math
import os
import shutil
import signal
import sys
import threading
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ._atomic import publish, remove_stale_temps, resolve_target, temp_prefix
from .baseline import BASELINE_MODES
from .loaders import FS_KEYS as _FS_KEYS
from .loaders import ID_KEYS as _ID_KEYS
from .loaders import TRACE_KEYS as _TRACE_KEYS

PROG = "napari-catune"

# bytes of float64 traces per chunk when --chunk-cells is not given
_CHUNK_BYTES = 32 * 2**20


class CLIError(Exception):
    """Bad usage or bad input: reported in one line, exit code 2."""


# ----------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------


@dataclass
class Source:
    """Traces to process, readable a block of rows at a time."""

    path: str
    kind: str
    shape: tuple  # (n, T) (1-D input is one row)
    dtype: np.dtype
    fs: float | None
    roi_ids: np.ndarray
    read: Callable[[int, int], np.ndarray]
    one_d: bool = False
    # how a Dask worker reads rows itself: ("npy", path) / ("zarr", path, key)
    spec: tuple | None = None
    notes: list = field(default_factory=list)

    @property
    def n(self) -> int:
        return self.shape[0]

    @property
    def T(self) -> int:
        return self.shape[1]


def _read_spec_rows(spec, a: int, b: int) -> np.ndarray:
    """Rows a:b of an on-disk source, as a 2-D array (runs on Dask workers too)."""
    if spec[0] == "npy":
        mm = np.load(spec[1], mmap_mode="r", allow_pickle=False)
        try:
            # a copy, then drop the map: mapped pages would count as resident
            return np.array(mm.reshape(1, -1) if mm.ndim == 1 else mm[a:b])
        finally:
            del mm
    if spec[0] == "zarr":
        import zarr

        node = zarr.open(spec[1], mode="r")
        arr = node[spec[2]] if spec[2] is not None else node
        block = np.asarray(arr[a:b] if arr.ndim == 2 else arr[:])
        return block.reshape(1, -1) if block.ndim == 1 else block
    raise ValueError(f"unknown source spec {spec!r}")


def _read_rows_clean(spec, a: int, b: int, bad) -> np.ndarray:
    """Rows a:b with the listed (global) bad rows zeroed: solved, then discarded."""
    block = _read_spec_rows(spec, a, b)
    if len(bad):
        block = np.array(block, dtype=np.float64)
        block[np.asarray(bad) - a] = 0.0
    return block


def _check_array(shape, dtype, path: str):
    dtype = np.dtype(dtype)
    if dtype.hasobject or dtype.kind not in "biuf":
        raise CLIError(f"{path}: traces must be real numbers, got dtype {dtype}")
    if len(shape) not in (1, 2):
        raise CLIError(
            f"{path}: traces have shape {tuple(shape)} ({len(shape)}-D); expected (n_cells, "
            "n_frames) or (n_frames,) -- for a movie, extract ROI traces first"
        )
    T = shape[-1]
    n = 1 if len(shape) == 1 else shape[0]
    if n < 1 or T < 2:
        raise CLIError(f"{path}: traces have shape {tuple(shape)}; need >= 1 cell and >= 2 frames")


def _fs_value(value, where: str) -> float:
    try:
        fs = float(np.asarray(value).reshape(()))
    except (TypeError, ValueError):
        raise CLIError(f"{where}: sampling rate must be one number, got {value!r}") from None
    if not (math.isfinite(fs) and fs > 0):
        raise CLIError(f"{where}: sampling rate must be a positive number of Hz, got {fs}")
    return fs


def _ids_value(value, n: int, where: str) -> np.ndarray:
    ids = np.asarray(value).ravel()
    if ids.shape[0] != n or ids.dtype.kind not in "iuf":
        raise CLIError(f"{where}: roi ids must be {n} integers, got shape {ids.shape}")
    return ids.astype(np.int64)


def _sidecar_fs(path: Path):
    side = path.with_name(f"{path.stem}_metadata.json")
    if not side.is_file():
        return None, None
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise CLIError(f"{side}: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise CLIError(f"{side}: expected a JSON object")
    fs = meta.get("sampling_rate_hz")
    return (None if fs is None else _fs_value(fs, f"{side} 'sampling_rate_hz'")), meta


def _open_npy(path: Path) -> Source:
    try:
        mm = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e) or "bject" in str(e):
            raise CLIError(
                f"{path}: holds Python objects, not numbers (needs a numeric .npy)"
            ) from None
        raise CLIError(f"{path}: truncated or not a .npy file ({e})") from None
    except (OSError, EOFError) as e:
        raise CLIError(f"{path}: truncated or not a .npy file ({e})") from None
    shape, dtype = mm.shape, mm.dtype
    del mm
    _check_array(shape, dtype, str(path))
    fs, meta = _sidecar_fs(path)
    n = 1 if len(shape) == 1 else shape[0]
    ids = np.arange(1, n + 1)
    if meta and meta.get("roi_ids") is not None:
        ids = _ids_value(meta["roi_ids"], n, f"{path.stem}_metadata.json 'roi_ids'")
    spec = ("npy", str(path.resolve()))
    return Source(
        str(path), "npy", (n, shape[-1]), np.dtype(dtype), fs, ids,
        read=lambda a, b: _read_spec_rows(spec, a, b), one_d=len(shape) == 1, spec=spec,
    )


def _pick_key(keys, shapes: dict, path) -> str:
    key = next((k for k in _TRACE_KEYS if k in keys), None)
    if key is None:
        arrays = [k for k in keys if len(shapes[k]) in (1, 2)]
        if len(arrays) == 1:
            return arrays[0]
        raise CLIError(
            f"{path}: no traces found; name the array one of {', '.join(_TRACE_KEYS)} "
            f"(found: {', '.join(sorted(keys)) or 'nothing'})"
        )
    return key


def _open_npz(path: Path) -> Source:
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:
        raise CLIError(f"{path}: truncated or not an .npz archive ({e})") from None
    try:
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise CLIError(f"{path}: not an .npz archive")
        try:
            arrays = {k: z[k] for k in z.files}
        except ValueError as e:
            raise CLIError(f"{path}: holds Python objects or is damaged ({e})") from None
        except (OSError, EOFError, zipfile.BadZipFile) as e:
            raise CLIError(f"{path}: truncated or damaged ({e})") from None
    finally:
        z.close()
    key = _pick_key(arrays.keys(), {k: v.shape for k, v in arrays.items()}, path)
    arr = arrays[key]
    _check_array(arr.shape, arr.dtype, f"{path}[{key!r}]")
    fs_key = next((k for k in _FS_KEYS if k in arrays), None)
    fs = _fs_value(arrays[fs_key], f"{path}[{fs_key!r}]") if fs_key else None
    if fs is None:
        fs, _ = _sidecar_fs(path)
    one_d = arr.ndim == 1
    arr2 = arr.reshape(1, -1) if one_d else arr
    id_key = next((k for k in _ID_KEYS if k in arrays), None)
    ids = (
        _ids_value(arrays[id_key], arr2.shape[0], f"{path}[{id_key!r}]")
        if id_key else np.arange(1, arr2.shape[0] + 1)
    )
    return Source(
        str(path), "npz", arr2.shape, arr.dtype, fs, ids,
        read=lambda a, b: arr2[a:b], one_d=one_d,
    )


def _is_zarr(path: Path) -> bool:
    if path.suffix.lower() == ".zarr":
        return True
    return path.is_dir() and any(
        (path / m).is_file() for m in (".zarray", ".zgroup", "zarr.json")
    )


def _open_zarr(path: Path) -> Source:
    try:
        import zarr
    except ImportError:
        raise CLIError(
            f"{path}: reading zarr needs the zarr package: pip install 'napari-catune[all]'"
        ) from None
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as e:
        raise CLIError(f"{path}: not a readable zarr array or group ({e})") from None
    key = None
    fs = None
    if hasattr(node, "array_keys"):  # a group
        keys = list(node.array_keys())
        key = _pick_key(keys, {k: node[k].shape for k in keys}, path)
        arr = node[key]
        fs_key = next((k for k in _FS_KEYS if k in keys), None)
        if fs_key:
            fs = _fs_value(node[fs_key][...], f"{path}/{fs_key}")
        attrs = dict(node.attrs)
    else:
        arr = node
        attrs = {}
    attrs.update(dict(arr.attrs))
    if fs is None:
        v = next((attrs[k] for k in _FS_KEYS if k in attrs), None)
        fs = None if v is None else _fs_value(v, f"{path} attribute")
    _check_array(arr.shape, arr.dtype, str(path))
    one_d = arr.ndim == 1
    n = 1 if one_d else arr.shape[0]
    spec = ("zarr", str(path.resolve()), key)
    return Source(
        str(path), "zarr", (n, arr.shape[-1]), np.dtype(arr.dtype), fs, np.arange(1, n + 1),
        read=lambda a, b: _read_spec_rows(spec, a, b), one_d=one_d, spec=spec,
    )


def _from_pipeline(data, kind: str) -> Source:
    traces = data.traces
    _check_array(traces.shape, traces.dtype, data.source)
    return Source(
        data.source, kind, traces.shape, traces.dtype, data.fs, np.asarray(data.roi_ids),
        read=lambda a, b: traces[a:b], notes=list(getattr(data, "notes", [])),
    )


def open_input(path, *, allow_pickle: bool = False) -> Source:
    """Open INPUT for the CLI; CLIError (exit 2) for anything unreadable."""
    p = Path(path)
    if not p.exists():
        raise CLIError(f"input {p} does not exist")
    low = p.name.lower()
    try:
        if p.is_dir():
            if _is_zarr(p):
                return _open_zarr(p)
            from .loaders import find_suite2p_plane, load_suite2p

            if find_suite2p_plane(p) is not None or any(p.glob("plane*")):
                return _from_pipeline(load_suite2p(p, allow_pickle=allow_pickle), "suite2p")
            raise CLIError(
                f"{p} is a folder but neither a suite2p plane folder (F.npy, Fneu.npy) "
                "nor a zarr array"
            )
        if low.endswith(".npy"):
            return _open_npy(p)
        if low.endswith(".npz"):
            return _open_npz(p)
        if low.endswith((".hdf5", ".h5")):
            from .loaders import load_caiman

            return _from_pipeline(load_caiman(p), "caiman")
        if low.endswith(".nwb"):
            from .nwb import load_nwb

            return _from_pipeline(load_nwb(p), "NWB")
    except CLIError:
        raise
    except (ValueError, FileNotFoundError, ImportError, OSError) as e:
        raise CLIError(str(e)) from None
    raise CLIError(
        f"{p}: unsupported input; give a traces .npy/.npz, a suite2p plane folder, "
        "a CaImAn .hdf5 file, an NWB file (.nwb) or a zarr array"
    )


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
            raise DiskFull(folder, 4096, _free(folder)) from None
        raise CLIError(f"output folder {folder} is not writable ({e.strerror})") from None
    os.close(fd)
    os.unlink(probe)


# files of a suite2p plane folder that the CLI reads (never to be overwritten)
_SUITE2P_FILES = ("F.npy", "Fneu.npy", "iscell.npy", "stat.npy", "ops.npy", "spks.npy")


def _real(p: Path) -> str:
    return os.path.realpath(os.path.abspath(p))


def _protected(inputs) -> list[tuple[Path, str]]:
    """``(path, description)`` of every file the inputs consist of, sidecars included."""
    found: list[tuple[Path, str]] = []
    for raw in inputs:
        if raw is None:
            continue
        p = Path(raw)
        found.append((p, f"the input {p}"))
        for q in {p, Path(_real(p))}:
            if q.suffix.lower() in (".npy", ".npz"):
                side = q.with_name(f"{q.stem}_metadata.json")
                found.append((side, f"the sidecar {side.name} of the input {p}"))
        if p.is_dir() and not _is_zarr(p):
            from .loaders import find_suite2p_plane

            plane = find_suite2p_plane(p)
            for q in [plane] if plane is not None else sorted(p.glob("plane*")):
                for name in _SUITE2P_FILES:
                    found.append((q / name, f"the input {q / name}"))
    return found


def _inside(child: str, folder: str) -> bool:
    return child.startswith(folder.rstrip(os.sep) + os.sep)


def check_not_an_input(out: Path, *inputs, option: str = "-o") -> None:
    """Refuse (exit 2) an output that is, or resolves to, an input or its sidecar.

    Compares resolved paths (symlinks followed, ``..`` collapsed) and, when
    both exist, the files themselves (``os.path.samefile``: hard links).  An
    output inside a zarr input folder is refused too (it would land among
    the array's chunks).
    """
    real_out = _real(out)
    for path, what in _protected(inputs):
        same = real_out == _real(path)
        if not same and out.exists() and path.exists():
            try:
                same = os.path.samefile(out, path)
            except OSError:
                same = False
        if same:
            raise CLIError(
                f"output {out} ({option}) is {what}; writing it would destroy the input: "
                "choose another output file"
            )
    for raw in inputs:
        if raw is not None and Path(raw).is_dir() and _is_zarr(Path(raw)):
            if _inside(real_out, _real(Path(raw))):
                raise CLIError(
                    f"output {out} ({option}) is inside the zarr input {raw}; "
                    "choose a file outside it"
                )


class DiskFull(Exception):
    """The output's folder has (or had) too little space: one line, exit code 1."""

    def __init__(self, folder: Path, need: int, free: int | None = None):
        self.folder, self.need, self.free = folder, int(need), free
        extra = f", {_size_text(free)} free" if free is not None else ""
        super().__init__(f"no space left on {folder}: need {_size_text(need)}{extra}")


_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _size_text(nbytes: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= 0.1 * size or unit == "kB":
            value = nbytes / size
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    raise AssertionError  # pragma: no cover


def remove_stale_outputs(out: Path) -> None:
    """Remove temporary files of OUT left by runs that were killed; say so on stderr."""
    for path, pid, size in remove_stale_temps(resolve_target(out)):
        print(f"{PROG}: removed {path} ({_size_text(size)}), a temporary file left by an "
              f"interrupted run (process {pid}, no longer running)", file=sys.stderr)


def check_free_space(folder: Path, need: int) -> None:
    """Raise DiskFull (exit 1) when ``folder``'s file system has less than ``need`` bytes free."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # cannot tell (e.g. some network file systems): writing will tell
    if free < need:
        raise DiskFull(folder, need, free)


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


class _Writer:
    """Output rows streamed into temporary .npy files beside OUT; renamed at the end.

    The (n, T) fields (activity, and fit with ``full``) are written with plain
    file writes at their row offsets; the per-cell fields (baseline,
    iterations, converged, skipped) are small and kept in memory until
    :meth:`commit`.  ``bytes_needed`` is the peak disk use, checked up front.
    """

    FULL = ("activity", "fit", "baseline", "iterations", "converged", "skipped", "roi_ids")

    @staticmethod
    def bytes_needed(n: int, T: int, full: bool, per_sample_baseline: bool = False) -> int:
        big = 8 * n * T + 4096
        # --full: activity and fit (and a per-sample baseline) temp files, then
        # the archive built from them (each temp file is removed once copied in)
        n_big = 4 if per_sample_baseline else 3
        return n_big * big + 4 * 9 * n + 8192 if full else big

    def __init__(self, out: Path, n: int, T: int, *, full: bool, one_d: bool, roi_ids,
                 per_sample_baseline: bool = False):
        self.out, self.full, self.one_d = out, full, one_d
        # "drift" and "rolling" give a baseline per sample: (n, T) like activity
        self.BIG = ("activity", "fit", "baseline") if per_sample_baseline else ("activity", "fit")
        # temporary files beside the file that will be replaced (a symlink's target)
        target = resolve_target(out)
        self.folder = target.parent if str(target.parent) else Path(".")
        self.n, self.T = n, T
        self.tmp: dict[str, Path] = {}
        self.files: dict = {}
        self.offset: dict[str, int] = {}
        self.small: dict[str, np.ndarray] = {}
        if full:
            self.small = dict(
                baseline=np.full(n, np.nan), iterations=np.zeros(n, np.int64),
                converged=np.zeros(n, np.bool_), skipped=np.zeros(n, np.bool_),
                roi_ids=np.asarray(roi_ids, dtype=np.int64),
            )
            if per_sample_baseline:
                del self.small["baseline"]
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

    def write(self, a: int, b: int, **fields) -> None:
        for key, rows in fields.items():
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
                    for key in self.FULL:
                        if key in self.tmp:
                            zf.write(self.tmp[key], arcname=f"{key}.npy")
                            self.tmp.pop(key).unlink()  # its copy is in the archive
                        else:
                            arr = self.small[key]
                            if self.one_d and key != "roi_ids":
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


# ----------------------------------------------------------------------------
# progress
# ----------------------------------------------------------------------------


class Progress:
    """A plain-text progress bar on stderr (carriage returns on a terminal)."""

    def __init__(self, total: int, label: str, unit: str = "cells", enabled: bool = True):
        self.total, self.label, self.unit = max(1, int(total)), label, unit
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.last_decile = -1
        self.done = 0

    def update(self, done: int) -> None:
        self.done = done
        if not self.enabled:
            return
        frac = min(1.0, done / self.total)
        decile = int(frac * 10)
        if not self.tty and decile == self.last_decile and done < self.total:
            return
        self.last_decile = decile
        width = 30
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        line = (
            f"{self.label} [{bar}] {frac * 100:5.1f}% {done}/{self.total} {self.unit} "
            f"{time.monotonic() - self.t0:7.1f} s"
        )
        sys.stderr.write(("\r" + line) if self.tty else (line + "\n"))
        if self.tty and done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _warn(msg: str) -> None:
    print(f"{PROG}: warning: {msg}", file=sys.stderr)


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


def _chunk_rows(source: Source, chunk_cells: int | None) -> int:
    if chunk_cells is not None:
        if chunk_cells < 1:
            raise CLIError(f"--chunk-cells must be >= 1, got {chunk_cells}")
        return chunk_cells
    return max(1, min(source.n, _CHUNK_BYTES // (8 * source.T)))


def find_bad_rows(source: Source, chunk: int) -> np.ndarray:
    """Indices of rows holding NaN or Inf (one streaming pass)."""
    bad = []
    for a in range(0, source.n, chunk):
        b = min(source.n, a + chunk)
        block = source.read(a, b)
        if block.dtype.kind == "f":
            ok = np.isfinite(block).all(axis=1)
            bad.extend((a + np.flatnonzero(~ok)).tolist())
    return np.asarray(bad, dtype=np.int64)


def _list_rows(rows, limit: int = 20) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    return shown + (f", ... ({len(rows) - limit} more)" if len(rows) > limit else "")


def _cmd_deconvolve(args) -> int:
    params = _load_params_or_fail(args.params)
    if args.baseline is not None and args.baseline != params.baseline:
        _warn(f"--baseline {args.baseline} overrides the {params.baseline!r} baseline of {args.params}")
        params = params.replace(baseline=args.baseline)
    out = Path(args.output)
    suffix = out.suffix.lower()
    if args.full and suffix != ".npz":
        raise CLIError(f"with --full the output is an .npz archive; got {out}")
    if not args.full and suffix != ".npy":
        raise CLIError(f"the output is an .npy file of activity (or .npz with --full); got {out}")
    check_output_folder(out)
    check_not_an_input(out, args.input, args.params)
    remove_stale_outputs(out)  # before the free-space check: they may be what fills the disk
    source = open_input(args.input, allow_pickle=args.allow_pickle)
    if source.fs is not None and not math.isclose(source.fs, params.fs, rel_tol=1e-6):
        raise CLIError(
            f"sampling rate mismatch: {args.params} was tuned at {params.fs:g} Hz but "
            f"{args.input} is recorded at {source.fs:g} Hz; re-tune or re-save the "
            "parameters at the data's rate"
        )
    folder = resolve_target(out).parent
    per_sample = _per_sample_baseline(params)
    need = _Writer.bytes_needed(source.n, source.T, args.full, per_sample)
    check_free_space(folder, need)  # before any work
    chunk = _chunk_rows(source, args.chunk_cells)
    bad = find_bad_rows(source, chunk)
    if bad.size:
        where = (f"{args.input}: {bad.size} of {source.n} rows hold NaN or Inf "
                 f"(rows {_list_rows(bad)})")
        if not args.skip_bad:
            raise CLIError(f"{where}; fix them or pass --skip-bad to skip those rows")
        if bad.size == source.n:
            raise CLIError(f"{where}: nothing left to deconvolve")
        _warn(f"{where}; skipped: their output rows are NaN (converged False)")
    client = writer = None
    try:
        if args.scheduler:
            client = _connect(args.scheduler, args.scheduler_timeout)
        writer = _Writer(out, source.n, source.T, full=args.full, one_d=source.one_d,
                         roi_ids=source.roi_ids, per_sample_baseline=per_sample)
        progress = Progress(source.n, "deconvolve", enabled=not args.quiet)
        progress.update(0)
        if client is not None:
            _run_distributed(client, source, params, chunk, bad, writer, progress, args.full)
        else:
            _run_local(source, params, chunk, bad, writer, progress, args.full)
        writer.commit()
    except OSError as e:
        if writer is not None:
            writer.abort()
        if e.errno in _NO_SPACE:
            raise DiskFull(folder, need, _free(folder)) from None
        raise
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        if client is not None:
            client.close()
    if not args.quiet:
        kept = source.n - bad.size
        print(f"{PROG}: wrote {out} ({kept} of {source.n} cells deconvolved"
              f"{f', {bad.size} skipped' if bad.size else ''})", file=sys.stderr)
    return 0


def _per_sample_baseline(params) -> bool:
    """Whether the solve gives a baseline per sample ("drift", "rolling")."""
    return str(params.baseline) in ("drift", "rolling")


def _fill(a: int, b: int, bad: np.ndarray, T: int, res, ok: np.ndarray,
          per_sample: bool = False):
    """Per-chunk output fields, NaN/False/0 on the skipped rows."""
    n = b - a
    act = np.full((n, T), np.nan)
    fit = np.full((n, T), np.nan)
    base = np.full((n, T) if per_sample else n, np.nan)
    iters = np.zeros(n, dtype=np.int64)
    conv = np.zeros(n, dtype=bool)
    if res is not None:
        act[ok], fit[ok], base[ok] = res[0], res[1], res[2]
        iters[ok], conv[ok] = res[3], res[4]
    return dict(activity=act, fit=fit, baseline=base, iterations=iters, converged=conv,
                skipped=~ok)


def _run_local(source, params, chunk, bad, writer, progress, full) -> None:
    from .solver import run_deconvolution_full

    bad_set = np.zeros(source.n, dtype=bool)
    bad_set[bad] = True
    for a in range(0, source.n, chunk):
        b = min(source.n, a + chunk)
        ok = ~bad_set[a:b]
        res = None
        if ok.any():
            block = source.read(a, b)
            block = block[ok] if not ok.all() else block
            r = run_deconvolution_full(
                block, params.fs, params.tau_rise, params.tau_decay, params.lam,
                **params.solver_kwargs(),
            )
            del block
            res = (r.activity, r.reconvolution, r.baseline, r.iterations, r.converged)
        if ok.all() and res is not None:
            fields = dict(activity=res[0])
            if full:
                fields.update(fit=res[1], baseline=res[2], iterations=res[3],
                              converged=res[4], skipped=~ok)
        else:
            fields = _fill(a, b, bad, source.T, res, ok, "baseline" in writer.BIG)
        writer.write(a, b, **fields)
        progress.update(b)


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


def _connect(address: str, timeout: float = 10.0):
    try:
        from distributed import Client
    except ImportError:
        raise CLIError(
            "--scheduler needs dask.distributed: pip install 'napari-catune[distributed]'"
        ) from None
    _probe_scheduler(address, timeout)
    t0 = time.monotonic()
    try:
        return Client(address, timeout=f"{timeout}s")
    except (OSError, TimeoutError, ValueError) as e:
        raise CLIError(
            f"no Dask scheduler answered at {address}: could not connect within "
            f"{time.monotonic() - t0:.0f} s ({type(e).__name__}: {e})"
        ) from None


def _run_distributed(client, source, params, chunk, bad, writer, progress, full) -> None:
    import dask
    import dask.array as da

    from .solver import run_deconvolution, run_deconvolution_full

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
        lazy = [run_deconvolution(*args, **kw)]
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    window = 2 * n_workers
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
            fields = _fill(a, b, bad, T, res, ok, "baseline" in writer.BIG)
        else:
            act = np.asarray(parts[0])
            act[~ok] = np.nan
            fields = dict(activity=act)
        writer.write(a, b, **fields)
        progress.update(b)


# ----------------------------------------------------------------------------
# estimate / info
# ----------------------------------------------------------------------------


def _finite_rows(source: Source, chunk: int, limit: int | None = None):
    """Up to ``limit`` evenly spaced finite rows as float64, and their indices."""
    idx = np.arange(source.n)
    if limit is not None and source.n > limit:
        idx = np.unique(np.linspace(0, source.n - 1, limit).round().astype(np.int64))
    rows, kept = [], []
    for a in range(0, source.n, chunk):
        b = min(source.n, a + chunk)
        want = idx[(idx >= a) & (idx < b)]
        if not want.size:
            continue
        block = np.asarray(source.read(a, b), dtype=np.float64)[want - a]
        ok = np.isfinite(block).all(axis=1)
        rows.append(block[ok])
        kept.append(want[ok])
    if not rows:
        return np.empty((0, source.T)), np.empty(0, dtype=np.int64)
    return np.concatenate(rows), np.concatenate(kept)


def _cmd_estimate(args) -> int:
    out = Path(args.output) if args.output else None
    if out is not None:
        if out.suffix.lower() != ".json":
            raise CLIError(f"the parameters file must end in .json; got {out}")
        check_output_folder(out)
        check_not_an_input(out, args.input)
        remove_stale_outputs(out)
    source = open_input(args.input, allow_pickle=args.allow_pickle)
    fs = args.fs if args.fs is not None else source.fs
    if fs is None:
        raise CLIError(f"{args.input} does not record its sampling rate; pass --fs HZ")
    fs = _fs_value(fs, "--fs")
    if args.fs is not None and source.fs is not None and not math.isclose(args.fs, source.fs):
        _warn(f"--fs {args.fs:g} Hz overrides the {source.fs:g} Hz recorded in {args.input}")
    chunk = _chunk_rows(source, None)
    traces, rows = _finite_rows(source, chunk, limit=args.max_cells)
    if traces.shape[0] == 0:
        raise CLIError(f"{args.input}: every row holds NaN or Inf; nothing to estimate from")
    if rows.size < min(source.n, args.max_cells):
        _warn(f"{min(source.n, args.max_cells) - rows.size} rows with NaN or Inf left out")
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
        raise CLIError(f"{args.input}: {e}") from None
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
            })
        except OSError as e:
            if e.errno in _NO_SPACE:
                folder = resolve_target(out).parent
                # a parameter file is ~1.5 kB: one file-system block
                raise DiskFull(folder, 4096, _free(folder)) from None
            raise
        print(f"saved {out}")
    return 0


def _cmd_info(args) -> int:
    source = open_input(args.input, allow_pickle=args.allow_pickle)
    fs = args.fs if args.fs is not None else source.fs
    chunk = _chunk_rows(source, None)
    nan_values = nan_rows = inf_values = 0
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
            ok = ~(nan | inf).any(axis=1)
            nan_rows += int((~ok).sum())
            block = block[ok]
        if fs is not None and roi_snr is not None and block.shape[0]:
            snr_parts.append(np.asarray(roi_snr(np.asarray(block, dtype=np.float64), fs)))
    shape = (source.T,) if source.one_d else source.shape
    print(f"input        {source.path} ({source.kind})")
    print(f"shape        {shape}  " + ("(frames)" if source.one_d else "(cells, frames)"))
    print(f"dtype        {source.dtype}")
    if fs is not None:
        print(f"fs           {fs:g} Hz  (duration {source.T / fs:.1f} s)")
    else:
        print("fs           unknown (pass --fs HZ)")
    ids = source.roi_ids
    print(f"roi ids      {int(ids.min())}..{int(ids.max())}" if ids.size else "roi ids      none")
    print(f"NaN values   {nan_values}" + (f"  (Inf values {inf_values})" if inf_values else ""))
    print(f"bad rows     {nan_rows}  (rows with NaN or Inf)")
    for note in source.notes:
        print(f"note         {note}")
    if snr_parts:
        snr = np.concatenate(snr_parts)
        q = np.percentile(snr, [0, 25, 50, 75, 100])
        print(f"SNR          min {q[0]:.2f}  q25 {q[1]:.2f}  median {q[2]:.2f}  "
              f"q75 {q[3]:.2f}  max {q[4]:.2f}  ({snr.size} cells)")
    elif fs is None:
        print("SNR          needs the sampling rate (pass --fs HZ)")
    elif snr_error:
        print(f"SNR          unavailable ({snr_error})")
    return 0


# ----------------------------------------------------------------------------
# view
# ----------------------------------------------------------------------------


def _most_active(viewer, k: int = 3) -> list[int]:
    """The ids of the k ROIs with the highest SNR in the viewer's CaTune layers."""
    import napari

    for layer in viewer.layers:
        if not isinstance(layer, napari.layers.Labels):
            continue
        meta = layer.metadata.get("catune", {}) if isinstance(layer.metadata, dict) else {}
        traces = meta.get("traces")
        ids = meta.get("roi_ids")
        fs = meta.get("fs")
        if traces is None:
            movie = next(
                (im for im in viewer.layers if isinstance(im, napari.layers.Image)
                 and im.data.ndim == 3 and im.data.shape[1:] == layer.data.shape),
                None,
            )
            if movie is None:
                continue
            from .traces import extract_traces

            traces, ids = extract_traces(movie.data, layer.data)
            fs = fs or (movie.metadata.get("catune", {}) or {}).get("fs")
        traces = np.asarray(traces, dtype=np.float64)
        ids = np.arange(1, traces.shape[0] + 1) if ids is None else np.asarray(ids)
        try:
            from .traces import roi_snr

            score = np.asarray(roi_snr(traces, fs or 30.0))
        except ImportError:
            mad = np.median(np.abs(np.diff(traces, axis=1)), axis=1) + 1e-12
            score = (np.percentile(traces, 99, axis=1) - np.median(traces, axis=1)) / mad
        score = np.where(np.isfinite(score), score, -np.inf)
        order = np.argsort(-score, kind="stable")[:k]
        return [int(ids[i]) for i in order]
    return []


def _close_toasts(viewer) -> None:
    """Close napari's notification pop-ups so they do not cover the screenshot."""
    try:
        from napari._qt.dialogs.qt_notification import NapariQtNotification

        for w in viewer.window._qt_window.findChildren(NapariQtNotification):
            w.close()
    except Exception:  # private API; a toast in the picture is harmless
        pass


def _ours(path: str) -> bool:
    low = path.lower().rstrip("/")
    if low.endswith((".npy", ".npz", ".json", ".hdf5", ".h5")):
        return True
    from .loaders import find_suite2p_plane

    return find_suite2p_plane(path) is not None


def _open_path(viewer, path: str) -> None:
    """Open with our readers when the file looks like ours, else let napari choose."""
    if _ours(path):
        try:
            viewer.open(path, plugin=PROG)
            return
        except ValueError as e:
            # a file our readers say is not theirs (e.g. an image stack in .npy)
            msg = str(e).lower()
            if "refused the file" not in msg and "no compatible" not in msg:
                raise
    viewer.open(path)


def _cmd_view(args) -> int:
    for p in args.paths:
        if not Path(p).exists():
            raise CLIError(f"{p} does not exist")
    if args.screenshot:
        shot = Path(args.screenshot)
        if shot.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"):
            raise CLIError(f"--screenshot needs an image file name (.png), got {shot}")
        check_output_folder(shot)
        check_not_an_input(shot, *args.paths, option="--screenshot")
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    state = {"code": 0}
    viewer = napari.Viewer(title="napari-catune")
    size = args.size or ((1500, 950) if args.screenshot else None)
    if size:
        viewer.window.resize(*size)
    _dock, widget = viewer.window.add_plugin_dock_widget(PROG, "CaTune tuner")
    try:
        if args.paths:
            for p in args.paths:
                _open_path(viewer, p)
        else:
            viewer.open_sample(PROG, "synthetic")
    except Exception as e:
        viewer.close()
        raise CLIError(f"could not open {' '.join(args.paths) or 'the sample'}: {e}") from None
    print(f"{PROG} view: layers: {', '.join(layer.name for layer in viewer.layers)}",
          file=sys.stderr)

    def finish(code: int, msg: str | None = None) -> None:
        if msg:
            print(f"{PROG} view: {msg}", file=sys.stderr)
        state["code"] = code
        try:
            viewer.close()
        finally:
            app = QApplication.instance()
            if app is not None:
                QTimer.singleShot(0, app.quit)

    if args.screenshot:
        def shoot():
            try:
                viewer.screenshot(str(shot), canvas_only=False)
            except Exception as e:
                finish(1, f"screenshot failed: {type(e).__name__}: {e}")
                return
            print(f"saved {shot}", file=sys.stderr)
            finish(0)

        def when_idle():
            # the tuner solves off the GUI thread: wait until its plots are drawn
            if not getattr(widget, "idle", True):
                QTimer.singleShot(100, when_idle)
                return
            _close_toasts(viewer)
            QTimer.singleShot(int(args.settle * 1000), shoot)

        def select():
            try:
                ids = _most_active(viewer, 3)
                if ids:
                    ids = widget.select_rois(ids)
                print(f"{PROG} view: selected ROIs: {', '.join(map(str, ids)) or 'none'}",
                      file=sys.stderr)
            except Exception as e:
                finish(1, f"selecting ROIs failed: {type(e).__name__}: {e}")
                return
            QTimer.singleShot(200, when_idle)

        QTimer.singleShot(200, select)
        QTimer.singleShot(
            int(args.timeout * 1000),
            lambda: finish(1, f"timed out after {args.timeout:g} s without a screenshot"),
        )
    napari.run()
    return state["code"]


# ----------------------------------------------------------------------------
# argument parsing
# ----------------------------------------------------------------------------

_EPILOG = """\
examples:
  napari-catune view                                  # the synthetic sample + tuner
  napari-catune view suite2p/plane0 movie.tif
  napari-catune view --screenshot shot.png            # headless: xvfb-run -a napari-catune view ...
  napari-catune estimate traces.npy --fs 30 -o params.json
  napari-catune deconvolve traces.npy --params params.json -o activity.npy
  napari-catune deconvolve run.hdf5 --params params.json -o results.npz --full
  napari-catune deconvolve traces.npy --params params.json -o a.npy --scheduler tcp://host:8786
  napari-catune info suite2p/plane0 --fs 30

exit codes: 0 success, 2 bad usage or input, 1 failure (e.g. disk full),
130 interrupted (Ctrl-C), 143 terminated (SIGTERM)
"""


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
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

    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=fmt, epilog=_EPILOG,
        description="Tune calcium-imaging deconvolution in napari, then apply it to every ROI.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    inputs = (
        "INPUT: traces .npy (optionally with its _metadata.json sidecar) or .npz, "
        "a suite2p plane folder, a CaImAn .hdf5 file, or a zarr array"
    )

    v = sub.add_parser(
        "view", formatter_class=fmt, help="open napari with the CaTune tuner",
        description="Open napari with the CaTune tuner docked and the given files "
        "(or the synthetic sample recording) loaded.",
        epilog="examples:\n  napari-catune view\n  napari-catune view traces.npy\n"
        "  napari-catune view movie.tif rois.tif\n"
        "  xvfb-run -a napari-catune view --screenshot shot.png\n",
    )
    v.add_argument("paths", nargs="*", metavar="PATH", help="files or folders to open")
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
        "deconvolve", formatter_class=fmt, help="apply saved parameters to every trace",
        description="Deconvolve every trace of INPUT with the parameters of a CaTune "
        "export JSON.  " + inputs + ".  .npy input is memory-mapped and processed a "
        "chunk of cells at a time; the output replaces OUT only when complete.",
        epilog="examples:\n"
        "  napari-catune deconvolve traces.npy --params params.json -o activity.npy\n"
        "  napari-catune deconvolve suite2p/plane0 --params p.json -o res.npz --full\n"
        "  napari-catune deconvolve big.npy --params p.json -o a.npy --chunk-cells 200\n"
        "  napari-catune deconvolve big.zarr --params p.json -o a.npy "
        "--scheduler tcp://10.0.0.5:8786\n\n"
        "--full writes an .npz with activity, fit, baseline, iterations, converged,\n"
        "skipped and roi_ids.  Rows with NaN/Inf stop the run unless --skip-bad;\n"
        "skipped rows are NaN in activity/fit/baseline and False in converged.",
    )
    d.add_argument("input", metavar="INPUT")
    d.add_argument("--params", required=True, metavar="PARAMS.json",
                   help="CaTune export JSON (schema 1.x)")
    d.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="activity .npy, or .npz with --full")
    d.add_argument("--full", action="store_true",
                   help="also write the fit, baseline, iterations and convergence (.npz)")
    d.add_argument("--chunk-cells", type=_count, default=None, metavar="N",
                   help="cells per chunk (default: ~32 MB of float64 traces)")
    d.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on a dask.distributed scheduler (e.g. tcp://host:8786); "
                   "workers read .npy/zarr input from the same path")
    d.add_argument("--scheduler-timeout", type=_positive, default=10.0, metavar="S",
                   help="with --scheduler: give up (exit 2) when the scheduler has not "
                   "connected and answered within S seconds (default 10)")
    d.add_argument("--skip-bad", action="store_true",
                   help="skip rows with NaN/Inf (NaN in the output) instead of stopping")
    d.add_argument("--allow-pickle", action="store_true",
                   help="suite2p: read ops.npy/stat.npy (pickles; trusted folders only)")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.add_argument("--baseline", choices=BASELINE_MODES, default=None,
                   help="override the baseline model saved in PARAMS.json")
    d.set_defaults(func=_cmd_deconvolve)

    e = sub.add_parser(
        "estimate", formatter_class=fmt, help="automatic starting parameters",
        description="Estimate starting parameters from the traces; print them and "
        "optionally save a CaTune export JSON.  " + inputs + ".",
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
                   help="baseline model saved with the parameters (default: %(default)s = "
                   "the package default)")
    e.set_defaults(func=_cmd_estimate)

    i = sub.add_parser(
        "info", formatter_class=fmt, help="shape, sampling rate, NaN count, SNR",
        description="Summarise INPUT: shape, dtype, sampling rate, NaN count and an "
        "SNR summary.  " + inputs + ".",
        epilog="examples:\n  napari-catune info traces.npy\n"
        "  napari-catune info suite2p/plane0 --fs 30\n",
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


def main(argv=None) -> int:
    """Entry point of the ``napari-catune`` console script; returns the exit code.

    SIGTERM (sent by ``timeout``, SLURM, ``docker stop``) is handled like
    Ctrl-C: temporary files are removed, an earlier output is left as it
    was, and the exit code is 143 (128 + SIGTERM; Ctrl-C gives 130).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help/--version (0) or a usage error (2)
        return int(e.code) if isinstance(e.code, int) else (0 if e.code is None else 2)
    previous = None
    if args.command != "view" and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args))
    except CLIError as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 2
    except DiskFull as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 1
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
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
