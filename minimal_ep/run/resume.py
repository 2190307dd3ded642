"""A run's record of itself, and what a resume may change: the checks behind ``train --resume``.

Besides its arrays a run carries, from epoch to epoch, a :class:`RunRecord`: the per-epoch metrics,
every data file it read (path and SHA-256 of the file and of its content, with the epochs it was read
for), the settings changed by a resume (with the epoch they apply from) and the BLAS threads and
library versions of each stretch of epochs. The records live in the checkpoint and in ``config.toml``.

A resume takes its settings from that record (the checkpoint, or the ``config.toml`` of a first start
that completed no epoch). Where the run's files are or which device computes may differ
(``RESUMABLE``); the learning rates and the number of epochs may change between epochs
(``CHANGEABLE``), recorded, when no completed epoch's learning rate changes (:func:`lr_scale`); any
other difference is refused, naming the keys, before anything is written (:func:`start_run`). The
run's data must be the same, by the SHA-256 of each file's content; other threads or library versions
are recorded with a one-line warning.
"""
import dataclasses
import pathlib
import platform

import numpy as np

from .. import backend
from . import config as config_mod
from .checkpoints import (CHANGEABLE, RESUMABLE, CheckpointError, check_metrics, check_optim, check_params,
                          check_record, config_differences, read_checkpoint)
from .idx_files import stem_of
from .runs import atomic_write, read_metrics


@dataclasses.dataclass
class RunRecord:
    """What a run carries from one epoch to the next besides its arrays: the rows and the records."""
    metrics: list        # one row per completed epoch
    saved: int           # epochs in the checkpoint on disk (0: none)
    data_files: dict     # every data file read, with the epochs it was read for
    changes: list        # settings changed by a resume: {"epoch", "key", "old", "new"}
    environment: list    # BLAS threads and library versions: {"first_epoch", "threads", ...}


def lr_scale(cfg, epoch):
    """The schedule's factor on every learning rate in ``epoch`` (0-based)."""
    t = cfg.train
    if t.lr_schedule == "constant" or t.epochs == 1:
        return 1.0
    return 1.0 - (1.0 - t.lr_final) * epoch / (t.epochs - 1)


def restore(ckpt, net, opt, rng, sign_rng):
    """Load ``ckpt`` (a :class:`~minimal_ep.run.checkpoints.Checkpoint`) into the run; CheckpointError if
    it does not fit the network or the optimiser."""
    check_params(ckpt, net.params)
    check_optim(ckpt, opt.state_dict())
    for k, v in ckpt.params.items():
        net.params[k][...] = backend.to_device(v)
    opt.load_state_dict(ckpt.optim)
    rng.bit_generator.state = ckpt.rng_state
    if ckpt.sign_rng_state is not None:
        sign_rng.bit_generator.state = ckpt.sign_rng_state


# ----------------------------------------------------------------------------- what a resume may change
def epochs_problem(recorded, cfg, done):
    """Why ``cfg.train.epochs`` may not replace ``recorded``'s after ``done`` epochs, or None.

    The schedule's length is fixed at the start: another ``train.epochs`` is allowed only when every
    completed epoch keeps its learning-rate factor (:func:`lr_scale`): always with a constant
    schedule, with the linear one only before the second epoch.
    """
    if cfg.train.epochs < done:
        return f"{done} epochs are already done"
    changed = [e + 1 for e in range(done) if lr_scale(recorded, e) != lr_scale(cfg, e)]
    if changed:
        return (f"the learning rates of completed epoch(s) {', '.join(map(str, changed))} would change "
                f"(train.lr_schedule = {cfg.train.lr_schedule!r}); the schedule's length is fixed when a "
                "run starts: stop early with --until instead")
    return None


