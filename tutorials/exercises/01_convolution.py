"""Exercises of tutorial 01 (convolution: im2col, its transpose, the weight gradient).

Fill in every function that raises ``NotImplementedError``; keep the names, the arguments and
what each returns, which the grader checks (``make grade DIR=your/folder``, see README.md in
this folder). Arrays are NCHW: N batch, C input channels, F filters, H x W input size, KH x KW
kernel size, OH x OW output size.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")          # one BLAS thread, before NumPy loads

import numpy as np  # noqa: F401  (you will need it)

from minimal_ep import col2im, conv2d, conv2d_weight, conv_transpose2d, im2col  # noqa: F401


# ---------------------------------------------------------------------------------- exercise 1
def my_conv2d_weight(x, gy, KH, KW, stride=1, padding=0):
    """dL/dw of a convolution from im2col: one matrix product per image, summed over the batch.

    Parameters
    ----------
    x : (N, C, H, W) ndarray
        Input of the convolution.
    gy : (N, F, OH, OW) ndarray
        Signal at its output (dL/dy).
    KH, KW, stride, padding : int

    Returns
    -------
    gw : (F, C, KH, KW) ndarray
        Equal to ``conv2d_weight(x, gy, (KH, KW), stride, padding)`` to round-off.
    """
    raise NotImplementedError("exercise 1: my_conv2d_weight")


def exercise_1(seed=0, quick=False):
    """Compare ``my_conv2d_weight`` with ``conv2d_weight`` and check the adjoint identity.

    Use random x (2, 3, 9, 9), w (4, 3, 3, 3) and gy shaped like ``conv2d(x, w, stride=2,
    padding=1)``, all float64, from ``np.random.default_rng(seed)``.

    Returns
    -------
    dict
        ``"max_diff"``: max |mine - conv2d_weight|; ``"adjoint_gap"``: the relative gap
        |<conv2d(x, w), gy> - <w, mine>| / |<conv2d(x, w), gy>|; ``"shape"``: mine's shape.
    """
    raise NotImplementedError("exercise 1: exercise_1")


# ---------------------------------------------------------------------------------- exercise 2
def count_1d(size, K, stride):
    """How many windows of width K cover each pixel of a row (no padding).

    Parameters
    ----------
    size : int
        Pixels in the row.
    K, stride : int
        Window width and stride; the windows start at 0, stride, 2*stride, ...

    Returns
    -------
    counts : (size,) int ndarray
    """
    raise NotImplementedError("exercise 2: count_1d")


def predicted_counts(size, K, stride):
    """The 2-D overlap counts of a size x size map: the outer product of two 1-D counts.

    Returns
    -------
    counts : (size, size) int ndarray
        ``col2im`` of a matrix of ones, predicted.
    """
    raise NotImplementedError("exercise 2: predicted_counts")


def exercise_2(seed=0, quick=False, size=9):
    """Predict ``col2im(ones)`` for (K, stride) = (3, 1), (3, 2), (5, 3), (2, 2) and compare.

    Returns
    -------
    dict
        Keyed by (K, stride): ``{"max_diff": max |predicted - col2im|, "uncovered": number of
        pixels no window covers}``.
    """
    raise NotImplementedError("exercise 2: exercise_2")


# ---------------------------------------------------------------------------------- exercise 3
def transpose_as_convolution(y, w, stride=1):
    """``conv_transpose2d(y, w, stride)`` (no padding) written as an ordinary ``conv2d``.

    Dilate y (insert stride - 1 zeros between neighbouring pixels), pad it by K - 1 on every
    side, and correlate it with the kernel flipped in both spatial axes and with its two
    channel axes swapped.

    Parameters
    ----------
    y : (N, F, OH, OW) ndarray
    w : (F, C, KH, KW) ndarray
    stride : int

    Returns
    -------
    (N, C, (OH - 1) * stride + KH, (OW - 1) * stride + KW) ndarray
    """
    raise NotImplementedError("exercise 3: transpose_as_convolution")


def exercise_3(seed=0, quick=False):
    """Check ``transpose_as_convolution`` against ``conv_transpose2d`` for stride 1 and 2.

    Returns
    -------
    dict
        ``{stride: max |difference|}`` for stride 1 and 2.
    """
    raise NotImplementedError("exercise 3: exercise_3")
