"""The fast path: the convolutions of :mod:`minimal_ep.conv`, the same numbers arranged for speed.

Read :mod:`minimal_ep.conv` first; this module changes how the arrays are laid out in memory, never
what is computed. ``ENABLED`` is the one switch: when it is true (the default) the public ops hand
their validated arguments over to the functions below; ``MINIMAL_EP_FAST=0`` in the environment, or
``with fast.use(False):``, keeps every op on the readable path. The tests run both and compare.

Two arrangements:

* **The batch next to the pixels.** With im2col's (N, C*KH*KW, OH*OW) layout a convolution is N
  matrix products, each only OH*OW columns wide (121 for the 11x11 maps of the paper's second conv
  layer), and BLAS runs such thin products far below its peak. The columns laid out as
  (C*KH*KW, N*OH*OW) make the whole batch ONE product with N*OH*OW columns. The price is one
  transposing copy of the image and one of the result, each C*KH*KW (or C_out) times smaller than
  the columns. Wide maps (256+ pixels per sample) are wide enough already and keep im2col's layout.
* **Reused buffers.** A phase calls the same convolutions on the same shapes hundreds of times; their
  column matrices (15-70 MB each for the paper's network at batch 125) are temporaries that never
  leave this module. A fresh allocation of that size costs page faults on every step (~20% of a
  2C2FC step), so they are kept in a small cache keyed by (role, shape, dtype, device) and reused.
  A buffer is never returned to the caller: every result is a new array.
"""
import contextlib
import os

from . import conv as _conv
from .backend import get_array_module

ENABLED = os.environ.get("MINIMAL_EP_FAST", "1").strip() != "0"


@contextlib.contextmanager
def use(enabled):
    """``with fast.use(False):`` runs the block on the readable path (and restores the switch)."""
    global ENABLED
    previous, ENABLED = ENABLED, bool(enabled)
    try:
        yield
    finally:
        ENABLED = previous


# ----------------------------------------------------------------------------- scratch buffers
_SCRATCH = {}
_SCRATCH_MAX = 16            # buffers kept at once (5 per small-map conv layer); more: start over


def _scratch(like, role, shape):
    """A reusable uninitialised array for the temporary ``role``, on ``like``'s device and dtype."""
    xp = get_array_module(like)
    key = (role, tuple(shape), str(like.dtype), xp.__name__, str(getattr(like, "device", "cpu")))
    if key not in _SCRATCH:
        if len(_SCRATCH) >= _SCRATCH_MAX:
            _SCRATCH.clear()
        _SCRATCH[key] = xp.empty(shape, dtype=like.dtype)
    return _SCRATCH[key]


def clear_scratch():
    """Release the scratch buffers (memory measurements start from an empty cache)."""
    _SCRATCH.clear()


def _per_sample(OH, OW):
    """Whether one product per sample is already wide enough for BLAS (maps of 256+ pixels)."""
    return OH * OW >= 256


# ----------------------------------------------------------------------------- batch-major columns
def im2col_batched(x, KH, KW, stride, padding):
    """:func:`minimal_ep.conv.im2col` with the batch moved next to the pixels.

    Parameters
    ----------
    x : (N, C, H, W) ndarray
    KH, KW, stride, padding : int
        As in im2col (already validated by the caller).

    Returns
    -------
    col : (C*KH*KW, N*OH*OW) ndarray
        ``col[(c*KH + p)*KW + q, (n*OH + i)*OW + j] == xpad[n, c, i*stride + p, j*stride + q]``.
        A scratch buffer: valid until the next call with the same shape.
    """
    N, C, H, W = x.shape
    OH = _conv.conv_output_size(H, KH, stride, padding)
    OW = _conv.conv_output_size(W, KW, stride, padding)
    # one copy both transposes to channels-first and zero-pads (no separate pad copy)
    img = _scratch(x, "im2col_img", (C, N, H + 2 * padding, W + 2 * padding))
    if padding:
        img.fill(0)
    img[:, :, padding:padding + H, padding:padding + W] = x.transpose(1, 0, 2, 3)   # (C, N, Hp, Wp)
    col = _scratch(x, "col", (C * KH * KW, N * OH * OW)).reshape(C, KH, KW, N, OH, OW)
    for p in range(KH):                      # one kernel offset at a time: a strided slice
        for q in range(KW):
            col[:, p, q] = img[:, :, p:p + stride * OH:stride, q:q + stride * OW:stride]  # (C, N, OH, OW)
    return col.reshape(C * KH * KW, N * OH * OW)


