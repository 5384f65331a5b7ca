"""Atomic file writes: a temporary file in the target folder, fsync, then rename.

``os.replace`` is atomic on POSIX and Windows when source and target share a
file system, which is why the temporary file lives beside the target.  On any
failure the temporary file is removed and an earlier file at ``path`` is left
exactly as it was.

What is at ``path`` is respected:

- a symlink is written through: its (final) target is replaced atomically,
  with the temporary file in the target's folder, and the link stays;
- an existing file keeps its permission bits (and, where allowed, its owner);
- anything that is not a regular file (a folder, a FIFO, a device such as
  ``/dev/null``, a socket) is refused with a ValueError; nothing is written.

Temporary files are named ``.{name}.catune-{pid}-{host}.*.tmp`` (see
:func:`temp_prefix`): a process killed before it could clean up (SIGKILL,
power loss) leaves one behind, and the next write of the same target on
the same host removes it once that pid no longer runs
(:func:`remove_stale_temps`).

A folder that refuses the temporary file (read-only file system, no
permission) raises :class:`FolderNotWritable` naming the target and its
folder, not the temporary file.

A caller that writes in a worker thread can watch its writes with
:func:`watched`: progress (bytes written) and a cancel that abandons the
file being written (its temporary file removed, an earlier file kept).
"""

from __future__ import annotations

import errno
import os
import re
import socket
import stat
import tempfile
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = [
    "atomic_write_bytes", "atomic_write_text", "atomic_save_npy", "publish", "resolve_target",
    "temp_prefix", "remove_stale_temps", "FolderNotWritable", "watched",
]

# The umask can only be read by setting it; do that once, at import, rather
# than flipping it process-wide while other threads may create files.
_UMASK = os.umask(0)
os.umask(_UMASK)


_TAG = "catune"
# room for the tag, pid, host and mkstemp's random part within 255 bytes
_NAME_MAX = 120


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def temp_prefix(target_name: str, key: str = "") -> str:
    """Prefix of this process's temporary files for ``target_name`` (for mkstemp).

    ``.{name}.catune-{pid}-{host}.[{key}.]``: the pid and host tell a later
    run whether the writer still runs.
    """
    part = f"{key}." if key else ""
    return f".{target_name[:_NAME_MAX]}.{_TAG}-{os.getpid()}-{_host()}.{part}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or a pid we cannot check): keep its files
    return True


def remove_stale_temps(target) -> list[tuple[Path, int, int]]:
    """Remove temporary files of ``target`` left by dead processes of this host.

    Only files named by :func:`temp_prefix` for this target, written on this
    host by a pid that no longer runs, and that are regular files, are
    removed.  Returns ``(path, pid, size in bytes)`` of each removed file.
    """
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    pattern = re.compile(
        r"\." + re.escape(target.name[:_NAME_MAX]) + r"\." + _TAG + r"-(\d+)-([A-Za-z0-9-]+)\."
    )
    host, me = _host(), os.getpid()
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if m is None or m.group(2) != host:
            continue
        pid = int(m.group(1))
        if pid == me or _pid_alive(pid):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append((Path(entry.path), pid, st.st_size))
    return removed


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


