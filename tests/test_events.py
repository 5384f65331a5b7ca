import numpy as np
import pytest

from napari_catune.events import EVENT_FIELDS, detect_events, read_event_times, save_events_csv


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
    assert kept["amplitude"].min() >= 0.5 and kept["roi_id"].size == 6


def test_events_many_rois_and_fixed_unit():
    s, _, fs = _train()
    two = np.stack([s, 2 * s])
    ev = detect_events(two, fs)
    np.testing.assert_allclose(ev["unit"], [0.5, 1.0])
    # the same events in both ROIs: amplitudes in units do not depend on scale
    a0 = ev["amplitude"][ev["activity_row"] == 0]
    a1 = ev["amplitude"][ev["activity_row"] == 1]
    # without roi_ids the ids are 1..n, as everywhere in the package
    np.testing.assert_array_equal(ev["roi_id"], ev["activity_row"] + 1)
    np.testing.assert_allclose(a0, a1)
    fixed = detect_events(two, fs, unit=[0.25, 0.25])
    np.testing.assert_allclose(fixed["amplitude"][fixed["activity_row"] == 1][:1], [4.0])


def test_events_merge_gap():
    fs = 100.0
    s = np.zeros(1000)
    s[[100, 103]] = 1.0                            # 30 ms apart: one event at 50 ms merge
    assert detect_events(s, fs)["onset_s"].size == 1
    assert detect_events(s, fs, merge_s=0.01)["onset_s"].size == 2


def test_events_empty_and_bad_input():
    ev = detect_events(np.zeros(100), 10.0)
    assert ev["roi_id"].size == 0 and ev["activity_row"].size == 0 and np.isnan(ev["unit"][0])
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
    with pytest.raises(ValueError, match="roi_ids must hold one label value per ROI"):
        detect_events(np.zeros((2, 10)), 10, roi_ids=[1])
    # ids are names: 0-based ids (as a CLI results file may carry) are kept
    assert detect_events(np.eye(2, 10, k=2), 10, roi_ids=[0, 1])["roi_id"].tolist() == [0, 1]
    with pytest.raises(ValueError, match="roi_ids must be ROI ids >= 0"):
        detect_events(np.zeros((2, 10)), 10, roi_ids=[-1, 1])
    with pytest.raises(ValueError, match="unique"):
        detect_events(np.zeros((2, 10)), 10, roi_ids=[4, 4])


# ------------------------------------------------- our events CSV, round trip
def _three_rois(fs=30.0):
    """Rows 0, 1, 2 fire at distinct times, so a shifted mapping cannot pass."""
    act = np.zeros((3, 600))
    act[0, [30, 300]] = 1.0
    act[1, 90] = 1.0
    act[2, [150, 450, 540]] = 1.0
    return act, fs


def test_events_table_carries_the_roi_ids():
    act, fs = _three_rois()
    ev = detect_events(act, fs, roi_ids=[7, 1, 40])
    assert ev["roi_id"].tolist() == [7, 7, 1, 40, 40, 40]
    assert ev["activity_row"].tolist() == [0, 0, 1, 2, 2, 2]


@pytest.mark.parametrize("ids", [None, [7, 1, 40]])
def test_events_csv_round_trips_onto_the_right_roi_ids(tmp_path, ids):
    act, fs = _three_rois()
    ev = detect_events(act, fs, roi_ids=ids)
    path = save_events_csv(tmp_path / "events.csv", ev)
    head = path.read_text().splitlines()[0]
    assert head == ",".join(EVENT_FIELDS)  # roi_id first; the per-ROI unit left out
    got = read_event_times(path)
    want_ids = [1, 2, 3] if ids is None else ids
    assert sorted(got) == sorted(want_ids)
    for row, rid in enumerate(want_ids):
        np.testing.assert_allclose(got[rid], np.flatnonzero(act[row]) / fs)


def test_events_csv_of_a_dataframe_and_errors(tmp_path):
    pd = pytest.importorskip("pandas")
    act, fs = _three_rois()
    ev = detect_events(act, fs, roi_ids=[7, 1, 40])
    df = pd.DataFrame({k: ev[k] for k in EVENT_FIELDS})
    got = read_event_times(save_events_csv(tmp_path / "df.csv", df))
    np.testing.assert_allclose(got[1], [3.0])
    with pytest.raises(ValueError, match="'roi_id' column"):
        save_events_csv(tmp_path / "x.csv", {"row": [0], "onset_s": [1.0]})
    with pytest.raises(ValueError, match=r"events\['roi_id'\] must be ROI ids >= 0"):
        save_events_csv(tmp_path / "x.csv", {"roi_id": [-2], "onset_s": [1.0]})
    assert not (tmp_path / "x.csv").exists()


