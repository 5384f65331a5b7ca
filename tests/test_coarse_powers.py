"""The block settle's power tables (_numba_solvers._coarse_powers), 64
entries at a time: the d^k, r^k of _numba_local.power_tables (r^k 0 below
1e-290) to rounding, and no less accurate (compared with pow)."""

import numpy as np

from napari_catune import _numba_solvers as ns
from napari_catune import solver as S
from napari_catune._numba_local import power_tables


def test_powers_match_the_sequential_tables_and_pow():
    m = S._model_checked(1000.0, 0.2, 3.0, 0.0)
    d, r = ns._ar_roots(m.g1, m.g2)
    for n in (1, 63, 64, 65, 200_001):
        dp = np.full(n + 2, np.nan)
        rp = np.full(n + 2, np.nan)
        ns._coarse_powers(d, r, n, dp, rp)
        dq = np.empty(n + 2)
        rq = np.empty(n + 2)
        power_tables(d, r, n, dq, rq)
        k = np.arange(n + 2, dtype=float)
        exact_d = np.power(d, k)
        assert dp[0] == 1.0 and rp[0] == 1.0
        # the zeros of r^k where power_tables has them (1e-290 floor)
        assert np.array_equal(rp == 0.0, rq == 0.0)
        nz = rq != 0.0
        assert np.max(np.abs(rp[nz] - rq[nz]) / rq[nz]) <= 1e-11
        assert np.max(np.abs(dp - dq) / dq) <= 1e-10
        err_new = np.max(np.abs(dp - exact_d) / exact_d)
        err_seq = np.max(np.abs(dq - exact_d) / exact_d)
        # (within ~2 ulps of pow; the sequential products drift ~2e-14 by
        # k = 200,000; a plain product chain over d^64 drifted 6e-13)
        assert err_new <= 5e-16
        assert err_new <= max(err_seq, 5e-16)
