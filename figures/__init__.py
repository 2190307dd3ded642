"""The paper's pooling figures: scripts (fig*.py, diagnose.py, make_checkpoints.py) and their helpers.

A package, installed with the project (``pip install -e .``), so that the helpers (cli, nets, routes,
campaign, gradients, plotting) are imported as ``figures.nets`` etc. from anywhere and never collide
with another module of the same name. Run a script as ``python -m figures.fig2_activation_sums`` (or
``python figures/fig2_activation_sums.py``); the outputs go to results/figures/, see docs/FIGURES.md.
"""
