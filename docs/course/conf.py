"""Sphinx configuration of the minimal_ep course site (``make docs``).

The six tutorials are jupytext percent scripts in ``tutorials/``. At every build they are converted
to notebooks in ``docs/course/tutorials/`` (git-ignored) and MyST-NB executes them, so the site shows
their outputs and figures as the current code produces them: with the environment ``make docs``
gives them, the same numbers as ``python tutorials/NN_*.py`` (``MINIMAL_EP_QUICK=1``, the test of
the build, runs them in their quick mode). Their links to ``../docs/...`` (right in the repository)
are rewritten to the site's pages. MathJax is copied into the site by ``sphinx-mathjax-offline``,
so the equations render without a network connection. ``_static/course.css`` widens the text
column so that code and printed tables of 88 columns fit.
"""
import os
import pathlib

import jupytext

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# One BLAS thread for the notebooks' kernels too (they inherit the environment); the tutorials set
# it themselves as well, this only covers a kernel that imports NumPy before their first cell.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
# Figures inline, whatever MPLBACKEND the caller set (the test suite sets Agg, which shows nothing).
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"

project = "minimal_ep: a course on Equilibrium Propagation"
author = "the minimal_ep authors"
copyright = "the minimal_ep authors, MIT license"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",
]
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
napoleon_google_docstring = False
napoleon_numpy_docstring = True
autodoc_member_order = "bysource"
autodoc_mock_imports = ["cupy"]

nb_execution_mode = os.environ.get("MINIMAL_EP_DOCS_EXECUTE", "force")
nb_execution_timeout = 900
nb_execution_raise_on_error = True        # a tutorial that fails fails the build
nb_execution_show_tb = True
nb_merge_streams = True

exclude_patterns = ["_build", "**/.ipynb_checkpoints", "conf.py"]
html_theme = "sphinx_book_theme"
html_title = "minimal_ep course"
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": True,
    "home_page_in_toc": True,
}
html_static_path = ["_static"]
html_css_files = ["course.css"]

# The tutorials link to the repository's files (right when read in the repository or in Jupyter);
# on the site the same documents are pages of their own.
SITE_LINKS = {
    "](../docs/course/references.md)": "](../references.md)",
    "](../docs/equations.md)": "](../equations.md)",
    "](../docs/FIGURES.md)": "](../figures.md)",
    "](../docs/CHECKS.md)": "](../checks.md)",
    "](../docs/RESULTS.md)": "](../results.md)",
}


def _tutorial_notebooks():
    """Write tutorials/NN_*.py as docs/course/tutorials/NN_*.ipynb (only when the text changed)."""
    out = HERE / "tutorials"
    out.mkdir(exist_ok=True)
    for script in sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py")):
        text = jupytext.writes(jupytext.read(script), fmt="ipynb")
        for repository, site in SITE_LINKS.items():
            text = text.replace(repository, site)
        target = out / (script.stem + ".ipynb")
        if not target.exists() or target.read_text() != text:
            target.write_text(text)


_tutorial_notebooks()
