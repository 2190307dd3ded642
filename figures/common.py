"""Shared helpers of the figure scripts: arguments, data, networks with identical weights, brief
training, the route measurements of Figs. 2-3, and atomic PNG + PDF output.

Every figure script has the same command-line interface (``--samples``, ``--checkpoint``, ``--fast``,
``--out``, ...) and a ``main(argv=None)`` that returns the numbers it printed and plotted as a dict,
so tests can check them without parsing text.

Network state. By default a script trains a network briefly itself (EP, symmetric estimator, plain
SGD, on the embedded MNIST subset) and says so in its output and in the figure caption; with
``--checkpoint run/checkpoint.npz`` (written by ``minimal-ep train``) it measures that trained network
instead. In both cases the continuous ("CRNN") and spiking ("SNN") networks that are compared share
*identical weights*, so a difference between them is attributable to the spikes alone.
"""
import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("MPLBACKEND", "Agg")
# One BLAS thread unless the caller chose otherwise (before NumPy is imported; the scripts import
# this module first): the matrices are small, and a multi-threaded OpenBLAS spin-waits on a busy
# 2-core machine, which made the scripts several times slower.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

import minimal_ep as mep  # noqa: E402
from minimal_ep import backend, datasets  # noqa: E402
from minimal_ep.optim import SGD  # noqa: E402
from minimal_ep.train import atomic_write, load_checkpoint  # noqa: E402

FIG_DIR = pathlib.Path(__file__).resolve().parent
DEFAULT_OUT = FIG_DIR / "out"

# The five-layer convolutional architecture of the paper's Figs. 2-3: conv 16-32-64-128 (3x3, pad 1,
# each followed by 2x2 pooling: 28 -> 14 -> 7 -> 3 -> 1) and a dense 10-unit output. The middle
# three conv layers (n = 2, 3, 4) have 32-64-128 channels; they receive a forward route from a
# conv layer below and a backward route from the layer above.
FIVE_LAYER = dict(input_shape=(1, 28, 28), conv_channels=(16, 32, 64, 128), kernel_size=3, padding=1,
                  hidden=(), n_classes=10, loss="mse")
FIVE_LAYER_LR = (0.5, 0.4, 0.3, 0.2, 0.16)
# Dynamics that settle and learn at small scale (see configs/quickstart.toml): the paper's eps 0.9 / lam 0.6 are
# tuned for T_free 250-350, far longer phases than a figure script can afford on a CPU.
DYNAMICS = dict(eps=0.3, lam=0.3)
PHASES = dict(beta=0.2, T_free=40, T_nudge=15)

CONFIGS = [(False, "max"), (True, "max"), (True, "avg"), (False, "avg")]   # (spiking, pool)


def arch_phrase(arch):
    """A one-line description of an architecture dict, e.g. 'conv16-32-64-128 (3x3, pad 1, 2x2 pooling) -> dense 10'."""
    conv = "-".join(str(c) for c in arch["conv_channels"])
    k, pad, F = arch["kernel_size"], arch["padding"], arch.get("pool_size", 2)
    dense = " -> ".join(f"dense {h}" for h in tuple(arch["hidden"]) + (arch["n_classes"],))
    return f"conv{conv} ({k}x{k}, pad {pad}, {F}x{F} pooling) -> {dense}, {arch['loss'].upper()} loss"


def config_name(spiking, pool):
    return f"{'SNN' if spiking else 'CRNN'}+{pool}"


