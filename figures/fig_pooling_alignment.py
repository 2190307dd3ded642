"""The paper's pooling claim: max pooling breaks spiking EP, average pooling restores it.

For the four trained five-layer nets of results/figures/checkpoints/ (CRNN/SNN x max/avg, every
training seed):

    test error      at the end of training, from each run's metrics.jsonl (the test set and size of its
                    config), and the learning curves; mean +- std over the seeds
    cos(EP, BPTT)   per weight w_n: EP's gradient estimate (the config's estimator, beta, T_free,
                    T_nudge) against BPTT's gradient of the loss after the same free phase, both summed
                    over a sample set; on each net's own trained weights ('own') and, the control, all
                    four at the identical initial weights ('init')

Cosines are measured on ``--sets`` disjoint sets of random training samples: mean over the sets per
seed, then mean +- std over the seeds (a configuration with one seed: +- std over the sets).

    python -m figures.fig_pooling_alignment                          # results/figures/checkpoints/
    python -m figures.fig_pooling_alignment --checkpoint a/checkpoint.npz --checkpoint b/checkpoint.npz
"""
import sys
import time

from figures import cli  # (first: it pins BLAS to one thread before NumPy is imported)
import numpy as np

from figures import campaign, gradients, nets, plotting

NAME = "fig_pooling_alignment"
SAMPLES, FAST_SAMPLES = 250, 4


def parse(argv):
    p = cli.parser(__doc__.split("\n")[0], SAMPLES, FAST_SAMPLES, batch_size=25)
    p.add_argument("--groups", default="own,init", help="weights: own (trained), init (identical, untrained)")
    p.add_argument("--shared", default="crnn_max", choices=nets.NAMES, help="whose initialisation 'init' uses")
    return cli.finish(p, argv)


def test_errors(selected):
    """{name: spread of the final test errors over seeds, plus per-seed curves} from the runs' metrics."""
    out = {}
    for name, ns in selected.items():
        final = [n.metrics[-1]["test_error"] for n in ns if n.metrics]
        if not final:
            continue
        out[name] = dict(campaign.spread(final), per_seed=final,
                         curves=[[(m["epoch"], m["test_error"]) for m in n.metrics] for n in ns if n.metrics])
    return out


def cosines(args, selected, groups, log=print):
    """{group: {name: {w_n: {"mean", "std_sets", "std_seeds", "err", "norm_ratio"}}}} and the sample description."""
    first = next(iter(selected.values()))[0]
    sets, source = nets.sample_sets(first.cfg, args.samples, args.sets, args.seed, args.data_dir)
    out = {}
    for g, name, k, src in campaign.units(selected, args.shared, nets.NAMES, groups):
        net, start = src.network(name), time.perf_counter()
        per_set = [gradients.alignment(net, x, y, src.cfg, args.batch_size) for x, y in sets]
        out.setdefault(g, {}).setdefault(name, []).append((src, per_set))
        log(f"  {g:4s} {nets.LABELS[name]:9s} seed {src.seed} ({time.perf_counter() - start:.0f}s): cos " + " ".join(
            f"{w} {np.mean([s[w]['cos'] for s in per_set]):+.2f}" for w in per_set[0]))
    summary = {}
    for g, per in out.items():
        summary[g] = {}
        for name, seeds in per.items():
            res = {}
            for w in seeds[0][1][0]:
                per_seed = [campaign.spread([s[w]["cos"] for s in sets]) for _, sets in seeds]
                over = campaign.spread([p["mean"] for p in per_seed])
                std_sets = float(np.mean([p["std"] for p in per_seed]))
                ratio = np.mean([s[w]["norm_ep"] / max(s[w]["norm_bptt"], 1e-30) for _, sets in seeds for s in sets])
                several = len(seeds) > 1
                res[w] = {"mean": over["mean"], "std_sets": std_sets, "std_seeds": over["std"] if several else None,
                          "err": over["std"] if several else std_sets, "per_seed": [p["mean"] for p in per_seed],
                          "norm_ratio": float(ratio)}
            summary[g][name] = {"weights": res, "seeds": len(seeds), "dynamics": [s.dynamics for s, _ in seeds],
                                "estimator": seeds[0][0].cfg.train.estimator}
    desc = f"{sum(len(y) for _, y in sets)} random training samples of {source} in {len(sets)} disjoint sets"
    return summary, desc


