"""count_fit_flags' threshold by order_stat: the value np.partition gives."""

import numpy as np

from napari_catune._numba_affine import count_fit_flags, order_stat


def test_order_stat_is_np_partition_value():
    rng = np.random.default_rng(27)
    checked = 0
    for m in (1, 3, 100, 5000, 8191, 62500, 130001):
        kinds = [rng.standard_normal(m), np.round(rng.standard_normal(m), 1),
                 np.sort(rng.standard_normal(m)), np.full(m, 2.5),
                 rng.standard_normal(m) ** 3]
        for v in kinds:
            for r in {0, m - 1, m // 2, int(0.02 * m), int(0.0003 * m), int(0.97 * m),
                      int(rng.integers(m))}:
                keep = v.copy()
                buf = np.empty(m)
                got = order_stat(v, r, buf)
                assert got == np.partition(v, r)[r]
                assert np.array_equal(v, keep)
                checked += 1
    assert checked > 150


def test_order_stat_short_buffer_falls_back():
    rng = np.random.default_rng(3)
    v = rng.standard_normal(40000)
    for r in (0, 800, 20000, 39999):
        assert order_stat(v, r, np.empty(5)) == np.partition(v, r)[r]


def test_count_fit_flags_threshold_is_the_partition_quantile():
    rng = np.random.default_rng(5)
    T = 300_001
    y = np.cumsum(rng.standard_normal(T)) * 0.01 + rng.standard_normal(T)
    g1, g2 = 1.6, -0.64
    n = T - 1
    for frac in (0.001, 0.02, 0.3):
        act = np.zeros(n, np.bool_)
        k = count_fit_flags(y, g1, g2, 1, frac, 16, np.empty(n), act)
        c = (1.0 - g1 - g2) * y[0]
        d = np.empty(n)
        d[0] = y[1] - y[0]
        d[1] = (y[2] - g1 * (y[1] - y[0])) - y[0]
        d[2:] = (y[3:] - g1 * y[2:-1] - g2 * y[1:-2]) - c
        sub = np.array([(y[j + 1] - g1 * y[j] - g2 * y[j - 1]) - c for j in range(2, n, 16)])
        r = min(max(int(frac * sub.shape[0]), 0), sub.shape[0] - 1)
        thr = np.partition(sub, r)[r]
        assert k == act.sum()
        # the flags d < thr (rounding of d aside: compare away from thr)
        far = np.abs(d - thr) > 1e-9
        assert np.array_equal(act[far], (d < thr)[far])
        assert abs(k - (d < thr).sum()) <= (~far).sum()
