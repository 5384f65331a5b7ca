"""suite2p and CaImAn loaders on files laid out as those pipelines write them.

suite2p (io/save and the GUI's save_merge): ``np.save`` of F, Fneu, spks
(float32 (n, T)), iscell ((n, 2): flag, probability), stat (a list of dicts
with ypix, xpix, lam, med, npix, overlap, ...) and ops (a dict with fs, Ly,
Lx, meanImg, ...); the last two pickled.

CaImAn (``CNMF.save`` -> ``save_dict_to_hdf5`` ->
``recursively_save_dict_contents_to_group``): the object's ``__dict__`` as
nested groups; the Estimates and CNMFParams objects become groups; sparse
matrices become ``data/indices/indptr/shape`` (CSC); None becomes the
string ``"NoneType"``; tuples like ``dims`` become arrays.  Images are
flattened in Fortran order.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest
from scipy import sparse

from napari_catune.loaders import (
    PipelineData,
    load_caiman_data,
    load_suite2p,
    tile_labels,
)

LY, LX = 24, 30


# ---------------------------------------------------------------- builders


def _disk(cy, cx, r, shape):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return np.nonzero(m)


def make_suite2p(root: pathlib.Path, n: int = 5, T: int = 300, fs: float = 15.0,
                 iscell=(1, 0, 1, 1, 0), seed: int = 0) -> pathlib.Path:
    """A suite2p/plane0 folder as suite2p writes it; returns the plane folder."""
    rng = np.random.default_rng(seed)
    plane = root / "suite2p" / "plane0"
    plane.mkdir(parents=True)
    centres = [(5, 5), (5, 10), (15, 20), (16, 27), (19, 6)]
    stat = []
    masks = [_disk(cy, cx, 3, (LY, LX)) for cy, cx in centres[:n]]
    owner = np.zeros((LY, LX), int)
    for ypix, xpix in masks:
        owner[ypix, xpix] += 1
    for k, (ypix, xpix) in enumerate(masks):
        lam = rng.uniform(0.5, 1.0, ypix.size).astype(np.float32)
        stat.append({
            "ypix": ypix.astype(np.int32), "xpix": xpix.astype(np.int32),
            "lam": lam / lam.sum(), "med": [int(np.median(ypix)), int(np.median(xpix))],
            "npix": int(ypix.size), "overlap": owner[ypix, xpix] > 1,
            "radius": 3.0, "aspect_ratio": 1.0, "compact": 1.0, "footprint": 1.0,
            "skew": 1.0, "std": 1.0, "npix_norm": 1.0, "soma_crop": np.ones(ypix.size, bool),
        })
    F = (100 + 10 * rng.standard_normal((n, T))).astype(np.float32)
    Fneu = (50 + 5 * rng.standard_normal((n, T))).astype(np.float32)
    ic = np.zeros((n, 2), dtype=np.float64)
    ic[:, 0] = np.asarray(iscell[:n], dtype=float)
    ic[:, 1] = rng.uniform(size=n)
    ops = {
        "fs": fs, "Ly": LY, "Lx": LX, "nframes": T, "tau": 1.0, "nplanes": 1,
        "meanImg": rng.uniform(0, 1000, (LY, LX)).astype(np.float32),
        "save_path": str(plane), "data_path": [str(root)],
    }
    np.save(plane / "F.npy", F)
    np.save(plane / "Fneu.npy", Fneu)
    np.save(plane / "spks.npy", np.maximum(F - 100, 0).astype(np.float32))
    np.save(plane / "iscell.npy", ic)
    np.save(plane / "stat.npy", stat)  # a list of dicts: pickled as suite2p does
    np.save(plane / "ops.npy", ops)  # a dict: pickled
    return plane


def _save_hdf5_like_caiman(h5, path: str, d: dict):
    """The subset of CaImAn's recursively_save_dict_contents_to_group we need."""
    for key, item in d.items():
        if isinstance(item, dict):
            _save_hdf5_like_caiman(h5, path + key + "/", item)
        elif sparse.issparse(item):
            m = item.tocsc()
            h5[path + key + "/data"] = m.data
            h5[path + key + "/indptr"] = m.indptr
            h5[path + key + "/indices"] = m.indices
            h5[path + key + "/shape"] = m.shape
        elif item is None:
            h5[path + key] = "NoneType"
        elif isinstance(item, tuple):
            h5[path + key] = np.array(item)
        else:
            h5[path + key] = item


