"""Read the outputs of the pipelines people already run: suite2p, CaImAn, Minian.

The loaders here return a :class:`PipelineData` (traces, sampling rate, ROI
ids, a label image of the footprints, a background image, what the traces
are).  No Qt, no napari: the napari readers, the command line and scripts
share them.  ``calab``-shaped calls (``load_caiman(path) -> (traces, meta)``,
``load_minian``) are in :mod:`napari_catune.compat`, built on these.

suite2p writes ``F.npy``, ``Fneu.npy`` and ``iscell.npy`` as plain arrays
(read with ``allow_pickle=False``) and ``stat.npy``, ``ops.npy`` (0.x) and
``settings.npy``, ``db.npy``, ``reg_outputs.npy`` (1.x) as pickles (a list
of dicts, dicts): loading a pickle can run code, so those are read only when
the caller passes ``allow_pickle=True``.  suite2p 1.x
(``pipeline_s2p.py``/``run_s2p.py``) writes ``settings.npy`` (``fs``,
``extraction.neuropil_coefficient``), ``db.npy`` (``Ly``, ``Lx``,
``nframes``) and ``reg_outputs.npy`` (``meanImg``) per plane, and
``ops.npy`` (all of them merged) only with ``io.save_ops_orig``; like
suite2p's own GUI (``gui/io.py: load_files``), they are merged when
``ops.npy`` is absent.  ``F.npy`` and ``Fneu.npy`` are read in blocks of
rows, so memory holds the result and one block, not both inputs.

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

__all__ = ["PipelineData", "load_suite2p", "load_caiman_data", "load_minian_data",
           "tile_labels", "find_suite2p_plane", "CAIMAN_TRACES", "CAIMAN_TRACE_ENV",
           "load_cellpose_seg", "is_cellpose_seg", "shared_pixels", "rois_at"]

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
    t0 : float
        Time of the first frame in s on the recording's own clock (an NWB
        series' ``starting_time`` or first timestamp); 0 when not recorded.
    timestamps : (T,) float64 or None
        The frame times, kept only when they are irregular (see
        ``nwb.TIMESTAMP_TOLERANCE``); regular ones are ``t0 + k / fs``.
    shared : dict or None
        The pixels two or more ROIs share (:func:`shared_pixels`): the label
        image can show one id a pixel (suite2p folders: none, as suite2p
        leaves shared pixels out of every trace), so which ROIs meet there is
        kept here; :func:`rois_at` looks a pixel up.  None when not known.
    nwb_ids : (n,) int or None
        An NWB input's PlaneSegmentation ids of these ROIs (written back as
        the ids of a results ``.nwb``); None for other pipelines.
    """

    traces: np.ndarray
    fs: float | None
    roi_ids: np.ndarray
    labels: np.ndarray | None
    mean_image: np.ndarray | None
    source: str
    kind: str = ""
    notes: list = field(default_factory=list)
    t0: float = 0.0
    timestamps: np.ndarray | None = None
    shared: dict | None = None
    nwb_ids: np.ndarray | None = None


def shared_pixels(rois, shape) -> dict | None:
    """The pixels that two or more ROIs share, and which ROIs.

    ``rois`` yields ``(roi_id, rows, cols)`` (pixel coordinates inside
    ``shape``).  Returns ``{"pixels": (k, 2) int64 (row, col), "rois": [k
    tuples of ids, ascending]}``, or None when no pixel is shared.
    """
    h, w = int(shape[0]), int(shape[1])
    flats, owners = [], []
    for rid, r, c in rois:
        r, c = np.asarray(r, dtype=np.int64), np.asarray(c, dtype=np.int64)
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        f = np.unique(r[inside] * w + c[inside])
        flats.append(f)
        owners.append(np.full(f.size, int(rid), dtype=np.int64))
    if not flats:
        return None
    flat, owner = np.concatenate(flats), np.concatenate(owners)
    order = np.lexsort((owner, flat))
    flat, owner = flat[order], owner[order]
    uniq, start, count = np.unique(flat, return_index=True, return_counts=True)
    many = count > 1
    if not many.any():
        return None
    pixels = np.column_stack(np.divmod(uniq[many], w)).astype(np.int64)
    ids = [tuple(int(v) for v in owner[a:a + k]) for a, k in zip(start[many], count[many])]
    return {"pixels": pixels, "rois": ids}


def rois_at(shared, row: int, col: int) -> tuple:
    """The ids of the ROIs sharing pixel ``(row, col)`` (empty when not shared)."""
    if not shared:
        return ()
    pix = np.asarray(shared["pixels"])
    hit = np.flatnonzero((pix[:, 0] == int(row)) & (pix[:, 1] == int(col)))
    return tuple(shared["rois"][int(hit[0])]) if hit.size else ()


