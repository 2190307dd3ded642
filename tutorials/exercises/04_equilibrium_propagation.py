"""Exercises of tutorial 04 (Equilibrium Propagation against BPTT).

Fill in every function that raises ``NotImplementedError``; keep the names, the arguments and
what each returns, which the grader checks (``make grade DIR=your/folder``, see README.md in
this folder).
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")          # one BLAS thread, before NumPy loads

import numpy as np  # noqa: F401  (you will need it)

import minimal_ep as mep
from minimal_ep import avg_pool2d, datasets
from minimal_ep.dynamics import update_vjp  # noqa: F401  (exercise 4)
from minimal_ep.optim import SGD  # noqa: F401  (exercise 3)
from minimal_ep.run.gradcheck import relative_error  # noqa: F401

T = 100


def problem(seed=3):
    """Tutorial 04's setting: 8 digits pooled to 14x14, conv 4 -> 8 -> 16 -> 10, eps = 1."""
    data = datasets.load_dataset("mnist")
    x = avg_pool2d(datasets.to_float_images(data["train_images"][:8], "float64"), 2)
    y = data["train_labels"][:8]
    net = mep.build_network(input_shape=(1, 14, 14), conv_channels=(4, 8), hidden=(16,),
                            pool="avg", loss="mse", dtype="float64", seed=seed, eps=1.0,
                            spiking=False)
    return net, x, y


# ---------------------------------------------------------------------------------- exercise 1
def exercise_1(seed=3, quick=False, beta=0.01):
    """symmetric(beta) against the mean of the one-sided estimates at +beta and -beta.

    ``problem(seed)``, a free phase of T steps, nudged phases of 60 steps.

    Returns
    -------
    dict
        ``"identity_gap"``: the largest ``relative_error(mean of one-sided(+-beta),
        symmetric)`` over the tensors; ``"errors"``: ``{"one-sided +beta": e, "one-sided
        -beta": e, "symmetric": e}``, each ||EP - BPTT|| / ||BPTT|| over all parameters.
    """
    raise NotImplementedError("exercise 1: exercise_1")


# ---------------------------------------------------------------------------------- exercise 2
def exercise_2(seed=3, quick=False, beta=1e-4, steps=(1, 2, 3, 4, 5, 6, 10, 20, 40, 60)):
    """How many nudged steps each weight tensor needs before its EP estimate matches BPTT.

    Returns
    -------
    dict
        ``"nonzero"``: ``{weight: first T_nudge of steps with a non-zero symmetric
        estimate}``; ``"close"``: ``{weight: first T_nudge within 1% of BPTT (relative
        error), or None}``; ``"n_layers"``: L.
    """
    raise NotImplementedError("exercise 2: exercise_2")


# ---------------------------------------------------------------------------------- exercise 3
def exercise_3(seed=3, quick=False, lr=0.1):
    """Train identical nets with BPTT and with symmetric EP at beta = 0.01 and 0.1.

    15 SGD steps (4 when ``quick``) on the 8 images of ``problem(seed)``.

    Returns
    -------
    dict
        ``{"bptt": losses, "ep 0.01": losses, "ep 0.1": losses}``: the loss at the free fixed
        point before each SGD step and after the last one (steps + 1 values).
    """
    raise NotImplementedError("exercise 3: exercise_3")


# ---------------------------------------------------------------------------------- exercise 4
def dense_problem(seed=0, n_images=4, hidden=16, eps=0.5):
    """A two-layer dense CRNN (hidden layer, 10 outputs, MSE, float64) and pooled digits."""
    data = datasets.load_dataset("mnist")
    x = avg_pool2d(datasets.to_float_images(data["train_images"][:n_images], "float64"), 2)
    y = data["train_labels"][:n_images]
    net = mep.build_network(input_shape=(1, 14, 14), conv_channels=(), hidden=(hidden,),
                            loss="mse", dtype="float64", seed=seed, eps=eps, spiking=False)
    return net, x, y


def my_bptt(net, x, y, T):
    """Backpropagation through the T steps of the free phase of a dense CRNN, by hand.

    Use ``net.relax`` (with ``on_step``) to keep the states, ``net.loss_gradient``,
    ``update_vjp`` and the layers' ``forward_vjp`` and ``backward_vjp``; not
    ``bptt_gradients``.

    Parameters
    ----------
    net : ConvergentRNN
        A continuous network with dense layers only (``conv_channels=()``), MSE loss.
    x : (N, C, H, W) ndarray
    y : (N,) int ndarray
    T : int

    Returns
    -------
    dict
        Same keys and shapes as ``net.params``: the gradient of ``net.loss`` after T steps
        from rest.
    """
    raise NotImplementedError("exercise 4: my_bptt")


def exercise_4(seed=0, quick=False, h=1e-6):
    """``my_bptt`` against ``bptt_gradients`` and against finite differences.

    ``dense_problem(seed)``, T = 20 if quick else 60.

    Returns
    -------
    dict
        ``"vs_bptt"``: the largest ``relative_error(mine, bptt)`` over the tensors;
        ``"vs_fd"``: the largest |mine - central difference| on the 3 largest entries of each
        tensor, relative to the tensor's largest entry; ``"T"``.
    """
    raise NotImplementedError("exercise 4: exercise_4")
