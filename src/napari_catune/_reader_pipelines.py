"""npe2 readers for pipeline outputs: a suite2p plane folder, a CaImAn HDF5 file,
a Minian output folder.

The getters only peek (file names, the HDF5 group list) and return ``None``
for anything that is not theirs, never raising.  The readers return the
background image as an Image layer and the ROI footprints as a Labels layer
whose ``metadata["catune"]`` carries the traces, ``fs``, ``roi_ids`` and the
source, so the CaTune tuner picks them up.

suite2p keeps footprints (``stat.npy``) and the mean image / sampling rate
(``ops.npy``) in pickles, which can run code when loaded.  The reader asks
the user once per folder; refused, the traces come as a grid of tiles (one
per ROI) and the tuner asks for the sampling rate.  A cellpose ``_seg.npy``
(also a pickle; :func:`napari_catune._reader.read_cellpose_seg`) is asked
about the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._reader import single_path

__all__ = ["get_suite2p_reader", "get_caiman_reader", "get_minian_reader"]

# (what, resolved path) -> the user's answer to "unpickle it?": a suite2p
# folder's stat.npy/ops.npy, a cellpose _seg.npy
_PICKLE_ANSWERS: dict = {}

_PICKLE_QUESTIONS = {
    "suite2p": (
        "Load suite2p ROI footprints?",
        "The suite2p folder\n{where}\nstores ROI footprints (stat.npy) and the "
        "sampling rate / neuropil coefficient / mean image (ops.npy, or settings.npy, "
        "db.npy and reg_outputs.npy) as Python pickles. Loading a pickle "
        "can run code: only do so for folders you or your pipeline wrote.\n\n"
        "Load them? (No: traces only, shown as a grid of tiles.)",
    ),
    "cellpose": (
        "Load cellpose masks?",
        "The cellpose file\n{where}\nstores its masks (with outlines and flows) as a "
        "Python pickle. Loading a pickle can run code: only do so for files you or "
        "your pipeline wrote.\n\nLoad it? (No: nothing is opened; cellpose's "
        "*_cp_masks.tif/.png hold the same masks without a pickle.)",
    ),
}


def ask_allow_pickle(where: str, kind: str = "suite2p") -> bool:
    """Ask (a Qt dialog) whether the pickles of ``where`` (a suite2p folder,
    ``kind="cellpose"``: a ``_seg.npy``) may be loaded.

    Without a running Qt application (scripts, headless) the answer is no.
    Tests replace this function.
    """
    try:
        from qtpy.QtWidgets import QApplication, QMessageBox
    except Exception:
        return False
    if QApplication.instance() is None:
        return False
    title, text = _PICKLE_QUESTIONS[kind]
    answer = QMessageBox.question(
        None, title, text.format(where=where),
        QMessageBox.Yes | QMessageBox.No,
        QMessageBox.No,
    )
    return answer == QMessageBox.Yes


def pickle_allowed(where, kind: str) -> bool:
    """The user's answer for ``where`` (asked once per path and session)."""
    key = str(Path(where).resolve())
    if (kind, key) not in _PICKLE_ANSWERS:
        _PICKLE_ANSWERS[kind, key] = bool(
            ask_allow_pickle(key) if kind == "suite2p" else ask_allow_pickle(key, kind))
    return _PICKLE_ANSWERS[kind, key]


# suite2p's pickled files: stat (footprints), ops (0.x), settings/db/reg_outputs (1.x)
_SUITE2P_PICKLES = ("stat.npy", "ops.npy", "settings.npy", "db.npy", "reg_outputs.npy")


def _allow_pickle(folder: Path) -> bool:
    if not any((folder / f).is_file() for f in _SUITE2P_PICKLES):
        return False
    return pickle_allowed(folder, "suite2p")


#: set (to 1) before napari starts to open every ROI of a suite2p, CaImAn or NWB
#: file, also the non-cells/rejected components (``napari-catune view --all-rois``)
ALL_ROIS_ENV = "CATUNE_ALL_ROIS"


def all_rois() -> bool:
    """Whether the readers keep every ROI (:data:`ALL_ROIS_ENV` set), not only cells."""
    return os.environ.get(ALL_ROIS_ENV, "").strip().lower() not in ("", "0", "false", "no")


