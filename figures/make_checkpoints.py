"""Train the figure checkpoints: the four five-layer nets of configs/figures/, epoch by epoch, resumably.

Every net (configuration x seed) is a run of the shared campaign runner (:mod:`minimal_ep.run.campaign`):
a child process that runs the ordinary training command for one more epoch,

    minimal-ep --threads 1 train --config configs/figures/NAME.toml --resume \\
               --out results/figures/checkpoints/RUN --seed S --no-progress --data-dir data/mnist-10k --until E

from the repository, with paths relative to it (the ``config.toml`` a run writes names no folder of
this machine). ``--until E`` stops the child after epoch E without changing the learning-rate
schedule, which is always that of the config's ``train.epochs`` (``--epochs`` only says where to stop;
to go further, raise ``train.epochs`` with ``--set``). RUN is NAME for seed 0 and NAME_seedS otherwise.
The nets advance round-robin (the one with the fewest completed epochs goes next), ``--jobs`` at a
time, so stopping at any moment leaves every net within one epoch of the others, and running the
command again continues where it stopped (``--status`` says where that is, ``--dry-run`` what would run).

Each run folder keeps what ``minimal-ep train`` writes (a float32 ``checkpoint.npz`` of a few hundred
KB, ``config.toml``, ``metrics.jsonl``, ``learning_curves.png``), the runner's ``train.log`` and
``campaign.jsonl`` (seconds and CPU seconds of every child), and the *stages* of its training,
``stages/epoch_NNN.npz``: the checkpoint at initialisation (epoch 0), after epochs 1, 2, 4, 8, ... and
after the last epoch, for ``python -m figures.diagnose --history``. The stages after an epoch are
copies of the checkpoint; stage 0 is written after the run's first child, from the config stored in
its checkpoint: the network that config builds (its seed's initial weights), a fresh optimiser and
the RNGs of the seed, i.e. exactly the state ``minimal-ep train`` starts from (``--resume`` from it
trains the same first epoch). A run trained before its stages were kept gets stage 0 (and its
checkpoint, if that epoch is a stage) when the campaign starts.

    python figures/make_checkpoints.py --data-dir data/mnist-10k --epochs 2 --jobs 2
    python figures/make_checkpoints.py --status                        # what is done, what is running
    python figures/make_checkpoints.py --quick --out-dir /tmp/ckpt     # tiny nets, seconds (tests)
    python figures/make_checkpoints.py --measure 1                     # CPU time of an epoch; trains nothing
    make checkpoints EPOCHS=2 SEEDS="0 1 2" JOBS=2                     # the same through make

``--chance-stop E``: a run of a seed other than the first whose test error was at chance (>= 85%
on MNIST's ten classes) after each of its first E epochs stops after epoch E, and that is its last
stage (the first seed of every net gets the whole budget; issue #27 lets SNN+max's seeds 1-2 stop
after 3 epochs at chance). ``--finish-by HH:MM`` starts only the children expected to end by then.

Exit status: 0 every run at its last epoch, 1 some run stopped by itself (``stopped.json`` in its
folder; ``--retry-stopped`` runs it again), 2 bad input, 130 stopped by a signal.
"""
import argparse
import pathlib
import sys
import time

import numpy as np

from minimal_ep import backend
from minimal_ep.optim import SGD
from minimal_ep.run import campaign as runner, config as config_mod
from minimal_ep.run.checkpoints import read_checkpoint, save_checkpoint
from minimal_ep.run.cli import int_at_least
from minimal_ep.run.runs import atomic_write
from minimal_ep.run.train import evaluate, load_data, make_rngs, network_from_config, train_epoch

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "figures"
OUT_DIR = REPO / "results" / "figures" / "checkpoints"
QUICK_OUT_DIR = REPO / "runs" / "figures-quick"
DATA_DIR = "data/mnist-10k"                      # scripts/prepare_mnist_subset.py; relative to the repository
NAMES = ("crnn_max", "crnn_avg", "snn_max", "snn_avg")
# --quick: the same four configurations as tiny nets on the embedded subset (about a second each):
# conv 3-4-6-8 keeps four conv layers, so the middle layers 2, 3, 4 exist (with 4, 6, 8 channels).
QUICK = ['data.source="embedded"', "data.train_size=20", "data.test_size=10", "data.batch_size=10",
         "model.conv_channels=[3, 4, 6, 8]", "train.T_free=16", "train.T_nudge=6"]
STAGES = "stages"


def rel(path):
    """``path`` relative to the repository when it lies inside it (the commands and configs stay portable)."""
    return runner.repo_relative(path, REPO)


