"""The command line: ``minimal-ep <command>`` (also ``python -m minimal_ep <command>``).

    train      train a network from a TOML config (configs/), with --set overrides
    evaluate   test error of a checkpoint
    datasets   where each data set was found, or what is missing
    gradcheck  EP vs BPTT vs finite differences, and the GDD table, on a small network
    memory     peak memory of one training step for SNN/CRNN x EP/BPTT (paper Table II)

Bad input exits with status 2 and one line on stderr, never a traceback (a data set not found by
a search prints where it looked, on several lines); a run that stops mid-way (divergence, an output
that cannot be written) exits with 1, Ctrl-C with 130, each saying which checkpoint is kept.

``train --resume`` takes the run's settings from its own record (:func:`resume_config`): the
command line may only say where things are (``--out``, ``--data-dir``, ``--backend``), repeat the
run's settings, or change a key that may change between epochs with an explicit ``--set`` (or
``--epochs``), which the run records.
"""
import argparse
import math
import os
import pathlib
import sys

import numpy as np

from .. import backend
from . import config as config_mod, datasets


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line and exit status 2 (argparse prints usage too)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def int_at_least(low):
    """An argparse type: an integer >= ``low``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
        return value
    return parse


def finite_float(low=-math.inf, high=math.inf, nonzero=False):
    """An argparse type: a finite number in (low, high], non-zero if asked."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and low < value <= high) or (nonzero and value == 0):
            raise argparse.ArgumentTypeError(
                f"must be a finite{' non-zero' if nonzero else ''} number"
                + (f" in ({low:g}, {high:g}]" if math.isfinite(low) or math.isfinite(high) else "")
                + f", got {text}")
        return value
    return parse


def _data_sets(args, sets):
    """Add --source/--data-dir to ``sets``: a named --data-dir means the full data set from there."""
    if args.source is not None:
        sets["data.source"] = args.source
    if args.data_dir is not None:
        sets["data.data_dir"] = args.data_dir
        sets.setdefault("data.source", "full")
    return sets


def _out_dir(args):
    """The output folder the command line names: --out, the last --set run.out=, the --config file's, or
    the default."""
    out = None
    for text in args.set:
        section, key, value = config_mod.parse_override(text)
        if (section, key) == ("run", "out"):
            out = value
    if args.out is not None:
        out = args.out
    if out is None:
        out = config_mod.resolve(args.config).run.out
    return pathlib.Path(config_mod.check_value("run", "out", out))


def _explicit(args, sets):
    """The keys the command line sets explicitly: every --set, and the options given."""
    return ({".".join(config_mod.parse_override(text)[:2]) for text in args.set}
            | {name for name, value in sets.items() if value is not None})


def recorded_settings(out):
    """(current, start) settings of the run in ``out`` from its own record, or None if it has none.

    The record is the checkpoint, or the config.toml of a first start that completed no epoch;
    ``start`` is the current settings with the recorded changes undone.
    """
    from .checkpoints import read_checkpoint
    from .resume import read_first_start, undo
    if (out / "checkpoint.npz").exists():
        ckpt = read_checkpoint(out / "checkpoint.npz")
        return ckpt.config, undo(ckpt.config, ckpt.changes)[-1]
    if (out / "config.toml").exists():
        current, records = read_first_start(out)
        return current, undo(current, records["changes"])[-1]
    return None


def resume_config(args, sets, out):
    """The configuration of ``train --resume``: the run's own settings, and what the command line
    changes on purpose.

    A key named by ``--set`` or an option is taken as given (the training loop then records a change
    of ``train.lr`` or ``train.epochs`` and refuses any other); a key the ``--config`` file (or a
    default) gives must be the run's setting, at its start or now, and the run's current value is used.

    Raises
    ------
    CheckpointError
        Naming each key where the --config file differs from the run's settings.
    """
    from .checkpoints import RESUMABLE, CheckpointError
    recorded = recorded_settings(out)
    if recorded is None:
        return config_mod.resolve(args.config, args.set, **sets)
    current, start = recorded
    explicit = _explicit(args, sets)
    asked = config_mod.resolve(args.config, args.set, base=None if args.config else current, **sets)
    values, refused = {}, []
    for section, keys in asked.to_dict().items():
        for key, value in keys.items():
            name = f"{section}.{key}"
            if (section, key) in RESUMABLE or name in explicit:
                values[name] = value
            elif value in (start.get(section, key), current.get(section, key)):
                values[name] = current.get(section, key)
            else:
                refused.append(f"{name}: {start.get(section, key)!r} -> {value!r}")
    if refused:
        raise CheckpointError(f"--resume: {args.config} has other settings than the run in {out}: "
                              + "; ".join(refused) + ". A resume takes the run's settings; change train.lr "
                              "or train.epochs with an explicit --set KEY=VALUE (recorded), or start a new "
                              "run (--overwrite or another --out)")
    values["run.out"] = str(out)                       # where the record was read, even if the run moved
    return config_mod.resolve(None, (), **values)


