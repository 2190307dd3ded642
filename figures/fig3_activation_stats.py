"""Paper Fig. 3: mean and standard deviation of X_fwd, Y_fwd, X_bwd, Y_bwd, CRNN vs SNN, max pooling.

Same five-layer net, nudged phase and routes as ``fig2_activation_sums.py``: for each middle conv
layer n (32-64-128 channels), X_fwd = s_{n-1}, Y_fwd = P(w_n * X_fwd), X_bwd = s_{n+1},
Y_bwd = w_{n+1} ~* P^-1(X_bwd), with s the messages (states in the CRNN, spikes in the SNN). The CRNN
and the SNN have *identical weights*. Two definitions, both printed and plotted:

    per step      mean and std over samples, units and nudged steps of the per-step values
    time-averaged mean and std over samples and units of the values averaged over the nudged steps

(a spike train is 0/1 at every step, so its per-step std is large; its time average is a rate).
The paper reports that mean and std grow from X to Y much more in the SNN than in the CRNN.

    python figures/fig3_activation_stats.py                    # trains briefly, 500 samples
    python figures/fig3_activation_stats.py --samples 2000 --checkpoint runs/x/checkpoint.npz
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import common  # noqa: E402  (first: it sets the BLAS thread count before NumPy is imported)
import numpy as np  # noqa: E402

NAME = "fig3_activation_stats"
SAMPLES, FAST_SAMPLES, TRAIN_BATCHES = 500, 4, 20
KEYS = ("X_fwd", "Y_fwd", "X_bwd", "Y_bwd")
COLORS = {"X_fwd": "#9ecae1", "Y_fwd": "#3182bd", "X_bwd": "#fdae6b", "Y_bwd": "#e6550d"}


def parse(argv):
    p = common.parser(__doc__.split("\n")[0], SAMPLES, FAST_SAMPLES, TRAIN_BATCHES, train_as=True, layers=True)
    p.add_argument("--pool", default="max", choices=("max", "avg"), help="pooling of the measured nets")
    args = p.parse_args(argv)
    return common.finish_args(args, SAMPLES, FAST_SAMPLES, TRAIN_BATCHES)


def plot(stats, layers, pool, caption, args):
    fig = common.new_figure((12, 8.5))
    axes = fig.subplots(2, 2)
    width = 0.2
    for col, kind in enumerate(("CRNN", "SNN")):
        cfg = f"{kind}+{pool}"
        for row, (what, idx) in enumerate((("mean", 0), ("std", 1))):
            ax = axes[row, col]
            for k, key in enumerate(KEYS):
                pos = np.arange(len(layers)) - 0.3 + k * width
                step = [stats[cfg][n]["per_step"][key][idx] for n in layers]
                tavg = [stats[cfg][n]["time_avg"][key][idx] for n in layers]
                ax.bar(pos, step, width=width, color=COLORS[key], edgecolor="k", lw=0.4,
                       label=f"{key.replace('_', ' ')} (per step)")
                ax.scatter(pos, tavg, marker="_", s=140, color="k", zorder=3,
                           label="time-averaged" if k == 0 else None)
            ax.axhline(0, color="k", lw=0.5)
            ax.set_xticks(np.arange(len(layers)), [f"layer {n}" for n in layers])
            letter = "ABCD"[row * 2 + col]
            ax.set_title(f"({letter}) {what} of activations, {cfg}", fontsize=9)
            ax.tick_params(labelsize=8)
            if row == 0 and col == 0:
                ax.legend(fontsize=7)
    # common y-limits per row so CRNN and SNN compare at a glance
    for row in range(2):
        lo = min(a.get_ylim()[0] for a in axes[row])
        hi = max(a.get_ylim()[1] for a in axes[row])
        for a in axes[row]:
            a.set_ylim(lo, hi)
    fig.subplots_adjust(hspace=0.3, bottom=0.2)
    common.add_caption(fig, caption, width=150, y=0.12)
    return common.save_figure(fig, args.out, args.name or NAME)


def main(argv=None):
    args = parse(argv)
    timer = common.Timer()
    st = common.trained_state(args)
    x, y, desc = common.load_mnist("train", args.samples, args.source)
    ph = st.phases
    print(f"measuring {desc}: free phase {ph['T_free']} steps, then {ph['T_nudge']} nudged steps "
          f"(beta {ph['beta']}), {args.pool} pooling, CRNN and SNN with identical weights")
    stats, residual, layers = {}, {}, None
    for spk in (False, True):
        cfg = common.config_name(spk, args.pool)
        net = st.network(spk, args.pool)
        t = common.Timer()
        m = common.measure_routes(net, x, y, ph["beta"], ph["T_free"], ph["T_nudge"], args.batch_size,
                                  common.parse_layers(args.layers))
        layers = list(m["layers"])
        stats[cfg] = {n: r["stats"] for n, r in m["layers"].items()}
        residual[cfg] = m["residual_free"]
        print(f"  measured {cfg} in {t():.0f}s (free-phase residual {m['residual_free']:.3f})")
    growth = {}
    for avg in ("per_step", "time_avg"):
        print(f"\nmean (std) of the routes, {avg.replace('_', ' ')}; network state: {st.what}")
        print(f"{'config':10s} {'layer':>5s} " + " ".join(f"{k:>17s}" for k in KEYS)
              + f" {'std Y/X fwd':>12s} {'std Y/X bwd':>12s}")
        for cfg in stats:
            for n in layers:
                s = stats[cfg][n][avg]
                gf = s["Y_fwd"][1] / max(s["X_fwd"][1], 1e-30)
                gb = s["Y_bwd"][1] / max(s["X_bwd"][1], 1e-30)
                growth.setdefault(avg, {}).setdefault(cfg, {})[n] = {"std_growth_fwd": gf, "std_growth_bwd": gb}
                print(f"{cfg:10s} {n:5d} " + " ".join(f"{s[k][0]:8.4f} ({s[k][1]:6.4f})" for k in KEYS)
                      + f" {gf:12.2f} {gb:12.2f}")
    caption = (
        f"Fig. 3 reproduction. Measured on {common.data_phrase(desc, args)}; network state: {st.what}. "
        f"CRNN and SNN with identical weights, {args.pool} pooling; net {common.arch_phrase(st.arch)}, "
        f"eps {st.dynamics['eps']}, lam {st.dynamics.get('lam')} (SNN); free phase {ph['T_free']} steps, then {ph['T_nudge']} nudged steps at beta {ph['beta']}. "
        f"For conv layers n = {', '.join(map(str, layers))}: X_fwd = s_(n-1), Y_fwd = P(w_n * X_fwd), X_bwd = s_(n+1), "
        f"Y_bwd = w_(n+1) ~* P^-1(X_bwd), s = states (CRNN) or spikes (SNN), measured after every nudged "
        f"step. Bars: mean / std over samples, units and nudged steps of the per-step values; black "
        f"ticks: mean / std over samples and units of the values averaged over the nudged steps. "
        f"Paper: mean and std grow from X to Y much more in the SNN than in the CRNN.")
    result = {"stats": stats, "growth": growth, "residual_free": residual, "samples": args.samples,
              "network_state": st.what, "caption": caption}
    if not args.no_plot:
        result["paths"] = [str(p) for p in plot(stats, layers, args.pool, caption, args)]
    result["seconds"] = timer()
    print(f"total {result['seconds']:.0f}s")
    return result


if __name__ == "__main__":
    sys.exit(common.run_main(main))
