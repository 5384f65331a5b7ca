"""Issue 12's solver regimes, shared by the solver tests (bench/bench_regimes.py
holds the same grid; tests do not import bench code)."""

# name: fs, tau_rise, tau_decay, lambda, noise sd, spike rate (Hz)  (bench/bench_regimes.py)
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
