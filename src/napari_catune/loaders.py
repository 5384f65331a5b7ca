"""Read the outputs of the pipelines people already run: suite2p and CaImAn.

Both loaders return a :class:`PipelineData` (traces, sampling rate, ROI ids,
a label image of the footprints, a background image).  No Qt, no napari:
the napari readers, the command line and scripts share them.

suite2p writes ``F.npy``, ``Fneu.npy`` and ``iscell.npy`` as plain arrays
(read with ``allow_pickle=False``) and ``stat.npy`` / ``ops.npy`` as pickles
(a list of dicts, a dict): loading a pickle can run code, so those two are
read only when the caller passes ``allow_pickle=True``.

CaImAn's ``CNMF.save`` writes an HDF5 file (``estimates/...``,
``params/data/...``) with the footprint matrix ``estimates/A`` stored as
a sparse CSC matrix (``data``, ``indices``, ``indptr``, ``shape``) over
pixels flattened in Fortran order; ``None`` values are stored as the string
``"NoneType"``.

Pixel indices from files (CaImAn's sparse ``A``, suite2p's ``ypix``/``xpix``)
are validated completely before anything indexes memory with them: scipy
does not range-check ``indices``/``indptr`` and a crafted file would
otherwise corrupt the heap.  A bad file gives a ValueError naming the file
and the field.  h5py is an optional extra (``napari-catune[caiman]``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["PipelineData", "load_suite2p", "load_caiman", "tile_labels", "find_suite2p_plane"]

# array names tried in an .npz or a zarr group, in order (ours, suite2p,
# CaImAn, common names); shared by the CLI and the napari trace reader
TRACE_KEYS = ("traces", "F", "C", "dff", "dFF", "data")
FS_KEYS = ("fs", "sampling_rate_hz", "fr", "frame_rate")
ID_KEYS = ("roi_ids", "ids", "cell_ids")

CAIMAN_EXTRA_MESSAGE = (
    "reading CaImAn HDF5 files needs h5py; install it with "
    "pip install 'napari-catune[caiman]'"
)


@dataclass
class PipelineData:
    """Traces and footprints read from a pipeline's output.

    Attributes
    ----------
    traces : (n, T) float64
    fs : float or None
        Sampling rate in Hz when the files record it.
    roi_ids : (n,) int
        The label value of each trace row (1-based: the pipeline's ROI index + 1).
    labels : (Y, X) int32 or None
        0 = background, value = ROI id; None when footprints were not read.
    mean_image : (Y, X) float or None
        suite2p's mean image, or CaImAn's correlation image ``Cn``.
    source : str
        The file or folder read.
    kind : str
        What the traces are (e.g. ``"F - 0.7*Fneu"``, ``"C + YrA"``).
    """

    traces: np.ndarray
    fs: float | None
    roi_ids: np.ndarray
    labels: np.ndarray | None
    mean_image: np.ndarray | None
    source: str
    kind: str = ""
    notes: list = field(default_factory=list)


# ---------------------------------------------------------------- tiles


def tile_labels(n: int, tile: int = 16, gap: int = 2, ids=None) -> np.ndarray:
    """A label image of ``n`` square tiles in a near-square grid.

    For traces without footprints: one clickable tile per ROI, row-major,
    tile ``i`` at grid row ``i // ncols``, column ``i % ncols`` with
    ``ncols = ceil(sqrt(n))``; ``gap`` background pixels between tiles and
    around the edge.  Tile ``i`` holds ``ids[i]`` (default ``i + 1``).
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"number of tiles must be >= 0, got {n}")
    if tile < 1 or gap < 0:
        raise ValueError(f"tile must be >= 1 and gap >= 0, got tile={tile}, gap={gap}")
    ids = np.arange(1, n + 1) if ids is None else np.asarray(ids).ravel()
    if ids.size != n:
        raise ValueError(f"got {ids.size} ids for {n} tiles")
    ncols = max(1, math.ceil(math.sqrt(n)))
    nrows = max(1, math.ceil(n / ncols))
    step = tile + gap
    out = np.zeros((gap + nrows * step, gap + ncols * step), dtype=np.int32)
    for i in range(n):
        r, c = divmod(i, ncols)
        y0, x0 = gap + r * step, gap + c * step
        out[y0 : y0 + tile, x0 : x0 + tile] = ids[i]
    return out


