"""The README's Python examples run as written; its command-line examples parse and run after
``make demo`` (which wrote runs/quickstart/); its course and notebook instructions name what
exists; and the slips of issue #29 stay fixed."""
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def test_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 4
    namespace = {}
    for code in blocks:                       # the op examples build on each other, in order
        exec(compile(code, str(README), "exec"), namespace)
    assert namespace["col"].shape == (2, 27, 81)
    assert abs(float((namespace["y"] * namespace["g"]).sum()) - float((namespace["x"] * namespace["xt"]).sum())) < 1e-2


def command_line_examples():
    text = README.read_text()
    section = text[text.index("## The command line"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line.split("  #")[0]) for line in block.splitlines()
            if line.startswith("minimal-ep")]


def test_command_line_examples_parse_and_run_after_make_demo():
    """Every example is a valid command line; none writes into runs/quickstart/ (which make demo
    wrote, so they would refuse); a --resume continues a run an earlier example started; the
    configs they name exist."""
    from minimal_ep.run import cli

    examples = command_line_examples()
    assert len(examples) >= 8
    started = set()
    for argv in examples:
        args = cli.build_parser().parse_args(argv[1:])
        if args.command != "train":
            continue
        assert args.out is not None, (f"{shlex.join(argv)}: name an --out (make demo wrote "
                                      "runs/quickstart, which a new run refuses)")
        assert pathlib.Path(args.out) != pathlib.Path("runs/quickstart"), shlex.join(argv)
        if args.config:
            assert (REPO / args.config).exists(), args.config
        if args.resume:
            assert args.out in started, f"{shlex.join(argv)}: resumes a run no example started"
        started.add(args.out)
    evaluate = [a for a in examples if a[1] == "evaluate"]
    assert evaluate and "runs/quickstart/checkpoint.npz" in evaluate[0], "evaluate what make demo wrote"


def test_paragraph_and_course_sections():
    text = README.read_text()
    paragraph = text[text.index("## Equilibrium Propagation in a paragraph"):text.index("## Two commands")]
    assert "fixed point of a scalar function" not in paragraph          # a fixed point of the dynamics
    assert "fixed point of these dynamics" in paragraph and "stationary point" in paragraph
    course = text[text.index("## Learn it"):text.index("## The API in ten lines")]
    assert 'pip install -e ".[notebook]"' in course and "jupyter lab" in course
    assert "make grade DIR=" in course and "tutorials/exercises/" in course
    assert "[syllabus](docs/course/syllabus.md)" in course
    assert "ground truth" not in text and "the true gradient" not in text
    # the syllabus quotes the README's demo time, not a number of its own
    demo = re.search(r"trains the quickstart spiking net \(about (\d+) minutes\)", text).group(1)
    syllabus = (REPO / "docs" / "course" / "syllabus.md").read_text()
    assert f"`make demo`, about {demo} minutes" in syllabus


def test_notebook_extra():
    """pyproject's notebook extra brings Jupyter and nbconvert (what `jupytext --execute` needs)."""
    try:
        import tomllib
    except ImportError:                       # Python 3.10
        import tomli as tomllib
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {re.split(r"[<>=!~\[ ;]", r)[0].lower() for r in extras["notebook"]}
    assert {"jupyter", "nbconvert", "jupytext"} <= names, names


@pytest.mark.slow
def test_a_tutorial_executes_as_a_notebook(tmp_path):
    """The README's `jupytext --to notebook --execute`, on tutorial 01 (quick mode)."""
    pytest.importorskip("nbconvert", reason="the notebook extra is not installed")
    jupytext = shutil.which("jupytext", path=os.path.dirname(sys.executable)) or shutil.which("jupytext")
    if jupytext is None:
        pytest.skip("no jupytext command")
    script = tmp_path / "01_convolution.py"
    shutil.copy(REPO / "tutorials" / "01_convolution.py", script)
    env = dict(os.environ, MINIMAL_EP_QUICK="1")
    env.pop("MPLBACKEND", None)                 # the kernel's inline backend draws the figures
    proc = subprocess.run([jupytext, "--to", "notebook", "--execute", str(script)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    notebook = (tmp_path / "01_convolution.ipynb").read_text()
    assert '"output_type": "stream"' in notebook and "image/png" in notebook


def test_syllabus_points_to_sections_that_exist():
    syllabus = (REPO / "docs" / "course" / "syllabus.md").read_text()
    text = README.read_text()
    named = re.findall(r"README's\s+section\s+\*([^*]+)\*", syllabus)
    assert named, "the syllabus should name the README's section on the course"
    for title in named:
        assert f"## {' '.join(title.split())}" in text, title


def test_equations_slips_stay_fixed():
    """docs/equations.md: the energy is 1/2 ||s||^2 - Phi (not -Phi), and the total input phi_n
    has no bias (dPhi/ds_n = phi_n + b_n), as in the code and the tutorials."""
    text = (REPO / "docs" / "equations.md").read_text()
    assert "E = -Phi" not in text and "energy E = -" not in text
    assert r"E(s) = \tfrac{1}{2}\lVert s \rVert^2 - \Phi(x, s)" in text
    assert r"\frac{\partial \Phi}{\partial s_n} = \phi_n + b_n" in text
    phi = text[text.index(r"\phi_n &="):text.index(r"\end{aligned}")]
    assert "b_n" not in phi, "the total input phi_n is the two routes, without the bias"
