"""The job that reads a movie and Labels pair's traces (or a trace file's tiles)
into a :class:`~napari_catune.sources.TraceSource`: the layers are checked on
the GUI thread (cheap), the reading runs in a worker.  With a neuropil
coefficient the same worker reads each ROI's surround (``Fneu``, suite2p's
masks) and tunes ``F - c*Fneu``; ``F`` and ``Fneu`` read before (``prior``,
the same layers' cached source) are reused, so another coefficient reads no
movie."""

from __future__ import annotations

import os
import zlib

import numpy as np

from ..session import build_source, neuropil_traces
from ..traces import time_axis_last
from .lazyactivity import label_index


class SourceError(ValueError):
    """A data-source problem whose message is ready for the user."""


def _truth(meta: dict, ids) -> dict | None:
    """ROI id -> frames of true events, from the sample's ground truth if present."""
    gt = meta.get("ground_truth")
    spikes = gt.get("spikes") if isinstance(gt, dict) else None
    if spikes is None:
        return None
    spikes = np.asarray(spikes)
    gt_ids = np.asarray(meta.get("roi_ids", np.arange(1, spikes.shape[0] + 1)))
    if spikes.ndim != 2 or gt_ids.size != spikes.shape[0]:
        return None
    return {int(r): np.flatnonzero(spikes[i] > 0).astype(float) for i, r in enumerate(gt_ids)
            if int(r) in set(int(i) for i in ids)}


def movie_file(image) -> str | None:
    """The TIFF file an Image layer was opened from (napari's ``layer.source.path``)."""
    path = getattr(getattr(image, "source", None), "path", None)
    if isinstance(path, (str, os.PathLike)) and os.fspath(path).lower().endswith(
            (".tif", ".tiff")) and os.path.isfile(path):
        return os.fspath(path)
    return None


class FRead(tuple):
    """What the worker yields once ``F`` is read and ``Fneu`` is still to be
    read: ``(plain TraceSource,)`` (the ROI means as they are, shown at once
    when neuropil is unchecked meanwhile)."""

    def __new__(cls, src):
        return super().__new__(cls, (src,))

    @property
    def source(self):
        return self[0]