def plot(errors, cos, caption, args):
    fig = plotting.new_figure((15, 5.5))
    gs = fig.add_gridspec(1, 2 + len(cos), width_ratios=[0.8, 1] + [1.3] * len(cos), wspace=0.3, bottom=0.3)
    ax = fig.add_subplot(gs[0, 0])
    names = [n for n in nets.NAMES if n in errors]
    for i, name in enumerate(names):
        e = errors[name]
        ax.bar(i, 100 * e["mean"], yerr=100 * e["std"], color=nets.COLORS[name], capsize=3, edgecolor="k", lw=0.3)
        ax.plot([i] * len(e["per_seed"]), [100 * v for v in e["per_seed"]], "k.", ms=4)
    ax.set_xticks(range(len(names)), [nets.LABELS[n] for n in names], rotation=30, fontsize=8)
    ax.set_ylabel("test error (%)", fontsize=8)
    ax.set_title("final test error (mean +- std, dots: seeds)", fontsize=9)
    ax = fig.add_subplot(gs[0, 1])
    for name in names:
        curves = errors[name]["curves"]
        E = min(len(c) for c in curves)
        a = 100 * np.array([[v for _, v in c[:E]] for c in curves])
        std = a.std(axis=0, ddof=1) if len(a) > 1 else 0 * a[0]
        ax.errorbar(np.arange(1, E + 1), a.mean(axis=0), yerr=std, color=nets.COLORS[name], capsize=2,
                    marker="o", ms=3, label=f"{nets.LABELS[name]} ({len(a)} seed{'s' * (len(a) > 1)})")
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_title("test error during training", fontsize=9)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=8)
    for j, (g, per) in enumerate(cos.items()):
        ax = fig.add_subplot(gs[0, 2 + j])
        ws = list(next(iter(per.values()))["weights"])
        series = [{"label": nets.LABELS[name], "color": nets.COLORS[name],
                   "mean": [per[name]["weights"][w]["mean"] for w in ws],
                   "err": [per[name]["weights"][w]["err"] for w in ws]} for name in nets.NAMES if name in per]
        plotting.grouped_bars(ax, ws, series)
        ax.axhline(0, color="k", lw=0.5)
        ax.axhline(1, color="k", lw=0.5, ls=":")
        ax.set_ylim(-1.05, 1.05)
        ax.set_title(f"cos(EP, BPTT) per weight, {'own trained' if g == 'own' else 'identical initial'} weights",
                     fontsize=9)
        ax.tick_params(labelsize=8)
        if j == 0:
            ax.legend(fontsize=7, loc="lower left")
    plotting.caption(fig, caption, width=190, y=0.15)
    return plotting.save(fig, args.out, args.name or NAME)


def main(argv=None):
    args = parse(argv)
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    if not groups or any(g not in ("own", "init") for g in groups):
        raise cli.FigureError(f"--groups takes own and/or init, got {args.groups!r}")
    selected = nets.select(args)
    for name, ns in selected.items():
        print(f"{nets.LABELS[name]}: " + "; ".join(n.describe() for n in ns))
    errors = test_errors(selected)
    for name, e in errors.items():
        print(f"{nets.LABELS[name]:9s} final test error {100 * e['mean']:.2f} +- {100 * e['std']:.2f}% "
              f"over {e['n']} seed(s)")
    cos, desc = cosines(args, selected, groups)
    print("\ncos(EP, BPTT) per weight, mean +- std (over seeds where several, else over sample sets):")
    for g, per in cos.items():
        for name, c in per.items():
            print(f"  {g:4s} {nets.LABELS[name]:9s} " + "  ".join(
                f"{w} {v['mean']:+.2f} +- {v['err']:.2f}" for w, v in c["weights"].items()))
    first = next(iter(selected.values()))[0]
    test_what = (f"the first {first.cfg.data.test_size or 'all'} test images of {first.cfg.data.source} "
                 f"{first.cfg.data.dataset}")
    fast = " [--fast: a few samples, numbers not meaningful]" if args.fast else ""
    caption = (
        f"Pooling claim. Net {plotting.arch_phrase(first.cfg)}, trained by symmetric EP at "
        f"{plotting.dynamics_phrase(first.dynamics)} (each net at its own config's values). Left: test error "
        f"on {test_what} after training, and during training; mean +- sample std over the training seeds "
        f"(dots: single seeds). Right: cosine between EP's gradient estimate and BPTT's gradient through "
        f"the same free phase (SNN: triangular surrogate), per weight, on {desc}{fast}; error bars: std over "
        f"seeds where a configuration has several, else over the sample sets. 'identical initial weights' "
        f"= all four at the init of {nets.LABELS[args.shared]} seed 0. Paper: max pooling degrades spiking EP, "
        f"average pooling restores it.")
    result = {"test_error": errors, "cosine": cos, "samples": desc, "caption": caption,
              "nets": {name: [n.describe() for n in ns] for name, ns in selected.items()}}
    if not args.no_plot:
        result["paths"] = plot(errors, cos, caption, args)
    cli.save_json(args, result)
    return result


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
