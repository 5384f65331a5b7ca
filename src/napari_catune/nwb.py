"""Neurodata Without Borders (NWB) ophys files: traces in, results out.

Needs pynwb (``pip install 'napari-catune[nwb]'``); no Qt, no napari.

Reading (:func:`load_nwb`) takes a ``RoiResponseSeries`` from a
``Fluorescence`` or ``DfOverF`` container of a processing module, its
``PlaneSegmentation`` (the ROIs its ``rois`` region points to) and, when
present, a ``TwoPhotonSeries``.  The layouts of the two pipelines that
export NWB were checked against their writers:

* suite2p (``suite2p/io/nwb.py``, ``save_nwb``): module ``ophys`` with
  ``ImageSegmentation/PlaneSegmentation`` (``pixel_mask`` rows
  ``(ypix, xpix, lam)`` stored in the NWB fields ``(x, y, weight)``, an
  ``iscell`` column), ``Fluorescence``, ``Neuropil`` and ``Deconvolved``
  containers each holding a series per plane (``plane0``...),
  ``Backgrounds_0`` images (``meanImg``...) and an external-file
  ``TwoPhotonSeries`` whose ``rate`` is fs x nplanes.
* CaImAn (``Estimates.save_NWB``): module ``ophys`` with a
  ``PlaneSegmentation`` (description ``CNMF_ROIs``) of ``image_mask`` rows
  (the components, then the background components) and a ``Fluorescence``
  container whose ``RoiResponseSeries`` (C) has ``timestamps`` instead of a
  rate.  Each ``image_mask`` is ``A[:, i].reshape(dims)``: a column of A,
  whose pixels are in Fortran order over the movie's ``(d1, d2)``, reshaped
  in C order -- scrambled (the transpose when d1 == d2); it is re-read in
  Fortran order, which puts it on the movie CaImAn's ``save`` stores as
  ``(T, d1, d2)``.
* neuroconv (``general/source_script`` names NeuroConv): movie, images and
  ``image_mask`` stored (width, height), ``pixel_mask`` rows (row, column):
  the pixel masks' x and y are swapped to lie on the stored images.

NWB stores images as ``(x, y)`` arrays and ``pixel_mask`` / ``image_mask``
index them the same way, so the label image here is ``labels[x, y]``: the
first mask coordinate is the row, as suite2p's own reader takes it.  For
other writers the masks are checked against the movie or image shape: when
only the transpose fits, they are transposed, and ``notes`` says so (a
square plane cannot be checked; ``notes`` says the masks were taken as
stored).

Defaults: the first fluorescence series that is not neuropil, background or
deconvolved output (``series=`` picks another); for suite2p's
``Fluorescence`` with a matching ``Neuropil`` series the traces are
``F - 0.7 * Fneu`` (suite2p's default coefficient; ``neuropil_coefficient``).
ROI ids are the ``roi_id`` column when the table has one (files written
here), else the NWB ids themselves, + 1 only when one of the table's ids is
0 (labels start at 1; said in the notes).  A results ``.nwb`` keeps the input
file's ids as its PlaneSegmentation ids when given them (``nwb_ids``, as the
CLI does; without them, e.g. from the tuner, id = roi_id), so every output
joins back to the source file by id.

Writing (:func:`save_results_nwb`, called by ``results.save_results`` for a
``.nwb`` path) creates a new file, atomically: processing module ``ophys``
holds the ROIs (``ImageSegmentation/PlaneSegmentation`` with ``pixel_mask``
from the label image, or one placeholder tile per ROI when there are no
footprints, its description then starting "FOOTPRINTS NOT KNOWN", and a
``roi_id`` column; ``pixel_mask`` rows are ``(x, y, weight)`` with x the first
and y the second axis of the stored images, as the NWB schema's image dims
``(x, y)`` and ``image_mask`` ``(roi, x, y)`` define them (:data:`PIXEL_ORDER`,
also in the description); the label image itself as ``ROIImages/roi_labels``, which
records the plane's size: the movie is not copied and no placeholder
``TwoPhotonSeries`` is written), processing module ``catune`` the results: a
``Fluorescence`` container ``Deconvolution`` with ``RoiResponseSeries``
``activity``, ``fit`` and (per-frame baselines) ``baseline`` (unit "a.u. (units
of <input traces>)", on the input's time axis: ``starting_time`` = its t0, or
its irregular ``timestamps``), and
``DynamicTable``\\ s ``parameters`` (one row, with ``input_traces``, e.g.
``F - 0.7*Fneu``, and the CaTune export JSON in ``catune_export``), ``rois``
(per ROI: ``roi_id``, scalar ``baseline``, features) and ``events``.  The source file is never modified.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .loaders import PipelineData, _shared_note, shared_pixels

__all__ = ["load_nwb", "list_nwb_series", "plan_nwb_series", "save_results_nwb", "load_results_nwb",
           "NWB_EXTRA_MESSAGE", "TIMESTAMP_TOLERANCE"]

#: timestamps within this fraction of a frame interval of ``t0 + k / fs`` are
#: regular (written back as starting_time + rate); others are kept as they are
TIMESTAMP_TOLERANCE = 0.01

NWB_EXTRA_MESSAGE = (
    "reading and writing NWB files needs pynwb; install it with "
    "pip install 'napari-catune[nwb]'"
)
RESULTS_MODULE = "catune"
_SKIP = re.compile(r"neuropil|background|deconv|spike|spks|residual", re.IGNORECASE)
#: the pixel_mask convention of the files written here (the NWB schema's: its
#: images are (x, y) arrays, image_mask (roi, x, y), and pixel_mask's x and y
#: index them in that order; suite2p's save_nwb writes (ypix, xpix, lam) the
#: same way)
PIXEL_ORDER = ("pixel_mask rows are (x, y, weight) with x the first axis and y the second "
               "axis of the plane's images as stored here (ROIImages/roi_labels[x, y] == "
               "roi_id; in numpy/napari terms x = row, y = column), as the NWB schema "
               "defines images (x, y) and image_mask (roi, x, y)")
#: ``parameters.input_traces`` when the caller did not say what the traces were
NOT_RECORDED = "not recorded"
#: the ROI label image of results files (the plane's size; not a summary image)
LABEL_IMAGE = "roi_labels"
_IMAGE_PREFERENCE = ("meanImg", "mean", "mean_image", "average", "local_correlations", "Cn",
                     "Vcorr", "max_proj")


def _read_error(exc) -> str:
    """One line from hdmf's read errors, which carry whole builder dumps.

    ``ConstructError`` texts are ``(<object path> GroupBuilder {...}, "Could
    not construct X object due to: <reason>")``: keep the path and the reason.
    """
    text = str(exc)
    where = re.match(r"\(?\s*(\S+) (?:Group|Dataset)Builder", text)
    why = re.search(r"due to: (.*?)(?:[\"']\))?\s*$", text, re.DOTALL)
    if why:
        reason = " ".join(why.group(1).split())
        # "RoiResponseSeries.__init__: missing argument 'rois'" -> for people
        reason = re.sub(r"^(\w+)\.__init__: missing argument", r"\1 lacks its required", reason)
        text = f"{where.group(1)}: {reason}" if where else reason
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:200] + " ..."


def _pynwb():
    try:
        import pynwb
    except ImportError:
        raise ImportError(NWB_EXTRA_MESSAGE) from None
    return pynwb


# ---------------------------------------------------------------- reading


def _series(nwbfile):
    """(path, container type, series) of every RoiResponseSeries in a fluorescence container."""
    from pynwb.ophys import DfOverF, Fluorescence

    out = []
    for mod_name, mod in nwbfile.processing.items():
        for iface in mod.data_interfaces.values():
            if isinstance(iface, (Fluorescence, DfOverF)):
                kind = type(iface).__name__
                for name, rrs in iface.roi_response_series.items():
                    out.append((f"{mod_name}/{iface.name}/{name}", kind, rrs))
    return out


def list_nwb_series(path) -> list[str]:
    """``module/container/series`` of every fluorescence series in an NWB file."""
    pynwb = _pynwb()
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        return [p for p, _, _ in _series(io.read())]


def _pick(path, found, series):
    if not found:
        raise ValueError(
            f"{path}: no ROI traces found (no RoiResponseSeries in a Fluorescence or DfOverF "
            "container of a processing module)"
        )
    if series is not None:
        want = str(series).strip("/")
        hits = [f for f in found if f[0] == want or f[0].endswith("/" + want)]
        if len(hits) > 1:
            hits.sort(key=lambda f: (bool(_SKIP.search(f[0])), f[1] != "Fluorescence"))
            raise ValueError(
                f"{path}: series={series!r} matches several series: "
                f"{', '.join(p for p, _, _ in hits)}; give more of the path, e.g. "
                f"{hits[0][0].split('/', 1)[-1]!r}"
            )
        if not hits:
            raise ValueError(
                f"{path}: series={series!r} matches none of the file's series: "
                f"{', '.join(p for p, _, _ in found)}"
            )
        return hits[0]
    usable = [f for f in found if not _SKIP.search(f[0]) and not f[0].startswith(RESULTS_MODULE + "/")]
    if not usable and all(f[0].startswith(RESULTS_MODULE + "/") for f in found):
        raise ValueError(
            f"{path} is a napari-catune results file (processing module "
            f"{RESULTS_MODULE!r}: {', '.join(p for p, _, _ in found)}), not a recording: "
            "give the NWB file the traces came from; napari_catune.load_nwb(path, "
            "series=...) reads one of these series in Python"
        )
    if not usable:
        raise ValueError(
            f"{path}: only neuropil, background, deconvolved or napari-catune result series "
            f"here ({', '.join(p for p, _, _ in found)}); pick one with series=..."
        )
    # raw fluorescence before dF/F (the fit has its own baseline)
    usable.sort(key=lambda f: f[1] != "Fluorescence")
    return usable[0]


def _plane_rate(rrs):
    plane = getattr(getattr(getattr(rrs, "rois", None), "table", None), "imaging_plane", None)
    try:
        rate = float(getattr(plane, "imaging_rate", None) or "nan")
    except (TypeError, ValueError):
        return None
    return rate if math.isfinite(rate) and rate > 0 else None


def _group_key(rrs):
    """The ROIs a series is of: its table and the table rows of its region."""
    region = rrs.rois
    try:
        rows = tuple(int(r) for r in np.asarray(region.data[:]).ravel())
    except Exception:  # noqa: BLE001 - an odd region: a group of its own
        rows = (id(rrs),)
    return (id(region.table), rows)


def plan_nwb_series(path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Which series napari opens: one per set of ROIs (a PlaneSegmentation,
    or a plane's rows of one, as suite2p's ``plane0``, ``plane1``).

    Returns ``(opened, not_opened)``: ``opened`` is ``(series path, plane
    name)`` per plane, in file order, each the plane's raw ``Fluorescence``
    series (``DfOverF`` only for a table with no raw ``Fluorescence``
    series at all; raw planes first), as :func:`load_nwb`
    picks one; ``not_opened`` is ``(series path, why)`` for every other
    series (dF/F of the same ROIs, neuropil, deconvolved, napari-catune
    results ...).  Empty ``opened`` when nothing is usable (then
    :func:`load_nwb` says why).
    """
    pynwb = _pynwb()
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        found = _series(io.read())
        groups: dict = {}
        for f in found:
            if f[0].startswith(RESULTS_MODULE + "/"):
                continue
            groups.setdefault(_group_key(f[2]), []).append(f)
        # tables with a raw Fluorescence series: their dF/F-only groups (dF/F
        # kept for some of the ROIs, say) are not opened as planes of their own
        raw_tables = {key[0] for key, members in groups.items()
                      if any(f[1] == "Fluorescence" and not _SKIP.search(f[0]) for f in members)}
        chosen_all, taken = [], set()
        for key, members in groups.items():
            usable = [f for f in members if not _SKIP.search(f[0])]
            if not usable:
                continue
            usable.sort(key=lambda f: f[1] != "Fluorescence")
            chosen = usable[0]
            if chosen[1] != "Fluorescence" and key[0] in raw_tables:
                continue
            taken.add(chosen[0])
            chosen_all.append(chosen)
        # raw fluorescence planes first (the tuner defaults to the first layer)
        chosen_all.sort(key=lambda f: f[1] != "Fluorescence")
        opened = [(f[0], f[2].rois.table.name) for f in chosen_all]
        names = [n for _, n in opened]
        opened = [(p, n if names.count(n) == 1 else f"{n} {p.rsplit('/', 1)[-1]}")
                  for p, n in opened]
        not_opened = []
        for p, kind, rrs in found:
            if p in taken:
                continue
            if p.startswith(RESULTS_MODULE + "/"):
                why = "napari-catune results"
            elif _SKIP.search(p):
                why = "neuropil, background or deconvolved output" + (
                    " (subtracted from its Fluorescence series)" if "/Neuropil/" in p else "")
            elif kind == "DfOverF":
                why = "dF/F of ROIs whose raw fluorescence is opened"
                if _group_key(rrs) not in groups or all(
                        f[0] not in taken for f in groups[_group_key(rrs)]):
                    why = "dF/F of some ROIs of a table whose raw fluorescence is opened"
            else:
                why = "another series of ROIs already opened"
            not_opened.append((p, why))
    return opened, not_opened


def movie_key(path, series: str, shape) -> str | None:
    """The HDF5 path of the ``TwoPhotonSeries`` data of ``series``' plane, or None.

    The movie must be stored in the file (not ``external_file``), (T, x, y)
    with (x, y) == ``shape`` (the label image's), and image the same
    ``ImagingPlane`` as the series' ROI table.  Read with h5py only (no
    pynwb, nothing of the movie itself): the napari reader opens it lazily.
    """
    import h5py

    try:
        with h5py.File(str(path), "r") as f:
            table = f[f[f"processing/{series}/rois"].attrs["table"]]
            # (links resolve to different names: compare the planes' object_ids)
            plane = (table["imaging_plane"].attrs.get("object_id")
                     if "imaging_plane" in table else None)
            for name, grp in (f["acquisition"].items() if "acquisition" in f else ()):
                nd = grp.attrs.get("neurodata_type", b"")
                nd = nd.decode() if isinstance(nd, bytes) else str(nd)
                if nd != "TwoPhotonSeries" or not isinstance(grp.get("data"), h5py.Dataset):
                    continue
                data = grp["data"]
                if data.ndim != 3 or data.shape[0] < 2 or tuple(data.shape[1:]) != tuple(shape):
                    continue
                if plane is not None and "imaging_plane" in grp and \
                        grp["imaging_plane"].attrs.get("object_id") != plane:
                    continue
                return data.name
    except Exception:  # noqa: BLE001 - only an offer: no movie layer
        return None
    return None


def _fs_of(rrs, nwbfile, notes=None) -> tuple[float | None, str]:
    """(fs, where from) of a series: its ``rate``; else the least-squares
    fit of its timestamps (``_timebase.rate_from_timestamps``), compared
    with the imaging plane's ``imaging_rate`` (the timestamps win: they are
    the frames' measured times, the plane's rate a nominal setting that is
    often rounded or the volume rate of a multi-plane scan; a difference
    over 1e-4 is said); else the imaging plane's ``imaging_rate``."""
    from ._timebase import rate_from_timestamps

    notes = [] if notes is None else notes
    rate = getattr(rrs, "rate", None)
    if rate:
        return float(rate), "the series' rate"
    ts = getattr(rrs, "timestamps", None)
    plane_rate = _plane_rate(rrs)
    if ts is not None and len(ts) >= 2:
        fs, ts_notes = rate_from_timestamps(np.asarray(ts[:], dtype=np.float64))
        if fs is not None:
            notes.extend(ts_notes)
            if plane_rate is not None and abs(plane_rate / fs - 1) > 1e-4:
                notes.append(f"fs: the imaging plane's imaging_rate is {plane_rate:g} Hz, "
                             f"{(plane_rate / fs - 1) * 100:+.3g} % from the timestamps' "
                             f"{fs:.6g} Hz; the timestamps' rate is used (the frames' "
                             f"measured times; to use the plane's, set {plane_rate:g} in the tuner's fs "
                             f"field in napari, or pass --fs {plane_rate:g} to the command line)")
            return fs, "the series' timestamps (least-squares fit of time against frame)"
    if plane_rate is not None:
        return plane_rate, "the imaging plane's imaging_rate"
    return None, ""


def _time_of(rrs, fs) -> tuple[float, np.ndarray | None, str | None]:
    """(t0, irregular timestamps or None, note) of a series.

    ``t0`` is the series' ``starting_time`` or first timestamp.  Timestamps
    that stay within :data:`TIMESTAMP_TOLERANCE` of a frame interval of
    ``t0 + k / fs`` are regular (None is returned for them); others are
    returned, so that every output keeps them instead of an invented grid.
    """
    ts = getattr(rrs, "timestamps", None)
    if ts is None:
        t0 = float(getattr(rrs, "starting_time", None) or 0.0)
        return t0, None, (f"time origin: starting_time {t0:g} s (kept in the outputs)"
                          if t0 else None)
    ts = np.asarray(ts[:], dtype=np.float64).ravel()
    if ts.size == 0 or not np.isfinite(ts).all():
        return 0.0, None, "timestamps not usable (empty or non-finite): time origin 0 s"
    t0 = float(ts[0])
    if not fs or ts.size < 2:
        return t0, None, f"time origin: first timestamp {t0:g} s"
    off = float(np.max(np.abs(ts - (t0 + np.arange(ts.size) / fs))))
    if off <= TIMESTAMP_TOLERANCE / fs:
        return t0, None, f"time origin: first timestamp {t0:g} s (regular timestamps)"
    return t0, ts, (
        f"timestamps irregular (up to {off * 1e3:.3g} ms from {t0:g} s + frame / {fs:g} Hz): "
        "the outputs keep them; the deconvolution assumes the constant rate fs"
    )


def _suite2p_planes(nwbfile, chosen_path) -> bool:
    """suite2p's own multi-plane NWB (save_nwb): ``Fluorescence/planeN`` with
    a ``Neuropil`` container, and more than one ``planeN`` series."""
    mod_name, container, name = chosen_path.split("/")
    if container != "Fluorescence" or not re.fullmatch(r"plane\d+", name):
        return False
    series = getattr(nwbfile.processing[mod_name][container], "roi_response_series", {})
    return sum(bool(re.fullmatch(r"plane\d+", k)) for k in series) > 1


def _neuropil(nwbfile, chosen_path, rrs, coefficient):
    mod_name, container, name = chosen_path.split("/")
    if not coefficient or container != "Fluorescence":
        return None
    mod = nwbfile.processing[mod_name]
    if "Neuropil" not in mod.data_interfaces:
        return None
    neu = mod["Neuropil"]
    if name not in getattr(neu, "roi_response_series", {}):
        return None
    other = neu[name]
    if tuple(other.data.shape) != tuple(rrs.data.shape):
        return None
    return np.asarray(other.data[:], dtype=np.float64)


def _roi_ids(path, table, rows, notes) -> np.ndarray:
    """The ROI ids of ``rows``: the ``roi_id`` column (files written here), else
    the table's own ids, + 1 only when one of them is 0 (a label value cannot
    be 0; suite2p-style 0-based ids), so results join back to the file's ids."""
    if "roi_id" in table.colnames:
        ids = np.asarray(table["roi_id"].data[:])[rows]
        source = "its roi_id column"
    else:
        every = np.asarray(table.id.data[:])
        ids = every[rows]
        source = "the NWB ids"
        # (the whole table decides: another series of the file may name row 0)
        if ids.dtype.kind in "iu" and ids.size and every.min() == 0:
            ids = ids + 1
            source = ("the NWB ids + 1 (the file's ids start at 0, a label value cannot be 0; "
                      "the .nwb output's PlaneSegmentation ids are the file's)")
    ids = np.asarray(ids)
    if (ids.dtype.kind in "iu" and ids.size and ids.min() >= 1 and np.unique(ids).size == ids.size
            and ids.max() <= np.iinfo(np.int32).max):
        notes.append(f"ROI ids: {source}")
        return ids.astype(np.int64)
    notes.append(f"ROI ids: the rows of {table.name} + 1 ({source} were not usable labels)")
    return np.asarray(rows, dtype=np.int64) + 1


def _image_shape(nwbfile, table, module):
    """(X, Y) of the imaging plane for pixel masks: movie, reference images, images."""
    from pynwb.ophys import TwoPhotonSeries

    for ref in list(getattr(table, "reference_images", None) or []) + list(
            nwbfile.acquisition.values()):
        if isinstance(ref, TwoPhotonSeries):
            if ref.data is not None and len(getattr(ref.data, "shape", ())) >= 3 \
                    and ref.data.shape[0] > 0:
                return tuple(int(s) for s in ref.data.shape[1:3])
            dim = getattr(ref, "dimension", None)
            if dim is not None and len(dim) >= 2:
                return tuple(int(d) for d in dim[:2])
    img = _summary_image(module, None, LABEL_IMAGE)
    return None if img is None else img.shape


def _summary_image(module, shape, also=None, prefer=None):
    from pynwb.base import Images

    images = []
    for iface in module.data_interfaces.values():
        if isinstance(iface, Images):
            images.extend((iface.name != prefer, k, v) for k, v in iface.images.items()
                          if k != LABEL_IMAGE or also == LABEL_IMAGE)
    rank = {name: i for i, name in enumerate(_IMAGE_PREFERENCE)}
    images.sort(key=lambda kv: (kv[0], rank.get(kv[1], len(rank))))
    images = [(k, v) for _, k, v in images]
    for _, im in images:
        arr = np.asarray(im.data[:], dtype=np.float64)
        if arr.ndim == 2 and (shape is None or arr.shape == tuple(shape)):
            return arr
    return None


def _writer(nwbfile, table) -> str | None:
    """Which known writer made ``table``, for the two whose masks need a fix.

    * neuroconv (``general/source_script`` names NeuroConv): its movie,
      images and ``image_mask`` are stored (width, height), transposed from
      roiextractors' (height, width), but ``pixel_mask`` rows are written as
      roiextractors holds them, (row, column, weight): x indexes the stored
      images' second axis.
    * CaImAn's ``Estimates.save_NWB`` (description ``CNMF_ROIs``, or its
      r/snr/accepted/rejected columns): ``image_mask`` is a column of A
      (pixels in Fortran order over the movie's (d1, d2)) reshaped to dims
      in C order, so the stored array is scrambled (transposed when square).
    """
    script = str(getattr(nwbfile, "source_script", None) or "")
    if "neuroconv" in script.lower():
        return "neuroconv"
    cols = set(getattr(table, "colnames", ()))
    if str(getattr(table, "description", "")) == "CNMF_ROIs" or \
            {"r", "snr", "accepted", "rejected"} <= cols:
        return "caiman"
    return None


def _orient(shape, frame, notes, what, known=False) -> bool:
    """Whether masks of ``shape`` must be transposed to lie on the ``frame``
    (movie/images) shape; the note says what was decided and why (``known``:
    the writer's convention is known, so a square plane needs no caveat)."""
    shape = tuple(shape)
    if frame is None:
        notes.append(f"{what}: as stored (no movie or image in the file to check against)")
        return False
    frame = tuple(frame)
    if shape == frame:
        if shape[0] == shape[1] and not known:
            notes.append(f"{what}: as stored, on the same (x, y) axes as the movie/images "
                         "(square plane: the orientation cannot be checked from the shapes)")
        return False
    if shape == frame[::-1]:
        notes.append(f"{what}: stored {shape} but the movie/images are {frame}; masks "
                     "transposed to lie on them")
        return True
    notes.append(f"{what}: stored {shape} does not match the movie/images {frame}; drawn "
                 "as stored (check them against the movie)")
    return False


def _labels(path, table, rows, ids, nwbfile, module, notes, where=None):
    cols = table.colnames
    writer = _writer(nwbfile, table)
    frame = _image_shape(nwbfile, table, module)
    if "image_mask" in cols:
        data = table["image_mask"].data
        shape = tuple(int(s) for s in data.shape[1:3])
        caiman = writer == "caiman" and len(data.shape) == 3
        if caiman:
            notes.append("footprints: CaImAn save_NWB image_mask (a column of A, pixels in "
                         "Fortran order, reshaped in C order): re-read in Fortran order onto "
                         "the movie's (d1, d2) axes")
        flip = _orient(shape, frame, notes, "footprints: image_mask", known=caiman)
        out = shape[::-1] if flip else shape
        labels = np.zeros(out, dtype=np.int32)
        best = np.zeros(out, dtype=np.float64)
        for rid, r in zip(ids, rows):
            m = np.asarray(data[int(r)], dtype=np.float64)
            if caiman:
                m = m.ravel().reshape(shape, order="F")
            if flip:
                m = m.T
            take = m > best  # overlaps go to the ROI with the larger weight
            labels[take], best[take] = rid, m[take]
        notes.append("footprints: image_mask")
        return labels, None
    col = "pixel_mask" if "pixel_mask" in cols else "voxel_mask" if "voxel_mask" in cols else None
    if col is not None:
        index = table[col]
        ends = np.asarray(index.data[:], dtype=np.int64)
        pix = index.target.data[:]
        names = pix.dtype.names or ()
        width = 3 if col == "pixel_mask" else 4
        if names:
            parts = [np.asarray(pix[n]) for n in names[:width]]
        else:
            pix = np.asarray(pix)
            parts = [pix[:, i] for i in range(width)]
        if col == "voxel_mask":
            # suite2p's save_nwb: (ypix, xpix, iplane, lam), the third
            # coordinate the plane index; one plane's ROIs are a 2-D mask
            px, py, pz, pw = parts
            pz = np.round(np.asarray(pz, dtype=np.float64)).astype(np.int64)
            sel = np.concatenate([np.arange(ends[r - 1] if r > 0 else 0, ends[r])
                                  for r in rows]) if len(rows) else np.zeros(0, np.int64)
            zs = np.unique(pz[sel])
            if zs.size > 1:
                notes.append(f"footprints: voxel_mask ROIs on {zs.size} planes (z = "
                             f"{', '.join(map(str, zs[:6]))}): not drawn; ROIs shown as tiles "
                             "(open one plane's series, e.g. plane0)")
                return None, None
            if where is not None and zs.size:
                where["plane"] = int(zs[0])
            notes.append(f"footprints: voxel_mask (x, y, z, weight) of plane z = "
                         f"{int(zs[0]) if zs.size else 0}, drawn as that plane's 2-D masks")
        else:
            px, py, pw = parts
        px = np.round(np.asarray(px, dtype=np.float64)).astype(np.int64)
        py = np.round(np.asarray(py, dtype=np.float64)).astype(np.int64)
        pw = np.asarray(pw, dtype=np.float64)
        shape = frame
        if writer == "neuroconv":
            px, py = py, px
            notes.append("footprints: pixel_mask written by neuroconv as (row, column) of the "
                         "(height, width) frame while its movie/images are stored (width, "
                         "height): x and y swapped to lie on them")
        elif shape is not None and px.size:
            fits = px.max() < shape[0] and py.max() < shape[1]
            if not fits and px.max() < shape[1] and py.max() < shape[0]:
                px, py = py, px
                notes.append(f"footprints: pixel_mask x up to {int(py.max())} and y up to "
                             f"{int(px.max())} only fit the movie/images {tuple(shape)} "
                             "swapped: x and y swapped")
            elif shape[0] == shape[1]:
                notes.append("footprints: pixel_mask x = first axis of the movie/images, as "
                             "the NWB schema and suite2p's save_nwb write it (square plane: "
                             "cannot be checked from the shapes)")
        if shape is None:
            shape = (int(px.max(initial=-1)) + 1, int(py.max(initial=-1)) + 1)
            notes.append("image size: from the largest pixel coordinates (no movie or image)")
        labels = np.zeros(shape, dtype=np.int32)
        best = np.zeros(shape, dtype=np.float64)
        masks = []
        for rid, r in zip(ids, rows):
            a, b = (ends[r - 1] if r > 0 else 0), ends[r]
            x, y, w = px[a:b], py[a:b], pw[a:b]
            ok = (w > 0) & (x >= 0) & (y >= 0) & (x < shape[0]) & (y < shape[1])
            x, y, w = x[ok], y[ok], w[ok]
            masks.append((rid, x, y))
            take = w > best[x, y]
            labels[x[take], y[take]], best[x[take], y[take]] = rid, w[take]
        if col == "pixel_mask":
            notes.append("footprints: pixel_mask")
        shared = shared_pixels(masks, shape)
        if shared is not None:
            notes.append(_shared_note(shared, "the labels show each as the ROI of the larger "
                                              "weight"))
        return labels, shared
    return None, None


def _movie_mean(nwbfile, shape, limit: int = 200):
    from pynwb.ophys import TwoPhotonSeries

    for acq in nwbfile.acquisition.values():
        if isinstance(acq, TwoPhotonSeries) and acq.data is not None:
            data = acq.data
            if len(getattr(data, "shape", ())) == 3 and data.shape[0] > 0 \
                    and tuple(data.shape[1:]) == tuple(shape):
                return np.asarray(data[: min(limit, data.shape[0])], dtype=np.float64).mean(axis=0)
    return None


def load_nwb(path, *, series: str | None = None, neuropil_coefficient: float = 0.7,
             only_cells: bool = True) -> PipelineData:
    """Read ROI traces, fs, ids and footprints from an NWB ophys file.

    Parameters
    ----------
    path : str or Path
        An ``.nwb`` (HDF5) file.
    series : str, optional
        Which ``RoiResponseSeries``: its name or a ``module/container/series``
        path (:func:`list_nwb_series` lists them).  Default: the first
        fluorescence series that is not neuropil, background or deconvolved.
    neuropil_coefficient : float
        For a ``Fluorescence`` series with a same-named ``Neuropil`` series
        (suite2p's layout): traces = F - coefficient * Fneu.  0 keeps F.
    only_cells : bool
        Keep only the ROIs the pipeline classed as cells: suite2p's ``iscell``
        column (first value > 0.5) or CaImAn's ``keep`` column (the
        component is in ``idx_components``), as suite2p's folders are read
        by default.  A table with neither keeps all; ``notes`` says which and
        how many.  False keeps every ROI.

    Returns
    -------
    PipelineData
        ``traces`` (n, T) float64, ``fs`` (Hz or None), ``roi_ids``,
        ``labels`` (X, Y) int32 or None, ``mean_image`` or None, ``kind`` (the
        series path) and ``notes`` (what was chosen and why).
    """
    pynwb = _pynwb()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NWB file not found: {path}")
    try:
        coefficient = float(neuropil_coefficient)
    except (TypeError, ValueError):
        raise ValueError(
            f"neuropil_coefficient must be a number, got {neuropil_coefficient!r}") from None
    if not (math.isfinite(coefficient) and coefficient >= 0):
        raise ValueError(f"neuropil_coefficient must be >= 0, got {neuropil_coefficient!r}")
    try:
        io = pynwb.NWBHDF5IO(str(path), "r")
    except Exception as exc:  # noqa: BLE001 - h5py/hdmf raise many kinds
        raise ValueError(f"{path} is not a readable NWB (HDF5) file: {exc}") from None
    with io:
        try:
            nwbfile = io.read()
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"{path} is not a readable NWB file: {_read_error(exc)}; "
                             "check it with nwbinspector or pynwb") from None
        found = _series(nwbfile)
        chosen_path, kind, rrs = _pick(path, found, series)
        notes = [f"traces: {chosen_path} ({kind})"]
        others = [p for p, _, _ in found if p != chosen_path]
        if others:
            notes.append("other series: " + ", ".join(others))
        data = np.asarray(rrs.data[:], dtype=np.float64)
        if data.ndim == 1:
            data = data[:, None]
        if data.ndim != 2:
            raise ValueError(f"{path}: {chosen_path} has shape {data.shape}; expected (time, rois)")
        neu = _neuropil(nwbfile, chosen_path, rrs, coefficient)
        label = chosen_path
        raw = data
        if neu is not None:
            data = data - coefficient * neu
            label = f"{chosen_path} - {coefficient:g}*Neuropil"
            notes.append(f"neuropil subtracted: F - {coefficient:g} * Fneu (suite2p layout)")
        traces = np.ascontiguousarray(data.T)
        # suite2p's save_nwb zero-pads a plane with fewer frames, as combined/
        pad = neu is not None and _suite2p_planes(nwbfile, chosen_path)
        src_rows = np.arange(traces.shape[0])
        if not pad:
            del raw
        if not np.isfinite(traces).all():
            from ._padding import BAD, row_lengths

            # (NaN padding at a row's end is kept: solved on the finite part)
            rows = np.flatnonzero(row_lengths(traces) == BAD)
            if rows.size:
                raise ValueError(
                    f"{path}: {chosen_path} has non-finite values (NaN/inf) before the end "
                    f"of ROI rows {', '.join(map(str, rows[:5]))}; fix the file or pick "
                    "another series"
                )
        region = rrs.rois
        rows = np.asarray(region.data[:], dtype=np.int64).ravel()
        if rows.size != traces.shape[0]:
            raise ValueError(
                f"{path}: {chosen_path} has {traces.shape[0]} ROI columns but its rois region "
                f"names {rows.size} ROIs"
            )
        table = region.table
        ids = _roi_ids(path, table, rows, notes)
        nwb_ids = np.asarray(table.id.data[:], dtype=np.int64)[rows]
        if np.unique(nwb_ids).size != nwb_ids.size:
            nwb_ids = None  # duplicate ids: the .nwb output writes the ROI ids instead
        keep = _cell_rows(table, rows, notes if only_cells else [])
        if only_cells and keep is not None:
            traces, rows, ids = traces[keep], rows[keep], ids[keep]
            src_rows = src_rows[keep]
            nwb_ids = None if nwb_ids is None else nwb_ids[keep]
        elif keep is not None:
            notes.append(f"all ROIs: {rows.size - keep.size} non-cell(s) of the iscell/keep "
                         "column included")
        if pad:
            from .loaders import _padding_note, _zero_padding

            padded = _zero_padding(traces, raw.T, neu.T, src_rows)
            del raw
            if padded:
                notes.append(_padding_note(padded, traces.shape[1],
                                           "when it writes several planes to one NWB file"))
        module = next((m for m in nwbfile.processing.values()
                       if table.name in getattr(m, "data_interfaces", {}) or any(
                           table in getattr(i, "plane_segmentations", {}).values()
                           for i in m.data_interfaces.values())),
                      nwbfile.processing[chosen_path.split("/")[0]])
        where = {}
        labels, shared = _labels(path, table, rows, ids, nwbfile, module, notes, where) \
            if hasattr(table, "colnames") else (None, None)
        mean = None
        if labels is not None:
            # suite2p's save_nwb: one Images container per plane, Backgrounds_<plane>
            mean = _summary_image(module, labels.shape,
                                  prefer=f"Backgrounds_{where['plane']}" if "plane" in where
                                  else None)
            if mean is None:
                mean = _movie_mean(nwbfile, labels.shape)
        fs_notes = []
        fs, fs_from = _fs_of(rrs, nwbfile, fs_notes)
        if fs is not None:
            notes.append(f"fs: {fs:.7g} Hz from {fs_from}")
        notes.extend(fs_notes)
        t0, stamps, time_note = _time_of(rrs, fs)
        if stamps is not None and stamps.size != traces.shape[1]:
            raise ValueError(f"{path}: {chosen_path} has {stamps.size} timestamps for "
                             f"{traces.shape[1]} frames")
        if time_note:
            notes.append(time_note)
    return PipelineData(traces=traces, fs=fs, roi_ids=ids, labels=labels, mean_image=mean,
                        source=str(path), kind=label, notes=notes, t0=t0, timestamps=stamps,
                        shared=shared, nwb_ids=nwb_ids)


