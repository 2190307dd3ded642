"""Solutions to the exercises of tutorial 02 (pooling, unpooling, ties).

Run it as a script to print what each solution measures; ``tests/test_solutions.py`` calls every
``exercise_*`` function in quick mode and checks what it should establish. Arrays are NCHW; here F
is the pooling window (F x F, stride F).
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")          # one BLAS thread, before NumPy loads (see the tutorials)

import numpy as np

from minimal_ep import avg_pool2d, avg_unpool2d, max_pool2d, max_unpool2d

QUICK = os.environ.get("MINIMAL_EP_QUICK", "0") == "1"
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
        Unpooled spikes landing on a pixel that is not the maximum of its window in z, divided
        by the number of spikes.
    """
    y, idx = max_pool2d(z, F)
    is_max = max_unpool2d(np.ones_like(y), idx, F, output_size=z.shape[2:]) == 1
    back = max_unpool2d(spikes, idx_other, F, output_size=z.shape[2:])
    return float(np.sum(back[~is_max]) / spikes.sum())


def exercise_1(seed=0, quick=QUICK, jitters=(0.0, 0.01, 0.05, 0.2)):
    """Unpool spikes with the indices of a jittered map; count spikes that miss the true maximum.

    The spikes are Bernoulli(y) of the pooled map y (as in section 6 of the tutorial). They are
    unpooled once with the indices of z itself and once with those of ``z + jitter * noise``.

    Returns
    -------
    dict
        ``{jitter: fraction of unpooled spikes not on the maximum of their window in z}``.
    """
    rng = np.random.default_rng(seed)
    size = 32 if quick else 64
    z = rng.random((1, 8, size, size)) ** 3
    y, _ = max_pool2d(z, F)
    spikes = (rng.random(y.shape) < y).astype(np.float64)
    out = {}
    for jitter in jitters:
        _, idx_other = max_pool2d(z + jitter * rng.standard_normal(z.shape), F)
        out[jitter] = misplaced_fraction(z, spikes, idx_other, F)   # the other route's
    return out


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
    alpha = F * F if alpha is None else alpha
    up = np.repeat(np.repeat(y, F, axis=2), F, axis=3) / alpha
    H, W = output_size if output_size is not None else up.shape[2:]
    return np.pad(up, ((0, 0), (0, 0), (0, H - up.shape[2]), (0, W - up.shape[3])))


def adjoint_alpha(F):
    """The alpha that makes ``avg_unpool2d(y, F, alpha)`` the adjoint of ``avg_pool2d(x, F)``.

    Average pooling multiplies each of the F*F pixels of a window by 1/F^2; its adjoint copies
    each value back to the F*F pixels times 1/F^2, so alpha = F*F.
    """
    return float(F * F)


def exercise_2(seed=0, quick=QUICK):
    """Check ``my_avg_unpool2d`` against ``avg_unpool2d`` and pass the adjoint test for F = 2, 3.

    Returns
    -------
    dict
        ``{F: (max |mine - avg_unpool2d|, relative adjoint gap)}``.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for f in (2, 3):
        x = rng.standard_normal((2, 3, 11, 11))
        y = rng.standard_normal((2, 3, 11 // f, 11 // f))
        mine = my_avg_unpool2d(y, f, adjoint_alpha(f), output_size=(11, 11))
        ref = avg_unpool2d(y, f, output_size=(11, 11))
        lhs, rhs = np.sum(avg_pool2d(x, f) * y), np.sum(x * mine)
        out[f] = (float(np.abs(mine - ref).max()), float(abs(lhs - rhs) / abs(lhs)))
    return out


# ---------------------------------------------------------------------------------- exercise 3
def offset0_fraction(p, F=2):
    """The expected fraction of F x F spike windows whose recorded max-pooling offset is 0.

    Every pixel fires independently with probability p. Offset 0 wins when the top-left pixel
    fired (it comes first among the tied maxima) or when the window is silent (F*F tied zeros):
    ``p + (1 - p)**(F*F)``.
    """
    return p + (1 - p) ** (F * F)


def exercise_3(seed=0, quick=QUICK, probabilities=(0.1, 0.3, 0.5, 0.9)):
    """Fraction of 2x2 spike windows whose recorded offset is 0: measured vs ``p + (1 - p)**4``.

    Offset 0 wins when the top-left pixel fired (it is first among the tied ones) or when the
    window is silent (four tied zeros): ``p + (1 - p)**4``.

    Returns
    -------
    dict
        ``{p: (measured, predicted, standard error of the measurement)}``.
    """
    rng = np.random.default_rng(seed)
    size = 32 if quick else 128
    out = {}
    for p in probabilities:
        spikes = (rng.random((1, 8, size, size)) < p).astype(np.float64)
        _, idx = max_pool2d(spikes, F)
        measured = float(np.mean(idx == 0))
        predicted = offset0_fraction(p, F)
        out[p] = (measured, predicted, float(np.sqrt(predicted * (1 - predicted) / idx.size)))
    return out


if __name__ == "__main__":
    for jitter, frac in exercise_1().items():
        print(f"1. jitter {jitter:4}: {frac:.1%} of the unpooled spikes miss the maximum of their window")
    for f, (diff, gap) in exercise_2().items():
        print(f"2. F = {f}: max |mine - avg_unpool2d| = {diff:.1e}, adjoint gap {gap:.1e}"
              f" (alpha = F*F = {f * f})")
    for p, (m, pred, se) in exercise_3().items():
        print(f"3. p = {p}: offset 0 in {m:.3f} of the windows, predicted p + (1-p)^4 = {pred:.3f}"
              f" (standard error {se:.3f})")