def settings_changes(recorded, cfg, done, where):
    """The recorded changes a resume after ``done`` epochs makes from ``recorded`` (the run's settings)
    to ``cfg``: ``[{"epoch", "key", "old", "new"}]`` for the :data:`CHANGEABLE` keys.

    Raises
    ------
    CheckpointError
        Naming every other key that differs (and why a changeable one may not), and ``where``.
    """
    changes, refused = [], []
    for section, keys in cfg.to_dict().items():
        for key, new in keys.items():
            old = recorded.get(section, key)
            if (section, key) in RESUMABLE or old == new:
                continue
            problem = epochs_problem(recorded, cfg, done) if (section, key) == ("train", "epochs") else None
            if (section, key) in CHANGEABLE and problem is None:
                changes.append({"epoch": done + 1, "key": f"{section}.{key}", "old": old, "new": new})
            else:
                refused.append(f"{section}.{key}: {old!r} -> {new!r}" + (f" ({problem})" if problem else ""))
    if refused:
        raise CheckpointError(f"--resume: {where} was trained with other settings: " + "; ".join(refused)
                              + ". A resume may change only train.lr and train.epochs (--resume --set "
                              "KEY=VALUE, recorded); resume with the run's settings, or start a new run "
                              "(--overwrite or another --out)")
    return changes


def undo(cfg, changes):
    """The settings before ``changes`` (the run's record), last change first: [cfg, ..., the start's]."""
    history = [cfg]
    for change in reversed(changes):
        history.append(history[-1].replace(**{change["key"]: change["old"]}))
    return history


def check_config_file(out, recorded, changes):
    """Refuse an ``out/config.toml`` that holds other settings than the run's record (an edit by hand).

    It may lag the checkpoint by one commit (a run stopped between the two renames), so any of the
    run's settings since the start (:func:`undo`) is accepted.
    """
    path = pathlib.Path(out) / "config.toml"
    if not path.exists():
        return
    try:
        written = config_mod.resolve(path)
    except config_mod.ConfigError as err:
        raise CheckpointError(f"--resume: {err}; {path} records the run's settings: repair it, or delete "
                              "it (it is rewritten from the checkpoint)") from None
    if any(not config_differences(past, written) for past in undo(recorded, changes)):
        return
    raise CheckpointError(f"--resume: {path} has other settings than the run's checkpoint: "
                          + "; ".join(config_differences(recorded, written)) + " (checkpoint -> file). "
                          "A resume takes its settings from the checkpoint; change train.lr or train.epochs "
                          "with --resume --set KEY=VALUE (recorded), and restore the file or delete it "
                          "(it is rewritten from the checkpoint)")


def read_first_start(out):
    """The settings and records in ``out/config.toml`` of a run stopped before its first epoch."""
    path = pathlib.Path(out) / "config.toml"
    try:
        recorded = config_mod.resolve(path)
        tables = config_mod.read_toml(path)
    except config_mod.ConfigError as err:
        raise CheckpointError(f"--resume: {err}; {path} holds the settings of the run's first start: "
                              "repair it, or start again with --overwrite") from None
    records = {key: tables.get(key, {} if key == config_mod.RECORD_SECTION else [])
               for key in config_mod.RECORD_SECTIONS}
    for key, value in records.items():
        check_record(key, value, str(path))
    return recorded, records


def check_same_data(record, files, where):
    """Refuse data files whose content is not the one the run's ``record`` says it trained on."""
    for name, now in files.items():
        before = [e for e in (record or {}).values() if stem_of(e["path"]) == stem_of(name)]
        contents = {e["content_sha256"] for e in before if "content_sha256" in e}
        same_name = {e["sha256"] for e in before if pathlib.Path(e["path"]).name == name}
        if (contents and now["content_sha256"] not in contents) or (
                not contents and same_name and now["sha256"] not in same_name):
            raise CheckpointError(
                f"--resume: {now['path']} is not the data the run trained on: its content has SHA-256 "
                f"{now['content_sha256']}, the run's record ({where}) has "
                f"{', '.join(sorted(contents or same_name))} for {stem_of(name)}; resume with the run's "
                "data, or start a new run (--overwrite or another --out)")


def updated_record(record, files, epoch):
    """The run's record of data files with ``files`` read for ``epoch`` (0: at the start, no epoch yet).

    A file already recorded (same path and SHA-256) gets ``last_epoch = epoch``; another one (the data
    moved, or another copy of the same content) is added beside it, from this epoch on: the record
    keeps every file each epoch read.
    """
    record = {k: dict(v) for k, v in (record or {}).items()}
    for name, entry in files.items():
        key = next((k for k, e in record.items()
                    if e["path"] == entry["path"] and e["sha256"] == entry["sha256"]), None)
        if key is None:
            key = name if name not in record else f"{name} (from epoch {max(epoch, 1)})"
            record[key] = {**entry, "first_epoch": max(epoch, 1)}
        if epoch:
            record[key]["last_epoch"] = epoch
    return record


