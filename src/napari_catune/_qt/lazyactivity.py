"""The array behind the tuner's activity layer, and the ROI lookups the overlays use.

A :class:`LazyActivity` is an array-like of shape (T, Y, X) that builds only
the frames napari asks for, from a per-ROI value table and a pixel -> row
lookup; a full T x Y x X array never exists.  Qt-free.
"""

from __future__ import annotations

import numpy as np


class LazyActivity:
    """(T, Y, X) array-like painting each ROI's footprint with its value at t.

    Parameters
    ----------
    labels : (Y, X) int array
        ROI label image (0 = background).
    n_frames : int
        T.
    """

    def __init__(self, labels: np.ndarray, n_frames: int, index=None):
        labels = np.asarray(labels)
        self._labels = labels
        self._n_frames = int(n_frames)
        # ROIs are found through the sorted ids present and each pixel's position
        # among them: memory follows the image, never the largest id
        self._uniq, self._inverse = index if index is not None else label_index(labels)
        # (pixel -> row lookup, (k, T) values), swapped as one tuple so napari's
        # slicing thread never sees a lookup of one call with values of another
        self._state = (np.zeros(labels.shape, dtype=np.intp),
                       np.zeros((0, self._n_frames), dtype=np.float32))
        self._ids = None
        self.dtype = np.dtype(np.float32)
        self.frames_built = 0  # counter for tests: how many frames were built so far
        self.max_frames_per_call = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self._n_frames, *self._labels.shape)

    @property
    def ndim(self) -> int:
        return 3

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self._n_frames

    def set_values(self, roi_ids, values: np.ndarray) -> None:
        """Paint ROI ``roi_ids[i]`` with ``values[i, t]``; other pixels are 0."""
        roi_ids = np.asarray(roi_ids, dtype=np.int64)
        values = np.asarray(values)
        if values.dtype.kind != "f":
            values = values.astype(np.float32)
        values = values.reshape(len(roi_ids), self._n_frames)
        ids = tuple(roi_ids.tolist())
        lookup = self._state[0]
        if ids != self._ids:
            # row 0 of the per-frame vector is the background (and unlisted ROIs)
            row_of_uniq = np.zeros(self._uniq.size, dtype=np.intp)
            pos = np.searchsorted(self._uniq, roi_ids)
            ok = (pos < self._uniq.size)
            ok[ok] &= self._uniq[pos[ok]] == roi_ids[ok]
            row_of_uniq[pos[ok]] = np.flatnonzero(ok) + 1
            row_of_uniq[self._uniq == 0] = 0
            lookup = row_of_uniq[self._inverse].reshape(self._labels.shape)
        self._state = (lookup, values)
        self._ids = ids

    @property
    def roi_ids_shown(self) -> int:
        return self._state[1].shape[0]

    def _frames(self, times: np.ndarray) -> np.ndarray:
        row_of_pixel, values = self._state  # one read: a consistent pair
        k = len(times)
        table = np.zeros((k, values.shape[0] + 1), dtype=np.float32)
        times = np.asarray(times)
        if values.shape[0]:
            table[:, 1:] = values[:, times].T
        self.frames_built += k
        self.max_frames_per_call = max(self.max_frames_per_call, k)
        return table[:, row_of_pixel]

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = next(j for j, k in enumerate(key) if k is Ellipsis)
            fill = (slice(None),) * (3 - (len(key) - 1))
            key = key[:i] + fill + key[i + 1:]
        key = key + (slice(None),) * (3 - len(key))
        k0, rest = key[0], key[1:]
        if isinstance(k0, (int, np.integer)):
            t = int(k0)
            if t < 0:
                t += self._n_frames
            if not 0 <= t < self._n_frames:
                raise IndexError(f"frame {k0} out of range for {self._n_frames} frames")
            return self._frames(np.array([t]))[0][rest]
        times = np.arange(self._n_frames)[k0]
        return self._frames(np.atleast_1d(times))[(slice(None),) + rest]

    def __array__(self, dtype=None, copy=None):
        # only an explicit request (e.g. np.asarray by a user) builds everything
        out = self[:]
        return out.astype(dtype) if dtype is not None else out


def label_index(labels) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, inverse)``: the sorted label values present and each pixel's
    position among them (flat).  The compact map the overlays use."""
    uniq, inverse = np.unique(np.asarray(labels), return_inverse=True)
    return uniq.astype(np.int64), inverse.ravel().astype(np.intp)


def centroids(labels: np.ndarray, roi_ids, index=None) -> np.ndarray:
    """(n, 2) centroid (row, col) of each ROI id; NaN for an id with no pixels."""
    labels = np.asarray(labels)
    roi_ids = np.asarray(roi_ids, dtype=np.int64)
    uniq, inverse = index if index is not None else label_index(labels)
    rows, cols = np.indices(labels.shape)
    count = np.bincount(inverse, minlength=uniq.size).astype(float)
    sy = np.bincount(inverse, weights=rows.ravel(), minlength=uniq.size)
    sx = np.bincount(inverse, weights=cols.ravel(), minlength=uniq.size)
    pos = np.searchsorted(uniq, roi_ids)
    ok = pos < uniq.size
    ok[ok] &= uniq[pos[ok]] == roi_ids[ok]
    out = np.full((roi_ids.size, 2), np.nan)
    p = pos[ok]
    out[ok] = np.stack([sy[p] / count[p], sx[p] / count[p]], axis=1)
    return out
