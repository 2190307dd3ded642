"""Write docs/RESULTS.md, Table II at laptop and at mid scale, from the runs of :mod:`table2.laptop`.

Per data set: one row per column (final and best test error, final train error, wall seconds per
epoch, samples per second, peak memory of a training step; mean +- std over seeds where there are
several), the paper's numbers beside them, and a figure of every column's test error per epoch
(``table2_<data set>.png`` next to the document). Then what is and is not comparable, the measured
cost, the commands and the campaign's total time. Partial results (cells missing, fewer epochs) are
written as such. Then the mid-scale table (issue #28, ``configs/midscale/`` run into
``results/table2/midscale/``, 3 seeds per cell): the same rows, their curves
(``table2_midscale_<data set>.png``), the peak-memory ratio BPTT / EP, the learning-rate search
(``search/search.json`` of :mod:`table2.lr_search`) and every run's state. What follows the line
``HAND_WRITTEN`` in the existing document (the analysis of the runs, written by a person) is kept
as it is. Every file is written atomically. Usage::

    python -m table2.report [--runs-dir results/table2/laptop] [--midscale-dir results/table2/midscale]
                            [--out docs/RESULTS.md]
"""
import pathlib
import sys

from minimal_ep.run import config as config_mod
from minimal_ep.run.campaign import shell_text
from minimal_ep.run.cli import Parser
from minimal_ep.run.runs import atomic_write
from minimal_ep.run.train import network_from_config
from table2 import laptop as campaign, results

REPO = campaign.REPO
MIDSCALE_DIR = REPO / "results" / "table2" / "midscale"
MIDSCALE_CONFIGS = REPO / "configs" / "midscale"
MIDSCALE_SEEDS, MIDSCALE_CHANCE_STOP = 3, 3        # the campaign's --seeds and --chance-stop (issue #28)

# Paper Table II (mean +- std over 5 trials; MEM in MB at batch 10, T = 100 + 25 + 25 / 150, on a GPU)
PAPER = {"mnist": {"snn_ep_avg": ("0.97 ± 0.32", "0.61 ± 0.28", "321"), "snn_bptt": ("0.86 ± 0.11", "—", "2171"),
                   "crnn_ep_ce": ("0.94 ± 0.02", "—", "309"), "crnn_bptt": ("0.99 ± 0.36", "—", "3018")},
         "fmnist": {"snn_ep_avg": ("8.89 ± 2.45", "2.90 ± 0.02", "321"), "snn_bptt": ("8.71 ± 1.25", "—", "2171"),
                    "crnn_ep_ce": ("8.99 ± 2.89", "—", "309"), "crnn_bptt": ("8.83 ± 1.33", "—", "3018")}}
HAND_WRITTEN = "<!-- Written by hand from here on: python -m table2.report keeps this part as it is. -->"
HEADER = ("column", "seeds", "epochs", "final test error (%)", "best test error (%)", "final train error (%)",
          "s / epoch", "samples / s", "peak MB / step", "paper test (%)", "paper train (%)", "paper MEM (MB)")


