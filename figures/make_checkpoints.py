"""Train the figure checkpoints: the four five-layer nets of configs/figures/, epoch by epoch, resumably.

For every net (configuration x seed) this runs the ordinary training command, one epoch at a time,

    minimal-ep train --config configs/figures/NAME.toml --out figures/checkpoints/RUN --resume \\
                     --epochs E --seed S --data-dir DATA_DIR --no-progress

so each run folder keeps what ``minimal-ep train`` writes (a float32 ``checkpoint.npz`` of a few hundred
KB, ``config.toml``, ``metrics.jsonl``, ``learning_curves.png``), plus ``history/epoch_NNN.npz``, a
copy of the checkpoint after every epoch (for ``figures/diagnose.py`` over training), and ``train.log``.
RUN is NAME for seed 0 and NAME_seedS otherwise. The nets advance round-robin (the one with the
fewest completed epochs goes next), ``--jobs`` of them at a time, so stopping at any moment leaves every
net within one epoch of the others, and running the command again continues where it stopped.

    python figures/make_checkpoints.py --data-dir data/mnist-10k --epochs 2 --jobs 2
    python figures/make_checkpoints.py --quick --out-dir /tmp/ckpt     # tiny nets, seconds (tests)
    make checkpoints EPOCHS=2 SEEDS="0 1 2" JOBS=2                      # the same through make
"""
import argparse
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import threading
import time

FIG_DIR = pathlib.Path(__file__).resolve().parent
REPO = FIG_DIR.parent
NAMES = ("crnn_max", "crnn_avg", "snn_max", "snn_avg")
# --quick: the same four configurations as tiny nets on the embedded subset (about a second each):
# conv 3-4-6-8 keeps four conv layers, so the middle layers 2, 3, 4 exist (with 4, 6, 8 channels).
QUICK = ['data.source="embedded"', "data.train_size=20", "data.test_size=10", "data.batch_size=10",
         "model.conv_channels=[3, 4, 6, 8]", "train.T_free=16", "train.T_nudge=6"]


def rel(path):
    """``path`` relative to the repository when it lies inside it (the commands and configs stay portable)."""
    path = pathlib.Path(path).resolve()
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def run_name(name, seed):
    return name if seed == 0 else f"{name}_seed{seed}"


def completed_epochs(run_dir):
    """Epochs in ``run_dir/checkpoint.npz`` (0 if there is none)."""
    ckpt = run_dir / "checkpoint.npz"
    if not ckpt.exists():
        return 0
    from minimal_ep.train import load_checkpoint
    return load_checkpoint(ckpt)[3]


class Run:
    """One net to train: a configuration file, a seed, and its folder."""

    def __init__(self, name, seed, config, out_dir):
        self.name, self.seed, self.config = run_name(name, seed), seed, config
        self.dir = out_dir / self.name
        self.done, self.failed, self.seconds, self.cpu = completed_epochs(self.dir), False, [], []

    def argv(self, epoch, data_dir, sets, relative=True):
        """The ``minimal-ep`` arguments that train this net up to ``epoch`` epochs.

        ``relative``: paths inside the repository relative to it (the subprocess runs there, and the
        config.toml it writes then holds no machine-specific path).
        """
        path = rel if relative else (lambda q: pathlib.Path(q).resolve())
        argv = ["train", "--config", str(path(self.config)), "--out", str(path(self.dir)), "--resume",
                "--epochs", str(epoch), "--seed", str(self.seed), "--no-progress"]
        if data_dir:
            argv += ["--data-dir", str(data_dir)]
        for s in sets:
            argv += ["--set", s]
        return argv


