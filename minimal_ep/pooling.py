"""Pooling and its inverses: max pooling with index tracking, average pooling, unpooling.

Symbols: N batch, C channels, H, W input size, F pooling window (F x F, stride F),
OH = H // F and OW = W // F (floor: an 11x11 map pools to 5x5, the last row and column are
dropped and get zero when unpooled).

Window offsets are numbered row-major, ``k = p*F + q`` for row p and column q inside the window;
every function below loops over those F*F offsets with strided slices ``x[:, :, p::F, q::F]``,
so nothing is scattered and the code runs unchanged on CuPy.

Max pooling (paper Eq. 12-13) returns the maximum of each window and its offset I^F(X);
``max_unpool2d`` (Eq. 14) puts values back at those offsets, zeros elsewhere, and is the exact
adjoint of "take the values at the offsets" (:func:`gather_pool2d`). Average pooling (Eq. 15) and
nearest-neighbour unpooling divided by alpha (Eq. 16) need no indices; alpha = F*F makes
``avg_unpool2d`` the exact adjoint of ``avg_pool2d``.

At the bottom, the two *pooling kinds* a convolutional layer can use, :class:`MaxPool` and
:class:`AvgPool`: each pairs P with its P^-1 and, for BPTT, with the adjoints of both. A new pooling
kind is one more class here and one more entry in ``POOLS``; nothing else in the package changes.
"""
from .backend import get_array_module


def pool_output_size(x_shape, F):
    """Validated (OH, OW) = (H // F, W // F) for an (N, C, H, W) input and an F x F window."""
    if len(x_shape) != 4:
        raise ValueError(f"pooling input must be 4-d (N, C, H, W), got shape {tuple(x_shape)}")
    if not isinstance(F, int) or F < 1:
        raise ValueError(f"pooling window F must be an int >= 1, got {F!r}")
    H, W = x_shape[2], x_shape[3]
    if F > H or F > W:
        raise ValueError(f"pooling window {F}x{F} is larger than the input {H}x{W} "
                         f"(shape {tuple(x_shape)})")
    return H // F, W // F


def _unpooled_shape(y, F, output_size):
    """(N, C, H, W) of the unpooled map; checks that (H, W) pools back to y's (OH, OW)."""
    if y.ndim != 4:
        raise ValueError(f"unpooling input must be 4-d (N, C, OH, OW), got shape {y.shape}")
    N, C, OH, OW = y.shape
    H, W = (OH * F, OW * F) if output_size is None else tuple(output_size)[-2:]
    if pool_output_size((N, C, H, W), F) != (OH, OW):
        raise ValueError(f"output_size {(H, W)} does not pool to {(OH, OW)} with a {F}x{F} "
                         f"window (y has shape {y.shape})")
    return N, C, H, W


def max_pool2d(x, F):
    """Max pooling with index tracking (paper Eq. 12-13).

    Parameters
    ----------
    x : (N, C, H, W) ndarray
    F : int
        Window size and stride.

    Returns
    -------
    y : (N, C, OH, OW) ndarray
        The maximum of each F x F window.
    idx : (N, C, OH, OW) int32 ndarray
        Offset ``p*F + q`` of the maximum inside its window. On ties the first maximum in
        row-major order wins (spikes are binary, so ties are the common case).
    """
    xp = get_array_module(x)
    OH, OW = pool_output_size(x.shape, F)
    y = x[:, :, 0:OH * F:F, 0:OW * F:F].copy()          # offset (0, 0) is the first candidate
    idx = xp.zeros(y.shape, dtype=xp.int32)
    for p in range(F):
        for q in range(F):
            if p == 0 and q == 0:
                continue
            v = x[:, :, p:OH * F:F, q:OW * F:F]        # (N, C, OH, OW): offset (p, q) of every window
            better = v > y                              # strict: an equal later value never wins
            y = xp.where(better, v, y)
            idx = xp.where(better, xp.int32(p * F + q), idx)
    return y, idx


def max_unpool2d(y, idx, F, output_size=None):
    """Inverse of max pooling (paper Eq. 14): values back at the recorded offsets, zeros elsewhere.

    Parameters
    ----------
    y : (N, C, OH, OW) ndarray
    idx : (N, C, OH, OW) int ndarray
        Offsets from :func:`max_pool2d`.
    F : int
    output_size : (H, W), optional
        Size of the map that was pooled (default ``(OH*F, OW*F)``); the rows and columns that
        floor pooling dropped are zero.

    Returns
    -------
    x : (N, C, H, W) ndarray
    """
    xp = get_array_module(y)
    N, C, H, W = _unpooled_shape(y, F, output_size)
    if idx.shape != y.shape:
        raise ValueError(f"idx has shape {idx.shape} but y has shape {y.shape}")
    OH, OW = y.shape[2:]
    x = xp.zeros((N, C, H, W), dtype=y.dtype)
    zero = xp.zeros((), dtype=y.dtype)
    for p in range(F):
        for q in range(F):
            x[:, :, p:OH * F:F, q:OW * F:F] = xp.where(idx == p * F + q, y, zero)
    return x


