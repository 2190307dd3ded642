"""Shared fixtures: every backend-dependent test takes ``xp`` and runs once per backend.

The pattern of POT's test suite: one fixture parametrised over the array modules, the CuPy case
skipped on machines without a GPU, no test file duplicated per backend.

Tests that take more than about 1.5 s (``pytest --durations``, one BLAS thread, the 2-core machine)
are marked ``@pytest.mark.slow``. They are part of the default suite; ``pytest -m "not slow"``
leaves them out for a quick check while editing.
"""
import os
import pathlib

os.environ.setdefault("MPLBACKEND", "Agg")
# One BLAS thread (before NumPy is imported): the suite's matrices are small, and a multi-threaded
# OpenBLAS spin-waits on a busy 2-core machine, which made runs several times slower.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np
import pytest

from minimal_ep import backend

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(params=["numpy", "cupy"])
def xp(request):
    """The array module of one backend, made active for the test; restored afterwards."""
    if request.param == "cupy" and not backend.gpu_available():
        pytest.skip("no CUDA GPU: the CuPy backend is checked statically (test_backend.py)")
    previous = backend.get_backend()
    backend.set_backend(request.param)
    yield backend.get_xp()
    backend.set_backend(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def rel_err(a, b):
    """max |a - b| / max(|a|, |b|, tiny): a relative error that does not blow up near zero."""
    a, b = backend.to_numpy(a), backend.to_numpy(b)
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0), 1e-300)
    return float(np.abs(a - b).max(initial=0.0) / scale)