def _train(args):
    from .train import held_out_name, train
    sets = _data_sets(args, {"train.epochs": args.epochs, "data.train_size": args.train_size,
                             "data.test_size": args.test_size, "run.backend": args.backend,
                             "train.seed": args.seed, "run.out": args.out})
    if args.dataset is not None:
        sets["data.dataset"] = datasets.canonical_name(args.dataset)
    if args.resume:
        cfg = resume_config(args, sets, _out_dir(args))
    else:
        cfg = config_mod.resolve(args.config, args.set, **sets)
    metrics = train(cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress,
                    until=args.until)
    last = metrics[-1]
    print(f"final {held_out_name(cfg)} error {100 * last['test_error']:.2f}% after {last['epoch']} epochs "
          f"({sum(m['seconds'] for m in metrics):.0f}s of training); outputs in {cfg.run.out}")


def _evaluate(args):
    from .checkpoints import check_params, read_checkpoint
    from .memory import check_config_fits
    from .train import evaluate, held_out_name, load_data, network_from_config
    ckpt = read_checkpoint(args.checkpoint)
    sets = _data_sets(args, {"data.test_size": args.test_size, "run.backend": args.backend})
    if args.source == "embedded" and args.data_dir is None:
        sets["data.data_dir"] = ""                     # the checkpoint's data directory is not used
    if args.dataset is not None:
        sets["data.dataset"] = datasets.canonical_name(args.dataset)
    cfg = config_mod.resolve(None, (), base=ckpt.config, **sets)
    backend.set_backend(cfg.run.backend)
    check_config_fits(cfg, datasets.INPUT_SHAPE[cfg.data.dataset], datasets.N_CLASSES[cfg.data.dataset])
    data = load_data(cfg, splits=("test",), progress=not args.no_progress)   # no training image needed
    net = network_from_config(cfg)
    check_params(ckpt, net.params)
    for k, v in ckpt.params.items():
        net.params[k][...] = backend.to_device(v)
    T = args.T if args.T is not None else cfg.train.T_eval or cfg.train.T_free
    err = evaluate(net, data.x_test, data.y_test, T, cfg.data.batch_size)
    print(f"{held_out_name(cfg)} error {100 * err:.2f}% on {len(data.y_test)} {cfg.data.dataset} "
          f"{held_out_name(cfg)} images "
          f"({data.source}), checkpoint after epoch {ckpt.epoch}, T = {T}")


def _datasets(args):
    damaged = False
    for row in datasets.dataset_status(args.data_dir):
        if row["found"] is None:
            where = "not found; searched " + ", ".join(map(str, row["search_dirs"]))
        elif row["problems"]:
            damaged = True
            where = f"{row['found']} is DAMAGED: " + "; ".join(row["problems"])
        else:
            where = (f"{row['found']} (verified: the four files parse, and each is the official file or "
                     "a known subset, by its SHA-256)")
        emb = row["embedded"]
        print(f"{row['name']:14s} full: {where}")
        for directory, missing in row["incomplete"]:
            print(f"{'':14s} incomplete: {directory} lacks " + ", ".join(f"{m}[.gz]" for m in missing))
        print(f"{'':14s} embedded: " + (f"{emb['train']} train / {emb['test']} test images"
                                      if emb else "missing from the package"))
    return 1 if damaged else 0


