"""Run configuration: one dataclass per section, TOML files, ``--set`` overrides, validation.

The four section dataclasses below are the one place where a setting, its default and its allowed
values are written. Their defaults are exactly ``configs/quickstart.toml``, so ``minimal-ep train``
with no ``--config`` runs the quickstart (a test checks the two agree). A section checks every value
when it is made: ``ModelConfig(eps=2.0)`` raises :class:`ConfigError` naming ``model.eps`` and what
is allowed.

A configuration in use is a :class:`Config`, ``cfg.model.pool``: the object ``build_network`` (its
``model`` section) and the training loop take. :func:`resolve` starts from the defaults (or a given
configuration), applies a TOML file, then ``section.key=value`` overrides, and checks every key (an
unknown section or key, or a bad value, raises :class:`ConfigError` naming the key and what is
allowed) and the rules that tie keys together (:func:`check_consistency`). ``~`` in a path is
expanded. A run writes the result to ``config.toml`` with :func:`dumps` (through ``tomli-w``, which
escapes every string), and ``loads(dumps(cfg)) == cfg``.
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

from ..backend import BACKENDS, DTYPES
from ..pooling import POOLS

RECORD_SECTION = "data_files"   # written by a run into config.toml: the data files it read (not a setting)
# Every record a run writes into config.toml after its settings (none of them is a setting): the data
# files read, the settings changed by `--resume --set` (and from which epoch), and the machine's
# threads and library versions. resolve() and loads() skip them.
RECORD_SECTIONS = (RECORD_SECTION, "changes", "environment")


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


def setting(default, allowed, check, path=False, real=None):
    """A dataclass field holding one setting.

    Parameters
    ----------
    default : bool, int, float, str, list or None
        The default value (lists are copied for every instance).
    allowed : str
        The allowed values in words, for error messages.
    check : callable
        ``check(value) -> bool``.
    path : bool
        The value is a file-system path: ``~`` is expanded.
    real : bool, optional
        The value is a real number: an integer given for it becomes a float. Default: whether the
        default is a float.
    """
    real = isinstance(default, float) if real is None else real
    metadata = {"allowed": allowed, "check": check, "path": path, "real": real}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def choice(default, options, allowed=None):
    """A setting whose value is one of ``options``."""
    return setting(default, allowed or ", ".join(map(str, options)), lambda v: v in options)


# ----------------------------------------------------------------------------- the four sections
class _Section:
    """What every section does when it is made: check each value (:func:`check_value`)."""
    _name = ""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            setattr(self, f.name, check_value(self._name, f.name, getattr(self, f.name)))


@dataclass
class DataConfig(_Section):
    """Which images, how many, and how they are batched."""
    dataset: str = choice("mnist", ("mnist", "fashion-mnist"))
    source: str = choice("embedded", ("embedded", "full"),
                         "embedded (the subset inside the package), full (the official files)")
    data_dir: str = setting("", "a directory holding the official files (source = full only), or \"\" "
                            "to search the usual places", _text, path=True)
    train_size: int = setting(0, "an integer >= 0 (0: all)", _int_at_least(0))
    test_size: int = setting(0, "an integer >= 0 (0: all)", _int_at_least(0))
    validation: int = setting(0, "an integer >= 0 (0: test on the test split; N: on the last N training "
                              "images, held out, and never read the test split)", _int_at_least(0))
    normalize: str = choice("unit", ("unit", "binary"), "unit (x/255), binary (x >= 128)")
    batch_size: int = setting(50, "an integer >= 1", _int_at_least(1))
    shuffle: bool = setting(True, "true, false", _is_bool)
    _name = "data"


@dataclass
class ModelConfig(_Section):
    """The network; field names are ``build_network``'s keywords."""
    spiking: bool = setting(True, "true, false", _is_bool)
    conv_channels: list = setting([16, 32], "a list of integers >= 1", _widths)
    kernel_size: int = setting(3, "an integer >= 1", _int_at_least(1))
    padding: int = setting(0, "an integer >= 0", _int_at_least(0))
    pool: str = choice("avg", tuple(POOLS))
    pool_size: int = setting(2, "an integer >= 1", _int_at_least(1))
    alpha: float = setting(None, "a finite number > 0, or none (left out) for F*F, the exact adjoint",
                           lambda v: v is None or _finite_in(0, math.inf, low_open=True, high_open=True)(v),
                           real=True)
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
    _name = "model"