def train_epoch(run, epoch, args, sets, log):
    """Train ``run`` to ``epoch`` epochs (one more than it has); True on success."""
    argv = run.argv(epoch, args.data_dir, sets, relative=not args.in_process)
    start = time.perf_counter()
    if args.in_process:
        from minimal_ep.cli import main as cli_main
        rc = cli_main(argv)
    else:
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        run.dir.mkdir(parents=True, exist_ok=True)
        with open(run.dir / "train.log", "a") as f:
            f.write(f"$ minimal-ep {shlex.join(argv)}\n")
            f.flush()
            proc = subprocess.Popen([sys.executable, "-m", "minimal_ep"] + argv, stdout=f,
                                    stderr=subprocess.STDOUT, env=env, cwd=REPO)
            _, status, usage = os.wait4(proc.pid, 0)              # this child's own CPU time
            proc.returncode = rc = os.waitstatus_to_exitcode(status)
            run.cpu.append(usage.ru_utime + usage.ru_stime)
    if rc != 0:
        log(f"{run.name}: epoch {epoch} failed (exit status {rc}; see {run.dir / 'train.log'})")
        return False
    (run.dir / "history").mkdir(exist_ok=True)
    shutil.copyfile(run.dir / "checkpoint.npz", run.dir / "history" / f"epoch_{epoch:03d}.npz")
    run.seconds.append(time.perf_counter() - start)
    log(f"{run.name}: epoch {epoch}/{args.epochs} done in {run.seconds[-1]:.0f}s"
        + (f" ({run.cpu[-1]:.0f}s CPU)" if run.cpu else ""))
    return True