def run_name(name, seed):
    return name if seed == 0 else f"{name}_seed{seed}"


# ----------------------------------------------------------------------------- stages
def is_stage(epoch, last):
    """Whether the checkpoint after ``epoch`` is kept: 0 (the initialisation), 1, 2, 4, 8, ... and ``last``."""
    return epoch & (epoch - 1) == 0 or epoch == last


def stage_path(run_dir, epoch):
    return pathlib.Path(run_dir) / STAGES / f"epoch_{epoch:03d}.npz"


def write_initial_stage(cfg, path):
    """The checkpoint of a run before its first epoch: what ``minimal_ep.run.train.train`` starts from.

    The network ``cfg`` describes (its ``train.seed``'s initial weights), a fresh SGD optimiser and
    the two RNGs of the seed, after 0 epochs and with no metrics.
    """
    net = network_from_config(cfg)
    rng, sign_rng = make_rngs(cfg.train.seed)
    save_checkpoint(path, net, SGD(net.params, cfg.train.lr, cfg.train.momentum), cfg, 0, rng, sign_rng,
                    metrics=[])


def keep_stages(run):
    """After a child that ended well: stage 0 if missing, and a copy of the checkpoint if its epoch is a stage."""
    out = run.folder
    ckpt = read_checkpoint(out / "checkpoint.npz")
    (out / STAGES).mkdir(exist_ok=True)
    if not stage_path(out, 0).exists():
        write_initial_stage(ckpt.config, stage_path(out, 0))
    if is_stage(ckpt.epoch, run.epochs):
        data = (out / "checkpoint.npz").read_bytes()
        atomic_write(stage_path(out, ckpt.epoch), lambda f: f.write(data))


def backfill_stages(runs):
    """Stage 0, and the checkpoint if it is a stage, for runs trained before their stages were kept."""
    for run in runs:
        if run.done() and run.status() != "running" and not stage_path(run.folder, 0).exists():
            keep_stages(run)


