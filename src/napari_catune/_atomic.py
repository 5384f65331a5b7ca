"""Atomic file writes: a temporary file in the target folder, fsync, then rename.

``os.replace`` is atomic on POSIX and Windows when source and target share a
file system, which is why the temporary file lives beside the target.  On any
failure the temporary file is removed and an earlier file at ``path`` is left
exactly as it was.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_save_npy", "publish"]

# The umask can only be read by setting it; do that once, at import, rather
# than flipping it process-wide while other threads may create files.
_UMASK = os.umask(0)
os.umask(_UMASK)


def _fsync_dir(folder: Path) -> None:
    # makes the rename itself durable; not possible on every platform
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path, write) -> Path:
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(
            f"cannot write {path}: folder {folder} does not exist; create it first"
        )
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        publish(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def publish(tmp, path) -> None:
    """Make a finished temporary file (in the target's folder) the file at ``path``.

    Flushes it to disk, gives it ordinary permissions (mkstemp makes 0600
    files), renames it over ``path`` and makes the rename durable.  The
    caller removes ``tmp`` if this raises.
    """
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
    except OSError:
        pass
    os.replace(tmp, path)
    _fsync_dir(Path(path).parent if str(Path(path).parent) else Path("."))


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return the path."""
    data = bytes(data)
    return _atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8 by default); return the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_save_npy(path, array) -> Path:
    """Save ``array`` as a ``.npy`` file at exactly ``path``, atomically.

    Unlike ``np.save`` no ``.npy`` suffix is appended; object arrays are
    refused (they would need pickling to load).
    """
    array = np.asanyarray(array)
    if array.dtype.hasobject:
        raise ValueError(
            f"cannot save an array of dtype {array.dtype} as .npy without pickling; "
            "convert it to a numeric dtype first"
        )

    def write(fh):
        np.lib.format.write_array(fh, np.asarray(array), allow_pickle=False)

    return _atomic_write(path, write)
