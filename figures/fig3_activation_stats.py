"""Paper Fig. 3: mean and standard deviation of X_fwd, Y_fwd, X_bwd, Y_bwd, CRNN vs SNN, max pooling.

The same five-layer nets, nudged phase and routes as ``fig2_activation_sums.py`` (the measurements are
shared through the cache in OUT/.cache): for each middle conv layer n, X_fwd = s_{n-1},
Y_fwd = P(w_n * X_fwd), X_bwd = s_{n+1}, Y_bwd = w_{n+1} ~* P^-1(X_bwd), s the messages (states in the
CRNN, spikes in the SNN), at each net's own dynamics. Two definitions:

    per step        mean and std over samples, units and nudged steps of the per-step values
    time-averaged   mean and std over samples and units of the values averaged over the nudged steps

(a spike train is 0/1 at every step, so its per-step std is large; its time average is a rate).
Each is given as mean +- std over the disjoint sample sets and, for several training seeds, over the
seeds. The panels (A-D, as in the paper) show ``--panels`` weights; the right column gives the growth
std(Y)/std(X) in every weight group (own trained weights, identical trained weights, init). The
paper: mean and std grow from X to Y much more in the SNN than in the CRNN.

    python -m figures.fig3_activation_stats                      # results/figures/checkpoints/, 2000 samples
"""
import sys

from figures import cli  # (first: it pins BLAS to one thread before NumPy is imported)
import numpy as np

from figures import campaign, nets, plotting
from figures.routes import KEYS

NAME = "fig3_activation_stats"
SAMPLES, FAST_SAMPLES = 2000, 4
GROWTH = (("std", "fwd"), ("std", "bwd"), ("mean", "fwd"), ("mean", "bwd"))
COLORS = {"X_fwd": "#9ecae1", "Y_fwd": "#3182bd", "X_bwd": "#fdae6b", "Y_bwd": "#e6550d"}


def parse(argv):
    p = cli.parser(__doc__.split("\n")[0], SAMPLES, FAST_SAMPLES)
    campaign.add_arguments(p)
    p.add_argument("--pool", default="max", choices=("max", "avg"), help="pooling of the CRNN and SNN compared")
    p.add_argument("--panels", default="own", choices=campaign.GROUPS, help="weight group of panels A-D")
    return cli.finish(p, argv)


def table(summary, names, log=print):
    for avg in ("per_step", "time_avg"):
        log(f"\n{avg.replace('_', ' ')}: mean (std) of the routes; growth Y/X of the std and the mean, +- spread")
        log(f"{'group':6s} {'config':9s} {'layer':>5s} " + " ".join(f"{k:>22s}" for k in KEYS)
            + "".join(f" {f'{q} Y/X {d}':>15s}" for q, d in GROWTH))
        for g, per in summary.items():
            for name in names:
                for n, q in per[name]["layers"].items():
                    def cell(k):
                        return f"{q[f'{avg}.{k}.mean']['mean']:.3f} ({q[f'{avg}.{k}.std']['mean']:.3f})"
                    gr = [q[f"{avg}.growth_{m}_{d}"] for m, d in GROWTH]
                    log(f"{g:6s} {nets.LABELS[name]:9s} {n:5d} " + " ".join(f"{cell(k):>22s}" for k in KEYS)
                        + "".join(f" {v['mean']:7.2f} +- {v['err']:5.2f}" for v in gr))


