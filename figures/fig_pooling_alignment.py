"""The paper's claim in one picture: does EP compute the gradient in {CRNN, SNN} x {max, avg} pooling?

For each of the four configurations, the per-layer cosine between the EP gradient (symmetric
estimator, the training settings: T_free free steps, T_nudge nudged steps at +-beta) and the BPTT
gradient of the loss after the same free phase (hand-written BPTT through the unrolled dynamics; for
the SNN through the spikes with a triangular surrogate derivative), measured

    one batch       the cosine of each batch's gradients, mean and spread over the batches
    summed          the cosine of the gradients summed over all the batches (spike noise averages out)

at (1) identical untrained weights for all four configurations (the control), and (2) after a short
EP training run of each configuration on its own (or at the weights of --checkpoint files), whose
test errors are shown next to it. The paper: max pooling breaks EP's gradient estimate in the SNN
(pooling-indices mismatch and a forward/backward magnitude imbalance), average pooling restores it.

    python figures/fig_pooling_alignment.py                      # small 2C2FC net, trains each config on 3000 images
    python figures/fig_pooling_alignment.py --checkpoint runs/snn-avg/checkpoint.npz --checkpoint ...
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import common  # noqa: E402  (first: it sets the BLAS thread count before NumPy is imported)
import numpy as np  # noqa: E402
import minimal_ep as mep  # noqa: E402
from minimal_ep import backend  # noqa: E402
from minimal_ep.gradcheck import cosine  # noqa: E402

NAME = "fig_pooling_alignment"
SAMPLES, FAST_SAMPLES, TRAIN_BATCHES = 200, 4, 60
# The paper's 2C2FC shape at small width (the project's quickstart network): conv 16 -> conv 32
# (3x3, no padding, 2x2 pooling: 28 -> 26 -> 13 -> 11 -> 5) -> dense 128 -> dense 10.
SMALL = dict(input_shape=(1, 28, 28), conv_channels=(16, 32), kernel_size=3, padding=0, hidden=(128,),
             n_classes=10, loss="mse")
SMALL_LR = (0.5, 0.3, 0.2, 0.16)
ARCHS = {"small": (SMALL, SMALL_LR, "2C2FC-shaped net conv16-conv32 (3x3, pad 0, 2x2 pooling) -> "
                                    "dense 128 -> dense 10"),
         "five-layer": (common.FIVE_LAYER, common.FIVE_LAYER_LR,
                        "five-layer net conv16-32-64-128 (3x3, pad 1, 2x2 pooling) -> dense 10")}


def parse(argv):
    p = common.parser(__doc__.split("\n")[0], SAMPLES, FAST_SAMPLES, TRAIN_BATCHES, batch_size=25,
                      multi_checkpoint=True)
    p.add_argument("--arch", choices=tuple(ARCHS), default="small")
    p.add_argument("--train-batch-size", type=int, default=50)
    p.add_argument("--test-samples", type=int, default=None, help="test images for the errors (default 500)")
    args = p.parse_args(argv)
    args = common.finish_args(args, SAMPLES, FAST_SAMPLES, TRAIN_BATCHES)
    if args.fast:
        args.train_batch_size = min(args.train_batch_size, 4)
    args.test_samples = args.test_samples or (10 if args.fast else 500)
    return args


def alignment(net, x, y, ph, batch_size):
    """Per weight tensor: cosine(EP, BPTT) per batch and of the sums over the batches."""
    per_batch, sum_ep, sum_bp = {}, {}, {}
    for i in range(0, len(y), batch_size):
        xb, yb = backend.to_device(x[i:i + batch_size]), backend.to_device(y[i:i + batch_size])
        ep = mep.ep_gradients(net, xb, yb, ph["beta"], ph["T_free"], ph["T_nudge"], "symmetric")
        bp = mep.bptt_gradients(net, xb, yb, ph["T_free"])
        for k in net.params:
            if not k.startswith("w"):
                continue
            e, b = backend.to_numpy(ep[k]).astype(np.float64), backend.to_numpy(bp[k]).astype(np.float64)
            per_batch.setdefault(k, []).append(cosine(e, b))
            sum_ep[k] = sum_ep.get(k, 0.0) + e
            sum_bp[k] = sum_bp.get(k, 0.0) + b
    return {k: {"batch_mean": float(np.mean(v)), "batch_std": float(np.std(v)), "batches": len(v),
                "summed": cosine(sum_ep[k], sum_bp[k])} for k, v in per_batch.items()}


def plot(cos, errors, states, caption, args):
    fig = common.new_figure((14, 5.2))
    gs = fig.add_gridspec(1, len(states) + 1, width_ratios=[1.3] * len(states) + [0.8], wspace=0.3,
                          bottom=0.33)
    cfgs = [common.config_name(s, p) for s, p in common.CONFIGS]
    for j, label in enumerate(states):
        ax = fig.add_subplot(gs[0, j])
        names = list(cos[label][cfgs[0]])
        width = 0.8 / len(cfgs)
        for i, cfg in enumerate(cfgs):
            c = cos[label][cfg]
            pos = np.arange(len(names)) - 0.4 + (i + 0.5) * width
            ax.bar(pos, [c[k]["summed"] for k in names], width=width, color=f"C{i}", label=f"{cfg} summed")
            ax.errorbar(pos, [c[k]["batch_mean"] for k in names], yerr=[c[k]["batch_std"] for k in names],
                        fmt="o", color="k", ms=3, lw=0.8, label="one batch (mean, std)" if i == 0 else None)
        ax.axhline(0, color="k", lw=0.5)
        ax.axhline(1, color="k", lw=0.5, ls=":")
        ax.set_ylim(-1.05, 1.05)
        ax.set_xticks(np.arange(len(names)), names)
        ax.set_title(f"cosine(EP, BPTT) per weight: {label}", fontsize=9)
        ax.tick_params(labelsize=8)
        if j == 0:
            ax.legend(fontsize=7, loc="lower left")
    ax = fig.add_subplot(gs[0, len(states)])
    if errors:
        for i, cfg in enumerate(cfgs):
            e = errors.get(cfg)
            if e is None:
                continue
            if e.get("before") is not None:
                ax.bar(i - 0.2, 100 * e["before"], width=0.4, color=f"C{i}", alpha=0.35)
            ax.bar(i + 0.2, 100 * e["after"], width=0.4, color=f"C{i}")
        ax.set_xticks(np.arange(len(cfgs)), cfgs, rotation=30, fontsize=8)
        ax.set_ylabel("test error (%)", fontsize=8)
        ax.set_title("test error: before (faded) / after training", fontsize=9)
        ax.tick_params(labelsize=8)
    common.add_caption(fig, caption, width=180, y=0.16)
    return common.save_figure(fig, args.out, args.name or NAME)


def main(argv=None):
    args = parse(argv)
    timer = common.Timer()
    arch, lrs, arch_desc = ARCHS[args.arch]
    ph = common.phases(args)
    x, y, desc = common.load_mnist("train", args.samples, args.source)
    xt, yt, tdesc = common.load_mnist("test", args.test_samples, args.source)
    init = common.build(False, "max", seed=args.seed, arch=arch)
    init_params = {k: backend.to_numpy(v).copy() for k, v in init.params.items()}
    cfgs = [common.config_name(s, p) for s, p in common.CONFIGS]
    # the trained weights of each configuration: checkpoints, else brief EP training
    trained, errors, what, from_ckpt = {}, {}, {}, set()
    for path in args.checkpoint or []:
        c_arch, dyn, w, params, cfg = common.arch_from_checkpoint(path)
        name = common.config_name(cfg["model"]["spiking"], cfg["model"]["pool"])
        trained[name] = common.NetworkState(params, w, c_arch, dyn, ph)
        what[name] = w
        from_ckpt.add(name)
        print(f"{name}: {w}")
    n_train = args.train_batches * args.train_batch_size
    xtr = ytr = None
    if args.train_batches and len(trained) < len(cfgs):
        xtr, ytr, _ = common.load_mnist("train", min(n_train, 5000), args.source, offset=0)
    for spk, pool in common.CONFIGS:
        name = common.config_name(spk, pool)
        if name in trained or not args.train_batches:
            continue
        net = common.build(spk, pool, seed=args.seed, arch=arch)
        print(f"{name}: training briefly ({args.train_batches} EP batches of {args.train_batch_size}, "
              f"beta {ph['beta']}, T_free {ph['T_free']}, T_nudge {ph['T_nudge']}) ...", flush=True)
        info = common.train_briefly(net, xtr, ytr, args.train_batches, args.train_batch_size, lrs=lrs,
                                    seed=args.seed, **ph)
        w = (f"trained briefly by EP as {name} ({info['images']} {args.source} MNIST images)")
        trained[name] = common.NetworkState({k: backend.to_numpy(v).copy() for k, v in net.params.items()},
                                            w, arch, common.DYNAMICS, ph)
        what[name] = w
        print(f"  done in {info['seconds']:.0f}s")
    for name, st in trained.items():
        spk, pool = name.startswith("SNN"), name.split("+")[1]
        net = st.network(spk, pool)
        T = st.phases["T_free"]
        before = None
        if name not in from_ckpt:          # the untrained net of the same seed, for reference
            before = common.test_error(st_network_init(init_params, st, spk, pool), xt, yt, T, 100)
        errors[name] = {"before": before, "after": common.test_error(net, xt, yt, T, 100)}
        print(f"  {name}: test error {_err(errors[name])} on {tdesc}")
    # gradient alignment: identical untrained weights (control), then each configuration's own weights
    states = {"identical untrained weights": {c: common.NetworkState(init_params, "init", arch, common.DYNAMICS, ph)
                                              for c in cfgs}}
    if trained:
        states["own trained weights"] = trained
    cos = {}
    for label, sts in states.items():
        cos[label] = {}
        for spk, pool in common.CONFIGS:
            name = common.config_name(spk, pool)
            if name not in sts:
                continue
            t = common.Timer()
            cos[label][name] = alignment(sts[name].network(spk, pool), x, y, ph, args.batch_size)
            print(f"  cosines at {label}, {name}: {t():.0f}s", flush=True)
    for label in cos:
        print(f"\ncosine(EP, BPTT) per weight, {label} ({desc}, batches of {args.batch_size}):")
        print(f"  {'config':9s} " + " ".join(f"{k + ' batch':>16s} {k + ' sum':>7s}"
                                             for k in next(iter(cos[label].values()))))
        for name, c in cos[label].items():
            print(f"  {name:9s} " + " ".join(f"{v['batch_mean']:+6.2f} +- {v['batch_std']:4.2f}"
                                            f"   {v['summed']:+7.2f}" for v in c.values()))
    if errors:
        print("\ntest error: " + ", ".join(f"{k} {_err(v)}" for k, v in errors.items()))
    caption = (
        f"EP vs BPTT gradients with max and average pooling. {arch_desc}, MSE, eps {common.DYNAMICS['eps']}, "
        f"lam {common.DYNAMICS['lam']} (SNN); EP: symmetric, beta {ph['beta']}, T_free {ph['T_free']}, "
        f"T_nudge {ph['T_nudge']}; BPTT: through the same {ph['T_free']}-step free phase (SNN: triangular "
        f"surrogate). Network states: identical untrained weights, and each configuration's own trained "
        f"weights. Cosines measured on {common.data_phrase(desc, args)} in batches of {args.batch_size}: "
        f"bars = cosine of the gradients summed over the {-(-args.samples // args.batch_size)} batches, "
        f"dots = mean and std of the per-batch cosines. Left: all four configurations at identical untrained "
        f"weights (seed {args.seed}), the control. "
        + ("Middle: each configuration at its own weights: " + "; ".join(f"{k}: {v}" for k, v in what.items())
           + ". " if trained else "")
        + (f"Right: test error on {tdesc} before (faded) and after. " if errors else "")
        + "Paper: max pooling breaks EP in the SNN, average pooling restores it.")
    out = {"cosine": cos, "test_error": errors, "network_state": what, "samples": args.samples,
           "caption": caption}
    if not args.no_plot:
        out["paths"] = [str(p) for p in plot(cos, errors, list(cos), caption, args)]
    out["seconds"] = timer()
    print(f"total {out['seconds']:.0f}s")
    return out


def _err(e):
    before = "" if e["before"] is None else f"{100 * e['before']:.1f}% -> "
    return f"{before}{100 * e['after']:.1f}%"


def st_network_init(init_params, st, spk, pool):
    return common.NetworkState(init_params, "init", st.arch, st.dynamics, st.phases).network(spk, pool)


if __name__ == "__main__":
    sys.exit(common.run_main(main))
