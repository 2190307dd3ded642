"""Read the laptop-scale Table II runs and reduce them to one row per cell, and plot the curves.

A run folder (see :mod:`table2.laptop`) holds ``metrics.jsonl`` (one row per epoch: epoch,
train_error, test_error, loss, seconds, samples_per_second, lr_scale, firing_rate for SNNs), the
checkpoint (whose metrics are the committed ones), ``config.toml``, ``memory.json``,
``campaign.jsonl`` and, if it stopped by itself, ``stopped.json``. Anything may be missing: a cell
that has not started yet is a row marked missing, never an error.

Across the seeds of a cell every number is taken at the *common* epoch, the last one every started
seed has completed, so seeds at different stages are never mixed; the spread is the sample standard
deviation (ddof = 1) over seeds, None with one seed.
"""
import json
import math
import pathlib

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:            # Python 3.10
    import tomli as tomllib

from minimal_ep.run import config as config_mod
from minimal_ep.run.campaign import read_json_lines
from minimal_ep.run.checkpoints import CheckpointError, read_checkpoint
from minimal_ep.run.runs import atomic_write

VALUES = ("final_test", "best_test", "final_train", "seconds_per_epoch", "samples_per_second", "peak_mb")


def _json(path):
    try:
        return json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_run(out):
    """Everything a run folder holds that the report uses; missing files give empty values."""
    out = pathlib.Path(out)
    metrics = read_json_lines(out / "metrics.jsonl")
    if (out / "checkpoint.npz").exists():
        try:
            committed = read_checkpoint(out / "checkpoint.npz").metrics or []
        except CheckpointError:
            committed = []
        if len(committed) > len(metrics):               # killed between the two commits of an epoch
            metrics = committed
    cfg, files = None, {}
    if (out / "config.toml").exists():
        text = (out / "config.toml").read_text()
        try:
            cfg = config_mod.loads(text)
            files = tomllib.loads(text).get(config_mod.RECORD_SECTION, {})
        except (config_mod.ConfigError, ValueError):
            cfg = None
    memory = _json(out / "memory.json") or {}
    return {"metrics": metrics, "config": cfg, "data_files": files, "memory": memory.get("peak_mb"),
            "memory_info": memory, "invocations": read_json_lines(out / "campaign.jsonl"),
            "stopped": _json(out / "stopped.json")}


def mean_std(values):
    """(mean, sample std with ddof = 1, or None for one value); (None, None) for no values."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def summarize(cell, runs, epochs_planned):
    """One row of the table from the runs (dicts of :func:`read_run`) of one cell.

    Returns
    -------
    dict
        ``cell``, ``seeds_planned``, ``seeds`` (runs with at least one epoch), ``epoch`` (the common
        epoch, 0 if none), ``epochs_planned``, ``status`` ("complete", "partial" or "missing"),
        ``stopped`` (messages of runs that stopped by themselves), every key of VALUES as a
        (mean, std) pair (errors in %), and ``curve``: (epochs, mean, std) of the test error in %.
    """
    started = [r for r in runs if r["metrics"]]
    epoch = min((len(r["metrics"]) for r in started), default=0)
    row = {"cell": cell, "seeds_planned": len(runs), "seeds": len(started), "epoch": epoch,
           "epochs_planned": epochs_planned,
           "stopped": [r["stopped"]["message"] for r in runs if r["stopped"]]}
    row["status"] = ("missing" if not started else
                     "complete" if len(started) == len(runs) and epoch >= epochs_planned else "partial")
    rows = [r["metrics"][:epoch] for r in started]
    row["final_test"] = mean_std([100 * m[-1]["test_error"] for m in rows])
    row["best_test"] = mean_std([100 * min(e["test_error"] for e in m) for m in rows])
    row["final_train"] = mean_std([100 * m[-1]["train_error"] for m in rows])
    row["seconds_per_epoch"] = mean_std([np.mean([e["seconds"] for e in r["metrics"]]) for r in started])
    row["samples_per_second"] = mean_std([np.mean([e["samples_per_second"] for e in r["metrics"]])
                                          for r in started])
    row["peak_mb"] = mean_std([r["memory"] for r in runs])
    longest = max((len(r["metrics"]) for r in started), default=0)
    curve = [mean_std([100 * r["metrics"][k]["test_error"] for r in started if len(r["metrics"]) > k])
             for k in range(longest)]
    row["curve"] = (list(range(1, longest + 1)), [m for m, _ in curve], [s for _, s in curve])
    return row


def campaign_time(runs):
    """Totals over runs: training seconds from the metrics, and wall/CPU seconds of the children."""
    out = {"training_seconds": 0.0, "wall_seconds": 0.0, "cpu_seconds": 0.0, "epochs": 0, "invocations": 0}
    for r in runs:
        out["training_seconds"] += sum(e["seconds"] for e in r["metrics"])
        out["epochs"] += len(r["metrics"])
        for inv in r["invocations"]:
            out["wall_seconds"] += inv.get("wall_seconds", 0.0)
            out["cpu_seconds"] += inv.get("cpu_seconds", 0.0)
            out["invocations"] += 1
    return out


def plot_curves(rows, labels, title, path):
    """Test error vs epoch of every row (mean line, +- std band over seeds) as a PNG, atomically."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    for i, row in enumerate(rows):
        epochs, mean, std = row["curve"]
        if not epochs:
            ax.plot([], [], color=f"C{i}", label=f"{labels[row['cell']]} (missing)")
            continue
        n = f", {row['seeds']} seeds" if row["seeds"] > 1 else ""
        ax.plot(epochs, mean, "o-", ms=3, color=f"C{i}", label=f"{labels[row['cell']]}{n}")
        band = [(e, m, s) for e, m, s in zip(epochs, mean, std) if s is not None and math.isfinite(s)]
        if band:
            e, m, s = map(np.array, zip(*band))
            ax.fill_between(e, m - s, m + s, color=f"C{i}", alpha=0.2, lw=0)
    planned = max((row["epochs_planned"] for row in rows), default=1)
    ax.set_xlim(0.5, planned + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if not any(row["curve"][0] for row in rows):
        ax.set_ylim(0, 100)
        ax.text(0.5, 0.5, "no epoch completed yet", transform=ax.transAxes, ha="center", color="0.4")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
