"""The networks and data a figure measures: trained checkpoints, their seeds, identical-weight copies.

A :class:`Net` is one set of weights with the configuration that trained it: its name
(``crnn_max``, ``snn_max``, ``snn_avg``, ``crnn_avg``), the resolved config (architecture and phase
dynamics), the host parameters, the epochs trained and the metrics of the run. Networks are built
with ``minimal_ep.run.train.network_from_config``; :meth:`Net.network` can swap the configuration
(CRNN/SNN, max/avg) while keeping the weights and the dynamics, which is how the identical-weights
control is made.
"""
import json
import pathlib

import numpy as np

from minimal_ep import backend
from minimal_ep.run import config as config_mod
from minimal_ep.run.checkpoints import read_checkpoint
from minimal_ep.run.train import load_data, network_from_config

from figures.cli import REPO, FigureError

NAMES = ("crnn_max", "snn_max", "snn_avg", "crnn_avg")           # the paper's panels A, B, C, then D
LABELS = {"crnn_max": "CRNN+max", "snn_max": "SNN+max", "snn_avg": "SNN+avg", "crnn_avg": "CRNN+avg"}
PANELS = {"crnn_max": "A", "snn_max": "B", "snn_avg": "C", "crnn_avg": "D"}      # D: the control
COLORS = {"crnn_max": "tab:blue", "snn_max": "tab:red", "snn_avg": "tab:green", "crnn_avg": "tab:gray"}


def shown(path):
    """``path`` as the outputs name it: relative to the repository when it lies inside it, so that no
    file under results/ names a folder of the machine that made it."""
    p = pathlib.Path(path)
    return str(p.relative_to(REPO)) if p.is_absolute() and p.is_relative_to(REPO) else str(path)


def config_of(spiking, pool):
    return f"{'snn' if spiking else 'crnn'}_{pool}"


def dynamics(cfg):
    """The phase dynamics of a :class:`~minimal_ep.run.config.Config`: eps, lam (SNN), v_th, beta,
    T_free, T_nudge."""
    m, t = cfg.model, cfg.train
    return {"eps": m.eps, "lam": m.lam, "v_th": m.v_th, "beta": t.beta,
            "T_free": t.T_free, "T_nudge": t.T_nudge}


def with_dynamics(cfg, **dyn):
    """A new Config: ``cfg`` with some of eps, lam, v_th (model) and beta, T_free, T_nudge (train)
    replaced (None keeps a value), checked."""
    return cfg.replace(**{f"{'model' if k in ('eps', 'lam', 'v_th') else 'train'}.{k}": v
                          for k, v in dyn.items()})


class Net:
    """Weights and the configuration they belong to.

    Attributes
    ----------
    name : str
        ``config_of(spiking, pool)`` of the config.
    cfg : Config
        The resolved configuration (:class:`minimal_ep.run.config.Config`).
    params : dict of host ndarray
    epoch : int
        Epochs trained (0: the initialisation).
    path : str
        The checkpoint or config file it came from.
    metrics : list of dict
        The run's metrics up to ``epoch``, one row per epoch (empty if there are none).
    """

    def __init__(self, cfg, params, epoch, path, metrics=()):
        self.cfg, self.params, self.epoch, self.path = cfg, params, epoch, str(path)
        self.metrics = list(metrics)
        self.name = config_of(cfg.model.spiking, cfg.model.pool)
        self.seed = cfg.train.seed

    @property
    def label(self):
        return LABELS[self.name]

    @property
    def dynamics(self):
        return dynamics(self.cfg)

    def describe(self):
        what = f"{self.epoch} epoch(s) of {self.cfg.train.algorithm.upper()}" if self.epoch else "untrained"
        return f"{self.label} seed {self.seed} ({what}; {shown(self.path)})"

    def network(self, name=None, params=None, dtype=None):
        """A network of this config (or of configuration ``name``, same dynamics) with these weights.

        Parameters
        ----------
        name : str, optional
            Build a ``crnn_max``/``snn_max``/... instead: only ``spiking`` and ``pool`` change.
        params : dict, optional
            Other weights of the same shapes (default: this net's).
        dtype : str, optional
            "float64" for gradient checks (default: the config's).
        """
        sets = {"model.dtype": dtype}
        if name is not None:
            kind, pool = name.split("_")
            sets.update({"model.spiking": kind == "snn", "model.pool": pool})
        net = network_from_config(self.cfg.replace(**sets))
        for k, v in (self.params if params is None else params).items():
            if net.params[k].shape != np.shape(v):
                raise FigureError(f"{self.path}: {k} has shape {np.shape(v)}, the config needs {net.params[k].shape}")
            net.params[k][...] = backend.to_device(np.asarray(v).astype(net.params[k].dtype))
        return net

    def initial(self):
        """The same config at its initialisation (the weights of its seed before training)."""
        params = {k: backend.to_numpy(v).copy() for k, v in network_from_config(self.cfg).params.items()}
        return Net(self.cfg, params, 0, f"init of {shown(self.path)}")


