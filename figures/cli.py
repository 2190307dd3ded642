"""The command line every figure script shares, and its error handling.

Import this module first: it pins BLAS to one thread before NumPy is imported (the matrices are
small, and a multi-threaded OpenBLAS spin-waits on a busy 2-core machine; spiking nets trained in
float32 are also chaotic enough that the thread count changes their numbers). It hands on the
argument parsing of ``minimal-ep`` (``Parser``: one-line errors, status 2; the argparse types
``int_at_least`` and ``finite_float``), so the scripts need not import it after NumPy.

Which networks a script measures (:func:`nets.select`):

    (default)              the trained checkpoints in results/figures/checkpoints/ (``make checkpoints``):
                           NAME/checkpoint.npz for NAME in crnn_max, snn_max, snn_avg, crnn_avg, and
                           the other training seeds in NAME_seedK/
    --checkpoint-dir DIR   the same layout in another folder (the tests use tiny ones)
    --checkpoint PATH      these checkpoints instead (repeatable); each one's configuration (CRNN or
                           SNN, max or avg) is read from its stored config, several of one
                           configuration are its seeds
    --config PATH          with --checkpoint: measure those weights at this config's dynamics
                           (eps, lam, beta, T_free, T_nudge); alone (repeatable): the untrained net
                           this config describes
    --set SECTION.KEY=V    override a key of every --config (repeatable), as in ``minimal-ep train``:
                           the probes of docs/FIGURES.md ("Training recipe") vary init_scale, eps, lam

The phase dynamics always come from the checkpoint's or the config's values (for the figure configs
Table I's phases and beta with eps = lam = 0.1), never from a constant in a script. Bad input exits
with status 2 and one line.

Outputs go to results/figures/ (``--out``): NAME.png, NAME.pdf, and with ``--json`` every number;
the measurement cache of Figs. 2-3 to results/figures/.cache (git-ignored).
"""
import argparse
import json
import os
import pathlib
import sys

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("MPLBACKEND", "Agg")

from minimal_ep.run.cli import Parser, finite_float, int_at_least  # noqa: E402,F401  (after the pins)
from minimal_ep.run.runs import atomic_write  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "results" / "figures"
DEFAULT_OUT = RESULTS                              # NAME.png, NAME.pdf, NAME.json; .cache/
DEFAULT_CHECKPOINTS = RESULTS / "checkpoints"      # make checkpoints (figures/make_checkpoints.py)
PROBES = RESULTS / "probes"                        # init/, lr/, trial_diagnoses/ (docs/FIGURES.md)


class FigureError(Exception):
    """Bad input to a figure script: printed as one line, exit status 2."""


def parser(description, samples, fast_samples, sets=5, batch_size=100):
    """The shared options; each script adds its own to the returned parser.

    Parameters
    ----------
    samples, fast_samples : int
        Default number of random training samples measured, without and with ``--fast``.
    sets : int
        Default number of disjoint sample sets the samples are split into (the error bars).
    """
    pos = int_at_least(1)
    p = Parser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", action="append", default=None,
                   help="a checkpoint.npz of minimal-ep train (repeatable; default: the runs of "
                        "--checkpoint-dir)")
    p.add_argument("--checkpoint-dir", default=str(DEFAULT_CHECKPOINTS),
                   help="folder holding NAME/ and NAME_seedK/ runs (make checkpoints)")
    p.add_argument("--config", action="append", default=None,
                   help="with --checkpoint: the dynamics to measure at; alone: measure this config's "
                        "untrained net (repeatable)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a key of every --config (repeatable), e.g. model.eps=0.3")
    p.add_argument("--data-dir", default=None,
                   help="MNIST folder (default: the config's data_dir, else data/mnist-10k)")
    p.add_argument("--samples", type=pos, default=None,
                   help=f"random training samples measured (default {samples}; {fast_samples} with --fast)")
    p.add_argument("--sets", type=pos, default=None,
                   help=f"disjoint sample sets the samples are split into, for the error bars "
                        f"(default {sets}; 2 with --fast)")
    p.add_argument("--batch-size", type=pos, default=batch_size, help="samples per phase (memory only)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="seed of the random choice of samples")
    p.add_argument("--fast", action="store_true",
                   help="a few samples, for the tests (seconds; the numbers are not meaningful)")
    p.add_argument("--out", default=str(DEFAULT_OUT),
                   help="directory for NAME.png and NAME.pdf (and the measurement cache, OUT/.cache)")
    p.add_argument("--name", default=None, help="basename of the figure files (default: the script's)")
    p.add_argument("--no-plot", action="store_true", help="print the numbers, write no figure")
    p.add_argument("--json", default=None, help="also write every number to this JSON file")
    p.set_defaults(_samples=(samples, fast_samples), _sets=sets)
    return p


def finish(p, argv):
    """Parse ``argv``, fill the defaults that depend on --fast, check the sizes; returns args."""
    args = p.parse_args(argv)
    samples, fast_samples = args._samples
    if args.samples is None:
        args.samples = fast_samples if args.fast else samples
    if args.sets is None:
        args.sets = 2 if args.fast else args._sets
    if args.samples < args.sets:
        p.error(f"--samples ({args.samples}) must be at least --sets ({args.sets}): one sample per set")
    if args.config and args.checkpoint and len(args.config) > 1:
        p.error("with --checkpoint, give at most one --config (the dynamics every checkpoint is measured at)")
    if args.overrides and not args.config:
        p.error("--set overrides a --config: give one")
    return args


def save_json(args, data):
    """Write ``data`` to ``args.json`` (folders created, atomically); nothing without ``--json``."""
    if not args.json:
        return
    path = pathlib.Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    atomic_write(path, lambda f: f.write((text + "\n").encode()))


def run_main(main, argv=None):
    """Run ``main(argv)`` as a script: exit 0, or 2 with one line for bad input or missing files."""
    from minimal_ep.run.datasets import DatasetNotFoundError
    prog = pathlib.Path(sys.argv[0]).stem
    try:
        main(sys.argv[1:] if argv is None else argv)
    except (FigureError, ValueError, DatasetNotFoundError, FileNotFoundError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"{prog}: error: {first}", file=sys.stderr)
        return 2
    return 0
