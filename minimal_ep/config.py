"""Run configuration: TOML files, ``--set section.key=value`` overrides, and validation.

A configuration has four sections. Every key has a type, a default and, where it matters, a set
of allowed values; an unknown section or key, or a bad value, raises :class:`ConfigError` naming
the key and what is allowed. ``resolve`` returns the complete configuration (defaults filled in),
which a run writes to ``config.toml`` in its output directory.
"""
try:
    import tomllib
except ModuleNotFoundError:            # Python 3.10
    import tomli as tomllib

from .backend import BACKENDS, DTYPES


class ConfigError(ValueError):
    """A configuration key that does not exist or a value that is not allowed."""


def _pos_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _nonneg_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _ints(v):
    return isinstance(v, list) and all(_pos_int(c) for c in v)


def _nums(v):
    return _num(v) or (isinstance(v, list) and len(v) > 0 and all(_num(c) for c in v))


# section -> key -> (default, check, description of the allowed values)
SCHEMA = {
    "data": {
        "dataset": ("mnist", lambda v: v in ("mnist", "fashion-mnist"), "mnist, fashion-mnist"),
        "source": ("embedded", lambda v: v in ("embedded", "full"),
                   "embedded (the subset inside the package), full (the official files)"),
        "data_dir": ("", lambda v: isinstance(v, str), "a directory path, or \"\" to search"),
        "train_size": (0, _nonneg_int, "an integer >= 0 (0: all)"),
        "test_size": (0, _nonneg_int, "an integer >= 0 (0: all)"),
        "normalize": ("unit", lambda v: v in ("unit", "binary"), "unit (x/255), binary (x >= 128)"),
        "batch_size": (50, _pos_int, "an integer >= 1"),
        "shuffle": (True, lambda v: isinstance(v, bool), "true, false"),
    },
    "model": {
        "spiking": (True, lambda v: isinstance(v, bool), "true, false"),
        "conv_channels": ([16, 32], _ints, "a list of integers >= 1"),
        "kernel_size": (3, _pos_int, "an integer >= 1"),
        "padding": (0, _nonneg_int, "an integer >= 0"),
        "pool": ("avg", lambda v: v in ("avg", "max"), "avg, max"),
        "pool_size": (2, _pos_int, "an integer >= 1"),
        "alpha": (0.0, lambda v: _num(v) and v >= 0, "a number > 0, or 0 for F*F"),
        "hidden": ([128], _ints, "a list of integers >= 1"),
        "loss": ("mse", lambda v: v in ("mse", "ce"), "mse, ce"),
        "eps": (0.3, lambda v: _num(v) and 0 < v <= 1, "a number in (0, 1]"),
        "lam": (0.3, lambda v: _num(v) and 0 < v <= 1, "a number in (0, 1]"),
        "v_th": (0.5, _num, "a number"),
        "surrogate_width": (1.0, lambda v: _num(v) and v > 0, "a number > 0"),
        "init_scale": (1.0, lambda v: _nums(v) and min(v if isinstance(v, list) else [v]) > 0,
                       "a number > 0 or a list of them, one per weight"),
        "dtype": ("float32", lambda v: v in DTYPES, ", ".join(DTYPES)),
    },
    "train": {
        "algorithm": ("ep", lambda v: v in ("ep", "bptt"), "ep, bptt"),
        "estimator": ("symmetric", lambda v: v in ("symmetric", "one-sided"), "symmetric, one-sided"),
        "random_sign": (False, lambda v: isinstance(v, bool), "true, false"),
        "beta": (0.2, lambda v: _num(v) and v != 0, "a non-zero number"),
        "T_free": (40, _pos_int, "an integer >= 1"),
        "T_nudge": (15, _pos_int, "an integer >= 1"),
        "T_eval": (0, _nonneg_int, "an integer >= 0 (0: T_free)"),
        "epochs": (10, _pos_int, "an integer >= 1"),
        "lr": ([0.5, 0.3, 0.2, 0.16], lambda v: _nums(v) and min(v if isinstance(v, list) else [v]) >= 0,
               "a number >= 0 or a list, one per layer"),
        "lr_schedule": ("constant", lambda v: v in ("constant", "linear"),
                        "constant, linear (decays to lr_final times the initial rate)"),
        "lr_final": (0.1, lambda v: _num(v) and 0 <= v <= 1, "a number in [0, 1]"),
        "momentum": (0.0, lambda v: _num(v) and 0 <= v < 1, "a number in [0, 1)"),
        "seed": (0, _nonneg_int, "an integer >= 0"),
    },
    "run": {
        "out": ("runs/quickstart", lambda v: isinstance(v, str) and v != "", "a directory path"),
        "backend": ("numpy", lambda v: v in BACKENDS, ", ".join(BACKENDS)),
    },
}


def defaults():
    """The complete default configuration."""
    return {sec: {k: spec[0] for k, spec in keys.items()} for sec, keys in SCHEMA.items()}


def _check(section, key, value):
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
    return value


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


def resolve(path=None, overrides=(), **sets):
    """Defaults, then the TOML file at ``path``, then ``overrides`` ("section.key=value"), then ``sets``.

    ``sets`` maps "section.key" to a value (the CLI's shortcuts such as ``--epochs``).
    """
    cfg = defaults()
    layers = []
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as err:
            raise ConfigError(f"cannot read config {path}: {err.strerror}") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config {path} is not valid TOML: {err}") from None
        for section, keys in data.items():
            if not isinstance(keys, dict):
                raise ConfigError(f"config {path}: {section!r} must be a [section]")
            layers += [(section, k, v) for k, v in keys.items()]
    layers += [parse_override(o) for o in overrides]
    layers += [tuple(name.split(".", 1)) + (v,) for name, v in sets.items() if v is not None]
    for section, key, value in layers:
        cfg.setdefault(section, {})
        cfg[section][key] = _check(section, key, value)
    return cfg


def dumps(cfg):
    """The configuration as TOML text (scalars and flat lists only, which is all the schema has)."""
    def fmt(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(fmt(c) for c in v) + "]"
        return repr(v)
    lines = []
    for section, keys in cfg.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {fmt(v)}" for k, v in keys.items()]
        lines.append("")
    return "\n".join(lines)


def loads(text):
    """Parse and validate TOML text (a checkpoint's stored config)."""
    cfg = defaults()
    for section, keys in tomllib.loads(text).items():
        for k, v in keys.items():
            cfg[section][k] = _check(section, k, v)
    return cfg
