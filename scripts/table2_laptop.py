#!/usr/bin/env python
"""Laptop-scale Table II: train every cell of ``configs/laptop/`` resumably, one run after another.

A *cell* is one config file (a column of Table II on one data set); a *run* is one cell with one
seed, in ``runs/laptop/<cell>/`` (one seed) or ``runs/laptop/<cell>_seed<k>/`` (several). Each run
is ``minimal-ep --threads 1 train --config configs/laptop/<cell>.toml --resume --out <run> --seed k``
in a child process, its output appended to ``<run>/train.log``. The library locks a run folder and
commits it once per epoch, so the campaign can be killed at any moment and started again: finished
runs are skipped, an interrupted one resumes after its last completed epoch.

Cell by cell, not epoch by epoch round-robin: ``train`` runs a config to its last epoch, and the
linear learning-rate decay depends on ``train.epochs``, so stopping a run after each epoch would
need ``--epochs k`` and change its schedule. Instead the order makes partial results useful: the
cheap MNIST row first, then seed 0 of every Fashion-MNIST column, then seeds 1 and 2.

Beside each run the campaign writes ``memory.json`` (peak memory of one training step of the run's
config, :mod:`table2_measure`) and ``campaign.jsonl`` (one line per child: wall and CPU seconds,
exit code, epochs before and after); a run that stops by itself (divergence, an error) gets
``stopped.json`` and is not retried unless ``--retry-stopped`` (:mod:`table2_runner`). One campaign
at a time per runs folder (``<runs-dir>/run.lock``). Exit status: 0 all done, 1 some run stopped by
itself, 2 bad input, 130 stopped by a signal. Usage::

    python scripts/table2_laptop.py --fashion-mnist-dir ../shared/data --log runs/laptop/campaign.log
    python scripts/table2_laptop.py --status              # what is done, what is running
    python scripts/table2_laptop.py --measure-cost        # CPU seconds per epoch of each cell
    python scripts/table2_laptop.py --quick --runs-dir /tmp/q   # machinery check, seconds
"""
import argparse
import datetime
import json
import os
import pathlib
import signal
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import table2_measure  # noqa: E402
from minimal_ep import backend, config as config_mod, datasets  # noqa: E402
from minimal_ep.runs import RunFolderError, RunLock, atomic_write  # noqa: E402
from table2_runner import Campaign, epochs_done, lock_holder, shell_text, write_memory  # noqa: E402,F401

CONFIG_DIR = REPO / "configs" / "laptop"
RUNS_DIR = REPO / "runs" / "laptop"
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
# --quick: tiny data (the embedded subsets), 2 epochs, short phases. A check of the machinery only.
QUICK = ("data.source=embedded", 'data.data_dir=""', "data.train_size=100", "data.test_size=50",
         "train.epochs=2", "train.T_free=8", "train.T_nudge=4")


def cells(config_dir=CONFIG_DIR):
    """All cell names in table order (MNIST row first, then Fashion-MNIST; columns as in COLUMNS)."""
    return [f"{d}_{c}" for d in DATASETS for c in COLUMNS if (config_dir / f"{d}_{c}.toml").exists()]


def split_cell(cell):
    """``"fmnist_snn_ep_avg"`` -> ``("fmnist", "snn_ep_avg")``."""
    prefix, column = cell.split("_", 1)
    return prefix, column


def plan(selected=None, runs_dir=RUNS_DIR, config_dir=CONFIG_DIR):
    """The runs, in campaign order: dicts with cell, seed, name, config (path) and out (path)."""
    names = selected or cells(config_dir)
    runs = []
    for seed in range(max(SEEDS.values())):
        for cell in names:
            n = SEEDS.get(cell, 1)
            if seed < n:
                name = f"{cell}_seed{seed}" if n > 1 else cell
                runs.append({"cell": cell, "seed": seed, "name": name, "out": runs_dir / name,
                             "config": config_dir / f"{cell}.toml"})
    return sorted(runs, key=lambda r: (r["seed"] > 0 or split_cell(r["cell"])[0] != "mnist", r["seed"]))


