"""Peak memory of one training step, measured for real (paper Table II's MEM column).

On the CPU, NumPy reports every array allocation to Python's ``tracemalloc``, so the peak traced
memory of a step is the peak of the arrays alive at once: the parameters, the batch, the states of
the phases and, for BPTT, the tape of every unrolled step. On a GPU the same step runs on CuPy and
the memory pool's total after the step (the pool keeps every block it ever handed out) is its peak.

EP keeps only the current state of each phase, so its peak does not grow with T; BPTT stores every
step for the reverse pass, so its peak grows linearly with T.

Before anything that size is allocated, :func:`check_fits` *estimates* a step's arrays from the
settings alone (:func:`step_estimate`: weights and gradients, the states of the phases, the maps
before pooling and the im2col columns, the BPTT tape) and refuses, naming the settings and the
estimate, a network that cannot fit in this machine's memory: ``model.hidden = [3000000]`` or
``model.padding = 1000000000`` stop with one line instead of a MemoryError or a NumPy error.
"""
import gc
import math
import os
import tracemalloc

import numpy as np

from .. import backend
from ..bptt import bptt_gradients
from ..ep import ep_gradients
from ..fast import clear_scratch
from ..optim import SGD
from .build import build_network

MODES = ("SNN EP", "SNN BPTT", "CRNN EP", "CRNN BPTT")
SPIKING_ARRAYS = 5          # a spiking state holds xi, d, V, spikes and x_prev per layer
EP_STATES = 4               # EP keeps the free state, the two nudged ones and the one being made


class MemoryBudgetError(ValueError):
    """Settings whose training step cannot fit in this machine's memory (estimated before allocating)."""


def _conv_out(size, kernel_size, padding):
    return max(size + 2 * padding - kernel_size + 1, 0)


def step_estimate(conv_channels, hidden, batch, input_shape=(1, 28, 28), n_classes=10, kernel_size=3,
                  padding=0, pool_size=2, loss="mse", spiking=True, dtype="float32", algorithm="ep", T=0):
    """Estimated bytes of one training step, from the settings alone (no array is made).

    Counts the weights (with their gradients and the EP/BPTT terms: 3 copies), the float64 draw of
    the largest weight at initialisation, the states of the phases (spiking: 5 arrays per layer),
    each conv layer's map before pooling and im2col columns, and for BPTT the tape of T + 1 states.
    Within 0.6-1.25 times the measured peak (:func:`training_step_peak_mb`) on the nets tried: enough
    to refuse sizes that cannot fit, not a prediction.

    Returns
    -------
    total : int
        Bytes.
    largest : (str, int)
        The largest single array, described, and its bytes.
    """
    item = 4 if str(dtype) == "float32" else 8
    (C, H, W), arrays = input_shape, []
    state = per_sample = 0
    for n, c in enumerate(conv_channels, start=1):
        OH, OW = _conv_out(H, kernel_size, padding), _conv_out(W, kernel_size, padding)
        arrays.append((f"w{n}, {c} x {C} x {kernel_size} x {kernel_size}", c * C * kernel_size ** 2))
        arrays.append((f"conv layer {n}'s maps, {batch} x {c} x {OH} x {OW}", batch * c * OH * OW))
        arrays.append((f"conv layer {n}'s im2col columns, {batch} x {C * kernel_size ** 2} x {OH * OW}",
                       batch * C * kernel_size ** 2 * OH * OW))
        per_sample += c * OH * OW + C * kernel_size ** 2 * OH * OW
        C, H, W = c, OH // pool_size, OW // pool_size
        state += C * H * W
    widths, fan_in = list(hidden) + [n_classes], C * H * W
    for n, d in enumerate(widths, start=len(conv_channels) + 1):
        arrays.append((f"w{n}, {d} x {fan_in}", d * fan_in))
        state += d if (n - len(conv_channels) < len(widths) or loss == "mse") else 0   # CE: a readout
        fan_in = d
    weights = sum(size for what, size in arrays if what.startswith("w"))
    copies = (SPIKING_ARRAYS if spiking else 1) * ((T + 1) if algorithm == "bptt" else EP_STATES)
    total = item * (3 * weights + batch * (copies * state + per_sample))
    largest = max(arrays, key=lambda a: a[1])
    init = item * weights + 8 * max(size for what, size in arrays if what.startswith("w"))
    return max(total, init), (largest[0], item * largest[1])


