"""Why does a configuration (not) learn? Settling, activity, route ratios and EP-vs-BPTT, per layer.

For each network (default: the trained checkpoints in results/figures/checkpoints/; ``--history``
measures each run over training instead: its stages RUN/stages/epoch_NNN.npz, written by
make_checkpoints.py at the initialisation and after epochs 1, 2, 4, 8, ... and the last, then its
checkpoint if that is not one of them), on the same random training samples and at the network's
own dynamics:

    settling    per layer n, the residual ||xi_n^t - xi_n^{t-1}|| / sqrt(N) at the end of the free phase
                and of the +beta and -beta nudged phases, also relative to ||xi_n|| / sqrt(N); the free
                phase's residual at every step (the trace); and the drift of the state averaged over the
                last W steps against the W before (W = 10; what spike noise leaves of the settling), also
                relative
    activity    mean state per layer and the fractions clipped at 0 and at 1; SNN: firing rate
    routes      forward / backward ratio of every layer with both routes (mean |Y| per step, and the
                paper's signed per-channel sums)
    gradients   per weight, cos(EP, BPTT) and the norms of both (``--no-gradients`` skips BPTT)
    indices     max pooling: per pooled layer, the fraction of pooling indices that differ between the
                last steps of the +beta and -beta nudged phases (what EP's difference sees), and between
                the last two steps of the free phase (how much the indices flicker at the free state)
    weights     per weight, ||w_n|| / ||w_n at initialisation|| (the same seed's initial weights)

    python -m figures.diagnose                                   # the trained nets
    python -m figures.diagnose --config configs/figures/snn_max.toml --samples 50   # at initialisation
    python -m figures.diagnose --history --json results/figures/diagnose.json
    python -m figures.diagnose --checkpoint RUN/checkpoint.npz --as crnn_max   # its weights, continuous
    python -m figures.diagnose --checkpoint RUN/checkpoint.npz --phases 160 40  # longer phases settle?
"""
import sys

from figures import cli  # (first: it pins BLAS to one thread before NumPy is imported)
import numpy as np

from minimal_ep import backend
from minimal_ep.network import check_input
from figures import gradients, nets, plotting, routes

NAME = "diagnose"
SAMPLES, FAST_SAMPLES = 50, 4
WINDOW = 10


def _norms(a, N):
    """Per-sample L2 norm of a batch array: ||a|| / sqrt(N)."""
    return float(np.sqrt(float((backend.to_numpy(a).astype(np.float64) ** 2).sum()) / N))


def _per_sample(a):
    """||a_i|| of every sample i: (N, ...) -> (N,)."""
    a = backend.to_numpy(a).astype(np.float64)
    return np.sqrt((a.reshape(len(a), -1) ** 2).sum(axis=1))


def _idx_differ(a, b):
    """Per layer with pooling indices in both lists, the fraction of them that differ (None elsewhere)."""
    return [None if i is None or j is None else float(np.mean(backend.to_numpy(i) != backend.to_numpy(j)))
            for i, j in zip(a[1:], b[1:])]


def phase(net, state, T, nudge=None):
    """Run T steps from ``state``, recording every layer's residual per step; returns (state, record)."""
    L, N = net.n_layers, len(state.xi[0])
    trace, band, window, spikes = [], [], [], [0.0] * (L + 1)
    route = net.input_route(state)
    for t in range(T):
        new = net.step(state, nudge, input_route=route)
        trace.append([_norms(new.xi[n] - state.xi[n], N) for n in range(1, L + 1)])
        band.append([np.percentile(_per_sample(new.xi[n] - state.xi[n]), (10, 90)).tolist()
                     for n in range(1, L + 1)])
        window = (window + [[backend.to_numpy(new.xi[n]).astype(np.float64) for n in range(1, L + 1)]])[-2 * WINDOW:]
        if net.spiking:
            spikes = [s + float(backend.to_numpy(new.spikes[n]).mean()) / T if n else 0.0
                      for n, s in enumerate(spikes)]
        previous, state = state, new
    size = [_norms(state.xi[n], N) for n in range(1, L + 1)]
    rec = {"residual": trace[-1], "relative": [r / max(s, 1e-30) for r, s in zip(trace[-1], size)],
           "trace": trace, "trace_p10_p90": band}
    if len(window) == 2 * WINDOW:
        rec["drift"] = [float(np.sqrt(((np.mean([w[n] for w in window[WINDOW:]], axis=0)
                                        - np.mean([w[n] for w in window[:WINDOW]], axis=0)) ** 2).sum() / N))
                        for n in range(L)]
        rec["drift_relative"] = [d / max(z, 1e-30) for d, z in zip(rec["drift"], size)]
    if net.spiking:
        rec["rate"] = spikes[1:]
    rec["idx_flicker"] = _idx_differ(previous.idx, state.idx)
    return state, rec


