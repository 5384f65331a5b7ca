"""The dense settle's one-row Cholesky delete, kept here as the reference
form that ``_numba_local._chol_del2`` (two rows at a time, the same
rotations) is checked against bit for bit; the library no longer calls it."""

import numpy as np
from numba import njit

from napari_catune._numba_local import _row


@njit(nogil=True)
def chol_del(L, P, p, q, cs, sn, tmp):
    """Remove the q-th of the p positions from the packed factor: each later
    row moves up one, with the Givens rotations that restore the triangle
    applied along it (``cs``, ``sn``, ``tmp``: scratch)."""
    for i in range(q, p - 1):
        P[i] = P[i + 1]
        oi = _row(i + 1)
        for b in range(i + 2):
            tmp[b] = L[oi + b]
        # the rotations of the rows above, on columns (k, k+1)
        for k in range(q, i):
            v1 = tmp[k]
            v2 = tmp[k + 1]
            tmp[k] = cs[k] * v1 + sn[k] * v2
            tmp[k + 1] = cs[k] * v2 - sn[k] * v1
        x1 = tmp[i]
        x2 = tmp[i + 1]
        rr = np.hypot(x1, x2)
        if rr > 0.0:
            cs[i] = x1 / rr
            sn[i] = x2 / rr
        else:
            cs[i] = 1.0
            sn[i] = 0.0
        tmp[i] = rr
        on = _row(i)
        for b in range(i + 1):
            L[on + b] = tmp[b]
