import sys, warnings, numpy as np, pickle
sys.path.insert(0, '/work/wt-bq2/bench')
import napari_catune as nc
from napari_catune import _numba_solvers as ns
import bench_regimes as BR
out = {}
def grab(tag):
    out[tag] = list(ns.REC); ns.REC.clear(); print(tag, len(out[tag]), flush=True)
# warm td-50% moves on 54k, drift mode
for name in ["lam0-slow-1kHz", "slow-1kHz"]:
    fs, tr, td, lam, _n, _r = BR.REGIMES[name]
    y = BR.make_traces(name, 1, 54_000)[0]
    base = nc.run_deconvolution_full(y, fs, tr, td, lam, baseline="drift")
    ns.REC.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = nc.run_deconvolution_full(y, fs, tr, td * 0.5, lam, baseline="drift", init=base.activity)
    grab(f"warm-{name}-td-50")
fs, tr, td, lam, _n, _r = BR.REGIMES["lam0-slow-1kHz"]
y = BR.make_traces("lam0-slow-1kHz", 1, 1_000_000)[0]
ns.REC.clear()
r = nc.run_deconvolution_full(y[None], fs, tr, td, lam)
grab("cold-lam0-1M")
pickle.dump(out, open('/tmp/bq2/blocks2.pkl', 'wb'))
