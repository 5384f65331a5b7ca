"""The CLI on a Dask cluster (audit 41): the scheduler lost mid-run ends in one
line (exit 1, nothing written), and the tasks are sized to the cluster's
threads so that every worker gets work."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from napari_catune import cli, run_deconvolution_full  # noqa: E402
from napari_catune.params import TuningParams, save_params  # noqa: E402

from _synth import calcium_traces  # noqa: E402

FS, TAU_R, TAU_D, LAM = 20.0, 0.05, 0.4, 0.2

# a scheduler and its one worker in one process, which the test SIGKILLs
_CLUSTER = """
import sys, time
from distributed import LocalCluster
c = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, scheduler_port=0,
                 protocol="tcp://", host="127.0.0.1", dashboard_address=None)
print(c.scheduler_address, flush=True)
while True:
    time.sleep(1)
"""


def _inputs(tmp_path, n, T):
    y = calcium_traces(n, T, fs=FS, tau_r=TAU_R, tau_d=TAU_D, seed=4)
    np.save(tmp_path / "tr.npy", y)
    save_params(TuningParams(TAU_R, TAU_D, FS, LAM), tmp_path / "p.json")
    return y


def test_scheduler_lost_mid_run_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    _inputs(tmp_path, n=40, T=300)
    proc = subprocess.Popen([sys.executable, "-c", _CLUSTER], stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ))
    try:
        address = proc.stdout.readline().strip()
        assert address.startswith("tcp://"), address
        real_update = cli.Progress.update
        killed = []

        def update(self, done):
            real_update(self, done)
            if not killed:  # the first chunk is written: the scheduler dies now
                proc.kill()
                proc.wait(timeout=60)
                killed.append(done)

        monkeypatch.setattr(cli.Progress, "update", update)
        out = tmp_path / "res.npz"
        code = cli.main(["deconvolve", str(tmp_path / "tr.npy"), "--params",
                         str(tmp_path / "p.json"), "-o", str(out), "--full",
                         "--chunk-cells", "2", "--scheduler", address, "-q"])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    err = capsys.readouterr().err
    assert killed == [2], "the run did not get to its first chunk"
    assert code == 1, err
    assert "Traceback" not in err and "unexpected error" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    m = re.fullmatch(r"napari-catune deconvolve: error: the Dask scheduler at (\S+) went away "
                     r"after (\d+) of 40 cells; nothing was written; re-run when it is back",
                     lines[0])
    assert m, err
    assert m.group(1) == address and 2 <= int(m.group(2)) < 40
    # no output, no sidecar, no temporary file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json", "tr.npy"]


def test_task_rows_follow_the_cluster_threads():
    # audit: 2000 x 3600 gave 2 tasks (32 MB chunks) whatever the cluster
    assert cli._task_rows(1165, 2000, 3600, threads=2) == 250  # 8 tasks
    assert cli._task_rows(1165, 2000, 3600, threads=16) == 32
    # never tinier than _MIN_TASK_SAMPLES samples a task
    floor = cli._MIN_TASK_SAMPLES // 3600
    assert cli._task_rows(1165, 2000, 3600, threads=1000) == floor
    # the memory bound (or --chunk-cells) still caps it
    assert cli._task_rows(40, 2000, 3600, threads=2) == 40
    assert cli._task_rows(77, 383, 54_000, threads=2) == 48
    assert cli._task_rows(1, 5, 10, threads=0) == 1

    class Client:  # 3 workers of 4 threads: the threads count
        def nthreads(self):
            return {"tcp://a:1": 4, "tcp://b:1": 4, "tcp://c:1": 4}

    assert cli._cluster_threads(Client()) == 12


@pytest.fixture()
def two_threads():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       protocol="tcp://", host="127.0.0.1",
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_scheduler_run_splits_into_tasks_for_every_thread(two_threads, tmp_path, monkeypatch,
                                                         capsys):
    y = _inputs(tmp_path, n=80, T=200)
    monkeypatch.setattr(cli, "_MIN_TASK_SAMPLES", 1000)  # (this small input's floor: 5 cells)
    out = tmp_path / "act.npy"
    with distributed.get_task_stream(two_threads) as ts:
        code = cli.main(["deconvolve", str(tmp_path / "tr.npy"), "--params",
                         str(tmp_path / "p.json"), "-o", str(out), "--scheduler",
                         two_threads.scheduler.address, "-v"])
    err = capsys.readouterr().err
    assert code == 0, err
    # 80 cells on 2 threads: 10 a task (the memory bound alone gave all 80 in one)
    assert "chunks of 10 cells on 2 Dask worker threads" in err, err
    solved = {t["key"] for t in ts.data if "catune-deconvolve" in str(t["key"])}
    assert len(solved) == 8, sorted(map(str, solved))
    ref = run_deconvolution_full(y, FS, TAU_R, TAU_D, LAM)
    assert np.array_equal(np.load(out), ref.activity)
    # --chunk-cells is kept as given
    code = cli.main(["deconvolve", str(tmp_path / "tr.npy"), "--params",
                     str(tmp_path / "p.json"), "-o", str(out), "--scheduler",
                     two_threads.scheduler.address, "-v", "--chunk-cells", "40"])
    assert code == 0
    assert "chunks of 40 cells on 2 Dask worker threads" in capsys.readouterr().err
