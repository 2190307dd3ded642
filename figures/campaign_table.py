"""Where a figure campaign stands, as the Markdown table of docs/FIGURES.md, from its committed files.

For every run folder of a campaign (``make_checkpoints --out-dir``; default the recipe-2 campaign,
results/figures/recipe2/): the test error after each epoch (``metrics.jsonl``), the running training
error of the last epoch, and the CPU seconds of each epoch (``campaign.jsonl``: the children that
trained exactly one epoch). Below it, per net, the mean and sample standard deviation (ddof 1) of
the test error over its seeds at every epoch all of its seeds have reached: a +- over runs at the
same epoch, never over runs at different epochs.

    python -m figures.campaign_table                                # print the table
    python -m figures.campaign_table --write docs/FIGURES.md        # replace it between the markers

``--write`` replaces the text between ``BEGIN`` and ``END`` (the two marker lines below) in the
file, atomically; a test checks that docs/FIGURES.md holds what the committed runs give.
"""
import pathlib
import statistics
import sys

from figures.cli import RESULTS, FigureError, Parser, run_main
from minimal_ep.run.campaign import read_json_lines
from minimal_ep.run.runs import atomic_write, read_metrics

DEFAULT_DIR = RESULTS / "recipe2"
BEGIN = "<!-- campaign table: python -m figures.campaign_table --write docs/FIGURES.md -->"
END = "<!-- end of campaign table -->"


def net_of(run):
    """The net a run folder trains: ``snn_avg_seed2`` -> ``snn_avg``."""
    return run.split("_seed")[0]


def read_runs(folder):
    """{run: (test errors per epoch, last running train error or None, CPU s of each one-epoch child)}."""
    folder = pathlib.Path(folder)
    runs = {}
    for run_dir in sorted(p for p in folder.iterdir() if (p / "metrics.jsonl").is_file()):
        metrics = read_metrics(run_dir)
        children = read_json_lines(run_dir / "campaign.jsonl")
        cpu = [c["cpu_seconds"] for c in children
               if c.get("exit_code") == 0 and c.get("epochs_after", 0) - c.get("epochs_before", 0) == 1]
        runs[run_dir.name] = ([m["test_error"] for m in metrics],
                              metrics[-1].get("train_error") if metrics else None, cpu)
    if not runs:
        raise FigureError(f"no run folder with a metrics.jsonl in {folder}")
    return runs


def pct(x):
    return f"{100 * x:.2f}%"


def family_rows(runs):
    """Per net and epoch reached by all its seeds: (net, seeds, epoch, mean, std or None)."""
    nets = {}
    for run, (errors, _, _) in runs.items():
        nets.setdefault(net_of(run), []).append(errors)
    rows = []
    for net, per_seed in nets.items():
        for epoch in range(1, min(len(e) for e in per_seed) + 1):
            values = [e[epoch - 1] for e in per_seed]
            std = statistics.stdev(values) if len(values) > 1 else None
            rows.append((net, len(values), epoch, statistics.fmean(values), std))
    return rows


def table(runs):
    """The Markdown of both tables (runs, then nets over seeds)."""
    lines = ["| run | epochs | test error after each epoch | train error (running), last epoch | CPU s per epoch |",
             "|---|---|---|---|---|"]
    for run, (errors, train, cpu) in runs.items():
        lines.append(f"| {run} | {len(errors)} | {', '.join(pct(e) for e in errors)} | "
                     f"{'' if train is None else pct(train)} | {', '.join(f'{c:.0f}' for c in cpu)} |")
    lines += ["", "| net | seeds | test error after each epoch all seeds reached: mean +- std over seeds |",
              "|---|---|---|"]
    nets = {}
    for net, seeds, epoch, mean, std in family_rows(runs):
        nets.setdefault((net, seeds), []).append(pct(mean) if std is None else f"{100 * mean:.2f} +- {100 * std:.2f}%")
    for (net, seeds), cells in nets.items():
        lines.append(f"| {net} | {seeds} | {', '.join(cells)} |")
    total = sum(sum(cpu) for _, _, cpu in runs.values())
    lines += ["", f"CPU time of the campaign so far: {total / 3600:.1f} CPU-hours "
                  f"({sum(len(cpu) for _, _, cpu in runs.values())} one-epoch children)."]
    return "\n".join(lines)


def replace_between_markers(text, block):
    """``text`` with the lines between the BEGIN and END markers replaced by ``block``."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise FigureError(f"the file needs one line {BEGIN!r} and, after it, one line {END!r}")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"


def main(argv=None):
    p = Parser(description=__doc__.split("\n")[0])
    p.add_argument("--out-dir", type=pathlib.Path, default=DEFAULT_DIR, help="the campaign's folder of runs")
    p.add_argument("--write", type=pathlib.Path, default=None, metavar="FILE",
                   help="replace the table between the markers in FILE instead of printing it")
    args = p.parse_args(argv)
    if not args.out_dir.is_dir():
        raise FigureError(f"--out-dir {args.out_dir} is not a folder")
    block = table(read_runs(args.out_dir))
    if args.write is None:
        print(block)
        return 0
    try:
        text = args.write.read_text()
    except OSError as err:
        raise FigureError(f"--write {args.write}: {err.strerror}") from None
    new = replace_between_markers(text, block)
    atomic_write(args.write, lambda f: f.write(new.encode()))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
