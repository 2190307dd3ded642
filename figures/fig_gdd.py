"""GDD: EP's per-step updates against BPTT's per-step gradients (docs/equations.md §3; Ernoult et al. 2019).

Start the nudged phase at the free state s* and compare, step by step for t = 0..K-1,

    EP    -(s_{t+1} - s_t) / (beta N)  and  -(dPhi/dw(s_{t+1}) - dPhi/dw(s_t)) / beta
          (minimal_ep.ep.ep_per_step_updates; "symmetric": the mean of the +beta and -beta updates)
    BPTT  the gradients of the loss after K steps from s* with respect to the drive of layer n and
          to w_n, contributed by step K-t (minimal_ep.bptt_gradients(..., state=s*, per_step=K))

per layer state s_n and weight w_n, for a CRNN and an SNN with each pooling, all four on identical
weights (the trained ``--shared`` net, float64) and at its config's dynamics: eps, lam, beta and
T_free from the config, K = T_nudge. The GDD theorem holds for a CRNN at a fixed point of the free
phase, up to O(beta); ``--eps 1 --beta 1e-4`` give its textbook conditions (overrides are printed
and written in the caption). Metrics (Laborieux et al. 2021): relative RMSE and sign-error fraction,
and the cosine of the sums over the K steps, each mean +- std over ``--sets`` disjoint batches.

    python -m figures.fig_gdd                                  # results/figures/checkpoints/, their configs' dynamics
    python -m figures.fig_gdd --eps 1 --beta 1e-4 --T-free 300
"""
import sys

from figures import cli  # (first: it pins BLAS to one thread before NumPy is imported)
import numpy as np

from minimal_ep import backend, bptt_gradients
from minimal_ep.ep import ep_per_step_updates
from minimal_ep.run.gradcheck import cosine, gdd_metrics
from figures import campaign, nets, plotting

NAME = "fig_gdd"
SAMPLES, FAST_SAMPLES = 24, 4
METRICS = ("rmse_one_sided", "sign_err_one_sided", "cos_sum_one_sided", "rmse_symmetric",
           "sign_err_symmetric", "cos_sum_symmetric")


def parse(argv):
    p = cli.parser(__doc__.split("\n")[0], SAMPLES, FAST_SAMPLES, sets=3)
    p.add_argument("--shared", default="crnn_max", choices=nets.NAMES, help="whose trained weights all four get")
    p.add_argument("--eps", type=cli.finite_float(0, 1), default=None,
                   help="override the config's eps (all four nets)")
    p.add_argument("--beta", type=cli.finite_float(nonzero=True), default=None, help="override the config's beta")
    p.add_argument("--T-free", type=cli.int_at_least(1), default=None, help="override the config's T_free")
    p.add_argument("--K", type=cli.int_at_least(1), default=None,
                   help="steps compared (default: the config's T_nudge)")
    return cli.finish(p, argv)


def _host(seq):
    return [backend.to_numpy(v).astype(np.float64) for v in seq]


def compare(net, x, y, beta, T_free, K):
    """Per tensor: GDD metrics of the per-step EP updates (one-sided, symmetric) against BPTT; and the traces."""
    xb, yb = backend.to_device(x), backend.to_device(y)
    free, report = net.free_phase(xb, T_free)
    s_plus, p_plus = ep_per_step_updates(net, free, yb, beta, K)
    s_minus, p_minus = ep_per_step_updates(net, free, yb, -beta, K)
    _, rec = bptt_gradients(net, xb, yb, K, state=free, per_step=K)
    rows, seqs = {}, {}
    for name in [f"s{n}" for n in range(1, net.n_layers + 1)] + [k for k in p_plus[0] if k.startswith("w")]:
        pick = (lambda seq, n=int(name[1:]): [s[n] for s in seq]) if name[0] == "s" else \
               (lambda seq: [p[name] for p in seq])
        src = (s_plus, s_minus, rec["states"]) if name[0] == "s" else (p_plus, p_minus, rec["params"])
        one, minus, ref = (_host(pick(seq)) for seq in src)
        sym = [0.5 * (a + b) for a, b in zip(one, minus)]
        (r1, e1), (r2, e2) = gdd_metrics(one, ref), gdd_metrics(sym, ref)
        rows[name] = {"rmse_one_sided": r1, "sign_err_one_sided": e1, "cos_sum_one_sided": cosine(sum(one), sum(ref)),
                      "rmse_symmetric": r2, "sign_err_symmetric": e2, "cos_sum_symmetric": cosine(sum(sym), sum(ref))}
        seqs[name] = {"ep": np.stack(sym), "bptt": np.stack(ref)}
    return rows, seqs, report.residual


