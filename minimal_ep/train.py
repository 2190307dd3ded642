"""Training and evaluation: the loop behind ``minimal-ep train`` and ``minimal-ep evaluate``.

One epoch: shuffle (seeded), then per batch a free phase, the gradient (EP: nudged phases from the
free state; BPTT: backpropagation through the unrolled free phase), a check that every state and
weight is finite, and an SGD step with layer-wise learning rates. After each epoch: the test error
(free phase of T_eval steps, prediction = argmax of the top layer or readout), one line of
metrics, ``metrics.jsonl``, ``checkpoint.npz`` and ``learning_curves.png`` in the output directory.

Files are written to a temporary name and renamed, so a crash or Ctrl-C never leaves a half-written
checkpoint; ``resume=True`` continues from the last completed epoch with the saved weights, optimiser
and RNG state, and gives the same numbers as an uninterrupted run of the same seed.
"""
import json
import os
import pathlib
import time

import numpy as np

from . import backend, config as config_mod, datasets
from .bptt import bptt_gradients
from .ep import ep_gradients
from .build import build_network
from .optim import SGD


class TrainingDiverged(RuntimeError):
    """A NaN or infinite value appeared in a state or a weight."""


def atomic_write(path, write):
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def network_from_config(cfg):
    """Build the network a configuration describes (on the active backend)."""
    m = cfg["model"]
    return build_network(input_shape=(1, 28, 28), conv_channels=m["conv_channels"],
                         kernel_size=m["kernel_size"], padding=m["padding"], pool=m["pool"],
                         pool_size=m["pool_size"], alpha=m["alpha"] or None, hidden=m["hidden"],
                         n_classes=10, spiking=m["spiking"], loss=m["loss"], dtype=m["dtype"],
                         seed=cfg["train"]["seed"], eps=m["eps"], lam=m["lam"], v_th=m["v_th"],
                         surrogate_width=m["surrogate_width"], init_scale=m["init_scale"])


def load_data(cfg):
    """(x_train, y_train, x_test, y_test, source) on the host, images (N, 1, 28, 28) in [0, 1]."""
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
    return tuple(out) + (data["source"],)


def lr_scale(cfg, epoch):
    """The schedule's factor on every learning rate in ``epoch`` (0-based)."""
    t = cfg["train"]
    if t["lr_schedule"] == "constant" or t["epochs"] == 1:
        return 1.0
    return 1.0 - (1.0 - t["lr_final"]) * epoch / (t["epochs"] - 1)


def check_finite(net, named, epoch, batch):
    """Raise TrainingDiverged naming the first of ``named``, (what, array) pairs, that is not finite."""
    for what, a in named:
        if not bool(net.xp.isfinite(a).all()):
            raise TrainingDiverged(f"non-finite values in the {what} at epoch {epoch + 1}, batch "
                                   f"{batch + 1}; training stopped, the last good checkpoint is kept")


def train_epoch(net, opt, cfg, x, y, rng, epoch, progress=True):
    """One epoch over (x, y); returns (train error, mean loss, mean firing rate or None, seconds)."""
    t, bs = cfg["train"], cfg["data"]["batch_size"]
    T_free = t["T_free"]
    errors = seen = 0
    loss_sum, rate_sum, start = 0.0, 0.0, time.perf_counter()
    batches = list(datasets.iterate_batches(len(y), bs, cfg["data"]["shuffle"], rng))
    bar = _progress(len(batches), f"epoch {epoch + 1}/{t['epochs']}", progress)
    for b, idx in enumerate(batches):
        xb, yb = backend.to_device(x[idx]), backend.to_device(y[idx])
        if t["algorithm"] == "ep":
            beta = t["beta"] * (rng.choice((-1.0, 1.0)) if t["random_sign"] else 1.0)
            free = net.free_phase(xb, T_free)
            grads = ep_gradients(net, xb, yb, beta, T_free, t["T_nudge"], t["estimator"], free_state=free)
        else:
            grads, free = bptt_gradients(net, xb, yb, T_free, return_state=True)
        check_finite(net, [(f"state of layer {n}", a) for n, a in enumerate(free.xi) if n > 0]
                     + [(f"gradient of {k}", v) for k, v in grads.items()], epoch, b)
        errors += int((net.predict(free) != yb).sum())
        seen += len(idx)
        loss_sum += net.loss(free, yb) * len(idx)
        if net.spiking:
            rate_sum += float(np.mean([s["rate"] for s in net.spike_stats(free)])) * len(idx)
        opt.step(grads)
        check_finite(net, [(f"weight {k} after the update", p) for k, p in net.params.items()], epoch, b)
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


