"""The tutorials: valid jupytext percent notebooks that fit the page, with a SEED, one BLAS thread,
exercises and maths in LaTeX; run at their default seed **exactly as** ``python tutorials/NN_*.py``
(and as ``make docs`` runs them), every number their text quotes is the one the code prints; and
they run in quick mode (``MINIMAL_EP_QUICK=1``: small sizes) with other seeds.

Numbers quoted in the text are registered in QUOTED: the text must contain them, the run must
print them (formatted the same way) and land in the range given here. The exact value depends on
the BLAS build (float32 sums, spike thresholds), so it is compared exactly only on the reference
build the text was written on (REFERENCE_BLAS); the range is checked everywhere. Any other
decimal number in the text must be a setting, i.e. a literal of the tutorial's code or of its
solutions, or be listed in FACTS (the paper's values).
"""
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
TUTORIALS = sorted((REPO / "tutorials").glob("[0-9]*.py"))
IDS = [p.stem for p in TUTORIALS]
SEEDS = (1, 2, 4)          # besides each tutorial's default; 1 and 4 once stopped tutorials 03 and 04
WIDTH = 88                 # code and printed lines fit the course site's code cells (test_docs.py)

# Checks at each tutorial's default SEED, in normal mode: expressions evaluated in the tutorial's
# namespace after it ran. They pin what the text says was measured.
REGRESSION = {
    "01_convolution": ["abs(grad[entry] - fd) < 1e-7 * abs(fd)",
                       "np.abs(back - counts_s1 * x9).max() < 1e-12"],
    "02_pooling": ["0.06 < moved < 0.12", "h_sp[0] > 0.5",
                   "np.isclose(rows[2][2].sum(), F * F * s_avg.sum())"],
    "03_convergent_rnn": ["worst < rounding",
                          "free_report[1.0].residual < 1e-8", "free_report[0.8].residual < 1e-6",
                          "fp_err < 1e-8", "gaps[0.8] < 1e-5",
                          "cyc_report[1.0].residual > 0.1", "cyc_report[0.8].residual < 1e-2",
                          "two_steps < 1e-2",
                          # section 7's text: what fell, and what did not
                          "all(drops['default weights', e] == (0, 0) for e in (1.0, 0.8, 0.5, 0.2))",
                          "all(drops['weights x 3', e][0] > 0 for e in (1.0, 0.8, 0.5))",
                          "drops['weights x 3', 0.2] == (0, 0)",
                          "all(drops['weights x 3', e][1] == 0 for e in (0.8, 0.5))",
                          "drops['weights x 3', 1.0][1] > 0"],
    "04_equilibrium_propagation": ["SEED == 3", "report.residual < 1e-10", "SMOOTH",
                                   "asym < 1e-12", "response_err < 1e-6",
                                   "max(vs_fd(bptt, k) for k in fd) < 1e-6",
                                   "max(relative_error(ep2[k], bptt[k]) for k in ep2) < 1e-4",
                                   "all(np.sum(~np.isnan(fd[k])) == min(FD_ENTRIES, "
                                   "np.count_nonzero(bptt[k])) for k in fd)",
                                   "abs(slopes['one-sided'] - 1) < 0.15",
                                   "abs(slopes['symmetric'] - 2) < 0.2",
                                   "min(cos01.values()) > 0.9",
                                   "max(r[1] for r in rows) < 1e-2"],
    "05_spikes": ["0.45 < np.abs(drift).max() <= 0.5 + 1e-12",
                  "far[0.3].mean() < far[0.6].mean()",
                  "np.all(far[0.3] < 0.25 * scale)", "errs[0.3].mean() < errs[0.6].mean()"],
    "06_spiking_conv_ep": ["np.all(gap['max'][:2] > 2 * gap['avg'][:2])",
                           "np.mean(ratio['max'][:2]) > 2 * np.mean(ratio['avg'][:2])",
                           "max(ratio['max'][2:]) < 2 and max(ratio['avg']) < 2",
                           "all(np.isfinite(v).all() for v in net.params.values())"],
}

