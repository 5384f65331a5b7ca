"""A warm drift start settles locally from n / _LOCAL_FRAC_D violators on
where its set has at least _EARLY_PAIRS free pairs a violator
(``_numba_solvers.pdas_one``): dense spiking's large moves save a full step
and land on the cold solve's optimum.  Steps counted, nothing timed."""

import numpy as np
import pytest

from napari_catune import _numba_solvers as ns
from test_warm_slow import _objective, _params, _solve
from napari_catune.simulation import regime_traces


def test_early_settle_is_on_for_drift():
    assert ns._LOCAL_FRAC_D < ns._LOCAL_FRAC_T and ns._EARLY_PAIRS > 0


@pytest.mark.parametrize("mv, most", [("td-50%", 6), ("lam/2", 5), ("lam*2", 5)])
def test_dense_large_moves_take_a_step_fewer(mv, most):
    """dense-30Hz, 54,000 frames, drift: td -50 % in 6 full steps (7 when
    settling only from n / 200), lam /2 and x2 in 5 (6); KKT and at the cold
    solve's objective."""
    T = 54_000
    y = regime_traces("dense-30Hz", 1, T, seed=0)[0]
    prev = _solve(y, _params("dense-30Hz"), "drift")
    args = _params("dense-30Hz", mv)
    warm = _solve(y, args, "drift", init=prev.activity)
    cold = _solve(y, args, "drift")
    assert bool(np.all(warm.converged))
    assert int(np.max(warm.iterations)) <= most
    f_w, f_c = _objective(y, warm, args, "drift"), _objective(y, cold, args, "drift")
    assert abs(f_w - f_c) <= 1e-12 * abs(f_c)
