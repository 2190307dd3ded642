"""Checkpoints: everything a run needs to continue, in one ``.npz`` file, read back with every check.

A checkpoint holds the arrays ``param.<name>`` (the weights ``w1, b1, ...``), ``optim.<name>`` (the
optimiser's state), and the scalars ``epoch`` (completed epochs), ``rng_state`` (the data-shuffling
RNG, JSON), ``config`` (the run's TOML). Since the run-folder guarantees (README, "What is
guaranteed") it also holds ``metrics`` (the per-epoch rows, JSON: the checkpoint is the one commit
of an epoch, ``metrics.jsonl`` is rewritten from it) and ``sign_rng_state`` (the RNG of
``train.random_sign``), and since issue 26 the run's records, JSON: ``data_files`` (every data file
read, with the epochs it was read for), ``changes`` (the settings a resume changed, from which epoch)
and ``environment`` (BLAS threads and library versions, from which epoch). Checkpoints without them
still load.

:func:`read_checkpoint` never lets a damaged, crafted or foreign file through, and checks everything
before the caller writes anything: an empty, truncated or bit-flipped file, a ``.npy`` array, a
data-set ``.npz`` or a text file, missing or unknown keys, a stored config that does not validate,
non-finite weights, an epoch beyond the config's, metrics that are not one row per epoch, an RNG
state that NumPy's PCG64 does not take, or a malformed record all raise :class:`CheckpointError`, one
line naming the file and the field. :func:`check_params` compares the weights with the network the
config describes, :func:`config_differences` a run's config with the one it resumes.
"""
import json
import math
import numbers
import zipfile
from dataclasses import dataclass, field

import numpy as np

from .. import backend
from . import config as config_mod
from .runs import atomic_write

REQUIRED = ("epoch", "rng_state", "config")
RECORDS = ("metrics", "sign_rng_state", "data_files", "changes", "environment")   # JSON, optional
# settings a resumed run may give otherwise: where its folder and data are, the device, the code path
RESUMABLE = {("run", "out"), ("run", "backend"), ("run", "fast"), ("data", "data_dir")}
# settings a resume may change between epochs, explicitly (--resume --set KEY=VALUE), recorded in the
# checkpoint and config.toml: the learning rates (the divergence advice), and the number of epochs
# when the completed epochs keep their learning rates (train.lr_scale)
CHANGEABLE = {("train", "lr"), ("train", "epochs")}
METRIC_KEYS = {"epoch": "an integer", "train_error": "in [0, 1]", "test_error": "in [0, 1]",
               "loss": "a finite number", "seconds": "a finite number >= 0"}
OPTIONAL_METRIC_KEYS = {"samples_per_second": "a finite number >= 0", "lr_scale": "a finite number >= 0",
                        "firing_rate": "in [0, 1]"}
SHA = "0123456789abcdef"


class CheckpointError(ValueError):
    """A file that is not a readable, complete, finite checkpoint, or one that does not fit the run."""


@dataclass
class Checkpoint:
    """The contents of a checkpoint file (host NumPy arrays)."""
    path: str
    config: object                   # a minimal_ep.run.config.Config
    params: dict
    optim: dict
    epoch: int
    rng_state: dict
    sign_rng_state: dict = None      # None: written before train.random_sign had its own RNG
    metrics: list = None             # None: written before the metrics lived in the checkpoint
    data_files: dict = None          # None: written before the data record lived in the checkpoint
    changes: list = field(default_factory=list)
    environment: list = field(default_factory=list)