def fmt(pair, digits=2):
    """``"m ± s"``, ``"m"`` (one seed) or ``"—"`` (no value)."""
    mean, std = pair
    if mean is None:
        return "—"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def table(rows, prefix):
    """The Markdown table of one data set, one line per cell."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        column = campaign.split_cell(row["cell"])[1]
        seeds = "1 seed" if row["seeds_planned"] == 1 else f"{row['seeds']}/{row['seeds_planned']}"
        if row["status"] == "missing":
            epochs = f"missing (0/{row['epochs_planned']})"
        else:
            epochs = f"{row['epoch']}/{row['epochs_planned']}" + (" (partial)" if row["status"] == "partial" else "")
        if row["stopped"]:
            epochs += " (stopped: see below)"
        if row.get("at_chance"):
            epochs += " (at chance: stopped)"
        paper = PAPER[prefix].get(column, ("— (not in the paper)", "—", "—"))
        cells = [campaign.COLUMNS[column], seeds, epochs, fmt(row["final_test"]), fmt(row["best_test"]),
                 fmt(row["final_train"]), fmt(row["seconds_per_epoch"], 0), fmt(row["samples_per_second"], 0),
                 fmt((row["peak_mb"][0], None), 1), *paper]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def banner(mode, rows):
    """The status line at the top: no results yet, a quick check, partial or complete."""
    runs = sum(r["seeds_planned"] for r in rows)
    complete = sum(1 for r in rows if r["status"] == "complete")
    if mode == "quick":
        return ("**No campaign results yet.** This file was produced from a `--quick` run ("
                + ", ".join(f"`{o}`" for o in campaign.QUICK) + "): a check of the machinery, not results.")
    if all(r["status"] == "missing" for r in rows):
        return "**No campaign results yet**: no run has completed an epoch."
    if complete < len(rows):
        return (f"**Partial results**: {complete} of {len(rows)} cells complete ({runs} runs planned); "
                "rows marked partial or missing are not final.")
    return f"All {len(rows)} cells complete ({runs} runs)."


def n_params(cfg):
    return sum(int(p.size) for p in network_from_config(cfg).params.values())


def comparability(cfgs):
    """What is and is not comparable with the paper's Table II, from the configs in use."""
    c = next(iter(cfgs.values()))
    m, t, d = vars(c.model), vars(c.train), vars(c.data)
    ours = n_params(c)
    paper = n_params(config_mod.resolve(REPO / "configs" / "fmnist_2c2fc_snn_ep.toml"))
    rows = {campaign.split_cell(n)[0]: vars(g.train) for n, g in cfgs.items()}   # one data set: one train setting

    def per_row(template, sep="; "):
        """``template`` filled with each data set's train settings, after the data set's name."""
        return sep.join(f"{campaign.DATASETS[k]} " + template.format(**r) for k, r in rows.items())

    ep = per_row("{epochs}", ", ")
    phases = per_row("T_free {T_free}, T_nudge {T_nudge}")
    steps = per_row("EP {T_free} + {T_nudge} + {T_nudge} steps, BPTT {T_free}")
    return f"""## What is and is not comparable

- **Same across the columns of a data set**: data, epochs ({ep}), batch {d['batch_size']}, the
  learning-rate schedule (layer-wise {t['lr']}, linear decay to {t['lr_final']:.0%}), the dynamics
  and the initial weights of a seed. tests/test_table2.py checks that the configs differ only in
  the keys that define a cell. No column was tuned here: the settings are the quickstart's, for all.
- **Scale.** Conv {m['conv_channels'][0]}-{m['conv_channels'][1]} -> {m['hidden'][0]} -> 10, {ours} parameters;
  the paper's 2C2FC (128-256 channels, a 512-unit hidden layer in our full-scale configs) has {paper}.
- **Epochs.** {ep} here, 250 in the paper (constant learning rates 0.25/0.15/0.1/0.08, batch 125).
- **Dynamics.** eps {m['eps']}, lambda {m['lam']}, beta {t['beta']} for every cell, and phase lengths
  per data set, the same for every column of it: {phases} (BPTT unrolls T_free). Fashion-MNIST
  needs longer phases: with the quickstart's 40 free steps its trained nets stop settling (below).
  The paper's Table I: eps 0.9 / 1.0, lambda 0.6, beta 0.1 / 0.2, T_free 250 / 350, T_nudge 50
  (MNIST / Fashion-MNIST); those phases do not fit the ~10 CPU-hour budget here.
- **Data.** Fashion-MNIST: all 60000 training and 10000 test images, as in the paper. MNIST: only
  10000 training images (a random subset of the official 60000, disjoint from the test set; the
  full training images are not on this machine) and the official 10000 test images.
- **Seeds.** 3 for SNN EP (avg), SNN EP (max) and SNN BPTT on Fashion-MNIST, 1 elsewhere ("1 seed");
  the paper averages 5 trials. Spreads are sample standard deviations (ddof = 1) over seeds, at the
  last epoch every started seed has completed.
- **Memory.** Ours: the peak of the NumPy arrays alive during one training step of the cell's own
  config (batch {d['batch_size']}; {steps}),
  traced by tracemalloc on the CPU. The paper's: GPU memory at batch 10 with EP 100 + 25 + 25 and BPTT
  150 steps, framework overhead included. Compare the ratios BPTT / EP, not the megabytes;
  `minimal-ep memory` measures ours at the paper's protocol and architecture.
- **Time.** Wall seconds of the training epoch (the test pass excluded) at one BLAS thread on a
  shared 2-CPU machine: other processes' load changes it; the CPU totals are below.
- The paper has no SNN EP (max) and no CRNN EP (MSE) column; its SNN BPTT and CRNN BPTT columns
  report test errors only.
"""


def _ms_per_image(cost):
    """{cell: CPU ms per training image} of the cells a cost file measured."""
    return {cell: 1000 * c["train_cpu_s"] / c["size"][0] for cell, c in cost["cells"].items() if "error" not in c}