# ---------------------------------------------------------------- suite2p


def find_suite2p_plane(path) -> Path | None:
    """The plane folder holding ``F.npy`` + ``Fneu.npy`` for ``path``, or None.

    ``path`` may be the plane folder itself, or a ``suite2p`` folder with a
    single ``plane*`` subfolder (several planes: None, pick one explicitly).
    """
    p = Path(path)
    if not p.is_dir():
        return None
    if (p / "F.npy").is_file() and (p / "Fneu.npy").is_file():
        return p
    planes = sorted(
        q for q in p.glob("plane*") if (q / "F.npy").is_file() and (q / "Fneu.npy").is_file()
    )
    return planes[0] if len(planes) == 1 else None


def _resolve_plane(plane_dir) -> Path:
    p = Path(plane_dir)
    if not p.exists():
        raise FileNotFoundError(f"suite2p folder {p} does not exist")
    if not p.is_dir():
        raise ValueError(f"{p} is not a folder; pass a suite2p plane folder (e.g. suite2p/plane0)")
    found = find_suite2p_plane(p)
    if found is not None:
        return found
    planes = sorted(q.name for q in p.glob("plane*") if q.is_dir())
    if len(planes) > 1:
        raise ValueError(
            f"{p} holds {len(planes)} planes ({', '.join(planes)}); pass one plane folder, "
            f"e.g. {p / planes[0]}"
        )
    missing = [f for f in ("F.npy", "Fneu.npy") if not (p / f).is_file()]
    raise FileNotFoundError(
        f"{p} is not a suite2p plane folder: {' and '.join(missing)} not found"
    )


def _load_plain(path: Path, mmap: bool = False) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except ValueError as e:
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            raise ValueError(
                f"{path} holds Python objects, not a numeric array (expected a "
                "suite2p array file)"
            ) from None
        raise ValueError(f"{path} is truncated or not a .npy file ({e})") from None
    except (OSError, EOFError) as e:
        raise ValueError(f"{path} is truncated or not a .npy file ({e})") from None
    if isinstance(arr, np.lib.npyio.NpzFile):
        arr.close()
        raise ValueError(f"{path} is an .npz archive, expected a single .npy array")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{path} has dtype {arr.dtype}; expected numbers")
    return arr


def _load_pickle(path: Path, what: str):
    try:
        obj = np.load(path, allow_pickle=True)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path} is truncated or not a suite2p {what} file ({e})") from None
    except Exception as e:  # unpickling errors come in many types
        raise ValueError(f"{path} is truncated or not a suite2p {what} file ({e})") from None
    return obj


def _int_array(value, where: str) -> np.ndarray:
    """``value`` as a 1-D int64 array, or a ValueError naming ``where``.

    Integer arrays and floats holding whole numbers are accepted (some tools
    round-trip pixel lists through float); anything else is refused before
    it can be used as an index.
    """
    try:
        arr = np.asarray(value)
    except Exception as e:  # ragged or exotic objects
        raise ValueError(f"{where} is not an array of integers ({e})") from None
    arr = arr.ravel()
    if arr.dtype.kind in "iu":
        if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{where} holds values above {np.iinfo(np.int64).max}")
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or (arr.size and np.abs(arr).max() >= 2.0**62):
            raise ValueError(f"{where} holds NaN, Inf or huge values; expected pixel indices")
        if not (arr == np.round(arr)).all():
            raise ValueError(f"{where} holds non-integer values; expected pixel indices")
        return arr.astype(np.int64)
    if arr.dtype.kind == "b" and arr.size == 0:
        return arr.astype(np.int64)
    raise ValueError(f"{where} has dtype {arr.dtype}; expected integer pixel indices")


def _check_range(arr: np.ndarray, size: int, where: str, axis: str) -> None:
    if arr.size and (arr.min() < 0 or arr.max() >= size):
        bad = arr[(arr < 0) | (arr >= size)]
        raise ValueError(
            f"{where} holds {bad.size} value(s) outside 0..{size - 1} (e.g. {int(bad[0])}); "
            f"the {axis} has {size} pixels"
        )


