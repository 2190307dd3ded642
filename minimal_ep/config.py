"""Run configuration: one dataclass per section, TOML files, ``--set`` overrides, validation.

The four dataclasses below are the one place where a setting, its default and its allowed values
are written. Their defaults are exactly ``configs/quickstart.toml``, so ``minimal-ep train`` with no
``--config`` runs the quickstart (a test checks the two agree). ``ModelConfig``'s field names are
``build_network``'s keyword names.

A configuration in use is a plain dict of dicts, ``cfg["model"]["pool"]``: :func:`resolve` starts
from the defaults, applies a TOML file, then ``section.key=value`` overrides, and checks every key
(an unknown section or key, or a bad value, raises :class:`ConfigError` naming the key and what is
allowed) and the rules that tie keys together (:func:`check_consistency`). ``~`` in a path is
expanded. A run writes the result to ``config.toml`` with :func:`dumps` (through ``tomli-w``, which
escapes every string), and ``loads(dumps(cfg)) == cfg`` for any string values.
"""
import dataclasses
import math
import os
from dataclasses import dataclass

try:
    import tomllib
except ModuleNotFoundError:            # Python 3.10
    import tomli as tomllib
import tomli_w

from .backend import BACKENDS, DTYPES
from .pooling import POOLS

RECORD_SECTION = "data_files"   # written by a run into config.toml: the data files it read (not a setting)


class ConfigError(ValueError):
    """A configuration key that does not exist, a value that is not allowed, or keys that disagree."""


# ----------------------------------------------------------------------------- value checks

def _int_at_least(low):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def _finite(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _finite_in(low, high, low_open=False, high_open=False):
    """A check: a finite number in the interval [low, high], ends open where asked."""
    def check(v):
        return (_finite(v) and (v > low if low_open else v >= low)
                and (v < high if high_open else v <= high))
    return check


def _one_or_list(check):
    """A check: one value passing ``check``, or a non-empty list of them."""
    return lambda v: check(v) or (isinstance(v, list) and len(v) > 0 and all(check(c) for c in v))


def _widths(v):
    return isinstance(v, list) and all(_int_at_least(1)(c) for c in v)


def _text(v):
    return isinstance(v, str)


def _is_bool(v):
    return isinstance(v, bool)


def setting(default, allowed, check, path=False):
    """A dataclass field holding one setting.

    Parameters
    ----------
    default : bool, int, float, str or list
        The default value (lists are copied for every instance).
    allowed : str
        The allowed values in words, for error messages.
    check : callable
        ``check(value) -> bool``.
    path : bool
        The value is a file-system path: ``~`` is expanded.
    """
    metadata = {"allowed": allowed, "check": check, "path": path}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def choice(default, options, allowed=None):
    """A setting whose value is one of ``options``."""
    return setting(default, allowed or ", ".join(map(str, options)), lambda v: v in options)


# ----------------------------------------------------------------------------- the four sections

@dataclass
class DataConfig:
    """Which images, how many, and how they are batched."""
    dataset: str = choice("mnist", ("mnist", "fashion-mnist"))
    source: str = choice("embedded", ("embedded", "full"),
                         "embedded (the subset inside the package), full (the official files)")
    data_dir: str = setting("", "a directory holding the official files (source = full only), or \"\" "
                            "to search the usual places", _text, path=True)
    train_size: int = setting(0, "an integer >= 0 (0: all)", _int_at_least(0))
    test_size: int = setting(0, "an integer >= 0 (0: all)", _int_at_least(0))
    normalize: str = choice("unit", ("unit", "binary"), "unit (x/255), binary (x >= 128)")
    batch_size: int = setting(50, "an integer >= 1", _int_at_least(1))
    shuffle: bool = setting(True, "true, false", _is_bool)


@dataclass
class ModelConfig:
    """The network; field names are ``build_network``'s keywords (alpha 0 there means None: F*F)."""
    spiking: bool = setting(True, "true, false", _is_bool)
    conv_channels: list = setting([16, 32], "a list of integers >= 1", _widths)
    kernel_size: int = setting(3, "an integer >= 1", _int_at_least(1))
    padding: int = setting(0, "an integer >= 0", _int_at_least(0))
    pool: str = choice("avg", tuple(POOLS))
    pool_size: int = setting(2, "an integer >= 1", _int_at_least(1))
    alpha: float = setting(0.0, "a finite number > 0, or 0 for F*F", _finite_in(0, math.inf, high_open=True))
    hidden: list = setting([128], "a list of integers >= 1", _widths)
    loss: str = choice("mse", ("mse", "ce"))
    eps: float = setting(0.3, "a number in (0, 1]", _finite_in(0, 1, low_open=True))
    lam: float = setting(0.3, "a number in (0, 1]", _finite_in(0, 1, low_open=True))
    v_th: float = setting(0.5, "a finite number", _finite)
    surrogate_width: float = setting(1.0, "a finite number > 0",
                                     _finite_in(0, math.inf, low_open=True, high_open=True))
    init_scale: float = setting(1.0, "a finite number > 0, or a list of them, one per weight",
                                _one_or_list(_finite_in(0, math.inf, low_open=True, high_open=True)))
    dtype: str = choice("float32", DTYPES)


@dataclass
class TrainConfig:
    """The learning algorithm, its phases, the optimiser and the seed."""
    algorithm: str = choice("ep", ("ep", "bptt"))
    estimator: str = choice("symmetric", ("symmetric", "one-sided"))
    random_sign: bool = setting(False, "true (estimator = \"one-sided\" only), false", _is_bool)
    beta: float = setting(0.2, "a finite non-zero number", lambda v: _finite(v) and v != 0)
    T_free: int = setting(40, "an integer >= 1", _int_at_least(1))
    T_nudge: int = setting(15, "an integer >= 1", _int_at_least(1))
    T_eval: int = setting(0, "an integer >= 0 (0: T_free)", _int_at_least(0))
    epochs: int = setting(6, "an integer >= 1", _int_at_least(1))
    lr: list = setting([0.5, 0.3, 0.2, 0.16], "a finite number >= 0, or a list of them, one per layer",
                       _one_or_list(_finite_in(0, math.inf, high_open=True)))
    lr_schedule: str = choice("linear", ("constant", "linear"),
                              "constant, linear (decays to lr_final times the initial rate)")
    lr_final: float = setting(0.1, "a number in [0, 1]", _finite_in(0, 1))
    momentum: float = setting(0.0, "a number in [0, 1)", _finite_in(0, 1, high_open=True))
    seed: int = setting(0, "an integer >= 0", _int_at_least(0))


@dataclass
class RunConfig:
    """Where the outputs go and which array library computes."""
    out: str = setting("runs/quickstart", "a directory path", lambda v: _text(v) and v != "", path=True)
    backend: str = choice("numpy", BACKENDS)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "run": RunConfig}

