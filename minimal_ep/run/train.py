"""Training and evaluation: the loop behind ``minimal-ep train`` and ``minimal-ep evaluate``.

One epoch: shuffle (seeded), then per batch a free phase, the gradient (EP: nudged phases from the
free state; BPTT: backpropagation through the unrolled free phase), an SGD step with layer-wise
learning rates, and the divergence checks (:func:`check_divergence`). After each epoch: the test
error (free phase of T_eval steps, prediction = argmax of the top layer or readout), one line of
metrics, then one commit: ``checkpoint.npz`` (which holds the metrics of every epoch), from which
``metrics.jsonl`` and ``learning_curves.png`` are rewritten.

The output folder's rules (a lock, no silent overwrite, no half-written file) are in
:mod:`minimal_ep.run.runs`, the checks of a checkpoint in :mod:`minimal_ep.run.checkpoints`.
``resume=True`` continues from the last completed epoch with the saved weights, optimiser and RNG
states, and gives the same numbers as an uninterrupted run of the same seed; what a resume may
change, and the run's record of itself, are in :mod:`minimal_ep.run.resume`.
"""
import math
import pathlib
import time
from typing import NamedTuple

import numpy as np

from .. import backend
from ..bptt import bptt_gradients
from . import config as config_mod, datasets
from .checkpoints import save_checkpoint
from ..ep import ep_gradients
from ..optim import SGD
from .build import build_network
from .memory import check_config_fits
from .resume import lr_scale, start_run, updated_record, write_config
from .runs import open_run_folder, write_metrics

DIVERGENCE_FACTOR = 1000.0   # a weight beyond this many times its Kaiming bound means divergence


class TrainingStopped(RuntimeError):
    """A run that stopped before its last epoch: divergence, or an output that could not be written."""


class TrainingDiverged(TrainingStopped):
    """A non-finite state, gradient, loss or weight, or a weight beyond its divergence limit."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says which checkpoint is kept."""