# Numbers quoted in the text at the default SEED: (as quoted, expression, format, low, high).
QUOTED = {
    "02_pooling": [("0.540", "predicted['spikes, offset 0'][1]", "{:.3f}", 0.54, 0.5402),
                   ("8.6%", "moved", "{:.1%}", 0.06, 0.12)],
    "05_spikes": [("0.50", "np.abs(drift).max()", "{:.2f}", 0.45, 0.5 + 1e-12)],
    "06_spiking_conv_ep": [
        ("0.85", "np.mean(errors[:25])", "{:.2f}", 0.7, 0.95),
        ("0.14", "np.mean(errors[-25:])", "{:.2f}", 0.05, 0.35),
        ("21.4%", "test_error", "{:.1%}", 0.10, 0.32),
        ("0.016", "gap['avg'][0]", "{:.3f}", 0.0, 0.06),
        ("0.051", "gap['avg'][1]", "{:.3f}", 0.0, 0.12),
        ("0.306", "gap['max'][0]", "{:.3f}", 0.15, 0.6),
        ("0.279", "gap['max'][1]", "{:.3f}", 0.15, 0.6),
        ("0.153", "gap['avg'][2]", "{:.3f}", 0.02, 0.3),
        ("0.154", "gap['avg'][3]", "{:.3f}", 0.02, 0.3),
        ("0.247", "gap['max'][2]", "{:.3f}", 0.1, 0.5),
        ("0.331", "gap['max'][3]", "{:.3f}", 0.1, 0.5),
        ("1.3", "ratio['avg'][0]", "{:.1f}", 0.5, 2.0),
        ("1.2", "ratio['avg'][1]", "{:.1f}", 0.5, 2.0),
        ("1.1", "ratio['avg'][2]", "{:.1f}", 0.5, 2.0),
        ("1.3", "ratio['avg'][3]", "{:.1f}", 0.5, 2.0),
        ("8.2", "ratio['max'][0]", "{:.1f}", 3.0, 20.0),
        ("8.7", "ratio['max'][1]", "{:.1f}", 3.0, 20.0),
        ("0.71", "cos['avg'][0]", "{:.2f}", 0.2, 1.0),
        ("0.44", "cos['avg'][1]", "{:.2f}", 0.1, 1.0),
        ("0.50", "cos['avg'][2]", "{:.2f}", 0.2, 1.0),
        ("0.50", "cos['avg'][3]", "{:.2f}", 0.2, 1.0),
        ("-0.36", "cos['max'][0]", "{:.2f}", -1.0, 0.4),
        ("0.11", "cos['max'][1]", "{:.2f}", -0.5, 0.5),
        ("0.88", "cos['max'][2]", "{:.2f}", 0.5, 1.0),
        ("0.93", "cos['max'][3]", "{:.2f}", 0.5, 1.0)],
}
# Decimal numbers in the text that are facts, not settings or measurements of the code.
FACTS = {
    "05_spikes": ["1.5"],                       # V + a lies in (-0.5, 1.5]: derived in the text
    "06_spiking_conv_ep": ["1.0"],              # Table I: eps = 1.0 for Fashion-MNIST
}
# The build the exact quoted values were measured with (threadpoolctl's view of NumPy's BLAS).
REFERENCE_BLAS = {"numpy": "2.4.6", "internal_api": "openblas", "version": "0.3.31.188.0",
                  "architecture": "SkylakeX"}

# Runs the tutorial in this process's namespace, evaluates the expressions given on argv, and
# records the BLAS build.
DRIVER = r"""
import json, runpy, sys
ns = runpy.run_path(sys.argv[1], run_name="__main__")
results = {}
for expr in json.loads(sys.argv[3]):
    try:
        value = eval(expr, ns)
        results[expr] = value if isinstance(value, str) else float(value)
    except Exception as exc:            # report, do not hide
        results[expr] = f"{type(exc).__name__}: {exc}"
import numpy, threadpoolctl
blas = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"][:1]
info = {"numpy": numpy.__version__}
if blas:
    info.update({k: blas[0].get(k) for k in ("internal_api", "version", "architecture")})
json.dump({"results": results, "blas": info}, open(sys.argv[2], "w"))
"""


def run_tutorial(path, tmp_path, seed=None, checks=(), quick=True):
    """Run a tutorial in a subprocess; returns (the checks' values, the BLAS build, stdout)."""
    env = dict(os.environ, MPLBACKEND="Agg")
    for var in ("MINIMAL_EP_SEED", "MINIMAL_EP_QUICK"):
        env.pop(var, None)
    if quick:
        env["MINIMAL_EP_QUICK"] = "1"
    if seed is not None:
        env["MINIMAL_EP_SEED"] = str(seed)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    out = tmp_path / "checks.json"
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(path), str(out), json.dumps(list(checks))],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (f"{path.name} (seed {seed}) exited with {proc.returncode}\n"
                                  f"--- stdout (tail)\n{proc.stdout[-3000:]}\n"
                                  f"--- stderr (tail)\n{proc.stderr[-3000:]}")
    record = json.loads(out.read_text())
    return record["results"], record["blas"], proc.stdout


def cells(path):
    jupytext = pytest.importorskip("jupytext")
    return jupytext.read(path).cells


def markdown(path):
    return "\n".join(c.source for c in cells(path) if c.cell_type == "markdown")


