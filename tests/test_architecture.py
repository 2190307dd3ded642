"""The three wings (docs/ARCHITECTURE.md): what the core imports, and how many files a step reads.

* The teaching core (``minimal_ep/*.py``) imports nothing from ``minimal_ep.fast`` or
  ``minimal_ep.run``, and no module of the package imports itself back through another (no cycle).
* One free-phase step and one EP update, on the readable path, run code of exactly the files
  docs/ARCHITECTURE.md names (found by tracing, so a new helper module shows up here).
"""
import ast
import pathlib
import sys

import numpy as np
import pytest

import minimal_ep as mep
from conftest import REPO

PKG = REPO / "minimal_ep"
CORE = sorted(p.stem for p in PKG.glob("*.py") if p.stem not in ("__init__", "__main__"))
DOC = (REPO / "docs" / "ARCHITECTURE.md").read_text()

# what docs/ARCHITECTURE.md says a reader opens (readable path, fast=False)
STEP_FILES = {"network", "layers", "conv", "pooling", "dynamics"}
STEP_FILES_SPIKING = STEP_FILES | {"spiking"}
EP_FILES = STEP_FILES | {"ep"}                      # the estimate of Eq. 4-5; optim.py applies it
HELPERS = {"backend"}                               # get_array_module: one line every op calls


def module_name(path):
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_or_package(dotted):
    p = REPO / dotted.replace(".", "/")
    return p.with_suffix(".py").exists() or p.is_dir()


def imports(path):
    """The minimal_ep modules ``path`` imports (``from .x import y`` counts as x, or x.y if a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            base = ".".join(base + ([node.module] if node.module else []))
            if base.startswith("minimal_ep"):
                out |= {f"{base}.{a.name}" if _module_or_package(f"{base}.{a.name}") else base for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("minimal_ep")}
    return out


@pytest.mark.parametrize("name", CORE)
def test_the_core_imports_nothing_from_fast_or_run(name):
    bad = {m for m in imports(PKG / f"{name}.py") if m.startswith(("minimal_ep.fast", "minimal_ep.run"))}
    assert bad == set(), f"minimal_ep/{name}.py imports {sorted(bad)}"


def test_no_import_cycle_in_the_package():
    graph = {module_name(p): {m for m in imports(p) if m != module_name(p)} for p in PKG.rglob("*.py")}
    graph = {k: {m for m in v if m in graph} for k, v in graph.items()}
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if nxt == "minimal_ep" or node == "minimal_ep":
                continue                                   # the facade gathers names; nothing imports it back
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join(path + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"
    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_the_import_parser_sees_relative_imports():
    """(so that the two tests above can fail)"""
    assert "minimal_ep.network" in imports(PKG / "ep.py") and "minimal_ep.fast" in imports(PKG / "run" / "build.py")


def files_run(fn):
    """The stems of minimal_ep's files whose code runs during ``fn()``."""
    seen = set()

    def tracer(frame, event, arg):
        f = pathlib.Path(frame.f_code.co_filename)
        if f.is_relative_to(PKG):
            seen.add(f.relative_to(PKG).with_suffix("").as_posix())
        return None
    sys.setprofile(tracer)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return seen


@pytest.mark.parametrize("pool", ["avg", "max"])
@pytest.mark.parametrize("spiking", [False, True])
def test_one_step_and_one_ep_update_read_the_files_the_architecture_names(pool, spiking):
    net = mep.build_network(input_shape=(1, 12, 12), conv_channels=(4,), hidden=(8,), n_classes=3, pool=pool,
                            padding=1, spiking=spiking, fast=False, dtype="float64")
    rng = np.random.default_rng(0)
    x, y = rng.random((4, 1, 12, 12)), rng.integers(0, 3, 4)
    state, _ = net.free_phase(x, 3)
    step = files_run(lambda: net.step(state))
    assert step - HELPERS == (STEP_FILES_SPIKING if spiking else STEP_FILES)
    update = files_run(lambda: mep.ep_gradients(net, x, y, 0.1, 3, 2, free_state=state))
    assert update - HELPERS == (EP_FILES | {"spiking"} if spiking else EP_FILES)
    for name in (STEP_FILES_SPIKING | EP_FILES | HELPERS):
        assert f"`{name}.py`" in DOC, name
