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
``"NoneType"``.  h5py is an optional extra (``napari-catune[caiman]``).
"""

from __future__ import annotations

import math
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


def _suite2p_labels(stat, keep: np.ndarray, ids: np.ndarray, shape, stat_path: Path):
    if stat.ndim != 1 or not all(isinstance(s, dict) for s in stat):
        raise ValueError(f"{stat_path} is not a list of ROI dicts (suite2p stat.npy)")
    Ly, Lx = shape
    labels = np.zeros((Ly, Lx), dtype=np.int32)
    for i, roi_id in zip(keep, ids):
        s = stat[i]
        for key in ("ypix", "xpix"):
            if key not in s:
                raise ValueError(f"{stat_path}: ROI {i} has no key {key!r}")
        y = np.asarray(s["ypix"]).ravel().astype(np.intp)
        x = np.asarray(s["xpix"]).ravel().astype(np.intp)
        if y.shape != x.shape:
            raise ValueError(f"{stat_path}: ROI {i} has ypix and xpix of different lengths")
        if "overlap" in s:
            ov = np.asarray(s["overlap"]).ravel().astype(bool)
            if ov.shape == y.shape:
                # pixels shared with another ROI belong to neither trace in suite2p
                y, x = y[~ov], x[~ov]
        inside = (y >= 0) & (y < Ly) & (x >= 0) & (x < Lx)
        labels[y[inside], x[inside]] = roi_id
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
        stat = np.asarray(stat, dtype=object).ravel()
        if stat.shape[0] != n:
            raise ValueError(f"{stat_path} lists {stat.shape[0]} ROIs but F.npy has {n}")
        if ops is not None and "Ly" in ops and "Lx" in ops:
            shape = (int(ops["Ly"]), int(ops["Lx"]))
        elif mean_image is not None:
            shape = mean_image.shape
        else:
            try:
                shape = (
                    int(max(np.max(s["ypix"]) for s in stat)) + 1,
                    int(max(np.max(s["xpix"]) for s in stat)) + 1,
                )
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{stat_path}: ROI without 'ypix'/'xpix' ({e})") from None
        labels = _suite2p_labels(stat, keep, roi_ids, shape, stat_path)
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
    for key in ("params/data/dims", "estimates/dims", "dims"):
        d = _h5_get(f, key)
        if d is not None and not hasattr(d, "keys"):
            dims = tuple(int(v) for v in np.asarray(d).ravel())
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
        labels = _caiman_labels(A, dims, n, keep, roi_ids, path)

    image = _h5_get(f, "estimates/Cn")
    if image is not None:
        image = np.asarray(image, dtype=np.float64)
        if dims is not None and image.shape != dims:
            image = image.reshape(dims, order="F") if image.size == math.prod(dims) else None
    return PipelineData(
        traces=np.ascontiguousarray(traces[keep]), fs=fs, roi_ids=roi_ids, labels=labels,
        mean_image=image, source=str(path), kind=kind,
    )


def _caiman_labels(A, dims, n, keep, roi_ids, path):
    from scipy import sparse

    shape = tuple(int(v) for v in np.asarray(A["shape"][()]).ravel())
    if len(shape) != 2 or shape[0] != math.prod(dims) or shape[1] != n:
        raise ValueError(
            f"{path}: 'estimates/A' has shape {shape}, expected ({math.prod(dims)}, {n}) "
            f"for dims {dims} and {n} components"
        )
    try:
        mat = sparse.csc_matrix(
            (A["data"][()], A["indices"][()], A["indptr"][()]), shape=shape
        )
    except ValueError as e:
        raise ValueError(f"{path}: 'estimates/A' is malformed ({e})") from None
    mat = mat[:, keep].tocsr()
    mat.data = np.where(mat.data > 0, mat.data, 0)
    mat.eliminate_zeros()
    has = np.diff(mat.indptr) > 0
    winner = np.asarray(mat.argmax(axis=1)).ravel()
    flat = np.zeros(shape[0], dtype=np.int32)
    flat[has] = np.asarray(roi_ids, dtype=np.int32)[winner[has]]
    # CaImAn flattens images in Fortran order
    return flat.reshape(dims, order="F")
