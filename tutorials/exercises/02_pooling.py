"""Exercises of tutorial 02 (pooling, unpooling, ties).

Fill in every function that raises ``NotImplementedError``; keep the names, the arguments and
what each returns, which the grader checks (``make grade DIR=your/folder``, see README.md in
this folder). Arrays are NCHW; here F is the pooling window (F x F, stride F).
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")          # one BLAS thread, before NumPy loads

import numpy as np  # noqa: F401  (you will need it)

from minimal_ep import avg_pool2d, avg_unpool2d, max_pool2d, max_unpool2d  # noqa: F401

F = 2


# ---------------------------------------------------------------------------------- exercise 1
def misplaced_fraction(z, spikes, idx_other, F):
    """Fraction of spikes that max-unpooling with ``idx_other`` puts off the maxima of z.

    Parameters
    ----------
    z : (N, C, H, W) ndarray
        The map the forward route pooled.
    spikes : (N, C, H // F, W // F) ndarray
        Binary spikes of the pooled layer.
    idx_other : (N, C, H // F, W // F) int ndarray
        The indices they are unpooled with (another map's, e.g. a jittered z's).
    F : int
        Pooling window.

    Returns
    -------
    float
        Unpooled spikes landing on a pixel that is not the maximum of its window in z,
        divided by the number of spikes.
    """
    raise NotImplementedError("exercise 1: misplaced_fraction")


def exercise_1(seed=0, quick=False, jitters=(0.0, 0.01, 0.05, 0.2)):
    """The misplaced fraction for growing jitter.

    Draw ``z = rng.random((1, 8, size, size)) ** 3`` (size 64, or 32 when ``quick``), spikes
    Bernoulli(y) of its max-pooled map y, and for each jitter the indices of
    ``max_pool2d(z + jitter * noise)`` with standard normal noise.

    Returns
    -------
    dict
        ``{jitter: misplaced fraction}``.
    """
    raise NotImplementedError("exercise 1: exercise_1")


# ---------------------------------------------------------------------------------- exercise 2
def my_avg_unpool2d(y, F, alpha=None, output_size=None):
    """Nearest-neighbour unpooling divided by alpha (paper Eq. 16), with ``np.repeat``.

    Parameters
    ----------
    y : (N, C, OH, OW) ndarray
    F : int
        Pooling window.
    alpha : float, optional
        Default ``F*F``, the exact adjoint of average pooling.
    output_size : (H, W), optional
        Default ``(OH*F, OW*F)``; a larger size (the border floor pooling dropped) is zero.

    Returns
    -------
    (N, C, H, W) ndarray
    """
    raise NotImplementedError("exercise 2: my_avg_unpool2d")


def adjoint_alpha(F):
    """The alpha that makes ``avg_unpool2d(y, F, alpha)`` the adjoint of ``avg_pool2d(x, F)``.

    Returns
    -------
    float
    """
    raise NotImplementedError("exercise 2: adjoint_alpha")


def exercise_2(seed=0, quick=False):
    """``my_avg_unpool2d`` against ``avg_unpool2d``, and the adjoint test, for F = 2 and 3.

    Use x (2, 3, 11, 11) and y (2, 3, 11 // F, 11 // F), standard normal.

    Returns
    -------
    dict
        ``{F: (max |mine - avg_unpool2d|, relative gap of the adjoint identity)}``.
    """
    raise NotImplementedError("exercise 2: exercise_2")


# ---------------------------------------------------------------------------------- exercise 3
def offset0_fraction(p, F=2):
    """The expected fraction of F x F spike windows whose recorded max-pooling offset is 0.

    Every pixel fires independently with probability p; ties go to the first maximum in
    row-major order.

    Returns
    -------
    float
    """
    raise NotImplementedError("exercise 3: offset0_fraction")


def exercise_3(seed=0, quick=False, probabilities=(0.1, 0.3, 0.5, 0.9)):
    """Measured fraction of 2x2 windows with offset 0 against ``offset0_fraction``.

    Pool ``(rng.random((1, 8, size, size)) < p)`` spikes (size 128, or 32 when ``quick``).

    Returns
    -------
    dict
        ``{p: (measured, predicted, standard error sqrt(q (1 - q) / windows) of the
        measurement, with q the prediction)}``.
    """
    raise NotImplementedError("exercise 3: exercise_3")