def save_checkpoint(path, net, opt, cfg, epoch, rng):
    """Weights, optimiser state, completed epochs, RNG state and config, atomically, as .npz."""
    arrays = {f"param.{k}": backend.to_numpy(v) for k, v in net.params.items()}
    arrays.update({f"optim.{k}": backend.to_numpy(v) if not isinstance(v, float) else np.float64(v)
                   for k, v in opt.state_dict().items()})
    arrays["epoch"] = np.int64(epoch)
    arrays["rng_state"] = np.array(json.dumps(rng.bit_generator.state))
    arrays["config"] = np.array(config_mod.dumps(cfg))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(path):
    """(config, params dict, optimiser state dict, completed epochs, rng state) from a checkpoint."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read checkpoint {path}: {err}") from None
    cfg = config_mod.loads(str(data["config"]))
    params = {k[6:]: v for k, v in data.items() if k.startswith("param.")}
    optim = {k[6:]: (float(v) if v.ndim == 0 else v) for k, v in data.items() if k.startswith("optim.")}
    return cfg, params, optim, int(data["epoch"]), json.loads(str(data["rng_state"]))


def train(cfg, resume=False, progress=True, log=print):
    """Run the configured training; returns the list of per-epoch metrics dicts."""
    t = cfg["train"]
    backend.set_backend(cfg["run"]["backend"])
    out = pathlib.Path(cfg["run"]["out"])
    out.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_test, y_test, source = load_data(cfg)
    net = network_from_config(cfg)
    try:
        opt = SGD(net.params, t["lr"], t["momentum"])
    except ValueError as err:
        raise config_mod.ConfigError(f"train.lr: {err}") from None
    rng = np.random.default_rng(t["seed"])
    ckpt, metrics_path = out / "checkpoint.npz", out / "metrics.jsonl"
    metrics, start = [], 0
    if resume and ckpt.exists():
        _, params, optim, start, rng_state = load_checkpoint(ckpt)
        for k, v in params.items():
            net.params[k][...] = backend.to_device(v)
        opt.load_state_dict(optim)
        rng.bit_generator.state = rng_state
        if metrics_path.exists():
            metrics = [json.loads(line) for line in metrics_path.read_text().splitlines()][:start]
        log(f"resuming {out} after epoch {start}")
    atomic_write(out / "config.toml", lambda f: f.write(config_mod.dumps(cfg).encode()))
    log(f"{'SNN' if net.spiking else 'CRNN'} {t['algorithm'].upper()} on {cfg['data']['dataset']} "
        f"({len(y_train)} train / {len(y_test)} test images from {source}), "
        f"{sum(int(p.size) for p in net.params.values())} parameters, backend {backend.get_backend()}")
    for epoch in range(start, t["epochs"]):
        opt.scale = lr_scale(cfg, epoch)
        train_err, loss, rate, seconds = train_epoch(net, opt, cfg, x_train, y_train, rng, epoch, progress)
        test_err = evaluate(net, x_test, y_test, t["T_eval"] or t["T_free"], cfg["data"]["batch_size"])
        row = {"epoch": epoch + 1, "train_error": train_err, "test_error": test_err, "loss": loss,
               "seconds": seconds, "samples_per_second": len(y_train) / seconds,
               "lr_scale": opt.scale}
        if rate is not None:
            row["firing_rate"] = rate
        metrics.append(row)
        save_checkpoint(ckpt, net, opt, cfg, epoch + 1, rng)
        atomic_write(metrics_path, lambda f: f.write("".join(json.dumps(m) + "\n" for m in metrics).encode()))
        _plot(metrics, out / "learning_curves.png")
        log(f"epoch {epoch + 1:3d}  train error {100 * train_err:6.2f}%  test error {100 * test_err:6.2f}%"
            + (f"  firing rate {rate:.3f}" if rate is not None else "") + f"  {seconds:6.1f}s")
    return metrics


def _progress(total, desc, enabled):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, leave=False, unit="batch", dynamic_ncols=True)


def _plot(metrics, path):
    """Learning curves (train and test error against epoch) as a PNG, written atomically.

    Uses a bare matplotlib Figure (no pyplot), so the caller's plotting backend is left alone.
    """
    from matplotlib.figure import Figure
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    epochs = [m["epoch"] for m in metrics]
    ax.plot(epochs, [100 * m["train_error"] for m in metrics], "o-", label="train")
    ax.plot(epochs, [100 * m["test_error"] for m in metrics], "s-", label="test")
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