def test_tutorials_found():
    assert len(TUTORIALS) == 6, [p.name for p in TUTORIALS]
    assert set(REGRESSION) == set(IDS)
    assert set(QUOTED) <= set(IDS) and set(FACTS) <= set(IDS)


@pytest.mark.parametrize("path", TUTORIALS, ids=IDS)
def test_tutorial_is_a_percent_notebook(path):
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(path)
    cells = nb.cells
    assert cells, f"{path.name}: no cells"
    assert cells[0].cell_type == "markdown", f"{path.name}: the first cell must be markdown (the title)"
    assert cells[0].source.lstrip().startswith("# "), f"{path.name}: the first cell must start with a title"
    assert "(../docs/course/references.md)" in cells[0].source, f"{path.name}: link the references"
    assert sum(c.cell_type == "markdown" for c in cells) >= 2, f"{path.name}: too few markdown cells"
    assert nb.metadata.get("jupytext", {}).get("text_representation", {}).get("format_name") == "percent"
    assert any(c.cell_type == "markdown" and "## What we learned" in c.source for c in cells)
    # The last cell holds 2-4 numbered exercises and names the solutions file, which exists,
    # and the stubs to hand in.
    last = cells[-1]
    assert last.cell_type == "markdown" and last.source.lstrip().startswith("## Exercises")
    n_exercises = len(re.findall(r"^\d+\. \*\*", last.source, re.M))
    assert 2 <= n_exercises <= 4, f"{path.name}: {n_exercises} exercises"
    assert f"tutorials/solutions/{path.name}" in last.source
    assert (REPO / "tutorials" / "solutions" / path.name).exists()
    assert f"tutorials/exercises/{path.name}" in last.source and "make grade" in last.source
    assert (REPO / "tutorials" / "exercises" / path.name).exists()


@pytest.mark.parametrize("path", TUTORIALS, ids=IDS)
def test_tutorial_sets_seed_and_threads_first(path):
    """One visible SEED and one QUICK knob; one BLAS thread set before NumPy is imported."""
    text = path.read_text()
    assert len(re.findall(r"^SEED = int\(os\.environ\.get\(\"MINIMAL_EP_SEED\", \"\d+\"\)\)", text, re.M)) == 1
    quick = r"^QUICK = os\.environ\.get\(\"MINIMAL_EP_QUICK\", \"0\"\) == \"1\""
    assert len(re.findall(quick, text, re.M)) == 1
    assert "MINIMAL_EP_FAST" not in text, "the size knob is MINIMAL_EP_QUICK"
    threads = text.index('os.environ.setdefault(_var, "1")')
    assert '"OPENBLAS_NUM_THREADS"' in text[:threads]
    assert threads < text.index("import numpy as np")
    assert "default_rng(0)" not in text and "seed=0" not in text, "use SEED"


@pytest.mark.parametrize("path", TUTORIALS, ids=IDS)
def test_code_fits_the_page(path):
    """Code lines fit the site's code cells, and NumPy prints at that width too."""
    long = [line for c in cells(path) if c.cell_type == "code"
            for line in c.source.splitlines() if len(line) > WIDTH]
    assert not long, f"{path.name}: code lines over {WIDTH} columns: {long}"
    assert f"linewidth={WIDTH}" in path.read_text()


# ASCII maths that belongs in LaTeX ($...$), not in code font: inside backticks in the text.
ASCII_MATHS = re.compile(r"\|\||\^|\bPhi\b|\bphi_|\bxi_|\bs_\{|\bs_n\b|\bbeta\b|\beps\b|\blam\b|"
                         r"\bsqrt\(|\bsum_|~\*|->|<-|\bdPhi|\bdL/|\bd[A-Za-z]+/d")


@pytest.mark.parametrize("path", TUTORIALS, ids=IDS)
def test_maths_in_the_text_is_latex(path):
    """Formulas in the text are LaTeX; code font is for code (names, calls, shapes)."""
    spans = re.findall(r"`([^`\n]+)`", markdown(path))
    # names of the API are code even when they read like maths
    code_like = re.compile(r"^[\w.]+\(.*\)$|^[\w.]+$|^\w+=|^net\.|^report\.|^minimal_ep|^mep\.")
    ascii_maths = [s for s in spans if ASCII_MATHS.search(s) and not code_like.search(s)]
    assert not ascii_maths, f"{path.name}: maths in code font, write it as LaTeX: {ascii_maths}"
    assert markdown(path).count("$") >= 6, f"{path.name}: no LaTeX at all?"


