"""The command line: ``minimal-ep <command>`` (also ``python -m minimal_ep <command>``).

    train      train a network from a TOML config (configs/), with --set overrides
    evaluate   test error of a checkpoint
    datasets   where each data set was found, or what is missing
    gradcheck  EP vs BPTT vs finite differences, and the GDD table, on a small network
    memory     peak memory of one training step for SNN/CRNN x EP/BPTT (paper Table II)

Bad input exits with status 2 and one line on stderr, never a traceback.
"""
import argparse
import sys

import numpy as np

from . import backend, config as config_mod, datasets


class _Parser(argparse.ArgumentParser):
    def error(self, message):                      # one line, status 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _train(args):
    from .train import train
    sets = {"train.epochs": args.epochs, "data.train_size": args.train_size,
            "data.test_size": args.test_size, "data.dataset": args.dataset,
            "data.data_dir": args.data_dir, "run.backend": args.backend, "train.seed": args.seed,
            "run.out": args.out}
    if args.dataset is not None:
        sets["data.dataset"] = datasets.canonical_name(args.dataset)
    cfg = config_mod.resolve(args.config, args.set, **sets)
    metrics = train(cfg, resume=args.resume, progress=not args.no_progress)
    last = metrics[-1]
    print(f"final test error {100 * last['test_error']:.2f}% after {last['epoch']} epochs "
          f"({sum(m['seconds'] for m in metrics):.0f}s of training); outputs in {cfg['run']['out']}")


def _evaluate(args):
    from .train import evaluate, load_checkpoint, load_data, network_from_config
    cfg, params, _, epoch, _ = load_checkpoint(args.checkpoint)
    if args.dataset is not None:
        cfg["data"]["dataset"] = datasets.canonical_name(args.dataset)
    for key, value in (("data_dir", args.data_dir), ("source", args.source), ("test_size", args.test_size)):
        if value is not None:
            cfg["data"][key] = value
    cfg["data"]["train_size"] = 1
    backend.set_backend(args.backend or cfg["run"]["backend"])
    _, _, x_test, y_test, source = load_data(cfg)
    net = network_from_config(cfg)
    for k, v in params.items():
        net.params[k][...] = backend.to_device(v)
    T = args.T or cfg["train"]["T_eval"] or cfg["train"]["T_free"]
    err = evaluate(net, x_test, y_test, T, cfg["data"]["batch_size"])
    print(f"test error {100 * err:.2f}% on {len(y_test)} {cfg['data']['dataset']} test images "
          f"({source}), checkpoint after epoch {epoch}, T = {T}")


def _datasets(args):
    for row in datasets.dataset_status(args.data_dir):
        where = row["found"] or "not found; searched " + ", ".join(map(str, row["search_dirs"]))
        emb = row["embedded"]
        print(f"{row['name']:14s} full: {where}")
        print(f"{'':14s} embedded: " + (f"{emb['train']} train / {emb['test']} test images"
                                      if emb else "missing from the package"))


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
              hidden=(16,), n_classes=4, loss=args.loss, dtype="float64", seed=args.seed)
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
    table, free = gc.gdd(net1, x, y, args.beta, args.T, args.K)
    print(f"\nGDD at eps = 1 (free residual {free.residual:.1e}), last K = {args.K} steps, beta = {args.beta}:")
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


def build_parser():
    p = _Parser(prog="minimal-ep", description="Equilibrium Propagation for convolutional "
                "convergent RNNs, continuous and spiking, in NumPy/CuPy.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser("train", help="train from a config")
    t.add_argument("--config", help="TOML file (see configs/)")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config key (repeatable)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--train-size", type=int)
    t.add_argument("--test-size", type=int)
    t.add_argument("--dataset")
    t.add_argument("--data-dir")
    t.add_argument("--backend", choices=backend.BACKENDS)
    t.add_argument("--seed", type=int)
    t.add_argument("--out", help="output directory")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.set_defaults(func=_train)
    e = sub.add_parser("evaluate", help="test error of a checkpoint")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--dataset")
    e.add_argument("--data-dir")
    e.add_argument("--source", choices=("embedded", "full"))
    e.add_argument("--test-size", type=int)
    e.add_argument("--T", type=int, help="free-phase steps (default: the config's T_eval or T_free)")
    e.add_argument("--backend", choices=backend.BACKENDS)
    e.set_defaults(func=_evaluate)
    d = sub.add_parser("datasets", help="where each data set was found")
    d.add_argument("--data-dir")
    d.set_defaults(func=_datasets)
    g = sub.add_parser("gradcheck", help="EP vs BPTT vs finite differences, and GDD")
    g.add_argument("--pool", choices=("avg", "max"), default="avg")
    g.add_argument("--loss", choices=("mse", "ce"), default="mse")
    g.add_argument("--eps", type=float, help="step size (default 0.8; 0.3 with --spiking)")
    g.add_argument("--beta", type=float, help="nudging factor (default 1e-3; 0.2 with --spiking)")
    g.add_argument("--T", type=int, help="steps of every phase (default 300; free 60 with --spiking)")
    g.add_argument("--K", type=int, default=20, help="GDD: steps compared")
    g.add_argument("--batch", type=int, help="batch size (default 8; 20 with --spiking)")
    g.add_argument("--fd-entries", type=int, default=12)
    g.add_argument("--seed", type=int, default=3)
    g.add_argument("--spiking", action="store_true",
                   help="compare spiking EP, spiking BPTT and CRNN EP per layer, for avg and max pooling "
                        "(defaults then: eps = lam = 0.3, beta = 0.2, T = 60, 8 batches of 20)")
    g.add_argument("--lam", type=float, default=0.3)
    g.add_argument("--batches", type=int, default=8)
    g.set_defaults(func=_gradcheck)
    m = sub.add_parser("memory", help="peak memory of one training step (Table II)")
    m.add_argument("--batch", type=int, default=10)
    m.add_argument("--T-free", type=int, default=100)
    m.add_argument("--T-nudge", type=int, default=25)
    m.add_argument("--T-bptt", type=int, default=150)
    m.add_argument("--channels", type=int, nargs="+", default=[128, 256])
    m.add_argument("--hidden", type=int, nargs="+", default=[512])
    m.set_defaults(func=_memory)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from .train import TrainingDiverged
    try:
        args.func(args)
    except datasets.DatasetNotFoundError as err:
        print(f"minimal-ep: error: {err}", file=sys.stderr)         # several lines: where, what, how
        return 2
    except (ValueError, RuntimeError) as err:                       # bad input, no GPU, divergence
        print(f"minimal-ep: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1 if isinstance(err, TrainingDiverged) else 2
    except KeyboardInterrupt:
        print("minimal-ep: interrupted; the last completed epoch's checkpoint is kept", file=sys.stderr)
        return 130
    return 0
