"""TuningSession without Qt or napari: source, selection, parameters, live solves."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

import napari_catune.solver as solver_mod
from napari_catune import session as ses
from napari_catune.kernel import bandpass_filter, build_kernel
from napari_catune.params import TuningParams

FS = 30.0


def _traces(n=6, T=600, seed=0):
    rng = np.random.default_rng(seed)
    h = build_kernel(0.05, 0.5, FS)
    spikes = (rng.random((n, T)) < np.linspace(0.005, 0.05, n)[:, None]) * 1.0
    calcium = np.stack([np.convolve(s, h)[:T] for s in spikes])
    return 0.02 * rng.standard_normal((n, T)) + calcium


@pytest.fixture
def s():
    sess = ses.TuningSession(TuningParams(0.05, 0.5, FS, 0.05))
    sess.set_source(ses.build_source(_traces(), roi_ids=[3, 5, 8, 11, 12, 20], fs=FS))
    return sess


def _record(signal):
    got = []
    signal.connect(lambda *a: got.append(a[0] if len(a) == 1 else a))
    return got


def test_no_qt_imported():
    import subprocess

    code = ("import sys, numpy as np; import napari_catune.session as s; "
            "assert not any(m.startswith(('qtpy', 'PyQt', 'napari.')) or m == 'napari' "
            "for m in sys.modules), [m for m in sys.modules if 'qt' in m.lower()]")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_source_has_readouts_and_unit(s):
    src = s.source
    assert src.n_rois == 6 and src.n_frames == 600
    assert src.unit == "dF/F"  # near 0 with dF/F-sized transients
    assert np.all(np.isfinite(src.snr)) and np.all(src.noise > 0)
    quiet = ses.build_source(0.02 * np.random.default_rng(1).standard_normal((3, 2000)), fs=FS)
    np.testing.assert_allclose(quiet.noise, 0.02, rtol=0.15)
    raw = ses.build_source(_traces() + 500.0, fs=FS)
    assert raw.unit == "raw"


@pytest.mark.parametrize("bad", [np.zeros((0, 10)), np.zeros((3, 1)), np.zeros((2, 3, 4))])
def test_bad_sources_are_refused(bad):
    with pytest.raises(ValueError):
        ses.build_source(bad, fs=FS)
    with pytest.raises(ValueError, match="ids"):
        ses.build_source(np.zeros((3, 50)), roi_ids=[1, 2], fs=FS)


def test_selection_in_one_place(s):
    seen = _record(s.selection_changed)
    unknown, cut = s.select([5, 999, 8])
    assert unknown == [999] and not cut
    assert s.selection == (5, 8)
    s.select([3], add=True)
    assert s.selection == (5, 8, 3)
    s.select([8], add=True)  # toggles off
    assert s.selection == (5, 3)
    assert seen == [(5, 8), (5, 8, 3), (5, 3)]
    assert s.most_active(2) == [int(i) for i in
                                s.source.roi_ids[np.argsort(-s.source.snr)[:2]]]
    r = s.random_rois(3, seed=1)
    assert len(set(r)) == 3 and set(r) <= set(s.source.row)


def test_at_most_twenty(s):
    s.set_source(ses.build_source(_traces(30, 200), fs=FS))
    unknown, cut = s.select(range(1, 31))
    assert cut and s.selection == tuple(range(11, 31))


def test_params_validated_once_and_solved(s):
    results = _record(s.result_changed)
    s.select([12, 20])
    assert len(results) == 1
    p = s.set_params(lam=0.1)
    assert p.lam == 0.1 and s.params is p
    assert len(results) == 2
    res = s.result
    ref = solver_mod.run_deconvolution_full(s.source.traces[[4, 5]], FS, 0.05, 0.5, 0.1)
    np.testing.assert_allclose(res.fit, ref.reconvolution, atol=1e-4)
    np.testing.assert_allclose(res.activity, ref.activity, atol=1e-3 * ref.activity.max())
    assert res.ids == (12, 20) and res.r2.shape == (2,) and np.all(res.r2 > 0.5)
    assert np.all(res.events_per_min > 0) and res.converged.all()
    # the read-outs (computed when first read) are the core's
    r2, ev = solver_mod.fit_stats(res.trace, res.fit, res.activity, FS, res.noise)
    np.testing.assert_array_equal(res.r2, r2)
    np.testing.assert_array_equal(res.events_per_min, ev)
    np.testing.assert_allclose(res.events_per_min, ses.event_rate(res.activity, FS, res.noise))
    with pytest.raises(ValueError, match="tau_rise"):
        s.set_params(tau_rise=2.0)  # above tau_decay
    assert s.params is p  # kept


def test_no_change_no_event(s):
    got = _record(s.params_changed)
    s.set_params(lam=s.params.lam)
    assert got == []


def test_undo_redo(s):
    p0 = s.params
    s.set_params(lam=0.2)
    s._last_push = -1e9  # a pause between the two changes
    s.set_params(tau_decay=0.8)
    assert s.undo() and s.params.tau_decay == 0.5 and s.params.lam == 0.2
    assert s.undo() and s.params == p0
    assert not s.undo()
    assert s.redo() and s.params.lam == 0.2
    s.set_params(lam=0.3)
    assert not s.can_redo


def test_newest_result_wins_and_warm_starts(s):
    queue = []
    s.submit = queue.append  # hold the requests, run them out of order
    s.select([3])
    s.set_params(lam=0.2)
    s.set_params(lam=0.3)
    assert [r.gen for r in queue] == [queue[0].gen, queue[0].gen + 1, queue[0].gen + 2]
    assert s.pending
    newest = queue[-1].run()
    assert s.accept(newest) and not s.pending
    assert s.result.params.lam == 0.3
    old = queue[0].run()
    assert not s.accept(old)  # stale: never shown
    assert s.result is newest.result
    # nor does it replace the newer warm start
    np.testing.assert_array_equal(s.warm_start(3), newest.result.activity[0])
    # the next request starts warm
    s.set_params(lam=0.25)
    assert queue[-1].init is not None


def test_result_for_an_old_selection_is_not_shown(s):
    queue = []
    s.submit = queue.append
    s.select([3])
    s.select([5])
    assert not s.accept(queue[0].run())
    assert s.accept(queue[1].run()) and s.result.ids == (5,)


def test_errors_are_reported_once(s, monkeypatch):
    msgs = _record(s.failed)

    def broken(*a, **k):
        raise ValueError("synthetic failure")

    monkeypatch.setattr(solver_mod, "run_deconvolution_full", broken)
    s.select([3])
    assert len(msgs) == 1 and "synthetic failure" in msgs[0]
    assert not s.pending and s.result is None


def test_filter_cached_between_lambda_moves(s, monkeypatch):
    import napari_catune.session as mod

    filters, transforms = [], []
    gain, rfft = mod.bandpass_gain, np.fft.rfft
    monkeypatch.setattr(mod, "bandpass_gain", lambda *a: filters.append(1) or gain(*a))
    monkeypatch.setattr(np.fft, "rfft", lambda *a, **k: transforms.append(1) or rfft(*a, **k))
    s.select([3, 5])
    s.set_params(filter_enabled=True)
    assert len(filters) == 1
    s.set_params(lam=0.1)
    assert len(filters) == 1  # same taus: the filtered traces are reused
    s.set_params(tau_decay=0.7)
    assert len(filters) == 2
    assert len(transforms) == 1  # the selection's spectra are taken once
    p = s.params
    want = bandpass_filter(s.source.traces[[0, 1]], p.tau_rise, p.tau_decay, p.fs)
    np.testing.assert_array_equal(s.result.trace, want)  # the same numbers as the core's
    n = len(transforms)
    s.select([3])
    assert len(transforms) == n + 1  # a new selection: its own spectra


def test_new_source_resets(s):
    s.select([3])
    s.pin()
    assert s.pinned is not None
    s.set_source(ses.build_source(_traces(2, 300), fs=FS))
    assert s.selection == () and s.result is None and s.pinned is None


def test_live_solver_thread_keeps_the_newest(s):
    done = threading.Event()
    got = []

    def finished(req):
        got.append(req)
        done.set()

    live = ses.LiveSolver(finished)
    s.submit = live.submit
    gate, entered = threading.Event(), threading.Event()
    real = ses.SolveRequest.run

    def held(self):
        entered.set()
        gate.wait(5)
        return real(self)

    ses.SolveRequest.run = held
    try:
        s.select([3])
        assert entered.wait(5)  # the thread runs it, held
        s.set_params(lam=0.2)  # waits
        s.set_params(lam=0.3)  # replaces the waiting one
        gate.set()
        for _ in range(100):
            if len(got) >= 2 and live.idle:
                break
            done.wait(0.1)
            done.clear()
    finally:
        ses.SolveRequest.run = real
        live.stop()
    assert [r.params.lam for r in got] == [0.05, 0.3]
    for r in got:
        s.accept(r)
    assert s.result.params.lam == 0.3


def test_apply_job_features_and_cancel(s):
    p = s.params
    gen = ses.apply_job(s.source.traces, s.source.roi_ids, p, snr=s.source.snr)
    steps = []
    try:
        while True:
            steps.append(next(gen))
    except StopIteration as stop:
        batch = stop.value
    assert steps[-1] == (6, 6)
    ref = solver_mod.run_deconvolution_full(s.source.traces, p.fs, p.tau_rise, p.tau_decay,
                                            p.lam)
    np.testing.assert_allclose(batch.activity, ref.activity, atol=1e-6 * ref.activity.max())
    f = batch.features
    assert list(f["roi_id"]) == [3, 5, 8, 11, 12, 20]
    for k in ("snr", "event_rate_hz", "r2", "baseline", "converged"):
        assert len(f[k]) == 6
    assert batch.activity_max == pytest.approx(ref.activity.max())
    # cancelling is stopping the generator between chunks
    g2 = ses.apply_job(np.tile(s.source.traces, (10, 1)), np.arange(60), p)
    next(g2)
    g2.close()


def test_event_rate_counts_runs():
    a = np.zeros((1, 600))
    a[0, [10, 11, 100, 300]] = [1.0, 0.5, 2.0, 0.001]  # 2 events above 5 % of the largest
    rate = ses.event_rate(a, FS)
    assert rate[0] == pytest.approx(2 / (600 / FS / 60))


def test_events_per_min_leave_out_the_frame0_run_as_the_events_table():
    """The live read-out (compiled fit_stats, its NumPy twin event_rate, the
    batch's event_rate_hz) counts what detect_events' table counts: a run of
    activity starting at frame 0 (the calcium before the recording) is no
    event, and it does not raise the 5 % threshold of the others."""
    from napari_catune.events import detect_events
    from napari_catune.solver import fit_stats

    T = 1800  # one minute
    a = np.zeros((3, T))
    a[0, [0, 1, 2]] = [8.0, 4.0, 1.0]  # initial calcium, 20x the events below
    a[0, [300, 900]] = 0.4
    a[1, [0, 2, 600]] = [1.0, 1.0, 1.0]  # frame 2: bridged into the frame-0 run (< 50 ms)
    a[2, [5, 700]] = 1.0  # no frame-0 run
    table = detect_events(a, FS)
    want = np.bincount(table["activity_row"], minlength=3).astype(float)
    assert want.tolist() == [2.0, 1.0, 2.0]
    y = 1.0 + np.random.default_rng(0).normal(0, 0.1, (3, T))
    np.testing.assert_array_equal(ses.event_rate(a, FS), want)
    for threaded in (True, False):
        np.testing.assert_array_equal(fit_stats(y, y, a, FS, threaded=threaded)[1], want)
    padded = np.vstack([a, np.r_[a[0, :900], np.full(T - 900, np.nan)]])
    y4 = np.vstack([y, np.r_[y[0, :900], np.full(T - 900, np.nan)]])
    np.testing.assert_array_equal(fit_stats(y4, y4, padded, FS)[1], [*want, 2.0])
    assert a[0, 0] == 8.0  # the caller's activity is not changed
    # the run left out is the one detect_events leaves out (its _runs), long or short
    from napari_catune.events import _runs, without_frame0_runs

    rng = np.random.default_rng(2)
    for p_on in (0.3, 0.6, 0.9):
        r = (rng.random((20, 3000)) < p_on) * rng.random((20, 3000))
        r[:, 0] = 1.0
        cut = without_frame0_runs(r, FS)
        for i in range(20):
            stop = _runs(r[i], 2)[1][0]
            assert not cut[i, :stop].any() and np.array_equal(cut[i, stop:], r[i, stop:])


def test_events_per_min_leave_out_the_run_after_leading_dark_frames():
    """A recording whose first frames are dark (a shutter opening late: realgt's
    DS07) starts after them: the run right after them is the calcium before
    the recording, left out of the live events/min (compiled and NumPy) and of
    the batch's event_rate_hz as of detect_events' table given the traces."""
    from napari_catune.events import detect_events, leading_dark_frames
    from napari_catune.solver import fit_stats

    T = 1800  # one minute
    t = np.arange(T) / FS
    y = 1.0 + 0.05 * np.random.default_rng(1).standard_normal((2, T)) + 4.0 * np.exp(-t / 0.8)
    y[0, :3] = 0.05  # three dark frames on row 0 only
    a = np.zeros((2, T))
    a[:, 4] = 8.0  # row 0: dark + 1 (before the recording); row 1: frame 4, an event
    a[:, [300, 900]] = 0.4
    table = detect_events(a, FS, traces=y)
    want = np.bincount(table["activity_row"], minlength=2).astype(float)
    assert want.tolist() == [2.0, 3.0]
    dark = leading_dark_frames(y, FS)
    assert dark.tolist() == [3, 0]
    np.testing.assert_array_equal(ses.event_rate(a, FS, dark=dark), want)
    assert ses.event_rate(a, FS)[0] == 3.0  # (without the dark frames: counted)
    for threaded in (True, False):
        np.testing.assert_array_equal(fit_stats(y, y, a, FS, threaded=threaded)[1], want)
    # Apply to all: the features' rate is the live read-out's, dark frames included
    y[0, :5] = 0.05  # 5 dark frames: the solver's initial run starts after frame 1
    p = TuningParams(fs=FS, tau_rise=0.05, tau_decay=0.8, lam=0.05, baseline="drift")
    gen = ses.apply_job(y, np.array([1, 2]), p)
    try:
        while True:
            next(gen)
    except StopIteration as e:
        b = e.value
    rate = b.features["event_rate_hz"] * 60.0
    np.testing.assert_allclose(rate, fit_stats(y, b.reconvolution, b.activity, FS)[1],
                               rtol=1e-12)
    assert b.activity[0, :2].max() == 0 and b.activity[0, 2:10].max() > 1.0
    assert rate.tolist() == [0.0, 0.0]
    assert ses.event_rate(b.activity, FS).tolist() == [1.0, 0.0]  # (counted without the dark)


def test_new_sessions_start_with_the_drift_baseline_and_apply_keeps_per_roi_baselines(s):
    assert ses.TuningSession().params.baseline == "drift"
    for mode in ("drift", "rolling", "scalar"):
        p = s.params.replace(baseline=mode)
        gen = ses.apply_job(s.source.traces, s.source.roi_ids, p)
        try:
            while True:
                next(gen)
        except StopIteration as stop:
            b = stop.value
        ref = solver_mod.run_deconvolution_full(s.source.traces, FS, p.tau_rise, p.tau_decay,
                                                p.lam, baseline=mode)
        np.testing.assert_allclose(b.activity, ref.activity)
        # the per-sample baseline is kept, the features get one number per ROI
        assert np.shape(b.baseline) == np.shape(ref.baseline)
        assert b.features["baseline"].shape == (6,)


def test_live_fit_uses_the_drift_scale_as_apply_to_all_does(s):
    """The live solve and Apply to all solve the same problem, drift scale included."""
    s.select([12, 20])
    p = s.set_params(baseline="drift", drift_scale=2.0)
    rows = s.source.traces[[4, 5]]
    ref = solver_mod.run_deconvolution_full(rows, FS, 0.05, 0.5, p.lam, baseline="drift",
                                            drift_scale=2.0)
    default = solver_mod.run_deconvolution_full(rows, FS, 0.05, 0.5, p.lam, baseline="drift")
    assert np.abs(ref.reconvolution - default.reconvolution).max() > 1e-4  # the scale matters
    np.testing.assert_allclose(s.result.fit, ref.reconvolution, atol=1e-6)


# ------------------------------------------------------- ground truth (events CSV)
def test_events_csv_becomes_the_ground_truth(s, tmp_path):
    got = _record(s.truth_changed)
    p = tmp_path / "ev.csv"
    # any column order and case, extra columns ignored, comments and blank lines skipped
    p.write_text("# from ephys\nTime_s,amplitude,ROI\n1.5,2,5\n0.25,1,5\n\n3.0,1,12\n"
                 "40.0,1,5\n7,1,99\n")
    info = s.load_events_csv(p)
    assert info == {"events": 4, "rois": 2, "unknown": [99], "late": 1,
                    "early": 0}  # 600 frames = 20 s
    np.testing.assert_array_equal(s.source.events_s[5], [0.25, 1.5, 40.0])  # sorted
    np.testing.assert_array_equal(s.source.events_s[12], [3.0])
    assert got == [s.source.events_s]
    # imported times win over a sample's spike frames, in seconds whatever fs is
    s.source.ground_truth = {5: np.array([30.0])}
    assert s.source.truth_seconds(60.0) is s.source.events_s
    s.set_events(None)
    assert s.source.truth_seconds(60.0)[5].tolist() == [0.5]


@pytest.mark.parametrize("sep", [";", "\t"])
def test_events_csv_separators(s, tmp_path, sep):
    p = tmp_path / "ev.csv"
    p.write_text(sep.join(["cell", "peak_s", "onset_s", "size"]) + "\n"
                 + sep.join(["3", "1.1", "1.0", "0.5"]) + "\n")
    assert s.load_events_csv(p)["events"] == 1
    assert s.source.events_s[3].tolist() == [1.0]  # onset_s before peak_s


def test_our_own_events_csv_lands_on_its_rois(s, tmp_path):
    """Events detected on the applied results, written by save_events_csv, come back
    on the ROI ids they were detected on (ids 3, 5, 8...: not rows, not 1..n)."""
    from napari_catune.events import detect_events, save_events_csv

    src = s.source
    gen = ses.apply_job(src.traces, src.roi_ids, s.params)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        batch = stop.value
    ev = detect_events(batch.activity, FS, roi_ids=batch.roi_ids, min_size=0.5)
    assert np.unique(ev["roi_id"]).size >= 4  # most ROIs have events
    info = s.load_events_csv(save_events_csv(tmp_path / "events.csv", ev))
    assert info["unknown"] == [] and info["events"] == ev["roi_id"].size
    assert sorted(src.events_s) == sorted(set(ev["roi_id"].tolist()))
    for rid, times in src.events_s.items():
        row = src.row[rid]
        np.testing.assert_allclose(times, np.sort(ev["onset_s"][ev["activity_row"] == row]))
        # each event starts where that ROI's activity does
        frames = np.rint(times * FS).astype(int)
        assert np.all(batch.activity[row, frames] > 0)


def test_events_csv_of_a_recording_starting_later_maps_onto_its_frames(tmp_path):
    """An NWB input starting at 12.5 s: its events CSV (detect_events with the
    results' t0, or irregular timestamps) is on the recording's clock; the tuner
    draws each event at its frame (seconds from the first frame), none late."""
    from napari_catune.events import detect_events, save_events_csv

    act = np.zeros((2, 600))
    act[0, [40, 300]] = 1.0
    act[1, 450] = 2.0
    ts = 12.5 + np.cumsum(np.r_[0.0, np.random.default_rng(1).uniform(0.03, 0.037, 599)])
    for clock in ({"t0": 12.5}, {"timestamps": ts}):
        sess = ses.TuningSession(TuningParams(0.05, 0.5, FS, 0.05))
        sess.set_source(ses.build_source(_traces(2), roi_ids=[3, 5], fs=FS, **clock))
        ev = detect_events(act, FS, roi_ids=[3, 5], **clock)
        assert ev["onset_s"].min() > 12.5
        info = sess.load_events_csv(save_events_csv(tmp_path / "ev.csv", ev))
        assert info["late"] == 0 and info["early"] == 0 and info["events"] == 3
        got = sess.source.events_s
        np.testing.assert_allclose(got[3] * FS, [40, 300], atol=1e-5)
        np.testing.assert_allclose(got[5] * FS, [450], atol=1e-5)
    # times before the recording's first frame are counted
    p = tmp_path / "early.csv"
    p.write_text("roi,time_s\n3,1.0\n3,13.0\n")
    info = sess.load_events_csv(p)
    assert info["early"] == 1 and info["events"] == 2


@pytest.mark.parametrize("text,match", [
    ("", "empty"),
    ("cell_name,t\n1,2\n", "needs an ROI column .* and a time column"),
    ("roi,frame\n1,2\n", "needs a time column in seconds"),
    ("roi,time_s\n", "no events"),
    ("roi,time_s\n3.5,1\n", "line 2: ROI '3.5' is not an integer"),
    ("roi,time_s\nabc,1\n", "line 2: ROI 'abc'"),
    ("roi,time_s\n3,1\n3,soon\n", "line 3: time 'soon' is not a number"),
    ("roi,time_s\n3,-1\n", "line 2: time '-1' must be a finite number of seconds >= 0"),
    ("roi,time_s\n3,nan\n", "finite"),
    ("roi,time_s\n3\n", "line 2: 1 field"),
    ("roi,time_s\n1,0.5\n2,0.7\n", r"none of the 2 ROI id\(s\)"),
])
def test_events_csv_errors_name_the_line_and_keep_the_old_truth(s, tmp_path, text, match):
    s.set_events({3: np.array([1.0])})
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        s.load_events_csv(p)
    assert s.source.events_s[3].tolist() == [1.0]


def test_events_csv_needs_a_file_and_a_source(tmp_path):
    sess = ses.TuningSession()
    p = tmp_path / "ev.csv"
    p.write_text("roi,time_s\n1,1\n")
    with pytest.raises(ValueError, match="no traces are open"):
        sess.load_events_csv(p)
    sess.set_source(ses.build_source(_traces(), fs=FS))
    with pytest.raises(ValueError, match="not found"):
        sess.load_events_csv(tmp_path / "missing.csv")


def test_only_small_steps_count_as_slider_steps(s):
    """A warm solve runs in place only after a slider-sized step (the tuner's rule)."""
    s.select([12, 20])
    res = s.result
    queue = []
    s.submit = queue.append
    s.set_params(tau_decay=0.5 * 1.05)
    assert queue[-1].small_step_from(res)
    s.set_params(tau_decay=0.5 * 1.6)  # a preset or a typed value
    assert not queue[-1].small_step_from(res)
    s.set_params(tau_decay=0.5, lam=res.params.lam * 1.05)
    assert queue[-1].small_step_from(res)
    s.set_params(baseline="scalar" if res.params.baseline != "scalar" else "none")
    assert not queue[-1].small_step_from(res)
    assert not queue[-1].small_step_from(None)


def test_buffer_pool_never_hands_out_an_array_in_use():
    pool = ses.BufferPool()
    a = pool.take((2, 5))
    b = pool.take((2, 5))
    assert a is not b  # ``a`` is still held
    view, freed = b[1], id(b)
    del b
    c = pool.take((2, 5))
    assert c is not view.base and c is not a  # a view of it keeps it in use
    del view
    d = pool.take((2, 5))
    assert id(d) == freed and d is not a and d is not c  # the one freed is reused
    assert pool.take((3, 5)).shape == (3, 5)


@pytest.mark.parametrize("filt", [False, True])
def test_reused_buffers_give_the_same_fits_and_keep_shown_ones(s, filt):
    ids = [3, 5, 8]
    kept = []  # every result is kept: none may be overwritten by a later solve

    def moves(sess):
        sess.select(ids)
        sess.set_params(filter_enabled=filt)
        out = []
        for v in np.r_[np.geomspace(0.4, 0.7, 5), np.geomspace(0.7, 0.4, 5)]:
            sess.set_params(tau_decay=float(v))
            r = sess.result
            kept.append((r, [x.copy() for x in (r.fit, r.activity, r.baseline, r.trace)]))
            out.append(kept[-1][1])
        return out

    got = moves(s)
    fresh = ses.TuningSession(TuningParams(0.05, 0.5, FS, 0.05))
    fresh.set_source(s.source)
    fresh._buffers.take = lambda shape: np.empty(shape)  # fresh memory every time
    want = moves(fresh)
    for g, w in zip(got, want):
        for x, y in zip(g, w):
            np.testing.assert_array_equal(x, y)
    for r, copies in kept:
        for x, y in zip((r.fit, r.activity, r.baseline, r.trace), copies):
            np.testing.assert_array_equal(x, y)


def test_solver_writes_into_out():
    y = _traces(3, 400)
    want = solver_mod.run_deconvolution_full(y, FS, 0.05, 0.5, 0.05, baseline="drift")
    out = (np.empty_like(y), np.empty_like(y), np.empty_like(y))
    r = solver_mod.run_deconvolution_full(y, FS, 0.05, 0.5, 0.05, baseline="drift", out=out)
    assert r.activity is out[0] and r.reconvolution is out[2]
    for a, b in zip(r[:3], want[:3]):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="out must be"):
        solver_mod.run_deconvolution_full(y, FS, 0.05, 0.5, 0.05, baseline="scalar", out=out)


def test_live_dark_frames_are_the_raw_traces_and_read_once_per_selection(monkeypatch):
    """With the bandpass on, the tuner's result reads the leading dark frames of
    the raw traces, as Apply to all does (review rev36), and a slider move on the
    same ROIs reads them again from no trace."""
    import napari_catune.events as ev

    T = 1800
    t = np.arange(T) / FS
    y = 1.0 + 0.05 * np.random.default_rng(3).standard_normal((2, T)) + 4.0 * np.exp(-t / 0.8)
    y[0, :3] = 0.05
    sess = ses.TuningSession(TuningParams(0.05, 0.8, FS, 0.05, filter_enabled=True))
    sess.set_source(ses.build_source(y, roi_ids=[1, 2], fs=FS))
    reads = []
    real = ev.leading_dark_frames
    monkeypatch.setattr(ev, "leading_dark_frames", lambda *a: reads.append(a[0]) or real(*a))
    sess.select([1, 2])
    assert sess.result.dark_frames.tolist() == real(y, FS).tolist() == [3, 0]
    assert len(reads) == 1 and np.array_equal(reads[0], y[:, : reads[0].shape[1]])  # raw
    assert not np.array_equal(sess.result.trace[:, :100], y[:, :100])  # (fitted: band-passed)
    gen = ses.apply_job(y, np.array([1, 2]), sess.params)
    try:
        while True:
            next(gen)
    except StopIteration as e:
        b = e.value
    n = len(reads)
    sess.set_params(lam=0.1)
    assert len(reads) == n and sess.result.dark_frames.tolist() == [3, 0]
    sess.set_params(fs=FS * 1.01)
    assert len(reads) == n + 1
    assert b.features["event_rate_hz"].shape == (2,)
