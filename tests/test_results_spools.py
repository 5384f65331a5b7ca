"""Row spools and temporary outputs of killed runs (round 40, helper left40):
any run that writes into a folder removes the temporary files there whose
writer is gone (killed, its pid reused, the machine rebooted), whichever
output they were for; a live run's files are never removed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from napari_catune import _atomic
from napari_catune._atomic import atomic_write_text, remove_stale_temps

from test_cli_inputs import _params, _run  # noqa: F401 - shared helpers
from test_cli_out39 import _traces

SRC = Path(_atomic.__file__).resolve().parents[1]  # the tree under test

_HOLDER = """
import sys
from napari_catune._atomic import temp_prefix
from napari_catune.results import RowSpool
import numpy as np

spool = RowSpool(3, 50, sys.argv[1], temp_prefix("other.nwb", "activity"))
spool.write_rows(0, np.ones((3, 50)))
print(spool.path, flush=True)
sys.stdin.read()  # held open until the test closes stdin (or kills us)
spool.close()
"""


def _holder(folder):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    path = Path(proc.stdout.readline().strip())  # the spool exists once its name is printed
    assert path.is_file() and path.name.startswith(".other.nwb.catune-")
    return proc, path


def test_a_live_runs_spool_is_kept_and_a_killed_ones_removed_by_any_run_there(capsys,
                                                                             tmp_path):
    npy, _ = _traces(tmp_path, {"sampling_rate_hz": 30.0})
    p = _params(tmp_path / "p.json", 30.0)
    proc, spool = _holder(tmp_path)
    try:
        # another output in the same folder, while the holder is writing: its spool stays
        code, _, err = _run(capsys, "deconvolve", npy, "--params", p, "-o", tmp_path / "a.csv",
                            "-q")
        assert code == 0, err
        assert spool.is_file() and "removed" not in err
        atomic_write_text(tmp_path / "note.txt", "x")  # a library write there: kept too
        assert spool.is_file()
        proc.kill()  # SIGKILL: no clean-up
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL and spool.is_file()
        # the next run into the folder (another output again) removes it, and says so
        code, _, err = _run(capsys, "deconvolve", npy, "--params", p, "-o", tmp_path / "b.nwb"
                            if _has_pynwb() else tmp_path / "b.csv", "-q")
        assert code == 0, err
        assert not spool.exists()
        assert f"removed {spool} (" in err and f"process {proc.pid}, no longer running" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not [q.name for q in tmp_path.iterdir() if ".catune-" in q.name]


def _has_pynwb():
    try:
        import pynwb  # noqa: F401
    except ImportError:
        return False
    return True


def test_library_writes_sweep_the_folder(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".other.nwb.catune-{dead.pid}-{_atomic._host()}.fit.abcd1234.tmp"
    stale.write_bytes(b"half")
    with pytest.warns(UserWarning, match=rf"removed 1 stale temporary file.*{dead.pid}"):
        atomic_write_text(tmp_path / "p.json", "{}")
    assert sorted(q.name for q in tmp_path.iterdir()) == ["p.json"]


@pytest.mark.skipif(not _atomic._owner(), reason="no /proc owner token on this system")
def test_the_owner_token_tells_a_reused_pid_a_reboot_and_another_namespace(tmp_path):
    boot, ns, start = _atomic._owner()[1:].split("-")
    host, parent = _atomic._host(), os.getppid()  # a live pid, not ours
    parent_start = _atomic._start_ticks(parent)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    def name(tag, pid, b, n, s):
        f = tmp_path / f".{tag}.catune-{pid}-{host}.activity.@{b}-{n}-{s:x}.x1.tmp"
        f.write_bytes(b"x")
        return f

    live = name("live", parent, boot, ns, parent_start)
    reused = name("reused", parent, boot, ns, parent_start + 1)  # the pid now runs a later process
    rebooted = name("rebooted", parent, "0" * 8 if boot != "0" * 8 else "1" * 8, ns, 5)
    other_ns = name("elsewhere", dead.pid, boot, "1234", 5)  # a container's pid: cannot tell
    gone = name("gone", dead.pid, boot, ns, 5)
    removed = {p.name for p, _, _ in remove_stale_temps(tmp_path / "x.csv", folder_wide=True)}
    assert removed == {reused.name, rebooted.name, gone.name}
    assert live.is_file() and other_ns.is_file()


def test_spools_and_atomic_temps_carry_the_owner_token(tmp_path, monkeypatch):
    from napari_catune.results import RowSpool

    s = RowSpool(2, 5, tmp_path, _atomic.temp_prefix("o.nwb", "fit"))
    try:
        m = _atomic._ANY.match(s.path.name)
        assert m and int(m.group("pid")) == os.getpid() and m.group("name") == "o.nwb"
        if _atomic._owner():
            assert f".fit.{_atomic._owner()}." in s.path.name and m.group("start")
        assert remove_stale_temps(tmp_path / "o.nwb", folder_wide=True) == []  # ours: kept
    finally:
        s.close()
    # the longest name (a long target, a 40-character host) within 255 bytes
    monkeypatch.setattr(_atomic, "_host", lambda: "h" * 40)
    assert len(_atomic.temp_prefix("x" * 300, "fitted_trace") + "abcdefgh.tmp.npy") <= 255


@pytest.mark.skipif(not hasattr(os, "fork") or not _atomic._owner(),
                    reason="needs fork and the /proc owner token")
def test_a_forked_workers_live_temp_is_kept_by_the_parents_writes(tmp_path):
    """A child made by fork (multiprocessing's workers on Linux) names its temp
    files with its own pid and its own start time: the parent's (or a
    sibling's) write into the folder sees a live writer and keeps the file."""
    _atomic._owner()  # the parent's token computed (and cached) before the fork
    r, w = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a temp file of its own, held until the parent says
        try:
            os.close(r)
            os.close(w2)
            f = tmp_path / (_atomic.temp_prefix("res_a.nwb") + "x1.tmp.nwb")
            f.write_bytes(b"live")
            os.write(w, f.name.encode() + b"\n")
            os.read(r2, 1)
        finally:
            os._exit(0)
    os.close(w)
    os.close(r2)
    try:
        name = os.read(r, 4096).decode().strip()
        m = _atomic._ANY.match(name)
        assert m and int(m.group("pid")) == pid
        assert int(m.group("start"), 16) == _atomic._start_ticks(pid)  # the child's own
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a "removed ... stale" warning fails the test
            atomic_write_text(tmp_path / "res_b.txt", "x")
        assert remove_stale_temps(tmp_path / "z.csv", folder_wide=True) == []
        assert (tmp_path / name).read_bytes() == b"live"
    finally:
        os.write(w2, b"x")
        os.waitpid(pid, 0)


_NS_WRITER = """
import os, sys, time
from pathlib import Path
from napari_catune._atomic import atomic_write_via_path
folder = Path(sys.argv[1])
def write(tmp):
    Path(tmp).write_bytes(b"x" * 1000)
    (folder / "started").write_text(str(os.getpid()))
    while not (folder / "go").exists():
        time.sleep(0.05)
atomic_write_via_path(folder / "long.bin", write)
print("writer: published", flush=True)
"""

_NS_CLEANER = """
import sys, warnings
from pathlib import Path
from napari_catune._atomic import atomic_write_text
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    atomic_write_text(Path(sys.argv[1]) / "other.txt", "x")
print("cleaner warnings:", [str(x.message) for x in w], flush=True)
"""


def test_a_pid_namespace_without_its_own_proc_keeps_a_live_writers_temp(tmp_path):
    """``unshare -p -f`` without ``--mount-proc``: our pids (the writer is pid 2
    or so) are looked up in the host's /proc, whose pid 2 is another process.
    Nothing is removed on such evidence; the writer publishes its file."""
    if subprocess.run(["unshare", "-r", "-p", "-f", "true"], capture_output=True).returncode:
        pytest.skip("unshare -r -p -f is not allowed here")
    (tmp_path / "w.py").write_text(_NS_WRITER)
    (tmp_path / "c.py").write_text(_NS_CLEANER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    d = tmp_path / "out"
    d.mkdir()
    script = (f"{sys.executable} {tmp_path / 'w.py'} {d} & "
              f"while [ ! -e {d}/started ]; do sleep 0.05; done; "
              f"{sys.executable} {tmp_path / 'c.py'} {d}; ls -a {d} > {tmp_path / 'ls.txt'}; "
              f"touch {d}/go; wait")
    run = subprocess.run(["unshare", "-r", "-p", "-f", "bash", "-c", script], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "cleaner warnings: []" in run.stdout and "writer: published" in run.stdout
    assert any(".long.bin.catune-" in n for n in (tmp_path / "ls.txt").read_text().split())
    assert (d / "long.bin").read_bytes() == b"x" * 1000


def test_no_removal_on_evidence_from_a_proc_that_is_not_ours(tmp_path, monkeypatch):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".o.nwb.catune-{dead.pid}-{_atomic._host()}.fit.abcd1234.tmp"
    stale.write_bytes(b"x")
    monkeypatch.setattr(_atomic, "_proc_is_ours", lambda: False)
    assert remove_stale_temps(tmp_path / "o.nwb") == [] and stale.is_file()
    monkeypatch.undo()
    assert [p for p, _, _ in remove_stale_temps(tmp_path / "o.nwb")] == [stale]
    assert _atomic._proc_is_ours()  # this test's own /proc is ours


@pytest.mark.skipif(not _atomic._owner(), reason="no /proc owner token on this system")
def test_another_boot_id_is_a_reboot_only_in_our_pid_namespace(tmp_path, monkeypatch):
    """A boot id not ours in another pid namespace is another machine with the
    same host name (or a container of before a reboot): kept.  In our
    namespace it is this machine before its reboot: removed.  A cleaner that
    cannot read its own token removes no file that has one."""
    boot, ns, _ = _atomic._owner()[1:].split("-")
    other_boot = "0" * 8 if boot != "0" * 8 else "1" * 8
    host, live = _atomic._host(), os.getppid()

    def name(tag, b, n):
        f = tmp_path / f".{tag}.catune-{live}-{host}.@{b}-{n}-5.x1.tmp"
        f.write_bytes(b"x")
        return f

    elsewhere = name("elsewhere", other_boot, "1234")
    rebooted = name("rebooted", other_boot, ns)
    assert [p for p, _, _ in remove_stale_temps(tmp_path / "x.csv", folder_wide=True)] == [rebooted]
    assert elsewhere.is_file()
    rebooted = name("rebooted", other_boot, ns)
    monkeypatch.setattr(_atomic, "_owner", lambda pid=None: "")
    assert remove_stale_temps(tmp_path / "x.csv", folder_wide=True) == []
    assert elsewhere.is_file() and rebooted.is_file()
