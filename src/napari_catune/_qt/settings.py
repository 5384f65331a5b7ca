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

Written atomically (a temporary file renamed over the old one), and only the
entry that changed: each write re-reads the file, under a lock
(``.napari-catune.json.lock`` beside it, where the system has ``fcntl``), and
replaces just its own key, so two tuners (two viewers, or two napari
processes) each keep what the other chose.  A file that
cannot be read or parsed, or a value of the wrong kind, is ignored with a
warning: the defaults are used and the next change rewrites the file.  When
napari runs without a settings file (``config_path`` None) nothing is stored.

No Qt here: the tuner reads and writes through :func:`load`.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from contextlib import contextmanager
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
#: how long a write waits for another process's lock on the file (s) before it
#: writes without it (a hung napari must not hang this one)
LOCK_WAIT_S = 2.0

try:
    import fcntl
except ImportError:  # Windows: the re-read right before the atomic replace only
    fcntl = None

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


class _Invalid(Exception):
    """A value a setting cannot take (raised as ValueError, out of the lock)."""


class Settings:
    """The settings of one file; ``set_*`` write it at once."""

    def __init__(self, path: Path | None):
        self.path = path
        self.data: dict = {}
        if path is not None:
            self._read()

    def _read(self) -> None:
        self.data = self._from_file(quiet=False)

    def _from_file(self, quiet: bool) -> dict:
        """The valid entries of the file as it is now ({} when missing or
        broken; with ``quiet`` False, a warning says what was ignored)."""
        def warn(msg):
            if not quiet:
                warnings.warn(msg, stacklevel=5)  # (load()'s caller)
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as e:
            warn(f"napari-catune settings {self.path} could not be read ({e}); "
                 "using the defaults")
            return {}
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        except ValueError as e:
            warn(f"napari-catune settings {self.path} are broken ({e}); ignored, "
                 "using the defaults (the next change rewrites the file)")
            return {}
        bad = [k for k, v in data.items() if not _valid(k, v)]
        if bad:
            warn(f"napari-catune settings {self.path}: ignored unknown or invalid "
                 f"entries {sorted(bad)}")
        return {k: v for k, v in data.items() if k not in bad}

    @contextmanager
    def _locked(self):
        """Held while a write re-reads and replaces the file: another process's
        write waits (up to LOCK_WAIT_S) instead of interleaving."""
        fd = None
        if fcntl is not None:
            lock = self.path.with_name(f".{self.path.name}.lock")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:  # read-only folder: the write below fails and says so
                fd = None
        if fd is not None:
            end = time.monotonic() + LOCK_WAIT_S
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > end:
                        log.warning("napari-catune settings %s: another process holds "
                                    "its lock; written without it", self.path)
                        break
                    time.sleep(0.01)
                except OSError:  # a file system without locks
                    break
        try:
            yield
        finally:
            if fd is not None:
                os.close(fd)  # (releases the lock)

    def _write(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n")

    def _set(self, key: str, value) -> None:
        """``key`` set to ``value`` here and in the file."""
        if not _valid(key, value):
            raise ValueError(f"setting {key!r} cannot be {value!r}")
        self._update(key, lambda _old: value)

    def _update(self, key: str, new) -> None:
        """``key`` set to ``new(its value in the file now)`` (None: unset), here
        and in the file; the file's other entries kept as they are there now
        (another tuner, in this napari or another, may have changed them)."""
        if self.path is None:
            value = new(self.data.get(key))
            if not _valid(key, value):
                raise ValueError(f"setting {key!r} cannot be {value!r}")
            self.data[key] = value
            return
        value = None
        try:
            with self._locked():
                fresh = self._from_file(quiet=True)
                value = new(fresh.get(key))
                if not _valid(key, value):
                    raise _Invalid
                changed = fresh.get(key) != value
                fresh[key] = value
                self.data = fresh
                if changed:
                    self._write(fresh)
        except _Invalid:
            raise ValueError(f"setting {key!r} cannot be {value!r}") from None
        except (OSError, ValueError) as e:  # read-only folder, a folder in the file's
            # place: settings are a convenience
            if value is not None:
                self.data[key] = value
            log.warning("napari-catune settings not saved to %s: %s", self.path, e)

    # ------------------------------------------------------------ values
    def folder(self, kind: str) -> str:
        """The last folder used for ``kind`` files, "" when unknown or gone."""
        f = self.data.get("folders", {}).get(kind, "")
        return f if f and os.path.isdir(f) else ""

    def set_folder_of(self, kind: str, path) -> None:
        """Remember the folder of ``path`` (a file chosen in a ``kind`` dialog)."""
        if kind not in FOLDER_KINDS:
            raise ValueError(f"folder kind must be one of {FOLDER_KINDS}, got {kind!r}")
        folder = os.path.dirname(os.path.abspath(os.fspath(path)))
        # (merged into the file's folders: another tuner's other kind kept)
        self._update("folders", lambda old: {**(old or {}), kind: folder})

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
