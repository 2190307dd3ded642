"""Exercises of tutorial 03 (the convergent RNN and its free phase).

Fill in every function that raises ``NotImplementedError``; keep the names, the arguments and
what each returns, which the grader checks (``make grade DIR=your/folder``, see README.md in
this folder). Use only ``build_network``, ``net.params``, ``net.forward_route``,
``net.backward_route``, ``net.step`` and ``net.free_phase``. Arrays are NCHW.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")          # one BLAS thread, before NumPy loads

import numpy as np  # noqa: F401  (you will need it)

import minimal_ep as mep
from minimal_ep import datasets


def images(n):
    """The first n training images of the embedded MNIST subset, (n, 1, 28, 28) float64."""
    data = datasets.load_dataset("mnist")
    return datasets.to_float_images(data["train_images"][:n], "float64")


def small_net(seed=0, **kw):
    """Tutorial 03's net: conv 8 -> conv 16 (3x3, 2x2 average pooling) -> 32 -> 10, float64."""
    args = dict(input_shape=(1, 28, 28), conv_channels=(8, 16), hidden=(32,), n_classes=10,
                pool="avg", loss="mse", dtype="float64", seed=seed, eps=0.8, spiking=False)
    args.update(kw)
    return mep.build_network(**args)


# ---------------------------------------------------------------------------------- exercise 1
def my_free_phase(net, x, T):
    """T synchronous steps from rest, written with the two routes (docs/equations.md §2).

    Parameters
    ----------
    net : ConvergentRNN
        A continuous network (``spiking=False``), average or max pooling.
    x : (N, C, H, W) ndarray
    T : int

    Returns
    -------
    list of ndarray
        ``[x, s_1, ..., s_L]`` after T steps, ``s_n`` of shape ``(N,) + net.shapes[n]``.
    """
    raise NotImplementedError("exercise 1: my_free_phase")


def exercise_1(seed=0, quick=False):
    """``my_free_phase`` against ``net.free_phase`` for eps = 1 and 0.5, avg and max pooling.

    Returns
    -------
    dict
        ``{(pool, eps): max |mine - net.free_phase| over all layers}``.
    """
    raise NotImplementedError("exercise 1: exercise_1")


# ---------------------------------------------------------------------------------- exercise 2
def classify_end(net, state, settle_tol=1e-6):
    """How a free phase ended: two more steps from ``state`` tell.

    Parameters
    ----------
    net : ConvergentRNN
        Steps with its current ``eps``.
    state : State
        The last state of a free phase (leave it unchanged).
    settle_tol : float

    Returns
    -------
    str
        With d1 = max |s^{t+1} - s^t| and d2 = max |s^{t+2} - s^t| over all layers and units:
        ``"settled"`` if d1 < settle_tol, ``"2-cycle"`` if d1 > 0.1 and d2 < 0.1 d1, else
        ``"moving"``.
    """
    raise NotImplementedError("exercise 2: classify_end")


def exercise_2(seed=0, quick=False, scales=(1.0, 1.5, 2.0, 2.5, 3.0, 4.0)):
    """How free phases end, for growing weight scales, with eps = 1 and eps = 0.5.

    ``small_net(seed, init_scale=scale)``, ``images(4 if quick else 8)``, T = 100 if quick
    else 200 steps.

    Returns
    -------
    dict
        ``{init_scale: {eps: (residual after T steps, classify_end(...))}}`` for eps 1.0 and
        0.5.
    """
    raise NotImplementedError("exercise 2: exercise_2")


# ---------------------------------------------------------------------------------- exercise 3
def route_ratios(net, s):
    """The forward/backward balance of every layer n < L at the states s (average pooling).

    Parameters
    ----------
    net : ConvergentRNN
    s : list of ndarray
        ``[x, s_1, ..., s_L]``, e.g. ``state.xi`` of a settled free phase.

    Returns
    -------
    list of float
        ``mean |forward route| / mean |backward route|`` of layers 1..L-1.
    """
    raise NotImplementedError("exercise 3: route_ratios")


def exercise_3(seed=0, quick=False, alphas=(1.0, 2.0, 4.0, 8.0)):
    """The route balance of layers 1 and 2 at the fixed point, per alpha.

    ``small_net(seed, alpha=alpha)`` settled for T = 100 if quick else 200 steps on
    ``images(4 if quick else 8)``.

    Returns
    -------
    dict
        ``{alpha: (ratio of layer 1, ratio of layer 2, residual of the free phase)}``.
    """
    raise NotImplementedError("exercise 3: exercise_3")
