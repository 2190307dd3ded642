"""Exercises of tutorial 05 (Sigma-Delta modulation, predictive coding, a spiking net).

Fill in every function that raises ``NotImplementedError``; keep the names, the arguments and
what each returns, which the grader checks (``make grade DIR=your/folder``, see README.md in
this folder). Use ``sigma_delta``, ``build_network``, ``net.free_phase``, ``net.relax`` and
the phase report's ``spike_stats()``.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")          # one BLAS thread, before NumPy loads

import numpy as np  # noqa: F401  (you will need it)

import minimal_ep as mep
from minimal_ep import datasets
from minimal_ep.spiking import sigma_delta  # noqa: F401


def images(n):
    """The first n training images of the embedded MNIST subset, (n, 1, 28, 28) float64."""
    data = datasets.load_dataset("mnist")
    return datasets.to_float_images(data["train_images"][:n], "float64")


def spiking_net(seed=0, lam=0.3):
    """Tutorial 05's spiking net: conv 8 -> conv 16 -> 32 -> 10, average pooling, eps 0.3."""
    return mep.build_network(input_shape=(1, 28, 28), conv_channels=(8, 16), hidden=(32,),
                             pool="avg", loss="mse", dtype="float64", seed=seed, eps=0.3,
                             spiking=True, lam=lam)


# ---------------------------------------------------------------------------------- exercise 1
def drift_bound(v_th):
    """The largest |cumulative spikes - cumulative input| of a Sigma-Delta modulator from V = 0.

    For inputs in [0, 1] and a threshold v_th in [0, 1].

    Returns
    -------
    float
    """
    raise NotImplementedError("exercise 1: drift_bound")


def exercise_1(seed=0, quick=False, thresholds=(0.2, 0.5, 0.8)):
    """Range of V and the largest drift for uniform inputs in [0, 1], per threshold.

    ``rng.random((steps, 64))`` inputs (steps = 10000, or 2000 when ``quick``), one
    ``sigma_delta`` call per step from V = 0.

    Returns
    -------
    dict
        ``{v_th: (min V, max V, max |drift|, drift_bound(v_th), firing rate - mean input)}``.
    """
    raise NotImplementedError("exercise 1: exercise_1")


# ---------------------------------------------------------------------------------- exercise 2
def exercise_2(seed=0, quick=False, lengths=(50, 100, 200, 400)):
    """Per-layer ``rate_error`` of ``spike_stats()`` after free phases of several lengths.

    ``spiking_net(seed)`` on ``images(2 if quick else 4)``.

    Returns
    -------
    dict
        ``{T: [rate_error of each layer]}`` for every T in ``lengths``, and ``"lam"``: the
        net's lam.
    """
    raise NotImplementedError("exercise 2: exercise_2")


# ---------------------------------------------------------------------------------- exercise 3
def distance_curve(snn, x, ref_xi, T):
    """The SNN's distance from a reference state after every step of one free phase.

    Parameters
    ----------
    snn : SpikingConvergentRNN
    x : (N, C, H, W) ndarray
    ref_xi : list of ndarray
        ``[x, xi_1, ..., xi_L]``, the CRNN's fixed point with the same weights.
    T : int
        Steps of the free phase, from rest.

    Returns
    -------
    (T,) ndarray
        After step t (t = 1..T): the mean over layers 1..L of mean |xi_snn - ref|.
    """
    raise NotImplementedError("exercise 3: distance_curve")


def exercise_3(seed=0, quick=False, lams=(0.1, 0.2, 0.3, 0.6, 1.0), T=300, window=50):
    """Distance of the SNN's states from the CRNN's fixed point (same weights), per lam.

    The CRNN: ``spiking_net``'s architecture with ``spiking=False, eps=0.8``, settled for 300
    steps; ``images(2 if quick else 4)``; one free phase of T steps per lam.

    Returns
    -------
    dict
        ``{lam: (mean distance over the first window steps, over the last window steps)}``.
    """
    raise NotImplementedError("exercise 3: exercise_3")