def from_checkpoint(path, dynamics_from=None, overrides=()):
    """A :class:`Net` from a ``minimal-ep train`` checkpoint.

    ``dynamics_from``: a config file (with ``overrides``, ``section.key=value`` strings) whose eps, lam,
    v_th, beta, T_free, T_nudge replace the checkpoint's. The metrics are the checkpoint's own (those
    of older checkpoints, which hold none: the ``metrics.jsonl`` beside it).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FigureError(f"checkpoint {path} not found (make checkpoints, or --checkpoint/--checkpoint-dir)")
    ckpt = read_checkpoint(path)
    cfg = ckpt.config
    if dynamics_from is not None:
        cfg = with_dynamics(cfg, **dynamics(config_mod.resolve(dynamics_from, overrides)))
    metrics, metrics_path = ckpt.metrics, path.with_name("metrics.jsonl")
    if metrics is None:
        metrics = ([json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
                   if metrics_path.is_file() else [])
    return Net(cfg, ckpt.params, ckpt.epoch, path, [m for m in metrics if m.get("epoch", 0) <= ckpt.epoch])


def from_config(path, overrides=()):
    """The untrained net a config file (with ``overrides``) describes (its seed's initialisation)."""
    cfg = config_mod.resolve(path, overrides)
    return Net(cfg, {}, 0, path).initial()


def stages(net):
    """The training history of a run: its stage checkpoints as Nets at ``net``'s configuration, by epoch.

    ``figures/make_checkpoints.py`` keeps ``RUN/stages/epoch_NNN.npz`` beside ``RUN/checkpoint.npz``
    (the initialisation, epochs 1, 2, 4, 8, ... and the last). Every stage gets ``net.cfg`` (so a
    ``--config``, ``--set`` or ``--phases`` given for the run applies to its history too). The list
    starts at the initialisation (made from the config, :meth:`Net.initial`, if the run has no
    epoch-0 stage) and ends with ``net`` itself unless a stage holds its epoch.
    """
    found = [from_checkpoint(p) for p in sorted(pathlib.Path(net.path).parent.glob("stages/epoch_*.npz"))]
    trail = [Net(net.cfg, s.params, s.epoch, s.path, s.metrics) for s in found]
    if not trail or trail[0].epoch != 0:
        trail.insert(0, net.initial())
    if net.epoch not in [s.epoch for s in trail]:
        trail.append(net)
    return trail


def find_runs(directory, names=NAMES):
    """{name: [checkpoint paths, seed 0 first]} of the runs ``make checkpoints`` writes into ``directory``."""
    directory = pathlib.Path(directory)
    found = {}
    for name in names:
        paths = [directory / name / "checkpoint.npz"] + sorted(directory.glob(f"{name}_seed*/checkpoint.npz"))
        paths = [p for p in paths if p.is_file()]
        if paths:
            found[name] = paths
    return found


def select(args, names=NAMES):
    """{name: [Net, one per seed]} from --checkpoint, --config or --checkpoint-dir (see cli.py)."""
    out = {}
    if args.checkpoint:
        dyn = args.config[0] if args.config else None
        for path in args.checkpoint:
            net = from_checkpoint(path, dyn, args.overrides)
            out.setdefault(net.name, []).append(net)
    elif args.config:
        for path in args.config:
            net = from_config(path, args.overrides)
            out.setdefault(net.name, []).append(net)
    else:
        runs = find_runs(args.checkpoint_dir, names)
        if not runs:
            raise FigureError(f"no trained checkpoints in {args.checkpoint_dir}: run `make checkpoints` "
                              "(or give --checkpoint/--checkpoint-dir/--config)")
        out = {name: [from_checkpoint(p) for p in paths] for name, paths in runs.items()}
    return {name: out[name] for name in names if name in out}


def same_params(a, b):
    """True when two parameter dicts (host or device arrays) hold identical values."""
    return a.keys() == b.keys() and all(
        np.array_equal(backend.to_numpy(a[k]), backend.to_numpy(b[k])) for k in a)


# ----------------------------------------------------------------------------- data
_DATA = {}


DEFAULT_DATA = "data/mnist-10k"                  # scripts/prepare_mnist_subset.py


def _data_dir(cfg, data_dir):
    """The data folder: --data-dir, else the config's, else data/mnist-10k (relative: to the cwd, else the repo).

    Checked here, so that a missing folder is one line, never a download attempt.
    """
    if cfg.data.source != "full":
        return data_dir or ""
    d = data_dir or cfg.data.data_dir or DEFAULT_DATA
    path = pathlib.Path(d).expanduser()
    if not path.is_absolute() and not path.exists() and (REPO / path).exists():
        path = REPO / path
    names = ("train-images-idx3-ubyte", "train-images-idx3-ubyte.gz")
    if not any((q / n).is_file() for q in (path, path / cfg.data.dataset) for n in names):
        raise FigureError(f"no MNIST training images in {path}: run `python scripts/prepare_mnist_subset.py "
                          f"--out {d}` (or give --data-dir)")
    return str(path)


def load(cfg, data_dir=None):
    """(x_train, y_train, x_test, y_test, source) of a config's data set, all of it, cached per source.

    ``minimal_ep.run.train.load_data`` returns these first (a tuple, or a named tuple with more fields).
    """
    cfg = cfg.replace(**{"data.data_dir": _data_dir(cfg, data_dir) or "", "data.train_size": 0,
                         "data.test_size": 0})
    key = (cfg.data.dataset, cfg.data.source, cfg.data.data_dir, cfg.data.normalize, cfg.model.dtype)
    if key not in _DATA:
        _DATA[key] = tuple(load_data(cfg))[:5]
    return _DATA[key]


def sample_sets(cfg, n, sets, seed=0, data_dir=None):
    """``sets`` disjoint sets of random training samples, ``n`` in all: a list of (x, y) host pairs.

    x : (n // sets, C, H, W) in [0, 1]; y : (n // sets,) int. The draw depends only on ``seed`` and
    the training set, so every network of a figure sees the same samples.
    """
    x, y, _, _, source = load(cfg, data_dir)
    if n > len(y):
        raise FigureError(f"asked for {n} training samples but {source} has {len(y)}")
    idx = np.random.default_rng(seed).choice(len(y), n, replace=False)
    where = "the embedded MNIST subset" if source == "embedded" else f"MNIST ({shown(source)})"
    return [(x[i], y[i]) for i in np.array_split(idx, sets)], where
