"""Convolution by im2col, its transpose by col2im, and the weight gradient, written out by hand.

Symbols: N batch, C input channels, H, W input height and width, C_out output channels (filters),
KH, KW kernel height and width, OH, OW output height and width. (F is kept for the pooling window.)

``conv2d`` is a cross-correlation (as in every deep-learning library):

    y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] * xpad[n, c, i*stride + p, j*stride + q]

``im2col`` lays every receptive field out as a column, (N, C*KH*KW, OH*OW), so that the convolution
is the matrix product ``w.reshape(C_out, C*KH*KW) @ col[n]`` for every sample n.

This module is the readable path: each op is a few lines around im2col or col2im. The same numbers,
arranged for speed (the batch next to the pixels, reused buffers), are in :mod:`minimal_ep.fast.ops`;
nothing here calls it. A network built with ``fast=True`` (the default of ``build_network``) swaps
its conv layers for the fast ones; ``fast=False`` runs these ops, for stepping through in a debugger.

``conv_transpose2d`` is the exact adjoint of ``conv2d`` with respect to x,
``<conv2d(x, w), y> == <x, conv_transpose2d(y, w)>``: it multiplies by the transposed weight matrix
and ``col2im`` sums every column back onto the pixels it was read from. In the convergent RNN it is
the *backward route* ``w ~* s`` that carries a layer's state down to the layer below (paper Eq. 9).

``conv2d_weight`` is the adjoint with respect to w, ``<conv2d(x, w), gy> == <w, conv2d_weight(x, gy)>``:
the correlation of the input with the output signal, the EP / BPTT weight update (paper Eq. 11).

im2col and col2im loop over the KH*KW kernel offsets with strided slices (the Chainer way):
col2im adds with ``+=`` into the padded image one offset at a time, so overlapping windows are
summed in a fixed order, deterministically, and identically under CuPy (no scatter with
duplicate indices).
"""
from .backend import get_array_module


def _pair(v, name):
    """(v, v) for an int, or a validated pair."""
    pair = (v, v) if isinstance(v, int) else tuple(v)
    if len(pair) != 2 or not all(isinstance(k, int) for k in pair):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return pair


def _check_4d(a, name, symbols):
    if getattr(a, "ndim", None) != 4:
        raise ValueError(f"{name} must be 4-d {symbols}, got shape {getattr(a, 'shape', None)}")


def _check_same_dtype(a, b, names):
    if a.dtype != b.dtype:
        raise ValueError(f"dtype mismatch: {names[0]} is {a.dtype}, {names[1]} is {b.dtype}; "
                         "cast explicitly (no silent promotion)")


def conv_output_size(size, kernel, stride=1, padding=0):
    """Output length of a convolution along one axis: ``(size + 2*padding - kernel) // stride + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


def _geometry(H, W, KH, KW, stride, padding, what):
    """Validated (OH, OW) for an H x W input; ValueError naming the shapes when the kernel does not fit."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if KH < 1 or KW < 1:
        raise ValueError(f"kernel size must be >= 1, got {KH}x{KW}")
    if KH > H + 2 * padding or KW > W + 2 * padding:
        raise ValueError(f"{what}: kernel {KH}x{KW} is larger than the padded input "
                         f"{H + 2 * padding}x{W + 2 * padding} (input {H}x{W}, padding {padding})")
    return conv_output_size(H, KH, stride, padding), conv_output_size(W, KW, stride, padding)


