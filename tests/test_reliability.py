"""Reliability under hostile input and faults (issue 11, items 1-6).

Crafted files that used to crash the process are loaded in a subprocess, so
a regression shows up as a failed test (exit code and stderr) instead of
killing the test run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from napari_catune.loaders import check_csc, load_caiman, load_suite2p
from test_loaders import make_caiman, make_suite2p

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


def _python(code: str, *args, timeout=120, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(HERE), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=env, **kw,
    )


# =========================================================================
# 1. sparse structures are validated before scipy indexes memory with them
# =========================================================================

NPIX = 24 * 30  # make_caiman's default dims


def _set(h5, key, value):
    if key in h5:
        del h5[key]
    h5[key] = value


def _crafted_caiman(path: Path, case: str) -> str:
    """Write a CaImAn file with one damaged field; return the field's name."""
    import h5py

    make_caiman(path)
    with h5py.File(path, "a") as h5:
        A = "estimates/A/"
        ind = h5[A + "indices"][()]
        ptr = h5[A + "indptr"][()]
        data = h5[A + "data"][()]
        nnz = ind.size
        field = "indices"
        if case == "index_eq_rows":
            ind[3] = NPIX
            _set(h5, A + "indices", ind)
        elif case == "index_1000":
            ind[3] = 1000
            _set(h5, A + "indices", ind)
        elif case == "index_negative":
            ind[3] = -1
            _set(h5, A + "indices", ind)
        elif case == "index_huge_uint64":
            _set(h5, A + "indices", ind.astype(np.uint64) | np.uint64(2**63))
        elif case == "index_float":
            _set(h5, A + "indices", ind.astype(np.float64) + 0.5)
        elif case == "index_2d":
            _set(h5, A + "indices", ind.reshape(1, -1))
        elif case == "index_group":
            del h5[A + "indices"]
            h5.create_group(A + "indices")
        elif case == "indptr_not_zero_start":
            ptr[0] = 1
            _set(h5, A + "indptr", ptr)
            field = "indptr"
        elif case == "indptr_decreasing":
            ptr[2] = ptr[1] - 1
            _set(h5, A + "indptr", ptr)
            field = "indptr"
        elif case == "indptr_end_short":
            ptr[-1] = nnz - 1
            _set(h5, A + "indptr", ptr)
            field = "indptr"
        elif case == "indptr_beyond_nnz":
            ptr[-2] = nnz + 100
            ptr[-1] = nnz + 100
            _set(h5, A + "indptr", ptr)
            field = "indptr"
        elif case == "indptr_negative":
            ptr[1] = -5
            _set(h5, A + "indptr", ptr)
            field = "indptr"
        elif case == "indptr_too_long":
            _set(h5, A + "indptr", np.append(ptr, nnz))
            field = "indptr"
        elif case == "data_short":
            _set(h5, A + "data", data[:-3])
            field = "data"
        elif case == "data_strings":
            _set(h5, A + "data", np.array([b"x"] * nnz))
            field = "data"
        elif case == "shape_three":
            _set(h5, A + "shape", np.array([NPIX, 4, 1]))
            field = "shape"
        elif case == "shape_negative":
            _set(h5, A + "shape", np.array([-NPIX, 4]))
            field = "shape"
        elif case == "shape_nan":
            _set(h5, A + "shape", np.array([np.nan, 4.0]))
            field = "shape"
        elif case == "shape_rows_bigger":
            # a larger declared row count than dims: indices may then exceed the image
            _set(h5, A + "shape", np.array([NPIX * 10, 4]))
            field = "shape"
        elif case == "dims_zero":
            _set(h5, "params/data/dims", np.array([0, 30]))
            field = "dims"
        elif case == "dims_absurd":
            _set(h5, "params/data/dims", np.array([10**9, 10**9]))
            field = "dims"
        else:  # pragma: no cover
            raise AssertionError(case)
    return field


CAIMAN_CASES = [
    "index_eq_rows", "index_1000", "index_negative", "index_huge_uint64", "index_float",
    "index_2d", "index_group", "indptr_not_zero_start", "indptr_decreasing",
    "indptr_end_short", "indptr_beyond_nnz", "indptr_negative", "indptr_too_long",
    "data_short", "data_strings", "shape_three", "shape_negative", "shape_nan",
    "shape_rows_bigger", "dims_zero", "dims_absurd",
]