def save_checkpoint(path, net, opt, cfg, epoch, rng, sign_rng=None, metrics=None, data_files=None,
                    changes=None, environment=None):
    """Write weights, optimiser state, epochs, RNG states, config, metrics and records to ``path``, atomically.

    Parameters
    ----------
    path : path-like
    net : network with ``params``
    opt : minimal_ep.optim.SGD
    cfg : Config
        The run's configuration.
    epoch : int
        Completed epochs.
    rng, sign_rng : numpy.random.Generator
        The data-shuffling RNG and (optional) the RNG of the random sign of beta.
    metrics : list of dict, optional
        The per-epoch rows so far.
    data_files, changes, environment : optional
        The run's records (:func:`minimal_ep.run.train.train` keeps them).
    """
    arrays = {f"param.{k}": backend.to_numpy(v) for k, v in net.params.items()}
    arrays.update({f"optim.{k}": backend.to_numpy(v) if not isinstance(v, float) else np.float64(v)
                   for k, v in opt.state_dict().items()})
    arrays["epoch"] = np.int64(epoch)
    arrays["rng_state"] = np.array(json.dumps(rng.bit_generator.state))
    arrays["config"] = np.array(config_mod.dumps(cfg))
    if sign_rng is not None:
        arrays["sign_rng_state"] = np.array(json.dumps(sign_rng.bit_generator.state))
    for key, value in (("metrics", metrics), ("data_files", data_files), ("changes", changes),
                       ("environment", environment)):
        if value is not None:
            arrays[key] = np.array(json.dumps(value))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _read_arrays(path):
    """{key: array} of the .npz at ``path``; CheckpointError saying why it cannot be one."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err}") from None
    if not head:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    if head == b"\x93NUMPY":
        raise CheckpointError(f"{path} is a single .npy array, not a checkpoint (.npz archive)")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a checkpoint: not an .npz archive (truncated, or another "
                              "kind of file)")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise CheckpointError(f"{path} holds pickled Python objects, which a checkpoint never "
                                  "does; it is not loaded") from None
        raise CheckpointError(f"checkpoint {path} is damaged: {' '.join(str(err).split())}") from None
    except Exception as err:   # a damaged archive raises whatever zipfile/zlib/numpy meet first
        raise CheckpointError(f"checkpoint {path} is damaged ({type(err).__name__}: "
                              f"{' '.join(str(err).split())})") from None


def _json(data, key, path):
    """The JSON text stored under ``key``, parsed; CheckpointError naming the field otherwise."""
    value = data[key]
    if value.shape != () or value.dtype.kind != "U":
        raise CheckpointError(f"checkpoint {path}: {key} is a {value.dtype} array of shape {value.shape}, "
                              "not a JSON text")
    try:
        return json.loads(str(value))
    except ValueError as err:
        raise CheckpointError(f"checkpoint {path}: {key} is not valid JSON ({err})") from None


def _finite(v, low=-math.inf, high=math.inf):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and low <= v <= high


def _integer(v, low=0):
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _sha(v):
    return isinstance(v, str) and len(v) == 64 and all(c in SHA for c in v)


def _rng_state(value, key, path):
    """``value`` if NumPy's PCG64 generator (the runs' RNG) takes it as its state."""
    try:
        np.random.PCG64().state = value
    except (TypeError, ValueError, KeyError, OverflowError) as err:
        raise CheckpointError(f"checkpoint {path}: {key} is not a state of NumPy's PCG64 generator "
                              f"({type(err).__name__}: {err})") from None
    return value


def _metric_problem(row, epoch):
    """What is wrong with metrics row number ``epoch`` (1-based), or None."""
    if not isinstance(row, dict):
        return f"is {type(row).__name__} {row!r}, not a table of metrics"
    unknown = sorted(set(row) - set(METRIC_KEYS) - set(OPTIONAL_METRIC_KEYS))
    if unknown:
        return f"has unknown field(s) {', '.join(map(str, unknown))}"
    missing = [k for k in METRIC_KEYS if k not in row]
    if missing:
        return f"lacks {', '.join(missing)}"
    if not _integer(row["epoch"], 1) or row["epoch"] != epoch:
        return f"has epoch {row['epoch']!r}, expected {epoch} (one row per epoch, in order)"
    ranges = {"train_error": (0, 1), "test_error": (0, 1), "firing_rate": (0, 1), "seconds": (0, math.inf),
              "samples_per_second": (0, math.inf), "lr_scale": (0, math.inf), "loss": (-math.inf, math.inf)}
    for key, (low, high) in ranges.items():
        if key in row and not _finite(row[key], low, high):
            return f"has {key} = {row[key]!r}, not {(METRIC_KEYS | OPTIONAL_METRIC_KEYS)[key]}"
    return None


def check_metrics(rows, epoch, where):
    """``rows`` if they are the metrics of ``epoch`` completed epochs, one valid row each, in order.

    Raises
    ------
    CheckpointError
        Naming ``where`` (the file), the row and the field.
    """
    if not isinstance(rows, list):
        raise CheckpointError(f"{where}: metrics is {type(rows).__name__} {rows!r}, not a list of rows")
    if len(rows) != epoch:
        raise CheckpointError(f"{where}: metrics holds {len(rows)} row(s) but {epoch} epoch(s) are "
                              "completed; a checkpoint has one row per completed epoch")
    for n, row in enumerate(rows, start=1):
        problem = _metric_problem(row, n)
        if problem:
            raise CheckpointError(f"{where}: metrics row {n} {problem}")
    return rows


def _record_problem(name, value):
    """What is wrong with the record ``name`` (data_files, changes, environment), or None."""
    if name == "data_files":
        fields = {"path": lambda v: isinstance(v, str), "sha256": _sha, "content_sha256": _sha,
                  "content": lambda v: isinstance(v, str), "first_epoch": _integer, "last_epoch": _integer}
        if not isinstance(value, dict):
            return "is not a table of files"
        entries = value.items()
        required = ("path", "sha256")
    else:
        if not isinstance(value, list):
            return "is not a list"
        entries = enumerate(value, start=1)
        if name == "changes":
            fields = {"epoch": lambda v: _integer(v, 1), "key": lambda v: isinstance(v, str)
                      and tuple(v.split(".", 1)) in CHANGEABLE, "old": lambda v: True, "new": lambda v: True}
        else:
            fields = {"first_epoch": lambda v: _integer(v, 1), "threads": _integer,
                      "numpy": lambda v: isinstance(v, str), "blas": lambda v: isinstance(v, str),
                      "python": lambda v: isinstance(v, str)}
        required = tuple(fields)
    for where, entry in entries:
        if not isinstance(entry, dict):
            return f"entry {where} is not a table"
        bad = [k for k in entry if k not in fields or not fields[k](entry[k])] + [k for k in required
                                                                               if k not in entry]
        if bad:
            return f"entry {where} has a missing, unknown or invalid field {bad[0]!r}"
        if name == "changes":
            for side in ("old", "new"):
                try:
                    config_mod.check_value(*entry["key"].split(".", 1), entry[side])
                except config_mod.ConfigError as err:
                    return f"entry {where}: {side} value: {err}"
    return None


def check_record(name, value, where):
    """Raise CheckpointError naming ``where`` if the record ``name`` is malformed (see :data:`RECORDS`)."""
    problem = _record_problem(name, value)
    if problem:
        raise CheckpointError(f"{where}: {name} {problem}")


def _checked_fields(data, path):
    """Refuse a key that no checkpoint holds, naming it."""
    known = set(REQUIRED) | set(RECORDS)
    foreign = sorted(k for k in data if k not in known and not k.startswith(("param.", "optim.")))
    if foreign:
        raise CheckpointError(f"checkpoint {path}: unknown field {foreign[0]!r}"
                              + (f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else "")
                              + "; not a minimal-ep checkpoint, or a modified one")


def _optim(data, path):
    """The optimiser state: ``scale`` (a finite number >= 0) and finite ``velocity.*`` arrays."""
    optim = {}
    for key, v in data.items():
        if not key.startswith("optim."):
            continue
        name = key[len("optim."):]
        if name == "scale":
            if v.shape != () or v.dtype.kind not in "fiu" or not _finite(float(v), 0):
                raise CheckpointError(f"checkpoint {path}: {key} is {v!r}, not a finite number >= 0")
            optim[name] = float(v)
        elif name.startswith("velocity.") and v.dtype.kind == "f" and bool(np.isfinite(v).all()):
            optim[name] = v
        else:
            raise CheckpointError(f"checkpoint {path}: {key} is not an optimiser field (scale, or a finite "
                                  "floating-point velocity.<param>)")
    return optim


def read_checkpoint(path):
    """Read and check the checkpoint at ``path``, every field, before anything is written.

    Returns
    -------
    Checkpoint

    Raises
    ------
    CheckpointError
        One line naming the file and what is wrong: unreadable, empty, not an .npz, damaged, not a
        minimal-ep checkpoint (missing or unknown keys), a stored config that does not validate,
        weights that are not floating-point arrays or hold NaN or infinite values, an epoch that is
        not a count within the config's ``train.epochs``, an optimiser field, metrics, RNG state or
        record of the wrong type or range.
    """
    path = str(path)
    data = _read_arrays(path)
    params = {k[len("param."):]: v for k, v in data.items() if k.startswith("param.")}
    missing = [k for k in REQUIRED if k not in data] + ([] if params else ["param.*"])
    if missing:
        raise CheckpointError(f"{path} is not a minimal-ep checkpoint: it lacks {', '.join(missing)} "
                              f"(it holds {', '.join(sorted(data)) or 'nothing'})")
    _checked_fields(data, path)
    if data["config"].shape != () or data["config"].dtype.kind != "U":
        raise CheckpointError(f"checkpoint {path}: config is not a TOML text")
    try:
        cfg = config_mod.loads(str(data["config"]))
    except config_mod.ConfigError as err:
        raise CheckpointError(f"checkpoint {path}: its stored config is invalid: {err}") from None
    for name, value in params.items():
        if value.dtype.kind != "f":
            raise CheckpointError(f"checkpoint {path}: param.{name} is {value.dtype}, not floating point")
        bad = int(value.size - np.count_nonzero(np.isfinite(value)))
        if bad:
            raise CheckpointError(f"checkpoint {path}: param.{name} has {bad} non-finite values "
                                  "(NaN or infinite); these weights cannot be used")
    epoch = data["epoch"]
    if epoch.shape != () or epoch.dtype.kind not in "iu" or not 0 <= int(epoch) <= cfg.train.epochs:
        raise CheckpointError(f"checkpoint {path}: epoch is {epoch!r}, not a count of completed epochs "
                              f"(0 to its config's train.epochs = {cfg.train.epochs})")
    epoch = int(epoch)
    records = {key: _json(data, key, path) for key in RECORDS if key in data}
    for key in ("rng_state", "sign_rng_state"):
        if key in data:
            records[key] = _rng_state(_json(data, key, path), key, path)
    if "metrics" in records:
        check_metrics(records["metrics"], epoch, f"checkpoint {path}")
    for key in ("data_files", "changes", "environment"):
        if key in records:
            check_record(key, records[key], f"checkpoint {path}")
    return Checkpoint(path=path, config=cfg, params=params, optim=_optim(data, path), epoch=epoch,
                      rng_state=records["rng_state"], sign_rng_state=records.get("sign_rng_state"),
                      metrics=records.get("metrics"), data_files=records.get("data_files"),
                      changes=records.get("changes", []), environment=records.get("environment", []))


def load_checkpoint(path):
    """(config, params, optimiser state, completed epochs, rng state) of a checked checkpoint."""
    ckpt = read_checkpoint(path)
    return ckpt.config, ckpt.params, ckpt.optim, ckpt.epoch, ckpt.rng_state


def check_params(ckpt, expected):
    """Raise CheckpointError unless ``ckpt.params`` has exactly the names and shapes of ``expected``.

    ``expected`` is a network's ``params`` (built from ``ckpt.config``, or from the run's config).
    """
    have, want = set(ckpt.params), set(expected)
    problems = [f"missing {', '.join('param.' + k for k in sorted(want - have))}"] if want - have else []
    if have - want:
        problems.append(f"unexpected {', '.join('param.' + k for k in sorted(have - want))}")
    problems += [f"param.{k} has shape {ckpt.params[k].shape}, the network needs {tuple(expected[k].shape)}"
                 for k in sorted(have & want) if ckpt.params[k].shape != tuple(expected[k].shape)]
    if problems:
        raise CheckpointError(f"checkpoint {ckpt.path} does not fit the network of its config: "
                              + "; ".join(problems))


def check_optim(ckpt, state):
    """Raise CheckpointError unless ``ckpt.optim`` has the keys and shapes of ``state`` (an optimiser's)."""
    if set(ckpt.optim) != set(state) or any(np.shape(ckpt.optim[k]) != np.shape(state[k]) for k in state):
        raise CheckpointError(f"checkpoint {ckpt.path}: its optimiser state ({', '.join(sorted(ckpt.optim))}) "
                              f"does not fit this run's optimiser ({', '.join(sorted(state))})")


def config_differences(stored, current, allowed=RESUMABLE):
    """``["section.key: stored -> current", ...]`` for the settings that differ, except ``allowed``."""
    return [f"{section}.{key}: {stored.get(section, key)!r} -> {value!r}"
            for section, keys in current.to_dict().items() for key, value in keys.items()
            if (section, key) not in allowed and stored.get(section, key) != value]
