"""numba keys its on-disk cache of a module's functions on that module's
source alone (numba 0.68: a SHA-256 of its contents; older: its time stamp
and size), not on the modules its functions call into.  A compiled solver
module whose callee changed would, from a warm cache (a checkout, or a pip
upgrade: the ``.nbi``/``.nbc`` files stay in ``__pycache__``), run the
callee's old machine code.  So each ``_numba_*`` module that imports another
holds ``_CALLEES_SHA``, a digest of its callees' sources: a callee's change
must change the caller's text.  Each callee's own ``_CALLEES_SHA`` is part
of its source, so the chain is covered transitively."""

import hashlib
import re
import sys
from pathlib import Path

import pytest

# (the source tree: importing the package would start its background compile)
PKG = Path(__file__).resolve().parents[1] / "src" / "napari_catune"
MODULES = sorted(p.stem for p in PKG.glob("_numba_*.py"))
_IMPORT = re.compile(r"^from \.(_numba_\w+) import", re.M)
_KEY = re.compile(r'^_CALLEES_SHA = "([0-9a-f]*)"', re.M)


def callees(name):
    return sorted(set(_IMPORT.findall((PKG / f"{name}.py").read_text())))


def callees_sha(name):
    h = hashlib.sha256()
    for c in callees(name):
        h.update(c.encode() + b"\0" + (PKG / f"{c}.py").read_bytes() + b"\0")
    return h.hexdigest()[:16]


def test_the_solver_modules_that_call_others_are_found():
    # (the check below must not pass by finding nothing)
    assert "_numba_solvers" in MODULES and "_numba_local" in callees("_numba_solvers")
    assert "_numba_short" in callees("_numba_local")


@pytest.mark.parametrize("name", [m for m in MODULES if callees(m)])
def test_a_compiled_module_names_its_callees_digest(name):
    found = _KEY.search((PKG / f"{name}.py").read_text())
    want = callees_sha(name)
    assert found is not None and found.group(1) == want, (
        f'{name}.py: set _CALLEES_SHA = "{want}" (a callee of its compiled '
        f"functions changed: numba's cache would keep the old code)")


def test_a_changed_callee_changes_the_digest(tmp_path, monkeypatch):
    for name in ("_numba_local", "_numba_short"):
        (tmp_path / f"{name}.py").write_bytes((PKG / f"{name}.py").read_bytes())
    monkeypatch.setattr(sys.modules[__name__], "PKG", tmp_path)
    before = callees_sha("_numba_local")
    (tmp_path / "_numba_short.py").write_text(
        (PKG / "_numba_short.py").read_text() + "\n# changed\n")
    assert callees_sha("_numba_local") != before