def test_crafted_caiman_footprints_never_crash(tmp_path):
    """Every damaged sparse field: a ValueError naming the file and field, in a
    subprocess (the process used to die with 'double free or corruption')."""
    fields = {}
    for case in CAIMAN_CASES:
        fields[case] = _crafted_caiman(tmp_path / f"{case}.hdf5", case)
    run = _python(
        """
        import sys
        from pathlib import Path
        from napari_catune.loaders import load_caiman
        from napari_catune._reader_pipelines import read_caiman
        from napari_catune import cli
        folder = Path(sys.argv[1])
        for case in sys.argv[2:]:
            p = folder / f"{case}.hdf5"
            print("CASE", case, flush=True)
            for fn in (load_caiman, read_caiman):
                try:
                    fn(str(p))
                    print("LOADED", case, flush=True)
                except ValueError as e:
                    print("ERR", case, str(e).replace("\\n", " "), flush=True)
        # the command line on one of them: exit 2, one line
        code = cli.main(["info", str(folder / "index_negative.hdf5")])
        print("CLI", code, flush=True)
        """,
        tmp_path, *CAIMAN_CASES,
    )
    assert run.returncode == 0, (run.returncode, run.stdout[-2000:], run.stderr[-2000:])
    errors = {}
    for line in run.stdout.splitlines():
        if line.startswith("LOADED"):
            pytest.fail(f"crafted file loaded without error: {line}")
        if line.startswith("ERR"):
            _, case, msg = line.split(" ", 2)
            errors.setdefault(case, []).append(msg)
    assert set(errors) == set(CAIMAN_CASES)
    for case, msgs in errors.items():
        assert len(msgs) == 2  # the loader and the napari reader
        for msg in msgs:
            assert f"{case}.hdf5" in msg, msg
            assert fields[case] in msg, (case, msg)
    assert "CLI 2" in run.stdout
    assert "index_negative.hdf5" in run.stderr and "estimates/A/indices" in run.stderr
    assert "Traceback" not in run.stderr


def test_caiman_index_messages_name_the_range(tmp_path):
    for case, value in (("index_eq_rows", NPIX), ("index_1000", 1000), ("index_negative", -1)):
        path = tmp_path / f"{case}.hdf5"
        _crafted_caiman(path, case)
        with pytest.raises(ValueError) as info:
            load_caiman(path)
        msg = str(info.value)
        assert f"'estimates/A/indices'" in msg and f"outside 0..{NPIX - 1}" in msg
        assert f"e.g. {value})" in msg


def test_valid_uint64_and_unsorted_csc_still_loads(tmp_path):
    """Validation must not refuse what CaImAn (or scipy) may legitimately write."""
    import h5py

    path = tmp_path / "ok.hdf5"
    ref = make_caiman(path)
    want = load_caiman(path).labels
    with h5py.File(path, "a") as h5:
        ind = h5["estimates/A/indices"][()]
        ptr = h5["estimates/A/indptr"][()]
        data = h5["estimates/A/data"][()]
        # reverse each column's entries (unsorted indices are valid CSC)
        for j in range(ptr.size - 1):
            a, b = ptr[j], ptr[j + 1]
            ind[a:b], data[a:b] = ind[a:b][::-1].copy(), data[a:b][::-1].copy()
        _set(h5, "estimates/A/indices", ind.astype(np.uint64))
        _set(h5, "estimates/A/indptr", ptr.astype(np.uint32))
        _set(h5, "estimates/A/data", data.astype(np.float32))
        _set(h5, "estimates/A/shape", np.array([NPIX, 4], dtype=np.uint64))
    got = load_caiman(path).labels
    np.testing.assert_array_equal(got, want)
    assert set(np.unique(got)) == {0, 1, 2, 3, 4} and ref["dims"] == got.shape


def test_check_csc_direct():
    d, i, p, shape = check_csc([1.0, 2.0], [0, 2], [0, 1, 2], (3, 2), "m: 'A")
    assert shape == (3, 2) and i.dtype == np.int64 and p.dtype == np.int64
    with pytest.raises(ValueError, match=r"'A/indices' holds 1 row index.*outside 0\.\.2"):
        check_csc([1.0, 2.0], [0, 3], [0, 1, 2], (3, 2), "m: 'A")
    with pytest.raises(ValueError, match=r"'A/indptr' has 2 values; expected 3"):
        check_csc([1.0], [0], [0, 1], (3, 2), "m: 'A")
    # an empty matrix is fine
    assert check_csc([], np.array([], np.int32), [0, 0, 0], (0, 2), "m: 'A")[3] == (0, 2)