def environment(first_epoch):
    """This process's BLAS threads and library versions, as a record entry from ``first_epoch`` on."""
    from threadpoolctl import threadpool_info
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return {"first_epoch": first_epoch, "threads": int(max((i.get("num_threads") or 0 for i in blas), default=0)),
            "numpy": np.__version__, "python": platform.python_version(),
            "blas": ", ".join(f"{i.get('internal_api')} {i.get('version')}" for i in blas) or "none found"}


def noted_environment(record, first_epoch, out, log):
    """``record`` with this process's entry added if it differs from the last one, which is warned of."""
    now = environment(first_epoch)
    if record:
        last = record[-1]
        if all(last[k] == now[k] for k in now if k != "first_epoch"):
            return record
        log(f"warning: {out} was trained up to epoch {first_epoch - 1} with {last['threads']} BLAS thread(s), "
            f"NumPy {last['numpy']}, {last['blas']}; this resume has {now['threads']}, NumPy {now['numpy']}, "
            f"{now['blas']}: the numbers may depart from an uninterrupted run (minimal-ep --threads "
            f"{last['threads']} keeps the threads)")
    return record + [now]


def start_run(out, cfg, net, opt, rng, sign_rng, data, resume, log):
    """Read and check what the run continues from; return its :class:`RunRecord`. Writes nothing.

    With ``resume``: the checkpoint (loaded into ``net``, ``opt`` and the RNGs), else the config.toml
    of a first start that completed no epoch, else nothing. Raises CheckpointError before anything
    is written.
    """
    out, ckpt_path = pathlib.Path(out), pathlib.Path(out) / "checkpoint.npz"
    if resume and ckpt_path.exists():
        ckpt = read_checkpoint(ckpt_path)
        check_config_file(out, ckpt.config, ckpt.changes)
        changes = settings_changes(ckpt.config, cfg, ckpt.epoch, ckpt.path)
        record = ckpt.data_files if ckpt.data_files is not None else _old_data_record(out)
        check_record(config_mod.RECORD_SECTION, record or {}, str(out / "config.toml"))
        check_same_data(record, data.files, ckpt.path)
        restore(ckpt, net, opt, rng, sign_rng)
        metrics = ckpt.metrics
        if metrics is None:                         # a checkpoint from before the metrics lived in it
            metrics = check_metrics(read_metrics(out)[:ckpt.epoch], ckpt.epoch, out / "metrics.jsonl")
        log(f"resuming {out} after epoch {ckpt.epoch}" + _changed(changes))
        return RunRecord(metrics, ckpt.epoch, record or {}, ckpt.changes + changes,
                         noted_environment(ckpt.environment, ckpt.epoch + 1, out, log))
    if resume and (out / "config.toml").exists():
        recorded, records = read_first_start(out)
        changes = settings_changes(recorded, cfg, 0, out / "config.toml")
        check_same_data(records[config_mod.RECORD_SECTION], data.files, out / "config.toml")
        log(f"no checkpoint in {out}: starting at epoch 1 with the settings of {out / 'config.toml'}"
            + _changed(changes))
        return RunRecord([], 0, updated_record(records[config_mod.RECORD_SECTION], data.files, 0),
                         records["changes"] + changes, noted_environment(records["environment"], 1, out, log))
    if resume:
        log(f"no run in {out}: starting at epoch 1")
    return RunRecord([], 0, updated_record({}, data.files, 0), [], noted_environment([], 1, out, log))


def _old_data_record(out):
    """The ``[data_files]`` of ``out/config.toml``, for checkpoints written before they held it."""
    try:
        return config_mod.read_toml(pathlib.Path(out) / "config.toml").get(config_mod.RECORD_SECTION)
    except config_mod.ConfigError:
        return None


def _changed(changes):
    return "".join(f"; {c['key']} changes from {c['old']!r} to {c['new']!r} from epoch {c['epoch']} "
                   "(recorded)" for c in changes)


def write_config(out, cfg, run):
    """``out/config.toml``: the settings and the run's records."""
    text = config_mod.dumps(cfg, run.data_files, run.changes, run.environment)
    atomic_write(pathlib.Path(out) / "config.toml", lambda f: f.write(text.encode()))