def make_caiman(path: pathlib.Path, n: int = 4, T: int = 250, fr: float = 10.0,
                dims=(LY, LX), with_dff: bool = False, seed: int = 1) -> dict:
    """A CaImAn CNMF.save-style HDF5 file; returns the arrays written."""
    import h5py

    rng = np.random.default_rng(seed)
    d = int(np.prod(dims))
    centres = [(6, 6), (6, 10), (15, 20), (18, 8)][:n]
    A = np.zeros((d, n))
    for k, (cy, cx) in enumerate(centres):
        yy, xx = np.mgrid[: dims[0], : dims[1]]
        w = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.0**2))
        w[w < 0.1] = 0
        A[:, k] = w.ravel(order="F")  # CaImAn flattens images in Fortran order
    C = np.abs(rng.standard_normal((n, T))).cumsum(axis=1) % 5
    YrA = 0.3 * rng.standard_normal((n, T))
    Cn = rng.uniform(0, 1, dims)
    estimates = {
        "A": sparse.csc_matrix(A), "C": C, "YrA": YrA, "S": np.maximum(np.diff(C, prepend=0), 0),
        "b": rng.uniform(size=(d, 1)), "f": rng.uniform(size=(1, T)), "Cn": Cn,
        "F_dff": (C / 3.0) if with_dff else None, "dims": dims,
        "idx_components": np.array([0, 2]), "idx_components_bad": np.array([1, 3]),
        "sn": rng.uniform(size=d), "g": None, "bl": None, "c1": None, "neurons_sn": None,
        "lam": None, "center": None, "coordinates": None,
    }
    params = {
        "data": {"fr": fr, "dims": dims, "decay_time": 0.4, "fnames": None,
                 "dxy": (1, 1), "var_name_hdf5": "mov"},
        "init": {"K": n, "gSig": np.array([3, 3]), "nb": 1},
        "temporal": {"p": 2}, "spatial": {"nb": 1},
    }
    obj = {"dims": dims, "dview": None, "estimates": estimates, "params": params,
           "mmap_file": "Yr_d1_24_d2_30_d3_1_order_C_frames_250.mmap", "remove_very_bad_comps": False}
    obj["remove_very_bad_comps"] = np.bool_(False)
    with h5py.File(path, "w") as h5:
        _save_hdf5_like_caiman(h5, "/", obj)
    return {"A": A, "C": C, "YrA": YrA, "Cn": Cn, "F_dff": estimates["F_dff"], "dims": dims,
            "centres": centres}


# ---------------------------------------------------------------- suite2p


def test_suite2p_traces_without_pickles(tmp_path):
    plane = make_suite2p(tmp_path)
    data = load_suite2p(plane)
    F = np.load(plane / "F.npy")
    Fneu = np.load(plane / "Fneu.npy")
    keep = np.array([0, 2, 3])
    assert isinstance(data, PipelineData)
    assert data.traces.dtype == np.float64 and data.traces.shape == (3, 300)
    np.testing.assert_allclose(
        data.traces, F[keep].astype(float) - 0.7 * Fneu[keep].astype(float), rtol=0, atol=1e-9
    )
    np.testing.assert_array_equal(data.roi_ids, keep + 1)
    assert data.fs is None and data.labels is None and data.mean_image is None
    assert data.source == str(plane)


def test_suite2p_never_unpickles_without_permission(tmp_path):
    plane = make_suite2p(tmp_path)
    marker = tmp_path / "pickle_ran"

    class Evil:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    np.save(plane / "stat.npy", np.array([Evil()], dtype=object), allow_pickle=True)
    np.save(plane / "ops.npy", np.array(Evil(), dtype=object), allow_pickle=True)
    data = load_suite2p(plane)
    assert not marker.exists()
    assert data.labels is None
    # and with permission the pickle is what it is: it runs
    with pytest.raises(ValueError):
        load_suite2p(plane, allow_pickle=True)
    assert marker.exists()


