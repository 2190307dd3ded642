"""The backend shim, and the static check that keeps the CuPy path honest without a GPU."""
import ast
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import minimal_ep
from minimal_ep import backend

PACKAGE = pathlib.Path(minimal_ep.__file__).parent


def _xp_attribute_chains():
    """Every dotted name ``xp.a`` or ``xp.a.b`` the package's modules use (the core, ``fast/`` and
    ``run/``), with where it is used."""
    chains = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            parts, base = [node.attr], node.value
            while isinstance(base, ast.Attribute):
                parts.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id == "xp":
                chains.setdefault(".".join(reversed(parts)), f"{path.relative_to(PACKAGE)}:{node.lineno}")
    # drop prefixes (xp.random when xp.random.x is listed is checked by the longer chain)
    return {c: where for c, where in chains.items() if not any(o.startswith(c + ".") for o in chains)}


def _resolve(module, dotted):
    obj = module
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def test_every_xp_name_exists_in_numpy_and_cupy():
    cupy = pytest.importorskip("cupy", reason="cupy-cuda12x is installed by .ci/run; imports without a GPU")
    chains = _xp_attribute_chains()
    assert len(chains) >= 5, f"the scan found too few xp names to be working: {chains}"
    missing = [f"{c} ({where}): {name}" for c, where in chains.items() for name, mod in
               (("numpy", np), ("cupy", cupy)) if not _has(mod, c)]
    assert not missing, "names used as xp.<name> but absent from a backend:\n" + "\n".join(missing)


def _has(module, dotted):
    try:
        _resolve(module, dotted)
        return True
    except AttributeError:
        return False


def test_static_scan_sees_known_names():
    chains = _xp_attribute_chains()
    for name in ("zeros", "where", "tensordot", "pad"):
        assert name in chains


def test_set_backend_validates_and_switches():
    previous = backend.get_backend()
    try:
        with pytest.raises(ValueError, match="unknown backend 'torch'; allowed: numpy, cupy"):
            backend.set_backend("torch")
        backend.set_backend("numpy")
        assert backend.get_backend() == "numpy" and backend.get_xp() is np
    finally:
        backend.set_backend(previous)


def test_cupy_without_gpu_is_a_clear_error():
    if backend.gpu_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match=r"cupy.*(not installed|is_available\(\) is False)"):
        backend.set_backend("cupy")
    assert backend.get_backend() in backend.BACKENDS      # the failed switch left a valid backend


def test_environment_variable_selects_backend():
    code = "import minimal_ep.backend as b; print(b.get_backend())"
    env = dict(os.environ, MINIMAL_EP_BACKEND="numpy")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "numpy"
    env["MINIMAL_EP_BACKEND"] = "tpu"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "unknown backend 'tpu'" in out.stderr


def test_get_array_module_follows_the_arrays(xp):
    a = xp.zeros(3)
    assert backend.get_array_module(a) is xp
    assert backend.get_array_module(np.zeros(2)) is np
    assert isinstance(backend.to_numpy(a), np.ndarray)
    b = backend.to_device(np.arange(3.0), dtype="float32")
    assert backend.get_array_module(b) is xp and b.dtype == np.float32


def test_random_numbers_are_drawn_on_the_host():
    a = backend.default_rng(7).uniform(size=5)
    b = backend.default_rng(7).uniform(size=5)
    assert isinstance(a, np.ndarray) and np.array_equal(a, b)


def test_resolve_dtype():
    assert backend.resolve_dtype("float32") == np.float32
    assert backend.resolve_dtype(np.float64) == np.float64
    with pytest.raises(ValueError, match="unsupported dtype 'float16'"):
        backend.resolve_dtype("float16")


def test_set_blas_threads_limits_the_blas_library_and_checks_its_argument():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    try:
        backend.set_blas_threads(2)
        blas = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
        assert blas and all(i["num_threads"] == 2 for i in blas)
        backend.set_blas_threads(1)
        blas = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
        assert all(i["num_threads"] == 1 for i in blas)
    finally:
        backend.set_blas_threads(1)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads must be an integer >= 1"):
            backend.set_blas_threads(bad)