def _cell_rows(table, rows: np.ndarray, notes: list):
    """Which of ``rows`` the pipeline classed as cells, or None (keep all).

    suite2p's ``save_nwb`` adds an ``iscell`` column of (iscell, probcell)
    pairs; CaImAn's ``save_NWB`` a boolean ``keep`` (in ``idx_components``).
    """
    names = tuple(getattr(table, "colnames", ()))
    for col in ("iscell", "keep"):
        if col not in names:
            continue
        values = np.asarray(table[col].data[:])
        if values.ndim == 2:
            values = values[:, 0]
        if values.ndim != 1 or values.dtype.kind not in "biuf" or values.size <= rows.max(initial=0):
            notes.append(f"column {col!r} unreadable: all ROIs kept")
            return None
        keep = np.flatnonzero(values.astype(float)[rows] > 0.5)
        from .loaders import _kept_note

        notes.append(_kept_note(f"cells ({col!r} column)", keep.size, rows.size, "non-cell",
                                "only_cells"))
        return keep
    notes.append("no iscell/keep column: all ROIs kept")
    return None


# ---------------------------------------------------------------- writing


def _tile_or_labels(labels, ids):
    from .loaders import tile_labels

    if labels is None:
        return tile_labels(len(ids), ids=ids), (
            "FOOTPRINTS NOT KNOWN: the deconvolved traces came without a label image, so each "
            "ROI is a placeholder square tile (not its shape or place); " + PIXEL_ORDER)
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 2-D integer label image, got {labels.dtype} "
                         f"{labels.shape}")
    return labels, "ROI footprints from the label image (value = roi_id); " + PIXEL_ORDER