def plot(summary, names, group, caption, args):
    fig = plotting.new_figure((15, 8.5))
    gs = fig.add_gridspec(2, 3, width_ratios=[1, 1, 1.1], hspace=0.35, wspace=0.25, bottom=0.22)
    per = summary[group]
    for col, name in enumerate(names):
        layers = list(per[name]["layers"])
        for row, what in enumerate(("mean", "std")):
            ax = fig.add_subplot(gs[row, col])
            q = per[name]["layers"]
            series = [{"label": f"{k.replace('_', ' ')} per step", "color": COLORS[k],
                       "mean": [q[n][f"per_step.{k}.{what}"]["mean"] for n in layers],
                       "err": [q[n][f"per_step.{k}.{what}"]["err"] for n in layers]} for k in KEYS]
            plotting.grouped_bars(ax, [f"layer {n}" for n in layers], series)
            w = 0.8 / len(KEYS)
            for i, k in enumerate(KEYS):                   # time-averaged: black ticks with error bars
                pos = np.arange(len(layers)) - 0.4 + (i + 0.5) * w
                ax.errorbar(pos, [q[n][f"time_avg.{k}.{what}"]["mean"] for n in layers],
                            yerr=[q[n][f"time_avg.{k}.{what}"]["err"] for n in layers], fmt="_", ms=12,
                            color="k", elinewidth=0.8, label="time-averaged" if i == 0 else None)
            ax.axhline(0, color="k", lw=0.5)
            ax.set_title(f"({'ABCD'[row * 2 + col]}) {what} of activations, {nets.LABELS[name]} ({group} weights)",
                         fontsize=9)
            ax.tick_params(labelsize=8)
            if row == 0 and col == 0:
                ax.legend(fontsize=7)
    for row, d in enumerate(("fwd", "bwd")):
        ax = fig.add_subplot(gs[row, 2])
        series, layers = [], None
        for gi, (g, hatch) in enumerate(zip(summary, (None, "//", ".."))):
            for name in names:
                q = summary[g][name]["layers"]
                layers = list(q)
                key = f"per_step.growth_std_{d}"
                series.append({"label": f"{nets.LABELS[name]} ({g})", "color": nets.COLORS[name], "hatch": hatch,
                               "alpha": 1.0 - 0.25 * gi, "mean": [q[n][key]["mean"] for n in layers],
                               "err": [q[n][key]["err"] for n in layers]})
        plotting.grouped_bars(ax, [f"layer {n}" for n in layers], series)
        ax.axhline(1, color="k", lw=0.5)
        ax.set_title(f"std(Y_{d}) / std(X_{d}), per step, every weight group", fontsize=9)
        ax.tick_params(labelsize=8)
        if row == 0:
            ax.legend(fontsize=6, ncol=2)
    for row in range(2):                                    # CRNN and SNN on one scale per row
        axs = [a for a in fig.axes if a.get_subplotspec().rowspan.start == row
               and a.get_subplotspec().colspan.start < 2]
        lo, hi = min(a.get_ylim()[0] for a in axs), max(a.get_ylim()[1] for a in axs)
        for a in axs:
            a.set_ylim(lo, hi)
    plotting.caption(fig, caption, width=190, y=0.14)
    return plotting.save(fig, args.out, args.name or NAME)


def main(argv=None):
    args = parse(argv)
    names = [f"crnn_{args.pool}", f"snn_{args.pool}"]
    selected = nets.select(args)
    for name, ns in selected.items():
        print(f"{nets.LABELS[name]}: " + "; ".join(n.describe() for n in ns))
    if args.panels == "own" and "own" in args.groups and not all(n in selected for n in names):
        raise cli.FigureError(f"no trained {' and '.join(nets.LABELS[n] for n in names if n not in selected)} "
                              "net for the 'own' panels (use --panels shared or give its checkpoint)")
    summary, desc = campaign.run(args, selected, names)
    table(summary, names)
    first = next(iter(selected.values()))[0]
    fast = " [--fast: a few samples, numbers not meaningful]" if args.fast else ""
    caption = (
        f"Fig. 3 reproduction. Net {plotting.arch_phrase(first.cfg)}, {args.pool} pooling, each network at its "
        f"config's dynamics ({plotting.dynamics_phrase(first.dynamics)} for the first). Measured on {desc}{fast}. "
        f"For the middle conv layers n: X_fwd = s_(n-1), Y_fwd = P(w_n * X_fwd), X_bwd = s_(n+1), Y_bwd = "
        f"w_(n+1) ~* P^-1(X_bwd), s = states (CRNN) or spikes (SNN), after every nudged step. A-D: the "
        f"'{args.panels}' weights; bars: mean / std over samples, units and nudged steps of the per-step values; "
        f"black ticks: over samples and units of the values averaged over the nudged steps. Right: std(Y)/std(X) "
        f"for own weights, identical weights ({nets.LABELS[args.shared]} seed 0, hatched) and "
        f"init (dotted). Error bars: sample std over training seeds where there are several, else over the "
        f"sample sets. Paper: mean and std grow from X to Y much more in the SNN than in the CRNN.")
    result = {"groups": summary, "samples": desc, "caption": caption, "pool": args.pool,
              "nets": {name: [n.describe() for n in ns] for name, ns in selected.items()}}
    if not args.no_plot:
        result["paths"] = plot(summary, names, args.panels, caption, args)
    cli.save_json(args, result)
    return result


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