def _suite2p_rois(stat, stat_path: Path) -> list:
    """Validated ``(ypix, xpix, overlap-or-None)`` of every ROI in ``stat``.

    Checks keys, dtypes and lengths (``ypix``, ``xpix``, ``lam``, ``overlap``
    all the same length; ``lam`` finite and >= 0); ranges are checked
    against the image shape by :func:`_suite2p_labels`.
    """
    if stat.ndim != 1 or not all(isinstance(s, dict) for s in stat):
        raise ValueError(f"{stat_path} is not a list of ROI dicts (suite2p stat.npy)")
    rois = []
    for i, s in enumerate(stat):
        for key in ("ypix", "xpix"):
            if key not in s:
                raise ValueError(f"{stat_path}: ROI {i} has no key {key!r}")
        y = _int_array(s["ypix"], f"{stat_path}: ROI {i} 'ypix'")
        x = _int_array(s["xpix"], f"{stat_path}: ROI {i} 'xpix'")
        for key, arr in (("ypix", y), ("xpix", x)):
            if arr.size and arr.min() < 0:
                raise ValueError(
                    f"{stat_path}: ROI {i} '{key}' holds a negative pixel index "
                    f"({int(arr.min())})"
                )
        if y.shape != x.shape:
            raise ValueError(
                f"{stat_path}: ROI {i} has {y.size} 'ypix' but {x.size} 'xpix' values"
            )
        if "lam" in s and s["lam"] is not None:
            try:
                lam = np.asarray(s["lam"]).ravel()
            except Exception as e:
                raise ValueError(f"{stat_path}: ROI {i} 'lam' is not an array ({e})") from None
            if lam.dtype.kind not in "biuf":
                raise ValueError(f"{stat_path}: ROI {i} 'lam' has dtype {lam.dtype}; expected numbers")
            if lam.shape != y.shape:
                raise ValueError(
                    f"{stat_path}: ROI {i} has {lam.size} 'lam' weights for {y.size} pixels"
                )
            if lam.size and not (np.isfinite(lam).all() and (lam >= 0).all()):
                raise ValueError(
                    f"{stat_path}: ROI {i} 'lam' holds NaN, Inf or negative weights"
                )
        ov = None
        if "overlap" in s and s["overlap"] is not None:
            try:
                ov = np.asarray(s["overlap"]).ravel()
            except Exception as e:
                raise ValueError(
                    f"{stat_path}: ROI {i} 'overlap' is not an array ({e})"
                ) from None
            if ov.dtype.kind not in "biuf":
                raise ValueError(
                    f"{stat_path}: ROI {i} 'overlap' has dtype {ov.dtype}; expected booleans"
                )
            if ov.shape != y.shape:
                raise ValueError(
                    f"{stat_path}: ROI {i} has {ov.size} 'overlap' flags for {y.size} pixels"
                )
            ov = ov.astype(bool)
        rois.append((y, x, ov))
    return rois


def _check_image_size(shape, where: str) -> tuple:
    """A validated image shape: positive whole numbers that fit in memory as int32."""
    try:
        dims = tuple(int(v) for v in shape)
        ok = all(float(v) == d for v, d in zip(shape, dims))
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{where}: image size {tuple(shape)!r} is not whole numbers") from None
    if not ok or not dims or any(d < 1 for d in dims):
        raise ValueError(f"{where}: image size {dims} must be positive whole numbers")
    need = 4 * math.prod(dims)
    limit = _memory_limit()
    if limit is not None and need > limit:
        raise ValueError(
            f"{where}: image size {dims} needs {need / 2**30:.1f} GiB for the labels, "
            f"more than this machine's {limit / 2**30:.1f} GiB of memory; the file is damaged"
        )
    return dims


