"""What the benchmark scripts share: the nets and targets, the clock, FLOP counts, the time breakdown,
the A/B against a baseline commit, and the Markdown summary. The scripts are one level up.

The benchmarks measure the checkout they belong to: its root goes first on ``sys.path``.
"""
import pathlib
import sys

_REPO = str(pathlib.Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)
