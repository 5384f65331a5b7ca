"""Which ROIs are read (audit 35, finding 4): one rule for every source, cells
only by default with a note giving the counts; --all-rois (CLI), all_rois
(open_source) and CATUNE_ALL_ROIS (napari readers) keep every ROI.  Plus the
CLI's input messages (finding 7)."""

import numpy as np
import pytest
from test_loaders import make_caiman, make_suite2p
from test_nwb import caiman_nwb, suite2p_nwb  # noqa: F401 - fixtures

from napari_catune import cli
from napari_catune.loaders import load_caiman_data
from napari_catune.nwb import load_nwb
from napari_catune.sources import SourceError, open_source


def _inputs(tmp_path, suite2p_nwb):  # noqa: F811
    plane = make_suite2p(tmp_path / "s2p")  # iscell 1,0,1,1,0
    h5 = tmp_path / "cm.hdf5"
    make_caiman(h5)  # idx_components [0, 2] of 4
    return {"suite2p": (plane, [1, 3, 4], 5), "caiman": (h5, [1, 3], 4),
            "nwb": (suite2p_nwb[0], [1, 3], 3)}


def test_every_source_reads_cells_only_by_default_and_all_on_request(tmp_path, suite2p_nwb):  # noqa: F811
    for kind, (path, cells, n) in _inputs(tmp_path, suite2p_nwb).items():
        src = open_source(path)
        assert src.roi_ids.tolist() == cells, kind
        note = next(x for x in src.notes if x.startswith("only "))
        assert f"{len(cells)} of {n} ROIs; {n - len(cells)} " in note and "--all-rois" in note
        every = open_source(path, all_rois=True)
        assert every.n == n, kind
        assert any(x.startswith("all ") and f"{n - len(cells)} " in x for x in every.notes), \
            (kind, every.notes)


def test_library_defaults_agree(tmp_path, suite2p_nwb):  # noqa: F811
    paths = _inputs(tmp_path, suite2p_nwb)
    assert load_caiman_data(paths["caiman"][0]).roi_ids.tolist() == [1, 3]
    assert load_nwb(paths["nwb"][0]).roi_ids.tolist() == [1, 3]
    assert load_nwb(paths["nwb"][0], only_cells=False).roi_ids.tolist() == [1, 2, 3]


def test_cli_all_rois_and_the_old_flags(tmp_path, suite2p_nwb, capsys):  # noqa: F811
    for kind, (path, cells, n) in _inputs(tmp_path, suite2p_nwb).items():
        assert cli.main(["info", str(path)]) == 0
        out = capsys.readouterr().out
        assert f"cells        {len(cells)}" in out or f"{len(cells)} of {n} ROIs" in out, kind
        assert cli.main(["info", str(path), "--all-rois"]) == 0
        notes = [x for x in capsys.readouterr().out.splitlines() if x.startswith("note")]
        assert any(x.split()[1] == "all" and f": {n - len(cells)} " in x for x in notes), notes
        # the old per-pipeline flags still work: they ask for the default
        for flag in ("--only-cells", "--only-accepted"):
            assert cli.main(["info", str(path), flag]) == 0
            assert f"{len(cells)} of {n} ROIs" in capsys.readouterr().out
    assert cli.main(["info", str(path), "--all-rois", "--only-cells"]) == 2
    assert "contradicts" in capsys.readouterr().err


def test_napari_readers_cells_only_with_a_notification(tmp_path, suite2p_nwb, monkeypatch):  # noqa: F811
    pytest.importorskip("napari")
    import napari.utils.notifications as notifications

    from napari_catune import _reader, _reader_pipelines

    said = []
    monkeypatch.setattr(notifications, "show_info", said.append)
    monkeypatch.setattr(_reader_pipelines, "_allow_pickle", lambda folder: True)
    paths = _inputs(tmp_path, suite2p_nwb)
    readers = {"suite2p": _reader_pipelines.read_suite2p, "caiman": _reader_pipelines.read_caiman,
               "nwb": _reader.read_nwb}
    for kind, read in readers.items():
        path, cells, n = paths[kind]
        monkeypatch.delenv("CATUNE_ALL_ROIS", raising=False)
        said.clear()
        layers = read(str(path))
        meta = layers[-1][1]["metadata"]["catune"]
        assert meta["roi_ids"].tolist() == cells, kind
        assert len(said) == 1 and f"{len(cells)} of {n} ROIs" in said[0], (kind, said)
        assert "CATUNE_ALL_ROIS=1" in said[0] and "--all-rois" in said[0]
        monkeypatch.setenv("CATUNE_ALL_ROIS", "1")
        said.clear()
        meta = read(str(path))[-1][1]["metadata"]["catune"]
        assert len(meta["roi_ids"]) == n and not said, kind