def test_suite2p_footprints_fs_and_mean_image(tmp_path):
    plane = make_suite2p(tmp_path)
    data = load_suite2p(plane, allow_pickle=True)
    ops = np.load(plane / "ops.npy", allow_pickle=True).item()
    stat = np.load(plane / "stat.npy", allow_pickle=True)
    assert data.fs == 15.0
    np.testing.assert_array_equal(data.mean_image, ops["meanImg"])
    assert data.labels.dtype == np.int32 and data.labels.shape == (LY, LX)
    # expected labels built independently: each kept ROI's own (non-overlap) pixels
    expected = np.zeros((LY, LX), np.int32)
    for k in (0, 2, 3):
        s = stat[k]
        own = ~s["overlap"]
        expected[s["ypix"][own], s["xpix"][own]] = k + 1
    np.testing.assert_array_equal(data.labels, expected)
    # ROIs 0 and 1 overlap in the test layout; ROI 1 is not a cell and absent
    assert stat[0]["overlap"].any()
    assert 2 not in np.unique(data.labels)
    assert set(np.unique(data.labels)) == {0, 1, 3, 4}


def test_suite2p_options(tmp_path):
    plane = make_suite2p(tmp_path)
    F = np.load(plane / "F.npy").astype(float)
    data = load_suite2p(plane, neuropil=0.0, only_cells=False, fs=30.0, allow_pickle=True)
    np.testing.assert_array_equal(data.traces, F)
    np.testing.assert_array_equal(data.roi_ids, np.arange(1, 6))
    assert data.fs == 30.0  # the argument wins over ops['fs']
    assert set(np.unique(data.labels)) == {0, 1, 2, 3, 4, 5}
    # the suite2p folder itself (single plane) is accepted too
    data2 = load_suite2p(plane.parent)
    assert data2.source == str(plane)


def test_suite2p_several_planes_need_a_choice(tmp_path):
    plane = make_suite2p(tmp_path)
    other = plane.parent / "plane1"
    other.mkdir()
    for f in ("F.npy", "Fneu.npy"):
        (other / f).write_bytes((plane / f).read_bytes())
    with pytest.raises(ValueError, match="2 planes.*plane0"):
        load_suite2p(plane.parent)


