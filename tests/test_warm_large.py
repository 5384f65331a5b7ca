"""Large slider moves on one 54,000-frame trace (issue 12's warm target):
the warm re-solve lands on the cold solve's optimum in few full steps.
Counted in steps, never timed."""

from napari_catune import solver as S
from napari_catune.simulation import regime_traces
from test_warm_slow import _objective, _params, _solve

T = 54_000


def _check(y, prev, name, mv, baseline):
    """The warm re-solve after move ``mv``: KKT-optimal, at the cold
    solve's objective to 1e-12 relative; returns its steps."""
    args = _params(name, mv)
    warm = _solve(y, args, baseline, init=prev.activity)
    cold = _solve(y, args, baseline)
    assert warm.converged.all() and cold.converged.all()
    assert (S.kkt_violation(y, warm.activity, warm.baseline, *args, mode=baseline)
            <= S.KKT_TOL).all()
    fw, fc = _objective(y, warm, args, baseline), _objective(y, cold, args, baseline)
    assert abs(fw - fc) <= 1e-12 * abs(fc), (fw, fc)
    return int(warm.iterations[0])


def test_a_cycling_segment_gets_enough_single_rounds():
    """calab's gcamp6s preset at 30 Hz, scalar baseline, tau_rise +20 %:
    a segment whose block rounds cycle is settled by Murty's rule within
    the warm settle's rounds (32 per segment: 6 steps; with 8 it was left
    cycling, and the full steps that followed took 9 in all)."""
    name = "calab-gcamp6s-30Hz"
    y = regime_traces(name, 1, T, seed=0)
    prev = _solve(y, _params(name), "scalar")
    assert _check(y, prev, name, "tr+20%", "scalar") <= 6
