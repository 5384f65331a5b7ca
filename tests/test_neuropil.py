"""Neuropil correction of traces extracted with a label image (suite2p's
convention: ``suite2p/extraction/masks.py`` ``create_neuropil_masks``), the
``extract --neuropil`` option and its provenance in the exports."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from napari_catune import cli
from napari_catune.neuropil import extract_neuropil, neuropil_masks
from napari_catune.params import TuningParams, save_params
from napari_catune.traces import extract_traces

FS = 20.0


def _reference_mask(labels, rid, inner=2, min_pixels=350):
    """suite2p's rule written out plainly: pixel sets and a growing rectangle."""
    Y, X = labels.shape
    zone = {tuple(p) for p in np.argwhere(labels == rid)}
    for _ in range(inner):  # 4-connected growth, clipped
        zone |= {(y + dy, x + dx) for y, x in zone
                 for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1))
                 if 0 <= y + dy < Y and 0 <= x + dx < X}
    free = labels == 0
    ring = sum(free[p] for p in zone)
    ys, xs = zip(*zone)
    y0, y1, x0, x1 = min(ys), max(ys), min(xs), max(xs)  # inclusive
    for _ in range(100):
        y0, y1, x0, x1 = max(0, y0 - 5), min(Y - 1, y1 + 5), max(0, x0 - 5), min(X - 1, x1 + 5)
        if free[y0:y1 + 1, x0:x1 + 1].sum() - ring > min_pixels:
            break
    return sorted(y * X + x for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)
                  if free[y, x] and (y, x) not in zone)


def _labels():
    lab = np.zeros((60, 70), np.int32)
    yy, xx = np.mgrid[:60, :70]
    for rid, (cy, cx) in zip((2, 7, 9, 4), ((10, 10), (12, 20), (40, 50), (57, 3))):
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= 16] = rid
    return lab


def test_masks_follow_suite2p_rule():
    lab = _labels()
    masks, ids = neuropil_masks(lab)
    assert ids.tolist() == [2, 4, 7, 9]
    for rid, m in zip(ids, masks):
        assert m.tolist() == _reference_mask(lab, rid), rid
        assert (lab.ravel()[m] == 0).all() and m.size > 350
    # other sizes
    masks, _ = neuropil_masks(lab, [7], inner_radius=0, min_pixels=50)
    assert masks[0].tolist() == _reference_mask(lab, 7, inner=0, min_pixels=50)


def test_correction_removes_a_shared_neuropil_signal():
    """Each ROI sees its cell plus the neuropil under it; the surround sees the
    neuropil: F - 0.7 Fneu is closer to the cell than F."""
    rng = np.random.default_rng(1)
    lab = _labels()
    T = 400
    neuro = np.convolve(rng.random(T) < 0.05, np.exp(-np.arange(60) / 10.0))[:T] * 3.0
    movie = 10 + rng.normal(0, 0.2, (T,) + lab.shape) + neuro[:, None, None]
    cells = {}
    for rid in (2, 4, 7, 9):
        s = np.convolve(rng.random(T) < 0.02, np.exp(-np.arange(60) / 8.0))[:T] * 4.0
        movie[:, lab == rid] += s[:, None]
        cells[rid] = s
    F, ids = extract_traces(movie, lab)
    Fneu, ids2, npix = extract_neuropil(movie, lab, ids, chunk_frames=37)
    assert ids2.tolist() == ids.tolist() and (npix > 350).all()
    masks, _ = neuropil_masks(lab, ids)
    for i, m in enumerate(masks):  # the plain mean of the mask's pixels
        np.testing.assert_allclose(Fneu[i], movie.reshape(T, -1)[:, m].mean(axis=1))
    for i, rid in enumerate(ids):
        raw = np.corrcoef(F[i], cells[rid])[0, 1]
        fixed = np.corrcoef(F[i] - 0.7 * Fneu[i], cells[rid])[0, 1]
        assert fixed > raw + 0.05, (rid, raw, fixed)


def test_masks_errors():
    with pytest.raises(ValueError, match="no neuropil pixels"):
        neuropil_masks(np.ones((10, 10), np.int32))
    with pytest.raises(ValueError, match="2-D integer"):
        neuropil_masks(np.zeros((3, 3, 3), np.int32))