def _gradcheck(args):
    from . import gradcheck as gc
    backend.set_backend("numpy")
    for name, crnn, snn in (("eps", 0.8, 0.3), ("beta", 1e-3, 0.2), ("T", 300, 60), ("batch", 8, 20)):
        if getattr(args, name) is None:
            setattr(args, name, snn if args.spiking else crnn)
    if args.spiking:
        return _spikecheck(args, gc)
    rng = np.random.default_rng(args.seed)
    kw = dict(input_shape=(1, 12, 12), conv_channels=(4, 8), kernel_size=3, padding=1, pool=args.pool,
              hidden=(16,), n_classes=4, loss=args.loss, dtype="float64", seed=args.seed, spiking=False)
    x, y = rng.random((args.batch, 1, 12, 12)), rng.integers(0, 4, args.batch)
    from .build import build_network
    net = build_network(eps=args.eps, **kw)
    print(f"CRNN, pool={args.pool}, loss={args.loss}, eps={args.eps}, float64, batch {args.batch}, "
          f"T = {args.T}, beta = {args.beta}; FD on {args.fd_entries} entries per tensor")
    rows = gc.compare_gradients(net, x, y, beta=args.beta, T=args.T, fd_entries=args.fd_entries)
    cols = ["bptt_vs_fd_rel", "ep1_vs_fd_cos", "ep1_vs_fd_rel", "ep2_vs_fd_cos", "ep2_vs_fd_rel",
            "ep1_vs_bptt_cos", "ep2_vs_bptt_cos", "ep2_vs_bptt_rel"]
    print(gc.format_table(["param"] + cols, [[r["param"]] + [r[c] for c in cols] for r in rows]))
    print("(ep1 = one-sided EP, ep2 = symmetric EP; fd = finite differences of the equilibrium loss)")
    net1 = build_network(eps=1.0, **kw)
    table, report = gc.gdd(net1, x, y, args.beta, args.T, args.K)
    print(f"\nGDD at eps = 1 (free residual {report.residual:.1e}), last K = {args.K} steps, beta = {args.beta}:")
    print(gc.format_table(["name", "relative RMSE", "sign errors"], table))