def test_view_all_rois_sets_the_readers_variable(monkeypatch):
    import napari_catune._qt.launch as launch

    seen = {}
    monkeypatch.setenv("CATUNE_ALL_ROIS", "0")  # (restored after the test: view sets it)
    monkeypatch.setattr(launch, "run_view", lambda args: seen.setdefault(
        "env", __import__("os").environ.get("CATUNE_ALL_ROIS")) and 0)
    monkeypatch.setattr(cli, "_check_view_archives", lambda paths: None)
    cli.main(["view", "--all-rois"])
    assert seen["env"] == "1"


# ---------------------------------------------------------------- finding 7


def test_plane_folder_missing_fneu_says_so(tmp_path, capsys):
    plane = make_suite2p(tmp_path)
    (plane / "Fneu.npy").unlink()
    with pytest.raises(SourceError, match="Fneu.npy is missing"):
        open_source(plane)
    assert cli.main(["info", str(plane)]) == 2
    err = capsys.readouterr().err
    assert "Fneu.npy is missing" in err and "neither" not in err


def test_a_movie_given_as_traces_points_to_extract(tmp_path, capsys):
    tifffile = pytest.importorskip("tifffile")
    movie = tmp_path / "movie.tif"
    tifffile.imwrite(movie, np.zeros((5, 8, 8), np.uint16))
    assert cli.main(["estimate", str(movie), "--fs", "10"]) == 2
    err = capsys.readouterr().err
    assert "napari-catune extract" in err and "unsupported" not in err


def test_deconvolve_says_the_input_notes(tmp_path, capsys):
    import json

    plane = make_suite2p(tmp_path, T=200)
    params = tmp_path / "p.json"
    assert cli.main(["estimate", str(plane), "--fs", "15", "-o", str(params), "-q"]) == 0
    assert json.loads(params.read_text())
    capsys.readouterr()
    out = tmp_path / "a.npz"
    assert cli.main(["deconvolve", str(plane), "--params", str(params), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "neuropil coefficient not in the files read: suite2p's default 0.7" in err
    assert "3 of 5 ROIs" in err
    assert "ops.npy, which is a pickle" in err and "--allow-pickle" in err and "15 Hz" in err


def test_ctrl_c_in_a_scheduler_run_logs_no_gather_traceback(monkeypatch, caplog):
    """Ctrl-C in client.gather leaves wait tasks ending in AllExit; asyncio logged
    each with a traceback before "interrupted" (/tmp/aud/cli_sched.py)."""
    import asyncio
    import gc
    import logging

    distributed = pytest.importorskip("distributed")
    from distributed.client import AllExit

    monkeypatch.setattr(cli, "_probe_scheduler", lambda address, timeout: None)
    monkeypatch.setattr(distributed, "Client", lambda address, timeout: "client")
    assert cli._connect("tcp://127.0.0.1:1") == "client"

    async def fails(exc):
        raise exc

    def leave_unretrieved(exc):
        loop = asyncio.new_event_loop()
        try:
            task = loop.create_task(fails(exc))
            loop.run_until_complete(asyncio.wait([task]))  # until it has failed
            assert task.done()
        finally:
            loop.close()
        del task
        gc.collect()

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        leave_unretrieved(AllExit())
        assert not [r for r in caplog.records if r.name == "asyncio"]
        leave_unretrieved(ValueError("a real error"))  # other errors are still said
        assert any("never retrieved" in r.getMessage() for r in caplog.records)


def test_info_says_how_many_ids_and_that_they_have_gaps(tmp_path, capsys):
    plane = make_suite2p(tmp_path)  # cells 1, 3, 4
    assert cli.main(["info", str(plane)]) == 0
    assert "roi ids      3: 1, 3-4" in capsys.readouterr().out
    assert cli.main(["info", str(plane), "--all-rois"]) == 0
    assert "roi ids      5: 1-5" in capsys.readouterr().out


def test_quiet_still_says_which_rois_were_left_out(tmp_path, capsys):
    # -q hides the input's other notes, not that ROIs were left out by default
    plane = make_suite2p(tmp_path, T=200)
    params = tmp_path / "p.json"
    assert cli.main(["estimate", str(plane), "--fs", "15", "-o", str(params), "-q"]) == 0
    err = capsys.readouterr().err
    assert "3 of 5 ROIs" in err and "--all-rois" in err
    assert "neuropil coefficient" not in err
    out = tmp_path / "a.npz"
    assert cli.main(["deconvolve", str(plane), "--params", str(params), "-o", str(out), "-q"]) == 0
    assert "3 of 5 ROIs" in capsys.readouterr().err
