"""Checks that an output does not destroy an input or another output's sidecar.

Shared by the CLI (``-o``, ``--report``, ``--screenshot``), the napari
writers (``layer.save``, File > Save..., the Save CaTune results dialog) and
the tuner's parameter *Save...*, so all refuse the same files with the same
words.  No Qt, no napari.

- :func:`check_not_an_input`: the output is, or resolves to (symlinks, hard
  links, ``..``), an input, a file of an input suite2p plane folder, an
  input's ``{stem}_metadata.json`` sidecar, or lies inside a zarr/Minian
  input folder.
- :func:`check_sidecar_free`: the output's ``{stem}_metadata.json`` already
  describes another output (``res.npy`` and ``res.csv`` in one folder share
  ``res_metadata.json``; writing the second would silently replace the
  first one's sidecar).
- :func:`check_single_file`: :func:`check_not_an_input` in the napari side's
  words, for a file written alone (a parameter JSON, a features table).
- :func:`layer_inputs`: the files napari layers were read from (duck-typed,
  no napari import), the inputs the napari side protects.

The checks raise :class:`OutputClash` (a ValueError) with a message naming
the files and what to do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["OutputClash", "check_not_an_input", "check_sidecar_free", "check_single_file",
           "layer_inputs", "sidecar_of"]


class OutputClash(ValueError):
    """Writing the output would replace an input or another output's sidecar."""


# files of a suite2p plane folder that are read (never to be overwritten):
# suite2p 0.x (ops.npy) and 1.x (settings.npy, db.npy, reg_outputs.npy); every
# other .npy already in the plane folder is protected too
_SUITE2P_FILES = ("F.npy", "Fneu.npy", "iscell.npy", "stat.npy", "ops.npy", "spks.npy",
                  "settings.npy", "db.npy", "reg_outputs.npy", "redcell.npy", "F_chan2.npy",
                  "Fneu_chan2.npy", "data.bin")


# the outputs whose sidecar may not name its file ("output" key): an older
# napari writer's .npy/.csv, save_for_tuning's .npy; never a .npz or .nwb
_UNNAMED_OWNERS = (".npy", ".csv")


def sidecar_of(out) -> Path:
    """``{stem}_metadata.json`` beside ``out``."""
    out = Path(out)
    return out.with_name(out.stem + "_metadata.json")


def _real(p) -> str:
    return os.path.realpath(os.path.abspath(p))


def _protected(inputs) -> list[tuple[Path, str]]:
    """``(path, description)`` of every file the inputs consist of, sidecars included."""
    from .sources import is_zarr

    found: list[tuple[Path, str]] = []
    for raw in inputs:
        if raw is None:
            continue
        p = Path(raw)
        found.append((p, f"the input {p}"))
        for q in {p, Path(_real(p))}:
            if q.suffix.lower() in (".npy", ".npz"):
                side = sidecar_of(q)
                found.append((side, f"the sidecar {side.name} of the input {p}"))
        if p.is_dir() and not is_zarr(p):
            from .loaders import find_suite2p_plane

            plane = find_suite2p_plane(p)
            for q in [plane] if plane is not None else sorted(p.glob("plane*")):
                names = set(_SUITE2P_FILES) | {f.name for f in q.glob("*.npy")}
                for name in sorted(names):
                    found.append((q / name, f"the input {q / name}"))
    return found


def _input_folders(inputs) -> list[tuple[str, str]]:
    """``(folder, what)`` of inputs whose every file is read: zarr arrays, Minian outputs."""
    from .sources import is_zarr

    out = []
    for raw in inputs:
        if raw is None or not Path(raw).is_dir():
            continue
        p = Path(raw)
        if is_zarr(p):
            out.append((_real(p), f"the zarr input {raw}"))
        elif (p / "C.zarr").is_dir():  # Minian: its .zarr folders are the input
            out.extend((_real(z), f"the Minian input {raw}") for z in sorted(p.glob("*.zarr")))
    return out


def _inside(child: str, folder: str) -> bool:
    return child.startswith(folder.rstrip(os.sep) + os.sep)


def check_not_an_input(out, *inputs, name: str | None = None,
                       advice: str = "choose another output file") -> None:
    """Raise :class:`OutputClash` when ``out`` is, or resolves to, an input or its sidecar.

    Compares resolved paths (symlinks followed, ``..`` collapsed) and, when
    both exist, the files themselves (``os.path.samefile``: hard links).  An
    output inside a zarr (or Minian) input folder is refused too (it would
    land among the array's chunks).  ``name`` is how the message calls the
    output (default ``"output OUT"``); ``advice`` ends the message.
    """
    out = Path(out)
    name = name or f"output {out}"
    real_out = _real(out)
    for path, what in _protected(inputs):
        same = real_out == _real(path)
        if not same and out.exists() and path.exists():
            try:
                same = os.path.samefile(out, path)
            except OSError:
                same = False
        if same:
            raise OutputClash(f"{name} is {what}; writing it would destroy the input: {advice}")
    for folder, what in _input_folders(inputs):
        if _inside(real_out, folder):
            raise OutputClash(f"{name} is inside {what}; choose a file outside it")


def check_sidecar_free(out, formats, advice: str = "choose another output name") -> None:
    """Raise :class:`OutputClash` when ``out``'s ``{stem}_metadata.json`` describes another output.

    ``formats`` are the suffixes whose files share that sidecar.  The sidecar
    names its file in ``"output"``; a sidecar without that key (written by
    an older napari writer, or by :func:`napari_catune.save_for_tuning`) is
    taken to belong to any other existing ``{stem}.npy``/``{stem}.csv``: the
    only files those give a sidecar (the CLI's sidecars always name their
    output).
    """
    out = Path(out)
    side = sidecar_of(out)
    if not side.is_file():
        return
    try:
        owner = json.loads(side.read_text(encoding="utf-8")).get("output")
    except (ValueError, OSError, AttributeError, UnicodeDecodeError):
        owner = None
    others = [out.with_name(out.stem + sfx) for sfx in formats if sfx != out.suffix.lower()]
    for other in others:
        unnamed = owner is None and other.suffix in _UNNAMED_OWNERS
        if other.exists() and (unnamed or owner == other.name):
            raise OutputClash(
                f"{side.name} already describes {other.name}; writing {out.name} would replace "
                f"that sidecar ({out.stem}.* share it): {advice}"
            )


def check_single_file(out, *inputs) -> None:
    """Raise :class:`OutputClash` when ``out``, a file written without a sidecar
    (a parameter JSON, a features table), is an input or an input's sidecar.

    The message starts "Cannot save NAME: it is ..." and ends with what to do.
    """
    check_not_an_input(out, *inputs, name=f"Cannot save {Path(out).name}: it",
                       advice="choose another file name")


def layer_inputs(layers) -> list[str]:
    """The files napari ``layers`` were read from, each once: ``layer.source.path``
    and the recording a CaTune layer names in ``metadata["catune"]["source"]``.

    Duck-typed (no napari import): anything with those attributes will do.
    """
    found = []
    for layer in layers:
        if layer is None:
            continue
        path = getattr(getattr(layer, "source", None), "path", None)
        md = getattr(layer, "metadata", None)
        cat = md.get("catune") if isinstance(md, dict) else None
        named = cat.get("source") if isinstance(cat, dict) else None
        found += [str(p) for p in (path, named) if p]
    return list(dict.fromkeys(found))
