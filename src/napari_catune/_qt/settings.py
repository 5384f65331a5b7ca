"""napari-catune's own settings, kept across napari restarts.

A small JSON file, ``napari-catune.json``, in the folder of napari's own
settings file (napari's per-environment user config folder, which honours
``NAPARI_CONFIG``; napari 0.9's plugin settings use the same folder), or at
``$NAPARI_CATUNE_SETTINGS`` when that is set.  It holds:

- ``folders``: the last folder of each file dialog (``params`` for Save/Load
  parameters, ``events`` for Events CSV);
- ``kernel_mode``: ``"tau"`` (tau rise / decay) or ``"shape"`` (peak / FWHM);
- ``baseline``: the baseline mode new sessions start with (the last one chosen);
- ``overlay``: what the 'CaTune activity' layer shows (``activity`` or ``fit``);
- ``fold``: how the tuner shares its height (fold.py): ``shown`` (bool, the
  plots and ROI list shown or hidden by the user), ``top`` (int px, the
  controls' height after a splitter drag) with ``total`` (int px, the
  splitter's height then: in a window of another height the drag is only
  kept as far as it leaves Estimate ... Apply in view).

Written atomically (a temporary file renamed over the old one).  A file that
cannot be read or parsed, or a value of the wrong kind, is ignored with a
warning: the defaults are used and the next change rewrites the file.  When
napari runs without a settings file (``config_path`` None) nothing is stored.

No Qt here: the tuner reads and writes through :func:`load`.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

from .._atomic import atomic_write_text
from ..baseline import BASELINE_MODES

FILE_NAME = "napari-catune.json"
ENV = "NAPARI_CATUNE_SETTINGS"
KERNEL_MODES = ("tau", "shape")
OVERLAYS = ("activity", "fit")
FOLDER_KINDS = ("params", "events")
FOLD_KEYS = ("shown", "top", "total")
#: the largest splitter height (px) taken from a settings file: no screen is taller
_MAX_PX = 100_000

log = logging.getLogger("napari_catune.settings")


def settings_path() -> Path | None:
    """Where the settings live, or None (napari keeps no settings file)."""
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    try:
        from napari.settings import get_settings

        cfg = get_settings().config_path
    except Exception:  # noqa: BLE001 - no napari settings: nothing persisted
        return None
    return None if cfg is None else Path(cfg).parent / FILE_NAME


def _valid(key: str, value) -> bool:
    if key == "kernel_mode":
        return value in KERNEL_MODES
    if key == "baseline":
        return value in BASELINE_MODES
    if key == "overlay":
        return value in OVERLAYS
    if key == "fold":
        return _valid_fold(value)
    if key == "folders":
        return isinstance(value, dict) and all(
            k in FOLDER_KINDS and isinstance(v, str) for k, v in value.items())
    return False


def _px(v) -> bool:
    return type(v) is int and 0 < v <= _MAX_PX


def _valid_fold(v) -> bool:
    """``{"shown": bool, "top": px, "total": px}``, each part optional but a
    ``top`` only with its ``total`` and never taller than it."""
    if not isinstance(v, dict) or not set(v) <= set(FOLD_KEYS):
        return False
    if "shown" in v and not isinstance(v["shown"], bool):
        return False
    if ("top" in v) != ("total" in v):
        return False
    return "top" not in v or (_px(v["top"]) and _px(v["total"]) and v["top"] <= v["total"])


class Settings:
    """The settings of one file; ``set_*`` write it at once."""

    def __init__(self, path: Path | None):
        self.path = path
        self.data: dict = {}
        if path is not None:
            self._read()

    def _read(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError) as e:
            warnings.warn(f"napari-catune settings {self.path} could not be read ({e}); "
                          "using the defaults", stacklevel=3)
            return
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        except ValueError as e:
            warnings.warn(f"napari-catune settings {self.path} are broken ({e}); ignored, "
                          "using the defaults (the next change rewrites the file)", stacklevel=3)
            return
        bad = [k for k, v in data.items() if not _valid(k, v)]
        if bad:
            warnings.warn(f"napari-catune settings {self.path}: ignored unknown or invalid "
                          f"entries {sorted(bad)}", stacklevel=3)
        self.data = {k: v for k, v in data.items() if k not in bad}

    def _write(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")
        except (OSError, ValueError) as e:  # read-only folder, a folder in the file's
            # place: settings are a convenience
            log.warning("napari-catune settings not saved to %s: %s", self.path, e)

    def _set(self, key: str, value) -> None:
        if not _valid(key, value):
            raise ValueError(f"setting {key!r} cannot be {value!r}")
        if self.data.get(key) != value:
            self.data[key] = value
            self._write()

    # ------------------------------------------------------------ values
    def folder(self, kind: str) -> str:
        """The last folder used for ``kind`` files, "" when unknown or gone."""
        f = self.data.get("folders", {}).get(kind, "")
        return f if f and os.path.isdir(f) else ""

    def set_folder_of(self, kind: str, path) -> None:
        """Remember the folder of ``path`` (a file chosen in a ``kind`` dialog)."""
        if kind not in FOLDER_KINDS:
            raise ValueError(f"folder kind must be one of {FOLDER_KINDS}, got {kind!r}")
        folders = dict(self.data.get("folders", {}))
        folders[kind] = os.path.dirname(os.path.abspath(os.fspath(path)))
        self._set("folders", folders)

    @property
    def kernel_mode(self) -> str:
        return self.data.get("kernel_mode", "tau")

    @kernel_mode.setter
    def kernel_mode(self, value: str) -> None:
        self._set("kernel_mode", value)

    @property
    def baseline(self) -> str | None:
        """The baseline mode of new sessions; None: the built-in default."""
        return self.data.get("baseline")

    @baseline.setter
    def baseline(self, value: str) -> None:
        self._set("baseline", str(value))

    @property
    def overlay(self) -> str:
        return self.data.get("overlay", "activity")

    @overlay.setter
    def overlay(self, value: str) -> None:
        self._set("overlay", value)

    @property
    def fold(self) -> dict:
        """How the tuner shared its height last (see ``fold`` above); {} when unknown."""
        return dict(self.data.get("fold", {}))

    @fold.setter
    def fold(self, value: dict) -> None:
        self._set("fold", dict(value))


def load() -> Settings:
    """The settings as stored now (read afresh: another napari may have written them)."""
    return Settings(settings_path())