def _pixel_masks(labels, ids):
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")
    sorted_vals = flat[order]
    for rid in ids:
        a, b = np.searchsorted(sorted_vals, [rid, rid + 1])
        idx = order[a:b]
        if idx.size == 0:  # NWB needs at least one pixel: one of weight 0
            yield np.zeros((1, 3))
            continue
        x, y = np.unravel_index(idx, labels.shape)
        yield np.column_stack([x, y, np.ones(idx.size)]).astype(np.float64)


def _source_info(source, input_traces) -> dict | None:
    """What a results file records of an NWB source: its ``identifier``, the
    deconvolved series (its path, ``object_id`` and ``unit``), its ROI
    table's name and ``object_id``, and its imaging plane (name,
    description, indicator, location, excitation_lambda, imaging_rate,
    device, optical channel).  ``input_traces`` (e.g.
    ``ophys/Fluorescence/plane0 - 0.7*Neuropil``) names the series.  None
    when the source is not a readable NWB file; series fields only when
    the series is found."""
    if not (source and str(source).lower().endswith(".nwb") and os.path.isfile(str(source))):
        return None
    try:
        pynwb = _pynwb()
        with pynwb.NWBHDF5IO(str(source), "r") as io:
            f = io.read()
            info = {"identifier": str(f.identifier), "file": Path(str(source)).name,
                    "session_start_time": f.session_start_time}
            said = str(input_traces or "")
            hits = [x for x in _series(f) if said == x[0] or said.startswith(x[0] + " ")]
            if not hits:
                return info
            spath, _, rrs = max(hits, key=lambda x: len(x[0]))
            table = rrs.rois.table
            info.update(series=spath, series_object_id=str(rrs.object_id),
                        unit=str(getattr(rrs, "unit", "") or ""),
                        table=str(table.name), table_object_id=str(table.object_id))
            plane = getattr(table, "imaging_plane", None)
            if plane is not None:
                dev = getattr(plane, "device", None)
                oc = list(getattr(plane, "optical_channel", None) or [])
                info["plane"] = {
                    "name": str(plane.name),
                    "object_id": str(plane.object_id),
                    "description": str(getattr(plane, "description", "") or ""),
                    "indicator": str(getattr(plane, "indicator", "") or "unknown"),
                    "location": str(getattr(plane, "location", "") or "unknown"),
                    "excitation_lambda": float(getattr(plane, "excitation_lambda", None)
                                               or float("nan")),
                    "imaging_rate": getattr(plane, "imaging_rate", None),
                    "device": None if dev is None else str(dev.name),
                    "device_description": None if dev is None else
                    str(getattr(dev, "description", "") or ""),
                    "optical_channel": None if not oc else {
                        "name": str(oc[0].name), "description": str(oc[0].description),
                        "emission_lambda": float(oc[0].emission_lambda)},
                }
            return info
    except Exception:  # noqa: BLE001 - only metadata: the results are written without it
        return None


