"""The nets the benchmarks time (issues 13 and 25), their EP batches, and the targets set for them.

Every net is built by ``minimal_ep.build_network`` from explicit keyword arguments (the A/B child
passes the same ones to the baseline commit, whose defaults differ), in float32, and trained by
symmetric EP with ``ep_gradients`` and ``optim.SGD``. A batch is T_free + 2 T_nudge steps plus the
weight update. Where a whole batch would take minutes (2C2FC), a few steps are measured and the
batch is extrapolated (``extrapolate``; the JSON and the summary say so).
"""
from dataclasses import dataclass, field

import numpy

from .common import REPO, UsageError
from minimal_ep import backend, build_network
from minimal_ep.run import config

BETA = 0.2           # the cost of a batch does not depend on beta or the learning rate
LR = 1e-3

_28 = dict(input_shape=(1, 28, 28), n_classes=10, dtype="float32", seed=0)
# the quickstart (configs/quickstart.toml = config's defaults), its architecture and dynamics spelled out
_Q = config.defaults()
_Q_DYNAMICS = {k: getattr(_Q.model, k) for k in ("eps", "lam", "loss")}
QUICKSTART = dict(_28, conv_channels=tuple(_Q.model.conv_channels), hidden=tuple(_Q.model.hidden),
                  **{k: getattr(_Q.model, k) for k in ("kernel_size", "padding", "pool")}, **_Q_DYNAMICS)
Q_BATCH, Q_T_FREE, Q_T_NUDGE = _Q.data.batch_size, _Q.train.T_free, _Q.train.T_nudge
FIVE_LAYER = dict(_28, conv_channels=(16, 32, 64, 128), kernel_size=3, padding=1, hidden=(), **_Q_DYNAMICS)
PAPER_2C2FC = dict(_28, conv_channels=(128, 256), kernel_size=3, padding=0, pool="avg", hidden=(512,),
                   eps=0.9, lam=0.6)
LABORIEUX_5X5 = dict(_28, conv_channels=(32, 64), kernel_size=5, padding=0, pool="max", hidden=(),
                     eps=1.0, lam=0.6, loss="mse", spiking=False)
LABORIEUX_3X3 = dict(_28, conv_channels=(16, 32), kernel_size=3, padding=0, pool="max", hidden=(128,),
                     eps=1.0, lam=0.6, loss="mse", spiking=False)


FIGURE_NETS = ("snn_max", "snn_avg", "crnn_max", "crnn_avg")     # configs/figures/<name>.toml


def figure_recipe(name):
    """The net of ``configs/figures/<name>.toml`` (the figure campaign) as build_network arguments, and
    its batch, T_free, T_nudge (batch 25, eps = lam = 0.1, T 250 + 2x50)."""
    cfg = config.resolve(REPO / "configs" / "figures" / f"{name}.toml")
    m = cfg.model
    scale = tuple(m.init_scale) if isinstance(m.init_scale, (list, tuple)) else m.init_scale
    build = dict(_28, conv_channels=tuple(m.conv_channels), kernel_size=m.kernel_size, padding=m.padding,
                 pool=m.pool, pool_size=m.pool_size, hidden=tuple(m.hidden), spiking=m.spiking, loss=m.loss,
                 eps=m.eps, lam=m.lam, v_th=m.v_th, init_scale=scale)
    return build, cfg.data.batch_size, cfg.train.T_free, cfg.train.T_nudge