def resolve_run(run, overrides=(), data_dirs=None):
    """The run's configuration: its config file, ``overrides``, its seed, folder and data dir."""
    sets = {"train.seed": run["seed"], "run.out": str(run["out"])}
    data_dir = (data_dirs or {}).get(split_cell(run["cell"])[0])
    if data_dir:
        sets.update({"data.source": "full", "data.data_dir": str(data_dir)})
    return config_mod.resolve(run["config"], overrides, **sets)


def command(run, cfg, overrides=()):
    """The child's command line: ``python -m minimal_ep --threads 1 train ... --resume``."""
    cmd = [sys.executable, "-m", "minimal_ep", "--threads", "1", "train", "--config", str(run["config"]),
           "--resume", "--out", str(run["out"]), "--seed", str(run["seed"]), "--no-progress"]
    if cfg["data"]["source"] == "full" and cfg["data"]["data_dir"]:
        cmd += ["--data-dir", cfg["data"]["data_dir"]]
    for text in overrides:
        cmd += ["--set", text]
    return cmd


def status(run, cfg):
    """One of "done", "running", "stopped", "partial", "not started"."""
    done, out = epochs_done(run["out"]), run["out"]
    if done >= cfg["train"]["epochs"]:
        return "done"
    if lock_holder(out) is not None:
        return "running"
    return "stopped" if (out / "stopped.json").exists() else ("partial" if done else "not started")


