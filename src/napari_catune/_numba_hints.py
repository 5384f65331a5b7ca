"""A software prefetch for the compiled solvers' backward streaming passes.

On long traces (1,000,000 frames: 8 MB per float64 array, the step's arrays
together beyond the 32 MB L3) every full pass of an active-set step streams
its arrays from memory.  The multipliers' backward pass (five streams read
or written downwards: x, y, b, u, nu) took 3.8-7 ns a sample there against
~2.3 on 54,000 frames; asking every 8 samples for the lines ``AHEAD``
samples below brought it to ~2.3-3.6.  Used there (_nu_pass,
_nu_pass_fma, _nu_riccati) and in _numba_affine.affine_settle, which asks
for the lines of the violator 8 ahead (a long trace's segments lie far
apart: one lam0-30Hz 1M row's settle 0.55 -> 0.28 ms).  In the forward
passes (upwards, which the hardware prefetcher follows) and the Riccati recursions (two streams) it
cost 0.2-0.6 ns a sample on 54,000 frames and gained nothing on 1,000,000.
A prefetch is a hint: it changes no number.  (numba's cache keys the
solvers on _numba_solvers.py alone: a change here comes with a change
there, else a warm cache runs the old code.)
"""

from __future__ import annotations

from llvmlite import ir as _llir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# samples ahead of the pass (2 kB of float64)
AHEAD = 256
# ... on traces of at least FROM samples (on 54,000, whose arrays the L3
# holds, the prefetch cost the multipliers' passes 0.1-0.2 ns a sample:
# GCaMP6f/lowSNR/dense-30Hz's cold solves 2-4 % more CPU)
FROM = 1 << 18


@intrinsic
def prefetch(typingctx, arr, idx):
    """Hint the cache to fetch ``arr[idx]`` (along the first axis: the start
    of row idx of a 2-D array; for reading, kept in all levels).  No bounds
    test and no fault: an index outside the array only wastes the hint."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        aty = signature.args[0]
        ary = context.make_array(aty)(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        first = context.cast(builder, args[1], signature.args[1], types.intp)
        ptr = cgutils.get_item_pointer(context, builder, aty, ary,
                                       [first] + [zero] * (aty.ndim - 1),
                                       wraparound=False, boundscheck=False)
        i8p = _llir.IntType(8).as_pointer()
        i32 = _llir.IntType(32)
        fnty = _llir.FunctionType(_llir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        # (address, read, locality 3, data cache)
        builder.call(fn, [builder.bitcast(ptr, i8p), _llir.Constant(i32, 0),
                          _llir.Constant(i32, 3), _llir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen
