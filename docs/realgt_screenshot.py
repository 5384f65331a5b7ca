"""The README's second screenshot: the tuner on a real recording with its true spikes.

DS31 of ../shared/realgt-dev (jGCaMP8m, mouse V1, 122 Hz, Zhang et al. 2023; the
Cascade ground-truth database): the 12 longest recordings, cut to a common
length, opened as a trace file (one tile per recording), their electrophysiology
spike times imported as an events CSV (ground-truth ticks), parameters from
*Estimate* (all ROIs), three ROIs selected, the spectrum tab shown.

    env -u DISPLAY PYTHONPATH=src .venv/bin/python docs/realgt_screenshot.py [out.png]

Headless, it runs under Xvfb (xvfb-run).  The recordings are not copied anywhere
but a temporary folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("CATUNE_REALGT", HERE.parents[1] / "shared" / "realgt-dev"))
REC = DATA / "DS31-GCaMP8m-m-V1.npz"
N = 12
SHOW = (12, 3, 5)


def main(out: Path) -> None:
    import numpy as np
    import napari
    from qtpy.QtWidgets import QApplication

    # the tuner's defaults, not the baseline mode or folders this user chose last
    os.environ.setdefault("NAPARI_CATUNE_SETTINGS",
                          str(Path(tempfile.mkdtemp(prefix="catune-settings-")) / "s.json"))
    d = np.load(REC)
    L, fs = d["lengths"], float(d["fs"])
    T = int(np.sort(L)[-N])
    rows = [i for i in range(len(L)) if L[i] >= T][:N]
    traces = np.stack([d["fluorescence"][i, :T] for i in rows]).astype(np.float32)
    tmp = Path(tempfile.mkdtemp(prefix="catune-shot-"))
    src = tmp / "DS31-jGCaMP8m.npz"
    np.savez(src, traces=traces, fs=np.float64(fs), roi_ids=np.arange(1, N + 1))
    off, t0 = d["spike_times_offsets"], d["t0"]
    csv = tmp / "DS31-spikes.csv"
    with open(csv, "w") as fh:
        fh.write("roi,time_s\n")
        for rid, i in enumerate(rows, start=1):
            for t in d["spike_times"][off[i]:off[i + 1]] - t0[i]:
                if 0 <= t < T / fs:
                    fh.write(f"{rid},{t:.5f}\n")

    app = QApplication.instance() or QApplication([])
    viewer = napari.Viewer(title="napari-catune")
    viewer.window.resize(1500, 950)
    _, w = viewer.window.add_plugin_dock_widget("napari-catune", "CaTune tuner")
    viewer.open(str(src), plugin="napari-catune")

    def pump(cond, timeout=600.0):
        import time

        t = time.perf_counter()
        while not cond():
            app.processEvents()
            if time.perf_counter() - t > timeout:
                raise TimeoutError("the tuner did not settle")

    pump(lambda: w.session.source is not None and w.idle)
    w.actions.load_events(csv)
    w.controls.estimate_from.setCurrentText("from all ROIs")
    w.controls.estimate_btn.click()
    pump(lambda: w.last_estimate is not None and w.idle)
    w.select_rois(list(SHOW))
    pump(lambda: w.idle)
    w.traces.set_window(60.0, 90.0)
    w.plots.setCurrentWidget(w.spectrum)
    pump(lambda: w.idle)
    from napari_catune._qt.launch import _close_toasts

    _close_toasts(viewer)
    for _ in range(20):
        app.processEvents()
    viewer.screenshot(str(out), canvas_only=False)
    print(f"saved {out}; parameters {w.params.to_dict()}", file=sys.stderr)
    viewer.close()


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else HERE / "screenshot-realgt.png").resolve()
    if not os.environ.get("DISPLAY") and not os.environ.get("_CATUNE_XVFB"):
        sys.exit(subprocess.call(["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24",
                                  sys.executable, __file__, str(out)],
                                 env={**os.environ, "_CATUNE_XVFB": "1"}))
    main(out)