def _session_start(source):
    if source and str(source).lower().endswith(".nwb") and os.path.isfile(str(source)):
        try:
            pynwb = _pynwb()
            with pynwb.NWBHDF5IO(str(source), "r") as io:
                return io.read().session_start_time
        except Exception:  # noqa: BLE001 - only a nicety
            pass
    return datetime.now(timezone.utc)


def _columns(table: dict | None, skip=()) -> list:
    from hdmf.common import VectorData

    out = []
    for key, arr in (table or {}).items():
        if key in skip:
            continue
        data = [str(v) for v in arr] if arr.dtype.kind in "US" else np.asarray(arr)
        out.append(VectorData(name=key, description=key, data=data))
    return out


#: bytes of a (frames, ROIs) block written at a time, and at most of an HDF5 chunk
_BLOCK_BYTES = 32 << 20
_HDF5_CHUNK_BYTES = 1 << 20


#: free bytes kept on the output's disk beyond the next block: what HDF5 may
#: still write when its objects close after a block is refused.  Its chunk
#: cache holds at most 1 MiB of unwritten chunks per open dataset (h5py's
#: default rdcc_nbytes; our chunks are at most _HDF5_CHUNK_BYTES), and a
#: results file has at most 4 (T, n) datasets: 4 MB; the metadata written at
#: close (object headers, the small tables) is well under 1 MB.  8 MB covers
#: both with room to spare, without refusing a 1 MB file on a disk with 20 MB
#: free (a fixed 32 MB did).  The block itself is counted by each check.
_ROOM_MARGIN = 8 << 20