def _memory_limit() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _suite2p_labels(rois, keep: np.ndarray, ids: np.ndarray, shape, stat_path: Path):
    Ly, Lx = shape
    labels = np.zeros((Ly, Lx), dtype=np.int32)
    for i, roi_id in zip(keep, ids):
        y, x, ov = rois[i]
        _check_range(y, Ly, f"{stat_path}: ROI {i} 'ypix'", "image height (Ly)")
        _check_range(x, Lx, f"{stat_path}: ROI {i} 'xpix'", "image width (Lx)")
        if ov is not None:
            # pixels shared with another ROI belong to neither trace in suite2p
            y, x = y[~ov], x[~ov]
        labels[y, x] = roi_id
    return labels


def load_suite2p(plane_dir, neuropil: float = 0.7, only_cells: bool = True,
                 allow_pickle: bool = False, fs: float | None = None) -> PipelineData:
    """Traces (and, if allowed, footprints) from a suite2p plane folder.

    Parameters
    ----------
    plane_dir : path
        ``.../suite2p/plane0`` (or a ``suite2p`` folder with a single plane).
    neuropil : float
        Traces are ``F - neuropil * Fneu`` (suite2p's default coefficient 0.7).
    only_cells : bool
        Keep the ROIs marked as cells in ``iscell.npy`` (all if it is absent).
    allow_pickle : bool
        Read ``stat.npy`` (footprints) and ``ops.npy`` (sampling rate, mean
        image), which suite2p stores as pickles.  Only for trusted folders.
    fs : float, optional
        Sampling rate in Hz; overrides ``ops['fs']``.  Without it and without
        ``ops.npy``, ``fs`` is None and the caller must supply it.

    Raises
    ------
    FileNotFoundError
        The folder or ``F.npy``/``Fneu.npy`` is missing.
    ValueError
        A file is truncated or malformed (the message names the file and
        the missing key or the mismatching shape).
    """
    neuropil = float(neuropil)
    if not (math.isfinite(neuropil) and neuropil >= 0):
        raise ValueError(f"neuropil coefficient must be a number >= 0, got {neuropil}")
    plane = _resolve_plane(plane_dir)
    F = _load_plain(plane / "F.npy", mmap=True)
    Fneu = _load_plain(plane / "Fneu.npy", mmap=True)
    if F.ndim != 2:
        raise ValueError(f"{plane / 'F.npy'} has shape {F.shape}; expected (n_rois, n_frames)")
    if Fneu.shape != F.shape:
        raise ValueError(
            f"{plane / 'Fneu.npy'} has shape {Fneu.shape} but F.npy has {F.shape}"
        )
    n = F.shape[0]
    keep = np.arange(n)
    notes = []
    iscell_path = plane / "iscell.npy"
    if only_cells:
        if iscell_path.is_file():
            iscell = _load_plain(iscell_path)
            if iscell.ndim == 1:
                flag = iscell
            elif iscell.ndim == 2 and iscell.shape[1] >= 1:
                flag = iscell[:, 0]
            else:
                raise ValueError(f"{iscell_path} has shape {iscell.shape}; expected (n_rois, 2)")
            if flag.shape[0] != n:
                raise ValueError(
                    f"{iscell_path} lists {flag.shape[0]} ROIs but F.npy has {n}"
                )
            keep = np.flatnonzero(np.asarray(flag) > 0.5)
        else:
            notes.append("no iscell.npy: all ROIs kept")
    traces = np.asarray(F[keep], dtype=np.float64)
    traces -= neuropil * np.asarray(Fneu[keep], dtype=np.float64)
    del F, Fneu
    roi_ids = keep.astype(np.int64) + 1

    mean_image = labels = None
    ops = None
    ops_path, stat_path = plane / "ops.npy", plane / "stat.npy"
    if allow_pickle and ops_path.is_file():
        ops_obj = _load_pickle(ops_path, "ops")
        try:
            ops = ops_obj.item() if isinstance(ops_obj, np.ndarray) else ops_obj
        except ValueError:
            ops = None
        if not isinstance(ops, dict):
            raise ValueError(f"{ops_path} does not hold a dict (suite2p ops)")
        if fs is None:
            if "fs" not in ops:
                raise ValueError(f"{ops_path} has no key 'fs' (sampling rate); pass fs")
            fs = ops["fs"]
        if "meanImg" in ops:
            mean_image = np.asarray(ops["meanImg"], dtype=np.float64)
            if mean_image.ndim != 2:
                raise ValueError(f"{ops_path}: 'meanImg' has shape {mean_image.shape}")
    if fs is not None:
        fs = float(fs)
        if not (math.isfinite(fs) and fs > 0):
            raise ValueError(f"sampling rate must be a positive number of Hz, got {fs}")
    if allow_pickle and stat_path.is_file():
        stat = _load_pickle(stat_path, "stat")
        try:
            stat = np.asarray(stat, dtype=object).ravel()
        except Exception as e:
            raise ValueError(f"{stat_path} is not a list of ROI dicts ({e})") from None
        if stat.shape[0] != n:
            raise ValueError(f"{stat_path} lists {stat.shape[0]} ROIs but F.npy has {n}")
        rois = _suite2p_rois(stat, stat_path)
        if ops is not None and "Ly" in ops and "Lx" in ops:
            shape = _check_image_size((ops["Ly"], ops["Lx"]), f"{ops_path} 'Ly'/'Lx'")
        elif mean_image is not None:
            shape = mean_image.shape
        else:
            sizes = [(int(y.max()) + 1, int(x.max()) + 1) for y, x, _ in rois if y.size]
            if not sizes:
                raise ValueError(f"{stat_path}: every ROI is empty; no footprints to show")
            shape = _check_image_size(
                (max(a for a, _ in sizes), max(b for _, b in sizes)),
                f"{stat_path} 'ypix'/'xpix'",
            )
        labels = _suite2p_labels(rois, keep, roi_ids, shape, stat_path)
    elif not allow_pickle and (stat_path.is_file() or ops_path.is_file()):
        notes.append(
            "stat.npy/ops.npy not read: they are pickles (allow_pickle=True, CLI --allow-pickle)"
        )
    return PipelineData(
        traces=traces, fs=fs, roi_ids=roi_ids, labels=labels, mean_image=mean_image,
        source=str(plane), kind=f"F - {neuropil:g}*Fneu", notes=notes,
    )


