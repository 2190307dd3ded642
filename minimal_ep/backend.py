"""The array backend: NumPy on the CPU, CuPy on a GPU.

One place decides which array module new arrays are created with. Functions that take arrays
never ask this module; they use :func:`get_array_module` on their arguments and so work on
whichever backend the arrays live on. Only code that *creates* arrays from nothing (network
initialisation, data loading) asks for the active module with :func:`get_xp`.

The backend is chosen by the environment variable ``MINIMAL_EP_BACKEND=numpy|cupy`` (default
``numpy``) and can be switched at run time with :func:`set_backend`. CuPy is imported lazily, only
when it is asked for. Random numbers are always drawn on the host with ``numpy.random.default_rng``
and then moved, so a CPU run and a GPU run of one seed start from identical arrays.
"""
import os
import sys

import numpy

BACKENDS = ("numpy", "cupy")
DTYPES = ("float32", "float64")
_active = None  # resolved from MINIMAL_EP_BACKEND on first use


def _import_cupy():
    """Import CuPy and check that a GPU can be used; a clear error otherwise."""
    try:
        import cupy
    except ImportError as err:
        raise RuntimeError(
            "backend 'cupy' requested but CuPy is not installed; "
            "install it with `pip install minimal_ep[gpu]` (cupy-cuda12x)") from err
    if not cupy.cuda.is_available():
        raise RuntimeError(
            "backend 'cupy' requested but cupy.cuda.is_available() is False: "
            "no usable CUDA GPU on this machine; use MINIMAL_EP_BACKEND=numpy")
    return cupy


def gpu_available():
    """True when CuPy is installed and sees a CUDA device."""
    try:
        import cupy
        return bool(cupy.cuda.is_available())
    except Exception:  # ImportError, or CUDA libraries that fail to load
        return False


def set_backend(name):
    """Make ``name`` ("numpy" or "cupy") the backend that new arrays are created on."""
    global _active
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; allowed: {', '.join(BACKENDS)}")
    if name == "cupy":
        _import_cupy()
    _active = name


def get_backend():
    """The active backend's name, "numpy" unless ``MINIMAL_EP_BACKEND`` or :func:`set_backend` said otherwise."""
    if _active is None:
        set_backend(os.environ.get("MINIMAL_EP_BACKEND", "numpy").strip().lower() or "numpy")
    return _active


def get_xp():
    """The active array module: ``numpy`` or ``cupy``."""
    return _import_cupy() if get_backend() == "cupy" else numpy


def get_array_module(*arrays):
    """``cupy`` if any argument is a CuPy array, else ``numpy`` (never imports CuPy itself)."""
    cupy = sys.modules.get("cupy")
    if cupy is not None and any(isinstance(a, cupy.ndarray) for a in arrays):
        return cupy
    return numpy


def to_numpy(x):
    """A NumPy array with the contents of ``x`` (a device-to-host copy for CuPy arrays)."""
    if get_array_module(x) is not numpy:
        return x.get()
    return numpy.asarray(x)


def to_device(x, dtype=None):
    """``x`` as an array of the active backend (a host-to-device copy when the backend is CuPy)."""
    return get_xp().asarray(x, dtype=dtype)


def resolve_dtype(dtype):
    """``numpy.dtype`` of "float32" or "float64"; ValueError for anything else."""
    name = numpy.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
    return numpy.dtype(name)


def default_rng(seed=None):
    """A host random generator (``numpy.random.default_rng``): draws happen on the CPU, always."""
    return numpy.random.default_rng(seed)


_THREAD_LIMIT = None     # the threadpoolctl limit in force (kept alive for the process)


def set_blas_threads(n):
    """Let the BLAS library (OpenBLAS, MKL) under NumPy use ``n`` threads from now on.

    One thread is the default of the command line: the products of the small and mid-size nets
    gain little from a second thread, and on a machine that is busy with other work a multi-threaded
    OpenBLAS spin-waits for its helper threads, which made the tutorials several times slower. The
    paper's large networks gain from more (``minimal-ep train --threads 2``; docs/PERFORMANCE.md).
    Float32 results can differ in the last bits with the thread count (the products are summed in
    another order), and spiking dynamics amplify such differences: report the count with a result.
    """
    global _THREAD_LIMIT
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be an integer >= 1, got {n!r}")
    from threadpoolctl import threadpool_limits
    _THREAD_LIMIT = threadpool_limits(limits=n, user_api="blas")
    return n
