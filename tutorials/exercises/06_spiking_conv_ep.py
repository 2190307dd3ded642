"""Exercises of tutorial 06 (spiking convolutional EP and the pooling mismatch).

Fill in every function that raises ``NotImplementedError``; keep the names, the arguments and
what each returns, which the grader checks (``make grade DIR=your/folder``, see README.md in
this folder). Use ``build_network``, ``net.params``, ``net.free_phase``, ``ep_gradients`` and
``bptt_gradients``.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")          # one BLAS thread, before NumPy loads

import numpy as np  # noqa: F401  (you will need it)

import minimal_ep as mep  # noqa: F401
from minimal_ep import datasets
from minimal_ep.run.gradcheck import cosine  # noqa: F401

BATCH, BETA, T_FREE, T_NUDGE = 20, 0.2, 40, 15
ARCH = dict(input_shape=(1, 28, 28), conv_channels=(8, 16), hidden=(64,), eps=0.3, loss="mse",
            dtype="float32")


def training_data():
    """The embedded MNIST training subset: (5000, 1, 28, 28) float32 images, (5000,) labels."""
    data = datasets.load_dataset("mnist")
    return datasets.to_float_images(data["train_images"], "float32"), data["train_labels"]


# ---------------------------------------------------------------------------------- exercise 1
def compare(g_a, g_b):
    """Cosine and norm ratio of two gradient dicts, per weight tensor ``w1, w2, ...``.

    Parameters
    ----------
    g_a, g_b : dict
        Gradients keyed like ``net.params`` (biases are ignored).

    Returns
    -------
    cosines : list of float
        ``cosine(g_a[k], g_b[k])`` for the weights in order w1, w2, ...
    ratios : list of float
        ``||g_a[k]|| / ||g_b[k]||`` for the same weights.
    """
    raise NotImplementedError("exercise 1: compare")


def exercise_1(seed=0, quick=False):
    """Section 6's comparison (spiking EP against spiking BPTT) over several weight seeds.

    Seeds ``seed .. seed + 4`` (``seed, seed + 1`` when ``quick``), a fresh
    ``build_network(pool=pool, spiking=True, lam=0.3, seed=s, **ARCH)`` each, gradients summed
    over the first 12 batches of 20 (1 when ``quick``), symmetric EP with BETA, T_FREE,
    T_NUDGE and BPTT over T_FREE steps.

    Returns
    -------
    dict
        ``{pool: {"cos": (n_seeds, 4) array, "ratio": (n_seeds, 4) array}}`` for "avg" and
        "max" (``compare(EP, BPTT)`` of every seed), and ``"seeds"``: the seeds.
    """
    raise NotImplementedError("exercise 1: exercise_1")


# ---------------------------------------------------------------------------------- exercise 2
def exercise_2(seed=0, quick=False, lengths=(10, 20, 40, 80)):
    """Relative distance of the SNN's free state from the CRNN's fixed point, per T_free.

    The first 20 training images (8 when ``quick``); the CRNN with ``eps=0.8`` settled for
    200 steps.

    Returns
    -------
    dict
        ``{pool: {T: mean over the two conv layers of mean|xi_snn - xi_crnn| /
        mean|xi_crnn|}}``.
    """
    raise NotImplementedError("exercise 2: exercise_2")


# ---------------------------------------------------------------------------------- exercise 3
def exercise_3(seed=0, quick=False):
    """Cosine between the spiking and the continuous EP estimates, same weights.

    Summed over 12 batches (2 when ``quick``), for both poolings.

    Returns
    -------
    dict
        ``{pool: [cosine(SNN EP, CRNN EP) for w1..w4]}``.
    """
    raise NotImplementedError("exercise 3: exercise_3")