def im2col(x, KH, KW, stride=1, padding=0):
    """Lay every KH x KW receptive field of ``x`` out as a column.

    Parameters
    ----------
    x : (N, C, H, W) ndarray
    KH, KW : int
        Kernel height and width.
    stride, padding : int
        Stride and zero padding, the same along both axes.

    Returns
    -------
    col : (N, C*KH*KW, OH*OW) ndarray
        ``col[n, (c*KH + p)*KW + q, i*OW + j] == xpad[n, c, i*stride + p, j*stride + q]``, where
        ``xpad`` is ``x`` zero-padded by ``padding`` on every side.
    """
    _check_4d(x, "x", "(N, C, H, W)")
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OH, OW = _geometry(H, W, KH, KW, stride, padding, "im2col")
    img = x if padding == 0 else xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    col = xp.empty((N, C, KH, KW, OH, OW), dtype=x.dtype)
    for p in range(KH):                      # one kernel offset at a time: a strided slice
        for q in range(KW):
            col[:, :, p, q] = img[:, :, p:p + stride * OH:stride, q:q + stride * OW:stride]
    return col.reshape(N, C * KH * KW, OH * OW)


def col2im(col, x_shape, KH, KW, stride=1, padding=0):
    """Sum every column back onto the pixels it was read from: the adjoint of :func:`im2col`.

    Parameters
    ----------
    col : (N, C*KH*KW, OH*OW) ndarray
    x_shape : tuple of 4 ints
        (N, C, H, W), the shape of the image ``col`` was (or would be) made from.
    KH, KW, stride, padding : int
        As in :func:`im2col`.

    Returns
    -------
    x : (N, C, H, W) ndarray
        Overlapping windows are summed, one kernel offset at a time (deterministic, no scatter).
    """
    xp = get_array_module(col)
    N, C, H, W = x_shape
    OH, OW = _geometry(H, W, KH, KW, stride, padding, "col2im")
    if col.shape != (N, C * KH * KW, OH * OW):
        raise ValueError(f"col2im: col has shape {col.shape}, expected {(N, C * KH * KW, OH * OW)} "
                         f"for x_shape {tuple(x_shape)} and a {KH}x{KW} kernel")
    col = col.reshape(N, C, KH, KW, OH, OW)
    img = xp.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=col.dtype)
    for p in range(KH):
        for q in range(KW):
            img[:, :, p:p + stride * OH:stride, q:q + stride * OW:stride] += col[:, :, p, q]
    if padding == 0:
        return img
    return xp.ascontiguousarray(img[:, :, padding:padding + H, padding:padding + W])


def conv2d(x, w, b=None, stride=1, padding=0):
    """2-d cross-correlation, NCHW: the *forward route* ``w * x`` of a convolutional layer.

    Parameters
    ----------
    x : (N, C, H, W) ndarray
    w : (C_out, C, KH, KW) ndarray
    b : (C_out,) ndarray, optional
    stride, padding : int

    Returns
    -------
    y : (N, C_out, OH, OW) ndarray
        ``OH = (H + 2*padding - KH) // stride + 1``, likewise OW.
    """
    _check_4d(x, "x", "(N, C, H, W)")
    _check_4d(w, "w", "(C_out, C, KH, KW)")
    _check_same_dtype(x, w, ("x", "w"))
    N, C, H, W = x.shape
    C_out, Cw, KH, KW = w.shape
    if C != Cw:
        raise ValueError(f"conv2d: x has {C} channels (shape {x.shape}) but w expects {Cw} "
                         f"(shape {w.shape})")
    OH, OW = _geometry(H, W, KH, KW, stride, padding, f"conv2d of x {x.shape} with w {w.shape}")
    if b is not None and (b.shape != (C_out,) or b.dtype != x.dtype):
        raise ValueError(f"conv2d: b has shape {b.shape} and dtype {b.dtype}, expected ({C_out},) "
                         f"and {x.dtype}")
    w_mat = w.reshape(C_out, C * KH * KW)                        # (C_out, C*KH*KW)
    col = im2col(x, KH, KW, stride, padding)                     # (N, C*KH*KW, OH*OW)
    y = (w_mat @ col).reshape(N, C_out, OH, OW)                  # one product per sample
    if b is not None:
        y += b.reshape(1, C_out, 1, 1)
    return y


