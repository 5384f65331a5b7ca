"""simulate_recording: ground truth consistent with the movie, deterministic."""

import numpy as np
import pytest

from napari_catune.params import TuningParams
from napari_catune.simulation import SimulatedRecording, simulate_recording

SMALL = dict(n_cells=6, n_frames=400, shape=(64, 80), fs=20.0, tau_rise=0.04, tau_decay=0.6)


@pytest.fixture(scope="module")
def rec():
    return simulate_recording(**SMALL, seed=3)


def test_shapes_and_types(rec):
    assert isinstance(rec, SimulatedRecording)
    assert rec.movie.shape == (400, 64, 80) and rec.movie.dtype == np.float32
    assert rec.labels.shape == (64, 80) and rec.labels.dtype == np.int32
    np.testing.assert_array_equal(np.unique(rec.labels), np.arange(7))  # 0 + ids 1..6
    for a in (rec.spikes, rec.calcium, rec.traces):
        assert a.shape == (6, 400)
    assert rec.traces.dtype == np.float64
    assert rec.fs == 20.0
    assert isinstance(rec.params, TuningParams)
    assert (rec.params.tau_rise, rec.params.tau_decay, rec.params.fs) == (0.04, 0.6, 20.0)
    assert 0 < rec.params.lam <= 10


def test_cells_are_soma_sized_blobs(rec):
    sizes = np.bincount(rec.labels.ravel())[1:]
    assert np.all((sizes > 40) & (sizes < 250))  # radii 5-7.5 px ellipses


def test_traces_are_roi_means_of_movie(rec):
    naive = np.array([rec.movie[:, rec.labels == i].astype(np.float64).mean(axis=1)
                      for i in range(1, 7)])
    np.testing.assert_allclose(rec.traces, naive, rtol=0, atol=1e-6)


def test_calcium_is_spikes_through_the_kernel(rec):
    spikes = rec.spikes
    assert np.all(spikes >= 0) and np.array_equal(spikes, np.round(spikes))
    assert spikes.sum() > 0
    # DESIGN.md: unit peak, cut where it decays below 1e-6 of the peak
    n = int(np.ceil(-np.log(1e-6) * 0.6 * 20.0))
    t = np.arange(n) / 20.0
    h = np.exp(-t / 0.6) - np.exp(-t / 0.04)
    h /= h.max()
    expect = np.array([np.convolve(s, h)[:400] for s in spikes])
    np.testing.assert_allclose(rec.calcium, expect, atol=1e-9)


def test_deterministic_for_a_seed():
    a = simulate_recording(**SMALL, seed=11)
    b = simulate_recording(**SMALL, seed=11)
    c = simulate_recording(**SMALL, seed=12)
    np.testing.assert_array_equal(a.movie, b.movie)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.spikes, b.spikes)
    assert not np.array_equal(a.movie, c.movie)
    assert not np.array_equal(a.labels, c.labels)


def test_photon_noise_statistics():
    """Noise = movie - noiseless movie; shot + read noise, std sqrt(F + 4)."""
    clean = simulate_recording(**SMALL, seed=5, noise=0.0)
    noisy = simulate_recording(**SMALL, seed=5, noise=1.0)
    np.testing.assert_array_equal(clean.spikes, noisy.spikes)  # same ground truth
    z = (noisy.movie - clean.movie) / np.sqrt(clean.movie.clip(0) + 4.0)
    assert abs(float(z.mean())) < 0.01
    assert float(z.std()) == pytest.approx(1.0, abs=0.02)
    # pixels are independent: no correlation between neighbours or frames
    assert abs(np.corrcoef(z[:, :, :-1].ravel(), z[:, :, 1:].ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(z[:-1].ravel(), z[1:].ravel())[0, 1]) < 0.01
    half = simulate_recording(**SMALL, seed=5, noise=0.5)
    assert float(((half.movie - clean.movie) / np.sqrt(clean.movie.clip(0) + 4.0)).std()) == \
        pytest.approx(0.5, abs=0.01)


def test_cells_follow_their_calcium(rec):
    clean = simulate_recording(**SMALL, seed=3, noise=0.0)
    active = rec.spikes.sum(axis=1) > 0
    assert active.sum() >= 4
    for tr, ca in zip(clean.traces[active], clean.calcium[active]):
        assert np.corrcoef(tr, ca)[0, 1] > 0.9  # neuropil and drift are small
    for tr, ca in zip(rec.traces[active], rec.calcium[active]):
        assert np.corrcoef(tr, ca)[0, 1] > 0.7
    # background pixels carry no single cell's spikes but drift/neuropil
    bg = rec.movie[:, rec.labels == 0].mean(axis=1)
    assert bg.std() > 0


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"n_cells": 0}, "n_cells"),
        ({"n_frames": 1}, "n_frames"),
        ({"shape": (10, 300)}, "at least 24 x 24"),
        ({"shape": 5}, "shape must be"),
        ({"n_cells": 400, "shape": (48, 48)}, "cannot place 400 cells"),
        ({"noise": -1.0}, "noise"),
        # 0.7 s < 1 s and 0.5 Hz are valid (issue 10): invalid values instead
        ({"tau_rise": 1.0, "tau_decay": 0.7}, "tau_rise"),
        ({"fs": 0.0}, "sampling rate fs"),
    ],
)
def test_bad_input(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        simulate_recording(**{**SMALL, **kwargs})