def _shared_note(shared, drawn: str) -> str:
    pairs = {p for ids in shared["rois"] for p in zip(ids, ids[1:])}
    return (f"overlaps: {len(shared['rois'])} pixel(s) shared by two or more ROIs "
            f"({len(pairs)} pair(s)); {drawn}; a click there names them all")


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
        combined = p / "combined"
        if (combined / "F.npy").is_file():
            also = f", or {combined} (all planes merged by suite2p)"
        else:
            also = (", or a 'combined' folder (all planes merged: suite2p writes it with "
                    "settings io.combined, ops 'combined' in 0.x)")
        raise ValueError(
            f"{p} holds {len(planes)} planes ({', '.join(planes)}); pass one plane folder, "
            f"e.g. {p / planes[0]}{also}"
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
        raise ValueError(f"{path} is truncated or not a {what} file ({e})") from None
    except Exception as e:  # unpickling errors come in many types
        raise ValueError(f"{path} is truncated or not a {what} file ({e})") from None
    return obj


# ---------------------------------------------------------------- cellpose


#: how cellpose names its GUI/``io.masks_flows_to_seg`` output: {image}_seg.npy
CELLPOSE_SEG_SUFFIX = "_seg.npy"



def _cellpose_export(p: Path) -> str:
    """The way out that needs no pickle: cellpose's other mask outputs."""
    image = p.name[: -len(CELLPOSE_SEG_SUFFIX)] if p.name.lower().endswith(
        CELLPOSE_SEG_SUFFIX) else p.stem
    return (f"open cellpose's {image}_cp_masks.tif (or .png) instead: cellpose --save_tif or "
            "--save_png writes it, or its GUI's File > Save masks as PNG/tif")


def is_cellpose_seg(path) -> bool:
    """A cellpose ``*_seg.npy``: the name and an object header (a pickled dict), no unpickling."""
    p = Path(path)
    if not p.name.lower().endswith(CELLPOSE_SEG_SUFFIX) or not p.is_file():
        return False
    try:
        with open(p, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)(fh)
    except (ValueError, OSError, EOFError):
        return False
    shape, _, dtype = header
    return tuple(shape) == () and np.dtype(dtype).hasobject


def load_cellpose_seg(path, *, allow_pickle: bool = False) -> np.ndarray:
    """The ``masks`` (Y, X) label image of a cellpose ``*_seg.npy``.

    cellpose stores a dict (``masks``, ``outlines``, ``flows``, ``filename``,
    ...) with ``np.save``, i.e. a pickle, which can run code when loaded: it
    is read only with ``allow_pickle=True`` (trusted files), else a
    ValueError says to open the ``*_cp_masks.tif``/``.png`` instead.
    """
    p = Path(path)
    if not allow_pickle:
        raise ValueError(
            f"{p} not read: a cellpose _seg.npy is a Python pickle, which can run code when "
            f"loaded, and loading it was not allowed; {_cellpose_export(p)}"
        )
    obj = _load_pickle(p, "cellpose _seg.npy")
    try:
        dat = obj.item() if isinstance(obj, np.ndarray) and obj.shape == () else obj
    except ValueError:
        dat = None
    if not isinstance(dat, dict) or "masks" not in dat:
        raise ValueError(f"{p} is not a cellpose _seg.npy (no 'masks' in it); "
                         f"{_cellpose_export(p)}")
    masks = np.squeeze(np.asarray(dat["masks"]))
    if masks.ndim != 2 or masks.dtype.kind not in "iu":
        raise ValueError(
            f"{p}: its 'masks' have shape {masks.shape} dtype {masks.dtype}; the tuner takes "
            "one (height, width) integer label image (a 3-D cellpose run: export one plane)"
        )
    if masks.size and masks.min() < 0:
        raise ValueError(f"{p}: its 'masks' hold negative values; 0 is the background")
    return masks


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


def _npy_header(path: Path):
    """``(shape, fortran_order, dtype, data offset)`` of a ``.npy`` file, without reading it."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            shape, fortran, dtype = np.lib.format._read_array_header(fh, version)
        return shape, fortran, dtype, fh.tell()


# bytes of one block of rows read from F.npy/Fneu.npy at a time
_BLOCK_BYTES = 32 * 2**20


def _rows_reader(path: Path, arr: np.ndarray):
    """A function ``(lo, hi) -> rows lo..hi-1`` of the ``.npy`` at ``path``.

    C-ordered files are read with plain file reads of that run of rows, so
    the pages do not stay resident as a memory map's would; anything else
    goes through the memory map ``arr``.
    """
    try:
        shape, fortran, dtype, offset = _npy_header(path)
    except Exception:
        fortran = True
    if fortran or dtype.hasobject or len(shape) != 2:
        return lambda lo, hi: arr[lo:hi]
    T = shape[1]
    row_bytes = T * dtype.itemsize

    def read(lo: int, hi: int) -> np.ndarray:
        with open(path, "rb") as fh:
            fh.seek(offset + lo * row_bytes)
            block = np.fromfile(fh, dtype=dtype, count=(hi - lo) * T)
        if block.size != (hi - lo) * T:
            raise ValueError(f"{path} is truncated: rows {lo}..{hi - 1} are incomplete")
        return block.reshape(hi - lo, T)

    return read


def _neuropil_traces(plane: Path, F, Fneu, keep: np.ndarray, coef: float) -> np.ndarray:
    """``F[keep] - coef * Fneu[keep]`` as float64, a block of rows at a time.

    ``keep`` is sorted.  The files are read in runs of at most
    ``_BLOCK_BYTES`` (as float64), so peak memory is the result plus one
    block of each input, not float64 copies of both whole arrays.
    """
    n, T = F.shape
    out = np.empty((keep.size, T), dtype=np.float64)
    if keep.size == 0 or T == 0:
        return out
    read_F = _rows_reader(plane / "F.npy", F)
    read_N = _rows_reader(plane / "Fneu.npy", Fneu)
    step = max(1, _BLOCK_BYTES // (8 * T))
    j = 0
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        a, b = np.searchsorted(keep, [lo, hi])
        if a == b:
            continue
        local = keep[a:b] - lo
        dst = out[j : j + (b - a)]
        dst[:] = read_F(lo, hi)[local]
        if coef:
            dst -= coef * np.asarray(read_N(lo, hi)[local], dtype=np.float64)
        j += b - a
    return out


def _zero_padding(traces: np.ndarray, F, Fneu, keep: np.ndarray) -> dict:
    """Mark suite2p's zero padding as NaN padding, in place; ``{row: length}``.

    suite2p pads the F, Fneu and spks of a plane with fewer frames with
    zeros up to the longest plane when it combines planes (``io/save.py``
    ``combined()``: ``np.zeros((nn, Nfr - nt))`` appended), and its NWB
    export does the same (``nwb.load_nwb`` uses this too).  Only for those:
    a plane folder is never padded.  Trailing frames where ``F`` and ``Fneu`` are both
    exactly 0 are that padding, not data: they become NaN, so the row is
    solved on its data as any NaN-padded row (``_padding``).  A row that is
    zero for all but fewer than 2 frames is left as it is (no data to keep).
    """
    n, T = traces.shape
    out: dict = {}
    if n == 0 or T < 3:
        return out
    # F - c*Fneu is exactly 0 wherever both are: only those rows are checked
    for i in np.flatnonzero(traces[:, -1] == 0):
        nz = np.flatnonzero(traces[i])
        L = int(nz[-1]) + 1 if nz.size else 0
        if L < 2:
            continue
        src = int(keep[i])
        f = np.asarray(F[src, L:])
        g = np.asarray(Fneu[src, L:])
        if f.any() or g.any():
            # F == c*Fneu by chance somewhere: pad only the run where both are 0
            both = np.flatnonzero((f != 0) | (g != 0))
            L += int(both[-1]) + 1
            if L >= T:
                continue
        traces[i, L:] = np.nan
        out[i] = L
    return out


def _plane_note(stat, keep: np.ndarray) -> str | None:
    """For suite2p's ``combined`` folder (``stat[i]['iplane']``): which ids
    came from which plane, e.g. "ROI ids by plane: plane0 1-8, plane1 9-16"."""
    try:
        iplane = np.array([int(stat[i]["iplane"]) for i in keep], dtype=np.int64)
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    if iplane.size == 0:
        return None
    parts = []
    for k in np.unique(iplane):
        ids = keep[iplane == k] + 1
        runs = np.split(ids, np.flatnonzero(np.diff(ids) != 1) + 1)
        text = ", ".join(f"{r[0]}" if r.size == 1 else f"{r[0]}-{r[-1]}" for r in runs[:4])
        parts.append(f"plane{k} {text}{', ...' if len(runs) > 4 else ''}")
    return ("ROI ids by plane (stat.npy 'iplane'; the id is the combined row + 1, not the "
            "plane folder's): " + "; ".join(parts))


def _padding_note(padded: dict, T: int,
                  when: str = "when it combines planes") -> str:
    """The note of :func:`_zero_padding`: how many rows, their lengths;
    ``when`` says where suite2p pads (combined/, its NWB export)."""
    lengths = sorted(set(padded.values()))
    shown = ", ".join(str(v) for v in lengths[:6]) + (", ..." if len(lengths) > 6 else "")
    rows = len(padded)
    return (f"suite2p zero padding: {rows} row{'s' if rows != 1 else ''} end in frames where F "
            f"and Fneu are both exactly 0 (suite2p pads a plane with fewer frames with zeros "
            f"{when}): taken as NaN padding, so "
            f"{'they end' if rows != 1 else 'it ends'} where the data end "
            f"({shown} of {T} frames)")


def _suite2p_ops(plane: Path, allow_pickle: bool, notes: list):
    """The plane's settings as one dict, and the file(s) it came from.

    ``ops.npy`` (0.x, and 1.x with ``io.save_ops_orig``) when present; else
    suite2p 1.x's ``db.npy``, ``settings.npy`` and ``reg_outputs.npy``
    merged in that order, as suite2p's GUI does.  ``(None, None)`` without
    permission to unpickle or without any of these files.
    """
    ops_path = plane / "ops.npy"
    v1 = [plane / f for f in ("db.npy", "settings.npy", "reg_outputs.npy")]
    present = [q for q in ([ops_path] if ops_path.is_file() else v1) if q.is_file()]
    if not present:
        return None, None
    if not allow_pickle:
        notes.append(
            f"{', '.join(q.name for q in present)} not read: suite2p stores them as pickles "
            "(allow_pickle=True, CLI --allow-pickle)"
        )
        return None, None
    ops: dict = {}
    for q in present:
        obj = _load_pickle(q, f"suite2p {q.stem}")
        try:
            d = obj.item() if isinstance(obj, np.ndarray) else obj
        except ValueError:
            d = None
        if not isinstance(d, dict):
            raise ValueError(f"{q} does not hold a dict (suite2p {q.stem})")
        ops.update(d)
    where = present[0] if len(present) == 1 else plane / f"{{{','.join(q.name for q in present)}}}"
    return ops, where


def _ops_neuropil(ops: dict, where) -> float | None:
    """suite2p's neuropil coefficient from its settings, or None if absent.

    0.x: ``ops['neucoeff']``; 1.x: ``settings['extraction']['neuropil_coefficient']``.
    """
    value = ops.get("neucoeff")
    key = "neucoeff"
    if value is None and isinstance(ops.get("extraction"), dict):
        value = ops["extraction"].get("neuropil_coefficient")
        key = "extraction.neuropil_coefficient"
    if value is None:
        return None
    try:
        value = float(np.asarray(value).ravel()[0])
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"{where}: '{key}' is not a number ({value!r})") from None
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{where}: '{key}' must be a number >= 0, got {value}")
    return value


#: the words of a cells-only note (the command line says such notes as warnings)
LEFT_OUT = "left out (to include them: --all-rois"


def _kept_note(what: str, kept: int, n: int, other: str, param: str) -> str:
    """The note of a cells-only selection: how many were kept and left out."""
    left = n - kept
    return (f"only {what}: {kept} of {n} ROIs; {left} {other}{'' if left == 1 else 's'} "
            f"{LEFT_OUT} on the command line, {param}=False in Python)")


def load_suite2p(plane_dir, neuropil: float | None = None, only_cells: bool = True,
                 allow_pickle: bool = False, fs: float | None = None) -> PipelineData:
    """Traces (and, if allowed, footprints) from a suite2p plane folder.

    Reads suite2p 0.x planes (``ops.npy``) and 1.x planes (``settings.npy``,
    ``db.npy``, ``reg_outputs.npy``; ``ops.npy`` only with
    ``io.save_ops_orig``), and the ``combined`` folder suite2p writes for
    several planes.

    Parameters
    ----------
    plane_dir : path
        ``.../suite2p/plane0`` (or a ``suite2p`` folder with a single plane,
        or ``.../suite2p/combined``).
    neuropil : float, optional
        Traces are ``F - neuropil * Fneu``.  Default: the coefficient suite2p
        used, ``ops['neucoeff']`` (0.x) or
        ``settings['extraction']['neuropil_coefficient']`` (1.x), which needs
        ``allow_pickle``; else suite2p's default 0.7 (said in ``notes``).
    only_cells : bool
        Keep the ROIs marked as cells in ``iscell.npy`` (all if it is absent);
        ``notes`` gives the count.  False keeps every ROI.
    allow_pickle : bool
        Read ``stat.npy`` (footprints) and ``ops.npy`` or 1.x's
        ``settings.npy``/``db.npy``/``reg_outputs.npy`` (sampling rate,
        neuropil coefficient, image size, mean image), which suite2p stores
        as pickles.  Only for trusted folders.
    fs : float, optional
        Sampling rate in Hz; overrides the files' ``fs``.  Without it and
        without readable settings, ``fs`` is None and the caller must supply it.

    Raises
    ------
    FileNotFoundError
        The folder or ``F.npy``/``Fneu.npy`` is missing.
    ValueError
        A file is truncated or malformed (the message names the file and
        the missing key or the mismatching shape).
    """
    if neuropil is not None:
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
    if iscell_path.is_file() or only_cells:
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
            cells = np.flatnonzero(np.asarray(flag) > 0.5)
            if only_cells:
                keep = cells
                notes.append(_kept_note("cells (iscell.npy)", keep.size, n, "non-cell",
                                        "only_cells"))
            else:
                notes.append(f"all ROIs: {n - cells.size} non-cell(s) of iscell.npy included")
        else:
            notes.append("no iscell.npy: all ROIs kept")
    roi_ids = keep.astype(np.int64) + 1

    ops, ops_where = _suite2p_ops(plane, allow_pickle, notes)
    if neuropil is None:
        neuropil = _ops_neuropil(ops, ops_where) if ops is not None else None
        if neuropil is None:
            neuropil = 0.7
            notes.append("neuropil coefficient not in the files read: suite2p's default 0.7 used")
    traces = _neuropil_traces(plane, F, Fneu, keep, neuropil)
    # only suite2p's combined/ is padded (a lone plane folder never is: its
    # trailing zeros, a closed shutter say, are data as recorded)
    padded = _zero_padding(traces, F, Fneu, keep) if plane.name == "combined" else {}
    del F, Fneu
    if padded:
        notes.append(_padding_note(padded, traces.shape[1]))

    mean_image = labels = shared = None
    if ops is not None:
        if fs is None:
            if "fs" not in ops:
                raise ValueError(f"{ops_where} has no key 'fs' (sampling rate); pass fs")
            fs = ops["fs"]
        if ops.get("meanImg") is not None:
            mean_image = np.asarray(ops["meanImg"], dtype=np.float64)
            if mean_image.ndim != 2:
                raise ValueError(f"{ops_where}: 'meanImg' has shape {mean_image.shape}")
    if fs is not None:
        try:
            fs = float(np.asarray(fs).ravel()[0])
        except (TypeError, ValueError, IndexError):
            raise ValueError(f"sampling rate must be a positive number of Hz, got {fs!r}") from None
        if not (math.isfinite(fs) and fs > 0):
            raise ValueError(f"sampling rate must be a positive number of Hz, got {fs}")
    stat_path = plane / "stat.npy"
    if allow_pickle and stat_path.is_file():
        stat = _load_pickle(stat_path, "suite2p stat")
        try:
            stat = np.asarray(stat, dtype=object).ravel()
        except Exception as e:
            raise ValueError(f"{stat_path} is not a list of ROI dicts ({e})") from None
        if stat.shape[0] != n:
            raise ValueError(f"{stat_path} lists {stat.shape[0]} ROIs but F.npy has {n}")
        rois = _suite2p_rois(stat, stat_path)
        planes = _plane_note(stat, keep)
        if planes:
            notes.append(planes)
        if ops is not None and "Ly" in ops and "Lx" in ops:
            shape = _check_image_size((ops["Ly"], ops["Lx"]), f"{ops_where} 'Ly'/'Lx'")
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
            notes.append("image size not in the files read: taken from the ROIs' extent")
        if mean_image is not None and mean_image.shape != tuple(shape):
            notes.append(
                f"mean image {mean_image.shape} does not match the image size {tuple(shape)}: "
                "not shown"
            )
            mean_image = None
        labels = _suite2p_labels(rois, keep, roi_ids, shape, stat_path)
        # suite2p's 'overlap' flags a pixel in more than one of all the ROIs
        # detected (detection/stats.py), cells or not: the ids are index + 1
        shared = shared_pixels(((i + 1, y, x) for i, (y, x, _) in enumerate(rois)), shape)
        if shared is not None:
            notes.append(_shared_note(shared, "suite2p leaves them out of every trace, so "
                                              "the labels show them as background"))
    elif not allow_pickle and stat_path.is_file():
        notes.append(
            "stat.npy not read: suite2p stores it as a pickle (allow_pickle=True, CLI --allow-pickle)"
        )
    return PipelineData(
        traces=traces, fs=fs, roi_ids=roi_ids, labels=labels, mean_image=mean_image,
        source=str(plane), kind=f"F - {neuropil:g}*Fneu", notes=notes, shared=shared,
    )


# ---------------------------------------------------------------- CaImAn


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError(CAIMAN_EXTRA_MESSAGE) from None
    return h5py


def open_caiman_h5(path):
    """A CaImAn HDF5 file opened read-only, with clear errors (missing, not HDF5)."""
    h5py = _h5py()
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"CaImAn HDF5 file not found: {p}")
    try:
        return h5py.File(p, "r")
    except OSError as e:
        raise ValueError(f"{p} is truncated or not an HDF5 file ({e})") from None


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


# which CaImAn trace to read: name -> what it is
CAIMAN_TRACES = {
    "auto": "C + YrA where the file stores estimates/YrA, else estimates/C (the notes say which)",
    "C": "estimates/C: the denoised component traces (calab's default)",
    "C+YrA": "estimates/C + estimates/YrA: denoised plus residual, the raw trace",
    "F_dff": "estimates/F_dff: dF/F from cnm.estimates.detrend_df_f()",
}


#: napari's readers take no options: set to ``C`` (or ``C+YrA``, ``F_dff``)
#: before napari starts to choose which CaImAn trace the reader opens
CAIMAN_TRACE_ENV = "CATUNE_CAIMAN_TRACE"


def _caiman_trace_name(trace) -> str:
    key = "auto" if trace is None else str(trace).replace(" ", "")
    if key not in CAIMAN_TRACES:
        raise ValueError(
            f"trace must be one of {', '.join(map(repr, CAIMAN_TRACES))} (CaImAn's "
            f"C + YrA where stored else C, estimates/C, C + YrA, or F_dff), got {trace!r}"
        )
    return key


# the notes of the default choice: what was read and how to get the other
_CAIMAN_C_HOW = (f"trace='C' in Python, --caiman-trace C on the command line, "
                 f"{CAIMAN_TRACE_ENV}=C before starting napari")
_CAIMAN_AUTO_NOTE = (
    "traces: CaImAn's estimates/C + estimates/YrA (denoised plus residual: the raw-like "
    "trace CaImAn's own detrend_df_f and deconvolve start from); its denoised C alone: "
    + _CAIMAN_C_HOW
)
_CAIMAN_NO_YRA_NOTE = (
    "traces: CaImAn's estimates/C, as the file stores no residuals (estimates/YrA): C is "
    "already denoised (OASIS), so fits look perfect (SNR inf, R^2 1) and say little about "
    "the parameters; save the CNMF object with its YrA (cnm.save) to tune C + YrA"
)


def load_caiman_data(path, *, trace: str = "auto", only_accepted: bool = True,
                     fs: float | None = None) -> PipelineData:
    """Traces and footprints from a CaImAn ``CNMF.save`` HDF5 file.

    ``fs`` from ``params/data/fr``; footprints from the sparse
    ``estimates/A`` with ``params/data/dims`` (each pixel goes to the
    component with the largest weight there); ``estimates/Cn`` as the image.
    (:func:`napari_catune.load_caiman` is ``calab``'s call, ``(traces, meta)``.)

    Parameters
    ----------
    trace : {"auto", "C", "C+YrA", "F_dff"}
        Which trace.  ``"auto"`` (default): ``estimates/C + estimates/YrA``
        where the file stores ``YrA``, else ``estimates/C``, and a note says
        which.  ``C`` is CaImAn's denoised (OASIS) trace: a fit of it looks
        perfect whatever the parameters, so C + YrA (denoised plus residual,
        the raw-like trace CaImAn's own ``detrend_df_f`` and ``deconvolve``
        start from) is what to tune.  ``"C"``: ``estimates/C`` (as
        ``calab.load_caiman``); ``"C+YrA"``: C + YrA (an error without
        ``YrA``); ``"F_dff"``: ``estimates/F_dff`` (only if the file has it).
        Recorded as ``kind`` (``"C"``, ``"C + YrA"``, ``"F_dff"``).
    only_accepted : bool
        Keep only the components CaImAn accepted (``estimates/idx_components``)
        when the file has run component evaluation (the default, as suite2p's
        cells only); otherwise all are kept.  ``notes`` says which and how many.
    fs : float, optional
        Sampling rate in Hz; overrides ``params/data/fr``.
    """
    trace = _caiman_trace_name(trace)
    path = Path(path)
    with open_caiman_h5(path) as f:
        if "estimates" not in f:
            raise ValueError(
                f"{path} has no 'estimates' group: not a CaImAn CNMF file "
                "(save it with cnm.save('file.hdf5'))"
            )
        try:
            data = _read_caiman(f, path, trace, only_accepted)
        except (KeyError, OSError, TypeError) as e:
            raise ValueError(f"{path} is truncated or malformed ({e})") from None
        except ValueError as e:
            if str(path) in str(e):
                raise
            raise ValueError(f"{path} is malformed ({e})") from None
    if fs is not None:
        fs = float(fs)
        if not (math.isfinite(fs) and fs > 0):
            raise ValueError(f"fs must be a positive number of Hz, got {fs}")
        data.fs = fs
    return data


def load_caiman(path, only_accepted: bool = False) -> PipelineData:
    """Deprecated name of :func:`load_caiman_data` (a :class:`PipelineData`).

    ``napari_catune.load_caiman`` (:mod:`napari_catune.compat`) is calab's
    call, returning ``(traces, meta)``; use :func:`load_caiman_data` for
    traces with footprints.
    """
    import warnings

    warnings.warn(
        "napari_catune.loaders.load_caiman is renamed load_caiman_data; "
        "napari_catune.load_caiman is calab's (traces, meta) call",
        DeprecationWarning, stacklevel=2,
    )
    return load_caiman_data(path, only_accepted=only_accepted)


def _read_caiman(f, path: Path, trace: str, only_accepted: bool) -> PipelineData:
    C = _h5_get(f, "estimates/C")
    if C is None:
        raise ValueError(f"{path} has no key 'estimates/C' (the component traces)")
    C = np.asarray(C, dtype=np.float64)
    if C.ndim == 1:
        C = C.reshape(1, -1)
    if C.ndim != 2:
        raise ValueError(f"{path}: 'estimates/C' has shape {C.shape}; expected (n, T)")
    n = C.shape[0]
    notes = []
    if trace == "auto":
        if _h5_get(f, "estimates/YrA") is not None:
            trace = "C+YrA"
            notes.append(_CAIMAN_AUTO_NOTE)
        else:
            trace = "C"
            notes.append(_CAIMAN_NO_YRA_NOTE)
    if trace == "C":
        traces, kind = C, "C"
    else:
        name = "estimates/F_dff" if trace == "F_dff" else "estimates/YrA"
        extra = _h5_get(f, name)
        if extra is None:
            how = ("compute it with cnm.estimates.detrend_df_f() before cnm.save"
                   if trace == "F_dff" else "the file holds no residuals")
            raise ValueError(
                f"{path} has no '{name}' for trace={trace!r} ({how}); use trace='C'"
            )
        extra = np.asarray(extra, dtype=np.float64)
        if extra.ndim == 1 and C.shape[0] == 1:
            extra = extra.reshape(1, -1)
        if extra.shape != C.shape:
            raise ValueError(
                f"{path}: '{name}' has shape {extra.shape} but 'estimates/C' has {C.shape}"
            )
        traces, kind = (extra, "F_dff") if trace == "F_dff" else (C + extra, "C + YrA")

    fr = _h5_get(f, "params/data/fr")
    fs = None
    if fr is not None:
        fs = float(np.asarray(fr).ravel()[0])
        if not (math.isfinite(fs) and fs > 0):
            fs = None

    keep = np.arange(n)
    idx = _h5_get(f, "estimates/idx_components")
    if only_accepted:
        if idx is not None and np.size(idx):
            keep = np.unique(np.asarray(idx, dtype=np.int64).ravel())
            if keep.min() < 0 or keep.max() >= n:
                raise ValueError(
                    f"{path}: 'estimates/idx_components' out of range for {n} components"
                )
            notes.append(_kept_note("accepted components (estimates/idx_components)",
                                    keep.size, n, "rejected component", "only_accepted"))
        else:
            notes.append("no component evaluation in the file (estimates/idx_components): "
                         "all components kept")
    elif idx is not None and np.size(idx) and np.size(idx) < n:
        notes.append(f"all components: {n - np.size(idx)} rejected component(s) included")
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
        mean_image=image, source=str(path), kind=kind, notes=notes,
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


# ---------------------------------------------------------------- Minian

MINIAN_EXTRA_MESSAGE = (
    "reading Minian output needs zarr; install it with pip install zarr "
    "(or pip install 'napari-catune[zarr]')"
)


def _zarr():
    try:
        import zarr
    except ImportError:
        raise ImportError(MINIAN_EXTRA_MESSAGE) from None
    return zarr


def _minian_open(root: Path, name: str):
    """Minian's variable ``name`` under ``root`` as ``(zarr array, its group)``, or None.

    Minian's ``save_minian(var, dpath)`` writes each variable as an xarray
    Dataset in its own store ``dpath/<name>.zarr`` (the array ``<name>``
    with its coordinates, e.g. ``unit_id``, beside it).  ``root`` may be that
    ``dpath``, a ``<name>.zarr`` store itself, or any zarr group holding an
    array ``name`` (what ``calab.load_minian`` reads).
    """
    zarr = _zarr()
    for store in (root / f"{name}.zarr", root):
        if not store.is_dir():
            continue
        try:
            group = zarr.open_group(str(store), mode="r")
        except Exception:
            continue
        try:
            if name in group:
                arr = group[name]
                if hasattr(arr, "shape") and hasattr(arr, "dtype"):
                    return arr, group
        except Exception:
            continue
    return None


def _minian_keys(root: Path) -> list:
    zarr = _zarr()
    keys = sorted(q.name[:-5] for q in root.glob("*.zarr") if q.is_dir())
    if not keys:
        try:
            keys = sorted(zarr.open_group(str(root), mode="r").keys())
        except Exception:
            keys = []
    return keys


def _minian_ids(group, n: int):
    """Minian's ``unit_id`` coordinate of a variable's store, or None."""
    try:
        if "unit_id" not in group:
            return None
        ids = np.asarray(group["unit_id"][...]).ravel()
    except Exception:
        return None
    if ids.size != n or ids.dtype.kind not in "iu" or (n and ids.min() < 0):
        return None
    if np.unique(ids).size != n:
        return None
    return ids.astype(np.int64)


def load_minian_data(path, *, trace_key: str = "C", fs: float | None = None) -> PipelineData:
    """Traces (and footprints, image) from a Minian output folder.

    Reads the layout Minian's ``save_minian`` writes (``<dpath>/C.zarr``,
    ``A.zarr``, ``max_proj.zarr``: one xarray-style zarr store per variable,
    ``C`` with dims ``(unit_id, frame)``, ``A`` with ``(unit_id, height,
    width)``), or a zarr group holding the array ``trace_key`` (as
    ``calab.load_minian`` expects).  Minian stores no frame rate: pass
    ``fs`` (else None).  ROI ids are Minian's ``unit_id`` + 1 (label 0 is
    background) when the store has that coordinate, else row + 1.

    Raises FileNotFoundError for a missing folder, KeyError (also a
    ValueError) naming ``trace_key`` and the variables found when it is absent.
    """
    from .compat import MissingKeyError

    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"Minian output {root} not found")
    found = _minian_open(root, trace_key)
    if found is None:
        raise MissingKeyError(
            f"Minian output {root} has no variable {trace_key!r} (found: "
            f"{', '.join(_minian_keys(root)) or 'nothing readable'}); pass trace_key"
        )
    arr, group = found
    traces = np.asarray(arr[...], dtype=np.float64)
    if traces.ndim == 1:
        traces = traces.reshape(1, -1)
    if traces.ndim != 2:
        raise ValueError(f"{root}: {trace_key!r} has shape {traces.shape}; expected (units, frames)")
    dims = list(arr.attrs.get("_ARRAY_DIMENSIONS", [])) if hasattr(arr, "attrs") else []
    if dims == ["frame", "unit_id"]:
        traces = np.ascontiguousarray(traces.T)
    n = traces.shape[0]
    notes = []
    unit_ids = _minian_ids(group, n)
    roi_ids = unit_ids + 1 if unit_ids is not None else np.arange(1, n + 1)
    if fs is not None:
        fs = float(fs)
        if not (math.isfinite(fs) and fs > 0):
            raise ValueError(f"fs must be a positive number of Hz, got {fs}")
    else:
        notes.append("Minian stores no frame rate: pass fs")

    labels = None
    fp = _minian_open(root, "A")
    if fp is not None:
        A, a_group = fp
        a_ids = _minian_ids(a_group, A.shape[0]) if len(A.shape) == 3 else None
        if len(A.shape) != 3:
            notes.append(f"A has shape {A.shape}, not (unit_id, height, width): footprints not shown")
        elif a_ids is not None and unit_ids is not None and not np.array_equal(a_ids, unit_ids):
            order = {u: i for i, u in enumerate(a_ids.tolist())}
            if all(u in order for u in unit_ids.tolist()):
                labels = _minian_labels(A, [order[u] for u in unit_ids.tolist()], roi_ids)
            else:
                notes.append("A's unit_id do not cover C's: footprints not shown")
        elif A.shape[0] != n:
            notes.append(f"A has {A.shape[0]} units but {trace_key} has {n}: footprints not shown")
        else:
            labels = _minian_labels(A, list(range(n)), roi_ids)
    image = None
    mp = _minian_open(root, "max_proj")
    if mp is not None and len(mp[0].shape) == 2:
        image = np.asarray(mp[0][...], dtype=np.float64)
        if labels is not None and image.shape != labels.shape:
            image = None
    return PipelineData(
        traces=traces, fs=fs, roi_ids=roi_ids, labels=labels, mean_image=image,
        source=str(root), kind=f"minian {trace_key}", notes=notes,
    )


def _minian_labels(A, rows: list, roi_ids) -> np.ndarray:
    """Label image from Minian's dense footprints ``A`` (unit, height, width).

    Each pixel goes to the unit with the largest positive weight there; the
    units are read a few at a time, so memory holds one block and the image.
    """
    H, W = int(A.shape[1]), int(A.shape[2])
    _check_image_size((H, W), "Minian A")
    best = np.zeros((H, W), dtype=np.float64)
    labels = np.zeros((H, W), dtype=np.int32)
    step = max(1, _BLOCK_BYTES // max(1, 8 * H * W))
    for i in range(0, len(rows), step):
        sel = rows[i : i + step]
        lo, hi = sel[0], sel[-1] + 1
        contiguous = list(sel) == list(range(lo, hi))
        block = np.asarray(A[lo:hi], dtype=np.float64) if contiguous else None
        for k, r in enumerate(sel):
            w = block[r - lo] if contiguous else np.asarray(A[r], dtype=np.float64)
            w = np.where(np.isfinite(w), w, 0.0)
            win = w > best
            best[win] = w[win]
            labels[win] = roi_ids[i + k]
    return labels
