"""Failures found by bench/bench_audit.py (issue 12: converged=True must mean
optimal), kept as expected failures until the solver is fixed.

All are warm re-solves (``init=`` the answer at the previous slider value)
with a near-degenerate slow kernel (tau_rise within 0.005-0.6 % of
tau_decay ~ 2 s) at 300-1000 Hz, small lambda, baseline "scalar" (large
offsets) or "none": the answer passes the KKT test (``kkt_violation``
1.3e-9, 1.7e-9, 1.0e-10, under KKT_TOL = 1e-7, so converged=True), yet its
objective is 6.6e-8, 3.3e-7, 7.9e-9 (relative) above the optimum, which a
cold solve at the same parameters reaches (and an independent reference
confirms: the bench's free-columns Lawson-Hanson solve lands on the cold
objective to 1e-12).  The cold path has the same weakness, smaller: seed 3
--hard nos. 224 and 402, converged=True 1.4e-9 and 1.3e-9 above.  The supports differ in a few samples: with columns of K this
close, a wrong support leaves a gradient violation of ~1e-9 of the range,
so KKT <= 1e-7 of the range does not bound the objective gap at 1e-9.

    PYTHONPATH=src .venv/bin/python bench/bench_audit.py --seed 3 --hard --only 96 220 360 --verbose
"""

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from napari_catune import solver as S

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_audit", ROOT / "bench" / "bench_audit.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_audit"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.xfail(reason="bench_audit --seed 3 --hard: a warm re-solve with a near-degenerate "
                   "slow kernel reports converged=True (KKT 1e-10-1e-9 of the range) with "
                   "an objective 7.9e-9 to 3.3e-7 above the cold optimum", strict=False)
@pytest.mark.parametrize("i, row, gap", [(220, 1, 6.6e-8), (96, 0, 3.3e-7), (360, 0, 7.9e-9)])
def test_warm_near_degenerate_converged_is_optimal(i, row, gap):
    p = _bench().make_problem(3, i, hard=True)
    w = p["warm"]
    y = np.ascontiguousarray(p["y"][row], dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mode = p["mode"]
        first = S.run_deconvolution_full(y, p["fs"], p["tr"], p["td"], p["lam"], baseline=mode)
        new = (w["fs"], w["tr"], w["td"], w["lam"])
        warm = S.run_deconvolution_full(y, *new, init=first.activity, baseline=mode)
        cold = S.run_deconvolution_full(y, *new, baseline=mode)
        b = 0.0 if mode == "none" else None  # (None: the best scalar baseline)
        o_warm = S.objective(y, warm.activity, b, *new)
        o_cold = S.objective(y, cold.activity, b, *new)
    assert cold.converged
    assert warm.converged
    # the failure itself: optimal means the optimum's objective (to 1e-9)
    assert o_warm <= o_cold * (1 + 1e-9), (o_warm - o_cold) / o_cold