# ---------------------------------------------------------------- suite2p stat


def _crafted_stat(plane: Path, case: str) -> str:
    stat = list(np.load(plane / "stat.npy", allow_pickle=True))
    s = stat[2]
    field = "ypix"
    if case == "ypix_too_big":
        s["ypix"] = s["ypix"].copy()
        s["ypix"][0] = 24  # == Ly
    elif case == "ypix_1000":
        s["ypix"] = s["ypix"].copy()
        s["ypix"][0] = 1000
    elif case == "ypix_negative":
        s["ypix"] = s["ypix"].copy()
        s["ypix"][0] = -1
    elif case == "xpix_too_big":
        s["xpix"] = s["xpix"].copy()
        s["xpix"][-1] = 30
        field = "xpix"
    elif case == "xpix_short":
        s["xpix"] = s["xpix"][:-1]
        field = "xpix"
    elif case == "ypix_float_fraction":
        s["ypix"] = s["ypix"] + 0.5
    elif case == "ypix_nan":
        s["ypix"] = np.full(s["ypix"].shape, np.nan)
    elif case == "ypix_strings":
        s["ypix"] = np.array(["a"] * s["ypix"].size)
    elif case == "lam_short":
        s["lam"] = s["lam"][:-2]
        field = "lam"
    elif case == "lam_nan":
        s["lam"] = s["lam"].copy()
        s["lam"][0] = np.nan
        field = "lam"
    elif case == "overlap_short":
        s["overlap"] = s["overlap"][:3]
        field = "overlap"
    else:  # pragma: no cover
        raise AssertionError(case)
    np.save(plane / "stat.npy", np.array(stat, dtype=object), allow_pickle=True)
    return field


STAT_CASES = ["ypix_too_big", "ypix_1000", "ypix_negative", "xpix_too_big", "xpix_short",
              "ypix_float_fraction", "ypix_nan", "ypix_strings", "lam_short", "lam_nan",
              "overlap_short"]


@pytest.mark.parametrize("case", STAT_CASES)
def test_crafted_suite2p_stat(tmp_path, case):
    plane = make_suite2p(tmp_path)
    field = _crafted_stat(plane, case)
    with pytest.raises(ValueError) as info:
        load_suite2p(plane, allow_pickle=True)
    msg = str(info.value)
    assert "stat.npy" in msg and "ROI 2" in msg and f"'{field}'" in msg, msg


def test_crafted_suite2p_ops_size(tmp_path):
    plane = make_suite2p(tmp_path)
    ops = np.load(plane / "ops.npy", allow_pickle=True).item()
    for Ly, pattern in ((0, "positive"), (10**12, "GiB"), (2.5, "positive whole")):
        ops["Ly"] = Ly
        np.save(plane / "ops.npy", ops, allow_pickle=True)
        with pytest.raises(ValueError, match=rf"ops\.npy 'Ly'/'Lx'.*{pattern}"):
            load_suite2p(plane, allow_pickle=True)


def test_suite2p_integer_valued_float_pixels_load(tmp_path):
    plane = make_suite2p(tmp_path)
    want = load_suite2p(plane, allow_pickle=True).labels
    stat = list(np.load(plane / "stat.npy", allow_pickle=True))
    for s in stat:
        s["ypix"] = s["ypix"].astype(np.float64)
        s["xpix"] = s["xpix"].astype(np.uint16)
    np.save(plane / "stat.npy", np.array(stat, dtype=object), allow_pickle=True)
    np.testing.assert_array_equal(load_suite2p(plane, allow_pickle=True).labels, want)


# =========================================================================
# 2. an output never overwrites an input or its sidecar
# =========================================================================

from napari_catune import cli  # noqa: E402
from napari_catune.io import save_for_tuning  # noqa: E402
from napari_catune.params import TuningParams, save_params  # noqa: E402

from _synth import calcium_traces, can_mount_tmpfs  # noqa: E402

FS = 20.0


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def rec(tmp_path):
    """traces rec.npy + rec_metadata.json, params p.json; returns a dict of paths."""
    y = calcium_traces(4, 200, fs=FS, tau_r=0.05, tau_d=0.4)
    npy, side = save_for_tuning(y, FS, tmp_path / "rec")
    params = tmp_path / "p.json"
    save_params(TuningParams(0.05, 0.4, FS, 0.2), params)
    return {"npy": npy, "side": side, "params": params, "folder": tmp_path}


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _outputs_to_try(rec):
    f = rec["folder"]
    (f / "sub").mkdir(exist_ok=True)
    os.symlink(rec["npy"], f / "link_to_rec.npy")
    os.symlink(rec["side"], f / "link_to_side.json")
    os.link(rec["npy"], f / "hard.npy")
    return f