# ---------------------------------------------------------------- CaImAn


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError(CAIMAN_EXTRA_MESSAGE) from None
    return h5py


def _is_none(value) -> bool:
    # CaImAn stores None as the string "NoneType"
    if isinstance(value, (bytes, str)):
        return (value.decode() if isinstance(value, bytes) else value) == "NoneType"
    return False


def _h5_get(f, key: str):
    """Dataset value at ``key``, or None if absent or stored as ``"NoneType"``."""
    if key not in f:
        return None
    obj = f[key]
    if not hasattr(obj, "shape"):  # a group
        return obj
    value = obj[()]
    return None if _is_none(value) else value


def load_caiman(path, only_accepted: bool = False) -> PipelineData:
    """Traces and footprints from a CaImAn ``CNMF.save`` HDF5 file.

    Traces are ``estimates/F_dff`` when stored, else ``estimates/C +
    estimates/YrA`` (denoised plus residual: the raw trace), else
    ``estimates/C``.  ``fs`` from ``params/data/fr``; footprints from the
    sparse ``estimates/A`` with ``params/data/dims`` (each pixel goes to the
    component with the largest weight there); ``estimates/Cn`` as the image.

    Parameters
    ----------
    only_accepted : bool
        Keep only ``estimates/idx_components`` when the file has it.
    """
    h5py = _h5py()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CaImAn file {path} not found")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path} is truncated or not an HDF5 file ({e})") from None
    with f:
        if "estimates" not in f:
            raise ValueError(
                f"{path} has no 'estimates' group: not a CaImAn CNMF file "
                "(save it with cnm.save('file.hdf5'))"
            )
        try:
            return _read_caiman(f, path, only_accepted)
        except (KeyError, OSError, TypeError) as e:
            raise ValueError(f"{path} is truncated or malformed ({e})") from None
        except ValueError as e:
            if str(path) in str(e):
                raise
            raise ValueError(f"{path} is malformed ({e})") from None