def conv_transpose2d(y, w, stride=1, padding=0, output_size=None):
    """Transposed convolution: the exact adjoint of :func:`conv2d` with respect to x.

    The *backward route* ``w ~* y`` of paper Eq. 9: it satisfies
    ``<conv2d(x, w), y> == <x, conv_transpose2d(y, w)>`` for every x of shape (N, C, H, W).

    Parameters
    ----------
    y : (N, C_out, OH, OW) ndarray
    w : (C_out, C, KH, KW) ndarray
    stride, padding : int
    output_size : (H, W) or (N, C, H, W), optional
        With stride > 1 several input sizes give the same OH, OW; this picks one. Default: the
        smallest, ``(OH - 1)*stride - 2*padding + KH``.

    Returns
    -------
    x : (N, C, H, W) ndarray
    """
    _check_4d(y, "y", "(N, C_out, OH, OW)")
    _check_4d(w, "w", "(C_out, C, KH, KW)")
    _check_same_dtype(y, w, ("y", "w"))
    N, C_out, OH, OW = y.shape
    Cw_out, C, KH, KW = w.shape
    if C_out != Cw_out:
        raise ValueError(f"conv_transpose2d: y has {C_out} channels (shape {y.shape}) but w has "
                         f"{Cw_out} filters (shape {w.shape})")
    if output_size is None:
        output_size = ((OH - 1) * stride - 2 * padding + KH, (OW - 1) * stride - 2 * padding + KW)
    H, W = _pair(tuple(output_size)[-2:] if not isinstance(output_size, int) else output_size,
                 "output_size")
    if H < 1 or W < 1 or _geometry(H, W, KH, KW, stride, padding, "conv_transpose2d") != (OH, OW):
        raise ValueError(f"conv_transpose2d: output_size {(H, W)} does not convolve back to "
                         f"{(OH, OW)} with kernel {KH}x{KW}, stride {stride}, padding {padding}")
    w_mat_T = w.reshape(C_out, C * KH * KW).T                             # (C*KH*KW, C_out)
    col = w_mat_T @ y.reshape(N, C_out, OH * OW)                          # (N, C*KH*KW, OH*OW)
    return col2im(col, (N, C, H, W), KH, KW, stride, padding)


def conv2d_weight(x, gy, kernel_size, stride=1, padding=0):
    """Gradient of ``<conv2d(x, w), gy>`` with respect to w: the adjoint of conv2d in w.

    This is the correlation of the presynaptic input with the postsynaptic signal, summed over
    the batch: the convolutional weight update of EP (paper Eq. 11) and of BPTT.

    Parameters
    ----------
    x : (N, C, H, W) ndarray
    gy : (N, C_out, OH, OW) ndarray
    kernel_size : int or (KH, KW)
    stride, padding : int

    Returns
    -------
    gw : (C_out, C, KH, KW) ndarray
        ``<conv2d(x, w), gy> == <w, conv2d_weight(x, gy, (KH, KW))>`` for every w.
    """
    _check_4d(x, "x", "(N, C, H, W)")
    _check_4d(gy, "gy", "(N, C_out, OH, OW)")
    _check_same_dtype(x, gy, ("x", "gy"))
    xp = get_array_module(x, gy)
    KH, KW = _pair(kernel_size, "kernel_size")
    N, C, H, W = x.shape
    Ng, C_out, OH, OW = gy.shape
    expected = _geometry(H, W, KH, KW, stride, padding, f"conv2d_weight of x {x.shape}")
    if Ng != N or (OH, OW) != expected:
        raise ValueError(f"conv2d_weight: gy has shape {gy.shape}, expected ({N}, C_out, "
                         f"{expected[0]}, {expected[1]}) for x {x.shape} and a {KH}x{KW} kernel")
    col = im2col(x, KH, KW, stride, padding)                               # (N, C*KH*KW, OH*OW)
    gw = xp.tensordot(gy.reshape(N, C_out, OH * OW), col, axes=((0, 2), (0, 2)))   # (C_out, C*KH*KW)
    return gw.reshape(C_out, C, KH, KW)
