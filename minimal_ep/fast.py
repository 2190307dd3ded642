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
_SCRATCH = {}                # (role, shape, dtype, backend, device) -> buffer, oldest first
SCRATCH_BYTES = 1 << 30      # at most this much kept; beyond it the oldest buffers are released


def _scratch(like, role, shape):
    """A reusable uninitialised array for the temporary ``role``, on ``like``'s device and dtype."""
    xp = get_array_module(like)
    key = (role, shape, like.dtype, xp.__name__, getattr(like, "device", None))
    buf = _SCRATCH.pop(key, None)
    if buf is None:
        buf = xp.empty(shape, dtype=like.dtype)
        while _SCRATCH and sum(b.nbytes for b in _SCRATCH.values()) + buf.nbytes > SCRATCH_BYTES:
            del _SCRATCH[next(iter(_SCRATCH))]
    _SCRATCH[key] = buf                                  # now the most recently used
    return buf


def clear_scratch():
    """Release the scratch buffers (memory measurements start from an empty cache)."""
    _SCRATCH.clear()


def gemm(a, b, out=None):
    """``a @ b`` (``out``: where to write it): every matrix product of the fast path goes through
    here, the one place a benchmark needs to time or count to see how much of a step is GEMM."""
    return get_array_module(a, b).matmul(a, b, out=out)


def per_sample(OH, OW):
    """Whether one product per sample is already wide enough for BLAS (maps of 256+ pixels)."""
    return OH * OW >= 256


# ----------------------------------------------------------------------------- batch-last columns
def to_batch_last(x, padding=0, role="img"):
    """(N, C, H, W) -> (C, H + 2*padding, W + 2*padding, N), zero-padded: the batch innermost.

    A scratch buffer (valid until the next call with the same role and shape).
    """
    N, C, H, W = x.shape
    img = _scratch(x, role, (C, H + 2 * padding, W + 2 * padding, N))
    if padding:
        img.fill(0)
    img[:, padding:padding + H, padding:padding + W, :] = x.transpose(1, 2, 3, 0)
    return img


def from_batch_last(y):
    """(C, H, W, N) -> (N, C, H, W), a new array."""
    return y.transpose(3, 0, 1, 2).copy()


def im2col_batched(x, KH, KW, stride, padding):
    """:func:`minimal_ep.conv.im2col` for the whole batch at once, the batch innermost.

    Parameters
    ----------
    x : (N, C, H, W) ndarray
    KH, KW, stride, padding : int
        As in im2col (already validated by the caller).

    Returns
    -------
    col : (C*KH*KW, OH*OW*N) ndarray
        ``col[(c*KH + p)*KW + q, (i*OW + j)*N + n] == xpad[n, c, i*stride + p, j*stride + q]``.
        A scratch buffer: valid until the next call with the same shape.
    """
    N, C, H, W = x.shape
    OH = _conv.conv_output_size(H, KH, stride, padding)
    OW = _conv.conv_output_size(W, KW, stride, padding)
    img = to_batch_last(x, padding)                                   # (C, Hp, Wp, N)
    col = _scratch(x, "col", (C * KH * KW, OH * OW * N)).reshape(C, KH, KW, OH, OW, N)
    for p in range(KH):                      # one kernel offset at a time: a strided slice
        for q in range(KW):
            col[:, p, q] = img[:, p:p + stride * OH:stride, q:q + stride * OW:stride, :]
    return col.reshape(C * KH * KW, OH * OW * N)


def col2im_batched(col, x_shape, KH, KW, stride, padding):
    """:func:`minimal_ep.conv.col2im` for the columns of :func:`im2col_batched`.

    col : (C*KH*KW, OH*OW*N) ndarray  ->  x : (N, C, H, W) ndarray (a new array).
    """
    N, C, H, W = x_shape
    OH = _conv.conv_output_size(H, KH, stride, padding)
    OW = _conv.conv_output_size(W, KW, stride, padding)
    col = col.reshape(C, KH, KW, OH, OW, N)
    img = _scratch(col, "col2im_img", (C, H + 2 * padding, W + 2 * padding, N))
    img.fill(0)
    for p in range(KH):                      # overlapping windows summed in a fixed order
        for q in range(KW):
            img[:, p:p + stride * OH:stride, q:q + stride * OW:stride, :] += col[:, p, q]
    return from_batch_last(img[:, padding:padding + H, padding:padding + W, :])


# ----------------------------------------------------------------------------- the three ops
# Each op has a batch-last core (``*_bl``: maps as (C, H, W, N)) and the NCHW wrapper the public
# ops call; the fused layers below chain the cores and transpose only their small pooled maps.
def conv2d_bl(x, w, stride, padding):
    """The convolution of NCHW ``x`` with w, batch last: (C_out, OH, OW, N), a scratch buffer."""
    C_out, C, KH, KW = w.shape
    col = im2col_batched(x, KH, KW, stride, padding)                  # (C*KH*KW, OH*OW*N)
    y = gemm(w.reshape(C_out, -1), col, out=_scratch(x, "gemm_out", (C_out, col.shape[1])))
    return y.reshape((C_out,) + _out_size(x.shape, KH, KW, stride, padding) + (len(x),))