def build_job(image, labels, fs_default: float, neuropil: float | None = None, prior=None):
    """Check the layers here (cheap); return the generator function a worker
    runs: it yields ``(done, total)`` frames while it reads ``F`` from a
    movie, an :class:`FRead` once ``F`` is read (when ``Fneu`` is read next),
    then ``(done, total)`` while it reads the neuropil (it can be cancelled
    between any two chunks) and returns ``(TraceSource, missing ids)``.  It runs
    once: it empties its closure when it starts.

    ``neuropil``: the coefficient (movie only; None: the ROI means as they
    are); ``prior``: a source of the same layers holding ``F`` (and maybe
    ``fneu``) to reuse."""
    from .. import traces as _traces

    meta = labels.metadata.get("catune", {}) if isinstance(labels.metadata, dict) else {}
    lab = np.array(labels.data)  # a copy: the ROIs as they are now, for F and Fneu alike
    fs_hint = meta.get("fs")
    tiff = None
    if image is None:
        tr = meta.get("traces")
        if tr is None:
            raise SourceError(
                f"Labels layer '{labels.name}' has no traces and no movie is chosen: "
                "pick the movie (Image layer, T x Y x X) in the CaTune tuner.")
        ids = meta.get("roi_ids")
    else:
        fs_hint = image.metadata.get("catune", {}).get("fs") or fs_hint
        tiff = None if fs_hint else movie_file(image)
        movie = image.data
        if time_axis_last(movie.shape, lab.shape):
            raise SourceError(
                f"Movie '{image.name}' has shape {tuple(movie.shape)} and labels "
                f"'{labels.name}' have shape {lab.shape}: the time axis looks last "
                f"({movie.shape[2]} frames of {movie.shape[0]}x{movie.shape[1]}). The tuner "
                "needs (T, Y, X): add the movie with time first, e.g. "
                "viewer.add_image(np.moveaxis(movie, -1, 0)) (a view, no copy), "
                "and choose it.")
        if movie.ndim != 3 or tuple(movie.shape[-2:]) != lab.shape[-2:] or lab.ndim != 2:
            raise SourceError(
                f"Movie '{image.name}' has shape {tuple(movie.shape)} and labels "
                f"'{labels.name}' have shape {lab.shape}: the movie must be (T, Y, X) "
                "with the same Y, X as the labels. Choose matching layers.")
    name = image.name if image is not None else labels.name
    # the traces' clock (an NWB input's start time): events files are on it
    clock = ({"t0": meta.get("t0") or 0.0, "timestamps": meta.get("timestamps")}
             if image is None else {})

    if image is None:
        neuropil = prior = None  # traces carried by the layer: never corrected again
        movie = None
    if prior is not None and prior.F is None:
        prior = None
    # what the read needs, in one dict the worker empties when it starts: a
    # finished worker (napari keeps them in its task list) then holds no
    # movie, ROI copy, cached F/Fneu or layer
    held = dict(lab=lab, movie=movie, prior=prior, meta=meta, image=image, labels=labels,
                tr=tr if image is None else None, ids=ids if image is None else None,
                # the pair's ROI index, shared with its cached sources (not one per source)
                index=next((s.label_index for s in getattr(prior, "sources", {}).values()
                            if getattr(s, "label_index", None) is not None), None))

    def work():
        from ..neuropil import iter_neuropil
        from ..sources import tiff_fs

        h = dict(held)
        held.clear()
        lab, movie, prior, meta = h["lab"], h["movie"], h["prior"], h["meta"]
        image, labels, tr, ids = h["image"], h["labels"], h["tr"], h["ids"]
        index = h["index"]
        del h
        missing = []
        fs, origin = fs_hint, None
        if tiff is not None:  # no rate in the layers' metadata: the movie file's, if any
            fs = tiff_fs(tiff)
            origin = f"the TIFF metadata of {os.path.basename(tiff)}" if fs else None
        index = label_index(lab) if index is None else index
        extra = dict(clock)
        if image is None:
            tr_ = np.asarray(tr, dtype=np.float64)
            ids_ = np.arange(1, tr_.shape[0] + 1) if ids is None else np.asarray(ids)
            if tr_.ndim == 2 and ids_.size == tr_.shape[0]:
                missing = ids_[~np.isin(ids_, index[0])].tolist()
        else:
            if prior is not None:
                tr_, ids_ = prior.F, prior.roi_ids
            else:  # (done, T) after each chunk: the job's bar; it stops between chunks
                tr_, ids_ = yield from _traces.iter_traces(movie, lab)
            fneu = prior.fneu if prior is not None else None
            if neuropil is not None and fneu is None:
                if prior is None:  # F is read: its plain source goes first (FRead)
                    try:
                        plain = build_source(tr_, ids_, fs, fs_default=fs_default, name=name,
                                             unit=meta.get("unit"), origin=(image, labels),
                                             fs_origin=origin, label_index=index,
                                             ground_truth=_truth(meta, ids_), F=tr_,
                                             fneu=None, neuropil=None)
                    except ValueError as e:
                        raise SourceError(f"Cannot tune '{labels.name}': {e}") from None
                    yield FRead(plain)
                    del plain
                try:
                    fneu, _, _ = yield from iter_neuropil(movie, lab, ids_)
                except ValueError as e:
                    raise SourceError(f"Cannot subtract neuropil for '{labels.name}': {e}. "
                                      "Uncheck 'neuropil' in the CaTune tuner.") from None
            extra.update(F=tr_, fneu=fneu, neuropil=neuropil)
            if neuropil is not None:
                tr_ = neuropil_traces(tr_, fneu, neuropil)
        try:
            src = build_source(tr_, ids_, fs, fs_default=fs_default, name=name,
                               unit=meta.get("unit"), origin=(image, labels), fs_origin=origin,
                               label_index=index, ground_truth=_truth(meta, ids_), **extra)
        except ValueError as e:
            raise SourceError(f"Cannot tune '{labels.name}': {e}") from None
        return src, missing

    return work


def fingerprint(data):
    """Shape, type and CRC of a ROI array (a plane: the traces are read from all
    of it anyway, also when it is lazy, e.g. zarr)."""
    try:
        arr = np.ascontiguousarray(np.asarray(data))
    except Exception:  # noqa: BLE001 - unreadable now: no fingerprint, no verdict
        return None
    return arr.shape, arr.dtype.str, zlib.crc32(arr)


def read_failed(e: Exception, what: str, labels_name: str) -> str:
    """The message for a read that raised ``e`` (``what``: the movie or layer, quoted)."""
    if isinstance(e, SourceError):
        return str(e)
    return (f"Could not read traces from {what} with ROIs '{labels_name}': "
            f"{type(e).__name__}: {e}. Check that the movie's file or store is "
            "still readable (or load the movie into memory), then choose the "
            "layers again in the CaTune tuner.")


def _tiles(layer) -> bool:
    """A Labels layer of a trace file's tiles (it carries its traces)."""
    from napari.layers import Labels

    meta = layer.metadata.get("catune", {}) if isinstance(layer.metadata, dict) else {}
    return isinstance(layer, Labels) and "traces" in meta


_GAP = 4  # background pixels between two trace files' tile grids


def place_beside(viewer, layer) -> None:
    """Move a trace file's tile grid to the right of the other tile grids, so a
    second file's tiles are not drawn over the first's."""
    if not _tiles(layer) or layer.ndim != 2 or any(layer.translate):
        return
    right = None
    for other in viewer.layers:
        if other is layer or not _tiles(other) or other.ndim != 2:
            continue
        x1 = other.translate[-1] + other.data.shape[-1] * other.scale[-1]
        right = x1 if right is None else max(right, x1)
    if right is not None:
        layer.translate = (0.0, float(right) + _GAP * layer.scale[-1])