@pytest.mark.parametrize(
    "damage, exc, pattern",
    [
        ("no_fneu", FileNotFoundError, r"Fneu\.npy"),
        ("truncated_F", ValueError, r"F\.npy.*truncated"),
        ("object_F", ValueError, r"F\.npy.*Python objects"),
        ("shape_Fneu", ValueError, r"Fneu\.npy.*shape"),
        ("iscell_length", ValueError, r"iscell\.npy.*4 ROIs.*5"),
        ("stat_no_ypix", ValueError, r"stat\.npy.*'ypix'"),
        ("stat_truncated", ValueError, r"stat\.npy.*truncated"),
        ("ops_no_fs", ValueError, r"ops\.npy.*'fs'"),
        ("stat_length", ValueError, r"stat\.npy.*4 ROIs"),
    ],
)
def test_suite2p_bad_files(tmp_path, damage, exc, pattern):
    plane = make_suite2p(tmp_path)
    if damage == "no_fneu":
        (plane / "Fneu.npy").unlink()
    elif damage == "truncated_F":
        raw = (plane / "F.npy").read_bytes()
        (plane / "F.npy").write_bytes(raw[: len(raw) // 2])
    elif damage == "object_F":
        np.save(plane / "F.npy", np.array([{"a": 1}] * 5, dtype=object), allow_pickle=True)
    elif damage == "shape_Fneu":
        np.save(plane / "Fneu.npy", np.zeros((5, 10), np.float32))
    elif damage == "iscell_length":
        np.save(plane / "iscell.npy", np.ones((4, 2)))
    elif damage == "stat_no_ypix":
        stat = list(np.load(plane / "stat.npy", allow_pickle=True))
        del stat[2]["ypix"]
        np.save(plane / "stat.npy", stat)
    elif damage == "stat_truncated":
        raw = (plane / "stat.npy").read_bytes()
        (plane / "stat.npy").write_bytes(raw[: len(raw) // 3])
    elif damage == "ops_no_fs":
        ops = np.load(plane / "ops.npy", allow_pickle=True).item()
        del ops["fs"]
        np.save(plane / "ops.npy", ops)
    elif damage == "stat_length":
        stat = list(np.load(plane / "stat.npy", allow_pickle=True))
        np.save(plane / "stat.npy", stat[:4])
    with pytest.raises(exc, match=pattern):
        load_suite2p(plane, allow_pickle=True)


def test_suite2p_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_suite2p(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="F.npy and Fneu.npy not found"):
        load_suite2p(tmp_path / "empty")


# ---------------------------------------------------------------- CaImAn


def test_caiman_traces_fs_footprints(tmp_path):
    path = tmp_path / "cnmf.hdf5"
    ref = make_caiman(path)
    data = load_caiman_data(path, trace="C", only_accepted=False)
    # calab's trace, estimates/C; all components asked for (rejected too, said in notes)
    np.testing.assert_array_equal(data.traces, ref["C"])
    assert data.kind == "C"
    assert any("2 rejected" in n for n in data.notes)
    raw = load_caiman_data(path, trace="C+YrA", only_accepted=False)
    np.testing.assert_array_equal(raw.traces, ref["C"] + ref["YrA"])
    assert raw.kind == "C + YrA"
    assert load_caiman_data(path, fs=20.0).fs == 20.0
    assert data.fs == 10.0
    np.testing.assert_array_equal(data.roi_ids, [1, 2, 3, 4])
    np.testing.assert_array_equal(data.mean_image, ref["Cn"])
    assert data.labels.shape == ref["dims"] and data.labels.dtype == np.int32
    # independent expectation: per pixel, the component with the largest weight
    A_img = ref["A"].reshape(ref["dims"] + (4,), order="F")
    expected = np.where(A_img.max(axis=2) > 0, A_img.argmax(axis=2) + 1, 0)
    np.testing.assert_array_equal(data.labels, expected)
    # each footprint sits where its centre is (catches a C- vs F-order mix-up)
    for k, (cy, cx) in enumerate(ref["centres"]):
        assert data.labels[cy, cx] == k + 1


def test_caiman_dff_and_accepted_only(tmp_path):
    path = tmp_path / "cnmf.h5"
    ref = make_caiman(path, with_dff=True)
    data = load_caiman_data(path, trace="F_dff", only_accepted=True)
    np.testing.assert_array_equal(data.traces, ref["F_dff"][[0, 2]])
    assert data.kind == "F_dff"
    np.testing.assert_array_equal(data.roi_ids, [1, 3])
    assert set(np.unique(data.labels)) == {0, 1, 3}


def _edit_h5(path, fn):
    import h5py

    with h5py.File(path, "a") as h5:
        fn(h5)


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (lambda h: h.__delitem__("estimates/C"), r"cnmf\.hdf5.*'estimates/C'"),
        (lambda h: h.__delitem__("estimates/A/indptr"), r"cnmf\.hdf5.*'estimates/A/indptr'"),
        (lambda h: h.__delitem__("estimates"), r"cnmf\.hdf5.*'estimates'"),
        (lambda h: (h.__delitem__("params/data/dims"), h.__delitem__("estimates/dims"),
                    h.__delitem__("dims")), r"cnmf\.hdf5.*'params/data/dims'"),
        (lambda h: (h.__delitem__("estimates/YrA"), h.create_dataset("estimates/YrA", data=np.zeros((3, 5)))),
         r"cnmf\.hdf5.*'estimates/YrA'.*shape"),
    ],
)
def test_caiman_malformed(tmp_path, edit, pattern):
    path = tmp_path / "cnmf.hdf5"
    make_caiman(path)
    _edit_h5(path, edit)
    with pytest.raises(ValueError, match=pattern):
        load_caiman_data(path, trace="C+YrA")


def test_caiman_truncated_and_foreign_files(tmp_path):
    path = tmp_path / "cnmf.hdf5"
    make_caiman(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"cnmf\.hdf5"):
        load_caiman_data(path)
    other = tmp_path / "notes.h5"
    other.write_text("not hdf5")
    with pytest.raises(ValueError, match=r"notes\.h5.*not an HDF5"):
        load_caiman_data(other)
    with pytest.raises(FileNotFoundError, match="missing.hdf5"):
        load_caiman_data(tmp_path / "missing.hdf5")


def test_caiman_without_h5py_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "cnmf.hdf5"
    make_caiman(path)
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"napari-catune\[caiman\]"):
        load_caiman_data(path)


def test_caiman_without_footprints_or_rate(tmp_path):
    path = tmp_path / "cnmf.hdf5"
    ref = make_caiman(path)
    _edit_h5(path, lambda h: (h.__delitem__("estimates/A"), h.__delitem__("params/data/fr"),
                              h.__delitem__("estimates/YrA")))
    data = load_caiman_data(path, only_accepted=False)
    assert data.labels is None and data.fs is None
    np.testing.assert_array_equal(data.traces, ref["C"])
    assert data.kind == "C"


# ---------------------------------------------------------------- tiles


def test_tile_labels_layout():
    lab = tile_labels(5, tile=4, gap=1)
    # 5 tiles -> 3 columns, 2 rows; each tile 4x4 with 1-pixel gaps around
    assert lab.shape == (1 + 2 * 5, 1 + 3 * 5)
    for i in range(5):
        r, c = divmod(i, 3)
        y, x = 1 + 5 * r, 1 + 5 * c
        assert (lab[y : y + 4, x : x + 4] == i + 1).all()
    assert (np.bincount(lab.ravel())[1:] == 16).all()
    assert (lab[0] == 0).all() and (lab[:, 0] == 0).all()
    ids = tile_labels(3, ids=[7, 9, 11])
    assert set(np.unique(ids)) == {0, 7, 9, 11}
    with pytest.raises(ValueError, match="2 ids for 3"):
        tile_labels(3, ids=[1, 2])


# ---------------------------------------------------------------- suite2p: coefficient, 1.x, combined, memory


def make_suite2p_v1(root: pathlib.Path, n: int = 5, T: int = 300, fs: float = 20.0,
                    neucoeff: float = 0.6, save_ops_orig: bool = False, seed: int = 0):
    """A suite2p 1.x plane folder as suite2p 1.x writes it.

    Layout from MouseLand/suite2p 1.x: ``run_s2p.py`` saves ``db.npy`` (Ly,
    Lx, nframes, paths) and ``settings.npy`` (``fs``, ``tau``, nested blocks
    such as ``settings["extraction"]["neuropil_coefficient"]``, defined in
    ``parameters.py``) per plane; ``pipeline_s2p.py`` saves
    ``reg_outputs.npy`` (``meanImg``, ``yrange``/``xrange``, ...), ``stat.npy``,
    ``detect_outputs.npy``, ``F.npy``, ``Fneu.npy``, ``spks.npy``,
    ``iscell.npy``; ``ops.npy`` (all dicts merged) only with
    ``settings["io"]["save_ops_orig"]``.
    """
    plane = make_suite2p(root, n=n, T=T, seed=seed)
    (plane / "ops.npy").unlink()
    big_ly, big_lx = LY + 10, LX + 7  # larger than the ROIs' extent
    rng = np.random.default_rng(seed + 1)
    db = {"Ly": big_ly, "Lx": big_lx, "nframes": T, "nchannels": 1, "save_path": str(plane),
          "data_path": [str(root)], "reg_file": str(plane / "data.bin"), "keep_movie_raw": False,
          "iplane": 0, "nplanes": 1}
    settings = {"fs": fs, "tau": 1.0, "diameter": [12.0, 12.0],
                "run": {"do_registration": 1, "do_detection": True, "do_deconvolution": True},
                "io": {"combined": True, "save_mat": False, "save_ops_orig": save_ops_orig},
                "extraction": {"neuropil_extract": True, "neuropil_coefficient": neucoeff,
                               "inner_neuropil_radius": 2, "batch_size": 500}}
    reg_outputs = {"meanImg": rng.uniform(0, 1000, (big_ly, big_lx)).astype(np.float32),
                   "yrange": [0, big_ly], "xrange": [0, big_lx], "badframes": np.zeros(T, bool)}
    np.save(plane / "db.npy", db)
    np.save(plane / "settings.npy", settings)
    np.save(plane / "reg_outputs.npy", reg_outputs)
    np.save(plane / "detect_outputs.npy", {"Vcorr": np.zeros((big_ly, big_lx), np.float32)})
    if save_ops_orig:
        np.save(plane / "ops.npy", {**db, **settings, **reg_outputs})
    return plane, (big_ly, big_lx), reg_outputs["meanImg"]


def test_suite2p_neucoeff_from_ops(tmp_path):
    plane = make_suite2p(tmp_path)
    ops = np.load(plane / "ops.npy", allow_pickle=True).item()
    ops["neucoeff"] = 0.5  # suite2p 0.x's key
    np.save(plane / "ops.npy", ops)
    F = np.load(plane / "F.npy").astype(float)
    Fneu = np.load(plane / "Fneu.npy").astype(float)
    keep = [0, 2, 3]
    data = load_suite2p(plane, allow_pickle=True)
    np.testing.assert_allclose(data.traces, F[keep] - 0.5 * Fneu[keep], atol=1e-9)
    assert data.kind == "F - 0.5*Fneu"
    # an explicit coefficient wins
    np.testing.assert_allclose(load_suite2p(plane, neuropil=0.0, allow_pickle=True).traces, F[keep])
    # without permission to unpickle ops.npy: suite2p's default, and the notes say so
    plain = load_suite2p(plane)
    np.testing.assert_allclose(plain.traces, F[keep] - 0.7 * Fneu[keep], atol=1e-9)
    assert any("default 0.7" in n for n in plain.notes)
    with pytest.raises(ValueError, match="neucoeff"):
        ops["neucoeff"] = -1.0
        np.save(plane / "ops.npy", ops)
        load_suite2p(plane, allow_pickle=True)


@pytest.mark.parametrize("save_ops_orig", [False, True])
def test_suite2p_v1_plane(tmp_path, save_ops_orig):
    plane, shape, mean = make_suite2p_v1(tmp_path, save_ops_orig=save_ops_orig)
    assert (plane / "ops.npy").is_file() == save_ops_orig
    F = np.load(plane / "F.npy").astype(float)
    Fneu = np.load(plane / "Fneu.npy").astype(float)
    data = load_suite2p(plane, allow_pickle=True)
    assert data.fs == 20.0  # settings["fs"]
    np.testing.assert_allclose(data.traces, F[[0, 2, 3]] - 0.6 * Fneu[[0, 2, 3]], atol=1e-9)
    assert data.kind == "F - 0.6*Fneu"  # settings["extraction"]["neuropil_coefficient"]
    assert data.labels.shape == shape  # db's Ly, Lx, not the ROIs' extent
    np.testing.assert_array_equal(data.mean_image, mean)  # reg_outputs["meanImg"]
    # the same ROIs land on the same pixels as with a 0.x ops.npy
    ref = load_suite2p(make_suite2p(tmp_path / "v0"), allow_pickle=True).labels
    np.testing.assert_array_equal(data.labels[:LY, :LX], ref)
    assert not data.labels[LY:].any() and not data.labels[:, LX:].any()
    # without permission: no pickle read, fs unknown, and the notes name the files
    plain = load_suite2p(plane)
    assert plain.fs is None and plain.labels is None
    assert any("settings.npy" in n or "ops.npy" in n for n in plain.notes)


def test_suite2p_v1_missing_fs(tmp_path):
    plane, _, _ = make_suite2p_v1(tmp_path)
    settings = np.load(plane / "settings.npy", allow_pickle=True).item()
    del settings["fs"]
    np.save(plane / "settings.npy", settings)
    with pytest.raises(ValueError, match=r"settings\.npy.*'fs'"):
        load_suite2p(plane, allow_pickle=True)
    assert load_suite2p(plane, allow_pickle=True, fs=12.5).fs == 12.5


def test_suite2p_several_planes_name_combined(tmp_path):
    plane = make_suite2p(tmp_path)
    root = plane.parent
    other = root / "plane1"
    other.mkdir()
    for f in ("F.npy", "Fneu.npy"):
        (other / f).write_bytes((plane / f).read_bytes())
    with pytest.raises(ValueError, match="'combined' folder"):
        load_suite2p(root)
    # suite2p's io.combined (save.py: combined) writes suite2p/combined with the merged arrays
    combined = root / "combined"
    combined.mkdir()
    for f in ("F.npy", "Fneu.npy", "iscell.npy"):
        (combined / f).write_bytes((plane / f).read_bytes())
    with pytest.raises(ValueError, match=r"2 planes.*plane0.*combined \(all planes merged"):
        load_suite2p(root)
    assert load_suite2p(combined).source == str(combined)


def test_suite2p_streams_F_and_Fneu(tmp_path, monkeypatch):
    """F - c*Fneu is built a block of rows at a time: peak memory is the result plus a block."""
    import tracemalloc

    from napari_catune import loaders

    n, T = 300, 4000
    plane = tmp_path / "plane0"
    plane.mkdir()
    rng = np.random.default_rng(3)
    F = rng.standard_normal((n, T)).astype(np.float32)
    Fneu = rng.standard_normal((n, T)).astype(np.float32)
    np.save(plane / "F.npy", F)
    np.save(plane / "Fneu.npy", Fneu)
    iscell = np.zeros((n, 2))
    iscell[::3, 0] = 1  # every third ROI: rows spread over the file
    np.save(plane / "iscell.npy", iscell)
    keep = np.arange(0, n, 3)
    monkeypatch.setattr(loaders, "_BLOCK_BYTES", 2**20)
    tracemalloc.start()
    try:
        data = load_suite2p(plane, neuropil=0.7)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    want = F[keep].astype(float) - 0.7 * Fneu[keep].astype(float)
    np.testing.assert_allclose(data.traces, want, rtol=0, atol=1e-9)
    out_bytes = keep.size * T * 8
    # whole float64 copies of both inputs would add 2 x 3.2 MB for the kept rows
    assert peak < out_bytes + 2.5 * 2**20, (peak, out_bytes)
    # every row kept, odd block size: the same numbers
    monkeypatch.setattr(loaders, "_BLOCK_BYTES", 7 * 8 * T)
    all_rows = load_suite2p(plane, neuropil=0.25, only_cells=False).traces
    np.testing.assert_allclose(all_rows, F.astype(float) - 0.25 * Fneu.astype(float), atol=1e-9)


def test_suite2p_fortran_ordered_files(tmp_path):
    plane = make_suite2p(tmp_path)
    F = np.load(plane / "F.npy")
    Fneu = np.load(plane / "Fneu.npy")
    np.save(plane / "F.npy", np.asfortranarray(F))
    np.save(plane / "Fneu.npy", np.asfortranarray(Fneu))
    data = load_suite2p(plane, neuropil=0.7, only_cells=False)
    np.testing.assert_allclose(data.traces, F.astype(float) - 0.7 * Fneu.astype(float), atol=1e-9)


def test_caiman_trace_choice_errors(tmp_path):
    path = tmp_path / "cnmf.hdf5"
    make_caiman(path)  # no F_dff: CaImAn stores "NoneType" until detrend_df_f() runs
    with pytest.raises(ValueError, match=r"estimates/F_dff.*detrend_df_f"):
        load_caiman_data(path, trace="F_dff")
    with pytest.raises(ValueError, match="trace must be one of"):
        load_caiman_data(path, trace="S")
    # only_accepted without component evaluation keeps everything and says so
    _edit_h5(path, lambda h: (h.__delitem__("estimates/idx_components"),
                              h.__setitem__("estimates/idx_components", "NoneType")))
    data = load_caiman_data(path, only_accepted=True)
    assert data.traces.shape[0] == 4
    assert any("all components kept" in n for n in data.notes)


def test_load_caiman_old_name_still_works(tmp_path):
    from napari_catune import loaders

    path = tmp_path / "cnmf.hdf5"
    ref = make_caiman(path)
    with pytest.warns(DeprecationWarning, match="load_caiman_data"):
        data = loaders.load_caiman(path, only_accepted=True)
    # load_caiman_data's default: C + YrA where the file stores YrA
    np.testing.assert_array_equal(data.traces, (ref["C"] + ref["YrA"])[[0, 2]])


# ---------------------------------------------------------------- Minian


def make_minian(dpath: pathlib.Path, n: int = 4, T: int = 200, seed: int = 5,
                unit_ids=(0, 3, 7, 12)) -> dict:
    """Minian output as ``minian.utilities.save_minian`` writes it.

    ``save_minian(var, dpath)`` stores ``var.to_dataset()`` with xarray's
    ``to_zarr`` at ``dpath/<var.name>.zarr``: a zarr (v2) group holding the
    variable and its coordinate arrays, each with the xarray attribute
    ``_ARRAY_DIMENSIONS`` (Minian's toy data: ``A.zarr/A/.zattrs`` lists
    ``["unit_id", "height", "width"]``); ``C`` is ``(unit_id, frame)``.
    """
    import zarr

    rng = np.random.default_rng(seed)
    dpath.mkdir(parents=True, exist_ok=True)
    H, W = 20, 26
    ids = np.asarray(unit_ids[:n], dtype=np.int64)
    C = np.abs(rng.standard_normal((n, T))).astype(np.float32)
    A = np.zeros((n, H, W), np.float32)
    centres = [(4, 4), (4, 12), (14, 18), (15, 5)][:n]
    yy, xx = np.mgrid[:H, :W]
    for k, (cy, cx) in enumerate(centres):
        w = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 1.5**2))
        A[k] = np.where(w > 0.1, w, 0)
    max_proj = rng.uniform(0, 255, (H, W)).astype(np.float32)

    def save(name, data, dims, coords):
        g = zarr.open_group(str(dpath / f"{name}.zarr"), mode="w", zarr_format=2)
        a = g.create_array(name, shape=data.shape, dtype=data.dtype)
        a[...] = data
        a.attrs["_ARRAY_DIMENSIONS"] = list(dims)
        a.attrs["coordinates"] = "animal session"
        for cname, cval in coords.items():
            c = g.create_array(cname, shape=cval.shape, dtype=cval.dtype)
            c[...] = cval
            c.attrs["_ARRAY_DIMENSIONS"] = [cname]

    save("C", C, ("unit_id", "frame"), {"unit_id": ids, "frame": np.arange(T)})
    save("A", A, ("unit_id", "height", "width"),
         {"unit_id": ids, "height": np.arange(H), "width": np.arange(W)})
    save("max_proj", max_proj, ("height", "width"), {"height": np.arange(H), "width": np.arange(W)})
    return {"C": C, "A": A, "ids": ids, "max_proj": max_proj, "centres": centres}