def cost_section(runs_dir, heading="## Cost"):
    """The measured CPU cost per epoch (``cost*.json`` of ``--measure-cost``), if any.

    ``cost.json`` (the cells as configured) comes first; a file measured with ``--set`` overrides
    (Table I's phases) gets a column with its cost per training image relative to ``cost.json``'s.
    """
    lines = [heading, ""]
    files = sorted(runs_dir.glob("cost*.json"), key=lambda p: (p.name != "cost.json", p.name))
    if not files:
        lines.append("Not measured in this runs folder: `python -m table2.laptop --measure-cost "
                     "--fashion-mnist-dir DIR`.")
    base = results._json(runs_dir / "cost.json") or {"cells": {}}
    for path in files:
        cost = results._json(path)
        if not cost:
            continue
        per_image, configured = _ms_per_image(cost), _ms_per_image(base)
        ratio = {c: v / configured[c] for c, v in per_image.items() if cost["sets"] and c in configured}
        what = f"with {', '.join(cost['sets'])}" if cost["sets"] else "the cells as configured"
        lines += [f"{what[0].upper()}{what[1:]}: `{cost['command']}` (one BLAS thread, {cost['cost_size'][0]} training / "
                  f"{cost['cost_size'][1]} test images, load {cost['load_before']} before, "
                  f"{cost.get('load_after', '?')} after, on 2 CPUs):", "",
                  "| cell | ms / training image | ms / test image | CPU s / epoch | epochs x runs | CPU h |"
                  + (" x the configured cost per image |" if ratio else ""),
                  "|---|---|---|---|---|---|" + ("---|" if ratio else "")]
        for cell, c in cost["cells"].items():
            if "error" in c:
                lines.append(f"| {cell} | failed: {c['error']} | | | | |" + (" |" if ratio else ""))
                continue
            lines.append(f"| {cell} | {per_image[cell]:.2f} | {1000 * c['test_cpu_s'] / c['size'][1]:.2f} | "
                         f"{c['epoch_cpu_s']:.0f} | {c['epochs']} x {c['runs']} | {c['projected_cpu_h']:.2f} |"
                         + (f" {ratio[cell]:.1f} |" if cell in ratio else (" |" if ratio else "")))
        failed = any("error" in c for c in cost["cells"].values())
        lines += ["", f"Projected: {cost['projected_cpu_h']:.2f} CPU-hours"
                  + (" (the cells that failed are not included)." if failed else "."), ""]
    return "\n".join(lines)


LAPTOP_COMMANDS = [
    "python scripts/prepare_mnist_subset.py                 # MNIST 10k subset -> data/mnist-10k/",
    "make table2-laptop FMNIST_DIR=../shared/data           # background, resumable, one BLAS thread",
    "python -m table2.laptop --status                       # progress",
    "make table2-report                                     # this file"]
MIDSCALE_COMMANDS = [
    "python scripts/prepare_mnist_subset.py                 # MNIST 10k subset -> data/mnist-10k/",
    "make table2-midscale FMNIST_DIR=../shared/data         # background, resumable, one BLAS thread per run",
    "python -m table2.laptop --config-dir configs/midscale --runs-dir results/table2/midscale --seeds 3 --status",
    "make table2-report                                     # this file"]


def runs_section(runs, data, heading="## Runs, commands and campaign time", commands=LAPTOP_COMMANDS):
    """Every run's state and cost, the commands, and the campaign's total time."""
    t = results.campaign_time(list(data.values()))
    lines = [heading, "",
             "| run | state | epochs | training h (metrics) | CPU h (children) | note |", "|---|---|---|---|---|---|"]
    for r in runs:
        d, epochs = data[r.name], r.epochs
        done = len(d["metrics"])
        state = "done" if done >= epochs else ("stopped" if d["stopped"] else ("partial" if done else "missing"))
        cpu = sum(i.get("cpu_seconds", 0.0) for i in d["invocations"]) / 3600
        note = f"exit {d['stopped']['exit_code']}: {d['stopped']['message']}" if d["stopped"] else ""
        lines.append(f"| {r.name} | {state} | {done}/{epochs} | "
                     f"{sum(e['seconds'] for e in d['metrics']) / 3600:.2f} | {cpu:.2f} | {note} |")
    example = shell_text(runs[0].command())
    lines += ["", "```bash", *commands, "```", "",
              "Each run is one command, for example (the campaign adds `--data-dir` for Fashion-MNIST):",
              "", "```bash", example.replace(str(REPO) + "/", ""), "```", "",
              f"Time so far: {t['epochs']} epochs; training {t['training_seconds'] / 3600:.2f} h (the sum of the "
              f"metrics' per-epoch seconds, wall); the campaign's {t['invocations']} child processes "
              f"{t['wall_seconds'] / 3600:.2f} h wall and {t['cpu_seconds'] / 3600:.2f} CPU-hours "
              "(user + system, from each run's campaign.jsonl; data loading and test passes included).", ""]
    return "\n".join(lines)