_KINDS = (
    (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def resolve_target(path) -> Path:
    """The regular file that writing ``path`` replaces.

    Symlinks are followed to their final target (which need not exist yet);
    its folder must exist.  Raises ValueError when something other than a
    regular file is there (folder, FIFO, device, socket) or the links loop,
    and FileNotFoundError when the folder is missing.
    """
    path = Path(path)
    target = Path(os.path.realpath(path)) if os.path.islink(path) else path
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise ValueError(f"cannot write {path}: {e.strerror}") from None
    via = f" (the target of the symlink {path})" if target != path else ""
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise ValueError(f"cannot write {path}: its symlinks loop; remove or fix the link")
        if not stat.S_ISREG(st.st_mode):
            kind = next((k for test, k in _KINDS if test(st.st_mode)), "not a regular file")
            raise ValueError(
                f"cannot write {target}{via}: it is {kind}, not a regular file; "
                "give the path of a regular file"
            )
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(
            f"cannot write {target}{via}: folder {folder} does not exist; create it first"
        )
    return target


class FolderNotWritable(PermissionError):
    """The target's folder refuses new files (read-only file system, no permission).

    ``errno``/``strerror`` are the system's; ``filename`` is the target the
    caller asked for, and the message names it and its folder (not the
    temporary file that could not be created).
    """

    def __str__(self) -> str:
        target = Path(self.filename)
        folder = target.parent if str(target.parent) else Path(".")
        return (f"cannot create {target.name} in {folder}: the folder is not writable "
                f"({self.strerror})")


_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}


def _folder_error(e: OSError, path) -> OSError:
    """``e`` (from creating the temporary file) told about ``path`` instead."""
    if e.errno in _NOT_WRITABLE:
        return FolderNotWritable(e.errno, e.strerror, str(path))
    return type(e)(e.errno, e.strerror, str(path))  # e.g. no space: errno kept for callers


_watch = threading.local()


@contextmanager
def watched(on_write, on_publish=None):
    """Watch this thread's atomic writes until the block ends.

    ``on_write(nbytes)`` is called for each chunk written through a file
    handle (``atomic_write_bytes``, ``atomic_save_npy``, npz...; numpy writes
    arrays in chunks of at most 16 MiB) and with 0 once a file is complete,
    just before it replaces the target (the only call for files written
    through a path, e.g. NWB).  It may raise (e.g. a cancel): that file's
    temporary file is removed and the target is left as it was, as for any
    failure.  ``on_publish(path)`` is called once a file is in place.  Other
    threads' writes are not watched.
    """
    before = getattr(_watch, "hooks", None)
    _watch.hooks = (on_write, on_publish)
    try:
        yield
    finally:
        _watch.hooks = before


def _hooks():
    return getattr(_watch, "hooks", None) or (None, None)


class _Watched:
    """A file handle whose writes are reported to ``on_write`` (which may raise)."""

    def __init__(self, fh, on_write):
        self._fh, self._on_write = fh, on_write

    def write(self, data):
        self._on_write(0)  # a cancel stops before the next chunk
        n = self._fh.write(data)
        self._on_write(len(memoryview(data).cast("B")) if n is None else n)
        return n

    def __getattr__(self, name):
        return getattr(self._fh, name)


def atomic_write_via_path(path, write_path, suffix: str = ".tmp") -> Path:
    """Atomic write for libraries that want a file name (h5py, pynwb).

    ``write_path(tmp)`` writes a temporary file in the target's folder (named
    as every temp file here, ending in ``suffix``); it then replaces
    ``path`` with the same checks and guarantees as :func:`atomic_write_bytes`
    (regular files only, through symlinks, mode kept, stale temps removed).
    """
    path = Path(path)
    target = resolve_target(path)
    folder = target.parent if str(target.parent) else Path(".")
    stale = remove_stale_temps(target)
    if stale:
        warnings.warn(
            f"removed {len(stale)} stale temporary file(s) of {target} left by "
            f"process(es) {', '.join(str(pid) for _, pid, _ in stale)} that no longer run",
            stacklevel=3,
        )
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target.name), suffix=suffix, dir=folder)
    except OSError as e:  # it names the temporary file the user never chose
        raise _folder_error(e, path) from None
    os.close(fd)
    on_write, on_publish = _hooks()
    try:
        write_path(tmp)
        if on_write is not None:
            on_write(0)  # the last moment to abandon this file
        publish(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if on_publish is not None:
        on_publish(path)
    return path


def _atomic_write(path, write) -> Path:
    def via_handle(tmp):
        on_write = _hooks()[0]
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_TRUNC), "wb") as fh:
            write(fh if on_write is None else _Watched(fh, on_write))

    return atomic_write_via_path(path, via_handle)


def publish(tmp, path) -> None:
    """Make a finished temporary file the file at ``path``.

    ``tmp`` must be in the folder of :func:`resolve_target` ``(path)``
    (``path``'s own folder unless it is a symlink).  Flushes it to disk,
    gives it the permission bits of the file it replaces (for a new file the
    ordinary ``0o666 & ~umask``; mkstemp makes 0600 files), renames it over
    the target and makes the rename durable.  The caller removes ``tmp`` if
    this raises.
    """
    target = resolve_target(path)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    try:
        old = os.stat(target)
    except FileNotFoundError:
        old = None
    try:
        if old is None:
            os.chmod(tmp, 0o666 & ~_UMASK)
        else:
            mine = os.stat(tmp)
            if (mine.st_uid, mine.st_gid) != (old.st_uid, old.st_gid):
                try:  # keep the owner where allowed (root, or a group we are in)
                    os.chown(tmp, old.st_uid, old.st_gid)
                except OSError:
                    pass
            # after chown, which may clear set-id bits
            os.chmod(tmp, stat.S_IMODE(old.st_mode))
    except OSError:
        pass
    os.replace(tmp, target)
    _fsync_dir(target.parent if str(target.parent) else Path("."))


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
