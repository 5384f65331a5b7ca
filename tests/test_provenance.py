"""Provenance in the exports (audit 37, finding 6): what the traces were
(``input_traces``), the ROI footprints through ``extract`` -> ``deconvolve``,
one set of per-ROI features for the GUI and the CLI, and the NWB pixel-mask
order.  Every file is reopened with numpy / h5py / pynwb and compared."""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pytest

from napari_catune import cli
from napari_catune.params import TuningParams, save_params
from napari_catune.results import load_results, save_results
from napari_catune.session import FEATURE_NAMES, apply_job
from napari_catune.traces import ROI_MEAN_TRACES, extract_traces

pynwb = pytest.importorskip("pynwb")

FS = 20.0


def _movie_and_labels(seed=0):
    """A (T, Y, X) movie with 4 ROIs on a non-square plane (so that a transposed
    footprint cannot pass for the right one), and its label image."""
    rng = np.random.default_rng(seed)
    T, Y, X = 300, 14, 22
    lab = np.zeros((Y, X), np.int32)
    lab[1:4, 2:9] = 3
    lab[6:12, 1:3] = 5
    lab[9:13, 12:21] = 8
    lab[2, 15] = 11  # a one-pixel ROI
    movie = 100 + rng.normal(0, 1, (T, Y, X))
    for k, rid in enumerate((3, 5, 8, 11)):
        spikes = np.zeros(T)
        spikes[rng.choice(T - 20, 6, replace=False) + 10] = 30 + 5 * k
        kern = np.exp(-np.arange(40) / (0.5 * FS))
        movie[:, lab == rid] += np.convolve(spikes, kern)[:T, None]
    return movie.astype(np.float32), lab


def _params():
    return TuningParams(tau_rise=0.05, tau_decay=0.5, fs=FS, lam=0.3, baseline="scalar")


def _run(*argv):
    assert cli.main([str(a) for a in argv]) == 0


def _extract_deconvolve(tmp_path, out_name):
    movie, lab = _movie_and_labels()
    np.save(tmp_path / "movie.npy", movie)
    np.save(tmp_path / "masks.npy", lab)
    save_params(_params(), tmp_path / "p.json")
    _run("extract", tmp_path / "movie.npy", tmp_path / "masks.npy", "--fs", FS,
         "-o", tmp_path / "tr.npz")
    out = tmp_path / out_name
    _run("deconvolve", tmp_path / "tr.npz", "--params", tmp_path / "p.json", "-o", out, "-q")
    return out, movie, lab