# section -> key -> (default, check, allowed values in words): derived from the dataclasses
SCHEMA = {name: {f.name: (getattr(cls(), f.name), f.metadata["check"], f.metadata["allowed"])
                 for f in dataclasses.fields(cls)}
          for name, cls in SECTIONS.items()}
_PATHS = {(name, f.name) for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)
          if f.metadata["path"]}


def defaults():
    """The complete default configuration (``configs/quickstart.toml``) as a dict of dicts."""
    return {name: dataclasses.asdict(cls()) for name, cls in SECTIONS.items()}


def check_value(section, key, value):
    """Return ``value`` checked (ints become floats where the default is a float, ``~`` expanded).

    Raises
    ------
    ConfigError
        Naming the section or key and the allowed values.
    """
    if section not in SCHEMA:
        raise ConfigError(f"unknown config section [{section}]; allowed: {', '.join(SCHEMA)}")
    if key not in SCHEMA[section]:
        raise ConfigError(f"unknown config key {section}.{key}; allowed in [{section}]: "
                          f"{', '.join(SCHEMA[section])}")
    default, check, allowed = SCHEMA[section][key]
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not check(value):
        raise ConfigError(f"bad value for {section}.{key}: {value!r}; allowed: {allowed}")
    if (section, key) in _PATHS and value:
        value = os.path.expanduser(value)
    return value


def n_layers(model):
    """The number of weight layers (w1..wK) of the network a ``model`` section describes."""
    return len(model["conv_channels"]) + len(model["hidden"]) + 1


