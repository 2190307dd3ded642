#!/usr/bin/env python
"""Laptop-scale Table II: train every cell of ``configs/laptop/`` resumably, one run after another.

A *cell* is one config file (a column of Table II on one data set); a *run* is one cell with one
seed, in ``results/table2/laptop/<cell>/`` (one seed) or ``.../<cell>_seed<k>/`` (several). Each run
is ``minimal-ep --threads 1 train --config configs/laptop/<cell>.toml --resume --out <run> --seed k``
in a child process (the shared campaign runner, :mod:`minimal_ep.run.campaign`), so the campaign
can be killed at any moment and started again: finished runs are skipped, an interrupted one
resumes after its last completed epoch.

Cell by cell, each child running its run to the last epoch: the partial results are useful in that
order (the cheap MNIST row first, then seed 0 of every Fashion-MNIST column, then seeds 1 and 2).
Beside each run the campaign writes ``memory.json`` (peak memory of one training step of the run's
config, :mod:`table2.measure`) before it starts, and the runner's ``campaign.jsonl`` (wall and CPU
seconds of every child) and ``stopped.json`` (a run that stopped by itself; not retried unless
``--retry-stopped``). Exit status: 0 all done, 1 some run stopped by itself, 2 bad input, 130
stopped by a signal. Usage::

    python -m table2.laptop --fashion-mnist-dir ../shared/data --log results/table2/laptop/campaign.log
    python -m table2.laptop --status              # what is done, what is running
    python -m table2.laptop --measure-cost        # CPU seconds per epoch of each cell
    python -m table2.laptop --quick --runs-dir /tmp/q   # machinery check, seconds

The mid-scale table (issue #28) is the same campaign on ``configs/midscale/``, 3 seeds per cell,
one epoch per child round-robin (``--epochs-per-child 1``: the runs advance together, and
``--finish-by`` can end a session between epochs), and SNN EP (max)'s runs at chance after each of
their first 3 epochs end there (``--chance-stop 3``; the paper predicts that column does not learn)::

    python -m table2.laptop --config-dir configs/midscale --runs-dir results/table2/midscale --seeds 3 \
        --epochs-per-child 1 --chance-stop 3 --fashion-mnist-dir DIR --jobs 2
"""
import json
import os
import pathlib
import sys

from minimal_ep import backend, datasets
from minimal_ep.run import campaign as runner, config as config_mod
from minimal_ep.run.cli import int_at_least
from minimal_ep.run.runs import atomic_write
from table2 import measure

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs" / "laptop"
RUNS_DIR = REPO / "results" / "table2" / "laptop"
DATASETS = {"mnist": "MNIST", "fmnist": "Fashion-MNIST"}            # config prefix -> name, run order
COLUMNS = {"snn_ep_avg": "SNN EP (avg)", "snn_ep_max": "SNN EP (max)", "snn_bptt": "SNN BPTT",
           "crnn_ep_ce": "CRNN EP (CE)", "crnn_ep_mse": "CRNN EP (MSE)", "crnn_bptt": "CRNN BPTT"}
SEEDS = {"fmnist_snn_ep_avg": 3, "fmnist_snn_ep_max": 3, "fmnist_snn_bptt": 3}   # others: 1
# The keys that define a cell: its column, its row (data set, where its files are, the epochs that
# fit the budget for that data set and the phase lengths that settle its trained nets), and the
# run's seed and folder. Nothing else may differ.
COLUMN_KEYS = {("model", "spiking"), ("model", "pool"), ("model", "loss"), ("train", "algorithm")}
ROW_KEYS = {("data", "dataset"), ("data", "data_dir"), ("train", "epochs"), ("train", "T_free"),
            ("train", "T_nudge")}
DEFINING = COLUMN_KEYS | ROW_KEYS | {("train", "seed"), ("run", "out")}
CHANCE_COLUMNS = ("snn_ep_max",)       # --chance-stop: the column the paper predicts does not learn
# --quick: tiny data (the embedded subsets), 2 epochs, short phases. A check of the machinery only.
QUICK = ("data.source=embedded", 'data.data_dir=""', "data.train_size=100", "data.test_size=50",
         "train.epochs=2", "train.T_free=8", "train.T_nudge=4", "train.average_last=4")


