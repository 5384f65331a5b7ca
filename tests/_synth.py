"""Shared synthetic traces for tests: sparse spikes through the CaTune kernel plus noise."""

import numpy as np

from napari_catune.kernel import build_kernel


def calcium_traces(n, T, *, fs, tau_r, tau_d, seed=0, rate=0.03, noise=0.1, offset=1.0):
    rng = np.random.default_rng(seed)
    spikes = (rng.uniform(size=(n, T)) < rate) * rng.uniform(0.5, 2.0, (n, T))
    h = build_kernel(tau_r, tau_d, fs)
    calcium = np.array([np.convolve(s, h)[:T] for s in spikes])
    return calcium + noise * rng.standard_normal((n, T)) + offset


def can_mount_tmpfs() -> bool:
    """Whether a private tmpfs can be mounted here (``unshare -rm``): the tests
    that fill a real small disk run only where it can."""
    import shutil
    import subprocess

    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0