def tell_selection(data, name: str) -> None:
    """A notification naming how many ROIs were left out and how to open them all.

    (npe2 readers take no options: the choice is the environment variable.)
    """
    for note in data.notes:
        if note.startswith("only ") and " left out" in note and " 0 " not in note.split(";")[1]:
            from napari.utils.notifications import show_info

            # "only cells (iscell.npy): 25 of 30 ROIs; 5 non-cells left out (...)":
            # the count first, as a collapsed notification shows the first words
            what, _, rest = note.split(" (to include")[0].partition(": ")
            count, _, left = rest.partition("; ")
            show_info(f"{name}: {count} opened, {what}; {left}. To open every ROI, start "
                      f"napari with {ALL_ROIS_ENV}=1 or use: napari-catune view --all-rois PATH")
            return


def _layers(data, name: str):
    from .loaders import tile_labels

    catune = {
        "traces": data.traces,
        "fs": data.fs,
        "roi_ids": np.asarray(data.roi_ids),
        "source": data.source,
        # what the traces are (e.g. "F - 0.7*Fneu", CaImAn's "C") and what the loader noted
        "kind": data.kind,
        "notes": list(data.notes),
        # the recording's time origin (s) and irregular frame times, for the exports
        "t0": float(getattr(data, "t0", 0.0) or 0.0),
        "timestamps": getattr(data, "timestamps", None),
    }
    if getattr(data, "shared", None) is not None:
        # pixels several ROIs share (loaders.shared_pixels): a click there names them all
        catune["shared"] = data.shared
    out = []
    if data.labels is not None:
        labels = data.labels
        if data.mean_image is not None and data.mean_image.shape == labels.shape:
            image_meta = {"name": f"{name} image", "metadata": {"catune": {"fs": data.fs}}}
            out.append((data.mean_image, image_meta, "image"))
    else:
        labels = tile_labels(data.traces.shape[0], ids=data.roi_ids)
    out.append((labels, {"name": f"{name} ROIs", "metadata": {"catune": catune}}, "labels"))
    return out


# ---------------------------------------------------------------- suite2p


def _refusing(message: str):
    """A reader that raises ``message``: for a folder CaTune is offered for
    but cannot read, so napari shows why (and what to open instead) rather
    than its generic "refused the file"."""

    def refuse(path):
        raise ValueError(message)

    return refuse


def _suite2p_refusal(p: str) -> str | None:
    """Why the folder ``p``, which looks like suite2p's (``plane*`` subfolders,
    or some of a plane's files), cannot be read; None if it does not."""
    from .loaders import _resolve_plane

    folder = Path(p)
    planes = [q for q in folder.glob("plane*") if q.is_dir()]
    files = [f for f in ("F.npy", "Fneu.npy", "iscell.npy", "stat.npy", "ops.npy")
             if (folder / f).is_file()]
    if not planes and not files:
        return None
    try:
        _resolve_plane(folder)
    except (ValueError, FileNotFoundError) as e:
        return str(e)
    return None


def get_suite2p_reader(path):
    """A reader for a suite2p plane folder (``F.npy`` + ``Fneu.npy``), else None.

    A ``suite2p`` folder with a single ``plane*`` subfolder is accepted too.
    A ``suite2p`` folder with several planes, or a plane folder missing
    ``F.npy``/``Fneu.npy``, gets a reader that raises the reason (e.g. "holds
    2 planes (plane0, plane1); pass one plane folder, ...").
    """
    try:
        from .loaders import find_suite2p_plane

        p = single_path(path)
        if p is None or not os.path.isdir(p):
            return None
        if find_suite2p_plane(p) is None:
            why = _suite2p_refusal(p)
            return None if why is None else _refusing(why)
    except Exception:
        return None
    return read_suite2p


def read_suite2p(path):
    """Read a suite2p plane folder: the mean image and the ROI footprints.

    Asks (once per folder) before unpickling ``stat.npy``/``ops.npy``.
    """
    from .loaders import find_suite2p_plane, load_suite2p

    p = single_path(path)
    plane = find_suite2p_plane(p) if p else None
    if plane is None:
        raise ValueError(f"{path!r} is not a suite2p plane folder (F.npy and Fneu.npy)")
    data = load_suite2p(plane, allow_pickle=_allow_pickle(plane), only_cells=not all_rois())
    tell_selection(data, f"suite2p {plane.name}")
    return _layers(data, f"suite2p {plane.name}")



