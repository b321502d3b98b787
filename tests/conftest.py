"""Test-wide settings."""

import os

# One BLAS thread, as the CLI sets: the small matrix products of frame synthesis and fitting
# are ~50x slower with multithreaded OpenBLAS on a loaded 2-core machine. Before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
