"""Saving a parameter file whose baseline calab ignores says so (audit finding 6)."""

from __future__ import annotations

import json

import numpy as np

from _synth import calcium_traces  # noqa: E402
from napari_catune import cli

FS, TAU_R, TAU_D = 20.0, 0.05, 0.4


def _traces(n=4, T=300):
    return 100.0 + 20.0 * calcium_traces(n, T, fs=FS, tau_r=TAU_R, tau_d=TAU_D, seed=2)


def test_cli_estimate_saving_a_drift_baseline_says_what_calab_does(tmp_path, capsys):
    """Audit finding 6: calab ignores formulation.baseline; the saved file's note says so."""
    src = tmp_path / "tr.npy"
    np.save(src, _traces(n=6, T=600))
    out = tmp_path / "p.json"
    assert cli.main(["estimate", str(src), "--fs", str(FS), "-o", str(out)]) == 0
    assert json.loads(out.read_text())["formulation"]["baseline"] == "drift"
    assert 'calab 0.3 ignores formulation.baseline="drift"' in capsys.readouterr().out
    assert cli.main(["estimate", str(src), "--fs", str(FS), "--baseline", "rolling",
                     "-o", str(out)]) == 0
    assert "calab" not in capsys.readouterr().out



def test_calab_note_does_not_promise_a_direction():
    """Audit 39 item 1: on raw suite2p F calab gives LESS activity than a drift file's
    (0.61-0.92x), so the note says the activity differs either way and how to get
    calab's numbers, not that calab gives "more"."""
    from napari_catune.params import TuningParams, calab_note

    p = TuningParams(fs=FS, tau_rise=TAU_R, tau_decay=TAU_D, lam=0.5, baseline="drift")
    note = calab_note(p)
    assert "more of it" not in note
    assert "more or less" in note and "-39 %" in note and "+242 %" in note
    assert 'save with baseline "rolling"' in note
    assert calab_note(p.replace(baseline="rolling")) is None
