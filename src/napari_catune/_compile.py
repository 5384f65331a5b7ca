"""``python -m napari_catune._compile``: compile the solver's machine code
into numba's on-disk cache (a subprocess of :func:`napari_catune.solver.start_background_compile`).

Prints ``live`` once the tuner's live path (the exact solver, its warm
start, the read-outs) is compiled and cached, then compiles the rest
(FISTA, the rolling baseline, the stand-alone KKT check and objective) and
prints ``all``.  Exit status 0 on success.
"""

from __future__ import annotations

import os
import sys

# below the user's process in the scheduler: the first fits (the NumPy
# solver, on both cores) come first; an idle machine still compiles at
# full speed
NICE = 10


def _say(word: str) -> None:
    try:
        print(word, flush=True)
    except (BrokenPipeError, OSError):
        pass  # the parent is gone: go on filling the cache for the next start


def main() -> int:
    if hasattr(os, "nice"):
        try:
            os.nice(NICE)
        except OSError:
            pass
    from napari_catune import solver

    solver._warm_up(live_only=True)
    _say("live")
    solver._warm_up()
    _say("all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
