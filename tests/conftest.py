"""Shared fixtures: napari-catune's persisted settings go to each test's own folder."""

import pytest


@pytest.fixture(autouse=True)
def _catune_settings(tmp_path_factory, monkeypatch):
    """Never read or write the user's napari-catune settings from a test."""
    path = tmp_path_factory.mktemp("catune-config") / "napari-catune.json"
    monkeypatch.setenv("NAPARI_CATUNE_SETTINGS", str(path))
    return path


@pytest.fixture(scope="session", autouse=True)
def _compiled_solver():
    """Load (or, on an empty numba cache, compile) the solver's live path in
    this process before any test, whatever tests are selected: the tuner and
    the CLI then take the compiled code as ready, and the tests that compare
    their results bit for bit with a library call see one solver.  (First
    use without a cache, when the NumPy solver answers until a compile
    subprocess is done, is tested on its own in test_first_use.py and
    test_widget_first_use.py, which force that state.)"""
    from napari_catune import solver

    solver.warm_up(live_only=True)
