"""GDD: EP's per-step updates against BPTT's per-step gradients (docs/equations.md §3; Ernoult et al. 2019).

Start the nudged phase at the free state s* and compare, step by step for t = 0..K-1,

    EP    the per-step updates  -(s_{t+1} - s_t) / (beta eps N)   and   -(dPhi/dw(s_{t+1}) - dPhi/dw(s_t)) / beta
          (minimal_ep.ep.ep_per_step_updates; "symmetric": the mean of the +beta and -beta updates)
    BPTT  the gradients of the loss after K steps from s*, contributed by step K-t
          (minimal_ep.bptt_gradients(..., state=s*, per_step=K))

per layer state s_n and per weight w_n, for a CRNN and an SNN with each pooling, all four with
identical weights. The GDD theorem says they are equal (up to O(beta)) for the CRNN at a fixed
point of s = rho(dPhi/ds). The SNN is not a gradient system, never settles exactly (spikes), and its
BPTT uses a surrogate derivative of the threshold: how close its EP updates come is measured, not
assumed. Metrics (Laborieux et al. 2021): relative RMSE sqrt(sum_t ||EP_t - BPTT_t||^2 / K) /
max(rms ||EP||, rms ||BPTT||) and the fraction of entries whose signs disagree.

    python figures/fig_gdd.py                # trains briefly, 8 samples
    python figures/fig_gdd.py --checkpoint runs/x/checkpoint.npz --samples 16
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import common  # noqa: E402  (first: it sets the BLAS thread count before NumPy is imported)
import numpy as np  # noqa: E402
import minimal_ep as mep  # noqa: E402
from minimal_ep import backend  # noqa: E402
from minimal_ep.ep import ep_per_step_updates  # noqa: E402
from minimal_ep.gradcheck import cosine, gdd_metrics  # noqa: E402

NAME = "fig_gdd"
SAMPLES, FAST_SAMPLES, TRAIN_BATCHES = 8, 2, 20


def parse(argv):
    p = common.parser(__doc__.split("\n")[0], SAMPLES, FAST_SAMPLES, TRAIN_BATCHES, train_as=True)
    p.add_argument("--K", type=int, default=None, help="steps compared (default 20; 4 with --fast)")
    p.add_argument("--crnn-T-free", type=int, default=None,
                   help="CRNN free phase, eps 1, float64 (default 300; 30 with --fast)")
    p.add_argument("--crnn-beta", type=float, default=1e-4,
                   help="CRNN nudge; at 1e-3 a briefly trained max-pooling net already left the linear "
                        "regime (a few units within 1e-3 of a clip kink)")
    p.add_argument("--snn-T-free", type=int, default=None,
                   help="SNN free phase at the training dynamics (default 100; 12 with --fast)")
    p.add_argument("--snn-beta", type=float, default=0.2,
                   help="SNN nudge (the training beta: a tiny beta divides spike flips by beta)")
    args = p.parse_args(argv)
    args = common.finish_args(args, SAMPLES, FAST_SAMPLES, TRAIN_BATCHES)
    args.K = args.K or (4 if args.fast else 20)
    args.crnn_T_free = args.crnn_T_free or (30 if args.fast else 300)
    args.snn_T_free = args.snn_T_free or (12 if args.fast else 100)
    return args


def _host(seq):
    return [backend.to_numpy(v).astype(np.float64) for v in seq]


def compare(net, x, y, beta, T_free, K):
    """Per-step EP (one-sided and symmetric) and BPTT sequences, and their GDD metrics, per tensor."""
    xb, yb = backend.to_device(x), backend.to_device(y)
    free = net.free_phase(xb, T_free)
    s_plus, p_plus = ep_per_step_updates(net, free, yb, beta, K)
    s_minus, p_minus = ep_per_step_updates(net, free, yb, -beta, K)
    _, rec = mep.bptt_gradients(net, xb, yb, K, state=free, per_step=K)
    seqs, rows = {}, []
    L = net.n_layers
    names = [f"s{n}" for n in range(1, L + 1)] + [k for k in p_plus[0]]
    for name in names:
        if name.startswith("s"):
            n = int(name[1:])
            one = _host([s[n] for s in s_plus])
            sym = [0.5 * (a + b) for a, b in zip(one, _host([s[n] for s in s_minus]))]
            ref = _host([s[n] for s in rec["states"]])
        else:
            one = _host([p[name] for p in p_plus])
            sym = [0.5 * (a + b) for a, b in zip(one, _host([p[name] for p in p_minus]))]
            ref = _host([p[name] for p in rec["params"]])
        r1, e1 = gdd_metrics(one, ref)
        r2, e2 = gdd_metrics(sym, ref)
        # the sums over the K steps: EP's gradient estimate after K nudged steps vs truncated BPTT
        rows.append({"name": name, "rmse_one_sided": r1, "sign_err_one_sided": e1,
                     "rmse_symmetric": r2, "sign_err_symmetric": e2,
                     "cos_sum_one_sided": cosine(sum(one), sum(ref)),
                     "cos_sum_symmetric": cosine(sum(sym), sum(ref))})
        seqs[name] = {"ep": np.stack(sym), "ep_one_sided": np.stack(one), "bptt": np.stack(ref)}
    return rows, seqs, free.residual


def pick_units(seq, k=1):
    """Flat indices of the k entries with the largest BPTT trace (summed |.| over steps)."""
    b = seq["bptt"].reshape(len(seq["bptt"]), -1)
    return np.argsort(-np.abs(b).sum(axis=0))[:k]


def plot(results, caption, args):
    cfgs = list(results)
    fig = common.new_figure((15, 13))
    gs = fig.add_gridspec(4, len(cfgs), height_ratios=[1, 1, 1.1, 0.9], hspace=0.5, wspace=0.28, bottom=0.14)
    for j, cfg in enumerate(cfgs):
        seqs = results[cfg]["seqs"]
        L = max(int(k[1:]) for k in seqs if k.startswith("s"))
        show = sorted({1, (L + 1) // 2, L})
        for row, prefix in enumerate(("s", "w")):
            ax = fig.add_subplot(gs[row, j])
            for c, n in enumerate(show):
                seq = seqs[f"{prefix}{n}"]
                for u in pick_units(seq, 1):
                    ep = seq["ep"].reshape(len(seq["ep"]), -1)[:, u]
                    bp = seq["bptt"].reshape(len(seq["bptt"]), -1)[:, u]
                    scale = max(np.abs(bp).max(), np.abs(ep).max(), 1e-300)
                    t = np.arange(len(ep))
                    ax.plot(t, ep / scale, "-", color=f"C{c}", lw=1.5, label=f"{prefix}{n} EP")
                    ax.plot(t, bp / scale, "--", color=f"C{c}", lw=1.5, label=f"{prefix}{n} BPTT")
            ax.axhline(0, color="k", lw=0.4)
            what = "layer state" if prefix == "s" else "weight"
            ax.set_title(f"{cfg}: {what} updates (one unit per layer)", fontsize=8)
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel("update / max |trace|", fontsize=7)
            if row == 1:
                ax.set_xlabel("t (EP: nudged step; BPTT: step from the end)", fontsize=7)
            if j == 0 and row == 0:
                ax.legend(fontsize=6, ncol=2)
    # bottom: relative RMSE and sign error per tensor, grouped by config
    names = [r["name"] for r in results[cfgs[0]]["rows"] if not r["name"].startswith("b")]
    panels = (("rmse_symmetric", "per-step relative RMSE (symmetric EP)", True, gs[2, :2]),
              ("sign_err_symmetric", "per-step sign-error fraction (symmetric EP)", False, gs[2, 2:]),
              ("cos_sum_symmetric", "cosine of the sums over the K steps: EP estimate vs truncated BPTT "
                                    "(symmetric EP)", False, gs[3, :]))
    for key, title, log, cell in panels:
        ax = fig.add_subplot(cell)
        width = 0.8 / len(cfgs)
        for i, cfg in enumerate(cfgs):
            rows = {r["name"]: r for r in results[cfg]["rows"]}
            vals = [max(rows[n][key], 1e-12) if log else rows[n][key] for n in names]
            ax.bar(np.arange(len(names)) - 0.4 + (i + 0.5) * width, vals, width=width, label=cfg,
                   color=f"C{i}")
        ax.set_xticks(np.arange(len(names)), names, fontsize=7)
        if log:
            ax.set_yscale("log")
        if key.startswith("cos"):
            ax.set_ylim(-1.05, 1.05)
            ax.axhline(0, color="k", lw=0.5)
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=7)
        if key.startswith("cos"):                   # one legend, where the bars leave room
            ax.legend(fontsize=7, ncol=len(cfgs), loc="lower center")
    common.add_caption(fig, caption, width=190, y=0.1)
    return common.save_figure(fig, args.out, args.name or NAME)


def main(argv=None):
    args = parse(argv)
    timer = common.Timer()
    st = common.trained_state(args)
    x, y, desc = common.load_mnist("train", args.samples, args.source, dtype="float64")
    results = {}
    for spk, pl in common.CONFIGS:
        cfg = common.config_name(spk, pl)
        if spk:
            net = st.network(True, pl, dtype="float64")
            beta, T_free = args.snn_beta, args.snn_T_free
        else:
            net = st.network(False, pl, dtype="float64", eps=1.0)
            beta, T_free = args.crnn_beta, args.crnn_T_free
        t = common.Timer()
        rows, seqs, res = compare(net, x, y, beta, T_free, args.K)
        results[cfg] = {"rows": rows, "seqs": seqs, "residual": res, "beta": beta, "T_free": T_free,
                        "eps": net.eps}
        print(f"\n{cfg}: eps {net.eps}, beta {beta}, free phase {T_free} steps (residual {res:.2e}), "
              f"K = {args.K}, {t():.0f}s")
        print(f"  {'tensor':6s} {'RMSE one-sided':>15s} {'sign err':>9s} {'cos(sums)':>9s} "
              f"{'RMSE symmetric':>15s} {'sign err':>9s} {'cos(sums)':>9s}")
        for r in rows:
            print(f"  {r['name']:6s} {r['rmse_one_sided']:15.3e} {r['sign_err_one_sided']:9.3f} "
                  f"{r['cos_sum_one_sided']:+9.3f} {r['rmse_symmetric']:15.3e} {r['sign_err_symmetric']:9.3f} "
                  f"{r['cos_sum_symmetric']:+9.3f}")
    c, s = results["CRNN+max"], results["SNN+max"]
    caption = (
        f"GDD check. Measured on {common.data_phrase(desc, args)} (one batch); network state: {st.what}. "
        f"All four networks share these weights (net {common.arch_phrase(st.arch)}, float64). "
        f"CRNN: eps 1 (the fixed-point iteration of the GDD theorem), free phase {c['T_free']} steps, "
        f"beta {c['beta']}; SNN: eps {s['eps']}, lam {st.dynamics.get('lam')}, free phase {s['T_free']} "
        f"steps, beta {s['beta']} (spiking BPTT with a triangular surrogate of width "
        f"{st.network(True, 'avg').surrogate_width}). Top rows: per-step EP updates (solid, symmetric: mean "
        f"of the +beta and -beta updates) and per-step BPTT gradients (dashed) of the loss after K = {args.K} "
        f"steps from the free state, for the unit of layers 1, middle and top with the largest BPTT trace, "
        f"each trace scaled by its max. Bottom: relative RMSE sqrt(sum_t ||EP_t - BPTT_t||^2 / K) / "
        f"max(rms||EP||, rms||BPTT||) and sign-error fraction per layer state s_n and weight w_n, and the "
        f"cosine between the sums over the K steps (EP's estimate after K nudged steps vs BPTT truncated "
        f"to K steps). "
        f"Free-phase residuals: " + ", ".join(f"{k} {v['residual']:.1e}" for k, v in results.items()) + ".")
    out = {"rows": {k: v["rows"] for k, v in results.items()},
           "residual": {k: v["residual"] for k, v in results.items()},
           "network_state": st.what, "samples": args.samples, "caption": caption}
    if not args.no_plot:
        out["paths"] = [str(p) for p in plot(results, caption, args)]
    out["seconds"] = timer()
    print(f"total {out['seconds']:.0f}s")
    return out


if __name__ == "__main__":
    sys.exit(common.run_main(main))