def col2im_batched(col, x_shape, KH, KW, stride, padding):
    """:func:`minimal_ep.conv.col2im` for the columns of :func:`im2col_batched`.

    col : (C*KH*KW, N*OH*OW) ndarray  ->  x : (N, C, H, W) ndarray (a new array).
    """
    N, C, H, W = x_shape
    OH = _conv.conv_output_size(H, KH, stride, padding)
    OW = _conv.conv_output_size(W, KW, stride, padding)
    col = col.reshape(C, KH, KW, N, OH, OW)
    img = _scratch(col, "col2im_img", (C, N, H + 2 * padding, W + 2 * padding))
    img.fill(0)
    for p in range(KH):                      # overlapping windows summed in a fixed order
        for q in range(KW):
            img[:, :, p:p + stride * OH:stride, q:q + stride * OW:stride] += col[:, p, q]
    img = img[:, :, padding:padding + H, padding:padding + W]                # (C, N, H, W) view
    return img.transpose(1, 0, 2, 3).copy()                                  # (N, C, H, W)


# ----------------------------------------------------------------------------- the three ops
def conv2d(x, w, stride, padding):
    """:func:`minimal_ep.conv.conv2d` without the bias; x (N, C, H, W), w (C_out, C, KH, KW)."""
    xp = get_array_module(x, w)
    N = len(x)
    C_out, C, KH, KW = w.shape
    OH = _conv.conv_output_size(x.shape[2], KH, stride, padding)
    OW = _conv.conv_output_size(x.shape[3], KW, stride, padding)
    w_mat = w.reshape(C_out, C * KH * KW)
    if _per_sample(OH, OW):                   # wide maps: one product per sample, straight into NCHW
        return (w_mat @ _conv.im2col(x, KH, KW, stride, padding)).reshape(N, C_out, OH, OW)
    col = im2col_batched(x, KH, KW, stride, padding)                  # (C*KH*KW, N*OH*OW)
    y = xp.matmul(w_mat, col, out=_scratch(x, "gemm_out", (C_out, N * OH * OW)))  # the whole batch
    return y.reshape(C_out, N, OH, OW).transpose(1, 0, 2, 3).copy()  # (N, C_out, OH, OW)


def conv_transpose2d(y, w, x_shape, stride, padding):
    """:func:`minimal_ep.conv.conv_transpose2d` onto an image of shape ``x_shape`` (N, C, H, W)."""
    xp = get_array_module(y, w)
    N, C_out, OH, OW = y.shape
    KH, KW = w.shape[2:]
    w_mat_T = w.reshape(C_out, -1).T                                  # (C*KH*KW, C_out)
    if _per_sample(OH, OW):
        col = w_mat_T @ y.reshape(N, C_out, OH * OW)                  # (N, C*KH*KW, OH*OW)
        return _conv.col2im(col, x_shape, KH, KW, stride, padding)
    y_mat = _scratch(y, "gemm_in", (C_out, N, OH, OW))
    y_mat[...] = y.transpose(1, 0, 2, 3)
    y_mat = y_mat.reshape(C_out, N * OH * OW)                         # (C_out, N*OH*OW)
    col = xp.matmul(w_mat_T, y_mat, out=_scratch(y, "col", (w_mat_T.shape[0], N * OH * OW)))
    return col2im_batched(col, x_shape, KH, KW, stride, padding)


def conv2d_weight(x, gy, KH, KW, stride, padding):
    """:func:`minimal_ep.conv.conv2d_weight`; x (N, C, H, W), gy (N, C_out, OH, OW)."""
    xp = get_array_module(x, gy)
    N, C = x.shape[:2]
    C_out, OH, OW = gy.shape[1:]
    if _per_sample(OH, OW):
        col = _conv.im2col(x, KH, KW, stride, padding)               # (N, C*KH*KW, OH*OW)
        gw = xp.tensordot(gy.reshape(N, C_out, OH * OW), col, axes=((0, 2), (0, 2)))
        return gw.reshape(C_out, C, KH, KW)
    col = im2col_batched(x, KH, KW, stride, padding)                  # (C*KH*KW, N*OH*OW)
    gy_mat = xp.ascontiguousarray(gy.transpose(1, 0, 2, 3)).reshape(C_out, N * OH * OW)
    gw = xp.tensordot(gy_mat, col, axes=((1,), (1,)))                 # (C_out, C*KH*KW): one product
    return gw.reshape(C_out, C, KH, KW)
