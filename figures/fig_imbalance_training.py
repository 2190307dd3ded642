"""The imbalance over training: Fig. 2's forward/backward ratio and Fig. 3's X-to-Y growth against epoch.

Spikes or training? The paper measures the imbalance of the routes on trained nets only. Here every
stage a run kept (``RUN/stages/epoch_NNN.npz``, written by ``make_checkpoints``: the initialisation,
epochs 1, 2, 4, 8, ... and the last) is measured as in ``fig2_activation_sums`` and
``fig3_activation_stats`` (the same routes module and the same cache in OUT/.cache), at each net's own
dynamics, for the middle conv layers n:

    ratio             mean_c |S_fwd[c]| / mean_c |S_bwd[c]|, the per-channel signed sums (Fig. 2)
    growth std, mean  std(Y) / std(X) and mean(Y) / mean(X), per step, forward and backward (Fig. 3)

each as mean +- std over the training seeds that reached that stage (several for the SNNs), else over
the disjoint sample sets. The control, at every stage: each CRNN's weights (seed 0) run as the SNN
with the same pooling (CRNN+max's weights in SNN+max, CRNN+avg's in SNN+avg), at the CRNN's dynamics.
The weights are identical, so the gap between a CRNN's line and its control is due to the spikes
alone, and the gap between the control and the SNN's own line to what training the SNN did.

    python -m figures.fig_imbalance_training --checkpoint-dir results/figures/recipe2
    python -m figures.fig_imbalance_training --checkpoint-dir DIR --fast --no-plot      # seconds (tests)
"""
import pathlib
import sys

from figures import cli  # (first: it pins BLAS to one thread before NumPy is imported)
import numpy as np

from figures import campaign, nets, plotting

NAME = "fig_imbalance_training"
SAMPLES, FAST_SAMPLES = 500, 4
QUANTITIES = (("ratio_signed", "forward / backward (Fig. 2)"),
              ("per_step.growth_std_fwd", "std(Y_fwd) / std(X_fwd)"),
              ("per_step.growth_mean_fwd", "mean(Y_fwd) / mean(X_fwd)"),
              ("per_step.growth_std_bwd", "std(Y_bwd) / std(X_bwd)"),
              ("per_step.growth_mean_bwd", "mean(Y_bwd) / mean(X_bwd)"))
CONTROLS = {"crnn_max": "snn_max", "crnn_avg": "snn_avg"}     # weights of the key, run as the value


def parse(argv):
    p = cli.parser(__doc__.split("\n")[0], SAMPLES, FAST_SAMPLES)
    p.add_argument("--layers", default=None, help="layers measured, e.g. 2,3,4 (default: the middle conv layers)")
    p.add_argument("--no-cache", action="store_true", help="measure again instead of reading OUT/.cache")
    return cli.finish(p, argv)


def by_epoch(selected):
    """{name: {epoch: [Net, one per seed that kept this stage]}} from every run's stages."""
    out = {}
    for name, ns in selected.items():
        out[name] = {}
        for net in ns:
            for stage in nets.stages(net):
                out[name].setdefault(stage.epoch, []).append(stage)
        out[name] = dict(sorted(out[name].items()))
    return out


def stage_test_error(stage):
    """The run's test error after the stage's epoch (None at initialisation or without metrics)."""
    rows = [m for m in stage.metrics if m.get("epoch") == stage.epoch]
    return rows[-1].get("test_error") if rows else None


def measure(sources, run_as, sets, layers, args, cache):
    """The quantities of every layer, over the seeds in ``sources`` (each run as ``run_as``)."""
    per_seed = [[campaign.measure_cached(src.network(run_as), src.dynamics, x, y, layers, args.batch_size, cache)
                 for x, y in sets] for src in sources]
    s = campaign.summarize(per_seed)
    return {"seeds": [src.seed for src in sources], "test_error": [stage_test_error(src) for src in sources],
            "weights": [src.describe() for src in sources],
            "layers": {n: {k: q[k] for k, _ in QUANTITIES} for n, q in s["layers"].items()}}