def plot(results, caption, args):
    cfgs = list(results)
    fig = plotting.new_figure((15, 11))
    gs = fig.add_gridspec(3, len(cfgs), height_ratios=[1, 1, 1.1], hspace=0.5, wspace=0.28, bottom=0.14)
    for j, name in enumerate(cfgs):
        seqs = results[name]["seqs"]
        L = max(int(k[1:]) for k in seqs if k[0] == "s")
        for row, prefix in enumerate(("s", "w")):
            ax = fig.add_subplot(gs[row, j])
            for c, n in enumerate(sorted({1, (L + 1) // 2, L})):
                seq = seqs[f"{prefix}{n}"]
                b = seq["bptt"].reshape(len(seq["bptt"]), -1)
                u = int(np.argmax(np.abs(b).sum(axis=0)))            # the unit with the largest BPTT trace
                ep, bp = seq["ep"].reshape(len(seq["ep"]), -1)[:, u], b[:, u]
                scale = max(np.abs(bp).max(), np.abs(ep).max(), 1e-300)
                ax.plot(ep / scale, "-", color=f"C{c}", lw=1.5, label=f"{prefix}{n} EP")
                ax.plot(bp / scale, "--", color=f"C{c}", lw=1.5, label=f"{prefix}{n} BPTT")
            ax.axhline(0, color="k", lw=0.4)
            ax.set_title(f"{nets.LABELS[name]}: {'layer state' if prefix == 's' else 'weight'} updates", fontsize=8)
            ax.tick_params(labelsize=7)
            if row == 1:
                ax.set_xlabel("t (EP: nudged step; BPTT: step from the end)", fontsize=7)
            if j == 0 and row == 0:
                ax.legend(fontsize=6, ncol=2)
    tensors = list(results[cfgs[0]]["rows"])
    panels = (("rmse_symmetric", "per-step relative RMSE (symmetric)", True),
              ("cos_sum_symmetric", "cosine of the sums over K steps (symmetric)", False))
    for j, (key, title, log) in enumerate(panels):
        ax = fig.add_subplot(gs[2, 2 * j:2 * j + 2])
        rows = {name: results[name]["rows"] for name in cfgs}
        series = [{"label": nets.LABELS[name], "color": nets.COLORS[name],
                   "mean": [max(rows[name][t][key]["mean"], 1e-12 if log else -1) for t in tensors],
                   "err": [rows[name][t][key]["std"] for t in tensors]} for name in cfgs]
        plotting.grouped_bars(ax, tensors, series, log=log)
        ax.set_title(title + ", mean +- std over batches", fontsize=8)
        ax.tick_params(labelsize=7)
        if j == 1:
            ax.set_ylim(-1.05, 1.05)
            ax.legend(fontsize=7, ncol=4, loc="lower center")
    plotting.caption(fig, caption, width=190, y=0.09)
    return plotting.save(fig, args.out, args.name or NAME)


def main(argv=None):
    args = parse(argv)
    selected = nets.select(args)
    src = campaign.units(selected, args.shared, [args.shared], ["shared"])[0][3]
    cfg = nets.with_dynamics(src.cfg, eps=args.eps, beta=args.beta, T_free=args.T_free)
    base = nets.Net(cfg, src.params, src.epoch, src.path)
    dyn = base.dynamics
    K = args.K or dyn["T_nudge"]
    sets, where = nets.sample_sets(base.cfg, args.samples, args.sets, args.seed, args.data_dir)
    print(f"weights: {src.describe()}; dynamics {plotting.dynamics_phrase(dyn)}, K = {K}, float64")
    results = {}
    for name in nets.NAMES:
        net = base.network(name, dtype="float64")
        runs = [compare(net, x.astype(np.float64), y, dyn["beta"], dyn["T_free"], K) for x, y in sets]
        rows = {t: {m: campaign.spread([r[0][t][m] for r in runs]) for m in METRICS} for t in runs[0][0]}
        results[name] = {"rows": rows, "seqs": runs[0][1], "residual": campaign.spread([r[2] for r in runs])}
        print(f"\n{nets.LABELS[name]}: free-phase residual {results[name]['residual']['mean']:.2e}")
        print(f"  {'tensor':6s} " + " ".join(f"{m:>22s}" for m in METRICS))
        for t, r in rows.items():
            print(f"  {t:6s} " + " ".join(f"{r[m]['mean']:11.3e} +- {r[m]['std']:8.1e}" for m in METRICS))
    fast = " [--fast: a few samples, numbers not meaningful]" if args.fast else ""
    overrides = ", ".join(f"{k} {v:g}" for k, v in (("eps", args.eps), ("beta", args.beta), ("T_free", args.T_free))
                          if v is not None)
    caption = (
        f"GDD check on {len(sets)} disjoint batches ({where}){fast}; weights: {src.describe()}, shared by all four "
        f"networks (net {plotting.arch_phrase(cfg)}, float64). Dynamics from the config "
        f"({plotting.dynamics_phrase(dyn)}" + (f"; overridden: {overrides}" if overrides else "") + f"), K = {K} "
        f"steps compared. Top: per-step EP updates (solid, symmetric: mean of +beta and -beta) and per-step BPTT "
        f"gradients (dashed) of the loss after K steps from the free state, first batch, for the unit of layers "
        f"1, middle and top with the largest BPTT trace, each scaled by its max. Bottom: relative RMSE "
        f"sqrt(sum_t ||EP_t - BPTT_t||^2 / K) / max(rms||EP||, rms||BPTT||) and cosine of the sums over the K "
        f"steps, per layer state s_n and weight w_n, mean +- std over the batches. Free-phase residuals: "
        + ", ".join(f"{nets.LABELS[k]} {v['residual']['mean']:.1e}" for k, v in results.items()) + ".")
    out = {"rows": {k: v["rows"] for k, v in results.items()},
           "residual": {k: v["residual"] for k, v in results.items()}, "dynamics": dict(dyn, K=K),
           "weights": src.describe(), "caption": caption}
    if not args.no_plot:
        out["paths"] = plot(results, caption, args)
    cli.save_json(args, out)
    return out


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
