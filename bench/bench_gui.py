"""GUI latency of the CaTune tuner in a real napari viewer (Xvfb when headless).

For 20 tau_decay slider moves each, the median time from the slider's value
change to the rows holding the new fit and activity ("data") and to the end of
the trace view's next paint (Qt's own, as a user sees it; "painted"), and the longest time the GUI
thread was busy in one go for a move (the slider event, or the hand-over of a
result):
  * 1 ROI x 54,000 frames            (target <= 33 ms painted)
  * 8 ROIs x 54,000 frames           (target <= 50 ms)
  * 20 ROIs x 14,400 frames          (target <= 100 ms)
  * 20 ROIs of a real recording (../shared/realgt-dev DS31, jGCaMP8m, 122 Hz)
  * opening the tuner on the sample data to its first fit (target <= 1 s)
and, from the same run, calab's (cold) solve time of the same traces.

    env -u DISPLAY .venv/bin/python bench/bench_gui.py [--breakdown]

--breakdown also prints, per case, the median time line of a move (ms after
the slider's value change): the request submitted, the solve thread starting
it, the compiled row blocks running (first start, last end), the solve done,
the hand-over starting on the GUI thread, the rows holding the data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

MOVES = 20
BREAKDOWN = "--breakdown" in sys.argv[1:]
REAL = Path(__file__).resolve().parents[2] / "shared" / "realgt-dev" / "DS31-GCaMP8m-m-V1.npz"


def _ensure_display():
    if os.environ.get("DISPLAY"):
        return None
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        sys.exit("no DISPLAY and no Xvfb: run under xvfb-run -a")
    for n in range(99, 120):
        if not os.path.exists(f"/tmp/.X11-unix/X{n}") and not os.path.exists(f"/tmp/.X{n}-lock"):
            break
    proc = subprocess.Popen([xvfb, f":{n}", "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["DISPLAY"] = f":{n}"
    for _ in range(100):
        if os.path.exists(f"/tmp/.X11-unix/X{n}"):
            break
        time.sleep(0.05)
    return proc


def main() -> None:
    xvfb = _ensure_display()
    try:
        run()
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        if xvfb is not None:
            # leave at once: Qt's exit-time cleanup would talk to the dead X server
            xvfb.terminate()
            xvfb.wait(5)
            os._exit(0)


def _synthetic(n, T, fs=30.0, seed=0):
    import numpy as np

    from napari_catune.kernel import build_kernel

    rng = np.random.default_rng(seed)
    h = build_kernel(0.05, 0.5, fs)
    spikes = (rng.random((n, T)) < 0.01) * rng.uniform(0.5, 2, (n, T))
    calcium = np.stack([np.convolve(s, h)[:T] for s in spikes])
    return 1.0 + calcium + rng.normal(0, 0.2, calcium.shape), fs


def _real(n):
    import numpy as np

    if not REAL.exists():
        return None, None
    d = np.load(REAL)
    L = d["lengths"]
    T = int(np.sort(L)[-n])
    rows = [i for i in range(len(L)) if L[i] >= T][:n]
    return np.stack([d["fluorescence"][i, :T] for i in rows]).astype(np.float64), float(d["fs"])


def _instrument(w, marks) -> None:
    """Note the times of a move's steps in ``marks`` (see --breakdown)."""
    import threading

    from napari_catune import _numba_solvers as ns
    from napari_catune import session as ses

    def note(key):
        marks.setdefault(key, []).append(time.perf_counter())

    def wrap(obj, name, before, after=None):
        real = getattr(obj, name)

        def f(*a, **k):
            note(before)
            try:
                return real(*a, **k)
            finally:
                if after:
                    note(after)
        setattr(obj, name, f)

    wrap(ns, "pdas_rows", "blocks start", "blocks end")
    wrap(ses.SolveRequest, "run", "solve start", "solve done")
    wrap(w.session, "submit", "submitted")
    wrap(w.traces, "set_result", "rows set", "rows drawn")
    real_emit = w._from_thread

    def emit(req):
        note("handed over" if threading.current_thread() is not threading.main_thread()
             else "in place")
        real_emit(req)
    w._live._done = emit
    real_accept = w.session.accept

    def accept(req):
        note("GUI takes it")
        return real_accept(req)
    w.session.accept = accept


