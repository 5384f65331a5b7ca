"""One compile child per numba cache directory (``_compile``'s lock), and no
child from a CLI run refused before it solves (user audit, round 34: four
quick ``estimate`` runs on an empty cache left four compiling children of
180-300 MB each).  Real child processes; waits only fail on a hang."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_catune import _compile, cli, solver
from napari_catune.params import TuningParams, save_params

_SRC = Path(__file__).resolve().parents[1] / "src"
_HANG = 600  # s: only a hang gets this far

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="flock: POSIX only")

_HOLDER = ("import sys\nfrom napari_catune import _compile\n"
           "fd = _compile.try_lock()\nprint('held' if fd is not None and fd >= 0 else fd, flush=True)\n"
           "sys.stdin.read()\n")


def _env():
    return dict(os.environ, PYTHONPATH=str(_SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    return tmp_path / "numba"


@pytest.fixture
def holder(cache):
    """Another process holding the compile lock until its stdin closes."""
    p = subprocess.Popen([sys.executable, "-c", _HOLDER], env=_env(), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        yield p
    finally:
        if p.poll() is None:
            p.stdin.close()
            p.wait(_HANG)


def _release(p):
    p.stdin.close()
    assert p.wait(_HANG) == 0


def test_the_lock_is_the_cache_directory_s_and_lasts_the_holder_s_lifetime(holder, cache):
    assert Path(_compile.lock_path()).parent.parent == cache
    assert _compile.try_lock() is None  # held by the other process
    _release(holder)
    fd = _compile.try_lock()
    assert fd is not None and fd >= 0
    os.close(fd)


def test_a_second_compile_child_exits_at_once(holder):
    child = subprocess.Popen([sys.executable, "-m", "napari_catune._compile"], env=_env(),
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    try:
        first = child.stdout.readline().strip()  # "live" (after a compile) without the lock
    finally:
        if child.poll() is None and first != _compile.BUSY:
            child.kill()
    assert first == _compile.BUSY
    assert child.wait(_HANG) == 0
    assert os.listdir(os.path.dirname(_compile.lock_path())) == [_compile.LOCK_NAME]  # nothing compiled


def test_the_parent_of_a_busy_child_waits_for_the_lock_then_loads(holder, monkeypatch):
    """The real child says "busy"; this process keeps the NumPy solver until
    the lock is free, then switches to the compiled code (no compile of its own
    while the other child runs)."""
    monkeypatch.setattr(solver, "_compile_state", None)
    try:
        assert solver.start_background_compile(force=True, passes=False) == "started"
        deadline = time.monotonic() + _HANG
        while (solver._compile_proc is None or solver._compile_proc.poll() is None):
            assert time.monotonic() < deadline, "the compile child hangs"
            time.sleep(0.05)
        assert solver._compile_proc.returncode == 0  # the busy child is gone ...
        assert solver.compile_state() == "subprocess"  # ... and we wait for the lock
        assert not solver.compiled_ready()
        _release(holder)
        assert solver.wait_compiled(_HANG)
        assert solver.compile_state() == "ready" and solver._compile_error is None
    finally:
        solver.wait_compiled(_HANG)
        solver._compile_state = None


def test_a_refused_cli_run_starts_no_compile_child(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(solver, "start_background_compile",
                        lambda *a, **k: calls.append(1) or "cached")
    p = tmp_path / "p.json"
    save_params(TuningParams(0.05, 0.4, 20.0, 0.2), p)
    y = np.ones((3, 200)) + np.random.default_rng(0).standard_normal((3, 200)) * 0.1
    np.save(tmp_path / "tr.npy", y)
    bad = y.copy()
    bad[1, 5] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    refused = [
        ["deconvolve", tmp_path / "missing.npy", "--params", p, "-o", tmp_path / "a.npy"],
        ["deconvolve", tmp_path / "tr.npy", "--params", p, "-o", tmp_path / "a.npy",
         "--fs", "30"],
        ["deconvolve", tmp_path / "bad.npy", "--params", p, "-o", tmp_path / "a.npy"],
        ["estimate", tmp_path / "missing.npy", "--fs", "20"],
        ["estimate", tmp_path / "tr.npy"],  # no rate
    ]
    for argv in refused:
        assert cli.main([str(a) for a in argv]) == 2, argv
    capsys.readouterr()
    assert calls == []
    assert cli.main([str(a) for a in ["deconvolve", tmp_path / "tr.npy", "--params", p,
                                      "-o", tmp_path / "a.npy", "-q", "--fs", "20"]]) == 0
    assert calls == [1]
