"""Checkpoints: everything a run needs to continue, in one ``.npz`` file, read back with every check.

A checkpoint holds the arrays ``param.<name>`` (the weights ``w1, b1, ...``), ``optim.<name>`` (the
optimiser's state), and the scalars ``epoch`` (completed epochs), ``rng_state`` (the data-shuffling
RNG, JSON), ``config`` (the run's TOML). Since the run-folder guarantees (README, "What is
guaranteed") it also holds ``metrics`` (the per-epoch rows, JSON: the checkpoint is the one commit
of an epoch, ``metrics.jsonl`` is rewritten from it) and ``sign_rng_state`` (the RNG of
``train.random_sign``); checkpoints without them still load.

:func:`read_checkpoint` never lets a damaged or foreign file through: an empty, truncated or
bit-flipped file, a ``.npy`` array, a data-set ``.npz`` or a text file, missing keys, a stored
config that does not validate and non-finite weights all raise :class:`CheckpointError`, one line
naming the file and what is wrong. :func:`check_params` compares the weights with the network the
config describes, :func:`config_differences` a run's config with the one it resumes.
"""
import json
import zipfile
from dataclasses import dataclass

import numpy as np

from . import backend, config as config_mod
from .runs import atomic_write

REQUIRED = ("epoch", "rng_state", "config")
# settings a resumed run may change: how long it runs, where its folder and data are, the device
RESUMABLE = {("train", "epochs"), ("run", "out"), ("run", "backend"), ("data", "data_dir")}


class CheckpointError(ValueError):
    """A file that is not a readable, complete, finite checkpoint, or one that does not fit the run."""


@dataclass
class Checkpoint:
    """The contents of a checkpoint file (host NumPy arrays)."""
    path: str
    config: dict
    params: dict
    optim: dict
    epoch: int
    rng_state: dict
    sign_rng_state: dict = None      # None: written before train.random_sign had its own RNG
    metrics: list = None             # None: written before the metrics lived in the checkpoint


def save_checkpoint(path, net, opt, cfg, epoch, rng, sign_rng=None, metrics=None):
    """Write weights, optimiser state, epochs, RNG states, config and metrics to ``path``, atomically.

    Parameters
    ----------
    path : path-like
    net : network with ``params``
    opt : minimal_ep.optim.SGD
    cfg : dict
        The run's configuration.
    epoch : int
        Completed epochs.
    rng, sign_rng : numpy.random.Generator
        The data-shuffling RNG and (optional) the RNG of the random sign of beta.
    metrics : list of dict, optional
        The per-epoch rows so far.
    """
    arrays = {f"param.{k}": backend.to_numpy(v) for k, v in net.params.items()}
    arrays.update({f"optim.{k}": backend.to_numpy(v) if not isinstance(v, float) else np.float64(v)
                   for k, v in opt.state_dict().items()})
    arrays["epoch"] = np.int64(epoch)
    arrays["rng_state"] = np.array(json.dumps(rng.bit_generator.state))
    arrays["config"] = np.array(config_mod.dumps(cfg))
    if sign_rng is not None:
        arrays["sign_rng_state"] = np.array(json.dumps(sign_rng.bit_generator.state))
    if metrics is not None:
        arrays["metrics"] = np.array(json.dumps(metrics))
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
    try:
        return json.loads(str(data[key]))
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path}: {key} is not valid JSON ({err})") from None


def read_checkpoint(path):
    """Read and check the checkpoint at ``path``.

    Returns
    -------
    Checkpoint

    Raises
    ------
    CheckpointError
        One line naming the file and what is wrong: unreadable, empty, not an .npz, damaged, not a
        minimal-ep checkpoint (missing keys), a stored config that does not validate, weights that
        are not floating-point arrays or hold NaN or infinite values.
    """
    path = str(path)
    data = _read_arrays(path)
    params = {k[len("param."):]: v for k, v in data.items() if k.startswith("param.")}
    missing = [k for k in REQUIRED if k not in data] + ([] if params else ["param.*"])
    if missing:
        raise CheckpointError(f"{path} is not a minimal-ep checkpoint: it lacks {', '.join(missing)} "
                              f"(it holds {', '.join(sorted(data)) or 'nothing'})")
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
    if epoch.shape != () or epoch.dtype.kind not in "iu" or int(epoch) < 0:
        raise CheckpointError(f"checkpoint {path}: epoch is {epoch!r}, not a count of epochs")
    optim = {k[len("optim."):]: (float(v) if v.ndim == 0 else v)
             for k, v in data.items() if k.startswith("optim.")}
    return Checkpoint(path=path, config=cfg, params=params, optim=optim, epoch=int(epoch),
                      rng_state=_json(data, "rng_state", path),
                      sign_rng_state=_json(data, "sign_rng_state", path) if "sign_rng_state" in data else None,
                      metrics=_json(data, "metrics", path) if "metrics" in data else None)


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


def config_differences(stored, current):
    """``["section.key: stored -> current", ...]`` for the settings a resumed run may not change."""
    return [f"{section}.{key}: {stored[section][key]!r} -> {value!r}"
            for section, keys in current.items() for key, value in keys.items()
            if (section, key) not in RESUMABLE and stored[section][key] != value]
