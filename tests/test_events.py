import numpy as np
import pytest

from napari_catune.events import EVENT_FIELDS, detect_events


def _train(T=3000, fs=30.0):
    s = np.zeros(T)
    onsets = [100, 400, 900, 1500, 2100]           # isolated single events, size 0.5
    for t in onsets:
        s[t] = 0.3
        s[t + 1] = 0.2                             # spread over two frames
    s[2500] = 1.5                                  # a burst of three units
    s[2800] = 0.05                                 # a tenth of a unit: noise
    return s, onsets, fs


def test_events_table_units_and_threshold():
    s, onsets, fs = _train()
    ev = detect_events(s, fs)
    assert set(EVENT_FIELDS) <= set(ev)
    np.testing.assert_allclose(ev["unit"], [0.5])
    assert list(ev["onset_frame"][:5]) == onsets
    np.testing.assert_allclose(ev["onset_s"][:5], np.array(onsets) / fs)
    np.testing.assert_allclose(ev["amplitude"], [1, 1, 1, 1, 1, 3, 0.1])
    kept = detect_events(s, fs, min_size=0.5)
    assert kept["amplitude"].min() >= 0.5 and kept["roi"].size == 6


def test_events_many_rois_and_fixed_unit():
    s, _, fs = _train()
    two = np.stack([s, 2 * s])
    ev = detect_events(two, fs)
    np.testing.assert_allclose(ev["unit"], [0.5, 1.0])
    # the same events in both ROIs: amplitudes in units do not depend on scale
    a0 = ev["amplitude"][ev["roi"] == 0]
    a1 = ev["amplitude"][ev["roi"] == 1]
    np.testing.assert_allclose(a0, a1)
    fixed = detect_events(two, fs, unit=[0.25, 0.25])
    np.testing.assert_allclose(fixed["amplitude"][fixed["roi"] == 1][:1], [4.0])


def test_events_merge_gap():
    fs = 100.0
    s = np.zeros(1000)
    s[[100, 103]] = 1.0                            # 30 ms apart: one event at 50 ms merge
    assert detect_events(s, fs)["roi"].size == 1
    assert detect_events(s, fs, merge_s=0.01)["roi"].size == 2


def test_events_empty_and_bad_input():
    ev = detect_events(np.zeros(100), 10.0)
    assert ev["roi"].size == 0 and np.isnan(ev["unit"][0])
    with pytest.raises(ValueError, match="fs"):
        detect_events(np.zeros(10), 0)
    with pytest.raises(ValueError, match="min_size"):
        detect_events(np.zeros(10), 10, min_size=-1)
    with pytest.raises(ValueError, match="non-finite"):
        detect_events(np.array([0.0, np.nan]), 10)
    with pytest.raises(ValueError, match="unit"):
        detect_events(np.zeros((2, 10)), 10, unit=[1.0, -1.0])
    with pytest.raises(ValueError, match="activity"):
        detect_events(np.zeros((2, 2, 2)), 10)