@pytest.mark.parametrize("spelling", ["same", "dotted", "symlink", "hardlink"])
def test_deconvolve_output_equal_to_input_refused(capsys, rec, spelling):
    f = _outputs_to_try(rec)
    out = {"same": rec["npy"], "dotted": f / "sub" / ".." / "rec.npy",
           "symlink": f / "link_to_rec.npy", "hardlink": f / "hard.npy"}[spelling]
    before = _snapshot(f)
    code, _, err = _run(capsys, "deconvolve", rec["npy"], "--params", rec["params"], "-o", out)
    assert code == 2
    line = _one_line(err)
    assert "would destroy the input" in line and str(out) in line
    assert _snapshot(f) == before


def test_input_given_through_a_symlink_is_protected(capsys, rec):
    f = rec["folder"]
    os.symlink(rec["npy"], f / "alias.npy")
    before = _snapshot(f)
    code, _, err = _run(capsys, "deconvolve", f / "alias.npy", "--params", rec["params"],
                        "-o", rec["npy"])
    assert code == 2 and "would destroy the input" in _one_line(err)
    assert _snapshot(f) == before


def test_full_npz_over_npz_input_refused(capsys, rec):
    f = rec["folder"]
    np.savez(f / "tr.npz", traces=np.load(rec["npy"]), fs=FS)
    before = _snapshot(f)
    code, _, err = _run(capsys, "deconvolve", f / "tr.npz", "--params", rec["params"],
                        "-o", f / "tr.npz", "--full")
    assert code == 2 and "the input" in _one_line(err)
    assert _snapshot(f) == before


@pytest.mark.parametrize("which", ["sidecar", "sidecar_symlink", "input_via_symlink"])
def test_estimate_output_over_sidecar_refused(capsys, rec, which):
    f = _outputs_to_try(rec)
    out = {"sidecar": rec["side"], "sidecar_symlink": f / "link_to_side.json",
           "input_via_symlink": rec["side"]}[which]
    inp = rec["npy"] if which != "input_via_symlink" else f / "link_to_rec.npy"
    before = _snapshot(f)
    code, _, err = _run(capsys, "estimate", inp, "-o", out)
    assert code == 2
    line = _one_line(err)
    assert "sidecar rec_metadata.json" in line and "would destroy the input" in line
    assert _snapshot(f) == before


def test_suite2p_and_zarr_inputs_protected(capsys, tmp_path, rec):
    plane = make_suite2p(tmp_path / "s2p", fs=FS)
    before = _snapshot(plane)
    for target in (plane / "F.npy", plane / "spks.npy"):
        code, _, err = _run(capsys, "deconvolve", plane.parent, "--params", rec["params"],
                            "-o", target)
        assert code == 2 and f"the input {target}" in _one_line(err)
    assert _snapshot(plane) == before
    # a new file beside the inputs is fine
    code, _, err = _run(capsys, "deconvolve", plane, "--params", rec["params"],
                        "-o", plane / "activity.npy", "-q")
    assert code == 0, err
    assert np.load(plane / "activity.npy").shape == (3, 300)

    import zarr

    z = zarr.create_array(str(tmp_path / "tr.zarr"), shape=(2, 50), dtype="f8")
    z[:] = 1.0
    code, _, err = _run(capsys, "deconvolve", tmp_path / "tr.zarr", "--params", rec["params"],
                        "-o", tmp_path / "tr.zarr" / "zarr.npy")
    assert code == 2 and "inside the zarr input" in _one_line(err)


def test_view_screenshot_over_an_input_refused(capsys, tmp_path):
    img = tmp_path / "cells.png"
    img.write_bytes(b"\x89PNG not really")
    code, _, err = _run(capsys, "view", img, "--screenshot", img)
    assert code == 2 and "--screenshot" in _one_line(err)
    assert img.read_bytes() == b"\x89PNG not really"


# =========================================================================
# 3. the atomic writer respects what is at the path
# =========================================================================

import stat as _stat  # noqa: E402

from napari_catune._atomic import (  # noqa: E402
    atomic_save_npy, atomic_write_bytes, atomic_write_text, resolve_target,
)