def conv_transpose2d_bl(y, w, x_shape, stride, padding):
    """The transposed convolution of batch-last y (C_out, OH, OW, N) onto an NCHW ``x_shape`` image."""
    C_out = y.shape[0]
    w_mat_T = w.reshape(C_out, -1).T                                  # (C*KH*KW, C_out)
    col = gemm(w_mat_T, y.reshape(C_out, -1), out=_scratch(y, "col", (w_mat_T.shape[0], y[0].size)))
    return col2im_batched(col, x_shape, w.shape[2], w.shape[3], stride, padding)


def conv2d_weight_bl(x, gy, KH, KW, stride, padding):
    """The weight gradient of NCHW ``x`` and batch-last gy (C_out, OH, OW, N)."""
    C_out, C = gy.shape[0], x.shape[1]
    col = im2col_batched(x, KH, KW, stride, padding)                  # (C*KH*KW, OH*OW*N)
    gw = gemm(gy.reshape(C_out, -1), col.T)                           # (C_out, C*KH*KW): one product
    return gw.reshape(C_out, C, KH, KW)


def conv2d(x, w, stride, padding):
    """:func:`minimal_ep.conv.conv2d` without the bias; x (N, C, H, W), w (C_out, C, KH, KW)."""
    C_out, C, KH, KW = w.shape
    OH, OW = _out_size(x.shape, KH, KW, stride, padding)
    if per_sample(OH, OW):                   # wide maps: one product per sample, straight into NCHW
        col = _conv.im2col(x, KH, KW, stride, padding)               # (N, C*KH*KW, OH*OW)
        return gemm(w.reshape(C_out, -1), col).reshape(len(x), C_out, OH, OW)
    return from_batch_last(conv2d_bl(x, w, stride, padding))         # (N, C_out, OH, OW)


def conv_transpose2d(y, w, x_shape, stride, padding):
    """:func:`minimal_ep.conv.conv_transpose2d` onto an image of shape ``x_shape`` (N, C, H, W)."""
    N, C_out, OH, OW = y.shape
    if per_sample(OH, OW):
        col = gemm(w.reshape(C_out, -1).T, y.reshape(N, C_out, OH * OW))   # (N, C*KH*KW, OH*OW)
        return _conv.col2im(col, x_shape, w.shape[2], w.shape[3], stride, padding)
    return conv_transpose2d_bl(to_batch_last(y, role="gemm_in"), w, x_shape, stride, padding)


def conv2d_weight(x, gy, KH, KW, stride, padding):
    """:func:`minimal_ep.conv.conv2d_weight`; x (N, C, H, W), gy (N, C_out, OH, OW)."""
    N, C_out, OH, OW = gy.shape
    if per_sample(OH, OW):
        col = _conv.im2col(x, KH, KW, stride, padding)               # (N, C*KH*KW, OH*OW)
        gy_mat = gy.reshape(N, C_out, OH * OW).transpose(1, 0, 2).reshape(C_out, N * OH * OW)
        gw = gemm(gy_mat, col.transpose(0, 2, 1).reshape(N * OH * OW, -1))   # sums over n and pixels
        return gw.reshape(C_out, x.shape[1], KH, KW)
    return conv2d_weight_bl(x, to_batch_last(gy, role="gemm_in"), KH, KW, stride, padding)


def _out_size(x_shape, KH, KW, stride, padding):
    return (_conv.conv_output_size(x_shape[2], KH, stride, padding),
            _conv.conv_output_size(x_shape[3], KW, stride, padding))


# ----------------------------------------------------------------------------- max pooling, batch last
def max_pool_bl(z, F):
    """:func:`minimal_ep.pooling.max_pool2d` of a batch-last map z (C, H, W, N): (y, idx), batch last.

    The maximum of the F*F offset views, then, from the last offset to the first, the offset of a
    view equal to it: the first maximum in row-major order wins, as in max_pool2d.
    """
    xp = get_array_module(z)
    OH, OW = z.shape[1] // F, z.shape[2] // F
    views = [z[:, p:OH * F:F, q:OW * F:F, :] for p in range(F) for q in range(F)]
    y = views[0].copy()
    for v in views[1:]:
        xp.maximum(y, v, out=y)
    idx = xp.full(y.shape, F * F - 1, dtype=xp.int32)
    for k in range(F * F - 2, -1, -1):
        idx = xp.where(views[k] == y, xp.int32(k), idx)
    return y, idx


def max_unpool_bl(y, idx, F, size):
    """:func:`minimal_ep.pooling.max_unpool2d` of batch-last y, idx (C, OH, OW, N) onto (C, H, W, N).

    Each offset's values are written straight into their strided place, ``y * (idx == k)``; only
    the rows and columns that floor pooling dropped are zeroed separately.
    """
    xp = get_array_module(y)
    C, OH, OW, N = y.shape
    x = _scratch(y, "unpool", (C,) + tuple(size) + (N,))
    x[:, OH * F:] = 0
    x[:, :, OW * F:] = 0
    for p in range(F):
        for q in range(F):
            xp.multiply(y, idx == p * F + q, out=x[:, p:OH * F:F, q:OW * F:F, :])
    return x


def gather_pool_bl(z, idx, F):
    """:func:`minimal_ep.pooling.gather_pool2d` of batch-last z at batch-last offsets idx."""
    xp = get_array_module(z)
    C, OH, OW, N = idx.shape
    y = xp.zeros(idx.shape, dtype=z.dtype)
    for p in range(F):
        for q in range(F):
            y += z[:, p:OH * F:F, q:OW * F:F, :] * (idx == p * F + q)
    return y
