"""The progress bar on a terminal that reports no size (audit 41: a pty opened
by ``script -qc ... /dev/null`` drew no bar, only a stray colour reset)."""

from __future__ import annotations

import os
import select
import sys

import pytest

from napari_catune import cli

pytest.importorskip("tqdm")


def _drain(fd) -> bytes:
    out = b""
    while select.select([fd], [], [], 0.2)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out


def test_bar_is_drawn_on_a_pty_of_no_size(monkeypatch):
    master, slave = os.openpty()  # a new pty reports 0 rows x 0 columns
    stream = open(slave, "w", buffering=1, closefd=True)
    try:
        size = os.get_terminal_size(slave)
        assert (size.columns, size.lines) == (0, 0)
        monkeypatch.setattr(sys, "stderr", stream)  # (tqdm sizes only sys.stderr/stdout)
        bar = cli.Progress(6, "deconvolve")
        assert bar.enabled and bar.bar is not None
        for done in (2, 4, 6):
            bar.update(done)
        bar.close()
        stream.flush()
        text = _drain(master).decode("utf-8", "replace")
    finally:
        stream.close()
        os.close(master)
    assert "deconvolve" in text and "6/6" in text and "cells/s" in text, repr(text)
    # a fixed width: the bar's line fills the 100 columns it was given
    last = [ln for ln in text.replace("\r\n", "\n").split("\r") if "6/6" in ln][-1].strip("\n")
    assert 60 <= len(last) <= 100, repr(last)


def test_bar_shape_follows_a_sized_terminal(monkeypatch):
    class Sized:
        def fileno(self):
            return 99

    monkeypatch.setattr(os, "get_terminal_size", lambda fd: os.terminal_size((120, 40)))
    assert cli._bar_shape(Sized()) == {"dynamic_ncols": True}
    monkeypatch.setattr(os, "get_terminal_size", lambda fd: os.terminal_size((0, 0)))
    assert cli._bar_shape(Sized()) == {"ncols": 100, "nrows": 24}