# ----------------------------------------------------------------------------- arguments
def parser(description, samples, fast_samples, train_batches=20, batch_size=50, multi_checkpoint=False,
           train_as=False, layers=False):
    """The common command line; each script adds its own options to the returned parser.

    ``multi_checkpoint``: --checkpoint may be repeated (a list), one per configuration.
    ``train_as``: add --train-as (the configuration brief training uses, see :func:`trained_state`).
    ``layers``: add --layers (the conv layers whose routes are measured).
    """
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--samples", type=int, default=None,
                   help=f"MNIST training samples measured (default {samples}; {fast_samples} with --fast)")
    if multi_checkpoint:
        p.add_argument("--checkpoint", action="append", default=None,
                       help="a checkpoint.npz of minimal-ep train; repeatable, one per configuration: its "
                            "weights replace that configuration's brief training")
    else:
        p.add_argument("--checkpoint", default=None,
                       help="measure the trained network of this checkpoint.npz (minimal-ep train) "
                            "instead of training briefly; its weights go into every compared network")
    p.add_argument("--fast", action="store_true",
                   help="tiny sizes and phases, for tests (seconds; the numbers are not meaningful)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="directory for NAME.png and NAME.pdf")
    p.add_argument("--source", choices=("embedded", "full"), default="embedded",
                   help="MNIST: the subset shipped in the package, or the official files")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and of sampling")
    p.add_argument("--train-batches", type=int, default=None,
                   help=f"batches of brief EP training when no checkpoint is given (default "
                        f"{train_batches}; 0 measures the untrained network)")
    p.add_argument("--batch-size", type=int, default=batch_size, help="batch size (training and measuring)")
    p.add_argument("--name", default=None,
                   help="basename of the PNG and PDF written into --out (default: the script's name)")
    p.add_argument("--no-plot", action="store_true", help="print the numbers, write no figure")
    if train_as:
        p.add_argument("--train-as", default="snn-avg", choices=("snn-avg", "snn-max", "crnn-avg", "crnn-max"),
                       help="configuration the brief training uses (its weights go into every compared network)")
    if layers:
        p.add_argument("--layers", default=None,
                       help="comma-separated conv layers to measure (default: the middle ones, 2..N_c; "
                            "layer 1's forward route reads the static input, which the paper excludes)")
    return p


def finish_args(args, samples, fast_samples, train_batches, fast_train_batches=1):
    """Fill the defaults that depend on --fast; returns args."""
    if args.samples is None:
        args.samples = fast_samples if args.fast else samples
    if args.train_batches is None:
        args.train_batches = fast_train_batches if args.fast else train_batches
    if args.fast:
        args.batch_size = min(args.batch_size, args.samples)
    if args.samples < 1 or args.batch_size < 1 or args.train_batches < 0:
        raise SystemExit("--samples and --batch-size must be >= 1, --train-batches >= 0")
    return args


def phases(args):
    """beta, T_free, T_nudge: the training settings, shortened with --fast."""
    if args.fast:
        return dict(beta=PHASES["beta"], T_free=8, T_nudge=4)
    return dict(PHASES)


# ----------------------------------------------------------------------------- data
_DATA = {}


def load_mnist(split, n, source="embedded", dtype="float32", offset=0):
    """(x, y, description): the first n images of an MNIST split, x (n, 1, 28, 28) in [0, 1].

    The embedded subset is shuffled and class-stratified, so its first n images are a random sample.
    """
    key = source
    if key not in _DATA:
        _DATA[key] = datasets.load_dataset("mnist", source=source)
    data = _DATA[key]
    images, labels = data[f"{split}_images"], data[f"{split}_labels"]
    if offset + n > len(labels):
        raise SystemExit(f"asked for {n} {split} images (from {offset}) but the {data['source']} MNIST "
                         f"{split} split has {len(labels)}; use fewer --samples or --source full")
    x = datasets.to_float_images(images[offset:offset + n], dtype)
    y = labels[offset:offset + n].astype(np.int64)
    where = ("the embedded MNIST subset (500 train / 100 test images per class)"
             if data["source"] == "embedded" else f"the full MNIST set ({data['source']})")
    return x, y, f"{n} MNIST {split} images from {where}"


# ----------------------------------------------------------------------------- networks
def build(spiking, pool, seed=0, dtype="float32", arch=None, **overrides):
    """A network of ``arch`` (default the five-layer net) with the figure dynamics."""
    kw = dict(FIVE_LAYER if arch is None else arch)
    kw.update(DYNAMICS)
    kw.update(overrides)
    if not spiking:
        for k in ("lam", "v_th", "surrogate_width"):
            kw.pop(k, None)
    return mep.build_network(spiking=spiking, pool=pool, seed=seed, dtype=dtype, **kw)


def copy_params(src, dst):
    """Copy every parameter of ``src`` into ``dst`` (same architecture); returns dst."""
    for k, v in src.params.items():
        if dst.params[k].shape != v.shape:
            raise ValueError(f"cannot copy {k}: shapes {v.shape} and {dst.params[k].shape}")
        dst.params[k][...] = backend.to_device(backend.to_numpy(v))
    return dst


def same_params(a, b):
    return all(np.array_equal(backend.to_numpy(a.params[k]), backend.to_numpy(b.params[k]))
               for k in a.params)


def arch_from_checkpoint(path):
    """(arch kwargs, dynamics kwargs, description, params) of a ``minimal-ep train`` checkpoint."""
    cfg, params, _, epoch, _ = load_checkpoint(path)
    m, t = cfg["model"], cfg["train"]
    arch = dict(input_shape=(1, 28, 28), conv_channels=tuple(m["conv_channels"]),
                kernel_size=m["kernel_size"], padding=m["padding"], hidden=tuple(m["hidden"]),
                n_classes=10, loss=m["loss"], pool_size=m["pool_size"], alpha=m["alpha"] or None,
                init_scale=m["init_scale"])
    dyn = dict(eps=m["eps"], lam=m["lam"], v_th=m["v_th"], surrogate_width=m["surrogate_width"])
    what = (f"weights of checkpoint {path} ({'SNN' if m['spiking'] else 'CRNN'} "
            f"{t['algorithm'].upper()}, {m['pool']} pooling, {epoch} epoch(s) on "
            f"{cfg['data']['source']} {cfg['data']['dataset']})")
    return arch, dyn, what, params, cfg


class NetworkState:
    """The weights every compared network shares, and a description of where they came from."""

    def __init__(self, params, what, arch=None, dynamics=None, phases=None, seed=0):
        self.params, self.what, self.seed = params, what, seed
        self.arch = dict(FIVE_LAYER if arch is None else arch)
        self.dynamics = dict(DYNAMICS if dynamics is None else dynamics)
        self.phases = phases

    def network(self, spiking, pool, dtype="float32", **overrides):
        """A CRNN or SNN with these weights (pooling changes no parameter shape)."""
        kw = dict(self.dynamics)
        kw.update(overrides)
        net = build(spiking, pool, dtype=dtype, arch=self.arch, **kw)
        for k, v in self.params.items():
            net.params[k][...] = backend.to_device(np.asarray(v).astype(net.params[k].dtype))
        return net


def train_briefly(net, x, y, batches, batch_size, beta, T_free, T_nudge, lrs=None, seed=0, log=print,
                  x_test=None, y_test=None):
    """EP training (symmetric estimator, plain SGD) for ``batches`` batches, in place on ``net``.

    Returns a dict: batches, images seen, last-batch train error, test error before/after (when a
    test set is given), seconds.
    """
    lrs = FIVE_LAYER_LR if lrs is None else lrs
    if len(lrs) != net.n_layers + int(net.readout):
        lrs = [0.5 * 0.8 ** i for i in range(net.n_layers + int(net.readout))]
    opt = SGD(net.params, list(lrs))
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    info = {"batches": batches, "images": 0, "lr": list(lrs)}
    if x_test is not None:
        info["test_error_before"] = test_error(net, x_test, y_test, T_free, batch_size)
    order = np.concatenate([rng.permutation(len(y)) for _ in range(-(-batches * batch_size // len(y)))])
    for b in range(batches):
        i = order[b * batch_size:(b + 1) * batch_size]
        xb, yb = backend.to_device(x[i]), backend.to_device(y[i])
        free = net.free_phase(xb, T_free)
        g = mep.ep_gradients(net, xb, yb, beta, T_free, T_nudge, "symmetric", free_state=free)
        opt.step(g)
        info["images"] += len(i)
        info["train_error_last_batch"] = float((backend.to_numpy(net.predict(free)) != y[i]).mean())
    for k, v in net.params.items():
        if not bool(np.isfinite(backend.to_numpy(v)).all()):
            raise RuntimeError(f"brief training diverged: non-finite {k}")
    if x_test is not None:
        info["test_error"] = test_error(net, x_test, y_test, T_free, batch_size)
    info["seconds"] = time.perf_counter() - start
    return info


def test_error(net, x, y, T, batch_size=100):
    wrong = 0
    for i in range(0, len(y), batch_size):
        xb = backend.to_device(x[i:i + batch_size])
        wrong += int((backend.to_numpy(net.predict(net.free_phase(xb, T))) != y[i:i + batch_size]).sum())
    return wrong / len(y)


def network_state(args, train_spiking=True, train_pool="max", log=print):
    """The trained weights the script measures: from --checkpoint, or brief EP training.

    Brief training trains the five-layer net as ``config_name(train_spiking, train_pool)``; every
    compared network then gets those weights (the identical-weights control).
    """
    ph = phases(args)
    if args.checkpoint:
        arch, dyn, what, params, cfg = arch_from_checkpoint(args.checkpoint)
        log(f"network state: {what}")
        return NetworkState(params, what, arch, dyn, ph, seed=cfg["train"]["seed"])
    net = build(train_spiking, train_pool, seed=args.seed)
    if args.train_batches == 0:
        what = f"untrained five-layer net (Kaiming-uniform init, seed {args.seed})"
        log(f"network state: {what}")
        return NetworkState({k: backend.to_numpy(v).copy() for k, v in net.params.items()}, what, phases=ph,
                            seed=args.seed)
    n_train = min(args.train_batches * args.batch_size, 5000)
    x, y, _ = load_mnist("train", n_train, args.source, offset=0)
    n_test = 20 if args.fast else 200
    xt, yt, _ = load_mnist("test", n_test, args.source)
    log(f"no --checkpoint: training the five-layer net briefly as {config_name(train_spiking, train_pool)} "
        f"({args.train_batches} EP batches of {args.batch_size}, beta {ph['beta']}, T_free {ph['T_free']}, "
        f"T_nudge {ph['T_nudge']}, eps {DYNAMICS['eps']}, lam {DYNAMICS['lam']}) ...")
    info = train_briefly(net, x, y, args.train_batches, args.batch_size, seed=args.seed,
                         x_test=xt, y_test=yt, **ph)
    what = (f"five-layer net trained briefly by EP as {config_name(train_spiking, train_pool)} "
            f"({info['images']} {args.source} MNIST images, test error {100 * info['test_error_before']:.0f}% "
            f"-> {100 * info['test_error']:.0f}% on {n_test} test images)")
    log(f"  done in {info['seconds']:.0f}s: {what}")
    st = NetworkState({k: backend.to_numpy(v).copy() for k, v in net.params.items()}, what, phases=ph,
                      seed=args.seed)
    st.training = info
    return st


def trained_state(args, log=print):
    """:func:`network_state` for the configuration that --train-as names."""
    spiking, pool = args.train_as.split("-")
    return network_state(args, train_spiking=spiking == "snn", train_pool=pool, log=log)


def init_state(args, like=None):
    """The untrained weights: the initialisation of ``like`` (same seed and architecture)."""
    arch = FIVE_LAYER if like is None else like.arch
    dyn = DYNAMICS if like is None else like.dynamics
    seed = args.seed if like is None else like.seed
    net = build(False, "max", seed=seed, arch=arch)
    return NetworkState({k: backend.to_numpy(v).copy() for k, v in net.params.items()},
                        f"untrained (Kaiming-uniform init, seed {seed})", arch, dyn, phases(args), seed)


# ----------------------------------------------------------------------------- route measurements
class _Moments:
    """Running sum, sum of squares and count (for mean and std over many entries)."""

    def __init__(self):
        self.s = self.ss = 0.0
        self.n = 0

    def add(self, a):
        a = a.astype(np.float64)
        self.s += float(a.sum())
        self.ss += float((a * a).sum())
        self.n += a.size

    def mean(self):
        return self.s / max(self.n, 1)

    def std(self):
        m = self.mean()
        return float(np.sqrt(max(self.ss / max(self.n, 1) - m * m, 0.0)))


def _chan_sum(a):
    """Sum over spatial positions and over the batch: (N, C, H, W) -> (C,), (N, D) -> (D,)."""
    return a.sum(axis=(0, 2, 3)) if a.ndim == 4 else a.sum(axis=0)


def conv_middle_layers(net):
    """Layers with a conv forward route from a conv layer below and a backward route from above."""
    return [n for n in range(2, net.n_conv + 1) if n < net.n_layers]


def parse_layers(text):
    """``"1,2"`` -> [1, 2]; None -> None (the middle conv layers)."""
    if text is None:
        return None
    try:
        layers = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise SystemExit(f"--layers takes comma-separated layer numbers, got {text!r}") from None
    return layers


def check_layers(net, layers):
    """The layers to measure: conv layers below the top (they have both routes)."""
    layers = conv_middle_layers(net) if layers is None else layers
    bad = [n for n in layers if not (net.is_conv(n) and n < net.n_layers)]
    if bad or not layers:
        raise SystemExit(f"--layers: layers {bad or layers} are not conv layers below the top layer "
                         f"(conv layers: 1..{net.n_conv}, top: {net.n_layers})")
    return layers


def measure_routes(net, x, y, beta, T_free, T_nudge, batch_size, layers=None):
    """Forward and backward routes of the given layers during the nudged phase (paper Figs. 2-3).

    For each batch: a free phase of T_free steps, then T_nudge nudged steps (+beta, MSE towards the
    label). Every nudged step t reads the messages s = net.messages(state) of step t-1 (states for
    the CRNN, spikes for the SNN); they give, for layer n,

        X_fwd = s_{n-1},  Y_fwd = P(w_n * X_fwd)                          (net.forward_route)
        X_bwd = s_{n+1},  Y_bwd = w_{n+1} ~* P^-1(X_bwd)  (net.backward_route, with the
                                   max-pooling indices step t used, ``state.idx``)

    the two terms of layer n's total input (Eq. 9, without bias). Returned per layer n (host arrays):

    * ``signed_fwd``/``signed_bwd`` (C,): per channel, the signed sum over spatial positions,
      averaged over samples and nudged steps (the paper's "activation summation").
    * ``abs_fwd``/``abs_bwd`` (C,): per channel, the sum over positions of |Y| per step, averaged
      over samples and steps (per-step magnitude).
    * ``tabs_fwd``/``tabs_bwd`` (C,): the same for the time average over the nudged steps of Y
      (time-averaged magnitude; spikes averaged over steps are rates).
    * ``mean_abs_*``/``mean_tabs_*``: the same two magnitudes per unit (scalars).
    * ``stats``: mean and std of X_fwd, Y_fwd, X_bwd, Y_bwd over samples, units and nudged steps
      (``per_step``) and of their time averages over samples and units (``time_avg``).
    * ``residual_free``: mean free-phase residual; ``samples``.
    """
    layers = check_layers(net, layers)
    keys = ("X_fwd", "Y_fwd", "X_bwd", "Y_bwd")
    out = {n: {"signed_fwd": 0.0, "signed_bwd": 0.0, "abs_fwd": 0.0, "abs_bwd": 0.0,
               "tabs_fwd": 0.0, "tabs_bwd": 0.0,
               "mom": {k: _Moments() for k in keys}, "tmom": {k: _Moments() for k in keys}}
           for n in layers}
    residuals, N_total = [], 0
    for i in range(0, len(y), batch_size):
        xb, yb = backend.to_device(x[i:i + batch_size]), backend.to_device(y[i:i + batch_size])
        N = len(yb)
        free = net.free_phase(xb, T_free)
        residuals.append(free.residual)
        st, nudge = free, net.nudge_towards(yb, beta)
        sums = {n: {k: 0.0 for k in keys} for n in layers}
        for _ in range(T_nudge):
            s = net.messages(st)                       # what the layers send at step t-1 ...
            st = net.step(st, nudge)                   # ... and the indices step t pooled them with
            for n in layers:
                y_fwd, _ = net.forward_route(n, s[n - 1])
                y_bwd = net.backward_route(n, s[n + 1], st.idx[n + 1])
                vals = {"X_fwd": s[n - 1], "Y_fwd": y_fwd, "X_bwd": s[n + 1], "Y_bwd": y_bwd}
                o = out[n]
                for k, v in vals.items():
                    v = backend.to_numpy(v)
                    o["mom"][k].add(v)
                    sums[n][k] = sums[n][k] + v
                o["signed_fwd"] = o["signed_fwd"] + _chan_sum(backend.to_numpy(y_fwd).astype(np.float64))
                o["signed_bwd"] = o["signed_bwd"] + _chan_sum(backend.to_numpy(y_bwd).astype(np.float64))
                o["abs_fwd"] = o["abs_fwd"] + _chan_sum(np.abs(backend.to_numpy(y_fwd)).astype(np.float64))
                o["abs_bwd"] = o["abs_bwd"] + _chan_sum(np.abs(backend.to_numpy(y_bwd)).astype(np.float64))
        for n in layers:
            o = out[n]
            for k in keys:
                o["tmom"][k].add(sums[n][k] / T_nudge)
            o["tabs_fwd"] = o["tabs_fwd"] + _chan_sum(np.abs(sums[n]["Y_fwd"] / T_nudge).astype(np.float64))
            o["tabs_bwd"] = o["tabs_bwd"] + _chan_sum(np.abs(sums[n]["Y_bwd"] / T_nudge).astype(np.float64))
        N_total += N
    res = {}
    for n in layers:
        o = out[n]
        r = {k: o[k] / (N_total * (T_nudge if not k.startswith("tabs") else 1))
             for k in ("signed_fwd", "signed_bwd", "abs_fwd", "abs_bwd", "tabs_fwd", "tabs_bwd")}
        units = int(np.prod(net.shapes[n]))
        for k in ("fwd", "bwd"):
            r[f"mean_abs_{k}"] = float(r[f"abs_{k}"].sum() / units)      # mean |Y| per unit and step
            r[f"mean_tabs_{k}"] = float(r[f"tabs_{k}"].sum() / units)    # mean |time-averaged Y| per unit
        r["stats"] = {"per_step": {k: (o["mom"][k].mean(), o["mom"][k].std()) for k in keys},
                      "time_avg": {k: (o["tmom"][k].mean(), o["tmom"][k].std()) for k in keys}}
        r.update(route_ratios(r))
        res[n] = r
    return {"layers": res, "residual_free": float(np.mean(residuals)), "samples": N_total}


def route_ratios(r):
    """Forward / backward magnitude ratios of one layer's measurement (see ``measure_routes``).

    * ``ratio_signed``: mean over channels of |signed per-channel sum|, forward over backward;
    * ``ratio_step``: mean |Y| per step, forward over backward (= sum over channels of abs_*);
    * ``ratio_tavg``: mean |time-averaged Y|, forward over backward;
    * ``ratio_signed_median_channel``: median over channels of |S_fwd[c]| / |S_bwd[c]| (the
      per-channel ratios, which blow up where the backward sum cancels).
    """
    tiny = 1e-30
    sf, sb = np.abs(r["signed_fwd"]), np.abs(r["signed_bwd"])
    return {"ratio_signed": float(sf.mean() / max(sb.mean(), tiny)),
            "ratio_step": float(r["abs_fwd"].sum() / max(r["abs_bwd"].sum(), tiny)),
            "ratio_tavg": float(r["tabs_fwd"].sum() / max(r["tabs_bwd"].sum(), tiny)),
            "ratio_signed_median_channel": float(np.median(sf / np.maximum(sb, tiny)))}


# ----------------------------------------------------------------------------- output
def save_figure(fig, out_dir, name, log=print):
    """Write ``NAME.png`` and ``NAME.pdf`` into out_dir, each atomically; returns the two paths."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt, dpi in (("png", 130), ("pdf", None)):
        path = out / f"{name}.{fmt}"
        atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight"))
        paths.append(path)
    log(f"wrote {paths[0]} and {paths[1].name}")
    return paths


def new_figure(figsize):
    """A bare matplotlib Figure (no pyplot state; works with any backend, Agg in tests)."""
    from matplotlib.figure import Figure
    return Figure(figsize=figsize)


def add_caption(fig, text, width=150, fontsize=7.5, y=0.0):
    """Wrap ``text`` as the caption of ``fig``, its top at figure height fraction ``y``."""
    import textwrap
    wrapped = "\n".join(textwrap.fill(p, width) for p in text.split("\n"))
    fig.text(0.01, y, wrapped, ha="left", va="top", fontsize=fontsize, family="sans-serif")


def data_phrase(desc, args):
    return desc + (" [--fast: tiny sizes, numbers not meaningful]" if args.fast else "")


class Timer:
    def __init__(self):
        self.t0 = time.perf_counter()

    def __call__(self):
        return time.perf_counter() - self.t0


def run_main(main):
    """``if __name__ == "__main__": run_main(main)``: run, exit 0."""
    main(sys.argv[1:])
    return 0