def test_events_csv_results_npz_keep_the_roi_ids(tmp_path):
    """The events table through the results file keeps roi_id, and reads back as ids."""
    from napari_catune.params import TuningParams
    from napari_catune.results import load_results, save_results

    act, fs = _three_rois()
    ids = [7, 1, 40]
    ev = detect_events(act, fs, roi_ids=ids)
    table = {k: ev[k] for k in EVENT_FIELDS}
    (npz,) = save_results(tmp_path / "r.npz", activity=act, fit=None, baseline=None,
                          events=table, roi_ids=ids, fs=fs,
                          params=TuningParams(0.05, 0.5, fs, 0.01))
    back = load_results(npz)["events"]
    got = read_event_times(save_events_csv(tmp_path / "again.csv", back))
    assert sorted(got) == [1, 7, 40]
    np.testing.assert_allclose(got[40], [5.0, 15.0, 18.0])


@pytest.mark.parametrize("text,match", [
    # the table detect_events wrote before roi_id: 'roi' was the 0-based row
    ("roi,onset_frame,onset_s,peak_s,size,amplitude\n0,30,1.0,1.0,1,1\n",
     "earlier napari-catune.*0-based row"),
    ("row,onset_s\n0,1.0\n", "'row' is a 0-based row, not an ROI id"),
    ("activity_row,onset_s\n0,1.0\n", "'activity_row' is a 0-based row, not an ROI id"),
    ("roi,time_s\n0,1.0\n", "line 2: ROI '0' is not an ROI id.*0 is the background"),
])
def test_read_event_times_refuses_rows_as_ids(tmp_path, text, match):
    p = tmp_path / "ev.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_event_times(p)


def test_read_event_times_prefers_roi_id_over_roi(tmp_path):
    p = tmp_path / "ev.csv"
    p.write_text("roi,roi_id,time_s\n0,4,1.0\n1,9,2.0\n")
    assert {k: v.tolist() for k, v in read_event_times(p).items()} == {4: [1.0], 9: [2.0]}


# ------------------------------------------------------------------ frame 0
def test_a_run_at_frame_0_is_not_an_event_by_default():
    """Frame 0's activity is the calcium present before the recording (the model
    starts without calcium): it is not an event unless asked for, is flagged
    when kept, and never sets the unit."""
    s, onsets, fs = _train()
    s[0], s[1] = 40.0, 2.0                         # initial calcium: far above a unit
    ev = detect_events(s, fs)
    assert 0 not in ev["onset_frame"] and list(ev["onset_frame"][:5]) == onsets
    assert not ev["starts_before_recording"].any()
    np.testing.assert_allclose(ev["unit"], [0.5])   # not pulled up by frame 0
    np.testing.assert_allclose(ev["amplitude"], [1, 1, 1, 1, 1, 3, 0.1])
    kept = detect_events(s, fs, keep_first=True)
    assert kept["onset_frame"][0] == 0 and kept["starts_before_recording"].tolist() == \
        [True] + [False] * 7
    np.testing.assert_allclose(kept["unit"], [0.5])
    np.testing.assert_allclose(kept["amplitude"][0], 84.0)
    # a trace whose only activity is at frame 0 has no events and no unit
    only = detect_events(np.r_[5.0, np.zeros(99)], fs)
    assert only["roi_id"].size == 0 and np.isnan(only["unit"][0])


def test_events_csv_names_the_activity_row_and_old_files_still_read(tmp_path):
    """suite2p's ROI 3 can be row 1 of the activity once non-cells are left out:
    the column says which array's row it is; a file of an earlier version
    (with 'row') still reads onto its ROI ids."""
    act, fs = _three_rois()
    path = save_events_csv(tmp_path / "new.csv", detect_events(act, fs, roi_ids=[1, 3, 4]))
    head = path.read_text().splitlines()[0].split(",")
    assert "activity_row" in head and "row" not in head
    assert "starts_before_recording" in head
    old = tmp_path / "old.csv"
    old.write_text("roi_id,row,onset_frame,onset_s,peak_s,size,amplitude\n"
                   "3,1,90,3,3,1,1\n1,0,30,1,1,1,1\n")
    assert {k: v.tolist() for k, v in read_event_times(old).items()} == {1: [1.0], 3: [3.0]}
    assert {k: v.tolist() for k, v in read_event_times(path).items()} == \
        {1: [1.0, 10.0], 3: [3.0], 4: [5.0, 15.0, 18.0]}


