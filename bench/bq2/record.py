"""Record the block QPs (_block_nnqp's inputs in _coarse_block_solve) of two
warm td -50% moves (54,000 frames, drift, lambda 0 1 kHz and slow-1kHz) and
one cold 1M-frame lambda 0 1 kHz row, to blocks2.pkl, for replay.py /
replay3.py.  Runs on a patched copy of the tree (184bc41's
_coarse_block_solve with, before its _block_nnqp call,
``with objmode(): _bq2_record(H[:m, :m].copy(), c[:m].copy(), zz[:m].copy(),
C[:m].copy(), thin, tol_b, budget, d, r, a2, n)`` appending to a module list
REC), e.g. PYTHONPATH=/tmp/bq2-rec/src NUMBA_CACHE_DIR=<own>; ~3 min."""
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
