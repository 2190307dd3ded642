"""Every tutorial runs as a plain script in fast mode and is a valid jupytext percent notebook."""
import os
import pathlib
import subprocess
import sys

import pytest

TUTORIALS = sorted((pathlib.Path(__file__).resolve().parents[1] / "tutorials").glob("[0-9]*.py"))
IDS = [p.stem for p in TUTORIALS]


def test_tutorials_found():
    assert len(TUTORIALS) >= 2, "no tutorials/NN_*.py found"


@pytest.mark.parametrize("path", TUTORIALS, ids=IDS)
def test_tutorial_is_a_percent_notebook(path):
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(path)
    cells = nb.cells
    assert cells, f"{path.name}: no cells"
    assert cells[0].cell_type == "markdown", f"{path.name}: the first cell must be markdown (the title)"
    assert cells[0].source.lstrip().startswith("# "), f"{path.name}: the first cell must start with a title"
    assert sum(c.cell_type == "markdown" for c in cells) >= 2, f"{path.name}: too few markdown cells"
    assert any(c.cell_type == "code" for c in cells), f"{path.name}: no code cells"
    assert nb.metadata.get("jupytext", {}).get("text_representation", {}).get("format_name") == "percent"
    assert cells[-1].cell_type == "markdown" and "What we learned" in cells[-1].source


@pytest.mark.parametrize("path", TUTORIALS, ids=IDS)
def test_tutorial_runs_in_fast_mode(path, tmp_path):
    env = dict(os.environ, MINIMAL_EP_FAST="1", MPLBACKEND="Agg")
    # One BLAS thread: these matrices are small, and on a busy 2-core machine a multi-threaded
    # OpenBLAS spin-waits, which made the tutorials 5-10x slower.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    proc = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, (f"{path.name} exited with {proc.returncode}\n--- stdout (tail)\n"
                                  f"{proc.stdout[-3000:]}\n--- stderr (tail)\n{proc.stderr[-3000:]}")
