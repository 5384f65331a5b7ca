"""NWB footprints land on the cells of the movie stored in the same file.

Each file is written with pynwb exactly as a writer does it (none of the
writers is installed here; the lines are cited):

* CaImAn ``caiman/base/timeseries.py`` ``timeseries.save`` (.nwb): the movie
  as it is, ``TwoPhotonSeries(data=(T, d1, d2), dimension=shape[1:])``;
  ``caiman/source_extraction/cnmf/estimates.py`` ``Estimates.save_NWB``:
  ``image_mask=self.A.T[i].T.toarray().reshape(self.dims)`` where A's
  columns hold the pixels in Fortran order (``cnmf.py``:
  ``Yr = np.transpose(np.reshape(images, (T, -1), order='F'))``) -- a C-order
  reshape of a Fortran-order vector; CaImAn's own reader
  (``cnmf.load_CNMF``) ravels it back in C order, so it round-trips but the
  stored image is scrambled (the transpose when d1 == d2).
* suite2p ``suite2p/io/nwb.py`` ``save_nwb``: ``pixel_mask`` rows
  ``(ypix, xpix, lam)``, ``TwoPhotonSeries(dimension=[Ly, Lx])``, images
  (Ly, Lx): x = first axis = row.
* neuroconv ``tools/roiextractors/roiextractors.py``: movie frames transposed
  from roiextractors' (height, width) to (width, height)
  (``imagingextractordatachunkiterator.py``), ``image_mask`` =
  ``get_roi_image_masks().T`` (roi, width, height), summary images
  ``img_data.T``, but ``pixel_mask`` rows as roiextractors holds them,
  (row, column, weight) (``suite2psegmentationextractor.py``: ``ypix, xpix,
  lam``); ``general/source_script`` names NeuroConv.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import numpy as np
import pytest

pynwb = pytest.importorskip("pynwb")

from pynwb import NWBHDF5IO, NWBFile  # noqa: E402
from pynwb.base import Images  # noqa: E402
from pynwb.image import GrayscaleImage  # noqa: E402
from pynwb.ophys import (  # noqa: E402
    Fluorescence,
    ImageSegmentation,
    OpticalChannel,
    TwoPhotonSeries,
)

from napari_catune.nwb import load_nwb  # noqa: E402
from test_nwb import _nwbfile  # noqa: E402

H, W, T, FS = 20, 36, 40, 10.0  # a non-square plane: (height, width) = rows, columns
START = datetime(2026, 3, 4, 10, 30, tzinfo=timezone.utc)


def _cells(h=H, w=W):
    """(n, h, w) masks of three cells in the microscope's (row, column) frame,
    none symmetric under a transpose."""
    m = np.zeros((3, h, w))
    m[0, 2:5, 3:9] = 1.0
    m[1, 10:16, w - 14:w - 11] = np.linspace(0.2, 1.0, 18).reshape(6, 3)
    m[2, h - 4:h - 1, w - 7:w - 2] = 0.8
    return m


def _movie(masks):
    """(T, h, w): dim noise plus bright cells."""
    rng = np.random.default_rng(0)
    act = 5.0 + rng.random((T, masks.shape[0])) * 5.0
    return 0.1 * rng.random((T,) + masks.shape[1:]) + np.einsum("tn,nhw->thw", act, masks)


def _file(**kw):
    return _nwbfile(fs=FS, **kw)


def _traces(f, ps, mod, n=3, **kw):
    region = ps.create_roi_table_region(region=list(range(n)), description="ROIs")
    fl = Fluorescence()
    mod.add(fl)
    fl.create_roi_response_series(name="RoiResponseSeries", data=np.ones((T, n)),
                                  rois=region, unit="lumens", **kw)


def _write(f, path):
    with NWBHDF5IO(str(path), "w") as io:
        io.write(f)
    return path


def _on_cells(data, frame_masks, movie_frame_mean):
    """The labels are the cells, in the frame of the movie as stored."""
    assert data.labels.shape == frame_masks.shape[1:]
    for rid, m in enumerate(frame_masks, start=1):
        np.testing.assert_array_equal(data.labels == rid, m > 0)
        assert movie_frame_mean[data.labels == rid].min() > 10 * np.median(movie_frame_mean)


def caiman_file(path, h=H, w=W, with_movie=True):
    masks = _cells(h, w)
    movie = _movie(masks)  # CaImAn's movie (T, d1, d2); dims = (d1, d2)
    f, plane = _file()
    series = None
    if with_movie:  # timeseries.save(...nwb): data as it is, dimension = shape[1:]
        series = TwoPhotonSeries(name="TwoPhotonSeries", dimension=movie.shape[1:],
                                 data=movie, unit="a.u.", imaging_plane=plane,
                                 starting_frame=[0], starting_time=0.0, rate=FS)
        f.add_acquisition(series)
    mod = f.create_processing_module(name="ophys", description="caiman estimates")
    seg = ImageSegmentation()
    mod.add(seg)
    ps = seg.create_plane_segmentation(name="PlaneSegmentation", description="CNMF_ROIs",
                                       imaging_plane=plane, reference_images=series)
    for col in ("r", "snr", "accepted", "rejected", "keep"):
        ps.add_column(col, col)
    dims = (h, w)
    A = np.stack([m.ravel(order="F") for m in masks], axis=1)  # CNMF's A: (d1*d2, n), F order
    for i in range(A.shape[1]):
        ps.add_roi(image_mask=A[:, i].reshape(dims), r=0.9, snr=5.0, accepted=False,
                   rejected=False, keep=True)
    _traces(f, ps, mod, timestamps=np.arange(T) / FS)
    return _write(f, path), masks, movie.mean(axis=0)


@pytest.mark.parametrize("h, w", [(H, W), (W, H), (28, 28)])
def test_caiman_image_masks_land_on_the_movie_cells(tmp_path, h, w):
    path, masks, mean = caiman_file(tmp_path / "caiman.nwb", h, w)
    data = load_nwb(path)
    _on_cells(data, masks, mean)
    np.testing.assert_allclose(data.mean_image, mean)  # the movie's mean, same frame
    assert any("CaImAn save_NWB" in n for n in data.notes)


def test_caiman_without_movie_is_still_unscrambled(tmp_path):
    path, masks, mean = caiman_file(tmp_path / "caiman.nwb", with_movie=False)
    data = load_nwb(path)
    np.testing.assert_array_equal(data.labels, np.max(
        np.arange(1, 4)[:, None, None] * (masks > 0), axis=0))
    assert any("no movie or image" in n for n in data.notes)


def test_suite2p_pixel_masks_land_on_the_mean_image(tmp_path):
    masks = _cells()
    mean = _movie(masks).mean(axis=0)  # suite2p's meanImg (Ly, Lx)
    f, plane = _file()
    movie = TwoPhotonSeries(name="TwoPhotonSeries", dimension=[H, W], external_file=["r.tif"],
                            imaging_plane=plane, starting_frame=[0], format="external",
                            starting_time=0.0, rate=FS, num_samples=T)
    f.add_acquisition(movie)
    mod = f.create_processing_module(name="ophys", description="optical physiology")
    seg = ImageSegmentation()
    mod.add(seg)
    ps = seg.create_plane_segmentation(name="PlaneSegmentation", description="suite2p output",
                                       imaging_plane=plane, reference_images=movie)
    for m in masks:
        ypix, xpix = np.nonzero(m)
        ps.add_roi(pixel_mask=np.array([ypix, xpix, m[ypix, xpix]]).T)
    images = Images(name="Backgrounds_0")
    images.add_image(GrayscaleImage(name="meanImg", data=mean))
    mod.add(images)
    _traces(f, ps, mod, rate=FS)
    data = load_nwb(_write(f, tmp_path / "s2p.nwb"))
    _on_cells(data, masks, mean)
    np.testing.assert_array_equal(data.mean_image, mean)


def _neuroconv_file(path, mask_type):
    masks = _cells()  # roiextractors: (height, width) frames and masks
    movie = _movie(masks)
    f, plane = _file(source_script="Created using NeuroConv v0.6.0",
                     source_script_file_name="convert.py")
    series = TwoPhotonSeries(name="TwoPhotonSeries", data=movie.transpose(0, 2, 1),
                             imaging_plane=plane, unit="n.a.", rate=FS)
    f.add_acquisition(series)
    mod = f.create_processing_module(name="ophys", description="processed")
    seg = ImageSegmentation(name="ImageSegmentation")
    mod.add(seg)
    ps = seg.create_plane_segmentation(name="PlaneSegmentation", description="Segmented ROIs",
                                       imaging_plane=plane)
    if mask_type == "image":
        stack = masks.transpose(1, 2, 0)  # get_roi_image_masks(): (height, width, n)
        for i, m in enumerate(stack.T):  # .T: (n, width, height)
            ps.add_roi(id=i, image_mask=m)
    else:
        for i, m in enumerate(masks):
            r, c = np.nonzero(m)  # roiextractors pixel masks: (row, column, weight)
            ps.add_roi(id=i, pixel_mask=[tuple(x) for x in np.column_stack([r, c, m[r, c]])])
    images = Images(name="SegmentationImages")
    images.add_image(GrayscaleImage(name="mean", data=movie.mean(axis=0).T))
    mod.add(images)
    _traces(f, ps, mod, rate=FS)
    # in the stored frame (width, height): the masks and movie mean transposed
    return _write(f, path), masks.transpose(0, 2, 1), movie.mean(axis=0).T


@pytest.mark.parametrize("mask_type", ["image", "pixel"])
def test_neuroconv_masks_land_on_its_transposed_movie(tmp_path, mask_type):
    path, masks, mean = _neuroconv_file(tmp_path / "nc.nwb", mask_type)
    data = load_nwb(path)
    _on_cells(data, masks, mean)
    np.testing.assert_allclose(data.mean_image, mean)
    if mask_type == "pixel":
        assert any("neuroconv" in n and "swapped" in n for n in data.notes)


def test_generic_masks_transposed_to_the_movie_when_only_that_fits(tmp_path):
    """A writer of unknown convention whose masks are (height, width) while the
    movie is stored (width, height): the shapes decide, and the note says so."""
    masks = _cells()
    movie = _movie(masks)
    for kind in ("image", "pixel"):
        f, plane = _file()
        f.add_acquisition(TwoPhotonSeries(name="TwoPhotonSeries",
                                          data=movie.transpose(0, 2, 1), imaging_plane=plane,
                                          unit="n.a.", rate=FS))
        mod = f.create_processing_module(name="ophys", description="processed")
        seg = ImageSegmentation()
        mod.add(seg)
        ps = seg.create_plane_segmentation(name="PlaneSegmentation", description="rois",
                                           imaging_plane=plane)
        for m in masks:
            if kind == "image":
                ps.add_roi(image_mask=m)
            else:
                r, c = np.nonzero(m)
                ps.add_roi(pixel_mask=[tuple(x) for x in np.column_stack([r, c, m[r, c]])])
        _traces(f, ps, mod, rate=FS)
        data = load_nwb(_write(f, tmp_path / f"{kind}.nwb"))
        _on_cells(data, masks.transpose(0, 2, 1), movie.mean(axis=0).T)
        assert any("swapped" in n or "transposed" in n for n in data.notes), data.notes
