"""Paper Fig. 2: forward- and backward-route activations of the middle conv layers, per channel.

The five-layer net (conv 16-32-64-128 -> dense 10; the middle conv layers n = 2, 3, 4 have 32-64-128
channels), trained by ``make checkpoints`` (results/figures/checkpoints/). During the nudged phase,
at each net's own dynamics (its config's), the two terms of layer n's total input (Eq. 9),

    Y_fwd = P(w_n * X_fwd),  X_fwd = s_{n-1};     Y_bwd = w_{n+1} ~* P^-1(X_bwd),  X_bwd = s_{n+1}

with s the messages (states in the CRNN, spikes in the SNN). Panels as in the paper: (A) CRNN+max,
(B) SNN+max, (C) SNN+avg, and the control (D) CRNN+avg. Measured in three weight groups (campaign.py):
each configuration on its own trained weights (every seed), all four on identical trained weights
(``--shared``), all four at initialisation. Quantities, the paper's first:

    signed   per channel, the signed sum over positions averaged over samples and nudged steps; the
             ratio is mean_c |S_fwd| / mean_c |S_bwd|
    step     mean |Y| per unit and step
    tavg     mean |Y averaged over the nudged steps| per unit

each as mean +- std over the disjoint sample sets and, where there are several, over training seeds.
Writes NAME.png (per-channel sums, ``--panels`` group) and NAME_ratios.png (every group).

    python -m figures.fig2_activation_sums                       # results/figures/checkpoints/, 2000 samples
    python -m figures.fig2_activation_sums --checkpoint runs/a/checkpoint.npz --checkpoint runs/b/checkpoint.npz
"""
import sys

from figures import cli  # (first: it pins BLAS to one thread before NumPy is imported)
import numpy as np

from figures import campaign, nets, plotting

NAME = "fig2_activation_sums"
SAMPLES, FAST_SAMPLES = 2000, 4
DEFS = (("ratio_signed", "|signed per-channel sum| (paper)"), ("ratio_step", "mean |Y| per step"),
        ("ratio_tavg", "mean |time-averaged Y|"))


def parse(argv):
    p = cli.parser(__doc__.split("\n")[0], SAMPLES, FAST_SAMPLES)
    campaign.add_arguments(p)
    p.add_argument("--panels", default="own", choices=campaign.GROUPS,
                   help="weight group of the per-channel panels")
    return cli.finish(p, argv)


def _pm(q):
    return f"{q['mean']:6.2f} +- {q['err']:5.2f}"


def table(summary, log=print):
    log("\nforward/backward ratios, mean +- std (over seeds where several, else over sample sets)")
    log(f"{'group':6s} {'config':9s} {'layer':>5s} {'signed (paper)':>16s} {'step':>16s} {'tavg':>16s} seeds")
    for g, per in summary.items():
        for name, s in per.items():
            if name not in nets.LABELS:
                continue
            for n, q in s["layers"].items():
                log(f"{g:6s} {nets.LABELS[name]:9s} {n:5d} {_pm(q['ratio_signed']):>16s} "
                    f"{_pm(q['ratio_step']):>16s} {_pm(q['ratio_tavg']):>16s} {s['seeds']}")