# Phrases of factual slips fixed in issue #29: they must not come back.
SLIPS = {
    "02_pooling": ["needs the *inverse*", "quantized, delayed version",
                   "uncorrelated with the true gradient", "ground truth"],
    "03_convergent_rnn": ["forward route + backward route + bias", "SEED = 0 to 5",
                          "with SEED = 1, Phi fell"],
    "04_equilibrium_propagation": ["the free phase has settled, so the gradient of the",
                                   "SEED = 0 to 7", "two ground truths"],
    "05_spikes": ["no longer bounded by 1"],
    "06_spiking_conv_ep": ["19.8%", "18.8%", "562 s", "roughly align with spiking BPTT",
                           "point roughly along BPTT", "ground truth"],
}


@pytest.mark.parametrize("path", TUTORIALS, ids=IDS)
def test_slips_stay_fixed(path):
    text = " ".join(markdown(path).split())
    found = [phrase for phrase in SLIPS.get(path.stem, []) if phrase in text]
    assert not found, f"{path.name}: {found}"


def _literals(path):
    """Decimal literals of a tutorial's code and of its solutions: its settings."""
    code = "\n".join(c.source for c in cells(path) if c.cell_type == "code")
    code += (REPO / "tutorials" / "solutions" / path.name).read_text()
    return set(re.findall(r"\d+\.\d+|\d+e-?\d+", code))


NUMBER = re.compile(r"(?<![\w.^{-])-?(\d+\.\d+%?|\d+%|\d+(?:\.\d+)?e[-+]?\d+)(?!\w)(?!\.\d)")


@pytest.mark.parametrize("path", TUTORIALS, ids=IDS)
def test_every_quoted_number_is_registered(path):
    """A decimal number in the text is a setting, a registered measurement, or a fact."""
    text = re.sub(r"`[^`]*`", " ", markdown(path))
    quoted = QUOTED.get(path.stem, [])
    for quote, *_ in quoted:
        assert quote in text, f"{path.name}: QUOTED lists {quote}, which the text does not quote"
    for quote, *_ in sorted(quoted, key=lambda q: -len(q[0])):
        text = text.replace(quote, " ")
    allowed = _literals(path) | set(FACTS.get(path.stem, []))

    def is_setting(number):             # 1% is the setting 0.01
        if number.endswith("%"):
            return number[:-1] in allowed or repr(float(number[:-1]) / 100) in allowed
        return number in allowed

    unregistered = [m.group(1) for m in NUMBER.finditer(text) if not is_setting(m.group(1))]
    assert not unregistered, (f"{path.name}: numbers in the text that the code neither sets nor is "
                              f"checked to print (add them to QUOTED): {unregistered}")


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=IDS)
def test_tutorial_default_seed_run(path, tmp_path):
    """The run the text describes: normal mode, default SEED, as ``python tutorials/NN_*.py``."""
    quoted = QUOTED.get(path.stem, [])
    checks = REGRESSION[path.stem] + [expr for _, expr, *_ in quoted]
    results, blas, stdout = run_tutorial(path, tmp_path, checks=checks, quick=False)
    failed = {k: v for k, v in results.items() if k in REGRESSION[path.stem] and v != 1.0}
    assert not failed, f"{path.name}: regression checks failed: {failed}"
    wide = [line for line in stdout.splitlines() if len(line) > WIDTH]
    assert not wide, f"{path.name}: printed lines over {WIDTH} columns: {wide}"
    reference = blas == REFERENCE_BLAS
    for quote, expr, fmt, low, high in quoted:
        value = results[expr]
        assert isinstance(value, float), f"{path.name}: {expr}: {value}"
        printed = fmt.format(value)
        assert low <= value <= high, (f"{path.name}: the text quotes {quote} for {expr}; this run "
                                      f"gave {printed}, outside [{low}, {high}]")
        if reference:
            assert printed == quote, (f"{path.name}: the text quotes {quote} for {expr}, the run "
                                      f"prints {printed} (on the reference BLAS build)")


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("path", TUTORIALS, ids=IDS)
def test_tutorial_runs_with_other_seeds(path, seed, tmp_path):
    run_tutorial(path, tmp_path, seed=seed)


def test_run_times_are_measured_by_the_committed_command():
    """The syllabus's run times are those tutorials/run_times.py measured and recorded."""
    record = json.loads((REPO / "docs" / "course" / "run_times.json").read_text())
    assert record["command"] == "python tutorials/run_times.py"
    assert sorted(record["seconds"]) == IDS
    syllabus = (REPO / "docs" / "course" / "syllabus.md").read_text()
    for stem, seconds in record["seconds"].items():
        number = stem[:2]
        row = re.search(rf"^\| {number} [^|]+\|[^|]+\| ([\d.]+) s \|", syllabus, re.M)
        assert row, f"syllabus: no run time for tutorial {number}"
        assert row.group(1) == f"{seconds:.1f}", (number, row.group(1), seconds)
    assert "tutorials/run_times.py" in syllabus