def _check_room_for(folder, nbytes: int) -> None:
    """OSError(ENOSPC) when ``folder``'s disk has less than ``nbytes`` (the
    next block) + :data:`_ROOM_MARGIN` free.

    Checked before each block: HDF5 must never meet the full disk itself.
    When it does, the datasets it then fails to close stay open in the
    library, and its exit handler (H5_term_library -> H5D_close) crashed on
    them with SIGSEGV after the message (the thirty-ninth round; closing
    those ids by hand crashes the same way).  Stopping while there is still
    room lets every object close cleanly.
    """
    if folder is None:
        return
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return
    free = st.f_bavail * st.f_frsize
    if free < nbytes + _ROOM_MARGIN:
        raise OSError(errno.ENOSPC, f"no space left on {folder} for the next block "
                      f"({free} bytes free)")


def _frames_by_rois(rows, folder=None):
    """An (n, T) array (or a ``results.RowSpool`` on disk) as the (T, n) data of
    a RoiResponseSeries, written a block of frames at a time: hdmf's
    ``GenericDataChunkIterator`` (one block in memory, no transposed copy of
    the whole array); chunked (at most ~1 MB a chunk, whole rows of ROIs).
    With ``folder`` (the output's), each block first checks the room for it
    (:func:`_check_room_for`)."""
    from hdmf.data_utils import GenericDataChunkIterator

    n, t = (int(v) for v in rows.shape)

    class _Blocks(GenericDataChunkIterator):
        def _get_data(self, selection):
            frames, rois = selection
            block = np.ascontiguousarray(np.asarray(rows[rois, frames], dtype=np.float64).T)
            _check_room_for(folder, block.nbytes)
            return block

        def _get_maxshape(self):
            return (t, n)

        def _get_dtype(self):
            return np.dtype(np.float64)

    chunk_t = max(1, min(t, _HDF5_CHUNK_BYTES // (8 * max(n, 1))))
    block_t = min(t, chunk_t * max(1, _BLOCK_BYTES // (8 * max(n, 1) * chunk_t)))
    return _Blocks(chunk_shape=(chunk_t, max(n, 1)), buffer_shape=(block_t, max(n, 1)))


def save_results_nwb(path, *, activity, fit, baseline, events, roi_ids, fs, params, features,
                     labels=None, source=None, t0=0.0, timestamps=None,
                     input_traces=None, fitted_trace=None, nwb_ids=None) -> Path:
    """Write results as a new NWB file (layout in the module docstring), atomically.

    Arguments as :func:`napari_catune.results.save_results` (already
    validated there); ``nwb_ids``: the PlaneSegmentation ids of an NWB input's
    ROIs, written back as the ids (default: the ROI ids).
    """
    pynwb = _pynwb()
    from hdmf.common import DynamicTable, VectorData
    from pynwb.base import Images
    from pynwb.image import GrayscaleImage
    from pynwb.ophys import Fluorescence, ImageSegmentation, OpticalChannel

    from ._atomic import atomic_write_via_path
    from ._version import __version__
    from .events import FRAME0_NOTE
    from .params import _export_dict, _formulation

    path = Path(path)
    try:
        from ._atomic import resolve_target

        folder = resolve_target(path).parent
    except (ValueError, FileNotFoundError):
        folder = None  # refused by the atomic writer below, with its own message
    ids = np.asarray(roi_ids, dtype=np.int64)
    n, t = activity.shape
    lab, mask_note = _tile_or_labels(labels, ids)
    src_name = Path(str(source)).name if source else None
    src = _source_info(source, input_traces)  # an NWB source: identifier, object ids, plane
    src_plane = (src or {}).get("plane")

    extra = {}
    if "was_generated_by" in {a["name"] for a in pynwb.NWBFile.__init__.__docval__["args"]}:
        extra["was_generated_by"] = [["napari-catune", __version__]]
    nwbfile = pynwb.NWBFile(
        session_description="napari-catune deconvolution results"
        + (f" for {src_name}" if src_name else "")
        + (f" (NWB identifier {src['identifier']})" if src else ""),
        identifier=uuid.uuid4().hex,
        session_start_time=src["session_start_time"] if src else _session_start(source),
        source_script=f"napari-catune {__version__}",
        source_script_file_name="napari_catune/nwb.py",
        **extra,
    )
    if src_plane is not None:
        dev_name = src_plane["device"] or "unknown_device"
        device = nwbfile.create_device(
            name=dev_name, description=src_plane["device_description"] or
            f"the device of {src['file']}'s {src_plane['name']}")
        oc = src_plane["optical_channel"] or {"name": "OpticalChannel",
                                              "description": "not recorded",
                                              "emission_lambda": float("nan")}
        rate = src_plane["imaging_rate"]
        plane = nwbfile.create_imaging_plane(
            name="ImagingPlane", optical_channel=OpticalChannel(**oc),
            description=f"{src_plane['name']} of {src['file']} (NWB identifier "
                        f"{src['identifier']}, object_id {src_plane['object_id']})"
                        + (f": {src_plane['description']}" if src_plane["description"] else ""),
            device=device, excitation_lambda=src_plane["excitation_lambda"],
            imaging_rate=float(rate) if rate else float(fs),
            indicator=src_plane["indicator"], location=src_plane["location"],
        )
    else:
        device = nwbfile.create_device(name="unknown_device",
                                       description="not recorded by napari-catune")
        plane = nwbfile.create_imaging_plane(
            name="ImagingPlane",
            optical_channel=OpticalChannel(name="OpticalChannel", description="not recorded",
                                           emission_lambda=float("nan")),
            description="the plane the ROI traces came from (details not recorded)",
            device=device, excitation_lambda=float("nan"), imaging_rate=float(fs),
            indicator="unknown", location="unknown",
        )
    ophys = nwbfile.create_processing_module(name="ophys",
                                             description="ROIs whose traces were deconvolved")
    seg = ImageSegmentation()
    ophys.add(seg)
    ps = seg.create_plane_segmentation(name="PlaneSegmentation", description=mask_note,
                                       imaging_plane=plane)
    # the movie is not copied (no TwoPhotonSeries); the label image records the
    # plane's size, which pixel masks alone do not
    ophys.add(Images(name="ROIImages", description="the ROI label image (0 = background)",
                     images=[GrayscaleImage(name=LABEL_IMAGE, data=np.asarray(lab, np.int32),
                                            description="value = roi_id; " + mask_note)]))
    table_ids = ids if nwb_ids is None else np.asarray(nwb_ids, dtype=np.int64).ravel()
    if table_ids.shape != ids.shape or np.unique(table_ids).size != table_ids.size:
        raise ValueError(f"nwb_ids must be {ids.size} unique ids, one per ROI")
    ps.add_column("roi_id", "label value of the ROI in napari-catune (the ids of the "
                  "results' other files); id = the input NWB file's id of the ROI")
    for rid, tid, mask in zip(ids, table_ids, _pixel_masks(lab, ids)):
        ps.add_roi(id=int(tid), pixel_mask=[tuple(row) for row in mask], roi_id=int(rid))
    region = ps.create_roi_table_region(region=list(range(n)), description="all ROIs")

    form = _formulation(params)
    what = input_traces or "the input traces"
    export = json.dumps(_export_dict(params, {
        "source_filename": src_name, "input_traces": input_traces or None,
        "num_cells": int(n), "num_timepoints": int(t)}), allow_nan=False)
    src_unit = (src or {}).get("unit", "")
    unit = (f"{src_unit} (units of {what})"
            if src_unit and src_unit.lower() not in ("n.a.", "na", "no unit", "unknown", "a.u.")
            else f"a.u. (units of {what})")
    mod = nwbfile.create_processing_module(
        name=RESULTS_MODULE,
        description=f"napari-catune {__version__} deconvolution (CaTune model): "
                    f"{form['objective']}",
    )
    fl = Fluorescence(name="Deconvolution")
    mod.add(fl)
    # the input's time axis: its first frame's time, or its irregular timestamps
    timing = ({"timestamps": np.asarray(timestamps, dtype=np.float64)}
              if timestamps is not None else {"rate": float(fs), "starting_time": float(t0)})
    act = fl.create_roi_response_series(
        name="activity", data=_frames_by_rois(activity, folder), rois=region, unit=unit,
        description=f"deconvolved activity s of {what} (events scaled to trace units); "
        + FRAME0_NOTE,
        comments=export, **timing,
    )
    if timestamps is not None:
        timing = {"timestamps": act}  # one copy, linked
    from .results import fit_note

    note = fit_note(params)  # bandpass on: the fit is of the band-passed trace
    of = "" if note is None else " of the band-passed trace (series fitted_trace)"
    if fit is not None:
        fl.create_roi_response_series(
            name="fit", data=_frames_by_rois(fit, folder), rois=region, unit=unit,
            description=f"model fit K*s + baseline of {what}{of}, in trace units", **timing)
    if fitted_trace is not None:
        fl.create_roi_response_series(
            name="fitted_trace", data=_frames_by_rois(fitted_trace, folder), rois=region,
            unit=unit, description=f"the trace fitted: {note}", **timing)
    if baseline is not None and baseline.ndim == 2:
        fl.create_roi_response_series(
            name="baseline", data=_frames_by_rois(baseline, folder), rois=region, unit=unit,
            description=f"baseline per frame ({params.baseline} mode){of}", **timing)

    p = params
    mod.add(DynamicTable(name="parameters", description="the CaTune parameters used", columns=[
        VectorData(name=k, description=d, data=[v]) for k, d, v in (
            ("tau_rise_s", "kernel rise time constant, s", p.tau_rise),
            ("tau_decay_s", "kernel decay time constant, s", p.tau_decay),
            ("lambda", "sparsity, in units of the kernel DC gain", p.lam),
            ("sampling_rate_hz", "sampling rate, Hz", p.fs),
            ("filter_enabled", "CaTune bandpass applied before solving", p.filter_enabled),
            ("baseline", "baseline model", str(p.baseline)),
            ("drift_scale_s", "drift time scale, s (NaN: solver default or not drift)",
             float("nan") if p.drift_scale is None else p.drift_scale),
            ("input_traces", "the traces that were deconvolved (e.g. F - 0.7*Fneu)",
             input_traces or NOT_RECORDED),
            ("catune_export", "the CaTune export JSON (schema 1.2.0)", export),
        )
    ]))
    if src is not None:
        # the NWB source, by its stable references: the file's identifier and
        # the object_ids of the series and ROI table (match a DANDI asset by them)
        rows = [("source_file", "the input file's name", src["file"]),
                ("source_identifier", "the input NWB file's identifier", src["identifier"])]
        rows += [(k, d, src[key]) for k, d, key in (
            ("series", "path of the deconvolved RoiResponseSeries in the input", "series"),
            ("series_object_id", "object_id of that series in the input", "series_object_id"),
            ("series_unit", "unit of that series", "unit"),
            ("plane_segmentation", "name of its ROI table (PlaneSegmentation)", "table"),
            ("plane_segmentation_object_id", "object_id of that table", "table_object_id"),
        ) if key in src]
        if src_plane is not None:
            rows.append(("imaging_plane_object_id", "object_id of its ImagingPlane",
                         src_plane["object_id"]))
        mod.add(DynamicTable(name="source", description="the NWB file the traces came from "
                             "(one row): its identifier and the object_ids of the series and "
                             "ROI table deconvolved", columns=[
                                 VectorData(name=k, description=d, data=[v])
                                 for k, d, v in rows]))
    roi_cols = [VectorData(name="roi_id", description="label value", data=ids)]
    if baseline is not None and baseline.ndim == 1 and "baseline" not in (features or {}):
        roi_cols.append(VectorData(name="baseline", description="scalar baseline b",
                                   data=np.asarray(baseline)))
    roi_cols += _columns(features, skip=("roi_id", "index"))
    mod.add(DynamicTable(name="rois", description="per-ROI results, rows in roi_id order"
                         + ("" if note is None else f"; {note}"),
                         columns=roi_cols))
    if events:
        mod.add(DynamicTable(name="events", description="detected events, one row each",
                             columns=_columns(events)))

    def write(tmp):
        # The blocks check the room first (_check_room_for), so HDF5 does not
        # meet a full disk itself.  A file that failed for want of room (or of
        # quota, or over a file-size limit) is abandoned: emptied (its blocks
        # freed at once, even if HDF5 keeps its descriptor open) and closed
        # before the error goes on; an error while closing it does not replace
        # the write's.
        io = pynwb.NWBHDF5IO(tmp, "w")
        try:
            io.write(nwbfile)
        except BaseException as e:
            limit = _write_limit(e)
            if limit:
                _empty(tmp)
            _close_quietly(io)
            if limit:
                raise _limit_error(limit, path, folder) from None
            raise
        try:
            io.close()
        except (RuntimeError, OSError) as e:
            limit = _write_limit(e)
            if not limit:
                raise
            _empty(tmp)
            _close_quietly(io)
            raise _limit_error(limit, path, folder) from None

    # the temp file ends in .nwb, as pynwb expects of HDF5 NWB files
    atomic_write_via_path(path, write, suffix=".tmp.nwb")
    return path


#: errors of a write that met a limit of the disk, not a fault of ours
_LIMITS = {errno.ENOSPC: "no space left", errno.EFBIG: "file too large"}
if hasattr(errno, "EDQUOT"):
    _LIMITS[errno.EDQUOT] = "disk quota exceeded"


def _write_limit(e: BaseException) -> int | None:
    """The errno of a write that met a full disk (ENOSPC), a quota (EDQUOT) or
    a file-size limit (EFBIG), None for anything else.  HDF5 reports these as
    a RuntimeError/OSError whose text names the errno ("errno = 28")."""
    if not isinstance(e, (RuntimeError, OSError)):
        return None
    if getattr(e, "errno", None) in _LIMITS:
        return e.errno
    m = re.search(r"errno = (\d+)", str(e))
    if m and int(m.group(1)) in _LIMITS:
        return int(m.group(1))
    return errno.ENOSPC if "No space left" in str(e) else None


def _limit_error(no: int, path, folder) -> OSError:
    """OSError(no) "cannot write NAME: file too large on FOLDER" (the callers
    turn ENOSPC/EDQUOT/EFBIG into their one-line messages)."""
    where = f" on {folder}" if folder is not None else ""
    return OSError(no, f"cannot write {Path(path).name}: {_LIMITS[no]}{where}", str(path))


def _empty(path) -> None:
    try:
        os.truncate(path, 0)
    except OSError:
        pass


def _close_quietly(io) -> None:
    """Close an NWBHDF5IO whose write failed: a second error while closing
    must not replace the first."""
    try:
        io.close()
    except Exception:  # noqa: BLE001 - the write's own error is the one to report
        pass


def _table_columns(table) -> dict:
    out = {}
    for name in table.colnames:
        data = np.asarray(table[name].data[:])
        if data.dtype.kind == "O" or data.dtype.kind == "S":
            data = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in data])
        out[name] = data
    return out


def load_results_nwb(path) -> dict:
    """Read back what :func:`save_results_nwb` wrote (see ``results.load_results``)."""
    pynwb = _pynwb()
    from .params import load_params_dict

    path = Path(path)
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        f = io.read()
        if RESULTS_MODULE not in f.processing:
            raise ValueError(f"{path} holds no napari-catune results (no '{RESULTS_MODULE}' "
                             "processing module)")
        mod = f.processing[RESULTS_MODULE]
        fl = mod["Deconvolution"]
        act = fl["activity"]
        stamps = None if act.timestamps is None else np.asarray(act.timestamps[:], dtype=float)
        doc = json.loads(str(mod["parameters"]["catune_export"].data[0]))
        out = {
            "activity": np.asarray(act.data[:], dtype=np.float64).T.copy(),
            **{key: (np.asarray(fl[key].data[:], dtype=np.float64).T.copy()
                     if key in fl.roi_response_series else None)
               for key in ("fit", "fitted_trace")},
            "fs": (float(act.rate) if act.rate else
                   float(doc["parameters"]["sampling_rate_hz"])),
            "t0": float(stamps[0]) if stamps is not None else float(act.starting_time or 0.0),
            "timestamps": stamps,
        }
        rois = _table_columns(mod["rois"])
        out["roi_ids"] = rois.pop("roi_id").astype(np.int64)
        if "baseline" in fl.roi_response_series:
            out["baseline"] = np.asarray(fl["baseline"].data[:], dtype=np.float64).T.copy()
        else:
            out["baseline"] = rois.get("baseline")
        out["features"] = rois or None
        par = _table_columns(mod["parameters"])
        said = str(par["input_traces"][0]) if "input_traces" in par else ""
        out["input_traces"] = None if said in ("", NOT_RECORDED) else said
        out["events"] = _table_columns(mod["events"]) if "events" in mod.data_interfaces else None
    out["params"] = load_params_dict(doc, path)
    return out
