"""Solutions to the exercises of tutorial 01 (convolution: im2col, its transpose, the weight gradient).

Run it as a script (``python tutorials/solutions/01_convolution.py``) to print what each solution
measures. ``tests/test_solutions.py`` calls every ``exercise_*`` function in quick mode and checks
what it should establish. Arrays are NCHW; N batch, C input channels, F filters, H x W input size,
KH x KW kernel size, OH x OW output size.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")          # one BLAS thread, before NumPy loads (see the tutorials)

import numpy as np

from minimal_ep import col2im, conv2d, conv2d_weight, conv_transpose2d, im2col

QUICK = os.environ.get("MINIMAL_EP_QUICK", "0") == "1"


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
    """
    N, C = x.shape[:2]
    F = gy.shape[1]
    col = im2col(x, KH, KW, stride, padding)                     # (N, C*KH*KW, OH*OW)
    gw = np.zeros((F, C * KH * KW), dtype=x.dtype)
    for n in range(N):
        gw += gy[n].reshape(F, -1) @ col[n].T                    # (F, OH*OW) @ (OH*OW, C*KH*KW)
    return gw.reshape(F, C, KH, KW)


def exercise_1(seed=0, quick=QUICK):
    """Compare ``my_conv2d_weight`` with ``conv2d_weight`` and check the adjoint identity.

    Returns
    -------
    dict
        ``max_diff``: max |mine - conv2d_weight|; ``adjoint_gap``: relative gap between
        ``<conv2d(x, w), gy>`` and ``<w, mine>``; ``shape``: the shape of the result.
    """
    rng = np.random.default_rng(seed)
    N, C, H, W, F, K = 2, 3, 9, 9, 4, 3
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((F, C, K, K))
    stride, padding = 2, 1
    gy = rng.standard_normal(conv2d(x, w, stride=stride, padding=padding).shape)
    mine = my_conv2d_weight(x, gy, K, K, stride, padding)
    ref = conv2d_weight(x, gy, (K, K), stride, padding)
    lhs = np.sum(conv2d(x, w, stride=stride, padding=padding) * gy)
    rhs = np.sum(w * mine)
    return {"max_diff": float(np.abs(mine - ref).max()),
            "adjoint_gap": float(abs(lhs - rhs) / abs(lhs)), "shape": mine.shape}


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
    n_win = (size - K) // stride + 1
    h = np.arange(size)[:, None]
    starts = stride * np.arange(n_win)[None, :]
    return ((starts <= h) & (h < starts + K)).sum(axis=1)


def predicted_counts(size, K, stride):
    """The 2-D overlap counts of a size x size map: the outer product of two 1-D counts.

    Returns
    -------
    counts : (size, size) int ndarray
        ``col2im`` of a matrix of ones, predicted.
    """
    c = count_1d(size, K, stride)
    return np.outer(c, c)


def exercise_2(seed=0, quick=QUICK, size=9):
    """Predict ``col2im(ones)`` as an outer product of two 1-D counts and compare.

    Returns
    -------
    dict
        Per (K, stride): ``max_diff``, the max |predicted - col2im|, and ``uncovered``, the
        number of pixels no window covers.
    """
    out = {}
    for K, stride in [(3, 1), (3, 2), (5, 3), (2, 2)]:
        predicted = predicted_counts(size, K, stride)
        n_win = ((size - K) // stride + 1) ** 2
        counts = col2im(np.ones((1, K * K, n_win)), (1, 1, size, size), K, K, stride=stride)[0, 0]
        out[(K, stride)] = {"max_diff": float(np.abs(predicted - counts).max()),
                            "uncovered": int(np.sum(counts == 0))}
    return out


# ---------------------------------------------------------------------------------- exercise 3
def dilate(y, stride):
    """Insert ``stride - 1`` zeros between neighbouring pixels of y.

    Parameters
    ----------
    y : (N, F, OH, OW) ndarray
    stride : int

    Returns
    -------
    (N, F, (OH - 1) * stride + 1, (OW - 1) * stride + 1) ndarray
    """
    N, F, OH, OW = y.shape
    out = np.zeros((N, F, (OH - 1) * stride + 1, (OW - 1) * stride + 1), dtype=y.dtype)
    out[:, :, ::stride, ::stride] = y
    return out


def transpose_as_convolution(y, w, stride=1):
    """``conv_transpose2d(y, w, stride)`` (no padding) written as an ordinary ``conv2d``.

    Dilate y, pad it by K-1 on every side, and correlate it with the kernel flipped in both
    spatial axes and with its two channel axes swapped: w (F, C, KH, KW) -> (C, F, KH, KW).

    Parameters
    ----------
    y : (N, F, OH, OW) ndarray
    w : (F, C, KH, KW) ndarray
    stride : int

    Returns
    -------
    (N, C, (OH - 1) * stride + KH, (OW - 1) * stride + KW) ndarray
    """
    KH, KW = w.shape[2:]
    yd = dilate(y, stride)
    ypad = np.pad(yd, ((0, 0), (0, 0), (KH - 1, KH - 1), (KW - 1, KW - 1)))
    w_flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).copy()
    return conv2d(ypad, w_flipped)


def exercise_3(seed=0, quick=QUICK):
    """Check ``transpose_as_convolution`` against ``conv_transpose2d`` for stride 1 and 2.

    Returns
    -------
    dict
        ``{stride: max |difference|}``.
    """
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((4, 3, 3, 3))                         # (F, C, KH, KW)
    out = {}
    for stride in (1, 2):
        y = rng.standard_normal((2, 4, 4, 4))                     # (N, F, OH, OW)
        ref = conv_transpose2d(y, w, stride)
        mine = transpose_as_convolution(y, w, stride)
        assert mine.shape == ref.shape, (mine.shape, ref.shape)
        out[stride] = float(np.abs(mine - ref).max())
    return out


if __name__ == "__main__":
    r = exercise_1()
    print(f"1. my_conv2d_weight {r['shape']}: max |mine - conv2d_weight| = {r['max_diff']:.1e}, "
          f"adjoint identity relative gap {r['adjoint_gap']:.1e}")
    for (K, stride), v in exercise_2().items():
        print(f"2. K={K} stride={stride}: max |outer(c, c) - col2im(ones)| = {v['max_diff']:.0f}, "
              f"pixels covered by no window: {v['uncovered']}")
    print("   (K=5, stride 3) and (K=2, stride 2) on a 9x9 map leave the last row and column")
    print("   uncovered: those inputs reach no output, so their gradient is exactly 0.")
    for stride, d in exercise_3().items():
        print(f"3. stride {stride}: max |conv2d(dilated, padded y, flipped w) - conv_transpose2d| = {d:.1e}")