def _spikecheck(args, gc):
    data = datasets.load_dataset("mnist")
    n = args.batch * args.batches
    x = datasets.to_float_images(data["train_images"][:n], "float64")
    y = data["train_labels"][:n].astype(np.int64)
    kw = dict(input_shape=(1, 28, 28), conv_channels=(8, 16), kernel_size=3, hidden=(32,), n_classes=10,
              loss="mse", dtype="float64", seed=args.seed, eps=args.eps, lam=args.lam)
    print(f"spiking vs continuous, conv 8-16 -> 32 -> 10, float64, eps = lam = {args.eps}/{args.lam}, "
          f"beta = {args.beta}, T_free = {args.T}, T_nudge = {args.T // 3}, {args.batches} batches of "
          f"{args.batch} embedded MNIST images, gradients summed over the batches")
    for pool in ("avg", "max"):
        rows = gc.spiking_alignment(pool, x, y, args.batch, args.beta, args.T, args.T // 3, **kw)
        print(f"\npool = {pool}")
        print(gc.format_table(["weight", "SNN EP vs SNN BPTT", "SNN EP vs CRNN EP", "CRNN EP vs CRNN BPTT",
                               "per batch SNN EP vs BPTT"], rows))


def _memory(args):
    from .memory import table2_memory
    kw = dict(batch=args.batch, T_free=args.T_free, T_nudge=args.T_nudge, T_bptt=args.T_bptt,
              conv_channels=tuple(args.channels), hidden=tuple(args.hidden))
    print(f"peak memory of one training step (MB), batch {args.batch}, conv {args.channels}, hidden "
          f"{args.hidden}, EP T = {args.T_free}+{args.T_nudge}+{args.T_nudge}, BPTT T = {args.T_bptt}, "
          f"backend {backend.get_backend()}")
    for mode, mb in table2_memory(**kw).items():
        print(f"  {mode:10s} {mb:9.1f}")


def usable_cpus():
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def thread_count(text):
    """An argparse type: BLAS threads, from 1 to the CPUs of this machine (more only slow it down)."""
    value = int_at_least(1)(text)
    if value > usable_cpus():
        raise argparse.ArgumentTypeError(f"must be at most {usable_cpus()}, the CPUs this process may use, "
                                         f"got {value}")
    return value


def build_parser():
    pos, nonneg = int_at_least(1), int_at_least(0)
    p = Parser(prog="minimal-ep", description="Equilibrium Propagation for convolutional "
                "convergent RNNs, continuous and spiking, in NumPy/CuPy.")
    p.add_argument("--threads", type=thread_count, default=1,
                   help="BLAS threads of the matrix products (default 1: robust on a busy machine, the same "
                        "numbers on every machine; more helps the paper's large nets)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    t = sub.add_parser("train", help="train from a config")
    t.add_argument("--config", help="TOML file (see configs/; default: the quickstart)")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config key (repeatable)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--train-size", type=int)
    t.add_argument("--test-size", type=int)
    t.add_argument("--dataset")
    t.add_argument("--source", choices=("embedded", "full"),
                   help="the subset inside the package, or the official files")
    t.add_argument("--data-dir", help="read the official files from DIR (or DIR/<name>), nowhere else")
    t.add_argument("--backend", choices=backend.BACKENDS)
    t.add_argument("--seed", type=int)
    t.add_argument("--out", help="output directory")
    again = t.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run in OUT with its own settings; --set train.lr=... or --epochs "
                            "change them from the next epoch, recorded")
    again.add_argument("--overwrite", action="store_true", help="replace the run in OUT")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.add_argument("--until", type=pos, metavar="EPOCH",
                   help="stop after this epoch (the schedule stays the config's; --resume continues)")
    t.set_defaults(func=_train)
    e = sub.add_parser("evaluate", help="test error of a checkpoint")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--dataset")
    e.add_argument("--source", choices=("embedded", "full"))
    e.add_argument("--data-dir", help="read the official files from DIR (or DIR/<name>), nowhere else")
    e.add_argument("--test-size", type=nonneg, help="test images (0: all)")
    e.add_argument("--T", type=pos, help="free-phase steps (default: the config's T_eval or T_free)")
    e.add_argument("--backend", choices=backend.BACKENDS)
    e.add_argument("--no-progress", action="store_true", help="no progress bars (of a download)")
    e.set_defaults(func=_evaluate)
    d = sub.add_parser("datasets", help="where each data set was found, verified")
    d.add_argument("--data-dir")
    d.set_defaults(func=_datasets)
    g = sub.add_parser("gradcheck", help="EP vs BPTT vs finite differences, and GDD")
    g.add_argument("--pool", choices=("avg", "max"), default="avg")
    g.add_argument("--loss", choices=("mse", "ce"), default="mse")
    g.add_argument("--eps", type=finite_float(0, 1), help="step size (default 0.8; 0.3 with --spiking)")
    g.add_argument("--beta", type=finite_float(nonzero=True),
                   help="nudging factor (default 1e-3; 0.2 with --spiking)")
    g.add_argument("--T", type=pos, help="steps of every phase (default 300; free 60 with --spiking)")
    g.add_argument("--K", type=pos, default=20, help="GDD: steps compared")
    g.add_argument("--batch", type=pos, help="batch size (default 8; 20 with --spiking)")
    g.add_argument("--fd-entries", type=pos, default=12)
    g.add_argument("--seed", type=nonneg, default=3)
    g.add_argument("--spiking", action="store_true",
                   help="compare spiking EP, spiking BPTT and CRNN EP per layer, for avg and max pooling "
                        "(defaults then: eps = lam = 0.3, beta = 0.2, T = 60, 8 batches of 20)")
    g.add_argument("--lam", type=finite_float(0, 1), default=0.3)
    g.add_argument("--batches", type=pos, default=8)
    g.set_defaults(func=_gradcheck)
    m = sub.add_parser("memory", help="peak memory of one training step (Table II)")
    m.add_argument("--batch", type=pos, default=10)
    m.add_argument("--T-free", type=pos, default=100)
    m.add_argument("--T-nudge", type=pos, default=25)
    m.add_argument("--T-bptt", type=pos, default=150)
    m.add_argument("--channels", type=pos, nargs="+", default=[128, 256])
    m.add_argument("--hidden", type=pos, nargs="+", default=[512])
    m.set_defaults(func=_memory)
    return p


def _one_line(err):
    return " ".join(str(err).split())


def _error(text, code):
    print(f"minimal-ep: error: {text}", file=sys.stderr)
    return code


def _dispatch(argv):
    args = build_parser().parse_args(argv)
    from .train import TrainingStopped
    try:
        backend.set_blas_threads(args.threads)
        return args.func(args) or 0
    except datasets.DatasetNotFoundError as err:       # a search: where, what, how, on several lines
        return _error(err, 2)
    except TrainingStopped as err:                      # divergence, an output that cannot be written
        return _error(_one_line(err), 1)
    except (ValueError, RuntimeError) as err:           # bad input, no GPU
        return _error(_one_line(err), 2)
    except MemoryError:
        config = getattr(args, "config", None) or "the default configuration"
        return _error(f"out of memory: the sizes of {config} and the --set values (model.conv_channels, "
                      "model.hidden, model.padding, data.batch_size) need more memory than is free", 2)
    except OSError as err:                              # a file named on the command line
        if err.filename is None:
            return _error(_one_line(err), 2)
        return _error(f"{err.filename}: {err.strerror or _one_line(err)}", 2)


def main(argv=None):
    """Run one command; return its exit status (0 done, 1 stopped mid-run, 2 bad input, 130 Ctrl-C)."""
    try:
        return _dispatch(argv)
    except KeyboardInterrupt as err:
        print(f"minimal-ep: {_one_line(err) or 'interrupted'}", file=sys.stderr)
        return 130
