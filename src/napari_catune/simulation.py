"""A synthetic two-photon recording with ground truth, for demos and tests.

Soma-shaped cells (soft-edged ellipses with a dimmer nucleus) on a neuropil
background, bursty Poisson spiking, calcium from the CaTune kernel, shot
(Poisson, Gaussian-approximated) plus read noise, and slow drift /
bleaching.  The movie is in photon units.  Deterministic for a seed.

The frame loop is a numba kernel with eight xorshift generators per frame
(seeded from the seed and the frame index) so the noise loop vectorises:
NumPy's float32 normal generator alone took ~4 s for the default 196 M
pixels here, a single-stream kernel 3 s, the eight-lane kernel ~0.4 s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from .kernel import build_kernel
from .params import TuningParams

__all__ = ["SimulatedRecording", "simulate_recording", "REGIMES", "EXTRA_REGIMES",
           "regime_traces"]


@dataclass(frozen=True, eq=False)
class SimulatedRecording:
    """A simulated recording and its ground truth.

    movie : (T, Y, X) float32, photons per pixel per frame
    labels : (Y, X) int32, cell i has label i + 1, 0 = background
    spikes : (n, T) float64 spike counts per frame
    calcium : (n, T) float64, spikes convolved with the unit-peak kernel
    traces : (n, T) float64, the mean of the movie over each label
    fs : sampling rate, Hz
    params : the kernel used (lam: a starting sparsity for these traces)
    """

    movie: np.ndarray
    labels: np.ndarray
    spikes: np.ndarray
    calcium: np.ndarray
    traces: np.ndarray
    fs: float
    params: TuningParams


_kernel = None


def _render_kernel():
    global _kernel
    if _kernel is None:
        import numba

        @numba.njit(cache=True, nogil=True)
        def render(out, base, drift, neuropil, np_trace, pix, cell, weight, cell_sig,
                   noise, read_var, seed):
            T, P = out.shape
            L = 8  # independent generator lanes, so the generator loop vectorises
            st = np.empty(L, np.uint64)
            ub = np.empty(P + L, np.float32)
            scale = noise * 1.7320508075688772  # Irwin-Hall(4) has variance 1/3
            rv = np.float32(read_var)
            zero = np.float32(0.0)
            for t in range(T):
                g = drift[t]
                nt = np_trace[t]
                row = out[t]
                for p in range(P):
                    row[p] = (base[p] + neuropil[p] * nt) * g
                sig = cell_sig[t]
                for k in range(pix.shape[0]):
                    row[pix[k]] += weight[k] * sig[cell[k]] * g
                if noise == 0.0:
                    continue
                # lane states: splitmix64 of (seed, frame, lane), one stream each
                for lane in range(L):
                    z = np.uint64(seed) + np.uint64(t * L + lane + 1) * np.uint64(0x9E3779B97F4A7C15)
                    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
                    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
                    z = z ^ (z >> np.uint64(31))
                    st[lane] = z if z != 0 else np.uint64(1)
                for p0 in range(0, P, L):
                    for lane in range(L):
                        # xorshift64*; the sum of four 16-bit uniforms ~ normal
                        z = st[lane]
                        z ^= z >> np.uint64(12)
                        z ^= z << np.uint64(25)
                        z ^= z >> np.uint64(27)
                        st[lane] = z
                        r = z * np.uint64(0x2545F4914F6CDD1D)
                        u = (np.int64(r & np.uint64(0xFFFF))
                             + np.int64((r >> np.uint64(16)) & np.uint64(0xFFFF))
                             + np.int64((r >> np.uint64(32)) & np.uint64(0xFFFF))
                             + np.int64(r >> np.uint64(48))) * (1.0 / 65536.0) - 2.0
                        ub[p0 + lane] = np.float32(u * scale)
                # shot noise (variance = photons) plus read noise
                for p in range(P):
                    lam = row[p]
                    row[p] = lam + np.sqrt(max(lam, zero) + rv) * ub[p]

        _kernel = render
    return _kernel


def _place_cells(rng, n_cells, shape, max_tries=20000):
    """Ellipse centres, radii and angles with little overlap."""
    Y, X = shape
    cells = []
    tries = 0
    while len(cells) < n_cells:
        tries += 1
        if tries > max_tries:
            raise ValueError(
                f"cannot place {n_cells} cells in a {Y} x {X} image without overlap; "
                "use fewer cells or a larger shape"
            )
        a = rng.uniform(5.0, 7.5)
        b = a * rng.uniform(0.7, 1.0)
        cy = rng.uniform(a + 2, Y - a - 2)
        cx = rng.uniform(a + 2, X - a - 2)
        if all(math.hypot(cy - c[0], cx - c[1]) > a + c[2] + 1.5 for c in cells):
            cells.append((cy, cx, a, b, rng.uniform(0, math.pi)))
    return cells


def _footprints(cells, shape):
    """Soft footprints as (pixel, cell, weight) triples, sorted by pixel, and labels."""
    Y, X = shape
    pix, who, wts = [], [], []
    labels = np.zeros(shape, np.int32)
    best = np.zeros(shape, np.float64)
    for i, (cy, cx, a, b, th) in enumerate(cells):
        r = int(math.ceil(a * 1.4)) + 1
        y0, y1 = max(0, int(cy) - r), min(Y, int(cy) + r + 2)
        x0, x1 = max(0, int(cx) - r), min(X, int(cx) + r + 2)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dy, dx = yy - cy, xx - cx
        u = (dx * math.cos(th) + dy * math.sin(th)) / a
        v = (-dx * math.sin(th) + dy * math.cos(th)) / b
        rho = np.sqrt(u * u + v * v)
        # soft edge, and a dimmer nucleus (GCaMP stays out of it)
        w = 1.0 / (1.0 + np.exp((rho - 1.0) / 0.08))
        w *= 1.0 - 0.45 * np.exp(-((rho / 0.45) ** 2))
        keep = w > 0.02
        flat = (yy * X + xx)[keep]
        pix.append(flat)
        who.append(np.full(flat.size, i))
        wts.append(w[keep])
        inside = (rho <= 1.0) & (w > best[y0:y1, x0:x1])
        labels[y0:y1, x0:x1][inside] = i + 1
        best[y0:y1, x0:x1][inside] = w[inside]
    pix, who, wts = np.concatenate(pix), np.concatenate(who), np.concatenate(wts)
    order = np.argsort(pix, kind="stable")
    pix, who, wts = pix[order], who[order], wts[order]
    return pix.astype(np.int64), who.astype(np.int64), wts.astype(np.float64), labels


def _spikes(rng, n_cells, n_frames, fs):
    """Bursty Poisson spike counts per frame (n, T)."""
    rates = rng.lognormal(np.log(0.15), 0.5, n_cells)  # burst onsets per second
    onsets = rng.random((n_cells, n_frames)) < (rates[:, None] / fs)
    # each onset fires 1 + Poisson(1.2) spikes spread over ~100 ms
    spikes = np.zeros((n_cells, n_frames))
    ci, ti = np.nonzero(onsets)
    counts = 1 + rng.poisson(1.2, ci.size)
    spread = max(1, int(round(0.1 * fs)))
    for c, t, k in zip(ci, ti, counts):
        offs = rng.integers(0, spread, k)
        np.add.at(spikes[c], np.minimum(t + offs, n_frames - 1), 1.0)
    # sparse background spikes between bursts
    spikes += rng.poisson(0.05 / fs, (n_cells, n_frames))
    return spikes


def simulate_recording(
    n_cells: int = 20,
    n_frames: int = 3000,
    fs: float = 30.0,
    tau_rise: float = 0.05,
    tau_decay: float = 0.5,
    noise: float = 1.0,
    shape: tuple[int, int] = (256, 256),
    seed: int = 0,
) -> SimulatedRecording:
    """Simulate a movie of spiking cells with ground truth.

    Parameters
    ----------
    n_cells, n_frames : int
        Number of cells (labels 1..n_cells) and frames.
    fs : float
        Sampling rate, Hz.
    tau_rise, tau_decay : float
        Kernel time constants, s (CaTune ranges).
    noise : float
        Scale of the photon + read noise (1 = physical shot noise, 0 = none).
    shape : (Y, X)
        Frame size in pixels.
    seed : int
        Same seed, same recording.

    Returns
    -------
    SimulatedRecording
    """
    n_cells, n_frames = int(n_cells), int(n_frames)
    if n_cells < 1:
        raise ValueError(f"n_cells must be at least 1, got {n_cells}")
    if n_frames < 2:
        raise ValueError(f"n_frames must be at least 2, got {n_frames}")
    try:
        Y, X = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (Y, X), got {shape!r}") from None
    if Y < 24 or X < 24:
        raise ValueError(f"shape must be at least 24 x 24 pixels, got {Y} x {X}")
    noise = float(noise)
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a number >= 0, got {noise}")
    kern = build_kernel(tau_rise, tau_decay, fs)  # validates taus and fs
    rng = np.random.default_rng(seed)
    T = n_frames

    cells = _place_cells(rng, n_cells, (Y, X))
    pix, who, wts, labels = _footprints(cells, (Y, X))

    spikes = _spikes(rng, n_cells, T, fs)
    nfft = 1 << (T + kern.size - 1).bit_length()
    calcium = np.fft.irfft(np.fft.rfft(spikes, nfft, axis=1) * np.fft.rfft(kern, nfft), nfft,
                           axis=1)[:, :T]
    calcium[np.abs(calcium) < 1e-12] = 0.0  # FFT round-off where there is no spike

    # photons: cell resting brightness F0, dF/F0 per spike (kernel has unit peak)
    f0 = rng.uniform(15.0, 30.0, n_cells)
    dff = rng.uniform(0.3, 0.7, n_cells)
    cell_sig = np.ascontiguousarray((f0 * (1.0 + dff * calcium.T)), dtype=np.float64)  # (T, n)

    # neuropil: a smooth spatial field, modulated by the cells' summed activity
    field = gaussian_filter(rng.standard_normal((Y, X)), 12.0, mode="wrap")
    field = 1.0 + 0.5 * (field - field.mean()) / (field.std() + 1e-12)
    neuropil = (8.0 * np.clip(field, 0.2, None)).ravel()
    np_trace = 1.0 + 0.25 * gaussian_filter1d(calcium.mean(axis=0), 0.5 * fs, mode="nearest")
    np_trace += 0.05 * gaussian_filter1d(rng.standard_normal(T), 2.0 * fs, mode="wrap") * math.sqrt(2 * fs)
    base = np.full(Y * X, 3.0)  # dark-ish tissue / offset

    # slow drift: bleaching plus a gentle wobble, multiplicative
    t = np.arange(T) / fs
    dur = max(T / fs, 1.0)
    drift = (1.0 - 0.12 * (1.0 - np.exp(-t / (0.7 * dur))))
    drift *= 1.0 + 0.03 * np.sin(2 * np.pi * t / dur * rng.uniform(0.6, 1.4) + rng.uniform(0, 6.3))

    movie = np.empty((T, Y * X), np.float32)
    _render_kernel()(movie, base, drift, neuropil, np_trace, pix, who, wts, cell_sig,
                     noise, 4.0, int(rng.integers(0, 2**62)))
    movie = movie.reshape(T, Y, X)

    from .traces import extract_traces

    traces, _ = extract_traces(movie, labels, ids=np.arange(1, n_cells + 1))
    lam = _starting_lambda(traces, tau_rise, tau_decay, fs)
    params = TuningParams(tau_rise, tau_decay, fs, lam)
    return SimulatedRecording(movie, labels, spikes, calcium, traces, float(fs), params)


def _starting_lambda(traces, tau_rise, tau_decay, fs) -> float:
    # a lambda that rejects noise-sized events in these traces (as estimate_params)
    from .estimate import lambda_for_noise, noise_sigma

    sigma = float(np.median(noise_sigma(traces, fs)))
    return lambda_for_noise(sigma, tau_rise, tau_decay, fs)


# ------------------------------------------------- the solver's regime grid
# Issue 12's grid, shared by the solver tests and bench/bench_regimes.py.
# name: fs (Hz), tau_rise (s), tau_decay (s), lambda, noise sd, spike rate (Hz)
REGIMES = {
    "jGCaMP8f-100Hz": (100.0, 0.01, 0.15, 0.05, 0.3, 1.0),
    "GCaMP6f-30Hz": (30.0, 0.05, 0.5, 0.05, 0.3, 1.0),
    "GCaMP6s-30Hz": (30.0, 0.1, 1.5, 0.05, 0.3, 1.0),
    "GCaMP6s-100Hz": (100.0, 0.1, 1.5, 0.05, 0.3, 1.0),
    "calab-gcamp6s-30Hz": (30.0, 0.4, 1.8, 0.05, 0.3, 1.0),
    "slow-1kHz": (1000.0, 0.2, 3.0, 0.05, 0.3, 1.0),
    "lowSNR-30Hz": (30.0, 0.05, 0.5, 0.05, 2.0, 1.0),
    "dense-30Hz": (30.0, 0.05, 0.5, 0.05, 0.3, 8.0),
    "lam0-30Hz": (30.0, 0.05, 0.5, 0.0, 0.3, 1.0),
    "lam1-30Hz": (30.0, 0.05, 0.5, 1.0, 0.3, 1.0),
}
# benchmarked, not in the tests' grid: the interior point's hardest start (no
# lambda to scale it; the solver tests have their own case for it)
EXTRA_REGIMES = {"lam0-slow-1kHz": (1000.0, 0.2, 3.0, 0.0, 0.3, 1.0)}
REGIME_OFFSET = 2.0


def regime_traces(name: str, n: int, T: int, seed: int = 0) -> np.ndarray:
    """(n, T) traces of a regime of the grid: Poisson spikes at its rate with
    exponential amplitudes, its kernel (exact AR(2) form, so a kernel longer
    than the trace costs nothing), its Gaussian noise, offset 2."""
    from .solver import reconvolve

    fs, tr, td, _lam, noise, rate = {**REGIMES, **EXTRA_REGIMES}[name]
    rng = np.random.default_rng(seed)
    spikes = (rng.random((n, T)) < rate / fs) * rng.exponential(1.0, (n, T))
    calcium = reconvolve(spikes, fs, tr, td)
    return calcium + noise * rng.standard_normal((n, T)) + REGIME_OFFSET