@dataclass
class TrainConfig(_Section):
    """The learning algorithm, its phases, the optimiser and the seed."""
    algorithm: str = choice("ep", ("ep", "bptt"))
    estimator: str = choice("symmetric", ("symmetric", "one-sided"))
    random_sign: bool = setting(False, "true (estimator = \"one-sided\" only), false", _is_bool)
    beta: float = setting(0.2, "a finite non-zero number", lambda v: _finite(v) and v != 0)
    T_free: int = setting(40, "an integer >= 1", _int_at_least(1))
    T_nudge: int = setting(15, "an integer >= 1", _int_at_least(1))
    T_eval: int = setting(0, "an integer >= 0 (0: T_free)", _int_at_least(0))
    average_last: int = setting(1, "an integer >= 1, at most T_nudge (1: Eq. 11 at the last step, the "
                                "paper's reading; K: at the mean of the last K steps of each phase)",
                                _int_at_least(1))
    epochs: int = setting(6, "an integer >= 1", _int_at_least(1))
    lr: list = setting([0.5, 0.3, 0.2, 0.16], "a finite number >= 0, or a list of them, one per layer",
                       _one_or_list(_finite_in(0, math.inf, high_open=True)))
    lr_schedule: str = choice("linear", ("constant", "linear"),
                              "constant, linear (decays to lr_final times the initial rate)")
    lr_final: float = setting(0.1, "a number in [0, 1]", _finite_in(0, 1))
    momentum: float = setting(0.0, "a number in [0, 1)", _finite_in(0, 1, high_open=True))
    seed: int = setting(0, "an integer >= 0", _int_at_least(0))
    _name = "train"


@dataclass
class RunConfig(_Section):
    """Where the outputs go, which array library computes, and on which path (fast or readable)."""
    out: str = setting("runs/quickstart", "a directory path", lambda v: _text(v) and v != "", path=True)
    backend: str = choice("numpy", BACKENDS)
    fast: bool = setting(True, "true (the fast path, minimal_ep.fast), false (the readable core only)",
                         _is_bool)
    _name = "run"


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "run": RunConfig}


def _default(f):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


# section -> key -> (default, check, allowed values in words): derived from the dataclasses
SCHEMA = {name: {f.name: (_default(f), f.metadata["check"], f.metadata["allowed"])
                 for f in dataclasses.fields(cls)}
          for name, cls in SECTIONS.items()}
_META = {(name, f.name): f.metadata for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)}


@dataclass
class Config:
    """A complete configuration: ``cfg.data``, ``cfg.model``, ``cfg.train``, ``cfg.run``.

    Made by :func:`resolve` or :func:`loads`; ``Config()`` is the quickstart. Checked when made:
    every value (by its section) and the rules that tie keys together (:func:`check_consistency`).
    """
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)

    def __post_init__(self):
        check_consistency(self)

    def to_dict(self):
        """``{section: {key: value}}``, every key (alpha None included)."""
        return dataclasses.asdict(self)

    def get(self, section, key):
        """The value of ``section.key``."""
        return getattr(getattr(self, section), key)

    def replace(self, **sets):
        """A new Config with ``"section.key"`` -> value changed, checked (as :func:`resolve`)."""
        return resolve(base=self, **sets)


def defaults():
    """The complete default configuration (``configs/quickstart.toml``)."""
    return Config()


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
    meta = _META[section, key]
    if meta["real"] and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not check(value):
        raise ConfigError(f"bad value for {section}.{key}: {value!r}; allowed: {allowed}")
    if meta["path"] and value:
        value = os.path.expanduser(value)
    return value


def n_layers(model):
    """The number of weight layers (w1..wK) of the network a :class:`ModelConfig` describes."""
    return len(model.conv_channels) + len(model.hidden) + 1