def diagnose(src, x, y, args):
    """Every number of the module doc for one :class:`nets.Net` on the samples (x, y)."""
    net, dyn = src.network(args.as_), src.dynamics
    xb, yb = backend.to_device(x), backend.to_device(y)
    free, out = phase(net, net.init_state(check_input(net, xb)), dyn["T_free"])
    out = {"free": out}
    nudge = net.nudge_towards(yb, dyn["beta"])
    plus, out["plus"] = phase(net, free, dyn["T_nudge"], nudge)
    minus, out["minus"] = phase(net, free, dyn["T_nudge"], nudge.flipped())
    out["idx_plus_minus"] = _idx_differ(plus.idx, minus.idx)
    w0 = src.initial().params
    out["weight_growth"] = {k: float(np.linalg.norm(backend.to_numpy(v)) / np.linalg.norm(w0[k]))
                            for k, v in net.params.items() if k.startswith("w")}
    s = [backend.to_numpy(v) for v in free.xi[1:]]
    out["activity"] = {"mean": [float(v.mean()) for v in s], "at_0": [float((v <= 0).mean()) for v in s],
                       "at_1": [float((v >= 1).mean()) for v in s]}
    m = routes.measure(net, x, y, dyn, args.batch_size, layers=range(1, net.n_layers))
    out["routes"] = {n: routes.ratios(r) for n, r in m["layers"].items()}
    if not args.no_gradients:
        out["gradients"] = gradients.alignment(net, x, y, src.cfg, args.batch_size)
        out["gradients_average_last"] = src.cfg.train.average_last    # Eq. 11 at the mean of K states
    out["test_error"] = src.metrics[-1]["test_error"] if src.metrics and not args.as_ else None   # --as: not its own
    out["dynamics"], out["epoch"], out["net"] = dyn, src.epoch, src.describe()
    out["settings"] = {k: v for k, v in src.cfg.to_dict().items() if k in ("model", "train")}   # --set included
    return out


def report(name, d, log=print):
    L = len(d["free"]["residual"])
    err = d["test_error"]
    log(f"\n{name}: {d['net']}" + (f"; test error {100 * err:.2f}%" if err is not None else ""))
    log(f"  {'layer':>5s} {'res free':>9s} {'rel':>8s} {'drift rel':>9s} {'res +b':>9s} {'res -b':>9s} "
        f"{'mean xi':>8s} {'at 0':>6s} {'at 1':>6s} {'rate':>6s} {'fwd/bwd':>8s} {'signed':>8s} "
        f"{'cos':>6s} {'|EP|/|BPTT|':>11s} {'|w|/|w0|':>8s} {'idx +-b':>7s} {'flicker':>7s}")
    for n in range(1, L + 1):
        f, a, r = d["free"], d["activity"], d["routes"].get(n)
        g = d.get("gradients", {}).get(f"w{n}")
        log(f"  {n:5d} {f['residual'][n - 1]:9.2e} {f['relative'][n - 1]:8.1e} "
            f"{f['drift_relative'][n - 1] if 'drift' in f else float('nan'):9.1e} "
            f"{d['plus']['residual'][n - 1]:9.2e} "
            f"{d['minus']['residual'][n - 1]:9.2e} {a['mean'][n - 1]:8.3f} {a['at_0'][n - 1]:6.2f} "
            f"{a['at_1'][n - 1]:6.2f} " + (f"{f['rate'][n - 1]:6.3f} " if "rate" in f else f"{'':6s} ")
            + (f"{r['step']:8.3g} {r['signed']:8.3g} " if r else f"{'':8s} {'':8s} ")
            + (f"{g['cos']:+6.2f} {g['norm_ep'] / g['norm_bptt'] if g['norm_bptt'] else float('nan'):11.2e} "
               if g else f"{'':6s} {'':11s} ")
            + f"{d['weight_growth'][f'w{n}']:8.3f} "
            + " ".join(f"{'' if v is None else f'{v:.3f}':>7s}"
                       for v in (d["idx_plus_minus"][n - 1], f["idx_flicker"][n - 1])))