def test_event_times_are_on_the_recordings_clock():
    """An input starting at t0 (an NWB series' starting_time) or with irregular
    timestamps: onset_s and peak_s are the times of the events' frames on the
    clock of the results' time_s, not counted from the first frame."""
    fs = 30.0
    act = np.zeros((2, 300))
    act[0, [50, 51, 52, 200]] = [0.5, 2.0, 0.5, 3.0]
    act[1, 100] = 2.0
    base = detect_events(act, fs)
    ev = detect_events(act, fs, t0=12.5)
    np.testing.assert_array_equal(ev["onset_frame"], base["onset_frame"])
    np.testing.assert_allclose(ev["onset_s"], 12.5 + ev["onset_frame"] / fs)
    np.testing.assert_allclose(ev["peak_s"], 12.5 + np.array([51, 200, 100]) / fs)
    ts = 12.5 + np.cumsum(np.r_[0.0, np.random.default_rng(0).uniform(0.03, 0.04, 299)])
    irr = detect_events(act, fs, timestamps=ts)
    np.testing.assert_array_equal(irr["onset_s"], ts[irr["onset_frame"]])
    np.testing.assert_array_equal(irr["peak_s"], ts[[51, 200, 100]])
    with pytest.raises(ValueError, match="timestamps must be 300 finite times"):
        detect_events(act, fs, timestamps=ts[:-1])


def test_results_refuse_events_on_another_clock(tmp_path):
    """save_results of an input starting at t0 = 12.5 s: events timed from the
    first frame would contradict the file's time_s; they are refused with what
    to do, and events detected with the results' t0 are saved."""
    from napari_catune.params import TuningParams
    from napari_catune.results import load_results, save_results

    fs = 30.0
    act = np.zeros((2, 300))
    act[0, [50, 200]] = 1.0
    act[1, 100] = 2.0
    kw = dict(activity=act, fit=None, baseline=None, roi_ids=[4, 9], fs=fs,
              params=TuningParams(0.05, 0.5, fs, 0.1), t0=12.5)
    with pytest.raises(ValueError, match=r"count from the first frame: detect them with "
                                         r"detect_events\(activity, fs, t0="):
        save_results(tmp_path / "r.npz", events=detect_events(act, fs, roi_ids=[4, 9]), **kw)
    save_results(tmp_path / "r.npz", events=detect_events(act, fs, roi_ids=[4, 9], t0=12.5),
                 **kw)
    r = load_results(tmp_path / "r.npz")
    again = detect_events(r["activity"], r["fs"], roi_ids=r["roi_ids"], t0=r["t0"],
                          timestamps=r["timestamps"])
    np.testing.assert_array_equal(r["events"]["onset_s"], again["onset_s"])
    # the CSV's time_s of an event's frame is its onset_s
    save_results(tmp_path / "r.csv", events=None, **kw)
    time_s = np.loadtxt(tmp_path / "r.csv", delimiter=",", skiprows=1)[:, 0]
    np.testing.assert_allclose(time_s[again["onset_frame"]], again["onset_s"], rtol=1e-9)
    ts = 3.0 + np.arange(300) / fs * 1.01
    with pytest.raises(ValueError, match="not on the results' clock .the input's timestamps"):
        save_results(tmp_path / "r.npz", events=detect_events(act, fs, t0=12.5),
                     **{**kw, "t0": None}, timestamps=ts)


# --------------------------------------------- frame 1 and leading dark frames
def _dark_trace(T=3000, fs=30.0, dark=3, seed=0):
    """A trace that starts with ``dark`` frames of a shutter still closed (far
    below the rest), then high with the calcium of spikes before the recording."""
    rng = np.random.default_rng(seed)
    t = np.arange(T) / fs
    y = 0.05 * rng.standard_normal(T) + 4.0 * np.exp(-t / 0.8)
    y[:dark] = -0.9 + 0.05 * rng.standard_normal(dark)
    return y


def test_leading_dark_frames_are_found_and_ordinary_starts_are_not():
    from napari_catune.events import leading_dark_frames

    fs = 30.0
    ys = [_dark_trace(dark=d, seed=d) for d in (3, 1, 0)]
    quiet = 0.05 * np.random.default_rng(5).standard_normal(3000)
    dip = quiet.copy()
    dip[1500:1510] = -3.0                  # a deep dip later is no dark start
    low = quiet.copy()
    low[:2] -= 0.2                         # 4 noise sigmas low: not dark
    padded = np.r_[_dark_trace(dark=2)[:2000], np.full(1000, np.nan)]
    got = leading_dark_frames(np.stack([*ys, quiet, dip, low, padded]), fs)
    assert got.tolist() == [3, 1, 0, 0, 0, 0, 2]
    assert leading_dark_frames(np.zeros((1, 10)), fs).tolist() == [0]  # too short to tell