def _dot_files(*folders):
    return [p.name for f in folders for p in Path(f).iterdir() if p.name.startswith(".")]


def test_fifo_and_folder_targets_refused(tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"pipe\.json: it is a FIFO"):
        atomic_write_text(fifo, "{}")
    assert _stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still a FIFO
    (tmp_path / "d").mkdir()
    with pytest.raises(ValueError, match=r"d: it is a folder"):
        atomic_write_bytes(tmp_path / "d", b"x")
    assert (tmp_path / "d").is_dir()
    # a symlink to a FIFO: the FIFO is named and left alone
    os.symlink(fifo, tmp_path / "link.npy")
    with pytest.raises(ValueError, match=r"pipe\.json \(the target of the symlink .*link\.npy\)"):
        atomic_save_npy(tmp_path / "link.npy", np.arange(3))
    assert (tmp_path / "link.npy").is_symlink()
    assert _dot_files(tmp_path) == []


def test_device_refused_without_writing():
    # resolve_target only inspects; it is what every write goes through
    with pytest.raises(ValueError, match=r"/dev/null: it is a character device"):
        resolve_target("/dev/null")


def test_symlink_loop_refused(tmp_path):
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    with pytest.raises(ValueError, match="loop"):
        atomic_write_text(tmp_path / "a", "x")
    assert (tmp_path / "a").is_symlink() and (tmp_path / "b").is_symlink()


def test_write_through_symlinks_to_the_target(tmp_path):
    data = tmp_path / "data"
    links = tmp_path / "links"
    data.mkdir()
    links.mkdir()
    real = data / "params.json"
    real.write_text("old")
    os.symlink(os.path.relpath(real, links), links / "hop.json")  # relative link
    os.symlink(links / "hop.json", links / "params.json")  # a chain of two links
    atomic_write_text(links / "params.json", "new")
    assert real.read_text() == "new"
    assert (links / "params.json").is_symlink() and (links / "hop.json").is_symlink()
    assert os.path.realpath(links / "params.json") == str(real)
    assert _dot_files(data, links) == []
    # a dangling link: its target is created, the link kept
    os.symlink(data / "fresh.npy", links / "fresh.npy")
    atomic_save_npy(links / "fresh.npy", np.arange(4))
    assert (links / "fresh.npy").is_symlink()
    np.testing.assert_array_equal(np.load(data / "fresh.npy"), np.arange(4))


def test_temp_file_lives_in_the_targets_folder(tmp_path, monkeypatch):
    import tempfile

    from napari_catune import _atomic

    data = tmp_path / "data"
    data.mkdir()
    (data / "t.bin").write_bytes(b"1")
    os.symlink(data / "t.bin", tmp_path / "t.bin")
    dirs = []
    real = tempfile.mkstemp

    def spy(*a, **k):
        dirs.append(Path(k["dir"]))
        return real(*a, **k)

    monkeypatch.setattr(_atomic.tempfile, "mkstemp", spy)
    atomic_write_bytes(tmp_path / "t.bin", b"2")
    assert dirs == [data] and (data / "t.bin").read_bytes() == b"2"


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o755, 0o444])
def test_existing_mode_kept(tmp_path, mode):
    f = tmp_path / "p.json"
    f.write_text("old")
    f.chmod(mode)
    atomic_write_text(f, "new")
    assert f.read_text() == "new"
    assert _stat.S_IMODE(os.stat(f).st_mode) == mode


def test_new_file_gets_umask_mode(tmp_path):
    from napari_catune._atomic import _UMASK

    atomic_write_text(tmp_path / "n.json", "x")
    assert _stat.S_IMODE(os.stat(tmp_path / "n.json").st_mode) == 0o666 & ~_UMASK


def test_cli_output_fifo_refused_and_symlink_followed(capsys, rec):
    f = rec["folder"]
    os.mkfifo(f / "out.npy")
    code, _, err = _run(capsys, "deconvolve", rec["npy"], "--params", rec["params"],
                        "-o", f / "out.npy")
    assert code == 2 and "FIFO" in _one_line(err)
    assert _stat.S_ISFIFO(os.lstat(f / "out.npy").st_mode)
    os.mkfifo(f / "est.json")
    code, _, err = _run(capsys, "estimate", rec["npy"], "-o", f / "est.json")
    assert code == 2 and "FIFO" in _one_line(err)

    res = f / "results"
    res.mkdir()
    (res / "act.npy").write_bytes(b"old")
    (res / "act.npy").chmod(0o600)
    os.symlink(res / "act.npy", f / "act.npy")
    code, _, err = _run(capsys, "deconvolve", rec["npy"], "--params", rec["params"],
                        "-o", f / "act.npy", "-q")
    assert code == 0, err
    assert (f / "act.npy").is_symlink()
    assert np.load(res / "act.npy").shape == (4, 200)
    assert _stat.S_IMODE(os.stat(res / "act.npy").st_mode) == 0o600
    assert _dot_files(f, res) == []