def plot_channels(summary, group, caption, args):
    per = {k: v for k, v in summary[group].items() if k in nets.LABELS}
    layers = list(next(iter(per.values()))["layers"])
    fig = plotting.new_figure((13, 2.7 * len(per) + 1.5))
    axes = fig.subplots(len(per), len(layers), squeeze=False)
    for i, (name, s) in enumerate(per.items()):
        for j, n in enumerate(layers):
            ax, q = axes[i, j], s["layers"][n]
            C = len(q["signed_fwd"]["mean"])
            c = np.arange(C)
            for d, off, color in (("fwd", -0.2, "tab:blue"), ("bwd", 0.2, "tab:orange")):
                ax.errorbar(c + off, q[f"signed_{d}"]["mean"], yerr=q[f"signed_{d}"]["std"], fmt="o", ms=2,
                            color=color, elinewidth=0.6, label=f"{'forward' if d == 'fwd' else 'backward'} route")
            ax.axhline(0, color="k", lw=0.5)
            r = q["ratio_signed"]
            ax.set_title(f"({nets.PANELS[name]}) {nets.LABELS[name]}, layer {n} ({C} ch); "
                         f"fwd/bwd {r['mean']:.2f} +- {r['err']:.2f}", fontsize=8)
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel("sum over positions\n(mean over samples, steps)", fontsize=7)
            if i == len(per) - 1:
                ax.set_xlabel("channel", fontsize=7)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.subplots_adjust(hspace=0.5, bottom=0.14)
    plotting.caption(fig, caption, width=170, y=0.07)
    return plotting.save(fig, args.out, args.name or NAME)


def plot_ratios(summary, caption, args):
    groups = list(summary)
    fig = plotting.new_figure((4.6 * len(groups), 10))
    axes = fig.subplots(len(DEFS), len(groups), squeeze=False)
    for j, g in enumerate(groups):
        per = {k: v for k, v in summary[g].items() if k in nets.LABELS}
        layers = list(next(iter(per.values()))["layers"])
        for i, (key, title) in enumerate(DEFS):
            ax = axes[i, j]
            series = [{"label": nets.LABELS[name], "color": nets.COLORS[name],
                       "mean": [per[name]["layers"][n][key]["mean"] for n in layers],
                       "err": [per[name]["layers"][n][key]["err"] for n in layers]} for name in per]
            plotting.grouped_bars(ax, [f"layer {n}" for n in layers], series, log=True)
            for h in (1, 4, 10):
                ax.axhline(h, color="k", lw=0.5, ls="-" if h == 1 else ":")
            ax.set_title(f"{g} weights: {title}", fontsize=8)
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel("forward / backward (log); lines 1, 4, 10", fontsize=7)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.subplots_adjust(hspace=0.35, bottom=0.16)
    plotting.caption(fig, caption, width=50 * len(groups), y=0.1)
    return plotting.save(fig, args.out, (args.name or NAME) + "_ratios")


def main(argv=None):
    args = parse(argv)
    selected = nets.select(args)
    for name, ns in selected.items():
        print(f"{nets.LABELS[name]}: " + "; ".join(n.describe() for n in ns))
    summary, desc = campaign.run(args, selected, nets.NAMES)
    table(summary)
    first = next(iter(selected.values()))[0]
    fast = " [--fast: a few samples, numbers not meaningful]" if args.fast else ""
    shared = selected[args.shared][0].describe() if args.shared in selected else nets.LABELS[args.shared]
    caption = (
        f"Fig. 2 reproduction. Net {plotting.arch_phrase(first.cfg)}; each network at its config's dynamics "
        f"({plotting.dynamics_phrase(first.dynamics)} for the first). Measured on {desc}{fast}. "
        f"During the nudged phase, after every nudged step, from the messages s (states for CRNN, spikes "
        f"for SNN): Y_fwd = P(w_n * s_(n-1)), Y_bwd = w_(n+1) ~* P^-1(s_(n+1)) with the pooling indices of "
        f"that step. Weight groups: 'own' = each configuration's trained weights (all seeds), 'shared' = all "
        f"four on the weights of {shared} (identical weights: a CRNN/SNN difference is due to spikes), "
        f"'init' = all four at that run's initialisation. Error bars: sample "
        f"std over training seeds where a configuration has several, else over the sample sets. Paper: "
        f"CRNN+max < 4x, SNN+max up to ~10x (larger in shallower layers), SNN+avg balanced.")
    result = {"groups": summary, "samples": desc, "caption": caption,
              "nets": {name: [n.describe() for n in ns] for name, ns in selected.items()}}
    if not args.no_plot:
        result["paths"] = plot_channels(summary, args.panels, caption, args) + plot_ratios(summary, caption, args)
    cli.save_json(args, result)
    return result


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
