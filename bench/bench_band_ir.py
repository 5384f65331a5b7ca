"""The compiled band factor and solve of this tree against another's, bit for bit.

    .venv/bin/python bench/bench_band_ir.py --against /work/main/src

``_jit_band``'s LDL' factors and solves (widths 2 and 4, the signed one of
width 6, and the drift band's two-chain factor and solve) are made by both
trees' code and run on the same random bands: plain, over 12 decades,
with NaN, +-inf, +-0 and extremes among the entries, and with a failing
pivot at a random column (in either chain of a pair, or both), on bands of
0 to 1,000 columns.  Each comparison is the factored band, the info
returned and, where the factor succeeded, the solution (equal bit for bit;
NaN where NaN, its payload aside); the two-chain loops failing too.  And
this tree's ``Kernels.factor`` of the two bands stacked as two blocks
against the other tree's single loop on each: each block as its own
factor leaves it, whatever its partner's pivots, and the column reported
the first failing one of the stack (as the single loop over it reports).
Also the time of each loop per column (best of 5), both trees.  Exits 1 on
any difference.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

_SRC = Path(__file__).resolve().parent.parent / "src"
SIZES = (0, 1, 2, 3, 4, 7, 29, 300, 1000)
KINDS = ("plain", "wide", "special", "fail")


def _module(src, name):
    spec = importlib.util.spec_from_file_location(name, Path(src) / "napari_catune" /
                                                  "_jit_band.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _loops(mod):
    """{kd: (factor, solve)} of the single loops, and the pairs'."""
    made = mod._compile()  # (its engine kept: it owns the code)
    keep, ipm = mod._compile_ipm()
    return ({kd: made[3][kd] for kd in mod.WIDTHS + mod.SIGNED}, ipm["pairs"],
            (made[:3], keep))


