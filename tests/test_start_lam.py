"""A source opened with lambda never chosen (the web app's dF/F default 0.05) starts
lambda from the data's noise by Estimate's rule, and says so; a lambda a user moved,
loaded or estimated is kept (audit 39 item 3: raw suite2p F, sigma ~15, read R^2 ~1 and
hundreds of events/min of noise at 0.05 until Estimate was pressed)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_catune import session as ses
from napari_catune.estimate import Z_DEFAULT, lambda_for_noise
from napari_catune.kernel import build_kernel
from napari_catune.params import TuningParams

from _widgets import big_viewer, notes, open_tuner, recording, wait  # noqa: F401

FS = 30.0


def _raw(n=6, T=1800, seed=0, sigma=15.0):
    """Raw-fluorescence-like rows: F0 ~ 500, noise sigma 15, transients of ~100."""
    rng = np.random.default_rng(seed)
    h = build_kernel(0.05, 0.5, FS)
    spikes = (rng.random((n, T)) < 0.02) * rng.uniform(50, 150, (n, T))
    calcium = np.stack([np.convolve(s, h)[:T] for s in spikes])
    return 500.0 + calcium + sigma * rng.standard_normal((n, T))


def test_fresh_session_starts_lambda_from_the_noise():
    s = ses.TuningSession()
    assert s.params.lam == ses.DEFAULT_PARAMS["lam"] and s.lam_is_default
    s.set_source(ses.build_source(_raw(), fs=FS))
    lam = s.start_lam_from_noise()
    sigma = float(np.median(s.source.noise))
    assert 10 < sigma < 20
    assert lam == pytest.approx(lambda_for_noise(sigma, 0.05, 0.5, FS, Z_DEFAULT), rel=5e-3)
    assert s.params.lam == lam and lam > 0.2 * sigma  # not ~0.003 sigma
    assert not s.can_undo  # not a user's step
    s.set_source(ses.build_source(_raw(), fs=FS))  # the same traces again: nothing to say
    assert s.start_lam_from_noise() is None and s.params.lam == lam and s.lam_is_default
    # a second source with lambda still unchosen takes its own noise's lambda
    s.set_source(ses.build_source(_raw(sigma=0.05) / 500.0, fs=FS))
    lam2 = s.start_lam_from_noise()
    assert lam2 == pytest.approx(lambda_for_noise(float(np.median(s.source.noise)), 0.05, 0.5,
                                                  FS, Z_DEFAULT), rel=5e-3)
    assert lam2 < lam / 100


@pytest.mark.parametrize("how", ["slider", "file", "given", "undo"])
def test_a_chosen_lambda_is_kept(how):
    if how == "given":  # e.g. parameters handed over by a script
        s = ses.TuningSession(TuningParams(0.05, 0.5, FS, 0.05))
    else:
        s = ses.TuningSession()
    if how == "slider":
        s.set_params(lam=0.08)
    elif how == "file":  # the web app's file, its default lambda 0.05 included
        s.set_params(TuningParams(0.05, 0.5, FS, ses.DEFAULT_PARAMS["lam"]))
    elif how == "undo":
        s.set_params(lam=0.08)
        s.undo()
    before = s.params.lam
    s.set_source(ses.build_source(_raw(), fs=FS))
    assert s.start_lam_from_noise() is None
    assert s.params.lam == before and not s.lam_is_default


def test_other_changes_leave_lambda_unchosen():
    s = ses.TuningSession()
    s.set_params(baseline="scalar", record=False)  # the settings' baseline
    s.set_params(fs=20.0, record=False)  # a movie's rate
    s.set_params(tau_decay=0.8)  # a kernel slider
    s.set_source(ses.build_source(_raw(), fs=20.0))
    assert s.start_lam_from_noise() is not None


def test_tuner_on_raw_fluorescence_starts_from_the_noise_and_says_so(make_napari_viewer,
                                                                       qtbot, notes):
    movie, labels, _ = recording(0)
    viewer = big_viewer(make_napari_viewer)
    # raw-fluorescence scale: baseline ~1,300, noise sigma ~150 per pixel
    viewer.add_image(movie * np.float32(1000) + np.float32(300), name="movie",
                     metadata={"catune": {"fs": FS}})
    viewer.add_labels(labels, name="rois", metadata={"catune": {"fs": FS}})
    w = open_tuner(viewer)
    wait(qtbot, w)
    qtbot.waitUntil(lambda: w.session.source is not None, timeout=120_000)
    src = w.session.source
    sigma = float(np.median(src.noise))
    p = w.params
    assert p.lam == pytest.approx(lambda_for_noise(sigma, p.tau_rise, p.tau_decay, p.fs,
                                                   Z_DEFAULT), rel=5e-3)
    assert w.controls.lam.box.value() == p.lam  # the box shows the value itself
    assert p.lam > 0.2 * sigma
    assert "λ starts at" in w.status.text() and "Estimate" in w.status.text()
    # the slider shows it (within its span, not pinned at an end)
    sl = w.controls.lam.slider
    assert 0 < sl.value() < sl.maximum()
    assert sl.value_at(sl.value()) == pytest.approx(p.lam, rel=0.03)


def test_tuner_keeps_a_lambda_the_user_typed(make_napari_viewer, qtbot, notes):
    from _widgets import type_value

    movie, labels, _ = recording(0)
    viewer = big_viewer(make_napari_viewer)
    viewer.add_image(movie * np.float32(1000) + np.float32(300), name="movie",
                     metadata={"catune": {"fs": FS}})
    w = open_tuner(viewer)
    wait(qtbot, w)
    type_value(qtbot, w, "lam", "0.06")  # chosen before any ROIs are there
    qtbot.waitUntil(lambda: w.params.lam == pytest.approx(0.06, rel=1e-3), timeout=10_000)
    viewer.add_labels(labels, name="rois", metadata={"catune": {"fs": FS}})
    qtbot.waitUntil(lambda: w.session.source is not None, timeout=120_000)
    wait(qtbot, w)
    assert w.params.lam == pytest.approx(0.06, rel=1e-3)
    assert "λ starts at" not in w.status.text()
