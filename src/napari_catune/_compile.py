"""``python -m napari_catune._compile``: compile the solver's machine code
into numba's on-disk cache (a subprocess of :func:`napari_catune.solver.start_background_compile`).

Prints ``live`` once the tuner's live path (the exact solver, its warm
start, the read-outs) is compiled and cached, then compiles the rest
(FISTA, the rolling baseline, the stand-alone KKT check and objective) and
prints ``all``.  Exit status 0 on success.

One child per numba cache directory at a time: a child holds an OS lock
(``flock``) on :data:`LOCK_NAME` in the cache directory for its lifetime; a
second child (another CLI run, another napari, started meanwhile) finds it
held, prints ``busy`` and exits at once (exit status 0), before importing
numba; its parent waits for the lock in a thread (the NumPy solver answering
meanwhile) and then loads what the first child cached.  Four quick CLI runs
on an empty cache left four compiling children of 180-300 MB each before.
"""

from __future__ import annotations

import os
import sys

# below the user's process in the scheduler: the first fits (the NumPy
# solver, on both cores) come first; an idle machine still compiles at
# full speed
NICE = 10
# Linux's autogroups (sched(7)): with them on, the CPU is shared between
# sessions first and a process's nice counts only within its own session.
# The child leads a session of its own (it outlives a short CLI run), so its
# nice alone left it one core of two against the user's whole process; the
# session's nice (/proc/self/autogroup) puts it below it too
_AUTOGROUP = "/proc/self/autogroup"


def _cache_dir(src_file: str) -> str:
    """The directory numba caches ``src_file``'s functions in: its first
    usable locator (``numba.core.caching``): ``NUMBA_CACHE_DIR`` when set, the
    source's ``__pycache__`` when writable, else the user-wide cache (Linux)."""
    import hashlib

    subdir = os.path.dirname(os.path.abspath(src_file))
    sub = "_".join([os.path.split(subdir)[-1], hashlib.sha1(subdir.encode()).hexdigest()])
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.path.join(os.environ["NUMBA_CACHE_DIR"], sub)
    tree = os.path.join(subdir, "__pycache__")
    if os.access(tree if os.path.isdir(tree) else subdir, os.W_OK):
        return tree
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "numba", sub)


def cache_index_absent() -> bool:
    """True when numba's cache surely holds no index for the live solver
    (``pdas_rows``): no such file where numba would look.  Told without
    importing numba (~0.3 s), so a first use after an install starts the
    NumPy solver at once.  False means "maybe": ask numba.  A wrong True only
    starts a compile child that finds the cache.  Linux only (the user-wide
    cache directory elsewhere is numba's appdirs' to tell)."""
    import glob

    if not sys.platform.startswith("linux"):
        return False
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_numba_solvers.py")
    pattern = "_numba_solvers.pdas_rows-*.py%d%d*.nbi" % sys.version_info[:2]
    try:
        return not glob.glob(os.path.join(glob.escape(_cache_dir(src)), pattern))
    except (OSError, ValueError):
        return False


#: the lock file, in the numba cache directory of the solver's code
LOCK_NAME = "catune-compile.lock"
#: what a child prints when another one compiles into the same cache
BUSY = "busy"


def lock_path() -> str:
    """The compile lock's file: in the directory numba caches the solver in."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_numba_solvers.py")
    return os.path.join(_cache_dir(src), LOCK_NAME)


def try_lock():
    """Take the compile lock without waiting: its open file descriptor (the
    lock lasts until it is closed or the process ends), None when another
    process holds it, or -1 when no lock can be had here (no ``fcntl``, a
    cache directory that cannot be made or written: the compile goes on
    unlocked, as before; it fails there anyway if the cache is unwritable)."""
    try:
        import fcntl
    except ImportError:  # (Windows)
        return -1
    path = lock_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:  # a file system without flock
        os.close(fd)
        return -1
    return fd


def wait_unlocked() -> None:
    """Wait until no process holds the compile lock (the GIL is released
    while waiting); at once if it cannot be told."""
    try:
        import fcntl

        fd = os.open(lock_path(), os.O_RDONLY)
    except (ImportError, OSError):
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # blocks while a child holds LOCK_EX
    except OSError:
        pass
    finally:
        os.close(fd)  # (releases it at once)


def _say(word: str) -> None:
    try:
        print(word, flush=True)
    except (BrokenPipeError, OSError):
        pass  # the parent is gone: go on filling the cache for the next start


def _autogroup_nice(nice: int) -> bool:
    """Set this session's autogroup nice (Linux; raising it needs no
    privilege, but the kernel takes one change per 0.1 s from all processes
    without CAP_SYS_ADMIN: EAGAIN then, tried again).  False if not set (no
    autogroups: the process's nice is the one that counts then)."""
    import time

    for _ in range(5):
        try:
            with open(_AUTOGROUP, "w") as f:
                f.write(str(nice))
            return True
        except BlockingIOError:  # EAGAIN: another process's change within 0.1 s
            time.sleep(0.1)
        except (OSError, ValueError):
            return False
    return False


def main() -> int:
    lock = try_lock()  # before anything else: a second child costs ~20 MB for a moment
    if lock is None:
        _say(BUSY)
        return 0
    try:
        return _compile()
    finally:
        if lock >= 0:
            os.close(lock)


def _compile() -> int:
    if hasattr(os, "nice"):
        try:
            os.nice(NICE)
        except OSError:
            pass
    if sys.platform.startswith("linux") and os.getsid(0) == os.getpid():
        # (only as a session's leader: the autogroup is then this process's
        # own, from its setsid; run from a shell it would be the shell's)
        _autogroup_nice(NICE)
    from napari_catune import solver

    solver._warm_up(live_only=True)
    _say("live")
    solver._warm_up()
    _say("all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
