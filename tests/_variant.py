"""A compiled function built again with some of its module globals replaced
(the tests that compare a pass or a constant against its older form)."""

import types as pytypes

from numba import njit


def variant(fn, **over):
    """fn's Python function compiled again (its options: fastmath) with some
    of its globals replaced."""
    f = fn.py_func
    g = dict(f.__globals__)
    g.update(over)
    opts = {k: v for k, v in fn.targetoptions.items() if k not in ("cache", "nopython")}
    return njit(**opts)(pytypes.FunctionType(f.__code__, g, f.__name__, f.__defaults__,
                                             f.__closure__))