def _same(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    nan = np.isnan(a)
    return (a.shape == b.shape and np.array_equal(nan, np.isnan(b))
            and np.array_equal(a[~nan].view(np.uint64), b[~nan].view(np.uint64)))


def _band(rng, kd, n, kind, signed):
    ab = np.zeros((kd + 1, n + kd), order="F")
    if kind == "wide":
        ab[0, :n] = 10.0 ** rng.uniform(-6, 6, n)
        ab[1:, :n] = rng.standard_normal((kd, n)) * 10.0 ** rng.uniform(-6, 6, (kd, n))
    else:
        ab[0, :n] = 3.0 + kd + rng.uniform(0.0, 1.0, n)
        ab[1:, :n] = rng.uniform(-0.6, 0.6, (kd, n))
    if signed:
        ab[0, :n] *= np.where(np.arange(n) % 3 == 1, -1.0, 1.0)
    if kind == "special" and n:
        at = rng.integers(0, (kd + 1) * n, max(1, n // 10))
        vals = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e308, 5e-324]
        ab[:, :n].flat[at] = rng.choice(vals, at.size)
    if kind == "fail" and n:
        ab[0, rng.integers(0, n)] = 0.0 if signed else rng.choice([-1.0, 0.0, np.nan])
    for q in range(1, kd + 1):  # (nothing past the matrix's end)
        ab[q, max(n - q, 0):] = 0.0
    return ab


def _rhs(rng, kd, n, kind):
    x = np.zeros(n + kd)
    x[:n] = rng.standard_normal(n)
    if kind == "special" and n:
        at = rng.integers(0, n, max(1, n // 10))
        x[at] = rng.choice([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e308], at.size)
    return x


def _addr(a):
    return a.ctypes.data


def compare(new, old, seeds, kern):
    """(comparisons, differences, {what: comparisons}) over the grid
    (``kern``: this tree's Kernels, for its two-block factor)."""
    (snew, pnew, _), (sold, pold, _) = new, old
    count, bad, what = 0, [], {}

    def seen(key):
        what[key] = what.get(key, 0) + 1
    with np.errstate(all="ignore"):
        for kd, (fo, so) in sold.items():
            signed = kd == 6
            fn, sn = snew[kd]
            for n in SIZES:
                for kind in KINDS:
                    for seed in range(seeds):
                        rng = np.random.default_rng([kd, n, KINDS.index(kind), seed])
                        ab = _band(rng, kd, n, kind, signed)
                        a1, a2 = ab.copy(order="F"), ab.copy(order="F")
                        i1, i2 = fo(n, _addr(a1)), fn(n, _addr(a2))
                        count += 1
                        seen("single factor" + (" (failing)" if i1 else ""))
                        if i1 != i2 or not _same(a1, a2):
                            bad.append(("factor", kd, n, kind, seed))
                        if i1 == 0:
                            x1 = _rhs(rng, kd, n, kind)
                            x2 = x1.copy()
                            so(n, _addr(a1), _addr(x1))
                            sn(n, _addr(a2), _addr(x2))
                            count += 1
                            seen("single solve")
                            if not _same(x1, x2):
                                bad.append(("solve", kd, n, kind, seed))
        for kd, (fo, so) in pold.items():
            fn, sn = pnew[kd]
            fs = sold[kd][0]
            for n in SIZES:
                for kind in KINDS + ("failA", "failB"):
                    for seed in range(seeds):
                        rng = np.random.default_rng([kd, n, 7 + len(kind), seed])
                        k1 = "fail" if kind.startswith("fail") else kind
                        A, B = _band(rng, kd, n, k1, False), _band(rng, kd, n, k1, False)
                        if kind == "failA" and n:
                            A[0, rng.integers(0, n)] = -1.0
                        if kind == "failB" and n:
                            B[0, rng.integers(0, n)] = -1.0
                        # the loops themselves, failing or not
                        nA, nB, oA, oB = (v.copy(order="F") for v in (A, B, A, B))
                        info, want = fn(n, _addr(nA), _addr(nB)), fo(n, _addr(oA), _addr(oB))
                        count += 1
                        seen("pair factor" + (" (failing)" if want else ""))
                        if info != want or not (_same(nA, oA) and _same(nB, oB)):
                            bad.append(("pair factor", kd, n, kind, seed))
                        if n:  # this tree's Kernels.factor of the two stacked: the singles'
                            stack = np.concatenate((A[:, :n], B), axis=1).copy(order="F")
                            got = kern._factor(stack, 2 * n, 2, pnew[kd])
                            sA, sB = A.copy(order="F"), B.copy(order="F")
                            iA, iB = fs(n, _addr(sA)), fs(n, _addr(sB))
                            count += 1
                            seen("two blocks vs single loops" + (" (failing)" if iA or iB
                                                                 else ""))
                            if (got != (iA or (n + iB if iB else 0))
                                    or not (_same(stack[:, :n], sA[:, :n])
                                            and _same(stack[:, n:], sB))):
                                bad.append(("two blocks vs single loops", kd, n, kind, seed))
                        if want:
                            continue
                        xa, xb = _rhs(rng, kd, n, kind), _rhs(rng, kd, n, kind)
                        ya, yb = xa.copy(), xb.copy()
                        so(n, _addr(oA), _addr(xa), _addr(oB), _addr(xb))
                        sn(n, _addr(nA), _addr(ya), _addr(nB), _addr(yb))
                        count += 1
                        seen("pair solve")
                        if not (_same(xa, ya) and _same(xb, yb)):
                            bad.append(("pair solve", kd, n, kind, seed))
    return count, bad, what


def timing(loops, n=108_000, reps=5):
    """ns per column of each loop, best of ``reps`` (the factor on a fresh copy)."""
    single, pairs, _ = loops
    rng = np.random.default_rng(0)
    out = {}
    for kd, (f, s) in list(single.items()) + [(f"{kd}x2", p) for kd, p in pairs.items()]:
        two = isinstance(kd, str)
        w = int(str(kd)[0])
        bands = [_band(rng, w, n, "plain", w == 6) for _ in range(1 + two)]
        x = [_rhs(rng, w, n, "plain") for _ in bands]
        tf, ts = [], []
        for _ in range(reps):
            c = [b.copy(order="F") for b in bands]
            t0 = time.process_time()
            f(n, *map(_addr, c))
            t1 = time.process_time()
            s(n, *[_addr(v) for pair in zip(c, x) for v in pair])
            t2 = time.process_time()
            tf.append(t1 - t0)
            ts.append(t2 - t1)
        out[kd] = (1e9 * min(tf) / n, 1e9 * min(ts) / n)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", default=str(_SRC), help="this tree's src/")
    ap.add_argument("--against", required=True, help="the other tree's src/ (e.g. main's)")
    ap.add_argument("--seeds", type=int, default=4, help="random bands per size and kind")
    ap.add_argument("--no-timing", action="store_true")
    a = ap.parse_args(argv)
    this = _module(a.src, "jit_band_new")
    new = _loops(this)
    old = _loops(_module(a.against, "jit_band_old"))
    kern = this.Kernels(this._compile())
    count, bad, what = compare(new, old, a.seeds, kern)
    print(f"{count} comparisons, {len(bad)} differences ("
          + ", ".join(f"{k}: {v}" for k, v in what.items()) + ")")
    for row in bad[:20]:
        print("  differs:", row)
    if not a.no_timing:
        tn, to = timing(new), timing(old)
        print("ns per column (factor, solve), CPU, best of 5: this tree | the other")
        for kd in tn:
            (fn, sn), (fo, so) = tn[kd], to[kd]
            print(f"  kd {kd}: {fn:.2f}, {sn:.2f} | {fo:.2f}, {so:.2f}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
