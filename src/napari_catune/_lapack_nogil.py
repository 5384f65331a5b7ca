"""The few LAPACK routines the NumPy solver needs, called without the GIL.

SciPy's f2py wrappers (``scipy.linalg.lapack``) hold the GIL during the
call, so two threads factoring two rows run one after the other.  SciPy
also exports the same routines, as C function pointers, from
``scipy.linalg.cython_lapack`` (``__pyx_capi__``, the documented way for
Cython code to call them); ctypes calls those pointers with the GIL released
and without the wrapper's checks and copies.  If that route is missing or
fails its self-test at import, the f2py wrappers are used (same numbers,
one thread at a time): ``NOGIL`` says which.

Every routine here works in place on Fortran-ordered float64 arrays and
returns LAPACK's ``info``.
"""

from __future__ import annotations

import ctypes

import numpy as np
from scipy.linalg import lapack

_INT = ctypes.POINTER(ctypes.c_int)
_CH = ctypes.c_char_p
_PTR = ctypes.c_void_p
# argument types per routine (cython_lapack.pxd's signatures)
_SIGS = {
    "dpbtrf": (_CH, _INT, _INT, _PTR, _INT, _INT),
    "dpbtrs": (_CH, _INT, _INT, _INT, _PTR, _INT, _PTR, _INT, _INT),
    "dtbtrs": (_CH, _CH, _CH, _INT, _INT, _INT, _PTR, _INT, _PTR, _INT, _INT),
    "dgbsv": (_INT, _INT, _INT, _INT, _PTR, _INT, _PTR, _PTR, _INT, _INT),
}


def _load():
    from scipy.linalg import cython_lapack

    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype = ctypes.c_char_p
    api.PyCapsule_GetName.argtypes = [ctypes.py_object]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    out = {}
    for name, sig in _SIGS.items():
        cap = cython_lapack.__pyx_capi__[name]
        ptr = api.PyCapsule_GetPointer(cap, api.PyCapsule_GetName(cap))
        if not ptr:
            raise RuntimeError(f"no pointer for {name}")
        # CFUNCTYPE (not PYFUNCTYPE): the GIL is released during the call
        out[name] = ctypes.CFUNCTYPE(None, *sig)(ptr)
    return out


def _i(v):
    return ctypes.byref(ctypes.c_int(int(v)))


def _fortran(a):
    return a.flags.f_contiguous and a.dtype == np.float64


def pbtrf(ab, lower=True):
    """Banded Cholesky in place (``ab``: (kd + 1, n), Fortran order)."""
    if _F is None:
        c, info = lapack.dpbtrf(ab, lower=int(lower), overwrite_ab=1)
        if c is not ab:
            ab[...] = c
        return info
    assert _fortran(ab)
    info = ctypes.c_int(0)
    kd1, n = ab.shape
    _F["dpbtrf"](b"L" if lower else b"U", _i(n), _i(kd1 - 1), ab.ctypes.data, _i(kd1),
                 ctypes.byref(info))
    return info.value


def pbtrs(c, b, lower=True):
    """Solve with ``pbtrf``'s factor in place (``b``: (n,) or (n, nrhs), Fortran)."""
    b2 = b.reshape(b.shape[0], -1, order="F")
    if _F is None:
        x, info = lapack.dpbtrs(c, b2, lower=int(lower), overwrite_b=1)
        if x is not b2:
            b2[...] = x
        return info
    assert _fortran(c) and _fortran(b2) and np.shares_memory(b2, b)
    info = ctypes.c_int(0)
    kd1, n = c.shape
    _F["dpbtrs"](b"L" if lower else b"U", _i(n), _i(kd1 - 1), _i(b2.shape[1]), c.ctypes.data,
                 _i(kd1), b2.ctypes.data, _i(max(1, n)), ctypes.byref(info))
    return info.value


def tbtrs(ab, b, lower=True, trans=False):
    """Banded triangular solve in place (``ab``: (kd + 1, n) band storage)."""
    b2 = b.reshape(b.shape[0], -1, order="F")
    uplo, tr = ("L" if lower else "U"), ("T" if trans else "N")
    if _F is None:
        x, info = lapack.dtbtrs(ab, b2, uplo=uplo, trans=tr, overwrite_b=1)
        if x is not b2:
            b2[...] = x
        return info
    assert _fortran(ab) and _fortran(b2) and np.shares_memory(b2, b)
    info = ctypes.c_int(0)
    kd1, n = ab.shape
    _F["dtbtrs"](uplo.encode(), tr.encode(), b"N", _i(n), _i(kd1 - 1), _i(b2.shape[1]),
                 ab.ctypes.data, _i(kd1), b2.ctypes.data, _i(max(1, n)), ctypes.byref(info))
    return info.value


def gbsv(kl, ku, ab, b):
    """General banded solve in place (``ab``: (2 kl + ku + 1, n), dgbsv's layout)."""
    b2 = b.reshape(b.shape[0], -1, order="F")
    if _F is None:
        _lu, _piv, x, info = lapack.dgbsv(kl, ku, ab, b2, overwrite_ab=1, overwrite_b=1)
        if x is not b2:
            b2[...] = x
        return info
    assert _fortran(ab) and _fortran(b2) and np.shares_memory(b2, b)
    info = ctypes.c_int(0)
    n = ab.shape[1]
    piv = np.empty(max(1, n), dtype=np.intc)
    _F["dgbsv"](_i(n), _i(kl), _i(ku), _i(b2.shape[1]), ab.ctypes.data, _i(ab.shape[0]),
                piv.ctypes.data, b2.ctypes.data, _i(max(1, n)), ctypes.byref(info))
    return info.value


def _self_test() -> bool:
    """The ctypes route gives f2py's numbers on a small SPD band (and an int
    width or calling convention mismatch would show here)."""
    rng = np.random.default_rng(0)
    n, kd = 9, 2
    ab = np.asfortranarray(np.vstack([np.full(n, 4.0), rng.uniform(-0.5, 0.5, (kd, n))]))
    ab[1, -1:] = ab[2, -2:] = 0.0
    ref, _ = lapack.dpbtrf(ab, lower=1)
    got = ab.copy(order="F")
    if pbtrf(got) != 0 or not np.allclose(got, ref, rtol=1e-14, atol=0):
        return False
    rhs = rng.standard_normal(n)
    x, _ = lapack.dpbtrs(ref, rhs, lower=1)
    b = rhs.copy()
    if pbtrs(got, b) != 0 or not np.allclose(b, x, rtol=1e-12, atol=1e-14):
        return False
    t = rhs.copy()
    xt, _ = lapack.dtbtrs(ref, rhs, uplo="L", trans="T")
    if tbtrs(got, t, trans=True) != 0 or not np.allclose(t, xt, rtol=1e-12, atol=1e-14):
        return False
    g = np.zeros((6, n), order="F")  # kl 2, ku 1: the diagonal in row kl + ku
    g[3] = ab[0]
    g[4, :-1] = ab[1, :-1]
    g[2, 1:] = 0.3
    gb = rhs.copy()
    _lu, _piv, xg, _ = lapack.dgbsv(2, 1, g.copy(order="F"), rhs)
    return gbsv(2, 1, g, gb) == 0 and np.allclose(gb, xg, rtol=1e-12, atol=1e-14)


try:
    _F = _load()
    NOGIL = _self_test()
except Exception:  # noqa: BLE001 - any failure: the f2py wrappers
    NOGIL = False
if not NOGIL:
    _F = None
