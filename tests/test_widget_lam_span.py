"""Lambda's slider follows the data's scale (lambda is in the traces' units): on
dF/F-sized traces, on raw fluorescence (F0 in the thousands) and on traces scaled
by 1e-3 the estimate sits well inside it, and dragging reaches from no
suppression to all activity gone.  Driven as a user does in a real viewer."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_catune.kernel import ParameterRangeWarning

from _widgets import big_viewer, notes, open_tuner, recording, type_value, wait  # noqa: F401


def _settled(qtbot, w):
    s = w.session
    qtbot.waitUntil(lambda: w.idle and s.result is not None and s.result.params == s.params,
                    timeout=120_000)
    return s.result


def _tuner(make_napari_viewer, qtbot, scale, offset):
    movie, labels, _ = recording(0)
    viewer = big_viewer(make_napari_viewer)
    meta = {"catune": {"fs": 30.0}}
    viewer.add_image(movie * np.float32(scale) + np.float32(offset), name="movie",
                     metadata=dict(meta))
    viewer.add_labels(labels, name="rois", metadata={"catune": {"fs": 30.0}})
    w = open_tuner(viewer)
    wait(qtbot, w)
    w.select_rois([3, 5, 8, 11, 12, 20])
    wait(qtbot, w)
    return w


# dF/F-sized (baseline 1, the fixtures' scale), raw F with F0 ~ 1,300, and x 1e-3
SCALES = [(1.0, 0.0), (1000.0, 300.0), (1e-3, 0.0)]


@pytest.mark.parametrize("scale,offset", SCALES, ids=["dff", "rawF", "milli"])
def test_lambda_slider_spans_the_data_scale(make_napari_viewer, qtbot, notes, scale, offset):
    w = _tuner(make_napari_viewer, qtbot, scale, offset)
    c, sl = w.controls, w.controls.lam.slider
    qtbot.mouseClick(c.estimate_btn, Qt.LeftButton)
    qtbot.waitUntil(lambda: c.estimate_btn.isEnabled() and w.last_estimate is not None,
                    timeout=120_000)
    wait(qtbot, w)
    est = w.params.lam
    n = sl.maximum()
    # the estimate's own message, not the web app's 0-10 (said apart, below)
    assert w.status.text().startswith("Parameters estimated from 6 ROIs")
    # the estimate sits well inside the span, not at an end
    assert 0.2 * n <= sl.value() <= 0.8 * n, (est, sl.lo, sl.hi, sl.value(), n)
    assert sl.value_at(sl.value()) == pytest.approx(est, rel=0.02)
    # steps stay fine: ~2.5 % per position
    assert 1.02 <= sl.value_at(2) / sl.value_at(1) <= 1.03
    on = _settled(qtbot, w).activity.sum()
    assert on > 0
    caught = warnings.catch_warnings(record=True)
    said = caught.__enter__()
    warnings.simplefilter("always")
    # the first position after 0: practically no suppression (as lambda = 0)
    sl.setValue(0)
    free = _settled(qtbot, w).activity.sum()
    sl.setValue(1)
    assert w.params.lam == pytest.approx(sl.lo)
    assert _settled(qtbot, w).activity.sum() >= 0.9 * free
    # the right end: all activity gone
    sl.setValue(n)
    assert _settled(qtbot, w).activity.max() == 0.0
    caught.__exit__(None, None, None)
    # no warning per move (the core's "outside the web app's 0-10" is said once, below)
    assert not [(str(m.message), m.filename, m.lineno) for m in said if issubclass(m.category, ParameterRangeWarning)]
    # lambda above the web app's 10 is said once, as info
    assert notes["warning"] == [] and notes["error"] == []
    assert len([m for m in notes["info"] if "web app" in m]) == (1 if sl.hi > 10 else 0)


def test_lambda_span_is_the_same_for_scaled_data(make_napari_viewer, qtbot, notes):
    spans = []
    for scale in (1.0, 1000.0):
        w = _tuner(make_napari_viewer, qtbot, scale, 0.0)
        sl = w.controls.lam.slider
        w.set_params(w.params.replace(lam=0.05 * scale))
        _settled(qtbot, w)
        spans.append((sl.lo / scale, sl.hi / scale, sl.maximum(), sl.value()))
    assert spans[0] == pytest.approx(spans[1], rel=1e-3)


def test_typed_lambda_outside_the_span_moves_it(make_napari_viewer, qtbot, notes):
    w = _tuner(make_napari_viewer, qtbot, 1.0, 0.0)
    sl = w.controls.lam.slider
    lo, hi = sl.lo, sl.hi
    for typed in (hi * 3, hi * 1e6, lo / 1e7, lo / 3):
        type_value(qtbot, w, "lam", f"{typed:.6g}")
        _settled(qtbot, w)
        assert w.params.lam == float(f"{typed:.6g}")  # kept as typed
        assert sl.lo <= w.params.lam <= sl.hi
        assert 0 < sl.value() < sl.maximum()  # not pinned at an end
        assert sl.value_at(sl.value()) == pytest.approx(w.params.lam, rel=0.02)
        assert math.log10(sl.hi / sl.lo) <= 8.01
        assert 1.02 <= sl.value_at(2) / sl.value_at(1) <= 1.03
    assert notes["error"] == []
    assert not any("slider" in m and "lambda" in m for m in notes["warning"])
    # 0 stays the left end
    type_value(qtbot, w, "lam", "0")
    _settled(qtbot, w)
    assert sl.value() == 0


def test_lam_slider_range_rules():
    from napari_catune.session import _LAM_SIGMAS, lam_slider_range, slider_range

    assert lam_slider_range() == slider_range("lam")  # no scale yet
    assert lam_slider_range(float("nan")) == slider_range("lam")
    lo, hi = lam_slider_range(200.0)
    assert (lo, hi) == pytest.approx((_LAM_SIGMAS[0] * 200, _LAM_SIGMAS[1] * 200))
    assert lam_slider_range(200.0, 0.0) == (lo, hi)  # 0 is the left end, not a span
    # a value just past an end widens the span to take it
    assert lam_slider_range(lam=hi * 2, span=(lo, hi)) == pytest.approx((lo, hi * 3))
    assert lam_slider_range(lam=lo / 2, span=(lo, hi)) == pytest.approx((lo / 3, hi))
    # far away: the span moves there, the value where an estimate sits
    far = lam_slider_range(lam=hi * 1e6, span=(lo, hi))
    assert far[0] < hi * 1e6 < far[1] and math.log10(far[1] / far[0]) < 8
