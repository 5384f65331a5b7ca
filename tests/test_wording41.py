"""Wording fixes (revp41 #5): the NWB rate note says what to do in napari (the
tuner's fs field), not only the CLI flag; `-v` on a cluster with no worker
joined yet does not say "on 0 Dask worker threads"."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pynwb")

from napari_catune import cli  # noqa: E402
from napari_catune.nwb import load_nwb  # noqa: E402
from napari_catune.params import TuningParams, save_params  # noqa: E402
from test_nwb_rate import FS as RATE_FS, _file, _ms_stamps  # noqa: E402


def test_plane_rate_note_names_the_tuner_fs_field(tmp_path):
    data = load_nwb(_file(tmp_path / "r.nwb", _ms_stamps(), plane_rate=30.0))
    note = next(n for n in data.notes if "imaging_rate is 30 Hz" in n)
    assert "tuner's fs field" in note and "--fs 30" in note
    assert abs(data.fs / RATE_FS - 1) < 1e-6


def test_verbose_line_before_any_worker_joined(tmp_path, monkeypatch, capsys):
    distributed = pytest.importorskip("distributed")
    from _synth import calcium_traces

    y = calcium_traces(6, 200, fs=20.0, tau_r=0.05, tau_d=0.4, seed=4)
    np.save(tmp_path / "tr.npy", y)
    save_params(TuningParams(0.05, 0.4, 20.0, 0.2), tmp_path / "p.json")
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                       protocol="tcp://", host="127.0.0.1",
                                       dashboard_address=None)
    try:
        # as when the CLI connects before the workers have joined
        monkeypatch.setattr(cli, "_cluster_threads", lambda client: 0)
        code = cli.main(["deconvolve", str(tmp_path / "tr.npy"), "--params",
                         str(tmp_path / "p.json"), "-o", str(tmp_path / "a.npy"),
                         "--scheduler", cluster.scheduler.address, "-v"])
        err = capsys.readouterr().err
    finally:
        cluster.close()
    assert code == 0, err
    assert "0 Dask worker" not in err
    assert "no worker joined yet" in err, err
