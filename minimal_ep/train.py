"""Training and evaluation: the loop behind ``minimal-ep train`` and ``minimal-ep evaluate``.

One epoch: shuffle (seeded), then per batch a free phase, the gradient (EP: nudged phases from the
free state; BPTT: backpropagation through the unrolled free phase), an SGD step with layer-wise
learning rates, and the divergence checks (:func:`check_divergence`). After each epoch: the test
error (free phase of T_eval steps, prediction = argmax of the top layer or readout), one line of
metrics, then one commit: ``checkpoint.npz`` (which holds the metrics of every epoch), from which
``metrics.jsonl`` and ``learning_curves.png`` are rewritten.

The output folder's rules (a lock, no silent overwrite, no half-written file) are in
:mod:`minimal_ep.runs`, the checks of a checkpoint in :mod:`minimal_ep.checkpoints`.
``resume=True`` continues from the last completed epoch with the saved weights, optimiser and RNG
states, and gives the same numbers as an uninterrupted run of the same seed.
"""
import math
import pathlib
import time
from typing import NamedTuple

import numpy as np

from . import backend, config as config_mod, datasets
from .bptt import bptt_gradients
from .checkpoints import (CheckpointError, check_optim, check_params, config_differences,
                          read_checkpoint, save_checkpoint)
from .checkpoints import load_checkpoint  # noqa: F401  (re-exported: figures/ read checkpoints here)
from .ep import ep_gradients
from .build import build_network
from .optim import SGD
from .runs import atomic_write, open_run_folder, read_metrics, write_metrics

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
    files: dict          # {file name: {"path", "sha256"}} of every file read


def network_from_config(cfg):
    """Build the network a configuration describes (on the active backend)."""
    m, name = cfg["model"], cfg["data"]["dataset"]
    return build_network(input_shape=datasets.INPUT_SHAPE[name], n_classes=datasets.N_CLASSES[name],
                         conv_channels=m["conv_channels"], kernel_size=m["kernel_size"],
                         padding=m["padding"], pool=m["pool"], pool_size=m["pool_size"],
                         alpha=m["alpha"] or None, hidden=m["hidden"], spiking=m["spiking"],
                         loss=m["loss"], dtype=m["dtype"], seed=cfg["train"]["seed"], eps=m["eps"],
                         lam=m["lam"], v_th=m["v_th"], surrogate_width=m["surrogate_width"],
                         init_scale=m["init_scale"])


def load_data(cfg):
    """The configured splits as :class:`Data` (``train_size``/``test_size`` images, 0: all)."""
    d, m = cfg["data"], cfg["model"]
    data = datasets.load_dataset(d["dataset"], source=d["source"], data_dir=d["data_dir"] or None)
    out = []
    for split, size in (("train", d["train_size"]), ("test", d["test_size"])):
        n = size or len(data[f"{split}_labels"])
        if n > len(data[f"{split}_labels"]):
            raise config_mod.ConfigError(f"data.{split}_size = {n} but the {d['source']} "
                                         f"{d['dataset']} {split} split has {len(data[f'{split}_labels'])}")
        out.append(datasets.to_float_images(data[f"{split}_images"][:n], m["dtype"], d["normalize"]))
        out.append(data[f"{split}_labels"][:n].astype(np.int64))
    return Data(*out, source=data["source"], files=data["files"])


def lr_scale(cfg, epoch):
    """The schedule's factor on every learning rate in ``epoch`` (0-based)."""
    t = cfg["train"]
    if t["lr_schedule"] == "constant" or t["epochs"] == 1:
        return 1.0
    return 1.0 - (1.0 - t["lr_final"]) * epoch / (t["epochs"] - 1)


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
                    "bound max(1, init_scale)/sqrt(fan_in)); lower train.lr")


def train_epoch(net, opt, cfg, x, y, rng, epoch, progress=True, sign_rng=None, limits=None,
                on_batch=None):
    """One epoch over (x, y); returns (train error, mean loss, mean firing rate or None, seconds).

    ``rng`` shuffles the data; ``sign_rng`` draws the sign of beta when ``train.random_sign``;
    ``limits`` (from :func:`divergence_limits`) bounds the weights. ``on_batch(b, xb, yb, free, grads)``,
    if given, is called after every batch's gradient and before its SGD step (``figures/probe_steps.py``
    records the first steps of training with it). Raises TrainingDiverged.
    """
    t, bs = cfg["train"], cfg["data"]["batch_size"]
    T_free, limits = t["T_free"], limits or {}
    errors = seen = 0
    loss_sum, rate_sum, start = 0.0, 0.0, time.perf_counter()
    batches = list(datasets.iterate_batches(len(y), bs, cfg["data"]["shuffle"], rng))
    bar = _progress(len(batches), f"epoch {epoch + 1}/{t['epochs']}", progress)
    for b, idx in enumerate(batches):
        xb, yb = backend.to_device(x[idx]), backend.to_device(y[idx])
        if t["algorithm"] == "ep":
            beta = t["beta"] * (sign_rng.choice((-1.0, 1.0)) if t["random_sign"] else 1.0)
            free = net.free_phase(xb, T_free)
            grads = ep_gradients(net, xb, yb, beta, T_free, t["T_nudge"], t["estimator"], free_state=free)
        else:
            grads, free = bptt_gradients(net, xb, yb, T_free, return_state=True)
        loss = float(net.loss(free, yb))
        if not math.isfinite(loss):
            raise TrainingDiverged(f"the loss is {loss} at epoch {epoch + 1}, batch {b + 1}")
        check_divergence(net, [(f"state of layer {n}", a) for n, a in enumerate(free.xi) if n > 0]
                         + [(f"gradient of {k}", v) for k, v in grads.items()], {}, epoch, b)
        errors += int((net.predict(free) != yb).sum())
        seen += len(idx)
        loss_sum += loss * len(idx)
        if net.spiking:
            rate_sum += float(np.mean([s["rate"] for s in net.spike_stats(free)])) * len(idx)
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
        errors += int((net.predict(net.free_phase(xb, T)) != yb).sum())
    return errors / len(y)