# ---------------------------------------------------------------- CaImAn


def get_caiman_reader(path):
    """A reader for a CaImAn ``.hdf5``/``.h5`` file with an ``estimates`` group, else None."""
    try:
        p = single_path(path)
        if p is None or not p.lower().endswith((".hdf5", ".h5")) or not os.path.isfile(p):
            return None
        import h5py

        with h5py.File(p, "r") as f:
            if "estimates" not in f or not isinstance(f["estimates"], h5py.Group):
                return None
            if "C" not in f["estimates"]:
                return None
    except Exception:
        return None
    return read_caiman


def caiman_trace() -> str:
    """Which CaImAn trace the reader opens: :data:`~napari_catune.loaders.CAIMAN_TRACE_ENV`
    (``C``, ``C+YrA``, ``F_dff``), else ``"auto"`` (C + YrA where stored, else C).

    (npe2 readers take no options: the choice is the environment variable.)
    """
    from .loaders import CAIMAN_TRACE_ENV, CAIMAN_TRACES

    value = os.environ.get(CAIMAN_TRACE_ENV, "").strip().replace(" ", "")
    if not value:
        return "auto"
    if value not in CAIMAN_TRACES:
        raise ValueError(
            f"{CAIMAN_TRACE_ENV}={value!r} is not a CaImAn trace: set it to one of "
            f"{', '.join(CAIMAN_TRACES)} (or unset it for C + YrA) and start napari again"
        )
    return value


def read_caiman(path):
    """Read a CaImAn CNMF file: the correlation image and the footprints.

    The traces are ``estimates/C + estimates/YrA`` (the raw-like trace; C
    alone is already denoised, so its fits look perfect whatever the
    parameters) of the accepted components, ``estimates/C`` when the file
    stores no ``YrA`` (with a notification) or when
    ``CATUNE_CAIMAN_TRACE=C`` is set; all components with
    ``CATUNE_ALL_ROIS=1``.  ``metadata["catune"]["kind"]`` says which trace
    (the results' ``input_traces``), ``notes`` how to get C and how many
    were left out.
    """
    from .loaders import load_caiman_data

    p = single_path(path)
    trace = caiman_trace()
    data = load_caiman_data(p, trace=trace, only_accepted=not all_rois())
    tell_selection(data, Path(p).name)
    if trace == "auto" and data.kind == "C":
        from napari.utils.notifications import show_warning

        show_warning(f"{Path(p).name}: {data.notes[0]}")
    return _layers(data, Path(p).stem)


# ---------------------------------------------------------------- Minian


def _minian_store(folder: Path) -> bool:
    c = folder / "C.zarr" / "C"
    return c.is_dir() and ((c / ".zarray").is_file() or (c / "zarr.json").is_file())


#: what a folder must be for CaTune's readers (the last one's refusal says it)
FOLDERS_READ = (
    "a suite2p plane folder (F.npy and Fneu.npy, e.g. suite2p/plane0), a suite2p folder "
    "with one plane, suite2p's 'combined' folder, or a Minian output folder (C.zarr)"
)


def get_minian_reader(path):
    """A reader for a Minian output folder (``C.zarr`` as ``save_minian`` writes it).

    It is the last of CaTune's folder readers: any other folder gets a
    reader that raises what CaTune reads (:data:`FOLDERS_READ`), so napari
    says it instead of its generic "refused the file".
    """
    try:
        p = single_path(path)
        if p is None or not os.path.isdir(p):
            return None
        if not _minian_store(Path(p)):
            return _refusing(f"{p} is not a folder CaTune reads: it opens {FOLDERS_READ}")
    except Exception:
        return None
    return read_minian


def read_minian(path):
    """Read a Minian output folder: ``max_proj`` and the footprints ``A`` with the traces ``C``.

    Minian stores no frame rate: the tuner asks for it.
    """
    from .loaders import load_minian_data

    p = single_path(path)
    data = load_minian_data(p)
    return _layers(data, f"minian {Path(p).name}")
