"""Large inputs: the reader, the tuner's source build and Apply to all's
read-outs work a block of rows at a time (no float copy of a whole recording
per step), with the same values as on the whole array."""

import json

import numpy as np
import pytest

from napari_catune import _reader, estimate, session, traces
from napari_catune.params import TuningParams


def _recording(n=12, T=600, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.05, (n, T))
    x[:, ::40] += 1.0
    return x.astype(np.float32)


def test_reader_reads_blocks_of_rows_into_one_float64_array(tmp_path, monkeypatch):
    from napari_catune import sources

    tr = _recording()
    tr[3, 100] = np.nan  # a bad row: left out
    tr[5, 500:] = np.nan  # NaN padding: kept
    p = tmp_path / "tr.npy"
    np.save(p, tr)
    (tmp_path / "tr_metadata.json").write_text(json.dumps({"sampling_rate_hz": 30.0}))
    spans = []
    real = sources.read_spec_rows

    def spy(spec, a, b):
        spans.append(b - a)
        return real(spec, a, b)

    monkeypatch.setattr(sources, "read_spec_rows", spy)
    monkeypatch.setattr(_reader, "_READ_BLOCK", 3 * tr.shape[1], raising=False)
    (_, meta, _), = _reader.read_traces(str(p))
    cat = meta["metadata"]["catune"]
    assert spans and max(spans) <= 3  # never the whole file at once
    got = cat["traces"]
    assert got.dtype == np.float64 and got.flags.c_contiguous and got.flags.owndata
    keep = [i for i in range(tr.shape[0]) if i != 3]
    np.testing.assert_array_equal(got, tr[keep].astype(np.float64))
    assert list(cat["skipped_roi_ids"]) == [4]


def test_source_build_takes_the_read_outs_by_blocks_with_the_same_values(monkeypatch):
    tr = _recording(n=10, T=700).astype(np.float64)
    tr[2, 650:] = np.nan  # a padded row among the blocks
    whole = session.build_source(tr, fs=30.0)
    seen = []
    for mod, name in ((traces, "roi_snr"), (estimate, "noise_sigma")):
        real = getattr(mod, name)

        def spy(x, fs, _real=real):
            seen.append(np.atleast_2d(x).shape[0])
            return _real(x, fs)

        monkeypatch.setattr(mod, name, spy)
    monkeypatch.setattr(session, "ROW_BLOCK_SAMPLES", 3 * tr.shape[1], raising=False)
    src = session.build_source(tr, fs=30.0)
    assert seen and max(seen) <= 3
    assert src.traces is tr  # the float64 input is the source's traces, not a copy
    np.testing.assert_array_equal(src.snr, whole.snr)
    np.testing.assert_array_equal(src.noise, whole.noise)


@pytest.mark.parametrize("filt", [False, True])
def test_apply_read_outs_by_blocks_same_values(monkeypatch, filt):
    tr = _recording(n=8, T=500).astype(np.float64)
    tr[1, 450:] = np.nan
    p = TuningParams(tau_rise=0.05, tau_decay=0.5, fs=30.0, lam=0.01, filter_enabled=filt)

    def run():
        g = session.apply_job(tr, np.arange(1, 9), p, noise=np.full(8, 0.05))
        try:
            while True:
                next(g)
        except StopIteration as e:
            return e.value

    whole = run()
    seen = []
    real_r2, real_rate = session._r2, session.event_rate
    monkeypatch.setattr(session, "_r2", lambda y, f: seen.append(f.shape[0]) or real_r2(y, f))
    monkeypatch.setattr(session, "event_rate",
                        lambda a, fs, nz=None, dark=None: seen.append(a.shape[0])
                        or real_rate(a, fs, nz, dark))
    monkeypatch.setattr(session, "ROW_BLOCK_SAMPLES", 2 * tr.shape[1], raising=False)
    got = run()
    assert seen and max(seen) <= 2
    for k, v in whole.features.items():
        np.testing.assert_array_equal(got.features[k], v, err_msg=k)