def run() -> None:
    import numpy as np
    import napari
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    napari.utils.notifications.notification_manager.catch_error = False
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    app = QApplication.instance()

    def pump_until(cond, timeout=60.0):
        t0 = time.perf_counter()
        while not cond():
            app.processEvents()
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError("the tuner did not update in time")

    # ------------------------------------------------ opening on the sample data
    viewer.open_sample("napari-catune", "synthetic")
    t0 = time.perf_counter()
    dock, w = viewer.window.add_plugin_dock_widget("napari-catune", "CaTune tuner")
    t_dock = time.perf_counter() - t0
    first = []

    def shown(gen):  # the first fit is in the rows: paint them and note the time
        if not first:
            w.traces.rows_glw.viewport().repaint()
            first.append(time.perf_counter() - t0)

    w.plots_updated.connect(shown)
    pump_until(lambda: bool(first))
    t_open = first[0]
    pump_until(lambda: w.idle and "CaTune activity" in viewer.layers)
    t_layers = time.perf_counter() - t0

    # time the GUI thread's own work per move: the slider event, the result hand-over
    busy = {"deliver": []}
    real_deliver = w._deliver

    def timed_deliver(req):
        t = time.perf_counter()
        real_deliver(req)
        busy["deliver"].append(time.perf_counter() - t)

    w._deliver = timed_deliver
    w._relay.done.disconnect()
    w._relay.done.connect(timed_deliver)

    marks: dict = {}  # event -> list of perf_counter times within the current move
    if BREAKDOWN:
        _instrument(w, marks)

    def load(traces, fs, name):
        tiles = np.zeros((4, 3 * len(traces) + 1), np.int32)
        for i in range(len(traces)):
            tiles[1:3, 3 * i + 1:3 * i + 3] = i + 1
        viewer.layers.clear()
        for _ in range(20):  # napari 0.9 on Xvfb: repaint between removing and adding
            app.processEvents()
            time.sleep(0.01)
        viewer.add_labels(tiles, name=name, metadata={"catune": {
            "fs": fs, "traces": traces, "roi_ids": np.arange(1, len(traces) + 1)}})
        pump_until(lambda: w.labels_combo.value is viewer.layers[name]
                   and w.session.source is not None and w.idle)

    # when each paint of the rows ends: a slider move is "painted" once the first
    # paint after its data has run (a forced extra repaint would leave Qt's own
    # queued one to run during the next move)
    painted, paint_done = [], []
    real_paint = w.traces.rows_glw.paintEvent

    def paint_event(ev):
        real_paint(ev)
        painted.append(time.perf_counter())
        for f in paint_done:
            f()
    w.traces.rows_glw.paintEvent = paint_event

    def moves(k):
        """Medians over MOVES tau_decay moves: (to data, to painted, solve, longest busy)."""
        w.select_rois(list(range(1, k + 1)))
        pump_until(lambda: w.idle)
        slider = w.controls.kin_b.slider
        positions = [slider.position_of(v) for v in np.geomspace(0.35, 0.7, MOVES)]
        data_ms, paint_ms, solve_ms, busy_ms = [], [], [], []
        line = []
        for pos in positions:
            loop = QEventLoop()
            w.plots_updated.connect(loop.quit)
            QTimer.singleShot(30_000, loop.quit)
            gen = w.session._gen
            busy["deliver"].clear()
            marks.clear()
            t0 = time.perf_counter()
            slider.setValue(pos)
            t_event = time.perf_counter() - t0
            if w.session._drawn_gen <= gen:
                loop.exec_()  # a real event loop: no busy polling competing for the cores
            t_data = time.perf_counter() - t0
            w.plots_updated.disconnect(loop.quit)
            if not painted or painted[-1] < t0 + t_data:
                # the next paint of the rows (the one that shows the new data)
                loop = QEventLoop()
                paint_done.append(loop.quit)
                QTimer.singleShot(1000, loop.quit)
                loop.exec_()
                paint_done.clear()
            if not painted or painted[-1] < t0 + t_data:
                w.traces.rows_glw.viewport().repaint()  # none came: paint them now
                painted.append(time.perf_counter())
            t_paint = painted[-1] - t0
            if w.session._drawn_gen <= gen:
                raise TimeoutError("the tuner did not update in time")
            line.append({k: (min(v) if k != "blocks end" else max(v)) - t0
                         for k, v in marks.items()})
            data_ms.append(t_data * 1e3)
            paint_ms.append(t_paint * 1e3)
            solve_ms.append(w.last_solve_seconds * 1e3)
            sync = w.session._drawn_gen > gen and not busy["deliver"]
            # a solve run in place is part of the slider event: count the event only
            busy_ms.append(max([t_event] + ([] if sync else busy["deliver"])) * 1e3)
            assert len(w.traces.shown[k - 1].data["fit"]) == w.session.source.n_frames
        pump_until(lambda: w.idle)
        if BREAKDOWN:
            keys = sorted({k for m in line for k in m}, key=lambda k: np.median(
                [m[k] for m in line if k in m]))
            print(f"  {k} ROI(s), median time line of a move (ms):", ", ".join(
                f"{key} {np.median([m[key] for m in line if key in m]) * 1e3:.1f}"
                for key in keys), flush=True)
        return (np.median(data_ms), np.median(paint_ms), np.median(solve_ms),
                float(np.median(busy_ms)), float(np.max(busy_ms)))

    def calab_ms(traces, fs):
        try:
            import calab
        except ImportError:
            return float("nan")
        p = w.params
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            calab.run_deconvolution_full(traces, fs, p.tau_rise, p.tau_decay, p.lam)
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts)) * 1e3

    cases = []
    y, fs = _synthetic(8, 54_000)
    load(y, fs, "synthetic 8 x 54000")
    for k, target in ((1, 33.0), (8, 50.0)):
        cases.append((f"{k} ROI{'s' if k > 1 else ''} x 54,000 frames", target, moves(k),
                      calab_ms(y[:k], fs)))
    w.controls.filter_enabled.setChecked(True)
    pump_until(lambda: w.idle)
    cases.append(("8 ROIs x 54,000 frames, bandpass on", 50.0, moves(8), float("nan")))
    w.controls.filter_enabled.setChecked(False)
    pump_until(lambda: w.idle)
    y, fs = _synthetic(20, 14_400)
    load(y, fs, "synthetic 20 x 14400")
    cases.append(("20 ROIs x 14,400 frames", 100.0, moves(20), calab_ms(y, fs)))
    y, fs = _real(20)
    if y is not None:
        load(y, fs, "DS31 real")
        w.set_params(w.params.replace(lam=0.01))
        pump_until(lambda: w.idle)
        cases.append((f"20 ROIs x {y.shape[1]:,} frames, real (DS31 jGCaMP8m, {fs:.0f} Hz)",
                      100.0, moves(20), calab_ms(y, fs)))

    print("CaTune tuner GUI latency (napari", napari.__version__, ", real viewer, DISPLAY",
          os.environ.get("DISPLAY"), ")")
    print(f"open the tuner on the sample data: {t_open:.2f} s to the first fit painted (dock "
          f"built in {t_dock:.2f} s; its viewer layers follow, done at {t_layers:.2f} s)   "
          f"target 1 s   ratio to target {t_open:.2f}")
    for name, target, (d, pnt, s, b_med, b_max), cal in cases:
        print(f"{name}, median of {MOVES} moves: slider -> data {d:.1f} ms, -> painted "
              f"{pnt:.1f} ms (solve {s:.1f} ms)   target {target:.0f} ms   ratio to target "
              f"{pnt / target:.2f}")
        print(f"    GUI thread busy per move: median {b_med:.1f} ms, longest {b_max:.1f} ms "
              f"(target 16 ms);  calab cold solve of the same traces {cal:.1f} ms, "
              f"painted / calab = {pnt / cal:.3f}")
    viewer.close()
    app.processEvents()


if __name__ == "__main__":
    main()
