"""When the kernel plot, the spectrum's band and the read-outs follow new parameters.

They repaint just after the rows of their solve (no paint competing with the
solve for the GUI thread and the cores, none delaying the rows'), or 100 ms on
if no rows come.  While a drag goes on (a newer solve already running when
they are due) they wait for that solve's rows, at most ``MAX_LAG_S`` after the
first parameters they have not shown: their paint (several ms) no longer lands
in every move's solve.
"""

from __future__ import annotations

import time

from qtpy.QtCore import QTimer


class PlotsFollow:
    MAX_LAG_S = 0.15

    def __init__(self, parent, update, pending):
        """``update(params)`` draws them; ``pending()``: a newer solve is running."""
        self._update = update
        self._pending = pending
        self._due = None
        self._since = None
        self.timer = QTimer(parent)
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(self._fire)

    @property
    def waiting(self) -> bool:
        return self.timer.isActive()

    def due(self, p, now: bool = False) -> None:
        """New parameters ``p``; ``now``: no solve follows, draw them at once."""
        self._due = p
        if self._since is None:
            self._since = time.monotonic()
        if now:
            self.flush()
        elif not self.timer.isActive():
            self.timer.start(100)

    def rows_shown(self, newest: bool) -> None:
        """A result was handed to the rows (``newest``: of the newest request)."""
        if self._due is not None and newest:
            self.timer.start(20)  # once their rows painted

    def _fire(self) -> None:
        if (self._due is not None and self._pending()
                and time.monotonic() - self._since < self.MAX_LAG_S):
            self.timer.start(100)  # the next rows come sooner (rows_shown)
            return
        self.flush()

    def flush(self) -> None:
        self.timer.stop()
        p, self._due, self._since = self._due, None, None
        if p is not None:
            self._update(p)
