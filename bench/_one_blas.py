"""One BLAS thread for the benchmarks that time OASIS; import before NumPy.

OASIS's ``oasisAR2`` calls BLAS on some kernels (slow 1 kHz: its process CPU
time exceeded its wall time by ~0.15 s on a 1M-frame trace), and OpenBLAS's
pool threads then spin on the other core for ~0.06 s after it returns.
Process CPU time bills that spin to whatever runs next -- in an interleaved
run, our solve (1M frames, slow 1 kHz: ours 0.20-0.22 s CPU for 0.14-0.16 s
wall).  "Per core" means one thread each, so the pool is held to one thread
(OASIS's wall time was the same: 0.79-0.91 s with the pool, 0.86-0.94 s
without).  Set OPENBLAS_NUM_THREADS yourself to override.
"""
import os

for _name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