# =========================================================================
# 4. a full disk: checked up front, no memory-map faults, no debris, one line
# =========================================================================

import errno  # noqa: E402
import shutil  # noqa: E402
from collections import namedtuple  # noqa: E402


def _enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("full", [False, True])
def test_too_little_free_space_refused_before_solving(capsys, rec, monkeypatch, full):
    import napari_catune.solver as solver

    f = rec["folder"]
    out = f / ("old.npz" if full else "old.npy")
    out.write_bytes(b"earlier result")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(cli.shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 5000, 5000))
    monkeypatch.setattr(solver, "run_deconvolution_full",
                        lambda *a, **k: pytest.fail("solved despite a full disk"))
    argv = ["deconvolve", rec["npy"], "--params", rec["params"], "-o", out] + (
        ["--full"] if full else [])
    code, _, err = _run(capsys, *argv)
    assert code == 1
    line = _one_line(err)
    need = 3 * (8 * 4 * 200 + 4096) + 4 * 9 * 4 + 8192 if full else 8 * 4 * 200 + 4096
    assert f"no space left on {f}: need {need / 1e3:.1f} kB, 5.0 kB free" in line
    assert out.read_bytes() == b"earlier result" and _dot_files(f) == []


@pytest.mark.parametrize("where", ["rows", "archive"])
def test_enospc_while_writing_cleans_up(capsys, rec, monkeypatch, where):
    f = rec["folder"]
    out = f / "res.npz"
    out.write_bytes(b"earlier result")
    if where == "rows":
        calls = []
        real = cli._write_at

        def second_fails(*a):
            calls.append(1)
            if len(calls) == 2:
                _enospc()
            return real(*a)

        monkeypatch.setattr(cli, "_write_at", second_fails)
    else:
        monkeypatch.setattr(cli.zipfile.ZipFile, "write", _enospc)
    code, _, err = _run(capsys, "deconvolve", rec["npy"], "--params", rec["params"],
                        "-o", out, "--full", "--chunk-cells", "2", "-q")
    assert code == 1
    line = _one_line(err)
    assert line.startswith(f"napari-catune deconvolve: error: no space left on {f}: need ")
    assert out.read_bytes() == b"earlier result" and _dot_files(f) == []


def test_estimate_enospc_one_line(capsys, rec, monkeypatch):
    import napari_catune.params as params_mod

    f = rec["folder"]
    out = f / "est.json"
    out.write_text("earlier")
    # the JSON write itself fails (as it would on a full disk); the temp file goes
    def failing(path, text):
        from napari_catune import _atomic

        return _atomic._atomic_write(path, lambda fh: (fh.write(b"{"), _enospc()))

    monkeypatch.setattr(params_mod, "atomic_write_text", failing)
    code, _, err = _run(capsys, "estimate", rec["npy"], "-o", out)
    assert code == 1
    assert f"no space left on {f}: need 4.1 kB" in _one_line(err)
    assert out.read_text() == "earlier" and _dot_files(f) == []


def test_no_room_for_even_an_empty_file(capsys, rec, monkeypatch):
    monkeypatch.setattr(cli.tempfile, "mkstemp", _enospc)
    code, _, err = _run(capsys, "deconvolve", rec["npy"], "--params", rec["params"],
                        "-o", rec["folder"] / "a.npy")
    assert code == 1 and f"no space left on {rec['folder']}" in _one_line(err)



