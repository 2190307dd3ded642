"""Peak memory of one training step, measured for real (paper Table II's MEM column).

On the CPU, NumPy reports every array allocation to Python's ``tracemalloc``, so the peak traced
memory of a step is the peak of the arrays alive at once: the parameters, the batch, the states of
the phases and, for BPTT, the tape of every unrolled step. On a GPU the same step runs on CuPy and
the memory pool's total after the step (the pool keeps every block it ever handed out) is its peak.

EP keeps only the current state of each phase, so its peak does not grow with T; BPTT stores every
step for the reverse pass, so its peak grows linearly with T.
"""
import gc
import tracemalloc

import numpy as np

from . import backend
from .bptt import bptt_gradients
from .fast import clear_scratch
from .ep import ep_gradients
from .build import build_network
from .optim import SGD

MODES = ("SNN EP", "SNN BPTT", "CRNN EP", "CRNN BPTT")


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
