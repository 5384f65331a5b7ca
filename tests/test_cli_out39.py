"""The thirty-ninth round's output fixes: ``deconvolve``'s ``.nwb`` and
``.csv`` outputs streamed (rows to temporary files as they arrive, the file
written a block of frames at a time), atomically."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from napari_catune import cli, nwb, results
from napari_catune.params import TuningParams
from napari_catune.results import load_results

from _synth import calcium_traces
from test_cli_inputs import LAM, TAU_D, TAU_R, _error, _params, _run  # noqa: F401 - shared helpers


def _traces(tmp_path, meta, n=3, T=300, fs=30.0, seed=0, name="rec"):
    y = calcium_traces(n, T, fs=fs, tau_r=TAU_R, tau_d=TAU_D, seed=seed)
    np.save(tmp_path / f"{name}.npy", y)
    (tmp_path / f"{name}_metadata.json").write_text(json.dumps(meta))
    return tmp_path / f"{name}.npy", y


def _leftovers(folder, keep):
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# ------------------------------------------------ 1. .nwb and .csv streamed

def test_row_spool_reads_back_blocks_and_nan_for_rows_never_written(tmp_path):
    from napari_catune.results import RowSpool

    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 37))
    s = RowSpool(5, 37, tmp_path, ".x.")
    try:
        s.write_rows(0, a[:2])
        s.write_rows(3, a[3:])
        got = s[:, :]
        assert np.array_equal(got[[0, 1, 3, 4]], a[[0, 1, 3, 4]])
        assert np.isnan(got[2]).all()
        assert np.array_equal(s[1:4, 5:9][[0, 2]], a[[1, 3], 5:9])
        assert np.array_equal(np.asarray(s)[4], a[4])
    finally:
        s.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ext", [".nwb", ".csv"])
def test_nwb_and_csv_outputs_do_not_gather_the_result_in_memory(capsys, tmp_path, monkeypatch,
                                                                ext):
    # 200 ROIs x 10,000 frames: 16 MB a field; gathered (activity, fit, the
    # writer's transposed copy) it peaks far above that
    if ext == ".nwb":
        pytest.importorskip("pynwb")
    n, T = 200, 10_000
    npy, y = _traces(tmp_path, {"sampling_rate_hz": 30.0}, n=n, T=T)
    p = _params(tmp_path / "p.json", 30.0)
    # small blocks, so that a block is not the whole (small) test array
    monkeypatch.setattr(nwb, "_BLOCK_BYTES", 1 << 20)
    monkeypatch.setattr(nwb, "_HDF5_CHUNK_BYTES", 1 << 18)
    monkeypatch.setattr(results, "_CSV_BLOCK_VALUES", 1 << 16)
    out = tmp_path / f"a{ext}"
    # a first small run: the modules it imports (pynwb's namespaces...) are not what is measured
    small, _ = _traces(tmp_path, {"sampling_rate_hz": 30.0}, n=2, T=300, name="small")
    code, _, err = _run(capsys, "deconvolve", small, "--params", p, "-o", tmp_path / f"s{ext}",
                        "-q")
    assert code == 0, err
    # ... nor what the solver loads for rows this long: the same run into .npz first
    code, _, err = _run(capsys, "deconvolve", npy, "--params", p, "-o", tmp_path / "c.npz",
                        "-q", "--chunk-cells", "1")
    assert code == 0, err
    tracemalloc.start()
    try:
        code, _, err = _run(capsys, "deconvolve", npy, "--params", p, "-o", out, "-q",
                            "--chunk-cells", "1")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 0, err
    # gathered, activity and fit alone are 2 fields; streamed, the peak is the
    # solver's work on one row (which grows with T, not n)
    field = 8 * n * T
    assert peak < field, f"peak {peak / 1e6:.1f} MB traced, a field is {field / 1e6:.1f} MB"
    # and the numbers are those of the streamed .npz
    with np.load(tmp_path / "c.npz") as z:
        want = {k: z[k] for k in ("activity", "fit", "baseline", "roi_ids")}
    if ext == ".nwb":
        r = load_results(out)
        for key in want:
            assert np.array_equal(r[key], want[key]), key
    else:
        got = np.loadtxt(out, delimiter=",", skiprows=1)
        assert got.shape == (T, n + 1)
        np.testing.assert_allclose(got[:, 1:].T, want["activity"], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got[:, 0], np.arange(T) / 30.0, rtol=1e-9)
    # no temporary file left beside the output
    assert not [f for f in _leftovers(tmp_path, ()) if f.endswith(".tmp")]


@pytest.mark.parametrize("ext", [".nwb", ".csv"])
def test_interrupted_streamed_write_leaves_the_old_file_and_no_temp_files(capsys, tmp_path,
                                                                         monkeypatch, ext):
    if ext == ".nwb":
        pytest.importorskip("pynwb")
    npy, _ = _traces(tmp_path, {"sampling_rate_hz": 30.0}, n=4, T=3000)
    p = _params(tmp_path / "p.json", 30.0)
    out = tmp_path / f"a{ext}"
    code, _, err = _run(capsys, "deconvolve", npy, "--params", p, "-o", out, "-q")
    assert code == 0, err
    before = out.read_bytes()
    keep = set(_leftovers(tmp_path, ()))
    monkeypatch.setattr(nwb, "_BLOCK_BYTES", 8 * 4 * 200)
    monkeypatch.setattr(nwb, "_HDF5_CHUNK_BYTES", 8 * 4 * 100)
    monkeypatch.setattr(results, "_CSV_BLOCK_VALUES", 5 * 200)
    from napari_catune.results import RowSpool

    reads = []
    real = RowSpool.__getitem__

    def interrupted(self, key):  # Ctrl-C while the file is being written from the spool
        reads.append(key)
        if len(reads) == 3:
            raise KeyboardInterrupt
        return real(self, key)

    monkeypatch.setattr(RowSpool, "__getitem__", interrupted)
    code, _, err = _run(capsys, "deconvolve", npy, "--params", p, "-o", out, "-q")
    assert code == 130
    assert len(reads) == 3
    assert out.read_bytes() == before
    assert _leftovers(tmp_path, keep) == []



# ------------------------------------ 2. the memory check sees a cgroup limit

def _fake_cgroup(tmp_path, monkeypatch, self_line, files):
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    root.mkdir(exist_ok=True)
    (tmp_path / "self_cgroup").write_text(self_line)
    monkeypatch.setattr(cli, "_CGROUP_ROOT", root)
    monkeypatch.setattr(cli, "_CGROUP_SELF", tmp_path / "self_cgroup")


def test_cgroup_v2_limit_is_read_from_the_process_cgroup_and_its_parents(tmp_path, monkeypatch):
    _fake_cgroup(tmp_path, monkeypatch, "0::/slurm/job7\n", {
        "slurm/memory.max": str(3 << 30), "slurm/memory.current": str(1 << 30),
        "slurm/job7/memory.max": str(1 << 30), "slurm/job7/memory.current": str(200 << 20),
    })
    assert cli.cgroup_memory_room() == (1 << 30) - (200 << 20)
    assert cli.available_memory() <= (1 << 30) - (200 << 20)


def test_cgroup_v1_limit_and_no_limit(tmp_path, monkeypatch):
    _fake_cgroup(tmp_path, monkeypatch, "5:cpu,cpuacct:/job\n4:memory:/job\n", {
        "memory/job/memory.limit_in_bytes": str(512 << 20),
        "memory/job/memory.usage_in_bytes": str(12 << 20),
        "memory/memory.limit_in_bytes": "9223372036854771712",  # v1's "no limit"
    })
    assert cli.cgroup_memory_room() == 500 << 20
    _fake_cgroup(tmp_path, monkeypatch, "0::/\n", {"memory.max": "max\n"})
    assert cli.cgroup_memory_room() is None
    have = cli.available_memory()
    assert have is None or have > 0


def test_deconvolve_refuses_chunks_that_do_not_fit_the_cgroup_limit(capsys, tmp_path, monkeypatch):
    npy, _ = _traces(tmp_path, {"sampling_rate_hz": 30.0}, n=40, T=20_000)
    p = _params(tmp_path / "p.json", 30.0)
    # 340 MB left in the job's cgroup: the floor (300 MB) + 40 rows x 20,000 x 64 B
    # (51 MB) does not fit; 10 rows at a time would
    _fake_cgroup(tmp_path, monkeypatch, "0::/job\n", {
        "job/memory.max": str(440 << 20), "job/memory.current": str(100 << 20)})
    code, _, err = _run(capsys, "deconvolve", npy, "--params", p, "-o", tmp_path / "a.nwb")
    assert code == 2
    line = _error(err)
    assert "40 ROIs of 20000 frames" in line and "cgroup" in line and "--chunk-cells" in line
    assert not (tmp_path / "a.nwb").exists()
    n = int(line.split("--chunk-cells ")[1].split()[0])
    assert 1 <= n < 40
    code, _, err = _run(capsys, "deconvolve", npy, "--params", p, "-o", tmp_path / "a.npz", "-q",
                        "--chunk-cells", str(n))
    assert code == 0, err


# ------------------------------- 3. a sidecar's rate given as the frame period

@pytest.mark.parametrize("key,value", [("frame_period_s", 1 / 30), ("frame_interval_ms", 1000 / 30),
                                       ("dt", 1 / 30), ("sampling_interval_ms", 100 / 3)])
def test_sidecar_period_is_read_and_checked_against_the_parameter_file(capsys, tmp_path, key,
                                                                       value):
    npy, _ = _traces(tmp_path, {key: value})
    code, out, err = _run(capsys, "info", npy)
    assert code == 0, err
    assert "30 Hz" in out
    # data at 30 Hz, parameters at 122 Hz: stopped (was: run at 122 Hz with an info note)
    code, _, err = _run(capsys, "deconvolve", npy, "--params", _params(tmp_path / "p.json", 121.965),
                        "-o", tmp_path / "a.npz")
    assert code == 2
    assert "sampling rate mismatch" in _error(err) and "30 Hz" in _error(err)
    code, _, err = _run(capsys, "deconvolve", npy, "--params", _params(tmp_path / "q.json", 30.0),
                        "-o", tmp_path / "b.npz", "-q")
    assert code == 0, err


@pytest.mark.parametrize("key", ["frame_period", "frame_interval", "dt_us"])
def test_sidecar_period_without_its_unit_is_refused(capsys, tmp_path, key):
    npy, _ = _traces(tmp_path, {key: 33.3})
    code, _, err = _run(capsys, "deconvolve", npy, "--params", _params(tmp_path / "p.json", 30.0),
                        "-o", tmp_path / "a.npz")
    assert code == 2
    line = _error(err)
    assert repr(key) in line and "frame_period_ms" in line and "sampling_rate_hz" in line


@pytest.mark.parametrize("key", ["inter_trial_interval_s", "line_period_s", "stim_interval_ms"])
def test_sidecar_clocks_other_than_the_frames_are_not_taken_for_a_rate(capsys, tmp_path, key):
    # revo39: a trial or line clock in a sidecar is not the frame rate; it ran
    # before the period keys came and must still run (at the parameter file's rate)
    npy, _ = _traces(tmp_path, {key: 4.0})
    code, _, err = _run(capsys, "deconvolve", npy, "--params", _params(tmp_path / "p.json", 30.0),
                        "-o", tmp_path / "a.npz", "-q")
    assert code == 0, err


def test_sidecar_period_and_rate_that_disagree_are_refused(capsys, tmp_path):
    npy, _ = _traces(tmp_path, {"sampling_rate_hz": 30.0, "frame_period_ms": 50.0})
    code, _, err = _run(capsys, "info", npy)
    assert code == 2
    line = _error(err)
    assert "two sampling rates" in line and "frame_period_ms = 50.0 (20 Hz)" in line


@pytest.mark.parametrize("meta,fs", [({"sampling_rate_hz": 20.0}, 20.0), ({"fs": 20.0}, 20.0),
                                     ({"frame_period_ms": 50.0}, 20.0), ({"dt": 0.05}, 20.0)])
def test_movie_npy_sidecar_reads_the_same_keys(tmp_path, meta, fs):
    from napari_catune.sources import open_movie

    np.save(tmp_path / "mov.npy", np.zeros((10, 8, 8), np.float32))
    (tmp_path / "mov_metadata.json").write_text(json.dumps(meta))
    assert open_movie(tmp_path / "mov.npy").fs == pytest.approx(fs)


def test_movie_npy_sidecar_period_without_unit_is_refused(tmp_path):
    from napari_catune.sources import SourceError, open_movie

    np.save(tmp_path / "mov.npy", np.zeros((10, 8, 8), np.float32))
    (tmp_path / "mov_metadata.json").write_text(json.dumps({"frame_period": 50}))
    with pytest.raises(SourceError, match="'frame_period'"):
        open_movie(tmp_path / "mov.npy")


# ------------------------------------- 4. the tuner's .nwb export keeps the file's ids

def _nwb_with_ids(path, ids, T=400, fs=30.0):
    pynwb = pytest.importorskip("pynwb")
    from datetime import datetime, timezone

    from pynwb.ophys import Fluorescence, ImageSegmentation, OpticalChannel

    f = pynwb.NWBFile(session_description="t", identifier="t",
                      session_start_time=datetime(2026, 1, 1, tzinfo=timezone.utc))
    dev = f.create_device(name="d")
    plane = f.create_imaging_plane(
        name="p", optical_channel=OpticalChannel(name="c", description="c", emission_lambda=500.0),
        description="p", device=dev, excitation_lambda=900.0, imaging_rate=fs,
        indicator="GCaMP", location="V1")
    mod = f.create_processing_module(name="ophys", description="o")
    seg = ImageSegmentation()
    mod.add(seg)
    ps = seg.create_plane_segmentation(name="PlaneSegmentation", description="d",
                                       imaging_plane=plane)
    for k, i in enumerate(ids):
        mask = np.zeros((32, 32))
        mask[2 + 6 * k: 6 + 6 * k, 4:9] = 1
        ps.add_roi(id=int(i), image_mask=mask)
    region = ps.create_roi_table_region(region=list(range(len(ids))), description="all")
    fl = Fluorescence()
    mod.add(fl)
    y = calcium_traces(len(ids), T, fs=fs, tau_r=TAU_R, tau_d=TAU_D, seed=4)
    fl.create_roi_response_series(name="RoiResponseSeries", data=y.T.copy(), rois=region,
                                  unit="a.u.", rate=fs)
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(f)
    return path


@pytest.mark.parametrize("ids, roi_ids", [([10, 20, 30], [10, 20, 30]), ([0, 1, 2], [1, 2, 3])])
def test_napari_nwb_export_writes_the_source_files_ids(tmp_path, ids, roi_ids):
    # ids 0..2: label values 1..3 in napari (and in the results), the file's ids in the .nwb
    from napari_catune._reader import read_nwb
    from napari_catune._writer import write_results_nwb

    src = _nwb_with_ids(tmp_path / "rec.nwb", ids)
    labels, meta, _ = [layer for layer in read_nwb(str(src)) if layer[2] == "labels"][0]
    cat = meta["metadata"]["catune"]
    act = np.maximum(cat["traces"] - 1.0, 0.0)
    cat["results"] = {"activity": act, "reconvolution": act + 1.0,
                      "baseline": np.full(3, 1.0), "roi_ids": cat["roi_ids"],
                      "params": TuningParams(TAU_R, TAU_D, 30.0, LAM).to_dict()}
    out = tmp_path / "gui.nwb"
    write_results_nwb(str(out), labels, meta)
    import h5py

    with h5py.File(out, "r") as f:
        ps = f["processing/ophys/ImageSegmentation/PlaneSegmentation"]
        assert ps["id"][()].tolist() == ids
        assert ps["roi_id"][()].tolist() == roi_ids
    if ids[0] != 0:
        assert load_results(out)["roi_ids"].tolist() == ids


def test_cgroup_room_leaves_out_the_reclaimable_file_cache(tmp_path, monkeypatch):
    # revo39: an 8 GiB job that has read 6.5 GiB of files shows memory.current
    # near its limit; the kernel drops that inactive cache before it kills, so
    # the room is the limit minus the working set (usage - inactive_file)
    _fake_cgroup(tmp_path, monkeypatch, "0::/job\n", {
        "job/memory.max": str(8 << 30), "job/memory.current": str(7_500 << 20),
        "job/memory.stat": f"anon {1_000 << 20}\nfile {6_500 << 20}\n"
                           f"active_file {100 << 20}\ninactive_file {6_400 << 20}\n",
    })
    assert cli.cgroup_memory_room() == (8 << 30) - (1_100 << 20)
    _fake_cgroup(tmp_path, monkeypatch, "4:memory:/job\n", {
        "memory/job/memory.limit_in_bytes": str(2 << 30),
        "memory/job/memory.usage_in_bytes": str(2 << 30),
        "memory/job/memory.stat": f"cache {1 << 30}\ntotal_inactive_file {1 << 30}\n",
    })
    assert cli.cgroup_memory_room() == 1 << 30


def test_hdf5_full_disk_error_reads_as_no_space_left(capsys, tmp_path, monkeypatch):
    # revo39: HDF5 reports a full disk during the .nwb write as a RuntimeError
    # naming errno 28; it printed "unexpected error" and a traceback
    pynwb = pytest.importorskip("pynwb")

    def full(self, *a, **k):
        raise RuntimeError("Can't write data (file write failed: errno = 28, "
                           "error message = 'No space left on device')")

    monkeypatch.setattr(pynwb.NWBHDF5IO, "write", full)
    npy, _ = _traces(tmp_path, {"sampling_rate_hz": 30.0})
    code, _, err = _run(capsys, "deconvolve", npy, "--params", _params(tmp_path / "p.json", 30.0),
                        "-o", tmp_path / "a.nwb", "-q")
    assert code == 1
    assert "no space left on" in _error(err) and "unexpected" not in err
    assert not (tmp_path / "a.nwb").exists()
    assert not [p for p in tmp_path.iterdir() if ".catune-" in p.name]