def test_minian_layout(tmp_path):
    from napari_catune.loaders import load_minian_data

    ref = make_minian(tmp_path / "minian")
    data = load_minian_data(tmp_path / "minian", fs=20.0)
    np.testing.assert_array_equal(data.traces, ref["C"].astype(float))
    assert data.fs == 20.0 and data.kind == "minian C"
    np.testing.assert_array_equal(data.roi_ids, ref["ids"] + 1)  # unit_id + 1
    np.testing.assert_array_equal(data.mean_image, ref["max_proj"])
    expected = np.where(ref["A"].max(axis=0) > 0, (ref["ids"] + 1)[ref["A"].argmax(axis=0)], 0)
    np.testing.assert_array_equal(data.labels, expected)
    for k, (cy, cx) in enumerate(ref["centres"]):
        assert data.labels[cy, cx] == ref["ids"][k] + 1
    # the C.zarr store itself is accepted too; Minian keeps no frame rate
    alone = load_minian_data(tmp_path / "minian" / "C.zarr")
    np.testing.assert_array_equal(alone.traces, data.traces)
    assert alone.fs is None and any("frame rate" in n for n in alone.notes)


def test_minian_errors(tmp_path):
    from napari_catune.loaders import load_minian_data

    make_minian(tmp_path / "minian")
    with pytest.raises(FileNotFoundError):
        load_minian_data(tmp_path / "nope")
    with pytest.raises(ValueError, match=r"no variable 'S'.*A, C, max_proj"):
        load_minian_data(tmp_path / "minian", trace_key="S")
    with pytest.raises(KeyError):
        load_minian_data(tmp_path / "minian", trace_key="S")
    with pytest.raises(ValueError, match="fs must be a positive"):
        load_minian_data(tmp_path / "minian", fs=0)


