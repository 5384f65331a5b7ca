"""A sidecar that records its rate under two keys (round 40, helper left40):
one rate written twice (``sampling_rate_hz`` 30 beside ``fps`` 29.97, NTSC)
is read as one -- ``sampling_rate_hz`` when it is there, else a period key,
else the first key in the file -- and said; a real disagreement is refused
naming the keys and what to do."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_catune.sources import SourceError, open_movie, open_traces

from test_cli_inputs import _error, _params, _run  # noqa: F401 - shared helpers
from test_cli_out39 import _traces


@pytest.mark.parametrize("meta,fs,key,why", [
    ({"sampling_rate_hz": 30, "fps": 29.97}, 30.0, "sampling_rate_hz", "the canonical key"),
    ({"fps": 30.0, "sampling_rate_hz": 29.97}, 29.97, "sampling_rate_hz", "the canonical key"),
    ({"sampling_rate_hz": 30.0, "frame_period_ms": 33.3667}, 30.0, "sampling_rate_hz",
     "the canonical key"),
    # no sampling_rate_hz: a period, whatever its digits (dt = 1/30 beside fps 29.97)
    ({"fps": 29.97, "dt": 1 / 30}, 30.0, "dt", "a time between frames"),
    ({"fps": 29.9, "frame_period_ms": 33.4}, 1000 / 33.4, "frame_period_ms",
     "a time between frames"),
    # neither: the first key in the file
    ({"fs": 30.048, "fps": 30}, 30.048, "fs", "the first in the file"),
    ({"fps": 30, "fs": 30.048}, 30.0, "fps", "the first in the file"),
    ({"fps": 29.97, "fr": 30.0, "fs": 30.03}, 29.97, "fps", "the first in the file"),
])
def test_keys_within_the_tolerance_are_one_rate_and_the_note_says_which(tmp_path, meta, fs, key,
                                                                         why):
    npy, _ = _traces(tmp_path, meta)
    src = open_traces(npy)
    assert src.fs == pytest.approx(fs, rel=1e-12)
    note = next(n for n in src.notes if "records one sampling rate under" in n)
    count = {2: "two", 3: "three"}[len(meta)]
    assert f"under {count} keys" in note and f"from {key} is used, {why}" in note
    assert all(f"{k} = {v!r}" in note for k, v in meta.items())
    assert "precise" not in note and "twice" not in note


def test_ntsc_movie_sidecar_is_read_and_said(tmp_path, caplog):
    np.save(tmp_path / "mov.npy", np.zeros((10, 8, 8), np.float32))
    (tmp_path / "mov_metadata.json").write_text(json.dumps({"sampling_rate_hz": 30, "fps": 29.97}))
    movie = open_movie(tmp_path / "mov.npy")
    assert movie.fs == 30.0
    assert any("fps = 29.97" in n and "from sampling_rate_hz" in n for n in movie.notes)


def test_cli_info_and_deconvolve_say_which_key_was_used(capsys, tmp_path):
    npy, _ = _traces(tmp_path, {"sampling_rate_hz": 30, "fps": 29.97})
    code, out, err = _run(capsys, "info", npy)
    assert code == 0, err
    assert "30 Hz from sampling_rate_hz is used, the canonical key" in out
    # parameters tuned at the rate used (30 Hz): accepted, the note printed
    code, _, err = _run(capsys, "deconvolve", npy, "--params", _params(tmp_path / "p.json", 30.0),
                        "-o", tmp_path / "a.npz")
    assert code == 0, err
    assert "from sampling_rate_hz is used" in err
    with np.load(tmp_path / "a.npz") as z:
        assert float(z["fs"]) == 30.0
    # tuned at the other key's 29.97: the mismatch names both keys
    code, _, err = _run(capsys, "deconvolve", npy, "--params",
                        _params(tmp_path / "q.json", 29.97), "-o", tmp_path / "b.npz")
    assert code == 2
    line = _error(err)
    assert "sampling rate mismatch" in line and "sampling_rate_hz = 30 and fps = 29.97" in line


@pytest.mark.parametrize("meta", [{"sampling_rate_hz": 30.0, "fps": 29.7},  # 1 %
                                  {"sampling_rate_hz": 30.0, "fs": 31.25},
                                  {"fps": 30.0, "frame_period_ms": 50.0}])
def test_real_disagreements_are_still_refused(tmp_path, meta):
    npy, _ = _traces(tmp_path, meta)
    with pytest.raises(SourceError) as e:
        open_traces(npy)
    msg = str(e.value)
    assert "two sampling rates" in msg and "keep the right one" in msg
    assert all(f"{k} = " in msg for k in meta)


def test_the_tolerance_is_half_a_percent():
    from napari_catune.sources import SIDECAR_FS_REL_TOL

    assert SIDECAR_FS_REL_TOL == 5e-3
    assert 30 / 29.97 - 1 < SIDECAR_FS_REL_TOL < 30 / 29.7 - 1


def test_refusals_print_the_percentage_as_people_write_it(tmp_path):
    npy, _ = _traces(tmp_path, {"sampling_rate_hz": 15, "fps": 30})
    with pytest.raises(SourceError) as e:
        open_traces(npy)
    assert "two sampling rates 100 % apart (sampling_rate_hz = 15, fps = 30)" in str(e.value)
    assert "e+" not in str(e.value)