@dataclass(frozen=True)
class Net:
    """One benchmarked net and its EP batch.

    Attributes
    ----------
    name : str
        Key in the JSON files and the summary.
    title : str
        What the summary calls it.
    build : dict
        Every keyword argument of ``build_network``.
    batch, T_free, T_nudge : int
        The EP batch the issue's targets refer to.
    extrapolate : (int, int) or None
        (T_free, T_nudge) actually run when a whole batch is too long; the batch is then
        extrapolated from the per-step time.
    """
    name: str
    title: str
    build: dict
    batch: int
    T_free: int
    T_nudge: int
    extrapolate: tuple = None
    note: str = field(default="")

    @property
    def steps(self):
        """Dynamics steps of one batch, T_free + 2 T_nudge."""
        return self.T_free + 2 * self.T_nudge

    def measured(self):
        """(T_free, T_nudge) of the batch that is really run."""
        return self.extrapolate or (self.T_free, self.T_nudge)

    def short(self):
        """(T_free, T_nudge) of the short batch: with the measured one it gives the time per step."""
        T_free, T_nudge = self.measured()
        return max(1, T_free // 2), max(1, T_nudge // 2)


NETS = [
    Net("quickstart-snn", "quickstart SNN", dict(QUICKSTART, spiking=True), Q_BATCH, Q_T_FREE, Q_T_NUDGE),
    Net("quickstart-crnn", "quickstart CRNN", dict(QUICKSTART, spiking=False), Q_BATCH, Q_T_FREE, Q_T_NUDGE),
    Net("quickstart-snn-max", "quickstart SNN max", dict(QUICKSTART, spiking=True, pool="max"), Q_BATCH, Q_T_FREE,
        Q_T_NUDGE),
    *(Net(f"five-layer-{kind.lower()}-{pool}", f"five-layer {kind} {pool}",
          dict(FIVE_LAYER, spiking=kind == "SNN", pool=pool), Q_BATCH, Q_T_FREE, Q_T_NUDGE)
      for kind in ("SNN", "CRNN") for pool in ("avg", "max")),
    *(Net(f"figure-{name.replace('_', '-')}", f"figure {name.split('_')[0].upper()}+{name.split('_')[1]}",
          *figure_recipe(name)) for name in FIGURE_NETS),
    Net("2c2fc-snn", "2C2FC SNN", dict(PAPER_2C2FC, spiking=True, loss="mse"), 125, 250, 50, (8, 4)),
    Net("2c2fc-crnn", "2C2FC CRNN", dict(PAPER_2C2FC, spiking=False, loss="ce"), 125, 250, 50, (8, 4)),
    Net("laborieux-5x5", "Laborieux conv 32-64 5x5", LABORIEUX_5X5, 100, 100, 20),
    Net("laborieux-3x3", "Laborieux conv 16-32 3x3 -> 128", LABORIEUX_3X3, 100, 100, 20),
]
BY_NAME = {net.name: net for net in NETS}

# The figure campaign (docs/FIGURES.md): how many nets of each recipe it trains, and what one epoch of
# one of them runs: 10000 MNIST training images in batches of 25 (T 250 + 2x50 steps each), then the
# test error on 2000 test images (a free phase of T_free = 250 steps per batch of 25).
CAMPAIGN = {"figure-crnn-max": 1, "figure-crnn-avg": 1, "figure-snn-avg": 3, "figure-snn-max": 3}
EPOCH_TRAIN_BATCHES, EPOCH_TEST_BATCHES, TEST_STEPS = 10000 // 25, 2000 // 25, 250

# The A/B's baselines: the head before issue 25 (9374924) for every net, and the code before the fast
# path (fbe01e1) for the nets compared with Laborieux et al.'s PyTorch EP code (measured against it).
BASELINE = "9374924"
FIRST_BASELINE = "fbe01e1"
DEFAULT_BASELINES = (BASELINE, FIRST_BASELINE)
EXTRA_BASELINE_NETS = {FIRST_BASELINE: ("laborieux-5x5", "laborieux-3x3")}

# Issue 25's targets: (net, "speedup", threshold, baseline) from the A/B, or (net, "step_ms", ms, None).
_MAX_FIGURE = ("figure-snn-max", "figure-crnn-max")
_AVG = ("figure-snn-avg", "figure-crnn-avg", "five-layer-snn-avg", "five-layer-crnn-avg", "quickstart-snn",
        "quickstart-crnn")
TARGETS = [*((name, "speedup", 1.5, BASELINE) for name in _MAX_FIGURE),
           *((name, "speedup", 1.2, BASELINE) for name in _AVG),
           ("laborieux-5x5", "speedup", 2.2, FIRST_BASELINE),
           *((net.name, "speedup", 0.95, BASELINE) for net in NETS
             if net.name not in _MAX_FIGURE + _AVG)]
TARGET_THREADS = (1, 2)          # the targets hold at one and at two BLAS threads
DEFAULT_THREADS = 2


def parse_baselines(text):
    """``--baseline``: comma-separated commits, [] for "none"; the first is compared on every net."""
    refs = [r.strip() for r in text.split(",") if r.strip()]
    if not refs:
        raise UsageError("--baseline: give one or more commits (comma-separated), or 'none'")
    return [] if [r.lower() for r in refs] == ["none"] else list(dict.fromkeys(refs))


def ab_plan(chosen, refs):
    """``{ref: nets}`` for the A/B: the first baseline times every chosen net; a further one the
    chosen nets of ``EXTRA_BASELINE_NETS[ref]`` (every chosen net for a commit not listed there)."""
    plan = {}
    for k, ref in enumerate(refs):
        wanted = EXTRA_BASELINE_NETS.get(ref) if k else None
        plan[ref] = [n for n in chosen if wanted is None or n.name in wanted]
    return {ref: nets for ref, nets in plan.items() if nets}


def quick(net):
    """The same net with a tiny batch and a few steps: a smoke run of seconds, not a measurement."""
    return Net(net.name, net.title, net.build, 2, 2, 1, None, "--quick")


def select(names=None, quick_mode=False):
    """The nets named (all by default), quick versions with ``quick_mode``; UsageError if unknown."""
    chosen = NETS if not names else []
    for name in names or ():
        if name not in BY_NAME:
            raise UsageError(f"unknown net {name!r}; choose from {', '.join(BY_NAME)}")
        chosen.append(BY_NAME[name])
    return [quick(n) for n in chosen] if quick_mode else list(chosen)


def make_net(net):
    """The network of ``net``, built by the library on the active backend."""
    return build_network(**net.build)


def make_batch(net, seed=0):
    """Random images in [0, 1) and random labels on the active backend (the cost is the same)."""
    rng = numpy.random.default_rng(seed)
    C, H, W = net.build["input_shape"]
    x = backend.to_device(rng.random((net.batch, C, H, W), dtype=numpy.float32))
    y = backend.to_device(rng.integers(0, net.build["n_classes"], net.batch))
    return x, y


def as_json(net):
    """The net's description for the JSON files (tuples as lists)."""
    return {"name": net.name, "title": net.title, "batch": net.batch, "T_free": net.T_free,
            "T_nudge": net.T_nudge, "steps": net.steps,
            "extrapolate": list(net.extrapolate) if net.extrapolate else None,
            "build": {k: list(v) if isinstance(v, tuple) else v for k, v in net.build.items()}}