def gather_pool2d(x, idx, F):
    """Take from each F x F window of ``x`` the value at offset ``idx``: the adjoint of max_unpool2d.

    ``<max_unpool2d(y, idx, F, x.shape), x> == <y, gather_pool2d(x, idx, F)>``. With the indices of
    ``max_pool2d(x, F)`` it returns the pooled maxima themselves. BPTT uses it to carry a signal
    back through an unpooling.

    Parameters
    ----------
    x : (N, C, H, W) ndarray
    idx : (N, C, OH, OW) int ndarray
    F : int

    Returns
    -------
    y : (N, C, OH, OW) ndarray
    """
    xp = get_array_module(x)
    OH, OW = pool_output_size(x.shape, F)
    if idx.shape != x.shape[:2] + (OH, OW):
        raise ValueError(f"idx has shape {idx.shape}, expected {x.shape[:2] + (OH, OW)} "
                         f"for x of shape {x.shape} and F={F}")
    y = xp.zeros(idx.shape, dtype=x.dtype)
    for p in range(F):
        for q in range(F):
            y = xp.where(idx == p * F + q, x[:, :, p:OH * F:F, q:OW * F:F], y)
    return y


def avg_pool2d(x, F):
    """Average pooling (paper Eq. 15).

    Parameters
    ----------
    x : (N, C, H, W) ndarray
    F : int

    Returns
    -------
    y : (N, C, OH, OW) ndarray
        The mean of each F x F window.
    """
    OH, OW = pool_output_size(x.shape, F)
    y = x[:, :, 0:OH * F:F, 0:OW * F:F].copy()
    for p in range(F):
        for q in range(F):
            if p or q:
                y += x[:, :, p:OH * F:F, q:OW * F:F]
    y *= 1.0 / (F * F)
    return y


def upsample_nearest2d(y, F, output_size=None):
    """Nearest-neighbour upsampling: copy each value onto its whole F x F window.

    Parameters
    ----------
    y : (N, C, OH, OW) ndarray
    F : int
    output_size : (H, W), optional
        Default ``(OH*F, OW*F)``; rows and columns beyond ``OH*F``, ``OW*F`` are zero.

    Returns
    -------
    x : (N, C, H, W) ndarray
    """
    xp = get_array_module(y)
    N, C, H, W = _unpooled_shape(y, F, output_size)
    OH, OW = y.shape[2:]
    x = xp.zeros((N, C, H, W), dtype=y.dtype)
    for p in range(F):
        for q in range(F):
            x[:, :, p:OH * F:F, q:OW * F:F] = y
    return x


def avg_unpool2d(y, F, alpha=None, output_size=None):
    """Inverse of average pooling: nearest-neighbour upsampling divided by alpha (paper Eq. 16).

    Parameters
    ----------
    y : (N, C, OH, OW) ndarray
    F : int
    alpha : float, optional
        Scale of the backward signal; default ``F*F``, which makes this the exact adjoint of
        :func:`avg_pool2d`.
    output_size : (H, W), optional
        As in :func:`upsample_nearest2d`.

    Returns
    -------
    x : (N, C, H, W) ndarray
    """
    alpha = F * F if alpha is None else alpha        # a host number (never a device scalar)
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    x = upsample_nearest2d(y, F, output_size)
    x *= 1.0 / alpha                                   # Eq. 16
    return x


# ----------------------------------------------------------------------------- pooling kinds
class MaxPool:
    """P = max pooling with indices (Eq. 12-13), P^-1 = max unpooling at those indices (Eq. 14).

    ``unpool`` is the exact adjoint of "take the values at the offsets", so Phi's gradient is exact
    for fixed indices; the indices are piecewise constant, which BPTT takes as given.
    """

    needs_indices = True

    def __init__(self, F, alpha=None):
        self.F = F                   # alpha: unused, max unpooling puts the values back unscaled

    def pool(self, z):
        """(P(z), indices): z (N, C, H, W) -> (N, C, OH, OW) maxima and their offsets."""
        return max_pool2d(z, self.F)

    def unpool(self, y, idx, size):
        """P^-1(y): back onto the (H, W) map ``size`` at the offsets ``idx``."""
        return max_unpool2d(y, idx, self.F, size)

    def pool_vjp(self, g, idx, size):
        """P^T g, the adjoint of ``pool`` for fixed indices (BPTT through a forward route)."""
        return max_unpool2d(g, idx, self.F, size)

    def unpool_vjp(self, z, idx):
        """(P^-1)^T z, the adjoint of ``unpool`` (BPTT through a backward route)."""
        return gather_pool2d(z, idx, self.F)


class AvgPool:
    """P = average pooling (Eq. 15), P^-1 = nearest-neighbour upsampling divided by alpha (Eq. 16).

    No indices: the forward and the backward route can never disagree about where a value came
    from, the paper's fix for spiking networks. ``alpha = F*F`` makes P^-1 the exact adjoint of P.
    """

    needs_indices = False

    def __init__(self, F, alpha=None):
        self.F = F
        self.alpha = float(F * F if alpha is None else alpha)
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")

    def pool(self, z):
        return avg_pool2d(z, self.F), None

    def unpool(self, y, idx, size):
        return avg_unpool2d(y, self.F, self.alpha, size)

    def pool_vjp(self, g, idx, size):
        return avg_unpool2d(g, self.F, self.F * self.F, size)          # the adjoint: alpha = F*F

    def unpool_vjp(self, z, idx):
        y = avg_pool2d(z, self.F)
        y *= self.F * self.F / self.alpha                              # (P^-1)^T = (F^2 / alpha) P
        return y


POOLS = {"avg": AvgPool, "max": MaxPool}