def _read_caiman(f, path: Path, only_accepted: bool) -> PipelineData:
    C = _h5_get(f, "estimates/C")
    if C is None:
        raise ValueError(f"{path} has no key 'estimates/C' (the component traces)")
    C = np.asarray(C, dtype=np.float64)
    if C.ndim != 2:
        raise ValueError(f"{path}: 'estimates/C' has shape {C.shape}; expected (n, T)")
    n = C.shape[0]
    F_dff = _h5_get(f, "estimates/F_dff")
    YrA = _h5_get(f, "estimates/YrA")
    for name, arr in (("estimates/F_dff", F_dff), ("estimates/YrA", YrA)):
        if arr is not None and np.shape(arr) != C.shape:
            raise ValueError(
                f"{path}: '{name}' has shape {np.shape(arr)} but 'estimates/C' has {C.shape}"
            )
    if F_dff is not None:
        traces, kind = np.asarray(F_dff, dtype=np.float64), "F_dff"
    elif YrA is not None:
        traces, kind = C + np.asarray(YrA, dtype=np.float64), "C + YrA"
    else:
        traces, kind = C, "C"

    fr = _h5_get(f, "params/data/fr")
    fs = None
    if fr is not None:
        fs = float(np.asarray(fr).ravel()[0])
        if not (math.isfinite(fs) and fs > 0):
            fs = None

    keep = np.arange(n)
    if only_accepted:
        idx = _h5_get(f, "estimates/idx_components")
        if idx is not None and np.size(idx):
            keep = np.asarray(idx, dtype=np.int64).ravel()
            if keep.min() < 0 or keep.max() >= n:
                raise ValueError(
                    f"{path}: 'estimates/idx_components' out of range for {n} components"
                )
    roi_ids = keep + 1

    dims = None
    dims_key = "params/data/dims"
    for key in ("params/data/dims", "estimates/dims", "dims"):
        d = _h5_get(f, key)
        if d is not None and not hasattr(d, "keys"):
            dims = tuple(int(v) for v in np.asarray(d).ravel())
            dims_key = key
            break

    labels = None
    A = _h5_get(f, "estimates/A")
    if A is not None:
        if not hasattr(A, "keys"):
            raise ValueError(f"{path}: 'estimates/A' is not a sparse matrix group")
        for k in ("data", "indices", "indptr", "shape"):
            if k not in A:
                raise ValueError(f"{path} has no key 'estimates/A/{k}' (sparse footprints)")
        if dims is None:
            raise ValueError(f"{path} has footprints but no key 'params/data/dims'")
        labels = _caiman_labels(A, dims, n, keep, roi_ids, path, dims_key)

    image = _h5_get(f, "estimates/Cn")
    if image is not None:
        image = np.asarray(image, dtype=np.float64)
        if dims is not None and image.shape != dims:
            image = image.reshape(dims, order="F") if image.size == math.prod(dims) else None
    return PipelineData(
        traces=np.ascontiguousarray(traces[keep]), fs=fs, roi_ids=roi_ids, labels=labels,
        mean_image=image, source=str(path), kind=kind,
    )


def _h5_array(group, key: str, where: str) -> np.ndarray:
    if key not in group or not hasattr(group[key], "shape"):
        raise ValueError(f"{where}/{key}' is missing or not a dataset (sparse footprints)")
    return np.asarray(group[key][()])


