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

Temporary files are named ``.{name}.catune-{pid}-{host}.[{key}.]@{owner}.*.tmp``
(see :func:`temp_prefix`; ``owner`` is the boot, pid namespace and start time
of the writing process): a process killed before it could clean up
(SIGKILL, power loss) leaves one behind, and the next write into the same
folder on the same host removes it once its writer is gone -- that pid no
longer runs, or runs a process started later (the pid reused), or the
machine has rebooted since (the same pid namespace, another boot id:
:func:`remove_stale_temps`).  A live writer's files, and those of another
host or pid namespace (a container sharing the folder, or another machine
with the same host name whose namespace differs), are never removed.

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


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip().replace("-", "")[:8] or None
    except OSError:
        return None  # not Linux: the pid alone tells


def _pid_ns(pid="self") -> int | None:
    try:  # "pid:[4026531836]": pids mean the same process only within one namespace
        return int(os.readlink(f"/proc/{pid}/ns/pid").split("[", 1)[1].rstrip("]"))
    except (OSError, IndexError, ValueError):
        return None


def _start_ticks(pid) -> int | None:
    """When process ``pid`` started (clock ticks since boot; Linux), None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read()
        return int(text[text.rindex(b")") + 2:].split()[19])  # field 22, after "(comm)"
    except (OSError, ValueError, IndexError):
        return None


def _owner_token() -> str:
    """``@{boot}-{pid namespace}-{start}`` (hex) of this process, or "" off Linux."""
    boot, ns, start = _boot_id(), _pid_ns(), _start_ticks("self")
    if boot is None or ns is None or start is None:
        return ""
    return f"@{boot}-{ns:x}-{start:x}"


_OWNER_OF: tuple[int, str] | None = None  # (pid, its token)


def _owner(pid: int | None = None) -> str:
    """The owner token of this process (:func:`_owner_token`), for ``pid``
    (``os.getpid()``).  Cached per pid: a child made by ``fork`` (e.g.
    multiprocessing's workers) gets its own start time, so the pid and the
    token in its temporary files' names describe the same process."""
    global _OWNER_OF
    pid = os.getpid() if pid is None else pid
    cached = _OWNER_OF
    if cached is None or cached[0] != pid:
        cached = _OWNER_OF = (pid, _owner_token())
    return cached[1]


def _proc_is_ours() -> bool:
    """False when /proc describes another pid namespace than ours (a pid
    namespace made without remounting /proc, e.g. ``unshare -p -f`` without
    ``--mount-proc``): the pids we see are then not the pids under /proc, and
    /proc/{pid}/stat tells nothing about our processes."""
    try:
        return int(os.readlink("/proc/self")) == os.getpid()
    except (OSError, ValueError):
        return True  # no /proc (not Linux): nothing there to mislead us


def temp_prefix(target_name: str, key: str = "") -> str:
    """Prefix of this process's temporary files for ``target_name`` (for mkstemp).

    ``.{name}.catune-{pid}-{host}.[{key}.][@{boot}-{pidns}-{start}.]``: the
    pid, host and owner token tell a later run whether the writer still runs.
    """
    pid = os.getpid()
    token = _owner(pid)
    part = f"{key}." if key else ""
    owner = f"{token}." if token else ""
    return f".{target_name[:_NAME_MAX]}.{_TAG}-{pid}-{_host()}.{part}{owner}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or a pid we cannot check): keep its files
    return True


def _owner_gone(pid: int, boot: str | None, ns: str | None, start: str | None) -> bool:
    """True only when the process that named a temporary file surely no longer
    runs (same host name checked by the caller).  When in doubt: False (keep)."""
    if boot is not None:
        mine = _owner()
        if not mine:
            return False  # we cannot read our own boot / namespace: nothing to compare with
        my_boot, my_ns, _ = mine[1:].split("-")
        if ns != my_ns:
            # another pid namespace (a container), or another machine with the same
            # host name (after a reboot the namespace of a container differs too;
            # its leftovers are kept, a lost hidden file rather than a lost output)
            return False
        if boot != my_boot:
            return True  # the same namespace, written before this machine's last boot
    if not _proc_is_ours():
        return False  # /proc is another namespace's: its pids and start times are not ours
    if not _pid_alive(pid):
        return True
    if start is not None:
        now = _start_ticks(pid)
        return now is not None and now != int(start, 16)  # the pid reused by a later process
    return False


#: a temporary file name of :func:`temp_prefix` (any target): name, pid, host, the owner token
_ANY = re.compile(
    r"\.(?P<name>.+)\." + _TAG + r"-(?P<pid>\d+)-(?P<host>[A-Za-z0-9-]+)\.(?:\w+\.)?"
    r"(?:@(?P<boot>[0-9a-f]+)-(?P<ns>[0-9a-f]+)-(?P<start>[0-9a-f]+)\.)?")


_TEMP_END = re.compile(r"\.tmp(\.\w+)?$|\.probe$")


def remove_stale_temps(target, *, folder_wide: bool = False) -> list[tuple[Path, int, int]]:
    """Remove temporary files of ``target`` left by processes of this host
    that are gone (killed before they could clean up).

    Only regular files named by :func:`temp_prefix` for this target, written
    on this host by a process that no longer runs (:func:`_owner_gone`: the
    pid is free, or reused by a later process, or the machine rebooted), are
    removed.  ``folder_wide``: those of every target in ``target``'s folder
    (only ``*.tmp*``/``*.probe`` files).  Returns ``(path, pid, size in
    bytes)`` of each removed file.
    """
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    host, me = _host(), os.getpid()
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _ANY.match(entry.name)
        if m is None or m.group("host") != host:
            continue
        if folder_wide:
            if not _TEMP_END.search(entry.name):
                continue
        elif m.group("name") != target.name[:_NAME_MAX]:
            continue
        pid = int(m.group("pid"))
        if pid == me or not _owner_gone(pid, m.group("boot"), m.group("ns"), m.group("start")):
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
    stale = remove_stale_temps(target, folder_wide=True)
    if stale:
        warnings.warn(
            f"removed {len(stale)} stale temporary file(s) in {folder} ("
            + ", ".join(p.name for p, _, _ in stale[:3]) + (", ..." if len(stale) > 3 else "")
            + f") left by process(es) {', '.join(sorted({str(pid) for _, pid, _ in stale}))} "
            "that no longer run",
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
