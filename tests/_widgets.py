"""Shared helpers of the tuner's widget tests: a tiny recording, the viewer, user moves."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from qtpy.QtCore import Qt

import napari_catune.solver as solver_mod
from napari_catune.kernel import build_kernel

FS = 30.0
N_FRAMES = 450
SHAPE = (40, 60)
# ROI id -> (row slice, col slice); ids are deliberately not 1..n
ROIS = {
    3: (slice(4, 14), slice(4, 14)),
    5: (slice(4, 14), slice(24, 34)),
    8: (slice(4, 14), slice(44, 54)),
    11: (slice(24, 34), slice(4, 14)),
    12: (slice(24, 34), slice(24, 34)),
    20: (slice(24, 34), slice(44, 54)),
}


def recording(seed=0, roi_ids=None):
    """Tiny movie (T, Y, X) float32 + labels (Y, X) + the true per-ROI means."""
    rng = np.random.default_rng(seed)
    h = build_kernel(0.05, 0.5, FS)
    labels = np.zeros(SHAPE, np.int32)
    movie = rng.normal(0.0, 0.15, (N_FRAMES, *SHAPE)).astype(np.float32) + 1.0
    rates = np.linspace(0.01, 0.06, len(ROIS))  # ROIs differ in activity
    ids = list(ROIS) if roi_ids is None else roi_ids
    means = {}
    for rid, (ys, xs), rate in zip(ids, ROIS.values(), rates):
        labels[ys, xs] = rid
        spikes = (rng.random(N_FRAMES) < rate) * rng.uniform(0.5, 1.5, N_FRAMES)
        calcium = np.convolve(spikes, h)[:N_FRAMES]
        movie[:, ys, xs] += calcium[:, None, None].astype(np.float32)
        means[rid] = movie[:, ys, xs].reshape(N_FRAMES, -1).mean(axis=1, dtype=np.float64)
    return movie, labels, means


def notes_fixture(monkeypatch):
    import napari.utils.notifications as nt

    got = {"error": [], "warning": [], "info": []}
    monkeypatch.setattr(nt, "show_error", lambda m: got["error"].append(str(m)))
    monkeypatch.setattr(nt, "show_warning", lambda m: got["warning"].append(str(m)))
    monkeypatch.setattr(nt, "show_info", lambda m: got["info"].append(str(m)))
    return got


def big_viewer(make_napari_viewer, show=True):
    """A viewer the size of a desktop window (the trace rows need the height)."""
    viewer = make_napari_viewer(show=show)
    viewer.window._qt_window.resize(1500, 950)
    return viewer


def viewer_with_recording(make_napari_viewer, seed=0, show=False, fs_meta=True):
    viewer = big_viewer(make_napari_viewer, show=show)
    movie, labels, means = recording(seed)
    meta = {"catune": {"fs": FS}} if fs_meta else {}
    viewer.add_image(movie, name="movie", metadata=dict(meta))
    viewer.add_labels(labels, name="rois", metadata={k: dict(v) for k, v in meta.items()})
    return viewer, labels, means


def open_tuner(viewer):
    _, w = viewer.window.add_plugin_dock_widget("napari-catune", "CaTune tuner")
    return w


def wait(qtbot, w, timeout=120_000):
    qtbot.waitUntil(lambda: w.idle, timeout=timeout)


def reference(w, ids, means, **kw):

    p = w.params
    y = np.stack([means[i] for i in ids])
    return solver_mod.run_deconvolution_full(
        y, p.fs, p.tau_rise, p.tau_decay, p.lam, baseline=str(p.baseline),
        filter_enabled=p.filter_enabled, **kw)


def plotted(w, k=None):
    rows = w.traces.shown[:k]
    fit = np.stack([np.asarray(r.data["fit"]) for r in rows])
    act = np.stack([np.asarray(r.data["activity"]) for r in rows])
    return fit, act


def assert_matches_core(w, means, ids):
    assert [r.rid for r in w.traces.shown] == list(ids)
    ref = reference(w, ids, means)
    fit, act = plotted(w)
    scale = np.ptp(np.stack([means[i] for i in ids]))
    # warm starts converge to the same optimum within the solver tolerance
    np.testing.assert_allclose(fit, np.atleast_2d(ref.reconvolution), atol=2e-3 * scale)
    np.testing.assert_allclose(act, np.atleast_2d(ref.activity),
                               atol=5e-3 * max(ref.activity.max(), 1e-9))
    np.testing.assert_allclose(w.traces.x, np.arange(N_FRAMES) / w.params.fs)


def row_of(w, name):
    c = w.controls
    return {"tau_rise": c.kin_a, "tau_decay": c.kin_b, "t_peak": c.kin_a, "fwhm": c.kin_b,
            "fs": c.fs, "lam": c.lam}[name]


def drag(w, name, value):
    """Move a slider as a user drag would (one position change)."""
    s = row_of(w, name).slider
    s.setValue(s.position_of(value))


def type_value(qtbot, w, name, text):
    """Type ``text`` into a number box and press Enter."""
    box = row_of(w, name).box
    le = box.lineEdit()
    le.selectAll()
    qtbot.keyClicks(le, str(text))
    qtbot.keyClick(le, Qt.Key_Return)


def gated(monkeypatch, module, name, *, hold=lambda n: True, fail=None):
    """Replace ``module.name`` by a wrapper that records its thread and waits on a gate."""
    gate = threading.Event()
    real = getattr(module, name)
    calls = []

    def wrapper(*a, **k):
        calls.append(threading.current_thread())
        if hold(len(calls)):
            gate.wait(10)
        if fail is not None:
            raise fail
        return real(*a, **k)

    monkeypatch.setattr(module, name, wrapper)
    return gate, calls, real


@pytest.fixture
def notes(monkeypatch):
    return notes_fixture(monkeypatch)


@pytest.fixture
def setup(make_napari_viewer, qtbot, notes):
    viewer, _, means = viewer_with_recording(make_napari_viewer, show=True)
    w = open_tuner(viewer)
    wait(qtbot, w)
    return viewer, w, means, notes
