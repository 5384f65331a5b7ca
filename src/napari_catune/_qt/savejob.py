"""Save CaTune results in a napari worker: the window stays responsive.

:func:`start` runs the write of *File > IO Utilities > Save CaTune
results...* (``_writer.save_results_dialog``, which has asked its questions
and taken what to write) in a napari worker thread, with a progress bar and
Cancel in napari's activity panel (``cancelable_progress``): in MiB for
``.npz``/``.npy``, indeterminate for ``.csv``/``.nwb``, whose size is not
known ahead.  Files are written atomically (``_atomic``): a cancel or a
failure leaves no temporary file, and a file being replaced stays as it was.
A cancel stops ``.npz``/``.npy``/``.csv`` before their next chunk (``.nwb``
once written, before it replaces anything); it comes too late once the
results file is in place (its small sidecars are then written too).

One save at a time: a second one is refused (by the dialog) while one runs,
rather than queued: it would compete for the disk and hold a second copy of
the results' references, and a queued save would write what the layer held
when it was asked for, which the user may have changed since.

Closing the viewer cancels the save, as napari cancels its workers then
(a user closing the window is first asked, the save named among napari's
running tasks): the file is cleanly abandoned, and the write ends before
interpreter exit (:func:`_wait_at_exit`), so no temporary file is left.
"""

from __future__ import annotations

import atexit
import threading
from pathlib import Path

from napari_catune import _atomic

_MIB = 1 << 20
_running: SaveJob | None = None


class SaveCancelled(Exception):
    """The user cancelled the save before the results file was in place."""


class SaveJob:
    """One running save: its path, the files written, how it ended."""

    def __init__(self, path: str, total: int):
        self.path = str(path)
        self.total = int(total)  # bytes expected (0: not known)
        self.written: list[str] = []
        self.error: BaseException | None = None
        self.cancelled = False  # it ended without writing, on a cancel
        self.thread: threading.Thread | None = None  # the thread that wrote
        self.bytes = 0
        self.in_place = False  # the results file replaced the target
        self._cancel = threading.Event()
        self._aborted = lambda: False  # napari asked its workers to stop (viewer closed)
        self._ended = threading.Event()  # the write ended (the worker thread's side)
        self._done = False  # and the GUI was told (message shown, progress closed)

    def cancel(self) -> None:
        self._cancel.set()

    def done(self) -> bool:
        return self._done

    def wait(self, timeout: float | None = None) -> bool:
        """Wait (any thread) until the write itself ended; True if it did."""
        return self._ended.wait(timeout)

    # the worker thread's side
    def _on_write(self, n: int) -> None:
        self.bytes += n
        if (self._cancel.is_set() or self._aborted()) and not self.in_place:
            raise SaveCancelled

    def _on_publish(self, path) -> None:
        self.in_place = True  # the sidecars are written whatever comes

    def _run(self, write):
        self.thread = threading.current_thread()
        try:
            with _atomic.watched(self._on_write, self._on_publish):
                self.written = list(write())
                return self.written
        finally:
            self._ended.set()


class _Write:
    """The worker's function; napari lists it by this name among the running
    tasks when the window is closed."""

    def __init__(self, job: SaveJob, write, name: str):
        self.job, self.write, self.name = job, write, name

    def __call__(self):
        return self.job._run(self.write)

    def __repr__(self) -> str:
        return f"saving CaTune results to {self.name}"


def _advice(e: BaseException) -> str:
    import errno

    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return "Free some space (or choose another disk), then save again."
    if isinstance(e, OSError):
        return "Choose a folder you can write to, then save again."
    if str(e).startswith("cannot write"):  # not a regular file there (a folder...)
        return "Choose another file name, then save again."
    return "Run 'Apply to all ROIs' again, then save again."


def running() -> SaveJob | None:
    """The save under way, if any."""
    return _running


def start(path: str, write, total: int = 0) -> SaveJob:
    """Run ``write()`` (returning the files written) in a worker; show its
    progress and the outcome.  ``total``: bytes expected, 0 if not known."""
    global _running
    from napari.utils import cancelable_progress, notifications
    from qtpy.QtCore import QTimer

    from napari_catune._qt.jobs import worker

    job = SaveJob(path, total)
    name = Path(path).name
    # a short read-out ("3/6 MiB"): the activity panel's row keeps room for Cancel
    pbar = cancelable_progress(total=-(-job.total // _MIB), desc=f"Saving {name}",
                               bar_format="{n_fmt}/{total_fmt} MiB")
    timer = QTimer()  # no parent: lives on if the viewer closes
    timer.setInterval(100)

    def poll():
        if pbar.is_canceled:
            job.cancel()
        if job.total and not pbar.disable:  # (closed with the viewer's activity panel)
            done = min(job.bytes, job.total) // _MIB
            if done > pbar.n:
                pbar.update(done - pbar.n)

    def returned(written):
        late = " (the cancel came after the file was in place)" if job._cancel.is_set() else ""
        notifications.show_info("Saved CaTune results: "
                                + ", ".join(Path(p).name for p in job.written) + late)

    def errored(e):
        job.error = e
        kept = " (the earlier file is kept)" if Path(path).exists() else ""
        if isinstance(e, SaveCancelled):
            job.cancelled = True
            why = " (the viewer was closed)" if w.abort_requested else ""
            notifications.show_info(f"Save of {name} cancelled{why}: nothing was written{kept}.")
            return
        if job.in_place:  # a sidecar failed after the results file was in place
            notifications.show_error(
                f"{name} was saved, but not the files beside it: {e}. {_advice(e)}")
            return
        notifications.show_error(f"CaTune results not saved to {name}: {e}. Nothing was "
                                 f"written{kept}. {_advice(e)}")

    def finished():
        global _running
        timer.stop()
        pbar.close()
        if _running is job:
            _running = None
        job._done = True

    w = worker(_Write(job, write, name))
    job._aborted = lambda: w.abort_requested
    w.returned.connect(returned)
    w.errored.connect(errored)
    w.finished.connect(finished)
    timer.timeout.connect(poll)
    job._worker, job._timer, job._pbar = w, timer, pbar  # kept while it runs
    _running = job
    notifications.show_info(f"Saving {name}... (CaTune results; progress and Cancel: "
                            "the activity panel, bottom right)")
    timer.start()
    w.start()
    return job


@atexit.register
def _wait_at_exit() -> None:
    """At interpreter exit (viewer closed mid-save), let the write finish:
    a worker thread stopped at finalization would leave a temporary file."""
    job = _running
    if job is not None:
        job.wait()
