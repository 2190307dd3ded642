"""Fused layers: a conv layer and its pooling computed as one, the same numbers as the two-step form.

Read :class:`minimal_ep.layers.ConvPool` first: convolution, then pooling, each a small function.
:func:`minimal_ep.fast.accelerate` swaps every conv layer of a network for the class below that
computes the same layer faster:

* :class:`ConvAvgPool`: average pooling after a stride-1 convolution is itself a convolution, with
  stride F and a (K+F-1) x (K+F-1) kernel, the average of the F*F shifted copies of the K x K one
  (:func:`box_kernel`). The backward route (nearest-neighbour unpooling / alpha, then the transposed
  convolution) is its transpose times F^2 / alpha. No full-resolution map, no pooling pass, and
  (K+F-1)^2 / (F^2 K^2) of the multiply-adds: 16/36 for 3x3 kernels and F = 2.
* :class:`ConvMaxPool`: max pooling needs the full map, but it can be pooled where the product
  leaves it (batch last, in two rounds over a window view: :func:`~minimal_ep.fast.ops.max_pool_bl`),
  and only the outputs the windows read are computed; only the pooled maps are transposed back to
  NCHW, and the indices not at all (a transposed view of the batch-last offsets, one byte each).

A network built with ``fast=False`` keeps the readable :class:`~minimal_ep.layers.ConvPool`; a test
compares the two on every method, and whole networks on their states and gradients.
"""
from ..backend import get_array_module
from ..layers import ConvPool
from .ops import (_scratch, conv2d, conv2d_bl, conv2d_weight, conv2d_weight_bl, conv_transpose2d,
                  conv_transpose2d_bl, from_batch_last, gather_pool_bl, gemm, max_pool_bl, max_unpool_bl,
                  to_batch_last)


# ----------------------------------------------------------------------------- average pooling: one strided convolution
def box_kernel(w, F):
    """A(w): the kernel of the stride-F convolution that equals "convolve with w, then F x F average pooling".

    Average pooling after a stride-1 convolution averages F*F shifted copies of the kernel:

        P(w * x)[I, J] = (1/F^2) sum_{a,b < F} sum_{p,q < K} w[p, q] x[F*I + a + p, F*J + b + q]
                       = sum_{r,s < K+F-1} A(w)[r, s] x[F*I + r, F*J + s]

    A is a fixed linear map of each K x K kernel, applied to all C_out*C of them as one product
    with the (K*K, (K+F-1)^2) matrix of :func:`_box_matrix`.

    w : (C_out, C, K, K) ndarray  ->  A(w) : (C_out, C, K+F-1, K+F-1) ndarray.
    """
    C_out, C, K, _ = w.shape
    return gemm(w.reshape(C_out * C, K * K), _box_matrix(w, K, F)).reshape(C_out, C, K + F - 1, K + F - 1)


def box_kernel_adjoint(g4, F):
    """A^T(g4), the adjoint of :func:`box_kernel`: g[p, q] = (1/F^2) sum_{a,b < F} g4[p + a, q + b]."""
    C_out, C, Kp, _ = g4.shape
    K = Kp - F + 1
    return gemm(g4.reshape(C_out * C, Kp * Kp), _box_matrix(g4, K, F).T).reshape(C_out, C, K, K)


_BOX = {}


def _box_matrix(like, K, F):
    """The matrix B of A(w) = w B on flattened kernels, (K*K, (K+F-1)^2), kept per (K, F, dtype, device).

    ``B[p*K + q, r*(K+F-1) + s] = 1/F^2`` when 0 <= r - p < F and 0 <= s - q < F, else 0: kernel
    entry (p, q) lands on every position of the F x F window that its shifted copies cover.
    """
    xp = get_array_module(like)
    key = (K, F, like.dtype, xp.__name__, getattr(like, "device", None))
    if key not in _BOX:
        Kp = K + F - 1
        B = xp.zeros((K, K, Kp, Kp), dtype=like.dtype)
        for p in range(K):
            for q in range(K):
                B[p, q, p:p + F, q:q + F] = 1.0 / (F * F)
        _BOX[key] = B.reshape(K * K, Kp * Kp)
    return _BOX[key]


class ConvAvgPool(ConvPool):
    """A :class:`~minimal_ep.layers.ConvPool` with average pooling, as one stride-F convolution.

    With A the kernel map of :func:`box_kernel` and c = F^2 / alpha (1 for the exact adjoint):

        forward    P(w * s_{n-1})         = conv2d(s_{n-1}, A(w), stride F)
        backward   w ~* P^-1(s_n)         = c conv_transpose2d(s_n, A(w), stride F)
        dphi_dw    corr(s_{n-1}, P^-1 s_n) = c A^T(conv2d_weight(s_{n-1}, s_n, K+F-1, stride F))

    No full-resolution map, no pooling pass, and (K+F-1)^2 / (F^2 K^2) of the multiply-adds
    (16/36 for 3x3 kernels and F = 2, less still where floor pooling drops a row).
    """

    def _c(self):
        return self.pool.F ** 2 / self.pool.alpha

    def _kw(self):
        return dict(stride=self.pool.F, padding=self.padding)

    def forward(self, w, s_prev):
        return conv2d(s_prev, box_kernel(w, self.pool.F), **self._kw()), None

    def backward(self, w, s, idx):
        x = conv_transpose2d(s, box_kernel(w, self.pool.F), (len(s),) + self.in_shape, **self._kw())
        return _scaled(x, self._c())

    def dphi_dw(self, w, s_prev, s):
        return _scaled(self._weight(s_prev, s), self._c())

    def forward_vjp(self, w, s_prev, idx, a, wrt_input=True):
        g_s = (conv_transpose2d(a, box_kernel(w, self.pool.F), s_prev.shape, **self._kw())
               if wrt_input else None)
        return g_s, self._weight(s_prev, a)

    def backward_vjp(self, w, s, idx, a):
        g_s = conv2d(a, box_kernel(w, self.pool.F), **self._kw())
        return _scaled(g_s, self._c()), _scaled(self._weight(a, s), self._c())

    def _weight(self, x, gy):
        """A^T(conv2d_weight(x, gy, K+F-1, stride F)): the weight gradient through the fused kernel."""
        K4 = self.kernel_size + self.pool.F - 1
        g4 = conv2d_weight(x, gy, K4, K4, **self._kw())
        return box_kernel_adjoint(g4, self.pool.F)


