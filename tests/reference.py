"""Slow, obviously-correct loop implementations that the vectorised ops are tested against."""
import numpy as np


def conv2d_loop(x, w, b=None, stride=1, padding=0):
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    xpad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    OH = (H + 2 * padding - KH) // stride + 1
    OW = (W + 2 * padding - KW) // stride + 1
    y = np.zeros((N, F, OH, OW), dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            for i in range(OH):
                for j in range(OW):
                    patch = xpad[n, :, i * stride:i * stride + KH, j * stride:j * stride + KW]
                    y[n, f, i, j] = np.sum(patch * w[f]) + (0 if b is None else b[f])
    return y


def conv_transpose2d_loop(y, w, H, W, stride=1, padding=0):
    """Every output pixel of the forward conv sends w-weighted copies back to its receptive field."""
    N, F, OH, OW = y.shape
    _, C, KH, KW = w.shape
    xpad = np.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=y.dtype)
    for n in range(N):
        for f in range(F):
            for i in range(OH):
                for j in range(OW):
                    xpad[n, :, i * stride:i * stride + KH, j * stride:j * stride + KW] += w[f] * y[n, f, i, j]
    return xpad[:, :, padding:padding + H, padding:padding + W]


def conv2d_weight_loop(x, gy, KH, KW, stride=1, padding=0):
    N, C, H, W = x.shape
    _, F, OH, OW = gy.shape
    xpad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    gw = np.zeros((F, C, KH, KW), dtype=x.dtype)
    for f in range(F):
        for c in range(C):
            for p in range(KH):
                for q in range(KW):
                    s = 0.0
                    for n in range(N):
                        for i in range(OH):
                            for j in range(OW):
                                s += xpad[n, c, i * stride + p, j * stride + q] * gy[n, f, i, j]
                    gw[f, c, p, q] = s
    return gw


def max_pool2d_loop(x, F):
    N, C, H, W = x.shape
    OH, OW = H // F, W // F
    y = np.zeros((N, C, OH, OW), dtype=x.dtype)
    idx = np.zeros((N, C, OH, OW), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    best, arg = -np.inf, 0
                    for p in range(F):          # row-major scan, strict '>' keeps the first maximum
                        for q in range(F):
                            v = x[n, c, i * F + p, j * F + q]
                            if v > best:
                                best, arg = v, p * F + q
                    y[n, c, i, j], idx[n, c, i, j] = best, arg
    return y, idx


def max_unpool2d_loop(y, idx, F, H, W):
    N, C, OH, OW = y.shape
    x = np.zeros((N, C, H, W), dtype=y.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    p, q = divmod(int(idx[n, c, i, j]), F)
                    x[n, c, i * F + p, j * F + q] = y[n, c, i, j]
    return x


def avg_pool2d_loop(x, F):
    N, C, H, W = x.shape
    OH, OW = H // F, W // F
    y = np.zeros((N, C, OH, OW), dtype=x.dtype)
    for i in range(OH):
        for j in range(OW):
            y[:, :, i, j] = x[:, :, i * F:(i + 1) * F, j * F:(j + 1) * F].mean(axis=(2, 3))
    return y


def avg_unpool2d_loop(y, F, alpha, H, W):
    N, C, OH, OW = y.shape
    x = np.zeros((N, C, H, W), dtype=y.dtype)
    for i in range(H):
        for j in range(W):
            if i // F < OH and j // F < OW:      # Eq. 16 with ceil(i/F) for 1-based i
                x[:, :, i, j] = y[:, :, i // F, j // F] / alpha
    return x
