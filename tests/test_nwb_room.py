"""Disk room for results (round 40, helper left40): ``save_results`` (the API
the CLI and the tuner's export share) refuses a write the disk has no room
for before writing anything; the ``.nwb`` writer checks the room before each
block, so HDF5 never meets the full disk itself (when it did, the process
ended with SIGSEGV in HDF5's exit handler after the message)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from _synth import can_mount_tmpfs

from napari_catune import cli, nwb
from napari_catune.params import TuningParams
from napari_catune.results import save_results

from test_cli_inputs import _error, _params, _run  # noqa: F401 - shared helpers
from test_cli_out39 import _traces

SRC = Path(nwb.__file__).resolve().parents[1]  # the tree under test
_VFS = namedtuple("_VFS", "f_bavail f_frsize")


def _result(n=20, T=2000):
    rng = np.random.default_rng(0)
    act = np.abs(rng.normal(size=(n, T)))
    return dict(activity=act, fit=act + 1.0, baseline=np.ones(n), roi_ids=np.arange(1, n + 1),
                fs=30.0, params=TuningParams(0.05, 0.5, 30.0, 0.2))


def _free_bytes(monkeypatch, *free):
    """os.statvfs reports ``free`` bytes (one value per call, the last one kept)."""
    calls = []

    def fake(path):
        calls.append(str(path))
        return _VFS(free[min(len(calls), len(free)) - 1], 1)

    monkeypatch.setattr(os, "statvfs", fake)
    return calls


@pytest.mark.parametrize("ext", [".npz", ".nwb", ".csv", ".npy"])
def test_save_results_refuses_before_writing_when_the_disk_is_short(tmp_path, monkeypatch, ext):
    if ext == ".nwb":
        pytest.importorskip("pynwb")
    out = tmp_path / f"res{ext}"
    out.write_bytes(b"earlier result")
    calls = _free_bytes(monkeypatch, 50_000)
    with pytest.raises(OSError) as e:
        save_results(out, **_result())
    assert e.value.errno == errno.ENOSPC
    msg = str(e.value)
    assert f"res{ext} needs about " in msg and f"on {tmp_path}, 50.0 kB free" in msg
    assert "free space there or write elsewhere" in msg
    assert calls and out.read_bytes() == b"earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # nothing half-written


def test_save_results_writes_when_there_is_room(tmp_path, monkeypatch):
    _free_bytes(monkeypatch, 10**12)
    save_results(tmp_path / "res.npz", **_result())
    assert (tmp_path / "res.npz").is_file()


def test_nwb_blocks_stop_before_hdf5_meets_a_disk_filled_during_the_write(tmp_path,
                                                                        monkeypatch):
    # the room is there when the write starts, then another writer takes it:
    # the next block stops with ENOSPC (HDF5 itself never fails a write)
    pytest.importorskip("pynwb")
    monkeypatch.setattr(nwb, "_BLOCK_BYTES", 1 << 16)
    monkeypatch.setattr(nwb, "_HDF5_CHUNK_BYTES", 1 << 14)
    out = tmp_path / "res.nwb"
    out.write_bytes(b"earlier result")
    calls = _free_bytes(monkeypatch, 10**12, 10**12, 10**12, 1 << 20)
    with pytest.raises(OSError) as e:
        save_results(out, **_result())
    assert e.value.errno == errno.ENOSPC and "no space left" in str(e.value)
    assert len(calls) >= 4  # the check before the write, then one a block
    assert out.read_bytes() == b"earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_cli_refuses_before_solving_and_says_what_to_do(capsys, tmp_path, monkeypatch):
    import napari_catune.solver as solver

    npy, _ = _traces(tmp_path, {"sampling_rate_hz": 30.0}, n=4, T=3000)
    p = _params(tmp_path / "p.json", 30.0)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(cli.shutil, "disk_usage", lambda f: usage(10**9, 10**9 - 150_000, 150_000))
    monkeypatch.setattr(solver, "run_deconvolution_full",
                        lambda *a, **k: pytest.fail("solved despite a full disk"))
    for ext in (".nwb", ".csv", ".npz"):
        code, _, err = _run(capsys, "deconvolve", npy, "--params", p, "-o", tmp_path / f"a{ext}")
        assert code == 1
        line = _error(err)
        assert f"no space left on {tmp_path}: need " in line and "150 kB free" in line
        assert "free space there or write the output elsewhere" in line
    assert cli._size_text(160 * 10**6) == "160 MB" and cli._size_text(2.5e9) == "2.5 GB"




@pytest.mark.skipif(not can_mount_tmpfs(), reason="no private tmpfs (unshare -rm) here")
def test_nwb_on_a_disk_that_fills_during_the_write_ends_cleanly(tmp_path):
    """The thirty-ninth round's leftover, reproduced: a 150 MB tmpfs, the
    checks before the solve and before the write bypassed (as when another
    writer fills the disk meanwhile), 100 ROIs x 50,000 frames to .nwb (its
    row spools fit, the file does not).  Was: the message, then SIGSEGV
    (exit 139) in HDF5's exit handler; now exit 1 and that one line."""
    pytest.importorskip("pynwb")
    from _synth import calcium_traces
    from napari_catune.params import save_params

    y = calcium_traces(100, 50_000, fs=30.0, tau_r=0.05, tau_d=0.5, seed=1)
    np.save(tmp_path / "big.npy", y.astype(np.float32))
    save_params(TuningParams(0.05, 0.5, 30.0, 0.2), tmp_path / "p.json")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    out = mnt / "out.nwb"
    script = ("import sys; from napari_catune import cli, results; "
              "cli.check_free_space = lambda *a: None; results.check_room = lambda *a: None; "
              "sys.exit(cli.main(sys.argv[1:]))")
    env = dict(os.environ, PYTHONPATH=str(SRC))
    cmd = (f"mount -t tmpfs -o size=150m tmpfs {mnt} && echo old > {out} && "
           f"{sys.executable} -c '{script}' deconvolve {tmp_path / 'big.npy'} "
           f"--params {tmp_path / 'p.json'} -o {out} -q; echo rc=$?; ls -A {mnt}; cat {out}")
    run = subprocess.run(["unshare", "-rm", "sh", "-c", cmd], capture_output=True, text=True,
                         timeout=600, env=env)
    assert run.stdout.split() == ["rc=1", out.name, "old"], (run.stdout, run.stderr[-3000:])
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"napari-catune deconvolve: error: no space left on {mnt}: need "), run.stderr[-3000:]