def test_cli_extract_neuropil_and_its_provenance(tmp_path):
    rng = np.random.default_rng(2)
    lab = _labels()
    movie = (100 + rng.normal(0, 1, (200,) + lab.shape)).astype(np.float32)
    np.save(tmp_path / "movie.npy", movie)
    np.save(tmp_path / "masks.npy", lab)
    out = tmp_path / "tr.npz"
    assert cli.main(["extract", str(tmp_path / "movie.npy"), str(tmp_path / "masks.npy"),
                     "--fs", str(FS), "--neuropil", "-o", str(out)]) == 0
    F, ids = extract_traces(movie, lab)
    Fneu, _, _ = extract_neuropil(movie, lab, ids)
    with np.load(out, allow_pickle=False) as z:
        np.testing.assert_allclose(z["traces"], F - 0.7 * Fneu)
        np.testing.assert_allclose(z["Fneu"], Fneu)
        assert float(z["neuropil_coefficient"]) == 0.7
        said = str(z["input_traces"])
    assert said.startswith("F - 0.7*Fneu") and "suite2p" in said
    side = json.loads((tmp_path / "tr_metadata.json").read_text())
    assert side["neuropil"] == {"convention": "suite2p", "coefficient": 0.7,
                                "inner_radius": 2, "min_pixels": 350}
    # the deconvolution's export says what its input traces were
    save_params(TuningParams(tau_rise=0.05, tau_decay=0.5, fs=FS, lam=0.3,
                             baseline="scalar"), tmp_path / "p.json")
    res = tmp_path / "res.nwb"
    assert cli.main(["deconvolve", str(out), "--params", str(tmp_path / "p.json"), "-o",
                     str(res), "-q"]) == 0
    with h5py.File(res, "r") as f:
        got = f["processing/catune/parameters/input_traces"][0]
    assert (got.decode() if isinstance(got, bytes) else got) == said
    # another coefficient, and .npy + sidecar
    out2 = tmp_path / "tr05.npy"
    assert cli.main(["extract", str(tmp_path / "movie.npy"), str(tmp_path / "masks.npy"),
                     "--fs", str(FS), "--neuropil", "0.5", "-o", str(out2)]) == 0
    np.testing.assert_allclose(np.load(out2), F - 0.5 * Fneu, rtol=1e-6)
    side = json.loads((tmp_path / "tr05_metadata.json").read_text())
    assert side["traces"].startswith("F - 0.5*Fneu")


def test_cli_rejects_a_bad_coefficient(tmp_path, capsys):
    assert cli.main(["extract", "m.npy", "l.npy", "--neuropil", "-1", "-o",
                     str(tmp_path / "o.npz")]) == 2
    assert "must be a number >= 0" in capsys.readouterr().err


def test_session_holds_the_neuropil_choice_validated_once():
    from napari_catune.session import TuningSession, neuropil_traces

    s = TuningSession()
    seen = []
    s.neuropil_changed.connect(seen.append)
    assert s.neuropil is None and s.neuropil_coefficient == 0.7  # off; suite2p's default
    assert s.set_neuropil(on=True) == 0.7 and seen == [0.7]
    s.set_neuropil(coefficient=0.4)
    assert s.neuropil == 0.4 and seen == [0.7, 0.4]
    for bad in (-0.1, 1.6, float("nan"), "x", [0.5]):
        with pytest.raises(ValueError, match="coefficient must be a number from 0 to 1.5"):
            s.set_neuropil(coefficient=bad)
    assert s.neuropil == 0.4 and seen == [0.7, 0.4]  # a refused value keeps the choice
    s.set_neuropil(on=False)
    s.set_neuropil(coefficient=0.9)  # chosen while off: no traces change
    assert s.neuropil is None and s.neuropil_coefficient == 0.9 and seen == [0.7, 0.4, None]
    s.set_neuropil(on=True, coefficient=0.0)  # 0: F itself, still "corrected"
    assert s.neuropil == 0.0 and seen[-1] == 0.0
    F, fneu = np.array([[3.0, 4.0]]), np.array([[1.0, 2.0]])
    np.testing.assert_array_equal(neuropil_traces(F, fneu, 0.5), [[2.5, 3.0]])


def test_iter_neuropil_yields_progress_and_returns_extract_neuropils_answer():
    from napari_catune.neuropil import iter_neuropil

    rng = np.random.default_rng(4)
    lab = _labels()
    movie = rng.normal(0, 1, (30,) + lab.shape)
    steps = iter_neuropil(movie, lab, chunk_frames=7)
    seen = []
    while True:
        try:
            seen.append(next(steps))
        except StopIteration as done:
            fneu, ids, npix = done.value
            break
    assert seen == [(7, 30), (14, 30), (21, 30), (28, 30), (30, 30)]
    ref, _, _ = extract_neuropil(movie, lab)
    np.testing.assert_array_equal(fneu, ref)