def hand_written(out):
    """The part of the existing ``out`` from the line ``HAND_WRITTEN`` on ("" when there is none)."""
    old = out.read_text() if out.exists() else ""
    return "\n" + old[old.index(HAND_WRITTEN):] if HAND_WRITTEN in old else ""


def collect(runs_dir, config_dir=campaign.CONFIG_DIR, seeds=None, overrides=(), chance_stop=None):
    """The runs of a campaign folder, their configs and data, and one row per cell by data set.

    A run ended by ``--chance-stop`` is planned to its last epoch (as in the campaign) and its row
    says ``at_chance``.
    """
    runs = campaign.plan(runs_dir=runs_dir, config_dir=config_dir, overrides=overrides, seeds=seeds)
    cfgs = {r.name: campaign.resolve_run(r) for r in runs}
    campaign.chance_stop(runs, chance_stop)
    data = {r.name: results.read_run(r.folder) for r in runs}
    rows_by_set = {}
    for cell in campaign.cells(config_dir):
        mine = [r for r in runs if r.cell == cell]
        row = results.summarize(cell, [data[r.name] for r in mine], max(r.epochs for r in mine))
        row["at_chance"] = any(r.epochs < cfgs[r.name].train.epochs for r in mine)
        rows_by_set.setdefault(campaign.split_cell(cell)[0], []).append(row)
    return runs, cfgs, data, rows_by_set


def set_tables(rows_by_set, out, heading, title, stem):
    """Per data set: a heading, the table and its learning-curve figure ``<stem>_<data set>.png``."""
    parts = []
    labels = {row["cell"]: campaign.COLUMNS[campaign.split_cell(row["cell"])[1]]
              for rows in rows_by_set.values() for row in rows}
    for prefix, rows in rows_by_set.items():
        name = campaign.DATASETS[prefix]
        figure = out.parent / f"{stem}_{prefix}.png"
        results.plot_curves(rows, labels, f"{name}: test error per epoch ({title})", figure)
        parts += [f"{heading} {name}", "", table(rows, prefix), "", f"![{name} learning curves]({figure.name})", ""]
        by_column = {campaign.split_cell(r["cell"])[1]: r["peak_mb"][0] for r in rows}
        ratios = [f"{net} {by_column[bptt] / by_column[ep]:.1f}x" for net, ep, bptt in
                  (("SNN", "snn_ep_avg", "snn_bptt"), ("CRNN", "crnn_ep_ce", "crnn_bptt"))
                  if by_column.get(ep) and by_column.get(bptt)]
        if ratios:
            parts += ["Peak memory of a training step, BPTT / EP: " + ", ".join(ratios) + " (paper: SNN 6.8x, "
                      "CRNN 9.8x, on a GPU at batch 10).", ""]
    return parts


def search_section(search_dir):
    """The learning-rate search of :mod:`table2.lr_search` (``search.json``), one line per cell."""
    found = results._json(search_dir / "search.json")
    command = ("python -m table2.lr_search --configs configs/midscale --out results/table2/midscale/search "
               "--jobs 2   # then --report")
    lines = ["## Mid-scale learning-rate search", ""]
    if not found:
        return "\n".join(lines + ["Not run yet:", "", "    " + command, ""])
    scales = sorted({float(s) for cell in found.values() for s in cell["errors"]})
    lines += ["Validation error (2000 held-out training images, never the test set) after the search's "
              "epochs, per scale of the cell's layer-wise rates; the lowest is chosen (ties: the smaller). "
              f"`{command}`", "",
              "| cell | rates x 1 | " + " | ".join(f"x {s:g}" for s in scales) + " | chosen |",
              "|---|---|" + "---|" * len(scales) + "---|"]
    for cell, c in found.items():
        errors = [c["errors"].get(f"{s:g}", "—") for s in scales]
        errors = ["stopped" if e is None else e if isinstance(e, str) else f"{100 * e:.2f}%" for e in errors]
        chosen = "—" if c["chosen"] is None else f"x {c['chosen']:g}: {c['chosen_lr']}"
        lines.append(f"| {cell} | {c['lr']} | " + " | ".join(errors) + f" | {chosen} |")
    return "\n".join(lines + [""])