def check_csc(data, indices, indptr, shape, where: str):
    """Validate a CSC matrix's arrays completely; return them as safe NumPy arrays.

    ``where`` names the matrix in messages (e.g. ``"file.hdf5: 'estimates/A"``).
    Checks what scipy does not before its C++ code indexes memory with
    them: integer index arrays, 1-D arrays, ``len(indptr) == shape[1] + 1``,
    ``indptr`` starting at 0, never decreasing and ending at
    ``len(indices) == len(data)``, and every row index in ``0..shape[0]-1``.

    Returns ``(data float64, indices int64, indptr int64, (rows, cols))``.
    """
    shape = np.asarray(shape).ravel()
    if shape.size != 2 or shape.dtype.kind not in "iuf":
        raise ValueError(f"{where}/shape' is {shape.tolist()!r}; expected (pixels, components)")
    if shape.dtype.kind == "f" and not (np.isfinite(shape).all() and (shape == np.round(shape)).all()):
        raise ValueError(f"{where}/shape' is {shape.tolist()!r}; expected two whole numbers")
    if (shape < 0).any() or (shape > np.iinfo(np.int64).max // 2).any():
        raise ValueError(f"{where}/shape' is {shape.tolist()!r}; expected two sizes >= 0")
    rows, cols = int(shape[0]), int(shape[1])
    arrays = {}
    for key, arr, kinds in (("data", data, "biuf"), ("indices", indices, "iu"),
                            ("indptr", indptr, "iu")):
        arr = np.asarray(arr)
        if arr.ndim != 1:
            raise ValueError(f"{where}/{key}' has shape {arr.shape}; expected a 1-D array")
        if arr.dtype.kind not in kinds:
            what = "numbers" if key == "data" else "integers"
            raise ValueError(f"{where}/{key}' has dtype {arr.dtype}; expected {what}")
        arrays[key] = arr
    data, indices, indptr = arrays["data"], arrays["indices"], arrays["indptr"]
    nnz = indices.size
    if data.size != nnz:
        raise ValueError(
            f"{where}/data' has {data.size} values but '/indices' has {nnz}; "
            "they must be the same length"
        )
    if indptr.size != cols + 1:
        raise ValueError(
            f"{where}/indptr' has {indptr.size} values; expected {cols + 1} "
            f"(one per component + 1, for shape {(rows, cols)})"
        )
    # compare in the stored dtype first, so uint64 values cannot wrap on conversion
    if indptr[0] != 0:
        raise ValueError(f"{where}/indptr' starts at {int(indptr[0])}; it must start at 0")
    if indptr.max() > nnz or (indptr.dtype.kind == "i" and indptr.min() < 0):
        raise ValueError(
            f"{where}/indptr' holds values outside 0..{nnz} (the number of stored values)"
        )
    indptr = indptr.astype(np.int64)
    if (np.diff(indptr) < 0).any():
        k = int(np.flatnonzero(np.diff(indptr) < 0)[0])
        raise ValueError(
            f"{where}/indptr' decreases at component {k} ({indptr[k]} -> {indptr[k + 1]}); "
            "it must never decrease"
        )
    if indptr[-1] != nnz:
        raise ValueError(
            f"{where}/indptr' ends at {int(indptr[-1])} but there are {nnz} stored values"
        )
    if nnz:
        lo, hi = indices.min(), indices.max()
        if (indices.dtype.kind == "i" and lo < 0) or hi >= rows:
            bad = indices[(indices >= rows) | ((indices < 0) if indices.dtype.kind == "i" else False)]
            raise ValueError(
                f"{where}/indices' holds {bad.size} row index(es) outside 0..{rows - 1} "
                f"(e.g. {int(bad[0])}); the matrix has {rows} rows (pixels)"
            )
    indices = indices.astype(np.int64)
    data = data.astype(np.float64)
    return data, indices, indptr, (rows, cols)


def _caiman_labels(A, dims, n, keep, roi_ids, path, dims_key="params/data/dims"):
    from scipy import sparse

    where = f"{path}: 'estimates/A"
    dims = _check_image_size(dims, f"{path}: '{dims_key}'")
    data, indices, indptr, shape = check_csc(
        _h5_array(A, "data", where), _h5_array(A, "indices", where),
        _h5_array(A, "indptr", where), _h5_array(A, "shape", where), where,
    )
    if shape[0] != math.prod(dims) or shape[1] != n:
        raise ValueError(
            f"{path}: 'estimates/A' has shape {shape}, expected ({math.prod(dims)}, {n}) "
            f"for dims {dims} and {n} components"
        )
    mat = sparse.csc_matrix((data, indices, indptr), shape=shape)
    mat = mat[:, keep].tocsr()
    mat.data = np.where(mat.data > 0, mat.data, 0)
    mat.eliminate_zeros()
    has = np.diff(mat.indptr) > 0
    winner = np.asarray(mat.argmax(axis=1)).ravel()
    flat = np.zeros(shape[0], dtype=np.int32)
    flat[has] = np.asarray(roi_ids, dtype=np.int32)[winner[has]]
    # CaImAn flattens images in Fortran order
    return flat.reshape(dims, order="F")