def plot(results, caption, args):
    fig = plotting.new_figure((4 * min(len(results), 4), 3.2 * -(-len(results) // 4) + 1))
    axes = fig.subplots(-(-len(results) // 4), min(len(results), 4), squeeze=False).ravel()
    for ax, (name, d) in zip(axes, results.items()):
        tr = np.array(d["free"]["trace"] + d["plus"]["trace"])
        band = np.maximum(np.array(d["free"]["trace_p10_p90"] + d["plus"]["trace_p10_p90"]), 1e-12)
        t = np.arange(1, len(tr) + 1)
        for n in range(tr.shape[1]):
            ax.semilogy(t, np.maximum(tr[:, n], 1e-12), lw=1, color=f"C{n}", label=f"layer {n + 1}")
            ax.fill_between(t, band[:, n, 0], band[:, n, 1], color=f"C{n}", alpha=0.2, lw=0)
        ax.axvline(d["dynamics"]["T_free"], color="k", lw=0.5, ls=":")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("step (free, then +beta nudged)", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in axes[len(results):]:
        ax.set_visible(False)
    axes[0].set_ylabel("residual ||xi^t - xi^(t-1)|| / sqrt(N)", fontsize=7)
    axes[0].legend(fontsize=6)
    fig.subplots_adjust(bottom=0.3, hspace=0.5)
    plotting.caption(fig, caption, width=40 * min(len(results), 4), y=0.12)
    return plotting.save(fig, args.out, args.name or NAME)


def main(argv=None):
    p = cli.parser(__doc__.split("\n")[0], SAMPLES, FAST_SAMPLES, batch_size=25)
    p.add_argument("--history", action="store_true",
                   help="each run's stages (RUN/stages/epoch_*.npz: init, epochs 1, 2, 4, ..., the last)")
    p.add_argument("--no-gradients", action="store_true", help="skip BPTT (the slow part)")
    p.add_argument("--as", dest="as_", choices=nets.NAMES, default=None,
                   help="measure the same weights as this configuration (only spiking and pooling change): "
                        "the control with identical weights")
    p.add_argument("--phases", nargs=2, type=cli.int_at_least(1), metavar=("T_FREE", "T_NUDGE"), default=None,
                   help="measure at these phase lengths instead of the config's (do longer phases settle?)")
    args = cli.finish(p, argv)
    selected = nets.select(args)
    if args.phases:
        for src in (src for ns in selected.values() for src in ns):
            src.cfg = nets.with_dynamics(src.cfg, T_free=args.phases[0], T_nudge=args.phases[1])
    todo = []
    for name, ns in selected.items():
        for src in ns:
            label = f"{nets.LABELS[name]} seed {src.seed}" + (f" as {nets.LABELS[args.as_]}" if args.as_ else "")
            label += f" T {args.phases[0]}+{args.phases[1]}" if args.phases else ""
            trail = nets.stages(src) if args.history else [src]
            todo += [(f"{label} {'init' if args.history and s.epoch == 0 else f'epoch {s.epoch}'}", s)
                     for s in trail]
    (x, y), = nets.sample_sets(todo[0][1].cfg, args.samples, 1, args.seed, args.data_dir)[0]
    results = {}
    for label, src in todo:
        results[label] = diagnose(src, x, y, args)
        report(label, results[label])
    cli.save_json(args, results)
    caption = (f"Settling of the free phase and the +beta nudged phase, per layer, on {args.samples} random "
               f"training samples (one batch), at each net's own dynamics: lines ||xi^t - xi^(t-1)|| / sqrt(N), "
               f"bands the 10th-90th percentiles of the per-sample ||xi_i^t - xi_i^(t-1)||; dotted: end of the "
               f"free phase.")
    out = {"nets": results, "caption": caption}
    if not args.no_plot:
        out["paths"] = plot(results, caption, args)
    return out


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
