"""What a cell of the laptop-scale Table II costs: peak memory of a training step, CPU time per epoch.

:func:`step_peak_mb` measures one training step of a run's own configuration (its batch size, its
phases, its loss) with ``tracemalloc``, as :func:`minimal_ep.run.memory.training_step_peak_mb` does for
the paper's protocol: building the network, the batch, the free phase, the gradient (EP: the two
nudged phases; BPTT: the tape of T_free steps and the reverse pass) and the SGD update. That
function fixes the loss by mode (CRNN: cross-entropy), so it cannot measure the CRNN EP (MSE)
column; this one takes any config.

:func:`measure_costs` (``python -m table2.laptop --measure-cost``) trains each cell for one epoch on a few
images in a temporary folder, at one BLAS thread, and times the training epoch and the test pass
separately in CPU seconds of this process (``time.process_time``), then scales them to the full
data: CPU seconds per epoch = train CPU / n x N_train + test CPU / m x N_test.
"""
import json
import os
import pathlib
import sys
import tempfile
import time

from minimal_ep import backend, datasets
from minimal_ep.run import config as config_mod, memory, train as train_mod
from minimal_ep.run.runs import atomic_write


def step_peak_mb(cfg, seed=0):
    """Peak traced memory (MB = 2**20 bytes) of one training step of ``cfg`` on random images.

    :func:`minimal_ep.run.memory.training_step_peak_mb` with the run's own architecture, batch size,
    phases and loss.
    """
    backend.set_backend("numpy")
    d, m, t = cfg.data, cfg.model, cfg.train
    mode = f"{'SNN' if m.spiking else 'CRNN'} {t.algorithm.upper()}"
    arch = {k: getattr(m, k) for k in ("kernel_size", "padding", "pool", "pool_size", "eps", "dtype")}
    if m.spiking:
        arch.update(lam=m.lam, v_th=m.v_th)
    return memory.training_step_peak_mb(
        mode, batch=d.batch_size, T_free=t.T_free, T_nudge=t.T_nudge, T_bptt=t.T_free,
        conv_channels=tuple(m.conv_channels), hidden=tuple(m.hidden), loss=m.loss, seed=seed,
        input_shape=datasets.INPUT_SHAPE[d.dataset], n_classes=datasets.N_CLASSES[d.dataset], **arch)


def memory_record(cfg):
    """``memory.json``'s contents: the peak of one training step of ``cfg`` and how it was measured."""
    t = cfg.train
    start = time.perf_counter()
    peak = step_peak_mb(cfg)
    steps = f"EP {t.T_free} + {t.T_nudge} + {t.T_nudge}" if t.algorithm == "ep" else f"BPTT {t.T_free}"
    return {"peak_mb": round(peak, 3), "batch_size": cfg.data.batch_size, "steps": steps,
            "how": "tracemalloc peak of one training step (network, batch, phases, gradient, SGD "
                   "update) of the run's config on random images, NumPy backend",
            "seconds": round(time.perf_counter() - start, 2)}


class _Timer:
    """Wraps ``train_epoch`` and ``evaluate`` of :mod:`minimal_ep.run.train`, adding up their CPU seconds."""

    def __init__(self):
        self.cpu = {"train_epoch": 0.0, "evaluate": 0.0}
        self.saved = {}

    def __enter__(self):
        for name in self.cpu:
            self.saved[name] = getattr(train_mod, name)
            setattr(train_mod, name, self._timed(name, self.saved[name]))
        return self

    def _timed(self, name, fn):
        def timed(*args, **kwargs):
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.cpu[name] += time.process_time() - start
        return timed

    def __exit__(self, *exc):
        for name, fn in self.saved.items():
            setattr(train_mod, name, fn)


def full_sizes(cfg, cache={}):
    """(training images, test images) of the run's data set as configured (0 means all)."""
    d = cfg.data
    key = (d.dataset, d.source, d.data_dir)
    if key not in cache:
        data = datasets.load_dataset(d.dataset, d.source, d.data_dir or None)
        cache[key] = (len(data["train_labels"]), len(data["test_labels"]))
    n_train, n_test = cache[key]
    return d.train_size or n_train, d.test_size or n_test


