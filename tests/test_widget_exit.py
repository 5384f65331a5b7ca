"""A script that ends with napari and the tuner still open leaves no traceback
(Qt deletes objects at exit before the widget's destroyed hooks run; on PyQt6 with
30,000 frames and the drift baseline it happened every time)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

_SRC = Path(__file__).resolve().parents[1] / "src"

SCRIPT = textwrap.dedent("""
    import sys, time
    import napari
    from qtpy.QtWidgets import QApplication
    app = QApplication.instance() or QApplication([])
    v = napari.Viewer()
    v.open(sys.argv[1], plugin="napari-catune")
    _, w = v.window.add_plugin_dock_widget("napari-catune", "CaTune tuner")
    deadline = time.monotonic() + 300
    while not (w.idle and w.session.source is not None):
        app.processEvents()
        if time.monotonic() > deadline:
            sys.exit("the tuner never became ready")
    print("ready", flush=True)
""")


def test_a_script_ending_with_the_tuner_open_prints_no_traceback(tmp_path, _catune_settings):
    _catune_settings.write_text('{"baseline": "drift"}')  # a user's remembered choice
    rng = np.random.default_rng(0)
    p = tmp_path / "tr.npz"
    np.savez(p, traces=rng.standard_normal((3, 30_000)).astype(np.float32), fs=np.float64(30.0))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}  # a user's script
    env["PYTHONPATH"] = str(_SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(p)], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0 and "ready" in r.stdout, r.stderr[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