def midscale_section(runs_dir, out, config_dir=MIDSCALE_CONFIGS):
    """The mid-scale Table II (issue #28): tables, curves, memory ratios, the search, every run's state."""
    record = results._json(runs_dir / "campaign.json") or {}
    seeds = record.get("seeds") or MIDSCALE_SEEDS
    chance = record.get("chance_stop") or MIDSCALE_CHANCE_STOP
    runs, cfgs, data, rows_by_set = collect(runs_dir, config_dir, seeds, record.get("overrides", ()), chance)
    all_rows = [row for rows in rows_by_set.values() for row in rows]
    c = next(iter(cfgs.values()))
    m = c.model
    parts = ["# Table II at mid scale (issue #28)", "", banner(record.get("mode"), all_rows), "",
             f"Conv {m.conv_channels[0]}-{m.conv_channels[1]} -> {m.hidden[0]} -> 10 "
             f"({n_params(c)} parameters), eps = lambda = {m.eps}, beta {c.train.beta}, batch {c.data.batch_size}; "
             f"{seeds} seeds per cell, mean ± std (ddof 1) at the last epoch every seed completed; "
             f"SNN EP (max) runs at chance after each of their first {chance} epochs end there. "
             "The configs are `configs/midscale/`; the paper's numbers beside ours for reference.", ""]
    parts += set_tables(rows_by_set, out, "## Mid-scale", "mid-scale Table II", "table2_midscale")
    parts += [search_section(runs_dir / "search"), cost_section(runs_dir, "## Mid-scale cost"),
              runs_section(runs, data, "## Mid-scale runs, commands and campaign time", MIDSCALE_COMMANDS)]
    return "\n".join(parts)


def render(runs_dir, out, midscale_dir=MIDSCALE_DIR):
    """Write the figures and return the text of RESULTS.md for the runs in ``runs_dir`` (and ``midscale_dir``)."""
    record = results._json(runs_dir / "campaign.json") or {}
    runs, cfgs, data, rows_by_set = collect(runs_dir, overrides=record.get("overrides", ()))
    all_rows = [row for rows in rows_by_set.values() for row in rows]
    parts = ["# Table II at laptop scale", "", banner(record.get("mode"), all_rows), "",
             "Test and train errors in %, wall seconds per training epoch, peak memory of one training step "
             "in MB; mean ± std over seeds where a cell has several. The paper's numbers (2C2FC, 250 epochs, "
             "GPU) are beside ours for reference, not as a like-for-like comparison (see below).", ""]
    parts += set_tables(rows_by_set, out, "##", "laptop-scale Table II", "table2")
    parts += [comparability(cfgs), cost_section(runs_dir), "",
              runs_section(runs, data)]
    files = {}
    for d in data.values():
        if d["config"] is not None:
            files.setdefault(d["config"].data.dataset, d["data_files"])
    parts += ["", "## Data files read", ""] + ([] if files else ["None yet."])
    parts += [f"- {ds}: " + "; ".join(f"`{n}` sha256 {f.get('sha256', '?')[:16]}…" for n, f in fl.items())
              for ds, fl in files.items()]
    if midscale_dir is not None:
        parts += ["", midscale_section(midscale_dir, out)]
    return "\n".join(parts).rstrip() + "\n" + hand_written(out)


def main(argv=None):
    p = Parser(description=__doc__.split("\n")[0])
    p.add_argument("--runs-dir", type=pathlib.Path, default=campaign.RUNS_DIR)
    p.add_argument("--midscale-dir", type=pathlib.Path, default=MIDSCALE_DIR,
                   help="the mid-scale campaign's runs ('none': no mid-scale section)")
    p.add_argument("--out", type=pathlib.Path, default=REPO / "docs" / "RESULTS.md")
    args = p.parse_args(argv)
    if not args.out.parent.is_dir():
        p.error(f"{args.out.parent} is not a directory")
    text = render(args.runs_dir, args.out, None if str(args.midscale_dir) == "none" else args.midscale_dir)
    atomic_write(args.out, lambda f: f.write(text.encode()))
    print(f"wrote {args.out} from {args.runs_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