def measure_cell(cfg, sets, size):
    """One epoch of ``cfg`` (with ``sets``) on ``size`` = (train, test) images; a dict of seconds."""
    full = full_sizes(config_mod.resolve(None, sets, base=cfg))
    with tempfile.TemporaryDirectory() as tmp:
        small = config_mod.resolve(None, sets, base=cfg, **{
            "data.train_size": size[0], "data.test_size": size[1], "train.epochs": 1, "run.out": tmp})
        with _Timer() as timer:
            metrics = train_mod.train(small, progress=False, log=lambda text: None)
    epochs = config_mod.resolve(None, sets, base=cfg).train.epochs
    per_epoch = (timer.cpu["train_epoch"] * full[0] / size[0] + timer.cpu["evaluate"] * full[1] / size[1])
    return {"train_cpu_s": round(timer.cpu["train_epoch"], 3), "test_cpu_s": round(timer.cpu["evaluate"], 3),
            "train_wall_s": round(metrics[0]["seconds"], 3), "size": list(size), "full_size": list(full),
            "epoch_cpu_s": round(per_epoch, 1), "epochs": epochs}


def measure_costs(runs, cfgs, sets, size, path):
    """``--measure-cost``: measure every cell of ``runs`` once, print and write the projection to ``path``.

    Returns 0, or 1 if a cell could not be measured (its error is printed and stored).
    """
    backend.set_blas_threads(1)
    load = os.getloadavg()[0]
    seeds = {}
    for r in runs:
        seeds.setdefault(r.cell, []).append(r)
    out = {"command": "python -m table2.laptop " + " ".join(sys.argv[1:]), "blas_threads": 1,
           "load_before": round(load, 2), "cost_size": list(size), "sets": list(sets), "cells": {}}
    print(f"CPU seconds of one epoch, one BLAS thread, measured on {size[0]} training / {size[1]} test "
          f"images and scaled (load average {load:.2f} on {os.cpu_count()} CPUs)")
    print(f"{'cell':20s} {'train ms/img':>12s} {'test ms/img':>11s} {'CPU s/epoch':>11s} {'epochs':>6s} "
          f"{'runs':>4s} {'CPU h':>6s}")
    failed = 0
    for cell, rs in seeds.items():
        try:
            row = measure_cell(cfgs[rs[0].name], sets, size)
        except Exception as err:                       # report the cell, measure the others
            failed = 1
            out["cells"][cell] = {"error": f"{type(err).__name__}: {err}"}
            print(f"{cell:20s} failed: {type(err).__name__}: {err}")
            continue
        row["runs"] = len(rs)
        row["projected_cpu_h"] = round(row["epoch_cpu_s"] * row["epochs"] * len(rs) / 3600, 3)
        out["cells"][cell] = row
        print(f"{cell:20s} {1000 * row['train_cpu_s'] / size[0]:12.2f} {1000 * row['test_cpu_s'] / size[1]:11.2f} "
              f"{row['epoch_cpu_s']:11.0f} {row['epochs']:6d} {len(rs):4d} {row['projected_cpu_h']:6.2f}")
    out["projected_cpu_h"] = round(sum(c.get("projected_cpu_h", 0.0) for c in out["cells"].values()), 2)
    out["load_after"] = round(os.getloadavg()[0], 2)
    print(f"projected CPU time of these runs: {out['projected_cpu_h']:.2f} h"
          + (" (without the cells that failed)" if failed else ""))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(json.dumps(out, indent=1).encode()))
    return failed


def write_memory(out, cell, cfg, cache):
    """Write ``out/memory.json`` unless it is there; ``cache``: cell -> record (one measurement a cell)."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "memory.json").exists():
        return
    if cell not in cache:
        cache[cell] = memory_record(cfg)
    text = json.dumps(cache[cell], indent=1).encode()
    atomic_write(out / "memory.json", lambda f: f.write(text))
