"""The course site builds (fast mode): executed tutorials with figures, the syllabus, the API
reference, and equations that MathJax renders in a real (headless) browser.

Skipped without the ``docs`` extra (``pip install -e ".[docs]"``; .ci/run installs it). The browser
check is skipped where no ``chromium`` is installed.
"""
import importlib
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
TUTORIALS = sorted(p.stem for p in (REPO / "tutorials").glob("[0-9][0-9]_*.py"))

for _module in ("sphinx", "myst_nb", "sphinx_book_theme", "jupytext", "ipykernel", "sphinx-mathjax-offline"):
    try:
        importlib.import_module(_module)
    except ImportError:
        pytestmark = pytest.mark.skip(reason=f"the docs extra is not installed ({_module} missing)")
        break

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, MINIMAL_EP_FAST="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-q", "-b", "html", "-d", str(out / "doctrees"),
                           str(REPO / "docs" / "course"), str(out / "html")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"sphinx-build failed\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return out / "html"


def test_pages_exist(site):
    for page in ["index", "syllabus", "api", "equations"] + [f"tutorials/{t}" for t in TUTORIALS]:
        assert (site / f"{page}.html").exists(), page


@pytest.mark.parametrize("name", TUTORIALS)
def test_tutorial_page_is_executed_with_figures(site, name):
    html = (site / "tutorials" / f"{name}.html").read_text()
    assert "cell_output" in html, "no executed outputs"
    assert "Traceback" not in html
    images = re.findall(r'<img[^>]+src="([^"]+\.png)"', html)
    assert images, "no figures"
    for src in images:
        path = (site / "tutorials" / src).resolve()
        assert path.exists() and path.stat().st_size > 2000, src
    assert "## Exercises" not in html and "Exercises" in html       # rendered, not raw markdown


def test_equations_and_api(site):
    assert (site / "_static" / "mathjax" / "tex-chtml.js").exists(), "MathJax is not served by the site"
    html = (site / "tutorials" / "04_equilibrium_propagation.html").read_text()
    assert 'class="math' in html and "\\frac{1}{2\\beta}" in html
    assert 'src="../_static/mathjax/tex-chtml.js' in html
    api = (site / "api.html").read_text()
    for name in ("build_network", "ep_gradients", "conv_transpose2d", "avg_unpool2d", "sigma_delta"):
        assert f'id="minimal_ep.{name}"' in api or f'id="minimal_ep.spiking.{name}"' in api, name
    syllabus = (site / "syllabus.html").read_text()
    assert "Lecture plan" in syllabus and "jupyterlab" in syllabus


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_browser_renders_equations_and_figures(site, tmp_path):
    page = (site / "tutorials" / "04_equilibrium_propagation.html").as_uri()
    common = CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000"]
    dom = subprocess.run([CHROMIUM, *common, "--dump-dom", page], capture_output=True, text=True,
                         timeout=120).stdout
    assert dom.count("<mjx-container") >= 5, "MathJax did not typeset the equations"
    assert "<merror" not in dom, "MathJax reported an error in an equation"
    shot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, *common, "--window-size=1280,2400", f"--screenshot={shot}", page],
                   capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 50_000