def missing_data(todo, cfgs):
    """One line naming the first data set of ``todo`` that is nowhere to be found, or None."""
    for run in todo:
        d = cfgs[run["name"]]["data"]
        if d["source"] == "full" and datasets.find_dataset(d["dataset"], d["data_dir"] or None) is None:
            hint = ("run `python scripts/prepare_mnist_subset.py`" if d["dataset"] == "mnist" else
                    "pass --fashion-mnist-dir DIR (make table2-laptop FMNIST_DIR=DIR)")
            where = d["data_dir"] or "the usual places (see `minimal-ep datasets`)"
            return f"{d['dataset']} not found in {where} (needed by {run['name']}); {hint}"
    return None


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cells", nargs="+", metavar="CELL", help="only these cells (default: all)")
    p.add_argument("--runs-dir", type=pathlib.Path, help="default runs/laptop (runs/laptop-quick with --quick)")
    p.add_argument("--fashion-mnist-dir", help="folder with the official Fashion-MNIST files (--data-dir)")
    p.add_argument("--mnist-dir", help="MNIST folder (default: the configs' data/mnist-10k)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time, each one BLAS thread (default 1)")
    p.add_argument("--log", type=pathlib.Path, help="append the campaign's log to this file (default stdout)")
    p.add_argument("--quick", action="store_true", help="tiny data, 2 epochs, short phases (seconds)")
    p.add_argument("--retry-stopped", action="store_true", help="also rerun runs that stopped by themselves")
    p.add_argument("--status", action="store_true", help="print each run's state and exit")
    p.add_argument("--dry-run", action="store_true", help="check the configs and data, print what would run, exit")
    p.add_argument("--measure-memory", action="store_true", help="write every run's memory.json, then exit")
    p.add_argument("--measure-cost", action="store_true", help="CPU seconds per epoch of each cell, then exit")
    p.add_argument("--cost-size", type=int, nargs=2, default=(2000, 1000), metavar=("TRAIN", "TEST"))
    p.add_argument("--cost-out", type=pathlib.Path, help="--measure-cost's JSON (default RUNS_DIR/cost.json)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="with --measure-cost only: override a config key (e.g. Table I's T_free)")
    args = p.parse_args(argv)
    known = cells()
    bad = [c for c in args.cells or () if c not in known]
    if bad:
        p.exit(2, f"table2_laptop: error: unknown cell {bad[0]!r}; allowed: {', '.join(known)}\n")
    if args.jobs < 1 or args.cost_size[0] < 1 or args.cost_size[1] < 1:
        p.exit(2, "table2_laptop: error: --jobs and --cost-size take integers >= 1\n")
    if args.set and not args.measure_cost:
        p.exit(2, "table2_laptop: error: --set changes a cell's settings: only with --measure-cost\n")
    args.runs_dir = args.runs_dir or (RUNS_DIR.with_name("laptop-quick") if args.quick else RUNS_DIR)
    return args


def main(argv=None):
    args = parse_args(argv)
    backend.set_blas_threads(1)                  # the memory and cost measurements in this process
    overrides = QUICK if args.quick else ()
    data_dirs = {} if args.quick else {"fmnist": args.fashion_mnist_dir, "mnist": args.mnist_dir}
    runs = plan(args.cells, args.runs_dir)
    try:
        cfgs = {r["name"]: resolve_run(r, overrides, data_dirs) for r in runs}
    except config_mod.ConfigError as err:
        print(f"table2_laptop: error: {err}", file=sys.stderr)
        return 2
    if args.measure_memory:
        cache = {}
        for r in runs:
            write_memory(r, cfgs[r["name"]], cache)
            print(f"{r['name']:24s} {json.loads((r['out'] / 'memory.json').read_text())['peak_mb']:8.1f} MB")
        return 0
    states = {r["name"]: status(r, cfgs[r["name"]]) for r in runs}
    if args.status:
        holder = lock_holder(args.runs_dir)
        print(f"campaign in {args.runs_dir}: " + (f"running (process {holder})" if holder else "not running"))
        for r in runs:
            print(f"{r['name']:24s} {states[r['name']]:12s} {epochs_done(r['out'])}/"
                  f"{cfgs[r['name']]['train']['epochs']} epochs")
        return 0
    skip = {"done", "running"} | (set() if args.retry_stopped else {"stopped"})
    todo = runs if args.measure_cost else [r for r in runs if states[r["name"]] not in skip]
    problem = missing_data(todo, cfgs)
    if problem:
        print(f"table2_laptop: error: {problem}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(f"table2_laptop: {len(runs)} runs in {args.runs_dir}, {len(todo)} to do: "
              + (", ".join(r["name"] for r in todo) or "nothing"))
        return 0
    if args.measure_cost:
        out = args.cost_out or args.runs_dir / "cost.json"
        return table2_measure.measure_costs(runs, cfgs, args.set, args.cost_size, out)
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    logfile = open(args.log, "a", buffering=1) if args.log else sys.stdout

    def log(text):
        print(f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S} {text}", file=logfile, flush=True)
    try:
        lock = RunLock(args.runs_dir, log).acquire()          # one campaign per runs folder
    except RunFolderError as err:
        print(f"table2_laptop: error: {err}", file=sys.stderr)
        return 2
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        record = {"mode": "quick" if args.quick else "full", "overrides": list(overrides),
                  "argv": sys.argv[1:] if argv is None else list(argv), "pid": os.getpid()}
        atomic_write(args.runs_dir / "campaign.json", lambda f: f.write(json.dumps(record).encode()))
        for r in todo:
            r["cmd"] = command(r, cfgs[r["name"]], overrides)
        campaign = Campaign(todo, cfgs, args.jobs, log, REPO)
        for sig in handlers:
            signal.signal(sig, campaign.stop)
        log(f"campaign in {args.runs_dir}: {len(runs)} runs, {len(todo)} to do "
            f"({', '.join(f'{n} {s}' for n, s in states.items() if s != 'done') or 'nothing left'})")
        code = campaign.run()
        log(f"campaign {'stopped' if code == 130 else 'finished'}; "
            + (f"stopped by themselves: {', '.join(campaign.failed)}" if campaign.failed else "no run failed"))
        return code
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        lock.release()
        if logfile is not sys.stdout:
            logfile.close()


if __name__ == "__main__":
    sys.exit(main())