def _masks(path):
    """{roi_id: set of (first, second) pixel_mask coordinates} and roi_labels."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pynwb.NWBHDF5IO(str(path), "r") as io:
            f = io.read()
            ps = f.processing["ophys"]["ImageSegmentation"]["PlaneSegmentation"]
            masks = {int(ps["roi_id"][i]): [tuple(r) for r in ps["pixel_mask"][i]]
                     for i in range(len(ps))}
            img = np.asarray(f.processing["ophys"]["ROIImages"]["roi_labels"].data[:])
            return masks, img, ps.description, str(ps.imaging_plane.name)


def test_extract_npz_carries_labels_and_what_the_traces_are(tmp_path):
    movie, lab = _movie_and_labels()
    np.save(tmp_path / "movie.npy", movie)
    np.save(tmp_path / "masks.npy", lab)
    _run("extract", tmp_path / "movie.npy", tmp_path / "masks.npy", "--fs", FS,
         "-o", tmp_path / "tr.npz")
    with np.load(tmp_path / "tr.npz", allow_pickle=False) as z:
        np.testing.assert_array_equal(z["labels"], lab)
        assert str(z["input_traces"]) == ROI_MEAN_TRACES
        tr, ids = extract_traces(movie, lab)
        np.testing.assert_array_equal(z["traces"], tr)
        np.testing.assert_array_equal(z["roi_ids"], ids)


def test_cli_nwb_from_extract_has_the_real_footprints_and_input_traces(tmp_path):
    out, _, lab = _extract_deconvolve(tmp_path, "res.nwb")
    masks, img, desc, _ = _masks(out)
    np.testing.assert_array_equal(img, lab)  # not a tile grid
    assert "FOOTPRINTS NOT KNOWN" not in desc and "x the first axis" in desc
    for rid, rows in masks.items():
        got = {(int(x), int(y)) for x, y, _ in rows}
        assert got == {tuple(v) for v in np.argwhere(lab == rid)}
    # h5py alone: the parameters table says what the traces were
    with h5py.File(out, "r") as f:
        said = f["processing/catune/parameters/input_traces"][0]
    assert (said.decode() if isinstance(said, bytes) else said) == ROI_MEAN_TRACES
    assert load_results(out)["input_traces"] == ROI_MEAN_TRACES


def test_pixel_masks_are_the_schema_order_pynwb_image_to_pixel_gives(tmp_path):
    # pynwb's own image -> pixel conversion of roi_labels == rid gives our rows
    out, _, lab = _extract_deconvolve(tmp_path, "res.nwb")
    masks, img, _, _ = _masks(out)
    from pynwb.ophys import PlaneSegmentation

    for rid, rows in masks.items():
        want = {(int(x), int(y)) for x, y, _ in
                PlaneSegmentation.image_to_pixel((img == rid).astype(float))}
        assert {(int(x), int(y)) for x, y, _ in rows} == want
        # and image[x, y] = weight rebuilds the footprint
        rebuilt = np.zeros(img.shape)
        for x, y, w in rows:
            rebuilt[int(x), int(y)] = w
        np.testing.assert_array_equal(rebuilt > 0, lab == rid)


def test_nwb_without_footprints_says_so(tmp_path):
    movie, lab = _movie_and_labels()
    tr, ids = extract_traces(movie, lab)
    np.save(tmp_path / "tr.npy", tr)
    save_params(_params(), tmp_path / "p.json")
    out = tmp_path / "res.nwb"
    _run("deconvolve", tmp_path / "tr.npy", "--params", tmp_path / "p.json", "--fs", FS,
         "-o", out, "-q")
    _, img, desc, _ = _masks(out)
    assert desc.startswith("FOOTPRINTS NOT KNOWN")
    with h5py.File(out, "r") as f:
        d = f["processing/ophys/ROIImages/roi_labels"].attrs["description"]
        assert "FOOTPRINTS NOT KNOWN" in (d.decode() if isinstance(d, bytes) else d)


def test_cli_npz_nwb_and_csv_hold_the_gui_features_and_input_traces(tmp_path):
    out, movie, lab = _extract_deconvolve(tmp_path, "res.npz")
    tr, ids = extract_traces(movie, lab)
    # the tuner's Apply to all on the same traces (the napari writer saves these)
    gen = apply_job(tr, ids, _params())
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        batch = stop.value
    gui = {k: v for k, v in batch.features.items() if k != "index"}
    assert tuple(gui) == FEATURE_NAMES
    with np.load(out, allow_pickle=False) as z:
        feats = {k.split(".", 1)[1]: z[k] for k in z.files if k.startswith("features.")}
        assert str(z["input_traces"]) == ROI_MEAN_TRACES
        for key in ("converged", "iterations", "skipped"):
            np.testing.assert_array_equal(z[key], feats[key])
    assert set(feats) == set(FEATURE_NAMES)
    for key in FEATURE_NAMES:
        np.testing.assert_allclose(np.asarray(feats[key], float), np.asarray(gui[key], float),
                                   rtol=1e-6, atol=1e-9, err_msg=key)
    # the GUI's save of those features writes the same npz entries
    (gpath,) = save_results(tmp_path / "gui.npz", activity=batch.activity,
                            fit=batch.reconvolution, baseline=batch.baseline,
                            roi_ids=ids, fs=FS, params=_params(), features=batch.features,
                            input_traces=ROI_MEAN_TRACES)
    with np.load(gpath) as g, np.load(out) as c:
        skip = {"features.index"}
        assert set(g.files) - skip == set(c.files) - skip
    # .nwb and .csv of the CLI: the same features and input_traces
    _run("deconvolve", tmp_path / "tr.npz", "--params", tmp_path / "p.json",
         "-o", tmp_path / "res2.nwb", "-q")
    r = load_results(tmp_path / "res2.nwb")
    assert set(r["features"]) == set(FEATURE_NAMES) - {"roi_id"}
    np.testing.assert_allclose(r["features"]["snr"], gui["snr"], rtol=1e-6)
    _run("deconvolve", tmp_path / "tr.npz", "--params", tmp_path / "p.json",
         "-o", tmp_path / "res3.csv", "-q")
    head = (tmp_path / "res3_features.csv").read_text().splitlines()[0].split(",")
    assert head == list(FEATURE_NAMES)
    side = json.loads((tmp_path / "res3_metadata.json").read_text())
    assert side["input_traces"] == ROI_MEAN_TRACES


def test_save_results_records_input_traces_in_every_format(tmp_path):
    rng = np.random.default_rng(1)
    act = np.abs(rng.normal(size=(2, 50)))
    kw = dict(activity=act, fit=act, baseline=np.zeros(2), roi_ids=[1, 2], fs=FS,
              params=_params(), input_traces="F - 0.7*Fneu")
    (npz,) = save_results(tmp_path / "r.npz", **kw)
    assert load_results(npz)["input_traces"] == "F - 0.7*Fneu"
    (nwb,) = save_results(tmp_path / "r.nwb", **kw)
    assert load_results(nwb)["input_traces"] == "F - 0.7*Fneu"
    save_results(tmp_path / "c.csv", **kw)
    assert json.loads((tmp_path / "c_metadata.json").read_text())["input_traces"] == \
        "F - 0.7*Fneu"
    save_results(tmp_path / "a.npy", **kw)
    assert json.loads((tmp_path / "a_metadata.json").read_text())["input_traces"] == \
        "F - 0.7*Fneu"
    # not given: "not recorded" in the NWB table, None back, absent from the npz
    (nwb2,) = save_results(tmp_path / "r2.nwb", **{**kw, "input_traces": None})
    assert load_results(nwb2)["input_traces"] is None
    (npz2,) = save_results(tmp_path / "r2.npz", **{**kw, "input_traces": None})
    assert load_results(npz2)["input_traces"] is None


def test_features_of_a_skipped_row_are_nan_even_with_scores_given():
    from napari_catune.params import TuningParams
    from napari_catune.session import roi_features

    rng = np.random.default_rng(3)
    tr = rng.normal(size=(3, 400))
    z = np.zeros_like(tr)
    f = roi_features(tr, params=TuningParams(tau_rise=0.05, tau_decay=0.5, fs=30.0, lam=0.1),
                     roi_ids=[1, 2, 3], activity=z, fit=z, baseline=np.zeros(3),
                     converged=[True, False, True], iterations=[3, 0, 4],
                     skipped=[False, True, False], snr=np.array([5.0, 0.0, 6.0]),
                     noise=np.array([1.0, 0.0, 1.0]))
    assert np.isnan(f["snr"][1]) and f["snr"][0] == 5.0 and f["snr"][2] == 6.0
    assert np.isnan(f["r2"][1]) and np.isnan(f["event_rate_hz"][1])