def test_the_checks_before_the_write_count_the_room_the_nwb_writer_keeps():
    # a run refused up front, not one stopped at its last block
    from napari_catune import results

    r = {**_result(), "fitted_trace": None}
    assert results.bytes_needed(".nwb", r) - results.bytes_needed(".npz", r) == nwb._ROOM_MARGIN
    assert (cli._SpoolWriter.bytes_needed(3, 100, ".nwb")
            - cli._SpoolWriter.bytes_needed(3, 100, ".npz") == nwb._ROOM_MARGIN)


def test_a_small_nwb_is_written_on_a_disk_with_20_mb_free(tmp_path, monkeypatch):
    # the margin kept beyond each block is sized from what HDF5 may still
    # write at close (its chunk cache, metadata), not a fixed 32 MB that
    # refused a 1 MB file on 21 MB free (revl40 F4)
    pytest.importorskip("pynwb")
    _free_bytes(monkeypatch, 21_000_000)
    out = tmp_path / "res.nwb"
    save_results(out, **_result())
    assert 0 < out.stat().st_size < 2_000_000
    # still refused when the blocks and the margin do not fit
    _free_bytes(monkeypatch, nwb._ROOM_MARGIN)
    with pytest.raises(OSError) as e:
        save_results(tmp_path / "b.nwb", **_result())
    assert e.value.errno == errno.ENOSPC and not (tmp_path / "b.nwb").exists()


@pytest.mark.parametrize("no, words", [(122, "disk quota exceeded"), (27, "file too large"),
                                       (28, "no space left")])
def test_a_quota_or_file_size_limit_met_by_hdf5_reads_as_one_clean_error(tmp_path, monkeypatch,
                                                                         no, words):
    # HDF5's RuntimeError naming errno 122 (EDQUOT) or 27 (EFBIG) is treated
    # as ENOSPC is: a clean OSError naming the output and its folder, the
    # temp file emptied and removed, the earlier output kept (revl40 F3)
    pynwb = pytest.importorskip("pynwb")

    def fails(self, *a, **k):
        raise RuntimeError(f"Can't synchronously write data (file write failed: time = x, "
                           f"filename = 'f', file descriptor = 5, errno = {no}, "
                           "error message = 'whatever')")

    monkeypatch.setattr(pynwb.NWBHDF5IO, "write", fails)
    out = tmp_path / "res.nwb"
    out.write_bytes(b"earlier result")
    with pytest.raises(OSError) as e:
        save_results(out, **_result())
    assert e.value.errno == no
    assert str(e.value).startswith(f"[Errno {no}] cannot write res.nwb: {words} on {tmp_path}")
    assert out.read_bytes() == b"earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_the_cli_says_quota_exceeded_in_one_line(capsys, tmp_path, monkeypatch):
    pynwb = pytest.importorskip("pynwb")
    npy, _ = _traces(tmp_path, {"sampling_rate_hz": 30.0}, n=4, T=3000)
    p = _params(tmp_path / "p.json", 30.0)
    monkeypatch.setattr(pynwb.NWBHDF5IO, "write", lambda self, *a, **k: (_ for _ in ()).throw(
        RuntimeError("file write failed: errno = 122, error message = 'Disk quota exceeded'")))
    out = tmp_path / "a.nwb"
    out.write_bytes(b"old")
    code, _, err = _run(capsys, "deconvolve", npy, "--params", p, "-o", out, "-q")
    assert code == 1
    assert _error(err) == (f"napari-catune deconvolve: error: cannot write {out}: disk quota "
                           f"exceeded on {tmp_path}; free space within your quota there or "
                           "write the output elsewhere")
    assert out.read_bytes() == b"old" and not [q for q in tmp_path.iterdir() if ".catune-" in q.name]


def test_a_file_size_limit_is_refused_before_writing(tmp_path):
    """``ulimit -f`` (RLIMIT_FSIZE): statvfs shows room, but HDF5 would meet
    EFBIG (and crash at exit): save_results refuses first, with EFBIG."""
    script = ("import resource, sys, numpy as np\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, resource.RLIM_INFINITY))\n"
              "from napari_catune.params import TuningParams\n"
              "from napari_catune.results import save_results\n"
              "a = np.ones((20, 20000))\n"
              "try:\n"
              "    save_results(sys.argv[1], activity=a, fit=a, baseline=np.ones(20),"
              " roi_ids=np.arange(1, 21), fs=30.0, params=TuningParams(0.05, 0.5, 30.0, 0.2))\n"
              "except OSError as e:\n"
              "    print('refused', e.errno, e)\n")
    out = tmp_path / "res.nwb"
    out.write_bytes(b"old")
    run = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, PYTHONPATH=str(SRC)))
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith(f"refused 27 [Errno 27] cannot write res.nwb: file too large on "
                                 f"{tmp_path} (it needs about "), run.stdout
    assert "ulimit -f" in run.stdout and out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]