def check_consistency(cfg):
    """Raise :class:`ConfigError` naming the keys when settings that belong together disagree."""
    d, m, t = cfg["data"], cfg["model"], cfg["train"]
    if d["data_dir"] and d["source"] != "full":
        raise ConfigError(f"data.data_dir = {d['data_dir']!r} needs data.source = \"full\" "
                          f"(data.source is {d['source']!r}); the embedded subset reads no directory")
    if t["random_sign"] and (t["algorithm"], t["estimator"]) != ("ep", "one-sided"):
        raise ConfigError(f"train.random_sign = true needs train.estimator = \"one-sided\" and "
                          f"train.algorithm = \"ep\" (they are {t['estimator']!r} and "
                          f"{t['algorithm']!r}); the symmetric estimator is the same for either sign")
    K = n_layers(m)
    for section, key in (("train", "lr"), ("model", "init_scale")):
        value = cfg[section][key]
        if isinstance(value, list) and len(value) != K:
            raise ConfigError(f"{section}.{key} has {len(value)} values but the network has {K} "
                              f"weight layers ({len(m['conv_channels'])} in model.conv_channels, "
                              f"{len(m['hidden'])} in model.hidden, 1 output): give one value or {K}")


def parse_override(text):
    """``"section.key=value"`` -> (section, key, value); the value is read as TOML, else as a string."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"--set takes section.key=value, got {text!r}")
    name, raw = text.split("=", 1)
    section, key = name.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return section, key, value


def read_toml(path):
    """The tables of the TOML file at ``path``; ConfigError naming the file if it cannot be read."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror or err}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"config {path} is not valid TOML: {err}") from None
    for section, keys in data.items():
        if not isinstance(keys, dict):
            raise ConfigError(f"config {path}: {section!r} must be a [section]")
    return data


def resolve(path=None, overrides=(), base=None, **sets):
    """Defaults (or ``base``), then the TOML file at ``path``, then ``overrides``, then ``sets``.

    Parameters
    ----------
    path : str or path-like, optional
        A TOML config file. A ``[data_files]`` table in it (the record a run writes) is ignored.
    overrides : sequence of str
        ``"section.key=value"`` strings (the CLI's ``--set``).
    base : dict, optional
        A complete configuration to start from instead of the defaults (a checkpoint's).
    sets : dict
        ``"section.key"`` -> value; None leaves the key alone (the CLI's ``--epochs`` and friends).

    Returns
    -------
    cfg : dict of dicts
        Every key of every section, checked.
    """
    cfg = defaults() if base is None else {s: dict(keys) for s, keys in base.items()}
    layers = []
    if path is not None:
        for section, keys in read_toml(path).items():
            if section != RECORD_SECTION:
                layers += [(section, k, v) for k, v in keys.items()]
    layers += [parse_override(o) for o in overrides]
    layers += [tuple(name.split(".", 1)) + (v,) for name, v in sets.items() if v is not None]
    for section, key, value in layers:
        cfg[section][key] = check_value(section, key, value)
    check_consistency(cfg)
    return cfg


def dumps(cfg, record=None):
    """The configuration as TOML text, every string escaped by ``tomli-w``.

    ``record``, if given, is written as a ``[data_files]`` table after the settings (which files
    the run read, see :func:`minimal_ep.datasets.load_dataset`); :func:`resolve` ignores it.
    """
    lines = []
    for section, keys in cfg.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in keys.items()]
        lines.append("")
    text = "\n".join(lines)
    return text + ("\n" + tomli_w.dumps({RECORD_SECTION: record}) if record else "")


def _toml_value(value):
    """One value as TOML, by tomli-w; a list on one line (``[0.5, 0.3]``), as people write them."""
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value})[len("v = "):-1]


def loads(text):
    """Parse and check TOML text (a checkpoint's stored config); the defaults fill missing keys."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"not valid TOML: {err}") from None
    cfg = defaults()
    for section, keys in data.items():
        if section == RECORD_SECTION:
            continue
        if not isinstance(keys, dict):
            raise ConfigError(f"{section!r} must be a [section]")
        for k, v in keys.items():
            cfg[section][k] = check_value(section, k, v)
    _upgrade(cfg)
    check_consistency(cfg)
    return cfg


def _upgrade(cfg):
    """Settings that older versions accepted and ignored, made explicit so old checkpoints load.

    Earlier versions ignored ``data_dir`` unless ``source = "full"``, and allowed ``random_sign``
    with the symmetric estimator, where it changes no gradient.
    """
    if cfg["data"]["source"] != "full":
        cfg["data"]["data_dir"] = ""
    if cfg["train"]["estimator"] != "one-sided" or cfg["train"]["algorithm"] != "ep":
        cfg["train"]["random_sign"] = False
