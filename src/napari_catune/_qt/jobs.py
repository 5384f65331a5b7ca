"""Long jobs of the tuner: a progress line with Cancel for each, run in napari workers."""

from __future__ import annotations

import time

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget


class _Line(QWidget):
    def __init__(self, text: str, total: int, cancel):
        super().__init__()
        self.text = text
        self.t0 = time.monotonic()
        self.label = QLabel(text)
        # wrapped, never wider than the dock: a job line with a long layer name
        # would raise the dock's minimum width (which Qt keeps after the line goes)
        self.label.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setMaximumHeight(14)
        self.bar.setRange(0, max(0, int(total)))
        self.bar.setTextVisible(total > 0)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setToolTip(f"Stop: {text}")
        self.cancel_btn.setVisible(cancel is not None)
        if cancel is not None:
            self.cancel_btn.clicked.connect(cancel)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.label, 2)
        lay.addWidget(self.bar, 2)
        lay.addWidget(self.cancel_btn)


class JobBar(QWidget):
    """One line per running job: what it does, its progress (or elapsed time), Cancel."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._lines: dict[str, _Line] = {}
        self._lay = QVBoxLayout(self)
        self._lay.setContentsMargins(0, 0, 0, 0)
        self._timer = QTimer(self)
        self._timer.setInterval(500)
        self._timer.timeout.connect(self._tick)
        self.setVisible(False)

    def start(self, key: str, text: str, total: int = 0, cancel=None) -> None:
        self.finish(key)
        line = _Line(text, total, cancel)
        self._lines[key] = line
        self._lay.addWidget(line)
        self.setVisible(True)
        self._timer.start()

    def update(self, key: str, value: int, total: int | None = None) -> None:  # noqa: A003
        line = self._lines.get(key)
        if line is None:
            return
        if total is not None:
            line.bar.setRange(0, int(total))
            line.bar.setTextVisible(True)
        line.bar.setValue(int(value))

    def finish(self, key: str) -> None:
        line = self._lines.pop(key, None)
        if line is not None:
            line.setParent(None)
            line.deleteLater()
        if not self._lines:
            self._timer.stop()
            self.setVisible(False)

    def running(self, key: str) -> bool:
        return key in self._lines

    def cancel_button(self, key: str):
        line = self._lines.get(key)
        return None if line is None else line.cancel_btn

    def text(self, key: str) -> str:
        line = self._lines.get(key)
        return "" if line is None else line.label.text()

    def _tick(self) -> None:
        now = time.monotonic()
        for line in self._lines.values():
            if line.bar.maximum() == 0:
                line.label.setText(f"{line.text} {now - line.t0:.0f} s")


def worker(fn, *args, **kwargs):
    """A napari worker for ``fn`` (function or generator), not started yet."""
    from napari.qt.threading import create_worker

    return create_worker(fn, *args, _start_thread=False, _ignore_errors=True, **kwargs)


def let_go(worker, callbacks) -> None:
    """A read ended: the worker keeps nothing of it.  napari keeps every worker
    in its task list, so its callbacks (holding the layers) are disconnected and
    a cancelled job's generator (holding the movie, ROIs, F) is closed."""
    for sig, fn in callbacks:
        try:
            sig.disconnect(fn)
        except (TypeError, RuntimeError):  # already disconnected
            pass
    callbacks.clear()
    gen = getattr(worker, "_gen", None)  # (superqt's GeneratorWorker: the job's generator)
    if gen is not None:
        try:
            gen.close()
        except (RuntimeError, ValueError):  # still running: it ends by itself
            pass