def check_consistency(cfg):
    """Raise :class:`ConfigError` naming the keys when settings that belong together disagree."""
    d, m, t = cfg.data, cfg.model, cfg.train
    if d.data_dir and d.source != "full":
        raise ConfigError(f"data.data_dir = {d.data_dir!r} needs data.source = \"full\" "
                          f"(data.source is {d.source!r}); the embedded subset reads no directory")
    if t.random_sign and (t.algorithm, t.estimator) != ("ep", "one-sided"):
        raise ConfigError(f"train.random_sign = true needs train.estimator = \"one-sided\" and "
                          f"train.algorithm = \"ep\" (they are {t.estimator!r} and "
                          f"{t.algorithm!r}); the symmetric estimator is the same for either sign")
    if t.average_last > t.T_nudge or (t.estimator == "one-sided" and t.average_last > t.T_free):
        raise ConfigError(f"train.average_last = {t.average_last} is longer than the phases it averages "
                          f"(train.T_nudge = {t.T_nudge}, train.T_free = {t.T_free}); give at most T_nudge")
    K = n_layers(m)
    for section, key in (("train", "lr"), ("model", "init_scale")):
        value = cfg.get(section, key)
        if isinstance(value, list) and len(value) != K:
            raise ConfigError(f"{section}.{key} has {len(value)} values but the network has {K} "
                              f"weight layers ({len(m.conv_channels)} in model.conv_channels, "
                              f"{len(m.hidden)} in model.hidden, 1 output): give one value or {K}")


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
        if section not in RECORD_SECTIONS and not isinstance(keys, dict):
            raise ConfigError(f"config {path}: {section!r} must be a [section]")
    return data


def _file_value(section, key, value):
    """A value read from a TOML file, with the spellings of earlier versions made current:
    ``alpha = 0`` meant F*F (now: no alpha)."""
    if (section, key) == ("model", "alpha") and value == 0 and not isinstance(value, bool):
        return None
    return value


def _build(sections):
    """A :class:`Config` from ``{section: {key: value}}`` (every key present, already checked)."""
    return Config(**{name: SECTIONS[name](**keys) for name, keys in sections.items()})


def resolve(path=None, overrides=(), base=None, **sets):
    """Defaults (or ``base``), then the TOML file at ``path``, then ``overrides``, then ``sets``.

    Parameters
    ----------
    path : str or path-like, optional
        A TOML config file. The records a run writes in it (:data:`RECORD_SECTIONS`) are ignored.
    overrides : sequence of str
        ``"section.key=value"`` strings (the CLI's ``--set``).
    base : Config, optional
        A configuration to start from instead of the defaults (a checkpoint's).
    sets : dict
        ``"section.key"`` -> value; None leaves the key alone (the CLI's ``--epochs`` and friends).

    Returns
    -------
    Config
        Every key of every section, checked.
    """
    sections = (base if base is not None else Config()).to_dict()
    layers = []
    if path is not None:
        for section, keys in read_toml(path).items():
            if section not in RECORD_SECTIONS:
                layers += [(section, k, _file_value(section, k, v)) for k, v in keys.items()]
    layers += [parse_override(o) for o in overrides]
    layers += [tuple(name.split(".", 1)) + (v,) for name, v in sets.items() if v is not None]
    for section, key, value in layers:
        sections[section][key] = check_value(section, key, value)
    return _build(sections)


def dumps(cfg, record=None, changes=None, environment=None):
    """The configuration as TOML text, every string escaped by ``tomli-w``.

    A setting whose value is None (alpha: F*F) is left out, which is how TOML says "none".
    The records, if given, follow the settings (:func:`resolve` and :func:`loads` ignore them):
    ``record`` as a ``[data_files]`` table (which files the run read, see
    :func:`minimal_ep.run.datasets.load_dataset`), ``changes`` as ``[[changes]]`` (the settings a
    resume changed, from which epoch) and ``environment`` as ``[[environment]]`` (threads and
    library versions, from which epoch).
    """
    lines = []
    for section, keys in cfg.to_dict().items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in keys.items() if value is not None]
        lines.append("")
    text = "\n".join(lines)
    if record:
        text += "\n" + tomli_w.dumps({RECORD_SECTION: record})
    for section, rows in (("changes", changes), ("environment", environment)):
        for row in rows or ():              # always [[tables]]: an inline array would join the table above
            text += f"\n[[{section}]]\n" + tomli_w.dumps(row)
    return text


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
    sections = Config().to_dict()
    for section, keys in data.items():
        if section in RECORD_SECTIONS:
            continue
        if not isinstance(keys, dict):
            raise ConfigError(f"{section!r} must be a [section]")
        for k, v in keys.items():
            sections[section][k] = check_value(section, k, _file_value(section, k, v))
    _upgrade(sections)
    return _build(sections)


def _upgrade(sections):
    """Settings that older versions accepted and ignored, made explicit so old checkpoints load.

    Earlier versions ignored ``data_dir`` unless ``source = "full"``, and allowed ``random_sign``
    with the symmetric estimator, where it changes no gradient.
    """
    if sections["data"]["source"] != "full":
        sections["data"]["data_dir"] = ""
    if sections["train"]["estimator"] != "one-sided" or sections["train"]["algorithm"] != "ep":
        sections["train"]["random_sign"] = False
