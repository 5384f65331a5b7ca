"""Shared fixtures: napari-catune's persisted settings go to each test's own folder."""

import pytest


@pytest.fixture(autouse=True)
def _catune_settings(tmp_path_factory, monkeypatch):
    """Never read or write the user's napari-catune settings from a test."""
    path = tmp_path_factory.mktemp("catune-config") / "napari-catune.json"
    monkeypatch.setenv("NAPARI_CATUNE_SETTINGS", str(path))
    return path