def measure_cost(config, data_dir, sets, batches=1, log=print):
    """CPU and wall seconds of one training batch and of evaluating one batch of test images.

    Runs ``batches`` batches of ``minimal_ep.train.train_epoch`` and ``evaluate`` on as many test images
    (T_eval steps) in this process, from the config's initialisation, and extrapolates to one epoch
    of the config's training set and test_size.
    """
    import numpy as np
    from minimal_ep.config import resolve
    from minimal_ep.optim import SGD
    from minimal_ep.train import evaluate, load_data, network_from_config, train_epoch
    overrides = list(sets) + ([f'data.data_dir="{data_dir}"'] if data_dir else [])
    cfg = resolve(config, overrides)
    x, y, xt, yt = tuple(load_data(cfg))[:4]
    n, bs = len(y), cfg["data"]["batch_size"]
    cfg["data"]["shuffle"] = False
    net = network_from_config(cfg)
    clocks = lambda: np.array([time.process_time(), time.perf_counter()])      # noqa: E731
    t0 = clocks()
    train_epoch(net, SGD(net.params, cfg["train"]["lr"]), cfg, x[:batches * bs], y[:batches * bs],
                np.random.default_rng(0), 0, progress=False)
    t1 = clocks()
    evaluate(net, xt[:batches * bs], yt[:batches * bs], cfg["train"]["T_eval"] or cfg["train"]["T_free"], bs)
    t2 = clocks()
    train, ev = (t1 - t0) / batches, (t2 - t1) / batches
    out = {"cpu_per_batch": train[0], "wall_per_batch": train[1], "cpu_eval_per_batch": ev[0],
           "batches_per_epoch": -(-n // bs), "eval_batches": -(-len(yt) // bs), "batch_size": bs}
    out["cpu_per_epoch"] = out["batches_per_epoch"] * train[0] + out["eval_batches"] * ev[0]
    log(f"{pathlib.Path(config).stem}: one batch of {bs}: {train[0]:.1f}s CPU ({train[1]:.1f}s wall); "
        f"evaluating {bs} test images {ev[0]:.1f}s CPU; one epoch ({out['batches_per_epoch']} batches + "
        f"{len(yt)} test images) {out['cpu_per_epoch'] / 60:.1f} CPU-min")
    return out


def train_all(runs, args, sets, log=print):
    """Advance the runs round-robin, ``args.jobs`` at a time, up to ``args.epochs`` epochs each."""
    lock, busy = threading.Lock(), set()

    def take():
        with lock:
            todo = [r for r in runs if r.name not in busy and not r.failed and r.done < args.epochs]
            if not todo:
                return None
            run = min(todo, key=lambda r: r.done)
            busy.add(run.name)
            return run

    def worker():
        while (run := take()) is not None:
            ok = train_epoch(run, run.done + 1, args, sets, log)
            with lock:
                busy.discard(run.name)
                run.failed = not ok
                run.done = completed_epochs(run.dir)

    threads = [threading.Thread(target=worker) for _ in range(args.jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


class _Parser(argparse.ArgumentParser):
    def error(self, message):                      # one line, status 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse(argv):
    p = _Parser(description=__doc__.split("\n")[0])
    p.add_argument("--names", default=",".join(NAMES), help="configurations (comma-separated)")
    p.add_argument("--seeds", default="0 1 2", help="training seeds of the SNN nets (space-separated)")
    p.add_argument("--crnn-seeds", default="0", help="training seeds of the CRNN nets")
    p.add_argument("--epochs", type=int, default=None, help="train up to this many epochs (default: the config's)")
    p.add_argument("--data-dir", default="data/mnist-10k", help="MNIST folder (scripts/prepare_mnist_subset.py)")
    p.add_argument("--configs", type=pathlib.Path, default=REPO / "configs" / "figures")
    p.add_argument("--out-dir", type=pathlib.Path, default=None,
                   help="where the runs go (default figures/checkpoints; with --quick runs/figures-quick)")
    p.add_argument("--jobs", type=int, default=1, help="nets trained at the same time (one core each)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="config override passed to every run (repeatable)")
    p.add_argument("--quick", action="store_true", help="tiny nets on the embedded subset, 1 epoch (tests)")
    p.add_argument("--in-process", action="store_true", help="train in this process (one job), not a subprocess")
    p.add_argument("--dry-run", action="store_true", help="print the commands, train nothing")
    p.add_argument("--measure", type=int, default=0, metavar="BATCHES",
                   help="time BATCHES training batches and test batches of each configuration, train nothing")
    args = p.parse_args(argv)
    try:
        args.seeds = [int(s) for s in args.seeds.replace(",", " ").split()]
        args.crnn_seeds = [int(s) for s in args.crnn_seeds.replace(",", " ").split()]
    except ValueError:
        p.error("--seeds and --crnn-seeds take integers")
    args.names = [n.strip() for n in args.names.split(",") if n.strip()]
    bad = [n for n in args.names if not (args.configs / f"{n}.toml").is_file()]
    if bad or not args.names:
        p.error(f"no config for {', '.join(bad) or 'an empty --names'} in {args.configs}")
    if args.jobs < 1 or (args.epochs is not None and args.epochs < 1) or min(args.seeds + args.crnn_seeds) < 0:
        p.error("--jobs and --epochs must be >= 1, seeds >= 0")
    if args.quick:                                 # never into figures/checkpoints by accident
        args.data_dir, args.epochs = None, args.epochs or 1
    if args.out_dir is None:
        args.out_dir = REPO / "runs" / "figures-quick" if args.quick else FIG_DIR / "checkpoints"
    if args.in_process:
        args.jobs = 1
    return args


def main(argv=None):
    args = parse(argv)
    sets = (QUICK if args.quick else []) + args.set
    if args.epochs is None:
        from minimal_ep.config import resolve
        args.epochs = resolve(args.configs / f"{args.names[0]}.toml", sets)["train"]["epochs"]
    if args.measure:
        return {"cost": {name: measure_cost(args.configs / f"{name}.toml", args.data_dir, sets, args.measure)
                         for name in args.names}}
    runs = [Run(name, seed, args.configs / f"{name}.toml", args.out_dir) for name in args.names
            for seed in (args.seeds if name.startswith("snn") else args.crnn_seeds)]
    for run in runs:
        cmd = shlex.join(run.argv(args.epochs, args.data_dir, sets))
        print(f"{run.name}: {run.done} epoch(s) done; minimal-ep {cmd}")
    if args.dry_run:
        return {"runs": {r.name: r.done for r in runs}}
    train_all(runs, args, sets)
    failed = [r.name for r in runs if r.failed]
    summary = {r.name: {"epochs": r.done, "seconds_per_epoch": r.seconds, "cpu_seconds_per_epoch": r.cpu,
                        "dir": str(r.dir)} for r in runs}
    print(f"{len(runs) - len(failed)} of {len(runs)} nets at {args.epochs} epoch(s) in {args.out_dir}"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    if failed:
        raise SystemExit(1)
    return {"runs": summary}


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