@pytest.mark.skipif(not can_mount_tmpfs(), reason="no private tmpfs (unshare -rm) here")
@pytest.mark.parametrize("full", [False, True])
def test_real_full_tmpfs(tmp_path, full):
    """A 1 MB tmpfs in a private mount namespace, the free-space check bypassed so
    the writes themselves hit ENOSPC: exit 1 (used to be SIGBUS, 135), old file
    intact, no temporary file left."""
    from _synth import calcium_traces

    np.save(tmp_path / "big.npy", calcium_traces(20, 10000, fs=FS, tau_r=0.05, tau_d=0.4))
    save_params(TuningParams(0.05, 0.4, FS, 0.2), tmp_path / "p.json")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    out = mnt / ("out.npz" if full else "out.npy")
    script = (
        "import sys; from napari_catune import cli; "
        "cli.check_free_space = lambda *a: None; sys.exit(cli.main(sys.argv[1:]))"
    )
    env = dict(os.environ, PYTHONPATH=str(SRC))
    cmd = (
        f"mount -t tmpfs -o size=1m tmpfs {mnt} && echo old > {out} && "
        f"{sys.executable} -c '{script}' deconvolve {tmp_path / 'big.npy'} "
        f"--params {tmp_path / 'p.json'} -o {out} -q {'--full' if full else ''}; "
        f"echo rc=$?; ls -A {mnt}; cat {out}"
    )
    run = subprocess.run(["unshare", "-rm", "sh", "-c", cmd], capture_output=True, text=True,
                         timeout=300, env=env)
    lines = run.stdout.split()
    assert lines == ["rc=1", out.name, "old"], (run.stdout, run.stderr)
    assert f"no space left on {mnt}: need" in run.stderr and "Traceback" not in run.stderr


# =========================================================================
# 5. SIGTERM is handled like Ctrl-C; temp files of killed runs are collected
# =========================================================================

import signal  # noqa: E402
import time  # noqa: E402

from napari_catune import _atomic  # noqa: E402

_BLOCKING_RUN = """
import sys, time
from pathlib import Path
import napari_catune.solver as solver
from napari_catune import cli

marker = Path(sys.argv[1])
real = solver.run_deconvolution_full
calls = []

def second_chunk_blocks(*a, **k):
    calls.append(1)
    if len(calls) == 2:  # the first chunk is on disk, in the temporary file
        marker.touch()
        time.sleep(600)
    return real(*a, **k)

solver.run_deconvolution_full = second_chunk_blocks
sys.exit(cli.main(sys.argv[2:]))
"""