def make_rngs(seed):
    """(data-shuffling RNG, RNG of the random sign of beta), both from the run seed, independent."""
    return (np.random.default_rng(seed),
            np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,))))


def restore(ckpt, cfg, net, opt, rng, sign_rng):
    """Load ``ckpt`` (a :class:`~minimal_ep.checkpoints.Checkpoint`) into the run; CheckpointError if
    it was trained with other settings or does not fit the network."""
    differences = config_differences(ckpt.config, cfg)
    if differences:
        raise CheckpointError(f"--resume: {ckpt.path} was trained with other settings: "
                              + "; ".join(differences) + ". Resume with its settings, or start a new "
                              "run (--overwrite or another --out)")
    check_params(ckpt, net.params)
    check_optim(ckpt, opt.state_dict())
    for k, v in ckpt.params.items():
        net.params[k][...] = backend.to_device(v)
    opt.load_state_dict(ckpt.optim)
    rng.bit_generator.state = ckpt.rng_state
    if ckpt.sign_rng_state is not None:
        sign_rng.bit_generator.state = ckpt.sign_rng_state


def train(cfg, resume=False, overwrite=False, progress=True, log=print):
    """Run the configured training; returns the list of per-epoch metrics dicts.

    Parameters
    ----------
    cfg : dict
        A resolved configuration (:func:`minimal_ep.config.resolve`).
    resume : bool
        Continue the run in ``run.out`` from its checkpoint (start afresh if there is none).
    overwrite : bool
        Replace the run in ``run.out``. Without ``resume`` or ``overwrite`` a folder that holds a
        run is refused (:class:`~minimal_ep.runs.RunFolderError`).

    Raises
    ------
    ConfigError, RunFolderError, CheckpointError, DatasetNotFoundError
        Before anything is written.
    TrainingDiverged, TrainingStopped, TrainingInterrupted
        Mid-run; the message says which checkpoint is kept.
    """
    t = cfg["train"]
    backend.set_backend(cfg["run"]["backend"])
    data = load_data(cfg)                              # everything that can fail on bad input
    net = network_from_config(cfg)                     # happens before the folder is touched
    try:
        opt = SGD(net.params, t["lr"], t["momentum"])
    except ValueError as err:
        raise config_mod.ConfigError(f"train.lr: {err}") from None
    rng, sign_rng = make_rngs(t["seed"])
    limits = divergence_limits(net.params, cfg["model"]["init_scale"])
    out = pathlib.Path(cfg["run"]["out"])
    ckpt_path = out / "checkpoint.npz"
    lock = open_run_folder(out, resume=resume, overwrite=overwrite, log=log)
    metrics, saved = [], None                          # saved: epochs in the checkpoint on disk
    try:
        if resume and ckpt_path.exists():
            ckpt = read_checkpoint(ckpt_path)
            restore(ckpt, cfg, net, opt, rng, sign_rng)
            saved = ckpt.epoch
            metrics = (ckpt.metrics if ckpt.metrics is not None else read_metrics(out))[:saved]
            write_metrics(out, metrics)                # repairs an interrupt after the last commit
            log(f"resuming {out} after epoch {saved}")
        elif resume:
            log(f"no checkpoint in {out}: starting at epoch 1")
        record = {name: dict(f) for name, f in data.files.items()}
        atomic_write(out / "config.toml", lambda f: f.write(config_mod.dumps(cfg, record).encode()))
        log(f"{'SNN' if net.spiking else 'CRNN'} {t['algorithm'].upper()} on {cfg['data']['dataset']} "
            f"({len(data.y_train)} train / {len(data.y_test)} test images from {data.source}), "
            f"{sum(int(p.size) for p in net.params.values())} parameters, backend {backend.get_backend()}")
        for epoch in range(saved or 0, t["epochs"]):
            opt.scale = lr_scale(cfg, epoch)
            train_err, loss, rate, seconds = train_epoch(net, opt, cfg, data.x_train, data.y_train, rng,
                                                         epoch, progress, sign_rng=sign_rng, limits=limits)
            test_err = evaluate(net, data.x_test, data.y_test, t["T_eval"] or t["T_free"],
                                cfg["data"]["batch_size"])
            row = {"epoch": epoch + 1, "train_error": train_err, "test_error": test_err, "loss": loss,
                   "seconds": seconds, "samples_per_second": len(data.y_train) / seconds,
                   "lr_scale": opt.scale}
            if rate is not None:
                row["firing_rate"] = rate
            metrics.append(row)
            save_checkpoint(ckpt_path, net, opt, cfg, epoch + 1, rng, sign_rng, metrics)   # the commit
            saved = epoch + 1
            write_metrics(out, metrics)
            log(f"epoch {epoch + 1:3d}  train error {100 * train_err:6.2f}%  test error {100 * test_err:6.2f}%"
                + (f"  firing rate {rate:.3f}" if rate is not None else "") + f"  {seconds:6.1f}s")
    except TrainingDiverged as err:
        raise TrainingDiverged(f"training diverged: {err}; {_kept(ckpt_path, saved)}") from None
    except OSError as err:
        raise TrainingStopped(f"cannot write {err.filename or out}: {err.strerror or err}; "
                              f"{_kept(ckpt_path, saved)}") from None
    except KeyboardInterrupt:
        raise TrainingInterrupted(f"interrupted; {_kept(ckpt_path, saved)}") from None
    finally:
        lock.release()
    return metrics


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
