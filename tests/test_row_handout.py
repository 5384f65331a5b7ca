"""Rows handed out to the solver threads a block at a time (solver._run_blocks):
every row solved once, the answers those of rows solved one by one (bit for
bit), a thread held up takes fewer rows, and an error in one thread stops the
hand-out and is raised without leaving a thread waiting."""

import threading

import numpy as np
import pytest

from napari_catune import solver as S
from napari_catune.simulation import regime_traces

# (guards against a hang only; the waits below end as soon as the other
# thread has done its part)
_WAIT = 60.0


def _index_rows(n):
    return np.arange(n, dtype=np.float64)[:, None]


@pytest.mark.parametrize("regime,n,T,baseline", [
    ("GCaMP6f-30Hz", 9, 3000, "scalar"),
    ("lam0-30Hz", 5, 20000, "scalar"),
    ("GCaMP6s-30Hz", 6, 4000, "drift"),
    ("lam1-30Hz", 7, 2500, "none"),
])
def test_rows_by_two_threads_equal_rows_one_by_one(monkeypatch, regime, n, T, baseline):
    from napari_catune.simulation import REGIMES

    fs, tr, td, lam, *_ = REGIMES[regime]
    y = regime_traces(regime, n, T, 11)
    monkeypatch.setattr(S, "_GRAB_SAMPLES", 1)  # blocks of one or two rows
    blocks = []
    kernel = S._run_blocks

    def spy(k, n_rows, ai, sc, ao, workspace=None, stop=None):
        def k2(*a):
            blocks.append(a[0].shape[0])
            return k(*a)
        return kernel(k2, n_rows, ai, sc, ao, workspace, stop)

    monkeypatch.setattr(S, "_run_blocks", spy)
    monkeypatch.setenv("CATUNE_NUM_THREADS", "2")
    both = S.run_deconvolution_full(y, fs, tr, td, lam, baseline=baseline)
    solve_calls = [k for k in blocks if k < n]
    assert len(solve_calls) >= 3  # the rows went out in several blocks
    monkeypatch.setenv("CATUNE_NUM_THREADS", "1")
    for i in range(n):
        one = S.run_deconvolution_full(y[i], fs, tr, td, lam, baseline=baseline)
        assert np.array_equal(both.activity[i], one.activity)
        assert np.array_equal(both.reconvolution[i], one.reconvolution)
        assert np.array_equal(np.asarray(both.baseline[i]), np.asarray(one.baseline))
        assert both.iterations[i] == one.iterations and both.converged[i] == one.converged


def test_every_row_once_and_a_held_up_thread_takes_fewer(monkeypatch):
    # the calling thread's first block waits until the pool's thread has
    # done every other row: with one static block per thread it would wait
    # for rows nobody takes (the guard then fails the test)
    monkeypatch.setenv("CATUNE_NUM_THREADS", "2")
    monkeypatch.setattr(S, "_GRAB_SAMPLES", 1)
    n = 12
    rows = _index_rows(n)
    seen = []
    lock = threading.Lock()
    rest_done = threading.Event()
    main = threading.main_thread()
    held = []

    def kernel(r, out):
        me = threading.current_thread()
        block = [int(v) for v in r[:, 0]]
        with lock:
            seen.append((me is main, block))
            first_main = me is main and not held
            if first_main:
                held.append(len(block))
            done = sum(len(b) for m, b in seen if not m)
            if held and done == n - held[0]:
                rest_done.set()
        if first_main:
            assert rest_done.wait(_WAIT), "the other thread did not take the remaining rows"
        out[:] = r[:, 0] * 2.0
        return 0

    out = np.zeros(n)
    S._run_blocks(kernel, n, (rows,), (), (out,))
    assert np.array_equal(out, rows[:, 0] * 2.0)
    allrows = sorted(i for _m, b in seen for i in b)
    assert allrows == list(range(n))  # every row once
    assert all(b == list(range(b[0], b[0] + len(b))) for _m, b in seen)  # contiguous
    assert sum(1 for m, _b in seen if m) == 1  # the held-up thread: one block
    assert sum(1 for m, _b in seen if not m) >= 2


@pytest.mark.parametrize("failing", ["pool", "caller"])
def test_an_error_stops_the_hand_out_and_is_raised(monkeypatch, failing):
    monkeypatch.setenv("CATUNE_NUM_THREADS", "2")
    monkeypatch.setattr(S, "_GRAB_SAMPLES", 1)
    n = 20
    rows = _index_rows(n)
    raised = threading.Event()
    both = threading.Barrier(2, timeout=_WAIT)  # each thread on its first block
    calls = []
    main = threading.main_thread()

    def kernel(r, out):
        me_fails = (threading.current_thread() is main) == (failing == "caller")
        calls.append((me_fails, r.shape[0]))
        both.wait()
        if me_fails:
            raised.set()
            raise ValueError("bad row")
        # the other thread: its first block ends once the error is raised
        assert raised.wait(_WAIT)
        return 0

    with pytest.raises(ValueError, match="bad row"):
        S._run_blocks(kernel, n, (rows,), (), (np.zeros(n),))
    # one block each: nothing handed out after the error
    assert len(calls) == 2 and {c[0] for c in calls} == {True, False}
    assert sum(c[1] for c in calls) < n
    # the pool is not left busy: the next call runs every row
    out = np.zeros(n)
    S._run_blocks(lambda r, o: o.__setitem__(slice(None), r[:, 0]) or 0, n, (rows,), (),
                  (out,))
    assert np.array_equal(out, rows[:, 0])


def test_a_stop_value_ends_the_hand_out(monkeypatch):
    # pdas_rows' non-zero code (a non-finite input): no more rows handed out
    monkeypatch.setenv("CATUNE_NUM_THREADS", "2")
    monkeypatch.setattr(S, "_GRAB_SAMPLES", 1)
    n = 20
    rows = _index_rows(n)
    stopped = threading.Event()
    both = threading.Barrier(2, timeout=_WAIT)
    calls = []
    main = threading.main_thread()

    def kernel(r, out):
        calls.append(r.shape[0])
        both.wait()
        if threading.current_thread() is main:
            stopped.set()
            return 1
        assert stopped.wait(_WAIT)
        return 0

    codes = S._run_blocks(kernel, n, (rows,), (), (np.zeros(n),), None, S._code_set)
    assert any(codes) and len(calls) == 2 and sum(calls) < n


def test_one_row_is_one_call_on_the_calling_thread(monkeypatch):
    monkeypatch.delenv("CATUNE_NUM_THREADS", raising=False)
    threads = []
    got = []

    def ws():
        got.append("ws")
        return (np.zeros(3),), lambda: got.append("released")

    def kernel(r, out, w):
        threads.append(threading.current_thread())
        assert r.shape == (1, 5) and w.shape == (3,)
        return 0

    y = np.zeros((1, 5))
    assert S._run_blocks(kernel, 1, (y,), (), (np.zeros(1),), ws) == [0]
    assert threads == [threading.current_thread()] and got == ["ws", "released"]