def _start_blocking_run(rec, out, *extra):
    marker = rec["folder"] / "writing"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [sys.executable, "-c", _BLOCKING_RUN, str(marker), "deconvolve", str(rec["npy"]),
         "--params", str(rec["params"]), "-o", str(out), "--chunk-cells", "2", "-q", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    # wait for the condition (the marker file), not for a fixed time
    deadline = time.monotonic() + 180
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"run ended early: {proc.returncode} {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("run never reached its second chunk")
        time.sleep(0.05)
    marker.unlink()
    return proc


def _temps(folder: Path, name: str):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


@pytest.mark.parametrize("full", [False, True])
def test_sigterm_cleans_up_and_keeps_the_old_output(rec, full):
    f = rec["folder"]
    out = f / ("res.npz" if full else "res.npy")
    out.write_bytes(b"earlier result")
    proc = _start_blocking_run(rec, out, *(["--full"] if full else []))
    try:
        temps = _temps(f, out.name)
        assert temps, "the run should be writing its temporary files"
        assert all(f".catune-{proc.pid}-" in t for t in temps), temps  # the pid is in the name
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "napari-catune deconvolve: terminated (SIGTERM)"
    assert "Traceback" not in err
    assert out.read_bytes() == b"earlier result"
    assert _temps(f, out.name) == []


def test_sigkill_debris_removed_by_the_next_run(capsys, rec):
    f = rec["folder"]
    out = f / "res.npy"
    proc = _start_blocking_run(rec, out)
    proc.kill()
    proc.communicate(timeout=60)
    left = _temps(f, out.name)
    assert left and all(f".catune-{proc.pid}-" in t for t in left)
    # a temp file of a live process (our parent) and of another host: kept
    host = _atomic._host()
    live = f / f".res.npy.catune-{os.getppid()}-{host}.activity.x1.tmp.npy"
    other = f / f".res.npy.catune-{proc.pid}-elsewhere-{host}X.activity.x2.tmp.npy"
    live.write_bytes(b"busy")
    other.write_bytes(b"remote")
    code, _, err = _run(capsys, "deconvolve", rec["npy"], "--params", rec["params"],
                        "-o", out, "-q")
    assert code == 0, err
    for name in left:
        assert f"removed {f / name} (" in err and f"process {proc.pid}, no longer running" in err
    assert sorted(_temps(f, out.name)) == sorted([live.name, other.name])
    assert np.load(out).shape == (4, 200)


def test_library_writes_collect_stale_temps_too(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".p.json.catune-{dead.pid}-{_atomic._host()}.abcd1234.tmp"
    stale.write_text("half")
    with pytest.warns(UserWarning, match=rf"removed 1 stale temporary file.*{dead.pid}"):
        atomic_write_text(tmp_path / "p.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]


def test_temp_names_carry_pid_and_host(tmp_path):
    prefix = _atomic.temp_prefix("x" * 300, "activity")
    assert prefix.startswith("." + "x" * 120 + ".catune-")
    assert f"-{os.getpid()}-{_atomic._host()}.activity." in prefix
    assert len(prefix) < 200  # room for mkstemp's part within 255 bytes


# =========================================================================
# 6. --scheduler: the whole handshake is bounded; a wrong service is exit 2
# =========================================================================

import socket  # noqa: E402
import threading  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402


class _SilentServer:
    """Accepts TCP connections and never sends a byte (or, banner=..., sends that at once)."""

    def __init__(self, banner: bytes | None = None):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.banner = banner
        self.conns = []
        self.accepted = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.banner:
                conn.sendall(self.banner)
            self.accepted.set()

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):  # pragma: no cover - the Dask bytes are not a GET
        self.send_response(200)
        self.end_headers()


@pytest.fixture
def silent_server():
    srv = _SilentServer()
    yield srv
    srv.close()


@pytest.fixture
def banner_server():
    srv = _SilentServer(banner=b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\n\r\nBad request")
    yield srv
    srv.close()


@pytest.fixture
def http_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _deconvolve_on(capsys, rec, address, timeout="2"):
    out = rec["folder"] / "a.npy"
    code, _, err = _run(capsys, "deconvolve", rec["npy"], "--params", rec["params"], "-o", out,
                        "--scheduler", address, "--scheduler-timeout", timeout, "-q")
    assert not out.exists() and _dot_files(rec["folder"]) == []
    return code, err


def test_silent_tcp_service_gives_exit_2(rec, silent_server):
    """In a subprocess, so every byte of stderr (distributed's logging too) is seen."""
    address = f"tcp://127.0.0.1:{silent_server.port}"
    env = dict(os.environ, PYTHONPATH=str(SRC))
    run = subprocess.run(
        [sys.executable, "-m", "napari_catune.cli", "deconvolve", str(rec["npy"]),
         "--params", str(rec["params"]), "-o", str(rec["folder"] / "a.npy"),
         "--scheduler", address, "--scheduler-timeout", "2"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert silent_server.accepted.is_set()  # it did connect: the handshake is what hung
    assert run.returncode == 2, run.stderr
    line = _one_line(run.stderr)
    assert line.startswith(f"napari-catune deconvolve: error: no Dask scheduler answered at "
                           f"{address}: no Dask handshake within 2 s")
    assert not (rec["folder"] / "a.npy").exists() and _dot_files(rec["folder"]) == []


def test_http_server_gives_exit_2(capsys, rec, http_server):
    code, err = _deconvolve_on(capsys, rec, f"tcp://127.0.0.1:{http_server.server_port}")
    assert code == 2
    assert f"no Dask scheduler answered at tcp://127.0.0.1:{http_server.server_port}" in \
        _one_line(err)


def test_service_answering_http_at_once_gives_exit_2(capsys, rec, banner_server):
    # its bytes read as a Dask frame length used to ask for 3 EiB (MemoryError)
    code, err = _deconvolve_on(capsys, rec, f"tcp://127.0.0.1:{banner_server.port}")
    assert code == 2
    line = _one_line(err)
    assert "no Dask scheduler answered" in line and "not in the Dask protocol" in line


def test_wrong_scheme_and_refused_port(capsys, rec):
    code, err = _deconvolve_on(capsys, rec, "http://127.0.0.1:8787")
    assert code == 2 and "not a Dask address" in _one_line(err)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, err = _deconvolve_on(capsys, rec, f"tcp://127.0.0.1:{port}", timeout="1")
    assert code == 2 and "could not connect" in _one_line(err)


def test_probe_tells_scheduler_from_worker():
    import distributed

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        reply = cli._probe_scheduler(cluster.scheduler_address, 10)
        assert reply["type"] == "Scheduler"
        worker = next(iter(cluster.scheduler_info["workers"]))
        with pytest.raises(cli.CLIError, match="is a Dask Worker, not the scheduler"):
            cli._probe_scheduler(worker, 10)

