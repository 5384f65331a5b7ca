"""What the README says of File > Open / drag-and-drop (audit 39 item 6): for a .npy napari
offers two readers, "CaTune" (the name to pick) and "napari builtins"; the README says to
pick CaTune, with napari's remember option, and that the settings variable names a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_open_npy_offers_catune_and_napari_builtins(make_napari_viewer, tmp_path):
    from napari.errors import MultipleReaderError

    path = tmp_path / "traces.npy"
    np.save(path, np.random.default_rng(0).normal(size=(3, 200)))
    viewer = make_napari_viewer()
    with pytest.raises(MultipleReaderError) as err:
        viewer.open(str(path), plugin=None)  # what File > Open and a drop resolve
    text = str(err.value)
    assert "CaTune" in text and "napari builtins" in text


def test_readme_says_which_reader_to_pick_and_what_the_settings_variable_names():
    assert "Choose reader" in README and "pick **CaTune**" in README
    assert "Remember this choice" in README and "Preferences ▸ Plugins" in README
    assert "`NAPARI_CATUNE_SETTINGS` names" in README and "not a folder" in README
