"""What the benchmark scripts share: the nets and targets, the clock, FLOP counts, the time breakdown,
the A/B against baseline commits, and the Markdown summary. The scripts are one level up.

``benchmarks`` and ``benchmarks.benchlib`` are installed with the project (``pip install -e .``), so
``from benchmarks.benchlib import common`` works from anywhere; they measure the ``minimal_ep`` that
is imported (this checkout's, in an editable install).
"""