class Data(NamedTuple):
    """Images (N, C, H, W) in [0, 1] and int64 labels on the host, and where they came from."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str          # "embedded" or the directory of the official files
    files: dict          # {file name: {"path", "sha256", "content_sha256", "content"}} of every file read


def network_from_config(cfg):
    """Build the network a :class:`~.config.Config` describes (on the active backend)."""
    name = cfg.data.dataset
    return build_network(cfg.model, input_shape=datasets.INPUT_SHAPE[name],
                         n_classes=datasets.N_CLASSES[name], seed=cfg.train.seed, fast=cfg.run.fast)


def load_data(cfg, splits=("train", "test"), progress=True):
    """The configured splits as :class:`Data` (``train_size``/``test_size`` images, 0: all).

    ``splits``: the splits read (``minimal-ep evaluate`` reads the test split only; the others are
    None in the result). With ``data.validation = V`` the last V images of the training split take
    the test split's place (``test_size`` of them, 0: all V) and the training images are the first
    ``train_size`` of the others: the test split is never read (a search of settings).
    """
    d = cfg.data
    read = ("train",) if d.validation else splits
    data = datasets.load_dataset(d.dataset, source=d.source, data_dir=d.data_dir or None, splits=read,
                                 progress=progress)
    if d.validation:
        images, labels = data.pop("train_images"), data.pop("train_labels")
        data.pop("test_images", None), data.pop("test_labels", None)     # the embedded source has both
        keep = len(labels) - d.validation
        if keep < 1:
            raise config_mod.ConfigError(f"data.validation = {d.validation} but the {d.source} {d.dataset} "
                                         f"train split has only {len(labels)} images")
        for split, part in (("train", slice(None, keep)), ("test", slice(keep, None))):
            if split in splits:
                data[f"{split}_images"], data[f"{split}_labels"] = images[part], labels[part]
    out = []
    for split, size in (("train", d.train_size), ("test", d.test_size)):
        if f"{split}_labels" not in data:
            out += [None, None]
            continue
        n = size or len(data[f"{split}_labels"])
        if n > len(data[f"{split}_labels"]):
            where = (f"{d.validation} validation images" if split == "test" and d.validation else
                     f"the {d.source} {d.dataset} {split} split has {len(data[f'{split}_labels'])}")
            raise config_mod.ConfigError(f"data.{split}_size = {n} but " + where)
        out.append(datasets.to_float_images(data[f"{split}_images"][:n], cfg.model.dtype, d.normalize))
        out.append(data[f"{split}_labels"][:n].astype(np.int64))
    return Data(*out, source=data["source"], files=data["files"])


def held_out_name(cfg):
    """What the images a run is tested on are: "test", or "validation" (``data.validation``)."""
    return "validation" if cfg.data.validation else "test"


def divergence_limits(params, init_scale):
    """{name: limit}: DIVERGENCE_FACTOR x max(1, init_scale_n) / sqrt(fan_in_n) for w_n and b_n.

    ``1/sqrt(fan_in)`` is the Kaiming-uniform bound of the initial weights (``fan_in``: the product
    of all but the first axis of ``w_n``); the bias of layer n has its weight's limit.
    """
    K = sum(name.startswith("w") for name in params)
    scales = init_scale if isinstance(init_scale, list) else [init_scale] * K
    limits = {}
    for n in range(1, K + 1):
        fan_in = math.prod(params[f"w{n}"].shape[1:])
        limits[f"w{n}"] = limits[f"b{n}"] = DIVERGENCE_FACTOR * max(1.0, scales[n - 1]) / math.sqrt(fan_in)
    return limits


def check_divergence(net, named, limits, epoch, batch):
    """Raise TrainingDiverged for the first of ``named`` ((what, array) pairs) that is not finite,
    or whose name has a limit in ``limits`` that it exceeds in magnitude."""
    where = f"at epoch {epoch + 1}, batch {batch + 1}"
    for what, a in named:
        if not bool(net.xp.isfinite(a).all()):
            raise TrainingDiverged(f"non-finite values in the {what} {where}")
        if what in limits:
            largest = float(net.xp.abs(a).max())
            if largest > limits[what]:
                raise TrainingDiverged(
                    f"weight {what} of layer {what[1:]} reached |{what}| = {largest:.3g} {where}, beyond "
                    f"its divergence limit {limits[what]:.3g} ({DIVERGENCE_FACTOR:g} x its Kaiming "
                    "bound max(1, init_scale)/sqrt(fan_in)); lower train.lr (--resume --set train.lr=...)")


def train_epoch(net, opt, cfg, x, y, rng, epoch, progress=True, sign_rng=None, limits=None,
                on_batch=None):
    """One epoch over (x, y); returns (train error, mean loss, mean firing rate or None, seconds).

    ``rng`` shuffles the data; ``sign_rng`` draws the sign of beta when ``train.random_sign``;
    ``limits`` (from :func:`divergence_limits`) bounds the weights. ``on_batch(b, xb, yb, free, grads)``,
    if given, is called after every batch's gradient and before its SGD step (``figures/probe_steps.py``
    records the first steps of training with it). Raises TrainingDiverged.
    """
    t, bs = cfg.train, cfg.data.batch_size
    T_free, limits = t.T_free, limits or {}
    errors = seen = 0
    loss_sum, rate_sum, start = 0.0, 0.0, time.perf_counter()
    batches = list(datasets.iterate_batches(len(y), bs, cfg.data.shuffle, rng))
    bar = _progress(len(batches), f"epoch {epoch + 1}/{t.epochs}", progress)
    for b, idx in enumerate(batches):
        xb, yb = backend.to_device(x[idx]), backend.to_device(y[idx])
        if t.algorithm == "ep":
            beta = t.beta * (sign_rng.choice((-1.0, 1.0)) if t.random_sign else 1.0)
            free, report = net.free_phase(xb, T_free)
            own_free = t.estimator == "one-sided" and t.average_last > 1     # it averages the free phase
            grads = ep_gradients(net, xb, yb, beta, T_free, t.T_nudge, t.estimator,
                                 free_state=None if own_free else free, average_last=t.average_last)
        else:
            grads, free, report = bptt_gradients(net, xb, yb, T_free, return_state=True)
        loss = float(net.loss(free, yb))
        if not math.isfinite(loss):
            raise TrainingDiverged(f"the loss is {loss} at epoch {epoch + 1}, batch {b + 1}")
        check_divergence(net, [(f"state of layer {n}", a) for n, a in enumerate(free.xi) if n > 0]
                         + [(f"gradient of {k}", v) for k, v in grads.items()], {}, epoch, b)
        errors += int((net.predict(free) != yb).sum())
        seen += len(idx)
        loss_sum += loss * len(idx)
        if net.spiking:
            rate_sum += float(np.mean([s["rate"] for s in report.spike_stats()])) * len(idx)
        if on_batch is not None:
            on_batch(b, xb, yb, free, grads)
        opt.step(grads)
        check_divergence(net, list(net.params.items()), limits, epoch, b)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(err=f"{errors / seen:.3f}", sps=f"{seen / (time.perf_counter() - start):.0f}")
    if bar is not None:
        bar.close()
    rate = rate_sum / seen if net.spiking else None
    return errors / seen, loss_sum / seen, rate, time.perf_counter() - start


def evaluate(net, x, y, T, batch_size=100):
    """Test error of ``net`` on (x, y) after a free phase of T steps per batch."""
    errors = 0
    for i in range(0, len(y), batch_size):
        xb, yb = backend.to_device(x[i:i + batch_size]), backend.to_device(y[i:i + batch_size])
        errors += int((net.predict(net.free_phase(xb, T)[0]) != yb).sum())
    return errors / len(y)


def make_rngs(seed):
    """(data-shuffling RNG, RNG of the random sign of beta), both from the run seed, independent."""
    return (np.random.default_rng(seed),
            np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,))))


def train(cfg, resume=False, overwrite=False, progress=True, log=print, until=None):
    """Run the configured training; returns the list of per-epoch metrics dicts.

    Parameters
    ----------
    cfg : Config
        A resolved configuration (:func:`minimal_ep.run.config.resolve`).
    resume : bool
        Continue the run in ``run.out`` from its checkpoint (or from the config.toml of a first start
        that completed no epoch; start afresh in a folder without either). ``cfg`` must hold the run's
        settings, except the :data:`RESUMABLE` keys and the :data:`CHANGEABLE` ones, whose changes
        are recorded (:func:`settings_changes`).
    overwrite : bool
        Replace the run in ``run.out``. Without ``resume`` or ``overwrite`` a folder holding any run
        file is refused (:class:`~minimal_ep.run.runs.RunFolderError`).
    until : int, optional
        Stop after this epoch (the learning-rate schedule stays that of ``train.epochs``); a later
        ``resume`` continues from it.

    Raises
    ------
    ConfigError, MemoryBudgetError, RunFolderError, CheckpointError, DatasetNotFoundError
        Before anything is written.
    TrainingDiverged, TrainingStopped, TrainingInterrupted
        Mid-run; the message says which checkpoint is kept.
    """
    t = cfg.train
    backend.set_backend(cfg.run.backend)
    shape = datasets.INPUT_SHAPE[cfg.data.dataset], datasets.N_CLASSES[cfg.data.dataset]
    check_config_fits(cfg, *shape)                     # everything that can fail on bad input
    data = load_data(cfg, progress=progress)           # happens before the folder is touched
    net = network_from_config(cfg)
    try:
        opt = SGD(net.params, t.lr, t.momentum)
    except ValueError as err:
        raise config_mod.ConfigError(f"train.lr: {err}") from None
    rng, sign_rng = make_rngs(t.seed)
    limits = divergence_limits(net.params, cfg.model.init_scale)
    out = pathlib.Path(cfg.run.out)
    ckpt_path = out / "checkpoint.npz"
    lock = open_run_folder(out, resume=resume, overwrite=overwrite, log=log)
    try:
        run = start_run(out, cfg, net, opt, rng, sign_rng, data, resume, log)
    except BaseException:
        lock.release()
        raise
    saved = run.saved
    try:
        if run.saved:
            write_metrics(out, run.metrics, held_out_name(cfg))   # repairs an interrupt after the last commit
        else:
            write_config(out, cfg, run)                # the settings of the first start
        log(f"{'SNN' if net.spiking else 'CRNN'} {t.algorithm.upper()} on {cfg.data.dataset} "
            f"({len(data.y_train)} train / {len(data.y_test)} {held_out_name(cfg)} images from "
            f"{data.source}), "
            f"{sum(int(p.size) for p in net.params.values())} parameters, backend {backend.get_backend()}")
        for epoch in range(run.saved, min(t.epochs, until or t.epochs)):
            opt.scale = lr_scale(cfg, epoch)
            train_err, loss, rate, seconds = train_epoch(net, opt, cfg, data.x_train, data.y_train, rng,
                                                         epoch, progress, sign_rng=sign_rng, limits=limits)
            test_err = evaluate(net, data.x_test, data.y_test, t.T_eval or t.T_free, cfg.data.batch_size)
            row = {"epoch": epoch + 1, "train_error": train_err, "test_error": test_err, "loss": loss,
                   "seconds": seconds, "samples_per_second": len(data.y_train) / seconds,
                   "lr_scale": opt.scale}
            if rate is not None:
                row["firing_rate"] = rate
            run.metrics.append(row)
            run.data_files = updated_record(run.data_files, data.files, epoch + 1)
            save_checkpoint(ckpt_path, net, opt, cfg, epoch + 1, rng, sign_rng, run.metrics,   # the commit
                            run.data_files, run.changes, run.environment)
            saved = epoch + 1
            write_config(out, cfg, run)
            write_metrics(out, run.metrics, held_out_name(cfg))
            log(f"epoch {epoch + 1:3d}  train error {100 * train_err:6.2f}%  {held_out_name(cfg)} error "
                f"{100 * test_err:6.2f}%"
                + (f"  firing rate {rate:.3f}" if rate is not None else "") + f"  {seconds:6.1f}s")
    except TrainingDiverged as err:
        raise TrainingDiverged(f"training diverged: {err}; {_kept(ckpt_path, saved)}") from None
    except OSError as err:
        raise TrainingStopped(f"cannot write {err.filename or out}: {err.strerror or err}; "
                              f"{_kept(ckpt_path, saved)}") from None
    except MemoryError:
        raise TrainingStopped(f"out of memory (the config's sizes: model.conv_channels, model.hidden, "
                              f"data.batch_size); {_kept(ckpt_path, saved)}") from None
    except KeyboardInterrupt:
        raise TrainingInterrupted(f"interrupted; {_kept(ckpt_path, saved)}") from None
    finally:
        lock.release()
    return run.metrics


def _kept(path, epochs):
    """What survives a run that stops now, in words."""
    if epochs:
        return f"the last good checkpoint ({path}, after epoch {epochs}) is kept"
    return f"no checkpoint was written ({path} does not exist: no epoch was completed)"


def _progress(total, desc, enabled):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, leave=False, unit="batch", dynamic_ncols=True)
