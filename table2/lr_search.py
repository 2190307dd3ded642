#!/usr/bin/env python
"""The same learning-rate search for every column of a Table II (issue #28): validation error only.

For every cell (a config file ``CONFIGS/<cell>.toml``) and every scale s of ``--scales``, one short
run of ``minimal-ep train`` with the cell's layer-wise rates times s, ``--epochs`` epochs (the
cell's schedule over those epochs), tested on the last ``--validation`` training images
(``data.validation``: the test set is never read), in ``OUT/<cell>_lr<s>/`` through the campaign
runner (resumable; a run that diverges stops and counts as failed). ``--report`` writes
``OUT/search.json``: per cell, the rates it started from, every scale's validation error after its
last epoch (None for a run that stopped), and the chosen scale (the lowest error; a tie goes to
the smaller scale). A config trained with the search's choice has ``train.lr`` = the rates of the
search times the chosen scale (tests/test_table2.py checks it for the committed tables).

    python -m table2.lr_search --configs configs/midscale --out results/table2/midscale/search --jobs 2
    python -m table2.lr_search --configs configs/midscale --out results/table2/midscale/search --report
"""
import json
import math
import pathlib
import sys

from minimal_ep.run import campaign as runner, config as config_mod
from minimal_ep.run.runs import atomic_write

REPO = pathlib.Path(__file__).resolve().parents[1]


def rel(path):
    return runner.repo_relative(path, REPO)


def scaled(lr, scale):
    """The rates ``lr`` (a number or a layer-wise list) times ``scale``, rounded to 6 significant digits."""
    if not isinstance(lr, list):
        return float(f"{lr * scale:.6g}")
    return [float(f"{r * scale:.6g}") for r in lr]


def plan(configs, out, scales, epochs, validation, cells=None, data_dirs=None):
    """The search's runs (:class:`minimal_ep.run.campaign.Run`), cell by cell, scales in order.

    ``data_dirs`` maps a cell to the ``--data-dir`` of its runs (default: the config's own).
    """
    runs = []
    for config in sorted(pathlib.Path(configs).glob("*.toml")):
        cell = config.stem
        if cells and cell not in cells:
            continue
        lr = config_mod.resolve(config).train.lr
        for scale in scales:
            sets = [f"train.lr={scaled(lr, scale)}", f"train.epochs={epochs}",
                    f"data.validation={validation}"]
            name = f"{cell}_lr{scale:g}"
            run = runner.Run(name, rel(config), rel(pathlib.Path(out) / name), 0, epochs, sets,
                             (data_dirs or {}).get(cell), root=REPO)
            run.cell, run.scale = cell, scale
            config_mod.resolve(config, sets)             # every setting checked before anything runs
            runs.append(run)
    return runs


def report(runs):
    """{cell: {"lr", "errors": {scale: error or None}, "chosen", "chosen_lr"}} from the runs' metrics."""
    out = {}
    for run in runs:
        cell = out.setdefault(run.cell, {"lr": scaled(config_mod.resolve(REPO / run.config).train.lr, 1.0),
                                         "errors": {}})
        metrics = runner.read_json_lines(run.folder / "metrics.jsonl")
        done = len(metrics) >= run.epochs
        cell["errors"][f"{run.scale:g}"] = metrics[-1]["test_error"] if done else None
    for cell in out.values():
        finished = {float(s): e for s, e in cell["errors"].items() if e is not None}
        cell["chosen"] = min(finished, key=lambda s: (finished[s], s)) if finished else None
        cell["chosen_lr"] = scaled(cell["lr"], cell["chosen"]) if finished else None
    return out


def main(argv=None):
    p = runner.parser(__doc__.split("\n")[0])
    p.add_argument("--configs", type=pathlib.Path, required=True, help="folder of <cell>.toml")
    p.add_argument("--out", type=pathlib.Path, required=True, help="where the runs and search.json go")
    p.add_argument("--cells", nargs="+", metavar="CELL", help="only these cells (default: every config)")
    p.add_argument("--scales", type=float, nargs="+", default=[0.5, 1.0, 2.0], help="factors of the rates")
    p.add_argument("--epochs", type=int, default=3, help="epochs of each run")
    p.add_argument("--validation", type=int, default=2000, help="held-out training images")
    p.add_argument("--data-dir", action="append", default=[], metavar="CELL=DIR",
                   help="--data-dir of a cell's runs (repeatable)")
    p.add_argument("--report", action="store_true", help="write OUT/search.json from the runs, and exit")
    args = p.parse_args(argv)
    if not args.configs.is_dir() or not list(args.configs.glob("*.toml")):
        p.error(f"--configs {args.configs}: no folder of .toml files")
    if any(not math.isfinite(s) or s <= 0 for s in args.scales) or args.epochs < 1 or args.validation < 1:
        p.error("--scales must be finite and > 0, --epochs and --validation >= 1")
    if any("=" not in d for d in args.data_dir):
        p.error("--data-dir takes CELL=DIR")
    data_dirs = dict(d.split("=", 1) for d in args.data_dir)
    try:
        runs = plan(args.configs, args.out, args.scales, args.epochs, args.validation, args.cells, data_dirs)
    except config_mod.ConfigError as err:
        p.error(str(err))
    if args.cells and {r.cell for r in runs} != set(args.cells):
        p.error(f"unknown cell in --cells: {', '.join(sorted(set(args.cells) - {r.cell for r in runs}))}")
    if args.report:
        text = json.dumps(report(runs), indent=1)
        atomic_write(args.out / "search.json", lambda f: f.write(text.encode()))
        print(text)
        return 0
    return runner.run_campaign(runs, args, args.out, REPO, prog="lr_search")


if __name__ == "__main__":
    sys.exit(main())