def test_suite2p_keeps_which_rois_share_pixels(tmp_path):
    """suite2p flags pixels in two or more ROIs ('overlap') and leaves them out of
    every trace, so the label image shows them as background: which ROIs meet
    there is kept (``shared``) for the click message."""
    from napari_catune.loaders import rois_at

    plane = make_suite2p(tmp_path)
    stat = np.load(plane / "stat.npy", allow_pickle=True)
    owner = np.zeros((LY, LX), int)
    for s in stat:
        owner[s["ypix"], s["xpix"]] += 1
    want = np.argwhere(owner > 1)
    assert want.size  # ROIs 1 and 2 (indices 0, 1) overlap in the test layout
    for only_cells in (False, True):  # ROI 2 is not a cell: still named as a sharer
        data = load_suite2p(plane, allow_pickle=True, only_cells=only_cells)
        np.testing.assert_array_equal(data.shared["pixels"], want)
        assert data.shared["rois"] == [(1, 2)] * len(want)
        r, c = want[0]
        assert data.labels[r, c] == 0 and rois_at(data.shared, r, c) == (1, 2)
        assert rois_at(data.shared, 0, 0) == ()
        assert any(n.startswith("overlaps: ") for n in data.notes)
    lone = make_suite2p(tmp_path / "one", n=1, iscell=(1,))
    assert load_suite2p(lone, allow_pickle=True).shared is None