# ----------------------------------------------------------------------------- the cost of an epoch
def measure_cost(config, data_dir, sets, batches=1, log=print):
    """CPU and wall seconds of one training batch and of evaluating one batch of test images.

    Runs ``batches`` batches of ``minimal_ep.run.train.train_epoch`` and ``evaluate`` on as many test
    images (T_eval steps) in this process, from the config's initialisation, and extrapolates to one
    epoch of the config's training set and test_size.
    """
    cfg = config_mod.resolve(config, sets, **{"data.data_dir": data_dir})
    data = load_data(cfg)
    n, bs = len(data.y_train), cfg.data.batch_size
    cfg = cfg.replace(**{"data.shuffle": False})
    net = network_from_config(cfg)
    clocks = lambda: np.array([time.process_time(), time.perf_counter()])      # noqa: E731
    t0 = clocks()
    train_epoch(net, SGD(net.params, cfg.train.lr), cfg, data.x_train[:batches * bs], data.y_train[:batches * bs],
                np.random.default_rng(0), 0, progress=False)
    t1 = clocks()
    evaluate(net, data.x_test[:batches * bs], data.y_test[:batches * bs], cfg.train.T_eval or cfg.train.T_free, bs)
    t2 = clocks()
    train, ev = (t1 - t0) / batches, (t2 - t1) / batches
    out = {"cpu_per_batch": train[0], "wall_per_batch": train[1], "cpu_eval_per_batch": ev[0],
           "batches_per_epoch": -(-n // bs), "eval_batches": -(-len(data.y_test) // bs), "batch_size": bs}
    out["cpu_per_epoch"] = out["batches_per_epoch"] * train[0] + out["eval_batches"] * ev[0]
    log(f"{pathlib.Path(config).stem}: one batch of {bs}: {train[0]:.1f}s CPU ({train[1]:.1f}s wall); "
        f"evaluating {bs} test images {ev[0]:.1f}s CPU; one epoch ({out['batches_per_epoch']} batches + "
        f"{len(data.y_test)} test images) {out['cpu_per_epoch'] / 60:.1f} CPU-min")
    return out


# ----------------------------------------------------------------------------- the campaign
def plan(args, sets):
    """The runs (:class:`minimal_ep.run.campaign.Run`), the configurations in ``--names`` order, each with its seeds.

    Raises ConfigError for a config that does not resolve or an ``--epochs`` beyond its schedule.
    """
    runs = []
    for name in args.names:
        config = args.configs / f"{name}.toml"
        schedule = config_mod.resolve(config, sets).train.epochs
        epochs = args.epochs or schedule
        if epochs > schedule:
            raise config_mod.ConfigError(
                f"--epochs {epochs} is beyond the {schedule} epochs of {rel(config)}'s learning-rate schedule "
                f"(train.epochs): give --set train.epochs={epochs} to train longer (a run resumes with it)")
        for seed in args.seeds if name.startswith("snn") else args.crnn_seeds:
            run = run_name(name, seed)
            runs.append(runner.Run(run, rel(config), rel(args.out_dir / run), seed, epochs, list(sets),
                                   args.data_dir, root=REPO))
    return runs


def _seeds(p, text, option):
    try:
        return [int_at_least(0)(s) for s in text.replace(",", " ").split()]
    except argparse.ArgumentTypeError as err:
        p.error(f"{option}: {err}")


def parse(argv):
    p = runner.parser(__doc__.split("\n")[0])
    p.add_argument("--names", default=",".join(NAMES), help="configurations (comma-separated)")
    p.add_argument("--seeds", default="0 1 2", help="training seeds of the SNN nets (space-separated)")
    p.add_argument("--crnn-seeds", default="0", help="training seeds of the CRNN nets")
    p.add_argument("--epochs", type=int_at_least(1), default=None,
                   help="train up to this epoch (default: the config's train.epochs, the schedule's length)")
    p.add_argument("--data-dir", default=DATA_DIR,
                   help="MNIST folder (scripts/prepare_mnist_subset.py); relative: to here, else to the repository")
    p.add_argument("--configs", type=pathlib.Path, default=CONFIGS, help="folder of NAME.toml")
    p.add_argument("--out-dir", type=pathlib.Path, default=None,
                   help=f"where the runs go (default {rel(OUT_DIR)}; with --quick {rel(QUICK_OUT_DIR)})")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="config override passed to every run (repeatable)")
    p.add_argument("--chance-stop", type=int_at_least(1), default=None, metavar="E",
                   help="stop after epoch E the runs of other seeds than the first still at chance then")
    p.add_argument("--quick", action="store_true", help="tiny nets on the embedded subset, 1 epoch (tests)")
    p.add_argument("--measure", type=int_at_least(1), default=None, metavar="BATCHES",
                   help="time BATCHES training batches and test batches of each configuration, train nothing")
    args = p.parse_args(argv)
    args.seeds, args.crnn_seeds = _seeds(p, args.seeds, "--seeds"), _seeds(p, args.crnn_seeds, "--crnn-seeds")
    args.names = [n.strip() for n in args.names.split(",") if n.strip()]
    args.configs = args.configs.absolute()
    bad = [n for n in args.names if not (args.configs / f"{n}.toml").is_file()]
    if bad or not args.names:
        p.error(f"no config for {', '.join(bad) or 'an empty --names'} in {args.configs}")
    if args.quick:                                 # never into results/figures/checkpoints by accident
        args.data_dir, args.epochs = None, args.epochs or 1
    elif not pathlib.Path(args.data_dir).is_absolute() and pathlib.Path(args.data_dir).exists():
        args.data_dir = str(rel(args.data_dir))    # the children run in the repository
    args.out_dir = (args.out_dir or (QUICK_OUT_DIR if args.quick else OUT_DIR)).absolute()
    if args.log is not None:
        args.log = args.log.absolute()
    return args


def main(argv=None):
    """Run the campaign (or ``--status``, ``--dry-run``, ``--measure``); returns the exit status."""
    args = parse(argv)
    sets = (QUICK if args.quick else []) + args.set
    try:
        runs = plan(args, sets)
    except config_mod.ConfigError as err:
        print(f"make_checkpoints: error: {err}", file=sys.stderr)
        return 2
    if args.measure:                             # in this process, at one BLAS thread as the children
        backend.set_blas_threads(1)
        data_dir = None if args.data_dir is None else str(REPO / args.data_dir)
        for name in args.names:
            measure_cost(args.configs / f"{name}.toml", data_dir, sets, args.measure)
        return 0
    def other_seed(run):                          # not the first of its net's seeds (--seeds / --crnn-seeds)
        return run.seed != (args.seeds if pathlib.Path(run.config).stem.startswith("snn") else args.crnn_seeds)[0]

    def after_child(run):
        if args.chance_stop:
            runner.stop_at_chance([run], args.chance_stop, other_seed)
        keep_stages(run)
    if args.chance_stop:
        runner.stop_at_chance(runs, args.chance_stop, other_seed)
    if not (args.status or args.dry_run):
        backfill_stages(runs)
    return runner.run_campaign(runs, args, args.out_dir, REPO, step=1, after_child=after_child,
                               prog="make_checkpoints")


if __name__ == "__main__":
    sys.exit(main())