def cells(config_dir=CONFIG_DIR):
    """All cell names in table order (MNIST row first, then Fashion-MNIST; columns as in COLUMNS)."""
    return [f"{d}_{c}" for d in DATASETS for c in COLUMNS if (config_dir / f"{d}_{c}.toml").exists()]


def split_cell(cell):
    """``"fmnist_snn_ep_avg"`` -> ``("fmnist", "snn_ep_avg")``."""
    prefix, column = cell.split("_", 1)
    return prefix, column


def plan(selected=None, runs_dir=RUNS_DIR, config_dir=CONFIG_DIR, overrides=(), data_dirs=None, seeds=None):
    """The runs (:class:`minimal_ep.run.campaign.Run`), in campaign order; ``run.cell`` is the cell.

    ``overrides`` are ``--set`` texts for every run; ``data_dirs`` maps a data-set prefix to the
    folder of its official files (``--data-dir`` of the children); ``seeds``: that many seeds of
    every cell (default: the laptop table's, ``SEEDS``).
    """
    names = selected or cells(config_dir)
    per_cell = {cell: seeds or SEEDS.get(cell, 1) for cell in names}
    runs = []
    for seed in range(max(per_cell.values())):
        for cell in names:
            n = per_cell[cell]
            if seed < n:
                config = config_dir / f"{cell}.toml"
                name = f"{cell}_seed{seed}" if n > 1 else cell
                data_dir = (data_dirs or {}).get(split_cell(cell)[0])
                epochs = config_mod.resolve(config, overrides).train.epochs
                run = runner.Run(name, _rel(config), _rel(runs_dir / name), seed, epochs, list(overrides),
                                 str(data_dir) if data_dir else None, root=REPO)
                run.cell = cell
                runs.append(run)
    return sorted(runs, key=lambda r: (r.seed > 0 or split_cell(r.cell)[0] != "mnist", r.seed))


def _rel(path):
    """``path`` relative to the repository when it lies inside it (commands and configs stay portable)."""
    return runner.repo_relative(path, REPO)


def chance_stop(runs, epochs):
    """``--chance-stop``: the runs of CHANCE_COLUMNS at chance after each of their first ``epochs`` end there."""
    if epochs:
        runner.stop_at_chance(runs, epochs, lambda run: split_cell(run.cell)[1] in CHANCE_COLUMNS)


def resolve_run(run):
    """The run's configuration: its config file, overrides, seed, folder and data dir."""
    sets = {"train.seed": run.seed, "run.out": str(run.out)}
    if run.data_dir:
        sets.update({"data.source": "full", "data.data_dir": run.data_dir})
    return config_mod.resolve(REPO / run.config, run.sets, **sets)


def missing_data(todo, cfgs):
    """One line naming the first data set of ``todo`` that is nowhere to be found, or None."""
    for run in todo:
        d = cfgs[run.name].data
        if d.source == "full" and datasets.find_dataset(d.dataset, d.data_dir or None) is None:
            hint = ("run `python scripts/prepare_mnist_subset.py`" if d.dataset == "mnist" else
                    "pass --fashion-mnist-dir DIR (make table2-laptop FMNIST_DIR=DIR)")
            where = d.data_dir or "the usual places (see `minimal-ep datasets`)"
            return f"{d.dataset} not found in {where} (needed by {run.name}); {hint}"
    return None