def physical_memory():
    """Bytes of memory of this machine, or None where it cannot be asked."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _size(nbytes):
    """Bytes in words: ``12.3 GB``."""
    units = ("bytes", "KB", "MB", "GB", "TB", "PB", "EB")
    k = min(int(math.log(max(nbytes, 1), 1024)), len(units) - 1)
    return f"{nbytes / 1024 ** k:.3g} {units[k]}"


def check_fits(settings, estimate, limit=None):
    """Raise :class:`MemoryBudgetError` if ``estimate`` (from :func:`step_estimate`) exceeds ``limit``.

    Parameters
    ----------
    settings : str
        The settings that size the step, as the user wrote them (``"model.hidden = [3000000], ..."``).
    estimate : (int, (str, int))
    limit : int, optional
        Bytes available; default this machine's memory (no check where it is unknown).
    """
    limit = physical_memory() if limit is None else limit
    total, (what, nbytes) = estimate
    if limit is not None and total > limit:
        raise MemoryBudgetError(
            f"{settings}: one training step needs about {_size(total)} (estimated before allocating; "
            f"the largest array: {what}, {_size(nbytes)}), more than this machine's {_size(limit)} of "
            "memory; make them smaller")


def check_config_fits(cfg, input_shape, n_classes, limit=None):
    """:func:`check_fits` for a run's :class:`~minimal_ep.run.config.Config` (the CPU backend only)."""
    if cfg.run.backend != "numpy":
        return
    m, t = cfg.model, cfg.train
    keys = [("model.conv_channels", m.conv_channels), ("model.padding", m.padding),
            ("model.kernel_size", m.kernel_size), ("model.hidden", m.hidden),
            ("data.batch_size", cfg.data.batch_size)] + ([("train.T_free", t.T_free)]
                                                          if t.algorithm == "bptt" else [])
    estimate = step_estimate(m.conv_channels, m.hidden, cfg.data.batch_size, input_shape, n_classes,
                             m.kernel_size, m.padding, m.pool_size, m.loss, m.spiking, m.dtype,
                             t.algorithm, t.T_free)
    check_fits(", ".join(f"{k} = {v}" for k, v in keys), estimate, limit)


def training_step_peak_mb(mode, batch=10, T_free=100, T_nudge=25, T_bptt=150, conv_channels=(128, 256),
                          hidden=(512,), input_shape=(1, 28, 28), n_classes=10, seed=0, loss=None,
                          **net_kwargs):
    """Peak memory (MB = 2**20 bytes) of one training step: network, batch, gradient, SGD update.

    Parameters
    ----------
    mode : {"SNN EP", "SNN BPTT", "CRNN EP", "CRNN BPTT"}
    loss : {"mse", "ce"}, optional
        Default as in the paper: MSE for spiking networks, cross-entropy for CRNNs.
    batch : int
    T_free, T_nudge : int
        EP: free phase and each of the two nudged phases (paper: 100 + 25 + 25).
    T_bptt : int
        BPTT: unrolled steps (paper: 150).
    conv_channels, hidden, input_shape, n_classes, net_kwargs
        The architecture (default the paper's 2C2FC with a 512-unit hidden layer).
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
    spiking, algorithm = mode.split()[0] == "SNN", mode.split()[1]
    if backend.get_backend() == "numpy":
        sizes = dict(batch=batch, conv_channels=list(conv_channels), hidden=list(hidden))
        check_fits(", ".join(f"{k} = {v}" for k, v in sizes.items()),
                   step_estimate(conv_channels, hidden, batch, input_shape, n_classes,
                                 loss=loss or ("mse" if spiking else "ce"), spiking=spiking,
                                 algorithm=algorithm.lower(), T=T_bptt,
                                 **{k: v for k, v in net_kwargs.items()
                                    if k in ("kernel_size", "padding", "pool_size", "dtype")}))
    rng = np.random.default_rng(seed)
    x = rng.random((batch,) + tuple(input_shape))
    y = rng.integers(0, n_classes, batch)
    gc.collect()
    cupy = backend.get_xp() if backend.get_backend() == "cupy" else None
    if cupy is not None:
        pool = cupy.get_default_memory_pool()
        pool.free_all_blocks()
    clear_scratch()                    # the step's own column buffers count towards its peak
    tracemalloc.start()
    try:
        net = build_network(input_shape=input_shape, conv_channels=conv_channels, hidden=hidden,
                            n_classes=n_classes, spiking=spiking, loss=loss or ("mse" if spiking else "ce"), seed=seed, **net_kwargs)
        xb, yb = backend.to_device(x, net.dtype), backend.to_device(y)
        opt = SGD(net.params, 0.01)
        if algorithm == "EP":
            grads = ep_gradients(net, xb, yb, 0.1, T_free, T_nudge)
        else:
            grads = bptt_gradients(net, xb, yb, T_bptt)
        opt.step(grads)
        peak = tracemalloc.get_traced_memory()[1] if cupy is None else pool.total_bytes()
    finally:
        tracemalloc.stop()
    return peak / 2 ** 20


def table2_memory(**kwargs):
    """The four MEM numbers of Table II, {mode: MB}, with the paper's protocol unless overridden."""
    return {mode: training_step_peak_mb(mode, **kwargs) for mode in MODES}
