"""Plotting helpers of the figure scripts: bare matplotlib Figures, grouped bars with error bars, output.

A bare ``matplotlib.figure.Figure`` (no pyplot state) works with any backend, Agg in the tests. Every
figure is written as NAME.png and NAME.pdf, each to a temporary name and renamed.
"""
import pathlib
import textwrap

import numpy as np

from minimal_ep.run.runs import atomic_write


def new_figure(figsize):
    from matplotlib.figure import Figure
    return Figure(figsize=figsize)


def grouped_bars(ax, groups, series, width=0.8, log=False):
    """Bars with error bars, one group per x position and one bar per series within it.

    Parameters
    ----------
    ax : matplotlib Axes
    groups : list of str
        Tick labels (e.g. layers).
    series : list of dict
        ``{"label", "color", "mean": [per group], "err": [per group], optional "alpha", "hatch"}``;
        None in ``mean`` leaves a gap.
    log : bool
        Log scale (bars start at the axis bottom).
    """
    k = len(series)
    w = width / max(k, 1)
    for i, s in enumerate(series):
        pos = np.arange(len(groups)) - width / 2 + (i + 0.5) * w
        keep = [j for j, m in enumerate(s["mean"]) if m is not None]
        if not keep:
            continue
        mean = np.array([s["mean"][j] for j in keep], dtype=float)
        err = np.array([s["err"][j] for j in keep], dtype=float)
        ax.bar(pos[keep], mean, width=w, color=s["color"], alpha=s.get("alpha", 1.0), hatch=s.get("hatch"),
               edgecolor="k", lw=0.3, label=s["label"])
        lower = np.minimum(err, mean * (1 - 1e-3)) if log else err      # log scale: keep the bar above 0
        ax.errorbar(pos[keep], mean, yerr=[lower, err], fmt="none", ecolor="k", elinewidth=0.8, capsize=2)
    ax.set_xticks(np.arange(len(groups)), groups)
    if log:
        ax.set_yscale("log")


def save(fig, out_dir, name, log=print):
    """Write ``NAME.png`` and ``NAME.pdf`` into ``out_dir``, each atomically; returns the two paths."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt, dpi in (("png", 130), ("pdf", None)):
        path = out / f"{name}.{fmt}"
        atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight"))
        paths.append(str(path))
    log(f"wrote {paths[0]} and {pathlib.Path(paths[1]).name}")
    return paths


def caption(fig, text, width=160, fontsize=7.5, y=0.0):
    """Wrap ``text`` below the axes as the figure's caption, its top at height fraction ``y``."""
    wrapped = "\n".join(textwrap.fill(p, width) for p in text.split("\n"))
    fig.text(0.01, y, wrapped, ha="left", va="top", fontsize=fontsize, family="sans-serif")


def dynamics_phrase(dyn):
    """'eps 0.9, lam 0.6, beta 0.1, T_free 250, T_nudge 50' from a dynamics dict."""
    return ", ".join(f"{k} {dyn[k]:g}" for k in ("eps", "lam", "beta", "T_free", "T_nudge"))


def arch_phrase(cfg):
    """'conv16-32-64-128 (3x3, pad 1, 2x2 max pooling) -> dense 10, MSE' from a config."""
    m = cfg.model
    dense = " -> ".join(f"dense {h}" for h in list(m.hidden) + ([10] if m.loss == "mse" else []))
    k, F = m.kernel_size, m.pool_size
    return (f"conv{'-'.join(map(str, m.conv_channels))} ({k}x{k}, pad {m.padding}, {F}x{F} pooling)"
            f" -> {dense}, {m.loss.upper()}")
