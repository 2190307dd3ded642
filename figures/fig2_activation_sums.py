"""Paper Fig. 2: forward-route and backward-route activations of the middle conv layers, per channel.

For the five-layer net (conv 16-32-64-128 -> dense 10; the middle conv layers n = 2, 3, 4 have
32-64-128 channels) and, during the nudged phase, the two terms of layer n's total input (Eq. 9)

    Y_fwd = P(w_n * X_fwd),        X_fwd = s_{n-1}
    Y_bwd = w_{n+1} ~* P^-1(X_bwd), X_bwd = s_{n+1}   (max-unpooling with layer n+1's indices of the
                                                         same step, or nearest-neighbour / F^2)

where s are the messages the layers exchange (states in the CRNN, spikes in the SNN). Panels as in
the paper: (A) CRNN + max pooling, (B) SNN + max pooling, (C) SNN + avg pooling, plus the control
(D) CRNN + avg pooling. All four networks have *identical weights*. Printed and plotted, per layer:

    signed   mean over channels of |sum over positions of Y, averaged over samples and steps|
    step     mean |Y| per unit and step (per-step magnitude)
    tavg     mean |Y averaged over the nudged steps| per unit (time-averaged magnitude)

and the forward / backward ratio of each. The paper reports ratios < 4x for the CRNN with max
pooling, up to ~10x for the SNN with max pooling, and balanced routes with average pooling.

    python figures/fig2_activation_sums.py                      # trains briefly, 500 samples
    python figures/fig2_activation_sums.py --samples 2000 --checkpoint runs/x/checkpoint.npz
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import common  # noqa: E402  (first: it sets the BLAS thread count before NumPy is imported)
import numpy as np  # noqa: E402

NAME = "fig2_activation_sums"
SAMPLES, FAST_SAMPLES, TRAIN_BATCHES = 500, 4, 20
PANELS = {(False, "max"): "A", (True, "max"): "B", (True, "avg"): "C", (False, "avg"): "D, control"}


def parse(argv):
    p = common.parser(__doc__.split("\n")[0], SAMPLES, FAST_SAMPLES, TRAIN_BATCHES, train_as=True, layers=True)
    p.add_argument("--no-init", action="store_true", help="skip the measurement at the untrained weights")
    args = p.parse_args(argv)
    return common.finish_args(args, SAMPLES, FAST_SAMPLES, TRAIN_BATCHES)


def measure_all(states, x, y, args, log=print):
    """{state label: {config name: measure_routes(...)}} for the four configurations."""
    out = {}
    for label, st in states:
        out[label] = {}
        for spiking, pool in common.CONFIGS:
            net = st.network(spiking, pool)
            t = common.Timer()
            m = common.measure_routes(net, x, y, st.phases["beta"], st.phases["T_free"], st.phases["T_nudge"],
                                      args.batch_size, common.parse_layers(args.layers))
            m["seconds"] = t()
            out[label][common.config_name(spiking, pool)] = m
            log(f"  measured {label:7s} {common.config_name(spiking, pool):9s} in {m['seconds']:.0f}s "
                f"(free-phase residual {m['residual_free']:.3f})")
    return out


def table(meas, label, log=print):
    log(f"\nforward / backward routes during the nudged phase, network state: {label}")
    log(f"{'config':10s} {'layer':>5s} {'C':>4s} {'|S_fwd|':>9s} {'|S_bwd|':>9s} {'signed':>7s} "
        f"{'|Y_fwd|':>8s} {'|Y_bwd|':>8s} {'step':>7s} {'tavg':>7s} {'med/ch':>7s}")
    for cfg, m in meas.items():
        for n, r in m["layers"].items():
            log(f"{cfg:10s} {n:5d} {len(r['signed_fwd']):4d} {np.abs(r['signed_fwd']).mean():9.3f} "
                f"{np.abs(r['signed_bwd']).mean():9.3f} {r['ratio_signed']:7.2f} {r['mean_abs_fwd']:8.4f} "
                f"{r['mean_abs_bwd']:8.4f} {r['ratio_step']:7.2f} {r['ratio_tavg']:7.2f} "
                f"{r['ratio_signed_median_channel']:7.2f}")


def plot(meas, main_label, labels, caption, args):
    fig = common.new_figure((13, 14))
    cfgs = list(meas[main_label])
    layers = list(meas[main_label][cfgs[0]]["layers"])
    gs = fig.add_gridspec(len(cfgs) + 1, max(len(layers), 3), height_ratios=[1] * len(cfgs) + [1.25], hspace=0.55,
                          wspace=0.25, bottom=0.12)
    for i, cfg in enumerate(cfgs):
        for j, n in enumerate(layers):
            ax = fig.add_subplot(gs[i, j])
            r = meas[main_label][cfg]["layers"][n]
            C = len(r["signed_fwd"])
            c = np.arange(C)
            lw = max(0.6, 90.0 / C)        # thin vertical lines draw far faster than bar patches
            ax.vlines(c - 0.2, 0, r["signed_fwd"], color="tab:blue", lw=lw, label="forward $Y_{fwd}$")
            ax.vlines(c + 0.2, 0, r["signed_bwd"], color="tab:orange", lw=lw, label="backward $Y_{bwd}$")
            ax.axhline(0, color="k", lw=0.5)
            panel = PANELS[tuple(_cfg_key(cfg))]
            ax.set_title(f"({panel}) {cfg}, layer {n} ({C} ch)\nfwd/bwd: signed {r['ratio_signed']:.2f}, "
                         f"step {r['ratio_step']:.2f}, tavg {r['ratio_tavg']:.2f}", fontsize=8)
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel("sum over positions\n(mean over samples, steps)", fontsize=7)
            if i == len(cfgs) - 1:
                ax.set_xlabel("channel", fontsize=7)
            if i == 0 and j == 0:
                ax.legend(fontsize=7, loc="best")
    # bottom row: the three ratio definitions, per layer, configs x network states
    defs = [("ratio_signed", "|signed per-channel sum|"), ("ratio_step", "mean |Y| per step"),
            ("ratio_tavg", "mean |time-averaged Y|")]
    colors = {"CRNN+max": "tab:blue", "SNN+max": "tab:red", "SNN+avg": "tab:green", "CRNN+avg": "tab:gray"}
    for j, (key, title) in enumerate(defs):
        ax = fig.add_subplot(gs[len(cfgs), j])
        width = 0.8 / (len(cfgs) * len(labels))
        k = 0
        for lab in labels:
            for cfg in cfgs:
                vals = [meas[lab][cfg]["layers"][n][key] for n in layers]
                pos = np.arange(len(layers)) - 0.4 + (k + 0.5) * width
                ax.bar(pos, vals, width=width, color=colors.get(cfg, "k"),
                       alpha=1.0 if lab == main_label else 0.4, hatch=None if lab == main_label else "//",
                       label=f"{cfg} ({lab})")
                k += 1
        for h in (1, 4, 10):
            ax.axhline(h, color="k", lw=0.5, ls=":" if h != 1 else "-")
        ax.set_yscale("log")
        ax.set_xticks(np.arange(len(layers)), [f"layer {n}" for n in layers], fontsize=7)
        ax.set_title(f"forward / backward ratio: {title}", fontsize=8)
        ax.tick_params(labelsize=7)
        if j == 0:
            ax.set_ylabel("ratio (log); lines at 1, 4, 10", fontsize=7)
            handles, names = ax.get_legend_handles_labels()
    fig.legend(handles, names, fontsize=7, ncol=len(handles) // 2 or 1, loc="upper center",
               bbox_to_anchor=(0.5, 0.078), frameon=False)
    common.add_caption(fig, caption, width=170, y=0.045)
    return common.save_figure(fig, args.out, args.name or NAME)


def _cfg_key(cfg):
    kind, pool = cfg.split("+")
    return kind == "SNN", pool


def main(argv=None):
    args = parse(argv)
    timer = common.Timer()
    trained = common.trained_state(args)
    states = [("trained" if (args.checkpoint or args.train_batches) else "init", trained)]
    if not args.no_init and (args.checkpoint or args.train_batches):
        states.append(("init", common.init_state(args, like=trained)))
    x, y, desc = common.load_mnist("train", args.samples, args.source)
    ph = trained.phases
    print(f"measuring {desc}: free phase {ph['T_free']} steps, then {ph['T_nudge']} nudged steps "
          f"(beta {ph['beta']}); routes after every nudged step")
    meas = measure_all(states, x, y, args)
    for label, _ in states:
        table(meas[label], label)
    ratios = {label: {cfg: {n: {k: v for k, v in r.items() if k.startswith(("ratio", "mean_"))}
                            for n, r in m["layers"].items()}
                      for cfg, m in meas[label].items()}
              for label, _ in states}
    print("\nforward/backward ratio, mean |Y| per step (paper: CRNN+max < 4x, SNN+max up to ~10x, "
          "SNN+avg balanced):")
    for label, _ in states:
        for cfg in ratios[label]:
            print(f"  {label:7s} {cfg:9s} " + "  ".join(f"layer {n}: {r['ratio_step']:6.2f}"
                                                       for n, r in ratios[label][cfg].items()))
    main_label = states[0][0]
    layers = list(next(iter(meas[main_label].values()))["layers"])
    caption = (
        f"Fig. 2 reproduction. Measured on {common.data_phrase(desc, args)}; network state: {trained.what}"
        + (f"; faded/hatched bars: the same nets at their untrained init (seed {states[1][1].seed})"
           if len(states) > 1 else "") + ". "
        f"All four networks (A CRNN+max, B SNN+max, C SNN+avg, D CRNN+avg) have identical weights, so a "
        f"CRNN/SNN difference is due to spikes. Net {common.arch_phrase(trained.arch)}, "
        f"eps {trained.dynamics['eps']}, lam {trained.dynamics.get('lam')} (SNN); free phase "
        f"{ph['T_free']} steps, nudged phase {ph['T_nudge']} steps at beta {ph['beta']}; routes of conv layers "
        f"{', '.join(map(str, layers))} measured after every nudged step from the messages (states for CRNN, spikes for SNN): "
        f"Y_fwd = P(w_n * s_(n-1)), Y_bwd = w_(n+1) ~* P^-1(s_(n+1)). Bars: per channel, the signed sum "
        f"over spatial positions averaged over samples and nudged steps (the paper's quantity). "
        f"Ratios forward/backward: 'signed' = mean over channels of |signed sum|; 'step' = mean |Y| per "
        f"unit and step; 'tavg' = mean |Y averaged over the nudged steps|. Paper: CRNN+max < 4x, "
        f"SNN+max up to ~10x, SNN+avg balanced.")
    result = {"ratios": ratios, "samples": args.samples, "network_state": trained.what,
              "residual_free": {label: {cfg: m["residual_free"] for cfg, m in meas[label].items()}
                                for label, _ in states},
              "per_channel": {label: {cfg: {n: {k: r[k] for k in ("signed_fwd", "signed_bwd")}
                                            for n, r in m["layers"].items()}
                                      for cfg, m in meas[label].items()} for label, _ in states},
              "caption": caption}
    if not args.no_plot:
        result["paths"] = [str(p) for p in plot(meas, main_label, [s[0] for s in states], caption, args)]
    result["seconds"] = timer()
    print(f"total {result['seconds']:.0f}s")
    return result


if __name__ == "__main__":
    sys.exit(common.run_main(main))
