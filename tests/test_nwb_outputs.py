"""What an output NWB records (input traces, units, no placeholder movie), and the
one-line messages of `info` (an invalid NWB file, ROI ids with gaps)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pynwb")

from pynwb import NWBHDF5IO  # noqa: E402

from napari_catune.cli import main  # noqa: E402
from napari_catune.nwb import load_nwb  # noqa: E402
from napari_catune.params import TuningParams, save_params  # noqa: E402

from test_nwb_time import FS, _recording  # noqa: E402


def test_output_nwb_says_what_was_deconvolved(tmp_path):
    src = _recording(tmp_path / "rec.nwb", rate=FS)
    save_params(TuningParams(0.05, 0.5, FS, 0.5, baseline="rolling"), tmp_path / "p.json")
    out = tmp_path / "res.nwb"
    assert main(["deconvolve", str(src), "--params", str(tmp_path / "p.json"), "-o", str(out),
                 "-q"]) == 0
    traces = load_nwb(src).kind  # "ophys/Fluorescence/RoiResponseSeries"
    with NWBHDF5IO(str(out), "r") as io:
        f = io.read()
        # no placeholder movie whose external_file is not a path
        assert not list(f.acquisition)
        mod = f.processing["catune"]
        assert mod["parameters"]["input_traces"].data[0] == traces
        export = json.loads(mod["parameters"]["catune_export"].data[0])
        assert export["metadata"]["input_traces"] == traces
        assert export["metadata"]["source_filename"] == "rec.nwb"
        for s in mod["Deconvolution"].roi_response_series.values():
            assert s.unit != "n.a." and traces in s.unit
        assert traces in mod["Deconvolution"]["activity"].description
    # the footprints and the plane's size still come back
    np.testing.assert_array_equal(load_nwb(out, series="catune/Deconvolution/activity").labels,
                                  load_nwb(src).labels)


def test_invalid_nwb_is_one_line(tmp_path, capsys):
    import h5py

    src = _recording(tmp_path / "rec.nwb", rate=FS)
    with h5py.File(src, "a") as f:
        del f["processing/ophys/Fluorescence/RoiResponseSeries/rois"]
    assert main(["info", str(src)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and len(err) < 300, err
    assert "Builder" not in err and "RoiResponseSeries" in err and "'rois'" in err


def test_info_lists_roi_ids_with_gaps(tmp_path, capsys):
    from napari_catune.io import save_for_tuning

    ids = [1, 3, 4, 6, 7, 8, 20]
    save_for_tuning(np.ones((7, 50)) + np.arange(50), FS, tmp_path / "tr.npy",
                    metadata={"roi_ids": ids})
    assert main(["info", str(tmp_path / "tr.npy")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("roi ids"))
    assert line.split(None, 2)[2] == "7: 1, 3-4, 6-8, 20"