def parse_args(argv):
    p = runner.parser(__doc__.split("\n")[0])
    p.add_argument("--config-dir", type=pathlib.Path, default=CONFIG_DIR,
                   help="the cells' configs (default configs/laptop; configs/midscale: the mid-scale table)")
    p.add_argument("--seeds", type=int_at_least(1), default=None,
                   help="seeds of every cell (default: the laptop table's, 3 for Fashion-MNIST's spiking cells, else 1)")
    p.add_argument("--cells", nargs="+", metavar="CELL", help="only these cells (default: all)")
    p.add_argument("--runs-dir", type=pathlib.Path, help="default results/table2/laptop "
                   "(runs/laptop-quick with --quick)")
    p.add_argument("--fashion-mnist-dir", help="folder with the official Fashion-MNIST files (--data-dir)")
    p.add_argument("--mnist-dir", help="MNIST folder (default: the configs' data/mnist-10k)")
    p.add_argument("--quick", action="store_true", help="tiny data, 2 epochs, short phases (seconds)")
    p.add_argument("--measure-memory", action="store_true", help="write every run's memory.json, then exit")
    p.add_argument("--measure-cost", action="store_true", help="CPU seconds per epoch of each cell, then exit")
    p.add_argument("--cost-size", type=int, nargs=2, default=(2000, 1000), metavar=("TRAIN", "TEST"))
    p.add_argument("--cost-out", type=pathlib.Path, help="--measure-cost's JSON (default RUNS_DIR/cost.json)")
    p.add_argument("--epochs-per-child", type=int_at_least(1), default=None, metavar="E",
                   help="each child trains E more epochs, the run with the fewest first (default: to the last)")
    p.add_argument("--chance-stop", type=int_at_least(1), default=None, metavar="E",
                   help="end after epoch E the SNN EP (max) runs at chance (test error >= 85%%) after each epoch so far")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="with --measure-cost only: override a config key (e.g. Table I's T_free)")
    args = p.parse_args(argv)
    if not args.config_dir.is_dir():
        p.error(f"--config-dir {args.config_dir} is not a folder")
    args.config_dir = args.config_dir.resolve()
    if args.config_dir != CONFIG_DIR.resolve() and args.runs_dir is None:
        p.error("--config-dir other than configs/laptop needs --runs-dir (its runs never go into the laptop table's)")
    known = cells(args.config_dir)
    bad = [c for c in args.cells or () if c not in known]
    if bad:
        p.error(f"unknown cell {bad[0]!r}; allowed: {', '.join(known)}")
    if args.cost_size[0] < 1 or args.cost_size[1] < 1:
        p.error("--cost-size takes integers >= 1")
    if args.set and not args.measure_cost:
        p.error("--set changes a cell's settings: only with --measure-cost")
    args.runs_dir = args.runs_dir or (REPO / "runs" / "laptop-quick" if args.quick else RUNS_DIR)
    return args


def main(argv=None):
    args = parse_args(argv)
    backend.set_blas_threads(1)                  # the memory and cost measurements in this process
    overrides = QUICK if args.quick else ()
    data_dirs = {} if args.quick else {"fmnist": args.fashion_mnist_dir, "mnist": args.mnist_dir}
    try:
        runs = plan(args.cells, args.runs_dir, args.config_dir, overrides, data_dirs, args.seeds)
        cfgs = {r.name: resolve_run(r) for r in runs}
    except config_mod.ConfigError as err:
        print(f"table2.laptop: error: {err}", file=sys.stderr)
        return 2
    if args.measure_memory or not (args.status or args.measure_cost):
        cache = {}
        for r in runs:
            if args.measure_memory or not (args.dry_run or r.status() == "done"):
                measure.write_memory(r.folder, r.cell, cfgs[r.name], cache)
        if args.measure_memory:
            for r in runs:
                peak = json.loads((r.folder / "memory.json").read_text())["peak_mb"]
                print(f"{r.name:24s} {peak:8.1f} MB")
            return 0
    if args.measure_cost:
        problem = missing_data(runs, cfgs)
        if problem:
            print(f"table2.laptop: error: {problem}", file=sys.stderr)
            return 2
        return measure.measure_costs(runs, cfgs, args.set, args.cost_size,
                                     args.cost_out or args.runs_dir / "cost.json")
    skip = {"done", "running"} | (set() if args.retry_stopped else {"stopped"})
    problem = None if args.status else missing_data([r for r in runs if r.status() not in skip], cfgs)
    if problem:
        print(f"table2.laptop: error: {problem}", file=sys.stderr)
        return 2
    chance_stop(runs, args.chance_stop)
    if not (args.status or args.dry_run):
        args.runs_dir.mkdir(parents=True, exist_ok=True)
        record = {"mode": "quick" if args.quick else "full", "overrides": list(overrides),
                  "argv": sys.argv[1:] if argv is None else list(argv), "pid": os.getpid(),
                  "config_dir": str(_rel(args.config_dir)), "seeds": args.seeds, "chance_stop": args.chance_stop}
        atomic_write(args.runs_dir / "campaign.json", lambda f: f.write(json.dumps(record).encode()))
    return runner.run_campaign(runs, args, args.runs_dir, REPO, step=args.epochs_per_child, prog="table2.laptop",
                               after_child=lambda run: chance_stop([run], args.chance_stop))


if __name__ == "__main__":
    sys.exit(main())