def run(args, selected, log=print):
    """{"own": {name: {epoch: measurement}}, "control": {crnn name: {epoch: ...}}} and the samples' description."""
    layers = None if args.layers is None else sorted({int(v) for v in args.layers.split(",") if v.strip()})
    first = next(iter(selected.values()))[0]
    net = first.network()
    if layers is not None and any(not (1 <= n <= net.n_conv and n < net.n_layers) for n in layers):
        raise nets.FigureError(f"--layers {args.layers}: only conv layers below the top (1..{net.n_conv})")
    sets, source = nets.sample_sets(first.cfg, args.samples, args.sets, args.seed, args.data_dir)
    cache = None if args.no_cache else pathlib.Path(args.out) / ".cache"
    stages = by_epoch(selected)
    out = {"own": {}, "control": {}}
    for name, per_epoch in stages.items():
        for epoch, sources in per_epoch.items():
            out["own"].setdefault(name, {})[epoch] = measure(sources, name, sets, layers, args, cache)
            log(f"  {nets.LABELS[name]:9s} epoch {epoch:3d}: {len(sources)} seed(s)")
            if name in CONTROLS:
                out["control"].setdefault(name, {})[epoch] = measure(sources[:1], CONTROLS[name], sets, layers,
                                                                     args, cache)
    n = sum(len(x[1]) for x in sets)
    return out, f"{n} random training samples of {source} in {len(sets)} disjoint sets (seed {args.seed})"


def control_label(crnn):
    return f"{nets.LABELS[CONTROLS[crnn]]} on {nets.LABELS[crnn]}'s weights"


def table(result, log=print):
    log(f"\n{'net':28s} {'epoch':>5s} {'layer':>5s} " + " ".join(f"{k.split('.')[-1]:>17s}" for k, _ in QUANTITIES))
    for group in ("own", "control"):
        for name, per_epoch in result[group].items():
            label = nets.LABELS[name] if group == "own" else control_label(name)
            for epoch, m in per_epoch.items():
                for n, q in m["layers"].items():
                    log(f"{label:28s} {epoch:5d} {n:5d} "
                        + " ".join(f"{q[k]['mean']:8.2f} +- {q[k]['err']:5.2f}" for k, _ in QUANTITIES))


def plot(result, caption, args):
    own, control = result["own"], result["control"]
    layers = list(next(iter(next(iter(own.values())).values()))["layers"])
    fig = plotting.new_figure((4.2 * len(layers), 2.6 * len(QUANTITIES) + 1.6))
    axes = fig.subplots(len(QUANTITIES), len(layers), squeeze=False)
    lines = [(nets.LABELS[name], nets.COLORS[name], "-", "o", per) for name, per in own.items()]
    lines += [(control_label(crnn), nets.COLORS[CONTROLS[crnn]], "--", "s", per) for crnn, per in control.items()]
    epochs_all = sorted({e for *_, per in lines for e in per})
    for i, (key, title) in enumerate(QUANTITIES):
        for j, n in enumerate(layers):
            ax = axes[i, j]
            for label, color, ls, marker, per in lines:
                epochs = list(per)
                mean = [per[e]["layers"][n][key]["mean"] for e in epochs]
                err = [per[e]["layers"][n][key]["err"] for e in epochs]
                ax.errorbar(np.asarray(epochs) + 0.5, mean, yerr=err, color=color, ls=ls, marker=marker, ms=3,
                            lw=1, capsize=2, label=label)
            ax.set_xscale("log")                                 # epochs 0, 1, 2, 4, 8: shifted by 1/2
            ax.set_xticks(np.asarray(epochs_all) + 0.5, [str(e) for e in epochs_all])
            ax.minorticks_off()
            ax.set_title(f"layer {n}: {title}", fontsize=8)
            ax.tick_params(labelsize=7)
            if i == len(QUANTITIES) - 1:
                ax.set_xlabel("epoch (log scale of epoch + 1/2)", fontsize=7)
            if i == 0 and j == 0:
                ax.legend(fontsize=6)
    fig.subplots_adjust(hspace=0.45, bottom=0.12)
    plotting.caption(fig, caption, width=45 * len(layers), y=0.07)
    return plotting.save(fig, args.out, args.name or NAME)


def main(argv=None):
    args = parse(argv)
    selected = nets.select(args)
    for name, ns in selected.items():
        print(f"{nets.LABELS[name]}: " + "; ".join(n.describe() for n in ns))
    measured, desc = run(args, selected)
    table(measured)
    fast = " [--fast: a few samples, numbers not meaningful]" if args.fast else ""
    caption = (f"The route imbalance of Figs. 2-3 over training, middle conv layers, each net at its own "
               f"dynamics, measured on {desc}{fast} at every stage the runs kept. Solid: each net on its own "
               f"weights (error bars: std over the training seeds at that stage where there are several, else "
               f"over the sample sets). Dashed: the CRNN's weights (seed 0) run as the SNN with the same "
               f"pooling, identical weights, so the distance to the CRNN's line is due to spikes alone.")
    result = {**measured, "samples": desc, "caption": caption,
              "nets": {name: [n.describe() for n in ns] for name, ns in selected.items()}}
    if not args.no_plot:
        result["paths"] = plot(measured, caption, args)
    cli.save_json(args, result)
    return result


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
