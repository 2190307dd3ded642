"""The paper's pooling figures: scripts (fig*.py, diagnose.py, make_checkpoints.py) and their helpers.

A package only so that the helpers (cli, nets, routes, campaign, gradients, plotting) are imported as
``figures.nets`` etc. and never collide with another module of the same name. Run a script as
``python figures/fig2_activation_sums.py``; see docs/FIGURES.md.
"""