def test_runs_starting_within_the_initial_state_or_after_dark_frames_are_not_events():
    """The AR(2) model's initial state is the calcium at frames 0 and 1: a run
    starting at frame 1 is the calcium before the recording as one at frame 0
    is; after leading dark frames (given the traces) the recording starts later."""
    s, onsets, fs = _train()
    s[1] = 40.0
    ev = detect_events(s, fs)
    assert 1 not in ev["onset_frame"] and list(ev["onset_frame"][:5]) == onsets
    np.testing.assert_allclose(ev["unit"], [0.5])        # not pulled up by the run
    kept = detect_events(s, fs, keep_first=True)
    assert kept["onset_frame"][0] == 1 and kept["starts_before_recording"][0]
    # frame 2 is after the initial state: an event, unless dark frames came first
    s2, _, _ = _train()
    s2[4] = 40.0                                        # right after 3 dark frames (+1)
    y = _dark_trace(dark=3)
    assert 4 in detect_events(s2, fs)["onset_frame"]
    ev = detect_events(s2, fs, traces=y)
    assert 4 not in ev["onset_frame"] and list(ev["onset_frame"]) == onsets + [2500, 2800]
    np.testing.assert_allclose(ev["unit"], [0.5])
    kept = detect_events(s2, fs, traces=y, keep_first=True)
    assert kept["onset_frame"][0] == 4 and kept["starts_before_recording"].sum() == 1
    with pytest.raises(ValueError, match="one row per activity row"):
        detect_events(np.stack([s2, s2]), fs, traces=y)


def test_without_initial_runs_matches_the_events_table():
    from napari_catune.events import (initial_run_ends, leading_dark_frames,
                                      without_initial_runs)

    fs = 30.0
    rng = np.random.default_rng(3)
    a = (rng.random((6, 2000)) < 0.2) * rng.random((6, 2000))
    a[:, :12] = 0.0
    a[0, 0], a[1, 1], a[2, 2], a[3, 4], a[4, 5] = 5.0, 5.0, 5.0, 5.0, 5.0
    y = np.stack([_dark_trace(T=2000, dark=d, seed=i) for i, d in enumerate([0, 0, 0, 3, 3, 0])])
    dark = leading_dark_frames(y, fs)
    assert dark.tolist() == [0, 0, 0, 3, 3, 0]
    cut = without_initial_runs(a, fs, dark=dark)
    assert cut is not a and a[0, 0] == 5.0                # a copy; the input unchanged
    ends = initial_run_ends(a, fs, dark)
    # rows 0, 1 (frames 0-1) and 3 (frame 4 = 3 dark + 1) start before the
    # recording; row 2 (frame 2) and row 4 (frame 5 = 3 dark + 2) do not
    assert (ends > 0).tolist() == [True, True, False, True, False, False]
    ev = detect_events(a, fs, traces=y, keep_first=True)
    for i in range(6):
        sel = ev["activity_row"] == i
        want = ev["onset_frame"][sel & ev["starts_before_recording"]]
        assert bool(want.size) == bool(ends[i])
        np.testing.assert_array_equal(cut[i, ends[i]:], a[i, ends[i]:])
        assert not cut[i, :ends[i]].any()
    assert without_initial_runs(np.zeros((2, 50)), fs) is not None


def test_a_slow_warm_up_or_a_smoothed_dip_is_no_dark_start():
    """Dark frames end in a step within the first 0.2 s: a raw trace that warms
    up over seconds keeps a real spike at 0.4 s, and a smoothed dip at the start
    is no dark start (review rev36)."""
    from napari_catune.events import leading_dark_frames

    fs, T = 30.0, 1800
    rng = np.random.default_rng(0)
    t = np.arange(T) / fs
    h = np.exp(-t / 0.5) - np.exp(-t / 0.05)
    h /= h.max()
    s = np.zeros(T)
    s[[12, 300, 600, 900, 1200]] = 1.0                  # a spike at 0.4 s
    base = 1000.0 * (1 - 0.05 * np.clip(1 - t / 3.0, 0, None))  # 5 % lower at the start
    y = base * (1 + 0.3 * np.convolve(s, h)[:T]) + 2.0 * rng.standard_normal(T)
    assert leading_dark_frames(y[None], fs).tolist() == [0]
    a = np.zeros(T)
    a[[12, 300, 600, 900, 1200]] = 1.0
    assert 12 in detect_events(a, fs, traces=y)["onset_frame"]
    dips = 0.05 * rng.standard_normal((40, T))
    dips[:, :10] -= 0.1                                  # 2 raw sigmas low ...
    sm = np.stack([np.convolve(d, np.ones(3) / 3, "same") for d in dips])  # ... smoothed
    assert not leading_dark_frames(sm, fs).any()
    assert leading_dark_frames(_dark_trace(dark=3)[None], fs).tolist() == [3]
