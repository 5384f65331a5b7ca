"""The local settle's segment edges (``_numba_local._left_edge`` and
``_right_edge``): the nearest untouched free pair on either side, found by a
scan that takes no reference counts per pair it tests.

(With the pair test in a helper that numba inlined, ``inline="always"``,
every pair tested took the arrays' reference counts: ~20 ns a sample
scanned, most of a warm re-solve's local settle on slow kernels.)"""

import numpy as np
import pytest
from numba import njit

from napari_catune import _numba_local as nl


def _pair_free(active, flip, k, n):
    return (k + 1 < n and not active[k] and not active[k + 1]
            and not flip[k] and not flip[k + 1])


def _left_ref(active, flip, k, n):
    for a in range(k - 2, 0, -1):
        if _pair_free(active, flip, a, n):
            return a
    return 0


def _right_ref(active, flip, k, n):
    for e in range(k + 1, n - 1):
        if _pair_free(active, flip, e, n):
            return e
    return n


@pytest.mark.parametrize("p_free", [0.02, 0.3, 0.9])
def test_edges_are_the_nearest_untouched_free_pairs(p_free):
    rng = np.random.default_rng(int(p_free * 100))
    n = 400
    for _ in range(20):
        active = rng.random(n) >= p_free
        flip = rng.random(n) < 0.05
        for k in range(n):
            assert nl._left_edge(active, flip, k, n) == _left_ref(active, flip, k, n)
            assert nl._right_edge(active, flip, k, n) == _right_ref(active, flip, k, n)


@pytest.mark.parametrize("fn", ["_left_edge", "_right_edge"])
def test_edge_scans_take_no_reference_counts(fn):
    # a fresh compile of the scan (numba's cached code cannot be inspected):
    # its machine code holds no reference count operation on the arrays,
    # so no pair tested costs one
    scan = njit(getattr(nl, fn).py_func)
    active = np.ones(50, dtype=bool)
    flip = np.zeros(50, dtype=bool)
    scan(active, flip, 25, 50)
    ir = "".join(scan.inspect_llvm().values())
    calls = [line for line in ir.splitlines() if "call" in line and "NRT_incref" in line]
    assert calls == []
