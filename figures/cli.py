"""The command line every figure script shares, and its error handling.

Import this module first: it pins BLAS to one thread before NumPy is imported (the matrices are
small, and a multi-threaded OpenBLAS spin-waits on a busy 2-core machine; spiking nets trained in
float32 are also chaotic enough that the thread count changes their numbers).

Which networks a script measures (:func:`nets.select`):

    (default)              the trained checkpoints in figures/checkpoints/ (``make checkpoints``):
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
"""
import argparse
import os
import pathlib
import sys

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("MPLBACKEND", "Agg")

FIG_DIR = pathlib.Path(__file__).resolve().parent
REPO = FIG_DIR.parent
DEFAULT_OUT = FIG_DIR / "out"
DEFAULT_CHECKPOINTS = FIG_DIR / "checkpoints"


class FigureError(Exception):
    """Bad input to a figure script: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):                      # one line, status 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: error: {message}\n")


def parser(description, samples, fast_samples, sets=5, batch_size=100):
    """The shared options; each script adds its own to the returned parser.

    Parameters
    ----------
    samples, fast_samples : int
        Default number of random training samples measured, without and with ``--fast``.
    sets : int
        Default number of disjoint sample sets the samples are split into (the error bars).
    """
    p = _Parser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", action="append", default=None,
                   help="a checkpoint.npz of minimal-ep train (repeatable; default: figures/checkpoints/)")
    p.add_argument("--checkpoint-dir", default=str(DEFAULT_CHECKPOINTS),
                   help="folder holding NAME/ and NAME_seedK/ runs (make checkpoints)")
    p.add_argument("--config", action="append", default=None,
                   help="with --checkpoint: the dynamics to measure at; alone: measure this config's "
                        "untrained net (repeatable)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a key of every --config (repeatable), e.g. model.eps=0.3")
    p.add_argument("--data-dir", default=None,
                   help="MNIST folder (default: the config's data_dir, else data/mnist-10k)")
    p.add_argument("--samples", type=int, default=None,
                   help=f"random training samples measured (default {samples}; {fast_samples} with --fast)")
    p.add_argument("--sets", type=int, default=None,
                   help=f"disjoint sample sets the samples are split into, for the error bars "
                        f"(default {sets}; 2 with --fast)")
    p.add_argument("--batch-size", type=int, default=batch_size, help="samples per phase (memory only)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random choice of samples")
    p.add_argument("--fast", action="store_true",
                   help="a few samples, for the tests (seconds; the numbers are not meaningful)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="directory for NAME.png and NAME.pdf")
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
    if args.samples < 1 or args.sets < 1 or args.batch_size < 1 or args.samples < args.sets:
        p.error(f"--samples ({args.samples}), --sets ({args.sets}) and --batch-size must be >= 1, "
                "with at least one sample per set")
    if args.config and args.checkpoint and len(args.config) > 1:
        p.error("with --checkpoint, give at most one --config (the dynamics every checkpoint is measured at)")
    if args.overrides and not args.config:
        p.error("--set overrides a --config: give one")
    return args


def save_json(args, data):
    """Write ``data`` to ``args.json`` (folders created, atomically); nothing without ``--json``."""
    if not args.json:
        return
    import json
    from minimal_ep.train import atomic_write
    path = pathlib.Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    atomic_write(path, lambda f: f.write((text + "\n").encode()))


def run_main(main, argv=None):
    """Run ``main(argv)`` as a script: exit 0, or 2 with one line for bad input or missing files."""
    from minimal_ep.datasets import DatasetNotFoundError
    prog = pathlib.Path(sys.argv[0]).stem
    try:
        main(sys.argv[1:] if argv is None else argv)
    except (FigureError, ValueError, DatasetNotFoundError, FileNotFoundError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"{prog}: error: {first}", file=sys.stderr)
        return 2
    return 0
