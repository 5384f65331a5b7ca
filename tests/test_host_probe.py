"""bench/_host_probe.py, the warm bench's host-state probe: its permutation is
one cycle through every slot (else the chase would loop in a few cache lines
and measure nothing), its kernels walk that cycle, its readings are
milliseconds, and bench_solver.py takes --probe.  No assertion on times."""

import math
import sys

import numpy as np
import pytest
from _bench import ROOT, load_bench

sys.path.insert(0, str(ROOT / "bench"))  # bench_solver imports _one_blas from there


@pytest.fixture(scope="module")
def HP():
    return load_bench("_host_probe")


@pytest.mark.parametrize("n, seed", [(2, 0), (7, 1), (1000, 2), (4096, 3)])
def test_single_cycle_visits_every_slot(HP, n, seed):
    nxt = HP.single_cycle(n, seed)
    assert nxt.dtype == np.int64 and nxt.shape == (n,)
    assert np.array_equal(np.sort(nxt), np.arange(n))  # a permutation
    assert HP.cycle_length(nxt) == n  # one cycle: back at 0 after exactly n steps
    seen, i = set(), 0
    for _ in range(n):
        seen.add(i)
        i = int(nxt[i])
    assert len(seen) == n and i == 0
    if n > 2:
        assert not np.array_equal(nxt, (np.arange(n) + 1) % n)  # shuffled, not a stride


def test_cycle_length_catches_permutations_of_several_cycles(HP):
    assert HP.cycle_length(np.arange(5)) == 1  # identity: five cycles of one
    two = np.array([1, 0, 3, 4, 2])  # (0 1)(2 3 4)
    assert HP.cycle_length(two) == 2
    assert HP.cycle_length(two, start=2) == 3
    assert HP.cycle_length(np.array([1, 2, 1])) == -1  # 0 is never come back to


def test_the_probe_array_is_512_kb_and_one_cycle(HP):
    assert HP._NXT.nbytes == 512 * 1024
    assert HP.cycle_length(HP._NXT) == HP.SLOTS


def test_compiled_chase_follows_the_cycle(HP):
    nxt = HP.single_cycle(1000, 5)
    i = 17
    for k in range(1, 2500, 311):
        j = 17
        for _ in range(k):
            j = int(nxt[j])
        assert HP._chase(nxt, i, k) == j
    assert HP._chase(nxt, 17, 1000) == 17
    assert HP._chase(HP._NXT, 0, HP.SLOTS) == 0
    assert HP._chase(HP._NXT, 0, HP.SLOTS - 1) != 0


def test_fma_chain_computes_the_recurrence(HP):
    x = 1.0
    for _ in range(100):
        x = x * 0.5 + 0.25
    assert HP._fma(1.0, 0.5, 0.25, 100) == x
    assert HP._fma(3.0, 2.0, 1.0, 3) == 31.0


def test_readings_are_positive_finite_milliseconds(HP):
    import time

    for clock in (time.perf_counter, time.thread_time):
        c, f = HP.reading(3, clock)
        assert c > 0 and math.isfinite(c)
        assert f > 0 and math.isfinite(f)
    assert HP.chase_ms(1, loads=10) > 0 and HP.fma_ms(1, steps=10) > 0
    assert HP.summarise([3.0, 1.0, 2.0, 10.0]) == (2.5, 1.0, 10.0)


def test_probe_cli_prints_its_readings(HP, capsys):
    HP.main(["--readings", "2", "--pause", "0"])
    out = capsys.readouterr().out
    assert out.count("ns/load") == 2 and "chase median" in out and "fma median" in out


def test_bench_solver_takes_probe():
    B = load_bench("bench_solver")
    a = B.parse_args(["--warm", "--no-main", "--cpu", "--warm-modes", "drift", "scalar", "--probe"])
    assert a.probe and a.warm and a.no_main and a.cpu and a.warm_modes == ["drift", "scalar"]
    assert not B.parse_args(["--warm"]).probe
    assert B._probe_cell((0.5, 0.25, 1.0)) == "0.500 [0.250-1.000] ms"