# ----------------------------------------------------------------------------- max pooling, batch last
class ConvMaxPool(ConvPool):
    """A :class:`~minimal_ep.layers.ConvPool` with max pooling, its maps kept batch last in between.

    The two-step form transposes every full-resolution map between NCHW and the batch-last layout
    of the products (or, on wide maps, pools NCHW maps with short strided rows); here the
    convolution's output is pooled where the product leaves it, batch last, in two rounds over a
    window view (:func:`~minimal_ep.fast.ops.max_pool_bl`), the unpooled map is written where the
    transposed convolution reads it, and only the pooled maps are transposed.

    Floor pooling reads only the first ``crop = (OH*F, OW*F)`` outputs of the convolution (6x6 of a
    7x7 map, 2x2 of a 3x3 one): only those are computed, and the unpooled map the backward route
    convolves is that block (the outputs beyond it are zero in max_unpool2d's map).

    The indices are the readable path's values, shaped (N, C, OH, OW) as max_pool2d's, in one byte
    each (:func:`~minimal_ep.fast.ops.index_dtype`) and laid out batch last in memory: ``forward``
    returns a transposed view of the batch-last offsets, which ``backward`` (and the VJPs) view back
    without a copy. Indices from elsewhere (any layout, int32) work as well.
    """

    def __init__(self, in_shape, channels, kernel_size, padding, pool):
        super().__init__(in_shape, channels, kernel_size, padding, pool)
        self.crop = (self.shape[1] * pool.F, self.shape[2] * pool.F)   # the outputs pooling reads

    def _kw(self):
        return dict(stride=1, padding=self.padding)

    def _pool_bl(self, w, s_prev):
        """P(w * s_{n-1}) and its offsets, batch last (C_out, OH, OW, N): (a scratch buffer, a new array)."""
        z = conv2d_bl(s_prev, w, out_size=self.crop, **self._kw())   # (C_out, OH*F, OW*F, N), scratch
        return max_pool_bl(z, self.pool.F, out=_scratch(z, "pooled_y", (z.shape[0],) + self.shape[1:] + (len(s_prev),)))

    def _unpool_bl(self, s, idx):
        """P^-1(s) (and P^T) on the cropped map, batch last: (C_out, OH*F, OW*F, N), a scratch buffer."""
        return max_unpool_bl(to_batch_last(s, role="pooled"), _batch_last_view(idx), self.pool.F, self.crop)

    def forward(self, w, s_prev):
        y, idx = self._pool_bl(w, s_prev)
        return from_batch_last(y), idx.transpose(3, 0, 1, 2)

    def backward(self, w, s, idx):
        return conv_transpose2d_bl(self._unpool_bl(s, idx), w, (len(s),) + self.in_shape, **self._kw())

    def dphi_dw(self, w, s_prev, s):
        idx = self._pool_bl(w, s_prev)[1]                             # Phi at the states: their own indices
        return conv2d_weight_bl(s_prev, self._unpool_bl(s, idx.transpose(3, 0, 1, 2)), self.kernel_size,
                                self.kernel_size, **self._kw())

    def forward_vjp(self, w, s_prev, idx, a, wrt_input=True):
        g = self._unpool_bl(a, idx)                                   # P^T a, batch last
        g_w = conv2d_weight_bl(s_prev, g, self.kernel_size, self.kernel_size, **self._kw())
        g_s = conv_transpose2d_bl(g, w, s_prev.shape, **self._kw()) if wrt_input else None
        return g_s, g_w

    def backward_vjp(self, w, s, idx, a):
        z = conv2d_bl(a, w, out_size=self.crop, **self._kw())        # (C_out, OH*F, OW*F, N)
        g_s = from_batch_last(gather_pool_bl(z, _batch_last_view(idx), self.pool.F))
        g_w = conv2d_weight_bl(a, self._unpool_bl(s, idx), self.kernel_size, self.kernel_size,
                               **self._kw())
        return g_s, g_w


def _batch_last_view(idx):
    """NCHW-shaped indices as (C, OH, OW, N): a view (contiguous for the indices ConvMaxPool returns)."""
    return idx.transpose(1, 2, 3, 0)


def _scaled(a, c):
    if c != 1.0:
        a *= c
    return a
