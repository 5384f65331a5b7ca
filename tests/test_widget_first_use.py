"""The tuner on first use (issue 12): while the solver compiles in the
background the live fits come from the NumPy solver, and the status says so."""

from __future__ import annotations

import numpy as np

import napari_catune._numba_solvers as ns
import napari_catune._numpy_solver as nps
import napari_catune.solver as solver_mod

from _widgets import (  # noqa: F401 - fixtures
    assert_matches_core, drag, notes, open_tuner, plotted, viewer_with_recording, wait,
)


def test_fits_are_shown_while_the_solver_compiles(make_napari_viewer, qtbot, notes,
                                                  monkeypatch):
    numpy_calls = []
    real = nps.solve_rows

    def spy(y, *a, **k):
        numpy_calls.append(y.shape)
        return real(y, *a, **k)

    monkeypatch.setattr(nps, "solve_rows", spy)
    compiled_calls = []
    real_pdas = ns.pdas_rows
    monkeypatch.setattr(ns, "pdas_rows",
                        lambda *a: compiled_calls.append(1) or real_pdas(*a))
    # a compile pending in the background (as start_background_compile leaves it)
    monkeypatch.setattr(solver_mod, "_compile_state", "subprocess")
    try:
        viewer, _, means = viewer_with_recording(make_napari_viewer, show=True)
        w = open_tuner(viewer)
        assert w.status.text().startswith("First use: compiling the solver in the background")
        assert "NumPy solver" in w.status.text()
        w.select_rois([5, 12])
        wait(qtbot, w)
        assert numpy_calls and not compiled_calls
        fit0, act0 = plotted(w)
        assert np.isfinite(fit0).all() and act0.max() > 0
        # the message stays while the NumPy solver answers
        drag(w, "tau_decay", 0.7)
        wait(qtbot, w)
        assert w.status.text().startswith("First use: compiling")
        assert not compiled_calls
        n_numpy = len(numpy_calls)
        # the compile is over: the next move is solved by the compiled code
        solver_mod._set_state("ready")
        drag(w, "tau_decay", 0.5)
        wait(qtbot, w)
        assert compiled_calls and len(numpy_calls) == n_numpy
        assert w.status.text() == ""
        monkeypatch.setattr(nps, "solve_rows", real)
        assert_matches_core(w, means, [5, 12])
        assert not notes["error"]
    finally:
        solver_mod._compile_state = None
