"""A solver-free probe of the host's state, to read the warm bench beside.

The shared machine runs at two speeds that come and go within one process
(docs/solver_history.md, "The warm bench's two speeds"): the same warm
solve takes e.g. 10.2 or 13.1 ms a call, and a pointer chase through
512 kB swings +30-50 % with it while chains of multiply-adds stay flat --
the host's cache/memory bandwidth, not the vCPU's clock.  This module
measures that chase, so that a benchmark can print which state the host
was in beside its figures:

* ``chase_ms()``: a dependent pointer chase (every load's address is the
  previous load's value) through one random single-cycle permutation of
  65,536 int64 slots (512 kB, the array made once per process, fixed
  seed), ``CHASE_LOADS`` loads a repeat; the median ms of ``repeats``,
  after one untimed trip round the cycle to bring the array into cache.
* ``fma_ms()``: the control, a chain of dependent multiply-adds of the
  same kind of length (no memory traffic); stays flat when the chase moves.

Each call takes ~1-5 ms.  Both kernels are compiled when this module is
imported (numba, ``cache=True``), so the first reading is not a compile.

    .venv/bin/python bench/_host_probe.py            # a few readings
    .venv/bin/python bench/_host_probe.py --readings 20 --cpu

Read it relatively: a quiet host is the lowest chase values seen on this
machine; a busy (slow-state) host reads ~30-50 % above them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

SLOTS = 65_536          # int64 slots: 512 kB
CHASE_LOADS = 131_072   # loads per repeat: twice round the cycle
FMA_STEPS = 131_072     # dependent multiply-adds per repeat
SEED = 12


def single_cycle(n, seed=SEED):
    """``nxt`` with ``nxt[i]`` the slot after ``i`` on one cycle through all
    ``n`` slots, in a random order (a random tour closed on itself)."""
    order = np.random.default_rng(seed).permutation(n).astype(np.int64)
    nxt = np.empty(n, np.int64)
    nxt[order[:-1]] = order[1:]
    nxt[order[-1]] = order[0]
    return nxt


def cycle_length(nxt, start=0):
    """How many steps from ``start`` until the chase is back at ``start``
    (at most ``len(nxt)``; ``-1`` if it never comes back within that)."""
    i = int(nxt[start])
    for k in range(1, len(nxt) + 1):
        if i == start:
            return k
        i = int(nxt[i])
    return -1


@njit(cache=True, nogil=True)
def _chase(nxt, start, loads):
    i = start
    for _ in range(loads):
        i = nxt[i]
    return i


@njit(cache=True, nogil=True)
def _fma(x, a, b, steps):
    for _ in range(steps):
        x = x * a + b
    return x


_NXT = single_cycle(SLOTS)
# compile (or load from the cache) and touch the array now, not in a reading
_SINK = int(_chase(_NXT, 0, SLOTS)) + float(_fma(1.0, 0.999999, 1e-6, 16))


def chase_ms(repeats=3, clock=time.perf_counter, loads=CHASE_LOADS):
    """Median ms over ``repeats`` of one chase of ``loads`` dependent loads,
    after one untimed trip round the cycle (brings the array back into the
    cache after whatever ran before: the first pass after a warm solve took
    ~1.5 ms against ~0.59 for the next)."""
    global _SINK
    times = []
    i = _chase(_NXT, 0, SLOTS)
    for _ in range(repeats):
        t0 = clock()
        i = _chase(_NXT, i, loads)
        times.append(clock() - t0)
    _SINK = int(i)  # keep the result alive
    return float(np.median(times)) * 1e3


def fma_ms(repeats=3, clock=time.perf_counter, steps=FMA_STEPS):
    """Median ms over ``repeats`` of ``steps`` dependent multiply-adds."""
    global _SINK
    times = []
    x = 1.0
    for _ in range(repeats):
        t0 = clock()
        x = _fma(x, 0.999999, 1e-6, steps)
        times.append(clock() - t0)
    _SINK = float(x)
    return float(np.median(times)) * 1e3


def reading(repeats=3, clock=time.perf_counter):
    """One reading: (chase ms, fma ms), each the median of ``repeats``."""
    return chase_ms(repeats, clock), fma_ms(repeats, clock)


def summarise(values):
    """(median, min, max) of a list of readings in ms."""
    v = np.asarray(values, float)
    return float(np.median(v)), float(v.min()), float(v.max())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readings", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3, help="repeats per reading (median)")
    ap.add_argument("--pause", type=float, default=0.05, help="seconds between readings")
    ap.add_argument("--cpu", action="store_true", help="thread CPU time instead of wall time")
    args = ap.parse_args(argv)
    clock = time.thread_time if args.cpu else time.perf_counter
    print(f"host probe: pointer chase, {CHASE_LOADS:,} dependent loads over {SLOTS * 8 // 1024} kB; "
          f"control: {FMA_STEPS:,} dependent multiply-adds; median of {args.repeats}, "
          f"ms {'CPU' if args.cpu else 'wall'}")
    chase, fma = [], []
    for k in range(args.readings):
        c, f = reading(args.repeats, clock)
        chase.append(c)
        fma.append(f)
        print(f"  {k + 1:3d}  chase {c:6.3f} ms   fma {f:6.3f} ms   "
              f"chase {c / CHASE_LOADS * 1e6:5.2f} ns/load", flush=True)
        time.sleep(args.pause)
    cm, c0, c1 = summarise(chase)
    fm, f0, f1 = summarise(fma)
    print(f"chase median {cm:.3f} ms [{c0:.3f}-{c1:.3f}], fma median {fm:.3f} ms [{f0:.3f}-{f1:.3f}]")


if __name__ == "__main__":
    main()
